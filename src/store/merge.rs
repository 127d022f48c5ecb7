//! The topology a router runs: its file's, with the hosts and links of the
//! store's records added.
//!
//! Sans-IO and deterministic: every router that sees the same records
//! builds the same set of peers. Records are taken in the order they were
//! first written (their create revision), so where two records conflict
//! (the same subnet, the same underlay) the older one stays and the newer
//! one is rejected with its reason; a host that rewrites its record keeps
//! its place. The result keeps every invariant of [`Topology`] (see
//! `config`), checked here record by record in O(log n) each.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{self, addr, Host, Link, StoreLayout, Topology, UplinkIo};

use super::record::{self, Peer};
use super::{Reject, View};

/// A record left out of the topology, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub key: String,
    pub reason: Reject,
    pub detail: String,
}

/// The merged topology, this host's index in it and the records left out.
#[derive(Debug, Clone)]
pub struct Merged {
    pub topology: Topology,
    pub me: usize,
    pub rejected: Vec<Rejected>,
    /// Host records kept whose networks are partly not this router's.
    pub ignored: Vec<Ignored>,
    /// The keys of subnet leases in networks this router does not carry
    /// (well formed, but none of its business: other routers lease there).
    pub foreign_leases: Vec<String>,
    /// The revision of the view merged.
    pub revision: i64,
}

/// A store host's networks that this router's topology does not have, or
/// has under another VNI: left out of routing (this router does not carry
/// them), the host kept. Each is named, with both VNIs where they differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub key: String,
    pub networks: Vec<String>,
}

/// The address space of one network taken so far: subnets as disjoint
/// ranges, per family.
#[derive(Default)]
struct Space {
    /// Range start (family bit 128 set for IPv6 so families never meet)
    /// to (end, subnet).
    ranges: BTreeMap<(bool, u128), (u128, IpNet)>,
}

fn range(net: IpNet) -> (bool, u128, u128) {
    match net {
        IpNet::V4(n) => (
            false,
            u32::from(n.network()).into(),
            u32::from(n.broadcast()).into(),
        ),
        IpNet::V6(n) => (true, n.network().into(), n.broadcast().into()),
    }
}

fn point(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(a) => (false, u32::from(a).into()),
        IpAddr::V6(a) => (true, a.into()),
    }
}

impl Space {
    /// A taken subnet sharing an address with `net`.
    fn overlapping(&self, net: IpNet) -> Option<IpNet> {
        let (fam, start, end) = range(net);
        self.ranges
            .range(..=(fam, end))
            .next_back()
            .filter(|((f, _), (e, _))| *f == fam && *e >= start)
            .map(|(_, (_, n))| *n)
    }

    /// The taken subnet holding `a`.
    fn containing(&self, a: IpAddr) -> Option<IpNet> {
        self.overlapping(IpNet::from(a))
    }

    fn insert(&mut self, net: IpNet) {
        let (fam, start, end) = range(net);
        self.ranges.insert((fam, start), (end, net));
    }
}

/// What the hosts taken so far hold: one [`Space`] per network (subnets
/// of different networks may overlap, those of one may not), and the
/// underlays, VTEP MACs and names that all networks share.
struct Taken {
    /// By network index; `labels` names them for messages.
    spaces: Vec<Space>,
    labels: Vec<String>,
    underlays: BTreeMap<(bool, u128), String>,
    macs: BTreeSet<[u8; 6]>,
    names: BTreeSet<String>,
}

