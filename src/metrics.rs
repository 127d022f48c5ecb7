//! Prometheus export of a live router's counters (`vxrouter run --metrics
//! ADDR`).
//!
//! Layer: control plane, beside the stats file; no worker ever sees it. The
//! control thread hands over the same [`RunStats`] the stats file gets, once
//! a second, and a scrape encodes the latest one: a scrape costs the workers
//! nothing and is at most a second old. One thread serves HTTP with a fixed
//! number of connections and a deadline for each ([`http`]), and the text
//! is OpenMetrics 1.0 (`prometheus-client`), which Prometheus reads
//! natively. Routing is the one match in `handle`: `/metrics`, and the
//! probes `/healthz` (workers progress, the control thread updates) and
//! `/readyz` (the router forwards), answered from the same snapshot
//! ([`health`]).
//!
//! Invariants: every counter of the stats file has a metric under
//! `vxrouter_`; the drop reasons are one family with a `reason` label that
//! lists every declared reason, zero or not, so a `rate()` over a reason
//! that never fired is 0, not absent. Before the first snapshot a scrape
//! gets 503, never made-up zeros. The HTTP server's own counters are read
//! live at each scrape, so a scrape sees the connections that came before
//! it.

pub mod health;
pub mod http;
pub mod stats;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::dataplane::DropReason;
pub use health::{CONTROL_STALE, PROGRESS_WINDOW};
pub use http::{HttpStats, Limits};
use http::{Method, Request, Response, Status};
pub use stats::{ControlSocketStats, LivenessStats, PortCounts, ReloadStats, RunStats, StoreStats};

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The latest snapshot and when it came, shared by the control thread and
/// the server; and whether the router is ready.
#[derive(Debug, Default)]
struct Latest {
    snap: Mutex<Option<(RunStats, Instant)>>,
    ready: AtomicBool,
}

impl Latest {
    fn is_set(&self) -> bool {
        self.lock().is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(RunStats, Instant)>> {
        self.snap.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, s: &RunStats, at: Instant) {
        *self.lock() = Some((s.clone(), at));
    }

    /// `/healthz` at `now`.
    fn health(&self, now: Instant) -> Response {
        let g = self.lock();
        let latest = g
            .as_ref()
            .map(|(s, at)| (s, now.saturating_duration_since(*at)));
        match health::check_health(latest) {
            Ok(()) => Response::text(Status::Ok, "ok\n"),
            Err(why) => Response::text(Status::Unavailable, &why),
        }
    }

    /// `/readyz`.
    fn readiness(&self) -> Response {
        if self.ready.load(Ordering::Relaxed) {
            Response::text(Status::Ok, "ready\n")
        } else {
            Response::text(
                Status::Unavailable,
                "not ready: the router is starting or stopping\n",
            )
        }
    }
}

/// The collector a scrape runs: encodes the latest snapshot, with the HTTP
/// server's counters as they are now.
#[derive(Debug)]
struct Exporter {
    latest: Arc<Latest>,
    http: Arc<http::Counters>,
}

impl Collector for Exporter {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let guard = self.latest.lock();
        match guard.as_ref() {
            Some((s, _)) => encode_stats(s, Some(&self.http.snapshot()), &mut enc),
            None => Ok(()),
        }
    }
}

/// One snapshot as a collector (what [`render`] encodes).
#[derive(Debug)]
struct Snapshot(RunStats);

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        encode_stats(&self.0, self.0.metrics_server.as_ref(), &mut enc)
    }
}

fn counter(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

/// One family: a metric per label set (nothing when there is none).
fn family<'a, const N: usize, M: EncodeMetric>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    items: impl IntoIterator<Item = ([(&'a str, &'a str); N], M)>,
) -> fmt::Result {
    let mut items = items.into_iter().peekable();
    let Some((_, first)) = items.peek() else {
        return Ok(());
    };
    let mut m = enc.encode_descriptor(name, help, None, first.metric_type())?;
    for (labels, v) in items {
        v.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter_family<'a, const N: usize>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    items: impl IntoIterator<Item = ([(&'a str, &'a str); N], u64)>,
) -> fmt::Result {
    family(
        enc,
        name,
        help,
        items.into_iter().map(|(l, v)| (l, ConstCounter::new(v))),
    )
}

fn gauge_family<'a, const N: usize>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    items: impl IntoIterator<Item = ([(&'a str, &'a str); N], i64)>,
) -> fmt::Result {
    family(
        enc,
        name,
        help,
        items.into_iter().map(|(l, v)| (l, ConstGauge::new(v))),
    )
}

