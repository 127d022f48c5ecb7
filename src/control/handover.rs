//! Handover: a new router process takes the running one's descriptors and
//! forwarding over without losing a packet (`vxrouter run --takeover`).
//!
//! The running router (old) listens on a handover socket beside its
//! control socket ([`handover_path`]: `HOST.sock` gives `HOST.handover`), a
//! Unix `SOCK_SEQPACKET` socket of mode 0600, so every message arrives
//! whole and descriptors travel with it (`SCM_RIGHTS`). The exchange:
//!
//! 1. new -> old `takeover`. The old router answers `refused` (a port it
//!    cannot hand over, an unknown version) or `offer`: what it holds and
//!    the index of each descriptor, followed by the descriptors themselves
//!    in messages of at most [`sys::MAX_FDS_PER_MSG`]. They are second
//!    descriptors of the same open files (sockets, TUN queues), so both
//!    processes read and write the same queues while both run: a packet is
//!    read by one or the other, never by neither.
//! 2. The new router builds its ports from the descriptors (UDP uplink
//!    sockets, TUN queues, AF_PACKET sockets of veth ports), takes the liveness socket, the control, metrics
//!    and handover listeners, publishes its tables and starts its workers.
//! 3. new -> old `polling` once every new worker polls. Only then do the
//!    old workers stop; each first drains what its ports already read (a
//!    GRO train half handed out, a split super-packet). The old router
//!    answers `done` and exits without tearing anything down: devices,
//!    namespaces and socket files belong to the new router now.
//!
//! An AF_XDP uplink goes differently, since an AF_XDP ring has one
//! reader: the offer carries our XDP program's link and XSKMAP and each
//! socket with its UMEM's memfd, the new workers stay held through
//! `polling`, and `done` says which UMEM frames the old router held when
//! its workers dropped the sockets; only then does the new router map the
//! rings and let its workers poll. Frames arriving in between wait in the
//! rx rings (and container traffic in the TUN queues).
//!
//! AF_XDP veth container ports go the same way: the offer carries the
//! shared container program with its two maps (slots by ifindex, and the
//! XSKMAP the sockets are registered in), each port's bpf_link with its
//! slot, and its sockets with their UMEMs; `done` says where each port's
//! frames were. The new router checks the program and maps before it uses
//! them, carries on with them for later attaches, and cleans the links up
//! only once `done` came (before, dropping one only closes a descriptor:
//! the map entries are the old router's).
//!
//! Until `polling` the old router forwards as before; a new router that
//! fails or goes away before then (the connection closes, or is silent for
//! [`STEP_TIMEOUT`]) leaves it running, and nothing the new one made
//! touches what the old one owns (it adopts the devices' ownership and the
//! socket files only once `done` came).
//!
//! A `refused` takeover (AF_XDP on a kernel that cannot map a bound
//! socket's rings from another process, XDP attached through netlink)
//! falls back to a restart: the new router sends `stop`, the old
//! one stops as on SIGTERM, and the new one starts afresh once the old one
//! has exited, taking back the recorded ports as after any restart.
//!
//! Every message carries `"v"`; either side refuses a version it does not
//! speak with a message naming both, and a newer build keeps reading the
//! older versions it knows. Messages are input like any other: a
//! descriptor is checked for what the offer says it is before use.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use socket2::{Domain, SockAddr, Socket, Type};

use super::setup;
use crate::config::PortKind;
use crate::host::netns::DeviceHandle;
use crate::port::afxdp::{AfXdpPort, XskHandover};
use crate::port::sys;
use crate::port::xdp::{ContainerLink, ContainerXdp, XdpMode, XdpProgram};

/// The handover message version this build speaks.
pub const VERSION: u32 = 1;

/// Largest message read.
const MAX_MSG: usize = 256 * 1024;

/// How long either side waits for the other's next message.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a new router waits for the old one to exit after `stop`.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The handover socket beside control socket `socket`.
pub fn handover_path(socket: &Path) -> PathBuf {
    socket.with_extension("handover")
}

/// What the new router asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Ask {
    /// Hand over your descriptors.
    Takeover,
    /// Every new worker polls: stop yours and exit.
    Polling,
    /// The takeover is off: go on forwarding.
    Abort,
    /// Stop as on SIGTERM (a restart instead of a handover).
    Stop,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Request {
    pub v: u32,
    pub op: Ask,
    /// The sender's build (`CARGO_PKG_VERSION`), for the logs.
    #[serde(default)]
    pub version: String,
    /// Why, with `abort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The old router's answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Answer {
    Offer(Box<Offer>),
    Refused {
        v: u32,
        code: String,
        message: String,
    },
    Done {
        v: u32,
        forwarded: u64,
        /// Where each AF_XDP socket's frames were when the old router let
        /// go of it (none for a UDP uplink).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        xsk: Vec<XskHandover>,
        /// The same for each AF_XDP veth port, by name.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        port_xsk: BTreeMap<String, Vec<XskHandover>>,
    },
    Stopping {
        v: u32,
    },
}

/// What the old router holds; numbers are indices into the descriptors
/// that follow the offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Offer {
    pub v: u32,
    /// The old router's build.
    pub version: String,
    pub host: String,
    pub workers: usize,
    /// Descriptors that follow.
    pub fds: usize,
    pub uplink: UplinkOffer,
    pub liveness: Option<usize>,
    pub control: Option<usize>,
    pub handover: Option<usize>,
    pub metrics: Option<usize>,
    pub ports: Vec<PortOffer>,
    /// Devices and namespaces the old router made (ports with `netns`):
    /// the new one removes them when it stops.
    pub devices: Vec<DeviceHandle>,
    /// The container XDP program, with AF_XDP veth ports. Builds that
    /// predate it refuse an offer that has it, and the old router goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_xdp: Option<ContainerXdpOffer>,
}

/// The container XDP program every AF_XDP veth port shares, and its maps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ContainerXdpOffer {
    pub prog: usize,
    /// `container_slots`: ifindex -> slot.
    pub slots: usize,
    /// `container_xsks`: the ports' sockets.
    pub xsks: usize,
}

/// An AF_XDP veth port: its link of the container program, and its
/// sockets with their UMEMs (registered at `slot`'s entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct XskPortOffer {
    /// The program runs in the driver (else in the generic path).
    pub native: bool,
    /// Its bpf_link.
    pub link: usize,
    pub slot: u32,
    pub queues: Vec<XskQueueOffer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UplinkOffer {
    /// The UDP uplink's address (the only uplink handed over).
    pub local: SocketAddr,
    /// Per worker: the receive socket, then the sending sockets.
    pub queues: Vec<Vec<usize>>,
    /// An AF_XDP uplink instead (`queues` is then empty). Builds that
    /// predate it refuse an offer that has it, and the old router goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xsk: Option<XskUplinkOffer>,
}

/// An AF_XDP uplink: our XDP program's attachment and XSKMAP, and every
/// socket with its UMEM. The sockets stay registered in the map: they are
/// the same sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct XskUplinkOffer {
    pub ifname: String,
    /// The program runs in the driver (else in the generic path).
    pub native: bool,
    /// The program's bpf_link.
    pub link: usize,
    /// Its XSKMAP.
    pub xsks: usize,
    pub queues: Vec<XskQueueOffer>,
}

