//! `vxrouter run`: the control thread of a live router.
//!
//! Start-up (`Router::start`): load the topology, create or attach the
//! container ports, attach our XDP programs and open one AF_XDP socket or
//! TUN queue per worker and port, resolve the peers' underlay MACs through
//! the kernel's neighbour table, compile and publish the forwarding tables,
//! start the pinned workers, listen on the control socket. A start whose
//! overlay MTU cannot fit the uplink NIC's MTU once encapsulated is refused
//! before anything is made.
//!
//! Then `Router::step` watches, one poll at a time: neighbour events
//! (republish when a peer's MAC appears or changes), the uplink NIC's MTU
//! (republish: packets that no longer fit get ICMP errors naming the size
//! that does), liveness hellos, control socket requests (status, ports,
//! live attach and detach), SIGHUP (reload; a bad file keeps the running
//! tables), SIGUSR2 (start a successor from the executable on disk, which
//! takes over through `handover`: an upgrade in place), SIGINT/SIGTERM
//! (stop the workers, detach XDP, remove what we created), and every second it retires old tables, retries unresolved
//! neighbours, writes the stats file and hands the same counters to the
//! metrics endpoint ([`crate::metrics`]). Each tick also reads every
//! worker's loop count (`progress`): a worker that has not looped for
//! `progress::PROGRESS_WINDOW` is wedged, and the router logs it, counts
//! it and exits non-zero, for its supervisor to restart it. Under systemd
//! (`notify`) it says `READY=1` once every worker polls, feeds the
//! watchdog only while every worker makes progress, and says `STOPPING=1`;
//! a router that hands over tells it `MAINPID=` of its successor instead.
//!
//! Files: `setup` opens port queues, `ports` keeps the port set,
//! `attach` attaches and detaches ports live, `socket` serves the
//! control socket, `reload` decides what a reload may change,
//! `neighbours` resolves peers, `hellos` runs the liveness socket,
//! `underlay` checks the NIC's MTU, `stats` collects the counters,
//! `progress` tells stalled workers, `notify` talks to systemd, `store`
//! merges the topology store's views (`[store]`), `handover` passes the
//! running router's descriptors to its successor (`run --takeover`).
//!
//! Invariants: workers only ever see whole, published tables; a port is in
//! the tables before a worker polls it, and out of every table before a
//! worker gives it back; everything created is owned by a guard
//! whose Drop undoes it, so every exit path (error, signal) leaves the host
//! as it was, except the interfaces of attached ports, which belong to
//! their containers.

mod alternates;
mod attach;
mod handover;
mod hellos;
mod neighbours;
mod notify;
mod ports;
mod progress;
mod reload;
mod setup;
mod socket;
mod state;
mod stats;
mod store;
mod underlay;

pub use handover::handover_path;
pub use underlay::container_gso_segs;

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

use crate::api::{self, Body, PortCounters, Reply, Request};
use crate::config::{self, PortKind, Topology, UplinkIo};
use crate::dataplane::Tables;
use crate::fib::FibPublisher;
use crate::host::link::{link_info, LinkChange, LinkInfo, LinkWatch};
use crate::host::neigh::NeighbourTable;
use crate::host::netns::{self, CreatedDevice};
use crate::metrics::{LivenessStats, MetricsServer, ReloadStats, RunStats};
use crate::netstats::NetworkStats;
use crate::port::afxdp::{AfXdpConfig, AfXdpPort, UmemPool};
use crate::port::tun::TunPort;
use crate::port::udp::{UdpConfig, UdpPort};
use crate::port::xdp::{ContainerXdp, XdpProgram};
use crate::port::Port;
use crate::route::liveness::Liveness;
use crate::route::{self, RouteSet};
use crate::worker::{Command, Worker, WorkerHandle};

use neighbours::Neighbours;
use notify::Notifier;
use ports::{PortSet, Slot};
use progress::{Progress, PROGRESS_WINDOW};
use reload::RestartKey;
use setup::Queues;
use socket::ControlSocket;

/// Options of `vxrouter run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: PathBuf,
    pub host: String,
    /// Where to write JSON stats every second (atomically, by rename).
    pub stats_file: Option<PathBuf>,
    /// How often to log a counter summary.
    pub log_interval: Duration,
    /// Where to serve Prometheus metrics (`GET /metrics`), if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
    /// The control socket's path; `None` serves none.
    pub socket: Option<PathBuf>,
    /// Where attached ports are recorded, so that the next run takes them
    /// back; `None` records nothing.
    pub state_dir: Option<PathBuf>,
    /// Take over from the router running on this host (see docs/operations.md).
    pub takeover: bool,
}

/// The control socket's default path for host `host`.
pub fn default_socket(host: &str) -> PathBuf {
    PathBuf::from(format!("/run/vxrouter/{host}.sock"))
}

/// The default state directory for host `host`.
pub fn default_state_dir(host: &str) -> PathBuf {
    PathBuf::from(format!("/run/vxrouter/{host}"))
}

/// Poll tokens of the control thread.
const NEIGH_TOKEN: Token = Token(0);
const HELLO_TOKEN: Token = Token(1);
/// Shortest stall of a worker that holds the liveness hellos back: an idle
/// worker sleeps up to [`crate::worker::IDLE_SLEEP`] between loops, and a
/// loaded machine can keep a thread off its core for a few tens of ms.
const HOLD_HELLOS_AFTER: Duration = Duration::from_millis(100);
const LINK_TOKEN: Token = Token(2);
const STORE_TOKEN: Token = Token(3);
const HANDOVER_TOKEN: Token = Token(4);
const ALTERNATES_TOKEN: Token = Token(5);
/// The control socket's listener; its clients take the tokens above.
const SOCKET_TOKEN: usize = 16;

/// How long a live attach or detach waits for every worker to take or give
/// back a port.
const WORKER_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a stop waits for the workers to end (a healthy one ends within
/// its sleep, 10 ms); a wedged one is left behind, so that the rest of the
/// teardown and the exit still happen.
const WORKER_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything the start made that the router must undo, dropped in reverse
/// order of need: workers first (they hold sockets), then sockets, then XDP
/// programs, then devices.
struct Owned {
    stop: Arc<AtomicBool>,
    workers: Vec<(JoinHandle<std::io::Result<()>>, WorkerHandle)>,
    programs: Vec<XdpProgram>,
    devices: Vec<CreatedDevice>,
}

impl Owned {
    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for (_, h) in &self.workers {
            h.stop();
        }
        let deadline = Instant::now() + WORKER_STOP_TIMEOUT;
        for (k, (h, _)) in self.workers.drain(..).enumerate() {
            // A fine wait: in a handover the new router's workers wait
            // for this (an AF_XDP uplink's rings have one reader), and
            // traffic with them.
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
            if !h.is_finished() {
                // Dropping the handle detaches the thread: the process
                // exit ends it.
                tracing::error!(
                    worker = k,
                    "worker did not stop: left behind, its queues with it"
                );
                continue;
            }
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "worker failed"),
                Err(_) => tracing::error!("worker panicked"),
            }
        }
        for p in self.programs.drain(..) {
            tracing::info!(dev = p.ifname(), "detaching XDP program");
            drop(p);
        }
        for d in self.devices.drain(..) {
            let name = d.port_name().to_owned();
            if let Err(e) = d.teardown() {
                tracing::warn!(dev = %name, error = %e, "teardown failed");
            } else {
                tracing::info!(dev = %name, "removed");
            }
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The signal flags, set from the very start: a SIGTERM or SIGINT during
/// the set-up (devices, namespaces, XDP programs) must not kill the process
/// before the guards can take down what it made; the loop sees the flag and
/// stops in order. A SIGHUP then reloads once the router runs.
struct Signals {
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    usr2: Arc<AtomicBool>,
}

impl Signals {
    fn install() -> Result<Signals> {
        let term = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, term.clone()).context("installing signal handlers")?;
        }
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
            .context("installing signal handlers")?;
        let usr2 = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGUSR2, usr2.clone())
            .context("installing signal handlers")?;
        Ok(Signals { term, hup, usr2 })
    }
}

