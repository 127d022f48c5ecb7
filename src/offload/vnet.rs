//! The virtio-net header: what the kernel says about a packet read from a
//! TUN queue with `IFF_VNET_HDR` or an AF_PACKET socket with
//! `PACKET_VNET_HDR`, and what the router says about one it writes there.
//!
//! Layer: offload, sans-IO; the ports ([`crate::port::tun`],
//! [`crate::port::afpacket`]) do the reads and writes. With offloads on, the
//! container kernel hands over one TCP (or UDP with `UDP_SEGMENT`)
//! super-packet of up to 64 KiB instead of one packet per MTU, and accepts
//! such super-packets on write, so the router pays one system call per ~45
//! segments instead of one per segment. Offsets in the header are relative
//! to the IP packet here; [`shift_header`] moves them past an Ethernet
//! header for AF_PACKET.
//!
//! - [`keep_whole`] decides whether a super-packet read goes on whole (its
//!   [`Gso`] annotation, checked by [`super::Layout::parse`]).
//! - [`Splitter`] turns any other super-packet read into MTU-sized IP
//!   packets in the caller's batch slots. A super-packet may hold more
//!   segments than a batch has slots (64 KiB at MSS 536 is 123 segments), so
//!   it hands out as many as fit and keeps the rest for the next call. The
//!   segmentation is tun-rs' (`gso_split`); this module adds the batch
//!   carry-over, the validation of what the kernel hands over, and exact
//!   per-frame accounting.
//! - [`whole_write`] prepares a super-packet the data plane hands a port
//!   whole ([`header_for`] its header); [`super::coalesce::Coalescer`] makes
//!   the headers of the super-packets it coalesces.
//! - [`complete_checksum`] finishes a [`F_NEEDS_CSUM`] packet (checksum
//!   offload without segmentation).
//!
//! Invariants:
//! - Every packet [`Splitter::emit`] writes is a complete IP packet with
//!   correct IP and transport checksums and at most the MTU given to
//!   [`Splitter::load`]; segments come out in sequence order, across calls,
//!   none dropped or repeated.
//! - A super-packet [`keep_whole`] keeps is one the [`Splitter`] would have
//!   cut into the same segments, each within the MTU.
//! - Buffers are allocated at construction.

use tun_rs::{
    gso_split, VirtioNetHdr, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP_L4, VIRTIO_NET_HDR_LEN,
};

use super::{Encap, Gso, Layout};
use crate::port::{Packet, BATCH_SIZE};
use crate::wire::{checksum, ethernet, ipv4, ipv6, tcp, udp, Error};

/// Bytes of the virtio-net header before every packet read from or written to
/// a TUN queue with `IFF_VNET_HDR` (`struct virtio_net_hdr`, 10 bytes).
pub const VNET_HDR_LEN: usize = VIRTIO_NET_HDR_LEN;

/// `virtio_net_hdr.flags`: the transport checksum is partial (the field holds
/// the pseudo-header sum) and must be completed over `csum_start..`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `virtio_net_hdr.gso_type`: not a super-packet.
pub const GSO_NONE: u8 = 0;
/// `virtio_net_hdr.gso_type` modifier: TCP ECN (CWR only on the first segment).
pub const GSO_ECN: u8 = 0x80;

/// Largest IP packet a TUN read can return: a 64 KiB IPv6 payload plus its
/// fixed header (BIG TCP does not apply to TUN, whose GSO limit is 64 KiB).
pub const MAX_PACKET: usize = ipv6::HEADER_LEN + 65535;

/// Why a super-packet was not split (the whole read is dropped and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    /// The read filled the whole buffer: the packet may be cut short.
    Truncated,
    /// The virtio-net header does not describe the packet (the reason).
    Malformed(&'static str),
    /// A segment would exceed the port MTU (segment bytes, MTU).
    Oversize(usize, usize),
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitError::Truncated => write!(f, "super-packet truncated by the read buffer"),
            SplitError::Malformed(why) => write!(f, "malformed super-packet: {why}"),
            SplitError::Oversize(seg, mtu) => {
                write!(
                    f,
                    "super-packet segments of {seg} bytes exceed the MTU {mtu}"
                )
            }
        }
    }
}