/// Encodes `s`, with `http` as the HTTP server's counters.
fn encode_stats(
    s: &RunStats,
    http: Option<&HttpStats>,
    enc: &mut DescriptorEncoder<'_>,
) -> fmt::Result {
    let info = Info::new([
        ("host", s.host.as_str()),
        ("version", env!("CARGO_PKG_VERSION")),
    ]);
    info.encode(enc.encode_descriptor(
        "vxrouter",
        "The router: the host it runs as and its version.",
        None,
        info.metric_type(),
    )?)?;
    gauge(
        enc,
        "vxrouter_workers",
        "Poll-mode worker threads.",
        s.workers as u64,
    )?;
    let c = &s.counters;
    counter(
        enc,
        "vxrouter_forwarded_packets",
        "Packets forwarded: delivered to a container, encapsulated to a peer, or in transit (a super-packet counts its segments).",
        c.forwarded,
    )?;
    counter(
        enc,
        "vxrouter_replied_packets",
        "Packets the router answered itself (ARP, neighbour solicitations, echo requests to its gateways).",
        c.replied,
    )?;
    counter(
        enc,
        "vxrouter_passed_packets",
        "Uplink frames left to the host kernel (not VXLAN for this host).",
        c.pass_through,
    )?;
    counter(
        enc,
        "vxrouter_icmp_errors_sent",
        "ICMP and ICMPv6 errors the router sent (unreachable, time exceeded, too big).",
        c.icmp_errors,
    )?;
    counter(
        enc,
        "vxrouter_icmp_errors_rate_limited",
        "ICMP errors not sent because of the per-worker rate limit.",
        c.icmp_rate_limited,
    )?;
    // Every reason for each network of the topology and for no network
    // (empty), zero or not; a removed network's only where it counted.
    // Their sum over `network` is the stats file's `drops`.
    let current = s
        .by_network
        .networks
        .iter()
        .map(|n| (n.name.as_str(), &n.counters))
        .chain([("", &s.by_network.no_network)]);
    let removed = s
        .by_network
        .removed_networks
        .iter()
        .map(|n| (n.name.as_str(), &n.counters));
    counter_family(
        enc,
        "vxrouter_dropped_packets",
        "Packets dropped, by reason (docs/operations.md: Drop reasons) and network (empty for uplink frames dropped before a VNI named their network).",
        current
            .flat_map(|(net, c)| {
                DropReason::ALL.iter().map(move |r| {
                    let n = r.name();
                    (
                        [("reason", n), ("network", net)],
                        c.drops.get(n).copied().unwrap_or(0),
                    )
                })
            })
            .chain(removed.flat_map(|(net, c)| {
                c.drops
                    .iter()
                    .map(move |(r, v)| ([("reason", *r), ("network", net)], *v))
            })),
    )?;
    counter_family(
        enc,
        "vxrouter_network_forwarded_packets",
        "Packets forwarded per overlay network (their sum is vxrouter_forwarded_packets_total).",
        s.by_network
            .networks
            .iter()
            .map(|n| (n.name.as_str(), n.counters.forwarded))
            .chain(
                s.by_network
                    .removed_networks
                    .iter()
                    .map(|n| (n.name.as_str(), n.counters.forwarded))
                    .filter(|(_, v)| *v > 0),
            )
            .map(|(net, v)| ([("network", net)], v)),
    )?;
    counter_family(
        enc,
        "vxrouter_port_received_packets",
        "Packets received per port (the uplink and each container port), with the container port's network.",
        s.ports.iter().map(|(p, v)| (port_labels(p, v), v.rx)),
    )?;
    counter_family(
        enc,
        "vxrouter_port_transmitted_packets",
        "Packets transmitted per port, with the container port's network.",
        s.ports.iter().map(|(p, v)| (port_labels(p, v), v.tx)),
    )?;
    gauge_family(
        enc,
        "vxrouter_network_routes",
        "Routes this host holds per overlay network (its own prefixes included).",
        s.by_network
            .networks
            .iter()
            .map(|n| ([("network", n.name.as_str())], gauge_value(n.routes))),
    )?;
    gauge_family(
        enc,
        "vxrouter_network_ports",
        "This host's container ports per overlay network.",
        s.by_network
            .networks
            .iter()
            .map(|n| ([("network", n.name.as_str())], gauge_value(n.ports))),
    )?;
    gauge_family(
        enc,
        "vxrouter_network_mtu",
        "Container-side MTU per overlay network on this host.",
        s.by_network
            .networks
            .iter()
            .map(|n| ([("network", n.name.as_str())], i64::from(n.mtu))),
    )?;
    counter_family(
        enc,
        "vxrouter_port_io_events",
        "Each port's own I/O counters, as in the stats file's `io` (ring and kernel drops, kicks, super-packets).",
        s.ports.iter().flat_map(|(p, v)| {
            v.io.iter()
                .map(move |(k, n)| ([("port", p.as_str()), ("counter", *k)], *n))
        }),
    )?;
    counter(
        enc,
        "vxrouter_io_errors",
        "Receive, transmit and flush errors the workers saw (the log has the last one).",
        s.io_errors,
    )?;
    counter(
        enc,
        "vxrouter_tables_published",
        "Forwarding tables published to the workers.",
        s.tables_published,
    )?;
    counter_family(
        enc,
        "vxrouter_config_reloads",
        "SIGHUP reloads of the topology file, by result (a rejected one keeps the running configuration).",
        [
            ([("result", "accepted")], s.reloads.accepted),
            ([("result", "rejected")], s.reloads.rejected),
        ],
    )?;
    gauge(
        enc,
        "vxrouter_config_last_reload_successful",
        "1 if the last reload was accepted (or none was tried), 0 if it was rejected.",
        u64::from(s.reloads.last_ok),
    )?;
    if let Some(st) = &s.store {
        gauge(
            enc,
            "vxrouter_store_connected",
            "1 while a store session runs (lease alive, watch open), 0 while the router forwards on the last topology and reconnects.",
            u64::from(st.connected),
        )?;
        gauge(
            enc,
            "vxrouter_store_revision",
            "The store revision of the last view of the records received.",
            u64::try_from(st.revision).unwrap_or(0),
        )?;
        counter_family(
            enc,
            "vxrouter_store_events",
            "Store activity: watch events received (watch_event), views merged into the topology (view_applied), sessions lost after they connected (outage), watches that fell behind a compaction and listed again (compaction).",
            [
                ([("kind", "watch_event")], st.watch_events),
                ([("kind", "view_applied")], st.views_applied),
                ([("kind", "outage")], st.outages),
                ([("kind", "compaction")], st.compactions),
            ],
        )?;
        gauge(
            enc,
            "vxrouter_store_hosts",
            "Hosts from the store in the running topology.",
            st.hosts as u64,
        )?;
        gauge(
            enc,
            "vxrouter_store_hosts_unknown_networks",
            "Hosts from the store kept without their subnets in networks this router does not carry (logged with their key when first seen).",
            st.hosts_unknown_networks as u64,
        )?;
        gauge(
            enc,
            "vxrouter_store_leases_unknown_networks",
            "Subnet leases in the store under networks this router does not carry (well formed; logged with their key when first seen).",
            st.leases_unknown_networks as u64,
        )?;
        gauge(
            enc,
            "vxrouter_store_networks_unleased",
            "Networks this host leases a subnet in that have none yet (a full lease range, retried at the next session or reload, or no session); stats.json names them.",
            st.networks_unleased.len() as u64,
        )?;
        gauge_family(
            enc,
            "vxrouter_store_records_rejected",
            "Store records left out of the running topology now, by reason (logged with their key when first seen).",
            crate::store::Reject::ALL
                .iter()
                .map(|r| {
                    let n = st.rejected.get(r.name()).copied().unwrap_or(0);
                    ([("reason", r.name())], i64::try_from(n).unwrap_or(i64::MAX))
                }),
        )?;
    }
    counter(
        enc,
        "vxrouter_workers_wedged",
        "Workers found without progress (no loop) for the progress window; the router exits non-zero once it finds one, for its supervisor to restart it.",
        s.workers_wedged,
    )?;
    let workers: Vec<String> = (0..s.worker_progress_age_ms.len())
        .map(|k| k.to_string())
        .collect();
    family(
        enc,
        "vxrouter_worker_progress_age_seconds",
        "Per worker, the time since its loop count last moved, as the control thread saw it at its last tick (a second's resolution); 2 s or more fails /healthz.",
        workers
            .iter()
            .zip(&s.worker_progress_age_ms)
            .map(|(k, ms)| ([("worker", k.as_str())], ConstGauge::new(*ms as f64 / 1000.0))),
    )?;
    gauge(
        enc,
        "vxrouter_unresolved_peers",
        "Peers whose underlay MAC address is not known yet (traffic to them is dropped).",
        s.unresolved_peers.len() as u64,
    )?;
    if let Some(l) = &s.liveness {
        gauge_family(
            enc,
            "vxrouter_neighbour_up",
            "1 if the neighbour (a host linked to this one) answers hellos two-way, 0 if its link is out of the routes.",
            l.neighbours
                .iter()
                .map(|(n, up)| ([("neighbour", n.as_str())], i64::from(*up))),
        )?;
        counter_family(
            enc,
            "vxrouter_liveness_hellos",
            "Liveness hellos sent, not sent (send_error), rounds held back while a worker made no progress (held), received, datagrams on the liveness port not taken (malformed, other_vni, not_neighbour), link reports that did not fit a hello (report_left_out), reports ignored for a sequence number far ahead of our clock (report_ahead), reports about this host that it did not make, refuted (report_refuted); with a key file, hellos ignored without a MAC (unauthenticated), with a key id not held (unknown_key), a MAC that does not match (bad_mac), a counter not above the sender's last (replayed) or far from our clock (clock_skew); without one, hellos with a MAC (unexpected_auth).",
            [
                ([("kind", "sent")], l.hellos_sent),
                ([("kind", "send_error")], l.hello_send_errors),
                ([("kind", "held")], l.hellos_held),
                ([("kind", "received")], l.hellos_received),
                ([("kind", "malformed")], l.hellos_malformed),
                ([("kind", "other_vni")], l.hellos_other_vni),
                ([("kind", "not_neighbour")], l.hellos_not_neighbour),
                ([("kind", "report_left_out")], l.reports_left_out),
                ([("kind", "report_ahead")], l.reports_ahead),
                ([("kind", "report_refuted")], l.reports_refuted),
                ([("kind", "unauthenticated")], l.hellos_unauthenticated),
                ([("kind", "unknown_key")], l.hellos_unknown_key),
                ([("kind", "bad_mac")], l.hellos_bad_mac),
                ([("kind", "replayed")], l.hellos_replayed),
                ([("kind", "clock_skew")], l.hellos_clock_skew),
                ([("kind", "unexpected_auth")], l.hellos_unexpected_auth),
            ],
        )?;
        counter(
            enc,
            "vxrouter_liveness_lfa_switches",
            "Times neighbours went down and the data plane switched at once to tables whose ECMP sets had them replaced by surviving members or loop-free alternates, before the routes were computed again.",
            l.lfa_switches,
        )?;
        gauge(
            enc,
            "vxrouter_links_down",
            "Links out of the routes: this host's to neighbours that are down, and those other hosts report.",
            l.links_down.len() as u64,
        )?;
    }
    if let Some(h) = http {
        encode_http(h, enc)?;
    }
    if let Some(c) = &s.control_socket {
        encode_control_socket(c, enc)?;
    }
    Ok(())
}

