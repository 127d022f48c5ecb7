//! Poll-mode worker: one thread pinned to one core, owning its port queues.
//!
//! Each loop: for every port it owns, receive a burst, run it through
//! [`dataplane::forward_burst`] against the tables loaded once per burst,
//! then flush every port. A round that finds nothing yields the core (a
//! container may share it); when nothing arrives for a while the worker sleeps
//! on its ports' file descriptors (epoll through mio, so AF_XDP need_wakeup
//! and TUN readiness wake it) instead of burning the core: on a 2-core host
//! the containers need the CPU too. The control thread changes a running
//! worker's port set with [`Command`]s (live attach and detach), applied
//! between rounds; a [`mio::Waker`] ends the worker's sleep for them.
//!
//! Invariants: the worker never takes a lock on the per-packet path (it
//! publishes counters with `try_lock` every [`STATS_EVERY`] loops and skips a
//! round when the control thread holds the lock), never allocates per packet,
//! and never frees a table (the publisher retires them).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::dataplane::{self, Counters, NetCounters, Pipeline, Tables, Verdict};
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
/// Rounds a stopping worker runs at most to drain what its ports read.
const DRAIN_ROUNDS: usize = 64;
/// Longest sleep: bounds how late the worker sees a stop request or a port
/// that cannot be waited on.
pub const IDLE_SLEEP: Duration = Duration::from_millis(10);

/// What a worker publishes for the control thread.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    /// Every counter summed over the networks.
    pub counters: Counters,
    /// The same per network ([`NetCounters`]): what `counters` sums.
    pub nets: NetCounters,
    /// Frames received per port index (since the port was attached).
    pub rx: Vec<u64>,
    /// Frames transmitted per port index (since the port was attached).
    pub tx: Vec<u64>,
    /// Each port's own I/O counters (ring and kernel drops, kicks), summed
    /// over this worker's queues of it, indexed like `rx`.
    pub port_io: Vec<IoCounters>,
    /// Transmit or receive errors seen (the last one is kept for the log).
    pub io_errors: u64,
    pub last_error: Option<String>,
    /// Sleeps that ended because a port became readable (not the timeout
    /// nor a command).
    pub wakeups: u64,
    /// Times the worker went to sleep on its fds (published as it does).
    pub sleeps: u64,
    /// Loops run: moves while the worker makes progress, busy or idle.
    pub loops: u64,
}

/// Work the control thread hands a running worker. Commands are applied
/// between bursts, so a burst never sees a port set change under it.
pub enum Command {
    /// Take this worker's queues of port `index`: `queue` receives and
    /// transmits, `rx_only` only receive (a device with more queues than
    /// workers). `done` is answered once the worker polls them.
    Attach {
        index: u16,
        queue: Option<Box<dyn Port + Send>>,
        rx_only: Vec<Box<dyn Port + Send>>,
        done: mpsc::Sender<()>,
    },
    /// Flush and give back every queue of port `index`, with what they
    /// counted on this worker. The tables published before this command
    /// must no longer send to `index`.
    Detach {
        index: u16,
        done: mpsc::Sender<DetachedQueues>,
    },
}

/// A port's queues as a worker hands them back, with their final counts.
pub struct DetachedQueues {
    pub queues: Vec<Box<dyn Port + Send>>,
    pub rx: u64,
    pub tx: u64,
    pub io: IoCounters,
}

/// The control thread's handle on one worker.
#[derive(Clone)]
pub struct WorkerHandle {
    pub stats: Arc<Mutex<WorkerStats>>,
    pub stop: Arc<AtomicBool>,
    /// The worker's loop count, stored every loop without a lock: the
    /// control thread's proof of progress. `stats.loops` moves only with a
    /// publication, which a sleeping worker makes every [`STATS_EVERY`]
    /// wake-ups (seconds apart).
    pub progress: Arc<AtomicU64>,
    commands: mpsc::Sender<Command>,
    /// Set with each command, so the worker's loop tests one flag, not
    /// the channel.
    pending: Arc<AtomicBool>,
    waker: Arc<Waker>,
    /// While set, the worker takes commands but polls no port: a router
    /// taking over gives it every port's queues first, so that no packet
    /// is read where its way out is not there yet.
    held: Arc<AtomicBool>,
}

