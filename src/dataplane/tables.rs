//! Forwarding state of one host, compiled by the control thread and published
//! whole: one FIB per overlay network, the next-hop peers with their
//! prebuilt outer headers, the ports and the host's own identity.
//!
//! Networks are a dimension of the tables: each [`Net`] has its own VNI,
//! FIB, MTU and ICMP source, and every container port belongs to one. A
//! packet from a port is looked up only in its port's network, a packet
//! from the tunnel only in the network its VNI names, and a network's FIB
//! holds only its own ports: no entry leads from one network to another.
//! Peers and their templates are shared (hosts and links are); the VNI is
//! written per packet.
//!
//! Invariants: a `Tables` is immutable once built; workers read one snapshot
//! per batch, so a reload or a neighbour update is a new `Tables`, never an
//! edit. Port 0 is always the uplink (the NIC); container ports follow in
//! configuration order, then attached ones at the indices the control
//! thread gave them (a detached port leaves a vacant index). Every `Remote`
//! next hop names peers that are direct neighbours of this host
//! (Bellman-Ford first hops), all of them over the host's own underlay
//! family (validation refuses a link that mixes IPv4 and IPv6), so one
//! number bounds what the encapsulation path takes: [`Tables::encap_mtu`].
//!
//! Fast reroute: [`build`] also precomputes, per neighbour that begins a
//! route, how every ECMP slot naming it is repaired ([`Reroute`]): to a
//! surviving member of its set, or, when it was the only member, to the
//! destination's loop-free alternate ([`crate::route::lfa`]).
//! [`Tables::rerouted`] turns that into new tables in microseconds, the
//! FIBs shared ([`Arc`]), only the flat `ecmp` array, the peers and their
//! index new: a FIB entry names slots, not peers, so no entry changes and
//! nothing changes per packet.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::{router_port_mac, PortConfig, PortKind, Topology, OVERHEAD_V4, OVERHEAD_V6};
use crate::fib::{Fib, Packed};
use crate::route::{RouteKind, RouteSet};
use crate::wire::{checksum, ethernet, ipv4, ipv6, udp, vxlan};

/// Index of the uplink in [`Tables::ports`].
pub const UPLINK: u16 = 0;

/// Outer headers of one encapsulation over IPv4: Ethernet, IPv4, UDP, VXLAN.
pub const OUTER_V4_LEN: usize =
    ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN;
/// The same over IPv6.
pub const OUTER_V6_LEN: usize =
    ethernet::HEADER_LEN + ipv6::HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN;
/// Longest template: outer headers plus the inner Ethernet header.
pub const MAX_TEMPLATE: usize = OUTER_V6_LEN + ethernet::HEADER_LEN;

/// What a port is to the pipeline: the uplink, or a container port of one
/// of the two framings. The configuration's [`PortKind`] names only the
/// container ports (what a file may declare); the uplink is every host's
/// port 0, so the two stay separate types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRole {
    /// The NIC carrying VXLAN to and from peer hosts.
    Uplink,
    /// A container behind a TUN device: raw IP frames.
    Tun,
    /// A container behind a veth pair: Ethernet frames.
    Veth,
    /// An index with no port (a port detached; its index is free): frames
    /// for it drop as `port_down`.
    Vacant,
}

/// Per-port facts the pipeline needs.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub name: String,
    pub role: PortRole,
    /// The network the port belongs to (index in [`Tables::nets`]); 0 for
    /// the uplink and vacant indices, which belong to none.
    pub net: u16,
    /// Largest IP packet this port may carry (container MTU, or the underlay
    /// MTU for the uplink).
    pub mtu: u16,
    /// Source prefixes the container may use, as (network, mask) pairs.
    pub allowed_v4: Vec<(u32, u32)>,
    pub allowed_v6: Vec<(u128, u128)>,
    /// MAC the router answers with on a veth port (gateway MAC).
    pub router_mac: [u8; 6],
    /// The container's MAC on a veth port, when configured.
    pub container_mac: Option<[u8; 6]>,
}

impl PortInfo {
    /// Whether `src` is one of the container's own addresses.
    #[inline]
    pub fn allows_v4(&self, src: u32) -> bool {
        self.allowed_v4.iter().any(|&(net, mask)| src & mask == net)
    }

    #[inline]
    pub fn allows_v6(&self, src: u128) -> bool {
        self.allowed_v6.iter().any(|&(net, mask)| src & mask == net)
    }
}

/// Where a FIB entry sends a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// A container port on this host.
    Local { port: u16 },
    /// A subnet of this host with no port for that address: host unreachable.
    Unassigned,
    /// An address of the router itself (a gateway): echo is answered.
    Router,
    /// The network or broadcast address of an IPv4 subnet of the topology:
    /// dropped, never forwarded, no ICMP error (RFC 2644, RFC 1812 section
    /// 4.3.2.7).
    Broadcast,
    /// Encapsulate to one of `ecmp[first..first+count]`, chosen by flow hash.
    Remote { first: u32, count: u32 },
}

/// [`NextHop`] in a FIB leaf: the kind in bits 27..30, its fields below.
/// Every hop of a container network packs, so a lookup reads the trie and
/// nothing else; an ECMP set past the bounds below stays in the table.
const HOP_KIND_SHIFT: u32 = 27;
const HOP_LOCAL: u32 = 0;
const HOP_UNASSIGNED: u32 = 1;
const HOP_ROUTER: u32 = 2;
const HOP_BROADCAST: u32 = 3;
const HOP_REMOTE: u32 = 4;
/// A packed `Remote`: `first` in the low 20 bits, `count` in the 7 above.
const HOP_FIRST_BITS: u32 = 20;
const HOP_COUNT_BITS: u32 = 7;

impl Packed for NextHop {
    #[inline]
    fn pack(&self) -> Option<u32> {
        let (kind, fields) = match *self {
            NextHop::Local { port } => (HOP_LOCAL, u32::from(port)),
            NextHop::Unassigned => (HOP_UNASSIGNED, 0),
            NextHop::Router => (HOP_ROUTER, 0),
            NextHop::Broadcast => (HOP_BROADCAST, 0),
            NextHop::Remote { first, count } => {
                if first >> HOP_FIRST_BITS != 0 || count >> HOP_COUNT_BITS != 0 {
                    return None;
                }
                (HOP_REMOTE, count << HOP_FIRST_BITS | first)
            }
        };
        Some(kind << HOP_KIND_SHIFT | fields)
    }

    #[inline(always)]
    fn unpack(bits: u32) -> Option<Self> {
        let fields = bits & ((1 << HOP_KIND_SHIFT) - 1);
        Some(match bits >> HOP_KIND_SHIFT {
            HOP_LOCAL => NextHop::Local {
                port: fields as u16,
            },
            HOP_UNASSIGNED => NextHop::Unassigned,
            HOP_ROUTER => NextHop::Router,
            HOP_BROADCAST => NextHop::Broadcast,
            HOP_REMOTE => NextHop::Remote {
                first: fields & ((1 << HOP_FIRST_BITS) - 1),
                count: fields >> HOP_FIRST_BITS,
            },
            _ => return None,
        })
    }
}

/// A directly reachable peer host and its prebuilt outer header.
#[derive(Debug, Clone)]
pub struct Peer {
    pub host: usize,
    pub name: String,
    pub underlay: IpAddr,
    /// Underlay MAC known (configured or from the neighbour table). Until it
    /// is, packets to this peer drop as `neighbour_unresolved`.
    pub resolved: bool,
    /// Outer Ethernet/IP/UDP/VXLAN plus inner Ethernet, lengths, checksums
    /// and source port zero; `template_len` bytes are live.
    pub template: [u8; MAX_TEMPLATE],
    pub template_len: usize,
    /// Partial sum of the template's IPv4 header with total length 0 (v4),
    /// or of the IPv6 pseudo-header without length (v6).
    pub partial_sum: u32,
}

impl Peer {
    #[inline]
    pub fn is_v6(&self) -> bool {
        self.template_len == MAX_TEMPLATE
    }
}

/// One overlay network's part of the tables.
#[derive(Debug)]
pub struct Net {
    pub name: String,
    pub vni: u32,
    /// The network's container-side MTU.
    pub overlay_mtu: u16,
    /// Largest inner IP packet the encapsulation path takes: the smaller of
    /// `overlay_mtu` and [`Tables::underlay_fit`]. One compare on the hot
    /// path checks both; which one bound decides the drop reason, off it.
    pub encap_mtu: u16,
    pub fib: Fib<NextHop>,
    /// Source addresses of ICMP errors and echo replies the router sends
    /// in this network: its gateway on this host.
    pub icmp_src_v4: Option<u32>,
    pub icmp_src_v6: Option<u128>,
}

/// A slot of [`VniIndex`] that holds no network: VNIs are 24 bits.
const NO_VNI: u32 = u32::MAX;
/// Fibonacci hashing: 2^32 over the golden ratio, odd. Its top bits spread
/// VNIs that are numbered in a row (as operators number them) evenly.
const VNI_HASH: u32 = 0x9E37_79B9;

/// The networks by VNI: open addressing with linear probing, at most half
/// full, a VNI's home slot the top bits of `vni * VNI_HASH`. The tunnel's
/// packets of a burst carry any mix of VNIs; a binary search over the
/// sorted VNIs takes a chain of dependent loads per packet (seven among
/// 100 networks), this one load and one compare when the VNI sits at home,
/// which most do, and a VNI no network has ends at the first free slot.
#[derive(Debug, Clone)]
pub struct VniIndex {
    /// (VNI, index in [`Tables::nets`]), `NO_VNI` when free. The length
    /// is a power of two, at least twice the number of VNIs, so a free slot
    /// always ends a probe.
    slots: Box<[(u32, u16)]>,
    /// 32 minus log2 of the length.
    shift: u32,
}

impl VniIndex {
    /// An index of `(VNI, network)` pairs. A VNI given twice keeps its
    /// first network (validation refuses duplicates); `u32::MAX`, no VNI
    /// (they are 24 bits), marks a free slot and is left out.
    pub fn new(vnis: &[(u32, u16)]) -> VniIndex {
        let len = (2 * vnis.len()).next_power_of_two().max(2);
        let shift = 32 - len.trailing_zeros();
        let mut slots = vec![(NO_VNI, 0u16); len].into_boxed_slice();
        for &(vni, net) in vnis {
            if vni == NO_VNI {
                continue;
            }
            let mut i = Self::home(vni, shift);
            while slots[i].0 != NO_VNI && slots[i].0 != vni {
                i = (i + 1) & (len - 1);
            }
            if slots[i].0 == NO_VNI {
                slots[i] = (vni, net);
            }
        }
        VniIndex { slots, shift }
    }

