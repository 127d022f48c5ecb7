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
    /// The revision of the view merged.
    pub revision: i64,
}

/// Address space taken so far: subnets as disjoint ranges and underlay
/// addresses, per family.
#[derive(Default)]
struct Space {
    /// Range start (family bit 128 set for IPv6 so families never meet)
    /// to (end, subnet).
    ranges: BTreeMap<(bool, u128), (u128, IpNet)>,
    underlays: BTreeMap<(bool, u128), String>,
    macs: BTreeSet<[u8; 6]>,
    names: BTreeSet<String>,
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

    /// A taken underlay inside `net`.
    fn underlay_inside(&self, net: IpNet) -> Option<&str> {
        let (fam, start, end) = range(net);
        self.underlays
            .range((fam, start)..=(fam, end))
            .next()
            .map(|(_, name)| name.as_str())
    }

    fn add(&mut self, h: &Host) {
        for &s in &h.subnets {
            let (fam, start, end) = range(s);
            self.ranges.insert((fam, start), (end, s));
        }
        self.underlays.insert(point(h.underlay), h.name.clone());
        self.macs.insert(h.vtep_mac.0);
        self.names.insert(h.name.clone());
    }

    /// Why `p` cannot join the hosts taken so far, if it cannot.
    fn check(&self, p: &Peer) -> Result<(), (Reject, String)> {
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
        let mut own = Space::default();
        for &s in &p.subnets {
            if s.trunc() != s {
                return Err((Reject::BadAddress, format!("subnet {s} has host bits set")));
            }
            if let Some((block, class)) = addr::special_overlapping(s) {
                return Err((
                    Reject::BadAddress,
                    format!(
                        "subnet {s} shares addresses with {block}, {}",
                        class.describe()
                    ),
                ));
            }
            if let Some(n) = self.overlapping(s).or_else(|| own.overlapping(s)) {
                return Err((Reject::Overlap, format!("subnet {s} overlaps {n}")));
            }
            if let Some(h) = self.underlay_inside(s) {
                return Err((
                    Reject::Overlap,
                    format!("subnet {s} holds host {h:?}'s underlay"),
                ));
            }
            if s.contains(&p.underlay) {
                return Err((
                    Reject::Overlap,
                    format!("subnet {s} holds the host's own underlay"),
                ));
            }
            let (fam, start, end) = range(s);
            own.ranges.insert((fam, start), (end, s));
        }
        let (fam, a) = point(p.underlay);
        if let Some(n) = self
            .ranges
            .range(..=(fam, a))
            .next_back()
            .filter(|((f, _), (e, _))| *f == fam && *e >= a)
            .map(|(_, (_, n))| *n)
        {
            return Err((
                Reject::Overlap,
                format!("underlay {} lies inside subnet {n}", p.underlay),
            ));
        }
        Ok(())
    }
}

/// What a record under the prefix is, by its key.
enum Kind<'k> {
    Host(&'k str),
    Link,
    /// Not a host: a subnet claim of the vxrouter layout, or flannel's
    /// config.
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
            } else if key.starts_with("subnets/") || key == "config" {
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
    let mut space = Space::default();
    for h in &topo.hosts {
        space.add(h);
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
            Kind::Other => continue,
            Kind::Unknown => {
                reject(
                    Reject::UnknownKey,
                    format!("expected {}", record::describe(layout)),
                );
                continue;
            }
        };
        let peer = match decoded.and_then(|p| space.check(&p).map(|()| p)) {
            Ok(p) => p,
            Err((r, d)) => {
                reject(r, d);
                continue;
            }
        };
        let host = Host {
            name: peer.name,
            underlay: peer.underlay,
            underlay_mac: None,
            vtep_mac: peer.vtep_mac,
            subnets: peer.subnets,
            net_subnets: Vec::new(),
            nic: None,
            workers: vec![0],
            uplink_io: UplinkIo::default(),
            ports: Vec::new(),
        };
        space.add(&host);
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
        let got: Vec<(&str, Reject)> = m
            .rejected
            .iter()
            .map(|r| (r.key.as_str(), r.reason))
            .collect();
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