impl std::error::Error for SplitError {}

/// The super-packet being handed out.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Where the (rewritten) headers of the next chunk start in the buffer.
    start: usize,
    /// End of the super-packet in the buffer.
    end: usize,
    /// The header as `gso_split` wants it (`hdr_len` recomputed).
    hdr: VirtioNetHdr,
    hdr_len: usize,
    gso_size: usize,
    /// IP header length (`csum_start`).
    l4: usize,
    is_v6: bool,
    tcp: bool,
    /// The first segment's TCP flags, sequence number and IPv4 ID.
    flags0: u8,
    seq0: u32,
    id0: u16,
    /// Segments handed out so far, and in all.
    done: usize,
    total: usize,
}

/// Splits TSO/USO super-packets into MTU-sized packets, carrying what does
/// not fit in one batch over to the next call.
///
/// Every read goes into [`Splitter::read_buf`], virtio-net header first: one
/// plain `read(2)` into one buffer is the cheapest syscall for small packets
/// (measured: `readv` with the header and the packet in separate iovecs
/// costs ~25% more per 64-byte packet than a read plus a 64-byte copy), and
/// a super-packet is then already where it is split from.
pub struct Splitter {
    buf: Box<[u8]>,
    /// Largest segment the caller's slots hold.
    slot_len: usize,
    cur: Option<Pending>,
}

impl std::fmt::Debug for Splitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Splitter")
            .field("pending", &self.pending_segments())
            .finish()
    }
}

impl Splitter {
    /// A splitter handing out segments into slots (packet receive areas) of
    /// `slot_len` bytes.
    pub fn new(slot_len: usize) -> Splitter {
        Splitter {
            buf: vec![0u8; VNET_HDR_LEN + MAX_PACKET + 1].into_boxed_slice(),
            slot_len,
            cur: None,
        }
    }

