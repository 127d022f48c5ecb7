//! Tests of the coalescer: rounds of segments and datagrams built here by
//! hand, coalesced into super-packets, split again by the virtio-net
//! splitter as the container's kernel would, and checked against what was
//! pushed.

use std::io::{self, IoSlice};

use proptest::prelude::*;

use super::*;
use crate::offload::vnet::tests::*;
use crate::offload::vnet::{Splitter, GSO_NONE, VNET_HDR_LEN};
use crate::port::{Batch, MAX_FRAME};
use crate::wire::checksum::{fold, pseudo_v4, sum};
use crate::wire::tcp::FLAG_PSH;

#[test]
fn tcp_and_udp_go_to_their_queues_by_protocol_alone() {
    assert_eq!(queue_for(&tcp4(1, 1, ACK, 0, b"x")), Some(false));
    assert_eq!(queue_for(&tcp4(1, 1, ACK, 0, &[])), Some(false));
    assert_eq!(queue_for(&udp4(1, b"x")), Some(true));
    assert_eq!(queue_for(&udp6(b"x")), Some(true));
    let mut v6tcp = udp6(&[0; 20]);
    v6tcp[6] = 6;
    assert_eq!(queue_for(&v6tcp), Some(false));
    // IPv4 options: still TCP, queued (and written alone, in its place).
    let mut opts = tcp4(1, 1, ACK, 0, b"x");
    opts[0] = 0x46;
    assert_eq!(queue_for(&opts), Some(false));
    let mut icmp = udp4(1, b"x");
    icmp[9] = 1;
    assert_eq!(queue_for(&icmp), None);
    assert_eq!(queue_for(&[]), None);
    assert_eq!(queue_for(&[0x45; 19]), None);
}

/// A writer that records what it was given and fails as told.
struct Sink {
    written: Vec<Vec<u8>>,
    fail_at: Option<(usize, io::ErrorKind)>,
    calls: usize,
}

