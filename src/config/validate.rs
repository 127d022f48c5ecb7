//! Cross-checks: rules that relate several fields or entries of a topology.
//!
//! Runs on whatever `schema` could read, so problems are found even when
//! other parts of the file are broken. Each problem is reported once, at the
//! later of the two places involved, with the line of the earlier one.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::diag::Sink;
use super::schema::{Raw, RawHost, Sp, MAX_PORTS, MIN_MTU_V6};
use super::tree::Span;
use super::MacAddr;

/// Runs every cross-check; fills in derived gateways.
pub(crate) fn cross_check(raw: &mut Raw, sink: &mut Sink) {
    unique_hosts(raw, sink);
    disjoint_subnets(raw, sink);
    for (i, h) in raw.hosts.iter_mut().enumerate() {
        ports(h, &format!("hosts[{i}]"), sink);
    }
    links(raw, sink);
    ipv6_mtu(raw, sink);
}

/// Host names, underlay addresses and VTEP MACs identify a host: each must be
/// unique across the topology.
fn unique_hosts(raw: &Raw, sink: &mut Sink) {
    let mut names: HashMap<&str, Span> = HashMap::new();
    let mut underlays: HashMap<IpAddr, (Span, &str)> = HashMap::new();
    let mut macs: HashMap<MacAddr, (Span, usize)> = HashMap::new();
    for (i, h) in raw.hosts.iter().enumerate() {
        let hname = h.name.as_ref().map_or("?", |n| n.v.as_str());
        if let Some(n) = &h.name {
            if let Some(first) = names.get(n.v.as_str()) {
                let line = sink.line_of(first);
                sink.error(
                    &n.span,
                    format!("hosts[{i}].name"),
                    format!(
                        "duplicate host name {:?} (first defined on line {line})",
                        n.v
                    ),
                );
            } else {
                names.insert(&n.v, n.span.clone());
            }
        }
        if let Some(u) = &h.underlay {
            if let Some((first, other)) = underlays.get(&u.v) {
                let line = sink.line_of(first);
                sink.error(
                    &u.span,
                    format!("hosts[{i}].underlay"),
                    format!(
                        "duplicate underlay address {} (also host {other:?}, line {line})",
                        u.v
                    ),
                );
                if h.vtep_mac.is_none() {
                    // Its derived MAC collides too; one report is enough.
                    continue;
                }
            } else {
                underlays.insert(u.v, (u.span.clone(), hname));
            }
            let (mac, span, derived) = match &h.vtep_mac {
                Some(m) => (m.v, m.span.clone(), false),
                None => (MacAddr::derived_from(u.v), u.span.clone(), true),
            };
            if let Some((first, j)) = macs.get(&mac) {
                let line = sink.line_of(first);
                let how = if derived {
                    "derived vtep_mac"
                } else {
                    "vtep_mac"
                };
                let other = raw.hosts[*j].name.as_ref().map_or("?", |n| n.v.as_str());
                sink.error(
                    &span,
                    format!("hosts[{i}].vtep_mac"),
                    format!("{how} {mac} duplicates the VTEP MAC of host {other:?} (line {line}); set a distinct vtep_mac"),
                );
            } else {
                macs.insert(mac, (span, i));
            }
        } else if let Some(m) = &h.vtep_mac {
            macs.entry(m.v).or_insert((m.span.clone(), i));
        }
    }
}

