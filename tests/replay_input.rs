//! Replay's inputs and outputs: pcapng time (every interface's resolution
//! and offset), mixed pcap and pcapng inputs taken in time order, the
//! obsolete Packet Block, pacing of ICMP errors by each frame's own time,
//! output timestamps, error messages that name file, port and frame, and no
//! partial output when a replay fails.
//!
//! Captures are written byte by byte here, from the pcap and pcapng
//! specifications, so the reader is checked against an encoder that shares
//! no code with it. Topology: `tests/golden/topo-v4.toml` (host h1; c1 is a
//! TUN port, c2 a veth port, eth0 the uplink; h2 is a linked neighbour).

use std::path::{Path, PathBuf};
use std::time::Duration;

use vxrouter::config::{self, Topology};
use vxrouter::dataplane::pipeline::{ICMP_ERRORS_PER_SEC, ICMP_ERROR_BURST};
use vxrouter::port::pcap::read_capture;
use vxrouter::port::LinkType;
use vxrouter::replay::{replay, ReplayStats};

const MTU: u16 = 1500;

fn topo() -> (Topology, usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/topo-v4.toml");
    let t = config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let h1 = t.host_index("h1").expect("h1");
    (t, h1)
}

// ---------------------------------------------------------------- frames

fn ones_sum(data: &[u8]) -> u16 {
    let mut acc = 0u32;
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// An IPv4/UDP packet from c1's address to a host of h2's subnet; `tag`
/// is the payload, so an output frame can be traced to its input.
fn udp_v4(src: [u8; 4], ttl: u8, tag: u16) -> Vec<u8> {
    let dst = [198, 19, 2, 10];
    let payload = tag.to_be_bytes();
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = ttl;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let ck = ones_sum(&p[..20]);
    p[10..12].copy_from_slice(&ck.to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&9u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(&payload);
    // UDP checksum 0: none (RFC 768).
    p
}

/// From c1 (TUN): raw IP.
fn from_c1(ttl: u8, tag: u16) -> Vec<u8> {
    udp_v4([198, 19, 1, 2], ttl, tag)
}

/// From c2 (veth): Ethernet to the router's MAC on c2.
fn from_c2(tag: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0x52, 0x12, 0x00, 0x01, 0x02]; // router MAC on c2
    f.extend([0x02, 0x00, 0x00, 0x00, 0x01, 0x03]); // c2's MAC
    f.extend([0x08, 0x00]);
    f.extend(udp_v4([198, 19, 1, 3], 64, tag));
    f
}

/// The tag an input frame carried, read from the end of an output frame.
fn tag_of(frame: &[u8]) -> u16 {
    let n = frame.len();
    u16::from_be_bytes([frame[n - 2], frame[n - 1]])
}

// ---------------------------------------------------------------- captures

/// Classic pcap, little-endian; `nanos` picks the a1b23c4d magic.
fn pcap(link: u32, nanos: bool, frames: &[(Duration, Vec<u8>)]) -> Vec<u8> {
    let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
    let mut v = magic.to_le_bytes().to_vec();
    v.extend(2u16.to_le_bytes());
    v.extend(4u16.to_le_bytes());
    v.extend([0; 8]);
    v.extend(65535u32.to_le_bytes());
    v.extend(link.to_le_bytes());
    for (ts, data) in frames {
        let frac = if nanos {
            ts.subsec_nanos()
        } else {
            ts.subsec_micros()
        };
        v.extend((ts.as_secs() as u32).to_le_bytes());
        v.extend(frac.to_le_bytes());
        v.extend((data.len() as u32).to_le_bytes());
        v.extend((data.len() as u32).to_le_bytes());
        v.extend(data);
    }
    v
}

/// pcapng blocks, little-endian.
fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    body.resize(body.len().next_multiple_of(4), 0);
    let len = (body.len() + 12) as u32;
    let mut v = kind.to_le_bytes().to_vec();
    v.extend(len.to_le_bytes());
    v.extend(body);
    v.extend(len.to_le_bytes());
    v
}

fn shb() -> Vec<u8> {
    let mut b = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    b.extend(1u16.to_le_bytes());
    b.extend(0u16.to_le_bytes());
    b.extend((-1i64).to_le_bytes());
    block(0x0a0d_0d0a, &b)
}

