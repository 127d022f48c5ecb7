//! Schema walk: the spanned tree to partially typed records.
//!
//! Each field is checked on its own here (type, range, syntax); checks that
//! relate several fields or entries live in `validate`. A field that fails is
//! reported and left out (`None`), and the walk goes on, so that one pass
//! reports every problem. Invariant: whenever a required value ends up
//! missing, a diagnostic has been recorded for it, so
//! [`UncheckedTopology::build`] only returns `None` when the file already
//! has errors.

use std::net::IpAddr;

use ipnet::IpNet;

use super::diag::Sink;
use super::tree::{Entry, Kind, Node, Span};
use super::{
    Host, LeaseRange, Link, LivenessConfig, MacAddr, Network, Overlay, PortConfig, PortKind,
    StoreConfig, StoreLayout, Topology, UplinkIo, DEFAULT_FLANNEL_PREFIX,
    DEFAULT_LIVENESS_DEAD_AFTER, DEFAULT_LIVENESS_PORT, DEFAULT_NETWORK, DEFAULT_STORE_PREFIX,
    DEFAULT_UDP_PORT, MAX_VNI,
};
use crate::wire::ethernet;

/// A value with the span it was read from.
#[derive(Debug, Clone)]
pub(crate) struct Spanned<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

/// The file as read, each field checked on its own and kept with its span;
/// the checks across fields and entries (`validate`) come next.
#[derive(Debug, Default)]
pub(crate) struct UncheckedTopology {
    pub(crate) overlay: Option<UncheckedOverlay>,
    pub(crate) hosts: Vec<UncheckedHost>,
    pub(crate) links: Vec<UncheckedLink>,
    /// The `[[networks]]` beside the default one.
    pub(crate) networks: Vec<UncheckedNetwork>,
    /// `None` when there is no `[store]`; `Some(None)` when it is invalid
    /// (reported).
    pub(crate) store: Option<Option<StoreConfig>>,
    /// The default network's lease range (`[store] network`), where the
    /// store is valid and gives one.
    pub(crate) store_range: Option<Spanned<LeaseRange>>,
}

#[derive(Debug)]
pub(crate) struct UncheckedOverlay {
    pub(crate) vni: Option<u32>,
    pub(crate) udp_port: Option<u16>,
    pub(crate) mtu: Option<Spanned<u16>>,
    /// `None` when a liveness field is invalid (reported); `Some(None)`
    /// when liveness is off.
    pub(crate) liveness: Option<Option<LivenessConfig>>,
}

/// One `[[networks]]` entry.
#[derive(Debug)]
pub(crate) struct UncheckedNetwork {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) vni: Option<Spanned<u32>>,
    pub(crate) mtu: Option<Spanned<u16>>,
    /// `subnets.<host> = [...]`, in file order.
    pub(crate) subnets: Vec<HostSubnets>,
    /// `lease_network` with `lease_subnet_len`, at the range's span.
    pub(crate) lease: Option<Spanned<LeaseRange>>,
}

/// One host's prefixes in a network: the host's name as written, with its
/// prefixes and their field paths.
pub(crate) type HostSubnets = (Spanned<String>, Vec<(Spanned<IpNet>, String)>);

#[derive(Debug)]
pub(crate) struct UncheckedHost {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) underlay: Option<Spanned<IpAddr>>,
    pub(crate) underlay_mac: Option<MacAddr>,
    pub(crate) vtep_mac: Option<Spanned<MacAddr>>,
    /// The default network's subnets (`subnets`).
    pub(crate) subnets: Vec<Spanned<IpNet>>,
    /// Subnets in the other networks, as (network index, prefix, field),
    /// gathered from `[[networks]]` by `validate`.
    pub(crate) net_subnets: Vec<(usize, Spanned<IpNet>, String)>,
    pub(crate) nic: Option<Spanned<String>>,
    pub(crate) workers: Vec<usize>,
    pub(crate) uplink_io: UplinkIo,
    pub(crate) ports: Vec<UncheckedPort>,
}

#[derive(Debug)]
pub(crate) struct UncheckedPort {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) kind: Option<PortKind>,
    pub(crate) netns: Option<Spanned<String>>,
    /// The network named by `network`, as written.
    pub(crate) network: Option<Spanned<String>>,
    /// Its index in the topology's networks (0: the default), resolved by
    /// `validate`.
    pub(crate) net: usize,
    pub(crate) addresses: Vec<Spanned<IpNet>>,
    pub(crate) mac: Option<MacAddr>,
    /// Configured gateways; `validate` adds the derived ones.
    pub(crate) gateways: Vec<Spanned<IpAddr>>,
    /// The gateways came from a `gateways` array (for field names).
    pub(crate) gateway_list: bool,
    pub(crate) mtu: Option<Spanned<u16>>,
    pub(crate) offload: Option<bool>,
    pub(crate) queue_len: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct UncheckedLink {
    pub(crate) span: Span,
    pub(crate) a: Option<Spanned<String>>,
    pub(crate) b: Option<Spanned<String>>,
    pub(crate) cost: Option<u32>,
}

const TOP_FIELDS: &[&str] = &["overlay", "networks", "hosts", "links", "store"];
const NETWORK_FIELDS: &[&str] = &[
    "name",
    "vni",
    "mtu",
    "subnets",
    "lease_network",
    "lease_subnet_len",
];
const STORE_FIELDS: &[&str] = &[
    "endpoints",
    "layout",
    "prefix",
    "lease_ttl_s",
    "network",
    "subnet_len",
    "ca_file",
    "cert_file",
    "key_file",
    "username",
    "password_file",
    "connect_timeout_ms",
];
const OVERLAY_FIELDS: &[&str] = &[
    "vni",
    "udp_port",
    "mtu",
    "liveness_interval_ms",
    "liveness_dead_after",
    "liveness_port",
    "liveness_key_file",
];
const HOST_FIELDS: &[&str] = &[
    "name",
    "underlay",
    "underlay_mac",
    "vtep_mac",
    "subnets",
    "nic",
    "workers",
    "uplink_io",
    "ports",
];
const PORT_FIELDS: &[&str] = &[
    "name",
    "kind",
    "netns",
    "network",
    "addresses",
    "mac",
    "gateway",
    "gateways",
    "mtu",
    "offload",
    "queue_len",
];
const LINK_FIELDS: &[&str] = &["a", "b", "cost"];

