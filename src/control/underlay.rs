//! The uplink NIC: whether the overlay MTU fits it, what a change of its
//! MTU means, and the super-packet size of the container ports.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Result};

use crate::config::{self, Topology};
use crate::dataplane::tables;
use crate::host::neigh::NeighbourTable;
use crate::host::netns;
use crate::route::RouteSet;

/// What VXLAN adds over the host's underlay family, for messages.
fn overhead_text(underlay: IpAddr) -> &'static str {
    match underlay {
        IpAddr::V4(_) => "50 bytes over IPv4 (inner Ethernet 14, outer IPv4 20, UDP 8, VXLAN 8)",
        IpAddr::V6(_) => "70 bytes over IPv6 (inner Ethernet 14, outer IPv6 40, UDP 8, VXLAN 8)",
    }
}

/// Refuses a start whose overlay MTU cannot fit the uplink NIC's MTU once
/// encapsulated: every full-sized container packet toward a peer would be
/// refused.
pub(super) fn check_mtu_fits(
    topo: &Topology,
    me: usize,
    nic: &str,
    nic_mtu: u16,
    config: &Path,
) -> Result<()> {
    let underlay = topo.hosts[me].underlay;
    let fit = tables::largest_overlay_mtu(nic_mtu, underlay);
    // The network with the largest MTU is the one that must fit.
    let Some((net, overlay_mtu)) = (0..topo.networks.len())
        .map(|n| (n, topo.network_mtu(n, me)))
        .max_by_key(|&(_, m)| m)
    else {
        return Ok(());
    };
    if overlay_mtu <= fit {
        return Ok(());
    }
    let field = match net {
        0 => "overlay.mtu".to_string(),
        n => format!("the mtu of network {:?}", topo.networks[n].name),
    };
    let set = match net {
        0 => topo.overlay.mtu.is_some(),
        n => topo.networks[n].mtu.is_some(),
    };
    let which = if set {
        format!("{field} {overlay_mtu}")
    } else {
        format!("the default overlay MTU {overlay_mtu} ({field} is not set)")
    };
    let overhead = match underlay {
        IpAddr::V4(_) => config::OVERHEAD_V4,
        IpAddr::V6(_) => config::OVERHEAD_V6,
    };
    let need = u32::from(overlay_mtu) + u32::from(overhead);
    bail!(
        "{which} does not fit the underlay: {nic} has MTU {nic_mtu}, and VXLAN adds {}; \
         the largest overlay MTU that fits {nic} is {fit}. Set {field} to at most {fit} in {}, \
         or raise the MTU of {nic} to at least {need}",
        overhead_text(underlay),
        config.display(),
    )
}

/// Logs a change of the uplink NIC's MTU and what it means for traffic.
pub(super) fn log_mtu_change(topo: &Topology, me: usize, nic: &str, from: u16, to: u16) {
    let underlay = topo.hosts[me].underlay;
    let overlay_mtu = (0..topo.networks.len())
        .map(|n| topo.network_mtu(n, me))
        .max()
        .unwrap_or_else(|| topo.overlay_mtu(me));
    let fit = tables::largest_overlay_mtu(to, underlay);
    if fit >= overlay_mtu {
        tracing::info!(dev = %nic, from, to, overlay_mtu, largest_overlay_mtu = fit, "underlay MTU changed; the overlay MTU fits");
    } else {
        tracing::warn!(dev = %nic, from, to, overlay_mtu, largest_overlay_mtu = fit, "underlay MTU changed; the overlay MTU no longer fits: packets toward peers over {fit} bytes are dropped as underlay_too_big with an ICMP error naming {fit}");
        if underlay.is_ipv6() && fit < 1280 {
            tracing::warn!(dev = %nic, largest_overlay_mtu = fit, "below 1280 bytes, the IPv6 minimum MTU: IPv6 senders will not go lower, and their full-sized packets toward peers are lost");
        }
    }
}

/// With the UDP uplink the kernel routes VXLAN: warns when its route to a
/// peer leaves through another device than `nic`, whose MTU is the one the
/// pipeline checks.
pub(super) fn warn_routes_off_nic(
    topo: &Topology,
    me: usize,
    routes: &RouteSet,
    table: &mut NeighbourTable,
    nic: &str,
    nic_index: u32,
) {
    let mut peers: Vec<usize> = routes
        .routes
        .iter()
        .flat_map(|r| r.next_hops.iter().map(|nh| nh.host))
        .filter(|&h| h != me)
        .collect();
    peers.sort_unstable();
    peers.dedup();
    for h in peers {
        let peer = topo.hosts[h].underlay;
        match table.next_hop_for(peer) {
            Ok(Some(hop)) if hop.ifindex != nic_index && hop.ifindex != 0 => {
                tracing::warn!(peer = %topo.hosts[h].name, %peer, dev = %nic, ifindex = hop.ifindex, "the kernel routes VXLAN to this peer through another device than nic: the MTU checked is nic's");
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%peer, error = %e, "route lookup failed"),
        }
    }
}

