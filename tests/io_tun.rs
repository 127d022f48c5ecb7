//! Netns integration test of the multi-queue TUN port (needs root: without
//! it SKIPPED, a failure under `CI=true`): packets written with tx_burst
//! reach a socket in the namespace, and packets the namespace routes into
//! the device come out of rx_burst.
#![cfg(target_os = "linux")]

mod common;
mod io_support;

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use io_support::{ipv4_udp, Netns};
use vxrouter::port::sys::poll_readable;
use vxrouter::port::tun::TunPort;
use vxrouter::port::{Batch, LinkType, Port};

const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 102, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 18, 102, 2);

#[test]
fn tun_moves_ip_packets_both_ways() {
    if !common::require_root("network namespaces, TUN") {
        return;
    }
    let ns = Netns::new("io-tn-a");
    ns.run(|| {
        let mut ports = TunPort::open("io-tun0", 2, 1400).expect("open TUN");
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[1].queue(), 1);
        assert_ne!(ports[0].fd(), ports[1].fd());
        assert_eq!(ports[0].link_type(), LinkType::RawIp);
        assert_eq!(ports[0].name(), "io-tun0");
        io_support::sh(&["ip", "addr", "add", "198.18.102.1/24", "dev", "io-tun0"]);
        io_support::sh(&["ip", "link", "set", "io-tun0", "up"]);
        let mtu = io_support::sh(&["ip", "link", "show", "io-tun0"]);
        assert!(mtu.contains("mtu 1400"), "{mtu}");
        // Deep enough that a reader off its core for a while loses nothing.
        let qlen = format!("qlen {}", vxrouter::config::DEFAULT_QUEUE_LEN);
        assert!(mtu.contains(&qlen), "{mtu}");

        let mut batch = Batch::new();
        // Nothing queued yet (maybe IPv6 housekeeping): never blocks.
        for p in ports.iter_mut() {
            p.rx_burst(&mut batch).unwrap();
        }

        // tx_burst -> kernel socket, through each queue.
        let sock = UdpSocket::bind((LOCAL, 7000)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        for (q, p) in ports.iter_mut().enumerate() {
            let payload = format!("to-kernel-via-queue-{q}");
            let pkt = ipv4_udp(REMOTE, LOCAL, 7001, 7000, payload.as_bytes());
            assert_eq!(p.tx_burst(&[&pkt]).unwrap(), 1);
            p.flush().unwrap();
            let mut buf = [0u8; 1500];
            let (n, from) = sock
                .recv_from(&mut buf)
                .expect("written packet reaches the socket");
            assert_eq!(&buf[..n], payload.as_bytes());
            assert_eq!(from, (REMOTE, 7001).into());
        }
        assert_eq!(ports[0].stats().tx_packets + ports[1].stats().tx_packets, 2);

        // Kernel socket -> route into the TUN -> rx_burst on some queue.
        for i in 0..8u16 {
            // Different source ports spread flows over the queues.
            let s = UdpSocket::bind((LOCAL, 0)).unwrap();
            s.send_to(format!("from-kernel-{i}").as_bytes(), (REMOTE, 7002 + i))
                .unwrap();
        }
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while seen.len() < 8 && Instant::now() < deadline {
            for p in ports.iter_mut() {
                poll_readable(p.fd(), 20).unwrap();
                p.rx_burst(&mut batch).unwrap();
                for pkt in batch.pkts() {
                    let d = pkt.data();
                    assert_eq!(pkt.headroom(), vxrouter::port::HEADROOM);
                    if d.len() >= 28 && d[0] >> 4 == 4 && d[9] == 17 {
                        let dport = u16::from_be_bytes([d[22], d[23]]);
                        assert_eq!(&d[16..20], &REMOTE.octets());
                        let i = dport - 7002;
                        assert_eq!(&d[28..], format!("from-kernel-{i}").as_bytes());
                        seen.push(i);
                    }
                }
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..8).collect::<Vec<_>>(), "all 8 packets read");
        assert!(ports[0].stats().rx_packets + ports[1].stats().rx_packets >= 8);
    });
    drop(ns);
}

/// A queue length other than the default reaches the device.
#[test]
fn tun_queue_len_is_set_on_the_device() {
    if !common::require_root("network namespaces, TUN") {
        return;
    }
    let ns = Netns::new("io-tn-q");
    ns.run(|| {
        let _ports = TunPort::open_with("io-tunq0", 1, 1400, true, 1000).expect("open TUN");
        let show = io_support::sh(&["ip", "link", "show", "io-tunq0"]);
        assert!(show.contains("qlen 1000"), "{show}");
    });
    drop(ns);
}

#[test]
fn tun_open_rejects_bad_arguments() {
    assert!(TunPort::open("io-tun-x", 0, 1400).is_err());
    assert!(TunPort::open("a-name-that-is-far-too-long", 1, 1400).is_err());
    assert!(TunPort::open("io-tun-x", 1, 9000).is_err());
}