    #[inline]
    fn home(vni: u32, shift: u32) -> usize {
        (vni.wrapping_mul(VNI_HASH) >> shift) as usize
    }

    /// The network of `vni`, if any.
    #[inline]
    pub fn get(&self, vni: u32) -> Option<u16> {
        let mask = self.slots.len() - 1;
        let mut i = Self::home(vni, self.shift);
        // Ends: at least half the slots are free.
        loop {
            let &(v, net) = self.slots.get(i)?;
            if v == NO_VNI {
                return None;
            }
            if v == vni {
                return Some(net);
            }
            i = (i + 1) & mask;
        }
    }
}

/// A slot of [`PeerIndex`] that holds no peer.
const NO_PEER: u16 = u16::MAX;

/// An underlay address as a [`PeerIndex`] key.
pub trait PeerKey: Copy + Eq + Default {
    /// 32 bits that differ between the addresses of one underlay.
    fn fold(self) -> u32;
}

impl PeerKey for u32 {
    #[inline(always)]
    fn fold(self) -> u32 {
        self
    }
}

impl PeerKey for u128 {
    #[inline(always)]
    fn fold(self) -> u32 {
        let h = (self >> 64) as u64 ^ self as u64;
        (h >> 32) as u32 ^ h as u32
    }
}

/// The peers by underlay address, hashed as [`VniIndex`] hashes VNIs (open
/// addressing, linear probing, at most half full, home slot the top bits
/// of the folded address times [`VNI_HASH`]): every VXLAN packet asks, and
/// one load and one compare answer when the address sits at home, where a
/// binary search takes a chain of dependent loads and branches. A free
/// slot holds [`NO_PEER`], so every address, 0 and all ones included, is
/// a key.
#[derive(Debug, Clone)]
pub struct PeerIndex<K> {
    /// (address, index in [`Tables::peers`]); the length is a power of
    /// two, at least twice the number of peers, so a free slot always
    /// ends a probe.
    slots: Box<[(K, u16)]>,
    /// 32 minus log2 of the length.
    shift: u32,
}

impl<K: PeerKey> PeerIndex<K> {
    /// An index of `(address, peer)` pairs. An address given twice keeps
    /// its first peer; a peer numbered [`NO_PEER`] is left out.
    pub fn new(peers: &[(K, u16)]) -> PeerIndex<K> {
        let len = (2 * peers.len()).next_power_of_two().max(2);
        let shift = 32 - len.trailing_zeros();
        let mut slots = vec![(K::default(), NO_PEER); len].into_boxed_slice();
        for &(a, peer) in peers {
            if peer == NO_PEER {
                continue;
            }
            let mut i = Self::home(a, shift);
            while slots[i].1 != NO_PEER && slots[i].0 != a {
                i = (i + 1) & (len - 1);
            }
            if slots[i].1 == NO_PEER {
                slots[i] = (a, peer);
            }
        }
        PeerIndex { slots, shift }
    }

    #[inline(always)]
    fn home(a: K, shift: u32) -> usize {
        (a.fold().wrapping_mul(VNI_HASH) >> shift) as usize
    }

    /// The peer whose underlay address is `a`, if any.
    #[inline(always)]
    pub fn get(&self, a: K) -> Option<u16> {
        let mask = self.slots.len() - 1;
        let mut i = Self::home(a, self.shift);
        // Ends: at least half the slots are free.
        loop {
            let &(k, peer) = self.slots.get(i)?;
            if peer == NO_PEER {
                return None;
            }
            if k == a {
                return Some(peer);
            }
            i = (i + 1) & mask;
        }
    }
}

/// Everything a worker needs to forward, as one immutable snapshot.
#[derive(Debug)]
pub struct Tables {
    pub host_name: String,
    pub udp_port: u16,
    pub underlay: IpAddr,
    pub nic_mac: [u8; 6],
    pub vtep_mac: [u8; 6],
    /// MTU of the uplink NIC, as the control thread last read it.
    pub underlay_mtu: u16,
    /// Largest inner IP packet that fits `underlay_mtu` once encapsulated
    /// toward a peer ([`largest_overlay_mtu`]).
    pub underlay_fit: u16,
    /// The networks, in the topology's order: index 0 is the default one.
    /// Shared with the tables [`Tables::rerouted`] makes from these.
    pub nets: Arc<[Net]>,
    /// Their names in the same order, shared: a worker's per-network
    /// counters go by index and compare this list by pointer per burst.
    pub net_names: Arc<[String]>,
    /// The networks by VNI.
    pub vnis: VniIndex,
    pub peers: Vec<Peer>,
    /// Flattened ECMP sets: indices into `peers`.
    pub ecmp: Vec<u16>,
    /// Underlay addresses of every host of the topology, sorted: VXLAN from
    /// anything else is dropped as `unknown_peer`.
    pub known_v4: Vec<u32>,
    pub known_v6: Vec<u128>,
    /// Index in `peers` of each peer (a host that begins a shortest path
    /// of the current routes) by underlay address: VXLAN is accepted only
    /// from these.
    pub peer_v4: PeerIndex<u32>,
    pub peer_v6: PeerIndex<u128>,
    pub ports: Vec<PortInfo>,
    /// How to repair the ECMP sets when a neighbour goes down; `None` in
    /// tables that are themselves a repair.
    pub reroute: Option<Arc<Reroute>>,
}

/// The repairs [`Tables::rerouted`] applies, precomputed by [`build`].
#[derive(Debug, Default)]
pub struct Reroute {
    /// By neighbour host index, ascending: one entry per neighbour that
    /// some ECMP slot names.
    neighbours: Vec<NeighbourRepair>,
    /// Templates of alternates that begin no current route: in repaired
    /// tables they follow [`Tables::peers`], at `peers.len() + i`.
    spare: Vec<Peer>,
}

/// The slots that name one neighbour, and what they become without it.
#[derive(Debug)]
struct NeighbourRepair {
    host: usize,
    /// (slot in `ecmp`, peer index it takes instead).
    patches: Vec<(u32, u16)>,
    /// Slots that name it with no survivor in their set and no alternate:
    /// they keep it (traffic to it is lost) until routes are computed again.
    unrepaired: usize,
}

/// What [`Tables::rerouted`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repair {
    /// ECMP slots moved off a neighbour that is down.
    pub repaired: usize,
    /// Slots that still name one: nothing to move them to.
    pub unrepaired: usize,
}

impl Reroute {
    /// The neighbours (host indices) that some ECMP slot names.
    pub fn neighbours(&self) -> impl Iterator<Item = usize> + '_ {
        self.neighbours.iter().map(|n| n.host)
    }

    /// The templates of alternates that begin no current route.
    pub fn spare_peers(&self) -> &[Peer] {
        &self.spare
    }
}

impl Tables {
    /// The network whose VNI is `vni`. One compare with a single network;
    /// a hashed look-up ([`VniIndex`]) otherwise.
    #[inline(always)]
    pub fn net_of_vni(&self, vni: u32) -> Option<&Net> {
        self.vni_net(vni).map(|(_, n)| n)
    }

    /// [`Tables::net_of_vni`] with the network's index in `nets`.
    #[inline(always)]
    pub fn vni_net(&self, vni: u32) -> Option<(u16, &Net)> {
        if let [only] = &self.nets[..] {
            return (only.vni == vni).then_some((0, only));
        }
        let i = self.vnis.get(vni)?;
        Some((i, self.nets.get(usize::from(i))?))
    }

    /// Index of the network named `name`.
    pub fn net_index(&self, name: &str) -> Option<u16> {
        self.nets
            .iter()
            .position(|n| n.name == name)
            .map(|i| i as u16)
    }

    #[inline]
    pub fn is_known_peer_v4(&self, a: u32) -> bool {
        self.known_v4.binary_search(&a).is_ok()
    }

    #[inline]
    pub fn is_known_peer_v6(&self, a: u128) -> bool {
        self.known_v6.binary_search(&a).is_ok()
    }

    /// Index in `peers` of the peer whose underlay address is `a`.
    #[inline(always)]
    pub fn peer_index_v4(&self, a: u32) -> Option<u16> {
        self.peer_v4.get(a)
    }

    #[inline(always)]
    pub fn peer_index_v6(&self, a: u128) -> Option<u16> {
        self.peer_v6.get(a)
    }

    /// Whether the route toward `src` may begin at peer `peer`: strict
    /// reverse-path forwarding (RFC 3704 section 2.2) over the overlay's
    /// routes. Links have one cost both ways, so with every host on the
    /// same routes a packet from the host that owns `src` arrives through
    /// one of our equal-cost next hops toward that host.
    #[inline(always)]
    pub fn feasible_source(&self, first: u32, count: u32, peer: u16) -> bool {
        let first = first as usize;
        // Most routes have one next hop: one load and one compare.
        if count == 1 {
            return self.ecmp.get(first) == Some(&peer);
        }
        self.ecmp
            .get(first..first + count as usize)
            .is_some_and(|set| set.contains(&peer))
    }

    /// Index of the port named `name`.
    pub fn port_index(&self, name: &str) -> Option<u16> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .map(|i| i as u16)
    }

    /// These tables with the neighbours `down` (host indices) out of every
    /// ECMP set: each slot that names one takes a surviving member of its
    /// set, or the destination's loop-free alternate, as [`build`]
    /// prepared. The FIBs are shared; `None` when nothing names them (or
    /// these tables carry no repairs).
    ///
    /// VXLAN is then accepted from the peers the repaired sets name, never
    /// from one that is down, and the source check accepts a source from
    /// the peers its repaired set names: what these tables send toward it.
    /// A repair assumes one failure at a time: a slot whose replacement is
    /// down as well keeps its neighbour (counted unrepaired) until the
    /// routes are computed again.
    pub fn rerouted(&self, down: &[usize]) -> Option<(Tables, Repair)> {
        let r = self.reroute.as_ref()?;
        let mut peers = self.peers.clone();
        peers.extend(r.spare.iter().cloned());
        let is_down = |p: u16| {
            peers
                .get(usize::from(p))
                .is_some_and(|p| down.contains(&p.host))
        };
        let mut ecmp = self.ecmp.clone();
        let mut repair = Repair::default();
        let mut any = false;
        for n in r.neighbours.iter().filter(|n| down.contains(&n.host)) {
            any = true;
            repair.unrepaired += n.unrepaired;
            for &(slot, to) in &n.patches {
                if is_down(to) {
                    repair.unrepaired += 1;
                } else if let Some(s) = ecmp.get_mut(slot as usize) {
                    *s = to;
                    repair.repaired += 1;
                }
            }
        }
        if !any {
            return None;
        }
        let mut named = vec![false; peers.len()];
        for &p in &ecmp {
            if let Some(x) = named.get_mut(usize::from(p)) {
                *x = true;
            }
        }
        let (peer_v4, peer_v6) = peer_indexes(
            peers
                .iter()
                .enumerate()
                .filter(|&(i, p)| named[i] && !down.contains(&p.host)),
        );
        let t = Tables {
            host_name: self.host_name.clone(),
            udp_port: self.udp_port,
            underlay: self.underlay,
            nic_mac: self.nic_mac,
            vtep_mac: self.vtep_mac,
            underlay_mtu: self.underlay_mtu,
            underlay_fit: self.underlay_fit,
            nets: Arc::clone(&self.nets),
            // The same list: the workers' per-network counters stay put.
            net_names: Arc::clone(&self.net_names),
            vnis: self.vnis.clone(),
            peers,
            ecmp,
            known_v4: self.known_v4.clone(),
            known_v6: self.known_v6.clone(),
            peer_v4,
            peer_v6,
            ports: self.ports.clone(),
            reroute: None,
        };
        Some((t, repair))
    }
}

