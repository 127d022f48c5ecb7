//! The outer headers of VXLAN frames that cross a kernel UDP socket: the
//! UDP uplink sends only a frame's VXLAN payload to its peer's address
//! ([`parse_tx`]), and puts back in front of each datagram it receives the
//! Ethernet, IP and UDP headers the kernel took off ([`synth_rx`]), so the
//! pipeline sees what an AF_XDP uplink would hand it.
//!
//! Layer: offload, sans-IO; [`crate::port::udp`] owns the sockets.
//!
//! Invariants: [`parse_tx`] accepts exactly the frames the pipeline's
//! encapsulation makes (Ethernet, IPv4 without options or fragmentation or
//! IPv6 without extension headers, UDP, at least VXLAN and an inner Ethernet
//! header) and never reads past the frame; the synthesised headers carry
//! the sender's address and port, our underlay address and VXLAN port, a
//! valid IPv4 header checksum and a zero UDP checksum (the kernel verified
//! the real one: RFC 7348 section 5, RFC 6935).

use std::net::{IpAddr, SocketAddr};

use crate::wire::{ethernet, ipv4, ipv6, udp, vxlan};

/// Smallest datagram that can be VXLAN: its header and an inner Ethernet header.
pub const MIN_VXLAN: usize = vxlan::HEADER_LEN + ethernet::HEADER_LEN;

/// The TTL (hop limit) of the outer headers written in front of a received
/// datagram; the pipeline does not read it.
const SYNTH_TTL: u8 = 64;

/// Where an encapsulated frame goes and what of it the kernel sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxParts<'a> {
    /// Peer underlay address and UDP port.
    pub dst: SocketAddr,
    /// The VXLAN source port the pipeline chose from the inner flow hash.
    pub src_port: u16,
    /// The UDP payload: VXLAN header onward.
    pub payload: &'a [u8],
}

/// Splits an encapsulated frame (Ethernet, IPv4 without options or IPv6
/// without extension headers, UDP, VXLAN) into what a UDP socket needs.
/// `None` for anything else: the pipeline only ever emits that shape
/// toward the uplink, so anything else is a bug to count, not to send.
pub fn parse_tx(frame: &[u8]) -> Option<TxParts<'_>> {
    const ETH: usize = ethernet::HEADER_LEN;
    let eth = ethernet::Frame::new_unchecked(frame.get(..ETH)?);
    let (ip, udp_off): (IpAddr, usize) = match eth.outer_ethertype() {
        ethernet::ETHERTYPE_IPV4 => {
            let h = ipv4::Packet::new_unchecked(frame.get(ETH..ETH + ipv4::MIN_HEADER_LEN)?);
            if h.version() != 4
                || h.header_len() != ipv4::MIN_HEADER_LEN
                || h.protocol() != ipv4::PROTO_UDP
                || h.is_fragment()
            {
                return None;
            }
            (IpAddr::V4(h.dst()), ETH + ipv4::MIN_HEADER_LEN)
        }
        ethernet::ETHERTYPE_IPV6 => {
            let h = ipv6::Packet::new_unchecked(frame.get(ETH..ETH + ipv6::HEADER_LEN)?);
            if h.version() != 6 || h.next_header() != ipv6::NH_UDP {
                return None;
            }
            (IpAddr::V6(h.dst()), ETH + ipv6::HEADER_LEN)
        }
        _ => return None,
    };
    let u = udp::Packet::new_unchecked(frame.get(udp_off..udp_off + udp::HEADER_LEN)?);
    let udp_len = usize::from(u.len());
    if udp_len < udp::HEADER_LEN + MIN_VXLAN {
        return None;
    }
    let payload = frame.get(udp_off + udp::HEADER_LEN..udp_off + udp_len)?;
    Some(TxParts {
        dst: SocketAddr::new(ip, u.dst_port()),
        src_port: u.src_port(),
        payload,
    })
}

/// Writes an Ethernet frame carrying `payload` as a UDP datagram from `src`
/// to `dst` into `out` (the outer headers the kernel consumed on receive)
/// and returns its length; `None` when `out` is too short or the address
/// families differ. The UDP checksum is left zero: the kernel verified it.
pub fn synth_rx(
    out: &mut [u8],
    mac: [u8; 6],
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) -> Option<usize> {
    let h = synth_headers(out, mac, src, dst, payload.len())?;
    out[h..h + payload.len()].copy_from_slice(payload);
    Some(h + payload.len())
}

