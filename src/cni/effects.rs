//! What the plugin does to the world, behind one trait: calls to the
//! router, runs of delegated plugins, one look at a namespace, and log
//! lines. [`System`] does them; tests substitute a recording fake, so the
//! operations' logic (rollback on a failed ADD, DEL's tolerance) is tested
//! in memory.
//!
//! Layer: the plugin's I/O corner. Delegated plugins get the plugin's own
//! environment with the overrides the caller names, and their stderr goes
//! to ours, as the spec's delegation procedure asks.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::api::client::{self, ClientError};
use crate::api::{Body, Request};

/// Largest stdout read from a delegated plugin.
pub const MAX_PLUGIN_OUTPUT: u64 = 1 << 20;

/// Why running a delegated plugin failed.
#[derive(Debug)]
pub enum ExecError {
    /// It could not be started.
    Spawn(String),
    /// It exited non-zero; its stdout (an error object, if it follows the
    /// spec) and its exit code.
    Failed {
        /// Exit code, `None` when killed by a signal.
        status: Option<i32>,
        /// What it printed.
        stdout: Vec<u8>,
    },
}

/// An environment change for a delegated plugin: set or remove.
pub type EnvChange = (&'static str, Option<String>);

/// The plugin's effects.
pub trait Effects {
    /// One request to the router at `socket`.
    fn call(
        &mut self,
        socket: &Path,
        req: &Request,
        timeout: Duration,
    ) -> Result<Body, ClientError>;
    /// The first executable file `name` in `dirs`.
    fn find_plugin(&self, name: &str, dirs: &[PathBuf]) -> Option<PathBuf>;
    /// Runs the delegated plugin at `path` with our environment changed by
    /// `env`, `stdin` on its stdin; its stdout on success.
    fn exec(&mut self, path: &Path, env: &[EnvChange], stdin: &[u8]) -> Result<Vec<u8>, ExecError>;
    /// Whether `path` is a live network namespace (a mounted nsfs file).
    fn netns_alive(&self, path: &Path) -> bool;
    /// A line for the log (stderr).
    fn log(&mut self, line: &str);
}

/// The real effects.
pub struct System {
    /// Delegated plugins' environment: ours.
    base_env: HashMap<String, std::ffi::OsString>,
}

impl System {
    /// Effects with `env` as the environment delegated plugins inherit.
    pub fn new(env: HashMap<String, std::ffi::OsString>) -> System {
        System { base_env: env }
    }
}

impl Effects for System {
    fn call(
        &mut self,
        socket: &Path,
        req: &Request,
        timeout: Duration,
    ) -> Result<Body, ClientError> {
        client::call(socket, req, timeout)
    }

    fn find_plugin(&self, name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        dirs.iter().map(|d| d.join(name)).find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    }

    fn exec(&mut self, path: &Path, env: &[EnvChange], stdin: &[u8]) -> Result<Vec<u8>, ExecError> {
        let mut cmd = Command::new(path);
        cmd.env_clear()
            .envs(&self.base_env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| ExecError::Spawn(format!("{}: {e}", path.display())))?;
        // A plugin that exits without reading its stdin breaks the pipe;
        // its exit status tells what happened, so the write error is moot.
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin);
        }
        let mut stdout = Vec::new();
        let read = child
            .stdout
            .take()
            .map(|out| out.take(MAX_PLUGIN_OUTPUT).read_to_end(&mut stdout));
        let status = child
            .wait()
            .map_err(|e| ExecError::Spawn(format!("waiting for {}: {e}", path.display())))?;
        if let Some(Err(e)) = read {
            return Err(ExecError::Spawn(format!(
                "reading the output of {}: {e}",
                path.display()
            )));
        }
        if status.success() {
            Ok(stdout)
        } else {
            Err(ExecError::Failed {
                status: status.code(),
                stdout,
            })
        }
    }

    fn netns_alive(&self, path: &Path) -> bool {
        // A live namespace is a network namespace file on nsfs; an
        // unmounted bind-mount target is a plain file, the ns link of a
        // gone process nothing.
        crate::port::sys::open_netns(path).is_ok()
    }

    fn log(&mut self, line: &str) {
        let _ = writeln!(std::io::stderr(), "vxrouter-cni: {line}");
    }
}
