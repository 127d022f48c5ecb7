//! Golden tests: the real pipeline, through `vxrouter::replay`, against
//! vectors an independent encoder (scapy, `tools/golden/gen.py`) built.
//!
//! Every case of `tests/golden/cases.json` feeds one capture into one port of
//! host h1 and states what must come out: the frames on one port (compared
//! byte for byte outside the masked ranges the pipeline chooses freely), a
//! drop under a named reason, pass-through, or an ECMP spread. Every case
//! also checks that the replay stats account for every frame read, and every
//! frame sent on the uplink has its outer headers checked by a decoder that is
//! not ours (etherparse) plus our own RFC 1071 sum below. With several
//! networks (`topo-nets.toml`), every frame that comes out must belong to
//! the network its input came from (by port, or on the uplink by VNI), and
//! every ICMP error must come from a gateway of that network. Every
//! replay's stats.json counts per network as the live stats file does, and
//! the networks' counts sum to the totals; with several networks each case
//! states the network (or none) it counts under.
//!
//! Other tests: the committed vectors are exactly what the generator
//! produces, and every capture of `../shared/pcaps` replays without a panic
//! and with full accounting. Without python3 and scapy, or without the
//! corpus, those two report SKIPPED (and fail under `CI=true`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vxrouter::config::{self, PortKind, Topology};
use vxrouter::dataplane::DropReason;
use vxrouter::port::pcap::{read_capture, PcapPortError};
use vxrouter::port::LinkType;
use vxrouter::replay::{replay, ReplayStats};

/// Underlay MTU the replays run with.
const UNDERLAY_MTU: u16 = 1500;
/// VXLAN UDP port of the golden topologies.
const VXLAN_PORT: u16 = 4789;
/// RFC 7348 section 5: source ports from the dynamic range.
const SPORT_MIN: u16 = 49152;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
}

// ---------------------------------------------------------------- cases.json

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Forward,
    Reply,
    Icmp,
}

#[derive(Debug)]
enum Expect {
    /// Frames on `port`, compared with `output` outside `mask`.
    Output {
        kind: Kind,
        port: String,
        output: String,
        mask: Vec<(usize, usize)>,
        reason: Option<String>,
    },
    Drop(String),
    Pass,
    /// `flows` flows sent `repeat` times; each frame matches the frame at the
    /// same index of one alternative (a peer), and a flow always takes the
    /// same peer and source port.
    Ecmp {
        port: String,
        alternatives: BTreeMap<String, String>,
        mask: Vec<(usize, usize)>,
        flows: usize,
        repeat: usize,
    },
}

#[derive(Debug)]
struct Case {
    name: String,
    topo: String,
    host: String,
    in_port: String,
    input: String,
    frames: usize,
    expect: Expect,
    /// With several networks: the network (by name) under which stats.json
    /// counts every frame of the case; `Some(None)`: under `no_network`.
    network: Option<Option<String>>,
}

fn str_field(v: &Value, k: &str, case: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("cases.json: case {case}: missing string field {k:?}"))
        .to_owned()
}

fn usize_field(v: &Value, k: &str, case: &str) -> usize {
    v.get(k)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("cases.json: case {case}: missing integer field {k:?}"))
        as usize
}

fn mask_field(v: &Value, case: &str) -> Vec<(usize, usize)> {
    let Some(list) = v.get("mask").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|r| match r.as_array().map(|a| a.as_slice()) {
            Some([o, l]) => (
                o.as_u64()
                    .unwrap_or_else(|| panic!("case {case}: bad mask")) as usize,
                l.as_u64()
                    .unwrap_or_else(|| panic!("case {case}: bad mask")) as usize,
            ),
            _ => panic!("cases.json: case {case}: mask entries are [offset, length]"),
        })
        .collect()
}

fn load_cases() -> Vec<Case> {
    let path = golden_dir().join("cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        doc.get("version").and_then(Value::as_u64),
        Some(1),
        "cases.json version"
    );
    let list = doc
        .get("cases")
        .and_then(Value::as_array)
        .expect("cases.json: no cases array");
    list.iter()
        .map(|c| {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .expect("case without a name")
                .to_owned();
            let e = c
                .get("expect")
                .unwrap_or_else(|| panic!("case {name}: no expect"));
            let verdict = str_field(e, "verdict", &name);
            let expect = match verdict.as_str() {
                "forward" | "reply" | "icmp" => Expect::Output {
                    kind: match verdict.as_str() {
                        "forward" => Kind::Forward,
                        "reply" => Kind::Reply,
                        _ => Kind::Icmp,
                    },
                    port: str_field(e, "port", &name),
                    output: str_field(e, "output", &name),
                    mask: mask_field(e, &name),
                    reason: e.get("reason").and_then(Value::as_str).map(str::to_owned),
                },
                "drop" => Expect::Drop(str_field(e, "reason", &name)),
                "pass" => Expect::Pass,
                "ecmp" => Expect::Ecmp {
                    port: str_field(e, "port", &name),
                    alternatives: e
                        .get("alternatives")
                        .and_then(Value::as_object)
                        .unwrap_or_else(|| panic!("case {name}: no alternatives"))
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().expect("alternative file").to_owned()))
                        .collect(),
                    mask: mask_field(e, &name),
                    flows: usize_field(e, "flows", &name),
                    repeat: usize_field(e, "repeat", &name),
                },
                other => panic!("case {name}: unknown verdict {other:?}"),
            };
            Case {
                topo: str_field(c, "topo", &name),
                host: str_field(c, "host", &name),
                in_port: str_field(c, "in_port", &name),
                input: str_field(c, "input", &name),
                frames: usize_field(c, "frames", &name),
                network: e.get("network").map(|n| match n {
                    Value::Null => None,
                    Value::String(n) => Some(n.clone()),
                    _ => panic!("cases.json: case {name}: network is a name or null"),
                }),
                expect,
                name,
            }
        })
        .collect()
}

