//! Live liveness tests: a forged report refuted by the host it names, and
//! authenticated hellos (forged, replayed and badly signed ones counted and
//! ignored; a key rotation by SIGHUP that keeps every link up).
//!
//! Three routers without containers on one bridge (namespaces `la1-*`),
//! underlay 198.18.0.1..3; forged and replayed hellos come from a python
//! socket bound to a host's underlay address in its namespace, and a
//! capture is one AF_PACKET socket with a timeout. Needs root; skipped
//! with a message otherwise.
#![cfg(target_os = "linux")]

mod common;
#[macro_use]
mod live_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use live_support::Lab;
use serde_json::{json, Value};

const MACS: [&str; 3] = [
    "02:00:c6:12:00:01",
    "02:00:c6:12:00:02",
    "02:00:c6:12:00:03",
];
const KEY1: &str = "000102030405060708090a0b0c0d0e0f";
const KEY2: &str = "f0e0d0c0b0a090807060504030201000f0e0d0c0b0a0908070605040302010ff";

/// Sends one hello from `src` to `dst`:4799: a report about `origin`
/// saying `down` is down, two minutes ahead of the clock. `form`: `plain`
/// (version 1), `badmac` (version 2 with key id 1 and a zero MAC), or
/// `hex:<bytes>` (those bytes as they are).
const FORGE: &str = r#"
import socket, struct, sys, time
src, dst, origin, down, form = sys.argv[1:6]
def addr(a):
    return bytes([4]) + socket.inet_aton(a)
report = addr(origin) + struct.pack(">Q", time.time_ns() + 120 * 10**9) + bytes([1]) + addr(down)
head = struct.pack(">HI", 1, 42)
if form == "plain":
    b = b"VXRL" + bytes([1, 1]) + head + report
elif form == "badmac":
    b = b"VXRL" + bytes([2, 1]) + head + struct.pack(">IQ", 1, time.time_ns()) + report + bytes(16)
else:
    b = bytes.fromhex(form[4:])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
s.sendto(b, (dst, 4799))
"#;

/// Prints, in hex, the payload of the first hello from `src` seen on
/// this namespace's interfaces (5 s at most).
const CAPTURE: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.settimeout(5)
src = socket.inet_aton(sys.argv[1])
while True:
    p = s.recv(4096)
    ihl = (p[0] & 15) * 4
    if p[9] == 17 and p[12:16] == src and struct.unpack(">H", p[ihl + 2:ihl + 4])[0] == 4799:
        print(p[ihl + 8:].hex())
        break
"#;

/// Three hosts on one bridge; returns their namespaces.
fn bridged_hosts(lab: &mut Lab) -> Vec<String> {
    let sw = lab.ns("sw");
    lab.ip(&sw, &["link", "add", "br0", "type", "bridge"]);
    lab.ip(&sw, &["link", "set", "br0", "up"]);
    let mut hosts = Vec::new();
    for i in 1..=3u8 {
        let h = lab.ns(&format!("h{i}"));
        let p = format!("p{i}");
        let peer = format!("02:00:c6:12:01:0{i}");
        lab.veth(&h, "eth0", MACS[usize::from(i - 1)], &sw, &p, &peer);
        lab.ip(&sw, &["link", "set", &p, "master", "br0"]);
        let a = format!("198.18.0.{i}/24");
        lab.ip(&h, &["addr", "add", &a, "dev", "eth0"]);
        hosts.push(h);
    }
    hosts
}

/// h1 - h3 - h2 at 5 + 5 and h1 - h2 at 20, hellos every 200 ms.
fn topology(key_file: Option<&Path>) -> String {
    let mut t = String::from("[overlay]\nvni = 42\nliveness_interval_ms = 200\n");
    if let Some(p) = key_file {
        t += &format!("liveness_key_file = \"{}\"\n", p.display());
    }
    for i in 1..=3 {
        t += &format!(
            "[[hosts]]\nname = \"h{i}\"\nunderlay = \"198.18.0.{i}\"\n\
             vtep_mac = \"02:00:c6:13:0{i}:00\"\nsubnets = [\"198.19.{i}.0/24\"]\n\
             nic = \"eth0\"\nworkers = [0]\n"
        );
    }
    for (a, b, c) in [(1, 3, 5), (3, 2, 5), (1, 2, 20)] {
        t += &format!("[[links]]\na = \"h{a}\"\nb = \"h{b}\"\ncost = {c}\n");
    }
    t
}

fn write_keys(lab: &Lab, text: &str, mode: u32) -> PathBuf {
    let p = lab.write("liveness.key", text);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    p
}

fn n(s: &Value, field: &str) -> u64 {
    s["liveness"][field].as_u64().unwrap_or(0)
}

/// Starts the three routers and waits until each hears both others
/// two-way with no link down; returns their indices.
fn start_all(lab: &mut Lab, hosts: &[String], cfg: &Path) -> Vec<usize> {
    let r: Vec<usize> = (0..3)
        .map(|i| lab.start(cfg, &format!("h{}", i + 1), &hosts[i].clone()))
        .collect();
    lab.wait_ready(&r);
    for &i in &r {
        // Ten hellos: past the start-up grace, so "up" means two-way.
        lab.wait_stats(i, "every neighbour heard", |s| {
            n(s, "hellos_received") >= 10
                && s["liveness"]["links_down"] == json!([])
                && s["liveness"]["neighbours"]
                    .as_object()
                    .is_some_and(|m| m.values().all(|v| v == &json!(true)))
        });
    }
    r
}

