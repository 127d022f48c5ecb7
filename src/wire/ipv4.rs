//! IPv4 (RFC 791), options carried but not interpreted.
//!
//! Layer: network. Invariant after [`Packet::new_checked`]: version is 4,
//! `20 <= header_len <= total_len <= buffer.len()`. Bytes beyond `total_len`
//! (Ethernet minimum-frame padding) are allowed and ignored: [`Packet::payload`]
//! ends at `total_len`. Checksums are not verified by the constructor (a
//! router may choose to skip that); call [`Packet::verify_checksum`].

use std::net::Ipv4Addr;

use super::checksum;
use super::field::{self, Field};
use super::{Error, Result};

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// Default TTL for packets we originate (RFC 1700 recommends 64).
pub const DEFAULT_TTL: u8 = 64;

mod fields {
    use super::Field;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: Field = 12..16;
    pub const DST: Field = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A read/write view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without validation; accessors may panic if it is short
    /// or its length fields lie.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` after validating version and lengths.
    ///
    /// Errors: `Truncated` if the buffer is shorter than 20 bytes, than the
    /// header length, or than the total length; `Malformed` if the version is
    /// not 4, IHL < 5, or total length < header length.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[fields::VER_IHL] >> 4 != 4 {
            return Err(Error::Malformed("IPv4 version is not 4"));
        }
        let hlen = usize::from(b[fields::VER_IHL] & 0x0f) * 4;
        if hlen < MIN_HEADER_LEN {
            return Err(Error::Malformed("IPv4 IHL below 5"));
        }
        if b.len() < hlen {
            return Err(Error::Truncated);
        }
        let total = usize::from(field::get_u16(b, fields::LENGTH));
        if total < hlen {
            return Err(Error::Malformed("IPv4 total length below header length"));
        }
        if total > b.len() {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (4 after `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[fields::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[fields::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP/ECN byte (former TOS).
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[fields::DSCP_ECN]
    }

    /// Total length field: header plus payload, in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::LENGTH)
    }

    /// Identification field.
    #[inline]
    pub fn ident(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::IDENT)
    }

    /// Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        field::get_u16(self.buffer.as_ref(), fields::FLG_OFF) & FLAG_DF != 0
    }

    /// More Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        field::get_u16(self.buffer.as_ref(), fields::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in **bytes** (the 13-bit field times 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (field::get_u16(self.buffer.as_ref(), fields::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// True if this is any fragment (MF set or a non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        field::get_u16(self.buffer.as_ref(), fields::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[fields::TTL]
    }

    /// Protocol of the payload ([`PROTO_UDP`], ...).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[fields::PROTOCOL]
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src_u32())
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst_u32())
    }

    /// Source address as a host-order integer.
    #[inline]
    pub fn src_u32(&self) -> u32 {
        field::get_u32(self.buffer.as_ref(), fields::SRC.start)
    }

    /// Destination address as a host-order integer.
    #[inline]
    pub fn dst_u32(&self) -> u32 {
        field::get_u32(self.buffer.as_ref(), fields::DST.start)
    }

    /// True if the header checksum (over `header_len` bytes, options included)
    /// is correct.
    ///
    /// Every IPv4 packet through the data plane asks, most once per header
    /// it carries: option-less headers, the norm, are summed in line (five
    /// 32-bit loads, no call); a header with options takes the general
    /// loop, out of line.
    #[inline(always)]
    pub fn verify_checksum(&self) -> bool {
        let b = self.buffer.as_ref();
        let hlen = self.header_len();
        let s = match b.first_chunk::<MIN_HEADER_LEN>() {
            Some(h) if hlen == MIN_HEADER_LEN => checksum::sum_words(h),
            _ => sum_with_options(&b[..hlen]),
        };
        checksum::fold(s) == 0xffff
    }

    /// Option bytes (between byte 20 and `header_len`).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }

    /// The header bytes, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// Payload: from `header_len` to `total_len` (padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the DSCP/ECN byte. Checksum not updated.
    #[inline]
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[fields::DSCP_ECN] = v;
    }

    /// Sets the total length. Checksum not updated.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        field::set_u16(self.buffer.as_mut(), fields::LENGTH, len);
    }

    /// Sets the identification. Checksum not updated.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        field::set_u16(self.buffer.as_mut(), fields::IDENT, ident);
    }

    /// Sets DF, MF and the fragment offset (in bytes; must be a multiple of 8,
    /// lower bits are dropped). Checksum not updated.
    #[inline]
    pub fn set_frag(&mut self, dont_frag: bool, more_frags: bool, offset_bytes: u16) {
        let mut v = (offset_bytes >> 3) & OFFSET_MASK;
        if dont_frag {
            v |= FLAG_DF;
        }
        if more_frags {
            v |= FLAG_MF;
        }
        field::set_u16(self.buffer.as_mut(), fields::FLG_OFF, v);
    }

    /// Sets the TTL. Checksum not updated.
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[fields::TTL] = ttl;
    }

    /// Sets the protocol. Checksum not updated.
    #[inline]
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[fields::PROTOCOL] = protocol;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        field::set_u16(self.buffer.as_mut(), fields::CHECKSUM, csum);
    }

    /// Sets the source address. Checksum not updated.
    #[inline]
    pub fn set_src(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[fields::SRC].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address. Checksum not updated.
    #[inline]
    pub fn set_dst(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[fields::DST].copy_from_slice(&addr.octets());
    }

    /// Recomputes the header checksum over `header_len` bytes.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hlen = self.header_len();
        let c = checksum::checksum(&self.buffer.as_ref()[..hlen]);
        self.set_checksum(c);
    }

    /// Decrements the TTL by one and patches the checksum incrementally
    /// (RFC 1624 eqn. 3 over the TTL/protocol word) instead of re-summing the
    /// header. Returns the new TTL. A TTL of 0 is left untouched (returns 0):
    /// the caller drops such packets before forwarding (RFC 1812 §5.3.1).
    #[inline]
    pub fn dec_ttl_incremental(&mut self) -> u8 {
        let b = self.buffer.as_mut();
        let ttl = b[fields::TTL];
        if ttl == 0 {
            return 0;
        }
        let old = field::get_u16(b, fields::TTL);
        let new = old - 0x0100;
        b[fields::TTL] = ttl - 1;
        let c = checksum::update16(field::get_u16(b, fields::CHECKSUM), old, new);
        field::set_u16(b, fields::CHECKSUM, c);
        ttl - 1
    }

    /// Payload (to `total_len`), writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[h..t]
    }
}

/// The fields of an option-less IPv4 header we originate (outer VXLAN headers,
/// ICMP errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Payload protocol.
    pub protocol: u8,
    /// Time to live.
    pub ttl: u8,
    /// Payload length in bytes (total length minus 20).
    pub payload_len: u16,
    /// Don't Fragment flag (set for VXLAN, RFC 7348 §4.3).
    pub dont_frag: bool,
    /// Identification.
    pub ident: u16,
}

impl Repr {
    /// Reads the fields of a checked packet (options are not represented).
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            src: p.src(),
            dst: p.dst(),
            protocol: p.protocol(),
            ttl: p.ttl(),
            payload_len: p.total_len().saturating_sub(p.header_len() as u16),
            dont_frag: p.dont_frag(),
            ident: p.ident(),
        }
    }

    /// Writes a 20-byte header (IHL 5, DSCP/ECN 0, no fragmentation) with a
    /// valid checksum at the start of `buf`. The total length saturates at
    /// 65535 if `payload_len` exceeds 65515.
    ///
    /// # Panics
    /// If `buf` is shorter than [`MIN_HEADER_LEN`].
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) {
        let h = &mut buf[..MIN_HEADER_LEN];
        h[fields::VER_IHL] = 0x45;
        h[fields::DSCP_ECN] = 0;
        field::set_u16(
            h,
            fields::LENGTH,
            self.payload_len.saturating_add(MIN_HEADER_LEN as u16),
        );
        field::set_u16(h, fields::IDENT, self.ident);
        field::set_u16(h, fields::FLG_OFF, if self.dont_frag { FLAG_DF } else { 0 });
        h[fields::TTL] = self.ttl;
        h[fields::PROTOCOL] = self.protocol;
        field::set_u16(h, fields::CHECKSUM, 0);
        h[fields::SRC].copy_from_slice(&self.src.octets());
        h[fields::DST].copy_from_slice(&self.dst.octets());
        let c = checksum::checksum(h);
        field::set_u16(h, fields::CHECKSUM, c);
    }
}

/// [`checksum::sum`] of a header with options, kept out of line so that
/// [`Packet::verify_checksum`] stays small where it is inlined.
#[cold]
#[inline(never)]
fn sum_with_options(header: &[u8]) -> u32 {
    checksum::sum(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::hex;

    // 198.18.0.1 -> 198.19.1.2, UDP, TTL 64, DF, ident 0x1234, 4-byte payload,
    // then 2 bytes of link padding.
    const PLAIN: &str = "45000018 12344000 4011 0000 c6120001 c6130102 deadbeef 0000";
    // Same with a 4-byte option (NOP NOP NOP EOL), IHL 6, fragment offset 8 + MF.
    const OPTS: &str = "4600001c 12342001 0111 0000 c6120001 c6130102 01010100 cafe babe";

    fn fixture(s: &str) -> Vec<u8> {
        let mut b = hex(s);
        Packet::new_unchecked(&mut b[..]).fill_checksum();
        b
    }

    #[test]
    fn deconstruct() {
        let b = fixture(PLAIN);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 24);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), PROTO_UDP);
        assert_eq!(p.src(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(p.dst(), Ipv4Addr::new(198, 19, 1, 2));
        assert_eq!(p.src_u32(), 0xc612_0001);
        assert_eq!(p.dst_u32(), 0xc613_0102);
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &hex("deadbeef")[..]);
        assert!(p.options().is_empty());

        let b = fixture(OPTS);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &hex("01010100")[..]);
        assert!(!p.dont_frag());
        assert!(p.more_frags());
        assert_eq!(p.frag_offset(), 8);
        assert!(p.is_fragment());
        assert_eq!(p.ttl(), 1);
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &hex("cafebabe")[..]);

        let mut bad = b.clone();
        bad[8] = 2;
        assert!(!Packet::new_checked(&bad[..]).unwrap().verify_checksum());
    }

    #[test]
    fn construct_matches_fixture_and_etherparse() {
        let repr = Repr {
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 19, 1, 2),
            protocol: PROTO_UDP,
            ttl: 64,
            payload_len: 4,
            dont_frag: true,
            ident: 0x1234,
        };
        let mut b = [0u8; 24];
        repr.emit(&mut b);
        b[20..].copy_from_slice(&hex("deadbeef"));
        assert_eq!(&b[..], &fixture(PLAIN)[..24]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p), repr);

        let (h, rest) = etherparse::Ipv4Header::from_slice(&b).unwrap();
        assert_eq!(h.source, [198, 18, 0, 1]);
        assert_eq!(h.destination, [198, 19, 1, 2]);
        assert_eq!(h.total_len, 24);
        assert!(h.dont_fragment);
        assert_eq!(h.time_to_live, 64);
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(rest, &hex("deadbeef")[..]);
    }

    #[test]
    fn setters() {
        let mut b = fixture(OPTS);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_frag(true, false, 0);
        p.set_src(Ipv4Addr::new(10, 0, 0, 1));
        p.set_dst(Ipv4Addr::new(10, 0, 0, 2));
        p.set_ttl(9);
        p.set_protocol(PROTO_ICMP);
        p.set_ident(7);
        p.set_dscp_ecn(0xb8);
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert!(p.dont_frag() && !p.is_fragment());
        assert_eq!(
            (p.ttl(), p.protocol(), p.ident(), p.dscp_ecn()),
            (9, 1, 7, 0xb8)
        );
        p.payload_mut()[0] = 0;
        assert_eq!(p.payload()[0], 0);
        let (h, _) = etherparse::Ipv4Header::from_slice(&b).unwrap();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
    }

    #[test]
    fn ttl_decrement_incremental() {
        for ttl in 1..=255u8 {
            for proto in [0u8, 1, 17, 255] {
                let mut b = fixture(PLAIN);
                b[8] = ttl;
                b[9] = proto;
                let mut p = Packet::new_checked(&mut b[..]).unwrap();
                p.fill_checksum();
                assert_eq!(p.dec_ttl_incremental(), ttl - 1);
                assert_eq!(p.ttl(), ttl - 1);
                assert!(p.verify_checksum(), "ttl {ttl} proto {proto}");
                let inc = p.checksum();
                p.fill_checksum();
                assert_eq!(inc, p.checksum());
            }
        }
        let mut b = fixture(PLAIN);
        b[8] = 0;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert_eq!(p.dec_ttl_incremental(), 0);
        assert!(p.verify_checksum());
    }

    #[test]
    fn impossible_lengths() {
        let base = fixture(PLAIN);
        let cases: [(usize, u8, Error); 5] = [
            (0, 0x65, Error::Malformed("IPv4 version is not 4")),
            (0, 0x44, Error::Malformed("IPv4 IHL below 5")),
            (0, 0x4f, Error::Truncated), // IHL 15 = 60 bytes > 26
            (
                3,
                0x13,
                Error::Malformed("IPv4 total length below header length"),
            ),
            (3, 0x1b, Error::Truncated), // total 27 > 26
        ];
        for (at, v, e) in cases {
            let mut b = base.clone();
            b[at] = v;
            assert_eq!(
                Packet::new_checked(&b[..]).unwrap_err(),
                e,
                "byte {at} = {v:#x}"
            );
        }
        let mut b = base.clone();
        b[2] = 0xff;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn truncation_at_every_byte() {
        for fx in [PLAIN, OPTS] {
            let b = fixture(fx);
            let total = usize::from(Packet::new_checked(&b[..]).unwrap().total_len());
            for n in 0..b.len() {
                let r = Packet::new_checked(&b[..n]);
                if n < total {
                    assert_eq!(r.unwrap_err(), Error::Truncated, "len {n}");
                } else {
                    let p = r.unwrap();
                    assert_eq!(p.payload().len(), total - p.header_len());
                }
            }
        }
    }
}
