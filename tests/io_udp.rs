//! Netns tests of the UDP uplink port (`vxrouter::port::udp::UdpPort`)
//! against real kernel sockets: two namespaces joined by a veth pair, a
//! port in each (needs root: without it SKIPPED, a failure under `CI=true`).
#![cfg(target_os = "linux")]

mod common;
mod gso_support;
#[path = "io_support/mod.rs"]
mod io_support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use gso_support::{cut, data, super_tcp, super_udp};
use io_support::veth_pair;
use vxrouter::offload;
use vxrouter::offload::outer::{parse_tx, synth_rx};
use vxrouter::port::sys::poll_readable;
use vxrouter::port::udp::{UdpConfig, UdpPort};
use vxrouter::port::{Batch, Gso, IoCounters, Port, MAX_FRAME};

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 2);
const MAC: [u8; 6] = [2, 0, 0xc6, 0x12, 0x64, 2];

/// An encapsulated frame as the pipeline hands it to the uplink: to B's
/// VXLAN port, source port `sport`, a VXLAN header and `len` bytes whose
/// first four after the header carry `seq`.
fn frame(sport: u16, seq: u32, len: usize) -> Vec<u8> {
    let mut payload = vec![0u8; len];
    payload[..8].copy_from_slice(&[0x08, 0, 0, 0, 0, 0, 42, 0]);
    payload[8..12].copy_from_slice(&seq.to_be_bytes());
    let mut out = vec![0u8; MAX_FRAME];
    let n = synth_rx(
        &mut out,
        [2, 0, 0, 0, 0, 9],
        SocketAddr::new(IpAddr::V4(A), sport),
        SocketAddr::new(IpAddr::V4(B), 4789),
        &payload,
    )
    .expect("frame fits");
    out.truncate(n);
    out
}

/// A port on device `dev` bound to `ip`:4789, default settings.
fn open_port(dev: &str, ip: Ipv4Addr) -> UdpPort {
    UdpPort::open(
        dev,
        SocketAddr::new(IpAddr::V4(ip), 4789),
        MAC,
        &UdpConfig::default(),
    )
    .unwrap_or_else(|e| panic!("UDP port on {ip}: {e}"))
}

fn counters(p: &UdpPort) -> IoCounters {
    let mut c = IoCounters::default();
    p.io_counters(&mut c);
    c
}

/// 600 frames of one flow in one burst: more than one plan holds, so the
/// port sends it in several rounds of GSO sends. Every frame is
/// taken, all arrive in order at the peer, in GSO sends and GRO reads of
/// many datagrams each, and the receiving port hands them out 64 at a time
/// with the outer headers the pipeline expects.
#[test]
fn a_large_burst_arrives_whole_and_in_order() {
    if !common::require_root("network namespaces") {
        return;
    }
    let (a, b) = veth_pair("io-udp1-");
    const N: u32 = 600;
    const LEN: usize = 1000;
    let receiver = b.run(|| open_port("io-vb", B));
    let (sent, sender_io, tx_ports) = a.run(|| {
        let mut port = open_port("io-va", A);
        let frames: Vec<Vec<u8>> = (0..N).map(|i| frame(0xc123, i, LEN)).collect();
        let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        let taken = port.tx_burst(&refs).expect("tx_burst");
        port.flush().expect("flush");
        (taken, counters(&port), port.tx_ports())
    });
    assert_eq!(sent, N as usize, "every frame is taken");
    let sends = sender_io.0["udp_tx_sends"];
    assert_eq!(
        sender_io.0["udp_tx_datagrams"],
        u64::from(N),
        "{sender_io:?}"
    );
    assert!(
        sends * 10 < u64::from(N),
        "too few datagrams per GSO send: {sender_io:?}"
    );
    for k in ["udp_tx_full", "udp_tx_errors", "udp_tx_malformed"] {
        assert_eq!(sender_io.0[k], 0, "{k}: {sender_io:?}");
    }

    let (seqs, receiver_io) = b.run(move || {
        let mut port = receiver;
        let mut batch = Batch::new();
        let mut seqs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while seqs.len() < N as usize && Instant::now() < deadline {
            poll_readable(port.poll_fd().expect("fd"), 50).expect("poll");
            let n = port.rx_burst(&mut batch).expect("rx_burst");
            assert!(n <= 64);
            for p in batch.pkts() {
                // A received frame, read like an outgoing one: from A's
                // sending socket to B's VXLAN port, the payload intact.
                let parts = parse_tx(p.data()).expect("synthesised frame parses");
                assert_eq!(parts.dst, SocketAddr::new(IpAddr::V4(B), 4789));
                assert_eq!(&p.data()[14 + 12..14 + 16], &A.octets());
                assert!(tx_ports.contains(&parts.src_port), "{}", parts.src_port);
                assert_eq!(parts.payload.len(), LEN);
                seqs.push(u32::from_be_bytes(parts.payload[8..12].try_into().unwrap()));
            }
        }
        (seqs, counters(&port))
    });
    assert_eq!(seqs, (0..N).collect::<Vec<_>>(), "lost or reordered");
    assert!(
        receiver_io.0["udp_rx_coalesced"] > 0,
        "no GRO train: {receiver_io:?}"
    );
    assert!(
        receiver_io.0["udp_rx_reads"] < u64::from(N) / 4,
        "{receiver_io:?}"
    );
    assert_eq!(
        receiver_io
            .0
            .get("udp_rx_socket_drops")
            .copied()
            .unwrap_or(0),
        0
    );
}

