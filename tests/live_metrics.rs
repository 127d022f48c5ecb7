//! Live test of the metrics endpoint (`vxrouter run --metrics`) under idle,
//! slow and oversized clients.
//!
//! The router runs in namespace `lm1-h1` (UDP uplink, no container); the
//! clients run in `lm1-cli`, the other end of its underlay veth, which also
//! stands for the peer host h2 (never started) so that the router's peer
//! resolves. Addresses 198.18.0.1 and .2 only. Every client is bounded in
//! count (400 connections at most) and time (`timeout`, socket timeouts),
//! and the `Lab` guard stops the router, the clients and the namespaces on
//! exit, also on panic. Needs root: under `CI=true` its absence fails the
//! test, elsewhere it prints `SKIPPED: ...`.
#![cfg(target_os = "linux")]

mod common;
#[macro_use]
mod live_support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

use live_support::{host, link, wait_for, Lab, H1_VTEP, H2_VTEP, OVERLAY};

/// The clients, one mode per argv[1]; every socket has a timeout and every
/// wait a bound.
///
/// `hold ADDR PORT N WAIT`: opens N connections and sends nothing, prints
/// `open N`, waits for a line on stdin, then waits up to WAIT seconds for
/// the server to close each (EOF or reset) and prints `closed K of N after
/// S s` (S from the first connect), and `data D` if any socket got bytes.
///
/// `trickle ADDR PORT INTERVAL`: sends a GET one byte every INTERVAL
/// seconds until the server closes, prints `sent K of L reply R`.
///
/// `big ADDR PORT SIZE`: sends a GET with a SIZE-byte header field and
/// prints the status line of the answer.
const CLIENTS: &str = r#"
import select, socket, sys, time
mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def conn():
    return socket.create_connection((addr, port), timeout=3)
if mode == 'hold':
    n, wait = int(sys.argv[4]), float(sys.argv[5])
    t0 = time.monotonic()
    socks = [conn() for _ in range(n)]
    print('open', len(socks), flush=True)
    sys.stdin.readline()
    p = select.poll()
    by_fd = {}
    for s in socks:
        p.register(s, select.POLLIN)
        by_fd[s.fileno()] = s
    closed, data = 0, 0
    deadline = time.monotonic() + wait
    while by_fd and time.monotonic() < deadline:
        for fd, _ in p.poll(200):
            s = by_fd.pop(fd)
            p.unregister(fd)
            try:
                b = s.recv(1)
            except (ConnectionResetError, socket.timeout):
                b = b''
            if b:
                data += 1
            closed += 1
    print('closed', closed, 'of', n, 'after', round(time.monotonic() - t0, 1), 's', flush=True)
    print('data', data, flush=True)
    for s in socks:
        s.close()
elif mode == 'trickle':
    interval = float(sys.argv[4])
    req = b'GET /metrics HTTP/1.1\r\nHost: 198.18.0.1\r\n\r\n'
    s = conn()
    p = select.poll()
    p.register(s, select.POLLIN)
    sent = 0
    for b in req:
        if p.poll(int(interval * 1000)):
            break
        try:
            s.send(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += 1
    try:
        reply = s.recv(100)
    except (ConnectionResetError, socket.timeout):
        reply = b''
    print('sent', sent, 'of', len(req), 'reply', repr(reply), flush=True)
elif mode == 'big':
    size = int(sys.argv[4])
    s = conn()
    head = b'GET /metrics HTTP/1.1\r\nX-Fill: ' + b'a' * size + b'\r\n\r\n'
    try:
        s.sendall(head)
    except (BrokenPipeError, ConnectionResetError):
        pass
    r = b''
    try:
        while True:
            b = s.recv(4096)
            if not b:
                break
            r += b
    except (ConnectionResetError, socket.timeout):
        pass
    print(r.split(b'\r\n')[0].decode(errors='replace'), flush=True)
"#;

const METRICS: &str = "198.18.0.1:9470";
const URL: &str = "http://198.18.0.1:9470/metrics";
/// Idle connections the test holds (the endpoint keeps 64).
const IDLE: usize = 400;

/// One client of [`CLIENTS`] in `ns`, bounded by `timeout 60`; stdin and
/// stdout are the test's.
fn client(lab: &Lab, ns: &str, args: &[&str]) -> Child {
    let py = lab.dir.path().join("clients.py");
    if !py.exists() {
        lab.write("clients.py", CLIENTS);
    }
    Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "60", "python3"])
        .arg(py)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning the python clients")
}

fn line(out: &mut BufReader<ChildStdout>, what: &str) -> String {
    let mut l = String::new();
    out.read_line(&mut l)
        .unwrap_or_else(|e| panic!("reading {what}: {e}"));
    assert!(!l.is_empty(), "{what}: the client ended without a word");
    l.trim().to_owned()
}

/// The router's threads now.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the router's /proc entry")
        .count()
}

/// The value of the sample line `name` (no labels, or labels included).
fn sample(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{body}"))
}

