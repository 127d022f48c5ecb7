//! Configuration layer: the shared TOML topology file, parsed and validated.
//!
//! One file describes the whole overlay (`[overlay]`, `[[networks]]`,
//! `[[hosts]]` with their `[[hosts.ports]]`, `[[links]]`); every host loads the same file and picks
//! its own entry by name. The format is documented field by field in
//! docs/configuration.md and in the commented examples under `configs/`.
//!
//! This layer is sans-IO apart from [`load`], which only reads the file.
//!
//! Invariants of a [`Topology`] returned by [`parse`] or [`load`] (the rest of
//! the code base relies on them and does not check again):
//! - host names are unique, underlay addresses are unique, VTEP MACs
//!   (configured or derived) are unique and unicast;
//! - every link names two different existing hosts whose underlays are of the
//!   same address family, no host pair is linked twice, costs are >= 1;
//! - no underlay address is special ([`addr::Special`]: unspecified,
//!   "this network", loopback, multicast, reserved, broadcast, IPv4-mapped
//!   or -compatible, discard-only, IPv6 link-local; IPv4 link-local is
//!   allowed), and none lies inside any host's subnet of any network;
//! - networks have unique names and unique VNIs; network 0 is the default
//!   one (`[overlay]`); subnets of other networks belong to hosts of the
//!   topology;
//! - subnets are network addresses (no host bits), share no address with a
//!   special block (IPv4 and IPv6 link-local included), and no two subnets
//!   of one network overlap (networks' address spaces may);
//! - port names are unique per host and valid Linux interface names; every
//!   port belongs to an existing network and its addresses lie inside its
//!   host's subnets of that network, no two ports of a host and network
//!   share an address, and every port has one gateway per address family
//!   it uses, outside its own addresses; a configured gateway is unicast
//!   (link-local allowed) and lies in no other host's subnet of the port's
//!   network;
//! - names (hosts, ports, `nic`, `netns`) hold no control characters; a
//!   `netns` is a valid file name of at most 255 bytes;
//! - a lease range (`[store] network`, a network's `lease_network`) is a
//!   prefix without host bits that holds at least two subnets of its
//!   length, shares no address with a special block and holds no underlay
//!   address of the file; a network other than the default has one only
//!   with a `[store]` in the vxrouter layout (ranges of different networks
//!   may overlap);
//! - every network's MTU plus the inner Ethernet header and the outer
//!   headers of every host's underlay family fits a port buffer;
//! - `overlay.vni` is in 1..=16777215 and `overlay.udp_port` is not 0.

pub mod addr;
mod diag;
mod mac;
mod schema;
pub(crate) use schema::{check_host_name, check_ifname, check_network_name};
pub use schema::{DEFAULT_QUEUE_LEN, MAX_PORTS};
mod tree;
mod validate;

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::wire::{ethernet, ipv4, ipv6, udp, vxlan};

pub use diag::{ConfigError, Diagnostic};
pub use mac::{container_port_mac, replay_nic_mac, router_port_mac, MacAddr, ParseMacError};
pub use validate::first_host;

/// The IANA-assigned VXLAN UDP destination port (RFC 7348 section 5).
pub const DEFAULT_UDP_PORT: u16 = 4789;
/// Default UDP port of the liveness hellos (`overlay.liveness_port`).
pub const DEFAULT_LIVENESS_PORT: u16 = 4799;
/// Default number of hello intervals without a two-way hello after which a
/// neighbour is down (`overlay.liveness_dead_after`).
pub const DEFAULT_LIVENESS_DEAD_AFTER: u32 = 3;

/// Name of the network `[overlay]` describes, the one ports join unless
/// they name another.
pub const DEFAULT_NETWORK: &str = "default";

/// Largest VXLAN Network Identifier: the field is 24 bits (RFC 7348 section 5).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// Bytes VXLAN adds to an inner IP packet within the underlay's IP MTU
/// over IPv4: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
pub const OVERHEAD_V4: u16 =
    (ipv4::MIN_HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN + ethernet::HEADER_LEN) as u16;

