//! Ethernet II frames, with 802.1Q (0x8100) and 802.1ad (0x88a8) VLAN tags.
//!
//! Layer: link. A [`Frame`] is the bytes from the destination MAC to the end of
//! the payload (no preamble, no FCS). Up to [`MAX_VLAN_TAGS`] stacked tags are
//! recognised; [`Frame::ethertype`] is the *inner* ethertype after them and
//! [`Frame::payload_offset`] is where the network header starts.
//!
//! Invariant after [`Frame::new_checked`]: the buffer holds the 14-byte header
//! plus 4 bytes per recognised tag, and the inner ethertype is not itself a
//! VLAN TPID (deeper stacks are refused), so every accessor is in bounds.

use super::field::{self, Field};
use super::{Error, Result};

/// Untagged header length: destination, source, ethertype.
pub const HEADER_LEN: usize = 14;
/// Length of one VLAN tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;
/// Most stacked VLAN tags recognised (802.1ad service tag + 802.1Q customer tag).
pub const MAX_VLAN_TAGS: usize = 2;

/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// TPID of an 802.1Q (customer) VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// TPID of an 802.1ad (service, "QinQ") VLAN tag.
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

/// The all-ones broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];

mod fields {
    use super::Field;
    pub const DST: Field = 0..6;
    pub const SRC: Field = 6..12;
    pub const ETHERTYPE: usize = 12;
}

#[inline(always)]
fn is_vlan_tpid(t: u16) -> bool {
    t == ETHERTYPE_VLAN || t == ETHERTYPE_QINQ
}

/// True for a group (multicast or broadcast) MAC address: I/G bit set.
#[inline]
pub fn is_multicast(mac: [u8; 6]) -> bool {
    mac[0] & 0x01 != 0
}

/// True for an address that can name one station: neither a group address
/// nor all zeros. A frame's source must be one (IEEE 802 section 8.2).
#[inline]
pub fn is_unicast(mac: [u8; 6]) -> bool {
    !is_multicast(mac) && mac != [0; 6]
}

/// A read/write view of an Ethernet frame.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
    /// Recognised VLAN tags (0..=MAX_VLAN_TAGS), counted once at construction.
    tags: u8,
}

/// Counts leading VLAN tags without reading past `b` (stops where bytes end).
#[inline(always)]
fn count_tags(b: &[u8]) -> usize {
    let mut tags = 0;
    while tags < MAX_VLAN_TAGS {
        let at = fields::ETHERTYPE + tags * VLAN_TAG_LEN;
        match b.get(at..at + 2) {
            Some(t) if is_vlan_tpid(u16::from_be_bytes([t[0], t[1]])) => tags += 1,
            _ => break,
        }
    }
    tags
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without validating it; tags are still counted (bounded).
    /// Accessors may panic if the buffer is shorter than the header.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        let tags = count_tags(buffer.as_ref()) as u8;
        Frame { buffer, tags }
    }

    /// Wraps `buffer` after checking that the header and its VLAN tags fit.
    ///
    /// Errors: `Truncated` if the header (with tags) does not fit;
    /// `Malformed` if more than [`MAX_VLAN_TAGS`] tags are stacked.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        // Fast path: untagged, the common case on the hot path.
        if !is_vlan_tpid(field::get_u16(b, fields::ETHERTYPE)) {
            return Ok(Frame { buffer, tags: 0 });
        }
        let tags = count_tags(b);
        let hdr = HEADER_LEN + tags * VLAN_TAG_LEN;
        if b.len() < hdr {
            return Err(Error::Truncated);
        }
        if is_vlan_tpid(field::get_u16(b, hdr - 2)) {
            return Err(Error::Malformed("more than two stacked VLAN tags"));
        }
        Ok(Frame {
            buffer,
            tags: tags as u8,
        })
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    #[inline]
    pub fn dst(&self) -> [u8; 6] {
        field::get_mac(self.buffer.as_ref(), fields::DST.start)
    }

    /// Source MAC address.
    #[inline]
    pub fn src(&self) -> [u8; 6] {
        field::get_mac(self.buffer.as_ref(), fields::SRC.start)
    }

    /// The inner ethertype, after any VLAN tags.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), self.payload_offset() - 2)
    }

    /// The outermost ethertype / TPID (offset 12), whatever it is.
    #[inline]
    pub fn outer_ethertype(&self) -> u16 {
        field::get_u16(self.buffer.as_ref(), fields::ETHERTYPE)
    }

    /// Number of VLAN tags recognised (0, 1 or 2).
    #[inline]
    pub fn vlan_tags(&self) -> usize {
        usize::from(self.tags)
    }

    /// VLAN ID (low 12 bits of the TCI) of the outermost tag, if any.
    #[inline]
    pub fn vlan_id(&self) -> Option<u16> {
        if self.tags == 0 {
            None
        } else {
            Some(field::get_u16(self.buffer.as_ref(), fields::ETHERTYPE + 2) & 0x0fff)
        }
    }

    /// Offset of the network header: 14 plus 4 per VLAN tag.
    #[inline]
    pub fn payload_offset(&self) -> usize {
        HEADER_LEN + usize::from(self.tags) * VLAN_TAG_LEN
    }

    /// The bytes after the header and tags.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_offset()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC address.
    #[inline]
    pub fn set_dst(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[fields::DST].copy_from_slice(&mac);
    }

    /// Sets the source MAC address.
    #[inline]
    pub fn set_src(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[fields::SRC].copy_from_slice(&mac);
    }

    /// Sets the outermost ethertype (offset 12). The tag count is not
    /// recomputed: use it on untagged frames or to rewrite a TPID.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: u16) {
        field::set_u16(self.buffer.as_mut(), fields::ETHERTYPE, ethertype);
    }

    /// Sets the inner ethertype (the one after the VLAN tags).
    #[inline]
    pub fn set_inner_ethertype(&mut self, ethertype: u16) {
        let at = self.payload_offset() - 2;
        field::set_u16(self.buffer.as_mut(), at, ethertype);
    }

    /// The bytes after the header and tags, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let off = self.payload_offset();
        &mut self.buffer.as_mut()[off..]
    }
}

