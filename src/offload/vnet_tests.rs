//! Tests of the virtio-net side: super-packets built here by hand (the
//! layout the kernel hands a TUN reader), split, carried over between
//! batches, kept whole or refused, partial checksums completed. The
//! builders are shared with the coalescer's tests.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use crate::offload;
use crate::port::{Batch, MAX_FRAME};
use crate::wire::checksum::{fold, pseudo_v4, pseudo_v6, sum};
use crate::wire::field::get_u16 as be16;

pub(crate) const SRC4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub(crate) const DST4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub(crate) const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub(crate) const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

pub(crate) const ACK: u8 = tcp::FLAG_ACK;

pub(crate) fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// An IPv4/TCP packet (20-byte IP header, `opts` bytes of TCP options), both
/// checksums complete.
pub(crate) fn tcp4(id: u16, seq: u32, flags: u8, opts: usize, data: &[u8]) -> Vec<u8> {
    let thl = 20 + opts;
    let total = 20 + thl + data.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&SRC4.octets());
    p[16..20].copy_from_slice(&DST4.octets());
    let c = !fold(sum(&p[..20]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&7u32.to_be_bytes());
    t[12] = ((thl / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&512u16.to_be_bytes());
    for (i, b) in t[20..thl].iter_mut().enumerate() {
        *b = if i % 4 == 0 { 1 } else { 0x5a }; // NOPs and junk, same in every segment
    }
    t[thl..].copy_from_slice(data);
    let l4 = (thl + data.len()) as u16;
    let c = !fold(pseudo_v4(SRC4, DST4, 6, l4) + sum(t));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    p
}

/// An IPv6/UDP packet with a complete checksum.
pub(crate) fn udp6(data: &[u8]) -> Vec<u8> {
    let l4 = 8 + data.len();
    let mut p = vec![0u8; 40 + l4];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(l4 as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&SRC6.octets());
    p[24..40].copy_from_slice(&DST6.octets());
    let u = &mut p[40..];
    u[0..2].copy_from_slice(&5000u16.to_be_bytes());
    u[2..4].copy_from_slice(&6000u16.to_be_bytes());
    u[4..6].copy_from_slice(&(l4 as u16).to_be_bytes());
    u[8..].copy_from_slice(data);
    let mut c = !fold(pseudo_v6(SRC6, DST6, 17, l4 as u32) + sum(u));
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    p
}

/// An IPv4/UDP packet with a complete checksum.
pub(crate) fn udp4(sport: u16, data: &[u8]) -> Vec<u8> {
    let l4 = 8 + data.len();
    let mut p = vec![0u8; 20 + l4];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + l4) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&SRC4.octets());
    p[16..20].copy_from_slice(&DST4.octets());
    let c = !fold(sum(&p[..20]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let u = &mut p[20..];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&6000u16.to_be_bytes());
    u[4..6].copy_from_slice(&(l4 as u16).to_be_bytes());
    u[8..].copy_from_slice(data);
    let mut c = !fold(pseudo_v4(SRC4, DST4, 17, l4 as u16) + sum(u));
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    p
}

/// The TSO header the kernel writes before a TCP super-packet.
pub(crate) fn tso_hdr(v6: bool, gso: u16, l4: u16, thl: u16, ecn: bool) -> VirtioNetHdr {
    VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if v6 {
            VIRTIO_NET_HDR_GSO_TCPV6
        } else {
            VIRTIO_NET_HDR_GSO_TCPV4
        } | if ecn { GSO_ECN } else { 0 },
        hdr_len: l4 + thl,
        gso_size: gso,
        csum_start: l4,
        csum_offset: 16,
    }
}

