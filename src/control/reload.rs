//! What a reload may change, and the topology as the control thread uses
//! it.
//!
//! A SIGHUP reload re-reads the file and takes new routes, peers, subnets,
//! links, networks and liveness keys without a restart; whatever the devices,
//! sockets and workers were made with at start ([`RestartKey`]) must stay
//! the same, or the reload is refused and named field by field.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ipnet::IpNet;

use crate::config::{self, LivenessConfig, MacAddr, PortKind, StoreConfig, Topology, UplinkIo};

/// The parts of this host's entry that need a restart when they change:
/// everything the devices, sockets and workers were made with at start (a
/// port's effective MTU, its gateways, offloads and queue length are set on
/// the devices then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RestartKey {
    nic: Option<String>,
    uplink_io: UplinkIo,
    underlay: IpAddr,
    workers: Vec<usize>,
    vtep_mac: MacAddr,
    ports: Vec<PortKey>,
    vni: u32,
    udp_port: u16,
    overlay_mtu: u16,
    liveness: Option<LivenessConfig>,
    store: Option<StoreConfig>,
}

/// A port's part of [`RestartKey`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortKey {
    name: String,
    kind: PortKind,
    network: String,
    netns: Option<String>,
    addresses: Vec<IpNet>,
    mac: Option<MacAddr>,
    mtu: u16,
    gateways: Vec<IpAddr>,
    offload: bool,
    queue_len: u32,
}

impl RestartKey {
    /// The key of host `host` of `topo`.
    pub(super) fn of(topo: &Topology, host: usize) -> RestartKey {
        let h = &topo.hosts[host];
        RestartKey {
            nic: h.nic.clone(),
            uplink_io: h.uplink_io,
            underlay: h.underlay,
            workers: h.workers.clone(),
            vtep_mac: h.vtep_mac,
            ports: h
                .ports
                .iter()
                .enumerate()
                .map(|(i, p)| PortKey {
                    name: p.name.clone(),
                    kind: p.kind,
                    network: p.network.clone(),
                    netns: p.netns.clone(),
                    addresses: p.addresses.clone(),
                    mac: p.mac,
                    mtu: topo.port_mtu(host, i),
                    gateways: p.gateways.clone(),
                    offload: p.offload,
                    queue_len: p.queue_len,
                })
                .collect(),
            vni: topo.overlay.vni,
            udp_port: topo.overlay.udp_port,
            overlay_mtu: topo.overlay_mtu(host),
            liveness: topo.overlay.liveness.clone(),
            store: topo.store.clone(),
        }
    }

    /// The fields that differ from `new`, as the topology file names them.
    /// Every field is destructured, so a field added to the key cannot be
    /// left out of the message.
    pub(super) fn changes(&self, new: &RestartKey) -> Vec<String> {
        let RestartKey {
            nic,
            uplink_io,
            underlay,
            workers,
            vtep_mac,
            ports,
            vni,
            udp_port,
            overlay_mtu,
            liveness,
            store,
        } = self;
        let mut out = Vec::new();
        let mut field = |differs: bool, name: &str| {
            if differs {
                out.push(name.to_owned());
            }
        };
        field(*nic != new.nic, "nic");
        field(*uplink_io != new.uplink_io, "uplink_io");
        field(*underlay != new.underlay, "underlay");
        field(*workers != new.workers, "workers");
        field(*vtep_mac != new.vtep_mac, "vtep_mac");
        field(*vni != new.vni, "overlay.vni");
        field(*udp_port != new.udp_port, "overlay.udp_port");
        field(*overlay_mtu != new.overlay_mtu, "overlay.mtu");
        field(*liveness != new.liveness, "overlay.liveness_*");
        field(*store != new.store, "store");
        if ports.len() != new.ports.len() {
            out.push(format!(
                "ports ({} before, {} now)",
                ports.len(),
                new.ports.len()
            ));
        } else {
            for (a, b) in ports.iter().zip(&new.ports) {
                let PortKey {
                    name,
                    kind,
                    network,
                    netns,
                    addresses,
                    mac,
                    mtu,
                    gateways,
                    offload,
                    queue_len,
                } = a;
                let mut port = |differs: bool, f: &str| {
                    if differs {
                        out.push(format!("ports[{name}].{f}"));
                    }
                };
                port(*name != b.name, "name");
                port(*kind != b.kind, "kind");
                port(*netns != b.netns, "netns");
                port(*addresses != b.addresses, "addresses");
                port(*mac != b.mac, "mac");
                port(*network != b.network, "network");
                port(*mtu != b.mtu, "mtu");
                port(*gateways != b.gateways, "gateways");
                port(*offload != b.offload, "offload");
                port(*queue_len != b.queue_len, "queue_len");
            }
        }
        out
    }
}