/// Smallest MTU any IPv4 link must carry (RFC 791: "Every internet module
/// must be able to forward a datagram of 68 octets without further
/// fragmentation").
pub(crate) const MIN_MTU_V4: i64 = 68;
/// Bounds of a TUN port's `queue_len`.
const MIN_QUEUE_LEN: i64 = 16;
const MAX_QUEUE_LEN: i64 = 65536;
/// A TUN port's `queue_len` unless set (see [`super::PortConfig::queue_len`]):
/// packets per queue of the device. A TUN queue cannot push back on the
/// sender before Linux 7.3: a full one drops, and a worker sharing its core
/// with a busy container is off it for a while. The kernel's default of
/// 500 is too short to ride that out with small packets: of the lengths
/// from 500 to 16384, 4096 is the shortest that loses none with 64-byte UDP
/// from a TUN container on the UDP uplink (`tools/bench-vs-kernel`), and a
/// longer one carries no more.
pub const DEFAULT_QUEUE_LEN: u32 = 4096;
/// Smallest IPv6 link MTU (RFC 8200 section 5).
pub(crate) const MIN_MTU_V6: u16 = 1280;
/// Largest container MTU: a port's packet buffers hold frames of up to
/// [`crate::port::MAX_FRAME`] bytes, Ethernet header included on a veth.
pub(crate) const MAX_MTU: u16 = (crate::port::MAX_FRAME - ethernet::HEADER_LEN) as u16;
/// Longest network namespace name: it is a file name under /run/netns, and
/// Linux file names hold at most NAME_MAX = 255 bytes.
const MAX_NETNS_NAME: usize = 255;
/// Container ports per host: the worker's port table holds 256 ports,
/// the uplink first, and a port's index is the last byte of its MACs.
pub const MAX_PORTS: usize = 255;
/// Longest network name: a label value and a word on a command line.
const MAX_NETWORK_NAME: usize = 64;
/// Shortest hello interval: 10 ms hellos with a dead interval of three
/// find a dead neighbour in 30-40 ms, for a failover gap under 50 ms
/// (`tools/bench-failover`); each costs one small datagram per link.
const MIN_LIVENESS_INTERVAL_MS: i64 = 10;
/// Worker cores index a `cpu_set_t`, which holds CPU_SETSIZE = 1024 cores.
const MAX_CORE: i64 = 1023;

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The entries of a table node, with unknown keys reported.
fn table<'n>(sink: &mut Sink, node: &'n Node, path: &str, allowed: &[&str]) -> Option<&'n [Entry]> {
    match &node.kind {
        Kind::Table(entries) => {
            for e in entries {
                if !allowed.contains(&e.key.as_str()) {
                    sink.error(
                        &e.key_span,
                        join(path, &printable_key(&e.key)),
                        format!("unknown field; expected one of: {}", allowed.join(", ")),
                    );
                }
            }
            Some(entries)
        }
        other => {
            sink.error(
                &node.span,
                path,
                format!("expected a table, found {}", other.name()),
            );
            None
        }
    }
}

/// A key as a field path shows it: bare keys as they are, any other quoted
/// and escaped, so that a hostile key cannot put control characters on the
/// user's terminal.
fn printable_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn get<'n>(entries: &'n [Entry], key: &str) -> Option<&'n Node> {
    entries.iter().find(|e| e.key == key).map(|e| &e.value)
}

fn string(sink: &mut Sink, node: &Node, field: &str) -> Option<Spanned<String>> {
    match &node.kind {
        Kind::Str(s) => Some(Spanned {
            value: s.clone(),
            span: node.span.clone(),
        }),
        other => {
            sink.error(
                &node.span,
                field,
                format!("expected a string, found {}", other.name()),
            );
            None
        }
    }
}

/// A string that `check` accepts; its error is reported at the string.
fn checked_string(
    sink: &mut Sink,
    node: &Node,
    field: &str,
    check: fn(&str) -> Result<(), String>,
) -> Option<Spanned<String>> {
    string(sink, node, field).filter(|s| match check(&s.value) {
        Ok(()) => true,
        Err(e) => {
            sink.error(&s.span, field, e);
            false
        }
    })
}

/// An integer in `lo..=hi`; `what` describes the accepted values.
fn integer(sink: &mut Sink, node: &Node, field: &str, lo: i64, hi: i64, what: &str) -> Option<i64> {
    match node.kind {
        Kind::Int(n) if (lo..=hi).contains(&n) => Some(n),
        Kind::Int(n) => {
            sink.error(
                &node.span,
                field,
                format!("{n} is out of range: expected {what}"),
            );
            None
        }
        ref other => {
            sink.error(
                &node.span,
                field,
                format!("expected {what}, found {}", other.name()),
            );
            None
        }
    }
}

fn array<'n>(sink: &mut Sink, node: &'n Node, field: &str) -> Option<&'n [Node]> {
    match &node.kind {
        Kind::Array(items) => Some(items),
        other => {
            sink.error(
                &node.span,
                field,
                format!("expected an array, found {}", other.name()),
            );
            None
        }
    }
}

fn ip(sink: &mut Sink, node: &Node, field: &str) -> Option<Spanned<IpAddr>> {
    let s = string(sink, node, field)?;
    match s.value.parse::<IpAddr>() {
        Ok(v) => Some(Spanned {
            value: v,
            span: s.span,
        }),
        Err(_) => {
            sink.error(&s.span, field, format!("invalid IP address {:?}", s.value));
            None
        }
    }
}

