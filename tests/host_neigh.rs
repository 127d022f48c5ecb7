//! Neighbour table, route lookups, resolution and link facts, checked in
//! namespaces of our own: `host-nb1` (where the checks run) and `host-nb2`
//! (the peer), joined by a veth pair, addresses from 198.18.0.0/15 and
//! 2001:2::/48 only.
//!
//! Netlink sockets belong to the namespace that opened them, so the checks
//! run in a child: this same test binary, started under
//! `ip netns exec host-nb1` with only the ignored inner test selected.
#![cfg(target_os = "linux")]

mod common;

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use vxrouter::host::{link::link_info, neigh::NeighbourTable};

const NS: &str = "host-nb1";
const PEER_NS: &str = "host-nb2";
const INNER_ENV: &str = "VXROUTER_HOST_NEIGH_INNER";
const PEER_MAC_ENV: &str = "VXROUTER_HOST_NEIGH_PEER_MAC";

use common::sh;

fn parse_mac(s: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (i, p) in s.split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(p, 16).expect("hex");
    }
    mac
}

#[test]
fn neighbour_table_in_a_namespace() {
    if !common::require_root("network namespaces") {
        return;
    }
    // Deleted whatever happens to the test.
    let _cleanup = [NS, PEER_NS].map(common::Netns::adopt);
    for ns in [NS, PEER_NS] {
        sh(&["ip", "netns", "add", ns]);
    }
    sh(&[
        "ip", "link", "add", "nb-a", "netns", NS, "type", "veth", "peer", "name", "nb-b", "netns",
        PEER_NS,
    ]);
    for (ns, dev, v4, v6) in [
        (NS, "nb-a", "198.18.4.1/24", "2001:2:0:4::1/64"),
        (PEER_NS, "nb-b", "198.18.4.2/24", "2001:2:0:4::2/64"),
    ] {
        sh(&["ip", "-n", ns, "addr", "add", v4, "dev", dev]);
        sh(&["ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }
    sh(&[
        "ip",
        "-n",
        NS,
        "neigh",
        "add",
        "198.18.4.77",
        "lladdr",
        "02:00:c6:12:04:4d",
        "dev",
        "nb-a",
        "nud",
        "permanent",
    ]);
    sh(&[
        "ip",
        "-n",
        NS,
        "neigh",
        "add",
        "2001:2:0:4::77",
        "lladdr",
        "02:00:c6:12:04:4e",
        "dev",
        "nb-a",
        "nud",
        "permanent",
    ]);
    sh(&[
        "ip",
        "-n",
        NS,
        "route",
        "add",
        "198.19.4.0/24",
        "via",
        "198.18.4.2",
    ]);
    sh(&[
        "ip",
        "-n",
        NS,
        "-6",
        "route",
        "add",
        "2001:2:0:44::/64",
        "via",
        "2001:2:0:4::2",
    ]);
    let peer = sh(&["ip", "-n", PEER_NS, "-br", "link", "show", "nb-b"]);
    let peer_mac = peer
        .split_whitespace()
        .nth(2)
        .expect("mac column")
        .to_string();

    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new("ip")
        .args(["netns", "exec", NS])
        .arg(exe)
        .args([
            "--exact",
            "inner_neighbour_checks",
            "--ignored",
            "--nocapture",
        ])
        .env(INNER_ENV, "1")
        .env(PEER_MAC_ENV, &peer_mac)
        .output()
        .expect("spawn inner test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "inner test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits (bounded) until `cond` holds, feeding events into the table.
fn wait_for(t: &mut NeighbourTable, what: &str, cond: impl Fn(&NeighbourTable) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut changed = false;
    while !cond(t) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        let mut pfd = libc::pollfd {
            fd: t.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 100) };
        assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
        changed |= t.process_events().expect("events");
    }
    changed
}

#[test]
#[ignore = "runs inside host-nb1, started by neighbour_table_in_a_namespace"]
fn inner_neighbour_checks() {
    if std::env::var_os(INNER_ENV).is_none() {
        common::skip("runs only inside host-nb1, started by neighbour_table_in_a_namespace");
        return;
    }
    let peer_mac = parse_mac(&std::env::var(PEER_MAC_ENV).expect("peer mac"));
    let ip = |s: &str| -> IpAddr { s.parse().expect("address") };

    let a = link_info("nb-a").expect("link_info nb-a");
    assert_ne!(a.mac, [0; 6]);
    assert_eq!(a.mtu, 1500);
    assert!(a.up);
    assert!(a.num_rx_queues >= 1);

    let mut t = NeighbourTable::open().expect("open");
    assert_eq!(
        t.lookup(ip("198.18.4.77")),
        Some([2, 0, 0xc6, 0x12, 4, 0x4d])
    );
    assert_eq!(
        t.lookup(ip("2001:2:0:4::77")),
        Some([2, 0, 0xc6, 0x12, 4, 0x4e])
    );
    assert!(!t.refresh().expect("refresh"), "nothing changed");

    // Gateways: a peer behind the underlay router resolves to the router.
    let hop = t
        .next_hop_for(ip("198.19.4.5"))
        .expect("route")
        .expect("a route");
    assert_eq!(
        (hop.addr, hop.ifindex, hop.via_gateway),
        (ip("198.18.4.2"), a.index, true)
    );
    let hop = t
        .next_hop_for(ip("198.18.4.2"))
        .expect("route")
        .expect("a route");
    assert_eq!((hop.addr, hop.via_gateway), (ip("198.18.4.2"), false));
    let hop = t
        .next_hop_for(ip("2001:2:0:44::9"))
        .expect("route")
        .expect("a route");
    assert_eq!((hop.addr, hop.via_gateway), (ip("2001:2:0:4::2"), true));
    assert_eq!(t.next_hop_for(ip("198.18.200.1")).expect("route"), None);
    assert_eq!(
        t.next_hop_for(ip("198.18.4.1")).expect("route"),
        None,
        "own address"
    );

    // Resolution: the kernel asks, the answer arrives as an event.
    for (i, peer) in ["198.18.4.2", "2001:2:0:4::2"].into_iter().enumerate() {
        assert_eq!(t.lookup(ip(peer)), None);
        if i == 0 {
            t.resolve(ip(peer), "nb-a").expect("resolve");
        } else {
            t.resolve_on(ip(peer), a.index).expect("resolve_on");
        }
        let changed = wait_for(&mut t, peer, |t| t.lookup(ip(peer)) == Some(peer_mac));
        assert!(changed);
    }
    assert!(t.resolve(ip("198.18.4.2"), "nb-absent").is_err());

    // Events: an entry added and removed by someone else.
    let sh = |args: &[&str]| {
        let st = Command::new("ip").args(args).status().expect("ip");
        assert!(st.success(), "{args:?}");
    };
    sh(&[
        "neigh",
        "add",
        "198.18.4.78",
        "lladdr",
        "02:00:c6:12:04:4f",
        "dev",
        "nb-a",
        "nud",
        "permanent",
    ]);
    wait_for(&mut t, "added entry", |t| {
        t.lookup(ip("198.18.4.78")).is_some()
    });
    sh(&["neigh", "del", "198.18.4.78", "dev", "nb-a"]);
    wait_for(&mut t, "deleted entry", |t| {
        t.lookup(ip("198.18.4.78")).is_none()
    });
    assert!(
        !t.refresh().expect("refresh"),
        "events kept the table exact"
    );
}
