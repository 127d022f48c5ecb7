//! The ADD result, and CHECK's comparison with it.
//!
//! Layer: sans-IO. The result reports what the router made (its port's
//! MAC, MTU and gateways) with the addresses IPAM gave. Chained after
//! other plugins, ADD extends their `prevResult`: our interface is
//! appended, our ips point at its index, our default routes are added
//! unless already there, and an earlier `dns` stays.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::IpNet;
use rscni_types::types::{CNIResult, Dns, Interface, IpConfig, Route};

use super::error::CniError;
use crate::api::PortInfo;
use crate::config::PortKind;

/// The spec's route scope for a link-local route (`RT_SCOPE_LINK`).
const SCOPE_LINK: u32 = 253;

/// The ADD result: `prev` (if chained) extended with the interface
/// `ifname` in `netns` that `port` describes, its `addresses`, a default
/// route per family the port has a gateway for, and `dns` unless `prev`
/// has one.
pub fn added(
    prev: Option<&CNIResult>,
    ifname: &str,
    netns: &Path,
    port: &PortInfo,
    addresses: &[IpNet],
    dns: Option<Dns>,
) -> CNIResult {
    let mut r = prev.cloned().unwrap_or_default();
    let index = u32::try_from(r.interfaces.len()).unwrap_or(u32::MAX);
    r.interfaces.push(Interface {
        name: ifname.to_string(),
        mac: port.mac.clone().unwrap_or_default(),
        mtu: Some(u32::from(port.mtu)),
        sandbox: Some(netns.display().to_string()),
        socket_path: None,
        pci_id: None,
    });
    for a in addresses {
        r.ips.push(IpConfig {
            interface: Some(index),
            address: *a,
            gateway: gateway_for(&port.gateways, a),
        });
    }
    // The routes the router installs (host::sandbox): per family with an
    // address, the default route via the port's gateway, after an on-link
    // host route to a gateway outside every prefix; a TUN without a
    // gateway routes the family's default through the device.
    for v4 in [true, false] {
        let family = |a: &IpNet| matches!(a, IpNet::V4(_)) == v4;
        let ours: Vec<&IpNet> = addresses.iter().filter(|a| family(a)).collect();
        if ours.is_empty() {
            continue;
        }
        let gw = port.gateways.iter().find(|g| g.is_ipv4() == v4).copied();
        let mut routes = Vec::new();
        match gw {
            Some(g) => {
                if !ours.iter().any(|a| a.contains(&g)) {
                    routes.push(route(IpNet::from(g), None, Some(SCOPE_LINK)));
                }
                routes.push(route(default_route(v4), Some(g), None));
            }
            None if port.kind == PortKind::Tun => {
                routes.push(route(default_route(v4), None, None));
            }
            None => {}
        }
        for rt in routes {
            if !r.routes.contains(&rt) {
                r.routes.push(rt);
            }
        }
    }
    if dns_is_empty(r.dns.as_ref()) && !dns_is_empty(dns.as_ref()) {
        r.dns = dns;
    }
    r
}

/// The addresses `prev` gives the interface `ifname` in `netns`; error
/// 102 when `prev` has no such interface.
pub fn ours_in(prev: &CNIResult, ifname: &str, netns: &Path) -> Result<Vec<IpNet>, CniError> {
    let sandbox = netns.display().to_string();
    let index = prev
        .interfaces
        .iter()
        .position(|i| i.name == ifname && i.sandbox.as_deref() == Some(&sandbox))
        .ok_or_else(|| {
            CniError::mismatch(format!("prevResult has no interface {ifname} in {sandbox}"))
        })?;
    let index = u32::try_from(index).unwrap_or(u32::MAX);
    Ok(prev
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(index))
        .map(|ip| ip.address)
        .collect())
}

/// Whether the router's `port` matches what prevResult expects:
/// the same addresses (in any order) and, where both name one, the MAC.
pub fn compare(
    expected: &[IpNet],
    expected_mac: Option<&str>,
    port: &PortInfo,
) -> Result<(), CniError> {
    let mut want: Vec<IpNet> = expected.to_vec();
    let mut have: Vec<IpNet> = port.addresses.clone();
    want.sort();
    have.sort();
    if want != have {
        return Err(CniError::mismatch(format!(
            "addresses: prevResult has {}, the router's port has {}",
            list(&want),
            list(&have)
        )));
    }
    if let (Some(w), Some(h)) = (expected_mac.filter(|m| !m.is_empty()), port.mac.as_deref()) {
        if !w.eq_ignore_ascii_case(h) {
            return Err(CniError::mismatch(format!(
                "mac: prevResult has {w}, the router's port has {h}"
            )));
        }
    }
    Ok(())
}

/// The MAC prevResult gives the interface `ifname` in `netns`, if any.
pub fn mac_in<'a>(prev: &'a CNIResult, ifname: &str, netns: &Path) -> Option<&'a str> {
    let sandbox = netns.display().to_string();
    prev.interfaces
        .iter()
        .find(|i| i.name == ifname && i.sandbox.as_deref() == Some(&sandbox))
        .map(|i| i.mac.as_str())
}

fn list(a: &[IpNet]) -> String {
    let v: Vec<String> = a.iter().map(ToString::to_string).collect();
    format!("[{}]", v.join(", "))
}

fn same_family(a: &IpNet, g: &IpAddr) -> bool {
    matches!(
        (a, g),
        (IpNet::V4(_), IpAddr::V4(_)) | (IpNet::V6(_), IpAddr::V6(_))
    )
}

fn gateway_for(gateways: &[IpAddr], a: &IpNet) -> Option<IpAddr> {
    gateways
        .iter()
        .find(|g| a.contains(*g))
        .or_else(|| gateways.iter().find(|g| same_family(a, g)))
        .copied()
}

fn default_route(v4: bool) -> IpNet {
    let any = if v4 {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    IpNet::new(any, 0).unwrap_or_default()
}

fn route(dst: IpNet, gw: Option<IpAddr>, scope: Option<u32>) -> Route {
    Route {
        dst,
        gw,
        mtu: None,
        advmss: None,
        priority: None,
        table: None,
        scope,
    }
}

/// The spec's empty `dns`: no key with content.
pub fn dns_is_empty(dns: Option<&Dns>) -> bool {
    dns.is_none_or(|d| {
        d.nameservers.is_empty()
            && d.domain.as_ref().is_none_or(String::is_empty)
            && d.search.as_ref().is_none_or(Vec::is_empty)
            && d.options.as_ref().is_none_or(Vec::is_empty)
    })
}
