//! UDP (RFC 768) with checksums over the IPv4 and IPv6 pseudo-headers.
//!
//! Layer: transport (the VXLAN carrier). Invariant after
//! [`Packet::new_checked`]: `8 <= len() <= buffer.len()`; [`Packet::payload`]
//! and the checksum functions cover exactly `len()` bytes, so trailing bytes
//! (IP padding the caller did not trim) are ignored.
//!
//! Checksum zero: over IPv4 it means "no checksum" (RFC 768: "An all zero
//! transmitted checksum value means that the transmitter generated no
//! checksum"); over IPv6 it is invalid in general (RFC 8200 §8.1), though RFC
//! 6935/6936 let tunnel endpoints such as VXLAN accept it. The dataplane makes
//! that policy choice; [`Packet::verify_checksum_v6`] reports `false` for zero.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::field;
use super::{Error, Result};

/// Header length.
pub const HEADER_LEN: usize = 8;

pub mod fields {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// A read/write view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without validation; accessors may panic if it is short
    /// or the length field lies.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking the length field.
    ///
    /// Errors: `Truncated` if shorter than 8 bytes or than the length field;
    /// `Malformed` if the length field is below 8.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(field::get_u16(b, fields::LENGTH));
        if len < HEADER_LEN {
            return Err(Error::Malformed("UDP length below 8"));
        }
        if len > b.len() {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::DST_PORT)
    }

    /// Length field: header plus payload.
    // The field is named `len` by the protocol; an `is_empty` would mean nothing.
    #[allow(clippy::len_without_is_empty)]
    #[inline]
    pub fn len(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::LENGTH)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::CHECKSUM)
    }

    /// Payload: bytes 8 to `len()`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    #[inline]
    fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    /// Verifies the checksum over the IPv4 pseudo-header. A zero checksum
    /// means none was sent and verifies (RFC 768).
    #[inline]
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let s = checksum::pseudo_v4(src, dst, super::ipv4::PROTO_UDP, self.len())
            + checksum::sum(self.datagram());
        checksum::fold(s) == 0xffff
    }

    /// Verifies the checksum over the IPv6 pseudo-header. Zero is reported as
    /// invalid (RFC 8200 §8.1); see the module docs for tunnels.
    #[inline]
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let s = checksum::pseudo_v6(src, dst, super::ipv6::NH_UDP, u32::from(self.len()))
            + checksum::sum(self.datagram());
        checksum::fold(s) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        field::set_u16(self.buffer.as_mut(), fields::SRC_PORT, port);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        field::set_u16(self.buffer.as_mut(), fields::DST_PORT, port);
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        field::set_u16(self.buffer.as_mut(), fields::LENGTH, len);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        field::set_u16(self.buffer.as_mut(), fields::CHECKSUM, csum);
    }

    /// Payload (bytes 8 to `len()`), writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Computes and stores the checksum over the IPv4 pseudo-header and
    /// `len()` bytes. A computed 0 is sent as 0xffff (RFC 768: "If the
    /// computed checksum is zero, it is transmitted as all ones").
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let s = checksum::pseudo_v4(src, dst, super::ipv4::PROTO_UDP, self.len())
            + checksum::sum(self.datagram());
        self.set_checksum(nonzero(!checksum::fold(s)));
    }

    /// Computes and stores the checksum over the IPv6 pseudo-header (always
    /// required over IPv6, RFC 8200 §8.1); 0 is sent as 0xffff.
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let s = checksum::pseudo_v6(src, dst, super::ipv6::NH_UDP, u32::from(self.len()))
            + checksum::sum(self.datagram());
        self.set_checksum(nonzero(!checksum::fold(s)));
    }
}

#[inline(always)]
fn nonzero(c: u16) -> u16 {
    if c == 0 {
        0xffff
    } else {
        c
    }
}

