//! The batch pipeline: classify, check, look up, rewrite; one verdict per
//! packet.
//!
//! Invariants:
//! - No syscalls, no clock reads, no allocation, no locks: a batch in, a
//!   verdict per packet out, counters bumped. (The one allocation: a burst
//!   that meets tables with other networks than the last moves the
//!   per-network counters first, [`NetCounters::follow`].)
//! - A packet counts once, in its network's bucket: its port's network,
//!   or from the tunnel its VNI's once read, else no network's.
//! - No input can panic it: every header is read through a checked view and
//!   every rewrite goes through `Packet::prepend`/`strip`, which refuse
//!   rather than overrun.
//! - Every packet gets exactly one verdict, and every verdict that is not a
//!   forward is counted: drops by reason, replies, pass-through.
//!
//! Packets are rewritten in place: encapsulation prepends a per-peer template
//! into headroom and patches lengths, checksum and source port; decapsulation
//! strips; ICMP errors prepend their headers before the quoted original and
//! are then routed like any packet the router originates.
//!
//! Toward a peer, a packet must fit both the overlay MTU and what the
//! underlay NIC carries once encapsulated ([`Tables::encap_mtu`], one
//! compare); one that does not gets an ICMP error naming the limit that
//! bound (`too_big`, or `underlay_too_big` with the size that fits).
//!
//! A TCP or UDP super-packet ([`crate::offload`], `Packet::gso` set) takes
//! the same path as one segment: its headers are checked, routed and rewritten
//! once, the MTU checks apply to its largest segment, and every counter
//! counts its segments. It stays whole; the ports (or
//! [`crate::offload::segment_into`] for ports that cannot take it) cut it.

use crate::config::addr::is_bad_source_v4;
use crate::port::{Batch, Packet, BATCH_SIZE};
use crate::wire::{arp, checksum, ethernet, icmpv4, icmpv6, ipv4, ipv6, tcp, udp, vxlan};

use super::drops::{Counters, DropReason, NetCounters, NO_NET};
use super::tables::{
    Net, NextHop, PortRole, Tables, MAX_TEMPLATE, OUTER_V4_LEN, OUTER_V6_LEN, UPLINK,
};

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit on this port (delivered, encapsulated or transited).
    Forward(u16),
    /// Transmit on this port a reply the router made (ARP, NA, echo reply).
    Reply(u16),
    /// The packet was dropped for this reason and an ICMP error about it is
    /// transmitted on this port instead.
    Icmp(u16, DropReason),
    /// Dropped, counted under the reason.
    Drop(DropReason),
    /// Not ours (uplink traffic that is not our VXLAN): left to the kernel.
    Pass,
}

impl Verdict {
    /// The port a frame goes out on, if any.
    #[inline]
    pub fn tx_port(self) -> Option<u16> {
        match self {
            Verdict::Forward(p) | Verdict::Reply(p) | Verdict::Icmp(p, _) => Some(p),
            Verdict::Drop(_) | Verdict::Pass => None,
        }
    }
}

/// The hop limit routers put on packets they originate.
const ORIGIN_TTL: u8 = 64;
/// RFC 1812 section 4.3.2.3: an ICMPv4 error quotes as much of the original
/// as fits in 576 bytes.
const ICMP4_MAX_LEN: usize = 576;
/// RFC 4443 section 2.4 (c): an ICMPv6 error must not exceed the minimum
/// IPv6 MTU, 1280 bytes.
const ICMP6_MAX_LEN: usize = 1280;
/// UDP source ports for VXLAN: RFC 7348 section 5 recommends the dynamic
/// range 49152-65535, chosen from a hash of the inner flow.
const SRC_PORT_BASE: u16 = 49152;
/// ICMPv6 router solicitation (RFC 4861 section 4.1).
const TYPE_ROUTER_SOLICIT: u8 = 133;

enum Icmp {
    TimeExceeded,
    NetUnreachable,
    HostUnreachable,
    TooBig(u16),
}

/// One worker's pipeline: its counters and nothing shared, and the buffers
/// super-packets are cut into for ports that cannot take them whole.
#[derive(Debug)]
pub struct Pipeline {
    /// Per network: each packet counts in its network's bucket only.
    pub counters: NetCounters,
    /// The bucket each packet of the last batch counted in, for
    /// [`super::forward_burst`] to move a refused frame's count within it.
    pub(crate) bucket_of: [u32; BATCH_SIZE],
    pub(crate) scratch: Batch,
    icmp: IcmpBudget,
    /// The caller's clock (see [`Pipeline::set_clock`]).
    now_ns: u64,
}

/// ICMP and ICMPv6 errors a worker sends per second at most, and how many
/// it may send at once: Linux's `icmp_msgs_per_sec` and `icmp_msgs_burst`.
/// RFC 4443 section 2.4 (f) says ICMPv6 errors MUST be limited, RFC 1812
/// section 4.3.2.8 that ICMPv4 errors SHOULD be: tunnel traffic from any
/// peer could otherwise make the router send one error per packet.
pub const ICMP_ERRORS_PER_SEC: u64 = 1000;
pub const ICMP_ERROR_BURST: u64 = 50;
const NS_PER_TOKEN: u64 = 1_000_000_000 / ICMP_ERRORS_PER_SEC;

/// A token bucket on the caller's clock: no clock read in the pipeline.
#[derive(Debug, Clone)]
struct IcmpBudget {
    tokens: u64,
    /// The clock time the tokens were counted up to.
    at_ns: u64,
}

impl Default for IcmpBudget {
    fn default() -> Self {
        IcmpBudget {
            tokens: ICMP_ERROR_BURST,
            at_ns: 0,
        }
    }
}

impl IcmpBudget {
    /// Takes one token if there is one at `now_ns`. A clock that goes back
    /// earns nothing.
    fn take(&mut self, now_ns: u64) -> bool {
        let earned = now_ns.saturating_sub(self.at_ns) / NS_PER_TOKEN;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(ICMP_ERROR_BURST);
            self.at_ns = if self.tokens == ICMP_ERROR_BURST {
                now_ns
            } else {
                self.at_ns + earned * NS_PER_TOKEN
            };
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

// By hand: arrays past 32 elements have no derived Default.
impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            counters: NetCounters::default(),
            bucket_of: [NO_NET as u32; BATCH_SIZE],
            scratch: Batch::default(),
            icmp: IcmpBudget::default(),
            now_ns: 0,
        }
    }
}

