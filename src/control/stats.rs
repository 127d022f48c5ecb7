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
            n.counters = self.by_name.remove(&n.name).unwrap_or_default().summary();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::DropReason;
    use std::sync::Arc;

    fn names(n: &[&str]) -> Arc<[String]> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn network(name: &str) -> NetworkStats {
        NetworkStats {
            name: name.into(),
            ..NetworkStats::default()
        }
    }

    /// Two workers around a reload that removed "green" and swapped
    /// "blue" and "red": one still counts under the old tables, one under
    /// the new. Each network's counts are summed by name, green's are
    /// kept as removed, and the totals are the workers' totals.
    #[test]
    fn networks_are_summed_by_name_across_a_reload() {
        let mut old = NetCounters::default();
        old.follow(&names(&["default", "blue", "green", "red"]));
        old.bucket(2).forwarded = 5;
        old.bucket(2).drop(DropReason::Spoofed);
        old.bucket(3).drop_n(DropReason::InnerSpoofed, 2);
        old.bucket(4).forwarded = 1;
        old.bucket(0).drop(DropReason::VxlanUnknownVni);

        let mut new = NetCounters::default();
        new.follow(&names(&["default", "blue", "green", "red"]));
        new.bucket(3).forwarded = 7;
        // Bucket 0 is no network's, 1 + i network i's.
        new.follow(&names(&["default", "red", "blue"]));
        new.bucket(3).forwarded += 1;
        new.bucket(2).drop(DropReason::NoRoute);
        new.bucket(0).drop(DropReason::UnknownPeer);

        let mut sums = NetSums::default();
        sums.add(&old);
        sums.add(&new);
        let mut want_total = old.total();
        want_total.add(&new.total());
        let (nets, removed, unknown) =
            sums.split(vec![network("default"), network("red"), network("blue")]);

        let blue = &nets[2].counters;
        assert_eq!(
            (blue.forwarded, blue.drops.get("spoofed_source")),
            (6, Some(&1))
        );
        let red = &nets[1].counters;
        assert_eq!((red.forwarded, red.drops.get("no_route")), (1, Some(&1)));
        assert_eq!(nets[0].counters, Counters::default().summary());
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].name, "green");
        assert_eq!(removed[0].counters.forwarded, 7);
        assert_eq!(
            removed[0].counters.drops.get("inner_spoofed_source"),
            Some(&2)
        );
        assert_eq!(unknown.drops.len(), 2);

        // The buckets sum to the totals the workers publish.
        let mut sum = Counters::default();
        let add = |sum: &mut Counters, s: &crate::dataplane::CounterSummary| {
            sum.forwarded += s.forwarded;
            for (k, v) in &s.drops {
                let r = DropReason::ALL.iter().find(|r| r.name() == *k).unwrap();
                sum.drop_n(*r, *v);
            }
        };
        for n in &nets {
            add(&mut sum, &n.counters);
        }
        for n in &removed {
            add(&mut sum, &n.counters);
        }
        add(&mut sum, &unknown);
        assert_eq!(sum, want_total);
        assert_eq!(want_total.forwarded, 14);
    }
}
