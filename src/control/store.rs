//! The control thread's side of the topology store: starting the store
//! thread, merging each view of the records into the topology the router
//! runs, the cached view a start falls back on, and the store's stats.
//!
//! A start waits (up to `[store] connect_timeout_ms`) for this host's
//! subnets and a first view; when the store does not answer in time, it
//! starts from the view cached in the state directory by the last run, and
//! refuses to start without one. Later views, and this host's leased
//! subnets in the other networks whenever they change (a reload that adds
//! or removes a network's lease range), arrive through a mio waker and
//! are merged and published as a reload is.
//!
//! Invariant: a leased subnet enters the topology only in a network of the
//! file that has a lease range holding it and gives this host no subnets
//! of its own; a reload that takes one away from attached ports is refused
//! by the control thread as any other change of this host's subnets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::{StoreConfig, Topology};
use crate::metrics::StoreStats;
use crate::store::alloc;
use crate::store::etcd::{Event, NetworkLease, Networks, Own, OwnNetworks, StoreHandle};
use crate::store::merge::{self, Merged};
use crate::store::record::NetworkSubnets;
use crate::store::View;

/// The cache file's name in the state directory (a dot file: not a port
/// record).
const CACHE: &str = ".store-view";
/// Largest cache file read back.
const MAX_CACHE: u64 = 256 << 20;

/// What the cache holds: this host's subnets, its leased subnets in the
/// other networks and the last view.
#[derive(Serialize, Deserialize)]
struct Cache {
    subnets: Vec<IpNet>,
    view: View,
    #[serde(default)]
    networks: BTreeMap<String, IpNet>,
}

pub(super) struct StoreLink {
    handle: Option<StoreHandle>,
    cfg: StoreConfig,
    subnets: Vec<IpNet>,
    /// This host's leased subnets in the other networks, by name, as the
    /// store thread last told them.
    network_subnets: BTreeMap<String, IpNet>,
    /// The networks this host leases a subnet in (a lease range, no
    /// subnets of the file), as the running file gives them: those not in
    /// `network_subnets` have none yet (a full range, a session not up).
    leasing: Vec<String>,
    view: Arc<View>,
    cache: Option<PathBuf>,
    cache_dirty: bool,
    /// Rejected keys with the revision rejected, to log each once.
    rejected: BTreeMap<String, i64>,
    /// Host records with networks this router does not carry, with the
    /// revision seen, to log each once.
    ignored: BTreeMap<String, i64>,
    /// Leases in networks this router does not carry, the same way.
    foreign_leases: BTreeMap<String, i64>,
    stats: StoreStats,
}