/// The peer indexes by underlay address of `peers` (index, peer).
fn peer_indexes<'a>(
    peers: impl Iterator<Item = (usize, &'a Peer)>,
) -> (PeerIndex<u32>, PeerIndex<u128>) {
    let mut v4: Vec<(u32, u16)> = Vec::new();
    let mut v6: Vec<(u128, u16)> = Vec::new();
    for (i, p) in peers {
        match p.underlay {
            IpAddr::V4(a) => v4.push((a.into(), i as u16)),
            IpAddr::V6(a) => v6.push((a.into(), i as u16)),
        }
    }
    (PeerIndex::new(&v4), PeerIndex::new(&v6))
}

/// Inputs to [`build`] that come from the machine rather than the topology.
pub struct HostEnv<'a> {
    /// MAC of the uplink NIC.
    pub nic_mac: [u8; 6],
    /// MTU of the uplink NIC.
    pub underlay_mtu: u16,
    /// The kernel's neighbour table: underlay MAC for a peer's address.
    pub neighbour: &'a dyn Fn(IpAddr) -> Option<[u8; 6]>,
    /// The host's container ports by index, when they are not the
    /// topology's: `ports[i]` is port `i + 1`, `None` a vacant index (the
    /// router's live port set: topology ports first, then attached ones).
    /// `None` takes the topology's ports in order.
    pub ports: Option<&'a [Option<PortConfig>]>,
}

/// The largest overlay MTU (inner IP packet) an underlay MTU of
/// `underlay_mtu` carries from underlay address family `underlay`: VXLAN
/// adds the inner Ethernet header (14), UDP (8), VXLAN (8) and the outer
/// IPv4 (20) or IPv6 (40) header; the outer Ethernet header is not part of
/// an MTU. Zero when not even the headers fit.
pub fn largest_overlay_mtu(underlay_mtu: u16, underlay: IpAddr) -> u16 {
    let overhead = match underlay {
        IpAddr::V4(_) => OVERHEAD_V4,
        IpAddr::V6(_) => OVERHEAD_V6,
    };
    underlay_mtu.saturating_sub(overhead)
}

fn mask_v4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len)
    }
}

fn mask_v6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    }
}

/// The addresses the router speaks from in network `net`: the first
/// gateway of each family among the network's ports, else the first host
/// address of the host's first subnet of that family in the network (as
/// gateways are derived).
fn router_addrs(
    topo: &Topology,
    host: usize,
    net: usize,
    ports: &[(u16, &PortConfig)],
) -> (Option<u32>, Option<u128>) {
    let mut v4 = None;
    let mut v6 = None;
    for (_, port) in ports {
        for g in &port.gateways {
            match g {
                IpAddr::V4(a) if v4.is_none() => v4 = Some(u32::from(*a)),
                IpAddr::V6(a) if v6.is_none() => v6 = Some(u128::from(*a)),
                _ => {}
            }
        }
    }
    for s in topo.hosts[host].subnets_in(net) {
        match s {
            IpNet::V4(n) if v4.is_none() => v4 = Some(u32::from(n.network()).wrapping_add(1)),
            IpNet::V6(n) if v6.is_none() => v6 = Some(u128::from(n.network()).wrapping_add(1)),
            _ => {}
        }
    }
    (v4, v6)
}

/// Builds the outer header template toward `peer` from `local`.
fn template(
    topo: &Topology,
    local: usize,
    peer: usize,
    nic_mac: [u8; 6],
    peer_mac: [u8; 6],
) -> Option<Peer> {
    let me = &topo.hosts[local];
    let them = &topo.hosts[peer];
    let mut t = [0u8; MAX_TEMPLATE];
    let (len, partial) = match (me.underlay, them.underlay) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            ethernet::emit(&mut t[..], peer_mac, nic_mac, ethernet::ETHERTYPE_IPV4);
            let ip = ipv4::Repr {
                src,
                dst,
                protocol: ipv4::PROTO_UDP,
                ttl: 64,
                payload_len: 0,
                // RFC 6864: an atomic datagram (DF set) may use any ID; VXLAN
                // must never be fragmented (RFC 7348 section 4.3) anyway.
                dont_frag: true,
                ident: 0,
            };
            let off = ethernet::HEADER_LEN;
            ip.emit(&mut t[off..off + ipv4::MIN_HEADER_LEN]);
            // Total length is patched per packet: keep the header's sum with
            // a zero length and zero checksum.
            t[off + 2] = 0;
            t[off + 3] = 0;
            t[off + 10] = 0;
            t[off + 11] = 0;
            let partial = checksum::sum(&t[off..off + ipv4::MIN_HEADER_LEN]);
            (OUTER_V4_LEN, partial)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            ethernet::emit(&mut t[..], peer_mac, nic_mac, ethernet::ETHERTYPE_IPV6);
            let ip = ipv6::Repr {
                src,
                dst,
                next_header: ipv4::PROTO_UDP,
                hop_limit: 64,
                payload_len: 0,
            };
            ip.emit(&mut t[ethernet::HEADER_LEN..ethernet::HEADER_LEN + ipv6::HEADER_LEN]);
            // Pseudo-header without the length: source, destination, next
            // header. Length is added per packet.
            let partial = checksum::pseudo_v6(src, dst, ipv4::PROTO_UDP, 0);
            (OUTER_V6_LEN, partial)
        }
        // Validation rejects mixed families on a link; a route never pairs them.
        _ => return None,
    };
    let udp_off = len - vxlan::HEADER_LEN - udp::HEADER_LEN;
    udp::emit(
        &mut t[udp_off..udp_off + udp::HEADER_LEN],
        0,
        topo.overlay.udp_port,
        0,
    );
    vxlan::emit(&mut t[len - vxlan::HEADER_LEN..len], topo.overlay.vni);
    ethernet::emit(&mut t[len..], them.vtep_mac.0, me.vtep_mac.0, 0);
    Some(Peer {
        host: peer,
        name: them.name.clone(),
        underlay: them.underlay,
        resolved: false,
        template: t,
        template_len: len + ethernet::HEADER_LEN,
        partial_sum: partial,
    })
}

