//! A fake router for the CNI plugin's tests and bench: a thread serving
//! the control-socket protocol on a temporary Unix socket, keeping
//! attachments in memory (no devices) and recording every request.
//!
//! Use: `mod cni_support;` (tests) or `#[path = "../tests/cni_support/mod.rs"]`
//! (benches).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use vxrouter::api::{
    self, Body, ErrorCode, PortCounters, PortInfo, Reply, Request, Status, MAX_REQUEST,
};

/// Where Debian's containernetworking-plugins puts host-local.
pub const CNI_BIN: &str = "/usr/lib/cni";

/// The fake's host subnets and gateways (RFC 2544 and RFC 5180 blocks).
pub const SUBNETS: [&str; 2] = ["198.19.7.0/24", "2001:2:0:7::/64"];
pub const GATEWAYS: [&str; 2] = ["198.19.7.1", "2001:2:0:7::1"];

/// What the fake router holds and saw.
#[derive(Default)]
pub struct State {
    /// Every request, in order.
    pub requests: Vec<Request>,
    /// Attached ports by id.
    pub attached: BTreeMap<String, PortInfo>,
    /// `status` says not ready, and `attach` answers `not_ready`.
    pub starting: bool,
    /// `attach` answers with this error.
    pub refuse_attach: Option<ErrorCode>,
}

impl State {
    /// The ops of the requests seen, in order.
    pub fn ops(&self) -> Vec<&'static str> {
        self.requests
            .iter()
            .map(|r| match r {
                Request::Status {} => "status",
                Request::Ports {} => "ports",
                Request::Attach(_) => "attach",
                Request::Detach { .. } => "detach",
                Request::Check { .. } => "check",
                Request::Gc { .. } => "gc",
            })
            .collect()
    }
}

/// A fake router serving until dropped.
pub struct FakeRouter {
    pub socket: PathBuf,
    pub state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl FakeRouter {
    pub fn start() -> FakeRouter {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("router.sock");
        let listener = UnixListener::bind(&socket).expect("bind the fake router's socket");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        serve(conn, &state);
                    }
                }
            })
        };
        FakeRouter {
            socket,
            state,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FakeRouter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: UnixStream, state: &Mutex<State>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new((&conn).take(MAX_REQUEST as u64 + 1));
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let reply = match api::decode_request(&line) {
            Err(e) => Reply::error(e.code, e.message),
            Ok(req) => {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                s.requests.push(req.clone());
                answer(&mut s, req)
            }
        };
        if (&conn).write_all(&api::encode_reply(&reply)).is_err() {
            return;
        }
    }
}

fn status(s: &State) -> Status {
    Status {
        version: "test".into(),
        api: vec![api::VERSION],
        host: "fake".into(),
        subnets: SUBNETS.iter().map(|n| n.parse().unwrap()).collect(),
        gateways: GATEWAYS.iter().map(|g| g.parse().unwrap()).collect(),
        mtu: 1450,
        vni: 42,
        udp_port: 4789,
        ready: !s.starting,
        ports: s.attached.len(),
        max_ports: 1024,
        networks: Vec::new(),
    }
}

fn answer(s: &mut State, req: Request) -> Reply {
    match req {
        Request::Status {} => Reply::new(Body::Status(status(s))),
        Request::Ports {} => Reply::new(Body::Ports(s.attached.values().cloned().collect())),
        Request::Attach(a) => {
            if s.starting {
                return Reply::error(ErrorCode::NotReady, "starting");
            }
            if let Some(code) = s.refuse_attach {
                return Reply::error(code, "refused by the test");
            }
            let subnets: Vec<IpNet> = status(s).subnets;
            if let Some(bad) = a
                .addresses
                .iter()
                .find(|x| !subnets.iter().any(|n| n.contains(&x.addr())))
            {
                return Reply::error(ErrorCode::Invalid, format!("{bad} is in no host subnet"));
            }
            if s.attached.contains_key(&a.id) {
                return Reply::error(ErrorCode::Exists, format!("{} is attached", a.id));
            }
            let n = s.attached.len();
            let port = PortInfo {
                id: Some(a.id.clone()),
                name: format!("vxa{n}"),
                kind: a.kind,
                network: a.network.clone().unwrap_or_else(|| "default".into()),
                netns: Some(a.netns.display().to_string()),
                ifname: Some(a.ifname.clone()),
                mac: Some(format!(
                    "02:00:00:00:{:02x}:{:02x}",
                    n >> 8 & 0xff,
                    n & 0xff
                )),
                addresses: a.addresses.clone(),
                gateways: status(s).gateways,
                mtu: 1450,
                counters: PortCounters::default(),
            };
            s.attached.insert(a.id, port.clone());
            Reply::new(Body::Port(port))
        }
        Request::Detach { id } => Reply::new(Body::Detached {
            found: s.attached.remove(&id).is_some(),
        }),
        Request::Check { id } => match s.attached.get(&id) {
            Some(p) => Reply::new(Body::Port(p.clone())),
            None => Reply::error(ErrorCode::NotFound, format!("{id} is not attached")),
        },
        Request::Gc { prefix, keep } => {
            let gone: Vec<String> = s
                .attached
                .keys()
                .filter(|id| id.starts_with(&prefix) && !keep.contains(id))
                .cloned()
                .collect();
            for id in &gone {
                s.attached.remove(id);
            }
            Reply::new(Body::Collected(gone))
        }
    }
}

/// What one run of the plugin printed and how it exited.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// The CNI error code of a failed run.
    pub fn error_code(&self) -> u64 {
        assert_ne!(self.code, 0, "expected a failure; stdout {}", self.stdout);
        self.json()["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no code in {}", self.stdout))
    }
}

/// Runs the plugin binary `bin` with `env` (on top of a clean
/// environment with PATH) and `stdin`.
pub fn run_plugin(bin: &Path, env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut child = Command::new(bin)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("plugin output");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
