//! Host plumbing for the control thread of `vxrouter run` (Linux only).
//!
//! Layer: the control-plane I/O corner. Nothing here touches packets; the
//! data plane's sockets live under `port/`. This module answers the control
//! thread's questions about the host it runs on and builds the container
//! attachments a CNI plugin would build:
//! - [`link`]: what a network device looks like (index, MAC, MTU, queues).
//! - [`neigh`]: the kernel's neighbour table as a map the control thread can
//!   read, kept current from netlink events, plus route lookups (which
//!   address to resolve for a peer behind an underlay router) and a way to
//!   make the kernel start resolving a missing neighbour.
//! - [`netns`]: veth and TUN container ports in network namespaces, removed
//!   again when their [`netns::CreatedDevice`] is dropped.
//! - [`owner`]: the marker (interface alias) on each device [`netns`]
//!   makes, by which a later start knows and removes what a killed router
//!   left behind.
//! - [`sandbox`]: a container's interface in a namespace given by path
//!   (CNI), built and removed over rtnetlink in a few milliseconds; the
//!   interface belongs to the container and outlives the router.
//!
//! Invariants: every query works in the network namespace of the calling
//! thread (except [`sandbox`], which works inside the namespace it is given
//! from a thread of its own and never moves the calling thread); nothing
//! here changes the host's own interfaces, routes or sysctls
//! (the only devices created in the router's namespace are the ones
//! [`netns`] creates and removes again, and the host ends of [`sandbox`]
//! veths; the only ones removed besides are those [`owner`] finds marked
//! as a killed router's own); no function panics on kernel input.
//! All netlink traffic is blocking request/response except the neighbour
//! event socket, which is non-blocking for a poll loop.

pub mod link;
pub mod neigh;
pub mod netns;
mod nl;
pub mod owner;
pub mod sandbox;

use std::io;

/// Why a host operation failed; each variant names the operation so a log
/// line says what was being attempted.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a netlink request.
    #[error("{op}: kernel refused: {}", io::Error::from_raw_os_error(*errno))]
    Netlink {
        /// What was being requested.
        op: String,
        /// The positive errno the kernel answered with.
        errno: i32,
    },
    /// The kernel's answer could not be decoded.
    #[error("{op}: cannot decode the kernel's answer: {detail}")]
    Decode {
        /// What was being requested.
        op: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// No network namespace at the path given (the file is missing: the
    /// container is gone, or the path is wrong).
    #[error("no network namespace at {0:?}")]
    NoSuchNetns(String),
    /// The named network device does not exist in this namespace.
    #[error("no network device named {0:?} in this network namespace")]
    NoSuchDevice(String),
    /// A device we were asked to create already exists; we never adopt (and
    /// later delete) a device someone else made.
    #[error("network device {0:?} already exists")]
    DeviceExists(String),
    /// A device we were asked to create exists and belongs to a router
    /// process that still runs ([`owner`]).
    #[error("network device {device:?} belongs to a router that still runs (pid {pid}): stop it first, or replace it with `vxrouter run --takeover`")]
    DeviceInUse {
        /// The device, as found.
        device: String,
        /// The running router's process id.
        pid: u32,
    },
    /// An external command (`ip`, `sysctl`) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, for the log.
        command: String,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr, trimmed.
        stderr: String,
    },
    /// An argument cannot be used (bad device or namespace name, ...).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl HostError {
    /// The errno behind this error, when there is one (for callers that treat
    /// `EPERM`, `ENODEV` and the like specially).
    pub fn errno(&self) -> Option<i32> {
        match self {
            HostError::Io { source, .. } => source.raw_os_error(),
            HostError::Netlink { errno, .. } => Some(*errno),
            HostError::NoSuchNetns(_) => Some(libc::ENOENT),
            HostError::NoSuchDevice(_) => Some(libc::ENODEV),
            HostError::DeviceExists(_) => Some(libc::EEXIST),
            HostError::DeviceInUse { .. } => Some(libc::EBUSY),
            _ => None,
        }
    }
}

/// Result of a host operation.
pub type Result<T> = std::result::Result<T, HostError>;

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Checks that `name` can be a Linux interface name: 1..=15 bytes, no `/`,
/// no whitespace, not `.`/`..`, and not starting with `-` (so it can never be
/// read as an option by `ip`).
pub fn check_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(HostError::Invalid(format!(
            "{name:?} is not a usable interface name (1..=15 printable bytes, no '/', ':' or leading '-')"
        )))
    }
}
