//! Rough packet rates of the I/O ports in network namespaces of its own
//! (`io-rt-*`, `io-tn-r*`; addresses from 198.18.0.0/15 only): AF_XDP on a
//! veth pair, TUN writes, TUN reads. A bench tool, not a test: it asserts
//! nothing and prints figures. Needs root:
//!
//! ```text
//! cargo bench --bench io_rates [-- afxdp_veth|tun_write|tun_read]
//! ```
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it measures
//! nothing and says so. Every run is bounded (2 s, 1 s, 200 rounds) and
//! its namespaces go when their guards drop, also on panic.

#[path = "../tests/common/mod.rs"]
mod common;
#[cfg(target_os = "linux")]
#[path = "../tests/io_support/mod.rs"]
mod io_support;

/// The probes by name; the optional argument after `--bench` selects those
/// whose name contains it.
#[cfg(target_os = "linux")]
const PROBES: &[(&str, fn())] = &[
    ("afxdp_veth", probes::afxdp_veth),
    ("tun_write", probes::tun_write),
    ("tun_read", probes::tun_read),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("io_rates: a bench tool, nothing to test; measure with `cargo bench --bench io_rates` as root");
        return;
    }
    run(args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(String::as_str));
}

#[cfg(target_os = "linux")]
fn run(filter: Option<&str>) {
    if !common::is_root() {
        eprintln!("io_rates: needs root (network namespaces, XDP, AF_XDP, TUN); nothing measured");
        return;
    }
    for (name, probe) in PROBES {
        if filter.is_none_or(|f| name.contains(f)) {
            probe();
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn run(_filter: Option<&str>) {
    eprintln!("io_rates: Linux only; nothing measured");
}

#[cfg(target_os = "linux")]
mod probes {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::{Duration, Instant};

    use crate::io_support::{self, eth_ipv4_udp, ipv4_udp, veth_pair, Netns};
    use vxrouter::port::afxdp::{AfXdpConfig, AfXdpPort};
    use vxrouter::port::sys::poll_readable;
    use vxrouter::port::tun::TunPort;
    use vxrouter::port::xdp::XdpProgram;
    use vxrouter::port::{Batch, Port};

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 2);
    const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 102, 1);
    const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 18, 102, 2);

    /// CPU time the calling thread has used, in seconds: rates per
    /// CPU-second stay meaningful when the machine is shared and wall-clock
    /// rates do not.
    fn thread_cpu_secs() -> f64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec on our stack for the call.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    }

    /// An AF_XDP sender on one end of a veth pair blasting 64-byte VXLAN
    /// frames at an AF_XDP receiver on the other (uplink program), one
    /// thread each, for 2 s.
    pub fn afxdp_veth() {
        let (a, b) = veth_pair("io-rt-");
        let mac_a = a.mac("io-va");
        let mac_b = b.mac("io-vb");
        let run_for = Duration::from_secs(2);
        let rx = io_support::spawn_in(&a.name, move || {
            let mut prog = XdpProgram::attach("io-va", &[A.into()], 4789).expect("attach XDP");
            let mut port = AfXdpPort::open("io-va", 0, &AfXdpConfig::default()).expect("AF_XDP");
            prog.register_socket(0, port.fd()).unwrap();
            let mut batch = Batch::new();
            let mut n = 0u64;
            let cpu0 = thread_cpu_secs();
            let mut first: Option<Instant> = None;
            let mut last = Instant::now();
            let stop = Instant::now() + run_for + Duration::from_secs(2);
            while Instant::now() < stop {
                let got = port.rx_burst(&mut batch).unwrap() as u64;
                if got > 0 {
                    first.get_or_insert_with(Instant::now);
                    last = Instant::now();
                    n += got;
                } else if first.is_some() && last.elapsed() > Duration::from_millis(200) {
                    break;
                } else {
                    poll_readable(port.fd(), 10).unwrap();
                }
            }
            let secs = first.map(|f| (last - f).as_secs_f64()).unwrap_or(1.0);
            let cpu = thread_cpu_secs() - cpu0;
            (n, secs, cpu, prog.mode(), port.bind_mode())
        });
        std::thread::sleep(Duration::from_millis(300));
        let tx = io_support::spawn_in(&b.name, move || {
            let mut port = AfXdpPort::open("io-vb", 0, &AfXdpConfig::default()).expect("AF_XDP");
            let frame = eth_ipv4_udp(mac_a, mac_b, B, A, 5555, 4789, &[0u8; 18]);
            assert_eq!(frame.len(), 60);
            let frames: Vec<&[u8]> = vec![&frame[..]; 64];
            let start = Instant::now();
            let cpu0 = thread_cpu_secs();
            let mut n = 0u64;
            while start.elapsed() < run_for {
                n += port.tx_burst(&frames).unwrap() as u64;
                port.flush().unwrap();
            }
            (n, start.elapsed().as_secs_f64(), thread_cpu_secs() - cpu0)
        });
        let (sent, tsecs, tcpu) = tx.join().unwrap();
        let (got, rsecs, rcpu, mode, bind) = rx.join().unwrap();
        println!(
            "AF_XDP veth ({mode}, {bind}): tx {:.3} Mpps wall, {:.3} M/cpu-s ({sent} in {tsecs:.2}s); \
             rx {:.3} Mpps wall, {:.3} M/cpu-s ({got} in {rsecs:.2}s)",
            sent as f64 / tsecs / 1e6,
            sent as f64 / tcpu / 1e6,
            got as f64 / rsecs / 1e6,
            got as f64 / rcpu / 1e6,
        );
    }

    /// TUN writes for 1 s: 60-byte IPv4/UDP packets into the namespace's
    /// stack (to a socket nobody reads, so the kernel drops them at the
    /// socket after routing).
    pub fn tun_write() {
        let ns = Netns::new("io-tn-r");
        ns.run(|| {
            let mut ports = TunPort::open("io-tun0", 1, 1400).expect("open TUN");
            io_support::sh(&["ip", "addr", "add", "198.18.102.1/24", "dev", "io-tun0"]);
            io_support::sh(&["ip", "link", "set", "io-tun0", "up"]);
            let _sink = UdpSocket::bind((LOCAL, 7000)).unwrap();
            let pkt = ipv4_udp(REMOTE, LOCAL, 7001, 7000, &[0u8; 32]);
            let frames: Vec<&[u8]> = vec![&pkt[..]; 64];
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < Duration::from_secs(1) {
                n += ports[0].tx_burst(&frames).unwrap() as u64;
            }
            println!(
                "TUN write: {:.3} Mpps ({n} in {:.2}s)",
                n as f64 / start.elapsed().as_secs_f64() / 1e6,
                start.elapsed().as_secs_f64()
            );
        });
    }

    /// Time per packet to read a queue of 256 64-byte datagrams out of the
    /// device (one read(2) each), with and without offloads, 200 rounds.
    pub fn tun_read() {
        let ns = Netns::new("io-tn-rr");
        ns.run(|| {
            for (offload, name) in [(true, "io-tunr0"), (false, "io-tunr1")] {
                let mut ports =
                    TunPort::open_with(name, 1, 1400, offload, vxrouter::config::DEFAULT_QUEUE_LEN)
                        .expect("open TUN");
                let port = &mut ports[0];
                io_support::sh(&["ip", "addr", "add", "198.18.102.1/24", "dev", name]);
                io_support::sh(&["ip", "link", "set", name, "up"]);
                let s = UdpSocket::bind((LOCAL, 0)).unwrap();
                let mut batch = Batch::new_super();
                let mut total = Duration::ZERO;
                let mut pkts = 0u64;
                let mut calls = 0u64;
                for _ in 0..200 {
                    for _ in 0..256 {
                        s.send_to(&[0u8; 36], (REMOTE, 7100)).unwrap();
                    }
                    let t = Instant::now();
                    loop {
                        let n = port.rx_burst(&mut batch).unwrap();
                        calls += 1;
                        pkts += n as u64;
                        if n == 0 {
                            break;
                        }
                    }
                    total += t.elapsed();
                }
                println!(
                    "TUN read, offload {offload}: {:.0} ns/packet ({pkts} packets, {calls} calls)",
                    total.as_nanos() as f64 / pkts as f64
                );
                io_support::sh(&["ip", "addr", "flush", "dev", name]);
            }
        });
    }
}
