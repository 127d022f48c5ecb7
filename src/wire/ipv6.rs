//! IPv6 (RFC 8200) with an extension-header walk to the upper layer.
//!
//! Layer: network. Invariant after [`Packet::new_checked`]: version is 6 and
//! `40 + payload_len <= buffer.len()`; bytes beyond that (link padding) are
//! ignored and [`Packet::payload`] ends at `40 + payload_len`. Jumbograms
//! (payload length 0 with a Jumbo option, RFC 2675) are not supported: a zero
//! payload length means an empty payload.
//!
//! [`Packet::upper_layer`] skips Hop-by-Hop, Routing, Fragment, Destination
//! Options and AH headers, at most [`MAX_EXT_HEADERS`] of them, never reading
//! past the payload, and reports the fragment header if one was crossed.

use std::net::Ipv6Addr;

use super::field::{self, Field};
use super::{Error, Result};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;
/// Most extension headers [`Packet::upper_layer`] walks before giving up.
/// RFC 8200 §4.1 recommends an order with each header at most once (twice for
/// Destination Options), which gives 6; a little slack on top.
pub const MAX_EXT_HEADERS: usize = 8;

/// Next header: Hop-by-Hop Options.
pub const NH_HOP_BY_HOP: u8 = 0;
/// Next header: TCP.
pub const NH_TCP: u8 = 6;
/// Next header: UDP.
pub const NH_UDP: u8 = 17;
/// Next header: Routing.
pub const NH_ROUTING: u8 = 43;
/// Next header: Fragment.
pub const NH_FRAGMENT: u8 = 44;
/// Next header: ESP (not skippable: it is the upper layer as far as we go).
pub const NH_ESP: u8 = 50;
/// Next header: Authentication Header.
pub const NH_AUTH: u8 = 51;
/// Next header: ICMPv6.
pub const NH_ICMPV6: u8 = 58;
/// Next header: No Next Header.
pub const NH_NONE: u8 = 59;
/// Next header: Destination Options.
pub const NH_DEST_OPTS: u8 = 60;
/// Default hop limit for packets we originate.
pub const DEFAULT_HOP_LIMIT: u8 = 64;

mod fields {
    use super::Field;
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Field = 8..24;
    pub const DST: Field = 24..40;
}

/// What the fragment header (RFC 8200 §4.5) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragInfo {
    /// Fragment offset in bytes (the 13-bit field times 8).
    pub offset: u16,
    /// M flag: more fragments follow.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

impl FragInfo {
    /// True if this fragment starts at offset 0, so the upper-layer header is
    /// in it.
    #[inline]
    pub fn is_first(&self) -> bool {
        self.offset == 0
    }
}