impl Taken {
    fn new(topo: &Topology) -> Taken {
        Taken {
            spaces: topo.networks.iter().map(|_| Space::default()).collect(),
            labels: topo
                .networks
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    if i == 0 {
                        String::new()
                    } else {
                        format!(" of network {:?}", n.name)
                    }
                })
                .collect(),
            underlays: BTreeMap::new(),
            macs: BTreeSet::new(),
            names: BTreeSet::new(),
        }
    }

    /// A taken underlay inside `net`.
    fn underlay_inside(&self, net: IpNet) -> Option<&str> {
        let (fam, start, end) = range(net);
        self.underlays
            .range((fam, start)..=(fam, end))
            .next()
            .map(|(_, name)| name.as_str())
    }

    fn add(&mut self, h: &Host) {
        for (n, &s) in h.all_subnets() {
            if let Some(space) = self.spaces.get_mut(n) {
                space.insert(s);
            }
        }
        self.underlays.insert(point(h.underlay), h.name.clone());
        self.macs.insert(h.vtep_mac.0);
        self.names.insert(h.name.clone());
    }

    /// Why `p`, with `net_subnets` its subnets in this topology's other
    /// networks, cannot join the hosts taken so far, if it cannot.
    fn check(&self, p: &Peer, net_subnets: &[(usize, IpNet)]) -> Result<(), (Reject, String)> {
        config::check_host_name(&p.name).map_err(|e| (Reject::BadField, e))?;
        if self.names.contains(&p.name) {
            return Err((
                Reject::Duplicate,
                format!("host {:?} is known already", p.name),
            ));
        }
        match addr::special(p.underlay) {
            Some(addr::Special::LinkLocal) if p.underlay.is_ipv4() => {}
            Some(s) => {
                return Err((
                    Reject::BadAddress,
                    format!("underlay {} is {}", p.underlay, s.describe()),
                ))
            }
            None => {}
        }
        if let Some(other) = self.underlays.get(&point(p.underlay)) {
            return Err((
                Reject::Duplicate,
                format!("underlay {} is host {other:?}'s", p.underlay),
            ));
        }
        if p.vtep_mac.is_multicast() || p.vtep_mac.is_zero() {
            return Err((
                Reject::BadAddress,
                format!("VTEP MAC {} is not unicast", p.vtep_mac),
            ));
        }
        if self.macs.contains(&p.vtep_mac.0) {
            return Err((
                Reject::Duplicate,
                format!("VTEP MAC {} is another host's", p.vtep_mac),
            ));
        }
        let mut own: Vec<Space> = self.spaces.iter().map(|_| Space::default()).collect();
        let all = p
            .subnets
            .iter()
            .map(|&s| (0, s))
            .chain(net_subnets.iter().copied());
        for (n, s) in all {
            let (Some(space), Some(own), Some(of)) =
                (self.spaces.get(n), own.get_mut(n), self.labels.get(n))
            else {
                continue;
            };
            if s.trunc() != s {
                return Err((
                    Reject::BadAddress,
                    format!("subnet {s}{of} has host bits set"),
                ));
            }
            if let Some((block, class)) = addr::special_overlapping(s) {
                return Err((
                    Reject::BadAddress,
                    format!(
                        "subnet {s}{of} shares addresses with {block}, {}",
                        class.describe()
                    ),
                ));
            }
            if let Some(other) = space.overlapping(s).or_else(|| own.overlapping(s)) {
                return Err((Reject::Overlap, format!("subnet {s}{of} overlaps {other}")));
            }
            if let Some(h) = self.underlay_inside(s) {
                return Err((
                    Reject::Overlap,
                    format!("subnet {s}{of} holds host {h:?}'s underlay"),
                ));
            }
            if s.contains(&p.underlay) {
                return Err((
                    Reject::Overlap,
                    format!("subnet {s}{of} holds the host's own underlay"),
                ));
            }
            own.insert(s);
        }
        for (space, of) in self.spaces.iter().zip(&self.labels) {
            if let Some(n) = space.containing(p.underlay) {
                return Err((
                    Reject::Overlap,
                    format!("underlay {} lies inside subnet {n}{of}", p.underlay),
                ));
            }
        }
        Ok(())
    }
}

/// What a record under the prefix is, by its key.
enum Kind<'k> {
    Host(&'k str),
    Link,
    /// A subnet lease of the vxrouter layout, in any network: checked,
    /// never a host (the lessee's host record says what it routes).
    Claim,
    /// Neither a host nor checked: flannel's config.
    Other,
    Lease(&'k str),
    Unknown,
}

fn kind(layout: StoreLayout, key: &str) -> Kind<'_> {
    match layout {
        StoreLayout::Vxrouter => {
            if let Some(name) = key.strip_prefix("hosts/") {
                Kind::Host(name)
            } else if key.starts_with("links/") {
                Kind::Link
            } else if key.starts_with("subnets/") || key.starts_with("networks/") {
                Kind::Claim
            } else if key == "config" {
                Kind::Other
            } else {
                Kind::Unknown
            }
        }
        StoreLayout::Flannel => match key.strip_prefix("subnets/") {
            Some(k) => Kind::Lease(k),
            None => Kind::Other,
        },
    }
}

