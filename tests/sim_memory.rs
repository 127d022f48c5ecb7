//! Deterministic simulation: two and three routers wired through memory
//! ports, running the exact loop body the live workers run
//! (`dataplane::forward_burst`), plus a property test that feeds random and
//! mutated frames into every port and checks that nothing panics and every
//! frame is accounted for.

mod sim_support;

use proptest::prelude::*;
use sim_support::Node;
use vxrouter::dataplane::{self, Tables};

const TOPO: &str = r#"
[overlay]
vni = 42
mtu = 1450
[[hosts]]
name = "h1"
underlay = "198.18.0.1"
underlay_mac = "02:00:c6:12:00:01"
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
subnets = ["198.19.2.0/24", "2001:2:0:2::/64"]
nic = "eth0"
  [[hosts.ports]]
  name = "c3"
  kind = "tun"
  addresses = ["198.19.2.2/32", "2001:2:0:2::2/128"]
[[hosts]]
name = "h3"
underlay = "198.18.0.3"
underlay_mac = "02:00:c6:12:00:03"
subnets = ["198.19.3.0/24"]
nic = "eth0"
  [[hosts.ports]]
  name = "c5"
  kind = "tun"
  addresses = ["198.19.3.2/32"]
[[links]]
a = "h1"
b = "h2"
cost = 10
[[links]]
a = "h2"
b = "h3"
cost = 10
"#;

fn ipv4_udp(src: [u8; 4], dst: [u8; 4], ttl: u8, payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = ttl;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let c = vxrouter::wire::checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&9000u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// Moves every frame h_a's uplink sent into h_b's uplink (one shared L2).
fn wire(from: &mut Node, to: &mut [&mut Node]) {
    let frames = from.ports[0].take_tx();
    for f in frames {
        // Deliver by outer destination MAC, as a switch would.
        for n in to.iter_mut() {
            if f[..6] == n.t.nic_mac {
                n.ports[0].inject(f.clone());
            }
        }
    }
}

#[test]
fn two_hosts_exchange_both_ways() {
    let topo = vxrouter::config::parse(TOPO, "sim.toml").unwrap();
    let mut h1 = Node::new(&topo, "h1");
    let mut h2 = Node::new(&topo, "h2");
    let payload = b"hello across the overlay";
    h1.port("c1")
        .inject(ipv4_udp([198, 19, 1, 2], [198, 19, 2, 2], 64, payload));
    assert_eq!(h1.run(), 1);
    wire(&mut h1, &mut [&mut h2]);
    assert_eq!(h2.run(), 1);
    let got = h2.port("c3").take_tx();
    assert_eq!(got.len(), 1);
    let mut want = ipv4_udp([198, 19, 1, 2], [198, 19, 2, 2], 62, payload);
    // The checksum after two decrements, recomputed independently.
    want[10] = 0;
    want[11] = 0;
    let c = vxrouter::wire::checksum::checksum(&want[..20]);
    want[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(got[0], want);

    // And back, into the veth container on h1.
    h2.port("c3")
        .inject(ipv4_udp([198, 19, 2, 2], [198, 19, 1, 3], 64, payload));
    h2.run();
    wire(&mut h2, &mut [&mut h1]);
    h1.run();
    let got = h1.port("c2").take_tx();
    assert_eq!(got.len(), 1);
    assert_eq!(
        &got[0][..6],
        &[0x02, 0, 0, 0, 1, 3],
        "delivered to the container's MAC"
    );
    assert_eq!(&got[0][12..14], &[0x08, 0x00]);
    assert_eq!(&got[0][14 + 28..], payload);
    assert_eq!(h1.pipe.totals().total_drops(), 0);
    assert_eq!(h2.pipe.totals().total_drops(), 0);
}

#[test]
fn three_hosts_transit_through_the_middle() {
    let topo = vxrouter::config::parse(TOPO, "sim.toml").unwrap();
    let mut h1 = Node::new(&topo, "h1");
    let mut h2 = Node::new(&topo, "h2");
    let mut h3 = Node::new(&topo, "h3");
    h1.port("c1")
        .inject(ipv4_udp([198, 19, 1, 2], [198, 19, 3, 2], 64, b"transit"));
    h1.run();
    // h1 has no link to h3: its frame goes to h2 only.
    let out = h1.ports[0].tx.clone();
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][..6], &h2.t.nic_mac);
    wire(&mut h1, &mut [&mut h2, &mut h3]);
    h2.run();
    wire(&mut h2, &mut [&mut h1, &mut h3]);
    h3.run();
    let got = h3.port("c5").take_tx();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0][8], 61, "three hops: TTL 64 -> 61");
    assert_eq!(h2.pipe.totals().forwarded, 1);
}

