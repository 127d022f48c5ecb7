//! The records a store holds, as JSON: decoding with every field checked,
//! and encoding this host's own.
//!
//! Two layouts (see [`StoreLayout`]): vxrouter's own (`hosts/<name>`,
//! `links/<name>`, `subnets/<ip>-<len>` for the default network's leases,
//! `networks/<name>/subnets/<ip>-<len>` for another network's) and
//! flannel's (`config`, `subnets/<ip>-<len>`). A value that does not decode is a [`Reject`] with
//! its reason; nothing here panics on any input.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::{self, MacAddr, StoreLayout, DEFAULT_NETWORK};

use super::Reject;

/// Largest value a record may have: a host record with a few dozen
/// subnets is a few KiB.
pub const MAX_RECORD_LEN: usize = 64 * 1024;

/// A host as a store record describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The host's name: the record's own in the vxrouter layout, the
    /// lease's key (`198.19.2.0-24`) in the flannel layout.
    pub name: String,
    pub underlay: IpAddr,
    pub vtep_mac: MacAddr,
    pub subnets: Vec<IpNet>,
    /// Subnets in the networks other than the default one, by network
    /// name (vxrouter layout only; empty in the flannel layout).
    pub networks: BTreeMap<String, NetworkSubnets>,
}

/// An operator's link record (vxrouter layout, `links/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRecord {
    pub a: String,
    pub b: String,
    #[serde(default = "default_cost")]
    pub cost: u32,
}

fn default_cost() -> u32 {
    1
}

/// The vxrouter layout's host record (`hosts/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRecord {
    pub name: String,
    pub underlay: IpAddr,
    pub vtep_mac: MacAddr,
    #[serde(default)]
    pub subnets: Vec<IpNet>,
    /// The VNI the host forwards in; a record of another VNI is foreign.
    pub vni: u32,
    /// Subnets in the other networks, by network name, each with its
    /// VNI. Last and left out when empty, so a single-network host's
    /// record is the same bytes whether or not its router knows networks.
    #[serde(default, skip_serializing_if = "Networks::is_empty")]
    pub networks: Networks,
}

/// A host's subnets in one network other than the default, and the VNI
/// that network has on the host. A name means a network only together
/// with its VNI: two routers that give one name different VNIs would
/// otherwise carry each other's traffic into whichever network has the
/// VNI, across the isolation between networks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSubnets {
    /// `None` only in a record written before records carried VNIs (a
    /// bare list of prefixes): the name alone is taken then, as it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    pub subnets: Vec<IpNet>,
}

/// A host record's `networks`: a JSON object of network name to
/// `{"vni": N, "subnets": [prefixes]}` (or, as written before records
/// carried VNIs, to a bare list of prefixes), in which a name given twice
/// is an error rather than the last one winning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Networks(pub BTreeMap<String, NetworkSubnets>);

/// One value of `networks` as it may be written.
#[derive(Deserialize)]
#[serde(untagged)]
enum NetworkValue {
    Current(NetworkSubnets),
    Legacy(Vec<IpNet>),
}

impl Networks {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Networks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Networks;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of network name to {\"vni\": N, \"subnets\": [prefixes]}")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Networks, A::Error> {
                use serde::de::Error;
                let mut out = BTreeMap::new();
                while let Some(name) = map.next_key::<String>()? {
                    let value = map.next_value::<serde_json::Value>()?;
                    let subnets = match serde_json::from_value::<NetworkValue>(value) {
                        Ok(NetworkValue::Current(n)) => n,
                        Ok(NetworkValue::Legacy(subnets)) => NetworkSubnets { vni: None, subnets },
                        Err(_) => {
                            return Err(A::Error::custom(format!(
                                "network {name:?}: expected {{\"vni\": N, \"subnets\": [prefixes]}} (or a list of prefixes)"
                            )))
                        }
                    };
                    if out.contains_key(&name) {
                        return Err(A::Error::custom(format!("network {name:?} is given twice")));
                    }
                    out.insert(name, subnets);
                }
                Ok(Networks(out))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// The vxrouter layout's subnet lease (`subnets/<ip>-<len>`, or
/// `networks/<name>/subnets/<ip>-<len>` in another network): which host
/// leased it from its network's range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetClaim {
    pub host: String,
}

/// flannel's network config (`<prefix>/config`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FlannelConfig {
    #[serde(rename = "Network")]
    pub network: ipnet::Ipv4Net,
    #[serde(rename = "SubnetLen", default)]
    pub subnet_len: Option<u8>,
    #[serde(rename = "Backend", default)]
    pub backend: Option<FlannelBackend>,
}

