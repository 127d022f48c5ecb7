//! AF_XDP port: one socket bound to one (interface, queue), with its own UMEM.
//!
//! Layer: I/O corner (unsafe allowed, each block with `// SAFETY:`). The
//! packets the pipeline sees are copies in [`Packet`](super::Packet)
//! buffers with [`HEADROOM`](super::HEADROOM); UMEM frames never leave this
//! module, so the frame ownership rules of AF_XDP are enforced here and
//! nowhere else.
//!
//! Frame ownership invariant (checked by [`AfXdpPort::frame_stats`] in tests):
//! every UMEM frame is in exactly one place: our free list, the kernel's
//! fill/rx side (`kernel_rx`: submitted to the fill ring and not yet consumed
//! from the rx ring), or the kernel's tx side (`kernel_tx`: submitted to the
//! tx ring and not yet reaped from the completion ring), so
//! `free + kernel_rx + kernel_tx == total` at every call boundary.
//!
//! - rx: received frames are copied into the batch and handed straight back
//!   to the fill ring, which therefore stays full (`fill_target` frames).
//! - tx: frames are copied into free UMEM frames and put on the tx ring;
//!   completions are reaped on every tx_burst and flush.
//! - need_wakeup: the kernel is kicked (recvfrom for rx, sendto for tx) only
//!   when it sets the flag on the ring, never unconditionally.
//! - Socket creation tries zero-copy first (unless told not to) and falls back
//!   to copy mode with a fresh UMEM, since a failed bind can leave libxdp's
//!   ring state for that UMEM half set up.
//!
//! The socket is created with XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD: our own XDP
//! program (see [`super::xdp`]) owns the interface; register [`AfXdpPort::fd`]
//! in it with [`super::xdp::XdpProgram::register_socket`].

use std::fmt;
use std::io::{self, Write};
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use super::{sys, Batch, IoCounters, LinkType, Port, BATCH_SIZE, MAX_FRAME};

/// Headroom the kernel reserves at the start of each UMEM frame for the XDP
/// program (`XDP_PACKET_HEADROOM`); the packet data starts after it.
pub const XDP_PACKET_HEADROOM: u32 = 256;

/// Most tx kicks one flush makes (a burst of 64 needs 2 in copy mode).
const MAX_TX_KICKS: usize = 8;

/// Whether to ask for zero-copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroCopy {
    /// Zero-copy when the driver supports it, copy mode otherwise.
    #[default]
    Auto,
    /// Zero-copy or fail.
    Force,
    /// Copy mode only.
    Off,
}

/// How the socket ended up bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// The NIC DMAs straight into UMEM.
    ZeroCopy,
    /// The kernel copies between its buffers and UMEM.
    Copy,
}

impl fmt::Display for BindMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindMode::ZeroCopy => "zero-copy",
            BindMode::Copy => "copy",
        })
    }
}

/// Sizes and modes of one AF_XDP port.
#[derive(Debug, Clone)]
pub struct AfXdpConfig {
    /// UMEM frames in total (split between the fill ring and tx).
    pub frame_count: u32,
    /// Bytes per UMEM frame: a power of two, 2048 or 4096. The packet data
    /// area is `frame_size - XDP_PACKET_HEADROOM`.
    pub frame_size: u32,
    /// Entries of each ring (rx, tx, fill, completion): a power of two,
    /// less than `frame_count` so that tx always has frames left.
    pub ring_size: u32,
    /// Zero-copy policy.
    pub zero_copy: ZeroCopy,
    /// Bind with XDP_USE_NEED_WAKEUP (recommended: the kernel then needs a
    /// kick only when it says so, and the driver can sleep when idle).
    pub need_wakeup: bool,
}

impl AfXdpConfig {
    /// Sizes and modes for the host end of a veth container port: copy mode
    /// straight away, since veth has no zero-copy mode and a refused
    /// zero-copy bind costs a whole UMEM (about half of a veth attach's
    /// socket set-up). The UMEM keeps the default size: a quarter of it
    /// (1024 frames, rings of 512) halves a veth attach again but cost 40%
    /// of the 64-byte packet rate through a container (bench-vs-kernel,
    /// vxr-veth).
    pub fn veth() -> AfXdpConfig {
        AfXdpConfig {
            zero_copy: ZeroCopy::Off,
            ..AfXdpConfig::default()
        }
    }
}

