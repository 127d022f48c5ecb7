//! Container interfaces built by `host::sandbox` in namespaces of our own
//! (`sbx*`), addresses from 198.18.0.0/15 and 2001:2::/48 only.
//!
//! The "router" side runs on a thread inside a namespace of the test too
//! (`sbxN-r`), so veth host ends never land in the host's namespace. The
//! tests run one at a time (one lock): the leak test counts the process's
//! file descriptors.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{sh, sh_ok, Netns};
use ipnet::IpNet;
use vxrouter::host::sandbox::{self, Spec};
use vxrouter::host::HostError;
use vxrouter::port::sys::poll_readable;
use vxrouter::port::tun::TunPort;
use vxrouter::port::{Batch, Port};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[must_use]
fn prerequisites() -> bool {
    common::require_root("network namespaces, veth, TUN")
        && common::require_tools(&["ip", "ethtool", "ping", "sysctl"])
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().expect("prefix")).collect()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().expect("address")).collect()
}

/// Devices in namespace `ns`.
fn devices(ns: &str) -> usize {
    sh(&["ip", "-n", ns, "-o", "link", "show"]).lines().count()
}

/// Open file descriptors of this process.
fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// The owned form of a [`Spec`], so it can move into a namespace thread.
#[derive(Clone)]
struct Want {
    netns: PathBuf,
    ifname: String,
    host_name: String,
    addresses: Vec<IpNet>,
    gateways: Vec<IpAddr>,
    mtu: u16,
    mac: Option<[u8; 6]>,
    queues: u32,
    tx_checksum_off: bool,
}

impl Want {
    fn new(netns: &Path, ifname: &str, host_name: &str, addrs: &[&str], gws: &[&str]) -> Want {
        Want {
            netns: netns.to_path_buf(),
            ifname: ifname.into(),
            host_name: host_name.into(),
            addresses: nets(addrs),
            gateways: ips(gws),
            mtu: 1400,
            mac: None,
            queues: 2,
            tx_checksum_off: true,
        }
    }

    fn spec(&self) -> Spec<'_> {
        Spec {
            netns: &self.netns,
            ifname: &self.ifname,
            host_name: &self.host_name,
            addresses: &self.addresses,
            gateways: &self.gateways,
            mtu: self.mtu,
            mac: self.mac,
            queues: self.queues,
            tx_checksum_off: self.tx_checksum_off,
        }
    }
}

/// [`sandbox::create_veth`] called from a thread inside `router`.
fn veth_from(router: &Netns, want: &Want) -> Result<sandbox::Veth, HostError> {
    let w = want.clone();
    router.run(move || sandbox::create_veth(&w.spec()))
}

/// The router's TUN queues: two, offloads on.
fn open_queues(name: &str) -> std::io::Result<Vec<TunPort>> {
    TunPort::open_with(name, 2, 1400, true, vxrouter::config::DEFAULT_QUEUE_LEN)
}

fn tun_from(router: &Netns, want: &Want) -> Result<Vec<TunPort>, HostError> {
    let w = want.clone();
    router.run(move || sandbox::create_tun(&w.spec(), open_queues))
}

