//! Containers that come and go through containerd and `vxrouter-cni`,
//! end to end: real routers, a real containerd with runc, `ctr run --cni`
//! on a rootfs made from Debian's busybox-static, and Debian's host-local.
//!
//! Two hosts (`cnictr<N>-h1`, `-h2`) joined by an underlay veth on
//! 198.18.0.0/24, container subnets 198.19.{1,2}.0/24 and
//! 2001:2:0:{1,2}::/64. The test runs a private containerd (its own root,
//! state, socket and namespace under the lab's temp dir) and runs `ctr`
//! inside a host's namespace (`ip netns exec HOST ctr run --cni`), so the
//! plugin it runs talks to that host's router. `ip netns exec` also
//! mounts `/etc/netns/HOST/cni` over `/etc/cni`, which gives each host its
//! own network config without touching the machine's `/etc/cni/net.d`.
//! The plugin is linked into `/opt/cni/bin` (ctr's plugin path; Debian's
//! ctr also searches /usr/lib/cni, where host-local is) for the run and
//! removed after, an earlier file of that name restored.
//!
//! With a second vxrouter network ("blue", the default network's subnets
//! again), each host has two CNI configs. ctr takes only the first config
//! of `/etc/cni/net.d`, so the blue one lives under a second name of the
//! host's namespace (`ip netns attach`, `cnictr<N>-h1blue`): `ip netns
//! exec` under that name mounts `/etc/netns/cnictr<N>-h1blue/cni` instead.
//!
//! Every guard (routers and namespaces through `Lab`, containerd and its
//! tasks, the files) undoes its part on drop, also on panic. Needs root,
//! containerd, ctr, runc, busybox and host-local (tools/install-deps):
//! under `CI=true` their absence fails the test, elsewhere it prints
//! `SKIPPED: ...`.
#![cfg(target_os = "linux")]

mod common;
#[macro_use]
mod live_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use live_support::{cmd, host, link, wait_for, Lab, H1_VTEP, H2_VTEP, OVERLAY};
use vxrouter::api::{client, Body, PortInfo, Request};

/// The network's name in the CNI configs.
const NETWORK: &str = "vxnet";

/// The tests share /opt/cni/bin/vxrouter-cni: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Numbers `ctr task exec` processes (their ids are unique per task).
static EXECS: AtomicU32 = AtomicU32::new(0);

fn topology() -> String {
    format!(
        "{OVERLAY}{}{}{}",
        host("h1", 1, H1_VTEP, "0", ""),
        host("h2", 2, H2_VTEP, "1", ""),
        link("h1", "h2", 1)
    )
}

/// Whether everything the test runs is here; reports the skip if not.
fn prerequisites() -> bool {
    if !common::require_root("network namespaces, containers")
        || !common::require_tools(&[
            "ip",
            "nsenter",
            "python3",
            "ping",
            "timeout",
            "containerd",
            "ctr",
            "runc",
        ])
    {
        return false;
    }
    for f in ["/usr/lib/cni/host-local", "/bin/busybox"] {
        if !Path::new(f).exists() {
            common::skip(&format!("{f} is missing (tools/install-deps)"));
            return false;
        }
    }
    true
}

/// The lab: two routers running and answering on their sockets.
fn lab(prefix: &str) -> Lab {
    lab_with(prefix, &topology())
}

/// [`lab`] with the topology file `topo`.
fn lab_with(prefix: &str, topo: &str) -> Lab {
    let mut lab = Lab::new(prefix);
    let (h1, h2) = lab.two_hosts("h1", "h2");
    let cfg = lab.write("topo.toml", topo);
    let r1 = lab.start(&cfg, "h1", &h1);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[r1, r2]);
    for host in ["h1", "h2"] {
        let sock = lab.socket_path(host);
        wait_for(Duration::from_secs(10), "the control socket", || {
            status(&sock).then_some(())
        });
    }
    lab
}

fn status(sock: &Path) -> bool {
    matches!(
        client::call(sock, &Request::Status {}, Duration::from_secs(5)),
        Ok(Body::Status(s)) if s.ready
    )
}

