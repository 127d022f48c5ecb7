//! Poll-mode worker: one thread pinned to one core, owning its port queues.
//!
//! Each loop: for every port it owns, receive a burst, run it through
//! [`dataplane::forward_burst`] against the tables loaded once per burst,
//! then flush every port. A round that finds nothing yields the core (a
//! container may share it); when nothing arrives for a while the worker sleeps
//! on its ports' file descriptors (epoll through mio, so AF_XDP need_wakeup
//! and TUN readiness wake it) instead of burning the core: on a 2-core host
//! the containers need the CPU too.
//!
//! Invariants: the worker never takes a lock on the per-packet path (it
//! publishes counters with `try_lock` every [`STATS_EVERY`] loops and skips a
//! round when the control thread holds the lock), never allocates per packet,
//! and never frees a table (the publisher retires them).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::dataplane::{self, Counters, Pipeline, Tables, Verdict};
use crate::fib::FibReader;
use crate::port::{Batch, IoCounters, Port, BATCH_SIZE};

/// Loops between counter publications.
pub const STATS_EVERY: u32 = 1024;
/// How long the worker keeps polling after the last frame before it sleeps
/// on its file descriptors. Waking from epoll costs ~100 µs on a VM, so a
/// request/response flow whose gaps fit in this window never pays it; longer
/// quiet periods give the core back to the containers. Measured in time, not
/// loops: a loop's cost changes with every port and every optimisation.
pub const IDLE_SPIN_TIME: Duration = Duration::from_micros(250);
/// Empty loops between clock reads while spinning.
const SPIN_CLOCK_EVERY: u32 = 16;
/// Longest sleep: bounds how late the worker sees a stop request or a port
/// that cannot be waited on.
pub const IDLE_SLEEP: Duration = Duration::from_millis(10);

/// What a worker publishes for the control thread.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    pub counters: Counters,
    /// Frames received per port index.
    pub rx: Vec<u64>,
    /// Frames transmitted per port index.
    pub tx: Vec<u64>,
    /// Each port's own I/O counters (ring and kernel drops, kicks), summed
    /// over this worker's queues of it, indexed like `rx`.
    pub port_io: Vec<IoCounters>,
    /// Transmit or receive errors seen (the last one is kept for the log).
    pub io_errors: u64,
    pub last_error: Option<String>,
    /// Sleeps that ended because a port became readable (not the timeout).
    pub wakeups: u64,
    /// Times the worker went to sleep on its fds (published as it does).
    pub sleeps: u64,
}

/// A worker's shared handles.
#[derive(Clone)]
pub struct WorkerHandle {
    pub stats: Arc<Mutex<WorkerStats>>,
    pub stop: Arc<AtomicBool>,
}

