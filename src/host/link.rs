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