/// One worker's queues at start: `queues[i]` its queue of port `i`.
#[derive(Default)]
struct WorkerQueues {
    queues: Vec<Option<Box<dyn Port + Send>>>,
    rx_only: Vec<(u16, Box<dyn Port + Send>)>,
}

/// What a pass of the loop found to republish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Republish {
    /// Nothing changed.
    No,
    /// Build again and publish if a peer's MAC changed.
    IfPeersChanged,
    /// Build again and publish.
    Always,
}

/// A running router: its configuration, what it made, and its state.
struct Router<'a> {
    opts: &'a RunOptions,
    topo: Topology,
    me: usize,
    restart_key: RestartKey,
    learned_macs: BTreeMap<String, [u8; 6]>,
    metrics: Option<MetricsServer>,
    epoch: Instant,
    liveness: Option<Liveness>,
    /// Computes the loop-free alternates of the routes beside this thread
    /// (with liveness only).
    alternates: Option<alternates::AlternatesThread>,
    hello_sock: Option<std::net::UdpSocket>,
    next_hello: u64,
    /// Hellos are held back: a worker makes no progress.
    hellos_held: bool,
    nic: String,
    nic_info: LinkInfo,
    nic_watch: LinkWatch,
    underlay_mtu: u16,
    n_workers: usize,
    /// The AF_XDP sockets of veth container ports: their sizes and modes,
    /// and UMEMs made ahead of live attaches.
    umem_pool: UmemPool,
    /// The container XDP program every AF_XDP veth port shares.
    container_xdp: ContainerXdp,
    owned: Owned,
    ports: PortSet,
    routes: RouteSet,
    neigh: Neighbours,
    publisher: FibPublisher<Tables>,
    published: u64,
    last_macs: Vec<(String, bool, [u8; 6])>,
    reloads: ReloadStats,
    poll: Poll,
    registry: Registry,
    events: Events,
    control: Option<ControlSocket>,
    state: Option<state::StateDir>,
    last_tick: Instant,
    last_log: Instant,
    republish: Republish,
    /// The workers' loop counts as last seen.
    progress: Progress,
    workers_wedged: u64,
    /// Set once every worker polls (`READY=1`, `/readyz`).
    ready: bool,
    notify: Option<Notifier>,
    last_watchdog: Instant,
    /// The topology store, with `[store]`.
    store: Option<store::StoreLink>,
    /// The topology file as last loaded (the store's views merge into it).
    file_topo: Topology,
    /// What a handover passes for the uplink's queues.
    uplink_passable: setup::Passable,
    /// The handover listener (beside the control socket).
    handover: Option<handover::Listener>,
    /// During a takeover: attached ports' queue descriptors from the old
    /// router, by device name, for [`Router::reattach_recorded`].
    takeover_attached: BTreeMap<String, Vec<std::os::fd::OwnedFd>>,
    /// During a takeover: attached AF_XDP veth ports' links and sockets
    /// from the old router, by device name, for [`Router::reattach_recorded`].
    /// `None` once taken (the name stays until the port is installed).
    takeover_attached_xsk: BTreeMap<String, Option<handover::TakenXsk>>,
    /// AF_XDP sockets taken over (the uplink's, veth ports'), polled once
    /// the old router has let go of them.
    pending_xsk: Vec<handover::PendingPort>,
    /// A handover or a restart request decided how this router ends.
    exit: Exit,
    /// How to start a successor on SIGUSR2, and the one started.
    relaunch: Option<handover::Relaunch>,
    /// The new router systemd was told is the main process now.
    successor_pid: Option<u32>,
}

/// How the loop ends, besides a signal.
enum Exit {
    /// Not yet.
    Running,
    /// A new router forwards: exit, tearing nothing down.
    HandedOver,
    /// A new router asked for a restart: stop as on SIGTERM, and close
    /// this connection only once stopped (it is held, never read: its
    /// closing at the exit tells the new router to start).
    Stop(#[allow(dead_code)] handover::Conn),
}

/// Runs the router until SIGINT or SIGTERM.
pub fn run(opts: &RunOptions) -> Result<()> {
    let signals = Signals::install()?;
    let mut takeover = match (&opts.socket, opts.takeover) {
        (Some(sock), true) => {
            match handover::Takeover::connect(&handover_path(sock), &opts.host)? {
                handover::Found::Offer(t) => Some(t),
                handover::Found::Nobody | handover::Found::Stopped => None,
            }
        }
        (None, true) => {
            bail!("--takeover needs the control socket (it finds the running router beside it)")
        }
        (_, false) => None,
    };
    let mut router = match Router::start(opts, takeover.as_deref_mut()) {
        Ok(r) => r,
        Err(e) => {
            if let Some(t) = takeover {
                t.abort(&format!("{e:#}"));
            }
            return Err(e);
        }
    };
    if let Some(t) = takeover {
        router.complete_takeover(*t)?;
    }
    let result = loop {
        if signals.term.load(Ordering::Relaxed) {
            break Ok(());
        }
        match router.exit {
            Exit::Running => {}
            Exit::HandedOver => {
                router.exit_handed_over();
                return Ok(());
            }
            Exit::Stop(_) => break Ok(()),
        }
        if signals.usr2.swap(false, Ordering::Relaxed) {
            router.start_successor();
        }
        router.reap_successor();
        if let Err(e) = router.step(signals.hup.swap(false, Ordering::Relaxed)) {
            break Err(e);
        }
    };
    router.stop();
    result
}

impl<'a> Router<'a> {
    /// Builds everything and starts the workers.
    fn start(
        opts: &'a RunOptions,
        mut takeover: Option<&mut handover::Takeover>,
    ) -> Result<Router<'a>> {
        let (file_topo, me) = reload::load_topology(&opts.config, &opts.host)?;
        let notify = Notifier::from_env().context("systemd's $NOTIFY_SOCKET")?;
        let (topo, store) = match &file_topo.store {
            Some(_) => {
                let (link, merged) =
                    store::StoreLink::start(&file_topo, me, opts.state_dir.as_deref())?;
                (merged.topology, Some(link))
            }
            None => (file_topo.clone(), None),
        };
        let learned_macs = reload::learn_container_macs(&topo.hosts[me])?;
        let topo = reload::effective(topo, me, &learned_macs);
        // Before any device is made: a metrics address we cannot listen on
        // fails the start with nothing to undo.
        let handed_metrics = match (opts.metrics, takeover.as_deref_mut()) {
            (Some(addr), Some(t)) => t.metrics(addr)?,
            _ => None,
        };
        let metrics = match opts.metrics {
            Some(addr) => {
                let m = match handed_metrics {
                    Some(l) => MetricsServer::start_from(l)?,
                    None => MetricsServer::start(addr)?,
                };
                tracing::info!(addr = %m.local_addr(), "serving metrics at /metrics");
                Some(m)
            }
            None => None,
        };
        let host = topo.hosts[me].clone();
        // Liveness: its socket is bound before any device is made, too.
        let epoch = Instant::now();
        let hello_keys = match topo.overlay.liveness.as_ref() {
            Some(cfg) => hellos::load_hello_keys(cfg)?,
            None => None,
        };
        let hello_sock = match &topo.overlay.liveness {
            Some(cfg) => {
                let addr = std::net::SocketAddr::new(host.underlay, cfg.port);
                let handed = match takeover.as_deref_mut() {
                    Some(t) => t.liveness(addr)?,
                    None => None,
                };
                let sock = match handed {
                    Some(s) => s,
                    None => std::net::UdpSocket::bind(addr)
                        .and_then(|s| s.set_nonblocking(true).map(|()| s))
                        .with_context(|| format!("binding the liveness socket on {addr}"))?,
                };
                tracing::info!(%addr, "liveness hellos on");
                Some(sock)
            }
            None => None,
        };
        let Some(nic) = host.nic.clone() else {
            bail!(
                "host {} has no `nic` in {}: the router needs its underlay device",
                host.name,
                opts.config.display()
            );
        };
        let nic_info = link_info(&nic).with_context(|| format!("underlay device {nic}"))?;
        // Subscribed before the MTU is read, so no change after it is missed.
        let nic_watch = LinkWatch::open(&nic)
            .with_context(|| format!("watching the MTU of underlay device {nic}"))?;
        let underlay_mtu = nic_watch.mtu();
        underlay::check_mtu_fits(&topo, me, &nic, underlay_mtu, &opts.config)?;
        if let Some(m) = host.underlay_mac {
            if m.0 != nic_info.mac {
                tracing::warn!(dev = %nic, configured = %m, "underlay_mac differs from the device's MAC; using the device's");
            }
        }
        let udp_uplink = host.uplink_io == UplinkIo::Udp;
        // AF_XDP needs a NIC queue per worker; UDP sockets share the port
        // through SO_REUSEPORT, so any number of workers can serve it.
        let queues = if udp_uplink {
            usize::MAX
        } else {
            nic_info.num_rx_queues.max(1) as usize
        };
        let mut n_workers = host.workers.len().max(1);
        if n_workers > queues {
            tracing::warn!(dev = %nic, queues, workers = n_workers, "fewer NIC queues than workers: running {queues} worker(s)");
            n_workers = queues;
        }
        if let Some(t) = takeover.as_deref() {
            let ports: Vec<_> = host
                .ports
                .iter()
                .map(|p| (p.name.clone(), p.kind, p.offload))
                .collect();
            t.check_matches(n_workers, &ports)?;
        }
        let cores: Vec<Option<usize>> = (0..n_workers)
            .map(|k| host.workers.get(k).copied())
            .collect();

