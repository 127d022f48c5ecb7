//! Network device facts from the kernel (RTM_GETLINK), and a watch on one
//! device's MTU (RTNLGRP_LINK events).
//!
//! Layer: control-plane I/O. Answers describe the device as seen from the
//! calling thread's network namespace at the moment of the call; nothing is
//! cached, so callers ask again after a device changes, or follow it with a
//! [`LinkWatch`].

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::{
    link::{LinkAttribute, LinkFlags, LinkMessage},
    RouteNetlinkMessage,
};
use netlink_sys::Socket;

use super::{
    check_ifname,
    nl::{self, Rtnl},
    HostError, Result,
};

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

/// Looks the device with interface index `index` up (its name may have
/// changed since it was first found).
fn link_info_by_index(rtnl: &mut Rtnl, index: u32) -> Result<LinkInfo> {
    let mut req = LinkMessage::default();
    req.header.index = index;
    let op = format!("RTM_GETLINK ifindex {index}");
    let answers = match rtnl.request(&op, RouteNetlinkMessage::GetLink(req), 0) {
        Ok(a) => a,
        Err(HostError::Netlink { errno, .. }) if errno == libc::ENODEV => {
            return Err(HostError::NoSuchDevice(format!("ifindex {index}")))
        }
        Err(e) => return Err(e),
    };
    answers
        .into_iter()
        .find_map(|a| match a {
            RouteNetlinkMessage::NewLink(link) => Some(from_message(&link)),
            _ => None,
        })
        .ok_or(HostError::Decode {
            op,
            detail: "no RTM_NEWLINK in the answer".to_string(),
        })
}

/// What changed on a watched device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkChange {
    /// Its MTU, from `from` to `to`.
    Mtu { from: u16, to: u16 },
    /// It left the namespace (deleted, or moved to another).
    Gone,
}

/// Follows one device's MTU through the kernel's link events.
///
/// The control thread registers [`LinkWatch::fd`] with its poll loop and
/// calls [`LinkWatch::process_events`] when it is readable. The event
/// socket is subscribed before the device is first read, so no change made
/// in between is lost; when the kernel drops events (`ENOBUFS`) the device
/// is read again. Only the device's index is followed: a rename changes
/// nothing.
pub struct LinkWatch {
    index: u32,
    mtu: u16,
    gone: bool,
    rtnl: Rtnl,
    events: Socket,
    buf: Vec<u8>,
}

impl std::fmt::Debug for LinkWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkWatch")
            .field("index", &self.index)
            .field("mtu", &self.mtu)
            .field("gone", &self.gone)
            .finish()
    }
}

impl LinkWatch {
    /// Subscribes to link events, then reads `ifname`, in the calling
    /// thread's network namespace.
    pub fn open(ifname: &str) -> Result<Self> {
        check_ifname(ifname)?;
        let op = "open link event socket";
        let io = |source| HostError::Io {
            op: op.to_string(),
            source,
        };
        let events = nl::open_socket(op)?;
        events.add_membership(libc::RTNLGRP_LINK).map_err(io)?;
        events.set_non_blocking(true).map_err(io)?;
        let mut rtnl = Rtnl::open()?;
        let info = link_info_with(&mut rtnl, ifname)?;
        Ok(LinkWatch {
            index: info.index,
            mtu: info.mtu,
            gone: false,
            rtnl,
            events,
            buf: Vec::with_capacity(nl::RECV_BUF),
        })
    }

    /// The device's MTU as last seen.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// The event socket's descriptor: non-blocking, readable when the kernel
    /// has link changes (of any device) for us.
    pub fn fd(&self) -> RawFd {
        self.events.as_raw_fd()
    }

