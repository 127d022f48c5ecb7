//! Live tests of the UDP uplink (`uplink_io = "udp"`): VXLAN through kernel
//! UDP sockets with GSO sends and GRO reads instead of AF_XDP.
//!
//! Each test builds its own namespaces (prefix `lu<N>-`), writes its own
//! topology and uses addresses from 198.18.0.0/15 and 2001:2::/48 only. The
//! `Lab` guard stops the routers and deletes every namespace on exit, also
//! on panic. Needs root: without it a test reports SKIPPED (and fails
//! under `CI=true`). Traffic is bounded (ping -c, 2 s iperf3, one-shot
//! sockets with timeouts).
#![cfg(target_os = "linux")]

mod common;
#[macro_use]
mod live_support;

use serde_json::Value;

use live_support::{assert_clean, forwarded, Lab, H1_MAC, H1_VTEP, H2_MAC, H2_VTEP};

/// A `[[hosts]]` entry on underlay address `underlay`.
fn host(name: &str, n: u8, underlay: &str, io: &str, workers: &str, ports: &str) -> String {
    let vtep = if n == 1 { H1_VTEP } else { H2_VTEP };
    format!(
        r#"
[[hosts]]
name = "{name}"
underlay = "{underlay}"
vtep_mac = "{vtep}"
subnets = ["198.19.{n}.0/24", "2001:2:0:{n}::/64"]
nic = "eth0"
workers = [{workers}]
uplink_io = "{io}"
{ports}
"#
    )
}

fn port(name: &str, kind: &str, netns: &str, n: u8) -> String {
    format!(
        r#"
  [[hosts.ports]]
  name = "{name}"
  kind = "{kind}"
  netns = "{netns}"
  addresses = ["198.19.{n}.2/32", "2001:2:0:{n}::2/128"]
"#
    )
}

const TAIL: &str = "\n[[links]]\na = \"h1\"\nb = \"h2\"\ncost = 10\n";

/// Two host namespaces joined by an underlay veth with fixed MACs and no
/// address yet (the IPv6 underlay test gives its own; [`Lab::two_hosts`]
/// gives IPv4 ones).
fn two_hosts(lab: &mut Lab) -> (String, String) {
    let h1 = lab.ns("h1");
    let h2 = lab.ns("h2");
    lab.veth(&h1, "eth0", H1_MAC, &h2, "eth0", H2_MAC);
    (h1, h2)
}

/// The UDP uplink's own counters of a router.
fn uplink_io(s: &Value) -> &Value {
    &s["ports"]["eth0"]["io"]
}

fn io(s: &Value, k: &str) -> u64 {
    uplink_io(s)[k]
        .as_u64()
        .unwrap_or_else(|| panic!("no eth0 io counter {k}: {s:#}"))
}

/// Nothing was lost or refused on a UDP uplink.
fn assert_uplink_clean(host: &str, s: &Value) {
    for k in [
        "udp_rx_socket_drops",
        "udp_rx_oversize",
        "udp_tx_full",
        "udp_tx_errors",
        "udp_tx_malformed",
    ] {
        assert_eq!(io(s, k), 0, "{host}: eth0 {k}: {s:#}");
    }
    assert!(
        io(s, "udp_tx_sends") > 0 && io(s, "udp_rx_datagrams") > 0,
        "{host}: UDP uplink idle: {s:#}"
    );
}