/// Checks one IPv4/TCP segment fully and returns (id, seq, flags, payload).
pub(crate) fn check_tcp4(p: &[u8]) -> (u16, u32, u8, Vec<u8>) {
    assert_eq!(p[0], 0x45);
    assert_eq!(usize::from(be16(p, 2)), p.len(), "IPv4 total length");
    assert_eq!(fold(sum(&p[..20])), 0xffff, "IPv4 header checksum");
    let t = &p[20..];
    assert_eq!(
        fold(pseudo_v4(SRC4, DST4, 6, t.len() as u16) + sum(t)),
        0xffff,
        "TCP checksum"
    );
    let thl = usize::from(t[12] >> 4) * 4;
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    (be16(p, 4), seq, t[13], t[thl..].to_vec())
}

/// Loads `pkt` (a super-packet described by `hdr`) the way the TUN port
/// does: read behind its header into the read buffer.
pub(crate) fn load(
    rx: &mut Splitter,
    hdr: &VirtioNetHdr,
    pkt: &[u8],
    mtu: usize,
) -> Result<usize, SplitError> {
    let buf = rx.read_buf();
    hdr.encode(buf).unwrap();
    buf[VNET_HDR_LEN..VNET_HDR_LEN + pkt.len()].copy_from_slice(pkt);
    assert_eq!(rx.packet(pkt.len()), pkt);
    let h = rx.header();
    rx.load(&h, pkt.len(), mtu)
}

#[test]
fn small_gso_size_is_carried_over_batches_in_order() {
    // 64 KiB at MSS 536 with 12 bytes of options: 121 segments, more than
    // a batch, and a short last one.
    let data = payload(120 * 536 + 100);
    let sup = tcp4(
        1000,
        0xffff_fe00,
        ACK | tcp::FLAG_PSH | tcp::FLAG_FIN,
        12,
        &data,
    );
    let mut rx = Splitter::new(MAX_FRAME);
    let n = load(&mut rx, &tso_hdr(false, 536, 20, 32, false), &sup, 1400).unwrap();
    assert_eq!(n, 121);

    let mut batch = Batch::new();
    let mut got = Vec::new();
    // First burst: 10 slots already used by ordinary packets.
    let k = rx.emit(&mut batch.slots_mut()[10..]).unwrap();
    assert_eq!(k, 54);
    assert_eq!(rx.pending_segments(), 121 - 54);
    for p in &batch.slots_mut()[10..10 + k] {
        got.push(check_tcp4(p.data()));
        assert_eq!(p.headroom(), crate::port::HEADROOM);
    }
    while rx.has_pending() {
        let k = rx.emit(batch.slots_mut()).unwrap();
        assert!(k > 0 && k <= BATCH_SIZE);
        for p in &batch.slots_mut()[..k] {
            got.push(check_tcp4(p.data()));
        }
    }
    assert_eq!(rx.emit(batch.slots_mut()).unwrap(), 0);
    assert_eq!(got.len(), 121);
    let mut stream = Vec::new();
    for (i, (id, seq, flags, pl)) in got.iter().enumerate() {
        assert_eq!(*id, 1000 + i as u16, "IPv4 ID run");
        assert_eq!(
            *seq,
            0xffff_fe00u32.wrapping_add(536 * i as u32),
            "sequence"
        );
        let last = i == 120;
        assert_eq!(
            *flags & (tcp::FLAG_PSH | tcp::FLAG_FIN) != 0,
            last,
            "PSH/FIN"
        );
        assert_eq!(*flags & ACK, ACK);
        assert_eq!(pl.len(), if last { 100 } else { 536 });
        stream.extend_from_slice(pl);
    }
    assert_eq!(stream, data, "payload intact and in order");
}

