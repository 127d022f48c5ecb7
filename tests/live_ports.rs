//! Live port attach and detach over the control socket, with real routers.
//!
//! Two hosts (`lp<N>-h1`, `lp<N>-h2`) joined by an underlay veth on
//! 198.18.0.0/24; h2 has a TUN container from its topology, h1 none: its
//! containers come and go through `attach`/`detach` requests, in
//! namespaces the test makes, on 198.19.1.0/24 and 2001:2:0:1::/64. Every
//! stream is bounded in count and time, and the `Lab` guard stops the
//! routers and removes the namespaces on exit, also on panic. Needs root:
//! under `CI=true` its absence fails the test, elsewhere it prints
//! `SKIPPED: ...`.
#![cfg(target_os = "linux")]

mod common;
#[macro_use]
mod live_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use live_support::{assert_clean, cmd, host, link, port, Lab, H1_VTEP, H2_VTEP, OVERLAY};
use vxrouter::api::{self, client, Body, ErrorCode, Request};

fn topology(c2: &str) -> String {
    format!(
        "{OVERLAY}{}{}{}",
        host("h1", 1, H1_VTEP, "0", ""),
        host(
            "h2",
            2,
            H2_VTEP,
            "1",
            &port("c2", "tun", c2, "198.19.2.2", "2001:2:0:2::2")
        ),
        link("h1", "h2", 1)
    )
}

/// The lab: two routers running, h2's container ready. Returns the lab,
/// h1's control socket and h2's container namespace.
fn lab(prefix: &str) -> (Lab, PathBuf, String) {
    let mut lab = Lab::new(prefix);
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let c2 = lab.adopt("c2");
    let cfg = lab.write("topo.toml", &topology(&c2));
    let r1 = lab.start(&cfg, "h1", &h1);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[r1, r2]);
    let sock = lab.socket_path("h1");
    live_support::wait_for(Duration::from_secs(10), "h1's control socket", || {
        sock.exists().then_some(())
    });
    (lab, sock, c2)
}

fn call(sock: &Path, req: Request) -> Result<Body, client::ClientError> {
    client::call(sock, &req, Duration::from_secs(10))
}

fn attach(id: &str, netns: &str, kind: config::PortKind, addrs: &[&str]) -> Request {
    Request::Attach(api::Attach {
        id: id.into(),
        netns: common::netns_path(netns),
        ifname: "eth0".into(),
        kind,
        addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        offload: false,
        network: None,
    })
}

use vxrouter::config;

