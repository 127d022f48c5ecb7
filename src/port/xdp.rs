//! Loader for vxrouter's own XDP programs (`bpf/vxrouter_xdp.c`, compiled
//! by build.rs and embedded here).
//!
//! Layer: I/O corner. Two shapes, after what each attach costs:
//! - [`XdpProgram`]: the `uplink` program on the NIC, one loaded copy per
//!   interface with its own maps (XSKMAP by queue, VXLAN port, underlay
//!   addresses). One per router, so its load through the verifier is paid
//!   once.
//! - [`ContainerXdp`]: the `container` program, loaded once per router and
//!   attached to the host end of every veth container port through its own
//!   bpf_link ([`ContainerLink`]); a live attach then costs a link, not a
//!   load (tens of milliseconds in the verifier). Its maps are shared: the
//!   interface's ifindex names a slot, and the slot's sockets sit at
//!   `slot * MAX_QUEUES + queue` in one XSKMAP.
//!
//! Invariants: a container slot belongs to one live [`ContainerLink`]; its
//! XSKMAP entries hold only sockets registered through that link and are
//! cleared before the slot is reused, and the ifindex entry is written only
//! after the link is attached (so it never names a slot for an interface
//! that another link serves). The kernel itself refuses to deliver a frame
//! to a socket bound to another device or queue, so a frame of one port can
//! never reach another port's socket.
//!
//! Programs attach in native (driver) mode when the driver allows it and in
//! generic (SKB) mode otherwise, and detach on drop. A handover passes
//! both to a new router ([`XdpProgram::adopt`], [`ContainerXdp::adopt`]):
//! a bpf_link stays attached while either process holds a descriptor of
//! it, and a [`ContainerLink`] clears its map entries on drop only while
//! armed, that is while its router owns it. Nothing is pinned, so
//! the kernel also detaches them when the process dies; the redirect falls
//! back to `XDP_PASS` where no socket is registered, so the host keeps its
//! own traffic either way.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use aya::maps::{Array, HashMap, Map, MapData, XskMap};
use aya::programs::links::FdLink;
use aya::programs::xdp::{XdpLink, XdpLinkId};
use aya::programs::{Link as _, Xdp, XdpMode as AyaXdpMode};
use aya::{Ebpf, EbpfLoader};

/// The compiled BPF object (see build.rs).
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vxrouter_xdp.o"));

/// The uplink program's name in the object.
const UPLINK: &str = "uplink";
/// The container program's name in the object.
const CONTAINER: &str = "container";

/// Where the kernel runs the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver, before an skb exists (native XDP).
    Driver,
    /// In the generic network stack after skb allocation (slower, always there).
    Skb,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Driver => "driver (native)",
            XdpMode::Skb => "skb (generic)",
        })
    }
}

/// Largest queue index an XSKMAP holds per interface (`MAX_QUEUES` in the C
/// source).
pub const MAX_QUEUES: u32 = 64;

/// Underlay addresses the uplink program accepts (`MAX_UNDERLAY_ADDRS`).
pub const MAX_UNDERLAY_ADDRS: usize = 16;

/// Container veth ports the shared program serves at once
/// (`MAX_CONTAINER_PORTS`).
pub const MAX_CONTAINER_PORTS: u32 = 256;

/// Our uplink XDP program attached to one interface. Detaches on drop,
/// unless another process holds its link (a handover: [`Self::dup_link`],
/// [`Self::adopt`]).
///
/// The attachment is a bpf_link where the kernel has them (it does here), so
/// it can be dropped from any thread; on a kernel that needs the netlink
/// fallback, drop it in the network namespace it was attached in, and it
/// cannot be handed over.
pub struct XdpProgram {
    /// The attachment; dropping it closes this process's descriptor of the
    /// link, which detaches the program when it was the last one.
    link: Option<UplinkLink>,
    /// The XSKMAP by queue, taken out of the object (or handed over).
    xsks: Map,
    /// The loaded object (program and configuration maps); `None` for a
    /// program handed over, which its link keeps alive.
    _ebpf: Option<Ebpf>,
    ifname: String,
    mode: XdpMode,
}

