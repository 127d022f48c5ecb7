//! Address classes: the special-purpose IPv4 and IPv6 blocks a topology
//! must keep clear of, declared once.
//!
//! Sans-IO and allocation-free on the per-address checks, so that the data
//! plane can use the same blocks as the configuration checks (see
//! [`is_bad_source_v4`]). Each block is a [`Block4`] or [`Block6`] constant;
//! [`special`] classifies one address and [`special_overlapping`] finds the
//! first block a prefix shares addresses with. What each role (VTEP address,
//! container subnet, gateway) accepts is decided in `validate`, on top of
//! these classes.
//!
//! Invariant: within each family's table, a block that lies inside another
//! comes before it, so that an address gets its narrowest class (0.0.0.0 is
//! unspecified, not "this network"; 255.255.255.255 is broadcast, not
//! reserved).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A special-purpose address class (IANA IPv4 and IPv6 Special-Purpose
/// Address Registries, RFC 6890).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Special {
    /// 0.0.0.0 and `::`: no address at all.
    Unspecified,
    /// 0.0.0.0/8 "this network" (RFC 791, RFC 1122 section 3.2.1.3): only a
    /// source while a host learns its address, never a destination.
    ThisNetwork,
    /// 127.0.0.0/8 and `::1`: never leaves a host.
    Loopback,
    /// 169.254.0.0/16 and fe80::/10: valid on one link only; "A router MUST
    /// NOT forward a packet with an IPv4 Link-Local source or destination
    /// address" (RFC 3927 section 7), and an IPv6 one needs a scope.
    LinkLocal,
    /// 224.0.0.0/4 and ff00::/8.
    Multicast,
    /// 240.0.0.0/4 "reserved for future use" (RFC 1112 section 4), apart
    /// from the broadcast address.
    Reserved,
    /// 255.255.255.255, the limited broadcast address (RFC 919).
    Broadcast,
    /// ::ffff:0:0/96: an IPv4 address as an IPv6 socket sees it; such an
    /// address never appears in an IPv6 header on the wire (RFC 4291
    /// section 2.5.5.2, RFC 4038 section 4.2).
    V4Mapped,
    /// ::/96 without `::` and `::1`: the deprecated IPv4-compatible IPv6
    /// addresses (RFC 4291 section 2.5.5.1).
    V4Compatible,
    /// 100::/64, discard-only (RFC 6666): traffic to it is dropped by design.
    Discard,
}

impl Special {
    /// What the class is, as a phrase for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Special::Unspecified => "the unspecified address",
            Special::ThisNetwork => "in \"this network\" 0.0.0.0/8 (never a destination)",
            Special::Loopback => "a loopback address",
            Special::LinkLocal => "a link-local address",
            Special::Multicast => "a multicast address",
            Special::Reserved => "in the reserved block 240.0.0.0/4",
            Special::Broadcast => "the limited broadcast address",
            Special::V4Mapped => "an IPv4-mapped IPv6 address",
            Special::V4Compatible => "a deprecated IPv4-compatible IPv6 address",
            Special::Discard => "in the discard-only block 100::/64",
        }
    }
}

impl Special {
    /// The class's short name, for "it lies in 198.51.0.0/16 (name)".
    pub fn name(self) -> &'static str {
        match self {
            Special::Unspecified => "unspecified",
            Special::ThisNetwork => "\"this network\"",
            Special::Loopback => "loopback",
            Special::LinkLocal => "link-local, never forwarded",
            Special::Multicast => "multicast",
            Special::Reserved => "reserved",
            Special::Broadcast => "broadcast",
            Special::V4Mapped => "IPv4-mapped, never on the wire",
            Special::V4Compatible => "IPv4-compatible, deprecated",
            Special::Discard => "discard-only",
        }
    }
}

impl fmt::Display for Special {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// An IPv4 block, as a host-order network address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block4 {
    /// Network address, host byte order, no host bits.
    pub net: u32,
    /// Prefix length, 0..=32.
    pub len: u8,
}

impl Block4 {
    /// Whether host-order address `a` lies in the block.
    #[inline]
    pub const fn contains(self, a: u32) -> bool {
        self.len == 0 || a >> (32 - self.len) == self.net >> (32 - self.len)
    }

