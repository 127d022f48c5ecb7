//! Parser and validation tests. Every error test asserts the line (and where
//! it matters the column) the diagnostic points at.

use super::*;

const DESIGN_EXAMPLE: &str = r#"[overlay]
vni = 42                 # 1..=16777215
udp_port = 4789
mtu = 1450               # container-side MTU; default: underlay MTU - 50 (IPv4) / - 70 (IPv6)

[[hosts]]
name = "h1"
underlay = "198.18.0.1"            # this host's VTEP address (IPv4 or IPv6)
underlay_mac = "02:00:c6:12:00:01" # optional: NIC MAC; else learned from the kernel's neighbour table
vtep_mac = "02:00:c6:13:01:00"     # optional: inner Ethernet address of this host's VTEP; else derived
subnets = ["198.19.1.0/24"]        # container prefixes this host owns
nic = "eth0"                       # only used by the host that runs it
workers = [1]                      # cores for poll-mode workers
  [[hosts.ports]]                  # container attachments on this host
  name = "c1"                      # also the device name
  kind = "tun"                     # "tun" or "veth"
  addresses = ["198.19.1.2/32"]    # source prefixes this container may use (anti-spoofing)

[[links]]                           # underlay adjacencies usable for VXLAN, with a cost
a = "h1"
b = "h2"
cost = 10
"#;

const H2: &str = r#"
[[hosts]]
name = "h2"
underlay = "198.18.0.2"
subnets = ["198.19.2.0/24"]
"#;

/// A small valid file; tests append to it. Lines 1-12.
const BASE: &str = r#"[overlay]
vni = 7
[[hosts]]
name = "h1"
underlay = "198.18.0.1"
subnets = ["198.19.1.0/24", "2001:2:0:1::/64"]
[[hosts]]
name = "h2"
underlay = "198.18.0.2"
subnets = ["198.19.2.0/24"]
[[links]]
a = "h1"
"#;

fn ok(text: &str) -> Topology {
    match parse(text, "t.toml") {
        Ok(t) => t,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match parse(text, "t.toml") {
        Ok(_) => panic!("expected errors, file was accepted:\n{text}"),
        Err(e) => {
            assert!(!e.diagnostics.is_empty());
            e.diagnostics
        }
    }
}

/// Asserts a diagnostic on `line` whose field is `field` and whose message
/// contains `msg`.
#[track_caller]
fn expect(text: &str, line: usize, field: &str, msg: &str) {
    let errs = errors(text);
    assert!(
        errs.iter()
            .any(|d| d.line == line && d.field == field && d.message.contains(msg)),
        "wanted line {line} {field}: ..{msg}..; got:\n{}",
        ConfigError {
            diagnostics: errs.clone()
        }
    );
}

/// BASE with link h1-h2 of cost 1, then `extra`.
fn with(extra: &str) -> String {
    format!("{BASE}b = \"h2\"\ncost = 1\n{extra}")
}

#[test]
fn design_example_is_accepted_as_written() {
    let t = ok(&format!("{DESIGN_EXAMPLE}{H2}"));
    assert_eq!(
        t.overlay,
        Overlay {
            vni: 42,
            udp_port: 4789,
            mtu: Some(1450),
            liveness: None,
        }
    );
    let h1 = &t.hosts[0];
    assert_eq!(h1.name, "h1");
    assert_eq!(h1.underlay, "198.18.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(h1.underlay_mac, Some("02:00:c6:12:00:01".parse().unwrap()));
    assert_eq!(h1.vtep_mac, "02:00:c6:13:01:00".parse().unwrap());
    assert_eq!(h1.subnets, vec!["198.19.1.0/24".parse::<IpNet>().unwrap()]);
    assert_eq!(h1.nic.as_deref(), Some("eth0"));
    assert_eq!(h1.workers, vec![1]);
    assert_eq!(h1.uplink_io, UplinkIo::AfXdp);
    assert_eq!(h1.ports.len(), 1);
    let c1 = &h1.ports[0];
    assert_eq!(
        (c1.name.as_str(), c1.kind, c1.netns.as_deref()),
        ("c1", PortKind::Tun, None)
    );
    assert_eq!(
        c1.addresses,
        vec!["198.19.1.2/32".parse::<IpNet>().unwrap()]
    );
    assert_eq!(c1.gateways, vec!["198.19.1.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(
        t.links,
        vec![Link {
            a: "h1".into(),
            b: "h2".into(),
            cost: 10
        }]
    );
    assert_eq!(t.host_index("h2"), Some(1));
    assert_eq!(t.host_index("h9"), None);
    assert_eq!(t.overlay_mtu(0), 1450);
}

#[test]
fn defaults_and_derived_values() {
    let t = ok(&with(
        r#"[[hosts]]
name = "h3"
underlay = "2001:2::3"
subnets = ["198.19.3.0/24", "2001:2:0:3::/64"]
  [[hosts.ports]]
  name = "p"
  kind = "veth"
  addresses = ["2001:2:0:3::9", "198.19.3.9/32"]
  mac = "02:00:00:00:00:09"
  mtu = 1300
"#,
    ));
    assert_eq!(t.overlay.udp_port, DEFAULT_UDP_PORT);
    assert_eq!(t.overlay.mtu, None);
    let h1 = &t.hosts[0];
    assert_eq!(h1.workers, vec![0]);
    assert_eq!(h1.vtep_mac.to_string(), "02:42:c6:12:00:01");
    assert_eq!(h1.underlay_mac, None);
    assert_eq!(t.overlay_mtu(0), 1450);
    let h3 = &t.hosts[2];
    assert_eq!(t.overlay_mtu(2), 1430);
    assert_eq!(t.overlay_mtu(99), 1450);
    assert_eq!(h3.vtep_mac.to_string(), "02:42:00:00:00:03");
    let p = &h3.ports[0];
    // A bare address is one host; gateways IPv4 first.
    assert_eq!(
        p.addresses[0],
        "2001:2:0:3::9/128".parse::<IpNet>().unwrap()
    );
    assert_eq!(
        p.gateways,
        vec![
            "198.19.3.1".parse::<IpAddr>().unwrap(),
            "2001:2:0:3::1".parse().unwrap()
        ]
    );
    assert_eq!(p.mac, Some("02:00:00:00:00:09".parse().unwrap()));
    assert_eq!(p.kind, PortKind::Veth);
    assert!(
        !p.offload,
        "a veth port stays on AF_XDP unless `offload = true`"
    );
    assert_eq!(t.port_mtu(2, 0), 1300);
    assert_eq!(t.port_mtu(0, 0), 1450);
}

#[test]
fn configured_gateway_overrides_its_family_only() {
    let t = ok(&with(
        r#"  [[hosts.ports]]
  name = "p"
  kind = "tun"
  addresses = ["198.19.2.5/32"]
  gateway = "198.19.2.254"
"#,
    ));
    assert_eq!(
        t.hosts[1].ports[0].gateways,
        vec!["198.19.2.254".parse::<IpAddr>().unwrap()]
    );
}

#[test]
fn offload_defaults_on_for_tun_and_off_for_veth() {
    let port = |kind: &str, offload: &str| {
        with(&format!(
            "  [[hosts.ports]]\n  name = \"p\"\n  kind = \"{kind}\"\n  addresses = [\"198.19.2.5/32\"]\n  offload = {offload}\n"
        ))
    };
    assert!(!ok(&port("tun", "false")).hosts[1].ports[0].offload);
    assert!(ok(&port("tun", "true")).hosts[1].ports[0].offload);
    assert!(!ok(&port("veth", "false")).hosts[1].ports[0].offload);
    assert!(ok(&port("veth", "true")).hosts[1].ports[0].offload);
    let veth_default = ok(&with(
        "  [[hosts.ports]]\n  name = \"p\"\n  kind = \"veth\"\n  addresses = [\"198.19.2.5/32\"]\n",
    ));
    assert!(!veth_default.hosts[1].ports[0].offload);
    expect(
        &port("tun", "\"no\""),
        19,
        "hosts[1].ports[0].offload",
        "expected a boolean (true or false), found a string",
    );
}

#[test]
fn queue_len_defaults_to_4096_on_tun_and_is_refused_on_veth() {
    let port = |kind: &str, extra: &str| {
        with(&format!(
            "  [[hosts.ports]]\n  name = \"p\"\n  kind = \"{kind}\"\n  addresses = [\"198.19.2.5/32\"]\n{extra}"
        ))
    };
    assert_eq!(
        ok(&port("tun", "")).hosts[1].ports[0].queue_len,
        DEFAULT_QUEUE_LEN
    );
    assert_eq!(DEFAULT_QUEUE_LEN, 4096);
    let set = ok(&port("tun", "  queue_len = 1000\n"));
    assert_eq!(set.hosts[1].ports[0].queue_len, 1000);
    expect(
        &port("tun", "  queue_len = 8\n"),
        19,
        "hosts[1].ports[0].queue_len",
        "8 is out of range: expected a packet count in 16..=65536",
    );
    expect(
        &port("tun", "  queue_len = \"big\"\n"),
        19,
        "hosts[1].ports[0].queue_len",
        "expected a packet count in 16..=65536, found a string",
    );
    expect(
        &port("veth", "  queue_len = 1000\n"),
        19,
        "hosts[1].ports[0].queue_len",
        "`queue_len` only applies to TUN ports",
    );
}

#[test]
fn shipped_examples_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = load(&path) {
                panic!("{e}");
            }
            n += 1;
        }
    }
    assert!(n >= 4);
}

