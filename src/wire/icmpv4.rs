//! ICMP for IPv4 (RFC 792): echo, destination unreachable (with the RFC 1191
//! next-hop MTU for "fragmentation needed"), time exceeded.
//!
//! Layer: network control. A [`Packet`] spans the whole ICMP message (the IPv4
//! payload); the checksum covers all of it. Invariant after
//! [`Packet::new_checked`]: at least the 8-byte header is present, so every
//! accessor is in bounds; the type-specific meaning of bytes 4..8 is up to the
//! caller (check [`Packet::msg_type`] first).

use super::checksum;
use super::field;
use super::{Error, Result};

/// Header length: type, code, checksum, 4 type-specific bytes.
pub const HEADER_LEN: usize = 8;
/// Most bytes of the invoking packet an error should quote so that the whole
/// error datagram stays within 576 bytes (RFC 1812 §4.3.2.3): 576 - 20 - 8.
pub const ERROR_QUOTE_MAX: usize = 548;

/// Type: echo reply.
pub const TYPE_ECHO_REPLY: u8 = 0;
/// Type: destination unreachable.
pub const TYPE_DEST_UNREACH: u8 = 3;
/// Type: echo request.
pub const TYPE_ECHO_REQUEST: u8 = 8;
/// Type: time exceeded.
pub const TYPE_TIME_EXCEEDED: u8 = 11;

/// Destination unreachable code: network unreachable.
pub const CODE_NET_UNREACH: u8 = 0;
/// Destination unreachable code: host unreachable.
pub const CODE_HOST_UNREACH: u8 = 1;
/// Destination unreachable code: protocol unreachable.
pub const CODE_PROTO_UNREACH: u8 = 2;
/// Destination unreachable code: port unreachable.
pub const CODE_PORT_UNREACH: u8 = 3;
/// Destination unreachable code: fragmentation needed and DF set.
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Destination unreachable code: communication administratively prohibited
/// (RFC 1812 §5.2.7.1).
pub const CODE_ADMIN_PROHIBITED: u8 = 13;
/// Time exceeded code: TTL exceeded in transit.
pub const CODE_TTL_EXCEEDED: u8 = 0;
/// Time exceeded code: fragment reassembly time exceeded.
pub const CODE_REASSEMBLY_EXCEEDED: u8 = 1;

mod fields {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const NEXT_HOP_MTU: usize = 6;
}

/// True for the ICMP error types (a router never sends an error about an
/// error, RFC 1812 §4.3.2.7).
#[inline]
pub fn is_error_type(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

/// A read/write view of an ICMP message.
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

    /// Wraps `buffer` (the whole ICMP message) after checking that the 8-byte
    /// header fits. Errors: `Truncated`.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[fields::TYPE]
    }

    /// Message code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[fields::CODE]
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::CHECKSUM)
    }

    /// Bytes 4..8 as one value ("rest of header").
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        field::get_u32(self.buffer.as_ref(), fields::REST)
    }

    /// Echo identifier (meaningful for echo request/reply).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::ECHO_IDENT)
    }

    /// Echo sequence number (meaningful for echo request/reply).
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::ECHO_SEQ)
    }

    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191 §4: low 16
    /// bits of the second word); 0 from pre-RFC 1191 routers.
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::NEXT_HOP_MTU)
    }

    /// Bytes after the 8-byte header: echo data, or the quoted invoking packet
    /// of an error.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// True if the checksum over the whole message is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buffer.as_ref())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the type.
    #[inline]
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[fields::TYPE] = t;
    }

    /// Sets the code.
    #[inline]
    pub fn set_code(&mut self, c: u8) {
        self.buffer.as_mut()[fields::CODE] = c;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        field::set_u16(self.buffer.as_mut(), fields::CHECKSUM, c);
    }

    /// Sets bytes 4..8.
    #[inline]
    pub fn set_rest_of_header(&mut self, v: u32) {
        field::set_u32(self.buffer.as_mut(), fields::REST, v);
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, v: u16) {
        field::set_u16(self.buffer.as_mut(), fields::ECHO_IDENT, v);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq(&mut self, v: u16) {
        field::set_u16(self.buffer.as_mut(), fields::ECHO_SEQ, v);
    }

    /// Data after the header, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Recomputes the checksum over the whole message.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Turns an echo request into its reply: type 8 -> 0, checksum patched
    /// incrementally (RFC 1624), identifier, sequence and data kept (RFC 792).
    /// The caller swaps the IP addresses.
    #[inline]
    pub fn make_echo_reply_in_place(&mut self) {
        let b = self.buffer.as_mut();
        let old = field::get_u16(b, fields::TYPE);
        b[fields::TYPE] = TYPE_ECHO_REPLY;
        let new = field::get_u16(b, fields::TYPE);
        let c = checksum::update16(field::get_u16(b, fields::CHECKSUM), old, new);
        // 0x0000 and 0xffff are the same value in one's complement, except
        // that only 0xffff verifies a message whose other bytes are all zero;
        // eqn. 3 can yield 0x0000 there (an all-zero echo reply).
        field::set_u16(b, fields::CHECKSUM, if c == 0 { 0xffff } else { c });
    }
}

/// How many bytes of an invoking IPv4 packet of `invoking_len` bytes an error
/// quotes: all of it up to [`ERROR_QUOTE_MAX`] (RFC 1812 §4.3.2.3 "as much of
/// the original datagram as possible without the length of the ICMP datagram
/// exceeding 576 bytes").
#[inline]
pub fn quote_len(invoking_len: usize) -> usize {
    invoking_len.min(ERROR_QUOTE_MAX)
}

