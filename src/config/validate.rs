//! Cross-checks: rules that relate several fields or entries of a topology.
//!
//! Runs on whatever `schema` could read, so problems are found even when
//! other parts of the file are broken. Each problem is reported once, at the
//! later of the two places involved, with the line of the earlier one; a
//! gateway in another host's subnet is reported at the gateway.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::addr::{self, Special};
use super::diag::Sink;
use super::schema::{
    Spanned, UncheckedHost, UncheckedPort, UncheckedTopology, MAX_PORTS, MIN_MTU_V6,
};
use super::tree::Span;
use super::{MacAddr, StoreLayout, DEFAULT_NETWORK};
use crate::dataplane::tables::{OUTER_V4_LEN, OUTER_V6_LEN};
use crate::port::MAX_FRAME;
use crate::wire::ethernet;

/// Runs every cross-check; fills in derived gateways.
pub(crate) fn cross_check(raw: &mut UncheckedTopology, sink: &mut Sink) {
    unique_hosts(raw, sink);
    networks(raw, sink);
    // Before `ports` derives gateways: only configured ones are checked.
    address_classes(raw, sink);
    placement(raw, sink);
    lease_ranges(raw, sink);
    for (i, h) in raw.hosts.iter_mut().enumerate() {
        ports(h, &format!("hosts[{i}]"), sink);
    }
    links(raw, sink);
    ipv6_mtu(raw, sink);
    encapsulated_mtu(raw, sink);
}

/// Host names, underlay addresses and VTEP MACs identify a host: each must be
/// unique across the topology.
fn unique_hosts(raw: &UncheckedTopology, sink: &mut Sink) {
    let mut names: HashMap<&str, Span> = HashMap::new();
    let mut underlays: HashMap<IpAddr, (Span, &str)> = HashMap::new();
    let mut macs: HashMap<MacAddr, (Span, usize)> = HashMap::new();
    for (i, h) in raw.hosts.iter().enumerate() {
        let hname = h.name.as_ref().map_or("?", |n| n.value.as_str());
        if let Some(n) = &h.name {
            if let Some(first) = names.get(n.value.as_str()) {
                let line = sink.line_of(first);
                sink.error(
                    &n.span,
                    format!("hosts[{i}].name"),
                    format!(
                        "duplicate host name {:?} (first defined on line {line})",
                        n.value
                    ),
                );
            } else {
                names.insert(&n.value, n.span.clone());
            }
        }
        if let Some(u) = &h.underlay {
            if let Some((first, other)) = underlays.get(&u.value) {
                let line = sink.line_of(first);
                sink.error(
                    &u.span,
                    format!("hosts[{i}].underlay"),
                    format!(
                        "duplicate underlay address {} (also host {other:?}, line {line})",
                        u.value
                    ),
                );
                if h.vtep_mac.is_none() {
                    // Its derived MAC collides too; one report is enough.
                    continue;
                }
            } else {
                underlays.insert(u.value, (u.span.clone(), hname));
            }
            if h.vtep_mac.is_none() && embeds_v4(u.value) {
                // `address_classes` refuses this underlay, and its derived
                // MAC is that of the IPv4 address it embeds: one report is
                // enough.
                continue;
            }
            let (mac, span, derived) = match &h.vtep_mac {
                Some(m) => (m.value, m.span.clone(), false),
                None => (MacAddr::derived_from(u.value), u.span.clone(), true),
            };
            if let Some((first, j)) = macs.get(&mac) {
                let line = sink.line_of(first);
                let how = if derived {
                    "derived vtep_mac"
                } else {
                    "vtep_mac"
                };
                let other = raw.hosts[*j]
                    .name
                    .as_ref()
                    .map_or("?", |n| n.value.as_str());
                sink.error(
                    &span,
                    format!("hosts[{i}].vtep_mac"),
                    format!("{how} {mac} duplicates the VTEP MAC of host {other:?} (line {line}); set a distinct vtep_mac"),
                );
            } else {
                macs.insert(mac, (span, i));
            }
        } else if let Some(m) = &h.vtep_mac {
            macs.entry(m.value).or_insert((m.span.clone(), i));
        }
    }
}

/// Whether `a` is an IPv6 address that embeds an IPv4 one.
fn embeds_v4(a: IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if addr::embedded_v4(v6).is_some())
}