/// The same over IPv6: outer IPv6 40 + UDP 8 + VXLAN 8 + inner Ethernet 14.
pub const OVERHEAD_V6: u16 =
    (ipv6::HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN + ethernet::HEADER_LEN) as u16;

/// Underlay MTU assumed when computing the default container MTU.
pub const UNDERLAY_MTU: u16 = 1500;

/// How a container attaches to the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortKind {
    /// A TUN device: raw IP packets, no Ethernet header.
    Tun,
    /// One end of a veth pair: Ethernet frames.
    Veth,
}

/// How the router moves VXLAN on and off the underlay NIC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UplinkIo {
    /// AF_XDP sockets on every NIC queue behind our XDP program, which
    /// steers only VXLAN for us to them (the default).
    #[default]
    AfXdp,
    /// Kernel UDP sockets on the VXLAN port with segmentation offload:
    /// consecutive frames to one peer leave as one UDP GSO send and arrive
    /// as one GRO-coalesced read. Fewer, larger trips through the kernel
    /// (TCP bulk traffic), no XDP program, the kernel's own neighbour
    /// resolution.
    Udp,
}

/// The whole overlay as described by one topology file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Topology {
    /// Overlay-wide settings (`[overlay]`).
    pub overlay: Overlay,
    /// The overlay networks: index 0 is the default one (`[overlay]`'s VNI
    /// and MTU, named [`DEFAULT_NETWORK`]), the `[[networks]]` follow in
    /// file order. Indices are network ids within this topology.
    pub networks: Vec<Network>,
    /// Every host, in file order (`[[hosts]]`); indices are host ids.
    pub hosts: Vec<Host>,
    /// Underlay adjacencies usable for VXLAN (`[[links]]`), undirected.
    pub links: Vec<Link>,
    /// Where the hosts beyond this file come from (`[store]`); `None`: the
    /// file is the whole topology.
    pub store: Option<StoreConfig>,
}

/// The key layout a store holds the hosts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreLayout {
    /// vxrouter's own records: `hosts/<name>`, `links/<name>`,
    /// `subnets/<ip>-<len>` under the prefix.
    Vxrouter,
    /// flannel's subnet leases: `config` and `subnets/<ip>-<len>` under the
    /// prefix (`/coreos.com/network` by default), read and written as
    /// flanneld does, so that vxrouter and flanneld hosts share one overlay.
    Flannel,
}

/// An etcd v3 cluster holding the topology beside this file (`[store]`).
/// This host publishes its own record there under a lease it keeps alive,
/// and takes every other host from there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreConfig {
    /// Client URLs, `http://HOST:PORT` or `https://HOST:PORT`.
    pub endpoints: Vec<String>,
    /// Key layout (`layout`; default `vxrouter`).
    pub layout: StoreLayout,
    /// Key prefix, without a trailing `/` (default `/vxrouter/network`, or
    /// `/coreos.com/network` with the flannel layout).
    pub prefix: String,
    /// Seconds this host's records outlive it (its lease's TTL), 2..=3600;
    /// default 10.
    pub lease_ttl_s: u32,
    /// The range a host without subnets leases one from (vxrouter layout;
    /// the flannel layout reads `Network` from the store).
    pub network: Option<IpNet>,
    /// Prefix length of a leased subnet (vxrouter layout; default
    /// [`LeaseRange::default_len`]).
    pub subnet_len: Option<u8>,
    /// CA certificate (PEM) that the servers' certificates chain to.
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate (PEM), with `key_file`.
    pub cert_file: Option<std::path::PathBuf>,
    /// Client private key (PEM), with `cert_file`.
    pub key_file: Option<std::path::PathBuf>,
    /// etcd user, with `password_file`.
    pub username: Option<String>,
    /// File holding the etcd user's password (its first line).
    pub password_file: Option<std::path::PathBuf>,
    /// Milliseconds a start waits for the store before it falls back on the
    /// cached topology; default 5000.
    pub connect_timeout_ms: u32,
}

impl StoreConfig {
    /// The default network's lease range (`network`, `subnet_len`), if the
    /// file gives one.
    pub fn lease_range(&self) -> Option<LeaseRange> {
        self.network.map(|n| LeaseRange::new(n, self.subnet_len))
    }
}

