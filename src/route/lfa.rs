//! Route layer: loop-free alternates (RFC 5286), the next hops a host
//! switches to the moment a neighbour is declared down, before the routes
//! are computed again.
//!
//! Sans-IO and deterministic. For this host S, every destination host D
//! and every first hop N of D (each member of an ECMP set), [`compute`]
//! picks at most one alternate neighbour A != N that satisfies RFC 5286
//! section 3.5, inequality 1 ("loop-free criterion"):
//!
//! > Distance_opt(N, D) < Distance_opt(N, S) + Distance_opt(S, D)
//!
//! (the RFC's N is our A): A's shortest paths to D do not come back through
//! S, so a packet S hands to A is not returned to it while the other hosts
//! still forward on the routes of before the failure. Among the neighbours
//! that qualify, a node-protecting one (inequality 3: A's shortest paths to
//! D avoid N as well, so the alternate also holds when N itself is gone,
//! not only the link to it) wins over one that only protects the link;
//! then the cheapest path through it, cost(S, A) + dist(A, D); then the
//! lowest host index. When D is N itself no alternate protects the node;
//! one that protects the link is still chosen.
//!
//! Cost: one shortest-path run (costs only, [`super::costs`]) per neighbour
//! of S, over the same graph as the routes; the distance from N to D comes
//! free, since N begins a shortest path to D: dist(N, D) = dist(S, D) -
//! dist(S, N). A host with more than [`MAX_NEIGHBOURS`] neighbours gets no
//! alternates (a hub would pay one run per spoke); its ECMP sets still lose
//! a dead member without them.

use super::{costs, Graph, NegativeCycle, Paths};

/// Most neighbours a host may have for its alternates to be computed.
pub const MAX_NEIGHBOURS: usize = 64;

/// The alternate for one destination when one first hop fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alternate {
    /// Host index of the alternate neighbour.
    pub host: usize,
    /// cost(S, A) + dist(A, D): what the path through it costs.
    pub cost: u64,
    /// Its shortest paths to D avoid the failed first hop (RFC 5286
    /// inequality 3), not only the link to it.
    pub node_protecting: bool,
}

/// One first hop of a destination and its alternate, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protection {
    /// The first hop (a member of the destination's ECMP set).
    pub primary: usize,
    /// What replaces it when it fails.
    pub alternate: Option<Alternate>,
}

/// The alternates of every destination, by host index: the entries of
/// destination `d` follow its first hops in [`Paths::first_hops`] order.
/// Empty when not computed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alternates {
    /// `entries[start[d]..start[d + 1]]` belong to destination `d`: one
    /// allocation for all destinations.
    start: Vec<u32>,
    entries: Vec<Protection>,
}

impl Alternates {
    /// The first hops of `dest` with their alternates; empty for a
    /// destination with no route, and when nothing was computed.
    pub fn of(&self, dest: usize) -> &[Protection] {
        match (self.start.get(dest), self.start.get(dest + 1)) {
            (Some(&a), Some(&b)) => &self.entries[a as usize..b as usize],
            _ => &[],
        }
    }

    /// The alternate for `dest` when its first hop `primary` fails.
    pub fn when_down(&self, dest: usize, primary: usize) -> Option<Alternate> {
        self.of(dest)
            .iter()
            .find(|p| p.primary == primary)
            .and_then(|p| p.alternate)
    }

    /// Whether nothing was computed (or no destination has a first hop).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many (destination, first hop) pairs have an alternate.
    pub fn protected(&self) -> usize {
        self.entries
            .iter()
            .filter(|p| p.alternate.is_some())
            .count()
    }
}

/// The preference order of candidates: node-protecting first, then the
/// cheapest, then the lowest host index.
fn key(a: &Alternate) -> (bool, u64, usize) {
    (!a.node_protecting, a.cost, a.host)
}

/// The alternates of host `src` over `g`, whose shortest paths from `src`
/// are `paths` (from [`super::bellman_ford`] on the same graph).
pub fn compute(g: &Graph, src: usize, paths: &Paths) -> Result<Alternates, NegativeCycle> {
    let n = paths.cost.len();
    let mut start = Vec::with_capacity(n + 1);
    let mut entries = Vec::new();
    for hops in &paths.first_hops {
        start.push(entries.len() as u32);
        entries.extend(hops.iter().map(|&primary| Protection {
            primary,
            alternate: None,
        }));
    }
    start.push(entries.len() as u32);
    let mut out = Alternates { start, entries };

    // Distinct neighbours with their cheapest link (parallel links: a path
    // takes the cheapest).
    let mut nbrs: Vec<(usize, u64)> = Vec::new();
    for (v, c) in g.neighbours(src) {
        let Ok(c) = u64::try_from(c) else { continue };
        if v != src {
            nbrs.push((v, c));
        }
    }
    nbrs.sort_unstable();
    nbrs.dedup_by_key(|&mut (v, _)| v);
    if nbrs.len() > MAX_NEIGHBOURS || out.entries.is_empty() {
        return Ok(out);
    }

    for &(a, link) in &nbrs {
        let from_a = costs(g, a)?;
        let Some(a_s) = from_a.get(src).copied().flatten() else {
            continue;
        };
        for d in 0..n {
            let (Some(s_d), Some(a_d)) = (paths.cost[d], from_a.get(d).copied().flatten()) else {
                continue;
            };
            // Inequality 1: A's shortest paths to D do not pass S.
            if a_d >= a_s.saturating_add(s_d) {
                continue;
            }
            let range = out.start[d] as usize..out.start[d + 1] as usize;
            for p in &mut out.entries[range] {
                if p.primary == a {
                    continue;
                }
                let nb = p.primary;
                // N begins a shortest path to D: dist(N, D) = dist(S, D) -
                // dist(S, N). Inequality 3: A's paths to D avoid N.
                let node_protecting = d != nb
                    && match (from_a.get(nb).copied().flatten(), paths.cost[nb]) {
                        (Some(a_n), Some(s_n)) => a_d < a_n.saturating_add(s_d.saturating_sub(s_n)),
                        _ => false,
                    };
                let cand = Alternate {
                    host: a,
                    cost: link.saturating_add(a_d),
                    node_protecting,
                };
                if p.alternate.is_none_or(|best| key(&cand) < key(&best)) {
                    p.alternate = Some(cand);
                }
            }
        }
    }
    Ok(out)
}
