//! Collecting the workers' counters into one [`RunStats`], and the stats
//! file.
//!
//! Workers count per network by index in the tables they run
//! ([`crate::dataplane::NetCounters`]) and name each bucket; here the
//! buckets are summed by network name, so a reload that reorders or
//! removes networks moves no count from one network to another. A removed
//! network's counts stay, under `removed_networks`, and in the totals.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use crate::config::Topology;
use crate::dataplane::{Counters, NetCounters};
use crate::metrics::{NetworkCounters, NetworkStats, PortCounts, ReloadStats, RunStats};
use crate::worker::WorkerHandle;

/// Sums the workers' counters; `ports` names the port indices to show
/// (the uplink is 0) with their networks; `networks` are the topology's
/// networks, which get their counters here.
#[allow(clippy::too_many_arguments)]
pub(super) fn collect(
    host: &str,
    workers: &[&WorkerHandle],
    ports: &[(u16, String, Option<String>)],
    networks: Vec<NetworkStats>,
    published: u64,
    missing: &[IpAddr],
    topo: &Topology,
    reloads: &ReloadStats,
) -> RunStats {
    let mut counters = Counters::default();
    let mut nets = NetSums::default();
    let mut by_name: BTreeMap<String, PortCounts> = ports
        .iter()
        .map(|(_, n, net)| {
            (
                n.clone(),
                PortCounts {
                    network: net.clone(),
                    ..PortCounts::default()
                },
            )
        })
        .collect();
    let mut io_errors = 0;
    for h in workers {
        let Ok(s) = h.stats.lock() else { continue };
        counters.add(&s.counters);
        nets.add(&s.nets);
        io_errors += s.io_errors;
        if let Some(e) = &s.last_error {
            tracing::debug!(error = %e, "worker I/O error");
        }
        for (i, name, _) in ports {
            let Some(e) = by_name.get_mut(name) else {
                continue;
            };
            let i = usize::from(*i);
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
    let (networks, removed_networks, no_network) = nets.split(networks);
    RunStats {
        host: host.to_owned(),
        workers: workers.len(),
        ports: by_name,
        networks,
        removed_networks,
        no_network,
        counters: counters.summary(),
        io_errors,
        tables_published: published,
        unresolved_peers,
        reloads: reloads.clone(),
        worker_progress_age_ms: Vec::new(),
        workers_wedged: 0,
        liveness: None,
        metrics_server: None,
        control_socket: None,
        store: None,
    }
}

/// The workers' per-network counters summed by network name.
#[derive(Debug, Default)]
pub(super) struct NetSums {
    unknown: Counters,
    by_name: BTreeMap<String, Counters>,
}

impl NetSums {
    /// Adds one worker's counters.
    pub(super) fn add(&mut self, c: &NetCounters) {
        self.unknown.add(c.unknown());
        for (name, c) in c.by_network() {
            match self.by_name.get_mut(name) {
                Some(s) => s.add(c),
                None => {
                    self.by_name.insert(name.to_owned(), c.clone());
                }
            }
        }
    }

    /// Gives each of `networks` its counters (zero for one no worker
    /// counted yet); the rest, networks not among them with a count, are
    /// the removed ones, by name; then the unknown network's.
    pub(super) fn split(
        mut self,
        mut networks: Vec<NetworkStats>,
    ) -> (
        Vec<NetworkStats>,
        Vec<NetworkCounters>,
        crate::dataplane::CounterSummary,
    ) {
        for n in &mut networks {
            n.counters = self
                .by_name
                .remove(&n.name)
                .unwrap_or_default()
                .summary();
        }
        let removed = self
            .by_name
            .into_iter()
            .filter(|(_, c)| *c != Counters::default())
            .map(|(name, c)| NetworkCounters {
                name,
                counters: c.summary(),
            })
            .collect();
        (networks, removed, self.unknown.summary())
    }
}

/// Writes `stats` as JSON to `path`, atomically (a rename).
pub(super) fn write_stats(path: &Path, stats: &RunStats) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(stats).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}