fn mac(sink: &mut Sink, node: &Node, field: &str) -> Option<Spanned<MacAddr>> {
    let s = string(sink, node, field)?;
    match s.value.parse::<MacAddr>() {
        Ok(m) if m.is_multicast() || m.is_zero() => {
            sink.error(
                &s.span,
                field,
                format!("{m} is not a unicast MAC address (zero, or the group bit of the first octet is set)"),
            );
            None
        }
        Ok(v) => Some(Spanned {
            value: v,
            span: s.span,
        }),
        Err(e) => {
            sink.error(&s.span, field, e.to_string());
            None
        }
    }
}

/// A prefix without host bits. `bare_is_host`: a plain address means /32 or
/// /128. Which blocks a prefix may lie in is decided in `validate`.
fn prefix(sink: &mut Sink, node: &Node, field: &str, bare_is_host: bool) -> Option<Spanned<IpNet>> {
    let s = string(sink, node, field)?;
    let net = match s.value.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match s.value.parse::<IpAddr>() {
            Ok(a) if bare_is_host => IpNet::from(a),
            Ok(_) => {
                sink.error(
                    &s.span,
                    field,
                    format!(
                        "{:?} has no prefix length; write it like 198.19.1.0/24",
                        s.value
                    ),
                );
                return None;
            }
            Err(_) => {
                sink.error(
                    &s.span,
                    field,
                    format!(
                        "invalid prefix {:?}: expected address/length like 198.19.1.0/24",
                        s.value
                    ),
                );
                return None;
            }
        },
    };
    if net.trunc() != net {
        let single = IpNet::from(net.addr());
        sink.error(
            &s.span,
            field,
            format!(
                "{net} has host bits set; write {} for the network or {single} for one address",
                net.trunc()
            ),
        );
        return None;
    }
    Some(Spanned {
        value: net,
        span: s.span,
    })
}

/// The first control character of `name` (C0, DEL or C1), if any: names
/// reach file names, C strings (where a NUL ends them early) and terminals.
fn control_char(name: &str) -> Option<char> {
    name.chars().find(|c| c.is_control())
}

fn control_char_error(name: &str, what: &str) -> Option<String> {
    control_char(name).map(|c| {
        format!(
            "{name:?} is not a valid {what}: it contains the control character U+{:04X}",
            u32::from(c)
        )
    })
}

/// Linux interface name rules (`dev_valid_name`): 1..=15 bytes, not `.` or
/// `..`, no `/`, `:` or whitespace; and no control characters, which the
/// kernel would take (NUL ends the name early) but no tool shows faithfully.
pub(crate) fn check_ifname(name: &str) -> Result<(), String> {
    if let Some(e) = control_char_error(name, "interface name") {
        return Err(e);
    }
    if name.is_empty() || name.len() > 15 {
        return Err(format!(
            "{name:?} is not a valid interface name: it must be 1 to 15 bytes long"
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "{name:?} is not a valid interface name: no '/', ':' or whitespace, and not \".\" or \"..\""
        ));
    }
    // The kernel tests each byte with its own `isspace`, whose table
    // (lib/ctype.c) counts 0xA0 as a space: a UTF-8 character with that
    // byte in it ("à" is C3 A0) makes the name invalid.
    if let Some(c) = name
        .chars()
        .find(|c| c.encode_utf8(&mut [0; 4]).bytes().any(|b| b == 0xa0))
    {
        return Err(format!(
            "{name:?} is not a valid interface name: its UTF-8 for {c:?} holds the byte 0xA0, which Linux takes for a space"
        ));
    }
    Ok(())
}

/// A named network namespace is a file under /run/netns: 1..=255 bytes, not
/// `.` or `..`, no `/`, and no control characters (NUL would end the name
/// early in every system call).
fn check_netns_name(name: &str) -> Result<(), String> {
    if let Some(e) = control_char_error(name, "network namespace name") {
        return Err(e);
    }
    if name.is_empty() || name.len() > MAX_NETNS_NAME {
        return Err(format!(
            "{name:?} is not a valid network namespace name: it must be 1 to {MAX_NETNS_NAME} bytes long (it is a file name under /run/netns), found {}",
            name.len()
        ));
    }
    if name == "." || name == ".." || name.contains('/') {
        return Err(format!(
            "{name:?} is not a valid network namespace name: it is a file name under /run/netns, so no '/', and not \".\" or \"..\""
        ));
    }
    Ok(())
}

/// Host names appear on the command line and in JSON: keep them plain.
pub(crate) fn check_host_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "host name {name:?} must be 1 to 64 characters long"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "host name {name:?} may only contain ASCII letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

fn boolean(sink: &mut Sink, node: &Node, field: &str) -> Option<Spanned<bool>> {
    match node.kind {
        Kind::Bool(b) => Some(Spanned {
            value: b,
            span: node.span.clone(),
        }),
        ref other => {
            sink.error(
                &node.span,
                field,
                format!("expected a boolean (true or false), found {}", other.name()),
            );
            None
        }
    }
}

fn mtu(sink: &mut Sink, node: &Node, field: &str) -> Option<Spanned<u16>> {
    integer(
        sink,
        node,
        field,
        MIN_MTU_V4,
        MAX_MTU.into(),
        &format!(
            "an MTU in 68..={MAX_MTU} (the largest frame a port buffer holds is {} bytes)",
            crate::port::MAX_FRAME
        ),
    )
    .and_then(|v| u16::try_from(v).ok())
    .map(|value| Spanned {
        value,
        span: node.span.clone(),
    })
}