/// Each container prefix has exactly one owner, or forwarding would be
/// ambiguous: no two subnets anywhere in the topology may overlap.
fn disjoint_subnets(raw: &Raw, sink: &mut Sink) {
    struct S<'a> {
        net: IpNet,
        span: &'a Span,
        host: usize,
        field: String,
    }
    let mut all: Vec<S> = Vec::new();
    for (i, h) in raw.hosts.iter().enumerate() {
        for (j, s) in h.subnets.iter().enumerate() {
            all.push(S {
                net: s.v,
                span: &s.span,
                host: i,
                field: format!("hosts[{i}].subnets[{j}]"),
            });
        }
    }
    // Sorted by network address, then shorter prefix first, two prefixes
    // overlap iff the later one lies inside an earlier one still "open" on
    // the stack: an O(n log n) sweep instead of comparing every pair.
    all.sort_by(|x, y| {
        (x.net.network(), x.net.prefix_len()).cmp(&(y.net.network(), y.net.prefix_len()))
    });
    let mut stack: Vec<usize> = Vec::new();
    for k in 0..all.len() {
        while let Some(&top) = stack.last() {
            if all[top].net.contains(&all[k].net) {
                break;
            }
            stack.pop();
        }
        if let Some(&top) = stack.last() {
            // Report at whichever of the two comes later in the file.
            let (early, late) = if all[top].span.start <= all[k].span.start {
                (top, k)
            } else {
                (k, top)
            };
            let line = sink.line_of(all[early].span);
            let owner = raw.hosts[all[early].host]
                .name
                .as_ref()
                .map_or("?", |n| n.v.as_str());
            let what = if all[early].host == all[late].host {
                "another subnet of this host"
            } else {
                "a subnet of host"
            };
            let msg = if all[early].host == all[late].host {
                format!(
                    "{} overlaps {} {} (line {line})",
                    all[late].net, what, all[early].net
                )
            } else {
                format!(
                    "{} overlaps {} {owner:?}: {} (line {line})",
                    all[late].net, what, all[early].net
                )
            };
            sink.error(all[late].span, all[late].field.clone(), msg);
        }
        stack.push(k);
    }
}

/// Per-host port rules: unique names, addresses inside the host's subnets and
/// not shared between ports, one gateway per family in use.
fn ports(h: &mut RawHost, path: &str, sink: &mut Sink) {
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
            if let Some(first) = namespaces.get(&ns.v) {
                let line = sink.line_of(first);
                sink.error(
                    &ns.span,
                    format!("{pp}.netns"),
                    format!(
                        "namespace {:?} already holds a port of this host (line {line}): one port per namespace",
                        ns.v
                    ),
                );
            } else {
                namespaces.insert(ns.v.clone(), ns.span.clone());
            }
        }
        if let Some(n) = &p.name {
            if let Some(first) = names.get(&n.v) {
                let line = sink.line_of(first);
                sink.error(
                    &n.span,
                    format!("{pp}.name"),
                    format!(
                        "duplicate port name {:?} on this host (first defined on line {line})",
                        n.v
                    ),
                );
            } else {
                names.insert(n.v.clone(), n.span.clone());
            }
            if h.nic.as_ref().is_some_and(|nic| nic.v == n.v) {
                sink.error(
                    &n.span,
                    format!("{pp}.name"),
                    format!("port name {:?} is the host's nic", n.v),
                );
            }
        }
        for (ai, a) in p.addresses.iter().enumerate() {
            let field = format!("{pp}.addresses[{ai}]");
            if !h.subnets.iter().any(|s| s.v.contains(&a.v)) {
                let subnets: Vec<String> = h.subnets.iter().map(|s| s.v.to_string()).collect();
                let listed = if subnets.is_empty() {
                    "none".to_string()
                } else {
                    subnets.join(", ")
                };
                sink.error(
                    &a.span,
                    field.clone(),
                    format!("{} is outside the host's subnets ({listed})", a.v),
                );
            }
            if let Some((other, span, _)) = owned
                .iter()
                .find(|(o, _, _)| o.contains(&a.v) || a.v.contains(o))
            {
                let line = sink.line_of(span);
                sink.error(
                    &a.span,
                    field,
                    format!("{} overlaps address {other} of a port on line {line}", a.v),
                );
            } else {
                owned.push((a.v, a.span.clone(), pi));
            }
        }
        gateways(p, &h.subnets, &pp, sink);
    }
    // A gateway inside another port's addresses would hand that container's
    // traffic to the router's own stack.
    for (pi, p) in h.ports.iter().enumerate() {
        for (gi, g) in p.gateways.iter().enumerate() {
            if let Some((net, span, _)) = owned.iter().find(|(n, _, _)| n.contains(&g.v)) {
                let line = sink.line_of(span);
                let field = format!("{path}.ports[{pi}].gateways[{gi}]");
                sink.error(
                    &g.span,
                    field,
                    format!("gateway {} lies inside port address {net} (line {line}); addresses must leave the gateway free", g.v),
                );
            }
        }
    }
}

/// The first host address of `net` (network + 1), if `net` has one.
fn first_host(net: &IpNet) -> Option<IpAddr> {
    let next = match net.network() {
        IpAddr::V4(a) => IpAddr::V4(u32::from(a).checked_add(1)?.into()),
        IpAddr::V6(a) => IpAddr::V6(u128::from(a).checked_add(1)?.into()),
    };
    net.contains(&next).then_some(next)
}