fn remove_from(
    router: &Netns,
    netns: &Path,
    ifname: &str,
    host: Option<&str>,
) -> Result<bool, HostError> {
    let (n, i, h) = (
        netns.to_path_buf(),
        ifname.to_string(),
        host.map(str::to_string),
    );
    router.run(move || sandbox::remove(&n, &i, h.as_deref()))
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `ip -n NS ARGS` output; must succeed.
fn ip(ns: &str, args: &[&str]) -> String {
    let mut v = vec!["ip", "-n", ns];
    v.extend_from_slice(args);
    sh(&v)
}

fn assert_has(text: &str, wants: &[&str]) {
    for w in wants {
        assert!(text.contains(w), "{w:?} missing in\n{text}");
    }
}

/// The index `ip -o link` prints first.
fn index_of(ns: &str, dev: &str) -> u32 {
    let out = ip(ns, &["-o", "link", "show", dev]);
    out.split(':')
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .expect("index")
}

/// No duplicate address detection holds the interface's IPv6 addresses:
/// the configured ones are never tentative (NODAD), and the link-local one
/// skips DAD (`accept_dad = 0`), which the kernel finishes from a work
/// queue right after link-up: it settles well within the second DAD would
/// take.
fn no_dad(ns: &Netns, dev: &str) {
    let tentative = |a: &str| {
        ip(&ns.name, &["-6", "addr", "show", "dev", dev])
            .lines()
            .any(|l| l.contains(a) && l.contains("tentative"))
    };
    assert!(
        !tentative("scope global"),
        "a configured address is tentative"
    );
    assert_eq!(
        ns.exec(&["sysctl", "-n", &format!("net.ipv6.conf.{dev}.accept_dad")])
            .trim(),
        "0"
    );
    let deadline = Instant::now() + Duration::from_millis(800);
    while tentative("scope link") {
        assert!(Instant::now() < deadline, "link-local DAD still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads the TUN queues until an ICMP echo request to `to` shows up.
fn echo_request_arrives(ports: &mut [TunPort], to: [u8; 4]) -> bool {
    let mut batch = Batch::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        for p in ports.iter_mut() {
            poll_readable(p.fd(), 20).expect("poll");
            p.rx_burst(&mut batch).expect("rx_burst");
            for pkt in batch.pkts() {
                let d = pkt.data();
                if d.len() >= 28 && d[0] >> 4 == 4 && d[9] == 1 && d[16..20] == to && d[20] == 8 {
                    return true;
                }
            }
        }
    }
    false
}

#[test]
fn veth_is_built_as_asked_and_removed() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let (r, c) = (Netns::new("sbx1-r"), Netns::new("sbx1-c"));
    let before = (devices(&r.name), devices(&c.name));
    let mut want = Want::new(
        &c.path(),
        "eth0",
        "sbx1h",
        &["198.18.1.2/24", "2001:2:0:1::2/64"],
        &["198.18.1.1", "2001:2:0:1::1"],
    );
    want.mac = Some([0x02, 0x00, 0xc6, 0x12, 0x01, 0x02]);
    let v = veth_from(&r, &want).expect("create_veth");
    assert_eq!(v.container_mac, [0x02, 0x00, 0xc6, 0x12, 0x01, 0x02]);
    assert_eq!(v.host_index, index_of(&r.name, "sbx1h"));
    assert_eq!(v.container_index, index_of(&c.name, "eth0"));

    let addr = ip(&c.name, &["-d", "addr", "show", "dev", "eth0"]);
    assert_has(
        &addr,
        &[
            "198.18.1.2/24",
            "2001:2:0:1::2/64",
            "02:00:c6:12:01:02",
            "mtu 1400",
            ",UP",
            "veth",
            "numtxqueues 2 numrxqueues 2",
        ],
    );
    no_dad(&c, "eth0");
    assert_has(
        &ip(&c.name, &["-4", "route", "show", "default"]),
        &["default via 198.18.1.1 dev eth0"],
    );
    assert_has(
        &ip(&c.name, &["-6", "route", "show", "default"]),
        &["default via 2001:2:0:1::1 dev eth0"],
    );
    let host = ip(&r.name, &["-d", "link", "show", "sbx1h"]);
    assert_has(
        &host,
        &["mtu 1400", ",UP", "veth", "numtxqueues 2 numrxqueues 2"],
    );
    let k = c.exec(&["ethtool", "-k", "eth0"]);
    assert_has(&k, &["tx-checksumming: off"]);

    let seen = sandbox::inspect(&c.path(), "eth0")
        .expect("inspect")
        .expect("eth0 is there");
    assert_eq!(seen.index, v.container_index);
    assert_eq!(seen.mac, Some(v.container_mac));
    assert_eq!((seen.mtu, seen.up), (1400, true));
    assert_eq!(seen.kind.as_deref(), Some("veth"));
    assert_eq!(
        seen.addresses.iter().collect::<BTreeSet<_>>(),
        want.addresses.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(
        seen.gateways.iter().collect::<BTreeSet<_>>(),
        want.gateways.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(sandbox::inspect(&c.path(), "eth9").expect("inspect"), None);

    // The two ends talk: the router side takes the gateway addresses.
    ip(&r.name, &["addr", "add", "198.18.1.1/24", "dev", "sbx1h"]);
    ip(
        &r.name,
        &["addr", "add", "2001:2:0:1::1/64", "dev", "sbx1h", "nodad"],
    );
    c.exec(&["ping", "-c1", "-W2", "198.18.1.1"]);
    c.exec(&["ping", "-6", "-c1", "-W2", "2001:2:0:1::1"]);

    // A record naming another namespace deletes nothing.
    let other = Netns::new("sbx1-o");
    assert!(matches!(
        remove_from(&r, &other.path(), "eth0", Some("sbx1h")),
        Err(HostError::Invalid(_))
    ));
    assert!(remove_from(&r, &c.path(), "eth0", Some("sbx1h")).expect("remove"));
    assert!(!remove_from(&r, &c.path(), "eth0", Some("sbx1h")).expect("remove again"));
    assert_eq!((devices(&r.name), devices(&c.name)), before);
}

#[test]
fn veth_with_host_routes_and_a_kernel_mac() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let (r, c) = (Netns::new("sbx2-r"), Netns::new("sbx2-c"));
    let r_before = devices(&r.name);
    let mut want = Want::new(
        &c.path(),
        "net1",
        "sbx2h",
        &["198.18.2.2/32", "2001:2:0:2::2/128"],
        &["198.18.2.1", "2001:2:0:2::1"],
    );
    want.tx_checksum_off = false;
    want.queues = 1;
    let v = veth_from(&r, &want).expect("create_veth");
    // Random, locally administered, unicast.
    assert_eq!(v.container_mac[0] & 0b11, 0b10, "{:?}", v.container_mac);
    let link = ip(&c.name, &["link", "show", "net1"]);
    assert_has(&link, &[&mac_string(v.container_mac)]);
    // A /32 covers no gateway: a host route to it, then the default.
    assert_has(
        &ip(&c.name, &["-4", "route"]),
        &[
            "default via 198.18.2.1 dev net1",
            "198.18.2.1 dev net1 scope link",
        ],
    );
    assert_has(
        &ip(&c.name, &["-6", "route"]),
        &[
            "default via 2001:2:0:2::1 dev net1",
            "2001:2:0:2::1 dev net1",
        ],
    );
    assert_has(
        &c.exec(&["ethtool", "-k", "net1"]),
        &["tx-checksumming: on"],
    );
    // The gateway answers through the host route.
    ip(&r.name, &["addr", "add", "198.18.2.1/32", "dev", "sbx2h"]);
    ip(&r.name, &["route", "add", "198.18.2.2/32", "dev", "sbx2h"]);
    c.exec(&["ping", "-c1", "-W2", "198.18.2.1"]);

    // The container's namespace goes (the container stopped): its veth goes
    // with it (the kernel tears a namespace down in the background, so the
    // host end may still be there to delete), and removing is success.
    let cpath = c.path();
    drop(c);
    assert!(!cpath.exists());
    remove_from(&r, &cpath, "net1", Some("sbx2h")).expect("remove");
    assert!(!remove_from(&r, &cpath, "net1", Some("sbx2h")).expect("remove again"));
    assert!(!remove_from(&r, &cpath, "net1", None).expect("remove TUN"));
    assert!(matches!(
        sandbox::inspect(&cpath, "net1"),
        Err(HostError::NoSuchNetns(_))
    ));
    assert_eq!(devices(&r.name), r_before);
}

#[test]
fn tun_persists_and_is_reopened() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let (r, c) = (Netns::new("sbx3-r"), Netns::new("sbx3-c"));
    let before = (devices(&r.name), devices(&c.name));
    let want = Want::new(
        &c.path(),
        "eth0",
        "",
        &["198.18.3.2/24", "2001:2:0:3::2/64"],
        &["198.18.3.1"],
    );
    let mut ports = tun_from(&r, &want).expect("create_tun");
    assert_eq!(ports.len(), 2);
    assert!(ports[0].offload());
    let link = ip(&c.name, &["-d", "addr", "show", "dev", "eth0"]);
    assert_has(
        &link,
        &[
            "tun type tun",
            "multi_queue numqueues 2",
            "persist on",
            "mtu 1400",
            ",UP",
            "qdisc noqueue",
            "198.18.3.2/24",
            "2001:2:0:3::2/64",
        ],
    );
    no_dad(&c, "eth0");
    assert_has(
        &ip(&c.name, &["-4", "route", "show", "default"]),
        &["default via 198.18.3.1 dev eth0"],
    );
    // No IPv6 gateway: a point-to-point default.
    assert_has(
        &ip(&c.name, &["-6", "route", "show", "default"]),
        &["default dev eth0"],
    );
    let seen = sandbox::inspect(&c.path(), "eth0")
        .expect("inspect")
        .expect("eth0");
    assert_eq!(seen.kind.as_deref(), Some("tun"));
    assert_eq!((seen.mac, seen.mtu, seen.up), (None, 1400, true));
    assert_eq!(seen.gateways, ips(&["198.18.3.1"]));
    assert_eq!(
        seen.addresses.iter().collect::<BTreeSet<_>>(),
        want.addresses.iter().collect::<BTreeSet<_>>()
    );
    // What the container sends reaches the router's queues.
    sh_ok(&[
        "ip",
        "netns",
        "exec",
        &c.name,
        "ping",
        "-c2",
        "-i0.2",
        "-W1",
        "198.18.3.1",
    ]);
    assert!(echo_request_arrives(&mut ports, [198, 18, 3, 1]));

    // The router goes: the interface stays, configured, without queues.
    drop(ports);
    assert_has(
        &ip(&c.name, &["-d", "addr", "show", "dev", "eth0"]),
        &["numqueues 0", "persist on", "198.18.3.2/24", "mtu 1400"],
    );
    // A new router attaches again, changing nothing.
    let cpath = c.path();
    let mut ports = r
        .run(move || sandbox::reopen_tun(&cpath, "eth0", open_queues))
        .expect("reopen_tun");
    assert_has(
        &ip(&c.name, &["-d", "link", "show", "eth0"]),
        &["numqueues 2", "persist on"],
    );
    sh_ok(&[
        "ip",
        "netns",
        "exec",
        &c.name,
        "ping",
        "-c2",
        "-i0.2",
        "-W1",
        "198.18.3.1",
    ]);
    assert!(echo_request_arrives(&mut ports, [198, 18, 3, 1]));
    // Only a TUN that exists is reopened.
    assert!(matches!(
        sandbox::reopen_tun(&c.path(), "eth7", open_queues),
        Err(HostError::NoSuchDevice(_))
    ));
    // Nor a TUN we did not make: single-queue, or a TAP; nor one in the
    // router's own namespace.
    ip(&c.name, &["tuntap", "add", "mode", "tun", "name", "sq0"]);
    ip(
        &c.name,
        &[
            "tuntap",
            "add",
            "mode",
            "tap",
            "multi_queue",
            "name",
            "tap0",
        ],
    );
    for dev in ["lo", "sq0", "tap0"] {
        assert!(
            matches!(
                sandbox::reopen_tun(&c.path(), dev, open_queues),
                Err(HostError::Invalid(_))
            ),
            "{dev}"
        );
        assert!(
            matches!(
                remove_from(&r, &c.path(), dev, None),
                Err(HostError::Invalid(_))
            ),
            "{dev}"
        );
    }
    ip(
        &r.name,
        &[
            "tuntap",
            "add",
            "mode",
            "tun",
            "multi_queue",
            "name",
            "own0",
        ],
    );
    let own = r.path();
    let refused = r.run(move || sandbox::reopen_tun(&own, "own0", open_queues).map(|_| ()));
    assert!(matches!(refused, Err(HostError::Invalid(_))), "{refused:?}");
    ip(&r.name, &["link", "del", "own0"]);
    ip(&c.name, &["link", "del", "sq0"]);
    ip(&c.name, &["link", "del", "tap0"]);
    // Removal cuts the queues off; again is success.
    assert!(remove_from(&r, &c.path(), "eth0", None).expect("remove"));
    assert!(!remove_from(&r, &c.path(), "eth0", None).expect("remove again"));
    drop(ports);
    assert_eq!((devices(&r.name), devices(&c.name)), before);
}

#[test]
fn failed_creates_leave_nothing_behind() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let (r, c) = (Netns::new("sbx4-r"), Netns::new("sbx4-c"));
    let cpath = c.path();
    let addrs = ["198.18.4.2/24", "2001:2:0:4::2/64"];
    let gws = ["198.18.4.1", "2001:2:0:4::1"];

    // The host end's name is taken.
    ip(&r.name, &["link", "add", "sbx4h", "type", "bridge"]);
    ip(&c.name, &["link", "add", "eth0", "type", "bridge"]);
    let before = (devices(&r.name), devices(&c.name));
    match veth_from(&r, &Want::new(&cpath, "eth1", "sbx4h", &addrs, &gws)) {
        Err(HostError::DeviceExists(n)) => assert_eq!(n, "sbx4h"),
        other => panic!("{other:?}"),
    }
    // The container's name is taken.
    match veth_from(&r, &Want::new(&cpath, "eth0", "sbx4x", &addrs, &gws)) {
        Err(HostError::DeviceExists(n)) => assert!(n.starts_with("eth0 in "), "{n}"),
        other => panic!("{other:?}"),
    }
    match tun_from(&r, &Want::new(&cpath, "eth0", "", &addrs, &gws)) {
        Err(HostError::DeviceExists(n)) => assert!(n.starts_with("eth0 in "), "{n}"),
        other => panic!("{:?}", other.map(|p| p.len())),
    }
    assert_eq!((devices(&r.name), devices(&c.name)), before);

    // The kernel refuses a step after the device exists (IPv6 is off in the
    // namespace): what was made goes again.
    c.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    match veth_from(&r, &Want::new(&cpath, "eth1", "sbx4y", &addrs, &gws)) {
        Err(HostError::Netlink { op, .. }) => assert!(op.contains("RTM_NEWADDR"), "{op}"),
        other => panic!("{other:?}"),
    }
    match tun_from(&r, &Want::new(&cpath, "tun1", "", &addrs, &gws)) {
        Err(HostError::Netlink { op, .. }) => assert!(op.contains("RTM_NEWADDR"), "{op}"),
        other => panic!("{:?}", other.map(|p| p.len())),
    }
    assert_eq!((devices(&r.name), devices(&c.name)), before);

    // The router's `open` fails, or panics.
    let w = Want::new(&cpath, "tun2", "", &addrs[..1], &gws[..1]);
    let r2 = {
        let w = w.clone();
        r.run(move || {
            sandbox::create_tun(&w.spec(), |_| -> std::io::Result<()> {
                Err(std::io::Error::other("no queues today"))
            })
        })
    };
    assert!(matches!(r2, Err(HostError::Io { .. })), "{r2:?}");
    let panicked = r.run(move || {
        std::panic::catch_unwind(|| {
            sandbox::create_tun(&w.spec(), |_| -> std::io::Result<()> {
                panic!("the router's open panics")
            })
        })
        .is_err()
    });
    assert!(panicked);
    assert_eq!((devices(&r.name), devices(&c.name)), before);

    // Not a network namespace: a regular file, another namespace kind.
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    for p in [file.path(), Path::new("/proc/self/ns/uts")] {
        match veth_from(&r, &Want::new(p, "eth1", "sbx4z", &addrs, &gws)) {
            Err(HostError::Invalid(m)) => assert!(m.contains("namespace"), "{m}"),
            other => panic!("{}: {other:?}", p.display()),
        }
    }
    // The router's own namespace is refused.
    let own = r.path();
    match veth_from(&r, &Want::new(&own, "eth1", "sbx4z", &addrs, &gws)) {
        Err(HostError::Invalid(m)) => assert!(m.contains("own"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A missing one is told apart.
    let gone = PathBuf::from("/var/run/netns/sbx4-never");
    assert!(matches!(
        veth_from(&r, &Want::new(&gone, "eth1", "sbx4z", &addrs, &gws)),
        Err(HostError::NoSuchNetns(_))
    ));
    // remove touches no device of another kind.
    assert!(matches!(
        remove_from(&r, &cpath, "eth0", Some("sbx4h")),
        Err(HostError::Invalid(_))
    ));
    assert!(matches!(
        remove_from(&r, &cpath, "eth0", None),
        Err(HostError::Invalid(_))
    ));
    assert_eq!((devices(&r.name), devices(&c.name)), before);
}

#[test]
fn repeated_attach_and_detach_leak_nothing() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let (r, c) = (Netns::new("sbx5-r"), Netns::new("sbx5-c"));
    let addrs = ["198.18.5.2/24", "2001:2:0:5::2/64"];
    let gws = ["198.18.5.1", "2001:2:0:5::1"];
    // One round first, so lazily opened descriptors (the tracing
    // subscriber, libc caches) are counted on both sides.
    let round = |i: usize| {
        let veth = Want::new(&c.path(), &format!("v{i}"), "sbx5h", &addrs, &gws);
        veth_from(&r, &veth).expect("create_veth");
        assert!(remove_from(&r, &c.path(), &veth.ifname, Some("sbx5h")).expect("remove"));
        let tun = Want::new(&c.path(), &format!("t{i}"), "", &addrs, &gws);
        let ports = tun_from(&r, &tun).expect("create_tun");
        drop(ports);
        assert!(remove_from(&r, &c.path(), &tun.ifname, None).expect("remove"));
    };
    round(0);
    let before = (devices(&r.name), devices(&c.name), fds());
    for i in 1..=20 {
        round(i);
    }
    assert_eq!((devices(&r.name), devices(&c.name), fds()), before);
}