#[test]
fn cwr_stays_on_the_first_segment_across_chunks() {
    let data = payload(60 * 1000);
    let sup = tcp4(1, 1, ACK | tcp::FLAG_CWR, 0, &data);
    let mut rx = Splitter::new(MAX_FRAME);
    load(&mut rx, &tso_hdr(false, 1000, 20, 20, true), &sup, 1500).unwrap();
    let mut batch = Batch::new();
    let mut flags = Vec::new();
    while rx.has_pending() {
        let k = rx.emit(&mut batch.slots_mut()[..40]).unwrap();
        flags.extend(
            batch.slots_mut()[..k]
                .iter()
                .map(|p| check_tcp4(p.data()).2),
        );
    }
    assert_eq!(flags.len(), 60);
    assert_eq!(flags[0], ACK | tcp::FLAG_CWR);
    assert!(flags[1..].iter().all(|&f| f == ACK));
}

#[test]
fn uso_super_packet_splits_into_udp_datagrams() {
    let data = payload(5 * 1200 + 7);
    let sup = udp6(&data);
    let hdr = VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_UDP_L4,
        hdr_len: 48,
        gso_size: 1200,
        csum_start: 40,
        csum_offset: 6,
    };
    let mut rx = Splitter::new(MAX_FRAME);
    assert_eq!(load(&mut rx, &hdr, &sup, 1280).unwrap(), 6);
    let mut batch = Batch::new();
    let k = rx.emit(&mut batch.slots_mut()[..4]).unwrap();
    let k2 = rx.emit(batch.slots_mut()[4..].as_mut()).unwrap();
    assert_eq!((k, k2), (4, 2));
    let mut stream = Vec::new();
    for p in &batch.slots_mut()[..6] {
        let d = p.data();
        assert_eq!(usize::from(be16(d, 4)), d.len() - 40, "IPv6 payload length");
        let u = &d[40..];
        assert_eq!(usize::from(be16(u, 4)), u.len(), "UDP length");
        assert_eq!(
            fold(pseudo_v6(SRC6, DST6, 17, u.len() as u32) + sum(u)),
            0xffff,
            "UDP checksum"
        );
        stream.extend_from_slice(&u[8..]);
    }
    assert_eq!(stream, data);
}

#[test]
fn bad_super_packets_are_refused_whole() {
    let sup = tcp4(1, 1, ACK, 0, &payload(3000));
    let good = tso_hdr(false, 1000, 20, 20, false);
    let mut rx = Splitter::new(MAX_FRAME);
    // Segments of 1040 bytes do not fit a 1000-byte MTU.
    assert_eq!(
        load(&mut rx, &good, &sup, 1000),
        Err(SplitError::Oversize(1040, 1000))
    );
    assert!(!rx.has_pending());
    let cases = [
        VirtioNetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_TCPV6,
            ..good
        },
        VirtioNetHdr {
            gso_size: 0,
            ..good
        },
        VirtioNetHdr {
            csum_offset: 6,
            ..good
        },
        VirtioNetHdr {
            csum_start: 24,
            ..good
        },
        VirtioNetHdr {
            csum_start: 9000,
            ..good
        },
        VirtioNetHdr {
            gso_type: 3, // UFO: never enabled, not splittable
            ..good
        },
    ];
    for h in cases {
        assert!(
            matches!(load(&mut rx, &h, &sup, 1500), Err(SplitError::Malformed(_))),
            "{h:?}"
        );
        assert!(!rx.has_pending());
    }
    // Headers only, no payload.
    let bare = tcp4(1, 1, ACK, 0, &[]);
    assert!(load(&mut rx, &good, &bare, 1500).is_err());
    // A read that filled the whole buffer may be cut.
    assert_eq!(
        rx.load(&good, rx.capacity() + 1, 1500),
        Err(SplitError::Truncated)
    );
    // A hostile TCP data offset below 5 words.
    let mut odd = sup.clone();
    odd[32] = 0x40;
    assert!(load(&mut rx, &good, &odd, 1500).is_err());
}

