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

use super::layout::{be16, pseudo, put16, Layout, PROTO_TCP, PROTO_UDP, TCP_CWR, TCP_FIN, TCP_PSH};
use crate::port::{Packet, MAX_FRAME};
use crate::wire::checksum;

/// Writes segments `first..` of super-packet `frame` (parsed as `l`) into
/// `slots`, one each, and returns how many it wrote: all that remain or one
/// per slot. `None` when a segment is larger than a frame buffer.
pub fn segment_into(frame: &[u8], l: &Layout, first: usize, slots: &mut [Packet]) -> Option<usize> {
    if l.max_segment_len() > MAX_FRAME {
        return None;
    }
    let n = slots.len().min(l.segments.saturating_sub(first));
    for (k, slot) in slots[..n].iter_mut().enumerate() {
        let i = first + k;
        let len = l.segment_len(i);
        let area = slot.rx_area();
        let chunk = write_headers(frame, l, i, area, true);
        area[l.payload..len].copy_from_slice(&frame[chunk]);
        slot.set_received(len);
        slot.ts_nanos = 0;
    }
    Some(n)
}

/// Writes the headers of segment `i` of super-packet `f` (parsed as `l`)
/// into `out[..l.payload]`: every length, the IPv4 IDs and header checksums,
/// the TCP sequence number and flags (UDP length), and the transport
/// checksum over the segment's payload
/// `f[l.chunk(i)]`. With `udp6_csum`, an outer UDP-over-IPv6 checksum is
/// computed too (needed when no kernel socket sends the segment); over IPv4
/// the outer UDP checksum is left as it is (zero for VXLAN, RFC 7348).
/// Returns the payload range. Panics only if `out` is shorter than
/// `l.payload` or `f` is not the frame `l` was parsed from.
pub fn write_headers(
    f: &[u8],
    l: &Layout,
    i: usize,
    out: &mut [u8],
    udp6_csum: bool,
) -> std::ops::Range<usize> {
    let h = &mut out[..l.payload];
    h.copy_from_slice(&f[..l.payload]);
    let chunk = l.chunk(i);
    let plen = chunk.len();
    let seg_len = l.payload + plen;
    let last = i + 1 == l.segments;
    // Inner IP.
    let l3_len = seg_len - l.l3;
    if l.v6 {
        put16(h, l.l3 + 4, (l3_len - 40) as u16);
    } else {
        put16(h, l.l3 + 2, l3_len as u16);
        let id = be16(h, l.l3 + 4).wrapping_add(i as u16);
        put16(h, l.l3 + 4, id);
        put16(h, l.l3 + 10, 0);
        let c = checksum::checksum(&h[l.l3..l.l4]);
        put16(h, l.l3 + 10, c);
    }
    let pay_sum = checksum::sum(&f[chunk.clone()]);
    let l4_len = seg_len - l.l4;
    if l.udp {
        put16(h, l.l4 + 4, l4_len as u16);
        put16(h, l.l4 + 6, 0);
        let ph = pseudo(h, l.l3, l.v6, PROTO_UDP, l4_len);
        let mut c = !checksum::fold(ph + checksum::sum(&h[l.l4..]) + pay_sum);
        if c == 0 {
            // RFC 768: a computed zero is sent as all ones.
            c = 0xffff;
        }
        put16(h, l.l4 + 6, c);
    } else {
        let seq = u32::from_be_bytes([h[l.l4 + 4], h[l.l4 + 5], h[l.l4 + 6], h[l.l4 + 7]])
            .wrapping_add((i * l.size) as u32);
        h[l.l4 + 4..l.l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = h[l.l4 + 13];
        if i > 0 {
            flags &= !TCP_CWR;
        }
        if !last {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        h[l.l4 + 13] = flags;
        put16(h, l.l4 + 16, 0);
        let ph = pseudo(h, l.l3, l.v6, PROTO_TCP, l4_len);
        // The TCP header has an even length (a multiple of 4), so the
        // payload's sum continues it.
        let c = !checksum::fold(ph + checksum::sum(&h[l.l4..]) + pay_sum);
        put16(h, l.l4 + 16, c);
    }
    if let Some(t) = l.tunnel {
        if t.v6 {
            put16(h, t.l3 + 4, (seg_len - t.l3 - 40) as u16);
        } else {
            put16(h, t.l3 + 2, (seg_len - t.l3) as u16);
            put16(h, t.l3 + 10, 0);
            let ihl = usize::from(h[t.l3] & 0x0f) * 4;
            let c = checksum::checksum(&h[t.l3..t.l3 + ihl]);
            put16(h, t.l3 + 10, c);
        }
        let udp_len = seg_len - t.udp;
        put16(h, t.udp + 4, udp_len as u16);
        if t.v6 && udp6_csum {
            put16(h, t.udp + 6, 0);
            let p = pseudo(h, t.l3, true, PROTO_UDP, udp_len);
            // UDP + VXLAN + Ethernet (30) + inner IP and TCP or UDP headers
            // (multiples of 4): even, so the payload's sum continues it.
            let mut c = !checksum::fold(p + checksum::sum(&h[t.udp..]) + pay_sum);
            if c == 0 {
                c = 0xffff;
            }
            put16(h, t.udp + 6, c);
        }
    }
    chunk
}

#[cfg(test)]
#[path = "segment_tests.rs"]
pub(crate) mod tests;