impl Default for AfXdpConfig {
    fn default() -> Self {
        AfXdpConfig {
            frame_count: 4096,
            frame_size: 2048,
            ring_size: 2048,
            zero_copy: ZeroCopy::Auto,
            need_wakeup: true,
        }
    }
}

/// Where the UMEM frames are (see the module invariant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames in the UMEM.
    pub total: u32,
    /// Frames on our free list (usable for tx).
    pub free: u32,
    /// Frames given to the fill ring and not yet back from the rx ring.
    pub kernel_rx: u32,
    /// Frames given to the tx ring and not yet back from the completion ring.
    pub kernel_tx: u32,
}

/// Per-port counters (plain integers: a port belongs to one worker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AfXdpStats {
    /// Frames delivered to the pipeline.
    pub rx_packets: u64,
    /// Frames put on the tx ring.
    pub tx_packets: u64,
    /// Received frames longer than [`MAX_FRAME`], dropped.
    pub rx_oversize: u64,
    /// Frames given to tx_burst longer than a UMEM frame's data area,
    /// dropped (and counted as taken).
    pub tx_oversize: u64,
    /// Kicks of the rx side (fill ring needed a wakeup).
    pub rx_wakeups: u64,
    /// Kicks of the tx side.
    pub tx_wakeups: u64,
}

/// The kernel's counters for one AF_XDP socket (`struct xdp_statistics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XskKernelStats {
    /// Frames dropped for other reasons (e.g. too big for the frame).
    pub rx_dropped: u64,
    /// Frames dropped because of an invalid fill-ring descriptor.
    pub rx_invalid_descs: u64,
    /// Frames dropped because the rx ring was full (we read too slowly).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// tx descriptors the kernel rejected.
    pub tx_invalid_descs: u64,
    /// Times the kernel found the tx ring empty when kicked.
    pub tx_ring_empty_descs: u64,
}

/// One AF_XDP socket and its UMEM. Implements [`Port`] with Ethernet frames.
pub struct AfXdpPort {
    name: String,
    queue_id: u32,
    mode: BindMode,
    // Ring handles hold the socket and UMEM alive (reference counted in
    // xsk-rs), so field drop order does not matter for soundness.
    umem: Umem,
    fill: FillQueue,
    comp: CompQueue,
    tx: TxQueue,
    rx: RxQueue,
    /// Canonical descriptor of each frame, indexed by frame number; the
    /// kernel may hand back addresses with an offset inside the frame, and
    /// we map them back to these.
    frames: Vec<FrameDesc>,
    free: Vec<FrameDesc>,
    /// Scratch for descriptors coming off the rx and completion rings and
    /// going onto the fill and tx rings (BATCH_SIZE each, allocated once).
    scratch: Vec<FrameDesc>,
    staged: Vec<FrameDesc>,
    fill_target: u32,
    ring_size: u32,
    kernel_rx: u32,
    kernel_tx: u32,
    frame_size: usize,
    data_capacity: usize,
    stats: AfXdpStats,
}

impl fmt::Debug for AfXdpPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfXdpPort")
            .field("name", &self.name)
            .field("queue_id", &self.queue_id)
            .field("mode", &self.mode)
            .field("frames", &self.frame_stats())
            .finish()
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A UMEM made ahead of need and not yet bound to any socket (see
/// [`UmemPool`]).
pub struct SpareUmem {
    umem: Umem,
    frames: Vec<FrameDesc>,
}

impl fmt::Debug for SpareUmem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpareUmem")
            .field("frames", &self.frames.len())
            .finish()
    }
}