/// h1 sends VXLAN through a UDP socket (TUN container), h2 through AF_XDP
/// (veth container): the two I/O paths speak the same wire format in both
/// directions (the socket's real UDP checksums are verified by the AF_XDP
/// side; AF_XDP's zero checksums are accepted by the socket), for IPv4 and
/// IPv6 inner traffic. A TCP bulk transfer from the TUN container leaves h1
/// in GSO sends of several datagrams each.
#[test]
fn udp_uplink_interoperates_with_af_xdp_peer() {
    require_root!();
    let mut lab = Lab::new("lu1");
    let (h1, h2) = lab.two_hosts("h1", "h2");
    // A veth hands the socket's datagrams over with a partial UDP checksum
    // (CHECKSUM_PARTIAL, completed by a NIC that a veth does not have);
    // AF_XDP on h2 sees the raw bytes and rightly drops them as
    // udp_bad_checksum. A real NIC completes it: let h1's kernel do so here
    // (GSO sends still work: the kernel then segments in software).
    lab.exec_ok(&h1, &["ethtool", "-K", "eth0", "tx", "off"]);
    let c1 = lab.adopt("c1");
    let c2 = lab.adopt("c2");
    let cfg = format!(
        "[overlay]\nvni = 42\n{}{}{TAIL}",
        host(
            "h1",
            1,
            "198.18.0.1",
            "udp",
            "0",
            &port("c1", "tun", &c1, 1)
        ),
        host(
            "h2",
            2,
            "198.18.0.2",
            "af_xdp",
            "1",
            &port("c2", "veth", &c2, 2)
        ),
    );
    let cfg = lab.write("topo.toml", &cfg);
    let r1 = lab.start(&cfg, "h1", &h1);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[r1, r2]);

    let a = lab.ping(&c1, "198.19.2.2");
    let b = lab.ping(&c2, "198.19.1.2");
    lab.ping(&c1, "2001:2:0:2::2");
    lab.ping(&c2, "2001:2:0:1::2");
    lab.exchange("udp", &c2, &c1, "198.19.2.2", 7201, 1200);
    lab.exchange("udp", &c1, &c2, "198.19.1.2", 7202, 1200);
    lab.exchange("tcp", &c2, &c1, "198.19.2.2", 7203, 300_000);
    lab.exchange("tcp", &c1, &c2, "198.19.1.2", 7204, 300_000);
    lab.exchange("tcp", &c1, &c2, "2001:2:0:1::2", 7205, 100_000);
    let gbps = lab.iperf_tcp(&c2, &c1, "198.19.2.2");
    eprintln!(
        "lu1: ping avg ms udp->af_xdp {a:.3}, af_xdp->udp {b:.3}; iperf3 TCP {gbps:?} Gbit/s"
    );

    let s1 = lab.wait_stats(r1, "forwarded > 100", |s| forwarded(s) > 100);
    let s2 = lab.wait_stats(r2, "forwarded > 100", |s| forwarded(s) > 100);
    assert_clean("h1", &s1);
    assert_clean("h2", &s2);
    assert_uplink_clean("h1", &s1);
    // Segmentation offload at work: more datagrams than sends.
    assert!(
        io(&s1, "udp_tx_datagrams") > io(&s1, "udp_tx_sends"),
        "h1: no GSO send carried more than one datagram: {s1:#}"
    );
    // h2 is the AF_XDP side: its socket counters, none of the UDP ones.
    assert!(uplink_io(&s2).get("udp_tx_sends").is_none(), "{s2:#}");
    assert_eq!(
        s2["drops"]["udp_bad_checksum"].as_u64().unwrap_or(0),
        0,
        "{s2:#}"
    );
}