    /// The block as a prefix.
    pub fn prefix(self) -> Ipv4Net {
        // `len` is at most 32 in every block declared here.
        Ipv4Net::new(Ipv4Addr::from(self.net), self.len).unwrap_or_default()
    }
}

/// An IPv6 block, as a host-order network address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block6 {
    /// Network address, host byte order, no host bits.
    pub net: u128,
    /// Prefix length, 0..=128.
    pub len: u8,
}

impl Block6 {
    /// Whether host-order address `a` lies in the block.
    #[inline]
    pub const fn contains(self, a: u128) -> bool {
        self.len == 0 || a >> (128 - self.len) == self.net >> (128 - self.len)
    }

    /// The block as a prefix.
    pub fn prefix(self) -> Ipv6Net {
        // `len` is at most 128 in every block declared here.
        Ipv6Net::new(Ipv6Addr::from(self.net), self.len).unwrap_or_default()
    }
}

/// 0.0.0.0/32.
pub const UNSPECIFIED_V4: Block4 = Block4 { net: 0, len: 32 };
/// 0.0.0.0/8.
pub const THIS_NETWORK_V4: Block4 = Block4 { net: 0, len: 8 };
/// 127.0.0.0/8.
pub const LOOPBACK_V4: Block4 = Block4 {
    net: 0x7f00_0000,
    len: 8,
};
/// 169.254.0.0/16.
pub const LINK_LOCAL_V4: Block4 = Block4 {
    net: 0xa9fe_0000,
    len: 16,
};
/// 224.0.0.0/4.
pub const MULTICAST_V4: Block4 = Block4 {
    net: 0xe000_0000,
    len: 4,
};
/// 255.255.255.255/32.
pub const BROADCAST_V4: Block4 = Block4 {
    net: u32::MAX,
    len: 32,
};
/// 240.0.0.0/4, broadcast included.
pub const RESERVED_V4: Block4 = Block4 {
    net: 0xf000_0000,
    len: 4,
};

/// ::/128.
pub const UNSPECIFIED_V6: Block6 = Block6 { net: 0, len: 128 };
/// ::1/128.
pub const LOOPBACK_V6: Block6 = Block6 { net: 1, len: 128 };
/// ::/96, `::` and `::1` included.
pub const V4_COMPATIBLE_V6: Block6 = Block6 { net: 0, len: 96 };
/// ::ffff:0:0/96.
pub const V4_MAPPED_V6: Block6 = Block6 {
    net: 0xffff_0000_0000,
    len: 96,
};
/// 100::/64.
pub const DISCARD_V6: Block6 = Block6 {
    net: 0x0100 << 112,
    len: 64,
};
/// fe80::/10.
pub const LINK_LOCAL_V6: Block6 = Block6 {
    net: 0xfe80 << 112,
    len: 10,
};
/// ff00::/8.
pub const MULTICAST_V6: Block6 = Block6 {
    net: 0xff << 120,
    len: 8,
};

/// The IPv4 classes, narrowest first (see the module invariant).
const TABLE_V4: [(Block4, Special); 7] = [
    (UNSPECIFIED_V4, Special::Unspecified),
    (THIS_NETWORK_V4, Special::ThisNetwork),
    (LOOPBACK_V4, Special::Loopback),
    (LINK_LOCAL_V4, Special::LinkLocal),
    (MULTICAST_V4, Special::Multicast),
    (BROADCAST_V4, Special::Broadcast),
    (RESERVED_V4, Special::Reserved),
];

/// The IPv6 classes, narrowest first.
const TABLE_V6: [(Block6, Special); 7] = [
    (UNSPECIFIED_V6, Special::Unspecified),
    (LOOPBACK_V6, Special::Loopback),
    (V4_COMPATIBLE_V6, Special::V4Compatible),
    (V4_MAPPED_V6, Special::V4Mapped),
    (DISCARD_V6, Special::Discard),
    (LINK_LOCAL_V6, Special::LinkLocal),
    (MULTICAST_V6, Special::Multicast),
];