impl StoreLink {
    /// Starts the store thread for host `me` of `file` and waits for its
    /// subnets and first view (or the cache); returns the link and the
    /// merged topology.
    pub(super) fn start(
        file: &Topology,
        me: usize,
        state_dir: Option<&Path>,
    ) -> Result<(StoreLink, Merged)> {
        let cfg = file.store.clone().context("no [store]")?;
        let h = &file.hosts[me];
        let cache = state_dir.map(|d| d.join(CACHE));
        let cached = cache.as_deref().and_then(read_cache);
        let own = Own {
            name: h.name.clone(),
            underlay: h.underlay,
            vtep_mac: h.vtep_mac,
            vni: file.overlay.vni,
            udp_port: file.overlay.udp_port,
            subnets: h.subnets.clone(),
            previous: cached
                .as_ref()
                .map(|c| c.subnets.clone())
                .unwrap_or_default(),
            reserved: alloc::reserved(file, me, 0),
            networks: own_networks(file, me),
            previous_networks: cached
                .as_ref()
                .map(|c| c.networks.clone())
                .unwrap_or_default(),
        };
        let handle = StoreHandle::start(cfg.clone(), own)?;
        let deadline = Instant::now() + Duration::from_millis(cfg.connect_timeout_ms.into());
        let (mut subnets, mut view) = (None, None);
        let mut network_subnets = BTreeMap::new();
        while subnets.is_none() || view.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match handle.events.recv_timeout(left) {
                Ok(Event::Subnets(s)) => subnets = Some(s),
                // Before the first view, when this host leases in any.
                Ok(Event::NetworkSubnets(n)) => network_subnets = n,
                Ok(Event::View(v)) => view = Some(v),
                Ok(Event::Fatal(m)) => bail!("topology store: {m}"),
                Err(_) => break,
            }
        }
        let (subnets, view, from_cache) = match (subnets, view, cached) {
            (Some(s), Some(v), _) => (s, v, false),
            (_, _, Some(c)) => {
                tracing::warn!(endpoints = %cfg.endpoints.join(","), cache = %cache.as_deref().unwrap_or(Path::new("")).display(), revision = c.view.revision, "topology store not answering: starting from the cached view; reconnecting in the background");
                network_subnets = c.networks;
                (c.subnets, Arc::new(c.view), true)
            }
            _ => bail!(
                "the topology store ({}) did not answer within {} ms and no cached view exists{}: check that etcd runs and is reachable from this host",
                cfg.endpoints.join(", "),
                cfg.connect_timeout_ms,
                cache
                    .as_ref()
                    .map(|p| format!(" at {}", p.display()))
                    .unwrap_or_else(|| " (no --state-dir)".into())
            ),
        };
        let mut link = StoreLink {
            handle: Some(handle),
            cfg,
            subnets,
            network_subnets,
            view,
            cache,
            cache_dirty: !from_cache,
            rejected: BTreeMap::new(),
            ignored: BTreeMap::new(),
            foreign_leases: BTreeMap::new(),
            leasing: own_networks(file, me).leases.into_keys().collect(),
            stats: StoreStats::default(),
        };
        let merged = link.merge(file.clone(), me);
        Ok((link, merged))
    }

    /// Registers the control thread's waker with the store thread.
    pub(super) fn set_waker(&self, waker: Arc<mio::Waker>) {
        if let Some(h) = &self.handle {
            h.set_waker(waker);
        }
    }

    /// Takes the store thread's events; true when a new view or new leased
    /// subnets came.
    pub(super) fn drain(&mut self) -> bool {
        let Some(h) = &self.handle else {
            return false;
        };
        let mut new = false;
        let mut fatal = None;
        for e in h.events.try_iter() {
            match e {
                Event::View(v) => {
                    self.view = v;
                    new = true;
                }
                // Known since the start; the store thread never changes them.
                Event::Subnets(_) => {}
                Event::NetworkSubnets(n) => {
                    if n != self.network_subnets {
                        tracing::info!(subnets = ?n, "this host's leased subnets in the other networks");
                        self.network_subnets = n;
                        new = true;
                    }
                }
                Event::Fatal(m) => fatal = Some(m),
            }
        }
        if let Some(m) = fatal {
            tracing::error!(
                "topology store stopped: {m}; forwarding on the last topology until a restart"
            );
            if let Some(h) = self.handle.take() {
                self.stats.outages = h
                    .counters
                    .outages
                    .load(std::sync::atomic::Ordering::Relaxed);
                h.stop();
            }
        }
        if new {
            self.cache_dirty = true;
        }
        new
    }

    /// `file` (a topology file as loaded, this host at `me`) with this
    /// host's subnets, leased ones included, and the store's hosts and
    /// links; logs records newly left out.
    pub(super) fn merge(&mut self, mut file: Topology, me: usize) -> Merged {
        file.hosts[me].subnets.clone_from(&self.subnets);
        let leased = leased_in(&file, me, &self.network_subnets);
        file.hosts[me].net_subnets.extend(leased);
        let m = merge::merge(&file, me, self.cfg.layout, &self.view);
        let prefix = &self.cfg.prefix;
        self.rejected = seen_once(
            &self.rejected,
            &self.view,
            &m.rejected,
            |r| &r.key,
            |r| {
                tracing::warn!(key = %format!("{prefix}/{}", r.key), reason = r.reason.name(), "store record left out: {}", r.detail);
            },
        );
        self.ignored = seen_once(
            &self.ignored,
            &self.view,
            &m.ignored,
            |i| &i.key,
            |i| {
                tracing::info!(key = %format!("{prefix}/{}", i.key), networks = %i.networks.join(","), "store host kept without its subnets in networks this router does not carry");
            },
        );
        self.foreign_leases = seen_once(
            &self.foreign_leases,
            &self.view,
            &m.foreign_leases,
            |k| k,
            |k| {
                tracing::info!(key = %format!("{prefix}/{k}"), "store lease in a network this router does not carry");
            },
        );
        let mut by_reason: BTreeMap<&'static str, u64> = BTreeMap::new();
        for r in &m.rejected {
            *by_reason.entry(r.reason.name()).or_default() += 1;
        }
        self.stats.hosts_unknown_networks = self.ignored.len();
        self.stats.leases_unknown_networks = self.foreign_leases.len();
        self.stats.rejected = by_reason;
        self.stats.rejected_keys = m.rejected.iter().take(32).map(|r| r.key.clone()).collect();
        self.stats.hosts = m.topology.hosts.len() - file.hosts.len();
        m
    }

    /// Publishes host `me`'s part in the other networks as `file` (a
    /// reloaded topology file) gives it; the store thread leases and
    /// releases subnets and rewrites this host's record if it changed.
    pub(super) fn set_own_networks(&mut self, file: &Topology, me: usize) {
        let own = own_networks(file, me);
        self.leasing = own.leases.keys().cloned().collect();
        if let Some(h) = &self.handle {
            h.set_networks(own);
        }
    }

    /// Counts a view merged into the running topology.
    pub(super) fn applied(&mut self) {
        self.stats.views_applied += 1;
    }

    /// Writes the cache if a view came since the last write (once a
    /// second at most: the control thread's tick).
    pub(super) fn save_cache(&mut self) {
        if !self.cache_dirty {
            return;
        }
        self.cache_dirty = false;
        let Some(path) = &self.cache else { return };
        let Some(dir) = path.parent() else { return };
        let tmp = dir.join(".store-view.tmp");
        let bytes = match serde_json::to_vec(&Cache {
            subnets: self.subnets.clone(),
            view: (*self.view).clone(),
            networks: self.network_subnets.clone(),
        }) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "encoding the store cache");
                return;
            }
        };
        let r = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = r {
            tracing::warn!(path = %path.display(), error = %e, "writing the store cache");
        }
    }

    pub(super) fn stats(&self) -> StoreStats {
        use std::sync::atomic::Ordering::Relaxed;
        let mut s = self.stats.clone();
        s.subnets = self.subnets.iter().map(ToString::to_string).collect();
        s.network_subnets = self
            .network_subnets
            .iter()
            .map(|(n, s)| (n.clone(), s.to_string()))
            .collect();
        s.networks_unleased = self
            .leasing
            .iter()
            .filter(|n| !self.network_subnets.contains_key(*n))
            .cloned()
            .collect();
        s.revision = self.view.revision;
        if let Some(h) = &self.handle {
            let c = &h.counters;
            s.connected = c.connected.load(Relaxed);
            s.revision = s.revision.max(c.revision.load(Relaxed));
            s.watch_events = c.watch_events.load(Relaxed);
            s.outages = c.outages.load(Relaxed);
            s.compactions = c.compactions.load(Relaxed);
        }
        s
    }

    pub(super) fn stop(&mut self) {
        self.save_cache();
        if let Some(h) = self.handle.take() {
            h.stop();
        }
    }
}

