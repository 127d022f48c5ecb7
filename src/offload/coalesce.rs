//! Coalescing: packets merged into super-packets by the kernel's GRO rules,
//! where the router receives many segments of one flow at once: the frames a
//! worker round sends to a container port that takes super-packets (TUN
//! queues with `IFF_VNET_HDR`, veth ports on AF_PACKET with
//! `PACKET_VNET_HDR`), and the VXLAN trains the UDP uplink reads with
//! `UDP_GRO`.
//!
//! Layer: offload, sans-IO: the port hands in frames and a writer, and the
//! writer makes the system call. [`Coalescer`] keeps one copy of each frame
//! of a worker round in an arena allocated at start-up. While frames are
//! pushed it chains the in-order segments of each flow into groups;
//! [`Coalescer::flush`] hands every group to the writer as one super-packet:
//! a virtio-net header (TSO or USO, partial checksum) and a list of slices
//! (the first segment whole, then the payload of every other one), which
//! the port passes to `writev`/`sendmsg`. No byte is copied a second time
//! and nothing is allocated per round.
//!
//! A TCP segment joins the open group of its flow only when the kernel would
//! have merged it too: same addresses and ports, IPv4 without options or
//! fragments (IPv6 without extension headers), same TOS/TTL/DF (traffic
//! class, flow label, hop limit), same ACK number, window and TCP options,
//! flags ACK alone (PSH allowed on the last segment), the next sequence
//! number, a payload no longer than the first one's (a shorter one closes
//! the group), IPv4 IDs counting up unless DF is set, and a valid TCP
//! checksum: the super-packet goes to the kernel with
//! `VIRTIO_NET_HDR_F_NEEDS_CSUM`, so nobody would check the segments again.
//! UDP datagrams of one flow merge by the kernel's UDP GRO rules (equal
//! sizes, the last may be shorter, every checksum present and valid).
//!
//! [`coalesce_into`] applies the same rules (`tcp_run`, `udp_run`) to a
//! VXLAN train, so a train becomes one super-packet exactly where
//! [`Coalescer`] would have made one of its segments.
//!
//! Invariants:
//! - Within a flow, frames are written in the order they were pushed: any
//!   frame of the flow that cannot join its open group (a pure ACK, FIN, a
//!   gap, a bad checksum) closes that group, and writes go out in the order
//!   of their first frame.
//! - A group has at most [`MAX_SUPER_SEGS`] segments (the kernel's own GRO
//!   limit) and at most [`MAX_SUPER_LEN`] bytes of IP packet.
//! - [`Coalescer::flush`] accounts for every frame pushed since the previous
//!   flush exactly once: written, refused by the kernel, dropped after EAGAIN,
//!   or invalid (empty or over 64 KiB, never written).

use std::io::{self, IoSlice};
use std::net::SocketAddr;

use tun_rs::{
    VirtioNetHdr, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_GSO_UDP_L4,
};

use super::layout::pseudo_sum;
use super::outer::{synth_headers, MIN_VXLAN};
use super::vnet::F_NEEDS_CSUM;
use super::{Gso, MAX_SUPER_L3};
use crate::port::{sys, Packet, BATCH_SIZE, MAX_FRAME};
use crate::wire::tcp::{FLAG_ACK, FLAG_PSH};
use crate::wire::{checksum, ipv4, ipv6, tcp, udp};

/// Largest super-packet [`Coalescer`] builds: the IPv4 total length limit.
pub const MAX_SUPER_LEN: usize = 65535;

/// Frames [`Coalescer`] collects before it must be flushed: two bursts of the
/// uplink, so one worker round coalesces.
pub const QUEUE_FRAMES: usize = 2 * BATCH_SIZE;

/// Segments per super-packet (the kernel's GRO stops at 64 too).
pub const MAX_SUPER_SEGS: usize = 64;

/// No next frame in a group's chain.
const END: u32 = u32::MAX;

/// What one [`Coalescer::flush`] did with the frames pushed since the last one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushOutcome {
    /// Frames written (a super-packet counts its segments).
    pub written: u64,
    /// Write syscalls made successfully.
    pub writes: u64,
    /// Of those, super-packets (more than one frame).
    pub gso_writes: u64,
    /// Frames the kernel refused with an error other than EAGAIN.
    pub errors: u64,
    /// Frames not written because a write returned EAGAIN.
    pub dropped: u64,
    /// Frames that cannot be written at all (empty, over 64 KiB).
    pub invalid: u64,
}

impl FlushOutcome {
    /// Every frame this outcome accounts for.
    pub fn frames(&self) -> u64 {
        self.written + self.errors + self.dropped + self.invalid
    }
}

