//! `vxrouter run`: the control thread of a live router.
//!
//! Start-up: load the topology, create or attach the container ports, attach
//! our XDP programs and open one AF_XDP socket or TUN queue per worker and
//! port, resolve the peers' underlay MACs through the kernel's neighbour
//! table, compile and publish the forwarding tables, start the pinned
//! workers. A start whose overlay MTU cannot fit the uplink NIC's MTU once
//! encapsulated is refused before anything is made. Then it watches:
//! neighbour events (republish when a peer's MAC appears or changes), the
//! uplink NIC's MTU (republish: packets that no longer fit get ICMP errors
//! naming the size that does), SIGHUP (reload; a bad file keeps the running
//! tables), SIGINT/SIGTERM (stop the workers, detach XDP, remove what we
//! created), and every second it retires old tables, retries unresolved
//! neighbours, writes the stats file and hands the same counters to the
//! metrics endpoint ([`crate::metrics`]).
//!
//! Invariants: workers only ever see whole, published tables; everything
//! created is owned by a guard whose Drop undoes it, so every exit path
//! (error, signal) leaves the host as it was.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;

use crate::config::{self, PortKind as ConfigPortKind, Topology, UplinkIo};
use crate::dataplane::{tables, CounterSummary, Counters, Tables};
use crate::fib::FibPublisher;
use crate::host::link::{link_info, LinkChange, LinkWatch};
use crate::host::neigh::NeighbourTable;
use crate::host::netns::{self, CreatedDevice};
use crate::metrics::MetricsServer;
use crate::port::afpacket::PacketPort;
use crate::port::afxdp::{AfXdpConfig, AfXdpPort};
use crate::port::tun::TunPort;
use crate::port::udp::{UdpConfig, UdpPort};
use crate::port::xdp::{XdpKind, XdpProgram};
use crate::port::Port;
use crate::route::liveness::{HelloKeys, Liveness};
use crate::route::{self, RouteSet};
use crate::worker::{self, WorkerHandle, WorkerStats};

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
}

/// Stats as written to the stats file.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    pub host: String,
    pub workers: usize,
    pub ports: BTreeMap<String, PortCounts>,
    #[serde(flatten)]
    pub counters: CounterSummary,
    pub io_errors: u64,
    pub tables_published: u64,
    pub unresolved_peers: Vec<String>,
    pub reloads: ReloadStats,
    /// Neighbour liveness, when on (`overlay.liveness_interval_ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<LivenessStats>,
    /// The metrics endpoint's connections and responses, when it serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_server: Option<crate::metrics::HttpStats>,
}

/// Neighbour liveness as the stats file shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LivenessStats {
    /// Every host linked to this one: whether it is up.
    pub neighbours: BTreeMap<String, bool>,
    /// The neighbours that are down (their links are out of the routes).
    pub down: Vec<String>,
    /// Every link out of the routes, ours and those other hosts report
    /// ("h1-h3").
    pub links_down: Vec<String>,
    pub hellos_sent: u64,
    pub hello_send_errors: u64,
    pub hellos_received: u64,
    /// Datagrams on the liveness port that were no hello of ours, a hello
    /// for another VNI, or one from an address that is no neighbour.
    pub hellos_malformed: u64,
    pub hellos_other_vni: u64,
    pub hellos_not_neighbour: u64,
    /// Reports that did not fit a hello (more hosts than one datagram holds).
    pub reports_left_out: u64,
    /// Reports ignored: their sequence number is over 10 minutes ahead of
    /// our clock (a forged one, or a host whose clock is off).
    pub reports_ahead: u64,
    /// Reports about this host that it did not make (forged, or from its
    /// run before a restart with a later clock), refuted by sending its
    /// own above them.
    pub reports_refuted: u64,
    /// With a key file: the key id our hellos are signed with, and every
    /// key id we take (so that a rotation step can be checked per host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hello_key_active: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hello_keys: Vec<u32>,
    /// Hellos ignored with a key file: without a MAC, with a key id we do
    /// not hold, with a MAC that does not match, with a counter not above
    /// the sender's last (a replay), or further than 10 minutes from our
    /// clock (an old replay, or a clock that is off).
    pub hellos_unauthenticated: u64,
    pub hellos_unknown_key: u64,
    pub hellos_bad_mac: u64,
    pub hellos_replayed: u64,
    pub hellos_clock_skew: u64,
    /// Hellos with a MAC while we have no key file (the hosts' settings
    /// differ).
    pub hellos_unexpected_auth: u64,
}

impl LivenessStats {
    fn of(l: &Liveness) -> LivenessStats {
        let c = l.counts;
        LivenessStats {
            neighbours: l.states().into_iter().collect(),
            down: l.down(),
            links_down: l.link_names_down(),
            hellos_sent: c.sent,
            hello_send_errors: c.send_errors,
            hellos_received: c.received,
            hellos_malformed: c.malformed,
            hellos_other_vni: c.other_vni,
            hellos_not_neighbour: c.not_neighbour,
            reports_left_out: c.reports_left_out,
            reports_ahead: c.reports_ahead,
            reports_refuted: c.reports_refuted,
            hello_key_active: l.keys().map(|k| k.active_id()),
            hello_keys: l.keys().map(|k| k.ids()).unwrap_or_default(),
            hellos_unauthenticated: c.unauthenticated,
            hellos_unknown_key: c.unknown_key,
            hellos_bad_mac: c.bad_mac,
            hellos_replayed: c.replayed,
            hellos_clock_skew: c.clock_skew,
            hellos_unexpected_auth: c.unexpected_auth,
        }
    }
}

/// SIGHUP reloads since start.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadStats {
    /// Reloads that took effect.
    pub accepted: u64,
    /// Reloads refused (a bad file, or a change that needs a restart): the
    /// running configuration stayed.
    pub rejected: u64,
    /// Whether the last reload was accepted (true before any).
    pub last_ok: bool,
}

