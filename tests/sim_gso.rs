//! TCP super-packets through the pipeline, on memory ports: whatever path
//! a super-packet takes (encapsulated, delivered, decapsulated, in transit,
//! over an IPv4 or IPv6 underlay), what leaves the router is exactly what
//! leaves it when the same packet arrives as segments, cut by tun-rs'
//! `gso_split` (an independent segmenter), one by one. Whether the output
//! port takes the super-packet whole or the data plane cuts it, and with
//! the counters agreeing.

mod gso_support;

use gso_support::{cut, data, super_tcp, super_udp};
use proptest::prelude::*;
mod sim_support;

use sim_support::Node;
use vxrouter::dataplane::DropReason;
use vxrouter::offload;
use vxrouter::port::mem::MemPort;
use vxrouter::port::{Batch, Gso, LinkType, Port};
use vxrouter::wire::checksum::sum;

fn topo(underlay6: bool) -> String {
    let (u1, u2, u3) = if underlay6 {
        ("2001:2:ff::1", "2001:2:ff::2", "2001:2:ff::3")
    } else {
        ("198.18.0.1", "198.18.0.2", "198.18.0.3")
    };
    format!(
        r#"
[overlay]
vni = 42
mtu = 1430
[[hosts]]
name = "h1"
underlay = "{u1}"
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
  addresses = ["198.19.1.3/32", "2001:2:0:1::3/128"]
  mac = "02:00:00:00:01:03"
  [[hosts.ports]]
  name = "c4"
  kind = "tun"
  addresses = ["198.19.1.4/32"]
  mtu = 1000
[[hosts]]
name = "h2"
underlay = "{u2}"
underlay_mac = "02:00:c6:12:00:02"
subnets = ["198.19.2.0/24", "2001:2:0:2::/64"]
nic = "eth0"
  [[hosts.ports]]
  name = "c3"
  kind = "tun"
  addresses = ["198.19.2.2/32", "2001:2:0:2::2/128"]
[[hosts]]
name = "h3"
underlay = "{u3}"
underlay_mac = "02:00:c6:12:00:03"
subnets = ["198.19.3.0/24", "2001:2:0:3::/64"]
nic = "eth0"
  [[hosts.ports]]
  name = "c5"
  kind = "tun"
  addresses = ["198.19.3.2/32", "2001:2:0:3::2/128"]
[[links]]
a = "h1"
b = "h2"
cost = 10
[[links]]
a = "h2"
b = "h3"
cost = 10
"#
    )
}

/// A fresh host of the test topology: super-packet buffers, and ports that
/// take super-packets whole when `takes_gso`.
fn node(underlay6: bool, name: &str, takes_gso: bool) -> Node {
    let topo = vxrouter::config::parse(&topo(underlay6), "gso.toml").unwrap();
    Node::with(&topo, name, true, takes_gso)
}

/// Every frame sent, per port name, super-packets cut by tso (checked
/// separately against tun-rs).
fn take_out(n: &mut Node) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for p in &mut n.ports {
        let encap = match (p.name(), p.link_type()) {
            ("eth0", _) => offload::Encap::Vxlan,
            (_, LinkType::Ethernet) => offload::Encap::Eth,
            _ => offload::Encap::Ip,
        };
        let gsos = p.tx_gso.clone();
        let name = p.name().to_string();
        for (f, g) in p.take_tx().into_iter().zip(gsos) {
            match g {
                None => out.push((name.clone(), f)),
                Some(g) => {
                    let l = offload::Layout::parse(&f, encap, g).unwrap();
                    assert_eq!(u64::from(g.segs), l.segments as u64);
                    for i in 0..l.segments {
                        let mut s = vec![0u8; l.segment_len(i)];
                        let r = offload::write_headers(&f, &l, i, &mut s, true);
                        s[l.payload..].copy_from_slice(&f[r]);
                        out.push((name.clone(), s));
                    }
                }
            }
        }
    }
    out
}

const SRC4: [u8; 4] = [198, 19, 1, 2];
const SRC6: [u8; 16] = [0x20, 1, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2];

fn dst6(host: u8, last: u8) -> [u8; 16] {
    [0x20, 1, 0, 2, 0, 0, 0, host, 0, 0, 0, 0, 0, 0, 0, last]
}