/// Writes an untagged 14-byte Ethernet header at the start of `buf`.
///
/// # Panics
/// If `buf` is shorter than [`HEADER_LEN`].
#[inline]
pub fn emit(buf: &mut [u8], dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    let h = &mut buf[..HEADER_LEN];
    h[fields::DST].copy_from_slice(&dst);
    h[fields::SRC].copy_from_slice(&src);
    field::set_u16(h, fields::ETHERTYPE, ethertype);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::hex;

    const UNTAGGED: &str = "020000000002 020000000001 0800 45000014";
    const QINQ: &str = "ffffffffffff 020000000001 88a8 0064 8100 00c8 86dd 6000";

    #[test]
    fn deconstruct_untagged() {
        let b = hex(UNTAGGED);
        let f = Frame::new_checked(&b[..]).unwrap();
        assert_eq!(f.dst(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.src(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.ethertype(), ETHERTYPE_IPV4);
        assert_eq!(f.vlan_tags(), 0);
        assert_eq!(f.vlan_id(), None);
        assert_eq!(f.payload_offset(), 14);
        assert_eq!(f.payload(), &[0x45, 0, 0, 0x14]);
    }

    #[test]
    fn deconstruct_tagged() {
        let b = hex("020000000002 020000000001 8100 0005 0806 0001");
        let f = Frame::new_checked(&b[..]).unwrap();
        assert_eq!(f.vlan_tags(), 1);
        assert_eq!(f.vlan_id(), Some(5));
        assert_eq!(f.ethertype(), ETHERTYPE_ARP);
        assert_eq!(f.outer_ethertype(), ETHERTYPE_VLAN);
        assert_eq!(f.payload_offset(), 18);

        let b = hex(QINQ);
        let f = Frame::new_checked(&b[..]).unwrap();
        assert!(is_multicast(f.dst()));
        assert_eq!(f.vlan_tags(), 2);
        assert_eq!(f.vlan_id(), Some(100));
        assert_eq!(f.ethertype(), ETHERTYPE_IPV6);
        assert_eq!(f.payload_offset(), 22);
        assert_eq!(f.payload(), &[0x60, 0]);
    }

    #[test]
    fn three_tags_refused() {
        let b = hex("ffffffffffff 020000000001 88a8 0064 8100 00c8 8100 0001 0800");
        assert!(matches!(
            Frame::new_checked(&b[..]),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn truncation_at_every_byte() {
        for fx in [UNTAGGED, QINQ] {
            let b = hex(fx);
            let f = Frame::new_checked(&b[..]).unwrap();
            let need = f.payload_offset();
            for n in 0..b.len() {
                let r = Frame::new_checked(&b[..n]);
                if n < need {
                    assert_eq!(r.unwrap_err(), Error::Truncated, "len {n}");
                } else {
                    assert_eq!(r.unwrap().ethertype(), f.ethertype());
                }
            }
        }
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 18];
        emit(
            &mut b,
            [2, 0, 0, 0, 0, 2],
            [2, 0, 0, 0, 0, 1],
            ETHERTYPE_IPV4,
        );
        assert_eq!(&b[..14], &hex(UNTAGGED)[..14]);
        let mut f = Frame::new_checked(&mut b[..]).unwrap();
        f.set_dst(BROADCAST);
        f.set_src([1; 6]);
        f.set_ethertype(ETHERTYPE_IPV6);
        f.payload_mut()[0] = 0x60;
        let b = f.into_inner();
        assert_eq!(&b[..15], &hex("ffffffffffff 010101010101 86dd 60")[..]);

        let mut t = hex(QINQ);
        let mut f = Frame::new_checked(&mut t[..]).unwrap();
        f.set_inner_ethertype(ETHERTYPE_IPV4);
        assert_eq!(f.ethertype(), ETHERTYPE_IPV4);
        assert_eq!(f.outer_ethertype(), ETHERTYPE_QINQ);
    }

    #[test]
    fn etherparse_agrees() {
        let mut b = vec![0u8; 14 + 20];
        emit(
            &mut b,
            [2, 0, 0, 0, 0, 2],
            [2, 0, 0, 0, 0, 1],
            ETHERTYPE_IPV4,
        );
        let (h, rest) = etherparse::Ethernet2Header::from_slice(&b).unwrap();
        assert_eq!(h.destination, [2, 0, 0, 0, 0, 2]);
        assert_eq!(h.source, [2, 0, 0, 0, 0, 1]);
        assert_eq!(h.ether_type, etherparse::EtherType::IPV4);
        assert_eq!(rest.len(), 20);
    }
}
