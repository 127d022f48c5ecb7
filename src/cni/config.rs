//! The network configuration on stdin: the spec's keys (through
//! `rscni-types`) and ours.
//!
//! Layer: sans-IO. Checks run in the order that gives each fault its own
//! code: not JSON (6), then the version (1, or 6 when malformed), then the
//! shape and our fields (7). The whole object is kept as received
//! ([`NetworkConfig::raw`]): delegated plugins get it back, as the spec
//! requires.
//!
//! Our keys:
//! - `socket` (string): the router's control socket, an absolute path; or
//! - `host` (string): the router's host name; the socket is then
//!   `/run/vxrouter/<host>.sock`, the router's default. One of the two is
//!   required, not both.
//! - `network` (string, default `default`): the vxrouter network (its VNI
//!   and address space) the containers join; not the CNI `name`, which
//!   only names this configuration.
//! - `kind` (`"veth"` or `"tun"`, default veth): the container interface.
//! - `offload` (bool, default false): veth only, serve the port with
//!   virtio-net header offloads.
//! - `ipam` (optional): absent, or `host-local` without `ranges`/`subnet`,
//!   means host-local with one range set per address family, its ranges the
//!   router's subnets in the network (each with the router's gateway, so it is never handed
//!   out); its other keys (`dataDir`, `resolvConf`) are kept. Any other
//!   `ipam` is run as given.
//! - `dns` (optional): reported in the result; else the IPAM plugin's.

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use rscni_types::types::{Cmd, NetConf};
use rscni_types::version::SpecVersion;
use serde_json::{Map, Value};

use super::error::CniError;
use crate::config::PortKind;

/// The versions this plugin speaks, oldest first.
pub const SUPPORTED: [SpecVersion; 2] = [SpecVersion::new(1, 0, 0), SpecVersion::new(1, 1, 0)];

/// The newest version this plugin speaks, reported by VERSION.
pub const CURRENT: SpecVersion = SpecVersion::new(1, 1, 0);

/// Where routers put their sockets (`vxrouter run --socket` default).
pub const SOCKET_DIR: &str = "/run/vxrouter";

/// The IPAM plugin that fills its ranges from the router's subnets.
pub const HOST_LOCAL: &str = "host-local";

/// Largest network configuration read from stdin: a config with a
/// prevResult of many interfaces is a few KiB.
pub const MAX_STDIN: usize = 1 << 20;

/// A parsed, checked network configuration.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The declared `cniVersion`, one of [`SUPPORTED`].
    pub version: SpecVersion,
    /// The spec's keys.
    pub conf: NetConf,
    /// The object as received, for delegated plugins.
    pub raw: Map<String, Value>,
    /// The router's control socket.
    pub socket: PathBuf,
    /// The vxrouter network the containers join.
    pub network: String,
    /// Container interface kind.
    pub kind: PortKind,
    /// veth with virtio-net header offloads.
    pub offload: bool,
    /// Where addresses come from.
    pub ipam: IpamPlan,
}

/// Where a container's addresses come from.
#[derive(Debug, Clone, PartialEq)]
pub enum IpamPlan {
    /// The plugin `ipam.type` names, run with the configuration as given.
    Delegate(String),
    /// host-local with ranges from the router's subnets; the map is the
    /// `ipam` object to complete (`type` and the user's other keys).
    HostLocal(Map<String, Value>),
}

impl IpamPlan {
    /// The IPAM plugin's executable name.
    pub fn plugin(&self) -> &str {
        match self {
            IpamPlan::Delegate(p) => p,
            IpamPlan::HostLocal(_) => HOST_LOCAL,
        }
    }
}

impl NetworkConfig {
    /// The network name.
    pub fn name(&self) -> &str {
        &self.conf.name
    }
}

/// The version to report errors under: the declared one when this plugin
/// speaks it, else [`CURRENT`].
pub fn declared_version(stdin: &[u8]) -> SpecVersion {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str()?.parse::<SpecVersion>().ok())
        .filter(|v| SUPPORTED.contains(v))
        .unwrap_or(CURRENT)
}