/// Fills in what the control plane decides or learns for the topology: the
/// MACs of veth containers the file gives none for (derived where the
/// router makes the veth, read from the kernel in `learned` where it
/// attaches to an existing one).
pub(super) fn effective(
    mut topo: Topology,
    host: usize,
    learned: &BTreeMap<String, [u8; 6]>,
) -> Topology {
    let vtep = topo.hosts[host].vtep_mac.0;
    for (i, p) in topo.hosts[host].ports.iter_mut().enumerate() {
        if p.kind == PortKind::Veth && p.mac.is_none() {
            p.mac = match p.netns {
                Some(_) => Some(config::container_port_mac(vtep, i + 1)),
                None => learned.get(&p.name).copied(),
            }
            .map(config::MacAddr);
        }
    }
    topo
}

/// The container-end MACs of the existing veths this host attaches to
/// without a configured `mac`: delivered frames must carry the address the
/// container accepts, also before it has spoken.
pub(super) fn learn_container_macs(host: &config::Host) -> Result<BTreeMap<String, [u8; 6]>> {
    let mut learned = BTreeMap::new();
    for p in &host.ports {
        if p.kind != PortKind::Veth || p.mac.is_some() || p.netns.is_some() {
            continue;
        }
        let mac = crate::host::link::veth_peer_mac(&p.name).with_context(|| {
            format!(
                "veth port {} has no `mac` and the MAC of its container end cannot be read; set `mac`",
                p.name
            )
        })?;
        tracing::info!(port = %p.name, mac = %config::MacAddr(mac), "container MAC read from the veth's other end");
        learned.insert(p.name.clone(), mac);
    }
    Ok(learned)
}

/// Loads the topology at `path` and finds host `host` in it.
pub(super) fn load_topology(path: &Path, host: &str) -> Result<(Topology, usize)> {
    let topo = config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(me) = topo.host_index(host) else {
        let names: Vec<&str> = topo.hosts.iter().map(|h| h.name.as_str()).collect();
        bail!(
            "no host {host:?} in {} (hosts: {})",
            path.display(),
            names.join(", ")
        );
    };
    Ok((topo, me))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(extra: &str) -> Topology {
        let text = format!(
            "[overlay]\nvni = 42\n\n[[hosts]]\nname = \"h1\"\nunderlay = \"198.18.0.1\"\n\
             subnets = [\"198.19.1.0/24\"]\nnic = \"eth0\"\n{extra}\n\n[[hosts]]\nname = \"h2\"\n\
             underlay = \"198.18.0.2\"\nsubnets = [\"198.19.2.0/24\"]\n\n\
             [[links]]\na = \"h1\"\nb = \"h2\"\ncost = 1\n"
        );
        config::parse(&text, "t.toml").unwrap()
    }

    #[test]
    fn the_restart_key_names_what_changed() {
        let port = "\n  [[hosts.ports]]\n  name = \"c1\"\n  kind = \"tun\"\n  addresses = [\"198.19.1.2/32\"]\n";
        let a = RestartKey::of(&topo(port), 0);
        assert!(a.changes(&a).is_empty());
        assert_eq!(a, RestartKey::of(&topo(port), 0));
        let b = RestartKey::of(&topo(&port.replace("1.2/32", "1.3/32")), 0);
        assert_ne!(a, b);
        assert_eq!(a.changes(&b), ["ports[c1].addresses"]);
        let c = RestartKey::of(&topo(""), 0);
        assert_eq!(a.changes(&c), ["ports (1 before, 0 now)"]);
        let d = RestartKey::of(&topo("workers = [1]"), 0);
        assert_eq!(c.changes(&d), ["workers"]);
        // A peer's change is no restart.
        let mut t = topo("");
        t.hosts[1].subnets.push("198.19.3.0/24".parse().unwrap());
        assert!(c.changes(&RestartKey::of(&t, 0)).is_empty());
    }

    #[test]
    fn networks_come_and_go_without_a_restart() {
        let base = "[overlay]\nvni = 42\n\n[[hosts]]\nname = \"h1\"\nunderlay = \"198.18.0.1\"\n\
             subnets = [\"198.19.1.0/24\"]\nnic = \"eth0\"\n";
        let blue =
            "[[networks]]\nname = \"blue\"\nvni = 43\nsubnets = { h1 = [\"198.19.1.0/24\"] }\n";
        let port = |net: &str| {
            format!("  [[hosts.ports]]\n  name = \"c1\"\n  kind = \"tun\"\n  network = \"{net}\"\n  addresses = [\"198.19.1.2/32\"]\n")
        };
        let key = |text: String| RestartKey::of(&config::parse(&text, "t.toml").unwrap(), 0);
        let without = key(base.to_string());
        let with = key(format!("{blue}{base}"));
        assert!(without.changes(&with).is_empty());
        // A topology port moving to another network is a restart.
        let a = key(format!("{blue}{base}{}", port("default")));
        let b = key(format!("{blue}{base}{}", port("blue")));
        assert_eq!(a.changes(&b), ["ports[c1].network"]);
        // So is a change of the MTU its device was made with.
        let c = key(format!(
            "{}{base}{}",
            blue.replace("vni = 43", "vni = 43\nmtu = 1300"),
            port("blue")
        ));
        assert_eq!(b.changes(&c), ["ports[c1].mtu"]);
    }
}
