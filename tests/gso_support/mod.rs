//! TCP super-packets for the tests: built as a container's kernel hands
//! them over, and cut by tun-rs' `gso_split`, a segmenter independent of
//! ours.
#![allow(dead_code)]

use tun_rs::{
    gso_split, VirtioNetHdr, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP_L4,
};
use vxrouter::wire::checksum::{checksum, fold, pseudo_v4, pseudo_v6};

/// A TCP super-packet as a container's kernel hands it over: lengths for
/// the whole, the TCP checksum field partial (pseudo-header only).
pub fn super_tcp(v6: bool, src: &[u8], dst: &[u8], flags: u8, data: &[u8]) -> Vec<u8> {
    let ihl = if v6 { 40 } else { 20 };
    let thl = 32;
    let total = ihl + thl + data.len();
    let mut p = vec![0u8; total];
    if v6 {
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        p[6] = 6;
        p[7] = 64;
        p[8..24].copy_from_slice(src);
        p[24..40].copy_from_slice(dst);
    } else {
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&4321u16.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(src);
        p[16..20].copy_from_slice(dst);
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let t = &mut p[ihl..];
    t[0..2].copy_from_slice(&45678u16.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    t[4..8].copy_from_slice(&1_000_000u32.to_be_bytes());
    t[8..12].copy_from_slice(&99u32.to_be_bytes());
    t[12] = ((thl / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&1024u16.to_be_bytes());
    t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
    t[thl..].copy_from_slice(data);
    let ps = if v6 {
        let s: [u8; 16] = src.try_into().unwrap();
        let d: [u8; 16] = dst.try_into().unwrap();
        pseudo_v6(s.into(), d.into(), 6, (thl + data.len()) as u32)
    } else {
        let s: [u8; 4] = src.try_into().unwrap();
        let d: [u8; 4] = dst.try_into().unwrap();
        pseudo_v4(s.into(), d.into(), 6, (thl + data.len()) as u16)
    };
    t[16..18].copy_from_slice(&fold(ps).to_be_bytes());
    p
}

/// tun-rs' segmentation of `ip` (what the kernel's TSO would put on a wire).
pub fn cut(ip: &[u8], size: u16) -> Vec<Vec<u8>> {
    let v6 = ip[0] >> 4 == 6;
    let l4 = if v6 { 40 } else { 20 };
    let udp = ip[if v6 { 6 } else { 9 }] == 17;
    let thl = if udp { 8 } else { 32 };
    let hdr = VirtioNetHdr {
        flags: 1,
        gso_type: match (udp, v6) {
            (true, _) => VIRTIO_NET_HDR_GSO_UDP_L4,
            (false, true) => VIRTIO_NET_HDR_GSO_TCPV6,
            (false, false) => VIRTIO_NET_HDR_GSO_TCPV4,
        },
        hdr_len: (l4 + thl) as u16,
        gso_size: size,
        csum_start: l4 as u16,
        csum_offset: if udp { 6 } else { 16 },
    };
    let n = (ip.len() - l4 - thl).div_ceil(usize::from(size));
    let mut bufs = vec![vec![0u8; 2048]; n];
    let mut sizes = vec![0usize; n];
    let mut input = ip.to_vec();
    assert_eq!(
        gso_split(&mut input, hdr, &mut bufs, &mut sizes, 0, v6).unwrap(),
        n
    );
    bufs.into_iter()
        .zip(sizes)
        .map(|(mut b, s)| {
            b.truncate(s);
            b
        })
        .collect()
}

/// A UDP super-packet as a container's `UDP_SEGMENT` write hands it over:
/// lengths of the whole, the checksum field partial (pseudo-header only).
pub fn super_udp(v6: bool, src: &[u8], dst: &[u8], data: &[u8]) -> Vec<u8> {
    let ihl = if v6 { 40 } else { 20 };
    let total = ihl + 8 + data.len();
    let mut p = vec![0u8; total];
    if v6 {
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        p[6] = 17;
        p[7] = 64;
        p[8..24].copy_from_slice(src);
        p[24..40].copy_from_slice(dst);
    } else {
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&777u16.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(src);
        p[16..20].copy_from_slice(dst);
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let len = 8 + data.len();
    let u = &mut p[ihl..];
    u[0..2].copy_from_slice(&4433u16.to_be_bytes());
    u[2..4].copy_from_slice(&443u16.to_be_bytes());
    u[4..6].copy_from_slice(&(len as u16).to_be_bytes());
    u[8..].copy_from_slice(data);
    let ps = if v6 {
        let s: [u8; 16] = src.try_into().unwrap();
        let d: [u8; 16] = dst.try_into().unwrap();
        pseudo_v6(s.into(), d.into(), 17, len as u32)
    } else {
        let s: [u8; 4] = src.try_into().unwrap();
        let d: [u8; 4] = dst.try_into().unwrap();
        pseudo_v4(s.into(), d.into(), 17, len as u16)
    };
    u[6..8].copy_from_slice(&fold(ps).to_be_bytes());
    p
}

pub fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 97) as u8).collect()
}
