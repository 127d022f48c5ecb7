//! Live tests of several overlay networks on one fabric: `vxrouter run` on
//! hosts made of network namespaces, two networks (the default one, VNI 42,
//! and "blue", VNI 43) whose address spaces overlap, traffic in both, and
//! proof that none of it crosses from one network to the other.
//!
//! Every container of one network has a namesake in the other with the same
//! address. Tagged UDP datagrams go out from every container at once, and
//! each receiver must get exactly the datagrams of its own network: a
//! datagram that leaked would arrive at the namesake in the other network
//! and be seen there.
//!
//! Each test builds its own namespaces (prefix `vntN-`, so tests run in
//! parallel), writes its own topology into a tempdir and uses addresses from
//! 198.18.0.0/15 and 2001:2::/48 only. The `Lab` guard stops the routers and
//! deletes every namespace on exit, also on panic. Needs root: without it a
//! test reports SKIPPED (and fails under `CI=true`). Traffic is bounded
//! (ping -c, a fixed number of datagrams, receivers that stop after a few
//! seconds, `timeout` around every process).
#![cfg(target_os = "linux")]

mod common;
#[macro_use]
mod live_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};

use serde_json::Value;

use live_support::{assert_clean, forwarded, host, link, Lab, H1_VTEP, H2_VTEP, OVERLAY};

/// The second network: VNI 43, the same prefixes as the default network on
/// h1 and h2. (Its own MTU is [`each_network_has_its_own_mtu`]'s subject.)
const BLUE: &str = r#"
[[networks]]
name = "blue"
vni = 43
[networks.subnets]
h1 = ["198.19.1.0/24", "2001:2:0:1::/64"]
h2 = ["198.19.2.0/24", "2001:2:0:2::/64"]
"#;

/// Blue's gateway on host `n`: other addresses than the default network's
/// (`.1`, `::1`), so an answer names the network that gave it.
fn blue_gw4(n: u8) -> String {
    format!("198.19.{n}.254")
}

fn blue_gw6(n: u8) -> String {
    format!("2001:2:0:{n}::fe")
}

/// A `[[hosts.ports]]` entry of host `n` with address `.a` / `::a`, in the
/// default network or (`blue`) in blue with blue's gateways.
fn net_port(name: &str, kind: &str, netns: &str, n: u8, a: u8, blue: bool) -> String {
    let net = if blue {
        format!(
            "  network = \"blue\"\n  gateways = [\"{}\", \"{}\"]\n",
            blue_gw4(n),
            blue_gw6(n)
        )
    } else {
        String::new()
    };
    format!(
        r#"
  [[hosts.ports]]
  name = "{name}"
  kind = "{kind}"
  netns = "{netns}"
  addresses = ["198.19.{n}.{a}/32", "2001:2:0:{n}::{a}/128"]
{net}"#
    )
}

/// Tagged datagrams: `sink PORT SECONDS ADDR...` binds UDP `PORT` on every
/// `ADDR`, prints `ready`, then prints every datagram received, one a
/// line, until `SECONDS` have passed. `send PORT TAG N ADDR...` sends `N`
/// datagrams `TAG ADDR I` to each `ADDR`, 5 ms apart.
const NETS_PY: &str = r#"
import selectors, socket, sys, time
role, port = sys.argv[1], int(sys.argv[2])
def sock(a):
    return socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM)
