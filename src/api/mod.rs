//! The control socket's protocol: what `vxrouter run` answers on its Unix
//! socket, and what `vxrouter ports`, `vxrouter status` and the
//! `vxrouter-cni` plugin ask it.
//!
//! Layer: sans-IO types and codec. The server ([`crate::control`]) and the
//! blocking client ([`client`]) do the I/O.
//!
//! Framing: newline-delimited JSON over a Unix stream socket. A client sends
//! one request per line and reads one reply line per request, in order; a
//! connection may carry several requests. Every request and reply carries
//! `"v": 1` ([`VERSION`]); a request with another version gets an
//! `unsupported_version` error naming the versions this server speaks.
//!
//! ```text
//! → {"v":1,"op":"status"}
//! ← {"v":1,"ok":true,"status":{"host":"h1","subnets":["198.19.1.0/24"],...}}
//! → {"v":1,"op":"attach","id":"c0ffee/eth0","netns":"/proc/42/ns/net","ifname":"eth0","addresses":["198.19.1.5/24"]}
//! ← {"v":1,"ok":true,"port":{"id":"c0ffee/eth0","name":"vxa1b2c3d4e5f6",...}}
//! → {"v":1,"op":"bogus"}
//! ← {"v":1,"ok":false,"error":{"code":"bad_request","message":"unknown variant `bogus`, ..."}}
//! ```
//!
//! Invariants: [`decode_request`] never panics and bounds what it reads to
//! [`MAX_REQUEST`] bytes; every value a request names (attachment id,
//! interface name, namespace path, addresses) is checked here, before any
//! handler sees it, so the router's handlers take only well-formed
//! requests.

#[cfg(target_os = "linux")]
pub mod client;

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::PortKind;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// Largest request line, newline included. A longer line gets a
/// `too_large` error and the connection is closed.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Longest attachment id, in bytes.
pub const MAX_ID: usize = 256;

/// Longest namespace path, in bytes (`PATH_MAX` is 4096; real ones are
/// `/proc/PID/ns/net` or `/var/run/netns/NAME`).
pub const MAX_NETNS_PATH: usize = 1024;

/// Most addresses one attachment may take.
pub const MAX_ADDRESSES: usize = 16;

/// A request, as the `op` field names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The router's identity and readiness: [`Body::Status`]. (Empty
    /// braces rather than a unit variant: serde refuses unknown fields
    /// only in struct variants.)
    Status {},
    /// Every port, from the topology and attached, with its counters:
    /// [`Body::Ports`].
    Ports {},
    /// Create a container interface and attach it as a port: [`Body::Port`].
    Attach(Attach),
    /// Detach and remove an attached port. Idempotent: an unknown id is
    /// success with `found: false` ([`Body::Detached`]).
    Detach {
        /// The attachment id given to [`Request::Attach`].
        id: String,
    },
    /// Verify an attachment: its port is attached and its container
    /// interface exists with its addresses ([`Body::Port`], or `not_found`
    /// / `mismatch`).
    Check {
        /// The attachment id given to [`Request::Attach`].
        id: String,
    },
    /// Detach every attached port whose id starts with `prefix` and is not
    /// in `keep`: [`Body::Collected`]. The prefix scopes a collection to
    /// one caller's attachments (CNI: one network's, `NETWORK/`).
    Gc {
        /// Only ids starting with this are candidates; may be empty.
        prefix: String,
        /// Attachment ids still in use.
        keep: Vec<String>,
    },
}

/// What [`Request::Attach`] asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attach {
    /// The caller's key for this attachment, unique per router; the CNI
    /// plugin uses `NETWORK/CONTAINER_ID/IFNAME`. Printable ASCII without spaces, 1..=[`MAX_ID`] bytes.
    pub id: String,
    /// Path of the container's network namespace (`CNI_NETNS`).
    pub netns: PathBuf,
    /// Interface name inside the namespace (`CNI_IFNAME`).
    pub ifname: String,
    /// veth (default) or TUN.
    #[serde(default = "default_kind")]
    pub kind: PortKind,
    /// The container's addresses with their prefix length; each lies in
    /// one of the host's subnets. The port's anti-spoofing set.
    pub addresses: Vec<IpNet>,
    /// veth only: serve the port through AF_PACKET with virtio-net header
    /// offloads instead of AF_XDP (see `offload` in docs/configuration.md).
    #[serde(default)]
    pub offload: bool,
    /// The overlay network the port joins, by name; absent: the default
    /// network. The addresses lie in this host's subnets of that network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

fn default_kind() -> PortKind {
    PortKind::Veth
}

fn default_network() -> String {
    crate::config::DEFAULT_NETWORK.to_owned()
}

/// One reply line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Always [`VERSION`].
    pub v: u32,
    /// False exactly when the body is [`Body::Error`].
    pub ok: bool,
    /// The answer.
    #[serde(flatten)]
    pub body: Body,
}

