//! `vxrouter check` end to end: the built binary on good and bad files.

use std::io::Write;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vxrouter"))
        .args(args)
        .output()
        .expect("run vxrouter")
}

fn write(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn shipped_configs_pass() {
    for name in ["demo-2hosts", "line-3hosts", "ecmp-4hosts", "ipv6-underlay"] {
        let path = format!("{}/configs/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        let o = run(&["check", "--config", &path]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains(": ok: vni "), "{out}");
    }
}

#[test]
fn every_error_is_reported_with_file_line_and_field() {
    let f = write(
        r#"[overlay]
vni = 16777216

[[hosts]]
name = "h1"
underlay = "198.18.0.1"
subnets = ["198.19.1.0/24"]
  [[hosts.ports]]
  name = "c1"
  kind = "tun"
  addresses = ["198.19.9.2/32"]

[[hosts]]
name = "h2"
underlay = "198.18.0.2"
subnets = ["198.19.1.128/25"]
colour = "blue"

[[links]]
a = "h1"
b = "h3"
cost = -4
"#,
    );
    let path = f.path().to_str().unwrap();
    let o = run(&["check", "--config", path]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    let want = [
        format!("{path}:2:7: overlay.vni: "),
        format!("{path}:11:16: hosts[0].ports[0].addresses[0]: 198.19.9.2/32 is outside"),
        format!("{path}:16:12: hosts[1].subnets[0]: 198.19.1.128/25 overlaps"),
        format!("{path}:17:1: hosts[1].colour: unknown field"),
        format!("{path}:21:5: links[0].b: unknown host \"h3\""),
        format!("{path}:22:8: links[0].cost: "),
    ];
    assert_eq!(lines.len(), want.len() + 1, "{err}");
    for (line, w) in lines.iter().zip(&want) {
        assert!(line.starts_with(w.as_str()), "wanted {w}..., got {line}");
    }
    assert!(lines[want.len()].contains("6 errors"), "{err}");
}

#[test]
fn syntax_error_names_the_line() {
    let f = write("[overlay]\nvni = 1\n[[hosts]\nname = \"x\"\n");
    let path = f.path().to_str().unwrap();
    let o = run(&["check", "--config", path]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!("{path}:3:")),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains(": syntax: "));
}

#[test]
fn missing_file_and_bad_usage_fail() {
    let o = run(&["check", "--config", "/nonexistent/x.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("/nonexistent/x.toml: cannot read topology file"));
    let o = run(&["check"]);
    assert!(!o.status.success());
    let o = run(&["frobnicate"]);
    assert!(!o.status.success());
}

fn write_bytes(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f
}

/// What a topology may say: addresses that cannot be a VTEP, subnets on
/// special blocks or over an underlay, gateways that would be black holes,
/// names that are no names, MTUs whose VXLAN frame does not fit. Each is
/// reported with file, line, column and field, all in one run.
#[test]
fn unsound_topologies_are_refused_with_their_positions() {
    let f = write(
        r#"[overlay]
vni = 1
mtu = 1840

[[hosts]]
name = "h1"
underlay = "2001:2::1"
subnets = ["198.19.1.0/24"]
  [[hosts.ports]]
  name = "c1"
  kind = "veth"
  netns = "ctr\u0000"
  addresses = ["198.19.1.2/32"]
  gateway = "198.19.2.1"

[[hosts]]
name = "h2"
underlay = "127.0.0.2"
subnets = ["198.19.2.0/24", "2001:2::/64"]

[[hosts]]
name = "h3"
underlay = "::ffff:198.18.0.4"
subnets = ["240.0.0.0/8"]

[[hosts]]
name = "h4"
underlay = "198.18.0.4"
nic = "eth\u001b"
  [[hosts.ports]]
  name = "c1"
  kind = "tun"
  addresses = ["198.19.9.2"]
  gateway = "127.0.0.1"
"#,
    );
    let path = f.path().to_str().unwrap();
    let o = run(&["check", "--config", path]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let want = [
        format!("{path}:3:7: overlay.mtu: 1840 is too large: over the IPv6 underlay of host \"h1\""),
        format!("{path}:12:11: hosts[0].ports[0].netns: \"ctr\\0\" is not a valid network namespace name: it contains the control character U+0000"),
        format!("{path}:14:13: hosts[0].ports[0].gateway: gateway 198.19.2.1 lies inside subnet 198.19.2.0/24 of host \"h2\" (line 19)"),
        format!("{path}:18:12: hosts[1].underlay: 127.0.0.2 is a loopback address"),
        format!("{path}:19:29: hosts[1].subnets[1]: 2001:2::/64 covers 2001:2::1, the underlay address of host \"h1\" (line 7)"),
        format!("{path}:23:12: hosts[2].underlay: ::ffff:198.18.0.4 is an IPv4-mapped IPv6 address: it repeats the underlay 198.18.0.4 of host \"h4\" (line 28)"),
        format!("{path}:24:12: hosts[2].subnets[0]: 240.0.0.0/8 is not a prefix containers may use: it lies in 240.0.0.0/4 (reserved)"),
        format!("{path}:29:7: hosts[3].nic: \"eth\\u{{1b}}\" is not a valid interface name: it contains the control character U+001B"),
        format!("{path}:33:16: hosts[3].ports[0].addresses[0]: 198.19.9.2/32 is outside the host's subnets (none)"),
        format!("{path}:34:13: hosts[3].ports[0].gateway: gateway 127.0.0.1 is a loopback address"),
    ];
    let lines: Vec<&str> = err.lines().collect();
    for w in &want {
        assert!(
            lines.iter().any(|l| l.starts_with(w.as_str())),
            "wanted {w}...; got:\n{err}"
        );
    }
    assert_eq!(lines.len(), want.len() + 1, "{err}");
    assert!(!err.chars().any(|c| c.is_control() && c != '\n'), "{err:?}");
    // The same file with every problem fixed passes.
    let fixed = r#"[overlay]
vni = 1
mtu = 1836

[[hosts]]
name = "h1"
underlay = "2001:2::1"
subnets = ["198.19.1.0/24"]
  [[hosts.ports]]
  name = "c1"
  kind = "veth"
  netns = "ctr"
  addresses = ["198.19.1.2/32"]
  gateway = "169.254.1.1"

[[hosts]]
name = "h2"
underlay = "198.18.0.2"
subnets = ["198.19.2.0/24", "2001:2:0:2::/64"]
"#;
    let f = write(fixed);
    let o = run(&["check", "--config", f.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Every error says what is wrong and where: a control character in a
/// comment (where the TOML parser's own message is empty) and bytes that
/// are not UTF-8.
#[test]
fn unreadable_text_is_named_at_its_position() {
    let f = write_bytes(b"[overlay]\nvni = 1 # tab\tok, bell \x07 not\n");
    let path = f.path().to_str().unwrap();
    let o = run(&["check", "--config", path]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!(
            "{path}:2:24: syntax: control character U+0007 is not allowed in a TOML file"
        )),
        "{}",
        stderr(&o)
    );
    let f = write_bytes(b"[overlay]\nvni = 1\n[[hosts]]\nname = \"h\xc3\x28\"\n");
    let path = f.path().to_str().unwrap();
    let o = run(&["check", "--config", path]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!(
            "{path}:4:10: byte 0xC3 is not valid UTF-8: a topology file must be UTF-8 text\n"
        )),
        "{}",
        stderr(&o)
    );
}
