//! Network device facts from the kernel (RTM_GETLINK).
//!
//! Layer: control-plane I/O. Answers describe the device as seen from the
//! calling thread's network namespace at the moment of the call; nothing is
//! cached, so callers ask again after a device changes.

use netlink_packet_route::{
    link::{LinkAttribute, LinkFlags, LinkMessage},
    RouteNetlinkMessage,
};

use super::{check_ifname, nl::Rtnl, HostError, Result};

/// What the control thread needs to know about one network device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index (`ifindex`).
    pub index: u32,
    /// Hardware address; all zeros for devices without one (TUN, lo).
    pub mac: [u8; 6],
    /// MTU, saturated at 65535 (only lo reports more, 65536).
    pub mtu: u16,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Receive queues the device uses: its ethtool rx + combined channels,
    /// else netlink's allocated count (1 when the kernel says neither). Only
    /// queues in use can take an AF_XDP socket.
    pub num_rx_queues: u32,
}

/// Looks `ifname` up in the calling thread's network namespace.
///
/// Errors: [`HostError::NoSuchDevice`] when there is no such device,
/// [`HostError::Invalid`] for a name the kernel could never hold.
pub fn link_info(ifname: &str) -> Result<LinkInfo> {
    check_ifname(ifname)?;
    let mut rtnl = Rtnl::open()?;
    link_info_with(&mut rtnl, ifname)
}

/// [`link_info`] over an already open request socket.
pub(crate) fn link_info_with(rtnl: &mut Rtnl, ifname: &str) -> Result<LinkInfo> {
    let mut req = LinkMessage::default();
    req.attributes
        .push(LinkAttribute::IfName(ifname.to_string()));
    let op = format!("RTM_GETLINK {ifname}");
    let answers = match rtnl.request(&op, RouteNetlinkMessage::GetLink(req), 0) {
        Ok(a) => a,
        Err(HostError::Netlink { errno, .. }) if errno == libc::ENODEV => {
            return Err(HostError::NoSuchDevice(ifname.to_string()))
        }
        Err(e) => return Err(e),
    };
    for answer in answers {
        if let RouteNetlinkMessage::NewLink(link) = answer {
            let mut info = from_message(&link);
            // Netlink gives the allocated queues; a veth allocates one per
            // CPU but uses one unless made with `numrxqueues`.
            if let Ok(Some(n)) = crate::port::sys::rx_channels(ifname) {
                info.num_rx_queues = n;
            }
            return Ok(info);
        }
    }
    Err(HostError::Decode {
        op,
        detail: "no RTM_NEWLINK in the answer".to_string(),
    })
}

/// Extracts a [`LinkInfo`] from a link message.
fn from_message(link: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: link.header.index,
        mac: [0; 6],
        mtu: 0,
        up: link.header.flags.contains(LinkFlags::Up),
        num_rx_queues: 1,
    };
    for attr in &link.attributes {
        match attr {
            LinkAttribute::Address(a) => {
                if let Ok(mac) = <[u8; 6]>::try_from(a.as_slice()) {
                    info.mac = mac;
                }
            }
            LinkAttribute::Mtu(m) => info.mtu = u16::try_from(*m).unwrap_or(u16::MAX),
            LinkAttribute::NumRxQueues(q) => info.num_rx_queues = (*q).max(1),
            _ => {}
        }
    }
    info
}