impl Reply {
    /// A reply carrying `body`.
    pub fn new(body: Body) -> Reply {
        Reply {
            v: VERSION,
            ok: !matches!(body, Body::Error(_)),
            body,
        }
    }

    /// An error reply.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply::new(Body::Error(ApiError {
            code,
            message: message.into(),
        }))
    }
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// To [`Request::Status`].
    Status(Status),
    /// To [`Request::Ports`].
    Ports(Vec<PortInfo>),
    /// To [`Request::Attach`] and [`Request::Check`].
    Port(PortInfo),
    /// To [`Request::Detach`].
    Detached {
        /// Whether the id was attached.
        found: bool,
    },
    /// To [`Request::Gc`]: the ids detached.
    Collected(Vec<String>),
    /// A refused or failed request.
    Error(ApiError),
}

/// The router's identity and readiness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `vxrouter`'s version (Cargo package version).
    pub version: String,
    /// Protocol versions this server speaks.
    pub api: Vec<u32>,
    /// This host's name in the topology.
    pub host: String,
    /// Container prefixes this host owns in the default network: attach
    /// addresses come from here.
    pub subnets: Vec<IpNet>,
    /// The gateway a container uses per family: the first host address of
    /// each subnet (the router answers ARP/ND for it).
    pub gateways: Vec<IpAddr>,
    /// Container-side MTU of the default network.
    pub mtu: u16,
    /// VXLAN network identifier of the default network.
    pub vni: u32,
    /// Every network, the default one first, with this host's subnets,
    /// gateways and MTU in it.
    #[serde(default)]
    pub networks: Vec<NetworkStatus>,
    /// VXLAN UDP port.
    pub udp_port: u16,
    /// True once the workers forward with published tables.
    pub ready: bool,
    /// Ports in use, topology and attached.
    pub ports: usize,
    /// Most ports this router can hold.
    pub max_ports: usize,
}

/// One overlay network as this host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// The network's name (`default` for the one `[overlay]` describes).
    pub name: String,
    /// Its VXLAN network identifier.
    pub vni: u32,
    /// This host's prefixes in it.
    pub subnets: Vec<IpNet>,
    /// The gateway per family: the first host address of the first subnet
    /// of that family.
    pub gateways: Vec<IpAddr>,
    /// Its container-side MTU on this host.
    pub mtu: u16,
    /// Addresses this host's ports in it hold (topology and attached): an
    /// allocator hands them to no new container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved: Vec<IpAddr>,
}

impl Status {
    /// The network called `name`, if the router has it.
    pub fn network(&self, name: &str) -> Option<&NetworkStatus> {
        self.networks.iter().find(|n| n.name == name)
    }
}

/// One port as `ports`, `attach` and `check` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// The attachment id; `None` for a port from the topology file.
    pub id: Option<String>,
    /// The router-side device name (the host end of a veth, or the TUN).
    pub name: String,
    /// veth or TUN.
    pub kind: PortKind,
    /// The overlay network the port belongs to.
    #[serde(default = "default_network")]
    pub network: String,
    /// The container's namespace (a path for attached ports, a name for
    /// topology ports), if any.
    pub netns: Option<String>,
    /// The interface name inside the namespace.
    pub ifname: Option<String>,
    /// The container interface's MAC (veth).
    pub mac: Option<String>,
    /// The port's addresses (anti-spoofing set).
    pub addresses: Vec<IpNet>,
    /// The container's default gateways, one per family.
    pub gateways: Vec<IpAddr>,
    /// The container interface's MTU.
    pub mtu: u16,
    /// Packets and bytes through the port since it was attached.
    pub counters: PortCounters,
}

/// Per-port counters: from the container's point of view, `rx` is what the
/// router received from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounters {
    /// Packets the router read from the port.
    pub rx_packets: u64,
    /// Bytes the router read from the port.
    pub rx_bytes: u64,
    /// Packets the router wrote to the port.
    pub tx_packets: u64,
    /// Bytes the router wrote to the port.
    pub tx_bytes: u64,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// Machine-readable class.
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
}