/// `file` (whose host `me` runs here, its leased subnets already in place)
/// with the hosts and links of `view` added.
///
/// Without any link, in the file or the store, this host reaches every
/// host of its underlay family directly at cost 1, as flannel's vxlan
/// backend does; link records, once there are any, say which hosts are
/// adjacent.
pub fn merge(file: &Topology, me: usize, layout: StoreLayout, view: &View) -> Merged {
    let mut topo = file.clone();
    let mut rejected = Vec::new();
    let mut ignored = Vec::new();
    let mut foreign_leases = Vec::new();
    let mut taken = Taken::new(&topo);
    for h in &topo.hosts {
        taken.add(h);
    }
    let vni = topo.overlay.vni;
    let my_name = topo.hosts[me].name.clone();
    let my_underlay = topo.hosts[me].underlay;
    let mut ordered: Vec<(&String, &super::Entry)> = view.entries.iter().collect();
    ordered.sort_by_key(|(k, e)| (e.create_revision, *k));
    let mut links = Vec::new();
    for (key, entry) in ordered {
        let mut reject = |reason, detail| {
            rejected.push(Rejected {
                key: key.clone(),
                reason,
                detail,
            })
        };
        let decoded = match kind(layout, key) {
            Kind::Host(name) if name == my_name => continue,
            Kind::Host(name) => record::decode_host(name, &entry.value, vni),
            Kind::Lease(k) => match record::decode_flannel_lease(k, &entry.value, vni) {
                // This host's own lease, under any subnet.
                Ok(p) if p.underlay == my_underlay => continue,
                other => other,
            },
            Kind::Link => {
                match record::decode_link(&entry.value) {
                    Ok(l) => links.push((key, l)),
                    Err((r, d)) => reject(r, d),
                }
                continue;
            }
            Kind::Claim => {
                match record::decode_claim(key, &entry.value) {
                    Some(Ok((lease, _))) => {
                        if topo.network_index(lease.network).is_none() {
                            foreign_leases.push(key.clone());
                        }
                    }
                    Some(Err((r, d))) => reject(r, d),
                    None => reject(
                        Reject::UnknownKey,
                        format!("expected {}", record::describe(layout)),
                    ),
                }
                continue;
            }
            Kind::Other => continue,
            Kind::Unknown => {
                reject(
                    Reject::UnknownKey,
                    format!("expected {}", record::describe(layout)),
                );
                continue;
            }
        };
        let peer = match decoded {
            Ok(p) => p,
            Err((r, d)) => {
                reject(r, d);
                continue;
            }
        };
        // Networks by this topology's indices; a network it does not have,
        // or has under another VNI, is one this router does not carry: its
        // subnets never enter the network of that name here, nor the one
        // that has the record's VNI here.
        let mut net_subnets = Vec::new();
        let mut unknown = Vec::new();
        for (name, net) in &peer.networks {
            match topo.network_index(name) {
                Some(n) if n > 0 => match net.vni {
                    Some(v) if v != topo.networks[n].vni => unknown.push(format!(
                        "{name} (VNI {v} there, {} here)",
                        topo.networks[n].vni
                    )),
                    _ => net_subnets.extend(net.subnets.iter().map(|&s| (n, s))),
                },
                _ => unknown.push(name.clone()),
            }
        }
        if let Err((r, d)) = taken.check(&peer, &net_subnets) {
            reject(r, d);
            continue;
        }
        if !unknown.is_empty() {
            ignored.push(Ignored {
                key: key.clone(),
                networks: unknown,
            });
        }
        let host = Host {
            name: peer.name,
            underlay: peer.underlay,
            underlay_mac: None,
            vtep_mac: peer.vtep_mac,
            subnets: peer.subnets,
            net_subnets,
            nic: None,
            workers: vec![0],
            uplink_io: UplinkIo::default(),
            ports: Vec::new(),
        };
        taken.add(&host);
        topo.hosts.push(host);
    }
    let index: BTreeMap<&str, usize> = topo
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.as_str(), i))
        .collect();
    let mut pairs: BTreeSet<(usize, usize)> = topo
        .links
        .iter()
        .filter_map(|l| {
            Some(ordered_pair(
                *index.get(l.a.as_str())?,
                *index.get(l.b.as_str())?,
            ))
        })
        .collect();
    let mut new_links = Vec::new();
    let explicit = !topo.links.is_empty() || !links.is_empty();
    for (key, l) in links {
        let ends = (index.get(l.a.as_str()), index.get(l.b.as_str()));
        let detail = match ends {
            _ if l.cost == 0 => Some("cost 0: costs are >= 1".to_owned()),
            (Some(&a), Some(&b)) if a == b => Some(format!("links host {:?} to itself", l.a)),
            (Some(&a), Some(&b))
                if topo.hosts[a].underlay.is_ipv4() != topo.hosts[b].underlay.is_ipv4() =>
            {
                Some("its ends' underlays are of different families".to_owned())
            }
            (Some(&a), Some(&b)) if !pairs.insert(ordered_pair(a, b)) => {
                Some(format!("{:?} and {:?} are linked already", l.a, l.b))
            }
            (Some(_), Some(_)) => None,
            (a, _) => {
                let missing = if a.is_none() { &l.a } else { &l.b };
                Some(format!("names no known host {missing:?}"))
            }
        };
        match detail {
            Some(d) => rejected.push(Rejected {
                key: key.clone(),
                reason: Reject::BadLink,
                detail: d,
            }),
            None => new_links.push(Link {
                a: l.a,
                b: l.b,
                cost: l.cost,
            }),
        }
    }
    topo.links.extend(new_links);
    if !explicit {
        let v4 = my_underlay.is_ipv4();
        for (i, h) in topo.hosts.iter().enumerate() {
            if i != me && h.underlay.is_ipv4() == v4 {
                topo.links.push(Link {
                    a: my_name.clone(),
                    b: h.name.clone(),
                    cost: 1,
                });
            }
        }
    }
    Merged {
        topology: topo,
        me,
        rejected,
        ignored,
        foreign_leases,
        revision: view.revision,
    }
}