/// The control socket's counters.
/// A count as a gauge's value.
fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A port's labels: its name and its network (empty for the uplink, which
/// carries every network: the same as no label to a Prometheus query).
fn port_labels<'a>(port: &'a str, v: &'a PortCounts) -> [(&'static str, &'a str); 2] {
    [
        ("port", port),
        ("network", v.network.as_deref().unwrap_or("")),
    ]
}

fn encode_control_socket(c: &ControlSocketStats, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
    counter(
        enc,
        "vxrouter_control_clients_accepted",
        "Clients the control socket took.",
        c.accepted,
    )?;
    counter_family(
        enc,
        "vxrouter_control_clients_closed",
        "Clients the control socket closed: full (64 served at once), idle (10 s without a request), too_large (a request over 64 KiB), slow_reader (32 MiB of replies unread).",
        [
            ([("reason", "full")], c.refused_full),
            ([("reason", "idle")], c.closed_idle),
            ([("reason", "too_large")], c.closed_too_large),
            ([("reason", "slow_reader")], c.closed_slow_reader),
        ],
    )?;
    counter_family(
        enc,
        "vxrouter_control_requests",
        "Requests the control socket answered, by result.",
        [
            ([("result", "ok")], c.requests.saturating_sub(c.errors)),
            ([("result", "error")], c.errors),
        ],
    )
}

