//! Fuzz target bodies: one function per target, taking the fuzzer's bytes.
//!
//! Layer: test support over the public API only. The cargo-fuzz targets in
//! `fuzz/fuzz_targets/` call these functions, and `tests/fuzz_regressions.rs`
//! includes this file (`#[path]`) to replay the saved crash inputs and the
//! seed corpora through the same functions on stable Rust, without nightly
//! or libFuzzer.
//!
//! Invariant: every function returns normally for every input. A panic is
//! a finding, and so is a broken oracle: the pipeline target asserts that
//! every frame received is accounted for exactly once (forwarded, replied,
//! passed or dropped) and that no verdict names a port that does not exist;
//! the liveness target asserts that every hello it makes round-trips
//! through the codec and that the links it reports down are links between
//! hosts of the topology.
//!
//! Targets:
//! - [`pipeline`]: bursts of frames on any port of the golden topologies,
//!   through `dataplane::forward_burst` (`Pipeline::process` and the port
//!   hand-over the workers run), optionally with checksums and lengths
//!   repaired and uplink frames wrapped as VXLAN from a known peer, so that
//!   mutations reach the deep stages. Input format: [`pipeline`].
//! - [`topology`]: the bytes as a topology file, through the loader `check`
//!   uses; when it loads, routes and tables for every host.
//! - [`pcap`]: the bytes as a capture file, through the replay reader.
//! - [`liveness`]: hello datagrams (raw bytes and hellos forged from the
//!   bytes) and clock ticks into the liveness state machine of one host.
//! - [`liveness_keyed`]: the same with hello keys: raw datagrams, fuzzed
//!   bytes the target seals with a valid MAC (so that mutations get past
//!   it), neighbours' own hellos and key rotation steps; it asserts that
//!   exactly the hellos the documented rules admit are taken.
//! - [`store`]: a view of store records (keys and values from the bytes)
//!   merged into a file topology with three networks, in either layout;
//!   it asserts that the merge is deterministic, that what it takes keeps
//!   hosts unique and every network's prefixes disjoint, and that every
//!   host's routes and tables build; then it plans this host's lease in
//!   each network with a lease range from the view's leases, and asserts
//!   that the plan takes over only leases of its own in the range and
//!   proposes only a free subnet of the range.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use vxrouter::config::{self, Topology};
use vxrouter::dataplane::{self, Counters, Pipeline, PortRole, Tables, Verdict};
use vxrouter::port::mem::MemPort;
use vxrouter::port::{Batch, Gso, LinkType, Port, BATCH_SIZE};
use vxrouter::route::liveness::{
    BadHello, Hello, HelloCounts, HelloKeys, Liveness, Report, AUTH_LEN, HELLO_LEN, MAC_LEN,
    MAX_HELLO, MAX_SEQ_AHEAD,
};

/// The topologies the pipeline and liveness targets run on: the golden
/// ones, which the golden tests keep valid as validation grows.
const TOPOLOGIES: [(&str, &str); 3] = [
    (
        "topo-v4.toml",
        include_str!("../../tests/golden/topo-v4.toml"),
    ),
    (
        "topo-v6.toml",
        include_str!("../../tests/golden/topo-v6.toml"),
    ),
    (
        "topo-nets.toml",
        include_str!("../../tests/golden/topo-nets.toml"),
    ),
];

/// A target body: any bytes in, a panic only on a finding.
pub type Target = fn(&[u8]);

/// The targets by name, for the regression test and the seed writer.
pub const TARGETS: [(&str, Target); 6] = [
    ("pipeline", pipeline),
    ("topology", topology),
    ("pcap", pcap),
    ("liveness", liveness),
    ("liveness_keyed", liveness_keyed),
    ("store", store),
];

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads the fuzzer's bytes front to back; past the end every read is 0
/// or empty, so any input decodes.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

// ---------------------------------------------------------------- pipeline

/// One simulated host: tables and how each port frames its packets.
struct Case {
    t: Tables,
    links: Vec<LinkType>,
}

fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        let mut out = Vec::new();
        for (file, text) in TOPOLOGIES {
            let topo = config::parse(text, file).expect("golden topology loads");
            for h in 0..topo.hosts.len() {
                let t = vxrouter::replay::replay_tables(&topo, h, 1500).expect("golden tables");
                let links = t
                    .ports
                    .iter()
                    .map(|p| match p.role {
                        PortRole::Tun => LinkType::RawIp,
                        _ => LinkType::Ethernet,
                    })
                    .collect();
                out.push(Case { t, links });
            }
        }
        out
    })
}

/// Repair IPv4 header, UDP, TCP, ICMP and ICMPv6 checksums (inner ones too).
pub const F_CHECKSUMS: u8 = 0x01;
/// Repair IPv4 total length, IPv6 payload length and UDP length.
pub const F_LENGTHS: u8 = 0x02;
/// Frames on the uplink are inner frames: wrap them as VXLAN to this host.
pub const F_VXLAN: u8 = 0x04;
/// Receive into super-packet buffers (as the live workers do).
pub const F_SUPER: u8 = 0x08;
/// Ports take super-packets whole.
pub const F_TAKES_GSO: u8 = 0x10;
/// Ports take at most three frames per burst (a full ring).
pub const F_SMALL_TX: u8 = 0x20;
/// The worker owns no queue of the host's last port (`port_down`).
pub const F_PORT_DOWN: u8 = 0x40;

/// Clock steps selected by `ctl` bits 0-2 (ns); 0 keeps the burst going.
const CLOCK_STEPS: [u64; 8] = [
    0,
    1,
    1_000,
    1_000_000,
    10_000_000,
    1_000_000_000,
    60_000_000_000,
    u64::MAX / 4,
];

/// Frames per input at most, to bound one run.
const MAX_FRAMES: usize = 1024;

struct Rig {
    ports: Vec<MemPort>,
    batch: Batch,
    super_batch: Batch,
}

thread_local! {
    static RIG: RefCell<Option<Rig>> = const { RefCell::new(None) };
}

/// One frame as decoded from the input.
struct Rec {
    port: usize,
    data: Vec<u8>,
    gso: Option<Gso>,
}

/// Bursts of frames on the ports of a golden host, run as the workers run
/// them.
///
/// Layout of the input (all multi-byte fields little-endian):
///
/// ```text
/// case:u8  flags:u8  record*
/// record = port:u8 ctl:u8 len:u16 [gso_size:u16 [gso_segs:u16]] bytes[len]
/// ```
///
/// - `case` picks a host of a golden topology (every host of topo-v4, then
///   of topo-v6, then of topo-nets with its two networks), modulo their
///   number.
/// - `flags`: the `F_*` constants.
/// - `port`: low nibble the receiving port (modulo the host's ports, 0 is
///   the uplink); high nibble, with [`F_VXLAN`] on the uplink, the peer the
///   VXLAN comes from (modulo the topology's hosts plus one address that is
///   no host's); the quotient picks the network whose VNI it carries.
/// - `ctl`: bits 0-2 advance the clock and start a new burst (0: same
///   burst, unless the port changes or the burst is full); bit 3 makes the
///   frame a super-packet (with [`F_SUPER`]), whose segment size follows,
///   and bit 4 takes its segment count from the input too instead of
///   deriving it from the TCP payload; bit 5 sends VXLAN with a zero UDP
///   checksum; bit 6 a VNI that belongs to no network; bit 7 takes the 8 VXLAN header bytes from
///   the front of the record instead.
/// - `bytes`: the frame as the port delivers it (raw IP on TUN, Ethernet
///   elsewhere), or with [`F_VXLAN`] on the uplink the inner Ethernet frame.
pub fn pipeline(data: &[u8]) {
    pipeline_counters(data);
}

