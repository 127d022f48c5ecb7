//! Netns integration tests of the AF_PACKET port (`offload = true` veth
//! ports) and its receive ring (need root; skipped with a message
//! otherwise). Each test builds its own pair of namespaces joined by a veth
//! pair and tears them down on drop.
#![cfg(target_os = "linux")]

#[path = "io_support/mod.rs"]
mod io_support;

use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_support::{require_root, udp_of_frame, veth_pair, Netns};
use vxrouter::port::packet::PacketPort;
use vxrouter::port::packet_ring::SLOT_SIZE;
use vxrouter::port::sys::poll_readable;
use vxrouter::port::{Batch, IoCounters, Port};

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 1);
/// The MAC the port answers from; the sender's neighbour entry for `A`
/// points at it, so the host kernel on the port's side drops its own copy.
const ROUTER_MAC: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0x99];
const DPORT: u16 = 7100;

fn counters(port: &PacketPort) -> IoCounters {
    let mut c = IoCounters::default();
    port.io_counters(&mut c);
    c
}

fn counter(c: &IoCounters, k: &str) -> u64 {
    *c.0.get(k)
        .unwrap_or_else(|| panic!("no counter {k}: {c:?}"))
}

/// Sets up namespace `b` to send to `A` through the port's MAC, and opens
/// the port on the other end of the veth, in `a`.
fn open(a: &Netns, b: &Netns) -> PacketPort {
    let mac = ROUTER_MAC
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    b.exec(&[
        "ip",
        "neigh",
        "replace",
        "198.18.100.1",
        "lladdr",
        &mac,
        "dev",
        "io-vb",
        "nud",
        "permanent",
    ]);
    // Nothing but the test's own frames from the sender: no IPv6
    // neighbour or router solicitations, no MLD reports.
    b.exec(&["sysctl", "-qw", "net.ipv6.conf.io-vb.disable_ipv6=1"]);
    let mac_b = b.mac("io-vb");
    a.run(move || PacketPort::open("io-va", 1500, mac_b, ROUTER_MAC, None).expect("AF_PACKET port"))
}

/// Reads from `port` until `want` frames came or two seconds passed; returns
/// each frame's UDP payload, in order.
fn read_frames(port: &mut PacketPort, batch: &mut Batch, want: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        poll_readable(port.poll_fd().expect("pollable"), 50).unwrap();
        port.rx_burst(batch).unwrap();
        for p in batch.pkts() {
            if let Some((DPORT, payload)) = udp_of_frame(p.data()) {
                out.push(payload.to_vec());
            }
        }
    }
    out
}

/// Small frames come through the ring's slots, a super-packet too large
/// for a slot comes whole through the socket's queue and is cut into its
/// segments, and the three keep the order they were sent in.
#[test]
fn packet_port_reads_ring_slots_and_queued_super_packets_in_order() {
    if !require_root("packet_port_reads_ring_slots_and_queued_super_packets_in_order") {
        return;
    }
    let (a, b) = veth_pair("io-pk-");
    let mut port = open(&a, &b);
    b.run(|| {
        let s = UdpSocket::bind(("198.18.100.2", 0)).unwrap();
        s.send_to(b"small-one", (A, DPORT)).unwrap();
        // One UDP GSO send: eight 1000-byte datagrams in one skb, which
        // crosses the veth whole (4 KiB past a ring slot).
        let seg: i32 = 1000;
        // SAFETY: plain setsockopt with an int option on a live socket.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                (&seg as *const i32).cast(),
                4,
            )
        };
        assert_eq!(r, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
        let big: Vec<u8> = (0..8000u32).map(|i| (i / 1000) as u8 + b'a').collect();
        assert!(big.len() > SLOT_SIZE);
        s.send_to(&big, (A, DPORT)).unwrap();
        let off: i32 = 0;
        // SAFETY: as above.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                (&off as *const i32).cast(),
                4,
            )
        };
        s.send_to(b"small-two", (A, DPORT)).unwrap();
    });
    let mut batch = Batch::new();
    let got = read_frames(&mut port, &mut batch, 10);
    let mut want = vec![b"small-one".to_vec()];
    for k in 0..8u8 {
        want.push(vec![b'a' + k; 1000]);
    }
    want.push(b"small-two".to_vec());
    assert_eq!(got.len(), want.len(), "frames read");
    assert!(got == want, "frames out of order or changed");
    let c = counters(&port);
    assert!(counter(&c, "packet_rx_ring") >= 2, "{c:?}");
    assert_eq!(counter(&c, "packet_rx_copied"), 1, "{c:?}");
    assert_eq!(counter(&c, "rx_gso_packets"), 1, "{c:?}");
    for k in ["packet_rx_cut", "rx_errors", "packet_rx_drops"] {
        assert_eq!(counter(&c, k), 0, "{k}: {c:?}");
    }
    drop((a, b));
}

/// A burst larger than the ring fills it: the kernel drops the rest and
/// says so (`packet_rx_drops`), the frames that fit come out in order, and
/// the ring takes frames again once it has been read.
#[test]
fn packet_port_ring_overflow_is_counted_and_recovers() {
    if !require_root("packet_port_ring_overflow_is_counted_and_recovers") {
        return;
    }
    let (a, b) = veth_pair("io-pq-");
    let mut port = open(&a, &b);
    const BURST: u32 = 3000;
    b.run(|| {
        let s = UdpSocket::bind(("198.18.100.2", 0)).unwrap();
        for i in 0..BURST {
            s.send_to(&i.to_be_bytes(), (A, DPORT)).unwrap();
        }
    });
    let mut batch = Batch::new();
    let got = read_frames(&mut port, &mut batch, BURST as usize);
    let seqs: Vec<u32> = got
        .iter()
        .map(|p| u32::from_be_bytes(p[..4].try_into().unwrap()))
        .collect();
    assert!(
        !seqs.is_empty() && (seqs.len() as u32) < BURST,
        "read {} of {BURST}",
        seqs.len()
    );
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "out of order");
    let c = counters(&port);
    assert_eq!(
        counter(&c, "packet_rx_drops") + seqs.len() as u64,
        u64::from(BURST),
        "every frame read or counted as dropped: {c:?}"
    );
    // Read empty: a frame sent now gets a slot again.
    b.run(|| {
        let s = UdpSocket::bind(("198.18.100.2", 0)).unwrap();
        s.send_to(b"after", (A, DPORT)).unwrap();
    });
    assert_eq!(
        read_frames(&mut port, &mut batch, 1),
        vec![b"after".to_vec()]
    );
    drop((a, b));
}
