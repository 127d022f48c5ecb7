//! Property tests of the poptrie LPM tables against reference models: a
//! linear scan over the route list (small random sets) and a per-length hash
//! lookup (large sets with a realistic length mix).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use vxrouter::fib::{Fib, Lpm4, Lpm6, NextHopId, Packed};

/// Linear-scan LPM: the longest containing prefix, the last given on ties.
fn reference4(routes: &[(Ipv4Net, NextHopId)], addr: u32) -> Option<NextHopId> {
    let addr = Ipv4Addr::from(addr);
    let mut best: Option<(u8, NextHopId)> = None;
    for (net, id) in routes {
        if net.contains(&addr) && best.is_none_or(|(len, _)| net.prefix_len() >= len) {
            best = Some((net.prefix_len(), *id));
        }
    }
    best.map(|(_, id)| id)
}

fn reference6(routes: &[(Ipv6Net, NextHopId)], addr: u128) -> Option<NextHopId> {
    let addr = Ipv6Addr::from(addr);
    let mut best: Option<(u8, NextHopId)> = None;
    for (net, id) in routes {
        if net.contains(&addr) && best.is_none_or(|(len, _)| net.prefix_len() >= len) {
            best = Some((net.prefix_len(), *id));
        }
    }
    best.map(|(_, id)| id)
}

const BASES4: [u32; 5] = [0, u32::MAX, 0x0A00_0000, 0xC613_0100, 0x8000_0000];
const BASES6: [u128; 5] = [0, u128::MAX, 0x2001_0db8 << 96, 0xfe80 << 112, 1 << 127];

/// Prefixes clustered around a few bases (so they overlap and nest) or
/// uniformly random, of every length, host bits left in on purpose.
fn prefix4() -> impl Strategy<Value = (Ipv4Net, NextHopId)> {
    (0usize..6, any::<u32>(), 0u32..=32, 0u8..=32, 0u32..64).prop_map(|(sel, r, shift, len, id)| {
        let addr = match BASES4.get(sel) {
            Some(base) => base ^ r.checked_shr(shift).unwrap_or(0),
            None => r,
        };
        (Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap(), id)
    })
}

fn prefix6() -> impl Strategy<Value = (Ipv6Net, NextHopId)> {
    (0usize..6, any::<u128>(), 0u32..=128, 0u8..=128, 0u32..64).prop_map(
        |(sel, r, shift, len, id)| {
            let addr = match BASES6.get(sel) {
                Some(base) => base ^ r.checked_shr(shift).unwrap_or(0),
                None => r,
            };
            (Ipv6Net::new(Ipv6Addr::from(addr), len).unwrap(), id)
        },
    )
}

/// Edge addresses plus the first and last address of each prefix and their
/// outside neighbours.
fn probes4(routes: &[(Ipv4Net, NextHopId)], extra: &[u32]) -> Vec<u32> {
    let mut v = vec![0, u32::MAX, 0x7FFF_FFFF, 0x8000_0000, 1, u32::MAX - 1];
    v.extend_from_slice(&BASES4);
    for (net, _) in routes {
        let lo = u32::from(net.network());
        let hi = u32::from(net.broadcast());
        v.extend([lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)]);
    }
    v.extend_from_slice(extra);
    v
}

fn probes6(routes: &[(Ipv6Net, NextHopId)], extra: &[u128]) -> Vec<u128> {
    let mut v = vec![0, u128::MAX, u128::MAX >> 1, 1 << 127, 1, u128::MAX - 1];
    v.extend_from_slice(&BASES6);
    for (net, _) in routes {
        let lo = u128::from(net.network());
        let hi = u128::from(net.broadcast());
        v.extend([lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)]);
    }
    v.extend_from_slice(extra);
    v
}

fn distinct4(routes: &[(Ipv4Net, NextHopId)]) -> usize {
    let mut v: Vec<_> = routes.iter().map(|(n, _)| n.trunc()).collect();
    v.sort();
    v.dedup();
    v.len()
}

fn distinct6(routes: &[(Ipv6Net, NextHopId)]) -> usize {
    let mut v: Vec<_> = routes.iter().map(|(n, _)| n.trunc()).collect();
    v.sort();
    v.dedup();
    v.len()
}

/// A [`Fib`] payload: a number packs into the leaf, a name stays in the
/// table.
#[derive(Clone, Debug, PartialEq)]
enum Hop {
    Num(u32),
    Name(String),
}

impl Packed for Hop {
    fn pack(&self) -> Option<u32> {
        match self {
            Hop::Num(n) => Some(*n),
            Hop::Name(_) => None,
        }
    }

