//! A container's network interface, built and removed inside a network
//! namespace given by path (`CNI_NETNS`, e.g. `/proc/1234/ns/net` or
//! `/var/run/netns/NAME`), over rtnetlink.
//!
//! Layer: control-plane I/O. The router calls this when an `attach`,
//! `detach` or `check` request arrives ([`crate::api::Request`]); the CNI
//! plugin never builds interfaces itself. Two kinds:
//! - veth ([`create_veth`]): the container end is created directly inside
//!   the namespace (`IFLA_NET_NS_FD` on the peer), so no second interface of
//!   that name ever exists in the router's namespace; the router-side end
//!   stays in the calling thread's namespace.
//! - TUN ([`create_tun`]): a persistent (`TUNSETPERSIST`) multi-queue TUN
//!   created inside the namespace; the router's queues are opened there, by
//!   name, and the device outlives them, so a router that stops leaves the
//!   container its interface and a new one attaches again ([`reopen_tun`]).
//!
//! Invariants:
//! - The calling thread never changes namespace: everything done inside the
//!   container's namespace runs on a short-lived scoped thread that enters
//!   it (`setns`) and ends with the call. Sockets that thread opens stay in
//!   the namespace they were opened in.
//! - The namespace path is hostile input: it is opened without side effects
//!   and must be a network namespace ([`crate::port::sys::open_netns`]);
//!   the router's own namespace is refused for anything that changes it.
//!   Interface names are checked again ([`check_ifname`]) whatever the
//!   caller checked.
//! - A create either returns what it built or removes everything it made
//!   (guards that delete on drop, also when the caller's `open` panics).
//! - [`remove`] and [`reopen_tun`] touch only what a create made: a veth
//!   host end whose other end is in the namespace named, or a persistent
//!   multi-queue TUN inside it; never anything else of that name.
//!   [`remove`] is idempotent.
//!
//! Cost: each call is a handful of netlink requests and one thread; see
//! `benches/sandbox.rs` for the figures on this machine.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ipnet::IpNet;
use netlink_packet_core::{Nla, NLM_F_CREATE, NLM_F_DUMP, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage},
    link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
    route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
        RouteType,
    },
    tc::{TcAttribute, TcHandle, TcMessage},
    AddressFamily, RouteNetlinkMessage,
};

use super::{check_ifname, nl::Rtnl, HostError, Result};
use crate::port::sys;

/// Lowest MTU IPv4 allows.
pub const MIN_MTU_V4: u16 = 68;
/// Lowest MTU IPv6 allows (RFC 8200, section 5).
pub const MIN_MTU_V6: u16 = 1280;
/// Most queues a veth end may have (the kernel's `VETH` limit of
/// `IFLA_NUM_*_QUEUES` is 4096).
pub const MAX_VETH_QUEUES: u32 = 4096;
/// Most queues a TUN may have (the kernel's `MAX_TAP_QUEUES`).
pub const MAX_TUN_QUEUES: u32 = 256;

/// What to build in a container's namespace.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    /// The namespace file (`CNI_NETNS`).
    pub netns: &'a Path,
    /// The interface name inside it (`CNI_IFNAME`).
    pub ifname: &'a str,
    /// veth: the router-side end's name, in the calling thread's namespace.
    /// TUN: unused (may be empty).
    pub host_name: &'a str,
    /// The container's addresses with their prefix length, added with
    /// `IFA_F_NODAD` (usable at once, no duplicate address detection).
    pub addresses: &'a [IpNet],
    /// At most one per family: the container's default route goes via it.
    /// A gateway outside every prefix of its family (a /32 address) gets an
    /// on-link host route first. A TUN family with addresses and no gateway
    /// gets `default dev IFNAME` (a point-to-point device needs no next hop);
    /// a veth family without a gateway gets no default route.
    pub gateways: &'a [IpAddr],
    /// MTU of the container interface (and of the veth host end).
    pub mtu: u16,
    /// veth: the container end's MAC; `None`: the kernel picks a random
    /// locally administered unicast one, returned in [`Veth`]. TUN: must be
    /// `None` (a TUN has no link layer).
    pub mac: Option<[u8; 6]>,
    /// veth: receive and transmit queues of both ends (one per worker).
    /// TUN: checked against 1..=[`MAX_TUN_QUEUES`]; the caller's `open`
    /// opens its queues.
    pub queues: u32,
    /// veth served by AF_XDP: turn tx checksum offload off on the container
    /// end (`ethtool -K IFNAME tx off`), because AF_XDP frames carry no
    /// partial-checksum flag and the router would forward segments whose
    /// checksum nobody completes. TUN: unused.
    pub tx_checksum_off: bool,
}