#[test]
fn load_reports_unreadable_file() {
    let e = load(std::path::Path::new("/nonexistent/topo.toml")).unwrap_err();
    assert_eq!(e.diagnostics.len(), 1);
    assert!(e
        .to_string()
        .starts_with("/nonexistent/topo.toml: cannot read topology file"));
}

#[test]
fn toml_syntax_error() {
    let d = errors("[overlay]\nvni = 42\n[[hosts]]\nname = \"h1\nunderlay = 1\n");
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].line, d[0].field.as_str()), (4, "syntax"));
    expect("[overlay]\nvni = = 3\n", 2, "syntax", "");
}

#[test]
fn unknown_fields_everywhere_all_reported() {
    let text = with(
        r#"bogus = 1
[[hosts]]
name = "h3"
underlay = "198.18.0.3"
colour = "red"
  [[hosts.ports]]
  name = "p"
  kind = "tun"
  addresses = ["198.19.2.9/32"]
  nmae = "x"
"#,
    );
    // `bogus` lands in the last [[links]] table.
    expect(&text, 15, "links[0].bogus", "unknown field");
    expect(
        &text,
        19,
        "hosts[2].colour",
        "unknown field; expected one of: name, underlay",
    );
    expect(&text, 24, "hosts[2].ports[0].nmae", "unknown field");
    expect("top = 1\n[overlay]\nvni = 1\n", 1, "top", "unknown field");
    expect(
        "[overlay]\nvni = 1\nspeed = 3\n",
        3,
        "overlay.speed",
        "unknown field",
    );
}

#[test]
fn missing_sections_and_fields() {
    expect("", 1, "overlay", "missing [overlay]");
    expect("", 1, "hosts", "missing [[hosts]]");
    expect(
        "hosts = []\n[overlay]\nudp_port = 5\n",
        2,
        "overlay.vni",
        "missing field",
    );
    expect(
        "hosts = []\n[overlay]\nvni = 1\n",
        1,
        "hosts",
        "at least one host",
    );
    expect(
        "[overlay]\nvni = 1\nhosts = []\n",
        3,
        "overlay.hosts",
        "unknown field",
    );
    let text = "[overlay]\nvni = 1\n[[hosts]]\nsubnets = []\n";
    expect(text, 3, "hosts[0].name", "missing field");
    expect(text, 3, "hosts[0].underlay", "missing field");
    let text = with("[[links]]\ncost = 3\n");
    expect(&text, 15, "links[1].a", "missing field");
    expect(&text, 15, "links[1].b", "missing field");
    expect(
        &with("[[links]]\na = \"h1\"\nb = \"h2\"\n"),
        15,
        "links[1].cost",
        "missing field",
    );
    let text = with("  [[hosts.ports]]\n  addresses = []\n");
    expect(&text, 15, "hosts[1].ports[0].name", "missing field");
    expect(&text, 15, "hosts[1].ports[0].kind", "missing field");
    expect(
        &text,
        16,
        "hosts[1].ports[0].addresses",
        "at least one address",
    );
}

#[test]
fn wrong_types() {
    expect(
        "[overlay]\nvni = \"42\"\n",
        2,
        "overlay.vni",
        "expected a VNI in 1..=16777215, found a string",
    );
    expect(
        "overlay = 3\n",
        1,
        "overlay",
        "expected a table, found an integer",
    );
    expect(
        "hosts = 3\n[overlay]\nvni = 1\n",
        1,
        "hosts",
        "expected an array",
    );
    expect(
        &with("[[hosts]]\nname = 5\n"),
        16,
        "hosts[2].name",
        "expected a string, found an integer",
    );
    expect(
        &with("[[hosts]]\nname = \"h3\"\nunderlay = 1979-05-27\n"),
        17,
        "hosts[2].underlay",
        "found a date-time",
    );
    expect(
        &with("[[hosts]]\nname = \"h3\"\nunderlay = \"198.18.0.3\"\nsubnets = \"198.19.3.0/24\"\n"),
        18,
        "hosts[2].subnets",
        "expected an array",
    );
}

#[test]
fn vni_out_of_range() {
    expect(
        "[overlay]\nvni = 0\n",
        2,
        "overlay.vni",
        "0 is out of range",
    );
    expect(
        "[overlay]\nvni = 16777216\n",
        2,
        "overlay.vni",
        "16777216 is out of range: expected a VNI in 1..=16777215",
    );
    expect("[overlay]\nvni = -1\n", 2, "overlay.vni", "out of range");
    expect("[overlay]\nvni = 16777215\n", 1, "hosts", "missing");
}

#[test]
fn udp_port_and_mtu_ranges() {
    expect(
        "[overlay]\nvni = 1\nudp_port = 0\n",
        3,
        "overlay.udp_port",
        "out of range",
    );
    expect(
        "[overlay]\nvni = 1\nudp_port = 70000\n",
        3,
        "overlay.udp_port",
        "out of range",
    );
    expect(
        "[overlay]\nvni = 1\nmtu = 67\n",
        3,
        "overlay.mtu",
        "out of range",
    );
    // BASE has IPv6 subnets: 1279 is too small for them.
    let text = BASE.replace("vni = 7", "vni = 7\nmtu = 1279");
    expect(
        &format!("{text}b = \"h2\"\ncost = 1\n"),
        3,
        "overlay.mtu",
        "minimum IPv6 MTU",
    );
}

#[test]
fn liveness_settings() {
    let on = |extra: &str| {
        let text = BASE.replace("vni = 7", &format!("vni = 7\n{extra}"));
        ok(&format!("{text}b = \"h2\"\ncost = 1\n"))
            .overlay
            .liveness
    };
    assert_eq!(on(""), None);
    assert_eq!(on("liveness_interval_ms = 0"), None);
    assert_eq!(
        on("liveness_interval_ms = 200"),
        Some(LivenessConfig {
            interval_ms: 200,
            dead_after: DEFAULT_LIVENESS_DEAD_AFTER,
            port: DEFAULT_LIVENESS_PORT,
            key_file: None,
        })
    );
    assert_eq!(
        on("liveness_interval_ms = 1000\nliveness_dead_after = 5\nliveness_port = 5000"),
        Some(LivenessConfig {
            interval_ms: 1000,
            dead_after: 5,
            port: 5000,
            key_file: None,
        })
    );
    assert_eq!(
        on("liveness_interval_ms = 200\nliveness_key_file = \"/etc/vxrouter/liveness.key\"")
            .and_then(|l| l.key_file),
        Some("/etc/vxrouter/liveness.key".into())
    );
    // Off: the other fields are still checked, the port may be anything.
    assert_eq!(on("udp_port = 4799"), None);
    for (extra, field, msg) in [
        (
            "liveness_interval_ms = 9",
            "overlay.liveness_interval_ms",
            "out of range",
        ),
        (
            "liveness_interval_ms = 60001",
            "overlay.liveness_interval_ms",
            "out of range",
        ),
        (
            "liveness_interval_ms = -1",
            "overlay.liveness_interval_ms",
            "out of range",
        ),
        (
            "liveness_dead_after = 1",
            "overlay.liveness_dead_after",
            "out of range",
        ),
        (
            "liveness_dead_after = 256",
            "overlay.liveness_dead_after",
            "out of range",
        ),
        ("liveness_port = 0", "overlay.liveness_port", "out of range"),
        (
            "liveness_port = \"x\"",
            "overlay.liveness_port",
            "expected a UDP port",
        ),
        (
            "liveness_interval_ms = 100\nliveness_port = 4789",
            "overlay.liveness_port",
            "must differ from overlay.udp_port",
        ),
        (
            "udp_port = 4799\nliveness_interval_ms = 100",
            "overlay.liveness_interval_ms",
            "must differ from overlay.udp_port",
        ),
        (
            "liveness_interval_ms = 100\nliveness_key_file = \"liveness.key\"",
            "overlay.liveness_key_file",
            "is relative: expected an absolute path",
        ),
        (
            "liveness_interval_ms = 100\nliveness_key_file = \"\"",
            "overlay.liveness_key_file",
            "an empty path",
        ),
        (
            "liveness_interval_ms = 100\nliveness_key_file = \"/etc/a\\u0007\"",
            "overlay.liveness_key_file",
            "control character",
        ),
        (
            "liveness_interval_ms = 100\nliveness_key_file = 7",
            "overlay.liveness_key_file",
            "expected a string",
        ),
        (
            "liveness_key_file = \"/etc/vxrouter/liveness.key\"",
            "overlay.liveness_key_file",
            "a key file without liveness",
        ),
    ] {
        let text = BASE.replace("vni = 7", &format!("vni = 7\n{extra}"));
        let line = 3 + extra.lines().count() - 1;
        expect(&format!("{text}b = \"h2\"\ncost = 1\n"), line, field, msg);
    }
}

