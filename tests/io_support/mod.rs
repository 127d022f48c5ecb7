//! Shared helpers of the netns integration tests (tests/io_*.rs): root
//! check, namespace guards that tear down on drop (also on panic), and
//! running code inside a namespace on a dedicated thread.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

/// True when running as root; otherwise prints why the test is skipped.
pub fn require_root(test: &str) -> bool {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string());
    if uid.as_deref() == Some("0") {
        true
    } else {
        eprintln!("skipping {test}: needs root (network namespaces, XDP, TUN)");
        false
    }
}

/// Runs a command, panicking with its stderr when it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command and reports only whether it succeeded.
pub fn sh_ok(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A network namespace that is deleted when the guard drops.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates namespace `name` (deleting a stale one left by a killed run)
    /// with its loopback up.
    pub fn new(name: &str) -> Netns {
        let _ = sh_ok(&["ip", "netns", "del", name]);
        sh(&["ip", "netns", "add", name]);
        let ns = Netns {
            name: name.to_string(),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's bind-mount path, for setns.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// Runs a command inside the namespace (`ip netns exec`).
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
        // Deleting the namespace deletes the devices in it (veth pairs go
        // with either end).
        let _ = sh_ok(&["ip", "netns", "del", &self.name]);
    }
}

/// Sends one ICMP echo request from namespace `ns` to `dst` and waits up to
/// `timeout_s` for the reply. Uses python3's raw sockets because a fresh
/// Debian has no `ping` (iputils-ping) installed.
pub fn icmp_ping(ns: &str, dst: &str, timeout_s: u32) -> bool {
    const SCRIPT: &str = r#"
import socket, struct, sys, time
dst, timeout = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(timeout)
def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16: t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
body = struct.pack("!HH", 0x7678, 1) + b"vxrouter-io-test"
msg = struct.pack("!BBH", 8, 0, csum(struct.pack("!BBH", 8, 0, 0) + body)) + body
s.sendto(msg, (dst, 0))
end = time.time() + timeout
while time.time() < end:
    try:
        data, addr = s.recvfrom(2048)
    except socket.timeout:
        break
    ihl = (data[0] & 15) * 4
    if addr[0] == dst and data[ihl] == 0 and data[ihl + 4:ihl + 6] == b"\x76\x78":
        sys.exit(0)
sys.exit(1)
"#;
    sh_ok(&[
        "ip",
        "netns",
        "exec",
        ns,
        "python3",
        "-c",
        SCRIPT,
        dst,
        &timeout_s.to_string(),
    ])
}

/// Runs `f` on a new thread inside namespace `name`; see [`Netns::run`].
pub fn run_in<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in(name, f)
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Starts `f` on a new thread inside namespace `name`.
pub fn spawn_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = PathBuf::from("/var/run/netns").join(name);
    std::thread::spawn(move || {
        vxrouter::port::sys::enter_netns(&path).expect("setns into test namespace");
        f()
    })
}

/// Two namespaces `<prefix>a` and `<prefix>b` joined by a veth pair:
/// `io-va` (198.18.100.1/24) in the first, `io-vb` (198.18.100.2/24) in the
/// second. Device names repeat across tests; they live in different
/// namespaces.
pub fn veth_pair(prefix: &str) -> (Netns, Netns) {
    let a = Netns::new(&format!("{prefix}a"));
    let b = Netns::new(&format!("{prefix}b"));
    sh(&[
        "ip", "-n", &a.name, "link", "add", "io-va", "type", "veth", "peer", "name", "io-vb",
        "netns", &b.name,
    ]);
    a.exec(&["ip", "addr", "add", "198.18.100.1/24", "dev", "io-va"]);
    b.exec(&["ip", "addr", "add", "198.18.100.2/24", "dev", "io-vb"]);
    a.exec(&["ip", "link", "set", "io-va", "up"]);
    b.exec(&["ip", "link", "set", "io-vb", "up"]);
    (a, b)
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 UDP packet (no Ethernet header) with a valid IP checksum and a
/// UDP checksum of 0 ("no checksum", allowed over IPv4 by RFC 768).
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// `ipv4_udp` behind an Ethernet header.
pub fn eth_ipv4_udp(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 28 + payload.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ipv4_udp(src, dst, sport, dport, payload));
    f
}

/// The UDP destination port and payload of an Ethernet/IPv4/UDP frame.
pub fn udp_of_frame(f: &[u8]) -> Option<(u16, &[u8])> {
    if f.len() < 14 + 20 + 8 || f[12..14] != [0x08, 0x00] || f[14 + 9] != 17 {
        return None;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let udp = 14 + ihl;
    let dport = u16::from_be_bytes([*f.get(udp + 2)?, *f.get(udp + 3)?]);
    Some((dport, f.get(udp + 8..)?))
}