/// `Backend` of flannel's network config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FlannelBackend {
    #[serde(rename = "Type", default)]
    pub kind: Option<String>,
    #[serde(rename = "VNI", default)]
    pub vni: Option<u32>,
    #[serde(rename = "Port", default)]
    pub port: Option<u16>,
}

impl FlannelConfig {
    /// flanneld's defaults: subnets of /24 (or 4 bits past a network
    /// longer than /22), VNI 1, the kernel's VXLAN port 8472.
    pub fn subnet_len(&self) -> u8 {
        self.subnet_len
            .unwrap_or(if self.network.prefix_len() <= 22 {
                24
            } else {
                self.network.prefix_len() + 4
            })
    }

    pub fn vni(&self) -> u32 {
        self.backend.as_ref().and_then(|b| b.vni).unwrap_or(1)
    }

    pub fn port(&self) -> u16 {
        match self.backend.as_ref().and_then(|b| b.port) {
            None | Some(0) => 8472,
            Some(p) => p,
        }
    }

    /// Why this config cannot carry a vxrouter host, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let kind = self.backend.as_ref().and_then(|b| b.kind.as_deref());
        if kind.is_some_and(|k| k != "vxlan") {
            return Some(format!(
                "Backend.Type is {:?}: vxrouter speaks only flannel's \"vxlan\" backend",
                kind.unwrap_or_default()
            ));
        }
        let len = self.subnet_len();
        if len < self.network.prefix_len() || len > 30 {
            return Some(format!(
                "SubnetLen {len} does not fit Network {}",
                self.network
            ));
        }
        None
    }
}

/// flannel's subnet lease (`subnets/<ip>-<len>`), as flanneld writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlannelLease {
    #[serde(rename = "PublicIP")]
    pub public_ip: std::net::Ipv4Addr,
    #[serde(rename = "BackendType", default)]
    pub backend_type: String,
    #[serde(rename = "BackendData", default)]
    pub backend_data: Option<FlannelVxlanData>,
}

/// `BackendData` of a vxlan lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlannelVxlanData {
    #[serde(rename = "VNI", default)]
    pub vni: Option<u32>,
    #[serde(rename = "VtepMAC")]
    pub vtep_mac: MacAddr,
}

/// A subnet as a lease key names it: `198.19.2.0-24`.
pub fn subnet_key(net: IpNet) -> String {
    format!("{}-{}", net.addr(), net.prefix_len())
}

/// The subnet a lease key names; `None` unless it is exactly a network
/// address and its length.
pub fn parse_subnet_key(key: &str) -> Option<IpNet> {
    let (addr, len) = key.rsplit_once('-')?;
    let net = IpNet::new(addr.parse().ok()?, len.parse().ok()?).ok()?;
    (net.trunc() == net && subnet_key(net) == key).then_some(net)
}

/// Where the vxrouter layout keeps a network's subnet leases under the
/// prefix: `subnets/` for the default network, as before networks had
/// leases (so a single-network cluster's keys are unchanged), and
/// `networks/<name>/subnets/` for another, since networks' address spaces
/// overlap: one subnet may be leased once in each network.
pub fn lease_dir(network: &str) -> String {
    if network == DEFAULT_NETWORK {
        "subnets/".to_owned()
    } else {
        format!("networks/{network}/subnets/")
    }
}

/// A lease's key, parsed: the network it is in and the subnet it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseKey<'k> {
    pub network: &'k str,
    pub subnet: IpNet,
}

