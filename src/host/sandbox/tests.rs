//! What the sandbox checks before any system call changes something; these
//! run without privileges. Building interfaces is tested in
//! tests/live_sandbox.rs (root).

use super::*;

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().expect("prefix")).collect()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().expect("address")).collect()
}

fn spec<'a>(addresses: &'a [IpNet], gateways: &'a [IpAddr]) -> Spec<'a> {
    Spec {
        netns: Path::new("/var/run/netns/sbx-never"),
        ifname: "eth0",
        host_name: "sbxh0",
        addresses,
        gateways,
        mtu: 1500,
        mac: None,
        queues: 1,
        tx_checksum_off: true,
    }
}

#[test]
fn bad_specs_are_refused() {
    let a = nets(&["198.18.0.2/24", "2001:2::2/64"]);
    let g = ips(&["198.18.0.1"]);
    assert!(check_spec(&spec(&a, &g), Kind::Veth).is_ok());
    let cases: Vec<(Spec, Kind)> = vec![
        (
            Spec {
                ifname: "a/b",
                ..spec(&a, &g)
            },
            Kind::Veth,
        ),
        (
            Spec {
                ifname: "",
                ..spec(&a, &g)
            },
            Kind::Tun,
        ),
        (
            Spec {
                host_name: "sixteen-chars-xx",
                ..spec(&a, &g)
            },
            Kind::Veth,
        ),
        (
            Spec {
                host_name: "-x",
                ..spec(&a, &g)
            },
            Kind::Veth,
        ),
        (
            Spec {
                queues: 0,
                ..spec(&a, &g)
            },
            Kind::Veth,
        ),
        (
            Spec {
                queues: MAX_VETH_QUEUES + 1,
                ..spec(&a, &g)
            },
            Kind::Veth,
        ),
        (
            Spec {
                queues: MAX_TUN_QUEUES + 1,
                ..spec(&a, &g)
            },
            Kind::Tun,
        ),
        (
            Spec {
                mac: Some([1, 0, 0, 0, 0, 1]),
                ..spec(&a, &g)
            },
            Kind::Veth,
        ),
        (
            Spec {
                mac: Some([0; 6]),
                ..spec(&a, &g)
            },
            Kind::Veth,
        ),
        (
            Spec {
                mac: Some([2, 0, 0, 0, 0, 1]),
                ..spec(&a, &g)
            },
            Kind::Tun,
        ),
        (
            Spec {
                mtu: 67,
                ..spec(&[], &[])
            },
            Kind::Veth,
        ),
        (
            Spec {
                mtu: 1279,
                ..spec(&a, &g)
            },
            Kind::Tun,
        ),
    ];
    for (s, kind) in cases {
        assert!(
            matches!(check_spec(&s, kind), Err(HostError::Invalid(_))),
            "{s:?} {kind:?}"
        );
    }
    // A TUN needs no host name; IPv4 alone may go below 1280.
    let v4 = nets(&["198.18.0.2/32"]);
    assert!(check_spec(
        &Spec {
            host_name: "",
            mtu: 576,
            ..spec(&v4, &[])
        },
        Kind::Tun
    )
    .is_ok());
    for bad in [
        &["198.18.0.2/24", "198.18.0.2/32"][..],
        &["0.0.0.0/0"],
        &["224.0.0.1/32"],
        &["127.0.0.2/8"],
        &["::1/128"],
    ] {
        let a = nets(bad);
        assert!(
            matches!(
                check_spec(&spec(&a, &[]), Kind::Veth),
                Err(HostError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn routes_follow_the_gateways() {
    use RouteStep::*;
    let plan = |a: &[&str], g: &[&str], kind| route_plan(&nets(a), &ips(g), kind);
    // Inside the prefix: straight via it.
    assert_eq!(
        plan(&["198.18.0.2/24"], &["198.18.0.1"], Kind::Veth).unwrap(),
        vec![DefaultVia(ips(&["198.18.0.1"])[0])]
    );
    // A /32 covers no gateway: an on-link route to it first.
    let gw = ips(&["198.18.0.1", "2001:2::1"]);
    assert_eq!(
        plan(
            &["198.18.0.2/32", "2001:2::2/128"],
            &["198.18.0.1", "2001:2::1"],
            Kind::Veth
        )
        .unwrap(),
        vec![
            OnLink(gw[0]),
            DefaultVia(gw[0]),
            OnLink(gw[1]),
            DefaultVia(gw[1])
        ]
    );
    // An IPv6 link-local gateway is always on the link.
    assert_eq!(
        plan(&["2001:2::2/128"], &["fe80::1"], Kind::Veth).unwrap(),
        vec![DefaultVia(ips(&["fe80::1"])[0])]
    );
    // No gateway: a veth gets no default route, a TUN one per family.
    assert_eq!(plan(&["198.18.0.2/24"], &[], Kind::Veth).unwrap(), vec![]);
    assert_eq!(
        plan(&["198.18.0.2/24", "2001:2::2/64"], &[], Kind::Tun).unwrap(),
        vec![DefaultDev(true), DefaultDev(false)]
    );
    assert_eq!(
        plan(&["2001:2::2/64"], &["198.18.0.1"], Kind::Tun)
            .unwrap_err()
            .to_string(),
        "invalid argument: gateway 198.18.0.1: the interface has no address of its family"
    );
    for (a, g) in [
        (&["198.18.0.2/24"][..], &["198.18.0.1", "198.18.0.3"][..]),
        (&["198.18.0.2/24"], &["198.18.0.2"]),
        (&["198.18.0.2/24"], &["0.0.0.0"]),
        (&["2001:2::2/64"], &["ff02::1"]),
    ] {
        assert!(
            matches!(plan(a, g, Kind::Veth), Err(HostError::Invalid(_))),
            "{a:?} via {g:?}"
        );
    }
}

#[test]
fn namespace_paths_are_checked_without_side_effects() {
    let missing = Path::new("/var/run/netns/sbx-never-made");
    assert!(matches!(
        Netns::open(missing),
        Err(HostError::NoSuchNetns(_))
    ));
    // A regular file, a directory, another kind of namespace, a FIFO (would
    // block a plain open), /dev/null: refused, not entered.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").expect("write");
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    for p in [
        file.as_path(),
        dir.path(),
        Path::new("/proc/self/ns/uts"),
        fifo.as_path(),
        Path::new("/dev/null"),
    ] {
        match Netns::open(p) {
            Err(HostError::Invalid(m)) => assert!(m.contains("namespace"), "{m}"),
            other => panic!("{}: {:?}", p.display(), other.map(|_| ())),
        }
    }
    // Our own namespace opens, and is refused for changes.
    let own = Netns::open(Path::new("/proc/self/ns/net")).expect("own netns");
    assert!(matches!(own.refuse_own(), Err(HostError::Invalid(_))));
}

#[test]
fn nothing_is_built_for_a_bad_request() {
    let a = nets(&["198.18.0.2/24"]);
    let own = Spec {
        netns: Path::new("/proc/self/ns/net"),
        ..spec(&a, &[])
    };
    assert!(matches!(create_veth(&own), Err(HostError::Invalid(_))));
    assert!(matches!(
        create_tun(
            &Spec {
                host_name: "",
                ..own
            },
            |_| Ok(())
        ),
        Err(HostError::Invalid(_))
    ));
    assert!(matches!(
        create_veth(&spec(&a, &[])),
        Err(HostError::NoSuchNetns(_))
    ));
    assert!(matches!(
        create_veth(&Spec {
            ifname: "a b",
            ..spec(&a, &[])
        }),
        Err(HostError::Invalid(_))
    ));
    // The caller's `open` never runs for a refused TUN.
    let r = create_tun(&spec(&a, &[]), |_| -> std::io::Result<()> {
        panic!("open ran")
    });
    assert!(matches!(r, Err(HostError::NoSuchNetns(_))));
}

#[test]
fn remove_and_inspect_of_what_is_not_there() {
    let missing = Path::new("/var/run/netns/sbx-never-made");
    assert!(!remove(missing, "eth0", None).expect("idempotent"));
    assert!(matches!(
        inspect(missing, "eth0"),
        Err(HostError::NoSuchNetns(_))
    ));
    assert!(matches!(
        remove(missing, "eth0", Some("a/b")),
        Err(HostError::Invalid(_))
    ));
    // A host end that is no veth is not ours to delete.
    assert!(matches!(
        remove(missing, "eth0", Some("lo")),
        Err(HostError::Invalid(_))
    ));
    assert!(!remove(missing, "eth0", Some("sbx-no-such")).expect("idempotent"));
    assert!(matches!(
        remove(Path::new("/proc/self/ns/net"), "eth0", None),
        Err(HostError::Invalid(_))
    ));
    // Reading our own namespace is allowed and changes nothing.
    let lo = inspect(Path::new("/proc/self/ns/net"), "lo")
        .expect("inspect")
        .expect("lo exists");
    assert!(lo.index >= 1);
    assert_eq!(
        inspect(Path::new("/proc/self/ns/net"), "sbx-no-such").expect("inspect"),
        None
    );
}