impl Pipeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the time, in nanoseconds on any monotonic clock, that the next
    /// bursts are processed at: it paces the ICMP errors. The worker sets it
    /// once per burst; replay from the captures' timestamps.
    pub fn set_clock(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
    }

    /// Counts `n` frames that port `port` dropped for `reason` before the
    /// pipeline saw them (longer than a buffer), in the port's network's
    /// bucket (the unknown one for the uplink).
    pub fn count_port_drops(&mut self, t: &Tables, port: u16, reason: DropReason, n: u64) {
        if !self.counters.follows(&t.net_names) {
            self.counters.follow(&t.net_names);
        }
        let b = match t.ports.get(usize::from(port)) {
            Some(p) if matches!(p.role, PortRole::Tun | PortRole::Veth) => 1 + usize::from(p.net),
            _ => NO_NET,
        };
        self.counters.bucket(b).drop_n(reason, n);
    }

    /// Every counter summed over the networks (what one set of counters
    /// for every packet would hold). Off the per-packet path.
    pub fn totals(&self) -> Counters {
        self.counters.total()
    }

    /// Runs every packet of `batch`, received on `in_port`, through the
    /// pipeline, writing its verdict at the same index of `verdicts`.
    pub fn process(
        &mut self,
        t: &Tables,
        in_port: u16,
        batch: &mut Batch,
        verdicts: &mut [Verdict; BATCH_SIZE],
    ) {
        // The port's role and network are the same for the whole burst:
        // dispatch once. The uplink's packets find theirs by VNI.
        let (role, n) = match t.ports.get(in_port as usize) {
            Some(p) => (Some(p.role), t.nets.get(usize::from(p.net))),
            None => (None, None),
        };
        // The bucket a container port's packets count in: its network's.
        // The uplink's packets start in the unknown one until their VNI
        // names a network; a vacant index's stay there.
        let (n, port_bucket) = match (role, n) {
            (Some(PortRole::Tun | PortRole::Veth), Some(n)) => {
                (n, 1 + t.ports[in_port as usize].net as usize)
            }
            // A container port always names one of the tables' networks;
            // the uplink's and a vacant index's are not used.
            _ => (&t.nets[0], NO_NET),
        };
        // Buckets go by network index: tables with other networks move
        // them first (a pointer compare per burst, the move only then).
        if !self.counters.follows(&t.net_names) {
            self.counters.follow(&t.net_names);
        }
        let now = self.now_ns;
        if role == Some(PortRole::Uplink) {
            // Each packet finds its network, and its bucket, by VNI.
            let mut memo = SourceMemo::new();
            for ((pkt, v), bucket_of) in batch
                .pkts_mut()
                .iter_mut()
                .zip(verdicts.iter_mut())
                .zip(self.bucket_of.iter_mut())
            {
                // Taken before the stages: an ICMP error replaces a
                // super-packet with one small packet, but all its segments
                // were dropped.
                let segs = pkt.segments();
                let mut b = NO_NET;
                *v = from_uplink(t, pkt, &mut memo, &mut b);
                *bucket_of = b as u32;
                count(self.counters.bucket(b), &mut self.icmp, now, pkt, v, segs);
            }
            return;
        }
        // A container port's burst is one network's: one bucket for all.
        self.bucket_of.fill(port_bucket as u32);
        let c = self.counters.bucket(port_bucket);
        for (pkt, v) in batch.pkts_mut().iter_mut().zip(verdicts.iter_mut()) {
            let segs = pkt.segments();
            *v = match role {
                Some(PortRole::Tun) => from_container_ip(t, n, in_port, pkt),
                Some(PortRole::Veth) => from_veth(t, n, in_port, pkt),
                _ => Verdict::Drop(DropReason::PortDown),
            };
            count(c, &mut self.icmp, now, pkt, v, segs);
        }
    }
}

/// Counts verdict `v` of `pkt` (`segs` wire packets) in `c`; an ICMP error
/// the budget has no token for becomes a drop.
#[inline(always)]
fn count(
    c: &mut Counters,
    icmp: &mut IcmpBudget,
    now_ns: u64,
    pkt: &mut Packet,
    v: &mut Verdict,
    segs: u64,
) {
    match *v {
        Verdict::Forward(_) => c.forwarded += segs,
        Verdict::Reply(_) => {
            // A reply is one packet the router made, whatever the
            // annotation of what it answers said.
            pkt.gso = None;
            c.replied += 1;
        }
        Verdict::Icmp(_, r) => {
            c.drop_n(r, segs);
            if icmp.take(now_ns) {
                c.icmp_errors += 1;
            } else {
                *v = Verdict::Drop(r);
                c.icmp_rate_limited += 1;
            }
        }
        Verdict::Drop(r) => c.drop_n(r, segs),
        Verdict::Pass => c.pass_through += segs,
    }
}

// ---------------------------------------------------------------- container side

fn from_veth(t: &Tables, n: &Net, in_port: u16, pkt: &mut Packet) -> Verdict {
    let info = &t.ports[in_port as usize];
    let eth = match ethernet::Frame::new_checked(pkt.data()) {
        Ok(e) => e,
        // More than two VLAN tags: tagged all the same.
        Err(crate::wire::Error::Malformed(_)) => return Verdict::Drop(DropReason::EthUnsupported),
        Err(_) => return Verdict::Drop(DropReason::EthTruncated),
    };
    if eth.vlan_tags() != 0 {
        return Verdict::Drop(DropReason::EthUnsupported);
    }
    let dst = eth.dst();
    // Unicast to us, broadcast (ARP), or IPv6 multicast (33:33:..., ND).
    if dst != info.router_mac && dst != [0xff; 6] && !(dst[0] == 0x33 && dst[1] == 0x33) {
        return Verdict::Drop(DropReason::EthNotForUs);
    }
    match eth.ethertype() {
        ethernet::ETHERTYPE_ARP => arp_reply(t, in_port, pkt),
        ethernet::ETHERTYPE_IPV4 | ethernet::ETHERTYPE_IPV6 => {
            let version = if eth.ethertype() == ethernet::ETHERTYPE_IPV4 {
                4
            } else {
                6
            };
            let ip = &pkt.data()[ethernet::HEADER_LEN..];
            if ip.first().map(|b| b >> 4) != Some(version) {
                // The ethertype and the version must agree: the checks
                // below go by the ethertype, the pipeline by the version.
                return Verdict::Drop(DropReason::IpMalformed);
            }
            // A link-layer broadcast or multicast is never routed (RFC 1812
            // section 5.3.4, RFC 4443 section 2.4 e.3): of those, only IPv6
            // multicast (neighbour discovery) is for the router.
            if dst != info.router_mac && (version == 4 || ip.get(24) != Some(&0xff)) {
                return Verdict::Drop(DropReason::EthNotForUs);
            }
            pkt.strip(ethernet::HEADER_LEN);
            from_container_ip(t, n, in_port, pkt)
        }
        _ => Verdict::Drop(DropReason::EthUnsupported),
    }
}

/// Proxy ARP, as Calico does: answer for any address but the container's
/// own, so the container can use any prefix length and still send every
/// frame to the router. Only requests whose sender is one of the port's
/// addresses are answered, and nothing is learned from them.
fn arp_reply(t: &Tables, in_port: u16, pkt: &mut Packet) -> Verdict {
    let info = &t.ports[in_port as usize];
    let router_mac = info.router_mac;
    let frame_src = ethernet::Frame::new_unchecked(pkt.data()).src();
    let data = &mut pkt.data_mut()[ethernet::HEADER_LEN..];
    let Ok(mut a) = arp::Packet::new_checked(data) else {
        return Verdict::Drop(DropReason::ArpMalformed);
    };
    if a.operation() != arp::OP_REQUEST {
        return Verdict::Drop(DropReason::ArpNotForUs);
    }
    let sender = u32::from(a.sender_ip());
    let target = u32::from(a.target_ip());
    if sender == 0 {
        // An ARP probe (RFC 5227): the container checks its own address.
        return Verdict::Drop(DropReason::ArpNotForUs);
    }
    if !info.allows_v4(sender) {
        return Verdict::Drop(DropReason::Spoofed);
    }
    if target == sender || info.allows_v4(target) {
        return Verdict::Drop(DropReason::ArpNotForUs);
    }
    let requester_mac = a.sender_mac();
    // The answer goes to the requester's MAC: it must name one station.
    if !ethernet::is_unicast(requester_mac) || !ethernet::is_unicast(frame_src) {
        return Verdict::Drop(DropReason::NeighBadMac);
    }
    a.make_reply_in_place(router_mac);
    let d = pkt.data_mut();
    d[0..6].copy_from_slice(&requester_mac);
    d[6..12].copy_from_slice(&router_mac);
    Verdict::Reply(in_port)
}

