//! The `vxrouter-cni` binary as a runtime runs it: environment and stdin
//! in, result or error object out, against a fake router (a thread on a
//! temporary socket, recording requests) and Debian's real `host-local`
//! IPAM plugin under a temporary `dataDir`.
//!
//! No namespace or device is made: the fake router keeps attachments in
//! memory, and host-local only writes files. Needs `host-local` in
//! /usr/lib/cni (containernetworking-plugins, from tools/install-deps).

mod cni_support;
mod common;

use std::path::{Path, PathBuf};

use cni_support::{run_plugin, FakeRouter, Run, CNI_BIN};
use serde_json::{json, Value};
use vxrouter::api::{ErrorCode, Request};

const BIN: &str = env!("CARGO_BIN_EXE_vxrouter-cni");
const NETWORK: &str = "vxtest";

/// A fake router, a host-local data dir, and the plugin run against them.
struct Setup {
    router: FakeRouter,
    data: tempfile::TempDir,
}

fn setup() -> Option<Setup> {
    if !Path::new(CNI_BIN).join("host-local").exists() {
        common::skip("host-local is not installed in /usr/lib/cni (tools/install-deps)");
        return None;
    }
    Some(Setup {
        router: FakeRouter::start(),
        data: tempfile::tempdir().expect("temp dir"),
    })
}

impl Setup {
    /// The network config, at `version`, for this router and data dir.
    fn conf(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": NETWORK,
            "type": "vxrouter-cni",
            "socket": self.router.socket,
            "ipam": {"type": "host-local", "dataDir": self.data.path()},
        })
    }

    fn run(&self, cmd: &str, container: &str, stdin: &Value) -> Run {
        let netns = format!("/var/run/netns/cni-test-{container}");
        let env = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", container),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", CNI_BIN),
        ];
        run_plugin(Path::new(BIN), &env, stdin.to_string().as_bytes())
    }

    /// The addresses host-local holds for our network, sorted.
    fn allocations(&self) -> Vec<String> {
        let dir: PathBuf = self.data.path().join(NETWORK);
        let mut ips: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        ips.sort();
        ips
    }

    fn attaches(&self) -> usize {
        self.router
            .state()
            .ops()
            .iter()
            .filter(|o| **o == "attach")
            .count()
    }
}

fn ok(r: &Run) {
    assert_eq!(r.code, 0, "stdout {} stderr {}", r.stdout, r.stderr);
}

#[test]
fn add_check_del_and_del_again() {
    let Some(s) = setup() else { return };
    let conf = s.conf("1.0.0");
    let add = s.run("ADD", "c1", &conf);
    ok(&add);
    let r = add.json();
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(
        r["interfaces"],
        json!([{"name":"eth0","mac":"02:00:00:00:00:00","mtu":1450,"sandbox":"/var/run/netns/cni-test-c1"}])
    );
    // host-local never hands out the router's gateway: the first address
    // after it.
    assert_eq!(
        r["ips"],
        json!([
            {"interface":0,"address":"198.19.7.2/24","gateway":"198.19.7.1"},
            {"interface":0,"address":"2001:2:0:7::2/64","gateway":"2001:2:0:7::1"},
        ])
    );
    assert_eq!(
        r["routes"],
        json!([{"dst":"0.0.0.0/0","gw":"198.19.7.1"},{"dst":"::/0","gw":"2001:2:0:7::1"}])
    );
    assert_eq!(s.allocations(), ["198.19.7.2", "2001:2:0:7::2"]);
    {
        let st = s.router.state();
        assert_eq!(st.ops(), ["status", "attach"]);
        let Request::Attach(a) = &st.requests[1] else {
            unreachable!()
        };
        assert_eq!(a.id, "vxtest/c1/eth0");
        assert_eq!(a.ifname, "eth0");
        assert_eq!(a.netns, Path::new("/var/run/netns/cni-test-c1"));
    }

    let mut check = conf.clone();
    check["prevResult"] = r.clone();
    ok(&s.run("CHECK", "c1", &check));
    // A prevResult the router's port does not match.
    let mut wrong = check.clone();
    wrong["prevResult"]["ips"][0]["address"] = json!("198.19.7.99/24");
    assert_eq!(s.run("CHECK", "c1", &wrong).error_code(), 102);

    let mut del = conf.clone();
    del["prevResult"] = r;
    for _ in 0..2 {
        let out = s.run("DEL", "c1", &del);
        ok(&out);
        assert_eq!(out.stdout, "");
        assert!(s.allocations().is_empty());
        assert!(s.router.state().attached.is_empty());
    }
    // CHECK after DEL: not attached.
    assert_eq!(s.run("CHECK", "c1", &check).error_code(), 101);
}