/// A super-packet of `n` payload bytes from container c1 (TCP with `flags`,
/// or UDP) to one of three places by `to`: a container on host 2, another
/// container on host 1, a container on host 3 (transit).
fn super_from_c1(v6: bool, to: usize, udp: bool, flags: u8, n: usize) -> Vec<u8> {
    let dst: Vec<u8> = match (v6, to) {
        (false, 0) => vec![198, 19, 2, 2],
        (false, 1) => vec![198, 19, 1, 3],
        (false, _) => vec![198, 19, 3, 2],
        (true, 0) => dst6(2, 2).to_vec(),
        (true, 1) => dst6(1, 3).to_vec(),
        (true, _) => dst6(3, 2).to_vec(),
    };
    let src: &[u8] = if v6 { &SRC6 } else { &SRC4 };
    if udp {
        super_udp(v6, src, &dst, &data(n))
    } else {
        super_tcp(v6, src, &dst, flags, &data(n))
    }
}

fn gso_of(ip: &[u8], size: u16) -> Gso {
    let v6 = ip[0] >> 4 == 6;
    let udp = ip[if v6 { 6 } else { 9 }] == 17;
    let hdr = if v6 { 40 } else { 20 } + if udp { 8 } else { 32 };
    Gso::for_payload(size, ip.len() - hdr)
}

/// Runs `ip` into `port` of a fresh `host` once whole and once cut, with
/// output ports that take super-packets whole (`whole`) or not, and
/// returns both outputs after checking they are equal.
fn same_either_way(
    underlay6: bool,
    host: &str,
    port: &str,
    ip: &[u8],
    size: u16,
    whole: bool,
) -> (Node, Vec<(String, Vec<u8>)>) {
    let mut a = node(underlay6, host, whole);
    let i = a.idx(port);
    a.ports[i].inject_super(ip.to_vec(), gso_of(ip, size));
    a.run();
    let got = take_out(&mut a);
    let mut b = node(underlay6, host, false);
    for s in cut(ip, size) {
        b.ports[i].inject(s);
    }
    b.run();
    let want = take_out(&mut b);
    assert_eq!(got.len(), want.len(), "frames out");
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "frame {k}");
    }
    assert_eq!(a.pipe.counters, b.pipe.counters, "counters");
    assert_eq!(a.tx, b.tx, "tx counts");
    (a, got)
}

#[test]
fn encapsulated_super_packets_leave_as_their_segments_would() {
    for underlay6 in [false, true] {
        for whole in [false, true] {
            let ip = super_tcp(false, &SRC4, &[198, 19, 2, 2], 0x18, &data(30_000));
            let (a, out) = same_either_way(underlay6, "h1", "c1", &ip, 1378, whole);
            assert_eq!(out.len(), 22);
            assert!(out.iter().all(|(p, _)| p == "eth0"));
            assert_eq!(a.pipe.totals().forwarded, 22);
            let ip6 = super_tcp(true, &SRC6, &dst6(2, 2), 0x10, &data(25_000));
            same_either_way(underlay6, "h1", "c1", &ip6, 1358, whole);
        }
    }
}

/// The whole VXLAN frame h1 sends for `ip` (uplink taking super-packets).
fn encapsulated(underlay6: bool, ip: &[u8], size: u16) -> (Vec<u8>, Gso) {
    let mut h1 = node(underlay6, "h1", true);
    let c1 = h1.idx("c1");
    h1.ports[c1].inject_super(ip.to_vec(), gso_of(ip, size));
    h1.run();
    let g = h1.ports[0].tx_gso[0].unwrap();
    (h1.ports[0].take_tx().remove(0), g)
}

#[test]
fn decapsulated_and_transit_super_packets_leave_as_their_segments_would() {
    for underlay6 in [false, true] {
        for whole in [false, true] {
            for (v6, dst, host) in [
                (false, vec![198, 19, 2, 2], "c3"),
                (true, dst6(2, 2).to_vec(), "c3"),
                (false, vec![198, 19, 3, 2], "eth0"),
            ] {
                let src: &[u8] = if v6 { &SRC6 } else { &SRC4 };
                let ip = super_tcp(v6, src, &dst, 0x18, &data(40_000));
                let size = if v6 { 1358 } else { 1378 };
                let (frame, g) = encapsulated(underlay6, &ip, size);
                // h2 from the super-packet, against h2 from each segment
                // frame h1 sends when its uplink cuts.
                let mut a = node(underlay6, "h2", whole);
                a.ports[0].inject_super(frame, g);
                a.run();
                let got = take_out(&mut a);
                let mut h1 = node(underlay6, "h1", false);
                let c1 = h1.idx("c1");
                for s in cut(&ip, size) {
                    h1.ports[c1].inject(s);
                }
                h1.run();
                let mut b = node(underlay6, "h2", false);
                for f in h1.ports[0].take_tx() {
                    b.ports[0].inject(f);
                }
                b.run();
                let want = take_out(&mut b);
                assert_eq!(got, want);
                assert!(got.iter().all(|(p, _)| p == host), "leaves on {host}");
                assert_eq!(a.pipe.counters, b.pipe.counters);
                assert_eq!(a.pipe.totals().forwarded, want.len() as u64);
            }
        }
    }
}