/// Both hosts on the UDP uplink over an IPv6 underlay, TUN containers on
/// both sides, two workers on h2 sharing the port (SO_REUSEPORT): IPv4 and
/// IPv6 inner traffic both ways, and bulk TCP arrives at h2 in GRO reads of
/// several datagrams each.
#[test]
fn udp_uplink_ipv6_underlay_both_sides() {
    require_root!();
    let mut lab = Lab::new("lu2");
    let (h1, h2) = two_hosts(&mut lab);
    lab.ip(
        &h1,
        &["addr", "add", "2001:2:ff::1/64", "dev", "eth0", "nodad"],
    );
    lab.ip(
        &h2,
        &["addr", "add", "2001:2:ff::2/64", "dev", "eth0", "nodad"],
    );
    let c1 = lab.adopt("c1");
    let c2 = lab.adopt("c2");
    let cfg = format!(
        "[overlay]\nvni = 42\n{}{}{TAIL}",
        host(
            "h1",
            1,
            "2001:2:ff::1",
            "udp",
            "0",
            &port("c1", "tun", &c1, 1)
        ),
        host(
            "h2",
            2,
            "2001:2:ff::2",
            "udp",
            "0, 1",
            &port("c2", "tun", &c2, 2)
        ),
    );
    let cfg = lab.write("topo.toml", &cfg);
    let r1 = lab.start(&cfg, "h1", &h1);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[r1, r2]);

    let a = lab.ping(&c1, "198.19.2.2");
    let b = lab.ping(&c2, "2001:2:0:1::2");
    lab.exchange("udp", &c2, &c1, "198.19.2.2", 7211, 1200);
    lab.exchange("udp", &c1, &c2, "2001:2:0:1::2", 7212, 1000);
    lab.exchange("tcp", &c2, &c1, "198.19.2.2", 7213, 300_000);
    lab.exchange("tcp", &c1, &c2, "2001:2:0:1::2", 7214, 300_000);
    let gbps = lab.iperf_tcp(&c2, &c1, "198.19.2.2");
    eprintln!("lu2: ping avg ms v4 inner {a:.3}, v6 inner {b:.3}; iperf3 TCP {gbps:?} Gbit/s");

    let s1 = lab.wait_stats(r1, "forwarded > 100", |s| forwarded(s) > 100);
    let s2 = lab.wait_stats(r2, "forwarded > 100", |s| forwarded(s) > 100);
    assert_eq!(s2["workers"].as_u64(), Some(2), "{s2:#}");
    for (h, s) in [("h1", &s1), ("h2", &s2)] {
        assert_clean(h, s);
        assert_uplink_clean(h, s);
    }
    assert!(
        io(&s1, "udp_tx_datagrams") > io(&s1, "udp_tx_sends"),
        "h1: no GSO send carried more than one datagram: {s1:#}"
    );
    assert!(
        io(&s2, "udp_rx_coalesced") > 0,
        "h2: no GRO read held more than one datagram: {s2:#}"
    );
    // The bulk TCP from c1 crossed as super-packets: read whole from the
    // TUN, sent whole (cut into one GSO send each), coalesced again on h2
    // and written to c2 whole.
    let c1_io = &s1["ports"]["c1"]["io"];
    assert!(
        c1_io["rx_gso_whole"].as_u64() > Some(0),
        "h1: c1 kept no super-packet whole: {s1:#}"
    );
    assert!(
        io(&s1, "udp_tx_gso_packets") > 0,
        "h1: no super-packet sent whole: {s1:#}"
    );
    assert!(
        io(&s2, "udp_rx_super") > 0,
        "h2: no train coalesced: {s2:#}"
    );
    assert!(
        s2["ports"]["c2"]["io"]["tx_gso_packets"].as_u64() > Some(0),
        "h2: nothing written to c2 as a super-packet: {s2:#}"
    );
}

/// h1 runs vxrouter on the UDP uplink, h2 is the kernel's own VXLAN device
/// set up the way flannel does it (the host-by-host migration case). Ping,
/// UDP and TCP both ways.
#[test]
fn udp_uplink_kernel_vxlan_peer() {
    require_root!();
    let mut lab = Lab::new("lu3");
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let c1 = lab.adopt("c1");
    let k2 = lab.ns("k2");
    lab.kernel_vtep(&h2, &k2, 2, H2_VTEP, 1, H1_VTEP);
    // Over a veth the kernel hands its VXLAN packets over with the inner
    // UDP/TCP checksum still partial (a NIC with tunnel offload would
    // complete it). h1's socket accepts the outer datagram as the kernel
    // does, but the inner packet would reach c1 with a wrong checksum: let
    // h2's kernel complete the checksums in software, as a NIC would.
    lab.exec_ok(&h2, &["ethtool", "-K", "eth0", "tx", "off"]);
    let cfg = format!(
        "[overlay]\nvni = 42\n{}{}{TAIL}",
        host(
            "h1",
            1,
            "198.18.0.1",
            "udp",
            "0",
            &port("c1", "veth", &c1, 1)
        ),
        host("h2", 2, "198.18.0.2", "af_xdp", "1", ""),
    );
    let cfg = lab.write("topo.toml", &cfg);
    let r1 = lab.start(&cfg, "h1", &h1);
    lab.wait_ready(&[r1]);

    let a = lab.ping(&c1, "198.19.2.2");
    let b = lab.ping(&k2, "198.19.1.2");
    lab.exchange("udp", &k2, &c1, "198.19.2.2", 7301, 1200);
    lab.exchange("udp", &c1, &k2, "198.19.1.2", 7302, 1200);
    lab.exchange("tcp", &k2, &c1, "198.19.2.2", 7303, 300_000);
    lab.exchange("tcp", &c1, &k2, "198.19.1.2", 7304, 300_000);
    eprintln!("lu3: ping avg ms vxrouter->kernel {a:.3}, kernel->vxrouter {b:.3}");
    let s = lab.wait_stats(r1, "forwarded > 20", |s| forwarded(s) > 20);
    assert_clean("h1", &s);
    assert_uplink_clean("h1", &s);
}