/// Parses the configuration for `cmd`.
pub fn parse(stdin: &[u8], cmd: Cmd) -> Result<NetworkConfig, CniError> {
    let value: Value = serde_json::from_slice(stdin)
        .map_err(|e| CniError::decode(format!("network config is not JSON: {e}")))?;
    let Value::Object(raw) = value else {
        return Err(CniError::decode("network config is not a JSON object"));
    };
    let version = match raw.get("cniVersion") {
        None | Some(Value::Null) => {
            return Err(CniError::version(format!(
                "config has no cniVersion; this plugin supports {}",
                supported_list()
            )))
        }
        Some(Value::String(s)) => s.parse::<SpecVersion>().map_err(CniError::from)?,
        Some(other) => {
            return Err(CniError::decode(format!(
                "cniVersion: a string, got {other}"
            )))
        }
    };
    if !SUPPORTED.contains(&version) {
        return Err(CniError::version(format!(
            "config is \"{version}\", plugin supports {}",
            supported_list()
        )));
    }
    version.allows(cmd).map_err(CniError::from)?;
    let conf: NetConf = serde_json::from_value(Value::Object(raw.clone()))
        .map_err(|e| CniError::config(e.to_string()))?;
    conf.validate_name().map_err(CniError::from)?;
    let socket = socket(&raw)?;
    let kind = match raw.get("kind") {
        None | Some(Value::Null) => PortKind::Veth,
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| CniError::config(format!("kind: {v} is not one of \"veth\", \"tun\"")))?,
    };
    let offload = match raw.get("offload") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(CniError::config(format!("offload: a boolean, got {v}"))),
    };
    if offload && kind == PortKind::Tun {
        return Err(CniError::config(
            "offload: a veth setting (TUN ports always take offloads)",
        ));
    }
    let network = match raw.get("network") {
        None | Some(Value::Null) => crate::config::DEFAULT_NETWORK.to_owned(),
        Some(Value::String(n)) => {
            crate::config::check_network_name(n)
                .map_err(|e| CniError::config(format!("network: {e}")))?;
            n.clone()
        }
        Some(v) => return Err(CniError::config(format!("network: a string, got {v}"))),
    };
    let ipam = ipam_plan(raw.get("ipam"))?;
    Ok(NetworkConfig {
        version,
        conf,
        raw,
        socket,
        network,
        kind,
        offload,
        ipam,
    })
}

fn supported_list() -> String {
    let v: Vec<String> = SUPPORTED.iter().map(|v| format!("\"{v}\"")).collect();
    format!("[{}]", v.join(", "))
}

/// `socket`, or `host` turned into the router's default socket path.
fn socket(raw: &Map<String, Value>) -> Result<PathBuf, CniError> {
    let text = |key: &str| -> Result<Option<&str>, CniError> {
        match raw.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(CniError::config(format!("{key}: a string, got {v}"))),
        }
    };
    match (text("socket")?, text("host")?) {
        (Some(_), Some(_)) => Err(CniError::config(
            "give one of socket and host: host names the socket /run/vxrouter/<host>.sock",
        )),
        (None, None) => Err(CniError::config(
            "socket: required (the router's control socket), or host (then /run/vxrouter/<host>.sock)",
        )),
        (Some(s), None) => {
            let p = Path::new(s);
            if !p.is_absolute() || s.chars().any(char::is_control) {
                return Err(CniError::config(format!(
                    "socket: {s:?} is not an absolute path"
                )));
            }
            Ok(p.to_path_buf())
        }
        (None, Some(h)) => {
            let ok = h.len() <= 64
                && h.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return Err(CniError::config(format!(
                    "host: {h:?} is not a host name (letters, digits, '-', '_', '.', at most 64)"
                )));
            }
            Ok(Path::new(SOCKET_DIR).join(format!("{h}.sock")))
        }
    }
}

fn ipam_plan(ipam: Option<&Value>) -> Result<IpamPlan, CniError> {
    let obj = match ipam {
        None | Some(Value::Null) => {
            let mut m = Map::new();
            m.insert("type".into(), HOST_LOCAL.into());
            return Ok(IpamPlan::HostLocal(m));
        }
        Some(Value::Object(o)) => o,
        Some(v) => return Err(CniError::config(format!("ipam: an object, got {v}"))),
    };
    let plugin = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        _ => return Err(CniError::config("ipam.type: required, a string")),
    };
    if plugin.is_empty() || plugin == "." || plugin == ".." || plugin.contains(['/', '\0']) {
        return Err(CniError::config(format!(
            "ipam.type: {plugin:?} is not a plugin name"
        )));
    }
    let has_ranges = ["ranges", "subnet"]
        .iter()
        .any(|k| obj.get(*k).is_some_and(|v| !v.is_null()));
    if plugin == HOST_LOCAL && !has_ranges {
        Ok(IpamPlan::HostLocal(obj.clone()))
    } else {
        Ok(IpamPlan::Delegate(plugin.to_string()))
    }
}