/// Makes a UMEM of `cfg`'s sizes: memory mapped, populated and registered
/// with the kernel (the bulk of a socket's set-up: about 10 ms for the
/// default 8 MiB here, against well under 1 ms for the bind itself).
fn make_umem(cfg: &AfXdpConfig) -> io::Result<SpareUmem> {
    let q = |n: u32| QueueSize::new(n).map_err(|e| invalid(format!("ring size: {e}")));
    let umem_cfg = UmemConfig::builder()
        .frame_size(FrameSize::new(cfg.frame_size).map_err(|e| invalid(format!("{e}")))?)
        .fill_queue_size(q(cfg.ring_size)?)
        .comp_queue_size(q(cfg.ring_size)?)
        .frame_headroom(0)
        .build()
        .map_err(|e| invalid(format!("UMEM config: {e}")))?;
    let count = NonZeroU32::new(cfg.frame_count)
        .ok_or_else(|| invalid("frame_count must be non-zero".into()))?;
    let (umem, frames) =
        Umem::new(umem_cfg, count, false).map_err(|e| io::Error::other(format!("UMEM: {e}")))?;
    Ok(SpareUmem { umem, frames })
}

/// UMEMs made ahead of need for the sockets of ports attached later, so
/// that an attach binds sockets rather than builds their memory. A thread
/// of its own makes them, so neither the requests nor the workers wait
/// for it; it keeps `target` spares and ends with the pool. It makes the
/// next spare only when told to ([`UmemPool::refill`]): making one is
/// about 10 ms of CPU, which would otherwise compete with the attach that
/// took the last spare, on the very cores its hand-off to the workers
/// needs.
///
/// Invariant: every spare has this pool's sizes and has never been bound,
/// so it satisfies the fresh-UMEM condition of [`AfXdpPort::open`].
#[derive(Debug)]
pub struct UmemPool {
    cfg: AfXdpConfig,
    spares: Option<Spares>,
}

/// The spare-making thread's two channels.
#[derive(Debug)]
struct Spares {
    /// Spares made, in the order made.
    made: std::sync::mpsc::Receiver<SpareUmem>,
    /// One message per spare to make.
    make: std::sync::mpsc::Sender<()>,
    /// Spares asked for and not received yet.
    asked: usize,
    /// Spares taken since the last refill.
    taken: usize,
}

/// How long an open waits for a spare the thread is making before it
/// makes its own UMEM: a bit more than one takes to make. Waiting costs
/// less than making a second one beside it on the same cores.
const SPARE_WAIT: std::time::Duration = std::time::Duration::from_millis(30);

impl UmemPool {
    /// A pool of `cfg`'s sizes that keeps `target` spares ready (none when
    /// `target` is 0 or `cfg` may try zero-copy, since a refused zero-copy
    /// bind can leave a UMEM half set up). Its thread makes them in the
    /// calling thread's network namespace, where the sockets must be.
    pub fn new(cfg: AfXdpConfig, target: usize) -> io::Result<UmemPool> {
        if target == 0 || cfg.zero_copy != ZeroCopy::Off {
            return Ok(UmemPool { cfg, spares: None });
        }
        // Spares in the pool plus spares asked for stay `target`: one
        // request per spare at the start, one per spare taken since.
        let (made_tx, made) = std::sync::mpsc::channel();
        let (make, make_rx) = std::sync::mpsc::channel::<()>();
        for _ in 0..target {
            let _ = make.send(());
        }
        let sizes = cfg.clone();
        std::thread::Builder::new()
            .name("vxr-umem".into())
            .spawn(move || {
                // The pool is gone: so is the need.
                while make_rx.recv().is_ok() {
                    match make_umem(&sizes) {
                        Ok(s) => {
                            if made_tx.send(s).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "making a spare UMEM failed: AF_XDP sockets make their own from now on");
                            return;
                        }
                    }
                }
            })?;
        Ok(UmemPool {
            cfg,
            spares: Some(Spares {
                made,
                make,
                asked: target,
                taken: 0,
            }),
        })
    }

    /// The sizes and modes of the sockets this pool opens.
    pub fn config(&self) -> &AfXdpConfig {
        &self.cfg
    }

    /// Opens a socket on `ifname` queue `queue_id` as [`AfXdpPort::open`]
    /// does, on a spare UMEM when one is ready or being made.
    pub fn open(&mut self, ifname: &str, queue_id: u32) -> io::Result<AfXdpPort> {
        let spare = self.spares.as_mut().and_then(|s| {
            let spare = match s.made.try_recv() {
                Ok(spare) => spare,
                Err(_) if s.asked > 0 => s.made.recv_timeout(SPARE_WAIT).ok()?,
                Err(_) => return None,
            };
            s.asked -= 1;
            s.taken += 1;
            Some(spare)
        });
        AfXdpPort::open_inner(ifname, queue_id, &self.cfg, spare)
    }

    /// Has the thread make a spare for each one taken since the last call.
    /// The control thread calls it once the request that took them is
    /// answered.
    pub fn refill(&mut self) {
        if let Some(s) = self.spares.as_mut() {
            for _ in 0..std::mem::take(&mut s.taken) {
                if s.make.send(()).is_ok() {
                    s.asked += 1;
                }
            }
        }
    }
}