#[test]
fn add_at_1_1_0_with_a_1_0_0_host_local() {
    let Some(s) = setup() else { return };
    let out = s.run("ADD", "c1", &s.conf("1.1.0"));
    ok(&out);
    assert_eq!(out.json()["cniVersion"], "1.1.0");
    assert_eq!(s.allocations().len(), 2);
    ok(&s.run("DEL", "c1", &s.conf("1.1.0")));
    assert!(s.allocations().is_empty());
}

#[test]
fn version() {
    let out = run_plugin(Path::new(BIN), &[("CNI_COMMAND", "VERSION")], b"{}");
    ok(&out);
    assert_eq!(
        out.json(),
        json!({"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]})
    );
}

#[test]
fn status_follows_the_router() {
    let Some(s) = setup() else { return };
    let status = |s: &Setup| {
        run_plugin(
            Path::new(BIN),
            &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", CNI_BIN)],
            s.conf("1.1.0").to_string().as_bytes(),
        )
    };
    ok(&status(&s));
    s.router.state().starting = true;
    assert_eq!(status(&s).error_code(), 50);
    let socket = s.router.socket.clone();
    drop(s.router);
    let gone = run_plugin(
        Path::new(BIN),
        &[("CNI_COMMAND", "STATUS")],
        json!({"cniVersion":"1.1.0","name":NETWORK,"type":"vxrouter-cni","socket":socket})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(gone.error_code(), 50);
    // STATUS is a 1.1.0 command.
    let old = run_plugin(
        Path::new(BIN),
        &[("CNI_COMMAND", "STATUS")],
        json!({"cniVersion":"1.0.0","name":NETWORK,"type":"vxrouter-cni","socket":socket})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(old.error_code(), 1);
}

#[test]
fn gc_removes_what_is_not_valid_and_releases_its_addresses() {
    let Some(s) = setup() else { return };
    for c in ["c1", "c2", "c3"] {
        ok(&s.run("ADD", c, &s.conf("1.1.0")));
    }
    assert_eq!(s.allocations().len(), 6);
    let mut gc = s.conf("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([
        {"containerID":"c1","ifname":"eth0"},
        {"containerID":"c3","ifname":"eth0"},
    ]);
    let out = run_plugin(
        Path::new(BIN),
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", CNI_BIN)],
        gc.to_string().as_bytes(),
    );
    ok(&out);
    assert_eq!(out.stdout, "");
    let st = s.router.state();
    assert_eq!(st.ops()[6..], ["gc", "status"]);
    let Request::Gc { prefix, keep } = &st.requests[6] else {
        unreachable!()
    };
    assert_eq!(prefix, "vxtest/");
    assert_eq!(keep, &["vxtest/c1/eth0", "vxtest/c3/eth0"]);
    let left: Vec<&String> = st.attached.keys().collect();
    assert_eq!(left, ["vxtest/c1/eth0", "vxtest/c3/eth0"]);
    drop(st);
    // c2's addresses (the second of each family) are free again.
    assert_eq!(
        s.allocations(),
        ["198.19.7.2", "198.19.7.4", "2001:2:0:7::2", "2001:2:0:7::4"]
    );
}

/// Each bad input gets its code, and nothing is attached or allocated.
#[test]
fn bad_input_gets_its_code_and_creates_nothing() {
    let Some(s) = setup() else { return };
    let good = s.conf("1.1.0");
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let deaf = {
        // A socket file nobody listens on: bound, then closed.
        let p = s.data.path().join("deaf.sock");
        drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
        p
    };
    let cases: Vec<(&str, Vec<u8>, u64)> = vec![
        ("not JSON", b"{\"cniVersion\": \"1.1.0\",".to_vec(), 6),
        ("empty", Vec::new(), 6),
        (
            "no cniVersion",
            without("cniVersion").to_string().into_bytes(),
            1,
        ),
        (
            "cniVersion 0.4.0",
            with("cniVersion", json!("0.4.0")).to_string().into_bytes(),
            1,
        ),
        (
            "cniVersion 9.9.9",
            with("cniVersion", json!("9.9.9")).to_string().into_bytes(),
            1,
        ),
        ("no name", without("name").to_string().into_bytes(), 7),
        ("no type", without("type").to_string().into_bytes(), 7),
        ("no socket", without("socket").to_string().into_bytes(), 7),
        (
            "kind macvlan",
            with("kind", json!("macvlan")).to_string().into_bytes(),
            7,
        ),
        (
            "ipam without type",
            with("ipam", json!({})).to_string().into_bytes(),
            7,
        ),
        (
            "ipam not installed",
            with("ipam", json!({"type":"no-such-ipam"}))
                .to_string()
                .into_bytes(),
            7,
        ),
        (
            "socket absent",
            with("socket", json!(s.data.path().join("none.sock")))
                .to_string()
                .into_bytes(),
            11,
        ),
        (
            "socket nobody listens on",
            with("socket", json!(deaf)).to_string().into_bytes(),
            11,
        ),
    ];
    for (what, stdin, code) in cases {
        let out = run_plugin(
            Path::new(BIN),
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", "/var/run/netns/cni-test-c1"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", CNI_BIN),
            ],
            &stdin,
        );
        assert_eq!(out.error_code(), code, "{what}: {}", out.stdout);
        let e = out.json();
        assert!(
            e["msg"].is_string() && e["details"].is_string(),
            "{what}: {e}"
        );
        assert!(
            out.stderr.contains("vxrouter-cni:"),
            "{what}: logs go to stderr"
        );
        assert_eq!(s.attaches(), 0, "{what}: attached");
        assert!(s.allocations().is_empty(), "{what}: allocated");
    }
    // Missing environment: error 4 naming the variable.
    for var in [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_PATH",
    ] {
        let mut env = vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/var/run/netns/cni-test-c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", CNI_BIN),
        ];
        env.retain(|(k, _)| *k != var);
        let out = run_plugin(Path::new(BIN), &env, good.to_string().as_bytes());
        assert_eq!(out.error_code(), 4, "without {var}");
        assert!(out.json()["details"].as_str().unwrap().contains(var));
    }
    assert_eq!(s.attaches(), 0);
    assert!(s.allocations().is_empty());
}

