//! TUN container port: one [`TunPort`] per queue of a multi-queue TUN device.
//!
//! Layer: I/O corner. Frames are raw IP packets (IFF_NO_PI). Queues are
//! non-blocking: `rx_burst` reads until EAGAIN or the batch is full, so a
//! worker never sleeps inside a port.
//!
//! Two modes, chosen at open:
//! - Offload (the default): the device has `IFF_VNET_HDR` and TSO/USO and
//!   checksum offloads, so the container kernel hands over TCP super-packets
//!   of up to 64 KiB and takes them back. Each read (one plain `read(2)`,
//!   header first) is split into MTU-sized, checksum-complete packets by
//!   [`crate::offload::vnet::Splitter`], which keeps what does not fit in one
//!   batch for the next `rx_burst` (handed out first, in order); a packet
//!   with a partial checksum gets it completed. Into a batch made for
//!   super-packets ([`Batch::new_super`], the workers') the read goes
//!   straight into the slot, and a TCP super-packet stays whole: the
//!   pipeline routes and encapsulates it once and the output port cuts it
//!   (counted as `rx_gso_whole`). Super-packets that reach the port whole
//!   ([`Port::tx_gso`]) are written with one `writev` (virtio-net header,
//!   the headers with a partial checksum, the payload from the frame
//!   itself), after whatever [`Coalescer`] holds. On transmit, TCP segments
//!   are copied into a [`crate::offload::coalesce::Coalescer`], which chains
//!   each flow's
//!   segments, and `flush` (run by the worker after every round) writes
//!   each chain as one super-packet with `writev`. UDP datagrams go to a
//!   second queue that is written at the end of each `tx_burst` (datagrams
//!   of one flow as one `GSO_UDP_L4` write), so a request/response flow
//!   waits for no later burst; every other frame is written at once behind
//!   a zero header. A flow is all TCP, all UDP or neither, so per-flow order
//!   holds.
//! - Plain (`offload = false`): every read is one packet of at most the
//!   device MTU and `tx_burst` writes each frame at once until EAGAIN and
//!   refuses the rest.
//!
//! Accounting: every frame `tx_burst` takes is written or counted in
//! [`TunStats`] (`tx_errors`, `tx_dropped`); every read the router cannot
//! turn into valid packets is counted in `rx_errors`.
//!
//! A device this opens exists while any queue is open and disappears with
//! the last one, so a crashed router leaves nothing behind; a device made
//! persistent beforehand (a container's, [`crate::host::sandbox`]) is only
//! attached to, and stays when the queues close.

use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use tun_rs::{DeviceBuilder, SyncDevice};

use tun_rs::VirtioNetHdr;

use super::{sys, Batch, Gso, IoCounters, LinkType, Packet, Port, BATCH_SIZE, BUF_SIZE, MAX_FRAME};
use crate::offload::coalesce::{queue_for, Coalescer, MAX_SUPER_SEGS, QUEUE_FRAMES};
use crate::offload::vnet::{
    complete_checksum, keep_whole, whole_write, Splitter, F_NEEDS_CSUM, GSO_NONE, VNET_HDR_LEN,
};
use crate::offload::Layout;

/// Largest number of queues a TUN device may have (the kernel's
/// `MAX_TAP_QUEUES`).
pub const MAX_QUEUES: usize = 256;

/// One open TUN queue: plain `read(2)`, `write(2)` and `writev(2)` on its
/// descriptor. The router frames every read and write itself (virtio-net
/// header or none), so a queue opened here and one received from another
/// router process ([`TunPort::adopt`]) are the same thing.
struct Queue(File);

impl Queue {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.0).read(buf)
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        (&self.0).write(buf)
    }

    fn send_vectored(&self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        (&self.0).write_vectored(iov)
    }

    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// One queue of a TUN device.
pub struct TunPort {
    name: String,
    queue: usize,
    dev: Queue,
    mtu: usize,
    /// Offload state; `None` in plain mode.
    offload: Option<Box<Offload>>,
    stats: TunStats,
}