/// Parses a vxrouter layout lease key (`subnets/<ip>-<len>` or
/// `networks/<name>/subnets/<ip>-<len>`, as [`lease_dir`] makes them).
/// `None` for a key of another kind; a lease key whose network or subnet
/// does not parse is an error with its reason.
pub fn parse_lease_key(key: &str) -> Option<Result<LeaseKey<'_>, (Reject, String)>> {
    let (network, rest) = if let Some(rest) = key.strip_prefix("subnets/") {
        (DEFAULT_NETWORK, rest)
    } else {
        let rest = key.strip_prefix("networks/")?;
        let Some((name, rest)) = rest
            .split_once('/')
            .and_then(|(name, r)| Some((name, r.strip_prefix("subnets/")?)))
        else {
            return Some(Err((
                Reject::UnknownKey,
                format!("key {key} is not networks/<name>/subnets/<ip>-<len>"),
            )));
        };
        if name == DEFAULT_NETWORK {
            return Some(Err((
                Reject::KeyMismatch,
                format!("key {key} names {DEFAULT_NETWORK:?}, whose leases are under subnets/"),
            )));
        }
        if let Err(e) = config::check_network_name(name) {
            return Some(Err((Reject::KeyMismatch, format!("key {key}: {e}"))));
        }
        (name, rest)
    };
    Some(match parse_subnet_key(rest) {
        Some(subnet) => Ok(LeaseKey { network, subnet }),
        None => Err((
            Reject::KeyMismatch,
            format!("key {key} does not name a subnet as <ip>-<len>"),
        )),
    })
}

/// Decodes the lease at `key` (vxrouter layout): the network and subnet
/// its key names, and the host that holds it. `None` for a key that is no
/// lease's.
pub fn decode_claim<'k>(
    key: &'k str,
    value: &[u8],
) -> Option<Result<(LeaseKey<'k>, SubnetClaim), (Reject, String)>> {
    let lease = match parse_lease_key(key)? {
        Ok(l) => l,
        Err(e) => return Some(Err(e)),
    };
    Some(json::<SubnetClaim>(value).and_then(|c| {
        config::check_host_name(&c.host).map_err(|e| (Reject::BadField, format!("host: {e}")))?;
        Ok((lease, c))
    }))
}

fn json<'a, T: Deserialize<'a>>(value: &'a [u8]) -> Result<T, (Reject, String)> {
    if value.len() > MAX_RECORD_LEN {
        return Err((
            Reject::NotJson,
            format!("{} bytes, more than {MAX_RECORD_LEN}", value.len()),
        ));
    }
    serde_json::from_slice(value).map_err(|e| {
        let reason = if e.is_data() {
            Reject::BadField
        } else {
            Reject::NotJson
        };
        (reason, e.to_string())
    })
}

/// Decodes the host record at `hosts/<key_name>` (vxrouter layout).
pub fn decode_host(key_name: &str, value: &[u8], vni: u32) -> Result<Peer, (Reject, String)> {
    let r: HostRecord = json(value)?;
    if r.name != key_name {
        return Err((
            Reject::KeyMismatch,
            format!("record names host {:?} under key hosts/{key_name}", r.name),
        ));
    }
    if r.vni != vni {
        return Err((
            Reject::ForeignVni,
            format!("VNI {} is not this overlay's {vni}", r.vni),
        ));
    }
    for (name, net) in &r.networks.0 {
        if let Some(v) = net.vni.filter(|&v| v > config::MAX_VNI) {
            return Err((
                Reject::BadField,
                format!(
                    "networks: network {name:?} has VNI {v}, above {}",
                    config::MAX_VNI
                ),
            ));
        }
        if name == DEFAULT_NETWORK {
            return Err((
                Reject::BadField,
                format!("networks names {DEFAULT_NETWORK:?}, whose subnets belong in subnets"),
            ));
        }
        config::check_network_name(name)
            .map_err(|e| (Reject::BadField, format!("networks: {e}")))?;
    }
    Ok(Peer {
        name: r.name,
        underlay: r.underlay,
        vtep_mac: r.vtep_mac,
        subnets: r.subnets,
        networks: r.networks.0,
    })
}

/// This host's record value (vxrouter layout).
pub fn encode_host(rec: &HostRecord) -> String {
    serde_json::to_string(rec).unwrap_or_default()
}

/// Decodes a link record (vxrouter layout).
pub fn decode_link(value: &[u8]) -> Result<LinkRecord, (Reject, String)> {
    json(value)
}