#[test]
fn negative_zero_and_huge_costs() {
    let base = BASE.to_string();
    expect(
        &format!("{base}b = \"h2\"\ncost = 0\n"),
        14,
        "links[0].cost",
        "at least 1",
    );
    expect(
        &format!("{base}b = \"h2\"\ncost = -5\n"),
        14,
        "links[0].cost",
        "negative costs are not allowed",
    );
    expect(
        &format!("{base}b = \"h2\"\ncost = 4294967296\n"),
        14,
        "links[0].cost",
        "out of range",
    );
    expect(
        &format!("{base}b = \"h2\"\ncost = 1.5\n"),
        14,
        "links[0].cost",
        "found a float",
    );
    let t = ok(&format!("{base}b = \"h2\"\ncost = 4294967295\n"));
    assert_eq!(t.links[0].cost, u32::MAX);
}

#[test]
fn link_errors() {
    let d = errors(&format!("{BASE}b = \"h9\"\ncost = 1\n"));
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].line, d[0].col, d[0].field.as_str()),
        (13, 5, "links[0].b")
    );
    assert_eq!(d[0].message, "unknown host \"h9\"");
    expect(
        &format!("{BASE}b = \"h1\"\ncost = 1\n"),
        13,
        "links[0].b",
        "self-link",
    );
    expect(
        &with("[[links]]\na = \"h2\"\nb = \"h1\"\ncost = 4\n"),
        15,
        "links[1]",
        "duplicate link between \"h2\" and \"h1\" (first defined on line 11)",
    );
    expect(
        &with("[[links]]\na = \"h1\"\nb = \"h2\"\ncost = 4\n"),
        15,
        "links[1]",
        "duplicate link",
    );
    let v6 = with("[[hosts]]\nname = \"h3\"\nunderlay = \"2001:2::3\"\n[[links]]\na = \"h1\"\nb = \"h3\"\ncost = 1\n");
    expect(&v6, 20, "links[1]", "different address families");
}

#[test]
fn duplicate_hosts_underlays_and_macs() {
    expect(
        &with("[[hosts]]\nname = \"h1\"\nunderlay = \"198.18.0.3\"\n"),
        16,
        "hosts[2].name",
        "duplicate host name \"h1\" (first defined on line 4)",
    );
    expect(
        &with("[[hosts]]\nname = \"h3\"\nunderlay = \"198.18.0.2\"\n"),
        17,
        "hosts[2].underlay",
        "duplicate underlay address 198.18.0.2 (also host \"h2\", line 9)",
    );
    // 2001:2::c612:1 derives 02:42:c6:12:00:01, the same as h1's 198.18.0.1.
    expect(
        &with("[[hosts]]\nname = \"h3\"\nunderlay = \"2001:2::c612:1\"\n"),
        17,
        "hosts[2].vtep_mac",
        "derived vtep_mac 02:42:c6:12:00:01 duplicates",
    );
    expect(&with("[[hosts]]\nname = \"h3\"\nunderlay = \"198.18.0.3\"\nvtep_mac = \"02:42:c6:12:00:02\"\n"), 18, "hosts[2].vtep_mac", "duplicates the VTEP MAC of host \"h2\"");
    expect(
        &with("[[hosts]]\nname = \"h 3\"\nunderlay = \"198.18.0.3\"\n"),
        16,
        "hosts[2].name",
        "may only contain",
    );
}

#[test]
fn uplink_io_is_read() {
    let t = ok(&with(
        "[[hosts]]\nname = \"h3\"\nunderlay = \"198.18.0.3\"\nuplink_io = \"udp\"\n",
    ));
    assert_eq!(t.hosts[2].uplink_io, UplinkIo::Udp);
    assert_eq!(t.hosts[0].uplink_io, UplinkIo::AfXdp);
}

#[test]
fn bad_addresses_and_macs() {
    let h3 = |field: &str| {
        with(&format!(
            "[[hosts]]\nname = \"h3\"\nunderlay = \"198.18.0.3\"\n{field}\n"
        ))
    };
    expect(
        &h3("underlay_mac = \"02:00:c6:12:00\""),
        18,
        "hosts[2].underlay_mac",
        "invalid MAC address",
    );
    expect(
        &h3("vtep_mac = \"01:00:5e:00:00:01\""),
        18,
        "hosts[2].vtep_mac",
        "not a unicast MAC",
    );
    expect(
        &h3("vtep_mac = \"00:00:00:00:00:00\""),
        18,
        "hosts[2].vtep_mac",
        "not a unicast MAC",
    );
    expect(
        &h3("subnets = [\"198.19.3.0/33\"]"),
        18,
        "hosts[2].subnets[0]",
        "invalid prefix",
    );
    expect(
        &h3("subnets = [\"198.19.3.0\"]"),
        18,
        "hosts[2].subnets[0]",
        "no prefix length",
    );
    expect(
        &h3("subnets = [\"198.19.3.7/24\"]"),
        18,
        "hosts[2].subnets[0]",
        "host bits set; write 198.19.3.0/24",
    );
    expect(
        &h3("subnets = [\"224.0.0.0/8\"]"),
        18,
        "hosts[2].subnets[0]",
        "224.0.0.0/8 is not a prefix containers may use: it lies in 224.0.0.0/4 (multicast)",
    );
    expect(
        &h3("nic = \"a/b\""),
        18,
        "hosts[2].nic",
        "not a valid interface name",
    );
    expect(
        &h3("uplink_io = \"dpdk\""),
        18,
        "hosts[2].uplink_io",
        "unknown uplink I/O \"dpdk\": expected \"af_xdp\" or \"udp\"",
    );
    expect(&h3("uplink_io = 1"), 18, "hosts[2].uplink_io", "string");
    expect(
        &h3("workers = []"),
        18,
        "hosts[2].workers",
        "at least one worker",
    );
    expect(
        &h3("workers = [1, 1]"),
        18,
        "hosts[2].workers[1]",
        "listed twice",
    );
    expect(
        &h3("workers = [-1]"),
        18,
        "hosts[2].workers[0]",
        "out of range",
    );
    expect(
        &with("[[hosts]]\nname = \"h3\"\nunderlay = \"198.18.0.300\"\n"),
        17,
        "hosts[2].underlay",
        "invalid IP address \"198.18.0.300\"",
    );
    expect(
        &with("[[hosts]]\nname = \"h3\"\nunderlay = \"0.0.0.0\"\n"),
        17,
        "hosts[2].underlay",
        "unspecified",
    );
    expect(
        &with("[[hosts]]\nname = \"h3\"\nunderlay = \"ff02::1\"\n"),
        17,
        "hosts[2].underlay",
        "multicast",
    );
    expect(
        &with("[[hosts]]\nname = \"h3\"\nunderlay = \"255.255.255.255\"\n"),
        17,
        "hosts[2].underlay",
        "broadcast",
    );
}