/// Where each address of the topology lies, in one sweep over every subnet,
/// underlay address and configured gateway:
/// - each container prefix has exactly one owner, or forwarding would be
///   ambiguous: no two subnets anywhere in the topology may overlap;
/// - the underlay and the overlay share no address: no underlay address
///   lies inside any host's subnet;
/// - a configured gateway lies in no other host's subnet: the router
///   answers for its ports' gateways itself, so that remote address would
///   be a black hole for the port's container (reported at the gateway).
fn placement(raw: &UncheckedTopology, sink: &mut Sink) {
    #[derive(PartialEq)]
    enum What {
        Subnet,
        Underlay,
        Gateway,
    }
    struct S<'a> {
        /// The overlay network the prefix belongs to: address spaces of
        /// different networks may overlap.
        space: usize,
        net: IpNet,
        span: &'a Span,
        host: usize,
        what: What,
        field: String,
    }
    let spaces = raw.networks.len() + 1;
    let mut all: Vec<S> = Vec::new();
    for (i, h) in raw.hosts.iter().enumerate() {
        for (j, s) in h.subnets.iter().enumerate() {
            all.push(S {
                space: 0,
                net: s.value,
                span: &s.span,
                host: i,
                what: What::Subnet,
                field: format!("hosts[{i}].subnets[{j}]"),
            });
        }
        for (n, s, field) in &h.net_subnets {
            all.push(S {
                space: *n,
                net: s.value,
                span: &s.span,
                host: i,
                what: What::Subnet,
                field: field.clone(),
            });
        }
        if let Some(u) = &h.underlay {
            // No network's containers may use an underlay address.
            for space in 0..spaces {
                all.push(S {
                    space,
                    net: IpNet::from(u.value),
                    span: &u.span,
                    host: i,
                    what: What::Underlay,
                    field: format!("hosts[{i}].underlay"),
                });
            }
        }
        for (pi, p) in h.ports.iter().enumerate() {
            for (gi, g) in p.gateways.iter().enumerate() {
                all.push(S {
                    space: p.net,
                    net: IpNet::from(g.value),
                    span: &g.span,
                    host: i,
                    what: What::Gateway,
                    field: gateway_field(p, &format!("hosts[{i}].ports[{pi}]"), gi),
                });
            }
        }
    }
    // Sorted by network, then network address, then shorter prefix first
    // (subnets before the addresses equal to them), two prefixes overlap
    // iff the later one lies inside an earlier one of the same network
    // still "open" on the stack: an O(n log n) sweep instead of comparing
    // every pair. Only subnets are opened: a single address holds nothing
    // but itself.
    all.sort_by(|x, y| {
        (
            x.space,
            x.net.network(),
            x.net.prefix_len(),
            x.what != What::Subnet,
        )
            .cmp(&(
                y.space,
                y.net.network(),
                y.net.prefix_len(),
                y.what != What::Subnet,
            ))
    });
    let name = |i: usize| raw_name(raw, i);
    let mut stack: Vec<usize> = Vec::new();
    for k in 0..all.len() {
        while let Some(&top) = stack.last() {
            if all[top].space == all[k].space && all[top].net.contains(&all[k].net) {
                break;
            }
            stack.pop();
        }
        let cur = &all[k];
        if let Some(&top) = stack.last() {
            let outer = &all[top];
            let same_host = outer.host == cur.host;
            let late_k = outer.span.start <= cur.span.start;
            let (early, late) = if late_k { (outer, cur) } else { (cur, outer) };
            let line = sink.line_of(early.span);
            let owner = if same_host {
                "this host".to_string()
            } else {
                format!("host {:?}", name(outer.host))
            };
            match cur.what {
                What::Subnet => {
                    let msg = if same_host {
                        format!(
                            "{} overlaps another subnet of this host {} (line {line})",
                            late.net, early.net
                        )
                    } else {
                        format!(
                            "{} overlaps a subnet of host {:?}: {} (line {line})",
                            late.net,
                            name(early.host),
                            early.net
                        )
                    };
                    sink.error(late.span, late.field.clone(), msg);
                }
                What::Underlay => {
                    let u = cur.net.addr();
                    let msg = if late_k {
                        format!(
                            "underlay address {u} lies inside container subnet {} of {owner} (line {line}); the underlay and the overlay must not share addresses",
                            outer.net
                        )
                    } else {
                        let whose = if same_host {
                            "this host's underlay address".to_string()
                        } else {
                            format!("the underlay address of host {:?}", name(cur.host))
                        };
                        format!(
                            "{} covers {u}, {whose} (line {line}); the underlay and the overlay must not share addresses",
                            outer.net
                        )
                    };
                    sink.error(late.span, late.field.clone(), msg);
                }
                What::Gateway if !same_host => {
                    let line = sink.line_of(outer.span);
                    sink.error(
                        cur.span,
                        cur.field.clone(),
                        format!(
                            "gateway {} lies inside subnet {} of host {:?} (line {line}): the router would answer for that address itself and drop the traffic meant for it; use an address of this host's subnets or of no subnet",
                            cur.net.addr(),
                            outer.net,
                            name(outer.host)
                        ),
                    );
                }
                What::Gateway => {}
            }
        }
        if cur.what == What::Subnet {
            stack.push(k);
        }
    }
}