/// Per-queue offload state (boxed: the split buffer is 64 KiB).
struct Offload {
    rx: Splitter,
    /// `[zero virtio-net header][frame]` for frames written at once.
    scratch: Box<[u8]>,
    tx: Coalescer,
    /// UDP datagrams of the current burst: coalesced and written at the end
    /// of `tx_burst`, not of the round, so a request/response flow waits for
    /// nothing.
    udp_tx: Coalescer,
}

/// Per-queue counters (plain integers: a queue belongs to one worker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunStats {
    /// Packets handed to the pipeline (a super-packet counts its segments).
    pub rx_packets: u64,
    /// TSO/USO super-packets read (offload mode).
    pub rx_gso_packets: u64,
    /// Of those, TCP super-packets handed to the pipeline whole (the rest
    /// were split into segments here).
    pub rx_whole: u64,
    /// Reads dropped whole: a virtio-net header that does not describe the
    /// packet, segments over the MTU, or a packet larger than the buffers.
    pub rx_errors: u64,
    /// Frames written (a super-packet counts the frames it carries).
    pub tx_packets: u64,
    /// Super-packets written, each carrying several frames (offload mode):
    /// coalesced here or handed over whole.
    pub tx_gso_packets: u64,
    /// Frames the kernel refused on write with an error other than EAGAIN
    /// (e.g. EINVAL for a malformed header), or that cannot be written at all
    /// (empty): counted as taken and dropped.
    pub tx_errors: u64,
    /// Frames taken by `tx_burst` and lost because a later write returned
    /// EAGAIN (offload mode defers writes to `flush`, so it cannot refuse
    /// them any more).
    pub tx_dropped: u64,
}

impl TunStats {
    /// Counts the write of a whole super-packet: written, or refused by the
    /// kernel (its segments are errors). Returns whether it was taken:
    /// `false` only for a full queue (EAGAIN), which the caller counts.
    pub fn count_whole_write(&mut self, r: io::Result<()>, gso: Gso) -> bool {
        let segs = u64::from(gso.segs.max(1));
        match r {
            Ok(()) => {
                self.tx_packets += segs;
                self.tx_gso_packets += 1;
                true
            }
            Err(e) if sys::is_transient(&e) => false,
            Err(_) => {
                self.tx_errors += segs;
                true
            }
        }
    }

    /// Adds the counters the stats file shows for a port with virtio-net
    /// header offloads (TUN queues and AF_PACKET veth sockets alike).
    pub fn export(&self, out: &mut IoCounters) {
        out.add("rx_gso_packets", self.rx_gso_packets);
        out.add("rx_gso_whole", self.rx_whole);
        out.add("rx_errors", self.rx_errors);
        out.add("tx_gso_packets", self.tx_gso_packets);
        out.add("tx_errors", self.tx_errors);
        out.add("tx_dropped", self.tx_dropped);
    }
}

impl fmt::Debug for TunPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunPort")
            .field("name", &self.name)
            .field("queue", &self.queue)
            .field("fd", &self.dev.as_raw_fd())
            .field("offload", &self.offload.is_some())
            .finish()
    }
}

fn builder(name: &str, mtu: u16, offload: bool, queue_len: u32) -> io::Result<SyncDevice> {
    DeviceBuilder::new()
        .name(name)
        .mtu(mtu)
        .with(|b| {
            b.multi_queue(true);
            b.packet_information(false);
            b.offload(offload);
            b.tx_queue_len(queue_len);
        })
        .build_sync()
}

impl TunPort {
    /// Creates (or attaches to, if a multi-queue TUN of that name exists and
    /// we may open it) TUN device `name` in the calling thread's network
    /// namespace with `queues` queues and `mtu`, offloads on, queues of
    /// [`crate::config::DEFAULT_QUEUE_LEN`] packets, brings it up, and
    /// returns one non-blocking port per queue.
    pub fn open(name: &str, queues: usize, mtu: u16) -> io::Result<Vec<TunPort>> {
        Self::open_with(name, queues, mtu, true, crate::config::DEFAULT_QUEUE_LEN)
    }

