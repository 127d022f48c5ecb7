//! Replays on stable, without nightly or libFuzzer, every input the fuzzers
//! (`fuzz/`, run by `tools/fuzz`) found a crash with, and their seed
//! corpora, through the same target functions (`fuzz/src/lib.rs`).
//!
//! A crash input lives in `tests/fuzz_regressions/<target>/<name>`; each
//! must run without a panic. One whose bug is not fixed yet is listed in
//! [`OPEN`] with what it hits, skipped by the per-target test and replayed
//! by the ignored `open_crashes` test.
//!
//! `cargo test --test fuzz_regressions write_seeds -- --ignored` rewrites
//! the seed corpora in `fuzz/corpus/` from the golden cases.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../fuzz/src/lib.rs"]
mod fuzz_entry;

use fuzz_entry::TARGETS;

/// Crash inputs whose bug is not fixed yet: (target, file, what it hits).
const OPEN: &[(&str, &str, &str)] = &[];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target(name: &str) -> fuzz_entry::Target {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.expect("reading a directory entry").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Runs every file of `dir` through target `name`, except the open ones;
/// returns how many ran, and panics naming each input that failed.
fn replay_dir(name: &str, dir: &Path) -> usize {
    let f = target(name);
    let mut failed = Vec::new();
    let mut n = 0;
    for path in files(dir) {
        let file = path.file_name().and_then(|s| s.to_str()).unwrap_or("");
        if OPEN.iter().any(|(t, o, _)| *t == name && *o == file) {
            continue;
        }
        let data = std::fs::read(&path).expect("reading an input");
        n += 1;
        if panic::catch_unwind(AssertUnwindSafe(|| f(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{name}: inputs that panic: {failed:#?}");
    n
}

fn regressions(name: &str) {
    replay_dir(name, &root().join("tests/fuzz_regressions").join(name));
}

fn seeds(name: &str) {
    let n = replay_dir(name, &root().join("fuzz/corpus").join(name));
    assert!(n > 0, "{name}: no seeds in fuzz/corpus/{name}");
}

#[test]
fn pipeline_regressions() {
    regressions("pipeline");
}

#[test]
fn topology_regressions() {
    regressions("topology");
}

#[test]
fn pcap_regressions() {
    regressions("pcap");
}

#[test]
fn liveness_regressions() {
    regressions("liveness");
}

#[test]
fn liveness_keyed_regressions() {
    regressions("liveness_keyed");
}

#[test]
fn store_regressions() {
    regressions("store");
}

#[test]
fn pipeline_seeds() {
    seeds("pipeline");
}

#[test]
fn topology_seeds() {
    seeds("topology");
}

#[test]
fn pcap_seeds() {
    seeds("pcap");
}

#[test]
fn liveness_seeds() {
    seeds("liveness");
}

#[test]
fn liveness_keyed_seeds() {
    seeds("liveness_keyed");
}

#[test]
fn store_seeds() {
    seeds("store");
}

/// The crashes not fixed yet: each must still panic until its fix lands
/// (then move it out of [`OPEN`]).
#[test]
#[ignore = "replays the open crashes listed in OPEN"]
fn open_crashes() {
    for (name, file, what) in OPEN {
        let path = root().join("tests/fuzz_regressions").join(name).join(file);
        let data = std::fs::read(&path).expect("reading an input");
        let f = target(name);
        let r = panic::catch_unwind(AssertUnwindSafe(|| f(&data)));
        eprintln!(
            "{name}/{file} ({what}): {}",
            if r.is_err() { "panics" } else { "passes" }
        );
    }
}

/// The fix-up the pipeline target applies makes checksums an independent
/// checker accepts (etherparse), through VXLAN to the inner packet.
#[test]
fn fixup_makes_valid_checksums() {
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
    let b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([198, 19, 1, 3], [198, 19, 2, 9], 64)
        .tcp(1000, 2000, 7, 1000);
    let mut inner = Vec::new();
    b.write(&mut inner, &[9u8; 33]).unwrap();
    let good = inner.clone();
    // Break every checksum and length, then repair.
    inner[14 + 3] ^= 0x55; // total length
    inner[14 + 10] ^= 0xff; // header checksum
    inner[14 + 20 + 16] ^= 0xff; // TCP checksum
    let all = fuzz_entry::F_CHECKSUMS | fuzz_entry::F_LENGTHS;
    let tcp = fuzz_entry::fix_frame(&mut inner, vxrouter::port::LinkType::Ethernet, all, 4789);
    assert_eq!(inner, good);
    assert_eq!(tcp, Some(33));

    let b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv6([0x20; 16], [0x30; 16], 64)
        .udp(1000, 4789);
    let mut outer = Vec::new();
    let mut payload = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    payload.extend_from_slice(&good);
    b.write(&mut outer, &payload).unwrap();
    let want = outer.clone();
    let at = outer.len() - good.len();
    outer[at + 14 + 10] ^= 0x0f; // inner IPv4 header checksum
    outer[14 + 40 + 6] ^= 0xff; // outer UDP checksum
    fuzz_entry::fix_frame(&mut outer, vxrouter::port::LinkType::Ethernet, all, 4789);
    assert_eq!(outer, want);
    let p = SlicedPacket::from_ethernet(&outer).unwrap();
    assert!(matches!(p.transport, Some(TransportSlice::Udp(_))));
}

// ---------------------------------------------------------------- seeds

fn write_corpus(name: &str, seeds: &[(String, Vec<u8>)]) {
    let dir = root().join("fuzz/corpus").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the corpus directory");
    for (file, data) in seeds {
        std::fs::write(dir.join(file), data).expect("writing a seed");
    }
    eprintln!("{name}: {} seeds", seeds.len());
}

/// The inner Ethernet frame of a VXLAN frame on the uplink, if it is one.
fn vxlan_inner(f: &[u8]) -> Option<Vec<u8>> {
    let (ip, proto_at) = match u16::from_be_bytes([*f.get(12)?, *f.get(13)?]) {
        0x0800 => (14 + usize::from(f.get(14)? & 0x0f) * 4, 14 + 9),
        0x86dd => (14 + 40, 14 + 6),
        _ => return None,
    };
    let dport = u16::from_be_bytes([*f.get(ip + 2)?, *f.get(ip + 3)?]);
    (f[proto_at] == 17 && dport == 4789).then(|| f.get(ip + 16..).map(<[u8]>::to_vec))?
}

#[test]
#[ignore = "writes fuzz/corpus; run by `tools/fuzz seed`"]
fn write_seeds() {
    use serde_json::Value;
    use vxrouter::port::pcap::read_capture;

    let golden = root().join("tests/golden");
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(golden.join("cases.json")).unwrap()).unwrap();

    // Pipeline: every golden case as it is, and uplink VXLAN as inner
    // frames with repaired checksums.
    let mut pipeline = Vec::new();
    for c in cases["cases"].as_array().unwrap() {
        let s = |k: &str| c[k].as_str().unwrap().to_owned();
        let Some((case, port, link)) =
            fuzz_entry::pipeline_case(&s("topo"), &s("host"), &s("in_port"))
        else {
            continue;
        };
        let Ok(frames) = read_capture(&golden.join(s("input")), &s("in_port"), link) else {
            continue;
        };
        let frames: Vec<Vec<u8>> = frames.into_iter().map(|f| f.data).collect();
        let name = s("name");
        pipeline.push((
            name.clone(),
            fuzz_entry::pipeline_input(case, 0, port, &frames),
        ));
        if port == 0 {
            let inner: Vec<Vec<u8>> = frames.iter().filter_map(|f| vxlan_inner(f)).collect();
            if !inner.is_empty() {
                let flags = fuzz_entry::F_VXLAN | fuzz_entry::F_CHECKSUMS | fuzz_entry::F_LENGTHS;
                pipeline.push((
                    format!("{name}.vxlan"),
                    fuzz_entry::pipeline_input(case, flags, 0x10 | port, &inner),
                ));
            }
        }
    }
    // A TCP super-packet from a container, into the workers' batch.
    let (case, c1, _) = fuzz_entry::pipeline_case("topo-v4.toml", "h1", "c1").unwrap();
    let mut tcp = vec![0u8; 40 + 3000];
    tcp[0] = 0x45;
    tcp[8] = 64;
    tcp[9] = 6;
    tcp[12..16].copy_from_slice(&[198, 19, 1, 2]);
    tcp[16..20].copy_from_slice(&[198, 19, 2, 9]);
    tcp[32] = 0x50;
    tcp[33] = 0x18;
    let flags = fuzz_entry::F_SUPER | fuzz_entry::F_CHECKSUMS | fuzz_entry::F_LENGTHS;
    let mut s = vec![case, flags, c1, 0x08];
    s.extend_from_slice(&(tcp.len() as u16).to_le_bytes());
    s.extend_from_slice(&1000u16.to_le_bytes());
    s.extend_from_slice(&tcp);
    pipeline.push(("super_c1_tcp".into(), s.clone()));
    s[1] |= fuzz_entry::F_TAKES_GSO;
    pipeline.push(("super_c1_tcp_whole".into(), s));
    write_corpus("pipeline", &pipeline);

    // Topology: every topology file of the project.
    let mut topology = Vec::new();
    for dir in ["configs", "tests/golden"] {
        for p in files(&root().join(dir)) {
            if p.extension().is_some_and(|e| e == "toml") {
                let name = format!(
                    "{}-{}",
                    dir.replace('/', "-"),
                    p.file_name().unwrap().to_str().unwrap()
                );
                topology.push((name, std::fs::read(&p).unwrap()));
            }
        }
    }
    write_corpus("topology", &topology);

    // pcap: every golden input capture, and pcapng made from some.
    let mut pcap = Vec::new();
    for p in files(&golden) {
        let n = p.file_name().unwrap().to_str().unwrap().to_owned();
        if n.ends_with(".in.pcap") {
            pcap.push((n, std::fs::read(&p).unwrap()));
        }
    }
    for (n, data) in pcap.clone().iter().take(8) {
        pcap.push((format!("{n}ng"), to_pcapng(data)));
    }
    write_corpus("pcap", &pcap);

    let liveness: Vec<(String, Vec<u8>)> = fuzz_entry::liveness_seeds()
        .into_iter()
        .enumerate()
        .map(|(i, s)| (format!("hello-{i}"), s))
        .collect();
    write_corpus("liveness", &liveness);

    let keyed: Vec<(String, Vec<u8>)> = fuzz_entry::liveness_keyed_seeds()
        .into_iter()
        .enumerate()
        .map(|(i, s)| (format!("keyed-{i}"), s))
        .collect();
    write_corpus("liveness_keyed", &keyed);

    let store: Vec<(String, Vec<u8>)> = fuzz_entry::store_seeds()
        .into_iter()
        .enumerate()
        .map(|(i, s)| (format!("view-{i}"), s))
        .collect();
    write_corpus("store", &store);
}

/// The same frames as a pcapng file: a section, one interface with
/// nanosecond timestamps, enhanced packet blocks and one simple one.
fn to_pcapng(pcap: &[u8]) -> Vec<u8> {
    use pcap_file::pcap::PcapReader;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::{
        InterfaceDescriptionBlock, InterfaceDescriptionOption,
    };
    use pcap_file::pcapng::blocks::simple_packet::SimplePacketBlock;
    use pcap_file::pcapng::PcapNgWriter;
    use std::borrow::Cow;

    let mut rd = PcapReader::new(pcap).unwrap();
    let linktype = rd.header().datalink;
    let mut w = PcapNgWriter::new(Vec::new()).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype,
        snaplen: 0,
        options: vec![InterfaceDescriptionOption::IfTsResol(9)],
    })
    .unwrap();
    let mut last = Vec::new();
    while let Some(p) = rd.next_packet() {
        let p = p.unwrap();
        last = p.data.to_vec();
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: p.timestamp,
            original_len: p.orig_len,
            data: Cow::Owned(p.data.into_owned()),
            options: vec![],
        })
        .unwrap();
    }
    w.write_pcapng_block(SimplePacketBlock {
        original_len: last.len() as u32,
        data: Cow::Owned(last),
    })
    .unwrap();
    w.into_inner()
}

/// The harness reaches what it is for: inner frames wrapped as VXLAN from
/// a peer are decapsulated and delivered, super-packets are forwarded as
/// their segments.
#[test]
fn harness_reaches_deep_stages() {
    let run = |seed: &str| {
        let data = std::fs::read(root().join("fuzz/corpus/pipeline").join(seed)).unwrap();
        fuzz_entry::pipeline_counters(&data)
    };
    assert_eq!(run("h2_to_c1_v4.vxlan").forwarded, 1);
    assert_eq!(run("v6u_transit_h2_to_h3_v4.vxlan").forwarded, 1);
    // The golden case has a broken inner checksum; the fix-up repairs it.
    assert_eq!(run("eth0_inner_ip_bad_checksum.vxlan").forwarded, 1);
    assert_eq!(run("super_c1_tcp").forwarded, 3);
    assert_eq!(run("super_c1_tcp_whole").forwarded, 3);
}

/// The keyed liveness harness gets past the MAC: its seeds have hellos
/// taken (neighbours' own and bodies it seals) and hellos refused for
/// each reason it aims at; and its own MAC is the one the code under
/// test makes.
#[test]
fn keyed_harness_gets_past_the_mac() {
    use vxrouter::route::liveness::{Hello, HelloKeys, Report, MAC_LEN};
    let keys = HelloKeys::parse("7 000102030405060708090a0b0c0d0e0f\n").unwrap();
    let (from, to) = ("198.18.0.2".parse().unwrap(), "198.18.0.1".parse().unwrap());
    let h = Hello {
        vni: 42,
        hears_you: true,
        reports: vec![Report {
            origin: from,
            seq: 9,
            down: vec![to],
        }],
    };
    let (d, _) = h.seal(keys.active(), 1234, from, to);
    let (signed, mac) = d.split_at(d.len() - MAC_LEN);
    let key: Vec<u8> = (0..16).collect();
    assert_eq!(fuzz_entry::hello_mac(&key, from, to, signed), mac);

    let mut taken = 0;
    let (mut replayed, mut skew, mut bad_mac, mut unknown) = (0, 0, 0, 0);
    for seed in files(&root().join("fuzz/corpus/liveness_keyed")) {
        let c = fuzz_entry::liveness_keyed_counts(&std::fs::read(&seed).unwrap());
        taken += c.received;
        replayed += c.replayed;
        skew += c.clock_skew;
        bad_mac += c.bad_mac;
        unknown += c.unknown_key;
    }
    assert!(taken > 20, "hellos taken: {taken}");
    assert!(replayed > 0 && skew > 0 && bad_mac > 0 && unknown > 0);
}

#[test]
fn store_harness_takes_and_refuses_records() {
    use vxrouter::store::Reject;
    let seeds = fuzz_entry::store_seeds();
    let m = fuzz_entry::store_merged(&seeds[1]).expect("a merge");
    let names: Vec<&str> = m.topology.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["h1", "h9", "h2", "h3", "h4"]);
    // h5's default subnet overlaps h2's.
    assert_eq!(m.rejected.len(), 1, "{:?}", m.rejected);
    assert_eq!(m.rejected[0].reason, Reject::Overlap);
    // h3's blue and red, h4's blue written before VNIs; h4's green is no
    // network here.
    let t = &m.topology;
    let blue = t.network_index("blue").unwrap();
    let red = t.network_index("red").unwrap();
    assert_eq!(t.hosts[3].subnets_in(blue).count(), 1);
    assert_eq!(t.hosts[3].subnets_in(red).count(), 1);
    assert_eq!(t.hosts[4].subnets_in(blue).count(), 1);
    assert_eq!(m.ignored.len(), 1);
    let m = fuzz_entry::store_merged(&seeds[3]).expect("a merge");
    assert_eq!(m.topology.hosts.len(), 3, "h1, h9 and one flannel lease");
    assert!(m.rejected.iter().any(|r| r.reason == Reject::ForeignVni));
    // Leases of the other networks: each bad one left out with its
    // reason, those of a network this router does not carry counted, none
    // a host.
    let m = fuzz_entry::store_merged(&seeds[4]).expect("a merge");
    let reasons: Vec<(&str, Reject)> = m
        .rejected
        .iter()
        .map(|r| (r.key.as_str(), r.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("networks/red/subnets/198.19.0.129-26", Reject::KeyMismatch),
            ("networks/blue/subnets/198.19.0.64-26", Reject::NotJson),
            (
                "networks/bad name/subnets/198.19.0.0-26",
                Reject::KeyMismatch
            ),
            ("networks/red/x", Reject::UnknownKey),
        ]
    );
    assert_eq!(m.foreign_leases, ["networks/green/subnets/198.19.0.64-26"]);
    assert_eq!(m.topology.hosts.len(), 3, "h1, h9 and h2");
}