        let stop = Arc::new(AtomicBool::new(false));
        let mut owned = Owned {
            stop: stop.clone(),
            workers: Vec::new(),
            programs: Vec::new(),
            devices: Vec::new(),
        };
        let xsk_cfg = AfXdpConfig::default();
        // One port's worth of spare UMEMs (a socket per worker) when ports
        // can be attached live.
        let spares = if opts.socket.is_some() { n_workers } else { 0 };
        let mut umem_pool =
            UmemPool::new(AfXdpConfig::veth(), spares).context("starting the spare UMEM thread")?;
        // Taking over AF_XDP veth ports, their shared program is the old
        // router's, and later attaches use it too.
        let container_xdp = match takeover.as_deref_mut() {
            Some(t) => t.container_xdp()?,
            None => None,
        };
        if container_xdp.is_some() {
            tracing::info!("container XDP program taken over");
        }
        let container_xdp = container_xdp.unwrap_or_default();

        // Queues per port index: 0 the uplink, then container ports.
        let mut by_port: Vec<Queues> = Vec::with_capacity(1 + host.ports.len());
        let mut pending_xsk = Vec::new();
        by_port.push(match takeover.as_deref_mut() {
            Some(t) => {
                let (q, pending) = adopt_uplink(&topo, me, &nic, &nic_info, n_workers, t)?;
                if !pending.is_empty() {
                    pending_xsk.push(handover::PendingPort {
                        index: 0,
                        ifname: nic.clone(),
                        queues: pending,
                    });
                }
                q
            }
            None => open_uplink(&topo, me, &nic, &nic_info, n_workers, queues, &xsk_cfg)?,
        });
        let mut ports = PortSet::default();
        for (i, p) in host.ports.iter().enumerate() {
            let idx = i + 1;
            let mtu = topo.port_mtu(me, i);
            let handed = match takeover.as_deref_mut() {
                Some(t) => t.port(&p.name)?,
                None => None,
            };
            let mut q = match (p.kind, handed) {
                (PortKind::Tun, Some((offer, fds))) => {
                    let tuns = fds
                        .into_iter()
                        .enumerate()
                        .map(|(k, fd)| TunPort::adopt(&p.name, k, fd, mtu, offer.offload))
                        .collect::<std::io::Result<Vec<_>>>()
                        .with_context(|| format!("taking over TUN port {}", p.name))?;
                    tracing::info!(port = %p.name, queues = tuns.len(), "TUN port taken over");
                    setup::tun_queues(tuns, n_workers)
                }
                (PortKind::Veth, Some((offer, _))) if offer.xsk.is_some() => {
                    let t = takeover.as_deref_mut().expect("handed over");
                    let (link, pending) = t.xsk_port(&offer, &container_xdp)?;
                    tracing::info!(port = %p.name, mode = %link.mode(), sockets = pending.len(), "veth port's XDP link taken over; its AF_XDP sockets follow once the old router lets go");
                    let mut q = Queues::empty(n_workers);
                    q.link = Some(link);
                    q.pending = pending;
                    q
                }
                (PortKind::Veth, Some((_, fds))) => {
                    setup::adopt_packet_queues(p, idx, mtu, host.vtep_mac.0, n_workers, fds)?
                }
                (PortKind::Tun, None) => {
                    let tuns = match &p.netns {
                        Some(ns) => {
                            let (dev, tuns) = netns::setup_tun_netns(
                                &host.name,
                                &p.name,
                                ns,
                                &p.addresses,
                                mtu,
                                |name| {
                                    TunPort::open_with(name, n_workers, mtu, p.offload, p.queue_len)
                                },
                            )
                            .with_context(|| {
                                format!("creating TUN port {} in netns {ns}", p.name)
                            })?;
                            owned.devices.push(dev);
                            underlay::cap_container_gso(ns, mtu);
                            tuns
                        }
                        None => TunPort::open_with(&p.name, n_workers, mtu, p.offload, p.queue_len)
                            .with_context(|| format!("opening TUN device {}", p.name))?,
                    };
                    tracing::info!(
                        port = %p.name,
                        queues = tuns.len(),
                        netns = ?p.netns,
                        offload = tuns.first().is_some_and(|t| t.offload()),
                        "TUN port ready"
                    );
                    setup::tun_queues(tuns, n_workers)
                }
                (PortKind::Veth, None) => {
                    if let Some(ns) = &p.netns {
                        let dev = netns::setup_veth_with(
                            &host.name,
                            &p.name,
                            ns,
                            &p.addresses,
                            &p.gateways,
                            mtu,
                            p.mac.map(|m| m.0),
                            n_workers as u32,
                            !p.offload,
                        )
                        .with_context(|| format!("creating veth port {} in netns {ns}", p.name))?;
                        owned.devices.push(dev);
                        if p.offload {
                            underlay::cap_container_gso(ns, mtu);
                        }
                    } else {
                        link_info(&p.name).with_context(|| {
                            format!("veth port {} (no netns given, so it must exist)", p.name)
                        })?;
                        if !p.offload {
                            // AF_XDP frames carry no partial-checksum flag.
                            tracing::warn!(port = %p.name, "attached to an existing veth: turn off tx checksum offload on its container end (ethtool -K IF tx off)");
                        }
                    }
                    setup::open_veth_queues(
                        p,
                        idx,
                        mtu,
                        host.vtep_mac.0,
                        n_workers,
                        &mut umem_pool,
                        &container_xdp,
                    )?
                }
            };
            if !q.pending.is_empty() {
                pending_xsk.push(handover::PendingPort {
                    index: idx as u16,
                    ifname: p.name.clone(),
                    queues: std::mem::take(&mut q.pending),
                });
            }
            ports.insert(
                idx as u16,
                Slot {
                    config: p.clone(),
                    attachment: None,
                    program: q.link.take(),
                    passable: std::mem::replace(&mut q.passable, setup::Passable::Fds(Vec::new())),
                },
            );
            by_port.push(q);
        }
        if let Some(p) = by_port[0].program.take() {
            owned.programs.push(p);
        }
        let uplink_passable =
            std::mem::replace(&mut by_port[0].passable, setup::Passable::Fds(Vec::new()));

