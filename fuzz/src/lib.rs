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

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::OnceLock;

use vxrouter::config::{self, Topology};
use vxrouter::dataplane::{self, Counters, Pipeline, PortKind, Tables, Verdict};
use vxrouter::port::mem::MemPort;
use vxrouter::port::{Batch, Gso, LinkType, Port, BATCH_SIZE};
use vxrouter::route::liveness::{Hello, Liveness, Report};

/// The topologies the pipeline and liveness targets run on: the golden
/// ones, which the golden tests keep valid as validation grows.
const TOPOLOGIES: [(&str, &str); 2] = [
    (
        "topo-v4.toml",
        include_str!("../../tests/golden/topo-v4.toml"),
    ),
    (
        "topo-v6.toml",
        include_str!("../../tests/golden/topo-v6.toml"),
    ),
];

/// A target body: any bytes in, a panic only on a finding.
pub type Target = fn(&[u8]);

/// The targets by name, for the regression test and the seed writer.
pub const TARGETS: [(&str, Target); 4] = [
    ("pipeline", pipeline),
    ("topology", topology),
    ("pcap", pcap),
    ("liveness", liveness),
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
                    .map(|p| match p.kind {
                        PortKind::Tun => LinkType::RawIp,
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
///   of topo-v6), modulo their number.
/// - `flags`: the `F_*` constants.
/// - `port`: low nibble the receiving port (modulo the host's ports, 0 is
///   the uplink); high nibble, with [`F_VXLAN`] on the uplink, the peer the
///   VXLAN comes from (modulo the topology's hosts plus one address that is
///   no host's).
/// - `ctl`: bits 0-2 advance the clock and start a new burst (0: same
///   burst, unless the port changes or the burst is full); bit 3 makes the
///   frame a super-packet (with [`F_SUPER`]), whose segment size follows,
///   and bit 4 takes its segment count from the input too instead of
///   deriving it from the TCP payload; bit 5 sends VXLAN with a zero UDP
///   checksum; bit 6 a wrong VNI; bit 7 takes the 8 VXLAN header bytes from
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
        pipe.counters
    })
}

/// Packets accounted for by a verdict so far.
fn accounted(pipe: &Pipeline) -> u64 {
    let c = &pipe.counters;
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
            let vni = if ctl & 0x40 != 0 { t.vni ^ 1 } else { t.vni };
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
                    Err(PcapPortError::LinkType { .. }) => continue,
                    Err(_) => break,
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
/// forged ones, between ticks, on both topologies.
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
                down: vec![topo.hosts[3].underlay],
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