/// A range the hosts of one network lease their subnets from, and the
/// length of those subnets: `[store] network` and `subnet_len` for the
/// default network, `lease_network` and `lease_subnet_len` of a
/// `[[networks]]` entry for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LeaseRange {
    pub network: IpNet,
    pub subnet_len: u8,
}

impl LeaseRange {
    /// `network` with subnets of `subnet_len`, or of the default length.
    pub fn new(network: IpNet, subnet_len: Option<u8>) -> LeaseRange {
        LeaseRange {
            network,
            subnet_len: subnet_len.unwrap_or_else(|| LeaseRange::default_len(network)),
        }
    }

    /// The length of a leased subnet unless one is given: /24 for IPv4,
    /// /64 for IPv6.
    pub fn default_len(network: IpNet) -> u8 {
        match network {
            IpNet::V4(_) => 24,
            IpNet::V6(_) => 64,
        }
    }

    /// Whether `subnet` is one this range leases: inside it, of its length.
    pub fn holds(&self, subnet: IpNet) -> bool {
        subnet.prefix_len() == self.subnet_len && self.network.contains(&subnet)
    }
}

/// Default `[store] prefix` of the vxrouter layout.
pub const DEFAULT_STORE_PREFIX: &str = "/vxrouter/network";
/// Default `[store] prefix` of the flannel layout (flanneld's own).
pub const DEFAULT_FLANNEL_PREFIX: &str = "/coreos.com/network";

/// Overlay-wide settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overlay {
    /// VXLAN Network Identifier, 1..=16777215.
    pub vni: u32,
    /// UDP destination port of VXLAN packets; default 4789.
    pub udp_port: u16,
    /// Container-side MTU; `None` derives it per host (see [`Topology::overlay_mtu`]).
    pub mtu: Option<u16>,
    /// Neighbour liveness (`liveness_interval_ms` > 0); `None`: every link
    /// is taken as up.
    pub liveness: Option<LivenessConfig>,
}

/// One overlay network: its own VXLAN VNI and address space. Hosts, links
/// and the underlay are shared by all networks; each host owns subnets per
/// network ([`Host::subnets`] for the default one, [`Host::net_subnets`]
/// for the others) and each port belongs to one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    /// Unique name; the default network is [`DEFAULT_NETWORK`].
    pub name: String,
    /// VXLAN Network Identifier, unique among the networks.
    pub vni: u32,
    /// Container-side MTU; `None` derives it per host as the default
    /// network's (see [`Topology::network_mtu`]).
    pub mtu: Option<u16>,
    /// Where a host of the file with no subnets in this network leases one
    /// (`lease_network`, `lease_subnet_len`; needs a `[store]` in the
    /// vxrouter layout). Always `None` for the default network, whose
    /// range is [`StoreConfig::lease_range`].
    pub lease: Option<LeaseRange>,
}

/// Hellos between the two ends of every link; a link whose far end is not
/// heard (two-way) for `dead_after` intervals leaves the route computation
/// until it is heard again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LivenessConfig {
    /// Milliseconds between hellos, 10..=60000.
    pub interval_ms: u32,
    /// Intervals without a two-way hello before a neighbour is down, 2..=255.
    pub dead_after: u32,
    /// UDP port the hellos use on every host's underlay address.
    pub port: u16,
    /// The shared keys that authenticate hellos (an absolute path; the
    /// control thread reads it at start and on every reload). `None`:
    /// hellos carry no MAC.
    pub key_file: Option<std::path::PathBuf>,
}

/// One host running vxrouter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    /// Unique name, used by `--host` and in route output.
    pub name: String,
    /// The host's VTEP address on the underlay (IPv4 or IPv6).
    pub underlay: IpAddr,
    /// The underlay NIC's MAC, if configured; otherwise learned at run time.
    pub underlay_mac: Option<MacAddr>,
    /// Inner Ethernet source address of this host's VTEP: configured, or
    /// derived as `02:42:` followed by the last four bytes of `underlay`.
    pub vtep_mac: MacAddr,
    /// Container prefixes this host owns in the default network.
    pub subnets: Vec<IpNet>,
    /// Container prefixes this host owns in the other networks, as
    /// (network index, prefix), by network.
    pub net_subnets: Vec<(usize, IpNet)>,
    /// Underlay interface name; only used by the host that runs it.
    pub nic: Option<String>,
    /// CPU cores for poll-mode workers; default `[0]`.
    pub workers: Vec<usize>,
    /// How VXLAN moves on and off `nic` (`uplink_io`; default AF_XDP).
    pub uplink_io: UplinkIo,
    /// Container attachments on this host.
    pub ports: Vec<PortConfig>,
}