// ---------------------------------------------------------------- helpers

fn load_topo(file: &str) -> Topology {
    let path = golden_dir().join(file);
    config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Link type of port `port` of host `host`: raw IP for TUN, else Ethernet.
fn link_of(topo: &Topology, host: usize, port: &str) -> LinkType {
    match topo.hosts[host].ports.iter().find(|p| p.name == port) {
        Some(p) if p.kind == PortKind::Tun => LinkType::RawIp,
        _ => LinkType::Ethernet,
    }
}

fn read_frames(path: &Path, port: &str, link: LinkType) -> Result<Vec<Vec<u8>>, String> {
    read_capture(path, port, link)
        .map(|v| v.into_iter().map(|f| f.data).collect())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Names of the pcap files replay wrote into `dir`.
fn written_pcaps(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".pcap"))
                .collect()
        })
        .unwrap_or_default()
}

fn in_mask(mask: &[(usize, usize)], i: usize) -> bool {
    mask.iter().any(|&(o, l)| i >= o && i < o + l)
}

/// Compares `got` with `want` outside `mask`; describes the first difference.
fn masked_diff(got: &[u8], want: &[u8], mask: &[(usize, usize)]) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("length {} != expected {}", got.len(), want.len()));
    }
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| !in_mask(mask, i) && got[i] != want[i])
        .collect();
    let first = *bad.first()?;
    let lo = first.saturating_sub(8);
    let hi = (first + 24).min(got.len());
    Some(format!(
        "{} byte(s) differ, first at offset {first}:\n      got  [{lo}..{hi}] {}\n      want [{lo}..{hi}] {}",
        bad.len(),
        hex(&got[lo..hi]),
        hex(&want[lo..hi])
    ))
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// RFC 1071 one's-complement sum of `data`, folded, not inverted.
fn ones_sum(data: &[u8], mut acc: u32) -> u16 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Checks the outer headers of a frame the router sent on the uplink, with
/// our own sum and with etherparse: Ethernet / IPv4 (header checksum valid,
/// lengths exact) or IPv6 / UDP to the VXLAN port from the dynamic range,
/// checksum zero or valid over IPv4 and valid over IPv6 / VXLAN I flag.
/// Returns the UDP source port.
fn check_outer(f: &[u8]) -> Result<u16, String> {
    if f.len() < 14 {
        return Err("frame shorter than Ethernet".into());
    }
    let (udp_off, pseudo) = match be16(f, 12) {
        0x0800 => {
            let ip = &f[14..];
            if ip.len() < 20 || ip[0] >> 4 != 4 {
                return Err("outer IPv4 header truncated".into());
            }
            let hl = usize::from(ip[0] & 0x0f) * 4;
            if ones_sum(&ip[..hl.min(ip.len())], 0) != 0xffff {
                return Err("outer IPv4 header checksum wrong (own sum)".into());
            }
            let (h, _) = etherparse::Ipv4Header::from_slice(ip)
                .map_err(|e| format!("etherparse: outer IPv4: {e}"))?;
            if h.header_checksum != h.calc_header_checksum() {
                return Err(format!(
                    "etherparse: outer IPv4 checksum {:#06x}, should be {:#06x}",
                    h.header_checksum,
                    h.calc_header_checksum()
                ));
            }
            if usize::from(be16(ip, 2)) != ip.len() {
                return Err(format!(
                    "outer IPv4 total length {} but {} bytes follow Ethernet",
                    be16(ip, 2),
                    ip.len()
                ));
            }
            if ip[9] != 17 {
                return Err(format!("outer protocol {} is not UDP", ip[9]));
            }
            if ip[6] & 0x40 == 0 || be16(ip, 6) & 0x3fff != 0 {
                return Err("outer IPv4 without DF or fragmented".into());
            }
            let udp_len = (ip.len() - hl) as u32;
            let acc = u32::from(be16(ip, 12))
                + u32::from(be16(ip, 14))
                + u32::from(be16(ip, 16))
                + u32::from(be16(ip, 18))
                + 17
                + udp_len;
            (14 + hl, Some((acc, false)))
        }
        0x86dd => {
            let ip = &f[14..];
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return Err("outer IPv6 header truncated".into());
            }
            etherparse::Ipv6Header::from_slice(ip)
                .map_err(|e| format!("etherparse: outer IPv6: {e}"))?;
            if usize::from(be16(ip, 4)) + 40 != ip.len() {
                return Err(format!(
                    "outer IPv6 payload length {} but {} bytes follow",
                    be16(ip, 4),
                    ip.len() - 40
                ));
            }
            if ip[6] != 17 {
                return Err(format!("outer next header {} is not UDP", ip[6]));
            }
            let mut acc = 17 + (ip.len() - 40) as u32;
            for i in (8..40).step_by(2) {
                acc += u32::from(be16(ip, i));
            }
            (54, Some((acc, true)))
        }
        t => return Err(format!("outer ethertype {t:#06x} is neither IPv4 nor IPv6")),
    };
    let udp = &f[udp_off..];
    if udp.len() < 16 {
        return Err("UDP and VXLAN headers truncated".into());
    }
    if usize::from(be16(udp, 4)) != udp.len() {
        return Err(format!(
            "UDP length {} but {} bytes",
            be16(udp, 4),
            udp.len()
        ));
    }
    let sport = be16(udp, 0);
    if sport < SPORT_MIN {
        return Err(format!("UDP source port {sport} outside 49152-65535"));
    }
    if be16(udp, 2) != VXLAN_PORT {
        return Err(format!(
            "UDP destination port {} is not {VXLAN_PORT}",
            be16(udp, 2)
        ));
    }
    let csum = be16(udp, 6);
    if let Some((acc, v6)) = pseudo {
        if v6 && csum == 0 {
            return Err("UDP checksum zero over IPv6".into());
        }
        if csum != 0 && ones_sum(udp, acc) != 0xffff {
            return Err(format!("UDP checksum {csum:#06x} wrong (own sum)"));
        }
        // The same through etherparse.
        let (uh, payload) =
            etherparse::UdpHeader::from_slice(udp).map_err(|e| format!("etherparse: UDP: {e}"))?;
        if csum != 0 {
            let ip = &f[14..];
            let calc = if v6 {
                let mut s = [0u8; 16];
                let mut d = [0u8; 16];
                s.copy_from_slice(&ip[8..24]);
                d.copy_from_slice(&ip[24..40]);
                uh.calc_checksum_ipv6_raw(s, d, payload)
            } else {
                uh.calc_checksum_ipv4_raw(
                    [ip[12], ip[13], ip[14], ip[15]],
                    [ip[16], ip[17], ip[18], ip[19]],
                    payload,
                )
            }
            .map_err(|e| format!("etherparse: UDP checksum: {e}"))?;
            if calc != csum {
                return Err(format!(
                    "etherparse: UDP checksum {csum:#06x}, should be {calc:#06x}"
                ));
            }
        }
    }
    if udp[8] & 0x08 == 0 {
        return Err("VXLAN I flag not set".into());
    }
    Ok(sport)
}

