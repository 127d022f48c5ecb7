//! The router's counters as one snapshot: what the control thread collects
//! every second from its workers and liveness, and what the stats file
//! (JSON) and the metrics endpoint ([`super::render`]) publish.
//!
//! Plain data: the control thread fills it, this module's readers only read.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::dataplane::CounterSummary;
use crate::netstats::ByNetwork;
use crate::route::liveness::Liveness;

/// Stats as written to the stats file.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    pub host: String,
    pub workers: usize,
    pub ports: BTreeMap<String, PortCounts>,
    /// The counters per network (`networks`, `removed_networks`,
    /// `no_network`), the shape replay's stats.json shares.
    #[serde(flatten)]
    pub by_network: ByNetwork,
    /// Every packet's counters: the sum over `by_network`.
    #[serde(flatten)]
    pub counters: CounterSummary,
    pub io_errors: u64,
    pub tables_published: u64,
    pub unresolved_peers: Vec<String>,
    pub reloads: ReloadStats,
    /// Per worker, the time (ms) since its loop count last moved, as the
    /// control thread saw it at its last tick.
    pub worker_progress_age_ms: Vec<u64>,
    /// Workers found wedged (no progress for
    /// [`super::PROGRESS_WINDOW`]); the router exits once it finds one.
    pub workers_wedged: u64,
    /// Neighbour liveness, when on (`overlay.liveness_interval_ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<LivenessStats>,
    /// The metrics endpoint's connections and responses, when it serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_server: Option<super::HttpStats>,
    /// The control socket's clients and requests, when it listens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_socket: Option<ControlSocketStats>,
    /// The store the topology comes from beside the file, when `[store]`
    /// is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreStats>,
}

/// The topology store's connection, watch and records.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreStats {
    /// A session runs: lease alive, watch open.
    pub connected: bool,
    /// The store revision of the last view received.
    pub revision: i64,
    /// Watch events received.
    pub watch_events: u64,
    /// Views merged into the running topology.
    pub views_applied: u64,
    /// Sessions lost after they connected.
    pub outages: u64,
    /// Watches that fell behind a compaction and listed again.
    pub compactions: u64,
    /// Hosts from the store in the running topology.
    pub hosts: usize,
    /// Of those, the hosts kept without their subnets in networks this
    /// router does not carry.
    pub hosts_unknown_networks: usize,
    /// Subnet leases under networks this router does not carry.
    pub leases_unknown_networks: usize,
    /// Records left out of the running topology now, by reason
    /// ([`crate::store::Reject`] names).
    pub rejected: BTreeMap<&'static str, u64>,
    /// The keys of the first records left out (at most 32).
    pub rejected_keys: Vec<String>,
    /// This host's subnets in the default network, configured or leased.
    pub subnets: Vec<String>,
    /// This host's leased subnet in each other network it leases in, by
    /// network name.
    pub network_subnets: BTreeMap<String, String>,
    /// Networks this host leases a subnet in that have none yet: a range
    /// with no free subnet (retried at the next session or reload), or a
    /// session not up.
    pub networks_unleased: Vec<String>,
}

/// What the control socket's server did since start.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ControlSocketStats {
    /// Clients accepted.
    pub accepted: u64,
    /// Clients closed at once: [`crate::control`] serves 64 at a time.
    pub refused_full: u64,
    /// Requests answered, and those answered with an error.
    pub requests: u64,
    pub errors: u64,
    /// Clients closed: silent for 10 s, a request over 64 KiB, or not
    /// reading 32 MiB of replies.
    pub closed_idle: u64,
    pub closed_too_large: u64,
    pub closed_slow_reader: u64,
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
    /// Rounds of hellos held back while a worker made no progress.
    pub hellos_held: u64,
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
    /// Neighbours declared down whose ECMP slots the data plane moved to
    /// survivors and loop-free alternates before the routes were computed
    /// again.
    pub lfa_switches: u64,
}

impl LivenessStats {
    /// The snapshot of `l`'s state and counters.
    pub fn of(l: &Liveness) -> LivenessStats {
        let c = l.counts;
        LivenessStats {
            neighbours: l.states().into_iter().collect(),
            down: l.down(),
            links_down: l.link_names_down(),
            hellos_sent: c.sent,
            hello_send_errors: c.send_errors,
            hellos_held: c.held,
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
            lfa_switches: c.lfa_switches,
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
    /// Counts one reload, accepted or not.
    pub fn count(&mut self, ok: bool) {
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
    /// The network of a container port; none for the uplink, which
    /// carries them all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    pub rx: u64,
    pub tx: u64,
    /// The port's own I/O counters summed over its queues (AF_XDP ring and
    /// kernel drops such as `xsk_rx_ring_full`, kicks, TUN write errors):
    /// what is lost before the pipeline sees a frame.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub io: BTreeMap<&'static str, u64>,
}