/// An Interface Description Block with optional `if_tsresol` (option 9)
/// and `if_tsoffset` (option 14).
fn idb(link: u16, tsresol: Option<u8>, tsoffset: Option<i64>) -> Vec<u8> {
    let mut b = link.to_le_bytes().to_vec();
    b.extend([0, 0]);
    b.extend(0u32.to_le_bytes());
    if let Some(r) = tsresol {
        b.extend(9u16.to_le_bytes());
        b.extend(1u16.to_le_bytes());
        b.extend([r, 0, 0, 0]);
    }
    if let Some(o) = tsoffset {
        b.extend(14u16.to_le_bytes());
        b.extend(8u16.to_le_bytes());
        b.extend(o.to_le_bytes());
    }
    b.extend([0; 4]); // opt_endofopt
    block(1, &b)
}

/// Enhanced Packet Block (type 6), or with `obsolete` the Packet Block
/// (type 2): a 16-bit interface ID and a 16-bit drop count in its place.
fn packet_block(obsolete: bool, iface: u16, units: u64, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    if obsolete {
        b.extend(iface.to_le_bytes());
        b.extend(3u16.to_le_bytes()); // drops
    } else {
        b.extend(u32::from(iface).to_le_bytes());
    }
    b.extend(((units >> 32) as u32).to_le_bytes());
    b.extend((units as u32).to_le_bytes());
    b.extend((data.len() as u32).to_le_bytes());
    b.extend((data.len() as u32).to_le_bytes());
    b.extend(data);
    block(if obsolete { 2 } else { 6 }, &b)
}

/// How an interface counts time: `if_tsresol` and `if_tsoffset`.
#[derive(Debug, Clone, Copy)]
struct Res {
    tsresol: Option<u8>,
    tsoffset: Option<i64>,
}

impl Res {
    /// Units of this interface for absolute time `t` (exact for the times
    /// the tests use).
    fn units(self, t: Duration) -> u64 {
        let t = t - Duration::from_secs(self.tsoffset.unwrap_or(0) as u64);
        let r = self.tsresol.unwrap_or(6);
        let ns = t.as_nanos();
        let u = if r & 0x80 != 0 {
            (ns << (r & 0x7f)) / 1_000_000_000
        } else {
            ns * 10u128.pow(u32::from(r)) / 1_000_000_000
        };
        u as u64
    }
}

/// A one-interface pcapng capture.
fn pcapng(link: u16, res: Res, obsolete: bool, frames: &[(Duration, Vec<u8>)]) -> Vec<u8> {
    let mut v = [shb(), idb(link, res.tsresol, res.tsoffset)].concat();
    for (t, data) in frames {
        v.extend(packet_block(obsolete, 0, res.units(*t), data));
    }
    v
}

// ---------------------------------------------------------------- running

struct Run {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    out: PathBuf,
}

impl Run {
    fn new() -> Run {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().to_owned();
        Run {
            out: dir.join("out"),
            dir,
            _dir: d,
        }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).expect("write capture");
        p
    }

    fn replay(&self, inputs: &[(&str, &Path)]) -> anyhow::Result<ReplayStats> {
        let (t, h1) = topo();
        let inputs: Vec<(String, PathBuf)> = inputs
            .iter()
            .map(|(p, f)| (p.to_string(), f.to_path_buf()))
            .collect();
        replay(&t, h1, &inputs, &self.out, MTU)
    }

    /// The frames replay wrote on `port`.
    fn output(&self, port: &str, link: LinkType) -> Vec<(Duration, Vec<u8>)> {
        read_capture(&self.out.join(format!("{port}.pcap")), port, link)
            .expect("output readable")
            .into_iter()
            .map(|f| (f.ts, f.data))
            .collect()
    }

    /// Names in the output directory.
    fn listing(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.out)
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn base() -> Duration {
    Duration::from_secs(1_700_000_000)
}

// ---------------------------------------------------------------- time