impl Default for ReloadStats {
    fn default() -> Self {
        ReloadStats {
            accepted: 0,
            rejected: 0,
            last_ok: true,
        }
    }
}

impl ReloadStats {
    fn count(&mut self, ok: bool) {
        if ok {
            self.accepted += 1;
        } else {
            self.rejected += 1;
        }
        self.last_ok = ok;
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PortCounts {
    pub rx: u64,
    pub tx: u64,
    /// The port's own I/O counters summed over its queues (AF_XDP ring and
    /// kernel drops such as `xsk_rx_ring_full`, kicks, TUN write errors):
    /// what is lost before the pipeline sees a frame.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub io: BTreeMap<&'static str, u64>,
}

/// A derived, stable MAC for a veth container without a configured one:
/// the router must know it to address delivered frames.
fn container_mac(vtep: [u8; 6], index: usize) -> [u8; 6] {
    [0x02, 0x43, vtep[3], vtep[4], vtep[5], index as u8]
}

/// The parts of this host's entry that need a restart when they change:
/// everything the devices, sockets and workers were made with at start
/// (a port's effective MTU, its gateways, offloads and queue length are
/// set on the devices then).
fn structure_of(topo: &Topology, host: usize) -> String {
    let h = &topo.hosts[host];
    let ports: Vec<_> = h
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                &p.name,
                p.kind,
                &p.netns,
                &p.addresses,
                p.mac,
                topo.port_mtu(host, i),
                &p.gateways,
                p.offload,
                p.queue_len,
            )
        })
        .collect();
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{}|{}|{:?}",
        h.nic,
        h.uplink_io,
        h.underlay,
        h.workers,
        ports,
        h.vtep_mac,
        topo.overlay.vni,
        topo.overlay.udp_port,
        topo.overlay_mtu(host),
        topo.overlay.liveness,
    )
}

/// Fills in what the control plane decides or learns for the topology: the
/// MACs of veth containers the file gives none for (derived where the
/// router makes the veth, read from the kernel in `learned` where it
/// attaches to an existing one).
fn effective(mut topo: Topology, host: usize, learned: &BTreeMap<String, [u8; 6]>) -> Topology {
    let vtep = topo.hosts[host].vtep_mac.0;
    for (i, p) in topo.hosts[host].ports.iter_mut().enumerate() {
        if p.kind == ConfigPortKind::Veth && p.mac.is_none() {
            p.mac = match p.netns {
                Some(_) => Some(container_mac(vtep, i + 1)),
                None => learned.get(&p.name).copied(),
            }
            .map(config::MacAddr);
        }
    }
    topo
}

/// The container-end MACs of the existing veths this host attaches to
/// without a configured `mac`: delivered frames must carry the address the
/// container accepts, also before it has spoken.
fn learn_container_macs(host: &config::Host) -> Result<BTreeMap<String, [u8; 6]>> {
    let mut learned = BTreeMap::new();
    for p in &host.ports {
        if p.kind != ConfigPortKind::Veth || p.mac.is_some() || p.netns.is_some() {
            continue;
        }
        let mac = crate::host::link::veth_peer_mac(&p.name).with_context(|| {
            format!(
                "veth port {} has no `mac` and the MAC of its container end cannot be read; set `mac`",
                p.name
            )
        })?;
        tracing::info!(port = %p.name, mac = %config::MacAddr(mac), "container MAC read from the veth's other end");
        learned.insert(p.name.clone(), mac);
    }
    Ok(learned)
}

/// Underlay MACs of the peers a route set uses, as the kernel knows them.
struct Neighbours {
    table: NeighbourTable,
    nic: String,
    /// Peer underlay address -> the address whose MAC we need (itself, or
    /// the underlay gateway toward it).
    via: BTreeMap<IpAddr, IpAddr>,
    /// The uplink sends through kernel sockets, which resolve the underlay
    /// next hop themselves: every peer counts as resolved, and the outer
    /// MACs in the templates are never put on the wire.
    kernel_resolves: bool,
}

impl Neighbours {
    /// The peers whose MACs we need: every next hop of `routes` and, with
    /// `linked` (liveness on), every host linked to `me`: a next hop as soon
    /// as liveness moves a route to it, so its MAC is known before.
    fn learn_peers(&mut self, topo: &Topology, me: usize, routes: &RouteSet, linked: bool) {
        self.via.clear();
        if self.kernel_resolves {
            return;
        }
        let linked = topo.links.iter().filter(|_| linked).filter_map(|l| {
            let (a, b) = (topo.host_index(&l.a)?, topo.host_index(&l.b)?);
            match (a == me, b == me) {
                (true, false) => Some(b),
                (false, true) => Some(a),
                _ => None,
            }
        });
        let hops = routes
            .routes
            .iter()
            .flat_map(|r| r.next_hops.iter().map(|nh| nh.host));
        for host in hops.chain(linked) {
            let peer = topo.hosts[host].underlay;
            if topo.hosts[host].underlay_mac.is_some() || self.via.contains_key(&peer) {
                continue;
            }
            let via = match self.table.next_hop_for(peer) {
                Ok(Some(n)) => n.addr,
                Ok(None) => {
                    tracing::warn!(%peer, "no underlay route to peer");
                    peer
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "route lookup failed");
                    peer
                }
            };
            self.via.insert(peer, via);
        }
    }

    fn lookup(&self, peer: IpAddr) -> Option<[u8; 6]> {
        if self.kernel_resolves {
            return Some([0; 6]);
        }
        self.table.lookup(*self.via.get(&peer).unwrap_or(&peer))
    }

    /// Asks the kernel to resolve every peer still missing.
    fn resolve_missing(&mut self) -> Vec<IpAddr> {
        let missing: Vec<(IpAddr, IpAddr)> = self
            .via
            .iter()
            .filter(|(_, via)| self.table.lookup(**via).is_none())
            .map(|(p, v)| (*p, *v))
            .collect();
        for (_, via) in &missing {
            if let Err(e) = self.table.resolve(*via, &self.nic) {
                tracing::debug!(%via, error = %e, "neighbour resolution request failed");
            }
        }
        missing.into_iter().map(|(p, _)| p).collect()
    }
}

