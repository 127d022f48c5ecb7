//! AF_PACKET port with virtio-net header offloads: a veth container port
//! whose TCP super-packets cross as one (`offload = true` on a veth port).
//!
//! Why: AF_XDP frames are single buffers of one MTU, so a veth container's
//! TCP stream reaches the router one segment per frame and leaves it the
//! same way. An AF_PACKET socket with `PACKET_VNET_HDR` receives the
//! container's TSO super-packet whole (up to 64 KiB, with a virtio-net
//! header saying how to cut it) and sends coalesced super-packets back, as
//! a TUN queue with `IFF_VNET_HDR` does; the splitting and coalescing are
//! the TUN port's ([`crate::offload`]), with the Ethernet header taken
//! off on receive and put back on send. As on a TUN queue, a TCP
//! super-packet read into a batch made for super-packets stays whole
//! (`rx_gso_whole`), and one handed to the port whole leaves in one
//! `sendmsg`.
//!
//! How the kernel stays out of the way: the socket taps the host end of the
//! veth; the container addresses its frames to the router's MAC, which is
//! not the device's, so the host kernel's own stack drops its copy early
//! and silently (PACKET_OTHERHOST). Broadcast ARP and multicast neighbour
//! solicitations ask for the gateway, an address the host kernel does not
//! own, so it answers none of them; the router does.
//!
//! Invariants:
//! - Offsets in the virtio-net header are relative to the Ethernet frame on
//!   this socket and to the IP packet in [`crate::offload::vnet`]: they are
//!   moved by the Ethernet header length in both directions, and checked.
//! - With several workers each opens a socket in one `PACKET_FANOUT_HASH`
//!   group, so each frame reaches exactly one worker, one flow always the
//!   same one. Our own sends are not looped back (`PACKET_IGNORE_OUTGOING`).
//! - Handover: the socket is read with `recvmsg` (no ring is mapped), so
//!   a new router can read a second descriptor of it
//!   ([`PacketPort::dup_fd`], [`PacketPort::adopt`]) while the old one
//!   still does: a frame is read by one of them, never by neither.
//! - Kernel-side losses are counted (`packet_rx_drops`, from
//!   `PACKET_STATISTICS`) beside the offload counters the TUN port exports.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use tun_rs::VirtioNetHdr;

use super::tun::TunStats;
use super::{sys, Batch, IoCounters, LinkType, Packet, Port, BATCH_SIZE, MAX_FRAME};
use crate::offload::coalesce::{queue_for, Coalescer, MAX_SUPER_SEGS, QUEUE_FRAMES};
use crate::offload::vnet::{
    complete_checksum, keep_whole, shift_header, whole_write, Splitter, F_NEEDS_CSUM, GSO_NONE,
    VNET_HDR_LEN,
};
use crate::offload::Layout;

const ETH_LEN: usize = crate::wire::ethernet::HEADER_LEN;
const ETH_P_ALL: u16 = 0x0003;

/// The Ethernet header the router puts in front of a packet it delivers:
/// to the container's MAC, from the router's, with the IP version's type.
fn eth_header(dst: [u8; 6], src: [u8; 6], ip: &[u8]) -> [u8; ETH_LEN] {
    let mut h = [0u8; ETH_LEN];
    h[..6].copy_from_slice(&dst);
    h[6..12].copy_from_slice(&src);
    let ethertype: u16 = if ip.first().map(|b| b >> 4) == Some(6) {
        0x86dd
    } else {
        0x0800
    };
    h[12..].copy_from_slice(&ethertype.to_be_bytes());
    h
}

/// One worker's socket on the host end of a veth container port.
pub struct PacketPort {
    name: String,
    fd: OwnedFd,
    mtu: usize,
    container_mac: [u8; 6],
    router_mac: [u8; 6],
    rx: Splitter,
    /// The Ethernet header of the super-packet [`Splitter`] is splitting.
    pending_eth: [u8; ETH_LEN],
    tx: Coalescer,
    /// UDP datagrams of the current burst, written at its end (see the TUN
    /// port's).
    udp_tx: Coalescer,
    stats: TunStats,
    /// `PACKET_STATISTICS` resets the kernel's counters on every read: the
    /// running sum lives here.
    kernel_drops: std::cell::Cell<u64>,
}