/// veth containers with `offload = true` (AF_PACKET with virtio-net headers
/// instead of AF_XDP) on both hosts over the UDP uplink, two workers on h2
/// (one fanout group): the router answers ARP and neighbour solicitation
/// through the socket, IPv4 and IPv6 traffic both ways, and a TCP bulk
/// transfer crosses as super-packets: read whole from the sending
/// container, written coalesced to the receiving one. The host kernel,
/// which sees a copy of every frame on the host end, must not answer or
/// forward any of them (nothing would arrive twice: the exchanges check
/// the bytes).
#[test]
fn veth_offload_port_moves_super_packets() {
    require_root!();
    let mut lab = Lab::new("lu4");
    let (h1, h2) = lab.two_hosts("h1", "h2");
    // The host kernels would forward what reaches them: make sure they
    // never get to (the frames are not addressed to their device).
    for h in [&h1, &h2] {
        lab.exec_ok(h, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    }
    let c1 = lab.adopt("c1");
    let c2 = lab.adopt("c2");
    let off = |p: String| format!("{p}  offload = true\n");
    let cfg = format!(
        "[overlay]\nvni = 42\n{}{}{TAIL}",
        host(
            "h1",
            1,
            "198.18.0.1",
            "udp",
            "0",
            &off(port("c1", "veth", &c1, 1))
        ),
        host(
            "h2",
            2,
            "198.18.0.2",
            "udp",
            "0, 1",
            &off(port("c2", "veth", &c2, 2))
        ),
    );
    let cfg = lab.write("topo.toml", &cfg);
    let r1 = lab.start(&cfg, "h1", &h1);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[r1, r2]);

    let a = lab.ping(&c1, "198.19.2.2");
    let b = lab.ping(&c2, "2001:2:0:1::2");
    lab.ping(&c2, "198.19.2.1"); // the router answers for its gateway
    lab.exchange("udp", &c2, &c1, "198.19.2.2", 7401, 1200);
    lab.exchange("udp", &c1, &c2, "2001:2:0:1::2", 7402, 1000);
    lab.exchange("tcp", &c2, &c1, "198.19.2.2", 7403, 2_000_000);
    lab.exchange("tcp", &c1, &c2, "2001:2:0:1::2", 7404, 2_000_000);
    let gbps = lab.iperf_tcp(&c2, &c1, "198.19.2.2");
    eprintln!("lu4: ping avg ms v4 {a:.3}, v6 {b:.3}; iperf3 TCP veth->veth {gbps:?} Gbit/s");

    let s1 = lab.wait_stats(r1, "forwarded > 100", |s| forwarded(s) > 100);
    let s2 = lab.wait_stats(r2, "forwarded > 100", |s| forwarded(s) > 100);
    for (h, s, name) in [("h1", &s1, "c1"), ("h2", &s2, "c2")] {
        assert_clean(h, s);
        assert_uplink_clean(h, s);
        let io = &s["ports"][name]["io"];
        for k in ["rx_errors", "tx_errors", "tx_dropped", "packet_rx_drops"] {
            assert_eq!(io[k].as_u64(), Some(0), "{h}: {name} {k}: {s:#}");
        }
        // Both directions carried bulk TCP: super-packets came in whole and
        // went out coalesced on both ports.
        for k in ["rx_gso_packets", "rx_gso_whole", "tx_gso_packets"] {
            assert!(io[k].as_u64() > Some(0), "{h}: {name} {k} is 0: {s:#}");
        }
        // ... and crossed the underlay whole both ways.
        for k in ["udp_tx_gso_packets", "udp_rx_super"] {
            assert!(crate::io(s, k) > 0, "{h}: {k} is 0: {s:#}");
        }
    }
}

