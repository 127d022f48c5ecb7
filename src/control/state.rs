//! The attached ports' records, so that a router that starts again (after
//! SIGTERM, a crash or an upgrade) takes back every port whose container
//! still runs, with no action from the container runtime.
//!
//! One JSON file per attached port, `<state dir>/<device name>.json`,
//! written atomically (a temporary file renamed) once the port forwards,
//! removed once it is detached. A record holds what the port was attached
//! with and what the router derived for it (index, MACs, gateways), so the
//! container keeps talking to the same gateway MAC across a restart.
//!
//! Records are input like any other: a file that does not parse, or whose
//! values do not check, is logged and left alone, never trusted.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::{MacAddr, PortConfig, PortKind, DEFAULT_NETWORK};

use super::ports::Attachment;

/// The record format version.
const VERSION: u32 = 1;

/// Largest record file read.
const MAX_RECORD: u64 = 64 * 1024;

/// One attached port as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Record {
    pub v: u32,
    /// The port's index when it was attached.
    pub index: u16,
    /// The router-side device name (veth host end) or the port's label (TUN).
    pub name: String,
    /// The overlay network the port joined; absent for the default one, so
    /// that a router without networks reads the record too.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    pub kind: PortKind,
    pub offload: bool,
    /// The container interface's MAC (veth).
    pub mac: Option<[u8; 6]>,
    /// The sources the port may use.
    pub sources: Vec<IpNet>,
    pub gateways: Vec<IpAddr>,
    pub attachment: Attachment,
}

impl Record {
    /// A record of the current version.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        index: u16,
        name: String,
        network: &str,
        kind: PortKind,
        offload: bool,
        mac: Option<[u8; 6]>,
        sources: Vec<IpNet>,
        gateways: Vec<IpAddr>,
        attachment: Attachment,
    ) -> Record {
        Record {
            v: VERSION,
            index,
            name,
            network: if network == DEFAULT_NETWORK {
                String::new()
            } else {
                network.to_owned()
            },
            kind,
            offload,
            mac,
            sources,
            gateways,
            attachment,
        }
    }
}

impl Record {
    /// The port as the tables see it: host addresses as its sources, the
    /// router's offloads on a TUN.
    pub(super) fn port_config(&self) -> PortConfig {
        PortConfig {
            name: self.name.clone(),
            kind: self.kind,
            netns: None,
            network: if self.network.is_empty() {
                DEFAULT_NETWORK.to_owned()
            } else {
                self.network.clone()
            },
            addresses: self.sources.clone(),
            mac: self.mac.map(MacAddr),
            gateways: self.gateways.clone(),
            mtu: None,
            offload: self.kind == PortKind::Tun || self.offload,
            queue_len: crate::config::DEFAULT_QUEUE_LEN,
        }
    }
}

/// The directory of one router's records.
pub(super) struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens (creating it mode 0700 if missing) the state directory `dir`.
    pub(super) fn open(dir: &Path) -> Result<StateDir> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the state directory {}", dir.display()))?;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("setting the mode of {}", dir.display()))?;
        Ok(StateDir {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Writes `r` (atomically).
    pub(super) fn save(&self, r: &Record) -> Result<()> {
        let path = self.path(&r.name);
        let tmp = self.dir.join(format!(".{}.tmp", r.name));
        let bytes = serde_json::to_vec_pretty(r).context("encoding a port record")?;
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Removes the directory if it holds no record: a router that stops
    /// with no attached port leaves nothing behind.
    pub(super) fn remove_if_empty(&self) {
        let _ = std::fs::remove_dir(&self.dir);
    }

    /// Removes the record of port `name`, if any.
    pub(super) fn remove(&self, name: &str) {
        match std::fs::remove_file(self.path(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(port = name, error = %e, "removing a port record"),
        }
    }

    /// Every record that reads and checks, sorted by index; the others are
    /// logged and left in place.
    pub(super) fn load(&self) -> Vec<Record> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            let is_record = path.extension().is_some_and(|x| x == "json")
                && !path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if !is_record {
                continue;
            }
            match read_record(&path) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(path = %path.display(), "ignoring a port record: {e:#}"),
            }
        }
        out.sort_by_key(|r| r.index);
        out
    }
}

fn read_record(path: &Path) -> Result<Record> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    if !f.metadata()?.is_file() {
        anyhow::bail!("not a regular file");
    }
    let mut bytes = Vec::new();
    f.take(MAX_RECORD + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RECORD {
        anyhow::bail!("over {MAX_RECORD} bytes");
    }
    let r: Record = serde_json::from_slice(&bytes)?;
    if r.v != VERSION {
        anyhow::bail!("record version {}, this router reads {VERSION}", r.v);
    }
    crate::api::check_id(&r.attachment.id).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::config::check_ifname(&r.name).map_err(|e| anyhow::anyhow!("name: {e}"))?;
    crate::config::check_ifname(&r.attachment.ifname)
        .map_err(|e| anyhow::anyhow!("ifname: {e}"))?;
    if path.file_stem().is_none_or(|s| s != r.name.as_str()) {
        anyhow::bail!("its file name does not match its port name {}", r.name);
    }
    if !r.network.is_empty() {
        crate::config::check_network_name(&r.network)
            .map_err(|e| anyhow::anyhow!("network: {e}"))?;
    }
    if r.index == 0 || usize::from(r.index) > crate::config::MAX_PORTS {
        anyhow::bail!("index {} out of range", r.index);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, index: u16) -> Record {
        Record::new(
            index,
            name.into(),
            DEFAULT_NETWORK,
            PortKind::Veth,
            false,
            Some([2, 0x43, 0, 0, 1, 3]),
            vec!["198.19.1.5/32".parse().unwrap()],
            vec!["198.19.1.1".parse().unwrap()],
            Attachment {
                id: "n/c/eth0".into(),
                netns: "/var/run/netns/x".into(),
                ifname: "eth0".into(),
                addresses: vec!["198.19.1.5/24".parse().unwrap()],
            },
        )
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(&dir.path().join("st")).unwrap();
        s.save(&record("vx000000000002", 4)).unwrap();
        s.save(&record("vx000000000001", 2)).unwrap();
        let st = dir.path().join("st");
        std::fs::write(st.join("garbage.json"), b"{").unwrap();
        std::fs::write(
            st.join("vx00000000000f.json"),
            serde_json::to_vec(&record("other", 3)).unwrap(),
        )
        .unwrap();
        let mut big = record("vx0000000000aa", 5);
        big.index = 999;
        std::fs::write(
            st.join("vx0000000000aa.json"),
            serde_json::to_vec(&big).unwrap(),
        )
        .unwrap();
        std::fs::write(st.join("notes.txt"), b"x").unwrap();
        let got = s.load();
        assert_eq!(
            got,
            vec![record("vx000000000001", 2), record("vx000000000002", 4)]
        );
        s.remove("vx000000000001");
        s.remove("vx000000000001");
        assert_eq!(s.load().len(), 1);
        let mode = std::fs::metadata(&st).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