fn forge(lab: &Lab, ns: &str, src: &str, dst: &str, form: &str) {
    lab.exec_ok(
        ns,
        &[
            "python3",
            "-c",
            FORGE,
            src,
            dst,
            "198.18.0.1",
            "198.18.0.3",
            form,
        ],
    );
}

/// Every router ends with no link down and h1's neighbours all up.
fn all_agree_nothing_is_down(lab: &mut Lab, r: &[usize]) {
    for &i in r {
        lab.wait_stats(i, "no link down", |s| {
            s["liveness"]["links_down"] == json!([])
        });
    }
}

/// A forged report (h1 lost h3) sent to h3 from h2's address: h3 takes it
/// and floods it; h1 learns it from its neighbours, refutes it, and every
/// router ends with h1's true report: no link down.
#[test]
fn a_forged_report_is_refuted_live() {
    require_root!();
    let mut lab = Lab::new("la1");
    let hosts = bridged_hosts(&mut lab);
    let cfg = lab.write("topo.toml", &topology(None));
    let r = start_all(&mut lab, &hosts, &cfg);
    forge(&lab, &hosts[1], "198.18.0.2", "198.18.0.3", "plain");
    lab.wait_stats(r[0], "h1 refutes", |s| n(s, "reports_refuted") >= 1);
    all_agree_nothing_is_down(&mut lab, &r);
    for &i in &r {
        lab.assert_alive(i);
    }
}

/// With a key file: forged (no MAC, a bad MAC) and replayed hellos are
/// counted and change nothing; a rotation host by host with SIGHUP keeps
/// every link up; a key file others can read is refused on reload.
#[test]
fn authenticated_hellos_and_a_key_rotation_live() {
    require_root!();
    let mut lab = Lab::new("la2");
    let hosts = bridged_hosts(&mut lab);
    let keys = write_keys(&lab, &format!("1 {KEY1}\n"), 0o600);
    let cfg = lab.write("topo.toml", &topology(Some(&keys)));
    let r = start_all(&mut lab, &hosts, &cfg);
    let s = lab.stats(r[0]);
    assert_eq!(s["liveness"]["hello_key_active"], json!(1), "{s:#}");

    forge(&lab, &hosts[1], "198.18.0.2", "198.18.0.3", "plain");
    forge(&lab, &hosts[1], "198.18.0.2", "198.18.0.3", "badmac");
    let captured = lab.exec_ok(&hosts[2], &["python3", "-c", CAPTURE, "198.18.0.2"]);
    let replay = format!("hex:{}", captured.trim());
    forge(&lab, &hosts[1], "198.18.0.2", "198.18.0.3", &replay);
    lab.wait_stats(r[2], "forgeries counted", |s| {
        n(s, "hellos_unauthenticated") == 1
            && n(s, "hellos_bad_mac") == 1
            && n(s, "hellos_replayed") == 1
    });
    assert_eq!(n(&lab.stats(r[0]), "reports_refuted"), 0);
    all_agree_nothing_is_down(&mut lab, &r);

    // Rotation: each step on every host (a reload each) before the next.
    let downs = |lab: &Lab, i: usize| lab.log(i).matches("neighbour down").count();
    let downs_before: Vec<usize> = r.iter().map(|&i| downs(&lab, i)).collect();
    for (step, (text, active)) in [
        (format!("1 {KEY1} active\n2 {KEY2}\n"), 1),
        (format!("1 {KEY1}\n2 {KEY2} active\n"), 2),
        (format!("2 {KEY2}\n"), 2),
    ]
    .into_iter()
    .enumerate()
    {
        write_keys(&lab, &text, 0o600);
        let accepted = step + 1;
        for &i in &r {
            lab.signal(i, "HUP");
            lab.wait_stats(i, "reload", |s| {
                s["reloads"]["accepted"] == json!(accepted)
                    && s["liveness"]["hello_key_active"] == json!(active)
            });
        }
        for &i in &r {
            // A few hellos under the new file, and every link still up.
            let seen = n(&lab.stats(i), "hellos_received");
            lab.wait_stats(i, "hellos after the step", |s| {
                n(s, "hellos_received") >= seen + 4 && s["liveness"]["links_down"] == json!([])
            });
        }
    }
    for &i in &r {
        let s = lab.stats(i);
        assert_eq!(s["liveness"]["hello_keys"], json!([2]), "{s:#}");
        assert_eq!(n(&s, "hellos_unknown_key"), 0, "{s:#}");
        let bad = if i == r[2] { 1 } else { 0 };
        assert_eq!(n(&s, "hellos_bad_mac"), bad, "{s:#}");
        // Not even for a moment between two stats files.
        assert_eq!(downs(&lab, i), downs_before[i], "{}", lab.log(i));
    }

    // Readable by others: the reload is refused, the keys stay.
    write_keys(&lab, &format!("3 {KEY1}\n"), 0o644);
    lab.signal(r[0], "HUP");
    lab.wait_stats(r[0], "reload refused", |s| {
        s["reloads"]["rejected"] == json!(1) && s["liveness"]["hello_key_active"] == json!(2)
    });
    assert!(
        lab.log(r[0]).contains("lets group or others"),
        "{}",
        lab.log(r[0])
    );
    all_agree_nothing_is_down(&mut lab, &r);
}