/// c1's frames come from a pcapng file whose interface counts time in
/// microseconds (no if_tsresol), nanoseconds, or 2^-20 s with an offset;
/// c2's from a classic microsecond pcap. Frames interleave every 1/64 s
/// (exact in every resolution): the uplink must carry them in time order,
/// each with its input's time.
#[test]
fn pcapng_time_orders_mixed_inputs() {
    let variants = [
        (
            "default 10^-6",
            Res {
                tsresol: None,
                tsoffset: None,
            },
        ),
        (
            "10^-9",
            Res {
                tsresol: Some(9),
                tsoffset: None,
            },
        ),
        (
            "2^-20 and if_tsoffset",
            Res {
                tsresol: Some(0x80 | 20),
                tsoffset: Some(1_600_000_000),
            },
        ),
    ];
    let at = |k: u32| base() + Duration::from_secs(1) * k / 64;
    for (name, res) in variants {
        let run = Run::new();
        let c1: Vec<_> = [0u16, 2, 4]
            .iter()
            .map(|&k| (at(k.into()), from_c1(64, k)))
            .collect();
        let c2: Vec<_> = [1u16, 3]
            .iter()
            .map(|&k| (at(k.into()), from_c2(k)))
            .collect();
        let f1 = run.file("c1.pcapng", &pcapng(101, res, false, &c1));
        let f2 = run.file("c2.pcap", &pcap(1, false, &c2));
        let s = run
            .replay(&[("c1", &f1), ("c2", &f2)])
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(s.counters.forwarded, 5, "{name}: {s:?}");
        let out = run.output("eth0", LinkType::Ethernet);
        let got: Vec<(Duration, u16)> = out.iter().map(|(t, f)| (*t, tag_of(f))).collect();
        let want: Vec<(Duration, u16)> = (0..5u16).map(|k| (at(k.into()), k)).collect();
        assert_eq!(got, want, "{name}");
    }
}