#[test]
fn overlapping_subnets() {
    // Between hosts: h3's /16 contains h1's /24, reported at h3 (later line).
    let text = with(
        "[[hosts]]\nname = \"h3\"\nunderlay = \"198.18.0.3\"\nsubnets = [\"198.19.0.0/16\"]\n",
    );
    expect(
        &text,
        18,
        "hosts[2].subnets[0]",
        "198.19.0.0/16 overlaps a subnet of host \"h1\": 198.19.1.0/24 (line 6)",
    );
    // h3's /16 also contains h2's /24: both reported.
    let d = errors(&text);
    assert_eq!(
        d.iter()
            .filter(|d| d.field == "hosts[2].subnets[0]")
            .count(),
        2,
        "{d:?}"
    );
    // Within one host; and identical IPv6 subnets.
    expect(
        &BASE
            .replace(
                "\"198.19.1.0/24\", ",
                "\"198.19.1.0/24\", \"198.19.1.128/25\", ",
            )
            .replace("a = \"h1\"\n", "a = \"h1\"\nb = \"h2\"\ncost = 1\n"),
        6,
        "hosts[0].subnets[1]",
        "overlaps another subnet of this host",
    );
    expect(&with("[[hosts]]\nname = \"h3\"\nunderlay = \"198.18.0.3\"\nsubnets = [\"2001:2:0:1::/64\"]\n"), 18, "hosts[2].subnets[0]", "overlaps a subnet of host \"h1\"");
    // Adjacent prefixes do not overlap.
    ok(&with("[[hosts]]\nname = \"h3\"\nunderlay = \"198.18.0.3\"\nsubnets = [\"198.19.0.0/24\", \"198.19.3.0/24\", \"2001:2:0:2::/64\"]\n"));
}

#[test]
fn port_errors() {
    let port = |lines: &str| with(&format!("  [[hosts.ports]]\n{lines}\n"));
    expect(
        &port("  name = \"p\"\n  kind = \"tap\"\n  addresses = [\"198.19.2.9\"]"),
        17,
        "hosts[1].ports[0].kind",
        "unknown port kind \"tap\"",
    );
    expect(
        &port(
            "  name = \"averyveryverylongname\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.9\"]",
        ),
        16,
        "hosts[1].ports[0].name",
        "1 to 15 bytes",
    );
    expect(
        &port("  name = \"p\"\n  kind = \"tun\"\n  addresses = [\"198.19.1.9\"]"),
        18,
        "hosts[1].ports[0].addresses[0]",
        "198.19.1.9/32 is outside the host's subnets (198.19.2.0/24)",
    );
    expect(&port("  name = \"p\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.9\"]\n  mac = \"02:00:00:00:00:01\""), 19, "hosts[1].ports[0].mac", "only applies to veth");
    expect(&port("  name = \"p\"\n  kind = \"veth\"\n  addresses = [\"198.19.2.9\"]\n  mac = \"02:00:00:00:00\""), 19, "hosts[1].ports[0].mac", "invalid MAC");
    expect(
        &port(
            "  name = \"p\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.9\"]\n  netns = \"a/b\"",
        ),
        19,
        "hosts[1].ports[0].netns",
        "not a valid network namespace",
    );
    expect(&port("  name = \"p\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.9\"]\n  gateway = \"198.19.2.1\"\n  gateways = []"), 20, "hosts[1].ports[0].gateways", "not both");
    expect(&port("  name = \"p\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.9\"]\n  gateways = [\"198.19.2.1\", \"198.19.2.2\"]"), 19, "hosts[1].ports[0].gateways[1]", "one gateway per address family");
    expect(&port("  name = \"p\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.9\"]\n  gateway = \"2001:2::1\""), 19, "hosts[1].ports[0].gateway", "the port has no IPv6 address");
    expect(
        &port("  name = \"p\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.0/30\"]"),
        18,
        "hosts[1].ports[0].gateways[0]",
        "gateway 198.19.2.1 lies inside port address 198.19.2.0/30",
    );
    expect(
        &port("  name = \"p\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.9\"]\n  mtu = 10"),
        19,
        "hosts[1].ports[0].mtu",
        "out of range",
    );
    // The largest frame a port buffer holds bounds the MTU.
    expect(
        &port("  name = \"p\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.9\"]\n  mtu = 1907"),
        19,
        "hosts[1].ports[0].mtu",
        "an MTU in 68..=1906",
    );
    ok(&port(
        "  name = \"p\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.9\"]\n  mtu = 1906",
    ));
    // Two ports in one namespace would both be its eth0.
    expect(
        &port("  name = \"p\"\n  kind = \"veth\"\n  netns = \"c\"\n  addresses = [\"198.19.2.9\"]\n  [[hosts.ports]]\n  name = \"q\"\n  kind = \"tun\"\n  netns = \"c\"\n  addresses = [\"198.19.2.10\"]"),
        23,
        "hosts[1].ports[1].netns",
        "namespace \"c\" already holds a port of this host (line 18)",
    );
    // At most 255 ports: the 256th is named.
    let many: String = (0..256)
        .map(|i| format!("  name = \"p{i}\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.{}\"]\n  [[hosts.ports]]\n", i % 250 + 2))
        .collect::<String>()
        .trim_end_matches("  [[hosts.ports]]\n")
        .to_string();
    let errs = errors(&port(&many));
    assert!(
        errs.iter()
            .any(|d| d.field == "hosts[1].ports[255]" && d.message.contains("at most 255 ports")),
        "{errs:?}"
    );
    // Two ports: duplicate names and overlapping addresses.
    let two = port("  name = \"p\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.9\"]\n  [[hosts.ports]]\n  name = \"p\"\n  kind = \"veth\"\n  addresses = [\"198.19.2.8/29\"]");
    expect(
        &two,
        20,
        "hosts[1].ports[1].name",
        "duplicate port name \"p\" on this host (first defined on line 16)",
    );
    expect(
        &two,
        22,
        "hosts[1].ports[1].addresses[0]",
        "overlaps address 198.19.2.9/32 of a port on line 18",
    );
    // The same port name on two hosts is fine.
    ok(&format!("{BASE}b = \"h2\"\ncost = 1\n").replace("subnets = [\"198.19.2.0/24\"]\n", "subnets = [\"198.19.2.0/24\"]\n  [[hosts.ports]]\n  name = \"c1\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.2\"]\n").replace("subnets = [\"198.19.1.0/24\", \"2001:2:0:1::/64\"]\n", "subnets = [\"198.19.1.0/24\", \"2001:2:0:1::/64\"]\n  [[hosts.ports]]\n  name = \"c1\"\n  kind = \"tun\"\n  addresses = [\"198.19.1.2\"]\n"));
}

#[test]
fn all_errors_in_one_file_are_reported_in_order() {
    let text = r#"[overlay]
vni = 0
udp_port = "x"
[[hosts]]
name = "h1"
underlay = "198.18.0.1"
subnets = ["198.19.1.0/24"]
[[hosts]]
name = "h1"
underlay = "198.18.0.1"
subnets = ["198.19.1.0/25"]
[[links]]
a = "h1"
b = "h9"
cost = 0
"#;
    let e = parse(text, "bad.toml").unwrap_err();
    let lines: Vec<(usize, &str)> = e
        .diagnostics
        .iter()
        .map(|d| (d.line, d.field.as_str()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (2, "overlay.vni"),
            (3, "overlay.udp_port"),
            (9, "hosts[1].name"),
            (10, "hosts[1].underlay"),
            (11, "hosts[1].subnets[0]"),
            (14, "links[0].b"),
            (15, "links[0].cost"),
        ],
        "{e}"
    );
    let shown = e.to_string();
    assert_eq!(shown.lines().count(), 7);
    assert!(
        shown.starts_with("bad.toml:2:7: overlay.vni: 0 is out of range"),
        "{shown}"
    );
}

