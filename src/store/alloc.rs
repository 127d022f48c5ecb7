//! Which subnet a host leases in one network: from a list of that
//! network's leases, the leases of its own to take over, else the subnet
//! to propose, with the ones taken left out: those leased, those the file
//! gives other hosts, those other hosts' store records hold (a static
//! peer's needs no lease), and every underlay address.
//!
//! Sans-IO. The store's transaction decides who gets a subnet; this only
//! plans the transactions and proposes subnets in an order that differs
//! per host (from a hash of its name), so that hosts starting at once
//! mostly try different subnets first instead of all racing for the
//! lowest. Every network's leases are planned alike, each from its own
//! list: networks' address spaces overlap.

use ipnet::IpNet;

use crate::config::{addr, LeaseRange, Topology, DEFAULT_NETWORK};

use super::record;

/// A lease as listed in a network's lease directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The subnet its key names.
    pub subnet: IpNet,
    /// It names this host: a lease of its own from before a restart.
    pub mine: bool,
    /// Its mod revision: a take-over succeeds only while it is unchanged.
    pub mod_revision: i64,
}

/// What a host asks of one network's leases.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The range it leases from and the length of the subnets.
    pub range: LeaseRange,
    /// The subnets it must have and no other (a flannel host whose file
    /// names its subnet); empty: any subnet of the range.
    pub wanted: &'a [IpNet],
    /// The subnets it held before (from the cache), tried first.
    pub previous: &'a [IpNet],
    /// What no lease may take or hold: the subnets other hosts of the file
    /// own in this network and the file's underlay addresses
    /// ([`reserved`]), with what the store's host records hold
    /// ([`reserved_by_records`]).
    pub reserved: &'a [IpNet],
    /// The seed of [`candidates`]: [`seed`] of the host's name.
    pub seed: u64,
}

/// The transactions to try after one list of a network's leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The host's own leases, to take over under its current lease, each
    /// by a transaction that holds only while the key's mod revision is
    /// unchanged; the first that succeeds is its subnet.
    pub take_over: Vec<Held>,
    /// Else the subnet to lease by a transaction that holds only while no
    /// key names it; `None`: no subnet is free.
    pub propose: Option<IpNet>,
}

/// What no lease of host `me` of `topo` in network `net` may take or
/// hold ([`Ask::reserved`]): the other hosts' subnets in that network,
/// and every underlay address.
pub fn reserved(topo: &Topology, me: usize, net: usize) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = topo
        .hosts
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != me)
        .flat_map(|(_, h)| h.subnets_in(net).copied())
        .collect();
    out.extend(topo.hosts.iter().map(|h| IpNet::from(h.underlay)));
    out
}

/// What no lease of host `me` in network `network` (of VNI
/// `network_vni`; [`DEFAULT_NETWORK`]: the overlay's) may take or hold
/// beyond [`reserved`]: of every other host's record in `records` (host
/// name as its key `hosts/<name>` gives it, value), its subnets in that
/// network and its underlay address. A record needs no lease to hold a
/// subnet (an operator's static peer; a router's record listed before its
/// lease key): leasing what it holds would make two hosts route one
/// subnet.
///
/// A network of a record is this one only under the same name and VNI
/// (or none, as records written before they carried VNIs), as the merge
/// takes it. A record that does not decode, or is of another overlay VNI,
/// reserves nothing: the merge leaves it out, counted by its reason.
pub fn reserved_by_records<'r>(
    records: impl IntoIterator<Item = (&'r str, &'r [u8])>,
    me: &str,
    overlay_vni: u32,
    network: &str,
    network_vni: u32,
) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (name, value) in records {
        if name == me {
            continue;
        }
        let Ok(p) = record::decode_host(name, value, overlay_vni) else {
            continue;
        };
        if network == DEFAULT_NETWORK {
            out.extend_from_slice(&p.subnets);
        } else if let Some(n) = p
            .networks
            .get(network)
            .filter(|n| n.vni.is_none_or(|v| v == network_vni))
        {
            out.extend_from_slice(&n.subnets);
        }
        out.push(IpNet::from(p.underlay));
    }
    out
}

