//! Which network devices a router made: the marker on every device of a
//! topology port, and what a start does with a device it finds under a
//! port's name (a router killed with SIGKILL leaves its devices behind).
//!
//! Layer: control-plane I/O. The marker, its parsing and the verdict on a
//! found device are pure ([`Marker`], [`judge`]) and tested below;
//! reading, writing and deleting devices go through netlink, in the
//! calling thread's namespace or, for the container's side, on a thread
//! inside the named namespace ([`super::sandbox::Netns`]).
//!
//! The marker is the device's interface alias (`IFLA_IFALIAS`, which
//! `ip link` shows as `alias`):
//! `vxrouter/1 host=H port=P netns=own|given pid=N start=T`.
//! The kernel keeps the alias with the device for as long as the device
//! lives, across a move to another namespace and a rename (a TUN port
//! becomes `eth0` in the container's namespace), and it goes with the
//! device: no record can outlive its device and make a later device of
//! the same name pass for ours, as a state file could. `netns=own` says
//! the router made the namespace too, so the router that takes the port
//! back removes the namespace at its own stop, as the killed one would
//! have. `pid` and `start` (the process's start time in clock ticks since
//! boot, `/proc/PID/stat`) tell whether the router that made the device
//! still runs: a pid reused by another process has another start time.
//!
//! Invariants:
//! - A device is removed here only when its alias is our marker for this
//!   host and this port and the process the marker names no longer runs
//!   (gone, or a zombie). A device without our marker, or with another
//!   host's or port's, is refused as [`HostError::DeviceExists`]; one
//!   whose router still runs as [`HostError::DeviceInUse`]. Nothing else
//!   is touched.
//! - Routers of one host share a PID namespace (systemd units and the
//!   tests do); a router in another PID namespace would look gone.
//! - A device is marked right after it is made, before anything else is
//!   done with it; a router killed in between leaves an unmarked device,
//!   which the next start refuses (the safe side).

use std::path::Path;
use std::sync::OnceLock;

use netlink_packet_route::{
    link::{LinkAttribute, LinkMessage},
    RouteNetlinkMessage,
};

use super::{check_ifname, link::get_link, nl::Rtnl, sandbox::Netns, HostError, Result};

/// First word of every marker; the number is the format's version.
const PREFIX: &str = "vxrouter/1";

/// Longest host name a marker holds (the topology's own limit).
const HOST_MAX: usize = 64;

/// Who made a device: the router process, for which host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The topology host the router runs as.
    pub host: String,
    /// The port's name.
    pub port: String,
    /// The router made the container's namespace as well.
    pub netns_own: bool,
    /// The router's process id.
    pub pid: u32,
    /// The router's start time (clock ticks since boot).
    pub start: u64,
}

impl Marker {
    /// The marker of this process for `port` of `host`.
    ///
    /// Errors: [`HostError::Invalid`] for a host name a marker cannot hold
    /// (empty, longer than 64 bytes, or with bytes other than printable
    /// ASCII without space) or a bad port name; [`HostError::Io`] when this
    /// process cannot read its own start time.
    pub fn this_process(host: &str, port: &str, netns_own: bool) -> Result<Marker> {
        check_host(host)?;
        check_ifname(port)?;
        let (pid, start) = self_identity()?;
        Ok(Marker {
            host: host.to_string(),
            port: port.to_string(),
            netns_own,
            pid,
            start,
        })
    }

    /// The alias text (at most about 160 bytes; the kernel takes 255).
    pub fn to_alias(&self) -> String {
        format!(
            "{PREFIX} host={} port={} netns={} pid={} start={}",
            self.host,
            self.port,
            if self.netns_own { "own" } else { "given" },
            self.pid,
            self.start
        )
    }

    /// Reads an alias; `None` for anything that is not exactly a marker
    /// of this format (an operator's alias, another format's version).
    pub fn parse(alias: &str) -> Option<Marker> {
        let mut words = alias.split(' ');
        if words.next()? != PREFIX {
            return None;
        }
        let mut field = |key: &str| -> Option<String> {
            let w = words.next()?;
            let v = w.strip_prefix(key)?.strip_prefix('=')?;
            Some(v.to_string())
        };
        let host = field("host")?;
        let port = field("port")?;
        let netns_own = match field("netns")?.as_str() {
            "own" => true,
            "given" => false,
            _ => return None,
        };
        let pid = field("pid")?.parse().ok()?;
        let start = field("start")?.parse().ok()?;
        if words.next().is_some() || check_host(&host).is_err() || check_ifname(&port).is_err() {
            return None;
        }
        Some(Marker {
            host,
            port,
            netns_own,
            pid,
            start,
        })
    }
}

fn check_host(host: &str) -> Result<()> {
    if (1..=HOST_MAX).contains(&host.len()) && host.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(HostError::Invalid(format!(
            "host name {host:?} cannot mark a device (1 to {HOST_MAX} printable ASCII bytes, no space)"
        )))
    }
}

