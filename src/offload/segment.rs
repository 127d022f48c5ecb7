//! Segments made from a super-packet, in software: each segment's headers
//! written from the [`Layout`], its payload either copied behind them or
//! left where it is (the UDP uplink sends the headers and a slice of the
//! super-packet side by side, one `sendmsg` iovec each).
//!
//! Layer: offload, sans-IO. [`segment_into`] serves the ports that cannot
//! take a super-packet whole (the AF_XDP uplink and veth ports, TUN queues
//! without offloads, pcap and memory ports), a batch of packet buffers at a
//! time.
//!
//! Invariant: the segments are what the kernel's `tcp_gso_segment`
//! (`__udp_gso_segment`) makes of the same super-packet: in order, each
//! complete (lengths, IPv4 IDs incremented per segment, sequence numbers
//! advanced by the segment size, CWR on the first and FIN/PSH on the last
//! only, every checksum, the outer UDP-over-IPv6 one included when asked).

use super::layout::{pseudo_sum, Layout};
use crate::port::{Packet, MAX_FRAME};
use crate::wire::{checksum, ipv4, ipv6, tcp, udp};

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
        ipv6::Packet::new_unchecked(&mut h[l.l3..])
            .set_payload_len((l3_len - ipv6::HEADER_LEN) as u16);
    } else {
        let mut ip = ipv4::Packet::new_unchecked(&mut h[l.l3..l.l4]);
        ip.set_total_len(l3_len as u16);
        ip.set_ident(ip.ident().wrapping_add(i as u16));
        ip.fill_checksum();
    }
    let pay_sum = checksum::sum(&f[chunk.clone()]);
    let l4_len = seg_len - l.l4;
    let ph = pseudo_sum(&h[l.l3..], l.v6, l.proto(), l4_len);
    if l.udp {
        let mut u = udp::Packet::new_unchecked(&mut h[l.l4..]);
        u.set_len(l4_len as u16);
        u.set_checksum(0);
        let c = !checksum::fold(ph + checksum::sum(&h[l.l4..]) + pay_sum);
        // RFC 768: a computed zero is sent as all ones.
        udp::Packet::new_unchecked(&mut h[l.l4..]).set_checksum(nonzero(c));
    } else {
        let mut t = tcp::Packet::new_unchecked(&mut h[l.l4..]);
        t.set_seq_number(t.seq_number().wrapping_add((i * l.size) as u32));
        let mut flags = t.flags();
        if i > 0 {
            flags &= !tcp::FLAG_CWR;
        }
        if !last {
            flags &= !(tcp::FLAG_FIN | tcp::FLAG_PSH);
        }
        t.set_flags(flags);
        t.set_checksum(0);
        // The TCP header has an even length (a multiple of 4), so the
        // payload's sum continues it.
        let c = !checksum::fold(ph + checksum::sum(&h[l.l4..]) + pay_sum);
        tcp::Packet::new_unchecked(&mut h[l.l4..]).set_checksum(c);
    }
    if let Some(t) = l.tunnel {
        if t.v6 {
            ipv6::Packet::new_unchecked(&mut h[t.l3..])
                .set_payload_len((seg_len - t.l3 - ipv6::HEADER_LEN) as u16);
        } else {
            let mut ip = ipv4::Packet::new_unchecked(&mut h[t.l3..]);
            ip.set_total_len((seg_len - t.l3) as u16);
            ip.fill_checksum();
        }
        let udp_len = seg_len - t.udp;
        udp::Packet::new_unchecked(&mut h[t.udp..]).set_len(udp_len as u16);
        if t.v6 && udp6_csum {
            udp::Packet::new_unchecked(&mut h[t.udp..]).set_checksum(0);
            let p = pseudo_sum(&h[t.l3..], true, ipv4::PROTO_UDP, udp_len);
            // UDP + VXLAN + Ethernet (30) + inner IP and TCP or UDP headers
            // (multiples of 4): even, so the payload's sum continues it.
            let c = !checksum::fold(p + checksum::sum(&h[t.udp..]) + pay_sum);
            udp::Packet::new_unchecked(&mut h[t.udp..]).set_checksum(nonzero(c));
        }
    }
    chunk
}

/// A computed UDP checksum of zero is sent as all ones (RFC 768: zero means
/// none was computed).
#[inline]
fn nonzero(c: u16) -> u16 {
    if c == 0 {
        0xffff
    } else {
        c
    }
}

#[cfg(test)]
#[path = "segment_tests.rs"]
pub(crate) mod tests;
