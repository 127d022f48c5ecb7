//! Networks added and removed by a reload while another network forwards,
//! with real routers.
//!
//! Two hosts (`nrl-h1`, `nrl-h2`) joined by an underlay veth on
//! 198.18.0.0/24, each with a TUN container of the default network from
//! the topology (198.19.1.2 and 198.19.2.2). A reload adds network "blue"
//! with the same prefixes; containers attached through the control socket
//! join it with the same addresses as the default network's; a reload that
//! would drop blue under them is refused; once they are detached a reload
//! drops it. A bounded ping in the default network runs across each
//! reload and loses nothing. The `Lab` guard stops the routers and removes
//! the namespaces on exit, also on panic. Needs root: under `CI=true` its
//! absence fails the test, elsewhere it prints `SKIPPED: ...`.
#![cfg(target_os = "linux")]

mod common;
#[macro_use]
mod live_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use live_support::{host, link, port, Lab, H1_VTEP, H2_VTEP, OVERLAY};
use vxrouter::api::{self, client, Body, Request};
use vxrouter::config::PortKind;

/// Network "blue": the same IPv4 prefixes as the default network's.
const BLUE: &str = "\n[[networks]]\nname = \"blue\"\nvni = 43\n[networks.subnets]\n\
                    h1 = [\"198.19.1.0/24\"]\nh2 = [\"198.19.2.0/24\"]\n";

fn topology(d1: &str, d2: &str, blue: bool) -> String {
    format!(
        "{OVERLAY}{}{}{}{}",
        if blue { BLUE } else { "" },
        host(
            "h1",
            1,
            H1_VTEP,
            "0",
            &port("d1", "tun", d1, "198.19.1.2", "2001:2:0:1::2")
        ),
        host(
            "h2",
            2,
            H2_VTEP,
            "1",
            &port("d2", "tun", d2, "198.19.2.2", "2001:2:0:2::2")
        ),
        link("h1", "h2", 1)
    )
}

fn call(sock: &Path, req: Request) -> Result<Body, client::ClientError> {
    client::call(sock, &req, Duration::from_secs(10))
}

fn attach_blue(sock: &Path, id: &str, netns: &str, addr: &str) {
    let req = Request::Attach(api::Attach {
        id: id.into(),
        netns: common::netns_path(netns),
        ifname: "eth0".into(),
        kind: PortKind::Veth,
        addresses: vec![addr.parse().unwrap()],
        offload: false,
        network: Some("blue".into()),
    });
    match call(sock, req) {
        Ok(Body::Port(p)) => assert_eq!(p.network, "blue"),
        other => panic!("attach {id}: {other:?}"),
    }
}

/// A bounded ping (300 packets, 10 ms apart, 8 s at most) in the
/// background.
fn ping_in_background(ns: &str, dst: &str) -> Child {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-n", "-q", "-c", "300", "-i", "0.01", "-w", "8", dst,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning ping")
}

fn assert_no_loss(ping: Child, what: &str) {
    let o = ping.wait_with_output().expect("ping output");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("300 packets transmitted, 300 received"),
        "{what}: the default network lost packets:\n{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Reloads both routers with `text` and waits until each counts `accepted`
/// and `rejected` reloads.
fn reload(lab: &mut Lab, cfg: &Path, text: &str, accepted: u64, rejected: u64) {
    std::fs::write(cfg, text).expect("writing the topology");
    for r in [0, 1] {
        lab.signal(r, "HUP");
        lab.wait_stats(r, "the reload", |s| {
            s["reloads"]["accepted"] == accepted && s["reloads"]["rejected"] == rejected
        });
    }
}

#[test]
fn networks_come_and_go_by_reload_while_the_default_one_forwards() {
    require_root!();
    let mut lab = Lab::new("nrl");
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let d1 = lab.adopt("d1");
    let d2 = lab.adopt("d2");
    let cfg = lab.write("topo.toml", &topology(&d1, &d2, false));
    let r1 = lab.start(&cfg, "h1", &h1);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[r1, r2]);
    lab.ping(&d1, "198.19.2.2");

    // Blue arrives while the default network carries a ping.
    let ping = ping_in_background(&d1, "198.19.2.2");
    std::thread::sleep(Duration::from_millis(500));
    reload(&mut lab, &cfg, &topology(&d1, &d2, true), 1, 0);
    assert_no_loss(ping, "adding blue");

    // Containers join blue with the default network's addresses.
    let (s1, s2) = (lab.socket_path("h1"), lab.socket_path("h2"));
    let b1 = lab.ns("b1");
    let b2 = lab.ns("b2");
    attach_blue(&s1, "t/b1/eth0", &b1, "198.19.1.2/24");
    attach_blue(&s2, "t/b2/eth0", &b2, "198.19.2.2/24");
    // UDP to a server only b2 runs: the same address in the default network
    // (d2) has none, so an answer proves blue's traffic stays in blue.
    lab.exchange("udp", &b2, &b1, "198.19.2.2", 7001, 100);
    lab.exchange("udp", &b1, &b2, "198.19.1.2", 7002, 100);
    // And the default network still reaches its own.
    lab.ping(&d1, "198.19.2.2");
    let s = lab.stats(r1);
    let blue = s["networks"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == "blue"))
        .cloned()
        .unwrap_or_else(|| panic!("no blue in {s}"));
    assert_eq!(
        (blue["vni"].as_u64(), blue["ports"].as_u64()),
        (Some(43), Some(1))
    );

    // Blue cannot go while ports are in it: refused, running tables kept.
    std::fs::write(&cfg, topology(&d1, &d2, false)).unwrap();
    lab.signal(r1, "HUP");
    lab.wait_stats(r1, "the refused reload", |s| s["reloads"]["rejected"] == 1);
    assert!(
        lab.log(r1)
            .contains("network \"blue\" is gone but attached port"),
        "{}",
        lab.log(r1)
    );
    lab.exchange("udp", &b2, &b1, "198.19.2.2", 7003, 100);

    // Detached, blue goes, and the default network does not notice.
    for (sock, id) in [(&s1, "t/b1/eth0"), (&s2, "t/b2/eth0")] {
        match call(sock, Request::Detach { id: id.into() }) {
            Ok(Body::Detached { found: true }) => {}
            other => panic!("detach {id}: {other:?}"),
        }
    }
    let ping = ping_in_background(&d1, "198.19.2.2");
    std::thread::sleep(Duration::from_millis(500));
    // h1 saw one refusal already; h2 none.
    std::fs::write(&cfg, topology(&d1, &d2, false)).unwrap();
    lab.signal(r1, "HUP");
    lab.wait_stats(r1, "the reload", |s| s["reloads"]["accepted"] == 2);
    lab.signal(r2, "HUP");
    lab.wait_stats(r2, "the reload", |s| s["reloads"]["accepted"] == 2);
    assert_no_loss(ping, "removing blue");
    let s = lab.stats(r1);
    assert_eq!(s["networks"].as_array().map(Vec::len), Some(1), "{s}");
}