        // Routes, neighbours, tables.
        let routes = compute_routes(&topo, me, None).map_err(|e| anyhow::anyhow!("{e}"))?;
        for &u in &routes.unreachable {
            tracing::warn!(host = %topo.hosts[u].name, "unreachable: its prefixes are left out");
        }
        let mut neigh = Neighbours {
            table: NeighbourTable::open().context("opening the netlink neighbour socket")?,
            nic: nic.clone(),
            via: BTreeMap::new(),
            kernel_resolves: udp_uplink,
        };
        neigh.learn_peers(&topo, me, &routes, topo.overlay.liveness.is_some());
        neigh.resolve_missing();
        if udp_uplink {
            underlay::warn_routes_off_nic(
                &topo,
                me,
                &routes,
                &mut neigh.table,
                &nic,
                nic_info.index,
            );
        }
        let t = neighbours::build_tables(
            &topo,
            me,
            &routes,
            nic_info.mac,
            underlay_mtu,
            &neigh,
            &ports.configs(),
        );
        let last_macs = neighbours::peer_macs(&t);
        let (publisher, reader) = FibPublisher::new(t);

        // Workers: queue k of every port to worker k.
        let mut per_worker: Vec<WorkerQueues> =
            (0..n_workers).map(|_| WorkerQueues::default()).collect();
        // Taking over, the workers are held (they poll nothing) until they
        // have every port's queues, the attached ones and the uplink
        // included: the queues are the old router's too, which forwards
        // meanwhile, and a packet read here before its way out is in place
        // would be dropped.
        let mut held_uplink = None;
        for (idx, mut q) in by_port.into_iter().enumerate() {
            if idx == 0 && takeover.is_some() {
                let empty = Queues::empty(n_workers);
                held_uplink = Some(std::mem::replace(&mut q, empty));
            }
            for (k, queue) in q.per_worker.into_iter().enumerate() {
                per_worker[k].queues.push(queue);
            }
            for (k, queue) in q.rx_only {
                per_worker[k].rx_only.push((idx as u16, queue));
            }
        }
        for (k, w) in per_worker.into_iter().enumerate() {
            let (worker, handle) =
                Worker::new(k, w.queues, w.rx_only, reader.clone(), stop.clone())
                    .context("creating a worker")?;
            if takeover.is_some() {
                handle.hold();
            }
            let core = cores[k];
            let jh = std::thread::Builder::new()
                .name(format!("vxr-worker-{k}"))
                .spawn(move || worker.run(core))
                .context("spawning a worker thread")?;
            owned.workers.push((jh, handle));
        }
        tracing::info!(host = %host.name, workers = n_workers, routes = routes.routes.len(), "router running");

        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        registry.register(
            &mut SourceFd(&neigh.table.fd()),
            NEIGH_TOKEN,
            Interest::READABLE,
        )?;
        if let Some(sock) = &hello_sock {
            use std::os::fd::AsRawFd;
            registry.register(
                &mut SourceFd(&sock.as_raw_fd()),
                HELLO_TOKEN,
                Interest::READABLE,
            )?;
        }
        registry.register(
            &mut SourceFd(&nic_watch.fd()),
            LINK_TOKEN,
            Interest::READABLE,
        )?;
        if let Some(s) = &store {
            s.set_waker(Arc::new(mio::Waker::new(&registry, STORE_TOKEN)?));
        }
        let state = opts
            .state_dir
            .as_deref()
            .map(state::StateDir::open)
            .transpose()?;
        let handed_control = match takeover.as_deref_mut() {
            Some(t) => t.control()?,
            None => None,
        };
        let control = match (&opts.socket, handed_control) {
            (Some(path), Some(fd)) => {
                Some(ControlSocket::adopt(fd, path, &registry, SOCKET_TOKEN)?)
            }
            (Some(path), None) => Some(ControlSocket::bind(path, &registry, SOCKET_TOKEN)?),
            (None, _) => None,
        };
        let handed_listener = match takeover.as_deref_mut() {
            Some(t) => t.listener()?,
            None => None,
        };
        let handover = match (&opts.socket, handed_listener) {
            (Some(_), Some(l)) => Some(l),
            (Some(path), None) => Some(handover::Listener::bind(&handover_path(path))?),
            (None, _) => None,
        };
        if let Some(l) = &handover {
            registry.register(&mut SourceFd(&l.fd()), HANDOVER_TOKEN, Interest::READABLE)?;
        }
        let mut takeover_attached = BTreeMap::new();
        let mut takeover_attached_xsk = BTreeMap::new();
        if let Some(t) = takeover {
            let names: Vec<String> = t
                .offer
                .ports
                .iter()
                .filter(|p| p.attached)
                .map(|p| p.name.clone())
                .collect();
            for name in names {
                if let Some((offer, fds)) = t.port(&name)? {
                    match offer.kind {
                        PortKind::Veth if offer.xsk.is_some() => {
                            let taken = t.xsk_port(&offer, &container_xdp)?;
                            takeover_attached_xsk.insert(name, Some(taken));
                        }
                        // TUN queues, AF_PACKET sockets.
                        PortKind::Tun | PortKind::Veth => {
                            takeover_attached.insert(name, fds);
                        }
                    }
                }
            }
        }
        // The start-up grace runs from here, not from before the devices
        // were made (attaching XDP to a real NIC can take seconds).
        let liveness = topo.overlay.liveness.clone().map(|cfg| {
            Liveness::new(&topo, me, cfg, nanos_since(epoch), wall_nanos())
                .with_keys(hello_keys.clone())
        });
        let alternates = match liveness {
            Some(_) => Some(
                alternates::AlternatesThread::start(Arc::new(mio::Waker::new(
                    &registry,
                    ALTERNATES_TOKEN,
                )?))
                .context("spawning the alternates thread")?,
            ),
            None => None,
        };
        let mut router = Router {
            opts,
            restart_key: RestartKey::of(&topo, me),
            topo,
            me,
            learned_macs,
            metrics,
            epoch,
            liveness,
            alternates,
            hello_sock,
            next_hello: 0,
            hellos_held: false,
            nic,
            nic_info,
            nic_watch,
            underlay_mtu,
            n_workers,
            umem_pool,
            container_xdp,
            owned,
            ports,
            routes,
            neigh,
            publisher,
            published: 1,
            last_macs,
            reloads: ReloadStats::default(),
            poll,
            registry,
            events: Events::with_capacity(64),
            control,
            state,
            last_tick: Instant::now(),
            last_log: Instant::now(),
            republish: Republish::No,
            progress: Progress::new(Instant::now(), n_workers),
            workers_wedged: 0,
            ready: false,
            notify,
            last_watchdog: Instant::now(),
            store,
            file_topo,
            uplink_passable,
            handover,
            takeover_attached,
            takeover_attached_xsk,
            pending_xsk,
            exit: Exit::Running,
            relaunch: handover::Relaunch::of_this_process(),
            successor_pid: None,
        };
        if router.liveness.is_some() {
            // Routes over the links liveness takes as up at start.
            router.routes = compute_routes(&router.topo, me, router.liveness.as_ref())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            router.ask_alternates();
            router.republish = Republish::Always;
        }
        if router.control.is_some() {
            // Loaded before the first request, so that a live veth attach
            // costs a link rather than a pass through the verifier.
            if let Err(e) = router.container_xdp.load() {
                tracing::info!(error = %e, "container XDP program not loaded: an AF_XDP veth attach will try again");
            }
        }
        router.reattach_recorded();
        if let Some(q) = held_uplink {
            router
                .give_to_workers(0, q)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            // AF_XDP sockets are polled by one process at a time: the
            // workers stay held until the old router has let go of them
            // (`complete_takeover`).
            if router.pending_xsk.is_empty() {
                for (_, h) in &router.owned.workers {
                    h.release();
                }
            }
        }
        router.publish_stats(&[]);
        Ok(router)
    }