/// One queued frame: where it lies in the arena and what its TCP parse said.
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: u32,
    len: u32,
    /// IP header + TCP header bytes (0 when not TCP we can parse).
    hlen: u16,
    /// Next frame of the same group.
    next: u32,
}

/// A run of frames written together (one frame for anything not coalesced).
#[derive(Debug, Clone, Copy)]
struct Group {
    head: u32,
    tail: u32,
    segs: u16,
    /// Payload bytes of the first segment: the segment size.
    gso: u16,
    next_seq: u32,
    /// IP packet bytes: the head's whole packet plus the others' payloads.
    bytes: u32,
    psh: bool,
    v6: bool,
    /// A group of UDP datagrams (one flow, equal sizes), else TCP segments.
    udp: bool,
}

impl Group {
    /// Whether a frame with `pay` payload bytes still fits: no longer than
    /// the segment size, within the segment and byte limits.
    fn has_room(&self, pay: usize) -> bool {
        pay <= usize::from(self.gso)
            && usize::from(self.segs) < MAX_SUPER_SEGS
            && self.bytes as usize + pay <= MAX_SUPER_LEN
    }
}

/// What a TCP segment looks like to the coalescer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tcp {
    pub(crate) v6: bool,
    /// IP header length (transport header offset).
    pub(crate) l4: usize,
    /// IP + TCP header length (payload offset).
    pub(crate) hlen: usize,
    pub(crate) seq: u32,
    pub(crate) flags: u8,
}

impl Tcp {
    pub(crate) fn payload(&self, f: &[u8]) -> usize {
        f.len() - self.hlen
    }
}

/// The IP header of a packet the coalescer may take, carrying `proto`:
/// IPv4 with a 20-byte header and no fragmentation, or IPv6 with `proto` as
/// the next header, the length field matching the frame exactly. Returns
/// whether it is IPv6 and where the transport header starts.
fn plain_ip(f: &[u8], proto: u8) -> Option<(bool, usize)> {
    match f.first()? >> 4 {
        4 => {
            let ip = ipv4::Packet::new_unchecked(f.get(..ipv4::MIN_HEADER_LEN)?);
            (ip.header_len() == ipv4::MIN_HEADER_LEN
                && ip.protocol() == proto
                && usize::from(ip.total_len()) == f.len()
                && !ip.is_fragment())
            .then_some((false, ipv4::MIN_HEADER_LEN))
        }
        6 => {
            let ip = ipv6::Packet::new_unchecked(f.get(..ipv6::HEADER_LEN)?);
            (ip.next_header() == proto && ip.total_len() == f.len())
                .then_some((true, ipv6::HEADER_LEN))
        }
        _ => None,
    }
}

/// Parses an IP packet as a TCP segment the kernel could coalesce: IPv4
/// with a 20-byte header and no fragmentation, or IPv6 with TCP as the next
/// header; lengths must match the frame exactly (no padding, no truncation).
pub(crate) fn parse(f: &[u8]) -> Option<Tcp> {
    let (v6, l4) = plain_ip(f, ipv4::PROTO_TCP)?;
    let t = tcp::Packet::new_checked(&f[l4..]).ok()?;
    Some(Tcp {
        v6,
        l4,
        hlen: l4 + t.header_len(),
        seq: t.seq_number(),
        flags: t.flags(),
    })
}

/// Same IP version and the same two addresses, in the same direction;
/// `false` for anything too short to tell.
pub(crate) fn same_hosts(a: &[u8], b: &[u8]) -> bool {
    let addrs = match (a.first().map(|x| x >> 4), b.first().map(|x| x >> 4)) {
        (Some(4), Some(4)) => 12..20,
        (Some(6), Some(6)) => 8..40,
        _ => return false,
    };
    matches!((a.get(addrs.clone()), b.get(addrs)), (Some(x), Some(y)) if x == y)
}

/// Same addresses and ports (both parsed, same family).
pub(crate) fn same_flow(a: &[u8], b: &[u8], v6: bool) -> bool {
    let (addrs, l4) = if v6 { (8..40, 40) } else { (12..20, 20) };
    a[addrs.clone()] == b[addrs] && a[l4..l4 + 4] == b[l4..l4 + 4]
}