    /// [`TunPort::open`] with offloads on or off and `queue_len` packets per
    /// queue (`txqueuelen`, also set on a device that already exists). When
    /// the kernel refuses the offloads (no `IFF_VNET_HDR` TSO support), the
    /// device is opened plain and a warning logged: the port works, only
    /// slower.
    pub fn open_with(
        name: &str,
        queues: usize,
        mtu: u16,
        offload: bool,
        queue_len: u32,
    ) -> io::Result<Vec<TunPort>> {
        if queues == 0 || queues > MAX_QUEUES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TUN queue count {queues} outside 1..={MAX_QUEUES}"),
            ));
        }
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TUN name {name:?} must have 1..{} bytes", libc::IFNAMSIZ),
            ));
        }
        if usize::from(mtu) > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TUN MTU {mtu} exceeds the packet buffer ({MAX_FRAME})"),
            ));
        }
        let first = match builder(name, mtu, offload, queue_len) {
            Ok(d) => Ok(d),
            Err(e) if offload && e.kind() == io::ErrorKind::InvalidInput => {
                tracing::warn!(name, error = %e, "TUN offloads refused by the kernel; opening without");
                builder(name, mtu, false, queue_len)
            }
            Err(e) => Err(e),
        }
        .map_err(|e| io::Error::new(e.kind(), format!("creating TUN {name}: {e}")))?;
        // tcp_gso() is true exactly when IFF_VNET_HDR is set with TSO.
        let offload = first.tcp_gso();
        let udp_gso = first.udp_gso();
        let mut devs = Vec::with_capacity(queues);
        for _ in 1..queues {
            devs.push(first.try_clone()?);
        }
        devs.insert(0, first);
        let mut ports = Vec::with_capacity(queues);
        for (queue, dev) in devs.into_iter().enumerate() {
            dev.set_nonblocking(true)?;
            ports.push(TunPort::from_queue(
                name,
                queue,
                sys::tun_into_fd(dev),
                mtu,
                offload,
            ));
        }
        tracing::info!(
            name,
            queues,
            mtu,
            offload,
            udp_gso,
            queue_len,
            "TUN device open"
        );
        Ok(ports)
    }

    fn from_queue(name: &str, queue: usize, fd: OwnedFd, mtu: u16, offload: bool) -> TunPort {
        TunPort {
            name: name.to_string(),
            queue,
            dev: Queue(File::from(fd)),
            mtu: usize::from(mtu),
            offload: offload.then(|| {
                Box::new(Offload {
                    rx: Splitter::new(MAX_FRAME),
                    scratch: vec![0u8; VNET_HDR_LEN + BUF_SIZE].into_boxed_slice(),
                    tx: Coalescer::new(QUEUE_FRAMES),
                    udp_tx: Coalescer::new(BATCH_SIZE),
                })
            }),
            stats: TunStats::default(),
        }
    }

    /// Takes queue `queue` of TUN port `name` from a descriptor another
    /// router process handed over. The descriptor must be an attached
    /// multi-queue TUN queue without packet information, with virtio-net
    /// headers exactly when `offload`: anything else is refused, since
    /// reading it with the wrong framing would garble every packet. `name`
    /// labels the port (the device's own name may differ: a container's
    /// `eth0`).
    pub fn adopt(
        name: &str,
        queue: usize,
        fd: OwnedFd,
        mtu: u16,
        offload: bool,
    ) -> io::Result<TunPort> {
        if usize::from(mtu) > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TUN MTU {mtu} exceeds the packet buffer ({MAX_FRAME})"),
            ));
        }
        let (flags, dev) = sys::tun_info(fd.as_fd()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("TUN port {name} queue {queue}: not a TUN queue: {e}"),
            )
        })?;
        let flags = i32::from(flags);
        let want = libc::IFF_TUN | libc::IFF_MULTI_QUEUE;
        let vnet = flags & libc::IFF_VNET_HDR != 0;
        if flags & want != want || flags & libc::IFF_TAP != 0 || vnet != offload {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "TUN port {name} queue {queue} (device {dev}): flags {flags:#x}, expected a multi-queue TUN {} virtio-net headers",
                    if offload { "with" } else { "without" }
                ),
            ));
        }
        let port = TunPort::from_queue(name, queue, fd, mtu, offload);
        sys::set_nonblocking(port.dev.as_raw_fd())?;
        Ok(port)
    }

    /// A second descriptor of this queue (for a handover to another
    /// process): the queue stays attached while either is open.
    pub fn dup_fd(&self) -> io::Result<OwnedFd> {
        self.dev.0.as_fd().try_clone_to_owned()
    }

    /// This queue's index within its device.
    pub fn queue(&self) -> usize {
        self.queue
    }

    /// The queue's file descriptor, for the worker's idle poll().
    pub fn fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }

    /// Whether the queue runs with offloads (`IFF_VNET_HDR`, TSO, GRO).
    pub fn offload(&self) -> bool {
        self.offload.is_some()
    }

    /// Segments of a super-packet read but not yet handed out; the next
    /// `rx_burst` hands them out first.
    pub fn rx_pending(&self) -> usize {
        self.offload.as_ref().map_or(0, |o| o.rx.pending_segments())
    }

    /// Counters since open.
    pub fn stats(&self) -> TunStats {
        self.stats
    }

    /// Plain mode: one read per packet, straight into the batch.
    fn rx_plain(&mut self, batch: &mut Batch) -> io::Result<usize> {
        let mut n = 0;
        let slots = batch.slots_mut();
        while n < slots.len() {
            let pkt = &mut slots[n];
            let area = pkt.rx_area();
            let len = area.len().min(MAX_FRAME);
            match self.dev.recv(&mut area[..len]) {
                Ok(0) => break,
                Ok(got) => {
                    pkt.set_received(got);
                    pkt.ts_nanos = 0;
                    n += 1;
                }
                Err(e) if sys::is_transient(&e) => break,
                Err(e) => {
                    if n > 0 {
                        // Deliver what we have; the error recurs next call.
                        break;
                    }
                    return Err(e);
                }
            }
        }
        Ok(n)
    }

    /// Offload mode: segments pending from the last call first, then one
    /// read per packet or super-packet until the batch is full or EAGAIN.
    /// Into a slot that can hold a super-packet, the read goes straight into
    /// it (virtio-net header in the headroom) and a TCP super-packet stays
    /// whole; anything else is split by [`Splitter`].
    fn rx_offload(
        dev: &Queue,
        off: &mut Offload,
        mtu: usize,
        stats: &mut TunStats,
        batch: &mut Batch,
    ) -> io::Result<usize> {
        let slots = batch.slots_mut();
        let mut n = 0;
        loop {
            if off.rx.has_pending() {
                match off.rx.emit(&mut slots[n..]) {
                    Ok(k) => n += k,
                    Err(_) => stats.rx_errors += 1,
                }
            }
            if n == slots.len() {
                break;
            }
            if let Some(area) = slots[n].super_area_with_prefix(VNET_HDR_LEN) {
                let cap = area.len();
                let Some(len) = read_some(dev.recv(area), n)? else {
                    break;
                };
                if len >= cap {
                    stats.rx_errors += 1;
                    continue;
                }
                if Self::take_whole(off, &mut slots[n], len, mtu, stats) {
                    n += 1;
                }
                continue;
            }
            // One plain read into the split buffer: cheaper than a readv
            // straight into the slot even with the copy below (see Splitter).
            let Some(len) = read_some(dev.recv(off.rx.read_buf()), n)? else {
                break;
            };
            let Some(len) = len.checked_sub(VNET_HDR_LEN).filter(|&l| l > 0) else {
                stats.rx_errors += 1;
                continue;
            };
            let hdr = off.rx.header();
            if hdr.gso_type != GSO_NONE {
                match off.rx.load(&hdr, len, mtu) {
                    Ok(_) => stats.rx_gso_packets += 1,
                    Err(e) => {
                        stats.rx_errors += 1;
                        tracing::debug!(error = %e, "TUN super-packet dropped");
                    }
                }
                continue;
            }
            if len > MAX_FRAME {
                // Larger than any MTU we open a device with.
                stats.rx_errors += 1;
                continue;
            }
            let pkt = &mut slots[n];
            pkt.fill(off.rx.packet(len));
            pkt.ts_nanos = 0;
            if hdr.flags & F_NEEDS_CSUM != 0
                && !complete_checksum(pkt.data_mut(), hdr.csum_start, hdr.csum_offset)
            {
                stats.rx_errors += 1;
                continue;
            }
            n += 1;
        }
        Ok(n)
    }

    /// A read of `got` bytes (virtio-net header first) that landed in `pkt`'s
    /// super-packet area: a packet or TCP super-packet is kept there, `true`;
    /// any other super-packet is moved to the splitter (its segments go out
    /// next round of the loop), and a bad read is counted, `false`.
    fn take_whole(
        off: &mut Offload,
        pkt: &mut Packet,
        got: usize,
        mtu: usize,
        stats: &mut TunStats,
    ) -> bool {
        let Some(len) = got.checked_sub(VNET_HDR_LEN).filter(|&l| l > 0) else {
            stats.rx_errors += 1;
            return false;
        };
        let Some(area) = pkt.super_area_with_prefix(VNET_HDR_LEN) else {
            return false;
        };
        let hdr = VirtioNetHdr::decode(area).unwrap_or_default();
        let ip = &area[VNET_HDR_LEN..VNET_HDR_LEN + len];
        if hdr.gso_type == GSO_NONE {
            if len > MAX_FRAME {
                stats.rx_errors += 1;
                return false;
            }
            pkt.set_received(len);
            pkt.ts_nanos = 0;
            if hdr.flags & F_NEEDS_CSUM != 0
                && !complete_checksum(pkt.data_mut(), hdr.csum_start, hdr.csum_offset)
            {
                stats.rx_errors += 1;
                return false;
            }
            return true;
        }
        stats.rx_gso_packets += 1;
        if let Some(g) = keep_whole(&hdr, ip, mtu) {
            pkt.set_received_super(len, g);
            pkt.ts_nanos = 0;
            stats.rx_whole += 1;
            return true;
        }
        // Not one to keep whole (UDP segmentation, too large): split it,
        // after a copy into the splitter's buffer.
        let buf = off.rx.read_buf();
        buf[..got].copy_from_slice(&area[..got]);
        if let Err(e) = off.rx.load(&hdr, len, mtu) {
            stats.rx_errors += 1;
            tracing::debug!(error = %e, "TUN super-packet dropped");
        }
        false
    }

    /// Offload mode: coalesce and write what `tx_burst` queued.
    fn flush_offload(dev: &Queue, off: &mut Offload, stats: &mut TunStats) {
        Self::flush_queue(dev, &mut off.udp_tx, stats);
        Self::flush_queue(dev, &mut off.tx, stats);
    }

    /// Writes what one coalescing queue holds.
    fn flush_queue(dev: &Queue, q: &mut Coalescer, stats: &mut TunStats) {
        if q.is_empty() {
            return;
        }
        let out = q.flush(|hdr, parts| {
            let mut h = [0u8; VNET_HDR_LEN];
            hdr.encode(&mut h)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "header encode"))?;
            let mut iov = [IoSlice::new(&[]); MAX_SUPER_SEGS + 1];
            iov[0] = IoSlice::new(&h);
            let n = parts.len().min(MAX_SUPER_SEGS);
            iov[1..=n].copy_from_slice(&parts[..n]);
            dev.send_vectored(&iov[..=n]).map(|_| ())
        });
        stats.tx_packets += out.written;
        stats.tx_gso_packets += out.gso_writes;
        stats.tx_errors += out.errors + out.invalid;
        stats.tx_dropped += out.dropped;
    }
}