    /// Applies every pending event. Drains the socket until it would block,
    /// so edge-triggered registration (mio) is correct. Returns what changed
    /// on the device, taken over all pending events (an MTU that went and
    /// came back is no change), or `None`.
    pub fn process_events(&mut self) -> Result<Option<LinkChange>> {
        let op = "receive link events";
        let before = self.mtu;
        let was_gone = self.gone;
        loop {
            match nl::recv_datagram(&self.events, &mut self.buf, op) {
                Ok(()) => {}
                Err(HostError::Io { source, .. }) if source.kind() == io::ErrorKind::WouldBlock => {
                    break
                }
                Err(HostError::Io { source, .. })
                    if source.kind() == io::ErrorKind::Interrupted =>
                {
                    continue
                }
                Err(HostError::Io { source, .. })
                    if source.raw_os_error() == Some(libc::ENOBUFS) =>
                {
                    // Events were lost: only a fresh read is exact.
                    self.reread()?;
                    continue;
                }
                Err(HostError::Decode { .. }) => {
                    self.reread()?;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let (index, mtu, gone) = (self.index, &mut self.mtu, &mut self.gone);
            nl::for_each_message(&self.buf, op, |_, payload| {
                if let NetlinkPayload::InnerMessage(msg) = payload {
                    apply_event(index, mtu, gone, &msg);
                }
                Ok(())
            })?;
        }
        Ok(if self.gone && !was_gone {
            Some(LinkChange::Gone)
        } else if !self.gone && self.mtu != before {
            Some(LinkChange::Mtu {
                from: before,
                to: self.mtu,
            })
        } else {
            None
        })
    }

    /// Reads the device again after lost events.
    fn reread(&mut self) -> Result<()> {
        match link_info_by_index(&mut self.rtnl, self.index) {
            Ok(info) => {
                self.mtu = info.mtu;
                self.gone = false;
                Ok(())
            }
            Err(HostError::NoSuchDevice(_)) => {
                self.gone = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Applies one link event about any device to the watch of device `index`.
fn apply_event(index: u32, mtu: &mut u16, gone: &mut bool, msg: &RouteNetlinkMessage) {
    match msg {
        RouteNetlinkMessage::NewLink(link) if link.header.index == index => {
            let info = from_message(link);
            // Some events carry no MTU attribute; those change nothing here.
            if info.mtu != 0 {
                *mtu = info.mtu;
            }
            *gone = false;
        }
        RouteNetlinkMessage::DelLink(link) if link.header.index == index => *gone = true,
        _ => {}
    }
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
        let RouteNetlinkMessage::NewAddress(m) = a else {
            continue;
        };
        if m.header.index != info.index {
            continue;
        }
        for attr in &m.attributes {
            if let AddressAttribute::Address(ip) = attr {
                let link_local =
                    matches!(ip, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
                if !link_local {
                    out.push(*ip);
                }
            }
        }
    }
    Ok(out)
}

/// One RTM_GETLINK: by name when `req` names no index, else as `req` says;
/// [`HostError::NoSuchDevice`] naming `what` when there is none.
pub(super) fn get_link(
    rtnl: &mut Rtnl,
    ifname: &str,
    mut req: LinkMessage,
    what: &str,
) -> Result<LinkMessage> {
    if req.header.index == 0 {
        req.attributes
            .push(LinkAttribute::IfName(ifname.to_string()));
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

    fn link_msg(index: u32, mtu: Option<u32>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        if let Some(mtu) = mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        m
    }

    #[test]
    fn link_events_follow_one_device() {
        let (mut mtu, mut gone) = (1500u16, false);
        let new = |i, m| RouteNetlinkMessage::NewLink(link_msg(i, m));
        // Another device: nothing.
        apply_event(7, &mut mtu, &mut gone, &new(8, Some(1400)));
        assert_eq!((mtu, gone), (1500, false));
        apply_event(7, &mut mtu, &mut gone, &new(7, Some(1400)));
        assert_eq!((mtu, gone), (1400, false));
        // An event without an MTU keeps the last one.
        apply_event(7, &mut mtu, &mut gone, &new(7, None));
        assert_eq!(mtu, 1400);
        // Jumbo and beyond saturate like link_info.
        apply_event(7, &mut mtu, &mut gone, &new(7, Some(70000)));
        assert_eq!(mtu, u16::MAX);
        apply_event(
            7,
            &mut mtu,
            &mut gone,
            &RouteNetlinkMessage::DelLink(link_msg(8, None)),
        );
        assert!(!gone);
        apply_event(
            7,
            &mut mtu,
            &mut gone,
            &RouteNetlinkMessage::DelLink(link_msg(7, None)),
        );
        assert!(gone);
    }

    #[test]
    fn watch_opens_on_loopback() {
        // Subscribing and reading lo change nothing; with no change made,
        // there is nothing to report.
        let mut w = LinkWatch::open("lo").expect("watch lo");
        assert!(w.fd() >= 0);
        assert!(w.mtu() >= 1280);
        assert_eq!(w.process_events().expect("events"), None);
        assert!(matches!(
            LinkWatch::open("vxr-absent0"),
            Err(HostError::NoSuchDevice(_))
        ));
    }

    #[test]
    fn missing_device_is_named() {
        match link_info("vxr-absent0") {
            Err(HostError::NoSuchDevice(n)) => assert_eq!(n, "vxr-absent0"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
