//! Opening the router's port queues: the uplink's, and a container port's
//! for every worker. Start-up and live attach open container queues
//! through the same [`open_container_queues`].
//!
//! Invariants: a port's queues are all opened or none is (an error drops
//! what was opened); an XDP program is returned with its sockets and
//! detaches when dropped.

use std::os::fd::OwnedFd;

use anyhow::{bail, Context, Result};

use crate::config::{PortConfig, PortKind};
use crate::host::link::link_info;
use crate::port::afpacket::PacketPort;
use crate::port::afxdp::{AfXdpPort, HandoverCell, UmemPool};
use crate::port::tun::TunPort;
use crate::port::xdp::{ContainerLink, ContainerXdp, XdpProgram};
use crate::port::Port;

/// One port's queues, one receive-and-transmit queue per worker (where the
/// device has one) and the device's further receive queues.
pub(super) struct Queues {
    /// `per_worker[k]`: worker `k`'s queue, `None` where the device has
    /// fewer queues than there are workers.
    pub per_worker: Vec<Option<Box<dyn Port + Send>>>,
    /// (worker, queue): receive-only queues, round robin over the workers.
    pub rx_only: Vec<(usize, Box<dyn Port + Send>)>,
    /// The uplink's XDP program, when its queues are AF_XDP sockets.
    pub program: Option<XdpProgram>,
    /// The container program's link to a veth port's device, when its
    /// queues are AF_XDP sockets.
    pub link: Option<ContainerLink>,
    /// What a handover passes to a new router process.
    pub passable: Passable,
    /// AF_XDP sockets handed over and not polled yet (a takeover): the
    /// old router polls them until it says `done`.
    pub pending: Vec<super::handover::PendingXsk>,
}

/// The descriptors a handover passes for one port's queues, or why it
/// cannot: second descriptors of the same open files, kept beside the
/// queues the workers own.
pub(super) enum Passable {
    /// Per worker: its queue's descriptors (a TUN queue; an AF_PACKET
    /// socket; a UDP uplink queue's receive socket, then its sending
    /// sockets).
    Fds(Vec<Vec<OwnedFd>>),
    /// Why not.
    No(String),
    /// AF_XDP sockets, which go with the XDP program they are registered
    /// in (the uplink's, or a veth port's link of the container program).
    Xsk(Vec<XskQueue>),
}

/// One AF_XDP socket of a port, as a handover passes it.
pub(super) struct XskQueue {
    pub queue_id: u32,
    /// The worker that polls it.
    pub worker: usize,
    /// Receive only (a NIC queue beyond the workers).
    pub rx_only: bool,
    /// [socket, UMEM memfd].
    pub fds: [OwnedFd; 2],
    /// Entries of each of its rings.
    pub ring_size: u32,
    /// Where the port's frames were when its worker dropped it.
    pub cell: HandoverCell,
}

impl XskQueue {
    /// The handover's view of `port`, polled by `worker`.
    pub(super) fn of(port: &AfXdpPort, worker: usize, rx_only: bool) -> Result<XskQueue> {
        Ok(XskQueue {
            queue_id: port.queue_id(),
            worker,
            rx_only,
            fds: port.dup_fds().with_context(|| {
                format!("duplicating the AF_XDP socket of queue {}", port.queue_id())
            })?,
            ring_size: port.ring_size(),
            cell: port.handover_cell(),
        })
    }
}

impl Passable {
    /// Dups of the descriptors, or why there are none.
    pub(super) fn dup(&self) -> Result<Vec<Vec<OwnedFd>>, String> {
        match self {
            Passable::No(why) => Err(why.clone()),
            Passable::Xsk(_) => Err("AF_XDP sockets go with their XDP program".into()),
            Passable::Fds(v) => v
                .iter()
                .map(|q| {
                    q.iter()
                        .map(|f| f.try_clone())
                        .collect::<std::io::Result<Vec<_>>>()
                })
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| format!("duplicating a descriptor: {e}")),
        }
    }
}

impl Queues {
    /// Queues with nothing in them yet, for `n_workers` workers.
    pub(super) fn empty(n_workers: usize) -> Queues {
        Queues {
            per_worker: (0..n_workers).map(|_| None).collect(),
            rx_only: Vec::new(),
            program: None,
            passable: Passable::Fds(Vec::new()),
            link: None,
            pending: Vec::new(),
        }
    }
}

/// Wraps TUN queues (one per worker, as opened).
pub(super) fn tun_queues(tuns: Vec<TunPort>, n_workers: usize) -> Queues {
    let mut q = Queues::empty(n_workers);
    q.passable = match tuns.iter().map(|t| t.dup_fd().map(|f| vec![f])).collect() {
        Ok(fds) => Passable::Fds(fds),
        Err(e) => Passable::No(format!("duplicating a TUN queue: {e}")),
    };
    for (k, t) in tuns.into_iter().enumerate() {
        if let Some(slot) = q.per_worker.get_mut(k) {
            *slot = Some(Box::new(t));
        }
    }
    q
}