struct Bound {
    umem: Umem,
    frames: Vec<FrameDesc>,
    fill: FillQueue,
    comp: CompQueue,
    tx: TxQueue,
    rx: RxQueue,
}

/// Binds a socket to (`ifname`, `queue_id`) on `spare`, or on a UMEM made
/// here when there is none.
fn bind(
    ifname: &Interface,
    queue_id: u32,
    cfg: &AfXdpConfig,
    zero_copy: bool,
    spare: Option<SpareUmem>,
) -> io::Result<Bound> {
    let q = |n: u32| QueueSize::new(n).map_err(|e| invalid(format!("ring size: {e}")));
    let SpareUmem { umem, frames } = match spare {
        Some(s) => s,
        None => make_umem(cfg)?,
    };

    let mut bind_flags = if zero_copy {
        BindFlags::XDP_ZEROCOPY
    } else {
        BindFlags::XDP_COPY
    };
    if cfg.need_wakeup {
        bind_flags |= BindFlags::XDP_USE_NEED_WAKEUP;
    }
    let sock_cfg = SocketConfig::builder()
        .rx_queue_size(q(cfg.ring_size)?)
        .tx_queue_size(q(cfg.ring_size)?)
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(bind_flags)
        .build();
    // SAFETY: the UMEM was created just above or is a never-bound spare
    // (the UmemPool invariant), and is not shared with any other socket, so
    // no (ifname, queue) pair is bound through it yet (the shared-UMEM
    // condition of `Socket::new`), and INHIBIT_PROG_LOAD is set.
    let (tx, rx, fq_cq) =
        unsafe { Socket::new(sock_cfg, &umem, ifname, queue_id) }.map_err(|e| {
            let os = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<io::Error>())
                .and_then(io::Error::raw_os_error);
            match os {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::other(e.to_string()),
            }
        })?;
    let (fill, comp) =
        fq_cq.ok_or_else(|| io::Error::other("xsk-rs returned no fill/completion rings"))?;
    Ok(Bound {
        umem,
        frames,
        fill,
        comp,
        tx,
        rx,
    })
}

impl AfXdpPort {
    /// Creates a UMEM and binds an AF_XDP socket to `ifname` queue
    /// `queue_id` (in the calling thread's network namespace), zero-copy
    /// first unless `cfg.zero_copy` says otherwise, then fills the fill ring.
    pub fn open(ifname: &str, queue_id: u32, cfg: &AfXdpConfig) -> io::Result<AfXdpPort> {
        AfXdpPort::open_inner(ifname, queue_id, cfg, None)
    }

