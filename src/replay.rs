//! `vxrouter replay`: the real pipeline over capture files.
//!
//! Each `--in PORT=FILE` feeds a pcap port; frames are taken in timestamp
//! order across ports (ties: the port listed first in the topology, then
//! file order), a burst at a time, and run through
//! [`dataplane::forward_burst`], the same loop body the live workers run.
//! A burst holds frames of one timestamp (see [`PcapPort`]), and the
//! pipeline's clock is that timestamp: each frame is paced by its own time
//! (the ICMP error budget) and every frame it causes is written with it.
//!
//! Every port that transmits gets `DIR/PORT.pcap`; `DIR/stats.json` accounts
//! for every frame read: forwarded + replied + pass-through + drops equals
//! the sum of the ports' rx. It carries the live stats file's counters per
//! network ([`crate::netstats`]), whose sum is the totals. Outputs are
//! written into a hidden directory inside `DIR` and moved into place only
//! when the whole replay succeeded, `stats.json` last: a failed replay
//! leaves `DIR` as it was.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::config::Topology;
use crate::dataplane::{
    self, tables, CounterSummary, DropReason, Pipeline, PortRole, Tables, Verdict,
};
use crate::netstats::{ByNetwork, NetSums, NetworkStats};
use crate::port::pcap::PcapPort;
use crate::port::{Batch, LinkType, Port, BATCH_SIZE};
use crate::route::{self, RouteSet};

/// Per-port frame counts.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PortStats {
    /// The network of a container port, as the live stats file names it;
    /// none for the uplink, which carries them all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    pub rx: u64,
    pub tx: u64,
    /// pcapng blocks of an unknown type in the port's input, skipped (they
    /// might have held frames).
    #[serde(skip_serializing_if = "is_zero")]
    pub unknown_blocks: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What `stats.json` holds: the live stats file's counters, per network
/// and in total, beside the ports' frame counts.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayStats {
    pub host: String,
    pub ports: BTreeMap<String, PortStats>,
    /// The counters per network, as the live router's stats file shows
    /// them (`removed_networks` stays empty: replay never reloads).
    #[serde(flatten)]
    pub by_network: ByNetwork,
    /// Every frame's counters: the sum over `by_network`. ICMP errors are
    /// paced by the captures' timestamps.
    #[serde(flatten)]
    pub counters: CounterSummary,
}

impl ReplayStats {
    /// Frames read from all captures.
    pub fn rx_total(&self) -> u64 {
        self.ports.values().map(|p| p.rx).sum()
    }

    /// Frames accounted for by a verdict; equals [`Self::rx_total`].
    pub fn accounted(&self) -> u64 {
        let c = &self.counters;
        c.forwarded + c.replied + c.pass_through + c.drops.values().sum::<u64>()
    }
}

/// The MAC of this host's NIC in replay: configured `underlay_mac`, else one
/// derived from the VTEP MAC (replay has no kernel to ask).
fn replay_nic_mac(topo: &Topology, host: usize) -> [u8; 6] {
    let h = &topo.hosts[host];
    h.underlay_mac
        .map_or_else(|| crate::config::replay_nic_mac(h.vtep_mac.0), |m| m.0)
}

/// Compiles the tables `host` would run with, for replay: peer underlay MACs
/// come from the topology only (`underlay_mac`).
pub fn replay_tables(topo: &Topology, host: usize, underlay_mtu: u16) -> Result<Tables> {
    Ok(routes_and_tables(topo, host, underlay_mtu)?.1)
}

/// [`replay_tables`] and the routes they were built from.
fn routes_and_tables(
    topo: &Topology,
    host: usize,
    underlay_mtu: u16,
) -> Result<(RouteSet, Tables)> {
    let routes = route::compute(topo, host).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let no_neighbours = |_: IpAddr| None;
    let env = tables::HostEnv {
        nic_mac: replay_nic_mac(topo, host),
        underlay_mtu,
        neighbour: &no_neighbours,
        ports: None,
    };
    let t = tables::build(topo, host, &routes, &env);
    Ok((routes, t))
}