/// How this process holds the uplink program's attachment.
enum UplinkLink {
    /// A bpf_link and its kernel id (another process may open it by id).
    Fd { link: XdpLink, id: u32 },
    /// A bpf_link handed over by another process.
    HandedOver(OwnedFd),
    /// The netlink attachment of a kernel without bpf_link for XDP.
    Netlink(XdpLink),
}

impl fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpProgram")
            .field("ifname", &self.ifname)
            .field("mode", &self.mode)
            .finish()
    }
}

fn err(what: impl fmt::Display) -> io::Error {
    io::Error::other(what.to_string())
}

/// An address as the program's 16-byte map key: IPv6 as is, IPv4 mapped
/// (`::ffff:a.b.c.d`, RFC 4291 2.5.5.2), matching `struct addr_key`.
fn addr_key(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Loads the object with the maps `shrink` names cut to one entry (the
/// other program's maps: the kernel creates every map of an object).
fn load_object(shrink: &[&'static str]) -> io::Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    for m in shrink {
        loader.map_max_entries(m, 1);
    }
    loader
        .load(OBJECT)
        .map_err(|e| err(format!("loading XDP object: {e}")))
}

/// Loads program `name` of `ebpf` through the verifier.
fn load_program<'e>(ebpf: &'e mut Ebpf, name: &str) -> io::Result<&'e mut Xdp> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or_else(|| err(format!("XDP object has no program {name}")))?
        .try_into()
        .map_err(|e| err(format!("program {name}: {e}")))?;
    prog.load()
        .map_err(|e| err(format!("verifier rejected {name}: {e}")))?;
    Ok(prog)
}

/// Attaches `prog` to `ifindex` (named `ifname` in messages), native mode
/// first, generic mode second.
fn attach_link(prog: &mut Xdp, ifname: &str, ifindex: u32) -> io::Result<(XdpMode, XdpLinkId)> {
    match prog.attach_to_if_index(ifindex, AyaXdpMode::Driver) {
        Ok(link) => Ok((XdpMode::Driver, link)),
        Err(native) => match prog.attach_to_if_index(ifindex, AyaXdpMode::Skb) {
            Ok(link) => Ok((XdpMode::Skb, link)),
            Err(generic) => Err(err(format!(
                "attaching XDP to {ifname} refused: native: {native}; generic: {generic}"
            ))),
        },
    }
}

/// How long [`attach_retrying`] keeps trying.
const ATTACH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// [`attach_link`] for the uplink at start, tried again every 20 ms for up
/// to [`ATTACH_PATIENCE`]: the kernel releases the XDP link of a router that
/// was just killed some 70-90 ms after the process is gone, and a restart
/// inside that window must not fail on it.
fn attach_retrying(prog: &mut Xdp, ifname: &str, ifindex: u32) -> io::Result<(XdpMode, XdpLinkId)> {
    let start = std::time::Instant::now();
    let mut tries = 1u32;
    loop {
        match attach_link(prog, ifname, ifindex) {
            Ok(done) => {
                if tries > 1 {
                    tracing::info!(
                        dev = ifname,
                        tries,
                        waited_ms = start.elapsed().as_millis() as u64,
                        "uplink XDP attached once the previous program was released"
                    );
                }
                return Ok(done);
            }
            Err(e) if start.elapsed() >= ATTACH_PATIENCE => return Err(e),
            Err(_) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                tries += 1;
            }
        }
    }
}

/// Clears entry `index` of XSKMAP `name`; an empty entry is already clear.
fn unset_xsk_entry(mut map: XskMap<&mut MapData>, name: &str, index: u32) -> io::Result<()> {
    match map.unset(index) {
        Ok(()) => Ok(()),
        // Deleting an empty slot reports ENOENT: already unregistered.
        Err(aya::maps::MapError::SyscallError(s))
            if s.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        Err(e) => Err(err(format!("unregistering {name}[{index}]: {e}"))),
    }
}

fn check_queue(queue_id: u32) -> io::Result<()> {
    if queue_id >= MAX_QUEUES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("queue {queue_id} beyond the XSKMAP's {MAX_QUEUES} entries per interface"),
        ));
    }
    Ok(())
}

