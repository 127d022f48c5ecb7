//! The etcd v3 client: this host's records under a lease it keeps alive,
//! its subnets leased by transaction (in the default network and in every
//! other network with a lease range), and a watch of the prefix, on a
//! thread and a single-threaded runtime of its own.
//!
//! Sessions: connect, take a lease (the previous one while it lives),
//! claim the subnets and write this host's record under it, list the prefix
//! once (or resume the watch from the last revision seen), then watch and
//! keep the lease alive. A change of the networks this host leases in (a
//! reload) leases and releases their subnets within the running session.
//! Any error ends the session; the next one starts after a backoff (100 ms
//! doubling to 5 s) and resumes where the last one stopped, listing again
//! only when the watch's start was compacted away.
//! While no session runs, no [`Event::View`] is sent: the router forwards
//! on the last topology and no route flaps.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use ipnet::IpNet;

use crate::config::{LeaseRange, MacAddr, StoreConfig, StoreLayout, DEFAULT_NETWORK};

use super::record::{self, FlannelConfig, HostRecord, SubnetClaim};
use super::{alloc, Entry, View};

/// This host, as it publishes itself.
#[derive(Debug, Clone)]
pub struct Own {
    pub name: String,
    pub underlay: IpAddr,
    pub vtep_mac: MacAddr,
    pub vni: u32,
    pub udp_port: u16,
    /// Subnets the file gives this host in the default network; none:
    /// lease one.
    pub subnets: Vec<IpNet>,
    /// The subnets it held before in the default network (from the
    /// cache), tried first.
    pub previous: Vec<IpNet>,
    /// What no lease of the default network may take: the other file
    /// hosts' subnets in it and the file's underlay addresses (what the
    /// store's host records hold is added at each attempt).
    pub reserved: Vec<IpNet>,
    /// Its part in the other networks as at the start: later ones come
    /// through [`StoreHandle::set_networks`].
    pub networks: OwnNetworks,
    /// The subnets it leased before in the other networks (from the
    /// cache), by network name, tried first.
    pub previous_networks: BTreeMap<String, IpNet>,
}

/// This host's part in the networks other than the default one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnNetworks {
    /// Its subnets from the file, with each network's VNI, by network
    /// name.
    pub subnets: Networks,
    /// The networks it leases a subnet in (the network has a lease range,
    /// the file gives this host no subnet in it), by name.
    pub leases: BTreeMap<String, NetworkLease>,
}

/// A network this host leases its subnet in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkLease {
    /// The network's VNI, for this host's record.
    pub vni: u32,
    pub range: LeaseRange,
    /// What no lease may take: the other file hosts' subnets in this
    /// network and the file's underlay addresses (what the store's host
    /// records hold is added at each attempt).
    pub reserved: Vec<IpNet>,
}

/// What the store thread tells the control thread.
#[derive(Debug)]
pub enum Event {
    /// This host's subnets in the default network, configured or leased;
    /// sent once, before the first view.
    Subnets(Vec<IpNet>),
    /// This host's leased subnets in the other networks, by network name;
    /// sent before the first view and again whenever they change.
    NetworkSubnets(BTreeMap<String, IpNet>),
    /// The records as of a revision.
    View(Arc<View>),
    /// The store and this host's configuration cannot work together (a
    /// flannel network of another VNI, a range with no free subnet); the
    /// thread stops.
    Fatal(String),
}

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct StoreCounters {
    pub connected: AtomicBool,
    pub revision: AtomicI64,
    pub watch_events: AtomicU64,
    pub views: AtomicU64,
    pub outages: AtomicU64,
    pub sessions: AtomicU64,
    pub compactions: AtomicU64,
}

