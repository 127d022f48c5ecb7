//! Collecting the workers' counters into one [`RunStats`], and the stats
//! file.
//!
//! The workers' per-network counters are summed by network name
//! ([`NetSums`]), so a reload that reorders or removes networks moves no
//! count from one network to another.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use crate::config::Topology;
use crate::dataplane::Counters;
use crate::metrics::{PortCounts, ReloadStats, RunStats};
use crate::netstats::{NetSums, NetworkStats};
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
    RunStats {
        host: host.to_owned(),
        workers: workers.len(),
        ports: by_name,
        by_network: nets.split(networks),
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

/// Writes `stats` as JSON to `path`, atomically (a rename).
pub(super) fn write_stats(path: &Path, stats: &RunStats) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(stats).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}