/// The class of IPv4 address `a` (host order), if it is special.
pub fn special_v4(a: u32) -> Option<Special> {
    TABLE_V4
        .iter()
        .find(|(b, _)| b.contains(a))
        .map(|&(_, s)| s)
}

/// The class of IPv6 address `a` (host order), if it is special.
pub fn special_v6(a: u128) -> Option<Special> {
    TABLE_V6
        .iter()
        .find(|(b, _)| b.contains(a))
        .map(|&(_, s)| s)
}

/// The class of `a`, if it is special; `None` for ordinary unicast
/// (private, shared, documentation and benchmarking blocks included).
pub fn special(a: IpAddr) -> Option<Special> {
    match a {
        IpAddr::V4(a) => special_v4(a.into()),
        IpAddr::V6(a) => special_v6(a.into()),
    }
}

/// A special block that shares an address with `net`: the narrowest that
/// contains it if any does, else the first (narrowest) that `net` covers.
pub fn special_overlapping(net: IpNet) -> Option<(IpNet, Special)> {
    let blocks: Vec<(IpNet, Special)> = match net {
        IpNet::V4(_) => TABLE_V4
            .iter()
            .map(|&(b, s)| (IpNet::V4(b.prefix()), s))
            .collect(),
        IpNet::V6(_) => TABLE_V6
            .iter()
            .map(|&(b, s)| (IpNet::V6(b.prefix()), s))
            .collect(),
    };
    let inside = blocks.iter().find(|(b, _)| b.contains(&net));
    inside
        .or_else(|| blocks.iter().find(|(b, _)| net.contains(b)))
        .copied()
}

/// The IPv4 address an IPv4-mapped or IPv4-compatible IPv6 address embeds.
pub fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    match special_v6(a.into()) {
        Some(Special::V4Mapped | Special::V4Compatible) => {
            Some(Ipv4Addr::from(u128::from(a) as u32))
        }
        _ => None,
    }
}

