//! One 64 KB TCP super-packet (44 segments of 1398 bytes) through the data
//! plane's userspace work, each way, against the path it replaced, in the
//! same run:
//!
//! - `tso_send/whole`: the super-packet lands in a batch slot (the copy
//!   stands for the TUN read), the pipeline routes and encapsulates it once,
//!   and the 44 segment headers the UDP uplink sends beside slices of its
//!   payload are written (their checksums cover the payload).
//!   `tso_send/split_then_route` (before): the same bytes land in the
//!   splitter's buffer, `Splitter` cuts them into 44 checksummed segments (a
//!   copy), and the pipeline routes and encapsulates each.
//! - `tso_recv/whole`: a GRO train of the 44 VXLAN datagrams is coalesced
//!   into one super-packet (checksums checked, payloads copied), decapsulated
//!   once and made ready for one TUN write. `tso_recv/per_segment_then_gro`
//!   (before): each datagram is copied behind synthesised outer headers,
//!   decapsulated, and queued to `Coalescer`, which checks and copies each and
//!   writes them (to a sink here) as super-packets.
//!
//! System calls are left out of both: this is what the router itself spends.

use std::io::IoSlice;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tun_rs::{VirtioNetHdr, VIRTIO_NET_HDR_GSO_TCPV4};
use vxrouter::dataplane::{Pipeline, Verdict};
use vxrouter::offload;
use vxrouter::offload::coalesce::coalesce_into;
use vxrouter::offload::coalesce::{Coalescer, QUEUE_FRAMES};
use vxrouter::offload::outer::synth_rx;
use vxrouter::offload::vnet::{whole_write, Splitter, VNET_HDR_LEN};
use vxrouter::port::{Batch, Gso, Packet, BATCH_SIZE, MAX_FRAME};
use vxrouter::wire::checksum::{checksum, fold, pseudo_v4, sum};

const TOPO: &str = r#"
[overlay]
vni = 42
[[hosts]]
name = "h1"
underlay = "198.18.0.1"
underlay_mac = "02:00:c6:12:00:01"
vtep_mac = "02:42:c6:12:00:01"
subnets = ["198.19.1.0/24"]
nic = "eth0"
  [[hosts.ports]]
  name = "c1"
  kind = "tun"
  addresses = ["198.19.1.2/32"]
[[hosts]]
name = "h2"
underlay = "198.18.0.2"
underlay_mac = "02:00:c6:12:00:02"
vtep_mac = "02:42:c6:12:00:02"
subnets = ["198.19.2.0/24"]
[[links]]
a = "h1"
b = "h2"
cost = 10
"#;

const SEGS: usize = 44;
const MSS: usize = 1398;

/// The container's TSO write: IPv4, TCP with timestamps, partial checksum.
fn super_packet(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let data = SEGS * MSS;
    let total = 20 + 32 + data;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&45678u16.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    t[4..8].copy_from_slice(&1000u32.to_be_bytes());
    t[12] = 8 << 4;
    t[13] = 0x10;
    t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
    for (i, b) in t[32..].iter_mut().enumerate() {
        *b = (i * 7 + i / 251) as u8;
    }
    let ps = pseudo_v4(src.into(), dst.into(), 6, (32 + data) as u16);
    t[16..18].copy_from_slice(&fold(ps).to_be_bytes());
    p
}

fn tso_hdr() -> VirtioNetHdr {
    VirtioNetHdr {
        flags: 1,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: 52,
        gso_size: MSS as u16,
        csum_start: 20,
        csum_offset: 16,
    }
}

fn bench_send(c: &mut Criterion) {
    let topo = vxrouter::config::parse(TOPO, "tso.toml").unwrap();
    let t = vxrouter::replay::replay_tables(&topo, topo.host_index("h1").unwrap(), 1500).unwrap();
    let c1 = t.port_index("c1").unwrap();
    let ip = super_packet([198, 19, 1, 2], [198, 19, 2, 2]);
    let gso = Gso::for_payload(MSS as u16, SEGS * MSS);
    let mut pipe = Pipeline::new();
    let mut verdicts = [Verdict::Pass; BATCH_SIZE];
    let mut g = c.benchmark_group("tso_send");
    g.throughput(Throughput::Bytes((SEGS * MSS) as u64));

    let mut batch = Batch::new_super();
    let mut hdrs = vec![0u8; SEGS * 256];
    g.bench_function("whole", |b| {
        b.iter(|| {
            batch.clear();
            assert!(batch.push_super(&ip, gso));
            pipe.process(&t, c1, &mut batch, &mut verdicts);
            assert_eq!(verdicts[0], Verdict::Forward(0));
            let f = batch.pkts()[0].data();
            let l = offload::Layout::parse(f, offload::Encap::Vxlan, gso).unwrap();
            let mut iov_bytes = 0;
            for (i, h) in hdrs.chunks_mut(256).take(l.segments).enumerate() {
                let r = offload::write_headers(f, &l, i, h, false);
                iov_bytes += r.len();
            }
            std::hint::black_box(iov_bytes);
        })
    });

    let mut rx = Splitter::new(MAX_FRAME);
    let mut small = Batch::new();
    let mut hb = [0u8; VNET_HDR_LEN];
    tso_hdr().encode(&mut hb).unwrap();
    g.bench_function("split_then_route", |b| {
        b.iter(|| {
            let buf = rx.read_buf();
            buf[..VNET_HDR_LEN].copy_from_slice(&hb);
            buf[VNET_HDR_LEN..VNET_HDR_LEN + ip.len()].copy_from_slice(&ip);
            rx.load(&tso_hdr(), ip.len(), 1450).unwrap();
            small.clear();
            let k = rx.emit(small.slots_mut()).unwrap();
            small.set_len(k);
            pipe.process(&t, c1, &mut small, &mut verdicts);
            assert_eq!(verdicts[k - 1], Verdict::Forward(0));
            std::hint::black_box(&verdicts);
        })
    });
    g.finish();
}