/// [`pipeline`], returning the pipeline's counters.
pub fn pipeline_counters(data: &[u8]) -> Counters {
    let mut b = Bytes(data);
    let cases = cases();
    let case = &cases[usize::from(b.u8()) % cases.len()];
    let flags = b.u8();
    let t = &case.t;
    let nports = t.ports.len();

    // Decode every record into bursts first: (port, clock, frames).
    let mut bursts: Vec<(usize, u64, Vec<Rec>)> = Vec::new();
    let mut clock: u64 = 1_000_000_000;
    let mut frames = 0;
    while !b.is_empty() && frames < MAX_FRAMES {
        let sel = b.u8();
        let ctl = b.u8();
        let len = usize::from(b.u16());
        let port = usize::from(sel & 0x0f) % nports;
        let is_super = flags & F_SUPER != 0 && ctl & 0x08 != 0;
        let (gso_size, gso_segs) = if is_super {
            let size = b.u16();
            let segs = if ctl & 0x10 != 0 { Some(b.u16()) } else { None };
            (size, segs)
        } else {
            (0, None)
        };
        let vxlan_hdr = if flags & F_VXLAN != 0 && port == 0 && ctl & 0x80 != 0 {
            Some(b.take(8))
        } else {
            None
        };
        let body = b.take(len);
        let mut frame = if flags & F_VXLAN != 0 && port == 0 {
            vxlan_wrap(t, usize::from(sel >> 4), ctl, vxlan_hdr, body)
        } else {
            body.to_vec()
        };
        let tcp_payload = fix_frame(&mut frame, case.links[port], flags, t.udp_port);
        let gso = is_super.then(|| match gso_segs {
            Some(segs) => Gso {
                size: gso_size,
                segs,
            },
            None => Gso::for_payload(gso_size.max(1), tcp_payload.unwrap_or(0)),
        });
        let step = CLOCK_STEPS[usize::from(ctl & 0x07)];
        clock = clock.saturating_add(step);
        let new_burst = match bursts.last() {
            None => true,
            Some((p, _, recs)) => *p != port || step != 0 || recs.len() == BATCH_SIZE,
        };
        if new_burst {
            bursts.push((port, clock, Vec::new()));
        }
        let rec = Rec {
            port,
            data: frame,
            gso,
        };
        bursts.last_mut().expect("pushed above").2.push(rec);
        frames += 1;
    }

    RIG.with(|rig| {
        let mut rig = rig.borrow_mut();
        let rig = rig.get_or_insert_with(|| Rig {
            ports: Vec::new(),
            batch: Batch::new(),
            super_batch: Batch::new_super(),
        });
        rig.ports = t
            .ports
            .iter()
            .zip(&case.links)
            .map(|(p, l)| {
                let mut m = MemPort::new(p.name.clone(), *l);
                m.set_takes_gso(flags & F_TAKES_GSO != 0);
                if flags & F_SMALL_TX != 0 {
                    m.tx_capacity = 3;
                }
                m
            })
            .collect();
        let Rig {
            ports,
            batch,
            super_batch,
        } = rig;
        let batch = if flags & F_SUPER != 0 {
            super_batch
        } else {
            batch
        };
        // A fresh pipeline per input: its ICMP budget and counters start
        // the same for every run, so a saved input replays alike.
        let mut pipe = Pipeline::new();
        let mut verdicts = [Verdict::Pass; BATCH_SIZE];
        let mut tx_counts = vec![0u64; nports];
        for (port, now, recs) in bursts {
            for r in recs {
                debug_assert_eq!(r.port, port);
                match r.gso {
                    Some(g) => ports[port].inject_super(r.data, g),
                    None => ports[port].inject(r.data),
                }
            }
            pipe.set_clock(now);
            let n = ports[port].rx_burst(batch).expect("memory port");
            let segs: Vec<u64> = batch.pkts()[..n].iter().map(|p| p.segments()).collect();
            let before = accounted(&pipe);
            let down = flags & F_PORT_DOWN != 0;
            let mut dyn_ports: Vec<Option<&mut dyn Port>> = ports
                .iter_mut()
                .enumerate()
                .map(|(i, p)| (!(down && i == nports - 1)).then_some(p as &mut dyn Port))
                .collect();
            dataplane::forward_burst(
                &mut pipe,
                t,
                port as u16,
                batch,
                &mut verdicts,
                &mut dyn_ports,
                &mut tx_counts,
            )
            .expect("memory ports do not fail");
            // Every packet is counted once: a reply as the one packet the
            // router made, anything else as the segments it carried.
            let mut want = 0;
            for (v, s) in verdicts[..n].iter().zip(&segs) {
                if let Some(p) = v.tx_port() {
                    assert!(usize::from(p) < nports, "verdict {v:?} names no port");
                }
                want += if matches!(v, Verdict::Reply(_)) {
                    1
                } else {
                    *s
                };
            }
            let got = accounted(&pipe).wrapping_sub(before);
            assert_eq!(
                got,
                want,
                "{n} packets on port {port} accounted as {got}, want {want}: {:?}",
                &verdicts[..n]
            );
            for p in ports.iter_mut() {
                p.take_tx();
            }
        }
        pipe.totals()
    })
}

/// Packets accounted for by a verdict so far.
fn accounted(pipe: &Pipeline) -> u64 {
    let c = pipe.totals();
    c.forwarded
        .wrapping_add(c.replied)
        .wrapping_add(c.pass_through)
        .wrapping_add(c.drops.iter().fold(0u64, |a, d| a.wrapping_add(*d)))
}

/// `inner` as VXLAN to host `t` from peer `peer` (an index into the
/// topology's underlay addresses; one past them is an address no host has).
fn vxlan_wrap(t: &Tables, peer: usize, ctl: u8, hdr: Option<&[u8]>, inner: &[u8]) -> Vec<u8> {
    let v6 = t.underlay.is_ipv6();
    let mut f = Vec::with_capacity(70 + inner.len());
    f.extend_from_slice(&t.nic_mac);
    f.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, 0x00, peer as u8]);
    let udp_len = 16 + inner.len();
    if v6 {
        let n = t.known_v6.len();
        let src = if peer % (n + 1) < n {
            t.known_v6[peer % (n + 1)]
        } else {
            0x2001_0002_0000_0000_0000_0000_0000_0099
        };
        let dst = match t.underlay {
            IpAddr::V6(a) => u128::from(a),
            IpAddr::V4(_) => 0,
        };
        f.extend_from_slice(&0x86ddu16.to_be_bytes());
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[17, 64]);
        f.extend_from_slice(&src.to_be_bytes());
        f.extend_from_slice(&dst.to_be_bytes());
    } else {
        let n = t.known_v4.len();
        let src = if peer % (n + 1) < n {
            t.known_v4[peer % (n + 1)]
        } else {
            0xc612_0063
        };
        let dst = match t.underlay {
            IpAddr::V4(a) => u32::from(a),
            IpAddr::V6(_) => 0,
        };
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&src.to_be_bytes());
        f.extend_from_slice(&dst.to_be_bytes());
    }
    f.extend_from_slice(&(49152 + u16::from(ctl)).to_be_bytes());
    f.extend_from_slice(&t.udp_port.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    // A checksum of 0xffff is never computed: the fix-up replaces it, and
    // a zero one means none (left alone over IPv4).
    f.extend_from_slice(if ctl & 0x20 != 0 {
        &[0, 0]
    } else {
        &[0xff, 0xff]
    });
    match hdr {
        Some(h) => {
            f.extend_from_slice(h);
            f.resize(f.len() + 8 - h.len(), 0);
        }
        None => {
            let vni = if ctl & 0x40 != 0 {
                // One past the largest: no network's, whatever their VNIs.
                let top = t.nets.iter().map(|n| n.vni).max().unwrap_or(0);
                (top + 1) & 0x00ff_ffff
            } else {
                let peers = if v6 {
                    t.known_v6.len()
                } else {
                    t.known_v4.len()
                } + 1;
                t.nets[(peer / peers) % t.nets.len()].vni
            };
            f.extend_from_slice(&[0x08, 0, 0, 0]);
            f.extend_from_slice(&(vni << 8).to_be_bytes());
        }
    }
    f.extend_from_slice(inner);
    f
}

