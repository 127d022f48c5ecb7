//! Bellman-Ford and route compilation tests, with a Floyd-Warshall reference
//! model for the property test.

use proptest::prelude::*;

use super::*;

fn graph(n: usize, edges: &[(usize, usize, i64)]) -> Graph {
    let mut g = Graph::new(n);
    for &(a, b, c) in edges {
        g.add_edge(a, b, c);
    }
    g
}

#[test]
fn line_costs_and_hops() {
    let g = graph(3, &[(0, 1, 5), (1, 2, 7)]);
    let p = bellman_ford(&g, 0).unwrap();
    assert_eq!(p.cost, vec![Some(0), Some(5), Some(12)]);
    assert_eq!(p.first_hops, vec![vec![], vec![1], vec![1]]);
}

#[test]
fn diamond_has_two_first_hops() {
    let g = graph(4, &[(0, 1, 10), (0, 2, 10), (1, 3, 10), (2, 3, 10)]);
    let p = bellman_ford(&g, 0).unwrap();
    assert_eq!(p.cost[3], Some(20));
    assert_eq!(p.first_hops[3], vec![1, 2]);
    // A cheaper detour wins over a direct link.
    let g = graph(3, &[(0, 1, 1), (1, 2, 1), (0, 2, 5)]);
    let p = bellman_ford(&g, 0).unwrap();
    assert_eq!((p.cost[2], p.first_hops[2].as_slice()), (Some(2), &[1][..]));
    // A tie between the direct link and the detour: both first hops.
    let g = graph(3, &[(0, 1, 1), (1, 2, 1), (0, 2, 2)]);
    assert_eq!(bellman_ford(&g, 0).unwrap().first_hops[2], vec![1, 2]);
}

#[test]
fn parallel_edges_and_self_loops() {
    let g = graph(2, &[(0, 1, 9), (0, 1, 3), (1, 1, 1), (0, 0, 4)]);
    assert_eq!(g.edge_count(), 4);
    let p = bellman_ford(&g, 0).unwrap();
    assert_eq!(p.cost, vec![Some(0), Some(3)]);
    assert_eq!(p.first_hops[1], vec![1]);
}

#[test]
fn unreachable_and_out_of_range() {
    let g = graph(4, &[(0, 1, 1), (2, 3, 1)]);
    let p = bellman_ford(&g, 0).unwrap();
    assert_eq!(p.cost, vec![Some(0), Some(1), None, None]);
    assert!(p.first_hops[2].is_empty() && p.first_hops[3].is_empty());
    let p = bellman_ford(&g, 9).unwrap();
    assert!(p.cost.iter().all(Option::is_none));
    let p = bellman_ford(&Graph::new(0), 0).unwrap();
    assert!(p.cost.is_empty());
}

#[test]
fn add_edge_grows_the_graph() {
    let mut g = Graph::new(0);
    g.add_edge(2, 5, 1);
    assert_eq!(g.node_count(), 6);
    assert_eq!(g.neighbours(5).collect::<Vec<_>>(), vec![(2, 1)]);
    assert_eq!(g.neighbours(99).count(), 0);
}

#[test]
fn negative_cycle_is_detected() {
    // Undirected: a negative edge is a negative cycle (there and back).
    let g = graph(3, &[(0, 1, 2), (1, 2, -1)]);
    assert_eq!(bellman_ford(&g, 0), Err(NegativeCycle { source_node: 0 }));
    let g = graph(1, &[(0, 0, -1)]);
    assert!(bellman_ford(&g, 0).is_err());
    // Unreachable from the source: no effect.
    let g = graph(4, &[(0, 1, 2), (2, 3, -1)]);
    assert_eq!(
        bellman_ford(&g, 0).unwrap().cost,
        vec![Some(0), Some(2), None, None]
    );
}

#[test]
fn zero_cost_edges_reach_a_fixpoint() {
    // 0 -0- 1 -0- 2, and 0 -0- 2: both 1 and 2 begin zero-cost paths to 2 and 1.
    let g = graph(4, &[(0, 1, 0), (1, 2, 0), (0, 2, 0), (2, 3, 4)]);
    let p = bellman_ford(&g, 0).unwrap();
    assert_eq!(p.cost, vec![Some(0), Some(0), Some(0), Some(4)]);
    assert_eq!(p.first_hops[1], vec![1, 2]);
    assert_eq!(p.first_hops[2], vec![1, 2]);
    assert_eq!(p.first_hops[3], vec![1, 2]);
}