/// Compiles the forwarding state of host `host` from the topology and its
/// route set. Sans-IO: neighbour MACs come in through `env`.
pub fn build(topo: &Topology, host: usize, routes: &RouteSet, env: &HostEnv<'_>) -> Tables {
    let me = &topo.hosts[host];

    let mut ports = vec![PortInfo {
        name: me.nic.clone().unwrap_or_else(|| "uplink".to_owned()),
        role: PortRole::Uplink,
        net: 0,
        mtu: env.underlay_mtu,
        allowed_v4: Vec::new(),
        allowed_v6: Vec::new(),
        router_mac: env.nic_mac,
        container_mac: None,
    }];
    let slots: Vec<Option<&PortConfig>> = match env.ports {
        Some(s) => s.iter().map(Option::as_ref).collect(),
        None => me.ports.iter().map(Some).collect(),
    };
    // Each port's network, by index; a port of a network the topology does
    // not have (the control thread refuses to drop a network its ports
    // use) takes no traffic.
    let mut members: Vec<Vec<(u16, &PortConfig)>> = vec![Vec::new(); topo.networks.len()];
    for (i, p) in slots.iter().enumerate() {
        let index = (i + 1) as u16;
        let vacant = PortInfo {
            name: String::new(),
            role: PortRole::Vacant,
            net: 0,
            mtu: 0,
            allowed_v4: Vec::new(),
            allowed_v6: Vec::new(),
            router_mac: router_port_mac(me.vtep_mac.0, i + 1),
            container_mac: None,
        };
        let Some(p) = p else {
            ports.push(vacant);
            continue;
        };
        let Some(net) = topo.network_index(&p.network) else {
            ports.push(PortInfo {
                name: p.name.clone(),
                ..vacant
            });
            continue;
        };
        members[net].push((index, p));
        let mut allowed_v4 = Vec::new();
        let mut allowed_v6 = Vec::new();
        for a in &p.addresses {
            match a {
                IpNet::V4(n) => allowed_v4.push((u32::from(n.network()), mask_v4(n.prefix_len()))),
                IpNet::V6(n) => allowed_v6.push((u128::from(n.network()), mask_v6(n.prefix_len()))),
            }
        }
        ports.push(PortInfo {
            name: p.name.clone(),
            role: match p.kind {
                PortKind::Tun => PortRole::Tun,
                PortKind::Veth => PortRole::Veth,
            },
            net: net as u16,
            mtu: p.mtu.unwrap_or_else(|| topo.network_mtu(net, host)),
            allowed_v4,
            allowed_v6,
            router_mac: router_port_mac(me.vtep_mac.0, i + 1),
            container_mac: p.mac.map(|m| m.0),
        });
    }

    // Peers: every first hop of any remote route of any network, one
    // template each; ECMP sets are flattened into one list.
    let mut peers: Vec<Peer> = Vec::new();
    let mut peer_of_host = vec![u16::MAX; topo.hosts.len()];
    let mut ecmp: Vec<u16> = Vec::new();
    // (failed neighbour, slot, host that takes the slot or `None`): the
    // repairs, resolved to peers once every route has made its peers.
    let mut repairs: Vec<(usize, u32, Option<usize>)> = Vec::new();
    // The hosts of one ECMP set, reused from route to route.
    let mut set: Vec<usize> = Vec::new();
    let underlay_fit = largest_overlay_mtu(env.underlay_mtu, me.underlay);
    let mut nets = Vec::with_capacity(topo.networks.len());
    for (net, network) in topo.networks.iter().enumerate() {
        let mut entries: Vec<(IpNet, NextHop)> = Vec::new();
        for r in routes.of_network(net) {
            match r.kind {
                RouteKind::Local => entries.push((r.prefix.trunc(), NextHop::Unassigned)),
                RouteKind::Remote => {
                    let first = ecmp.len() as u32;
                    for nh in &r.next_hops {
                        if peer_of_host[nh.host] == u16::MAX {
                            let Some(peer) = new_peer(topo, host, nh.host, env) else {
                                continue;
                            };
                            peer_of_host[nh.host] = peers.len() as u16;
                            peers.push(peer);
                        }
                        ecmp.push(peer_of_host[nh.host]);
                    }
                    let count = ecmp.len() as u32 - first;
                    if count > 0 {
                        entries.push((r.prefix.trunc(), NextHop::Remote { first, count }));
                    }
                    set.clear();
                    set.extend(
                        ecmp[first as usize..]
                            .iter()
                            .map(|&p| peers[usize::from(p)].host),
                    );
                    for (i, &n) in set.iter().enumerate() {
                        let slot = first + i as u32;
                        let to = if set.len() > 1 {
                            // The survivors (the set without slot i) in
                            // turn: flows already on them keep their slot,
                            // the dead member's spread over them.
                            let k = i % (set.len() - 1);
                            Some(set[if k < i { k } else { k + 1 }])
                        } else {
                            routes.alternates.when_down(r.owner, n).map(|a| a.host)
                        };
                        repairs.push((n, slot, to));
                    }
                }
            }
        }
        // Container addresses are more specific than the host subnets that
        // hold them, so longest-prefix match picks the port.
        for &(port, p) in &members[net] {
            for a in &p.addresses {
                entries.push((a.trunc(), NextHop::Local { port }));
            }
        }
        let (icmp_src_v4, icmp_src_v6) = router_addrs(topo, host, net, &members[net]);
        for (_, p) in &members[net] {
            for g in &p.gateways {
                entries.push((IpNet::from(*g), NextHop::Router));
            }
        }
        if let Some(a) = icmp_src_v4 {
            entries.push((
                IpNet::from(IpAddr::from(std::net::Ipv4Addr::from(a))),
                NextHop::Router,
            ));
        }
        if let Some(a) = icmp_src_v6 {
            entries.push((
                IpNet::from(IpAddr::from(std::net::Ipv6Addr::from(a))),
                NextHop::Router,
            ));
        }
        // Directed broadcasts, of every host's IPv4 subnets of the network
        // (reachable or not) shorter than /31. An entry already made for
        // that exact address (a port or a gateway on it) stays.
        let exact: std::collections::HashSet<IpNet> = entries
            .iter()
            .filter(|(n, _)| n.prefix_len() == n.max_prefix_len())
            .map(|(n, _)| *n)
            .collect();
        for h in &topo.hosts {
            for s in h.subnets_in(net) {
                let IpNet::V4(n) = s else { continue };
                if n.prefix_len() >= 31 {
                    continue;
                }
                for a in [n.network(), n.broadcast()] {
                    let net = IpNet::from(IpAddr::V4(a));
                    if !exact.contains(&net) {
                        entries.push((net, NextHop::Broadcast));
                    }
                }
            }
        }
        let overlay_mtu = topo.network_mtu(net, host);
        nets.push(Net {
            name: network.name.clone(),
            vni: network.vni,
            overlay_mtu,
            encap_mtu: overlay_mtu.min(underlay_fit),
            fib: Fib::build(entries),
            icmp_src_v4,
            icmp_src_v6,
        });
    }
    let reroute = reroute(topo, host, env, &mut repairs, &peers, &mut peer_of_host);
    let vnis: Vec<(u32, u16)> = nets
        .iter()
        .enumerate()
        .map(|(i, n)| (n.vni, i as u16))
        .collect();
    let vnis = VniIndex::new(&vnis);

    let mut known_v4: Vec<u32> = Vec::new();
    let mut known_v6: Vec<u128> = Vec::new();
    for h in &topo.hosts {
        match h.underlay {
            IpAddr::V4(a) => known_v4.push(a.into()),
            IpAddr::V6(a) => known_v6.push(a.into()),
        }
    }
    known_v4.sort_unstable();
    known_v6.sort_unstable();
    let (peer_v4, peer_v6) = peer_indexes(peers.iter().enumerate());

    Tables {
        host_name: me.name.clone(),
        udp_port: topo.overlay.udp_port,
        underlay: me.underlay,
        nic_mac: env.nic_mac,
        vtep_mac: me.vtep_mac.0,
        underlay_mtu: env.underlay_mtu,
        underlay_fit,
        net_names: nets.iter().map(|n: &Net| n.name.clone()).collect(),
        nets: nets.into(),
        vnis,
        peers,
        ecmp,
        known_v4,
        known_v6,
        peer_v4,
        peer_v6,
        ports,
        reroute: Some(Arc::new(reroute)),
    }
}

/// The peer for neighbour `peer` of `host`: its template, resolved when
/// its underlay MAC is configured or known.
fn new_peer(topo: &Topology, host: usize, peer: usize, env: &HostEnv<'_>) -> Option<Peer> {
    let them = &topo.hosts[peer];
    let mac = them
        .underlay_mac
        .map(|m| m.0)
        .or_else(|| (env.neighbour)(them.underlay));
    let mut p = template(topo, host, peer, env.nic_mac, mac.unwrap_or([0; 6]))?;
    p.resolved = mac.is_some();
    Some(p)
}

