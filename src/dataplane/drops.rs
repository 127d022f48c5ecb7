//! Drop reasons and per-worker counters.
//!
//! Every reason is declared once here, with the name it is exported under
//! (stats.json, metrics) and a description. Each worker owns a
//! [`NetCounters`]: one [`Counters`] per overlay network plus one for
//! packets whose network is not known, with plain integers (no atomics on
//! the per-packet path). A packet counts once, in its network's bucket;
//! totals are sums over the buckets, made off the per-packet path (the
//! control thread sums snapshots of them).

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

macro_rules! drop_reasons {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $desc:literal; )*) => {
        /// Why a packet was not forwarded.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason { $( $(#[$doc])* $variant, )* }

        impl DropReason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// Number of reasons.
            pub const COUNT: usize = Self::ALL.len();

            /// The exported name (snake_case, stable).
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// What the reason means, for humans.
            pub const fn description(self) -> &'static str {
                match self { $(DropReason::$variant => $desc,)* }
            }
        }
    };
}

drop_reasons! {
    FrameTooLong = "frame_too_long", "frame longer than a packet buffer (above the port MTU)";
    EthTruncated = "eth_truncated", "frame shorter than its Ethernet header (and VLAN tags)";
    EthNotForUs = "eth_not_for_us", "container frame addressed to another MAC than the router's";
    EthUnsupported = "eth_unsupported", "container frame that is neither IPv4, IPv6 nor ARP (or VLAN-tagged)";
    IpMalformed = "ip_malformed", "IP header truncated or with a lying version, header or total length";
    IpBadChecksum = "ip_bad_checksum", "IPv4 header checksum wrong";
    IpBadSource = "ip_bad_source", "source address multicast, broadcast, loopback or unspecified";
    Spoofed = "spoofed_source", "container source address not among the port's addresses";
    InnerSpoofed = "inner_spoofed_source", "decapsulated packet whose source lies in no other host's subnets";
    TtlExpired = "ttl_expired", "TTL or hop limit reached zero (ICMP time exceeded sent when allowed)";
    NoRoute = "no_route", "no route to the destination (ICMP unreachable sent when allowed)";
    TooBig = "too_big", "larger than the path MTU: fragmentation needed or packet too big sent";
    TooBigNoDf = "too_big_no_df", "IPv4 without DF larger than the overlay MTU: VXLAN never fragments";
    OuterFragment = "outer_fragment", "VXLAN carried in a fragmented outer IP packet";
    UdpMalformed = "udp_malformed", "outer UDP header truncated or length lying";
    UdpBadChecksum = "udp_bad_checksum", "outer UDP checksum wrong";
    VxlanTruncated = "vxlan_truncated", "VXLAN header or inner Ethernet truncated";
    VxlanBadFlags = "vxlan_bad_flags", "VXLAN I flag (valid VNI) not set";
    VxlanUnknownVni = "vxlan_unknown_vni", "VXLAN network identifier is not ours";
    UnknownPeer = "unknown_peer", "VXLAN from an underlay address that is no host of the topology";
    VxlanFromSelf = "vxlan_from_self", "VXLAN whose outer source is this host's own underlay address (a local process, or a forgery)";
    PeerNotNeighbour = "peer_not_neighbour", "VXLAN from a host of the topology that begins none of this host's current routes (no live link to it)";
    InnerSourceWrongPeer = "inner_source_wrong_peer", "decapsulated packet whose source's route does not go through the peer that sent it (strict reverse-path check)";
    InnerNotForUs = "inner_not_for_us", "inner Ethernet destination is not our VTEP MAC";
    InnerNotIp = "inner_not_ip", "inner frame is neither IPv4 nor IPv6";
    NeighbourUnresolved = "neighbour_unresolved", "underlay MAC of the next hop not known yet";
    NoHeadroom = "no_headroom", "not enough headroom to prepend headers";
    ArpNotForUs = "arp_not_for_us", "ARP or neighbour solicitation not for a gateway address of ours";
    NeighBadMac = "neigh_bad_mac", "ARP request or neighbour solicitation from a group (multicast, broadcast) or all-zero MAC: never answered, the answer would flood";
    ArpMalformed = "arp_malformed", "ARP packet truncated, or not for Ethernet and IPv4";
    DirectedBroadcast = "directed_broadcast", "to the network or broadcast address of an IPv4 subnet: never forwarded (RFC 2644), no ICMP error";
    NdMalformed = "nd_malformed", "ICMPv6 neighbour discovery message malformed";
    IcmpBadChecksum = "icmp_bad_checksum", "ICMP message to the router with a wrong checksum";
    ControlPlane = "control_plane", "addressed to the router itself and not answered (only echo is)";
    TxFull = "tx_full", "the output port refused the frame (ring or queue full)";
    PortDown = "port_down", "output port not present on this worker";
    GsoMalformed = "gso_malformed", "super-packet whose headers do not describe it, or whose segments exceed a frame buffer: not cut into segments";
    UnderlayTooBig = "underlay_too_big", "toward a peer, larger than the underlay MTU carries once encapsulated: fragmentation needed or packet too big sent with the size that fits (IPv4 without DF too)";
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Per-worker counters: written by one thread only, with plain adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Packets dropped, indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
    /// Packets forwarded to a port (delivered, encapsulated or transited).
    pub forwarded: u64,
    /// Packets answered by the router itself (ARP, neighbour solicitation,
    /// echo to a gateway address).
    pub replied: u64,
    /// Frames that were not ours on the uplink: left to the kernel.
    pub pass_through: u64,
    /// ICMP and ICMPv6 errors generated (each also counts its original
    /// packet under a drop reason).
    pub icmp_errors: u64,
    /// ICMP and ICMPv6 errors not sent because the worker's error budget
    /// was spent (the original still counts under its drop reason).
    pub icmp_rate_limited: u64,
}

