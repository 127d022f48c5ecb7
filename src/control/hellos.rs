//! Liveness hellos on the control thread's socket, and their keys.
//!
//! The protocol and its state are sans-IO in [`crate::route::liveness`];
//! this is the socket and the key file.

use anyhow::{bail, Context, Result};

use crate::config;
use crate::route;
use crate::route::liveness::{HelloKeys, Liveness};

/// Takes every datagram waiting on the liveness socket. Returns whether a
/// neighbour went up or down.
pub(super) fn receive_hellos(l: &mut Liveness, sock: &std::net::UdpSocket, now: u64) -> bool {
    let mut changed = false;
    // One byte more than a hello may have: a longer datagram arrives cut
    // to this and is refused as malformed, not read as a shorter one.
    let mut buf = [0u8; route::liveness::MAX_HELLO + 1];
    // Bounded: a flood on the port must not hold the control thread; the
    // next pass takes the rest.
    for _ in 0..64 {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => match l.on_datagram(now, from.ip(), &buf[..n]) {
                Ok(c) => changed |= c,
                Err(e) => tracing::debug!(%from, reason = ?e, "liveness datagram ignored"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => {
                tracing::debug!(error = %e, "liveness receive");
                break;
            }
        }
    }
    changed
}

/// One hello to every neighbour. A refused send (no route to it, a full
/// buffer) is counted; the neighbour then goes down on its own.
pub(super) fn send_hellos(l: &mut Liveness, sock: &std::net::UdpSocket, now: u64) {
    let port = l.port();
    for (addr, bytes) in l.datagrams(now) {
        match sock.send_to(&bytes, std::net::SocketAddr::new(addr, port)) {
            Ok(_) => l.counts.sent += 1,
            Err(e) => {
                l.counts.send_errors += 1;
                tracing::debug!(%addr, error = %e, "liveness hello not sent");
            }
        }
    }
}

/// The hello keys of `cfg.key_file`, if it names one: a regular file that
/// group and others can neither read nor write, of at most 64 KiB, in the
/// format [`HelloKeys::parse`] reads. Errors name the file (and the line).
pub(super) fn load_hello_keys(cfg: &config::LivenessConfig) -> Result<Option<HelloKeys>> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = &cfg.key_file else {
        return Ok(None);
    };
    let f = std::fs::File::open(path)
        .with_context(|| format!("liveness key file {}", path.display()))?;
    // Checked on the open file, so that what is read is what was checked.
    let meta = f
        .metadata()
        .with_context(|| format!("liveness key file {}", path.display()))?;
    if !meta.is_file() {
        bail!("liveness key file {}: not a regular file", path.display());
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "liveness key file {}: mode {mode:03o} lets group or others at the keys (chmod 600 it)",
            path.display()
        );
    }
    // Sized once and wiped on drop: the file holds the keys in hex, and a
    // growing buffer would leave copies of them in freed memory.
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(64 * 1024 + 1));
    f.take(64 * 1024 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("liveness key file {}", path.display()))?;
    if bytes.len() > 64 * 1024 {
        bail!("liveness key file {}: over 64 KiB", path.display());
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        anyhow::anyhow!(
            "liveness key file {}:{line}: not UTF-8 text",
            path.display()
        )
    })?;
    let keys = HelloKeys::parse(text)
        .map_err(|e| anyhow::anyhow!("liveness key file {}:{e}", path.display()))?;
    tracing::info!(path = %path.display(), active = keys.active_id(), keys = ?keys.ids(), "liveness hello keys");
    Ok(Some(keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn cfg(path: &Path) -> config::LivenessConfig {
        config::LivenessConfig {
            interval_ms: 100,
            dead_after: 3,
            port: 4799,
            key_file: Some(path.to_owned()),
        }
    }

    #[test]
    fn hello_keys_come_from_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("liveness.key");
        let key = "000102030405060708090a0b0c0d0e0f";
        std::fs::write(&path, format!("1 {key}\n2 {key}{key} active\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_hello_keys(&cfg(&path)).unwrap_err().to_string();
        assert!(e.contains("mode 644 lets group or others"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let k = load_hello_keys(&cfg(&path)).unwrap().unwrap();
        assert_eq!((k.active_id(), k.ids()), (2, vec![1, 2]));
        // Errors name the file, the line and the column.
        std::fs::write(&path, format!("1 {key}\n2 {key}0\n")).unwrap();
        let e = load_hello_keys(&cfg(&path)).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("liveness key file {}:2:3: key 2", path.display())),
            "{e}"
        );
        std::fs::write(&path, b"1 \xff\n").unwrap();
        let e = load_hello_keys(&cfg(&path)).unwrap_err().to_string();
        assert!(e.ends_with(":1: not UTF-8 text"), "{e}");
        let e = format!("{:#}", load_hello_keys(&cfg(dir.path())).unwrap_err());
        assert!(e.contains("not a regular file"), "{e}");
        let e = format!(
            "{:#}",
            load_hello_keys(&cfg(&dir.path().join("none"))).unwrap_err()
        );
        assert!(e.contains("No such file"), "{e}");
        let off = config::LivenessConfig {
            key_file: None,
            ..cfg(&path)
        };
        assert!(load_hello_keys(&off).unwrap().is_none());
    }
}