/// The inner frame of a VXLAN datagram from h2's VTEP to h1's: IPv4/UDP from
/// 198.19.2.2 to c1 (198.19.1.2) port 7300, as a local process would forge it.
const INJECT: &str = r#"
import socket, struct, sys
src_ip, n = sys.argv[1], int(sys.argv[2])
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
payload = b"injected"
udp = struct.pack("!HHHH", 40000, 7300, 8 + len(payload), 0) + payload
ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, 64, 17, 0,
               socket.inet_aton("198.19.2.2"), socket.inet_aton("198.19.1.2")))
ip[10:12] = struct.pack("!H", csum(bytes(ip)))
eth = bytes.fromhex("02:00:c6:13:01:00".replace(":", "")) + bytes.fromhex("02:00:c6:13:02:00".replace(":", "")) + b"\x08\x00"
vx = struct.pack("!II", 0x08000000, 42 << 8)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src_ip, 0))
for _ in range(n):
    s.sendto(vx + eth + bytes(ip) + udp, ("198.18.0.1", 4789))
"#;

/// Counts datagrams to 198.19.1.2:7300 for two seconds.
const LISTEN: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.19.1.2", 7300))
s.settimeout(0.2)
import time
end, n = time.time() + 2.0, 0
print("ready", flush=True)
while time.time() < end:
    try:
        s.recv(2048); n += 1
    except socket.timeout:
        pass
print(n)
"#;