impl Sink {
    fn new() -> Sink {
        Sink {
            written: Vec::new(),
            fail_at: None,
            calls: 0,
        }
    }
    /// Takes one write as the device would: the encoded header, then the
    /// slices in order.
    fn write(&mut self, hdr: &VirtioNetHdr, parts: &[IoSlice<'_>]) -> io::Result<()> {
        let call = self.calls;
        self.calls += 1;
        match self.fail_at {
            Some((at, kind)) if call >= at && (kind == io::ErrorKind::WouldBlock || call == at) => {
                Err(io::Error::from(kind))
            }
            _ => {
                self.written.push(wire_bytes(hdr, parts));
                Ok(())
            }
        }
    }
}

/// `[virtio-net header][packet]` as one write puts it on the device.
fn wire_bytes(hdr: &VirtioNetHdr, parts: &[IoSlice<'_>]) -> Vec<u8> {
    let mut b = vec![0u8; VNET_HDR_LEN];
    hdr.encode(&mut b).unwrap();
    for p in parts {
        b.extend_from_slice(p);
    }
    b
}

/// 40 in-order MSS-1448 segments of one flow, a UDP datagram of another
/// flow in the middle, an ICMP-ish packet at the end.
fn mixed_round() -> (Vec<Vec<u8>>, Vec<u8>) {
    let data = payload(40 * 1448);
    let mut frames: Vec<Vec<u8>> = data
        .chunks(1448)
        .enumerate()
        .map(|(i, c)| tcp4(100 + i as u16, 5000 + (i * 1448) as u32, ACK, 0, c))
        .collect();
    frames.insert(20, udp4(7, b"not part of the flow"));
    let mut icmp = udp4(1, b"xx");
    icmp[9] = 1;
    frames.push(icmp);
    (frames, data)
}

#[test]
fn gro_coalesces_a_flow_and_resplits_to_the_same_segments() {
    let (frames, data) = mixed_round();
    let mut tx = Coalescer::new(QUEUE_FRAMES);
    for f in &frames {
        assert!(tx.push(f));
    }
    assert_eq!(tx.len(), 42);
    let mut sink = Sink::new();
    let out = tx.flush(|h, p| sink.write(h, p));
    assert_eq!(out.frames(), 42);
    assert_eq!(out.written, 42);
    assert_eq!(
        out.writes, 3,
        "one super-packet, the UDP datagram, the ICMP packet"
    );
    assert_eq!(out.gso_writes, 1);
    assert!(tx.is_empty());

    // The super-packet is written first (its first frame came first), with a
    // TSO header; split again it gives back the 40 segments.
    let sup = &sink.written[0];
    let hdr = VirtioNetHdr::decode(sup).unwrap();
    assert_eq!(hdr.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
    assert_eq!(hdr.flags, F_NEEDS_CSUM);
    assert_eq!(hdr.gso_size, 1448);
    assert_eq!(sup.len(), VNET_HDR_LEN + 40 + data.len());
    let mut rx = Splitter::new(MAX_FRAME);
    assert_eq!(load(&mut rx, &hdr, &sup[VNET_HDR_LEN..], 1500).unwrap(), 40);
    let mut batch = Batch::new();
    assert_eq!(rx.emit(batch.slots_mut()).unwrap(), 40);
    for (i, p) in batch.slots_mut()[..40].iter().enumerate() {
        let want = if i < 20 { &frames[i] } else { &frames[i + 1] };
        assert_eq!(p.data(), &want[..], "segment {i}");
    }
    // Plain packets go out as they came, behind a zero header.
    assert_eq!(&sink.written[1][..VNET_HDR_LEN], &[0u8; VNET_HDR_LEN]);
    assert_eq!(&sink.written[1][VNET_HDR_LEN..], &frames[20][..]);
    assert_eq!(&sink.written[2][VNET_HDR_LEN..], &frames[41][..]);
}

#[test]
fn eagain_drops_the_rest_and_errors_count_per_frame() {
    let (frames, _) = mixed_round();
    let mut tx = Coalescer::new(QUEUE_FRAMES);
    // EAGAIN on the second write: the super-packet went out, the other two
    // frames are dropped.
    for f in &frames {
        tx.push(f);
    }
    let mut sink = Sink::new();
    sink.fail_at = Some((1, io::ErrorKind::WouldBlock));
    let out = tx.flush(|h, p| sink.write(h, p));
    assert_eq!((out.written, out.dropped, out.errors), (40, 2, 0));
    // EINVAL on the super-packet: its 40 frames are errors, the rest written.
    for f in &frames {
        tx.push(f);
    }
    let mut sink = Sink::new();
    sink.fail_at = Some((0, io::ErrorKind::InvalidInput));
    let out = tx.flush(|h, p| sink.write(h, p));
    assert_eq!((out.written, out.dropped, out.errors), (2, 0, 40));
    assert_eq!(out.writes, 2);
    // Empty frames are taken and counted, never written.
    assert!(tx.push(&[]));
    let out = tx.flush(|h, p| sink.write(h, p));
    assert_eq!(out.invalid, 1);
    assert_eq!(out.frames(), 1);
}

#[test]
fn a_full_queue_refuses_until_flushed() {
    let mut tx = Coalescer::new(4);
    let f = udp4(1, b"abc");
    for _ in 0..4 {
        assert!(tx.push(&f));
    }
    assert!(!tx.push(&f));
    let out = tx.flush(|_, _| Ok(()));
    assert_eq!(out.written, 4);
    assert!(tx.push(&f));
}

#[test]
fn coalescing_stops_at_64_kib() {
    // 128 segments of 1448 bytes: 185 KB, at least three super-packets.
    let data = payload(128 * 1448);
    let mut tx = Coalescer::new(QUEUE_FRAMES);
    for (i, c) in data.chunks(1448).enumerate() {
        assert!(tx.push(&tcp4(i as u16, (i * 1448) as u32, ACK, 0, c)));
    }
    let mut sizes = Vec::new();
    let out = tx.flush(|h, p| {
        sizes.push(wire_bytes(h, p).len());
        Ok(())
    });
    assert_eq!(out.written, 128);
    assert!(
        sizes.iter().all(|&s| s <= VNET_HDR_LEN + MAX_SUPER_LEN),
        "{sizes:?}"
    );
    assert!(sizes.len() >= 3 && sizes.len() <= 4, "{sizes:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary frames (some TCP-looking) never panic the coalescer, and
    /// every frame is accounted for exactly once.
    #[test]
    fn gro_accounts_for_arbitrary_frames(
        frames in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..200), any::<u16>()),
            1..80,
        )
    ) {
        let mut tx = Coalescer::new(64);
        let mut pushed = 0u64;
        let mut total = FlushOutcome::default();
        for (tcp, bytes, seq) in &frames {
            let f = if *tcp { tcp4(1, u32::from(*seq), ACK, 0, bytes) } else { bytes.clone() };
            if !tx.push(&f) {
                let o = tx.flush(|_, _| Ok(()));
                total.written += o.written;
                total.invalid += o.invalid;
                prop_assert!(tx.push(&f));
            }
            pushed += 1;
        }
        let o = tx.flush(|_, _| Ok(()));
        total.written += o.written;
        total.invalid += o.invalid;
        prop_assert_eq!(total.frames(), pushed);
    }
}

#[test]
fn ipv6_tso_round_trips_through_gro() {
    // 50 segments of 1220 bytes (IPv6 minimum MTU 1280): split over two
    // partial batches, coalesced again, split again: the same bytes.
    let data = payload(50 * 1220);
    let sup = tcp6(9, ACK | FLAG_PSH, &data);
    let mut rx = Splitter::new(MAX_FRAME);
    assert_eq!(
        load(&mut rx, &tso_hdr(true, 1220, 40, 20, false), &sup, 1280).unwrap(),
        50
    );
    let mut batch = Batch::new();
    let mut segs = Vec::new();
    while rx.has_pending() {
        let k = rx.emit(&mut batch.slots_mut()[..30]).unwrap();
        segs.extend(batch.slots_mut()[..k].iter().map(|p| p.data().to_vec()));
    }
    assert_eq!(segs.len(), 50);
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s.len(), 1280);
        let want = tcp6(
            9 + 1220 * i as u32,
            if i == 49 { ACK | FLAG_PSH } else { ACK },
            &data[i * 1220..(i + 1) * 1220],
        );
        assert_eq!(s, &want, "segment {i}");
    }
    let mut tx = Coalescer::new(QUEUE_FRAMES);
    for s in &segs {
        assert!(tx.push(s));
    }
    let mut sink = Sink::new();
    let out = tx.flush(|h, p| sink.write(h, p));
    assert_eq!((out.written, out.writes, out.gso_writes), (50, 1, 1));
    let mut again = Vec::new();
    for w in &sink.written {
        let h = VirtioNetHdr::decode(w).unwrap();
        assert_eq!(h.gso_type, VIRTIO_NET_HDR_GSO_TCPV6);
        load(&mut rx, &h, &w[VNET_HDR_LEN..], 1280).unwrap();
        while rx.has_pending() {
            let k = rx.emit(batch.slots_mut()).unwrap();
            again.extend(batch.slots_mut()[..k].iter().map(|p| p.data().to_vec()));
        }
    }
    assert_eq!(again, segs);
}

