//! `/healthz` and `/readyz`: what the endpoint answers, from the latest
//! snapshot and its age. Sans-IO: the time is an argument.
//!
//! Health: every worker's loop count moved within [`PROGRESS_WINDOW`] (as
//! the control thread saw it at its last tick) and the control thread's
//! last snapshot is younger than [`CONTROL_STALE`] (it hands one over every
//! second; a control thread that stops doing so is stuck). Readiness: the
//! router has published its tables, bound its uplink and every worker
//! polls (set once by the control thread, cleared as it stops).
//!
//! Invariant: a failing answer names every cause it found, one a line.

use std::time::Duration;

use super::RunStats;

/// How long a worker may go without one loop before it counts as stalled:
/// `/healthz` fails, the watchdog is no longer fed, and the router exits.
pub const PROGRESS_WINDOW: Duration = Duration::from_secs(2);
/// How old the control thread's last snapshot may be (it sends one every
/// second) before `/healthz` calls the control thread stuck.
pub const CONTROL_STALE: Duration = Duration::from_secs(3);

/// `/healthz` for the latest snapshot, `age` old: `Ok` or the causes.
pub fn check_health(latest: Option<(&RunStats, Duration)>) -> Result<(), String> {
    let Some((s, age)) = latest else {
        return Err("starting: no snapshot from the control thread yet\n".into());
    };
    let mut out = String::new();
    if age >= CONTROL_STALE {
        out.push_str(&format!(
            "control thread: last update {:.1} s ago\n",
            age.as_secs_f64()
        ));
    }
    for (k, ms) in s.worker_progress_age_ms.iter().enumerate() {
        let a = Duration::from_millis(*ms);
        if a >= PROGRESS_WINDOW {
            out.push_str(&format!(
                "worker {k}: no progress for {:.1} s\n",
                a.as_secs_f64()
            ));
        }
    }
    if out.is_empty() {
        Ok(())
    } else {
        Err(out)
    }
}
