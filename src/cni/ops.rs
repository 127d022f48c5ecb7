//! The operations: ADD, DEL, CHECK, GC, STATUS over [`Effects`]; see the
//! module docs of [`super`] for what each asks the router.

use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use rscni_types::types::{CNIResultWithVersion, Cmd};
use serde_json::Value;

use super::config::{host_local_ranges, host_local_ranges_excluding, IpamPlan, NetworkConfig};
use super::effects::{Effects, EnvChange};
use super::env::{Attachment, Invocation};
use super::error::{self, CniError};
use super::ipam::{self, Ipam};
use super::result;
use crate::api::client::ClientError;
use crate::api::{self as api, Attach, Body, ErrorCode, PortInfo, Request, Status};

/// Wait for `attach`: the router makes a device pair, moves it, sets
/// addresses and opens sockets.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(20);
/// Wait for any other request.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The router's key for this attachment: `NETWORK/CONTAINER/IFNAME`.
pub fn attachment_id(network: &str, att: &Attachment) -> Result<String, CniError> {
    let id = format!("{network}/{}/{}", att.container_id, att.ifname);
    api::check_id(&id).map_err(|e| {
        CniError::config(format!(
            "attachment id {network}/<container>/<ifname>: {}",
            e.message
        ))
    })?;
    Ok(id)
}

/// Whether a failed call may succeed later without any change on our side.
fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Unreachable { .. } | ClientError::Protocol { .. } => true,
        ClientError::Api(a) => a.code == ErrorCode::NotReady,
    }
}

fn router_status(fx: &mut dyn Effects, cfg: &NetworkConfig) -> Result<Status, CniError> {
    match fx.call(&cfg.socket, &Request::Status {}, CALL_TIMEOUT) {
        Ok(Body::Status(s)) => Ok(s),
        Ok(other) => Err(error::unexpected(format!("status answered with {other:?}"))),
        Err(e) => Err(error::from_router("status", &e)),
    }
}

/// A network's subnets, gateways and reserved addresses on this host.
type NetworkView<'s> = (&'s [IpNet], &'s [std::net::IpAddr], &'s [std::net::IpAddr]);

/// This host's subnets and gateways in the configuration's network, from
/// the router's status.
fn network_of<'s>(status: &'s Status, cfg: &NetworkConfig) -> Result<NetworkView<'s>, CniError> {
    match status.network(&cfg.network) {
        Some(n) => Ok((&n.subnets, &n.gateways, &n.reserved)),
        // A router that predates networks has only the default one.
        None if status.networks.is_empty() && cfg.network == crate::config::DEFAULT_NETWORK => {
            Ok((&status.subnets, &status.gateways, &[]))
        }
        None => {
            let known: Vec<&str> = status.networks.iter().map(|n| n.name.as_str()).collect();
            Err(CniError::config(format!(
                "network: the router of host {} has no network {:?} (it has {})",
                status.host,
                cfg.network,
                if known.is_empty() {
                    "only the default one".to_string()
                } else {
                    known.join(", ")
                }
            )))
        }
    }
}

/// host-local's ranges from the router's status.
fn ranges_from(status: &Status, cfg: &NetworkConfig) -> Result<Value, CniError> {
    let (subnets, gateways, reserved) = network_of(status, cfg)?;
    if subnets.is_empty() {
        return Err(CniError::config(format!(
            "the router of host {} has no subnets to allocate from in network {:?}",
            status.host, cfg.network
        )));
    }
    Ok(host_local_ranges_excluding(subnets, gateways, reserved))
}