/// What the kernel hands over as a TCP super-packet stays whole exactly
/// when splitting it would have worked too: the same header checks, the
/// MTU, and the length limit for encapsulation (anything else goes to the
/// splitter, which refuses or splits it).
#[test]
fn only_a_sound_tso_super_packet_is_kept_whole() {
    let sup = tcp4(1, 1, ACK, 12, &payload(3000));
    let good = tso_hdr(false, 1000, 20, 32, false);
    let g = keep_whole(&good, &sup, 1500).expect("kept whole");
    assert_eq!((g.size, g.segs), (1000, 3));
    // With ECN: still whole; CWR stays on the first segment when cut.
    assert!(keep_whole(&tso_hdr(false, 1000, 20, 32, true), &sup, 1500).is_some());
    // Segments of 1052 bytes over a 1000-byte MTU.
    assert!(keep_whole(&good, &sup, 1000).is_none());
    let bad = [
        VirtioNetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_TCPV6,
            ..good
        },
        VirtioNetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_UDP_L4,
            ..good
        },
        VirtioNetHdr {
            gso_size: 0,
            ..good
        },
        VirtioNetHdr {
            csum_offset: 6,
            ..good
        },
        VirtioNetHdr {
            csum_start: 24,
            ..good
        },
    ];
    for h in bad {
        assert!(keep_whole(&h, &sup, 1500).is_none(), "{h:?}");
    }
    // Every cut and a lying IPv4 total length: not whole.
    for cut in 0..sup.len() {
        assert!(keep_whole(&good, &sup[..cut], 1500).is_none(), "cut {cut}");
    }
    let mut lying = sup.clone();
    lying[2..4].copy_from_slice(&1000u16.to_be_bytes());
    assert!(keep_whole(&good, &lying, 1500).is_none());
    // IPv6 too; and an IPv6 packet too large to be encapsulated whole.
    let six = tcp6(5, ACK, &payload(5000));
    let h6 = tso_hdr(true, 1200, 40, 20, false);
    assert_eq!(keep_whole(&h6, &six, 1500).map(|g| g.segs), Some(5));
    let huge = tcp6(5, ACK, &payload(65_450));
    assert!(keep_whole(&h6, &huge, 1500).is_none());
    // A UDP_SEGMENT write: whole as USO, with the UDP checksum offset.
    let dgrams = udp4(5000, &payload(3 * 1200 + 10));
    let uso = VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_UDP_L4,
        hdr_len: 28,
        gso_size: 1200,
        csum_start: 20,
        csum_offset: 6,
    };
    assert_eq!(keep_whole(&uso, &dgrams, 1500).map(|g| g.segs), Some(4));
    assert!(keep_whole(
        &VirtioNetHdr {
            csum_offset: 16,
            ..uso
        },
        &dgrams,
        1500
    )
    .is_none());
    assert!(keep_whole(
        &VirtioNetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_UDP_L4 | GSO_ECN,
            ..uso
        },
        &dgrams,
        1500
    )
    .is_none());
    // A TCP header on a UDP packet, or the reverse.
    assert!(keep_whole(&good, &dgrams, 1500).is_none());
    assert!(keep_whole(&uso, &sup, 1500).is_none());
}

