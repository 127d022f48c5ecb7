//! Port layer: the one batch interface every packet source and sink implements.
//!
//! AF_XDP sockets, TUN queues, pcap files and in-memory test ports all move
//! packets through [`Port::rx_burst`] / [`Port::tx_burst`] / [`Port::flush`],
//! so pcap replay and the memory-port simulation run exactly the pipeline the
//! wire runs.
//!
//! Invariants:
//! - A [`Packet`] owns a fixed-size buffer allocated once; the data starts at
//!   [`HEADROOM`] after a reset, so encapsulation is a prepend into headroom,
//!   never a copy of the payload.
//! - A packet is either one frame of at most [`MAX_FRAME`] bytes or, in a
//!   buffer made for it ([`Packet::new_super`], [`Batch::new_super`]), a TCP
//!   super-packet of up to [`MAX_SUPER_FRAME`] bytes with [`Packet::gso`]
//!   set (format: [`crate::offload::layout`]). Ports that take super-packets
//!   whole say so ([`Port::takes_gso`]) and get them with the layout the
//!   data plane parsed; for every other port the data plane cuts them into
//!   segments first. Counters count a super-packet as the
//!   segments it carries ([`Packet::segments`]).
//! - A [`Batch`] holds at most [`BATCH_SIZE`] packets, allocated once and
//!   reused for every burst; nothing on the per-packet path allocates.
//! - `tx_burst` takes byte slices and copies them out (into a UMEM frame, a
//!   TUN write, a pcap record): ownership never crosses the trait, so a slow
//!   port can refuse frames (the caller counts them) without leaking buffers.

pub mod mem;
pub mod pcap;

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod afpacket;
#[cfg(target_os = "linux")]
pub mod afxdp;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod sys;
#[cfg(target_os = "linux")]
pub mod tun;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod udp;
#[cfg(target_os = "linux")]
pub mod xdp;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod xsk;

use std::io;

pub use crate::offload::Gso;
use crate::offload::Layout;

/// Packets moved per burst. 64 amortises per-burst costs (ring index loads,
/// FIB handle load, syscalls) while a batch of buffers still fits in L2.
pub const BATCH_SIZE: usize = 64;

/// Bytes kept free before the packet data: outer Ethernet (14) + IPv6 (40) +
/// UDP (8) + VXLAN (8) + inner Ethernet (14) = 84 for the largest encapsulation,
/// rounded up to two cache lines so the inner headers stay aligned.
pub const HEADROOM: usize = 128;

/// Largest frame a port hands us or takes from us (without headroom). Fits a
/// 1500-byte underlay frame plus Ethernet and VLAN tags, and a 2048-byte UMEM
/// chunk after headroom is taken out.
pub const MAX_FRAME: usize = 1920;

/// Total size of one packet buffer.
pub const BUF_SIZE: usize = HEADROOM + MAX_FRAME;

/// Largest frame a super-packet buffer holds (without headroom): a 64 KiB
/// IP packet behind the largest encapsulation, with room to spare for a
/// port to read a virtio-net header in front and detect a cut read.
pub const MAX_SUPER_FRAME: usize = 65536 + 128;

/// Total size of one super-packet buffer.
pub const SUPER_BUF_SIZE: usize = HEADROOM + MAX_SUPER_FRAME;

/// How the bytes of a port's frames start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// Frames start with an Ethernet header (NIC and veth ports).
    Ethernet,
    /// Frames start with an IPv4 or IPv6 header (TUN ports).
    RawIp,
}

/// One packet buffer with headroom. The live bytes are `buf[head..head+len]`.
pub struct Packet {
    buf: Box<[u8]>,
    head: usize,
    len: usize,
    /// Capture timestamp in nanoseconds since the Unix epoch, when the source
    /// has one (pcap); 0 otherwise. The sans-IO core never reads a clock: time
    /// travels with the packet.
    pub ts_nanos: u64,
    /// Set when the packet is a TCP super-packet: the segment size and
    /// count. Every rewrite that makes it something else clears it.
    pub gso: Option<Gso>,
}

impl Default for Packet {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packet")
            .field("head", &self.head)
            .field("len", &self.len)
            .field("gso", &self.gso)
            .finish()
    }
}

impl Packet {
    /// Allocates one buffer (only at start-up: batches reuse packets).
    pub fn new() -> Self {
        Self::with_capacity(BUF_SIZE)
    }