/// Decodes the flannel lease at `subnets/<key>`.
pub fn decode_flannel_lease(key: &str, value: &[u8], vni: u32) -> Result<Peer, (Reject, String)> {
    let Some(net) = parse_subnet_key(key) else {
        return Err((
            Reject::KeyMismatch,
            format!("key subnets/{key} does not name a subnet as <ip>-<len>"),
        ));
    };
    let l: FlannelLease = json(value)?;
    if l.backend_type != "vxlan" {
        return Err((
            Reject::BadField,
            format!("BackendType {:?} is not \"vxlan\"", l.backend_type),
        ));
    }
    let Some(data) = l.backend_data else {
        return Err((Reject::BadField, "no BackendData.VtepMAC".into()));
    };
    // flanneld of one network writes its network's VNI; an absent VNI is
    // the default, 1.
    let theirs = data.vni.unwrap_or(1);
    if theirs != vni {
        return Err((
            Reject::ForeignVni,
            format!("VNI {theirs} is not this overlay's {vni}"),
        ));
    }
    Ok(Peer {
        name: key.to_owned(),
        underlay: IpAddr::V4(l.public_ip),
        vtep_mac: data.vtep_mac,
        subnets: vec![net],
        networks: BTreeMap::new(),
    })
}

/// This host's flannel lease value.
pub fn encode_flannel_lease(underlay: std::net::Ipv4Addr, vtep_mac: MacAddr, vni: u32) -> String {
    serde_json::to_string(&FlannelLease {
        public_ip: underlay,
        backend_type: "vxlan".into(),
        backend_data: Some(FlannelVxlanData {
            vni: Some(vni),
            vtep_mac,
        }),
    })
    .unwrap_or_default()
}

