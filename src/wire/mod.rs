//! Wire layer: zero-copy views over packet bytes and emitters that write them.
//!
//! Every protocol module follows the same pattern (after smoltcp's `wire`):
//! - a view `Packet<T: AsRef<[u8]>>` (`Frame<T>` for Ethernet) over a caller's
//!   buffer. `new_checked` validates every length and fixed field **once**; after
//!   it returns `Ok`, no accessor can fail or panic, so accessors are plain
//!   `#[inline]` loads fit for the 20+ Mpps hot path. `new_unchecked` skips the
//!   validation for buffers the caller built itself (accessors may then panic on
//!   a short buffer, like slice indexing).
//! - setters on `Packet<T: AsRef<[u8]> + AsMut<[u8]>>` that patch fields in place.
//! - emitters (`emit`, `Repr::emit`) that write a fresh header into a buffer the
//!   caller sized. An emitter panics if handed a buffer shorter than it documents:
//!   that is a programming error, never a property of received input.
//!
//! Invariants: no I/O, no allocation, no clock, no `unsafe`; every function that
//! reads received bytes returns an [`Error`] rather than panicking, whatever the
//! input (checked by the fuzz loops in `fuzz_tests` below).
//!
//! Multi-byte fields are big-endian (network order) on the wire; accessors
//! return host values.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vxlan;

use core::fmt;