#[test]
fn delivered_super_packets_leave_as_their_segments_would() {
    for whole in [false, true] {
        // TUN container to the veth container on the same host: Ethernet.
        let ip = super_tcp(false, &SRC4, &[198, 19, 1, 3], 0x18, &data(9000));
        let (_, out) = same_either_way(false, "h1", "c1", &ip, 1378, whole);
        assert!(out
            .iter()
            .all(|(p, f)| p == "c2" && f[..6] == [2, 0, 0, 0, 1, 3]));
        let ip6 = super_tcp(true, &SRC6, &dst6(1, 3), 0x19, &data(9000));
        same_either_way(false, "h1", "c1", &ip6, 1358, whole);
    }
}

#[test]
fn a_super_packet_over_the_mtu_is_answered_once_and_counted_whole() {
    // c4 has MTU 1000: segments of 1378 payload bytes do not fit.
    for whole in [false, true] {
        let ip = super_tcp(false, &SRC4, &[198, 19, 1, 4], 0x18, &data(13_780));
        let mut a = node(false, "h1", whole);
        let c1 = a.idx("c1");
        a.ports[c1].inject_super(ip.clone(), gso_of(&ip, 1378));
        a.run();
        let out = take_out(&mut a);
        assert_eq!(out.len(), 1, "one ICMP error");
        let (port, icmp) = &out[0];
        assert_eq!(port, "c1");
        assert_eq!(
            (icmp[9], icmp[20], icmp[21]),
            (1, 3, 4),
            "fragmentation needed"
        );
        assert_eq!(u16::from_be_bytes([icmp[26], icmp[27]]), 1000);
        let c = a.pipe.totals();
        assert_eq!(c.dropped(DropReason::TooBig), 10, "all ten segments");
        assert_eq!(c.icmp_errors, 1);
    }
}

#[test]
fn a_refused_super_packet_counts_every_segment() {
    for whole in [false, true] {
        let ip = super_tcp(false, &SRC4, &[198, 19, 2, 2], 0x18, &data(13_780));
        let mut a = node(false, "h1", whole);
        // A whole super-packet is one entry: no room at all refuses it.
        a.ports[0].tx_capacity = if whole { 0 } else { 4 };
        let c1 = a.idx("c1");
        a.ports[c1].inject_super(ip.clone(), gso_of(&ip, 1378));
        a.run();
        let c = a.pipe.totals();
        let (sent, refused) = if whole { (0, 10) } else { (4, 6) };
        assert_eq!(a.tx[0], sent);
        assert_eq!(c.forwarded, sent);
        assert_eq!(c.dropped(DropReason::TxFull), refused);
    }
}

#[test]
fn a_super_packet_in_a_one_frame_batch_is_refused_by_the_port() {
    let ip = super_tcp(false, &SRC4, &[198, 19, 2, 2], 0x18, &data(5000));
    let mut m = MemPort::new("c1", LinkType::RawIp);
    m.inject_super(ip, Gso::for_payload(1378, 5000));
    let mut b = Batch::new();
    assert_eq!(m.rx_burst(&mut b).unwrap(), 0);
    assert_eq!(m.rx_refused, 1);
    assert_eq!(sum(&[]), 0);
}