/// Replays `inputs` (port name, capture) through host `host` of `topo`,
/// writing outputs and stats.json under `out_dir`. On error nothing in
/// `out_dir` has changed (it is created if missing).
pub fn replay(
    topo: &Topology,
    host: usize,
    inputs: &[(String, PathBuf)],
    out_dir: &Path,
    underlay_mtu: u16,
) -> Result<ReplayStats> {
    let (routes, t) = routes_and_tables(topo, host, underlay_mtu)?;
    for (name, _) in inputs {
        if t.port_index(name).is_none() {
            let known: Vec<&str> = t.ports.iter().map(|p| p.name.as_str()).collect();
            bail!(
                "--in {name}=...: host {} has no port {name} (ports: {})",
                t.host_name,
                known.join(", ")
            );
        }
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    // In the output directory, so that moving the files out is a rename;
    // removed on drop, whatever happened.
    let staging = tempfile::Builder::new()
        .prefix(".replay-")
        .tempdir_in(out_dir)
        .with_context(|| format!("creating a staging directory in {}", out_dir.display()))?;

    let mut ports: Vec<PcapPort> = Vec::with_capacity(t.ports.len());
    for info in &t.ports {
        let link = match info.role {
            PortRole::Tun => LinkType::RawIp,
            _ => LinkType::Ethernet,
        };
        let input: Vec<&PathBuf> = inputs
            .iter()
            .filter(|(p, _)| *p == info.name)
            .map(|(_, f)| f)
            .collect();
        if input.len() > 1 {
            bail!("port {} given more than one --in", info.name);
        }
        let out = staging.path().join(format!("{}.pcap", info.name));
        ports.push(PcapPort::open(
            &info.name,
            link,
            input.first().map(|p| p.as_path()),
            Some(out),
        )?);
    }

    let mut pipe = Pipeline::new();
    let mut batch = Batch::new();
    let mut verdicts = [Verdict::Pass; BATCH_SIZE];
    let mut tx_counts = vec![0u64; ports.len()];
    // The port whose next frame is oldest goes next; `min_by_key` keeps the
    // first of equals, so ties go to the port listed first.
    while let Some((in_port, now)) = ports
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.next_ts()?)))
        .min_by_key(|&(_, ts)| ts)
    {
        pipe.set_clock(u64::try_from(now.as_nanos()).unwrap_or(u64::MAX));
        // One timestamp per burst: every frame transmitted now was caused
        // by a frame of time `now`.
        ports[in_port].rx_burst(&mut batch)?;
        for p in ports.iter_mut() {
            p.now = now;
        }
        let mut dyn_ports: Vec<Option<&mut dyn Port>> =
            ports.iter_mut().map(|p| Some(p as &mut dyn Port)).collect();
        dataplane::forward_burst(
            &mut pipe,
            &t,
            in_port as u16,
            &mut batch,
            &mut verdicts,
            &mut dyn_ports,
            &mut tx_counts,
        )
        .context("writing the output captures")?;
    }
    for (i, p) in ports.iter_mut().enumerate() {
        p.flush().context("writing the output captures")?;
        pipe.count_port_drops(&t, i as u16, DropReason::FrameTooLong, p.rx_oversize);
    }

    let mut sums = NetSums::default();
    sums.add(&pipe.counters);
    let networks = NetworkStats::of_topology(topo, host, &routes, |net| {
        let name = &topo.networks[net].name;
        topo.hosts[host]
            .ports
            .iter()
            .filter(|p| p.network == *name)
            .count() as u64
    });
    let stats = ReplayStats {
        host: t.host_name.clone(),
        ports: ports
            .iter()
            .zip(&tx_counts)
            .zip(&t.ports)
            .filter(|((p, tx), _)| p.rx_packets > 0 || **tx > 0 || p.unknown_blocks > 0)
            .map(|((p, tx), info)| {
                let container = matches!(info.role, PortRole::Tun | PortRole::Veth);
                (
                    p.name().to_owned(),
                    PortStats {
                        network: container
                            .then(|| t.net_names.get(usize::from(info.net)).cloned())
                            .flatten(),
                        rx: p.rx_packets,
                        tx: *tx,
                        unknown_blocks: p.unknown_blocks,
                    },
                )
            })
            .collect(),
        by_network: sums.split(networks),
        counters: pipe.totals().summary(),
    };
    // Close the outputs before they move.
    drop(ports);
    let json = serde_json::to_string_pretty(&stats)?;
    std::fs::write(staging.path().join("stats.json"), json + "\n")
        .with_context(|| format!("writing {}/stats.json", staging.path().display()))?;
    publish(staging.path(), out_dir)?;
    Ok(stats)
}

/// Moves every file of `staging` into `out_dir`, `stats.json` last, so a
/// `stats.json` that belongs to this replay means all its captures are in
/// place.
fn publish(staging: &Path, out_dir: &Path) -> Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(staging)
        .and_then(|rd| {
            rd.map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
        })
        .with_context(|| format!("listing {}", staging.display()))?;
    names.sort_by_key(|n| (n == "stats.json", n.clone()));
    // An older stats.json must not vouch for a half-moved set of captures.
    match std::fs::remove_file(out_dir.join("stats.json")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(anyhow!("removing {}/stats.json: {e}", out_dir.display()))
        }
        _ => {}
    }
    for n in names {
        let (from, to) = (staging.join(&n), out_dir.join(&n));
        std::fs::rename(&from, &to)
            .map_err(|e| anyhow!("moving {} to {}: {e}", from.display(), to.display()))?;
    }
    Ok(())
}