/// The layout's default key kinds, for messages.
pub fn describe(layout: StoreLayout) -> &'static str {
    match layout {
        StoreLayout::Vxrouter => {
            "hosts/<name>, links/<name>, subnets/<ip>-<len>, networks/<name>/subnets/<ip>-<len>"
        }
        StoreLayout::Flannel => "config, subnets/<ip>-<len>",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_keys_round_trip_and_refuse_near_misses() {
        let n: IpNet = "198.19.2.0/24".parse().unwrap();
        assert_eq!(subnet_key(n), "198.19.2.0-24");
        assert_eq!(parse_subnet_key("198.19.2.0-24"), Some(n));
        for bad in [
            "198.19.2.1-24",
            "198.19.2.0-33",
            "198.19.2.0",
            "x-24",
            "198.19.2.0-024",
            "",
        ] {
            assert_eq!(parse_subnet_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn lease_keys_name_their_network_and_the_default_ones_are_unchanged() {
        let n: IpNet = "198.19.2.0/24".parse().unwrap();
        assert_eq!(lease_dir(DEFAULT_NETWORK), "subnets/");
        assert_eq!(lease_dir("blue"), "networks/blue/subnets/");
        let key = |net: &str| format!("{}{}", lease_dir(net), subnet_key(n));
        assert_eq!(key(DEFAULT_NETWORK), "subnets/198.19.2.0-24");
        for net in [DEFAULT_NETWORK, "blue", "a.b-c_9"] {
            let k = key(net);
            assert_eq!(
                parse_lease_key(&k),
                Some(Ok(LeaseKey {
                    network: net,
                    subnet: n
                })),
                "{k}"
            );
        }
        assert_eq!(parse_lease_key("hosts/h1"), None);
        assert_eq!(parse_lease_key("networksx/blue"), None);
        for (bad, reason) in [
            ("networks/blue", Reject::UnknownKey),
            ("networks/blue/links/x", Reject::UnknownKey),
            ("networks//subnets/198.19.2.0-24", Reject::KeyMismatch),
            (
                "networks/bad name/subnets/198.19.2.0-24",
                Reject::KeyMismatch,
            ),
            (
                "networks/default/subnets/198.19.2.0-24",
                Reject::KeyMismatch,
            ),
            ("networks/blue/subnets/198.19.2.1-24", Reject::KeyMismatch),
            ("networks/blue/subnets/198.19.2.0-24/x", Reject::KeyMismatch),
            ("networks/blue/subnets/", Reject::KeyMismatch),
            ("subnets/198.19.2.0", Reject::KeyMismatch),
        ] {
            assert_eq!(
                parse_lease_key(bad).map(|r| r.map_err(|e| e.0)),
                Some(Err(reason)),
                "{bad}"
            );
        }
    }

    #[test]
    fn lease_values_name_a_host_and_nothing_else() {
        let k = "networks/blue/subnets/198.19.2.0-24";
        let (lease, claim) = decode_claim(k, br#"{"host":"h2"}"#).unwrap().unwrap();
        assert_eq!(lease.network, "blue");
        assert_eq!(claim.host, "h2");
        for (bad, reason) in [
            (&b"{"[..], Reject::NotJson),
            (br#"{"host":"h 2"}"#, Reject::BadField),
            (br#"{"host":""}"#, Reject::BadField),
            (br#"{"host":7}"#, Reject::BadField),
            (br#"{"host":"h2","vni":43}"#, Reject::BadField),
            (br#"[]"#, Reject::BadField),
        ] {
            let got = decode_claim(k, bad).unwrap().map(|_| ()).map_err(|e| e.0);
            assert_eq!(got, Err(reason), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            decode_claim("networks/x y/subnets/1", br#"{"host":"h2"}"#)
                .unwrap()
                .map(|_| ())
                .map_err(|e| e.0),
            Err(Reject::KeyMismatch)
        );
        assert!(decode_claim("links/a", b"{").is_none());
    }

    #[test]
    fn flannel_leases_decode_as_flanneld_writes_them() {
        let v = br#"{"PublicIP":"198.18.0.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"9a:3b:11:22:33:44"}}"#;
        let p = decode_flannel_lease("198.19.2.0-24", v, 1).unwrap();
        assert_eq!(p.underlay, "198.18.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(p.subnets, ["198.19.2.0/24".parse::<IpNet>().unwrap()]);
        assert_eq!(p.vtep_mac.to_string(), "9a:3b:11:22:33:44");
        assert_eq!(
            decode_flannel_lease("198.19.2.0-24", v, 2).unwrap_err().0,
            Reject::ForeignVni
        );
        assert_eq!(
            decode_flannel_lease("198.19.2.0-24", b"{", 1)
                .unwrap_err()
                .0,
            Reject::NotJson
        );
        let no_mac = br#"{"PublicIP":"198.18.0.2","BackendType":"vxlan","BackendData":{"VNI":1}}"#;
        assert_eq!(
            decode_flannel_lease("198.19.2.0-24", no_mac, 1)
                .unwrap_err()
                .0,
            Reject::BadField
        );
        let ours = encode_flannel_lease(
            "198.18.0.1".parse().unwrap(),
            "02:42:c6:12:00:01".parse().unwrap(),
            1,
        );
        let back = decode_flannel_lease("198.19.1.0-24", ours.as_bytes(), 1).unwrap();
        assert_eq!(back.underlay, "198.18.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn host_records_check_key_vni_and_fields() {
        let v = br#"{"name":"h2","underlay":"198.18.0.2","vtep_mac":"02:42:c6:12:00:02","subnets":["198.19.2.0/24"],"vni":42}"#;
        assert!(decode_host("h2", v, 42).is_ok());
        assert_eq!(decode_host("h3", v, 42).unwrap_err().0, Reject::KeyMismatch);
        assert_eq!(decode_host("h2", v, 7).unwrap_err().0, Reject::ForeignVni);
        let bad =
            br#"{"name":"h2","underlay":"198.18.0.300","vtep_mac":"02:42:c6:12:00:02","vni":42}"#;
        assert_eq!(decode_host("h2", bad, 42).unwrap_err().0, Reject::BadField);
        let big = vec![b' '; MAX_RECORD_LEN + 1];
        assert_eq!(decode_host("h2", &big, 42).unwrap_err().0, Reject::NotJson);
    }

    const OLD: &str = r#"{"name":"h2","underlay":"198.18.0.2","vtep_mac":"02:42:c6:12:00:02","subnets":["198.19.2.0/24"],"vni":42}"#;

    fn record(networks: &[(&str, u32, &[&str])]) -> HostRecord {
        HostRecord {
            name: "h2".into(),
            underlay: "198.18.0.2".parse().unwrap(),
            vtep_mac: "02:42:c6:12:00:02".parse().unwrap(),
            subnets: vec!["198.19.2.0/24".parse().unwrap()],
            vni: 42,
            networks: Networks(
                networks
                    .iter()
                    .map(|(n, vni, s)| {
                        (
                            (*n).to_owned(),
                            NetworkSubnets {
                                vni: Some(*vni),
                                subnets: s.iter().map(|s| s.parse().unwrap()).collect(),
                            },
                        )
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn a_single_network_record_is_the_same_bytes_as_before_networks() {
        let v = encode_host(&record(&[]));
        assert_eq!(v, OLD);
        let p = decode_host("h2", v.as_bytes(), 42).unwrap();
        assert!(p.networks.is_empty());
        assert_eq!(p.subnets, record(&[]).subnets);
    }

    #[test]
    fn network_subnets_round_trip_by_name_with_their_vnis() {
        let r = record(&[
            ("blue", 43, &["198.19.2.0/24", "2001:db8:2::/64"]),
            ("green", 7, &["198.19.9.0/24"]),
        ]);
        let v = encode_host(&r);
        assert_eq!(
            v,
            OLD.replace(
                "\"vni\":42}",
                r#""vni":42,"networks":{"blue":{"vni":43,"subnets":["198.19.2.0/24","2001:db8:2::/64"]},"green":{"vni":7,"subnets":["198.19.9.0/24"]}}}"#
            )
        );
        let p = decode_host("h2", v.as_bytes(), 42).unwrap();
        assert_eq!(p.networks, r.networks.0);
        // A network without subnets is as good as none.
        let empty = OLD.replace(
            "\"vni\":42}",
            r#""vni":42,"networks":{"blue":{"vni":43,"subnets":[]}}}"#,
        );
        assert!(decode_host("h2", empty.as_bytes(), 42).is_ok());
    }

    #[test]
    fn a_record_written_before_vnis_names_its_networks_only() {
        let v = OLD.replace(
            "\"vni\":42}",
            r#""vni":42,"networks":{"blue":["198.19.2.0/24"],"green":[]}}"#,
        );
        let p = decode_host("h2", v.as_bytes(), 42).unwrap();
        assert_eq!(p.networks["blue"].vni, None);
        assert_eq!(
            p.networks["blue"].subnets,
            ["198.19.2.0/24".parse::<IpNet>().unwrap()]
        );
        assert!(p.networks["green"].subnets.is_empty());
    }

    #[test]
    fn bad_networks_are_rejected_with_their_reason() {
        let with = |networks: &str| {
            let v = OLD.replace(
                "\"vni\":42}",
                &format!(r#""vni":42,"networks":{networks}}}"#),
            );
            decode_host("h2", v.as_bytes(), 42)
        };
        let long = format!(r#"{{"{}":[]}}"#, "n".repeat(200));
        for bad in [
            r#"{"bad name":["198.19.1.0/24"]}"#,
            r#"{"":["198.19.1.0/24"]}"#,
            r#"{"default":["198.19.1.0/24"]}"#,
            r#"{"blue":["198.19.1.0/33"]}"#,
            r#"{"blue":["198.19.1.0"]}"#,
            r#"{"blue":"198.19.1.0/24"}"#,
            r#"{"blue":["198.19.1.0/24"],"blue":["198.19.3.0/24"]}"#,
            r#"["blue"]"#,
            r#"{"blue":{"vni":16777216,"subnets":["198.19.1.0/24"]}}"#,
            r#"{"blue":{"vni":-1,"subnets":[]}}"#,
            r#"{"blue":{"vni":"43","subnets":[]}}"#,
            r#"{"blue":{"vni":43}}"#,
            r#"{"blue":{"vni":43,"subnets":["198.19.1.0/24"],"mtu":1400}}"#,
            r#"{"blue":{"vni":43,"subnets":["198.19.1.0/33"]}}"#,
            r#"{"blue":{"vni":43,"subnets":"198.19.1.0/24"}}"#,
            long.as_str(),
        ] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.0, Reject::BadField, "{bad}: {}", e.1);
        }
        let e = with(r#"{"blue":["198.19.1.0/24"],"blue":[]}"#).unwrap_err();
        assert!(e.1.contains("given twice"), "{}", e.1);
    }

    #[test]
    fn flannel_config_defaults() {
        let c: FlannelConfig =
            serde_json::from_str(r#"{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"}}"#)
                .unwrap();
        assert_eq!((c.subnet_len(), c.vni(), c.port()), (24, 1, 8472));
        assert!(c.problem().is_none());
        let c: FlannelConfig =
            serde_json::from_str(r#"{"Network":"198.19.0.0/16","Backend":{"Type":"host-gw"}}"#)
                .unwrap();
        assert!(c.problem().is_some());
    }
}
