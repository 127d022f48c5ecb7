//! Live test of the handover (`vxrouter run --takeover`): a new router
//! process takes the running one's sockets and TUN queues while numbered
//! UDP streams (both ways, 20 kpps each) and a steady TCP stream cross it,
//! and not one datagram may be lost.
//!
//! Namespaces `ho1-*`, addresses from 198.18.0.0/15 and 2001:2::/48 only,
//! every stream bounded in count and time (tests/live_support/stream.py),
//! everything torn down by the `Lab` guard, also on panic. Needs root:
//! without it the test reports SKIPPED (and fails under `CI=true`).
//! Timings are printed, not asserted (tools/bench-handover reports them).
#![cfg(target_os = "linux")]

mod common;
#[macro_use]
mod live_support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vxrouter::api::{self, client, Body, Request};

use live_support::{
    assert_clean, forwarded, link, receiver, report, stream, wait_for, Lab, Receiver, H1_VTEP,
    H2_VTEP, OVERLAY,
};

/// Datagrams per direction and their rate: 5 s at 20 kpps.
const COUNT: u64 = 100_000;
const RATE: u64 = 20_000;

/// Numbered UDP streams both ways, `count` datagrams each at [`RATE`]: from
/// `b` to `a`'s address and from `a` to `b`'s, each namespace given with
/// its address. Returns the receivers at `a` and at `b` (port 5001, done
/// after 3 s of silence) and the two senders.
fn two_way_udp(
    lab: &Lab,
    a: (&str, &str),
    b: (&str, &str),
    count: u64,
) -> (Receiver, Receiver, Vec<std::process::Child>) {
    let count = count.to_string();
    let rate = RATE.to_string();
    let rx_a = receiver(lab, a.0, &["udp-recv", a.1, "5001", "3"]);
    let rx_b = receiver(lab, b.0, &["udp-recv", b.1, "5001", "3"]);
    let senders = vec![
        stream(lab, b.0, &["udp-send", a.1, "5001", &count, &rate]),
        stream(lab, a.0, &["udp-send", b.1, "5001", &count, &rate]),
    ];
    (rx_a, rx_b, senders)
}

/// The uplink the hosts of a test run on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Uplink {
    /// Kernel UDP sockets, two workers.
    Udp,
    /// AF_XDP behind our XDP program, one worker (the veth has one queue).
    AfXdp,
}

/// A host on `uplink` with one container port `c{n}` of `kind` in
/// namespace `ns` (`veth-offload`: a veth with `offload = true`, on
/// AF_PACKET).
fn host(name: &str, n: u8, vtep: &str, ns: &str, uplink: Uplink, kind: &str) -> String {
    let (kind, extra) = match kind {
        "veth-offload" => ("veth", "  offload = true\n"),
        k => (k, ""),
    };
    let port = live_support::port(
        &format!("c{n}"),
        kind,
        ns,
        &format!("198.19.{n}.2"),
        &format!("2001:2:0:{n}::2"),
    ) + extra;
    match uplink {
        Uplink::Udp => live_support::host(
            name,
            n,
            vtep,
            "0, 1",
            &format!("uplink_io = \"udp\"\n{port}"),
        ),
        Uplink::AfXdp => live_support::host(name, n, vtep, "0", &port),
    }
}

/// Hosts h1 and h2 (namespaces) on `uplink` with containers c1 and c2 on
/// ports of `kind`, and their topology file: host namespaces, container
/// namespaces, the file.
fn two_hosts_with(
    lab: &mut Lab,
    uplink: Uplink,
    kind: &str,
) -> (String, String, String, String, std::path::PathBuf) {
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let c1 = lab.adopt("c1");
    let c2 = lab.adopt("c2");
    let cfg = format!(
        "{OVERLAY}{}{}{}",
        host("h1", 1, H1_VTEP, &c1, uplink, kind),
        host("h2", 2, H2_VTEP, &c2, uplink, kind),
        link("h1", "h2", 10)
    );
    let cfg = lab.write("topo.toml", &cfg);
    (h1, h2, c1, c2, cfg)
}