/// Repairs the lengths and checksums `flags` asks for in a frame of `link`,
/// inner VXLAN frames first. Returns the TCP payload length of the
/// outermost TCP segment found, for super-packet annotations.
pub fn fix_frame(frame: &mut [u8], link: LinkType, flags: u8, vxlan_port: u16) -> Option<usize> {
    let fx = Fix {
        checksums: flags & F_CHECKSUMS != 0,
        lengths: flags & F_LENGTHS != 0,
        vxlan_port,
    };
    match link {
        LinkType::Ethernet => fx.eth(frame, 0),
        LinkType::RawIp => fx.ip(frame, 0),
    }
}

struct Fix {
    checksums: bool,
    lengths: bool,
    vxlan_port: u16,
}

enum Pseudo {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

/// The one's-complement sum of `b` (RFC 1071), added to `acc`.
fn sum(b: &[u8], mut acc: u64) -> u64 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

impl Pseudo {
    fn sum(&self, proto: u8, len: usize) -> u64 {
        let (s, d): (&[u8], &[u8]) = match self {
            Pseudo::V4(s, d) => (s, d),
            Pseudo::V6(s, d) => (s, d),
        };
        sum(s, sum(d, 0)) + u64::from(proto) + len as u64
    }
}

impl Fix {
    fn eth(&self, f: &mut [u8], depth: u8) -> Option<usize> {
        let mut off = 12;
        for _ in 0..3 {
            if f.len() < off + 2 {
                return None;
            }
            match be16(f, off) {
                0x8100 | 0x88a8 => off += 4,
                0x0800 | 0x86dd => return self.ip(f.get_mut(off + 2..)?, depth),
                _ => return None,
            }
        }
        None
    }

    fn ip(&self, p: &mut [u8], depth: u8) -> Option<usize> {
        match p.first()? >> 4 {
            4 => self.v4(p, depth),
            6 => self.v6(p, depth),
            _ => None,
        }
    }