/// The obsolete Packet Block is read like an Enhanced Packet Block.
#[test]
fn obsolete_packet_block_is_replayed() {
    let run = Run::new();
    let res = Res {
        tsresol: Some(9),
        tsoffset: None,
    };
    let frames: Vec<_> = (0..3u16)
        .map(|k| {
            (
                base() + Duration::from_nanos(u64::from(k) * 1_001),
                from_c1(64, k),
            )
        })
        .collect();
    let f = run.file("c1.pcapng", &pcapng(101, res, true, &frames));
    let s = run.replay(&[("c1", &f)]).expect("replay");
    assert_eq!((s.ports["c1"].rx, s.counters.forwarded), (3, 3), "{s:?}");
    let out = run.output("eth0", LinkType::Ethernet);
    let got: Vec<(Duration, u16)> = out.iter().map(|(t, f)| (*t, tag_of(f))).collect();
    let want: Vec<(Duration, u16)> = frames.iter().map(|(t, f)| (*t, tag_of(f))).collect();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------- pacing

/// `n` frames from c1 with TTL 1, `gap` apart: each earns an ICMP time
/// exceeded, budget permitting.
fn expiring(n: u16, gap: Duration) -> Vec<(Duration, Vec<u8>)> {
    (0..n)
        .map(|k| (base() + gap * u32::from(k), from_c1(1, k)))
        .collect()
}

/// The tag of the packet an ICMP error quotes (the quoted UDP payload
/// sits at the end of the error).
fn quoted_tag(icmp: &[u8]) -> u16 {
    tag_of(icmp)
}

#[test]
fn icmp_errors_under_the_budget_are_all_sent_with_their_causes_time() {
    // 500 errors per second: half the budget.
    assert_eq!(ICMP_ERRORS_PER_SEC, 1000);
    let run = Run::new();
    let input = expiring(200, Duration::from_millis(2));
    let f = run.file("c1.pcap", &pcap(101, true, &input));
    let s = run.replay(&[("c1", &f)]).expect("replay");
    assert_eq!(
        (s.counters.icmp_errors, s.counters.icmp_rate_limited),
        (200, 0),
        "{s:?}"
    );
    assert_eq!(s.counters.drops.get("ttl_expired"), Some(&200));
    let out = run.output("c1", LinkType::RawIp);
    let got: Vec<(Duration, u16)> = out.iter().map(|(t, f)| (*t, quoted_tag(f))).collect();
    let want: Vec<(Duration, u16)> = input.iter().map(|(t, f)| (*t, tag_of(f))).collect();
    assert_eq!(got, want);
}

#[test]
fn icmp_errors_over_the_budget_are_rate_limited() {
    // 2,000 errors per second for 99.5 ms: the burst of 50 plus one token
    // per whole millisecond elapsed (99) are sent, the rest held back.
    assert_eq!((ICMP_ERRORS_PER_SEC, ICMP_ERROR_BURST), (1000, 50));
    let run = Run::new();
    let input = expiring(200, Duration::from_micros(500));
    let f = run.file(
        "c1.pcapng",
        &pcapng(
            101,
            Res {
                tsresol: Some(9),
                tsoffset: None,
            },
            false,
            &input,
        ),
    );
    let s = run.replay(&[("c1", &f)]).expect("replay");
    assert_eq!(
        (s.counters.icmp_errors, s.counters.icmp_rate_limited),
        (149, 51),
        "{s:?}"
    );
    assert_eq!(s.counters.drops.get("ttl_expired"), Some(&200));
    // Every error carries the time of the frame it answers.
    let out = run.output("c1", LinkType::RawIp);
    assert_eq!(out.len(), 149);
    for (t, f) in &out {
        let (cause_t, _) = &input[usize::from(quoted_tag(f))];
        assert_eq!(t, cause_t);
    }
    // The first 50 go at once; after that one in two.
    let tags: Vec<u16> = out.iter().map(|(_, f)| quoted_tag(f)).collect();
    assert_eq!(&tags[..50], &(0..50).collect::<Vec<u16>>()[..]);
    assert_eq!(*tags.last().unwrap(), 198);
}

// ---------------------------------------------------------------- errors

/// A replay of c1 from `bytes` (after a good c2 input) fails with a message
/// holding every one of `want`.
fn expect_error(file: &str, bytes: &[u8], want: &[&str]) {
    let run = Run::new();
    let good = run.file("c2.pcap", &pcap(1, false, &[(base(), from_c2(0))]));
    let bad = run.file(file, bytes);
    let e = match run.replay(&[("c2", &good), ("c1", &bad)]) {
        Ok(s) => panic!("{file}: replay succeeded: {s:?}"),
        Err(e) => format!("{e:#}"),
    };
    let path = bad.display().to_string();
    for w in [path.as_str(), "port c1"].iter().chain(want) {
        assert!(e.contains(w), "{file}: {e:?} lacks {w:?}");
    }
    assert!(!e.contains("Invalid field value"), "{e}");
    // Nothing written: the output directory holds nothing.
    assert_eq!(run.listing(), Vec::<String>::new(), "{file}: {e}");
}

#[test]
fn corrupt_inputs_are_refused_naming_file_port_and_frame() {
    let ok = |k| (base(), from_c1(64, k));
    let us = Res {
        tsresol: None,
        tsoffset: None,
    };

    // A classic pcap whose third record is cut short.
    let mut f = pcap(101, false, &[ok(0), ok(1), ok(2)]);
    f.truncate(f.len() - 5);
    let third = 24 + 2 * (16 + from_c1(64, 0).len());
    expect_error(
        "cut.pcap",
        &f,
        &[
            &format!("frame 3 (byte {third})"),
            "-byte record runs past the end of the file",
        ],
    );

    // A pcapng whose second packet names an interface never described.
    let f = [
        shb(),
        idb(101, None, None),
        packet_block(false, 0, 0, &from_c1(64, 0)),
        packet_block(false, 1, 0, &from_c1(64, 1)),
    ]
    .concat();
    expect_error(
        "iface.pcapng",
        &f,
        &["frame 2", "names interface 1", "only interface 0"],
    );

    // A packet with no interface description at all.
    let f = [shb(), packet_block(false, 0, 0, &from_c1(64, 0))].concat();
    expect_error(
        "noidb.pcapng",
        &f,
        &["frame 1", "no interface description precedes it"],
    );

    // Ethernet frames offered to the TUN port.
    let f = pcapng(1, us, false, &[ok(0)]);
    expect_error(
        "link.pcapng",
        &f,
        &[
            "frame 1",
            "link type 1 (ETHERNET)",
            "raw IP frames expected",
        ],
    );

    // A block whose two length fields disagree.
    let mut f = pcapng(101, us, false, &[ok(0), ok(1)]);
    let n = f.len();
    f[n - 4] ^= 4;
    expect_error("trailer.pcapng", &f, &["frame 2", "at the start but"]);

    // Not a capture.
    expect_error(
        "text.pcap",
        b"hello, world\n and more text",
        &["file header", "neither pcap"],
    );

    // A missing file.
    let run = Run::new();
    let e = run
        .replay(&[("c1", &run.dir.join("absent.pcap"))])
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("absent.pcap: port c1: "), "{e}");
}

