//! Container ports in network namespaces, built as a CNI plugin builds them.
//!
//! Layer: control-plane I/O. For a port with `netns` set, the router creates
//! the device, moves the container end into the namespace (as `eth0`), gives
//! it the port's addresses, MTU and default route, and removes everything it
//! created when the returned [`CreatedDevice`] is dropped (the control loop
//! drops its ports on every way out, SIGINT and SIGTERM included).
//!
//! How: this module drives iproute2 (`ip`) through `std::process::Command`
//! (never a shell; every name is validated first). Creating a named
//! namespace means bind-mounting `/proc/self/ns/net` under `/run/netns`
//! from a thread that unshared itself, and moving and addressing devices
//! inside it means netlink sockets opened in that namespace: `ip` does both
//! correctly and is present wherever `vxrouter run` can run, while the
//! netlink version would be several hundred lines of `unsafe` setns/mount
//! code for a path that runs once per port at start-up and exit. The
//! per-packet and per-event paths ([`super::link`], [`super::neigh`]) use
//! netlink directly, and so do the ownership markers ([`super::owner`]),
//! which are read back and compared, not printed for a person.
//!
//! Invariants:
//! - Every device made here carries our marker ([`super::owner`]): this
//!   router's host, the port, whether we made the namespace, and this
//!   process. It is written right after the device is made and again by
//!   the router that adopts the device in a takeover.
//! - We never adopt a device that already exists, except one that our
//!   marker says a router of this host made for this same port and whose
//!   process is gone (killed): that one is removed, with one log line, and
//!   the port is made afresh. Any other device under the port's name, or
//!   under `eth0` in its namespace, fails the port with
//!   [`HostError::DeviceExists`] ([`HostError::DeviceInUse`] when its
//!   router still runs), so teardown can only delete what we made.
//! - A namespace is deleted on teardown only if we created it, or the
//!   killed router whose devices we removed had created it (its marker
//!   says so).
//! - The only sysctl written is `net.ipv6.conf.eth0.accept_dad=0` inside the
//!   container's namespace (never the host's), and IPv6 addresses are added
//!   with `nodad`, so they are usable at once instead of after ~1 s of DAD.
//! - A failure half-way tears down what was already built.
//!
//! TUN ports: the router's queue file descriptors are bound to the device,
//! not to a namespace. A TUN created here (persistent, multi-queue), whose
//! queues the caller attaches while it is still in the router's namespace,
//! keeps working for those descriptors after it moves into the container's
//! namespace (Linux 6.18 behaves so; `tests/host_netns.rs` moves an
//! attached multi-queue TUN into a namespace, addresses it there, and reads
//! the namespace's packets from the descriptor).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ipnet::IpNet;

use super::{check_ifname, owner, HostError, Result};

/// Name of the container's interface inside its namespace.
pub const CONTAINER_IFNAME: &str = "eth0";

/// Directory where iproute2 keeps named namespaces.
const NETNS_RUN_DIR: &str = "/run/netns";

/// What kind of device a [`CreatedDevice`] stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// A veth pair: the host end in the router's namespace, `eth0` in the
    /// container's.
    Veth,
    /// A persistent multi-queue TUN, moved into the container's namespace
    /// as `eth0`.
    Tun,
}

/// What must be undone for one port.
#[derive(Clone, Debug)]
struct Record {
    kind: DeviceKind,
    port_name: String,
    netns: String,
    netns_created: bool,
    /// True once the device lives in `netns` under [`CONTAINER_IFNAME`].
    moved: bool,
}

/// Everything created and not yet removed, so a signal path can remove it
/// without owning the [`CreatedDevice`] values.
static REGISTRY: Mutex<Option<HashMap<u64, Record>>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn with_registry<R>(f: impl FnOnce(&mut HashMap<u64, Record>) -> R) -> R {
    // A panic elsewhere while holding the lock must not stop teardown.
    let mut guard = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// A container port this process created; dropping it removes the device
/// (both veth ends, or the TUN) and the namespace if we created that too.
#[derive(Debug)]
pub struct CreatedDevice {
    id: u64,
    kind: DeviceKind,
    port_name: String,
    netns: String,
    netns_created: bool,
}

/// A [`CreatedDevice`] as one router process hands it to the next
/// (handover): what the new owner needs to remove it in its turn.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceHandle {
    pub kind: DeviceKind,
    pub port_name: String,
    pub netns: String,
    pub netns_created: bool,
    /// The device lives in `netns` as [`CONTAINER_IFNAME`].
    pub moved: bool,
}