#[test]
fn long_line_needs_many_rounds_but_no_false_cycle() {
    let n = 500;
    let edges: Vec<_> = (0..n - 1).map(|i| (i, i + 1, 1)).collect();
    let p = bellman_ford(&graph(n, &edges), 0).unwrap();
    assert_eq!(p.cost[n - 1], Some(n as u64 - 1));
    assert_eq!(p.first_hops[n - 1], vec![1]);
}

/// Floyd-Warshall all-pairs costs; first hops of `src` from them: neighbour
/// `h` begins a shortest path to `v` iff some edge src-h of cost `c` has
/// `c + d(h, v) == d(src, v)`.
fn reference(
    n: usize,
    edges: &[(usize, usize, i64)],
    src: usize,
) -> (Vec<Option<u64>>, Vec<Vec<usize>>) {
    let d = all_pairs(n, edges);
    let cost = d[src].iter().map(|c| c.map(|c| c as u64)).collect();
    let mut hops = vec![Vec::new(); n];
    for (v, hv) in hops.iter_mut().enumerate() {
        let Some(dv) = d[src][v] else { continue };
        if v == src {
            continue;
        }
        for &(a, b, c) in edges {
            for (x, h) in [(a, b), (b, a)] {
                if x == src && h != src && d[h][v].is_some_and(|dh| c + dh == dv) {
                    hv.push(h);
                }
            }
        }
        hv.sort_unstable();
        hv.dedup();
    }
    (cost, hops)
}

/// Floyd-Warshall: the cost between every pair of nodes.
fn all_pairs(n: usize, edges: &[(usize, usize, i64)]) -> Vec<Vec<Option<i64>>> {
    let mut d = vec![vec![None::<i64>; n]; n];
    for (i, row) in d.iter_mut().enumerate() {
        row[i] = Some(0);
    }
    for &(a, b, c) in edges {
        for (x, y) in [(a, b), (b, a)] {
            if d[x][y].is_none_or(|o| c < o) {
                d[x][y] = Some(c);
            }
        }
    }
    for k in 0..n {
        for i in 0..n {
            for j in 0..n {
                if let (Some(ik), Some(kj)) = (d[i][k], d[k][j]) {
                    if d[i][j].is_none_or(|o| ik + kj < o) {
                        d[i][j] = Some(ik + kj);
                    }
                }
            }
        }
    }
    d
}

/// Brute force over every neighbour `a` of `src`: the alternate for `dest`
/// when first hop `primary` fails, by RFC 5286 inequality 1, preferring
/// node protection (inequality 3), then the cheapest path through it, then
/// the lowest index.
fn reference_alternate(
    d: &[Vec<Option<i64>>],
    edges: &[(usize, usize, i64)],
    src: usize,
    dest: usize,
    primary: usize,
) -> Option<lfa::Alternate> {
    let mut best: Option<lfa::Alternate> = None;
    for a in 0..d.len() {
        let link = edges
            .iter()
            .filter(|&&(x, y, _)| (x, y) == (src, a) || (x, y) == (a, src))
            .map(|&(_, _, c)| c)
            .min();
        let (Some(link), Some(a_d), Some(a_s), Some(s_d)) =
            (link, d[a][dest], d[a][src], d[src][dest])
        else {
            continue;
        };
        if a == src || a == primary || a_d >= a_s + s_d {
            continue;
        }
        let node_protecting = dest != primary
            && match (d[a][primary], d[primary][dest]) {
                (Some(a_n), Some(n_d)) => a_d < a_n + n_d,
                _ => false,
            };
        let cand = lfa::Alternate {
            host: a,
            cost: (link + a_d) as u64,
            node_protecting,
        };
        let key = |x: &lfa::Alternate| (!x.node_protecting, x.cost, x.host);
        if best.is_none_or(|b| key(&cand) < key(&b)) {
            best = Some(cand);
        }
    }
    best
}