/// Host `me`'s part in the networks other than the default one: its
/// subnets from the file, with each network's VNI, by network name, as its
/// record carries them, and the networks it leases a subnet in (a lease
/// range, no subnets of the file).
fn own_networks(file: &Topology, me: usize) -> OwnNetworks {
    let mut subnets = Networks::new();
    for &(n, s) in &file.hosts[me].net_subnets {
        if let Some(net) = file.networks.get(n) {
            subnets
                .entry(net.name.clone())
                .or_insert_with(|| NetworkSubnets {
                    vni: Some(net.vni),
                    subnets: Vec::new(),
                })
                .subnets
                .push(s);
        }
    }
    let leases = file
        .networks
        .iter()
        .enumerate()
        .skip(1)
        .filter(|&(n, _)| file.hosts[me].subnets_in(n).next().is_none())
        .filter_map(|(n, net)| {
            Some((
                net.name.clone(),
                NetworkLease {
                    vni: net.vni,
                    range: net.lease?,
                    reserved: alloc::reserved(file, me, n),
                },
            ))
        })
        .collect();
    OwnNetworks { subnets, leases }
}

/// Of `leased` (network name to this host's leased subnet), those that
/// are this host's in `file`, as (network index, subnet): in a network of
/// the file whose lease range holds the subnet and that gives host `me`
/// no subnets of its own.
fn leased_in(file: &Topology, me: usize, leased: &BTreeMap<String, IpNet>) -> Vec<(usize, IpNet)> {
    leased
        .iter()
        .filter_map(|(name, &s)| {
            let n = file.network_index(name).filter(|&n| n > 0)?;
            let holds = file.networks[n].lease.is_some_and(|r| r.holds(s));
            (holds && file.hosts[me].subnets_in(n).next().is_none()).then_some((n, s))
        })
        .collect()
}