impl XdpProgram {
    /// Loads a fresh copy of the object, fills its configuration maps, and
    /// attaches the uplink program to `ifname` (in the calling thread's
    /// network namespace), native mode first, generic mode second.
    ///
    /// Only UDP to `udp_port` (host byte order) on one of `underlay_addrs`
    /// goes to the sockets; a port of 0 redirects nothing.
    pub fn attach(
        ifname: &str,
        underlay_addrs: &[IpAddr],
        udp_port: u16,
    ) -> io::Result<XdpProgram> {
        if underlay_addrs.len() > MAX_UNDERLAY_ADDRS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} underlay addresses; the XDP program holds at most {MAX_UNDERLAY_ADDRS}",
                    underlay_addrs.len()
                ),
            ));
        }
        // Resolve first, so a missing device says so rather than "attach failed".
        let ifindex = super::sys::ifindex(ifname)?;
        let mut ebpf = load_object(&["container_slots", "container_xsks"])?;

        {
            let map = ebpf
                .map_mut("config")
                .ok_or_else(|| err("XDP object has no `config` map"))?;
            let mut config: Array<_, u16> =
                Array::try_from(map).map_err(|e| err(format!("config map: {e}")))?;
            // The program compares against the UDP header field directly.
            config
                .set(0, udp_port.to_be(), 0)
                .map_err(|e| err(format!("setting the VXLAN port: {e}")))?;
        }
        {
            let map = ebpf
                .map_mut("underlay_addrs")
                .ok_or_else(|| err("XDP object has no `underlay_addrs` map"))?;
            let mut addrs: HashMap<_, [u8; 16], u8> =
                HashMap::try_from(map).map_err(|e| err(format!("underlay_addrs map: {e}")))?;
            for a in underlay_addrs {
                addrs
                    .insert(addr_key(*a), 1, 0)
                    .map_err(|e| err(format!("adding underlay address {a}: {e}")))?;
            }
        }

        let xsks = ebpf
            .take_map("xsks")
            .ok_or_else(|| err("XDP object has no `xsks` map"))?;
        let prog = load_program(&mut ebpf, UPLINK)?;
        let (mode, link_id) = attach_retrying(prog, ifname, ifindex)?;
        let link = prog
            .take_link(link_id)
            .map_err(|e| err(format!("taking the XDP link of {ifname}: {e}")))?;
        // A bpf_link is what another process can hold on to; its kernel id
        // lets this one open a second descriptor of it.
        let link = match FdLink::try_from(link) {
            Ok(fd_link) => {
                let id = fd_link
                    .info()
                    .map_err(|e| err(format!("the XDP link of {ifname}: {e}")))?
                    .id();
                let link = XdpLink::try_from(fd_link)
                    .map_err(|e| err(format!("the XDP link of {ifname}: {e}")))?;
                UplinkLink::Fd { link, id }
            }
            // Converting consumed the netlink attachment (and detached
            // it): attach again and keep it as it is.
            Err(_) => {
                let (_, link_id) = attach_retrying(prog, ifname, ifindex)?;
                let link = prog
                    .take_link(link_id)
                    .map_err(|e| err(format!("taking the XDP link of {ifname}: {e}")))?;
                UplinkLink::Netlink(link)
            }
        };
        Ok(XdpProgram {
            link: Some(link),
            xsks,
            _ebpf: Some(ebpf),
            ifname: ifname.to_string(),
            mode,
        })
    }

    /// Carries on the program another router attached to `ifname`: `link`
    /// is a descriptor of its bpf_link (which keeps it attached), `xsks`
    /// one of its XSKMAP, whose entries still name the sockets handed over
    /// with them. Both are checked for what they are.
    pub fn adopt(
        ifname: &str,
        mode: XdpMode,
        link: OwnedFd,
        xsks: OwnedFd,
    ) -> io::Result<XdpProgram> {
        let ifindex = super::sys::ifindex(ifname)?;
        let on = super::sys::bpf_xdp_link_info(link.as_fd())
            .map_err(|e| err(format!("the XDP link handed over: {e}")))?
            .ifindex;
        if on != ifindex {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the XDP link handed over is on interface {on}, not {ifname} ({ifindex})"),
            ));
        }
        let ty = super::sys::bpf_map_info(xsks.as_fd())
            .map_err(|e| err(format!("the XSKMAP handed over: {e}")))?
            .map_type;
        if ty != super::sys::BPF_MAP_TYPE_XSKMAP {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the XSKMAP handed over is a map of type {ty}"),
            ));
        }
        let data =
            MapData::from_fd(xsks).map_err(|e| err(format!("the XSKMAP handed over: {e}")))?;
        let mut xsks = Map::XskMap(data);
        XskMap::try_from(&mut xsks).map_err(|e| err(format!("the XSKMAP handed over: {e}")))?;
        Ok(XdpProgram {
            link: Some(UplinkLink::HandedOver(link)),
            xsks,
            _ebpf: None,
            ifname: ifname.to_string(),
            mode,
        })
    }

    /// Second descriptors of the attachment and of the XSKMAP, for a new
    /// router that takes over: [link, xsks]. The program stays attached
    /// while either router holds its link.
    pub fn dup_for_handover(&self) -> io::Result<[OwnedFd; 2]> {
        let link = match &self.link {
            Some(UplinkLink::Fd { id, .. }) => super::sys::bpf_link_fd_by_id(*id)?,
            Some(UplinkLink::HandedOver(fd)) => fd.try_clone()?,
            Some(UplinkLink::Netlink(_)) | None => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this kernel attaches XDP through netlink, without a bpf_link to hand over",
                ))
            }
        };
        let Map::XskMap(data) = &self.xsks else {
            return Err(err("the `xsks` map is not an XSKMAP"));
        };
        Ok([link, data.fd().as_fd().try_clone_to_owned()?])
    }

    /// Where the kernel runs the program on this interface.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// The interface the program is attached to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    fn xsk_map(&mut self) -> io::Result<XskMap<&mut MapData>> {
        XskMap::try_from(&mut self.xsks).map_err(|e| err(format!("xsks map: {e}")))
    }

    /// Sends frames arriving on `queue_id` (that the program selects) to the
    /// AF_XDP socket `fd`, which must be bound to this interface and queue.
    pub fn register_socket(&mut self, queue_id: u32, fd: RawFd) -> io::Result<()> {
        check_queue(queue_id)?;
        self.xsk_map()?
            .set(queue_id, fd, 0)
            .map_err(|e| err(format!("registering socket for queue {queue_id}: {e}")))
    }

    /// Stops redirecting `queue_id`: its frames go to the kernel again.
    pub fn unregister_socket(&mut self, queue_id: u32) -> io::Result<()> {
        if queue_id >= MAX_QUEUES {
            return Ok(());
        }
        unset_xsk_entry(self.xsk_map()?, "xsks", queue_id)
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        // Closing this process's descriptor of a bpf_link detaches the
        // program only if no other process (a router taking over) holds
        // one; the netlink attachment detaches here.
        match self.link.take() {
            Some(UplinkLink::Fd { link, .. } | UplinkLink::Netlink(link)) => {
                if let Err(e) = link.detach() {
                    tracing::warn!(ifname = %self.ifname, program = UPLINK, error = %e, "XDP detach failed");
                    return;
                }
            }
            Some(UplinkLink::HandedOver(fd)) => drop(fd),
            None => return,
        }
        tracing::info!(ifname = %self.ifname, program = UPLINK, "XDP program let go");
    }
}

