//! Time of a whole CNI ADD through the `vxrouter-cni` binary against the
//! fake router of tests/cni_support (attachments in memory: the router's
//! own part, making the device, is not in these figures), with Debian's
//! host-local under a temp dataDir. Each ADD is undone by an untimed DEL.
//!
//! Baselines in the same run: spawning `/bin/true` (the floor of any exec)
//! and host-local's ADD run directly (the IPAM share of our ADD).
//!
//! ```text
//! cargo bench --bench cni_add
//! ```

#[path = "../tests/cni_support/mod.rs"]
mod cni_support;

use std::path::Path;
use std::time::{Duration, Instant};

use cni_support::{run_plugin, FakeRouter, CNI_BIN};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_vxrouter-cni");

fn env<'a>(cmd: &'a str, container: &'a str) -> [(&'a str, &'a str); 5] {
    [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", container),
        ("CNI_NETNS", "/var/run/netns/cni-bench"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", CNI_BIN),
    ]
}

fn bench(c: &mut Criterion) {
    let host_local = Path::new(CNI_BIN).join("host-local");
    if !host_local.exists() {
        eprintln!(
            "cni_add: {} is not installed (tools/install-deps); nothing measured",
            host_local.display()
        );
        return;
    }
    let router = FakeRouter::start();
    let data = tempfile::tempdir().expect("temp dir");
    let conf = |version: &str| {
        json!({
            "cniVersion": version,
            "name": "vxbench",
            "type": "vxrouter-cni",
            "socket": router.socket,
            "ipam": {"type": "host-local", "dataDir": data.path()},
        })
        .to_string()
    };
    let mut g = c.benchmark_group("cni_add");
    g.sample_size(30).measurement_time(Duration::from_secs(5));

    g.bench_function("baseline_spawn_true", |b| {
        b.iter(|| {
            let ok = std::process::Command::new("/bin/true")
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok);
        })
    });

    let direct = json!({
        "cniVersion": "1.0.0",
        "name": "vxbench-direct",
        "type": "host-local",
        "ipam": {"type": "host-local", "dataDir": data.path(),
                 "ranges": [[{"subnet": "198.19.7.0/24", "gateway": "198.19.7.1"}],
                            [{"subnet": "2001:2:0:7::/64", "gateway": "2001:2:0:7::1"}]]},
    })
    .to_string();
    g.bench_function("baseline_host_local_add", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let out = run_plugin(&host_local, &env("ADD", "b1"), direct.as_bytes());
                spent += t.elapsed();
                assert_eq!(out.code, 0, "{}", out.stdout);
                let out = run_plugin(&host_local, &env("DEL", "b1"), direct.as_bytes());
                assert_eq!(out.code, 0, "{}", out.stdout);
            }
            spent
        })
    });

    for version in ["1.0.0", "1.1.0"] {
        let stdin = conf(version);
        g.bench_function(format!("add_{version}"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let out = run_plugin(Path::new(BIN), &env("ADD", "b1"), stdin.as_bytes());
                    spent += t.elapsed();
                    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
                    let out = run_plugin(Path::new(BIN), &env("DEL", "b1"), stdin.as_bytes());
                    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
                }
                spent
            })
        });
    }

    let stdin = conf("1.0.0");
    g.bench_function("del_1.0.0", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let out = run_plugin(Path::new(BIN), &env("ADD", "b1"), stdin.as_bytes());
                assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
                let t = Instant::now();
                let out = run_plugin(Path::new(BIN), &env("DEL", "b1"), stdin.as_bytes());
                spent += t.elapsed();
                assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
            }
            spent
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