/// Writes an 8-byte header at the start of `buf` with length
/// `8 + payload_len` (saturating at 65535) and checksum 0 (fill it afterwards,
/// or leave it 0 over IPv4 as RFC 7348 §5 allows for VXLAN).
///
/// # Panics
/// If `buf` is shorter than [`HEADER_LEN`].
#[inline]
pub fn emit(buf: &mut [u8], src_port: u16, dst_port: u16, payload_len: u16) {
    let mut p = Packet::new_unchecked(&mut buf[..HEADER_LEN]);
    p.set_src_port(src_port);
    p.set_dst_port(dst_port);
    p.set_len(payload_len.saturating_add(HEADER_LEN as u16));
    p.set_checksum(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::hex;

    const S4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const D4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    #[test]
    fn deconstruct_etherparse_built() {
        // An independent encoder builds the datagram with its checksum.
        let payload = hex("0800000000002a00 deadbeef cafe");
        let b = etherparse::PacketBuilder::ipv4(S4.octets(), D4.octets(), 64).udp(50000, 4789);
        let mut pkt = Vec::new();
        b.write(&mut pkt, &payload).unwrap();
        let u = Packet::new_checked(&pkt[20..]).unwrap();
        assert_eq!(u.src_port(), 50000);
        assert_eq!(u.dst_port(), 4789);
        assert_eq!(usize::from(u.len()), 8 + payload.len());
        assert_eq!(u.payload(), &payload[..]);
        assert_ne!(u.checksum(), 0);
        assert!(u.verify_checksum_v4(S4, D4));
        assert!(!u.verify_checksum_v4(S4, Ipv4Addr::new(198, 18, 0, 3)));

        let s6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d6: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let b = etherparse::PacketBuilder::ipv6(s6.octets(), d6.octets(), 64).udp(1, 2);
        let mut pkt = Vec::new();
        b.write(&mut pkt, &payload[..13]).unwrap();
        let u = Packet::new_checked(&pkt[40..]).unwrap();
        assert!(u.verify_checksum_v6(s6, d6));
        assert!(!u.verify_checksum_v6(d6, d6));
    }

    #[test]
    fn construct_and_fill() {
        let mut b = vec![0u8; 8 + 5 + 3];
        emit(&mut b, 49152, 4789, 5);
        b[8..13].copy_from_slice(&hex("0102030405"));
        b[13..].copy_from_slice(&[0xee; 3]); // trailing garbage, must be ignored
        assert_eq!(&b[..8], &hex("c000 12b5 000d 0000")[..]);
        let mut u = Packet::new_checked(&mut b[..]).unwrap();
        assert!(u.verify_checksum_v4(S4, D4)); // zero = none
        u.fill_checksum_v4(S4, D4);
        assert!(u.verify_checksum_v4(S4, D4));
        let c = u.checksum();
        let (h, _) = etherparse::UdpHeader::from_slice(&b).unwrap();
        assert_eq!(
            h.calc_checksum_ipv4_raw(S4.octets(), D4.octets(), &b[8..13])
                .unwrap(),
            c
        );

        let s6: Ipv6Addr = "fe80::1".parse().unwrap();
        let d6: Ipv6Addr = "ff02::1".parse().unwrap();
        let mut u = Packet::new_checked(&mut b[..]).unwrap();
        assert!(!u.verify_checksum_v6(s6, d6));
        u.fill_checksum_v6(s6, d6);
        assert!(u.verify_checksum_v6(s6, d6));
        let c = u.checksum();
        let (h, _) = etherparse::UdpHeader::from_slice(&b).unwrap();
        assert_eq!(
            h.calc_checksum_ipv6_raw(s6.octets(), d6.octets(), &b[8..13])
                .unwrap(),
            c
        );
        let mut u = Packet::new_checked(&mut b[..]).unwrap();
        u.set_src_port(1);
        u.set_dst_port(2);
        u.payload_mut()[0] = 9;
        assert_eq!((u.src_port(), u.dst_port(), u.payload()[0]), (1, 2, 9));
    }

    #[test]
    fn zero_result_sent_as_ones() {
        // Pick a payload word that makes the sum come out as 0xffff.
        let mut b = vec![0u8; 10];
        emit(&mut b, 0, 0, 2);
        let partial = checksum::pseudo_v4(S4, D4, 17, 10) + checksum::sum(&b);
        let filler = !checksum::fold(partial);
        b[8..10].copy_from_slice(&filler.to_be_bytes());
        let mut u = Packet::new_checked(&mut b[..]).unwrap();
        u.fill_checksum_v4(S4, D4);
        assert_eq!(u.checksum(), 0xffff);
        assert!(u.verify_checksum_v4(S4, D4));
    }

    #[test]
    fn impossible_lengths_and_truncation() {
        let mut b = hex("c000 12b5 000d 0000 0102030405");
        for n in 0..b.len() {
            assert_eq!(Packet::new_checked(&b[..n]).unwrap_err(), Error::Truncated);
        }
        b[5] = 7;
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(Error::Malformed(_))
        ));
        b[5] = 14;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
    }
}