/// One AF_XDP socket of the uplink or of a veth port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct XskQueueOffer {
    pub queue_id: u32,
    /// The worker that polls it.
    pub worker: usize,
    /// Receive only (a NIC queue beyond the workers).
    pub rx_only: bool,
    pub socket: usize,
    /// The UMEM's memfd.
    pub umem: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PortOffer {
    /// The router-side name (the topology's port name, or an attached
    /// port's device name).
    pub name: String,
    pub index: u16,
    pub kind: PortKind,
    pub offload: bool,
    /// Attached through the control socket (recorded in the state dir).
    pub attached: bool,
    /// Per worker: its queue's descriptor (a TUN queue).
    pub queues: Vec<usize>,
    /// An AF_XDP veth port instead (`queues` is then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xsk: Option<XskPortOffer>,
}

/// Parses one message's JSON after checking its version, so that a
/// message of another version gets a clear error even if its shape
/// changed.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).with_context(|| format!("handover {what}: not JSON"))?;
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => bail!(
            "handover {what} of version {v}; this build ({}) speaks version {VERSION}",
            env!("CARGO_PKG_VERSION")
        ),
        None => bail!("handover {what} without a version (\"v\")"),
    }
    serde_json::from_value(value).with_context(|| format!("handover {what}: bad message"))
}

/// One handover connection, blocking with [`STEP_TIMEOUT`] on each step.
pub(super) struct Conn(Socket);

impl Conn {
    fn new(s: Socket) -> io::Result<Conn> {
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(STEP_TIMEOUT))?;
        s.set_write_timeout(Some(STEP_TIMEOUT))?;
        Ok(Conn(s))
    }

    fn send<T: Serialize>(&self, msg: &T, fds: &[OwnedFd]) -> io::Result<()> {
        let data = serde_json::to_vec(msg).map_err(io::Error::other)?;
        let fds: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
        sys::send_with_fds(self.0.as_fd(), &data, &fds)
    }

    /// The process id of the router at the other end.
    fn peer_pid(&self) -> Option<u32> {
        sys::peer_pid(self.0.as_fd()).ok()
    }

    /// Sends `fds` in as many messages as they need.
    fn send_fds(&self, fds: &[OwnedFd]) -> io::Result<()> {
        for chunk in fds.chunks(sys::MAX_FDS_PER_MSG) {
            self.send(
                &serde_json::json!({ "v": VERSION, "fds": chunk.len() }),
                chunk,
            )?;
        }
        Ok(())
    }

    /// One message; `None` when the peer closed the connection.
    fn recv(&self, max_fds: usize) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_MSG];
        let (n, fds) = sys::recv_with_fds(self.0.as_fd(), &mut buf, max_fds)?;
        if n == 0 && fds.is_empty() {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((buf, fds)))
    }

    fn recv_request(&self) -> Result<Option<Request>> {
        match self.recv(0)? {
            None => Ok(None),
            Some((b, _)) => parse(&b, "request").map(Some),
        }
    }

    fn request(&self, op: Ask, reason: Option<String>) -> io::Result<()> {
        self.send(
            &Request {
                v: VERSION,
                op,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                reason,
            },
            &[],
        )
    }
}

/// The handover listener of a running router.
pub(super) struct Listener {
    sock: Socket,
    /// Removed on drop; empty while the socket file is another process's.
    path: PathBuf,
}