    /// Allocates one buffer large enough for a super-packet (start-up only).
    pub fn new_super() -> Self {
        Self::with_capacity(SUPER_BUF_SIZE)
    }

    fn with_capacity(size: usize) -> Self {
        Packet {
            buf: vec![0u8; size].into_boxed_slice(),
            head: HEADROOM,
            len: 0,
            ts_nanos: 0,
            gso: None,
        }
    }

    /// Whether the buffer can hold a super-packet.
    #[inline]
    pub fn is_super_capable(&self) -> bool {
        self.buf.len() >= SUPER_BUF_SIZE
    }

    /// Wire packets this packet stands for: its segments when it is a
    /// super-packet, else one.
    #[inline]
    pub fn segments(&self) -> u64 {
        self.gso.map_or(1, |g| u64::from(g.segs.max(1)))
    }

    /// Builds a packet holding a copy of `data` (tests and slow paths).
    pub fn from_bytes(data: &[u8]) -> Self {
        let mut p = Packet::new();
        p.fill(data);
        p
    }

    /// Empties the packet and moves the data start back to [`HEADROOM`].
    #[inline]
    pub fn reset(&mut self) {
        self.head = HEADROOM;
        self.len = 0;
        self.ts_nanos = 0;
        self.gso = None;
    }

    /// Replaces the contents with a copy of `data`, truncated to [`MAX_FRAME`].
    /// Returns the number of bytes kept.
    #[inline]
    pub fn fill(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(MAX_FRAME);
        self.head = HEADROOM;
        self.buf[HEADROOM..HEADROOM + n].copy_from_slice(&data[..n]);
        self.len = n;
        self.gso = None;
        n
    }

    /// Replaces the contents with a copy of super-packet `data` annotated
    /// with `gso`; `false` (packet unchanged) when the buffer is too small.
    pub fn fill_super(&mut self, data: &[u8], gso: Gso) -> bool {
        let Some(area) = self.super_area() else {
            return false;
        };
        let Some(dst) = area.get_mut(..data.len()) else {
            return false;
        };
        dst.copy_from_slice(data);
        self.set_received_super(data.len(), gso);
        true
    }

    /// The writable area a port receives one frame into: [`MAX_FRAME`]
    /// bytes after the headroom. Call [`Packet::set_received`] with the byte
    /// count afterwards.
    #[inline]
    pub fn rx_area(&mut self) -> &mut [u8] {
        &mut self.buf[HEADROOM..HEADROOM + MAX_FRAME]
    }

    /// The writable area after the headroom of a super-packet buffer
    /// ([`MAX_SUPER_FRAME`] bytes); `None` for a one-frame buffer. Call
    /// [`Packet::set_received_super`] or [`Packet::set_received`] afterwards.
    #[inline]
    pub fn super_area(&mut self) -> Option<&mut [u8]> {
        if self.is_super_capable() {
            Some(&mut self.buf[HEADROOM..])
        } else {
            None
        }
    }

    /// [`Packet::super_area`] with `prefix` bytes of the headroom in front,
    /// for a read that puts a header (virtio-net) before the frame, so the
    /// frame itself lands at [`HEADROOM`]. `prefix` must not exceed it.
    #[inline]
    pub fn super_area_with_prefix(&mut self, prefix: usize) -> Option<&mut [u8]> {
        if self.is_super_capable() && prefix <= HEADROOM {
            Some(&mut self.buf[HEADROOM - prefix..])
        } else {
            None
        }
    }

    /// Marks `len` bytes at [`HEADROOM`] as received (clamped to [`MAX_FRAME`]).
    #[inline]
    pub fn set_received(&mut self, len: usize) {
        self.head = HEADROOM;
        self.len = len.min(MAX_FRAME);
        self.gso = None;
    }

    /// Marks `len` bytes at [`HEADROOM`] as a received super-packet (clamped
    /// to the buffer).
    #[inline]
    pub fn set_received_super(&mut self, len: usize, gso: Gso) {
        self.head = HEADROOM;
        self.len = len.min(self.buf.len() - HEADROOM);
        self.gso = Some(gso);
    }

