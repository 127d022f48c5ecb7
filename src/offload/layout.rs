//! The super-packet format and its one check.
//!
//! Layer: offload, sans-IO. A super-packet enters the router whole (a
//! container's TSO write read from a TUN queue or an AF_PACKET socket, or a
//! train of VXLAN datagrams coalesced by the UDP uplink), crosses the
//! pipeline as one packet, and is cut into segments only where a port needs
//! them ([`super::segment`]).
//!
//! The format, with the [`Gso`] annotation that travels beside the bytes:
//! - as the [`Encap`] says: IP alone, behind Ethernet (no VLAN tag), or
//!   behind a VXLAN tunnel (Ethernet, outer IPv4 or IPv6 without extension
//!   headers, UDP, VXLAN, inner Ethernet); then IPv4 (no fragment) or IPv6
//!   (the transport as next header), then TCP or UDP;
//! - every length field covers the whole super-packet, the IPv4 header
//!   checksums are valid for those lengths, a TCP header is the first
//!   segment's (its sequence number, the flags of the whole: CWR belongs to
//!   the first segment, FIN and PSH to the last);
//! - [`Gso::size`] payload bytes per segment, the last one possibly shorter;
//! - the TCP or UDP checksum (and over IPv6 the outer UDP checksum) is not
//!   valid: as with Linux's `CHECKSUM_PARTIAL`, whoever produces the
//!   segments computes theirs. The payload itself was verified (or made by
//!   the local kernel) where the super-packet entered.
//!
//! Invariant: [`Layout::parse`] checks every offset and length once, through
//! the [`crate::wire`] views; a [`Layout`] describes exactly the frame it was
//! parsed from, so the code that cuts or writes that frame by it
//! ([`super::segment::write_headers`], [`super::vnet::whole_write`]) cannot
//! fail or panic.

use crate::wire::{checksum, ethernet, ipv4, ipv6, tcp, udp, vxlan};
use crate::wire::{Error, Result};

/// The largest inner IP packet a super-packet may be: VXLAN over IPv4 adds
/// 50 bytes (outer IPv4 20, UDP 8, VXLAN 8, inner Ethernet 14) and the outer
/// IPv4 total length must still fit in 16 bits.
pub const MAX_SUPER_L3: usize = 65535 - 50;

/// Segmentation annotation of a super-packet: the payload bytes per segment
/// (the MSS the sender used, `skb_shinfo(skb)->gso_size`) and how many
/// segments it carries (`gso_segs`), for counters; [`Layout::parse`] works
/// the count out again from the lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    pub size: u16,
    pub segs: u16,
}

impl Gso {
    /// The annotation of a super-packet with `payload` bytes of TCP payload
    /// cut at `size` (`size` not zero).
    pub fn for_payload(size: u16, payload: usize) -> Gso {
        let segs = payload.div_ceil(usize::from(size.max(1)));
        Gso {
            size,
            segs: u16::try_from(segs).unwrap_or(u16::MAX),
        }
    }
}

/// What comes before the super-packet's IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// Nothing: the frame is the IP packet (TUN ports).
    Ip,
    /// An Ethernet header (veth ports).
    Eth,
    /// Ethernet, outer IP, UDP, VXLAN and inner Ethernet (the uplink).
    Vxlan,
}

/// Outer headers of a VXLAN-encapsulated super-packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    /// Outer IP header offset.
    pub l3: usize,
    pub v6: bool,
    /// Outer UDP header offset.
    pub udp: usize,
}

/// Where the headers of a super-packet are, checked against its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// What comes before the IP header, as parsed.
    pub encap: Encap,
    pub tunnel: Option<Tunnel>,
    /// Inner IP header offset.
    pub l3: usize,
    /// TCP header offset.
    pub l4: usize,
    /// Payload offset: the length of the header block every segment repeats.
    pub payload: usize,
    /// Inner IP version 6.
    pub v6: bool,
    /// The transport is UDP (a `UDP_SEGMENT` super-packet), else TCP.
    pub udp: bool,
    /// Payload bytes per segment.
    pub size: usize,
    /// Segments in all (at least one).
    pub segments: usize,
    /// Total frame length.
    pub len: usize,
}

/// Whether an ethertype is IPv4 or IPv6.
#[inline]
fn is_ip(ethertype: u16) -> bool {
    matches!(
        ethertype,
        ethernet::ETHERTYPE_IPV4 | ethernet::ETHERTYPE_IPV6
    )
}

/// The ethertype of the Ethernet header at `off` (no VLAN tag).
#[inline]
fn ethertype_at(f: &[u8], off: usize) -> Result<u16> {
    let h = f
        .get(off..off + ethernet::HEADER_LEN)
        .ok_or(Error::Truncated)?;
    Ok(ethernet::Frame::new_unchecked(h).outer_ethertype())
}

/// Checks the IP header at `off`, which must reach exactly to the end of
/// `f`; returns (IPv6, protocol, header end).
fn ip_at(f: &[u8], off: usize) -> Result<(bool, u8, usize)> {
    let Some(b) = f.get(off..).filter(|b| !b.is_empty()) else {
        return Err(Error::Truncated);
    };
    match b[0] >> 4 {
        4 => {
            let ip = ipv4::Packet::new_checked(b)?;
            if usize::from(ip.total_len()) != b.len() {
                return Err(Error::Malformed("IPv4 total length is not the frame's"));
            }
            if ip.is_fragment() {
                return Err(Error::Malformed("IPv4 fragment"));
            }
            Ok((false, ip.protocol(), off + ip.header_len()))
        }
        6 => {
            let ip = ipv6::Packet::new_checked(b)?;
            if ip.total_len() != b.len() {
                return Err(Error::Malformed("IPv6 payload length is not the frame's"));
            }
            Ok((true, ip.next_header(), off + ipv6::HEADER_LEN))
        }
        _ => Err(Error::Malformed("not IPv4 or IPv6")),
    }
}