/// The plan after listing `held`, the `attempt`-th time in a row (a lost
/// race moves the candidates' starting point).
///
/// A lease of the host's own is taken over only if it is one the host may
/// hold now (wanted, or of the range and length), so that a changed range
/// leaves the old lease to expire. Every listed lease, the host's own
/// included, and every reserved prefix is taken: the proposal shares no
/// address with any.
pub fn plan(ask: &Ask<'_>, held: &[Held], attempt: u64) -> Plan {
    let allowed = |n: &IpNet| {
        if ask.wanted.is_empty() {
            ask.range.holds(*n)
        } else {
            ask.wanted.contains(n)
        }
    };
    let take_over = held
        .iter()
        .filter(|h| h.mine && allowed(&h.subnet))
        .copied()
        .collect();
    let taken: Vec<IpNet> = held
        .iter()
        .map(|h| h.subnet)
        .chain(ask.reserved.iter().copied())
        .collect();
    let free = |n: &IpNet| !taken.iter().any(|t| t.contains(n) || n.contains(t));
    let propose = if ask.wanted.is_empty() {
        ask.previous
            .iter()
            .copied()
            .filter(|p| ask.range.holds(*p))
            .find(free)
            .or_else(|| {
                candidates(
                    ask.range.network,
                    ask.range.subnet_len,
                    &taken,
                    ask.seed ^ attempt,
                )
                .into_iter()
                .next()
            })
    } else {
        ask.wanted.iter().copied().find(free)
    };
    Plan { take_over, propose }
}

/// At most this many candidates are proposed: a range with more subnets
/// than that is walked from the host's own starting point only.
pub const MAX_CANDIDATES: u64 = 1 << 16;

/// The subnets of length `len` in `network` that no `taken` subnet
/// overlaps and no special block touches, starting at a point derived from
/// `seed` and wrapping around. The first subnet of the range (the one
/// holding its network address) is skipped, as flanneld does.
pub fn candidates(network: IpNet, len: u8, taken: &[IpNet], seed: u64) -> Vec<IpNet> {
    let Ok(subnets) = network.subnets(len) else {
        return Vec::new();
    };
    let bits = u32::from(len.saturating_sub(network.prefix_len()));
    let count: u64 = if bits >= 64 { u64::MAX } else { 1u64 << bits };
    if count < 2 {
        return Vec::new();
    }
    let window = count.min(MAX_CANDIDATES);
    let start = 1 + seed % (window - 1);
    let mut out = Vec::new();
    let usable = |n: &IpNet| {
        addr::special_overlapping(*n).is_none()
            && !taken.iter().any(|t| t.contains(n) || n.contains(t))
    };
    // Subnets `start..window`, then `1..start`.
    let all: Vec<IpNet> = subnets.take(window as usize).collect();
    for i in (start..window).chain(1..start) {
        let n = all[i as usize];
        if usable(&n) {
            out.push(n);
        }
    }
    out
}