/// The metrics endpoint's own counters.
fn encode_http(h: &HttpStats, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
    counter(
        enc,
        "vxrouter_metrics_connections_accepted",
        "Connections the metrics endpoint took.",
        h.connections_accepted,
    )?;
    counter(
        enc,
        "vxrouter_metrics_connections_rejected",
        "Connections the metrics endpoint closed at once because it held its maximum: each new connection takes the place of the oldest one not yet answered.",
        h.connections_rejected,
    )?;
    counter(
        enc,
        "vxrouter_metrics_connections_timed_out",
        "Connections the metrics endpoint cut at its deadline before their response was out (idle or slow clients).",
        h.connections_timed_out,
    )?;
    counter(
        enc,
        "vxrouter_metrics_connections_aborted",
        "Connections the client closed or reset before their response was out.",
        h.connections_aborted,
    )?;
    counter(
        enc,
        "vxrouter_metrics_accept_errors",
        "Connections the metrics endpoint failed to accept (file descriptors or memory short).",
        h.accept_errors,
    )?;
    gauge(
        enc,
        "vxrouter_metrics_connections_open",
        "Connections the metrics endpoint holds.",
        h.connections_open,
    )?;
    let codes: Vec<(String, u64)> = h
        .responses
        .iter()
        .map(|(c, n)| (c.to_string(), *n))
        .collect();
    counter_family(
        enc,
        "vxrouter_metrics_responses",
        "Responses of the metrics endpoint written in full, by status code.",
        codes.iter().map(|(c, n)| ([("code", c.as_str())], *n)),
    )
}

fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

/// The OpenMetrics text for one snapshot (what a scrape returns), with the
/// HTTP server's counters it carries.
pub fn render(s: &RunStats) -> String {
    let mut r = Registry::default();
    r.register_collector(Box::new(Snapshot(s.clone())));
    // Writing into a String cannot fail, and our names are valid.
    encode(&r).unwrap_or_default()
}

/// The registry a scrape encodes: the latest snapshot and the live HTTP
/// counters.
fn live_registry(latest: Arc<Latest>, http: Arc<http::Counters>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(Exporter { latest, http }));
    r
}