/// A device without transmit checksum offload: kernels before 6.11 refuse
/// GSO sends there with EIO, and the port then sends every datagram on its
/// own, for this burst and the next; newer kernels segment in software.
/// Either way no datagram is lost and no error reaches the worker.
#[test]
fn without_checksum_offload_every_datagram_arrives() {
    if !common::require_root("network namespaces") {
        return;
    }
    let (a, b) = veth_pair("io-udp3-");
    assert!(
        a.exec_ok(&["ethtool", "-K", "io-va", "tx", "off"]),
        "ethtool"
    );
    const N: u32 = 40;
    let receiver = b.run(|| open_port("io-vb", B));
    let (gso_before, gso_after, sender_io) = a.run(|| {
        let mut port = open_port("io-va", A);
        let before = port.max_gso_segments();
        for half in 0..2 {
            let frames: Vec<Vec<u8>> = (0..N / 2)
                .map(|i| frame(0xc123, half * (N / 2) + i, 700))
                .collect();
            let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
            assert_eq!(port.tx_burst(&refs).expect("tx_burst"), refs.len());
            port.flush().expect("no error reaches the worker");
        }
        (before, port.max_gso_segments(), counters(&port))
    });
    assert!(gso_before > 1, "the kernel offers UDP GSO");
    assert_eq!(
        sender_io.0["udp_tx_datagrams"],
        u64::from(N),
        "{sender_io:?}"
    );
    let sends = sender_io.0["udp_tx_sends"];
    if gso_after == 1 {
        assert_eq!(sends, u64::from(N), "one send per datagram once GSO is off");
    } else {
        assert_eq!(sends, 2, "one GSO send per burst: {sender_io:?}");
    }
    assert_eq!(sender_io.0["udp_tx_errors"], 0, "{sender_io:?}");
    let seqs = b.run(move || {
        let mut port = receiver;
        let mut batch = Batch::new();
        let mut seqs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while seqs.len() < N as usize && Instant::now() < deadline {
            poll_readable(port.poll_fd().expect("fd"), 50).expect("poll");
            port.rx_burst(&mut batch).expect("rx_burst");
            for p in batch.pkts() {
                let parts = parse_tx(p.data()).expect("synthesised frame parses");
                seqs.push(u32::from_be_bytes(parts.payload[8..12].try_into().unwrap()));
            }
        }
        seqs
    });
    assert_eq!(seqs, (0..N).collect::<Vec<_>>(), "lost or reordered");
}