/// The attached ports of the router at `sock`.
fn attached(sock: &Path) -> Vec<PortInfo> {
    match client::call(sock, &Request::Ports {}, Duration::from_secs(5)) {
        Ok(Body::Ports(p)) => p.into_iter().filter(|p| p.id.is_some()).collect(),
        other => panic!("ports: {other:?}"),
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

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Addresses host-local holds in `data_dir` for our network.
fn allocations(data_dir: &Path) -> Vec<String> {
    allocations_of(data_dir, NETWORK)
}

/// Addresses host-local holds in `data_dir` for CNI network `name`.
fn allocations_of(data_dir: &Path, name: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data_dir.join(name))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Files the test places for the run, undone on drop: the plugin linked
/// into /opt/cni/bin (a file there before is set aside and restored),
/// `/etc/cni` as a mount point for `ip netns exec`, and each host's
/// `/etc/netns/HOST/cni/net.d`. Directories it made are removed if empty.
struct CniFiles {
    link: PathBuf,
    saved: Option<PathBuf>,
    made: Vec<PathBuf>,
    host_dirs: Vec<PathBuf>,
}

impl CniFiles {
    fn install() -> CniFiles {
        let mut made = Vec::new();
        for d in ["/opt/cni", "/opt/cni/bin", "/etc/cni", "/etc/netns"] {
            let p = PathBuf::from(d);
            if !p.exists() {
                std::fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {d}: {e}"));
                made.push(p);
            }
        }
        let link = PathBuf::from("/opt/cni/bin/vxrouter-cni");
        let saved = link.symlink_metadata().is_ok().then(|| {
            let s = PathBuf::from("/opt/cni/bin/vxrouter-cni.vxr-test-saved");
            std::fs::rename(&link, &s).expect("setting the installed plugin aside");
            s
        });
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vxrouter-cni"), &link)
            .expect("linking the plugin into /opt/cni/bin");
        CniFiles {
            link,
            saved,
            made,
            host_dirs: Vec::new(),
        }
    }

    /// The network config `ctr` sees inside namespace `ns`.
    fn config(&mut self, ns: &str, socket: &Path, data_dir: &Path) {
        self.config_as(ns, NETWORK, None, socket, data_dir);
    }

    /// The network config `ctr` sees inside namespace `ns`: CNI network
    /// `name`, joining vxrouter network `network` (absent: the default).
    fn config_as(
        &mut self,
        ns: &str,
        name: &str,
        network: Option<&str>,
        socket: &Path,
        data_dir: &Path,
    ) {
        let dir = PathBuf::from("/etc/netns").join(ns);
        let _ = std::fs::remove_dir_all(&dir);
        self.host_dirs.push(dir.clone());
        std::fs::create_dir_all(dir.join("cni/net.d")).expect("mkdir /etc/netns/NS/cni/net.d");
        let mut plugin = serde_json::json!({
            "type": "vxrouter-cni",
            "socket": socket,
            "ipam": {"type": "host-local", "dataDir": data_dir},
        });
        if let Some(n) = network {
            plugin["network"] = n.into();
        }
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [plugin],
        });
        std::fs::write(dir.join("cni/net.d/10-vxrouter.conflist"), conf.to_string())
            .expect("writing the network config");
    }
}

impl Drop for CniFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.link);
        if let Some(s) = &self.saved {
            let _ = std::fs::rename(s, &self.link);
        }
        for d in &self.host_dirs {
            let _ = std::fs::remove_dir_all(d);
        }
        for d in self.made.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// A private containerd with a namespace of its own; Drop kills its
/// tasks, deletes its containers, ends the `ctr run` processes and stops
/// it.
struct Containerd {
    dir: PathBuf,
    address: PathBuf,
    namespace: String,
    daemon: Child,
    /// The `ctr run` processes of long-running containers, by id.
    runs: Vec<(String, Child)>,
    rootfs: PathBuf,
}