/// Answers one request at `now`: the endpoint's routes.
fn handle(req: &Request, registry: &Registry, latest: &Latest, now: Instant) -> Response {
    if !matches!(req.method, Method::Get | Method::Head) {
        let mut r = Response::text(Status::MethodNotAllowed, "only GET and HEAD\n");
        r.allow = Some("GET, HEAD");
        return r;
    }
    match req.path() {
        "/metrics" if !latest.is_set() => Response::text(
            Status::Unavailable,
            "no counters yet: the router is starting\n",
        ),
        "/metrics" => match encode(registry) {
            Ok(body) => Response {
                status: Status::Ok,
                content_type: CONTENT_TYPE,
                body,
                allow: None,
            },
            Err(_) => Response::text(Status::InternalError, "encoding the metrics failed\n"),
        },
        "/healthz" => latest.health(now),
        "/readyz" => latest.readiness(),
        "/" => Response::text(
            Status::Ok,
            "vxrouter: metrics at /metrics, probes at /healthz and /readyz\n",
        ),
        _ => Response::text(
            Status::NotFound,
            "not found: metrics are at /metrics, probes at /healthz and /readyz\n",
        ),
    }
}

/// The HTTP endpoint: one thread, stopped and joined on drop.
pub struct MetricsServer {
    latest: Arc<Latest>,
    counters: Arc<http::Counters>,
    stop: Arc<AtomicBool>,
    waker: Arc<mio::Waker>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
    /// A second descriptor of the listening socket, for a handover.
    listener: Option<std::os::fd::OwnedFd>,
}

impl fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MetricsServer {
    /// Listens on `addr` (port 0: any free port, see [`Self::local_addr`])
    /// and serves `GET /metrics` from a thread of its own, within
    /// [`Limits::DEFAULT`].
    pub fn start(addr: SocketAddr) -> io::Result<Self> {
        Self::start_with(addr, Limits::DEFAULT)
    }

    /// [`Self::start`] within `limits`.
    pub fn start_with(addr: SocketAddr, limits: Limits) -> io::Result<Self> {
        let bound = http::Bound::bind(addr)
            .map_err(|e| io::Error::other(format!("metrics: cannot listen on {addr}: {e}")))?;
        Self::serve(bound, limits)
    }

    /// Serves on a listening socket another router process handed over.
    pub fn start_from(listener: std::net::TcpListener) -> io::Result<Self> {
        Self::serve(http::Bound::from_std(listener)?, Limits::DEFAULT)
    }

    /// A second descriptor of the listening socket (for a handover).
    pub fn dup_listener(&self) -> io::Result<std::os::fd::OwnedFd> {
        match &self.listener {
            Some(l) => l.try_clone(),
            None => Err(io::Error::other("no listener")),
        }
    }