fn read_cache(path: &Path) -> Option<Cache> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    f.take(MAX_CACHE).read_to_end(&mut bytes).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable store cache");
            None
        }
    }
}

/// The keys of `items` with the revision `view` holds them at; `fresh`
/// runs for each one `seen` did not hold at that revision, so that a
/// record left out or ignored is logged once per change, not per merge.
fn seen_once<T>(
    seen: &BTreeMap<String, i64>,
    view: &View,
    items: &[T],
    key: impl Fn(&T) -> &str,
    mut fresh: impl FnMut(&T),
) -> BTreeMap<String, i64> {
    let mut now = BTreeMap::new();
    for item in items {
        let k = key(item);
        let rev = view.entries.get(k).map_or(0, |e| e.mod_revision);
        if seen.get(k) != Some(&rev) {
            fresh(item);
        }
        now.insert(k.to_owned(), rev);
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Entry;

    /// h1 (this host) and h2 in the file; blue and green with lease
    /// ranges, h1 owning subnets in green from the file; red without one.
    fn file() -> Topology {
        crate::config::parse(
            r#"
[overlay]
vni = 42
[store]
endpoints = ["http://198.18.0.10:2379"]
[[networks]]
name = "blue"
vni = 43
lease_network = "198.19.0.0/16"
[networks.subnets]
h2 = ["198.19.2.0/24"]
[[networks]]
name = "green"
vni = 44
lease_network = "198.19.0.0/16"
[networks.subnets]
h1 = ["198.19.1.0/24"]
[[networks]]
name = "red"
vni = 45
[[hosts]]
name = "h1"
underlay = "198.18.0.1"
subnets = ["198.19.1.0/24"]
[[hosts]]
name = "h2"
underlay = "198.18.0.2"
"#,
            "t.toml",
        )
        .unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn this_host_leases_where_a_network_has_a_range_and_the_file_gives_it_none() {
        let f = file();
        let own = own_networks(&f, 0);
        assert_eq!(own.leases.keys().collect::<Vec<_>>(), ["blue"]);
        let blue = &own.leases["blue"];
        assert_eq!(blue.vni, 43);
        assert_eq!(blue.range, f.networks[1].lease.unwrap());
        // h2's blue subnet and both underlays are never leased.
        assert_eq!(
            blue.reserved,
            [
                net("198.19.2.0/24"),
                net("198.18.0.1/32"),
                net("198.18.0.2/32")
            ]
        );
        assert_eq!(own.subnets.keys().collect::<Vec<_>>(), ["green"]);
        // The default network's: nothing of h2's but its underlay.
        assert_eq!(
            alloc::reserved(&f, 0, 0),
            [net("198.18.0.1/32"), net("198.18.0.2/32")]
        );
        // h2 owns blue subnets: it leases in green only.
        let own = own_networks(&f, 1);
        assert_eq!(own.leases.keys().collect::<Vec<_>>(), ["green"]);
        assert!(own.leases["green"].reserved.contains(&net("198.19.1.0/24")));
    }

    #[test]
    fn a_leased_subnet_counts_only_where_the_file_still_leases_it() {
        let f = file();
        let leased: BTreeMap<String, IpNet> = [
            ("blue", "198.19.7.0/24"),
            ("green", "198.19.8.0/24"),
            ("red", "198.19.9.0/24"),
            ("gone", "198.19.10.0/24"),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_owned(), net(s)))
        .collect();
        // Green: the file gives h1 subnets there. Red: no range. Gone: no
        // such network.
        assert_eq!(leased_in(&f, 0, &leased), [(1, net("198.19.7.0/24"))]);
        // A range that no longer holds it (another length).
        let mut g = f.clone();
        g.networks[1].lease.as_mut().unwrap().subnet_len = 25;
        assert!(leased_in(&g, 0, &leased).is_empty());
    }

    /// A link of h1 of [`file`] holding `leased` in the other networks,
    /// with `records` (key, value) in the store, each written after the
    /// last.
    fn link(f: &Topology, leased: &[(&str, &str)], records: &[(&str, &[u8])]) -> StoreLink {
        StoreLink {
            handle: None,
            cfg: f.store.clone().unwrap(),
            subnets: f.hosts[0].subnets.clone(),
            network_subnets: leased
                .iter()
                .map(|&(n, s)| (n.to_owned(), net(s)))
                .collect(),
            view: Arc::new(View {
                revision: 10,
                entries: records
                    .iter()
                    .zip(2..)
                    .map(|(&(k, v), rev)| {
                        (
                            k.to_owned(),
                            Entry {
                                value: v.to_vec(),
                                create_revision: rev,
                                mod_revision: rev,
                            },
                        )
                    })
                    .collect(),
            }),
            cache: None,
            cache_dirty: false,
            rejected: BTreeMap::new(),
            ignored: BTreeMap::new(),
            foreign_leases: BTreeMap::new(),
            leasing: own_networks(f, 0).leases.into_keys().collect(),
            stats: StoreStats::default(),
        }
    }

    #[test]
    fn the_merged_topology_routes_the_leased_subnet_on_this_host() {
        let f = file();
        let h3 = br#"{"name":"h3","underlay":"198.18.0.3","vtep_mac":"02:42:c6:12:00:03","subnets":["198.19.3.0/24"],"vni":42,"networks":{"blue":{"vni":43,"subnets":["198.19.8.0/24"]}}}"#;
        let mut link = link(&f, &[("blue", "198.19.7.0/24")], &[("hosts/h3", h3)]);
        let m = link.merge(f.clone(), 0);
        assert!(m.rejected.is_empty(), "{:?}", m.rejected);
        let t = &m.topology;
        let blue: Vec<&IpNet> = t.hosts[0].subnets_in(1).collect();
        assert_eq!(blue, [&net("198.19.7.0/24")]);
        let routes = crate::route::compute(t, 0).unwrap();
        let mut owners: Vec<(String, usize)> = routes
            .of_network(1)
            .iter()
            .map(|r| (r.prefix.to_string(), r.owner))
            .collect();
        owners.sort();
        assert_eq!(
            owners,
            [
                ("198.19.2.0/24".to_owned(), 1),
                ("198.19.7.0/24".to_owned(), 0),
                ("198.19.8.0/24".to_owned(), 2)
            ]
        );
        assert_eq!(link.stats().network_subnets["blue"], "198.19.7.0/24");
        assert!(link.stats().networks_unleased.is_empty());
        // Blue's lease gone (a full range, a lost session): named as
        // unleased; green has the file's subnets, red no range.
        link.network_subnets.clear();
        assert_eq!(link.stats().networks_unleased, ["blue"]);
    }

    /// A static record that appears after this host leased its subnet
    /// (the planner reserves only what records held at the lease) and
    /// holds that subnet is left out as an overlap, named and counted:
    /// at this router the file's host comes first, at the others this
    /// host's record is the older one.
    #[test]
    fn a_store_record_that_holds_a_leased_subnet_later_is_left_out() {
        let f = file();
        let h9 = br#"{"name":"h9","underlay":"198.18.0.9","vtep_mac":"02:42:c6:12:00:09","subnets":[],"vni":42,"networks":{"blue":{"vni":43,"subnets":["198.19.7.128/25"]}}}"#;
        let mut link = link(&f, &[("blue", "198.19.7.0/24")], &[("hosts/h9", h9)]);
        let m = link.merge(f.clone(), 0);
        assert_eq!(m.rejected.len(), 1);
        assert_eq!(m.rejected[0].key, "hosts/h9");
        assert_eq!(m.rejected[0].reason, crate::store::Reject::Overlap);
        assert!(m.topology.hosts.iter().all(|h| h.name != "h9"));
        let s = link.stats();
        assert_eq!(s.rejected.get("overlap"), Some(&1));
        assert_eq!(s.rejected_keys, ["hosts/h9"]);
        assert_eq!(s.hosts, 0);
    }
}
