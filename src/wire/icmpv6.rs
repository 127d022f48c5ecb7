//! ICMPv6 (RFC 4443) and the Neighbor Discovery messages the router answers
//! (RFC 4861 neighbor solicitation / advertisement with link-layer address
//! options).
//!
//! Layer: network control. A [`Packet`] spans exactly the ICMPv6 message (the
//! upper-layer bytes after the IPv6 extension headers, ending at the IPv6
//! payload length); the checksum covers it plus the IPv6 pseudo-header.
//!
//! Invariants after [`Packet::new_checked`]: the 8-byte header is present;
//! for neighbor solicitation/advertisement the 16-byte target address is
//! present and every ND option has a non-zero length and fits, so
//! [`Packet::target_addr`], [`Packet::source_ll_addr`] and
//! [`Packet::target_ll_addr`] cannot fail. The other RFC 4861 §7.1 checks
//! (IPv6 hop limit 255, code 0, target not multicast) belong to the caller,
//! which sees the IPv6 header.

use std::net::Ipv6Addr;

use super::checksum;
use super::field;
use super::ipv6::NH_ICMPV6;
use super::{Error, Result};

/// Header length: type, code, checksum, 4 type-specific bytes.
pub const HEADER_LEN: usize = 8;
/// Length of a neighbor solicitation/advertisement before its options.
pub const ND_HEADER_LEN: usize = 24;
/// IPv6 minimum link MTU (RFC 8200 §5).
pub const MIN_MTU: usize = 1280;
/// Most bytes of the invoking packet an error quotes, so the error fits the
/// minimum MTU (RFC 4443 §2.4(c)): 1280 - 40 - 8.
pub const ERROR_QUOTE_MAX: usize = 1232;

/// Type: destination unreachable.
pub const TYPE_DEST_UNREACH: u8 = 1;
/// Type: packet too big.
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
/// Type: time exceeded.
pub const TYPE_TIME_EXCEEDED: u8 = 3;
/// Type: parameter problem.
pub const TYPE_PARAM_PROBLEM: u8 = 4;
/// Type: echo request.
pub const TYPE_ECHO_REQUEST: u8 = 128;
/// Type: echo reply.
pub const TYPE_ECHO_REPLY: u8 = 129;
/// Type: neighbor solicitation.
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
/// Type: neighbor advertisement.
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;

/// Destination unreachable code: no route to destination.
pub const CODE_NO_ROUTE: u8 = 0;
/// Destination unreachable code: administratively prohibited.
pub const CODE_ADMIN_PROHIBITED: u8 = 1;
/// Destination unreachable code: address unreachable.
pub const CODE_ADDR_UNREACH: u8 = 3;
/// Destination unreachable code: port unreachable.
pub const CODE_PORT_UNREACH: u8 = 4;
/// Time exceeded code: hop limit exceeded in transit.
pub const CODE_HOP_LIMIT_EXCEEDED: u8 = 0;
/// Time exceeded code: fragment reassembly time exceeded.
pub const CODE_REASSEMBLY_EXCEEDED: u8 = 1;

/// Neighbor advertisement flag: sender is a router.
pub const NA_FLAG_ROUTER: u8 = 0x80;
/// Neighbor advertisement flag: sent in response to a solicitation.
pub const NA_FLAG_SOLICITED: u8 = 0x40;
/// Neighbor advertisement flag: override an existing cache entry.
pub const NA_FLAG_OVERRIDE: u8 = 0x20;

/// ND option type: source link-layer address.
pub const ND_OPT_SOURCE_LL: u8 = 1;
/// ND option type: target link-layer address.
pub const ND_OPT_TARGET_LL: u8 = 2;

mod fields {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const NA_FLAGS: usize = 4;
    pub const TARGET: usize = 8;
}

/// True for the ICMPv6 error types (types below 128, RFC 4443 §2.1).
#[inline]
pub fn is_error_type(t: u8) -> bool {
    t < 128
}

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1):
/// ff02::1:ff00:0/104 with the low 24 bits of `addr`.
#[inline]
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let low = u128::from(addr) & 0x00ff_ffff;
    Ipv6Addr::from(0xff02_0000_0000_0000_0000_0001_ff00_0000u128 | low)
}

