//! The control thread's side of the topology store: starting the store
//! thread, merging each view of the records into the topology the router
//! runs, the cached view a start falls back on, and the store's stats.
//!
//! A start waits (up to `[store] connect_timeout_ms`) for this host's
//! subnets and a first view; when the store does not answer in time, it
//! starts from the view cached in the state directory by the last run, and
//! refuses to start without one. Later views arrive through a mio waker
//! and are merged and published as a reload is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::{StoreConfig, Topology};
use crate::metrics::StoreStats;
use crate::store::etcd::{Event, Networks, Own, StoreHandle};
use crate::store::merge::{self, Merged};
use crate::store::record::NetworkSubnets;
use crate::store::View;

/// The cache file's name in the state directory (a dot file: not a port
/// record).
const CACHE: &str = ".store-view";
/// Largest cache file read back.
const MAX_CACHE: u64 = 256 << 20;

/// What the cache holds: this host's subnets and the last view.
#[derive(Serialize, Deserialize)]
struct Cache {
    subnets: Vec<IpNet>,
    view: View,
}

pub(super) struct StoreLink {
    handle: Option<StoreHandle>,
    cfg: StoreConfig,
    subnets: Vec<IpNet>,
    view: Arc<View>,
    cache: Option<PathBuf>,
    cache_dirty: bool,
    /// Rejected keys with the revision rejected, to log each once.
    rejected: BTreeMap<String, i64>,
    /// Host records with networks this router does not carry, with the
    /// revision seen, to log each once.
    ignored: BTreeMap<String, i64>,
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
            networks: own_networks(file, me),
        };
        let handle = StoreHandle::start(cfg.clone(), own)?;
        let deadline = Instant::now() + Duration::from_millis(cfg.connect_timeout_ms.into());
        let (mut subnets, mut view) = (None, None);
        while subnets.is_none() || view.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match handle.events.recv_timeout(left) {
                Ok(Event::Subnets(s)) => subnets = Some(s),
                Ok(Event::View(v)) => view = Some(v),
                Ok(Event::Fatal(m)) => bail!("topology store: {m}"),
                Err(_) => break,
            }
        }
        let (subnets, view, from_cache) = match (subnets, view, cached) {
            (Some(s), Some(v), _) => (s, v, false),
            (_, _, Some(c)) => {
                tracing::warn!(endpoints = %cfg.endpoints.join(","), cache = %cache.as_deref().unwrap_or(Path::new("")).display(), revision = c.view.revision, "topology store not answering: starting from the cached view; reconnecting in the background");
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
            view,
            cache,
            cache_dirty: !from_cache,
            rejected: BTreeMap::new(),
            ignored: BTreeMap::new(),
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

    /// Takes the store thread's events; true when a new view came.
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
    /// host's subnets and the store's hosts and links; logs records newly
    /// left out.
    pub(super) fn merge(&mut self, mut file: Topology, me: usize) -> Merged {
        file.hosts[me].subnets.clone_from(&self.subnets);
        let m = merge::merge(&file, me, self.cfg.layout, &self.view);
        let mut now = BTreeMap::new();
        let mut by_reason: BTreeMap<&'static str, u64> = BTreeMap::new();
        for r in &m.rejected {
            let rev = self.view.entries.get(&r.key).map_or(0, |e| e.mod_revision);
            if self.rejected.get(&r.key) != Some(&rev) {
                tracing::warn!(key = %format!("{}/{}", self.cfg.prefix, r.key), reason = r.reason.name(), "store record left out: {}", r.detail);
            }
            now.insert(r.key.clone(), rev);
            *by_reason.entry(r.reason.name()).or_default() += 1;
        }
        self.rejected = now;
        let mut now = BTreeMap::new();
        for i in &m.ignored {
            let rev = self.view.entries.get(&i.key).map_or(0, |e| e.mod_revision);
            if self.ignored.get(&i.key) != Some(&rev) {
                tracing::info!(key = %format!("{}/{}", self.cfg.prefix, i.key), networks = %i.networks.join(","), "store host kept without its subnets in networks this router does not carry");
            }
            now.insert(i.key.clone(), rev);
        }
        self.ignored = now;
        self.stats.hosts_unknown_networks = self.ignored.len();
        self.stats.rejected = by_reason;
        self.stats.rejected_keys = m.rejected.iter().take(32).map(|r| r.key.clone()).collect();
        self.stats.hosts = m.topology.hosts.len() - file.hosts.len();
        m
    }

    /// Publishes host `me`'s subnets in the other networks as `file` (a
    /// reloaded topology file) gives them; the store thread rewrites this
    /// host's record if they changed.
    pub(super) fn set_own_networks(&self, file: &Topology, me: usize) {
        if let Some(h) = &self.handle {
            h.set_networks(own_networks(file, me));
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

/// Host `me`'s subnets in the networks other than the default one, with
/// each network's VNI, by network name, as its record carries them.
fn own_networks(file: &Topology, me: usize) -> Networks {
    let mut out = Networks::new();
    for &(n, s) in &file.hosts[me].net_subnets {
        if let Some(net) = file.networks.get(n) {
            out.entry(net.name.clone())
                .or_insert_with(|| NetworkSubnets {
                    vni: Some(net.vni),
                    subnets: Vec::new(),
                })
                .subnets
                .push(s);
        }
    }
    out
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