impl Listener {
    /// Binds `path` (mode 0600). A socket file left by a router that is
    /// gone is replaced; one a live router listens on is an error.
    pub(super) fn bind(path: &Path) -> Result<Listener> {
        match connect(path) {
            Ok(_) => bail!(
                "handover socket {}: another router listens on it",
                path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .with_context(|| format!("removing the stale socket {}", path.display()))?;
            }
            Err(_) => {}
        }
        let sock = Socket::new(Domain::UNIX, Type::SEQPACKET.cloexec(), None)
            .context("creating the handover socket")?;
        sock.bind(&SockAddr::unix(path)?)
            .with_context(|| format!("binding the handover socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
        sock.listen(4)?;
        sock.set_nonblocking(true)?;
        tracing::info!(path = %path.display(), "handover socket listening");
        Ok(Listener {
            sock,
            path: path.to_owned(),
        })
    }

    /// A listener handed over; its socket file stays the old router's
    /// until [`Listener::claim`].
    fn adopt(fd: OwnedFd, path: &Path) -> Result<Listener> {
        let sock = Socket::from(fd);
        let bound = sock
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_owned));
        if bound.as_deref() != Some(path) || !sock.r#type().is_ok_and(|t| t == Type::SEQPACKET) {
            bail!(
                "the handover socket handed over is not a seqpacket socket on {}",
                path.display()
            );
        }
        sock.set_nonblocking(true)?;
        Ok(Listener {
            sock,
            path: PathBuf::new(),
        })
    }

    /// Owns the socket file from now on.
    pub(super) fn claim(&mut self, path: &Path) {
        self.path = path.to_owned();
    }

    pub(super) fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.sock.as_raw_fd()
    }

    /// A waiting new router, if any.
    pub(super) fn accept(&self) -> io::Result<Option<Conn>> {
        match self.sock.accept() {
            Ok((s, _)) => Conn::new(s).map(Some),
            Err(e) if sys::is_transient(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) fn dup(&self) -> io::Result<OwnedFd> {
        self.sock.as_fd().try_clone_to_owned()
    }

    /// Closes the listener, leaving the socket file to the new router.
    pub(super) fn close_keeping_path(mut self) {
        self.path = PathBuf::new();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn connect(path: &Path) -> io::Result<Socket> {
    let s = Socket::new(Domain::UNIX, Type::SEQPACKET.cloexec(), None)?;
    s.connect(&SockAddr::unix(path)?)?;
    Ok(s)
}

/// The descriptors of one offer, taken out one by one as the new router
/// uses them.
pub(super) struct Takeover {
    conn: Conn,
    pub offer: Offer,
    fds: Vec<Option<OwnedFd>>,
    /// Ports of the offer not taken yet, by name.
    ports: BTreeMap<String, PortOffer>,
    pub path: PathBuf,
}

/// What [`Takeover::connect`] found.
pub(super) enum Found {
    /// No router runs (no socket, or nobody listens): start afresh.
    Nobody,
    /// The old router refused and has stopped: start afresh.
    Stopped,
    Offer(Box<Takeover>),
}

impl Takeover {
    /// Asks the router on handover socket `path` for its descriptors; see
    /// the module doc.
    pub(super) fn connect(path: &Path, host: &str) -> Result<Found> {
        let conn = match connect(path) {
            Ok(s) => Conn::new(s)?,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                tracing::info!(path = %path.display(), "no running router to take over from: starting afresh");
                return Ok(Found::Nobody);
            }
            Err(e) => return Err(e).with_context(|| format!("connecting to {}", path.display())),
        };
        conn.request(Ask::Takeover, None)
            .context("asking the running router for a handover")?;
        let Some((bytes, _)) = conn.recv(0).context("waiting for the handover offer")? else {
            bail!("the running router closed the handover connection without an answer");
        };
        let answer: Answer = match parse(&bytes, "answer") {
            Ok(a) => a,
            Err(e) => {
                let _ = conn.request(Ask::Abort, Some(format!("{e:#}")));
                return Err(e.context("the running router's handover answer"));
            }
        };
        let offer = match answer {
            Answer::Offer(o) => *o,
            Answer::Refused { code, message, .. } => {
                tracing::warn!(%code, "handover refused: {message}; restarting instead: stopping the running router");
                return Self::stop_old(&conn).map(|()| Found::Stopped);
            }
            other => bail!("unexpected handover answer {other:?}"),
        };
        if offer.host != host {
            let why = format!("the running router is host {}, not {host}", offer.host);
            let _ = conn.request(Ask::Abort, Some(why.clone()));
            bail!("{why}");
        }
        let mut fds = Vec::with_capacity(offer.fds);
        while fds.len() < offer.fds {
            let Some((bytes, got)) = conn.recv(sys::MAX_FDS_PER_MSG)? else {
                bail!("the running router closed the handover connection mid-offer");
            };
            let head: serde_json::Value = parse(&bytes, "descriptor message")?;
            if head.get("fds").and_then(serde_json::Value::as_u64) != Some(got.len() as u64)
                || got.is_empty()
            {
                bail!("a handover descriptor message does not hold what it says");
            }
            fds.extend(got.into_iter().map(Some));
        }
        if fds.len() != offer.fds {
            bail!(
                "the handover offer promised {} descriptors, {} came",
                offer.fds,
                fds.len()
            );
        }
        tracing::info!(from = %offer.version, workers = offer.workers, ports = offer.ports.len(), descriptors = offer.fds, "handover offer received");
        let ports = offer
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.clone()))
            .collect();
        Ok(Found::Offer(Box::new(Takeover {
            conn,
            offer,
            fds,
            ports,
            path: path.to_owned(),
        })))
    }

    /// A restart instead: asks the old router to stop and waits until it
    /// has exited (its end of the connection closes with the process).
    fn stop_old(conn: &Conn) -> Result<()> {
        conn.request(Ask::Stop, None)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match conn.recv(0) {
                Ok(None) => return Ok(()),
                Ok(Some(_)) => {}
                Err(e) if sys::is_transient(&e) && Instant::now() < deadline => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(e).context("waiting for the running router to stop"),
            }
        }
    }

    fn take(&mut self, i: usize) -> Result<OwnedFd> {
        self.fds
            .get_mut(i)
            .and_then(Option::take)
            .with_context(|| format!("handover descriptor {i} is missing or used twice"))
    }

    fn take_opt(&mut self, i: Option<usize>) -> Result<Option<OwnedFd>> {
        i.map(|i| self.take(i)).transpose()
    }

    /// The liveness socket, which must be bound to `addr`.
    pub(super) fn liveness(&mut self, addr: SocketAddr) -> Result<Option<std::net::UdpSocket>> {
        let Some(fd) = self.take_opt(self.offer.liveness)? else {
            return Ok(None);
        };
        let s = std::net::UdpSocket::from(fd);
        if s.local_addr().ok() != Some(addr) {
            bail!(
                "the liveness socket handed over is bound to {:?}, not {addr}",
                s.local_addr().ok()
            );
        }
        s.set_nonblocking(true)?;
        Ok(Some(s))
    }

    /// The metrics listener, which must listen on `addr`.
    pub(super) fn metrics(&mut self, addr: SocketAddr) -> Result<Option<std::net::TcpListener>> {
        let Some(fd) = self.take_opt(self.offer.metrics)? else {
            return Ok(None);
        };
        let l = std::net::TcpListener::from(fd);
        let at = l.local_addr().ok();
        // Port 0 asked for any port: the one the old router got is fine.
        if at.is_none_or(|a| a.ip() != addr.ip() || (addr.port() != 0 && a.port() != addr.port())) {
            bail!("the metrics listener handed over is on {at:?}, not {addr}");
        }
        Ok(Some(l))
    }

    /// The control socket's listener.
    pub(super) fn control(&mut self) -> Result<Option<OwnedFd>> {
        self.take_opt(self.offer.control)
    }

    /// The handover listener (on [`Takeover::path`]).
    pub(super) fn listener(&mut self) -> Result<Option<Listener>> {
        let path = self.path.clone();
        self.take_opt(self.offer.handover)?
            .map(|fd| Listener::adopt(fd, &path))
            .transpose()
    }

    /// Worker `k`'s UDP uplink descriptors (receive socket first).
    pub(super) fn uplink(&mut self, local: SocketAddr, k: usize) -> Result<Vec<OwnedFd>> {
        if self.offer.uplink.local != local {
            bail!(
                "the running router's UDP uplink is on {}, this configuration's on {local}",
                self.offer.uplink.local
            );
        }
        if self.offer.uplink.xsk.is_some() {
            bail!(
                "the running router's uplink is AF_XDP, this configuration's UDP: restart instead"
            );
        }
        let idx = self.offer.uplink.queues.get(k).cloned().unwrap_or_default();
        idx.into_iter().map(|i| self.take(i)).collect()
    }

    /// The AF_XDP uplink on `ifname`, bound to `local`: its XDP program,
    /// and its sockets with their UMEMs, which this router may use only
    /// once the old router has let go of them ([`Takeover::finish`]).
    pub(super) fn xsk_uplink(
        &mut self,
        ifname: &str,
        local: SocketAddr,
    ) -> Result<(XdpProgram, Vec<PendingXsk>)> {
        let Some(x) = self.offer.uplink.xsk.clone() else {
            bail!(
                "the running router's uplink is UDP, this configuration's AF_XDP: restart instead"
            );
        };
        if x.ifname != ifname || self.offer.uplink.local != local {
            bail!(
                "the running router's AF_XDP uplink is {} for {}, this configuration's {ifname} for {local}: restart instead",
                x.ifname,
                self.offer.uplink.local
            );
        }
        let mode = if x.native {
            XdpMode::Driver
        } else {
            XdpMode::Skb
        };
        let (link, xsks) = (self.take(x.link)?, self.take(x.xsks)?);
        let prog = XdpProgram::adopt(ifname, mode, link, xsks)
            .with_context(|| format!("taking over the XDP program on {ifname}"))?;
        Ok((prog, self.pending(ifname, &x.queues)?))
    }

    /// The AF_XDP sockets `queues` of `ifname`, to be polled once the old
    /// router has let go of them.
    fn pending(&mut self, ifname: &str, queues: &[XskQueueOffer]) -> Result<Vec<PendingXsk>> {
        let mut out = Vec::with_capacity(queues.len());
        for q in queues {
            if q.worker >= self.offer.workers {
                bail!(
                    "AF_XDP queue {} of {ifname} handed to worker {}, of {}",
                    q.queue_id,
                    q.worker,
                    self.offer.workers
                );
            }
            if out.iter().any(|p: &PendingXsk| p.queue_id == q.queue_id) {
                bail!("AF_XDP queue {} of {ifname} handed over twice", q.queue_id);
            }
            out.push(PendingXsk {
                queue_id: q.queue_id,
                worker: q.worker,
                rx_only: q.rx_only,
                fds: [self.take(q.socket)?, self.take(q.umem)?],
            });
        }
        Ok(out)
    }

    /// The container XDP program the old router's AF_XDP veth ports share,
    /// if it offered one; this router carries on with it.
    pub(super) fn container_xdp(&mut self) -> Result<Option<ContainerXdp>> {
        let Some(c) = self.offer.container_xdp.clone() else {
            return Ok(None);
        };
        let (prog, slots, xsks) = (self.take(c.prog)?, self.take(c.slots)?, self.take(c.xsks)?);
        let xdp = ContainerXdp::adopt(prog, slots, xsks)
            .context("taking over the container XDP program")?;
        Ok(Some(xdp))
    }

    /// AF_XDP veth port `offer`'s link of `xdp` (adopted from this offer)
    /// and its sockets, polled once the old router has let go of them.
    /// The link is not armed ([`ContainerLink::arm`]).
    pub(super) fn xsk_port(&mut self, offer: &PortOffer, xdp: &ContainerXdp) -> Result<TakenXsk> {
        let Some(x) = &offer.xsk else {
            bail!("port {} is not an AF_XDP veth port", offer.name);
        };
        if offer.kind != PortKind::Veth || offer.offload {
            bail!(
                "port {}: AF_XDP sockets offered for a {:?} port (offload {})",
                offer.name,
                offer.kind,
                offer.offload
            );
        }
        let mode = if x.native {
            XdpMode::Driver
        } else {
            XdpMode::Skb
        };
        let link = self.take(x.link)?;
        let queue_ids: Vec<u32> = x.queues.iter().map(|q| q.queue_id).collect();
        let link = xdp
            .adopt_link(&offer.name, mode, link, x.slot, &queue_ids)
            .with_context(|| format!("taking over the XDP link of {}", offer.name))?;
        let pending = self.pending(&offer.name, &x.queues)?;
        Ok((link, pending))
    }

    /// Port `name`'s offer and its queues' descriptors, one per worker.
    pub(super) fn port(&mut self, name: &str) -> Result<Option<(PortOffer, Vec<OwnedFd>)>> {
        let Some(p) = self.ports.remove(name) else {
            return Ok(None);
        };
        let fds = p
            .queues
            .iter()
            .map(|&i| self.take(i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some((p, fds)))
    }

    /// Checks the offer against what this router is about to run: the
    /// same workers, and the same ports from the topology (kind and
    /// offloads): a port the old router had and this one does not, or the
    /// reverse, is refused before anything is made.
    pub(super) fn check_matches(
        &self,
        workers: usize,
        config_ports: &[(String, PortKind, bool)],
    ) -> Result<()> {
        if self.offer.workers != workers {
            bail!(
                "the running router has {} worker(s), this configuration {workers}: restart instead",
                self.offer.workers
            );
        }
        let offered: Vec<(String, PortKind, bool)> = self
            .offer
            .ports
            .iter()
            .filter(|p| !p.attached)
            .map(|p| (p.name.clone(), p.kind, p.offload))
            .collect();
        let mut a = offered.clone();
        let mut b = config_ports.to_vec();
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        if a != b {
            bail!(
                "the running router's topology ports {:?} differ from this configuration's {:?}: restart instead",
                a.iter().map(|p| &p.0).collect::<Vec<_>>(),
                b.iter().map(|p| &p.0).collect::<Vec<_>>()
            );
        }
        Ok(())
    }

    /// Ports of the offer nobody took.
    pub(super) fn left_over(&self) -> Vec<String> {
        self.ports.keys().cloned().collect()
    }

    /// Tells the old router to go on; this router gives up.
    pub(super) fn abort(self, reason: &str) {
        let _ = self.conn.request(Ask::Abort, Some(reason.to_owned()));
    }

    /// Tells the old router that every new worker polls (or, with AF_XDP
    /// sockets, waits for them) and waits until it has stopped its own;
    /// returns what it forwarded in all and where its AF_XDP sockets'
    /// frames were.
    pub(super) fn finish(self) -> Result<(u64, XskStates)> {
        self.conn.request(Ask::Polling, None)?;
        let Some((bytes, _)) = self
            .conn
            .recv(0)
            .context("waiting for the old router to stop")?
        else {
            bail!("the old router closed the handover connection before saying it stopped");
        };
        match parse::<Answer>(&bytes, "answer")? {
            Answer::Done {
                forwarded,
                xsk,
                port_xsk,
                ..
            } => Ok((
                forwarded,
                XskStates {
                    uplink: xsk,
                    ports: port_xsk,
                },
            )),
            other => bail!("unexpected handover answer {other:?}"),
        }
    }
}

