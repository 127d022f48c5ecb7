//! Route layer: shortest paths over the topology's link graph and the route
//! set they compile into.
//!
//! Sans-IO and deterministic: the same topology always gives the same routes
//! in the same order, on every host. [`bellman_ford`] computes, from one host,
//! the cost to every host and the set of neighbours that start a shortest
//! path (equal-cost first hops, for ECMP). [`compute`] turns that into one
//! [`Route`] per subnet: local for the host's own prefixes, remote with its
//! next hops for the others; hosts it cannot reach are listed, not routed.
//!
//! Links are undirected. Validated topologies have costs >= 1, so negative
//! cycles cannot occur; [`Graph`] nevertheless accepts any `i64` cost and
//! [`bellman_ford`] reports a [`NegativeCycle`] rather than looping or
//! returning wrong costs if it ever meets one.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::OnceLock;

use ipnet::IpNet;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use crate::config::Topology;

pub mod lfa;
pub mod liveness;

/// An undirected weighted graph over nodes `0..n`.
///
/// Edges are kept as a list; the compressed adjacency (CSR) the algorithms
/// walk is built on first use and dropped when an edge is added, so repeated
/// computations on one graph (one per host) build it once.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    nodes: usize,
    edges: Vec<(u32, u32, i64)>,
    csr: OnceLock<Csr>,
}

/// Compressed sparse rows: the arcs leaving node `v` are
/// `arcs[start[v]..start[v + 1]]`. One allocation for all arcs instead of
/// one vector per node keeps 10k-node graphs cheap to build and walk.
#[derive(Debug, Clone, Default)]
struct Csr {
    start: Vec<usize>,
    arcs: Vec<Arc>,
}

/// One direction of an edge.
#[derive(Debug, Clone, Copy, Default)]
struct Arc {
    to: u32,
    cost: i64,
}

impl Csr {
    fn out(&self, v: usize) -> &[Arc] {
        &self.arcs[self.start[v]..self.start[v + 1]]
    }
}

/// FNV-1a: host names are short, trusted strings, so a simple fast hash
/// beats SipHash for the name index.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

impl Graph {
    /// A graph with `n_nodes` nodes and no edges.
    pub fn new(n_nodes: usize) -> Graph {
        Graph {
            nodes: n_nodes,
            ..Graph::default()
        }
    }

    /// The topology's hosts as nodes (same indices) and its links as edges.
    /// Links naming unknown hosts are skipped; a validated topology has none.
    pub fn from_topology(topo: &Topology) -> Graph {
        // A name index, not `Topology::host_index`: a linear search per link
        // end is quadratic and took seconds at 10k hosts / 50k links.
        let mut index: HashMap<&str, usize, BuildHasherDefault<Fnv>> =
            HashMap::with_capacity_and_hasher(topo.hosts.len(), BuildHasherDefault::default());
        for (i, h) in topo.hosts.iter().enumerate() {
            index.insert(h.name.as_str(), i);
        }
        let mut g = Graph::new(topo.hosts.len());
        g.edges.reserve(topo.links.len());
        for l in &topo.links {
            if let (Some(&a), Some(&b)) = (index.get(l.a.as_str()), index.get(l.b.as_str())) {
                g.add_edge(a, b, l.cost.into());
            }
        }
        g
    }

    /// Adds an undirected edge. The node count grows to include `a` and `b`
    /// if needed. Parallel edges are kept; a shortest path uses the cheapest.
    pub fn add_edge(&mut self, a: usize, b: usize, cost: i64) {
        let (Ok(a32), Ok(b32)) = (u32::try_from(a), u32::try_from(b)) else {
            // More than 4 billion nodes cannot be built in memory anyway.
            return;
        };
        self.nodes = self.nodes.max(a.max(b) + 1);
        self.edges.push((a32, b32, cost));
        self.csr.take();
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// Number of edges, parallel edges and self-loops included.
    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// Neighbours of `node` with edge costs, parallel edges included.
    pub fn neighbours(&self, node: usize) -> impl Iterator<Item = (usize, i64)> + '_ {
        let csr = self.csr();
        let arcs = if node < self.nodes {
            csr.out(node)
        } else {
            &[]
        };
        arcs.iter().map(|a| (a.to as usize, a.cost))
    }

    fn csr(&self) -> &Csr {
        self.csr.get_or_init(|| {
            let n = self.nodes;
            let mut start = vec![0usize; n + 1];
            for &(a, b, _) in &self.edges {
                start[a as usize + 1] += 1;
                if a != b {
                    start[b as usize + 1] += 1;
                }
            }
            for v in 0..n {
                start[v + 1] += start[v];
            }
            let mut fill = start.clone();
            let mut arcs = vec![Arc::default(); start[n]];
            let mut put = |from: u32, to: u32, cost: i64| {
                let slot = &mut fill[from as usize];
                arcs[*slot] = Arc { to, cost };
                *slot += 1;
            };
            for &(a, b, cost) in &self.edges {
                put(a, b, cost);
                if a != b {
                    put(b, a, cost);
                }
            }
            Csr { start, arcs }
        })
    }
}