    fn v4(&self, p: &mut [u8], depth: u8) -> Option<usize> {
        let ihl = usize::from(p[0] & 0x0f) * 4;
        if ihl < 20 || p.len() < ihl {
            return None;
        }
        if self.lengths {
            let tl = p.len().min(0xffff) as u16;
            p[2..4].copy_from_slice(&tl.to_be_bytes());
        }
        let end = usize::from(be16(p, 2)).clamp(ihl, p.len());
        let first_fragment = be16(p, 6) & 0x1fff == 0;
        let proto = p[9];
        let pseudo = Pseudo::V4(p[12..16].try_into().ok()?, p[16..20].try_into().ok()?);
        let tcp = if first_fragment {
            self.l4(&mut p[ihl..end], proto, &pseudo, depth)
        } else {
            None
        };
        if self.checksums {
            p[10..12].fill(0);
            let c = fold(sum(&p[..ihl], 0));
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        tcp
    }

    fn v6(&self, p: &mut [u8], depth: u8) -> Option<usize> {
        if p.len() < 40 {
            return None;
        }
        if self.lengths {
            let pl = (p.len() - 40).min(0xffff) as u16;
            p[4..6].copy_from_slice(&pl.to_be_bytes());
        }
        let end = (40 + usize::from(be16(p, 4))).min(p.len());
        let pseudo = Pseudo::V6(p[8..24].try_into().ok()?, p[24..40].try_into().ok()?);
        let mut nh = p[6];
        let mut off = 40;
        for _ in 0..8 {
            match nh {
                0 | 43 | 60 => {
                    if off + 2 > end {
                        return None;
                    }
                    nh = p[off];
                    off += (usize::from(p[off + 1]) + 1) * 8;
                }
                44 => {
                    if off + 8 > end || be16(p, off + 2) & 0xfff9 != 0 {
                        // Too short, or not a whole first fragment.
                        return None;
                    }
                    nh = p[off];
                    off += 8;
                }
                _ => break,
            }
        }
        if off > end {
            return None;
        }
        self.l4(&mut p[off..end], nh, &pseudo, depth)
    }

    fn l4(&self, s: &mut [u8], proto: u8, pseudo: &Pseudo, depth: u8) -> Option<usize> {
        let v4 = matches!(pseudo, Pseudo::V4(..));
        let (at, tcp) = match proto {
            17 if s.len() >= 8 => {
                if self.lengths {
                    let l = s.len().min(0xffff) as u16;
                    s[4..6].copy_from_slice(&l.to_be_bytes());
                }
                if be16(s, 2) == self.vxlan_port && depth < 2 && s.len() >= 16 {
                    self.eth(&mut s[16..], depth + 1);
                }
                if v4 && be16(s, 6) == 0 {
                    // No checksum (RFC 768): leave it so.
                    return None;
                }
                (6, None)
            }
            6 if s.len() >= 20 => {
                let doff = usize::from(s[12] >> 4) * 4;
                (16, Some(s.len().saturating_sub(doff)))
            }
            1 if v4 && s.len() >= 4 => (2, None),
            58 if !v4 && s.len() >= 4 => (2, None),
            _ => return None,
        };
        if self.checksums {
            s[at..at + 2].fill(0);
            let base = if proto == 1 {
                0
            } else {
                pseudo.sum(proto, s.len())
            };
            let mut c = fold(sum(s, base));
            if proto == 17 && c == 0 {
                c = 0xffff;
            }
            s[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        tcp
    }
}

// ---------------------------------------------------------------- topology

/// The bytes as a topology file through the loader `vxrouter check` uses;
/// when it loads, the routes (as `vxrouter routes` prints them) and the
/// tables of every host.
pub fn topology(data: &[u8]) {
    // The loader reads the file as UTF-8 text first.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let topo = match config::parse(text, "fuzz.toml") {
        Ok(t) => t,
        Err(e) => {
            // Rendered as `check` prints it.
            let _ = e.to_string();
            return;
        }
    };
    for h in 0..topo.hosts.len() {
        let Ok(routes) = vxrouter::route::compute(&topo, h) else {
            continue;
        };
        let _ = routes.to_string();
        let _ = serde_json::to_string(&routes);
        let t = vxrouter::replay::replay_tables(&topo, h, 1500).expect("routes computed above");
        assert_eq!(t.ports.len(), topo.hosts[h].ports.len() + 1);
    }
}

// ---------------------------------------------------------------- pcap

/// The bytes as a capture file for an Ethernet port, or for a TUN port
/// when its link type says so, through the reader replay uses, and the
/// frames it reads through the pcap port's receive side.
pub fn pcap(data: &[u8]) {
    use vxrouter::port::pcap::{read_capture, PcapPort, PcapPortError};
    thread_local! {
        static PATH: std::path::PathBuf = std::env::temp_dir().join(format!(
            "vxrouter-fuzz-{}-{:?}.pcap",
            std::process::id(),
            std::thread::current().id()
        ));
        // Allocated once: a batch's buffers cost more than a short capture.
        static BATCH: RefCell<Batch> = RefCell::new(Batch::new());
    }
    PATH.with(|path| {
        BATCH.with(|batch| {
            let mut batch = batch.borrow_mut();
            std::fs::write(path, data).expect("writing the capture to a temporary file");
            // Each read costs the reader's buffer (8 MB, zeroed): read a
            // second time only when the link type was the problem.
            for (port, link) in [("eth0", LinkType::Ethernet), ("c1", LinkType::RawIp)] {
                let frames = match read_capture(path, port, link) {
                    Ok(f) => f,
                    Err(e) => {
                        // A refusal names the file and the port, and says
                        // what is wrong.
                        let msg = e.to_string();
                        let head = format!("{}: port {port}: ", path.display());
                        assert!(
                            msg.starts_with(&head) && !msg.trim_end().ends_with(':'),
                            "{msg}"
                        );
                        if matches!(e, PcapPortError::LinkType { .. }) {
                            continue;
                        }
                        break;
                    }
                };
                let n = frames.len();
                let mut p = PcapPort::new(port, link, frames, None);
                let mut got = 0;
                // As replay drives it: while a frame is left, a burst of
                // the frames of its time (empty when all are oversize).
                while let Some(ts) = p.next_ts() {
                    let k = p.rx_burst(&mut batch).expect("reading memory");
                    let ts = u64::try_from(ts.as_nanos()).unwrap_or(u64::MAX);
                    assert!(batch.pkts().iter().all(|f| f.ts_nanos == ts));
                    got += k;
                }
                assert_eq!(p.rx_burst(&mut batch).expect("reading memory"), 0);
                assert_eq!(got as u64 + p.rx_oversize, n as u64);
                assert_eq!(p.rx_packets, n as u64);
                break;
            }
            let _ = std::fs::remove_file(path);
        })
    });
}

// ---------------------------------------------------------------- liveness

/// One golden topology with liveness on, and the wall clock our reports
/// start from.
fn liveness_topologies() -> &'static [Topology] {
    static TOPOS: OnceLock<Vec<Topology>> = OnceLock::new();
    TOPOS.get_or_init(|| {
        TOPOLOGIES
            .iter()
            .map(|(file, text)| {
                let text = text.replacen(
                    "[overlay]\n",
                    "[overlay]\nliveness_interval_ms = 100\nliveness_dead_after = 3\n",
                    1,
                );
                config::parse(&text, file).expect("golden topology with liveness loads")
            })
            .collect()
    })
}

/// Wall clock (ns) at the start of every liveness run.
const WALL: u64 = 1_800_000_000 * 1_000_000_000;

/// The hello codec and the liveness state machine of one host under raw
/// and forged hellos from any address.
///
/// Layout of the input:
///
/// ```text
/// topo:u8  me:u8  op*
/// op = 0 from:u8 len:u16 bytes[len]     a raw datagram
///    | 1 step:u16                        the clock moves (ms), a tick
///    | 2                                 our hellos, round-tripped
///    | 3 from:u8 flags:u8 n:u8 report*   a hello forged from the bytes
///    | 4                                 the topology reloads
/// report = origin:u8 seq_delta:u32 k:u8 down:u8*k
/// ```
///
/// Addresses are picked by index among the topology's underlays, with one
/// more that is no host's. A forged report's sequence number is the
/// estimated wall clock plus `seq_delta` as a signed number of
/// microseconds (about 36 minutes either way), so that forged reports land
/// on both sides of the window that is accepted.
pub fn liveness(data: &[u8]) {
    let mut b = Bytes(data);
    let topos = liveness_topologies();
    let topo = &topos[usize::from(b.u8()) % topos.len()];
    let me = usize::from(b.u8()) % topo.hosts.len();
    let cfg = topo.overlay.liveness.clone().expect("liveness on");
    let mut now: u64 = 1_000_000_000;
    let mut lv = Liveness::new(topo, me, cfg.clone(), now, WALL);
    let addr = |i: u8| -> IpAddr {
        let i = usize::from(i) % (topo.hosts.len() + 1);
        match topo.hosts.get(i) {
            Some(h) => h.underlay,
            None if topo.hosts[0].underlay.is_ipv6() => "2001:2::99".parse().expect("literal"),
            None => "198.18.0.99".parse().expect("literal"),
        }
    };
    let mut ops = 0;
    while !b.is_empty() && ops < 512 {
        ops += 1;
        match b.u8() % 5 {
            0 => {
                let from = addr(b.u8());
                let len = usize::from(b.u16());
                let _ = lv.on_datagram(now, from, b.take(len));
            }
            1 => {
                now = now.saturating_add(u64::from(b.u16()) * 1_000_000);
                lv.on_tick(now);
            }
            2 => {
                for (to, h) in lv.hellos(now) {
                    assert!(topo.hosts.iter().any(|x| x.underlay == to));
                    let (bytes, left_out) = h.encode();
                    let back = Hello::decode(&bytes).expect("our own hello decodes");
                    if left_out == 0 {
                        assert_eq!(back, h, "hello round trip");
                    } else {
                        assert_eq!(back.reports.len() + left_out, h.reports.len());
                    }
                }
            }
            3 => {
                let from = addr(b.u8());
                let flags = b.u8();
                let n = b.u8() % 8;
                let wall = WALL.saturating_add(now);
                let reports = (0..n)
                    .map(|_| {
                        let origin = addr(b.u8());
                        let delta = i128::from(b.u32() as i32) * 1_000;
                        let seq = (i128::from(wall) + delta).clamp(0, i128::from(u64::MAX)) as u64;
                        let k = b.u8() % 8;
                        let down = (0..k).map(|_| addr(b.u8())).collect();
                        Report { origin, seq, down }
                    })
                    .collect();
                let h = Hello {
                    vni: if flags & 0x02 != 0 {
                        topo.overlay.vni ^ 1
                    } else {
                        topo.overlay.vni
                    },
                    hears_you: flags & 0x01 != 0,
                    reports,
                };
                let (bytes, _) = h.encode();
                let _ = lv.on_datagram(now, from, &bytes);
            }
            _ => {
                lv = lv.reload(topo, me, cfg.clone(), now);
            }
        }
        for (a, c) in lv.links_down() {
            assert!(a < c && c < topo.hosts.len(), "link ({a}, {c}) down");
        }
    }
    let live = lv.live_topology(topo);
    assert!(live.links.len() <= topo.links.len());
    let _ = vxrouter::route::compute(&live, me);
}

// ---------------------------------------------------------------- seeds

/// A pipeline input from frames: `case` and `flags` as in
/// [`pipeline`], each frame on `port` in one burst.
pub fn pipeline_input(case: u8, flags: u8, port: u8, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![case, flags];
    for f in frames {
        let len = f.len().min(0xffff);
        out.extend_from_slice(&[port, 0]);
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(&f[..len]);
    }
    out
}

/// The pipeline's case index of host `host` of golden topology `file`, the
/// index of its port `port` and how that port frames packets.
pub fn pipeline_case(file: &str, host: &str, port: &str) -> Option<(u8, u8, LinkType)> {
    let mut i = 0usize;
    for (f, text) in TOPOLOGIES {
        let topo = config::parse(text, f).ok()?;
        if f == file {
            let c = i + topo.host_index(host)?;
            let case = cases().get(c)?;
            let p = case.t.port_index(port)?;
            let link = case.links[usize::from(p)];
            return Some((u8::try_from(c).ok()?, u8::try_from(p).ok()?, link));
        }
        i += topo.hosts.len();
    }
    None
}

/// Liveness seeds: hellos the encoder makes, as raw datagrams and as
/// forged ones, between ticks, on every golden topology.
pub fn liveness_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (ti, topo) in liveness_topologies().iter().enumerate() {
        let me = 0u8;
        let mut lv = Liveness::new(topo, 0, topo.overlay.liveness.clone().expect("on"), 0, WALL);
        let mut raw = vec![ti as u8, me];
        // Neighbour 1 (h2) says it hears us, reports h4 down, then a tick.
        let h = Hello {
            vni: topo.overlay.vni,
            hears_you: true,
            reports: vec![Report {
                origin: topo.hosts[1].underlay,
                seq: WALL + 5,
                down: vec![topo.hosts[topo.hosts.len() - 1].underlay],
            }],
        };
        let (bytes, _) = h.encode();
        raw.extend_from_slice(&[0, 1]);
        raw.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        raw.extend_from_slice(&bytes);
        raw.extend_from_slice(&[1, 100, 0, 2]);
        out.push(raw);
        // What our own router sends its neighbours, fed back as if from them.
        for (to, h) in lv.hellos(0) {
            let i = topo
                .hosts
                .iter()
                .position(|x| x.underlay == to)
                .unwrap_or(0);
            let (bytes, _) = h.encode();
            let mut s = vec![ti as u8, 1, 0, 0];
            s.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
            s.extend_from_slice(&bytes);
            s.extend_from_slice(&[1, 0x2c, 1, 2, 3, i as u8, 1, 2]);
            // Report 0: origin h1 (us), 1 s ahead; down h2.
            s.push(0);
            s.extend_from_slice(&1_000_000i32.to_le_bytes());
            s.extend_from_slice(&[1, 1]);
            // Report 1: origin h3, same clock; down h4.
            s.push(2);
            s.extend_from_slice(&0i32.to_le_bytes());
            s.extend_from_slice(&[1, 3, 4]);
            out.push(s);
        }
    }
    out
}

// ------------------------------------------------------- liveness (keyed)

/// The two keys of the rotation the keyed liveness target walks through,
/// of both edge lengths, and a third that no host holds.
const KEY_A: &str = "000102030405060708090a0b0c0d0e0f";
const KEY_B: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f\
                     0123456789abcdeffedcba98765432100123456789abcdeffedcba9876543210";
const KEY_ROGUE: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
const ID_A: u32 = 1;
const ID_B: u32 = 2;
/// What the MAC covers before the addresses: the wire format's context
/// string (see `Hello::seal`), repeated here so that the target checks
/// the MAC independently of the code under test.
const MAC_CONTEXT: &[u8] = b"vxrouter liveness hello";

/// The key file of each step of a rotation, as docs/configuration.md
/// describes it: add the new key, make it active, remove the old one.
const STAGES: usize = 4;

fn stage_text(stage: usize) -> String {
    match stage % STAGES {
        0 => format!("{ID_A} {KEY_A}\n"),
        1 => format!("{ID_A} {KEY_A} active\n{ID_B} {KEY_B}\n"),
        2 => format!("{ID_A} {KEY_A}\n{ID_B} {KEY_B} active\n"),
        _ => format!("{ID_B} {KEY_B}\n"),
    }
}

/// The keys' bytes and each step's key file, made once: parsing them for
/// every input would cost more than the code under test.
struct KeyMaterial {
    a: Vec<u8>,
    b: Vec<u8>,
    rogue: Vec<u8>,
    stages: Vec<HelloKeys>,
}

fn key_material() -> &'static KeyMaterial {
    static KEYS: OnceLock<KeyMaterial> = OnceLock::new();
    KEYS.get_or_init(|| KeyMaterial {
        a: hex(KEY_A),
        b: hex(KEY_B),
        rogue: hex(KEY_ROGUE),
        stages: (0..STAGES)
            .map(|i| HelloKeys::parse(&stage_text(i)).expect("the target's key files are valid"))
            .collect(),
    })
}