/// The ranges hosts lease subnets from (`[store] network`, a network's
/// `lease_network`), held to what every subnet leased from them must
/// meet:
/// - a network's range needs a `[store]` in the vxrouter layout: leases
///   live in etcd, and a flannel lease names one subnet of one network;
/// - a range shares no address with a special block, as no subnet may
///   (the candidates skip such subnets, but a range reaching into one is a
///   mistake in the address plan);
/// - no underlay address of the file lies inside a range: a subnet
///   leased around it would hold it, which every router refuses.
///
/// Ranges of different networks may overlap, as their address spaces do;
/// a range may hold subnets that hosts of the file own in its network
/// (those are never proposed).
fn lease_ranges(raw: &UncheckedTopology, sink: &mut Sink) {
    let mut ranges: Vec<(&Spanned<super::LeaseRange>, String)> = Vec::new();
    if let Some(r) = &raw.store_range {
        ranges.push((r, "store.network".to_owned()));
    }
    for (i, n) in raw.networks.iter().enumerate() {
        let Some(r) = &n.lease else { continue };
        let field = format!("networks[{i}].lease_network");
        match &raw.store {
            None => sink.error(
                &r.span,
                field.clone(),
                "a lease range needs a [store] (layout \"vxrouter\"): the hosts of this network lease their subnets in etcd",
            ),
            Some(Some(c)) if c.layout == StoreLayout::Flannel => sink.error(
                &r.span,
                field.clone(),
                "the flannel layout is single-network: a flannel lease names one subnet of the network in <prefix>/config; give this network's subnets in [networks.subnets], or use layout = \"vxrouter\"",
            ),
            // An invalid [store] is reported already.
            Some(_) => {}
        }
        ranges.push((r, field));
    }
    for (r, field) in ranges {
        let range = r.value.network;
        if let Some((block, class)) = addr::special_overlapping(range) {
            let how = if block.contains(&range) {
                "lies in"
            } else {
                "covers"
            };
            sink.error(
                &r.span,
                field.clone(),
                format!(
                    "{range} is not a range containers may lease from: it {how} {block} ({})",
                    class.name()
                ),
            );
        }
        for (hi, h) in raw.hosts.iter().enumerate() {
            let Some(u) = h.underlay.as_ref().filter(|u| range.contains(&u.value)) else {
                continue;
            };
            let line = sink.line_of(&u.span);
            sink.error(
                &r.span,
                field.clone(),
                format!(
                    "{range} holds {}, the underlay address of host {:?} (line {line}); the underlay and the overlay must not share addresses",
                    u.value,
                    raw_name(raw, hi)
                ),
            );
        }
    }
}

/// The field path of gateway `gi` of port `p` at path `pp`, as the file
/// wrote it.
fn gateway_field(p: &UncheckedPort, pp: &str, gi: usize) -> String {
    if p.gateway_list {
        format!("{pp}.gateways[{gi}]")
    } else {
        format!("{pp}.gateway")
    }
}