fn ordered_pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

#[cfg(test)]
mod tests {
    use super::super::Entry;
    use super::*;

    /// Each record left out: its key and reason, in order.
    fn rejected(m: &Merged) -> Vec<(&str, Reject)> {
        m.rejected
            .iter()
            .map(|r| (r.key.as_str(), r.reason))
            .collect()
    }

    fn file() -> Topology {
        config::parse(
            "[overlay]\nvni = 42\n[[hosts]]\nname = \"h1\"\nunderlay = \"198.18.0.1\"\nsubnets = [\"198.19.1.0/24\"]\n",
            "t.toml",
        )
        .unwrap()
    }

    fn host(name: &str, n: u8, subnet: &str) -> Vec<u8> {
        format!(
            r#"{{"name":"{name}","underlay":"198.18.0.{n}","vtep_mac":"02:42:c6:12:00:{n:02x}","subnets":["{subnet}"],"vni":42}}"#
        )
        .into_bytes()
    }

    fn view(entries: &[(&str, Vec<u8>)]) -> View {
        View {
            revision: 100,
            entries: entries
                .iter()
                .enumerate()
                .map(|(i, (k, v))| {
                    (
                        (*k).to_owned(),
                        Entry {
                            value: v.clone(),
                            create_revision: i as i64 + 1,
                            mod_revision: i as i64 + 1,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn store_hosts_join_in_a_mesh_from_this_host() {
        let v = view(&[
            ("hosts/h2", host("h2", 2, "198.19.2.0/24")),
            ("hosts/h3", host("h3", 3, "198.19.3.0/24")),
            ("hosts/h1", host("h1", 1, "198.19.1.0/24")),
            ("subnets/198.19.9.0-24", br#"{"host":"h9"}"#.to_vec()),
        ]);
        let m = merge(&file(), 0, StoreLayout::Vxrouter, &v);
        assert!(m.rejected.is_empty(), "{:?}", m.rejected);
        let names: Vec<&str> = m.topology.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["h1", "h2", "h3"]);
        assert_eq!(m.topology.links.len(), 2);
        assert!(m.topology.links.iter().all(|l| l.a == "h1" && l.cost == 1));
        let routes = crate::route::compute(&m.topology, 0).unwrap();
        // This host's own subnet and one per peer.
        assert_eq!(routes.routes.len(), 3);
    }

    #[test]
    fn each_bad_record_is_rejected_with_its_reason_and_the_older_record_stays() {
        let v = view(&[
            ("hosts/h2", host("h2", 2, "198.19.2.0/24")),
            ("hosts/h3", host("h3", 3, "198.19.2.128/25")),
            ("hosts/h4", b"not json".to_vec()),
            ("hosts/h5", host("h5", 2, "198.19.5.0/24")),
            ("hosts/h6", host("h6", 6, "127.0.0.0/8")),
            ("hosts/h7", host("h7", 7, "198.19.7.0/24").replace_vni(7)),
            ("hosts/h8", host("h9", 8, "198.19.8.0/24")),
            ("hosts/h10", host("h10", 10, "198.18.0.0/24")),
            ("links/x", br#"{"a":"h2","b":"nobody"}"#.to_vec()),
            ("other", b"{}".to_vec()),
        ]);
        let m = merge(&file(), 0, StoreLayout::Vxrouter, &v);
        let got = rejected(&m);
        assert_eq!(
            got,
            [
                ("hosts/h3", Reject::Overlap),
                ("hosts/h4", Reject::NotJson),
                ("hosts/h5", Reject::Duplicate),
                ("hosts/h6", Reject::BadAddress),
                ("hosts/h7", Reject::ForeignVni),
                ("hosts/h8", Reject::KeyMismatch),
                ("hosts/h10", Reject::Overlap),
                ("other", Reject::UnknownKey),
                ("links/x", Reject::BadLink),
            ]
        );
        let names: Vec<&str> = m.topology.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["h1", "h2"]);
        // An explicit link record (even a rejected one) turns the implied
        // mesh off.
        assert!(m.topology.links.is_empty());
    }

    trait ReplaceVni {
        fn replace_vni(self, vni: u32) -> Vec<u8>;
    }
    impl ReplaceVni for Vec<u8> {
        fn replace_vni(self, vni: u32) -> Vec<u8> {
            String::from_utf8(self)
                .unwrap()
                .replace("\"vni\":42", &format!("\"vni\":{vni}"))
                .into_bytes()
        }
    }

    #[test]
    fn flannel_leases_become_hosts_and_this_hosts_lease_is_skipped() {
        let lease = |ip: &str, mac: &str| {
            format!(r#"{{"PublicIP":"{ip}","BackendType":"vxlan","BackendData":{{"VNI":42,"VtepMAC":"{mac}"}}}}"#).into_bytes()
        };
        let v = view(&[
            ("config", br#"{"Network":"198.19.0.0/16"}"#.to_vec()),
            (
                "subnets/198.19.1.0-24",
                lease("198.18.0.1", "02:42:c6:12:00:01"),
            ),
            (
                "subnets/198.19.2.0-24",
                lease("198.18.0.2", "9a:00:00:00:00:02"),
            ),
            (
                "subnets/198.19.3.7-24",
                lease("198.18.0.3", "9a:00:00:00:00:03"),
            ),
        ]);
        let m = merge(&file(), 0, StoreLayout::Flannel, &v);
        let names: Vec<&str> = m.topology.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["h1", "198.19.2.0-24"]);
        assert_eq!(m.rejected.len(), 1);
        assert_eq!(m.rejected[0].reason, Reject::KeyMismatch);
    }

    /// h1 with a subnet in the default network and one in "blue".
    fn two_networks() -> Topology {
        config::parse(
            "[overlay]\nvni = 42\n[[networks]]\nname = \"blue\"\nvni = 43\n[networks.subnets]\nh1 = [\"198.19.101.0/24\"]\n\
             [[hosts]]\nname = \"h1\"\nunderlay = \"198.18.0.1\"\nsubnets = [\"198.19.1.0/24\"]\n",
            "t.toml",
        )
        .unwrap()
    }

    fn host_in(name: &str, n: u8, subnet: &str, networks: &str) -> Vec<u8> {
        format!(
            r#"{{"name":"{name}","underlay":"198.18.0.{n}","vtep_mac":"02:42:c6:12:00:{n:02x}","subnets":["{subnet}"],"vni":42,"networks":{networks}}}"#
        )
        .into_bytes()
    }

    fn prefixes<'a>(it: impl Iterator<Item = &'a IpNet>) -> Vec<String> {
        it.map(ToString::to_string).collect()
    }

    #[test]
    fn store_hosts_bring_their_subnets_in_this_routers_networks() {
        let v = view(&[
            // Blue may reuse the default network's addresses.
            (
                "hosts/h2",
                host_in(
                    "h2",
                    2,
                    "198.19.2.0/24",
                    r#"{"blue":{"vni":43,"subnets":["198.19.1.0/24","198.19.102.0/24"]}}"#,
                ),
            ),
            // A network this router does not carry: the host stays, those
            // subnets are not routed, however they overlap. Blue as a
            // record written before records carried VNIs: by name.
            (
                "hosts/h3",
                host_in(
                    "h3",
                    3,
                    "198.19.3.0/24",
                    r#"{"red":["198.19.1.0/24","198.18.0.0/16"],"blue":["198.19.103.0/24"]}"#,
                ),
            ),
        ]);
        let m = merge(&two_networks(), 0, StoreLayout::Vxrouter, &v);
        assert!(m.rejected.is_empty(), "{:?}", m.rejected);
        let t = &m.topology;
        assert_eq!(prefixes(t.hosts[1].subnets_in(0)), ["198.19.2.0/24"]);
        assert_eq!(
            prefixes(t.hosts[1].subnets_in(1)),
            ["198.19.1.0/24", "198.19.102.0/24"]
        );
        assert_eq!(prefixes(t.hosts[2].subnets_in(1)), ["198.19.103.0/24"]);
        assert_eq!(t.hosts[2].all_subnets().count(), 2);
        assert_eq!(
            m.ignored,
            [Ignored {
                key: "hosts/h3".into(),
                networks: vec!["red".into()]
            }]
        );
        let routes = crate::route::compute(t, 0).unwrap();
        let mut blue: Vec<(String, usize)> = routes
            .routes
            .iter()
            .filter(|r| r.network == 1)
            .map(|r| (r.prefix.to_string(), r.owner))
            .collect();
        blue.sort();
        assert_eq!(
            blue,
            [
                ("198.19.1.0/24".to_owned(), 1),
                ("198.19.101.0/24".to_owned(), 0),
                ("198.19.102.0/24".to_owned(), 1),
                ("198.19.103.0/24".to_owned(), 2),
            ]
        );
        // A router without networks keeps the hosts, routes their default
        // subnets and ignores the rest.
        let m = merge(&file(), 0, StoreLayout::Vxrouter, &v);
        assert!(m.rejected.is_empty(), "{:?}", m.rejected);
        assert_eq!(m.topology.hosts.len(), 3);
        assert!(m.topology.hosts.iter().all(|h| h.net_subnets.is_empty()));
        assert_eq!(m.ignored.len(), 2);
    }

    #[test]
    fn a_network_under_another_vni_is_not_carried() {
        let v = view(&[
            // Blue is VNI 43 here: h2's blue is another network.
            (
                "hosts/h2",
                host_in(
                    "h2",
                    2,
                    "198.19.2.0/24",
                    r#"{"blue":{"vni":44,"subnets":["198.19.102.0/24"]}}"#,
                ),
            ),
            // VNI 43 under another name is not blue either.
            (
                "hosts/h3",
                host_in(
                    "h3",
                    3,
                    "198.19.3.0/24",
                    r#"{"green":{"vni":43,"subnets":["198.19.103.0/24"]}}"#,
                ),
            ),
        ]);
        let m = merge(&two_networks(), 0, StoreLayout::Vxrouter, &v);
        assert!(m.rejected.is_empty(), "{:?}", m.rejected);
        let t = &m.topology;
        assert_eq!(t.hosts.len(), 3);
        assert!(t.hosts[1..].iter().all(|h| h.net_subnets.is_empty()));
        assert_eq!(prefixes(t.hosts[1].subnets_in(0)), ["198.19.2.0/24"]);
        assert_eq!(
            m.ignored,
            [
                Ignored {
                    key: "hosts/h2".into(),
                    networks: vec!["blue (VNI 44 there, 43 here)".into()]
                },
                Ignored {
                    key: "hosts/h3".into(),
                    networks: vec!["green".into()]
                }
            ]
        );
        let routes = crate::route::compute(t, 0).unwrap();
        let blue: Vec<String> = routes
            .routes
            .iter()
            .filter(|r| r.network == 1)
            .map(|r| r.prefix.to_string())
            .collect();
        assert_eq!(blue, ["198.19.101.0/24"]);
    }

    #[test]
    fn network_subnets_are_checked_within_their_network() {
        let v = view(&[
            (
                "hosts/h2",
                host_in("h2", 2, "198.19.2.0/24", r#"{"blue":["198.18.5.0/24"]}"#),
            ),
            // Overlaps the file host's blue subnet.
            (
                "hosts/h3",
                host_in(
                    "h3",
                    3,
                    "198.19.3.0/24",
                    r#"{"blue":["198.19.101.128/25"]}"#,
                ),
            ),
            // Overlaps a store host's blue subnet.
            (
                "hosts/h4",
                host_in("h4", 4, "198.19.4.0/24", r#"{"blue":["198.18.5.0/25"]}"#),
            ),
            // Overlaps itself within blue.
            (
                "hosts/h5",
                host_in(
                    "h5",
                    5,
                    "198.19.5.0/24",
                    r#"{"blue":["198.19.105.0/24","198.19.105.0/25"]}"#,
                ),
            ),
            // Holds an underlay.
            (
                "hosts/h6",
                host_in("h6", 6, "198.19.6.0/24", r#"{"blue":["198.18.0.0/24"]}"#),
            ),
            // Holds its own underlay.
            (
                "hosts/h7",
                host_in("h7", 7, "198.19.7.0/24", r#"{"blue":["198.18.0.7/32"]}"#),
            ),
            (
                "hosts/h8",
                host_in("h8", 8, "198.19.8.0/24", r#"{"blue":["127.0.0.0/8"]}"#),
            ),
            (
                "hosts/h9",
                host_in("h9", 9, "198.19.9.0/24", r#"{"blue":["198.19.109.1/24"]}"#),
            ),
            // An underlay inside a store host's blue subnet.
            (
                "hosts/h10",
                host_in("h10", 10, "198.19.10.0/24", "{}").replace_underlay("198.18.5.9"),
            ),
            (
                "hosts/h11",
                host_in("h11", 11, "198.19.11.0/24", r#"{"bad name":[]}"#),
            ),
            // The same blue subnet as the default network's of h1 and
            // h2: fine.
            (
                "hosts/h12",
                host_in("h12", 12, "198.19.12.0/24", r#"{"blue":["198.19.2.0/24"]}"#),
            ),
        ]);
        let m = merge(&two_networks(), 0, StoreLayout::Vxrouter, &v);
        let got = rejected(&m);
        assert_eq!(
            got,
            [
                ("hosts/h3", Reject::Overlap),
                ("hosts/h4", Reject::Overlap),
                ("hosts/h5", Reject::Overlap),
                ("hosts/h6", Reject::Overlap),
                ("hosts/h7", Reject::Overlap),
                ("hosts/h8", Reject::BadAddress),
                ("hosts/h9", Reject::BadAddress),
                ("hosts/h10", Reject::Overlap),
                ("hosts/h11", Reject::BadField),
            ]
        );
        assert!(m.rejected[0].detail.contains("of network \"blue\""));
        assert!(m.rejected[7].detail.contains("of network \"blue\""));
        let names: Vec<&str> = m.topology.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["h1", "h2", "h12"]);
    }

    #[test]
    fn leases_of_every_network_are_checked_and_those_of_unknown_networks_counted() {
        let claim = |h: &str| format!(r#"{{"host":"{h}"}}"#).into_bytes();
        let v = view(&[
            ("subnets/198.19.5.0-24", claim("h5")),
            ("networks/blue/subnets/198.19.5.0-24", claim("h5")),
            ("networks/red/subnets/198.19.5.0-24", claim("h5")),
            ("networks/blue/subnets/198.19.6.1-24", claim("h6")),
            ("networks/blue/subnets/198.19.7.0-24", b"{".to_vec()),
            ("networks/blue/subnets/198.19.8.0-24", claim("h 8")),
            ("networks/bad name/subnets/198.19.9.0-24", claim("h9")),
            ("networks/blue/other", claim("h9")),
            ("subnets/198.19.10.0", claim("h10")),
            (
                "subnets/198.19.11.0-24",
                br#"{"host":"h11","extra":1}"#.to_vec(),
            ),
        ]);
        let m = merge(&two_networks(), 0, StoreLayout::Vxrouter, &v);
        assert_eq!(
            rejected(&m),
            [
                ("networks/blue/subnets/198.19.6.1-24", Reject::KeyMismatch),
                ("networks/blue/subnets/198.19.7.0-24", Reject::NotJson),
                ("networks/blue/subnets/198.19.8.0-24", Reject::BadField),
                (
                    "networks/bad name/subnets/198.19.9.0-24",
                    Reject::KeyMismatch
                ),
                ("networks/blue/other", Reject::UnknownKey),
                ("subnets/198.19.10.0", Reject::KeyMismatch),
                ("subnets/198.19.11.0-24", Reject::BadField),
            ]
        );
        assert_eq!(m.foreign_leases, ["networks/red/subnets/198.19.5.0-24"]);
        // Leases are not hosts.
        assert_eq!(m.topology.hosts.len(), 1);
        // Without blue, its leases are foreign too.
        let m = merge(&file(), 0, StoreLayout::Vxrouter, &v);
        assert_eq!(m.foreign_leases.len(), 2);
    }

    trait ReplaceUnderlay {
        fn replace_underlay(self, underlay: &str) -> Vec<u8>;
    }
    impl ReplaceUnderlay for Vec<u8> {
        fn replace_underlay(self, underlay: &str) -> Vec<u8> {
            let s = String::from_utf8(self).unwrap();
            let start = s.find("\"underlay\":\"").unwrap() + 12;
            let end = start + s[start..].find('"').unwrap();
            format!("{}{underlay}{}", &s[..start], &s[end..]).into_bytes()
        }
    }

    #[test]
    fn a_thousand_hosts_merge_and_route() {
        let entries: Vec<(String, Vec<u8>)> = (0..1000u32)
            .map(|i| {
                let name = format!("n{i}");
                let v = format!(
                    r#"{{"name":"{name}","underlay":"198.18.{}.{}","vtep_mac":"02:42:00:00:{:02x}:{:02x}","subnets":["198.19.{}.{}/30"],"vni":42}}"#,
                    4 + i / 250,
                    1 + i % 250,
                    i >> 8,
                    i & 0xff,
                    10 + i / 64,
                    (i % 64) * 4
                );
                (format!("hosts/{name}"), v.into_bytes())
            })
            .collect();
        let refs: Vec<(&str, Vec<u8>)> = entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let m = merge(&file(), 0, StoreLayout::Vxrouter, &view(&refs));
        assert!(m.rejected.is_empty(), "{:?}", &m.rejected[..1]);
        assert_eq!(m.topology.hosts.len(), 1001);
        let routes = crate::route::compute(&m.topology, 0).unwrap();
        assert_eq!(routes.routes.len(), 1001);
    }
}