fn stage_keys(stage: usize) -> HelloKeys {
    key_material().stages[stage % STAGES].clone()
}

/// The bytes of key `id` if a host at `stage` holds it.
fn stage_held(stage: usize, id: u32) -> Option<&'static [u8]> {
    let k = key_material();
    match (stage % STAGES, id) {
        (0..=2, ID_A) => Some(&k.a),
        (1..=3, ID_B) => Some(&k.b),
        _ => None,
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("literal hex"))
        .collect()
}

fn put_addr(out: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(v) => {
            out.push(4);
            out.extend_from_slice(&v.octets());
        }
        IpAddr::V6(v) => {
            out.push(6);
            out.extend_from_slice(&v.octets());
        }
    }
}

/// The MAC an authenticated hello `signed` (every byte before its MAC)
/// from `from` to `to` carries under key bytes `key`, computed here from
/// the documented format, not by the code under test.
pub fn hello_mac(key: &[u8], from: IpAddr, to: IpAddr, signed: &[u8]) -> [u8; MAC_LEN] {
    use hmac::{Hmac, Mac};
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("any key length");
    let mut addrs = Vec::with_capacity(34);
    put_addr(&mut addrs, from);
    put_addr(&mut addrs, to);
    m.update(MAC_CONTEXT);
    m.update(&addrs);
    m.update(signed);
    let full = m.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

/// Every host of a topology with keys: its liveness state, its rotation
/// step, and what the target expects of it (the last counter it took from
/// each sender, how many datagrams it was fed).
struct KeyedHost {
    lv: Liveness,
    stage: usize,
    last: BTreeMap<IpAddr, u64>,
    fed: u64,
}

struct KeyedNet<'a> {
    topo: &'a Topology,
    hosts: Vec<KeyedHost>,
    /// Monotonic time at creation, when every host's wall clock was WALL.
    start: u64,
}

impl KeyedNet<'_> {
    fn wall(&self, now: u64) -> u64 {
        WALL.saturating_add(now.saturating_sub(self.start))
    }

    /// Whether `from` is the far end of a link of host `recv`.
    fn is_neighbour(&self, recv: usize, from: IpAddr) -> bool {
        let t = self.topo;
        let Some(f) = t.hosts.iter().position(|h| h.underlay == from) else {
            return false;
        };
        t.links.iter().any(|l| {
            let (a, b) = (t.host_index(&l.a), t.host_index(&l.b));
            (a == Some(recv) && b == Some(f)) || (a == Some(f) && b == Some(recv))
        })
    }

    /// Whether host `recv` must take datagram `d` from `from` at `now`, by
    /// the documented rules: a version 2 hello from a neighbour, whose MAC
    /// is made under a key `recv` holds by that id, bound to `from` and
    /// `recv`, for our VNI, with a counter within MAX_SEQ_AHEAD of the
    /// clock and above the last one taken from `from`, whose reports parse.
    /// Returns the counter when it must.
    fn must_take(&self, recv: usize, now: u64, from: IpAddr, d: &[u8]) -> Option<u64> {
        if d.len() < HELLO_LEN + AUTH_LEN + MAC_LEN || d.len() > MAX_HELLO {
            return None;
        }
        if d[..4] != *b"VXRL" || d[4] != 2 || !self.is_neighbour(recv, from) {
            return None;
        }
        let id = u32::from_be_bytes(d[12..16].try_into().expect("4 bytes"));
        let key = stage_held(self.hosts[recv].stage, id)?;
        let (signed, mac) = d.split_at(d.len() - MAC_LEN);
        let to = self.topo.hosts[recv].underlay;
        if hello_mac(key, from, to, signed) != mac {
            return None;
        }
        if u32::from_be_bytes(d[8..12].try_into().expect("4 bytes")) != self.topo.overlay.vni {
            return None;
        }
        let counter = u64::from_be_bytes(d[16..24].try_into().expect("8 bytes"));
        if counter.abs_diff(self.wall(now)) > MAX_SEQ_AHEAD
            || counter <= self.hosts[recv].last.get(&from).copied().unwrap_or(0)
        {
            return None;
        }
        Hello::decode(&unsealed(d)).ok()?;
        Some(counter)
    }

    /// Feeds `d` from `from` to host `recv` and checks the verdict against
    /// [`KeyedNet::must_take`]; a hello taken must parse as its unsealed
    /// form does.
    fn feed(&mut self, recv: usize, now: u64, from: IpAddr, d: &[u8]) -> Result<bool, BadHello> {
        let want = self.must_take(recv, now, from, d);
        let h = &mut self.hosts[recv];
        h.fed += 1;
        let got = h.lv.on_datagram(now, from, d);
        assert_eq!(
            got.is_ok(),
            want.is_some(),
            "host {recv} from {from}: {got:?}, expected {}",
            if want.is_some() { "taken" } else { "refused" }
        );
        if let Some(counter) = want {
            h.last.insert(from, counter);
            let keys = h.lv.keys().expect("keyed");
            let to = self.topo.hosts[recv].underlay;
            let (opened, c) = Hello::open(d, keys, from, to).expect("taken, so it opens");
            assert_eq!(c, counter);
            assert_eq!(
                Ok(opened),
                Hello::decode(&unsealed(d)),
                "sealed and plain parse alike"
            );
        }
        let c = h.lv.counts;
        let outcomes = c.received
            + c.malformed
            + c.other_vni
            + c.not_neighbour
            + c.unauthenticated
            + c.unexpected_auth
            + c.unknown_key
            + c.bad_mac
            + c.replayed
            + c.clock_skew;
        assert_eq!(outcomes, h.fed, "host {recv}: every datagram counted once");
        got
    }
}