/// Whether a packet may never carry `src` (host order) as its IPv4 source:
/// "this network", loopback, multicast, reserved and broadcast (RFC 1812
/// section 5.3.7). Four shifts and compares, for the data plane.
#[inline]
pub const fn is_bad_source_v4(src: u32) -> bool {
    THIS_NETWORK_V4.contains(src)
        || LOOPBACK_V4.contains(src)
        || MULTICAST_V4.contains(src)
        || RESERVED_V4.contains(src)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Option<Special> {
        special(s.parse().unwrap())
    }

    #[test]
    fn ipv4_classes() {
        assert_eq!(v4("0.0.0.0"), Some(Special::Unspecified));
        assert_eq!(v4("0.1.2.3"), Some(Special::ThisNetwork));
        assert_eq!(v4("127.0.0.1"), Some(Special::Loopback));
        assert_eq!(v4("127.255.255.255"), Some(Special::Loopback));
        assert_eq!(v4("169.254.1.1"), Some(Special::LinkLocal));
        assert_eq!(v4("224.0.0.1"), Some(Special::Multicast));
        assert_eq!(v4("239.255.255.255"), Some(Special::Multicast));
        assert_eq!(v4("240.0.0.1"), Some(Special::Reserved));
        assert_eq!(v4("255.255.255.254"), Some(Special::Reserved));
        assert_eq!(v4("255.255.255.255"), Some(Special::Broadcast));
        // Ordinary unicast, the special-use blocks labs use included.
        for ok in [
            "1.0.0.0",
            "10.0.0.1",
            "100.64.0.1",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "223.255.255.255",
        ] {
            assert_eq!(v4(ok), None, "{ok}");
        }
    }

    #[test]
    fn ipv6_classes() {
        assert_eq!(v4("::"), Some(Special::Unspecified));
        assert_eq!(v4("::1"), Some(Special::Loopback));
        assert_eq!(v4("::2"), Some(Special::V4Compatible));
        assert_eq!(v4("::198.18.0.1"), Some(Special::V4Compatible));
        assert_eq!(v4("::ffff:198.18.0.1"), Some(Special::V4Mapped));
        assert_eq!(v4("100::1"), Some(Special::Discard));
        assert_eq!(v4("fe80::1"), Some(Special::LinkLocal));
        assert_eq!(v4("febf::1"), Some(Special::LinkLocal));
        assert_eq!(v4("ff02::1"), Some(Special::Multicast));
        for ok in [
            "::1:0:0:0",
            "100:0:0:1::",
            "2001:2::1",
            "2001:db8::1",
            "64:ff9b::1",
            "fc00::1",
            "fec0::1",
            "fe7f::1",
        ] {
            assert_eq!(v4(ok), None, "{ok}");
        }
        assert_eq!(
            embedded_v4("::ffff:198.18.0.1".parse().unwrap()),
            Some("198.18.0.1".parse().unwrap())
        );
        assert_eq!(
            embedded_v4("::198.18.0.1".parse().unwrap()),
            Some("198.18.0.1".parse().unwrap())
        );
        assert_eq!(embedded_v4("2001:2::1".parse().unwrap()), None);
    }

    #[test]
    fn tables_list_narrower_blocks_first() {
        // No block strictly contains a later one, and every block is a
        // network address with its declared length.
        let v4: Vec<IpNet> = TABLE_V4
            .iter()
            .map(|(b, _)| IpNet::V4(b.prefix()))
            .collect();
        let v6: Vec<IpNet> = TABLE_V6
            .iter()
            .map(|(b, _)| IpNet::V6(b.prefix()))
            .collect();
        for t in [v4, v6] {
            for (i, a) in t.iter().enumerate() {
                assert_eq!(a.trunc(), *a);
                for b in &t[i + 1..] {
                    assert!(!(a.contains(b) && a != b), "{a} is listed before {b}");
                }
            }
        }
        assert_eq!(
            TABLE_V4.map(|(b, _)| b.prefix().prefix_len()),
            TABLE_V4.map(|(b, _)| b.len)
        );
        assert_eq!(
            TABLE_V6.map(|(b, _)| b.prefix().prefix_len()),
            TABLE_V6.map(|(b, _)| b.len)
        );
    }

    #[test]
    fn prefixes_inside_or_covering_a_block() {
        let o = |s: &str| special_overlapping(s.parse().unwrap()).map(|(b, s)| (b.to_string(), s));
        assert_eq!(
            o("127.0.0.0/24"),
            Some(("127.0.0.0/8".into(), Special::Loopback))
        );
        assert_eq!(
            o("0.0.0.0/0"),
            Some(("0.0.0.0/32".into(), Special::Unspecified))
        );
        assert_eq!(
            o("128.0.0.0/1"),
            Some(("169.254.0.0/16".into(), Special::LinkLocal))
        );
        assert_eq!(
            o("192.0.0.0/2"),
            Some(("224.0.0.0/4".into(), Special::Multicast))
        );
        assert_eq!(
            o("255.255.255.255/32"),
            Some(("255.255.255.255/32".into(), Special::Broadcast))
        );
        assert_eq!(
            o("240.0.0.0/8"),
            Some(("240.0.0.0/4".into(), Special::Reserved))
        );
        assert_eq!(o("198.19.0.0/16"), None);
        assert_eq!(o("::/0"), Some(("::/128".into(), Special::Unspecified)));
        assert_eq!(
            o("fe80::/64"),
            Some(("fe80::/10".into(), Special::LinkLocal))
        );
        assert_eq!(o("2001:2::/48"), None);
        assert_eq!(o("fc00::/7"), None);
    }

    /// The data plane's source rule is exactly "this network", loopback,
    /// multicast, reserved and broadcast.
    #[test]
    fn bad_source_matches_the_classes() {
        let want = |a: u32| {
            matches!(
                special_v4(a),
                Some(
                    Special::Unspecified
                        | Special::ThisNetwork
                        | Special::Loopback
                        | Special::Multicast
                        | Special::Reserved
                        | Special::Broadcast
                )
            )
        };
        // Every /16 boundary and the addresses either side of it.
        for hi in 0..=u16::MAX {
            let a = u32::from(hi) << 16;
            for x in [a, a.wrapping_sub(1), a + 1, a | 0xffff] {
                assert_eq!(is_bad_source_v4(x), want(x), "{}", Ipv4Addr::from(x));
            }
        }
    }
}