/// Walks the document root.
pub(crate) fn read(root: &Node, sink: &mut Sink) -> UncheckedTopology {
    let mut raw = UncheckedTopology::default();
    let Some(top) = table(sink, root, "", TOP_FIELDS) else {
        return raw;
    };
    match get(top, "overlay") {
        Some(node) => raw.overlay = read_overlay(sink, node),
        None => sink.error(
            &(0..0),
            "overlay",
            "missing [overlay] table (it sets the vni)",
        ),
    }
    match get(top, "hosts") {
        Some(node) => {
            if let Some(items) = array(sink, node, "hosts") {
                if items.is_empty() {
                    sink.error(&node.span, "hosts", "at least one host is required");
                }
                raw.hosts = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| read_host(sink, n, &format!("hosts[{i}]")))
                    .collect();
            }
        }
        None => sink.error(
            &(0..0),
            "hosts",
            "missing [[hosts]] entries: at least one host is required",
        ),
    }
    if let Some(node) = get(top, "links") {
        if let Some(items) = array(sink, node, "links") {
            raw.links = items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| read_link(sink, n, &format!("links[{i}]")))
                .collect();
        }
    }
    if let Some(node) = get(top, "networks") {
        if let Some(items) = array(sink, node, "networks") {
            raw.networks = items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| read_network(sink, n, &format!("networks[{i}]")))
                .collect();
        }
    }
    if let Some(node) = get(top, "store") {
        let store = read_store(sink, node);
        let span = match &node.kind {
            Kind::Table(t) => get(t, "network").map(|n| n.span.clone()),
            _ => None,
        };
        raw.store_range = store.as_ref().and_then(|c| {
            Some(Spanned {
                value: c.lease_range()?,
                span: span?,
            })
        });
        raw.store = Some(store);
    }
    raw
}

/// One `[[networks]]` entry: a name, a VNI, an optional MTU and the
/// subnets each host owns in it (`[networks.subnets]`, host name to
/// prefixes). Names and hosts are checked against the rest in `validate`.
fn read_network(sink: &mut Sink, node: &Node, path: &str) -> Option<UncheckedNetwork> {
    let t = table(sink, node, path, NETWORK_FIELDS)?;
    let f = |k: &str| join(path, k);
    let name = match get(t, "name") {
        Some(n) => checked_string(sink, n, &f("name"), check_network_name),
        None => {
            sink.error(
                &node.span,
                f("name"),
                "missing field (the network's unique name)",
            );
            None
        }
    };
    let vni = match get(t, "vni") {
        Some(n) => integer(
            sink,
            n,
            &f("vni"),
            1,
            MAX_VNI.into(),
            "a VNI in 1..=16777215",
        )
        .map(|v| Spanned {
            value: v as u32,
            span: n.span.clone(),
        }),
        None => {
            sink.error(
                &node.span,
                f("vni"),
                "missing field (a VNI in 1..=16777215, unique among the networks)",
            );
            None
        }
    };
    let mtu = get(t, "mtu").and_then(|n| mtu(sink, n, &f("mtu")));
    let mut subnets = Vec::new();
    if let Some(n) = get(t, "subnets") {
        if let Some(hosts) = table_any(sink, n, &f("subnets")) {
            for e in hosts {
                let hp = join(&f("subnets"), &printable_key(&e.key));
                let host = Spanned {
                    value: e.key.clone(),
                    span: e.key_span.clone(),
                };
                let mut prefixes = Vec::new();
                if let Some(items) = array(sink, &e.value, &hp) {
                    for (i, item) in items.iter().enumerate() {
                        let field = format!("{hp}[{i}]");
                        if let Some(p) = prefix(sink, item, &field, false) {
                            prefixes.push((p, field));
                        }
                    }
                }
                subnets.push((host, prefixes));
            }
        }
    }
    let lease = lease_range(sink, t, path, "lease_network", "lease_subnet_len").unwrap_or(None);
    Some(UncheckedNetwork {
        name,
        vni,
        mtu,
        subnets,
        lease,
    })
}

/// A lease range (`range_key` in table `t` at `path`) and the length of
/// its subnets (`len_key`): a prefix without host bits, and a length that
/// leaves it at least two subnets (the first of a range is never leased),
/// given or the default ([`LeaseRange::default_len`]). Where on the
/// address plan the range may lie is decided in `validate`. `Err` when
/// either is bad (reported); `Ok(None)` when neither is given.
fn lease_range(
    sink: &mut Sink,
    t: &[Entry],
    path: &str,
    range_key: &str,
    len_key: &str,
) -> Result<Option<Spanned<LeaseRange>>, ()> {
    let f = |k: &str| join(path, k);
    let len_node = get(t, len_key);
    let Some(range_node) = get(t, range_key) else {
        if let Some(n) = len_node {
            sink.error(
                &n.span,
                f(len_key),
                format!("a subnet length without a range to lease from: set {range_key} too"),
            );
            return Err(());
        }
        return Ok(None);
    };
    let range = prefix(sink, range_node, &f(range_key), false).ok_or(())?;
    let (min, max) = (range.value.prefix_len() + 1, range.value.max_prefix_len());
    let len = match len_node {
        Some(n) => {
            let len = integer(sink, n, &f(len_key), 1, 128, "a prefix length").ok_or(())? as u8;
            if len < min || len > max {
                sink.error(
                    &n.span,
                    f(len_key),
                    format!(
                        "{len} does not fit {}: expected {min}..={max} (the range's first subnet is never leased, so it must hold two)",
                        f(range_key)
                    ),
                );
                return Err(());
            }
            Some(len)
        }
        None => {
            let d = LeaseRange::default_len(range.value);
            if d < min {
                sink.error(
                    &range.span,
                    f(range_key),
                    format!(
                        "{} holds fewer than two subnets of the default length /{d}: set {len_key}",
                        range.value
                    ),
                );
                return Err(());
            }
            None
        }
    };
    Ok(Some(Spanned {
        value: LeaseRange::new(range.value, len),
        span: range.span,
    }))
}