/// The unauthenticated hello with the same fields and reports as the
/// authenticated `d`: version 1, without key id, counter and MAC.
fn unsealed(d: &[u8]) -> Vec<u8> {
    let mut out = d[..HELLO_LEN].to_vec();
    out[4] = 1;
    out.extend_from_slice(&d[HELLO_LEN + AUTH_LEN..d.len() - MAC_LEN]);
    out
}

/// The liveness receive path with hello keys: datagrams from any address,
/// raw or sealed by the target over fuzzed bytes, neighbours' own hellos,
/// key rotation steps, clock ticks and reloads, into one host of a golden
/// topology; every other host runs too, as the neighbours that send.
///
/// Oracle: a datagram is taken exactly when the documented rules say so
/// (see `KeyedNet::must_take`, which checks the MAC with its own HMAC),
/// a hello taken parses as its unsealed form does, and every datagram is
/// counted once by its outcome.
///
/// Layout of the input:
///
/// ```text
/// topo:u8  me:u8  stage:u8  op*
/// op = 0 from:u8 len:u16 bytes[len]         a raw datagram, MAC as given
///    | 1 from:u8 key:u8 fix:u8 delta:u32 len:u16 body[len]
///                                            the body sealed (below)
///    | 2 step:u16                            the clock moves (ms), a tick
///    | 3 peer:u8                             a host's own hellos to us
///    | 4 who:u8                              a host takes a rotation step
///    | 5                                     our hellos: to their receivers,
///                                            and reflected back to us
///    | 6                                     we reload the topology
/// ```
///
/// A sealed body is `magic version=2` followed by the body (`fix & 8`: the
/// body alone), at least a header long; unless `fix` says otherwise the
/// target writes our VNI (`fix & 1`), the key's id (`& 2`) and a counter
/// of the clock plus `delta` as signed microseconds (`& 4`, about 36
/// minutes either way around the 10-minute window), then appends a MAC
/// under key `key % 3` (A, B, or one nobody holds, with A's id) made from
/// the sender (`& 16`: another address) to us (`& 32`: to another).
pub fn liveness_keyed(data: &[u8]) {
    let _ = liveness_keyed_counts(data);
}

/// [`liveness_keyed`], returning the hello counts of the host under test.
pub fn liveness_keyed_counts(data: &[u8]) -> HelloCounts {
    let mut b = Bytes(data);
    let topos = liveness_topologies();
    let topo = &topos[usize::from(b.u8()) % topos.len()];
    let n = topo.hosts.len();
    let me = usize::from(b.u8()) % n;
    let stage = usize::from(b.u8()) % STAGES;
    let cfg = topo.overlay.liveness.clone().expect("liveness on");
    let start: u64 = 1_000_000_000;
    let mut now = start;
    let mut net = KeyedNet {
        topo,
        start,
        hosts: (0..n)
            .map(|i| KeyedHost {
                lv: Liveness::new(topo, i, cfg.clone(), now, WALL)
                    .with_keys(Some(stage_keys(stage))),
                stage,
                last: BTreeMap::new(),
                fed: 0,
            })
            .collect(),
    };
    let addr = |i: u8| -> IpAddr {
        let i = usize::from(i) % (n + 1);
        match topo.hosts.get(i) {
            Some(h) => h.underlay,
            None if topo.hosts[0].underlay.is_ipv6() => "2001:2::99".parse().expect("literal"),
            None => "198.18.0.99".parse().expect("literal"),
        }
    };
    let my_addr = topo.hosts[me].underlay;
    let mut ops = 0;
    while !b.is_empty() && ops < 512 {
        ops += 1;
        match b.u8() % 7 {
            0 => {
                let from = addr(b.u8());
                let len = usize::from(b.u16());
                let d = b.take(len);
                let _ = net.feed(me, now, from, d);
            }
            1 => {
                let fi = b.u8();
                let from = addr(fi);
                let key = b.u8() % 3;
                let fix = b.u8();
                let delta = i128::from(b.u32() as i32) * 1_000;
                let len = usize::from(b.u16());
                let body = b.take(len);
                let mut d = Vec::with_capacity(HELLO_LEN + AUTH_LEN + body.len() + MAC_LEN);
                if fix & 8 == 0 {
                    d.extend_from_slice(b"VXRL\x02");
                }
                d.extend_from_slice(body);
                if d.len() < HELLO_LEN + AUTH_LEN {
                    d.resize(HELLO_LEN + AUTH_LEN, 0);
                }
                if fix & 1 == 0 {
                    d[8..12].copy_from_slice(&topo.overlay.vni.to_be_bytes());
                }
                let k = key_material();
                let (id, bytes) = match key {
                    0 => (ID_A, &k.a),
                    1 => (ID_B, &k.b),
                    _ => (ID_A, &k.rogue),
                };
                if fix & 2 == 0 {
                    d[12..16].copy_from_slice(&id.to_be_bytes());
                }
                if fix & 4 == 0 {
                    let wall = i128::from(net.wall(now));
                    let c = (wall + delta).clamp(0, i128::from(u64::MAX)) as u64;
                    d[16..24].copy_from_slice(&c.to_be_bytes());
                }
                let mac_from = if fix & 16 != 0 {
                    addr(fi.wrapping_add(1))
                } else {
                    from
                };
                let mac_to = if fix & 32 != 0 {
                    addr(u8::try_from(me + 1).unwrap_or(0))
                } else {
                    my_addr
                };
                let mac = hello_mac(bytes, mac_from, mac_to, &d);
                d.extend_from_slice(&mac);
                let _ = net.feed(me, now, from, &d);
            }
            2 => {
                now = now.saturating_add(u64::from(b.u16()) * 1_000_000);
                for h in &mut net.hosts {
                    h.lv.on_tick(now);
                }
            }
            3 => {
                let peer = usize::from(b.u8()) % n;
                let from = topo.hosts[peer].underlay;
                let out = net.hosts[peer].lv.datagrams(now);
                for (to, d) in out {
                    if to == my_addr {
                        let _ = net.feed(me, now, from, &d);
                    }
                }
            }
            4 => {
                let who = usize::from(b.u8()) % n;
                let h = &mut net.hosts[who];
                h.stage = (h.stage + 1) % STAGES;
                h.lv = h.lv.clone().with_keys(Some(stage_keys(h.stage)));
            }
            5 => {
                let out = net.hosts[me].lv.datagrams(now);
                for (to, d) in out {
                    let recv = topo
                        .hosts
                        .iter()
                        .position(|h| h.underlay == to)
                        .expect("we send to hosts only");
                    let _ = net.feed(recv, now, my_addr, &d);
                    // The same datagram sent back to us as if from its
                    // receiver: bound to the other direction, refused.
                    let r = net.feed(me, now, to, &d);
                    assert!(r.is_err(), "a reflected hello is refused");
                }
            }
            _ => {
                let h = &mut net.hosts[me];
                h.lv = h.lv.reload(topo, me, cfg.clone(), now);
            }
        }
        for (a, c) in net.hosts[me].lv.links_down() {
            assert!(a < c && c < n, "link ({a}, {c}) down");
        }
    }
    net.hosts[me].lv.counts
}