// ---------------------------------------------------------------- networks

/// Where the VNI of a VXLAN frame lies: Ethernet, IPv4 (any header length)
/// or IPv6 (no extension header), UDP, VXLAN. `None` for anything else.
fn vni_range(f: &[u8]) -> Option<std::ops::Range<usize>> {
    let udp = match be16(f.get(..14)?, 12) {
        0x0800 => {
            let ip = f.get(14..)?;
            if *ip.get(9)? != 17 {
                return None;
            }
            14 + usize::from(ip[0] & 0x0f) * 4
        }
        0x86dd if *f.get(14 + 6)? == 17 => 54,
        _ => return None,
    };
    let vni = udp + 8 + 4..udp + 8 + 7;
    f.get(vni.clone())?;
    Some(vni)
}

/// The VNI of a VXLAN frame (see [`vni_range`]).
fn vni_of(f: &[u8]) -> Option<u32> {
    let v = &f[vni_range(f)?];
    Some(u32::from_be_bytes([0, v[0], v[1], v[2]]))
}

/// The network (index in `topo.networks`) of what passes port `port` of
/// `host`: the port's own network, or for the uplink the network of the
/// frame's VNI. `None`: an uplink frame of no known network.
fn network_on(topo: &Topology, host: usize, port: &str, frame: &[u8]) -> Option<usize> {
    match topo.hosts[host].ports.iter().find(|p| p.name == port) {
        Some(p) => topo.network_index(&p.network),
        None => vni_of(frame).and_then(|v| topo.network_by_vni(v)),
    }
}

/// What came out stays in the network it came in from: every frame on
/// `port` belongs (by its port, or on the uplink by its VNI) to the network
/// of the case's input (by its port, or by the VNI of its frames). Checked
/// on the frames the pipeline wrote, independently of the expected ones.
/// Returns that network (`None` when the input names none: no check).
fn check_same_network(
    topo: &Topology,
    host: usize,
    c: &Case,
    port: &str,
    got: &[Vec<u8>],
) -> Result<Option<usize>, String> {
    let link = link_of(topo, host, &c.in_port);
    let input = read_frames(&golden_dir().join(&c.input), &c.in_port, link)?;
    let ins: BTreeSet<Option<usize>> = input
        .iter()
        .map(|f| network_on(topo, host, &c.in_port, f))
        .collect();
    let net = match ins.into_iter().collect::<Vec<_>>().as_slice() {
        [Some(n)] => *n,
        // Frames of no parseable VNI (extension headers), or of several
        // networks: nothing to compare with.
        _ => return Ok(None),
    };
    for (i, f) in got.iter().enumerate() {
        let out = network_on(topo, host, port, f);
        if out != Some(net) {
            let name = |n: Option<usize>| {
                n.and_then(|n| topo.networks.get(n))
                    .map_or("no network".to_owned(), |n| {
                        format!("{} (VNI {})", n.name, n.vni)
                    })
            };
            return Err(format!(
                "frame {i} on {port} left in {}, but came in from {}",
                name(out),
                name(Some(net))
            ));
        }
    }
    Ok(Some(net))
}

/// The router's own addresses in network `net` on `host`: its ports'
/// gateways in that network.
fn gateways_in(topo: &Topology, host: usize, net: usize) -> BTreeSet<std::net::IpAddr> {
    topo.hosts[host]
        .ports
        .iter()
        .filter(|p| topo.network_index(&p.network) == Some(net))
        .flat_map(|p| p.gateways.iter().copied())
        .collect()
}

/// The source address of the IP packet a frame on `port` carries: the frame
/// itself on a TUN port, after Ethernet on a veth port, after the outer
/// headers and the inner Ethernet on the uplink.
fn inner_ip_source(topo: &Topology, host: usize, port: &str, f: &[u8]) -> Option<std::net::IpAddr> {
    let ip = match topo.hosts[host].ports.iter().find(|p| p.name == port) {
        Some(p) if p.kind == PortKind::Tun => f,
        Some(_) => f.get(14..)?,
        None => {
            let outer = match be16(f.get(..14)?, 12) {
                0x0800 => 14 + usize::from(f.get(14)? & 0x0f) * 4,
                _ => 54,
            };
            f.get(outer + 8 + 8 + 14..)?
        }
    };
    match ip.first()? >> 4 {
        4 => {
            let a: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            Some(a.into())
        }
        6 => {
            let a: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            Some(a.into())
        }
        _ => None,
    }
}

