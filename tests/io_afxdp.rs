//! Netns integration tests of the XDP program, its loader and the AF_XDP
//! port (need root: without it they report SKIPPED, and fail under
//! `CI=true`). Each test builds its own pair of namespaces joined by a veth
//! pair and tears them down on drop.
#![cfg(target_os = "linux")]

mod common;
#[path = "io_support/mod.rs"]
mod io_support;

use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_support::{eth_ipv4_udp, udp_of_frame, veth_pair};
use vxrouter::port::afxdp::{AfXdpConfig, AfXdpPort, XskHandover};
use vxrouter::port::sys::poll_readable;
use vxrouter::port::xdp::{ContainerXdp, XdpProgram};
use vxrouter::port::{Batch, Port};

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 2);
/// A VXLAN header (flags 0x08, VNI 42) and a short inner payload.
const VXLAN: &[u8] = b"\x08\x00\x00\x00\x00\x00\x2a\x00inner-frame";

/// Receives from `port` until a frame satisfies `want` (returning a copy)
/// or two seconds pass.
fn wait_frame(
    port: &mut AfXdpPort,
    batch: &mut Batch,
    want: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        poll_readable(port.fd(), 50).unwrap();
        port.rx_burst(batch).unwrap();
        if let Some(p) = batch.pkts().iter().find(|p| want(p.data())) {
            return Some(p.data().to_vec());
        }
        port.flush().unwrap();
    }
    None
}