/// Each address role accepts only some classes ([`addr::Special`]):
/// - an underlay address is a VTEP other hosts send to: no special block
///   at all, except IPv4 link-local (an underlay on one segment may use it;
///   IPv6 link-local needs an interface scope no VTEP address carries);
/// - a container subnet shares no address with any special block: those
///   addresses are never forwarded (link-local included), never unicast, or
///   never on the wire;
/// - a configured gateway is a unicast address; link-local is fine, the
///   router answers for it on the port's link only.
///
/// An IPv4-mapped or IPv4-compatible IPv6 underlay is refused with the IPv4
/// address to write instead, and named as a repeat when another host has
/// that IPv4 underlay.
fn address_classes(raw: &UncheckedTopology, sink: &mut Sink) {
    let v4_underlays: HashMap<IpAddr, (usize, &Span)> = raw
        .hosts
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.underlay.as_ref().map(|u| (u.value, (i, &u.span))))
        .filter(|(a, _)| a.is_ipv4())
        .collect();
    for (hi, h) in raw.hosts.iter().enumerate() {
        if let Some(u) = &h.underlay {
            if let Some(msg) = vtep_problem(raw, u.value, &v4_underlays, sink) {
                sink.error(&u.span, format!("hosts[{hi}].underlay"), msg);
            }
        }
        let subnets = h
            .subnets
            .iter()
            .enumerate()
            .map(|(si, s)| (s, format!("hosts[{hi}].subnets[{si}]")))
            .chain(h.net_subnets.iter().map(|(_, s, f)| (s, f.clone())));
        for (s, field) in subnets {
            if let Some((block, class)) = addr::special_overlapping(s.value) {
                let how = if block.contains(&s.value) {
                    "lies in"
                } else {
                    "covers"
                };
                sink.error(
                    &s.span,
                    field,
                    format!(
                        "{} is not a prefix containers may use: it {how} {block} ({})",
                        s.value,
                        class.name()
                    ),
                );
            }
        }
        for (pi, p) in h.ports.iter().enumerate() {
            for (gi, g) in p.gateways.iter().enumerate() {
                match addr::special(g.value) {
                    None | Some(Special::LinkLocal) => {}
                    Some(class) => sink.error(
                        &g.span,
                        gateway_field(p, &format!("hosts[{hi}].ports[{pi}]"), gi),
                        format!(
                            "gateway {} is {class}; a gateway must be a unicast address (link-local is fine)",
                            g.value
                        ),
                    ),
                }
            }
        }
    }
}

/// Why `u` cannot be a VTEP address, if it cannot.
fn vtep_problem(
    raw: &UncheckedTopology,
    u: IpAddr,
    v4_underlays: &HashMap<IpAddr, (usize, &Span)>,
    sink: &Sink,
) -> Option<String> {
    let class = addr::special(u)?;
    Some(match (u, class) {
        (IpAddr::V4(_), Special::LinkLocal) => return None,
        (IpAddr::V6(v6), Special::V4Mapped | Special::V4Compatible) => {
            // `special` only gives these classes to addresses that embed one.
            let v4 = addr::embedded_v4(v6)?;
            // Shown as written: `Ipv6Addr` prints only the mapped form
            // with a dotted tail.
            let (shown, why) = if class == Special::V4Mapped {
                (u.to_string(), "it never appears in an IPv6 header on the wire")
            } else {
                (format!("::{v4}"), "IPv6 no longer carries it (RFC 4291 section 2.5.5.1)")
            };
            match v4_underlays.get(&IpAddr::V4(v4)) {
                Some(&(j, span)) => format!(
                    "{shown} is {class}: it repeats the underlay {v4} of host {:?} (line {}), and {why}",
                    raw_name(raw, j),
                    sink.line_of(span)
                ),
                None => format!("{shown} is {class} and {why}: write the IPv4 address {v4}"),
            }
        }
        (IpAddr::V6(_), Special::LinkLocal) => format!(
            "{u} is {class}: it is only valid with an interface scope, which an underlay address cannot carry; use a global or unique-local address"
        ),
        _ => format!("{u} is {class}; a VTEP address must be a unicast address other hosts can reach"),
    })
}