/// The entries of a table whose keys are the user's (host names), any key
/// accepted.
fn table_any<'n>(sink: &mut Sink, node: &'n Node, path: &str) -> Option<&'n [Entry]> {
    match &node.kind {
        Kind::Table(entries) => Some(entries),
        other => {
            sink.error(
                &node.span,
                path,
                format!(
                    "expected a table of host names to subnets, found {}",
                    other.name()
                ),
            );
            None
        }
    }
}

/// A network name: what a port's `network`, a CNI configuration and
/// `routes --network` name it by, and a metrics label.
pub(crate) fn check_network_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NETWORK_NAME {
        return Err(format!("a network name has 1 to {MAX_NETWORK_NAME} bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "network name {name:?} may hold only letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// The `[store]` table: an etcd v3 cluster holding the hosts beyond the
/// file.
fn read_store(sink: &mut Sink, node: &Node) -> Option<StoreConfig> {
    let t = table(sink, node, "store", STORE_FIELDS)?;
    let mut ok = true;
    let mut endpoints = Vec::new();
    match get(t, "endpoints").map(|n| (n, array(sink, n, "store.endpoints"))) {
        Some((n, Some(items))) => {
            if items.is_empty() {
                sink.error(
                    &n.span,
                    "store.endpoints",
                    "at least one endpoint is required",
                );
                ok = false;
            }
            for (i, item) in items.iter().enumerate() {
                let field = format!("store.endpoints[{i}]");
                match string(sink, item, &field) {
                    Some(s) => match check_endpoint(&s.value) {
                        Ok(()) => endpoints.push(s.value),
                        Err(e) => {
                            sink.error(&s.span, field, e);
                            ok = false;
                        }
                    },
                    None => ok = false,
                }
            }
        }
        Some((_, None)) => ok = false,
        None => {
            sink.error(
                &node.span,
                "store.endpoints",
                "missing field (the etcd client URLs, e.g. [\"http://198.18.0.10:2379\"])",
            );
            ok = false;
        }
    }
    let layout = match get(t, "layout") {
        Some(n) => match string(sink, n, "store.layout") {
            Some(s) if s.value == "vxrouter" => StoreLayout::Vxrouter,
            Some(s) if s.value == "flannel" => StoreLayout::Flannel,
            Some(s) => {
                sink.error(
                    &s.span,
                    "store.layout",
                    format!("{:?}: expected \"vxrouter\" or \"flannel\"", s.value),
                );
                return None;
            }
            None => return None,
        },
        None => StoreLayout::Vxrouter,
    };
    let key_prefix = match get(t, "prefix") {
        Some(n) => {
            let s = string(sink, n, "store.prefix")?;
            let bad = !s.value.starts_with('/')
                || s.value.len() > 512
                || s.value.ends_with('/')
                || s.value.chars().any(|c| c.is_control());
            if bad {
                sink.error(
                    &s.span,
                    "store.prefix",
                    "expected a key prefix starting with '/', without a trailing '/' or control characters, at most 512 bytes",
                );
                return None;
            }
            s.value
        }
        None => match layout {
            StoreLayout::Vxrouter => DEFAULT_STORE_PREFIX.to_owned(),
            StoreLayout::Flannel => DEFAULT_FLANNEL_PREFIX.to_owned(),
        },
    };
    let lease_ttl_s = match get(t, "lease_ttl_s") {
        Some(n) => integer(sink, n, "store.lease_ttl_s", 2, 3600, "seconds in 2..=3600")? as u32,
        None => 10,
    };
    let connect_timeout_ms = match get(t, "connect_timeout_ms") {
        Some(n) => integer(
            sink,
            n,
            "store.connect_timeout_ms",
            100,
            600_000,
            "milliseconds in 100..=600000",
        )? as u32,
        None => 5000,
    };
    let range = match layout {
        StoreLayout::Vxrouter => lease_range(sink, t, "store", "network", "subnet_len").ok()?,
        StoreLayout::Flannel => None,
    };
    if layout == StoreLayout::Flannel {
        for f in ["network", "subnet_len"] {
            if let Some(n) = get(t, f) {
                sink.error(
                    &n.span,
                    format!("store.{f}"),
                    "the flannel layout reads Network and SubnetLen from <prefix>/config in the store",
                );
                ok = false;
            }
        }
    }
    let mut path = |f: &str| -> Option<Option<std::path::PathBuf>> {
        match get(t, f) {
            Some(n) => {
                let field = format!("store.{f}");
                let s = string(sink, n, &field)?;
                match check_key_file(&s.value) {
                    Ok(p) => Some(Some(p)),
                    Err(e) => {
                        sink.error(&s.span, field, e);
                        None
                    }
                }
            }
            None => Some(None),
        }
    };
    let (ca_file, cert_file, key_file, password_file) = (
        path("ca_file"),
        path("cert_file"),
        path("key_file"),
        path("password_file"),
    );
    let (ca_file, cert_file, key_file, password_file) =
        (ca_file?, cert_file?, key_file?, password_file?);
    let username = match get(t, "username") {
        Some(n) => {
            let s = string(sink, n, "store.username")?;
            if s.value.is_empty() || s.value.chars().any(|c| c.is_control()) {
                sink.error(
                    &s.span,
                    "store.username",
                    "expected a user name without control characters",
                );
                return None;
            }
            Some(s.value)
        }
        None => None,
    };
    if cert_file.is_some() != key_file.is_some() {
        sink.error(
            &node.span,
            "store.cert_file",
            "a client certificate needs both cert_file and key_file",
        );
        ok = false;
    }
    if username.is_some() != password_file.is_some() {
        sink.error(
            &node.span,
            "store.username",
            "etcd authentication needs both username and password_file",
        );
        ok = false;
    }
    let tls = ca_file.is_some() || cert_file.is_some();
    if tls && endpoints.iter().any(|e| e.starts_with("http://")) {
        sink.error(
            &node.span,
            "store.endpoints",
            "TLS files are set but an endpoint is http://: use https:// endpoints",
        );
        ok = false;
    }
    ok.then(|| StoreConfig {
        endpoints,
        layout,
        prefix: key_prefix,
        lease_ttl_s,
        network: range.as_ref().map(|r| r.value.network),
        subnet_len: get(t, "subnet_len").and(range.map(|r| r.value.subnet_len)),
        ca_file,
        cert_file,
        key_file,
        username,
        password_file,
        connect_timeout_ms,
    })
}

/// An etcd client URL: `http://` or `https://`, a host and a port.
fn check_endpoint(s: &str) -> Result<(), String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("{s:?}: expected http://HOST:PORT or https://HOST:PORT"))?;
    let bad = rest.is_empty()
        || rest.len() > 255
        || rest
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '/' || c == '@');
    let port = rest.rsplit_once(':').and_then(|(h, p)| {
        (!h.is_empty())
            .then(|| p.parse::<u16>().ok())
            .flatten()
            .filter(|&p| p != 0)
    });
    if bad || port.is_none() {
        return Err(format!(
            "{s:?}: expected http://HOST:PORT or https://HOST:PORT with a port in 1..=65535 and no path"
        ));
    }
    Ok(())
}