/// ICMP errors come from a gateway of the network they are sent in.
fn check_icmp_source(
    topo: &Topology,
    host: usize,
    port: &str,
    net: Option<usize>,
    got: &[Vec<u8>],
) -> Result<(), String> {
    let Some(net) = net else { return Ok(()) };
    let gws = gateways_in(topo, host, net);
    for (i, f) in got.iter().enumerate() {
        let src = inner_ip_source(topo, host, port, f)
            .ok_or_else(|| format!("frame {i} on {port}: no IP packet"))?;
        if !gws.contains(&src) {
            return Err(format!(
                "ICMP error {i} on {port} comes from {src}, not from a gateway of {} ({gws:?})",
                topo.networks[net].name
            ));
        }
    }
    Ok(())
}

/// The counters of one object of stats.json (the totals, a network's, or
/// `no_network`) as name -> count, drops as `drops.REASON`, zeros left out.
fn counters_of(v: &Value) -> Result<BTreeMap<String, u64>, String> {
    let mut m = BTreeMap::new();
    for k in [
        "forwarded",
        "replied",
        "pass_through",
        "icmp_errors",
        "icmp_rate_limited",
    ] {
        let n = v
            .get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("no counter {k} in {v}"))?;
        if n > 0 {
            m.insert(k.to_owned(), n);
        }
    }
    let drops = v
        .get("drops")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("no drops in {v}"))?;
    for (r, n) in drops {
        let n = n.as_u64().ok_or_else(|| format!("drop {r}: {n}"))?;
        if n > 0 {
            m.insert(format!("drops.{r}"), n);
        }
    }
    Ok(m)
}