/// Whether `b` may follow `a` in one super-packet, seen from the headers
/// alone (the caller checks the sequence number, sizes and checksum).
pub(crate) fn headers_match(a: &[u8], b: &[u8], ta: &Tcp, tb: &Tcp) -> bool {
    if ta.hlen != tb.hlen {
        return false;
    }
    let ip_same = if ta.v6 {
        // Version, traffic class, flow label; hop limit.
        a[..4] == b[..4] && a[7] == b[7]
    } else {
        // TOS; DF/MF and offset (checked zero); TTL.
        a[1] == b[1] && a[6..9] == b[6..9]
    };
    let (x, y) = (
        tcp::Packet::new_unchecked(&a[ta.l4..]),
        tcp::Packet::new_unchecked(&b[tb.l4..]),
    );
    // ACK number; reserved bits (AccECN's AE; the data offsets are equal);
    // window (the split gives every segment the first one's, so a window
    // update must not be merged: the kernel compares the whole flag word,
    // window included); TCP options, byte for byte (timestamps included).
    ip_same
        && x.ack_number() == y.ack_number()
        && x.reserved() == y.reserved()
        && x.window() == y.window()
        && x.options() == y.options()
}

/// Whether IPv4 packet `b` may stand at position `pos` of a super-packet
/// that starts with `a` as far as the IPv4 ID goes: without DF the kernel's
/// GRO merges only IDs that count up from the first (and the split gives
/// segment `i` the first's ID plus `i`); with DF the ID carries nothing
/// (RFC 6864). IPv6 has none. Both headers are parsed; DF is compared
/// elsewhere.
pub(crate) fn id_follows(a: &[u8], b: &[u8], v6: bool, pos: usize) -> bool {
    if v6 {
        return true;
    }
    let (a, b) = (
        ipv4::Packet::new_unchecked(a),
        ipv4::Packet::new_unchecked(b),
    );
    a.dont_frag() || b.ident() == a.ident().wrapping_add(pos as u16)
}

/// Whether the TCP checksum of a parsed segment is right.
pub(crate) fn tcp_checksum_ok(f: &[u8], t: &Tcp) -> bool {
    l4_checksum_ok(f, t.v6, t.l4, ipv4::PROTO_TCP)
}

/// Whether the transport checksum (protocol `proto`, header at `l4`) of a
/// parsed IP packet is right, pseudo-header included.
fn l4_checksum_ok(f: &[u8], v6: bool, l4: usize, proto: u8) -> bool {
    let seg = &f[l4..];
    checksum::fold(pseudo_sum(f, v6, proto, seg.len()) + checksum::sum(seg)) == 0xffff
}

/// A run of frames that coalesce into one TCP super-packet (see [`tcp_run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    /// Frames in the run (1: nothing to coalesce).
    pub(crate) count: usize,
    /// IP + TCP header bytes, the same in every frame of the run.
    pub(crate) hlen: usize,
    /// The first frame's payload bytes: the segment size.
    pub(crate) size: usize,
    /// IP bytes of the super-packet: the first frame's packet plus every
    /// other frame's payload.
    pub(crate) bytes: usize,
    /// The last frame had PSH.
    pub(crate) psh: bool,
    /// UDP datagrams (the run is a UDP super-packet), else TCP segments.
    pub(crate) udp: bool,
}

/// The longest run of `frames`, from the first, that the kernel's GRO would
/// merge into one TCP super-packet, by the rules of [`Coalescer`] (one flow, in
/// sequence, equal headers, ACK alone or PSH on the last, a shorter segment
/// only last, every TCP and IPv4 header checksum valid), at most `max_segs` frames and
/// `max_bytes` bytes of IP packet. Each frame is `prefix` bytes of
/// encapsulation, the same in all of them (VXLAN and inner Ethernet), then
/// the IP packet. `None` when there is no frame.
pub(crate) fn tcp_run<'a>(
    mut frames: impl Iterator<Item = &'a [u8]>,
    prefix: usize,
    max_bytes: usize,
    max_segs: usize,
) -> Option<Run> {
    let first = frames.next()?;
    let alone = Run {
        count: 1,
        hlen: 0,
        size: 0,
        bytes: first.len().saturating_sub(prefix),
        psh: false,
        udp: false,
    };
    let Some(ip0) = first.get(prefix..) else {
        return Some(alone);
    };
    let Some(t0) = parse(ip0) else {
        return Some(alone);
    };
    let size = t0.payload(ip0);
    // The super-packet's header is rebuilt from the first one's: a bad IPv4
    // header checksum anywhere in the run would be lost, so each is checked
    // (the kernel's GRO does the same).
    let ip_ok = |ip: &[u8], t: &Tcp| t.v6 || ipv4::Packet::new_unchecked(ip).verify_checksum();
    // PSH on the first ends the run before it starts.
    if size == 0 || t0.flags != FLAG_ACK {
        return Some(alone);
    }
    let mut run = Run {
        count: 1,
        hlen: t0.hlen,
        size,
        bytes: ip0.len(),
        psh: false,
        udp: false,
    };
    let mut next_seq = t0.seq.wrapping_add(size as u32);
    let mut checked_first = false;
    for f in frames {
        if run.count >= max_segs || f.len() < prefix || f[..prefix] != first[..prefix] {
            break;
        }
        let ip = &f[prefix..];
        let Some(t) = parse(ip) else {
            break;
        };
        let pay = t.payload(ip);
        let joins = t.v6 == t0.v6
            && pay > 0
            && pay <= size
            && t.seq == next_seq
            && (t.flags == FLAG_ACK || t.flags == FLAG_ACK | FLAG_PSH)
            && run.bytes + pay <= max_bytes
            && same_flow(ip0, ip, t0.v6)
            && headers_match(ip0, ip, &t0, &t)
            && id_follows(ip0, ip, t0.v6, run.count)
            && ip_ok(ip, &t)
            && tcp_checksum_ok(ip, &t);
        if !joins {
            break;
        }
        // The first is checked only once a second joins it: a frame that
        // stays alone is checked where it is delivered.
        if !checked_first {
            if !ip_ok(ip0, &t0) || !tcp_checksum_ok(ip0, &t0) {
                break;
            }
            checked_first = true;
        }
        run.count += 1;
        run.bytes += pay;
        next_seq = next_seq.wrapping_add(pay as u32);
        if t.flags & FLAG_PSH != 0 {
            run.psh = true;
            break;
        }
        if pay < size {
            break;
        }
    }
    if run.count == 1 {
        return Some(alone);
    }
    Some(run)
}

