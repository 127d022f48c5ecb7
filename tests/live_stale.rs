//! Live tests of a restart after SIGKILL: the devices a killed router made
//! for its topology ports (`[[hosts.ports]]` with `netns`) carry its
//! marker (their interface alias), and the next start removes them and
//! makes the ports afresh; a device of such a name without the marker is
//! refused and left alone, and one whose router still runs is refused.
//!
//! Namespaces `stl1-*`..`stl3-*`, addresses from 198.18.0.0/15 and
//! 2001:2::/48 only, traffic bounded (ping -c, one-shot sockets with
//! timeouts), everything torn down by the `Lab` guard, also on panic.
//! Needs root: without it a test reports SKIPPED (and fails under
//! `CI=true`).
#![cfg(target_os = "linux")]

mod common;
#[macro_use]
mod live_support;

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use live_support::{assert_clean, forwarded, host, link, port, Lab, H1_VTEP, H2_VTEP, OVERLAY};

/// Waits (20 s at most) until router `r` has exited, and reaps it.
fn wait_exit(lab: &mut Lab, r: usize) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = lab.routers[r].child.try_wait().expect("try_wait") {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "router {r} did not exit:\n{}",
            lab.log(r)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL, then wait until the process is gone (reaped: no zombie).
fn kill9(lab: &mut Lab, r: usize) {
    lab.signal(r, "KILL");
    let st = wait_exit(lab, r);
    assert!(!st.success(), "SIGKILL ended the router with {st}");
}

/// Whether namespace `ns` exists.
fn netns_listed(ns: &str) -> bool {
    live_support::cmd(&["ip", "netns", "list"])
        .lines()
        .any(|l| l.split_whitespace().next() == Some(ns))
}

/// `ip -n NS link show DEV`, or None when it does not exist there.
fn link_show(ns: &str, dev: &str) -> Option<String> {
    let o = std::process::Command::new("ip")
        .args(["-n", ns, "link", "show", "dev", dev])
        .output()
        .expect("ip");
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Milliseconds from now until router `r` (just spawned) logs `router
/// running` (20 s at most); polled every 2 ms.
fn running_ms(lab: &mut Lab, r: usize) -> f64 {
    let started = Instant::now();
    loop {
        if lab.log(r).contains("router running") {
            return started.elapsed().as_secs_f64() * 1e3;
        }
        lab.assert_alive(r);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "router {r} not running after 20 s:\n{}",
            lab.log(r)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The number of lines of `log` that contain `needle`.
fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// h1 with a veth and a TUN container port, each in a namespace the
/// router makes, h2 with a TUN container; both on the default AF_XDP
/// uplink, one worker each.
fn two_hosts_config(lab: &mut Lab) -> (String, String, String, String, String) {
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let c1v = lab.adopt("c1v");
    let c1t = lab.adopt("c1t");
    let c2 = lab.adopt("c2");
    let ports1 = format!(
        "{}{}",
        port("c1v", "veth", &c1v, "198.19.1.2", "2001:2:0:1::2"),
        port("c1t", "tun", &c1t, "198.19.1.3", "2001:2:0:1::3")
    );
    let cfg = format!(
        "{OVERLAY}{}{}{}",
        host("h1", 1, H1_VTEP, "0", &ports1),
        host(
            "h2",
            2,
            H2_VTEP,
            "1",
            &port("c2", "tun", &c2, "198.19.2.2", "2001:2:0:2::2")
        ),
        link("h1", "h2", 10)
    );
    lab.write("topo.toml", &cfg);
    (h1, h2, c1v, c1t, c2)
}

/// Every container of h1 reaches h2's and back, both families.
fn traffic(lab: &mut Lab, c1v: &str, c1t: &str, c2: &str) {
    lab.ping(c1v, "198.19.2.2");
    lab.ping(c1t, "198.19.2.2");
    lab.ping(c2, "198.19.1.2");
    lab.ping(c2, "198.19.1.3");
    lab.ping(c1v, "2001:2:0:2::2");
    lab.ping(c1t, "2001:2:0:2::2");
}

/// A router killed with SIGKILL leaves its veth and TUN container devices
/// behind, marked as its own; the next start on the same topology
/// removes them (one log line each), makes the ports afresh and forwards;
/// its SIGTERM stop then removes the devices and the namespaces the
/// killed router had made.
#[test]
fn restart_after_sigkill_takes_the_ports_back() {
    require_root!();
    let mut lab = Lab::new("stl1");
    let (h1, h2, c1v, c1t, c2) = two_hosts_config(&mut lab);
    let cfg = lab.dir.path().join("topo.toml");
    let r1 = lab.start(&cfg, "h1", &h1);
    let fresh_ms = running_ms(&mut lab, r1);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[r1, r2]);
    traffic(&mut lab, &c1v, &c1t, &c2);

    // Both ends of the veth and the TUN (moved into its namespace as
    // eth0) carry the marker of this router process.
    let pid = lab.routers[r1].child.id();
    let marker = |port: &str, own: &str| {
        format!("alias vxrouter/1 host=h1 port={port} netns={own} pid={pid} ")
    };
    for (ns, dev, port) in [
        (&h1, "c1v", "c1v"),
        (&c1v, "eth0", "c1v"),
        (&c1t, "eth0", "c1t"),
    ] {
        let shown = link_show(ns, dev).unwrap_or_else(|| panic!("no {dev} in {ns}"));
        assert!(
            shown.contains(&marker(port, "own")),
            "{dev} in {ns} is not marked:\n{shown}"
        );
    }

    kill9(&mut lab, r1);
    // What SIGKILL leaves: the veth pair, the TUN and both namespaces.
    assert!(
        link_show(&h1, "c1v").is_some(),
        "the veth went with the router"
    );
    assert!(
        link_show(&c1t, "eth0").is_some(),
        "the TUN went with the router"
    );
    assert!(netns_listed(&c1v) && netns_listed(&c1t));
    // At once: the kernel lets go of the killed router's uplink XDP link
    // some 70-90 ms after the process is gone, and the start waits for it.
    let again = lab.start_as(&cfg, "h1", &h1, "h1-again", &[]);
    let restart_ms = running_ms(&mut lab, again);
    lab.wait_ready(&[again]);
    let log = lab.log(again);
    assert_eq!(
        count(&log, "removed a stale device a killed router left behind"),
        2,
        "one line per stale device (the veth pair, the TUN):\n{log}"
    );
    assert!(
        log.contains("device=c1v") && log.contains(&format!("device=eth0 in netns {c1t}")),
        "{log}"
    );
    assert!(log.contains(&format!("old_pid={pid}")), "{log}");
    traffic(&mut lab, &c1v, &c1t, &c2);
    lab.exchange("udp", &c2, &c1t, "198.19.2.2", 7801, 1000);
    lab.exchange("tcp", &c2, &c1v, "198.19.2.2", 7802, 100_000);
    let s = lab.wait_stats(again, "forwarded traffic", |s| forwarded(s) > 0);
    assert_clean("h1", &s);
    eprintln!(
        "stl1: spawn to `router running`: {fresh_ms:.0} ms on a clean host, {restart_ms:.0} ms after a SIGKILL (2 stale devices removed)"
    );

    // The new marks name the new process.
    let new_pid = lab.routers[again].child.id();
    let shown = link_show(&c1t, "eth0").expect("the TUN again");
    assert!(shown.contains(&format!("pid={new_pid} ")), "{shown}");

    // A clean stop removes the devices and, as the killed router would
    // have, the namespaces it had made.
    lab.stop(again);
    assert!(link_show(&h1, "c1v").is_none(), "SIGTERM left the veth");
    assert!(
        !netns_listed(&c1v) && !netns_listed(&c1t),
        "SIGTERM left the container namespaces:\n{}",
        lab.log(again)
    );
}

/// A device under a port's name that carries no marker of ours, or the
/// marker of another port, is refused with a clear error and left as it
/// is; so is a foreign `eth0` in a TUN port's namespace, and the ports
/// made before it are removed again.
#[test]
fn foreign_devices_are_refused_and_left_alone() {
    require_root!();
    let mut lab = Lab::new("stl2");
    let (h1, _h2, c1v, c1t, _c2) = two_hosts_config(&mut lab);
    let cfg = lab.dir.path().join("topo.toml");

    let refused = |lab: &mut Lab, label: &str, want: &str| {
        let r = lab.start_as(&cfg, "h1", &h1, label, &[]);
        let st = wait_exit(lab, r);
        let log = lab.log(r);
        assert!(!st.success(), "{label}: the router started:\n{log}");
        assert!(log.contains(want), "{label}: no {want:?} in\n{log}");
        assert!(!log.contains("removed a stale device"), "{label}:\n{log}");
    };

    // No alias at all (a veth: the kernel here has no dummy devices).
    lab.ip(
        &h1,
        &["link", "add", "c1v", "type", "veth", "peer", "name", "x1v"],
    );
    refused(&mut lab, "plain", "network device \"c1v\" already exists");
    // Our format, but another port's.
    let alias = "vxrouter/1 host=h1 port=zz netns=own pid=1 start=1";
    lab.ip(&h1, &["link", "set", "c1v", "alias", alias]);
    refused(
        &mut lab,
        "other-port",
        "network device \"c1v\" already exists",
    );
    let kept = link_show(&h1, "c1v").expect("the foreign c1v was deleted");
    assert!(kept.contains(alias), "{kept}");
    assert!(!netns_listed(&c1v), "a refused port made its namespace");
    lab.ip(&h1, &["link", "del", "c1v"]);

    // A foreign eth0 where the TUN port would go.
    let c1t_ns = lab.ns("c1t");
    assert_eq!(c1t_ns, c1t);
    lab.ip(
        &c1t,
        &["link", "add", "eth0", "type", "veth", "peer", "name", "x1t"],
    );
    refused(
        &mut lab,
        "eth0",
        &format!("network device \"eth0 in netns {c1t}\" already exists"),
    );
    assert!(
        link_show(&c1t, "eth0").is_some(),
        "the foreign eth0 was deleted"
    );
    // The veth port made before it went with the failed start.
    assert!(link_show(&h1, "c1v").is_none(), "the failed start left c1v");
    assert!(!netns_listed(&c1v), "the failed start left {c1v}");
}

/// A takeover re-marks the TUN it adopts with the new process; while
/// that router runs, a second start of the same host is refused (the
/// devices are in use) and the running one goes on forwarding; once it is
/// killed, a restart takes the port back.
#[test]
fn takeover_marks_adopted_devices_and_running_ones_are_refused() {
    require_root!();
    let mut lab = Lab::new("stl3");
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let c1 = lab.adopt("c1");
    let c2 = lab.adopt("c2");
    let udp = |n: u8, ns: &str| {
        let p = port(
            &format!("c{n}"),
            "tun",
            ns,
            &format!("198.19.{n}.2"),
            &format!("2001:2:0:{n}::2"),
        );
        format!("uplink_io = \"udp\"\n{p}")
    };
    let cfg = format!(
        "{OVERLAY}{}{}{}",
        host("h1", 1, H1_VTEP, "0", &udp(1, &c1)),
        host("h2", 2, H2_VTEP, "1", &udp(2, &c2)),
        link("h1", "h2", 10)
    );
    let cfg = lab.write("topo.toml", &cfg);
    let old = lab.start(&cfg, "h1", &h1);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[old, r2]);
    lab.ping(&c2, "198.19.1.2");

    let state = lab.dir.path().join("h1.state").display().to_string();
    let socket = lab.socket_path("h1").display().to_string();
    let new = lab.start_as(
        &cfg,
        "h1",
        &h1,
        "h1-new",
        &["--socket", &socket, "--state-dir", &state, "--takeover"],
    );
    let st = wait_exit(&mut lab, old);
    assert!(
        st.success(),
        "the old router failed ({st}):\n{}",
        lab.log(old)
    );
    lab.assert_alive(new);
    let new_log = lab.log(new);
    assert!(new_log.contains("takeover complete"), "{new_log}");
    assert!(!new_log.contains("marking an adopted device"), "{new_log}");
    let new_pid = lab.routers[new].child.id();
    let shown = link_show(&c1, "eth0").expect("the adopted TUN");
    assert!(
        shown.contains(&format!("host=h1 port=c1 netns=own pid={new_pid} ")),
        "the adopted TUN does not name its new router:\n{shown}"
    );
    lab.ping(&c2, "198.19.1.2");

    // A second router of h1 (its own socket, so only the ports can stop
    // it) must not take the running router's devices.
    let dup_sock = lab.dir.path().join("dup.sock").display().to_string();
    let dup_state = lab.dir.path().join("dup.state").display().to_string();
    let dup = lab.start_as(
        &cfg,
        "h1",
        &h1,
        "h1-dup",
        &["--socket", &dup_sock, "--state-dir", &dup_state],
    );
    let st = wait_exit(&mut lab, dup);
    let dup_log = lab.log(dup);
    assert!(!st.success(), "a second router of h1 started:\n{dup_log}");
    assert!(
        dup_log.contains(&format!(
            "network device \"eth0 in netns {c1}\" belongs to a router that still runs (pid {new_pid})"
        )),
        "{dup_log}"
    );
    lab.assert_alive(new);
    lab.ping(&c2, "198.19.1.2");
    lab.ping(&c1, "2001:2:0:2::2");

    kill9(&mut lab, new);
    let again = lab.start_as(&cfg, "h1", &h1, "h1-again", &[]);
    lab.wait_ready(&[again]);
    let log = lab.log(again);
    assert_eq!(count(&log, "removed a stale device"), 1, "{log}");
    assert!(log.contains(&format!("old_pid={new_pid}")), "{log}");
    lab.ping(&c2, "198.19.1.2");
    lab.ping(&c1, "2001:2:0:2::2");
    lab.stop(again);
    assert!(!netns_listed(&c1), "SIGTERM left {c1}");
}