/// The 44 VXLAN datagrams h2 sends h1 for a super-packet, as one GRO read
/// (stride: the full datagram size).
fn train() -> (Vec<u8>, usize) {
    let ip = super_packet([198, 19, 2, 2], [198, 19, 1, 2]);
    let gso = Gso::for_payload(MSS as u16, SEGS * MSS);
    let l = offload::Layout::parse(&ip, offload::Encap::Ip, gso).unwrap();
    let mut out = Vec::new();
    let mut stride = 0;
    for i in 0..l.segments {
        let mut d = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        d.extend_from_slice(&[2, 0x42, 0xc6, 0x12, 0, 1, 2, 0x42, 0xc6, 0x12, 0, 2, 8, 0]);
        let mut s = vec![0u8; l.segment_len(i)];
        let r = offload::write_headers(&ip, &l, i, &mut s, false);
        s[l.payload..].copy_from_slice(&ip[r]);
        d.extend_from_slice(&s);
        stride = stride.max(d.len());
        out.extend_from_slice(&d);
    }
    (out, stride)
}

fn bench_recv(c: &mut Criterion) {
    let topo = vxrouter::config::parse(TOPO, "tso.toml").unwrap();
    let t = vxrouter::replay::replay_tables(&topo, topo.host_index("h1").unwrap(), 1500).unwrap();
    let c1 = t.port_index("c1").unwrap();
    let (train, stride) = train();
    let mac = t.nic_mac;
    let src: SocketAddr = "198.18.0.2:50000".parse().unwrap();
    let dst: SocketAddr = "198.18.0.1:4789".parse().unwrap();
    let mut pipe = Pipeline::new();
    let mut verdicts = [Verdict::Pass; BATCH_SIZE];
    let mut g = c.benchmark_group("tso_recv");
    g.throughput(Throughput::Bytes((SEGS * MSS) as u64));

    let mut batch = Batch::new_super();
    g.bench_function("whole", |b| {
        b.iter(|| {
            batch.clear();
            let slot: &mut Packet = &mut batch.slots_mut()[0];
            assert_eq!(
                coalesce_into(slot, mac, src, dst, &train, stride),
                Some(SEGS)
            );
            batch.set_len(1);
            pipe.process(&t, 0, &mut batch, &mut verdicts);
            assert_eq!(verdicts[0], Verdict::Forward(c1));
            let p = &batch.pkts()[0];
            let l = offload::Layout::parse(p.data(), offload::Encap::Ip, p.gso.unwrap()).unwrap();
            let w = whole_write(p.data(), &l, None).unwrap();
            std::hint::black_box((&w.vnet, &w.head));
        })
    });

    let mut small = Batch::new();
    let mut gro = Coalescer::new(QUEUE_FRAMES);
    g.bench_function("per_segment_then_gro", |b| {
        b.iter(|| {
            small.clear();
            for (k, d) in train.chunks(stride).enumerate() {
                let slot = &mut small.slots_mut()[k];
                let n = synth_rx(slot.rx_area(), mac, src, dst, d).unwrap();
                slot.set_received(n);
            }
            small.set_len(SEGS);
            pipe.process(&t, 0, &mut small, &mut verdicts);
            assert_eq!(verdicts[SEGS - 1], Verdict::Forward(c1));
            for p in small.pkts() {
                assert!(gro.push(p.data()));
            }
            let out = gro.flush(|_, parts: &[IoSlice<'_>]| {
                std::hint::black_box(parts.len());
                Ok(())
            });
            assert_eq!(out.written, SEGS as u64);
        })
    });
    g.finish();
    std::hint::black_box(sum(&[]));
}

criterion_group!(benches, bench_send, bench_recv);
criterion_main!(benches);
