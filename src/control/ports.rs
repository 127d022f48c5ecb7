//! The router's container ports by index: the topology's, then those
//! attached through the control socket, with what each owns.
//!
//! Indices are stable for a port's life: workers and tables name ports by
//! index, so a detached port leaves a vacant index that a later attach may
//! take. Index 0 is the uplink and never a slot here.
//!
//! Invariants: no two ports share a name, an attachment id or an address;
//! every attached port's addresses lie in the host's subnets and are none
//! of the router's own (network, gateway, broadcast).

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use crate::api::{self, ErrorCode, PortCounters, PortInfo};
use crate::config::{self, PortConfig, PortKind};
use crate::port::xdp::ContainerLink;

/// What the container side of an attached port is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Attachment {
    /// The caller's id (CNI: `NETWORK/CONTAINER_ID/IFNAME`).
    pub id: String,
    /// The container's namespace file.
    pub netns: PathBuf,
    /// The interface inside it.
    pub ifname: String,
    /// Its addresses with their prefix lengths, as set on the interface.
    pub addresses: Vec<IpNet>,
}

/// One port.
pub(super) struct Slot {
    /// The port as the tables see it: `name` is the router-side device,
    /// `addresses` the sources it may use (host prefixes for attached ones).
    pub config: PortConfig,
    /// `Some` for a port attached through the control socket.
    pub attachment: Option<Attachment>,
    /// The container XDP program's link to its device, when its queues are
    /// AF_XDP sockets.
    pub program: Option<ContainerLink>,
    /// What a handover passes for its queues.
    pub passable: super::setup::Passable,
}

/// The ports by index; `slots[i]` is port `i + 1`.
#[derive(Default)]
pub(super) struct PortSet {
    slots: Vec<Option<Slot>>,
}

impl PortSet {
    /// Puts `slot` at port index `index` (1-based), which must be free.
    pub(super) fn insert(&mut self, index: u16, slot: Slot) {
        let i = usize::from(index) - 1;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        debug_assert!(self.slots[i].is_none());
        self.slots[i] = Some(slot);
    }

    /// Takes the port at `index` out.
    pub(super) fn remove(&mut self, index: u16) -> Option<Slot> {
        let i = usize::from(index).checked_sub(1)?;
        let s = self.slots.get_mut(i)?.take();
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        s
    }