/// Checks the ND option area: RFC 4861 §4.6 "Nodes MUST silently discard an
/// ND packet that contains an option with length zero", and none may run
/// past the message.
fn check_nd_options(opts: &[u8]) -> Result<()> {
    let mut rest = opts;
    while !rest.is_empty() {
        if rest.len() < 2 {
            return Err(Error::Truncated);
        }
        let len = usize::from(rest[1]) * 8;
        if len == 0 {
            return Err(Error::Malformed("ND option with length zero"));
        }
        if len > rest.len() {
            return Err(Error::Truncated);
        }
        rest = &rest[len..];
    }
    Ok(())
}

/// A read/write view of an ICMPv6 message.
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

    /// Wraps `buffer` (exactly the ICMPv6 message) after checking lengths.
    ///
    /// Errors: `Truncated` below 8 bytes, below 24 for NS/NA, or if an ND
    /// option runs past the end; `Malformed` for a zero-length ND option.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if matches!(
            b[fields::TYPE],
            TYPE_NEIGHBOR_SOLICIT | TYPE_NEIGHBOR_ADVERT
        ) {
            if b.len() < ND_HEADER_LEN {
                return Err(Error::Truncated);
            }
            check_nd_options(&b[ND_HEADER_LEN..])?;
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

    /// Bytes 4..8 as one value.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        field::get_u32(self.buffer.as_ref(), fields::REST)
    }

    /// Echo identifier.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::ECHO_IDENT)
    }

    /// Echo sequence number.
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::ECHO_SEQ)
    }

    /// MTU of a packet-too-big message (RFC 4443 §3.2).
    #[inline]
    pub fn mtu(&self) -> u32 {
        self.rest_of_header()
    }

    /// Bytes after the 8-byte header (echo data, quoted packet, or the ND
    /// target and options).
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Neighbor advertisement flags byte (R, S, O in the top bits).
    #[inline]
    pub fn na_flags(&self) -> u8 {
        self.buffer.as_ref()[fields::NA_FLAGS]
    }

    /// Target address of a neighbor solicitation/advertisement.
    ///
    /// In bounds only for NS/NA messages (checked by `new_checked`); for other
    /// types it returns the unspecified address if the message is too short.
    #[inline]
    pub fn target_addr(&self) -> Ipv6Addr {
        match self
            .buffer
            .as_ref()
            .get(fields::TARGET..fields::TARGET + 16)
        {
            Some(t) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(t);
                Ipv6Addr::from(a)
            }
            None => Ipv6Addr::UNSPECIFIED,
        }
    }

    /// The ND option bytes after the target address (empty for non-ND types
    /// shorter than 24 bytes).
    #[inline]
    pub fn nd_options(&self) -> &[u8] {
        self.buffer.as_ref().get(ND_HEADER_LEN..).unwrap_or(&[])
    }

    /// First Ethernet link-layer address option of `kind` (option length 1,
    /// RFC 4861 §4.6.1); options of other lengths (non-Ethernet) are skipped.
    #[inline]
    fn ll_option(&self, kind: u8) -> Option<[u8; 6]> {
        let mut rest = self.nd_options();
        while rest.len() >= 2 {
            let len = usize::from(rest[1]) * 8;
            if len == 0 || len > rest.len() {
                return None;
            }
            if rest[0] == kind && len == 8 {
                return Some(field::get_mac(rest, 2));
            }
            rest = &rest[len..];
        }
        None
    }

    /// Source link-layer address option of a solicitation, if present.
    #[inline]
    pub fn source_ll_addr(&self) -> Option<[u8; 6]> {
        self.ll_option(ND_OPT_SOURCE_LL)
    }

    /// Target link-layer address option of an advertisement, if present.
    #[inline]
    pub fn target_ll_addr(&self) -> Option<[u8; 6]> {
        self.ll_option(ND_OPT_TARGET_LL)
    }

    /// True if the checksum over the pseudo-header and the whole message is
    /// correct (RFC 4443 §2.3).
    #[inline]
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let s = checksum::pseudo_v6(src, dst, NH_ICMPV6, b.len() as u32) + checksum::sum(b);
        checksum::fold(s) == 0xffff
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

    /// Computes and stores the checksum over the pseudo-header and message.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let s = checksum::pseudo_v6(src, dst, NH_ICMPV6, b.len() as u32) + checksum::sum(b);
        self.set_checksum(!checksum::fold(s));
    }

    /// Turns an echo request into its reply: type 128 -> 129, checksum patched
    /// incrementally (RFC 1624). Valid when the caller swaps source and
    /// destination: the pseudo-header sum does not depend on their order.
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