/// What a UDP datagram looks like to the coalescer: IPv4 with a 20-byte
/// header and no fragmentation, or IPv6 with UDP as the next header; the
/// lengths match the frame exactly.
fn parse_udp(f: &[u8]) -> Option<(bool, usize)> {
    let (v6, l4) = plain_ip(f, ipv4::PROTO_UDP)?;
    let u = udp::Packet::new_checked(&f[l4..]).ok()?;
    (usize::from(u.len()) == f.len() - l4 && !u.payload().is_empty()).then_some((v6, l4))
}

/// Whether datagram `b` may follow `a` in one UDP super-packet, from the
/// IP header: TOS, DF and TTL (traffic class, flow label and hop limit),
/// protocol and addresses; the caller checks the ports.
fn same_udp_headers(a: &[u8], b: &[u8], v6: bool) -> bool {
    if v6 {
        a[..4] == b[..4] && a[6..40] == b[6..40]
    } else {
        a[1] == b[1] && a[6..10] == b[6..10] && a[12..20] == b[12..20]
    }
}

/// Whether a parsed datagram's UDP checksum is right; a zero one (IPv4:
/// none sent) counts as right, as for the kernel.
pub(crate) fn udp_checksum_ok(f: &[u8], v6: bool, l4: usize) -> bool {
    (!v6 && udp::Packet::new_unchecked(&f[l4..]).checksum() == 0)
        || l4_checksum_ok(f, v6, l4, ipv4::PROTO_UDP)
}

/// The longest run of `frames`, from the first, that the kernel's UDP GRO
/// would merge into one UDP super-packet: one flow (addresses, ports), the
/// same IP header fields (TOS, DF, TTL; traffic class, flow label, hop
/// limit), payloads as long as the first's (a shorter one only last), every
/// IPv4 header and UDP checksum valid and none of them zero, IPv4 IDs
/// counting up unless DF is set, at most
/// `max_segs` frames and `max_bytes` bytes of IP packet; frames framed as
/// for [`tcp_run`]. `None` when there is no frame or the first is not UDP.
pub(crate) fn udp_run<'a>(
    mut frames: impl Iterator<Item = &'a [u8]>,
    prefix: usize,
    max_bytes: usize,
    max_segs: usize,
) -> Option<Run> {
    let first = frames.next()?;
    let ip0 = first.get(prefix..)?;
    let (v6, l4) = parse_udp(ip0)?;
    let hlen = l4 + udp::HEADER_LEN;
    let u0 = udp::Packet::new_unchecked(&ip0[l4..]);
    let size = ip0.len() - hlen;
    let mut run = Run {
        count: 1,
        hlen,
        size,
        bytes: ip0.len(),
        psh: false,
        udp: true,
    };
    if u0.checksum() == 0 {
        // The kernel's UDP GRO merges no datagram sent without a checksum
        // (the split would give each one a checksum it did not carry). Over
        // IPv6 a zero is not allowed at all (RFC 8200), yet passes the sum
        // check when the real checksum would be 0xffff: not merged either.
        return Some(run);
    }
    let same_ip = |a: &[u8], b: &[u8]| same_udp_headers(a, b, v6);
    let ip_ok = |ip: &[u8]| v6 || ipv4::Packet::new_unchecked(ip).verify_checksum();
    let mut checked_first = false;
    for f in frames {
        if run.count >= max_segs || f.len() < prefix || f[..prefix] != first[..prefix] {
            break;
        }
        let ip = &f[prefix..];
        // Same family and header length first: the payload length below
        // is counted with the first one's.
        if parse_udp(ip) != Some((v6, l4)) {
            break;
        }
        let pay = ip.len() - hlen;
        let u = udp::Packet::new_unchecked(&ip[l4..]);
        let joins = pay <= size
            && run.bytes + pay <= max_bytes
            && same_ip(ip0, ip)
            && (u.src_port(), u.dst_port()) == (u0.src_port(), u0.dst_port())
            && u.checksum() != 0
            && id_follows(ip0, ip, v6, run.count)
            && ip_ok(ip)
            && udp_checksum_ok(ip, v6, l4);
        if !joins {
            break;
        }
        if !checked_first {
            if !ip_ok(ip0) || !udp_checksum_ok(ip0, v6, l4) {
                break;
            }
            checked_first = true;
        }
        run.count += 1;
        run.bytes += pay;
        if pay < size {
            break;
        }
    }
    Some(run)
}