    /// The packet's bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.head..self.head + self.len]
    }

    /// The packet's bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head..self.head + self.len]
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes free before the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.head
    }

    /// Bytes free after the data.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.head - self.len
    }

    /// Grows the packet at the front by `n` bytes and returns the whole new
    /// data (the first `n` bytes are for the caller to write). `None` when the
    /// headroom is smaller than `n`; the packet is then unchanged.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.head {
            return None;
        }
        self.head -= n;
        self.len += n;
        Some(self.data_mut())
    }

    /// Removes `n` bytes from the front (decapsulation). `false`, and no
    /// change, when the packet is shorter than `n`.
    #[inline]
    pub fn strip(&mut self, n: usize) -> bool {
        if n > self.len {
            return false;
        }
        self.head += n;
        self.len -= n;
        true
    }

    /// Shortens the packet to `len` bytes; a longer `len` is ignored.
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
        }
    }

    /// Grows the packet at the back by `n` bytes (zero-filled). `false`, and
    /// no change, when the tailroom is smaller than `n`.
    #[inline]
    pub fn extend(&mut self, n: usize) -> bool {
        if n > self.tailroom() {
            return false;
        }
        let end = self.head + self.len;
        self.buf[end..end + n].fill(0);
        self.len += n;
        true
    }

    /// The whole buffer and the current data offset, for stages that rebuild
    /// a packet in place (ICMP errors quote the original after new headers).
    #[inline]
    pub fn raw_mut(&mut self) -> (&mut [u8], usize, usize) {
        (&mut self.buf, self.head, self.len)
    }

    /// Sets the live window to `buf[head..head+len]` after a `raw_mut` rewrite.
    /// Panics only on a window outside the buffer, which is a caller bug.
    #[inline]
    pub fn set_window(&mut self, head: usize, len: usize) {
        assert!(
            head + len <= self.buf.len(),
            "packet window outside its buffer"
        );
        self.head = head;
        self.len = len;
    }
}

/// A fixed set of [`BATCH_SIZE`] reusable packets, `len` of them live.
pub struct Batch {
    pkts: Vec<Packet>,
    len: usize,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("len", &self.len).finish()
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// Allocates [`BATCH_SIZE`] packet buffers (once, at start-up).
    pub fn new() -> Self {
        Batch {
            pkts: (0..BATCH_SIZE).map(|_| Packet::new()).collect(),
            len: 0,
        }
    }

    /// Allocates [`BATCH_SIZE`] super-packet buffers (once, at start-up):
    /// the live workers' batch, so a port may hand over super-packets whole.
    /// 4 MiB of address space; only the bytes a burst writes are touched.
    pub fn new_super() -> Self {
        Batch {
            pkts: (0..BATCH_SIZE).map(|_| Packet::new_super()).collect(),
            len: 0,
        }
    }

    /// Wire packets the live packets stand for (super-packets count their
    /// segments).
    #[inline]
    pub fn segments(&self) -> u64 {
        self.pkts().iter().map(Packet::segments).sum()
    }

    /// Live packets.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the live packets (buffers stay allocated).
    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Sets how many packets are live after a port filled `pkts_mut()[..n]`.
    #[inline]
    pub fn set_len(&mut self, n: usize) {
        self.len = n.min(BATCH_SIZE);
    }

    /// The live packets.
    #[inline]
    pub fn pkts(&self) -> &[Packet] {
        &self.pkts[..self.len]
    }

    /// The live packets, writable.
    #[inline]
    pub fn pkts_mut(&mut self) -> &mut [Packet] {
        &mut self.pkts[..self.len]
    }

    /// All [`BATCH_SIZE`] buffers, for a port to receive into.
    #[inline]
    pub fn slots_mut(&mut self) -> &mut [Packet] {
        &mut self.pkts[..]
    }

    /// Appends a copy of `data` (tests, pcap, slow paths). `false` when full.
    pub fn push(&mut self, data: &[u8]) -> bool {
        if self.len == BATCH_SIZE {
            return false;
        }
        self.pkts[self.len].fill(data);
        self.len += 1;
        true
    }

    /// Appends a copy of super-packet `data` (tests). `false` when full or
    /// the batch's buffers are one-frame ones.
    pub fn push_super(&mut self, data: &[u8], gso: Gso) -> bool {
        if self.len == BATCH_SIZE || !self.pkts[self.len].fill_super(data, gso) {
            return false;
        }
        self.len += 1;
        true
    }
}