fn build_tables(
    topo: &Topology,
    host: usize,
    routes: &RouteSet,
    nic_mac: [u8; 6],
    mtu: u16,
    neigh: &Neighbours,
) -> Tables {
    let lookup = |ip: IpAddr| neigh.lookup(ip);
    let env = tables::HostEnv {
        nic_mac,
        underlay_mtu: mtu,
        neighbour: &lookup,
    };
    tables::build(topo, host, routes, &env)
}

fn peer_macs(t: &Tables) -> Vec<(String, bool, [u8; 6])> {
    t.peers
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.resolved,
                [
                    p.template[0],
                    p.template[1],
                    p.template[2],
                    p.template[3],
                    p.template[4],
                    p.template[5],
                ],
            )
        })
        .collect()
}

/// Everything `run` creates, dropped in reverse order of need: workers
/// first (they hold sockets), then sockets, then XDP programs, then devices.
struct Live {
    stop: Arc<AtomicBool>,
    workers: Vec<(JoinHandle<std::io::Result<()>>, WorkerHandle)>,
    programs: Vec<XdpProgram>,
    devices: Vec<CreatedDevice>,
}

impl Live {
    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for (h, _) in self.workers.drain(..) {
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

impl Drop for Live {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn load_topology(path: &Path, host: &str) -> Result<(Topology, usize)> {
    let topo = config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(me) = topo.host_index(host) else {
        let names: Vec<&str> = topo.hosts.iter().map(|h| h.name.as_str()).collect();
        bail!(
            "no host {host:?} in {} (hosts: {})",
            path.display(),
            names.join(", ")
        );
    };
    Ok((topo, me))
}

/// Runs the router until SIGINT or SIGTERM.
pub fn run(opts: &RunOptions) -> Result<()> {
    // Signals set flags, from the very start: a SIGTERM or SIGINT during
    // the set-up (devices, namespaces, XDP programs) must not kill the
    // process before the guards below can take down what it made; the
    // loop at the end sees the flag and stops in order. A SIGHUP then
    // reloads once the router runs.
    let term = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, term.clone()).context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .context("installing signal handlers")?;
    let (topo, mut me) = load_topology(&opts.config, &opts.host)?;
    let learned_macs = learn_container_macs(&topo.hosts[me])?;
    let topo = effective(topo, me, &learned_macs);
    // Before any device is made: a metrics address we cannot listen on
    // fails the start with nothing to undo.
    let metrics = match opts.metrics {
        Some(addr) => {
            let m = MetricsServer::start(addr)?;
            tracing::info!(addr = %m.local_addr(), "serving metrics at /metrics");
            Some(m)
        }
        None => None,
    };
    let host = topo.hosts[me].clone();
    // Liveness: its socket is bound before any device is made, too.
    let epoch = Instant::now();
    let hello_keys = match topo.overlay.liveness.as_ref() {
        Some(cfg) => load_hello_keys(cfg)?,
        None => None,
    };
    let mut liveness = topo
        .overlay
        .liveness
        .clone()
        .map(|cfg| Liveness::new(&topo, me, cfg, 0, wall_nanos()));
    let hello_sock = match &liveness {
        Some(l) => {
            let addr = std::net::SocketAddr::new(host.underlay, l.port());
            let sock = std::net::UdpSocket::bind(addr)
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
                .with_context(|| format!("binding the liveness socket on {addr}"))?;
            tracing::info!(%addr, neighbours = ?l.states().iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), "liveness hellos on");
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
    let mut nic_watch = LinkWatch::open(&nic)
        .with_context(|| format!("watching the MTU of underlay device {nic}"))?;
    let mut underlay_mtu = nic_watch.mtu();
    check_mtu_fits(&topo, me, &nic, underlay_mtu, &opts.config)?;
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
    let cores: Vec<Option<usize>> = (0..n_workers)
        .map(|k| host.workers.get(k).copied())
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let mut live = Live {
        stop: stop.clone(),
        workers: Vec::new(),
        programs: Vec::new(),
        devices: Vec::new(),
    };
    let overlay_mtu = topo.overlay_mtu(me);

    // Port slots per worker: index 0 the uplink, then container ports.
    let n_ports = 1 + host.ports.len();
    let mut slots: Vec<Vec<Option<Box<dyn Port + Send>>>> = (0..n_workers)
        .map(|_| (0..n_ports).map(|_| None).collect())
        .collect();
    let xsk_cfg = AfXdpConfig::default();

    let mut extra: Vec<Vec<(u16, Box<dyn Port + Send>)>> =
        (0..n_workers).map(|_| Vec::new()).collect();
    if udp_uplink {
        // Kernel UDP sockets: no XDP program, the kernel keeps everything
        // that is not VXLAN to our address and port.
        let local = std::net::SocketAddr::new(host.underlay, topo.overlay.udp_port);
        // Trains become super-packets only where a container port takes
        // them whole; AF_XDP ports and transit would just cut them again.
        let udp_cfg = UdpConfig {
            coalesce: host.ports.iter().any(|p| p.offload),
            ..UdpConfig::default()
        };
        for (k, worker_slots) in slots.iter_mut().enumerate() {
            let port = UdpPort::open(&nic, local, nic_info.mac, &udp_cfg)
                .with_context(|| format!("UDP uplink socket {k} on {local}"))?;
            tracing::info!(dev = %nic, %local, worker = k, gso_segments = port.max_gso_segments(), gro = port.gro(), coalesce = udp_cfg.coalesce, tx_ports = ?port.tx_ports(), "UDP uplink socket bound");
            worker_slots[0] = Some(Box::new(port));
        }
    } else {
        // Uplink: our XDP program, then one socket per worker queue.
        let mut uplink_prog = XdpProgram::attach(
            &nic,
            XdpKind::Uplink,
            &[host.underlay],
            topo.overlay.udp_port,
        )
        .with_context(|| {
            format!("attaching the XDP program to {nic} (needs root and a kernel with XDP)")
        })?;
        tracing::info!(dev = %nic, mode = %uplink_prog.mode(), "uplink XDP program attached");
        // Every rx queue gets a socket: our XDP program redirects to the socket
        // of the queue a frame arrived on, and a queue without one hands VXLAN
        // to the kernel, which has no listener for it. Queues beyond the worker
        // count are served as extra receive queues, round robin.
        for q in n_workers..queues {
            let port = AfXdpPort::open(&nic, q as u32, &xsk_cfg)
                .with_context(|| format!("AF_XDP socket on {nic} queue {q}"))?;
            uplink_prog
                .register_socket(q as u32, port.fd())
                .with_context(|| format!("registering the socket of {nic} queue {q}"))?;
            tracing::info!(dev = %nic, queue = q, worker = q % n_workers, bind = %port.bind_mode(), "uplink receive queue bound");
            extra[q % n_workers].push((0, Box::new(port)));
        }
        for (k, worker_slots) in slots.iter_mut().enumerate() {
            let port = AfXdpPort::open(&nic, k as u32, &xsk_cfg)
                .with_context(|| format!("AF_XDP socket on {nic} queue {k}"))?;
            uplink_prog
                .register_socket(k as u32, port.fd())
                .with_context(|| format!("registering the socket of {nic} queue {k}"))?;
            tracing::info!(dev = %nic, queue = k, bind = %port.bind_mode(), "uplink socket bound");
            worker_slots[0] = Some(Box::new(port));
        }
        live.programs.push(uplink_prog);
    }

    // Container ports.
    for (i, p) in host.ports.iter().enumerate() {
        let idx = i + 1;
        let mtu = p.mtu.unwrap_or(overlay_mtu);
        match p.kind {
            ConfigPortKind::Tun => {
                let tuns = match &p.netns {
                    Some(ns) => {
                        let (dev, tuns) =
                            netns::setup_tun_netns(&p.name, ns, &p.addresses, mtu, |name| {
                                TunPort::open_with(name, n_workers, mtu, p.offload, p.queue_len)
                            })
                            .with_context(|| {
                                format!("creating TUN port {} in netns {ns}", p.name)
                            })?;
                        live.devices.push(dev);
                        cap_container_gso(ns, mtu);
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
                for (k, t) in tuns.into_iter().enumerate() {
                    if let Some(w) = slots.get_mut(k) {
                        w[idx] = Some(Box::new(t));
                    }
                }
            }
            ConfigPortKind::Veth => {
                if let Some(ns) = &p.netns {
                    let dev = netns::setup_veth_with(
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
                    live.devices.push(dev);
                    if p.offload {
                        cap_container_gso(ns, mtu);
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
                if p.offload {
                    // The host kernel sees every frame an AF_PACKET socket
                    // sees: with addresses on the host end it would answer
                    // ARP for them with the device's own MAC, beside the
                    // router's answers.
                    let held = crate::host::link::device_addresses(&p.name)
                        .with_context(|| format!("veth port {}", p.name))?;
                    if !held.is_empty() {
                        bail!(
                            "veth port {} has offload = true and its host end holds addresses ({}): the host kernel would answer ARP for them beside the router; remove them from {} or use offload = false",
                            p.name,
                            held.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "),
                            p.name
                        );
                    }
                    // AF_PACKET with virtio-net headers: one socket per
                    // worker, in one fanout group when there are several.
                    let container_mac = p.mac.map(|m| m.0).unwrap_or([0; 6]);
                    let gw_mac = tables::router_mac(host.vtep_mac.0, idx);
                    let fanout = (n_workers > 1)
                        .then(|| crate::port::sys::ifindex(&p.name))
                        .transpose()
                        .with_context(|| format!("veth port {}", p.name))?
                        .map(|i| i as u16);
                    for w in slots.iter_mut() {
                        let port = PacketPort::open(&p.name, mtu, container_mac, gw_mac, fanout)
                            .with_context(|| format!("AF_PACKET socket on {}", p.name))?;
                        w[idx] = Some(Box::new(port));
                    }
                    tracing::info!(port = %p.name, workers = n_workers, netns = ?p.netns, "veth port attached (AF_PACKET, virtio-net header offloads)");
                    continue;
                }
                let info = link_info(&p.name)?;
                let mut prog = XdpProgram::attach(&p.name, XdpKind::Container, &[], 0)
                    .with_context(|| format!("attaching the XDP program to {}", p.name))?;
                let veth_queues = (info.num_rx_queues.max(1) as usize).min(n_workers);
                for (k, w) in slots.iter_mut().enumerate().take(veth_queues) {
                    let port = AfXdpPort::open(&p.name, k as u32, &xsk_cfg)
                        .with_context(|| format!("AF_XDP socket on {} queue {k}", p.name))?;
                    prog.register_socket(k as u32, port.fd())?;
                    w[idx] = Some(Box::new(port));
                }
                if veth_queues < n_workers {
                    tracing::warn!(port = %p.name, queues = veth_queues, "veth has fewer queues than workers: frames for it from other workers drop as port_down");
                }
                for q in n_workers..info.num_rx_queues as usize {
                    let port = AfXdpPort::open(&p.name, q as u32, &xsk_cfg)
                        .with_context(|| format!("AF_XDP socket on {} queue {q}", p.name))?;
                    prog.register_socket(q as u32, port.fd())?;
                    extra[q % n_workers].push((idx as u16, Box::new(port)));
                }
                tracing::info!(port = %p.name, mode = %prog.mode(), queues = veth_queues, netns = ?p.netns, "veth port attached");
                live.programs.push(prog);
            }
        }
    }

    // Routes, neighbours, tables.
    let mut routes =
        compute_routes(&topo, me, liveness.as_ref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    for &u in &routes.unreachable {
        tracing::warn!(host = %topo.hosts[u].name, "unreachable: its prefixes are left out");
    }
    let mut neigh = Neighbours {
        table: NeighbourTable::open().context("opening the netlink neighbour socket")?,
        nic: nic.clone(),
        via: BTreeMap::new(),
        kernel_resolves: udp_uplink,
    };
    neigh.learn_peers(&topo, me, &routes, liveness.is_some());
    let missing_at_start = neigh.resolve_missing();
    if udp_uplink {
        warn_routes_off_nic(&topo, me, &routes, &mut neigh.table, &nic, nic_info.index);
    }
    let mut topo = topo;
    let t = build_tables(&topo, me, &routes, nic_info.mac, underlay_mtu, &neigh);
    let mut last_macs = peer_macs(&t);
    let port_names: Vec<String> = t.ports.iter().map(|p| p.name.clone()).collect();
    let (mut publisher, reader) = FibPublisher::new(t);
    let mut published = 1u64;

    for (k, (ports, extra)) in slots.into_iter().zip(extra).enumerate() {
        let handle = WorkerHandle {
            stats: Arc::new(Mutex::new(WorkerStats::default())),
            stop: stop.clone(),
        };
        let h = handle.clone();
        let r = reader.clone();
        let core = cores[k];
        let jh = std::thread::Builder::new()
            .name(format!("vxr-worker-{k}"))
            .spawn(move || worker::run(k, core, ports, extra, r, h))
            .context("spawning a worker thread")?;
        live.workers.push((jh, handle));
    }
    tracing::info!(host = %host.name, workers = n_workers, routes = routes.routes.len(), "router running");
    let mut reloads = ReloadStats::default();
    if let Some(m) = &metrics {
        let mut stats = collect(
            &host.name,
            &live,
            &port_names,
            published,
            &missing_at_start,
            &topo,
            &reloads,
        );
        stats.liveness = liveness.as_ref().map(LivenessStats::of);
        m.update(&stats);
    }

    let mut poll = Poll::new()?;
    let neigh_fd = neigh.table.fd();
    poll.registry()
        .register(&mut SourceFd(&neigh_fd), Token(0), Interest::READABLE)?;
    if let Some(sock) = &hello_sock {
        use std::os::fd::AsRawFd;
        poll.registry().register(
            &mut SourceFd(&sock.as_raw_fd()),
            Token(1),
            Interest::READABLE,
        )?;
    }
    poll.registry().register(
        &mut SourceFd(&nic_watch.fd()),
        LINK_TOKEN,
        Interest::READABLE,
    )?;
    // The start-up grace runs from here, not from before the devices were
    // made (attaching XDP to a real NIC can take seconds).
    liveness = topo.overlay.liveness.clone().map(|cfg| {
        Liveness::new(&topo, me, cfg, nanos_since(epoch), wall_nanos())
            .with_keys(hello_keys.clone())
    });
    let mut next_hello = 0u64;
    let mut events = Events::with_capacity(8);
    let mut last_tick = Instant::now();
    let mut last_log = Instant::now();
    let structure = structure_of(&topo, me);

    while !term.load(Ordering::Relaxed) {
        let mut wait = Duration::from_millis(200);
        if liveness.is_some() {
            wait = wait.min(Duration::from_nanos(
                next_hello.saturating_sub(nanos_since(epoch)),
            ));
        }
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                // Workers first, so the last table is dropped here, by the
                // publisher, not on a worker.
                live.shutdown();
                return Err(e.into());
            }
        }
        let mut rebuild = false;
        // A reload publishes what it built, even where the peers and route
        // shapes are the same (a renumbered subnet or peer address).
        let mut reloaded = false;
        if !events.is_empty() {
            match neigh.table.process_events() {
                Ok(changed) => rebuild |= changed,
                Err(e) => tracing::warn!(error = %e, "neighbour events"),
            }
        }
        if events.iter().any(|e| e.token() == LINK_TOKEN) {
            match nic_watch.process_events() {
                Ok(Some(LinkChange::Mtu { from, to })) => {
                    underlay_mtu = to;
                    log_mtu_change(&topo, me, &nic, from, to);
                    rebuild = true;
                    // Published even though no peer MAC changed.
                    reloaded = true;
                }
                Ok(Some(LinkChange::Gone)) => {
                    tracing::error!(dev = %nic, "the underlay device left this network namespace: nothing reaches the peers until it is back and the router restarted")
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(dev = %nic, error = %e, "link events"),
            }
        }
        if let (Some(l), Some(sock)) = (liveness.as_mut(), hello_sock.as_ref()) {
            let now = nanos_since(epoch);
            let before = l.down();
            let mut changed = receive_hellos(l, sock, now);
            if now >= next_hello {
                send_hellos(l, sock, now);
                next_hello = now + l.interval_nanos();
            }
            changed |= l.on_tick(now);
            if changed {
                let after = l.down();
                for n in after.iter().filter(|n| !before.contains(n)) {
                    tracing::warn!(neighbour = %n, "neighbour down: routes leave its link");
                }
                for n in before.iter().filter(|n| !after.contains(n)) {
                    tracing::info!(neighbour = %n, "neighbour up: routes take its link again");
                }
                tracing::info!(links_down = ?l.link_names_down(), "links out of the routes changed");
                match compute_routes(&topo, me, Some(l)) {
                    Ok(r) => {
                        routes = r;
                        rebuild = true;
                        // Published even if no peer MAC changed.
                        reloaded = true;
                    }
                    Err(e) => tracing::error!("routes after a liveness change: {e}"),
                }
            }
        }
        if hup.swap(false, Ordering::Relaxed) {
            // Cleared below once the new configuration is in place.
            let mut rejected = true;
            match load_topology(&opts.config, &opts.host) {
                Err(e) => {
                    tracing::error!("reload rejected, keeping the running configuration:\n{e:#}")
                }
                Ok((new, new_me)) => {
                    let new = effective(new, new_me, &learned_macs);
                    let new_keys = new
                        .overlay
                        .liveness
                        .as_ref()
                        .map_or(Ok(None), load_hello_keys);
                    if structure_of(&new, new_me) != structure {
                        tracing::error!("reload rejected: this host's nic, uplink_io, underlay, workers, ports (their names, kinds, namespaces, addresses, MACs, MTUs, gateways, offload or queue_len), the overlay MTU, VNI, UDP port or liveness settings changed; those need a restart");
                    } else if let Err(e) = &new_keys {
                        tracing::error!(
                            "reload rejected, keeping the running configuration: {e:#}"
                        );
                    } else {
                        // Read again on every reload: a key rotation is a
                        // change of the key file and a SIGHUP.
                        let keys = new_keys.ok().flatten();
                        let new_live =
                            liveness
                                .as_ref()
                                .zip(new.overlay.liveness.clone())
                                .map(|(l, cfg)| {
                                    l.reload(&new, new_me, cfg, nanos_since(epoch))
                                        .with_keys(keys)
                                });
                        match compute_routes(&new, new_me, new_live.as_ref()) {
                            Ok(r) => {
                                topo = new;
                                routes = r;
                                liveness = new_live;
                                // This host's place in the file may have
                                // moved (a host added above it).
                                // (The structure is the one compared.)
                                me = new_me;
                                reloaded = true;
                                rejected = false;
                                neigh.learn_peers(&topo, me, &routes, liveness.is_some());
                                neigh.resolve_missing();
                                rebuild = true;
                                tracing::info!(
                                    routes = routes.routes.len(),
                                    "configuration reloaded"
                                );
                            }
                            Err(e) => tracing::error!("reload rejected: {e}"),
                        }
                    }
                }
            }
            reloads.count(!rejected);
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            let missing = neigh.resolve_missing();
            if !missing.is_empty() {
                rebuild |= neigh.table.refresh().unwrap_or(false);
            }
            publisher.reclaim();
            let mut stats = collect(
                &host.name,
                &live,
                &port_names,
                published,
                &missing,
                &topo,
                &reloads,
            );
            stats.liveness = liveness.as_ref().map(LivenessStats::of);
            stats.metrics_server = metrics.as_ref().map(MetricsServer::http_stats);
            if let Some(m) = &metrics {
                m.update(&stats);
            }
            if let Some(path) = &opts.stats_file {
                if let Err(e) = write_stats(path, &stats) {
                    tracing::warn!(path = %path.display(), error = %e, "writing stats");
                }
            }
            if last_log.elapsed() >= opts.log_interval {
                last_log = Instant::now();
                tracing::info!(
                    forwarded = stats.counters.forwarded,
                    replied = stats.counters.replied,
                    drops = ?stats.counters.drops,
                    unresolved = ?stats.unresolved_peers,
                    "stats"
                );
            }
        }
        if rebuild {
            let t = build_tables(&topo, me, &routes, nic_info.mac, underlay_mtu, &neigh);
            let macs = peer_macs(&t);
            if reloaded || macs != last_macs {
                for (name, resolved, mac) in &macs {
                    tracing::info!(peer = %name, resolved, mac = %config::MacAddr(*mac), "peer");
                }
                last_macs = macs;
                publisher.publish(t);
                published += 1;
            }
        }
    }
    tracing::info!("stopping");
    let mut stats = collect(
        &host.name,
        &live,
        &port_names,
        published,
        &[],
        &topo,
        &reloads,
    );
    stats.liveness = liveness.as_ref().map(LivenessStats::of);
    if let Some(path) = &opts.stats_file {
        let _ = write_stats(path, &stats);
    }
    live.shutdown();
    drop(publisher);
    tracing::info!(forwarded = stats.counters.forwarded, drops = ?stats.counters.drops, "stopped");
    Ok(())
}

/// The poll token of the uplink NIC's link events.
const LINK_TOKEN: Token = Token(2);

/// What VXLAN adds over the host's underlay family, for messages.
fn overhead_text(underlay: IpAddr) -> &'static str {
    match underlay {
        IpAddr::V4(_) => "50 bytes over IPv4 (inner Ethernet 14, outer IPv4 20, UDP 8, VXLAN 8)",
        IpAddr::V6(_) => "70 bytes over IPv6 (inner Ethernet 14, outer IPv6 40, UDP 8, VXLAN 8)",
    }
}

/// Refuses a start whose overlay MTU cannot fit the uplink NIC's MTU once
/// encapsulated: every full-sized container packet toward a peer would be
/// refused.
fn check_mtu_fits(
    topo: &Topology,
    me: usize,
    nic: &str,
    nic_mtu: u16,
    config: &Path,
) -> Result<()> {
    let underlay = topo.hosts[me].underlay;
    let overlay_mtu = topo.overlay_mtu(me);
    let fit = tables::largest_overlay_mtu(nic_mtu, underlay);
    if overlay_mtu <= fit {
        return Ok(());
    }
    let which = if topo.overlay.mtu.is_some() {
        format!("overlay.mtu {overlay_mtu}")
    } else {
        format!("the default overlay MTU {overlay_mtu} (overlay.mtu is not set)")
    };
    let overhead = match underlay {
        IpAddr::V4(_) => config::OVERHEAD_V4,
        IpAddr::V6(_) => config::OVERHEAD_V6,
    };
    let need = u32::from(overlay_mtu) + u32::from(overhead);
    bail!(
        "{which} does not fit the underlay: {nic} has MTU {nic_mtu}, and VXLAN adds {}; \
         the largest overlay MTU that fits {nic} is {fit}. Set overlay.mtu to at most {fit} in {}, \
         or raise the MTU of {nic} to at least {need}",
        overhead_text(underlay),
        config.display(),
    )
}

/// Logs a change of the uplink NIC's MTU and what it means for traffic.
fn log_mtu_change(topo: &Topology, me: usize, nic: &str, from: u16, to: u16) {
    let underlay = topo.hosts[me].underlay;
    let overlay_mtu = topo.overlay_mtu(me);
    let fit = tables::largest_overlay_mtu(to, underlay);
    if fit >= overlay_mtu {
        tracing::info!(dev = %nic, from, to, overlay_mtu, largest_overlay_mtu = fit, "underlay MTU changed; the overlay MTU fits");
    } else {
        tracing::warn!(dev = %nic, from, to, overlay_mtu, largest_overlay_mtu = fit, "underlay MTU changed; the overlay MTU no longer fits: packets toward peers over {fit} bytes are dropped as underlay_too_big with an ICMP error naming {fit}");
        if underlay.is_ipv6() && fit < 1280 {
            tracing::warn!(dev = %nic, largest_overlay_mtu = fit, "below 1280 bytes, the IPv6 minimum MTU: IPv6 senders will not go lower, and their full-sized packets toward peers are lost");
        }
    }
}

/// With the UDP uplink the kernel routes VXLAN: warns when its route to a
/// peer leaves through another device than `nic`, whose MTU is the one the
/// pipeline checks.
fn warn_routes_off_nic(
    topo: &Topology,
    me: usize,
    routes: &RouteSet,
    table: &mut NeighbourTable,
    nic: &str,
    nic_index: u32,
) {
    let mut peers: Vec<usize> = routes
        .routes
        .iter()
        .flat_map(|r| r.next_hops.iter().map(|nh| nh.host))
        .filter(|&h| h != me)
        .collect();
    peers.sort_unstable();
    peers.dedup();
    for h in peers {
        let peer = topo.hosts[h].underlay;
        match table.next_hop_for(peer) {
            Ok(Some(hop)) if hop.ifindex != nic_index && hop.ifindex != 0 => {
                tracing::warn!(peer = %topo.hosts[h].name, %peer, dev = %nic, ifindex = hop.ifindex, "the kernel routes VXLAN to this peer through another device than nic: the MTU checked is nic's");
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%peer, error = %e, "route lookup failed"),
        }
    }
}

fn collect(
    host: &str,
    live: &Live,
    port_names: &[String],
    published: u64,
    missing: &[IpAddr],
    topo: &Topology,
    reloads: &ReloadStats,
) -> RunStats {
    let mut counters = Counters::default();
    let mut ports: BTreeMap<String, PortCounts> = port_names
        .iter()
        .map(|n| (n.clone(), PortCounts::default()))
        .collect();
    let mut io_errors = 0;
    for (_, h) in &live.workers {
        let Ok(s) = h.stats.lock() else { continue };
        counters.add(&s.counters);
        io_errors += s.io_errors;
        if let Some(e) = &s.last_error {
            tracing::debug!(error = %e, "worker I/O error");
        }
        for (i, name) in port_names.iter().enumerate() {
            let e = ports
                .get_mut(name)
                .expect("port names come from the same list");
            e.rx += s.rx.get(i).copied().unwrap_or(0);
            e.tx += s.tx.get(i).copied().unwrap_or(0);
            if let Some(c) = s.port_io.get(i) {
                for (k, v) in &c.0 {
                    *e.io.entry(k).or_insert(0) += v;
                }
            }
        }
    }
    let unresolved_peers = missing
        .iter()
        .map(|ip| {
            topo.hosts
                .iter()
                .find(|h| h.underlay == *ip)
                .map_or_else(|| ip.to_string(), |h| h.name.clone())
        })
        .collect();
    RunStats {
        host: host.to_owned(),
        workers: live.workers.len(),
        ports,
        counters: counters.summary(),
        io_errors,
        tables_published: published,
        unresolved_peers,
        reloads: reloads.clone(),
        liveness: None,
        metrics_server: None,
    }
}

/// Routes over the links that are up (all of them without liveness).
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

/// Takes every datagram waiting on the liveness socket. Returns whether a
/// neighbour went up or down.
fn receive_hellos(l: &mut Liveness, sock: &std::net::UdpSocket, now: u64) -> bool {
    let mut changed = false;
    // One byte more than a hello may have: a longer datagram arrives cut
    // to this and is refused as malformed, not read as a shorter one.
    let mut buf = [0u8; route::liveness::MAX_HELLO + 1];
    // Bounded: a flood on the port must not hold the control thread; the
    // next pass takes the rest.
    for _ in 0..64 {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => match l.on_datagram(now, from.ip(), &buf[..n]) {
                Ok(c) => changed |= c,
                Err(e) => tracing::debug!(%from, reason = ?e, "liveness datagram ignored"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => {
                tracing::debug!(error = %e, "liveness receive");
                break;
            }
        }
    }
    changed
}

/// One hello to every neighbour. A refused send (no route to it, a full
/// buffer) is counted; the neighbour then goes down on its own.
fn send_hellos(l: &mut Liveness, sock: &std::net::UdpSocket, now: u64) {
    let port = l.port();
    for (addr, bytes) in l.datagrams(now) {
        match sock.send_to(&bytes, std::net::SocketAddr::new(addr, port)) {
            Ok(_) => l.counts.sent += 1,
            Err(e) => {
                l.counts.send_errors += 1;
                tracing::debug!(%addr, error = %e, "liveness hello not sent");
            }
        }
    }
}

/// The hello keys of `cfg.key_file`, if it names one: a regular file that
/// group and others can neither read nor write, of at most 64 KiB, in the
/// format [`HelloKeys::parse`] reads. Errors name the file (and the line).
fn load_hello_keys(cfg: &config::LivenessConfig) -> Result<Option<HelloKeys>> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = &cfg.key_file else {
        return Ok(None);
    };
    let f = std::fs::File::open(path)
        .with_context(|| format!("liveness key file {}", path.display()))?;
    // Checked on the open file, so that what is read is what was checked.
    let meta = f
        .metadata()
        .with_context(|| format!("liveness key file {}", path.display()))?;
    if !meta.is_file() {
        bail!("liveness key file {}: not a regular file", path.display());
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "liveness key file {}: mode {mode:03o} lets group or others at the keys (chmod 600 it)",
            path.display()
        );
    }
    let mut bytes = Vec::new();
    f.take(64 * 1024 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("liveness key file {}", path.display()))?;
    if bytes.len() > 64 * 1024 {
        bail!("liveness key file {}: over 64 KiB", path.display());
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        anyhow::anyhow!(
            "liveness key file {}:{line}: not UTF-8 text",
            path.display()
        )
    })?;
    let keys = HelloKeys::parse(text)
        .map_err(|e| anyhow::anyhow!("liveness key file {}:{e}", path.display()))?;
    tracing::info!(path = %path.display(), active = keys.active_id(), keys = ?keys.ids(), "liveness hello keys");
    Ok(Some(keys))
}

fn write_stats(path: &Path, stats: &RunStats) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(stats).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

/// Segments per container super-packet: as many as one GSO send of the UDP
/// uplink carries (65507 bytes of datagrams, each VXLAN and inner Ethernet
/// plus one MTU-sized segment), at most 64. A super-packet then crosses as
/// one send, one GRO train and one write on the far side instead of two.
pub fn container_gso_segs(mtu: u16) -> u32 {
    (65507 / (u32::from(mtu) + 22)).clamp(1, 64)
}

/// Applies [`container_gso_segs`] to a container port the router made. A
/// kernel that refuses (older iproute2 or kernel) only costs speed: logged.
fn cap_container_gso(netns: &str, mtu: u16) {
    let segs = container_gso_segs(mtu);
    match netns::set_container_gso_max_segs(netns, segs) {
        Ok(()) => tracing::debug!(netns, segs, "container gso_max_segs set"),
        Err(e) => {
            tracing::warn!(netns, error = %e, "could not cap the container's super-packets (gso_max_segs)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn cfg(path: &Path) -> config::LivenessConfig {
        config::LivenessConfig {
            interval_ms: 100,
            dead_after: 3,
            port: 4799,
            key_file: Some(path.to_owned()),
        }
    }

    #[test]
    fn hello_keys_come_from_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("liveness.key");
        let key = "000102030405060708090a0b0c0d0e0f";
        std::fs::write(&path, format!("1 {key}\n2 {key}{key} active\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_hello_keys(&cfg(&path)).unwrap_err().to_string();
        assert!(e.contains("mode 644 lets group or others"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let k = load_hello_keys(&cfg(&path)).unwrap().unwrap();
        assert_eq!((k.active_id(), k.ids()), (2, vec![1, 2]));
        // Errors name the file, the line and the column.
        std::fs::write(&path, format!("1 {key}\n2 {key}0\n")).unwrap();
        let e = load_hello_keys(&cfg(&path)).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("liveness key file {}:2:3: key 2", path.display())),
            "{e}"
        );
        std::fs::write(&path, b"1 \xff\n").unwrap();
        let e = load_hello_keys(&cfg(&path)).unwrap_err().to_string();
        assert!(e.ends_with(":1: not UTF-8 text"), "{e}");
        let e = format!("{:#}", load_hello_keys(&cfg(dir.path())).unwrap_err());
        assert!(e.contains("not a regular file"), "{e}");
        let e = format!(
            "{:#}",
            load_hello_keys(&cfg(&dir.path().join("none"))).unwrap_err()
        );
        assert!(e.contains("No such file"), "{e}");
        let off = config::LivenessConfig {
            key_file: None,
            ..cfg(&path)
        };
        assert!(load_hello_keys(&off).unwrap().is_none());
    }

    fn topo(underlay: &str, mtu: Option<u16>) -> Topology {
        let mtu = mtu.map_or(String::new(), |m| format!("mtu = {m}\n"));
        let other = if underlay.contains(':') {
            "2001:2::2"
        } else {
            "198.18.0.2"
        };
        let text = format!(
            "[overlay]\nvni = 42\n{mtu}\n[[hosts]]\nname = \"h1\"\nunderlay = \"{underlay}\"\n\
             subnets = [\"198.19.1.0/24\"]\nnic = \"eth0\"\n\n[[hosts]]\nname = \"h2\"\n\
             underlay = \"{other}\"\nsubnets = [\"198.19.2.0/24\"]\n\n\
             [[links]]\na = \"h1\"\nb = \"h2\"\ncost = 10\n"
        );
        config::parse(&text, "t.toml").expect("topology")
    }

    #[test]
    fn overlay_mtu_must_fit_the_nic() {
        let cfg = Path::new("t.toml");
        // Exactly what fits starts.
        check_mtu_fits(&topo("198.18.0.1", Some(1450)), 0, "eth0", 1500, cfg).expect("fits");
        check_mtu_fits(&topo("2001:2::1", None), 0, "eth0", 1500, cfg).expect("default fits");
        let e = check_mtu_fits(&topo("198.18.0.1", Some(1451)), 0, "eth0", 1500, cfg)
            .expect_err("one byte over")
            .to_string();
        for want in [
            "overlay.mtu 1451 does not fit the underlay: eth0 has MTU 1500",
            "50 bytes over IPv4",
            "the largest overlay MTU that fits eth0 is 1450",
            "at most 1450 in t.toml",
            "raise the MTU of eth0 to at least 1501",
        ] {
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
        let e = check_mtu_fits(&topo("2001:2::1", None), 0, "nic9", 1280, cfg)
            .expect_err("default over a small NIC")
            .to_string();
        for want in [
            "the default overlay MTU 1430 (overlay.mtu is not set) does not fit",
            "nic9 has MTU 1280",
            "70 bytes over IPv6",
            "fits nic9 is 1210",
            "at least 1500",
        ] {
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
        // A NIC MTU below the headers: nothing fits, nothing wraps.
        let e = check_mtu_fits(&topo("198.18.0.1", Some(1450)), 0, "eth0", 40, cfg)
            .expect_err("tiny NIC")
            .to_string();
        assert!(
            e.contains("fits eth0 is 0") && e.contains("at least 1500"),
            "{e}"
        );
    }
}