/// A VXLAN frame carries the overlay MTU plus the inner Ethernet header and
/// the outer headers of the host's underlay family, and must fit a port
/// buffer ([`crate::port::MAX_FRAME`]) at both ends of every link.
fn encapsulated_mtu(raw: &UncheckedTopology, sink: &mut Sink) {
    // The IPv6 outer headers are the longer: name the first host that uses
    // them if any does, else the first host.
    let mut underlays = raw
        .hosts
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.underlay.as_ref().map(|u| (i, u.value.is_ipv6())));
    let first = underlays.clone().next();
    let Some((host, v6)) = underlays.find(|&(_, v6)| v6).or(first) else {
        return;
    };
    let (outer, fam) = if v6 {
        (OUTER_V6_LEN, "IPv6")
    } else {
        (OUTER_V4_LEN, "IPv4")
    };
    let frame = |m: u16, outer: usize| usize::from(m) + ethernet::HEADER_LEN + outer;
    let largest = |outer: usize| MAX_FRAME - ethernet::HEADER_LEN - outer;
    // A derived MTU fits the 1500-byte underlay, far below a buffer.
    for (m, field) in network_mtus(raw) {
        if frame(m.value, outer) > MAX_FRAME {
            sink.error(
                &m.span,
                field,
                format!(
                    "{} is too large: over the {fam} underlay of host {:?} a packet of {} bytes leaves as a VXLAN frame of {} bytes ({} inner Ethernet + {outer} outer headers), more than the {MAX_FRAME} bytes a port buffer holds; the overlay MTU can be at most {} with IPv4 underlays, {} with IPv6",
                    m.value,
                    raw_name(raw, host),
                    m.value,
                    frame(m.value, outer),
                    ethernet::HEADER_LEN,
                    largest(OUTER_V4_LEN),
                    largest(OUTER_V6_LEN)
                ),
            );
        }
    }
}

/// Every MTU a network sets, with its field.
fn network_mtus(raw: &UncheckedTopology) -> Vec<(&Spanned<u16>, String)> {
    let mut out = Vec::new();
    if let Some(m) = raw.overlay.as_ref().and_then(|o| o.mtu.as_ref()) {
        out.push((m, "overlay.mtu".to_string()));
    }
    for (i, n) in raw.networks.iter().enumerate() {
        if let Some(m) = &n.mtu {
            out.push((m, format!("networks[{i}].mtu")));
        }
    }
    out
}

/// `[[networks]]`: unique names other than the default network's, unique
/// VNIs (the default network's included), subnets only for hosts of the
/// topology; each network's subnets are handed to their hosts
/// (`net_subnets`) for the checks that follow. Ports name a network that
/// exists.
fn networks(raw: &mut UncheckedTopology, sink: &mut Sink) {
    let mut names: HashMap<String, Span> = HashMap::new();
    let mut vnis: HashMap<u32, (Span, String)> = HashMap::new();
    if let Some(v) = raw.overlay.as_ref().and_then(|o| o.vni) {
        vnis.insert(v, (0..0, format!("{DEFAULT_NETWORK:?} ([overlay])")));
    }
    let hosts: HashMap<String, usize> = raw
        .hosts
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.name.as_ref().map(|n| (n.value.clone(), i)))
        .collect();
    let mut gathered: Vec<(usize, usize, Spanned<IpNet>, String)> = Vec::new();
    for (i, n) in raw.networks.iter().enumerate() {
        let net = i + 1;
        if let Some(name) = &n.name {
            if name.value == DEFAULT_NETWORK {
                sink.error(
                    &name.span,
                    format!("networks[{i}].name"),
                    format!("{DEFAULT_NETWORK:?} is the network [overlay] describes; name this one otherwise"),
                );
            } else if let Some(first) = names.get(&name.value) {
                let line = sink.line_of(first);
                sink.error(
                    &name.span,
                    format!("networks[{i}].name"),
                    format!(
                        "duplicate network name {:?} (first defined on line {line})",
                        name.value
                    ),
                );
            } else {
                names.insert(name.value.clone(), name.span.clone());
            }
        }
        if let Some(v) = &n.vni {
            let this = n
                .name
                .as_ref()
                .map_or_else(|| format!("networks[{i}]"), |s| format!("{:?}", s.value));
            if let Some((first, other)) = vnis.get(&v.value) {
                let at = if first.is_empty() {
                    String::new()
                } else {
                    format!(", line {}", sink.line_of(first))
                };
                sink.error(
                    &v.span,
                    format!("networks[{i}].vni"),
                    format!(
                        "VNI {} is already network {other}'s{at}: each network has its own VNI",
                        v.value
                    ),
                );
            } else {
                vnis.insert(v.value, (v.span.clone(), this));
            }
        }
        for (host, prefixes) in &n.subnets {
            match hosts.get(&host.value) {
                Some(&h) => {
                    for (p, field) in prefixes {
                        gathered.push((h, net, p.clone(), field.clone()));
                    }
                }
                None => sink.error(
                    &host.span,
                    format!("networks[{i}].subnets"),
                    format!(
                        "unknown host {:?}: subnets are keyed by host name",
                        host.value
                    ),
                ),
            }
        }
    }
    for (h, net, p, field) in gathered {
        raw.hosts[h].net_subnets.push((net, p, field));
    }
    let index: HashMap<&str, usize> = raw
        .networks
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.name.as_ref().map(|s| (s.value.as_str(), i + 1)))
        .collect();
    let known = || {
        std::iter::once(DEFAULT_NETWORK)
            .chain(
                raw.networks
                    .iter()
                    .filter_map(|n| n.name.as_ref().map(|s| s.value.as_str())),
            )
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut errors = Vec::new();
    for (hi, h) in raw.hosts.iter().enumerate() {
        for (pi, p) in h.ports.iter().enumerate() {
            let Some(n) = &p.network else { continue };
            if n.value != DEFAULT_NETWORK && !index.contains_key(n.value.as_str()) {
                errors.push((
                    n.span.clone(),
                    format!("hosts[{hi}].ports[{pi}].network"),
                    format!(
                        "unknown network {:?}; the networks are {}",
                        n.value,
                        known()
                    ),
                ));
            }
        }
    }
    for (span, field, msg) in errors {
        sink.error(&span, field, msg);
    }
    for h in &mut raw.hosts {
        for p in &mut h.ports {
            p.net = p
                .network
                .as_ref()
                .map_or(Some(0), |n| match n.value.as_str() {
                    DEFAULT_NETWORK => Some(0),
                    name => index.get(name).copied(),
                })
                // Reported above; its addresses are not checked against any
                // network's subnets.
                .unwrap_or(UNKNOWN_NETWORK);
        }
    }
}