/// The headers of [`synth_rx`] alone, for a payload of `payload_len` bytes
/// the caller writes behind them: returns the header length. `None` when
/// `out` cannot hold headers and payload, the lengths do not fit 16 bits or
/// the address families differ.
pub fn synth_headers(
    out: &mut [u8],
    mac: [u8; 6],
    src: SocketAddr,
    dst: SocketAddr,
    payload_len: usize,
) -> Option<usize> {
    let (ip_len, ethertype) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => (ipv4::MIN_HEADER_LEN, ethernet::ETHERTYPE_IPV4),
        (IpAddr::V6(_), IpAddr::V6(_)) => (ipv6::HEADER_LEN, ethernet::ETHERTYPE_IPV6),
        _ => return None,
    };
    let udp_len = udp::HEADER_LEN + payload_len;
    let l4 = ethernet::HEADER_LEN + ip_len;
    let hdr = l4 + udp::HEADER_LEN;
    if hdr + payload_len > out.len() || ip_len + udp_len > u16::MAX as usize {
        return None;
    }
    let out = &mut out[..hdr];
    // The sender's MAC is not known to a socket; the pipeline ignores it.
    ethernet::emit(out, mac, [0; 6], ethertype);
    let ip = &mut out[ethernet::HEADER_LEN..l4];
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4::Repr {
            src: s,
            dst: d,
            protocol: ipv4::PROTO_UDP,
            ttl: SYNTH_TTL,
            payload_len: udp_len as u16,
            // DF: the router never fragments VXLAN.
            dont_frag: true,
            ident: 0,
        }
        .emit(ip),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6::Repr {
            src: s,
            dst: d,
            next_header: ipv6::NH_UDP,
            hop_limit: SYNTH_TTL,
            payload_len: udp_len as u16,
        }
        .emit(ip),
        _ => return None,
    }
    udp::emit(&mut out[l4..], src.port(), dst.port(), payload_len as u16);
    Some(hdr)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::port::MAX_FRAME;
    use crate::wire::{ethernet, ipv4, ipv6, udp};
    use std::net::{Ipv4Addr, Ipv6Addr};

    pub(crate) const MAC: [u8; 6] = [2, 0, 0xc6, 0x12, 0, 1];

    pub(crate) fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
    }

    pub(crate) fn vxlan_payload(len: usize, fill: u8) -> Vec<u8> {
        let mut p = vec![fill; len];
        p[..8].copy_from_slice(&[0x08, 0, 0, 0, 0, 0, 42, 0]);
        p
    }

    #[test]
    fn synthesised_v4_frame_is_what_the_wire_would_carry() {
        let src = v4([198, 18, 0, 2], 50123);
        let dst = v4([198, 18, 0, 1], 4789);
        let payload = vxlan_payload(100, 7);
        let mut out = [0u8; MAX_FRAME];
        let n = synth_rx(&mut out, MAC, src, dst, &payload).unwrap();
        assert_eq!(n, 14 + 20 + 8 + 100);
        let eth = ethernet::Frame::new_checked(&out[..n]).unwrap();
        assert_eq!(eth.dst(), MAC);
        assert_eq!(eth.ethertype(), ethernet::ETHERTYPE_IPV4);
        let ip = ipv4::Packet::new_checked(&out[14..n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src(), Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(ip.dst(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(ip.total_len() as usize, n - 14);
        assert_eq!(ip.frag_offset(), 0);
        assert!(!ip.more_frags());
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(u.src_port(), 50123);
        assert_eq!(u.dst_port(), 4789);
        assert_eq!(u.len() as usize, 108);
        assert_eq!(u.checksum(), 0);
        assert_eq!(&out[42..n], &payload[..]);
        // And back: the transmit side finds the same parts.
        let parts = parse_tx(&out[..n]).unwrap();
        assert_eq!(parts.dst, dst);
        assert_eq!(parts.src_port, 50123);
        assert_eq!(parts.payload, &payload[..]);
    }

    #[test]
    fn synthesised_v6_frame_round_trips() {
        let src = SocketAddr::new(IpAddr::V6("2001:2::2".parse::<Ipv6Addr>().unwrap()), 40000);
        let dst = SocketAddr::new(IpAddr::V6("2001:2::1".parse::<Ipv6Addr>().unwrap()), 4789);
        let payload = vxlan_payload(64, 1);
        let mut out = [0u8; MAX_FRAME];
        let n = synth_rx(&mut out, MAC, src, dst, &payload).unwrap();
        assert_eq!(n, 14 + 40 + 8 + 64);
        let ip = ipv6::Packet::new_checked(&out[14..n]).unwrap();
        assert_eq!(ip.payload_len() as usize, 72);
        assert_eq!(ip.next_header(), 17);
        let parts = parse_tx(&out[..n]).unwrap();
        assert_eq!(parts.dst, dst);
        assert_eq!(parts.src_port, 40000);
        assert_eq!(parts.payload, &payload[..]);
    }

    #[test]
    fn synth_refuses_mixed_families_and_short_buffers() {
        let src = v4([198, 18, 0, 2], 1);
        let dst6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 4789);
        let mut out = [0u8; 200];
        assert_eq!(synth_rx(&mut out, MAC, src, dst6, &[0; 30]), None);
        assert_eq!(
            synth_rx(&mut out, MAC, src, v4([198, 18, 0, 1], 4789), &[0; 190]),
            None
        );
    }

    #[test]
    fn parse_tx_rejects_what_is_not_encapsulated_udp() {
        let src = v4([198, 18, 0, 2], 1);
        let dst = v4([198, 18, 0, 1], 4789);
        let mut out = [0u8; MAX_FRAME];
        let n = synth_rx(&mut out, MAC, src, dst, &vxlan_payload(40, 0)).unwrap();
        let good = out[..n].to_vec();
        assert!(parse_tx(&good).is_some());
        // Every truncation is refused, never a panic.
        for cut in 0..n {
            assert!(parse_tx(&good[..cut]).is_none(), "cut at {cut}");
        }
        let mut f = good.clone();
        f[14 + 9] = 6; // TCP
        assert!(parse_tx(&f).is_none());
        let mut f = good.clone();
        f[14] = 0x46; // IPv4 options
        assert!(parse_tx(&f).is_none());
        let mut f = good.clone();
        f[14 + 6] = 0x20; // more fragments
        assert!(parse_tx(&f).is_none());
        let mut f = good.clone();
        f[12] = 0x08;
        f[13] = 0x06; // ARP
        assert!(parse_tx(&f).is_none());
        let mut f = good.clone();
        f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&20u16.to_be_bytes()); // too short for VXLAN
        assert!(parse_tx(&f).is_none());
    }
}