/// The repairs of [`build`], grouped by neighbour, their replacements as
/// peer indices: an alternate that is no peer yet gets a spare template,
/// numbered after `peers`.
fn reroute(
    topo: &Topology,
    host: usize,
    env: &HostEnv<'_>,
    repairs: &mut [(usize, u32, Option<usize>)],
    peers: &[Peer],
    peer_of_host: &mut [u16],
) -> Reroute {
    repairs.sort_unstable_by_key(|&(n, slot, _)| (n, slot));
    let mut out = Reroute::default();
    for &(n, slot, to) in repairs.iter() {
        if out.neighbours.last().is_none_or(|r| r.host != n) {
            out.neighbours.push(NeighbourRepair {
                host: n,
                patches: Vec::new(),
                unrepaired: 0,
            });
        }
        let to = to.and_then(|a| {
            if peer_of_host[a] == u16::MAX {
                let index = u16::try_from(peers.len() + out.spare.len())
                    .ok()
                    .filter(|&i| i != NO_PEER)?;
                out.spare.push(new_peer(topo, host, a, env)?);
                peer_of_host[a] = index;
            }
            Some(peer_of_host[a])
        });
        let Some(r) = out.neighbours.last_mut() else {
            continue;
        };
        match to {
            Some(p) => r.patches.push((slot, p)),
            None => r.unrepaired += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{DropReason, Pipeline, Verdict};
    use crate::offload::Gso;
    use crate::port::Packet;

    #[test]
    fn next_hops_pack_into_a_leaf_and_back() {
        let limit = 1 << HOP_FIRST_BITS;
        let hops = [
            NextHop::Local { port: 0 },
            NextHop::Local { port: u16::MAX },
            NextHop::Unassigned,
            NextHop::Router,
            NextHop::Broadcast,
            NextHop::Remote { first: 0, count: 1 },
            NextHop::Remote {
                first: limit - 1,
                count: (1 << HOP_COUNT_BITS) - 1,
            },
        ];
        for h in hops {
            let bits = h.pack().expect("packs");
            assert!(bits <= crate::fib::PACKED_MAX, "{h:?}");
            assert_eq!(NextHop::unpack(bits), Some(h));
        }
        // Past the fields' bounds: kept in the FIB's table instead.
        let wide = NextHop::Remote {
            first: limit,
            count: 1,
        };
        assert_eq!(wide.pack(), None);
        let many = NextHop::Remote {
            first: 0,
            count: 1 << HOP_COUNT_BITS,
        };
        assert_eq!(many.pack(), None);
        let fib = Fib::build([
            ("198.19.1.0/24".parse().unwrap(), wide),
            ("198.19.2.0/24".parse().unwrap(), many),
            ("198.19.3.0/24".parse().unwrap(), NextHop::Router),
        ]);
        assert_eq!(fib.lookup_v4(0xC613_0101), Some(wide));
        assert_eq!(fib.lookup_v4(0xC613_0201), Some(many));
        assert_eq!(fib.lookup_v4(0xC613_0301), Some(NextHop::Router));
        // No kind past the five: a leaf never holds one.
        assert_eq!(NextHop::unpack(5 << HOP_KIND_SHIFT), None);
    }

    /// Two hosts; h1 has a TUN container. `overlay.mtu` 1500 is more than a
    /// 1500-byte underlay carries.
    const TOPO: &str = r#"
[overlay]
vni = 42
mtu = 1500

[[hosts]]
name = "h1"
underlay = "198.18.0.1"
underlay_mac = "02:00:c6:12:00:01"
subnets = ["198.19.1.0/24", "2001:2:0:1::/64"]
nic = "eth0"
  [[hosts.ports]]
  name = "c1"
  kind = "tun"
  addresses = ["198.19.1.2/32", "2001:2:0:1::2/128"]

[[hosts]]
name = "h2"
underlay = "198.18.0.2"
underlay_mac = "02:00:c6:12:00:02"
subnets = ["198.19.2.0/24", "2001:2:0:2::/64"]

[[links]]
a = "h1"
b = "h2"
cost = 10
"#;

    fn tables(v6_underlay: bool, underlay_mtu: u16) -> Tables {
        let text = if v6_underlay {
            TOPO.replace("198.18.0.", "2001:2::")
        } else {
            TOPO.to_owned()
        };
        let topo = crate::config::parse(&text, "test.toml").expect("topology");
        crate::replay::replay_tables(&topo, 0, underlay_mtu).expect("tables")
    }

    #[test]
    fn largest_overlay_mtu_per_family() {
        let v4: IpAddr = "198.18.0.1".parse().unwrap();
        let v6: IpAddr = "2001:2::1".parse().unwrap();
        assert_eq!(largest_overlay_mtu(1500, v4), 1450);
        assert_eq!(largest_overlay_mtu(1500, v6), 1430);
        assert_eq!(largest_overlay_mtu(9000, v4), 8950);
        // Not even the headers fit: nothing does, and nothing wraps.
        assert_eq!(largest_overlay_mtu(40, v4), 0);
        assert_eq!(largest_overlay_mtu(0, v6), 0);
    }

    #[test]
    fn encap_mtu_is_the_smaller_limit() {
        let t = tables(false, 1500);
        assert_eq!(
            (
                t.nets[0].overlay_mtu,
                t.underlay_mtu,
                t.underlay_fit,
                t.nets[0].encap_mtu
            ),
            (1500, 1500, 1450, 1450)
        );
        assert_eq!(t.ports[UPLINK as usize].mtu, 1500);
        let t = tables(true, 1500);
        assert_eq!((t.underlay_fit, t.nets[0].encap_mtu), (1430, 1430));
        // A jumbo underlay: the overlay MTU binds.
        let t = tables(false, 9000);
        assert_eq!((t.underlay_fit, t.nets[0].encap_mtu), (8950, 1500));
        let t = tables(true, 1570);
        assert_eq!((t.underlay_fit, t.nets[0].encap_mtu), (1500, 1500));
    }

    /// An IPv4/TCP packet from c1 to a container of h2: `payload` bytes
    /// after a 20-byte TCP header, DF set.
    fn tcp4(payload: usize) -> Vec<u8> {
        let mut p = vec![0u8; 40 + payload];
        crate::wire::ipv4::Repr {
            src: "198.19.1.2".parse().unwrap(),
            dst: "198.19.2.9".parse().unwrap(),
            protocol: crate::wire::ipv4::PROTO_TCP,
            ttl: 64,
            payload_len: (20 + payload) as u16,
            dont_frag: true,
            ident: 1,
        }
        .emit(&mut p[..20]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&80u16.to_be_bytes());
        p[32] = 5 << 4; // data offset
        p
    }

    /// Runs one packet (a super-packet with `gso`) from c1 through `t`.
    fn run(t: &Tables, data: &[u8], gso: Option<Gso>) -> (Verdict, Packet, Pipeline) {
        let mut pipe = Pipeline::new();
        let mut batch = crate::port::Batch::new_super();
        match gso {
            Some(g) => assert!(batch.push_super(data, g)),
            None => assert!(batch.push(data)),
        }
        let mut verdicts = [Verdict::Pass; crate::port::BATCH_SIZE];
        pipe.process(t, 1, &mut batch, &mut verdicts);
        let pkt = std::mem::take(&mut batch.pkts_mut()[0]);
        (verdicts[0], pkt, pipe)
    }

    /// The next-hop MTU of an ICMP fragmentation needed the router made.
    fn frag_needed_mtu(pkt: &Packet) -> u16 {
        let d = pkt.data();
        assert_eq!((d[20], d[21]), (3, 4), "not fragmentation needed");
        u16::from_be_bytes([d[26], d[27]])
    }

    #[test]
    fn packets_are_judged_against_the_underlay() {
        let t = tables(false, 1500);
        // Exactly what fits goes out: 1450 + 50 = the underlay MTU.
        let (v, pkt, _) = run(&t, &tcp4(1410), None);
        assert_eq!(v, Verdict::Forward(UPLINK));
        assert_eq!(pkt.len() - ethernet::HEADER_LEN, 1500);
        // One byte more gets fragmentation needed naming 1450.
        let (v, pkt, pipe) = run(&t, &tcp4(1411), None);
        assert_eq!(v, Verdict::Icmp(1, DropReason::UnderlayTooBig));
        assert_eq!(frag_needed_mtu(&pkt), 1450);
        assert_eq!(pipe.totals().dropped(DropReason::UnderlayTooBig), 1);
        assert_eq!(pipe.totals().dropped(DropReason::TooBig), 0);
        // The NIC's MTU shrinks: new tables, a smaller size that fits.
        let t = tables(false, 1400);
        let (v, pkt, _) = run(&t, &tcp4(1310), None);
        assert_eq!(v, Verdict::Forward(UPLINK));
        assert_eq!(pkt.len() - ethernet::HEADER_LEN, 1400);
        let (v, pkt, _) = run(&t, &tcp4(1311), None);
        assert_eq!(v, Verdict::Icmp(1, DropReason::UnderlayTooBig));
        assert_eq!(frag_needed_mtu(&pkt), 1350);
    }

    #[test]
    fn super_packets_are_judged_by_their_largest_segment() {
        let t = tables(false, 1500);
        // Three segments of 1410 bytes of payload: each a 1450-byte packet.
        let (v, pkt, pipe) = run(
            &t,
            &tcp4(3 * 1410),
            Some(Gso {
                size: 1410,
                segs: 3,
            }),
        );
        assert_eq!(v, Verdict::Forward(UPLINK));
        assert!(pkt.gso.is_some());
        assert_eq!(pipe.totals().forwarded, 3);
        // Segments of 1411: each one byte over; all three are counted.
        let (v, pkt, pipe) = run(
            &t,
            &tcp4(3 * 1411),
            Some(Gso {
                size: 1411,
                segs: 3,
            }),
        );
        assert_eq!(v, Verdict::Icmp(1, DropReason::UnderlayTooBig));
        assert_eq!(pkt.gso, None);
        assert_eq!(frag_needed_mtu(&pkt), 1450);
        assert_eq!(pipe.totals().dropped(DropReason::UnderlayTooBig), 3);
        assert_eq!(pipe.totals().icmp_errors, 1);
        // A short last segment does not make a long one fit.
        let (v, _, _) = run(
            &t,
            &tcp4(1411 + 10),
            Some(Gso {
                size: 1411,
                segs: 2,
            }),
        );
        assert_eq!(v, Verdict::Icmp(1, DropReason::UnderlayTooBig));
    }

    #[test]
    fn the_overlay_mtu_binds_when_it_is_smaller() {
        // Jumbo underlay: the overlay MTU (1500) is the limit.
        let t = tables(false, 9000);
        let (v, pkt, _) = run(&t, &tcp4(1461), None);
        assert_eq!(v, Verdict::Icmp(1, DropReason::TooBig));
        assert_eq!(frag_needed_mtu(&pkt), 1500);
        let (v, _, _) = run(&t, &tcp4(1460), None);
        assert_eq!(v, Verdict::Forward(UPLINK));
    }

    /// Two hosts, three networks. h1 has a port with the same address in
    /// the default network and in "blue", and a second blue port; h2 has a
    /// port in each of default and blue with the same address too.
    const NETS: &str = r#"
[overlay]
vni = 42

[[networks]]
name = "blue"
vni = 43
mtu = 1400
[networks.subnets]
h1 = ["198.19.1.0/24"]
h2 = ["198.19.2.0/24"]

[[networks]]
name = "green"
vni = 44
subnets = { h2 = ["198.19.8.0/24"] }

[[hosts]]
name = "h1"
underlay = "198.18.0.1"
underlay_mac = "02:00:c6:12:00:01"
subnets = ["198.19.1.0/24"]
  [[hosts.ports]]
  name = "d1"
  kind = "tun"
  addresses = ["198.19.1.2/32"]
  [[hosts.ports]]
  name = "b1"
  kind = "tun"
  network = "blue"
  addresses = ["198.19.1.2/32"]
  [[hosts.ports]]
  name = "b2"
  kind = "tun"
  network = "blue"
  addresses = ["198.19.1.3/32"]

[[hosts]]
name = "h2"
underlay = "198.18.0.2"
underlay_mac = "02:00:c6:12:00:02"
subnets = ["198.19.2.0/24"]
  [[hosts.ports]]
  name = "d2"
  kind = "tun"
  addresses = ["198.19.2.9/32"]
  [[hosts.ports]]
  name = "b2"
  kind = "tun"
  network = "blue"
  addresses = ["198.19.2.9/32"]

[[links]]
a = "h1"
b = "h2"
cost = 1
"#;

    /// An IPv4/UDP packet from `src` to `dst` with 8 bytes of payload.
    fn udp4(src: &str, dst: &str) -> Vec<u8> {
        let mut p = vec![0u8; 36];
        crate::wire::ipv4::Repr {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: crate::wire::ipv4::PROTO_UDP,
            ttl: 64,
            payload_len: 16,
            dont_frag: true,
            ident: 1,
        }
        .emit(&mut p[..20]);
        p[20..22].copy_from_slice(&1000u16.to_be_bytes());
        p[22..24].copy_from_slice(&2000u16.to_be_bytes());
        p[24..26].copy_from_slice(&16u16.to_be_bytes());
        p
    }

    /// Runs `data` in on `port` of `t`: the verdict and the packet after it.
    fn hop(t: &Tables, port: u16, data: &[u8]) -> (Verdict, Vec<u8>) {
        let mut pipe = Pipeline::new();
        let mut batch = crate::port::Batch::new();
        assert!(batch.push(data));
        let mut verdicts = [Verdict::Pass; crate::port::BATCH_SIZE];
        pipe.process(t, port, &mut batch, &mut verdicts);
        (verdicts[0], batch.pkts_mut()[0].data().to_vec())
    }

    /// The VNI of a VXLAN frame over IPv4 (no options).
    fn vni_of(frame: &[u8]) -> u32 {
        let v = OUTER_V4_LEN - vxlan::HEADER_LEN;
        u32::from_be_bytes([0, frame[v + 4], frame[v + 5], frame[v + 6]])
    }

    #[test]
    fn networks_are_separate_address_spaces_end_to_end() {
        let topo = crate::config::parse(NETS, "nets.toml").expect("topology");
        let h1 = crate::replay::replay_tables(&topo, 0, 1500).expect("h1");
        let h2 = crate::replay::replay_tables(&topo, 1, 1500).expect("h2");
        let (d1, b1, b2) = (1, 2, 3);
        assert_eq!(
            h1.nets.iter().map(|n| n.vni).collect::<Vec<_>>(),
            [42, 43, 44]
        );
        assert_eq!(h1.ports[b1 as usize].mtu, 1400);
        assert_eq!(h1.ports[d1 as usize].mtu, 1450);

        // The same destination from two networks: each leaves with its own
        // VNI and arrives at its own network's port on h2.
        for (port, vni, h2_port) in [(d1, 42, 1u16), (b1, 43, 2u16)] {
            let (v, frame) = hop(&h1, port, &udp4("198.19.1.2", "198.19.2.9"));
            assert_eq!(v, Verdict::Forward(UPLINK));
            assert_eq!(vni_of(&frame), vni);
            let (v, inner) = hop(&h2, UPLINK, &frame);
            assert_eq!(v, Verdict::Forward(h2_port), "VNI {vni}");
            assert_eq!(&inner[12..20], &udp4("198.19.1.2", "198.19.2.9")[12..20]);
        }

        // Ports of one network on one host reach each other; of two, never:
        // b2's address is unassigned in the default network.
        let (v, _) = hop(&h1, b1, &udp4("198.19.1.2", "198.19.1.3"));
        assert_eq!(v, Verdict::Forward(b2));
        let (v, reply) = hop(&h1, d1, &udp4("198.19.1.2", "198.19.1.3"));
        assert_eq!(v, Verdict::Icmp(d1, DropReason::NoRoute));
        // The error comes from the default network's gateway on h1.
        assert_eq!(&reply[12..16], &[198, 19, 1, 1]);
        // green has no subnet on h1 and no route from default or blue.
        let (v, _) = hop(&h1, b1, &udp4("198.19.1.2", "198.19.8.5"));
        assert_eq!(v, Verdict::Icmp(b1, DropReason::NoRoute));

        // A frame with a VNI no network has is dropped and named; the same
        // frame re-labelled with green's VNI finds no port of green there.
        let (_, frame) = hop(&h1, b1, &udp4("198.19.1.2", "198.19.2.9"));
        let v = OUTER_V4_LEN - vxlan::HEADER_LEN;
        let mut unknown = frame.clone();
        unknown[v + 4..v + 7].copy_from_slice(&[0, 0, 99]);
        let (verdict, _) = hop(&h2, UPLINK, &unknown);
        assert_eq!(verdict, Verdict::Drop(DropReason::VxlanUnknownVni));
        let mut green = frame.clone();
        green[v + 4..v + 7].copy_from_slice(&[0, 0, 44]);
        let (verdict, _) = hop(&h2, UPLINK, &green);
        // The inner source is no address of green's: not from h1 there.
        assert_eq!(verdict, Verdict::Drop(DropReason::InnerSpoofed));
    }

    /// Runs `frames` in on `port` through `pipe`, one burst.
    fn burst(pipe: &mut Pipeline, t: &Tables, port: u16, frames: &[&[u8]]) -> Vec<Verdict> {
        let mut batch = crate::port::Batch::new();
        for f in frames {
            assert!(batch.push(f));
        }
        let mut verdicts = [Verdict::Pass; crate::port::BATCH_SIZE];
        pipe.process(t, port, &mut batch, &mut verdicts);
        verdicts[..frames.len()].to_vec()
    }

    /// The counters of network `name` in `pipe`.
    fn of_net(pipe: &Pipeline, name: &str) -> crate::dataplane::Counters {
        pipe.counters
            .by_network()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| c.clone())
            .unwrap_or_default()
    }

    #[test]
    fn each_packet_counts_in_its_networks_bucket() {
        use crate::dataplane::Counters;
        let topo = crate::config::parse(NETS, "nets.toml").expect("topology");
        let h1 = crate::replay::replay_tables(&topo, 0, 1500).expect("h1");
        let h2 = crate::replay::replay_tables(&topo, 1, 1500).expect("h2");
        let (d1, b1) = (1, 2);
        let default = h1.nets[0].name.clone();

        // Container side: the port's network, whatever the verdict.
        let mut p1 = Pipeline::new();
        let fwd = udp4("198.19.1.2", "198.19.2.9");
        let spoofed = udp4("198.19.1.77", "198.19.2.9");
        let unroutable = udp4("198.19.1.2", "198.19.8.5");
        let v = burst(&mut p1, &h1, b1, &[&fwd, &spoofed, &unroutable]);
        assert_eq!(
            v,
            [
                Verdict::Forward(UPLINK),
                Verdict::Drop(DropReason::Spoofed),
                Verdict::Icmp(b1, DropReason::NoRoute),
            ]
        );
        let v = burst(&mut p1, &h1, d1, &[&fwd, &spoofed]);
        assert_eq!(v[1], Verdict::Drop(DropReason::Spoofed));
        let blue = of_net(&p1, "blue");
        assert_eq!(
            (blue.forwarded, blue.icmp_errors, blue.total_drops()),
            (1, 1, 2)
        );
        assert_eq!(blue.dropped(DropReason::Spoofed), 1);
        assert_eq!(blue.dropped(DropReason::NoRoute), 1);
        let def = of_net(&p1, &default);
        assert_eq!((def.forwarded, def.dropped(DropReason::Spoofed)), (1, 1));
        assert_eq!(of_net(&p1, "green"), Counters::default());
        assert_eq!(p1.counters.unknown(), &Counters::default());

        // Tunnel side: the VNI's network once it is read, the unknown
        // bucket before.
        let (_, blue_frame) = hop(&h1, b1, &fwd);
        let vx = OUTER_V4_LEN - vxlan::HEADER_LEN;
        let mut unknown_vni = blue_frame.clone();
        unknown_vni[vx + 4..vx + 7].copy_from_slice(&[0, 0, 99]);
        let mut green = blue_frame.clone();
        green[vx + 4..vx + 7].copy_from_slice(&[0, 0, 44]);
        let truncated = blue_frame[..10].to_vec();
        let mut not_vxlan = blue_frame.clone();
        // Another UDP port: the kernel's.
        not_vxlan[36..38].copy_from_slice(&4790u16.to_be_bytes());
        let mut p2 = Pipeline::new();
        let v = burst(
            &mut p2,
            &h2,
            UPLINK,
            &[&blue_frame, &unknown_vni, &green, &truncated, &not_vxlan],
        );
        assert_eq!(
            v,
            [
                Verdict::Forward(2),
                Verdict::Drop(DropReason::VxlanUnknownVni),
                Verdict::Drop(DropReason::InnerSpoofed),
                Verdict::Drop(DropReason::EthTruncated),
                Verdict::Pass,
            ]
        );
        assert_eq!(of_net(&p2, "blue").forwarded, 1);
        assert_eq!(of_net(&p2, "blue").total_drops(), 0);
        let g = of_net(&p2, "green");
        assert_eq!(
            (g.total_drops(), g.dropped(DropReason::InnerSpoofed)),
            (1, 1)
        );
        let u = p2.counters.unknown();
        assert_eq!(u.dropped(DropReason::VxlanUnknownVni), 1);
        assert_eq!(u.dropped(DropReason::EthTruncated), 1);
        assert_eq!((u.pass_through, u.forwarded, u.total_drops()), (1, 0, 2));

        // The totals are what one set of counters for every packet held.
        let mut want = Counters {
            forwarded: 1,
            pass_through: 1,
            ..Counters::default()
        };
        for r in [
            DropReason::VxlanUnknownVni,
            DropReason::InnerSpoofed,
            DropReason::EthTruncated,
        ] {
            want.drop(r);
        }
        assert_eq!(p2.totals(), want);
        let t1 = p1.totals();
        assert_eq!((t1.forwarded, t1.icmp_errors), (2, 1));
        assert_eq!(t1.dropped(DropReason::Spoofed), 2);
    }

    /// A worker that meets tables whose networks changed mid-run (a
    /// reload removed one and put another before a third) keeps every
    /// count under its network's name, and its totals.
    #[test]
    fn counters_follow_the_tables_across_a_reload() {
        use crate::dataplane::Counters;
        let topo = crate::config::parse(NETS, "nets.toml").expect("topology");
        let before = crate::replay::replay_tables(&topo, 0, 1500).expect("h1");
        let h2 = crate::replay::replay_tables(&topo, 1, 1500).expect("h2");
        let green =
            "[[networks]]\nname = \"green\"\nvni = 44\nsubnets = { h2 = [\"198.19.8.0/24\"] }\n";
        let red =
            "[[networks]]\nname = \"red\"\nvni = 45\nsubnets = { h2 = [\"198.19.9.0/24\"] }\n\n";
        assert!(NETS.contains(green));
        let reloaded = NETS.replace(green, "").replacen(
            "[[networks]]\nname = \"blue\"",
            &format!("{red}[[networks]]\nname = \"blue\""),
            1,
        );
        let topo2 = crate::config::parse(&reloaded, "nets.toml").expect("reloaded topology");
        let after = crate::replay::replay_tables(&topo2, 0, 1500).expect("h1 after");
        let names = |t: &Tables| t.nets.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&before)[1..], ["blue", "green"]);
        assert_eq!(names(&after)[1..], ["red", "blue"]);

        let mut pipe = Pipeline::new();
        let spoofed = udp4("198.19.1.77", "198.19.2.9");
        let fwd = udp4("198.19.1.2", "198.19.2.9");
        burst(&mut pipe, &before, 2, &[&spoofed, &fwd]);
        // From h2 in blue, relabelled green: green's bucket on h1.
        let (_, mut frame) = hop(&h2, 2, &udp4("198.19.2.9", "198.19.1.2"));
        let vx = OUTER_V4_LEN - vxlan::HEADER_LEN;
        frame[vx + 4..vx + 7].copy_from_slice(&[0, 0, 44]);
        let v = burst(&mut pipe, &before, UPLINK, &[&frame]);
        assert_eq!(v, [Verdict::Drop(DropReason::InnerSpoofed)]);
        let total = pipe.totals();

        // The next bursts run on the reloaded tables.
        burst(&mut pipe, &after, 2, &[&fwd]);
        let blue = of_net(&pipe, "blue");
        assert_eq!((blue.forwarded, blue.dropped(DropReason::Spoofed)), (2, 1));
        assert_eq!(of_net(&pipe, "green").dropped(DropReason::InnerSpoofed), 1);
        assert_eq!(of_net(&pipe, "red"), Counters::default());
        let mut want = total;
        want.forwarded += 1;
        assert_eq!(pipe.totals(), want);
        // In the new order: red, then blue; green retired, listed last.
        let order: Vec<&str> = pipe.counters.by_network().map(|(n, _)| n).collect();
        assert_eq!(order[1..], ["red", "blue", "green"]);

        // A reload that brings green back gives it its counts again.
        burst(&mut pipe, &before, 2, &[&fwd]);
        assert_eq!(of_net(&pipe, "green").dropped(DropReason::InnerSpoofed), 1);
        assert_eq!(of_net(&pipe, "blue").forwarded, 3);
        let order: Vec<&str> = pipe.counters.by_network().map(|(n, _)| n).collect();
        assert_eq!(order[1..], ["blue", "green", "red"]);
    }

    #[test]
    fn vni_index_finds_every_network_and_no_other() {
        // Numbered in a row, spread over the whole 24 bits, and scattered:
        // every VNI finds its own network, and nothing else finds one.
        let sets: [Vec<u32>; 4] = [
            vec![42],
            (1..=1000).collect(),
            (0..300).map(|i| 1 + i * 55_921).collect(),
            (1..100)
                .map(|i| 5000 + (i * 53) % 997)
                .chain([42])
                .collect(),
        ];
        for vnis in &sets {
            let pairs: Vec<(u32, u16)> = vnis
                .iter()
                .enumerate()
                .map(|(i, &v)| (v, i as u16))
                .collect();
            let index = VniIndex::new(&pairs);
            assert!(index.slots.len() >= 2 * vnis.len());
            for &(v, net) in &pairs {
                assert_eq!(index.get(v), Some(net), "VNI {v}");
            }
            for v in [
                0,
                1,
                41,
                43,
                999,
                1001,
                4999,
                6000,
                crate::config::MAX_VNI,
                NO_VNI,
            ] {
                if !vnis.contains(&v) {
                    assert_eq!(index.get(v), None, "VNI {v}");
                }
            }
        }
        // Duplicates keep the first; no VNI at all and `NO_VNI` find nothing.
        let index = VniIndex::new(&[(7, 0), (7, 1), (NO_VNI, 2)]);
        assert_eq!(index.get(7), Some(0));
        assert_eq!(index.get(NO_VNI), None);
        assert_eq!(VniIndex::new(&[]).get(7), None);
    }

    /// What [`PeerIndex::get`] must answer: the first peer given for `a`,
    /// `NO_PEER` entries left out.
    fn peer_reference<K: PeerKey>(pairs: &[(K, u16)], a: K) -> Option<u16> {
        pairs
            .iter()
            .find(|&&(k, p)| k == a && p != NO_PEER)
            .map(|&(_, p)| p)
    }

    proptest::proptest! {
        #[test]
        fn peer_index_v4_agrees_with_a_search(
            pairs in proptest::collection::vec((0u32..64, 0u16..8), 0..40),
            base in proptest::prelude::any::<u32>(),
            probes in proptest::collection::vec(0u32..80, 1..40),
        ) {
            // Addresses in a row (as underlays are numbered), from anywhere
            // in the space, including 0 and all ones; duplicates and
            // `NO_PEER` entries among them.
            let pairs: Vec<(u32, u16)> = pairs
                .iter()
                .map(|&(a, p)| (base.wrapping_add(a), if p == 7 { NO_PEER } else { p }))
                .collect();
            let index = PeerIndex::new(&pairs);
            proptest::prop_assert!(index.slots.len() >= 2 * pairs.len());
            for a in probes.iter().map(|&o| base.wrapping_add(o)).chain([0, u32::MAX]) {
                proptest::prop_assert_eq!(index.get(a), peer_reference(&pairs, a), "{:#x}", a);
            }
        }

        #[test]
        fn peer_index_v6_agrees_with_a_search(
            pairs in proptest::collection::vec((0u128..64, 0u16..8), 0..40),
            base in proptest::prelude::any::<u128>(),
            high in proptest::prelude::any::<bool>(),
            probes in proptest::collection::vec(0u128..80, 1..40),
        ) {
            // In a row in the low bits, or (`high`) in bits the fold of the
            // halves could cancel.
            let step = if high { 1u128 << 64 | 1 << 32 } else { 1 };
            let at = |o: u128| base.wrapping_add(o.wrapping_mul(step));
            let pairs: Vec<(u128, u16)> = pairs
                .iter()
                .map(|&(a, p)| (at(a), if p == 7 { NO_PEER } else { p }))
                .collect();
            let index = PeerIndex::new(&pairs);
            for a in probes.iter().map(|&o| at(o)).chain([0, u128::MAX]) {
                proptest::prop_assert_eq!(index.get(a), peer_reference(&pairs, a), "{:#x}", a);
            }
        }
    }

    /// h1 (the router under test, TUN ports in two networks) with links to
    /// h2 and h3; h4 behind h2; h5 with no link. Every host has subnets in
    /// the default network, some in blue.
    const PEERS: &str = r#"