fn read_overlay(sink: &mut Sink, node: &Node) -> Option<UncheckedOverlay> {
    let t = table(sink, node, "overlay", OVERLAY_FIELDS)?;
    let vni = match get(t, "vni") {
        Some(n) => integer(
            sink,
            n,
            "overlay.vni",
            1,
            MAX_VNI.into(),
            "a VNI in 1..=16777215",
        )
        .map(|v| v as u32),
        None => {
            sink.error(
                &node.span,
                "overlay.vni",
                "missing field (a VNI in 1..=16777215)",
            );
            None
        }
    };
    let udp_port = match get(t, "udp_port") {
        Some(n) => integer(
            sink,
            n,
            "overlay.udp_port",
            1,
            u16::MAX.into(),
            "a UDP port in 1..=65535",
        )
        .map(|v| v as u16),
        None => Some(DEFAULT_UDP_PORT),
    };
    let mtu = get(t, "mtu").and_then(|n| mtu(sink, n, "overlay.mtu"));
    let liveness = read_liveness(sink, t, udp_port);
    Some(UncheckedOverlay {
        vni,
        udp_port,
        mtu,
        liveness,
    })
}

/// The `liveness_*` fields of `[overlay]`: off unless
/// `liveness_interval_ms` is given and not 0.
fn read_liveness(
    sink: &mut Sink,
    t: &[Entry],
    udp_port: Option<u16>,
) -> Option<Option<LivenessConfig>> {
    const INTERVAL: &str = "milliseconds in 10..=60000, or 0 for no liveness";
    let interval_node = get(t, "liveness_interval_ms");
    let interval = match interval_node {
        Some(n) => match integer(sink, n, "overlay.liveness_interval_ms", 0, 60_000, INTERVAL) {
            Some(v) if v != 0 && v < MIN_LIVENESS_INTERVAL_MS => {
                sink.error(
                    &n.span,
                    "overlay.liveness_interval_ms",
                    format!("{v} is out of range: expected {INTERVAL}"),
                );
                None
            }
            v => v.map(|v| v as u32),
        },
        None => Some(0),
    };
    let dead_after = match get(t, "liveness_dead_after") {
        Some(n) => integer(
            sink,
            n,
            "overlay.liveness_dead_after",
            2,
            255,
            "a number of hello intervals in 2..=255",
        )
        .map(|v| v as u32),
        None => Some(DEFAULT_LIVENESS_DEAD_AFTER),
    };
    let port_node = get(t, "liveness_port");
    let port = match port_node {
        Some(n) => integer(
            sink,
            n,
            "overlay.liveness_port",
            1,
            u16::MAX.into(),
            "a UDP port in 1..=65535",
        )
        .map(|v| v as u16),
        None => Some(DEFAULT_LIVENESS_PORT),
    };
    let key_node = get(t, "liveness_key_file");
    let key_file = match key_node {
        Some(n) => match string(sink, n, "overlay.liveness_key_file") {
            Some(s) => match check_key_file(&s.value) {
                Ok(p) => Some(Some(p)),
                Err(e) => {
                    sink.error(&s.span, "overlay.liveness_key_file", e);
                    None
                }
            },
            None => None,
        },
        None => Some(None),
    };
    let (interval_ms, dead_after, port, key_file) = (interval?, dead_after?, port?, key_file?);
    if interval_ms == 0 {
        if let (Some(n), Some(_)) = (key_node, &key_file) {
            sink.error(
                &n.span,
                "overlay.liveness_key_file",
                "a key file without liveness: set liveness_interval_ms too",
            );
            return None;
        }
        return Some(None);
    }
    if Some(port) == udp_port {
        // Report it where the port was set, or where liveness was turned on.
        let (node, field) = match (port_node, interval_node) {
            (Some(n), _) => (n, "overlay.liveness_port"),
            (None, Some(n)) => (n, "overlay.liveness_interval_ms"),
            (None, None) => return None,
        };
        sink.error(
            &node.span,
            field,
            format!("the liveness port ({port}) must differ from overlay.udp_port (VXLAN)"),
        );
        return None;
    }
    Some(Some(LivenessConfig {
        interval_ms,
        dead_after,
        port,
        key_file,
    }))
}

/// The path of the liveness key file: absolute, so that it does not depend
/// on where the router was started.
fn check_key_file(s: &str) -> Result<std::path::PathBuf, String> {
    if s.is_empty() {
        return Err("an empty path: expected the absolute path of the key file".into());
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!("the path holds a control character ({:?})", c));
    }
    let p = std::path::PathBuf::from(s);
    if !p.is_absolute() {
        return Err(format!(
            "{s:?} is relative: expected an absolute path (e.g. /etc/vxrouter/liveness.key)"
        ));
    }
    Ok(p)
}