if role == 'sink':
    secs, addrs = float(sys.argv[3]), sys.argv[4:]
    sel = selectors.DefaultSelector()
    for a in addrs:
        s = sock(a)
        s.bind((a, port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    print('ready', flush=True)
    end = time.monotonic() + secs
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        for key, _ in sel.select(left):
            while True:
                try:
                    data, _ = key.fileobj.recvfrom(2048)
                except BlockingIOError:
                    break
                print(data.decode('ascii', 'replace'), flush=True)
else:
    tag, n, addrs = sys.argv[3], int(sys.argv[4]), sys.argv[5:]
    for a in addrs:
        s = sock(a)
        for i in range(n):
            s.sendto(('%s %s %d' % (tag, a, i)).encode(), (a, port))
            time.sleep(0.005)
"#;

/// Datagrams each sender sends to each destination address.
const BURST: usize = 20;
/// How long a receiver listens (the senders take ~0.2 s per address).
const LISTEN_S: &str = "4";
/// UDP port of the tagged datagrams.
const TAG_PORT: &str = "9043";

/// A receiver of tagged datagrams; killed on drop if still running.
struct Sink {
    ns: String,
    child: Option<Child>,
    out: BufReader<ChildStdout>,
}

impl Sink {
    /// Starts a receiver in `ns` on `addrs` and waits until it is bound.
    fn start(lab: &Lab, ns: &str, addrs: &[&str]) -> Sink {
        let py = lab.dir.path().join("nets.py");
        let py = py.to_str().expect("utf-8 tempdir");
        let mut args = vec![
            "netns", "exec", ns, "timeout", "15", "python3", py, "sink", TAG_PORT, LISTEN_S,
        ];
        args.extend_from_slice(addrs);
        let mut child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the receiver");
        let out = BufReader::new(child.stdout.take().expect("receiver stdout"));
        let mut sink = Sink {
            ns: ns.to_owned(),
            child: Some(child),
            out,
        };
        let mut line = String::new();
        let _ = sink.out.read_line(&mut line);
        if line.trim() != "ready" {
            let o = sink.child.take().expect("child").wait_with_output();
            panic!("receiver in {ns} on {addrs:?} did not start: {o:?}");
        }
        sink
    }

    /// Waits for the receiver to finish; the datagrams it got, one a line.
    fn lines(mut self) -> Vec<String> {
        let mut text = String::new();
        let _ = self.out.read_to_string(&mut text);
        let o = self
            .child
            .take()
            .expect("child")
            .wait_with_output()
            .expect("receiver exit");
        assert!(
            o.status.success(),
            "receiver in {} failed: {}",
            self.ns,
            String::from_utf8_lossy(&o.stderr)
        );
        text.lines().map(str::to_owned).collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends `BURST` datagrams tagged `tag` from `ns` to each of `addrs`.
fn send(lab: &Lab, ns: &str, tag: &str, addrs: &[&str]) {
    let py = lab.dir.path().join("nets.py");
    let py = py.to_str().expect("utf-8 tempdir");
    let n = BURST.to_string();
    let mut args = vec!["python3", py, "send", TAG_PORT, tag, &n];
    args.extend_from_slice(addrs);
    lab.exec_ok(ns, &args);
}

/// One round of tagged traffic: every (sender namespace, tag) sends to the
/// addresses of its row at once; then every receiver must hold exactly
/// `BURST` datagrams per address from the tag it expects and nothing else.
/// `rows`: (sender, tag, destination addresses, receiver namespace).
fn tagged_round(lab: &Lab, rows: &[(&str, &str, &[&str], &str)]) {
    let sinks: Vec<(Sink, &str, &[&str])> = rows
        .iter()
        .map(|(_, tag, addrs, rx)| (Sink::start(lab, rx, addrs), *tag, *addrs))
        .collect();
    std::thread::scope(|s| {
        for (tx, tag, addrs, _) in rows {
            s.spawn(move || send(lab, tx, tag, addrs));
        }
    });
    let mut failures = Vec::new();
    for (sink, want, addrs) in sinks {
        let ns = sink.ns.clone();
        let lines = sink.lines();
        let mut per_tag: BTreeMap<String, usize> = BTreeMap::new();
        for l in &lines {
            let tag = l.split_whitespace().next().unwrap_or("").to_owned();
            *per_tag.entry(tag).or_default() += 1;
        }
        let expected: BTreeMap<String, usize> = [(want.to_owned(), BURST * addrs.len())]
            .into_iter()
            .collect();
        if per_tag != expected {
            failures.push(format!(
                "{ns} received {per_tag:?}, expected {expected:?} (only its own network's)"
            ));
        }
        eprintln!("{}: {ns}: {per_tag:?}", lab.prefix);
    }
    assert!(
        failures.is_empty(),
        "traffic crossed networks or was lost:\n  {}",
        failures.join("\n  ")
    );
}

/// The port counters of the stats file, by port: (rx, tx).
fn port_counts(s: &Value) -> BTreeMap<String, (u64, u64)> {
    s["ports"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        (v["rx"].as_u64().unwrap_or(0), v["tx"].as_u64().unwrap_or(0)),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Two routers, two networks with the same prefixes on both hosts. h1: d1
/// (TUN, default) and b1 (veth, blue) both at 198.19.1.2, and b3 (TUN,
/// blue) at 198.19.1.3; h2: d2 (veth, default) and b2 (TUN, blue) both at
/// 198.19.2.2. Ping, UDP and TCP in each network both ways; tagged UDP from
/// all four namesakes at once, IPv4 and IPv6, lands only in its own
/// network; each network's gateway answers only its own ports; b3 is
/// reached from blue, on its host and across, and from the default network
/// not at all.
#[test]
fn two_networks_overlapping_across_two_hosts() {
    require_root!();
    let mut lab = Lab::new("vnt1");
    lab.write("nets.py", NETS_PY);
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let d1 = lab.adopt("d1");
    let b1 = lab.adopt("b1");
    let b3 = lab.adopt("b3");
    let d2 = lab.adopt("d2");
    let b2 = lab.adopt("b2");
    let cfg = format!(
        "{OVERLAY}{BLUE}{}{}{}",
        host(
            "h1",
            1,
            H1_VTEP,
            "0",
            &[
                net_port("d1", "tun", &d1, 1, 2, false),
                net_port("b1", "veth", &b1, 1, 2, true),
                net_port("b3", "tun", &b3, 1, 3, true),
            ]
            .concat()
        ),
        host(
            "h2",
            2,
            H2_VTEP,
            "1",
            &[
                net_port("d2", "veth", &d2, 2, 2, false),
                net_port("b2", "tun", &b2, 2, 2, true),
            ]
            .concat()
        ),
        link("h1", "h2", 10)
    );
    let cfg = lab.write("topo.toml", &cfg);
    let r1 = lab.start(&cfg, "h1", &h1);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[r1, r2]);

    // Every namesake pair works in its own network, both families, both
    // ways.
    for (a, b) in [(&d1, &d2), (&b1, &b2)] {
        lab.ping(a, "198.19.2.2");
        lab.ping(b, "198.19.1.2");
        lab.ping(a, "2001:2:0:2::2");
        lab.ping(b, "2001:2:0:1::2");
    }
    lab.exchange("udp", &d2, &d1, "198.19.2.2", 7401, 1200);
    lab.exchange("udp", &b2, &b1, "198.19.2.2", 7402, 1200);
    lab.exchange("tcp", &d1, &d2, "198.19.1.2", 7403, 200_000);
    lab.exchange("tcp", &b1, &b2, "198.19.1.2", 7404, 200_000);
    lab.exchange("udp", &b1, &b2, "2001:2:0:1::2", 7405, 1000);

    // All four namesakes at once, to the same addresses in both networks:
    // each receiver gets its own network's datagrams and nothing else.
    let h2_addrs: &[&str] = &["198.19.2.2", "2001:2:0:2::2"];
    let h1_addrs: &[&str] = &["198.19.1.2", "2001:2:0:1::2"];
    tagged_round(
        &lab,
        &[
            (d1.as_str(), "default-from-h1", h2_addrs, d2.as_str()),
            (b1.as_str(), "blue-from-h1", h2_addrs, b2.as_str()),
            (d2.as_str(), "default-from-h2", h1_addrs, d1.as_str()),
            (b2.as_str(), "blue-from-h2", h1_addrs, b1.as_str()),
        ],
    );
    // Within h1: blue's ports reach each other.
    let b3_addrs: &[&str] = &["198.19.1.3", "2001:2:0:1::3"];
    tagged_round(&lab, &[(b1.as_str(), "blue-local", b3_addrs, b3.as_str())]);

    // The counters agree: every port carried traffic both ways.
    for r in [r1, r2] {
        let host = lab.routers[r].host.clone();
        let s = lab.wait_stats(r, "forwarded > 200", |s| forwarded(s) > 200);
        assert_clean(&host, &s);
        for (name, (rx, tx)) in port_counts(&s) {
            assert!(rx > 0 && tx > 0, "{host}: port {name} idle: {s:#}");
        }
    }

    // Each network's gateway answers its own ports only.
    lab.ping(&b1, &blue_gw4(1));
    lab.ping(&b2, &blue_gw6(2));
    lab.ping(&d1, "198.19.1.1");
    lab.ping_fails(&d1, &blue_gw4(1));
    lab.ping_fails(&b1, "198.19.1.1");
    // b3 exists in blue only: reached from blue, on its host and across,
    // never from the default network.
    lab.ping(&b1, "198.19.1.3");
    lab.ping(&b2, "198.19.1.3");
    lab.ping_fails(&d1, "198.19.1.3");
    lab.ping_fails(&d2, "198.19.1.3");
    lab.ping_fails(&d2, "2001:2:0:1::3");

    // The refusals were no routes on h1 (unassigned in that network), and
    // no frame carried a VNI of no network.
    let s = lab.wait_stats(r1, "the refusals counted", |s| {
        s["drops"]["no_route"].as_u64() >= Some(5)
    });
    for r in [r1, r2] {
        let s = if r == r1 { s.clone() } else { lab.stats(r) };
        assert_eq!(
            s["drops"]["vxlan_unknown_vni"].as_u64().unwrap_or(0),
            0,
            "{s:#}"
        );
        assert_eq!(s["io_errors"].as_u64(), Some(0), "{s:#}");
    }
}

/// h1 runs vxrouter with the default network and blue; h2 is the Linux
/// kernel with one VXLAN device per VNI (vx42, vx43), each moved into its
/// own namespace (k42, k43) while its UDP socket stays in h2's, the way
/// flannel would set up one device, twice. d1 (veth, default) and b1 (TUN,
/// blue) on h1 share 198.19.1.2; the two kernel devices share 198.19.2.2.
/// Ping, UDP and TCP both ways in each network, tagged UDP from all four at
/// once landing only in its own network, and the kernel devices' counters
/// show each got its own network's traffic. A third kernel device with
/// VNI 44, no network's, gets nothing through: its frames are counted as
/// `vxlan_unknown_vni`.
#[test]
fn kernel_vxlan_device_per_vni() {
    require_root!();
    let mut lab = Lab::new("vnt2");
    lab.write("nets.py", NETS_PY);
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let d1 = lab.adopt("d1");
    let b1 = lab.adopt("b1");
    let k42 = lab.ns("k42");
    let k43 = lab.ns("k43");
    // A third device, VNI 44, belongs to no network of the topology.
    // See kernel_vxlan_peer in live_netns.rs: a veth leaves the kernel's
    // VXLAN UDP checksums partial; let the kernel complete them.
    lab.exec_ok(&h2, &["ethtool", "-K", "eth0", "tx", "off"]);
    let k44 = lab.ns("k44");
    for (vni, k, gw6) in [
        ("42", &k42, "2001:2:0:1::1"),
        ("43", &k43, "2001:2:0:1::fe"),
        ("44", &k44, "2001:2:0:1::1"),
    ] {
        let dev = format!("vx{vni}");
        let add = Command::new("ip")
            .args([
                "-n", &h2, "link", "add", &dev, "address", H2_VTEP, "type", "vxlan",
            ])
            .args([
                "id",
                vni,
                "dstport",
                "4789",
                "local",
                "198.18.0.2",
                "dev",
                "eth0",
            ])
            .arg("nolearning")
            .stdin(Stdio::null())
            .output()
            .expect("spawning ip");
        if !add.status.success() {
            let err = String::from_utf8_lossy(&add.stderr);
            if err.contains("Unknown device type") || err.contains("not supported") {
                common::skip(&format!("no kernel VXLAN devices: {}", err.trim()));
                return;
            }
            panic!("ip link add {dev} type vxlan: {err}");
        }
        // The device moves; its socket stays in h2, on the underlay.
        lab.ip(&h2, &["link", "set", &dev, "netns", k]);
        lab.ip(k, &["link", "set", &dev, "mtu", "1450", "up"]);
        lab.ip(k, &["addr", "add", "198.19.2.2/24", "dev", &dev]);
        lab.ip(
            k,
            &["addr", "add", "2001:2:0:2::2/64", "dev", &dev, "nodad"],
        );
        // h1's subnets through h1's VTEP: a permanent neighbour for the
        // next hop (the inner destination MAC vxrouter accepts) and an FDB
        // entry sending that MAC to h1's underlay address.
        for (prefix, gw) in [("198.19.1.0/24", "198.19.1.1"), ("2001:2:0:1::/64", gw6)] {
            lab.ip(
                k,
                &["route", "add", prefix, "via", gw, "dev", &dev, "onlink"],
            );
            lab.ip(
                k,
                &[
                    "neigh",
                    "add",
                    gw,
                    "lladdr",
                    H1_VTEP,
                    "dev",
                    &dev,
                    "nud",
                    "permanent",
                ],
            );
        }
        live_support::cmd(&[
            "bridge",
            "-n",
            k,
            "fdb",
            "add",
            H1_VTEP,
            "dev",
            &dev,
            "dst",
            "198.18.0.1",
            "self",
            "permanent",
        ]);
    }
    let cfg = format!(
        "{OVERLAY}{BLUE}{}{}{}",
        host(
            "h1",
            1,
            H1_VTEP,
            "0, 1",
            &[
                net_port("d1", "veth", &d1, 1, 2, false),
                net_port("b1", "tun", &b1, 1, 2, true),
            ]
            .concat()
        ),
        host("h2", 2, H2_VTEP, "1", ""),
        link("h1", "h2", 10)
    );
    // h1 runs a worker per rx queue of its eth0: the kernel spreads its
    // VXLAN packets over both queues.
    let cfg = lab.write("topo.toml", &cfg);
    let r1 = lab.start(&cfg, "h1", &h1);
    lab.wait_ready(&[r1]);

    for (c, k) in [(&d1, &k42), (&b1, &k43)] {
        lab.ping(c, "198.19.2.2");
        lab.ping(k, "198.19.1.2");
        lab.ping(c, "2001:2:0:2::2");
        lab.ping(k, "2001:2:0:1::2");
    }
    lab.exchange("udp", &k42, &d1, "198.19.2.2", 7501, 1200);
    lab.exchange("udp", &d1, &k42, "198.19.1.2", 7502, 1200);
    lab.exchange("udp", &k43, &b1, "198.19.2.2", 7503, 1200);
    lab.exchange("udp", &b1, &k43, "198.19.1.2", 7504, 1200);
    lab.exchange("tcp", &k42, &d1, "198.19.2.2", 7505, 200_000);
    lab.exchange("tcp", &b1, &k43, "198.19.1.2", 7506, 200_000);

    let rx_packets = |lab: &Lab, k: &str, dev: &str| -> u64 {
        let out = lab.ip(k, &["-s", "-j", "link", "show", dev]);
        let v: Value = serde_json::from_str(&out).expect("ip -j output");
        v[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .expect("rx packets")
    };
    let before = [
        rx_packets(&lab, &k42, "vx42"),
        rx_packets(&lab, &k43, "vx43"),
    ];
    let k_addrs: &[&str] = &["198.19.2.2", "2001:2:0:2::2"];
    let h1_addrs: &[&str] = &["198.19.1.2", "2001:2:0:1::2"];
    tagged_round(
        &lab,
        &[
            (d1.as_str(), "default-from-h1", k_addrs, k42.as_str()),
            (b1.as_str(), "blue-from-h1", k_addrs, k43.as_str()),
            (k42.as_str(), "default-from-kernel", h1_addrs, d1.as_str()),
            (k43.as_str(), "blue-from-kernel", h1_addrs, b1.as_str()),
        ],
    );
    // Each kernel device received at least its own network's datagrams
    // (and, at most, what the other network's did not send it: the
    // receivers above saw nothing foreign).
    let after = [
        rx_packets(&lab, &k42, "vx42"),
        rx_packets(&lab, &k43, "vx43"),
    ];
    for i in 0..2 {
        assert!(
            after[i] - before[i] >= (BURST * k_addrs.len()) as u64,
            "kernel device {} received {} packets during the round, fewer than were sent to it",
            ["vx42", "vx43"][i],
            after[i] - before[i]
        );
    }

    let s = lab.wait_stats(r1, "forwarded > 200", |s| forwarded(s) > 200);
    assert_clean("h1", &s);
    for (name, (rx, tx)) in port_counts(&s) {
        assert!(rx > 0 && tx > 0, "h1: port {name} idle: {s:#}");
    }
    eprintln!("vnt2: h1 ports {:?}", port_counts(&s));

    // VNI 44 is no network's: its frames are dropped and counted by name,
    // and nothing answers.
    lab.ping_fails(&k44, "198.19.1.2");
    lab.ping_fails(&k44, "2001:2:0:1::2");
    let s = lab.wait_stats(r1, "VNI 44 refused", |s| {
        s["drops"]["vxlan_unknown_vni"].as_u64() >= Some(4)
    });
    eprintln!("vnt2: after VNI 44: drops {}", s["drops"]);
}

/// The MTU of the container's device in `ns` (its one device besides lo).
fn container_mtu(lab: &Lab, ns: &str) -> u64 {
    let out = lab.ip(ns, &["-j", "link", "show"]);
    let v: Value = serde_json::from_str(&out).expect("ip -j output");
    let devs: Vec<&Value> = v
        .as_array()
        .expect("link list")
        .iter()
        .filter(|d| d["ifname"] != "lo")
        .collect();
    assert_eq!(devs.len(), 1, "{ns}: not one device besides lo: {out}");
    devs[0]["mtu"].as_u64().expect("mtu")
}

/// Each network has its own MTU: blue's is 1400, the default network's
/// 1450. A blue port's 1400-byte packet goes out, a 1401-byte one is
/// refused with fragmentation needed naming 1400 (by the router, from
/// blue's gateway, or by the container's own kernel once it knows); the
/// default network's port carries 1450 bytes. The container devices are
/// made with their network's MTU, so blue's containers never send what
/// the router must refuse.
#[test]
fn each_network_has_its_own_mtu() {
    require_root!();
    let mut lab = Lab::new("vnt3");
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let d1 = lab.adopt("d1");
    let b1 = lab.adopt("b1");
    let b2 = lab.adopt("b2");
    let d2 = lab.adopt("d2");
    let blue = BLUE.replacen("vni = 43\n", "vni = 43\nmtu = 1400\n", 1);
    assert_ne!(blue, BLUE);
    let cfg = format!(
        "{OVERLAY}{blue}{}{}{}",
        host(
            "h1",
            1,
            H1_VTEP,
            "0",
            &[
                net_port("d1", "tun", &d1, 1, 2, false),
                net_port("b1", "veth", &b1, 1, 2, true),
            ]
            .concat()
        ),
        host(
            "h2",
            2,
            H2_VTEP,
            "1",
            &[
                net_port("d2", "veth", &d2, 2, 2, false),
                net_port("b2", "tun", &b2, 2, 2, true),
            ]
            .concat()
        ),
        link("h1", "h2", 10)
    );
    let cfg = lab.write("topo.toml", &cfg);
    let r1 = lab.start(&cfg, "h1", &h1);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[r1, r2]);
    lab.ping(&b1, "198.19.2.2");
    lab.ping(&d1, "198.19.2.2");

    // ICMP echo of `total` bytes (IPv4 header included), DF set.
    let ping_df = |ns: &str, total: usize| {
        let size = (total - 28).to_string();
        lab.exec(
            ns,
            &[
                "ping",
                "-n",
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "2",
                "-M",
                "do",
                "-s",
                &size,
                "198.19.2.2",
            ],
        )
    };
    for (ns, fits) in [(&b1, 1400), (&d1, 1450)] {
        let o = ping_df(ns, fits);
        assert!(
            o.status.success(),
            "{ns}: {fits} bytes with DF lost: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // One byte more than blue carries: refused, naming 1400. The first try
    // may be refused by the router (an ICMP error from blue's gateway), the
    // next by the container's kernel, which learned the path MTU.
    let o = ping_df(&b1, 1401);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !o.status.success(),
        "b1: 1401 bytes with DF went through: {text}"
    );
    assert!(
        text.contains("mtu = 1400") || text.contains("mtu=1400"),
        "b1: the refusal does not name blue's MTU 1400: {text}"
    );
    // The devices: each network's MTU.
    let mtus: Vec<(String, u64)> = [(&d1, 1450), (&d2, 1450), (&b1, 1400), (&b2, 1400)]
        .iter()
        .map(|(ns, _)| (ns.to_string(), container_mtu(&lab, ns)))
        .collect();
    let want: Vec<(String, u64)> = [(&d1, 1450), (&d2, 1450), (&b1, 1400), (&b2, 1400)]
        .iter()
        .map(|(ns, m)| (ns.to_string(), *m))
        .collect();
    assert_eq!(
        mtus, want,
        "container devices do not have their network's MTU (blue's is 1400)"
    );
}
