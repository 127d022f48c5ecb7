//! Route computation at scale: Bellman-Ford and full route-set compilation on
//! a 10k-host / 50k-link topology (target: well under 100 ms), with a binary
//! heap Dijkstra as the baseline, and parse + validate of the matching file.
//!
//! Fast reroute: the loop-free alternates added to the route computation
//! (`compute_with_alternates` beside `compute_route_set`), and, at 1k and
//! 10k hosts, the time from "neighbour down" to tables ready: the repaired
//! tables (`Tables::rerouted`) against computing the routes and building
//! the tables again, as the control thread does after it.
//!
//! Run: `cargo bench --bench routes`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use vxrouter::config::{self, Host, Link, MacAddr, Network, Overlay, Topology};
use vxrouter::dataplane::tables;
use vxrouter::route::{self, Graph};

const HOSTS: usize = 10_000;
const LINKS: usize = 50_000;

/// A connected random graph: a random spanning tree plus random extra links,
/// no self-links or duplicate pairs. Costs 1..=`max_cost`; a small maximum
/// makes many equal-cost ties.
fn edges(n: usize, m: usize, max_cost: u32, seed: u64) -> Vec<(usize, usize, u32)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(m);
    for v in 1..n {
        let u = rng.gen_range(0..v);
        seen.insert((u, v));
        out.push((u, v, rng.gen_range(1..=max_cost)));
    }
    while out.len() < m {
        let (a, b) = (rng.gen_range(0..n), rng.gen_range(0..n));
        let key = (a.min(b), a.max(b));
        if a != b && seen.insert(key) {
            out.push((a, b, rng.gen_range(1..=max_cost)));
        }
    }
    out
}

fn underlay(i: usize) -> Ipv4Addr {
    // 198.18.0.0/15 holds 131072 addresses; start at .1.
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 1 + i as u32)
}

fn topology(edges: &[(usize, usize, u32)]) -> Topology {
    topology_of(HOSTS, edges)
}

fn topology_of(n: usize, edges: &[(usize, usize, u32)]) -> Topology {
    let hosts = (0..n)
        .map(|i| {
            let ip = underlay(i);
            Host {
                name: format!("h{i}"),
                underlay: IpAddr::V4(ip),
                underlay_mac: None,
                vtep_mac: MacAddr::derived_from(IpAddr::V4(ip)),
                subnets: vec![format!("2001:2:0:{i:x}::/64").parse().unwrap()],
                net_subnets: Vec::new(),
                nic: None,
                workers: vec![0],
                uplink_io: Default::default(),
                ports: Vec::new(),
            }
        })
        .collect();
    let links = edges
        .iter()
        .map(|&(a, b, cost)| Link {
            a: format!("h{a}"),
            b: format!("h{b}"),
            cost,
        })
        .collect();
    Topology {
        overlay: Overlay {
            vni: 1,
            udp_port: 4789,
            mtu: None,
            liveness: None,
        },
        networks: vec![Network {
            name: "default".into(),
            vni: 1,
            mtu: None,
            lease: None,
        }],
        hosts,
        links,
        store: None,
    }
}

fn toml_text(edges: &[(usize, usize, u32)]) -> String {
    let mut s = String::from("[overlay]\nvni = 1\n");
    for i in 0..HOSTS {
        let _ = write!(
            s,
            "[[hosts]]\nname = \"h{i}\"\nunderlay = \"{}\"\nsubnets = [\"2001:2:0:{i:x}::/64\"]\n",
            underlay(i)
        );
    }
    for (a, b, c) in edges {
        let _ = write!(s, "[[links]]\na = \"h{a}\"\nb = \"h{b}\"\ncost = {c}\n");
    }
    s
}