// By hand: arrays past 32 elements have no derived Default.
impl Default for Counters {
    fn default() -> Self {
        Counters {
            drops: [0; DropReason::COUNT],
            forwarded: 0,
            replied: 0,
            pass_through: 0,
            icmp_errors: 0,
            icmp_rate_limited: 0,
        }
    }
}

impl Counters {
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    /// `n` packets dropped for `reason` (a super-packet counts its segments).
    #[inline]
    pub fn drop_n(&mut self, reason: DropReason, n: u64) {
        self.drops[reason as usize] += n;
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds another worker's counters into these.
    pub fn add(&mut self, o: &Counters) {
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
        self.forwarded += o.forwarded;
        self.replied += o.replied;
        self.pass_through += o.pass_through;
        self.icmp_errors += o.icmp_errors;
        self.icmp_rate_limited += o.icmp_rate_limited;
    }

    /// Non-zero drops by exported name.
    pub fn drops_by_name(&self) -> BTreeMap<&'static str, u64> {
        DropReason::ALL
            .iter()
            .filter(|r| self.dropped(**r) > 0)
            .map(|r| (r.name(), self.dropped(*r)))
            .collect()
    }

    /// Serializable summary (stats.json, logs).
    pub fn summary(&self) -> CounterSummary {
        CounterSummary {
            forwarded: self.forwarded,
            replied: self.replied,
            pass_through: self.pass_through,
            icmp_errors: self.icmp_errors,
            icmp_rate_limited: self.icmp_rate_limited,
            drops: self.drops_by_name(),
        }
    }
}

/// The bucket of [`NetCounters`] for packets whose network is not known:
/// uplink frames dropped or passed before a VNI names their network.
pub const NO_NET: usize = 0;

/// One worker's counters per overlay network: bucket [`NO_NET`] for
/// packets of no known network, bucket `1 + i` for network `i` of the
/// tables they were counted under (`names[i]`).
///
/// Buckets go by index, so they follow the tables: when a worker meets
/// tables whose networks differ (a reload added, removed or reordered
/// some), [`NetCounters::follow`] moves every bucket to its network's new
/// index by name, and a removed network's counts to `retired`, where they
/// stay (and come back if the network does). No count is lost or moved to
/// another network, and totals never go down.
#[derive(Debug, PartialEq, Eq)]
pub struct NetCounters {
    /// `buckets[NO_NET]`, then one per network of `names`.
    buckets: Vec<Counters>,
    /// The networks' names, as the tables counted under list them.
    names: Arc<[String]>,
    /// Counts of networks no longer in the tables, by name.
    retired: Vec<(String, Counters)>,
}

impl Default for NetCounters {
    fn default() -> Self {
        NetCounters {
            buckets: vec![Counters::default()],
            names: Arc::from(Vec::new()),
            retired: Vec::new(),
        }
    }
}

impl Clone for NetCounters {
    fn clone(&self) -> Self {
        NetCounters {
            buckets: self.buckets.clone(),
            names: self.names.clone(),
            retired: self.retired.clone(),
        }
    }

    // By hand: a worker publishes into the same value every time, and the
    // derived one would allocate anew.
    fn clone_from(&mut self, o: &Self) {
        self.buckets.clone_from(&o.buckets);
        if !Arc::ptr_eq(&self.names, &o.names) {
            self.names = o.names.clone();
        }
        self.retired.clone_from(&o.retired);
    }
}

impl NetCounters {
    /// Whether the buckets are indexed like `names` (a pointer compare:
    /// tables that share their name list share the layout).
    #[inline(always)]
    pub fn follows(&self, names: &Arc<[String]>) -> bool {
        Arc::ptr_eq(&self.names, names)
    }