/// Per-host port rules: unique names, addresses inside the host's subnets and
/// not shared between ports, one gateway per family in use.
fn ports(h: &mut UncheckedHost, path: &str, sink: &mut Sink) {
    let mut names: HashMap<String, Span> = HashMap::new();
    let mut namespaces: HashMap<String, Span> = HashMap::new();
    let mut owned: Vec<(IpNet, Span, usize)> = Vec::new();
    if let Some(n) = h.ports.get(MAX_PORTS).and_then(|p| p.name.as_ref()) {
        sink.error(
            &n.span,
            format!("{path}.ports[{MAX_PORTS}]"),
            format!("a host has at most {MAX_PORTS} ports"),
        );
    }
    for (pi, p) in h.ports.iter_mut().enumerate() {
        let pp = format!("{path}.ports[{pi}]");
        if let Some(ns) = &p.netns {
            // The router names the container end of every port it makes
            // `eth0`: two in one namespace would collide.
            if let Some(first) = namespaces.get(&ns.value) {
                let line = sink.line_of(first);
                sink.error(
                    &ns.span,
                    format!("{pp}.netns"),
                    format!(
                        "namespace {:?} already holds a port of this host (line {line}): one port per namespace",
                        ns.value
                    ),
                );
            } else {
                namespaces.insert(ns.value.clone(), ns.span.clone());
            }
        }
        if let Some(n) = &p.name {
            if let Some(first) = names.get(&n.value) {
                let line = sink.line_of(first);
                sink.error(
                    &n.span,
                    format!("{pp}.name"),
                    format!(
                        "duplicate port name {:?} on this host (first defined on line {line})",
                        n.value
                    ),
                );
            } else {
                names.insert(n.value.clone(), n.span.clone());
            }
            if h.nic.as_ref().is_some_and(|nic| nic.value == n.value) {
                sink.error(
                    &n.span,
                    format!("{pp}.name"),
                    format!("port name {:?} is the host's nic", n.value),
                );
            }
        }
        let subnets = host_subnets(&h.subnets, &h.net_subnets, p.net);
        for (ai, a) in p.addresses.iter().enumerate() {
            let field = format!("{pp}.addresses[{ai}]");
            if p.net != UNKNOWN_NETWORK && !subnets.iter().any(|s| s.value.contains(&a.value)) {
                let listed: Vec<String> = subnets.iter().map(|s| s.value.to_string()).collect();
                let listed = if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join(", ")
                };
                let whose = match &p.network {
                    Some(n) if p.net != 0 => format!("the host's subnets in network {:?}", n.value),
                    _ => "the host's subnets".to_string(),
                };
                sink.error(
                    &a.span,
                    field.clone(),
                    format!("{} is outside {whose} ({listed})", a.value),
                );
            }
            if let Some((other, span, _)) = owned
                .iter()
                .find(|(o, _, on)| *on == p.net && (o.contains(&a.value) || a.value.contains(o)))
            {
                let line = sink.line_of(span);
                sink.error(
                    &a.span,
                    field,
                    format!(
                        "{} overlaps address {other} of a port on line {line}",
                        a.value
                    ),
                );
            } else {
                owned.push((a.value, a.span.clone(), p.net));
            }
        }
        gateways(p, &subnets, &pp, sink);
    }
    // A gateway inside another port's addresses would hand that container's
    // traffic to the router's own stack.
    for (pi, p) in h.ports.iter().enumerate() {
        for (gi, g) in p.gateways.iter().enumerate() {
            if let Some((net, span, _)) = owned
                .iter()
                .find(|(n, _, on)| *on == p.net && n.contains(&g.value))
            {
                let line = sink.line_of(span);
                let field = format!("{path}.ports[{pi}].gateways[{gi}]");
                sink.error(
                    &g.span,
                    field,
                    format!("gateway {} lies inside port address {net} (line {line}); addresses must leave the gateway free", g.value),
                );
            }
        }
    }
}