/// The nodes a packet for `dest` handed to `from` can visit while every
/// node forwards on its shortest paths of before the failure (any of its
/// equal-cost next hops), the link `cut` out: `None` if it can come back
/// to a node it has visited (a loop) or is stranded short of `dest`.
fn walk(
    d: &[Vec<Option<i64>>],
    edges: &[(usize, usize, i64)],
    from: usize,
    dest: usize,
    cut: (usize, usize),
) -> Option<Vec<usize>> {
    let mut seen = vec![false; d.len()];
    let mut stack = vec![from];
    seen[from] = true;
    while let Some(x) = stack.pop() {
        if x == dest {
            continue;
        }
        let dx = d[x][dest]?;
        let mut moved = false;
        for &(a, b, c) in edges {
            for (u, v) in [(a, b), (b, a)] {
                let tight = u == x && u != v && d[v][dest].is_some_and(|dv| c + dv == dx);
                if !tight || (u, v) == cut || (v, u) == cut {
                    continue;
                }
                moved = true;
                // Costs are >= 1: a tight edge only goes closer, so a node
                // seen again is a join of two paths, not a loop; a loop
                // would need a node whose cost does not drop.
                if !seen[v] {
                    seen[v] = true;
                    stack.push(v);
                }
            }
        }
        if !moved {
            return None;
        }
    }
    Some((0..d.len()).filter(|&v| seen[v]).collect())
}