impl CreatedDevice {
    /// The port's name: the host end of a veth, or the TUN's name before it
    /// moved into the namespace.
    pub fn port_name(&self) -> &str {
        &self.port_name
    }

    /// The container's namespace.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Whether this port created the namespace (and so deletes it).
    pub fn netns_created(&self) -> bool {
        self.netns_created
    }

    /// Veth or TUN.
    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    /// What the next owner needs (see [`CreatedDevice::adopt`]).
    pub fn handle(&self) -> DeviceHandle {
        let moved = with_registry(|r| r.get(&self.id).is_some_and(|rec| rec.moved));
        DeviceHandle {
            kind: self.kind,
            port_name: self.port_name.clone(),
            netns: self.netns.clone(),
            netns_created: self.netns_created,
            moved,
        }
    }

    /// Lets go of the device without removing it: another process owns it
    /// now (handover).
    pub fn release(self) {
        with_registry(|r| r.remove(&self.id));
    }

    /// Takes ownership of a device another router process of `host` made
    /// and handed over: dropping the result removes it, as if this process
    /// made it. Its marker names this process from now on, so a later start
    /// knows the device is in use while this router runs and stale once it
    /// is killed; a marker that cannot be written is logged (the device is
    /// adopted all the same).
    pub fn adopt(h: &DeviceHandle, host: &str) -> CreatedDevice {
        let d = CreatedDevice::new(h.kind, &h.port_name, &h.netns, h.netns_created);
        if h.moved {
            d.mark_moved();
        }
        let marked =
            owner::Marker::this_process(host, &h.port_name, h.netns_created).and_then(|m| {
                let inside = || owner::mark_in(&netns_path(&h.netns), CONTAINER_IFNAME, &m);
                match (h.kind, h.moved) {
                    (DeviceKind::Veth, _) => {
                        owner::mark_here(&h.port_name, &m).and_then(|()| inside())
                    }
                    (DeviceKind::Tun, true) => inside(),
                    (DeviceKind::Tun, false) => owner::mark_here(&h.port_name, &m),
                }
            });
        if let Err(e) = marked {
            tracing::warn!(port = %h.port_name, netns = %h.netns, "marking an adopted device as this router's: {e}");
        }
        d
    }

    /// Removes the device and, if we made it, the namespace now, reporting
    /// the first failure; dropping does the same and only logs.
    pub fn teardown(self) -> Result<()> {
        // Taken out of the registry, so the drop of `self` does nothing.
        let record = with_registry(|r| r.remove(&self.id));
        record.map_or(Ok(()), |r| teardown_record(&r))
    }

    fn new(kind: DeviceKind, port_name: &str, netns: &str, netns_created: bool) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        with_registry(|r| {
            r.insert(
                id,
                Record {
                    kind,
                    port_name: port_name.to_string(),
                    netns: netns.to_string(),
                    netns_created,
                    moved: false,
                },
            )
        });
        CreatedDevice {
            id,
            kind,
            port_name: port_name.to_string(),
            netns: netns.to_string(),
            netns_created,
        }
    }

    fn mark_moved(&self) {
        with_registry(|r| {
            if let Some(rec) = r.get_mut(&self.id) {
                rec.moved = true;
            }
        });
    }
}

impl Drop for CreatedDevice {
    fn drop(&mut self) {
        if let Some(r) = with_registry(|r| r.remove(&self.id)) {
            if let Err(e) = teardown_record(&r) {
                tracing::warn!(port = %r.port_name, netns = %r.netns, "teardown: {e}");
            }
        }
    }
}

fn teardown_record(r: &Record) -> Result<()> {
    let mut first_err = None;
    let dev = if r.moved {
        ip(&["-n", &r.netns, "link", "del", CONTAINER_IFNAME])
    } else {
        ip(&["link", "del", &r.port_name])
    };
    // Already gone (the namespace or the peer went first) is success.
    if let Err(e) = dev {
        let gone = match &e {
            HostError::Command { stderr, .. } => {
                stderr.contains("Cannot find device") || stderr.contains("No such")
            }
            _ => false,
        };
        if !gone {
            first_err = Some(e);
        }
    }
    if r.netns_created {
        if let Err(e) = ip(&["netns", "del", &r.netns]) {
            first_err.get_or_insert(e);
        }
    }
    tracing::debug!(port = %r.port_name, kind = ?r.kind, netns = %r.netns, "container port removed");
    first_err.map_or(Ok(()), Err)
}