/// What [`create_veth`] built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Veth {
    /// The container end's MAC.
    pub container_mac: [u8; 6],
    /// The container end's interface index inside its namespace (the CNI
    /// result's `ips[].interface` refers to the interface, not this).
    pub container_index: u32,
    /// The router-side end's interface index in the calling thread's
    /// namespace.
    pub host_index: u32,
}

/// A container interface as [`inspect`] finds it (for CNI `CHECK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Interface index inside the namespace.
    pub index: u32,
    /// Hardware address; `None` for a device without one (TUN).
    pub mac: Option<[u8; 6]>,
    /// MTU, saturated at 65535.
    pub mtu: u16,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// The device kind the kernel reports (`veth`, `tun`, ...), if any.
    pub kind: Option<String>,
    /// Its addresses with prefix length, except IPv6 link-local ones (every
    /// IPv6 interface has one of its own).
    pub addresses: Vec<IpNet>,
    /// Gateways of the default routes through it in the main table.
    pub gateways: Vec<IpAddr>,
}

/// Builds a veth pair: the container end `spec.ifname` created inside
/// `spec.netns` with the MAC, MTU and queues asked for, addressed, up, with
/// its routes (and tx checksum offload off when asked); the host end
/// `spec.host_name` in the calling thread's namespace, same MTU and queues,
/// up. On any failure everything made is removed again.
///
/// Errors: [`HostError::NoSuchNetns`] when the namespace file is missing;
/// [`HostError::Invalid`] for a bad spec or a path that is no network
/// namespace (or is the caller's own); [`HostError::DeviceExists`] when
/// either name is taken (naming which); otherwise the failed operation.
pub fn create_veth(spec: &Spec) -> Result<Veth> {
    check_spec(spec, Kind::Veth)?;
    let steps = route_plan(spec.addresses, spec.gateways, Kind::Veth)?;
    let ns = Netns::open(spec.netns)?;
    ns.refuse_own()?;
    // Chosen here rather than by the kernel, so nothing needs reading back.
    let container_mac = match spec.mac {
        Some(mac) => mac,
        None => random_mac()?,
    };

    let mut rtnl = Rtnl::open()?;
    let answers = rtnl_new_veth(&mut rtnl, spec, container_mac, ns.file.as_raw_fd()).map_err(
        |e| match e {
            HostError::Netlink { errno, .. } if errno == libc::EEXIST => {
                // The kernel does not say which name clashed.
                match super::link::link_info_with(&mut rtnl, spec.host_name) {
                    Err(HostError::NoSuchDevice(_)) => HostError::DeviceExists(format!(
                        "{} in {}",
                        spec.ifname,
                        spec.netns.display()
                    )),
                    _ => HostError::DeviceExists(spec.host_name.to_string()),
                }
            }
            e => e,
        },
    )?;
    // From here on an early return (or a panic) deletes the pair: removing
    // either end removes both.
    let mut host = LinkGuard::new(rtnl, spec.host_name);
    // The kernel echoes the new host end (NLM_F_ECHO, Linux 6.3); older
    // ones need asking. Its IFLA_LINK is the container end's index.
    let echoed = answers.into_iter().find_map(|a| match a {
        RouteNetlinkMessage::NewLink(l) if link_name(&l) == Some(spec.host_name) => Some(l),
        _ => None,
    });
    let host_link = match echoed {
        Some(l) => l,
        None => get_link(&mut host.rtnl, spec.host_name)?,
    };
    let host_index = host_link.header.index;
    host.index = Some(host_index);
    let peer_index = host_link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Link(i) if *i != 0 => Some(*i),
        _ => None,
    });

    let container_index = ns.run(|| {
        let mut rtnl = Rtnl::open()?;
        let index = match peer_index {
            Some(i) => i,
            None => get_link(&mut rtnl, spec.ifname)?.header.index,
        };
        no_dad_on_link_local(spec);
        configure(&mut rtnl, spec, index, &steps)?;
        if spec.tx_checksum_off {
            sys::set_tx_checksum(spec.ifname, false).map_err(|source| HostError::Io {
                op: format!("turn off tx checksum offload on {}", spec.ifname),
                source,
            })?;
        }
        Ok(index)
    })?;
    host.keep();
    tracing::debug!(
        host = spec.host_name,
        ifname = spec.ifname,
        netns = %spec.netns.display(),
        "veth built"
    );
    Ok(Veth {
        container_mac,
        container_index,
        host_index,
    })
}

