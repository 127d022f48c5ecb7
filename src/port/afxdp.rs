//! AF_XDP port: one socket bound to one (interface, queue), with its own UMEM.
//!
//! Layer: I/O corner, without unsafe code of its own: the rings, the UMEM
//! and the frame ownership rules of AF_XDP are [`super::xsk`]'s. The
//! packets the pipeline sees are copies in [`Packet`](super::Packet)
//! buffers with [`HEADROOM`](super::HEADROOM); UMEM frames never leave the
//! socket layer.
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
//!   to copy mode on a fresh socket with the UMEM registered anew, since a
//!   socket whose bind failed is not bound again.
//! - Handover: the UMEM is a memfd, so another process can take the socket
//!   over ([`AfXdpPort::dup_fds`], [`AfXdpPort::handover_cell`],
//!   [`AfXdpPort::adopt`]). The previous owner's free list is exactly the
//!   frames no ring holds: the new owner takes those, and gets every other
//!   frame back from the rx and completion rings as usual, so no frame is
//!   used by both and none is lost; frames the kernel fills meanwhile wait
//!   in the rx ring.
//!
//! No XDP program is loaded here: our own (see [`super::xdp`]) owns the
//! interface; register [`AfXdpPort::fd`] in it with
//! [`super::xdp::XdpProgram::register_socket`].

use std::fmt;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use super::xsk::{AdoptState, BindOpts, Sizes, Unbound, Xsk};
use super::{sys, Batch, IoCounters, LinkType, Port, MAX_FRAME};

pub use super::xsk::XDP_PACKET_HEADROOM;

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
    /// Descriptors from the kernel naming no frame, a frame we hold, or
    /// bytes outside their frame: skipped (a kernel bug, or a handover
    /// state that was not this socket's).
    pub bad_descs: u64,
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

/// Where a socket's UMEM frames were when its owner let go of it: with the
/// socket and the UMEM's memfd, what another process needs to carry on
/// from the same rings ([`AfXdpPort::adopt`]).
///
/// Invariant: `free` is exactly the frames no ring holds (the owner's free
/// list), `kernel_rx` the frames on the fill/rx side and `kernel_tx` those
/// on the tx/completion side, so `free + kernel_rx + kernel_tx ==
/// frame_count`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct XskHandover {
    /// The queue the socket is bound to.
    pub queue_id: u32,
    /// Whether it is bound zero-copy.
    pub zero_copy: bool,
    /// Whether it is bound with XDP_USE_NEED_WAKEUP.
    pub need_wakeup: bool,
    /// Bytes per UMEM frame.
    pub frame_size: u32,
    /// Frames in the UMEM.
    pub frame_count: u32,
    /// Entries of each of the four rings.
    pub ring_size: u32,
    /// Frames on the owner's free list, as runs (first frame index, count).
    pub free: Vec<(u32, u32)>,
    /// Frames on the kernel's fill/rx side.
    pub kernel_rx: u32,
    /// Frames on the kernel's tx/completion side.
    pub kernel_tx: u32,
}

/// Filled with the port's XskHandover when the port is dropped (after its
/// last ring operation).
pub type HandoverCell = Arc<Mutex<Option<XskHandover>>>;

/// One AF_XDP socket and its UMEM. Implements [`Port`] with Ethernet frames.
pub struct AfXdpPort {
    name: String,
    mode: BindMode,
    xsk: Xsk,
    fill_target: u32,
    stats: AfXdpStats,
    handover: HandoverCell,
}

impl fmt::Debug for AfXdpPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfXdpPort")
            .field("name", &self.name)
            .field("queue_id", &self.queue_id())
            .field("mode", &self.mode)
            .field("frames", &self.frame_stats())
            .finish()
    }
}

/// A socket with its UMEM (a memfd, mapped and populated) registered and
/// its four rings sized and mapped, made ahead of need and never bound
/// (see [`UmemPool`]).
#[derive(Debug)]
pub struct SpareUmem {
    unbound: Unbound,
}

fn sizes_of(cfg: &AfXdpConfig) -> Sizes {
    Sizes {
        frame_count: cfg.frame_count,
        frame_size: cfg.frame_size,
        ring_size: cfg.ring_size,
    }
}