    /// Re-indexes the buckets for tables whose networks are `names`, in
    /// their order. Off the per-packet path: a worker calls it when a burst
    /// meets tables with another name list, which a reload or a publish
    /// makes; it allocates only when the networks changed.
    #[cold]
    pub fn follow(&mut self, names: &Arc<[String]>) {
        if *self.names == **names {
            // Same networks in the same order: only the list is new.
            self.names = names.clone();
            return;
        }
        let mut old: Vec<(String, Counters)> = self
            .names
            .iter()
            .cloned()
            .zip(self.buckets.drain(1..))
            .collect();
        old.append(&mut self.retired);
        let mut buckets = Vec::with_capacity(names.len() + 1);
        buckets.push(std::mem::take(&mut self.buckets[NO_NET]));
        for n in names.iter() {
            let c = match old.iter().position(|(o, _)| o == n) {
                Some(k) => old.swap_remove(k).1,
                None => Counters::default(),
            };
            buckets.push(c);
        }
        // What is left belongs to networks these tables do not have; a name
        // listed twice (not made by validation) sums into one.
        for (name, c) in old {
            match self.retired.iter_mut().find(|(r, _)| *r == name) {
                Some((_, r)) => r.add(&c),
                None => self.retired.push((name, c)),
            }
        }
        self.retired.sort_by(|a, b| a.0.cmp(&b.0));
        self.buckets = buckets;
        self.names = names.clone();
    }

    /// The bucket of index `b` ([`NO_NET`], or `1 +` a network index of
    /// the tables followed). An index past the end (not made by the
    /// pipeline) counts in [`NO_NET`]: never lost, never a panic.
    #[inline(always)]
    pub fn bucket(&mut self, b: usize) -> &mut Counters {
        let b = if b < self.buckets.len() { b } else { NO_NET };
        &mut self.buckets[b]
    }

    /// The counters of packets of no known network.
    pub fn unknown(&self) -> &Counters {
        &self.buckets[NO_NET]
    }

    /// Every network's counters by name: those of the tables followed, in
    /// their order, then the retired ones.
    pub fn by_network(&self) -> impl Iterator<Item = (&str, &Counters)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(&self.buckets[1..])
            .chain(self.retired.iter().map(|(n, c)| (n.as_str(), c)))
    }

    /// The sum over every bucket, retired ones included: what one
    /// [`Counters`] counting every packet would hold.
    pub fn total(&self) -> Counters {
        let mut t = Counters::default();
        self.total_into(&mut t);
        t
    }

    /// [`NetCounters::total`] into `t`, overwriting it.
    pub fn total_into(&self, t: &mut Counters) {
        *t = Counters::default();
        for c in &self.buckets {
            t.add(c);
        }
        for (_, c) in &self.retired {
            t.add(c);
        }
    }
}

/// The counters as exported.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CounterSummary {
    pub forwarded: u64,
    pub replied: u64,
    pub pass_through: u64,
    pub icmp_errors: u64,
    pub icmp_rate_limited: u64,
    pub drops: BTreeMap<&'static str, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for n in names {
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{n}");
        }
        for r in DropReason::ALL {
            assert!(!r.description().is_empty());
        }
    }

    fn names(n: &[&str]) -> Arc<[String]> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn buckets_move_by_name_and_removed_networks_are_kept() {
        let mut c = NetCounters::default();
        let v1 = names(&["a", "b", "c"]);
        c.follow(&v1);
        assert!(c.follows(&v1));
        c.bucket(NO_NET).drop(DropReason::UnknownPeer);
        c.bucket(1).forwarded = 10;
        c.bucket(2).drop(DropReason::Spoofed);
        c.bucket(3).replied = 4;
        // An index past the buckets counts as no network.
        c.bucket(9).drop(DropReason::UnknownPeer);
        let total = c.total();
        assert_eq!(total.forwarded, 10);
        assert_eq!(total.dropped(DropReason::UnknownPeer), 2);

        // Same names, another list: nothing moves.
        let same = names(&["a", "b", "c"]);
        c.follow(&same);
        assert!(c.follows(&same));
        assert_eq!(c.total(), total);

        // c removed, b and a swapped, d new.
        c.follow(&names(&["b", "a", "d"]));
        assert_eq!(c.total(), total);
        assert_eq!(c.bucket(1).dropped(DropReason::Spoofed), 1);
        assert_eq!(c.bucket(2).forwarded, 10);
        assert_eq!(*c.bucket(3), Counters::default());
        let by: Vec<(&str, u64, u64)> = c
            .by_network()
            .map(|(n, x)| (n, x.forwarded, x.replied))
            .collect();
        assert_eq!(by, [("b", 0, 0), ("a", 10, 0), ("d", 0, 0), ("c", 0, 4)]);
        assert_eq!(c.unknown().dropped(DropReason::UnknownPeer), 2);

        // c comes back: its counts with it.
        c.follow(&names(&["c"]));
        assert_eq!(c.bucket(1).replied, 4);
        assert_eq!(c.total(), total);
        let retired: Vec<&str> = c.by_network().skip(1).map(|(n, _)| n).collect();
        assert_eq!(retired, ["a", "b", "d"]);
    }

    #[test]
    fn counters_add_and_export() {
        let mut a = Counters::default();
        a.drop(DropReason::NoRoute);
        let mut b = Counters::default();
        b.drop(DropReason::NoRoute);
        b.forwarded = 3;
        a.add(&b);
        assert_eq!(a.dropped(DropReason::NoRoute), 2);
        assert_eq!(a.summary().drops.get("no_route"), Some(&2));
        assert_eq!(a.forwarded, 3);
    }
}