/// Builds a persistent multi-queue TUN named `spec.ifname` inside
/// `spec.netns`, calls `open` with its name on a thread inside the
/// namespace (so the caller's queue descriptors attach to it there; see
/// [`crate::port::tun::TunPort::open_with`]), then sets the MTU, addresses
/// and routes and brings it up. The device gets no qdisc (`noqueue`; see
/// `no_qdisc` for why that loses nothing). Returns what `open` returned. The device
/// outlives the queues: closing them (a router that stops) leaves it, with
/// its addresses and routes, to [`reopen_tun`] or [`remove`]. On any failure
/// the device is deleted again.
///
/// Errors as [`create_veth`]; a failed `open` is [`HostError::Io`].
pub fn create_tun<T: Send>(
    spec: &Spec,
    open: impl FnOnce(&str) -> std::io::Result<T> + Send,
) -> Result<T> {
    check_spec(spec, Kind::Tun)?;
    let steps = route_plan(spec.addresses, spec.gateways, Kind::Tun)?;
    let ns = Netns::open(spec.netns)?;
    ns.refuse_own()?;
    ns.run(|| {
        let rtnl = Rtnl::open()?;
        sys::tun_create_persistent(spec.ifname).map_err(|source| {
            if source.raw_os_error() == Some(libc::EBUSY) {
                HostError::DeviceExists(format!("{} in {}", spec.ifname, spec.netns.display()))
            } else {
                HostError::Io {
                    op: format!("create persistent TUN {}", spec.ifname),
                    source,
                }
            }
        })?;
        let mut dev = LinkGuard::new(rtnl, spec.ifname);
        let index = sys::ifindex(spec.ifname).map_err(|source| HostError::Io {
            op: format!("find the index of TUN {}", spec.ifname),
            source,
        })?;
        dev.index = Some(index);
        // Both before `open`, which may bring the device up.
        no_dad_on_link_local(spec);
        no_qdisc(&mut dev.rtnl, index, spec.ifname)?;
        let queues = open(spec.ifname).map_err(|source| HostError::Io {
            op: format!("open the queues of TUN {}", spec.ifname),
            source,
        })?;
        configure(&mut dev.rtnl, spec, index, &steps)?;
        dev.keep();
        tracing::debug!(ifname = spec.ifname, netns = %spec.netns.display(), "TUN built");
        Ok(queues)
    })
}

/// Attaches to the persistent TUN `ifname` inside `netns` after a router
/// restart: checks that it exists and is a persistent multi-queue TUN (as
/// [`create_tun`] makes them), then calls `open` with its name on a thread
/// inside the namespace. Changes nothing on the device.
///
/// Errors: [`HostError::NoSuchNetns`], [`HostError::NoSuchDevice`],
/// [`HostError::Invalid`] when the device is no such TUN or the namespace is
/// the caller's own; a failed `open` is [`HostError::Io`].
pub fn reopen_tun<T: Send>(
    netns: &Path,
    ifname: &str,
    open: impl FnOnce(&str) -> std::io::Result<T> + Send,
) -> Result<T> {
    check_ifname(ifname)?;
    let ns = Netns::open(netns)?;
    // Attaching queues steers the device's packets to them: never to a TUN
    // of the router's own host.
    ns.refuse_own()?;
    ns.run(|| {
        let mut rtnl = Rtnl::open()?;
        let link = get_link(&mut rtnl, ifname)?;
        require_our_tun(&link, ifname)?;
        open(ifname).map_err(|source| HostError::Io {
            op: format!("open the queues of TUN {ifname}"),
            source,
        })
    })
}

