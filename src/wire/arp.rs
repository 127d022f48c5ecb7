//! ARP (RFC 826) for Ethernet hardware and IPv4 protocol addresses only.
//!
//! Layer: link (control plane traffic: the router answers ARP for its own
//! addresses). Invariant after [`Packet::new_checked`]: the buffer holds the
//! 28-byte Ethernet/IPv4 ARP body and the hardware/protocol type and length
//! fields are exactly (1, 0x0800, 6, 4), so every address accessor is in bounds.

use std::net::Ipv4Addr;

use super::field::{self, Field};
use super::{Error, Result};

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// Hardware type of Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// Operation: request.
pub const OP_REQUEST: u16 = 1;
/// Operation: reply.
pub const OP_REPLY: u16 = 2;

mod fields {
    use super::Field;
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// A read/write view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without validation; accessors may panic if it is short.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking its length and the fixed type fields.
    ///
    /// Errors: `Truncated` below 28 bytes; `Malformed` unless hardware type 1
    /// (Ethernet), protocol type 0x0800, hardware length 6, protocol length 4.
    /// Trailing bytes (Ethernet padding) are allowed.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        if field::get_u16(b, fields::HTYPE) != HTYPE_ETHERNET {
            return Err(Error::Malformed("ARP hardware type is not Ethernet"));
        }
        if field::get_u16(b, fields::PTYPE) != super::ethernet::ETHERTYPE_IPV4 {
            return Err(Error::Malformed("ARP protocol type is not IPv4"));
        }
        if b[fields::HLEN] != 6 || b[fields::PLEN] != 4 {
            return Err(Error::Malformed("ARP address lengths are not 6/4"));
        }
        Ok(Packet { buffer })
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Operation ([`OP_REQUEST`], [`OP_REPLY`], or another value).
    #[inline]
    pub fn operation(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::OPER)
    }

    /// Sender hardware address.
    #[inline]
    pub fn sender_mac(&self) -> [u8; 6] {
        field::get_mac(self.buffer.as_ref(), fields::SHA.start)
    }

    /// Sender protocol address.
    #[inline]
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(field::get_u32(self.buffer.as_ref(), fields::SPA.start))
    }

    /// Target hardware address.
    #[inline]
    pub fn target_mac(&self) -> [u8; 6] {
        field::get_mac(self.buffer.as_ref(), fields::THA.start)
    }

    /// Target protocol address.
    #[inline]
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(field::get_u32(self.buffer.as_ref(), fields::TPA.start))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the operation.
    #[inline]
    pub fn set_operation(&mut self, op: u16) {
        field::set_u16(self.buffer.as_mut(), fields::OPER, op);
    }

    /// Sets the sender hardware address.
    #[inline]
    pub fn set_sender_mac(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[fields::SHA].copy_from_slice(&mac);
    }

    /// Sets the sender protocol address.
    #[inline]
    pub fn set_sender_ip(&mut self, ip: Ipv4Addr) {
        self.buffer.as_mut()[fields::SPA].copy_from_slice(&ip.octets());
    }

    /// Sets the target hardware address.
    #[inline]
    pub fn set_target_mac(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[fields::THA].copy_from_slice(&mac);
    }

    /// Sets the target protocol address.
    #[inline]
    pub fn set_target_ip(&mut self, ip: Ipv4Addr) {
        self.buffer.as_mut()[fields::TPA].copy_from_slice(&ip.octets());
    }

    /// Turns a request into the reply that `our_mac` sends for the requested
    /// address (RFC 826 "Packet Reception": swap sender and target, put the
    /// local hardware address in the sender field, set the opcode to reply).
    /// The caller checks first that the request is for an address it owns, and
    /// rewrites the Ethernet header (reply goes to the requester's MAC).
    #[inline]
    pub fn make_reply_in_place(&mut self, our_mac: [u8; 6]) {
        let asker_mac = self.sender_mac();
        let asker_ip = self.sender_ip();
        let wanted_ip = self.target_ip();
        self.set_operation(OP_REPLY);
        self.set_sender_mac(our_mac);
        self.set_sender_ip(wanted_ip);
        self.set_target_mac(asker_mac);
        self.set_target_ip(asker_ip);
    }
}