/// Hosts h1 and h2 on UDP uplinks with TUN containers c1 and c2.
fn two_tun_hosts(lab: &mut Lab) -> (String, String, String, String, std::path::PathBuf) {
    two_hosts_with(lab, Uplink::Udp, "tun")
}

/// Router `new`'s log once it says the takeover is complete: the old
/// router exits on `done`, a moment before the new one has taken its
/// AF_XDP sockets and says so.
fn takeover_log(lab: &Lab, new: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = lab.log(new);
        if log.contains("takeover complete") {
            return log;
        }
        assert!(Instant::now() < deadline, "no takeover complete:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(lab: &mut Lab, r: usize, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
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

/// h1's router is replaced by handover while UDP streams run both ways
/// between a TUN container on each host and a TCP stream from h2's to
/// h1's: every datagram arrives, the old router exits 0 without removing
/// the container's namespace, and the new one forwards and owns it.
///
/// With `VXROUTER_OLD_BIN` set to another build's executable, the old
/// router runs that build: `tools/test-handover-across-builds` builds an
/// older commit and hands over from it to this build.
#[test]
fn handover_loses_no_packet() {
    require_root!();
    handover_without_loss("ho1", Uplink::Udp, "tun");
}

/// The same on AF_XDP uplinks: the new router takes our XDP program's
/// link and XSKMAP and each socket with its UMEM, and carries on from the
/// frames the old router left once it has let go of them.
#[test]
fn handover_on_an_af_xdp_uplink_loses_no_packet() {
    require_root!();
    handover_without_loss("ho5", Uplink::AfXdp, "tun");
}

/// The same with AF_XDP veth container ports: the new router also takes
/// the shared container program with its maps, each port's link and its
/// sockets with their UMEMs, and carries on from the frames the old
/// router left.
#[test]
fn handover_on_af_xdp_veth_ports_loses_no_packet() {
    require_root!();
    handover_without_loss("ho6", Uplink::AfXdp, "veth");
}

/// The same with AF_PACKET veth container ports (`offload = true`) on UDP
/// uplinks: their sockets are shared by both routers as TUN queues are.
#[test]
fn handover_on_af_packet_veth_ports_loses_no_packet() {
    require_root!();
    handover_without_loss("ho8", Uplink::Udp, "veth-offload");
}

fn handover_without_loss(prefix: &str, uplink: Uplink, kind: &str) {
    let mut lab = Lab::new(prefix);
    let (h1, h2, c1, c2, cfg) = two_hosts_with(&mut lab, uplink, kind);
    let this_build = lab.router_bin.clone();
    if let Some(bin) = std::env::var_os("VXROUTER_OLD_BIN") {
        eprintln!("{prefix}: the old router runs {}", bin.to_string_lossy());
        lab.router_bin = bin.into();
    }
    let old = lab.start(&cfg, "h1", &h1);
    lab.router_bin = this_build;
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[old, r2]);
    lab.ping(&c2, "198.19.1.2");
    lab.ping(&c1, "198.19.2.2");

    let tcp_rx = receiver(&lab, &c1, &["tcp-recv", "198.19.1.2", "5002"]);
    let (rx1, rx2, mut senders) =
        two_way_udp(&lab, (&c1, "198.19.1.2"), (&c2, "198.19.2.2"), COUNT);
    let secs = (COUNT / RATE).to_string();
    senders.push(stream(
        &lab,
        &c2,
        &["tcp-send", "198.19.1.2", "5002", &secs, "1000000"],
    ));
    std::thread::sleep(Duration::from_millis(1500));

    let state = lab.dir.path().join("h1.state").display().to_string();
    let socket = lab.socket_path("h1").display().to_string();
    let started = Instant::now();
    let new = lab.start_as(
        &cfg,
        "h1",
        &h1,
        "h1-new",
        &["--socket", &socket, "--state-dir", &state, "--takeover"],
    );
    let st = wait_exit(&mut lab, old, Duration::from_secs(15));
    let handover_ms = started.elapsed().as_secs_f64() * 1e3;
    assert!(
        st.success(),
        "the old router failed ({st}):\n{}",
        lab.log(old)
    );
    let old_log = lab.log(old);
    assert!(old_log.contains("handed over"), "{old_log}");
    assert!(
        !old_log.contains("removed"),
        "the old router tore a port down:\n{old_log}"
    );
    lab.assert_alive(new);
    let new_log = takeover_log(&lab, new);
    assert!(
        !new_log.contains("TUN device open") && !new_log.contains("socket bound"),
        "the new router opened queues of its own:\n{new_log}"
    );
    if uplink == Uplink::AfXdp {
        assert!(new_log.contains("AF_XDP socket taken over"), "{new_log}");
    }
    if kind == "veth-offload" {
        assert!(
            new_log.contains("veth port taken over (AF_PACKET)"),
            "{new_log}"
        );
    }
    if kind == "veth" {
        assert!(
            new_log.contains("container XDP program taken over")
                && new_log.contains("veth port's XDP link taken over"),
            "{new_log}"
        );
    }

    for mut s in senders {
        let st = s.wait().expect("sender");
        assert!(st.success(), "a sender failed ({st})");
    }
    let to_c1 = report(rx1);
    let to_c2 = report(rx2);
    let tcp = report(tcp_rx);
    eprintln!(
        "{prefix}: exec to old router gone {handover_ms:.0} ms; h2->h1 {to_c1}; h1->h2 {to_c2}; tcp {tcp}"
    );
    for (what, r) in [("h2 -> h1", &to_c1), ("h1 -> h2", &to_c2)] {
        assert_eq!(
            r["missing"].as_u64(),
            Some(0),
            "{what}: datagrams lost across the handover: {r}\nold:\n{}\nnew:\n{}",
            lab.log(old),
            lab.log(new)
        );
        assert_eq!(r["highest"].as_u64(), Some(COUNT - 1), "{what}: {r}");
    }
    assert!(tcp["bytes"].as_u64().unwrap_or(0) > 0, "tcp: {tcp}");

    // The new router serves the control socket and forwards.
    lab.ping(&c2, "198.19.1.2");
    let s = lab.wait_stats(new, "forwarded traffic", |s| forwarded(s) > 0);
    assert_clean("h1", &s);
    wait_for(
        Duration::from_secs(5),
        "status over the control socket",
        || {
            let o = Command::new(env!("CARGO_BIN_EXE_vxrouter"))
                .args(["status", "--socket", &socket])
                .output()
                .ok()?;
            o.status.success().then_some(())
        },
    );

    // The new router owns what the old one made: its stop removes c1.
    lab.stop(new);
    let list = live_support::cmd(&["ip", "netns", "list"]);
    assert!(
        !list
            .lines()
            .any(|l| l.split_whitespace().next() == Some(c1.as_str())),
        "the new router left {c1} behind:\n{}",
        lab.log(new)
    );
    assert!(
        !std::path::Path::new(&socket).exists(),
        "the new router left its control socket"
    );
}

/// An attached AF_XDP veth port (as the CNI plugin makes them) is handed
/// over too: a numbered stream from h2's TUN container to it loses
/// nothing, and the new router, carrying on with the old one's container
/// XDP program, detaches that port and attaches and detaches another.
#[test]
fn attached_af_xdp_veth_port_is_handed_over_and_attach_goes_on() {
    require_root!();
    let mut lab = Lab::new("ho7");
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let c2 = lab.adopt("c2");
    let ca = lab.ns("ca");
    let cb = lab.ns("cb");
    let cfg = format!(
        "{OVERLAY}{}{}{}",
        live_support::host("h1", 1, H1_VTEP, "0", ""),
        host("h2", 2, H2_VTEP, &c2, Uplink::AfXdp, "tun"),
        link("h1", "h2", 10)
    );
    let cfg = lab.write("topo.toml", &cfg);
    let old = lab.start(&cfg, "h1", &h1);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[old, r2]);
    let sock = lab.socket_path("h1");
    wait_for(Duration::from_secs(10), "h1's control socket", || {
        sock.exists().then_some(())
    });
    call(&sock, attach_veth("ho7/ca/eth0", &ca, "198.19.1.5/24")).expect("attach ca");
    lab.ping(&ca, "198.19.2.2");

    let (rx, rx2, senders) = two_way_udp(&lab, (&ca, "198.19.1.5"), (&c2, "198.19.2.2"), COUNT / 2);
    std::thread::sleep(Duration::from_millis(1000));
    let state = lab.dir.path().join("h1.state").display().to_string();
    let socket = sock.display().to_string();
    let new = lab.start_as(
        &cfg,
        "h1",
        &h1,
        "h1-new",
        &["--socket", &socket, "--state-dir", &state, "--takeover"],
    );
    let st = wait_exit(&mut lab, old, Duration::from_secs(15));
    assert!(
        st.success(),
        "the old router failed ({st}):\n{}",
        lab.log(old)
    );
    lab.assert_alive(new);
    let new_log = takeover_log(&lab, new);
    assert!(
        new_log.contains("container XDP program taken over")
            && new_log.contains("recorded port attached again"),
        "{new_log}"
    );
    for mut s in senders {
        let st = s.wait().expect("sender");
        assert!(st.success(), "a sender failed ({st})");
    }
    let to_ca = report(rx);
    let to_c2 = report(rx2);
    eprintln!("ho7: h2->ca {to_ca}; ca->h2 {to_c2}");
    for (what, r) in [("h2 -> ca", &to_ca), ("ca -> h2", &to_c2)] {
        assert_eq!(
            r["missing"].as_u64(),
            Some(0),
            "{what}: datagrams lost across the handover: {r}\nold:\n{}\nnew:\n{}",
            lab.log(old),
            lab.log(new)
        );
    }

    // The new router's own attaches and detaches use the program it took.
    lab.ping(&ca, "198.19.2.2");
    call(
        &sock,
        Request::Detach {
            id: "ho7/ca/eth0".into(),
        },
    )
    .expect("detach ca");
    call(&sock, attach_veth("ho7/cb/eth0", &cb, "198.19.1.6/24")).expect("attach cb");
    lab.ping(&cb, "198.19.2.2");
    lab.ping(&c2, "198.19.1.6");
    call(
        &sock,
        Request::Detach {
            id: "ho7/cb/eth0".into(),
        },
    )
    .expect("detach cb");
    let log = lab.log(new);
    assert!(
        !log.contains("clean-up failed") && !log.contains("ERROR"),
        "{log}"
    );
    lab.stop(new);
}

