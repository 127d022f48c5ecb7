//! UDP uplink port: VXLAN through kernel UDP sockets with segmentation
//! offload (`uplink_io = "udp"` in the topology), the alternative to the
//! AF_XDP uplink.
//!
//! Why: AF_XDP has no segmentation offload, so every 1.4 KB TCP segment pays
//! a descriptor, an skb and a copy on its own on each side of the underlay.
//! A UDP socket sends many equal-sized datagrams to one peer in one
//! `sendmsg` with `UDP_SEGMENT` (GSO: one skb through the stack, split by
//! the NIC or late in the kernel), and receives a train of them in one read
//! with `UDP_GRO`. The kernel also resolves the underlay neighbours and keeps
//! everything that is not VXLAN to our address and port: no XDP program.
//!
//! Invariants:
//! - The pipeline sees the frames it sees from AF_XDP. On receive the port
//!   writes the outer Ethernet, IP and UDP headers the kernel consumed in
//!   front of each datagram: destination our underlay address and VXLAN
//!   port, source the sender's address and port, the IPv4 header checksum
//!   valid, the UDP checksum zero (the kernel has verified the real one; zero
//!   means "not checked again", RFC 7348 section 5 and RFC 6935). On
//!   transmit it keeps what the kernel needs from the encapsulated frame:
//!   the peer's address and port, the VXLAN source port and the payload.
//! - The VXLAN source port that the pipeline derives from the inner flow
//!   hash selects one of a fixed set of sending sockets, each bound to its own
//!   port. A flow always leaves through the same socket, so it is never
//!   reordered, and the underlay still sees several source ports for ECMP.
//! - Consecutive frames of a burst for the same socket and peer leave in one
//!   GSO send while they have the same length (the last one may be
//!   shorter), up to the kernel's segment and byte limits. The send gathers
//!   the datagrams straight from the caller's frames (one iovec each), so
//!   nothing is copied in userspace, and it happens inside `tx_burst`,
//!   while those frames are still the caller's.
//! - Super-packets ([`crate::offload`]) are taken whole ([`Port::tx_gso`],
//!   with the layout the data plane parsed): each segment's headers are
//!   written into a small
//!   header area and sent beside a slice of the super-packet's payload
//!   (two iovecs per datagram), as few GSO sends as the kernel's limits
//!   allow (one, for a container whose `gso_max_segs` the router capped).
//!   On receive, the datagrams of a GRO train that the kernel's own GRO
//!   would merge (one inner TCP flow, in sequence, same headers, every
//!   checksum valid; or one inner UDP flow of equal-sized datagrams:
//!   [`crate::offload::coalesce::coalesce_into`]) become one super-packet
//!   again, when the batch's buffers can hold it (`udp_rx_super` counts
//!   them); anything else is handed on datagram by datagram. The outer
//!   headers taken off and put back are [`crate::offload::outer`]'s.
//! - Buffers are allocated once, at open; nothing is allocated per packet.
//!   Bad frames from the pipeline and lost datagrams are counted by name in
//!   [`Port::io_counters`], never a panic: `udp_rx_datagrams`, `udp_rx_reads`
//!   (recvmmsg calls), `udp_rx_coalesced` (GRO reads holding more than one
//!   datagram), `udp_rx_super` (super-packets made of them),
//!   `udp_tx_gso_packets` (super-packets sent whole), `udp_rx_socket_drops` (the kernel found the receive buffer
//!   full), `udp_rx_oversize`, `udp_tx_datagrams`, `udp_tx_sends` (sendmsg
//!   calls), `udp_tx_full` (send buffer full: dropped), `udp_tx_errors`,
//!   `udp_tx_malformed`.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{sys, Batch, IoCounters, LinkType, Port, BATCH_SIZE};
use crate::offload::coalesce::coalesce_into;
use crate::offload::outer::{parse_tx, synth_rx};
use crate::offload::{write_headers, Layout};
use crate::wire::udp;

