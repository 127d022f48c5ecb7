//! The kernel's neighbour table (ARP and IPv6 ND) as the control thread sees
//! it, route lookups for the underlay next hop, and triggering resolution.
//!
//! Layer: control-plane I/O. The control thread owns one [`NeighbourTable`]:
//! it registers [`NeighbourTable::fd`] with its poll loop (mio or poll),
//! calls [`NeighbourTable::process_events`] when it is readable, and reads
//! [`NeighbourTable::lookup`] when it (re)builds next-hop templates.
//!
//! Invariants:
//! - The table holds only entries with a 6-byte link-layer address in a state
//!   where the kernel itself would use that address: REACHABLE, STALE, DELAY,
//!   PROBE or PERMANENT. INCOMPLETE, FAILED, NOARP and NONE entries are left
//!   out (or removed when an entry moves into them).
//! - The event socket is subscribed before the first dump, so no change made
//!   between the dump and the first [`NeighbourTable::process_events`] is
//!   lost. When the kernel drops events (`ENOBUFS` on an overfull socket),
//!   the table is rebuilt from a fresh dump.
//! - Everything is in the network namespace of the thread that called
//!   [`NeighbourTable::open`]: netlink sockets are bound to it for life.
//!
//! Resolution ([`NeighbourTable::resolve`]) sends RTM_NEWNEIGH with
//! `NTF_USE` (what `ip neigh replace ADDR dev DEV nud incomplete use` does).
//! The kernel then runs `neigh_event_send()` as if a packet were waiting:
//! an entry that does not exist is created and the kernel sends its own ARP
//! request or neighbour solicitation; a valid entry is only marked used, and
//! a PERMANENT one is left alone. The answer arrives as an RTM_NEWNEIGH
//! event. We prefer this to the alternative (a UDP socket bound to the device
//! sending an empty datagram to port 9 of the peer) because no datagram ever
//! reaches the peer, no socket or port is consumed, and it works for IPv4
//! and IPv6 alike (Linux 6.18 behaves so for both).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};

use netlink_packet_core::{NetlinkPayload, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE};
use netlink_packet_route::{
    neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
    },
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteType, RouteVia},
    AddressFamily, RouteNetlinkMessage,
};
use netlink_sys::Socket;

use super::{
    link::link_info_with,
    nl::{self, Rtnl},
    HostError, Result,
};

/// Receive buffer asked for on the event socket: a burst of neighbour
/// changes (a link flap on a busy underlay) should not overflow it.
const EVENT_SOCKET_RCVBUF: usize = 1 << 20;

/// One usable neighbour entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    mac: [u8; 6],
    ifindex: u32,
}

/// Where the kernel would send a packet for some destination: the address
/// whose link-layer address the outer Ethernet header needs, and the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// The gateway when the route has one, else the destination itself.
    pub addr: IpAddr,
    /// Output interface index.
    pub ifindex: u32,
    /// True when `addr` is a gateway (an underlay router), not the destination.
    pub via_gateway: bool,
}

/// The kernel's IPv4 and IPv6 neighbour tables, followed through netlink.
pub struct NeighbourTable {
    entries: HashMap<IpAddr, Entry>,
    rtnl: Rtnl,
    events: Socket,
    buf: Vec<u8>,
}

impl std::fmt::Debug for NeighbourTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeighbourTable")
            .field("entries", &self.entries.len())
            .field("fd", &self.events.as_raw_fd())
            .finish()
    }
}

impl NeighbourTable {
    /// Subscribes to neighbour events and dumps both tables, in the calling
    /// thread's network namespace.
    pub fn open() -> Result<Self> {
        let op = "open neighbour event socket";
        let io = |source| HostError::Io {
            op: op.to_string(),
            source,
        };
        let events = nl::open_socket(op)?;
        // One group carries both families: IPv4 and IPv6 neighbour changes
        // are all published to RTNLGRP_NEIGH.
        events.add_membership(libc::RTNLGRP_NEIGH).map_err(io)?;
        // Best effort: the kernel caps it at net.core.rmem_max.
        let _ = events.set_rx_buf_sz(EVENT_SOCKET_RCVBUF);
        events.set_non_blocking(true).map_err(io)?;
        let mut table = NeighbourTable {
            entries: HashMap::new(),
            rtnl: Rtnl::open()?,
            events,
            buf: Vec::with_capacity(nl::RECV_BUF),
        };
        table.refresh()?;
        Ok(table)
    }

