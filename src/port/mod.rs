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
//! - A [`Batch`] holds at most [`BATCH_SIZE`] packets, allocated once and
//!   reused for every burst; nothing on the per-packet path allocates.
//! - `tx_burst` takes byte slices and copies them out (into a UMEM frame, a
//!   TUN write, a pcap record): ownership never crosses the trait, so a slow
//!   port can refuse frames (the caller counts them) without leaking buffers.

pub mod mem;
pub mod pcap;

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod afxdp;
#[cfg(target_os = "linux")]
pub mod gro;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod packet;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod sys;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod tun;
#[cfg(target_os = "linux")]
pub mod tun_offload;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod udp;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod xdp;

use std::io;

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
    buf: Box<[u8; BUF_SIZE]>,
    head: usize,
    len: usize,
    /// Capture timestamp in nanoseconds since the Unix epoch, when the source
    /// has one (pcap); 0 otherwise. The sans-IO core never reads a clock: time
    /// travels with the packet.
    pub ts_nanos: u64,
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
            .finish()
    }
}

impl Packet {
    /// Allocates one buffer (only at start-up: batches reuse packets).
    pub fn new() -> Self {
        Packet {
            buf: Box::new([0u8; BUF_SIZE]),
            head: HEADROOM,
            len: 0,
            ts_nanos: 0,
        }
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
    }

    /// Replaces the contents with a copy of `data`, truncated to [`MAX_FRAME`].
    /// Returns the number of bytes kept.
    #[inline]
    pub fn fill(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(MAX_FRAME);
        self.head = HEADROOM;
        self.buf[HEADROOM..HEADROOM + n].copy_from_slice(&data[..n]);
        self.len = n;
        n
    }

    /// The writable area a port receives into: everything after the headroom.
    /// Call [`Packet::set_received`] with the byte count afterwards.
    #[inline]
    pub fn rx_area(&mut self) -> &mut [u8] {
        &mut self.buf[HEADROOM..]
    }

    /// Marks `len` bytes at [`HEADROOM`] as received (clamped to [`MAX_FRAME`]).
    #[inline]
    pub fn set_received(&mut self, len: usize) {
        self.head = HEADROOM;
        self.len = len.min(MAX_FRAME);
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
        BUF_SIZE - self.head - self.len
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
    pub fn raw_mut(&mut self) -> (&mut [u8; BUF_SIZE], usize, usize) {
        (&mut self.buf, self.head, self.len)
    }

    /// Sets the live window to `buf[head..head+len]` after a `raw_mut` rewrite.
    /// Panics only on a window outside the buffer, which is a caller bug.
    #[inline]
    pub fn set_window(&mut self, head: usize, len: usize) {
        assert!(head + len <= BUF_SIZE, "packet window outside its buffer");
        self.head = head;
        self.len = len;
    }
}

/// A fixed set of [`BATCH_SIZE`] reusable packets, `len` of them live.
pub struct Batch {
    pkts: Vec<Packet>,
    len: usize,
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