    fn serve(bound: http::Bound, limits: Limits) -> io::Result<Self> {
        let listener = bound.dup_listener().ok();
        let local = bound.local_addr();
        let waker = bound.waker();
        let latest = Arc::new(Latest::default());
        let counters = Arc::new(http::Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let registry = live_registry(latest.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name("vxr-metrics".into())
            .spawn({
                let stop = stop.clone();
                let latest = latest.clone();
                let counters = counters.clone();
                move || {
                    let mut handler =
                        |req: &Request| handle(req, &registry, &latest, Instant::now());
                    bound.serve(limits, &counters, &stop, &mut handler);
                }
            })?;
        Ok(MetricsServer {
            latest,
            counters,
            stop,
            waker,
            addr: local,
            thread: Some(thread),
            listener,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes `s` what the next scrapes see.
    pub fn update(&self, s: &RunStats) {
        self.latest.set(s, Instant::now());
    }

    /// Makes `/readyz` answer 200 (`true`: the router forwards) or 503
    /// (starting or stopping).
    pub fn set_ready(&self, ready: bool) {
        self.latest.ready.store(ready, Ordering::Relaxed);
    }

    /// The HTTP server's counters now (for the stats file).
    pub fn http_stats(&self) -> HttpStats {
        self.counters.snapshot()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // A failed wake leaves the thread waiting for its next event or
        // deadline; the join then waits that long.
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::Counters;
    use crate::netstats::{ByNetwork, NetworkCounters, NetworkStats};
    use std::collections::BTreeMap;

    fn stats() -> RunStats {
        // Network blue forwarded 7 and dropped 2 as no_route; one uplink
        // frame had an unknown VNI; a removed network, red, dropped 3
        // spoofed packets. `c` is their sum, as the workers publish it.
        let mut blue = Counters {
            forwarded: 7,
            ..Counters::default()
        };
        blue.drop(DropReason::NoRoute);
        blue.drop(DropReason::NoRoute);
        let mut unknown = Counters::default();
        unknown.drop(DropReason::VxlanUnknownVni);
        let mut red = Counters::default();
        red.drop_n(DropReason::Spoofed, 3);
        let mut c = blue.clone();
        c.add(&unknown);
        c.add(&red);
        let mut ports = BTreeMap::new();
        let mut io = BTreeMap::new();
        io.insert("xsk_rx_ring_full", 4);
        ports.insert(
            "eth0".to_string(),
            PortCounts {
                network: None,
                rx: 5,
                tx: 6,
                io,
            },
        );
        ports.insert(
            "c1".to_string(),
            PortCounts {
                network: Some("blue".into()),
                rx: 1,
                tx: 2,
                io: BTreeMap::new(),
            },
        );
        RunStats {
            host: "h1".into(),
            workers: 2,
            ports,
            by_network: ByNetwork {
                networks: vec![NetworkStats {
                    name: "blue".into(),
                    vni: 43,
                    mtu: 1400,
                    routes: 3,
                    ports: 1,
                    counters: blue.summary(),
                }],
                removed_networks: vec![NetworkCounters {
                    name: "red".into(),
                    counters: red.summary(),
                }],
                no_network: unknown.summary(),
            },
            counters: c.summary(),
            io_errors: 0,
            tables_published: 3,
            unresolved_peers: vec!["h2".into()],
            worker_progress_age_ms: vec![0, 1000],
            workers_wedged: 0,
            reloads: ReloadStats {
                accepted: 1,
                rejected: 2,
                last_ok: false,
            },
            liveness: Some(LivenessStats {
                neighbours: [("h2".to_string(), true), ("h3".to_string(), false)].into(),
                down: vec!["h3".into()],
                links_down: vec!["h1-h3".into()],
                hellos_sent: 9,
                lfa_switches: 2,
                ..LivenessStats::default()
            }),
            metrics_server: None,
            control_socket: Some(ControlSocketStats {
                accepted: 3,
                requests: 5,
                errors: 1,
                ..ControlSocketStats::default()
            }),
            store: Some(super::stats::StoreStats {
                connected: true,
                revision: 17,
                hosts: 2,
                rejected: [("overlap", 1)].into(),
                hosts_unknown_networks: 1,
                leases_unknown_networks: 2,
                networks_unleased: vec!["blue".to_owned()],
                ..Default::default()
            }),
        }
    }

    fn has(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in\n{text}"
        );
    }

    #[test]
    fn every_counter_is_exported() {
        let t = render(&stats());
        has(&t, "vxrouter_forwarded_packets_total 7");
        has(
            &t,
            "vxrouter_dropped_packets_total{reason=\"no_route\",network=\"blue\"} 2",
        );
        has(
            &t,
            "vxrouter_dropped_packets_total{reason=\"no_route\",network=\"\"} 0",
        );
        has(
            &t,
            "vxrouter_dropped_packets_total{reason=\"vxlan_unknown_vni\",network=\"\"} 1",
        );
        has(
            &t,
            "vxrouter_dropped_packets_total{reason=\"spoofed_source\",network=\"red\"} 3",
        );
        has(
            &t,
            "vxrouter_network_forwarded_packets_total{network=\"blue\"} 7",
        );
        has(
            &t,
            "vxrouter_port_received_packets_total{port=\"eth0\",network=\"\"} 5",
        );
        has(
            &t,
            "vxrouter_port_transmitted_packets_total{port=\"c1\",network=\"blue\"} 2",
        );
        has(&t, "vxrouter_network_routes{network=\"blue\"} 3");
        has(&t, "vxrouter_network_ports{network=\"blue\"} 1");
        has(&t, "vxrouter_network_mtu{network=\"blue\"} 1400");
        has(
            &t,
            "vxrouter_port_io_events_total{port=\"eth0\",counter=\"xsk_rx_ring_full\"} 4",
        );
        has(&t, "vxrouter_tables_published_total 3");
        has(&t, "vxrouter_config_reloads_total{result=\"rejected\"} 2");
        has(&t, "vxrouter_config_reloads_total{result=\"accepted\"} 1");
        has(&t, "vxrouter_config_last_reload_successful 0");
        has(&t, "vxrouter_store_connected 1");
        has(&t, "vxrouter_store_revision 17");
        has(&t, "vxrouter_store_records_rejected{reason=\"overlap\"} 1");
        has(&t, "vxrouter_store_hosts_unknown_networks 1");
        has(&t, "vxrouter_store_leases_unknown_networks 2");
        has(&t, "vxrouter_store_networks_unleased 1");
        has(&t, "vxrouter_store_records_rejected{reason=\"not_json\"} 0");
        has(&t, "vxrouter_unresolved_peers 1");
        has(&t, "vxrouter_workers 2");
        has(&t, "vxrouter_workers_wedged_total 0");
        has(&t, "vxrouter_worker_progress_age_seconds{worker=\"0\"} 0.0");
        has(&t, "vxrouter_worker_progress_age_seconds{worker=\"1\"} 1.0");
        has(
            &t,
            &format!(
                "vxrouter_info{{host=\"h1\",version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
        );
        has(&t, "# TYPE vxrouter_dropped_packets counter");
        has(&t, "vxrouter_neighbour_up{neighbour=\"h2\"} 1");
        has(&t, "vxrouter_neighbour_up{neighbour=\"h3\"} 0");
        has(&t, "vxrouter_liveness_hellos_total{kind=\"sent\"} 9");
        has(&t, "vxrouter_liveness_hellos_total{kind=\"malformed\"} 0");
        has(&t, "vxrouter_liveness_hellos_total{kind=\"bad_mac\"} 0");
        has(&t, "vxrouter_links_down 1");
        has(&t, "vxrouter_liveness_lfa_switches_total 2");
        has(&t, "vxrouter_control_clients_accepted_total 3");
        has(&t, "vxrouter_control_requests_total{result=\"ok\"} 4");
        has(
            &t,
            "vxrouter_control_clients_closed_total{reason=\"idle\"} 0",
        );
        assert!(t.ends_with("# EOF\n"), "{t}");
    }

    #[test]
    fn every_drop_reason_is_listed_even_at_zero() {
        let t = render(&stats());
        // For each network of the topology and for none; a removed
        // network only where it counted.
        for net in ["blue", ""] {
            for r in DropReason::ALL {
                let prefix = format!(
                    "vxrouter_dropped_packets_total{{reason=\"{}\",network=\"{net}\"}} ",
                    r.name()
                );
                assert!(
                    t.lines().any(|l| l.starts_with(&prefix)),
                    "{} {net:?} missing",
                    r.name()
                );
            }
        }
        has(
            &t,
            "vxrouter_dropped_packets_total{reason=\"ttl_expired\",network=\"blue\"} 0",
        );
        let red: Vec<&str> = t
            .lines()
            .filter(|l| l.contains("network=\"red\""))
            .collect();
        assert_eq!(
            red,
            ["vxrouter_dropped_packets_total{reason=\"spoofed_source\",network=\"red\"} 3"],
            "{t}"
        );
    }

    /// The labelled drop series sum to the stats file's totals, reason by
    /// reason.
    #[test]
    fn drops_by_network_sum_to_the_totals() {
        let s = stats();
        let t = render(&s);
        let mut sums: BTreeMap<String, u64> = BTreeMap::new();
        for l in t.lines() {
            let Some(rest) = l.strip_prefix("vxrouter_dropped_packets_total{reason=\"") else {
                continue;
            };
            let (reason, rest) = rest.split_once('"').expect("a reason");
            let v: u64 = rest.rsplit(' ').next().unwrap().parse().unwrap();
            *sums.entry(reason.to_owned()).or_default() += v;
        }
        assert_eq!(sums.len(), DropReason::COUNT);
        sums.retain(|_, v| *v > 0);
        let want: BTreeMap<String, u64> = s
            .counters
            .drops
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        assert_eq!(sums, want);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["drops"]["spoofed_source"], 3);
        assert_eq!(json["networks"][0]["name"], "blue");
        assert_eq!(json["networks"][0]["forwarded"], 7);
        assert_eq!(json["networks"][0]["drops"]["no_route"], 2);
        assert_eq!(json["removed_networks"][0]["name"], "red");
        assert_eq!(json["removed_networks"][0]["drops"]["spoofed_source"], 3);
        assert_eq!(json["no_network"]["drops"]["vxlan_unknown_vni"], 1);
    }

    fn req(method: Method, target: &str) -> Request {
        Request {
            method,
            target: target.into(),
        }
    }

    #[test]
    fn routes() {
        let latest = Arc::new(Latest::default());
        let counters = Arc::new(http::Counters::default());
        let registry = live_registry(latest.clone(), counters);
        let now = Instant::now();
        let answer = |m, t: &str| handle(&req(m, t), &registry, &latest, now);
        // Before the first snapshot: 503, not zeros.
        let r = answer(Method::Get, "/metrics");
        assert_eq!(r.status, Status::Unavailable, "{r:?}");
        assert_eq!(answer(Method::Get, "/").status, Status::Ok);
        assert_eq!(answer(Method::Get, "/nope").status, Status::NotFound);
        assert_eq!(answer(Method::Get, "/metrics/x").status, Status::NotFound);
        let r = answer(Method::Other, "/metrics");
        assert_eq!(
            (r.status, r.allow),
            (Status::MethodNotAllowed, Some("GET, HEAD"))
        );

        latest.set(&stats(), now);
        for (m, t) in [(Method::Get, "/metrics"), (Method::Head, "/metrics?a=b")] {
            let r = answer(m, t);
            assert_eq!(
                (r.status, r.content_type),
                (Status::Ok, CONTENT_TYPE),
                "{t}"
            );
            has(&r.body, "vxrouter_forwarded_packets_total 7");
            has(&r.body, "vxrouter_metrics_connections_rejected_total 0");
            has(&r.body, "vxrouter_metrics_responses_total{code=\"503\"} 0");
            assert!(r.body.ends_with("# EOF\n"), "{}", r.body);
        }
    }

    #[test]
    fn healthz_needs_moving_workers_and_a_recent_update() {
        use std::time::Duration;
        let latest = Arc::new(Latest::default());
        let registry = live_registry(latest.clone(), Arc::new(http::Counters::default()));
        let t0 = Instant::now();
        let at = |now: Instant| handle(&req(Method::Get, "/healthz"), &registry, &latest, now);
        let r = at(t0);
        assert_eq!(r.status, Status::Unavailable, "no snapshot yet: {r:?}");
        assert!(r.body.starts_with("starting"), "{}", r.body);

        // Workers at 0 and 1 s: healthy while the update is recent.
        latest.set(&stats(), t0);
        let r = at(t0 + Duration::from_millis(2900));
        assert_eq!((r.status, r.body.as_str()), (Status::Ok, "ok\n"));
        // HEAD answers the same status.
        let r = handle(&req(Method::Head, "/healthz?x"), &registry, &latest, t0);
        assert_eq!(r.status, Status::Ok);

        // The control thread stops updating: 503 naming it.
        let r = at(t0 + CONTROL_STALE);
        assert_eq!(r.status, Status::Unavailable);
        assert_eq!(r.body, "control thread: last update 3.0 s ago\n");

        // Worker 1 without progress for the window: 503 naming it; with a
        // stale update too, both causes.
        let mut s = stats();
        s.worker_progress_age_ms = vec![0, 2000];
        latest.set(&s, t0);
        let r = at(t0);
        assert_eq!(r.status, Status::Unavailable);
        assert_eq!(r.body, "worker 1: no progress for 2.0 s\n");
        let r = at(t0 + Duration::from_secs(5));
        assert_eq!(
            r.body,
            "control thread: last update 5.0 s ago\nworker 1: no progress for 2.0 s\n"
        );
        // Just under the window is progress.
        s.worker_progress_age_ms = vec![1999, 0];
        latest.set(&s, t0);
        assert_eq!(at(t0).status, Status::Ok);
    }

    #[test]
    fn readyz_follows_the_control_threads_word() {
        let latest = Arc::new(Latest::default());
        let registry = live_registry(latest.clone(), Arc::new(http::Counters::default()));
        let now = Instant::now();
        let ready = || handle(&req(Method::Get, "/readyz"), &registry, &latest, now);
        assert_eq!(ready().status, Status::Unavailable);
        // A snapshot alone is not readiness.
        latest.set(&stats(), now);
        assert_eq!(ready().status, Status::Unavailable);
        latest.ready.store(true, Ordering::Relaxed);
        let r = ready();
        assert_eq!((r.status, r.body.as_str()), (Status::Ok, "ready\n"));
        // Stopping: not ready again.
        latest.ready.store(false, Ordering::Relaxed);
        assert_eq!(ready().status, Status::Unavailable);
        let r = handle(&req(Method::Other, "/readyz"), &registry, &latest, now);
        assert_eq!(r.status, Status::MethodNotAllowed);
    }

    #[test]
    fn the_servers_counters_are_exported_from_the_snapshot() {
        let mut s = stats();
        assert!(
            !render(&s).contains("vxrouter_metrics_"),
            "none without a server"
        );
        s.metrics_server = Some(HttpStats {
            connections_accepted: 400,
            connections_rejected: 336,
            connections_timed_out: 64,
            connections_open: 3,
            responses: [(200, 5), (404, 1)].into(),
            ..HttpStats::default()
        });
        let t = render(&s);
        has(&t, "vxrouter_metrics_connections_accepted_total 400");
        has(&t, "vxrouter_metrics_connections_rejected_total 336");
        has(&t, "vxrouter_metrics_connections_timed_out_total 64");
        has(&t, "vxrouter_metrics_connections_aborted_total 0");
        has(&t, "vxrouter_metrics_accept_errors_total 0");
        has(&t, "vxrouter_metrics_connections_open 3");
        has(&t, "vxrouter_metrics_responses_total{code=\"200\"} 5");
        has(&t, "vxrouter_metrics_responses_total{code=\"404\"} 1");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["metrics_server"]["connections_rejected"], 336);
        assert_eq!(json["metrics_server"]["responses"]["200"], 5);
    }

    #[test]
    fn metric_names_and_help_are_valid() {
        // The text format allows [a-zA-Z_:][a-zA-Z0-9_:]* names and needs one
        // HELP and one TYPE line per family.
        let t = render(&stats());
        let mut families = 0;
        for l in t.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = l.split(' ').nth(2).expect("a name");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && name.starts_with("vxrouter"),
                "{name}"
            );
            assert!(t.contains(&format!("# HELP {name} ")), "no help for {name}");
            families += 1;
        }
        assert!(families >= 15, "{families} families:\n{t}");
    }
}