#[test]
fn partial_checksums_are_completed() {
    let data = payload(301);
    let mut p = udp4(5000, &data);
    let good = p.clone();
    // What the kernel hands over with CHECKSUM_PARTIAL: the pseudo-header sum.
    let ps = fold(pseudo_v4(SRC4, DST4, 17, (8 + data.len()) as u16));
    p[26..28].copy_from_slice(&ps.to_be_bytes());
    assert!(complete_checksum(&mut p, 20, 6));
    assert_eq!(p, good);

    let mut t = tcp4(9, 9, ACK, 0, &data);
    let good = t.clone();
    let ps = fold(pseudo_v4(SRC4, DST4, 6, (20 + data.len()) as u16));
    t[36..38].copy_from_slice(&ps.to_be_bytes());
    assert!(complete_checksum(&mut t, 20, 16));
    assert_eq!(t, good);

    let mut short = vec![0x45u8; 30];
    assert!(!complete_checksum(&mut short, 20, 16));
    assert!(!complete_checksum(&mut short, u16::MAX, u16::MAX));
    assert_eq!(short, vec![0x45u8; 30]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary virtio headers over arbitrary bytes never panic the
    /// splitter, and whatever it emits fits the MTU.
    #[test]
    fn gso_split_survives_arbitrary_headers(
        flags in any::<u8>(), gso_type in any::<u8>(), hdr_len in any::<u16>(),
        gso_size in any::<u16>(), csum_start in 0u16..100, csum_offset in 0u16..40,
        tcp in any::<bool>(), len in 0usize..6000,
    ) {
        let mut pkt = if tcp { tcp4(3, 3, ACK, 0, &payload(len)) } else { udp4(3, &payload(len)) };
        pkt[0] ^= flags & 0x20; // sometimes not IPv4
        let h = VirtioNetHdr { flags, gso_type, hdr_len, gso_size, csum_start, csum_offset };
        let mut rx = Splitter::new(MAX_FRAME);
        if load(&mut rx, &h, &pkt, 1500).is_ok() {
            let mut batch = Batch::new();
            while rx.has_pending() {
                let k = rx.emit(batch.slots_mut()).unwrap_or(0);
                for p in &batch.slots_mut()[..k] {
                    prop_assert!(p.len() <= 1500);
                }
            }
        }
    }
}

/// An IPv6/TCP segment with a complete checksum.
pub(crate) fn tcp6(seq: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let l4 = 20 + data.len();
    let mut p = vec![0u8; 40 + l4];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(l4 as u16).to_be_bytes());
    p[6] = 6;
    p[7] = 64;
    p[8..24].copy_from_slice(&SRC6.octets());
    p[24..40].copy_from_slice(&DST6.octets());
    let t = &mut p[40..];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&7u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&512u16.to_be_bytes());
    t[20..].copy_from_slice(data);
    let c = !fold(pseudo_v6(SRC6, DST6, 6, l4 as u32) + sum(t));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    p
}

/// Every segment `Splitter` gives for one read (a guard against an endless
/// emit loop included).
fn split_all(h: &VirtioNetHdr, pkt: &[u8], mtu: usize) -> Result<Vec<Vec<u8>>, SplitError> {
    let mut rx = Splitter::new(MAX_FRAME);
    load(&mut rx, h, pkt, mtu)?;
    let mut out = Vec::new();
    let mut batch = Batch::new();
    for _ in 0..100_000 {
        if !rx.has_pending() {
            return Ok(out);
        }
        let k = rx.emit(batch.slots_mut())?;
        out.extend(batch.slots_mut()[..k].iter().map(|p| p.data().to_vec()));
    }
    panic!("emit never ends");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// A container may write any virtio-net header in front of any packet.
    /// Whenever `keep_whole` keeps it whole, cutting it with
    /// `offload::write_headers` gives exactly the segments the split path
    /// (`Splitter`) gives, each within the MTU; and neither panics on anything.
    #[test]
    fn a_packet_kept_whole_is_cut_as_the_split_path_cuts_it(
        kind in 0usize..4,
        n in 1usize..5000,
        flags in any::<u8>(),
        gso_type in prop::sample::select(vec![0u8, 1, 2, 3, 4, 5, 0x81, 0x83, 0x85]),
        hdr_len in any::<u16>(),
        gso_size in prop::sample::select(vec![0u16, 1, 3, 8, 500, 1000, 1400, 1460, 2000, 65535]),
        csum_start in prop::sample::select(vec![0u16, 19, 20, 24, 40, 41, 48, 60]),
        csum_offset in prop::sample::select(vec![0u16, 6, 16, 17]),
        changes in proptest::collection::vec((0usize..70, any::<u8>()), 0..2),
        sane in 0u8..8,
    ) {
        // Most cases get the header a kernel would write, so that many are
        // kept whole; the rest keep the random one.
        let (gso_type, csum_start, csum_offset) = if sane & 3 != 0 {
            match kind {
                0 => (if sane & 4 != 0 { 0x81 } else { 1 }, 20, 16),
                1 => (if sane & 4 != 0 { 0x84 } else { 4 }, 40, 16),
                2 => (5, 20, 6),
                _ => (5, 40, 6),
            }
        } else {
            (gso_type, csum_start, csum_offset)
        };
        let mut pkt = match kind {
            0 => tcp4(9, 100, ACK | 0x08, 12, &payload(n)),
            1 => tcp6(100, ACK | 0x81, &payload(n)),
            2 => udp4(5, &payload(n)),
            _ => udp6(&payload(n)),
        };
        for (at, v) in &changes {
            if let Some(b) = pkt.get_mut(*at) {
                *b = *v;
            }
        }
        let h = VirtioNetHdr { flags, gso_type, hdr_len, gso_size, csum_start, csum_offset };
        let whole = keep_whole(&h, &pkt, 1500);
        let split = split_all(&h, &pkt, 1500);
        if let Some(g) = whole {
            let l = offload::Layout::parse(&pkt, offload::Encap::Ip, g).unwrap();
            prop_assert_eq!(l.segments, usize::from(g.segs));
            let mut segs = Vec::new();
            for i in 0..l.segments {
                let mut s = vec![0u8; l.segment_len(i)];
                let r = offload::write_headers(&pkt, &l, i, &mut s, true);
                s[l.payload..].copy_from_slice(&pkt[r]);
                prop_assert!(s.len() <= 1500);
                segs.push(s);
            }
            let split = split.map_err(|e| TestCaseError::fail(format!("kept whole, but the split refuses it: {e}")))?;
            prop_assert_eq!(segs, split);
        }
    }
}