/// "Rest of header" for destination unreachable / fragmentation needed:
/// unused high half, next-hop MTU in the low half (RFC 1191 §4).
#[inline]
pub fn frag_needed_rest(mtu: u16) -> u32 {
    u32::from(mtu)
}

/// Writes an ICMP error header in front of a quote the caller has already
/// placed at `buf[8..8 + quoted_len]`, and fills the checksum over both.
/// Returns the message length `8 + quoted_len`.
///
/// Typical use: `emit_error(buf, TYPE_TIME_EXCEEDED, CODE_TTL_EXCEEDED, 0, n)`,
/// or `TYPE_DEST_UNREACH, CODE_FRAG_NEEDED, frag_needed_rest(mtu)`.
///
/// # Panics
/// If `buf` is shorter than `8 + quoted_len`.
#[inline]
pub fn emit_error(
    buf: &mut [u8],
    msg_type: u8,
    code: u8,
    rest_of_header: u32,
    quoted_len: usize,
) -> usize {
    let len = HEADER_LEN + quoted_len;
    let mut p = Packet::new_unchecked(&mut buf[..len]);
    p.set_msg_type(msg_type);
    p.set_code(code);
    p.set_rest_of_header(rest_of_header);
    p.fill_checksum();
    len
}

/// Writes an echo request or reply header in front of data already at
/// `buf[8..8 + data_len]` and fills the checksum. Returns `8 + data_len`.
///
/// # Panics
/// If `buf` is shorter than `8 + data_len`.
#[inline]
pub fn emit_echo(buf: &mut [u8], msg_type: u8, ident: u16, seq: u16, data_len: usize) -> usize {
    emit_error(
        buf,
        msg_type,
        0,
        (u32::from(ident) << 16) | u32::from(seq),
        data_len,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::hex;

    #[test]
    fn deconstruct_etherparse_echo() {
        let b = etherparse::PacketBuilder::ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .icmpv4_echo_request(0x1234, 7);
        let mut pkt = Vec::new();
        b.write(&mut pkt, b"ping data").unwrap();
        let p = Packet::new_checked(&pkt[20..]).unwrap();
        assert_eq!(p.msg_type(), TYPE_ECHO_REQUEST);
        assert_eq!(p.code(), 0);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq(), 7);
        assert_eq!(p.data(), b"ping data");
        assert!(p.verify_checksum());

        let mut m = pkt[20..].to_vec();
        let mut p = Packet::new_checked(&mut m[..]).unwrap();
        p.make_echo_reply_in_place();
        assert!(p.verify_checksum());
        assert_eq!(p.msg_type(), TYPE_ECHO_REPLY);
        let (h, _) = etherparse::Icmpv4Header::from_slice(&m).unwrap();
        assert_eq!(
            h.icmp_type,
            etherparse::Icmpv4Type::EchoReply(etherparse::IcmpEchoHeader { id: 0x1234, seq: 7 })
        );
    }

    #[test]
    fn frag_needed_construct() {
        // Quote: a 28-byte IPv4+UDP header of the dropped packet.
        let quote = hex("45000578 00004000 4011 0000 c6130102 c6130202 c000 0035 0564 0000");
        let mut buf = vec![0u8; 8 + quote.len()];
        buf[8..].copy_from_slice(&quote);
        let n = emit_error(
            &mut buf,
            TYPE_DEST_UNREACH,
            CODE_FRAG_NEEDED,
            frag_needed_rest(1450),
            quote.len(),
        );
        assert_eq!(n, 36);
        assert_eq!(&buf[..8], &hex("0304 d802 000005aa")[..]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.next_hop_mtu(), 1450);
        assert_eq!(p.data(), &quote[..]);
        let (h, _) = etherparse::Icmpv4Header::from_slice(&buf).unwrap();
        assert_eq!(
            h.icmp_type,
            etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1450
                }
            )
        );
        assert_eq!(h.checksum, h.icmp_type.calc_checksum(&quote));
    }

    #[test]
    fn time_exceeded_and_echo_construct() {
        let mut buf = [0u8; 8 + 4];
        buf[8..].copy_from_slice(&[1, 2, 3, 4]);
        emit_error(&mut buf, TYPE_TIME_EXCEEDED, CODE_TTL_EXCEEDED, 0, 4);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert!(is_error_type(p.msg_type()));
        let mut buf = [0u8; 8 + 2];
        emit_echo(&mut buf, TYPE_ECHO_REPLY, 9, 10, 2);
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        assert_eq!(
            (p.echo_ident(), p.echo_seq(), p.rest_of_header()),
            (9, 10, 0x0009_000a)
        );
        assert!(p.verify_checksum());
        p.set_echo_seq(11);
        p.set_echo_ident(1);
        p.data_mut()[0] = 1;
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(quote_len(1500), ERROR_QUOTE_MAX);
        assert_eq!(quote_len(64), 64);
    }

    #[test]
    fn truncation() {
        let b = hex("0800 f7ff 0000 0000");
        for n in 0..8 {
            assert_eq!(Packet::new_checked(&b[..n]).unwrap_err(), Error::Truncated);
        }
        assert!(Packet::new_checked(&b[..]).unwrap().verify_checksum());
        // The all-zero reply only verifies with 0xffff, never 0x0000.
        let mut m = b.clone();
        let mut p = Packet::new_checked(&mut m[..]).unwrap();
        p.make_echo_reply_in_place();
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum());
    }
}
