//! `vxrouter routes` end to end on topologies written here (not the shipped
//! examples): ECMP ties, multi-hop transit, unreachable hosts, IPv6 subnets
//! and an IPv6 underlay. JSON is compared as values, so key order and
//! whitespace do not matter, but the shape DESIGN.md promises does.

use std::io::Write;
use std::process::{Command, Output};

use serde_json::{json, Value};

fn write(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn routes(file: &tempfile::NamedTempFile, host: &str, json: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vxrouter"));
    cmd.args([
        "routes",
        "--config",
        file.path().to_str().unwrap(),
        "--host",
        host,
    ]);
    if json {
        cmd.arg("--json");
    }
    cmd.output().expect("run vxrouter")
}

fn routes_json(file: &tempfile::NamedTempFile, host: &str) -> (Value, String) {
    let o = routes(file, host, true);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    let v: Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    (v, err)
}

/// Grid of six hosts with ties, a transit-only host, a two-host island, and
/// IPv4 + IPv6 subnets:
///
/// ```text
///   a --1-- b --1-- c        island: x --2-- y
///   |       |       |
///   2       1       1
///   |       |       |
///   d --1-- e --2-- f
/// ```
const GRID: &str = r#"
[overlay]
vni = 77

[[hosts]]
name = "a"
underlay = "198.18.10.1"
subnets = ["198.19.10.0/24", "2001:2:0:a::/64"]
[[hosts]]
name = "b"
underlay = "198.18.10.2"
[[hosts]]
name = "c"
underlay = "198.18.10.3"
subnets = ["198.19.12.0/24"]
[[hosts]]
name = "d"
underlay = "198.18.10.4"
subnets = ["2001:2:0:d::/64"]
[[hosts]]
name = "e"
underlay = "198.18.10.5"
subnets = ["198.19.14.0/23"]
[[hosts]]
name = "f"
underlay = "198.18.10.6"
subnets = ["198.19.16.0/24", "2001:2:0:f::/64"]
[[hosts]]
name = "x"
underlay = "198.18.10.7"
subnets = ["198.19.20.0/24"]
[[hosts]]
name = "y"
underlay = "198.18.10.8"
subnets = ["198.19.21.0/24", "2001:2:0:21::/64"]

[[links]]
a = "a"
b = "b"
cost = 1
[[links]]
a = "c"
b = "b"
cost = 1
[[links]]
a = "a"
b = "d"
cost = 2
[[links]]
a = "b"
b = "e"
cost = 1
[[links]]
a = "c"
b = "f"
cost = 1
[[links]]
a = "d"
b = "e"
cost = 1
[[links]]
a = "e"
b = "f"
cost = 2
[[links]]
a = "x"
b = "y"
cost = 2
"#;

fn hop(host: &str, underlay: &str) -> Value {
    json!({"host": host, "underlay": underlay})
}

#[test]
fn grid_from_a_has_ecmp_multihop_and_unreachable() {
    let f = write(GRID);
    let (v, err) = routes_json(&f, "a");
    // a->e: a-b-e = 2 and a-d-e = 3: only b. a->f: a-b-c-f = 3 and
    // a-b-e-f = 4: only b. a->d: direct 2, a-b-e-d = 3: only d.
    assert_eq!(
        v,
        json!([
            {"network": "default", "prefix": "198.19.10.0/24", "kind": "local", "cost": 0, "next_hops": []},
            {"network": "default", "prefix": "198.19.12.0/24", "kind": "remote", "cost": 2, "next_hops": [hop("b", "198.18.10.2")]},
            {"network": "default", "prefix": "198.19.14.0/23", "kind": "remote", "cost": 2, "next_hops": [hop("b", "198.18.10.2")]},
            {"network": "default", "prefix": "198.19.16.0/24", "kind": "remote", "cost": 3, "next_hops": [hop("b", "198.18.10.2")]},
            {"network": "default", "prefix": "2001:2:0:a::/64", "kind": "local", "cost": 0, "next_hops": []},
            {"network": "default", "prefix": "2001:2:0:d::/64", "kind": "remote", "cost": 2, "next_hops": [hop("d", "198.18.10.4")]},
            {"network": "default", "prefix": "2001:2:0:f::/64", "kind": "remote", "cost": 3, "next_hops": [hop("b", "198.18.10.2")]},
        ])
    );
    // The island's prefixes are left out and named on stderr.
    assert!(
        err.contains("host x is unreachable from a; left out: 198.19.20.0/24"),
        "{err}"
    );
    assert!(
        err.contains("host y is unreachable from a; left out: 198.19.21.0/24, 2001:2:0:21::/64"),
        "{err}"
    );
}

#[test]
fn grid_from_e_splits_over_equal_cost_paths() {
    let f = write(GRID);
    let (v, _) = routes_json(&f, "e");
    let by_prefix = |p: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["prefix"] == p)
            .cloned()
            .unwrap()
    };
    // e->a: e-b-a = 2 and e-d-a = 3: b. e->f: direct 2 and e-b-c-f = 3: f.
    // e->c: e-b-c = 2 and e-f-c = 3: b.
    assert_eq!(
        by_prefix("198.19.10.0/24")["next_hops"],
        json!([hop("b", "198.18.10.2")])
    );
    assert_eq!(
        by_prefix("198.19.16.0/24")["next_hops"],
        json!([hop("f", "198.18.10.6")])
    );
    assert_eq!(by_prefix("198.19.14.0/23")["kind"], "local");
    // From d: f costs 3 via e (d-e-f) and 5 via a; c costs 3 via e (d-e-b-c)
    // and 4 via a (d-a-b-c).
    let (v, _) = routes_json(&f, "d");
    let by_prefix = |p: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["prefix"] == p)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_prefix("198.19.16.0/24")["cost"], 3);
    assert_eq!(by_prefix("198.19.12.0/24")["cost"], 3);
    assert_eq!(
        by_prefix("198.19.10.0/24")["next_hops"],
        json!([hop("a", "198.18.10.1")])
    );
}

