//! Live attach and detach of container ports through the control socket.
//!
//! Attach: check the request against the host ([`super::ports::PortSet::admit`]), build
//! the container's interface in its namespace ([`crate::host::sandbox`]),
//! open the port's queues, publish tables that route to the port, then
//! hand the queues to every worker and wait until each polls them. Detach:
//! publish tables without the port, take its queues back from every
//! worker (each flushes them first), then remove the interface. Frames the
//! container sends while its port is taken back drop as `port_down`.
//!
//! Invariants: a failed attach leaves nothing behind (no device, no queue,
//! no index taken); the other ports forward throughout, since workers
//! change their port set between bursts and tables are swapped whole; an
//! attached port's interface belongs to its container and outlives the
//! router (only detach removes it).

use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::api::{self, ApiError, ErrorCode, PortInfo};
use crate::config::{self, MacAddr, PortConfig, PortKind};
use crate::host::{sandbox, HostError};
use crate::port::tun::TunPort;

use super::ports::{self, Attachment, Slot};
use super::state::Record;
use super::{internal, setup, Republish, Router};

/// Why a recorded port is not taken back.
struct Gone(String);

impl Router<'_> {
    /// Attaches a container port as `a` asks; see the module doc.
    pub(super) fn attach(&mut self, a: api::Attach) -> Result<PortInfo, ApiError> {
        if let Some(index) = self.ports.find_id(&a.id) {
            let slot = self.ports.get(index).expect("found by id");
            let same = slot.attachment.as_ref().is_some_and(|x| {
                x.netns == a.netns && x.ifname == a.ifname && x.addresses == a.addresses
            }) && slot.config.kind == a.kind
                && slot.config.offload == a.offload
                && slot.config.network == a.network.as_deref().unwrap_or(config::DEFAULT_NETWORK);
            if same {
                return Ok(self.info(index));
            }
            return Err(err(
                ErrorCode::Exists,
                format!("{} is attached with other parameters", a.id),
            ));
        }
        let Some(index) = self.ports.free_index() else {
            return Err(err(
                ErrorCode::Full,
                format!("this router holds {} ports already", config::MAX_PORTS),
            ));
        };
        let network = a.network.as_deref().unwrap_or(config::DEFAULT_NETWORK);
        let Some(net) = self.topo.network_index(network) else {
            let known: Vec<&str> = self.topo.networks.iter().map(|n| n.name.as_str()).collect();
            return Err(err(
                ErrorCode::Invalid,
                format!(
                    "unknown network {network:?}; this router has {}",
                    known.join(", ")
                ),
            ));
        };
        let subnets: Vec<IpNet> = self.topo.hosts[self.me].subnets_in(net).copied().collect();
        let (sources, gateways) = self.ports.admit(network, &subnets, &a.addresses)?;
        let name = ports::device_name(&a.id);
        if let Some((_, s)) = self.ports.iter().find(|(_, s)| s.config.name == name) {
            return Err(err(
                ErrorCode::Exists,
                format!("device name {name} is taken by port {}", s.config.name),
            ));
        }
        let vtep = self.topo.hosts[self.me].vtep_mac.0;
        let record = Record::new(
            index,
            name.clone(),
            network,
            a.kind,
            a.offload,
            (a.kind == PortKind::Veth)
                .then(|| config::container_port_mac(vtep, usize::from(index))),
            sources,
            gateways,
            Attachment {
                id: a.id.clone(),
                netns: a.netns.clone(),
                ifname: a.ifname.clone(),
                addresses: a.addresses.clone(),
            },
        );
        let config = record.port_config();
        let spec = sandbox::Spec {
            netns: &a.netns,
            ifname: &a.ifname,
            host_name: &name,
            addresses: &a.addresses,
            gateways: &record.gateways,
            mtu: self.net_mtu(&config.network),
            mac: record.mac,
            queues: self.n_workers as u32,
            tx_checksum_off: !a.offload,
        };
        let t0 = Instant::now();
        let mut t_interface = Duration::ZERO;
        let queues = match a.kind {
            PortKind::Veth => {
                sandbox::create_veth(&spec).map_err(|e| host_error(&a, e))?;
                t_interface = t0.elapsed();
                match self.open_veth_queues(&config, index) {
                    Ok(q) => q,
                    Err(e) => {
                        let _ = sandbox::remove(&a.netns, &a.ifname, Some(&name));
                        return Err(internal(format!("{e:#}")));
                    }
                }
            }
            PortKind::Tun => {
                let tuns = sandbox::create_tun(&spec, self.tun_opener(spec.mtu))
                    .map_err(|e| host_error(&a, e))?;
                setup::tun_queues(tuns, self.n_workers)
            }
        };
        let t_queues = t0.elapsed();
        let attachment = record.attachment.clone();
        let t_publish = match self.install(index, queues, config, attachment) {
            Ok(t) => t,
            Err(e) => {
                self.remove_interface_of(&record.attachment, a.kind, &name);
                return Err(e);
            }
        };
        let t_installed = t0.elapsed();
        self.save_record(&record);
        tracing::info!(id = %a.id, port = %name, index, kind = ?a.kind, netns = %a.netns.display(), ifname = %a.ifname, addresses = ?a.addresses, "port attached");
        tracing::debug!(
            id = %a.id,
            interface_us = micros(t_interface),
            queues_us = micros(t_queues - t_interface),
            publish_us = micros(t_publish),
            hand_off_us = micros(t_installed.saturating_sub(t_queues + t_publish)),
            record_us = micros(t0.elapsed() - t_installed),
            total_us = micros(t0.elapsed()),
            "attach steps"
        );
        Ok(self.info(index))
    }

    /// Publishes tables that route to the port, then hands its queues to
    /// the workers. In that order nothing the container sends is lost: it
    /// waits in the port's queues until a worker polls them, whereas a
    /// worker polling a port the tables do not know yet drops what it
    /// reads. On failure the port is out of the tables again and every
    /// worker has given its queue back. Returns how long publishing took.
    fn install(
        &mut self,
        index: u16,
        mut queues: setup::Queues,
        config: PortConfig,
        attachment: Attachment,
    ) -> Result<Duration, ApiError> {
        let program = queues.link.take();
        let passable = std::mem::replace(&mut queues.passable, setup::Passable::Fds(Vec::new()));
        self.ports.insert(
            index,
            Slot {
                config,
                attachment: Some(attachment),
                program,
                passable,
            },
        );
        let t0 = Instant::now();
        self.need(Republish::Always);
        self.publish_if_needed();
        let t_publish = t0.elapsed();
        if let Err(e) = self.give_to_workers(index, queues) {
            let slot = self.ports.remove(index);
            self.need(Republish::Always);
            self.publish_if_needed();
            // Some workers may hold their queue: take every one back.
            drop(self.take_from_workers(index));
            drop(slot);
            return Err(e);
        }
        Ok(t_publish)
    }

    fn save_record(&self, r: &Record) {
        if let Some(st) = &self.state {
            if let Err(e) = st.save(r) {
                tracing::warn!(port = %r.name, "{e:#}: a restarted router will not take this port back");
            }
        }
    }

    /// Takes back the ports recorded by an earlier run whose containers
    /// still have their interface; forgets (and cleans up) those whose
    /// namespace is gone.
    pub(super) fn reattach_recorded(&mut self) {
        let Some(st) = &self.state else { return };
        let records = st.load();
        for r in records {
            match self.reattach(&r) {
                Ok(index) => {
                    if index != r.index {
                        self.save_record(&Record { index, ..r.clone() });
                    }
                    tracing::info!(id = %r.attachment.id, port = %r.name, index, "recorded port attached again");
                }
                Err(Gone(why))
                    if self.takeover_attached.contains_key(&r.name)
                        || self.takeover_attached_xsk.contains_key(&r.name) =>
                {
                    // The old router still serves it: never remove it here.
                    tracing::error!(id = %r.attachment.id, port = %r.name, "recorded port not taken over: {why}");
                }
                Err(Gone(why)) => {
                    tracing::info!(id = %r.attachment.id, port = %r.name, "recorded port forgotten: {why}");
                    self.remove_interface_of(&r.attachment, r.kind, &r.name);
                    if let Some(st) = &self.state {
                        st.remove(&r.name);
                    }
                }
            }
        }
    }

    fn reattach(&mut self, r: &Record) -> Result<u16, Gone> {
        let at = &r.attachment;
        if !at.netns.exists() {
            return Err(Gone("its network namespace is gone".into()));
        }
        if self.ports.find_id(&at.id).is_some()
            || self.ports.iter().any(|(_, s)| s.config.name == r.name)
        {
            return Err(Gone("a port with its id or name exists".into()));
        }
        let config = r.port_config();
        let Some(net) = self.topo.network_index(&config.network) else {
            return Err(Gone(format!("its network {} is gone", config.network)));
        };
        let subnets: Vec<IpNet> = self.topo.hosts[self.me].subnets_in(net).copied().collect();
        if let Some(a) = r
            .sources
            .iter()
            .find(|a| !subnets.iter().any(|n| n.contains(&a.addr())))
        {
            return Err(Gone(format!(
                "{a} is outside this host's subnets in network {} now",
                config.network
            )));
        }
        if let Some((_, s)) = self.ports.iter().find(|(_, s)| {
            s.config.network == config.network
                && s.config
                    .addresses
                    .iter()
                    .any(|p| r.sources.iter().any(|a| p.contains(&a.addr())))
        }) {
            return Err(Gone(format!(
                "port {} holds its addresses now",
                s.config.name
            )));
        }
        // The same index keeps the gateway MAC the container has cached.
        let index = if self.ports.get(r.index).is_none() {
            r.index
        } else {
            let i = self
                .ports
                .free_index()
                .ok_or_else(|| Gone("the router is full".into()))?;
            tracing::warn!(port = %r.name, was = r.index, now = i, "recorded port's index is taken: its gateway MAC changes");
            i
        };
        let mtu = self.net_mtu(&config.network);
        let queues = match r.kind {
            PortKind::Veth => {
                if crate::host::link::link_info(&r.name).is_err() {
                    return Err(Gone(format!("its device {} is gone", r.name)));
                }
                // Taken out, the name stays: a failure below must not
                // remove a device the old router still serves.
                let taken = self
                    .takeover_attached_xsk
                    .get_mut(&r.name)
                    .and_then(Option::take);
                match (taken, self.takeover_attached.get(&r.name)) {
                    // Its sockets follow once the old router lets go.
                    (Some((link, pending)), _) => {
                        let mut q = setup::Queues::empty(self.n_workers);
                        q.link = Some(link);
                        q.pending = pending;
                        q
                    }
                    // AF_PACKET sockets, read by both routers meanwhile.
                    (None, Some(fds)) => {
                        let fds = fds
                            .iter()
                            .map(|f| f.try_clone())
                            .collect::<std::io::Result<Vec<_>>>()
                            .map_err(|e| Gone(e.to_string()))?;
                        setup::adopt_packet_queues(
                            &config,
                            usize::from(index),
                            self.net_mtu(&config.network),
                            self.topo.hosts[self.me].vtep_mac.0,
                            self.n_workers,
                            fds,
                        )
                        .map_err(|e| Gone(format!("{e:#}")))?
                    }
                    (None, None) => self
                        .open_veth_queues(&config, index)
                        .map_err(|e| Gone(format!("{e:#}")))?,
                }
            }
            PortKind::Tun => {
                let tuns = match self.takeover_attached.get(&r.name) {
                    Some(fds) => {
                        let mut tuns = Vec::with_capacity(fds.len());
                        for (k, fd) in fds.iter().enumerate() {
                            let fd = fd.try_clone().map_err(|e| Gone(e.to_string()))?;
                            tuns.push(
                                TunPort::adopt(&r.name, k, fd, mtu, true)
                                    .map_err(|e| Gone(e.to_string()))?,
                            );
                        }
                        tuns
                    }
                    None => sandbox::reopen_tun(&at.netns, &at.ifname, self.tun_opener(mtu))
                        .map_err(|e| Gone(e.to_string()))?,
                };
                setup::tun_queues(tuns, self.n_workers)
            }
        };
        let mut queues = queues;
        let pending = std::mem::take(&mut queues.pending);
        self.install(index, queues, config, at.clone())
            .map_err(|e| Gone(e.to_string()))?;
        if !pending.is_empty() {
            self.pending_xsk.push(super::handover::PendingPort {
                index,
                ifname: r.name.clone(),
                queues: pending,
            });
        }
        self.takeover_attached.remove(&r.name);
        self.takeover_attached_xsk.remove(&r.name);
        Ok(index)
    }

    /// Opens the queues of attached veth port `config` at `index` (its
    /// host end exists).
    fn open_veth_queues(
        &mut self,
        config: &PortConfig,
        index: u16,
    ) -> anyhow::Result<setup::Queues> {
        setup::open_veth_queues(
            config,
            usize::from(index),
            self.net_mtu(&config.network),
            self.topo.hosts[self.me].vtep_mac.0,
            self.n_workers,
            &mut self.umem_pool,
            &self.container_xdp,
        )
    }

    /// Opens an attached TUN's queues by name, one per worker; run inside
    /// its namespace by [`sandbox`].
    fn tun_opener(&self, mtu: u16) -> impl FnOnce(&str) -> std::io::Result<Vec<TunPort>> + Send {
        let n = self.n_workers;
        move |ifname| TunPort::open_with(ifname, n, mtu, true, config::DEFAULT_QUEUE_LEN)
    }

    /// The container-side MTU of network `network` on this host (the
    /// default network's if there is no such network).
    pub(super) fn net_mtu(&self, network: &str) -> u16 {
        let net = self.topo.network_index(network).unwrap_or(0);
        self.topo.network_mtu(net, self.me)
    }

    /// Detaches attachment `id`; false if there is none.
    pub(super) fn detach(&mut self, id: &str) -> Result<bool, ApiError> {
        let Some(index) = self.ports.find_id(id) else {
            return Ok(false);
        };
        let t0 = Instant::now();
        let slot = self.ports.remove(index).expect("found by id");
        // No table sends to the port once this is published.
        self.need(Republish::Always);
        self.publish_if_needed();
        let t_publish = t0.elapsed();
        let (rx, tx, queues) = self.take_from_workers(index);
        let t_taken = t0.elapsed();
        let at = slot.attachment.expect("found by id");
        let program = slot.program;
        // Closing the sockets (their UMEMs unmapped), detaching the XDP
        // link and removing the interface each wait for the kernel (RCU
        // grace periods): closed on a thread of their own, the first two
        // wait beside the removal rather than before it. Both are done
        // before the reply, so a detached port holds nothing.
        let (closed, removed) = std::thread::scope(|s| {
            let closing = s.spawn(move || {
                drop(queues);
                drop(program);
                t0.elapsed()
            });
            self.remove_interface_of(&at, slot.config.kind, &slot.config.name);
            let removed = t0.elapsed();
            (closing.join(), removed)
        });
        let closed = closed.unwrap_or_else(|p| std::panic::resume_unwind(p));
        tracing::info!(id, port = %slot.config.name, index, rx, tx, "port detached");
        if let Some(st) = &self.state {
            st.remove(&slot.config.name);
        }
        tracing::debug!(
            id,
            publish_us = micros(t_publish),
            take_back_us = micros(t_taken - t_publish),
            queues_closed_us = micros(closed.saturating_sub(t_taken)),
            interface_removed_us = micros(removed.saturating_sub(t_taken)),
            total_us = micros(t0.elapsed()),
            "detach steps"
        );
        Ok(true)
    }

    /// Verifies attachment `id`: attached, and its interface present with
    /// its addresses (and, on a veth, its MAC).
    pub(super) fn check(&self, id: &str) -> Result<PortInfo, ApiError> {
        let Some(index) = self.ports.find_id(id) else {
            return Err(err(ErrorCode::NotFound, format!("{id} is not attached")));
        };
        let slot = self.ports.get(index).expect("found by id");
        let at = slot.attachment.as_ref().expect("found by id");
        let seen = sandbox::inspect(&at.netns, &at.ifname)
            .map_err(|e| err(ErrorCode::Mismatch, e.to_string()))?
            .ok_or_else(|| {
                err(
                    ErrorCode::Mismatch,
                    format!("{} has no interface {}", at.netns.display(), at.ifname),
                )
            })?;
        if let Some(missing) = at.addresses.iter().find(|a| !seen.addresses.contains(a)) {
            return Err(err(
                ErrorCode::Mismatch,
                format!("{} lacks address {missing}", at.ifname),
            ));
        }
        if let Some(mac) = slot.config.mac {
            if slot.config.kind == PortKind::Veth && seen.mac != Some(mac.0) {
                return Err(err(
                    ErrorCode::Mismatch,
                    format!(
                        "{} has MAC {}, the router sends to {mac}",
                        at.ifname,
                        seen.mac.map_or("none".into(), |m| MacAddr(m).to_string())
                    ),
                ));
            }
        }
        Ok(self.info(index))
    }

    /// Detaches every attachment whose id starts with `prefix` and is not
    /// in `keep`; returns their ids.
    pub(super) fn collect_garbage(&mut self, prefix: &str, keep: &[String]) -> Vec<String> {
        let gone: Vec<String> = self
            .ports
            .iter()
            .filter_map(|(_, s)| s.attachment.as_ref())
            .map(|a| a.id.clone())
            .filter(|id| id.starts_with(prefix) && !keep.contains(id))
            .collect();
        for id in &gone {
            if let Err(e) = self.detach(id) {
                tracing::warn!(id, error = %e, "collecting an attachment");
            }
        }
        gone
    }

    /// The port at `index` as the protocol shows it.
    fn info(&self, index: u16) -> PortInfo {
        let counters = self.port_counters();
        let slot = self.ports.get(index).expect("an index in use");
        ports::info(
            slot,
            slot.config
                .mtu
                .unwrap_or_else(|| self.topo.overlay_mtu(self.me)),
            counters[usize::from(index)],
        )
    }

    fn remove_interface_of(&self, at: &Attachment, kind: PortKind, name: &str) {
        let host_name = (kind == PortKind::Veth).then_some(name);
        match sandbox::remove(&at.netns, &at.ifname, host_name) {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(id = %at.id, ifname = %at.ifname, error = %e, "removing the container interface")
            }
        }
    }
}

/// A step's time for the debug log.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn err(code: ErrorCode, message: String) -> ApiError {
    ApiError { code, message }
}

/// Maps a failure to build the interface: a namespace that is not there or
/// not one, or a name in use, is the caller's; the rest is the kernel's.
fn host_error(a: &api::Attach, e: HostError) -> ApiError {
    let code = match &e {
        HostError::Invalid(_) | HostError::NoSuchNetns(_) => ErrorCode::Invalid,
        HostError::DeviceExists(_) => ErrorCode::Exists,
        _ => ErrorCode::Internal,
    };
    err(
        code,
        format!("building {} in {}: {e}", a.ifname, a.netns.display()),
    )
}