/// How many bytes of an invoking packet of `invoking_len` bytes an error
/// quotes (RFC 4443 §2.4(c): "as much of invoking packet as possible without
/// the ICMPv6 packet exceeding the minimum IPv6 MTU").
#[inline]
pub fn quote_len(invoking_len: usize) -> usize {
    invoking_len.min(ERROR_QUOTE_MAX)
}

/// Writes an ICMPv6 header in front of data the caller already placed at
/// `buf[8..8 + data_len]` and fills the checksum for the IPv6 addresses the
/// message will carry. Returns `8 + data_len`.
///
/// Errors: `emit_message(buf, TYPE_PACKET_TOO_BIG, 0, mtu, n, src, dst)`,
/// `TYPE_TIME_EXCEEDED, CODE_HOP_LIMIT_EXCEEDED, 0`, or
/// `TYPE_DEST_UNREACH, CODE_NO_ROUTE, 0`.
///
/// # Panics
/// If `buf` is shorter than `8 + data_len`.
#[inline]
pub fn emit_message(
    buf: &mut [u8],
    msg_type: u8,
    code: u8,
    rest_of_header: u32,
    data_len: usize,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> usize {
    let len = HEADER_LEN + data_len;
    let mut p = Packet::new_unchecked(&mut buf[..len]);
    p.set_msg_type(msg_type);
    p.set_code(code);
    p.set_rest_of_header(rest_of_header);
    p.fill_checksum(src, dst);
    len
}

/// [`emit_message`] for error messages (quote already at `buf[8..]`).
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
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> usize {
    emit_message(buf, msg_type, code, rest_of_header, quoted_len, src, dst)
}

/// Writes an echo request/reply header in front of data already at
/// `buf[8..8 + data_len]`. Returns `8 + data_len`.
///
/// # Panics
/// If `buf` is shorter than `8 + data_len`.
#[inline]
pub fn emit_echo(
    buf: &mut [u8],
    msg_type: u8,
    ident: u16,
    seq: u16,
    data_len: usize,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> usize {
    let rest = (u32::from(ident) << 16) | u32::from(seq);
    emit_message(buf, msg_type, 0, rest, data_len, src, dst)
}

fn emit_nd(
    buf: &mut [u8],
    msg_type: u8,
    flags: u8,
    target: Ipv6Addr,
    ll: Option<(u8, [u8; 6])>,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> usize {
    let len = ND_HEADER_LEN + if ll.is_some() { 8 } else { 0 };
    let b = &mut buf[..len];
    b[fields::TYPE] = msg_type;
    b[fields::CODE] = 0;
    field::set_u32(b, fields::REST, u32::from(flags) << 24);
    b[fields::TARGET..fields::TARGET + 16].copy_from_slice(&target.octets());
    if let Some((kind, mac)) = ll {
        b[24] = kind;
        b[25] = 1;
        b[26..32].copy_from_slice(&mac);
    }
    Packet::new_unchecked(b).fill_checksum(src, dst);
    len
}

/// Writes a neighbor advertisement (RFC 4861 §4.4) for `target`, with a
/// target link-layer address option when `target_ll` is given, and fills the
/// checksum. `flags` is a mix of `NA_FLAG_*`. Returns 24 or 32.
///
/// # Panics
/// If `buf` is shorter than the returned length.
#[inline]
pub fn emit_neighbor_advert(
    buf: &mut [u8],
    flags: u8,
    target: Ipv6Addr,
    target_ll: Option<[u8; 6]>,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> usize {
    emit_nd(
        buf,
        TYPE_NEIGHBOR_ADVERT,
        flags,
        target,
        target_ll.map(|m| (ND_OPT_TARGET_LL, m)),
        src,
        dst,
    )
}

/// Writes a neighbor solicitation (RFC 4861 §4.3) for `target`, with a source
/// link-layer address option when `source_ll` is given (it MUST be omitted
/// when `src` is unspecified, §4.3), and fills the checksum. Returns 24 or 32.
///
/// # Panics
/// If `buf` is shorter than the returned length.
#[inline]
pub fn emit_neighbor_solicit(
    buf: &mut [u8],
    target: Ipv6Addr,
    source_ll: Option<[u8; 6]>,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> usize {
    emit_nd(
        buf,
        TYPE_NEIGHBOR_SOLICIT,
        0,
        target,
        source_ll.map(|m| (ND_OPT_SOURCE_LL, m)),
        src,
        dst,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::hex;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn echo_from_etherparse() {
        let (s, d) = (a("2001:db8::1"), a("2001:db8::2"));
        let b = etherparse::PacketBuilder::ipv6(s.octets(), d.octets(), 64)
            .icmpv6_echo_request(0x4242, 3);
        let mut pkt = Vec::new();
        b.write(&mut pkt, b"abc").unwrap();
        let mut m = pkt[40..].to_vec();
        let p = Packet::new_checked(&m[..]).unwrap();
        assert_eq!(
            (p.msg_type(), p.code(), p.echo_ident(), p.echo_seq()),
            (TYPE_ECHO_REQUEST, 0, 0x4242, 3)
        );
        assert_eq!(p.data(), b"abc");
        assert!(p.verify_checksum(s, d));
        assert!(!p.verify_checksum(s, s));
        let mut p = Packet::new_checked(&mut m[..]).unwrap();
        p.make_echo_reply_in_place();
        assert!(p.verify_checksum(d, s));
        let e = etherparse::Icmpv6Slice::from_slice(&m).unwrap();
        assert!(e.is_checksum_valid(d.octets(), s.octets()));
        assert_eq!(
            e.icmp_type(),
            etherparse::Icmpv6Type::EchoReply(etherparse::IcmpEchoHeader { id: 0x4242, seq: 3 })
        );
    }

    #[test]
    fn errors_construct() {
        let (s, d) = (a("2001:db8::ffff"), a("2001:db8::1"));
        let quote = hex(
            "60000000 00080000 20010db8000000000000000000000001 20010db8000000000000000000000002",
        );
        for (t, c, rest) in [
            (TYPE_PACKET_TOO_BIG, 0, 1430),
            (TYPE_TIME_EXCEEDED, CODE_HOP_LIMIT_EXCEEDED, 0),
            (TYPE_DEST_UNREACH, CODE_NO_ROUTE, 0),
        ] {
            let mut buf = vec![0u8; 8 + quote.len()];
            buf[8..].copy_from_slice(&quote);
            assert_eq!(emit_error(&mut buf, t, c, rest, quote.len(), s, d), 48);
            let p = Packet::new_checked(&buf[..]).unwrap();
            assert!(p.verify_checksum(s, d));
            assert!(is_error_type(p.msg_type()));
            assert_eq!(p.data(), &quote[..]);
            let e = etherparse::Icmpv6Slice::from_slice(&buf).unwrap();
            assert!(e.is_checksum_valid(s.octets(), d.octets()));
            if t == TYPE_PACKET_TOO_BIG {
                assert_eq!(p.mtu(), 1430);
                assert_eq!(
                    e.icmp_type(),
                    etherparse::Icmpv6Type::PacketTooBig { mtu: 1430 }
                );
            }
        }
        let mut buf = [0u8; 10];
        emit_echo(&mut buf, TYPE_ECHO_REPLY, 1, 2, 2, s, d);
        assert!(Packet::new_checked(&buf[..]).unwrap().verify_checksum(s, d));
        assert_eq!(quote_len(9000), ERROR_QUOTE_MAX);
    }

    // NS for 2001:db8::2 from 2001:db8::1 with source LL 02:00:00:00:00:01.
    const NS: &str = "8700 0000 00000000 20010db8000000000000000000000002 0101 020000000001";

    #[test]
    fn neighbor_solicit_parse_and_build() {
        let (s, d) = (a("2001:db8::1"), solicited_node(a("2001:db8::2")));
        assert_eq!(d, a("ff02::1:ff00:2"));
        let mut b = hex(NS);
        Packet::new_unchecked(&mut b[..]).fill_checksum(s, d);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), TYPE_NEIGHBOR_SOLICIT);
        assert_eq!(p.target_addr(), a("2001:db8::2"));
        assert_eq!(p.source_ll_addr(), Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(p.target_ll_addr(), None);
        let mut built = [0u8; 32];
        assert_eq!(
            emit_neighbor_solicit(&mut built, a("2001:db8::2"), Some([2, 0, 0, 0, 0, 1]), s, d),
            32
        );
        assert_eq!(&built[..], &b[..]);
        let e = etherparse::Icmpv6Slice::from_slice(&built).unwrap();
        assert!(e.is_checksum_valid(s.octets(), d.octets()));
        assert_eq!(e.icmp_type(), etherparse::Icmpv6Type::NeighborSolicitation);
    }

    #[test]
    fn neighbor_advert_build_and_parse() {
        let (s, d) = (a("2001:db8::2"), a("2001:db8::1"));
        let mut b = [0u8; 32];
        let flags = NA_FLAG_ROUTER | NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE;
        let n = emit_neighbor_advert(&mut b, flags, s, Some([2, 0, 0, 0, 0, 2]), s, d);
        assert_eq!(n, 32);
        assert_eq!(&b[..2], &hex("8800")[..]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.na_flags(), 0xe0);
        assert_eq!(p.target_addr(), s);
        assert_eq!(p.target_ll_addr(), Some([2, 0, 0, 0, 0, 2]));
        assert_eq!(p.source_ll_addr(), None);
        assert!(p.verify_checksum(s, d));
        let e = etherparse::Icmpv6Slice::from_slice(&b).unwrap();
        assert!(e.is_checksum_valid(s.octets(), d.octets()));
        match e.icmp_type() {
            etherparse::Icmpv6Type::NeighborAdvertisement(h) => {
                assert!(h.router && h.solicited && h.r#override)
            }
            other => panic!("unexpected {other:?}"),
        }
        let n = emit_neighbor_advert(&mut b, NA_FLAG_SOLICITED, s, None, s, d);
        assert_eq!(n, 24);
        let p = Packet::new_checked(&b[..n]).unwrap();
        assert_eq!(p.target_ll_addr(), None);
        assert!(p.verify_checksum(s, d));
    }

    #[test]
    fn nd_options_skip_unknown_and_non_ethernet() {
        // Unknown option (type 14, 8 bytes), 16-byte source LL (not Ethernet), then Ethernet source LL.
        let b = hex("8700 0000 00000000 20010db8000000000000000000000002
             0e01 000000000000 0102 0000000000000000000000000000 0101 0a0b0c0d0e0f");
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.source_ll_addr(), Some([10, 11, 12, 13, 14, 15]));
    }

    #[test]
    fn impossible_lengths_and_truncation() {
        let b = hex(NS);
        for n in 0..b.len() {
            let r = Packet::new_checked(&b[..n]);
            if n == 24 {
                assert!(r.is_ok());
            } else {
                assert_eq!(r.unwrap_err(), Error::Truncated, "len {n}");
            }
        }
        let mut z = b.clone();
        z[25] = 0;
        assert!(matches!(
            Packet::new_checked(&z[..]),
            Err(Error::Malformed(_))
        ));
        let mut long = b.clone();
        long[25] = 2;
        assert_eq!(
            Packet::new_checked(&long[..]).unwrap_err(),
            Error::Truncated
        );
        // A non-ND message shorter than 24 bytes: target accessors stay safe.
        let echo = hex("8000 0000 00010002");
        let p = Packet::new_checked(&echo[..]).unwrap();
        assert_eq!(p.target_addr(), Ipv6Addr::UNSPECIFIED);
        assert!(p.nd_options().is_empty());
        assert_eq!(p.source_ll_addr(), None);
    }
}