/// The batch interface of every packet source and sink.
pub trait Port {
    /// The port's name (device or container port name, as in the topology).
    fn name(&self) -> &str;

    /// What the frames of this port start with.
    fn link_type(&self) -> LinkType;

    /// Receives up to [`BATCH_SIZE`] packets into `batch` (replacing what it
    /// held) and returns how many arrived; 0 when nothing is waiting. Never
    /// blocks.
    fn rx_burst(&mut self, batch: &mut Batch) -> io::Result<usize>;

    /// Queues `frames` for transmission and returns how many were taken; the
    /// rest were refused (ring full) and the caller counts them as dropped.
    /// Frames may sit in a queue until [`Port::flush`].
    fn tx_burst(&mut self, frames: &[&[u8]]) -> io::Result<usize>;

    /// Pushes queued frames out (kicks the kernel, reaps completions).
    fn flush(&mut self) -> io::Result<()>;

    /// A file descriptor that becomes readable when frames wait, for an idle
    /// worker to sleep on with poll(2). `None`: the port cannot be waited on
    /// (memory, pcap), so an idle worker only backs off.
    fn poll_fd(&self) -> Option<i32> {
        None
    }

    /// Whether [`Port::tx_gso`] takes TCP super-packets whole (the port or
    /// its kernel device segments them). For any other port the data plane
    /// cuts a super-packet into segments and hands those to `tx_burst`.
    fn takes_gso(&self) -> bool {
        false
    }

    /// Transmits one super-packet whole (`frame`, already parsed by the
    /// caller as `layout`, in the format of [`crate::offload::layout`] and
    /// laid out as this port's frames are): `Ok(true)` when taken,
    /// `Ok(false)` when refused (the caller counts its segments as
    /// dropped). Frames of earlier `tx_burst` calls leave first. Only called
    /// when [`Port::takes_gso`] says so.
    fn tx_gso(&mut self, frame: &[u8], layout: &Layout) -> io::Result<bool> {
        let _ = (frame, layout);
        Ok(false)
    }

    /// Adds the port's own I/O counters (ring and kernel-side drops, kicks)
    /// to `out` under stable names, for the stats file: drops that happen
    /// before a frame reaches the pipeline are invisible to its drop
    /// reasons. Called by the worker every few thousand loops, never per
    /// packet, so it may make a syscall. The default has none.
    fn io_counters(&self, out: &mut IoCounters) {
        let _ = out;
    }
}

/// Named I/O counters of one or more port queues (see [`Port::io_counters`]).
/// Adding the same name twice sums, so the queues of one port add up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoCounters(pub std::collections::BTreeMap<&'static str, u64>);

impl IoCounters {
    /// Adds `v` to counter `name`.
    pub fn add(&mut self, name: &'static str, v: u64) {
        *self.0.entry(name).or_insert(0) += v;
    }

    /// Adds every counter of `other`.
    pub fn merge(&mut self, other: &IoCounters) {
        for (k, v) in &other.0 {
            self.add(k, *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepend_and_strip_move_the_window() {
        let mut p = Packet::from_bytes(&[1, 2, 3, 4]);
        assert_eq!(p.headroom(), HEADROOM);
        let d = p.prepend(2).unwrap();
        d[0] = 9;
        d[1] = 8;
        assert_eq!(p.data(), &[9, 8, 1, 2, 3, 4]);
        assert!(p.strip(3));
        assert_eq!(p.data(), &[2, 3, 4]);
        assert!(!p.strip(4));
        assert!(p.prepend(HEADROOM + 2).is_none());
        assert_eq!(p.data(), &[2, 3, 4]);
    }

    #[test]
    fn fill_truncates_to_max_frame() {
        let big = vec![7u8; MAX_FRAME + 100];
        let p = Packet::from_bytes(&big);
        assert_eq!(p.len(), MAX_FRAME);
        assert_eq!(p.tailroom(), 0);
    }

    #[test]
    fn batch_push_stops_when_full() {
        let mut b = Batch::new();
        for i in 0..BATCH_SIZE {
            assert!(b.push(&[i as u8]));
        }
        assert!(!b.push(&[0]));
        assert_eq!(b.len(), BATCH_SIZE);
        assert_eq!(b.pkts()[5].data(), &[5]);
    }
}
