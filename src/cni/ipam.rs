//! Delegation to the IPAM plugin (spec section 4): found in `CNI_PATH`,
//! run with our environment (`CNI_COMMAND` and, for GC's releases, the
//! attachment changed) and the whole network configuration on stdin.
//!
//! Layer: the protocol over [`Effects`]; the stdin it sends and the output
//! it reads are built and parsed here, sans-IO.
//!
//! Versions: a configuration at 1.1.0 is sent as 1.1.0 to a plugin that
//! speaks it (asked with VERSION once per run), and as 1.0.0 to one that
//! stops there (Debian 12's host-local), whose ADD, DEL and CHECK are the
//! same; GC and STATUS go only to plugins that speak 1.1.0.

use std::path::PathBuf;

use ipnet::IpNet;
use rscni_types::types::{CNIResult, Cmd};
use rscni_types::version::SpecVersion;
use serde_json::Value;

use super::config::{IpamPlan, NetworkConfig};
use super::effects::{Effects, EnvChange, ExecError};
use super::error::CniError;

/// The IPAM plugin of one run, found and asked for its versions.
#[derive(Debug, Clone)]
pub struct Ipam {
    /// The executable.
    pub path: PathBuf,
    /// The plugin's name (`ipam.type`).
    pub name: String,
    /// The version its stdin declares.
    pub version: SpecVersion,
    /// Whether it speaks 1.1.0 (GC and STATUS).
    pub speaks_1_1: bool,
}

const V1_0: SpecVersion = SpecVersion::new(1, 0, 0);
const V1_1: SpecVersion = SpecVersion::new(1, 1, 0);

/// Finds the IPAM plugin of `cfg` in `dirs` and settles the version to
/// speak with it. Error 7 when it is not there.
pub fn locate(
    fx: &mut dyn Effects,
    cfg: &NetworkConfig,
    dirs: &[PathBuf],
) -> Result<Ipam, CniError> {
    let name = cfg.ipam.plugin().to_string();
    let Some(path) = fx.find_plugin(&name, dirs) else {
        let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(CniError::config(format!(
            "ipam.type: no executable {name:?} in CNI_PATH ({})",
            shown.join(":")
        )));
    };
    if cfg.version < V1_1 {
        return Ok(Ipam {
            path,
            name,
            version: cfg.version,
            speaks_1_1: false,
        });
    }
    let versions = probe(fx, &path);
    let speaks = |v: SpecVersion| versions.contains(&v);
    let (version, speaks_1_1) = if speaks(V1_1) {
        (V1_1, true)
    } else if speaks(V1_0) {
        (V1_0, false)
    } else {
        // Let the plugin itself say what it does not speak.
        (cfg.version, false)
    };
    Ok(Ipam {
        path,
        name,
        version,
        speaks_1_1,
    })
}

/// The versions a plugin reports to VERSION; empty when it does not answer.
fn probe(fx: &mut dyn Effects, path: &std::path::Path) -> Vec<SpecVersion> {
    let out = fx.exec(
        path,
        &[("CNI_COMMAND", Some("VERSION".into()))],
        br#"{"cniVersion":"1.1.0"}"#,
    );
    let parsed = out.ok().and_then(|o| parse_versions(&o));
    if parsed.is_none() {
        fx.log(&format!(
            "{}: no usable VERSION answer; speaking the config's version to it",
            path.display()
        ));
    }
    parsed.unwrap_or_default()
}

/// `supportedVersions` of a VERSION answer.
pub fn parse_versions(out: &[u8]) -> Option<Vec<SpecVersion>> {
    let v: Value = serde_json::from_slice(out).ok()?;
    Some(
        v.get("supportedVersions")?
            .as_array()?
            .iter()
            .filter_map(|s| s.as_str()?.parse().ok())
            .collect(),
    )
}

