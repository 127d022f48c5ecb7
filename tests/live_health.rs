//! Live test of the router under a service manager: systemd's notify
//! protocol (`READY=1`, `WATCHDOG=1`, `STOPPING=1` to `$NOTIFY_SOCKET`)
//! and the probes `/healthz` and `/readyz` on the metrics listener.
//!
//! The router runs in namespace `hz1-h1` (UDP uplink, no container), with
//! `NOTIFY_SOCKET` naming a datagram socket the test binds in its temp
//! directory, standing for systemd; the probes are fetched from `hz1-cli`,
//! the other end of its underlay veth, which also stands for the peer h2
//! (never started). Addresses 198.18.0.1 and .2 only. Every wait is
//! bounded, and the `Lab` guard stops the router and removes the
//! namespaces on exit, also on panic. Needs root: under `CI=true` its
//! absence fails the test, elsewhere it prints `SKIPPED: ...`.
#![cfg(target_os = "linux")]

mod common;
#[macro_use]
mod live_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use live_support::{host, link, wait_for, Lab, NotifySocket, Router, H1_VTEP, H2_VTEP, OVERLAY};

const METRICS: &str = "198.18.0.1:9471";

/// `READY=1` once the router forwards, with `/readyz` and `/healthz` 200;
/// `WATCHDOG=1` while its worker moves; `STOPPING=1` on SIGTERM, before a
/// clean exit; nothing before `READY=1`.
#[test]
fn notifies_ready_watchdog_and_stopping_and_answers_the_probes() {
    require_root!();
    let mut lab = Lab::new("hz1");
    let (h1, cli) = lab.two_hosts("h1", "cli");
    let udp = "uplink_io = \"udp\"";
    let cfg = format!(
        "{OVERLAY}{}{}{}",
        host("h1", 1, H1_VTEP, "0", udp),
        host("h2", 2, H2_VTEP, "0", udp),
        link("h1", "h2", 10)
    );
    let cfg = lab.write("topo.toml", &cfg);

    // systemd's side: a datagram socket at a path.
    let notify = NotifySocket::bind(&lab);

    // Started as Lab::start does, with systemd's variables; the Lab owns
    // it from here (SIGTERM, then SIGKILL on drop).
    let stats = lab.dir.path().join("h1.json");
    let log = lab.dir.path().join("h1.log");
    let logf = std::fs::File::create(&log).expect("router log");
    let child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{h1}"))
        .arg(env!("CARGO_BIN_EXE_vxrouter"))
        .args(["run", "--config"])
        .arg(&cfg)
        .args(["--host", "h1", "--stats-file"])
        .arg(&stats)
        .args(["--log-interval", "1", "--no-socket", "--metrics", METRICS])
        .env("NO_COLOR", "1")
        .env("NOTIFY_SOCKET", &notify.path)
        // 2 s: WATCHDOG=1 every second.
        .env("WATCHDOG_USEC", "2000000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(logf.try_clone().expect("log fd"))
        .stderr(logf)
        .spawn()
        .expect("spawning vxrouter");
    lab.routers.push(Router {
        host: "h1".into(),
        ns: h1.clone(),
        child,
        stats,
        log,
    });

    let before = notify.until("READY=1", Duration::from_secs(25), &lab, 0).0;
    assert!(before.is_empty(), "sent before READY=1: {before:?}");
    lab.assert_alive(0);
    let url = |p: &str| format!("http://{METRICS}{p}");
    let (code, _, body) = lab.http_get(&cli, &url("/readyz")).expect("/readyz");
    assert_eq!((code, body.as_str()), (200, "ready\n"));
    let (code, _, body) = lab.http_get(&cli, &url("/healthz")).expect("/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));

    // The watchdog is fed while the worker moves: twice in a row.
    for k in 0..2 {
        let got = notify
            .until("WATCHDOG=1", Duration::from_secs(5), &lab, 0)
            .0;
        assert!(got.is_empty(), "before WATCHDOG=1 #{k}: {got:?}");
    }
    // Still healthy after a few ticks, and the metrics say why.
    let (code, _, body) = lab.http_get(&cli, &url("/healthz")).expect("/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let body = wait_for(Duration::from_secs(5), "a scrape", || {
        lab.http_get(&cli, &url("/metrics"))
            .filter(|(c, _, _)| *c == 200)
            .map(|(_, _, b)| b)
    });
    assert!(
        body.lines().any(|l| l == "vxrouter_workers_wedged_total 0"),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("vxrouter_worker_progress_age_seconds{worker=\"0\"} ")),
        "{body}"
    );
    let s = lab.stats(0);
    assert_eq!(s["workers_wedged"], 0, "{s:#}");

    // SIGTERM: STOPPING=1 (watchdog pings may come before it), then a
    // clean exit.
    lab.signal(0, "TERM");
    let got = notify
        .until("STOPPING=1", Duration::from_secs(10), &lab, 0)
        .0;
    assert!(
        got.iter().all(|m| m == "WATCHDOG=1"),
        "before STOPPING=1: {got:?}"
    );
    lab.stop(0);
    let st = lab.routers[0].child.wait().expect("router status");
    assert!(st.success(), "exit {st}:\n{}", lab.log(0));
    let log = lab.log(0);
    assert!(log.contains("ready: every worker polls"), "{log}");
    assert!(!log.contains("wedged"), "{log}");
}