/// Error classes. Clients map them (the CNI plugin to CNI error codes);
/// `retry` means the same request may succeed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, an unknown `op`, a missing or unknown field.
    BadRequest,
    /// `v` is not a version this server speaks.
    UnsupportedVersion,
    /// The request line is longer than [`MAX_REQUEST`].
    TooLarge,
    /// A well-formed request naming a value the router refuses: an address
    /// outside the host's subnets or held by another port, a bad interface
    /// name, a namespace that does not exist.
    Invalid,
    /// The attachment id is already attached with other parameters.
    Exists,
    /// No attachment with that id.
    NotFound,
    /// The attachment exists but its interface or addresses differ.
    Mismatch,
    /// The router holds [`Status::max_ports`] ports already.
    Full,
    /// The router is starting or stopping: retry.
    NotReady,
    /// The kernel refused an operation (creating a device, an address).
    Internal,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The serde name, so messages and the wire agree.
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// Decodes one request line (without its newline). Checks the version
/// first, so a future client gets `unsupported_version` rather than a
/// complaint about fields it added, then the fields, then each value.
pub fn decode_request(line: &[u8]) -> Result<Request, ApiError> {
    if line.len() >= MAX_REQUEST {
        return Err(err(
            ErrorCode::TooLarge,
            format!("a request is at most {MAX_REQUEST} bytes"),
        ));
    }
    let mut value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| err(ErrorCode::BadRequest, format!("not JSON: {e}")))?;
    let Some(obj) = value.as_object_mut() else {
        return Err(err(ErrorCode::BadRequest, "a request is a JSON object"));
    };
    match obj.remove("v") {
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(VERSION as u64) => {}
        Some(v) => {
            return Err(err(
                ErrorCode::UnsupportedVersion,
                format!("version {v} is not spoken here; this server speaks [{VERSION}]"),
            ))
        }
        None => return Err(err(ErrorCode::BadRequest, "missing field `v`")),
    }
    let req: Request =
        serde_json::from_value(value).map_err(|e| err(ErrorCode::BadRequest, e.to_string()))?;
    check(&req)?;
    Ok(req)
}

/// Encodes a request as one line, newline included.
pub fn encode_request(req: &Request) -> Vec<u8> {
    let mut v = serde_json::to_value(req).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("v".into(), VERSION.into());
    }
    let mut line = serde_json::to_vec(&v).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Encodes a reply as one line, newline included.
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    let mut line = serde_json::to_vec(reply).unwrap_or_else(|e| {
        // Our own types always serialize; this is the fallback shape.
        format!(r#"{{"v":{VERSION},"ok":false,"error":{{"code":"internal","message":"encoding the reply: {e}"}}}}"#)
            .into_bytes()
    });
    line.push(b'\n');
    line
}

/// Decodes one reply line.
pub fn decode_reply(line: &[u8]) -> Result<Reply, String> {
    let reply: Reply = serde_json::from_slice(line).map_err(|e| format!("bad reply: {e}"))?;
    if reply.v != VERSION {
        return Err(format!("reply has version {}, expected {VERSION}", reply.v));
    }
    Ok(reply)
}

fn err(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError {
        code,
        message: message.into(),
    }
}

/// Checks the values of a decoded request.
fn check(req: &Request) -> Result<(), ApiError> {
    match req {
        Request::Status {} | Request::Ports {} => Ok(()),
        Request::Detach { id } | Request::Check { id } => check_id(id),
        Request::Gc { prefix, keep } => {
            if !prefix.is_empty() {
                check_id(prefix)?;
            }
            keep.iter().try_for_each(|id| check_id(id))
        }
        Request::Attach(a) => {
            check_id(&a.id)?;
            crate::config::check_ifname(&a.ifname)
                .map_err(|m| err(ErrorCode::Invalid, format!("ifname: {m}")))?;
            check_netns_path(&a.netns)?;
            if a.addresses.is_empty() {
                return Err(err(ErrorCode::Invalid, "addresses: at least one"));
            }
            if a.addresses.len() > MAX_ADDRESSES {
                return Err(err(
                    ErrorCode::Invalid,
                    format!("addresses: at most {MAX_ADDRESSES}"),
                ));
            }
            if a.offload && a.kind == PortKind::Tun {
                // TUN ports always use virtio-net headers; the flag is a veth choice.
                return Err(err(
                    ErrorCode::Invalid,
                    "offload: a veth setting (TUN ports always take offloads)",
                ));
            }
            Ok(())
        }
    }
}

/// An attachment id: printable ASCII, no spaces, 1..=[`MAX_ID`] bytes.
pub fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID {
        return Err(err(
            ErrorCode::Invalid,
            format!("id: 1 to {MAX_ID} bytes, got {}", id.len()),
        ));
    }
    if let Some(c) = id.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(err(
            ErrorCode::Invalid,
            format!("id: {c:?} is not printable ASCII"),
        ));
    }
    Ok(())
}

/// A namespace path: absolute, no `..`, no NUL or control characters,
/// at most [`MAX_NETNS_PATH`] bytes. Whether it exists is the handler's
/// question.
fn check_netns_path(p: &std::path::Path) -> Result<(), ApiError> {
    let s = p.to_string_lossy();
    if !p.is_absolute() || s.len() > MAX_NETNS_PATH {
        return Err(err(
            ErrorCode::Invalid,
            format!("netns: an absolute path of at most {MAX_NETNS_PATH} bytes"),
        ));
    }
    if s.chars().any(char::is_control) || p.components().any(|c| c.as_os_str() == "..") {
        return Err(err(
            ErrorCode::Invalid,
            "netns: no control characters and no `..`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
