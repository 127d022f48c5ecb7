//! systemd's notify protocol (`Type=notify`), by hand: one datagram per
//! state change to the socket `$NOTIFY_SOCKET` names (a path, or an
//! abstract name written with a leading `@`), as sd_notify(3) describes.
//!
//! The router sends `READY=1` once every worker polls its ports,
//! `STOPPING=1` as it begins to stop, and `WATCHDOG=1` while every worker
//! makes progress, at half the interval `$WATCHDOG_USEC` asks for (only
//! when `$WATCHDOG_PID` is unset or names this process). Without
//! `$NOTIFY_SOCKET` nothing is sent. A send that fails is logged and
//! otherwise ignored: the socket is non-blocking, so a slow or gone
//! manager never stalls the control thread.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The manager `$NOTIFY_SOCKET` names, if any, with the watchdog
    /// interval `$WATCHDOG_USEC`/`$WATCHDOG_PID` ask for.
    pub fn from_env() -> io::Result<Option<Notifier>> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let addr = parse_addr(&path)?;
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        let var = |k| std::env::var(k).ok();
        let watchdog = watchdog_interval(
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        );
        Ok(Some(Notifier {
            sock,
            addr,
            watchdog,
        }))
    }

    /// How often to send `WATCHDOG=1`: half the manager's interval.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments); a failure
    /// is logged.
    pub fn send(&self, state: &str) {
        if let Err(e) = self.sock.send_to_addr(state.as_bytes(), &self.addr) {
            tracing::warn!(error = %e, state = state.lines().next().unwrap_or(""), "notifying systemd");
        }
    }
}

/// `$NOTIFY_SOCKET`'s address: an absolute path, or `@name` for the
/// abstract name `name`.
fn parse_addr(v: &OsStr) -> io::Result<SocketAddr> {
    let b = v.as_bytes();
    match b.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&b[1..]),
        Some(b'/') => SocketAddr::from_pathname(v),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "NOTIFY_SOCKET={}: neither an absolute path nor an @abstract name",
                v.to_string_lossy()
            ),
        )),
    }
}

/// The watchdog interval systemd asks of process `me`: `WATCHDOG_USEC`
/// microseconds, unless `WATCHDOG_PID` names another process (then the
/// watchdog is someone else's). Unset, zero or garbled: none.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(p) = pid {
        if p.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    let us: u64 = usec?.trim().parse().ok()?;
    (us > 0).then(|| Duration::from_micros(us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_follows_the_variables() {
        let s = Duration::from_secs(1);
        assert_eq!(watchdog_interval(Some("1000000"), None, 7), Some(s));
        assert_eq!(watchdog_interval(Some("1000000"), Some("7"), 7), Some(s));
        assert_eq!(watchdog_interval(Some("1000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        let a = parse_addr(OsStr::new("@vxr/notify")).unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"vxr/notify"[..]));
        let a = parse_addr(OsStr::new("/run/systemd/notify")).unwrap();
        assert_eq!(
            a.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        assert!(parse_addr(OsStr::new("relative")).is_err());
        assert!(parse_addr(OsStr::new("")).is_err());
    }

    #[test]
    fn sends_a_datagram_to_a_bound_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            sock: UnixDatagram::unbound().unwrap(),
            addr: parse_addr(path.as_os_str()).unwrap(),
            watchdog: Some(Duration::from_secs(4)),
        };
        assert_eq!(n.watchdog_every(), Some(Duration::from_secs(2)));
        n.send("READY=1");
        let mut buf = [0u8; 64];
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1");
    }
}