/// Where the old router left the frames of its AF_XDP sockets.
#[derive(Debug, Default)]
pub(super) struct XskStates {
    pub uplink: Vec<XskHandover>,
    /// By veth port name.
    pub ports: BTreeMap<String, Vec<XskHandover>>,
}

/// One port's AF_XDP sockets handed over and not used yet.
pub(super) struct PendingPort {
    /// The port index (0: the uplink).
    pub index: u16,
    /// The device the sockets are bound to.
    pub ifname: String,
    pub queues: Vec<PendingXsk>,
}

/// An AF_XDP veth port taken over: its link (not armed yet) and sockets.
pub(super) type TakenXsk = (ContainerLink, Vec<PendingXsk>);

/// An AF_XDP socket handed over and not used yet: the old router still
/// polls it until it says `done`.
pub(super) struct PendingXsk {
    pub queue_id: u32,
    pub worker: usize,
    pub rx_only: bool,
    /// [socket, UMEM memfd].
    pub fds: [OwnedFd; 2],
}

/// What one handover connection came to, on the old router's side.
pub(super) enum Outcome {
    /// Nothing changes: the new router went away or gave up.
    Continue,
    /// The new router forwards: exit without tearing anything down.
    HandedOver,
    /// Stop as on SIGTERM; keep the connection open until the exit.
    Stop(Conn),
}