/// Carries on the AF_PACKET sockets `fds` of veth port `p` (`offload =
/// true`), port index `index`, one per worker, handed over by the router
/// this one takes over from.
pub(super) fn adopt_packet_queues(
    p: &PortConfig,
    index: usize,
    mtu: u16,
    vtep_mac: [u8; 6],
    n_workers: usize,
    fds: Vec<OwnedFd>,
) -> Result<Queues> {
    if !p.offload || p.kind != PortKind::Veth {
        bail!(
            "port {}: AF_PACKET sockets handed over for a port without them",
            p.name
        );
    }
    if fds.len() > n_workers {
        bail!(
            "port {}: {} AF_PACKET sockets handed over for {n_workers} worker(s)",
            p.name,
            fds.len()
        );
    }
    let mut q = Queues::empty(n_workers);
    let container_mac = p.mac.map(|m| m.0).unwrap_or([0; 6]);
    let gw_mac = crate::config::router_port_mac(vtep_mac, index);
    let mut passable = Vec::with_capacity(fds.len());
    for (slot, fd) in q.per_worker.iter_mut().zip(fds) {
        let port = PacketPort::adopt(&p.name, fd, mtu, container_mac, gw_mac)
            .with_context(|| format!("taking over veth port {}", p.name))?;
        passable.push(vec![port.dup_fd()?]);
        *slot = Some(Box::new(port));
    }
    q.passable = Passable::Fds(passable);
    tracing::info!(port = %p.name, queues = q.per_worker.iter().flatten().count(), "veth port taken over (AF_PACKET)");
    Ok(q)
}

/// Opens the queues of veth port `p` (its host end must exist in our
/// namespace), port index `index`: AF_PACKET sockets with virtio-net
/// headers when `p.offload`, else AF_XDP sockets (on `pool`'s spare UMEMs
/// where it has them) behind the router's shared container XDP program
/// `xdp` on every queue of the device.
pub(super) fn open_veth_queues(
    p: &PortConfig,
    index: usize,
    mtu: u16,
    vtep_mac: [u8; 6],
    n_workers: usize,
    pool: &mut UmemPool,
    xdp: &ContainerXdp,
) -> Result<Queues> {
    debug_assert_eq!(p.kind, PortKind::Veth);
    let mut q = Queues::empty(n_workers);
    if p.offload {
        // The host kernel sees every frame an AF_PACKET socket sees: with
        // addresses on the host end it would answer ARP for them with the
        // device's own MAC, beside the router's answers.
        let held = crate::host::link::device_addresses(&p.name)
            .with_context(|| format!("veth port {}", p.name))?;
        if !held.is_empty() {
            bail!(
                "veth port {} has offload = true and its host end holds addresses ({}): the host kernel would answer ARP for them beside the router; remove them from {} or use offload = false",
                p.name,
                held.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "),
                p.name
            );
        }
        // One socket per worker, in one fanout group when there are several.
        let container_mac = p.mac.map(|m| m.0).unwrap_or([0; 6]);
        let gw_mac = crate::config::router_port_mac(vtep_mac, index);
        let fanout = (n_workers > 1)
            .then(|| crate::port::sys::ifindex(&p.name))
            .transpose()
            .with_context(|| format!("veth port {}", p.name))?
            .map(|i| i as u16);
        let mut passable = Vec::with_capacity(n_workers);
        for slot in q.per_worker.iter_mut() {
            let port = PacketPort::open(&p.name, mtu, container_mac, gw_mac, fanout)
                .with_context(|| format!("AF_PACKET socket on {}", p.name))?;
            passable.push(vec![port.dup_fd().with_context(|| {
                format!("duplicating the AF_PACKET socket of {}", p.name)
            })?]);
            *slot = Some(Box::new(port));
        }
        q.passable = Passable::Fds(passable);
        tracing::info!(port = %p.name, workers = n_workers, netns = ?p.netns, "veth port attached (AF_PACKET, virtio-net header offloads)");
        return Ok(q);
    }
    let info = link_info(&p.name)?;
    let mut prog = xdp
        .attach(&p.name)
        .with_context(|| format!("attaching the XDP program to {}", p.name))?;
    let veth_queues = (info.num_rx_queues.max(1) as usize).min(n_workers);
    let mut passable = Vec::with_capacity(info.num_rx_queues.max(1) as usize);
    for (k, slot) in q.per_worker.iter_mut().enumerate().take(veth_queues) {
        let port = pool
            .open(&p.name, k as u32)
            .with_context(|| format!("AF_XDP socket on {} queue {k}", p.name))?;
        prog.register_socket(k as u32, port.fd())?;
        passable.push(XskQueue::of(&port, k, false)?);
        *slot = Some(Box::new(port));
    }
    if veth_queues < n_workers {
        tracing::warn!(port = %p.name, queues = veth_queues, "veth has fewer queues than workers: frames for it from other workers drop as port_down");
    }
    for k in n_workers..info.num_rx_queues as usize {
        let port = pool
            .open(&p.name, k as u32)
            .with_context(|| format!("AF_XDP socket on {} queue {k}", p.name))?;
        prog.register_socket(k as u32, port.fd())?;
        passable.push(XskQueue::of(&port, k % n_workers, true)?);
        q.rx_only.push((k % n_workers, Box::new(port)));
    }
    q.passable = Passable::Xsk(passable);
    tracing::info!(port = %p.name, mode = %prog.mode(), queues = veth_queues, netns = ?p.netns, "veth port attached");
    q.link = Some(prog);
    Ok(q)
}