#[test]
fn ttl_expiry_in_transit_comes_back_as_time_exceeded() {
    let topo = vxrouter::config::parse(TOPO, "sim.toml").unwrap();
    let mut h1 = Node::new(&topo, "h1");
    let mut h2 = Node::new(&topo, "h2");
    // TTL 2: h1 forwards (-> 1), h2 must not forward to h3.
    h1.port("c1")
        .inject(ipv4_udp([198, 19, 1, 2], [198, 19, 3, 2], 2, b"x"));
    h1.run();
    wire(&mut h1, &mut [&mut h2]);
    h2.run();
    assert_eq!(
        h2.pipe.totals().dropped(dataplane::DropReason::TtlExpired),
        1
    );
    assert_eq!(h2.pipe.totals().icmp_errors, 1);
    wire(&mut h2, &mut [&mut h1]);
    h1.run();
    let back = h1.port("c1").take_tx();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0][9], 1, "ICMP");
    assert_eq!(back[0][20], 11, "time exceeded");
    assert_eq!(
        &back[0][12..16],
        &[198, 19, 2, 1],
        "from h2's router address"
    );
}

/// ICMP errors are paced (RFC 4443 2.4 f, RFC 1812 4.3.2.8): a burst of
/// 50, then one per millisecond of the caller's clock. The packets the
/// held-back errors were about still count under their drop reason.
#[test]
fn icmp_errors_are_rate_limited() {
    let topo = vxrouter::config::parse(TOPO, "sim.toml").unwrap();
    let mut h1 = Node::new(&topo, "h1");
    let unroutable = |i: u8| ipv4_udp([198, 19, 1, 2], [198, 18, 200, i], 64, b"x");
    h1.pipe.set_clock(5_000_000_000);
    for i in 0..200 {
        h1.port("c1").inject(unroutable(i as u8));
    }
    h1.run();
    let c = h1.pipe.totals();
    assert_eq!(c.dropped(dataplane::DropReason::NoRoute), 200);
    assert_eq!((c.icmp_errors, c.icmp_rate_limited), (50, 150));
    assert_eq!(h1.port("c1").take_tx().len(), 50, "errors sent");
    // 10.5 ms later: ten more.
    h1.pipe.set_clock(5_010_500_000);
    for i in 0..20 {
        h1.port("c1").inject(unroutable(i));
    }
    h1.run();
    let c = h1.pipe.totals();
    assert_eq!((c.icmp_errors, c.icmp_rate_limited), (60, 160));
    // A clock that goes back earns nothing; a long pause refills the
    // burst, and no more.
    h1.pipe.set_clock(1);
    h1.port("c1").inject(unroutable(1));
    h1.run();
    assert_eq!(h1.pipe.totals().icmp_errors, 60);
    h1.pipe.set_clock(60_000_000_000);
    for i in 0..80 {
        h1.port("c1").inject(unroutable(i));
    }
    h1.run();
    let c = h1.pipe.totals();
    assert_eq!((c.icmp_errors, c.icmp_rate_limited), (110, 191));
    assert_eq!(h1.port("c1").take_tx().len(), 60);
}

fn valid_frames(t1: &Tables) -> Vec<(u16, Vec<u8>)> {
    // Seeds: a VXLAN frame as h2 would send it, a TUN packet, a veth frame.
    let topo = vxrouter::config::parse(TOPO, "sim.toml").unwrap();
    let mut h2 = Node::new(&topo, "h2");
    h2.port("c3").inject(ipv4_udp(
        [198, 19, 2, 2],
        [198, 19, 1, 2],
        64,
        b"seed payload",
    ));
    h2.run();
    let vx = h2.ports[0].take_tx().remove(0);
    let c2 = t1.port_index("c2").unwrap();
    let mut veth = Vec::new();
    veth.extend_from_slice(&t1.ports[c2 as usize].router_mac);
    veth.extend_from_slice(&[0x02, 0, 0, 0, 1, 3, 0x08, 0x00]);
    veth.extend_from_slice(&ipv4_udp(
        [198, 19, 1, 3],
        [198, 19, 2, 2],
        64,
        b"veth seed",
    ));
    vec![
        (0, vx),
        (
            t1.port_index("c1").unwrap(),
            ipv4_udp([198, 19, 1, 2], [198, 19, 2, 2], 64, b"tun seed"),
        ),
        (c2, veth),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random bytes and mutations of valid frames into every port: no panic,
    /// and rx = forwarded + replied + pass-through + drops.
    #[test]
    fn any_input_is_accounted_for(
        seed_idx in 0usize..3,
        muts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        random in proptest::collection::vec(any::<u8>(), 0..200),
        use_random in any::<bool>(),
        port_pick in 0u16..3,
    ) {
        let topo = vxrouter::config::parse(TOPO, "sim.toml").unwrap();
        let mut h1 = Node::new(&topo, "h1");
        let seeds = valid_frames(&h1.t);
        let (port, frame) = if use_random {
            (port_pick, random)
        } else {
            let (p, mut f) = seeds[seed_idx].clone();
            for (i, b) in &muts {
                let k = i.index(f.len());
                f[k] = *b;
            }
            if let Some(c) = cut {
                let k = c.index(f.len() + 1);
                f.truncate(k);
            }
            (p, f)
        };
        h1.ports[port as usize].inject(frame);
        prop_assert_eq!(h1.run(), 1);
        let c = h1.pipe.totals();
        prop_assert_eq!(c.forwarded + c.replied + c.pass_through + c.total_drops(), 1);
        let sent: u64 = h1.tx.iter().sum();
        prop_assert!(sent <= 1);
    }
}