/// The old router's side of one connection: `src` builds the offer and
/// its descriptors (or the refusal), and stops and drains the workers
/// once the new ones poll.
fn serve(conn: Conn, src: &mut dyn Source) -> Outcome {
    loop {
        let req = match conn.recv_request() {
            Ok(Some(r)) => r,
            Ok(None) => return Outcome::Continue,
            Err(e) => {
                tracing::warn!("handover: {e:#}");
                let _ = conn.send(
                    &Answer::Refused {
                        v: VERSION,
                        code: "unsupported_version".into(),
                        message: format!("{e:#}"),
                    },
                    &[],
                );
                return Outcome::Continue;
            }
        };
        match req.op {
            Ask::Takeover => {}
            Ask::Stop => {
                tracing::info!("stopping: a new router asked for a restart");
                src.hand_to(conn.peer_pid());
                let _ = conn.send(&Answer::Stopping { v: VERSION }, &[]);
                return Outcome::Stop(conn);
            }
            Ask::Polling | Ask::Abort => return Outcome::Continue,
        }
        tracing::info!(version = %req.version, "a new router asks to take over");
        let (o, fds) = match src.offer() {
            Ok(x) => x,
            Err(message) => {
                tracing::warn!("handover refused: {message}");
                let _ = conn.send(
                    &Answer::Refused {
                        v: VERSION,
                        code: "unsupported".into(),
                        message,
                    },
                    &[],
                );
                continue;
            }
        };
        if let Err(e) = conn
            .send(&Answer::Offer(Box::new(o)), &[])
            .and_then(|()| conn.send_fds(&fds))
        {
            tracing::warn!(error = %e, "handover: sending the offer failed; going on");
            return Outcome::Continue;
        }
        drop(fds);
        match conn.recv_request() {
            Ok(Some(Request {
                op: Ask::Polling, ..
            })) => {
                let (forwarded, xsk) = src.stop_workers();
                src.hand_to(conn.peer_pid());
                let _ = conn.send(
                    &Answer::Done {
                        v: VERSION,
                        forwarded,
                        xsk: xsk.uplink,
                        port_xsk: xsk.ports,
                    },
                    &[],
                );
                tracing::info!(forwarded, "handed over: the new router forwards; exiting");
                return Outcome::HandedOver;
            }
            Ok(Some(Request {
                op: Ask::Abort,
                reason,
                ..
            })) => {
                tracing::warn!(
                    reason = reason.as_deref().unwrap_or(""),
                    "handover aborted by the new router; going on"
                );
                return Outcome::Continue;
            }
            Ok(other) => {
                tracing::warn!(?other, "handover: the new router went away; going on");
                return Outcome::Continue;
            }
            Err(e) => {
                tracing::warn!("handover: {e:#}; going on");
                return Outcome::Continue;
            }
        }
    }
}