fn from_container_ip(t: &Tables, n: &Net, in_port: u16, pkt: &mut Packet) -> Verdict {
    match pkt.data().first().map(|b| b >> 4) {
        Some(4) => container_v4(t, n, in_port, pkt),
        Some(6) => container_v6(t, n, in_port, pkt),
        _ => Verdict::Drop(DropReason::IpMalformed),
    }
}

fn container_v4(t: &Tables, n: &Net, in_port: u16, pkt: &mut Packet) -> Verdict {
    let info = &t.ports[in_port as usize];
    let (src, total) = {
        let Ok(ip) = ipv4::Packet::new_checked(pkt.data()) else {
            return Verdict::Drop(DropReason::IpMalformed);
        };
        if !ip.verify_checksum() {
            return Verdict::Drop(DropReason::IpBadChecksum);
        }
        (ip.src_u32(), ip.total_len() as usize)
    };
    // Ethernet padding after the IP datagram is not part of it.
    pkt.truncate(total);
    if !info.allows_v4(src) {
        return Verdict::Drop(DropReason::Spoofed);
    }
    route_v4(t, n, pkt)
}

fn container_v6(t: &Tables, n: &Net, in_port: u16, pkt: &mut Packet) -> Verdict {
    let info = &t.ports[in_port as usize];
    let (src, total, nd) = {
        let Ok(ip) = ipv6::Packet::new_checked(pkt.data()) else {
            return Verdict::Drop(DropReason::IpMalformed);
        };
        let nd = ip.next_header() == ipv6::NH_ICMPV6
            && matches!(
                ip.payload().first(),
                Some(&icmpv6::TYPE_NEIGHBOR_SOLICIT)
                    | Some(&TYPE_ROUTER_SOLICIT)
                    | Some(&icmpv6::TYPE_NEIGHBOR_ADVERT)
            );
        (
            ip.src_u128(),
            ipv6::HEADER_LEN + ip.payload_len() as usize,
            nd,
        )
    };
    pkt.truncate(total);
    if nd {
        return nd_reply(t, n, in_port, pkt);
    }
    let dst = ipv6::Packet::new_unchecked(pkt.data()).dst_u128();
    if (dst >> 120) == 0xff || (dst >> 118) == 0x3fa {
        // MLD reports, router solicitations and other link traffic, often
        // from link-local or unspecified sources: not spoofing, not routed.
        return Verdict::Drop(DropReason::ControlPlane);
    }
    if !info.allows_v6(src) {
        return Verdict::Drop(DropReason::Spoofed);
    }
    route_v6(t, n, pkt)
}

/// Answers a neighbour solicitation from a veth container for any target
/// but the container's own addresses (the IPv6 counterpart of proxy ARP).
/// RFC 4861 section 7.1.1: a valid NS has hop limit 255 and code 0.
fn nd_reply(t: &Tables, n: &Net, in_port: u16, pkt: &mut Packet) -> Verdict {
    let info = &t.ports[in_port as usize];
    if info.role != PortRole::Veth {
        return Verdict::Drop(DropReason::ControlPlane);
    }
    let router_mac = info.router_mac;
    let (src, target) = {
        let Ok(ip) = ipv6::Packet::new_checked(pkt.data()) else {
            return Verdict::Drop(DropReason::IpMalformed);
        };
        let Ok(ns) = icmpv6::Packet::new_checked(ip.payload()) else {
            return Verdict::Drop(DropReason::NdMalformed);
        };
        if ns.msg_type() != icmpv6::TYPE_NEIGHBOR_SOLICIT {
            // Router solicitations and unsolicited adverts: nothing to do.
            return Verdict::Drop(DropReason::ControlPlane);
        }
        if ip.hop_limit() != 255 || ns.code() != 0 || !ns.verify_checksum(ip.src(), ip.dst()) {
            return Verdict::Drop(DropReason::NdMalformed);
        }
        (ip.src_u128(), u128::from(ns.target_addr()))
    };
    // RFC 4861 section 7.1.1: a solicitation for a multicast target is
    // discarded; nor is the unspecified or the loopback address anyone's
    // (the advert would come from it).
    if (target >> 120) == 0xff || target <= 1 {
        return Verdict::Drop(DropReason::NdMalformed);
    }
    // Duplicate address detection (unspecified source) and solicitations for
    // the container's own addresses are not ours to answer.
    if src == 0 || info.allows_v6(target) {
        return Verdict::Drop(DropReason::ArpNotForUs);
    }
    if !info.allows_v6(src) && (src >> 118) != 0x3fa {
        // Neither one of the port's addresses nor link-local (fe80::/10).
        return Verdict::Drop(DropReason::Spoofed);
    }
    // Rebuild in place: IPv6 (40) + NA (24) + target link-layer option (8).
    let na_len = icmpv6::ND_HEADER_LEN + 8;
    let total = ipv6::HEADER_LEN + na_len;
    let (buf, head, _) = pkt.raw_mut();
    // The Ethernet header we stripped sits just before `head`.
    if head < ethernet::HEADER_LEN {
        return Verdict::Drop(DropReason::NoHeadroom);
    }
    // Answer to the solicitation's frame source (its Ethernet header was
    // stripped, not erased): the source link-layer option, when present,
    // must carry the same address (RFC 4861 section 7.2.3 lets us use it).
    let mut dst_mac = [0u8; 6];
    dst_mac.copy_from_slice(&buf[head - 8..head - 2]);
    if !ethernet::is_unicast(dst_mac) {
        return Verdict::Drop(DropReason::NeighBadMac);
    }
    let src_addr = std::net::Ipv6Addr::from(target);
    let dst_addr = std::net::Ipv6Addr::from(src);
    let ip = ipv6::Repr {
        src: src_addr,
        dst: dst_addr,
        next_header: ipv6::NH_ICMPV6,
        hop_limit: 255,
        payload_len: na_len as u16,
    };
    let region = &mut buf[head..head + total];
    ip.emit(&mut region[..ipv6::HEADER_LEN]);
    // RFC 4861 section 7.2.4: solicited, from a router; Override only for
    // our own addresses: section 7.2.8 says a proxy SHOULD clear it.
    let own = matches!(n.fib.lookup_v6(target), Some(NextHop::Router));
    let flags = icmpv6::NA_FLAG_ROUTER
        | icmpv6::NA_FLAG_SOLICITED
        | if own { icmpv6::NA_FLAG_OVERRIDE } else { 0 };
    icmpv6::emit_neighbor_advert(
        &mut region[ipv6::HEADER_LEN..],
        flags,
        src_addr,
        Some(router_mac),
        src_addr,
        dst_addr,
    );
    let eth_head = head - ethernet::HEADER_LEN;
    ethernet::emit(
        &mut buf[eth_head..head],
        dst_mac,
        router_mac,
        ethernet::ETHERTYPE_IPV6,
    );
    pkt.set_window(eth_head, ethernet::HEADER_LEN + total);
    Verdict::Reply(in_port)
}

// ---------------------------------------------------------------- uplink side

