//! Counters per overlay network as exported: the one shape that the live
//! router's stats file and metrics ([`crate::metrics`]) and `vxrouter
//! replay`'s `stats.json` ([`crate::replay`]) carry beside their totals,
//! and the sum that fills it.
//!
//! Layer: off the per-packet path; plain data and sums, no I/O, no clock.
//! Pipelines count per network by index in the tables they run
//! ([`NetCounters`]) and name each bucket; [`NetSums`] sums the buckets by
//! network name, so a reload that reorders or removes networks moves no
//! count from one network to another. A removed network's counts stay,
//! under `removed_networks`, and in the totals.
//!
//! Invariant: over one set of [`NetCounters`], the counters of
//! `networks`, `removed_networks` and `no_network` sum to their totals
//! ([`NetCounters::total`]): every packet counts once, in one of them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Topology;
use crate::dataplane::{CounterSummary, Counters, NetCounters};
use crate::route::RouteSet;

/// One overlay network as this host runs it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NetworkStats {
    pub name: String,
    pub vni: u32,
    /// Its container-side MTU on this host.
    pub mtu: u16,
    /// Routes this host holds in it (its own prefixes included).
    pub routes: u64,
    /// This host's ports in it, topology and attached.
    pub ports: u64,
    /// The counters of its packets (those of a container port of it, and
    /// those from the tunnel with its VNI).
    #[serde(flatten)]
    pub counters: CounterSummary,
}

impl NetworkStats {
    /// The networks of `topo` as host `me` runs them with `routes`, the
    /// default one first, each with the number of ports `ports` gives for
    /// its index; their counters are zero until [`NetSums::split`] fills
    /// them.
    pub fn of_topology(
        topo: &Topology,
        me: usize,
        routes: &RouteSet,
        ports: impl Fn(usize) -> u64,
    ) -> Vec<NetworkStats> {
        topo.networks
            .iter()
            .enumerate()
            .map(|(net, n)| NetworkStats {
                name: n.name.clone(),
                vni: n.vni,
                mtu: topo.network_mtu(net, me),
                routes: routes.of_network(net).len() as u64,
                ports: ports(net),
                counters: CounterSummary::default(),
            })
            .collect()
    }
}

/// The counters of a network no longer in the topology.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NetworkCounters {
    pub name: String,
    #[serde(flatten)]
    pub counters: CounterSummary,
}

/// The counters per network, flattened into a stats file beside its
/// totals: their sum over `networks`, `removed_networks` and `no_network`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ByNetwork {
    /// The overlay networks, the default one first, each with the
    /// counters of its packets.
    pub networks: Vec<NetworkStats>,
    /// Counters of networks a reload removed (those with a count), by name:
    /// kept, so that the totals are still their sum.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed_networks: Vec<NetworkCounters>,
    /// Counters of packets of no known network: uplink frames dropped or
    /// left to the kernel before a VNI named their network.
    pub no_network: CounterSummary,
}

/// Pipelines' per-network counters summed by network name.
#[derive(Debug, Default)]
pub struct NetSums {
    unknown: Counters,
    by_name: BTreeMap<String, Counters>,
}

impl NetSums {
    /// Adds one pipeline's counters.
    pub fn add(&mut self, c: &NetCounters) {
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

    /// Gives each of `networks` its counters (zero for one nothing
    /// counted in yet); the rest, networks not among them with a count,
    /// are the removed ones, by name; then the unknown network's.
    pub fn split(mut self, mut networks: Vec<NetworkStats>) -> ByNetwork {
        for n in &mut networks {
            n.counters = self.by_name.remove(&n.name).unwrap_or_default().summary();
        }
        let removed_networks = self
            .by_name
            .into_iter()
            .filter(|(_, c)| *c != Counters::default())
            .map(|(name, c)| NetworkCounters {
                name,
                counters: c.summary(),
            })
            .collect();
        ByNetwork {
            networks,
            removed_networks,
            no_network: self.unknown.summary(),
        }
    }
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
        let ByNetwork {
            networks: nets,
            removed_networks: removed,
            no_network: unknown,
        } = sums.split(vec![network("default"), network("red"), network("blue")]);

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
        let add = |sum: &mut Counters, s: &CounterSummary| {
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