#[test]
fn ecmp_tie_between_two_and_three_paths() {
    // s reaches t through p1, p2 and p3 at cost 4 each; through q at 5.
    let text = r#"
[overlay]
vni = 5
[[hosts]]
name = "s"
underlay = "198.18.20.1"
subnets = ["198.19.30.0/24"]
[[hosts]]
name = "p1"
underlay = "198.18.20.2"
[[hosts]]
name = "p2"
underlay = "198.18.20.3"
[[hosts]]
name = "p3"
underlay = "198.18.20.4"
[[hosts]]
name = "q"
underlay = "198.18.20.5"
[[hosts]]
name = "t"
underlay = "198.18.20.6"
subnets = ["198.19.31.0/24", "2001:2:0:31::/64"]
[[links]]
a = "s"
b = "p2"
cost = 2
[[links]]
a = "p2"
b = "t"
cost = 2
[[links]]
a = "s"
b = "p1"
cost = 1
[[links]]
a = "t"
b = "p1"
cost = 3
[[links]]
a = "s"
b = "p3"
cost = 3
[[links]]
a = "p3"
b = "t"
cost = 1
[[links]]
a = "s"
b = "q"
cost = 1
[[links]]
a = "q"
b = "t"
cost = 4
"#;
    let f = write(text);
    let (v, err) = routes_json(&f, "s");
    assert!(err.is_empty(), "{err}");
    let three = json!([
        hop("p1", "198.18.20.2"),
        hop("p2", "198.18.20.3"),
        hop("p3", "198.18.20.4")
    ]);
    assert_eq!(
        v[1],
        json!({"network": "default", "prefix": "198.19.31.0/24", "kind": "remote", "cost": 4, "next_hops": three})
    );
    assert_eq!(
        v[2],
        json!({"network": "default", "prefix": "2001:2:0:31::/64", "kind": "remote", "cost": 4, "next_hops": three})
    );
    // The table shows the same, one nexthop line each.
    let o = routes(&f, "s", false);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("198.19.31.0/24 metric 4\n\tnexthop via 198.18.20.2 host p1\n\tnexthop via 198.18.20.3 host p2\n\tnexthop via 198.18.20.4 host p3\n"),
        "{table}"
    );
    assert!(
        table.starts_with("local 198.19.30.0/24 metric 0\n"),
        "{table}"
    );
}

#[test]
fn ipv6_underlay_routes_name_ipv6_next_hops() {
    let text = r#"
[overlay]
vni = 6
[[hosts]]
name = "m"
underlay = "2001:2:0:ff::1"
subnets = ["2001:2:0:100::/56"]
[[hosts]]
name = "n"
underlay = "2001:2:0:ff::2"
subnets = ["2001:2:0:200::/56", "198.19.200.0/22"]
[[hosts]]
name = "o"
underlay = "2001:2:0:ff::3"
subnets = ["2001:2:0:300::/64"]
[[links]]
a = "m"
b = "n"
cost = 100
[[links]]
a = "n"
b = "o"
cost = 4000000000
"#;
    let f = write(text);
    let (v, _) = routes_json(&f, "m");
    assert_eq!(
        v,
        json!([
            {"network": "default", "prefix": "198.19.200.0/22", "kind": "remote", "cost": 100, "next_hops": [hop("n", "2001:2:0:ff::2")]},
            {"network": "default", "prefix": "2001:2:0:100::/56", "kind": "local", "cost": 0, "next_hops": []},
            {"network": "default", "prefix": "2001:2:0:200::/56", "kind": "remote", "cost": 100, "next_hops": [hop("n", "2001:2:0:ff::2")]},
            // Costs add up past u32: 100 + 4e9.
            {"network": "default", "prefix": "2001:2:0:300::/64", "kind": "remote", "cost": 4000000100u64, "next_hops": [hop("n", "2001:2:0:ff::2")]},
        ])
    );
}