/// What a device found under a port's name is to a starting router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No marker of ours for this host and port: never touched.
    NotOurs,
    /// Ours, and the router that made it still runs (pid given).
    Running(u32),
    /// Ours, left by a router that is gone: to be removed.
    Stale(Marker),
}

/// Judges a device by its alias: ours for `host` and `port`, and then
/// whether `runs(pid, start)` says its router still runs.
pub fn judge(
    alias: Option<&str>,
    host: &str,
    port: &str,
    runs: impl Fn(u32, u64) -> bool,
) -> Verdict {
    match alias.and_then(Marker::parse) {
        Some(m) if m.host == host && m.port == port => {
            if runs(m.pid, m.start) {
                Verdict::Running(m.pid)
            } else {
                Verdict::Stale(m)
            }
        }
        _ => Verdict::NotOurs,
    }
}

/// Whether process `pid` runs and started at `start`: present in
/// `/proc`, not a zombie, same start time.
pub fn process_runs(pid: u32, start: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            parse_stat(&stat).is_some_and(|(state, t)| t == start && state != 'Z' && state != 'X')
        }
        Err(_) => false,
    }
}

/// This process's pid and start time, read once.
fn self_identity() -> Result<(u32, u64)> {
    static SELF: OnceLock<Option<u64>> = OnceLock::new();
    let start = *SELF.get_or_init(|| {
        std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| parse_stat(&s))
            .map(|(_, t)| t)
    });
    match start {
        Some(t) => Ok((std::process::id(), t)),
        None => Err(HostError::Io {
            op: "read this process's start time from /proc/self/stat".into(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        }),
    }
}

/// The state (field 3) and start time (field 22) of a `/proc/PID/stat`
/// line. The command name (field 2) is in parentheses and may hold spaces
/// and parentheses itself, so fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4..=21 lie between the state and the start time.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn alias_of(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(s) => Some(s.as_str()),
        _ => None,
    })
}