/// Runs the poll loop until `stop` is set. `ports[i]` is this worker's queue
/// of port `i` (`None` where it has none); it receives and transmits.
/// `extra` holds further receive queues of some ports (a NIC with more rx
/// queues than workers: every queue needs a socket, or the VXLAN hashed onto
/// it falls to the kernel); what arrives there is processed as arriving on
/// that port and transmitted through `ports`. `core` pins the thread.
pub fn run(
    id: usize,
    core: Option<usize>,
    mut ports: Vec<Option<Box<dyn Port + Send>>>,
    mut extra: Vec<(u16, Box<dyn Port + Send>)>,
    tables: FibReader<Tables>,
    handle: WorkerHandle,
) -> io::Result<()> {
    if let Some(c) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
            tracing::warn!(worker = id, core = c, "could not pin worker to core");
        }
    }
    let mut poll = Poll::new()?;
    // What the worker sleeps on: registered only while it sleeps. A file
    // descriptor in an epoll set makes every packet queued on it call into
    // epoll (TUN: tun_net_xmit -> sock_def_readable -> ep_poll_callback, in
    // the sender's context), and while the worker spins nobody waits there.
    // Adding an fd that is already readable reports it at once, so nothing
    // that arrived between the last round and the registration is missed.
    let mut wait_fds: Vec<(i32, Token)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        if let Some(fd) = p.as_ref().and_then(|p| p.poll_fd()) {
            wait_fds.push((fd, Token(i)));
        }
    }
    for (j, (_, p)) in extra.iter().enumerate() {
        if let Some(fd) = p.poll_fd() {
            wait_fds.push((fd, Token(ports.len() + j)));
        }
    }
    let waitable = wait_fds.len();
    // Receive sources: (port index, None for the primary queue in `ports`,
    // Some(j) for `extra[j]`).
    let mut sources: Vec<(u16, Option<usize>)> = (0..ports.len() as u16)
        .filter(|&i| ports[i as usize].is_some())
        .map(|i| (i, None))
        .collect();
    sources.extend(extra.iter().enumerate().map(|(j, (i, _))| (*i, Some(j))));
    tracing::info!(worker = id, ?core, sources = ?sources, waitable, "worker started");

    let n_ports = ports.len();
    let mut pipe = Pipeline::new();
    let epoch = Instant::now();
    // Super-packet buffers: ports with offloads hand TCP super-packets over
    // whole (4 MiB of address space, touched only as bursts fill it).
    let mut batch = Batch::new_super();
    let mut verdicts = [Verdict::Pass; BATCH_SIZE];
    let mut rx = vec![0u64; n_ports];
    let mut tx = vec![0u64; n_ports];
    let mut events = Events::with_capacity((n_ports + extra.len()).max(1));
    let mut io_errors = 0u64;
    // The newest I/O error, kept unformatted: a lasting error (a peer
    // unreachable, a full device) repeats on every burst, and is formatted
    // only when the stats are published.
    let mut last_error: Option<(IoStep, u16, std::io::Error)> = None;
    // Empty loops since the last frame, and when the first of them began.
    let mut idle = 0u32;
    let mut idle_since = Instant::now();
    let mut sleeping = false;
    let mut publish_idle = false;
    let mut loops = 0u32;
    let mut wakeups = 0u64;
    let mut sleeps = 0u64;

    while !handle.stop.load(Ordering::Relaxed) {
        let mut got = 0usize;
        for &(i, src) in &sources {
            let port = match src {
                None => ports[i as usize].as_deref_mut(),
                Some(j) => Some(&mut *extra[j].1),
            };
            let received = match port.map(|p| p.rx_burst(&mut batch)) {
                Some(Ok(n)) => n,
                Some(Err(e)) => {
                    io_errors += 1;
                    last_error = Some((IoStep::Rx, i, e));
                    0
                }
                None => 0,
            };
            if received == 0 {
                continue;
            }
            got += received;
            rx[i as usize] += batch.segments();
            // One table load per burst: the guard pins this snapshot until
            // the burst is done; the publisher frees it later, not us.
            let t = tables.load();
            // The pipeline reads no clock: one read per burst paces its
            // ICMP errors.
            pipe.set_clock(u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX));
            let mut dyn_ports: [Option<&mut dyn Port>; MAX_PORTS] = [const { None }; MAX_PORTS];
            for (slot, p) in dyn_ports.iter_mut().zip(ports.iter_mut()) {
                *slot = p.as_deref_mut().map(|p| p as &mut dyn Port);
            }
            if let Err(e) = dataplane::forward_burst(
                &mut pipe,
                &t,
                i,
                &mut batch,
                &mut verdicts,
                &mut dyn_ports[..n_ports.min(MAX_PORTS)],
                &mut tx,
            ) {
                io_errors += 1;
                last_error = Some((IoStep::Tx, i, e));
            }
        }
        let primary = ports
            .iter_mut()
            .enumerate()
            .filter_map(|(i, p)| Some((i as u16, p.as_deref_mut()?)));
        let secondary = extra.iter_mut().map(|(i, p)| (*i, &mut **p));
        for (i, p) in primary.chain(secondary) {
            if let Err(e) = p.flush() {
                io_errors += 1;
                last_error = Some((IoStep::Flush, i, e));
            }
        }

        loops = loops.wrapping_add(1);
        if loops % STATS_EVERY == 0 || publish_idle {
            if let Ok(mut s) = handle.stats.try_lock() {
                // Cleared only once published: a reader holding the lock
                // now must not cost the publication of a sleep, since
                // a sleeping worker's next one is far away.
                publish_idle = false;
                s.counters = pipe.counters.clone();
                s.rx.clone_from(&rx);
                s.tx.clone_from(&tx);
                s.port_io = port_io(&ports, &extra);
                s.io_errors = io_errors;
                s.wakeups = wakeups;
                s.sleeps = sleeps;
                if let Some((step, port, e)) = last_error.take() {
                    s.last_error = Some(step.describe(port, &e));
                }
            }
        }
        if got > 0 {
            idle = 0;
            if sleeping {
                sleeping = false;
                disarm(&poll, &wait_fds)?;
            }
            continue;
        }
        idle += 1;
        if idle == 1 {
            idle_since = Instant::now();
        } else if !sleeping
            && idle % SPIN_CLOCK_EVERY == 0
            && idle_since.elapsed() >= IDLE_SPIN_TIME
        {
            sleeping = true;
            sleeps += 1;
            arm(&poll, &wait_fds)?;
            // Going quiet: publish once now (the next round), since the
            // loop count will barely move while asleep.
            publish_idle = true;
        }
        if sleeping {
            // Sleep until a port is readable (or the timeout, for ports that
            // cannot be waited on and for the stop flag); stay asleep across
            // timeouts, and spin again only once something arrives.
            match poll.poll(&mut events, Some(IDLE_SLEEP)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if !events.is_empty() {
                idle = 0;
                sleeping = false;
                disarm(&poll, &wait_fds)?;
                wakeups += 1;
            }
        } else {
            // A spinning thread keeps its core until the scheduler takes it
            // away, and on a host with few cores a container shares that
            // core: the sender filling the queue we poll, or the receiver
            // our last write woke. Yielding on every empty round hands the
            // core over at once when one of them is runnable, and costs one
            // system call (~0.5 us here) when none is. Measured in
            // bench-vs-kernel (README): 64-byte UDP from a TUN container on
            // the UDP uplink 0.26 -> 0.28-0.35 Mpkt/s with the worker on the
            // sender's core, for 6-9 us more round-trip time.
            std::thread::yield_now();
        }
    }
    if let Ok(mut s) = handle.stats.lock() {
        s.counters = pipe.counters.clone();
        s.rx = rx;
        s.tx = tx;
        s.port_io = port_io(&ports, &extra);
        s.io_errors = io_errors;
        s.wakeups = wakeups;
        s.sleeps = sleeps;
    }
    tracing::info!(worker = id, "worker stopped");
    Ok(())
}