/// Datagrams that cannot be VXLAN still reach the pipeline (which drops and
/// counts them by name) or are counted by the port: an empty one becomes a
/// frame with an empty payload, a short one a short frame, and one too
/// large for a packet buffer is counted as `udp_rx_oversize`. Nothing
/// panics or loops.
#[test]
fn odd_datagrams_are_handed_on_or_counted() {
    if !common::require_root("network namespaces") {
        return;
    }
    let (a, b) = veth_pair("io-udp2-");
    let receiver = b.run(|| open_port("io-vb", B));
    a.run(|| {
        let s = std::net::UdpSocket::bind((A, 0)).expect("socket");
        for len in [0usize, 3, 2000, 30] {
            s.send_to(&vec![0x5a; len], (B, 4789)).expect("send");
        }
    });
    let (lens, io) = b.run(move || {
        let mut port = receiver;
        let mut batch = Batch::new();
        let mut lens = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while lens.len() < 3 && Instant::now() < deadline {
            poll_readable(port.poll_fd().expect("fd"), 50).expect("poll");
            port.rx_burst(&mut batch).expect("rx_burst");
            lens.extend(batch.pkts().iter().map(|p| p.len()));
        }
        (lens, counters(&port))
    });
    // Ethernet 14 + IPv4 20 + UDP 8 in front of each payload.
    assert_eq!(lens, vec![42, 45, 72], "{io:?}");
    assert_eq!(io.0["udp_rx_oversize"], 1, "{io:?}");
    assert_eq!(io.0["udp_rx_datagrams"], 3, "{io:?}");
}

/// `inner` (an IP packet) behind VXLAN from A's `sport` to B's VXLAN port,
/// as the pipeline hands an encapsulated frame to the uplink.
fn vxlan_frame(sport: u16, inner: &[u8]) -> Vec<u8> {
    let mut payload = vec![0u8; 8 + 14 + inner.len()];
    payload[..8].copy_from_slice(&[0x08, 0, 0, 0, 0, 0, 42, 0]);
    payload[8..14].copy_from_slice(&[2, 0x42, 0, 0, 0, 2]);
    payload[14..20].copy_from_slice(&[2, 0x42, 0, 0, 0, 1]);
    payload[20..22].copy_from_slice(&[0x08, 0x00]);
    payload[22..].copy_from_slice(inner);
    let mut out = vec![0u8; payload.len() + 64];
    let n = synth_rx(
        &mut out,
        [2, 0, 0, 0, 0, 9],
        SocketAddr::new(IpAddr::V4(A), sport),
        SocketAddr::new(IpAddr::V4(B), 4789),
        &payload,
    )
    .expect("frame fits");
    out.truncate(n);
    out
}

/// The inner IP packet of a received frame, its TCP checksum field zeroed
/// (a super-packet's is not defined).
/// The layout of VXLAN super-packet frame `f` as the data plane parses it
/// before handing it to the uplink.
fn uplink_layout(f: &[u8], gso: Gso) -> offload::Layout {
    offload::Layout::parse(f, offload::Encap::Vxlan, gso).expect("super-packet layout")
}

fn inner_of(frame: &[u8]) -> Vec<u8> {
    let mut ip = frame[14 + 20 + 8 + 8 + 14..].to_vec();
    ip[20 + 16..20 + 18].fill(0);
    ip
}

/// Receives on `port` until `want` wire packets (segments) arrived or 3 s
/// passed; returns every frame with its annotation.
fn receive(port: &mut UdpPort, batch: &mut Batch, want: u64) -> Vec<(Vec<u8>, Option<Gso>)> {
    let mut got = Vec::new();
    let mut segs = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while segs < want && Instant::now() < deadline {
        poll_readable(port.poll_fd().expect("fd"), 50).expect("poll");
        port.rx_burst(batch).expect("rx_burst");
        segs += batch.segments();
        got.extend(batch.pkts().iter().map(|p| (p.data().to_vec(), p.gso)));
    }
    got
}

