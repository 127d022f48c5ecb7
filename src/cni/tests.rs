//! The plugin in memory: a fake router and a fake IPAM plugin behind
//! [`Effects`], recording what the plugin asked.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{json, Value};

use super::config::{self, IpamPlan};
use super::effects::{EnvChange, ExecError};
use super::error::{self, CniError};
use super::*;
use crate::api::client::ClientError;
use crate::api::{ApiError, Body, ErrorCode, PortCounters, PortInfo, Request, Status};
use crate::config::PortKind;

const NETNS: &str = "/var/run/netns/c1";

/// One run of a delegated plugin as the fake saw it.
#[derive(Debug, Clone)]
struct Exec {
    cmd: String,
    env: Vec<EnvChange>,
    stdin: Value,
}

/// A scripted IPAM ADD answer: its stdout, or how it fails.
type IpamAnswer = Result<Vec<u8>, fn() -> ExecError>;

/// How the fake router answers.
#[derive(Clone, Copy, PartialEq)]
enum Router {
    Up,
    Down,
    Starting,
}

struct Fake {
    router: Router,
    /// The error `attach` answers with, if any.
    attach_error: Option<fn() -> ClientError>,
    /// Attached ids.
    attached: Vec<String>,
    /// Every request, in order.
    requests: Vec<Request>,
    /// What `gc` collects.
    gc_collects: Vec<String>,
    /// Versions the IPAM plugin reports.
    ipam_versions: Vec<&'static str>,
    /// The IPAM ADD's answer, else a fixed result.
    ipam_add: Option<IpamAnswer>,
    /// Whether the IPAM plugin exists.
    ipam_present: bool,
    execs: Vec<Exec>,
    netns_alive: bool,
    logs: Vec<String>,
    ports: usize,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            router: Router::Up,
            attach_error: None,
            attached: Vec::new(),
            requests: Vec::new(),
            gc_collects: Vec::new(),
            ipam_versions: vec!["0.4.0", "1.0.0"],
            ipam_add: None,
            ipam_present: true,
            execs: Vec::new(),
            netns_alive: true,
            logs: Vec::new(),
            ports: 3,
        }
    }

    fn status() -> Status {
        Status {
            version: "0.1.0".into(),
            api: vec![1],
            host: "h1".into(),
            subnets: vec![net("198.19.7.0/24"), net("2001:2:0:7::/64")],
            gateways: vec![
                "198.19.7.1".parse().unwrap(),
                "2001:2:0:7::1".parse().unwrap(),
            ],
            mtu: 1450,
            vni: 42,
            udp_port: 4789,
            ready: true,
            ports: 3,
            max_ports: 64,
            networks: vec![
                crate::api::NetworkStatus {
                    name: "default".into(),
                    vni: 42,
                    subnets: vec![net("198.19.7.0/24"), net("2001:2:0:7::/64")],
                    gateways: vec![
                        "198.19.7.1".parse().unwrap(),
                        "2001:2:0:7::1".parse().unwrap(),
                    ],
                    mtu: 1450,
                    reserved: Vec::new(),
                },
                crate::api::NetworkStatus {
                    name: "blue".into(),
                    vni: 43,
                    subnets: vec![net("198.19.7.0/25")],
                    gateways: vec!["198.19.7.1".parse().unwrap()],
                    mtu: 1400,
                    reserved: vec!["198.19.7.5".parse().unwrap()],
                },
            ],
        }
    }

    fn port(a: &crate::api::Attach) -> PortInfo {
        PortInfo {
            id: Some(a.id.clone()),
            name: "vxa0".into(),
            kind: a.kind,
            network: a.network.clone().unwrap_or_else(|| "default".into()),
            netns: Some(a.netns.display().to_string()),
            ifname: Some(a.ifname.clone()),
            mac: Some("02:00:00:00:00:07".into()),
            addresses: a.addresses.clone(),
            gateways: Fake::status().gateways,
            mtu: 1450,
            counters: PortCounters::default(),
        }
    }

    fn requests(&self) -> Vec<&'static str> {
        self.requests
            .iter()
            .map(|r| match r {
                Request::Status {} => "status",
                Request::Ports {} => "ports",
                Request::Attach(_) => "attach",
                Request::Detach { .. } => "detach",
                Request::Check { .. } => "check",
                Request::Gc { .. } => "gc",
            })
            .collect()
    }

    fn ipam_cmds(&self) -> Vec<&str> {
        self.execs.iter().map(|e| e.cmd.as_str()).collect()
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn api_err(code: ErrorCode) -> ClientError {
    ClientError::Api(ApiError {
        code,
        message: "refused".into(),
    })
}

impl Effects for Fake {
    fn call(&mut self, _: &Path, req: &Request, _: Duration) -> Result<Body, ClientError> {
        self.requests.push(req.clone());
        match self.router {
            Router::Down => {
                return Err(ClientError::Unreachable {
                    path: "/run/vxrouter/h1.sock".into(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                })
            }
            Router::Starting => return Err(api_err(ErrorCode::NotReady)),
            Router::Up => {}
        }
        Ok(match req {
            Request::Status {} => Body::Status(Status {
                ports: self.ports,
                ..Fake::status()
            }),
            Request::Ports {} => Body::Ports(vec![]),
            Request::Attach(a) => {
                if let Some(e) = self.attach_error {
                    return Err(e());
                }
                self.attached.push(a.id.clone());
                Body::Port(Fake::port(a))
            }
            Request::Detach { id } => {
                let found = self.attached.contains(id);
                self.attached.retain(|a| a != id);
                Body::Detached { found }
            }
            Request::Check { id } => {
                if !self.attached.contains(id) {
                    return Err(api_err(ErrorCode::NotFound));
                }
                Body::Port(Fake::port(&crate::api::Attach {
                    id: id.clone(),
                    netns: NETNS.into(),
                    ifname: "eth0".into(),
                    kind: PortKind::Veth,
                    addresses: vec![net("198.19.7.2/24"), net("2001:2:0:7::2/64")],
                    offload: false,
                    network: None,
                }))
            }
            Request::Gc { .. } => Body::Collected(self.gc_collects.clone()),
        })
    }

    fn find_plugin(&self, name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
        (self.ipam_present && name == "host-local" || name == "static").then(|| dirs[0].join(name))
    }

    fn exec(&mut self, _: &Path, env: &[EnvChange], stdin: &[u8]) -> Result<Vec<u8>, ExecError> {
        let cmd = env
            .iter()
            .find(|(k, _)| *k == "CNI_COMMAND")
            .and_then(|(_, v)| v.clone())
            .unwrap_or_default();
        self.execs.push(Exec {
            cmd: cmd.clone(),
            env: env.to_vec(),
            stdin: serde_json::from_slice(stdin).unwrap_or(Value::Null),
        });
        match cmd.as_str() {
            "VERSION" => Ok(serde_json::to_vec(&json!({
                "cniVersion": "1.0.0",
                "supportedVersions": self.ipam_versions,
            }))
            .unwrap()),
            "ADD" => match &self.ipam_add {
                Some(Ok(out)) => Ok(out.clone()),
                Some(Err(e)) => Err(e()),
                None => Ok(br#"{"cniVersion":"1.0.0","ips":[{"address":"198.19.7.2/24","gateway":"198.19.7.1"},{"address":"2001:2:0:7::2/64","gateway":"2001:2:0:7::1"}],"dns":{"nameservers":["198.19.7.53"]}}"#.to_vec()),
            },
            _ => Ok(Vec::new()),
        }
    }

    fn netns_alive(&self, _: &Path) -> bool {
        self.netns_alive
    }

    fn log(&mut self, line: &str) {
        self.logs.push(line.to_string());
    }
}

fn env_for(cmd: &str) -> HashMap<String, OsString> {
    let mut env: HashMap<String, OsString> = [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", NETNS),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ("PATH", "/usr/bin"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), OsString::from(v)))
    .collect();
    if cmd == "GC" || cmd == "STATUS" || cmd == "VERSION" {
        for k in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            env.remove(k);
        }
    }
    env
}

fn conf(version: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": "vxnet",
        "type": "vxrouter-cni",
        "socket": "/run/vxrouter/h1.sock",
    })
}

fn run_with(fx: &mut Fake, cmd: &str, stdin: &Value) -> Output {
    run(&env_for(cmd), stdin.to_string().as_bytes(), fx)
}

/// The error object of a failed run.
fn error_of(out: &Output) -> Value {
    assert_ne!(out.exit, 0, "expected a failure");
    serde_json::from_slice(&out.stdout).expect("an error object")
}

fn code_of(out: &Output) -> u64 {
    error_of(out)["code"].as_u64().unwrap()
}

fn ok_json(out: &Output) -> Value {
    assert_eq!(
        out.exit,
        0,
        "failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON result")
}

// --- configuration ---------------------------------------------------------

fn parse(v: &Value) -> Result<config::NetworkConfig, CniError> {
    config::parse(v.to_string().as_bytes(), rscni_types::types::Cmd::Add)
}

#[test]
fn the_socket_comes_from_socket_or_host() {
    let c = parse(&conf("1.0.0")).unwrap();
    assert_eq!(c.socket, Path::new("/run/vxrouter/h1.sock"));
    let mut v = conf("1.0.0");
    v.as_object_mut().unwrap().remove("socket");
    v["host"] = json!("edge-2");
    assert_eq!(
        parse(&v).unwrap().socket,
        Path::new("/run/vxrouter/edge-2.sock")
    );
    for bad in [json!("../etc"), json!(""), json!(".x"), json!(3)] {
        v["host"] = bad.clone();
        assert_eq!(parse(&v).unwrap_err().code, error::INVALID_CONFIG, "{bad}");
    }
    v.as_object_mut().unwrap().remove("host");
    assert_eq!(
        parse(&v).unwrap_err().code,
        error::INVALID_CONFIG,
        "neither"
    );
    v["host"] = json!("h1");
    v["socket"] = json!("/run/x.sock");
    assert_eq!(parse(&v).unwrap_err().code, error::INVALID_CONFIG, "both");
    v.as_object_mut().unwrap().remove("host");
    v["socket"] = json!("relative.sock");
    assert_eq!(parse(&v).unwrap_err().code, error::INVALID_CONFIG);
}

#[test]
fn kind_and_offload() {
    let mut v = conf("1.1.0");
    assert_eq!(parse(&v).unwrap().kind, PortKind::Veth);
    v["kind"] = json!("tun");
    assert_eq!(parse(&v).unwrap().kind, PortKind::Tun);
    v["offload"] = json!(true);
    assert_eq!(parse(&v).unwrap_err().code, error::INVALID_CONFIG);
    v["kind"] = json!("veth");
    let c = parse(&v).unwrap();
    assert!(c.offload);
    for bad in [json!("macvlan"), json!("VETH"), json!(1)] {
        v["kind"] = bad;
        let e = parse(&v).unwrap_err();
        assert_eq!(e.code, error::INVALID_CONFIG);
        assert!(e.details.starts_with("kind:"), "{}", e.details);
    }
    v["kind"] = json!("veth");
    v["offload"] = json!("yes");
    assert_eq!(parse(&v).unwrap_err().code, error::INVALID_CONFIG);
}

#[test]
fn versions_decoding_and_shape_get_their_codes() {
    let cases: &[(&[u8], u32)] = &[
        (b"", error::DECODE),
        (b"not json", error::DECODE),
        (b"[1,2]", error::DECODE),
        (br#"{"name":"n","type":"t","socket":"/s"}"#, error::INCOMPATIBLE_VERSION),
        (br#"{"cniVersion":"0.4.0","name":"n","type":"t","socket":"/s"}"#, error::INCOMPATIBLE_VERSION),
        (br#"{"cniVersion":"2.0.0","name":"n","type":"t","socket":"/s"}"#, error::INCOMPATIBLE_VERSION),
        (br#"{"cniVersion":"one","name":"n","type":"t","socket":"/s"}"#, error::DECODE),
        (br#"{"cniVersion":1,"name":"n","type":"t","socket":"/s"}"#, error::DECODE),
        (br#"{"cniVersion":"1.0.0","name":"n","socket":"/s"}"#, error::INVALID_CONFIG),
        (br#"{"cniVersion":"1.0.0","type":"t","socket":"/s"}"#, error::INVALID_CONFIG),
        (br#"{"cniVersion":"1.0.0","name":"-n","type":"t","socket":"/s"}"#, error::INVALID_CONFIG),
        (br#"{"cniVersion":"1.0.0","name":"n/m","type":"t","socket":"/s"}"#, error::INVALID_CONFIG),
        (br#"{"cniVersion":"1.0.0","name":"n","type":"t","socket":"/s","ipam":{}}"#, error::INVALID_CONFIG),
        (br#"{"cniVersion":"1.0.0","name":"n","type":"t","socket":"/s","ipam":{"type":"../x"}}"#, error::INVALID_CONFIG),
        (br#"{"cniVersion":"1.0.0","name":"n","type":"t","socket":"/s","ipam":[]}"#, error::INVALID_CONFIG),
        (br#"{"cniVersion":"1.0.0","name":"n","type":"t","socket":"/s","dns":{"nameservers":"x"}}"#, error::INVALID_CONFIG),
    ];
    for (stdin, code) in cases {
        let got = config::parse(stdin, rscni_types::types::Cmd::Add).map(|_| ());
        assert_eq!(
            got.map_err(|e| e.code),
            Err(*code),
            "{}",
            String::from_utf8_lossy(stdin)
        );
    }
    // GC and STATUS exist from 1.1.0 on.
    let stdin = conf("1.0.0").to_string();
    for cmd in [rscni_types::types::Cmd::Gc, rscni_types::types::Cmd::Status] {
        let e = config::parse(stdin.as_bytes(), cmd).unwrap_err();
        assert_eq!(e.code, error::INCOMPATIBLE_VERSION);
    }
}

#[test]
fn ipam_plans() {
    let mut v = conf("1.0.0");
    let plan = parse(&v).unwrap().ipam;
    assert_eq!(
        plan,
        IpamPlan::HostLocal(json!({"type":"host-local"}).as_object().unwrap().clone())
    );
    v["ipam"] = json!({"type":"host-local","dataDir":"/tmp/d"});
    let IpamPlan::HostLocal(base) = parse(&v).unwrap().ipam else {
        panic!("host-local without ranges takes the router's")
    };
    assert_eq!(base["dataDir"], "/tmp/d");
    v["ipam"] = json!({"type":"host-local","subnet":"198.19.9.0/24"});
    assert_eq!(
        parse(&v).unwrap().ipam,
        IpamPlan::Delegate("host-local".into())
    );
    v["ipam"] = json!({"type":"host-local","ranges":[[{"subnet":"198.19.9.0/24"}]]});
    assert_eq!(
        parse(&v).unwrap().ipam,
        IpamPlan::Delegate("host-local".into())
    );
    v["ipam"] = json!({"type":"dhcp"});
    assert_eq!(parse(&v).unwrap().ipam, IpamPlan::Delegate("dhcp".into()));
}

#[test]
fn host_local_ranges_leave_out_what_ports_hold() {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let r = config::host_local_ranges_excluding(
        &[
            net("198.19.7.0/29"),
            net("2001:2:0:7::/126"),
            net("198.19.8.0/31"),
        ],
        &[],
        &[
            ip("198.19.7.1"),
            ip("198.19.7.6"),
            ip("198.19.7.3"),
            ip("198.19.7.3"),
            ip("198.19.9.9"),
            ip("2001:2:0:7::2"),
            ip("198.19.8.1"),
        ],
    );
    assert_eq!(
        r,
        json!([
            [
                {"subnet":"198.19.7.0/29","rangeStart":"198.19.7.2","rangeEnd":"198.19.7.2"},
                {"subnet":"198.19.7.0/29","rangeStart":"198.19.7.4","rangeEnd":"198.19.7.5"},
                {"subnet":"198.19.8.0/31"}
            ],
            [
                {"subnet":"2001:2:0:7::/126","rangeStart":"2001:2:0:7::1","rangeEnd":"2001:2:0:7::1"},
                {"subnet":"2001:2:0:7::/126","rangeStart":"2001:2:0:7::3","rangeEnd":"2001:2:0:7::3"}
            ]
        ])
    );
    // Nothing reserved inside: the subnet whole, as before.
    assert_eq!(
        config::host_local_ranges_excluding(&[net("198.19.7.0/24")], &[], &[ip("198.19.9.1")]),
        json!([[{"subnet":"198.19.7.0/24"}]])
    );
}

#[test]
fn host_local_ranges_are_one_set_per_family_with_the_routers_gateways() {
    let r = config::host_local_ranges(
        &[
            net("198.19.7.0/24"),
            net("2001:2:0:7::/64"),
            net("198.19.8.9/24"),
        ],
        &[
            "198.19.7.1".parse().unwrap(),
            "2001:2:0:7::1".parse().unwrap(),
        ],
    );
    assert_eq!(
        r,
        json!([
            [{"subnet":"198.19.7.0/24","gateway":"198.19.7.1"},{"subnet":"198.19.8.0/24"}],
            [{"subnet":"2001:2:0:7::/64","gateway":"2001:2:0:7::1"}],
        ])
    );
    assert_eq!(config::host_local_ranges(&[], &[]), json!([]));
}

#[test]
fn the_error_version_is_the_declared_one_when_spoken() {
    assert_eq!(
        config::declared_version(br#"{"cniVersion":"1.0.0"}"#).to_string(),
        "1.0.0"
    );
    assert_eq!(
        config::declared_version(br#"{"cniVersion":"0.3.1"}"#).to_string(),
        "1.1.0"
    );
    assert_eq!(config::declared_version(b"junk").to_string(), "1.1.0");
}

// --- environment -----------------------------------------------------------

#[test]
fn missing_or_bad_variables_are_error_4_naming_them() {
    let mut fx = Fake::new();
    for (cmd, drop, name) in [
        ("ADD", "CNI_COMMAND", "CNI_COMMAND"),
        ("ADD", "CNI_CONTAINERID", "CNI_CONTAINERID"),
        ("ADD", "CNI_NETNS", "CNI_NETNS"),
        ("ADD", "CNI_IFNAME", "CNI_IFNAME"),
        ("ADD", "CNI_PATH", "CNI_PATH"),
        ("CHECK", "CNI_NETNS", "CNI_NETNS"),
        ("DEL", "CNI_CONTAINERID", "CNI_CONTAINERID"),
        ("GC", "CNI_PATH", "CNI_PATH"),
    ] {
        let mut env = env_for(cmd);
        env.remove(drop);
        let out = run(&env, conf("1.1.0").to_string().as_bytes(), &mut fx);
        let e = error_of(&out);
        assert_eq!(e["code"], 4, "{cmd} without {drop}");
        assert!(e["details"].as_str().unwrap().contains(name), "{e}");
    }
    for (var, value) in [
        ("CNI_COMMAND", "ATTACH"),
        ("CNI_CONTAINERID", "-c1"),
        ("CNI_CONTAINERID", "c 1"),
        ("CNI_IFNAME", "a/b"),
        ("CNI_IFNAME", "sixteen-bytes-xx"),
        ("CNI_NETNS", "relative/ns"),
        ("CNI_PATH", ":::"),
    ] {
        let mut env = env_for("ADD");
        env.insert(var.into(), value.into());
        let out = run(&env, conf("1.1.0").to_string().as_bytes(), &mut fx);
        assert_eq!(code_of(&out), 4, "{var}={value}");
    }
    assert!(fx.requests.is_empty() && fx.execs.is_empty());
}

#[test]
fn del_needs_no_netns() {
    let mut env = env_for("DEL");
    env.remove("CNI_NETNS");
    let inv = env::parse(&env).unwrap();
    assert_eq!(inv.attachment.unwrap().netns, None);
}

// --- results ---------------------------------------------------------------

fn some_port() -> PortInfo {
    Fake::port(&crate::api::Attach {
        id: "vxnet/c1/eth0".into(),
        netns: NETNS.into(),
        ifname: "eth0".into(),
        kind: PortKind::Veth,
        addresses: vec![net("198.19.7.2/24"), net("2001:2:0:7::2/64")],
        offload: false,
        network: None,
    })
}

#[test]
fn a_result_reports_the_routers_port() {
    let port = some_port();
    let r = result::added(None, "eth0", Path::new(NETNS), &port, &port.addresses, None);
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({
            "interfaces": [{"name":"eth0","mac":"02:00:00:00:00:07","mtu":1450,"sandbox":NETNS}],
            "ips": [
                {"interface":0,"address":"198.19.7.2/24","gateway":"198.19.7.1"},
                {"interface":0,"address":"2001:2:0:7::2/64","gateway":"2001:2:0:7::1"},
            ],
            "routes": [
                {"dst":"0.0.0.0/0","gw":"198.19.7.1"},
                {"dst":"::/0","gw":"2001:2:0:7::1"},
            ],
        })
    );
    // A v4-only container gets no v6 route.
    let r = result::added(
        None,
        "eth0",
        Path::new(NETNS),
        &port,
        &port.addresses[..1],
        None,
    );
    assert_eq!(r.routes.len(), 1);
}

#[test]
fn a_chained_result_extends_prev_result() {
    let prev: rscni_types::types::CNIResult = serde_json::from_value(json!({
        "interfaces": [{"name":"lo0","sandbox":NETNS}],
        "ips": [{"interface":0,"address":"198.18.9.9/32"}],
        "routes": [{"dst":"0.0.0.0/0","gw":"198.19.7.1"}],
        "dns": {"nameservers":["198.18.0.53"]},
    }))
    .unwrap();
    let port = some_port();
    let dns = rscni_types::types::Dns {
        nameservers: vec!["198.19.7.53".into()],
        ..Default::default()
    };
    let r = result::added(
        Some(&prev),
        "eth0",
        Path::new(NETNS),
        &port,
        &port.addresses,
        Some(dns),
    );
    assert_eq!(r.interfaces.len(), 2);
    assert_eq!(r.interfaces[0], prev.interfaces[0]);
    assert_eq!(r.ips[0], prev.ips[0]);
    assert!(r.ips[1..].iter().all(|ip| ip.interface == Some(1)));
    assert_eq!(r.routes.len(), 2, "the same default route is not repeated");
    assert_eq!(r.dns, prev.dns, "an earlier dns stays");
    // CHECK finds our addresses in it.
    assert_eq!(
        result::ours_in(&r, "eth0", Path::new(NETNS)).unwrap(),
        port.addresses
    );
}

#[test]
fn check_compares_addresses_mac_and_place() {
    let port = some_port();
    let mut rev = port.addresses.clone();
    rev.reverse();
    assert!(result::compare(&rev, Some("02:00:00:00:00:07"), &port).is_ok());
    assert!(result::compare(
        &rev,
        Some("02:00:00:00:00:07".to_uppercase().as_str()),
        &port
    )
    .is_ok());
    let e = result::compare(&rev[..1], None, &port).unwrap_err();
    assert_eq!(e.code, error::MISMATCH);
    let e = result::compare(&rev, Some("02:00:00:00:00:08"), &port).unwrap_err();
    assert_eq!(e.code, error::MISMATCH);
    let prev = rscni_types::types::CNIResult::default();
    let e = result::ours_in(&prev, "eth0", Path::new(NETNS)).unwrap_err();
    assert_eq!(e.code, error::MISMATCH);
}

#[test]
fn router_errors_map_to_the_documented_codes() {
    let cases = [
        (ErrorCode::NotReady, 11),
        (ErrorCode::Invalid, 7),
        (ErrorCode::Exists, 100),
        (ErrorCode::NotFound, 101),
        (ErrorCode::Mismatch, 102),
        (ErrorCode::Full, 103),
        (ErrorCode::Internal, 104),
        (ErrorCode::BadRequest, 105),
        (ErrorCode::UnsupportedVersion, 105),
        (ErrorCode::TooLarge, 105),
    ];
    for (code, want) in cases {
        assert_eq!(error::from_router("x", &api_err(code)).code, want, "{code}");
    }
    let unreachable = ClientError::Unreachable {
        path: "/s".into(),
        source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    };
    assert_eq!(error::from_router("x", &unreachable).code, 11);
    let broken = ClientError::Protocol {
        path: "/s".into(),
        message: "timed out".into(),
    };
    assert_eq!(error::from_router("x", &broken).code, 11);
}

#[test]
fn errors_print_as_the_specs_object() {
    let e = CniError::config("kind: \"x\"");
    let v: Value = serde_json::from_slice(&e.to_json(config::CURRENT)).unwrap();
    assert_eq!(
        v,
        json!({"cniVersion":"1.1.0","code":7,"msg":"Invalid network config","details":"kind: \"x\""})
    );
    let back = CniError::from_plugin_output(br#"{"code":3,"msg":"missing containerID"}"#).unwrap();
    assert_eq!((back.code, back.details.as_str()), (3, ""));
    assert!(CniError::from_plugin_output(b"panic: oops").is_none());
}

// --- operations --------------------------------------------------------------

#[test]
fn version_answers_without_reading_stdin() {
    let mut fx = Fake::new();
    let out = run(&env_for("VERSION"), b"garbage", &mut fx);
    assert_eq!(
        ok_json(&out),
        json!({"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]})
    );
}

#[test]
fn add_asks_status_ipam_and_attach() {
    let mut fx = Fake::new();
    let out = run_with(&mut fx, "ADD", &conf("1.0.0"));
    let r = ok_json(&out);
    assert_eq!(fx.requests(), ["status", "attach"]);
    assert_eq!(
        fx.ipam_cmds(),
        ["ADD"],
        "a 1.0.0 config needs no VERSION probe"
    );
    let Request::Attach(a) = &fx.requests[1] else {
        unreachable!()
    };
    assert_eq!(a.id, "vxnet/c1/eth0");
    assert_eq!(a.netns, Path::new(NETNS));
    assert_eq!(a.kind, PortKind::Veth);
    assert_eq!(a.addresses, [net("198.19.7.2/24"), net("2001:2:0:7::2/64")]);
    // host-local got the router's subnets with their gateways.
    let ipam_in = &fx.execs[0].stdin;
    assert_eq!(
        ipam_in["ipam"]["ranges"],
        json!([[{"subnet":"198.19.7.0/24","gateway":"198.19.7.1"}],[{"subnet":"2001:2:0:7::/64","gateway":"2001:2:0:7::1"}]])
    );
    assert_eq!(ipam_in["name"], "vxnet");
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["interfaces"][0]["sandbox"], NETNS);
    assert_eq!(r["ips"][1]["interface"], 0);
    assert_eq!(r["dns"]["nameservers"][0], "198.19.7.53", "IPAM's dns");
}

#[test]
fn add_joins_the_configured_network_with_its_ranges() {
    let mut fx = Fake::new();
    let mut c = conf("1.0.0");
    c["network"] = json!("blue");
    let _ = ok_json(&run_with(&mut fx, "ADD", &c));
    let Request::Attach(a) = &fx.requests[1] else {
        unreachable!()
    };
    assert_eq!(a.network.as_deref(), Some("blue"));
    assert_eq!(
        fx.execs[0].stdin["ipam"]["ranges"],
        json!([[
            {"subnet":"198.19.7.0/25","gateway":"198.19.7.1","rangeStart":"198.19.7.1","rangeEnd":"198.19.7.4"},
            {"subnet":"198.19.7.0/25","gateway":"198.19.7.1","rangeStart":"198.19.7.6","rangeEnd":"198.19.7.126"}
        ]]),
        "198.19.7.5, a port's, is left out"
    );
    // A network the router does not have: error 7 before any allocation.
    let mut fx = Fake::new();
    c["network"] = json!("red");
    let out = run_with(&mut fx, "ADD", &c);
    assert_eq!(code_of(&out), 7);
    assert!(
        error_of(&out)["details"]
            .as_str()
            .unwrap()
            .contains("no network \"red\" (it has default, blue)"),
        "{}",
        error_of(&out)
    );
    assert!(fx.execs.is_empty());
    // Not a name.
    c["network"] = json!("a b");
    assert!(parse(&c).is_err());
    c["network"] = json!(7);
    assert!(parse(&c).is_err());
}

#[test]
fn add_at_1_1_speaks_1_0_to_an_ipam_plugin_that_stops_there() {
    let mut fx = Fake::new();
    let mut v = conf("1.1.0");
    v["dns"] = json!({"nameservers":["198.18.0.53"]});
    let r = ok_json(&run_with(&mut fx, "ADD", &v));
    assert_eq!(fx.ipam_cmds(), ["VERSION", "ADD"]);
    assert_eq!(fx.execs[1].stdin["cniVersion"], "1.0.0");
    assert_eq!(r["cniVersion"], "1.1.0");
    assert_eq!(
        r["dns"]["nameservers"][0], "198.18.0.53",
        "the config's dns"
    );
    fx.ipam_versions = vec!["1.0.0", "1.1.0"];
    fx.execs.clear();
    fx.attached.clear();
    ok_json(&run_with(&mut fx, "ADD", &v));
    assert_eq!(fx.execs[1].stdin["cniVersion"], "1.1.0");
}

#[test]
fn add_with_a_user_ipam_runs_it_as_given() {
    let mut fx = Fake::new();
    let mut v = conf("1.0.0");
    v["ipam"] = json!({"type":"static","addresses":[{"address":"198.19.7.9/24"}]});
    fx.ipam_add = Some(Ok(
        br#"{"cniVersion":"1.0.0","ips":[{"address":"198.19.7.9/24"}]}"#.to_vec(),
    ));
    ok_json(&run_with(&mut fx, "ADD", &v));
    assert_eq!(fx.execs[0].stdin["ipam"], v["ipam"]);
    let Request::Attach(a) = &fx.requests[1] else {
        unreachable!()
    };
    assert_eq!(a.addresses, [net("198.19.7.9/24")]);
}

#[test]
fn add_chained_extends_prev_result() {
    let mut fx = Fake::new();
    let mut v = conf("1.0.0");
    v["prevResult"] = json!({"cniVersion":"1.0.0","interfaces":[{"name":"x0"}],"ips":[{"interface":0,"address":"198.18.1.1/32"}]});
    let r = ok_json(&run_with(&mut fx, "ADD", &v));
    assert_eq!(r["interfaces"][0]["name"], "x0");
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(r["ips"][0]["address"], "198.18.1.1/32");
    assert_eq!(r["ips"][1]["interface"], 1);
}

#[test]
fn add_with_the_router_down_or_starting_touches_nothing() {
    for state in [Router::Down, Router::Starting] {
        let mut fx = Fake::new();
        fx.router = state;
        let out = run_with(&mut fx, "ADD", &conf("1.0.0"));
        assert_eq!(code_of(&out), 11);
        assert_eq!(fx.requests(), ["status"]);
        assert!(fx.execs.is_empty(), "no allocation");
    }
}

#[test]
fn a_refused_attach_releases_the_address() {
    for (code, cni) in [
        (ErrorCode::Invalid, 7),
        (ErrorCode::Full, 103),
        (ErrorCode::Internal, 104),
        (ErrorCode::Exists, 100),
    ] {
        let mut fx = Fake::new();
        fx.attach_error = Some(match code {
            ErrorCode::Invalid => || api_err(ErrorCode::Invalid),
            ErrorCode::Full => || api_err(ErrorCode::Full),
            ErrorCode::Internal => || api_err(ErrorCode::Internal),
            _ => || api_err(ErrorCode::Exists),
        });
        let out = run_with(&mut fx, "ADD", &conf("1.0.0"));
        assert_eq!(code_of(&out), cni);
        assert_eq!(
            fx.requests(),
            ["status", "attach"],
            "a refusal made nothing to detach"
        );
        assert_eq!(fx.ipam_cmds(), ["ADD", "DEL"]);
        assert_eq!(
            fx.execs[1].stdin, fx.execs[0].stdin,
            "released with the same config"
        );
    }
}

#[test]
fn a_broken_attach_detaches_and_releases() {
    let mut fx = Fake::new();
    fx.attach_error = Some(|| ClientError::Protocol {
        path: "/s".into(),
        message: "reading the reply: timed out".into(),
    });
    let out = run_with(&mut fx, "ADD", &conf("1.0.0"));
    assert_eq!(code_of(&out), 11);
    assert_eq!(fx.requests(), ["status", "attach", "detach"]);
    assert_eq!(fx.ipam_cmds(), ["ADD", "DEL"]);
}

#[test]
fn a_failed_ipam_add_is_passed_on_and_not_released() {
    let mut fx = Fake::new();
    fx.ipam_add = Some(Err(|| ExecError::Failed {
        status: Some(1),
        stdout: br#"{"code":7,"msg":"Invalid Configuration","details":"no addresses left"}"#
            .to_vec(),
    }));
    let e = error_of(&run_with(&mut fx, "ADD", &conf("1.0.0")));
    assert_eq!(e["code"], 7);
    assert!(e["details"].as_str().unwrap().contains("host-local"), "{e}");
    assert_eq!(fx.ipam_cmds(), ["ADD"]);
    assert_eq!(fx.requests(), ["status"]);
    // A plugin that dies without an error object.
    fx.ipam_add = Some(Err(|| ExecError::Failed {
        status: None,
        stdout: b"panic".to_vec(),
    }));
    assert_eq!(code_of(&run_with(&mut fx, "ADD", &conf("1.0.0"))), 106);
    // A result with no address is released.
    fx.execs.clear();
    fx.ipam_add = Some(Ok(br#"{"cniVersion":"1.0.0","ips":[]}"#.to_vec()));
    assert_eq!(code_of(&run_with(&mut fx, "ADD", &conf("1.0.0"))), 106);
    assert_eq!(fx.ipam_cmds(), ["ADD", "DEL"]);
    assert!(fx.attached.is_empty());
}

#[test]
fn a_missing_ipam_plugin_is_error_7() {
    let mut fx = Fake::new();
    fx.ipam_present = false;
    let e = error_of(&run_with(&mut fx, "ADD", &conf("1.0.0")));
    assert_eq!(e["code"], 7);
    assert!(e["details"]
        .as_str()
        .unwrap()
        .contains("/opt/cni/bin:/usr/lib/cni"));
}

#[test]
fn del_detaches_then_releases_and_is_idempotent() {
    let mut fx = Fake::new();
    ok_json(&run_with(&mut fx, "ADD", &conf("1.0.0")));
    fx.requests.clear();
    fx.execs.clear();
    for _ in 0..2 {
        let out = run_with(&mut fx, "DEL", &conf("1.0.0"));
        assert_eq!((out.exit, out.stdout.len()), (0, 0));
    }
    assert_eq!(fx.requests(), ["detach", "status", "detach", "status"]);
    assert_eq!(fx.ipam_cmds(), ["DEL", "DEL"]);
    assert!(fx.attached.is_empty());
}

#[test]
fn del_with_the_router_down_waits_while_the_netns_lives() {
    let mut fx = Fake::new();
    fx.router = Router::Down;
    assert_eq!(code_of(&run_with(&mut fx, "DEL", &conf("1.0.0"))), 11);
    assert!(fx.execs.is_empty(), "the address stays allocated");
    // Namespace gone: success, released with prevResult's networks.
    fx.netns_alive = false;
    let mut v = conf("1.0.0");
    v["prevResult"] = json!({"interfaces":[{"name":"eth0","sandbox":NETNS}],"ips":[{"interface":0,"address":"198.19.7.2/24"}]});
    let out = run_with(&mut fx, "DEL", &v);
    assert_eq!(out.exit, 0);
    assert_eq!(fx.ipam_cmds(), ["DEL"]);
    assert_eq!(
        fx.execs[0].stdin["ipam"]["ranges"],
        json!([[{"subnet":"198.19.7.0/24"}]])
    );
    // No netns at all (CNI_NETNS unset) is the same.
    let mut env = env_for("DEL");
    env.remove("CNI_NETNS");
    let out = run(&env, conf("1.0.0").to_string().as_bytes(), &mut fx);
    assert_eq!(out.exit, 0);
}

#[test]
fn check_compares_the_port_with_prev_result() {
    let mut fx = Fake::new();
    let added = ok_json(&run_with(&mut fx, "ADD", &conf("1.0.0")));
    let mut v = conf("1.0.0");
    v["prevResult"] = added.clone();
    fx.requests.clear();
    fx.execs.clear();
    let out = run_with(&mut fx, "CHECK", &v);
    assert_eq!(
        (out.exit, out.stdout.len()),
        (0, 0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(fx.requests(), ["check", "status"]);
    assert_eq!(fx.ipam_cmds(), ["CHECK"]);
    // prevResult with another address.
    let mut other = added.clone();
    other["ips"][0]["address"] = json!("198.19.7.3/24");
    v["prevResult"] = other;
    assert_eq!(code_of(&run_with(&mut fx, "CHECK", &v)), 102);
    // Not attached.
    v["prevResult"] = added;
    fx.attached.clear();
    assert_eq!(code_of(&run_with(&mut fx, "CHECK", &v)), 101);
    // No prevResult.
    assert_eq!(code_of(&run_with(&mut fx, "CHECK", &conf("1.0.0"))), 7);
}

#[test]
fn gc_keeps_the_valid_attachments_and_releases_the_collected() {
    let mut fx = Fake::new();
    fx.gc_collects = vec!["vxnet/c2/eth0".into(), "vxnet/c3/net1".into()];
    let mut v = conf("1.1.0");
    v["cni.dev/valid-attachments"] = json!([
        {"containerID":"c1","ifname":"eth0"},
        {"containerID":"c4","ifname":"eth1"},
    ]);
    let out = run_with(&mut fx, "GC", &v);
    assert_eq!(out.exit, 0, "{}", String::from_utf8_lossy(&out.stdout));
    let Request::Gc { prefix, keep } = &fx.requests[0] else {
        panic!("{:?}", fx.requests)
    };
    assert_eq!(prefix, "vxnet/");
    assert_eq!(keep, &["vxnet/c1/eth0", "vxnet/c4/eth1"]);
    assert_eq!(
        fx.ipam_cmds(),
        ["VERSION", "DEL", "DEL"],
        "no GC to a 1.0.0 plugin"
    );
    let ids: Vec<(Option<String>, Option<String>)> = fx.execs[1..]
        .iter()
        .map(|e| {
            let get = |k: &str| {
                e.env
                    .iter()
                    .find(|(n, _)| *n == k)
                    .and_then(|(_, v)| v.clone())
            };
            (get("CNI_CONTAINERID"), get("CNI_IFNAME"))
        })
        .collect();
    assert_eq!(
        ids,
        [
            (Some("c2".into()), Some("eth0".into())),
            (Some("c3".into()), Some("net1".into()))
        ]
    );
    assert!(fx.execs[1].stdin.get("cni.dev/valid-attachments").is_none());
    // A plugin that speaks 1.1.0 gets the GC too, with the list.
    fx.ipam_versions = vec!["1.0.0", "1.1.0"];
    fx.execs.clear();
    fx.gc_collects.clear();
    assert_eq!(run_with(&mut fx, "GC", &v).exit, 0);
    assert_eq!(fx.ipam_cmds(), ["VERSION", "GC"]);
    assert_eq!(
        fx.execs[1].stdin["cni.dev/valid-attachments"][1]["containerID"],
        "c4"
    );
}

#[test]
fn gc_with_the_router_down_still_forwards_and_reports_11() {
    let mut fx = Fake::new();
    fx.router = Router::Down;
    fx.ipam_versions = vec!["1.1.0"];
    let out = run_with(&mut fx, "GC", &conf("1.1.0"));
    assert_eq!(code_of(&out), 11);
    assert_eq!(fx.ipam_cmds(), ["VERSION", "GC"]);
}

#[test]
fn status_is_50_unless_the_router_is_ready_with_room() {
    let mut fx = Fake::new();
    let out = run_with(&mut fx, "STATUS", &conf("1.1.0"));
    assert_eq!((out.exit, out.stdout.len()), (0, 0));
    assert_eq!(fx.ipam_cmds(), ["VERSION"], "no STATUS to a 1.0.0 plugin");
    fx.ipam_versions = vec!["1.1.0"];
    fx.execs.clear();
    assert_eq!(run_with(&mut fx, "STATUS", &conf("1.1.0")).exit, 0);
    assert_eq!(fx.ipam_cmds(), ["VERSION", "STATUS"]);
    for state in [Router::Down, Router::Starting] {
        fx.router = state;
        assert_eq!(code_of(&run_with(&mut fx, "STATUS", &conf("1.1.0"))), 50);
    }
    fx.router = Router::Up;
    fx.ports = 64;
    assert_eq!(code_of(&run_with(&mut fx, "STATUS", &conf("1.1.0"))), 50);
}

#[test]
fn a_too_long_attachment_id_is_a_config_error() {
    let mut fx = Fake::new();
    let mut v = conf("1.0.0");
    v["name"] = json!("n".repeat(300));
    assert_eq!(code_of(&run_with(&mut fx, "ADD", &v)), 7);
    assert!(fx.requests.is_empty());
}

#[test]
fn stdin_over_the_limit_is_refused() {
    let mut fx = Fake::new();
    let big = vec![b' '; config::MAX_STDIN + 1];
    assert_eq!(code_of(&run(&env_for("ADD"), &big, &mut fx)), 6);
}

#[test]
fn routes_follow_what_the_router_installs() {
    // A /32 address: the gateway outside it gets an on-link route first.
    let mut port = some_port();
    port.addresses = vec![net("198.19.7.2/32")];
    let r = result::added(
        None,
        "eth0",
        Path::new(NETNS),
        &port,
        &port.addresses.clone(),
        None,
    );
    assert_eq!(
        serde_json::to_value(&r.routes).unwrap(),
        json!([
            {"dst":"198.19.7.1/32","scope":253},
            {"dst":"0.0.0.0/0","gw":"198.19.7.1"},
        ])
    );
    // A TUN without gateways routes each family's default through itself.
    port.kind = PortKind::Tun;
    port.gateways.clear();
    port.mac = None;
    let addrs = [net("198.19.7.2/24"), net("2001:2:0:7::2/64")];
    let r = result::added(None, "tun0", Path::new(NETNS), &port, &addrs, None);
    assert_eq!(
        serde_json::to_value(&r).unwrap()["routes"],
        json!([{"dst":"0.0.0.0/0"},{"dst":"::/0"}])
    );
    assert!(serde_json::to_value(&r).unwrap()["interfaces"][0]
        .get("mac")
        .is_none());
    // A veth without gateways gets no default route.
    port.kind = PortKind::Veth;
    let r = result::added(None, "eth0", Path::new(NETNS), &port, &addrs, None);
    assert!(r.routes.is_empty());
}
