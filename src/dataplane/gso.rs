//! Segmentation in software: a TCP super-packet cut into frames for a port
//! that cannot take it whole (the AF_XDP uplink and veth ports, TUN queues
//! without offloads, pcap and memory ports).
//!
//! Layer: data plane, sans-IO. The headers of each segment come from
//! [`tso::write_headers`]; this module copies each segment's payload behind
//! them, into the caller's packet buffers, a batch at a time.
//!
//! Invariant: the segments written, across calls, are exactly the
//! super-packet's, in order, each complete (lengths, IPv4 IDs, sequence
//! numbers, flags and checksums, the outer UDP-over-IPv6 one included).

use crate::port::{Packet, MAX_FRAME};
use crate::wire::tso;

/// Writes segments `first..` of super-packet `frame` (parsed as `l`) into
/// `slots`, one each, and returns how many it wrote: all that remain or one
/// per slot. `None` when a segment is larger than a frame buffer.
pub fn segment_into(
    frame: &[u8],
    l: &tso::Layout,
    first: usize,
    slots: &mut [Packet],
) -> Option<usize> {
    if l.max_segment_len() > MAX_FRAME {
        return None;
    }
    let n = slots.len().min(l.segments.saturating_sub(first));
    for (k, slot) in slots[..n].iter_mut().enumerate() {
        let i = first + k;
        let len = l.segment_len(i);
        let area = slot.rx_area();
        let chunk = tso::write_headers(frame, l, i, area, true);
        area[l.payload..len].copy_from_slice(&frame[chunk]);
        slot.set_received(len);
        slot.ts_nanos = 0;
    }
    Some(n)
}