/// A TCP super-packet handed to the uplink whole leaves in one GSO send of
/// its 44 segments (headers written per segment beside slices of the
/// payload), arrives as one GRO train, and the receiving port hands it to
/// the pipeline as one super-packet again: the same inner packet, every
/// segment's checksum verified on the way. Into one-frame buffers the same
/// train comes out as its 44 segments, as tun-rs would cut them.
#[test]
fn a_super_packet_crosses_in_one_send_and_comes_back_whole() {
    if !common::require_root("network namespaces") {
        return;
    }
    let (a, b) = veth_pair("io-udp4-");
    let inner = super_tcp(
        false,
        &[198, 19, 1, 2],
        &[198, 19, 2, 2],
        0x18,
        &data(44 * 1378),
    );
    let gso = Gso::for_payload(1378, 44 * 1378);
    assert_eq!(gso.segs, 44);
    let f = vxlan_frame(0xc123, &inner);
    let mut receiver = b.run(|| open_port("io-vb", B));
    let send = {
        let f = f.clone();
        move || {
            let mut port = open_port("io-va", A);
            assert!(port.takes_gso());
            assert!(port.tx_gso(&f, &uplink_layout(&f, gso)).expect("tx_gso"));
            port.flush().expect("flush");
            counters(&port)
        }
    };
    let io = a.run(send.clone());
    assert_eq!(io.0["udp_tx_gso_packets"], 1, "{io:?}");
    assert_eq!(io.0["udp_tx_sends"], 1, "one GSO send: {io:?}");
    assert_eq!(io.0["udp_tx_datagrams"], 44, "{io:?}");
    let (got, rx_io, receiver2) = b.run(move || {
        let mut batch = Batch::new_super();
        let got = receive(&mut receiver, &mut batch, 44);
        let io = counters(&receiver);
        (got, io, receiver)
    });
    assert_eq!(got.len(), 1, "one super-packet: {rx_io:?}");
    let (frame, g) = &got[0];
    assert_eq!(*g, Some(gso));
    let mut want = inner.clone();
    want[20 + 16..20 + 18].fill(0);
    assert!(inner_of(frame) == want, "the inner packet crossed whole");
    assert_eq!(rx_io.0["udp_rx_super"], 1, "{rx_io:?}");
    assert_eq!(rx_io.0["udp_rx_datagrams"], 44, "{rx_io:?}");

    // Again, into one-frame buffers: the 44 segments, each as cut by tun-rs.
    a.run(send);
    let got = b.run(move || {
        let mut port = receiver2;
        receive(&mut port, &mut Batch::new(), 44)
    });
    let segs: Vec<Vec<u8>> = got
        .iter()
        .map(|(f, g)| {
            assert!(g.is_none());
            f[14 + 20 + 8 + 8 + 14..].to_vec()
        })
        .collect();
    assert_eq!(segs, cut(&inner, 1378));
}

/// A damaged segment in a train is never coalesced: the train becomes the
/// super-packet before it, the damaged segment alone (for the container's
/// kernel to drop) and the super-packet after it.
#[test]
fn a_damaged_segment_splits_the_train() {
    if !common::require_root("network namespaces") {
        return;
    }
    let (a, b) = veth_pair("io-udp5-");
    let inner = super_tcp(
        false,
        &[198, 19, 1, 2],
        &[198, 19, 2, 2],
        0x10,
        &data(10 * 1378),
    );
    let mut frames: Vec<Vec<u8>> = cut(&inner, 1378)
        .iter()
        .map(|s| vxlan_frame(0xc124, s))
        .collect();
    let last = frames[5].len() - 1;
    frames[5][last] ^= 0x40;
    let mut receiver = b.run(|| open_port("io-vb", B));
    a.run(move || {
        let mut port = open_port("io-va", A);
        let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        assert_eq!(port.tx_burst(&refs).expect("tx_burst"), 10);
        let io = counters(&port);
        assert_eq!(io.0["udp_tx_sends"], 1, "one GSO send: {io:?}");
    });
    let got = b.run(move || receive(&mut receiver, &mut Batch::new_super(), 10));
    let shape: Vec<u16> = got.iter().map(|(_, g)| g.map_or(1, |g| g.segs)).collect();
    assert_eq!(shape, vec![5, 1, 4], "coalesced around the damaged segment");
    // And each part is what it should be: segments 0..5 whole, the damaged
    // one as sent, 6..10 whole.
    let l = offload::Layout::parse(&got[0].0, offload::Encap::Vxlan, got[0].1.unwrap())
        .expect("layout");
    assert_eq!(l.segments, 5);
    assert_eq!(got[1].0.len(), 14 + 20 + 8 + 8 + 14 + 20 + 32 + 1378);
}

