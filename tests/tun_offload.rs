//! Netns integration test of TUN offloads (needs root: without it SKIPPED,
//! a failure under `CI=true`). Two namespaces each get a TUN device opened
//! by the test; a forwarding thread moves packets between the two ports the
//! way a worker does (rx_burst, tx_burst, flush every round) and checks
//! every packet it is handed: a complete IPv4 packet, checksums correct, at
//! most the MTU.
//! A TCP stream with TSO then crosses it, and the counters must show that
//! super-packets were read (split) and written (coalesced).
#![cfg(target_os = "linux")]

mod common;
mod io_support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use io_support::{spawn_in, Netns};
use vxrouter::offload;
use vxrouter::port::tun::{TunPort, TunStats};
use vxrouter::port::{Batch, Port};

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 210, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 210, 2);
const DEV: &str = "tunoff0";
const MTU: u16 = 1400;

/// One's-complement sum folded to 16 bits (RFC 1071), not complemented.
fn fold_sum(parts: &[&[u8]]) -> u16 {
    let mut acc: u64 = 0;
    for part in parts {
        for c in part.chunks(2) {
            acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Panics unless `p` is a complete IPv4 packet with correct header and
/// TCP/UDP checksums (what the pipeline may encapsulate onto the wire).
fn check_packet(p: &[u8]) {
    assert!(p.len() >= 20 && p[0] >> 4 == 4, "not IPv4: {p:02x?}");
    let ihl = usize::from(p[0] & 0x0f) * 4;
    assert_eq!(
        usize::from(u16::from_be_bytes([p[2], p[3]])),
        p.len(),
        "total length"
    );
    assert_eq!(fold_sum(&[&p[..ihl]]), 0xffff, "IPv4 header checksum");
    let l4 = &p[ihl..];
    let proto = p[9];
    if proto == 6 || (proto == 17 && l4[6..8] != [0, 0]) {
        let pseudo = [
            &p[12..20],
            &[0, proto],
            &(l4.len() as u16).to_be_bytes()[..],
        ]
        .concat();
        assert_eq!(
            fold_sum(&[&pseudo, l4]),
            0xffff,
            "transport checksum, proto {proto}"
        );
    }
}

/// What the forwarder saw.
#[derive(Debug, Default)]
struct Seen {
    packets: u64,
    largest: usize,
    /// Most segments ever left pending in a port after an rx_burst.
    max_pending: usize,
    /// Super-packets handed over whole, and the segments they carried.
    whole: u64,
    whole_segs: u64,
    a: TunStats,
    b: TunStats,
}

/// Moves packets between the two ports until `stop`, checking each one.
/// With `whole`, the batch holds super-packets: each is checked segment by
/// segment (as cut by `offload::segment`) and handed to the other port whole, or
/// as those segments when it takes no super-packets.
fn forward(mut a: TunPort, mut b: TunPort, stop: Arc<AtomicBool>, whole: bool) -> Seen {
    let mut seen = Seen::default();
    let mut batch = if whole {
        Batch::new_super()
    } else {
        Batch::new()
    };
    while !stop.load(Ordering::Relaxed) {
        let mut moved = 0;
        for dir in 0..2 {
            let (src, dst) = if dir == 0 {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            let n = src.rx_burst(&mut batch).expect("rx_burst");
            seen.max_pending = seen.max_pending.max(src.rx_pending());
            if n == 0 {
                continue;
            }
            moved += n;
            let mut frames: Vec<&[u8]> = Vec::with_capacity(n);
            let mut cut: Vec<Vec<u8>> = Vec::new();
            for p in batch.pkts() {
                if let Some(g) = p.gso {
                    let l = offload::Layout::parse(p.data(), offload::Encap::Ip, g)
                        .expect("super-packet layout");
                    assert_eq!(usize::from(g.segs), l.segments);
                    seen.whole += 1;
                    seen.whole_segs += l.segments as u64;
                    let mut segs = Vec::new();
                    for i in 0..l.segments {
                        let mut s = vec![0u8; l.segment_len(i)];
                        let r = offload::write_headers(p.data(), &l, i, &mut s, false);
                        s[l.payload..].copy_from_slice(&p.data()[r]);
                        check_packet(&s);
                        assert!(s.len() <= usize::from(MTU), "segment over the MTU");
                        seen.largest = seen.largest.max(s.len());
                        segs.push(s);
                    }
                    seen.packets += l.segments as u64;
                    if dst.takes_gso() {
                        // Frames before it leave first, as forward_burst does.
                        assert_eq!(dst.tx_burst(&frames).expect("tx_burst"), frames.len());
                        frames.clear();
                        assert!(
                            dst.tx_gso(p.data(), &l).expect("tx_gso"),
                            "super-packet refused"
                        );
                    } else {
                        cut.extend(segs);
                    }
                    continue;
                }
                check_packet(p.data());
                assert!(
                    p.len() <= usize::from(MTU),
                    "{} bytes over the MTU",
                    p.len()
                );
                seen.largest = seen.largest.max(p.len());
                frames.push(p.data());
            }
            seen.packets += frames.len() as u64;
            assert_eq!(dst.tx_burst(&frames).expect("tx_burst"), frames.len());
            let cut: Vec<&[u8]> = cut.iter().map(|s| &s[..]).collect();
            assert_eq!(dst.tx_burst(&cut).expect("tx_burst"), cut.len());
        }
        a.flush().unwrap();
        b.flush().unwrap();
        if moved == 0 {
            let mut fds = [
                libc::pollfd {
                    fd: a.fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: b.fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: fds is a valid array of two pollfd for the call.
            unsafe { libc::poll(fds.as_mut_ptr(), 2, 5) };
        }
    }
    seen.a = a.stats();
    seen.b = b.stats();
    seen
}

/// Two namespaces with a TUN each and a forwarder between them.
struct Bridge {
    a: Netns,
    b: Netns,
    stop: Arc<AtomicBool>,
    fwd: Option<thread::JoinHandle<Seen>>,
}

impl Bridge {
    /// `advmss`: the MSS B announces to A (small values make A's
    /// super-packets carry more segments than a batch holds).
    fn new(tag: &str, a_offload: bool, b_offload: bool, advmss: Option<u32>) -> Bridge {
        Self::with(tag, a_offload, b_offload, advmss, false)
    }

    /// [`Bridge::new`]; `whole`: the forwarder passes super-packets whole.
    fn with(
        tag: &str,
        a_offload: bool,
        b_offload: bool,
        advmss: Option<u32>,
        whole: bool,
    ) -> Bridge {
        let a = Netns::new(&format!("tunoff-{tag}a"));
        let b = Netns::new(&format!("tunoff-{tag}b"));
        for ns in [&a, &b] {
            // No IPv6 housekeeping (router solicitations) on the devices:
            // the forwarder checks that everything it sees is IPv4.
            ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
            ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        }
        let mut ports = Vec::new();
        for (ns, me, peer, off) in [(&a, A, B, a_offload), (&b, B, A, b_offload)] {
            let mut q = ns.run(move || {
                TunPort::open_with(DEV, 1, MTU, off, vxrouter::config::DEFAULT_QUEUE_LEN)
                    .expect("open TUN")
            });
            assert_eq!(q.len(), 1);
            assert_eq!(q[0].offload(), off);
            ports.push(q.remove(0));
            ns.exec(&["ip", "addr", "add", &format!("{me}/32"), "dev", DEV]);
            ns.exec(&["ip", "link", "set", DEV, "up"]);
            let mut route = vec!["ip", "route", "add", "", "dev", DEV];
            let dst = format!("{peer}/32");
            route[3] = &dst;
            let mss = advmss.map(|m| m.to_string());
            if let (Some(m), true) = (&mss, me == B) {
                route.extend_from_slice(&["advmss", m]);
            }
            ns.exec(&route);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let pb = ports.pop().unwrap();
        let pa = ports.pop().unwrap();
        let s = stop.clone();
        let fwd = Some(thread::spawn(move || forward(pa, pb, s, whole)));
        Bridge { a, b, stop, fwd }
    }

    fn finish(mut self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.fwd
            .take()
            .unwrap()
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(f) = self.fwd.take() {
            let _ = f.join();
        }
    }
}

fn pattern(i: usize) -> u8 {
    (i * 131 + i / 4099) as u8
}

/// Sends `bytes` from A to B over TCP and returns how long it took; panics
/// unless B receives exactly the bytes sent.
fn stream(br: &Bridge, bytes: usize) -> Duration {
    let port = 5201;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = spawn_in(&br.b.name, move || {
        let l = TcpListener::bind((B, port)).expect("listen");
        ready_tx.send(()).unwrap();
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = s.read(&mut buf).expect("read (stalled stream?)");
            if n == 0 {
                break;
            }
            for (k, &v) in buf[..n].iter().enumerate() {
                assert_eq!(v, pattern(got + k), "byte {} corrupted", got + k);
            }
            got += n;
        }
        got
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server up");
    let t0 = Instant::now();
    let client = spawn_in(&br.a.name, move || {
        let addr = SocketAddr::from((B, port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        let data: Vec<u8> = (0..bytes).map(pattern).collect();
        s.write_all(&data).expect("write");
        s.shutdown(std::net::Shutdown::Write).unwrap();
    });
    client
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    let got = server
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert_eq!(got, bytes, "bytes received");
    t0.elapsed()
}

#[test]
fn tso_stream_is_split_and_coalesced() {
    if !common::require_root("network namespaces, TUN") {
        return;
    }
    let br = Bridge::new("t", true, true, None);
    let took = stream(&br, 16 << 20);
    let seen = br.finish();
    eprintln!("16 MiB in {took:?}: {seen:?}");
    assert!(seen.a.rx_gso_packets > 0, "A's TSO super-packets were read");
    assert!(seen.b.tx_gso_packets > 0, "segments to B were coalesced");
    assert_eq!(seen.a.rx_errors + seen.b.rx_errors, 0);
    assert_eq!(seen.a.tx_errors + seen.b.tx_errors, 0);
    assert_eq!(seen.a.tx_dropped + seen.b.tx_dropped, 0);
    // MSS = MTU - 40: full-sized segments were produced by the split.
    assert_eq!(seen.largest, usize::from(MTU));
    assert_eq!(
        seen.b.tx_packets, seen.a.rx_packets,
        "every segment read from A written to B"
    );
}

#[test]
fn tso_stream_crosses_whole() {
    if !common::require_root("network namespaces, TUN") {
        return;
    }
    let br = Bridge::with("w", true, true, None, true);
    let took = stream(&br, 16 << 20);
    let seen = br.finish();
    eprintln!("16 MiB in {took:?}: {seen:?}");
    assert!(seen.a.rx_whole > 0, "A's TSO super-packets were kept whole");
    assert_eq!(seen.a.rx_whole, seen.whole, "and handed over as such");
    assert!(
        seen.whole_segs > 16 * seen.whole,
        "each carried many segments"
    );
    assert!(
        seen.b.tx_gso_packets >= seen.whole,
        "and written whole to B"
    );
    assert_eq!(seen.a.rx_errors + seen.b.rx_errors, 0);
    assert_eq!(seen.a.tx_errors + seen.b.tx_errors, 0);
    assert_eq!(seen.a.tx_dropped + seen.b.tx_dropped, 0);
    assert_eq!(seen.largest, usize::from(MTU));
    assert_eq!(
        seen.b.tx_packets, seen.a.rx_packets,
        "every segment accounted for"
    );

    // Whole from A, cut for a B without offloads.
    let br = Bridge::with("x", true, false, None, true);
    stream(&br, 4 << 20);
    let seen = br.finish();
    assert!(seen.whole > 0);
    assert_eq!(seen.b.tx_gso_packets, 0);
    assert_eq!(seen.a.rx_errors + seen.b.tx_errors, 0);
}

#[test]
fn small_mss_super_packets_carry_over_batches() {
    if !common::require_root("network namespaces, TUN") {
        return;
    }
    let br = Bridge::new("m", true, true, Some(536));
    stream(&br, 8 << 20);
    let seen = br.finish();
    eprintln!("{seen:?}");
    assert!(seen.a.rx_gso_packets > 0);
    assert!(
        seen.max_pending > 0,
        "a super-packet had more segments than the batch"
    );
    assert!(seen.largest <= 536 + 40 + 12, "segments follow the MSS");
    assert_eq!(seen.a.rx_errors, 0);
}

#[test]
fn offload_and_plain_ports_interoperate() {
    if !common::require_root("network namespaces, TUN") {
        return;
    }
    // A with offloads sends super-packets, B plain takes single segments;
    // the reverse direction (ACKs) goes plain to offload.
    let br = Bridge::new("p", true, false, None);
    stream(&br, 4 << 20);
    let seen = br.finish();
    assert!(seen.a.rx_gso_packets > 0);
    assert_eq!(seen.b.tx_gso_packets, 0);
    assert_eq!(seen.b.rx_gso_packets, 0);
    assert_eq!(seen.a.rx_errors + seen.b.tx_errors, 0);

    // And plain A to offload B.
    let br = Bridge::new("q", false, true, None);
    stream(&br, 4 << 20);
    let seen = br.finish();
    assert_eq!(seen.a.rx_gso_packets, 0);
    assert!(seen.b.tx_gso_packets > 0);
}

/// A container's `UDP_SEGMENT` writes (QUIC-style GSO) cross whole: read
/// as one super-packet, checked datagram by datagram, written whole to B,
/// whose kernel hands the datagrams to a plain socket one by one, intact.
#[test]
fn udp_gso_writes_cross_whole() {
    if !common::require_root("network namespaces, TUN") {
        return;
    }
    let br = Bridge::with("g", true, true, None, true);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = spawn_in(&br.b.name, move || {
        let s = UdpSocket::bind((B, 6001)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        while got.len() < 200 {
            match s.recv(&mut buf) {
                Ok(n) => got.push(buf[..n].to_vec()),
                Err(_) => break,
            }
        }
        got
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    spawn_in(&br.a.name, move || {
        let s = UdpSocket::bind((A, 0)).unwrap();
        let seg: libc::c_int = 1200;
        // SAFETY: a valid socket and a c_int option value of its size.
        let r = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                (&seg as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "UDP_SEGMENT");
        for round in 0..20u8 {
            // Ten datagrams per write, the last one shorter.
            let msg: Vec<u8> = (0..9 * 1200 + 500)
                .map(|k| (k / 1200) as u8 ^ round)
                .collect();
            s.send_to(&msg, (B, 6001)).unwrap();
            thread::sleep(Duration::from_millis(2));
        }
    })
    .join()
    .unwrap();
    let got = server.join().unwrap();
    let seen = br.finish();
    assert_eq!(got.len(), 200, "every datagram arrived: {seen:?}");
    for (i, m) in got.iter().enumerate() {
        let (round, k) = ((i / 10) as u8, i % 10);
        assert_eq!(m.len(), if k == 9 { 500 } else { 1200 }, "datagram {i}");
        assert!(
            m.iter().all(|&v| v == (k as u8) ^ round),
            "datagram {i} corrupted"
        );
    }
    assert!(
        seen.a.rx_whole >= 20,
        "A's USO writes were kept whole: {seen:?}"
    );
    assert!(
        seen.b.tx_gso_packets >= 20,
        "and written whole to B: {seen:?}"
    );
    assert_eq!(seen.a.rx_errors + seen.b.tx_errors, 0);
}

#[test]
fn udp_checksums_are_completed() {
    if !common::require_root("network namespaces, TUN") {
        return;
    }
    // The container kernel leaves UDP checksums partial on an offload TUN;
    // the forwarder's check_packet proves they were completed.
    let br = Bridge::new("u", true, true, None);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = spawn_in(&br.b.name, move || {
        let s = UdpSocket::bind((B, 6000)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        while got.len() < 200 {
            match s.recv(&mut buf) {
                Ok(n) => got.push(buf[..n].to_vec()),
                Err(_) => break,
            }
        }
        got
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    spawn_in(&br.a.name, move || {
        let s = UdpSocket::bind((A, 0)).unwrap();
        for i in 0..200u32 {
            let len = 1 + (i as usize * 37) % 1300;
            let msg: Vec<u8> = (0..len).map(|k| (k as u32 + i) as u8).collect();
            s.send_to(&msg, (B, 6000)).unwrap();
            if i % 20 == 0 {
                thread::sleep(Duration::from_millis(2));
            }
        }
    })
    .join()
    .unwrap();
    let got = server.join().unwrap();
    let seen = br.finish();
    assert_eq!(got.len(), 200, "every datagram arrived: {seen:?}");
    for (i, m) in got.iter().enumerate() {
        let len = 1 + (i * 37) % 1300;
        assert_eq!(m.len(), len);
        assert!(m.iter().enumerate().all(|(k, &v)| v == (k + i) as u8));
    }
    assert_eq!(seen.a.rx_errors, 0);
}