fn scrape(lab: &Lab, ns: &str) -> String {
    let (code, ctype, body) = lab.http_get(ns, URL).expect("no answer from /metrics");
    assert_eq!(code, 200, "{body}");
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(body.contains("vxrouter_info{host=\"h1\","), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    body
}

/// 400 idle connections, a client trickling a byte every half second and
/// one with a 16 KiB header: the router's threads stay as they were,
/// scrapes are answered while the connections are held, the server closes
/// every idle connection (past the cap at once, the rest at the deadline)
/// and cuts the trickling one before its request is whole, answers the
/// large header with 431, and counts all of it.
#[test]
fn metrics_endpoint_bounded_under_idle_and_slow_clients() {
    require_root!();
    let mut lab = Lab::new("lm1");
    let (h1, cli) = lab.two_hosts("h1", "cli");
    let udp = "uplink_io = \"udp\"";
    let cfg = format!(
        "{OVERLAY}{}{}{}",
        host("h1", 1, H1_VTEP, "0", udp),
        host("h2", 2, H2_VTEP, "0", udp),
        link("h1", "h2", 10)
    );
    let cfg = lab.write("topo.toml", &cfg);
    let r = lab.start_with(&cfg, "h1", &h1, &["--metrics", METRICS]);
    lab.wait_ready(&[r]);
    let pid = lab.routers[r].child.id();
    // nsenter execs the router: the child is the router itself.
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim(),
        "vxrouter"
    );
    wait_for(std::time::Duration::from_secs(5), "a first scrape", || {
        lab.http_get(&cli, URL).filter(|(code, _, _)| *code == 200)
    });
    let before = threads(pid);

    let mut hold = client(
        &lab,
        &cli,
        &["hold", "198.18.0.1", "9470", &IDLE.to_string(), "20"],
    );
    let mut hold_in = hold.stdin.take().expect("holder stdin");
    let mut hold_out = BufReader::new(hold.stdout.take().expect("holder stdout"));
    lab.keep(hold);
    assert_eq!(
        line(&mut hold_out, "the idle connections"),
        format!("open {IDLE}")
    );
    // The trickling client comes after the idle ones: the newest, it is
    // not the one a new connection replaces; only the deadline ends it.
    let mut trickle = client(&lab, &cli, &["trickle", "198.18.0.1", "9470", "0.5"]);
    let mut trickle_out = BufReader::new(trickle.stdout.take().expect("trickle stdout"));
    lab.keep(trickle);

    // While they are held: scrapes answer and the threads stay as many.
    let body = scrape(&lab, &cli);
    let during = threads(pid);
    let _ = scrape(&lab, &cli);
    let during = during.max(threads(pid));
    eprintln!("lm1: router threads {before} before, {during} with {IDLE} idle connections held");
    assert!(
        during <= before,
        "the router went from {before} to {during} threads with {IDLE} idle connections"
    );
    // Every idle connection was taken, and all but the 64 the endpoint
    // keeps were closed at once (each scrape replaces one more).
    assert!(
        sample(&body, "vxrouter_metrics_connections_accepted_total") > IDLE as u64,
        "{body}"
    );
    let rejected = sample(&body, "vxrouter_metrics_connections_rejected_total");
    assert!(
        rejected >= (IDLE - 64) as u64,
        "rejected {rejected}:\n{body}"
    );
    assert!(
        sample(&body, "vxrouter_metrics_connections_open") <= 64,
        "{body}"
    );

    // The server closes every idle connection: the rest at the deadline.
    writeln!(hold_in, "go").expect("telling the holder to watch");
    let closed = line(&mut hold_out, "the closes");
    eprintln!("lm1: {closed}");
    assert!(
        closed.starts_with(&format!("closed {IDLE} of {IDLE} ")),
        "the server left idle connections open: {closed}"
    );
    assert_eq!(
        line(&mut hold_out, "data"),
        "data 0",
        "idle clients got bytes"
    );
    // The trickling client is cut before its request is whole, unanswered.
    let cut = line(&mut trickle_out, "the trickling client");
    eprintln!("lm1: trickle {cut}");
    let w: Vec<&str> = cut.split_whitespace().collect();
    let (sent, len): (usize, usize) = (w[1].parse().expect("sent"), w[3].parse().expect("len"));
    assert!(
        sent < len,
        "a byte every 0.5 s got the whole request in: {cut}"
    );
    assert!(cut.ends_with("reply b''"), "{cut}");

    // A header over the limit: 431.
    let mut big = client(&lab, &cli, &["big", "198.18.0.1", "9470", "16384"]);
    let mut big_out = BufReader::new(big.stdout.take().expect("big stdout"));
    lab.keep(big);
    let status = line(&mut big_out, "the large header's answer");
    assert!(status.starts_with("HTTP/1.1 431 "), "{status}");

    // All of it counted, in /metrics and in the stats file.
    let body = scrape(&lab, &cli);
    let timed_out = sample(&body, "vxrouter_metrics_connections_timed_out_total");
    let rejected = sample(&body, "vxrouter_metrics_connections_rejected_total");
    assert!(
        timed_out >= 2,
        "idle and trickling clients at the deadline:\n{body}"
    );
    assert!(
        rejected + timed_out > IDLE as u64,
        "each idle connection and the trickling one end rejected or timed out:\n{body}"
    );
    assert_eq!(
        sample(&body, "vxrouter_metrics_responses_total{code=\"431\"}"),
        1,
        "{body}"
    );
    assert!(sample(&body, "vxrouter_metrics_responses_total{code=\"200\"}") >= 3);
    let (code, _, _) = lab
        .http_get(&cli, "http://198.18.0.1:9470/nope")
        .expect("no answer");
    assert_eq!(code, 404);
    let s = lab.wait_stats(r, "the server's counters in the stats file", |s| {
        s["metrics_server"]["connections_timed_out"].as_u64() >= Some(timed_out)
            && s["metrics_server"]["responses"]["404"].as_u64() >= Some(1)
    });
    assert!(
        s["metrics_server"]["connections_rejected"].as_u64() >= Some(rejected),
        "{s:#}"
    );
    assert!(threads(pid) <= before);
    lab.assert_alive(r);
}