fn read_host(sink: &mut Sink, node: &Node, path: &str) -> Option<UncheckedHost> {
    let t = table(sink, node, path, HOST_FIELDS)?;
    let f = |k: &str| join(path, k);
    let name = match get(t, "name") {
        Some(n) => {
            let s = string(sink, n, &f("name"));
            if let Some(s) = &s {
                if let Err(e) = check_host_name(&s.value) {
                    sink.error(&s.span, f("name"), e);
                }
            }
            s
        }
        None => {
            sink.error(
                &node.span,
                f("name"),
                "missing field (the host's unique name)",
            );
            None
        }
    };
    let underlay = match get(t, "underlay") {
        Some(n) => ip(sink, n, &f("underlay")),
        None => {
            sink.error(
                &node.span,
                f("underlay"),
                "missing field (the host's VTEP address, IPv4 or IPv6)",
            );
            None
        }
    };
    let underlay_mac = get(t, "underlay_mac")
        .and_then(|n| mac(sink, n, &f("underlay_mac")))
        .map(|m| m.value);
    let vtep_mac = get(t, "vtep_mac").and_then(|n| mac(sink, n, &f("vtep_mac")));
    let mut subnets = Vec::new();
    if let Some(items) = get(t, "subnets").and_then(|n| array(sink, n, &f("subnets"))) {
        for (i, n) in items.iter().enumerate() {
            subnets.extend(prefix(sink, n, &format!("{path}.subnets[{i}]"), false));
        }
    }
    let nic = get(t, "nic").and_then(|n| checked_string(sink, n, &f("nic"), check_ifname));
    let mut workers = Vec::new();
    match get(t, "workers").map(|n| (n, array(sink, n, &f("workers")))) {
        None => workers.push(0),
        Some((_, None)) => {}
        Some((n, Some(items))) => {
            if items.is_empty() {
                sink.error(
                    &n.span,
                    f("workers"),
                    "at least one worker core is required",
                );
            }
            for (i, item) in items.iter().enumerate() {
                let field = format!("{path}.workers[{i}]");
                if let Some(core) = integer(
                    sink,
                    item,
                    &field,
                    0,
                    MAX_CORE,
                    "a CPU core number in 0..=1023",
                ) {
                    let core = core as usize;
                    if workers.contains(&core) {
                        sink.error(&item.span, field, format!("core {core} is listed twice"));
                    } else {
                        workers.push(core);
                    }
                }
            }
        }
    }
    let uplink_io = match get(t, "uplink_io") {
        None => UplinkIo::default(),
        Some(n) => match string(sink, n, &f("uplink_io")) {
            None => UplinkIo::default(),
            Some(s) => match s.value.as_str() {
                "af_xdp" => UplinkIo::AfXdp,
                "udp" => UplinkIo::Udp,
                other => {
                    sink.error(
                        &s.span,
                        f("uplink_io"),
                        format!("unknown uplink I/O {other:?}: expected \"af_xdp\" or \"udp\""),
                    );
                    UplinkIo::default()
                }
            },
        },
    };
    let mut ports = Vec::new();
    if let Some(items) = get(t, "ports").and_then(|n| array(sink, n, &f("ports"))) {
        for (i, n) in items.iter().enumerate() {
            ports.extend(read_port(sink, n, &format!("{path}.ports[{i}]")));
        }
    }
    Some(UncheckedHost {
        name,
        underlay,
        underlay_mac,
        vtep_mac,
        subnets,
        net_subnets: Vec::new(),
        nic,
        workers,
        uplink_io,
        ports,
    })
}

fn read_port(sink: &mut Sink, node: &Node, path: &str) -> Option<UncheckedPort> {
    let t = table(sink, node, path, PORT_FIELDS)?;
    let f = |k: &str| join(path, k);
    let name = match get(t, "name") {
        Some(n) => checked_string(sink, n, &f("name"), check_ifname),
        None => {
            sink.error(
                &node.span,
                f("name"),
                "missing field (the port's device name)",
            );
            None
        }
    };
    let kind = match get(t, "kind") {
        Some(n) => string(sink, n, &f("kind")).and_then(|s| match s.value.as_str() {
            "tun" => Some(PortKind::Tun),
            "veth" => Some(PortKind::Veth),
            other => {
                sink.error(
                    &s.span,
                    f("kind"),
                    format!("unknown port kind {other:?}: expected \"tun\" or \"veth\""),
                );
                None
            }
        }),
        None => {
            sink.error(&node.span, f("kind"), "missing field (\"tun\" or \"veth\")");
            None
        }
    };
    let netns =
        get(t, "netns").and_then(|n| checked_string(sink, n, &f("netns"), check_netns_name));
    let network = get(t, "network").and_then(|n| string(sink, n, &f("network")));
    let mut addresses = Vec::new();
    match get(t, "addresses") {
        Some(n) => {
            if let Some(items) = array(sink, n, &f("addresses")) {
                if items.is_empty() {
                    sink.error(&n.span, f("addresses"), "at least one address is required");
                }
                for (i, item) in items.iter().enumerate() {
                    addresses.extend(prefix(sink, item, &format!("{path}.addresses[{i}]"), true));
                }
            }
        }
        None => sink.error(
            &node.span,
            f("addresses"),
            "missing field (the container's source addresses)",
        ),
    }
    let mac = get(t, "mac").and_then(|n| {
        let m = mac(sink, n, &f("mac"))?;
        if kind == Some(PortKind::Tun) {
            sink.error(
                &m.span,
                f("mac"),
                "a TUN port carries no Ethernet header; `mac` only applies to veth ports",
            );
            return None;
        }
        Some(m.value)
    });
    let mut gateways = Vec::new();
    let gateway_list = match (get(t, "gateway"), get(t, "gateways")) {
        (Some(_), Some(n)) => {
            sink.error(
                &n.span,
                f("gateways"),
                "set either `gateway` or `gateways`, not both",
            );
            true
        }
        (Some(n), None) => {
            gateways.extend(ip(sink, n, &f("gateway")));
            false
        }
        (None, Some(n)) => {
            if let Some(items) = array(sink, n, &f("gateways")) {
                for (i, item) in items.iter().enumerate() {
                    let field = format!("{path}.gateways[{i}]");
                    if let Some(g) = ip(sink, item, &field) {
                        if gateways
                            .iter()
                            .any(|o: &Spanned<IpAddr>| o.value.is_ipv4() == g.value.is_ipv4())
                        {
                            sink.error(&g.span, field, "at most one gateway per address family");
                        } else {
                            gateways.push(g);
                        }
                    }
                }
            }
            true
        }
        (None, None) => false,
    };
    let mtu = get(t, "mtu").and_then(|n| mtu(sink, n, &f("mtu")));
    let offload = get(t, "offload").and_then(|n| {
        let b = boolean(sink, n, &f("offload"))?;
        Some(b.value)
    });
    let queue_len = get(t, "queue_len").and_then(|n| {
        let what = format!("a packet count in {MIN_QUEUE_LEN}..={MAX_QUEUE_LEN}");
        let q = integer(sink, n, &f("queue_len"), MIN_QUEUE_LEN, MAX_QUEUE_LEN, &what)?;
        if kind == Some(PortKind::Veth) {
            sink.error(
                &n.span,
                f("queue_len"),
                "a veth port has no device queue of the router's; `queue_len` only applies to TUN ports",
            );
            return None;
        }
        u32::try_from(q).ok()
    });
    Some(UncheckedPort {
        name,
        kind,
        netns,
        network,
        net: 0,
        addresses,
        mac,
        gateways,
        gateway_list,
        mtu,
        offload,
        queue_len,
    })
}