    fn open_inner(
        ifname: &str,
        queue_id: u32,
        cfg: &AfXdpConfig,
        spare: Option<SpareUmem>,
    ) -> io::Result<AfXdpPort> {
        if !cfg.frame_size.is_power_of_two() || !(2048..=4096).contains(&cfg.frame_size) {
            return Err(invalid(format!(
                "frame_size {} must be 2048 or 4096",
                cfg.frame_size
            )));
        }
        if !cfg.ring_size.is_power_of_two() || cfg.ring_size == 0 {
            return Err(invalid(format!(
                "ring_size {} must be a power of two",
                cfg.ring_size
            )));
        }
        if cfg.frame_count <= cfg.ring_size {
            return Err(invalid(format!(
                "frame_count {} must exceed ring_size {} (the fill ring takes ring_size frames)",
                cfg.frame_count, cfg.ring_size
            )));
        }
        sys::ifindex(ifname)?;
        let iface: Interface = ifname
            .parse()
            .map_err(|_| invalid(format!("bad interface name {ifname:?}")))?;

        let (bound, mode) = match cfg.zero_copy {
            ZeroCopy::Off => (bind(&iface, queue_id, cfg, false, spare)?, BindMode::Copy),
            // Spares are only for copy mode: a refused zero-copy bind can
            // leave a UMEM half set up.
            ZeroCopy::Force => (bind(&iface, queue_id, cfg, true, None)?, BindMode::ZeroCopy),
            ZeroCopy::Auto => match bind(&iface, queue_id, cfg, true, None) {
                Ok(b) => (b, BindMode::ZeroCopy),
                Err(zc) => {
                    tracing::debug!(ifname, queue_id, error = %zc, "zero-copy bind refused; using copy mode");
                    (bind(&iface, queue_id, cfg, false, None)?, BindMode::Copy)
                }
            },
        };

        let frame_size = cfg.frame_size as usize;
        let data_capacity = (cfg.frame_size - XDP_PACKET_HEADROOM) as usize;
        let Bound {
            umem,
            frames,
            fill,
            comp,
            tx,
            rx,
        } = bound;
        let scratch = frames
            .first()
            .map(|f| vec![*f; BATCH_SIZE])
            .ok_or_else(|| invalid(format!("{ifname} queue {queue_id}: UMEM without frames")))?;
        let mut free = frames.clone();
        // Pop from the end: reverse so low frames go out first (cosmetic).
        free.reverse();
        let mut port = AfXdpPort {
            name: ifname.to_string(),
            queue_id,
            mode,
            umem,
            fill,
            comp,
            tx,
            rx,
            frames,
            free,
            // Always BATCH_SIZE long: the rings' consume() fills a prefix,
            // so it is sized once here, not per call.
            scratch,
            staged: Vec::with_capacity(BATCH_SIZE),
            fill_target: cfg.ring_size,
            ring_size: cfg.ring_size,
            kernel_rx: 0,
            kernel_tx: 0,
            frame_size,
            data_capacity,
            stats: AfXdpStats::default(),
        };
        port.refill()?;
        tracing::info!(ifname, queue_id, mode = %mode, "AF_XDP socket bound");
        Ok(port)
    }

    /// How the socket is bound (zero-copy or copy).
    pub fn bind_mode(&self) -> BindMode {
        self.mode
    }

    /// The queue this socket is bound to.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// The socket's file descriptor: register it in the XDP program's
    /// XSKMAP, and poll it for POLLIN when the worker is idle.
    pub fn fd(&self) -> RawFd {
        self.rx.fd().as_raw_fd()
    }

    /// Where the UMEM frames are (see the module invariant).
    pub fn frame_stats(&self) -> FrameStats {
        FrameStats {
            total: self.frames.len() as u32,
            free: self.free.len() as u32,
            kernel_rx: self.kernel_rx,
            kernel_tx: self.kernel_tx,
        }
    }

    /// Counters since open.
    pub fn stats(&self) -> AfXdpStats {
        self.stats
    }

    /// The kernel's own counters for this socket (`XDP_STATISTICS`): drops
    /// we cannot see from user space, such as a full rx ring.
    pub fn kernel_stats(&self) -> io::Result<XskKernelStats> {
        let s = self.rx.fd().xdp_statistics()?;
        Ok(XskKernelStats {
            rx_dropped: s.rx_dropped(),
            rx_invalid_descs: s.rx_invalid_descs(),
            rx_ring_full: s.rx_ring_full(),
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs(),
            tx_invalid_descs: s.tx_invalid_descs(),
            tx_ring_empty_descs: s.tx_ring_empty_descs(),
        })
    }

    /// The canonical descriptor of the frame holding UMEM offset `addr`.
    #[inline]
    fn canonical(&self, addr: usize) -> Option<FrameDesc> {
        self.frames.get(addr / self.frame_size).copied()
    }