/// Removes a container interface; idempotent.
///
/// - veth (`host_name` given): deletes the host end in the calling thread's
///   namespace, which deletes the container end with it. Refuses (with
///   [`HostError::Invalid`]) a `host_name` that is no veth, or whose other
///   end is not in `netns` while that namespace file exists; with the file
///   gone the host end is deleted without that check (the container is
///   gone). `ifname` is only checked.
/// - TUN (`host_name` `None`): deletes TUN `ifname` inside `netns`, whether
///   queues are still attached or not (they are cut off). Refuses a device
///   of that name that is no persistent multi-queue TUN (not one
///   [`create_tun`] made).
///
/// Returns whether something was removed: a missing namespace file or
/// interface is `Ok(false)`. A path that is no network namespace (or the
/// router's own) is [`HostError::Invalid`].
pub fn remove(netns: &Path, ifname: &str, host_name: Option<&str>) -> Result<bool> {
    check_ifname(ifname)?;
    if let Some(host) = host_name {
        check_ifname(host)?;
        let mut rtnl = Rtnl::open()?;
        let link = match get_link(&mut rtnl, host) {
            Ok(l) => l,
            Err(HostError::NoSuchDevice(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        require_kind(&link, InfoKind::Veth, host)?;
        match Netns::open(netns) {
            Ok(ns) => require_peer_in(&mut rtnl, &link, &ns, host)?,
            // The container is gone; its end may linger while the kernel
            // tears the namespace down. The host end is still ours.
            Err(HostError::NoSuchNetns(_)) => {}
            Err(e) => return Err(e),
        }
        return gone_is_false(delete_link(&mut rtnl, link.header.index, host));
    }
    let ns = match Netns::open(netns) {
        Ok(ns) => ns,
        Err(HostError::NoSuchNetns(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    ns.refuse_own()?;
    ns.run(|| {
        let mut rtnl = Rtnl::open()?;
        let link = match get_link(&mut rtnl, ifname) {
            Ok(l) => l,
            Err(HostError::NoSuchDevice(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        require_our_tun(&link, ifname)?;
        gone_is_false(delete_link(&mut rtnl, link.header.index, ifname))
    })
}

/// Reads interface `ifname` inside `netns`: `Ok(None)` when it does not
/// exist there. A missing namespace file is [`HostError::NoSuchNetns`].
pub fn inspect(netns: &Path, ifname: &str) -> Result<Option<Seen>> {
    check_ifname(ifname)?;
    let ns = Netns::open(netns)?;
    ns.run(|| {
        let mut rtnl = Rtnl::open()?;
        let link = match get_link(&mut rtnl, ifname) {
            Ok(l) => l,
            Err(HostError::NoSuchDevice(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let index = link.header.index;
        let mut seen = Seen {
            index,
            mac: link_mac(&link),
            mtu: 0,
            up: link.header.flags.contains(LinkFlags::Up),
            kind: link_kind(&link).map(|k| k.to_string()),
            addresses: Vec::new(),
            gateways: Vec::new(),
        };
        for attr in &link.attributes {
            if let LinkAttribute::Mtu(m) = attr {
                seen.mtu = u16::try_from(*m).unwrap_or(u16::MAX);
            }
        }
        seen.addresses = addresses_of(&mut rtnl, index, ifname)?;
        seen.gateways = default_gateways_of(&mut rtnl, index, ifname)?;
        Ok(Some(seen))
    })
}

/// The two kinds of container interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Veth,
    Tun,
}

/// Checks everything about a spec that needs no system call.
fn check_spec(spec: &Spec, kind: Kind) -> Result<()> {
    check_ifname(spec.ifname)?;
    let bad = |m: String| Err(HostError::Invalid(m));
    match kind {
        Kind::Veth => {
            check_ifname(spec.host_name)?;
            if !(1..=MAX_VETH_QUEUES).contains(&spec.queues) {
                return bad(format!(
                    "{} veth queues (1..={MAX_VETH_QUEUES})",
                    spec.queues
                ));
            }
            if let Some(mac) = spec.mac {
                if mac[0] & 1 == 1 || mac == [0; 6] {
                    return bad(format!("MAC {} is multicast or zero", mac_string(mac)));
                }
            }
        }
        Kind::Tun => {
            if !(1..=MAX_TUN_QUEUES).contains(&spec.queues) {
                return bad(format!("{} TUN queues (1..={MAX_TUN_QUEUES})", spec.queues));
            }
            if spec.mac.is_some() {
                return bad("a TUN has no MAC address".into());
            }
        }
    }
    if spec.mtu < MIN_MTU_V4 {
        return bad(format!(
            "MTU {} is below IPv4's minimum of {MIN_MTU_V4}",
            spec.mtu
        ));
    }
    if spec.mtu < MIN_MTU_V6 && spec.addresses.iter().any(|a| a.addr().is_ipv6()) {
        return bad(format!(
            "MTU {} is below IPv6's minimum of {MIN_MTU_V6}",
            spec.mtu
        ));
    }
    for (i, a) in spec.addresses.iter().enumerate() {
        if spec.addresses[..i].iter().any(|b| b.addr() == a.addr()) {
            return bad(format!("address {} given twice", a.addr()));
        }
        let ip = a.addr();
        if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
            return bad(format!("address {a} cannot be an interface's address"));
        }
    }
    Ok(())
}

/// One route to add, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RouteStep {
    /// A host route to the gateway on the link (scope link), because no
    /// address's prefix covers it.
    OnLink(IpAddr),
    /// `default via GATEWAY dev IFNAME`.
    DefaultVia(IpAddr),
    /// `default dev IFNAME` for the IPv4 (`true`) or IPv6 family.
    DefaultDev(bool),
}

/// The routes a spec asks for: at most one gateway per family, each of a
/// family the interface has an address of.
fn route_plan(addresses: &[IpNet], gateways: &[IpAddr], kind: Kind) -> Result<Vec<RouteStep>> {
    let mut steps = Vec::new();
    for v4 in [true, false] {
        let fam: Vec<&IpAddr> = gateways.iter().filter(|g| g.is_ipv4() == v4).collect();
        let has_addr = addresses.iter().any(|a| a.addr().is_ipv4() == v4);
        match fam.as_slice() {
            [] if kind == Kind::Tun && has_addr => steps.push(RouteStep::DefaultDev(v4)),
            [] => {}
            [gw] => {
                let gw = **gw;
                if !has_addr {
                    return Err(HostError::Invalid(format!(
                        "gateway {gw}: the interface has no address of its family"
                    )));
                }
                if gw.is_unspecified() || gw.is_multicast() || gw.is_loopback() {
                    return Err(HostError::Invalid(format!(
                        "gateway {gw} cannot be a next hop"
                    )));
                }
                if addresses.iter().any(|a| a.addr() == gw) {
                    return Err(HostError::Invalid(format!(
                        "gateway {gw} is one of the interface's own addresses"
                    )));
                }
                let link_local =
                    matches!(gw, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
                if !link_local && !addresses.iter().any(|a| a.contains(&gw)) {
                    steps.push(RouteStep::OnLink(gw));
                }
                steps.push(RouteStep::DefaultVia(gw));
            }
            more => {
                return Err(HostError::Invalid(format!(
                    "at most one gateway per address family, got {more:?}"
                )))
            }
        }
    }
    Ok(steps)
}

/// Inside the namespace: the addresses (no DAD), MTU and up, then the
/// routes (IPv4 refuses a route through a device that is down), as one
/// netlink batch. A failure leaves the device half configured: the caller
/// deletes it.
fn configure(rtnl: &mut Rtnl, spec: &Spec, index: u32, steps: &[RouteStep]) -> Result<()> {
    let ifname = spec.ifname;
    let mut batch = Vec::with_capacity(spec.addresses.len() + 1 + steps.len());
    for a in spec.addresses {
        let mut m = AddressMessage::default();
        m.header.family = family(a.addr());
        m.header.prefix_len = a.prefix_len();
        m.header.index = index;
        m.header.flags = AddressHeaderFlags::Nodad;
        if a.addr().is_ipv4() {
            m.attributes.push(AddressAttribute::Local(a.addr()));
        }
        m.attributes.push(AddressAttribute::Address(a.addr()));
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        batch.push((
            format!("RTM_NEWADDR {a} dev {ifname}"),
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        ));
    }
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    m.attributes.push(LinkAttribute::Mtu(u32::from(spec.mtu)));
    batch.push((
        format!("RTM_NEWLINK {ifname} mtu {} up", spec.mtu),
        RouteNetlinkMessage::SetLink(m),
        0,
    ));
    for step in steps {
        let (v4, dst, gw, scope) = match *step {
            RouteStep::OnLink(gw) => (gw.is_ipv4(), Some(gw), None, RouteScope::Link),
            RouteStep::DefaultVia(gw) => (gw.is_ipv4(), None, Some(gw), RouteScope::Universe),
            RouteStep::DefaultDev(v4) => (v4, None, None, RouteScope::Link),
        };
        let mut m = RouteMessage::default();
        m.header.address_family = if v4 {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = scope;
        m.header.kind = RouteType::Unicast;
        if let Some(d) = dst {
            m.header.destination_prefix_length = if v4 { 32 } else { 128 };
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(d)));
        }
        if let Some(g) = gw {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(g)));
        }
        m.attributes.push(RouteAttribute::Oif(index));
        batch.push((
            format!("RTM_NEWROUTE {step:?} dev {ifname}"),
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_EXCL,
        ));
    }
    rtnl.request_batch(batch)
}

/// Turns duplicate address detection off for the interface's own IPv6
/// link-local address before it comes up (`accept_dad = 0`, this device
/// only), when the spec has IPv6 addresses. Best effort: the configured
/// addresses skip DAD anyway (NODAD); a failure costs the link-local
/// address its first second. Writes `/proc/sys/net`, which shows the
/// calling thread's network namespace.
fn no_dad_on_link_local(spec: &Spec) {
    if !spec.addresses.iter().any(|a| a.addr().is_ipv6()) {
        return;
    }
    let ifname = spec.ifname;
    let knob = format!("/proc/sys/net/ipv6/conf/{ifname}/accept_dad");
    if let Err(e) = std::fs::write(&knob, "0") {
        tracing::debug!(ifname, error = %e, "accept_dad left as it was");
    }
}

/// Gives a TUN no queueing discipline (`tc qdisc replace dev IFNAME root
/// noqueue`), before it first comes up.
///
/// A multi-queue TUN has 256 transmit queues, and at link-up the kernel
/// gives each a default qdisc sized by `txqueuelen`: about 2 ms of the
/// build and 6 MiB per device (measured). None of it ever holds a packet:
/// the TUN never stops its queues (a full ring drops, counted as the
/// device's tx drops), so a qdisc passes every packet straight on. The
/// device's own ring (`txqueuelen` packets per queue) still buffers.
fn no_qdisc(rtnl: &mut Rtnl, index: u32, ifname: &str) -> Result<()> {
    let mut m = TcMessage::default();
    m.header.index = i32::try_from(index).unwrap_or(i32::MAX);
    m.header.parent = TcHandle::ROOT;
    m.attributes.push(TcAttribute::Kind("noqueue".into()));
    rtnl.request(
        &format!("RTM_NEWQDISC {ifname} root noqueue"),
        RouteNetlinkMessage::NewQueueDiscipline(m),
        NLM_F_CREATE | NLM_F_REPLACE,
    )?;
    Ok(())
}

/// The veth RTM_NEWLINK: host end here and up, peer inside `netns_fd`.
/// Returns the kernel's answers (the echoed host end, where supported).
fn rtnl_new_veth(
    rtnl: &mut Rtnl,
    spec: &Spec,
    mac: [u8; 6],
    netns_fd: i32,
) -> Result<Vec<RouteNetlinkMessage>> {
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(spec.ifname.to_string()));
    peer.attributes.push(LinkAttribute::NetNsFd(netns_fd));
    peer.attributes
        .push(LinkAttribute::Mtu(u32::from(spec.mtu)));
    peer.attributes
        .push(LinkAttribute::NumTxQueues(spec.queues));
    peer.attributes
        .push(LinkAttribute::NumRxQueues(spec.queues));
    peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
    let mut host = LinkMessage::default();
    host.header.flags = LinkFlags::Up;
    host.header.change_mask = LinkFlags::Up;
    host.attributes
        .push(LinkAttribute::IfName(spec.host_name.to_string()));
    host.attributes
        .push(LinkAttribute::Mtu(u32::from(spec.mtu)));
    host.attributes
        .push(LinkAttribute::NumTxQueues(spec.queues));
    host.attributes
        .push(LinkAttribute::NumRxQueues(spec.queues));
    host.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    rtnl.request(
        &format!(
            "RTM_NEWLINK veth {} peer {} in {}",
            spec.host_name,
            spec.ifname,
            spec.netns.display()
        ),
        RouteNetlinkMessage::NewLink(host),
        NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
    )
}

/// A random locally administered unicast MAC, as the kernel would pick.
fn random_mac() -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    sys::random_bytes(&mut mac).map_err(|source| HostError::Io {
        op: "pick a random MAC".into(),
        source,
    })?;
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// Refuses veth `link` (here) unless its other end is in namespace `ns`:
/// the kernel names the peer's namespace by an id local to ours
/// (`IFLA_LINK_NETNSID`), which `RTM_GETNSID` gives for the namespace file.
fn require_peer_in(rtnl: &mut Rtnl, link: &LinkMessage, ns: &Netns, name: &str) -> Result<()> {
    use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
    let peer_nsid = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkNetNsId(id) => Some(*id),
        _ => None,
    });
    let mut req = NsidMessage::default();
    let fd = u32::try_from(ns.file.as_raw_fd()).unwrap_or(u32::MAX);
    req.attributes.push(NsidAttribute::Fd(fd));
    let answers = rtnl.request(
        &format!("RTM_GETNSID {}", ns.path.display()),
        RouteNetlinkMessage::GetNsId(req),
        0,
    )?;
    let nsid = answers.iter().find_map(|a| match a {
        RouteNetlinkMessage::NewNsId(m) => m.attributes.iter().find_map(|n| match n {
            NsidAttribute::Id(id) => Some(*id),
            _ => None,
        }),
        _ => None,
    });
    match (peer_nsid, nsid) {
        (Some(p), Some(n)) if p == n && n >= 0 => Ok(()),
        _ => Err(HostError::Invalid(format!(
            "the other end of veth {name} is not in {}: not ours to touch",
            ns.path.display()
        ))),
    }
}

/// A delete's outcome as "removed?": a device gone in between (its peer or
/// namespace went first) was not removed by us, and that is no error.
fn gone_is_false(r: Result<()>) -> Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(HostError::Netlink { errno, .. }) if errno == libc::ENODEV => Ok(false),
        Err(e) => Err(e),
    }
}

/// `IFLA_TUN_*` attributes of a TUN's `IFLA_INFO_DATA` (Linux 4.15).
const IFLA_TUN_TYPE: u16 = 3;
const IFLA_TUN_PERSIST: u16 = 6;
const IFLA_TUN_MULTI_QUEUE: u16 = 7;

/// Refuses a device that is not a TUN as [`create_tun`] makes them: kind
/// `tun`, layer 3 (`IFF_TUN`), persistent, multi-queue.
fn require_our_tun(link: &LinkMessage, name: &str) -> Result<()> {
    require_kind(link, InfoKind::Tun, name)?;
    let attr = |kind: u16| -> Option<u8> {
        link.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Data(InfoData::Tun(attrs)) => attrs.iter().find_map(|t| {
                    (t.kind() == kind && t.value_len() == 1).then(|| {
                        let mut v = [0u8; 1];
                        t.emit_value(&mut v);
                        v[0]
                    })
                }),
                _ => None,
            }),
            _ => None,
        })
    };
    let ours = attr(IFLA_TUN_TYPE) == Some(libc::IFF_TUN as u8)
        && attr(IFLA_TUN_PERSIST) == Some(1)
        && attr(IFLA_TUN_MULTI_QUEUE) == Some(1);
    if ours {
        Ok(())
    } else {
        Err(HostError::Invalid(format!(
            "{name} is no persistent multi-queue TUN: not ours to touch"
        )))
    }
}

