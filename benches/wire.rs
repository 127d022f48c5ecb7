//! Wire-layer micro-benchmarks: checksum, the VXLAN decap parse chain (our
//! views against etherparse as the maintained baseline), TTL decrement, and
//! the encap header emitters. Batches of 64 packets, throughput in packets.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vxrouter::wire::{checksum, ethernet, ipv4, udp, vxlan};

const BATCH: usize = 64;
const OUTER: usize = 14 + 20 + 8 + 8;

/// A VXLAN-over-IPv4 frame carrying a 64-byte inner Ethernet/IPv4/UDP packet.
fn vxlan_frame() -> Vec<u8> {
    let inner_ip_len = 64 - 14;
    let mut f = vec![0u8; OUTER + 64];
    ethernet::emit(&mut f, [2; 6], [4; 6], ethernet::ETHERTYPE_IPV4);
    let outer = ipv4::Repr {
        src: Ipv4Addr::new(198, 18, 0, 1),
        dst: Ipv4Addr::new(198, 18, 0, 2),
        protocol: ipv4::PROTO_UDP,
        ttl: 64,
        payload_len: (8 + 8 + 64) as u16,
        dont_frag: true,
        ident: 0,
    };
    outer.emit(&mut f[14..]);
    udp::emit(&mut f[34..], 50000, vxlan::DEFAULT_PORT, 8 + 64);
    vxlan::emit(&mut f[42..], 42);
    ethernet::emit(&mut f[50..], [6; 6], [8; 6], ethernet::ETHERTYPE_IPV4);
    let inner = ipv4::Repr {
        src: Ipv4Addr::new(198, 19, 1, 2),
        dst: Ipv4Addr::new(198, 19, 2, 2),
        payload_len: (inner_ip_len - 20) as u16,
        ..outer
    };
    inner.emit(&mut f[64..]);
    udp::emit(&mut f[84..], 1234, 5678, (inner_ip_len - 28) as u16);
    f
}

/// Our views, as decap runs them: outer Ethernet, IPv4 (checksum verified),
/// UDP, VXLAN flag and VNI, inner Ethernet, inner IPv4 TTL and destination.
#[inline(always)]
fn decap_ours<const VERIFY: bool>(f: &[u8]) -> Option<u32> {
    let e = ethernet::Frame::new_checked(f).ok()?;
    if e.ethertype() != ethernet::ETHERTYPE_IPV4 {
        return None;
    }
    let ip = ipv4::Packet::new_checked(e.payload()).ok()?;
    if (VERIFY && !ip.verify_checksum()) || ip.protocol() != ipv4::PROTO_UDP {
        return None;
    }
    let u = udp::Packet::new_checked(ip.payload()).ok()?;
    if u.dst_port() != vxlan::DEFAULT_PORT {
        return None;
    }
    let v = vxlan::Packet::new_checked(u.payload()).ok()?;
    if !v.has_vni_flag() {
        return None;
    }
    let ie = ethernet::Frame::new_checked(v.payload()).ok()?;
    let iip = ipv4::Packet::new_checked(ie.payload()).ok()?;
    Some(v.vni() ^ iip.dst_u32() ^ u32::from(iip.ttl()))
}

/// The same walk with etherparse's slicing (outer, then inner).
#[inline(always)]
fn decap_etherparse(f: &[u8]) -> Option<u32> {
    let outer = etherparse::SlicedPacket::from_ethernet(f).ok()?;
    let u = match outer.transport? {
        etherparse::TransportSlice::Udp(u) => u,
        _ => return None,
    };
    if u.destination_port() != vxlan::DEFAULT_PORT {
        return None;
    }
    let p = u.payload();
    if p.len() < 8 || p[0] & 0x08 == 0 {
        return None;
    }
    let vni = u32::from_be_bytes([0, p[4], p[5], p[6]]);
    let inner = etherparse::SlicedPacket::from_ethernet(&p[8..]).ok()?;
    match inner.net? {
        etherparse::NetSlice::Ipv4(ip) => {
            let h = ip.header();
            Some(vni ^ u32::from_be_bytes(h.destination()) ^ u32::from(h.ttl()))
        }
        _ => None,
    }
}