/// stats.json counts every frame once, per network as the live stats file
/// does: `networks` are the topology's, in its order, with their VNIs;
/// each container port names its network, the uplink none;
/// their counters and `no_network`'s sum to the totals; there are no
/// `removed_networks` (replay never reloads). With `want`, every count of
/// the case lies under that network (`None`: under `no_network`) and the
/// others count nothing.
fn check_by_network(
    topo: &Topology,
    host: usize,
    json: &Value,
    want: Option<&Option<String>>,
) -> Result<(), String> {
    let totals = counters_of(json)?;
    let nets = json
        .get("networks")
        .and_then(Value::as_array)
        .ok_or("no networks")?;
    let got: Vec<(Option<&str>, Option<u64>)> = nets
        .iter()
        .map(|n| {
            (
                n.get("name").and_then(Value::as_str),
                n.get("vni").and_then(Value::as_u64),
            )
        })
        .collect();
    let want_nets: Vec<(Option<&str>, Option<u64>)> = topo
        .networks
        .iter()
        .map(|n| (Some(n.name.as_str()), Some(u64::from(n.vni))))
        .collect();
    if got != want_nets {
        return Err(format!(
            "networks (name, vni) {got:?}, expected {want_nets:?}"
        ));
    }
    if let Some(r) = json.get("removed_networks") {
        return Err(format!("removed_networks {r} in a replay"));
    }
    let ports = json
        .get("ports")
        .and_then(Value::as_object)
        .ok_or("no ports")?;
    for (name, p) in ports {
        let want = topo.hosts[host]
            .ports
            .iter()
            .find(|c| c.name == *name)
            .map(|c| c.network.as_str());
        let got = p.get("network").and_then(Value::as_str);
        if got != want {
            return Err(format!("port {name} in network {got:?}, expected {want:?}"));
        }
    }
    let mut buckets = Vec::with_capacity(nets.len() + 1);
    for (n, t) in nets.iter().zip(&topo.networks) {
        buckets.push((Some(t.name.as_str()), counters_of(n)?));
    }
    let none = json.get("no_network").ok_or("no no_network")?;
    buckets.push((None, counters_of(none)?));
    let mut sum: BTreeMap<String, u64> = BTreeMap::new();
    for (_, c) in &buckets {
        for (k, v) in c {
            *sum.entry(k.clone()).or_default() += v;
        }
    }
    if sum != totals {
        return Err(format!(
            "networks and no_network sum to {sum:?}, the totals are {totals:?}"
        ));
    }
    let Some(want) = want else { return Ok(()) };
    let empty = BTreeMap::new();
    for (name, c) in &buckets {
        let expected = if *name == want.as_deref() {
            &totals
        } else {
            &empty
        };
        if c != expected {
            return Err(format!(
                "{} counted {c:?}, expected {expected:?}",
                name.map_or("no_network".to_owned(), |n| format!("network {n}"))
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- one case

fn run_case(c: &Case) -> Result<(), String> {
    let dir = golden_dir();
    let topo = load_topo(&c.topo);
    let host = topo
        .host_index(&c.host)
        .ok_or_else(|| format!("no host {} in {}", c.host, c.topo))?;
    let out = tempfile::tempdir().map_err(|e| e.to_string())?;
    let inputs = vec![(c.in_port.clone(), dir.join(&c.input))];
    let stats = replay(&topo, host, &inputs, out.path(), UNDERLAY_MTU)
        .map_err(|e| format!("replay: {e:#}"))?;
    let n = c.frames as u64;

    let rx = stats.rx_total();
    if rx != n {
        return Err(format!("read {rx} frames, the capture holds {n}"));
    }
    if stats.accounted() != rx {
        return Err(format!(
            "accounted {} != received {rx}: {}",
            stats.accounted(),
            summary(&stats)
        ));
    }
    let json: Value = std::fs::read_to_string(out.path().join("stats.json"))
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        .map_err(|e| format!("stats.json: {e}"))?;
    check_by_network(&topo, host, &json, c.network.as_ref())
        .map_err(|e| format!("stats.json: {e} ({})", summary(&stats)))?;
    let written = written_pcaps(out.path());
    let tx_total: u64 = stats.ports.values().map(|p| p.tx).sum();

    match &c.expect {
        Expect::Pass => {
            expect_counts(&stats, 0, 0, n, 0)?;
            expect_drops(&stats, None, 0)?;
            expect_written(&written, &[])?;
            if tx_total != 0 {
                return Err(format!("pass-through but {tx_total} frames sent"));
            }
        }
        Expect::Drop(reason) => {
            expect_counts(&stats, 0, 0, 0, 0)?;
            expect_drops(&stats, Some(reason), n)?;
            expect_written(&written, &[])?;
            if tx_total != 0 {
                return Err(format!("dropped but {tx_total} frames sent"));
            }
        }
        Expect::Output {
            kind,
            port,
            output,
            mask,
            reason,
        } => {
            match kind {
                Kind::Forward => {
                    expect_counts(&stats, n, 0, 0, 0)?;
                    expect_drops(&stats, None, 0)?;
                }
                Kind::Reply => {
                    expect_counts(&stats, 0, n, 0, 0)?;
                    expect_drops(&stats, None, 0)?;
                }
                Kind::Icmp => {
                    expect_counts(&stats, 0, 0, 0, n)?;
                    expect_drops(&stats, reason.as_ref(), n)?;
                }
            }
            expect_written(&written, &[port])?;
            let tx = stats.ports.get(port).map_or(0, |p| p.tx);
            if tx != n || tx_total != n {
                return Err(format!(
                    "sent {tx} on {port} ({tx_total} in all), expected {n}"
                ));
            }
            let link = link_of(&topo, host, port);
            let got = read_frames(&out.path().join(format!("{port}.pcap")), port, link)?;
            let want = read_frames(&dir.join(output), port, link)?;
            if got.len() != want.len() {
                return Err(format!(
                    "{} frames on {port}, expected {}",
                    got.len(),
                    want.len()
                ));
            }
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                if let Some(d) = masked_diff(g, w, mask) {
                    return Err(format!("frame {i} on {port}: {d}"));
                }
                if port == &topo.hosts[host].nic.clone().unwrap_or_default() {
                    check_outer(g).map_err(|e| format!("frame {i} on {port}: {e}"))?;
                }
            }
            let net = check_same_network(&topo, host, c, port, &got)?;
            if *kind == Kind::Icmp {
                check_icmp_source(&topo, host, port, net, &got)?;
            }
        }
        Expect::Ecmp {
            port,
            alternatives,
            mask,
            flows,
            repeat,
        } => {
            expect_counts(&stats, n, 0, 0, 0)?;
            expect_drops(&stats, None, 0)?;
            expect_written(&written, &[port])?;
            let link = link_of(&topo, host, port);
            let got = read_frames(&out.path().join(format!("{port}.pcap")), port, link)?;
            if got.len() != flows * repeat || got.len() as u64 != n {
                return Err(format!(
                    "{} frames on {port}, expected {}",
                    got.len(),
                    flows * repeat
                ));
            }
            check_same_network(&topo, host, c, port, &got)?;
            let mut alts = Vec::new();
            for (peer, file) in alternatives {
                alts.push((peer.clone(), read_frames(&dir.join(file), port, link)?));
            }
            // (peer, source port) each frame took.
            let mut took = Vec::with_capacity(got.len());
            for (i, g) in got.iter().enumerate() {
                let peer = alts
                    .iter()
                    .find(|(_, w)| w.get(i).is_some_and(|w| masked_diff(g, w, mask).is_none()))
                    .map(|(p, _)| p.clone())
                    .ok_or_else(|| {
                        let diffs: Vec<String> = alts
                            .iter()
                            .map(|(p, w)| {
                                format!(
                                    "    vs {p}: {}",
                                    w.get(i)
                                        .and_then(|w| masked_diff(g, w, mask))
                                        .unwrap_or_default()
                                )
                            })
                            .collect();
                        format!(
                            "frame {i} matches no ECMP alternative:\n{}",
                            diffs.join("\n")
                        )
                    })?;
                let sport = check_outer(g).map_err(|e| format!("frame {i}: {e}"))?;
                took.push((peer, sport));
            }
            for f in 0..*flows {
                for r in 1..*repeat {
                    if took[f] != took[r * flows + f] {
                        return Err(format!(
                            "flow {f} took {:?} first and {:?} on repeat {r}",
                            took[f],
                            took[r * flows + f]
                        ));
                    }
                }
            }
            let mut per_peer: BTreeMap<&str, usize> = BTreeMap::new();
            for (p, _) in &took[..*flows] {
                *per_peer.entry(p.as_str()).or_default() += 1;
            }
            for peer in alternatives.keys() {
                if !per_peer.contains_key(peer.as_str()) {
                    return Err(format!("no flow went to {peer}: {per_peer:?}"));
                }
            }
            eprintln!("  {}: spread over {flows} flows: {per_peer:?}", c.name);
        }
    }
    Ok(())
}

fn summary(s: &ReplayStats) -> String {
    format!(
        "forwarded {} replied {} pass_through {} icmp_errors {} drops {:?} ports {:?}",
        s.counters.forwarded,
        s.counters.replied,
        s.counters.pass_through,
        s.counters.icmp_errors,
        s.counters.drops,
        s.ports
    )
}

fn expect_counts(
    s: &ReplayStats,
    forwarded: u64,
    replied: u64,
    pass: u64,
    icmp: u64,
) -> Result<(), String> {
    let c = &s.counters;
    if (c.forwarded, c.replied, c.pass_through, c.icmp_errors) != (forwarded, replied, pass, icmp) {
        return Err(format!(
            "expected forwarded {forwarded} replied {replied} pass_through {pass} icmp_errors {icmp}; got {}",
            summary(s)
        ));
    }
    Ok(())
}

fn expect_drops(s: &ReplayStats, reason: Option<&String>, n: u64) -> Result<(), String> {
    let want: BTreeMap<&str, u64> = reason.map(|r| (r.as_str(), n)).into_iter().collect();
    let got: BTreeMap<&str, u64> = s
        .counters
        .drops
        .iter()
        .map(|(k, v)| (*k, *v))
        .filter(|(_, v)| *v > 0)
        .collect();
    if got != want {
        return Err(format!(
            "expected drops {want:?}, got {got:?} ({})",
            summary(s)
        ));
    }
    Ok(())
}

fn expect_written(written: &BTreeSet<String>, ports: &[&String]) -> Result<(), String> {
    let want: BTreeSet<String> = ports.iter().map(|p| format!("{p}.pcap")).collect();
    if *written != want {
        return Err(format!("output files {written:?}, expected {want:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------- tests

/// Every golden case; all failures are reported together. Set
/// `GOLDEN_CASE=substring` to run a subset.
#[test]
fn golden_cases() {
    let filter = std::env::var("GOLDEN_CASE").ok();
    let cases = load_cases();
    assert!(cases.len() >= 100, "only {} golden cases", cases.len());
    let mut failures = Vec::new();
    let mut ran = 0;
    for c in &cases {
        if filter
            .as_ref()
            .is_some_and(|f| !c.name.contains(f.as_str()))
        {
            continue;
        }
        ran += 1;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(c)));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failures.push(format!("{} ({} into {}): {e}", c.name, c.input, c.in_port))
            }
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: PANIC {msg}", c.name));
            }
        }
    }
    eprintln!("golden: {ran} case(s) run, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{} golden case(s) failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// The reasons the cases name exist, and the cases cover what the issue
/// asks for: every verdict kind, both topologies, both container ports.
#[test]
fn golden_cases_are_well_formed() {
    let cases = load_cases();
    let known: BTreeSet<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
    let mut names = BTreeSet::new();
    let mut reasons = BTreeSet::new();
    for c in &cases {
        assert!(names.insert(c.name.clone()), "duplicate case {}", c.name);
        let r = match &c.expect {
            Expect::Drop(r) => Some(r),
            Expect::Output { reason, .. } => reason.as_ref(),
            _ => None,
        };
        if let Some(r) = r {
            assert!(
                known.contains(r.as_str()),
                "case {}: unknown drop reason {r:?}",
                c.name
            );
            reasons.insert(r.clone());
        }
        let dir = golden_dir();
        assert!(
            dir.join(&c.input).is_file(),
            "case {}: {} missing",
            c.name,
            c.input
        );
    }
    for r in [
        "spoofed_source",
        "ttl_expired",
        "no_route",
        "too_big",
        "too_big_no_df",
        "ip_malformed",
        "ip_bad_checksum",
        "udp_malformed",
        "udp_bad_checksum",
        "vxlan_truncated",
        "vxlan_bad_flags",
        "vxlan_unknown_vni",
        "unknown_peer",
        "vxlan_from_self",
        "peer_not_neighbour",
        "inner_spoofed_source",
        "inner_source_wrong_peer",
        "neigh_bad_mac",
        "underlay_too_big",
        "outer_fragment",
        "eth_truncated",
    ] {
        assert!(reasons.contains(r), "no golden case for drop reason {r}");
    }
    for (topo, port) in [
        ("topo-v4.toml", "c1"),
        ("topo-v4.toml", "c2"),
        ("topo-v4.toml", "eth0"),
        ("topo-v6.toml", "eth0"),
    ] {
        assert!(
            cases.iter().any(|c| c.topo == topo && c.in_port == port),
            "no case into {port} on {topo}"
        );
    }
}

/// The cases of `topo-nets.toml` (the default network, VNI 42, and blue,
/// VNI 43, with the same prefixes on h1 and h2) cover what several networks
/// on one fabric must do: every port of h1 sends and receives; the same
/// inner frame under the two VNIs reaches two ports of two networks; the
/// same packet from ports of two networks leaves under two VNIs; each
/// network's gateway sends ICMP errors, both to its ports and through the
/// tunnel; a VNI of no network is dropped by name. (That every output stays
/// in its input's network and every ICMP error comes from its network's
/// gateway is checked case by case, in `golden_cases`, as is the network
/// stats.json counts each case under.)
#[test]
fn network_cases_cover_the_issue() {
    let file = "topo-nets.toml";
    let topo = load_topo(file);
    assert!(topo.networks.len() >= 2, "{file}: one network only");
    let host = topo.host_index("h1").expect("h1");
    let nic = topo.hosts[host].nic.clone().expect("nic");
    let cases = load_cases();
    let nets: Vec<&Case> = cases.iter().filter(|c| c.topo == file).collect();
    let out_port = |c: &Case| match &c.expect {
        Expect::Output { port, .. } => Some(port.clone()),
        _ => None,
    };
    for p in &topo.hosts[host].ports {
        assert!(
            nets.iter().any(|c| c.in_port == p.name),
            "no case into port {}",
            p.name
        );
        assert!(
            nets.iter()
                .any(|c| out_port(c).as_deref() == Some(p.name.as_str())),
            "no case out of port {}",
            p.name
        );
    }
    let dir = golden_dir();
    let frames = |file: &str, port: &str| {
        read_frames(&dir.join(file), port, link_of(&topo, host, port)).expect("golden capture")
    };
    // Tunnel to ports: the input with its VNI zeroed -> (VNI, output port).
    // Ports to tunnel: the IP packet -> (input port, output VNI).
    let mut by_inner: BTreeMap<Vec<u8>, BTreeSet<(u32, String)>> = BTreeMap::new();
    let mut by_packet: BTreeMap<Vec<u8>, BTreeSet<(String, u32)>> = BTreeMap::new();
    let mut icmp_in: BTreeSet<(usize, bool)> = BTreeSet::new();
    for c in &nets {
        let Expect::Output {
            kind, port, output, ..
        } = &c.expect
        else {
            continue;
        };
        let input = frames(&c.input, &c.in_port);
        let first = &input[0];
        if *kind == Kind::Icmp {
            if let Some(n) = network_on(&topo, host, &c.in_port, first) {
                icmp_in.insert((n, c.in_port == nic));
            }
        }
        if *kind != Kind::Forward {
            continue;
        }
        if c.in_port == nic && *port != nic {
            let mut key = first.clone();
            let Some(r) = vni_range(&key) else { continue };
            let vni = vni_of(&key).expect("vni");
            key[r].fill(0);
            by_inner.entry(key).or_default().insert((vni, port.clone()));
        } else if c.in_port != nic && *port == nic {
            let ip = match link_of(&topo, host, &c.in_port) {
                LinkType::RawIp => first.clone(),
                _ => first[14..].to_vec(),
            };
            let out = frames(output, port);
            let vni = vni_of(&out[0]).expect("output VNI");
            by_packet
                .entry(ip)
                .or_default()
                .insert((c.in_port.clone(), vni));
        }
    }
    let vnis: BTreeSet<u32> = topo.networks.iter().map(|n| n.vni).collect();
    assert!(
        by_inner.values().any(|s| {
            let v: BTreeSet<u32> = s.iter().map(|(v, _)| *v).collect();
            let p: BTreeSet<&String> = s.iter().map(|(_, p)| p).collect();
            v == vnis && p.len() == vnis.len()
        }),
        "no inner frame that reaches a different port under each VNI: {by_inner:?}"
    );
    assert!(
        by_packet.values().any(|s| {
            let v: BTreeSet<u32> = s.iter().map(|(_, v)| *v).collect();
            v == vnis
        }),
        "no packet that leaves under each VNI from ports of each network"
    );
    for n in 0..topo.networks.len() {
        for from_tunnel in [false, true] {
            assert!(
                icmp_in.contains(&(n, from_tunnel)),
                "no ICMP error case in network {} from {}",
                topo.networks[n].name,
                if from_tunnel { "the tunnel" } else { "a port" }
            );
        }
    }
    assert!(
        nets.iter()
            .any(|c| matches!(&c.expect, Expect::Drop(r) if r == "vxlan_unknown_vni")),
        "no case of a VNI of no network"
    );
    // Every case states the network stats.json counts it under (checked
    // case by case in `golden_cases`): a VNI of no network under
    // `no_network`, and each network's forwarded packets under its name,
    // from a port and from the tunnel.
    for c in &nets {
        assert!(c.network.is_some(), "case {}: no network stated", c.name);
    }
    assert!(
        nets.iter().any(|c| c.network == Some(None)
            && matches!(&c.expect, Expect::Drop(r) if r == "vxlan_unknown_vni")),
        "no case of a VNI of no network counted under no_network"
    );
    for n in &topo.networks {
        for from_tunnel in [false, true] {
            assert!(
                nets.iter().any(|c| {
                    c.network.as_ref() == Some(&Some(n.name.clone()))
                        && (c.in_port == nic) == from_tunnel
                        && matches!(
                            &c.expect,
                            Expect::Output {
                                kind: Kind::Forward,
                                ..
                            }
                        )
                }),
                "no forwarded case counted under network {} from {}",
                n.name,
                if from_tunnel { "the tunnel" } else { "a port" }
            );
        }
    }
}

/// A python3 that can import scapy: `$GOLDEN_PYTHON`, `python3`, or the
/// system one (pyenv shims often lack distribution packages).
fn python_with_scapy() -> Option<String> {
    let mut candidates: Vec<String> = std::env::var("GOLDEN_PYTHON").ok().into_iter().collect();
    candidates.extend(["python3".to_owned(), "/usr/bin/python3".to_owned()]);
    candidates.into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import scapy.all"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The committed vectors are exactly what tools/golden/gen.py writes.
#[test]
fn golden_vectors_regenerate_identically() {
    let Some(py) = python_with_scapy() else {
        common::skip("no python3 with scapy (set GOLDEN_PYTHON)");
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/golden/gen.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg("--out")
        .arg(tmp.path())
        .output()
        .expect("running gen.py");
    assert!(
        out.status.success(),
        "gen.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = |d: &Path| -> BTreeSet<String> {
        std::fs::read_dir(d)
            .expect("read_dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let fresh = list(tmp.path());
    let committed = list(&golden_dir());
    assert_eq!(
        fresh, committed,
        "file sets differ: re-run tools/golden/gen.py and commit"
    );
    let mut differ = Vec::new();
    for f in &fresh {
        let a = std::fs::read(tmp.path().join(f)).expect("read fresh");
        let b = std::fs::read(golden_dir().join(f)).expect("read committed");
        if a != b {
            differ.push(f.clone());
        }
    }
    assert!(
        differ.is_empty(),
        "regenerated files differ from the committed ones: {differ:?}"
    );
}

/// Every capture of the shared corpus (`../shared/pcaps`, see
/// `common::shared_pcaps`) through h1 of both golden topologies: Ethernet
/// ones into the uplink, raw-IP ones into the TUN port c1. No panic, and
/// every frame read is accounted for.
#[test]
fn shared_pcaps_replay_with_full_accounting() {
    let Some(files) = common::shared_pcaps() else {
        return;
    };
    let mut replayed = 0;
    let mut failures = Vec::new();
    for topo_file in ["topo-v4.toml", "topo-v6.toml"] {
        let topo = load_topo(topo_file);
        let host = topo.host_index("h1").expect("h1");
        let nic = topo.hosts[host]
            .nic
            .clone()
            .unwrap_or_else(|| "eth0".to_owned());
        for f in &files {
            // Ethernet captures into the uplink; a link-type refusal means
            // raw IP (or another link type) and the TUN port is tried.
            let (port, frames) = match read_capture(f, &nic, LinkType::Ethernet) {
                Ok(v) => (nic.clone(), v.len()),
                Err(PcapPortError::LinkType { .. }) => match read_capture(f, "c1", LinkType::RawIp)
                {
                    Ok(v) => ("c1".to_owned(), v.len()),
                    Err(e @ PcapPortError::LinkType { .. }) => {
                        eprintln!("  skip {}: {e}", f.display());
                        continue;
                    }
                    Err(e) => {
                        failures.push(format!("{}: unreadable: {e}", f.display()));
                        continue;
                    }
                },
                Err(e) => {
                    failures.push(format!("{}: unreadable: {e}", f.display()));
                    continue;
                }
            };
            let out = tempfile::tempdir().expect("tempdir");
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                replay(
                    &topo,
                    host,
                    &[(port.clone(), f.clone())],
                    out.path(),
                    UNDERLAY_MTU,
                )
            }));
            let name = format!("{} into {port} ({topo_file})", f.display());
            match r {
                Err(_) => failures.push(format!("{name}: PANIC")),
                Ok(Err(e)) => failures.push(format!("{name}: replay error {e:#}")),
                Ok(Ok(s)) => {
                    replayed += 1;
                    eprintln!("  {name}: {frames} frames: {}", summary(&s));
                    if s.rx_total() != frames as u64 {
                        failures.push(format!("{name}: rx {} of {frames} frames", s.rx_total()));
                    }
                    if s.accounted() != s.rx_total() {
                        failures.push(format!(
                            "{name}: accounted {} != rx {}",
                            s.accounted(),
                            s.rx_total()
                        ));
                    }
                    let sent: u64 = s.ports.values().map(|p| p.tx).sum();
                    if sent > s.counters.forwarded + s.counters.replied + s.counters.icmp_errors {
                        failures.push(format!(
                            "{name}: sent {sent} frames, more than verdicts allow"
                        ));
                    }
                }
            }
        }
    }
    eprintln!("shared pcaps: {replayed} replays");
    assert!(
        failures.is_empty(),
        "shared pcap replays failed:\n  {}",
        failures.join("\n  ")
    );
}

/// A pcapng capture of the shared corpus reads as Ethernet frames.
#[test]
fn shared_pcapng_capture_reads() {
    let Some(files) = common::shared_pcaps() else {
        return;
    };
    let name = "zeek-vlan-pcp-dei.pcapng";
    let Some(f) = files.iter().find(|f| f.ends_with(name)) else {
        common::skip(&format!("{name} is not in the shared corpus"));
        return;
    };
    let frames = read_capture(f, "eth0", LinkType::Ethernet).unwrap();
    assert!(!frames.is_empty());
}

/// The outer-header checker itself: it accepts a scapy-built encapsulation
/// and refuses the same with a corrupted checksum.
#[test]
fn outer_checker_self_test() {
    let dir = golden_dir();
    for (file, mask_off) in [
        ("c1_to_h2_v4.out.pcap", 34 + 14 + 10),
        ("v6u_c1_to_h2_v4.out.pcap", 14 + 40 + 6),
    ] {
        let frames =
            read_frames(&dir.join(file), "eth0", LinkType::Ethernet).expect("golden output");
        let f = &frames[0];
        check_outer(f).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut bad = f.clone();
        // v4: the outer IPv4 checksum (bytes 24..26); v6: the UDP checksum.
        let off = if file.starts_with("v6u") {
            mask_off
        } else {
            24
        };
        bad[off] ^= 0x11;
        assert!(
            check_outer(&bad).is_err(),
            "{file}: corruption at {off} not caught"
        );
    }
}

/// The network checkers themselves: a frame under the other network's VNI,
/// an ICMP error from the other network's gateway, and a count under the
/// other network in stats.json are refused.
#[test]
fn network_checker_self_test() {
    let topo = load_topo("topo-nets.toml");
    let host = topo.host_index("h1").expect("h1");
    let cases = load_cases();
    let case = |name: &str| {
        cases
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no case {name}"))
    };
    let output = |c: &Case| match &c.expect {
        Expect::Output { port, output, .. } => {
            let link = link_of(&topo, host, port);
            (
                port.clone(),
                read_frames(&golden_dir().join(output), port, link).expect("golden output"),
            )
        }
        _ => panic!("case {} has no output", c.name),
    };
    let (d, b) = (case("net_d1_to_h2_v4"), case("net_b1_to_h2_v4"));
    let (port, from_d) = output(d);
    let (_, from_b) = output(b);
    assert_eq!(
        check_same_network(&topo, host, d, &port, &from_d),
        Ok(Some(0))
    );
    assert_eq!(
        check_same_network(&topo, host, b, &port, &from_b),
        Ok(Some(1))
    );
    assert!(check_same_network(&topo, host, d, &port, &from_b).is_err());
    assert!(check_same_network(&topo, host, b, &port, &from_d).is_err());

    let t = case("net_ttl1_b1_to_h2_v4");
    let (port, err) = output(t);
    check_icmp_source(&topo, host, &port, Some(1), &err).expect("blue's gateway");
    assert!(check_icmp_source(&topo, host, &port, Some(0), &err).is_err());

    // The stats.json checker: blue's packet is blue's, not the default
    // network's nor no network's, and a count moved out of the totals'
    // sum is caught.
    let out = tempfile::tempdir().expect("tempdir");
    let inputs = vec![(b.in_port.clone(), golden_dir().join(&b.input))];
    replay(&topo, host, &inputs, out.path(), UNDERLAY_MTU).expect("replay");
    let text = std::fs::read_to_string(out.path().join("stats.json")).expect("stats.json");
    let mut json: Value = serde_json::from_str(&text).expect("stats.json");
    let named = |n: &str| Some(Some(n.to_owned()));
    check_by_network(&topo, host, &json, named("blue").as_ref()).expect("counted in blue");
    assert!(check_by_network(&topo, host, &json, named("default").as_ref()).is_err());
    assert!(check_by_network(&topo, host, &json, Some(&None)).is_err());
    json["no_network"]["forwarded"] = 1.into();
    assert!(check_by_network(&topo, host, &json, None).is_err());
}