fn call(sock: &std::path::Path, req: Request) -> Result<Body, client::ClientError> {
    client::call(sock, &req, Duration::from_secs(10))
}

/// An AF_XDP veth port for `eth0` in `netns`, as the CNI plugin asks.
fn attach_veth(id: &str, netns: &str, addr: &str) -> Request {
    Request::Attach(api::Attach {
        id: id.into(),
        netns: common::netns_path(netns),
        ifname: "eth0".into(),
        kind: vxrouter::config::PortKind::Veth,
        addresses: vec![addr.parse().expect("prefix")],
        offload: false,
        network: None,
    })
}

/// A router started by another process (here: the old router, on SIGUSR2)
/// outlives it and is no child of the test: stopped on drop, SIGTERM then
/// SIGKILL, before the `Lab` removes the namespaces.
struct Successor(u32);

impl Successor {
    /// Whether the process still runs (not gone, not a zombie).
    fn runs(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.0)) {
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X"),
            Err(_) => false,
        }
    }

    /// Sends `sig` and waits up to `limit` for the process to end.
    fn signal_and_wait(&self, sig: &str, limit: Duration) -> bool {
        let _ = Command::new("kill")
            .args([sig, &self.0.to_string()])
            .output();
        let deadline = Instant::now() + limit;
        while self.runs() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        !self.runs()
    }
}