#[test]
fn inline_tables_and_dotted_keys_work() {
    let t = ok(r#"overlay = { vni = 9 }
hosts = [
  { name = "a", underlay = "198.18.0.1", subnets = ["198.19.1.0/24"], ports = [{ name = "p", kind = "tun", addresses = ["198.19.1.5"] }] },
  { name = "b", underlay = "198.18.0.2" },
]
links = [{ a = "a", b = "b", cost = 3 }]
"#);
    assert_eq!(
        t.hosts[0].ports[0].gateways,
        vec!["198.19.1.1".parse::<IpAddr>().unwrap()]
    );
    expect(
        "overlay.vni = 9\noverlay.colour = 1\n",
        2,
        "overlay.colour",
        "unknown field",
    );
    expect(
        "hosts = [{ name = \"a\", underlay = \"x\" }]\n[overlay]\nvni = 1\n",
        1,
        "hosts[0].underlay",
        "invalid IP address",
    );
}

#[test]
fn topology_serializes() {
    let t = ok(&format!("{DESIGN_EXAMPLE}{H2}"));
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(v["hosts"][0]["vtep_mac"], "02:00:c6:13:01:00");
    assert_eq!(v["hosts"][0]["ports"][0]["kind"], "tun");
}

/// BASE plus a host h3 (line 15) whose fields start on line 17.
fn h3(fields: &str) -> String {
    with(&format!("[[hosts]]\nname = \"h3\"\n{fields}\n"))
}

#[test]
fn vtep_addresses_must_be_reachable_unicast() {
    for (u, msg) in [
        ("127.0.0.1", "127.0.0.1 is a loopback address; a VTEP address must be a unicast address other hosts can reach"),
        ("0.1.2.3", "\"this network\""),
        ("224.0.0.9", "multicast"),
        ("240.0.0.1", "in the reserved block 240.0.0.0/4"),
        ("255.255.255.254", "reserved"),
        ("255.255.255.255", "the limited broadcast address"),
        ("::", "the unspecified address"),
        ("::1", "loopback"),
        ("ff02::1", "multicast"),
        ("100::7", "discard-only"),
        ("fe80::3", "fe80::3 is a link-local address: it is only valid with an interface scope"),
        // IPv4 in IPv6 clothing: the address to write instead, and a repeat named.
        ("::ffff:198.18.0.9", "::ffff:198.18.0.9 is an IPv4-mapped IPv6 address and it never appears in an IPv6 header on the wire: write the IPv4 address 198.18.0.9"),
        ("::ffff:198.18.0.2", "it repeats the underlay 198.18.0.2 of host \"h2\" (line 9)"),
        ("::198.18.0.1", "::198.18.0.1 is a deprecated IPv4-compatible IPv6 address: it repeats the underlay 198.18.0.1 of host \"h1\" (line 5)"),
        ("::198.18.0.9", "::198.18.0.9 is a deprecated IPv4-compatible IPv6 address and IPv6 no longer carries it (RFC 4291 section 2.5.5.1): write the IPv4 address 198.18.0.9"),
    ] {
        let text = h3(&format!("underlay = \"{u}\""));
        expect(&text, 17, "hosts[2].underlay", msg);
        assert_eq!(errors(&text).len(), 1, "{u}: {:?}", errors(&text));
    }
    // Ordinary unicast, the special-use blocks labs use and IPv4
    // link-local (one underlay segment needs no scope) included.
    for u in [
        "169.254.0.3",
        "192.0.2.3",
        "100.64.0.3",
        "10.0.0.3",
        "2001:db8::3",
        "fd00::3",
        "64:ff9b::c612:3",
    ] {
        ok(&h3(&format!("underlay = \"{u}\"")));
    }
}

#[test]
fn container_subnets_stay_clear_of_special_blocks() {
    for (s, msg) in [
        (
            "127.0.0.0/8",
            "127.0.0.0/8 is not a prefix containers may use: it lies in 127.0.0.0/8 (loopback)",
        ),
        ("127.1.0.0/16", "it lies in 127.0.0.0/8 (loopback)"),
        ("0.0.0.0/32", "it lies in 0.0.0.0/32 (unspecified)"),
        (
            "0.0.0.0/0",
            "0.0.0.0/0 is not a prefix containers may use: it covers 0.0.0.0/32 (unspecified)",
        ),
        ("0.128.0.0/9", "(\"this network\")"),
        ("224.0.1.0/24", "(multicast)"),
        ("240.0.0.0/4", "(reserved)"),
        ("248.0.0.0/5", "it lies in 240.0.0.0/4 (reserved)"),
        (
            "128.0.0.0/1",
            "it covers 169.254.0.0/16 (link-local, never forwarded)",
        ),
        ("255.255.255.255/32", "(broadcast)"),
        ("169.254.0.0/16", "(link-local, never forwarded)"),
        ("::/0", "it covers ::/128 (unspecified)"),
        ("::1/128", "(loopback)"),
        ("::ffff:0:0/96", "(IPv4-mapped, never on the wire)"),
        ("::c612:0/112", "(IPv4-compatible, deprecated)"),
        ("100::/64", "(discard-only)"),
        (
            "fe80::/64",
            "it lies in fe80::/10 (link-local, never forwarded)",
        ),
        ("ff00::/8", "(multicast)"),
    ] {
        let text = h3(&format!(
            "underlay = \"198.18.0.3\"\nsubnets = [\"198.19.3.0/24\", \"{s}\"]"
        ));
        expect(&text, 18, "hosts[2].subnets[1]", msg);
    }
    ok(&h3("underlay = \"198.18.0.3\"\nsubnets = [\"198.51.100.0/24\", \"10.0.0.0/8\", \"2001:db8::/32\", \"fd00::/8\", \"fec0::/10\"]"));
}

#[test]
fn underlay_and_overlay_share_no_address() {
    // An underlay inside a subnet defined earlier: reported at the underlay.
    expect(
        &h3("underlay = \"198.19.1.7\""),
        17,
        "hosts[2].underlay",
        "underlay address 198.19.1.7 lies inside container subnet 198.19.1.0/24 of host \"h1\" (line 6); the underlay and the overlay must not share addresses",
    );
    expect(
        &h3("underlay = \"2001:2:0:1::9\""),
        17,
        "hosts[2].underlay",
        "inside container subnet 2001:2:0:1::/64 of host \"h1\" (line 6)",
    );
    // A subnet covering underlays defined earlier: reported at the subnet,
    // once per underlay, this host's own included.
    let text = h3("underlay = \"198.18.0.3\"\nsubnets = [\"198.18.0.0/24\"]");
    expect(
        &text,
        18,
        "hosts[2].subnets[0]",
        "198.18.0.0/24 covers 198.18.0.1, the underlay address of host \"h1\" (line 5)",
    );
    expect(
        &text,
        18,
        "hosts[2].subnets[0]",
        "covers 198.18.0.2, the underlay address of host \"h2\" (line 9)",
    );
    expect(
        &text,
        18,
        "hosts[2].subnets[0]",
        "198.18.0.0/24 covers 198.18.0.3, this host's underlay address (line 17)",
    );
    assert_eq!(errors(&text).len(), 3, "{:?}", errors(&text));
    // A single-address subnet equal to an underlay.
    expect(
        &h3("underlay = \"198.18.0.3\"\nsubnets = [\"198.18.0.1/32\"]"),
        18,
        "hosts[2].subnets[0]",
        "covers 198.18.0.1, the underlay address of host \"h1\"",
    );
    // An underlay inside a subnet of a host defined later: at the subnet.
    let text = h3("underlay = \"198.18.0.3\"\n[[hosts]]\nname = \"h4\"\nunderlay = \"198.18.1.4\"\nsubnets = [\"198.18.0.0/31\"]");
    expect(
        &text,
        21,
        "hosts[3].subnets[0]",
        "covers 198.18.0.1, the underlay address of host \"h1\"",
    );
    // Next to each other is fine.
    ok(&h3(
        "underlay = \"198.18.0.3\"\nsubnets = [\"198.18.0.4/30\", \"198.18.1.0/24\"]",
    ));
}

#[test]
fn gateways_are_unicast_and_not_another_hosts_address() {
    let port = |gw: &str| {
        with(&format!(
            "  [[hosts.ports]]\n  name = \"p\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.9\"]\n  {gw}\n"
        ))
    };
    // Line 19, column 13 (the value).
    let d = errors(&port("gateway = \"127.0.0.1\""));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0].line, d[0].col, d[0].field.as_str()),
        (19, 13, "hosts[1].ports[0].gateway")
    );
    assert_eq!(
        d[0].message,
        "gateway 127.0.0.1 is a loopback address; a gateway must be a unicast address (link-local is fine)"
    );
    for (gw, msg) in [
        ("0.0.0.0", "the unspecified address"),
        ("0.0.0.1", "\"this network\""),
        ("240.1.2.3", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("224.0.0.1", "multicast"),
    ] {
        expect(
            &port(&format!("gateway = \"{gw}\"")),
            19,
            "hosts[1].ports[0].gateway",
            msg,
        );
    }
    // Inside h1's subnet: the router would answer for h1's address itself.
    expect(
        &port("gateways = [\"198.19.1.1\"]"),
        19,
        "hosts[1].ports[0].gateways[0]",
        "gateway 198.19.1.1 lies inside subnet 198.19.1.0/24 of host \"h1\" (line 6): the router would answer for that address itself",
    );
    // ... also when that host comes later in the file: still at the gateway.
    expect(
        &port("gateway = \"198.19.3.1\"\n[[hosts]]\nname = \"h3\"\nunderlay = \"198.18.0.3\"\nsubnets = [\"198.19.3.0/24\"]"),
        19,
        "hosts[1].ports[0].gateway",
        "inside subnet 198.19.3.0/24 of host \"h3\" (line 23)",
    );
    // IPv6: loopback and another host's subnet.
    let v6 = |gw: &str| {
        h3(&format!("underlay = \"198.18.0.3\"\nsubnets = [\"2001:2:0:3::/64\"]\n  [[hosts.ports]]\n  name = \"p\"\n  kind = \"tun\"\n  addresses = [\"2001:2:0:3::9\"]\n  gateway = \"{gw}\""))
    };
    expect(&v6("::1"), 23, "hosts[2].ports[0].gateway", "loopback");
    expect(
        &v6("::ffff:198.19.3.1"),
        23,
        "hosts[2].ports[0].gateway",
        "IPv4-mapped",
    );
    expect(
        &v6("2001:2:0:1::1"),
        23,
        "hosts[2].ports[0].gateway",
        "inside subnet 2001:2:0:1::/64 of host \"h1\"",
    );
    // Link-local, its own subnet, and outside every subnet are fine.
    ok(&v6("fe80::1"));
    ok(&v6("2001:2:0:3::fffe"));
    ok(&port("gateway = \"169.254.1.1\""));
    ok(&port("gateway = \"198.19.2.254\""));
    ok(&port("gateway = \"192.0.2.1\""));
}