/// Keyed liveness seeds: neighbours' authenticated hellos, a hello sealed
/// with key A sent raw and again (a replay), fuzzable bodies the target
/// seals (fresh, skewed, under a key nobody holds, bound to another
/// sender), and a key rotation walked step by step, with one host left
/// behind.
pub fn liveness_keyed_seeds() -> Vec<Vec<u8>> {
    fn op0(s: &mut Vec<u8>, from: u8, d: &[u8]) {
        s.extend_from_slice(&[0, from]);
        s.extend_from_slice(&(d.len() as u16).to_le_bytes());
        s.extend_from_slice(d);
    }
    fn op1(s: &mut Vec<u8>, from: u8, key: u8, fix: u8, delta_us: i32, body: &[u8]) {
        s.extend_from_slice(&[1, from, key, fix]);
        s.extend_from_slice(&delta_us.to_le_bytes());
        s.extend_from_slice(&(body.len() as u16).to_le_bytes());
        s.extend_from_slice(body);
    }
    fn tick(s: &mut Vec<u8>, ms: u16) {
        s.push(2);
        s.extend_from_slice(&ms.to_le_bytes());
    }
    fn peers(s: &mut Vec<u8>, n: usize) {
        for p in 1..n {
            s.extend_from_slice(&[3, p as u8]);
        }
    }
    fn step_all(s: &mut Vec<u8>, n: usize, but: Option<usize>) {
        for p in (0..n).filter(|p| Some(*p) != but) {
            s.extend_from_slice(&[4, p as u8]);
        }
    }
    let mut out = Vec::new();
    for (ti, topo) in liveness_topologies().iter().enumerate() {
        let n = topo.hosts.len();
        let ti = ti as u8;
        let me = topo.hosts[0].underlay;
        // Neighbours that have heard nobody (their links down in their
        // reports), our answers, and theirs again.
        for stage in 0..STAGES as u8 {
            let mut s = vec![ti, 0, stage];
            tick(&mut s, 400);
            peers(&mut s, n);
            s.push(5);
            tick(&mut s, 100);
            peers(&mut s, n);
            out.push(s);
        }
        // A hello sealed with key A by a neighbour, raw, twice.
        let nb = (1..n)
            .find(|&i| {
                topo.links.iter().any(|l| {
                    let (a, b) = (topo.host_index(&l.a), topo.host_index(&l.b));
                    (a, b) == (Some(0), Some(i)) || (a, b) == (Some(i), Some(0))
                })
            })
            .expect("h1 has a neighbour");
        let from = topo.hosts[nb].underlay;
        let h = Hello {
            vni: topo.overlay.vni,
            hears_you: true,
            reports: vec![
                Report {
                    origin: from,
                    seq: WALL + 5,
                    down: vec![topo.hosts[n - 1].underlay],
                },
                Report {
                    origin: me,
                    seq: WALL + 9,
                    down: vec![from],
                },
            ],
        };
        let keys = stage_keys(0);
        let (d, _) = h.seal(keys.active(), WALL, from, me);
        let mut s = vec![ti, 0, 0];
        op0(&mut s, nb as u8, &d);
        op0(&mut s, nb as u8, &d);
        // Its body (flags on), sealed by the target: fresh, 11 minutes
        // ahead, under the rogue key, bound to another sender, to us.
        let body = &d[5..d.len() - MAC_LEN];
        op1(&mut s, nb as u8, 0, 0, 1_000, body);
        op1(&mut s, nb as u8, 0, 0, 660_000_000, body);
        op1(&mut s, nb as u8, 2, 0, 2_000, body);
        op1(&mut s, nb as u8, 0, 16, 3_000, body);
        op1(&mut s, nb as u8, 1, 0, 4_000, body);
        tick(&mut s, 50);
        op1(&mut s, nb as u8, 0, 0, 60_000, body);
        s.push(6);
        op1(&mut s, nb as u8, 0, 0, 70_000, body);
        out.push(s);
        // A rotation, step by step on every host, hellos between steps;
        // then one more step that leaves us behind.
        let mut s = vec![ti, 0, 0];
        for _ in 0..3 {
            step_all(&mut s, n, None);
            tick(&mut s, 100);
            peers(&mut s, n);
            s.push(5);
        }
        step_all(&mut s, n, Some(0));
        tick(&mut s, 100);
        peers(&mut s, n);
        s.push(5);
        out.push(s);
    }
    out
}

// ---------------------------------------------------------------- store

/// The file a store target's view merges into: h1 with subnets in the
/// default network and in blue (VNI 43), a network red (VNI 44) with no
/// subnet here and a lease range (h1 leases there), and a file host h9;
/// a store whose default range h1 does not lease from (it has subnets).
const STORE_FILE: &str = r#"
[overlay]
vni = 42
[store]
endpoints = ["http://198.18.0.10:2379"]
network = "198.19.0.0/16"
[[networks]]
name = "blue"
vni = 43
[networks.subnets]
h1 = ["198.19.101.0/24"]
h9 = ["198.19.109.0/24"]
[[networks]]
name = "red"
vni = 44
lease_network = "198.19.0.0/20"
lease_subnet_len = 26
[networks.subnets]
h9 = ["198.19.9.0/26"]
[[hosts]]
name = "h1"
underlay = "198.18.0.1"
vtep_mac = "02:42:c6:12:00:01"
subnets = ["198.19.1.0/24", "2001:2:0:1::/64"]
[[hosts]]
name = "h9"
underlay = "198.18.0.9"
vtep_mac = "02:42:c6:12:00:09"
subnets = ["198.19.9.0/24"]
"#;

/// Separates the records of a store input.
pub const STORE_SEP: u8 = 0xFF;

