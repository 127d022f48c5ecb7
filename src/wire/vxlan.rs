//! VXLAN (RFC 7348 §5): the 8-byte header between the outer UDP header and
//! the inner Ethernet frame.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Layer: tunnel. [`Packet::new_checked`] checks the length only: whether the
//! I flag is set, and whether the VNI is ours, is the decapsulator's policy
//! (it counts a named drop reason for each), so the view reports rather than
//! refuses. Reserved bits are never looked at on receive and always written
//! as zero by [`emit`].

use super::field;
use super::{Error, Result};

/// Header length.
pub const HEADER_LEN: usize = 8;
/// The I flag: "the I flag MUST be set to 1 for a valid VXLAN Network ID".
pub const FLAG_I: u8 = 0x08;
/// IANA-assigned UDP destination port (RFC 7348 §5).
pub const DEFAULT_PORT: u16 = 4789;
/// Largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;

mod fields {
    pub const FLAGS: usize = 0;
    pub const VNI: usize = 4;
}

/// A read/write view of a VXLAN header and the inner frame after it.
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

    /// Wraps `buffer` after checking that the 8-byte header fits.
    /// Errors: `Truncated`.
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

    /// The whole flags byte, reserved bits included (for diagnostics).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[fields::FLAGS]
    }

    /// True if the I flag is set. RFC 7348 §5: "Flags (8 bits): where the I
    /// flag MUST be set to 1 for a valid VXLAN Network ID (VNI). The other 7
    /// bits (designated "R") are reserved fields and MUST be set to zero on
    /// transmission and ignored on receipt." Hence the mask: only bit 0x08 is
    /// tested, whatever the R bits hold.
    #[inline]
    pub fn has_vni_flag(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// The 24-bit VNI. RFC 7348 §5: "VXLAN Segment ID/VXLAN Network Identifier
    /// (VNI): this is a 24-bit value"; the trailing byte is "Reserved fields
    /// (24 bits and 8 bits): MUST be set to zero on transmission and ignored on
    /// receipt", so it is shifted out, and bytes 1..4 are never read.
    #[inline]
    pub fn vni(&self) -> u32 {
        field::get_u32(self.buffer.as_ref(), fields::VNI) >> 8
    }

    /// The encapsulated Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags byte as given (use [`FLAG_I`]; R bits should be zero).
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[fields::FLAGS] = flags;
    }

    /// Sets the VNI (low 24 bits of `vni`) and zeroes the trailing reserved
    /// byte.
    #[inline]
    pub fn set_vni(&mut self, vni: u32) {
        field::set_u32(self.buffer.as_mut(), fields::VNI, (vni & VNI_MAX) << 8);
    }

    /// The encapsulated frame, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// Writes the 8-byte header: I flag set, VNI = low 24 bits of `vni`, and every
/// reserved bit zero ("MUST be set to zero on transmission", RFC 7348 §5).
///
/// # Panics
/// If `buf` is shorter than [`HEADER_LEN`].
#[inline]
pub fn emit(buf: &mut [u8], vni: u32) {
    let h = &mut buf[..HEADER_LEN];
    h[..4].copy_from_slice(&[FLAG_I, 0, 0, 0]);
    field::set_u32(h, fields::VNI, (vni & VNI_MAX) << 8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::hex;

    #[test]
    fn deconstruct() {
        let b = hex("08000000 00002a00 020000000002");
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.flags(), FLAG_I);
        assert!(p.has_vni_flag());
        assert_eq!(p.vni(), 42);
        assert_eq!(p.payload(), &[2, 0, 0, 0, 0, 2]);
    }

    #[test]
    fn reserved_bits_ignored_on_receive() {
        let b = hex("ffffffff abcdefff");
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.has_vni_flag());
        assert_eq!(p.vni(), 0xabcdef);
        let b = hex("f7ffffff 00000100");
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(!p.has_vni_flag());
        assert_eq!(p.vni(), 1);
    }

    #[test]
    fn construct() {
        let mut b = [0xffu8; 8];
        emit(&mut b, 42);
        assert_eq!(&b[..], &hex("08000000 00002a00")[..]);
        emit(&mut b, 0xff00_0001); // high bits beyond 24 dropped
        assert_eq!(&b[..], &hex("08000000 00000100")[..]);
        let mut b = [0xffu8; 9];
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_flags(FLAG_I);
        p.set_vni(VNI_MAX);
        p.payload_mut()[0] = 7;
        assert_eq!(
            (p.vni(), p.flags(), p.payload()),
            (VNI_MAX, FLAG_I, &[7u8][..])
        );
        assert_eq!(b[7], 0);
    }

    #[test]
    fn truncation() {
        let b = hex("08000000 00002a00");
        for n in 0..8 {
            assert_eq!(Packet::new_checked(&b[..n]).unwrap_err(), Error::Truncated);
        }
        assert!(Packet::new_checked(&b[..]).unwrap().payload().is_empty());
    }
}