fn arb_graph() -> impl Strategy<Value = (usize, Vec<(usize, usize, i64)>, usize)> {
    (1usize..24).prop_flat_map(|n| {
        // Costs from a small range make equal-cost ties common; edge counts
        // from 0 to 2n leave many graphs disconnected.
        let edges = prop::collection::vec((0..n, 0..n, 1i64..5), 0..=2 * n);
        (Just(n), edges, 0..n)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn bellman_ford_matches_floyd_warshall((n, edges, src) in arb_graph()) {
        let p = bellman_ford(&graph(n, &edges), src).unwrap();
        let (cost, hops) = reference(n, &edges, src);
        prop_assert_eq!(p.cost, cost);
        prop_assert_eq!(p.first_hops, hops);
    }

    #[test]
    fn two_components_never_mix((n, edges, src) in arb_graph()) {
        // A copy of the graph shifted by n: nothing in it is reachable.
        let shifted: Vec<_> = edges.iter().map(|&(a, b, c)| (a + n, b + n, c)).chain(edges.iter().copied()).collect();
        let p = bellman_ford(&graph(2 * n, &shifted), src).unwrap();
        let (cost, hops) = reference(n, &edges, src);
        prop_assert!(p.cost[n..].iter().all(Option::is_none));
        prop_assert_eq!(&p.cost[..n], &cost[..]);
        prop_assert_eq!(&p.first_hops[..n], &hops[..]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The alternates agree with a brute force over the neighbours and an
    /// all-pairs model: none is missed, each satisfies inequality 1, and a
    /// packet handed to one reaches its destination without coming back
    /// to the source, with the link to the failed first hop cut and, for
    /// a node-protecting one, without passing the failed first hop.
    #[test]
    fn alternates_match_a_brute_force((n, edges, src) in arb_graph()) {
        let g = graph(n, &edges);
        let paths = bellman_ford(&g, src).unwrap();
        let alts = lfa::compute(&g, src, &paths).unwrap();
        let d = all_pairs(n, &edges);
        for dest in 0..n {
            let of = alts.of(dest);
            prop_assert_eq!(
                of.iter().map(|p| p.primary).collect::<Vec<_>>(),
                paths.first_hops[dest].clone()
            );
            for p in of {
                let want = reference_alternate(&d, &edges, src, dest, p.primary);
                prop_assert_eq!(p.alternate, want, "dest {} primary {}", dest, p.primary);
                let Some(a) = p.alternate else { continue };
                let (a_d, a_s, s_d) = (d[a.host][dest].unwrap(), d[a.host][src].unwrap(), d[src][dest].unwrap());
                prop_assert!(a_d < a_s + s_d);
                let visited = walk(&d, &edges, a.host, dest, (src, p.primary));
                prop_assert!(visited.is_some(), "stranded or looping from {} to {}", a.host, dest);
                let visited = visited.unwrap();
                prop_assert!(visited.contains(&dest));
                prop_assert!(!visited.contains(&src), "back through the source: {:?}", visited);
                if a.node_protecting {
                    prop_assert!(!visited.contains(&p.primary), "through the failed hop: {:?}", visited);
                }
            }
        }
    }
}

#[test]
fn alternates_of_a_square_and_a_triangle() {
    // 0 - 1 - 2 and 0 - 3 - 2, with 0 - 3 dearer: 1 is the only first hop
    // to 2; 3 reaches 2 without 0 or 1 (node-protecting).
    let g = graph(4, &[(0, 1, 1), (1, 2, 1), (0, 3, 5), (3, 2, 1)]);
    let p = bellman_ford(&g, 0).unwrap();
    let alts = lfa::compute(&g, 0, &p).unwrap();
    let a = alts.when_down(2, 1).unwrap();
    assert_eq!((a.host, a.cost, a.node_protecting), (3, 6, true));
    // 1 itself: 3 reaches it through 2, protecting only the link.
    let a = alts.when_down(1, 1).unwrap();
    assert_eq!((a.host, a.cost, a.node_protecting), (3, 7, false));
    // A triangle: 2's shortest path to 1 is direct, so it is an
    // alternate for 1; a line has none.
    let g = graph(3, &[(0, 1, 1), (1, 2, 1), (0, 2, 1)]);
    let p = bellman_ford(&g, 0).unwrap();
    assert_eq!(
        lfa::compute(&g, 0, &p)
            .unwrap()
            .when_down(1, 1)
            .map(|a| a.host),
        Some(2)
    );
    let g = graph(3, &[(0, 1, 1), (1, 2, 1)]);
    let p = bellman_ford(&g, 0).unwrap();
    let alts = lfa::compute(&g, 0, &p).unwrap();
    assert_eq!(alts.when_down(2, 1), None);
    assert_eq!(alts.protected(), 0);
    // An ECMP set: the other member is the alternate (it costs the same).
    let g = graph(4, &[(0, 1, 1), (0, 2, 1), (1, 3, 1), (2, 3, 1)]);
    let p = bellman_ford(&g, 0).unwrap();
    let alts = lfa::compute(&g, 0, &p).unwrap();
    assert_eq!(alts.when_down(3, 1).map(|a| (a.host, a.cost)), Some((2, 2)));
    assert_eq!(alts.when_down(3, 2).map(|a| (a.host, a.cost)), Some((1, 2)));
}

fn topo(text: &str) -> Topology {
    crate::config::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"))
}

const PREFIX: &str = "[overlay]\nvni = 1\n";

fn host(name: &str, n: u8, subnets: &str) -> String {
    format!("[[hosts]]\nname = \"{name}\"\nunderlay = \"198.18.0.{n}\"\nsubnets = [{subnets}]\n")
}

fn link(a: &str, b: &str, cost: u32) -> String {
    format!("[[links]]\na = \"{a}\"\nb = \"{b}\"\ncost = {cost}\n")
}

#[test]
fn compute_routes_for_a_diamond_with_an_island() {
    let text = [
        PREFIX.to_string(),
        host("h1", 1, "\"198.19.1.0/24\", \"2001:2:0:1::/64\""),
        host("h2", 2, ""),
        host("h3", 3, "\"198.19.3.0/24\""),
        host("h4", 4, "\"2001:2:0:4::/64\", \"198.19.4.0/24\""),
        host("h5", 5, "\"198.19.5.0/24\""),
        link("h1", "h2", 3),
        link("h1", "h3", 1),
        link("h3", "h2", 2),
        link("h2", "h4", 4),
        link("h3", "h4", 6),
    ]
    .concat();
    let t = topo(&text);
    let set = compute(&t, 0).unwrap();
    assert_eq!(set.unreachable, vec![4]);
    let summary: Vec<(String, RouteKind, u64, Vec<&str>)> = set
        .routes
        .iter()
        .map(|r| {
            (
                r.prefix.to_string(),
                r.kind,
                r.cost,
                r.next_hops.iter().map(|h| h.name.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("198.19.1.0/24".into(), RouteKind::Local, 0, vec![]),
            ("198.19.3.0/24".into(), RouteKind::Remote, 1, vec!["h3"]),
            (
                "198.19.4.0/24".into(),
                RouteKind::Remote,
                7,
                vec!["h2", "h3"]
            ),
            ("2001:2:0:1::/64".into(), RouteKind::Local, 0, vec![]),
            (
                "2001:2:0:4::/64".into(),
                RouteKind::Remote,
                7,
                vec!["h2", "h3"]
            ),
        ]
    );
    let r = &set.routes[2];
    assert_eq!(r.owner, 3);
    assert_eq!(
        r.next_hops[0].underlay,
        "198.18.0.2".parse::<IpAddr>().unwrap()
    );
    assert_eq!(r.next_hops[0].host, 1);

    let json = serde_json::to_value(&set).unwrap();
    assert_eq!(
        json[2],
        serde_json::json!({"network": "default", "prefix": "198.19.4.0/24", "kind": "remote", "cost": 7, "next_hops": [
            {"host": "h2", "underlay": "198.18.0.2"}, {"host": "h3", "underlay": "198.18.0.3"}]})
    );
    assert_eq!(
        json[0],
        serde_json::json!({"network": "default", "prefix": "198.19.1.0/24", "kind": "local", "cost": 0, "next_hops": []})
    );

    let table = set.to_string();
    assert!(
        table.starts_with(
            "local 198.19.1.0/24 metric 0\n198.19.3.0/24 via 198.18.0.3 host h3 metric 1\n"
        ),
        "{table}"
    );
    assert!(table.contains("198.19.4.0/24 metric 7\n\tnexthop via 198.18.0.2 host h2\n\tnexthop via 198.18.0.3 host h3\n"), "{table}");

    // From the island: everyone else is unreachable, only its own prefix.
    let set = compute(&t, 4).unwrap();
    assert_eq!(set.unreachable, vec![0, 1, 2, 3]);
    assert_eq!(set.routes.len(), 1);
    // Not a host: nothing reachable, no routes.
    let set = compute(&t, 99).unwrap();
    assert_eq!(set.unreachable.len(), 5);
    assert!(set.routes.is_empty());
}

#[test]
fn each_network_takes_the_shared_paths_to_its_own_prefixes() {
    // h1 - h2 - h3 in a line; network "blue" reuses the default network's
    // 198.19.3.0/24 on h3 and has a prefix on h2 only.
    let text = format!(
        "{PREFIX}{}{}{}{}{}\
         [[networks]]\nname = \"blue\"\nvni = 2\n[networks.subnets]\nh2 = [\"198.19.9.0/24\"]\nh3 = [\"198.19.3.0/24\"]\n",
        host("h1", 1, "\"198.19.1.0/24\""),
        host("h2", 2, "\"198.19.2.0/24\""),
        host("h3", 3, "\"198.19.3.0/24\""),
        link("h1", "h2", 1),
        link("h2", "h3", 1),
    );
    let t = topo(&text);
    let set = compute(&t, 0).unwrap();
    let view = |net: usize| -> Vec<(String, u64, Vec<String>)> {
        set.of_network(net)
            .iter()
            .map(|r| {
                (
                    r.prefix.to_string(),
                    r.cost,
                    r.next_hops.iter().map(|h| h.name.clone()).collect(),
                )
            })
            .collect()
    };
    assert_eq!(
        view(0),
        [
            ("198.19.1.0/24".into(), 0, vec![]),
            ("198.19.2.0/24".into(), 1, vec!["h2".into()]),
            ("198.19.3.0/24".into(), 2, vec!["h2".into()]),
        ]
    );
    assert_eq!(
        view(1),
        [
            ("198.19.3.0/24".into(), 2, vec!["h2".into()]),
            ("198.19.9.0/24".into(), 1, vec!["h2".into()]),
        ]
    );
    assert_eq!(set.networks, ["default", "blue"]);
    let table = set.to_string();
    assert!(
        table.contains("network blue:\n198.19.3.0/24 via 198.18.0.2 host h2 metric 2\n"),
        "{table}"
    );
    let json = serde_json::to_value(&set).unwrap();
    assert_eq!(json[3]["network"], "blue");
    assert_eq!(json[3]["prefix"], "198.19.3.0/24");
    let only = set.clone().only_network(1);
    assert_eq!(only.routes.len(), 2);
}