/// One container attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortConfig {
    /// Unique per host; also the Linux device name (at most 15 bytes).
    pub name: String,
    /// TUN or veth.
    pub kind: PortKind,
    /// Network namespace the container side lives in, if any.
    pub netns: Option<String>,
    /// Name of the overlay network the port belongs to
    /// ([`DEFAULT_NETWORK`] unless the port names another).
    pub network: String,
    /// Source prefixes the container may use (anti-spoofing); a bare address
    /// in the file means a /32 or /128.
    pub addresses: Vec<IpNet>,
    /// The container-side MAC of a veth port, if configured.
    pub mac: Option<MacAddr>,
    /// The container's default gateways, one per address family the port
    /// uses, IPv4 first: configured (`gateway` or `gateways`), else derived
    /// as the first host address (`x.x.x.1`, `prefix::1`) of the host subnet
    /// containing the port's first address of that family.
    pub gateways: Vec<IpAddr>,
    /// Per-port MTU override; `None` uses [`Topology::overlay_mtu`].
    pub mtu: Option<u16>,
    /// Virtio-net header offloads: TSO/USO super-packets from the container
    /// split on receive, segments towards it coalesced on transmit. TUN
    /// ports: `IFF_VNET_HDR` on the device, on unless `offload = false`.
    /// veth ports: off unless `offload = true`, which serves the port through
    /// an AF_PACKET socket with `PACKET_VNET_HDR` instead of AF_XDP (TCP bulk
    /// faster, small packets slower) and leaves the container's checksum
    /// offloads on.
    pub offload: bool,
    /// TUN ports: packets each queue of the device holds between the
    /// container's send and the router's read (`txqueuelen`; default
    /// [`DEFAULT_QUEUE_LEN`], the kernel's own is 500). A full
    /// queue drops, and a worker that shares its core with a busy sender is
    /// off it for a while: the queue must hold what arrives meanwhile, and
    /// the kernel's default is far too short for small packets (see
    /// [`DEFAULT_QUEUE_LEN`]). Each queued super-packet can
    /// hold up to 64 KiB of kernel memory while a container outpaces the
    /// router, so a smaller value bounds that. Unused on veth ports.
    pub queue_len: u32,
}

/// An undirected underlay adjacency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// Name of one end.
    pub a: String,
    /// Name of the other end.
    pub b: String,
    /// Routing cost, >= 1.
    pub cost: u32,
}

impl Host {
    /// The prefixes this host owns in network `net`.
    pub fn subnets_in(&self, net: usize) -> impl Iterator<Item = &IpNet> + '_ {
        let extra: &[(usize, IpNet)] = if net == 0 { &[] } else { &self.net_subnets };
        let default: &[IpNet] = if net == 0 { &self.subnets } else { &[] };
        default
            .iter()
            .chain(extra.iter().filter(move |(n, _)| *n == net).map(|(_, s)| s))
    }

    /// Every prefix this host owns, of every network, with its network.
    pub fn all_subnets(&self) -> impl Iterator<Item = (usize, &IpNet)> + '_ {
        self.subnets
            .iter()
            .map(|s| (0, s))
            .chain(self.net_subnets.iter().map(|(n, s)| (*n, s)))
    }
}