    /// Where a read puts `[virtio-net header][packet]`. Using it drops any
    /// super-packet still pending, so read only when [`Self::has_pending`]
    /// is false. A read that fills it whole may have been cut.
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.cur = None;
        &mut self.buf
    }

    /// The virtio-net header of the last read.
    pub fn header(&self) -> VirtioNetHdr {
        VirtioNetHdr::decode(&self.buf).unwrap_or_default()
    }

    /// The first `len` packet bytes of the last read (after the header).
    pub fn packet(&self, len: usize) -> &[u8] {
        &self.buf[VNET_HDR_LEN..(VNET_HDR_LEN + len).min(self.buf.len())]
    }

    /// The largest packet (after the header) a read can return without a
    /// doubt that it was cut: a longer one is [`SplitError::Truncated`].
    pub fn capacity(&self) -> usize {
        self.buf.len() - VNET_HDR_LEN - 1
    }

    /// Whether segments of a super-packet wait to be handed out.
    pub fn has_pending(&self) -> bool {
        self.cur.is_some()
    }

    /// Segments still to be handed out.
    pub fn pending_segments(&self) -> usize {
        self.cur.map_or(0, |p| p.total - p.done)
    }

    /// Takes the super-packet of the last read, `len` bytes after the
    /// header, as described by `hdr` (its `gso_type` is not [`GSO_NONE`]).
    /// Returns how many segments it holds; on error nothing is pending and
    /// the packet is to be dropped.
    pub fn load(
        &mut self,
        hdr: &VirtioNetHdr,
        len: usize,
        mtu: usize,
    ) -> Result<usize, SplitError> {
        self.cur = None;
        if len > self.capacity() {
            return Err(SplitError::Truncated);
        }
        let p = self.parse(hdr, len, mtu)?;
        self.cur = Some(p);
        Ok(p.total)
    }

    /// Checks the header against the packet in `buf[..len]`, the way the
    /// kernel's own segmentation would, and fills in what `gso_split` needs.
    fn parse(&self, hdr: &VirtioNetHdr, len: usize, mtu: usize) -> Result<Pending, SplitError> {
        let pkt = &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + len];
        let Some(&b0) = pkt.first() else {
            return Err(SplitError::Malformed("empty packet"));
        };
        let is_v6 = match b0 >> 4 {
            4 => false,
            6 => true,
            _ => return Err(SplitError::Malformed("not an IPv4 or IPv6 packet")),
        };
        let ecn = hdr.gso_type & GSO_ECN != 0;
        let tcp = match hdr.gso_type & !GSO_ECN {
            VIRTIO_NET_HDR_GSO_TCPV4 if !is_v6 => true,
            VIRTIO_NET_HDR_GSO_TCPV6 if is_v6 => true,
            VIRTIO_NET_HDR_GSO_UDP_L4 if !ecn => false,
            _ => return Err(SplitError::Malformed("GSO type does not match the packet")),
        };
        let gso_size = usize::from(hdr.gso_size);
        if gso_size == 0 {
            return Err(SplitError::Malformed("zero gso_size"));
        }
        let l4 = usize::from(hdr.csum_start);
        let min_ip = if is_v6 {
            ipv6::HEADER_LEN
        } else {
            ipv4::MIN_HEADER_LEN
        };
        if l4 < min_ip || l4 > len {
            return Err(SplitError::Malformed("csum_start outside the packet"));
        }
        if !is_v6 && usize::from(b0 & 0x0f) * 4 != l4 {
            return Err(SplitError::Malformed(
                "csum_start is not the IPv4 header length",
            ));
        }
        // hdr_len is recomputed from the transport header: on the forwarding
        // path the kernel may report the whole first packet there.
        let (l4_len, csum_offset) = if tcp {
            let t = tcp::Packet::new_checked(&pkt[l4..]).map_err(|e| match e {
                Error::Truncated => SplitError::Malformed("TCP header cut short"),
                Error::Malformed(why) => SplitError::Malformed(why),
            })?;
            (t.header_len(), tcp::fields::CHECKSUM)
        } else {
            (udp::HEADER_LEN, udp::fields::CHECKSUM)
        };
        if usize::from(hdr.csum_offset) != csum_offset {
            return Err(SplitError::Malformed(
                "csum_offset does not match the protocol",
            ));
        }
        let hdr_len = l4 + l4_len;
        if len <= hdr_len {
            return Err(SplitError::Malformed("no payload after the headers"));
        }
        let payload = len - hdr_len;
        let seg = hdr_len + payload.min(gso_size);
        if seg > mtu || seg > self.slot_len {
            return Err(SplitError::Oversize(seg, mtu));
        }
        let total = payload.div_ceil(gso_size);
        let Ok(hdr_len16) = u16::try_from(hdr_len) else {
            return Err(SplitError::Malformed("headers over 64 KiB"));
        };
        // Checked above when `tcp`.
        let first_tcp = tcp::Packet::new_unchecked(&pkt[l4..]);
        Ok(Pending {
            start: VNET_HDR_LEN,
            end: VNET_HDR_LEN + len,
            hdr: VirtioNetHdr {
                hdr_len: hdr_len16,
                ..*hdr
            },
            hdr_len,
            gso_size,
            l4,
            is_v6,
            tcp,
            flags0: if tcp { first_tcp.flags() } else { 0 },
            seq0: if tcp { first_tcp.seq_number() } else { 0 },
            id0: if is_v6 {
                0
            } else {
                ipv4::Packet::new_unchecked(pkt).ident()
            },
            done: 0,
            total,
        })
    }

    /// Writes the next pending segments into `slots` (each set as received,
    /// at the packet's headroom) and returns how many: all that remain, or
    /// as many as there are slots. An error drops the rest of the
    /// super-packet (not expected: [`Self::load`] validated it).
    pub fn emit(&mut self, slots: &mut [Packet]) -> Result<usize, SplitError> {
        let Some(mut p) = self.cur else {
            return Ok(0);
        };
        let k = slots.len().min(BATCH_SIZE).min(p.total - p.done);
        if k == 0 {
            return Ok(0);
        }
        let chunk_end = (p.start + p.hdr_len + k * p.gso_size).min(p.end);
        let last = chunk_end == p.end;
        if p.tcp {
            // gso_split gives the last segment of its input the flags of the
            // header: FIN and PSH belong to the super-packet's last segment
            // only, CWR to its first only (RFC 3168 6.1.2; the kernel's
            // tcp_gso_segment does the same).
            let mut f = p.flags0;
            if p.done > 0 {
                f &= !tcp::FLAG_CWR;
            }
            if !last {
                f &= !(tcp::FLAG_FIN | tcp::FLAG_PSH);
            }
            tcp::Packet::new_unchecked(&mut self.buf[p.start + p.l4..]).set_flags(f);
        }
        let mut sizes = [0usize; BATCH_SIZE];
        let split = {
            let mut it = slots[..k].iter_mut();
            let mut outs: [&mut [u8]; BATCH_SIZE] =
                std::array::from_fn(|_| it.next().map_or(Default::default(), |s| s.rx_area()));
            gso_split(
                &mut self.buf[p.start..chunk_end],
                p.hdr,
                &mut outs[..k],
                &mut sizes[..k],
                0,
                p.is_v6,
            )
        };
        match split {
            Ok(got) if got == k => {}
            _ => {
                self.cur = None;
                return Err(SplitError::Malformed("segmentation failed"));
            }
        }
        for (slot, &size) in slots[..k].iter_mut().zip(&sizes[..k]) {
            slot.set_received(size);
            slot.ts_nanos = 0;
        }
        p.done += k;
        if last {
            self.cur = None;
            return Ok(k);
        }
        // The next chunk's headers go right before its payload, over bytes
        // already handed out; its first segment continues the sequence space
        // and the IPv4 ID run.
        let next = chunk_end - p.hdr_len;
        self.buf.copy_within(p.start..p.start + p.hdr_len, next);
        p.start = next;
        if p.tcp {
            let seq = p.seq0.wrapping_add((p.done * p.gso_size) as u32);
            tcp::Packet::new_unchecked(&mut self.buf[next + p.l4..]).set_seq_number(seq);
        }
        if !p.is_v6 {
            let id = p.id0.wrapping_add(p.done as u16);
            ipv4::Packet::new_unchecked(&mut self.buf[next..]).set_ident(id);
        }
        self.cur = Some(p);
        Ok(k)
    }
}