#[test]
fn udp_super_packets_take_every_path_as_their_datagrams_would() {
    for underlay6 in [false, true] {
        for whole in [false, true] {
            for (v6, dst) in [
                (false, vec![198, 19, 2, 2]),
                (false, vec![198, 19, 1, 3]),
                (true, dst6(2, 2).to_vec()),
                (true, dst6(1, 3).to_vec()),
            ] {
                let src: &[u8] = if v6 { &SRC6 } else { &SRC4 };
                let ip = super_udp(v6, src, &dst, &data(30 * 1200 + 77));
                let (a, out) = same_either_way(underlay6, "h1", "c1", &ip, 1200, whole);
                assert_eq!(out.len(), 31);
                assert_eq!(a.pipe.totals().forwarded, 31);
            }
        }
    }
    // Decapsulated and in transit, from the whole VXLAN frame h1 sends.
    let ip = super_udp(false, &SRC4, &[198, 19, 3, 2], &data(20 * 1000));
    let (frame, g) = encapsulated(false, &ip, 1000);
    let mut h2 = node(false, "h2", false);
    h2.ports[0].inject_super(frame, g);
    h2.run();
    let out = take_out(&mut h2);
    assert_eq!(out.len(), 20);
    assert!(out.iter().all(|(p, _)| p == "eth0"));
    assert_eq!(h2.pipe.totals().forwarded, 20);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Anything annotated as a super-packet, on any port (random bytes,
    /// mutations of a real one, any segment size and count): no panic, and
    /// every wire packet the annotation claims is accounted for once:
    /// forwarded, replied, passed or dropped by reason.
    #[test]
    fn any_super_packet_input_is_accounted_for(
        random in proptest::collection::vec(any::<u8>(), 0..3000),
        use_random in any::<bool>(),
        muts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        size in 0u16..3000,
        segs in 0u16..200,
        port in 0usize..4,
        whole in any::<bool>(),
    ) {
        let mut a = node(false, "h1", whole);
        let frame = if use_random {
            random
        } else {
            let mut ip = super_tcp(false, &SRC4, &[198, 19, 2, 2], 0x18, &data(6000));
            if port != 1 {
                // As it would arrive on the uplink or a veth port.
                let (f, _) = encapsulated(false, &ip, 1378);
                ip = f;
            }
            for (i, b) in &muts {
                let k = i.index(ip.len());
                ip[k] = *b;
            }
            ip
        };
        let g = Gso { size, segs };
        let port = port % a.ports.len();
        a.ports[port].inject_super(frame, g);
        a.run();
        let c = a.pipe.totals();
        let claimed = u64::from(segs.max(1));
        prop_assert_eq!(c.forwarded + c.pass_through + c.total_drops() + c.replied.min(1) * claimed, claimed);
        let sent: u64 = a.tx.iter().sum();
        prop_assert!(sent <= c.forwarded + c.replied + c.icmp_errors);
    }

    #[test]
    fn any_super_packet_is_its_segments(
        v6 in any::<bool>(),
        underlay6 in any::<bool>(),
        whole in any::<bool>(),
        n in 1usize..60_000,
        size in 200u16..1358,
        flags in prop::sample::select(vec![0x10u8, 0x18, 0x19, 0x98]),
        to in 0usize..3,
        udp in any::<bool>(),
    ) {
        let ip = super_from_c1(v6, to, udp, flags, n);
        prop_assume!(ip.len() <= offload::MAX_SUPER_L3);
        same_either_way(underlay6, "h1", "c1", &ip, size, whole);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever a super-packet holds (bytes changed in its headers, any
    /// segment size, an annotation whose segment count is off by up to two),
    /// wherever it enters (a container port, or the uplink encapsulated) and
    /// whether the output port takes it whole or not: no panic, every
    /// segment it claims is forwarded, passed or counted under a drop
    /// reason, and the ports are handed exactly what was forwarded, replied
    /// and sent as ICMP errors.
    #[test]
    fn every_claimed_segment_is_accounted_for(
        v6 in any::<bool>(),
        udp in any::<bool>(),
        underlay6 in any::<bool>(),
        n in 1usize..9000,
        changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        size in prop::sample::select(vec![1u16, 2, 7, 100, 536, 1000, 1378, 1400, 1500, 9000, 65535]),
        segs_off in -2i32..3,
        to in 0usize..3,
        port in 0usize..4,
        whole in any::<bool>(),
        encap in any::<bool>(),
    ) {
        let mut ip = super_from_c1(v6, to, udp, 0x18, n);
        let g0 = gso_of(&ip, size);
        let host = if encap { "h2" } else { "h1" };
        if encap {
            // The frame host 1 sends for it, whole.
            let mut h1 = node(underlay6, "h1", true);
            let c1 = h1.idx("c1");
            h1.ports[c1].inject_super(ip.clone(), g0);
            h1.run();
            prop_assume!(h1.ports[0].tx_gso.first().copied().flatten().is_some());
            ip = h1.ports[0].take_tx().remove(0);
        }
        for (i, b) in &changes {
            let k = i.index(ip.len().min(150));
            ip[k] = *b;
        }
        let segs = (i32::from(g0.segs) + segs_off).clamp(0, 65535) as u16;
        let mut a = node(underlay6, host, whole);
        let port = if encap { 0 } else { port % a.ports.len() };
        a.ports[port].inject_super(ip, Gso { size, segs });
        a.run();
        let c = a.pipe.totals();
        let claimed = u64::from(segs.max(1));
        // A reply (ARP, echo) answers the packet once, whatever it claims.
        prop_assert_eq!(
            c.forwarded + c.pass_through + c.total_drops() + c.replied.min(1) * claimed,
            claimed
        );
        let sent: u64 = a.tx.iter().sum();
        prop_assert_eq!(sent, c.forwarded + c.replied + c.icmp_errors);
    }
}
