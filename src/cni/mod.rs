//! `vxrouter-cni`: a CNI plugin (specification 1.0.0 and 1.1.0) that
//! attaches containers to a running router through its control socket
//! ([`crate::api`]).
//!
//! Layer: the plugin's logic over [`Effects`] (router calls, delegated
//! plugins, logging), so every operation runs in memory under test; the
//! binary `src/bin/vxrouter-cni.rs` only gathers the environment and
//! stdin, calls [`run`] with [`effects::System`], prints and exits.
//!
//! What each command asks the router (attachment id
//! `NETWORK/CNI_CONTAINERID/CNI_IFNAME`):
//! - ADD: `status` (ready? which subnets), IPAM ADD, `attach`; a failure
//!   after IPAM ADD releases the allocation (IPAM DEL) and, when the
//!   attach's outcome is unknown, `detach`es.
//! - DEL: `detach` (an unknown id is success), `status` (host-local's
//!   ranges), IPAM DEL. With the router unreachable, DEL succeeds when the
//!   container's namespace is gone (the router drops such ports when it
//!   starts) and fails with 11 while it lives, keeping the allocation so
//!   its address cannot be handed out twice.
//! - CHECK: `check`, compared with prevResult; `status`, IPAM CHECK.
//! - GC: `gc` with prefix `NETWORK/` keeping the valid attachments; IPAM
//!   DEL for each attachment collected; IPAM GC when the plugin speaks
//!   1.1.0.
//! - STATUS: `status`: ready and not full, else 50; IPAM STATUS when the
//!   plugin speaks 1.1.0.
//! - VERSION: nothing.
//!
//! Invariants: stdout carries exactly one JSON document (a result, a
//! version answer or an error object) or nothing; logs go to stderr only;
//! the exit code is 0 exactly when no error object was printed.

pub mod config;
pub mod effects;
pub mod env;
pub mod error;
pub mod ipam;
mod ops;
pub mod result;

use std::collections::HashMap;
use std::ffi::OsString;

use rscni_types::types::Cmd;
use rscni_types::version::PluginInfo;

pub use effects::{Effects, System};
pub use error::CniError;

/// What the binary prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Bytes for stdout.
    pub stdout: Vec<u8>,
    /// Process exit code.
    pub exit: i32,
}

/// Runs one invocation: `env` holds the process's environment (the
/// `CNI_*` variables among it), `stdin` what the runtime wrote.
pub fn run(env: &HashMap<String, OsString>, stdin: &[u8], fx: &mut dyn Effects) -> Output {
    match dispatch(env, stdin, fx) {
        Ok(stdout) => Output { stdout, exit: 0 },
        Err(e) => fail(&e, stdin, fx),
    }
}

/// The output for a stdin that could not be read (error 5).
pub fn unreadable_stdin(e: &std::io::Error, fx: &mut dyn Effects) -> Output {
    let e = CniError::new(
        error::IO_FAILURE,
        "I/O failure",
        format!("reading stdin: {e}"),
    );
    fail(&e, b"", fx)
}

fn fail(e: &CniError, stdin: &[u8], fx: &mut dyn Effects) -> Output {
    fx.log(&e.to_string());
    Output {
        stdout: e.to_json(config::declared_version(stdin)),
        exit: 1,
    }
}

fn dispatch(
    env: &HashMap<String, OsString>,
    stdin: &[u8],
    fx: &mut dyn Effects,
) -> Result<Vec<u8>, CniError> {
    let inv = env::parse(env)?;
    if inv.cmd == Cmd::Version {
        return Ok(version());
    }
    if stdin.len() > config::MAX_STDIN {
        return Err(CniError::decode(format!(
            "network config is longer than {} bytes",
            config::MAX_STDIN
        )));
    }
    let cfg = config::parse(stdin, inv.cmd)?;
    match inv.cmd {
        Cmd::Add => ops::add(fx, &inv, &cfg),
        Cmd::Del => ops::del(fx, &inv, &cfg).map(|()| Vec::new()),
        Cmd::Check => ops::check(fx, &inv, &cfg).map(|()| Vec::new()),
        Cmd::Gc => ops::gc(fx, &inv, &cfg).map(|()| Vec::new()),
        Cmd::Status => ops::status(fx, &inv, &cfg).map(|()| Vec::new()),
        Cmd::Version => Ok(version()),
    }
}

/// The VERSION answer.
fn version() -> Vec<u8> {
    let info = PluginInfo::new(config::CURRENT, config::SUPPORTED.to_vec());
    let mut out = serde_json::to_vec(&info).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests;