/// Looks at device `ifname` in the calling thread's namespace: nothing
/// there is `Ok(None)`; a stale device of ours is removed and its marker
/// returned; anything else is refused. `what` names the device in errors
/// and the log (`c1`, `eth0 in netns NS`).
fn take_back_here(host: &str, port: &str, ifname: &str, what: &str) -> Result<Option<Marker>> {
    let mut rtnl = Rtnl::open()?;
    let link = match get_link(&mut rtnl, ifname, LinkMessage::default(), ifname) {
        Ok(l) => l,
        Err(HostError::NoSuchDevice(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    match judge(alias_of(&link), host, port, process_runs) {
        Verdict::NotOurs => Err(HostError::DeviceExists(what.to_string())),
        Verdict::Running(pid) => Err(HostError::DeviceInUse {
            device: what.to_string(),
            pid,
        }),
        Verdict::Stale(m) => {
            let mut del = LinkMessage::default();
            del.header.index = link.header.index;
            match rtnl.request(
                &format!("RTM_DELLINK {what}"),
                RouteNetlinkMessage::DelLink(del),
                0,
            ) {
                Ok(_) => {}
                // Gone in between (its veth peer went first): nothing left.
                Err(HostError::Netlink { errno, .. }) if errno == libc::ENODEV => {}
                Err(e) => return Err(e),
            }
            tracing::warn!(
                device = %what,
                port = %port,
                old_pid = m.pid,
                "removed a stale device a killed router left behind"
            );
            Ok(Some(m))
        }
    }
}

/// Makes way for `port` of `host` before its devices are made: the port's
/// name in the calling thread's namespace, then `container_ifname` in
/// namespace `netns_path` (if that file exists). A device there that a
/// killed router of this host made for this port is removed (one log line
/// each); any other device is refused (see the module's invariants).
/// Returns whether a removed device's marker says that router made the
/// namespace.
pub(super) fn take_back(
    host: &str,
    port: &str,
    netns_path: &Path,
    container_ifname: &str,
) -> Result<bool> {
    check_ifname(port)?;
    check_ifname(container_ifname)?;
    let mut netns_own = false;
    if let Some(m) = take_back_here(host, port, port, port)? {
        netns_own |= m.netns_own;
    }
    let ns = match Netns::open(netns_path) {
        Ok(ns) => ns,
        Err(HostError::NoSuchNetns(_)) => return Ok(netns_own),
        Err(e) => return Err(e),
    };
    let what = format!("{container_ifname} in netns {}", netns_name(netns_path));
    let inside = ns.run(|| take_back_here(host, port, container_ifname, &what))?;
    if let Some(m) = inside {
        netns_own |= m.netns_own;
    }
    Ok(netns_own)
}

/// Writes `marker` as the alias of device `ifname` in the calling
/// thread's namespace.
pub(super) fn mark_here(ifname: &str, marker: &Marker) -> Result<()> {
    check_ifname(ifname)?;
    let mut rtnl = Rtnl::open()?;
    set_alias(&mut rtnl, ifname, &marker.to_alias())
}

/// Writes `marker` as the alias of device `ifname` inside namespace
/// `netns_path`.
pub(super) fn mark_in(netns_path: &Path, ifname: &str, marker: &Marker) -> Result<()> {
    check_ifname(ifname)?;
    let ns = Netns::open(netns_path)?;
    let alias = marker.to_alias();
    ns.run(|| {
        let mut rtnl = Rtnl::open()?;
        set_alias(&mut rtnl, ifname, &alias)
    })
}

fn set_alias(rtnl: &mut Rtnl, ifname: &str, alias: &str) -> Result<()> {
    let link = get_link(rtnl, ifname, LinkMessage::default(), ifname)?;
    let mut m = LinkMessage::default();
    m.header.index = link.header.index;
    m.attributes.push(LinkAttribute::IfAlias(alias.to_string()));
    rtnl.request(
        &format!("RTM_SETLINK {ifname} alias"),
        RouteNetlinkMessage::SetLink(m),
        0,
    )?;
    Ok(())
}

/// The last part of a namespace path (`/run/netns/NAME` gives `NAME`).
fn netns_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker() -> Marker {
        Marker {
            host: "h1".into(),
            port: "c1".into(),
            netns_own: true,
            pid: 4242,
            start: 987_654,
        }
    }

    #[test]
    fn marker_round_trips() {
        let m = marker();
        let a = m.to_alias();
        assert_eq!(
            a,
            "vxrouter/1 host=h1 port=c1 netns=own pid=4242 start=987654"
        );
        assert_eq!(Marker::parse(&a), Some(m.clone()));
        let given = Marker {
            netns_own: false,
            ..m
        };
        assert_eq!(Marker::parse(&given.to_alias()), Some(given));
        let long = Marker {
            host: "h".repeat(HOST_MAX),
            port: "p".repeat(crate::host::IFNAME_MAX),
            pid: u32::MAX,
            start: u64::MAX,
            ..marker()
        };
        assert!(long.to_alias().len() < 255, "{}", long.to_alias().len());
        assert_eq!(Marker::parse(&long.to_alias()), Some(long));
    }

    #[test]
    fn anything_but_a_marker_is_no_marker() {
        for a in [
            "",
            "uplink to rack 3",
            "vxrouter",
            "vxrouter/2 host=h1 port=c1 netns=own pid=1 start=2",
            "vxrouter/1 host=h1 port=c1 netns=own pid=1",
            "vxrouter/1 host=h1 port=c1 netns=own pid=1 start=2 extra=3",
            "vxrouter/1 host=h1 port=c1 netns=maybe pid=1 start=2",
            "vxrouter/1 port=c1 host=h1 netns=own pid=1 start=2",
            "vxrouter/1 host=h1 port=c1 netns=own pid=-1 start=2",
            "vxrouter/1 host= port=c1 netns=own pid=1 start=2",
            "vxrouter/1 host=h1 port=a/b netns=own pid=1 start=2",
            "vxrouter/1 host=h1 port=c1  netns=own pid=1 start=2",
            "vxrouter/1 host=h1 port=c1 netns=own pid=1 start=2 ",
        ] {
            assert_eq!(Marker::parse(a), None, "{a:?}");
        }
    }

    #[test]
    fn only_our_marker_of_a_gone_router_is_stale() {
        let a = marker().to_alias();
        let gone = |_, _| false;
        let runs = |_, _| true;
        assert_eq!(judge(Some(&a), "h1", "c1", gone), Verdict::Stale(marker()));
        assert_eq!(judge(Some(&a), "h1", "c1", runs), Verdict::Running(4242));
        // Another host's or another port's device is not ours to remove.
        assert_eq!(judge(Some(&a), "h2", "c1", gone), Verdict::NotOurs);
        assert_eq!(judge(Some(&a), "h1", "c2", gone), Verdict::NotOurs);
        assert_eq!(judge(None, "h1", "c1", gone), Verdict::NotOurs);
        assert_eq!(judge(Some("my veth"), "h1", "c1", gone), Verdict::NotOurs);
        // The liveness check gets the marker's own pid and start time.
        let exact = |pid, start| pid == 4242 && start == 987_654;
        assert_eq!(judge(Some(&a), "h1", "c1", exact), Verdict::Running(4242));
    }

    #[test]
    fn stat_lines_are_read_after_the_command_name() {
        let line =
            "1234 (a b) c)) S 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 424242 23 24\n";
        assert_eq!(parse_stat(line), Some(('S', 424242)));
        assert_eq!(parse_stat("1 (x) Z 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn this_process_runs_and_a_changed_start_or_pid_does_not() {
        let m = Marker::this_process("h1", "c1", false).expect("own marker");
        assert_eq!(m.pid, std::process::id());
        assert!(process_runs(m.pid, m.start));
        assert!(!process_runs(m.pid, m.start.wrapping_add(1)));
        // Above the kernel's largest pid_max (2^22): no such process.
        assert!(!process_runs(0x7fff_fff0, m.start));
        assert!(Marker::this_process("", "c1", false).is_err());
        assert!(Marker::this_process("a b", "c1", false).is_err());
        assert!(Marker::this_process("h1", "a/b", false).is_err());
    }
}