/// Baseline: binary-heap Dijkstra, costs only.
fn dijkstra(adj: &[Vec<(usize, u64)>], src: usize) -> Vec<Option<u64>> {
    let mut dist = vec![None; adj.len()];
    let mut heap = BinaryHeap::new();
    dist[src] = Some(0);
    heap.push(Reverse((0u64, src)));
    while let Some(Reverse((d, u))) = heap.pop() {
        if dist[u].is_some_and(|best| d > best) {
            continue;
        }
        for &(v, c) in &adj[u] {
            let nd = d + c;
            if dist[v].is_none_or(|old| nd < old) {
                dist[v] = Some(nd);
                heap.push(Reverse((nd, v)));
            }
        }
    }
    dist
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("routes_10k_hosts_50k_links");
    group.throughput(Throughput::Elements(LINKS as u64));
    group.sample_size(30);
    for max_cost in [4u32, 1000] {
        let e = edges(HOSTS, LINKS, max_cost, 7);
        let mut g = Graph::new(HOSTS);
        let mut adj = vec![Vec::new(); HOSTS];
        for &(a, b, cost) in &e {
            g.add_edge(a, b, cost.into());
            adj[a].push((b, u64::from(cost)));
            adj[b].push((a, u64::from(cost)));
        }
        let topo = topology(&e);
        // Sanity: the algorithm under test agrees with the baseline.
        assert_eq!(route::bellman_ford(&g, 0).unwrap().cost, dijkstra(&adj, 0));

        group.bench_with_input(BenchmarkId::new("bellman_ford", max_cost), &g, |b, g| {
            b.iter(|| route::bellman_ford(black_box(g), 0).unwrap())
        });
        group.bench_with_input(
            BenchmarkId::new("dijkstra_baseline", max_cost),
            &adj,
            |b, adj| b.iter(|| dijkstra(black_box(adj), 0)),
        );
        group.bench_with_input(
            BenchmarkId::new("compute_route_set", max_cost),
            &topo,
            |b, t| b.iter(|| route::compute(black_box(t), 0).unwrap()),
        );
        group.bench_with_input(
            BenchmarkId::new("compute_with_alternates", max_cost),
            &topo,
            |b, t| b.iter(|| route::compute_with_alternates(black_box(t), 0).unwrap()),
        );
    }
    group.finish();

    let mut group = c.benchmark_group("neighbour_down_to_tables");
    group.sample_size(10);
    for hosts in [1_000usize, 10_000] {
        let topo = topology_of(hosts, &edges(hosts, 5 * hosts, 4, 7));
        let no = |_: IpAddr| None;
        let env = tables::HostEnv {
            nic_mac: [2, 0, 0, 0, 0, 1],
            underlay_mtu: 1500,
            neighbour: &no,
            ports: None,
        };
        let routes = route::compute_with_alternates(&topo, 0).unwrap();
        let t = tables::build(&topo, 0, &routes, &env);
        // The neighbour that begins the most routes goes down.
        let mut slots = vec![0usize; hosts];
        for r in &routes.routes {
            for nh in &r.next_hops {
                slots[nh.host] += 1;
            }
        }
        let down = (0..hosts).max_by_key(|&h| (slots[h], h)).unwrap();
        let (_, repair) = t.rerouted(&[down]).unwrap();
        eprintln!(
            "{hosts} hosts: host 0 has {} neighbours, h{down} begins {} routes: {} slots repaired, {} not; {} (destination, first hop) pairs of {} routes have an alternate",
            t.reroute.as_ref().map_or(0, |r| r.neighbours().count()),
            slots[down],
            repair.repaired,
            repair.unrepaired,
            routes.alternates.protected(),
            routes.routes.len(),
        );
        // What the routes are computed over once the link is out.
        let mut live = topo.clone();
        let name = format!("h{down}");
        live.links
            .retain(|l| !((l.a == "h0" && l.b == name) || (l.b == "h0" && l.a == name)));
        group.bench_function(BenchmarkId::new("rerouted_tables", hosts), |b| {
            b.iter(|| black_box(&t).rerouted(black_box(&[down])).unwrap())
        });
        group.bench_function(BenchmarkId::new("compute_and_build", hosts), |b| {
            b.iter(|| {
                let r = route::compute(black_box(&live), 0).unwrap();
                tables::build(&live, 0, &r, &env)
            })
        });
        group.bench_function(
            BenchmarkId::new("compute_with_alternates_and_build", hosts),
            |b| {
                b.iter(|| {
                    let r = route::compute_with_alternates(black_box(&live), 0).unwrap();
                    tables::build(&live, 0, &r, &env)
                })
            },
        );
    }
    group.finish();

    let mut group = c.benchmark_group("config_10k_hosts_50k_links");
    group.sample_size(10);
    let text = toml_text(&edges(HOSTS, LINKS, 1000, 7));
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("parse_and_validate", |b| {
        b.iter(|| config::parse(black_box(&text), "bench.toml").unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