pub fn add(
    fx: &mut dyn Effects,
    inv: &Invocation,
    cfg: &NetworkConfig,
) -> Result<Vec<u8>, CniError> {
    let att = attachment(inv)?;
    let netns = att.netns()?;
    let id = attachment_id(cfg.name(), att)?;
    let status = router_status(fx, cfg)?;
    if !status.ready {
        return Err(CniError::try_again(format!(
            "the router at {} is not ready",
            cfg.socket.display()
        )));
    }
    let ranges = match cfg.ipam {
        IpamPlan::HostLocal(_) => Some(ranges_from(&status, cfg)?),
        IpamPlan::Delegate(_) => None,
    };
    let ipam = ipam::locate(fx, cfg, &inv.path)?;
    let stdin = ipam::stdin(cfg, ipam.version, ranges.as_ref(), &[]);
    let got = ipam.add(fx, &stdin)?;
    // From here on a failure releases the allocation.
    let addresses: Vec<IpNet> = got.ips.iter().map(|ip| ip.address).collect();
    let req = Request::Attach(Attach {
        id: id.clone(),
        netns: netns.clone(),
        ifname: att.ifname.clone(),
        kind: cfg.kind,
        addresses: addresses.clone(),
        offload: cfg.offload,
        network: (cfg.network != crate::config::DEFAULT_NETWORK).then(|| cfg.network.clone()),
    });
    let port = match fx.call(&cfg.socket, &req, ATTACH_TIMEOUT) {
        Ok(Body::Port(p)) => p,
        Ok(other) => {
            undo(fx, cfg, &ipam, &stdin, Some(&id));
            return Err(error::unexpected(format!("attach answered with {other:?}")));
        }
        Err(e) => {
            // A refusal made nothing; a broken call may have made the port.
            let unknown = matches!(e, ClientError::Protocol { .. });
            undo(fx, cfg, &ipam, &stdin, unknown.then_some(id.as_str()));
            return Err(error::from_router("attach", &e));
        }
    };
    let dns = if result::dns_is_empty(cfg.conf.dns.as_ref()) {
        got.dns
    } else {
        cfg.conf.dns.clone()
    };
    let r = result::added(
        cfg.conf.prev_result.as_ref(),
        &att.ifname,
        netns,
        &port,
        &addresses,
        dns,
    );
    let mut out = serde_json::to_vec(&CNIResultWithVersion::new(cfg.version, r))
        .map_err(|e| CniError::new(error::IO_FAILURE, "I/O failure", e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// Rolls back a failed ADD: `detach` when asked, then IPAM DEL. Failures
/// are logged: the ADD's own error is what the runtime needs.
fn undo(
    fx: &mut dyn Effects,
    cfg: &NetworkConfig,
    ipam: &Ipam,
    stdin: &[u8],
    detach: Option<&str>,
) {
    if let Some(id) = detach {
        let req = Request::Detach { id: id.to_string() };
        if let Err(e) = fx.call(&cfg.socket, &req, CALL_TIMEOUT) {
            fx.log(&format!("rolling back: detach {id}: {e}"));
        }
    }
    if let Err(e) = ipam.run(fx, Cmd::Del, &[], stdin) {
        fx.log(&format!("rolling back: {e}"));
    }
}

pub fn del(fx: &mut dyn Effects, inv: &Invocation, cfg: &NetworkConfig) -> Result<(), CniError> {
    let att = attachment(inv)?;
    let id = attachment_id(cfg.name(), att)?;
    let req = Request::Detach { id: id.clone() };
    let router_up = match fx.call(&cfg.socket, &req, CALL_TIMEOUT) {
        Ok(Body::Detached { found }) => {
            if !found {
                fx.log(&format!("{id}: not attached (already deleted)"));
            }
            true
        }
        Ok(other) => return Err(error::unexpected(format!("detach answered with {other:?}"))),
        Err(e) if transient(&e) => {
            let gone = att.netns.as_deref().is_none_or(|p| !fx.netns_alive(p));
            if !gone {
                // The interface lives on: keep its address allocated and
                // let the runtime try again.
                return Err(error::from_router("detach", &e));
            }
            fx.log(&format!(
                "{id}: {e}; the namespace is gone, so the router drops the port when it starts"
            ));
            false
        }
        Err(e) => return Err(error::from_router("detach", &e)),
    };
    let ipam = ipam::locate(fx, cfg, &inv.path)?;
    let ranges = match cfg.ipam {
        IpamPlan::Delegate(_) => None,
        IpamPlan::HostLocal(_) => Some(del_ranges(fx, cfg, att, router_up)),
    };
    let stdin = ipam::stdin(cfg, ipam.version, ranges.as_ref(), &[]);
    ipam.run(fx, Cmd::Del, &[], &stdin).map(|_| ())
}

/// host-local's ranges for a release: the router's when it answers, else
/// from prevResult.
fn del_ranges(
    fx: &mut dyn Effects,
    cfg: &NetworkConfig,
    att: &Attachment,
    router_up: bool,
) -> Value {
    if router_up {
        match fx.call(&cfg.socket, &Request::Status {}, CALL_TIMEOUT) {
            Ok(Body::Status(s)) => match network_of(&s, cfg) {
                Ok((subnets, gateways, _)) if !subnets.is_empty() => {
                    return host_local_ranges(subnets, gateways)
                }
                Ok(_) => {}
                Err(e) => fx.log(&format!("status: {}", e.details)),
            },
            Ok(_) => {}
            Err(e) => fx.log(&format!("status: {e}")),
        }
    }
    let ours: Vec<IpNet> = match (&cfg.conf.prev_result, &att.netns) {
        (Some(prev), Some(netns)) => result::ours_in(prev, &att.ifname, netns).unwrap_or_default(),
        _ => Vec::new(),
    };
    ipam::release_ranges(&ours)
}

pub fn check(fx: &mut dyn Effects, inv: &Invocation, cfg: &NetworkConfig) -> Result<(), CniError> {
    let att = attachment(inv)?;
    let netns = att.netns()?;
    let id = attachment_id(cfg.name(), att)?;
    let prev = cfg
        .conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::config("CHECK needs prevResult (the result of the ADD)"))?;
    let expected = result::ours_in(prev, &att.ifname, netns)?;
    let port = match fx.call(
        &cfg.socket,
        &Request::Check { id: id.clone() },
        CALL_TIMEOUT,
    ) {
        Ok(Body::Port(p)) => p,
        Ok(other) => return Err(error::unexpected(format!("check answered with {other:?}"))),
        Err(e) => return Err(error::from_router("check", &e)),
    };
    same_place(&port, &att.ifname, netns)?;
    result::compare(&expected, result::mac_in(prev, &att.ifname, netns), &port)?;
    let ipam = ipam::locate(fx, cfg, &inv.path)?;
    let ranges = match cfg.ipam {
        IpamPlan::Delegate(_) => None,
        IpamPlan::HostLocal(_) => Some(ranges_from(&router_status(fx, cfg)?, cfg)?),
    };
    let stdin = ipam::stdin(cfg, ipam.version, ranges.as_ref(), &[]);
    ipam.run(fx, Cmd::Check, &[], &stdin).map(|_| ())
}

/// The router's port is the interface `ifname` in `netns`.
fn same_place(port: &PortInfo, ifname: &str, netns: &Path) -> Result<(), CniError> {
    let shown = netns.display().to_string();
    if port.netns.as_deref().is_some_and(|n| n != shown) {
        return Err(CniError::mismatch(format!(
            "the router's port is in {:?}, CNI_NETNS is {shown}",
            port.netns
        )));
    }
    if port.ifname.as_deref().is_some_and(|n| n != ifname) {
        return Err(CniError::mismatch(format!(
            "the router's port is {:?}, CNI_IFNAME is {ifname}",
            port.ifname
        )));
    }
    Ok(())
}

pub fn gc(fx: &mut dyn Effects, inv: &Invocation, cfg: &NetworkConfig) -> Result<(), CniError> {
    let prefix = format!("{}/", cfg.name());
    let mut keep = Vec::new();
    for a in cfg.conf.valid_attachments.iter().flatten() {
        let id = format!("{prefix}{}/{}", a.container_id, a.ifname);
        match api::check_id(&id) {
            Ok(()) => keep.push(id),
            // Such an attachment could never have been made.
            Err(e) => fx.log(&format!(
                "valid-attachments: skipping {id:?}: {}",
                e.message
            )),
        }
    }
    let mut errors: Vec<CniError> = Vec::new();
    let req = Request::Gc {
        prefix: prefix.clone(),
        keep,
    };
    let mut collected = Vec::new();
    let mut router_up = false;
    if api::encode_request(&req).len() >= api::MAX_REQUEST {
        errors.push(error::unexpected(format!(
            "gc: the valid attachments do not fit in one request of {} bytes",
            api::MAX_REQUEST
        )));
    } else {
        match fx.call(&cfg.socket, &req, CALL_TIMEOUT) {
            Ok(Body::Collected(ids)) => {
                router_up = true;
                collected = ids;
            }
            Ok(other) => errors.push(error::unexpected(format!("gc answered with {other:?}"))),
            Err(e) => errors.push(error::from_router("gc", &e)),
        }
    }
    for id in &collected {
        fx.log(&format!("gc: detached {id}"));
    }
    match ipam::locate(fx, cfg, &inv.path) {
        Err(e) => errors.push(e),
        Ok(ipam) => gc_ipam(fx, cfg, &ipam, &prefix, &collected, router_up, &mut errors),
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        n => {
            let rest: Vec<String> = errors[1..].iter().map(ToString::to_string).collect();
            let first = errors.remove(0);
            Err(first.context(&format!("{n} errors; the others: {}", rest.join("; "))))
        }
    }
}

/// GC's IPAM part: a release for each attachment the router collected,
/// then GC forwarded when the plugin speaks 1.1.0.
fn gc_ipam(
    fx: &mut dyn Effects,
    cfg: &NetworkConfig,
    ipam: &Ipam,
    prefix: &str,
    collected: &[String],
    router_up: bool,
    errors: &mut Vec<CniError>,
) {
    let ranges = match cfg.ipam {
        IpamPlan::Delegate(_) => None,
        IpamPlan::HostLocal(_) => Some(if router_up {
            match router_status(fx, cfg).and_then(|s| ranges_from(&s, cfg)) {
                Ok(r) => r,
                Err(e) => {
                    errors.push(e);
                    ipam::release_ranges(&[])
                }
            }
        } else {
            ipam::release_ranges(&[])
        }),
    };
    let release = ipam::stdin(
        cfg,
        ipam.version,
        ranges.as_ref(),
        &["cni.dev/valid-attachments", "prevResult"],
    );
    for id in collected {
        let Some((container, ifname)) = id
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('/'))
        else {
            fx.log(&format!(
                "gc: {id} is not NETWORK/CONTAINER/IFNAME; no release"
            ));
            continue;
        };
        let env: [EnvChange; 3] = [
            ("CNI_CONTAINERID", Some(container.to_string())),
            ("CNI_IFNAME", Some(ifname.to_string())),
            ("CNI_NETNS", None),
        ];
        if let Err(e) = ipam.run(fx, Cmd::Del, &env, &release) {
            errors.push(e);
        }
    }
    if ipam.speaks_1_1 {
        let stdin = ipam::stdin(cfg, ipam.version, ranges.as_ref(), &[]);
        if let Err(e) = ipam.run(fx, Cmd::Gc, &[], &stdin) {
            errors.push(e);
        }
    } else {
        fx.log(&format!(
            "IPAM plugin {} does not speak 1.1.0: GC not forwarded",
            ipam.name
        ));
    }
}

pub fn status(fx: &mut dyn Effects, inv: &Invocation, cfg: &NetworkConfig) -> Result<(), CniError> {
    let s = match fx.call(&cfg.socket, &Request::Status {}, CALL_TIMEOUT) {
        Ok(Body::Status(s)) => s,
        Ok(other) => {
            return Err(CniError::not_available(format!(
                "status answered with {other:?}"
            )))
        }
        Err(e) => return Err(CniError::not_available(format!("status: {e}"))),
    };
    if !s.ready {
        return Err(CniError::not_available(format!(
            "the router of host {} is not ready",
            s.host
        )));
    }
    if s.ports >= s.max_ports {
        return Err(CniError::not_available(format!(
            "the router of host {} holds {} ports, its most",
            s.host, s.ports
        )));
    }
    if inv.path.is_empty() {
        // CNI_PATH is optional for STATUS: without it there is no IPAM to ask.
        return Ok(());
    }
    let ipam = ipam::locate(fx, cfg, &inv.path).map_err(|e| CniError::not_available(e.details))?;
    if !ipam.speaks_1_1 {
        return Ok(());
    }
    let ranges = match cfg.ipam {
        IpamPlan::Delegate(_) => None,
        IpamPlan::HostLocal(_) => {
            Some(ranges_from(&s, cfg).map_err(|e| CniError::not_available(e.details))?)
        }
    };
    let stdin = ipam::stdin(cfg, ipam.version, ranges.as_ref(), &[]);
    ipam.run(fx, Cmd::Status, &[], &stdin).map(|_| ())
}

fn attachment(inv: &Invocation) -> Result<&Attachment, CniError> {
    inv.attachment
        .as_ref()
        .ok_or_else(|| CniError::env("CNI_CONTAINERID and CNI_IFNAME are required"))
}
