//! Loader for vxrouter's own XDP program (`bpf/vxrouter_xdp.c`, compiled by
//! build.rs and embedded here).
//!
//! One [`XdpProgram`] per interface: it owns its own copy of the object's
//! maps (XSKMAP, VXLAN port, underlay addresses), attaches in native (driver)
//! mode when the driver allows it and in generic (SKB) mode otherwise, and
//! detaches on drop. Nothing is pinned, so the kernel also detaches the
//! program when the process dies; the redirect falls back to `XDP_PASS` for
//! a queue with no socket, so the host keeps its own traffic either way.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;

use aya::maps::{Array, HashMap, XskMap};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{Xdp, XdpMode as AyaXdpMode};
use aya::Ebpf;

/// The compiled BPF object (see build.rs).
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vxrouter_xdp.o"));

/// Which program of the object to attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpKind {
    /// The underlay NIC: only UDP to our VXLAN port on one of our underlay
    /// addresses goes to the socket; everything else (ARP, ND, ssh, ...) to
    /// the kernel.
    Uplink,
    /// The host end of a veth container port: every frame goes to the socket.
    Container,
}

impl XdpKind {
    fn program_name(self) -> &'static str {
        match self {
            XdpKind::Uplink => "uplink",
            XdpKind::Container => "container",
        }
    }
}

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

/// Largest queue index the XSKMAP holds (`MAX_QUEUES` in the C source).
pub const MAX_QUEUES: u32 = 64;

/// Underlay addresses the uplink program accepts (`MAX_UNDERLAY_ADDRS`).
pub const MAX_UNDERLAY_ADDRS: usize = 16;

/// Our XDP program attached to one interface. Detaches on drop.
///
/// The attachment is a bpf_link where the kernel has them (it does here), so
/// it can be dropped from any thread; on a kernel that needs the netlink
/// fallback, drop it in the network namespace it was attached in.
pub struct XdpProgram {
    // Field order matters for drop: `ebpf` owns the program and its link, and
    // dropping it detaches the program and frees the maps.
    ebpf: Ebpf,
    link: Option<XdpLinkId>,
    ifname: String,
    kind: XdpKind,
    mode: XdpMode,
}

impl fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpProgram")
            .field("ifname", &self.ifname)
            .field("kind", &self.kind)
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

impl XdpProgram {
    /// Loads a fresh copy of the object, fills its configuration maps, and
    /// attaches `kind` to `ifname` (in the calling thread's network
    /// namespace), native mode first, generic mode second.
    ///
    /// `underlay_addrs` and `udp_port` (host byte order) only matter for
    /// [`XdpKind::Uplink`]; a port of 0 redirects nothing.
    pub fn attach(
        ifname: &str,
        kind: XdpKind,
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
        super::sys::ifindex(ifname)?;
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| err(format!("loading XDP object: {e}")))?;

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

        let prog: &mut Xdp = ebpf
            .program_mut(kind.program_name())
            .ok_or_else(|| err(format!("XDP object has no program {}", kind.program_name())))?
            .try_into()
            .map_err(|e| err(format!("program {}: {e}", kind.program_name())))?;
        prog.load()
            .map_err(|e| err(format!("verifier rejected {}: {e}", kind.program_name())))?;

        let (mode, link) = match prog.attach(ifname, AyaXdpMode::Driver) {
            Ok(link) => (XdpMode::Driver, link),
            Err(native) => match prog.attach(ifname, AyaXdpMode::Skb) {
                Ok(link) => (XdpMode::Skb, link),
                Err(generic) => {
                    return Err(err(format!(
                        "attaching XDP to {ifname} refused: native: {native}; generic: {generic}"
                    )))
                }
            },
        };
        Ok(XdpProgram {
            ebpf,
            link: Some(link),
            ifname: ifname.to_string(),
            kind,
            mode,
        })
    }

    /// Where the kernel runs the program on this interface.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Which program is attached.
    pub fn kind(&self) -> XdpKind {
        self.kind
    }

    /// The interface the program is attached to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    fn xsks(&mut self) -> io::Result<XskMap<&mut aya::maps::MapData>> {
        let map = self
            .ebpf
            .map_mut("xsks")
            .ok_or_else(|| err("XDP object has no `xsks` map"))?;
        XskMap::try_from(map).map_err(|e| err(format!("xsks map: {e}")))
    }

    /// Sends frames arriving on `queue_id` (that the program selects) to the
    /// AF_XDP socket `fd`, which must be bound to this interface and queue.
    pub fn register_socket(&mut self, queue_id: u32, fd: RawFd) -> io::Result<()> {
        if queue_id >= MAX_QUEUES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("queue {queue_id} beyond the XSKMAP's {MAX_QUEUES} entries"),
            ));
        }
        self.xsks()?
            .set(queue_id, fd, 0)
            .map_err(|e| err(format!("registering socket for queue {queue_id}: {e}")))
    }

    /// Stops redirecting `queue_id`: its frames go to the kernel again.
    pub fn unregister_socket(&mut self, queue_id: u32) -> io::Result<()> {
        if queue_id >= MAX_QUEUES {
            return Ok(());
        }
        match self.xsks()?.unset(queue_id) {
            Ok(()) => Ok(()),
            // Deleting an empty slot reports ENOENT: already unregistered.
            Err(aya::maps::MapError::SyscallError(s))
                if s.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err(e) => Err(err(format!("unregistering queue {queue_id}: {e}"))),
        }
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        // Detach explicitly so a failure is logged; dropping `ebpf` would
        // also detach (aya unloads a program and its links on drop).
        let Some(link) = self.link.take() else { return };
        let name = self.kind.program_name();
        let res = match self.ebpf.program_mut(name).map(<&mut Xdp>::try_from) {
            Some(Ok(prog)) => prog.detach(link).map_err(|e| e.to_string()),
            Some(Err(e)) => Err(e.to_string()),
            None => Err(format!("program {name} vanished")),
        };
        match res {
            Ok(()) => tracing::info!(ifname = %self.ifname, program = name, "XDP program detached"),
            Err(e) => {
                tracing::warn!(ifname = %self.ifname, program = name, error = %e, "XDP detach failed")
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
        let e = XdpProgram::attach("lo", XdpKind::Uplink, &many, 4789).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = XdpProgram::attach("io-no-such-dev", XdpKind::Uplink, &[], 4789).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