/// Makes a socket and UMEM of `cfg`'s sizes: memfd mapped, populated and
/// registered, rings mapped (the bulk of a socket's set-up: about 10 ms for
/// the default 8 MiB here, against well under 1 ms for the bind itself).
fn make_umem(cfg: &AfXdpConfig) -> io::Result<SpareUmem> {
    Ok(SpareUmem {
        unbound: Unbound::new(sizes_of(cfg))?,
    })
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
/// Invariant: every spare has this pool's sizes and has never been bound
/// (a socket whose bind failed is never bound again, see
/// [`AfXdpPort::open`]).
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
    /// `target` is 0 or `cfg` may try zero-copy: a refused zero-copy bind
    /// needs a second socket anyway, and the pool serves the veth ports,
    /// which are copy mode). Its thread makes them in the
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
        let sizes = sizes_of(cfg);
        sizes.check()?;
        let ifindex = sys::ifindex(ifname)?;
        let opts = |zero_copy| BindOpts {
            ifindex,
            queue_id,
            zero_copy,
            need_wakeup: cfg.need_wakeup,
        };
        let fresh = || Unbound::new(sizes);
        // A spare of other sizes (cannot happen: the pool makes its own)
        // is not used.
        let spare = spare.map(|s| s.unbound).filter(|u| u.sizes() == sizes);
        let bind = |u: Unbound, zc: bool| u.bind(opts(zc)).map_err(|(e, _)| e);

        let (xsk, mode) = match cfg.zero_copy {
            ZeroCopy::Off => {
                let u = match spare {
                    Some(u) => u,
                    None => fresh()?,
                };
                (bind(u, false)?, BindMode::Copy)
            }
            // Spares are only for copy mode (the pool makes none otherwise).
            ZeroCopy::Force => (bind(fresh()?, true)?, BindMode::ZeroCopy),
            ZeroCopy::Auto => match fresh()?.bind(opts(true)) {
                Ok(x) => (x, BindMode::ZeroCopy),
                Err((zc, umem)) => {
                    tracing::debug!(ifname, queue_id, error = %zc, "zero-copy bind refused; using copy mode");
                    (bind(Unbound::retry(umem)?, false)?, BindMode::Copy)
                }
            },
        };
        let mut port = AfXdpPort::with_xsk(ifname, xsk, mode, cfg.ring_size);
        port.refill()?;
        tracing::info!(ifname, queue_id, mode = %mode, "AF_XDP socket bound");
        Ok(port)
    }

    fn with_xsk(ifname: &str, xsk: Xsk, mode: BindMode, fill_target: u32) -> AfXdpPort {
        AfXdpPort {
            name: ifname.to_string(),
            mode,
            xsk,
            fill_target,
            stats: AfXdpStats::default(),
            handover: HandoverCell::default(),
        }
    }

    /// Second descriptors of the socket and of the UMEM memfd: [socket, umem].
    /// Both close-on-exec; they keep the socket bound and the UMEM alive
    /// after this port is gone.
    pub fn dup_fds(&self) -> io::Result<[OwnedFd; 2]> {
        Ok([
            self.xsk.sock().try_clone_to_owned()?,
            self.xsk.memfd().try_clone_to_owned()?,
        ])
    }

    /// Whether another process could carry on socket `sock` of a port of
    /// `ring_size` rings on this kernel ([`AfXdpPort::adopt`]), asked
    /// before anything is handed over.
    pub fn adoptable(sock: std::os::fd::BorrowedFd<'_>, ring_size: u32) -> io::Result<()> {
        super::xsk::rings_mappable(sock, ring_size)
    }

    /// The entries of each of this port's rings.
    pub fn ring_size(&self) -> u32 {
        self.xsk.sizes().ring_size
    }

    /// A cell this port fills with its final state when dropped.
    pub fn handover_cell(&self) -> HandoverCell {
        Arc::clone(&self.handover)
    }

    /// The state another owner needs to carry on now (see [`XskHandover`]).
    fn handover_state(&self) -> XskHandover {
        let s = self.xsk.sizes();
        let o = self.xsk.opts();
        let f = self.xsk.frames();
        XskHandover {
            queue_id: o.queue_id,
            zero_copy: o.zero_copy,
            need_wakeup: o.need_wakeup,
            frame_size: s.frame_size,
            frame_count: s.frame_count,
            ring_size: s.ring_size,
            free: self.xsk.free_runs(),
            kernel_rx: f.kernel_rx,
            kernel_tx: f.kernel_tx,
        }
    }

    /// Carries on socket `fds[0]` (bound to `ifname` queue `state.queue_id`)
    /// with UMEM memfd `fds[1]`, from the state its previous owner left. The
    /// previous owner must no longer touch the rings (its port was dropped).
    ///
    /// Checks everything it can before it writes anything shared, and
    /// refuses with `InvalidInput`: the fd is an AF_XDP socket (SO_DOMAIN)
    /// bound zero-copy exactly when the state says so; the memfd's size is
    /// frame_count*frame_size; sizes are valid; the runs are inside the
    /// UMEM and disjoint; free + kernel_rx + kernel_tx == frame_count; each
    /// ring maps at ring_size entries, holds no more frames than its side
    /// of the kernel (fill and rx at most kernel_rx, tx and completion at
    /// most kernel_tx), and names no frame of the free runs. Then it maps
    /// the UMEM and the four rings from the existing socket (cached ring
    /// indices taken from the shared producer/consumer words) and tops the
    /// fill ring up. Which device and queue the socket is bound to, and
    /// whether with need_wakeup, the kernel does not say: those are the
    /// caller's word (`ifname` must exist).
    pub fn adopt(ifname: &str, fds: [OwnedFd; 2], state: &XskHandover) -> io::Result<AfXdpPort> {
        let ifindex = sys::ifindex(ifname)?;
        let [sock, memfd] = fds;
        let sizes = Sizes {
            frame_count: state.frame_count,
            frame_size: state.frame_size,
            ring_size: state.ring_size,
        };
        let xsk = Xsk::adopt(
            sock,
            memfd,
            &AdoptState {
                sizes,
                opts: BindOpts {
                    ifindex,
                    queue_id: state.queue_id,
                    zero_copy: state.zero_copy,
                    need_wakeup: state.need_wakeup,
                },
                free: &state.free,
                kernel_rx: state.kernel_rx,
                kernel_tx: state.kernel_tx,
            },
        )?;
        let mode = if state.zero_copy {
            BindMode::ZeroCopy
        } else {
            BindMode::Copy
        };
        let mut port = AfXdpPort::with_xsk(ifname, xsk, mode, state.ring_size);
        // Completions the kernel posted while nobody owned the socket first,
        // so the fill ring gets every frame that is free.
        port.xsk.reap();
        port.refill()?;
        tracing::info!(ifname, queue_id = state.queue_id, mode = %mode, "AF_XDP socket adopted");
        Ok(port)
    }

    /// How the socket is bound (zero-copy or copy).
    pub fn bind_mode(&self) -> BindMode {
        self.mode
    }

    /// The queue this socket is bound to.
    pub fn queue_id(&self) -> u32 {
        self.xsk.opts().queue_id
    }

    /// The socket's file descriptor: register it in the XDP program's
    /// XSKMAP, and poll it for POLLIN when the worker is idle.
    pub fn fd(&self) -> RawFd {
        self.xsk.fd()
    }

    /// Where the UMEM frames are (see the module invariant).
    pub fn frame_stats(&self) -> FrameStats {
        let f = self.xsk.frames();
        FrameStats {
            total: f.total,
            free: f.free,
            kernel_rx: f.kernel_rx,
            kernel_tx: f.kernel_tx,
        }
    }

    /// Counters since open (or adopt).
    pub fn stats(&self) -> AfXdpStats {
        AfXdpStats {
            bad_descs: self.xsk.bad_descs(),
            ..self.stats
        }
    }

    /// The kernel's own counters for this socket (`XDP_STATISTICS`): drops
    /// we cannot see from user space, such as a full rx ring.
    pub fn kernel_stats(&self) -> io::Result<XskKernelStats> {
        let s = self.xsk.statistics()?;
        Ok(XskKernelStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }

    /// Tops the fill ring up to `fill_target` frames from the free list and
    /// wakes the kernel if it asked to be told.
    fn refill(&mut self) -> io::Result<()> {
        self.xsk.refill(self.fill_target);
        self.kick_rx_if_asked()
    }

    fn kick_rx_if_asked(&mut self) -> io::Result<()> {
        if self.xsk.fill_needs_wakeup() {
            self.stats.rx_wakeups += 1;
            sys::xsk_kick_rx(self.fd())?;
        }
        Ok(())
    }
}