/// A store input: byte 0 picks the layout (bit 0: flannel); the rest are
/// records separated by [`STORE_SEP`], each its key (under the prefix),
/// a NUL, and its value. Records are created in input order.
pub fn store_input(flannel: bool, records: &[(&str, &str)]) -> Vec<u8> {
    let mut out = vec![u8::from(flannel)];
    for (i, (k, v)) in records.iter().enumerate() {
        if i > 0 {
            out.push(STORE_SEP);
        }
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Store records merged into [`STORE_FILE`] as the control thread merges
/// a watch's view.
pub fn store(data: &[u8]) {
    let _ = store_merged(data);
}

/// The body of [`store`]: the merge, once its checks passed.
pub fn store_merged(data: &[u8]) -> Option<vxrouter::store::merge::Merged> {
    use vxrouter::config::StoreLayout;
    use vxrouter::store::{merge, Entry, View};

    static FILE: OnceLock<Topology> = OnceLock::new();
    let file = FILE.get_or_init(|| config::parse(STORE_FILE, "store.toml").expect("store file"));
    let (&mode, rest) = data.split_first()?;
    let layout = if mode & 1 == 0 {
        StoreLayout::Vxrouter
    } else {
        StoreLayout::Flannel
    };
    let mut view = View::default();
    for (i, rec) in rest.split(|&b| b == STORE_SEP).enumerate() {
        let (key, value) = match rec.iter().position(|&b| b == 0) {
            Some(at) => (&rec[..at], &rec[at + 1..]),
            None => (rec, &[][..]),
        };
        let rev = i as i64 + 2;
        view.entries.insert(
            String::from_utf8_lossy(key).into_owned(),
            Entry {
                value: value.to_vec(),
                create_revision: rev,
                mod_revision: rev,
            },
        );
        view.revision = rev;
    }
    let me = file.host_index("h1").expect("h1");
    let m = merge::merge(file, me, layout, &view);
    let again = merge::merge(file, me, layout, &view);
    assert_eq!(m.topology, again.topology, "the merge is deterministic");
    assert_eq!(m.rejected, again.rejected);
    assert_eq!(m.ignored, again.ignored);
    let t = &m.topology;
    assert_eq!(t.hosts[me].name, "h1", "this host stays where it was");
    for (a, ha) in t.hosts.iter().enumerate() {
        for hb in &t.hosts[a + 1..] {
            assert_ne!(ha.name, hb.name, "two hosts of one name");
            assert_ne!(ha.underlay, hb.underlay, "two hosts on one underlay");
            for (na, pa) in ha.all_subnets() {
                for (nb, pb) in hb.all_subnets() {
                    assert!(
                        na != nb || !(pa.contains(pb) || pb.contains(pa)),
                        "{} {pa} and {} {pb} overlap in network {na}",
                        ha.name,
                        hb.name
                    );
                }
            }
        }
    }
    for r in &m.rejected {
        let _ = (r.reason.name(), r.detail.len());
    }
    if let Ok(routes) = vxrouter::route::compute(t, me) {
        let _ = routes.to_string();
        vxrouter::replay::replay_tables(t, me, 1500).expect("tables of a merged topology");
    }
    if layout == StoreLayout::Vxrouter {
        store_leases(file, me, &view);
    }
    Some(m)
}

/// Plans host `me`'s lease in every network of `file` with a lease range
/// from the leases of `view`, as the store thread does after a list, and
/// checks the plan: only leases naming `me` in the range taken over, the
/// proposal a subnet of the range that shares no address with any lease
/// of that network or any reserved prefix.
fn store_leases(file: &Topology, me: usize, view: &vxrouter::store::View) {
    use vxrouter::store::{alloc, record};
    let ranges = file
        .networks
        .iter()
        .enumerate()
        .filter_map(|(n, net)| Some((n, net.name.as_str(), net.lease?)));
    for (n, name, range) in ranges {
        let held: Vec<alloc::Held> = view
            .entries
            .iter()
            .filter_map(|(k, e)| {
                let (lease, claim) = record::decode_claim(k, &e.value)?.ok()?;
                (lease.network == name).then(|| alloc::Held {
                    subnet: lease.subnet,
                    mine: claim.host == file.hosts[me].name,
                    mod_revision: e.mod_revision,
                })
            })
            .collect();
        let reserved = alloc::reserved(file, me, n);
        let previous: Vec<_> = held.iter().take(1).map(|h| h.subnet).collect();
        let ask = alloc::Ask {
            range,
            wanted: &[],
            previous: &previous,
            reserved: &reserved,
            seed: alloc::seed(&file.hosts[me].name),
        };
        let plan = alloc::plan(&ask, &held, view.revision as u64);
        for h in &plan.take_over {
            assert!(h.mine && range.holds(h.subnet), "took over {h:?}");
        }
        if let Some(p) = plan.propose {
            assert!(range.holds(p), "proposed {p} outside {range:?}");
            let clash = held
                .iter()
                .map(|h| h.subnet)
                .chain(reserved.iter().copied())
                .find(|t| t.contains(&p) || p.contains(t));
            assert_eq!(clash, None, "proposed {p} in network {name}");
        }
    }
}

/// Store seeds: the records of docs/store.md in both layouts, good and bad.
pub fn store_seeds() -> Vec<Vec<u8>> {
    let h2 = r#"{"name":"h2","underlay":"198.18.0.2","vtep_mac":"02:42:c6:12:00:02","subnets":["198.19.2.0/24"],"vni":42}"#;
    let h3 = r#"{"name":"h3","underlay":"198.18.0.3","vtep_mac":"02:42:c6:12:00:03","subnets":["198.19.3.0/24","2001:2:0:3::/64"],"vni":42,"networks":{"blue":{"vni":43,"subnets":["198.19.103.0/24"]},"red":{"vni":44,"subnets":["198.19.1.0/24"]}}}"#;
    let h4 = r#"{"name":"h4","underlay":"198.18.0.4","vtep_mac":"02:42:c6:12:00:04","subnets":["198.19.4.0/24"],"vni":42,"networks":{"blue":["198.19.104.0/24"],"green":{"vni":45,"subnets":["198.19.1.0/24"]}}}"#;
    let h5 = r#"{"name":"h5","underlay":"198.18.0.5","vtep_mac":"02:42:c6:12:00:05","subnets":["198.19.2.128/25"],"vni":42,"networks":{"blue":{"vni":46,"subnets":["198.19.101.0/24"]}}}"#;
    let lease = |ip: &str, vni: u32, mac: &str| {
        format!(
            r#"{{"PublicIP":"{ip}","BackendType":"vxlan","BackendData":{{"VNI":{vni},"VtepMAC":"{mac}"}}}}"#
        )
    };
    let config = r#"{"Network":"198.19.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":42,"Port":4789}}"#;
    let (l2, l3) = (
        lease("198.18.0.2", 42, "02:42:c6:12:00:02"),
        lease("198.18.0.3", 7, "02:42:c6:12:00:03"),
    );
    vec![
        store_input(false, &[("hosts/h2", h2)]),
        store_input(
            false,
            &[
                ("hosts/h2", h2),
                ("hosts/h3", h3),
                ("hosts/h4", h4),
                ("hosts/h5", h5),
                ("links/a", r#"{"a":"h1","b":"h2","cost":5}"#),
                ("links/b", r#"{"a":"h2","b":"h3"}"#),
                ("subnets/198.19.2.0-24", r#"{"host":"h2"}"#),
            ],
        ),
        store_input(
            false,
            &[
                ("hosts/h3", h2),
                ("hosts/h2", &h2.replace("\"vni\":42", "\"vni\":7")),
                ("links/c", r#"{"a":"h1","b":"h1"}"#),
                ("nothing/here", "{}"),
            ],
        ),
        store_input(
            true,
            &[
                ("config", config),
                ("subnets/198.19.2.0-24", &l2),
                ("subnets/198.19.3.0-24", &l3),
                ("subnets/198.19.4.0-33", &l2),
            ],
        ),
        store_input(
            false,
            &[
                ("hosts/h2", h2),
                ("networks/red/subnets/198.19.0.64-26", r#"{"host":"h1"}"#),
                ("networks/red/subnets/198.19.0.128-26", r#"{"host":"h2"}"#),
                ("networks/red/subnets/198.19.0.129-26", r#"{"host":"h2"}"#),
                ("networks/blue/subnets/198.19.0.64-26", "{"),
                ("networks/green/subnets/198.19.0.64-26", r#"{"host":"h3"}"#),
                (
                    "networks/bad name/subnets/198.19.0.0-26",
                    r#"{"host":"h3"}"#,
                ),
                ("networks/red/x", r#"{"host":"h3"}"#),
            ],
        ),
    ]
}
