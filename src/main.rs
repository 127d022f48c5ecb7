//! `vxrouter` command line: argument parsing and output formatting only; the
//! work is done by the library (`config`, `route`).

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
        /// Print a JSON array of {prefix, kind, cost, next_hops} instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Exit status for an invalid topology or a failed computation.
const EXIT_INVALID: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Routes { config, host, json } => routes(&config, &host, json),
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
            println!(
                "{}: ok: vni {}, hosts {}, links {}, ports {}",
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

fn routes(path: &std::path::Path, host: &str, json: bool) -> ExitCode {
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
    let set = match route::compute(&topo, me) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vxrouter: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    for &u in &set.unreachable {
        let h = &topo.hosts[u];
        let prefixes: Vec<String> = h.subnets.iter().map(ToString::to_string).collect();
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
    if json {
        match serde_json::to_string_pretty(&set) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("vxrouter: cannot encode routes: {e}");
                return ExitCode::from(EXIT_INVALID);
            }
        }
    } else {
        print!("{set}");
    }
    ExitCode::SUCCESS
}