/// Recomputes the IPv4 header and TCP checksums of `p` (built by [`tcp4`])
/// after a test changed a field.
fn refresh4(p: &mut [u8]) {
    p[10..12].fill(0);
    let c = !fold(sum(&p[..20]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[36..38].fill(0);
    let l4 = (p.len() - 20) as u16;
    let c = !fold(pseudo_v4(SRC4, DST4, 6, l4) + sum(&p[20..]));
    p[36..38].copy_from_slice(&c.to_be_bytes());
}

/// A segment of the flow from source port `sport`.
fn seg4(sport: u16, id: u16, seq: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut p = tcp4(id, seq, flags, 12, data);
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    refresh4(&mut p);
    p
}

/// Everything `writes` carried, super-packets split again by [`Splitter`]: the
/// segments the container's kernel sees.
fn resplit(writes: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut rx = Splitter::new(MAX_FRAME);
    let mut batch = Batch::new();
    let mut out = Vec::new();
    for w in writes {
        let h = VirtioNetHdr::decode(w).unwrap();
        let pkt = &w[VNET_HDR_LEN..];
        if h.gso_type == GSO_NONE {
            assert_eq!(
                w[..VNET_HDR_LEN],
                [0u8; VNET_HDR_LEN],
                "plain writes carry a zero header"
            );
            out.push(pkt.to_vec());
            continue;
        }
        load(&mut rx, &h, pkt, 1500).unwrap();
        while rx.has_pending() {
            let k = rx.emit(batch.slots_mut()).unwrap();
            out.extend(batch.slots_mut()[..k].iter().map(|p| p.data().to_vec()));
        }
    }
    out
}

/// Pushes every frame through one Coalescer (flushed whenever it is full and
/// at the end), checks that every frame was written, and splits what was
/// written again the way the container's kernel would.
fn coalesce_then_resplit(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut tx = Coalescer::new(QUEUE_FRAMES);
    let mut sink = Sink::new();
    let mut total = 0;
    for p in frames {
        if !tx.push(p) {
            total += tx.flush(|h, q| sink.write(h, q)).written;
            assert!(tx.push(p), "a flushed queue takes a frame");
        }
    }
    total += tx.flush(|h, q| sink.write(h, q)).written;
    assert_eq!(total, frames.len() as u64, "every frame written");
    resplit(&sink.written)
}

fn gro_round(frames: &[Vec<u8>]) -> (FlushOutcome, Vec<Vec<u8>>) {
    let mut tx = Coalescer::new(QUEUE_FRAMES);
    for f in frames {
        assert!(tx.push(f));
    }
    let mut sink = Sink::new();
    let out = tx.flush(|h, p| sink.write(h, p));
    assert_eq!(out.frames(), frames.len() as u64);
    (out, sink.written)
}

#[test]
fn a_pure_ack_or_a_gap_ends_the_super_packet_and_order_holds() {
    let data = payload(30 * 1000);
    let c = |i: usize| &data[i * 1000..(i + 1) * 1000];
    let mut frames = Vec::new();
    for i in 0..10 {
        frames.push(seg4(1000, i as u16, (i * 1000) as u32, ACK, c(i)));
    }
    // A pure ACK of the same flow (the reverse direction's data, say).
    frames.push(seg4(1000, 10, 10_000, ACK, &[]));
    for i in 10..20 {
        frames.push(seg4(1000, i as u16 + 1, (i * 1000) as u32, ACK, c(i)));
    }
    // Segment 20 is missing: the rest cannot join the group before it.
    for i in 21..26 {
        frames.push(seg4(1000, i as u16 + 1, (i * 1000) as u32, ACK, c(i)));
    }
    let (out, writes) = gro_round(&frames);
    assert_eq!((out.writes, out.gso_writes, out.written), (4, 3, 26));
    assert_eq!(writes[1][VNET_HDR_LEN..], frames[10][..], "the ACK between");
    assert_eq!(resplit(&writes), frames);
}

#[test]
fn bad_checksums_and_changed_headers_are_not_coalesced() {
    let data = payload(12 * 800);
    let c = |i: usize| &data[i * 800..(i + 1) * 800];
    let mut frames: Vec<Vec<u8>> = (0..12)
        .map(|i| seg4(7, i as u16, (i * 800) as u32, ACK, c(i)))
        .collect();
    // 3: corrupted on the way (payload byte flipped, checksum left).
    frames[3][60] ^= 0xff;
    // 6: another ACK number; 9: another TTL.
    frames[6][28..32].copy_from_slice(&99u32.to_be_bytes());
    refresh4(&mut frames[6]);
    frames[9][8] = 63;
    refresh4(&mut frames[9]);
    let (out, writes) = gro_round(&frames);
    // [0..3] [3] [4..6] [6..9] [9..12]: 6 and 9 start new groups, which the
    // segments after them may join (they match the new head).
    let lens: Vec<u64> = writes
        .iter()
        .map(|w| {
            let h = VirtioNetHdr::decode(w).unwrap();
            if h.gso_type == GSO_NONE {
                1
            } else {
                ((w.len() - VNET_HDR_LEN - usize::from(h.hdr_len)) / 800) as u64
            }
        })
        .collect();
    assert_eq!(out.written, 12);
    assert_eq!(
        writes[1][VNET_HDR_LEN..],
        frames[3][..],
        "the bad segment goes out as it came"
    );
    assert_eq!(lens[0], 3);
    assert_eq!(lens[1], 1);
    assert_eq!(lens[2], 2, "segments 4 and 5");
    // Frame 7 and 8 do not share frame 6's ACK number.
    assert_eq!(lens.iter().sum::<u64>(), 12);
    let again = resplit(&writes);
    assert_eq!(again[3], frames[3]);
    for (i, (a, b)) in again.iter().zip(&frames).enumerate() {
        if i != 3 {
            assert_eq!(a, b, "segment {i}");
        }
    }
}

/// A window update or another reserved (AccECN AE) bit ends a group, as
/// in the kernel's GRO, which compares the whole flag word: the split gives
/// every segment the first one's TCP header, so merged they would reach
/// the container with a window or a bit never sent.
#[test]
fn window_and_reserved_bit_changes_are_not_coalesced() {
    let data = payload(8 * 800);
    let c = |i: usize| &data[i * 800..(i + 1) * 800];
    let mut frames: Vec<Vec<u8>> = (0..8)
        .map(|i| seg4(7, i as u16, (i * 800) as u32, ACK, c(i)))
        .collect();
    // 3: a larger window (bytes 34..36); 6: the AE bit (byte 32, low bit).
    frames[3][34..36].copy_from_slice(&0x7000u16.to_be_bytes());
    refresh4(&mut frames[3]);
    frames[6][32] |= 0x01;
    refresh4(&mut frames[6]);
    let (out, writes) = gro_round(&frames);
    assert_eq!(out.written, 8);
    // [0..3] [3] [4..6] [6] [7]: a segment that differs from its group's
    // head ends it, and the next one differs from it again.
    assert_eq!((out.writes, out.gso_writes), (5, 2), "{out:?}");
    assert_eq!(resplit(&writes), frames, "the split gives back what came");
}

#[test]
fn interleaved_flows_coalesce_apart_in_first_frame_order() {
    let data = payload(20 * 1200);
    let mut frames = Vec::new();
    for i in 0..20usize {
        let sport = if i % 2 == 0 { 1111 } else { 2222 };
        let k = i / 2;
        frames.push(seg4(
            sport,
            k as u16,
            (k * 1200) as u32,
            ACK,
            &data[i * 1200..(i + 1) * 1200],
        ));
    }
    let (out, writes) = gro_round(&frames);
    assert_eq!((out.writes, out.gso_writes), (2, 2));
    let again = resplit(&writes);
    let a: Vec<_> = frames.iter().step_by(2).cloned().collect();
    let b: Vec<_> = frames.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(again[..10], a[..]);
    assert_eq!(again[10..], b[..]);
}

/// One step of a flow in the GRO property test.
#[derive(Debug, Clone)]
enum Step {
    /// Data of this many bytes (1..=1448), with PSH or not.
    Data(usize, bool),
    /// A segment without payload.
    PureAck,
    /// A segment lost before the router: the sequence jumps.
    Gap(usize),
    /// A segment whose payload was damaged (checksum left as it was).
    Damaged(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => Just(Step::Data(1448, false)),
        2 => (1usize..=1448, any::<bool>()).prop_map(|(n, p)| Step::Data(n, p)),
        1 => Just(Step::PureAck),
        1 => (1usize..3000).prop_map(Step::Gap),
        1 => (1usize..=1448).prop_map(Step::Damaged),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any interleaving of three flows' segments, coalesced and split again
    /// the way the container's kernel would, gives back exactly the frames
    /// pushed: none lost, none changed, each flow in its order.
    #[test]
    fn gro_then_gso_gives_back_every_frame_in_order(
        steps in proptest::collection::vec((0usize..3, step()), 1..300),
    ) {
        let mut seq = [0u32; 3];
        let mut id = [0u16; 3];
        let mut frames = Vec::new();
        for (f, s) in &steps {
            let sport = 3000 + *f as u16;
            let mk = |len: usize, flags: u8, seq: u32, id: u16| {
                seg4(sport, id, seq, flags, &payload(len + seq as usize % 97)[seq as usize % 97..])
            };
            let p = match s {
                Step::Data(n, psh) => mk(*n, if *psh { ACK | FLAG_PSH } else { ACK }, seq[*f], id[*f]),
                Step::PureAck => mk(0, ACK, seq[*f], id[*f]),
                Step::Gap(n) => { seq[*f] = seq[*f].wrapping_add(*n as u32); continue; }
                Step::Damaged(n) => {
                    let mut p = mk(*n, ACK, seq[*f], id[*f]);
                    let last = p.len() - 1;
                    p[last] ^= 0x41;
                    p
                }
            };
            seq[*f] = seq[*f].wrapping_add((p.len() - 52) as u32);
            id[*f] = id[*f].wrapping_add(1);
            frames.push(p);
        }
        let again = coalesce_then_resplit(&frames);
        for f in 0..3u16 {
            let of = |v: &[Vec<u8>]| -> Vec<Vec<u8>> {
                v.iter().filter(|p| p[20..22] == (3000 + f).to_be_bytes()).cloned().collect()
            };
            prop_assert_eq!(of(&again), of(&frames), "flow {}", f);
        }
    }
}

/// The UDP datagram `udp4` makes, from source port `sport`, with IPv4 ID `id`.
fn udp4_id(sport: u16, id: u16, data: &[u8]) -> Vec<u8> {
    let mut p = udp4(sport, data);
    p[4..6].copy_from_slice(&id.to_be_bytes());
    // The IPv4 header checksum only: the UDP one does not cover the ID.
    p[10..12].fill(0);
    let c = !fold(sum(&p[..20]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// A datagram compared without its IPv4 ID and header checksum (a
/// super-packet keeps only the first one's ID; the split counts up from it).
fn sans_id(p: &[u8]) -> Vec<u8> {
    let mut q = p.to_vec();
    q[4..6].fill(0);
    q[10..12].fill(0);
    q
}

#[test]
fn udp_datagrams_of_one_flow_leave_as_one_uso_write() {
    let mut frames: Vec<Vec<u8>> = (0..20).map(|i| udp4_id(5000, i, &payload(1200))).collect();
    frames.push(udp4_id(5000, 20, &payload(300)));
    let (out, written) = gro_round(&frames);
    assert_eq!((out.writes, out.gso_writes, out.written), (1, 1, 21));
    let h = VirtioNetHdr::decode(&written[0]).unwrap();
    assert_eq!(h.gso_type, VIRTIO_NET_HDR_GSO_UDP_L4);
    assert_eq!(
        (h.gso_size, h.hdr_len, h.csum_start, h.csum_offset),
        (1200, 28, 20, 6)
    );
    let again = resplit(&written);
    assert_eq!(again.len(), 21);
    for (a, b) in again.iter().zip(&frames) {
        assert_eq!(sans_id(a), sans_id(b));
    }
}

#[test]
fn udp_coalescing_keeps_flows_apart_and_stops_where_gro_would() {
    // Two flows interleaved, a damaged datagram, a longer one, and TCP on
    // the same ports: each flow keeps its order, nothing wrong is merged.
    let mut frames = Vec::new();
    for i in 0..6u16 {
        frames.push(udp4_id(5000, i, &payload(500)));
        frames.push(udp4_id(5001, i, &payload(500)));
    }
    let mut bad = udp4_id(5000, 6, &payload(500));
    let last = bad.len() - 1;
    bad[last] ^= 0x10;
    frames.push(bad);
    frames.push(udp4_id(5000, 7, &payload(500)));
    frames.push(udp4_id(5001, 6, &payload(800)));
    let (out, written) = gro_round(&frames);
    assert_eq!(out.written, frames.len() as u64);
    // 5000: six merged, the damaged one alone, one more alone (its group
    // opened after the damage); 5001: six merged, the longer one alone.
    assert_eq!(out.writes, 5, "{out:?}");
    let again = resplit(&written);
    for port in [5000u16, 5001] {
        let of = |v: &[Vec<u8>]| -> Vec<Vec<u8>> {
            v.iter()
                .filter(|p| p[20..22] == port.to_be_bytes())
                .map(|p| sans_id(p))
                .collect()
        };
        assert_eq!(of(&again), of(&frames), "flow {port}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any interleaving of two UDP flows and one TCP flow on the same ports
    /// (datagrams of any size, some damaged), coalesced and split again the
    /// way the container's kernel would, gives back every datagram pushed,
    /// each flow in its order, the TCP one untouched by the UDP groups.
    #[test]
    fn udp_gro_then_gso_gives_back_every_datagram_in_order(
        steps in proptest::collection::vec((0usize..3, 1usize..1400, any::<bool>()), 1..200),
    ) {
        let mut id = [0u16; 3];
        let mut frames = Vec::new();
        for (f, len, damaged) in &steps {
            let p = if *f == 2 {
                // TCP from the same source port as UDP flow 0.
                seg4(5000, id[2], u32::from(id[2]) * 2000, ACK, &payload(*len))
            } else {
                let mut p = udp4_id(5000 + *f as u16, id[*f], &payload(*len));
                if *damaged {
                    let last = p.len() - 1;
                    p[last] ^= 0x22;
                }
                p
            };
            id[*f] = id[*f].wrapping_add(1);
            frames.push(p);
        }
        let again = coalesce_then_resplit(&frames);
        for (port, proto) in [(5000u16, 17u8), (5001, 17), (5000, 6)] {
            let of = |v: &[Vec<u8>]| -> Vec<Vec<u8>> {
                v.iter()
                    .filter(|p| p[9] == proto && p[20..22] == port.to_be_bytes())
                    .map(|p| sans_id(p))
                    .collect()
            };
            prop_assert_eq!(of(&again), of(&frames), "flow {} proto {}", port, proto);
        }
    }
}

/// A datagram of a UDP flow that the coalescer cannot parse (here the first
/// fragment of a larger datagram, which the TUN port queues with UDP)
/// closes its flow's open group: the next datagram may not join it and
/// overtake the fragment.
#[test]
fn an_unparsed_datagram_keeps_its_place_in_its_flow() {
    let mut frag = udp4_id(5000, 1, &payload(500));
    frag[6] |= 0x20; // MF: first fragment
    frag[24..26].copy_from_slice(&1508u16.to_be_bytes()); // the whole datagram's length
    frag[10..12].fill(0);
    let c = !fold(sum(&frag[..20]));
    frag[10..12].copy_from_slice(&c.to_be_bytes());
    let frames = vec![
        udp4_id(5000, 0, &payload(500)),
        frag,
        udp4_id(5000, 2, &payload(500)),
    ];
    let (out, written) = gro_round(&frames);
    assert_eq!(out.written, 3);
    let again: Vec<Vec<u8>> = resplit(&written).iter().map(|p| sans_id(p)).collect();
    let want: Vec<Vec<u8>> = frames.iter().map(|p| sans_id(p)).collect();
    assert_eq!(again, want, "the flow's datagrams in push order");
}

/// The kernel's GRO rules on the IPv4 ID and the UDP checksum, at the TUN
/// side: without DF only IDs that count up coalesce (and come back from the
/// container's split byte for byte); a datagram sent without a checksum
/// never coalesces; with DF (TCP here) the ID does not matter.
#[test]
fn coalescer_keeps_ids_without_df_and_leaves_zero_checksums_alone() {
    let (out, written) = gro_round(
        &(0..4)
            .map(|_| udp4_id(5000, 7, &payload(500)))
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        out.gso_writes, 0,
        "fixed IDs without DF: written one by one"
    );
    assert_eq!(written.len(), 4);
    let counting: Vec<Vec<u8>> = (0..4)
        .map(|i| udp4_id(5000, 0xfffe_u16.wrapping_add(i), &payload(500)))
        .collect();
    let (out, written) = gro_round(&counting);
    assert_eq!(out.gso_writes, 1);
    assert_eq!(resplit(&written), counting, "byte for byte, IDs included");
    let zero: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let mut p = udp4_id(5000, i, &payload(500));
            p[26..28].fill(0);
            p
        })
        .collect();
    let (out, written) = gro_round(&zero);
    assert_eq!(out.gso_writes, 0, "no checksum: written one by one");
    assert_eq!(written.len(), 4);
    // TCP with DF: the same ID in every segment still coalesces.
    let tcp: Vec<Vec<u8>> = (0..4)
        .map(|i| seg4(40000, 9, 1000 + 1000 * i, ACK, &payload(1000)))
        .collect();
    assert_eq!(gro_round(&tcp).0.gso_writes, 1);
}

/// A frame written past the queues (ICMP here) first sees written what they
/// hold between the same two hosts, and only that.
#[test]
fn holds_pair_sees_the_same_two_hosts_only() {
    let mut tx = Coalescer::new(QUEUE_FRAMES);
    assert!(tx.push(&udp4_id(5000, 1, &payload(100))));
    let mut icmp = udp4(1, b"ping");
    icmp[9] = 1;
    assert!(tx.holds_pair(&icmp));
    let mut other = icmp.clone();
    other[19] ^= 1; // another destination
    assert!(!tx.holds_pair(&other));
    let mut back = icmp.clone();
    back.copy_within(12..16, 16);
    back[12..16].copy_from_slice(&icmp[16..20]); // the other direction
    assert!(!tx.holds_pair(&back));
    assert!(!tx.holds_pair(&[]));
    assert!(!tx.holds_pair(&udp6(b"x")));
}

/// Trains of VXLAN datagrams, as the UDP uplink's GRO reads hand them over,
/// coalesced into one super-packet frame and cut again.
mod vxlan_trains {
    use super::*;
    use crate::offload::outer::tests::{v4, vxlan_payload, MAC};
    use crate::offload::outer::MIN_VXLAN;
    use crate::offload::{self, Gso};
    use crate::wire::checksum;

    /// A train as a GRO read hands it over: the segments of a TCP
    /// super-packet (cut by tso), each behind VXLAN and inner Ethernet,
    /// `stride` bytes apart (the last may be shorter).
    fn train(v6: bool, n: usize, size: u16) -> (Vec<Vec<u8>>, Vec<u8>) {
        train_of(false, v6, n, size)
    }

    /// [`train`] of a TCP (`udp` false) or UDP super-packet.
    fn train_of(udp: bool, v6: bool, n: usize, size: u16) -> (Vec<Vec<u8>>, Vec<u8>) {
        use crate::offload::segment::tests::{super_ip, super_udp};
        let data: Vec<u8> = (0..n).map(|i| (i * 7 + i / 13) as u8).collect();
        let ip = if udp {
            super_udp(v6, &data)
        } else {
            super_ip(v6, 0, 12, 0x10, &data)
        };
        let g = Gso { size, segs: 0 };
        let l = offload::Layout::parse(&ip, offload::Encap::Ip, g).unwrap();
        let mut out = Vec::new();
        for i in 0..l.segments {
            let mut d = vxlan_payload(MIN_VXLAN, 0);
            d[8..14].copy_from_slice(&[2, 0x42, 0, 0, 0, 2]);
            d[20..22].copy_from_slice(&(if v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
            let mut s = vec![0u8; l.segment_len(i)];
            let r = offload::write_headers(&ip, &l, i, &mut s, false);
            s[l.payload..].copy_from_slice(&ip[r]);
            d.extend_from_slice(&s);
            out.push(d);
        }
        (out, ip)
    }

    /// Cuts the super-packet frame `f` (from build_super) back into its
    /// datagrams' inner IP packets, IPv4 ID and header checksum zeroed (a
    /// coalesced run does not keep the IDs of its segments).
    fn recut(f: &[u8], g: Gso) -> Vec<Vec<u8>> {
        let l = offload::Layout::parse(f, offload::Encap::Vxlan, g).unwrap();
        (0..l.segments)
            .map(|i| {
                let mut s = vec![0u8; l.segment_len(i)];
                let r = offload::write_headers(f, &l, i, &mut s, false);
                s[l.payload..].copy_from_slice(&f[r]);
                norm(s[l.l3..].to_vec())
            })
            .collect()
    }

    fn norm(mut ip: Vec<u8>) -> Vec<u8> {
        if ip[0] >> 4 == 4 {
            ip[4..6].fill(0);
            ip[10..12].fill(0);
        }
        ip
    }

    fn coalesce(dgrams: &[Vec<u8>]) -> Option<(Vec<u8>, Gso, usize)> {
        let run = find_run(dgrams.iter().map(|d| &d[..]))?;
        if run.count < 2 {
            return Some((Vec::new(), Gso { size: 0, segs: 1 }, 1));
        }
        let mut out = vec![0u8; 70_000];
        let src = v4([198, 18, 0, 2], 50000);
        let dst = v4([198, 18, 0, 1], 4789);
        let n = build_super(&mut out, MAC, src, dst, &run, dgrams.iter().map(|d| &d[..]))?;
        out.truncate(n);
        let g = Gso::for_payload(run.size as u16, run.bytes - run.hlen);
        Some((out, g, run.count))
    }

    #[test]
    fn a_train_of_one_flow_coalesces_into_its_super_packet() {
        for v6 in [false, true] {
            let (dgrams, ip) = train(v6, 44 * 1378, 1378);
            assert_eq!(dgrams.len(), 44);
            let (f, g, count) = coalesce(&dgrams).unwrap();
            assert_eq!(count, 44);
            assert_eq!(g.segs, 44);
            // The pipeline's view: our underlay, UDP length, the inner packet.
            let inner = &f[14 + 20 + 8 + 8 + 14..];
            let l4 = if v6 { 40 } else { 20 };
            let mut want = ip.clone();
            let mut got = inner.to_vec();
            for p in [&mut want, &mut got] {
                p[l4 + 16..l4 + 18].fill(0);
            }
            assert_eq!(norm(got), norm(want));
            let want: Vec<Vec<u8>> = dgrams
                .iter()
                .map(|d| norm(d[MIN_VXLAN..].to_vec()))
                .collect();
            assert_eq!(recut(&f, g), want);
        }
    }

    #[test]
    fn a_udp_train_of_one_flow_coalesces_and_others_do_not() {
        for v6 in [false, true] {
            let (dgrams, _) = train_of(true, v6, 20 * 1200 + 5, 1200);
            assert_eq!(dgrams.len(), 21);
            let (f, g, count) = coalesce(&dgrams).unwrap();
            assert_eq!((count, g.segs, g.size), (21, 21, 1200));
            let want: Vec<Vec<u8>> = dgrams
                .iter()
                .map(|d| norm(d[MIN_VXLAN..].to_vec()))
                .collect();
            assert_eq!(recut(&f, g), want);
            // Another flow (source port) ends the run; so does a shorter datagram.
            let l4 = MIN_VXLAN + if v6 { 40 } else { 20 };
            let mut other = dgrams.clone();
            other[7][l4] ^= 1;
            assert_eq!(coalesce(&other).unwrap().2, 7);
            let short_mid = vec![dgrams[0].clone(), dgrams[20].clone(), dgrams[1].clone()];
            assert_eq!(coalesce(&short_mid).unwrap().2, 2, "a shorter one ends it");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever a train holds (any byte of any datagram changed, any
        /// datagram cut short), coalescing never panics, and what it makes
        /// is exactly the run of datagrams it took, cut again.
        #[test]
        fn any_train_coalesces_only_into_what_it_held(
            v6 in proptest::bool::ANY,
            udp in proptest::bool::ANY,
            segs in 2usize..12,
            muts in proptest::collection::vec((0usize..12, 0usize..200, proptest::num::u8::ANY), 0..3),
            cut in proptest::option::of((0usize..12, 0usize..300)),
        ) {
            let (mut dgrams, _) = train_of(udp, v6, segs * 536 - 100, 536);
            for (d, at, v) in muts {
                let d = &mut dgrams[d % segs];
                let at = at % d.len();
                d[at] = v;
            }
            if let Some((d, keep)) = cut {
                let d = &mut dgrams[d % segs];
                d.truncate(keep.min(d.len()));
            }
            if let Some((f, g, count)) = coalesce(&dgrams) {
                if count >= 2 {
                    for d in &dgrams[..count] {
                        let ip = &d[MIN_VXLAN..];
                        if !v6 {
                            proptest::prop_assert_eq!(checksum::checksum(&ip[..20]), 0, "bad IPv4 header taken");
                        }
                    }
                    let want: Vec<Vec<u8>> =
                        dgrams[..count].iter().map(|d| norm(d[MIN_VXLAN..].to_vec())).collect();
                    proptest::prop_assert_eq!(recut(&f, g), want);
                }
            }
        }
    }

    /// A damaged train whose inner Ethernet says IPv6 but one datagram
    /// carries a short IPv4/UDP packet: the run ends there (the payload
    /// length is not counted with the IPv6 header length: `29 - 48`).
    #[test]
    fn a_short_ipv4_datagram_behind_ipv6_ends_the_run() {
        let (dgrams, _) = train_of(true, true, 3 * 536, 536);
        // 30 bytes of IPv4/UDP (2 payload bytes), behind the same VXLAN and
        // inner Ethernet header (ethertype 0x86dd) as the first datagram.
        let mut ip = vec![0u8; 30];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&30u16.to_be_bytes());
        ip[9] = 17;
        ip[24..26].copy_from_slice(&10u16.to_be_bytes());
        let mut d = dgrams[0][..MIN_VXLAN].to_vec();
        d.extend_from_slice(&ip);
        let run = find_run([&dgrams[0][..], &d[..]].into_iter()).unwrap();
        assert_eq!(run.count, 1);
    }

    /// The kernel's UDP GRO merges no datagram sent without a checksum
    /// ("requires non zero csum, for symmetry with GSO"): merged, they
    /// would come out of the split with checksums they never carried.
    #[test]
    fn udp_datagrams_without_checksum_are_not_merged() {
        let (mut dgrams, _) = train_of(true, false, 4 * 536, 536);
        assert_eq!(coalesce(&dgrams).unwrap().2, 4, "with checksums they merge");
        let l4 = MIN_VXLAN + 20;
        for d in &mut dgrams {
            d[l4 + 6..l4 + 8].fill(0);
        }
        assert_eq!(coalesce(&dgrams).unwrap().2, 1);
        // One without, behind one with: the run ends there.
        let (mut dgrams, _) = train_of(true, false, 4 * 536, 536);
        dgrams[2][l4 + 6..l4 + 8].fill(0);
        assert_eq!(coalesce(&dgrams).unwrap().2, 2);
        // Over IPv6 a zero is not allowed at all, and passes the sum check
        // where the real checksum is 0xffff: put the difference into the
        // payload so that it does, and the datagrams still must not merge.
        let l4 = MIN_VXLAN + 40;
        let (mut dgrams, _) = train_of(true, true, 4 * 536, 536);
        for d in &mut dgrams {
            let c = u16::from_be_bytes([d[l4 + 6], d[l4 + 7]]);
            d[l4 + 6..l4 + 8].fill(0);
            // Move the old checksum's share of the sum into the first
            // payload word: the sum is unchanged.
            let w = u16::from_be_bytes([d[l4 + 8], d[l4 + 9]]);
            let w2 = checksum::fold(u32::from(w) + u32::from(c));
            d[l4 + 8..l4 + 10].copy_from_slice(&w2.to_be_bytes());
        }
        assert!(
            dgrams
                .iter()
                .all(|d| udp_checksum_ok(&d[MIN_VXLAN..], true, 40)),
            "the zero checksums pass the sum check"
        );
        assert_eq!(coalesce(&dgrams).unwrap().2, 1, "IPv6 zero checksums");
    }

    /// Without DF, the kernel's GRO merges IPv4 segments only when their IDs
    /// count up from the first (its split then gives segment i the first's
    /// ID plus i, the bytes it received); fixed IDs end the run.
    #[test]
    fn ipv4_ids_without_df_must_count_up() {
        let with_ids = |id: &dyn Fn(usize) -> u16| {
            let (mut dgrams, _) = train(false, 4 * 1000, 1000);
            for (i, d) in dgrams.iter_mut().enumerate() {
                let ip = &mut d[MIN_VXLAN..MIN_VXLAN + 20];
                ip[4..6].copy_from_slice(&id(i).to_be_bytes());
                ip[6] = 0; // DF clear
                ip[10..12].fill(0);
                let c = checksum::checksum(ip);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
            }
            dgrams
        };
        assert_eq!(coalesce(&with_ids(&|_| 0x1234)).unwrap().2, 1, "fixed IDs");
        let counting = with_ids(&|i| 0xfffe_u16.wrapping_add(i as u16));
        let (f, g, count) = coalesce(&counting).unwrap();
        assert_eq!(count, 4, "IDs that count up (across the wrap)");
        let l = offload::Layout::parse(&f, offload::Encap::Vxlan, g).unwrap();
        let got: Vec<Vec<u8>> = (0..l.segments)
            .map(|i| {
                let mut s = vec![0u8; l.segment_len(i)];
                let r = offload::write_headers(&f, &l, i, &mut s, false);
                s[l.payload..].copy_from_slice(&f[r]);
                s[l.l3..].to_vec()
            })
            .collect();
        let want: Vec<Vec<u8>> = counting.iter().map(|d| d[MIN_VXLAN..].to_vec()).collect();
        assert_eq!(got, want, "the split gives back the bytes received");
        // A gap in the IDs ends the run there.
        let gap = with_ids(&|i| if i < 2 { i as u16 } else { i as u16 + 5 });
        assert_eq!(coalesce(&gap).unwrap().2, 2);
    }
}