fn api_error(r: Result<Body, client::ClientError>) -> ErrorCode {
    match r {
        Err(client::ClientError::Api(e)) => e.code,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// The router's devices named like attached ports (`vx` + 12 hex digits).
fn attached_devices(ns: &str) -> Vec<String> {
    cmd(&["ip", "-n", ns, "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n.len() == 14 && n.starts_with("vx"))
        .collect()
}

/// A raw exchange on the socket: `bytes` out, the reply lines in (until
/// the router closes or 5 s pass).
fn raw(sock: &Path, bytes: &[u8]) -> Vec<String> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut lines = Vec::new();
    for l in BufReader::new(s).lines() {
        match l {
            Ok(l) => lines.push(l),
            Err(_) => break,
        }
        if lines.len() == bytes.iter().filter(|&&b| b == b'\n').count().max(1) {
            break;
        }
    }
    lines
}

#[test]
fn containers_attach_and_detach_over_the_socket() {
    require_root!();
    let (mut lab, sock, c2) = lab("lp1");
    let h1 = lab.name("h1");
    let ca = lab.ns("ca");
    let cb = lab.ns("cb");

    // Status says what an IPAM needs.
    let Body::Status(st) = call(&sock, Request::Status {}).unwrap() else {
        panic!()
    };
    assert_eq!(st.host, "h1");
    assert_eq!(st.gateways.len(), 2);
    assert_eq!(st.ports, 0);

    // A veth and a TUN container, each with both families.
    let t0 = Instant::now();
    let Body::Port(pa) = call(
        &sock,
        attach(
            "t/ca/eth0",
            &ca,
            config::PortKind::Veth,
            &["198.19.1.5/24", "2001:2:0:1::5/64"],
        ),
    )
    .unwrap() else {
        panic!()
    };
    eprintln!(
        "lp1: veth attach took {:?} (client round trip)",
        t0.elapsed()
    );
    assert_eq!(pa.id.as_deref(), Some("t/ca/eth0"));
    assert_eq!(pa.ifname.as_deref(), Some("eth0"));
    assert_eq!(pa.gateways.len(), 2);
    let t0 = Instant::now();
    call(
        &sock,
        attach(
            "t/cb/eth0",
            &cb,
            config::PortKind::Tun,
            &["198.19.1.6/24", "2001:2:0:1::6/64"],
        ),
    )
    .unwrap();
    eprintln!(
        "lp1: TUN attach took {:?} (client round trip)",
        t0.elapsed()
    );
    lab.ping(&ca, "198.19.2.2");
    lab.ping(&cb, "198.19.2.2");
    lab.ping(&c2, "198.19.1.5");
    lab.ping(&c2, "2001:2:0:1::6");
    lab.ping(&ca, "2001:2:0:2::2");
    // Containers of one host reach each other through the router too.
    lab.ping(&ca, "198.19.1.6");
    lab.exchange("udp", &c2, &ca, "198.19.2.2", 7101, 1200);
    lab.exchange("tcp", &ca, &c2, "198.19.1.5", 7102, 200_000);
    lab.exchange("tcp", &c2, &cb, "198.19.2.2", 7103, 200_000);

    // Attaching again with the same parameters answers the same port;
    // with others it is refused.
    let Body::Port(again) = call(
        &sock,
        attach(
            "t/ca/eth0",
            &ca,
            config::PortKind::Veth,
            &["198.19.1.5/24", "2001:2:0:1::5/64"],
        ),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(again.name, pa.name);
    assert_eq!(
        api_error(call(
            &sock,
            attach("t/ca/eth0", &ca, config::PortKind::Veth, &["198.19.1.7/24"])
        )),
        ErrorCode::Exists
    );
    // Hostile or wrong requests: each refused by class, nothing made.
    let cc = lab.ns("cc");
    let cases = [
        (
            attach("t/cc/eth0", &cc, config::PortKind::Veth, &["198.19.2.9/24"]),
            ErrorCode::Invalid,
        ),
        (
            attach("t/cc/eth0", &cc, config::PortKind::Veth, &["198.19.1.5/24"]),
            ErrorCode::Invalid,
        ),
        (
            attach("t/cc/eth0", &cc, config::PortKind::Veth, &["198.19.1.1/24"]),
            ErrorCode::Invalid,
        ),
        (
            attach(
                "t/cc/eth0",
                "lp1-none",
                config::PortKind::Veth,
                &["198.19.1.9/24"],
            ),
            ErrorCode::Invalid,
        ),
        (
            match attach("t/cc/eth0", &cc, config::PortKind::Veth, &["198.19.1.9/24"]) {
                Request::Attach(a) => Request::Attach(api::Attach {
                    network: Some("nosuch".into()),
                    ..a
                }),
                other => other,
            },
            ErrorCode::Invalid,
        ),
        (
            Request::Check {
                id: "t/none".into(),
            },
            ErrorCode::NotFound,
        ),
    ];
    for (req, code) in cases {
        assert_eq!(api_error(call(&sock, req.clone())), code, "{req:?}");
    }
    let mut etc = Request::Attach(api::Attach {
        id: "t/etc".into(),
        netns: "/etc/hostname".into(),
        ifname: "eth0".into(),
        kind: config::PortKind::Veth,
        addresses: vec!["198.19.1.9/24".parse().unwrap()],
        offload: false,
        network: None,
    });
    assert_eq!(api_error(call(&sock, etc.clone())), ErrorCode::Invalid);
    if let Request::Attach(a) = &mut etc {
        a.netns = common::netns_path(&cc);
        a.ifname = "lo".into();
    }
    assert_eq!(api_error(call(&sock, etc)), ErrorCode::Exists);
    // One router-side device: the veth's (a TUN lives in its container).
    assert_eq!(
        attached_devices(&h1).len(),
        1,
        "a refused attach left a device"
    );
    assert!(!cmd(&["ip", "-n", &cc, "-o", "link"]).contains("eth0"));
    let lines = raw(&sock, b"not json\n{\"v\":9,\"op\":\"status\"}\n");
    assert!(lines[0].contains("\"bad_request\""), "{lines:?}");
    assert!(lines[1].contains("\"unsupported_version\""), "{lines:?}");
    let mut big = vec![b'x'; api::MAX_REQUEST + 10];
    big.push(b'\n');
    let lines = raw(&sock, &big);
    assert!(lines[0].contains("\"too_large\""), "{lines:?}");

    // `vxrouter ports` lists both with their counters.
    let out = Command::new(env!("CARGO_BIN_EXE_vxrouter"))
        .args(["ports", "--socket"])
        .arg(&sock)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("t/ca/eth0") && text.contains("t/cb/eth0"),
        "{text}"
    );
    let Body::Ports(ports) = call(&sock, Request::Ports {}).unwrap() else {
        panic!()
    };
    let a = ports
        .iter()
        .find(|p| p.id.as_deref() == Some("t/ca/eth0"))
        .unwrap();
    assert!(
        a.counters.rx_packets > 0 && a.counters.tx_packets > 0,
        "{a:?}"
    );
    call(
        &sock,
        Request::Check {
            id: "t/ca/eth0".into(),
        },
    )
    .unwrap();
    // An address taken off the container's interface is a mismatch.
    lab.ip(&cb, &["addr", "del", "198.19.1.6/24", "dev", "eth0"]);
    assert_eq!(
        api_error(call(
            &sock,
            Request::Check {
                id: "t/cb/eth0".into()
            }
        )),
        ErrorCode::Mismatch
    );

    // Detach: the port and its interface are gone, once.
    let Body::Detached { found } = call(
        &sock,
        Request::Detach {
            id: "t/ca/eth0".into(),
        },
    )
    .unwrap() else {
        panic!()
    };
    assert!(found);
    lab.ping_fails(&c2, "198.19.1.5");
    assert!(!cmd(&["ip", "-n", &ca, "-o", "link"]).contains("eth0"));
    let Body::Detached { found } = call(
        &sock,
        Request::Detach {
            id: "t/ca/eth0".into(),
        },
    )
    .unwrap() else {
        panic!()
    };
    assert!(!found);
    // GC keeps what it is told to and takes the rest of its prefix.
    let Body::Collected(gone) = call(
        &sock,
        Request::Gc {
            prefix: "t/".into(),
            keep: vec!["t/ca/eth0".into()],
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(gone, vec!["t/cb/eth0".to_owned()]);
    assert!(attached_devices(&h1).is_empty());
    assert!(!cmd(&["ip", "-n", &cb, "-o", "link"]).contains("eth0"));
    let Body::Status(st) = call(&sock, Request::Status {}).unwrap() else {
        panic!()
    };
    assert_eq!(st.ports, 0);

    let mut s = lab.wait_stats(0, "control socket counted", |s| {
        s["control_socket"]["requests"].as_u64() > Some(15)
    });
    // The two pings to the detached address: routed to h1's subnet, where
    // no port holds it any more.
    let no_route = s["drops"]["no_route"].as_u64().unwrap_or(0);
    assert!(no_route <= 2, "{s:#}");
    if let Some(d) = s["drops"].as_object_mut() {
        d.remove("no_route");
    }
    assert_clean("h1", &s);
    assert!(s["control_socket"]["closed_too_large"].as_u64() >= Some(1));
}

/// A UDP stream into a topology container on h2 while ports of h1 come and
/// go: the stream loses nothing (sent == received).
const STREAM: &str = r#"
import socket, sys, time
mode = sys.argv[1]
if mode == 'recv':
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((sys.argv[2], int(sys.argv[3])))
    s.settimeout(3)
    print('ready', flush=True)
    seen = set()
    try:
        while True:
            d, _ = s.recvfrom(2048)
            seen.add(int(d.split(b' ')[0]))
    except socket.timeout:
        pass
    print('received', len(seen), flush=True)
else:
    addr, port, n, rate = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t0 = time.monotonic()
    for i in range(n):
        s.sendto(b'%d stream' % i, (addr, port))
        lag = t0 + (i + 1) / rate - time.monotonic()
        if lag > 0:
            time.sleep(lag)
    print('sent', n, flush=True)
"#;

#[test]
fn a_stream_loses_nothing_while_other_ports_come_and_go() {
    require_root!();
    let (mut lab, sock, c2) = lab("lp2");
    let ca = lab.ns("ca");
    call(
        &sock,
        attach("s/ca/eth0", &ca, config::PortKind::Veth, &["198.19.1.5/24"]),
    )
    .unwrap();
    lab.ping(&ca, "198.19.2.2");
    let py = lab.write("stream.py", STREAM);
    let mut recv = Command::new("ip")
        .args(["netns", "exec", &c2, "timeout", "60", "python3"])
        .arg(&py)
        .args(["recv", "198.19.2.2", "7200"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(recv.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    // 6000 datagrams at 1500/s: 4 s of stream.
    let send = Command::new("ip")
        .args(["netns", "exec", &ca, "timeout", "30", "python3"])
        .arg(&py)
        .args(["send", "198.19.2.2", "7200", "6000", "1500"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Meanwhile: ports attached and detached on the same router, both
    // kinds, each cycle bounded.
    let others: Vec<String> = (0..4).map(|i| lab.ns(&format!("o{i}"))).collect();
    let mut cycles = 0;
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline && cycles < 40 {
        let i = cycles % others.len();
        let kind = if cycles % 2 == 0 {
            config::PortKind::Veth
        } else {
            config::PortKind::Tun
        };
        let id = format!("o/{i}/eth0");
        let addr = format!("198.19.1.{}/24", 20 + i);
        call(&sock, attach(&id, &others[i], kind, &[&addr])).unwrap();
        call(&sock, Request::Detach { id }).unwrap();
        cycles += 1;
    }
    let sent = send.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&sent.stdout).contains("sent 6000"));
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let _ = recv.wait();
    eprintln!(
        "lp2: {cycles} attach/detach cycles during the stream; {}",
        rest.trim()
    );
    assert!(cycles >= 4, "only {cycles} cycles");
    assert_eq!(rest.trim(), "received 6000", "the stream lost datagrams");
    // What a container sends while its port is being detached (here its
    // interface's first IPv6 solicitations and reports, right after link
    // up) is read after the tables dropped the port: counted as
    // port_down. Nothing else may drop.
    let mut s = lab.stats(0);
    if let Some(d) = s["drops"].as_object_mut() {
        d.remove("port_down");
    }
    assert_clean("h1", &s);
}

/// Attached ports outlive the router: SIGKILLed and started again, it takes
/// back every recorded port whose container still has its interface, with
/// no request, and forgets the one whose namespace went meanwhile.
#[test]
fn attached_ports_outlive_a_killed_router() {
    require_root!();
    let (mut lab, sock, c2) = lab("lp3");
    let h1 = lab.name("h1");
    let ca = lab.ns("ca");
    let cb = lab.ns("cb");
    let cc = lab.ns("cc");
    for (id, ns, kind, addr) in [
        ("r/ca/eth0", &ca, config::PortKind::Veth, "198.19.1.5/24"),
        ("r/cb/eth0", &cb, config::PortKind::Tun, "198.19.1.6/24"),
        ("r/cc/eth0", &cc, config::PortKind::Veth, "198.19.1.7/24"),
    ] {
        call(&sock, attach(id, ns, kind, &[addr])).unwrap();
    }
    lab.ping(&ca, "198.19.2.2");
    lab.ping(&cb, "198.19.2.2");
    let before = lab.ip(&ca, &["neigh", "show", "198.19.1.1"]);

    lab.signal(0, "KILL");
    let _ = lab.routers[0].child.wait();
    // Gone while the router is down: its record must be forgotten.
    common::remove_netns(&cc);
    let cfg = lab.dir.path().join("topo.toml");
    let r = lab.start(&cfg, "h1", &h1);
    lab.wait_ready(&[r]);
    live_support::wait_for(Duration::from_secs(10), "the socket again", || {
        call(&sock, Request::Status {}).ok()
    });
    lab.ping(&ca, "198.19.2.2");
    lab.ping(&cb, "198.19.2.2");
    lab.ping(&c2, "198.19.1.5");
    // Same index, so the same gateway MAC the container has cached.
    assert_eq!(
        lab.ip(&ca, &["neigh", "show", "198.19.1.1"])
            .split_whitespace()
            .nth(2),
        before.split_whitespace().nth(2)
    );
    let Body::Ports(ports) = call(&sock, Request::Ports {}).unwrap() else {
        panic!()
    };
    let mut ids: Vec<_> = ports.iter().filter_map(|p| p.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["r/ca/eth0", "r/cb/eth0"]);
    let records = std::fs::read_dir(lab.dir.path().join("h1.state"))
        .unwrap()
        .count();
    assert_eq!(records, 2);
    // A plain stop (SIGTERM) leaves the containers' interfaces in place.
    lab.stop(r);
    assert!(cmd(&["ip", "-n", &ca, "-o", "link"]).contains("eth0"));
    assert!(cmd(&["ip", "-n", &cb, "-o", "link"]).contains("eth0"));
    assert_eq!(attached_devices(&h1).len(), 1);
}
