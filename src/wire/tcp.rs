//! TCP (RFC 9293) header: the fields the router reads and rewrites when it
//! cuts, coalesces and routes super-packets. Options are carried, not
//! interpreted; no connection state.
//!
//! Layer: transport. Invariant after [`Packet::new_checked`]:
//! `20 <= header_len() <= buffer.len()`. TCP has no length field: the
//! segment is the whole buffer, so the caller hands over exactly the IP
//! payload (the IP length fields bound it) and [`Packet::payload`] runs to
//! the end of the buffer.

use super::field;
use super::{Error, Result};

/// Length of a header without options (data offset 5).
pub const HEADER_LEN: usize = 20;

/// Flag bits (the second byte of the flag word; RFC 9293 section 3.1, RFC
/// 3168 for ECE and CWR).
pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_SYN: u8 = 0x02;
pub const FLAG_RST: u8 = 0x04;
pub const FLAG_PSH: u8 = 0x08;
pub const FLAG_ACK: u8 = 0x10;
pub const FLAG_URG: u8 = 0x20;
pub const FLAG_ECE: u8 = 0x40;
pub const FLAG_CWR: u8 = 0x80;

/// Byte offsets of the fields, from the start of the header.
pub mod fields {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    /// Data offset (high nibble) and the reserved bits (low nibble; AccECN's
    /// AE is the lowest).
    pub const OFF_RES: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// A read/write view of a TCP segment (header and payload).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without validation; accessors may panic if it is
    /// shorter than the header (or than 13 bytes, for [`Packet::header_len`]).
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking the data offset against its length.
    ///
    /// Errors: `Truncated` if shorter than 20 bytes or than the header the
    /// data offset announces; `Malformed` if the data offset is below 5.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hlen = usize::from(b[fields::OFF_RES] >> 4) * 4;
        if hlen < HEADER_LEN {
            return Err(Error::Malformed("TCP data offset below 5"));
        }
        if hlen > b.len() {
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        field::get_u32(self.buffer.as_ref(), fields::SEQ)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        field::get_u32(self.buffer.as_ref(), fields::ACK)
    }

    /// Header length in bytes (data offset * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[fields::OFF_RES] >> 4) * 4
    }

    /// The four reserved bits after the data offset.
    #[inline]
    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[fields::OFF_RES] & 0x0f
    }

    /// The flag byte (`FLAG_*`).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[fields::FLAGS]
    }

    /// Window field.
    #[inline]
    pub fn window(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::WINDOW)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::URGENT)
    }

    /// Option bytes (between byte 20 and `header_len`).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Payload: from `header_len` to the end of the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, seq: u32) {
        field::set_u32(self.buffer.as_mut(), fields::SEQ, seq);
    }

    /// Sets the flag byte.
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[fields::FLAGS] = flags;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        field::set_u16(self.buffer.as_mut(), fields::CHECKSUM, csum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;
    use std::net::Ipv4Addr;

    const S4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const D4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    /// An IPv4/TCP packet built by an independent encoder: PSH and ACK, the
    /// timestamps option (12 bytes with padding), five bytes of payload.
    fn etherparse_segment() -> Vec<u8> {
        let b = etherparse::PacketBuilder::ipv4(S4.octets(), D4.octets(), 64)
            .tcp(40000, 5201, 0x0102_0304, 512)
            .ack(0x0a0b_0c0d)
            .psh()
            .cwr()
            .options(&[
                etherparse::TcpOptionElement::Noop,
                etherparse::TcpOptionElement::Noop,
                etherparse::TcpOptionElement::Timestamp(7, 9),
            ])
            .unwrap();
        let mut pkt = Vec::new();
        b.write(&mut pkt, b"hello").unwrap();
        pkt
    }

    #[test]
    fn deconstruct_etherparse_built() {
        let pkt = etherparse_segment();
        let t = Packet::new_checked(&pkt[20..]).unwrap();
        assert_eq!(t.src_port(), 40000);
        assert_eq!(t.dst_port(), 5201);
        assert_eq!(t.seq_number(), 0x0102_0304);
        assert_eq!(t.ack_number(), 0x0a0b_0c0d);
        assert_eq!(t.header_len(), 32);
        assert_eq!(t.reserved(), 0);
        assert_eq!(t.flags(), FLAG_ACK | FLAG_PSH | FLAG_CWR);
        assert_eq!(t.window(), 512);
        assert_eq!(t.urgent(), 0);
        assert_eq!(t.options(), &[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
        assert_eq!(t.payload(), b"hello");
        // The checksum etherparse wrote covers the pseudo-header.
        let seg = &pkt[20..];
        let s = checksum::pseudo_v4(S4, D4, 6, seg.len() as u16) + checksum::sum(seg);
        assert_eq!(checksum::fold(s), 0xffff);
        assert_ne!(t.checksum(), 0);
    }

    #[test]
    fn construct_matches_etherparse() {
        let mut pkt = etherparse_segment();
        let mut t = Packet::new_checked(&mut pkt[20..]).unwrap();
        t.set_seq_number(0xfffe_fffd);
        t.set_flags(FLAG_ACK | FLAG_FIN);
        t.set_checksum(0x1234);
        let (h, payload) = etherparse::TcpHeader::from_slice(&pkt[20..]).unwrap();
        assert_eq!(h.sequence_number, 0xfffe_fffd);
        assert!(h.ack && h.fin && !h.psh && !h.cwr && !h.syn);
        assert_eq!(h.checksum, 0x1234);
        assert_eq!(payload, b"hello");
    }

    #[test]
    fn impossible_lengths_and_truncation() {
        let pkt = etherparse_segment();
        let seg = &pkt[20..];
        // Shorter than the fixed header or than the options announced.
        for n in 0..32 {
            assert_eq!(
                Packet::new_checked(&seg[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        assert!(Packet::new_checked(&seg[..32]).is_ok());
        let mut b = seg.to_vec();
        for off in 0..5u8 {
            b[fields::OFF_RES] = off << 4;
            assert!(matches!(
                Packet::new_checked(&b[..]),
                Err(Error::Malformed(_))
            ));
        }
        // Data offset 15: 60 bytes of header, more than there are.
        b[fields::OFF_RES] = 0xf0;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
        // The reserved bits are reported, not refused.
        b[fields::OFF_RES] = 0x51;
        let t = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((t.header_len(), t.reserved()), (20, 1));
    }
}