/// The container program, loaded once and shared by every container veth
/// port of a router (see the module doc). Cheap to clone: clones share the
/// one loaded program. Loaded on first use, or up front with [`Self::load`],
/// or handed over by the router this one takes over from
/// ([`Self::adopt`]).
#[derive(Clone, Default)]
pub struct ContainerXdp {
    shared: Arc<Mutex<Shared>>,
}

#[derive(Default)]
struct Shared {
    /// The program and its maps; `None` until first needed.
    prog: Option<Loaded>,
    /// Slots held by a live [`ContainerLink`] (or lost to a failed clean-up).
    used: Vec<bool>,
}

/// The container program and the two maps its ports are registered in.
struct Loaded {
    /// A descriptor of the program: every link is made from it.
    prog: OwnedFd,
    /// The program's kernel id (a link handed over must run it).
    prog_id: u32,
    /// `container_slots`: ifindex -> slot.
    slots: Map,
    /// `container_xsks`: the sockets at `slot * MAX_QUEUES + queue`.
    xsks: Map,
    /// The object loaded here, for the netlink attach of a kernel without
    /// XDP links; `None` when handed over.
    ebpf: Option<Ebpf>,
}

impl fmt::Debug for ContainerXdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("ContainerXdp")
            .field("loaded", &s.prog.is_some())
            .field("links", &s.used.iter().filter(|u| **u).count())
            .finish()
    }
}