/// A read/write view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without validation; accessors may panic if it is short
    /// or the payload length lies.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` after validating version and payload length.
    ///
    /// Errors: `Truncated` if shorter than 40 bytes or than `40 + payload_len`;
    /// `Malformed` if the version is not 6.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[fields::VER_TC_FLOW] >> 4 != 6 {
            return Err(Error::Malformed("IPv6 version is not 6"));
        }
        if HEADER_LEN + usize::from(field::get_u16(b, fields::PAYLOAD_LEN)) > b.len() {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (6 after `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[fields::VER_TC_FLOW] >> 4
    }

    /// Traffic class (DSCP/ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (field::get_u32(self.buffer.as_ref(), fields::VER_TC_FLOW) >> 20) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        field::get_u32(self.buffer.as_ref(), fields::VER_TC_FLOW) & 0x000f_ffff
    }

    /// Payload length field (extension headers included).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::PAYLOAD_LEN)
    }

    /// Total packet length: 40 + payload length.
    #[inline]
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// Next header field of the fixed header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[fields::NEXT_HEADER]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[fields::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(field::get_16(self.buffer.as_ref(), fields::SRC.start))
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(field::get_16(self.buffer.as_ref(), fields::DST.start))
    }

    /// Source address as a host-order integer.
    #[inline]
    pub fn src_u128(&self) -> u128 {
        u128::from_be_bytes(field::get_16(self.buffer.as_ref(), fields::SRC.start))
    }

    /// Destination address as a host-order integer.
    #[inline]
    pub fn dst_u128(&self) -> u128 {
        u128::from_be_bytes(field::get_16(self.buffer.as_ref(), fields::DST.start))
    }

    /// Payload after the fixed header (extension headers included), ending at
    /// `40 + payload_len`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.total_len()]
    }

    /// Walks the extension headers to the upper-layer protocol.
    ///
    /// Returns `(protocol, offset, fragment)`: `offset` counts from the start
    /// of the IPv6 header to the upper-layer header (`<= total_len()`), and
    /// `fragment` is the fragment header if one was crossed. For a
    /// non-first fragment the walk stops right after the fragment header (the
    /// rest is a slice of the original payload, not a header); `protocol` is
    /// then the fragment header's next header. [`NH_NONE`] and unknown values
    /// (ESP included) are returned as the protocol.
    ///
    /// Errors: `Truncated` if a header runs past the payload; `Malformed` if a
    /// Hop-by-Hop header is not first (RFC 8200 §4.3: "MUST immediately
    /// follow the IPv6 header") or more than [`MAX_EXT_HEADERS`] are chained.
    #[inline]
    pub fn upper_layer(&self) -> Result<(u8, usize, Option<FragInfo>)> {
        let b = self.buffer.as_ref();
        let end = self.total_len();
        let mut nh = self.next_header();
        let mut off = HEADER_LEN;
        let mut frag = None;
        let mut seen = 0;
        loop {
            let len = match nh {
                NH_HOP_BY_HOP | NH_ROUTING | NH_DEST_OPTS | NH_AUTH | NH_FRAGMENT => {
                    if nh == NH_HOP_BY_HOP && off != HEADER_LEN {
                        return Err(Error::Malformed("IPv6 hop-by-hop header not first"));
                    }
                    if seen == MAX_EXT_HEADERS {
                        return Err(Error::Malformed("too many IPv6 extension headers"));
                    }
                    seen += 1;
                    if off + 2 > end {
                        return Err(Error::Truncated);
                    }
                    let hdr_len = usize::from(b[off + 1]);
                    match nh {
                        // RFC 8200 §4.5: fixed 8 bytes; the length byte is reserved.
                        NH_FRAGMENT => 8,
                        // RFC 4302 §2.2: "length of AH in 32-bit words (4-byte
                        // units), minus 2".
                        NH_AUTH => (hdr_len + 2) * 4,
                        // RFC 8200 §4.3-4.6: "in 8-octet units, not including
                        // the first 8 octets".
                        _ => (hdr_len + 1) * 8,
                    }
                }
                _ => return Ok((nh, off, frag)),
            };
            if off + len > end {
                return Err(Error::Truncated);
            }
            let next = b[off];
            if nh == NH_FRAGMENT {
                let fo = field::get_u16(b, off + 2);
                let info = FragInfo {
                    offset: fo & 0xfff8,
                    more: fo & 1 != 0,
                    ident: field::get_u32(b, off + 4),
                };
                frag = Some(info);
                if !info.is_first() {
                    return Ok((next, off + len, frag));
                }
            }
            nh = next;
            off += len;
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 6, traffic class and flow label in the first word.
    #[inline]
    pub fn set_ver_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        field::set_u32(self.buffer.as_mut(), fields::VER_TC_FLOW, v);
    }

    /// Sets the traffic class, keeping version and flow label.
    #[inline]
    pub fn set_traffic_class(&mut self, tc: u8) {
        let fl = self.flow_label();
        let ver = u32::from(self.version());
        let v = (ver << 28) | (u32::from(tc) << 20) | fl;
        field::set_u32(self.buffer.as_mut(), fields::VER_TC_FLOW, v);
    }

    /// Sets the flow label (low 20 bits of `label`), keeping the rest.
    #[inline]
    pub fn set_flow_label(&mut self, label: u32) {
        let b = self.buffer.as_mut();
        let v = (field::get_u32(b, fields::VER_TC_FLOW) & 0xfff0_0000) | (label & 0x000f_ffff);
        field::set_u32(b, fields::VER_TC_FLOW, v);
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        field::set_u16(self.buffer.as_mut(), fields::PAYLOAD_LEN, len);
    }

    /// Sets the next header of the fixed header.
    #[inline]
    pub fn set_next_header(&mut self, nh: u8) {
        self.buffer.as_mut()[fields::NEXT_HEADER] = nh;
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, hl: u8) {
        self.buffer.as_mut()[fields::HOP_LIMIT] = hl;
    }

    /// Decrements the hop limit (no checksum in IPv6); returns the new value.
    /// Zero stays zero: the caller drops those before forwarding.
    #[inline]
    pub fn dec_hop_limit(&mut self) -> u8 {
        let b = self.buffer.as_mut();
        b[fields::HOP_LIMIT] = b[fields::HOP_LIMIT].saturating_sub(1);
        b[fields::HOP_LIMIT]
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[fields::SRC].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[fields::DST].copy_from_slice(&addr.octets());
    }

    /// Payload (to `40 + payload_len`), writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The fields of an IPv6 header we originate (traffic class and flow label
/// are written as 0; patch them with the setters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Next header.
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Payload length in bytes.
    pub payload_len: u16,
}

impl Repr {
    /// Reads the fixed-header fields of a checked packet.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            src: p.src(),
            dst: p.dst(),
            next_header: p.next_header(),
            hop_limit: p.hop_limit(),
            payload_len: p.payload_len(),
        }
    }

    /// Writes the 40-byte fixed header at the start of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`HEADER_LEN`].
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) {
        let mut p = Packet::new_unchecked(&mut buf[..HEADER_LEN]);
        p.set_ver_tc_flow(0, 0);
        p.set_payload_len(self.payload_len);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src(self.src);
        p.set_dst(self.dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::hex;

    const SRC: &str = "20010db8000000000000000000000001";
    const DST: &str = "20010db8000000000000000000000002";

    /// Fixed header with the given next header and payload.
    fn packet(nh: u8, payload: &str) -> Vec<u8> {
        let p = hex(payload);
        let mut b = hex(&format!(
            "6abcdef5 {:04x} {:02x} 40 {SRC} {DST}",
            p.len(),
            nh
        ));
        b.extend_from_slice(&p);
        b
    }

    #[test]
    fn deconstruct() {
        let b = packet(NH_UDP, "0035 0035 0008 0000");
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xab);
        assert_eq!(p.flow_label(), 0xcdef5);
        assert_eq!(p.payload_len(), 8);
        assert_eq!(p.next_header(), NH_UDP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.src_u128(), 0x2001_0db8_0000_0000_0000_0000_0000_0001);
        assert_eq!(p.dst_u128(), 0x2001_0db8_0000_0000_0000_0000_0000_0002);
        assert_eq!(p.payload().len(), 8);
        assert_eq!(p.upper_layer(), Ok((NH_UDP, 40, None)));
    }

    #[test]
    fn extension_chain() {
        // HBH (8) -> Routing (16) -> Fragment first (8) -> AH (len 1: 12) -> DestOpts (8) -> UDP
        let b = packet(
            NH_HOP_BY_HOP,
            "2b00 010400000000
             2c01 0000 00000000 00000000 00000000
             3300 0001 12345678
             3c01 0000 aaaaaaaa bbbbbbbb
             1100 0104 00000000
             0035 0035 0008 0000",
        );
        let p = Packet::new_checked(&b[..]).unwrap();
        let frag = FragInfo {
            offset: 0,
            more: true,
            ident: 0x1234_5678,
        };
        assert_eq!(
            p.upper_layer(),
            Ok((NH_UDP, 40 + 8 + 16 + 8 + 12 + 8, Some(frag)))
        );
    }

    #[test]
    fn non_first_fragment_stops() {
        let b = packet(NH_FRAGMENT, "3a00 05a9 00000042 deadbeef");
        let p = Packet::new_checked(&b[..]).unwrap();
        let frag = FragInfo {
            offset: 0x5a8,
            more: true,
            ident: 0x42,
        };
        assert_eq!(p.upper_layer(), Ok((NH_ICMPV6, 48, Some(frag))));
    }

    #[test]
    fn walk_errors() {
        // Hop-by-hop after routing.
        let b = packet(NH_ROUTING, "0000 0000 00000000 1100 0000 00000000");
        assert!(matches!(
            Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(Error::Malformed(_))
        ));
        // Routing header claims 16 bytes, only 8 present.
        let b = packet(NH_ROUTING, "1101 0000 00000000");
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(Error::Truncated)
        );
        // Payload ends before the next-header/length pair.
        let b = packet(NH_DEST_OPTS, "");
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(Error::Truncated)
        );
        // Nine destination-options headers chained.
        let b = packet(NH_DEST_OPTS, &"3c00 0000 00000000 ".repeat(9));
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(Error::Malformed("too many IPv6 extension headers"))
        );
        // Eight are fine.
        let mut chain = "3c00 0000 00000000 ".repeat(7);
        chain.push_str("3b00 0000 00000000");
        let b = packet(NH_DEST_OPTS, &chain);
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Ok((NH_NONE, 40 + 64, None))
        );
    }

    #[test]
    fn impossible_lengths_and_truncation() {
        let b = packet(NH_UDP, "0035 0035 0008 0000");
        let mut v = b.clone();
        v[0] = 0x45;
        assert!(matches!(
            Packet::new_checked(&v[..]),
            Err(Error::Malformed(_))
        ));
        let mut v = b.clone();
        v[5] = 9;
        assert_eq!(Packet::new_checked(&v[..]).unwrap_err(), Error::Truncated);
        for n in 0..b.len() {
            assert_eq!(Packet::new_checked(&b[..n]).unwrap_err(), Error::Truncated);
        }
        let mut padded = b.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(Packet::new_checked(&padded[..]).unwrap().payload().len(), 8);
    }

    #[test]
    fn construct_and_etherparse() {
        let repr = Repr {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            next_header: NH_UDP,
            hop_limit: 64,
            payload_len: 8,
        };
        let mut b = vec![0u8; 48];
        repr.emit(&mut b);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(Repr::parse(&p), repr);
        p.set_flow_label(0x12345);
        p.set_traffic_class(0xb8);
        assert_eq!(
            (p.traffic_class(), p.flow_label(), p.version()),
            (0xb8, 0x12345, 6)
        );
        assert_eq!(p.dec_hop_limit(), 63);
        let (h, rest) = etherparse::Ipv6Header::from_slice(&b).unwrap();
        assert_eq!(h.source, repr.src.octets());
        assert_eq!(h.destination, repr.dst.octets());
        assert_eq!(h.payload_length, 8);
        assert_eq!(h.hop_limit, 63);
        assert_eq!(h.flow_label.value(), 0x12345);
        assert_eq!(h.traffic_class, 0xb8);
        assert_eq!(rest.len(), 8);
    }

    proptest::proptest! {
        /// Random valid extension chains: our walk and etherparse's agree on
        /// the upper-layer protocol and its offset.
        #[test]
        fn ext_walk_agrees_with_etherparse(
            hbh in proptest::bool::ANY,
            chain in proptest::collection::vec((0u8..4, 0u8..4, proptest::bool::ANY), 0..6),
            fill in proptest::num::u8::ANY,
        ) {
            let mut exts: Vec<(u8, Vec<u8>)> = Vec::new();
            if hbh {
                exts.push((NH_HOP_BY_HOP, vec![0, 0, 1, 4, 0, 0, 0, 0]));
            }
            for (kind, l, more) in chain {
                let (nh, body) = match kind {
                    0 | 1 => {
                        let n = (usize::from(l) + 1) * 8;
                        let mut b = vec![fill; n];
                        b[1] = l;
                        if kind == 0 {
                            // Destination options must parse: one PadN covering the rest.
                            b[2] = 1;
                            b[3] = (n - 4) as u8;
                            b[4..].fill(0);
                        }
                        (if kind == 0 { NH_DEST_OPTS } else { NH_ROUTING }, b)
                    }
                    2 => {
                        let l = l.max(1);
                        let mut b = vec![fill; (usize::from(l) + 2) * 4];
                        b[1] = l;
                        b[2] = 0;
                        b[3] = 0;
                        (NH_AUTH, b)
                    }
                    _ => (NH_FRAGMENT, vec![0, 0, 0, u8::from(more), 0, 0, 0, 9]),
                };
                exts.push((nh, body));
            }
            let first = exts.first().map(|e| e.0).unwrap_or(NH_UDP);
            let mut payload = Vec::new();
            for i in 0..exts.len() {
                let mut body = exts[i].1.clone();
                body[0] = exts.get(i + 1).map(|e| e.0).unwrap_or(NH_UDP);
                payload.extend_from_slice(&body);
            }
            let ext_len = payload.len();
            payload.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
            let mut b = vec![0u8; HEADER_LEN];
            Repr {
                src: "2001:db8::1".parse().unwrap(),
                dst: "2001:db8::2".parse().unwrap(),
                next_header: first,
                hop_limit: 64,
                payload_len: payload.len() as u16,
            }
            .emit(&mut b);
            b.extend_from_slice(&payload);

            let (nh, off, frag) = Packet::new_checked(&b[..]).unwrap().upper_layer().unwrap();
            proptest::prop_assert_eq!(nh, NH_UDP);
            proptest::prop_assert_eq!(off, HEADER_LEN + ext_len);
            let theirs = etherparse::Ipv6Slice::from_slice(&b).unwrap();
            proptest::prop_assert_eq!(theirs.payload().ip_number.0, nh);
            proptest::prop_assert_eq!(b.len() - theirs.payload().payload.len(), off);
            // etherparse ORs the M flags of every fragment header; we report the last one.
            let frags: Vec<bool> = exts.iter().filter(|e| e.0 == NH_FRAGMENT).map(|e| e.1[3] == 1).collect();
            proptest::prop_assert_eq!(frags.iter().any(|m| *m), theirs.is_payload_fragmented());
            proptest::prop_assert_eq!(frag.map(|f| f.more), frags.last().copied());
        }
    }
}