#[test]
fn names_carry_no_control_characters() {
    let port = |field: &str| {
        with(&format!(
            "  [[hosts.ports]]\n  name = \"p\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.9\"]\n  {field}\n"
        ))
    };
    // TOML escapes put the characters in the strings.
    expect(
        &with("  [[hosts.ports]]\n  name = \"c\\u0000\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.9\"]\n"),
        16,
        "hosts[1].ports[0].name",
        "\"c\\0\" is not a valid interface name: it contains the control character U+0000",
    );
    expect(
        &with("  [[hosts.ports]]\n  name = \"c\\u001b[2J\"\n  kind = \"tun\"\n  addresses = [\"198.19.2.9\"]\n"),
        16,
        "hosts[1].ports[0].name",
        "control character U+001B",
    );
    expect(
        &h3("underlay = \"198.18.0.3\"\nnic = \"eth\\u007f\""),
        18,
        "hosts[2].nic",
        "control character U+007F",
    );
    expect(
        &h3("underlay = \"198.18.0.3\"\nnic = \"e\\u0085\""),
        18,
        "hosts[2].nic",
        "control character U+0085",
    );
    // Linux takes the byte 0xA0 for a space in device names.
    expect(
        &h3("underlay = \"198.18.0.3\"\nnic = \"ethà\""),
        18,
        "hosts[2].nic",
        "its UTF-8 for 'à' holds the byte 0xA0, which Linux takes for a space",
    );
    ok(&h3("underlay = \"198.18.0.3\"\nnic = \"ethé\""));
    expect(
        &port("netns = \"ns\\u0000x\""),
        19,
        "hosts[1].ports[0].netns",
        "control character U+0000",
    );
    expect(
        &port("netns = \"ns\\n\""),
        19,
        "hosts[1].ports[0].netns",
        "control character U+000A",
    );
    expect(
        &with("[[hosts]]\nname = \"h\\u0001\"\nunderlay = \"198.18.0.3\"\n"),
        16,
        "hosts[2].name",
        "may only contain ASCII letters",
    );
    // Namespace names are file names under /run/netns.
    let long = "n".repeat(255);
    ok(&port(&format!("netns = \"{long}\"")));
    expect(
        &port(&format!("netns = \"{long}x\"")),
        19,
        "hosts[1].ports[0].netns",
        "it must be 1 to 255 bytes long (it is a file name under /run/netns), found 256",
    );
    // 128 two-byte characters: 256 bytes.
    expect(
        &port(&format!("netns = \"{}\"", "é".repeat(128))),
        19,
        "hosts[1].ports[0].netns",
        "found 256",
    );
    for bad in [".", "..", "a/b", "/run"] {
        expect(
            &port(&format!("netns = \"{bad}\"")),
            19,
            "hosts[1].ports[0].netns",
            "so no '/', and not \".\" or \"..\"",
        );
    }
    expect(
        &port("netns = \"\""),
        19,
        "hosts[1].ports[0].netns",
        "1 to 255 bytes",
    );
    ok(&port("netns = \"ctr-1.a_b\""));
    // An unknown key shows quoted and escaped, never raw.
    let d = errors("\"\\u001b[31m\" = 2\n[overlay]\nvni = 1\n");
    let k = d
        .iter()
        .find(|d| d.message.starts_with("unknown field"))
        .unwrap();
    assert_eq!((k.line, k.field.as_str()), (1, "\"\\u{1b}[31m\""));
    assert!(!k.to_string().chars().any(char::is_control), "{k}");
}

#[test]
fn overlay_mtu_fits_the_port_buffers_once_encapsulated() {
    use crate::dataplane::tables::{OUTER_V4_LEN, OUTER_V6_LEN};
    use crate::port::MAX_FRAME;
    use crate::wire::ethernet::HEADER_LEN;
    let max4 = (MAX_FRAME - HEADER_LEN - OUTER_V4_LEN) as u16;
    let max6 = (MAX_FRAME - HEADER_LEN - OUTER_V6_LEN) as u16;
    // The numbers the documentation gives.
    assert_eq!((max4, max6), (1856, 1836));
    let mtu = |m: u16, extra: &str| {
        with(extra).replacen("vni = 7\n", &format!("vni = 7\nmtu = {m}\n"), 1)
    };
    ok(&mtu(max4, ""));
    expect(
        &mtu(max4 + 1, ""),
        3,
        "overlay.mtu",
        "1857 is too large: over the IPv4 underlay of host \"h1\" a packet of 1857 bytes leaves as a VXLAN frame of 1921 bytes (14 inner Ethernet + 50 outer headers), more than the 1920 bytes a port buffer holds; the overlay MTU can be at most 1856 with IPv4 underlays, 1836 with IPv6",
    );
    // One IPv6 underlay anywhere lowers the bound for the whole overlay.
    let v6 = "[[hosts]]\nname = \"h3\"\nunderlay = \"2001:2::3\"\n";
    ok(&mtu(max6, v6));
    expect(
        &mtu(max6 + 1, v6),
        3,
        "overlay.mtu",
        "1837 is too large: over the IPv6 underlay of host \"h3\" a packet of 1837 bytes leaves as a VXLAN frame of 1921 bytes (14 inner Ethernet + 70 outer headers)",
    );
    // The schema's own cap still holds above that.
    expect(&mtu(1907, ""), 3, "overlay.mtu", "an MTU in 68..=1906");
    // The derived MTU always fits.
    assert_eq!(ok(&with(v6)).overlay_mtu(2), 1430);
}

#[test]
fn syntax_errors_name_control_characters() {
    // In a comment the parser itself says nothing.
    let d = errors("[overlay]\nvni = 7 # a\u{1}b\n");
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].line, d[0].col, d[0].field.as_str()),
        (2, 12, "syntax")
    );
    assert_eq!(
        d[0].message,
        "control character U+0001 is not allowed in a TOML file: only tab is, and in a string write it as \\u0001"
    );
    expect(
        "[overlay]\nvni = 7\n# \u{7f}\n",
        3,
        "syntax",
        "control character U+007F",
    );
    expect(
        "[overlay]\nvni = 7\nx = \"\u{0}\"\n",
        3,
        "syntax",
        "control character U+0000",
    );
    expect(
        "[overlay]\rvni = 7\n",
        1,
        "syntax",
        "a carriage return (U+000D) not followed by a line feed",
    );
    // Every syntax error says something.
    for text in [
        "[overlay\n",
        "a = \n",
        "= 1\n",
        "[[x]]\n[x]\n",
        "a = 1\na = 2\n",
        "a = \"\n",
    ] {
        for d in errors(text) {
            assert!(!d.message.trim().is_empty(), "{text:?}: {d}");
        }
    }
}