/// `bucket` becomes the counter bucket of the packet's network once its
/// VNI names one ([`NetCounters`]); until then it stays as given.
fn from_uplink(t: &Tables, pkt: &mut Packet, memo: &mut SourceMemo, bucket: &mut usize) -> Verdict {
    let (ethertype, l3) = {
        let eth = match ethernet::Frame::new_checked(pkt.data()) {
            Ok(e) => e,
            // More than two VLAN tags: the kernel's, as every tagged frame.
            Err(crate::wire::Error::Malformed(_)) => return Verdict::Pass,
            Err(_) => return Verdict::Drop(DropReason::EthTruncated),
        };
        // Tagged frames belong to the kernel's VLAN devices, not to us.
        if eth.vlan_tags() != 0 {
            return Verdict::Pass;
        }
        (eth.ethertype(), eth.payload_offset())
    };
    let outer = match ethertype {
        ethernet::ETHERTYPE_IPV4 => outer_v4(t, &pkt.data()[l3..]),
        ethernet::ETHERTYPE_IPV6 => outer_v6(t, &pkt.data()[l3..]),
        _ => return Verdict::Pass,
    };
    let (vx_off, peer) = match outer {
        Ok(o) => {
            // The inner frame ends where the outer datagram does: bytes after
            // it (Ethernet padding, a trailer) are not tunnel payload.
            pkt.truncate(l3 + o.end);
            (l3 + o.vxlan, o.peer)
        }
        Err(v) => return v,
    };
    // VXLAN header and inner Ethernet; the VNI selects the network.
    let (inner_ethertype, net, n) = {
        let d = &pkt.data()[vx_off..];
        let Ok(vx) = vxlan::Packet::new_checked(d) else {
            return Verdict::Drop(DropReason::VxlanTruncated);
        };
        // RFC 7348 section 5: "I flag MUST be set to 1 for a valid VXLAN
        // Network ID (VNI). The other 7 bits (designated "R") are reserved
        // fields and MUST be set to zero on transmission and ignored on
        // receipt."
        if !vx.has_vni_flag() {
            return Verdict::Drop(DropReason::VxlanBadFlags);
        }
        let Some((i, n)) = t.vni_net(vx.vni()) else {
            return Verdict::Drop(DropReason::VxlanUnknownVni);
        };
        *bucket = 1 + usize::from(i);
        // Only the untagged header matters: a tagged inner frame has a VLAN
        // TPID where the ethertype is and drops below as inner_not_ip.
        let Some(inner) = d.get(vxlan::HEADER_LEN..vxlan::HEADER_LEN + ethernet::HEADER_LEN) else {
            return Verdict::Drop(DropReason::VxlanTruncated);
        };
        let inner = ethernet::Frame::new_unchecked(inner);
        if inner.dst() != t.vtep_mac {
            return Verdict::Drop(DropReason::InnerNotForUs);
        }
        (inner.outer_ethertype(), i, n)
    };
    pkt.strip(vx_off + vxlan::HEADER_LEN + ethernet::HEADER_LEN);
    match (inner_ethertype, pkt.data().first().map(|b| b >> 4)) {
        (ethernet::ETHERTYPE_IPV4, Some(4)) => tunnel_v4(t, n, net, pkt, peer, &mut memo.v4),
        (ethernet::ETHERTYPE_IPV6, Some(6)) => tunnel_v6(t, n, net, pkt, peer, &mut memo.v6),
        (ethernet::ETHERTYPE_IPV4 | ethernet::ETHERTYPE_IPV6, _) => {
            Verdict::Drop(DropReason::IpMalformed)
        }
        _ => Verdict::Drop(DropReason::InnerNotIp),
    }
}

/// A checked outer header of VXLAN for us.
struct Outer {
    /// Offset of the VXLAN header from l3.
    vxlan: usize,
    /// End of the outer datagram from l3.
    end: usize,
    /// The sending peer, an index in `Tables::peers`.
    peer: u16,
}

/// Checks an outer IPv4/UDP header: the datagram is VXLAN for us, from a
/// peer that begins one of our routes, else the verdict.
fn outer_v4(t: &Tables, d: &[u8]) -> Result<Outer, Verdict> {
    let Ok(ip) = ipv4::Packet::new_checked(d) else {
        return Err(Verdict::Drop(DropReason::IpMalformed));
    };
    let ours = matches!(t.underlay, std::net::IpAddr::V4(a) if u32::from(a) == ip.dst_u32());
    if !ours || ip.protocol() != ipv4::PROTO_UDP {
        return Err(Verdict::Pass);
    }
    if ip.frag_offset() != 0 {
        // A later fragment carries no UDP header: the kernel reassembles
        // what is its own. A VXLAN one is dropped with its first fragment.
        return Err(Verdict::Pass);
    }
    let payload = ip.payload();
    let Ok(u) = udp::Packet::new_checked(payload) else {
        return Err(Verdict::Drop(DropReason::UdpMalformed));
    };
    if u.dst_port() != t.udp_port {
        return Err(Verdict::Pass);
    }
    if ip.more_frags() {
        return Err(Verdict::Drop(DropReason::OuterFragment));
    }
    if !ip.verify_checksum() {
        return Err(Verdict::Drop(DropReason::IpBadChecksum));
    }
    if u.len() as usize != payload.len() {
        return Err(Verdict::Drop(DropReason::UdpMalformed));
    }
    // RFC 7348 section 5: the UDP checksum "SHOULD be transmitted as zero.
    // When a packet is received with a UDP checksum of zero, it MUST be
    // accepted for decapsulation." A non-zero one is verified.
    if u.checksum() != 0 && !u.verify_checksum_v4(ip.src(), ip.dst()) {
        return Err(Verdict::Drop(DropReason::UdpBadChecksum));
    }
    let src = ip.src_u32();
    let peer = match t.peer_index_v4(src) {
        Some(p) => p,
        None if t.underlay == std::net::IpAddr::V4(src.into()) => {
            return Err(Verdict::Drop(DropReason::VxlanFromSelf))
        }
        None if t.is_known_peer_v4(src) => return Err(Verdict::Drop(DropReason::PeerNotNeighbour)),
        None => return Err(Verdict::Drop(DropReason::UnknownPeer)),
    };
    Ok(Outer {
        vxlan: ip.header_len() + udp::HEADER_LEN,
        end: ip.total_len() as usize,
        peer,
    })
}

fn outer_v6(t: &Tables, d: &[u8]) -> Result<Outer, Verdict> {
    let Ok(ip) = ipv6::Packet::new_checked(d) else {
        return Err(Verdict::Drop(DropReason::IpMalformed));
    };
    let ours = matches!(t.underlay, std::net::IpAddr::V6(a) if u128::from(a) == ip.dst_u128());
    if !ours {
        return Err(Verdict::Pass);
    }
    let Ok((proto, off, frag)) = ip.upper_layer() else {
        return Err(Verdict::Drop(DropReason::IpMalformed));
    };
    if proto != ipv4::PROTO_UDP {
        return Err(Verdict::Pass);
    }
    let end = ipv6::HEADER_LEN + ip.payload_len() as usize;
    let Some(seg) = d.get(off..end) else {
        return Err(Verdict::Drop(DropReason::IpMalformed));
    };
    if let Some(f) = frag {
        if f.offset != 0 {
            return Err(Verdict::Pass);
        }
    }
    let Ok(u) = udp::Packet::new_checked(seg) else {
        return Err(Verdict::Drop(DropReason::UdpMalformed));
    };
    if u.dst_port() != t.udp_port {
        return Err(Verdict::Pass);
    }
    if frag.is_some() {
        return Err(Verdict::Drop(DropReason::OuterFragment));
    }
    if u.len() as usize != seg.len() {
        return Err(Verdict::Drop(DropReason::UdpMalformed));
    }
    // RFC 6935/6936 allow a zero UDP checksum for tunnels over IPv6 (Linux
    // does with udp6zerocsumrx); a non-zero one is verified.
    if u.checksum() != 0 && !u.verify_checksum_v6(ip.src(), ip.dst()) {
        return Err(Verdict::Drop(DropReason::UdpBadChecksum));
    }
    let src = ip.src_u128();
    let peer = match t.peer_index_v6(src) {
        Some(p) => p,
        None if t.underlay == std::net::IpAddr::V6(src.into()) => {
            return Err(Verdict::Drop(DropReason::VxlanFromSelf))
        }
        None if t.is_known_peer_v6(src) => return Err(Verdict::Drop(DropReason::PeerNotNeighbour)),
        None => return Err(Verdict::Drop(DropReason::UnknownPeer)),
    };
    Ok(Outer {
        vxlan: off + udp::HEADER_LEN,
        end,
        peer,
    })
}