/// Why a buffer was refused by a `new_checked` constructor or a parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer ends before the header (or a length field) says it should.
    Truncated,
    /// A fixed field holds a value this layer does not accept; the text names it.
    Malformed(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated packet"),
            Error::Malformed(what) => write!(f, "malformed packet: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// Result of the wire layer's fallible operations.
pub type Result<T> = core::result::Result<T, Error>;

/// Big-endian field helpers shared by the protocol modules. Callers have
/// already checked the bounds (in `new_checked`), so these index directly.
pub(crate) mod field {
    /// A byte range within a header.
    pub type Field = core::ops::Range<usize>;

    // One bounds check per field (a range), not one per byte: the loads
    // then compile to a single unaligned load and a byte swap.
    #[inline(always)]
    pub fn get_u16(b: &[u8], at: usize) -> u16 {
        let mut v = [0u8; 2];
        v.copy_from_slice(&b[at..at + 2]);
        u16::from_be_bytes(v)
    }

    #[inline(always)]
    pub fn get_u32(b: &[u8], at: usize) -> u32 {
        let mut v = [0u8; 4];
        v.copy_from_slice(&b[at..at + 4]);
        u32::from_be_bytes(v)
    }

    #[inline(always)]
    pub fn set_u16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    #[inline(always)]
    pub fn set_u32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    #[inline(always)]
    pub fn get_mac(b: &[u8], at: usize) -> [u8; 6] {
        let mut m = [0u8; 6];
        m.copy_from_slice(&b[at..at + 6]);
        m
    }

    #[inline(always)]
    pub fn get_16(b: &[u8], at: usize) -> [u8; 16] {
        let mut m = [0u8; 16];
        m.copy_from_slice(&b[at..at + 16]);
        m
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    /// Parses a hex string with optional whitespace into bytes.
    pub fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
        assert!(digits.len() % 2 == 0, "odd hex length");
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(core::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    /// Small deterministic PRNG (xorshift64*) for the fuzz loops.
    pub struct Rng(pub u64);
    impl Rng {
        pub fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }
}

/// Never-panic checks: random bytes, truncations and single-byte mutations of
/// valid packets fed to every `new_checked`, then every accessor of each view
/// that was accepted.
#[cfg(test)]
mod fuzz_tests {
    use super::test_util::{hex, Rng};
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Parses `b` with every view and exercises every accessor, as a
    /// dataplane would. Must never panic.
    fn exercise(b: &[u8]) {
        let s4 = Ipv4Addr::new(198, 18, 0, 1);
        let s6 = Ipv6Addr::LOCALHOST;
        if let Ok(f) = ethernet::Frame::new_checked(b) {
            let _ = (
                f.dst(),
                f.src(),
                f.ethertype(),
                f.outer_ethertype(),
                f.vlan_tags(),
                f.vlan_id(),
            );
            let _ = (f.payload_offset(), f.payload().len());
            let mut m = b.to_vec();
            let mut f = ethernet::Frame::new_checked(&mut m[..]).unwrap();
            f.set_inner_ethertype(0x0800);
            f.payload_mut().fill(0);
        }
        if let Ok(p) = arp::Packet::new_checked(b) {
            let _ = (
                p.operation(),
                p.sender_mac(),
                p.sender_ip(),
                p.target_mac(),
                p.target_ip(),
            );
            let mut m = b.to_vec();
            arp::Packet::new_checked(&mut m[..])
                .unwrap()
                .make_reply_in_place([1; 6]);
        }
        if let Ok(p) = ipv4::Packet::new_checked(b) {
            let _ = (
                p.version(),
                p.header_len(),
                p.total_len(),
                p.ident(),
                p.dont_frag(),
                p.more_frags(),
            );
            let _ = (
                p.frag_offset(),
                p.is_fragment(),
                p.ttl(),
                p.protocol(),
                p.checksum(),
                p.src(),
                p.dst(),
            );
            let _ = (
                p.verify_checksum(),
                p.options().len(),
                p.header().len(),
                p.payload().len(),
            );
            let _ = ipv4::Repr::parse(&p);
            let mut m = b.to_vec();
            let mut p = ipv4::Packet::new_checked(&mut m[..]).unwrap();
            let was = p.verify_checksum();
            p.dec_ttl_incremental();
            assert_eq!(p.verify_checksum(), was);
            p.fill_checksum();
            assert!(p.verify_checksum());
            p.payload_mut().fill(0);
        }
        if let Ok(p) = ipv6::Packet::new_checked(b) {
            let _ = (
                p.version(),
                p.traffic_class(),
                p.flow_label(),
                p.payload_len(),
                p.next_header(),
            );
            let _ = (
                p.hop_limit(),
                p.src(),
                p.dst(),
                p.src_u128(),
                p.dst_u128(),
                p.payload().len(),
            );
            let _ = ipv6::Repr::parse(&p);
            if let Ok((_, off, _)) = p.upper_layer() {
                assert!(off <= p.total_len());
                exercise_l4(&b[off..p.total_len()]);
            }
        }
        exercise_l4(b);
        if let Ok(p) = icmpv4::Packet::new_checked(b) {
            let _ = (
                p.msg_type(),
                p.code(),
                p.checksum(),
                p.rest_of_header(),
                p.echo_ident(),
                p.echo_seq(),
            );
            let _ = (p.next_hop_mtu(), p.data().len(), p.verify_checksum());
            let mut m = b.to_vec();
            let mut p = icmpv4::Packet::new_checked(&mut m[..]).unwrap();
            let was = p.verify_checksum();
            p.make_echo_reply_in_place();
            // A valid message stays valid (the reply path verifies first).
            assert!(!was || p.verify_checksum(), "{b:02x?}");
        }
        if let Ok(p) = icmpv6::Packet::new_checked(b) {
            let _ = (
                p.msg_type(),
                p.code(),
                p.checksum(),
                p.mtu(),
                p.na_flags(),
                p.target_addr(),
            );
            let _ = (
                p.source_ll_addr(),
                p.target_ll_addr(),
                p.nd_options().len(),
                p.data().len(),
            );
            let _ = p.verify_checksum(s6, s6);
        }
        if let Ok(p) = vxlan::Packet::new_checked(b) {
            let _ = (p.flags(), p.has_vni_flag(), p.vni(), p.payload().len());
        }
        if let Ok(p) = udp::Packet::new_checked(b) {
            let _ = p.verify_checksum_v4(s4, s4);
        }
    }

    fn exercise_l4(b: &[u8]) {
        if let Ok(p) = tcp::Packet::new_checked(b) {
            let _ = (
                p.src_port(),
                p.dst_port(),
                p.seq_number(),
                p.ack_number(),
                p.header_len(),
                p.reserved(),
            );
            let _ = (
                p.flags(),
                p.window(),
                p.checksum(),
                p.urgent(),
                p.options().len(),
                p.payload().len(),
            );
            let mut m = b.to_vec();
            let mut p = tcp::Packet::new_checked(&mut m[..]).unwrap();
            p.set_seq_number(1);
            p.set_flags(tcp::FLAG_ACK);
            p.set_checksum(0);
        }
        if let Ok(p) = udp::Packet::new_checked(b) {
            let _ = (
                p.src_port(),
                p.dst_port(),
                p.len(),
                p.checksum(),
                p.payload().len(),
            );
            let _ = p.verify_checksum_v6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST);
            let mut m = b.to_vec();
            let mut p = udp::Packet::new_checked(&mut m[..]).unwrap();
            p.fill_checksum_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST);
            assert!(p.verify_checksum_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST));
            p.fill_checksum_v6(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
            assert!(p.verify_checksum_v6(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED));
        }
        if let Ok(p) = icmpv6::Packet::new_checked(b) {
            let mut m = b.to_vec();
            let mut q = icmpv6::Packet::new_checked(&mut m[..]).unwrap();
            q.fill_checksum(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
            assert!(q.verify_checksum(Ipv6Addr::UNSPECIFIED, Ipv6Addr::LOCALHOST));
            let _ = p.target_addr();
        }
    }

    /// Valid packets at every layer, so mutations reach deep code paths.
    fn seeds() -> Vec<Vec<u8>> {
        let mut v = vec![
            hex("ffffffffffff 020000000001 88a8 0064 8100 00c8 0806 0001 0800 0604 0001 020000000001 c6120001 000000000000 c6120002"),
            hex("4600001c 12342001 0111 0000 c6120001 c6130102 01010100 0800f7ff00000000"),
            hex("6000000000203c40 20010db8000000000000000000000001 20010db8000000000000000000000002
                 2c00 0000 00000000  3a00 0001 00000042  8700 0000 00000000 20010db8000000000000000000000002"),
            hex("8700 0000 00000000 20010db8000000000000000000000002 0101 020000000001"),
            hex("08000000 00002a00 020000000002 020000000001 86dd"),
        ];
        // A full VXLAN-over-IPv4 frame built with our emitters.
        let mut f = vec![0u8; 14 + 20 + 8 + 8 + 14 + 20 + 8 + 4];
        ethernet::emit(&mut f, [2; 6], [4; 6], ethernet::ETHERTYPE_IPV4);
        let repr = ipv4::Repr {
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 18, 0, 2),
            protocol: ipv4::PROTO_UDP,
            ttl: 64,
            payload_len: 8 + 8 + 14 + 20 + 8 + 4,
            dont_frag: true,
            ident: 0,
        };
        repr.emit(&mut f[14..]);
        udp::emit(
            &mut f[34..],
            50000,
            vxlan::DEFAULT_PORT,
            8 + 14 + 20 + 8 + 4,
        );
        vxlan::emit(&mut f[42..], 42);
        ethernet::emit(&mut f[50..], [6; 6], [8; 6], ethernet::ETHERTYPE_IPV4);
        ipv4::Repr {
            payload_len: 12,
            ..repr
        }
        .emit(&mut f[64..]);
        udp::emit(&mut f[84..], 1, 2, 4);
        v.push(f);
        v
    }

    #[test]
    fn random_bytes_and_truncations() {
        let mut rng = Rng(0xdead_beef);
        for _ in 0..20_000 {
            let len = rng.below(120);
            let b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            exercise(&b);
        }
        for seed in seeds() {
            for n in 0..=seed.len() {
                exercise(&seed[..n]);
                exercise(&seed[seed.len() - n..]);
            }
            for _ in 0..5_000 {
                let mut m = seed.clone();
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(m.len());
                    m[at] = match rng.below(4) {
                        0 => 0,
                        1 => 0xff,
                        _ => rng.next() as u8,
                    };
                }
                let cut = rng.below(m.len() + 1);
                exercise(&m[..cut]);
                // Also parse from every plausible header offset of a frame.
                for off in [14, 18, 22, 34, 40, 42, 50, 64, 84] {
                    if off <= cut {
                        exercise(&m[off..cut]);
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        #[test]
        fn proptest_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            exercise(&b);
        }

        #[test]
        fn proptest_ipv6_ext_walk(nh in any::<u8>(), exts in proptest::collection::vec(any::<u8>(), 0..96), cut in 0usize..140) {
            let mut b = hex("6000000000003c40 20010db8000000000000000000000001 20010db8000000000000000000000002");
            b[4..6].copy_from_slice(&(exts.len() as u16).to_be_bytes());
            b[6] = nh;
            b.extend_from_slice(&exts);
            let cut = cut.min(b.len());
            exercise(&b[..cut]);
            exercise(&b);
        }
    }

    #[test]
    fn vxlan_frame_decodes_with_etherparse() {
        let f = seeds().pop().unwrap();
        let outer = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        match outer.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => {
                assert_eq!(ip.header().source(), [198, 18, 0, 1]);
                assert!(ip.header().dont_fragment());
                assert_eq!(usize::from(ip.header().total_len()), f.len() - 14);
            }
            other => panic!("unexpected {other:?}"),
        }
        let vx = match outer.transport {
            Some(etherparse::TransportSlice::Udp(u)) => {
                assert_eq!(u.destination_port(), 4789);
                assert_eq!(usize::from(u.length()), f.len() - 34);
                u.payload().to_vec()
            }
            other => panic!("unexpected {other:?}"),
        };
        let v = vxlan::Packet::new_checked(&vx[..]).unwrap();
        assert_eq!(v.vni(), 42);
        let inner = etherparse::SlicedPacket::from_ethernet(v.payload()).unwrap();
        assert!(matches!(
            inner.transport,
            Some(etherparse::TransportSlice::Udp(_))
        ));
        // And our own views walk it end to end.
        let e = ethernet::Frame::new_checked(&f[..]).unwrap();
        let ip = ipv4::Packet::new_checked(e.payload()).unwrap();
        assert!(ip.verify_checksum());
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        assert!(u.verify_checksum_v4(ip.src(), ip.dst()));
        let v = vxlan::Packet::new_checked(u.payload()).unwrap();
        let ie = ethernet::Frame::new_checked(v.payload()).unwrap();
        let iip = ipv4::Packet::new_checked(ie.payload()).unwrap();
        assert_eq!(iip.payload().len(), 12);
    }
}
