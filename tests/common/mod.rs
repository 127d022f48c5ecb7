//! What every integration test shares: the prerequisite checks (root,
//! tools, the shared capture corpus), the one way a test reports that it
//! cannot run, and the network-namespace guards.
//!
//! A test whose prerequisite is missing never passes silently. It calls
//! [`skip`] (directly or through [`require_root`], [`require_tool`],
//! [`shared_pcaps`]) and returns:
//! - under `CI=true`, [`skip`] panics, so the test fails;
//! - elsewhere it writes `SKIPPED: <target>::<test>: <reason>` straight to
//!   the process's stderr (libtest captures only `print!`/`eprint!`, so the
//!   line shows even for a passing test) and appends the same line to the
//!   file `$VXR_SKIP_LOG` names, from which `tools/test` counts the skips.
//!
//! Namespaces: a [`Netns`] guard deletes its namespace on drop, also when
//! the test panics, after killing what still runs in it. Tests name their
//! namespaces with a prefix of their own so they run in parallel.
//!
//! Use: `mod common;` at the top of the test file; support modules reach it
//! as `crate::common`.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether the tests run under CI (`CI=true`), where a skip is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The running test as `<target>::<test>`: libtest names each test's
/// thread after the test.
pub fn test_name() -> String {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    format!("{}::{test}", env!("CARGO_CRATE_NAME"))
}

/// Reports that the running test cannot run, for `reason`; the caller
/// returns right after. Panics under `CI=true`; elsewhere prints
/// `SKIPPED: <test>: <reason>` to stderr and appends it to `$VXR_SKIP_LOG`.
#[track_caller]
pub fn skip(reason: &str) {
    let name = test_name();
    if in_ci() {
        panic!("{name}: cannot run under CI=true: {reason}");
    }
    let line = format!("SKIPPED: {name}: {reason}\n");
    // Straight to the stream: eprintln! would be captured for a passing test.
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(log) = std::env::var_os("VXR_SKIP_LOG") {
        // One append of one short line: parallel tests do not interleave.
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            panic!(
                "{name}: writing the skip to {}: {e}",
                Path::new(&log).display()
            );
        }
    }
}

/// Whether the process's effective user is root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// True when running as root; otherwise reports the skip ([`skip`]) with
/// `needs root (<why>)` and returns false: `if !require_root(..) { return; }`.
#[must_use]
#[track_caller]
pub fn require_root(why: &str) -> bool {
    if is_root() {
        return true;
    }
    skip(&format!("needs root ({why})"));
    false
}

/// Whether `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when `tool` is on PATH; otherwise reports the skip and returns false.
#[must_use]
#[track_caller]
pub fn require_tool(tool: &str) -> bool {
    if have(tool) {
        return true;
    }
    skip(&format!("{tool} is not installed"));
    false
}

/// True when every tool is on PATH; otherwise reports one skip naming the
/// missing ones and returns false.
#[must_use]
#[track_caller]
pub fn require_tools(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return true;
    }
    skip(&format!("not installed: {}", missing.join(", ")));
    false
}

/// Where the shared capture corpus lives: `$VXR_SHARED_PCAPS`, else
/// `../shared/pcaps` beside the repository (where CI places `shared/`).
pub fn shared_pcaps_dir() -> PathBuf {
    match std::env::var_os("VXR_SHARED_PCAPS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps"),
    }
}

/// The captures (`.pcap`, `.pcapng`) of the shared corpus, sorted; when
/// the directory is absent or holds none, reports the skip and returns None.
#[track_caller]
pub fn shared_pcaps() -> Option<Vec<PathBuf>> {
    let dir = shared_pcaps_dir();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        skip(&format!(
            "shared capture corpus {} absent (set VXR_SHARED_PCAPS)",
            dir.display()
        ));
        return None;
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    if files.is_empty() {
        skip(&format!("no captures in {}", dir.display()));
        return None;
    }
    files.sort();
    Some(files)
}

/// Runs a command; panics with its output when it fails; returns stdout.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command and reports only whether it succeeded.
pub fn sh_ok(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Kills what still runs in namespace `name` and deletes it; quiet when it
/// does not exist.
pub fn remove_netns(name: &str) {
    if let Ok(o) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).output();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).output();
}

/// The bind-mount path of namespace `name`, for setns and nsenter.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/var/run/netns").join(name)
}

/// A network namespace that is deleted (with what runs in it) when the
/// guard drops. Deleting a namespace deletes its devices; a veth pair goes
/// with either end.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates namespace `name` (deleting a stale one a killed run left)
    /// with its loopback up.
    pub fn new(name: &str) -> Netns {
        let ns = Netns::adopt(name);
        sh(&["ip", "netns", "add", name]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Takes charge of namespace `name` that the test or the code under
    /// test creates: deletes a stale one now and whatever exists at drop.
    pub fn adopt(name: &str) -> Netns {
        remove_netns(name);
        Netns {
            name: name.to_string(),
        }
    }

    /// The namespace's bind-mount path, for setns.
    pub fn path(&self) -> PathBuf {
        netns_path(&self.name)
    }

    /// Runs a command inside the namespace (`ip netns exec`); must succeed.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Like [`Netns::exec`] but only reports success.
    pub fn exec_ok(&self, args: &[&str]) -> bool {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh_ok(&full)
    }

    /// Runs `f` on a new thread that has entered this namespace, and
    /// returns its result (re-raising its panic). Sockets and devices `f`
    /// opens live in the namespace, wherever they are used afterwards.
    #[cfg(target_os = "linux")]
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        run_in(&self.name, f)
    }

    /// The MAC address of `dev` in this namespace.
    pub fn mac(&self, dev: &str) -> [u8; 6] {
        let out = sh(&["ip", "-n", &self.name, "link", "show", dev]);
        let word = out
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC for {dev} in {out}"));
        let mut mac = [0u8; 6];
        for (i, b) in word.split(':').enumerate().take(6) {
            mac[i] = u8::from_str_radix(b, 16).expect("hex MAC");
        }
        mac
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove_netns(&self.name);
    }
}

/// Runs `f` on a new thread inside namespace `name`; see [`Netns::run`].
#[cfg(target_os = "linux")]
pub fn run_in<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in(name, f)
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Starts `f` on a new thread inside namespace `name`.
#[cfg(target_os = "linux")]
pub fn spawn_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = netns_path(name);
    std::thread::spawn(move || {
        vxrouter::port::sys::enter_netns(&path).expect("setns into test namespace");
        f()
    })
}