/// Registers the fds the worker sleeps on (see `wait_fds` in [`run`]).
fn arm(poll: &Poll, fds: &[(i32, Token)]) -> io::Result<()> {
    for &(fd, token) in fds {
        poll.registry()
            .register(&mut SourceFd(&fd), token, Interest::READABLE)?;
    }
    Ok(())
}

/// Takes the fds out of the epoll set again once the worker spins.
fn disarm(poll: &Poll, fds: &[(i32, Token)]) -> io::Result<()> {
    for &(fd, _) in fds {
        poll.registry().deregister(&mut SourceFd(&fd))?;
    }
    Ok(())
}

/// Every port's I/O counters, its extra receive queues included.
fn port_io(
    ports: &[Option<Box<dyn Port + Send>>],
    extra: &[(u16, Box<dyn Port + Send>)],
) -> Vec<IoCounters> {
    let mut out = vec![IoCounters::default(); ports.len()];
    for (i, p) in ports.iter().enumerate() {
        if let Some(p) = p {
            p.io_counters(&mut out[i]);
        }
    }
    for (i, p) in extra {
        if let Some(c) = out.get_mut(*i as usize) {
            p.io_counters(c);
        }
    }
    out
}

/// The worker step an I/O error came from.
#[derive(Debug, Clone, Copy)]
enum IoStep {
    /// Receiving a burst on a port.
    Rx,
    /// Forwarding a burst received on a port (its transmissions).
    Tx,
    /// Flushing a port's pending transmissions.
    Flush,
}

impl IoStep {
    fn describe(self, port: u16, e: &std::io::Error) -> String {
        match self {
            IoStep::Rx => format!("rx on port {port}: {e}"),
            IoStep::Tx => format!("tx of a burst from port {port}: {e}"),
            IoStep::Flush => format!("flush on port {port}: {e}"),
        }
    }
}

/// Most ports one worker handles (uplink plus container ports).
pub const MAX_PORTS: usize = 256;
