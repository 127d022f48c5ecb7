//! Packets per second per core through the real pipeline, batches of 64:
//! container→encap (TUN and veth), uplink→decap→deliver, and transit.
//!
//! Each iteration refills the batch from a prepared frame (as a port's
//! rx_burst copies a frame out of a UMEM or TUN buffer) and runs
//! `Pipeline::process`; the figure therefore includes that copy. The flows
//! vary in source port so ECMP and the source-port hash see real spread.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vxrouter::dataplane::{Pipeline, Tables, Verdict};
use vxrouter::port::{Batch, BATCH_SIZE};

const TOPO: &str = r#"
[overlay]
vni = 42
mtu = 1450
[[hosts]]
name = "h1"
underlay = "198.18.0.1"
underlay_mac = "02:00:c6:12:00:01"
vtep_mac = "02:42:c6:12:00:01"
subnets = ["198.19.1.0/24", "2001:2:0:1::/64"]
nic = "eth0"
  [[hosts.ports]]
  name = "c1"
  kind = "tun"
  addresses = ["198.19.1.2/32", "2001:2:0:1::2/128"]
  [[hosts.ports]]
  name = "c2"
  kind = "veth"
  addresses = ["198.19.1.3/32"]
  mac = "02:00:00:00:01:03"
[[hosts]]
name = "h2"
underlay = "198.18.0.2"
underlay_mac = "02:00:c6:12:00:02"
vtep_mac = "02:42:c6:12:00:02"
subnets = ["198.19.2.0/24", "2001:2:0:2::/64"]
[[hosts]]
name = "h3"
underlay = "198.18.0.3"
underlay_mac = "02:00:c6:12:00:03"
vtep_mac = "02:42:c6:12:00:03"
subnets = ["198.19.3.0/24"]
[[links]]
a = "h1"
b = "h2"
cost = 10
[[links]]
a = "h1"
b = "h3"
cost = 10
"#;

fn ipv4_udp(src: [u8; 4], dst: [u8; 4], sport: u16, payload: usize) -> Vec<u8> {
    let total = 20 + 8 + payload;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let mut sum = 0u32;
    for i in (0..20).step_by(2) {
        sum += u16::from_be_bytes([p[i], p[i + 1]]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&9000u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    p
}

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// VXLAN from `peer` (underlay 198.18.0.N) to h1 carrying `inner` IPv4.
fn vxlan_from(peer: u8, inner: &[u8]) -> Vec<u8> {
    let inner_eth = eth(
        [0x02, 0x42, 0xc6, 0x12, 0x00, 0x01],
        [0x02, 0x42, 0xc6, 0x12, 0x00, peer],
        0x0800,
        inner,
    );
    let udp_len = 8 + 8 + inner_eth.len();
    let total = 20 + udp_len;
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[198, 18, 0, peer]);
    ip[16..20].copy_from_slice(&[198, 18, 0, 1]);
    let mut sum = 0u32;
    for i in (0..20).step_by(2) {
        sum += u16::from_be_bytes([ip[i], ip[i + 1]]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let mut udp = vec![0u8; 8];
    udp[0..2].copy_from_slice(&50000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&4789u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    let vx = [0x08, 0, 0, 0, 0, 0, 42, 0];
    let mut out = ip;
    out.extend_from_slice(&udp);
    out.extend_from_slice(&vx);
    out.extend_from_slice(&inner_eth);
    eth(
        [0x02, 0x00, 0xc6, 0x12, 0x00, 0x01],
        [0x02, 0x00, 0xc6, 0x12, 0x00, peer],
        0x0800,
        &out,
    )
}

fn run(
    c: &mut Criterion,
    name: &str,
    t: &Tables,
    in_port: u16,
    frames: &[Vec<u8>],
    expect: Verdict,
) {
    let mut pipe = Pipeline::new();
    let mut batch = Batch::new();
    let mut verdicts = [Verdict::Pass; BATCH_SIZE];
    // Sanity: the bench measures the path it names.
    batch.clear();
    for f in frames.iter().take(BATCH_SIZE) {
        batch.push(f);
    }
    pipe.process(t, in_port, &mut batch, &mut verdicts);
    assert!(
        verdicts[..batch.len()].iter().all(|v| *v == expect),
        "{name}: {:?}",
        &verdicts[..4]
    );

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    g.bench_function(BenchmarkId::new(name, BATCH_SIZE), |b| {
        b.iter(|| {
            batch.clear();
            for f in frames.iter().take(BATCH_SIZE) {
                batch.push(f);
            }
            pipe.process(t, in_port, &mut batch, &mut verdicts);
            std::hint::black_box(&verdicts);
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let topo = vxrouter::config::parse(TOPO, "bench.toml").expect("bench topology");
    let h1 = topo.host_index("h1").unwrap();
    let t = vxrouter::replay::replay_tables(&topo, h1, 1500).expect("tables");
    let c1 = t.port_index("c1").unwrap();
    let c2 = t.port_index("c2").unwrap();
    let router_mac_c2 = t.ports[c2 as usize].router_mac;

    // 64-byte inner IPv4 packets (20 + 8 + 36), one flow per packet.
    let tun_out: Vec<Vec<u8>> = (0..BATCH_SIZE as u16)
        .map(|i| ipv4_udp([198, 19, 1, 2], [198, 19, 2, 9], 10000 + i, 36))
        .collect();
    run(c, "encap_tun", &t, c1, &tun_out, Verdict::Forward(0));

    let veth_out: Vec<Vec<u8>> = (0..BATCH_SIZE as u16)
        .map(|i| {
            eth(
                router_mac_c2,
                [0x02, 0, 0, 0, 1, 3],
                0x0800,
                &ipv4_udp([198, 19, 1, 3], [198, 19, 2, 9], 10000 + i, 36),
            )
        })
        .collect();
    run(c, "encap_veth", &t, c2, &veth_out, Verdict::Forward(0));

    let decap: Vec<Vec<u8>> = (0..BATCH_SIZE as u16)
        .map(|i| {
            vxlan_from(
                2,
                &ipv4_udp([198, 19, 2, 9], [198, 19, 1, 2], 10000 + i, 36),
            )
        })
        .collect();
    run(c, "decap_tun", &t, 0, &decap, Verdict::Forward(c1));

    let decap_veth: Vec<Vec<u8>> = (0..BATCH_SIZE as u16)
        .map(|i| {
            vxlan_from(
                2,
                &ipv4_udp([198, 19, 2, 9], [198, 19, 1, 3], 10000 + i, 36),
            )
        })
        .collect();
    run(c, "decap_veth", &t, 0, &decap_veth, Verdict::Forward(c2));

    let transit: Vec<Vec<u8>> = (0..BATCH_SIZE as u16)
        .map(|i| {
            vxlan_from(
                2,
                &ipv4_udp([198, 19, 2, 9], [198, 19, 3, 7], 10000 + i, 36),
            )
        })
        .collect();
    run(c, "transit", &t, 0, &transit, Verdict::Forward(0));
}

criterion_group!(benches, bench);
criterion_main!(benches);