/// host-local's `ranges` for the router's subnets: one range set per
/// address family (host-local takes one address from each set), each
/// subnet a range in it with the router's gateway in that subnet, which
/// host-local then never hands out.
pub fn host_local_ranges(subnets: &[IpNet], gateways: &[std::net::IpAddr]) -> Value {
    host_local_ranges_excluding(subnets, gateways, &[])
}

/// [`host_local_ranges`] that never hands out an address of `reserved`
/// (the router's ports hold them): a subnet holding some is cut into
/// ranges (`rangeStart`..`rangeEnd`) around them; host-local allocates
/// from any range of a set.
pub fn host_local_ranges_excluding(
    subnets: &[IpNet],
    gateways: &[std::net::IpAddr],
    reserved: &[std::net::IpAddr],
) -> Value {
    let ranges = |s: &IpNet| -> Vec<Value> {
        let mut base = Map::new();
        base.insert("subnet".into(), s.trunc().to_string().into());
        if let Some(g) = gateways.iter().find(|g| s.contains(*g)) {
            base.insert("gateway".into(), g.to_string().into());
        }
        let pieces = free_pieces(s, reserved);
        if pieces.is_empty() {
            return vec![Value::Object(base)];
        }
        pieces
            .into_iter()
            .map(|(a, b)| {
                let mut r = base.clone();
                r.insert("rangeStart".into(), a.to_string().into());
                r.insert("rangeEnd".into(), b.to_string().into());
                Value::Object(r)
            })
            .collect()
    };
    let v4: Vec<Value> = subnets
        .iter()
        .filter(|s| matches!(s, IpNet::V4(_)))
        .flat_map(ranges)
        .collect();
    let v6: Vec<Value> = subnets
        .iter()
        .filter(|s| matches!(s, IpNet::V6(_)))
        .flat_map(ranges)
        .collect();
    Value::Array(
        [v4, v6]
            .into_iter()
            .filter(|set| !set.is_empty())
            .map(Value::Array)
            .collect(),
    )
}

/// The allocatable stretches of `s` (host-local's: from the address after
/// the network address to the one before the broadcast address, or the
/// last one over IPv6) around the `reserved` addresses inside it. Empty
/// when none of `reserved` lies inside (the whole subnet is one range),
/// or for a /31, /32, /127 or /128 (left to host-local as they are).
fn free_pieces(
    s: &IpNet,
    reserved: &[std::net::IpAddr],
) -> Vec<(std::net::IpAddr, std::net::IpAddr)> {
    use std::net::IpAddr;
    let (bits, net) = match s.trunc() {
        IpNet::V4(n) => (32u32, u128::from(u32::from(n.network()))),
        IpNet::V6(n) => (128u32, u128::from(n.network())),
    };
    let host_bits = bits - u32::from(s.prefix_len());
    if host_bits < 2 {
        return Vec::new();
    }
    let size: u128 = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    let first = net + 1;
    let last = if bits == 32 {
        net + size - 1
    } else {
        net + size
    };
    let to_addr = |v: u128| -> IpAddr {
        if bits == 32 {
            IpAddr::V4(std::net::Ipv4Addr::from(v as u32))
        } else {
            IpAddr::V6(std::net::Ipv6Addr::from(v))
        }
    };
    let mut held: Vec<u128> = reserved
        .iter()
        .filter(|a| s.contains(*a))
        .map(|a| match a {
            IpAddr::V4(v) => u128::from(u32::from(*v)),
            IpAddr::V6(v) => u128::from(*v),
        })
        .filter(|v| (first..=last).contains(v))
        .collect();
    if held.is_empty() {
        return Vec::new();
    }
    held.sort_unstable();
    held.dedup();
    let mut out = Vec::new();
    let mut cur = first;
    for h in held {
        if h > cur {
            out.push((to_addr(cur), to_addr(h - 1)));
        }
        cur = h + 1;
    }
    if cur <= last {
        out.push((to_addr(cur), to_addr(last)));
    }
    out
}
