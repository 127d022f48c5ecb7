//! Packets per second per core through the real pipeline, batches of 64:
//! container→encap (TUN and veth), uplink→decap→deliver, and transit.
//! `decap_mixed` delivers as `decap_tun` does, from two peers and 64
//! sources taken in turn (no two packets in a row from one sender).
//!
//! Each iteration refills the batch from a prepared frame (as a port's
//! rx_burst copies a frame out of a UMEM or TUN buffer) and runs
//! `Pipeline::process`; the figure therefore includes that copy. The flows
//! vary in source port so ECMP and the source-port hash see real spread.
//!
//! `pipeline/networks/{1,8,100}/{encap,decap}` run one workload over the
//! same ports in one network and spread over 8 and over 100 networks (see
//! [`networks_topo`]): the difference is what the networks cost. Eight
//! networks' tables stay in the L1 cache, 100 networks' do not: the two
//! counts tell the cost of finding a packet's network from that of its
//! cache misses.

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vxrouter::dataplane::{Pipeline, Tables, Verdict};
use vxrouter::port::{Batch, BATCH_SIZE};

/// What the benches time: wall-clock time (criterion's default), or with
/// `VXROUTER_BENCH_CLOCK=cpu` the thread's CPU time, which leaves out the
/// time other processes hold the core (on a shared machine, most of the
/// noise); what they share (caches, memory bandwidth) still counts.
struct Clock {
    cpu: bool,
    wall: WallTime,
}

impl Clock {
    fn from_env() -> Clock {
        Clock {
            cpu: std::env::var("VXROUTER_BENCH_CLOCK").is_ok_and(|v| v == "cpu"),
            wall: WallTime,
        }
    }