    /// One pass of the loop: wait for an event (at most until the next
    /// hello or tick), handle what came, republish if needed. `hup` asks
    /// for a reload.
    fn step(&mut self, hup: bool) -> Result<()> {
        let mut wait = Duration::from_millis(200);
        if !self.ready {
            // Ready (READY=1, /readyz) as soon as every worker polls, not
            // one idle wait later.
            wait = Duration::from_millis(1);
        }
        if self.liveness.is_some() {
            wait = wait.min(Duration::from_nanos(
                self.next_hello.saturating_sub(nanos_since(self.epoch)),
            ));
        }
        if let Err(e) = self.poll.poll(&mut self.events, Some(wait)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e.into());
            }
        }
        let now = Instant::now();
        let tokens: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
        if !tokens.is_empty() {
            // The neighbour socket is read on every wake-up, not only on
            // its own token: it is non-blocking and cheap when empty.
            match self.neigh.table.process_events() {
                Ok(true) => self.need(Republish::IfPeersChanged),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "neighbour events"),
            }
        }
        if tokens.contains(&LINK_TOKEN) {
            self.on_link_event();
        }
        if tokens.contains(&STORE_TOKEN) {
            self.on_store();
        }
        if tokens.contains(&ALTERNATES_TOKEN) {
            self.on_alternates();
        }
        if tokens.contains(&HANDOVER_TOKEN) {
            self.on_handover();
            if !matches!(self.exit, Exit::Running) {
                return Ok(());
            }
        }
        self.on_hellos();
        if hup {
            self.reload();
        }
        if let Some(mut control) = self.control.take() {
            let registry = self.registry.try_clone()?;
            let mine: Vec<Token> = tokens
                .iter()
                .copied()
                .filter(|t| control.owns(*t))
                .collect();
            for t in mine {
                control.on_event(&registry, t, now, &mut |req| self.handle(req));
            }
            control.tick(&registry, now, &mut |req| self.handle(req));
            self.control = Some(control);
        }
        if !self.ready {
            self.check_ready();
        }
        if self.last_tick.elapsed() >= Duration::from_secs(1) {
            self.tick();
        }
        self.publish_if_needed();
        // Replies are out: spares taken by this step's attaches are made
        // now, not while their hand-off was running.
        self.umem_pool.refill();
        self.feed_watchdog();
        if self.workers_wedged > 0 {
            bail!(
                "{} worker(s) wedged (no progress for {} s): exiting for the supervisor to restart the router",
                self.workers_wedged,
                PROGRESS_WINDOW.as_secs()
            );
        }
        Ok(())
    }

    /// The worker that has made no progress for longer than a neighbour
    /// waits for a hello (the dead interval, at least [`HOLD_HELLOS_AFTER`]),
    /// with its age; `None` while every worker moves. Before the workers
    /// run, none is.
    fn stalled_worker(&mut self) -> Option<(usize, Duration)> {
        if !self.ready {
            return None;
        }
        let dead = self.liveness.as_ref().map_or(Duration::ZERO, |l| {
            Duration::from_nanos(l.interval_nanos() * u64::from(l.dead_after()))
        });
        let now = Instant::now();
        let loops = self.worker_loops();
        self.progress.observe(now, &loops);
        self.progress
            .oldest(now)
            .filter(|&(_, age)| age > dead.max(HOLD_HELLOS_AFTER))
    }

    /// Every worker's loop count now.
    fn worker_loops(&self) -> Vec<u64> {
        self.owned
            .workers
            .iter()
            .map(|(_, h)| h.progress.load(Ordering::Relaxed))
            .collect()
    }

    /// Ready once every worker has looped: the tables are published and
    /// the ports bound before the workers start, so they forward.
    fn check_ready(&mut self) {
        let loops = self.worker_loops();
        if loops.iter().all(|&n| n > 0) {
            self.ready = true;
            if let Some(m) = &self.metrics {
                m.set_ready(true);
            }
            if let Some(n) = &self.notify {
                n.send(&format!(
                    "READY=1\nSTATUS=forwarding with {} worker(s)",
                    loops.len()
                ));
            }
            tracing::info!(workers = loops.len(), "ready: every worker polls");
        }
    }

    /// `WATCHDOG=1` when due, and only while every worker moves.
    fn feed_watchdog(&mut self) {
        let Some(every) = self.notify.as_ref().and_then(Notifier::watchdog_every) else {
            return;
        };
        if !self.ready || self.last_watchdog.elapsed() < every {
            return;
        }
        let now = Instant::now();
        let loops = self.worker_loops();
        self.progress.observe(now, &loops);
        if self.progress.stalled(now).is_empty() {
            self.last_watchdog = now;
            if let Some(n) = &self.notify {
                n.send("WATCHDOG=1");
            }
        }
    }

    /// Finds the workers that stopped making progress; logs and counts
    /// them (the loop then exits).
    fn check_progress(&mut self) {
        let now = Instant::now();
        let loops = self.worker_loops();
        self.progress.observe(now, &loops);
        for (k, age) in self.progress.stalled(now) {
            tracing::error!(
                worker = k,
                no_progress_s = age.as_secs_f64(),
                loops = loops[k],
                "worker wedged: no loop for the progress window; the router exits for its supervisor to restart it"
            );
            self.workers_wedged += 1;
        }
    }

    fn need(&mut self, r: Republish) {
        self.republish = self.republish.max(r);
    }

    fn on_link_event(&mut self) {
        match self.nic_watch.process_events() {
            Ok(Some(LinkChange::Mtu { from, to })) => {
                self.underlay_mtu = to;
                underlay::log_mtu_change(&self.topo, self.me, &self.nic, from, to);
                // Published even though no peer MAC changed.
                self.need(Republish::Always);
            }
            Ok(Some(LinkChange::Gone)) => {
                tracing::error!(dev = %self.nic, "the underlay device left this network namespace: nothing reaches the peers until it is back and the router restarted")
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(dev = %self.nic, error = %e, "link events"),
        }
    }

    /// Asks for the loop-free alternates of the routes just computed, over
    /// the links liveness takes as up; without liveness (a reload turned it
    /// off) an answer still on its way is for routes no longer in use.
    fn ask_alternates(&mut self) {
        let Some(t) = self.alternates.as_mut() else {
            return;
        };
        match &self.liveness {
            Some(l) => t.ask(l.live_topology(&self.topo), self.me),
            None => t.forget(),
        }
    }

    /// The alternates of the current routes came: tables with their
    /// repairs are published (the routes themselves went out already).
    fn on_alternates(&mut self) {
        match self.alternates.as_mut().and_then(|t| t.take()) {
            Some(Ok(a)) => {
                tracing::debug!(protected = a.protected(), "loop-free alternates computed");
                self.routes.alternates = a;
                self.need(Republish::Always);
            }
            Some(Err(e)) => tracing::error!("loop-free alternates: {e}"),
            None => {}
        }
    }

    fn on_hellos(&mut self) {
        if self.liveness.is_none() || self.hello_sock.is_none() {
            return;
        }
        let now = nanos_since(self.epoch);
        let due = now >= self.next_hello;
        let stalled = if due { self.stalled_worker() } else { None };
        let (Some(l), Some(sock)) = (self.liveness.as_mut(), self.hello_sock.as_ref()) else {
            return;
        };
        let before = l.down();
        let mut changed = hellos::receive_hellos(l, sock, now);
        if due {
            match stalled {
                None => {
                    if self.hellos_held {
                        tracing::info!("workers make progress again: liveness hellos resume");
                        self.hellos_held = false;
                    }
                    hellos::send_hellos(l, sock, now);
                }
                Some((k, age)) => {
                    if !self.hellos_held {
                        tracing::warn!(
                            worker = k,
                            no_progress_ms = age.as_millis() as u64,
                            "a worker makes no progress: liveness hellos held, neighbours route around this host"
                        );
                        self.hellos_held = true;
                    }
                    l.counts.held += 1;
                }
            }
            self.next_hello = now + l.interval_nanos();
        }
        changed |= l.on_tick(now);
        if !changed {
            return;
        }
        let after = l.down();
        for n in after.iter().filter(|n| !before.contains(n)) {
            tracing::warn!(neighbour = %n, "neighbour down: routes leave its link");
        }
        for n in before.iter().filter(|n| !after.contains(n)) {
            tracing::info!(neighbour = %n, "neighbour up: routes take its link again");
        }
        tracing::info!(links_down = ?l.link_names_down(), "links out of the routes changed");
        // Fast reroute: the repaired tables go out before the routes are
        // computed again (tens of ms at 10k hosts), which replace them.
        let newly: Vec<&String> = after.iter().filter(|n| !before.contains(n)).collect();
        let hosts: Vec<usize> = newly
            .iter()
            .filter_map(|n| self.topo.host_index(n))
            .collect();
        // Nothing repaired (every slot lost its replacement too, as when
        // routers start one after the other): the recompute alone follows.
        let rerouted = self.publisher.current().rerouted(&hosts);
        if let Some((t, repair)) = rerouted.filter(|(_, r)| r.repaired > 0) {
            self.publisher.publish(t);
            self.published += 1;
            l.counts.lfa_switches += 1;
            tracing::warn!(
                neighbours = ?newly,
                repaired = repair.repaired,
                unrepaired = repair.unrepaired,
                "fast reroute: ECMP slots of neighbours down moved to survivors and loop-free alternates"
            );
        }
        match compute_routes(&self.topo, self.me, Some(l)) {
            Ok(r) => {
                self.routes = r;
                self.ask_alternates();
                // Published even if no peer MAC changed.
                self.need(Republish::Always);
            }
            Err(e) => tracing::error!("routes after a liveness change: {e}"),
        }
    }

    /// Reloads the topology file; a bad file, or a change that needs a
    /// restart, keeps the running configuration.
    fn reload(&mut self) {
        let ok = match self.try_reload() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("reload rejected, keeping the running configuration: {e:#}");
                false
            }
        };
        self.reloads.count(ok);
    }

    /// Merges a new view of the store's records into the running
    /// topology; a view the router cannot take keeps the running one.
    fn on_store(&mut self) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        if !store.drain() {
            return;
        }
        let merged = store.merge(self.file_topo.clone(), self.me);
        let revision = merged.revision;
        match self.apply(merged.topology, merged.me) {
            Ok(()) => {
                // Published now, not at the end of the step: the time from
                // a record written to the workers' tables is the figure.
                self.publish_if_needed();
                if let Some(s) = self.store.as_mut() {
                    s.applied();
                }
                tracing::info!(
                    hosts = self.topo.hosts.len(),
                    revision,
                    "store view published"
                );
            }
            Err(e) => {
                tracing::error!("store view not applied, keeping the running topology: {e:#}");
            }
        }
    }

    fn try_reload(&mut self) -> Result<()> {
        let (file, new_me) = reload::load_topology(&self.opts.config, &self.opts.host)?;
        let new = match self.store.as_mut() {
            Some(s) if file.store.is_some() => s.merge(file.clone(), new_me).topology,
            _ => file.clone(),
        };
        self.apply(new, new_me)?;
        if let Some(s) = self.store.as_mut() {
            s.set_own_networks(&file, new_me);
        }
        self.file_topo = file;
        tracing::info!(routes = self.routes.routes.len(), "configuration reloaded");
        Ok(())
    }

    /// Makes `new` (host `new_me` this one) the running topology: routes,
    /// liveness, neighbours and tables, unless it changes what needs a
    /// restart or leaves an attached port outside this host's subnets.
    fn apply(&mut self, new: Topology, new_me: usize) -> Result<()> {
        let new = reload::effective(new, new_me, &self.learned_macs);
        let changes = self.restart_key.changes(&RestartKey::of(&new, new_me));
        if !changes.is_empty() {
            bail!(
                "changed on this host: {}; those need a restart",
                changes.join(", ")
            );
        }
        // Read again on every reload: a key rotation is a change of the key
        // file and a SIGHUP.
        let keys = new
            .overlay
            .liveness
            .as_ref()
            .map_or(Ok(None), hellos::load_hello_keys)?;
        let new_live = self
            .liveness
            .as_ref()
            .zip(new.overlay.liveness.clone())
            .map(|(l, cfg)| {
                l.reload(&new, new_me, cfg, nanos_since(self.epoch))
                    .with_keys(keys)
            });
        let routes =
            compute_routes(&new, new_me, new_live.as_ref()).map_err(|e| anyhow::anyhow!("{e}"))?;
        // Attached ports must still fit: their network still there with the
        // MTU their devices were made with, their addresses in this host's
        // subnets of it.
        for (_, s) in self.ports.iter().filter(|(_, s)| s.attachment.is_some()) {
            let name = &s.config.network;
            let Some(net) = new.network_index(name) else {
                bail!(
                    "network {name:?} is gone but attached port {} is in it: detach it first",
                    s.config.name
                );
            };
            if new.network_mtu(net, new_me) != self.net_mtu(name) {
                bail!(
                    "the MTU of network {name:?} changed but attached port {} was made with the old one: detach it first",
                    s.config.name
                );
            }
            if let Some(a) = s.config.addresses.iter().find(|a| {
                !new.hosts[new_me]
                    .subnets_in(net)
                    .any(|n| n.contains(&a.addr()))
            }) {
                bail!(
                    "attached port {} holds {a}, outside this host's new subnets in network {name:?}: detach it first",
                    s.config.name
                );
            }
        }
        self.topo = new;
        self.routes = routes;
        self.liveness = new_live;
        self.ask_alternates();
        // This host's place in the file may have moved (a host added above
        // it); the restart key compared is the same.
        self.me = new_me;
        self.neigh
            .learn_peers(&self.topo, self.me, &self.routes, self.liveness.is_some());
        self.neigh.resolve_missing();
        // A reload publishes what it built, even where the peers and route
        // shapes are the same (a renumbered subnet or peer address).
        self.need(Republish::Always);
        tracing::debug!(
            routes = self.routes.routes.len(),
            hosts = self.topo.hosts.len(),
            "topology applied"
        );
        Ok(())
    }

    /// Once a second: retire old tables, retry neighbours, publish stats.
    fn tick(&mut self) {
        self.last_tick = Instant::now();
        let missing = self.neigh.resolve_missing();
        if !missing.is_empty() && self.neigh.table.refresh().unwrap_or(false) {
            self.need(Republish::IfPeersChanged);
        }
        self.publisher.reclaim();
        self.check_progress();
        if let Some(s) = self.store.as_mut() {
            s.save_cache();
        }
        let stats = self.publish_stats(&missing);
        if self.last_log.elapsed() >= self.opts.log_interval {
            self.last_log = Instant::now();
            tracing::info!(
                forwarded = stats.counters.forwarded,
                replied = stats.counters.replied,
                drops = ?stats.counters.drops,
                unresolved = ?stats.unresolved_peers,
                "stats"
            );
        }
    }

    /// Collects the counters and hands them to the metrics endpoint and
    /// the stats file.
    fn publish_stats(&mut self, missing: &[IpAddr]) -> RunStats {
        let stats = self.collect(missing);
        if let Some(m) = &self.metrics {
            m.update(&stats);
        }
        if let Some(path) = &self.opts.stats_file {
            if let Err(e) = stats::write_stats(path, &stats) {
                tracing::warn!(path = %path.display(), error = %e, "writing stats");
            }
        }
        stats
    }

    fn collect(&self, missing: &[IpAddr]) -> RunStats {
        let mut names: Vec<(u16, String, Option<String>)> = vec![(0, self.nic.clone(), None)];
        names.extend(
            self.ports
                .iter()
                .map(|(i, s)| (i, s.config.name.clone(), Some(s.config.network.clone()))),
        );
        let handles: Vec<&WorkerHandle> = self.owned.workers.iter().map(|(_, h)| h).collect();
        let networks = NetworkStats::of_topology(&self.topo, self.me, &self.routes, |net| {
            let name = &self.topo.networks[net].name;
            self.ports
                .iter()
                .filter(|(_, s)| s.config.network == *name)
                .count() as u64
        });
        let mut stats = stats::collect(
            &self.topo.hosts[self.me].name,
            &handles,
            &names,
            networks,
            self.published,
            missing,
            &self.topo,
            &self.reloads,
        );
        stats.liveness = self.liveness.as_ref().map(LivenessStats::of);
        stats.metrics_server = self.metrics.as_ref().map(MetricsServer::http_stats);
        stats.control_socket = self.control.as_ref().map(|c| c.stats);
        stats.store = self.store.as_ref().map(store::StoreLink::stats);
        stats.workers_wedged = self.workers_wedged;
        stats.worker_progress_age_ms = self
            .progress
            .ages(Instant::now())
            .iter()
            .map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX))
            .collect();
        stats
    }

    /// Builds the tables from the current state; publishes them when
    /// asked to, or when a peer's MAC changed.
    fn publish_if_needed(&mut self) {
        let r = std::mem::replace(&mut self.republish, Republish::No);
        if r == Republish::No {
            return;
        }
        let t = neighbours::build_tables(
            &self.topo,
            self.me,
            &self.routes,
            self.nic_info.mac,
            self.underlay_mtu,
            &self.neigh,
            &self.ports.configs(),
        );
        let macs = neighbours::peer_macs(&t);
        if r == Republish::Always || macs != self.last_macs {
            for (name, resolved, mac) in &macs {
                tracing::info!(peer = %name, resolved, mac = %config::MacAddr(*mac), "peer");
            }
            self.last_macs = macs;
            self.publisher.publish(t);
            self.published += 1;
            // Tables a worker no longer reads are freed now, not at the
            // next tick: each snapshot holds its FIB's top arrays (a
            // megabyte or more), and a burst of attaches and detaches
            // publishes dozens a second.
            self.publisher.reclaim();
        }
    }

    /// Answers one control socket request.
    fn handle(&mut self, req: Request) -> Reply {
        let body = match req {
            Request::Status {} => Ok(Body::Status(self.status())),
            Request::Ports {} => Ok(Body::Ports(self.port_infos())),
            Request::Attach(a) => self.attach(a).map(Body::Port),
            Request::Detach { id } => self.detach(&id).map(|found| Body::Detached { found }),
            Request::Check { id } => self.check(&id).map(Body::Port),
            Request::Gc { prefix, keep } => {
                Ok(Body::Collected(self.collect_garbage(&prefix, &keep)))
            }
        };
        Reply::new(body.unwrap_or_else(Body::Error))
    }

    fn status(&self) -> api::Status {
        let h = &self.topo.hosts[self.me];
        let networks: Vec<api::NetworkStatus> = self
            .topo
            .networks
            .iter()
            .enumerate()
            .map(|(net, n)| {
                let subnets: Vec<IpNet> = h.subnets_in(net).copied().collect();
                let mut gateways: Vec<IpAddr> = Vec::new();
                for s in &subnets {
                    if let Some(g) = config::first_host(s) {
                        if !gateways.iter().any(|x| x.is_ipv4() == g.is_ipv4()) {
                            gateways.push(g);
                        }
                    }
                }
                let mut reserved: Vec<IpAddr> = self
                    .ports
                    .iter()
                    .filter(|(_, s)| s.config.network == n.name)
                    .flat_map(|(_, s)| s.config.addresses.iter().map(IpNet::addr))
                    .collect();
                reserved.sort_unstable();
                reserved.dedup();
                api::NetworkStatus {
                    name: n.name.clone(),
                    vni: n.vni,
                    subnets,
                    gateways,
                    mtu: self.topo.network_mtu(net, self.me),
                    reserved,
                }
            })
            .collect();
        let default = &networks[0];
        api::Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            api: vec![api::VERSION],
            host: h.name.clone(),
            subnets: default.subnets.clone(),
            gateways: default.gateways.clone(),
            mtu: default.mtu,
            vni: default.vni,
            networks: networks.clone(),
            udp_port: self.topo.overlay.udp_port,
            ready: true,
            ports: self.ports.len(),
            max_ports: config::MAX_PORTS,
        }
    }

    /// Every port's counters, summed over the workers' queues of it.
    fn port_counters(&self) -> Vec<PortCounters> {
        let mut out = vec![PortCounters::default(); crate::worker::MAX_PORTS];
        for (_, h) in &self.owned.workers {
            let Ok(s) = h.stats.lock() else { continue };
            for (i, c) in out.iter_mut().enumerate() {
                c.rx_packets += s.rx.get(i).copied().unwrap_or(0);
                c.tx_packets += s.tx.get(i).copied().unwrap_or(0);
            }
        }
        out
    }

    fn port_infos(&self) -> Vec<api::PortInfo> {
        let counters = self.port_counters();
        self.ports
            .iter()
            .map(|(i, s)| {
                ports::info(
                    s,
                    s.config
                        .mtu
                        .unwrap_or_else(|| self.net_mtu(&s.config.network)),
                    counters[usize::from(i)],
                )
            })
            .collect()
    }

    /// Stops the workers and takes down what the start made.
    fn stop(mut self) {
        tracing::info!("stopping");
        // Once a successor is the main process, the service goes on.
        if let (Some(n), None) = (&self.notify, self.successor_pid) {
            n.send("STOPPING=1");
        }
        if let Some(m) = &self.metrics {
            m.set_ready(false);
        }
        let stats = self.collect(&[]);
        if let Some(path) = &self.opts.stats_file {
            let _ = stats::write_stats(path, &stats);
        }
        // Before the workers stop: a client must not attach to a router
        // that is going away.
        self.control = None;
        if let Some(s) = self.store.as_mut() {
            s.stop();
        }
        self.owned.shutdown();
        // Attached ports' programs detach now that no worker polls them;
        // their devices stay with their containers.
        self.ports = PortSet::default();
        if let Some(st) = &self.state {
            st.remove_if_empty();
        }
        tracing::info!(forwarded = stats.counters.forwarded, drops = ?stats.counters.drops, "stopped");
    }

    /// Hands one queue set to the workers and waits until every one of
    /// them polls it.
    fn give_to_workers(&self, index: u16, q: Queues) -> Result<(), api::ApiError> {
        let mut acks = Vec::new();
        let mut rx_only: Vec<Vec<Box<dyn Port + Send>>> =
            (0..self.n_workers).map(|_| Vec::new()).collect();
        for (k, p) in q.rx_only {
            rx_only[k].push(p);
        }
        for (((_, h), queue), rx_only) in self.owned.workers.iter().zip(q.per_worker).zip(rx_only) {
            let (done, ack) = std::sync::mpsc::channel();
            h.send(Command::Attach {
                index,
                queue,
                rx_only,
                done,
            })
            .map_err(|e| internal(format!("handing port {index} to a worker: {e}")))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.recv_timeout(WORKER_ACK_TIMEOUT)
                .map_err(|_| internal(format!("a worker did not take port {index}")))?;
        }
        Ok(())
    }

    /// Takes port `index`'s queues back from every worker (the tables must
    /// no longer send to it); returns what they counted and the queues.
    fn take_from_workers(&self, index: u16) -> (u64, u64, Vec<Box<dyn Port + Send>>) {
        let mut acks = Vec::new();
        for (_, h) in &self.owned.workers {
            let (done, ack) = std::sync::mpsc::channel();
            if h.send(Command::Detach { index, done }).is_ok() {
                acks.push(ack);
            }
        }
        let (mut rx, mut tx, mut queues) = (0, 0, Vec::new());
        for ack in acks {
            match ack.recv_timeout(WORKER_ACK_TIMEOUT) {
                Ok(d) => {
                    rx += d.rx;
                    tx += d.tx;
                    queues.extend(d.queues);
                }
                Err(_) => tracing::error!(port = index, "a worker did not give a port back"),
            }
        }
        (rx, tx, queues)
    }
}

