//! `vxrouter` command line: argument parsing and output formatting only; the
//! work is done by the library (`config`, `route`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use vxrouter::config::{self, Topology};
use vxrouter::route;

/// Userspace VXLAN overlay router for container hosts.
#[derive(Parser, Debug)]
#[command(name = "vxrouter", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a topology file; prints every problem as `file:line:col: field: message`.
    Check {
        /// The topology file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print the routes one host computes from a topology file.
    Routes {
        /// The topology file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The host whose routes to compute (its `name` in the file).
        #[arg(long, value_name = "NAME")]
        host: String,
        /// Print a JSON array of {network, prefix, kind, cost, next_hops}
        /// instead of a table.
        #[arg(long)]
        json: bool,
        /// Only the routes of this overlay network (`default` is the one
        /// `[overlay]` describes).
        #[arg(long, value_name = "NAME")]
        network: Option<String>,
    },
    /// Run the real pipeline over capture files: `--in PORT=FILE` per input
    /// port (pcap or pcapng), frames taken in time order across inputs;
    /// writes `DIR/PORT.pcap` for every port that transmitted and
    /// `DIR/stats.json`, all or nothing.
    Replay {
        /// The topology file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The host whose pipeline to run.
        #[arg(long, value_name = "NAME")]
        host: String,
        /// An input: a port name (the host's `nic`, or a container port) and a
        /// pcap or pcapng file. Repeatable.
        #[arg(long = "in", value_name = "PORT=FILE", required = true)]
        inputs: Vec<String>,
        /// Output directory (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// MTU of the underlay NIC: a packet toward a peer that would not fit
        /// it once encapsulated (50 bytes more over IPv4, 70 over IPv6) is
        /// dropped as underlay_too_big with an ICMP error, as on the wire.
        #[arg(long, value_name = "BYTES", default_value_t = 1500,
              value_parser = clap::value_parser!(u16).range(68..))]
        underlay_mtu: u16,
    },
    /// Run the router for one host (root; Linux).
    Run {
        /// The topology file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// This host's name in the file.
        #[arg(long, value_name = "NAME")]
        host: String,
        /// Write JSON counters to this file every second.
        #[arg(long, value_name = "FILE")]
        stats_file: Option<PathBuf>,
        /// Seconds between counter summaries in the log.
        #[arg(long, default_value_t = 10)]
        log_interval: u64,
        /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics,
        /// e.g. `198.18.0.1:9469` or `[::]:9469`. No authentication: bind it
        /// to a management address.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<std::net::SocketAddr>,
        /// The control socket (mode 0600): live port attach and detach,
        /// `vxrouter ports`, the CNI plugin. Default
        /// /run/vxrouter/HOST.sock.
        #[arg(long, value_name = "PATH", conflicts_with = "no_socket")]
        socket: Option<PathBuf>,
        /// Serve no control socket.
        #[arg(long)]
        no_socket: bool,
        /// Where attached ports are recorded, so that the next run takes
        /// them back. Default /run/vxrouter/HOST.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Take over from the router running on this host: receive its
        /// sockets and queues over its handover socket (beside the control
        /// socket), forward, then let it exit without tearing anything
        /// down. With AF_XDP or AF_PACKET ports it falls back to a restart;
        /// with no router running it simply starts.
        #[arg(long, conflicts_with = "no_socket")]
        takeover: bool,
    },
    /// List a running router's ports with their counters, over its control
    /// socket.
    Ports {
        /// The router's control socket.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        /// Print the reply's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a running router's status (host, subnets, MTU, VNI, ready),
    /// over its control socket, as JSON.
    Status {
        /// The router's control socket.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
    },
}

/// Exit status for an invalid topology or a failed computation.
const EXIT_INVALID: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Routes {
            config,
            host,
            json,
            network,
        } => routes(&config, &host, json, network.as_deref()),
        Command::Replay {
            config,
            host,
            inputs,
            out,
            underlay_mtu,
        } => replay(&config, &host, &inputs, &out, underlay_mtu),
        Command::Run {
            config,
            host,
            stats_file,
            log_interval,
            metrics,
            socket,
            no_socket,
            state_dir,
            takeover,
        } => {
            let socket = match (socket, no_socket) {
                (_, true) => None,
                (Some(p), false) => Some(p),
                (None, false) => Some(default_socket(&host)),
            };
            // Without a socket nothing can be attached, so nothing recorded.
            let state_dir = socket
                .is_some()
                .then(|| state_dir.unwrap_or_else(|| default_state_dir(&host)));
            #[cfg(target_os = "linux")]
            {
                run(&vxrouter::control::RunOptions {
                    config,
                    host,
                    stats_file,
                    log_interval: std::time::Duration::from_secs(log_interval.max(1)),
                    metrics,
                    socket,
                    state_dir,
                    takeover,
                })
            }
            #[cfg(not(target_os = "linux"))]
            {
                let _ = (
                    config,
                    stats_file,
                    log_interval,
                    metrics,
                    state_dir,
                    takeover,
                );
                eprintln!("vxrouter: run needs Linux (AF_XDP, TUN)");
                ExitCode::from(EXIT_INVALID)
            }
        }
        Command::Ports { socket, json } => ports(&socket, json),
        Command::Status { socket } => status(&socket),
    }
}