/// A local unprivileged process on h1 sends VXLAN datagrams to h1's VXLAN
/// port from h1's own underlay address and from another local address,
/// claiming to carry h2's container traffic. The router refuses both, named
/// (vxlan_from_self, unknown_peer), and c1 receives nothing; a datagram
/// from c2 through the real peer still arrives.
#[test]
fn udp_uplink_refuses_local_injection() {
    require_root!();
    let mut lab = Lab::new("lu5");
    let (h1, h2) = lab.two_hosts("h1", "h2");
    lab.ip(&h1, &["addr", "add", "198.18.0.77/32", "dev", "lo"]);
    let c1 = lab.adopt("c1");
    let c2 = lab.adopt("c2");
    let cfg = format!(
        "[overlay]\nvni = 42\n{}{}{TAIL}",
        host(
            "h1",
            1,
            "198.18.0.1",
            "udp",
            "0",
            &port("c1", "tun", &c1, 1)
        ),
        host(
            "h2",
            2,
            "198.18.0.2",
            "udp",
            "0",
            &port("c2", "tun", &c2, 2)
        ),
    );
    let cfg = lab.write("topo.toml", &cfg);
    let r1 = lab.start(&cfg, "h1", &h1);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[r1, r2]);
    lab.ping(&c1, "198.19.2.2");

    let mut listener = std::process::Command::new("ip")
        .args([
            "netns", "exec", &c1, "timeout", "10", "python3", "-c", LISTEN,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting the listener");
    let mut out = std::io::BufReader::new(listener.stdout.take().expect("listener stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).expect("listener ready");
    assert_eq!(line.trim(), "ready");
    // Unprivileged: nobody, no capabilities. Debian's python3, not one
    // under root's home that nobody cannot read.
    for src in ["198.18.0.1", "198.18.0.77"] {
        lab.exec_ok(
            &h1,
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
                INJECT,
                src,
                "5",
            ],
        );
    }
    // The real path still delivers to the same listener.
    lab.exec_ok(
        &c2,
        &[
            "python3", "-c",
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'real', ('198.19.1.2', 7300))",
        ],
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("listener result");
    let _ = listener.wait();
    assert_eq!(
        rest.trim(),
        "1",
        "c1 received other than the one real datagram"
    );

    let s1 = lab.wait_stats(r1, "the injections counted", |s| {
        s["drops"]["vxlan_from_self"].as_u64() >= Some(5)
            && s["drops"]["unknown_peer"].as_u64() >= Some(5)
    });
    assert_eq!(s1["drops"]["vxlan_from_self"].as_u64(), Some(5), "{s1:#}");
    assert_eq!(s1["drops"]["unknown_peer"].as_u64(), Some(5), "{s1:#}");
}

/// A veth the router attaches to (no `netns`) and whose `mac` the file does
/// not give: the router reads the container end's MAC from the kernel, so
/// traffic reaches a container that has not spoken yet.
#[test]
fn existing_veth_container_mac_is_read() {
    require_root!();
    let mut lab = Lab::new("lu6");
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let c1 = lab.ns("c1");
    lab.veth(
        &h1,
        "cv1",
        "02:00:00:00:aa:01",
        &c1,
        "eth0",
        "02:00:00:5e:bb:02",
    );
    lab.ip(&c1, &["addr", "add", "198.19.1.2/24", "dev", "eth0"]);
    lab.ip(&c1, &["route", "add", "default", "via", "198.19.1.1"]);
    // AF_XDP frames carry no partial-checksum flag.
    lab.exec_ok(&c1, &["ethtool", "-K", "eth0", "tx", "off"]);
    let c2 = lab.adopt("c2");
    let existing = "\n  [[hosts.ports]]\n  name = \"cv1\"\n  kind = \"veth\"\n  addresses = [\"198.19.1.2/32\"]\n";
    let cfg = format!(
        "[overlay]\nvni = 42\n{}{}{TAIL}",
        host("h1", 1, "198.18.0.1", "udp", "0", existing),
        host(
            "h2",
            2,
            "198.18.0.2",
            "udp",
            "0",
            &port("c2", "tun", &c2, 2)
        ),
    );
    let cfg = lab.write("topo.toml", &cfg);
    let r1 = lab.start(&cfg, "h1", &h1);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[r1, r2]);
    assert!(
        lab.log(r1).contains("02:00:00:5e:bb:02"),
        "the container MAC is not in the log:\n{}",
        lab.log(r1)
    );
    // The remote side speaks first: c1 has sent nothing yet.
    lab.ping(&c2, "198.19.1.2");
    lab.ping(&c1, "198.19.2.2");
}

/// An `offload = true` veth whose host end holds an address would be
/// answered twice (the router through AF_PACKET, the host kernel with the
/// device's own MAC): the start is refused, naming the port and address.
#[test]
fn offload_veth_with_host_addresses_is_refused() {
    require_root!();
    let mut lab = Lab::new("lu7");
    let (h1, _h2) = lab.two_hosts("h1", "h2");
    let c1 = lab.ns("c1");
    lab.veth(
        &h1,
        "cv1",
        "02:00:00:00:aa:01",
        &c1,
        "eth0",
        "02:00:00:5e:bb:02",
    );
    lab.ip(&h1, &["addr", "add", "198.19.1.1/32", "dev", "cv1"]);
    let existing = "\n  [[hosts.ports]]\n  name = \"cv1\"\n  kind = \"veth\"\n  offload = true\n  mac = \"02:00:00:5e:bb:02\"\n  addresses = [\"198.19.1.2/32\"]\n";
    let cfg = format!(
        "[overlay]\nvni = 42\n{}{}{TAIL}",
        host("h1", 1, "198.18.0.1", "udp", "0", existing),
        host("h2", 2, "198.18.0.2", "udp", "0", ""),
    );
    let cfg = lab.write("topo.toml", &cfg);
    let r1 = lab.start(&cfg, "h1", &h1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(st)) = lab.routers[r1].child.try_wait() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "router started:\n{}",
            lab.log(r1)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success());
    let log = lab.log(r1);
    assert!(
        log.contains("cv1 has offload = true and its host end holds addresses (198.19.1.1)"),
        "{log}"
    );
}