/// The same for a UDP super-packet (a container's `UDP_SEGMENT` write):
/// one GSO send of its datagrams, one super-packet again on the far side.
#[test]
fn a_udp_super_packet_crosses_in_one_send_and_comes_back_whole() {
    if !common::require_root("network namespaces") {
        return;
    }
    let (a, b) = veth_pair("io-udp6-");
    let inner = super_udp(
        false,
        &[198, 19, 1, 2],
        &[198, 19, 2, 2],
        &data(30 * 1200 + 33),
    );
    let gso = Gso::for_payload(1200, 30 * 1200 + 33);
    assert_eq!(gso.segs, 31);
    let f = vxlan_frame(0xc125, &inner);
    let mut receiver = b.run(|| open_port("io-vb", B));
    let io = a.run(move || {
        let mut port = open_port("io-va", A);
        assert!(port.tx_gso(&f, &uplink_layout(&f, gso)).expect("tx_gso"));
        counters(&port)
    });
    assert_eq!(io.0["udp_tx_sends"], 1, "one GSO send: {io:?}");
    assert_eq!(io.0["udp_tx_datagrams"], 31, "{io:?}");
    let got = b.run(move || receive(&mut receiver, &mut Batch::new_super(), 31));
    assert_eq!(got.len(), 1, "one super-packet");
    assert_eq!(got[0].1, Some(gso));
    let mut ip = got[0].0[14 + 20 + 8 + 8 + 14..].to_vec();
    let mut want = inner.clone();
    for p in [&mut ip, &mut want] {
        p[20 + 6..20 + 8].fill(0);
    }
    assert!(ip == want, "the inner packet crossed whole");
    let segs = cut(&inner, 1200);
    assert_eq!(segs.len(), 31);
}

/// A port told not to coalesce (a host with no container port that takes
/// super-packets) hands the same train on datagram by datagram, even into
/// super-packet buffers.
#[test]
fn a_port_without_coalescing_hands_on_datagrams() {
    if !common::require_root("network namespaces") {
        return;
    }
    let (a, b) = veth_pair("io-udp7-");
    let inner = super_udp(false, &[198, 19, 1, 2], &[198, 19, 2, 2], &data(10 * 1000));
    let gso = Gso::for_payload(1000, 10 * 1000);
    let f = vxlan_frame(0xc126, &inner);
    let mut receiver = b.run(|| {
        let cfg = UdpConfig {
            coalesce: false,
            ..UdpConfig::default()
        };
        UdpPort::open("io-vb", SocketAddr::new(IpAddr::V4(B), 4789), MAC, &cfg).expect("port")
    });
    a.run(move || {
        let mut port = open_port("io-va", A);
        assert!(port.tx_gso(&f, &uplink_layout(&f, gso)).expect("tx_gso"));
    });
    let got = b.run(move || receive(&mut receiver, &mut Batch::new_super(), 10));
    assert_eq!(got.len(), 10, "one frame per datagram");
    assert!(got.iter().all(|(_, g)| g.is_none()));
    let segs: Vec<Vec<u8>> = got
        .iter()
        .map(|(f, _)| f[14 + 20 + 8 + 8 + 14..].to_vec())
        .collect();
    assert_eq!(segs, cut(&inner, 1000));
}