impl std::fmt::Debug for PacketPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketPort")
            .field("name", &self.name)
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

impl PacketPort {
    /// Opens a socket on device `name` (in the calling thread's namespace)
    /// for frames from a container with MAC `container_mac`, answered from
    /// `router_mac`. `fanout` joins a load-balancing group of that id (one
    /// per port, when several workers serve it). `mtu` bounds the segments
    /// super-packets are cut into.
    pub fn open(
        name: &str,
        mtu: u16,
        container_mac: [u8; 6],
        router_mac: [u8; 6],
        fanout: Option<u16>,
    ) -> io::Result<Self> {
        let ifindex = sys::ifindex(name)?;
        // SAFETY: plain socket(2): no memory of ours is passed.
        let raw = sys::cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Before bind, so that no frame arrives without its header.
        sys::setsockopt_int(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
        sys::setsockopt_int(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            1,
        )?;
        sys::set_socket_buffer(fd.as_raw_fd(), 8 << 20, false);
        sys::set_socket_buffer(fd.as_raw_fd(), 4 << 20, true);
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll and its exact size is passed.
        sys::cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        if let Some(id) = fanout {
            let v = i32::from(id) | ((libc::PACKET_FANOUT_HASH as i32) << 16);
            sys::setsockopt_int(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_FANOUT, v)?;
        }
        Ok(Self::with_fd(name, fd, mtu, container_mac, router_mac))
    }

    /// Carries on socket `fd` of another router (a handover): it must be
    /// an `AF_PACKET` raw socket with virtio-net headers bound to device
    /// `name`, as [`PacketPort::open`] makes them; its fanout group is
    /// the socket's own and stays. Both routers read the same socket while
    /// both run, so a frame is read by one of them, never by neither.
    pub fn adopt(
        name: &str,
        fd: OwnedFd,
        mtu: u16,
        container_mac: [u8; 6],
        router_mac: [u8; 6],
    ) -> io::Result<Self> {
        let invalid = |what: String| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("AF_PACKET socket of {name} handed over: {what}"),
            )
        };
        let ifindex = sys::ifindex(name)?;
        let on = sys::packet_socket_ifindex(fd.as_fd()).map_err(|e| invalid(e.to_string()))?;
        let ty = sys::getsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_TYPE)
            .map_err(|e| invalid(e.to_string()))?;
        let vnet = sys::getsockopt_int(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_VNET_HDR)
            .map_err(|e| invalid(e.to_string()))?;
        if on != ifindex || ty != libc::SOCK_RAW || vnet != 1 {
            return Err(invalid(format!(
                "bound to interface {on} (type {ty}, virtio-net header {vnet}), expected a raw socket with virtio-net headers on {ifindex}"
            )));
        }
        sys::set_nonblocking(fd.as_raw_fd())?;
        Ok(Self::with_fd(name, fd, mtu, container_mac, router_mac))
    }

    /// A second descriptor of the socket, for a handover.
    pub fn dup_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    fn with_fd(
        name: &str,
        fd: OwnedFd,
        mtu: u16,
        container_mac: [u8; 6],
        router_mac: [u8; 6],
    ) -> Self {
        PacketPort {
            name: name.to_owned(),
            fd,
            mtu: usize::from(mtu),
            container_mac,
            router_mac,
            rx: Splitter::new(MAX_FRAME),
            pending_eth: [0; ETH_LEN],
            tx: Coalescer::new(QUEUE_FRAMES),
            udp_tx: Coalescer::new(BATCH_SIZE),
            stats: TunStats::default(),
            kernel_drops: std::cell::Cell::new(0),
        }
    }

    /// One non-blocking receive: `[virtio-net header]` and the IP part into
    /// the split buffer, the Ethernet header beside it. Returns the frame
    /// length (Ethernet included), 0 when nothing waits.
    fn recv_one(fd: &OwnedFd, rx: &mut Splitter, eth: &mut [u8; ETH_LEN]) -> io::Result<usize> {
        let buf = rx.read_buf();
        let (hdr, rest) = buf.split_at_mut(VNET_HDR_LEN);
        let mut iov = [
            IoSliceMut::new(hdr),
            IoSliceMut::new(eth),
            IoSliceMut::new(rest),
        ];
        // SAFETY: msghdr is plain data; zeroed means no name, no control.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr().cast();
        msg.msg_iovlen = iov.len();
        // SAFETY: the iovecs point into buffers borrowed mutably for the
        // call; the kernel writes at most their lengths.
        let n = match sys::cvt_r(|| unsafe {
            libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT)
        }) {
            Ok(n) => n as usize,
            Err(e) if sys::is_transient(&e) => return Ok(0),
            Err(e) => return Err(e),
        };
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "frame truncated",
            ));
        }
        Ok(n.saturating_sub(VNET_HDR_LEN))
    }

    /// Sends Ethernet frames as they are, each behind a zero virtio-net
    /// header, up to [`BATCH_SIZE`] per `sendmmsg`: small packets (UDP,
    /// ICMP, ARP replies) cost one system call per batch, not per frame.
    fn send_plain(&mut self, frames: &[&[u8]]) {
        let hdr = [0u8; VNET_HDR_LEN];
        for chunk in frames.chunks(BATCH_SIZE) {
            // SAFETY: iovec and mmsghdr are plain data; all-zero is a valid
            // (empty) value that the loop below fills in.
            let mut iov: [[libc::iovec; 2]; BATCH_SIZE] = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let mut msgs: [libc::mmsghdr; BATCH_SIZE] = unsafe { std::mem::zeroed() };
            for (i, f) in chunk.iter().enumerate() {
                // The kernel only reads through these pointers (sendmmsg).
                iov[i][0] = libc::iovec {
                    iov_base: hdr.as_ptr() as *mut libc::c_void,
                    iov_len: VNET_HDR_LEN,
                };
                iov[i][1] = libc::iovec {
                    iov_base: f.as_ptr() as *mut libc::c_void,
                    iov_len: f.len(),
                };
                msgs[i].msg_hdr.msg_iov = iov[i].as_mut_ptr();
                msgs[i].msg_hdr.msg_iovlen = 2;
            }
            let mut done = 0;
            while done < chunk.len() {
                let left = &mut msgs[done..chunk.len()];
                // SAFETY: `left` holds `left.len()` initialised headers whose
                // iovecs point into `hdr`, `iov` and the caller's frames, all
                // alive for the call; the kernel writes only `msg_len`.
                let r = sys::cvt_r(|| unsafe {
                    libc::sendmmsg(
                        self.fd.as_raw_fd(),
                        left.as_mut_ptr(),
                        left.len() as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                });
                match r {
                    Ok(sent) if sent > 0 => done += sent as usize,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.stats.tx_dropped += (chunk.len() - done) as u64;
                        break;
                    }
                    // The first frame was refused (EINVAL, EMSGSIZE, the
                    // device going down; or none sent, which the kernel
                    // does not do for a non-empty vector): count it, go on
                    // with the rest.
                    Ok(_) | Err(_) => {
                        self.stats.tx_errors += 1;
                        done += 1;
                    }
                }
            }
        }
    }

    /// One non-blocking receive straight into `pkt`'s super-packet area
    /// (virtio-net header in its headroom): `Ok(None)` when nothing waits,
    /// `Ok(Some(true))` when `pkt` holds a frame or a whole TCP super-packet,
    /// `Ok(Some(false))` when the read was counted as bad or moved to the
    /// splitter (a super-packet not to keep whole: its segments follow).
    fn recv_whole(&mut self, pkt: &mut Packet) -> io::Result<Option<bool>> {
        let Some(area) = pkt.super_area_with_prefix(VNET_HDR_LEN) else {
            return Ok(Some(false));
        };
        let mut iov = [IoSliceMut::new(area)];
        // SAFETY: msghdr is plain data; zeroed means no name, no control.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr().cast();
        msg.msg_iovlen = iov.len();
        // SAFETY: the iovec points into the packet's buffer, borrowed
        // mutably for the call; the kernel writes at most its length.
        let got = match sys::cvt_r(|| unsafe {
            libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT)
        }) {
            Ok(r) => r as usize,
            Err(e) if sys::is_transient(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(len) = got.checked_sub(VNET_HDR_LEN + ETH_LEN) else {
            self.stats.rx_errors += 1;
            return Ok(Some(false));
        };
        let len = len + ETH_LEN;
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            self.stats.rx_errors += 1;
            return Ok(Some(false));
        }
        let Some(area) = pkt.super_area_with_prefix(VNET_HDR_LEN) else {
            return Ok(Some(false));
        };
        let raw = VirtioNetHdr::decode(area).unwrap_or_default();
        let frame = &area[VNET_HDR_LEN..VNET_HDR_LEN + len];
        let is_ip = matches!(u16::from_be_bytes([frame[12], frame[13]]), 0x0800 | 0x86dd);
        if raw.gso_type == GSO_NONE {
            if len > MAX_FRAME {
                self.stats.rx_errors += 1;
                return Ok(Some(false));
            }
            pkt.set_received(len);
            pkt.ts_nanos = 0;
            // Relative to the frame on this socket.
            if raw.flags & F_NEEDS_CSUM != 0
                && !complete_checksum(pkt.data_mut(), raw.csum_start, raw.csum_offset)
            {
                self.stats.rx_errors += 1;
                return Ok(Some(false));
            }
            return Ok(Some(true));
        }
        self.stats.rx_gso_packets += 1;
        let Some(ip_hdr) = is_ip
            .then(|| shift_header(&raw, -(ETH_LEN as i32)))
            .flatten()
        else {
            self.stats.rx_errors += 1;
            return Ok(Some(false));
        };
        if let Some(g) = keep_whole(&ip_hdr, &frame[ETH_LEN..], self.mtu) {
            pkt.set_received_super(len, g);
            pkt.ts_nanos = 0;
            self.stats.rx_whole += 1;
            return Ok(Some(true));
        }
        // Split: the IP part goes to the splitter behind its
        // header, the Ethernet header is kept for its segments.
        self.pending_eth.copy_from_slice(&frame[..ETH_LEN]);
        let buf = self.rx.read_buf();
        let ip_len = len - ETH_LEN;
        buf[..VNET_HDR_LEN].copy_from_slice(&area[..VNET_HDR_LEN]);
        buf[VNET_HDR_LEN..VNET_HDR_LEN + ip_len]
            .copy_from_slice(&area[VNET_HDR_LEN + ETH_LEN..VNET_HDR_LEN + len]);
        if self.rx.load(&ip_hdr, ip_len, self.mtu).is_err() {
            self.stats.rx_errors += 1;
        }
        Ok(Some(false))
    }

    fn flush_gro(&mut self) {
        self.flush_queue(true);
        self.flush_queue(false);
    }

    /// Writes what the UDP (`udp`) or the TCP coalescing queue holds.
    fn flush_queue(&mut self, udp: bool) {
        let q = if udp { &mut self.udp_tx } else { &mut self.tx };
        if q.is_empty() {
            return;
        }
        let (dst, src, fd) = (self.container_mac, self.router_mac, &self.fd);
        let this = PacketSender { fd };
        let out = q.flush(|hdr, parts| {
            let hdr = shift_header(hdr, ETH_LEN as i32)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad header"))?;
            let mut hb = [0u8; VNET_HDR_LEN];
            hdr.encode(&mut hb)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "header encode"))?;
            let first = parts.first().map_or(&[][..], |p| &p[..]);
            let eth = eth_header(dst, src, first);
            let mut iov = [IoSlice::new(&[]); MAX_SUPER_SEGS + 2];
            iov[0] = IoSlice::new(&hb);
            iov[1] = IoSlice::new(&eth);
            let n = parts.len().min(MAX_SUPER_SEGS);
            iov[2..2 + n].copy_from_slice(&parts[..n]);
            this.send(&iov[..2 + n])
        });
        self.stats.tx_gso_packets += out.gso_writes;
        self.stats.tx_errors += out.errors + out.invalid;
        self.stats.tx_dropped += out.dropped;
    }
}