#[test]
fn shipped_examples_give_the_documented_routes() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let run = |file: &str, host: &str| -> Value {
        let o = Command::new(env!("CARGO_BIN_EXE_vxrouter"))
            .args([
                "routes",
                "--config",
                &format!("{dir}/configs/{file}"),
                "--host",
                host,
                "--json",
            ])
            .output()
            .unwrap();
        assert!(o.status.success());
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let v = run("demo-2hosts.toml", "h1");
    assert_eq!(
        v[1],
        json!({"network": "default", "prefix": "198.19.2.0/24", "kind": "remote", "cost": 10, "next_hops": [hop("h2", "198.18.0.2")]})
    );
    let v = run("line-3hosts.toml", "h1");
    assert_eq!(
        v[2],
        json!({"network": "default", "prefix": "198.19.3.0/24", "kind": "remote", "cost": 12, "next_hops": [hop("h2", "198.18.0.2")]})
    );
    let v = run("ecmp-4hosts.toml", "h1");
    assert_eq!(
        v[1]["next_hops"],
        json!([hop("h2", "198.18.1.2"), hop("h3", "198.18.1.3")])
    );
    let v = run("ipv6-underlay.toml", "h1");
    assert_eq!(
        v[1],
        json!({"network": "default", "prefix": "198.19.3.0/24", "kind": "remote", "cost": 2, "next_hops": [hop("h2", "2001:2:0:ff::2")]})
    );
}

#[test]
fn unknown_host_and_invalid_file_fail() {
    let f = write(GRID);
    let o = routes(&f, "zz", true);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no host \"zz\"") && err.contains("hosts: a, b, c, d, e, f, x, y"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    let bad = write(&GRID.replace(
        "cost = 2\n[[links]]\na = \"x\"",
        "cost = 0\n[[links]]\na = \"x\"",
    ));
    let o = routes(&bad, "a", true);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("links[6].cost"));
    assert!(o.stdout.is_empty());
}

/// Two hosts, the default network and "blue", which reuses the default
/// network's prefix on h2.
const NETWORKS: &str = r#"
[overlay]
vni = 1

[[networks]]
name = "blue"
vni = 2
[networks.subnets]
h2 = ["198.19.2.0/24", "198.19.9.0/24"]

[[hosts]]
name = "h1"
underlay = "198.18.0.1"
subnets = ["198.19.1.0/24"]

[[hosts]]
name = "h2"
underlay = "198.18.0.2"
subnets = ["198.19.2.0/24"]

[[links]]
a = "h1"
b = "h2"
cost = 5
"#;

#[test]
fn routes_are_listed_and_filtered_by_network() {
    let f = write(NETWORKS);
    let (v, _) = routes_json(&f, "h1");
    let remote = |net: &str, p: &str| json!({"network": net, "prefix": p, "kind": "remote", "cost": 5, "next_hops": [hop("h2", "198.18.0.2")]});
    assert_eq!(
        v,
        json!([
            {"network": "default", "prefix": "198.19.1.0/24", "kind": "local", "cost": 0, "next_hops": []},
            remote("default", "198.19.2.0/24"),
            remote("blue", "198.19.2.0/24"),
            remote("blue", "198.19.9.0/24"),
        ])
    );
    let blue = |json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vxrouter"));
        cmd.args([
            "routes",
            "--config",
            f.path().to_str().unwrap(),
            "--host",
            "h1",
            "--network",
            "blue",
        ]);
        if json {
            cmd.arg("--json");
        }
        cmd.output().expect("run vxrouter")
    };
    let o = blue(true);
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        json!([
            remote("blue", "198.19.2.0/24"),
            remote("blue", "198.19.9.0/24")
        ])
    );
    let o = blue(false);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "network blue:\n198.19.2.0/24 via 198.18.0.2 host h2 metric 5\n198.19.9.0/24 via 198.18.0.2 host h2 metric 5\n"
    );
    // A network the file does not have.
    let o = Command::new(env!("CARGO_BIN_EXE_vxrouter"))
        .args([
            "routes",
            "--config",
            f.path().to_str().unwrap(),
            "--host",
            "h1",
            "--network",
            "red",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no network \"red\"")
            && String::from_utf8_lossy(&o.stderr).contains("(networks: default, blue)"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