[overlay]
vni = 42

[[networks]]
name = "blue"
vni = 43
[networks.subnets]
h1 = ["198.19.1.0/24"]
h2 = ["198.19.2.0/24"]
h4 = ["198.19.4.0/24"]

[[hosts]]
name = "h1"
underlay = "198.18.0.1"
underlay_mac = "02:00:c6:12:00:01"
vtep_mac = "02:42:c6:12:00:01"
subnets = ["198.19.1.0/24", "2001:2:0:1::/64"]
  [[hosts.ports]]
  name = "c1"
  kind = "tun"
  addresses = ["198.19.1.2/32", "2001:2:0:1::2/128"]
  [[hosts.ports]]
  name = "b1"
  kind = "tun"
  network = "blue"
  addresses = ["198.19.1.2/32"]

[[hosts]]
name = "h2"
underlay = "198.18.0.2"
underlay_mac = "02:00:c6:12:00:02"
subnets = ["198.19.2.0/24", "2001:2:0:2::/64"]

[[hosts]]
name = "h3"
underlay = "198.18.0.3"
underlay_mac = "02:00:c6:12:00:03"
subnets = ["198.19.3.0/24", "2001:2:0:3::/64"]

[[hosts]]
name = "h4"
underlay = "198.18.0.4"
underlay_mac = "02:00:c6:12:00:04"
subnets = ["198.19.4.0/24", "2001:2:0:4::/64"]