/// The last answer of the source check ([`tunnel_source`]) in a burst from
/// the tunnel, for one address family. The packets of a burst come in runs
/// from one sender (a flow, a host behind one peer), and the answer depends
/// only on the tables (one snapshot per burst), the network (one per VNI),
/// the peer and the source: a run looks its source up once. It lives for
/// one [`Pipeline::process`] call, so no answer outlives its tables.
#[derive(Clone, Copy)]
struct Checked<A> {
    /// The network's index in the tables, `NO_NET_INDEX` until the first
    /// answer. The index, not the VNI, so that the check reads nothing of
    /// the network's record but its FIB.
    net: u16,
    peer: u16,
    src: A,
    verdict: Result<(), DropReason>,
}

/// A network index no tables have (they hold fewer than 2^16 networks).
const NO_NET_INDEX: u16 = u16::MAX;

impl<A: Copy + Default + PartialEq> Checked<A> {
    fn new() -> Self {
        Checked {
            net: NO_NET_INDEX,
            peer: 0,
            src: A::default(),
            verdict: Ok(()),
        }
    }

    /// The answer for (`net`, `peer`, `src`): the one kept when it is the
    /// same question, else `check`'s, kept.
    #[inline(always)]
    fn answer(
        &mut self,
        net: u16,
        peer: u16,
        src: A,
        check: impl FnOnce() -> Result<(), DropReason>,
    ) -> Result<(), DropReason> {
        if self.src == src && self.peer == peer && self.net == net {
            return self.verdict;
        }
        let verdict = check();
        *self = Checked {
            net,
            peer,
            src,
            verdict,
        };
        verdict
    }
}

/// [`Checked`] for both families.
struct SourceMemo {
    v4: Checked<u32>,
    v6: Checked<u128>,
}

impl SourceMemo {
    fn new() -> Self {
        SourceMemo {
            v4: Checked::new(),
            v6: Checked::new(),
        }
    }
}

/// The source check of a decapsulated packet whose source looks up to
/// `nh`, sent by `peer`. Every container source was checked where it
/// entered the overlay; from the tunnel, only another host's prefixes are
/// a source (not ours, not outside the topology), and only through a peer
/// our route toward that source begins with.
#[inline(always)]
fn tunnel_source(t: &Tables, nh: Option<NextHop>, peer: u16) -> Result<(), DropReason> {
    match nh {
        Some(NextHop::Remote { first, count }) if t.feasible_source(first, count, peer) => Ok(()),
        Some(NextHop::Remote { .. }) => Err(DropReason::InnerSourceWrongPeer),
        _ => Err(DropReason::InnerSpoofed),
    }
}

/// `net` is `n`'s index in the tables.
fn tunnel_v4(
    t: &Tables,
    n: &Net,
    net: u16,
    pkt: &mut Packet,
    peer: u16,
    memo: &mut Checked<u32>,
) -> Verdict {
    let total = {
        let Ok(ip) = ipv4::Packet::new_checked(pkt.data()) else {
            return Verdict::Drop(DropReason::IpMalformed);
        };
        if !ip.verify_checksum() {
            return Verdict::Drop(DropReason::IpBadChecksum);
        }
        // A source no host may use at all is left to the routing stage,
        // which names it `ip_bad_source`.
        let src = ip.src_u32();
        if !is_bad_source_v4(src) {
            let checked = memo.answer(net, peer, src, || {
                tunnel_source(t, n.fib.lookup_v4(src), peer)
            });
            if let Err(r) = checked {
                return Verdict::Drop(r);
            }
        }
        ip.total_len() as usize
    };
    pkt.truncate(total);
    route_v4(t, n, pkt)
}

fn tunnel_v6(
    t: &Tables,
    n: &Net,
    net: u16,
    pkt: &mut Packet,
    peer: u16,
    memo: &mut Checked<u128>,
) -> Verdict {
    let total = {
        let Ok(ip) = ipv6::Packet::new_checked(pkt.data()) else {
            return Verdict::Drop(DropReason::IpMalformed);
        };
        let src = ip.src_u128();
        let checked = memo.answer(net, peer, src, || {
            tunnel_source(t, n.fib.lookup_v6(src), peer)
        });
        if let Err(r) = checked {
            return Verdict::Drop(r);
        }
        ipv6::HEADER_LEN + ip.payload_len() as usize
    };
    pkt.truncate(total);
    route_v6(t, n, pkt)
}

// ---------------------------------------------------------------- routing

/// Routes an IPv4 packet at offset 0 of `pkt`, from a container or from the
/// tunnel. Decrements the TTL.
fn route_v4(t: &Tables, n: &Net, pkt: &mut Packet) -> Verdict {
    let (src, dst, ttl, len, df, is_echo_req) = {
        let ip = ipv4::Packet::new_unchecked(pkt.data());
        // Only a whole datagram is answered: a fragment of an echo request
        // is part of a message we have not seen whole.
        let echo = ip.protocol() == ipv4::PROTO_ICMP
            && !ip.is_fragment()
            && ip.payload().first() == Some(&icmpv4::TYPE_ECHO_REQUEST);
        (
            ip.src_u32(),
            ip.dst_u32(),
            ip.ttl(),
            ip.total_len(),
            ip.dont_frag(),
            echo,
        )
    };
    // A super-packet must fit the MTU segment by segment.
    let len = match pkt.gso {
        None => len,
        Some(g) => match largest_segment(
            pkt.data(),
            ipv4::Packet::new_unchecked(pkt.data()).header_len(),
            ipv4::Packet::new_unchecked(pkt.data()).protocol(),
            g,
        ) {
            Some(l) => l,
            None => return Verdict::Drop(DropReason::IpMalformed),
        },
    };
    if is_bad_source_v4(src) {
        return Verdict::Drop(DropReason::IpBadSource);
    }
    if dst >> 28 >= 0xe {
        // Multicast, broadcast and reserved (IGMP, DHCP): for the link only.
        return Verdict::Drop(DropReason::ControlPlane);
    }
    let Some(nh) = n.fib.lookup_v4(dst) else {
        return icmp_v4(t, n, pkt, Icmp::NetUnreachable, DropReason::NoRoute);
    };
    match nh {
        NextHop::Router => {
            if is_echo_req {
                echo_reply_v4(t, n, pkt)
            } else {
                Verdict::Drop(DropReason::ControlPlane)
            }
        }
        // Before the TTL: no time exceeded about a directed broadcast either.
        NextHop::Broadcast => Verdict::Drop(DropReason::DirectedBroadcast),
        _ if ttl <= 1 => icmp_v4(t, n, pkt, Icmp::TimeExceeded, DropReason::TtlExpired),
        NextHop::Unassigned => icmp_v4(t, n, pkt, Icmp::HostUnreachable, DropReason::NoRoute),
        NextHop::Local { port } => {
            let mtu = t.ports[port as usize].mtu;
            if len > mtu {
                return too_big_v4(t, n, pkt, df, mtu);
            }
            ipv4::Packet::new_unchecked(pkt.data_mut()).dec_ttl_incremental();
            deliver(t, port, pkt, ethernet::ETHERTYPE_IPV4)
        }
        NextHop::Remote { first, count } => {
            // One compare for the overlay MTU and the underlay's.
            if len > n.encap_mtu {
                return too_big_remote_v4(t, n, pkt, df);
            }
            let hash = flow_hash_v4(pkt.data());
            ipv4::Packet::new_unchecked(pkt.data_mut()).dec_ttl_incremental();
            encap(t, n, pkt, first, count, hash, ethernet::ETHERTYPE_IPV4)
        }
    }
}

