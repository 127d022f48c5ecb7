//! Topology from etcd, end to end: real routers, a real etcd (Debian's
//! etcd-server, run by the test), records written with etcdctl.
//!
//! etcd runs inside the first host's namespace on its underlay address
//! (198.18.0.1:2379, peers on that namespace's loopback) with a data
//! directory in the lab's temp dir; the other hosts reach it over the
//! underlay, as routers reach a real cluster. Every address is in
//! 198.18.0.0/15 or 2001:2::/48. Needs root, etcd and etcdctl
//! (tools/install-deps): under `CI=true` their absence fails the test,
//! elsewhere it prints `SKIPPED: ...`.
#![cfg(target_os = "linux")]

mod common;
#[macro_use]
mod live_support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use live_support::{host, port, wait_for, Lab, H1_VTEP, H2_VTEP};
use serde_json::Value;

const ENDPOINT: &str = "http://198.18.0.1:2379";

fn prerequisites() -> bool {
    common::require_root("network namespaces, etcd")
        && common::require_tools(&["ip", "nsenter", "ping", "etcd", "etcdctl", "bridge"])
}

/// An etcd server in a lab namespace; killed on drop.
struct Etcd {
    ns: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Etcd {
    fn start(lab: &Lab, ns: &str) -> Etcd {
        let mut e = Etcd {
            ns: ns.to_owned(),
            dir: lab.dir.path().join("etcd"),
            child: None,
        };
        e.run();
        e
    }

    fn run(&mut self) {
        let log = std::fs::File::create(self.dir.with_extension("log")).expect("etcd log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "etcd",
                "--name",
                "lab",
                "--data-dir",
            ])
            .arg(&self.dir)
            .args([
                "--listen-client-urls",
                ENDPOINT,
                "--advertise-client-urls",
                ENDPOINT,
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-cluster",
                "lab=http://127.0.0.1:2380",
                "--log-level",
                "warn",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawning etcd");
        self.child = Some(child);
        wait_for(Duration::from_secs(20), "etcd to answer", || {
            self.try_ctl(&["endpoint", "health"]).map(|_| ())
        });
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn try_ctl(&self, args: &[&str]) -> Option<String> {
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "etcdctl",
                "--endpoints",
                ENDPOINT,
                "--dial-timeout",
                "2s",
            ])
            .args(args)
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::null())
            .output()
            .expect("spawning etcdctl");
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn ctl(&self, args: &[&str]) -> String {
        self.try_ctl(args)
            .unwrap_or_else(|| panic!("etcdctl {args:?} failed"))
    }

    fn put(&self, key: &str, value: &str) {
        self.ctl(&["put", key, value]);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn store(extra: &str) -> String {
    format!("\n[store]\nendpoints = [\"{ENDPOINT}\"]\n{extra}\n")
}

fn store_hosts(s: &Value) -> u64 {
    s["store"]["hosts"].as_u64().unwrap_or(0)
}

fn rejected(s: &Value, reason: &str) -> u64 {
    s["store"]["rejected"][reason].as_u64().unwrap_or(0)
}

/// Two hosts (namespaces `h1`, `h2` of `lab`, etcd in h1's) whose
/// routers know each other only through etcd: each file names its own host
/// only, with one container port (c1 a TUN, c2 of kind `c2_kind`), and no
/// `[[links]]`. Returns etcd, the routers and the container namespaces,
/// once each router has the other from the store and resolved it.
fn store_pair(
    lab: &mut Lab,
    store_extra: &str,
    c2_kind: &str,
) -> (Etcd, usize, usize, String, String) {
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let c1 = lab.adopt("c1");
    let c2 = lab.adopt("c2");
    let etcd = Etcd::start(lab, &h1);
    let file = |name: &str, n: u8, vtep: &str, workers: &str, port_text: String| {
        format!(
            "[overlay]\nvni = 42\n{}{}",
            store(store_extra),
            host(name, n, vtep, workers, &port_text)
        )
    };
    let cfg1 = lab.write(
        "h1.toml",
        &file(
            "h1",
            1,
            H1_VTEP,
            "0",
            port("c1", "tun", &c1, "198.19.1.2", "2001:2:0:1::2"),
        ),
    );
    let cfg2 = lab.write(
        "h2.toml",
        &file(
            "h2",
            2,
            H2_VTEP,
            "1",
            port("c2", c2_kind, &c2, "198.19.2.2", "2001:2:0:2::2"),
        ),
    );
    let r1 = lab.start(&cfg1, "h1", &h1);
    let r2 = lab.start(&cfg2, "h2", &h2);
    lab.wait_stats(r1, "h2 from the store", |s| store_hosts(s) == 1);
    lab.wait_stats(r2, "h1 from the store", |s| store_hosts(s) == 1);
    lab.wait_ready(&[r1, r2]);
    (etcd, r1, r2, c1, c2)
}

/// Two routers that know each other only through etcd (no `[[links]]`,
/// each file names its own host only); a third host written by an
/// operator joins; bad records are left out and counted; a router that
/// dies leaves the others' routes when its lease runs out and comes back
/// when it starts again.
#[test]
fn hosts_join_and_leave_through_etcd() {
    if !prerequisites() {
        return;
    }
    let mut lab = Lab::new("etcdj");
    let (etcd, r1, r2, c1, c2) = store_pair(&mut lab, "lease_ttl_s = 2", "veth");
    lab.ping(&c1, "198.19.2.2");
    lab.ping(&c2, "198.19.1.2");
    lab.ping(&c1, "2001:2:0:2::2");
    // Each router's record, as an operator reads it.
    let rec: Value = serde_json::from_str(
        etcd.ctl(&["get", "--print-value-only", "/vxrouter/network/hosts/h2"])
            .trim(),
    )
    .expect("h2's record is JSON");
    assert_eq!(rec["underlay"], "198.18.0.2");
    assert_eq!(rec["vtep_mac"], H2_VTEP);

    // An operator's host joins.
    etcd.put(
        "/vxrouter/network/hosts/h3",
        r#"{"name":"h3","underlay":"198.18.0.3","vtep_mac":"02:00:c6:13:03:00","subnets":["198.19.3.0/24"],"vni":42}"#,
    );
    lab.wait_stats(r1, "h3 from the store", |s| store_hosts(s) == 2);
    // Bad records: each left out with its reason, nothing else changes.
    for (k, v) in [
        ("hosts/b1", "{not json".to_owned()),
        (
            "hosts/b2",
            r#"{"name":"b2","underlay":"198.18.0.9","vtep_mac":"02:00:c6:13:09:00","subnets":["198.19.2.128/25"],"vni":42}"#.to_owned(),
        ),
        (
            "hosts/b3",
            r#"{"name":"b3","underlay":"127.0.0.1","vtep_mac":"02:00:c6:13:0a:00","subnets":["198.19.10.0/24"],"vni":42}"#.to_owned(),
        ),
        (
            "hosts/b4",
            r#"{"name":"b4","underlay":"198.18.0.11","vtep_mac":"02:00:c6:13:0b:00","subnets":["198.19.11.0/24"],"vni":7}"#.to_owned(),
        ),
        ("links/l1", r#"{"a":"h1","b":"nobody"}"#.to_owned()),
    ] {
        etcd.put(&format!("/vxrouter/network/{k}"), &v);
    }
    let s = lab.wait_stats(r1, "the bad records counted", |s| {
        rejected(s, "not_json") == 1
            && rejected(s, "overlap") == 1
            && rejected(s, "bad_address") == 1
            && rejected(s, "foreign_vni") == 1
            && rejected(s, "bad_link") == 1
    });
    assert_eq!(store_hosts(&s), 2, "{s}");
    // A link record turns the implied mesh off; its removal turns it on.
    // The bad records go too: b2 would take h2's subnet once h2 is gone.
    etcd.ctl(&["del", "/vxrouter/network/links/l1"]);
    etcd.ctl(&["del", "--prefix", "/vxrouter/network/hosts/b"]);
    lab.wait_stats(r1, "the bad records gone", |s| {
        s["store"]["rejected"]
            .as_object()
            .is_some_and(|m| m.is_empty())
    });
    lab.ping(&c1, "198.19.2.2");
    lab.assert_alive(r1);
    lab.assert_alive(r2);

    // h2's router stops answering (SIGSTOP: a crash or a partition as
    // etcd sees it); its lease (2 s) runs out; h1 routes without it.
    lab.signal(r2, "STOP");
    lab.wait_stats(r1, "h2 gone with its lease", |s| store_hosts(s) == 1);
    assert!(
        etcd.ctl(&["get", "--print-value-only", "/vxrouter/network/hosts/h2"])
            .trim()
            .is_empty(),
        "h2's record outlived its lease"
    );
    lab.ping_fails(&c1, "198.19.2.2");
    // It comes back: a new lease, the same record, the same routes.
    lab.signal(r2, "CONT");
    lab.wait_stats(r1, "h2 back", |s| store_hosts(s) == 2);
    lab.wait_stats(r2, "h2 reconnected", |s| s["store"]["connected"] == true);
    lab.ping(&c1, "198.19.2.2");
    lab.ping(&c2, "198.19.1.2");
}

/// etcd stops and starts again while two routers forward: no packet of a
/// running stream is lost, the routers count the outage and reconnect.
#[test]
fn etcd_restart_loses_no_packet() {
    if !prerequisites() {
        return;
    }
    let mut lab = Lab::new("etcdr");
    let (mut etcd, r1, r2, c1, c2) = store_pair(&mut lab, "", "tun");
    lab.ping(&c1, "198.19.2.2");
    // A bounded stream (100 pings, 50 ms apart: 5 s) across the outage.
    let stream = Command::new("ip")
        .args([
            "netns",
            "exec",
            &c1,
            "ping",
            "-n",
            "-c",
            "100",
            "-i",
            "0.05",
            "-W",
            "1",
            "198.19.2.2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning ping");
    std::thread::sleep(Duration::from_millis(500));
    etcd.kill();
    lab.wait_stats(r2, "the outage seen", |s| s["store"]["connected"] == false);
    std::thread::sleep(Duration::from_millis(1500));
    etcd.run();
    let out = stream.wait_with_output().expect("ping output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("100 received"),
        "packets lost across the etcd restart:\n{text}"
    );
    for r in [r1, r2] {
        let s = lab.wait_stats(r, "reconnected", |s| s["store"]["connected"] == true);
        assert!(s["store"]["outages"].as_u64().unwrap_or(0) >= 1, "{s}");
        assert_eq!(store_hosts(&s), 1, "{s}");
    }
    lab.ping(&c2, "198.19.1.2");
}

/// A router cut off from etcd while records change and the store is
/// compacted past its watch lists again when it is back, and takes the
/// changes.
#[test]
fn a_watch_behind_a_compaction_lists_again() {
    if !prerequisites() {
        return;
    }
    let mut lab = Lab::new("etcdc");
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let etcd = Etcd::start(&lab, &h1);
    let overlay = "[overlay]\nvni = 42\n";
    let cfg2 = lab.write(
        "h2.toml",
        &format!(
            "{overlay}{}{}",
            store("lease_ttl_s = 30"),
            host("h2", 2, H2_VTEP, "0", "")
        ),
    );
    let r2 = lab.start(&cfg2, "h2", &h2);
    lab.wait_stats(r2, "connected", |s| s["store"]["connected"] == true);
    // Cut h2 off (its underlay down), change records, compact.
    lab.ip(&h2, &["link", "set", "eth0", "down"]);
    lab.wait_stats(r2, "the outage seen", |s| s["store"]["connected"] == false);
    for i in 3..8 {
        etcd.put(
            &format!("/vxrouter/network/hosts/x{i}"),
            &format!(
                r#"{{"name":"x{i}","underlay":"198.18.0.{i}","vtep_mac":"02:00:c6:13:0{i}:00","subnets":["198.19.{i}.0/24"],"vni":42}}"#
            ),
        );
    }
    etcd.ctl(&["del", "/vxrouter/network/hosts/x3"]);
    let status = etcd.ctl(&["endpoint", "status", "--write-out", "json"]);
    let rev = serde_json::from_str::<Value>(&status).expect("status JSON")[0]["Status"]["header"]
        ["revision"]
        .as_i64()
        .expect("revision");
    etcd.ctl(&["compaction", &rev.to_string()]);
    lab.ip(&h2, &["link", "set", "eth0", "up"]);
    let s = lab.wait_stats(r2, "the changes after the compaction", |s| {
        s["store"]["connected"] == true && store_hosts(s) == 4
    });
    assert!(s["store"]["compactions"].as_u64().unwrap_or(0) >= 1, "{s}");
}

/// Many routers starting at once never lease the same subnet: 50 store
/// clients (the router's own) race for /24s of one /16.
#[test]
fn fifty_hosts_racing_for_subnets_get_distinct_ones() {
    if !prerequisites() {
        return;
    }
    use vxrouter::store::etcd::{Event, Own, StoreHandle};
    let mut lab = Lab::new("etcda");
    let (h1, _h2) = lab.two_hosts("h1", "h2");
    let _etcd = Etcd::start(&lab, &h1);
    let text = format!(
        "[overlay]\nvni = 42\n{}\n[[hosts]]\nname = \"h1\"\nunderlay = \"198.18.0.1\"\n",
        store("network = \"198.19.0.0/16\"\nsubnet_len = 24")
    );
    let cfg = vxrouter::config::parse(&text, "race.toml")
        .expect("topology")
        .store
        .expect("[store]");
    // The clients run in h1's namespace, where etcd listens.
    let subnets: Vec<String> = common::run_in(&h1, move || {
        let handles: Vec<StoreHandle> = (0..50u8)
            .map(|i| {
                StoreHandle::start(
                    cfg.clone(),
                    Own {
                        name: format!("n{i}"),
                        underlay: format!("198.18.1.{}", i + 1).parse().unwrap(),
                        vtep_mac: format!("02:00:c6:14:00:{:02x}", i + 1).parse().unwrap(),
                        vni: 42,
                        udp_port: 4789,
                        subnets: Vec::new(),
                        previous: Vec::new(),
                        reserved: Vec::new(),
                        networks: Default::default(),
                        previous_networks: Default::default(),
                    },
                )
                .expect("store thread")
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        for h in &handles {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match h.events.recv_timeout(left) {
                    Ok(Event::Subnets(s)) => {
                        got.push(s[0].to_string());
                        break;
                    }
                    Ok(Event::Fatal(m)) => panic!("{m}"),
                    Ok(Event::View(_) | Event::NetworkSubnets(_)) => {}
                    Err(e) => panic!("no subnet in 30 s: {e}"),
                }
            }
        }
        for h in handles {
            h.stop();
        }
        got
    });
    let mut sorted = subnets.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 50, "duplicate subnets: {subnets:?}");
}

/// flannel's layout, both ways: h2 is a kernel VXLAN host set up exactly
/// as flanneld's vxlan backend sets one up from the leases (flannel.1 on
/// UDP 8472, an onlink route via each remote subnet's network address, a
/// permanent neighbour entry with the remote VtepMAC, an FDB entry to its
/// PublicIP), its lease written with etcdctl; h1 is a vxrouter in the
/// flannel layout that leases its subnet there.
#[test]
fn flannel_layout_interoperates_with_a_kernel_vxlan_host() {
    if !prerequisites() {
        return;
    }
    let mut lab = Lab::new("etcdf");
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let c1 = lab.adopt("c1");
    let c2 = lab.ns("c2");
    let etcd = Etcd::start(&lab, &h1);
    let net = "/coreos.com/network";
    etcd.put(
        &format!("{net}/config"),
        r#"{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"}}"#,
    );
    // h2, as flanneld leaves it: flannel.1 and the cni0 side.
    let h2_vtep = "9a:00:c6:13:02:00";
    lab.ip(
        &h2,
        &[
            "link",
            "add",
            "flannel.1",
            "address",
            h2_vtep,
            "type",
            "vxlan",
            "id",
            "1",
            "local",
            "198.18.0.2",
            "dev",
            "eth0",
            "dstport",
            "8472",
            "nolearning",
        ],
    );
    lab.ip(&h2, &["link", "set", "flannel.1", "mtu", "1450", "up"]);
    lab.ip(&h2, &["addr", "add", "198.19.2.0/32", "dev", "flannel.1"]);
    lab.veth(
        &h2,
        "cni0",
        "02:00:c6:13:02:01",
        &c2,
        "eth0",
        "02:00:c6:13:02:02",
    );
    lab.ip(&h2, &["addr", "add", "198.19.2.1/24", "dev", "cni0"]);
    lab.ip(&c2, &["addr", "add", "198.19.2.2/24", "dev", "eth0"]);
    lab.ip(&c2, &["link", "set", "eth0", "mtu", "1450"]);
    lab.ip(&c2, &["route", "add", "default", "via", "198.19.2.1"]);
    lab.exec_ok(&h2, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    etcd.put(
        &format!("{net}/subnets/198.19.2.0-24"),
        &format!(r#"{{"PublicIP":"198.18.0.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{h2_vtep}"}}}}"#),
    );
    // h1: vxrouter, flannel layout, subnet 198.19.1.0/24 wanted.
    let cfg1 = lab.write(
        "h1.toml",
        &format!(
            "[overlay]\nvni = 1\nudp_port = 8472\nmtu = 1450\n{}\n[[hosts]]\nname = \"h1\"\nunderlay = \"198.18.0.1\"\nvtep_mac = \"{H1_VTEP}\"\nsubnets = [\"198.19.1.0/24\"]\nnic = \"eth0\"\nworkers = [0]\n  [[hosts.ports]]\n  name = \"c1\"\n  kind = \"veth\"\n  netns = \"{c1}\"\n  addresses = [\"198.19.1.2/32\"]\n",
            store("layout = \"flannel\"\nlease_ttl_s = 5")
        ),
    );
    // The kernel's sender leaves UDP checksums partial on a veth; the
    // AF_XDP receiver needs them complete.
    lab.exec_ok(&h2, &["ethtool", "-K", "eth0", "tx", "off"]);
    let r1 = lab.start(&cfg1, "h1", &h1);
    lab.wait_stats(r1, "h2's lease", |s| store_hosts(s) == 1);
    // h1's lease, as flanneld on h2 reads it.
    let lease: Value = serde_json::from_str(
        etcd.ctl(&[
            "get",
            "--print-value-only",
            &format!("{net}/subnets/198.19.1.0-24"),
        ])
        .trim(),
    )
    .expect("h1's lease is JSON");
    assert_eq!(lease["PublicIP"], "198.18.0.1");
    assert_eq!(lease["BackendType"], "vxlan");
    let mac = lease["BackendData"]["VtepMAC"]
        .as_str()
        .expect("VtepMAC")
        .to_owned();
    assert_eq!(mac, H1_VTEP);
    lab.ip(
        &h2,
        &[
            "route",
            "add",
            "198.19.1.0/24",
            "via",
            "198.19.1.0",
            "dev",
            "flannel.1",
            "onlink",
        ],
    );
    lab.ip(
        &h2,
        &[
            "neigh",
            "add",
            "198.19.1.0",
            "lladdr",
            &mac,
            "dev",
            "flannel.1",
            "nud",
            "permanent",
        ],
    );
    common::sh(&[
        "bridge",
        "-n",
        &h2,
        "fdb",
        "add",
        &mac,
        "dev",
        "flannel.1",
        "dst",
        "198.18.0.1",
        "self",
        "permanent",
    ]);
    lab.wait_ready(&[r1]);
    lab.ping(&c1, "198.19.2.2");
    lab.ping(&c2, "198.19.1.2");
}

/// Two networks (the default one and "blue") on routers that know each
/// other only through etcd: each publishes its blue subnet in its record's
/// `networks`, the other routes to it in blue (and not in the default
/// network), and an operator's host whose blue subnet changes is a route
/// change like any other.
#[test]
fn network_subnets_travel_through_etcd() {
    if !prerequisites() {
        return;
    }
    let mut lab = Lab::new("etcdn");
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let c1 = lab.adopt("c1");
    let b1 = lab.adopt("b1");
    let b2 = lab.adopt("b2");
    let etcd = Etcd::start(&lab, &h1);
    // Each file names its own host only, and its own subnet in blue.
    let file = |name: &str, n: u8, vtep: &str, workers: &str, ports: String| {
        format!(
            "[overlay]\nvni = 42\n[[networks]]\nname = \"blue\"\nvni = 43\n[networks.subnets]\n{name} = [\"198.19.10{n}.0/24\"]\n{}{}",
            store(""),
            host(name, n, vtep, workers, &ports)
        )
    };
    let blue_port = |name: &str, ns: &str, n: u8| {
        format!(
            "\n  [[hosts.ports]]\n  name = \"{name}\"\n  kind = \"tun\"\n  netns = \"{ns}\"\n  network = \"blue\"\n  addresses = [\"198.19.10{n}.2/32\"]\n"
        )
    };
    let cfg1 = lab.write(
        "h1.toml",
        &file(
            "h1",
            1,
            H1_VTEP,
            "0",
            port("c1", "tun", &c1, "198.19.1.2", "2001:2:0:1::2") + &blue_port("b1", &b1, 1),
        ),
    );
    let text2 = file("h2", 2, H2_VTEP, "1", blue_port("b2", &b2, 2));
    let cfg2 = lab.write("h2.toml", &text2);
    let r1 = lab.start(&cfg1, "h1", &h1);
    let r2 = lab.start(&cfg2, "h2", &h2);
    lab.wait_stats(r1, "h2 from the store", |s| store_hosts(s) == 1);
    lab.wait_stats(r2, "h1 from the store", |s| store_hosts(s) == 1);
    lab.wait_ready(&[r1, r2]);
    let rec: Value = serde_json::from_str(
        etcd.ctl(&["get", "--print-value-only", "/vxrouter/network/hosts/h2"])
            .trim(),
    )
    .expect("h2's record is JSON");
    assert_eq!(
        rec["networks"],
        serde_json::json!({"blue": {"vni": 43, "subnets": ["198.19.102.0/24"]}}),
        "{rec}"
    );
    lab.ping(&b1, "198.19.102.2");
    lab.ping(&b2, "198.19.101.2");
    // Blue's subnets are not the default network's.
    lab.ping_fails(&c1, "198.19.102.2");

    // An operator's host in blue, then its blue subnet moved: each a
    // route change, no record left out, blue between h1 and h2 intact.
    let h3 = |blue: &str| {
        format!(
            r#"{{"name":"h3","underlay":"198.18.0.3","vtep_mac":"02:00:c6:13:03:00","subnets":["198.19.3.0/24"],"vni":42,"networks":{{"blue":{{"vni":43,"subnets":["{blue}"]}},"red":{{"vni":44,"subnets":["198.19.102.0/24"]}}}}}}"#
        )
    };
    etcd.put("/vxrouter/network/hosts/h3", &h3("198.19.103.0/24"));
    let s = lab.wait_stats(r1, "h3 from the store", |s| store_hosts(s) == 2);
    let applied = s["store"]["views_applied"].as_u64().unwrap_or(0);
    etcd.put("/vxrouter/network/hosts/h3", &h3("198.19.104.0/24"));
    let s = lab.wait_stats(r1, "h3's new blue subnet", |s| {
        s["store"]["views_applied"].as_u64().unwrap_or(0) > applied
    });
    assert_eq!(store_hosts(&s), 2, "{s}");
    assert!(
        s["store"]["rejected"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "{s}"
    );
    // Overlapping h2's blue subnet: left out.
    etcd.put(
        "/vxrouter/network/hosts/h4",
        r#"{"name":"h4","underlay":"198.18.0.4","vtep_mac":"02:00:c6:13:04:00","subnets":["198.19.4.0/24"],"vni":42,"networks":{"blue":["198.19.102.128/25"]}}"#,
    );
    lab.wait_stats(r1, "h4 left out", |s| rejected(s, "overlap") == 1);
    assert!(lab.log(r1).contains("networks this router does not carry"));
    lab.ping(&b1, "198.19.102.2");
    // A blue under another VNI is another network: h5 is kept, its blue
    // subnet (here h2's) is not routed in blue, which still reaches h2.
    etcd.put(
        "/vxrouter/network/hosts/h5",
        r#"{"name":"h5","underlay":"198.18.0.5","vtep_mac":"02:00:c6:13:05:00","subnets":["198.19.5.0/24"],"vni":42,"networks":{"blue":{"vni":45,"subnets":["198.19.102.0/24"]}}}"#,
    );
    lab.wait_stats(r1, "h5 kept without its blue", |s| {
        store_hosts(s) == 3 && s["store"]["hosts_unknown_networks"] == 2
    });
    assert!(
        lab.log(r1).contains("blue (VNI 45 there, 43 here)"),
        "{}",
        lab.log(r1)
    );
    assert_eq!(rejected(&lab.stats(r1), "overlap"), 1);
    lab.ping(&b1, "198.19.102.2");

    // h2 gains a blue subnet by a reload: its record carries it, h1 takes
    // it as a route change.
    let s = lab.stats(r1);
    let applied = s["store"]["views_applied"].as_u64().unwrap_or(0);
    lab.write(
        "h2.toml",
        &text2.replace(
            "h2 = [\"198.19.102.0/24\"]",
            "h2 = [\"198.19.102.0/24\", \"198.19.112.0/24\"]",
        ),
    );
    lab.signal(r2, "HUP");
    wait_for(
        Duration::from_secs(10),
        "h2's record with its new subnet",
        || {
            let rec: Value = serde_json::from_str(
                etcd.ctl(&["get", "--print-value-only", "/vxrouter/network/hosts/h2"])
                    .trim(),
            )
            .ok()?;
            (rec["networks"]
                == serde_json::json!({"blue": {"vni": 43, "subnets": ["198.19.102.0/24", "198.19.112.0/24"]}}))
                .then_some(())
        },
    );
    lab.wait_stats(r1, "h2's new blue subnet", |s| {
        s["store"]["views_applied"].as_u64().unwrap_or(0) > applied
    });
    lab.ping(&b1, "198.19.102.2");
    lab.assert_alive(r1);
    lab.assert_alive(r2);
}

/// A host without subnets leases one, keeps it across a restart, and
/// starts from its cached view (same subnet, same peers) while etcd is
/// down, reconnecting once it is back.
#[test]
fn a_leased_subnet_survives_restarts_and_a_start_without_etcd() {
    if !prerequisites() {
        return;
    }
    let mut lab = Lab::new("etcds");
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let mut etcd = Etcd::start(&lab, &h1);
    etcd.put(
        "/vxrouter/network/hosts/p9",
        r#"{"name":"p9","underlay":"198.18.0.9","vtep_mac":"02:00:c6:13:09:00","subnets":["198.19.9.0/24"],"vni":42}"#,
    );
    let cfg = lab.write(
        "h2.toml",
        &format!(
            "[overlay]\nvni = 42\n{}\n[[hosts]]\nname = \"h2\"\nunderlay = \"198.18.0.2\"\nvtep_mac = \"{H2_VTEP}\"\nnic = \"eth0\"\nworkers = [0]\n",
            store("network = \"198.19.0.0/16\"\nsubnet_len = 24\nconnect_timeout_ms = 1500")
        ),
    );
    let subnets = |s: &Value| s["store"]["subnets"].clone();
    let r = lab.start(&cfg, "h2", &h2);
    let s = lab.wait_stats(r, "a leased subnet and p9", |s| store_hosts(s) == 1);
    let leased = subnets(&s);
    let net = leased[0].as_str().expect("a subnet").to_owned();
    assert!(net.starts_with("198.19.") && net.ends_with("/24"), "{s}");
    let key = format!("/vxrouter/network/subnets/{}", net.replace('/', "-"));
    assert!(etcd
        .ctl(&["get", "--print-value-only", &key])
        .contains("\"h2\""));
    // A restart (within the lease's TTL) keeps it.
    lab.stop(r);
    let r = lab.start(&cfg, "h2", &h2);
    let s = lab.wait_stats(r, "connected again", |s| s["store"]["connected"] == true);
    assert_eq!(subnets(&s), leased, "{s}");
    // etcd down: the next start takes the cached view.
    lab.stop(r);
    etcd.kill();
    let r = lab.start(&cfg, "h2", &h2);
    let s = lab.wait_stats(r, "a start from the cache", |s| store_hosts(s) == 1);
    assert_eq!(subnets(&s), leased, "{s}");
    assert_eq!(s["store"]["connected"], false, "{s}");
    assert!(lab.log(r).contains("starting from the cached view"));
    etcd.run();
    let s = lab.wait_stats(r, "reconnected", |s| s["store"]["connected"] == true);
    assert_eq!(subnets(&s), leased, "{s}");
    assert!(etcd
        .ctl(&["get", "--print-value-only", &key])
        .contains("\"h2\""));
}

/// The subnet host `r`'s router leased in network `net`, from its stats.
fn leased_in(s: &Value, net: &str) -> Option<String> {
    s["store"]["network_subnets"][net]
        .as_str()
        .map(str::to_owned)
}

/// `subnet`'s host address `n` with the subnet's length (`198.19.7.0/24`,
/// 5: `198.19.7.5/24`; `2001:2:0:101::/64`, 2: `2001:2:0:101::2/64`).
fn address_in(subnet: &str, n: u32) -> String {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let net: ipnet::IpNet = subnet.parse().expect("a subnet");
    let a: IpAddr = match net {
        ipnet::IpNet::V4(v4) => Ipv4Addr::from(u32::from(v4.network()) + n).into(),
        ipnet::IpNet::V6(v6) => Ipv6Addr::from(u128::from(v6.network()) + u128::from(n)).into(),
    };
    format!("{a}/{}", net.prefix_len())
}

/// A container attached over `host`'s control socket in network `net`.
fn attach_in(lab: &Lab, host: &str, id: &str, ns: &str, net: &str, address: &str) {
    use vxrouter::api::{self, client, Request};
    let req = Request::Attach(api::Attach {
        id: id.into(),
        netns: common::netns_path(ns),
        ifname: "eth0".into(),
        kind: vxrouter::config::PortKind::Tun,
        addresses: vec![address.parse().expect("an address")],
        offload: false,
        network: Some(net.into()),
    });
    client::call(&lab.socket_path(host), &req, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("attach {id} on {host}: {e}"));
}

/// Networks other than the default one lease their subnets too: two
/// routers whose files give them subnets in the default network only,
/// and a range for "blue" (the same addresses as the default network's:
/// networks' address spaces overlap), each lease a blue subnet under
/// `networks/blue/subnets/`, publish it in their records, hand it to the
/// containers attached in blue, which reach each other; the leases
/// survive a restart; a reload that removes the range while a container
/// uses the subnet is refused, one after it left releases the lease, and
/// one that brings the range back leases again. Bad and foreign lease
/// records are counted.
#[test]
fn network_subnets_are_leased_per_network() {
    if !prerequisites() {
        return;
    }
    let mut lab = Lab::new("etcdl");
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let b1 = lab.ns("b1");
    let b2 = lab.ns("b2");
    let etcd = Etcd::start(&lab, &h1);
    let blue = "[[networks]]\nname = \"blue\"\nvni = 43\nlease_network = \"198.19.0.0/16\"\n";
    let file = |name: &str, n: u8, vtep: &str, workers: &str, blue: &str| {
        format!(
            "[overlay]\nvni = 42\n{blue}{}{}",
            store("lease_ttl_s = 5"),
            host(name, n, vtep, workers, "")
        )
    };
    let text1 = file("h1", 1, H1_VTEP, "0", blue);
    let cfg1 = lab.write("h1.toml", &text1);
    let cfg2 = lab.write("h2.toml", &file("h2", 2, H2_VTEP, "1", blue));
    let r1 = lab.start(&cfg1, "h1", &h1);
    let r2 = lab.start(&cfg2, "h2", &h2);
    let s1 = lab.wait_stats(r1, "h2 and a blue subnet", |s| {
        store_hosts(s) == 1 && leased_in(s, "blue").is_some()
    });
    let s2 = lab.wait_stats(r2, "h1 and a blue subnet", |s| {
        store_hosts(s) == 1 && leased_in(s, "blue").is_some()
    });
    lab.wait_ready(&[r1, r2]);
    let (l1, l2) = (
        leased_in(&s1, "blue").unwrap(),
        leased_in(&s2, "blue").unwrap(),
    );
    assert_ne!(l1, l2, "two hosts hold one blue subnet");
    let key = |l: &str| {
        format!(
            "/vxrouter/network/networks/blue/subnets/{}",
            l.replace('/', "-")
        )
    };
    for (l, h) in [(&l1, "h1"), (&l2, "h2")] {
        let v = etcd.ctl(&["get", "--print-value-only", &key(l)]);
        assert_eq!(v.trim(), format!(r#"{{"host":"{h}"}}"#), "{l}");
    }
    // The default network's leases are untouched (its subnets are the
    // file's), and each record carries its blue subnet with blue's VNI.
    assert!(etcd
        .ctl(&[
            "get",
            "--prefix",
            "--keys-only",
            "/vxrouter/network/subnets/"
        ])
        .trim()
        .is_empty());
    let record = |h: &str| -> Value {
        serde_json::from_str(
            etcd.ctl(&[
                "get",
                "--print-value-only",
                &format!("/vxrouter/network/hosts/{h}"),
            ])
            .trim(),
        )
        .expect("a record")
    };
    assert_eq!(
        record("h2")["networks"],
        serde_json::json!({"blue": {"vni": 43, "subnets": [l2]}})
    );
    // Containers in blue, addressed from the leased subnets.
    let (a1, a2) = (address_in(&l1, 2), address_in(&l2, 2));
    attach_in(&lab, "h1", "l/b1/eth0", &b1, "blue", &a1);
    attach_in(&lab, "h2", "l/b2/eth0", &b2, "blue", &a2);
    let ip = |a: &str| a.split('/').next().unwrap().to_owned();
    lab.ping(&b1, &ip(&a2));
    lab.ping(&b2, &ip(&a1));

    // Hostile lease records (IPv6 keys, so that none is a leased
    // subnet's): counted, nothing else changes.
    let bad = [
        ("networks/blue/subnets/2001:2:7::1-64", r#"{"host":"x"}"#),
        ("networks/blue/subnets/2001:2:8::-64", "{"),
        ("networks/red/subnets/2001:2:9::-64", r#"{"host":"x"}"#),
    ];
    for (k, v) in bad {
        etcd.put(&format!("/vxrouter/network/{k}"), v);
    }
    lab.wait_stats(r1, "the bad leases counted", |s| {
        rejected(s, "key_mismatch") == 1
            && rejected(s, "not_json") == 1
            && s["store"]["leases_unknown_networks"] == 1
    });
    for (k, _) in bad {
        etcd.ctl(&["del", &format!("/vxrouter/network/{k}")]);
    }
    lab.wait_stats(r1, "the bad leases gone", |s| {
        s["store"]["rejected"]
            .as_object()
            .is_some_and(|m| m.is_empty())
            && s["store"]["leases_unknown_networks"] == 0
    });
    lab.ping(&b1, &ip(&a2));

    // A restart within the TTL keeps h2's blue subnet, and the attached
    // container, taken back, is reached again.
    lab.stop(r2);
    let r2 = lab.start(&cfg2, "h2", &h2);
    let s = lab.wait_stats(r2, "connected again", |s| {
        s["store"]["connected"] == true && store_hosts(s) == 1
    });
    assert_eq!(leased_in(&s, "blue"), Some(l2.clone()), "{s}");
    lab.wait_ready(&[r2]);
    lab.ping(&b1, &ip(&a2));
    lab.ping(&b2, &ip(&a1));
    assert!(etcd
        .ctl(&["get", "--print-value-only", &key(&l2)])
        .contains("\"h2\""));

    // h1 drops blue's range while b1 holds an address of its lease: the
    // reload is refused, the lease kept.
    let no_range = text1.replace("lease_network = \"198.19.0.0/16\"\n", "");
    lab.write("h1.toml", &no_range);
    lab.signal(r1, "HUP");
    wait_for(Duration::from_secs(5), "the reload refused", || {
        lab.log(r1)
            .contains("outside this host's new subnets in network \"blue\"")
            .then_some(())
    });
    assert_eq!(leased_in(&lab.stats(r1), "blue"), Some(l1.clone()));
    lab.ping(&b2, &ip(&a1));
    // Once b1 is gone, the same reload releases the lease.
    use vxrouter::api::{client, Request};
    client::call(
        &lab.socket_path("h1"),
        &Request::Detach {
            id: "l/b1/eth0".into(),
        },
        Duration::from_secs(10),
    )
    .expect("detach b1");
    lab.signal(r1, "HUP");
    lab.wait_stats(r1, "blue's lease released", |s| {
        leased_in(s, "blue").is_none()
    });
    wait_for(Duration::from_secs(5), "h1's lease key gone", || {
        etcd.ctl(&["get", "--print-value-only", &key(&l1)])
            .trim()
            .is_empty()
            .then_some(())
    });
    wait_for(Duration::from_secs(5), "h1's record without blue", || {
        record("h1").get("networks").is_none().then_some(())
    });
    // The range back: leased again, routed at h2 again.
    lab.write("h1.toml", &text1);
    lab.signal(r1, "HUP");
    let s = lab.wait_stats(r1, "a blue subnet again", |s| {
        leased_in(s, "blue").is_some()
    });
    let l1 = leased_in(&s, "blue").unwrap();
    assert_ne!(l1, l2);
    attach_in(&lab, "h1", "l/b1b/eth0", &b1, "blue", &address_in(&l1, 2));
    lab.ping(&b2, &ip(&address_in(&l1, 2)));
    lab.assert_alive(r1);
    lab.assert_alive(r2);
}

/// A host record without a lease (an operator's static peer, p9) holds
/// the subnets h2 would lease first: in the default network (an IPv4
/// range) and in blue (an IPv6 range). h2 leases others in both, h1 and
/// h2 lease distinct blue subnets, every router keeps p9, and containers
/// in blue reach each other over IPv6 through the leased subnets' routes.
#[test]
fn leases_keep_clear_of_static_records_and_an_ipv6_range_is_routed() {
    if !prerequisites() {
        return;
    }
    use vxrouter::store::alloc;
    let mut lab = Lab::new("etcdr");
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let b1 = lab.ns("b1");
    let b2 = lab.ns("b2");
    let etcd = Etcd::start(&lab, &h1);
    let (range4, range6) = ("198.19.0.0/24", "2001:2:0:100::/62");
    // h2's first proposal in each range, with nothing taken.
    let first = |range: &str, len: u8| {
        alloc::candidates(range.parse().unwrap(), len, &[], alloc::seed("h2"))[0].to_string()
    };
    let (p4, p6) = (first(range4, 26), first(range6, 64));
    etcd.put(
        "/vxrouter/network/hosts/p9",
        &format!(
            r#"{{"name":"p9","underlay":"198.18.0.9","vtep_mac":"02:00:c6:13:09:00","subnets":["{p4}"],"vni":42,"networks":{{"blue":{{"vni":43,"subnets":["{p6}"]}}}}}}"#
        ),
    );
    let head = format!(
        "[overlay]\nvni = 42\n[[networks]]\nname = \"blue\"\nvni = 43\nlease_network = \"{range6}\"\nlease_subnet_len = 64\n{}",
        store(&format!("network = \"{range4}\"\nsubnet_len = 26"))
    );
    // h1's default subnets are the file's; h2 leases one.
    let cfg1 = lab.write(
        "h1.toml",
        &format!("{head}{}", host("h1", 1, H1_VTEP, "0", "")),
    );
    let cfg2 = lab.write(
        "h2.toml",
        &format!(
            "{head}\n[[hosts]]\nname = \"h2\"\nunderlay = \"198.18.0.2\"\nvtep_mac = \"{H2_VTEP}\"\nnic = \"eth0\"\nworkers = [1]\n"
        ),
    );
    let r1 = lab.start(&cfg1, "h1", &h1);
    let r2 = lab.start(&cfg2, "h2", &h2);
    let s1 = lab.wait_stats(r1, "h2, p9 and a blue subnet", |s| {
        store_hosts(s) == 2 && leased_in(s, "blue").is_some()
    });
    let s2 = lab.wait_stats(r2, "h1, p9 and a blue subnet", |s| {
        store_hosts(s) == 2 && leased_in(s, "blue").is_some()
    });
    // p9's underlay answers no ARP: the routers never become ready, and
    // the pings below wait for the path to h1 and h2 instead.
    for s in [&s1, &s2] {
        assert!(
            s["store"]["rejected"]
                .as_object()
                .is_some_and(|m| m.is_empty()),
            "{s}"
        );
    }
    let within = |range: &str, subnet: &str| {
        let (r, n): (ipnet::IpNet, ipnet::IpNet) =
            (range.parse().unwrap(), subnet.parse().unwrap());
        r.contains(&n)
    };
    let d2 = s2["store"]["subnets"][0]
        .as_str()
        .expect("a subnet")
        .to_owned();
    assert!(
        within(range4, &d2) && d2 != p4,
        "h2 leased {d2}, p9 holds {p4}"
    );
    let (l1, l2) = (
        leased_in(&s1, "blue").unwrap(),
        leased_in(&s2, "blue").unwrap(),
    );
    for l in [&l1, &l2] {
        assert!(
            within(range6, l) && *l != p6,
            "leased {l} in blue, p9 holds {p6}"
        );
    }
    assert_ne!(l1, l2, "two hosts hold one blue subnet");
    // The default network's only lease key is h2's.
    assert_eq!(
        etcd.ctl(&[
            "get",
            "--prefix",
            "--keys-only",
            "/vxrouter/network/subnets/"
        ])
        .trim(),
        format!("/vxrouter/network/subnets/{}", d2.replace('/', "-"))
    );
    // Containers in blue, addressed from the IPv6 leases.
    let (a1, a2) = (address_in(&l1, 2), address_in(&l2, 2));
    attach_in(&lab, "h1", "r/b1/eth0", &b1, "blue", &a1);
    attach_in(&lab, "h2", "r/b2/eth0", &b2, "blue", &a2);
    let ip = |a: &str| a.split('/').next().unwrap().to_owned();
    lab.ping(&b1, &ip(&a2));
    lab.ping(&b2, &ip(&a1));
    lab.assert_alive(r1);
    lab.assert_alive(r2);
}
