//! Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Layer: shared by IPv4, UDP, ICMP and ICMPv6. The one's-complement sum is
//! independent of byte order (RFC 1071 §2(B)), so [`sum`] adds the buffer as
//! native-endian 64-bit words (two 32-bit halves into a 64-bit accumulator,
//! which cannot overflow below 2^32 words), folds, and swaps once at the end.
//!
//! Values returned by [`sum`], [`pseudo_v4`] and [`pseudo_v6`] are partial sums
//! in host order, each at most `0xffff`; add up to 65 537 of them in a `u32`
//! and [`fold`] the result. Concatenating slices is only valid when every slice
//! but the last has even length (odd bytes pair with the next byte on the wire).
//! The checksum field itself is `!fold(total)`; a received packet verifies when
//! `fold(total including the checksum field) == 0xffff`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// One's-complement sum of `data` as big-endian 16-bit words, with an odd
/// trailing byte padded by a zero byte. Returned folded to at most `0xffff`.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    // Each 64-bit word is added as two 32-bit halves: independent adds (no
    // carry chain), and the 64-bit accumulator cannot overflow below 2^31
    // words, far beyond any packet.
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        acc += (v >> 32) + (v & 0xffff_ffff);
    }
    // Tail of 0-7 bytes: one optional 4-, 2- and 1-byte step each.
    let mut rest = words.remainder();
    let mut tail: u64 = 0;
    if rest.len() >= 4 {
        tail += u64::from(u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        tail += u64::from(u16::from_ne_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [last] = rest {
        tail += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    acc += tail;
    fold_native(acc)
}

/// [`sum`] of a fixed `N` bytes, `N` a multiple of 4 (an IPv4 header
/// without options): always inlined, so the per-packet header checks get
/// `N / 4` loads and adds with no loop, no tail and no call.
#[inline(always)]
pub fn sum_words<const N: usize>(data: &[u8; N]) -> u32 {
    const { assert!(N % 4 == 0) };
    let mut acc: u64 = 0;
    for w in data.chunks_exact(4) {
        acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    fold_native(acc)
}

/// The 16-bit one's-complement sum of `acc`, a sum of native-endian
/// words, in host order.
#[inline(always)]
fn fold_native(acc: u64) -> u32 {
    // Fold 64 -> 16 bits with end-around carries, still in native byte order
    // (a 32- or 64-bit native word is its 16-bit words times powers of 2^16,
    // and 2^16 = 1 modulo 0xffff, so the folds keep the sum).
    let s = (acc >> 32) + (acc & 0xffff_ffff);
    let s = (s >> 32) + (s & 0xffff_ffff);
    let s = (s >> 16) + (s & 0xffff);
    let s = (s >> 16) + (s & 0xffff);
    // A sum of byte-swapped words is the byte-swapped sum (RFC 1071 §2(B)).
    u32::from(u16::from_be(s as u16))
}

/// Folds a 32-bit accumulation of partial sums into 16 bits (end-around carry).
/// The result is not complemented.
#[inline]
pub fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The checksum field value for `data`: `!fold(sum(data))`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Partial sum of the IPv4 pseudo-header (RFC 768, RFC 793 §3.1): source,
/// destination, zero + protocol, and the upper-layer length.
#[inline]
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    let acc =
        (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + u32::from(protocol) + u32::from(len);
    u32::from(fold(acc))
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination,
/// 32-bit upper-layer length, three zero bytes and the next header value.
#[inline]
pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u32 {
    let mut acc: u64 = 0;
    for a in [u128::from(src), u128::from(dst)] {
        acc += (a >> 96) as u64 & 0xffff_ffff;
        acc += (a >> 64) as u64 & 0xffff_ffff;
        acc += (a >> 32) as u64 & 0xffff_ffff;
        acc += a as u64 & 0xffff_ffff;
    }
    acc += u64::from(len) + u64::from(next_header);
    // Each 32-bit value is two 16-bit words; fold them all.
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    u32::from(fold(acc as u32))
}

/// Incremental update of a checksum field when one 16-bit word of the covered
/// data changes from `old` to `new`.
///
/// RFC 1624 §3, eqn. 3: `HC' = ~(~HC + ~m + m')`. Unlike eqn. 2 this never
/// produces the `-0` (0x0000 from 0xffff) ambiguity the RFC warns about.
#[inline]
pub fn update16(old_csum: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!old_csum) + u32::from(!old) + u32::from(new);
    !fold(s)
}

/// [`update16`] for a 32-bit change (an IPv4 address): two words at once.
#[inline]
pub fn update32(old_csum: u16, old: u32, new: u32) -> u16 {
    let s = u32::from(!old_csum)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    !fold(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::{hex, Rng};

    /// Straightforward RFC 1071 reference: big-endian 16-bit words into u64.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            acc += u64::from(w);
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        assert_eq!(fold(sum(&hex("0001f203f4f5f6f7"))), 0xddf2);
    }

    #[test]
    fn matches_reference_all_lengths() {
        let mut rng = Rng(0x1234_5678);
        for len in 0..300 {
            for _ in 0..8 {
                let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                assert_eq!(fold(sum(&data)), reference_sum(&data), "len {len}");
            }
        }
        let ones = vec![0xffu8; 70_000];
        assert_eq!(fold(sum(&ones)), reference_sum(&ones));
    }

    #[test]
    fn sum_words_matches_sum() {
        let mut rng = Rng(0x8765_4321);
        for _ in 0..2000 {
            let mut h = [0u8; 20];
            h.iter_mut().for_each(|b| *b = rng.next() as u8);
            assert_eq!(sum_words(&h), sum(&h));
            let mut w = [0u8; 60];
            w.iter_mut().for_each(|b| *b = rng.next() as u8);
            assert_eq!(sum_words(&w), sum(&w));
        }
        assert_eq!(sum_words(&[0xffu8; 20]), sum(&[0xffu8; 20]));
        assert_eq!(sum_words(&[0u8; 20]), 0);
    }

    #[test]
    fn ipv4_header_checksum_known() {
        // Wikipedia's IPv4 header example; checksum b861.
        let h = hex("450000730000400040110000c0a80001c0a800c7");
        assert_eq!(checksum(&h), 0xb861);
        let mut full = h.clone();
        full[10] = 0xb8;
        full[11] = 0x61;
        assert_eq!(fold(sum(&full)), 0xffff);
    }

    #[test]
    fn pseudo_headers_match_reference() {
        let s4 = Ipv4Addr::new(198, 18, 0, 1);
        let d4 = Ipv4Addr::new(198, 19, 255, 254);
        let mut b = Vec::new();
        b.extend_from_slice(&s4.octets());
        b.extend_from_slice(&d4.octets());
        b.extend_from_slice(&[0, 17, 0x05, 0xdc]);
        assert_eq!(pseudo_v4(s4, d4, 17, 1500) as u16, reference_sum(&b));

        let s6: Ipv6Addr = "2001:db8::ffff:1".parse().unwrap();
        let d6: Ipv6Addr = "fe80::ffff:ffff:ffff:ffff".parse().unwrap();
        let mut b = Vec::new();
        b.extend_from_slice(&s6.octets());
        b.extend_from_slice(&d6.octets());
        b.extend_from_slice(&70_000u32.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(pseudo_v6(s6, d6, 58, 70_000) as u16, reference_sum(&b));
    }

    #[test]
    fn incremental_matches_full_recompute() {
        let mut rng = Rng(99);
        for _ in 0..10_000 {
            let mut data: Vec<u8> = (0..20).map(|_| rng.next() as u8).collect();
            data[10] = 0;
            data[11] = 0;
            let c = checksum(&data);
            data[10..12].copy_from_slice(&c.to_be_bytes());
            let at = rng.below(10) * 2;
            let at = if at == 10 { 8 } else { at };
            let old = u16::from_be_bytes([data[at], data[at + 1]]);
            let new = rng.next() as u16;
            data[at..at + 2].copy_from_slice(&new.to_be_bytes());
            let inc = update16(c, old, new);
            data[10..12].copy_from_slice(&inc.to_be_bytes());
            assert_eq!(fold(sum(&data)), 0xffff);

            let old32 = u32::from_be_bytes([data[12], data[13], data[14], data[15]]);
            let new32 = rng.next() as u32;
            data[12..16].copy_from_slice(&new32.to_be_bytes());
            let inc = update32(inc, old32, new32);
            data[10..12].copy_from_slice(&inc.to_be_bytes());
            assert_eq!(fold(sum(&data)), 0xffff);
        }
    }
}