/// Messages read per `recvmmsg`.
const RX_MSGS: usize = quinn_udp::BATCH_SIZE;
/// Bytes per receive message: the largest GRO train (64 KiB of payload).
const RX_MSG_LEN: usize = 65536;
/// Largest UDP payload one GSO send may carry (65535 - IPv4 - UDP headers).
const MAX_GSO_BYTES: usize = 65507;
/// Segments per GSO send (the kernel's UDP_MAX_SEGMENTS on older kernels).
const MAX_GSO_SEGMENTS: usize = 64;
/// Room for the headers of one segment a super-packet is cut into (outer
/// Ethernet, IPv6, UDP, VXLAN, inner Ethernet, IP and TCP with options).
const SEG_HDR: usize = 256;

/// Settings of a UDP uplink queue.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// Sending sockets (distinct source ports) per queue.
    pub tx_sockets: usize,
    /// Socket send buffer, bytes (forced above the sysctl limit when root).
    pub sndbuf: usize,
    /// Socket receive buffer, bytes.
    pub rcvbuf: usize,
    /// Coalesce received trains into super-packets. Worth it only where a
    /// port takes them whole (a TUN or AF_PACKET container port): for
    /// AF_XDP ports and transit they would only be cut again.
    pub coalesce: bool,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            tx_sockets: 8,
            sndbuf: 4 << 20,
            rcvbuf: 8 << 20,
            coalesce: true,
        }
    }
}

/// One planned GSO send: `count` segments of `seg` bytes (the last may be
/// shorter), `len` bytes in all, described by `items[start..start + count]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Group {
    sock: usize,
    dst: SocketAddr,
    seg: usize,
    count: usize,
    start: usize,
    len: usize,
    /// A shorter segment ended the group: nothing more may join it.
    closed: bool,
}

/// Where one datagram lies: frame index in the burst, payload offset, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Item {
    frame: usize,
    off: usize,
    len: usize,
}

/// Plans the GSO sends of one burst: which datagrams (`items`, in burst
/// order) go together (`groups`). Nothing is copied: the items point into
/// the caller's frames.
#[derive(Debug)]
struct TxPlan {
    items: Vec<Item>,
    groups: Vec<Group>,
}

impl TxPlan {
    fn new() -> Self {
        TxPlan {
            items: Vec::with_capacity(BATCH_SIZE),
            groups: Vec::with_capacity(BATCH_SIZE),
        }
    }

    /// Appends one datagram for `sock` and `dst`: it joins the last group
    /// when that group is for the same socket and peer, still open, and the
    /// datagram is no longer than its segments; else it starts a group.
    fn push(&mut self, sock: usize, dst: SocketAddr, item: Item, max_segs: usize) {
        let p = item.len;
        let start = self.items.len();
        self.items.push(item);
        if let Some(g) = self.groups.last_mut() {
            if g.sock == sock
                && g.dst == dst
                && !g.closed
                && p <= g.seg
                && g.count < max_segs
                && g.len + p <= MAX_GSO_BYTES
            {
                g.count += 1;
                g.len += p;
                g.closed = p < g.seg;
                return;
            }
        }
        self.groups.push(Group {
            sock,
            dst,
            seg: p,
            count: 1,
            start,
            len: p,
            closed: false,
        });
    }

    fn clear(&mut self) {
        self.items.clear();
        self.groups.clear();
    }
}