/// The router refuses or is starting after host-local allocated: the
/// allocation is released.
#[test]
fn a_refused_attach_leaves_no_allocation() {
    let Some(s) = setup() else { return };
    for (code, cni) in [
        (ErrorCode::Invalid, 7),
        (ErrorCode::Full, 103),
        (ErrorCode::Internal, 104),
    ] {
        s.router.state().refuse_attach = Some(code);
        let out = s.run("ADD", "c1", &s.conf("1.0.0"));
        assert_eq!(out.error_code(), cni, "{code}");
        assert!(s.allocations().is_empty(), "{code}: allocation left");
        assert!(s.router.state().attached.is_empty());
    }
    s.router.state().refuse_attach = None;
    s.router.state().starting = true;
    assert_eq!(s.run("ADD", "c1", &s.conf("1.0.0")).error_code(), 11);
    assert!(s.allocations().is_empty());
    // And once ready, the same ADD works.
    s.router.state().starting = false;
    ok(&s.run("ADD", "c1", &s.conf("1.0.0")));
    assert_eq!(s.allocations().len(), 2);
}

/// Chained after another plugin, ADD extends its result.
#[test]
fn chained_add_extends_prev_result() {
    let Some(s) = setup() else { return };
    let mut conf = s.conf("1.0.0");
    conf["prevResult"] = json!({
        "cniVersion":"1.0.0",
        "interfaces":[{"name":"dummy0","sandbox":"/var/run/netns/cni-test-c1"}],
        "ips":[{"interface":0,"address":"198.18.0.9/32"}],
        "dns":{"nameservers":["198.18.0.53"]},
    });
    let out = s.run("ADD", "c1", &conf);
    ok(&out);
    let r = out.json();
    assert_eq!(r["interfaces"][0]["name"], "dummy0");
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(r["ips"][0]["address"], "198.18.0.9/32");
    assert_eq!(r["ips"][1]["interface"], 1);
    assert_eq!(r["dns"]["nameservers"], json!(["198.18.0.53"]));
    ok(&s.run("DEL", "c1", &conf));
    assert!(s.allocations().is_empty());
}

/// DEL while the router is down: while the namespace lives, DEL fails
/// with 11 and keeps the allocation (the interface still has the
/// address); once the path names no live namespace, DEL succeeds and
/// releases it.
#[test]
fn del_with_the_router_gone_waits_for_the_netns() {
    let Some(s) = setup() else { return };
    let conf = s.conf("1.0.0");
    let add = s.run("ADD", "c1", &conf);
    ok(&add);
    let mut del = conf.clone();
    del["prevResult"] = add.json();
    let Setup { router, data } = s;
    drop(router);
    let s2 = Setup {
        router: FakeRouter::start(),
        data,
    };
    // The old socket path is gone with the old router. A live namespace
    // (this process's: the fake router and a failed DEL touch nothing).
    let live = run_plugin(
        Path::new(BIN),
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/proc/self/ns/net"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", CNI_BIN),
        ],
        del.to_string().as_bytes(),
    );
    assert_eq!(live.error_code(), 11);
    assert_eq!(s2.allocations().len(), 2, "the address stays allocated");
    let out = s2.run("DEL", "c1", &del);
    ok(&out);
    assert!(out.stderr.contains("drops the port"), "{}", out.stderr);
    assert!(s2.allocations().is_empty());
}