/// The stdin for the IPAM plugin: the configuration as received, at
/// `version`, without the keys in `drop`; for [`IpamPlan::HostLocal`] its
/// `ipam` completed with `ranges`.
pub fn stdin(
    cfg: &NetworkConfig,
    version: SpecVersion,
    ranges: Option<&Value>,
    drop: &[&str],
) -> Vec<u8> {
    let mut raw = cfg.raw.clone();
    raw.insert("cniVersion".into(), version.to_string().into());
    for k in drop {
        raw.remove(*k);
    }
    if let (IpamPlan::HostLocal(base), Some(ranges)) = (&cfg.ipam, ranges) {
        let mut ipam = base.clone();
        ipam.insert("ranges".into(), ranges.clone());
        raw.insert("ipam".into(), Value::Object(ipam));
    }
    serde_json::to_vec(&Value::Object(raw)).unwrap_or_default()
}

impl Ipam {
    /// Runs the plugin for `cmd` with `stdin` and the environment changes
    /// `env`; its stdout, or its error with its name before the details.
    pub fn run(
        &self,
        fx: &mut dyn Effects,
        cmd: Cmd,
        env: &[EnvChange],
        stdin: &[u8],
    ) -> Result<Vec<u8>, CniError> {
        let mut all: Vec<EnvChange> = vec![("CNI_COMMAND", Some(<&str>::from(cmd).to_string()))];
        all.extend(env.iter().cloned());
        let context = format!("IPAM plugin {} {}", self.name, <&str>::from(cmd));
        match fx.exec(&self.path, &all, stdin) {
            Ok(out) => Ok(out),
            Err(ExecError::Spawn(e)) => Err(CniError::ipam(e).context(&context)),
            Err(ExecError::Failed { status, stdout }) => Err(CniError::from_plugin_output(&stdout)
                .unwrap_or_else(|| {
                    let shown =
                        String::from_utf8_lossy(&stdout[..stdout.len().min(512)]).into_owned();
                    CniError::ipam(format!("exited with {status:?}: {shown}"))
                })
                .context(&context)),
        }
    }

    /// ADD: the plugin's result (ips, routes, dns; no interfaces). A
    /// result we cannot use is released (DEL) before the error returns.
    pub fn add(&self, fx: &mut dyn Effects, stdin: &[u8]) -> Result<CNIResult, CniError> {
        let out = self.run(fx, Cmd::Add, &[], stdin)?;
        parse_result(&out).map_err(|e| {
            if let Err(d) = self.run(fx, Cmd::Del, &[], stdin) {
                fx.log(&format!("releasing an unusable allocation: {d}"));
            }
            e.context(&format!("IPAM plugin {} ADD", self.name))
        })
    }
}

/// An IPAM ADD result: a [`CNIResult`] with at least one address and at
/// most [`crate::api::MAX_ADDRESSES`].
pub fn parse_result(out: &[u8]) -> Result<CNIResult, CniError> {
    let r: CNIResult = serde_json::from_slice(out)
        .map_err(|e| CniError::ipam(format!("its result is not a CNI result: {e}")))?;
    if r.ips.is_empty() {
        return Err(CniError::ipam("its result has no address"));
    }
    if r.ips.len() > crate::api::MAX_ADDRESSES {
        return Err(CniError::ipam(format!(
            "its result has {} addresses; a port takes at most {}",
            r.ips.len(),
            crate::api::MAX_ADDRESSES
        )));
    }
    Ok(r)
}

/// host-local's ranges when the router cannot be asked (DEL while it is
/// down): the networks of the addresses prevResult gives our interface, or
/// else a placeholder. host-local releases by container id and interface
/// name whatever the ranges, but refuses a configuration with none.
pub fn release_ranges(addresses: &[IpNet]) -> Value {
    let mut subnets: Vec<IpNet> = addresses.iter().map(IpNet::trunc).collect();
    subnets.sort();
    subnets.dedup();
    if subnets.is_empty() {
        // host-local only parses it: a release allocates nothing.
        subnets.push(IpNet::V4(
            ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(198, 18, 0, 0), 30).unwrap_or_default(),
        ));
    }
    super::config::host_local_ranges(&subnets, &[])
}