/// Writes a 28-byte Ethernet/IPv4 ARP packet at the start of `buf`.
///
/// # Panics
/// If `buf` is shorter than [`PACKET_LEN`].
#[inline]
pub fn emit(
    buf: &mut [u8],
    operation: u16,
    sender_mac: [u8; 6],
    sender_ip: Ipv4Addr,
    target_mac: [u8; 6],
    target_ip: Ipv4Addr,
) {
    let b = &mut buf[..PACKET_LEN];
    field::set_u16(b, fields::HTYPE, HTYPE_ETHERNET);
    field::set_u16(b, fields::PTYPE, super::ethernet::ETHERTYPE_IPV4);
    b[fields::HLEN] = 6;
    b[fields::PLEN] = 4;
    let mut p = Packet::new_unchecked(b);
    p.set_operation(operation);
    p.set_sender_mac(sender_mac);
    p.set_sender_ip(sender_ip);
    p.set_target_mac(target_mac);
    p.set_target_ip(target_ip);
}

/// Writes the reply to a request: `our_mac` owns `our_ip`, answering the
/// requester `(to_mac, to_ip)`. Same as [`emit`] with [`OP_REPLY`].
///
/// # Panics
/// If `buf` is shorter than [`PACKET_LEN`].
#[inline]
pub fn emit_reply(
    buf: &mut [u8],
    our_mac: [u8; 6],
    our_ip: Ipv4Addr,
    to_mac: [u8; 6],
    to_ip: Ipv4Addr,
) {
    emit(buf, OP_REPLY, our_mac, our_ip, to_mac, to_ip);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::hex;

    // Who has 198.18.0.2? Tell 198.18.0.1 (02:00:00:00:00:01).
    const REQUEST: &str = "0001 0800 06 04 0001 020000000001 c6120001 000000000000 c6120002";

    #[test]
    fn deconstruct() {
        let b = hex(REQUEST);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.operation(), OP_REQUEST);
        assert_eq!(p.sender_mac(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(p.sender_ip(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(p.target_mac(), [0; 6]);
        assert_eq!(p.target_ip(), Ipv4Addr::new(198, 18, 0, 2));
    }

    #[test]
    fn construct_and_reply() {
        let mut b = [0u8; 28];
        emit(
            &mut b,
            OP_REQUEST,
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(198, 18, 0, 1),
            [0; 6],
            Ipv4Addr::new(198, 18, 0, 2),
        );
        assert_eq!(&b[..], &hex(REQUEST)[..]);

        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.make_reply_in_place([2, 0, 0, 0, 0, 2]);
        let mut expect = [0u8; 28];
        emit_reply(
            &mut expect,
            [2, 0, 0, 0, 0, 2],
            Ipv4Addr::new(198, 18, 0, 2),
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(198, 18, 0, 1),
        );
        assert_eq!(b, expect);

        let parsed = etherparse::ArpPacket::from_slice(&expect).unwrap();
        assert_eq!(parsed.operation, etherparse::ArpOperation::REPLY);
        assert_eq!(parsed.sender_hw_addr(), &[2, 0, 0, 0, 0, 2]);
        assert_eq!(parsed.sender_protocol_addr(), &[198, 18, 0, 2]);
        assert_eq!(parsed.target_hw_addr(), &[2, 0, 0, 0, 0, 1]);
        assert_eq!(parsed.target_protocol_addr(), &[198, 18, 0, 1]);
    }

    #[test]
    fn impossible_fields() {
        for (at, v) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut b = hex(REQUEST);
            b[at] = v;
            assert!(matches!(
                Packet::new_checked(&b[..]),
                Err(Error::Malformed(_))
            ));
        }
    }

    #[test]
    fn truncation_at_every_byte() {
        let b = hex(REQUEST);
        for n in 0..PACKET_LEN {
            assert_eq!(Packet::new_checked(&b[..n]).unwrap_err(), Error::Truncated);
        }
        let mut padded = b.clone();
        padded.resize(46, 0);
        assert!(Packet::new_checked(&padded[..]).is_ok());
    }
}