fn require_kind(link: &LinkMessage, kind: InfoKind, name: &str) -> Result<()> {
    match link_kind(link) {
        Some(k) if *k == kind => Ok(()),
        other => Err(HostError::Invalid(format!(
            "{name} is {}, not a {kind} device: not ours to touch",
            other.map_or("of no kind".to_string(), |k| format!("a {k} device"))
        ))),
    }
}

fn delete_link(rtnl: &mut Rtnl, index: u32, name: &str) -> Result<()> {
    let mut m = LinkMessage::default();
    m.header.index = index;
    rtnl.request(
        &format!("RTM_DELLINK {name}"),
        RouteNetlinkMessage::DelLink(m),
        0,
    )?;
    Ok(())
}

/// RTM_GETLINK by name; [`HostError::NoSuchDevice`] when missing.
fn get_link(rtnl: &mut Rtnl, name: &str) -> Result<LinkMessage> {
    super::link::get_link(rtnl, name, LinkMessage::default(), name)
}

fn link_kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k),
            _ => None,
        }),
        _ => None,
    })
}

fn link_mac(link: &LinkMessage) -> Option<[u8; 6]> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(a) => <[u8; 6]>::try_from(a.as_slice()).ok(),
        _ => None,
    })
}

/// The addresses on interface `index`, except IPv6 link-local ones.
fn addresses_of(rtnl: &mut Rtnl, index: u32, ifname: &str) -> Result<Vec<IpNet>> {
    let mut req = AddressMessage::default();
    // With strict checking the kernel filters by index; we filter again.
    req.header.index = index;
    let answers = rtnl.request(
        &format!("RTM_GETADDR dev {ifname}"),
        RouteNetlinkMessage::GetAddress(req),
        NLM_F_DUMP,
    )?;
    let mut out = Vec::new();
    for a in answers {
        let RouteNetlinkMessage::NewAddress(m) = a else {
            continue;
        };
        if m.header.index != index {
            continue;
        }
        // IPv4 names the local address IFA_LOCAL (IFA_ADDRESS is the peer
        // on a point-to-point link); IPv6 gives IFA_ADDRESS only.
        let mut local = None;
        let mut address = None;
        for attr in &m.attributes {
            match attr {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                _ => {}
            }
        }
        let Some(ip) = local.or(address) else {
            continue;
        };
        if matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80) {
            continue;
        }
        if let Ok(net) = IpNet::new(ip, m.header.prefix_len) {
            out.push(net);
        }
    }
    Ok(out)
}