/// Segments per container super-packet: as many as one GSO send of the UDP
/// uplink carries (65507 bytes of datagrams, each VXLAN and inner Ethernet
/// plus one MTU-sized segment), at most 64. A super-packet then crosses as
/// one send, one GRO train and one write on the far side instead of two.
pub fn container_gso_segs(mtu: u16) -> u32 {
    (65507 / (u32::from(mtu) + 22)).clamp(1, 64)
}

/// Applies [`container_gso_segs`] to a container port the router made. A
/// kernel that refuses (older iproute2 or kernel) only costs speed: logged.
pub(super) fn cap_container_gso(netns: &str, mtu: u16) {
    let segs = container_gso_segs(mtu);
    match netns::set_container_gso_max_segs(netns, segs) {
        Ok(()) => tracing::debug!(netns, segs, "container gso_max_segs set"),
        Err(e) => {
            tracing::warn!(netns, error = %e, "could not cap the container's super-packets (gso_max_segs)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(underlay: &str, mtu: Option<u16>) -> Topology {
        let mtu = mtu.map_or(String::new(), |m| format!("mtu = {m}\n"));
        let other = if underlay.contains(':') {
            "2001:2::2"
        } else {
            "198.18.0.2"
        };
        let text = format!(
            "[overlay]\nvni = 42\n{mtu}\n[[hosts]]\nname = \"h1\"\nunderlay = \"{underlay}\"\n\
             subnets = [\"198.19.1.0/24\"]\nnic = \"eth0\"\n\n[[hosts]]\nname = \"h2\"\n\
             underlay = \"{other}\"\nsubnets = [\"198.19.2.0/24\"]\n\n\
             [[links]]\na = \"h1\"\nb = \"h2\"\ncost = 10\n"
        );
        config::parse(&text, "t.toml").expect("topology")
    }

    #[test]
    fn overlay_mtu_must_fit_the_nic() {
        let cfg = Path::new("t.toml");
        // Exactly what fits starts.
        check_mtu_fits(&topo("198.18.0.1", Some(1450)), 0, "eth0", 1500, cfg).expect("fits");
        check_mtu_fits(&topo("2001:2::1", None), 0, "eth0", 1500, cfg).expect("default fits");
        let e = check_mtu_fits(&topo("198.18.0.1", Some(1451)), 0, "eth0", 1500, cfg)
            .expect_err("one byte over")
            .to_string();
        for want in [
            "overlay.mtu 1451 does not fit the underlay: eth0 has MTU 1500",
            "50 bytes over IPv4",
            "the largest overlay MTU that fits eth0 is 1450",
            "at most 1450 in t.toml",
            "raise the MTU of eth0 to at least 1501",
        ] {
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
        let e = check_mtu_fits(&topo("2001:2::1", None), 0, "nic9", 1280, cfg)
            .expect_err("default over a small NIC")
            .to_string();
        for want in [
            "the default overlay MTU 1430 (overlay.mtu is not set) does not fit",
            "nic9 has MTU 1280",
            "70 bytes over IPv6",
            "fits nic9 is 1210",
            "at least 1500",
        ] {
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
        // A NIC MTU below the headers: nothing fits, nothing wraps.
        let e = check_mtu_fits(&topo("198.18.0.1", Some(1450)), 0, "eth0", 40, cfg)
            .expect_err("tiny NIC")
            .to_string();
        assert!(
            e.contains("fits eth0 is 0") && e.contains("at least 1500"),
            "{e}"
        );
        // Every network must fit: the one with the largest MTU is named.
        let mut t = topo("198.18.0.1", Some(1400));
        t.networks.push(config::Network {
            name: "blue".into(),
            vni: 43,
            mtu: Some(1460),
            lease: None,
        });
        let e = check_mtu_fits(&t, 0, "eth0", 1500, cfg)
            .expect_err("blue over")
            .to_string();
        assert!(
            e.contains("the mtu of network \"blue\" 1460 does not fit")
                && e.contains("Set the mtu of network \"blue\" to at most 1450"),
            "{e}"
        );
    }
}