    /// Tops the fill ring up to `fill_target` frames from the free list and
    /// wakes the kernel if it asked to be told.
    fn refill(&mut self) -> io::Result<()> {
        while self.kernel_rx < self.fill_target && !self.free.is_empty() {
            let want = ((self.fill_target - self.kernel_rx) as usize)
                .min(self.free.len())
                .min(BATCH_SIZE);
            // produce() is all-or-nothing: ask only for what fits.
            let room = self.fill.nb_free(want as u32) as usize;
            let n = want.min(room);
            if n == 0 {
                break;
            }
            let start = self.free.len() - n;
            // SAFETY: these frames are on our free list, so neither the
            // kernel (fill/tx) nor any rx copy is using them, and they
            // belong to this socket's UMEM.
            let done = unsafe { self.fill.produce(&self.free[start..]) };
            if done == 0 {
                break;
            }
            self.free.truncate(self.free.len() - done);
            self.kernel_rx += done as u32;
        }
        if self.fill.needs_wakeup() {
            self.stats.rx_wakeups += 1;
            sys::xsk_kick_rx(self.fd())?;
        }
        Ok(())
    }

    /// Moves completed tx frames back to the free list.
    fn reap(&mut self) {
        // Nothing in flight (an idle port, or rx only): no ring to read.
        while self.kernel_tx > 0 {
            // SAFETY: the descriptors are written by the call and refer to
            // frames of this socket's UMEM that the kernel has finished with.
            let n = unsafe { self.comp.consume(&mut self.scratch) };
            for i in 0..n {
                if let Some(d) = self.canonical(self.scratch[i].addr()) {
                    self.free.push(d);
                }
            }
            self.kernel_tx = self.kernel_tx.saturating_sub(n as u32);
            if n < BATCH_SIZE {
                break;
            }
        }
    }
}