impl Drop for AfXdpPort {
    fn drop(&mut self) {
        // The last thing this port does with the rings is done: what it
        // leaves is exactly what the next owner finds.
        let state = self.handover_state();
        let mut cell = self.handover.lock().unwrap_or_else(|e| e.into_inner());
        *cell = Some(state);
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
        let s = self.stats();
        out.add("rx_oversize", s.rx_oversize);
        out.add("tx_oversize", s.tx_oversize);
        out.add("rx_wakeups", s.rx_wakeups);
        out.add("tx_wakeups", s.tx_wakeups);
        out.add("xsk_bad_descs", s.bad_descs);
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
        let slots = batch.slots_mut();
        let max = slots.len();
        let mut out = 0;
        let stats = &mut self.stats;
        // Every received frame goes straight back to the free list and from
        // there into the fill ring, which stays full.
        let n = self.xsk.receive(max, |data| {
            let len = data.len();
            if len > MAX_FRAME {
                stats.rx_oversize += 1;
                return;
            }
            let pkt = &mut slots[out];
            pkt.rx_area()[..len].copy_from_slice(data);
            pkt.set_received(len);
            pkt.ts_nanos = 0;
            out += 1;
        });
        batch.set_len(out);
        if n == 0 {
            // Nothing arrived: make sure the kernel is not asleep on an
            // un-kicked fill ring.
            self.kick_rx_if_asked()?;
            return Ok(0);
        }
        self.stats.rx_packets += out as u64;
        self.refill()?;
        Ok(out)
    }

    fn tx_burst(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        self.xsk.reap();
        let before = self.xsk.frames().kernel_tx;
        let taken = self.xsk.send(frames, &mut self.stats.tx_oversize);
        self.stats.tx_packets += u64::from(self.xsk.frames().kernel_tx - before);
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        // In copy mode one sendto transmits at most the kernel's generic
        // xmit batch (32 frames) and the tx ring keeps the rest, so kick
        // until the ring is empty, bounded so a stuck device cannot hold the
        // worker here.
        for _ in 0..MAX_TX_KICKS {
            if self.xsk.tx_pending() == 0 || !self.xsk.tx_needs_wakeup() {
                break;
            }
            self.stats.tx_wakeups += 1;
            sys::xsk_kick_tx(self.fd())?;
        }
        self.xsk.reap();
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