    fn unpack(bits: u32) -> Option<Self> {
        Some(Hop::Num(bits))
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn lpm4_matches_linear_scan(
        mut routes in prop::collection::vec(prefix4(), 0..300),
        default in prop::option::of(0u32..64),
        extra in prop::collection::vec(any::<u32>(), 0..64),
    ) {
        if let Some(id) = default {
            routes.insert(0, ("0.0.0.0/0".parse().unwrap(), id));
        }
        let table = Lpm4::build(&routes);
        prop_assert_eq!(table.len(), distinct4(&routes));
        let probes = probes4(&routes, &extra);
        let mut batch = vec![None; probes.len()];
        table.lookup_batch(&probes, &mut batch);
        for (addr, got) in probes.iter().zip(&batch) {
            let want = reference4(&routes, *addr);
            prop_assert_eq!(table.lookup(*addr), want, "addr {}", Ipv4Addr::from(*addr));
            prop_assert_eq!(*got, want, "batch addr {}", Ipv4Addr::from(*addr));
        }
    }

    #[test]
    fn lpm6_matches_linear_scan(
        mut routes in prop::collection::vec(prefix6(), 0..300),
        default in prop::option::of(0u32..64),
        extra in prop::collection::vec(any::<u128>(), 0..64),
    ) {
        if let Some(id) = default {
            routes.insert(0, ("::/0".parse().unwrap(), id));
        }
        let table = Lpm6::build(&routes);
        prop_assert_eq!(table.len(), distinct6(&routes));
        let probes = probes6(&routes, &extra);
        let mut batch = vec![None; probes.len()];
        table.lookup_batch(&probes, &mut batch);
        for (addr, got) in probes.iter().zip(&batch) {
            let want = reference6(&routes, *addr);
            prop_assert_eq!(table.lookup(*addr), want, "addr {}", Ipv6Addr::from(*addr));
            prop_assert_eq!(*got, want, "batch addr {}", Ipv6Addr::from(*addr));
        }
    }

    /// Every top-level size answers as the model: 8 bits, the large
    /// tables' 18, and any other up to 24 (a whole 24-bit array is 64 MiB,
    /// too much to build for every case; `small_tables_take_24_bits_...`
    /// covers the small tables' 24), with prefixes shorter and longer than
    /// the top level, /0 and full length among them.
    #[test]
    fn lpm_top_levels_match_linear_scan(
        mut v4 in prop::collection::vec(prefix4(), 0..80),
        mut v6 in prop::collection::vec(prefix6(), 0..80),
        edges in prop::collection::vec((any::<u32>(), any::<u128>(), 0u32..64), 0..4),
        bits in 1u32..=24,
        extra4 in prop::collection::vec(any::<u32>(), 0..32),
        extra6 in prop::collection::vec(any::<u128>(), 0..32),
    ) {
        for (a4, a6, id) in edges {
            let len6 = [0u8, 7, 8, 9, 64, 127, 128][(a6 % 7) as usize];
            v4.push((Ipv4Net::new(Ipv4Addr::from(a4), [0, 7, 8, 9, 31, 32][(a4 % 6) as usize]).unwrap(), id));
            v6.push((Ipv6Net::new(Ipv6Addr::from(a6), len6).unwrap(), id));
        }
        let tables4 = [Lpm4::build(&v4), Lpm4::build_with_top_bits(&v4, 8),
            Lpm4::build_with_top_bits(&v4, 18), Lpm4::build_with_top_bits(&v4, bits)];
        let probes = probes4(&v4, &extra4);
        for t in &tables4 {
            prop_assert_eq!(t.len(), distinct4(&v4));
            for a in &probes {
                prop_assert_eq!(t.lookup(*a), reference4(&v4, *a),
                    "top {} addr {}", t.top_bits(), Ipv4Addr::from(*a));
            }
        }
        let tables6 = [Lpm6::build(&v6), Lpm6::build_with_top_bits(&v6, 8),
            Lpm6::build_with_top_bits(&v6, 18), Lpm6::build_with_top_bits(&v6, bits)];
        let probes = probes6(&v6, &extra6);
        for t in &tables6 {
            prop_assert_eq!(t.len(), distinct6(&v6));
            for a in &probes {
                prop_assert_eq!(t.lookup(*a), reference6(&v6, *a),
                    "top {} addr {}", t.top_bits(), Ipv6Addr::from(*a));
            }
        }
    }

    /// A network's table: prefixes of /16 to full length inside one /16
    /// (subnets, and the addresses in them), with or without a default.
    /// `build` gives it the 24-bit top level, whose first slots sit in
    /// the header, and it answers as the model.
    #[test]
    fn small_tables_take_24_bits_and_match_linear_scan(
        parts4 in prop::collection::vec((any::<u16>(), 16u8..=32, 0u32..64), 1..40),
        parts6 in prop::collection::vec((any::<u16>(), any::<u64>(), 16u8..=128, 0u32..64), 1..40),
        default in prop::option::of(0u32..64),
        extra in prop::collection::vec((any::<u16>(), any::<u64>()), 0..32),
    ) {
        let base4 = 0xC613_0000u32;
        let mut v4: Vec<(Ipv4Net, NextHopId)> = parts4.iter()
            .map(|&(low, len, id)| (Ipv4Net::new(Ipv4Addr::from(base4 | u32::from(low)), len).unwrap(), id))
            .collect();
        // 2001:db8::/32 and below; the /16 is what the prefixes share.
        let base6 = 0x2001_0db8u128 << 96;
        let addr6 = |sub: u16, low: u64| base6 | u128::from(sub) << 80 | u128::from(low);
        let mut v6: Vec<(Ipv6Net, NextHopId)> = parts6.iter()
            .map(|&(sub, low, len, id)| (Ipv6Net::new(Ipv6Addr::from(addr6(sub, low)), len).unwrap(), id))
            .collect();
        if let Some(id) = default {
            v4.insert(0, ("0.0.0.0/0".parse().unwrap(), id));
            v6.insert(0, ("::/0".parse().unwrap(), id));
        }
        let t4 = Lpm4::build(&v4);
        let t6 = Lpm6::build(&v6);
        prop_assert_eq!(t4.top_bits(), 24);
        prop_assert_eq!(t6.top_bits(), 24);
        let extra4: Vec<u32> = extra.iter().map(|&(l, _)| base4 | u32::from(l)).collect();
        let extra6: Vec<u128> = extra.iter().map(|&(s, l)| addr6(s, l)).collect();
        for a in probes4(&v4, &extra4) {
            prop_assert_eq!(t4.lookup(a), reference4(&v4, a), "addr {}", Ipv4Addr::from(a));
        }
        for a in probes6(&v6, &extra6) {
            prop_assert_eq!(t6.lookup(a), reference6(&v6, a), "addr {}", Ipv6Addr::from(a));
        }
    }

    #[test]
    fn fib_indexes_next_hops_per_route(
        v4 in prop::collection::vec(prefix4(), 0..60),
        v6 in prop::collection::vec(prefix6(), 0..60),
        probe4 in prop::collection::vec(any::<u32>(), 1..32),
    ) {
        // Interleave the families; the payload names the route it came
        // from, as a number every other route (kept in the leaf) and a name
        // otherwise (kept in the table).
        let mut routes: Vec<(IpNet, Hop)> = Vec::new();
        for (i, (n, _)) in v4.iter().enumerate() {
            let hop = |fam: &str, k: usize| if k % 2 == 0 {
                Hop::Num(k as u32)
            } else {
                Hop::Name(format!("{fam}-{i}"))
            };
            routes.push(((*n).into(), hop("v4", routes.len())));
            if let Some((m, _)) = v6.get(i) {
                routes.push(((*m).into(), hop("v6", routes.len())));
            }
        }
        let fib = Fib::build(routes.clone());
        prop_assert_eq!(fib.next_hops.len(), routes.len());
        let ids4: Vec<(Ipv4Net, NextHopId)> = routes.iter().enumerate().filter_map(|(i, (n, _))| match n {
            IpNet::V4(n) => Some((*n, i as u32)),
            IpNet::V6(_) => None,
        }).collect();
        let ids6: Vec<(Ipv6Net, NextHopId)> = routes.iter().enumerate().filter_map(|(i, (n, _))| match n {
            IpNet::V6(n) => Some((*n, i as u32)),
            IpNet::V4(_) => None,
        }).collect();
        for a in probes4(&ids4, &probe4) {
            let want = reference4(&ids4, a).map(|i| routes[i as usize].1.clone());
            prop_assert_eq!(fib.lookup_v4(a), want.clone());
            prop_assert_eq!(fib.lookup(Ipv4Addr::from(a).into()), want);
        }
        for a in probes6(&ids6, &[]) {
            let want = reference6(&ids6, a).map(|i| routes[i as usize].1.clone());
            prop_assert_eq!(fib.lookup_v6(a), want.clone());
            prop_assert_eq!(fib.lookup(Ipv6Addr::from(a).into()), want);
        }
    }
}

#[test]
fn edge_addresses() {
    let routes: Vec<(Ipv4Net, NextHopId)> = vec![
        ("0.0.0.0/32".parse().unwrap(), 1),
        ("255.255.255.255/32".parse().unwrap(), 2),
        ("0.0.0.0/1".parse().unwrap(), 3),
        ("128.0.0.0/1".parse().unwrap(), 4),
    ];
    let t = Lpm4::build(&routes);
    assert_eq!(t.lookup(0), Some(1));
    assert_eq!(t.lookup(1), Some(3));
    assert_eq!(t.lookup(u32::MAX), Some(2));
    assert_eq!(t.lookup(u32::MAX - 1), Some(4));
    assert_eq!(Lpm4::build(&[]).lookup(u32::MAX), None);

    let routes: Vec<(Ipv6Net, NextHopId)> = vec![
        ("::/128".parse().unwrap(), 1),
        (
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"
                .parse()
                .unwrap(),
            2,
        ),
        ("::/0".parse().unwrap(), 3),
        ("ffff::/16".parse().unwrap(), 4),
    ];
    let t = Lpm6::build(&routes);
    assert_eq!(t.lookup(0), Some(1));
    assert_eq!(t.lookup(1), Some(3));
    assert_eq!(t.lookup(u128::MAX), Some(2));
    assert_eq!(t.lookup(u128::MAX - 1), Some(4));
}

/// Per-length hash model: exact for any size, fast enough for 100k routes.
struct HashModel<K> {
    by_len: Vec<HashMap<K, NextHopId>>,
}

#[test]
fn lpm4_large_realistic_table_matches_model() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut routes = Vec::new();
    for i in 0..100_000u32 {
        let len = match rng.gen_range(0..100) {
            0..=54 => 24,
            55..=84 => rng.gen_range(16..24),
            85..=89 => rng.gen_range(8..16),
            _ => rng.gen_range(25..=32),
        };
        let net = Ipv4Net::new(Ipv4Addr::from(rng.gen::<u32>()), len).unwrap();
        routes.push((net, i % 5000));
    }
    routes.push(("0.0.0.0/0".parse().unwrap(), 7));
    let table = Lpm4::build(&routes);
    let mut model = HashModel {
        by_len: vec![HashMap::new(); 33],
    };
    for (net, id) in &routes {
        model.by_len[usize::from(net.prefix_len())].insert(u32::from(net.network()), *id);
    }
    let model_lookup = |a: u32| {
        (0..=32u32).rev().find_map(|len| {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            model.by_len[len as usize].get(&(a & mask)).copied()
        })
    };
    let mut addrs: Vec<u32> = (0..200_000).map(|_| rng.gen()).collect();
    for (net, _) in routes.iter().step_by(3) {
        addrs.push(u32::from(net.network()) | (rng.gen::<u32>() & !u32::from(net.netmask())));
    }
    let mut batch = vec![None; addrs.len()];
    table.lookup_batch(&addrs, &mut batch);
    for (a, got) in addrs.iter().zip(&batch) {
        let want = model_lookup(*a);
        assert_eq!(table.lookup(*a), want, "{}", Ipv4Addr::from(*a));
        assert_eq!(*got, want);
    }
    eprintln!(
        "lpm4 100k realistic: {} prefixes, {} nodes, {} bytes ({:.2} MiB)",
        table.len(),
        table.node_count(),
        table.memory_bytes(),
        table.memory_bytes() as f64 / (1 << 20) as f64
    );
    assert!(table.memory_bytes() <= 16 << 20);
}