/// The old router's part, on [`Router`].
impl super::Router<'_> {
    /// Serves a new router waiting on the handover socket, if any.
    pub(super) fn on_handover(&mut self) {
        loop {
            let conn = match self.handover.as_ref().map(Listener::accept) {
                Some(Ok(Some(c))) => c,
                Some(Ok(None)) | None => return,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "handover socket");
                    return;
                }
            };
            match serve(conn, self) {
                Outcome::Continue => {}
                Outcome::HandedOver => {
                    self.exit = super::Exit::HandedOver;
                    return;
                }
                Outcome::Stop(c) => {
                    self.exit = super::Exit::Stop(c);
                    return;
                }
            }
        }
    }

    /// The offer and its descriptors, or why this router cannot hand over.
    fn build_offer(&self) -> std::result::Result<(Offer, Vec<OwnedFd>), String> {
        let mut fds: Vec<OwnedFd> = Vec::new();
        let dup = |r: io::Result<OwnedFd>, what: &str| {
            r.map_err(|e| format!("duplicating the {what}: {e}"))
        };
        let local = SocketAddr::new(
            self.topo.hosts[self.me].underlay,
            self.topo.overlay.udp_port,
        );
        let uplink = match &self.uplink_passable {
            setup::Passable::Xsk(socks) => {
                let prog = self
                    .owned
                    .programs
                    .iter()
                    .find(|p| p.ifname() == self.nic)
                    .ok_or_else(|| format!("no XDP program on the uplink {}", self.nic))?;
                let [link, xsks] = prog
                    .dup_for_handover()
                    .map_err(|e| format!("the uplink's XDP program: {e}"))?;
                let (link, xsks) = (push(&mut fds, link), push(&mut fds, xsks));
                UplinkOffer {
                    local,
                    queues: Vec::new(),
                    xsk: Some(XskUplinkOffer {
                        ifname: self.nic.clone(),
                        native: prog.mode() == XdpMode::Driver,
                        link,
                        xsks,
                        queues: offer_xsk_queues(socks, &mut fds)?,
                    }),
                }
            }
            other => UplinkOffer {
                local,
                queues: other
                    .dup()?
                    .into_iter()
                    .map(|q| q.into_iter().map(|fd| push(&mut fds, fd)).collect())
                    .collect(),
                xsk: None,
            },
        };
        let mut ports = Vec::new();
        let mut container_xdp = None;
        for (index, slot) in self.ports.iter() {
            let name = &slot.config.name;
            let (queues, xsk) = match &slot.passable {
                setup::Passable::Xsk(socks) => {
                    let link = slot.program.as_ref().ok_or_else(|| {
                        format!("port {name}: AF_XDP sockets without an XDP link")
                    })?;
                    if container_xdp.is_none() {
                        let [prog, slots, xsks] = self
                            .container_xdp
                            .dup_for_handover()
                            .map_err(|e| format!("the container XDP program: {e}"))?;
                        container_xdp = Some(ContainerXdpOffer {
                            prog: push(&mut fds, prog),
                            slots: push(&mut fds, slots),
                            xsks: push(&mut fds, xsks),
                        });
                    }
                    let fd = link
                        .dup_for_handover()
                        .map_err(|e| format!("port {name}'s XDP link: {e}"))?;
                    let xsk = XskPortOffer {
                        native: link.mode() == XdpMode::Driver,
                        link: push(&mut fds, fd),
                        slot: link.slot(),
                        queues: offer_xsk_queues(socks, &mut fds)
                            .map_err(|e| format!("port {name}: {e}"))?,
                    };
                    (Vec::new(), Some(xsk))
                }
                other => {
                    let queues = other
                        .dup()?
                        .into_iter()
                        .map(|mut q| match q.len() {
                            1 => Ok(push(&mut fds, q.remove(0))),
                            n => Err(format!("port {name}: {n} descriptors for one queue")),
                        })
                        .collect::<std::result::Result<Vec<_>, String>>()?;
                    (queues, None)
                }
            };
            ports.push(PortOffer {
                name: name.clone(),
                index,
                kind: slot.config.kind,
                offload: slot.config.offload,
                attached: slot.attachment.is_some(),
                queues,
                xsk,
            });
        }
        let liveness = match &self.hello_sock {
            Some(s) => Some(push(
                &mut fds,
                dup(s.as_fd().try_clone_to_owned(), "liveness socket")?,
            )),
            None => None,
        };
        let control = match &self.control {
            Some(c) => Some(push(&mut fds, dup(c.dup_listener(), "control socket")?)),
            None => None,
        };
        let handover = match &self.handover {
            Some(l) => Some(push(&mut fds, dup(l.dup(), "handover socket")?)),
            None => None,
        };
        let metrics = match &self.metrics {
            Some(m) => Some(push(&mut fds, dup(m.dup_listener(), "metrics listener")?)),
            None => None,
        };
        let offer = Offer {
            v: VERSION,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            host: self.topo.hosts[self.me].name.clone(),
            workers: self.n_workers,
            fds: fds.len(),
            uplink,
            liveness,
            control,
            handover,
            metrics,
            ports,
            devices: self.owned.devices.iter().map(|d| d.handle()).collect(),
            container_xdp,
        };
        Ok((offer, fds))
    }

    /// The new workers poll: stops this router's workers (each drains what
    /// its ports already read) and lets go of the devices it made and of
    /// the container XDP links, which the new router owns now. Returns the
    /// packets forwarded in all and where the AF_XDP sockets' frames were.
    fn stop_for_handover(&mut self) -> (u64, XskStates) {
        for d in self.owned.devices.drain(..) {
            d.release();
        }
        let handles: Vec<_> = self.owned.workers.iter().map(|(_, h)| h.clone()).collect();
        // The workers drop their ports as they stop, and each AF_XDP port
        // leaves where its frames are; the programs stay attached through
        // the new router's descriptors of their links.
        self.owned.shutdown();
        let mut xsk = XskStates::default();
        if let setup::Passable::Xsk(socks) = &self.uplink_passable {
            xsk.uplink = released_states(&self.nic, socks);
        }
        for (_, slot) in self.ports.iter_mut() {
            if let Some(link) = &mut slot.program {
                link.disarm();
            }
            if let setup::Passable::Xsk(socks) = &slot.passable {
                let states = released_states(&slot.config.name, socks);
                xsk.ports.insert(slot.config.name.clone(), states);
            }
        }
        let forwarded = handles
            .iter()
            .filter_map(|h| h.stats.lock().ok().map(|s| s.counters.forwarded))
            .sum();
        (forwarded, xsk)
    }

    /// Exits after a handover: closes what is left without removing the
    /// socket files, devices or records the new router uses now.
    pub(super) fn exit_handed_over(mut self) {
        if let Some(c) = self.control.take() {
            c.close_keeping_path();
        }
        if let Some(l) = self.handover.take() {
            l.close_keeping_path();
        }
        self.state = None;
    }

    /// The new router's last steps: once every worker polls, tells the old
    /// router to stop, and takes ownership of its devices and socket
    /// files. A port the old router offered that this one did not take
    /// (not in its topology or state directory) ends the takeover: the old
    /// router goes on.
    pub(super) fn complete_takeover(&mut self, t: Takeover) -> Result<()> {
        let mut left = t.left_over();
        left.extend(self.takeover_attached.keys().cloned());
        left.extend(self.takeover_attached_xsk.keys().cloned());
        if !left.is_empty() {
            let why = format!(
                "the running router has ports this one would not take ({}): restart instead",
                left.join(", ")
            );
            t.abort(&why);
            bail!("{why}");
        }
        let deadline = Instant::now() + STEP_TIMEOUT;
        // Held workers (an AF_XDP uplink to come) do not loop yet.
        while self.pending_xsk.is_empty() && !self.worker_loops().iter().all(|&n| n > 0) {
            if Instant::now() >= deadline {
                t.abort("the new workers did not start");
                bail!("the new workers did not start polling within {STEP_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let devices = t.offer.devices.clone();
        let path = t.path.clone();
        let started = Instant::now();
        let (old_forwarded, mut xsk) = t.finish()?;
        let pending = std::mem::take(&mut self.pending_xsk);
        let held = !pending.is_empty();
        for p in pending {
            let states = if p.index == 0 {
                std::mem::take(&mut xsk.uplink)
            } else {
                xsk.ports.remove(&p.ifname).unwrap_or_default()
            };
            self.take_xsk_port(p, &states)?;
        }
        // The container XDP links are this router's to clean up now.
        for (_, slot) in self.ports.iter_mut() {
            if let Some(link) = &mut slot.program {
                link.arm();
            }
        }
        if held {
            for (_, h) in &self.owned.workers {
                h.release();
            }
        }
        for h in &devices {
            self.owned
                .devices
                .push(crate::host::netns::CreatedDevice::adopt(
                    h,
                    &self.topo.hosts[self.me].name,
                ));
        }
        if let Some(c) = &mut self.control {
            if let Some(p) = &self.opts.socket {
                c.claim_path(p);
            }
        }
        if let Some(l) = &mut self.handover {
            l.claim(&path);
        }
        tracing::info!(
            old_forwarded,
            old_stop_ms = started.elapsed().as_secs_f64() * 1e3,
            "takeover complete: the old router stopped; this one forwards"
        );
        Ok(())
    }
}

/// The AF_XDP sockets' last step on the new router's side.
impl super::Router<'_> {
    /// Carries on the AF_XDP sockets of one port (the uplink, or a veth
    /// port) that the old router has let go of, from where it left their
    /// frames, and hands them to the (still held) workers.
    fn take_xsk_port(&mut self, p: PendingPort, states: &[XskHandover]) -> Result<()> {
        let mut q = setup::Queues::empty(self.n_workers);
        let mut passable = Vec::with_capacity(p.queues.len());
        for x in p.queues {
            let state = states
                .iter()
                .find(|s| s.queue_id == x.queue_id)
                .with_context(|| {
                    format!(
                        "the old router left no state for AF_XDP queue {} on {}",
                        x.queue_id, p.ifname
                    )
                })?;
            let port = AfXdpPort::adopt(&p.ifname, x.fds, state).with_context(|| {
                format!("taking over AF_XDP queue {} on {}", x.queue_id, p.ifname)
            })?;
            passable.push(setup::XskQueue::of(&port, x.worker, x.rx_only)?);
            tracing::info!(dev = %p.ifname, port = p.index, queue = x.queue_id, worker = x.worker, bind = %port.bind_mode(), "AF_XDP socket taken over");
            if x.rx_only {
                q.rx_only.push((x.worker, Box::new(port)));
            } else {
                let slot = q.per_worker.get_mut(x.worker).with_context(|| {
                    format!("AF_XDP queue {} for worker {}", x.queue_id, x.worker)
                })?;
                *slot = Some(Box::new(port));
            }
        }
        self.give_to_workers(p.index, q)
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let passable = setup::Passable::Xsk(passable);
        if p.index == 0 {
            self.uplink_passable = passable;
        } else if let Some(slot) = self.ports.get_mut(p.index) {
            slot.passable = passable;
        }
        Ok(())
    }
}

/// Puts `fd` among the offer's descriptors; returns its index.
fn push(fds: &mut Vec<OwnedFd>, fd: OwnedFd) -> usize {
    fds.push(fd);
    fds.len() - 1
}

/// The offer of AF_XDP sockets `socks`, their descriptors put in `fds`.
fn offer_xsk_queues(
    socks: &[setup::XskQueue],
    fds: &mut Vec<OwnedFd>,
) -> std::result::Result<Vec<XskQueueOffer>, String> {
    // Both routers run on this kernel: if it cannot map the rings of a
    // bound socket, the new router could not either, and a restart is
    // the way.
    for q in socks {
        AfXdpPort::adoptable(q.fds[0].as_fd(), q.ring_size).map_err(|e| {
            format!(
                "this kernel cannot map the rings of a bound AF_XDP socket (Linux 6.4 can): {e}"
            )
        })?;
    }
    let mut queues = Vec::with_capacity(socks.len());
    for q in socks {
        let dup = |fd: &OwnedFd, what: &str| {
            fd.try_clone()
                .map_err(|e| format!("duplicating the {what}: {e}"))
        };
        let (sock, umem) = (dup(&q.fds[0], "AF_XDP socket")?, dup(&q.fds[1], "UMEM")?);
        queues.push(XskQueueOffer {
            queue_id: q.queue_id,
            worker: q.worker,
            rx_only: q.rx_only,
            socket: push(fds, sock),
            umem: push(fds, umem),
        });
    }
    Ok(queues)
}

/// Where the AF_XDP sockets `socks` of `ifname` left their frames, once
/// their workers have dropped them.
fn released_states(ifname: &str, socks: &[setup::XskQueue]) -> Vec<XskHandover> {
    let mut out = Vec::with_capacity(socks.len());
    for q in socks {
        match q.cell.lock().ok().and_then(|c| c.clone()) {
            Some(state) => out.push(state),
            None => tracing::error!(
                dev = ifname,
                queue = q.queue_id,
                "an AF_XDP socket's worker did not let go of it: the new router cannot take that queue"
            ),
        }
    }
    out
}

/// What [`serve`] needs from the old router.
trait Source {
    fn offer(&self) -> std::result::Result<(Offer, Vec<OwnedFd>), String>;
    /// Stops the workers; returns what they forwarded and where the
    /// AF_XDP sockets' frames were once they let go.
    fn stop_workers(&mut self) -> (u64, XskStates);
    /// The new router (process `pid`, when known) carries on from here:
    /// the service manager is told so.
    fn hand_to(&mut self, pid: Option<u32>);
}

impl Source for super::Router<'_> {
    fn offer(&self) -> std::result::Result<(Offer, Vec<OwnedFd>), String> {
        self.build_offer()
    }

    fn stop_workers(&mut self) -> (u64, XskStates) {
        self.stop_for_handover()
    }

    fn hand_to(&mut self, pid: Option<u32>) {
        let Some(n) = &self.notify else {
            return;
        };
        match pid {
            Some(pid) => {
                // From here the new router's notifications (READY=1,
                // WATCHDOG=1) are the ones systemd takes, and this one's
                // exit is not the service's end.
                n.send(&format!("MAINPID={pid}"));
                self.successor_pid = Some(pid);
                tracing::info!(pid, "told systemd the new router is the main process (MAINPID)");
            }
            None => tracing::warn!(
                "the new router's process id is unknown: systemd keeps this router as the service's main process"
            ),
        }
    }
}