/// The fields of a header, for comparing two.
fn vnet_fields(h: &VirtioNetHdr) -> (u8, u8, u16, u16, u16, u16) {
    (
        h.flags,
        h.gso_type,
        h.hdr_len,
        h.gso_size,
        h.csum_start,
        h.csum_offset,
    )
}

fn tso_hdr_at(flags: u8, gso_type: u8, hdr_len: u16, csum_start: u16) -> VirtioNetHdr {
    VirtioNetHdr {
        flags,
        gso_type,
        hdr_len,
        gso_size: 1398,
        csum_start,
        csum_offset: 16,
    }
}

#[test]
fn header_offsets_move_by_the_ethernet_header_and_back() {
    let on_wire = tso_hdr_at(F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 14 + 52, 14 + 20);
    let ip = shift_header(&on_wire, -14).unwrap();
    assert_eq!((ip.hdr_len, ip.csum_start), (52, 20));
    assert_eq!((ip.gso_size, ip.csum_offset), (1398, 16));
    assert_eq!(
        vnet_fields(&shift_header(&ip, 14).unwrap()),
        vnet_fields(&on_wire)
    );
}

#[test]
fn header_fields_not_in_use_are_left_alone() {
    // No checksum flag: csum_start means nothing and is not moved; no
    // GSO: neither is hdr_len.
    let plain = tso_hdr_at(0, GSO_NONE, 3, 5);
    assert_eq!(
        vnet_fields(&shift_header(&plain, -14).unwrap()),
        vnet_fields(&plain)
    );
}

#[test]
fn offsets_before_the_frame_are_refused() {
    let bad = tso_hdr_at(F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 66, 10);
    assert!(shift_header(&bad, -14).is_none());
    let bad = tso_hdr_at(0, VIRTIO_NET_HDR_GSO_TCPV4, 10, 0);
    assert!(shift_header(&bad, -14).is_none());
    let huge = tso_hdr_at(F_NEEDS_CSUM, GSO_NONE, 0, u16::MAX);
    assert!(shift_header(&huge, 14).is_none());
}