/// Checks a super-packet the kernel handed over (`pkt`, the IP packet after
/// its virtio-net header `hdr`) for passing it on whole: TCP (TSO) or UDP
/// (`UDP_SEGMENT`) over IPv4 or IPv6 (no extension headers), offsets that
/// describe the packet, segments within `mtu`, short enough to be
/// encapsulated ([`super::MAX_SUPER_L3`]). Returns its annotation; `None` for
/// anything else, which the caller splits with [`Splitter`] (or refuses).
pub fn keep_whole(hdr: &VirtioNetHdr, pkt: &[u8], mtu: usize) -> Option<Gso> {
    let (v6, udp) = match hdr.gso_type & !GSO_ECN {
        VIRTIO_NET_HDR_GSO_TCPV4 => (Some(false), false),
        VIRTIO_NET_HDR_GSO_TCPV6 => (Some(true), false),
        // USO carries no IP version, and ECN belongs to TCP.
        VIRTIO_NET_HDR_GSO_UDP_L4 if hdr.gso_type & GSO_ECN == 0 => (None, true),
        _ => return None,
    };
    if hdr.gso_size == 0 {
        return None;
    }
    let probe = Gso {
        size: hdr.gso_size,
        segs: 0,
    };
    let l = Layout::parse(pkt, Encap::Ip, probe).ok()?;
    if l.udp != udp || v6.is_some_and(|v| v != l.v6) {
        return None;
    }
    if usize::from(hdr.csum_start) != l.l4 || usize::from(hdr.csum_offset) != l.csum_offset() {
        return None;
    }
    if l.max_segment_l3() > mtu {
        return None;
    }
    Some(Gso {
        size: hdr.gso_size,
        segs: u16::try_from(l.segments).ok()?,
    })
}

