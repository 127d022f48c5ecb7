//! A lab of network namespaces for the live router tests.
//!
//! Every test builds its own namespaces named `<prefix>-<name>` (prefixes
//! differ per test so they run in parallel), uses addresses from
//! 198.18.0.0/15 and 2001:2::/48 only, and owns everything through a [`Lab`]
//! whose Drop stops the routers (SIGTERM, wait, SIGKILL), kills what still
//! runs in its namespaces and deletes them, also when the test panics.
//! Every command run here is bounded (`timeout`, ping -W, socket timeouts).
//!
//! The root check and the namespace removal are `crate::common`'s: a test
//! file declares `mod common;` beside `mod live_support;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Skips the test (`crate::common::skip`: SKIPPED, or a failure under
/// `CI=true`) unless it runs as root and the tools the lab uses exist.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::common::require_root("network namespaces, XDP, AF_XDP, TUN")
            || !$crate::common::require_tools(&[
                "ip", "nsenter", "python3", "ping", "timeout", "bridge", "ethtool",
            ])
        {
            return;
        }
    };
}

pub use crate::common::have;

/// Underlay MACs of hosts 1..=3 (their `eth0`) and their VTEP MACs.
pub const H1_MAC: &str = "02:00:c6:12:00:01";
pub const H2_MAC: &str = "02:00:c6:12:00:02";
pub const H3_MAC: &str = "02:00:c6:12:00:03";
pub const H1_VTEP: &str = "02:00:c6:13:01:00";
pub const H2_VTEP: &str = "02:00:c6:13:02:00";
pub const H3_VTEP: &str = "02:00:c6:13:03:00";

/// The `[overlay]` the live tests share.
pub const OVERLAY: &str = "[overlay]\nvni = 42\n";

/// A `[[hosts]]` entry of host number `n` (underlay 198.18.0.`n` on
/// `eth0`, subnets 198.19.`n`.0/24 and 2001:2:0:`n`::/64); `extra` is more
/// TOML of the entry (fields, then its `[[hosts.ports]]`).
pub fn host(name: &str, n: u8, vtep: &str, workers: &str, extra: &str) -> String {
    format!(
        r#"
[[hosts]]
name = "{name}"
underlay = "198.18.0.{n}"
vtep_mac = "{vtep}"
subnets = ["198.19.{n}.0/24", "2001:2:0:{n}::/64"]
nic = "eth0"
workers = [{workers}]
{extra}
"#
    )
}

/// A `[[hosts.ports]]` entry with one address per family.
pub fn port(name: &str, kind: &str, netns: &str, v4: &str, v6: &str) -> String {
    format!(
        r#"
  [[hosts.ports]]
  name = "{name}"
  kind = "{kind}"
  netns = "{netns}"
  addresses = ["{v4}/32", "{v6}/128"]
"#
    )
}

/// A `[[links]]` entry.
pub fn link(a: &str, b: &str, cost: u32) -> String {
    format!("\n[[links]]\na = \"{a}\"\nb = \"{b}\"\ncost = {cost}\n")
}

/// Runs a command in the current namespace; panics with its output on
/// failure; returns stdout.
pub fn cmd(args: &[&str]) -> String {
    crate::common::sh(args)
}

fn quiet(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawning {args:?}: {e}"))
}

/// Removes ANSI colour sequences (tracing colours its output).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Polls `f` every 50 ms until it returns Some, or panics after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Python helper: one bounded UDP or TCP exchange.
///
/// `server ADDR PORT`: prints `ready`, answers (UDP: echoes every datagram
/// for 1 s after the first; TCP: one connection, reads to EOF, replies
/// `len:<bytes>`), exits; 10 s timeout. `client ADDR PORT N`: UDP sends `N`
/// bytes up to 5 times until an echo comes back; TCP sends `N` bytes, shuts
/// down its write side and prints the reply.
const PY: &str = r#"
import socket, sys, time
mode, role, addr, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
fam = socket.AF_INET6 if ':' in addr else socket.AF_INET
typ = socket.SOCK_DGRAM if mode == 'udp' else socket.SOCK_STREAM
s = socket.socket(fam, typ)
s.settimeout(10)
if role == 'server':
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    if mode == 'tcp':
        s.listen(1)
    print('ready', flush=True)
    if mode == 'udp':
        data, peer = s.recvfrom(65535)
        s.sendto(b'echo:' + data, peer)
        s.settimeout(1)
        try:
            while True:
                data, peer = s.recvfrom(65535)
                s.sendto(b'echo:' + data, peer)
        except socket.timeout:
            pass
    else:
        c, _ = s.accept()
        c.settimeout(10)
        n = 0
        while True:
            b = c.recv(65536)
            if not b:
                break
            n += len(b)
        c.sendall(b'len:%d' % n)
        c.close()
