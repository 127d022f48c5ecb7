//! Container ports built in namespaces of our own (`host-*`), addresses from
//! 198.18.0.0/15 and 2001:2::/48 only. The tests run one at a time (one
//! lock), as the router builds its ports.
#![cfg(target_os = "linux")]

mod common;

use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use vxrouter::host::{
    link::link_info,
    netns::{netns_exists, setup_tun_netns, setup_veth, DeviceKind},
    HostError,
};

static SERIAL: Mutex<()> = Mutex::new(());

use common::sh as out;

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().expect("prefix")).collect()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().expect("address")).collect()
}

/// Removes leftovers of an earlier, killed run; the guard deletes the
/// namespace at the end, also when the test panics.
fn scrub(ns: &str, dev: &str) -> common::Netns {
    let _ = Command::new("ip").args(["link", "del", dev]).output();
    common::Netns::adopt(ns)
}

const ROOT: &str = "network namespaces";

/// The topology host the ports are made for (their marker names it).
const HOST: &str = "host-test";

#[test]
fn veth_port_is_built_and_removed() {
    if !common::require_root(ROOT) {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (ns, port) = ("host-veth1", "hv-port1");
    let _ns = scrub(ns, port);
    let dev = setup_veth(
        HOST,
        port,
        ns,
        &nets(&["198.18.1.2/24", "2001:2:0:1::2/64"]),
        &ips(&["198.18.1.1", "2001:2:0:1::1"]),
        1400,
        Some([0x02, 0x00, 0xc6, 0x12, 0x01, 0x02]),
        2,
    )
    .expect("setup_veth");
    assert!(dev.netns_created());
    assert_eq!(dev.kind(), DeviceKind::Veth);

    let host_end = link_info(port).expect("host end");
    assert_eq!(
        (host_end.mtu, host_end.up, host_end.num_rx_queues),
        (1400, true, 2)
    );
    assert_ne!(host_end.mac, [0; 6]);

    let addr = out(&["ip", "-n", ns, "addr", "show", "dev", "eth0"]);
    for want in [
        "198.18.1.2/24",
        "2001:2:0:1::2/64",
        "02:00:c6:12:01:02",
        "mtu 1400",
        "UP",
    ] {
        assert!(addr.contains(want), "{want} missing in\n{addr}");
    }
    assert!(!addr.contains("tentative"), "DAD still running:\n{addr}");
    let lo = out(&["ip", "-n", ns, "link", "show", "lo"]);
    assert!(lo.contains("UP"), "{lo}");
    let r4 = out(&["ip", "-n", ns, "-4", "route"]);
    assert!(
        r4.contains("default via 198.18.1.1 dev eth0 onlink"),
        "{r4}"
    );
    let r6 = out(&["ip", "-n", ns, "-6", "route"]);
    assert!(r6.contains("default via 2001:2:0:1::1 dev eth0"), "{r6}");
    let q = out(&["ip", "-n", ns, "-d", "link", "show", "eth0"]);
    assert!(q.contains("numrxqueues 2"), "{q}");

    // A second port of the same name is refused, not adopted: its marker
    // names this process, which runs.
    match setup_veth(HOST, port, "host-veth1b", &[], &[], 1500, None, 1) {
        Err(HostError::DeviceInUse { device, pid }) => {
            assert_eq!((device.as_str(), pid), (port, std::process::id()))
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!netns_exists("host-veth1b"));

    drop(dev);
    assert!(matches!(link_info(port), Err(HostError::NoSuchDevice(_))));
    assert!(!netns_exists(ns), "the namespace we created is gone");
}

#[test]
fn existing_namespace_is_kept() {
    if !common::require_root(ROOT) {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (ns, port) = ("host-veth2", "hv-port2");
    let _ns = scrub(ns, port);
    out(&["ip", "netns", "add", ns]);
    let dev = setup_veth(
        HOST,
        port,
        ns,
        &nets(&["198.18.2.2/32"]),
        &ips(&["198.18.2.1"]),
        1500,
        None,
        1,
    )
    .expect("setup_veth");
    assert!(!dev.netns_created());
    let r4 = out(&["ip", "-n", ns, "-4", "route"]);
    assert!(
        r4.contains("default via 198.18.2.1 dev eth0 onlink"),
        "{r4}"
    );
    dev.teardown().expect("teardown");
    assert!(netns_exists(ns), "not ours to delete");
    assert!(!out(&["ip", "-n", ns, "link"]).contains("eth0"));
    out(&["ip", "netns", "del", ns]);
}

/// Opens one queue of the multi-queue TUN `name` (what the TUN port does).
fn open_tun_queue(name: &str) -> std::io::Result<OwnedFd> {
    let path = c"/dev/net/tun";
    // SAFETY: a valid NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own from here on.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq that outlives the call.
    let rc = unsafe { libc::ioctl(owned.as_raw_fd(), libc::TUNSETIFF, &mut req) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(owned)
}

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4/UDP 198.18.3.9:4000 -> 198.18.3.2:5000 carrying `payload`
/// (UDP checksum 0: none, allowed over IPv4).
fn udp_packet(payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        17,
        0,
        0,
        198,
        18,
        3,
        9,
        198,
        18,
        3,
        2,
        0x0f,
        0xa0,
        0x13,
        0x88,
        ((8 + payload.len()) >> 8) as u8,
        (8 + payload.len()) as u8,
        0,
        0,
    ];
    let c = ipv4_checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[test]
fn tun_port_moves_into_the_namespace_and_keeps_working() {
    if !common::require_root(ROOT) {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (ns, port) = ("host-tun1", "ht-tun1");
    let _ns = scrub(ns, port);
    let (dev, queue) = setup_tun_netns(
        HOST,
        port,
        ns,
        &nets(&["198.18.3.2/32", "2001:2:0:3::2/128"]),
        1400,
        open_tun_queue,
    )
    .expect("setup_tun_netns");
    assert_eq!(dev.kind(), DeviceKind::Tun);
    assert!(
        matches!(link_info(port), Err(HostError::NoSuchDevice(_))),
        "moved away"
    );
    let addr = out(&["ip", "-n", ns, "addr", "show", "dev", "eth0"]);
    for want in ["198.18.3.2/32", "2001:2:0:3::2/128", "mtu 1400", "UP"] {
        assert!(addr.contains(want), "{want} missing in\n{addr}");
    }
    assert!(out(&["ip", "-n", ns, "-4", "route"]).contains("default dev eth0"));
    assert!(out(&["ip", "-n", ns, "-6", "route"]).contains("default dev eth0"));

    // Container -> router: a datagram sent in the namespace reaches our fd.
    let send = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\
                .sendto(b'vx-out', ('198.18.3.9', 9))";
    out(&["ip", "netns", "exec", ns, "python3", "-c", send]);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 2048];
    loop {
        assert!(
            Instant::now() < deadline,
            "datagram never reached the TUN fd"
        );
        // SAFETY: reads into a live buffer of the given length.
        let n = unsafe { libc::read(queue.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let p = &buf[..n as usize];
        if p.first() == Some(&0x45) && p.ends_with(b"vx-out") {
            assert_eq!(&p[12..16], &[198, 18, 3, 2]);
            break;
        }
    }

    // Router -> container: a packet written to our fd is delivered there.
    let recv = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
                s.bind(('198.18.3.2', 5000)); s.settimeout(3); print(s.recv(100).decode())";
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", recv])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn receiver");
    let packet = udp_packet(b"vx-in");
    // The receiver needs a moment to bind: resend until it has its datagram.
    for _ in 0..30 {
        if child.try_wait().expect("receiver state").is_some() {
            break;
        }
        // SAFETY: writes from a live buffer of the given length.
        let n = unsafe { libc::write(queue.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        assert_eq!(
            n,
            packet.len() as isize,
            "{}",
            std::io::Error::last_os_error()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = child.wait_with_output().expect("receiver");
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "vx-in");

    drop(dev);
    assert!(!netns_exists(ns));
    drop(queue);
}

/// The queue count is the one in use, not the one allocated: a veth made
/// without `numrxqueues` allocates a queue per CPU but uses one, and an
/// AF_XDP socket bound to an unused queue fails with EINVAL (the router used
/// to fail at start-up on such an underlay).
#[test]
fn rx_queue_count_is_the_number_in_use() {
    if !common::require_root(ROOT) {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = "host-queues";
    let _ns = common::Netns::adopt(ns);
    out(&["ip", "netns", "add", ns]);
    // One veth as `ip` makes it by default, one with explicit queues.
    for (dev, queues) in [("q-plain", ""), ("q-three", "numrxqueues 3 numtxqueues 3")] {
        let cmd = format!("-n {ns} link add {dev} {queues} type veth peer name {dev}-p");
        let mut args = vec!["ip"];
        args.extend(cmd.split_whitespace());
        out(&args);
    }
    let got = std::thread::spawn(move || {
        vxrouter::port::sys::enter_netns(std::path::Path::new(&format!("/var/run/netns/{ns}")))
            .expect("enter netns");
        (
            link_info("q-plain").expect("q-plain").num_rx_queues,
            link_info("q-three").expect("q-three").num_rx_queues,
            link_info("lo").expect("lo").num_rx_queues,
        )
    })
    .join()
    .expect("thread");
    assert_eq!(got, (1, 3, 1));
}
