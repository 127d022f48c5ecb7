//! GRO towards a container port: one worker round of TCP segments (two
//! super-packets' worth of one flow, 88 segments of 1448 bytes) queued and
//! coalesced into writes, the system call replaced by a sink that only
//! touches the slices. Ours (`offload::coalesce::Coalescer`: one copy per segment,
//! gathered writes) against the coalescer it replaced, tun-rs' `GROTable`
//! driven the way vxrouter drove it (a copy into a per-frame buffer behind a
//! marked header, `apply_gro`, the surviving buffers written).

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tun_rs::{GROTable, VIRTIO_NET_HDR_LEN};
use vxrouter::offload::coalesce::{Coalescer, MAX_SUPER_LEN, QUEUE_FRAMES};
use vxrouter::wire::checksum;

const SEGS: usize = 88;
const MSS: usize = 1448;
const SRC: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 2);
const DST: Ipv4Addr = Ipv4Addr::new(198, 19, 2, 2);

/// An IPv4/TCP segment (timestamps option, as Linux sends), both checksums set.
fn segment(i: usize) -> Vec<u8> {
    let thl = 32;
    let total = 20 + thl + MSS;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&(i as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 63;
    p[9] = 6;
    p[12..16].copy_from_slice(&SRC.octets());
    p[16..20].copy_from_slice(&DST.octets());
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    t[4..8].copy_from_slice(&((i * MSS) as u32).to_be_bytes());
    t[8..12].copy_from_slice(&7u32.to_be_bytes());
    t[12] = ((thl / 4) as u8) << 4;
    t[13] = 0x10;
    t[14..16].copy_from_slice(&512u16.to_be_bytes());
    t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    for (k, b) in t[thl..].iter_mut().enumerate() {
        *b = (k * 7 + i) as u8;
    }
    let pseudo = checksum::pseudo_v4(SRC, DST, 6, (thl + MSS) as u16);
    let c = !checksum::fold(pseudo + checksum::sum(t));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    p
}

fn gro(c: &mut Criterion) {
    let segs: Vec<Vec<u8>> = (0..SEGS).map(segment).collect();
    let bytes: usize = segs.iter().map(|s| s.len()).sum();
    let mut g = c.benchmark_group("gro_round_88x1448");
    g.throughput(Throughput::Bytes(bytes as u64));

    let mut ours = Coalescer::new(QUEUE_FRAMES);
    // Both coalesce the round into the same two super-packets.
    for s in &segs {
        ours.push(s);
    }
    let out = ours.flush(|_, _| Ok(()));
    assert_eq!((out.written, out.gso_writes), (SEGS as u64, 2), "{out:?}");
    g.bench_function("vxrouter_grotx", |b| {
        b.iter(|| {
            for s in &segs {
                ours.push(black_box(s));
            }
            let mut touched = 0usize;
            let out = ours.flush(|h, parts| {
                touched += usize::from(h.gso_size) + parts.iter().map(|p| p.len()).sum::<usize>();
                Ok(())
            });
            black_box((out, touched))
        })
    });

    let mut table = GROTable::new();
    let mut bufs: Vec<Vec<u8>> = (0..QUEUE_FRAMES)
        .map(|_| Vec::with_capacity(2 * VIRTIO_NET_HDR_LEN + MAX_SUPER_LEN))
        .collect();
    g.bench_function("tun_rs_grotable", |b| {
        b.iter(|| {
            for (buf, s) in bufs.iter_mut().zip(&segs) {
                buf.clear();
                buf.extend_from_slice(&[0xff; VIRTIO_NET_HDR_LEN]);
                buf.extend_from_slice(black_box(s));
            }
            table
                .apply_gro(&mut bufs[..SEGS], VIRTIO_NET_HDR_LEN, false)
                .expect("valid segments");
            let touched: usize = bufs[..SEGS]
                .iter()
                .filter(|b| b[0] != 0xff)
                .map(|b| black_box(b.as_slice()).len())
                .sum();
            black_box(touched)
        })
    });
    g.finish();
}

criterion_group!(benches, gro);
criterion_main!(benches);