impl Drop for Successor {
    fn drop(&mut self) {
        if self.runs() && !self.signal_and_wait("-TERM", Duration::from_secs(5)) {
            self.signal_and_wait("-KILL", Duration::from_secs(2));
        }
    }
}

/// Sends SIGUSR2 to router `old` (run under `notify`) and waits until it
/// has exited 0; asserts it named its successor (`MAINPID=`, another
/// process) and did not say `STOPPING=1`. Returns the successor.
fn sigusr2_until_successor(
    lab: &mut Lab,
    old: usize,
    notify: &live_support::NotifySocket,
) -> Successor {
    let old_pid = lab.routers[old].child.id();
    live_support::cmd(&["kill", "-USR2", &old_pid.to_string()]);
    let st = wait_exit(lab, old, Duration::from_secs(20));
    assert!(
        st.success(),
        "the old router failed ({st}):\n{}",
        lab.log(old)
    );
    let (before, mainpid) = notify.until("MAINPID=", Duration::from_secs(5), lab, old);
    assert!(
        !before.iter().any(|m| m == "STOPPING=1"),
        "the old router told systemd it stops: {before:?}"
    );
    let pid: u32 = mainpid["MAINPID=".len()..]
        .parse()
        .unwrap_or_else(|_| panic!("{mainpid}"));
    assert_ne!(pid, old_pid);
    Successor(pid)
}