/// The virtio-net header that hands super-packet `frame` (laid out as `l`)
/// to the kernel whole, its offsets counted from the start of the frame:
/// TSO (USO for UDP) with a partial checksum, ECN when a TCP first segment
/// has CWR.
pub fn header_for(frame: &[u8], l: &Layout) -> VirtioNetHdr {
    let gso_type = if l.udp {
        VIRTIO_NET_HDR_GSO_UDP_L4
    } else {
        let ecn = tcp::Packet::new_unchecked(&frame[l.l4..]).flags() & tcp::FLAG_CWR != 0;
        (if l.v6 {
            VIRTIO_NET_HDR_GSO_TCPV6
        } else {
            VIRTIO_NET_HDR_GSO_TCPV4
        }) | if ecn { GSO_ECN } else { 0 }
    };
    VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type,
        hdr_len: l.payload as u16,
        gso_size: l.gso().size,
        csum_start: l.l4 as u16,
        csum_offset: l.csum_offset() as u16,
    }
}

/// Room for the headers of a super-packet written whole (IP and TCP with
/// options, at most 120 bytes; Ethernet in front on AF_PACKET).
pub const MAX_SUPER_HDR: usize = 192;

/// A super-packet made ready to go to the kernel whole: its virtio-net
/// header and a copy of its headers with the partial transport checksum the
/// kernel completes; the payload goes from `frame[payload..]` itself.
pub struct WholeWrite {
    pub vnet: [u8; VNET_HDR_LEN],
    pub head: [u8; MAX_SUPER_HDR],
    /// Header bytes in `head`, and where the payload starts in the frame.
    pub payload: usize,
}

/// Prepares super-packet `frame` (parsed as `l`: an IP packet, or an
/// Ethernet frame with `eth` the header to give it) for one write; `None`
/// when it is not laid out that way or its headers do not fit.
pub fn whole_write(
    frame: &[u8],
    l: &Layout,
    eth: Option<[u8; ethernet::HEADER_LEN]>,
) -> Option<WholeWrite> {
    let encap = if eth.is_some() { Encap::Eth } else { Encap::Ip };
    if l.encap != encap || l.len != frame.len() || l.payload > MAX_SUPER_HDR {
        return None;
    }
    let mut vnet = [0u8; VNET_HDR_LEN];
    // Offsets from the start of what is written (Ethernet included).
    header_for(frame, l).encode(&mut vnet).ok()?;
    let mut head = [0u8; MAX_SUPER_HDR];
    head[..l.payload].copy_from_slice(&frame[..l.payload]);
    if let Some(e) = eth {
        head[..ethernet::HEADER_LEN].copy_from_slice(&e);
    }
    let at = l.l4 + l.csum_offset();
    head[at..at + 2].copy_from_slice(&l.partial_checksum(frame).to_be_bytes());
    Some(WholeWrite {
        vnet,
        head,
        payload: l.payload,
    })
}

/// Completes the transport checksum of a packet the kernel handed over with
/// [`F_NEEDS_CSUM`] (CHECKSUM_PARTIAL): the field at `csum_start +
/// csum_offset` holds the pseudo-header sum, and the checksum covers
/// everything from `csum_start` to the end. `false` (packet unchanged) when
/// the offsets lie outside the packet.
pub fn complete_checksum(pkt: &mut [u8], csum_start: u16, csum_offset: u16) -> bool {
    let start = usize::from(csum_start);
    let at = start + usize::from(csum_offset);
    if at + 2 > pkt.len() {
        return false;
    }
    // Summing with the partial sum in place adds it in; the field itself
    // then takes the complement.
    let mut c = checksum::checksum(&pkt[start..]);
    if c == 0 && usize::from(csum_offset) == udp::fields::CHECKSUM {
        // UDP: "If the computed checksum is zero, it is transmitted as all
        // ones" (RFC 768); zero means no checksum.
        c = 0xffff;
    }
    pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// Moves the offsets of a virtio-net header by `delta` bytes (the Ethernet
/// header): `None` when that would put them before the start.
pub fn shift_header(hdr: &VirtioNetHdr, delta: i32) -> Option<VirtioNetHdr> {
    let mv = |v: u16| -> Option<u16> { u16::try_from(i32::from(v) + delta).ok() };
    let mut h = *hdr;
    if hdr.flags & F_NEEDS_CSUM != 0 {
        h.csum_start = mv(hdr.csum_start)?;
    }
    if hdr.gso_type != GSO_NONE {
        h.hdr_len = mv(hdr.hdr_len)?;
    }
    Some(h)
}

#[cfg(test)]
#[path = "vnet_tests.rs"]
pub(crate) mod tests;