else:
    n = int(sys.argv[5])
    payload = bytes((i * 7) % 251 for i in range(n))
    if mode == 'udp':
        s.settimeout(1)
        for _ in range(5):
            s.sendto(payload, (addr, port))
            try:
                data, _ = s.recvfrom(65535)
            except socket.timeout:
                continue
            assert data == b'echo:' + payload, 'corrupted echo'
            print('ok', len(data) - 5)
            sys.exit(0)
        sys.exit('no UDP echo')
    else:
        for attempt in range(20):
            try:
                s.connect((addr, port))
                break
            except ConnectionRefusedError:
                s.close(); time.sleep(0.1); s = socket.socket(fam, typ); s.settimeout(10)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        r = b''
        while True:
            b = s.recv(100)
            if not b:
                break
            r += b
        print(r.decode())
"#;

/// Numbered, bounded streams with loss and gap reports (see its docstring).
const STREAM: &str = include_str!("stream.py");

/// Starts `stream.py ARGS` in `ns` (150 s at most).
pub fn stream(lab: &Lab, ns: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "150", "python3"])
        .arg(lab.dir.path().join("stream.py"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning stream.py")
}

/// A receiver of stream.py, listening.
pub struct Receiver {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

/// Starts a stream.py receiver and waits until it listens.
pub fn receiver(lab: &Lab, ns: &str, args: &[&str]) -> Receiver {
    let mut child = stream(lab, ns, args);
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    assert_eq!(line.trim(), "ready", "stream.py {args:?} in {ns}");
    Receiver { child, out }
}

/// Waits for a receiver and parses its JSON report.
pub fn report(mut r: Receiver) -> Value {
    use std::io::Read;
    let mut out = String::new();
    let _ = r.out.read_to_string(&mut out);
    let st = r.child.wait().expect("stream.py exit");
    let mut err = String::new();
    if let Some(mut e) = r.child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(st.success(), "stream.py failed ({st}): {out}{err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("report {out:?}: {e}"))
}

/// One router process.
pub struct Router {
    pub host: String,
    pub ns: String,
    pub child: Child,
    pub stats: PathBuf,
    pub log: PathBuf,
}

/// Namespaces, routers and helpers of one test; Drop tears it all down.
pub struct Lab {
    pub prefix: String,
    pub dir: tempfile::TempDir,
    namespaces: Vec<String>,
    pub routers: Vec<Router>,
    background: Vec<Child>,
    /// The `vxrouter` executable the next start runs: this build's, unless
    /// a test runs another (an older build handing over to this one).
    pub router_bin: PathBuf,
}

impl Lab {
    /// A new lab; removes namespaces an earlier, killed run with the same
    /// prefix left behind.
    pub fn new(prefix: &str) -> Lab {
        let list = cmd(&["ip", "netns", "list"]);
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if ns.starts_with(&format!("{prefix}-")) {
                crate::common::remove_netns(ns);
            }
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("vxrouter-{prefix}-"))
            .tempdir()
            .expect("tempdir");
        std::fs::write(dir.path().join("x.py"), PY).expect("writing the python helper");
        std::fs::write(dir.path().join("stream.py"), STREAM).expect("writing stream.py");
        Lab {
            prefix: prefix.to_owned(),
            dir,
            namespaces: Vec::new(),
            routers: Vec::new(),
            background: Vec::new(),
            router_bin: PathBuf::from(env!("CARGO_BIN_EXE_vxrouter")),
        }
    }

    /// The full name of namespace `short`.
    pub fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// Creates namespace `short` with lo up; returns its full name.
    pub fn ns(&mut self, short: &str) -> String {
        let full = self.name(short);
        self.namespaces.push(full.clone());
        cmd(&["ip", "netns", "add", &full]);
        cmd(&["ip", "-n", &full, "link", "set", "lo", "up"]);
        full
    }

    /// Registers a namespace someone else (the router) creates, so Drop
    /// removes it too; returns its full name.
    pub fn adopt(&mut self, short: &str) -> String {
        let full = self.name(short);
        self.namespaces.push(full.clone());
        full
    }

    /// A veth pair `a`@`ns_a` -- `b`@`ns_b` (two queues per side so the
    /// router can run a worker per queue), both ends up, with fixed MACs.
    pub fn veth(&self, ns_a: &str, a: &str, mac_a: &str, ns_b: &str, b: &str, mac_b: &str) {
        cmd(&[
            "ip",
            "link",
            "add",
            a,
            "netns",
            ns_a,
            "numtxqueues",
            "2",
            "numrxqueues",
            "2",
            "address",
            mac_a,
            "type",
            "veth",
            "peer",
            "name",
            b,
            "netns",
            ns_b,
            "numtxqueues",
            "2",
            "numrxqueues",
            "2",
            "address",
            mac_b,
        ]);
        cmd(&["ip", "-n", ns_a, "link", "set", a, "up"]);
        cmd(&["ip", "-n", ns_b, "link", "set", b, "up"]);
    }

    /// Namespaces `a` and `b` joined by an underlay veth (`eth0` on each
    /// side, [`H1_MAC`] and [`H2_MAC`], 198.18.0.1/24 and .2/24); returns
    /// their full names.
    pub fn two_hosts(&mut self, a: &str, b: &str) -> (String, String) {
        let na = self.ns(a);
        let nb = self.ns(b);
        self.veth(&na, "eth0", H1_MAC, &nb, "eth0", H2_MAC);
        self.ip(&na, &["addr", "add", "198.18.0.1/24", "dev", "eth0"]);
        self.ip(&nb, &["addr", "add", "198.18.0.2/24", "dev", "eth0"]);
        (na, nb)
    }

    /// Makes `host_ns` a flannel-style kernel VXLAN host number `me` (VNI
    /// 42, port 4789, underlay 198.18.0.`me` on eth0): a VXLAN device whose
    /// MAC is `my_vtep`, a route to peer `peer`'s container subnet
    /// 198.19.`peer`.0/24 via its gateway address (onlink), a permanent
    /// neighbour entry for that gateway (`peer_vtep`, the inner destination
    /// MAC a vxrouter peer accepts) and an FDB entry sending that MAC to the
    /// peer's underlay. Its container `cont_ns` (a plain veth routed by the
    /// kernel) gets 198.19.`me`.2/24.
    pub fn kernel_vtep(
        &self,
        host_ns: &str,
        cont_ns: &str,
        me: u8,
        my_vtep: &str,
        peer: u8,
        peer_vtep: &str,
    ) {
        let local = format!("198.18.0.{me}");
        let peer_underlay = format!("198.18.0.{peer}");
        let peer_gw = format!("198.19.{peer}.1");
        let h = host_ns;
        self.ip(
            h,
            &[
                "link",
                "add",
                "vxlan42",
                "address",
                my_vtep,
                "type",
                "vxlan",
                "id",
                "42",
                "dstport",
                "4789",
                "local",
                &local,
                "dev",
                "eth0",
                "nolearning",
            ],
        );
        self.ip(h, &["link", "set", "vxlan42", "mtu", "1450", "up"]);
        self.ip(
            h,
            &[
                "addr",
                "add",
                &format!("198.19.{me}.0/32"),
                "dev",
                "vxlan42",
            ],
        );
        self.ip(
            h,
            &[
                "route",
                "add",
                &format!("198.19.{peer}.0/24"),
                "via",
                &peer_gw,
                "dev",
                "vxlan42",
                "onlink",
            ],
        );
        self.ip(
            h,
            &[
                "neigh",
                "add",
                &peer_gw,
                "lladdr",
                peer_vtep,
                "dev",
                "vxlan42",
                "nud",
                "permanent",
            ],
        );
        cmd(&[
            "bridge",
            "-n",
            h,
            "fdb",
            "add",
            peer_vtep,
            "dev",
            "vxlan42",
            "dst",
            &peer_underlay,
            "self",
            "permanent",
        ]);
        self.veth(
            h,
            "vc2",
            &format!("02:00:c6:13:0{me}:01"),
            cont_ns,
            "eth0",
            &format!("02:00:c6:13:0{me}:02"),
        );
        self.ip(
            h,
            &["addr", "add", &format!("198.19.{me}.1/24"), "dev", "vc2"],
        );
        self.ip(
            cont_ns,
            &["addr", "add", &format!("198.19.{me}.2/24"), "dev", "eth0"],
        );
        self.ip(cont_ns, &["link", "set", "eth0", "mtu", "1450"]);
        self.ip(
            cont_ns,
            &["route", "add", "default", "via", &format!("198.19.{me}.1")],
        );
        self.exec_ok(h, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    }

    /// `ip -n NS ARGS...`, must succeed.
    pub fn ip(&self, ns: &str, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", ns];
        v.extend_from_slice(args);
        cmd(&v)
    }

    /// Runs `args` inside `ns` (bounded by `timeout 30`).
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        let mut v = vec!["ip", "netns", "exec", ns, "timeout", "30"];
        v.extend_from_slice(args);
        quiet(&v)
    }

    /// Runs `args` inside `ns`; must succeed; returns stdout.
    pub fn exec_ok(&self, ns: &str, args: &[&str]) -> String {
        let o = self.exec(ns, args);
        assert!(
            o.status.success(),
            "in {ns}: {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Writes a file in the lab's tempdir.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("writing a lab file");
        p
    }

    /// Starts `vxrouter run` for `host` inside `ns`; returns its index.
    ///
    /// nsenter, not `ip netns exec`: the latter gives the router a private
    /// mount namespace and the container namespaces it creates would not be
    /// visible outside.
    pub fn start(&mut self, config: &Path, host: &str, ns: &str) -> usize {
        self.start_with(config, host, ns, &[])
    }

    /// [`Lab::start`] with more `vxrouter run` arguments.
    pub fn start_with(&mut self, config: &Path, host: &str, ns: &str, extra: &[&str]) -> usize {
        self.start_as(config, host, ns, host, extra)
    }

    /// [`Lab::start_with`] with its log and stats files named after
    /// `label` (a second router of the same host: a takeover).
    pub fn start_as(
        &mut self,
        config: &Path,
        host: &str,
        ns: &str,
        label: &str,
        extra: &[&str],
    ) -> usize {
        self.start_env(config, host, ns, label, extra, &[])
    }

    /// [`Lab::start_as`] with environment variables for the router.
    pub fn start_env(
        &mut self,
        config: &Path,
        host: &str,
        ns: &str,
        label: &str,
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> usize {
        let stats = self.dir.path().join(format!("{label}.json"));
        let log = self.dir.path().join(format!("{label}.log"));
        let _ = std::fs::remove_file(&stats);
        let logf = std::fs::File::create(&log).expect("router log");
        // Each lab's own control socket: tests run in parallel with the
        // same host names, and the default path is per host name.
        let socket = self.socket_path(host);
        let own_socket = !extra
            .iter()
            .any(|a| *a == "--socket" || *a == "--no-socket");
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{ns}"))
            .arg(&self.router_bin)
            .args(["run", "--config"])
            .arg(config)
            .args(["--host", host, "--stats-file"])
            .arg(&stats)
            .args(["--log-interval", "1"])
            .args(if own_socket {
                vec![
                    "--socket".to_owned(),
                    socket.display().to_string(),
                    "--state-dir".to_owned(),
                    self.dir
                        .path()
                        .join(format!("{host}.state"))
                        .display()
                        .to_string(),
                ]
            } else {
                vec![]
            })
            .args(extra)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log fd"))
            .stderr(logf)
            .spawn()
            .expect("spawning vxrouter");
        self.routers.push(Router {
            host: host.to_owned(),
            ns: ns.to_owned(),
            child,
            stats,
            log,
        });
        self.routers.len() - 1
    }

    /// The control socket of `host`'s router as [`Lab::start`] gives it.
    pub fn socket_path(&self, host: &str) -> PathBuf {
        self.dir.path().join(format!("{host}.sock"))
    }

    /// The router's log so far (colours removed).
    pub fn log(&self, r: usize) -> String {
        strip_ansi(&std::fs::read_to_string(&self.routers[r].log).unwrap_or_default())
    }

    /// The last stats the router wrote, if any.
    pub fn try_stats(&self, r: usize) -> Option<Value> {
        let text = std::fs::read_to_string(&self.routers[r].stats).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The last stats the router wrote.
    pub fn stats(&self, r: usize) -> Value {
        self.try_stats(r)
            .unwrap_or_else(|| panic!("no stats from {}", self.routers[r].host))
    }

    /// Panics (with the log) if the router exited.
    pub fn assert_alive(&mut self, r: usize) {
        if let Ok(Some(st)) = self.routers[r].child.try_wait() {
            panic!(
                "router {} exited ({st}):\n{}",
                self.routers[r].host,
                self.log(r)
            );
        }
    }

    /// Stops router `r` with SIGTERM and waits (10 s at most) until it has
    /// exited; panics if it does not.
    pub fn stop(&mut self, r: usize) {
        self.signal(r, "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.routers[r].child.try_wait(), Ok(None)) {
            assert!(
                Instant::now() < deadline,
                "router {} ignored SIGTERM for 10 s",
                self.routers[r].host
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every router's stats show no unresolved peer.
    pub fn wait_ready(&mut self, routers: &[usize]) {
        let deadline = Instant::now() + Duration::from_secs(25);
        for &r in routers {
            loop {
                self.assert_alive(r);
                if let Some(s) = self.try_stats(r) {
                    if s["unresolved_peers"]
                        .as_array()
                        .is_some_and(|a| a.is_empty())
                    {
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "router {} not ready in 25 s:\n{}",
                    self.routers[r].host,
                    self.log(r)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Waits (5 s at most) until the router's stats satisfy `pred`.
    pub fn wait_stats(&mut self, r: usize, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.assert_alive(r);
            if let Some(s) = self.try_stats(r) {
                if pred(&s) {
                    return s;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "router {}: {what} not seen in 5 s; stats {:?}\n{}",
                    self.routers[r].host,
                    self.try_stats(r),
                    self.log(r)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An HTTP GET of `url` from inside `ns` (python3's urllib, 3 s
    /// timeout): status, Content-Type and body; `None` if nothing answered.
    pub fn http_get(&self, ns: &str, url: &str) -> Option<(u16, String, String)> {
        const GET: &str = "import sys, urllib.request, urllib.error\n\
try:\n    r = urllib.request.urlopen(sys.argv[1], timeout=3)\n\
except urllib.error.HTTPError as e:\n    r = e\n\
print(r.status)\nprint(r.headers.get('Content-Type'))\n\
sys.stdout.write(r.read().decode())\n";
        let o = self.exec(ns, &["timeout", "5", "python3", "-c", GET, url]);
        if !o.status.success() {
            return None;
        }
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let mut parts = out.splitn(3, '\n');
        let status = parts.next()?.trim().parse().ok()?;
        let ctype = parts.next()?.trim().to_owned();
        Some((status, ctype, parts.next().unwrap_or("").to_owned()))
    }

    /// Sends a signal to router `r`.
    pub fn signal(&self, r: usize, sig: &str) {
        cmd(&[
            "kill",
            &format!("-{sig}"),
            &self.routers[r].child.id().to_string(),
        ]);
    }

    /// Pings `dst` from `ns` until the path works (10 s at most), then
    /// three more that must all come back; returns the average RTT in ms
    /// (and prints the maximum when above 5 ms).
    pub fn ping(&self, ns: &str, dst: &str) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self
                .exec(ns, &["ping", "-n", "-c", "1", "-W", "1", dst])
                .status
                .success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "{ns} cannot ping {dst} for 10 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        // -w, not -W: once some replies came, -W only waits two RTTs for
        // the last one, and a reply a few ms late on a busy machine would
        // count as lost; -w waits for all three (5 s at most).
        let out = self.exec_ok(ns, &["ping", "-n", "-c", "3", "-i", "0.2", "-w", "5", dst]);
        assert!(
            out.contains(" 3 received"),
            "{ns} -> {dst}: lost pings:\n{out}"
        );
        let (avg, max) = rtt_avg_max(&out).unwrap_or_else(|| panic!("no rtt in {out}"));
        if max > 5.0 {
            eprintln!(
                "{}: {ns} -> {dst}: slow reply, max rtt {max:.3} ms",
                self.prefix
            );
        }
        avg
    }

    /// Pings must fail (no reply within 1 s, twice).
    pub fn ping_fails(&self, ns: &str, dst: &str) {
        let o = self.exec(ns, &["ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", dst]);
        assert!(!o.status.success(), "{ns} -> {dst} unexpectedly answered");
    }

    /// One bounded exchange over `mode` ("udp" or "tcp") from a client in
    /// `cli_ns` to a server bound to `addr`:`port` in `srv_ns`, with `n`
    /// payload bytes.
    pub fn exchange(
        &mut self,
        mode: &str,
        srv_ns: &str,
        cli_ns: &str,
        addr: &str,
        port: u16,
        n: usize,
    ) {
        let py = self.dir.path().join("x.py");
        let py = py.to_str().expect("utf-8 tempdir");
        let port_s = port.to_string();
        let mut server = Command::new("ip")
            .args([
                "netns", "exec", srv_ns, "timeout", "15", "python3", py, mode, "server", addr,
                &port_s,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the python server");
        let mut line = String::new();
        let mut out = BufReader::new(server.stdout.take().expect("server stdout"));
        let _ = out.read_line(&mut line);
        if line.trim() != "ready" {
            let _ = server.kill();
            let o = server.wait_with_output().expect("server output");
            panic!(
                "{mode} server in {srv_ns} on {addr}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let n_s = n.to_string();
        let o = self.exec(
            cli_ns,
            &["python3", py, mode, "client", addr, &port_s, &n_s],
        );
        let reply = String::from_utf8_lossy(&o.stdout).into_owned();
        if !o.status.success() {
            let _ = server.kill();
            let _ = server.wait();
            panic!(
                "{mode} {cli_ns} -> {addr}:{port} failed: {reply}{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let st = server.wait().expect("server exit");
        assert!(st.success(), "{mode} server in {srv_ns} failed ({st})");
        let want = if mode == "tcp" {
            format!("len:{n}")
        } else {
            format!("ok {n}")
        };
        assert_eq!(reply.trim(), want, "{mode} {cli_ns} -> {addr}:{port}");
    }

    /// Keeps a background process of the test so Drop ends it.
    pub fn keep(&mut self, c: Child) {
        self.background.push(c);
    }

    /// A short iperf3 TCP run (2 s) from `cli_ns` to `addr` in `srv_ns`;
    /// returns the receiver's Gbit/s, or None when iperf3 is missing.
    pub fn iperf_tcp(&mut self, srv_ns: &str, cli_ns: &str, addr: &str) -> Option<f64> {
        if !have("iperf3") {
            return None;
        }
        let server = Command::new("ip")
            .args([
                "netns", "exec", srv_ns, "timeout", "15", "iperf3", "-s", "-1", "-B", addr,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning iperf3 -s");
        self.keep(server);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let o = self.exec(cli_ns, &["iperf3", "-c", addr, "-t", "2", "-f", "g"]);
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            if o.status.success() {
                return text.lines().find(|l| l.contains("receiver")).and_then(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    w.iter()
                        .position(|x| *x == "Gbits/sec")
                        .and_then(|i| w[i - 1].parse().ok())
                });
            }
            assert!(
                Instant::now() < deadline,
                "iperf3 {cli_ns} -> {addr} failed: {text}{}",
                String::from_utf8_lossy(&o.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The average and maximum of `rtt min/avg/max/mdev = a/b/c/d ms`.
fn rtt_avg_max(ping: &str) -> Option<(f64, f64)> {
    let l = ping.lines().find(|l| l.contains("min/avg/max"))?;
    let nums: Vec<&str> = l.split('=').nth(1)?.trim().split('/').collect();
    Some((nums.get(1)?.parse().ok()?, nums.get(2)?.parse().ok()?))
}

/// Drops that must not appear in a healthy run: malformed or misrouted
/// traffic, refused transmissions. (control_plane, eth_not_for_us,
/// arp_not_for_us, ip_bad_source and eth_unsupported are the containers'
/// own link chatter: router solicitations, MLD, DAD.)
pub const BAD_DROPS: &[&str] = &[
    "frame_too_long",
    "eth_truncated",
    "ip_malformed",
    "ip_bad_checksum",
    "spoofed_source",
    "ttl_expired",
    "no_route",
    "too_big",
    "too_big_no_df",
    "outer_fragment",
    "udp_malformed",
    "udp_bad_checksum",
    "vxlan_truncated",
    "vxlan_bad_flags",
    "vxlan_unknown_vni",
    "unknown_peer",
    "vxlan_from_self",
    "neigh_bad_mac",
    "underlay_too_big",
    "inner_not_for_us",
    "inner_not_ip",
    "no_headroom",
    "nd_malformed",
    "icmp_bad_checksum",
    "tx_full",
    "port_down",
];

/// Panics if the stats show a drop of [`BAD_DROPS`] or I/O errors.
pub fn assert_clean(host: &str, s: &Value) {
    let drops = s["drops"].as_object().cloned().unwrap_or_default();
    for (k, v) in &drops {
        assert!(
            !BAD_DROPS.contains(&k.as_str()),
            "{host}: unexpected drops {k}={v}; stats {s:#}"
        );
    }
    assert_eq!(
        s["io_errors"].as_u64(),
        Some(0),
        "{host}: I/O errors; stats {s:#}"
    );
}

/// The stats' forwarded counter.
pub fn forwarded(s: &Value) -> u64 {
    s["forwarded"].as_u64().unwrap_or(0)
}

impl Drop for Lab {
    fn drop(&mut self) {
        for r in &mut self.routers {
            if matches!(r.child.try_wait(), Ok(None)) {
                let _ = Command::new("kill")
                    .args(["-TERM", &r.child.id().to_string()])
                    .output();
            }
        }
        for r in &mut self.routers {
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(r.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(r.child.try_wait(), Ok(None)) {
                eprintln!("router {} ignored SIGTERM for 5 s: SIGKILL", r.host);
                let _ = r.child.kill();
                let _ = r.child.wait();
            }
        }
        if std::thread::panicking() {
            for r in &self.routers {
                let log = strip_ansi(&std::fs::read_to_string(&r.log).unwrap_or_default());
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("---- {} log (last lines) ----", r.host);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        for c in &mut self.background {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            crate::common::remove_netns(ns);
        }
    }
}

/// systemd's side of the notify protocol: a datagram socket at a path in
/// the lab's directory, for `$NOTIFY_SOCKET`.
pub struct NotifySocket {
    pub path: PathBuf,
    sock: std::os::unix::net::UnixDatagram,
}

impl NotifySocket {
    pub fn bind(lab: &Lab) -> NotifySocket {
        let path = lab.dir.path().join("notify.sock");
        let sock =
            std::os::unix::net::UnixDatagram::bind(&path).expect("binding the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("notify socket timeout");
        NotifySocket { path, sock }
    }

    /// The next notification within `limit`, or `None`.
    pub fn next(&self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.sock.recv(&mut buf) {
                Ok(n) => return Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                // A signal (a router of the test exiting) interrupts the
                // wait: read again.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => panic!("reading the notify socket: {e}"),
            }
        }
        None
    }

    /// Reads notifications until one whose first line starts with `want`;
    /// returns the first lines of those before it, and its own. Panics
    /// with router `r`'s log when none comes within `limit`.
    pub fn until(&self, want: &str, limit: Duration, lab: &Lab, r: usize) -> (Vec<String>, String) {
        let deadline = Instant::now() + limit;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(m) = self.next(left) else {
                panic!("no {want} in {limit:?} (got {before:?}):\n{}", lab.log(r));
            };
            let first = m.lines().next().unwrap_or("").to_owned();
            if first.starts_with(want) {
                return (before, first);
            }
            before.push(first);
        }
    }
}