/// The running store thread.
pub struct StoreHandle {
    pub events: mpsc::Receiver<Event>,
    pub counters: Arc<StoreCounters>,
    waker: Arc<Mutex<Option<Arc<mio::Waker>>>>,
    stop: Arc<tokio::sync::Notify>,
    /// This host's part in the other networks (a reload may change it).
    networks: tokio::sync::watch::Sender<OwnNetworks>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Subnets in the networks other than the default one, with their VNIs,
/// by network name.
pub type Networks = BTreeMap<String, record::NetworkSubnets>;

impl StoreHandle {
    /// Starts the thread; it connects in the background.
    pub fn start(cfg: StoreConfig, own: Own) -> Result<StoreHandle> {
        let password = match &cfg.password_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading store.password_file {}", p.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            ),
            None => None,
        };
        let tls = tls_options(&cfg)?;
        let (tx, events) = mpsc::channel();
        let counters = Arc::new(StoreCounters::default());
        let waker: Arc<Mutex<Option<Arc<mio::Waker>>>> = Arc::default();
        let stop = Arc::new(tokio::sync::Notify::new());
        let (networks, networks_rx) = tokio::sync::watch::channel(own.networks.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the store thread's runtime")?;
        let mut task = Task {
            cfg,
            own,
            password,
            tls,
            out: Out {
                tx,
                waker: waker.clone(),
            },
            counters: counters.clone(),
            lease: None,
            subnets: None,
            networks: networks_rx,
            wants: OwnNetworks::default(),
            leased: BTreeMap::new(),
            sent: None,
            view: View::default(),
            last_write: Default::default(),
        };
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("vxr-store".into())
            .spawn(move || {
                rt.block_on(async {
                    tokio::select! {
                        () = task.run() => {}
                        () = stop2.notified() => {}
                    }
                })
            })
            .context("starting the store thread")?;
        Ok(StoreHandle {
            events,
            counters,
            waker,
            stop,
            networks,
            thread: Some(thread),
        })
    }

    /// This host's part in the other networks from now on; a change
    /// leases and releases subnets as it asks and rewrites this host's
    /// record (at once while a session runs, else when the next one
    /// starts).
    pub fn set_networks(&self, networks: OwnNetworks) {
        self.networks.send_if_modified(|n| {
            let changed = *n != networks;
            *n = networks;
            changed
        });
    }

    /// Wakes `waker` after each event from now on (and once now, for any
    /// event already queued).
    pub fn set_waker(&self, waker: Arc<mio::Waker>) {
        let _ = waker.wake();
        if let Ok(mut w) = self.waker.lock() {
            *w = Some(waker);
        }
    }

    /// Stops the thread. The lease is left to expire: a router that starts
    /// again within the TTL takes its records over without a flap at the
    /// other hosts.
    pub fn stop(mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StoreHandle {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

fn tls_options(cfg: &StoreConfig) -> Result<Option<TlsOptions>> {
    if cfg.ca_file.is_none() && cfg.cert_file.is_none() {
        return Ok(None);
    }
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p).with_context(|| format!("reading store.{what} {}", p.display()))
    };
    let mut tls = TlsOptions::new();
    if let Some(ca) = &cfg.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca, "ca_file")?));
    }
    if let (Some(c), Some(k)) = (&cfg.cert_file, &cfg.key_file) {
        tls = tls.identity(Identity::from_pem(
            read(c, "cert_file")?,
            read(k, "key_file")?,
        ));
    }
    Ok(Some(tls))
}

struct Out {
    tx: mpsc::Sender<Event>,
    waker: Arc<Mutex<Option<Arc<mio::Waker>>>>,
}

impl Out {
    fn send(&self, e: Event) {
        let _ = self.tx.send(e);
        if let Some(w) = self.waker.lock().ok().and_then(|w| w.clone()) {
            let _ = w.wake();
        }
    }
}

struct Task {
    cfg: StoreConfig,
    own: Own,
    password: Option<String>,
    tls: Option<TlsOptions>,
    out: Out,
    counters: Arc<StoreCounters>,
    lease: Option<i64>,
    /// This host's subnets once known.
    subnets: Option<Vec<IpNet>>,
    /// This host's part in the other networks, as the control thread
    /// last set it.
    networks: tokio::sync::watch::Receiver<OwnNetworks>,
    /// The part the leases and the record were last made for.
    wants: OwnNetworks,
    /// This host's leased subnets in the other networks, by name.
    leased: BTreeMap<String, IpNet>,
    /// `leased` as last sent to the control thread.
    sent: Option<BTreeMap<String, IpNet>>,
    /// The records as last seen; `revision` 0 until the first list.
    view: View,
    /// The mod revision of each key this host wrote last.
    last_write: std::collections::BTreeMap<String, i64>,
}

