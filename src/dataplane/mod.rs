//! Data plane: the batch pipeline that runs on the wire and in replay.
//!
//! - [`drops`]: drop reasons (declared once) and per-worker counters.
//! - [`tables`]: the immutable forwarding snapshot a worker reads per batch.
//! - [`pipeline`]: classify, check, look up, rewrite; a verdict per packet.
//!
//! [`forward_burst`] ties a pipeline to ports: it is the one loop body both
//! the live workers and `vxrouter replay` run, so replay tests prove the code
//! the wire runs. Sans-IO apart from the `Port` calls it is handed.

pub mod drops;
pub mod pipeline;
pub mod tables;

use std::io;

use crate::port::{Batch, Port, BATCH_SIZE};

pub use drops::{CounterSummary, Counters, DropReason};
pub use pipeline::{Pipeline, Verdict};
pub use tables::{NextHop, PortInfo, PortKind, Tables, UPLINK};

/// Processes one received batch and transmits what it produced.
///
/// `ports[i]` is port `i` of `t.ports` as this worker sees it (`None` when
/// the worker does not own a queue of it: frames for it drop as
/// `port_down`). `tx_counts[i]` counts frames port `i` accepted. Frames a
/// port refuses are moved from their verdict's counter to `tx_full`.
/// Returns the first transmit error, after every port was tried.
pub fn forward_burst(
    pipe: &mut Pipeline,
    t: &Tables,
    in_port: u16,
    batch: &mut Batch,
    verdicts: &mut [Verdict; BATCH_SIZE],
    ports: &mut [Option<&mut dyn Port>],
    tx_counts: &mut [u64],
) -> io::Result<()> {
    pipe.process(t, in_port, batch, verdicts);
    let n = batch.len();
    let mut first_err = None;
    // Ports served so far in this burst; a burst usually touches one or two.
    let mut done = [u16::MAX; BATCH_SIZE];
    let mut n_done = 0;
    for i in 0..n {
        let Some(port) = verdicts[i].tx_port() else {
            continue;
        };
        if done[..n_done].contains(&port) {
            continue;
        }
        done[n_done] = port;
        n_done += 1;
        let mut frames: [&[u8]; BATCH_SIZE] = [&[]; BATCH_SIZE];
        let mut which = [0u8; BATCH_SIZE];
        let mut k = 0;
        for j in i..n {
            if verdicts[j].tx_port() == Some(port) {
                frames[k] = batch.pkts()[j].data();
                which[k] = j as u8;
                k += 1;
            }
        }
        let sent = match ports.get_mut(port as usize).and_then(|p| p.as_deref_mut()) {
            Some(p) => match p.tx_burst(&frames[..k]) {
                Ok(s) => s.min(k),
                Err(e) => {
                    first_err.get_or_insert(e);
                    0
                }
            },
            None => 0,
        };
        if let Some(c) = tx_counts.get_mut(port as usize) {
            *c += sent as u64;
        }
        let missing = ports.get(port as usize).is_none_or(|p| p.is_none());
        for &j in &which[sent..k] {
            let c = &mut pipe.counters;
            match verdicts[j as usize] {
                Verdict::Forward(_) => c.forwarded -= 1,
                Verdict::Reply(_) => c.replied -= 1,
                Verdict::Icmp(..) => {
                    // The original is already counted under its reason.
                    c.icmp_errors -= 1;
                    continue;
                }
                _ => continue,
            }
            c.drop(if missing {
                DropReason::PortDown
            } else {
                DropReason::TxFull
            });
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
