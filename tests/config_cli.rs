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