/// The MAC of the other end of veth `ifname`, wherever that end lives: the
/// kernel names the peer by its index (`IFLA_LINK`) and, when it is in
/// another network namespace, by that namespace's id as seen from ours
/// (`IFLA_LINK_NETNSID`), which a request can target
/// (`IFLA_TARGET_NETNSID`, Linux 4.20).
///
/// Errors: [`HostError::NoSuchDevice`]; [`HostError::Invalid`] when
/// `ifname` is no veth (it names no peer); netlink errors as they come.
pub fn veth_peer_mac(ifname: &str) -> Result<[u8; 6]> {
    check_ifname(ifname)?;
    let mut rtnl = Rtnl::open()?;
    let link = get_link(&mut rtnl, ifname, LinkMessage::default(), ifname)?;
    let mut peer = None;
    let mut nsid = None;
    for attr in &link.attributes {
        match attr {
            LinkAttribute::Link(i) => peer = Some(*i),
            LinkAttribute::LinkNetNsId(n) => nsid = Some(*n),
            _ => {}
        }
    }
    let Some(peer) = peer.filter(|&i| i != 0) else {
        return Err(HostError::Invalid(format!(
            "{ifname} names no peer device: not a veth"
        )));
    };
    let mut req = LinkMessage::default();
    req.header.index = peer;
    if let Some(n) = nsid {
        req.attributes.push(LinkAttribute::IfNetnsId(n));
    }
    let what = format!("the peer of {ifname} (index {peer}, netns id {nsid:?})");
    let peer_link = get_link(&mut rtnl, ifname, req, &what)?;
    let mac = from_message(&peer_link).mac;
    if mac == [0; 6] {
        return Err(HostError::Decode {
            op: format!("RTM_GETLINK {what}"),
            detail: "no hardware address".to_string(),
        });
    }
    Ok(mac)
}

/// The addresses the kernel holds on device `ifname` in this namespace,
/// except IPv6 link-local ones (every IPv6 device has one).
pub fn device_addresses(ifname: &str) -> Result<Vec<std::net::IpAddr>> {
    use netlink_packet_route::address::{AddressAttribute, AddressMessage};
    let info = link_info(ifname)?;
    let mut rtnl = Rtnl::open()?;
    let answers = rtnl.request(
        &format!("RTM_GETADDR {ifname}"),
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        netlink_packet_core::NLM_F_DUMP,
    )?;
    let mut out = Vec::new();
    for a in answers {
        let RouteNetlinkMessage::NewAddress(m) = a else { continue };
        if m.header.index != info.index {
            continue;
        }
        for attr in &m.attributes {
            if let AddressAttribute::Address(ip) = attr {
                let link_local = matches!(ip, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
                if !link_local {
                    out.push(*ip);
                }
            }
        }
    }
    Ok(out)
}

/// One RTM_GETLINK: by name when `req` names no index, else as `req` says.
fn get_link(rtnl: &mut Rtnl, ifname: &str, mut req: LinkMessage, what: &str) -> Result<LinkMessage> {
    if req.header.index == 0 {
        req.attributes.push(LinkAttribute::IfName(ifname.to_string()));
    }
    let op = format!("RTM_GETLINK {what}");
    let answers = match rtnl.request(&op, RouteNetlinkMessage::GetLink(req), 0) {
        Ok(a) => a,
        Err(HostError::Netlink { errno, .. }) if errno == libc::ENODEV => {
            return Err(HostError::NoSuchDevice(what.to_string()))
        }
        Err(e) => return Err(e),
    };
    answers
        .into_iter()
        .find_map(|a| match a {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .ok_or(HostError::Decode {
            op,
            detail: "no RTM_NEWLINK in the answer".to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_rejected_before_any_syscall() {
        for name in ["", "a/b", "-x", "sixteen-chars-xx", "..", "a b"] {
            assert!(
                matches!(link_info(name), Err(HostError::Invalid(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn loopback_is_found_in_any_namespace() {
        // lo exists in every namespace; reading it changes nothing.
        let lo = link_info("lo").expect("lo");
        assert!(lo.index >= 1);
        assert_eq!(lo.mac, [0; 6]);
        assert!(lo.mtu >= 1280);
    }

    #[test]
    fn missing_device_is_named() {
        match link_info("vxr-absent0") {
            Err(HostError::NoSuchDevice(n)) => assert_eq!(n, "vxr-absent0"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