/// Gateways of the default routes through interface `index`, main table.
fn default_gateways_of(rtnl: &mut Rtnl, index: u32, ifname: &str) -> Result<Vec<IpAddr>> {
    let answers = rtnl.request(
        &format!("RTM_GETROUTE default dev {ifname}"),
        RouteNetlinkMessage::GetRoute(RouteMessage::default()),
        NLM_F_DUMP,
    )?;
    let mut out = Vec::new();
    for a in answers {
        let RouteNetlinkMessage::NewRoute(m) = a else {
            continue;
        };
        if m.header.destination_prefix_length != 0 {
            continue;
        }
        let mut oif = None;
        let mut gw = None;
        let mut table = u32::from(m.header.table);
        for attr in &m.attributes {
            match attr {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => gw = Some(IpAddr::V4(*g)),
                RouteAttribute::Gateway(RouteAddress::Inet6(g)) => gw = Some(IpAddr::V6(*g)),
                RouteAttribute::Table(t) => table = *t,
                _ => {}
            }
        }
        if oif == Some(index) && table == u32::from(RouteHeader::RT_TABLE_MAIN) {
            if let Some(g) = gw {
                out.push(g);
            }
        }
    }
    Ok(out)
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An open, checked network namespace file.
pub(super) struct Netns<'p> {
    file: File,
    path: &'p Path,
}