/// Collects the frames of a worker round for one port and writes them with
/// GRO: in-order segments of a TCP flow become one super-packet with a
/// virtio-net TSO header asking the kernel to finish the checksum; other
/// frames are written as they are, behind a zero header.
pub struct Coalescer {
    arena: Vec<u8>,
    slots: Vec<Slot>,
    groups: Vec<Group>,
    /// Groups that may still grow (indices into `groups`).
    open: Vec<u32>,
    invalid: u64,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("queued", &self.slots.len())
            .field("groups", &self.groups.len())
            .finish()
    }
}

impl Coalescer {
    /// Room for `frames` frames of up to [`MAX_FRAME`] bytes (and always for
    /// one of [`MAX_SUPER_LEN`]).
    pub fn new(frames: usize) -> Coalescer {
        let frames = frames.max(1);
        Coalescer {
            arena: Vec::with_capacity((frames * MAX_FRAME).max(MAX_SUPER_LEN)),
            slots: Vec::with_capacity(frames),
            groups: Vec::with_capacity(frames),
            open: Vec::with_capacity(frames),
            invalid: 0,
        }
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty() && self.invalid == 0
    }

    fn frame(&self, i: u32) -> &[u8] {
        let s = &self.slots[i as usize];
        &self.arena[s.start as usize..(s.start + s.len) as usize]
    }

