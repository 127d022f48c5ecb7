//! `vxrouter replay`: the real pipeline over capture files.
//!
//! Each `--in PORT=FILE` feeds a pcap port; frames are taken in timestamp
//! order across ports, a burst at a time, and run through
//! [`dataplane::forward_burst`], the same loop body the live workers run.
//! Every port that transmits gets `DIR/PORT.pcap`; `DIR/stats.json` accounts
//! for every frame read: forwarded + replied + pass-through + drops equals
//! the sum of the ports' rx.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::config::Topology;
use crate::dataplane::{self, tables, DropReason, Pipeline, Tables, Verdict};
use crate::port::pcap::PcapPort;
use crate::port::{Batch, LinkType, Port, BATCH_SIZE};
use crate::route;

/// Per-port frame counts.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PortStats {
    pub rx: u64,
    pub tx: u64,
}

/// What `stats.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayStats {
    pub host: String,
    pub ports: BTreeMap<String, PortStats>,
    pub forwarded: u64,
    pub replied: u64,
    pub pass_through: u64,
    pub icmp_errors: u64,
    /// ICMP errors held back by the rate limit (paced by the captures'
    /// timestamps).
    pub icmp_rate_limited: u64,
    pub drops: BTreeMap<&'static str, u64>,
}

impl ReplayStats {
    /// Frames read from all captures.
    pub fn rx_total(&self) -> u64 {
        self.ports.values().map(|p| p.rx).sum()
    }

    /// Frames accounted for by a verdict; equals [`Self::rx_total`].
    pub fn accounted(&self) -> u64 {
        self.forwarded + self.replied + self.pass_through + self.drops.values().sum::<u64>()
    }
}

/// The MAC of this host's NIC in replay: configured `underlay_mac`, else one
/// derived from the VTEP MAC (replay has no kernel to ask).
fn replay_nic_mac(topo: &Topology, host: usize) -> [u8; 6] {
    let h = &topo.hosts[host];
    h.underlay_mac.map(|m| m.0).unwrap_or_else(|| {
        let v = h.vtep_mac.0;
        [0x02, 0x4e, v[2], v[3], v[4], v[5]]
    })
}

/// Compiles the tables `host` would run with, for replay: peer underlay MACs
/// come from the topology only (`underlay_mac`).
pub fn replay_tables(topo: &Topology, host: usize, underlay_mtu: u16) -> Result<Tables> {
    let routes = route::compute(topo, host).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let no_neighbours = |_: IpAddr| None;
    let env = tables::HostEnv {
        nic_mac: replay_nic_mac(topo, host),
        underlay_mtu,
        neighbour: &no_neighbours,
    };
    Ok(tables::build(topo, host, &routes, &env))
}

/// Replays `inputs` (port name, capture) through host `host` of `topo`,
/// writing outputs and stats.json under `out_dir`.
pub fn replay(
    topo: &Topology,
    host: usize,
    inputs: &[(String, PathBuf)],
    out_dir: &Path,
    underlay_mtu: u16,
) -> Result<ReplayStats> {
    let t = replay_tables(topo, host, underlay_mtu)?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let mut ports: Vec<PcapPort> = Vec::with_capacity(t.ports.len());
    for info in &t.ports {
        let link = match info.kind {
            dataplane::PortKind::Tun => LinkType::RawIp,
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
        let out = out_dir.join(format!("{}.pcap", info.name));
        let port = PcapPort::open(
            &info.name,
            link,
            input.first().map(|p| p.as_path()),
            Some(out),
        )
        .with_context(|| format!("port {}", info.name))?;
        ports.push(port);
    }
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

    let mut pipe = Pipeline::new();
    let mut batch = Batch::new();
    let mut verdicts = [Verdict::Pass; BATCH_SIZE];
    let mut tx_counts = vec![0u64; ports.len()];
    // The port whose next frame is oldest goes next.
    while let Some(in_port) = (0..ports.len())
        .filter(|&i| ports[i].rx_pending() > 0)
        .min_by_key(|&i| ports[i].next_ts().unwrap_or(Duration::MAX))
    {
        let now = ports[in_port].next_ts().unwrap_or_default();
        pipe.set_clock(u64::try_from(now.as_nanos()).unwrap_or(u64::MAX));
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
        )?;
    }
    for p in ports.iter_mut() {
        p.flush()?;
        pipe.counters.drops[DropReason::FrameTooLong as usize] += p.rx_oversize;
    }

    let summary = pipe.counters.summary();
    let stats = ReplayStats {
        host: t.host_name.clone(),
        ports: ports
            .iter()
            .zip(&tx_counts)
            .filter(|(p, tx)| p.rx_packets > 0 || **tx > 0)
            .map(|(p, tx)| {
                (
                    p.name().to_owned(),
                    PortStats {
                        rx: p.rx_packets,
                        tx: *tx,
                    },
                )
            })
            .collect(),
        forwarded: summary.forwarded,
        replied: summary.replied,
        pass_through: summary.pass_through,
        icmp_errors: summary.icmp_errors,
        icmp_rate_limited: summary.icmp_rate_limited,
        drops: summary.drops,
    };
    let json = serde_json::to_string_pretty(&stats)?;
    std::fs::write(out_dir.join("stats.json"), json + "\n")
        .with_context(|| format!("writing {}/stats.json", out_dir.display()))?;
    Ok(stats)
}