#[test]
fn lpm6_large_realistic_table_matches_model() {
    let mut rng = StdRng::seed_from_u64(6);
    let mut routes = Vec::new();
    for i in 0..100_000u32 {
        let len = match rng.gen_range(0..100) {
            0..=59 => 48,
            60..=79 => rng.gen_range(32..48),
            80..=94 => rng.gen_range(49..=64),
            _ => [16, 24, 96, 112, 127, 128][rng.gen_range(0..6)],
        };
        let addr = (0x2u128 << 124) | (rng.gen::<u128>() >> 3);
        let net = Ipv6Net::new(Ipv6Addr::from(addr), len).unwrap();
        routes.push((net, i % 5000));
    }
    routes.push(("::/0".parse().unwrap(), 7));
    let table = Lpm6::build(&routes);
    let mut model = HashModel {
        by_len: vec![HashMap::new(); 129],
    };
    for (net, id) in &routes {
        model.by_len[usize::from(net.prefix_len())].insert(u128::from(net.network()), *id);
    }
    let model_lookup = |a: u128| {
        (0..=128u32).rev().find_map(|len| {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            model.by_len[len as usize].get(&(a & mask)).copied()
        })
    };
    let mut addrs: Vec<u128> = (0..100_000).map(|_| rng.gen()).collect();
    for (net, _) in routes.iter().step_by(2) {
        addrs.push(u128::from(net.network()) | (rng.gen::<u128>() & !u128::from(net.netmask())));
    }
    for a in &addrs {
        assert_eq!(table.lookup(*a), model_lookup(*a), "{}", Ipv6Addr::from(*a));
    }
    eprintln!(
        "lpm6 100k realistic: {} prefixes, {} nodes, {} bytes ({:.2} MiB)",
        table.len(),
        table.node_count(),
        table.memory_bytes(),
        table.memory_bytes() as f64 / (1 << 20) as f64
    );
}