fn internal(message: String) -> api::ApiError {
    api::ApiError {
        code: api::ErrorCode::Internal,
        message,
    }
}

/// Opens the uplink's queues: kernel UDP sockets, or our XDP program and
/// an AF_XDP socket on every NIC queue.
fn open_uplink(
    topo: &Topology,
    me: usize,
    nic: &str,
    nic_info: &LinkInfo,
    n_workers: usize,
    queues: usize,
    xsk_cfg: &AfXdpConfig,
) -> Result<Queues> {
    let host = &topo.hosts[me];
    let mut q = Queues::empty(n_workers);
    if host.uplink_io == UplinkIo::Udp {
        // Kernel UDP sockets: no XDP program, the kernel keeps everything
        // that is not VXLAN to our address and port.
        let local = std::net::SocketAddr::new(host.underlay, topo.overlay.udp_port);
        // Trains become super-packets only where a container port takes
        // them whole; AF_XDP ports and transit would just cut them again.
        let udp_cfg = UdpConfig {
            coalesce: host.ports.iter().any(|p| p.offload),
            ..UdpConfig::default()
        };
        let mut passable = Vec::with_capacity(n_workers);
        for (k, slot) in q.per_worker.iter_mut().enumerate() {
            let port = UdpPort::open(nic, local, nic_info.mac, &udp_cfg)
                .with_context(|| format!("UDP uplink socket {k} on {local}"))?;
            passable.push(port.dup_fds()?);
            tracing::info!(dev = %nic, %local, worker = k, gso_segments = port.max_gso_segments(), gro = port.gro(), coalesce = udp_cfg.coalesce, tx_ports = ?port.tx_ports(), "UDP uplink socket bound");
            *slot = Some(Box::new(port));
        }
        q.passable = setup::Passable::Fds(passable);
        return Ok(q);
    }
    let mut prog =
        XdpProgram::attach(nic, &[host.underlay], topo.overlay.udp_port).with_context(|| {
            format!("attaching the XDP program to {nic} (needs root and a kernel with XDP)")
        })?;
    tracing::info!(dev = %nic, mode = %prog.mode(), "uplink XDP program attached");
    // Every rx queue gets a socket: our XDP program redirects to the socket
    // of the queue a frame arrived on, and a queue without one hands VXLAN
    // to the kernel, which has no listener for it. Queues beyond the worker
    // count are served as receive-only queues, round robin.
    let mut passable = Vec::with_capacity(queues.max(n_workers));
    for k in n_workers..queues {
        let port = AfXdpPort::open(nic, k as u32, xsk_cfg)
            .with_context(|| format!("AF_XDP socket on {nic} queue {k}"))?;
        prog.register_socket(k as u32, port.fd())
            .with_context(|| format!("registering the socket of {nic} queue {k}"))?;
        tracing::info!(dev = %nic, queue = k, worker = k % n_workers, bind = %port.bind_mode(), "uplink receive queue bound");
        passable.push(setup::XskQueue::of(&port, k % n_workers, true)?);
        q.rx_only.push((k % n_workers, Box::new(port)));
    }
    for (k, slot) in q.per_worker.iter_mut().enumerate() {
        let port = AfXdpPort::open(nic, k as u32, xsk_cfg)
            .with_context(|| format!("AF_XDP socket on {nic} queue {k}"))?;
        prog.register_socket(k as u32, port.fd())
            .with_context(|| format!("registering the socket of {nic} queue {k}"))?;
        tracing::info!(dev = %nic, queue = k, bind = %port.bind_mode(), "uplink socket bound");
        passable.push(setup::XskQueue::of(&port, k, false)?);
        *slot = Some(Box::new(port));
    }
    q.passable = setup::Passable::Xsk(passable);
    q.program = Some(prog);
    Ok(q)
}