/// Shortest paths from one source node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Cost from the source to each node; `None` if unreachable. The source
    /// itself has `Some(0)`.
    pub cost: Vec<Option<u64>>,
    /// For each node, the source's neighbours that begin a shortest path to
    /// it: sorted, deduplicated. Empty for the source and unreachable nodes.
    pub first_hops: Vec<Vec<usize>>,
}

/// The graph has a cycle of negative total cost reachable from the source,
/// so shortest paths are undefined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("negative-cost cycle reachable from node {source_node}: shortest paths are undefined")]
pub struct NegativeCycle {
    /// The source the computation started from.
    pub source_node: usize,
}

/// Bellman-Ford from `src`, with equal-cost first hops.
///
/// Rounds relax only the edges leaving nodes whose cost changed in the
/// previous round (the queue-less form of Bellman-Ford-Moore). Without
/// negative cycles every shortest path has at most n-1 edges, so costs settle
/// within n-1 rounds; a change in round n proves a negative cycle. On link
/// graphs the number of rounds is about the hop diameter, not n.
///
/// If `src` is not a node, every node is unreachable.
pub fn bellman_ford(g: &Graph, src: usize) -> Result<Paths, NegativeCycle> {
    let n = g.node_count();
    if src >= n {
        return Ok(Paths {
            cost: vec![None; n],
            first_hops: vec![Vec::new(); n],
        });
    }
    let dist = relax(g, src)?;
    let cost = checked_costs(&dist, src)?;
    let first_hops = first_hops(g.csr(), src, &dist);
    Ok(Paths { cost, first_hops })
}

/// The costs of [`bellman_ford`] without the first hops: what the
/// loop-free alternates need from each neighbour ([`lfa`]).
pub fn costs(g: &Graph, src: usize) -> Result<Vec<Option<u64>>, NegativeCycle> {
    if src >= g.node_count() {
        return Ok(vec![None; g.node_count()]);
    }
    checked_costs(&relax(g, src)?, src)
}

/// The relaxation rounds of [`bellman_ford`]; `src` must be a node.
fn relax(g: &Graph, src: usize) -> Result<Vec<Option<i64>>, NegativeCycle> {
    let n = g.node_count();
    let csr = g.csr();
    let mut dist: Vec<Option<i64>> = vec![None; n];
    dist[src] = Some(0);
    let mut active = vec![src];
    let mut queued = vec![false; n];
    let mut next = Vec::new();
    let mut round = 0usize;
    while !active.is_empty() {
        round += 1;
        if round > n {
            return Err(NegativeCycle { source_node: src });
        }
        for &u in &active {
            queued[u] = false;
        }
        for &u in &active {
            let Some(du) = dist[u] else { continue };
            for arc in csr.out(u) {
                let v = arc.to as usize;
                // Saturating: costs near i64 limits cannot wrap into a
                // spurious improvement.
                let dv = du.saturating_add(arc.cost);
                if dist[v].is_none_or(|old| dv < old) {
                    dist[v] = Some(dv);
                    if !queued[v] {
                        queued[v] = true;
                        next.push(v);
                    }
                }
            }
        }
        std::mem::swap(&mut active, &mut next);
        next.clear();
    }
    Ok(dist)
}

/// The settled costs as `u64`.
///
/// A negative edge anywhere reachable is itself a negative cycle (go there
/// and back); the round bound catches it, but a negative cost at the
/// source could also settle before the bound on tiny graphs, so this final
/// check keeps the output invariant (all costs >= 0) honest.
fn checked_costs(dist: &[Option<i64>], src: usize) -> Result<Vec<Option<u64>>, NegativeCycle> {
    dist.iter()
        .map(|d| match d {
            Some(d) => u64::try_from(*d)
                .map(Some)
                .map_err(|_| NegativeCycle { source_node: src }),
            None => Ok(None),
        })
        .collect()
}