fn gateways(p: &mut super::schema::RawPort, subnets: &[Sp<IpNet>], pp: &str, sink: &mut Sink) {
    for (gi, g) in p.gateways.iter().enumerate() {
        if !p
            .addresses
            .iter()
            .any(|a| a.v.addr().is_ipv4() == g.v.is_ipv4())
        {
            let fam = if g.v.is_ipv4() { "IPv4" } else { "IPv6" };
            let field = if p.gateway_list {
                format!("{pp}.gateways[{gi}]")
            } else {
                format!("{pp}.gateway")
            };
            sink.error(
                &g.span,
                field,
                format!("gateway {} is {fam} but the port has no {fam} address", g.v),
            );
        }
    }
    // Families the port uses without a configured gateway get a derived one.
    for v4 in [true, false] {
        if p.gateways.iter().any(|g| g.v.is_ipv4() == v4) {
            continue;
        }
        let Some(a) = p.addresses.iter().find(|a| a.v.addr().is_ipv4() == v4) else {
            continue;
        };
        // Addresses outside every subnet were reported by the caller.
        let Some(subnet) = subnets.iter().find(|s| s.v.contains(&a.v)) else {
            continue;
        };
        match first_host(&subnet.v) {
            Some(g) => p.gateways.push(Sp { v: g, span: a.span.clone() }),
            None => sink.error(
                &a.span,
                format!("{pp}.gateways"),
                format!(
                    "cannot derive a gateway: subnet {} has no address after its network address; set `gateways`",
                    subnet.v
                ),
            ),
        }
    }
    // IPv4 first, then IPv6, whatever the configured order.
    p.gateways.sort_by_key(|g| g.v.is_ipv6());
}

/// Links name two different, existing hosts of the same underlay family, and
/// each host pair at most once (a-b and b-a are the same link).
fn links(raw: &Raw, sink: &mut Sink) {
    let index: HashMap<&str, usize> = raw
        .hosts
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.name.as_ref().map(|n| (n.v.as_str(), i)))
        .collect();
    let mut seen: HashMap<(usize, usize), Span> = HashMap::new();
    for (li, l) in raw.links.iter().enumerate() {
        let mut end = |e: &Option<Sp<String>>, k: &str| -> Option<usize> {
            let e = e.as_ref()?;
            let found = index.get(e.v.as_str()).copied();
            if found.is_none() {
                sink.error(
                    &e.span,
                    format!("links[{li}].{k}"),
                    format!("unknown host {:?}", e.v),
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
            if ua.v.is_ipv4() != ub.v.is_ipv4() {
                sink.error(
                    &bspan,
                    format!("links[{li}]"),
                    format!(
                        "{:?} ({}) and {:?} ({}) have underlays of different address families; VXLAN cannot cross them",
                        raw_name(raw, a),
                        ua.v,
                        raw_name(raw, b),
                        ub.v
                    ),
                );
            }
        }
    }
}

fn raw_name(raw: &Raw, i: usize) -> &str {
    raw.hosts
        .get(i)
        .and_then(|h| h.name.as_ref())
        .map_or("?", |n| n.v.as_str())
}

/// IPv6 needs links of at least 1280 bytes (RFC 8200 section 5), so an MTU
/// below that is only valid where no IPv6 traffic flows.
fn ipv6_mtu(raw: &Raw, sink: &mut Sink) {
    let any_v6 = raw
        .hosts
        .iter()
        .any(|h| h.subnets.iter().any(|s| s.v.addr().is_ipv6()));
    if let Some(m) = raw.overlay.as_ref().and_then(|o| o.mtu.as_ref()) {
        if any_v6 && m.v < MIN_MTU_V6 {
            sink.error(
                &m.span,
                "overlay.mtu",
                format!(
                    "{} is below 1280, the minimum IPv6 MTU, and the topology has IPv6 subnets",
                    m.v
                ),
            );
        }
    }
    for (hi, h) in raw.hosts.iter().enumerate() {
        for (pi, p) in h.ports.iter().enumerate() {
            if let Some(m) = &p.mtu {
                if m.v < MIN_MTU_V6 && p.addresses.iter().any(|a| a.v.addr().is_ipv6()) {
                    sink.error(
                        &m.span,
                        format!("hosts[{hi}].ports[{pi}].mtu"),
                        format!("{} is below 1280, the minimum IPv6 MTU, and the port has IPv6 addresses", m.v),
                    );
                }
            }
        }
    }
}