    /// The lowest free index, if the set is not full.
    pub(super) fn free_index(&self) -> Option<u16> {
        let i = self
            .slots
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.slots.len());
        (i < config::MAX_PORTS).then(|| (i + 1) as u16)
    }

    /// The index of the attached port `id`.
    pub(super) fn find_id(&self, id: &str) -> Option<u16> {
        self.iter()
            .find(|(_, s)| s.attachment.as_ref().is_some_and(|a| a.id == id))
            .map(|(i, _)| i)
    }

    /// Every port with its index.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u16, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some(((i + 1) as u16, s.as_ref()?)))
    }

    /// Every port with its index, to change.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (u16, &mut Slot)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| Some(((i + 1) as u16, s.as_mut()?)))
    }

    /// The port at `index`.
    pub(super) fn get(&self, index: u16) -> Option<&Slot> {
        self.slots.get(usize::from(index).checked_sub(1)?)?.as_ref()
    }

    /// The port at `index`, to change.
    pub(super) fn get_mut(&mut self, index: u16) -> Option<&mut Slot> {
        self.slots
            .get_mut(usize::from(index).checked_sub(1)?)?
            .as_mut()
    }

    /// The ports' configurations by index, as [`crate::dataplane::tables::HostEnv::ports`] takes them.
    pub(super) fn configs(&self) -> Vec<Option<PortConfig>> {
        self.slots
            .iter()
            .map(|s| s.as_ref().map(|s| s.config.clone()))
            .collect()
    }

    /// How many ports there are.
    pub(super) fn len(&self) -> usize {
        self.iter().count()
    }

    /// Checks that an attachment of `addresses` fits this host: each lies
    /// in one of `subnets`, is not one of the router's own addresses, and
    /// no port holds it. Returns the host prefixes the port may use as
    /// sources, and its gateways (one per family, the first host address
    /// of the subnet holding its first address of that family).
    pub(super) fn admit(
        &self,
        network: &str,
        subnets: &[IpNet],
        addresses: &[IpNet],
    ) -> Result<(Vec<IpNet>, Vec<IpAddr>), api::ApiError> {
        let invalid = |m: String| api::ApiError {
            code: ErrorCode::Invalid,
            message: m,
        };
        let mut hosts = Vec::new();
        let mut gateways: Vec<IpAddr> = Vec::new();
        for a in addresses {
            let addr = a.addr();
            let Some(subnet) = subnets.iter().find(|s| s.contains(&addr)) else {
                return Err(invalid(format!(
                    "address {a} lies in none of this host's subnets ({})",
                    subnets
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            if a.prefix_len() < subnet.prefix_len() {
                return Err(invalid(format!(
                    "address {a}: its prefix is wider than the host subnet {subnet}"
                )));
            }
            let gateway = config::first_host(subnet);
            let broadcast = match subnet {
                IpNet::V4(n) if n.prefix_len() < 31 => Some(IpAddr::V4(n.broadcast())),
                _ => None,
            };
            if addr == subnet.network() || Some(addr) == gateway || Some(addr) == broadcast {
                return Err(invalid(format!(
                    "address {addr} is the router's own in {subnet} (network, gateway or broadcast)"
                )));
            }
            let host = IpNet::from(addr);
            if hosts.contains(&host) {
                return Err(invalid(format!("address {addr} is given twice")));
            }
            // Networks are separate address spaces: only a port of the
            // same network can hold the address.
            if let Some((_, s)) = self.iter().find(|(_, s)| {
                s.config.network == network && s.config.addresses.iter().any(|p| p.contains(&addr))
            }) {
                return Err(invalid(format!(
                    "address {addr} is held by port {}",
                    s.config.name
                )));
            }
            hosts.push(host);
            if let Some(g) = gateway {
                if !gateways.iter().any(|x| x.is_ipv4() == g.is_ipv4()) {
                    gateways.push(g);
                }
            }
        }
        gateways.sort_by_key(IpAddr::is_ipv6);
        Ok((hosts, gateways))
    }
}

/// The router-side device name of attachment `id`: `vx` and 12 hex digits
/// of a hash of the id, so a router that starts again finds the same name.
pub(super) fn device_name(id: &str) -> String {
    // FNV-1a, 64 bits: stable across builds and platforms (std's hasher
    // is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("vx{:012x}", h & 0xffff_ffff_ffff)
}

/// The port as the protocol shows it.
pub(super) fn info(slot: &Slot, mtu: u16, counters: PortCounters) -> PortInfo {
    let c = &slot.config;
    let (netns, ifname, addresses) = match &slot.attachment {
        Some(a) => (
            Some(a.netns.display().to_string()),
            Some(a.ifname.clone()),
            a.addresses.clone(),
        ),
        None => (
            c.netns.clone(),
            c.netns
                .as_ref()
                .map(|_| crate::host::netns::CONTAINER_IFNAME.to_owned()),
            c.addresses.clone(),
        ),
    };
    PortInfo {
        id: slot.attachment.as_ref().map(|a| a.id.clone()),
        name: c.name.clone(),
        kind: c.kind,
        network: c.network.clone(),
        netns,
        ifname,
        mac: match c.kind {
            PortKind::Veth => c.mac.map(|m| m.to_string()),
            PortKind::Tun => None,
        },
        addresses,
        gateways: c.gateways.clone(),
        mtu,
        counters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(name: &str, addrs: &[&str]) -> Slot {
        Slot {
            config: PortConfig {
                name: name.into(),
                kind: PortKind::Tun,
                netns: None,
                network: config::DEFAULT_NETWORK.into(),
                addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
                mac: None,
                gateways: vec![],
                mtu: None,
                offload: true,
                queue_len: config::DEFAULT_QUEUE_LEN,
            },
            attachment: None,
            program: None,
            passable: crate::control::setup::Passable::Fds(Vec::new()),
        }
    }

    #[test]
    fn indices_are_stable_and_reused_lowest_first() {
        let mut s = PortSet::default();
        assert_eq!(s.free_index(), Some(1));
        s.insert(1, slot("a", &[]));
        s.insert(2, slot("b", &[]));
        s.insert(3, slot("c", &[]));
        assert!(s.remove(2).is_some());
        assert_eq!(s.free_index(), Some(2));
        assert_eq!(s.get(3).unwrap().config.name, "c");
        assert_eq!(s.configs().len(), 3);
        assert!(s.remove(3).is_some());
        assert_eq!(s.configs().len(), 1);
        assert!(s.remove(0).is_none());
        assert!(s.remove(9).is_none());
        for i in 2..=config::MAX_PORTS as u16 {
            s.insert(i, slot("x", &[]));
        }
        assert_eq!(s.free_index(), None);
    }

    #[test]
    fn admission_refuses_foreign_own_and_taken_addresses() {
        let mut s = PortSet::default();
        s.insert(1, slot("a", &["198.19.1.2/32"]));
        let subnets: Vec<IpNet> = vec![
            "198.19.1.0/24".parse().unwrap(),
            "2001:2:0:1::/64".parse().unwrap(),
        ];
        let p = |v: &[&str]| v.iter().map(|a| a.parse().unwrap()).collect::<Vec<IpNet>>();
        let (hosts, gws) = s
            .admit(
                config::DEFAULT_NETWORK,
                &subnets,
                &p(&["198.19.1.5/24", "2001:2:0:1::5/64"]),
            )
            .unwrap();
        assert_eq!(hosts, p(&["198.19.1.5/32", "2001:2:0:1::5/128"]));
        assert_eq!(
            gws,
            vec![
                "198.19.1.1".parse::<IpAddr>().unwrap(),
                "2001:2:0:1::1".parse().unwrap()
            ]
        );
        for bad in [
            "198.19.2.5/24",
            "198.19.1.0/24",
            "198.19.1.1/24",
            "198.19.1.255/24",
            "198.19.1.2/24",
            "198.19.1.5/16",
            "2001:2:0:1::1/64",
        ] {
            let e = s
                .admit(config::DEFAULT_NETWORK, &subnets, &p(&[bad]))
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::Invalid, "{bad}");
        }
        assert!(s
            .admit(
                config::DEFAULT_NETWORK,
                &subnets,
                &p(&["198.19.1.5/24", "198.19.1.5/32"])
            )
            .is_err());
        // Another network is another address space: port a's address is free
        // there.
        let (hosts, _) = s.admit("blue", &subnets, &p(&["198.19.1.2/24"])).unwrap();
        assert_eq!(hosts, p(&["198.19.1.2/32"]));
    }

    #[test]
    fn device_names_are_stable_interface_names() {
        let n = device_name("net/c0ffee/eth0");
        assert_eq!(n, device_name("net/c0ffee/eth0"));
        assert_ne!(n, device_name("net/c0ffee/eth1"));
        assert_eq!(n.len(), 14);
        assert!(config::check_ifname(&n).is_ok());
    }
}