    fn now_ns(&self) -> u64 {
        if !self.cpu {
            static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            return START
                .get_or_init(std::time::Instant::now)
                .elapsed()
                .as_nanos() as u64;
        }
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the call's duration.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

impl Measurement for Clock {
    type Intermediate = u64;
    type Value = Duration;

    fn start(&self) -> u64 {
        self.now_ns()
    }
    fn end(&self, start: u64) -> Duration {
        Duration::from_nanos(self.now_ns().saturating_sub(start))
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

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
    c: &mut Criterion<Clock>,
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

fn bench(c: &mut Criterion<Clock>) {
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

    // The same delivery with no two packets in a row from one sender: the
    // peers alternate, and every packet has a source of its own.
    let decap_mixed: Vec<Vec<u8>> = (0..BATCH_SIZE as u16)
        .map(|i| {
            let peer = 2 + (i % 2) as u8;
            vxlan_from(
                peer,
                &ipv4_udp(
                    [198, 19, peer, 10 + i as u8],
                    [198, 19, 1, 2],
                    10000 + i,
                    36,
                ),
            )
        })
        .collect();
    run(c, "decap_mixed", &t, 0, &decap_mixed, Verdict::Forward(c1));

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

/// Container ports on h1 in the networks benches.
const NET_PORTS: usize = 200;
/// Steps through the ports so that consecutive batches (encap) and
/// consecutive packets of a batch (decap) belong to different networks:
/// coprime with `NET_PORTS` and with every network count benched.
const NET_STRIDE: usize = 37;

/// The VNI of extra network `i` (1-based): unique, and not in the order of
/// the networks, so the VNI search and the network index differ.
fn extra_vni(i: usize) -> u32 {
    5000 + ((i * 53) % 997) as u32
}

/// Three hosts as in [`TOPO`] (IPv4 only) and `nets` networks: the
/// default one of `[overlay]` and `nets - 1` more, every one with the same
/// subnets on the three hosts (address spaces overlap, as tenants' do).
/// h1 has [`NET_PORTS`] TUN ports, port `k` in network `k % nets`, at
/// 198.19.1.(10 + k): the same ports and addresses whatever `nets` is.
fn networks_topo(nets: usize) -> String {
    let mut s = String::from("[overlay]\nvni = 42\nmtu = 1450\n");
    for i in 1..nets {
        s += &format!(
            "[[networks]]\nname = \"n{i}\"\nvni = {}\n[networks.subnets]\n\
             h1 = [\"198.19.1.0/24\"]\nh2 = [\"198.19.2.0/24\"]\nh3 = [\"198.19.3.0/24\"]\n",
            extra_vni(i)
        );
    }
    for h in 1..=3 {
        s += &format!(
            "[[hosts]]\nname = \"h{h}\"\nunderlay = \"198.18.0.{h}\"\n\
             underlay_mac = \"02:00:c6:12:00:0{h}\"\nvtep_mac = \"02:42:c6:12:00:0{h}\"\n\
             subnets = [\"198.19.{h}.0/24\"]\n"
        );
        if h == 1 {
            s += "nic = \"eth0\"\n";
            for k in 0..NET_PORTS {
                let net = match k % nets {
                    0 => "default".to_owned(),
                    i => format!("n{i}"),
                };
                s += &format!(
                    "  [[hosts.ports]]\n  name = \"p{k}\"\n  kind = \"tun\"\n  \
                     network = \"{net}\"\n  addresses = [\"198.19.1.{}/32\"]\n",
                    10 + k
                );
            }
        }
    }
    s += "[[links]]\na = \"h1\"\nb = \"h2\"\ncost = 10\n";
    s += "[[links]]\na = \"h1\"\nb = \"h3\"\ncost = 10\n";
    s
}

/// VXLAN from `peer` to h1 with VNI `vni` carrying `inner` IPv4.
fn vxlan_vni(peer: u8, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut f = vxlan_from(peer, inner);
    // Outer Ethernet (14), IPv4 (20), UDP (8), then the VNI at VXLAN byte 4.
    f[14 + 20 + 8 + 4..14 + 20 + 8 + 7].copy_from_slice(&vni.to_be_bytes()[1..]);
    f
}

/// One network count's tables and prepared frames.
struct NetsLoad {
    nets: usize,
    t: Tables,
    /// Index of port `p{k}` in the tables.
    port: Vec<u16>,
    /// 64 frames per port, from its address toward h2 and h3.
    encap: Vec<Vec<Vec<u8>>>,
    /// VXLAN from h2, flow `f` for port `f * NET_STRIDE % NET_PORTS` in
    /// that port's network's VNI, from one of 50 sources of h2's subnet:
    /// no two packets in a row share a source, so the burst's memo of the
    /// source check serves neither count and both pay the whole check.
    decap: Vec<Vec<u8>>,
}

impl NetsLoad {
    fn new(nets: usize) -> NetsLoad {
        let text = networks_topo(nets);
        let topo = vxrouter::config::parse(&text, "networks.toml").expect("networks topology");
        let h1 = topo.host_index("h1").unwrap();
        let t = vxrouter::replay::replay_tables(&topo, h1, 1500).expect("tables");
        assert_eq!(t.nets.len(), nets);
        let port: Vec<u16> = (0..NET_PORTS)
            .map(|k| t.port_index(&format!("p{k}")).unwrap())
            .collect();
        let addr = |k: usize| [198, 19, 1, 10 + k as u8];
        let encap = (0..NET_PORTS)
            .map(|k| {
                (0..BATCH_SIZE)
                    .map(|f| {
                        let dst = [198, 19, 2 + (f % 2) as u8, 9 + (f % 50) as u8];
                        ipv4_udp(addr(k), dst, 10000 + f as u16, 36)
                    })
                    .collect()
            })
            .collect();
        let decap = (0..8 * NET_PORTS)
            .map(|f| {
                let k = f * NET_STRIDE % NET_PORTS;
                let vni = t.nets[usize::from(t.ports[usize::from(port[k])].net)].vni;
                let src = [198, 19, 2, 9 + (f % 50) as u8];
                let inner = ipv4_udp(src, addr(k), 10000 + f as u16, 36);
                vxlan_vni(2, vni, &inner)
            })
            .collect();
        let load = NetsLoad {
            nets,
            t,
            port,
            encap,
            decap,
        };
        load.check();
        load
    }

    /// Every burst of both workloads takes the path named, in the network
    /// meant (a port's FIB holds only its own network's ports).
    fn check(&self) {
        let mut pipe = Pipeline::new();
        let mut batch = Batch::new();
        let mut verdicts = [Verdict::Pass; BATCH_SIZE];
        for k in 0..NET_PORTS {
            batch.clear();
            for f in &self.encap[k] {
                batch.push(f);
            }
            pipe.process(&self.t, self.port[k], &mut batch, &mut verdicts);
            assert!(verdicts.iter().all(|v| *v == Verdict::Forward(0)));
        }
        for (i, chunk) in self.decap.chunks(BATCH_SIZE).enumerate() {
            batch.clear();
            for f in chunk {
                batch.push(f);
            }
            pipe.process(&self.t, 0, &mut batch, &mut verdicts);
            for (j, v) in verdicts[..chunk.len()].iter().enumerate() {
                let k = (i * BATCH_SIZE + j) * NET_STRIDE % NET_PORTS;
                assert_eq!(*v, Verdict::Forward(self.port[k]), "{} networks", self.nets);
            }
        }
        let vnis: std::collections::BTreeSet<u32> = self.decap[..BATCH_SIZE]
            .iter()
            .map(|f| u32::from_be_bytes([0, f[46], f[47], f[48]]))
            .collect();
        assert_eq!(vnis.len(), self.nets.min(BATCH_SIZE), "VNIs in one burst");
    }
}

/// The same workloads over the same 200 ports in 1, 8 and 100 networks,
/// the counts run one after the other for each workload. Encap: each
/// iteration is one burst of 64 from one port, the next from the port
/// `NET_STRIDE` further (a burst is always one port's, so one network's);
/// 64 flows per port toward h2 and h3. Decap: each burst from the uplink
/// carries 64 packets for 64 different ports (with 8 networks, every
/// network's VNI; with 100, 64 different VNIs), the next burst the next
/// 64 of a rotation over all 200 ports, 8 flows each.
fn bench_networks(c: &mut Criterion<Clock>) {
    let loads = [1, 8, 100].map(NetsLoad::new);
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    let mut pipe = Pipeline::new();
    let mut batch = Batch::new();
    let mut verdicts = [Verdict::Pass; BATCH_SIZE];
    for l in &loads {
        let mut next = 0usize;
        g.bench_function(format!("networks/{}/encap", l.nets), |b| {
            b.iter(|| {
                next = (next + NET_STRIDE) % NET_PORTS;
                batch.clear();
                for f in &l.encap[next] {
                    batch.push(f);
                }
                pipe.process(&l.t, l.port[next], &mut batch, &mut verdicts);
                std::hint::black_box(&verdicts);
            })
        });
    }
    for l in &loads {
        let mut at = 0usize;
        g.bench_function(format!("networks/{}/decap", l.nets), |b| {
            b.iter(|| {
                batch.clear();
                for f in &l.decap[at..at + BATCH_SIZE] {
                    batch.push(f);
                }
                at = (at + BATCH_SIZE) % l.decap.len();
                pipe.process(&l.t, 0, &mut batch, &mut verdicts);
                std::hint::black_box(&verdicts);
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(Clock::from_env());
    targets = bench, bench_networks
}
criterion_main!(benches);