/// The network of a port whose `network` names none (reported).
const UNKNOWN_NETWORK: usize = usize::MAX;

/// A host's subnets in network `net`: the default network's from
/// `subnets`, another's from `net_subnets`.
fn host_subnets(
    subnets: &[Spanned<IpNet>],
    net_subnets: &[(usize, Spanned<IpNet>, String)],
    net: usize,
) -> Vec<Spanned<IpNet>> {
    if net == 0 {
        return subnets.to_vec();
    }
    net_subnets
        .iter()
        .filter(|(n, _, _)| *n == net)
        .map(|(_, s, _)| s.clone())
        .collect()
}

/// The first host address of `net` (network + 1), if `net` has one: the
/// gateway derived for a port without a configured one.
pub fn first_host(net: &IpNet) -> Option<IpAddr> {
    let next = match net.network() {
        IpAddr::V4(a) => IpAddr::V4(u32::from(a).checked_add(1)?.into()),
        IpAddr::V6(a) => IpAddr::V6(u128::from(a).checked_add(1)?.into()),
    };
    net.contains(&next).then_some(next)
}

fn gateways(p: &mut UncheckedPort, subnets: &[Spanned<IpNet>], pp: &str, sink: &mut Sink) {
    for (gi, g) in p.gateways.iter().enumerate() {
        if !p
            .addresses
            .iter()
            .any(|a| a.value.addr().is_ipv4() == g.value.is_ipv4())
        {
            let fam = if g.value.is_ipv4() { "IPv4" } else { "IPv6" };
            sink.error(
                &g.span,
                gateway_field(p, pp, gi),
                format!(
                    "gateway {} is {fam} but the port has no {fam} address",
                    g.value
                ),
            );
        }
    }
    // Families the port uses without a configured gateway get a derived one.
    for v4 in [true, false] {
        if p.gateways.iter().any(|g| g.value.is_ipv4() == v4) {
            continue;
        }
        let Some(a) = p.addresses.iter().find(|a| a.value.addr().is_ipv4() == v4) else {
            continue;
        };
        // Addresses outside every subnet were reported by the caller.
        let Some(subnet) = subnets.iter().find(|s| s.value.contains(&a.value)) else {
            continue;
        };
        match first_host(&subnet.value) {
            Some(g) => p.gateways.push(Spanned { value: g, span: a.span.clone() }),
            None => sink.error(
                &a.span,
                format!("{pp}.gateways"),
                format!(
                    "cannot derive a gateway: subnet {} has no address after its network address; set `gateways`",
                    subnet.value
                ),
            ),
        }
    }
    // IPv4 first, then IPv6, whatever the configured order.
    p.gateways.sort_by_key(|g| g.value.is_ipv6());
}