/// A packet toward a peer over [`Tables::encap_mtu`]: the smaller of the
/// two limits names the MTU and the reason. Over the overlay MTU, as over
/// any port's; over what the underlay carries, an ICMP error whatever DF
/// says: the sender's link (the overlay MTU) took the packet, so only an
/// error teaches it the smaller size, and a sender that clears DF learns it
/// too and fragments itself (Linux records the MTU for every socket below
/// `IP_PMTUDISC_PROBE`). The router does not fragment in the tunnel: one
/// packet in, one verdict out.
#[cold]
fn too_big_remote_v4(t: &Tables, n: &Net, pkt: &mut Packet, df: bool) -> Verdict {
    if n.overlay_mtu <= t.underlay_fit {
        return too_big_v4(t, n, pkt, df, n.overlay_mtu);
    }
    icmp_v4(
        t,
        n,
        pkt,
        Icmp::TooBig(t.underlay_fit),
        DropReason::UnderlayTooBig,
    )
}

fn too_big_v4(t: &Tables, n: &Net, pkt: &mut Packet, df: bool, mtu: u16) -> Verdict {
    if df {
        icmp_v4(t, n, pkt, Icmp::TooBig(mtu), DropReason::TooBig)
    } else {
        // Fragmenting the inner packet is legal for IPv4 without DF, but a
        // batch stage that turns one packet into many is not worth its cost
        // for traffic every modern stack sends with DF.
        Verdict::Drop(DropReason::TooBigNoDf)
    }
}

fn route_v6(t: &Tables, n: &Net, pkt: &mut Packet) -> Verdict {
    let (src, dst, hop, len, is_echo_req) = {
        let ip = ipv6::Packet::new_unchecked(pkt.data());
        let echo = ip.next_header() == ipv6::NH_ICMPV6
            && ip.payload().first() == Some(&icmpv6::TYPE_ECHO_REQUEST);
        (
            ip.src_u128(),
            ip.dst_u128(),
            ip.hop_limit(),
            pkt.len(),
            echo,
        )
    };
    let len = match pkt.gso {
        None => len,
        Some(g) => match largest_segment(
            pkt.data(),
            ipv6::HEADER_LEN,
            ipv6::Packet::new_unchecked(pkt.data()).next_header(),
            g,
        ) {
            Some(l) => usize::from(l),
            None => return Verdict::Drop(DropReason::IpMalformed),
        },
    };
    // Unspecified, loopback, multicast (ff00::/8) and link-local (fe80::/10)
    // sources are never forwarded (RFC 4291 section 2.5.6).
    if src == 0 || src == 1 || (src >> 120) == 0xff || (src >> 118) == 0x3fa {
        return Verdict::Drop(DropReason::IpBadSource);
    }
    if (dst >> 120) == 0xff || (dst >> 118) == 0x3fa {
        // Multicast and link-local destinations (MLD, router solicitations)
        // are for the link, not for routing.
        return Verdict::Drop(DropReason::ControlPlane);
    }
    let Some(nh) = n.fib.lookup_v6(dst) else {
        return icmp_v6(t, n, pkt, Icmp::NetUnreachable, DropReason::NoRoute);
    };
    match nh {
        NextHop::Router => {
            if is_echo_req {
                echo_reply_v6(t, n, pkt)
            } else {
                Verdict::Drop(DropReason::ControlPlane)
            }
        }
        // IPv4 only: never an IPv6 entry.
        NextHop::Broadcast => Verdict::Drop(DropReason::DirectedBroadcast),
        _ if hop <= 1 => icmp_v6(t, n, pkt, Icmp::TimeExceeded, DropReason::TtlExpired),
        NextHop::Unassigned => icmp_v6(t, n, pkt, Icmp::HostUnreachable, DropReason::NoRoute),
        NextHop::Local { port } => {
            let mtu = t.ports[port as usize].mtu;
            if len > mtu as usize {
                return icmp_v6(t, n, pkt, Icmp::TooBig(mtu), DropReason::TooBig);
            }
            dec_hop_limit(pkt);
            deliver(t, port, pkt, ethernet::ETHERTYPE_IPV6)
        }
        NextHop::Remote { first, count } => {
            if len > n.encap_mtu as usize {
                return too_big_remote_v6(t, n, pkt);
            }
            let hash = flow_hash_v6(pkt.data());
            dec_hop_limit(pkt);
            encap(t, n, pkt, first, count, hash, ethernet::ETHERTYPE_IPV6)
        }
    }
}

/// [`too_big_remote_v4`] for IPv6, where every packet is DF. Below 1280
/// bytes (an underlay MTU under 1350 over IPv6) the error still names the
/// size that fits: RFC 8201 section 4 has hosts keep 1280 then, and the
/// drops are counted here either way.
#[cold]
fn too_big_remote_v6(t: &Tables, n: &Net, pkt: &mut Packet) -> Verdict {
    let (mtu, reason) = if n.overlay_mtu <= t.underlay_fit {
        (n.overlay_mtu, DropReason::TooBig)
    } else {
        (t.underlay_fit, DropReason::UnderlayTooBig)
    };
    icmp_v6(t, n, pkt, Icmp::TooBig(mtu), reason)
}

/// The IP length of a super-packet's largest segment (its first): headers
/// up to the end of the transport's (`proto`, TCP or UDP), plus one segment
/// of payload. `None` when that header does not fit or the transport is
/// another (the ports that make super-packets check it, so this is defence,
/// not a path).
#[inline]
fn largest_segment(d: &[u8], l4: usize, proto: u8, g: crate::offload::Gso) -> Option<u16> {
    let thl = match proto {
        // Only the data offset is read (byte 12): no more of the header is
        // needed to be there.
        ipv4::PROTO_TCP => {
            d.get(l4 + tcp::fields::OFF_RES)?;
            tcp::Packet::new_unchecked(&d[l4..]).header_len()
        }
        ipv4::PROTO_UDP => udp::HEADER_LEN,
        _ => return None,
    };
    let hdr = l4 + thl;
    let payload = d.len().checked_sub(hdr)?;
    u16::try_from(hdr + payload.min(usize::from(g.size))).ok()
}

#[inline]
fn dec_hop_limit(pkt: &mut Packet) {
    let mut ip = ipv6::Packet::new_unchecked(pkt.data_mut());
    let h = ip.hop_limit();
    ip.set_hop_limit(h - 1);
}

/// Hands an IP packet to a container port: as is on TUN, behind an Ethernet
/// header (container MAC, router MAC) on veth.
#[inline]
fn deliver(t: &Tables, port: u16, pkt: &mut Packet, ethertype: u16) -> Verdict {
    let info = &t.ports[port as usize];
    if info.role == PortRole::Veth {
        // Without a configured MAC, broadcast: the kernel accepts it for a
        // unicast IP destination, and we learn nothing we were not told.
        let dst = info.container_mac.unwrap_or([0xff; 6]);
        let Some(d) = pkt.prepend(ethernet::HEADER_LEN) else {
            return Verdict::Drop(DropReason::NoHeadroom);
        };
        ethernet::emit(d, dst, info.router_mac, ethertype);
    }
    Verdict::Forward(port)
}