impl Loaded {
    /// Loads the object and the `container` program through the verifier.
    fn load() -> io::Result<Loaded> {
        let mut ebpf = load_object(&["xsks", "underlay_addrs"])?;
        let prog = load_program(&mut ebpf, CONTAINER)?
            .fd()
            .map_err(|e| err(format!("program {CONTAINER}: {e}")))?
            .as_fd()
            .try_clone_to_owned()?;
        let (prog_id, _) = super::sys::bpf_xdp_prog_info(prog.as_fd())?;
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| err(format!("XDP object has no `{name}` map")))
        };
        let (slots, xsks) = (take("container_slots")?, take("container_xsks")?);
        Ok(Loaded {
            prog,
            prog_id,
            slots,
            xsks,
            ebpf: Some(ebpf),
        })
    }

    fn slots_map(&mut self) -> io::Result<HashMap<&mut MapData, u32, u32>> {
        HashMap::try_from(&mut self.slots).map_err(|e| err(format!("container_slots map: {e}")))
    }

    fn xsk_map(&mut self) -> io::Result<XskMap<&mut MapData>> {
        XskMap::try_from(&mut self.xsks).map_err(|e| err(format!("container_xsks map: {e}")))
    }

    /// Attaches the program to `ifindex` through a bpf_link, native mode
    /// first, generic mode second; through netlink where the kernel has no
    /// XDP links (and the object was loaded here).
    fn attach(&mut self, ifname: &str, ifindex: u32) -> io::Result<(XdpMode, LinkHold)> {
        use super::sys::{bpf_xdp_link_create, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
        let native = match bpf_xdp_link_create(self.prog.as_fd(), ifindex, XDP_FLAGS_DRV_MODE) {
            Ok(fd) => return Ok((XdpMode::Driver, LinkHold::Fd(fd))),
            Err(e) => e,
        };
        let generic = match bpf_xdp_link_create(self.prog.as_fd(), ifindex, XDP_FLAGS_SKB_MODE) {
            Ok(fd) => return Ok((XdpMode::Skb, LinkHold::Fd(fd))),
            Err(e) => e,
        };
        let no_links = |e: &io::Error| e.raw_os_error() == Some(libc::EINVAL);
        match &mut self.ebpf {
            Some(ebpf) if no_links(&native) && no_links(&generic) => {
                let prog: &mut Xdp = ebpf
                    .program_mut(CONTAINER)
                    .ok_or_else(|| err(format!("XDP object has no program {CONTAINER}")))?
                    .try_into()
                    .map_err(|e| err(format!("program {CONTAINER}: {e}")))?;
                let (mode, id) = attach_link(prog, ifname, ifindex)?;
                let link = prog
                    .take_link(id)
                    .map_err(|e| err(format!("taking the XDP link of {ifname}: {e}")))?;
                Ok((mode, LinkHold::Netlink(link)))
            }
            _ => Err(err(format!(
                "attaching XDP to {ifname} refused: native: {native}; generic: {generic}"
            ))),
        }
    }
}

impl Shared {
    /// The program, loading it now if needed.
    fn loaded(&mut self) -> io::Result<&mut Loaded> {
        if self.prog.is_none() {
            self.prog = Some(Loaded::load()?);
        }
        Ok(self.prog.as_mut().expect("loaded just above"))
    }
}