#[cfg(target_os = "linux")]
fn default_socket(host: &str) -> PathBuf {
    vxrouter::control::default_socket(host)
}

#[cfg(target_os = "linux")]
fn default_state_dir(host: &str) -> PathBuf {
    vxrouter::control::default_state_dir(host)
}

#[cfg(not(target_os = "linux"))]
fn default_socket(_: &str) -> PathBuf {
    PathBuf::new()
}

#[cfg(not(target_os = "linux"))]
fn default_state_dir(_: &str) -> PathBuf {
    PathBuf::new()
}

/// Sends one request to a router's control socket.
#[cfg(target_os = "linux")]
fn call(
    socket: &std::path::Path,
    req: vxrouter::api::Request,
) -> Result<vxrouter::api::Body, ExitCode> {
    vxrouter::api::client::call(socket, &req, std::time::Duration::from_secs(5)).map_err(|e| {
        eprintln!("vxrouter: {e}");
        ExitCode::from(EXIT_INVALID)
    })
}

#[cfg(target_os = "linux")]
fn ports(socket: &std::path::Path, json: bool) -> ExitCode {
    use vxrouter::api::{Body, Request};
    let ports = match call(socket, Request::Ports {}) {
        Ok(Body::Ports(p)) => p,
        Ok(other) => {
            eprintln!("vxrouter: unexpected reply {other:?}");
            return ExitCode::from(EXIT_INVALID);
        }
        Err(code) => return code,
    };
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&ports).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let _ = writeln!(
        out,
        "{:<15} {:<4} {:<12} {:<16} {:<32} {:>12} {:>12}  ID",
        "PORT", "KIND", "NETWORK", "IFNAME", "ADDRESSES", "RX", "TX"
    );
    for p in ports {
        let addrs: Vec<String> = p.addresses.iter().map(ToString::to_string).collect();
        let kind = match p.kind {
            config::PortKind::Tun => "tun",
            config::PortKind::Veth => "veth",
        };
        let _ = writeln!(
            out,
            "{:<15} {:<4} {:<12} {:<16} {:<32} {:>12} {:>12}  {}",
            p.name,
            kind,
            p.network,
            p.ifname.unwrap_or_else(|| "-".into()),
            addrs.join(","),
            p.counters.rx_packets,
            p.counters.tx_packets,
            p.id.unwrap_or_else(|| "-".into())
        );
    }
    ExitCode::SUCCESS
}