/// Prepends the chosen peer's template and patches what differs per packet.
#[inline]
fn encap(
    t: &Tables,
    n: &Net,
    pkt: &mut Packet,
    first: u32,
    count: u32,
    hash: u32,
    ethertype: u16,
) -> Verdict {
    let pick = if count == 1 {
        0
    } else {
        (hash % count) as usize
    };
    let Some(&peer_idx) = t.ecmp.get(first as usize + pick) else {
        return Verdict::Drop(DropReason::NoRoute);
    };
    let peer = &t.peers[peer_idx as usize];
    if !peer.resolved {
        return Verdict::Drop(DropReason::NeighbourUnresolved);
    }
    let tl = peer.template_len;
    let inner_len = pkt.len();
    if inner_len > crate::offload::MAX_SUPER_L3 {
        // Only a super-packet can be this long, and the ports that make them
        // keep them shorter: the outer lengths would not fit 16 bits.
        return Verdict::Drop(DropReason::FrameTooLong);
    }
    let whole = pkt.gso.is_none();
    let Some(d) = pkt.prepend(tl) else {
        return Verdict::Drop(DropReason::NoHeadroom);
    };
    // Constant-length copies compile to a few vector moves; a
    // variable-length one is a call into memmove.
    if tl == MAX_TEMPLATE {
        d[..MAX_TEMPLATE].copy_from_slice(&peer.template);
    } else {
        const V4: usize = OUTER_V4_LEN + ethernet::HEADER_LEN;
        d[..V4].copy_from_slice(&peer.template[..V4]);
    }
    d[tl - 2..tl].copy_from_slice(&ethertype.to_be_bytes());
    // The template is the peer's, shared by every network: the VNI is the
    // packet's network's (24 bits, then the reserved byte).
    let vni_off = tl - ethernet::HEADER_LEN - vxlan::HEADER_LEN + 4;
    d[vni_off..vni_off + 4].copy_from_slice(&(n.vni << 8).to_be_bytes());
    let sport = SRC_PORT_BASE | (hash as u16 & 0x3fff);
    if !peer.is_v6() {
        // IPv4 total length, header checksum from the template's partial sum.
        let ip_off = ethernet::HEADER_LEN;
        let ip_len =
            (inner_len + OUTER_V4_LEN + ethernet::HEADER_LEN - ethernet::HEADER_LEN) as u16;
        d[ip_off + 2..ip_off + 4].copy_from_slice(&ip_len.to_be_bytes());
        let csum = !checksum::fold(peer.partial_sum + ip_len as u32);
        d[ip_off + 10..ip_off + 12].copy_from_slice(&csum.to_be_bytes());
        let udp_off = ip_off + ipv4::MIN_HEADER_LEN;
        let udp_len = ip_len - ipv4::MIN_HEADER_LEN as u16;
        d[udp_off..udp_off + 2].copy_from_slice(&sport.to_be_bytes());
        d[udp_off + 4..udp_off + 6].copy_from_slice(&udp_len.to_be_bytes());
        // UDP checksum stays zero over IPv4 (RFC 7348 section 5).
    } else {
        let ip_off = ethernet::HEADER_LEN;
        let udp_off = ip_off + ipv6::HEADER_LEN;
        let udp_len = (inner_len + OUTER_V6_LEN + ethernet::HEADER_LEN - udp_off) as u16;
        d[ip_off + 4..ip_off + 6].copy_from_slice(&udp_len.to_be_bytes());
        d[udp_off..udp_off + 2].copy_from_slice(&sport.to_be_bytes());
        d[udp_off + 4..udp_off + 6].copy_from_slice(&udp_len.to_be_bytes());
        // Over IPv6 the checksum covers the whole datagram (RFC 8200
        // section 8.1); the template holds the pseudo-header's sum. A
        // super-packet's is computed per segment by whoever cuts it.
        if whole {
            let sum = peer.partial_sum + udp_len as u32 + checksum::sum(&d[udp_off..]);
            let mut csum = !checksum::fold(sum);
            if csum == 0 {
                csum = 0xffff;
            }
            d[udp_off + 6..udp_off + 8].copy_from_slice(&csum.to_be_bytes());
        }
    }
    Verdict::Forward(UPLINK)
}