impl Containerd {
    fn start(dir: &Path, namespace: &str) -> Containerd {
        let dir = dir.join("containerd");
        std::fs::create_dir_all(&dir).expect("containerd dir");
        let address = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{}\"\n",
                dir.join("root").display(),
                dir.join("state").display(),
                address.display()
            ),
        )
        .expect("containerd config");
        let log = std::fs::File::create(dir.join("containerd.log")).expect("containerd log");
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawning containerd");
        let rootfs = busybox_rootfs(&dir);
        let c = Containerd {
            dir,
            address,
            namespace: namespace.to_owned(),
            daemon,
            runs: Vec::new(),
            rootfs,
        };
        wait_for(Duration::from_secs(15), "containerd", || {
            c.ctr(&["version"]).status.success().then_some(())
        });
        c
    }

    fn ctr_args(&self) -> Vec<String> {
        vec![
            "ctr".into(),
            "--address".into(),
            self.address.display().to_string(),
            "--namespace".into(),
            self.namespace.clone(),
        ]
    }

    /// Runs `ctr ARGS` in the test's namespace, bounded to 60 s.
    fn ctr(&self, args: &[&str]) -> Output {
        let mut full = vec!["timeout".to_owned(), "60".to_owned()];
        full.extend(self.ctr_args());
        Command::new(&full[0])
            .args(&full[1..])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running ctr")
    }

    /// `ip netns exec HOST ctr run --cni --rm --rootfs ROOTFS ID COMMAND...`
    /// (bounded to 300 s), its output in `ID.out`.
    fn run_command(&self, host_ns: &str, id: &str, command: &[&str]) -> Command {
        let out = std::fs::File::create(self.dir.join(format!("{id}.out"))).expect("ctr output");
        let mut c = Command::new("ip");
        c.args(["netns", "exec", host_ns, "timeout", "300"])
            .args(self.ctr_args())
            .args(["run", "--cni", "--rm", "--null-io", "--rootfs"])
            .arg(&self.rootfs)
            .arg(id)
            .args(command)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("fd"))
            .stderr(out);
        c
    }

    /// Runs `command` in container `id`'s task (`ctr task exec`, bounded
    /// to 60 s).
    fn exec(&self, id: &str, command: &[&str]) -> Output {
        let exec_id = format!("x{}", EXECS.fetch_add(1, Ordering::Relaxed));
        let mut args = vec!["task", "exec", "--exec-id", &exec_id, id];
        args.extend_from_slice(command);
        self.ctr(&args)
    }

    /// The ids `ctr WHAT ls -q` lists (tasks, containers).
    fn ids(&self, what: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.ctr(&[what, "ls", "-q"]).stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// What `ctr run` for `id` printed.
    fn run_output(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{id}.out"))).unwrap_or_default()
    }

    /// Starts a long-running container `id` in `host_ns`; returns its
    /// task's pid once the router at `sock` has its port.
    fn start_container(&mut self, host_ns: &str, id: &str, sock: &Path) -> u32 {
        self.start_container_in(host_ns, NETWORK, id, sock, &["/bin/sleep", "600"])
    }

    /// Starts container `id` running `command` in `host_ns`, whose config
    /// is CNI network `cni_name`; returns its task's pid once the router at
    /// `sock` has its port.
    fn start_container_in(
        &mut self,
        host_ns: &str,
        cni_name: &str,
        id: &str,
        sock: &Path,
        command: &[&str],
    ) -> u32 {
        let child = self
            .run_command(host_ns, id, command)
            .spawn()
            .expect("spawning ctr run");
        self.runs.push((id.to_owned(), child));
        let want = format!("{cni_name}/{}-{id}/eth0", self.namespace);
        wait_for(Duration::from_secs(30), "the container's port", || {
            attached(sock)
                .iter()
                .any(|p| p.id.as_deref() == Some(want.as_str()))
                .then_some(())
        });
        wait_for(Duration::from_secs(10), "the task", || self.task_pid(id))
    }

    /// The pid of `id`'s running task.
    fn task_pid(&self, id: &str) -> Option<u32> {
        let out = self.ctr(&["task", "ls"]);
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id) && f.get(2) == Some(&"RUNNING"))
                .then(|| f.get(1)?.parse().ok())
                .flatten()
        })
    }

    /// Stops container `id` as an operator does (`ctr task kill`); the
    /// `ctr run` that started it removes its network (CNI DEL) and exits.
    fn stop_container(&mut self, id: &str) {
        let out = self.ctr(&["task", "kill", "-s", "KILL", id]);
        assert!(out.status.success(), "ctr task kill {id}: {out:?}");
        let i = self
            .runs
            .iter()
            .position(|(r, _)| r == id)
            .unwrap_or_else(|| panic!("no ctr run for {id}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.runs[i].1.try_wait(), Ok(None)) {
            assert!(
                Instant::now() < deadline,
                "ctr run {id} did not exit in 30 s after kill:\n{}",
                self.run_output(id)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.runs.remove(i);
        let out = self.run_output(id);
        assert!(
            !out.contains("network review") && !out.contains("failed (delete)"),
            "CNI DEL of {id} failed:\n{out}"
        );
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for t in self.ids("task") {
            let _ = self.ctr(&["task", "kill", "-s", "KILL", &t]);
        }
        for (_, c) in &mut self.runs {
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for t in self.ids("task") {
            let _ = self.ctr(&["task", "delete", "-f", &t]);
        }
        for c in self.ids("containers") {
            let _ = self.ctr(&["containers", "rm", &c]);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.daemon.id().to_string()])
            .output();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.daemon.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// A rootfs of busybox-static's applets.
fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).expect("rootfs dir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copying busybox");
    for applet in [
        "sh", "sleep", "ping", "ip", "nc", "true", "cat", "echo", "httpd", "wget", "timeout",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("applet link");
    }
    root
}

/// Makes `lab`'s name `short` point at the network namespace of `pid`
/// (`ip netns attach`), so the lab's ping and exchange run in it.
fn name_netns(lab: &mut Lab, short: &str, pid: u32) -> String {
    let name = lab.adopt(short);
    cmd(&["ip", "netns", "attach", &name, &pid.to_string()]);
    name
}

#[test]
fn containers_on_two_hosts_talk_outlive_a_killed_router_and_go() {
    if !prerequisites() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut lab = lab("cnictr1");
    let (h1, h2) = (lab.name("h1"), lab.name("h2"));
    let (s1, s2) = (lab.socket_path("h1"), lab.socket_path("h2"));
    let (d1, d2) = (
        lab.dir.path().join("ipam-h1"),
        lab.dir.path().join("ipam-h2"),
    );
    let mut files = CniFiles::install();
    files.config(&h1, &s1, &d1);
    files.config(&h2, &s2, &d2);
    let mut ctrd = Containerd::start(lab.dir.path(), "vxr-cnictr1");

    let p1 = ctrd.start_container(&h1, "c1", &s1);
    let p2 = ctrd.start_container(&h2, "c2", &s2);
    let c1 = name_netns(&mut lab, "c1", p1);
    let c2 = name_netns(&mut lab, "c2", p2);
    // host-local's first addresses after the router's gateways.
    let addrs = lab.ip(&c1, &["-o", "addr", "show", "dev", "eth0"]);
    assert!(
        addrs.contains("198.19.1.2/24") && addrs.contains("2001:2:0:1::2/64"),
        "{addrs}"
    );
    assert_eq!(allocations(&d1), ["198.19.1.2", "2001:2:0:1::2"]);

    // Both ways, both families: ping, UDP, TCP.
    lab.ping(&c1, "198.19.2.2");
    lab.ping(&c2, "198.19.1.2");
    lab.ping(&c1, "2001:2:0:2::2");
    lab.ping(&c2, "2001:2:0:1::2");
    lab.exchange("udp", &c2, &c1, "198.19.2.2", 7201, 1200);
    lab.exchange("udp", &c1, &c2, "2001:2:0:1::2", 7202, 1200);
    lab.exchange("tcp", &c1, &c2, "198.19.1.2", 7203, 200_000);
    lab.exchange("tcp", &c2, &c1, "2001:2:0:2::2", 7204, 200_000);
    // And from the container's own userland.
    let out = ctrd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "p1",
        "c1",
        "/bin/ping",
        "-c",
        "2",
        "-W",
        "2",
        "198.19.2.2",
    ]);
    assert!(out.status.success(), "busybox ping in c1: {out:?}");

    // The router SIGKILLed and started again: traffic resumes with no
    // action from the runtime.
    lab.signal(0, "KILL");
    let _ = lab.routers[0].child.wait();
    let cfg = lab.dir.path().join("topo.toml");
    let r = lab.start(&cfg, "h1", &h1);
    lab.wait_ready(&[r]);
    wait_for(Duration::from_secs(10), "h1's socket again", || {
        status(&s1).then_some(())
    });
    lab.ping(&c1, "198.19.2.2");
    lab.ping(&c2, "2001:2:0:1::2");
    lab.exchange("tcp", &c2, &c1, "198.19.2.2", 7205, 200_000);
    assert_eq!(attached(&s1).len(), 1);

    // Stopped by ctr: DEL'ed. Its port, device, record and addresses go.
    for (short, id, sock, host, data) in [("c1", "c1", &s1, &h1, &d1), ("c2", "c2", &s2, &h2, &d2)]
    {
        // Only the name goes (its processes are the container's).
        cmd(&["ip", "netns", "del", &lab.name(short)]);
        ctrd.stop_container(id);
        assert!(attached(sock).is_empty(), "{id}: port left");
        assert!(attached_devices(host).is_empty(), "{id}: device left");
        assert!(allocations(data).is_empty(), "{id}: addresses left");
    }
    assert_eq!(count_files(&lab.dir.path().join("h1.state")), 0);
    assert_eq!(count_files(&lab.dir.path().join("h2.state")), 0);
    for r in 0..lab.routers.len() {
        if matches!(lab.routers[r].child.try_wait(), Ok(None)) {
            lab.assert_alive(r);
        }
    }
}