/// Sends `iov` as UDP datagrams to `dst` in one `sendmsg`: one datagram, or
/// with `seg` one per `seg` bytes (`UDP_SEGMENT`, the last may be shorter).
/// One GSO send of `iov` (`per` iovecs a datagram, segment size `seg`),
/// or, on a device that cannot segment (EIO, no checksum offload), each
/// datagram on its own, now and from now on (`gso_broken`). Counts the
/// sends and the datagrams that left in `c`; returns how many left and the
/// error that stopped the rest, which the caller counts.
fn send_or_fall_back(
    sock: &Socket,
    dst: &SockAddr,
    iov: &[IoSlice<'_>],
    per: usize,
    seg: Option<u16>,
    gso_broken: &mut bool,
    c: &mut UdpCounters,
) -> (usize, io::Result<()>) {
    let n = iov.len() / per;
    match send_gso(sock, dst, iov, seg) {
        Ok(()) => {
            c.tx_sends += 1;
            c.tx_datagrams += n as u64;
            (n, Ok(()))
        }
        Err(e) if seg.is_some() && e.raw_os_error() == Some(libc::EIO) => {
            *gso_broken = true;
            for (i, d) in iov.chunks(per).enumerate() {
                if let Err(e) = send_gso(sock, dst, d, None) {
                    return (i, Err(e));
                }
                c.tx_sends += 1;
                c.tx_datagrams += 1;
            }
            (n, Ok(()))
        }
        Err(e) => (0, Err(e)),
    }
}

fn send_gso(
    sock: &Socket,
    dst: &SockAddr,
    iov: &[IoSlice<'_>],
    seg: Option<u16>,
) -> io::Result<()> {
    // Room for one cmsg carrying a u16 (CMSG_SPACE(2) is 16 on 64-bit Linux),
    // aligned for cmsghdr.
    #[repr(C, align(8))]
    struct Control([u8; 32]);
    let mut control = Control([0; 32]);
    // SAFETY: msghdr is plain data; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = dst.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = dst.len();
    // IoSlice is guaranteed ABI-compatible with iovec on Unix.
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    if let Some(seg) = seg {
        msg.msg_control = control.0.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a pure size computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as _;
        // SAFETY: msg_control points at `control`, aligned and large enough
        // for one cmsghdr with a u16 payload, so CMSG_FIRSTHDR is non-null
        // and CMSG_DATA lies inside it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
        }
    }
    // SAFETY: `msg` describes live buffers (iovecs, address, control)
    // that the kernel only reads.
    sys::cvt_r(|| unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, 0) }).map(drop)
}

/// Named counters of one UDP uplink queue.
#[derive(Debug, Default, Clone)]
struct UdpCounters {
    rx_datagrams: u64,
    rx_reads: u64,
    rx_coalesced: u64,
    rx_super: u64,
    rx_oversize: u64,
    tx_gso_packets: u64,
    tx_datagrams: u64,
    tx_sends: u64,
    tx_full: u64,
    tx_errors: u64,
    tx_malformed: u64,
}

struct TxSocket {
    sock: Socket,
    state: UdpSocketState,
}

/// One worker's queue of the UDP uplink.
pub struct UdpPort {
    name: String,
    mac: [u8; 6],
    local: SocketAddr,
    rx: Socket,
    rx_state: UdpSocketState,
    tx: Vec<TxSocket>,
    rx_buf: Vec<u8>,
    rx_meta: Vec<RecvMeta>,
    /// Messages from the last read, the one being split, and the offset
    /// of its next datagram: a GRO train longer than a batch carries over.
    rx_n: usize,
    rx_i: usize,
    rx_off: usize,
    plan: TxPlan,
    /// See [`UdpConfig::coalesce`].
    coalesce: bool,
    /// Segment headers of the super-packet being sent, [`SEG_HDR`] bytes
    /// each, one per segment of a send.
    seg_hdrs: Vec<u8>,
    /// The kernel refused a GSO send as the device cannot segment (EIO):
    /// datagrams leave one by one from then on.
    gso_broken: bool,
    /// A send error from `tx_burst`, reported at `flush`.
    deferred_err: Option<io::Error>,
    c: UdpCounters,
}

impl std::fmt::Debug for UdpPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpPort")
            .field("name", &self.name)
            .field("local", &self.local)
            .field("tx_sockets", &self.tx.len())
            .finish()
    }
}

fn udp_socket(addr: SocketAddr) -> io::Result<Socket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    Ok(s)
}

/// Datagrams the kernel dropped on a socket (full receive buffer), from
/// `SO_MEMINFO`.
fn socket_drops(s: &Socket) -> Option<u64> {
    // SK_MEMINFO_VARS is 9 in current kernels; index 8 is SK_MEMINFO_DROPS.
    let mut info = [0u32; 9];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes and the kernel writes at
    // most `len` bytes, updating `len` to what it wrote.
    let r = sys::cvt(unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    });
    (r.is_ok() && len as usize >= 9 * 4).then_some(info[8] as u64)
}