impl ContainerXdp {
    /// A handle with nothing loaded yet.
    pub fn new() -> ContainerXdp {
        ContainerXdp::default()
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves plain data behind (no
        // half-done invariant outlives a call), so the state stays usable.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the program through the verifier now, if it is not loaded.
    pub fn load(&self) -> io::Result<()> {
        self.lock().loaded().map(|_| ())
    }

    /// Second descriptors of the program and of its two maps, for a new
    /// router that takes over: [program, container_slots, container_xsks].
    pub fn dup_for_handover(&self) -> io::Result<[OwnedFd; 3]> {
        let s = self.lock();
        let l = s
            .prog
            .as_ref()
            .ok_or_else(|| err("the container XDP program is not loaded"))?;
        let map_fd = |m: &Map| -> io::Result<OwnedFd> {
            match m {
                Map::HashMap(d) | Map::XskMap(d) => d.fd().as_fd().try_clone_to_owned(),
                _ => Err(err("a container map of an unexpected type")),
            }
        };
        Ok([l.prog.try_clone()?, map_fd(&l.slots)?, map_fd(&l.xsks)?])
    }

    /// Carries on the container program another router loaded: `prog` is
    /// a descriptor of it, `slots` and `xsks` of its `container_slots` and
    /// `container_xsks` maps, whose entries still name the links and
    /// sockets handed over with them. Checked for what they are: an XDP
    /// program, a hash map of u32 to u32 and an XSKMAP, both maps the
    /// program's own.
    pub fn adopt(prog: OwnedFd, slots: OwnedFd, xsks: OwnedFd) -> io::Result<ContainerXdp> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        let (prog_id, prog_maps) = super::sys::bpf_xdp_prog_info(prog.as_fd())
            .map_err(|e| invalid(format!("the container XDP program handed over: {e}")))?;
        use super::sys::{BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_XSKMAP};
        for (fd, name, ty) in [
            (&slots, "container_slots", BPF_MAP_TYPE_HASH),
            (&xsks, "container_xsks", BPF_MAP_TYPE_XSKMAP),
        ] {
            let info = super::sys::bpf_map_info(fd.as_fd())
                .map_err(|e| invalid(format!("the {name} map handed over: {e}")))?;
            let id = info.id;
            if (info.map_type, info.key_size, info.value_size) != (ty, 4, 4) {
                return Err(invalid(format!(
                    "the {name} map handed over is of type {} with {}-byte keys and {}-byte values, expected type {ty} with 4 and 4",
                    info.map_type, info.key_size, info.value_size
                )));
            }
            if !prog_maps.contains(&id) {
                return Err(invalid(format!(
                    "the {name} map handed over (id {id}) is not one of the container XDP program's (id {prog_id}: maps {prog_maps:?})"
                )));
            }
        }
        let data = |fd, name: &str| {
            MapData::from_fd(fd).map_err(|e| invalid(format!("the {name} map handed over: {e}")))
        };
        let mut l = Loaded {
            prog,
            prog_id,
            slots: Map::HashMap(data(slots, "container_slots")?),
            xsks: Map::XskMap(data(xsks, "container_xsks")?),
            ebpf: None,
        };
        l.slots_map()
            .map_err(|e| invalid(format!("handed over: {e}")))?;
        l.xsk_map()
            .map_err(|e| invalid(format!("handed over: {e}")))?;
        Ok(ContainerXdp {
            shared: Arc::new(Mutex::new(Shared {
                prog: Some(l),
                used: Vec::new(),
            })),
        })
    }

    /// Carries on the adopted program's link `link` to `ifname` (running
    /// in `mode`), slot `slot`, with sockets registered for `queues`.
    /// Checked: an XDP link of this program on `ifname`, whose slot the
    /// slot map names and no other link holds. The link is not this
    /// router's to clean up until [`ContainerLink::arm`]: dropped before,
    /// it only closes its descriptor.
    pub fn adopt_link(
        &self,
        ifname: &str,
        mode: XdpMode,
        link: OwnedFd,
        slot: u32,
        queues: &[u32],
    ) -> io::Result<ContainerLink> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        let ifindex = super::sys::ifindex(ifname)?;
        let info = super::sys::bpf_xdp_link_info(link.as_fd())
            .map_err(|e| invalid(format!("the XDP link of {ifname} handed over: {e}")))?;
        let mut s = self.lock();
        let l = s
            .prog
            .as_mut()
            .ok_or_else(|| err("no container XDP program handed over"))?;
        if info.ifindex != ifindex || info.prog_id != l.prog_id {
            return Err(invalid(format!(
                "the XDP link handed over for {ifname} ({ifindex}) runs program {} on interface {}, not the container program {}",
                info.prog_id, info.ifindex, l.prog_id
            )));
        }
        if slot >= MAX_CONTAINER_PORTS || s.used.get(slot as usize) == Some(&true) {
            return Err(invalid(format!(
                "XDP slot {slot} of {ifname}: out of range or handed over twice"
            )));
        }
        let named = s.loaded()?.slots_map()?.get(&ifindex, 0).ok();
        if named != Some(slot) {
            return Err(invalid(format!(
                "XDP slot {slot} handed over for {ifname}: the slot map names {named:?}"
            )));
        }
        let mut registered = 0u64;
        for &q in queues {
            check_queue(q)?;
            registered |= 1 << q;
        }
        if s.used.len() <= slot as usize {
            s.used.resize(slot as usize + 1, false);
        }
        s.used[slot as usize] = true;
        Ok(ContainerLink {
            shared: self.clone(),
            ifname: ifname.to_string(),
            ifindex,
            slot,
            mode,
            registered,
            link: Some(LinkHold::Fd(link)),
            armed: false,
        })
    }