[[hosts]]
name = "h5"
underlay = "198.18.0.5"
underlay_mac = "02:00:c6:12:00:05"
subnets = ["198.19.5.0/24", "2001:2:0:5::/64"]

[[links]]
a = "h1"
b = "h2"
cost = 1

[[links]]
a = "h1"
b = "h3"
cost = 1

[[links]]
a = "h2"
b = "h4"
cost = 1
"#;

    /// VXLAN over IPv4 from `outer_src` to h1 of [`PEERS`] with `vni`,
    /// carrying `inner` (IPv4 or IPv6, by its version).
    fn vxlan_to_h1(outer_src: [u8; 4], vni: u32, inner: &[u8]) -> Vec<u8> {
        let ethertype = if inner[0] >> 4 == 6 {
            ethernet::ETHERTYPE_IPV6
        } else {
            ethernet::ETHERTYPE_IPV4
        };
        let udp_len = udp::HEADER_LEN + vxlan::HEADER_LEN + ethernet::HEADER_LEN + inner.len();
        let mut f = vec![0u8; ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + udp_len];
        ethernet::emit(
            &mut f,
            [2, 0, 0xc6, 0x12, 0, 1],
            [2, 0, 0xc6, 0x12, 0, outer_src[3]],
            ethernet::ETHERTYPE_IPV4,
        );
        ipv4::Repr {
            src: outer_src.into(),
            dst: [198, 18, 0, 1].into(),
            protocol: ipv4::PROTO_UDP,
            ttl: 64,
            payload_len: udp_len as u16,
            dont_frag: true,
            ident: 0,
        }
        .emit(&mut f[ethernet::HEADER_LEN..]);
        let u = &mut f[ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN..];
        u[0..2].copy_from_slice(&50000u16.to_be_bytes());
        u[2..4].copy_from_slice(&4789u16.to_be_bytes());
        u[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        let vx = &mut u[udp::HEADER_LEN..];
        vx[0] = 0x08;
        vx[4..8].copy_from_slice(&(vni << 8).to_be_bytes());
        ethernet::emit(
            &mut vx[vxlan::HEADER_LEN..],
            [2, 0x42, 0xc6, 0x12, 0, 1],
            [2, 0x42, 0xc6, 0x12, 0, outer_src[3]],
            ethertype,
        );
        vx[vxlan::HEADER_LEN + ethernet::HEADER_LEN..].copy_from_slice(inner);
        f
    }

    /// An IPv6/UDP packet from `src` to `dst` with 8 bytes of payload.
    fn udp6(src: &str, dst: &str) -> Vec<u8> {
        let mut p = vec![0u8; 56];
        crate::wire::ipv6::Repr {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            next_header: crate::wire::ipv4::PROTO_UDP,
            hop_limit: 64,
            payload_len: 16,
        }
        .emit(&mut p[..40]);
        p[40..42].copy_from_slice(&1000u16.to_be_bytes());
        p[42..44].copy_from_slice(&2000u16.to_be_bytes());
        p[44..46].copy_from_slice(&16u16.to_be_bytes());
        p
    }

    /// A frame from the tunnel to h1 of [`PEERS`]: outer source `peer` (h2,
    /// h3, h4 no neighbour, h1 itself, a stranger), VNI `vni` (default,
    /// blue, none), inner source `src` (each host's subnets in both
    /// families, h1's own, outside the topology, a bad source).
    fn tunnel_frame(peer: usize, vni: usize, src: usize) -> Vec<u8> {
        let outer = [
            [198, 18, 0, 2],
            [198, 18, 0, 3],
            [198, 18, 0, 4],
            [198, 18, 0, 1],
            [198, 18, 0, 99],
        ][peer];
        let vni = [42, 43, 99][vni];
        let v4 = [
            "198.19.2.9",
            "198.19.3.9",
            "198.19.4.9",
            "198.19.5.9",
            "198.19.1.7",
            "10.0.0.1",
            "127.0.0.1",
        ];
        let v6 = [
            "2001:2:0:2::9",
            "2001:2:0:3::9",
            "2001:2:0:4::9",
            "2001:2:0:5::9",
            "2001:2:0:1::7",
            "2001:db8::1",
        ];
        let inner = match v4.get(src) {
            Some(a) => udp4(a, "198.19.1.2"),
            None => udp6(v6[(src - v4.len()) % v6.len()], "2001:2:0:1::2"),
        };
        vxlan_to_h1(outer, vni, &inner)
    }

    proptest::proptest! {
        /// A burst from the tunnel gets, packet for packet, the verdicts
        /// and counts its packets get one by one: what the pipeline keeps
        /// within a burst (the last source check's answer) never changes
        /// an answer. Runs of one sender, as bursts carry, and changes of
        /// peer, VNI and source between them.
        #[test]
        fn a_burst_from_the_tunnel_is_judged_as_its_packets_one_by_one(
            runs in proptest::collection::vec((0usize..5, 0usize..3, 0usize..13, 1usize..6), 1..40),
        ) {
            let topo = crate::config::parse(PEERS, "peers.toml").expect("topology");
            let t = crate::replay::replay_tables(&topo, 0, 1500).expect("tables");
            let frames: Vec<Vec<u8>> = runs
                .iter()
                .flat_map(|&(peer, vni, src, n)| std::iter::repeat_n(tunnel_frame(peer, vni, src), n))
                .take(crate::port::BATCH_SIZE)
                .collect();
            let mut burst_pipe = Pipeline::new();
            let mut batch = crate::port::Batch::new();
            for f in &frames {
                proptest::prop_assert!(batch.push(f));
            }
            let mut verdicts = [Verdict::Pass; crate::port::BATCH_SIZE];
            burst_pipe.process(&t, UPLINK, &mut batch, &mut verdicts);
            let mut one_pipe = Pipeline::new();
            for (i, f) in frames.iter().enumerate() {
                let mut one = crate::port::Batch::new();
                proptest::prop_assert!(one.push(f));
                let mut v = [Verdict::Pass; crate::port::BATCH_SIZE];
                one_pipe.process(&t, UPLINK, &mut one, &mut v);
                proptest::prop_assert_eq!(verdicts[i], v[0], "packet {}", i);
                proptest::prop_assert_eq!(batch.pkts_mut()[i].data(), one.pkts_mut()[0].data());
            }
            proptest::prop_assert_eq!(&burst_pipe.counters, &one_pipe.counters);
        }
    }

    /// The frames of [`tunnel_frame`] reach the verdicts they are meant to:
    /// the property above compares something.
    #[test]
    fn tunnel_frames_take_every_path_of_the_source_check() {
        let topo = crate::config::parse(PEERS, "peers.toml").expect("topology");
        let t = crate::replay::replay_tables(&topo, 0, 1500).expect("tables");
        let (c1, b1) = (1, 2);
        let judge = |peer, vni, src| hop(&t, UPLINK, &tunnel_frame(peer, vni, src)).0;
        let drop = Verdict::Drop;
        // From h2: its own subnets and h4's (behind it) pass, in both
        // families and in blue; h3's come only through h3.
        assert_eq!(judge(0, 0, 0), Verdict::Forward(c1));
        assert_eq!(judge(0, 0, 2), Verdict::Forward(c1));
        assert_eq!(judge(0, 0, 7), Verdict::Forward(c1));
        assert_eq!(judge(0, 0, 9), Verdict::Forward(c1));
        assert_eq!(judge(0, 1, 0), Verdict::Forward(b1));
        assert_eq!(judge(0, 0, 1), drop(DropReason::InnerSourceWrongPeer));
        assert_eq!(judge(0, 0, 8), drop(DropReason::InnerSourceWrongPeer));
        assert_eq!(judge(1, 0, 1), Verdict::Forward(c1));
        assert_eq!(judge(1, 0, 0), drop(DropReason::InnerSourceWrongPeer));
        // h3's subnet is no source in blue; h5 is reachable by no route.
        assert_eq!(judge(1, 1, 1), drop(DropReason::InnerSpoofed));
        assert_eq!(judge(0, 0, 3), drop(DropReason::InnerSpoofed));
        assert_eq!(judge(0, 0, 4), drop(DropReason::InnerSpoofed));
        assert_eq!(judge(0, 0, 5), drop(DropReason::InnerSpoofed));
        assert_eq!(judge(0, 0, 11), drop(DropReason::InnerSpoofed));
        assert_eq!(judge(0, 0, 12), drop(DropReason::InnerSpoofed));
        assert_eq!(judge(0, 0, 6), drop(DropReason::IpBadSource));
        assert_eq!(judge(0, 2, 0), drop(DropReason::VxlanUnknownVni));
        assert_eq!(judge(2, 0, 2), drop(DropReason::PeerNotNeighbour));
        assert_eq!(judge(3, 0, 0), drop(DropReason::VxlanFromSelf));
        assert_eq!(judge(4, 0, 0), drop(DropReason::UnknownPeer));
    }

    /// h1 (a TUN container) linked to h2 and h3 (cost 1) and h4 (cost 5);
    /// h5 behind h2 and h3 (ECMP); h6 behind h2 only, and behind h4, which
    /// is cheaper to reach through h2 and h6 than over its own link: h4
    /// begins no route, and is h6's (and h2's) loop-free alternate.
    const FRR: &str = r#"
[overlay]
vni = 42

[[hosts]]
name = "h1"
underlay = "198.18.0.1"
underlay_mac = "02:00:c6:12:00:01"
subnets = ["198.19.1.0/24"]
  [[hosts.ports]]
  name = "c1"
  kind = "tun"
  addresses = ["198.19.1.2/32"]
"#;

    fn frr_topology() -> Topology {
        let mut text = FRR.to_owned();
        for h in 2..=6 {
            text += &format!(
                "[[hosts]]\nname = \"h{h}\"\nunderlay = \"198.18.0.{h}\"\nunderlay_mac = \"02:00:c6:12:00:0{h}\"\nsubnets = [\"198.19.{h}.0/24\"]\n"
            );
        }
        for (a, b, c) in [
            (1, 2, 1),
            (1, 3, 1),
            (1, 4, 5),
            (2, 5, 1),
            (3, 5, 1),
            (2, 6, 1),
            (4, 6, 1),
        ] {
            text += &format!("[[links]]\na = \"h{a}\"\nb = \"h{b}\"\ncost = {c}\n");
        }
        crate::config::parse(&text, "frr.toml").expect("topology")
    }

    /// The outer IPv4 destination of an encapsulated frame.
    fn outer_dst(frame: &[u8]) -> [u8; 4] {
        let d = ethernet::HEADER_LEN + 16;
        [frame[d], frame[d + 1], frame[d + 2], frame[d + 3]]
    }

    #[test]
    fn a_neighbour_down_moves_its_slots_to_survivors_and_alternates() {
        let topo = frr_topology();
        let routes = crate::route::compute_with_alternates(&topo, 0).unwrap();
        let no = |_: IpAddr| None;
        let env = HostEnv {
            nic_mac: [2, 0, 0xc6, 0x12, 0, 1],
            underlay_mtu: 1500,
            neighbour: &no,
            ports: None,
        };
        let t = build(&topo, 0, &routes, &env);
        let c1 = 1;
        let via = |t: &Tables, dst: &str| {
            let (v, frame) = hop(t, c1, &udp4("198.19.1.2", dst));
            assert_eq!(v, Verdict::Forward(UPLINK), "to {dst}");
            outer_dst(&frame)[3]
        };
        let remote = |t: &Tables, dst: &str| match t.nets[0]
            .fib
            .lookup_v4(u32::from(dst.parse::<std::net::Ipv4Addr>().unwrap()))
        {
            Some(NextHop::Remote { first, count }) => (first, count),
            other => panic!("{dst}: {other:?}"),
        };
        assert_eq!(via(&t, "198.19.6.9"), 2);
        assert_eq!(via(&t, "198.19.4.9"), 2);
        let (first5, count5) = remote(&t, "198.19.5.9");
        assert_eq!(count5, 2);
        assert_eq!(t.peer_index_v4(u32::from_be_bytes([198, 18, 0, 4])), None);

        let h2 = topo.host_index("h2").unwrap();
        let (r, repair) = t.rerouted(&[h2]).expect("h2 begins routes");
        // The FIBs are the same; the slots they name changed.
        assert!(Arc::ptr_eq(&t.nets, &r.nets));
        assert!(r.reroute.is_none());
        // h6, h4 and h2 itself had h2 alone: the alternate h4 takes them,
        // through a template made for it. h5's set just loses h2: both
        // its slots name h3, so flows on h3 keep their slot.
        assert_eq!(via(&r, "198.19.6.9"), 4);
        assert_eq!(via(&r, "198.19.4.9"), 4);
        assert_eq!(via(&r, "198.19.2.9"), 4);
        assert_eq!(via(&r, "198.19.3.9"), 3);
        let set5: Vec<&str> = r.ecmp[first5 as usize..(first5 + count5) as usize]
            .iter()
            .map(|&p| r.peers[usize::from(p)].name.as_str())
            .collect();
        assert_eq!(set5, ["h3", "h3"]);
        assert_eq!(
            repair,
            Repair {
                repaired: 4,
                unrepaired: 0
            }
        );
        // The originals are untouched.
        assert_eq!(via(&t, "198.19.6.9"), 2);

        // VXLAN: from h4 now (a source behind it, not one behind h3), no
        // longer from h2, which is down.
        let from = |t: &Tables, peer: u8, src: &str| {
            hop(
                t,
                UPLINK,
                &vxlan_to_h1([198, 18, 0, peer], 42, &udp4(src, "198.19.1.2")),
            )
            .0
        };
        assert_eq!(
            from(&t, 4, "198.19.6.9"),
            Verdict::Drop(DropReason::PeerNotNeighbour)
        );
        assert_eq!(from(&t, 2, "198.19.6.9"), Verdict::Forward(c1));
        assert_eq!(from(&r, 4, "198.19.6.9"), Verdict::Forward(c1));
        assert_eq!(
            from(&r, 4, "198.19.3.9"),
            Verdict::Drop(DropReason::InnerSourceWrongPeer)
        );
        assert_eq!(
            from(&r, 2, "198.19.6.9"),
            Verdict::Drop(DropReason::PeerNotNeighbour)
        );
        assert_eq!(from(&r, 3, "198.19.5.9"), Verdict::Forward(c1));

        // h3 down: h5 keeps h2; h3's own subnet has an alternate (h2,
        // through h5) only if it is loop-free: dist(h2, h3) = 2 is not
        // under dist(h2, h1) + dist(h1, h3) = 2, so it stays unrepaired.
        let h3 = topo.host_index("h3").unwrap();
        let (r3, repair) = t.rerouted(&[h3]).unwrap();
        assert_eq!(via(&r3, "198.19.5.9"), 2);
        assert_eq!(via(&r3, "198.19.3.9"), 3);
        assert_eq!(
            repair,
            Repair {
                repaired: 1,
                unrepaired: 1
            }
        );
        // A neighbour that begins no route: nothing to repair.
        assert!(t.rerouted(&[topo.host_index("h4").unwrap()]).is_none());
        // Both down: h5's slot toward h2 has no survivor left.
        let (_, repair) = t.rerouted(&[h2, h3]).unwrap();
        assert_eq!(repair.unrepaired, 3);
    }

    #[test]
    fn a_port_of_an_unknown_network_takes_no_traffic() {
        let topo = crate::config::parse(NETS, "nets.toml").expect("topology");
        let routes = crate::route::compute(&topo, 0).unwrap();
        let mut ports: Vec<Option<PortConfig>> =
            topo.hosts[0].ports.iter().cloned().map(Some).collect();
        ports[1].as_mut().unwrap().network = "red".into();
        let no = |_: IpAddr| None;
        let env = HostEnv {
            nic_mac: [2, 0, 0, 0, 0, 1],
            underlay_mtu: 1500,
            neighbour: &no,
            ports: Some(&ports),
        };
        let t = build(&topo, 0, &routes, &env);
        assert_eq!(t.ports[2].role, PortRole::Vacant);
        assert_eq!(t.ports[2].name, "b1");
        let (v, _) = hop(&t, 2, &udp4("198.19.1.2", "198.19.1.3"));
        assert_eq!(v, Verdict::Drop(DropReason::PortDown));
    }
}