/// A stable hash of a host name (FNV-1a), the seed of [`candidates`].
pub fn seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_skip_taken_and_the_first_and_differ_by_host() {
        let net: IpNet = "198.19.0.0/16".parse().unwrap();
        let taken: Vec<IpNet> = vec![
            "198.19.5.0/24".parse().unwrap(),
            "198.19.6.128/25".parse().unwrap(),
        ];
        let a = candidates(net, 24, &taken, seed("h1"));
        assert_eq!(a.len(), 256 - 3);
        assert!(!a.contains(&"198.19.0.0/24".parse().unwrap()));
        assert!(!a
            .iter()
            .any(|n| taken.iter().any(|t| t.contains(n) || n.contains(t))));
        let b = candidates(net, 24, &taken, seed("h2"));
        assert_ne!(a[0], b[0]);
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), a.len());
        assert!(candidates(net, 16, &[], 0).is_empty());
        let v6: IpNet = "2001:2::/48".parse().unwrap();
        assert_eq!(candidates(v6, 64, &[], 3).len(), 65535);
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ask<'a>(range: &str, previous: &'a [IpNet], reserved: &'a [IpNet]) -> Ask<'a> {
        Ask {
            range: LeaseRange::new(net(range), None),
            wanted: &[],
            previous,
            reserved,
            seed: seed("h1"),
        }
    }

    fn held(subnet: &str, mine: bool) -> Held {
        Held {
            subnet: net(subnet),
            mine,
            mod_revision: 7,
        }
    }

    #[test]
    fn a_host_takes_its_own_lease_over_then_its_previous_subnet() {
        let prev = [net("198.19.9.0/24")];
        // Restarted within the TTL: its lease is still there.
        let p = plan(
            &ask("198.19.0.0/16", &prev, &[]),
            &[held("198.19.3.0/24", false), held("198.19.4.0/24", true)],
            0,
        );
        assert_eq!(p.take_over, [held("198.19.4.0/24", true)]);
        // Should the take-over fail, the subnet it held before is next.
        assert_eq!(p.propose, Some(prev[0]));
        // Its previous subnet is someone else's now: a fresh candidate.
        let p = plan(
            &ask("198.19.0.0/16", &prev, &[]),
            &[held("198.19.9.0/24", false)],
            0,
        );
        assert!(p.take_over.is_empty());
        let got = p.propose.unwrap();
        assert!(net("198.19.0.0/16").contains(&got) && got != prev[0]);
        // A previous subnet of another range or length is not proposed.
        let p = plan(&ask("198.20.0.0/16", &prev, &[]), &[], 0);
        assert!(p.propose.is_some_and(|n| net("198.20.0.0/16").contains(&n)));
    }

    #[test]
    fn a_lease_outside_the_range_is_left_to_expire() {
        // The range changed (a reload): the old lease is not taken over,
        // and still counts as taken until it expires.
        let p = plan(
            &ask("198.19.0.0/24", &[], &[]).with_len(26),
            &[held("198.19.0.64/26", false), held("198.19.7.0/24", true)],
            0,
        );
        assert!(p.take_over.is_empty());
        let got = p.propose.unwrap();
        assert_eq!(got.prefix_len(), 26);
        assert_ne!(got, net("198.19.0.64/26"));
        assert_ne!(
            got,
            net("198.19.0.0/26"),
            "the first subnet is never leased"
        );
    }

    #[test]
    fn reserved_prefixes_and_underlays_are_never_proposed_and_a_full_range_says_so() {
        let reserved = [net("198.19.0.64/26"), net("198.19.0.129/32")];
        let a = ask("198.19.0.0/24", &[], &reserved).with_len(26);
        for attempt in 0..8 {
            // Of four /26, the first is never leased, the second is a file
            // host's, the third holds an underlay: only the fourth.
            assert_eq!(plan(&a, &[], attempt).propose, Some(net("198.19.0.192/26")));
        }
        let p = plan(&a, &[held("198.19.0.192/26", false)], 0);
        assert_eq!(p.propose, None);
        // Wanted subnets are proposed as they are, if free.
        let wanted = [net("198.19.0.192/26")];
        let w = Ask {
            wanted: &wanted,
            ..a
        };
        assert_eq!(plan(&w, &[], 0).propose, Some(wanted[0]));
        assert_eq!(plan(&w, &[held("198.19.0.192/26", false)], 0).propose, None);
        let p = plan(&w, &[held("198.19.0.192/26", true)], 0);
        assert_eq!(p.take_over.len(), 1);
    }

    /// A host record as a router (or an operator) writes it.
    fn record(name: &str, underlay: &str, subnets: &str, networks: &str) -> Vec<u8> {
        format!(
            r#"{{"name":"{name}","underlay":"{underlay}","vtep_mac":"02:42:c6:12:00:09","subnets":[{subnets}],"vni":42{networks}}}"#
        )
        .into_bytes()
    }

    /// Static peers (records without a lease) hold two of the three
    /// leasable subnets of each range, IPv4 and IPv6, in the default
    /// network and in blue: the plan proposes the third. Records that hold
    /// the third too, but of blue under another VNI, of another overlay,
    /// malformed or this host's own, reserve nothing of it.
    #[test]
    fn subnets_and_underlays_of_store_records_are_never_proposed() {
        let records = [
            (
                "h9",
                record(
                    "h9",
                    "198.18.0.9",
                    r#""198.19.0.64/26","2001:2:0:40::/58""#,
                    r#","networks":{"blue":{"vni":43,"subnets":["198.19.0.128/26","2001:2:0:80::/58"]}}"#,
                ),
            ),
            (
                "h10",
                record(
                    "h10",
                    "2001:2::a",
                    r#""198.19.0.192/26","2001:2:0:c0::/58""#,
                    // Written before records carried VNIs: blue by name.
                    r#","networks":{"blue":["198.19.0.64/26","2001:2:0:40::/58"]}"#,
                ),
            ),
            // Blue of another VNI is another network; the underlay still
            // counts.
            (
                "h8",
                record(
                    "h8",
                    "198.18.0.8",
                    "",
                    r#","networks":{"blue":{"vni":44,"subnets":["198.19.0.192/26","2001:2:0:c0::/58"]}}"#,
                ),
            ),
            // Another overlay's, not JSON, under another host's key, and
            // this host's own: nothing.
            (
                "h7",
                br#"{"name":"h7","underlay":"198.18.0.7","vtep_mac":"02:42:c6:12:00:07","subnets":["198.19.0.128/26"],"vni":41}"#.to_vec(),
            ),
            ("h6", b"{".to_vec()),
            ("h5", record("h4", "198.18.0.5", r#""198.19.0.128/26""#, "")),
            (
                "h1",
                record("h1", "198.18.0.1", r#""2001:2:0:80::/58""#, ""),
            ),
        ];
        let list = || records.iter().map(|(k, v)| (*k, v.as_slice()));
        let default = reserved_by_records(list(), "h1", 42, DEFAULT_NETWORK, 42);
        assert_eq!(
            default,
            [
                net("198.19.0.64/26"),
                net("2001:2:0:40::/58"),
                net("198.18.0.9/32"),
                net("198.19.0.192/26"),
                net("2001:2:0:c0::/58"),
                net("2001:2::a/128"),
                net("198.18.0.8/32"),
            ]
        );
        let blue = reserved_by_records(list(), "h1", 42, "blue", 43);
        assert_eq!(
            blue,
            [
                net("198.19.0.128/26"),
                net("2001:2:0:80::/58"),
                net("198.18.0.9/32"),
                net("198.19.0.64/26"),
                net("2001:2:0:40::/58"),
                net("2001:2::a/128"),
                net("198.18.0.8/32"),
            ]
        );
        // Of four subnets, the first is never leased and the store's hosts
        // hold two: every attempt proposes the one left.
        for (range, len, reserved, left) in [
            ("198.19.0.0/24", 26, &default, "198.19.0.128/26"),
            ("198.19.0.0/24", 26, &blue, "198.19.0.192/26"),
            ("2001:2::/56", 58, &default, "2001:2:0:80::/58"),
            ("2001:2::/56", 58, &blue, "2001:2:0:c0::/58"),
        ] {
            let a = ask(range, &[], reserved).with_len(len);
            for attempt in 0..8 {
                let got = plan(&a, &[], attempt).propose;
                assert_eq!(got, Some(net(left)), "{range} {reserved:?}");
            }
        }
        // The subnet it held before is a static peer's now: not proposed.
        let prev = [net("198.19.0.64/26")];
        let a = ask("198.19.0.0/24", &prev, &default).with_len(26);
        assert_eq!(plan(&a, &[], 0).propose, Some(net("198.19.0.128/26")));
    }

    impl Ask<'_> {
        fn with_len(mut self, len: u8) -> Self {
            self.range.subnet_len = len;
            self
        }
    }

    /// Host `host`'s plan after listing `list` (subnet, lessee).
    fn plan_of(host: &str, range: LeaseRange, list: &[(IpNet, String)], attempt: u64) -> Plan {
        let held: Vec<Held> = list
            .iter()
            .map(|(n, who)| Held {
                subnet: *n,
                mine: who == host,
                mod_revision: 1,
            })
            .collect();
        let a = Ask {
            range,
            wanted: &[],
            previous: &[],
            reserved: &[],
            seed: seed(host),
        };
        plan(&a, &held, attempt)
    }

    /// Hosts racing for one range, as the store serializes their
    /// transactions: each round every loser lists again and proposes
    /// anew; a proposal wins only where no key exists. Every host ends
    /// with its own subnet, none shared, and a host that restarts takes
    /// its lease over. The same holds for every network: each plans from
    /// its own list.
    #[test]
    fn racing_hosts_get_distinct_subnets_and_keep_them_across_a_restart() {
        use std::collections::BTreeMap;
        for (range, len, hosts) in [("198.19.0.0/16", 24, 200u32), ("198.19.0.0/22", 26, 15)] {
            let range = LeaseRange::new(net(range), Some(len));
            // Subnet to lessee: the store's keys.
            let mut store: BTreeMap<IpNet, String> = BTreeMap::new();
            let mut left: Vec<String> = (0..hosts).map(|i| format!("n{i}")).collect();
            let mut attempt = 0;
            while !left.is_empty() {
                assert!(attempt < 64, "lost the race 64 times");
                let list: Vec<(IpNet, String)> =
                    store.iter().map(|(k, v)| (*k, v.clone())).collect();
                let plans: Vec<Plan> = left
                    .iter()
                    .map(|h| plan_of(h, range, &list, attempt))
                    .collect();
                let mut losers = Vec::new();
                for (h, p) in left.iter().zip(plans) {
                    let n = p.propose.expect("a free subnet");
                    // The transaction: created only where no key exists.
                    match store.entry(n) {
                        std::collections::btree_map::Entry::Occupied(_) => losers.push(h.clone()),
                        std::collections::btree_map::Entry::Vacant(v) => {
                            v.insert(h.clone());
                        }
                    }
                }
                left = losers;
                attempt += 1;
            }
            assert_eq!(store.len(), hosts as usize);
            let owners: std::collections::BTreeSet<&String> = store.values().collect();
            assert_eq!(owners.len(), hosts as usize);
            // n0 restarts: it takes its own lease over.
            let list: Vec<(IpNet, String)> = store.iter().map(|(k, v)| (*k, v.clone())).collect();
            let mine: Vec<IpNet> = plan_of("n0", range, &list, 0)
                .take_over
                .iter()
                .map(|h| h.subnet)
                .collect();
            let had: Vec<IpNet> = store
                .iter()
                .filter(|(_, w)| *w == "n0")
                .map(|(n, _)| *n)
                .collect();
            assert_eq!(mine, had);
        }
    }
}