impl WorkerHandle {
    /// Holds the worker (before it runs): it polls nothing until
    /// [`WorkerHandle::release`].
    pub fn hold(&self) {
        self.held.store(true, Ordering::Release);
    }

    /// Lets a held worker poll.
    pub fn release(&self) {
        self.held.store(false, Ordering::Release);
        let _ = self.waker.wake();
    }

    /// Queues `cmd` and wakes the worker if it sleeps.
    pub fn send(&self, cmd: Command) -> io::Result<()> {
        self.commands
            .send(cmd)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "worker stopped"))?;
        self.pending.store(true, Ordering::Release);
        self.waker.wake()
    }

    /// Asks the worker to stop, and wakes it.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
    }
}

/// The poll token of the worker's command waker.
const WAKE_TOKEN: Token = Token(usize::MAX);

/// One poll-mode worker: its port queues, its pipeline and buffers, and
/// its idle state. [`Worker::run`] loops over [`Worker::round`],
/// `Worker::publish` and `Worker::rest`.
pub struct Worker {
    id: usize,
    /// `ports[i]`: this worker's receive-and-transmit queue of port `i`.
    ports: Vec<Option<Box<dyn Port + Send>>>,
    /// Further receive queues, with the port they belong to: what arrives
    /// there is processed as arriving on that port and transmitted through
    /// `ports` (every NIC queue needs a socket, or the VXLAN hashed onto it
    /// falls to the kernel).
    rx_only: Vec<(u16, Box<dyn Port + Send>)>,
    /// Receive sources: (port index, `None` for `ports[i]`, `Some(j)` for
    /// `rx_only[j]`).
    sources: Vec<(u16, Option<usize>)>,
    /// What the worker sleeps on: registered only while it sleeps. A file
    /// descriptor in an epoll set makes every packet queued on it call into
    /// epoll (TUN: tun_net_xmit -> sock_def_readable -> ep_poll_callback, in
    /// the sender's context), and while the worker spins nobody waits
    /// there. Adding an fd that is already readable reports it at once, so
    /// nothing that arrived between the last round and the registration is
    /// missed.
    wait_fds: Vec<(i32, Token)>,
    tables: FibReader<Tables>,
    handle: WorkerHandle,
    commands: mpsc::Receiver<Command>,
    poll: Poll,
    events: Events,
    pipe: Pipeline,
    batch: Batch,
    verdicts: [Verdict; BATCH_SIZE],
    epoch: Instant,
    rx: Vec<u64>,
    tx: Vec<u64>,
    io_errors: u64,
    /// The newest I/O error, kept unformatted: a lasting error (a peer
    /// unreachable, a full device) repeats on every burst, and is formatted
    /// only when the stats are published.
    last_error: Option<(IoStep, u16, std::io::Error)>,
    /// Empty loops since the last frame, and when the first of them began.
    idle: u32,
    idle_since: Instant,
    sleeping: bool,
    publish_idle: bool,
    loops: u64,
    wakeups: u64,
    sleeps: u64,
}

