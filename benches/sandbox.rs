//! What a container's interface costs the router: `host::sandbox`
//! building and removing a veth and a TUN (two queues opened by the
//! router, as a live attach does), against the `ip`-spawning
//! `host::netns::setup_veth` the topology ports use, measured in the same
//! run. The router side runs on a thread inside a namespace of its own
//! (`sbxb-r`), the container's is `sbxb-c`; addresses from 198.18.0.0/15
//! and 2001:2::/48 only. Needs root:
//!
//! ```text
//! cargo bench --bench sandbox [-- FILTER]
//! ```
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it measures
//! nothing and says so. Each benchmark is bounded by criterion's sample
//! size and measurement time; the namespaces go when their guards drop,
//! also on panic.

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!(
            "sandbox: a bench, nothing to test; measure with `cargo bench --bench sandbox` as root"
        );
        return;
    }
    #[cfg(target_os = "linux")]
    linux::run();
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::IpAddr;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use criterion::Criterion;
    use ipnet::IpNet;
    use vxrouter::host::{netns, sandbox};
    use vxrouter::port::tun::TunPort;

    use crate::common::{self, Netns};

    pub fn run() {
        if !common::is_root() {
            eprintln!("sandbox: needs root (network namespaces, veth, TUN); nothing measured");
            return;
        }
        let router = Netns::new("sbxb-r");
        let container = Netns::new("sbxb-c");
        let cpath = container.path();
        // Criterion runs on the router's thread, inside its namespace.
        router.run(move || {
            let mut c = Criterion::default()
                .sample_size(20)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(4))
                .configure_from_args();
            benches(&mut c, cpath);
            c.final_summary();
        });
        drop(container);
    }

    struct Owned {
        netns: PathBuf,
        addresses: Vec<IpNet>,
        gateways: Vec<IpAddr>,
    }

    impl Owned {
        fn spec<'a>(&'a self, ifname: &'a str, host_name: &'a str) -> sandbox::Spec<'a> {
            sandbox::Spec {
                netns: &self.netns,
                ifname,
                host_name,
                addresses: &self.addresses,
                gateways: &self.gateways,
                mtu: 1400,
                mac: None,
                queues: 2,
                tx_checksum_off: true,
            }
        }
    }

    fn open(name: &str) -> std::io::Result<Vec<TunPort>> {
        TunPort::open_with(name, 2, 1400, true, vxrouter::config::DEFAULT_QUEUE_LEN)
    }

    /// Times `iters` rounds of build-then-remove, adding up only the part
    /// `timed` selects (0: build, 1: remove, 2: both).
    fn rounds(
        iters: u64,
        timed: usize,
        mut build: impl FnMut(),
        mut remove: impl FnMut(),
    ) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let t = Instant::now();
            build();
            let built = t.elapsed();
            let t = Instant::now();
            remove();
            let removed = t.elapsed();
            total += [built, removed, built + removed][timed];
        }
        total
    }

    fn benches(c: &mut Criterion, netns: PathBuf) {
        let o = Owned {
            netns,
            addresses: ["198.18.9.2/24", "2001:2:0:9::2/64"]
                .iter()
                .map(|s| s.parse().expect("prefix"))
                .collect(),
            gateways: ["198.18.9.1", "2001:2:0:9::1"]
                .iter()
                .map(|s| s.parse().expect("address"))
                .collect(),
        };
        let mut g = c.benchmark_group("sandbox");
        for (label, timed) in [("build", 0), ("remove", 1), ("build+remove", 2)] {
            g.bench_function(format!("veth/{label}"), |b| {
                b.iter_custom(|iters| {
                    rounds(
                        iters,
                        timed,
                        || {
                            sandbox::create_veth(&o.spec("eth0", "sbxbh")).expect("create_veth");
                        },
                        || {
                            sandbox::remove(&o.netns, "eth0", Some("sbxbh")).expect("remove");
                        },
                    )
                })
            });
            g.bench_function(format!("tun/{label}"), |b| {
                b.iter_custom(|iters| {
                    let ports = std::cell::Cell::new(None);
                    rounds(
                        iters,
                        timed,
                        || {
                            ports.set(Some(
                                sandbox::create_tun(&o.spec("eth0", ""), open).expect("create_tun"),
                            ));
                        },
                        || {
                            // The router lets go of its queues, then removes.
                            drop(ports.take());
                            sandbox::remove(&o.netns, "eth0", None).expect("remove");
                        },
                    )
                })
            });
        }
        g.finish();

        // Baseline: the topology's veth, built by spawning `ip` on a named
        // namespace and removed when its guard drops.
        let name = o
            .netns
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a named namespace")
            .to_string();
        let mut g = c.benchmark_group("ip_commands");
        g.sample_size(10);
        for (label, timed) in [("build", 0), ("remove", 1)] {
            g.bench_function(format!("veth/{label}"), |b| {
                b.iter_custom(|iters| {
                    let dev = std::cell::Cell::new(None);
                    rounds(
                        iters,
                        timed,
                        || {
                            dev.set(Some(
                                netns::setup_veth(
                                    "bench",
                                    "sbxbh",
                                    &name,
                                    &o.addresses,
                                    &o.gateways,
                                    1400,
                                    None,
                                    2,
                                )
                                .expect("setup_veth"),
                            ));
                        },
                        || drop(dev.take()),
                    )
                })
            });
        }
        g.finish();
    }
}