impl Task {
    async fn run(&mut self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            self.counters.sessions.fetch_add(1, Ordering::Relaxed);
            let err = match self.session().await {
                Ok(never) => match never {},
                Err(e) => e,
            };
            if let Some(f) = err.downcast_ref::<FatalError>() {
                tracing::error!("store: {f}");
                self.out.send(Event::Fatal(f.0.clone()));
                return;
            }
            if self.counters.connected.swap(false, Ordering::Relaxed) {
                self.counters.outages.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %format!("{err:#}"), "store connection lost; forwarding on the last topology, reconnecting");
                backoff = Duration::from_millis(100);
            } else {
                tracing::warn!(error = %format!("{err:#}"), retry_ms = backoff.as_millis() as u64, "store unreachable");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.cfg.prefix)
    }

    async fn connect(&self) -> Result<Client> {
        let timeout = Duration::from_millis(self.cfg.connect_timeout_ms.into());
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        if let (Some(user), Some(pw)) = (&self.cfg.username, &self.password) {
            opts = opts.with_user(user.clone(), pw.clone());
        }
        if let Some(tls) = &self.tls {
            opts = opts.with_tls(tls.clone());
        }
        let client =
            tokio::time::timeout(timeout, Client::connect(&self.cfg.endpoints, Some(opts)))
                .await
                .map_err(|_| {
                    anyhow!(
                        "no answer from {} within {timeout:?}",
                        self.cfg.endpoints.join(", ")
                    )
                })??;
        Ok(client)
    }

    /// One session; returns only by error.
    async fn session(&mut self) -> Result<std::convert::Infallible> {
        let mut client = self.connect().await?;
        if self.cfg.layout == StoreLayout::Flannel {
            self.check_flannel_config(&mut client).await?;
        }
        let lease = match self.lease {
            Some(id) if client.lease_time_to_live(id, None).await?.ttl() > 0 => id,
            _ => {
                let id = client
                    .lease_grant(self.cfg.lease_ttl_s.into(), None)
                    .await
                    .context("granting a lease")?
                    .id();
                self.lease = Some(id);
                id
            }
        };
        let subnets = match self.subnets.clone() {
            Some(s) => {
                if self.own.subnets.is_empty() || self.cfg.layout == StoreLayout::Flannel {
                    let dir = self.key(&record::lease_dir(DEFAULT_NETWORK));
                    self.reclaim(&mut client, lease, &dir, &s).await?;
                }
                s
            }
            None => {
                let s = self.claim(&mut client, lease).await?;
                self.subnets = Some(s.clone());
                self.out.send(Event::Subnets(s.clone()));
                s
            }
        };
        if self.cfg.layout == StoreLayout::Vxrouter {
            self.sync_networks(&mut client, lease, true).await?;
            self.put_record(&mut client, lease, &subnets).await?;
        }
        let prefix = self.key("");
        let (mut keeper, mut alive) = client.lease_keep_alive(lease).await?;
        let mut watch = self.start_watch(&mut client, &prefix).await?;
        self.counters.connected.store(true, Ordering::Relaxed);
        tracing::info!(endpoints = %self.cfg.endpoints.join(","), revision = self.view.revision, lease, "store connected");
        let mut tick = tokio::time::interval(Duration::from_millis(
            (u64::from(self.cfg.lease_ttl_s) * 1000 / 3).max(500),
        ));
        let mut republish = self.cfg.layout == StoreLayout::Vxrouter;
        loop {
            tokio::select! {
                _ = tick.tick() => keeper.keep_alive().await.context("lease keep-alive")?,
                r = self.networks.changed(), if republish => match r {
                    Ok(()) => {
                        self.sync_networks(&mut client, lease, false).await?;
                        self.put_record(&mut client, lease, &subnets).await?;
                    }
                    // The handle is gone: the thread is stopping.
                    Err(_) => republish = false,
                },
                m = alive.message() => match m.context("lease keep-alive")? {
                    Some(r) if r.ttl() > 0 => {}
                    _ => {
                        self.lease = None;
                        bail!("lease {lease} expired");
                    }
                },
                m = watch.message() => {
                    let Some(resp) = m.context("watch")? else {
                        bail!("watch closed by the server");
                    };
                    if resp.compact_revision() > 0 || resp.canceled() {
                        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(compacted = resp.compact_revision(), reason = resp.cancel_reason(), "store watch fell behind a compaction: listing again");
                        self.view.revision = 0;
                        watch = self.start_watch(&mut client, &prefix).await?;
                        continue;
                    }
                    let events = resp.events();
                    if events.is_empty() {
                        continue;
                    }
                    for e in events {
                        let Some(kv) = e.kv() else { continue };
                        let Some(key) = relative(&prefix, kv.key()) else { continue };
                        match e.event_type() {
                            EventType::Put => {
                                self.view.entries.insert(key, Entry {
                                    value: kv.value().to_vec(),
                                    create_revision: kv.create_revision(),
                                    mod_revision: kv.mod_revision(),
                                });
                            }
                            EventType::Delete => {
                                self.view.entries.remove(&key);
                            }
                        }
                        self.view.revision = self.view.revision.max(kv.mod_revision());
                    }
                    if let Some(h) = resp.header() {
                        self.view.revision = self.view.revision.max(h.revision());
                    }
                    self.counters.watch_events.fetch_add(events.len() as u64, Ordering::Relaxed);
                    self.publish_view();
                }
            }
        }
    }

    /// Writes this host's record (vxrouter layout) under `lease`.
    async fn put_record(
        &mut self,
        client: &mut Client,
        lease: i64,
        subnets: &[IpNet],
    ) -> Result<()> {
        let mut networks = self.wants.subnets.clone();
        for (name, &net) in &self.leased {
            if let Some(l) = self.wants.leases.get(name) {
                networks.insert(
                    name.clone(),
                    record::NetworkSubnets {
                        vni: Some(l.vni),
                        subnets: vec![net],
                    },
                );
            }
        }
        let rec = HostRecord {
            name: self.own.name.clone(),
            underlay: self.own.underlay,
            vtep_mac: self.own.vtep_mac,
            subnets: subnets.to_vec(),
            vni: self.own.vni,
            networks: record::Networks(networks),
        };
        let key = self.key(&format!("hosts/{}", self.own.name));
        let value = record::encode_host(&rec);
        let r = client
            .put(
                key.clone(),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .context("writing this host's record")?;
        if let Some(h) = r.header() {
            self.last_write.insert(key, h.revision());
        }
        Ok(())
    }

    /// A watch from the revision after the last one seen; without one
    /// (first session, compaction), the prefix listed first.
    async fn start_watch(
        &mut self,
        client: &mut Client,
        prefix: &str,
    ) -> Result<etcd_client::WatchStream> {
        if self.view.revision == 0 {
            let r = client
                .get(prefix, Some(GetOptions::new().with_prefix()))
                .await
                .context("listing the prefix")?;
            let mut view = View {
                revision: r.header().map_or(0, |h| h.revision()),
                entries: Default::default(),
            };
            for kv in r.kvs() {
                if let Some(key) = relative(prefix, kv.key()) {
                    view.entries.insert(
                        key,
                        Entry {
                            value: kv.value().to_vec(),
                            create_revision: kv.create_revision(),
                            mod_revision: kv.mod_revision(),
                        },
                    );
                }
            }
            self.view = view;
            self.publish_view();
        }
        let w = client
            .watch(
                prefix,
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(self.view.revision + 1),
                ),
            )
            .await
            .context("starting the watch")?;
        Ok(w)
    }

    fn publish_view(&self) {
        self.counters
            .revision
            .store(self.view.revision, Ordering::Relaxed);
        self.counters.views.fetch_add(1, Ordering::Relaxed);
        self.out.send(Event::View(Arc::new(self.view.clone())));
    }

    async fn check_flannel_config(&self, client: &mut Client) -> Result<()> {
        let key = self.key("config");
        let r = client
            .get(key.clone(), None)
            .await
            .context("reading the flannel config")?;
        let Some(kv) = r.kvs().first() else {
            return Err(anyhow::Error::new(FatalError(format!(
                "no flannel network config at {key}: write it (etcdctl put {key} '{{\"Network\":...,\"Backend\":{{\"Type\":\"vxlan\"}}}}') before the router starts"
            ))));
        };
        let cfg: FlannelConfig = serde_json::from_slice(kv.value()).map_err(|e| {
            anyhow::Error::new(FatalError(format!(
                "{key} is not a flannel network config: {e}"
            )))
        })?;
        if let Some(p) = cfg.problem() {
            return Err(anyhow::Error::new(FatalError(format!("{key}: {p}"))));
        }
        if cfg.vni() != self.own.vni || cfg.port() != self.own.udp_port {
            return Err(anyhow::Error::new(FatalError(format!(
                "{key} says VNI {} on UDP port {}, this router's [overlay] says VNI {} on port {}: set overlay.vni and overlay.udp_port to flannel's",
                cfg.vni(),
                cfg.port(),
                self.own.vni,
                self.own.udp_port
            ))));
        }
        Ok(())
    }

    /// The range and length subnets of the default network are leased
    /// from, per layout.
    async fn range(&self, client: &mut Client) -> Result<Option<LeaseRange>> {
        match self.cfg.layout {
            StoreLayout::Vxrouter => Ok(self.cfg.lease_range()),
            StoreLayout::Flannel => {
                let r = client.get(self.key("config"), None).await?;
                let cfg: Option<FlannelConfig> = r
                    .kvs()
                    .first()
                    .and_then(|kv| serde_json::from_slice(kv.value()).ok());
                Ok(cfg.map(|c| LeaseRange {
                    network: IpNet::V4(c.network),
                    subnet_len: c.subnet_len(),
                }))
            }
        }
    }

    /// The value this host's subnet lease holds.
    fn claim_value(&self) -> Result<String> {
        Ok(match self.cfg.layout {
            StoreLayout::Vxrouter => serde_json::to_string(&SubnetClaim {
                host: self.own.name.clone(),
            })?,
            StoreLayout::Flannel => match self.own.underlay {
                IpAddr::V4(a) => record::encode_flannel_lease(a, self.own.vtep_mac, self.own.vni),
                IpAddr::V6(_) => {
                    return Err(anyhow::Error::new(FatalError(
                        "the flannel layout needs an IPv4 underlay".into(),
                    )))
                }
            },
        })
    }

    /// Whether a lease value is this host's.
    fn is_mine(&self, value: &[u8]) -> bool {
        match self.cfg.layout {
            StoreLayout::Vxrouter => {
                serde_json::from_slice::<SubnetClaim>(value).is_ok_and(|c| c.host == self.own.name)
            }
            StoreLayout::Flannel => serde_json::from_slice::<record::FlannelLease>(value)
                .is_ok_and(|l| IpAddr::V4(l.public_ip) == self.own.underlay),
        }
    }

    /// This host's subnets in the default network: the file's, else the
    /// lease it holds already (a restart within the TTL), else the one it
    /// held before, else a new one won by transaction.
    async fn claim(&mut self, client: &mut Client, lease: i64) -> Result<Vec<IpNet>> {
        let flannel = self.cfg.layout == StoreLayout::Flannel;
        if !self.own.subnets.is_empty() && !flannel {
            return Ok(self.own.subnets.clone());
        }
        // A flannel host with a configured subnet leases exactly that one.
        let wanted: Vec<IpNet> = if flannel {
            self.own.subnets.clone()
        } else {
            Vec::new()
        };
        let Some(range) = self.range(client).await? else {
            return Err(anyhow::Error::new(FatalError(
                "this host has no subnets and [store] has no network to lease one from".into(),
            )));
        };
        let ask = alloc::Ask {
            range,
            wanted: &wanted,
            previous: &self.own.previous,
            reserved: &self.own.reserved,
            seed: alloc::seed(&self.own.name),
        };
        let net = self
            .lease_subnet(client, lease, DEFAULT_NETWORK, self.own.vni, &ask)
            .await?;
        Ok(vec![net])
    }

    /// A subnet leased under `lease` in network `network` (of VNI
    /// `vni`) as `ask` asks: its lease directory and (vxrouter layout) the
    /// host records listed at one revision, planned ([`alloc::plan`]) with
    /// what the records hold reserved too ([`alloc::reserved_by_records`]),
    /// then taken by transaction, listed again when another host won the
    /// race.
    async fn lease_subnet(
        &self,
        client: &mut Client,
        lease: i64,
        network: &str,
        vni: u32,
        ask: &alloc::Ask<'_>,
    ) -> Result<IpNet> {
        let dir = self.key(&record::lease_dir(network));
        let hosts = self.key("hosts/");
        let what = if network == DEFAULT_NETWORK {
            String::new()
        } else {
            format!(" in network {network:?}")
        };
        let value = self.claim_value()?;
        let put = |key: &str| {
            TxnOp::put(
                key,
                value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )
        };
        let prefixed = || Some(GetOptions::new().with_prefix());
        let mut lists = vec![TxnOp::get(dir.clone(), prefixed())];
        if self.cfg.layout == StoreLayout::Vxrouter {
            lists.push(TxnOp::get(hosts.clone(), prefixed()));
        }
        for attempt in 0..64 {
            // One read-only transaction: both lists at one revision.
            let r = client
                .txn(Txn::new().and_then(lists.clone()))
                .await
                .context("listing subnet leases and host records")?;
            let mut gets = r.op_responses().into_iter().filter_map(|o| match o {
                TxnOpResponse::Get(g) => Some(g),
                _ => None,
            });
            let leases = gets.next().context("no lease list in the answer")?;
            let records = gets.next();
            let held: Vec<alloc::Held> = leases
                .kvs()
                .iter()
                .filter_map(|kv| {
                    Some(alloc::Held {
                        subnet: relative(&dir, kv.key())
                            .and_then(|k| record::parse_subnet_key(&k))?,
                        mine: self.is_mine(kv.value()),
                        mod_revision: kv.mod_revision(),
                    })
                })
                .collect();
            let names: Vec<(String, &[u8])> = records
                .as_ref()
                .map_or(&[][..], |r| r.kvs())
                .iter()
                .filter_map(|kv| Some((relative(&hosts, kv.key())?, kv.value())))
                .collect();
            let mut reserved = ask.reserved.to_vec();
            reserved.extend(alloc::reserved_by_records(
                names.iter().map(|(n, v)| (n.as_str(), *v)),
                &self.own.name,
                self.own.vni,
                network,
                vni,
            ));
            let ask = &alloc::Ask {
                reserved: &reserved,
                ..*ask
            };
            let plan = alloc::plan(ask, &held, attempt);
            for h in &plan.take_over {
                // Ours from before: take it over under the new lease.
                let key = format!("{dir}{}", record::subnet_key(h.subnet));
                let txn = Txn::new()
                    .when([Compare::mod_revision(
                        key.clone(),
                        CompareOp::Equal,
                        h.mod_revision,
                    )])
                    .and_then([put(&key)]);
                if client.txn(txn).await?.succeeded() {
                    tracing::info!(subnet = %h.subnet, "store: took over this host's subnet lease{what}");
                    return Ok(h.subnet);
                }
            }
            let Some(first) = plan.propose else {
                return Err(anyhow::Error::new(FatalError(format!(
                    "no free /{} subnet left in {}{what}{}",
                    ask.range.subnet_len,
                    ask.range.network,
                    match ask.wanted.first() {
                        Some(w) => format!(" (wanted {w})"),
                        None => String::new(),
                    }
                ))));
            };
            let key = format!("{dir}{}", record::subnet_key(first));
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([put(&key)]);
            let r = client.txn(txn).await.context("leasing a subnet")?;
            if r.succeeded() {
                tracing::info!(subnet = %first, "store: leased a subnet{what}");
                return Ok(first);
            }
            // Another host won it between our list and our transaction.
        }
        bail!("lost the race for a subnet{what} 64 times in a row")
    }

    /// After a new session: this host's leased `subnets` in the lease
    /// directory `dir` back under the (possibly new) lease, unless another
    /// host holds them now.
    async fn reclaim(
        &mut self,
        client: &mut Client,
        lease: i64,
        dir: &str,
        subnets: &[IpNet],
    ) -> Result<()> {
        let value = self.claim_value()?;
        for &net in subnets {
            let key = format!("{dir}{}", record::subnet_key(net));
            let r = client.get(key.clone(), None).await?;
            let cmp = match r.kvs().first() {
                None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                Some(kv) if self.is_mine(kv.value()) => {
                    Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision())
                }
                Some(_) => {
                    tracing::error!(subnet = %net, lease_key = %key, "store: this host's subnet is leased by another host now (this host's lease expired while it was cut off); the newer record loses at every router");
                    continue;
                }
            };
            let txn = Txn::new().when([cmp]).and_then([TxnOp::put(
                key,
                value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
            client.txn(txn).await?;
        }
        Ok(())
    }

    /// This host's leases in the other networks as the control thread
    /// asks for them now: those of a network it no longer leases in (or
    /// whose range no longer holds them) released, the missing ones
    /// leased; the control thread told when they changed. `fresh`: a new
    /// session, whose lease may be new: the ones kept go back under it.
    ///
    /// A network whose range has no free subnet is left without one (the
    /// router's other networks go on), logged, and tried again at the next
    /// session or change.
    async fn sync_networks(&mut self, client: &mut Client, lease: i64, fresh: bool) -> Result<()> {
        let wants = self.networks.borrow_and_update().clone();
        for (name, net) in self.leased.clone() {
            let dir = self.key(&record::lease_dir(&name));
            if wants.leases.get(&name).is_some_and(|l| l.range.holds(net)) {
                if fresh {
                    self.reclaim(client, lease, &dir, &[net]).await?;
                }
                continue;
            }
            // Only while it is still this lease's: a newer holder's stays.
            let key = format!("{dir}{}", record::subnet_key(net));
            let txn = Txn::new()
                .when([Compare::lease(key.clone(), CompareOp::Equal, lease)])
                .and_then([TxnOp::delete(key, None)]);
            client.txn(txn).await.context("releasing a subnet lease")?;
            self.leased.remove(&name);
            tracing::info!(network = %name, subnet = %net, "store: released this host's subnet lease (the network is gone, has no lease range or another one, or the file gives this host subnets in it)");
        }
        for (name, want) in &wants.leases {
            if self.leased.contains_key(name) {
                continue;
            }
            let previous: Vec<IpNet> = self
                .own
                .previous_networks
                .get(name)
                .copied()
                .into_iter()
                .collect();
            let ask = alloc::Ask {
                range: want.range,
                wanted: &[],
                previous: &previous,
                reserved: &want.reserved,
                seed: alloc::seed(&self.own.name),
            };
            match self.lease_subnet(client, lease, name, want.vni, &ask).await {
                Ok(net) => {
                    self.leased.insert(name.clone(), net);
                }
                Err(e) if e.is::<FatalError>() => {
                    tracing::error!(network = %name, "store: {e:#}; this host has no subnet in that network until the next reconnect or reload");
                }
                Err(e) => return Err(e),
            }
        }
        self.wants = wants;
        if self.sent.as_ref() != Some(&self.leased) {
            self.sent = Some(self.leased.clone());
            self.out.send(Event::NetworkSubnets(self.leased.clone()));
        }
        Ok(())
    }
}

/// An error no retry mends.
#[derive(Debug)]
struct FatalError(String);

impl std::fmt::Display for FatalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FatalError {}

/// `key` without `prefix`, if it is under it. A key that is not UTF-8
/// keeps its bytes as replacement characters: the merge then leaves it
/// out as an unknown key, counted, rather than unseen.
fn relative(prefix: &str, key: &[u8]) -> Option<String> {
    let k = String::from_utf8_lossy(key);
    let rest = k.strip_prefix(prefix)?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    (!rest.is_empty()).then(|| rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_taken_relative_to_the_prefix_and_none_is_lost() {
        let p = "/vxrouter/network/";
        assert_eq!(
            relative(p, b"/vxrouter/network/hosts/h1").as_deref(),
            Some("hosts/h1")
        );
        assert_eq!(relative(p, b"/vxrouter/network/"), None);
        assert_eq!(relative(p, b"/other/hosts/h1"), None);
        // Not UTF-8: still seen, so that the merge counts it.
        assert_eq!(
            relative(p, b"/vxrouter/network/hosts/\xff").as_deref(),
            Some("hosts/\u{fffd}")
        );
    }
}