/// The send half, borrowed apart from the GRO queue it drains.
struct PacketSender<'a> {
    fd: &'a OwnedFd,
}

impl PacketSender<'_> {
    fn send(&self, parts: &[IoSlice<'_>]) -> io::Result<()> {
        // SAFETY: msghdr is plain data; zeroed means no name (the socket is
        // bound to the device), no control.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = parts.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = parts.len();
        // SAFETY: the iovecs point into slices borrowed for the call; the
        // kernel only reads through them.
        sys::cvt_r(|| unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, libc::MSG_DONTWAIT) })?;
        Ok(())
    }
}

impl Port for PacketPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn link_type(&self) -> LinkType {
        LinkType::Ethernet
    }

    fn rx_burst(&mut self, batch: &mut Batch) -> io::Result<usize> {
        batch.clear();
        let slots = batch.slots_mut();
        let mut n = 0;
        let mut eth = [0u8; ETH_LEN];
        loop {
            if self.rx.has_pending() {
                let first = n;
                match self.rx.emit(&mut slots[n..]) {
                    Ok(k) => n += k,
                    Err(_) => self.stats.rx_errors += 1,
                }
                // The segments are IP packets: give each its frame header
                // back (the one the super-packet came with).
                let hdr = self.pending_eth;
                for p in &mut slots[first..n] {
                    match p.prepend(ETH_LEN) {
                        Some(d) => d[..ETH_LEN].copy_from_slice(&hdr),
                        None => self.stats.rx_errors += 1,
                    }
                }
            }
            if n == slots.len() {
                break;
            }
            if slots[n].is_super_capable() {
                match self.recv_whole(&mut slots[n]) {
                    Ok(None) => break,
                    Ok(Some(true)) => n += 1,
                    Ok(Some(false)) => {}
                    Err(e) => {
                        if n > 0 {
                            break;
                        }
                        return Err(e);
                    }
                }
                continue;
            }
            let len = match Self::recv_one(&self.fd, &mut self.rx, &mut eth) {
                Ok(0) => break,
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    self.stats.rx_errors += 1;
                    continue;
                }
                Err(e) => {
                    if n > 0 {
                        break;
                    }
                    return Err(e);
                }
            };
            let Some(ip_len) = len.checked_sub(ETH_LEN) else {
                self.stats.rx_errors += 1;
                continue;
            };
            let raw = self.rx.header();
            let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
            let is_ip = matches!(ethertype, 0x0800 | 0x86dd);
            if raw.gso_type != GSO_NONE {
                let loaded = is_ip
                    .then(|| shift_header(&raw, -(ETH_LEN as i32)))
                    .flatten()
                    .map(|h| self.rx.load(&h, ip_len, self.mtu));
                match loaded {
                    Some(Ok(_)) => {
                        self.stats.rx_gso_packets += 1;
                        self.pending_eth = eth;
                    }
                    _ => self.stats.rx_errors += 1,
                }
                continue;
            }
            if len > MAX_FRAME {
                self.stats.rx_errors += 1;
                continue;
            }
            let pkt = &mut slots[n];
            pkt.reset();
            let area = pkt.rx_area();
            area[..ETH_LEN].copy_from_slice(&eth);
            area[ETH_LEN..len].copy_from_slice(self.rx.packet(ip_len));
            pkt.set_received(len);
            if raw.flags & F_NEEDS_CSUM != 0 {
                // Relative to the frame on this socket.
                if !complete_checksum(pkt.data_mut(), raw.csum_start, raw.csum_offset) {
                    self.stats.rx_errors += 1;
                    continue;
                }
            }
            n += 1;
        }
        batch.set_len(n);
        Ok(n)
    }

    fn tx_burst(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        let mut plain: [&[u8]; BATCH_SIZE] = [&[]; BATCH_SIZE];
        let mut n_plain = 0;
        for f in frames {
            let ip = f.get(ETH_LEN..).unwrap_or(&[]);
            let untagged_ip =
                f.len() > ETH_LEN && matches!(u16::from_be_bytes([f[12], f[13]]), 0x0800 | 0x86dd);
            let queue = if untagged_ip { queue_for(ip) } else { None };
            if let Some(udp) = queue {
                // Coalesced with the rest of the round at flush (UDP at the
                // end of this burst); the frame header is rebuilt there
                // (container MAC, router MAC).
                let q = if udp { &mut self.udp_tx } else { &mut self.tx };
                if !q.push(ip) {
                    self.flush_queue(udp);
                    let q = if udp { &mut self.udp_tx } else { &mut self.tx };
                    if !q.push(ip) {
                        self.stats.tx_dropped += 1;
                    }
                }
                continue;
            }
            // Everything else leaves at the end of this burst, in one batch,
            // after what the queues hold between the same hosts.
            // (Only an IP packet can share a flow with a queued one.)
            let held = |q: &Coalescer| untagged_ip && q.holds_pair(ip);
            let (held_udp, held_tcp) = (held(&self.udp_tx), held(&self.tx));
            if held_udp || held_tcp {
                self.send_plain(&plain[..n_plain]);
                n_plain = 0;
                if held_udp {
                    self.flush_queue(true);
                }
                if held_tcp {
                    self.flush_queue(false);
                }
            }
            if n_plain == BATCH_SIZE {
                self.send_plain(&plain);
                n_plain = 0;
            }
            plain[n_plain] = f;
            n_plain += 1;
        }
        if n_plain > 0 {
            self.send_plain(&plain[..n_plain]);
        }
        self.flush_queue(true);
        Ok(frames.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_gro();
        Ok(())
    }

    fn takes_gso(&self) -> bool {
        true
    }

    fn tx_gso(&mut self, frame: &[u8], layout: &Layout) -> io::Result<bool> {
        let gso = layout.gso();
        let eth = eth_header(
            self.container_mac,
            self.router_mac,
            frame.get(ETH_LEN..).unwrap_or(&[]),
        );
        let Some(w) = whole_write(frame, layout, Some(eth)) else {
            self.stats.tx_errors += u64::from(gso.segs.max(1));
            return Ok(true);
        };
        // Segments queued for coalescing leave first: a flow keeps its order.
        self.flush_gro();
        let iov = [
            IoSlice::new(&w.vnet),
            IoSlice::new(&w.head[..w.payload]),
            IoSlice::new(&frame[w.payload..]),
        ];
        let r = (PacketSender { fd: &self.fd }).send(&iov);
        Ok(self.stats.count_whole_write(r, gso))
    }

    fn poll_fd(&self) -> Option<i32> {
        Some(self.fd.as_raw_fd())
    }

    fn io_counters(&self, out: &mut IoCounters) {
        self.stats.export(out);
        // SAFETY: tpacket_stats is plain data; all-zero is valid.
        let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `st`.
        let r = sys::cvt(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        });
        if r.is_ok() {
            self.kernel_drops
                .set(self.kernel_drops.get() + u64::from(st.tp_drops));
        }
        out.add("packet_rx_drops", self.kernel_drops.get());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_frames_get_the_family_ethertype() {
        let dst = [2, 0, 0, 0, 0, 1];
        let src = [2, 0x52, 0, 0, 0, 2];
        let v4 = eth_header(dst, src, &[0x45, 0]);
        assert_eq!(&v4[..6], &dst);
        assert_eq!(&v4[6..12], &src);
        assert_eq!(&v4[12..], &[0x08, 0x00]);
        assert_eq!(&eth_header(dst, src, &[0x60])[12..], &[0x86, 0xdd]);
    }
}