impl Port for AfXdpPort {
    fn poll_fd(&self) -> Option<i32> {
        Some(self.fd())
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn link_type(&self) -> LinkType {
        LinkType::Ethernet
    }

    fn io_counters(&self, out: &mut IoCounters) {
        let s = &self.stats;
        out.add("rx_oversize", s.rx_oversize);
        out.add("tx_oversize", s.tx_oversize);
        out.add("rx_wakeups", s.rx_wakeups);
        out.add("tx_wakeups", s.tx_wakeups);
        // The kernel's side: frames it dropped before we could see them.
        // A failing getsockopt only leaves these out for this round.
        if let Ok(k) = self.kernel_stats() {
            out.add("xsk_rx_dropped", k.rx_dropped);
            out.add("xsk_rx_ring_full", k.rx_ring_full);
            out.add("xsk_rx_invalid_descs", k.rx_invalid_descs);
            out.add("xsk_rx_fill_ring_empty", k.rx_fill_ring_empty_descs);
            out.add("xsk_tx_invalid_descs", k.tx_invalid_descs);
            out.add("xsk_tx_ring_empty", k.tx_ring_empty_descs);
        }
    }

    fn rx_burst(&mut self, batch: &mut Batch) -> io::Result<usize> {
        batch.clear();
        // SAFETY: the descriptors are filled by the call; they name frames
        // of this UMEM that the kernel has handed back to us.
        let n = unsafe { self.rx.consume(&mut self.scratch) };
        if n == 0 {
            // Nothing arrived: make sure the kernel is not asleep on an
            // un-kicked fill ring.
            if self.fill.needs_wakeup() {
                self.stats.rx_wakeups += 1;
                sys::xsk_kick_rx(self.fd())?;
            }
            return Ok(0);
        }
        // Saturating: a count can never go below zero, even on a kernel bug.
        self.kernel_rx = self.kernel_rx.saturating_sub(n as u32);

        let slots = batch.slots_mut();
        let mut out = 0;
        for i in 0..n {
            let d = self.scratch[i];
            // SAFETY: the frame came off the rx ring, so the kernel no longer
            // writes it, and it is not on the fill or tx ring until we put it
            // back below.
            let data = unsafe { self.umem.data(&d) };
            let len = data.len();
            if len > MAX_FRAME {
                self.stats.rx_oversize += 1;
                continue;
            }
            let pkt = &mut slots[out];
            pkt.rx_area()[..len].copy_from_slice(&data);
            pkt.set_received(len);
            pkt.ts_nanos = 0;
            out += 1;
        }
        // Every received frame goes straight back to the free list and from
        // there into the fill ring, which stays full.
        for i in 0..n {
            if let Some(d) = self.canonical(self.scratch[i].addr()) {
                self.free.push(d);
            }
        }
        batch.set_len(out);
        self.stats.rx_packets += out as u64;
        self.refill()?;
        Ok(out)
    }

    fn tx_burst(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        self.reap();
        let mut taken = 0;
        while taken < frames.len() {
            let chunk = &frames[taken..(taken + BATCH_SIZE).min(frames.len())];
            let room = (self.tx.nb_free(chunk.len() as u32) as usize).min(chunk.len());
            self.staged.clear();
            let mut consumed = 0;
            for f in chunk {
                if f.len() > self.data_capacity {
                    // Taken and dropped: it can never fit, refusing it would
                    // only make the caller retry it.
                    self.stats.tx_oversize += 1;
                    consumed += 1;
                    continue;
                }
                if self.staged.len() == room {
                    break;
                }
                let Some(mut d) = self.free.pop() else { break };
                {
                    // SAFETY: `d` came off the free list, so the kernel is not
                    // reading or writing the frame, and it belongs to this UMEM.
                    let mut data = unsafe { self.umem.data_mut(&mut d) };
                    let mut cur = data.cursor();
                    cur.set_pos(0);
                    // Cannot fail: the length was checked against the frame's
                    // data area above.
                    cur.write_all(f)?;
                }
                self.staged.push(d);
                consumed += 1;
            }
            if !self.staged.is_empty() {
                // SAFETY: the staged frames were popped from our free list and
                // written above; they belong to this UMEM and are on no ring.
                let done = unsafe { self.tx.produce(&self.staged) };
                if done < self.staged.len() {
                    // Cannot happen after the nb_free check; keep the frames
                    // rather than leak them, and refuse what did not go.
                    let refused = self.staged.len() - done;
                    for d in self.staged.drain(done..) {
                        self.free.push(d);
                    }
                    consumed -= refused;
                    self.kernel_tx += done as u32;
                    self.stats.tx_packets += done as u64;
                    taken += consumed;
                    break;
                }
                self.kernel_tx += done as u32;
                self.stats.tx_packets += done as u64;
            }
            taken += consumed;
            if consumed < chunk.len() {
                break;
            }
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        // In copy mode one sendto transmits at most the kernel's generic
        // xmit batch (32 frames) and the tx ring keeps the rest, so kick
        // until the ring is empty, bounded so a stuck device cannot hold the
        // worker here.
        for _ in 0..MAX_TX_KICKS {
            if self.tx.nb_free_exact() == self.ring_size || !self.tx.needs_wakeup() {
                break;
            }
            self.stats.tx_wakeups += 1;
            self.tx.wakeup()?;
        }
        self.reap();
        self.refill()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_err(cfg: AfXdpConfig) -> io::ErrorKind {
        AfXdpPort::open("lo", 0, &cfg).unwrap_err().kind()
    }

    #[test]
    fn open_validates_sizes_before_touching_the_device() {
        let d = AfXdpConfig::default();
        assert_eq!(
            open_err(AfXdpConfig {
                frame_size: 3000,
                ..d.clone()
            }),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            open_err(AfXdpConfig {
                frame_size: 8192,
                ..d.clone()
            }),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            open_err(AfXdpConfig {
                ring_size: 1000,
                ..d.clone()
            }),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            open_err(AfXdpConfig {
                frame_count: 2048,
                ring_size: 2048,
                ..d.clone()
            }),
            io::ErrorKind::InvalidInput
        );
        let e = AfXdpPort::open("io-no-such-dev", 0, &d).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn default_frames_hold_a_max_frame() {
        let d = AfXdpConfig::default();
        // rx copies at most MAX_FRAME; a UMEM frame's data area must not be
        // the tighter limit for a 1500-byte underlay with VLAN tags.
        assert!((d.frame_size - XDP_PACKET_HEADROOM) as usize >= 1500 + 14 + 8);
    }

    #[test]
    fn port_is_send() {
        fn is_send<T: Send>() {}
        is_send::<AfXdpPort>();
        is_send::<crate::port::tun::TunPort>();
        is_send::<crate::port::xdp::XdpProgram>();
    }
}