impl Layout {
    /// Parses a super-packet laid out as `encap` says. Refuses anything
    /// that is not the format in the module docs.
    pub fn parse(f: &[u8], encap: Encap, gso: Gso) -> Result<Layout> {
        let size = usize::from(gso.size);
        if size == 0 {
            return Err(Error::Malformed("zero segment size"));
        }
        let mut off = 0;
        if encap != Encap::Ip {
            if !is_ip(ethertype_at(f, 0)?) {
                return Err(Error::Malformed("not IP over Ethernet"));
            }
            off = ethernet::HEADER_LEN;
        }
        let (mut v6, mut proto, mut next) = ip_at(f, off)?;
        let mut tunnel = None;
        if encap == Encap::Vxlan {
            if proto != ipv4::PROTO_UDP {
                return Err(Error::Malformed("outer packet is not UDP"));
            }
            let udp = next;
            let inner_eth = udp + udp::HEADER_LEN + vxlan::HEADER_LEN;
            let inner = inner_eth + ethernet::HEADER_LEN;
            if f.len() < inner {
                return Err(Error::Truncated);
            }
            if usize::from(udp::Packet::new_unchecked(&f[udp..]).len()) != f.len() - udp {
                return Err(Error::Malformed("UDP length is not the frame's"));
            }
            if !is_ip(ethertype_at(f, inner_eth)?) {
                return Err(Error::Malformed("inner frame is not IP"));
            }
            tunnel = Some(Tunnel { l3: off, v6, udp });
            (v6, proto, next) = ip_at(f, inner)?;
            off = inner;
        }
        let l4 = next;
        let payload = match proto {
            ipv4::PROTO_TCP => l4 + tcp::Packet::new_checked(&f[l4..])?.header_len(),
            ipv4::PROTO_UDP => {
                let u = udp::Packet::new_checked(&f[l4..])?;
                if usize::from(u.len()) != f.len() - l4 {
                    return Err(Error::Malformed("UDP length is not the packet's"));
                }
                l4 + udp::HEADER_LEN
            }
            _ => return Err(Error::Malformed("neither TCP nor UDP")),
        };
        if f.len() <= payload {
            return Err(Error::Malformed("no payload after the headers"));
        }
        if f.len() - off > MAX_SUPER_L3 {
            return Err(Error::Malformed("super-packet too large to encapsulate"));
        }
        Ok(Layout {
            encap,
            tunnel,
            l3: off,
            l4,
            payload,
            v6,
            udp: proto == ipv4::PROTO_UDP,
            size,
            segments: (f.len() - payload).div_ceil(size),
            len: f.len(),
        })
    }

    /// The payload range of segment `i` in the frame.
    #[inline]
    pub fn chunk(&self, i: usize) -> std::ops::Range<usize> {
        let start = self.payload + i * self.size;
        start..(start + self.size).min(self.len)
    }

    /// Bytes of segment `i` as a frame (headers and its payload).
    #[inline]
    pub fn segment_len(&self, i: usize) -> usize {
        let c = self.chunk(i);
        self.payload + c.len()
    }

    /// The largest segment (the first), as a frame.
    #[inline]
    pub fn max_segment_len(&self) -> usize {
        self.segment_len(0)
    }

    /// Inner IP bytes of the largest segment: what must fit the MTU.
    #[inline]
    pub fn max_segment_l3(&self) -> usize {
        self.max_segment_len() - self.l3
    }

    /// The annotation that describes this layout: its segment size and
    /// count.
    #[inline]
    pub fn gso(&self) -> Gso {
        Gso {
            size: u16::try_from(self.size).unwrap_or(u16::MAX),
            segs: u16::try_from(self.segments).unwrap_or(u16::MAX),
        }
    }

    /// The transport's IP protocol number.
    #[inline]
    pub fn proto(&self) -> u8 {
        if self.udp {
            ipv4::PROTO_UDP
        } else {
            ipv4::PROTO_TCP
        }
    }

    /// Where the transport checksum field is, from the transport header.
    #[inline]
    pub fn csum_offset(&self) -> usize {
        if self.udp {
            udp::fields::CHECKSUM
        } else {
            tcp::fields::CHECKSUM
        }
    }

    /// The value a `CHECKSUM_PARTIAL` transport checksum field of frame `f`
    /// (parsed as `self`) holds: the folded pseudo-header sum for the whole
    /// super-packet, which the kernel completes per segment.
    pub fn partial_checksum(&self, f: &[u8]) -> u16 {
        checksum::fold(pseudo_sum(
            &f[self.l3..],
            self.v6,
            self.proto(),
            self.len - self.l4,
        ))
    }
}

/// The pseudo-header sum (unfolded) of the IP header at the start of `ip`
/// (IPv6 when `v6`) for transport `proto` and `len` bytes of transport
/// header and payload.
#[inline(always)]
pub(crate) fn pseudo_sum(ip: &[u8], v6: bool, proto: u8, len: usize) -> u32 {
    if v6 {
        let h = ipv6::Packet::new_unchecked(ip);
        checksum::pseudo_v6(h.src(), h.dst(), proto, len as u32)
    } else {
        let h = ipv4::Packet::new_unchecked(ip);
        checksum::pseudo_v4(h.src(), h.dst(), proto, len as u16)
    }
}