    /// The link-layer address of `ip`, if the kernel has a usable entry.
    pub fn lookup(&self, ip: IpAddr) -> Option<[u8; 6]> {
        self.entries.get(&ip).map(|e| e.mac)
    }

    /// Number of usable entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no usable entry is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every usable entry as (address, MAC, ifindex), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, [u8; 6], u32)> + '_ {
        self.entries.iter().map(|(ip, e)| (*ip, e.mac, e.ifindex))
    }

    /// Replaces the table with a fresh dump of both families. Returns whether
    /// any address or MAC changed.
    pub fn refresh(&mut self) -> Result<bool> {
        let mut fresh = HashMap::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut req = NeighbourMessage::default();
            req.header.family = family;
            let answers = self.rtnl.request(
                "RTM_GETNEIGH dump",
                RouteNetlinkMessage::GetNeighbour(req),
                NLM_F_DUMP,
            )?;
            for answer in answers {
                if let RouteNetlinkMessage::NewNeighbour(n) = answer {
                    if let (Some(ip), Some(entry)) = parse(&n) {
                        fresh.insert(ip, entry);
                    }
                }
            }
        }
        let changed = fresh != self.entries;
        self.entries = fresh;
        Ok(changed)
    }

    /// The event socket's descriptor, non-blocking, readable when the kernel
    /// has neighbour changes for us. Register it for readability (with mio:
    /// `SourceFd(&table.fd())`, `Interest::READABLE`).
    pub fn fd(&self) -> RawFd {
        self.events.as_raw_fd()
    }

    /// Applies every pending neighbour event. Drains the socket until it
    /// would block, so edge-triggered registration (mio) is correct. Returns
    /// whether any address or MAC changed.
    pub fn process_events(&mut self) -> Result<bool> {
        let op = "receive neighbour events";
        let mut changed = false;
        loop {
            match nl::recv_datagram(&self.events, &mut self.buf, op) {
                Ok(()) => {}
                Err(HostError::Io { source, .. }) if source.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(changed)
                }
                Err(HostError::Io { source, .. })
                    if source.kind() == io::ErrorKind::Interrupted =>
                {
                    continue
                }
                Err(HostError::Io { source, .. })
                    if source.raw_os_error() == Some(libc::ENOBUFS) =>
                {
                    // The kernel dropped events for us: only a dump is exact.
                    tracing::debug!("neighbour events overran the socket; dumping again");
                    changed |= self.refresh()?;
                    continue;
                }
                Err(HostError::Decode { .. }) => {
                    // A truncated datagram lost events as surely as ENOBUFS.
                    changed |= self.refresh()?;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let entries = &mut self.entries;
            nl::for_each_message(&self.buf, op, |_, payload| {
                if let NetlinkPayload::InnerMessage(msg) = payload {
                    changed |= apply_event(entries, msg);
                }
                Ok(())
            })?;
        }
    }

    /// Makes the kernel resolve `ip` on `via_ifname` (see the module docs
    /// for how and why). The result shows up as an event; this does not wait.
    /// Only ever call it for addresses the topology names as peers or their
    /// gateways.
    pub fn resolve(&mut self, ip: IpAddr, via_ifname: &str) -> Result<()> {
        super::check_ifname(via_ifname)?;
        let ifindex = link_info_with(&mut self.rtnl, via_ifname)?.index;
        self.resolve_on(ip, ifindex)
    }

    /// [`NeighbourTable::resolve`] by interface index, as returned in
    /// [`NextHop::ifindex`].
    pub fn resolve_on(&mut self, ip: IpAddr, ifindex: u32) -> Result<()> {
        let mut req = NeighbourMessage::default();
        req.header.family = family_of(ip);
        req.header.ifindex = ifindex;
        req.header.state = NeighbourState::Incomplete;
        req.header.flags = NeighbourFlags::Use;
        req.attributes
            .push(NeighbourAttribute::Destination(match ip {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            }));
        self.rtnl.request(
            &format!("RTM_NEWNEIGH {ip} ifindex {ifindex} use"),
            RouteNetlinkMessage::NewNeighbour(req),
            NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    /// Asks the kernel's routing table how it would reach `ip` (like
    /// `ip route get`): the gateway when the route has one (a peer behind an
    /// underlay router resolves to the router's MAC), else `ip` itself.
    /// `Ok(None)` when there is no route (unreachable, prohibited,
    /// blackholed) or `ip` is one of this namespace's own addresses.
    pub fn next_hop_for(&mut self, ip: IpAddr) -> Result<Option<NextHop>> {
        let mut req = RouteMessage::default();
        req.header.address_family = family_of(ip);
        req.header.destination_prefix_length = if ip.is_ipv4() { 32 } else { 128 };
        req.attributes.push(RouteAttribute::Destination(match ip {
            IpAddr::V4(a) => RouteAddress::Inet(a),
            IpAddr::V6(a) => RouteAddress::Inet6(a),
        }));
        let op = format!("RTM_GETROUTE {ip}");
        let answers = match self
            .rtnl
            .request(&op, RouteNetlinkMessage::GetRoute(req), 0)
        {
            Ok(a) => a,
            Err(HostError::Netlink { errno, .. })
                if [
                    libc::ENETUNREACH,
                    libc::EHOSTUNREACH,
                    libc::EACCES,
                    libc::EINVAL,
                ]
                .contains(&errno) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        for answer in answers {
            if let RouteNetlinkMessage::NewRoute(route) = answer {
                return Ok(next_hop_from(ip, &route));
            }
        }
        Err(HostError::Decode {
            op,
            detail: "no RTM_NEWROUTE in the answer".to_string(),
        })
    }
}

impl AsRawFd for NeighbourTable {
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}

fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// Reads the route answer of `RTM_GETROUTE`.
fn next_hop_from(dst: IpAddr, route: &RouteMessage) -> Option<NextHop> {
    if route.header.kind != RouteType::Unicast {
        return None;
    }
    let mut hop = NextHop {
        addr: dst,
        ifindex: 0,
        via_gateway: false,
    };
    for attr in &route.attributes {
        match attr {
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => {
                hop.addr = IpAddr::V4(*a);
                hop.via_gateway = true;
            }
            RouteAttribute::Gateway(RouteAddress::Inet6(a)) => {
                hop.addr = IpAddr::V6(*a);
                hop.via_gateway = true;
            }
            // An IPv4 route via an IPv6 gateway (RFC 5549 style).
            RouteAttribute::Via(RouteVia::Inet(a)) => {
                hop.addr = IpAddr::V4(*a);
                hop.via_gateway = true;
            }
            RouteAttribute::Via(RouteVia::Inet6(a)) => {
                hop.addr = IpAddr::V6(*a);
                hop.via_gateway = true;
            }
            RouteAttribute::Oif(i) => hop.ifindex = *i,
            _ => {}
        }
    }
    Some(hop)
}

/// States in which the kernel itself transmits to the cached address.
fn usable(state: NeighbourState) -> bool {
    matches!(
        state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
    )
}

/// The address of a neighbour message (IPv4/IPv6 only) and, when usable, its
/// entry.
fn parse(n: &NeighbourMessage) -> (Option<IpAddr>, Option<Entry>) {
    if n.header.family != AddressFamily::Inet && n.header.family != AddressFamily::Inet6 {
        return (None, None);
    }
    let mut ip = None;
    let mut mac = None;
    for attr in &n.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                ip = Some(IpAddr::V6(*a))
            }
            NeighbourAttribute::LinkLayerAddress(l) => mac = <[u8; 6]>::try_from(l.as_slice()).ok(),
            _ => {}
        }
    }
    let entry = match mac {
        Some(mac) if usable(n.header.state) => Some(Entry {
            mac,
            ifindex: n.header.ifindex,
        }),
        _ => None,
    };
    (ip, entry)
}