impl Topology {
    /// Index of the host called `name`.
    pub fn host_index(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.name == name)
    }

    /// Index of the network called `name`.
    pub fn network_index(&self, name: &str) -> Option<usize> {
        self.networks.iter().position(|n| n.name == name)
    }

    /// Index of the network whose VNI is `vni`.
    pub fn network_by_vni(&self, vni: u32) -> Option<usize> {
        self.networks.iter().position(|n| n.vni == vni)
    }

    /// Container-side MTU of the default network for `host`
    /// ([`Topology::network_mtu`] of network 0).
    pub fn overlay_mtu(&self, host: usize) -> u16 {
        self.network_mtu(0, host)
    }

    /// Container-side MTU of network `net` for `host`: the network's `mtu`
    /// if set, else the 1500-byte underlay MTU minus the VXLAN overhead of
    /// the host's underlay family (50 bytes over IPv4, 70 over IPv6). An
    /// out-of-range host is treated as an IPv4 host; an out-of-range network
    /// as the default one.
    pub fn network_mtu(&self, net: usize, host: usize) -> u16 {
        let set = match self.networks.get(net) {
            Some(n) => n.mtu,
            None => self.overlay.mtu,
        };
        if let Some(mtu) = set {
            return mtu;
        }
        match self.hosts.get(host).map(|h| h.underlay) {
            Some(IpAddr::V6(_)) => UNDERLAY_MTU - OVERHEAD_V6,
            _ => UNDERLAY_MTU - OVERHEAD_V4,
        }
    }

    /// MTU of port `port` of `host`: the port's own `mtu`, else its
    /// network's ([`Topology::network_mtu`]).
    pub fn port_mtu(&self, host: usize, port: usize) -> u16 {
        let Some(p) = self.hosts.get(host).and_then(|h| h.ports.get(port)) else {
            return self.overlay_mtu(host);
        };
        p.mtu.unwrap_or_else(|| {
            let net = self.network_index(&p.network).unwrap_or(0);
            self.network_mtu(net, host)
        })
    }
}

/// Parses and validates a topology. `file` names the source in diagnostics.
///
/// All problems are reported together; see [`ConfigError`].
pub fn parse(text: &str, file: &str) -> Result<Topology, ConfigError> {
    let mut sink = diag::Sink::new(text, file);
    let root = match tree::parse(text) {
        Ok(root) => root,
        Err((message, span)) => {
            sink.error(&span, "syntax", message);
            return Err(sink.into_error());
        }
    };
    let mut raw = schema::read(&root, &mut sink);
    validate::cross_check(&mut raw, &mut sink);
    match raw.build() {
        Some(topology) if !sink.has_errors() => Ok(topology),
        _ => Err(sink.into_error()),
    }
}

/// Reads and parses the topology file at `path`; diagnostics name the file as
/// `path` was given.
pub fn load(path: &std::path::Path) -> Result<Topology, ConfigError> {
    let file = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => parse_bytes(&bytes, &file),
        Err(e) => Err(ConfigError {
            diagnostics: vec![Diagnostic {
                file,
                line: 0,
                col: 0,
                field: String::new(),
                message: format!("cannot read topology file: {e}"),
            }],
        }),
    }
}

/// [`parse`] for raw file contents: text that is not UTF-8 is refused at the
/// line and column of its first bad byte.
pub fn parse_bytes(bytes: &[u8], file: &str) -> Result<Topology, ConfigError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text, file),
        Err(e) => {
            let at = e.valid_up_to();
            // The text before the bad byte is valid: count lines and
            // characters in it.
            let good = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
            let (line, col) = diag::LineIndex::new(good).position(at);
            let len = e.error_len().unwrap_or(bytes.len() - at);
            let seq = bytes[at..at + len]
                .iter()
                .map(|b| format!("0x{b:02X}"))
                .collect::<Vec<_>>()
                .join(" ");
            let what = match (e.error_len(), len) {
                (Some(_), 1) => format!("byte {seq} is not valid UTF-8"),
                (Some(_), _) => format!("bytes {seq} are not valid UTF-8"),
                (None, _) => {
                    format!("bytes {seq} are an incomplete UTF-8 sequence at the end of the file")
                }
            };
            Err(ConfigError {
                diagnostics: vec![Diagnostic {
                    file: file.to_string(),
                    line,
                    col,
                    field: String::new(),
                    message: format!("{what}: a topology file must be UTF-8 text"),
                }],
            })
        }
    }
}

#[cfg(test)]
mod tests;