/// Edge `u -> v` of cost `c` is tight when `dist[u] + c == dist[v]`: it lies
/// on some shortest path. A neighbour `h` of the source is a first hop to `v`
/// iff a tight path runs from the source through the edge src->h to `v`.
fn first_hops(csr: &Csr, src: usize, dist: &[Option<i64>]) -> Vec<Vec<usize>> {
    let n = dist.len();
    let mut hops: Vec<Vec<usize>> = vec![Vec::new(); n];
    // Nodes in order of cost: with positive costs every tight edge goes from
    // an earlier node to a later one, so one pass suffices. Zero-cost edges
    // can join nodes of equal cost both ways; the outer loop repeats until
    // nothing changes (sets only grow, so it terminates).
    let mut order: Vec<usize> = (0..n).filter(|&v| dist[v].is_some() && v != src).collect();
    order.sort_by_key(|&v| (dist[v], v));
    let has_zero = csr.arcs.iter().any(|a| a.cost == 0);
    let mut merged = Vec::new();
    loop {
        let mut changed = false;
        for &v in &order {
            let Some(dv) = dist[v] else { continue };
            merged.clear();
            merged.extend_from_slice(&hops[v]);
            for arc in csr.out(v) {
                // Undirected: the arc v->u mirrors u->v with the same cost.
                let u = arc.to as usize;
                if u == v || dist[u].map(|du| du.saturating_add(arc.cost)) != Some(dv) {
                    continue;
                }
                if u == src {
                    merged.push(v);
                } else {
                    merged.extend_from_slice(&hops[u]);
                }
            }
            merged.sort_unstable();
            merged.dedup();
            if merged != hops[v] {
                changed = true;
                std::mem::swap(&mut hops[v], &mut merged);
            }
        }
        if !changed || !has_zero {
            break;
        }
    }
    hops
}

/// Whether a route's prefix belongs to this host or another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// One of this host's own subnets: deliver to a local port.
    Local,
    /// Another host's subnet: encapsulate toward a next hop.
    Remote,
}

/// A neighbour host that begins a shortest path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    /// Host index in the topology.
    pub host: usize,
    /// Host name.
    pub name: String,
    /// Its VTEP address: the outer destination of encapsulated packets.
    pub underlay: IpAddr,
}

/// One compiled route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The overlay network the prefix belongs to (index in
    /// `Topology::networks`; 0 is the default one).
    pub network: usize,
    /// The destination prefix.
    pub prefix: IpNet,
    /// Local or remote.
    pub kind: RouteKind,
    /// Path cost to the owner; 0 for local routes.
    pub cost: u64,
    /// Index of the host that owns the prefix.
    pub owner: usize,
    /// Equal-cost next hops, by host index; empty for local routes.
    pub next_hops: Vec<NextHop>,
}

/// All routes of one host, of every network: the shortest paths are
/// computed once for the shared hosts and links, then each network's
/// prefixes take the paths to their owners.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteSet {
    /// Routes sorted by network, then by prefix (IPv4 first, then by
    /// address and length).
    pub routes: Vec<Route>,
    /// Names of the networks, by index.
    pub networks: Vec<String>,
    /// Hosts this host cannot reach, by index, ascending. Their prefixes have
    /// no route.
    pub unreachable: Vec<usize>,
    /// Loop-free alternates of every destination host, with
    /// [`compute_with_alternates`]; empty otherwise.
    pub alternates: lfa::Alternates,
}

/// Order of routes in a [`RouteSet`]: IPv4 before IPv6, then by network
/// address, then shorter prefix first.
fn prefix_order(a: &IpNet, b: &IpNet) -> Ordering {
    (a.addr().is_ipv6(), a.network(), a.prefix_len()).cmp(&(
        b.addr().is_ipv6(),
        b.network(),
        b.prefix_len(),
    ))
}

/// Computes the route set of `self_host`.
///
/// If `self_host` is not a host index, every host is unreachable.
pub fn compute(topo: &Topology, self_host: usize) -> Result<RouteSet, NegativeCycle> {
    let paths = bellman_ford(&Graph::from_topology(topo), self_host)?;
    Ok(compile(topo, self_host, &paths))
}

/// [`compute`], plus the loop-free alternates of every destination
/// ([`lfa::compute`]) over the same graph: what a host that can declare a
/// neighbour down (liveness) switches to before computing again.
pub fn compute_with_alternates(
    topo: &Topology,
    self_host: usize,
) -> Result<RouteSet, NegativeCycle> {
    let g = Graph::from_topology(topo);
    let paths = bellman_ford(&g, self_host)?;
    let mut set = compile(topo, self_host, &paths);
    set.alternates = lfa::compute(&g, self_host, &paths)?;
    Ok(set)
}

/// The loop-free alternates of [`compute_with_alternates`] alone: for a
/// caller that publishes the routes of [`compute`] first and computes
/// these beside them (one shortest-path run per neighbour takes tens of
/// ms at 10k hosts).
pub fn alternates(topo: &Topology, self_host: usize) -> Result<lfa::Alternates, NegativeCycle> {
    let g = Graph::from_topology(topo);
    let paths = bellman_ford(&g, self_host)?;
    lfa::compute(&g, self_host, &paths)
}