    /// Attaches the shared program to `ifname` (in the calling thread's
    /// network namespace), native mode first, generic mode second, loading
    /// it first if this is the first attach.
    pub fn attach(&self, ifname: &str) -> io::Result<ContainerLink> {
        let ifindex = super::sys::ifindex(ifname)?;
        let mut s = self.lock();
        let slot = match s.used.iter().position(|u| !u) {
            Some(i) => i,
            None if s.used.len() < MAX_CONTAINER_PORTS as usize => {
                s.used.push(false);
                s.used.len() - 1
            }
            None => {
                return Err(err(format!(
                    "the container XDP program serves {MAX_CONTAINER_PORTS} ports already"
                )))
            }
        };
        let l = s.loaded()?;
        let (mode, link) = l.attach(ifname, ifindex)?;
        // The link attached, so no other link serves this ifindex: an entry
        // for it is a leftover of a device that is gone, and is replaced.
        if let Err(e) = l.slots_map()?.insert(ifindex, slot as u32, 0) {
            drop(link);
            return Err(err(format!("naming the XDP slot of {ifname}: {e}")));
        }
        s.used[slot] = true;
        Ok(ContainerLink {
            shared: self.clone(),
            ifname: ifname.to_string(),
            ifindex,
            slot: slot as u32,
            mode,
            registered: 0,
            link: Some(link),
            armed: true,
        })
    }
}

/// How a [`ContainerLink`] holds its attachment.
enum LinkHold {
    /// A bpf_link: attached while any process holds a descriptor of it.
    Fd(OwnedFd),
    /// The netlink attachment of a kernel without XDP links.
    Netlink(XdpLink),
}

/// The shared container program attached to one interface, with the
/// sockets registered for its queues. Drop detaches it, clears its entries
/// and frees its slot, when armed; a link handed over (either way) only
/// closes its descriptor, and the other router carries on.
pub struct ContainerLink {
    shared: ContainerXdp,
    ifname: String,
    ifindex: u32,
    slot: u32,
    mode: XdpMode,
    /// Bit q set: a socket is registered for queue q.
    registered: u64,
    link: Option<LinkHold>,
    /// This router cleans the link up on drop.
    armed: bool,
}

impl fmt::Debug for ContainerLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerLink")
            .field("ifname", &self.ifname)
            .field("ifindex", &self.ifindex)
            .field("slot", &self.slot)
            .field("mode", &self.mode)
            .field("armed", &self.armed)
            .finish()
    }
}