fn read_link(sink: &mut Sink, node: &Node, path: &str) -> Option<UncheckedLink> {
    let t = table(sink, node, path, LINK_FIELDS)?;
    let f = |k: &str| join(path, k);
    let end = |sink: &mut Sink, k: &str| match get(t, k) {
        Some(n) => string(sink, n, &f(k)),
        None => {
            sink.error(&node.span, f(k), "missing field (a host name)");
            None
        }
    };
    let a = end(sink, "a");
    let b = end(sink, "b");
    let cost = match get(t, "cost") {
        Some(n) => match n.kind {
            Kind::Int(0) => {
                sink.error(
                    &n.span,
                    f("cost"),
                    "cost must be at least 1: a zero-cost link would make paths through it free and routes ambiguous",
                );
                None
            }
            Kind::Int(c) if c < 0 => {
                sink.error(
                    &n.span,
                    f("cost"),
                    format!("cost must be positive (1..=4294967295), found {c}: negative costs are not allowed"),
                );
                None
            }
            _ => integer(
                sink,
                n,
                &f("cost"),
                1,
                u32::MAX.into(),
                "a positive integer cost (1..=4294967295)",
            )
            .map(|c| c as u32),
        },
        None => {
            sink.error(&node.span, f("cost"), "missing field (a positive integer)");
            None
        }
    };
    Some(UncheckedLink {
        span: node.span.clone(),
        a,
        b,
        cost,
    })
}

impl UncheckedTopology {
    /// The typed topology, or `None` if a required value is missing (which
    /// `read` has reported).
    pub(crate) fn build(self) -> Option<Topology> {
        let o = self.overlay?;
        let overlay = Overlay {
            vni: o.vni?,
            udp_port: o.udp_port?,
            mtu: o.mtu.map(|m| m.value),
            liveness: o.liveness?,
        };
        let mut networks = vec![Network {
            name: DEFAULT_NETWORK.to_owned(),
            vni: overlay.vni,
            mtu: overlay.mtu,
            lease: None,
        }];
        for n in self.networks {
            networks.push(Network {
                name: n.name?.value,
                vni: n.vni?.value,
                mtu: n.mtu.map(|m| m.value),
                lease: n.lease.map(|l| l.value),
            });
        }
        let mut hosts = Vec::with_capacity(self.hosts.len());
        for h in self.hosts {
            let underlay = h.underlay?.value;
            let mut ports = Vec::with_capacity(h.ports.len());
            for p in h.ports {
                ports.push(PortConfig {
                    name: p.name?.value,
                    kind: p.kind?,
                    netns: p.netns.map(|n| n.value),
                    network: networks.get(p.net)?.name.clone(),
                    addresses: p.addresses.into_iter().map(|a| a.value).collect(),
                    mac: p.mac,
                    gateways: p.gateways.into_iter().map(|g| g.value).collect(),
                    mtu: p.mtu.map(|m| m.value),
                    // On by default for TUN (the same device, only faster);
                    // a veth port changes I/O path with it, so only on request.
                    offload: p.offload.unwrap_or(p.kind? == PortKind::Tun),
                    queue_len: p.queue_len.unwrap_or(DEFAULT_QUEUE_LEN),
                });
            }
            hosts.push(Host {
                name: h.name?.value,
                underlay,
                underlay_mac: h.underlay_mac,
                vtep_mac: h
                    .vtep_mac
                    .map_or_else(|| MacAddr::derived_from(underlay), |m| m.value),
                subnets: h.subnets.into_iter().map(|s| s.value).collect(),
                net_subnets: h
                    .net_subnets
                    .into_iter()
                    .map(|(n, s, _)| (n, s.value))
                    .collect(),
                nic: h.nic.map(|n| n.value),
                workers: h.workers,
                uplink_io: h.uplink_io,
                ports,
            });
        }
        let mut links = Vec::with_capacity(self.links.len());
        for l in self.links {
            links.push(Link {
                a: l.a?.value,
                b: l.b?.value,
                cost: l.cost?,
            });
        }
        let store = match self.store {
            Some(s) => Some(s?),
            None => None,
        };
        Some(Topology {
            overlay,
            networks,
            hosts,
            links,
            store,
        })
    }
}