/// Flow hash over the inner 5-tuple (addresses, protocol, ports of a first
/// fragment), for ECMP and the VXLAN source port: one flow, one path.
#[inline]
fn flow_hash_v4(d: &[u8]) -> u32 {
    let ip = ipv4::Packet::new_unchecked(d);
    let proto = ip.protocol();
    let ports = if ip.frag_offset() == 0 && !ip.more_frags() && matches!(proto, 6 | 17 | 132) {
        ip.payload()
            .get(..4)
            .map_or(0, |p| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
    } else {
        0
    };
    mix(ip.src_u32() as u64, ip.dst_u32() as u64, ports, proto)
}

#[inline]
fn flow_hash_v6(d: &[u8]) -> u32 {
    let ip = ipv6::Packet::new_unchecked(d);
    let (proto, ports) = match ip.upper_layer() {
        Ok((p, off, None)) if matches!(p, 6 | 17 | 132) => (
            p,
            d.get(off..off + 4)
                .map_or(0, |q| u32::from_be_bytes([q[0], q[1], q[2], q[3]])),
        ),
        Ok((p, _, _)) => (p, 0),
        Err(_) => (ip.next_header(), 0),
    };
    let s = ip.src_u128();
    let t = ip.dst_u128();
    mix((s ^ (s >> 64)) as u64, (t ^ (t >> 64)) as u64, ports, proto)
}

#[inline]
fn mix(a: u64, b: u64, ports: u32, proto: u8) -> u32 {
    // Multiply-xorshift: cheap, and every input bit reaches the top bits we
    // keep.
    let mut h = a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.rotate_left(29);
    h ^= ((ports as u64) << 8) | proto as u64;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 31;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    (h >> 32) as u32
}

// ---------------------------------------------------------------- router-originated

fn echo_reply_v4(t: &Tables, n: &Net, pkt: &mut Packet) -> Verdict {
    {
        let d = pkt.data_mut();
        let hl = ipv4::Packet::new_unchecked(&d[..]).header_len();
        let Ok(mut icmp) = icmpv4::Packet::new_checked(&mut d[hl..]) else {
            return Verdict::Drop(DropReason::IpMalformed);
        };
        // RFC 1122 section 3.2.2: a message with a bad checksum is silently
        // discarded, not answered with a fresh one.
        if !icmp.verify_checksum() {
            return Verdict::Drop(DropReason::IcmpBadChecksum);
        }
        icmp.make_echo_reply_in_place();
        let mut ip = ipv4::Packet::new_unchecked(&mut d[..]);
        let src = ip.src();
        let dst = ip.dst();
        ip.set_src(dst);
        ip.set_dst(src);
        ip.set_ttl(ORIGIN_TTL);
        ip.fill_checksum();
    }
    match originate_v4(t, n, pkt) {
        Verdict::Forward(p) => Verdict::Reply(p),
        v => v,
    }
}

fn echo_reply_v6(t: &Tables, n: &Net, pkt: &mut Packet) -> Verdict {
    {
        let d = pkt.data_mut();
        let (src, dst) = {
            let ip = ipv6::Packet::new_unchecked(&d[..]);
            (ip.src(), ip.dst())
        };
        let Ok(mut icmp) = icmpv6::Packet::new_checked(&mut d[ipv6::HEADER_LEN..]) else {
            return Verdict::Drop(DropReason::IpMalformed);
        };
        if !icmp.verify_checksum(src, dst) {
            return Verdict::Drop(DropReason::IcmpBadChecksum);
        }
        // The pseudo-header sum does not depend on the address order, so
        // the incremental type change is all the checksum needs.
        icmp.make_echo_reply_in_place();
        let mut ip = ipv6::Packet::new_unchecked(&mut d[..]);
        ip.set_src(dst);
        ip.set_dst(src);
        ip.set_hop_limit(ORIGIN_TTL);
    }
    match originate_v6(t, n, pkt) {
        Verdict::Forward(p) => Verdict::Reply(p),
        v => v,
    }
}

/// Whether RFC 1122 section 3.2.2 / RFC 1812 section 4.3.2.7 allow an ICMP
/// error about this datagram: not about an ICMP error, not about a later
/// fragment, not to a multicast, broadcast or unspecified address.
fn may_send_icmp_v4(d: &[u8]) -> bool {
    let ip = ipv4::Packet::new_unchecked(d);
    if ip.frag_offset() != 0 || is_bad_source_v4(ip.src_u32()) || ip.dst_u32() >> 28 >= 0xe {
        return false;
    }
    if ip.protocol() == ipv4::PROTO_ICMP {
        // Queries (echo, timestamp, ...) may cause errors; errors may not.
        return ip
            .payload()
            .first()
            .is_some_and(|ty| !icmpv4::is_error_type(*ty));
    }
    true
}

fn icmp_v4(t: &Tables, n: &Net, pkt: &mut Packet, kind: Icmp, reason: DropReason) -> Verdict {
    let Some(our) = n.icmp_src_v4 else {
        return Verdict::Drop(reason);
    };
    if !may_send_icmp_v4(pkt.data()) {
        return Verdict::Drop(reason);
    }
    let orig_src = ipv4::Packet::new_unchecked(pkt.data()).src();
    let (ty, code, rest) = match kind {
        Icmp::TimeExceeded => (icmpv4::TYPE_TIME_EXCEEDED, 0, 0u32),
        Icmp::NetUnreachable => (icmpv4::TYPE_DEST_UNREACH, icmpv4::CODE_NET_UNREACH, 0),
        Icmp::HostUnreachable => (icmpv4::TYPE_DEST_UNREACH, icmpv4::CODE_HOST_UNREACH, 0),
        // RFC 1191 section 4: next-hop MTU in the low 16 bits.
        Icmp::TooBig(mtu) => (
            icmpv4::TYPE_DEST_UNREACH,
            icmpv4::CODE_FRAG_NEEDED,
            mtu as u32,
        ),
    };
    let hdr = ipv4::MIN_HEADER_LEN + icmpv4::HEADER_LEN;
    // The error quotes the start of a super-packet as it would a segment's.
    pkt.gso = None;
    pkt.truncate(ICMP4_MAX_LEN - hdr);
    let quoted = pkt.len();
    let Some(d) = pkt.prepend(hdr) else {
        return Verdict::Drop(reason);
    };
    let ip = ipv4::Repr {
        src: std::net::Ipv4Addr::from(our),
        dst: orig_src,
        protocol: ipv4::PROTO_ICMP,
        ttl: ORIGIN_TTL,
        payload_len: (icmpv4::HEADER_LEN + quoted) as u16,
        dont_frag: false,
        ident: 0,
    };
    ip.emit(&mut d[..ipv4::MIN_HEADER_LEN]);
    icmpv4::emit_error(&mut d[ipv4::MIN_HEADER_LEN..], ty, code, rest, quoted);
    match originate_v4(t, n, pkt) {
        Verdict::Forward(p) => Verdict::Icmp(p, reason),
        _ => Verdict::Drop(reason),
    }
}

fn may_send_icmp_v6(d: &[u8]) -> bool {
    let ip = ipv6::Packet::new_unchecked(d);
    let src = ip.src_u128();
    if src == 0 || (src >> 120) == 0xff || (ip.dst_u128() >> 120) == 0xff {
        return false;
    }
    match ip.upper_layer() {
        // Only about a first fragment: a later one starts with no header
        // (its first byte is payload, not an ICMPv6 type).
        Ok((_, _, Some(f))) if f.offset != 0 => false,
        // RFC 4443 section 2.4 (e.1): never about an ICMPv6 error message
        // (types below 128).
        Ok((ipv6::NH_ICMPV6, off, _)) => d.get(off).is_some_and(|ty| *ty >= 128),
        _ => true,
    }
}

fn icmp_v6(t: &Tables, n: &Net, pkt: &mut Packet, kind: Icmp, reason: DropReason) -> Verdict {
    let Some(our) = n.icmp_src_v6 else {
        return Verdict::Drop(reason);
    };
    if !may_send_icmp_v6(pkt.data()) {
        return Verdict::Drop(reason);
    }
    let orig_src = ipv6::Packet::new_unchecked(pkt.data()).src();
    let (ty, code, rest) = match kind {
        Icmp::TimeExceeded => (icmpv6::TYPE_TIME_EXCEEDED, 0, 0u32),
        Icmp::NetUnreachable => (icmpv6::TYPE_DEST_UNREACH, icmpv6::CODE_NO_ROUTE, 0),
        Icmp::HostUnreachable => (icmpv6::TYPE_DEST_UNREACH, icmpv6::CODE_ADDR_UNREACH, 0),
        Icmp::TooBig(mtu) => (icmpv6::TYPE_PACKET_TOO_BIG, 0, mtu as u32),
    };
    let hdr = ipv6::HEADER_LEN + icmpv6::HEADER_LEN;
    pkt.gso = None;
    pkt.truncate(ICMP6_MAX_LEN - hdr);
    let quoted = pkt.len();
    let Some(d) = pkt.prepend(hdr) else {
        return Verdict::Drop(reason);
    };
    let src = std::net::Ipv6Addr::from(our);
    let ip = ipv6::Repr {
        src,
        dst: orig_src,
        next_header: ipv6::NH_ICMPV6,
        hop_limit: ORIGIN_TTL,
        payload_len: (icmpv6::HEADER_LEN + quoted) as u16,
    };
    ip.emit(&mut d[..ipv6::HEADER_LEN]);
    icmpv6::emit_error(
        &mut d[ipv6::HEADER_LEN..],
        ty,
        code,
        rest,
        quoted,
        src,
        orig_src,
    );
    match originate_v6(t, n, pkt) {
        Verdict::Forward(p) => Verdict::Icmp(p, reason),
        _ => Verdict::Drop(reason),
    }
}

/// Routes a packet the router made: no anti-spoofing, no TTL decrement.
/// What the router makes (echo replies, ICMP errors) must fit the underlay
/// like what it forwards; it is dropped, never answered with an error.
fn originate_v4(t: &Tables, n: &Net, pkt: &mut Packet) -> Verdict {
    let dst = ipv4::Packet::new_unchecked(pkt.data()).dst_u32();
    match n.fib.lookup_v4(dst) {
        Some(NextHop::Local { port }) => deliver(t, port, pkt, ethernet::ETHERTYPE_IPV4),
        Some(NextHop::Remote { .. }) if pkt.len() > usize::from(t.underlay_fit) => {
            Verdict::Drop(DropReason::UnderlayTooBig)
        }
        Some(NextHop::Remote { first, count }) => {
            let hash = flow_hash_v4(pkt.data());
            encap(t, n, pkt, first, count, hash, ethernet::ETHERTYPE_IPV4)
        }
        _ => Verdict::Drop(DropReason::NoRoute),
    }
}

fn originate_v6(t: &Tables, n: &Net, pkt: &mut Packet) -> Verdict {
    let dst = ipv6::Packet::new_unchecked(pkt.data()).dst_u128();
    match n.fib.lookup_v6(dst) {
        Some(NextHop::Local { port }) => deliver(t, port, pkt, ethernet::ETHERTYPE_IPV6),
        Some(NextHop::Remote { .. }) if pkt.len() > usize::from(t.underlay_fit) => {
            Verdict::Drop(DropReason::UnderlayTooBig)
        }
        Some(NextHop::Remote { first, count }) => {
            let hash = flow_hash_v6(pkt.data());
            encap(t, n, pkt, first, count, hash, ethernet::ETHERTYPE_IPV6)
        }
        _ => Verdict::Drop(DropReason::NoRoute),
    }
}
