//! The underlay MACs of the peers, as the kernel's neighbour table knows
//! them, and the tables compiled with them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::{PortConfig, Topology};
use crate::dataplane::{tables, Tables};
use crate::host::neigh::NeighbourTable;
use crate::route::RouteSet;

/// Underlay MACs of the peers a route set uses, as the kernel knows them.
pub(super) struct Neighbours {
    pub(super) table: NeighbourTable,
    pub(super) nic: String,
    /// Peer underlay address -> the address whose MAC we need (itself, or
    /// the underlay gateway toward it).
    pub(super) via: BTreeMap<IpAddr, IpAddr>,
    /// The uplink sends through kernel sockets, which resolve the underlay
    /// next hop themselves: every peer counts as resolved, and the outer
    /// MACs in the templates are never put on the wire.
    pub(super) kernel_resolves: bool,
}

impl Neighbours {
    /// The peers whose MACs we need: every next hop of `routes` and, with
    /// `linked` (liveness on), every host linked to `me`: a next hop as soon
    /// as liveness moves a route to it, so its MAC is known before.
    pub(super) fn learn_peers(
        &mut self,
        topo: &Topology,
        me: usize,
        routes: &RouteSet,
        linked: bool,
    ) {
        self.via.clear();
        if self.kernel_resolves {
            return;
        }
        let linked = topo.links.iter().filter(|_| linked).filter_map(|l| {
            let (a, b) = (topo.host_index(&l.a)?, topo.host_index(&l.b)?);
            match (a == me, b == me) {
                (true, false) => Some(b),
                (false, true) => Some(a),
                _ => None,
            }
        });
        let hops = routes
            .routes
            .iter()
            .flat_map(|r| r.next_hops.iter().map(|nh| nh.host));
        for host in hops.chain(linked) {
            let peer = topo.hosts[host].underlay;
            if topo.hosts[host].underlay_mac.is_some() || self.via.contains_key(&peer) {
                continue;
            }
            let via = match self.table.next_hop_for(peer) {
                Ok(Some(n)) => n.addr,
                Ok(None) => {
                    tracing::warn!(%peer, "no underlay route to peer");
                    peer
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "route lookup failed");
                    peer
                }
            };
            self.via.insert(peer, via);
        }
    }

    pub(super) fn lookup(&self, peer: IpAddr) -> Option<[u8; 6]> {
        if self.kernel_resolves {
            return Some([0; 6]);
        }
        self.table.lookup(*self.via.get(&peer).unwrap_or(&peer))
    }

    /// Asks the kernel to resolve every peer still missing.
    pub(super) fn resolve_missing(&mut self) -> Vec<IpAddr> {
        let missing: Vec<(IpAddr, IpAddr)> = self
            .via
            .iter()
            .filter(|(_, via)| self.table.lookup(**via).is_none())
            .map(|(p, v)| (*p, *v))
            .collect();
        for (_, via) in &missing {
            if let Err(e) = self.table.resolve(*via, &self.nic) {
                tracing::debug!(%via, error = %e, "neighbour resolution request failed");
            }
        }
        missing.into_iter().map(|(p, _)| p).collect()
    }
}

pub(super) fn build_tables(
    topo: &Topology,
    host: usize,
    routes: &RouteSet,
    nic_mac: [u8; 6],
    mtu: u16,
    neigh: &Neighbours,
    ports: &[Option<PortConfig>],
) -> Tables {
    let lookup = |ip: IpAddr| neigh.lookup(ip);
    let env = tables::HostEnv {
        nic_mac,
        underlay_mtu: mtu,
        neighbour: &lookup,
        ports: Some(ports),
    };
    tables::build(topo, host, routes, &env)
}

/// Each peer's name, whether its MAC is resolved, and the MAC its
/// template carries: what a republication is decided on. The alternates
/// the repairs hold count too: a repair must not send to a stale MAC.
pub(super) fn peer_macs(t: &Tables) -> Vec<(String, bool, [u8; 6])> {
    let spare = t.reroute.as_deref().map_or(&[][..], |r| r.spare_peers());
    t.peers
        .iter()
        .chain(spare)
        .map(|p| {
            (
                p.name.clone(),
                p.resolved,
                [
                    p.template[0],
                    p.template[1],
                    p.template[2],
                    p.template[3],
                    p.template[4],
                    p.template[5],
                ],
            )
        })
        .collect()
}
