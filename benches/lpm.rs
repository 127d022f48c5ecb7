//! LPM benches: vxrouter's poptrie against `prefix-trie` 0.10 in the same
//! run, over random tables with a realistic prefix-length mix.
//!
//! Destinations: 7 in 8 are random addresses inside a random prefix of the
//! table (traffic that hits routes, so lookups walk to the prefix's depth),
//! 1 in 8 uniformly random. Each iteration looks up 65536 destinations;
//! Throughput::Elements makes criterion report lookups per second.
//!
//! Groups: `lpm/{vxrouter,prefix-trie}/<size>` (IPv4, one lookup at a time),
//! `lpm_batch/vxrouter/<size>` (IPv4, `lookup_batch` over batches of 64),
//! `lpm6/{vxrouter,prefix-trie}/<size>` (IPv6), `fib_build/<size>` (IPv4
//! table build from an unsorted route list), `lpm_top/<bits>/<size>` (IPv4,
//! tables of 16 to 10k prefixes with a top level of 8 bits against the
//! default 18). Table memory goes to stderr.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipnet::{Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use rand::{rngs::StdRng, Rng, SeedableRng};
use vxrouter::fib::{Lpm4, Lpm6, NextHopId};

const SIZES: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];
const DESTINATIONS: usize = 1 << 16;
const BATCH: usize = 64;
/// Table sizes of `lpm_top`.
const TOP_SIZES: [usize; 4] = [16, 256, 1_000, 10_000];

/// IPv4 length mix: mostly /24, many /16-/23, few shorter, some longer.
fn routes4(n: usize, rng: &mut StdRng) -> Vec<(Ipv4Net, NextHopId)> {
    (0..n)
        .map(|i| {
            let len = match rng.gen_range(0..100) {
                0..=54 => 24,
                55..=84 => rng.gen_range(16..24),
                85..=89 => rng.gen_range(8..16),
                _ => rng.gen_range(25..=32),
            };
            let net = Ipv4Net::new(Ipv4Addr::from(rng.gen::<u32>()), len)
                .expect("length <= 32")
                .trunc();
            (net, i as NextHopId)
        })
        .collect()
}

/// IPv6 length mix under 2000::/3: mostly /48, the rest /32-/64.
fn routes6(n: usize, rng: &mut StdRng) -> Vec<(Ipv6Net, NextHopId)> {
    (0..n)
        .map(|i| {
            let len = match rng.gen_range(0..100) {
                0..=59 => 48,
                60..=79 => rng.gen_range(32..48),
                _ => rng.gen_range(49..=64),
            };
            let addr = (0x2u128 << 124) | (rng.gen::<u128>() >> 3);
            let net = Ipv6Net::new(Ipv6Addr::from(addr), len)
                .expect("length <= 128")
                .trunc();
            (net, i as NextHopId)
        })
        .collect()
}

fn destinations4(routes: &[(Ipv4Net, NextHopId)], rng: &mut StdRng) -> Vec<u32> {
    (0..DESTINATIONS)
        .map(|_| {
            if rng.gen_range(0..8) == 0 {
                return rng.gen();
            }
            let (net, _) = routes[rng.gen_range(0..routes.len())];
            u32::from(net.network()) | (rng.gen::<u32>() & u32::from(net.hostmask()))
        })
        .collect()
}

fn destinations6(routes: &[(Ipv6Net, NextHopId)], rng: &mut StdRng) -> Vec<u128> {
    (0..DESTINATIONS)
        .map(|_| {
            if rng.gen_range(0..8) == 0 {
                return (0x2u128 << 124) | (rng.gen::<u128>() >> 3);
            }
            let (net, _) = routes[rng.gen_range(0..routes.len())];
            u128::from(net.network()) | (rng.gen::<u128>() & u128::from(net.hostmask()))
        })
        .collect()
}