/// Checks a namespace name: what `ip netns` accepts as a file name.
pub fn check_netns_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
    if ok {
        Ok(())
    } else {
        Err(HostError::Invalid(format!(
            "{name:?} is not a usable namespace name"
        )))
    }
}

/// Whether the named namespace exists (as iproute2 names them).
pub fn netns_exists(name: &str) -> bool {
    check_netns_name(name).is_ok() && netns_path(name).exists()
}

/// The file of the named namespace.
fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// Runs `ip ARGS`, turning a failure into [`HostError::Command`].
fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| HostError::Io {
            op: format!("run `{command}`"),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HostError::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Common argument checks, then makes way for the port: removes what a
/// killed router of `host` left of this port and refuses any other device
/// under the port's name here or under `eth0` in `netns`
/// ([`owner::take_back`]). Returns whether that killed router made the
/// namespace.
fn preflight(host: &str, port_name: &str, netns: &str, addrs: &[IpNet], mtu: u16) -> Result<bool> {
    check_ifname(port_name)?;
    check_netns_name(netns)?;
    if mtu < 68 {
        return Err(HostError::Invalid(format!(
            "MTU {mtu} is below IPv4's minimum of 68"
        )));
    }
    if mtu < 1280 && addrs.iter().any(|a| matches!(a, IpNet::V6(_))) {
        return Err(HostError::Invalid(format!(
            "MTU {mtu} is below IPv6's minimum of 1280"
        )));
    }
    // Before anything is looked up: a host name no marker can hold fails
    // here, with nothing to undo.
    owner::Marker::this_process(host, port_name, false)?;
    owner::take_back(host, port_name, &netns_path(netns), CONTAINER_IFNAME)
}

/// Creates the namespace unless it exists; returns whether we created it.
fn ensure_netns(netns: &str) -> Result<bool> {
    if netns_exists(netns) {
        return Ok(false);
    }
    ip(&["netns", "add", netns])?;
    Ok(true)
}

/// Inside the namespace: no DAD on eth0, lo and eth0 up with `mtu`, the
/// addresses with their configured prefix.
fn configure_inside(netns: &str, addrs: &[IpNet], mtu: u16) -> Result<()> {
    let has_v6 = addrs.iter().any(|a| matches!(a, IpNet::V6(_)));
    if has_v6 {
        // Inside the container's namespace only (`ip netns exec`), so the
        // link-local address made at link-up skips DAD too. The configured
        // addresses get `nodad` below, so a missing `sysctl` binary costs
        // only the link-local's first second, not a failed port.
        let knob = format!("net.ipv6.conf.{CONTAINER_IFNAME}.accept_dad=0");
        match run("ip", &["netns", "exec", netns, "sysctl", "-q", "-w", &knob]) {
            Ok(()) => {}
            Err(HostError::Command { stderr, .. }) if stderr.starts_with("exec of") => {
                tracing::debug!(netns, "no sysctl binary; relying on nodad addresses");
            }
            Err(e) => return Err(e),
        }
    }
    ip(&["-n", netns, "link", "set", "lo", "up"])?;
    let mtu = mtu.to_string();
    ip(&["-n", netns, "link", "set", CONTAINER_IFNAME, "mtu", &mtu])?;
    for a in addrs {
        let a_s = a.to_string();
        let mut args = vec!["-n", netns, "addr", "add", &a_s, "dev", CONTAINER_IFNAME];
        if matches!(a, IpNet::V6(_)) {
            args.push("nodad");
        }
        ip(&args)?;
    }
    ip(&["-n", netns, "link", "set", CONTAINER_IFNAME, "up"])
}

/// Makes the container's kernel finish its own checksums. With tx
/// checksum offload on, a veth hands over TCP and UDP with only the
/// pseudo-header summed (CHECKSUM_PARTIAL), expecting the receiving stack to
/// know; AF_XDP frames carry no such metadata, so the router would forward
/// segments no receiver accepts. Calico and Cilium do the same for XDP.
fn disable_tx_checksum_offload(netns: &str) -> Result<()> {
    run("ip", &["netns", "exec", netns, "ethtool", "-K", CONTAINER_IFNAME, "tx", "off"]).map_err(|e| match e {
        HostError::Command { stderr, .. } if stderr.starts_with("exec of") => HostError::Invalid(
            "ethtool is needed to turn off tx checksum offload on veth container ports (apt-get install ethtool)".into(),
        ),
        e => e,
    })
}

/// Caps the TCP super-packets the container's kernel sends through its
/// `eth0` at `segs` segments (`gso_max_segs`), so that each fits one GSO
/// send of the UDP uplink. Only the container's own device changes.
pub fn set_container_gso_max_segs(netns: &str, segs: u32) -> Result<()> {
    let n = segs.to_string();
    ip(&[
        "-n",
        netns,
        "link",
        "set",
        CONTAINER_IFNAME,
        "gso_max_segs",
        &n,
    ])
}

/// At most one gateway per family; the default route for each.
fn default_routes(netns: &str, gateways: &[IpAddr]) -> Result<()> {
    let v4 = gateways.iter().filter(|g| g.is_ipv4()).count();
    let v6 = gateways.len() - v4;
    if v4 > 1 || v6 > 1 {
        return Err(HostError::Invalid(format!(
            "at most one gateway per address family, got {gateways:?}"
        )));
    }
    for gw in gateways {
        let fam = if gw.is_ipv4() { "-4" } else { "-6" };
        let gw = gw.to_string();
        // `onlink`: the gateway need not be inside the container's prefix
        // (a /32 address has no on-link subnet at all).
        ip(&[
            "-n",
            netns,
            fam,
            "route",
            "add",
            "default",
            "via",
            &gw,
            "dev",
            CONTAINER_IFNAME,
            "onlink",
        ])?;
    }
    Ok(())
}

/// Creates a veth container port: the host end `port_name` in the calling
/// thread's namespace (up, MTU `mtu`), the other end as `eth0` in `netns`
/// (created if missing) with `container_addrs` (each with its configured
/// prefix), MTU `mtu`, MAC `container_mac` if given, lo up, and a default
/// route via each gateway (`onlink`, at most one per family). `queues` sets
/// the number of tx and rx queues of both ends (at least 1). `host` is the
/// topology host the router runs as: both ends carry its marker
/// ([`super::owner`]), and what a killed router of that host left of this
/// port is removed first.
#[allow(clippy::too_many_arguments)]
pub fn setup_veth(
    host: &str,
    port_name: &str,
    netns: &str,
    container_addrs: &[IpNet],
    gateways: &[IpAddr],
    mtu: u16,
    container_mac: Option<[u8; 6]>,
    queues: u32,
) -> Result<CreatedDevice> {
    setup_veth_with(
        host,
        port_name,
        netns,
        container_addrs,
        gateways,
        mtu,
        container_mac,
        queues,
        true,
    )
}

/// [`setup_veth`], choosing whether the container's tx checksum offload is
/// turned off: AF_XDP frames carry no partial-checksum flag and need it off;
/// an AF_PACKET port with virtio-net headers gets the flag and keeps it on
/// (and with it the container's TSO).
#[allow(clippy::too_many_arguments)]
pub fn setup_veth_with(
    host: &str,
    port_name: &str,
    netns: &str,
    container_addrs: &[IpNet],
    gateways: &[IpAddr],
    mtu: u16,
    container_mac: Option<[u8; 6]>,
    queues: u32,
    tx_csum_off: bool,
) -> Result<CreatedDevice> {
    if !(1..=4096).contains(&queues) {
        return Err(HostError::Invalid(format!("{queues} queues (1..=4096)")));
    }
    if let Some(mac) = container_mac {
        if mac[0] & 1 == 1 || mac == [0; 6] {
            return Err(HostError::Invalid(format!(
                "container MAC {} is multicast or zero",
                mac_string(mac)
            )));
        }
    }
    let inherited = preflight(host, port_name, netns, container_addrs, mtu)?;
    let created = ensure_netns(netns)? || inherited;
    let q = queues.to_string();
    let mtu_s = mtu.to_string();
    let mac_s = container_mac.map(mac_string);
    let mut args = vec![
        "link",
        "add",
        port_name,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "mtu",
        &mtu_s,
        "type",
        "veth",
        "peer",
        "name",
        CONTAINER_IFNAME,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "mtu",
        &mtu_s,
    ];
    if let Some(m) = &mac_s {
        args.extend(["address", m.as_str()]);
    }
    // Created directly inside the namespace: no moment where a second
    // `eth0` exists in the router's namespace.
    args.extend(["netns", netns]);
    if let Err(e) = ip(&args) {
        if created {
            let _ = ip(&["netns", "del", netns]);
        }
        return Err(e);
    }
    let dev = CreatedDevice::new(DeviceKind::Veth, port_name, netns, created);
    // From here on, an early return drops `dev`, which removes the pair.
    let marker = owner::Marker::this_process(host, port_name, created)?;
    owner::mark_here(port_name, &marker)?;
    owner::mark_in(&netns_path(netns), CONTAINER_IFNAME, &marker)?;
    configure_inside(netns, container_addrs, mtu)?;
    default_routes(netns, gateways)?;
    if tx_csum_off {
        disable_tx_checksum_offload(netns)?;
    }
    ip(&["link", "set", port_name, "up"])?;
    tracing::info!(
        port = port_name,
        netns,
        queues,
        mtu,
        "veth container port created"
    );
    Ok(dev)
}

/// Creates a TUN container port: a persistent multi-queue TUN named
/// `port_name` in the calling thread's namespace, then calls `attach` with
/// its name so the caller opens its queue descriptors while the device is
/// still reachable by name, then moves it into `netns` (created if missing)
/// as `eth0` with `container_addrs`, MTU `mtu`, lo up, and a default route
/// `dev eth0` for each family that has an address (a point-to-point TUN
/// needs no gateway). Returns the device guard and what `attach` returned.
/// `host` is the topology host the router runs as: the TUN carries its
/// marker ([`super::owner`]), and what a killed router of that host left
/// of this port is removed first.
pub fn setup_tun_netns<T>(
    host: &str,
    port_name: &str,
    netns: &str,
    container_addrs: &[IpNet],
    mtu: u16,
    attach: impl FnOnce(&str) -> std::io::Result<T>,
) -> Result<(CreatedDevice, T)> {
    let inherited = preflight(host, port_name, netns, container_addrs, mtu)?;
    let created = ensure_netns(netns)? || inherited;
    if let Err(e) = ip(&[
        "tuntap",
        "add",
        "mode",
        "tun",
        "multi_queue",
        "name",
        port_name,
    ]) {
        if created {
            let _ = ip(&["netns", "del", netns]);
        }
        return Err(e);
    }
    let dev = CreatedDevice::new(DeviceKind::Tun, port_name, netns, created);
    // The alias moves with the device into the namespace.
    owner::mark_here(
        port_name,
        &owner::Marker::this_process(host, port_name, created)?,
    )?;
    let attached = attach(port_name).map_err(|source| HostError::Io {
        op: format!("attach queues to TUN {port_name}"),
        source,
    })?;
    ip(&[
        "link",
        "set",
        port_name,
        "netns",
        netns,
        "name",
        CONTAINER_IFNAME,
    ])?;
    dev.mark_moved();
    configure_inside(netns, container_addrs, mtu)?;
    let mut families: Vec<&str> = Vec::new();
    for a in container_addrs {
        let fam = if matches!(a, IpNet::V4(_)) {
            "-4"
        } else {
            "-6"
        };
        if !families.contains(&fam) {
            families.push(fam);
            ip(&[
                "-n",
                netns,
                fam,
                "route",
                "add",
                "default",
                "dev",
                CONTAINER_IFNAME,
            ])?;
        }
    }
    tracing::info!(port = port_name, netns, mtu, "TUN container port created");
    Ok((dev, attached))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_netns_name("host-a").is_ok());
        for bad in ["", "..", "a/b", "-n", "a b"] {
            assert!(check_netns_name(bad).is_err(), "{bad}");
        }
        assert_eq!(mac_string([2, 0, 0xc6, 0x12, 0xab, 1]), "02:00:c6:12:ab:01");
    }

    #[test]
    fn bad_arguments_fail_before_anything_is_created() {
        let a: IpNet = "2001:2::2/64".parse().unwrap_or_else(|_| unreachable!());
        assert!(matches!(
            setup_veth("h1", "host-bad0", "host-never", &[a], &[], 1200, None, 1),
            Err(HostError::Invalid(_))
        ));
        assert!(matches!(
            setup_veth(
                "h1",
                "host-bad0",
                "host-never",
                &[],
                &[],
                1500,
                Some([1, 0, 0, 0, 0, 1]),
                1
            ),
            Err(HostError::Invalid(_))
        ));
        assert!(matches!(
            setup_veth("h1", "lo", "host-never", &[], &[], 1500, None, 1),
            Err(HostError::DeviceExists(_))
        ));
        assert!(!netns_exists("host-never"));
    }
}