/// h1's router as systemd starts it: `$NOTIFY_SOCKET`, and a watchdog of
/// 2 s (WATCHDOG=1 every second).
fn start_under_systemd(
    lab: &mut Lab,
    cfg: &std::path::Path,
    ns: &str,
    notify: &live_support::NotifySocket,
) -> usize {
    lab.start_env(
        cfg,
        "h1",
        ns,
        "h1",
        &[],
        &[
            ("NOTIFY_SOCKET", notify.path.as_os_str()),
            ("WATCHDOG_USEC", "2000000".as_ref()),
        ],
    )
}

/// An upgrade in place under systemd: SIGUSR2 makes h1's router start
/// its own executable again with `--takeover`; the new process takes over
/// while UDP streams cross both ways, with not one datagram lost. The old
/// router tells the service manager `MAINPID=` of the new one (and no
/// `STOPPING=1`) and exits 0; the new one then says `READY=1` and feeds
/// the watchdog, serves the control socket and forwards.
#[test]
fn sigusr2_upgrades_in_place_and_hands_systemd_the_new_main_pid() {
    require_root!();
    let mut lab = Lab::new("ho3");
    let (h1, h2, c1, c2, cfg) = two_tun_hosts(&mut lab);
    let notify = live_support::NotifySocket::bind(&lab);
    let old = start_under_systemd(&mut lab, &cfg, &h1, &notify);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[old, r2]);
    let (before, _) = notify.until("READY=1", Duration::from_secs(25), &lab, old);
    assert!(before.is_empty(), "sent before READY=1: {before:?}");
    lab.ping(&c2, "198.19.1.2");

    let (rx1, rx2, senders) =
        two_way_udp(&lab, (&c1, "198.19.1.2"), (&c2, "198.19.2.2"), COUNT / 2);
    std::thread::sleep(Duration::from_millis(1000));

    let new = sigusr2_until_successor(&mut lab, old, &notify);
    let pid = new.0;
    assert!(new.runs(), "the new router is gone:\n{}", lab.log(old));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("--takeover"), "{cmdline}");
    // The new router says it is ready and feeds the watchdog, as the main
    // process now; the old one said nothing after MAINPID (it has exited).
    let (after, _) = notify.until("READY=1", Duration::from_secs(10), &lab, old);
    assert!(
        !after.iter().any(|m| m == "STOPPING=1"),
        "STOPPING=1 after MAINPID: {after:?}"
    );
    notify.until("WATCHDOG=1", Duration::from_secs(5), &lab, old);
    // Both routers write to the log the first one was given.
    let log = lab.log(old);
    assert!(log.contains("SIGUSR2: started a new router"), "{log}");
    assert!(log.contains("takeover complete"), "{log}");

    for mut s in senders {
        let st = s.wait().expect("sender");
        assert!(st.success(), "a sender failed ({st})");
    }
    let to_c1 = report(rx1);
    let to_c2 = report(rx2);
    eprintln!("ho3: h2->h1 {to_c1}; h1->h2 {to_c2}");
    for (what, r) in [("h2 -> h1", &to_c1), ("h1 -> h2", &to_c2)] {
        assert_eq!(
            r["missing"].as_u64(),
            Some(0),
            "{what}: datagrams lost across the upgrade: {r}\n{}",
            lab.log(old)
        );
        assert_eq!(r["highest"].as_u64(), Some(COUNT / 2 - 1), "{what}: {r}");
    }
    lab.ping(&c2, "198.19.1.2");
    let socket = lab.socket_path("h1").display().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_vxrouter"))
        .args(["status", "--socket", &socket])
        .output()
        .expect("vxrouter status");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A SIGTERM now is the service's stop: STOPPING=1 from the new router.
    assert!(
        new.signal_and_wait("-TERM", Duration::from_secs(10)),
        "the new router did not stop on SIGTERM:\n{}",
        lab.log(old)
    );
    notify.until("STOPPING=1", Duration::from_secs(5), &lab, old);
}