/// What one read of a receive loop that already holds `n` packets gives:
/// `Some(len)`, or `None` to stop (nothing waits, or an error with packets
/// in hand: those are delivered and the error recurs next call); an error
/// with nothing in hand is returned.
fn read_some(r: io::Result<usize>, n: usize) -> io::Result<Option<usize>> {
    match r {
        Ok(0) => Ok(None),
        Ok(len) => Ok(Some(len)),
        Err(e) if sys::is_transient(&e) => Ok(None),
        Err(_) if n > 0 => Ok(None),
        Err(e) => Err(e),
    }
}

impl Port for TunPort {
    fn poll_fd(&self) -> Option<i32> {
        Some(self.fd())
    }

    fn io_counters(&self, out: &mut IoCounters) {
        self.stats.export(out);
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn link_type(&self) -> LinkType {
        LinkType::RawIp
    }

    fn rx_burst(&mut self, batch: &mut Batch) -> io::Result<usize> {
        batch.clear();
        let n = match self.offload.as_deref_mut() {
            Some(off) => Self::rx_offload(&self.dev, off, self.mtu, &mut self.stats, batch)?,
            None => self.rx_plain(batch)?,
        };
        batch.set_len(n);
        self.stats.rx_packets += batch.segments();
        Ok(n)
    }

    fn tx_burst(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        if let Some(off) = self.offload.as_deref_mut() {
            for (i, f) in frames.iter().enumerate() {
                if let Some(udp) = queue_for(f) {
                    // Copied now, written at flush with the rest of the
                    // round's segments (UDP at the end of this burst); a
                    // full queue is written early.
                    let q = if udp { &mut off.udp_tx } else { &mut off.tx };
                    if !q.push(f) {
                        Self::flush_queue(&self.dev, q, &mut self.stats);
                        if !q.push(f) {
                            // Unreachable: a flushed queue has room.
                            self.stats.tx_dropped += 1;
                        }
                    }
                    continue;
                }
                // Anything else gains nothing from waiting: written now,
                // behind a zero header, after what the queues hold between
                // the same hosts. Copied next to the header: one plain write
                // is cheaper than a two-iovec writev.
                if off.udp_tx.holds_pair(f) {
                    Self::flush_queue(&self.dev, &mut off.udp_tx, &mut self.stats);
                }
                if off.tx.holds_pair(f) {
                    Self::flush_queue(&self.dev, &mut off.tx, &mut self.stats);
                }
                let Some(buf) = off.scratch.get_mut(..VNET_HDR_LEN + f.len()) else {
                    self.stats.tx_errors += 1;
                    continue;
                };
                buf[VNET_HDR_LEN..].copy_from_slice(f);
                match self.dev.send(buf) {
                    Ok(_) => self.stats.tx_packets += 1,
                    Err(e) if sys::is_transient(&e) => {
                        Self::flush_queue(&self.dev, &mut off.udp_tx, &mut self.stats);
                        return Ok(i);
                    }
                    Err(_) => self.stats.tx_errors += 1,
                }
            }
            Self::flush_queue(&self.dev, &mut off.udp_tx, &mut self.stats);
            return Ok(frames.len());
        }
        let mut taken = 0;
        for f in frames {
            match self.dev.send(f) {
                Ok(_) => self.stats.tx_packets += 1,
                Err(e) if sys::is_transient(&e) => break,
                // A packet the kernel rejects (EINVAL, EIO for a down device
                // while it is being torn down) is dropped and counted; the
                // queue itself is still fine.
                Err(_) => self.stats.tx_errors += 1,
            }
            taken += 1;
        }
        Ok(taken)
    }

    fn takes_gso(&self) -> bool {
        self.offload.is_some()
    }

    fn tx_gso(&mut self, frame: &[u8], layout: &Layout) -> io::Result<bool> {
        let Some(off) = self.offload.as_deref_mut() else {
            return Ok(false);
        };
        let gso = layout.gso();
        let Some(w) = whole_write(frame, layout, None) else {
            self.stats.tx_errors += u64::from(gso.segs.max(1));
            return Ok(true);
        };
        // Segments queued for coalescing leave first: a flow keeps its order.
        Self::flush_offload(&self.dev, off, &mut self.stats);
        let iov = [
            IoSlice::new(&w.vnet),
            IoSlice::new(&w.head[..w.payload]),
            IoSlice::new(&frame[w.payload..]),
        ];
        let r = self.dev.send_vectored(&iov).map(|_| ());
        Ok(self.stats.count_whole_write(r, gso))
    }

    fn flush(&mut self) -> io::Result<()> {
        // Plain mode writes straight to the kernel; nothing is queued.
        if let Some(off) = self.offload.as_deref_mut() {
            Self::flush_offload(&self.dev, off, &mut self.stats);
        }
        Ok(())
    }
}

impl Drop for TunPort {
    fn drop(&mut self) {
        // Frames taken but not yet written still go out (tests and shutdown
        // drop ports without a last flush).
        if let Some(off) = self.offload.as_deref_mut() {
            Self::flush_offload(&self.dev, off, &mut self.stats);
        }
    }
}