#[cfg(target_os = "linux")]
fn status(socket: &std::path::Path) -> ExitCode {
    match call(socket, vxrouter::api::Request::Status {}) {
        Ok(vxrouter::api::Body::Status(s)) => {
            println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(other) => {
            eprintln!("vxrouter: unexpected reply {other:?}");
            ExitCode::from(EXIT_INVALID)
        }
        Err(code) => code,
    }
}

#[cfg(not(target_os = "linux"))]
fn ports(_: &std::path::Path, _: bool) -> ExitCode {
    eprintln!("vxrouter ports: Linux only");
    ExitCode::from(EXIT_INVALID)
}

#[cfg(not(target_os = "linux"))]
fn status(_: &std::path::Path) -> ExitCode {
    eprintln!("vxrouter status: Linux only");
    ExitCode::from(EXIT_INVALID)
}

fn replay(
    path: &std::path::Path,
    host: &str,
    inputs: &[String],
    out: &std::path::Path,
    mtu: u16,
) -> ExitCode {
    let topo = match load(path) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let Some(me) = topo.host_index(host) else {
        eprintln!("vxrouter: no host {host:?} in {}", path.display());
        return ExitCode::from(EXIT_INVALID);
    };
    let mut pairs = Vec::new();
    for i in inputs {
        let Some((port, file)) = i.split_once('=') else {
            eprintln!("vxrouter: --in {i:?}: expected PORT=FILE");
            return ExitCode::from(EXIT_INVALID);
        };
        pairs.push((port.to_owned(), PathBuf::from(file)));
    }
    // A running router refuses to start like this; replay runs it anyway,
    // as a router whose NIC's MTU shrank after the start.
    let fit = vxrouter::dataplane::tables::largest_overlay_mtu(mtu, topo.hosts[me].underlay);
    if topo.overlay_mtu(me) > fit {
        eprintln!(
            "vxrouter: note: overlay MTU {} does not fit --underlay-mtu {mtu} (largest {fit}): larger packets toward peers drop as underlay_too_big",
            topo.overlay_mtu(me)
        );
    }
    match vxrouter::replay::replay(&topo, me, &pairs, out, mtu) {
        Ok(stats) => {
            println!(
                "{}: rx {} forwarded {} replied {} pass-through {} dropped {} (stats in {})",
                stats.host,
                stats.rx_total(),
                stats.counters.forwarded,
                stats.counters.replied,
                stats.counters.pass_through,
                stats.counters.drops.values().sum::<u64>(),
                out.join("stats.json").display()
            );
            for (port, p) in stats.ports.iter().filter(|(_, p)| p.unknown_blocks > 0) {
                eprintln!(
                    "vxrouter: replay: warning: port {port}: skipped {} pcapng block(s) of \
                     unknown type, which may have held frames",
                    p.unknown_blocks
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vxrouter: replay: {e:#}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

#[cfg(target_os = "linux")]
fn run(opts: &vxrouter::control::RunOptions) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    match vxrouter::control::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn load(path: &std::path::Path) -> Result<Topology, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("{e}");
        let n = e.diagnostics.len();
        eprintln!(
            "vxrouter: {} error{} in {}",
            n,
            if n == 1 { "" } else { "s" },
            path.display()
        );
        ExitCode::from(EXIT_INVALID)
    })
}

fn check(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Ok(t) => {
            let ports: usize = t.hosts.iter().map(|h| h.ports.len()).sum();
            let networks = if t.networks.len() > 1 {
                format!(", networks {}", t.networks.len())
            } else {
                String::new()
            };
            println!(
                "{}: ok: vni {}{networks}, hosts {}, links {}, ports {}",
                path.display(),
                t.overlay.vni,
                t.hosts.len(),
                t.links.len(),
                ports
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn routes(path: &std::path::Path, host: &str, json: bool, network: Option<&str>) -> ExitCode {
    let topo = match load(path) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let Some(me) = topo.host_index(host) else {
        let names: Vec<&str> = topo.hosts.iter().map(|h| h.name.as_str()).collect();
        eprintln!(
            "vxrouter: no host {host:?} in {} (hosts: {})",
            path.display(),
            names.join(", ")
        );
        return ExitCode::from(EXIT_INVALID);
    };
    let net = match network.map(|n| (n, topo.network_index(n))) {
        None => None,
        Some((_, Some(i))) => Some(i),
        Some((n, None)) => {
            let names: Vec<&str> = topo.networks.iter().map(|n| n.name.as_str()).collect();
            eprintln!(
                "vxrouter: no network {n:?} in {} (networks: {})",
                path.display(),
                names.join(", ")
            );
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let set = match route::compute(&topo, me) {
        Ok(s) => match net {
            Some(i) => s.only_network(i),
            None => s,
        },
        Err(e) => {
            eprintln!("vxrouter: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    for &u in &set.unreachable {
        let h = &topo.hosts[u];
        let prefixes: Vec<String> = h
            .all_subnets()
            .filter(|(n, _)| net.is_none_or(|i| i == *n))
            .map(|(_, p)| p.to_string())
            .collect();
        let left_out = if prefixes.is_empty() {
            "no prefixes".to_string()
        } else {
            prefixes.join(", ")
        };
        eprintln!(
            "vxrouter: host {} is unreachable from {host}; left out: {left_out}",
            h.name
        );
    }
    let text = if json {
        match serde_json::to_string_pretty(&set) {
            Ok(s) => s + "\n",
            Err(e) => {
                eprintln!("vxrouter: cannot encode routes: {e}");
                return ExitCode::from(EXIT_INVALID);
            }
        }
    } else {
        set.to_string()
    };
    // A reader that stops early (`| head`) closes the pipe: that ends the
    // output quietly, as in other command-line tools, not with a panic.
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vxrouter: writing the routes: {e}");
            ExitCode::FAILURE
        }
    }
}