fn bench_v4(c: &mut Criterion) {
    let mut group = c.benchmark_group("lpm");
    group.throughput(Throughput::Elements(DESTINATIONS as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let mut batch_group_data = Vec::new();
    for &size in &SIZES {
        let mut rng = StdRng::seed_from_u64(size as u64);
        let routes = routes4(size, &mut rng);
        let addrs = destinations4(&routes, &mut rng);
        let lpm = Lpm4::build(&routes);
        eprintln!(
            "lpm4 {size}: {} prefixes, {} nodes, {} bytes ({:.2} MiB)",
            lpm.len(),
            lpm.node_count(),
            lpm.memory_bytes(),
            lpm.memory_bytes() as f64 / (1u64 << 20) as f64
        );
        group.bench_with_input(BenchmarkId::new("vxrouter", size), &addrs, |b, addrs| {
            b.iter(|| {
                let mut acc = 0u32;
                for &a in addrs {
                    acc = acc.wrapping_add(lpm.lookup(black_box(a)).unwrap_or(0));
                }
                acc
            })
        });
        let mut trie: PrefixMap<Ipv4Net, NextHopId> = PrefixMap::new();
        for (net, id) in &routes {
            trie.insert(*net, *id);
        }
        group.bench_with_input(BenchmarkId::new("prefix-trie", size), &addrs, |b, addrs| {
            b.iter(|| {
                let mut acc = 0u32;
                for &a in addrs {
                    let host = Ipv4Net::from(Ipv4Addr::from(black_box(a)));
                    acc = acc.wrapping_add(trie.get_lpm(&host).map_or(0, |(_, v)| *v));
                }
                acc
            })
        });
        batch_group_data.push((size, lpm, addrs));
    }
    group.finish();

    let mut group = c.benchmark_group("lpm_batch");
    group.throughput(Throughput::Elements(DESTINATIONS as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for (size, lpm, addrs) in &batch_group_data {
        group.bench_with_input(BenchmarkId::new("vxrouter", size), addrs, |b, addrs| {
            let mut out = [None; BATCH];
            b.iter(|| {
                let mut acc = 0u32;
                for chunk in addrs.chunks(BATCH) {
                    lpm.lookup_batch(black_box(chunk), &mut out);
                    acc = acc.wrapping_add(out[0].unwrap_or(0));
                }
                acc
            })
        });
    }
    group.finish();
}

fn bench_v6(c: &mut Criterion) {
    let mut group = c.benchmark_group("lpm6");
    group.throughput(Throughput::Elements(DESTINATIONS as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for &size in &SIZES {
        let mut rng = StdRng::seed_from_u64(size as u64 + 6);
        let routes = routes6(size, &mut rng);
        let addrs = destinations6(&routes, &mut rng);
        let lpm = Lpm6::build(&routes);
        eprintln!(
            "lpm6 {size}: {} prefixes, {} nodes, {} bytes ({:.2} MiB)",
            lpm.len(),
            lpm.node_count(),
            lpm.memory_bytes(),
            lpm.memory_bytes() as f64 / (1u64 << 20) as f64
        );
        group.bench_with_input(BenchmarkId::new("vxrouter", size), &addrs, |b, addrs| {
            b.iter(|| {
                let mut acc = 0u32;
                for &a in addrs {
                    acc = acc.wrapping_add(lpm.lookup(black_box(a)).unwrap_or(0));
                }
                acc
            })
        });
        let mut trie: PrefixMap<Ipv6Net, NextHopId> = PrefixMap::new();
        for (net, id) in &routes {
            trie.insert(*net, *id);
        }
        group.bench_with_input(BenchmarkId::new("prefix-trie", size), &addrs, |b, addrs| {
            b.iter(|| {
                let mut acc = 0u32;
                for &a in addrs {
                    let host = Ipv6Net::from(Ipv6Addr::from(black_box(a)));
                    acc = acc.wrapping_add(trie.get_lpm(&host).map_or(0, |(_, v)| *v));
                }
                acc
            })
        });
    }
    group.finish();
}

fn bench_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("fib_build");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for &size in &SIZES {
        let mut rng = StdRng::seed_from_u64(size as u64);
        let routes = routes4(size, &mut rng);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &routes, |b, routes| {
            b.iter(|| Lpm4::build(black_box(routes)))
        });
    }
    group.finish();
}

fn bench_top(c: &mut Criterion) {
    let mut group = c.benchmark_group("lpm_top");
    group.throughput(Throughput::Elements(DESTINATIONS as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for &size in &TOP_SIZES {
        let mut rng = StdRng::seed_from_u64(size as u64);
        let routes = routes4(size, &mut rng);
        let addrs = destinations4(&routes, &mut rng);
        for bits in [8, 18] {
            let lpm = Lpm4::build_with_top_bits(&routes, bits);
            eprintln!(
                "lpm4 {size} top {bits}: {} nodes, {} bytes",
                lpm.node_count(),
                lpm.memory_bytes()
            );
            group.bench_with_input(
                BenchmarkId::new(bits.to_string(), size),
                &addrs,
                |b, addrs| {
                    b.iter(|| {
                        let mut acc = 0u32;
                        for &a in addrs {
                            acc = acc.wrapping_add(lpm.lookup(black_box(a)).unwrap_or(0));
                        }
                        acc
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_v4, bench_v6, bench_build, bench_top);
criterion_main!(benches);