/// Compiles shortest paths from `self_host` into routes.
pub fn compile(topo: &Topology, self_host: usize, paths: &Paths) -> RouteSet {
    let mut set = RouteSet {
        networks: topo.networks.iter().map(|n| n.name.clone()).collect(),
        ..RouteSet::default()
    };
    for (h, host) in topo.hosts.iter().enumerate() {
        let cost = paths.cost.get(h).copied().flatten();
        let (kind, cost, next_hops) = match cost {
            _ if h == self_host => (RouteKind::Local, 0, Vec::new()),
            Some(c) => {
                let hops = paths.first_hops.get(h).map_or(&[][..], Vec::as_slice);
                let next_hops = hops
                    .iter()
                    .filter_map(|&n| {
                        topo.hosts.get(n).map(|nh| NextHop {
                            host: n,
                            name: nh.name.clone(),
                            underlay: nh.underlay,
                        })
                    })
                    .collect();
                (RouteKind::Remote, c, next_hops)
            }
            None => {
                set.unreachable.push(h);
                continue;
            }
        };
        for (network, prefix) in host.all_subnets() {
            set.routes.push(Route {
                network,
                prefix: *prefix,
                kind,
                cost,
                owner: h,
                next_hops: next_hops.clone(),
            });
        }
    }
    set.routes.sort_by(|a, b| {
        a.network
            .cmp(&b.network)
            .then_with(|| prefix_order(&a.prefix, &b.prefix))
    });
    set
}

impl RouteSet {
    /// The routes of network `net`, in order.
    pub fn of_network(&self, net: usize) -> &[Route] {
        let start = self.routes.partition_point(|r| r.network < net);
        let end = self.routes.partition_point(|r| r.network <= net);
        &self.routes[start..end]
    }

    /// The name of network `net`.
    pub fn network_name(&self, net: usize) -> &str {
        self.networks
            .get(net)
            .map_or(crate::config::DEFAULT_NETWORK, String::as_str)
    }

    /// Only the routes of network `net` (its name kept, the others').
    pub fn only_network(mut self, net: usize) -> RouteSet {
        self.routes.retain(|r| r.network == net);
        self
    }
}

impl fmt::Display for RouteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteKind::Local => "local",
            RouteKind::Remote => "remote",
        })
    }
}

impl Serialize for RouteKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `{"host": "h2", "underlay": "198.18.0.2"}`
impl Serialize for NextHop {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("host", &self.name)?;
        m.serialize_entry("underlay", &self.underlay)?;
        m.end()
    }
}

/// A route with its network's name, as JSON shows it.
struct Named<'a>(&'a Route, &'a str);

/// `{"network": "default", "prefix": "198.19.2.0/24", "kind": "remote",
/// "cost": 10, "next_hops": [..]}`, the JSON shape `vxrouter routes --json`
/// promises.
impl Serialize for Named<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Named(r, network) = self;
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("network", network)?;
        m.serialize_entry("prefix", &r.prefix)?;
        m.serialize_entry("kind", &r.kind)?;
        m.serialize_entry("cost", &r.cost)?;
        m.serialize_entry("next_hops", &r.next_hops)?;
        m.end()
    }
}

/// Serializes as the array of its routes.
impl Serialize for RouteSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.routes.len()))?;
        for r in &self.routes {
            seq.serialize_element(&Named(r, self.network_name(r.network)))?;
        }
        seq.end()
    }
}

/// An `ip route`-like table, one route per line, ECMP next hops indented:
///
/// ```text
/// local 198.19.1.0/24 metric 0
/// 198.19.2.0/24 via 198.18.0.2 host h2 metric 10
/// 198.19.4.0/24 metric 20
///         nexthop via 198.18.0.2 host h2
///         nexthop via 198.18.0.3 host h3
/// ```
///
/// With more than one network, each network's routes follow a
/// `network NAME:` line.
impl fmt::Display for RouteSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headed = self.networks.len() > 1;
        let mut current = None;
        for r in &self.routes {
            if headed && current != Some(r.network) {
                current = Some(r.network);
                writeln!(f, "network {}:", self.network_name(r.network))?;
            }
            match (r.kind, r.next_hops.as_slice()) {
                (RouteKind::Local, _) => writeln!(f, "local {} metric {}", r.prefix, r.cost)?,
                (RouteKind::Remote, [one]) => writeln!(
                    f,
                    "{} via {} host {} metric {}",
                    r.prefix, one.underlay, one.name, r.cost
                )?,
                (RouteKind::Remote, hops) => {
                    writeln!(f, "{} metric {}", r.prefix, r.cost)?;
                    for h in hops {
                        writeln!(f, "\tnexthop via {} host {}", h.underlay, h.name)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