impl ContainerLink {
    /// Where the kernel runs the program on this interface.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// The interface the program is attached to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The slot whose XSKMAP entries this link's sockets sit in.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// A second descriptor of the bpf_link, for a new router that takes
    /// over: the program stays attached while either router holds it.
    pub fn dup_for_handover(&self) -> io::Result<OwnedFd> {
        match &self.link {
            Some(LinkHold::Fd(fd)) => fd.try_clone(),
            Some(LinkHold::Netlink(_)) | None => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this kernel attaches XDP through netlink, without a bpf_link to hand over",
            )),
        }
    }

    /// The link is this router's now (a takeover completed): drop cleans
    /// it up.
    pub fn arm(&mut self) {
        self.armed = true;
    }

    /// The link is another router's now (handed over): drop only closes
    /// this process's descriptor.
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    fn key(&self, queue_id: u32) -> u32 {
        self.slot * MAX_QUEUES + queue_id
    }

    /// Sends frames arriving on this interface's queue `queue_id` to the
    /// AF_XDP socket `fd`, which must be bound to this interface and queue.
    pub fn register_socket(&mut self, queue_id: u32, fd: RawFd) -> io::Result<()> {
        check_queue(queue_id)?;
        let key = self.key(queue_id);
        let mut s = self.shared.lock();
        s.loaded()?.xsk_map()?.set(key, fd, 0).map_err(|e| {
            err(format!(
                "registering the socket of {} queue {queue_id}: {e}",
                self.ifname
            ))
        })?;
        self.registered |= 1 << queue_id;
        Ok(())
    }

    /// Stops redirecting `queue_id`: its frames go to the kernel again.
    pub fn unregister_socket(&mut self, queue_id: u32) -> io::Result<()> {
        if queue_id >= MAX_QUEUES {
            return Ok(());
        }
        let key = self.key(queue_id);
        let mut s = self.shared.lock();
        unset_xsk_entry(s.loaded()?.xsk_map()?, "container_xsks", key)?;
        self.registered &= !(1 << queue_id);
        Ok(())
    }

    /// Detaches, clears this slot's entries and frees the slot; on a
    /// failure to clear, the slot stays taken so no later link inherits a
    /// socket of this one. Unarmed, it only closes the link's descriptor
    /// and frees the slot here: the entries are the other router's.
    fn release(&mut self) -> io::Result<()> {
        match self.link.take() {
            Some(LinkHold::Fd(fd)) => drop(fd),
            Some(LinkHold::Netlink(link)) => link
                .detach()
                .map_err(|e| err(format!("detaching XDP from {}: {e}", self.ifname)))?,
            None => {}
        }
        if self.armed {
            for q in 0..MAX_QUEUES {
                if self.registered & (1 << q) != 0 {
                    self.unregister_socket(q)?;
                }
            }
            let mut s = self.shared.lock();
            let mut slots = s.loaded()?.slots_map()?;
            // Another device may have this ifindex now and its own entry.
            if slots.get(&self.ifindex, 0).ok() == Some(self.slot) {
                match slots.remove(&self.ifindex) {
                    Ok(()) => {}
                    Err(aya::maps::MapError::SyscallError(e))
                        if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => {
                        return Err(err(format!(
                            "clearing the XDP slot of {}: {e}",
                            self.ifname
                        )))
                    }
                }
            }
        }
        let mut s = self.shared.lock();
        if let Some(u) = s.used.get_mut(self.slot as usize) {
            *u = false;
        }
        Ok(())
    }
}

impl Drop for ContainerLink {
    fn drop(&mut self) {
        match self.release() {
            Ok(()) => {
                tracing::debug!(ifname = %self.ifname, slot = self.slot, armed = self.armed, "container XDP link let go")
            }
            Err(e) => {
                tracing::warn!(ifname = %self.ifname, slot = self.slot, error = %e, "container XDP link: clean-up failed; its slot stays taken")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn addr_keys_match_the_programs_layout() {
        let v4 = addr_key(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(
            v4,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1]
        );
        let v6: Ipv6Addr = "::ffff:198.18.0.1".parse().unwrap();
        assert_eq!(addr_key(IpAddr::V6(v6)), v4);
    }

    #[test]
    fn object_is_embedded_and_is_bpf_elf() {
        // ELF, 64-bit, e_machine EM_BPF (247).
        assert_eq!(&OBJECT[..4], b"\x7fELF");
        assert_eq!(OBJECT[4], 2);
        assert_eq!(u16::from_le_bytes([OBJECT[18], OBJECT[19]]), 247);
    }

    #[test]
    fn attach_rejects_too_many_addresses_and_missing_devices() {
        let many = vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)); MAX_UNDERLAY_ADDRS + 1];
        let e = XdpProgram::attach("lo", &many, 4789).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = XdpProgram::attach("io-no-such-dev", &[], 4789).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = ContainerXdp::new().attach("io-no-such-dev").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