fn reference_checksum(data: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn bench_checksum(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    for len in [20usize, 64, 1500, 1398, 65000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("ours_u64_words", len), &data, |b, d| {
            b.iter(|| checksum::checksum(black_box(d)))
        });
        // tun-rs' checksum (AVX2 where the CPU has it): the one its GSO uses.
        g.bench_with_input(BenchmarkId::new("tun_rs_simd", len), &data, |b, d| {
            b.iter(|| tun_rs::checksum(black_box(d), 0))
        });
        if len <= 1500 {
            g.bench_with_input(BenchmarkId::new("naive_u16_loop", len), &data, |b, d| {
                b.iter(|| reference_checksum(black_box(d)))
            });
        }
    }
    g.finish();
}

fn bench_decap_parse(c: &mut Criterion) {
    let frames = vec![vxlan_frame(); BATCH];
    assert_eq!(decap_ours::<true>(&frames[0]), decap_etherparse(&frames[0]));
    assert!(decap_ours::<true>(&frames[0]).is_some());
    let mut g = c.benchmark_group("decap_parse_batch64");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("wire_views", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for f in &frames {
                acc ^= decap_ours::<true>(black_box(f)).unwrap_or(0);
            }
            acc
        })
    });
    g.bench_function("wire_views_no_outer_csum", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for f in &frames {
                acc ^= decap_ours::<false>(black_box(f)).unwrap_or(0);
            }
            acc
        })
    });
    g.bench_function("etherparse_sliced", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for f in &frames {
                acc ^= decap_etherparse(black_box(f)).unwrap_or(0);
            }
            acc
        })
    });
    g.finish();
}

fn bench_ttl(c: &mut Criterion) {
    let mut frames = vec![vxlan_frame()[64..].to_vec(); BATCH];
    let mut g = c.benchmark_group("ipv4_ttl_batch64");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("dec_ttl_incremental", |b| {
        b.iter(|| {
            for f in frames.iter_mut() {
                let mut p = ipv4::Packet::new_unchecked(&mut f[..]);
                p.set_ttl(64);
                black_box(p.dec_ttl_incremental());
            }
        })
    });
    g.bench_function("dec_ttl_full_recompute", |b| {
        b.iter(|| {
            for f in frames.iter_mut() {
                let mut p = ipv4::Packet::new_unchecked(&mut f[..]);
                p.set_ttl(63);
                p.fill_checksum();
                black_box(p.checksum());
            }
        })
    });
    g.finish();
}

fn bench_encap_emit(c: &mut Criterion) {
    let mut bufs = vec![vxlan_frame(); BATCH];
    let repr = ipv4::Repr {
        src: Ipv4Addr::new(198, 18, 0, 1),
        dst: Ipv4Addr::new(198, 18, 0, 2),
        protocol: ipv4::PROTO_UDP,
        ttl: 64,
        payload_len: (8 + 8 + 64) as u16,
        dont_frag: true,
        ident: 0,
    };
    let mut template = [0u8; OUTER];
    ethernet::emit(&mut template, [2; 6], [4; 6], ethernet::ETHERTYPE_IPV4);
    repr.emit(&mut template[14..]);
    udp::emit(&mut template[34..], 0, vxlan::DEFAULT_PORT, 8 + 64);
    vxlan::emit(&mut template[42..], 42);
    let mut g = c.benchmark_group("encap_headers_batch64");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("emit_all_layers", |b| {
        b.iter(|| {
            for (i, f) in bufs.iter_mut().enumerate() {
                ethernet::emit(f, [2; 6], [4; 6], ethernet::ETHERTYPE_IPV4);
                black_box(&repr).emit(&mut f[14..]);
                udp::emit(&mut f[34..], 49152 + i as u16, vxlan::DEFAULT_PORT, 8 + 64);
                vxlan::emit(&mut f[42..], 42);
            }
        })
    });
    g.bench_function("template_copy_patch", |b| {
        b.iter(|| {
            for (i, f) in bufs.iter_mut().enumerate() {
                f[..OUTER].copy_from_slice(black_box(&template));
                let total = (OUTER - 14 + 64) as u16;
                let mut ip = ipv4::Packet::new_unchecked(&mut f[14..34]);
                let old = ip.total_len();
                ip.set_total_len(total);
                let c = checksum::update16(ip.checksum(), old, total);
                ip.set_checksum(c);
                let mut u = udp::Packet::new_unchecked(&mut f[34..42]);
                u.set_src_port(49152 + i as u16);
                u.set_len(8 + 8 + 64);
            }
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_checksum,
    bench_decap_parse,
    bench_ttl,
    bench_encap_emit
);
criterion_main!(benches);
