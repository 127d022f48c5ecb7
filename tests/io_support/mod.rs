//! Helpers of the netns integration tests of the ports (tests/io_*.rs,
//! tests/tun_offload.rs): a veth pair between two namespaces, an ICMP ping,
//! packet builders. The root check and the namespace guards are
//! `crate::common`'s (the test file declares `mod common;`).
#![allow(dead_code)]

use std::net::Ipv4Addr;

// Each test file uses some of these; the toolbox is shared.
#[allow(unused_imports)]
pub use crate::common::{run_in, sh, sh_ok, spawn_in, Netns};

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