#[test]
fn plugin_on_a_real_router_then_fifty_runs_leave_nothing() {
    if !prerequisites() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut lab = lab("cnictr2");
    let h1 = lab.name("h1");
    let s1 = lab.socket_path("h1");
    let d1 = lab.dir.path().join("ipam-h1");
    let state = lab.dir.path().join("h1.state");
    let mut files = CniFiles::install();
    files.config(&h1, &s1, &d1);
    let ctrd = Containerd::start(lab.dir.path(), "vxr-cnictr2");

    let pid = lab.routers[0].child.id();
    // libcni's cache of ADD results (`ctr` keeps one per attachment).
    let cached = || {
        std::fs::read_dir("/var/lib/cni/results")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().contains("vxr-cnictr2-"))
                    .count()
            })
            .unwrap_or(0)
    };
    let count = |lab: &Lab| {
        let s = lab.stats(0);
        [
            ("attached ports", attached(&s1).len()),
            ("router-side devices", attached_devices(&h1).len()),
            (
                "devices in h1",
                cmd(&["ip", "-n", &h1, "-o", "link"]).lines().count(),
            ),
            ("state files", count_files(&state)),
            ("host-local allocations", allocations(&d1).len()),
            (
                "ports in the stats",
                s["ports"].as_object().map_or(0, |m| m.len()),
            ),
            (
                "router fds (sockets, UMEM)",
                count_files(Path::new(&format!("/proc/{pid}/fd"))),
            ),
            ("cached results", cached()),
        ]
    };
    let before = count(&lab);

    // The plugin alone against the real router, in a namespace of ours:
    // the time of a whole ADD (IPAM, the router making the veth) and DEL.
    let x = lab.ns("x");
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": NETWORK, "type": "vxrouter-cni", "socket": s1,
        "ipam": {"type": "host-local", "dataDir": d1},
    })
    .to_string();
    let plugin = |command: &str, stdin: &str| {
        let netns = common::netns_path(&x);
        let mut c = Command::new(env!("CARGO_BIN_EXE_vxrouter-cni"))
            .env_clear()
            .envs([
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", "direct"),
                ("CNI_NETNS", netns.to_str().unwrap()),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/usr/lib/cni"),
                ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the plugin");
        std::io::Write::write_all(&mut c.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        let t = Instant::now();
        let out = c.wait_with_output().unwrap();
        let took = t.elapsed();
        assert!(out.status.success(), "{command}: {out:?}");
        (took, String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        adds.push(plugin("ADD", &conf).0);
        dels.push(plugin("DEL", &conf).0);
    }
    adds.sort();
    dels.sort();
    eprintln!(
        "cnictr2: the plugin against the real router: ADD median {:?} (max {:?}), DEL median {:?} (max {:?})",
        adds[5], adds[9], dels[5], dels[9]
    );
    // CHECK against the real router, then GC with no valid attachment:
    // the port goes and its addresses are released; DEL after is success.
    let (_, added) = plugin("ADD", &conf);
    let mut check: serde_json::Value = serde_json::from_str(&conf).unwrap();
    check["prevResult"] = serde_json::from_str(&added).unwrap();
    plugin("CHECK", &check.to_string());
    assert_eq!(attached(&s1).len(), 1);
    let mut gc: serde_json::Value = serde_json::from_str(&conf).unwrap();
    gc["cniVersion"] = "1.1.0".into();
    gc["cni.dev/valid-attachments"] = serde_json::json!([]);
    plugin("GC", &gc.to_string());
    assert!(attached(&s1).is_empty());
    assert!(allocations(&d1).is_empty());
    plugin("DEL", &conf);
    common::remove_netns(&x);

    let t0 = Instant::now();
    for i in 0..50 {
        let id = format!("r{i}");
        let out = ctrd
            .run_command(
                &h1,
                &id,
                &[
                    "/bin/sh",
                    "-c",
                    "ip -o addr show dev eth0 | grep -q 198.19.1.",
                ],
            )
            .status()
            .expect("ctr run");
        let printed = ctrd.run_output(&id);
        assert!(out.success(), "run {i}: {out}\n{printed}");
        assert!(
            !printed.contains("network review"),
            "run {i}: DEL failed:\n{printed}"
        );
    }
    eprintln!(
        "cnictr2: 50 container runs (ADD, run, DEL) took {:?}",
        t0.elapsed()
    );
    lab.assert_alive(0);
    // The stats file is written every second: wait for one after the runs.
    std::thread::sleep(Duration::from_millis(1500));
    let after = count(&lab);
    eprintln!("cnictr2: before {before:?}, after {after:?}");
    assert_eq!(after, before);
}

/// The CNI network whose containers join vxrouter network "blue".
const BLUE_CNI: &str = "vxblue";

/// [`topology`] with a second network, "blue" (VNI 43, MTU 1400), whose
/// subnets on both hosts are the default network's.
fn topology_blue() -> String {
    format!(
        r#"{}
[[networks]]
name = "blue"
vni = 43
mtu = 1400
[networks.subnets]
h1 = ["198.19.1.0/24", "2001:2:0:1::/64"]
h2 = ["198.19.2.0/24", "2001:2:0:2::/64"]
"#,
        topology()
    )
}

/// A second name `short` for the namespace of router `r`'s host: `ip
/// netns exec` under it mounts `/etc/netns/NAME/cni`, so a host's two CNI
/// networks each get a directory whose first (only) config ctr takes.
fn alias_netns(lab: &mut Lab, short: &str, r: usize) -> String {
    let pid = lab.routers[r].child.id().to_string();
    let name = lab.adopt(short);
    cmd(&["ip", "netns", "attach", &name, &pid]);
    name
}

/// Busybox ping from container `id`: three echoes to `dst`, all answered.
fn busybox_ping(ctrd: &Containerd, id: &str, dst: &str) {
    let out = ctrd.exec(id, &["/bin/ping", "-c", "3", "-i", "0.2", "-w", "5", dst]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("3 packets received"),
        "busybox ping {id} -> {dst}: {out:?}"
    );
}

/// Busybox ping from container `id` to `dst`: no answer.
fn busybox_ping_fails(ctrd: &Containerd, id: &str, dst: &str) {
    let out = ctrd.exec(id, &["/bin/ping", "-c", "2", "-i", "0.2", "-W", "1", dst]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains(" 0 packets received"),
        "busybox ping {id} -> {dst} answered: {out:?}"
    );
}

/// The page container `id` gets from `url` (busybox wget, 5 s at most),
/// or None.
fn fetch(ctrd: &Containerd, id: &str, url: &str) -> Option<String> {
    let out = ctrd.exec(
        id,
        &["/bin/timeout", "5", "/bin/wget", "-q", "-O", "-", url],
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Packets the routers at `socks` wrote to each attached port, by
/// attachment id, once two reads 500 ms apart agree (a worker publishes
/// its counters as it goes quiet).
fn settled_tx(socks: &[&Path]) -> BTreeMap<String, u64> {
    let read = || {
        socks
            .iter()
            .flat_map(|s| attached(s))
            .filter_map(|p| Some((p.id?, p.counters.tx_packets)))
            .collect::<BTreeMap<_, _>>()
    };
    let mut last = read();
    wait_for(Duration::from_secs(15), "port counters to settle", || {
        std::thread::sleep(Duration::from_millis(500));
        let now = read();
        let same = now == last;
        last = now.clone();
        same.then_some(now)
    })
}

/// Waits (15 s at most) until container namespace `ns` resolves or probes
/// no neighbour: its own probe, answered by the router, would count as
/// traffic written to its port.
fn neighbours_quiet(lab: &Lab, ns: &str) {
    wait_for(Duration::from_secs(15), "a container's neighbours", || {
        let n = lab.ip(ns, &["neigh", "show"]);
        (!["DELAY", "PROBE", "INCOMPLETE"]
            .iter()
            .any(|s| n.contains(s)))
        .then_some(())
    });
}

#[test]
fn two_networks_with_the_same_addresses_on_two_hosts_never_meet() {
    if !prerequisites() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut lab = lab_with("cnictr3", &topology_blue());
    let (h1, h2) = (lab.name("h1"), lab.name("h2"));
    let (s1, s2) = (lab.socket_path("h1"), lab.socket_path("h2"));
    let (dd1, dd2) = (
        lab.dir.path().join("ipam-h1"),
        lab.dir.path().join("ipam-h2"),
    );
    let (hb1, hb2) = (
        alias_netns(&mut lab, "h1blue", 0),
        alias_netns(&mut lab, "h2blue", 1),
    );
    let mut files = CniFiles::install();
    files.config(&h1, &s1, &dd1);
    files.config(&h2, &s2, &dd2);
    files.config_as(&hb1, BLUE_CNI, Some("blue"), &s1, &dd1);
    files.config_as(&hb2, BLUE_CNI, Some("blue"), &s2, &dd2);
    let mut ctrd = Containerd::start(lab.dir.path(), "vxr-cnictr3");

    // Every container serves its own name over HTTP on port 8080: which
    // container answered an address is then plain.
    // (id, where ctr runs, CNI network, vxrouter network, router socket)
    let plan = [
        ("d1", &h1, NETWORK, "default", &s1),
        ("b1", &hb1, BLUE_CNI, "blue", &s1),
        ("d2", &h2, NETWORK, "default", &s2),
        ("b2", &hb2, BLUE_CNI, "blue", &s2),
        ("d3", &h2, NETWORK, "default", &s2),
    ];
    let mut ns = BTreeMap::new();
    for (id, host_ns, cni, _, sock) in plan {
        let www = ctrd.rootfs.join("www").join(id);
        std::fs::create_dir_all(&www).expect("mkdir www");
        std::fs::write(www.join("index.html"), format!("{id}\n")).expect("index.html");
        let root = format!("/www/{id}");
        let pid = ctrd.start_container_in(
            host_ns,
            cni,
            id,
            sock,
            &["/bin/httpd", "-f", "-p", "8080", "-h", &root],
        );
        ns.insert(id, name_netns(&mut lab, id, pid));
    }
    let att = |id: &str| {
        let cni = plan.iter().find(|p| p.0 == id).expect("planned").2;
        format!("{cni}/vxr-cnictr3-{id}/eth0")
    };

    // host-local hands out the same addresses in both networks; each
    // network's MTU reaches its containers.
    let eth0 = |id: &str| {
        lab.ip(&ns[id], &["-o", "addr", "show", "dev", "eth0"])
            + &lab.ip(&ns[id], &["-o", "link", "show", "dev", "eth0"])
    };
    for (id, v4, v6, mtu) in [
        ("d1", "198.19.1.2/24", "2001:2:0:1::2/64", 1450),
        ("b1", "198.19.1.2/24", "2001:2:0:1::2/64", 1400),
        ("d2", "198.19.2.2/24", "2001:2:0:2::2/64", 1450),
        ("b2", "198.19.2.2/24", "2001:2:0:2::2/64", 1400),
        ("d3", "198.19.2.3/24", "2001:2:0:2::3/64", 1450),
    ] {
        let e = eth0(id);
        assert!(
            e.contains(v4) && e.contains(v6) && e.contains(&format!(" mtu {mtu} ")),
            "{id}: {e}"
        );
    }
    assert_eq!(
        allocations_of(&dd1, NETWORK),
        ["198.19.1.2", "2001:2:0:1::2"]
    );
    assert_eq!(
        allocations_of(&dd1, BLUE_CNI),
        ["198.19.1.2", "2001:2:0:1::2"]
    );
    assert_eq!(
        allocations_of(&dd2, NETWORK),
        ["198.19.2.2", "198.19.2.3", "2001:2:0:2::2", "2001:2:0:2::3"]
    );
    assert_eq!(
        allocations_of(&dd2, BLUE_CNI),
        ["198.19.2.2", "2001:2:0:2::2"]
    );

    // `vxrouter ports` names each port's network, as JSON and as a table.
    for sock in [&s1, &s2] {
        let run = |json: bool| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_vxrouter"));
            c.args(["ports", "--socket"]).arg(sock);
            if json {
                c.arg("--json");
            }
            let out = c.output().expect("vxrouter ports");
            assert!(out.status.success(), "vxrouter ports: {out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let json: Vec<serde_json::Value> =
            serde_json::from_str(&run(true)).expect("vxrouter ports --json");
        let table = run(false);
        let on_host: Vec<_> = plan.iter().filter(|p| p.4 == sock).collect();
        assert_eq!(json.len(), on_host.len(), "{json:?}");
        for (id, _, _, network, _) in on_host {
            let a = att(id);
            let p = json
                .iter()
                .find(|p| p["id"] == a.as_str())
                .unwrap_or_else(|| panic!("{a} not in {json:?}"));
            assert_eq!(p["network"], *network, "{p}");
            let row: Vec<&str> = table
                .lines()
                .find(|l| l.ends_with(&a))
                .unwrap_or_else(|| panic!("{a} not in\n{table}"))
                .split_whitespace()
                .collect();
            assert_eq!(row[2], *network, "{table}");
        }
    }

    let socks = [s1.as_path(), s2.as_path()];
    let delta = |before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, id: &str| {
        let a = att(id);
        after[&a] - before[&a]
    };

    // Blue alone. The default containers have sent nothing yet, so the
    // router writes nothing to their ports unless blue leaks.
    let before = settled_tx(&socks);
    for (id, dst) in [
        ("b1", "198.19.2.2"),
        ("b1", "2001:2:0:2::2"),
        ("b2", "198.19.1.2"),
        ("b2", "2001:2:0:1::2"),
    ] {
        busybox_ping(&ctrd, id, dst);
    }
    for (id, url, want) in [
        ("b1", "http://198.19.2.2:8080/", "b2"),
        ("b1", "http://[2001:2:0:2::2]:8080/", "b2"),
        ("b2", "http://198.19.1.2:8080/", "b1"),
        ("b2", "http://[2001:2:0:1::2]:8080/", "b1"),
    ] {
        assert_eq!(
            fetch(&ctrd, id, url).as_deref(),
            Some(want),
            "{id} -> {url}"
        );
    }
    // d3's address is in the default network only.
    busybox_ping_fails(&ctrd, "b1", "198.19.2.3");
    busybox_ping_fails(&ctrd, "b1", "2001:2:0:2::3");
    assert_eq!(fetch(&ctrd, "b1", "http://198.19.2.3:8080/"), None);
    let after = settled_tx(&socks);
    let blue: Vec<_> = ["b1", "b2"]
        .iter()
        .map(|id| delta(&before, &after, id))
        .collect();
    let default: Vec<_> = ["d1", "d2", "d3"]
        .iter()
        .map(|id| delta(&before, &after, id))
        .collect();
    eprintln!("cnictr3: blue traffic: written to b1, b2 {blue:?}; to d1, d2, d3 {default:?}");
    assert!(blue.iter().all(|&n| n >= 6), "blue ports: {blue:?}");
    assert_eq!(default, [0, 0, 0], "blue traffic reached default ports");

    // Default alone, once the blue containers' own neighbour probes from
    // the traffic above are over.
    neighbours_quiet(&lab, &ns["b1"]);
    neighbours_quiet(&lab, &ns["b2"]);
    let before = settled_tx(&socks);
    for (id, dst) in [
        ("d1", "198.19.2.2"),
        ("d1", "2001:2:0:2::2"),
        ("d2", "198.19.1.2"),
        ("d2", "2001:2:0:1::2"),
        ("d1", "198.19.2.3"),
        ("d1", "2001:2:0:2::3"),
    ] {
        busybox_ping(&ctrd, id, dst);
    }
    for (id, url, want) in [
        ("d1", "http://198.19.2.2:8080/", "d2"),
        ("d1", "http://[2001:2:0:2::2]:8080/", "d2"),
        ("d2", "http://198.19.1.2:8080/", "d1"),
        ("d2", "http://[2001:2:0:1::2]:8080/", "d1"),
        ("d1", "http://198.19.2.3:8080/", "d3"),
    ] {
        assert_eq!(
            fetch(&ctrd, id, url).as_deref(),
            Some(want),
            "{id} -> {url}"
        );
    }
    let after = settled_tx(&socks);
    let blue: Vec<_> = ["b1", "b2"]
        .iter()
        .map(|id| delta(&before, &after, id))
        .collect();
    let default: Vec<_> = ["d1", "d2", "d3"]
        .iter()
        .map(|id| delta(&before, &after, id))
        .collect();
    eprintln!("cnictr3: default traffic: written to d1, d2, d3 {default:?}; to b1, b2 {blue:?}");
    assert!(
        default.iter().all(|&n| n >= 6),
        "default ports: {default:?}"
    );
    assert_eq!(blue, [0, 0], "default traffic reached blue ports");

    // Stopped by ctr: each DEL takes its port, device and addresses in its
    // own network and leaves the other network's same addresses alone.
    for (id, _, _, _, _) in plan {
        cmd(&["ip", "netns", "del", &ns[id]]);
        ctrd.stop_container(id);
        for sock in socks {
            assert!(
                attached(sock)
                    .iter()
                    .all(|p| p.id.as_deref() != Some(att(id).as_str())),
                "{id}: port left"
            );
        }
    }
    for (host, sock) in [(&h1, &s1), (&h2, &s2)] {
        assert!(attached(sock).is_empty(), "{host}: ports left");
        assert!(attached_devices(host).is_empty(), "{host}: devices left");
    }
    for (dir, cni) in [
        (&dd1, NETWORK),
        (&dd1, BLUE_CNI),
        (&dd2, NETWORK),
        (&dd2, BLUE_CNI),
    ] {
        assert!(allocations_of(dir, cni).is_empty(), "{cni}: addresses left");
    }
    assert_eq!(count_files(&lab.dir.path().join("h1.state")), 0);
    assert_eq!(count_files(&lab.dir.path().join("h2.state")), 0);
    lab.assert_alive(0);
    lab.assert_alive(1);
}