#[test]
fn invalid_utf8_is_refused_at_its_position() {
    let e = parse_bytes(b"[overlay]\nvni = 7\n# caf\xe9\n", "t.toml").unwrap_err();
    assert_eq!(e.diagnostics.len(), 1);
    assert_eq!(
        e.to_string(),
        "t.toml:3:6: byte 0xE9 is not valid UTF-8: a topology file must be UTF-8 text"
    );
    // Columns count characters: "é" before the bad byte is one.
    let e = parse_bytes(
        "# é"
            .as_bytes()
            .iter()
            .chain(b"\xff\n")
            .copied()
            .collect::<Vec<_>>()
            .as_slice(),
        "t.toml",
    )
    .unwrap_err();
    assert_eq!((e.diagnostics[0].line, e.diagnostics[0].col), (1, 4));
    // A sequence cut off by the end of the file.
    let e = parse_bytes(b"[overlay]\nvni = 7 # \xe2\x82", "t.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:2:11: bytes 0xE2 0x82 are an incomplete UTF-8 sequence at the end of the file: a topology file must be UTF-8 text"
    );
    // Through `load` too.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, b"[overlay]\nvni = \xc0\x80\n").unwrap();
    let e = load(&path).unwrap_err();
    let d = &e.diagnostics[0];
    assert_eq!((d.line, d.col), (2, 7));
    assert!(d.message.starts_with("byte 0xC0 is not valid UTF-8"), "{d}");
    // Valid UTF-8 goes on to the parser.
    assert!(parse_bytes(format!("{BASE}b = \"h2\"\ncost = 1\n").as_bytes(), "t.toml").is_ok());
}

/// `[store]`: defaults, and each bad field named with its line.
#[test]
fn store_table_defaults_and_errors() {
    let one = "[overlay]\nvni = 7\n[[hosts]]\nname = \"h1\"\nunderlay = \"198.18.0.1\"\n";
    let t = ok(&format!(
        "{one}[store]\nendpoints = [\"http://198.18.0.10:2379\"]\n"
    ));
    let s = t.store.expect("store");
    assert_eq!(s.layout, StoreLayout::Vxrouter);
    assert_eq!(s.prefix, DEFAULT_STORE_PREFIX);
    assert_eq!((s.lease_ttl_s, s.connect_timeout_ms), (10, 5000));
    assert!(t.hosts[0].subnets.is_empty());
    let f = ok(&format!(
        "{one}[store]\nendpoints = [\"https://e1:2379\"]\nlayout = \"flannel\"\nca_file = \"/etc/ca.pem\"\n"
    ));
    assert_eq!(f.store.unwrap().prefix, DEFAULT_FLANNEL_PREFIX);
    let at =
        |extra: &str| format!("{one}[store]\nendpoints = [\"http://198.18.0.10:2379\"]\n{extra}\n");
    // Lines: 6 [store], 7 endpoints, 8 the extra field.
    expect(
        &format!("{one}[store]\nendpoints = [\"198.18.0.10:2379\"]\n"),
        7,
        "store.endpoints[0]",
        "expected http://HOST:PORT",
    );
    expect(
        &format!("{one}[store]\nendpoints = [\"http://e1:0\"]\n"),
        7,
        "store.endpoints[0]",
        "port in 1..=65535",
    );
    expect(
        &format!("{one}[store]\nendpoints = []\n"),
        7,
        "store.endpoints",
        "at least one",
    );
    expect(
        &format!("{one}[store]\nprefix = \"/x\"\n"),
        6,
        "store.endpoints",
        "missing field",
    );
    expect(
        &at("layout = \"calico\""),
        8,
        "store.layout",
        "expected \"vxrouter\" or \"flannel\"",
    );
    expect(
        &at("prefix = \"x/\""),
        8,
        "store.prefix",
        "starting with '/'",
    );
    expect(
        &at("lease_ttl_s = 1"),
        8,
        "store.lease_ttl_s",
        "out of range",
    );
    expect(
        &at("network = \"198.19.1.0/16\""),
        8,
        "store.network",
        "host bits",
    );
    expect(
        &at("network = \"198.19.0.0/16\"\nsubnet_len = 8"),
        9,
        "store.subnet_len",
        "does not fit",
    );
    expect(
        &at("layout = \"flannel\"\nnetwork = \"198.19.0.0/16\""),
        9,
        "store.network",
        "reads Network",
    );
    expect(&at("ca_file = \"ca.pem\""), 8, "store.ca_file", "relative");
    expect(
        &at("ca_file = \"/ca.pem\""),
        6,
        "store.endpoints",
        "use https://",
    );
    expect(
        &at("username = \"u\""),
        6,
        "store.username",
        "password_file",
    );
    expect(
        &at("cert_file = \"/c.pem\""),
        6,
        "store.cert_file",
        "key_file",
    );
    expect(
        &at("endpoint = \"x\""),
        8,
        "store.endpoint",
        "unknown field",
    );
}

/// A network's lease range: taken with its default length, each bad value
/// named with its field and line, held to the default range's checks, and
/// refused without a `[store]` in the vxrouter layout.
#[test]
fn network_lease_ranges_and_their_errors() {
    let one = "[overlay]\nvni = 7\n[[hosts]]\nname = \"h1\"\nunderlay = \"198.18.0.1\"\n";
    let store = "[store]\nendpoints = [\"http://198.18.0.10:2379\"]\nnetwork = \"198.19.0.0/16\"\n";
    // Lines 1-5 the host, 6-8 the store, 9 [[networks]], 10 name, 11 vni,
    // 12 on: `extra`.
    let net = |store: &str, extra: &str| {
        format!("{one}{store}[[networks]]\nname = \"blue\"\nvni = 43\n{extra}\n")
    };
    let t = ok(&net(store, "lease_network = \"198.19.0.0/16\""));
    let blue = &t.networks[1];
    assert_eq!(
        blue.lease,
        Some(LeaseRange {
            network: "198.19.0.0/16".parse().unwrap(),
            subnet_len: 24
        })
    );
    assert_eq!(t.networks[0].lease, None);
    assert_eq!(
        t.store.as_ref().unwrap().lease_range(),
        blue.lease,
        "the same range as the default network's: fine"
    );
    let t = ok(&net(
        store,
        "lease_network = \"2001:2:1::/48\"\nlease_subnet_len = 56",
    ));
    assert_eq!(t.networks[1].lease.unwrap().subnet_len, 56);
    assert!(t.networks[1]
        .lease
        .unwrap()
        .holds("2001:2:1:ff00::/56".parse().unwrap()));
    assert!(!t.networks[1]
        .lease
        .unwrap()
        .holds("2001:2:1:ff00::/64".parse().unwrap()));
    let at = |extra: &str| net(store, extra);
    expect(
        &at("lease_network = \"198.19.1.0/16\""),
        12,
        "networks[0].lease_network",
        "host bits",
    );
    expect(
        &at("lease_network = \"198.19.0.0/16\"\nlease_subnet_len = 16"),
        13,
        "networks[0].lease_subnet_len",
        "expected 17..=32",
    );
    expect(
        &at("lease_network = \"198.19.0.0/16\"\nlease_subnet_len = \"24\""),
        13,
        "networks[0].lease_subnet_len",
        "prefix length",
    );
    expect(
        &at("lease_network = \"198.19.1.0/24\""),
        12,
        "networks[0].lease_network",
        "default length /24: set lease_subnet_len",
    );
    expect(
        &at("lease_subnet_len = 24"),
        12,
        "networks[0].lease_subnet_len",
        "set lease_network too",
    );
    expect(
        &at("lease_network = \"127.0.0.0/8\""),
        12,
        "networks[0].lease_network",
        "lies in 127.0.0.0/8",
    );
    expect(
        &at("lease_network = \"192.0.0.0/2\""),
        12,
        "networks[0].lease_network",
        "covers 224.0.0.0/4",
    );
    expect(
        &at("lease_network = \"198.18.0.0/16\""),
        12,
        "networks[0].lease_network",
        "holds 198.18.0.1, the underlay address of host \"h1\" (line 5)",
    );
    expect(
        &net("", "lease_network = \"198.19.0.0/16\""),
        9,
        "networks[0].lease_network",
        "needs a [store]",
    );
    expect(
        &net(
            "[store]\nendpoints = [\"http://198.18.0.10:2379\"]\nlayout = \"flannel\"\n",
            "lease_network = \"198.19.0.0/16\"",
        ),
        12,
        "networks[0].lease_network",
        "the flannel layout is single-network",
    );
    // The default network's range is held to the same checks.
    let default = |range: &str| {
        format!("{one}[store]\nendpoints = [\"http://198.18.0.10:2379\"]\nnetwork = \"{range}\"\n")
    };
    expect(
        &default("198.18.0.0/16"),
        8,
        "store.network",
        "underlay address",
    );
    expect(
        &default("169.254.0.0/16"),
        8,
        "store.network",
        "169.254.0.0/16",
    );
    expect(
        &default("198.19.0.0/24"),
        8,
        "store.network",
        "set subnet_len",
    );
}

