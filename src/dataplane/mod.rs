//! Data plane: the batch pipeline that runs on the wire and in replay.
//!
//! - [`drops`]: drop reasons (declared once) and per-worker counters.
//! - [`tables`]: the immutable forwarding snapshot a worker reads per batch.
//! - [`pipeline`]: classify, check, look up, rewrite; a verdict per packet.
//!
//! [`forward_burst`] ties a pipeline to ports: it is the one loop body both
//! the live workers and `vxrouter replay` run, so replay tests prove the code
//! the wire runs. Sans-IO apart from the `Port` calls it is handed. A
//! super-packet is parsed there once ([`offload::Layout::parse`]) and the
//! layout goes to the port that takes it whole, or cuts it
//! ([`offload::segment_into`]) for one that does not.

pub mod drops;
pub mod pipeline;
pub mod tables;

use std::io;

use crate::offload;
use crate::port::{Batch, Port, BATCH_SIZE};

pub use drops::{CounterSummary, Counters, DropReason, NetCounters, NO_NET};
pub use pipeline::{Pipeline, Verdict};
pub use tables::{NextHop, PortInfo, PortRole, Tables, UPLINK};

/// Processes one received batch and transmits what it produced.
///
/// `ports[i]` is port `i` of `t.ports` as this worker sees it (`None` when
/// the worker does not own a queue of it: frames for it drop as
/// `port_down`). `tx_counts[i]` counts the wire packets port `i` accepted
/// (a super-packet counts its segments). Frames a port refuses are moved
/// from their verdict's counter to `tx_full`. A super-packet goes to a port
/// that takes it whole ([`Port::tx_gso`]), else it is cut into segments
/// ([`offload::segment_into`]) that go through `tx_burst` like any frame; the
/// frames of one port leave in the order of the batch either way.
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
    let Pipeline {
        counters,
        scratch,
        bucket_of,
        ..
    } = pipe;
    for i in 0..n {
        let Some(port) = verdicts[i].tx_port() else {
            continue;
        };
        if done[..n_done].contains(&port) {
            continue;
        }
        done[n_done] = port;
        n_done += 1;
        let encap = match t.ports.get(port as usize).map(|p| p.role) {
            Some(PortRole::Uplink) => offload::Encap::Vxlan,
            Some(PortRole::Veth) => offload::Encap::Eth,
            _ => offload::Encap::Ip,
        };
        let mut out = Out {
            port: ports.get_mut(port as usize).and_then(|p| p.as_deref_mut()),
            encap,
            counters: &mut *counters,
            bucket_of,
            sent: 0,
            err: None,
        };
        // The run of one-frame packets not yet handed over.
        let mut frames: [&[u8]; BATCH_SIZE] = [&[]; BATCH_SIZE];
        let mut which = [0u8; BATCH_SIZE];
        let mut k = 0;
        for j in i..n {
            if verdicts[j].tx_port() != Some(port) {
                continue;
            }
            let pkt = &batch.pkts()[j];
            let Some(g) = pkt.gso else {
                frames[k] = pkt.data();
                which[k] = j as u8;
                k += 1;
                continue;
            };
            out.burst(&frames[..k], &which[..k], verdicts);
            k = 0;
            out.super_packet(pkt.data(), g, j, verdicts[j], scratch);
        }
        out.burst(&frames[..k], &which[..k], verdicts);
        if let Some(c) = tx_counts.get_mut(port as usize) {
            *c += out.sent;
        }
        if let Some(e) = out.err {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One output port while a burst is handed to it.
struct Out<'a, 'p> {
    port: Option<&'a mut (dyn Port + 'p)>,
    /// How this port's frames are laid out in front of their IP packet.
    encap: offload::Encap,
    counters: &'a mut NetCounters,
    /// The bucket each packet of the batch counted in.
    bucket_of: &'a [u32; BATCH_SIZE],
    /// Wire packets the port took.
    sent: u64,
    err: Option<io::Error>,
}

impl Out<'_, '_> {
    /// Moves `n` refused wire packets of verdict `v` of batch index `j`
    /// from its counter to the drop reason (`port_down` without a port,
    /// `tx_full` else), in the packet's network's bucket.
    fn refuse(&mut self, j: usize, v: Verdict, n: u64) {
        let reason = if self.port.is_none() {
            DropReason::PortDown
        } else {
            DropReason::TxFull
        };
        self.recount(j, v, n, reason);
    }

    /// Moves `n` wire packets of verdict `v` of batch index `j` from its
    /// counter to `reason`.
    fn recount(&mut self, j: usize, v: Verdict, n: u64, reason: DropReason) {
        let b = self.bucket_of.get(j).map_or(NO_NET, |&b| b as usize);
        let c = self.counters.bucket(b);
        match v {
            Verdict::Forward(_) => c.forwarded -= n,
            Verdict::Reply(_) => c.replied -= n,
            // The original is already counted under its reason.
            Verdict::Icmp(..) => {
                c.icmp_errors -= 1;
                return;
            }
            _ => return,
        }
        c.drop_n(reason, n);
    }

    /// Hands one-frame packets to `tx_burst`; `which` are their batch indices.
    fn burst(&mut self, frames: &[&[u8]], which: &[u8], verdicts: &[Verdict; BATCH_SIZE]) {
        if frames.is_empty() {
            return;
        }
        let sent = match self.port.as_deref_mut() {
            Some(p) => match p.tx_burst(frames) {
                Ok(s) => s.min(frames.len()),
                Err(e) => {
                    self.err.get_or_insert(e);
                    0
                }
            },
            None => 0,
        };
        self.sent += sent as u64;
        for &j in &which[sent..] {
            self.refuse(usize::from(j), verdicts[j as usize], 1);
        }
    }

    /// Hands one super-packet over: whole where the port takes it, else as
    /// segments cut into `scratch`.
    fn super_packet(
        &mut self,
        frame: &[u8],
        g: crate::port::Gso,
        j: usize,
        v: Verdict,
        scratch: &mut Batch,
    ) {
        let segs = u64::from(g.segs.max(1));
        let Some(p) = self.port.as_deref_mut() else {
            self.refuse(j, v, segs);
            return;
        };
        // The annotation must describe the bytes: its segment count is what
        // every counter counted.
        let layout = match offload::Layout::parse(frame, self.encap, g) {
            Ok(l) if l.segments as u64 == segs => l,
            _ => {
                self.recount(j, v, segs, DropReason::GsoMalformed);
                return;
            }
        };
        if p.takes_gso() {
            match p.tx_gso(frame, &layout) {
                Ok(true) => self.sent += segs,
                Ok(false) => self.refuse(j, v, segs),
                Err(e) => {
                    self.err.get_or_insert(e);
                    self.refuse(j, v, segs);
                }
            }
            return;
        }
        if layout.max_segment_len() > crate::port::MAX_FRAME {
            self.recount(j, v, segs, DropReason::GsoMalformed);
            return;
        }
        let mut next = 0;
        let mut refused = 0u64;
        while next < layout.segments {
            let Some(k) = offload::segment_into(frame, &layout, next, scratch.slots_mut()) else {
                refused += (layout.segments - next) as u64;
                break;
            };
            next += k;
            scratch.set_len(k);
            let mut seg_frames: [&[u8]; BATCH_SIZE] = [&[]; BATCH_SIZE];
            for (f, pk) in seg_frames.iter_mut().zip(scratch.pkts()) {
                *f = pk.data();
            }
            let sent = match p.tx_burst(&seg_frames[..k]) {
                Ok(s) => s.min(k),
                Err(e) => {
                    self.err.get_or_insert(e);
                    0
                }
            };
            self.sent += sent as u64;
            refused += (k - sent) as u64;
        }
        scratch.clear();
        if refused > 0 {
            self.refuse(j, v, refused.min(segs));
        }
    }
}