/// Applies one event to the map; returns whether it changed.
fn apply_event(entries: &mut HashMap<IpAddr, Entry>, msg: RouteNetlinkMessage) -> bool {
    let (n, deleted) = match msg {
        RouteNetlinkMessage::NewNeighbour(n) => (n, false),
        RouteNetlinkMessage::DelNeighbour(n) => (n, true),
        _ => return false,
    };
    let (Some(ip), entry) = parse(&n) else {
        return false;
    };
    match entry {
        Some(e) if !deleted => entries.insert(ip, e) != Some(e),
        _ => {
            // Only forget the entry this event is about: the same address may
            // be cached on another interface too.
            if entries
                .get(&ip)
                .is_some_and(|e| e.ifindex == n.header.ifindex)
            {
                entries.remove(&ip);
                true
            } else {
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn msg(
        ip: IpAddr,
        mac: Option<[u8; 6]>,
        state: NeighbourState,
        ifindex: u32,
    ) -> NeighbourMessage {
        let mut n = NeighbourMessage::default();
        n.header.family = family_of(ip);
        n.header.state = state;
        n.header.ifindex = ifindex;
        n.attributes.push(NeighbourAttribute::Destination(match ip {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
        if let Some(m) = mac {
            n.attributes
                .push(NeighbourAttribute::LinkLayerAddress(m.to_vec()));
        }
        n
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
    const B: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2));
    const M1: [u8; 6] = [2, 0, 0xc6, 0x12, 0, 2];
    const M2: [u8; 6] = [2, 0, 0xc6, 0x12, 0, 3];

    #[test]
    fn events_follow_states() {
        let mut t = HashMap::new();
        let new = RouteNetlinkMessage::NewNeighbour;
        assert!(!apply_event(
            &mut t,
            new(msg(A, None, NeighbourState::Incomplete, 2))
        ));
        assert!(apply_event(
            &mut t,
            new(msg(A, Some(M1), NeighbourState::Reachable, 2))
        ));
        // REACHABLE -> STALE with the same MAC is no change for a template.
        assert!(!apply_event(
            &mut t,
            new(msg(A, Some(M1), NeighbourState::Stale, 2))
        ));
        assert!(apply_event(
            &mut t,
            new(msg(A, Some(M2), NeighbourState::Delay, 2))
        ));
        assert_eq!(t.get(&A).map(|e| e.mac), Some(M2));
        // A delete on another interface leaves ours alone.
        assert!(!apply_event(
            &mut t,
            RouteNetlinkMessage::DelNeighbour(msg(A, Some(M2), NeighbourState::Stale, 3))
        ));
        assert!(apply_event(
            &mut t,
            new(msg(A, Some(M2), NeighbourState::Failed, 2))
        ));
        assert!(t.is_empty());
        assert!(apply_event(
            &mut t,
            new(msg(B, Some(M1), NeighbourState::Permanent, 4))
        ));
        assert!(apply_event(
            &mut t,
            RouteNetlinkMessage::DelNeighbour(msg(B, Some(M1), NeighbourState::Permanent, 4))
        ));
        assert!(t.is_empty());
    }

    #[test]
    fn noarp_and_short_addresses_are_not_usable() {
        assert_eq!(parse(&msg(A, Some(M1), NeighbourState::Noarp, 1)).1, None);
        let mut n = msg(A, None, NeighbourState::Reachable, 1);
        n.attributes
            .push(NeighbourAttribute::LinkLayerAddress(vec![1, 2, 3, 4]));
        assert_eq!(parse(&n).1, None);
    }

    #[test]
    fn route_answers() {
        let mut r = RouteMessage::default();
        r.header.kind = RouteType::Unicast;
        r.attributes.push(RouteAttribute::Oif(7));
        assert_eq!(
            next_hop_from(A, &r),
            Some(NextHop {
                addr: A,
                ifindex: 7,
                via_gateway: false
            })
        );
        let gw = Ipv4Addr::new(198, 18, 0, 1);
        r.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        assert_eq!(
            next_hop_from(A, &r),
            Some(NextHop {
                addr: IpAddr::V4(gw),
                ifindex: 7,
                via_gateway: true
            })
        );
        r.header.kind = RouteType::Local;
        assert_eq!(next_hop_from(A, &r), None);
    }

    #[test]
    fn table_opens_and_answers_in_this_namespace() {
        // Reading the neighbour table and a route lookup change nothing.
        let mut t = NeighbourTable::open().expect("open");
        assert!(t.fd() >= 0);
        let _ = t.process_events().expect("events");
        let lo = t
            .next_hop_for(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .expect("route get");
        assert_eq!(lo, None, "127.0.0.1 is local");
    }
}
