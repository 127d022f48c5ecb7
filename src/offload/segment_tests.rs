//! Tests of super-packet parsing and segmentation: plain IP super-packets
//! against tun-rs' `gso_split` (an independent segmenter), tunnelled ones
//! field by field, and every truncation and mutation refused without a
//! panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use tun_rs::{
    gso_split, VirtioNetHdr, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP_L4,
};

use super::*;
use crate::offload::layout::{Encap, Gso, MAX_SUPER_L3};
use crate::wire::checksum::{fold, pseudo_v4, pseudo_v6, sum};
use crate::wire::field::get_u16 as be16;
use crate::wire::tcp;

const SRC4: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 2);
const DST4: Ipv4Addr = Ipv4Addr::new(198, 19, 2, 2);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 2);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 2);
const OUT4: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)];
const OUT6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0x2001, 2, 0xff, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 2, 0xff, 0, 0, 0, 0, 2),
];

/// A TCP super-packet as an IP packet: `v6`, `ip_opts` bytes of IPv4
/// options, `tcp_opts` bytes of TCP options, `flags`, `data` as payload.
/// The TCP checksum field holds junk: it is not valid in a super-packet.
pub(crate) fn super_ip(
    v6: bool,
    ip_opts: usize,
    tcp_opts: usize,
    flags: u8,
    data: &[u8],
) -> Vec<u8> {
    let ihl = if v6 { 40 } else { 20 + ip_opts };
    let thl = 20 + tcp_opts;
    let total = ihl + thl + data.len();
    let mut p = vec![0u8; total];
    if v6 {
        p[0] = 0x60;
        p[1] = 0x0a;
        p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        p[6] = 6;
        p[7] = 63;
        p[8..24].copy_from_slice(&SRC6.octets());
        p[24..40].copy_from_slice(&DST6.octets());
    } else {
        p[0] = 0x40 | (ihl / 4) as u8;
        p[1] = 0x02;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0xfff0u16.to_be_bytes()); // wraps across segments
        p[6] = 0x40;
        p[8] = 63;
        p[9] = 6;
        p[12..16].copy_from_slice(&SRC4.octets());
        p[16..20].copy_from_slice(&DST4.octets());
        for b in &mut p[20..ihl] {
            *b = 1; // NOP options
        }
        let c = !fold(sum(&p[..ihl]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let t = &mut p[ihl..];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    t[4..8].copy_from_slice(&0xffff_f000u32.to_be_bytes()); // wraps too
    t[8..12].copy_from_slice(&77u32.to_be_bytes());
    t[12] = ((thl / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&512u16.to_be_bytes());
    t[16..18].copy_from_slice(&0xbeefu16.to_be_bytes());
    for (i, b) in t[20..thl].iter_mut().enumerate() {
        *b = if i % 4 == 0 { 1 } else { 0x5a };
    }
    t[thl..].copy_from_slice(data);
    p
}

/// A UDP super-packet as a container's `UDP_SEGMENT` write: lengths of the
/// whole, the checksum field junk.
pub(crate) fn super_udp(v6: bool, data: &[u8]) -> Vec<u8> {
    let ihl = if v6 { 40 } else { 20 };
    let total = ihl + 8 + data.len();
    let mut p = vec![0u8; total];
    if v6 {
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        p[6] = 17;
        p[7] = 64;
        p[8..24].copy_from_slice(&SRC6.octets());
        p[24..40].copy_from_slice(&DST6.octets());
    } else {
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&SRC4.octets());
        p[16..20].copy_from_slice(&DST4.octets());
        let c = !fold(sum(&p[..20]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let u = &mut p[ihl..];
    u[0..2].copy_from_slice(&4433u16.to_be_bytes());
    u[2..4].copy_from_slice(&443u16.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u[6..8].copy_from_slice(&0xbeefu16.to_be_bytes());
    u[8..].copy_from_slice(data);
    p
}

/// `ip` behind VXLAN: outer Ethernet, IPv4 or IPv6, UDP (checksum zero),
/// VXLAN, inner Ethernet.
pub(crate) fn tunnelled(ip: &[u8], outer_v6: bool) -> Vec<u8> {
    let olen = if outer_v6 { 40 } else { 20 };
    let inner_v6 = ip[0] >> 4 == 6;
    let total = 14 + olen + 8 + 8 + 14 + ip.len();
    let mut f = vec![0u8; total];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&(if outer_v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
    let o = &mut f[14..];
    if outer_v6 {
        o[0] = 0x60;
        o[4..6].copy_from_slice(&((total - 14 - 40) as u16).to_be_bytes());
        o[6] = 17;
        o[7] = 64;
        o[8..24].copy_from_slice(&OUT6[0].octets());
        o[24..40].copy_from_slice(&OUT6[1].octets());
    } else {
        o[0] = 0x45;
        o[2..4].copy_from_slice(&((total - 14) as u16).to_be_bytes());
        o[6] = 0x40;
        o[8] = 64;
        o[9] = 17;
        o[12..16].copy_from_slice(&OUT4[0].octets());
        o[16..20].copy_from_slice(&OUT4[1].octets());
        let c = !fold(sum(&o[..20]));
        o[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let u = &mut o[olen..];
    u[0..2].copy_from_slice(&50000u16.to_be_bytes());
    u[2..4].copy_from_slice(&4789u16.to_be_bytes());
    u[4..6].copy_from_slice(&((total - 14 - olen) as u16).to_be_bytes());
    u[8] = 0x08;
    u[12..15].copy_from_slice(&[0, 0, 42]);
    let ie = &mut u[16..];
    ie[..6].copy_from_slice(&[2, 0x42, 0, 0, 0, 2]);
    ie[6..12].copy_from_slice(&[2, 0x42, 0, 0, 0, 1]);
    ie[12..14].copy_from_slice(&(if inner_v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
    ie[14..].copy_from_slice(ip);
    f
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 + i / 199) as u8).collect()
}

fn segments(f: &[u8], eth: bool, size: u16, udp6: bool) -> Vec<Vec<u8>> {
    let l = Layout::parse(
        f,
        if eth { Encap::Vxlan } else { Encap::Ip },
        Gso { size, segs: 0 },
    )
    .unwrap();
    (0..l.segments)
        .map(|i| {
            let mut s = vec![0u8; l.segment_len(i)];
            let r = write_headers(f, &l, i, &mut s, udp6);
            s[l.payload..].copy_from_slice(&f[r]);
            s
        })
        .collect()
}

/// tun-rs' segmentation of a plain IP super-packet (TCP or UDP).
fn reference(ip: &[u8], size: u16) -> Vec<Vec<u8>> {
    let v6 = ip[0] >> 4 == 6;
    let l4 = if v6 {
        40
    } else {
        usize::from(ip[0] & 0x0f) * 4
    };
    let udp = ip[if v6 { 6 } else { 9 }] == 17;
    let thl = if udp {
        8
    } else {
        usize::from(ip[l4 + 12] >> 4) * 4
    };
    let hdr = VirtioNetHdr {
        flags: 1,
        gso_type: match (udp, v6) {
            (true, _) => VIRTIO_NET_HDR_GSO_UDP_L4,
            (false, true) => VIRTIO_NET_HDR_GSO_TCPV6,
            (false, false) => VIRTIO_NET_HDR_GSO_TCPV4,
        },
        hdr_len: (l4 + thl) as u16,
        gso_size: size,
        csum_start: l4 as u16,
        csum_offset: if udp { 6 } else { 16 },
    };
    let n = (ip.len() - l4 - thl).div_ceil(usize::from(size));
    let mut bufs = vec![vec![0u8; l4 + thl + usize::from(size)]; n];
    let mut sizes = vec![0usize; n];
    let mut input = ip.to_vec();
    let got = gso_split(&mut input, hdr, &mut bufs, &mut sizes, 0, v6).unwrap();
    assert_eq!(got, n);
    bufs.into_iter()
        .zip(sizes)
        .map(|(mut b, s)| {
            b.truncate(s);
            b
        })
        .collect()
}

/// Checks a tunnelled segment's outer headers and returns its inner packet.
fn check_outer(s: &[u8], outer_v6: bool, udp6_csum: bool) -> Vec<u8> {
    let olen = if outer_v6 { 40 } else { 20 };
    let o = &s[14..];
    if outer_v6 {
        assert_eq!(
            usize::from(be16(o, 4)),
            o.len() - 40,
            "outer payload length"
        );
    } else {
        assert_eq!(usize::from(be16(o, 2)), o.len(), "outer total length");
        assert_eq!(fold(sum(&o[..20])), 0xffff, "outer header checksum");
    }
    let u = &o[olen..];
    assert_eq!(usize::from(be16(u, 4)), u.len(), "UDP length");
    if outer_v6 && udp6_csum {
        let p = pseudo_v6(OUT6[0], OUT6[1], 17, u.len() as u32);
        assert_eq!(fold(p + sum(u)), 0xffff, "outer UDP checksum");
    } else {
        assert_eq!(be16(u, 6), 0, "outer UDP checksum left zero");
    }
    u[8 + 8 + 14..].to_vec()
}

fn tcp_checksum_ok(ip: &[u8]) -> bool {
    l4_checksum_ok(ip, 6)
}

fn l4_checksum_ok(ip: &[u8], proto: u8) -> bool {
    if ip[0] >> 4 == 6 {
        fold(pseudo_v6(SRC6, DST6, proto, (ip.len() - 40) as u32) + sum(&ip[40..])) == 0xffff
    } else {
        let l4 = usize::from(ip[0] & 0x0f) * 4;
        fold(pseudo_v4(SRC4, DST4, proto, (ip.len() - l4) as u16) + sum(&ip[l4..])) == 0xffff
    }
}

#[test]
fn udp_super_packets_segment_as_tun_rs_does() {
    for v6 in [false, true] {
        for (n, size) in [
            (1200 * 40, 1200u16),
            (10_001, 1000),
            (64 * 30, 64),
            (5, 100),
        ] {
            let ip = super_udp(v6, &data(n));
            let l = Layout::parse(&ip, Encap::Ip, Gso { size, segs: 0 }).unwrap();
            assert!(l.udp);
            assert_eq!(l.payload, if v6 { 48 } else { 28 });
            let ours = segments(&ip, false, size, false);
            assert_eq!(ours, reference(&ip, size), "{n} bytes at {size}, v6 {v6}");
            for s in &ours {
                assert!(l4_checksum_ok(s, 17));
            }
            // And behind VXLAN: the same datagrams inside.
            for outer_v6 in [false, true] {
                let f = tunnelled(&ip, outer_v6);
                let cut = segments(&f, true, size, true);
                for (s, want) in cut.iter().zip(&ours) {
                    assert_eq!(&check_outer(s, outer_v6, true), want);
                }
            }
        }
    }
}

#[test]
fn udp_lengths_must_describe_the_packet() {
    let g = Gso {
        size: 1000,
        segs: 0,
    };
    let ip = super_udp(false, &data(3000));
    assert!(Layout::parse(&ip, Encap::Ip, g).is_ok());
    let mut lying = ip.clone();
    lying[20 + 4..20 + 6].copy_from_slice(&100u16.to_be_bytes());
    assert!(Layout::parse(&lying, Encap::Ip, g).is_err());
    let bare = super_udp(true, &[]);
    assert!(Layout::parse(&bare, Encap::Ip, g).is_err());
    // An ICMP packet is neither.
    let mut icmp = ip.clone();
    icmp[9] = 1;
    assert!(Layout::parse(&icmp, Encap::Ip, g).is_err());
}

#[test]
fn plain_super_packets_segment_as_tun_rs_does() {
    for v6 in [false, true] {
        for (n, size) in [
            (1448 * 44, 1448u16),
            (10_000, 1000),
            (536 * 122 + 7, 536),
            (1, 100),
        ] {
            let ip = super_ip(
                v6,
                if v6 { 0 } else { 8 },
                12,
                0x18 | tcp::FLAG_CWR,
                &data(n),
            );
            let ours = segments(&ip, false, size, false);
            let theirs = reference(&ip, size);
            assert_eq!(ours.len(), theirs.len());
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                assert_eq!(a, b, "segment {i} of {n} bytes at {size}, v6 {v6}");
                assert!(tcp_checksum_ok(a));
            }
        }
    }
}

#[test]
fn tunnelled_segments_carry_the_inner_segments_whole() {
    for outer_v6 in [false, true] {
        for udp6 in [false, true] {
            for inner_v6 in [false, true] {
                let ip = super_ip(inner_v6, 0, 12, 0x19, &data(20_000));
                let f = tunnelled(&ip, outer_v6);
                let l = Layout::parse(
                    &f,
                    Encap::Vxlan,
                    Gso {
                        size: 1398,
                        segs: 0,
                    },
                )
                .unwrap();
                assert!(l.tunnel.is_some());
                assert_eq!(l.l3, 14 + if outer_v6 { 40 } else { 20 } + 30);
                let ours = segments(&f, true, 1398, udp6);
                let inner = reference(&ip, 1398);
                assert_eq!(ours.len(), inner.len());
                for (s, want) in ours.iter().zip(&inner) {
                    assert_eq!(&check_outer(s, outer_v6, udp6), want);
                    // Everything before the outer lengths is the template's.
                    assert_eq!(s[..14], f[..14]);
                }
            }
        }
    }
}

#[test]
fn parse_refuses_what_is_not_a_tcp_super_packet() {
    let ip = super_ip(false, 0, 0, 0x10, &data(3000));
    let f = tunnelled(&ip, false);
    assert!(Layout::parse(
        &f,
        Encap::Vxlan,
        Gso {
            size: 1000,
            segs: 0
        }
    )
    .is_ok());
    assert!(Layout::parse(&f, Encap::Vxlan, Gso { size: 0, segs: 0 }).is_err());
    assert!(Layout::parse(
        &ip,
        Encap::Ip,
        Gso {
            size: 1000,
            segs: 0
        }
    )
    .is_ok());
    // Raw IP read as Ethernet, or the reverse.
    assert!(Layout::parse(
        &ip,
        Encap::Eth,
        Gso {
            size: 1000,
            segs: 0
        }
    )
    .is_err());
    assert!(Layout::parse(
        &f,
        Encap::Ip,
        Gso {
            size: 1000,
            segs: 0
        }
    )
    .is_err());
    // UDP inside: not TCP.
    let mut u = ip.clone();
    u[9] = 17;
    assert!(Layout::parse(
        &u,
        Encap::Ip,
        Gso {
            size: 1000,
            segs: 0
        }
    )
    .is_err());
    // A fragment.
    let mut g = ip.clone();
    g[6] = 0x20;
    assert!(Layout::parse(
        &g,
        Encap::Ip,
        Gso {
            size: 1000,
            segs: 0
        }
    )
    .is_err());
    // No payload.
    let bare = super_ip(true, 0, 0, 0x10, &[]);
    assert!(Layout::parse(
        &bare,
        Encap::Ip,
        Gso {
            size: 1000,
            segs: 0
        }
    )
    .is_err());
    // Too large to encapsulate.
    let big = super_ip(true, 0, 0, 0x10, &data(MAX_SUPER_L3 - 60 + 1));
    assert!(Layout::parse(
        &big,
        Encap::Ip,
        Gso {
            size: 1000,
            segs: 0
        }
    )
    .is_err());
    let fits = super_ip(true, 0, 0, 0x10, &data(MAX_SUPER_L3 - 60));
    assert!(Layout::parse(
        &fits,
        Encap::Ip,
        Gso {
            size: 1000,
            segs: 0
        }
    )
    .is_ok());
    // Every cut is refused: the lengths no longer match.
    for cut in 0..f.len() {
        assert!(
            Layout::parse(
                &f[..cut],
                Encap::Vxlan,
                Gso {
                    size: 1000,
                    segs: 0
                }
            )
            .is_err(),
            "cut {cut}"
        );
    }
}

#[test]
fn partial_checksum_completes_to_the_real_one_for_one_segment() {
    let ip = super_ip(false, 0, 12, 0x18, &data(900));
    let l = Layout::parse(
        &ip,
        Encap::Ip,
        Gso {
            size: 1000,
            segs: 0,
        },
    )
    .unwrap();
    let mut p = ip.clone();
    p[l.l4 + 16..l.l4 + 18].copy_from_slice(&l.partial_checksum(&ip).to_be_bytes());
    // Completing CHECKSUM_PARTIAL: the complement of the sum from csum_start.
    let c = !fold(sum(&p[l.l4..]));
    p[l.l4 + 16..l.l4 + 18].copy_from_slice(&c.to_be_bytes());
    assert!(tcp_checksum_ok(&p));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_super_packet_segments_as_tun_rs_does(
        v6 in any::<bool>(),
        ip_opts in 0usize..=10,
        tcp_opts in 0usize..=10,
        n in 1usize..20_000,
        size in 1u16..2000,
        flags in prop::sample::select(vec![0x10u8, 0x18, 0x19, 0x90, 0x98]),
    ) {
        let ip = super_ip(v6, ip_opts * 4, tcp_opts * 4, flags, &data(n));
        prop_assert_eq!(segments(&ip, false, size, false), reference(&ip, size));
    }

    #[test]
    fn any_udp_super_packet_segments_as_tun_rs_does(
        v6 in any::<bool>(),
        n in 1usize..20_000,
        size in 1u16..2000,
    ) {
        let ip = super_udp(v6, &data(n));
        prop_assert_eq!(segments(&ip, false, size, false), reference(&ip, size));
    }

    #[test]
    fn mutated_frames_never_panic(
        outer_v6 in any::<bool>(),
        at in 0usize..120,
        val in any::<u8>(),
        size in 1u16..1500,
    ) {
        let ip = super_ip(false, 0, 12, 0x18, &data(4000));
        let mut f = tunnelled(&ip, outer_v6);
        f[at] = val;
        if let Ok(l) = Layout::parse(&f, Encap::Vxlan, Gso { size, segs: 0 }) {
            for i in 0..l.segments {
                let mut s = vec![0u8; l.segment_len(i)];
                let r = write_headers(&f, &l, i, &mut s, true);
                prop_assert_eq!(r.len() + l.payload, s.len());
            }
        }
    }
}