/// Links name two different, existing hosts of the same underlay family, and
/// each host pair at most once (a-b and b-a are the same link).
fn links(raw: &UncheckedTopology, sink: &mut Sink) {
    let index: HashMap<&str, usize> = raw
        .hosts
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.name.as_ref().map(|n| (n.value.as_str(), i)))
        .collect();
    let mut seen: HashMap<(usize, usize), Span> = HashMap::new();
    for (li, l) in raw.links.iter().enumerate() {
        let mut end = |e: &Option<Spanned<String>>, k: &str| -> Option<usize> {
            let e = e.as_ref()?;
            let found = index.get(e.value.as_str()).copied();
            if found.is_none() {
                sink.error(
                    &e.span,
                    format!("links[{li}].{k}"),
                    format!("unknown host {:?}", e.value),
                );
            }
            found
        };
        let (Some(a), Some(b)) = (end(&l.a, "a"), end(&l.b, "b")) else {
            continue;
        };
        let bspan = l.b.as_ref().map_or(l.span.clone(), |b| b.span.clone());
        if a == b {
            sink.error(
                &bspan,
                format!("links[{li}].b"),
                "a link must join two different hosts (self-link)",
            );
            continue;
        }
        let key = (a.min(b), a.max(b));
        if let Some(first) = seen.get(&key) {
            let line = sink.line_of(first);
            sink.error(
                &l.span,
                format!("links[{li}]"),
                format!(
                    "duplicate link between {:?} and {:?} (first defined on line {line})",
                    raw_name(raw, a),
                    raw_name(raw, b)
                ),
            );
            continue;
        }
        seen.insert(key, l.span.clone());
        if let (Some(ua), Some(ub)) = (&raw.hosts[a].underlay, &raw.hosts[b].underlay) {
            if ua.value.is_ipv4() != ub.value.is_ipv4() {
                sink.error(
                    &bspan,
                    format!("links[{li}]"),
                    format!(
                        "{:?} ({}) and {:?} ({}) have underlays of different address families; VXLAN cannot cross them",
                        raw_name(raw, a),
                        ua.value,
                        raw_name(raw, b),
                        ub.value
                    ),
                );
            }
        }
    }
}

fn raw_name(raw: &UncheckedTopology, i: usize) -> &str {
    raw.hosts
        .get(i)
        .and_then(|h| h.name.as_ref())
        .map_or("?", |n| n.value.as_str())
}

/// IPv6 needs links of at least 1280 bytes (RFC 8200 section 5), so an MTU
/// below that is only valid where no IPv6 traffic flows.
fn ipv6_mtu(raw: &UncheckedTopology, sink: &mut Sink) {
    let any_v6 = |net: usize| {
        raw.hosts.iter().any(|h| {
            if net == 0 {
                h.subnets.iter().any(|s| s.value.addr().is_ipv6())
            } else {
                h.net_subnets
                    .iter()
                    .any(|(n, s, _)| *n == net && s.value.addr().is_ipv6())
            }
        })
    };
    let mut mtus: Vec<(usize, &Spanned<u16>, String)> = Vec::new();
    if let Some(m) = raw.overlay.as_ref().and_then(|o| o.mtu.as_ref()) {
        mtus.push((0, m, "overlay.mtu".to_string()));
    }
    for (i, n) in raw.networks.iter().enumerate() {
        if let Some(m) = &n.mtu {
            mtus.push((i + 1, m, format!("networks[{i}].mtu")));
        }
    }
    for (net, m, field) in mtus {
        if m.value < MIN_MTU_V6 && any_v6(net) {
            sink.error(
                &m.span,
                field,
                format!(
                    "{} is below 1280, the minimum IPv6 MTU, and the network has IPv6 subnets",
                    m.value
                ),
            );
        }
    }
    for (hi, h) in raw.hosts.iter().enumerate() {
        for (pi, p) in h.ports.iter().enumerate() {
            if let Some(m) = &p.mtu {
                if m.value < MIN_MTU_V6 && p.addresses.iter().any(|a| a.value.addr().is_ipv6()) {
                    sink.error(
                        &m.span,
                        format!("hosts[{hi}].ports[{pi}].mtu"),
                        format!("{} is below 1280, the minimum IPv6 MTU, and the port has IPv6 addresses", m.value),
                    );
                }
            }
        }
    }
}