fn udp_socket(addr: (Ipv4Addr, u16)) -> UdpSocket {
    let s = UdpSocket::bind(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    s
}

#[test]
fn uplink_redirects_only_vxlan_to_our_address() {
    if !common::require_root("network namespaces, XDP, AF_XDP") {
        return;
    }
    let (a, b) = veth_pair("io-up-");
    let mac_a = a.mac("io-va");
    let mac_b = b.mac("io-vb");
    let sender = b.run(|| udp_socket((B, 0)));
    let b_listener = b.run(|| udp_socket((B, 4791)));
    let b_name = b.name.clone();

    a.run(move || {
        let kernel_vxlan = udp_socket((A, 4789));
        let kernel_other = udp_socket((A, 4790));
        let mut prog = XdpProgram::attach("io-va", &[A.into()], 4789).expect("attach XDP");
        let mut port = AfXdpPort::open("io-va", 0, &AfXdpConfig::default()).expect("AF_XDP");
        eprintln!(
            "veth uplink: XDP mode {}, AF_XDP bind mode {}",
            prog.mode(),
            port.bind_mode()
        );
        prog.register_socket(0, port.fd()).unwrap();
        let mut batch = Batch::new();

        // VXLAN to our underlay address and port: to the socket, not the kernel.
        sender.send_to(VXLAN, (A, 4789)).unwrap();
        let f = wait_frame(&mut port, &mut batch, |f| {
            udp_of_frame(f).map(|(p, _)| p) == Some(4789)
        })
        .expect("VXLAN frame reaches rx_burst");
        assert_eq!(udp_of_frame(&f).unwrap().1, VXLAN);
        assert_eq!(&f[0..6], &mac_a, "frame arrives with its Ethernet header");
        kernel_vxlan
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 2048];
        assert!(
            kernel_vxlan.recv_from(&mut buf).is_err(),
            "redirected VXLAN must not also reach the kernel"
        );

        // Other UDP, ICMP and ARP: the kernel's.
        sender.send_to(b"plain", (A, 4790)).unwrap();
        let (n, _) = kernel_other
            .recv_from(&mut buf)
            .expect("UDP/4790 reaches the kernel");
        assert_eq!(&buf[..n], b"plain");
        assert!(
            io_support::icmp_ping(&b_name, "198.18.100.1", 2),
            "ping reaches the kernel while the program is attached"
        );

        // tx_burst: a frame built here arrives at the peer's socket.
        let frame = eth_ipv4_udp(mac_b, mac_a, A, B, 5555, 4791, b"from-afxdp");
        assert_eq!(port.tx_burst(&[&frame]).unwrap(), 1);
        port.flush().unwrap();
        let (n, from) = b_listener.recv_from(&mut buf).expect("tx frame arrives");
        assert_eq!(&buf[..n], b"from-afxdp");
        assert_eq!(from, (A, 5555).into());
        for _ in 0..100 {
            port.flush().unwrap();
            if port.frame_stats().kernel_tx == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(port.frame_stats().kernel_tx, 0, "tx completion reaped");

        // Without the socket and program, VXLAN is the kernel's again.
        drop(port);
        drop(prog);
        kernel_vxlan
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        sender.send_to(VXLAN, (A, 4789)).unwrap();
        let (n, _) = kernel_vxlan
            .recv_from(&mut buf)
            .expect("VXLAN reaches the kernel after detach");
        assert_eq!(&buf[..n], VXLAN);
    });
}

#[test]
fn uplink_ignores_vxlan_to_other_addresses_and_without_socket() {
    if !common::require_root("network namespaces, XDP, AF_XDP") {
        return;
    }
    let (a, b) = veth_pair("io-ot-");
    let sender = b.run(|| udp_socket((B, 0)));
    a.run(move || {
        // A second address on the link that is not an underlay address.
        io_support::sh(&["ip", "addr", "add", "198.18.100.9/24", "dev", "io-va"]);
        let other = Ipv4Addr::new(198, 18, 100, 9);
        let kernel_other_addr = udp_socket((other, 4789));
        let kernel_vxlan = udp_socket((A, 4789));
        let mut prog = XdpProgram::attach("io-va", &[A.into()], 4789).expect("attach XDP");
        let mut buf = [0u8; 2048];

        // No socket registered yet: bpf_redirect_map falls back to XDP_PASS.
        sender.send_to(VXLAN, (A, 4789)).unwrap();
        kernel_vxlan
            .recv_from(&mut buf)
            .expect("no socket in the XSKMAP means kernel delivery");

        let mut port = AfXdpPort::open("io-va", 0, &AfXdpConfig::default()).expect("AF_XDP");
        prog.register_socket(0, port.fd()).unwrap();
        sender.send_to(VXLAN, (other, 4789)).unwrap();
        kernel_other_addr
            .recv_from(&mut buf)
            .expect("VXLAN to an address we do not own stays with the kernel");
        let mut batch = Batch::new();
        assert!(wait_frame(&mut port, &mut batch, |f| udp_of_frame(f).is_some()).is_none());

        // Unregistering hands the queue back to the kernel.
        prog.unregister_socket(0).unwrap();
        sender.send_to(VXLAN, (A, 4789)).unwrap();
        kernel_vxlan
            .recv_from(&mut buf)
            .expect("unregistered queue means kernel delivery");
    });
}

#[test]
fn container_program_redirects_everything() {
    if !common::require_root("network namespaces, XDP, AF_XDP") {
        return;
    }
    let (a, b) = veth_pair("io-ct-");
    let b_name = b.name.clone();
    a.run(move || {
        let xdp = ContainerXdp::new();
        let mut link = xdp.attach("io-va").expect("attach XDP");
        let mut port = AfXdpPort::open("io-va", 0, &AfXdpConfig::veth()).expect("AF_XDP");
        link.register_socket(0, port.fd()).unwrap();
        // The kernel never sees the ARP request, so this ping fails; the
        // request itself must show up on the socket.
        let pinger = std::thread::spawn(move || io_support::icmp_ping(&b_name, "198.18.100.1", 1));
        let mut batch = Batch::new();
        let arp = wait_frame(&mut port, &mut batch, |f| {
            f.len() >= 14 && f[12..14] == [0x08, 0x06]
        });
        assert!(
            !pinger.join().unwrap(),
            "ping must not be answered by the kernel"
        );
        let arp = arp.expect("ARP request reaches the socket");
        assert_eq!(
            &arp[38..42],
            &A.octets(),
            "ARP target is the container gateway"
        );
    });
}

/// The container program as a handover passes it: a new owner that gets
/// its maps swapped, or a link with another slot, is refused; with the
/// right ones it carries on the link after the first owner let go of it
/// (disarmed, dropped), and its socket gets the interface's frames.
#[test]
fn a_handed_over_container_program_is_checked_and_serves_on() {
    if !common::require_root("network namespaces, XDP, AF_XDP") {
        return;
    }
    let (a, b) = veth_pair("io-ch-");
    let b_name = b.name.clone();
    a.run(move || {
        let xdp = ContainerXdp::new();
        let link = xdp.attach("io-va").expect("attach XDP");
        let [p, s, x] = xdp.dup_for_handover().unwrap();
        let e = ContainerXdp::adopt(p, x, s).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
        let [p, s, x] = xdp.dup_for_handover().unwrap();
        let taken = ContainerXdp::adopt(p, s, x).expect("adopt the program");
        let fd = link.dup_for_handover().unwrap();
        let e = taken
            .adopt_link("io-va", link.mode(), fd, link.slot() + 1, &[0])
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
        let fd = link.dup_for_handover().unwrap();
        let mut carried = taken
            .adopt_link("io-va", link.mode(), fd, link.slot(), &[])
            .expect("adopt the link");
        let mut old = link;
        old.disarm();
        drop(old);
        drop(xdp);
        carried.arm();
        let mut port = AfXdpPort::open("io-va", 0, &AfXdpConfig::veth()).expect("AF_XDP");
        carried.register_socket(0, port.fd()).unwrap();
        let pinger = std::thread::spawn(move || io_support::icmp_ping(&b_name, "198.18.100.1", 1));
        let mut batch = Batch::new();
        let arp = wait_frame(&mut port, &mut batch, |f| {
            f.len() >= 14 && f[12..14] == [0x08, 0x06]
        });
        let _ = pinger.join();
        assert!(
            arp.is_some(),
            "ARP reaches the socket through the link carried on"
        );
    });
}

/// The target address of an ARP request, if `f` is one.
fn arp_target(f: &[u8]) -> Option<Ipv4Addr> {
    (f.len() >= 42 && f[12..14] == [0x08, 0x06]).then(|| Ipv4Addr::new(f[38], f[39], f[40], f[41]))
}

#[test]
fn one_container_program_keeps_each_interface_to_its_own_socket() {
    if !common::require_root("network namespaces, XDP, AF_XDP") {
        return;
    }
    let (a, b) = veth_pair("io-cs-");
    // A second pair between the same namespaces.
    common::sh(&[
        "ip", "-n", &a.name, "link", "add", "io-va2", "type", "veth", "peer", "name", "io-vb2",
        "netns", &b.name,
    ]);
    a.exec(&["ip", "addr", "add", "198.18.101.1/24", "dev", "io-va2"]);
    b.exec(&["ip", "addr", "add", "198.18.101.2/24", "dev", "io-vb2"]);
    a.exec(&["ip", "link", "set", "io-va2", "up"]);
    b.exec(&["ip", "link", "set", "io-vb2", "up"]);
    let b_name = b.name.clone();
    a.run(move || {
        let xdp = ContainerXdp::new();
        xdp.load().expect("load the container program");
        let mut l1 = xdp.attach("io-va").expect("attach XDP to io-va");
        let mut l2 = xdp.attach("io-va2").expect("attach XDP to io-va2");
        // A second link on the same device is refused, and leaves the
        // first one serving it.
        assert!(xdp.attach("io-va").is_err());
        let cfg = AfXdpConfig::veth();
        let mut p1 = AfXdpPort::open("io-va", 0, &cfg).expect("AF_XDP on io-va");
        let mut p2 = AfXdpPort::open("io-va2", 0, &cfg).expect("AF_XDP on io-va2");
        l1.register_socket(0, p1.fd()).unwrap();
        l2.register_socket(0, p2.fd()).unwrap();
        let mut batch = Batch::new();
        let (gw1, gw2) = (A, Ipv4Addr::new(198, 18, 101, 1));
        for _ in 0..2 {
            let ns = b_name.clone();
            let pinger = std::thread::spawn(move || {
                io_support::icmp_ping(&ns, "198.18.100.1", 1);
                io_support::icmp_ping(&ns, "198.18.101.1", 1);
            });
            let mut seen1 = Vec::new();
            let mut seen2 = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && !(seen1.contains(&gw1) && seen2.contains(&gw2)) {
                for (port, seen) in [(&mut p1, &mut seen1), (&mut p2, &mut seen2)] {
                    poll_readable(port.fd(), 20).unwrap();
                    port.rx_burst(&mut batch).unwrap();
                    seen.extend(batch.pkts().iter().filter_map(|p| arp_target(p.data())));
                    port.flush().unwrap();
                }
            }
            pinger.join().unwrap();
            assert!(
                seen1.contains(&gw1),
                "io-va's ARP reaches io-va's socket: {seen1:?}"
            );
            assert!(
                seen2.contains(&gw2),
                "io-va2's ARP reaches io-va2's socket: {seen2:?}"
            );
            assert!(
                !seen1.contains(&gw2),
                "io-va2's frames never reach io-va's socket"
            );
            assert!(
                !seen2.contains(&gw1),
                "io-va's frames never reach io-va2's socket"
            );
        }
        // The first link gone, its slot is free again and the second
        // interface keeps its socket; a new link takes the freed slot.
        drop(l1);
        drop(p1);
        let mut l1 = xdp.attach("io-va").expect("attach XDP to io-va again");
        // The old socket leaves the queue once the kernel has released it
        // (after an RCU grace period, since the map held it): retry.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut p1 = loop {
            match AfXdpPort::open("io-va", 0, &cfg) {
                Ok(p) => break p,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("AF_XDP on io-va again: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("AF_XDP on io-va again: {e}"),
            }
        };
        l1.register_socket(0, p1.fd()).unwrap();
        let ns = b_name.clone();
        let pinger = std::thread::spawn(move || io_support::icmp_ping(&ns, "198.18.100.1", 1));
        let arp = wait_frame(&mut p1, &mut batch, |f| arp_target(f) == Some(gw1));
        pinger.join().unwrap();
        assert!(arp.is_some(), "io-va's ARP reaches its new socket");
    });
}

#[test]
fn frames_do_not_leak_over_many_bursts() {
    if !common::require_root("network namespaces, XDP, AF_XDP") {
        return;
    }
    let (a, b) = veth_pair("io-lk-");
    let mac_a = a.mac("io-va");
    let mac_b = b.mac("io-vb");
    let b_name = b.name.clone();
    a.run(move || {
        let cfg = AfXdpConfig {
            frame_count: 1024,
            ring_size: 256,
            ..AfXdpConfig::default()
        };
        let mut prog =
            XdpProgram::attach("io-va", &[A.into()], 4789).expect("attach XDP");
        let mut port = AfXdpPort::open("io-va", 0, &cfg).expect("AF_XDP");
        prog.register_socket(0, port.fd()).unwrap();
        let check = |port: &AfXdpPort| {
            let s = port.frame_stats();
            assert_eq!(s.free + s.kernel_rx + s.kernel_tx, s.total, "{s:?}");
            assert_eq!(s.total, 1024);
        };
        check(&port);
        assert_eq!(port.frame_stats().kernel_rx, 256, "fill ring full at start");

        // More frames than the tx ring holds, with no flush: the ring takes
        // 256 and the rest are refused, not lost; flushing drains it.
        let burst_frame = eth_ipv4_udp(mac_b, mac_a, A, B, 5555, 9, b"fill");
        let many: Vec<&[u8]> = vec![&burst_frame[..]; 1000];
        assert_eq!(port.tx_burst(&many).unwrap(), 256, "tx ring capacity");
        check(&port);
        assert_eq!(port.frame_stats().kernel_tx, 256);
        for _ in 0..1000 {
            port.flush().unwrap();
            if port.frame_stats().kernel_tx == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(port.frame_stats().kernel_tx, 0, "flush drains the tx ring");
        check(&port);

        // A bounded sender in the peer namespace: 4000 VXLAN datagrams.
        let sender = io_support::spawn_in(&b_name, || {
            let s = UdpSocket::bind((B, 0)).unwrap();
            for i in 0..4000u32 {
                let mut p = VXLAN.to_vec();
                p.extend_from_slice(&i.to_be_bytes());
                let _ = s.send_to(&p, (A, 4789));
                if i % 256 == 255 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });

        let echo = eth_ipv4_udp(mac_b, mac_a, A, B, 5555, 9, b"echo");
        let mut batch = Batch::new();
        let mut received = 0usize;
        let mut sent = 0usize;
        let mut idle_since = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let n = port.rx_burst(&mut batch).unwrap();
            received += n;
            check(&port);
            // Answer each frame with a full burst, so tx needs more frames
            // than the UMEM has over the run and must recycle completions.
            if n > 0 {
                let frames: Vec<&[u8]> = vec![&echo[..]; 64];
                sent += port.tx_burst(&frames).unwrap();
                idle_since = Instant::now();
            }
            port.flush().unwrap();
            check(&port);
            if sender.is_finished() && idle_since.elapsed() > Duration::from_millis(300) {
                break;
            }
            if n == 0 {
                poll_readable(port.fd(), 10).unwrap();
            }
        }
        sender.join().unwrap();
        for _ in 0..1000 {
            port.flush().unwrap();
            if port.frame_stats().kernel_tx == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let s = port.frame_stats();
        let st = port.stats();
        let ks = port.kernel_stats().unwrap();
        eprintln!("leak test: received {received}, sent {sent}, frames {s:?}, stats {st:?}, kernel {ks:?}");
        assert_eq!(ks.rx_invalid_descs + ks.tx_invalid_descs, 0, "no bad descriptors");
        check(&port);
        assert!(received > 0);
        assert!(sent > 1024, "tx recycled frames ({sent} sent)");
        assert_eq!(s.kernel_tx, 0, "all tx completions reaped");
        assert_eq!(s.kernel_rx, 256, "fill ring full again");
        assert_eq!(s.free, 1024 - 256);
        assert_eq!(st.tx_packets as usize, sent + 256);
        assert_eq!(st.rx_packets as usize, received);
    });
}

/// `eth_ipv4_udp` with 802.1Q/802.1ad tags inserted after the MACs.
fn tagged(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    for (tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&frame[12..]);
    f
}

/// An Ethernet/IPv6/UDP frame (UDP checksum left 0: the program does not
/// look at it, and the frame never reaches a kernel socket).
fn eth_ipv6_udp(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    dport: u16,
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&((8 + VXLAN.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[17, 64]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&5555u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + VXLAN.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(VXLAN);
    f
}

#[test]
fn uplink_parses_vlan_tags_and_ipv6() {
    if !common::require_root("network namespaces, XDP, AF_XDP") {
        return;
    }
    // No 8021q module here, so the peer sends tagged frames itself, through
    // an AF_XDP socket of its own.
    let (a, b) = veth_pair("io-vl-");
    let mac_a = a.mac("io-va");
    let mac_b = b.mac("io-vb");
    let b_name = b.name.clone();
    a.run(move || {
        let mut prog = XdpProgram::attach("io-va", &[A.into()], 4789).expect("attach XDP");
        let mut port = AfXdpPort::open("io-va", 0, &AfXdpConfig::default()).expect("AF_XDP");
        prog.register_socket(0, port.fd()).unwrap();
        let plain = eth_ipv4_udp(mac_a, mac_b, B, A, 5555, 4789, VXLAN);
        let other_port = eth_ipv4_udp(mac_a, mac_b, B, A, 5555, 4790, VXLAN);
        let frames = [
            tagged(&other_port, &[(0x8100, 10)]),
            tagged(&plain, &[(0x8100, 10)]),
            tagged(&plain, &[(0x88a8, 20), (0x8100, 30)]),
            // Three tags: deeper than the program looks; left to the kernel.
            tagged(&plain, &[(0x88a8, 1), (0x8100, 2), (0x8100, 3)]),
            // IPv6 to the IPv4-mapped form of our address (the only IPv6
            // form these tests may use): the key the program builds for
            // IPv4 too, so it is ours. Then the wrong port, then a
            // truncated header.
            eth_ipv6_udp(
                mac_a,
                mac_b,
                B.to_ipv6_mapped().octets(),
                A.to_ipv6_mapped().octets(),
                4789,
            ),
            eth_ipv6_udp(
                mac_a,
                mac_b,
                B.to_ipv6_mapped().octets(),
                A.to_ipv6_mapped().octets(),
                4790,
            ),
            plain[..14 + 20 + 4].to_vec(),
        ];
        let expect = vec![frames[1].clone(), frames[2].clone(), frames[4].clone()];
        io_support::run_in(&b_name, move || {
            let mut tx = AfXdpPort::open("io-vb", 0, &AfXdpConfig::default()).expect("AF_XDP");
            let refs: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
            assert_eq!(tx.tx_burst(&refs).unwrap(), refs.len());
            for _ in 0..100 {
                tx.flush().unwrap();
                if tx.frame_stats().kernel_tx == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let mut batch = Batch::new();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            poll_readable(port.fd(), 50).unwrap();
            port.rx_burst(&mut batch).unwrap();
            got.extend(batch.pkts().iter().map(|p| p.data().to_vec()));
        }
        assert_eq!(
            got, expect,
            "tagged, double-tagged and IPv6 VXLAN redirected, the rest passed"
        );
    });
}

/// Sizes small enough that a burst fills a good part of the UMEM.
fn handover_cfg() -> AfXdpConfig {
    AfXdpConfig {
        frame_count: 1024,
        ring_size: 256,
        ..AfXdpConfig::default()
    }
}

/// Asserts the frame ownership invariant of `port`.
fn assert_frames_add_up(port: &AfXdpPort) {
    let s = port.frame_stats();
    assert_eq!(s.free + s.kernel_rx + s.kernel_tx, s.total, "{s:?}");
}

/// A VXLAN datagram carrying number `i`.
fn numbered(i: u32) -> Vec<u8> {
    let mut p = VXLAN.to_vec();
    p.extend_from_slice(&i.to_be_bytes());
    p
}

/// Receives from `port` until `n` numbered VXLAN frames arrived or two
/// seconds pass; returns their numbers in arrival order.
fn receive_numbers(port: &mut AfXdpPort, batch: &mut Batch, n: usize) -> Vec<u32> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while got.len() < n && Instant::now() < deadline {
        port.rx_burst(batch).unwrap();
        for p in batch.pkts() {
            if let Some((4789, pl)) = udp_of_frame(p.data()) {
                if pl.len() == VXLAN.len() + 4 && pl.starts_with(VXLAN) {
                    got.push(u32::from_be_bytes(pl[VXLAN.len()..].try_into().unwrap()));
                }
            }
        }
        assert_frames_add_up(port);
        if batch.is_empty() {
            poll_readable(port.fd(), 20).unwrap();
        }
    }
    got
}

/// Flushes `port` until the kernel has given every tx frame back (bounded).
fn drain_tx(port: &mut AfXdpPort) {
    for _ in 0..1000 {
        port.flush().unwrap();
        if port.frame_stats().kernel_tx == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("tx frames not completed: {:?}", port.frame_stats());
}

/// Drops `port` and returns the descriptors and the state another owner
/// needs, the state through JSON as a handover message carries it.
fn hand_over(port: AfXdpPort) -> ([std::os::fd::OwnedFd; 2], XskHandover) {
    let fds = port.dup_fds().unwrap();
    let cell = port.handover_cell();
    assert!(cell.lock().unwrap().is_none(), "filled only on drop");
    drop(port);
    let state = cell
        .lock()
        .unwrap()
        .take()
        .expect("the dropped port left its state");
    let json = serde_json::to_string(&state).unwrap();
    let state: XskHandover = serde_json::from_str(&json).unwrap();
    let free: u32 = state.free.iter().map(|r| r.1).sum();
    assert_eq!(
        free + state.kernel_rx + state.kernel_tx,
        state.frame_count,
        "{state:?}"
    );
    (fds, state)
}

#[test]
fn a_socket_handed_to_a_second_owner_loses_nothing() {
    if !common::require_root("network namespaces, XDP, AF_XDP") {
        return;
    }
    let (a, b) = veth_pair("xsk1-");
    let mac_a = a.mac("io-va");
    let mac_b = b.mac("io-vb");
    let sender = b.run(|| udp_socket((B, 0)));
    let listener = b.run(|| udp_socket((B, 4791)));
    a.run(move || {
        let cfg = handover_cfg();
        let mut prog = XdpProgram::attach("io-va", &[A.into()], 4789).expect("attach XDP");
        let mut port = AfXdpPort::open("io-va", 0, &cfg).expect("AF_XDP");
        prog.register_socket(0, port.fd()).unwrap();
        let mut batch = Batch::new();
        let mut buf = [0u8; 2048];
        let mut next = 0u32;
        let mut tx_seq = 0u32;
        let mut reply = |port: &mut AfXdpPort, n: u32, flush: bool| -> Vec<u32> {
            let frames: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    tx_seq += 1;
                    eth_ipv4_udp(mac_b, mac_a, A, B, 5555, 4791, &tx_seq.to_be_bytes())
                })
                .collect();
            let refs: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
            assert_eq!(port.tx_burst(&refs).unwrap(), refs.len());
            assert_frames_add_up(port);
            if flush {
                drain_tx(port);
            }
            (tx_seq + 1 - n..=tx_seq).collect()
        };
        let mut heard = |want: &[u32]| {
            let mut got = Vec::new();
            for _ in want {
                let Ok(n) = listener.recv(&mut buf) else {
                    break;
                };
                got.push(u32::from_be_bytes(buf[..n].try_into().unwrap()));
            }
            got.sort_unstable();
            assert_eq!(got, want, "the peer hears every frame sent");
        };

        // The first owner receives and sends, and leaves frames on the tx
        // ring that it never kicked.
        for _ in 0..50 {
            sender.send_to(&numbered(next), (A, 4789)).unwrap();
            next += 1;
        }
        assert_eq!(
            receive_numbers(&mut port, &mut batch, 50),
            (0..50).collect::<Vec<_>>()
        );
        let sent = reply(&mut port, 20, true);
        heard(&sent);
        let unkicked = reply(&mut port, 10, false);

        // Many handovers, each with traffic while nobody owns the socket.
        for round in 0..8 {
            let (fds, state) = hand_over(port);
            assert_eq!(state.queue_id, 0);
            assert_eq!((state.frame_count, state.ring_size), (1024, 256));
            let first = next;
            let waiting = 100;
            for _ in 0..waiting {
                sender.send_to(&numbered(next), (A, 4789)).unwrap();
                next += 1;
            }
            // They wait in the rx ring.
            assert!(poll_readable(fds[0].as_raw_fd(), 2000).unwrap());
            let t = Instant::now();
            port = AfXdpPort::adopt("io-va", fds, &state).expect("adopt");
            if round == 0 {
                eprintln!("adopt took {:?} (1024 frames, rings of 256)", t.elapsed());
            }
            assert_frames_add_up(&port);
            assert_eq!(port.frame_stats().total, 1024);
            if round == 0 {
                // The tx frames the first owner queued go out now.
                drain_tx(&mut port);
                heard(&unkicked);
            }
            let got = receive_numbers(&mut port, &mut batch, waiting);
            assert_eq!(
                got,
                (first..next).collect::<Vec<_>>(),
                "round {round}: every frame that arrived meanwhile, once, in order"
            );
            // Traffic both ways, leaving some tx frames in flight for the
            // next owner.
            for _ in 0..40 {
                sender.send_to(&numbered(next), (A, 4789)).unwrap();
                next += 1;
            }
            assert_eq!(receive_numbers(&mut port, &mut batch, 40).len(), 40);
            let sent = reply(&mut port, 64, true);
            heard(&sent);
            let sent = reply(&mut port, 30, false);
            port.flush().unwrap();
            heard(&sent);
            assert_frames_add_up(&port);
        }
        drain_tx(&mut port);
        let s = port.frame_stats();
        assert_eq!(s.kernel_tx, 0);
        assert_eq!(s.kernel_rx, 256, "fill ring full again");
        assert_eq!(s.free, 1024 - 256, "no frame leaked over the handovers");
        assert_eq!(port.stats().bad_descs, 0);
        let k = port.kernel_stats().unwrap();
        assert_eq!(k.rx_invalid_descs + k.tx_invalid_descs, 0, "{k:?}");
        assert_eq!(k.rx_dropped + k.rx_ring_full, 0, "{k:?}");
    });
}

#[test]
fn adopt_refuses_bad_states_and_touches_nothing() {
    if !common::require_root("network namespaces, XDP, AF_XDP") {
        return;
    }
    let (a, b) = veth_pair("xsk2-");
    let sender = b.run(|| udp_socket((B, 0)));
    a.run(move || {
        let mut prog = XdpProgram::attach("io-va", &[A.into()], 4789).expect("attach XDP");
        let port = AfXdpPort::open("io-va", 0, &handover_cfg()).expect("AF_XDP");
        prog.register_socket(0, port.fd()).unwrap();
        let ([sock, memfd], good) = hand_over(port);
        let dup = |f: &std::os::fd::OwnedFd| f.try_clone().unwrap();
        let refused = |fds: [std::os::fd::OwnedFd; 2], state: &XskHandover, what: &str| {
            let e = AfXdpPort::adopt("io-va", fds, state).expect_err(what);
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{what}: {e}");
            eprintln!("refused ({what}): {e}");
        };
        let both = || [dup(&sock), dup(&memfd)];
        let with = |f: &dyn Fn(&mut XskHandover)| {
            let mut s = good.clone();
            f(&mut s);
            s
        };
        // A frame the kernel holds (on the fill ring: the link is idle).
        let held = (0..1024u32)
            .find(|f| !good.free.iter().any(|&(s, n)| (s..s + n).contains(f)))
            .unwrap();

        // Frames sent now must all be there for the good adopt below.
        for i in 0..20 {
            sender.send_to(&numbered(i), (A, 4789)).unwrap();
        }
        refused(
            both(),
            &with(&|s| {
                let (first, n) = s.free[0];
                s.free.push((first + n - 1, 1));
                s.kernel_rx -= 1;
            }),
            "overlapping runs",
        );
        refused(
            both(),
            &with(&|s| s.free.push((2000, 1))),
            "a run outside the UMEM",
        );
        refused(
            both(),
            &with(&|s| s.kernel_rx += 1),
            "counts that do not add up",
        );
        refused(
            both(),
            &with(&|s| {
                s.free.push((held, 1));
                s.kernel_rx -= 1;
            }),
            "a free frame that is on a ring",
        );
        refused(
            both(),
            &with(&|s| s.zero_copy = true),
            "the wrong bind mode",
        );
        refused(
            both(),
            &with(&|s| s.ring_size = 128),
            "rings smaller than they are",
        );
        refused(
            both(),
            &with(&|s| s.ring_size = 512),
            "rings larger than they are",
        );
        refused(
            both(),
            &with(&|s| s.frame_size = 3000),
            "an invalid frame size",
        );
        refused(
            both(),
            &with(&|s| {
                s.frame_count = 2048;
                s.kernel_rx += 1024;
            }),
            "a memfd of the wrong size",
        );
        let udp = std::os::fd::OwnedFd::from(udp_socket((A, 0)));
        refused([udp, dup(&memfd)], &good, "a UDP socket");
        let file = std::os::fd::OwnedFd::from(tempfile::tempfile().unwrap());
        refused([file, dup(&memfd)], &good, "a plain file as the socket");
        let small = tempfile::tempfile().unwrap();
        small.set_len(4096).unwrap();
        refused(
            [dup(&sock), small.into()],
            &good,
            "a file of the wrong size",
        );
        refused([dup(&memfd), dup(&sock)], &good, "the descriptors swapped");

        // None of that touched the socket: the good state still adopts it,
        // and nothing sent meanwhile is lost.
        let mut port = AfXdpPort::adopt("io-va", [sock, memfd], &good).expect("adopt");
        assert_frames_add_up(&port);
        let mut batch = Batch::new();
        assert_eq!(
            receive_numbers(&mut port, &mut batch, 20),
            (0..20).collect::<Vec<_>>()
        );
        let s = port.frame_stats();
        assert_eq!((s.free, s.kernel_rx, s.kernel_tx), (1024 - 256, 256, 0));
        assert_eq!(port.stats().bad_descs, 0);
        let k = port.kernel_stats().unwrap();
        assert_eq!(k.rx_invalid_descs + k.tx_invalid_descs, 0, "{k:?}");
    });
}