/// Takes the uplink's queues from the old router's descriptors: UDP
/// sockets, or the XDP program and AF_XDP sockets, which this router polls
/// only once the old one has let go of them (returned apart, empty for
/// UDP).
fn adopt_uplink(
    topo: &Topology,
    me: usize,
    nic: &str,
    nic_info: &LinkInfo,
    n_workers: usize,
    t: &mut handover::Takeover,
) -> Result<(Queues, Vec<handover::PendingXsk>)> {
    let host = &topo.hosts[me];
    let local = std::net::SocketAddr::new(host.underlay, topo.overlay.udp_port);
    if host.uplink_io == UplinkIo::AfXdp {
        let (prog, pending) = t.xsk_uplink(nic, local)?;
        tracing::info!(dev = %nic, mode = %prog.mode(), sockets = pending.len(), "uplink XDP program taken over; its AF_XDP sockets follow once the old router lets go");
        let mut q = Queues::empty(n_workers);
        q.program = Some(prog);
        return Ok((q, pending));
    }
    let udp_cfg = UdpConfig {
        coalesce: host.ports.iter().any(|p| p.offload),
        ..UdpConfig::default()
    };
    let mut q = Queues::empty(n_workers);
    let mut passable = Vec::with_capacity(n_workers);
    for (k, slot) in q.per_worker.iter_mut().enumerate() {
        let port = UdpPort::adopt(nic, local, nic_info.mac, &udp_cfg, t.uplink(local, k)?)
            .with_context(|| format!("taking over UDP uplink queue {k} on {local}"))?;
        passable.push(port.dup_fds()?);
        tracing::info!(dev = %nic, %local, worker = k, tx_ports = ?port.tx_ports(), "UDP uplink socket taken over");
        *slot = Some(Box::new(port));
    }
    q.passable = setup::Passable::Fds(passable);
    Ok((q, Vec::new()))
}

/// Routes over the links that are up (all of them without liveness). Their
/// loop-free alternates follow from [`alternates::AlternatesThread`].
fn compute_routes(
    topo: &Topology,
    me: usize,
    liveness: Option<&Liveness>,
) -> Result<RouteSet, route::NegativeCycle> {
    match liveness {
        Some(l) => route::compute(&l.live_topology(topo), me),
        None => route::compute(topo, me),
    }
}

/// The wall clock in ns: the base of our liveness reports' sequence
/// numbers, so that they grow across restarts.
fn wall_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}