/// SIGUSR2 on a router with an AF_XDP uplink and an AF_PACKET veth
/// container port (`offload = true`): the successor takes both over (none
/// of the old router's descriptors lives on in it through the exec: it
/// takes them over the handover socket), forwards, and systemd is told its
/// pid. (The restart fallback, for what is still refused, is the protocol
/// test `a_refused_takeover_asks_the_old_router_to_stop` in
/// src/control/handover.rs: no lab setup is refused any more.)
#[test]
fn sigusr2_on_an_af_packet_veth_port_hands_over_to_the_successor() {
    require_root!();
    let mut lab = Lab::new("ho4");
    let (h1, h2, c1, c2, cfg) = two_hosts_with(&mut lab, Uplink::AfXdp, "veth-offload");
    let notify = live_support::NotifySocket::bind(&lab);
    let old = start_under_systemd(&mut lab, &cfg, &h1, &notify);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[old, r2]);
    notify.until("READY=1", Duration::from_secs(25), &lab, old);
    lab.ping(&c2, "198.19.1.2");

    let new = sigusr2_until_successor(&mut lab, old, &notify);
    notify.until("READY=1", Duration::from_secs(20), &lab, old);
    assert!(new.runs(), "the new router is gone:\n{}", lab.log(old));
    let log = lab.log(old);
    assert!(
        log.contains("veth port taken over (AF_PACKET)") && log.contains("takeover complete"),
        "{log}"
    );
    assert!(!log.contains("handover refused"), "{log}");
    lab.ping(&c2, "198.19.1.2");
    lab.ping(&c1, "198.19.2.2");
    assert!(
        new.signal_and_wait("-TERM", Duration::from_secs(10)),
        "the new router did not stop on SIGTERM:\n{}",
        lab.log(old)
    );
}

/// A newer router refuses a handover message of an unknown version with
/// a clear error, and the running router goes on forwarding.
#[test]
fn unknown_handover_version_is_refused_and_the_router_goes_on() {
    require_root!();
    let mut lab = Lab::new("ho2");
    let (h1, h2, _c1, c2, cfg) = two_tun_hosts(&mut lab);
    let r1 = lab.start(&cfg, "h1", &h1);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[r1, r2]);
    let path = vxrouter::control::handover_path(&lab.socket_path("h1"));
    let reply = seqpacket_exchange(&path, br#"{"v":99,"op":"takeover","version":"99.0.0"}"#);
    let v: Value = serde_json::from_slice(&reply).expect("a JSON answer");
    assert_eq!(v["op"], "refused", "{v}");
    assert_eq!(v["code"], "unsupported_version", "{v}");
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("version 99") && msg.contains("speaks version 1"),
        "{v}"
    );
    lab.assert_alive(r1);
    lab.ping(&c2, "198.19.1.2");
}

/// One request and its answer on a SOCK_SEQPACKET socket (through python:
/// std has no seqpacket client).
fn seqpacket_exchange(path: &std::path::Path, req: &[u8]) -> Vec<u8> {
    let py = "import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_SEQPACKET)\ns.settimeout(10)\ns.connect(sys.argv[1])\ns.send(sys.argv[2].encode())\nsys.stdout.write(s.recv(65536).decode())\n";
    let o = Command::new("timeout")
        .args(["15", "python3", "-c", py])
        .arg(path)
        .arg(std::str::from_utf8(req).expect("utf-8"))
        .output()
        .expect("python3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}