impl Worker {
    /// A worker over `ports` (`ports[i]` its queue of port `i`, `None`
    /// where it has none) and `rx_only` receive queues, reading `tables`.
    pub fn new(
        id: usize,
        ports: Vec<Option<Box<dyn Port + Send>>>,
        rx_only: Vec<(u16, Box<dyn Port + Send>)>,
        tables: FibReader<Tables>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<(Worker, WorkerHandle)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE_TOKEN)?);
        let (tx_cmd, commands) = mpsc::channel();
        let handle = WorkerHandle {
            stats: Arc::new(Mutex::new(WorkerStats::default())),
            stop,
            progress: Arc::new(AtomicU64::new(0)),
            commands: tx_cmd,
            pending: Arc::new(AtomicBool::new(false)),
            waker,
            held: Arc::new(AtomicBool::new(false)),
        };
        let n_ports = ports.len();
        let mut w = Worker {
            id,
            ports,
            rx_only,
            sources: Vec::new(),
            wait_fds: Vec::new(),
            tables,
            handle: handle.clone(),
            commands,
            poll,
            events: Events::with_capacity(64),
            pipe: Pipeline::new(),
            // Super-packet buffers: ports with offloads hand TCP
            // super-packets over whole (4 MiB of address space, touched
            // only as bursts fill it).
            batch: Batch::new_super(),
            verdicts: [Verdict::Pass; BATCH_SIZE],
            epoch: Instant::now(),
            rx: vec![0; n_ports],
            tx: vec![0; n_ports],
            io_errors: 0,
            last_error: None,
            idle: 0,
            idle_since: Instant::now(),
            sleeping: false,
            publish_idle: false,
            loops: 0,
            wakeups: 0,
            sleeps: 0,
        };
        w.index_sources();
        Ok((w, handle))
    }

    /// Recomputes the receive sources and the fds to sleep on from the
    /// port set. Called only while the fds are not armed.
    fn index_sources(&mut self) {
        let n = self.ports.len();
        self.sources = (0..n as u16)
            .filter(|&i| self.ports[i as usize].is_some())
            .map(|i| (i, None))
            .collect();
        self.sources.extend(
            self.rx_only
                .iter()
                .enumerate()
                .map(|(j, (i, _))| (*i, Some(j))),
        );
        self.wait_fds.clear();
        for (i, p) in self.ports.iter().enumerate() {
            if let Some(fd) = p.as_ref().and_then(|p| p.poll_fd()) {
                self.wait_fds.push((fd, Token(i)));
            }
        }
        for (j, (_, p)) in self.rx_only.iter().enumerate() {
            if let Some(fd) = p.poll_fd() {
                self.wait_fds.push((fd, Token(n + j)));
            }
        }
        self.rx.resize(n, 0);
        self.tx.resize(n, 0);
    }

    /// Runs the poll loop until the stop flag is set. `core` pins the thread.
    pub fn run(mut self, core: Option<usize>) -> io::Result<()> {
        if let Some(c) = core {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
                tracing::warn!(worker = self.id, core = c, "could not pin worker to core");
            }
        }
        tracing::info!(worker = self.id, ?core, sources = ?self.sources, waitable = self.wait_fds.len(), "worker started");
        while !self.handle.stop.load(Ordering::Relaxed) {
            if self.handle.pending.load(Ordering::Acquire) {
                self.apply_commands()?;
            }
            if self.handle.held.load(Ordering::Acquire) {
                std::thread::sleep(std::time::Duration::from_micros(50));
                continue;
            }
            let got = self.round();
            self.loops += 1;
            // Relaxed: a lone counter that only the control thread reads,
            // about once a second; nothing else is ordered by it.
            self.handle.progress.store(self.loops, Ordering::Relaxed);
            self.publish();
            self.rest(got)?;
        }
        // What the ports already took from the kernel (a GRO train half
        // handed out, a super-packet split across bursts) still goes out:
        // after a handover the new router reads the same queues, and only
        // this worker holds those. Bounded: a port that never runs dry (a
        // stream still arriving) does not hold the stop up.
        for _ in 0..DRAIN_ROUNDS {
            if self.round() == 0 {
                break;
            }
        }
        // Queues still attached are dropped with the worker; flush them.
        for p in self.ports.iter_mut().flatten() {
            let _ = p.flush();
        }
        self.publish_now(true);
        tracing::info!(worker = self.id, "worker stopped");
        Ok(())
    }

    /// One round: a burst from every receive source through the pipeline,
    /// then a flush of every port. Returns the frames received.
    pub fn round(&mut self) -> usize {
        let mut got = 0usize;
        let n_ports = self.ports.len();
        for si in 0..self.sources.len() {
            let (i, src) = self.sources[si];
            let port = match src {
                None => self.ports[i as usize].as_deref_mut(),
                Some(j) => Some(&mut *self.rx_only[j].1),
            };
            let received = match port.map(|p| p.rx_burst(&mut self.batch)) {
                Some(Ok(n)) => n,
                Some(Err(e)) => {
                    self.io_errors += 1;
                    self.last_error = Some((IoStep::Rx, i, e));
                    0
                }
                None => 0,
            };
            if received == 0 {
                continue;
            }
            got += received;
            self.rx[i as usize] += self.batch.segments();
            // One table load per burst: the guard pins this snapshot until
            // the burst is done; the publisher frees it later, not us.
            let t = self.tables.load();
            // The pipeline reads no clock: one read per burst paces its
            // ICMP errors.
            self.pipe
                .set_clock(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX));
            let mut dyn_ports: [Option<&mut dyn Port>; MAX_PORTS] = [const { None }; MAX_PORTS];
            for (slot, p) in dyn_ports.iter_mut().zip(self.ports.iter_mut()) {
                *slot = p.as_deref_mut().map(|p| p as &mut dyn Port);
            }
            if let Err(e) = dataplane::forward_burst(
                &mut self.pipe,
                &t,
                i,
                &mut self.batch,
                &mut self.verdicts,
                &mut dyn_ports[..n_ports.min(MAX_PORTS)],
                &mut self.tx,
            ) {
                self.io_errors += 1;
                self.last_error = Some((IoStep::Tx, i, e));
            }
        }
        let primary = self
            .ports
            .iter_mut()
            .enumerate()
            .filter_map(|(i, p)| Some((i as u16, p.as_deref_mut()?)));
        let secondary = self.rx_only.iter_mut().map(|(i, p)| (*i, &mut **p));
        for (i, p) in primary.chain(secondary) {
            if let Err(e) = p.flush() {
                self.io_errors += 1;
                self.last_error = Some((IoStep::Flush, i, e));
            }
        }
        got
    }

    /// Publishes the counters every [`STATS_EVERY`] loops, and once as the
    /// worker goes quiet.
    fn publish(&mut self) {
        if self.loops % u64::from(STATS_EVERY) == 0 || self.publish_idle {
            self.publish_now(false);
        }
    }

    /// Publishes the counters; `wait` takes the lock even if the control
    /// thread holds it (at exit), otherwise a busy lock skips this round.
    fn publish_now(&mut self, wait: bool) {
        let guard = if wait {
            self.handle.stats.lock().ok()
        } else {
            self.handle.stats.try_lock().ok()
        };
        let Some(mut s) = guard else { return };
        // Cleared only once published: a reader holding the lock now must
        // not cost the publication of a sleep, since a sleeping worker's
        // next one is far away.
        self.publish_idle = false;
        // Summed here, every publication, not per packet.
        self.pipe.counters.total_into(&mut s.counters);
        s.nets.clone_from(&self.pipe.counters);
        s.rx.clone_from(&self.rx);
        s.tx.clone_from(&self.tx);
        s.port_io = port_io(&self.ports, &self.rx_only);
        s.io_errors = self.io_errors;
        s.wakeups = self.wakeups;
        s.sleeps = self.sleeps;
        s.loops = self.loops;
        if let Some((step, port, e)) = self.last_error.take() {
            s.last_error = Some(step.describe(port, &e));
        }
    }

    /// After a round: spin on, yield, or sleep on the ports' fds once
    /// nothing has arrived for [`IDLE_SPIN_TIME`].
    fn rest(&mut self, got: usize) -> io::Result<()> {
        if got > 0 {
            self.idle = 0;
            if self.sleeping {
                self.sleeping = false;
                disarm(&self.poll, &self.wait_fds)?;
            }
            return Ok(());
        }
        self.idle += 1;
        if self.idle == 1 {
            self.idle_since = Instant::now();
        } else if !self.sleeping
            && self.idle % SPIN_CLOCK_EVERY == 0
            && self.idle_since.elapsed() >= IDLE_SPIN_TIME
        {
            self.sleeping = true;
            self.sleeps += 1;
            arm(&self.poll, &self.wait_fds)?;
            // Going quiet: publish once now (the next round), since the
            // loop count will barely move while asleep.
            self.publish_idle = true;
        }
        if self.sleeping {
            // Sleep until a port is readable or a command comes (or the
            // timeout, for ports that cannot be waited on and for the stop
            // flag); stay asleep across timeouts, and spin again only once
            // something arrives.
            match self.poll.poll(&mut self.events, Some(IDLE_SLEEP)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if !self.events.is_empty() {
                if self.events.iter().any(|e| e.token() != WAKE_TOKEN) {
                    self.wakeups += 1;
                }
                self.idle = 0;
                self.sleeping = false;
                disarm(&self.poll, &self.wait_fds)?;
            }
        } else {
            // A spinning thread keeps its core until the scheduler takes it
            // away, and on a host with few cores a container shares that
            // core: the sender filling the queue we poll, or the receiver
            // our last write woke. Yielding on every empty round hands the
            // core over at once when one of them is runnable, and costs one
            // system call (~0.5 us) when none is (docs/benchmarks.md has
            // the trade: more packets per second with the worker on the
            // sender's core, a few microseconds more round-trip time).
            std::thread::yield_now();
        }
        Ok(())
    }

    /// Applies every queued command. Called between rounds, never while
    /// the fds are armed.
    fn apply_commands(&mut self) -> io::Result<()> {
        self.handle.pending.store(false, Ordering::Release);
        if self.sleeping {
            self.sleeping = false;
            disarm(&self.poll, &self.wait_fds)?;
        }
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Attach {
                    index,
                    queue,
                    rx_only,
                    done,
                } => {
                    let i = index as usize;
                    if i >= MAX_PORTS {
                        // The control thread never sends one; refuse, do not grow.
                        continue;
                    }
                    if self.ports.len() <= i {
                        self.ports.resize_with(i + 1, || None);
                    }
                    self.ports[i] = queue;
                    self.rx_only.extend(rx_only.into_iter().map(|p| (index, p)));
                    self.index_sources();
                    self.rx[i] = 0;
                    self.tx[i] = 0;
                    tracing::debug!(worker = self.id, port = index, "port attached");
                    let _ = done.send(());
                }
                Command::Detach { index, done } => {
                    let i = index as usize;
                    let mut queues = Vec::new();
                    let mut io = IoCounters::default();
                    if let Some(mut p) = self.ports.get_mut(i).and_then(Option::take) {
                        // Frames already handed to it leave before it goes.
                        let _ = p.flush();
                        p.io_counters(&mut io);
                        queues.push(p);
                    }
                    let mut k = 0;
                    while k < self.rx_only.len() {
                        if self.rx_only[k].0 == index {
                            let (_, p) = self.rx_only.swap_remove(k);
                            p.io_counters(&mut io);
                            queues.push(p);
                        } else {
                            k += 1;
                        }
                    }
                    let rx = self.rx.get(i).copied().unwrap_or(0);
                    let tx = self.tx.get(i).copied().unwrap_or(0);
                    self.index_sources();
                    if i < self.rx.len() {
                        self.rx[i] = 0;
                        self.tx[i] = 0;
                    }
                    tracing::debug!(worker = self.id, port = index, "port detached");
                    let _ = done.send(DetachedQueues { queues, rx, tx, io });
                }
            }
        }
        // Published at once: the control thread reads per-port counts by
        // index, and a reused index must not show the old port's.
        self.publish_now(true);
        Ok(())
    }
}

/// Registers the fds the worker sleeps on (see [`Worker::wait_fds`]).
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

/// Every port's I/O counters, its receive-only queues included.
fn port_io(
    ports: &[Option<Box<dyn Port + Send>>],
    rx_only: &[(u16, Box<dyn Port + Send>)],
) -> Vec<IoCounters> {
    let mut out = vec![IoCounters::default(); ports.len()];
    for (i, p) in ports.iter().enumerate() {
        if let Some(p) = p {
            p.io_counters(&mut out[i]);
        }
    }
    for (i, p) in rx_only {
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

/// Most ports one worker handles: the uplink plus a host's container ports.
pub const MAX_PORTS: usize = crate::config::MAX_PORTS + 1;