    /// Queues a copy of the IP packet `frame`; `false` when full (flush,
    /// then push again). An empty or over-64 KiB frame is taken and counted
    /// as invalid.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        if frame.is_empty() || frame.len() > MAX_SUPER_LEN {
            self.invalid += 1;
            return true;
        }
        if self.slots.len() == self.slots.capacity()
            || self.arena.len() + frame.len() > self.arena.capacity()
        {
            return false;
        }
        let idx = self.slots.len() as u32;
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(frame);
        let tcp = parse(frame);
        let udp = if tcp.is_none() {
            parse_udp(frame)
        } else {
            None
        };
        self.slots.push(Slot {
            start,
            len: frame.len() as u32,
            hlen: tcp.map_or(
                udp.map_or(0, |(_, l4)| (l4 + udp::HEADER_LEN) as u16),
                |t| t.hlen as u16,
            ),
            next: END,
        });
        if let Some((v6, l4)) = udp {
            self.push_udp(idx, v6, l4);
            return true;
        }
        let Some(t) = tcp else {
            // Nothing joins it; and what came before it between the same
            // hosts must not be joined by what comes after (its flow may
            // be among them: a fragment has no ports to tell).
            self.close_pair(frame);
            self.new_group(idx, None, false, false);
            return true;
        };
        let pay = t.payload(frame);
        let candidate = pay > 0
            && (t.flags == FLAG_ACK || t.flags == FLAG_ACK | FLAG_PSH)
            && tcp_checksum_ok(frame, &t);
        // The open group of this flow, if any.
        let found = self.open.iter().position(|&g| {
            let grp = &self.groups[g as usize];
            !grp.udp && grp.v6 == t.v6 && same_flow(self.frame(grp.head), frame, t.v6)
        });
        if let Some(pos) = found {
            let g = self.open[pos] as usize;
            let grp = self.groups[g];
            let head = self.frame(grp.head);
            let head_t = parse(head);
            let joins = candidate
                && head_t.is_some_and(|ht| headers_match(head, frame, &ht, &t))
                && id_follows(head, frame, t.v6, usize::from(grp.segs))
                && t.seq == grp.next_seq
                && grp.has_room(pay);
            if joins {
                let grp = self.link(g, idx, pay);
                grp.next_seq = t.seq.wrapping_add(pay as u32);
                grp.psh = t.flags & FLAG_PSH != 0;
                // A short segment or PSH ends what the sender sent as one.
                let full = usize::from(grp.segs) >= MAX_SUPER_SEGS;
                if grp.psh || pay < usize::from(grp.gso) || full {
                    self.open.swap_remove(pos);
                }
                return true;
            }
            // Anything else of this flow ends its group: frames of one flow
            // are written in push order.
            self.open.swap_remove(pos);
        }
        // A segment with PSH is the end of what the sender sent as one: it
        // starts no group.
        let open = (candidate && t.flags & FLAG_PSH == 0)
            .then(|| (pay as u16, t.seq.wrapping_add(pay as u32)));
        self.new_group(idx, open, t.v6, false);
        true
    }

    /// The UDP side of [`Coalescer::push`] for the datagram just queued as
    /// `idx` (IP header `l4` bytes): it joins its flow's open group when the
    /// kernel's UDP GRO would merge it, by the rules of `udp_run`.
    fn push_udp(&mut self, idx: u32, v6: bool, l4: usize) {
        let hlen = l4 + udp::HEADER_LEN;
        let (pay, candidate) = {
            let f = self.frame(idx);
            // No checksum (or, over IPv6, a forbidden zero): the kernel's
            // UDP GRO would not merge it.
            let sent_without = udp::Packet::new_unchecked(&f[l4..]).checksum() == 0;
            (f.len() - hlen, !sent_without && udp_checksum_ok(f, v6, l4))
        };
        let found = self.open.iter().position(|&g| {
            let grp = &self.groups[g as usize];
            grp.udp && grp.v6 == v6 && same_flow(self.frame(grp.head), self.frame(idx), v6)
        });
        if let Some(pos) = found {
            let g = self.open[pos] as usize;
            let grp = self.groups[g];
            let (head, f) = (self.frame(grp.head), self.frame(idx));
            let joins = candidate
                && same_udp_headers(head, f, v6)
                && id_follows(head, f, v6, usize::from(grp.segs))
                && grp.has_room(pay);
            if joins {
                let grp = self.link(g, idx, pay);
                // A shorter datagram is the last of a GSO send.
                if pay < usize::from(grp.gso) || usize::from(grp.segs) >= MAX_SUPER_SEGS {
                    self.open.swap_remove(pos);
                }
                return;
            }
            self.open.swap_remove(pos);
        }
        self.new_group(idx, candidate.then_some((pay as u16, 0)), v6, true);
    }

    /// Closes every open group between the same two hosts as `frame` (an
    /// IP packet of either family; anything shorter closes nothing).
    fn close_pair(&mut self, frame: &[u8]) {
        let mut i = 0;
        while i < self.open.len() {
            let head = self.frame(self.groups[self.open[i] as usize].head);
            if same_hosts(head, frame) {
                self.open.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Whether a frame between the same two hosts as `frame` is queued: a
    /// frame written past the queue must first see it written, so that no
    /// flow is reordered.
    pub fn holds_pair(&self, frame: &[u8]) -> bool {
        (0..self.slots.len() as u32).any(|i| same_hosts(self.frame(i), frame))
    }

    /// Appends frame `idx` with `pay` payload bytes to group `g`.
    fn link(&mut self, g: usize, idx: u32, pay: usize) -> &mut Group {
        let tail = self.groups[g].tail;
        self.slots[tail as usize].next = idx;
        let grp = &mut self.groups[g];
        grp.tail = idx;
        grp.segs += 1;
        grp.bytes += pay as u32;
        grp
    }

    /// Starts a group at frame `head`; `open` carries the segment size and
    /// the next expected sequence number when others may join it.
    fn new_group(&mut self, head: u32, open: Option<(u16, u32)>, v6: bool, udp: bool) {
        let len = self.slots[head as usize].len;
        if open.is_some() {
            self.open.push(self.groups.len() as u32);
        }
        let (gso, next_seq) = open.unwrap_or((0, 0));
        self.groups.push(Group {
            head,
            tail: head,
            segs: 1,
            gso,
            next_seq,
            bytes: len,
            psh: false,
            v6,
            udp,
        });
    }

    /// Rewrites the head of a multi-segment group into the super-packet's
    /// headers (lengths, IPv4 checksum, PSH, partial TCP checksum) and
    /// returns its virtio-net header.
    fn finish_head(&mut self, g: &Group) -> VirtioNetHdr {
        let s = self.slots[g.head as usize];
        let hlen = usize::from(s.hlen);
        let p = &mut self.arena[s.start as usize..(s.start + s.len) as usize];
        let bytes = g.bytes as usize;
        let l4 = rewrite_head(p, g.v6, g.udp, g.psh, bytes);
        let proto = if g.udp {
            ipv4::PROTO_UDP
        } else {
            ipv4::PROTO_TCP
        };
        // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum.
        let partial = checksum::fold(pseudo_sum(p, g.v6, proto, bytes - l4));
        let csum_offset = if g.udp {
            udp::Packet::new_unchecked(&mut p[l4..]).set_checksum(partial);
            udp::fields::CHECKSUM
        } else {
            tcp::Packet::new_unchecked(&mut p[l4..]).set_checksum(partial);
            tcp::fields::CHECKSUM
        };
        VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: match (g.udp, g.v6) {
                (true, _) => VIRTIO_NET_HDR_GSO_UDP_L4,
                (false, true) => VIRTIO_NET_HDR_GSO_TCPV6,
                (false, false) => VIRTIO_NET_HDR_GSO_TCPV4,
            },
            hdr_len: hlen as u16,
            gso_size: g.gso,
            csum_start: l4 as u16,
            csum_offset: csum_offset as u16,
        }
    }

    /// Writes every queued group with `write(header, slices)`, one call per
    /// packet, in the order of each group's first frame; the slices together
    /// are the IP packet. After EAGAIN the rest is dropped: the frames were
    /// already taken from the caller.
    pub fn flush<W>(&mut self, mut write: W) -> FlushOutcome
    where
        W: FnMut(&VirtioNetHdr, &[IoSlice<'_>]) -> io::Result<()>,
    {
        let mut out = FlushOutcome {
            invalid: std::mem::take(&mut self.invalid),
            ..FlushOutcome::default()
        };
        let mut blocked = false;
        for gi in 0..self.groups.len() {
            let g = self.groups[gi];
            let segs = u64::from(g.segs);
            if blocked {
                out.dropped += segs;
                continue;
            }
            let hdr = if g.segs > 1 {
                self.finish_head(&g)
            } else {
                VirtioNetHdr::default()
            };
            let mut iov: [IoSlice<'_>; MAX_SUPER_SEGS] = [IoSlice::new(&[]); MAX_SUPER_SEGS];
            iov[0] = IoSlice::new(self.frame(g.head));
            let mut n = 1;
            let mut i = self.slots[g.head as usize].next;
            while i != END && n < MAX_SUPER_SEGS {
                let s = &self.slots[i as usize];
                let f = self.frame(i);
                iov[n] = IoSlice::new(&f[usize::from(s.hlen)..]);
                n += 1;
                i = s.next;
            }
            match write(&hdr, &iov[..n]) {
                Ok(()) => {
                    out.written += segs;
                    out.writes += 1;
                    if segs > 1 {
                        out.gso_writes += 1;
                    }
                }
                Err(e) if sys::is_transient(&e) => {
                    blocked = true;
                    out.dropped += segs;
                }
                // A packet the kernel rejects (EINVAL, EIO while the device
                // goes down) is dropped and counted; the queue is still fine.
                Err(_) => out.errors += segs,
            }
        }
        self.arena.clear();
        self.slots.clear();
        self.groups.clear();
        self.open.clear();
        out
    }
}

/// Which coalescing queue an IP packet goes to: `Some(true)` for UDP,
/// `Some(false)` for TCP, by the protocol in the IP header alone, so that
/// every frame of a flow goes the same way (what [`Coalescer`] cannot parse,
/// IPv4 options or a fragment, is written alone in its place); `None` for
/// anything else, which is written at once, after whatever a queue holds
/// between the same two hosts ([`Coalescer::holds_pair`]).
pub fn queue_for(frame: &[u8]) -> Option<bool> {
    match transport(frame)? {
        ipv4::PROTO_UDP => Some(true),
        ipv4::PROTO_TCP => Some(false),
        _ => None,
    }
}

/// Builds in `out` the frame the pipeline sees for a coalesced run of
/// VXLAN datagrams carrying TCP or UDP (`datagrams`, as [`tcp_run`] or
/// [`udp_run`] found them): the synthesised outer headers, the first
/// datagram whole, then every other one's payload, with the inner IP (and
/// UDP) length and IPv4 header checksum of the whole, and PSH if the last
/// TCP segment had it. Returns the frame length;
/// `None` when `out` is too small (the caller falls back to one frame per
/// datagram).
fn build_super<'a>(
    out: &mut [u8],
    mac: [u8; 6],
    src: SocketAddr,
    dst: SocketAddr,
    run: &Run,
    mut datagrams: impl Iterator<Item = &'a [u8]>,
) -> Option<usize> {
    let first = datagrams.next()?;
    let inner = MIN_VXLAN;
    let h = synth_headers(out, mac, src, dst, inner + run.bytes)?;
    let total = h + inner + run.bytes;
    out[h..h + first.len()].copy_from_slice(first);
    let mut at = h + first.len();
    let pay_off = inner + run.hlen;
    for d in datagrams.take(run.count - 1) {
        let p = d.get(pay_off..)?;
        out.get_mut(at..at + p.len())?.copy_from_slice(p);
        at += p.len();
    }
    if at != total {
        return None;
    }
    let ip = &mut out[h + inner..total];
    let v6 = ip[0] >> 4 == 6;
    rewrite_head(ip, v6, run.udp, run.psh, run.bytes);
    Some(total)
}

/// Rewrites the headers of the first segment of a coalesced run, `ip` (a
/// plain IP header as `plain_ip` takes it, then TCP or, with `udp`, UDP),
/// into those of the super-packet of `bytes` IP bytes: the IP length and
/// IPv4 header checksum, the UDP length, PSH when the run's last TCP
/// segment had it. The transport checksum is left to the caller. Returns
/// the transport header offset.
fn rewrite_head(ip: &mut [u8], v6: bool, udp: bool, psh: bool, bytes: usize) -> usize {
    let l4 = if v6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::MIN_HEADER_LEN
    };
    if v6 {
        ipv6::Packet::new_unchecked(&mut *ip).set_payload_len((bytes - l4) as u16);
    } else {
        let mut h = ipv4::Packet::new_unchecked(&mut *ip);
        h.set_total_len(bytes as u16);
        h.fill_checksum();
    }
    if udp {
        udp::Packet::new_unchecked(&mut ip[l4..]).set_len((bytes - l4) as u16);
    } else if psh {
        let mut t = tcp::Packet::new_unchecked(&mut ip[l4..]);
        t.set_flags(t.flags() | FLAG_PSH);
    }
    l4
}

/// The transport protocol of an IP packet (IPv6: the first next header),
/// `None` when it is too short for its IP header or neither IPv4 nor IPv6.
fn transport(ip: &[u8]) -> Option<u8> {
    match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= ipv4::MIN_HEADER_LEN => {
            Some(ipv4::Packet::new_unchecked(ip).protocol())
        }
        Some(6) if ip.len() >= ipv6::HEADER_LEN => {
            Some(ipv6::Packet::new_unchecked(ip).next_header())
        }
        _ => None,
    }
}

/// The run of VXLAN datagrams from the first that coalesces, by the rules
/// of the first one's inner transport (TCP or UDP); `None` for anything
/// else.
fn find_run<'a>(datagrams: impl Iterator<Item = &'a [u8]> + Clone) -> Option<Run> {
    let first = datagrams.clone().next()?;
    match transport(first.get(MIN_VXLAN..)?)? {
        ipv4::PROTO_TCP => tcp_run(datagrams, MIN_VXLAN, MAX_SUPER_L3, MAX_SUPER_SEGS),
        ipv4::PROTO_UDP => udp_run(datagrams, MIN_VXLAN, MAX_SUPER_L3, MAX_SUPER_SEGS),
        _ => None,
    }
}

/// Coalesces the datagrams at the start of `train` (a GRO read from `src`
/// to `dst`: datagrams `stride` bytes apart, the last may be shorter) into
/// one super-packet in `pkt`, when at least two of them form a run the
/// kernel's GRO would merge and `pkt`'s buffer can hold super-packets.
/// Returns how many datagrams it took; `None` leaves `pkt` alone (the
/// caller hands the first datagram on by itself).
pub fn coalesce_into(
    pkt: &mut Packet,
    mac: [u8; 6],
    src: SocketAddr,
    dst: SocketAddr,
    train: &[u8],
    stride: usize,
) -> Option<usize> {
    if stride == 0 || !pkt.is_super_capable() {
        return None;
    }
    let run = find_run(train.chunks(stride))?;
    if run.count < 2 {
        return None;
    }
    let len = build_super(pkt.super_area()?, mac, src, dst, &run, train.chunks(stride))?;
    pkt.set_received_super(len, Gso::for_payload(run.size as u16, run.bytes - run.hlen));
    pkt.ts_nanos = 0;
    Some(run.count)
}

#[cfg(test)]
#[path = "coalesce_tests.rs"]
mod tests;
