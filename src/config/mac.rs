//! Ethernet MAC addresses as they appear in the topology file, and every
//! MAC the router derives where the file gives none: one home for the
//! rules, since hosts, the router and replay must agree on them.
//!
//! Every derived address is locally administered unicast (`02:..`); the
//! second octet names the role: `42` a VTEP, `52` the router on a
//! container port, `43` a container the router made, `4e` the NIC in
//! replay.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet address, written `02:00:c6:12:00:01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// True for group (multicast and broadcast) addresses: the I/G bit, the
    /// least significant bit of the first octet (IEEE 802-2014 8.2).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for 00:00:00:00:00:00, which no interface may use.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// A locally administered unicast address derived from the last four bytes
    /// of `ip`: `02:42:a:b:c:d`. Used as a host's VTEP MAC when none is set.
    pub fn derived_from(ip: std::net::IpAddr) -> MacAddr {
        let tail: [u8; 4] = match ip {
            std::net::IpAddr::V4(v4) => v4.octets(),
            std::net::IpAddr::V6(v6) => {
                let o = v6.octets();
                [o[12], o[13], o[14], o[15]]
            }
        };
        MacAddr([0x02, 0x42, tail[0], tail[1], tail[2], tail[3]])
    }
}

/// The MAC the router answers with on container port `index` of a host
/// whose VTEP MAC is `vtep`: stable across restarts, unique per port (the
/// index is at most 255).
pub fn router_port_mac(vtep: [u8; 6], index: usize) -> [u8; 6] {
    [0x02, 0x52, vtep[3], vtep[4], vtep[5], index as u8]
}

/// The MAC of the container end of a veth the router makes for port
/// `index` (the router must know it to address delivered frames).
pub fn container_port_mac(vtep: [u8; 6], index: usize) -> [u8; 6] {
    [0x02, 0x43, vtep[3], vtep[4], vtep[5], index as u8]
}

/// The NIC's MAC in replay when the topology gives no `underlay_mac`.
pub fn replay_nic_mac(vtep: [u8; 6]) -> [u8; 6] {
    [0x02, 0x4e, vtep[2], vtep[3], vtep[4], vtep[5]]
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid MAC address {0:?}: expected six hex octets separated by ':', like 02:00:c6:12:00:01"
)]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let m: MacAddr = "02:00:C6:12:00:01".parse().unwrap();
        assert_eq!(m.0, [0x02, 0x00, 0xc6, 0x12, 0x00, 0x01]);
        assert_eq!(m.to_string(), "02:00:c6:12:00:01");
        assert_eq!("2:0:c6:12:0:1".parse::<MacAddr>().unwrap(), m);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "02:00:c6:12:00",
            "02:00:c6:12:00:01:02",
            "02-00-c6-12-00-01",
            "02:00:c6:12:00:0g",
            "002:00:c6:12:00:01",
            "02::c6:12:00:01",
            "+2:00:c6:12:00:01",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn derived_and_flags() {
        let m = MacAddr::derived_from("198.18.0.7".parse().unwrap());
        assert_eq!(m.to_string(), "02:42:c6:12:00:07");
        assert!(!m.is_multicast());
        let m6 = MacAddr::derived_from("2001:2::a:b".parse().unwrap());
        assert_eq!(m6.to_string(), "02:42:00:0a:00:0b");
        assert!("01:00:5e:00:00:01"
            .parse::<MacAddr>()
            .unwrap()
            .is_multicast());
        assert!(MacAddr([0; 6]).is_zero());
    }

    #[test]
    fn serde_as_string() {
        let m: MacAddr = serde_json::from_str("\"02:00:c6:12:00:01\"").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"02:00:c6:12:00:01\"");
        assert!(serde_json::from_str::<MacAddr>("\"zz\"").is_err());
    }
}