/// A successor this router started on SIGUSR2: the executable it was
/// started from (read again from disk, so that an upgraded binary runs)
/// with its own arguments and `--takeover`.
#[derive(Debug)]
pub(super) struct Relaunch {
    exe: PathBuf,
    args: Vec<std::ffi::OsString>,
    child: Option<std::process::Child>,
}

impl Relaunch {
    /// This process's executable path and arguments, read at start: once a
    /// package upgrade replaces the file, `/proc/self/exe` names the old
    /// one as deleted, while the path runs the new one.
    pub(super) fn of_this_process() -> Option<Relaunch> {
        let exe = std::env::current_exe().ok()?;
        Some(Relaunch {
            exe,
            args: std::env::args_os().skip(1).collect(),
            child: None,
        })
    }

    /// The command that starts the successor.
    fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.args(&self.args);
        if !self.args.iter().any(|a| a == "--takeover") {
            cmd.arg("--takeover");
        }
        // systemd's watchdog names this process; the successor feeds it
        // once it is the main process.
        cmd.env_remove("WATCHDOG_PID")
            .stdin(std::process::Stdio::null());
        cmd
    }
}

/// Upgrades in place (SIGUSR2), on [`Router`].
impl super::Router<'_> {
    /// Starts a successor that takes over from this router through the
    /// handover socket; this router goes on until it has.
    pub(super) fn start_successor(&mut self) {
        if self.handover.is_none() {
            tracing::warn!(
                "SIGUSR2: an upgrade in place needs the control socket (the new router finds this one beside it); going on"
            );
            return;
        }
        let Some(r) = &mut self.relaunch else {
            tracing::warn!("SIGUSR2: this router's executable path is unknown; going on");
            return;
        };
        if let Some(c) = &mut r.child {
            if matches!(c.try_wait(), Ok(None)) {
                tracing::warn!(
                    pid = c.id(),
                    "SIGUSR2: a new router is already taking over; going on"
                );
                return;
            }
        }
        // Not one of this router's descriptors may live on in the
        // successor: it takes what it needs over the handover socket.
        if let Err(e) = sys::cloexec_from(3) {
            tracing::error!(error = %e, "SIGUSR2: marking descriptors close-on-exec failed; going on");
            return;
        }
        match r.command().spawn() {
            Ok(c) => {
                tracing::info!(pid = c.id(), exe = %r.exe.display(), "SIGUSR2: started a new router to take over from this one");
                r.child = Some(c);
            }
            Err(e) => {
                tracing::error!(exe = %r.exe.display(), error = %e, "SIGUSR2: starting a new router failed; going on")
            }
        }
    }

    /// Notes a successor that exited without taking over (this router
    /// goes on, as after any failed takeover).
    pub(super) fn reap_successor(&mut self) {
        let Some(r) = &mut self.relaunch else {
            return;
        };
        let Some(c) = &mut r.child else {
            return;
        };
        match c.try_wait() {
            Ok(None) => {}
            Ok(Some(st)) => {
                tracing::warn!(pid = c.id(), status = %st, "the new router started on SIGUSR2 exited without taking over; this one goes on");
                r.child = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "waiting for the new router");
                r.child = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offer of the first release with handover, byte for byte: every
    /// later build must read it.
    const OFFER_V1: &str = r#"{"op":"offer","v":1,"version":"0.1.0","host":"h1","workers":2,"fds":7,"uplink":{"local":"198.18.0.1:4789","queues":[[0,1],[2,3]]},"liveness":4,"control":null,"handover":5,"metrics":null,"ports":[{"name":"c1","index":1,"kind":"tun","offload":true,"attached":false,"queues":[6,6]}],"devices":[{"kind":"tun","port_name":"c1","netns":"ns1","netns_created":true,"moved":true}]}"#;

    #[test]
    fn reads_the_first_release_offer() {
        let a: Answer = parse(OFFER_V1.as_bytes(), "answer").unwrap();
        let Answer::Offer(o) = a else { panic!("{a:?}") };
        assert_eq!(o.workers, 2);
        assert_eq!(o.uplink.queues, vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(o.ports[0].kind, PortKind::Tun);
        assert!(o.devices[0].moved);
        // What this build writes reads back the same.
        let again: Answer = parse(
            &serde_json::to_vec(&Answer::Offer(o.clone())).unwrap(),
            "answer",
        )
        .unwrap();
        assert_eq!(again, Answer::Offer(o));
    }

    /// An offer without an AF_XDP uplink, and a `done` without AF_XDP
    /// sockets, are written as the first release wrote them, so that it
    /// can still take over from this build; with them, they read back.
    #[test]
    fn af_xdp_fields_appear_only_with_an_af_xdp_uplink() {
        let a: Answer = parse(OFFER_V1.as_bytes(), "answer").unwrap();
        let Answer::Offer(mut o) = a else {
            panic!("{a:?}")
        };
        let udp =
            String::from_utf8(serde_json::to_vec(&Answer::Offer(o.clone())).unwrap()).unwrap();
        assert!(!udp.contains("xsk"), "{udp}");
        let done = Answer::Done {
            v: VERSION,
            forwarded: 3,
            xsk: Vec::new(),
            port_xsk: BTreeMap::new(),
        };
        assert_eq!(
            serde_json::to_string(&done).unwrap(),
            r#"{"op":"done","v":1,"forwarded":3}"#
        );

        o.uplink.queues = Vec::new();
        o.uplink.xsk = Some(XskUplinkOffer {
            ifname: "eth0".into(),
            native: false,
            link: 7,
            xsks: 8,
            queues: vec![XskQueueOffer {
                queue_id: 0,
                worker: 0,
                rx_only: false,
                socket: 9,
                umem: 10,
            }],
        });
        let back: Answer = parse(
            &serde_json::to_vec(&Answer::Offer(o.clone())).unwrap(),
            "answer",
        )
        .unwrap();
        assert_eq!(back, Answer::Offer(o));
        let state = XskHandover {
            queue_id: 0,
            zero_copy: false,
            need_wakeup: true,
            frame_size: 2048,
            frame_count: 4096,
            ring_size: 2048,
            free: vec![(2048, 2048)],
            kernel_rx: 2048,
            kernel_tx: 0,
        };
        let done = Answer::Done {
            v: VERSION,
            forwarded: 3,
            xsk: vec![state.clone()],
            port_xsk: BTreeMap::new(),
        };
        let back: Answer = parse(&serde_json::to_vec(&done).unwrap(), "answer").unwrap();
        assert_eq!(back, done);
        let done = Answer::Done {
            v: VERSION,
            forwarded: 3,
            xsk: Vec::new(),
            port_xsk: BTreeMap::from([("c1".to_owned(), vec![state])]),
        };
        let text = serde_json::to_string(&done).unwrap();
        assert!(!text.contains("\"xsk\""), "{text}");
        let back: Answer = parse(text.as_bytes(), "answer").unwrap();
        assert_eq!(back, done);
    }

    /// The offer of a TUN port and of a host without AF_XDP veth ports is
    /// written as the first release wrote it (the test above); an AF_XDP
    /// veth port's link and sockets, and the container program with its
    /// maps, appear with such a port and read back.
    #[test]
    fn af_xdp_veth_fields_appear_only_with_such_a_port() {
        let a: Answer = parse(OFFER_V1.as_bytes(), "answer").unwrap();
        let Answer::Offer(mut o) = a else {
            panic!("{a:?}")
        };
        let first =
            String::from_utf8(serde_json::to_vec(&Answer::Offer(o.clone())).unwrap()).unwrap();
        assert_eq!(first, OFFER_V1);
        o.ports.push(PortOffer {
            name: "c2".into(),
            index: 2,
            kind: PortKind::Veth,
            offload: false,
            attached: true,
            queues: Vec::new(),
            xsk: Some(XskPortOffer {
                native: true,
                link: 10,
                slot: 1,
                queues: vec![XskQueueOffer {
                    queue_id: 0,
                    worker: 1,
                    rx_only: false,
                    socket: 11,
                    umem: 12,
                }],
            }),
        });
        o.container_xdp = Some(ContainerXdpOffer {
            prog: 7,
            slots: 8,
            xsks: 9,
        });
        let text = serde_json::to_string(&Answer::Offer(o.clone())).unwrap();
        assert!(
            text.contains(r#""container_xdp":{"prog":7,"slots":8,"xsks":9}"#),
            "{text}"
        );
        let back: Answer = parse(text.as_bytes(), "answer").unwrap();
        assert_eq!(back, Answer::Offer(o));
    }

    #[test]
    fn refuses_other_versions_and_junk_clearly() {
        let v2 = OFFER_V1.replace("\"v\":1", "\"v\":2");
        let e = format!(
            "{:#}",
            parse::<Answer>(v2.as_bytes(), "answer").unwrap_err()
        );
        assert!(
            e.contains("version 2") && e.contains("speaks version 1"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            parse::<Answer>(b"{\"op\":\"done\"}", "answer").unwrap_err()
        );
        assert!(e.contains("without a version"), "{e}");
        assert!(parse::<Answer>(b"\xff", "answer").is_err());
        let extra = OFFER_V1.replace("\"workers\":2", "\"workers\":2,\"bogus\":1");
        assert!(parse::<Answer>(extra.as_bytes(), "answer").is_err());
        let r: Request = parse(br#"{"v":1,"op":"takeover","version":"9.9.9"}"#, "request").unwrap();
        assert_eq!(r.op, Ask::Takeover);
        assert!(parse::<Request>(br#"{"v":1,"op":"explode"}"#, "request").is_err());
    }

    #[test]
    fn descriptors_cross_a_seqpacket_pair() {
        let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
        let (a, b) = (Conn::new(a).unwrap(), Conn::new(b).unwrap());
        let files: Vec<OwnedFd> = (0..300)
            .map(|_| std::fs::File::open("/dev/null").unwrap().into())
            .collect();
        a.send_fds(&files).unwrap();
        let mut got = Vec::new();
        while got.len() < 300 {
            let (bytes, fds) = b.recv(sys::MAX_FDS_PER_MSG).unwrap().unwrap();
            let head: serde_json::Value = parse(&bytes, "fds").unwrap();
            assert_eq!(head["fds"].as_u64(), Some(fds.len() as u64));
            got.extend(fds);
        }
        assert_eq!(got.len(), 300);
        drop(a);
        assert!(b.recv(0).unwrap().is_none(), "a closed peer reads as None");
    }

    /// A router that cannot hand over (here: its offer fails).
    struct Refusing {
        stopped: bool,
    }

    impl Source for Refusing {
        fn offer(&self) -> std::result::Result<(Offer, Vec<OwnedFd>), String> {
            Err("port c1 cannot be handed over".into())
        }
        fn stop_workers(&mut self) -> (u64, XskStates) {
            self.stopped = true;
            (0, XskStates::default())
        }
        fn hand_to(&mut self, _pid: Option<u32>) {}
    }

    /// The restart fallback: a router that cannot hand over answers
    /// `refused` with its reason and goes on; asked to `stop` then, it
    /// says `stopping` and stops as on SIGTERM, its workers never handed
    /// over.
    #[test]
    fn a_refused_takeover_asks_the_old_router_to_stop() {
        let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
        let (old, new) = (Conn::new(a).unwrap(), Conn::new(b).unwrap());
        let server = std::thread::spawn(move || {
            let mut src = Refusing { stopped: false };
            let outcome = serve(old, &mut src);
            (matches!(outcome, Outcome::Stop(_)), src.stopped)
        });
        new.request(Ask::Takeover, None).unwrap();
        let (bytes, _) = new.recv(0).unwrap().unwrap();
        match parse::<Answer>(&bytes, "answer").unwrap() {
            Answer::Refused { code, message, .. } => {
                assert_eq!(code, "unsupported");
                assert!(message.contains("port c1"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        new.request(Ask::Stop, None).unwrap();
        let (bytes, _) = new.recv(0).unwrap().unwrap();
        assert_eq!(
            parse::<Answer>(&bytes, "answer").unwrap(),
            Answer::Stopping { v: VERSION }
        );
        let (stop, stopped_for_handover) = server.join().unwrap();
        assert!(stop, "the old router must stop as on SIGTERM");
        assert!(!stopped_for_handover);
    }

    #[test]
    fn the_handover_socket_sits_beside_the_control_socket() {
        assert_eq!(
            handover_path(Path::new("/run/vxrouter/h1.sock")),
            PathBuf::from("/run/vxrouter/h1.handover")
        );
    }
}