impl<'p> Netns<'p> {
    /// Opens `path` ([`sys::open_netns`]): missing is
    /// [`HostError::NoSuchNetns`], no network namespace is
    /// [`HostError::Invalid`].
    pub(super) fn open(path: &'p Path) -> Result<Self> {
        match sys::open_netns(path) {
            Ok(fd) => Ok(Netns {
                file: File::from(fd),
                path,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(HostError::NoSuchNetns(path.display().to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                Err(HostError::Invalid(format!("netns {}: {e}", path.display())))
            }
            Err(source) => Err(HostError::Io {
                op: format!("open netns {}", path.display()),
                source,
            }),
        }
    }

    /// Refuses the calling thread's own namespace: building a container's
    /// interface there would change the router's host (default routes).
    fn refuse_own(&self) -> Result<()> {
        let io = |source| HostError::Io {
            op: "compare network namespaces".into(),
            source,
        };
        let own = std::fs::metadata("/proc/thread-self/ns/net").map_err(io)?;
        let this = self.file.metadata().map_err(io)?;
        if (own.dev(), own.ino()) == (this.dev(), this.ino()) {
            return Err(HostError::Invalid(format!(
                "netns {} is the router's own network namespace",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Runs `f` on a new thread inside the namespace and returns its result
    /// (re-raising its panic). The calling thread stays where it is.
    pub(super) fn run<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        let fd: BorrowedFd<'_> = self.file.as_fd();
        let path = self.path;
        std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .name("vxr-netns".into())
                .spawn_scoped(s, move || {
                    sys::enter_netns_fd(fd).map_err(|source| HostError::Io {
                        op: format!("enter netns {}", path.display()),
                        source,
                    })?;
                    f()
                })
                .map_err(|source| HostError::Io {
                    op: "start a thread for the netns".into(),
                    source,
                })?;
            handle
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

/// Deletes a device this call created, by index once known, when dropped
/// without [`LinkGuard::keep`] (an error return or a panic).
struct LinkGuard {
    rtnl: Rtnl,
    name: String,
    index: Option<u32>,
    armed: bool,
}

impl LinkGuard {
    fn new(rtnl: Rtnl, name: &str) -> Self {
        LinkGuard {
            rtnl,
            name: name.to_string(),
            index: None,
            armed: true,
        }
    }

    fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let r = match self.index {
            Some(i) => delete_link(&mut self.rtnl, i, &self.name),
            None => {
                let mut m = LinkMessage::default();
                m.attributes.push(LinkAttribute::IfName(self.name.clone()));
                self.rtnl
                    .request(
                        &format!("RTM_DELLINK {}", self.name),
                        RouteNetlinkMessage::DelLink(m),
                        0,
                    )
                    .map(|_| ())
            }
        };
        if let Err(e) = r {
            tracing::warn!(device = %self.name, "removing a half-built interface: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