/// A complete 9 MiB record is no error: it is read and dropped as too
/// long, like any frame above the port's buffers, and the next is replayed.
#[test]
fn a_huge_record_is_dropped_as_too_long() {
    let run = Run::new();
    let big = vec![0x45; 9 << 20];
    for (name, bytes) in [
        (
            "big.pcap",
            pcap(
                101,
                false,
                &[(base(), big.clone()), (base(), from_c1(64, 1))],
            ),
        ),
        (
            "big.pcapng",
            pcapng(
                101,
                Res {
                    tsresol: None,
                    tsoffset: None,
                },
                false,
                &[(base(), big.clone()), (base(), from_c1(64, 1))],
            ),
        ),
    ] {
        let f = run.file(name, &bytes);
        let s = run.replay(&[("c1", &f)]).expect(name);
        assert_eq!(s.ports["c1"].rx, 2, "{name}");
        assert_eq!(
            s.counters.drops.get("frame_too_long"),
            Some(&1),
            "{name}: {s:?}"
        );
        assert_eq!(s.counters.forwarded, 1, "{name}");
        assert_eq!(s.accounted(), s.rx_total(), "{name}");
    }
}

/// Unknown pcapng blocks are skipped and counted in stats.json.
#[test]
fn unknown_blocks_are_counted() {
    let run = Run::new();
    let f = [
        pcapng(
            101,
            Res {
                tsresol: None,
                tsoffset: None,
            },
            false,
            &[(base(), from_c1(64, 0))],
        ),
        block(0x0000_0042, &[1, 2, 3, 4]),
        block(5, &[0; 12]), // interface statistics: known, carries no frame
    ]
    .concat();
    let f = run.file("c1.pcapng", &f);
    let s = run.replay(&[("c1", &f)]).expect("replay");
    assert_eq!((s.ports["c1"].rx, s.ports["c1"].unknown_blocks), (1, 1));
    let json = std::fs::read_to_string(run.out.join("stats.json")).unwrap();
    assert!(json.contains("\"unknown_blocks\": 1"), "{json}");
}

// ---------------------------------------------------------------- output

#[test]
fn a_failed_replay_leaves_the_output_directory_as_it_was() {
    let run = Run::new();
    std::fs::create_dir_all(&run.out).unwrap();
    std::fs::write(run.out.join("stats.json"), "old stats\n").unwrap();
    std::fs::write(run.out.join("eth0.pcap"), "old capture\n").unwrap();
    let good = run.file("c1.pcap", &pcap(101, false, &[(base(), from_c1(64, 0))]));
    let bad = run.file("c2.pcap", &pcap(1, false, &[(base(), from_c2(0))])[..30]);
    let e = run.replay(&[("c1", &good), ("c2", &bad)]).unwrap_err();
    assert!(format!("{e:#}").contains("port c2"), "{e:#}");
    assert_eq!(run.listing(), ["eth0.pcap", "stats.json"]);
    assert_eq!(
        std::fs::read_to_string(run.out.join("stats.json")).unwrap(),
        "old stats\n"
    );
    assert_eq!(
        std::fs::read_to_string(run.out.join("eth0.pcap")).unwrap(),
        "old capture\n"
    );

    // The same directory after a replay that succeeds: new files, no
    // staging directory left behind.
    let s = run.replay(&[("c1", &good)]).expect("replay");
    assert_eq!(s.counters.forwarded, 1);
    assert_eq!(run.listing(), ["eth0.pcap", "stats.json"]);
    assert_eq!(run.output("eth0", LinkType::Ethernet).len(), 1);
    let json = std::fs::read_to_string(run.out.join("stats.json")).unwrap();
    assert!(json.contains("\"forwarded\": 1"), "{json}");
}
