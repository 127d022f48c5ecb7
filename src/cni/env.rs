//! The invocation: the `CNI_*` environment variables, parsed and checked.
//!
//! Layer: sans-IO (the binary hands over the variables it was given).
//! Invariant: an [`Invocation`] for ADD, CHECK and DEL carries a checked
//! [`Attachment`] (container id by the spec's character rule, an interface
//! name the kernel takes); ADD and CHECK also carry an absolute namespace
//! path; every command but VERSION and STATUS has a non-empty `CNI_PATH`.
//! Anything missing or malformed is error 4, naming the variable.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;

use rscni_types::types::{Cmd, ContainerId};

use super::error::CniError;

/// What the runtime asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `CNI_COMMAND`.
    pub cmd: Cmd,
    /// ADD, CHECK, DEL: the attachment; `None` for GC, STATUS, VERSION.
    pub attachment: Option<Attachment>,
    /// `CNI_PATH`, split; empty only where the command does not need it.
    pub path: Vec<PathBuf>,
}

/// The `(CNI_CONTAINERID, CNI_IFNAME)` an operation is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS`: always set for ADD and CHECK, optional for DEL.
    pub netns: Option<PathBuf>,
}

impl Attachment {
    /// The namespace path; error 4 when absent (the parser requires it for
    /// ADD and CHECK, so this is a second line of defence, not a panic).
    pub fn netns(&self) -> Result<&PathBuf, CniError> {
        self.netns
            .as_ref()
            .ok_or_else(|| CniError::env("required env variables [CNI_NETNS] missing"))
    }
}

/// Parses the variables of one invocation.
pub fn parse(env: &HashMap<String, OsString>) -> Result<Invocation, CniError> {
    let get = |name: &str| -> Result<Option<String>, CniError> {
        match env.get(name) {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| CniError::env(format!("{name} is not valid UTF-8"))),
        }
    };
    let Some(command) = get("CNI_COMMAND")? else {
        return Err(CniError::env(
            "required env variables [CNI_COMMAND] missing",
        ));
    };
    let cmd: Cmd = command.parse().map_err(CniError::from)?;
    let needs: &[&str] = match cmd {
        Cmd::Add | Cmd::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
        Cmd::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
        Cmd::Gc => &["CNI_PATH"],
        Cmd::Status | Cmd::Version => &[],
    };
    let mut missing = Vec::new();
    for name in needs {
        if get(name)?.is_none() {
            missing.push(*name);
        }
    }
    if !missing.is_empty() {
        return Err(CniError::env(format!(
            "required env variables [{}] missing",
            missing.join(",")
        )));
    }
    let path: Vec<PathBuf> = get("CNI_PATH")?
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect();
    if needs.contains(&"CNI_PATH") && path.is_empty() {
        return Err(CniError::env("CNI_PATH names no directory"));
    }
    let attachment = match cmd {
        Cmd::Add | Cmd::Check | Cmd::Del => {
            let container_id = get("CNI_CONTAINERID")?.unwrap_or_default();
            ContainerId::try_from(container_id.clone()).map_err(CniError::from)?;
            let ifname = get("CNI_IFNAME")?.unwrap_or_default();
            crate::config::check_ifname(&ifname)
                .map_err(|m| CniError::env(format!("CNI_IFNAME: {m}")))?;
            let netns = get("CNI_NETNS")?.map(PathBuf::from);
            if let Some(p) = &netns {
                if !p.is_absolute() {
                    return Err(CniError::env(format!(
                        "CNI_NETNS: {} is not an absolute path",
                        p.display()
                    )));
                }
            }
            Some(Attachment {
                container_id,
                ifname,
                netns,
            })
        }
        Cmd::Gc | Cmd::Status | Cmd::Version => None,
    };
    Ok(Invocation {
        cmd,
        attachment,
        path,
    })
}