/// Two networks beside the default one. `blue` reuses the default network's
/// addresses on both hosts; `green` has subnets on h2 only.
const NETWORKS: &str = r#"
[[networks]]
name = "blue"
vni = 43
mtu = 1400
[networks.subnets]
h1 = ["198.19.1.0/24"]
h2 = ["198.19.2.0/24", "2001:2:0:2::/64"]

[[networks]]
name = "green"
vni = 44
subnets = { h2 = ["198.19.9.0/24"] }
"#;

#[test]
fn networks_have_their_own_vni_mtu_and_address_space() {
    let t = ok(&with(&format!(
        "{NETWORKS}[[hosts.ports]]\nname = \"b1\"\nkind = \"tun\"\nnetwork = \"blue\"\naddresses = [\"198.19.2.5/32\", \"2001:2:0:2::5/128\"]\n\
         [[hosts.ports]]\nname = \"d1\"\nkind = \"tun\"\naddresses = [\"198.19.2.5/32\"]\n"
    )));
    let names: Vec<(&str, u32, Option<u16>)> = t
        .networks
        .iter()
        .map(|n| (n.name.as_str(), n.vni, n.mtu))
        .collect();
    assert_eq!(
        names,
        [
            ("default", 7, None),
            ("blue", 43, Some(1400)),
            ("green", 44, None)
        ]
    );
    let h2 = &t.hosts[1];
    let blue: Vec<String> = h2.subnets_in(1).map(|s| s.to_string()).collect();
    assert_eq!(blue, ["198.19.2.0/24", "2001:2:0:2::/64"]);
    let green: Vec<String> = h2.subnets_in(2).map(|s| s.to_string()).collect();
    assert_eq!(green, ["198.19.9.0/24"]);
    assert_eq!(t.hosts[0].subnets_in(2).count(), 0);
    // The same address in two networks of one host: two ports, each with
    // the gateway of its own network.
    let (b1, d1) = (&h2.ports[0], &h2.ports[1]);
    assert_eq!(
        (b1.network.as_str(), d1.network.as_str()),
        ("blue", "default")
    );
    assert_eq!(
        b1.gateways,
        [
            "198.19.2.1".parse::<IpAddr>().unwrap(),
            "2001:2:0:2::1".parse().unwrap()
        ]
    );
    assert_eq!(t.port_mtu(1, 0), 1400);
    assert_eq!(t.port_mtu(1, 1), 1450);
    assert_eq!(t.network_mtu(2, 1), 1450);
    assert_eq!(t.network_by_vni(44), Some(2));
    assert_eq!(t.network_index("blue"), Some(1));
}

#[test]
fn a_file_without_networks_is_one_default_network() {
    let t = ok(&with(""));
    assert_eq!(t.networks.len(), 1);
    assert_eq!(
        (t.networks[0].name.as_str(), t.networks[0].vni),
        ("default", 7)
    );
    assert!(t.hosts.iter().all(|h| h.net_subnets.is_empty()));
}

#[test]
fn network_errors_name_their_field() {
    // Lines: BASE is 1-12, `with` adds 13-14, NETWORKS is 15-27.
    let dup_vni = NETWORKS.replace("vni = 44", "vni = 43");
    expect(
        &with(&dup_vni),
        26,
        "networks[1].vni",
        "VNI 43 is already network \"blue\"'s, line 18",
    );
    let default_vni = NETWORKS.replace("vni = 44", "vni = 7");
    expect(
        &with(&default_vni),
        26,
        "networks[1].vni",
        "already network \"default\" ([overlay])'s",
    );
    let dup_name = NETWORKS.replace("\"green\"", "\"blue\"");
    expect(
        &with(&dup_name),
        25,
        "networks[1].name",
        "duplicate network name \"blue\" (first defined on line 17)",
    );
    let reserved = NETWORKS.replace("\"green\"", "\"default\"");
    expect(
        &with(&reserved),
        25,
        "networks[1].name",
        "is the network [overlay] describes",
    );
    let bad_name = NETWORKS.replace("\"green\"", "\"gr een\"");
    expect(
        &with(&bad_name),
        25,
        "networks[1].name",
        "may hold only letters",
    );
    let unknown_host = NETWORKS.replace("h2 = [\"198.19.9", "h9 = [\"198.19.9");
    expect(
        &with(&unknown_host),
        27,
        "networks[1].subnets",
        "unknown host \"h9\"",
    );
    let missing_vni = NETWORKS.replace("vni = 44\n", "");
    expect(&with(&missing_vni), 24, "networks[1].vni", "missing field");
    let bad_field = NETWORKS.replace("vni = 44", "vni = 44\ncolour = 1");
    expect(&with(&bad_field), 27, "networks[1].colour", "unknown field");
    // Within one network subnets may not overlap; across networks they may.
    let overlap = NETWORKS.replace(
        "h2 = [\"198.19.9.0/24\"]",
        "h2 = [\"198.19.9.0/24\", \"198.19.9.128/25\"]",
    );
    expect(
        &with(&overlap),
        27,
        "networks[1].subnets.h2[1]",
        "overlaps another subnet of this host",
    );
    let cross = NETWORKS.replace("h1 = [\"198.19.1.0/24\"]", "h1 = [\"198.19.2.0/25\"]");
    expect(
        &with(&cross),
        22,
        "networks[0].subnets.h2[0]",
        "overlaps a subnet of host \"h1\"",
    );
    // No network's subnet may hold an underlay address.
    let underlay = NETWORKS.replace("198.19.9.0/24", "198.18.0.0/24");
    expect(
        &with(&underlay),
        27,
        "networks[1].subnets.h2[0]",
        "covers 198.18.0.1",
    );
    let special = NETWORKS.replace("198.19.9.0/24", "127.0.0.0/8");
    expect(
        &with(&special),
        27,
        "networks[1].subnets.h2[0]",
        "is not a prefix containers may use",
    );
    let v6_mtu = NETWORKS.replace("mtu = 1400", "mtu = 1200");
    expect(&with(&v6_mtu), 19, "networks[0].mtu", "below 1280");
    let big_mtu = NETWORKS.replace("mtu = 1400", "mtu = 1900");
    expect(&with(&big_mtu), 19, "networks[0].mtu", "too large");
}

#[test]
fn ports_join_existing_networks_within_their_subnets() {
    let port = |net: &str, addr: &str| {
        with(&format!(
            "{NETWORKS}[[hosts.ports]]\nname = \"p\"\nkind = \"tun\"\nnetwork = \"{net}\"\naddresses = [\"{addr}\"]\n"
        ))
    };
    ok(&port("green", "198.19.9.3/32"));
    ok(&port("default", "198.19.2.3/32"));
    expect(
        &port("red", "198.19.9.3/32"),
        31,
        "hosts[1].ports[0].network",
        "unknown network \"red\"; the networks are \"default\", \"blue\", \"green\"",
    );
    // 198.19.9.3 is green's, not blue's.
    expect(
        &port("blue", "198.19.9.3/32"),
        32,
        "hosts[1].ports[0].addresses[0]",
        "outside the host's subnets in network \"blue\" (198.19.2.0/24, 2001:2:0:2::/64)",
    );
    // A gateway in another host's subnet counts only within the network.
    let gw = |net: &str| {
        with(&format!(
            "{NETWORKS}[[hosts.ports]]\nname = \"p\"\nkind = \"tun\"\nnetwork = \"{net}\"\naddresses = [\"198.19.2.3/32\"]\ngateway = \"198.19.1.1\"\n"
        ))
    };
    expect(
        &gw("blue"),
        33,
        "hosts[1].ports[0].gateway",
        "lies inside subnet 198.19.1.0/24 of host \"h1\"",
    );
    let green_gw = NETWORKS.replace("h2 = [\"198.19.9.0/24\"]", "h2 = [\"198.19.2.0/24\"]");
    ok(&with(&format!(
        "{green_gw}[[hosts.ports]]\nname = \"p\"\nkind = \"tun\"\nnetwork = \"green\"\naddresses = [\"198.19.2.3/32\"]\ngateway = \"198.19.1.1\"\n"
    )));
}