impl UdpPort {
    /// Opens one queue: a receive socket bound to `local` (the host's
    /// underlay address and VXLAN port, shared with the other workers'
    /// queues through SO_REUSEPORT) and `cfg.tx_sockets` sending sockets
    /// on kernel-chosen ports of the same address. `name` is the NIC's
    /// (for the stats); `mac` becomes the outer destination MAC of the
    /// frames handed to the pipeline.
    pub fn open(name: &str, local: SocketAddr, mac: [u8; 6], cfg: &UdpConfig) -> io::Result<Self> {
        let rx = udp_socket(local)?;
        rx.set_reuse_port(true)?;
        rx.bind(&local.into()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("binding UDP {local} (is another VXLAN endpoint using it?): {e}"),
            )
        })?;
        sys::set_socket_buffer(rx.as_raw_fd(), cfg.rcvbuf, false);
        if local.is_ipv6() {
            // Zero-checksum VXLAN over IPv6 is allowed for tunnels (RFC
            // 6935/6936); Linux sends it with udp6zerocsumtx.
            sys::setsockopt_int(rx.as_raw_fd(), libc::IPPROTO_UDP, libc::UDP_NO_CHECK6_RX, 1)?;
        }
        let mut tx = Vec::with_capacity(cfg.tx_sockets.max(1));
        for _ in 0..cfg.tx_sockets.max(1) {
            let s = udp_socket(local)?;
            s.bind(&SocketAddr::new(local.ip(), 0).into())?;
            sys::set_socket_buffer(s.as_raw_fd(), cfg.sndbuf, true);
            // Nothing is read from a sending socket: keep what strays to it small.
            sys::set_socket_buffer(s.as_raw_fd(), 4096, false);
            tx.push(s);
        }
        Self::from_sockets(name, local, mac, cfg, rx, tx)
    }

    /// Takes one queue from descriptors another router process handed
    /// over, as [`UdpPort::dup_fds`] gave them: the receive socket first,
    /// then the sending sockets. Each must be a UDP socket of `local`'s
    /// family on `local`'s address (the receive socket on `local` itself);
    /// anything else is refused.
    pub fn adopt(
        name: &str,
        local: SocketAddr,
        mac: [u8; 6],
        cfg: &UdpConfig,
        fds: Vec<std::os::fd::OwnedFd>,
    ) -> io::Result<Self> {
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        if fds.len() < 2 {
            return Err(bad(format!(
                "UDP uplink queue: {} descriptors, expected a receive socket and at least one sending socket",
                fds.len()
            )));
        }
        let mut socks = Vec::with_capacity(fds.len());
        for (i, fd) in fds.into_iter().enumerate() {
            let s = Socket::from(fd);
            let ok_type = s.r#type().is_ok_and(|t| t == Type::DGRAM);
            let addr = s.local_addr().ok().and_then(|a| a.as_socket());
            let ok_addr =
                addr.is_some_and(|a| a.ip() == local.ip() && (i > 0 || a.port() == local.port()));
            if !ok_type || !ok_addr {
                return Err(bad(format!(
                    "UDP uplink descriptor {i}: {} bound to {addr:?}, expected a UDP socket on {}",
                    if ok_type {
                        "a datagram socket"
                    } else {
                        "not a datagram socket"
                    },
                    if i == 0 {
                        local.to_string()
                    } else {
                        format!("{}:*", local.ip())
                    }
                )));
            }
            s.set_nonblocking(true)?;
            socks.push(s);
        }
        let rx = socks.remove(0);
        Self::from_sockets(name, local, mac, cfg, rx, socks)
    }

    /// Second descriptors of this queue's sockets, receive socket first
    /// (for a handover to another process: both read and send through
    /// the same sockets while both hold them).
    pub fn dup_fds(&self) -> io::Result<Vec<std::os::fd::OwnedFd>> {
        let mut out = vec![self.rx.try_clone()?.into()];
        for t in &self.tx {
            out.push(t.sock.try_clone()?.into());
        }
        Ok(out)
    }

    fn from_sockets(
        name: &str,
        local: SocketAddr,
        mac: [u8; 6],
        cfg: &UdpConfig,
        rx: Socket,
        tx: Vec<Socket>,
    ) -> io::Result<Self> {
        let rx_state = UdpSocketState::new(UdpSockRef::from(&rx))?;
        let tx = tx
            .into_iter()
            .map(|sock| {
                let state = UdpSocketState::new(UdpSockRef::from(&sock))?;
                Ok(TxSocket { sock, state })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(UdpPort {
            name: name.to_owned(),
            mac,
            local,
            rx,
            rx_state,
            tx,
            rx_buf: vec![0u8; RX_MSGS * RX_MSG_LEN],
            rx_meta: vec![RecvMeta::default(); RX_MSGS],
            rx_n: 0,
            rx_i: 0,
            rx_off: 0,
            plan: TxPlan::new(),
            coalesce: cfg.coalesce,
            seg_hdrs: vec![0u8; MAX_GSO_SEGMENTS * SEG_HDR],
            gso_broken: false,
            deferred_err: None,
            c: UdpCounters::default(),
        })
    }

    /// The local source ports of the sending sockets.
    pub fn tx_ports(&self) -> Vec<u16> {
        self.tx
            .iter()
            .filter_map(|t| t.sock.local_addr().ok()?.as_socket().map(|a| a.port()))
            .collect()
    }

    /// Segments per GSO send the kernel currently accepts (1 once a send
    /// failed in a way that says the device cannot segment).
    pub fn max_gso_segments(&self) -> usize {
        if self.gso_broken {
            return 1;
        }
        self.tx
            .first()
            .map_or(1, |t| t.state.max_gso_segments())
            .min(MAX_GSO_SEGMENTS)
    }

    /// Whether received trains arrive coalesced (UDP_GRO).
    pub fn gro(&self) -> bool {
        self.rx_state.gro_segments() > 1
    }

    fn read(&mut self) -> io::Result<usize> {
        let mut chunks = self.rx_buf.chunks_mut(RX_MSG_LEN);
        let mut slices: [IoSliceMut<'_>; RX_MSGS] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
        match self
            .rx_state
            .recv(UdpSockRef::from(&self.rx), &mut slices, &mut self.rx_meta)
        {
            Ok(n) => {
                self.c.rx_reads += 1;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Sends every planned group, gathering the datagrams from `frames`.
    fn send_all(&mut self, frames: &[&[u8]]) -> io::Result<()> {
        let mut first_err = None;
        let mut iov: [IoSlice<'_>; MAX_GSO_SEGMENTS] = [IoSlice::new(&[]); MAX_GSO_SEGMENTS];
        for g in &self.plan.groups {
            let Some(t) = self.tx.get(g.sock) else {
                continue;
            };
            let items = &self.plan.items[g.start..g.start + g.count];
            for (slot, it) in iov.iter_mut().zip(items) {
                *slot = IoSlice::new(&frames[it.frame][it.off..it.off + it.len]);
            }
            let dst = SockAddr::from(g.dst);
            let n = items.len().min(MAX_GSO_SEGMENTS);
            let seg = (n > 1).then_some(g.seg as u16);
            let (done, r) = send_or_fall_back(
                &t.sock,
                &dst,
                &iov[..n],
                1,
                seg,
                &mut self.gso_broken,
                &mut self.c,
            );
            let left = (n - done) as u64;
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.c.tx_full += left;
                }
                Err(e) => {
                    // Counted per datagram; the error itself goes to the
                    // worker as it is (no formatting here: a lasting error,
                    // an unreachable peer, would allocate on every flush).
                    self.c.tx_errors += left;
                    first_err.get_or_insert(e);
                }
            }
        }
        self.plan.clear();
        first_err.map_or(Ok(()), Err)
    }
}

impl Port for UdpPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn link_type(&self) -> LinkType {
        LinkType::Ethernet
    }

    fn rx_burst(&mut self, batch: &mut Batch) -> io::Result<usize> {
        batch.clear();
        if self.rx_i >= self.rx_n {
            self.rx_n = self.read()?;
            self.rx_i = 0;
            self.rx_off = 0;
        }
        let mut n = 0;
        let slots = batch.slots_mut();
        while n < BATCH_SIZE && self.rx_i < self.rx_n {
            let meta = &self.rx_meta[self.rx_i];
            let base = self.rx_i * RX_MSG_LEN;
            let len = meta.len.min(RX_MSG_LEN);
            let stride = if meta.stride == 0 { len } else { meta.stride };
            let dst = SocketAddr::new(meta.dst_ip.unwrap_or(self.local.ip()), self.local.port());
            if self.rx_off == 0 && len > stride {
                self.c.rx_coalesced += 1;
            }
            // At least one frame per message: an empty datagram becomes an
            // empty VXLAN payload, which the pipeline drops and counts
            // (vxlan_truncated) instead of it vanishing here.
            while n < BATCH_SIZE {
                // A train of one inner TCP or UDP flow becomes one
                // super-packet, where the batch's buffers can hold it.
                if self.coalesce && len - self.rx_off > stride {
                    let msg = &self.rx_buf[base + self.rx_off..base + len];
                    if let Some(c) =
                        coalesce_into(&mut slots[n], self.mac, meta.addr, dst, msg, stride)
                    {
                        n += 1;
                        self.c.rx_datagrams += c as u64;
                        self.c.rx_super += 1;
                        self.rx_off = (self.rx_off + c * stride).min(len);
                        if self.rx_off >= len {
                            self.rx_i += 1;
                            self.rx_off = 0;
                            break;
                        }
                        continue;
                    }
                }
                let end = (self.rx_off + stride).min(len);
                let payload = &self.rx_buf[base + self.rx_off..base + end];
                self.rx_off = end;
                let pkt = &mut slots[n];
                match synth_rx(pkt.rx_area(), self.mac, meta.addr, dst, payload) {
                    Some(l) => {
                        pkt.set_received(l);
                        pkt.ts_nanos = 0;
                        n += 1;
                        self.c.rx_datagrams += 1;
                    }
                    None => self.c.rx_oversize += 1,
                }
                if self.rx_off >= len {
                    self.rx_i += 1;
                    self.rx_off = 0;
                    break;
                }
            }
        }
        batch.set_len(n);
        Ok(n)
    }

    fn tx_burst(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        let max_segs = self.max_gso_segments();
        let n_tx = self.tx.len().max(1);
        // Sent before returning, while the frames are still the caller's;
        // in chunks so the plan never grows past its start-up capacity.
        for chunk in frames.chunks(BATCH_SIZE) {
            for (i, f) in chunk.iter().enumerate() {
                let Some(parts) = parse_tx(f) else {
                    self.c.tx_malformed += 1;
                    continue;
                };
                // The payload's offset in its frame (parse_tx returns a subslice).
                let off = parts.payload.as_ptr() as usize - f.as_ptr() as usize;
                let item = Item {
                    frame: i,
                    off,
                    len: parts.payload.len(),
                };
                let sock = parts.src_port as usize % n_tx;
                self.plan.push(sock, parts.dst, item, max_segs);
            }
            // Every frame is taken: a send error is counted by datagram and
            // reported at the next flush, not as a refusal of this burst.
            if let Err(e) = self.send_all(chunk) {
                self.deferred_err.get_or_insert(e);
            }
        }
        Ok(frames.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.deferred_err.take().map_or(Ok(()), Err)
    }

    fn takes_gso(&self) -> bool {
        true
    }

    fn tx_gso(&mut self, frame: &[u8], l: &Layout) -> io::Result<bool> {
        let segs = l.segments as u64;
        let (Some(parts), Some(t)) = (parse_tx(frame), l.tunnel.filter(|_| l.len == frame.len()))
        else {
            self.c.tx_malformed += segs;
            return Ok(true);
        };
        // What each datagram carries: VXLAN onward, the segment's headers
        // written from the layout beside a slice of the super-packet's
        // payload.
        let vx = t.udp + udp::HEADER_LEN;
        let dgram_hdr = l.payload - vx;
        if l.payload > SEG_HDR {
            self.c.tx_malformed += segs;
            return Ok(true);
        }
        let seg_len = dgram_hdr + l.size;
        let per_send = self
            .max_gso_segments()
            .min(MAX_GSO_BYTES / seg_len.max(1))
            .max(1);
        let n_tx = self.tx.len().max(1);
        let sock = usize::from(parts.src_port) % n_tx;
        let dst = SockAddr::from(parts.dst);
        let mut first = 0;
        let mut any_sent = false;
        while first < l.segments {
            let count = per_send.min(l.segments - first);
            for (k, h) in self.seg_hdrs.chunks_mut(SEG_HDR).take(count).enumerate() {
                write_headers(frame, l, first + k, h, false);
            }
            let mut iov: [IoSlice<'_>; 2 * MAX_GSO_SEGMENTS] =
                [IoSlice::new(&[]); 2 * MAX_GSO_SEGMENTS];
            for (k, h) in self.seg_hdrs.chunks(SEG_HDR).take(count).enumerate() {
                iov[2 * k] = IoSlice::new(&h[vx..l.payload]);
                iov[2 * k + 1] = IoSlice::new(&frame[l.chunk(first + k)]);
            }
            let Some(ts) = self.tx.get(sock) else {
                return Ok(false);
            };
            let seg = (count > 1).then_some(seg_len as u16);
            let (done, r) = send_or_fall_back(
                &ts.sock,
                &dst,
                &iov[..2 * count],
                2,
                seg,
                &mut self.gso_broken,
                &mut self.c,
            );
            any_sent |= done > 0;
            let left = (count - done) as u64;
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.c.tx_full += left;
                }
                Err(e) => {
                    self.c.tx_errors += left;
                    self.deferred_err.get_or_insert(e);
                }
            }
            first += count;
        }
        // Sent whole: at least part of it left (the rest is counted above).
        if any_sent {
            self.c.tx_gso_packets += 1;
        }
        Ok(true)
    }

    fn poll_fd(&self) -> Option<i32> {
        Some(self.rx.as_raw_fd())
    }

    fn io_counters(&self, out: &mut IoCounters) {
        let c = &self.c;
        out.add("udp_rx_datagrams", c.rx_datagrams);
        out.add("udp_rx_reads", c.rx_reads);
        out.add("udp_rx_coalesced", c.rx_coalesced);
        out.add("udp_rx_super", c.rx_super);
        out.add("udp_rx_oversize", c.rx_oversize);
        if let Some(d) = socket_drops(&self.rx) {
            out.add("udp_rx_socket_drops", d);
        }
        out.add("udp_tx_gso_packets", c.tx_gso_packets);
        out.add("udp_tx_datagrams", c.tx_datagrams);
        out.add("udp_tx_sends", c.tx_sends);
        out.add("udp_tx_full", c.tx_full);
        out.add("udp_tx_errors", c.tx_errors);
        out.add("udp_tx_malformed", c.tx_malformed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
    }

    fn item(frame: usize, len: usize) -> Item {
        Item {
            frame,
            off: 50,
            len,
        }
    }

    #[test]
    fn plan_groups_equal_runs_and_closes_on_a_short_one() {
        let a = v4([198, 18, 0, 2], 4789);
        let b = v4([198, 18, 0, 3], 4789);
        let mut p = TxPlan::new();
        for i in 0..3 {
            p.push(0, a, item(i, 100), 64);
        }
        p.push(0, a, item(3, 60), 64); // shorter: joins and closes
        p.push(0, a, item(4, 60), 64); // after a close: new group
        p.push(1, a, item(5, 60), 64); // other socket: new group
        p.push(1, b, item(6, 60), 64); // other peer: new group
        p.push(1, b, item(7, 80), 64); // longer than the segment: new group
        let g: Vec<(usize, usize, usize, usize, usize)> = p
            .groups
            .iter()
            .map(|g| (g.sock, g.seg, g.count, g.len, g.start))
            .collect();
        assert_eq!(
            g,
            vec![
                (0, 100, 4, 360, 0),
                (0, 60, 1, 60, 4),
                (1, 60, 1, 60, 5),
                (1, 60, 1, 60, 6),
                (1, 80, 1, 80, 7)
            ]
        );
        assert_eq!(p.groups[3].dst, b);
        assert_eq!(p.items[3], item(3, 60));
        let total: usize = p.groups.iter().map(|g| g.count).sum();
        assert_eq!(total, p.items.len());
    }

    #[test]
    fn plan_respects_segment_and_byte_limits() {
        let a = v4([198, 18, 0, 2], 4789);
        let mut p = TxPlan::new();
        for i in 0..10 {
            p.push(0, a, item(i, 100), 4);
        }
        let counts: Vec<usize> = p.groups.iter().map(|g| g.count).collect();
        assert_eq!(counts, vec![4, 4, 2]);
        p.clear();
        for i in 0..50 {
            p.push(0, a, item(i, 1500), 64);
        }
        assert!(p.groups.iter().all(|g| g.len <= MAX_GSO_BYTES));
        assert_eq!(p.groups[0].count, MAX_GSO_BYTES / 1500);
        assert_eq!(p.groups.iter().map(|g| g.count).sum::<usize>(), 50);
    }
}
