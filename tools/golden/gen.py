#!/usr/bin/env python3
"""Golden test vectors for the vxrouter pipeline, built with scapy.

scapy is the independent encoder: every input frame and every expected output
frame is built here from the protocol specifications, never by the Rust code
under test. The script writes, into the output directory (default
tests/golden/ next to this repository's tools/):

- topo-v4.toml, topo-v6.toml: the topologies (IPv4 and IPv6 underlay);
  topo-v4-big.toml: topo-v4.toml with an overlay MTU (1600) larger than a
  1500-byte IPv4 underlay carries; topo-nets.toml: two overlay networks
  (VNI 42 and 43) whose address spaces overlap on h1 and h2;
- <case>.in.pcap: the frames fed to one port of host h1;
- <case>.out.pcap (or .out-<peer>.pcap for ECMP alternatives): the frames
  expected on the output port;
- cases.json: the list of cases and their expected verdicts.

Output is deterministic (fixed timestamps, our own pcap writer, sorted JSON):
running it twice gives identical bytes, and tests/golden.rs checks that the
committed files are what this script produces.

cases.json holds {"version": 1, "cases": [case, ...]}; a case is
  {"name", "topo", "host", "in_port", "input", "frames", "expect"}
and "expect" is one of
  {"verdict": "forward"|"reply"|"icmp", "port", "output", "mask", ["reason"]}
  {"verdict": "drop", "reason"}
  {"verdict": "pass"}
  {"verdict": "ecmp", "port", "alternatives": {peer: output}, "mask",
   "flows", "repeat"}
"mask" lists [offset, length] byte ranges of each output frame that the
pipeline chooses freely (VXLAN UDP source port, and the UDP checksum over an
IPv6 underlay, which covers that port); the harness checks those fields by
other means (range, checksum validity). In topo-nets.toml's cases "expect"
also has "network": the network under which replay's stats.json counts
every frame of the case (its input port's, or from the tunnel its VNI's),
or null for no network (a VNI of no network).

Usage: gen.py [--out DIR]
"""

import argparse
import json
import os
import struct
import sys

import logging

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import (  # noqa: E402
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6PacketTooBig,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether  # noqa: E402
from scapy.layers.vxlan import VXLAN  # noqa: E402
from scapy.packet import Raw  # noqa: E402

# ----------------------------------------------------------------- topology

VNI = 42
VXLAN_PORT = 4789
OVERLAY_MTU = 1450
# The underlay MTU tests/golden.rs replays with (`--underlay-mtu`), and the
# largest inner packet that fits it once encapsulated: VXLAN adds inner
# Ethernet 14, UDP 8 and VXLAN 8, plus the outer IPv4 (20) or IPv6 (40)
# header.
UNDERLAY_MTU = 1500
FIT = {"topo-v4.toml": UNDERLAY_MTU - 50, "topo-v4-big.toml": UNDERLAY_MTU - 50, "topo-v6.toml": UNDERLAY_MTU - 70}
# Overlay MTU of topo-v4-big.toml: more than the underlay carries.
BIG_MTU = 1600
HOSTS = ["h1", "h2", "h3", "h4", "h5"]
UNDERLAY_MAC = {h: "02:00:c6:12:00:%02x" % (i + 1) for i, h in enumerate(HOSTS)}
VTEP_MAC = {h: "02:42:c6:12:00:%02x" % (i + 1) for i, h in enumerate(HOSTS)}
UNDERLAY4 = {h: "198.18.0.%d" % (i + 1) for i, h in enumerate(HOSTS)}
UNDERLAY6 = {h: "2001:2::%d" % (i + 1) for i, h in enumerate(HOSTS)}
UNDERLAY = {
    "topo-v4.toml": UNDERLAY4,
    "topo-v4-big.toml": UNDERLAY4,
    "topo-v6.toml": UNDERLAY6,
    "topo-nets.toml": UNDERLAY4,
}

# Host under test: h1. Port 0 is the uplink eth0, then c1 (TUN), c2 (veth).
C1_V4, C1_V6 = "198.19.1.2", "2001:2:0:1::2"
C2_V4, C2_V6 = "198.19.1.3", "2001:2:0:1::3"
C2_MAC = "02:00:00:00:01:03"
# Router MAC on container port i: 02:52 + the last three bytes of h1's VTEP
# MAC + i.
R2_MAC = "02:52:12:00:01:02"
GW4, GW6 = "198.19.1.1", "2001:2:0:1::1"
C2_LL = "fe80::ff:fe00:103"
# Remote containers.
H2_V4, H2_V6 = "198.19.2.5", "2001:2:0:2::5"
H3_V4 = "198.19.3.7"
H4_V4 = "198.19.4.10"

ICMP4_QUOTE = 576 - 28
ICMP6_QUOTE = 1280 - 48
MASK_V4 = [[34, 2]]  # outer UDP source port
MASK_V6 = [[54, 2], [60, 2]]  # outer UDP source port and checksum
MASK = {"topo-v4.toml": MASK_V4, "topo-v4-big.toml": MASK_V4, "topo-v6.toml": MASK_V6, "topo-nets.toml": MASK_V4}
# Placeholder source port in expected encapsulations (masked).
SPORT_PLACEHOLDER = 49152
# Source port peers use toward us.
PEER_SPORT = 50001

TS_BASE = 1_700_000_000


def topology(underlay, mtu=OVERLAY_MTU):
    """The topology file, in the shape DESIGN.md gives."""
    subnets = {
        "h1": ["198.19.1.0/24", "2001:2:0:1::/64"],
        "h2": ["198.19.2.0/24", "2001:2:0:2::/64"],
        "h3": ["198.19.3.0/24", "2001:2:0:3::/64"],
        "h4": ["198.19.4.0/24"],
        "h5": ["198.19.5.0/24"],
    }
    out = [
        "# Golden-test topology (generated by tools/golden/gen.py; do not edit).",
        "# Host under test: h1. h4 is reached by ECMP over h2 and h3; h5 has no",
        "# link and is unreachable. Addresses: RFC 5737/5180 benchmarking ranges.",
        "[overlay]",
        "vni = %d" % VNI,
        "udp_port = %d" % VXLAN_PORT,
        "mtu = %d" % mtu,
    ]
    for h in HOSTS:
        out += [
            "",
            "[[hosts]]",
            'name = "%s"' % h,
            'underlay = "%s"' % underlay[h],
            'underlay_mac = "%s"' % UNDERLAY_MAC[h],
            'vtep_mac = "%s"' % VTEP_MAC[h],
            "subnets = [%s]" % ", ".join('"%s"' % s for s in subnets[h]),
            'nic = "eth0"',
            "workers = [0]",
        ]
        if h == "h1":
            out += [
                "  [[hosts.ports]]",
                '  name = "c1"',
                '  kind = "tun"',
                '  addresses = ["%s/32", "%s/128"]' % (C1_V4, C1_V6),
                "  [[hosts.ports]]",
                '  name = "c2"',
                '  kind = "veth"',
                '  addresses = ["%s/32", "%s/128"]' % (C2_V4, C2_V6),
                '  mac = "%s"' % C2_MAC,
            ]
    for a, b in [("h1", "h2"), ("h1", "h3"), ("h2", "h4"), ("h3", "h4")]:
        out += ["", "[[links]]", 'a = "%s"' % a, 'b = "%s"' % b, "cost = 10"]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------- bytes


def csum(data):
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def dec_ttl(pkt):
    """The IP packet as a router forwards it: TTL or hop limit minus one."""
    b = bytearray(pkt)
    if b[0] >> 4 == 4:
        b[8] -= 1
        hl = (b[0] & 0xF) * 4
        b[10:12] = b"\0\0"
        b[10:12] = struct.pack("!H", csum(bytes(b[:hl])))
    else:
        b[7] -= 1
    return bytes(b)


def vxlan_hdr(vni=VNI, flags=0x08, r1=0, r2=0):
    """RFC 7348 section 5: flags, 24 reserved bits, VNI, 8 reserved bits."""
    return struct.pack("!BBH", flags, r1 >> 16, r1 & 0xFFFF) + struct.pack("!I", (vni << 8) | r2)


def ethertype_of(inner):
    return 0x0800 if inner[0] >> 4 == 4 else 0x86DD


def udp4(src, dst, sport=40000, dport=7, payload=b"golden", ttl=64, df=True, ident=0x1234, **kw):
    return bytes(
        IP(src=src, dst=dst, ttl=ttl, flags="DF" if df else 0, id=ident, tos=0, **kw)
        / UDP(sport=sport, dport=dport)
        / Raw(payload)
    )


def udp6(src, dst, sport=40000, dport=7, payload=b"golden", hlim=64):
    return bytes(IPv6(src=src, dst=dst, hlim=hlim, tc=0, fl=0) / UDP(sport=sport, dport=dport) / Raw(payload))


def sized4(src, dst, total, df=True):
    """An IPv4/UDP packet of exactly `total` bytes."""
    return udp4(src, dst, payload=bytes(i & 0xFF for i in range(total - 28)), df=df)


def sized6(src, dst, total):
    return udp6(src, dst, payload=bytes(i & 0xFF for i in range(total - 48)))


def outer(topo, peer, inner_l2, sport=SPORT_PLACEHOLDER, src_host="h1", dst_host=None, l4_csum=None, vxlan=None):
    """Outer Ethernet/IP/UDP/VXLAN from h1 to `peer` (expected encapsulation),
    or, with src_host/dst_host, from a peer to h1 (input)."""
    dst_host = dst_host or peer
    ul = UNDERLAY[topo]
    src_ip, dst_ip = ul[src_host], ul[dst_host]
    payload = Raw((vxlan if vxlan is not None else vxlan_hdr()) + inner_l2)
    eth = Ether(dst=UNDERLAY_MAC[dst_host], src=UNDERLAY_MAC[src_host])
    if ul is UNDERLAY4:
        # RFC 7348: UDP checksum zero over IPv4.
        return bytes(
            eth
            / IP(src=src_ip, dst=dst_ip, ttl=64, flags="DF", id=0, tos=0)
            / UDP(sport=sport, dport=VXLAN_PORT, chksum=0 if l4_csum is None else l4_csum)
            / payload
        )
    udp = UDP(sport=sport, dport=VXLAN_PORT) if l4_csum is None else UDP(sport=sport, dport=VXLAN_PORT, chksum=l4_csum)
    return bytes(eth / IPv6(src=src_ip, dst=dst_ip, hlim=64, tc=0, fl=0) / udp / payload)


def encap(topo, peer, inner, vni=VNI):
    """What h1 sends to `peer` carrying `inner` (already TTL-decremented)."""
    l2 = bytes(Ether(dst=VTEP_MAC[peer], src=VTEP_MAC["h1"], type=ethertype_of(inner)))
    return outer(topo, peer, l2 + inner, vxlan=vxlan_hdr(vni=vni))


def from_peer(topo, peer, inner, inner_dst_mac=None, ethertype=None, vxlan=None, **kw):
    """A VXLAN frame from `peer` to h1 carrying `inner` (an IP packet)."""
    l2 = bytes(
        Ether(
            dst=inner_dst_mac or VTEP_MAC["h1"],
            src=VTEP_MAC[peer],
            type=ethertype if ethertype is not None else ethertype_of(inner),
        )
    )
    dst_host = kw.pop("dst_host", "h1")
    return outer(topo, peer, l2 + inner, sport=PEER_SPORT, src_host=peer, dst_host=dst_host, vxlan=vxlan, **kw)


def to_c2(ip):
    return bytes(Ether(dst=C2_MAC, src=R2_MAC, type=ethertype_of(ip))) + ip


def from_c2(ip, dst=R2_MAC):
    return bytes(Ether(dst=dst, src=C2_MAC, type=ethertype_of(ip))) + ip


def icmp4_error(orig, typ, code, mtu=None, gw=GW4):
    """ICMPv4 error from the gateway `gw` about `orig` (as received)."""
    src = IP(orig).src
    icmp = ICMP(type=typ, code=code, nexthopmtu=mtu) if mtu is not None else ICMP(type=typ, code=code)
    return bytes(IP(src=gw, dst=src, ttl=64, id=0, flags=0, tos=0) / icmp / Raw(orig[:ICMP4_QUOTE]))


def icmp6_error(orig, layer, gw=GW6):
    src = IPv6(orig).src
    return bytes(IPv6(src=gw, dst=src, hlim=64, tc=0, fl=0) / layer / Raw(orig[:ICMP6_QUOTE]))


# ----------------------------------------------------------------- output


def pcap_bytes(linktype, frames):
    """Classic pcap, microsecond timestamps, fixed times."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for i, f in enumerate(frames):
        out.append(struct.pack("<IIII", TS_BASE, i * 10, len(f), len(f)) + f)
    return b"".join(out)


LINKTYPE = {"eth0": 1, "c2": 1, "c1": 101, "d1": 101, "d2": 1, "d3": 101, "b1": 101, "b2": 1, "b3": 101}


class Gen:
    def __init__(self, out):
        self.out = out
        self.files = {}
        self.cases = []

    def write(self, name, data):
        assert name not in self.files, name
        self.files[name] = data

    def case(self, name, in_port, frames, expect, topo="topo-v4.toml"):
        assert all(c["name"] != name for c in self.cases), name
        if isinstance(frames, bytes):
            frames = [frames]
        inp = "%s.in.pcap" % name
        self.write(inp, pcap_bytes(LINKTYPE[in_port], frames))
        if topo == NETS_TOPO:
            expect["network"] = counted_in(in_port, frames)
        c = {
            "name": name,
            "topo": topo,
            "host": "h1",
            "in_port": in_port,
            "input": inp,
            "frames": len(frames),
            "expect": expect,
        }
        self.cases.append(c)
        return c

    def forward(self, name, in_port, frames, port, outputs, topo="topo-v4.toml", verdict="forward", reason=None):
        if isinstance(outputs, bytes):
            outputs = [outputs]
        outp = "%s.out.pcap" % name
        self.write(outp, pcap_bytes(LINKTYPE[port], outputs))
        exp = {"verdict": verdict, "port": port, "output": outp, "mask": MASK[topo] if port == "eth0" else []}
        if reason:
            exp["reason"] = reason
        self.case(name, in_port, frames, exp, topo)

    def reply(self, name, in_port, frames, port, outputs, topo="topo-v4.toml"):
        self.forward(name, in_port, frames, port, outputs, topo, verdict="reply")

    def icmp(self, name, in_port, frames, reason, port, outputs, topo="topo-v4.toml"):
        self.forward(name, in_port, frames, port, outputs, topo, verdict="icmp", reason=reason)

    def drop(self, name, in_port, frames, reason, topo="topo-v4.toml"):
        self.case(name, in_port, frames, {"verdict": "drop", "reason": reason}, topo)

    def passes(self, name, frames, topo="topo-v4.toml"):
        self.case(name, "eth0", frames, {"verdict": "pass"}, topo)

    def ecmp(self, name, in_port, inners, peers, topo="topo-v4.toml", repeat=2):
        """Many flows (IP packets) to an ECMP destination, each sent `repeat`
        times: flow 0..n, then 0..n again."""
        packets = [p for _ in range(repeat) for p in inners]
        alts = {}
        for peer in peers:
            outp = "%s.out-%s.pcap" % (name, peer)
            self.write(outp, pcap_bytes(1, [encap(topo, peer, dec_ttl(p)) for p in packets]))
            alts[peer] = outp
        self.case(
            name,
            in_port,
            [from_c2(p) if in_port == "c2" else p for p in packets],
            {
                "verdict": "ecmp",
                "port": "eth0",
                "alternatives": alts,
                "mask": MASK[topo],
                "flows": len(inners),
                "repeat": repeat,
            },
            topo,
        )

    def flush(self):
        os.makedirs(self.out, exist_ok=True)
        self.write("topo-v4.toml", topology(UNDERLAY4).encode())
        self.write("topo-v6.toml", topology(UNDERLAY6).encode())
        self.write("topo-v4-big.toml", topology(UNDERLAY4, BIG_MTU).encode())
        self.write(NETS_TOPO, nets_topology().encode())
        doc = {"version": 1, "cases": self.cases}
        self.write("cases.json", (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
        for name in sorted(self.files):
            with open(os.path.join(self.out, name), "wb") as f:
                f.write(self.files[name])


# ----------------------------------------------------------------- cases


def container_to_remote(g):
    # c1 (TUN, raw IP) and c2 (veth) toward h2 and h3, IPv4 and IPv6 inner.
    p = udp4(C1_V4, H2_V4)
    g.forward("c1_to_h2_v4", "c1", p, "eth0", encap("topo-v4.toml", "h2", dec_ttl(p)))
    p = udp6(C1_V6, H2_V6)
    g.forward("c1_to_h2_v6", "c1", p, "eth0", encap("topo-v4.toml", "h2", dec_ttl(p)))
    p = bytes(IP(src=C2_V4, dst=H2_V4, ttl=64, flags="DF", id=7) / TCP(sport=33000, dport=80, flags="S", seq=1))
    g.forward("c2_to_h2_v4_tcp", "c2", from_c2(p), "eth0", encap("topo-v4.toml", "h2", dec_ttl(p)))
    p = udp6(C2_V6, H2_V6, hlim=2)
    g.forward("c2_to_h2_v6", "c2", from_c2(p), "eth0", encap("topo-v4.toml", "h2", dec_ttl(p)))
    p = udp4(C2_V4, H3_V4, ttl=2)
    g.forward("c2_to_h3_v4_ttl2", "c2", from_c2(p), "eth0", encap("topo-v4.toml", "h3", dec_ttl(p)))
    # Ethernet padding (a 28-byte datagram in a 60-byte frame) is not part
    # of the datagram and is not carried.
    p = udp4(C2_V4, H2_V4, payload=b"")
    frame = from_c2(p) + b"\0" * (60 - 14 - len(p))
    g.forward("c2_padding_trimmed", "c2", frame, "eth0", encap("topo-v4.toml", "h2", dec_ttl(p)))
    # Exactly the overlay MTU fits.
    p = sized4(C1_V4, H2_V4, OVERLAY_MTU)
    g.forward("c1_to_h2_v4_exact_mtu", "c1", p, "eth0", encap("topo-v4.toml", "h2", dec_ttl(p)))
    p = sized6(C1_V6, H2_V6, OVERLAY_MTU)
    g.forward("c1_to_h2_v6_exact_mtu", "c1", p, "eth0", encap("topo-v4.toml", "h2", dec_ttl(p)))
    # IPv4 options are carried untouched.
    p = bytes(IP(src=C1_V4, dst=H2_V4, ttl=64, flags="DF", id=9, options=[b"\x01\x01\x01\x00"]) / UDP(sport=1, dport=2))
    g.forward("c1_to_h2_v4_options", "c1", p, "eth0", encap("topo-v4.toml", "h2", dec_ttl(p)))


def remote_to_container(g):
    t = "topo-v4.toml"
    p = udp4(H2_V4, C1_V4)
    g.forward("h2_to_c1_v4", "eth0", from_peer(t, "h2", p), "c1", dec_ttl(p))
    p = udp6(H2_V6, C1_V6)
    g.forward("h2_to_c1_v6", "eth0", from_peer(t, "h2", p), "c1", dec_ttl(p))
    p = udp4(H2_V4, C2_V4)
    g.forward("h2_to_c2_v4", "eth0", from_peer(t, "h2", p), "c2", to_c2(dec_ttl(p)))
    p = udp6(H2_V6, C2_V6)
    g.forward("h2_to_c2_v6", "eth0", from_peer(t, "h2", p), "c2", to_c2(dec_ttl(p)))
    # Reserved VXLAN bits are ignored on receipt (RFC 7348 section 5).
    p = udp4(H2_V4, C1_V4, payload=b"reserved bits")
    g.forward(
        "vxlan_reserved_bits_ignored",
        "eth0",
        from_peer(t, "h2", p, vxlan=vxlan_hdr(flags=0x88, r1=0x123456, r2=0x77)),
        "c1",
        dec_ttl(p),
    )
    # Bytes after the outer datagram (Ethernet trailer) are ignored.
    p = udp4(H3_V4, C1_V4, payload=b"")
    g.forward("h3_to_c1_v4_trailer", "eth0", from_peer(t, "h3", p) + bytes(6), "c1", dec_ttl(p))


def udp_checksum_cases(g):
    """Outer UDP checksum over IPv4: zero accepted, right accepted, wrong dropped."""
    t = "topo-v4.toml"
    p = udp4(H2_V4, C1_V4, payload=b"with checksum")
    l2 = bytes(Ether(dst=VTEP_MAC["h1"], src=VTEP_MAC["h2"], type=0x0800)) + p
    pkt = (
        Ether(dst=UNDERLAY_MAC["h1"], src=UNDERLAY_MAC["h2"])
        / IP(src=UNDERLAY4["h2"], dst=UNDERLAY4["h1"], ttl=64, flags="DF", id=0)
        / UDP(sport=PEER_SPORT, dport=VXLAN_PORT)
        / Raw(vxlan_hdr() + l2)
    )
    good = bytes(pkt)
    assert good[40:42] != b"\0\0"
    g.forward("eth0_udp_checksum_valid", "eth0", good, "c1", dec_ttl(p))
    bad = bytearray(good)
    bad[40] ^= 0x55
    g.drop("eth0_udp_bad_checksum", "eth0", bytes(bad), "udp_bad_checksum")


def transit(g):
    t = "topo-v4.toml"
    p = udp4(H2_V4, H3_V4)
    g.forward("transit_h2_to_h3_v4", "eth0", from_peer(t, "h2", p), "eth0", encap(t, "h3", dec_ttl(p)))
    p = udp6("2001:2:0:3::5", H2_V6)
    g.forward("transit_h3_to_h2_v6", "eth0", from_peer(t, "h3", p), "eth0", encap(t, "h2", dec_ttl(p)))
    t6 = "topo-v6.toml"
    p = udp4(H2_V4, H3_V4)
    g.forward("v6u_transit_h2_to_h3_v4", "eth0", from_peer(t6, "h2", p), "eth0", encap(t6, "h3", dec_ttl(p)), topo=t6)


def ecmp(g):
    flows = [udp4(C1_V4, H4_V4, sport=20000 + i, dport=9000, payload=b"flow %d" % i) for i in range(64)]
    g.ecmp("ecmp_c1_to_h4_v4", "c1", flows, ["h2", "h3"])
    flows = [udp4(C1_V4, "198.19.4.%d" % (i + 1), sport=30000, dport=53, payload=b"dst %d" % i) for i in range(64)]
    g.ecmp("ecmp_c1_to_h4_v4_by_address", "c1", flows, ["h2", "h3"])
    flows = [udp4(C2_V4, H4_V4, sport=20000 + i, dport=9000, payload=b"flow %d" % i) for i in range(64)]
    g.ecmp("v6u_ecmp_c2_to_h4_v4", "c2", flows, ["h2", "h3"], topo="topo-v6.toml")


def local(g):
    p = udp4(C1_V4, C2_V4)
    g.forward("local_c1_to_c2_v4", "c1", p, "c2", to_c2(dec_ttl(p)))
    p = udp6(C2_V6, C1_V6)
    g.forward("local_c2_to_c1_v6", "c2", from_c2(p), "c1", dec_ttl(p))
    p = udp4(C2_V4, C1_V4)
    g.forward("local_c2_to_c1_v4", "c2", from_c2(p), "c1", dec_ttl(p))


def router_replies(g):
    t = "topo-v4.toml"
    # Echo to the gateway. The request uses IPv4 id 0 without DF, so the reply
    # is the same whether the router keeps or clears those fields.
    req = bytes(IP(src=C1_V4, dst=GW4, ttl=64, id=0, flags=0) / ICMP(type=8, id=0x77, seq=1) / Raw(b"ping gw"))
    rep = bytes(IP(src=GW4, dst=C1_V4, ttl=64, id=0, flags=0) / ICMP(type=0, id=0x77, seq=1) / Raw(b"ping gw"))
    g.reply("ping_gw_v4_c1", "c1", req, "c1", rep)
    req = bytes(IPv6(src=C2_V6, dst=GW6, hlim=64) / ICMPv6EchoRequest(id=0x78, seq=2, data=b"ping6 gw"))
    rep = bytes(IPv6(src=GW6, dst=C2_V6, hlim=64) / ICMPv6EchoReply(id=0x78, seq=2, data=b"ping6 gw"))
    g.reply("ping_gw_v6_c2", "c2", from_c2(req), "c2", to_c2(rep))
    req = bytes(IPv6(src=C1_V6, dst=GW6, hlim=64) / ICMPv6EchoRequest(id=0x79, seq=3, data=b"ping6 gw c1"))
    rep = bytes(IPv6(src=GW6, dst=C1_V6, hlim=64) / ICMPv6EchoReply(id=0x79, seq=3, data=b"ping6 gw c1"))
    g.reply("ping_gw_v6_c1", "c1", req, "c1", rep)
    # The first fragment of an echo request: the router does not reassemble,
    # so it must not answer a part of a datagram (the reply would be a
    # fragment of nothing, MF set).
    frag = bytes(IP(src=C1_V4, dst=GW4, ttl=64, id=0x99, flags="MF") / ICMP(type=8, id=0x7B, seq=5) / Raw(b"first fragment"))
    g.drop("ping_gw_v4_first_fragment_c1", "c1", frag, "control_plane")
    # An echo request with a wrong ICMP checksum is not answered (RFC 1122
    # section 3.2.2: a corrupt message is discarded; answering with a fresh
    # checksum would hide the corruption from the sender).
    bad = bytearray(bytes(IP(src=C1_V4, dst=GW4, ttl=64, id=0, flags=0) / ICMP(type=8, id=0x7C, seq=6) / Raw(b"corrupt")))
    bad[20 + 2] ^= 0x01
    g.drop("ping_gw_v4_bad_icmp_checksum_c1", "c1", bytes(bad), "icmp_bad_checksum")
    bad = bytearray(bytes(IPv6(src=C2_V6, dst=GW6, hlim=64) / ICMPv6EchoRequest(id=0x7D, seq=7, data=b"corrupt")))
    bad[40 + 2] ^= 0x01
    g.drop("ping_gw_v6_bad_icmp_checksum_c2", "c2", from_c2(bytes(bad)), "icmp_bad_checksum")
    # A remote container pings h1's gateway: the reply goes back through h2.
    req = bytes(IP(src=H2_V4, dst=GW4, ttl=63, id=0, flags=0) / ICMP(type=8, id=0x7A, seq=4) / Raw(b"remote ping"))
    rep = bytes(IP(src=GW4, dst=H2_V4, ttl=64, id=0, flags=0) / ICMP(type=0, id=0x7A, seq=4) / Raw(b"remote ping"))
    g.reply("ping_gw_v4_from_h2", "eth0", from_peer(t, "h2", req), "eth0", encap(t, "h2", rep))

    # ARP for the gateway from c2 (veth): the router answers with its MAC.
    def arp_req(pdst, psrc=C2_V4, op=1):
        return bytes(
            Ether(dst="ff:ff:ff:ff:ff:ff", src=C2_MAC)
            / ARP(op=op, hwsrc=C2_MAC, psrc=psrc, hwdst="00:00:00:00:00:00", pdst=pdst)
        )

    def arp_rep(psrc):
        return bytes(Ether(dst=C2_MAC, src=R2_MAC) / ARP(op=2, hwsrc=R2_MAC, psrc=psrc, hwdst=C2_MAC, pdst=C2_V4))

    g.reply("arp_gw_c2", "c2", arp_req(GW4), "c2", arp_rep(GW4))
    # Proxy ARP: any address but the container's own.
    g.reply("arp_proxy_remote_c2", "c2", arp_req(H2_V4), "c2", arp_rep(H2_V4))
    g.drop("arp_own_address_c2", "c2", arp_req(C2_V4), "arp_not_for_us")
    g.drop("arp_spoofed_sender_c2", "c2", arp_req(GW4, psrc="198.19.1.50"), "spoofed_source")
    g.drop("arp_reply_from_c2", "c2", arp_req(GW4, op=2), "arp_not_for_us")
    g.drop("arp_truncated_c2", "c2", arp_req(GW4)[: 14 + 20], "arp_malformed")
    # The answer goes to the requester's MAC: a group or zero MAC in the
    # frame or in the ARP sender field is never answered (it would flood).
    for name, mac in [("broadcast", "ff:ff:ff:ff:ff:ff"), ("multicast", "01:00:5e:00:00:01"), ("zero", "00:00:00:00:00:00")]:
        req = Ether(dst="ff:ff:ff:ff:ff:ff", src=C2_MAC) / ARP(op=1, hwsrc=mac, psrc=C2_V4, hwdst="00:00:00:00:00:00", pdst=GW4)
        g.drop(f"arp_sender_{name}_mac_c2", "c2", bytes(req), "neigh_bad_mac")
        req = Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / ARP(op=1, hwsrc=C2_MAC, psrc=C2_V4, hwdst="00:00:00:00:00:00", pdst=GW4)
        g.drop(f"arp_frame_{name}_mac_c2", "c2", bytes(req), "neigh_bad_mac")

    # Neighbour solicitation for the gateway: NA (router, solicited,
    # override) with the target link-layer address option.
    def ns(src, dst, eth_dst, hlim=255, target=GW6):
        msg = ICMPv6ND_NS(tgt=target)
        # RFC 4861 section 4.3: no source link-layer option from "::".
        if src != "::":
            msg = msg / ICMPv6NDOptSrcLLAddr(lladdr=C2_MAC)
        return bytes(Ether(dst=eth_dst, src=C2_MAC) / IPv6(src=src, dst=dst, hlim=hlim) / msg)

    def na(dst, target=GW6):
        return bytes(
            Ether(dst=C2_MAC, src=R2_MAC)
            / IPv6(src=target, dst=dst, hlim=255)
            / ICMPv6ND_NA(R=1, S=1, O=1, tgt=target)
            / ICMPv6NDOptDstLLAddr(lladdr=R2_MAC)
        )

    g.reply("ns_gw_c2_link_local", "c2", ns(C2_LL, "ff02::1:ff00:1", "33:33:ff:00:00:01"), "c2", na(C2_LL))
    g.reply("ns_gw_c2_global_unicast", "c2", ns(C2_V6, GW6, R2_MAC), "c2", na(C2_V6))
    g.drop("ns_dad_c2", "c2", ns("::", "ff02::1:ff00:1", "33:33:ff:00:00:01"), "arp_not_for_us")
    g.drop("ns_own_address_c2", "c2", ns(C2_LL, "ff02::1:ff00:3", "33:33:ff:00:00:03", target=C2_V6), "arp_not_for_us")
    g.drop("ns_hop_limit_64_c2", "c2", ns(C2_LL, "ff02::1:ff00:1", "33:33:ff:00:00:01", hlim=64), "nd_malformed")
    bad = bytearray(ns(C2_LL, "ff02::1:ff00:1", "33:33:ff:00:00:01"))
    bad[14 + 40 + 2] ^= 0xFF  # ICMPv6 checksum
    g.drop("ns_bad_checksum_c2", "c2", bytes(bad), "nd_malformed")
    # RFC 4861 section 7.1.1: a multicast target is discarded (the advert
    # would come from a multicast address); so are :: and ::1.
    for name, tgt in [("multicast", "ff02::1"), ("unspecified", "::"), ("loopback", "::1")]:
        g.drop(f"ns_{name}_target_c2", "c2", ns(C2_LL, GW6, R2_MAC, target=tgt), "nd_malformed")
    for name, mac in [("multicast", "33:33:00:00:00:01"), ("zero", "00:00:00:00:00:00")]:
        frame = bytearray(ns(C2_LL, "ff02::1:ff00:1", "33:33:ff:00:00:01"))
        frame[6:12] = bytes.fromhex(mac.replace(":", ""))
        g.drop(f"ns_frame_{name}_mac_c2", "c2", bytes(frame), "neigh_bad_mac")
    ns_c1 = bytes(IPv6(src=C1_V6, dst=GW6, hlim=255) / ICMPv6ND_NS(tgt=GW6))
    g.drop("ns_on_tun_c1", "c1", ns_c1, "control_plane")


def icmp_errors(g):
    t = "topo-v4.toml"
    # Time exceeded: TTL 1 and 0, both families, both directions.
    p = udp4(C1_V4, H2_V4, ttl=1)
    g.icmp("ttl1_c1_to_h2_v4", "c1", p, "ttl_expired", "c1", icmp4_error(p, 11, 0))
    p = udp4(C1_V4, H2_V4, ttl=0)
    g.icmp("ttl0_c1_to_h2_v4", "c1", p, "ttl_expired", "c1", icmp4_error(p, 11, 0))
    p = udp4(C1_V4, C2_V4, ttl=1)
    g.icmp("ttl1_c1_to_c2_v4", "c1", p, "ttl_expired", "c1", icmp4_error(p, 11, 0))
    p = udp6(C2_V6, H2_V6, hlim=1)
    g.icmp("hlim1_c2_to_h2_v6", "c2", from_c2(p), "ttl_expired", "c2", to_c2(icmp6_error(p, ICMPv6TimeExceeded(code=0))))
    p = udp6(C2_V6, H2_V6, hlim=0)
    g.icmp("hlim0_c2_to_h2_v6", "c2", from_c2(p), "ttl_expired", "c2", to_c2(icmp6_error(p, ICMPv6TimeExceeded(code=0))))
    p = udp4(H2_V4, C1_V4, ttl=1)
    g.icmp("ttl1_h2_to_c1_v4", "eth0", from_peer(t, "h2", p), "ttl_expired", "eth0", encap(t, "h2", icmp4_error(p, 11, 0)))
    p = udp6(H2_V6, C2_V6, hlim=1)
    g.icmp(
        "hlim1_h2_to_c2_v6",
        "eth0",
        from_peer(t, "h2", p),
        "ttl_expired",
        "eth0",
        encap(t, "h2", icmp6_error(p, ICMPv6TimeExceeded(code=0))),
    )

    # Too big for the overlay MTU: never fragmented inside VXLAN.
    p = sized4(C1_V4, H2_V4, OVERLAY_MTU + 1)
    g.icmp("df_too_big_c1_v4", "c1", p, "too_big", "c1", icmp4_error(p, 3, 4, mtu=OVERLAY_MTU))
    p = sized4(C2_V4, H2_V4, 1500)
    g.icmp("df_too_big_c2_v4_1500", "c2", from_c2(p), "too_big", "c2", to_c2(icmp4_error(p, 3, 4, mtu=OVERLAY_MTU)))
    p = sized4(C1_V4, H2_V4, OVERLAY_MTU + 1, df=False)
    g.drop("nodf_too_big_c1_v4", "c1", p, "too_big_no_df")
    p = sized6(C2_V6, H2_V6, OVERLAY_MTU + 1)
    g.icmp("too_big_c2_v6", "c2", from_c2(p), "too_big", "c2", to_c2(icmp6_error(p, ICMPv6PacketTooBig(mtu=OVERLAY_MTU))))
    p = sized6(C1_V6, H2_V6, 1500)
    g.icmp("too_big_c1_v6_1500", "c1", p, "too_big", "c1", icmp6_error(p, ICMPv6PacketTooBig(mtu=OVERLAY_MTU)))
    # From the tunnel to a local port whose MTU is the overlay MTU.
    p = sized4(H2_V4, C2_V4, OVERLAY_MTU + 10)
    g.icmp(
        "df_too_big_h2_to_c2_v4",
        "eth0",
        from_peer(t, "h2", p),
        "too_big",
        "eth0",
        encap(t, "h2", icmp4_error(p, 3, 4, mtu=OVERLAY_MTU)),
    )

    # No route: outside every subnet, and toward the unreachable h5.
    p = udp4(C1_V4, "198.18.200.1")
    g.icmp("no_route_c1_v4", "c1", p, "no_route", "c1", icmp4_error(p, 3, 0))
    p = udp4(C1_V4, "198.19.5.1")
    g.icmp("no_route_h5_c1_v4", "c1", p, "no_route", "c1", icmp4_error(p, 3, 0))
    p = udp6(C2_V6, "2001:2:0:5::1")
    g.icmp("no_route_c2_v6", "c2", from_c2(p), "no_route", "c2", to_c2(icmp6_error(p, ICMPv6DestUnreach(code=0))))
    # Unassigned address in h1's own subnet: host / address unreachable.
    p = udp4(C1_V4, "198.19.1.77")
    g.icmp("unassigned_c1_v4", "c1", p, "no_route", "c1", icmp4_error(p, 3, 1))
    p = udp6(C2_V6, "2001:2:0:1::77")
    g.icmp("unassigned_c2_v6", "c2", from_c2(p), "no_route", "c2", to_c2(icmp6_error(p, ICMPv6DestUnreach(code=3))))
    p = udp4(H2_V4, "198.19.1.77")
    g.icmp("unassigned_from_h2_v4", "eth0", from_peer(t, "h2", p), "no_route", "eth0", encap(t, "h2", icmp4_error(p, 3, 1)))
    # Nor about a later fragment, whatever its first payload byte: here
    # 0x80, which an ICMPv6 header would read as an echo request.
    later = bytes(
        IPv6(src=C2_V6, dst="2001:2:0:5::1", hlim=64, tc=0, fl=0)
        / IPv6ExtHdrFragment(nh=58, offset=1, m=0, id=0x77)
        / Raw(b"\x80" + b"\0" * 15)
    )
    g.drop("no_route_later_fragment_c2_v6", "c2", from_c2(later), "no_route")
    # Directed broadcasts (network or broadcast address of any host's IPv4
    # subnet, reachable or not) are never forwarded and get no ICMP error
    # (RFC 2644, RFC 1812 section 4.3.2.7), not even time exceeded.
    for name, dst in [
        ("local_broadcast", "198.19.1.255"),
        ("local_network", "198.19.1.0"),
        ("h2_broadcast", "198.19.2.255"),
        ("h5_broadcast", "198.19.5.255"),
    ]:
        g.drop(f"directed_{name}_c1", "c1", udp4(C1_V4, dst), "directed_broadcast")
    p = udp4(H2_V4, "198.19.1.255", ttl=1)
    g.drop("directed_broadcast_from_h2_ttl1", "eth0", from_peer(t, "h2", p), "directed_broadcast")
    # No ICMP error about an ICMP error (RFC 1122 section 3.2.2).
    err = bytes(IP(src=C1_V4, dst="198.18.200.1", ttl=64, id=0) / ICMP(type=3, code=3) / Raw(udp4("198.18.200.1", C1_V4)))
    g.drop("no_route_icmp_error_c1", "c1", err, "no_route")


def drops_container(g):
    g.drop("spoofed_c1_v4", "c1", udp4("198.19.1.50", H2_V4), "spoofed_source")
    g.drop("spoofed_c1_v4_other_port_addr", "c1", udp4(C2_V4, H2_V4), "spoofed_source")
    g.drop("spoofed_c2_v6", "c2", from_c2(udp6("2001:2:0:1::99", H2_V6)), "spoofed_source")
    g.drop("spoofed_c2_v4_loopback", "c2", from_c2(udp4("127.0.0.1", H2_V4)), "spoofed_source")
    # Link-scoped destinations and the router's own address (not echo).
    igmp = bytes(IP(src=C1_V4, dst="224.0.0.22", ttl=1, id=0, proto=2) / Raw(b"\x22\x00\xfa\x01\x00\x00\x00\x00"))
    g.drop("multicast_c1_v4", "c1", igmp, "control_plane")
    g.drop("udp_to_gw_c1_v4", "c1", udp4(C1_V4, GW4, dport=53), "control_plane")
    g.drop("udp_to_gw_c2_v6", "c2", from_c2(udp6(C2_V6, GW6, dport=53)), "control_plane")

    # Malformed from c1 (raw IP).
    p = udp4(C1_V4, H2_V4)
    g.drop("c1_ip_truncated", "c1", p[:12], "ip_malformed")
    b = bytearray(p)
    b[2:4] = struct.pack("!H", len(p) + 20)
    b[10:12] = b"\0\0"
    b[10:12] = struct.pack("!H", csum(bytes(b[:20])))
    g.drop("c1_ip_total_length_lying", "c1", bytes(b), "ip_malformed")
    b = bytearray(p)
    b[2:4] = struct.pack("!H", 16)
    b[10:12] = b"\0\0"
    b[10:12] = struct.pack("!H", csum(bytes(b[:20])))
    g.drop("c1_ip_total_length_below_header", "c1", bytes(b), "ip_malformed")
    b = bytearray(p)
    b[0] = 0x44
    g.drop("c1_ip_bad_ihl", "c1", bytes(b), "ip_malformed")
    b = bytearray(p)
    b[10] ^= 0xFF
    g.drop("c1_ip_bad_checksum", "c1", bytes(b), "ip_bad_checksum")
    b = bytearray(p)
    b[0] = 0x55
    g.drop("c1_ip_bad_version", "c1", bytes(b), "ip_malformed")
    p6 = udp6(C1_V6, H2_V6)
    g.drop("c1_ipv6_truncated", "c1", p6[:30], "ip_malformed")
    b = bytearray(p6)
    b[4:6] = struct.pack("!H", len(p6) - 40 + 8)
    g.drop("c1_ipv6_payload_length_lying", "c1", bytes(b), "ip_malformed")

    # Malformed from c2 (Ethernet).
    g.drop("c2_eth_truncated", "c2", from_c2(udp4(C2_V4, H2_V4))[:10], "eth_truncated")
    g.drop("c2_eth_not_for_us", "c2", from_c2(udp4(C2_V4, H2_V4), dst="02:00:00:00:99:99"), "eth_not_for_us")
    lldp = bytes(Ether(dst="01:80:c2:00:00:0e", src=C2_MAC, type=0x88CC)) + b"\x02\x07\x04" + bytes(6) + b"\0" * 37
    g.drop("c2_lldp_not_for_us", "c2", lldp, "eth_not_for_us")
    other = bytes(Ether(dst=R2_MAC, src=C2_MAC, type=0x88B5)) + b"\0" * 46
    g.drop("c2_ethertype_unsupported", "c2", other, "eth_unsupported")
    tagged = bytes(Ether(dst=R2_MAC, src=C2_MAC) / Dot1Q(vlan=5) / Raw(udp4(C2_V4, H2_V4)))
    g.drop("c2_vlan_tagged", "c2", tagged, "eth_unsupported")
    triple = bytes(Ether(dst=R2_MAC, src=C2_MAC) / Dot1Q(vlan=5) / Dot1Q(vlan=6) / Dot1Q(vlan=7) / Raw(udp4(C2_V4, H2_V4)))
    g.drop("c2_three_vlan_tags", "c2", triple, "eth_unsupported")
    g.drop("c2_ip_truncated", "c2", from_c2(udp4(C2_V4, H2_V4)[:16]), "ip_malformed")
    # The ethertype and the IP version disagree: IPv4 behind 0x86dd, sent
    # to the broadcast MAC (TTL 1: it must not come back as an ICMP error).
    v4_as_v6 = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=C2_MAC, type=0x86DD)) + udp4(C2_V4, H2_V4, ttl=1)
    g.drop("c2_v4_behind_v6_ethertype", "c2", v4_as_v6, "ip_malformed")
    # Unicast IP in a link-layer broadcast or multicast is never routed
    # (RFC 1812 section 5.3.4; no ICMPv6 error either, RFC 4443 2.4 e.3).
    unroutable = udp6(C2_V6, "2001:2:0:5::1")
    g.drop("c2_v6_unicast_to_broadcast_mac", "c2", from_c2(unroutable, dst="ff:ff:ff:ff:ff:ff"), "eth_not_for_us")
    g.drop("c2_v6_unicast_to_multicast_mac", "c2", from_c2(unroutable, dst="33:33:00:00:00:01"), "eth_not_for_us")
    g.drop("c2_v4_to_broadcast_mac", "c2", from_c2(udp4(C2_V4, H2_V4), dst="ff:ff:ff:ff:ff:ff"), "eth_not_for_us")


def drops_uplink(g):
    t = "topo-v4.toml"
    p = udp4(H2_V4, C1_V4)
    good = from_peer(t, "h2", p)
    o = 14  # outer IPv4 header
    g.drop("eth0_eth_truncated", "eth0", good[:13], "eth_truncated")
    g.drop("eth0_outer_ip_truncated", "eth0", good[: o + 12], "ip_malformed")

    def fix_outer(b):
        b[o + 10 : o + 12] = b"\0\0"
        b[o + 10 : o + 12] = struct.pack("!H", csum(bytes(b[o : o + 20])))
        return bytes(b)

    b = bytearray(good)
    b[o + 2 : o + 4] = struct.pack("!H", len(good) - o + 20)
    g.drop("eth0_outer_ip_total_length_lying", "eth0", fix_outer(b), "ip_malformed")
    b = bytearray(good)
    b[o + 2 : o + 4] = struct.pack("!H", 16)
    g.drop("eth0_outer_ip_total_length_below_header", "eth0", fix_outer(b), "ip_malformed")
    b = bytearray(good)
    b[o] = 0x44
    g.drop("eth0_outer_ip_bad_ihl", "eth0", bytes(b), "ip_malformed")
    b = bytearray(good)
    b[o + 10] ^= 0xFF
    g.drop("eth0_outer_ip_bad_checksum", "eth0", bytes(b), "ip_bad_checksum")
    b = bytearray(good)
    b[o + 6] |= 0x20  # MF
    g.drop("eth0_outer_fragment", "eth0", fix_outer(b), "outer_fragment")
    # Truncated UDP: the IP datagram ends 4 bytes into the UDP header.
    b = bytearray(good[: o + 24])
    b[o + 2 : o + 4] = struct.pack("!H", 24)
    g.drop("eth0_udp_truncated", "eth0", fix_outer(b), "udp_malformed")
    b = bytearray(good)
    b[o + 24 : o + 26] = struct.pack("!H", len(good) - o - 20 + 8)
    g.drop("eth0_udp_length_lying", "eth0", bytes(b), "udp_malformed")
    b = bytearray(good)
    b[o + 24 : o + 26] = struct.pack("!H", 12)
    g.drop("eth0_udp_length_short", "eth0", bytes(b), "udp_malformed")

    def cut(n):
        """`good` with its outer datagram cut `n` bytes after the UDP header."""
        b = bytearray(good[: o + 28 + n])
        b[o + 2 : o + 4] = struct.pack("!H", 28 + n)
        b[o + 24 : o + 26] = struct.pack("!H", 8 + n)
        return fix_outer(b)

    g.drop("eth0_vxlan_truncated", "eth0", cut(4), "vxlan_truncated")
    g.drop("eth0_inner_eth_truncated", "eth0", cut(8 + 10), "vxlan_truncated")
    g.drop("eth0_inner_ip_truncated", "eth0", cut(8 + 14 + 12), "ip_malformed")
    g.drop("eth0_inner_ipv6_truncated", "eth0", from_peer(t, "h2", udp6(H2_V6, C1_V6)[:30]), "ip_malformed")
    b = bytearray(p)
    b[2:4] = struct.pack("!H", len(p) + 8)
    b[10:12] = b"\0\0"
    b[10:12] = struct.pack("!H", csum(bytes(b[:20])))
    g.drop("eth0_inner_ip_total_length_lying", "eth0", from_peer(t, "h2", bytes(b)), "ip_malformed")
    b = bytearray(p)
    b[0] = 0x43
    g.drop("eth0_inner_ip_bad_ihl", "eth0", from_peer(t, "h2", bytes(b)), "ip_malformed")
    b = bytearray(p)
    b[11] ^= 0x0F
    g.drop("eth0_inner_ip_bad_checksum", "eth0", from_peer(t, "h2", bytes(b)), "ip_bad_checksum")
    p6 = udp6(H2_V6, C1_V6)
    b = bytearray(p6)
    b[4:6] = struct.pack("!H", len(p6) - 40 + 1)
    g.drop("eth0_inner_ipv6_payload_length_lying", "eth0", from_peer(t, "h2", bytes(b)), "ip_malformed")
    g.drop("eth0_inner_version_mismatch", "eth0", from_peer(t, "h2", p6, ethertype=0x0800), "ip_malformed")
    arp = bytes(ARP(op=1, hwsrc=VTEP_MAC["h2"], psrc=H2_V4, pdst=C1_V4))
    g.drop("eth0_inner_arp", "eth0", from_peer(t, "h2", arp, ethertype=0x0806), "inner_not_ip")
    g.drop("eth0_inner_wrong_mac", "eth0", from_peer(t, "h2", p, inner_dst_mac="02:42:c6:12:00:09"), "inner_not_for_us")
    g.drop(
        "eth0_inner_vlan",
        "eth0",
        from_peer(t, "h2", bytes(Dot1Q(vlan=3, type=0x0800)) + p, ethertype=0x8100),
        "inner_not_ip",
    )
    g.drop("eth0_vxlan_bad_flags", "eth0", from_peer(t, "h2", p, vxlan=vxlan_hdr(flags=0x00)), "vxlan_bad_flags")
    g.drop("eth0_vxlan_unknown_vni", "eth0", from_peer(t, "h2", p, vxlan=vxlan_hdr(vni=43)), "vxlan_unknown_vni")
    b = bytearray(good)
    b[o + 12 : o + 16] = bytes([198, 18, 0, 99])
    g.drop("eth0_unknown_peer", "eth0", fix_outer(b), "unknown_peer")
    # The inner packet claims 12 more bytes than the outer datagram carries,
    # and the frame has 12 bytes of Ethernet trailer after the datagram: the
    # trailer is not part of the tunnel payload.
    q = udp4(H2_V4, C1_V4, payload=b"twelve bytes")
    short = bytearray(from_peer(t, "h2", q[:-12]))
    inner_ip = o + 20 + 8 + 8 + 14
    short[inner_ip : inner_ip + 20] = q[:20]
    g.drop("eth0_inner_ip_beyond_datagram", "eth0", bytes(short) + q[-12:], "ip_malformed")
    # Outer IPv4 options move the UDP header.
    l2 = bytes(Ether(dst=VTEP_MAC["h1"], src=VTEP_MAC["h2"], type=0x0800)) + p
    opts = bytes(
        Ether(dst=UNDERLAY_MAC["h1"], src=UNDERLAY_MAC["h2"])
        / IP(src=UNDERLAY4["h2"], dst=UNDERLAY4["h1"], ttl=64, flags="DF", id=0, options=[b"\x01\x01\x01\x00"])
        / UDP(sport=PEER_SPORT, dport=VXLAN_PORT, chksum=0)
        / Raw(vxlan_hdr() + l2)
    )
    g.forward("eth0_outer_ipv4_options", "eth0", opts, "c1", dec_ttl(p))
    g.drop("eth0_inner_bad_source", "eth0", from_peer(t, "h2", udp4("0.0.0.0", C1_V4)), "ip_bad_source")
    # From the tunnel, a source must lie in another host's subnets: not in
    # ours, not outside the topology (every container source was checked
    # where it entered the overlay).
    g.drop("eth0_inner_source_ours_v4", "eth0", from_peer(t, "h2", udp4("198.19.1.9", C1_V4)), "inner_spoofed_source")
    g.drop("eth0_inner_source_outside_v4", "eth0", from_peer(t, "h2", udp4("198.18.200.1", C1_V4)), "inner_spoofed_source")
    g.drop("eth0_inner_source_ours_v6", "eth0", from_peer(t, "h2", udp6("2001:2:0:1::9", C1_V6)), "inner_spoofed_source")
    g.drop("eth0_inner_source_outside_v6", "eth0", from_peer(t, "h2", udp6("2001:2:0:99::1", C1_V6)), "inner_spoofed_source")
    g.drop("eth0_inner_multicast", "eth0", from_peer(t, "h2", udp4(H2_V4, "224.0.0.5")), "control_plane")


def not_ours(g):
    t = "topo-v4.toml"
    arp = bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=UNDERLAY_MAC["h2"])
        / ARP(op=1, hwsrc=UNDERLAY_MAC["h2"], psrc=UNDERLAY4["h2"], pdst=UNDERLAY4["h1"])
    )
    g.passes("eth0_arp_pass", arp)
    base = Ether(dst=UNDERLAY_MAC["h1"], src=UNDERLAY_MAC["h2"]) / IP(src=UNDERLAY4["h2"], dst=UNDERLAY4["h1"], ttl=64, id=5)
    g.passes("eth0_udp_other_port_pass", bytes(base / UDP(sport=5353, dport=53) / Raw(b"dns?")))
    g.passes("eth0_tcp_pass", bytes(base / TCP(sport=40000, dport=22, flags="S", seq=1)))
    g.passes("eth0_icmp_pass", bytes(base / ICMP(type=8, id=1, seq=1)))
    # VXLAN to another underlay address is not ours either.
    g.passes("eth0_vxlan_other_dst_pass", from_peer(t, "h2", udp4(H2_V4, C1_V4), dst_host="h3"))
    # A later fragment has no UDP header: the kernel's.
    b = bytearray(from_peer(t, "h2", udp4(H2_V4, C1_V4)))
    b[14 + 6 : 14 + 8] = struct.pack("!H", 0x4000 | 100)
    b[14 + 10 : 14 + 12] = b"\0\0"
    b[14 + 10 : 14 + 12] = struct.pack("!H", csum(bytes(b[14:34])))
    g.passes("eth0_outer_later_fragment_pass", bytes(b))
    g.passes("eth0_vlan_tagged_pass", bytes(Ether(dst=UNDERLAY_MAC["h1"], src=UNDERLAY_MAC["h2"]) / Dot1Q(vlan=7) / IP(src=UNDERLAY4["h2"], dst=UNDERLAY4["h1"]) / UDP(sport=1, dport=4789)))
    g.passes("eth0_three_vlan_tags_pass", bytes(Ether(dst=UNDERLAY_MAC["h1"], src=UNDERLAY_MAC["h2"]) / Dot1Q(vlan=7) / Dot1Q(vlan=8) / Dot1Q(vlan=9) / IP(src=UNDERLAY4["h2"], dst=UNDERLAY4["h1"]) / UDP(sport=1, dport=4789)))
    g.passes(
        "eth0_ipv6_on_v4_underlay_pass",
        bytes(Ether(dst=UNDERLAY_MAC["h1"], src=UNDERLAY_MAC["h2"]) / IPv6(src="2001:2::2", dst="2001:2::1") / UDP(sport=1, dport=4789)),
    )


def ipv6_underlay(g):
    t6 = "topo-v6.toml"
    p = udp4(C1_V4, H2_V4)
    g.forward("v6u_c1_to_h2_v4", "c1", p, "eth0", encap(t6, "h2", dec_ttl(p)), topo=t6)
    p = udp6(C2_V6, H2_V6)
    g.forward("v6u_c2_to_h2_v6", "c2", from_c2(p), "eth0", encap(t6, "h2", dec_ttl(p)), topo=t6)
    p = udp4(C1_V4, H3_V4, payload=b"odd length payload")
    g.forward("v6u_c1_to_h3_v4_odd", "c1", p, "eth0", encap(t6, "h3", dec_ttl(p)), topo=t6)
    p = udp4(H2_V4, C1_V4)
    g.forward("v6u_h2_to_c1_v4", "eth0", from_peer(t6, "h2", p), "c1", dec_ttl(p), topo=t6)
    p = udp6(H2_V6, C2_V6)
    g.forward("v6u_h2_to_c2_v6", "eth0", from_peer(t6, "h2", p), "c2", to_c2(dec_ttl(p)), topo=t6)
    # Zero UDP checksum over IPv6 (RFC 6935/6936 tunnels): accepted.
    p = udp4(H2_V4, C1_V4, payload=b"zero csum")
    g.forward("v6u_zero_checksum_accepted", "eth0", from_peer(t6, "h2", p, l4_csum=0), "c1", dec_ttl(p), topo=t6)
    b = bytearray(from_peer(t6, "h2", p))
    b[14 + 40 + 6] ^= 0x5A
    g.drop("v6u_udp_bad_checksum", "eth0", bytes(b), "udp_bad_checksum", topo=t6)
    # Extension headers before UDP are skipped.
    l2 = bytes(Ether(dst=VTEP_MAC["h1"], src=VTEP_MAC["h2"], type=0x0800)) + p
    hbh = bytes(
        Ether(dst=UNDERLAY_MAC["h1"], src=UNDERLAY_MAC["h2"])
        / IPv6(src=UNDERLAY6["h2"], dst=UNDERLAY6["h1"], hlim=64)
        / IPv6ExtHdrHopByHop()
        / UDP(sport=PEER_SPORT, dport=VXLAN_PORT)
        / Raw(vxlan_hdr() + l2)
    )
    g.forward("v6u_hop_by_hop_skipped", "eth0", hbh, "c1", dec_ttl(p), topo=t6)
    frag = bytes(
        Ether(dst=UNDERLAY_MAC["h1"], src=UNDERLAY_MAC["h2"])
        / IPv6(src=UNDERLAY6["h2"], dst=UNDERLAY6["h1"], hlim=64)
        / IPv6ExtHdrFragment(m=1, offset=0, id=0x1234)
        / UDP(sport=PEER_SPORT, dport=VXLAN_PORT)
        / Raw(vxlan_hdr() + l2)
    )
    g.drop("v6u_outer_fragment", "eth0", frag, "outer_fragment", topo=t6)
    good = from_peer(t6, "h2", p)
    b = bytearray(good)
    b[14 + 8 : 14 + 24] = bytes.fromhex("20010002000000000000000000000099")
    # Keep the UDP checksum right for the new source, so the peer check is
    # what refuses it.
    b[14 + 46 : 14 + 48] = b"\0\0"
    pseudo = bytes(b[14 + 8 : 14 + 40]) + struct.pack("!IxxxB", len(b) - 54, 17)
    b[14 + 46 : 14 + 48] = struct.pack("!H", csum(pseudo + bytes(b[54:])) or 0xFFFF)
    g.drop("v6u_unknown_peer", "eth0", bytes(b), "unknown_peer", topo=t6)
    # Ethernet trailer bytes after the outer IPv6 datagram are not tunnel
    # payload (the inner packet claims them).
    q = udp4(H2_V4, C1_V4, payload=b"twelve bytes")
    short = bytearray(from_peer(t6, "h2", q[:-12]))
    inner_ip = 14 + 40 + 8 + 8 + 14
    short[inner_ip : inner_ip + 20] = q[:20]
    g.drop("v6u_inner_ip_beyond_datagram", "eth0", bytes(short) + q[-12:], "ip_malformed", topo=t6)
    g.drop("v6u_outer_truncated", "eth0", good[: 14 + 30], "ip_malformed", topo=t6)
    b = bytearray(good)
    b[14 + 4 : 14 + 6] = struct.pack("!H", len(good) - 54 + 4)
    g.drop("v6u_payload_length_lying", "eth0", bytes(b), "ip_malformed", topo=t6)
    g.drop("v6u_unknown_vni", "eth0", from_peer(t6, "h2", p, vxlan=vxlan_hdr(vni=4242)), "vxlan_unknown_vni", topo=t6)
    # Time exceeded back over the IPv6 underlay.
    p = udp6(H2_V6, C1_V6, hlim=1)
    g.icmp(
        "v6u_hlim1_h2_to_c1_v6",
        "eth0",
        from_peer(t6, "h2", p),
        "ttl_expired",
        "eth0",
        encap(t6, "h2", icmp6_error(p, ICMPv6TimeExceeded(code=0))),
        topo=t6,
    )
    # Not ours over an IPv6 underlay.
    ns = bytes(
        Ether(dst="33:33:ff:00:00:01", src=UNDERLAY_MAC["h2"])
        / IPv6(src="fe80::2", dst="ff02::1:ff00:1", hlim=255)
        / ICMPv6ND_NS(tgt=UNDERLAY6["h1"])
        / ICMPv6NDOptSrcLLAddr(lladdr=UNDERLAY_MAC["h2"])
    )
    g.passes("v6u_ns_pass", ns, topo=t6)
    base = Ether(dst=UNDERLAY_MAC["h1"], src=UNDERLAY_MAC["h2"]) / IPv6(src=UNDERLAY6["h2"], dst=UNDERLAY6["h1"], hlim=64)
    g.passes("v6u_udp_other_port_pass", bytes(base / UDP(sport=5353, dport=53) / Raw(b"dns?")), topo=t6)
    g.passes("v6u_tcp_pass", bytes(base / TCP(sport=40000, dport=22, flags="S", seq=1)), topo=t6)
    g.passes("v6u_ipv4_vxlan_pass", from_peer("topo-v4.toml", "h2", udp4(H2_V4, C1_V4)), topo=t6)


def peer_identity(g):
    """VXLAN is taken only from peers that begin one of h1's routes, and an
    inner source only through a peer h1's route toward it begins with
    (strict reverse-path check). h1's links: h2 and h3; h4 lies behind both
    (ECMP); h5 has no link."""
    for t, tag, v6 in [("topo-v4.toml", "", False), ("topo-v6.toml", "v6u_", True)]:

        def vx(src_host, inner):
            l2 = bytes(Ether(dst=VTEP_MAC["h1"], src=VTEP_MAC[src_host], type=ethertype_of(inner)))
            return outer(t, "h1", l2 + inner, sport=PEER_SPORT, src_host=src_host, dst_host="h1")

        # From h1's own underlay address: a local process, or a forgery.
        g.drop(tag + "vxlan_from_self", "eth0", vx("h1", udp4(H2_V4, C1_V4)), "vxlan_from_self", topo=t)
        # From hosts of the topology that begin no route of h1's.
        g.drop(tag + "peer_h4_not_neighbour", "eth0", vx("h4", udp4(H4_V4, C1_V4)), "peer_not_neighbour", topo=t)
        g.drop(tag + "peer_h5_not_neighbour", "eth0", vx("h5", udp4("198.19.5.9", C1_V4)), "peer_not_neighbour", topo=t)
        # h3 claims h2's containers: h1 reaches h2 directly, never through h3.
        g.drop(tag + "h3_claims_h2_source_v4", "eth0", vx("h3", udp4(H2_V4, C1_V4)), "inner_source_wrong_peer", topo=t)
        g.drop(tag + "h2_claims_h3_source_v4", "eth0", vx("h2", udp4(H3_V4, C1_V4)), "inner_source_wrong_peer", topo=t)
        g.drop(
            tag + "h3_claims_h2_source_v6", "eth0", vx("h3", udp6(H2_V6, C1_V6)), "inner_source_wrong_peer", topo=t
        )
        # Also when transiting h1.
        g.drop(tag + "h3_claims_h2_source_transit", "eth0", vx("h3", udp4(H2_V4, H3_V4)), "inner_source_wrong_peer", topo=t)
        # h4 lies behind both h2 and h3 (equal cost): either may carry it.
        p = udp4(H4_V4, C1_V4)
        g.forward(tag + "h4_source_via_h2", "eth0", vx("h2", p), "c1", dec_ttl(p), topo=t)
        g.forward(tag + "h4_source_via_h3", "eth0", vx("h3", p), "c1", dec_ttl(p), topo=t)
        # h5 is unreachable: its subnet is no source from the tunnel.
        g.drop(tag + "h5_source_via_h2", "eth0", vx("h2", udp4("198.19.5.9", C1_V4)), "inner_spoofed_source", topo=t)

def underlay_mtu(g):
    """Packets toward a peer must fit the underlay MTU once encapsulated.
    topo-v4-big.toml (overlay MTU 1600 over IPv4) and topo-v6.toml (1450 over
    IPv6) allow containers more than fits: what fits (1450, 1430) goes out;
    one byte more is dropped as underlay_too_big with an ICMP fragmentation
    needed / packet too big naming the size that fits, IPv4 without DF too,
    from a container or in transit."""
    for t, pre in [("topo-v4-big.toml", "big"), ("topo-v6.toml", "v6u")]:
        fit = FIT[t]
        # Exactly what fits goes out, from a container and in transit.
        p = sized4(C1_V4, H2_V4, fit)
        g.forward(pre + "_underlay_fit_c1_v4", "c1", p, "eth0", encap(t, "h2", dec_ttl(p)), topo=t)
        p = sized6(C2_V6, H2_V6, fit)
        g.forward(pre + "_underlay_fit_c2_v6", "c2", from_c2(p), "eth0", encap(t, "h2", dec_ttl(p)), topo=t)
        p = sized4(H2_V4, H3_V4, fit)
        g.forward(pre + "_underlay_fit_transit_v4", "eth0", from_peer(t, "h2", p), "eth0", encap(t, "h3", dec_ttl(p)), topo=t)
        # One byte more: IPv4 with DF, IPv4 without DF, IPv6.
        p = sized4(C1_V4, H2_V4, fit + 1)
        g.icmp(pre + "_underlay_too_big_c1_v4_df", "c1", p, "underlay_too_big", "c1", icmp4_error(p, 3, 4, mtu=fit), topo=t)
        p = sized4(C2_V4, H2_V4, fit + 1, df=False)
        g.icmp(
            pre + "_underlay_too_big_c2_v4_no_df",
            "c2",
            from_c2(p),
            "underlay_too_big",
            "c2",
            to_c2(icmp4_error(p, 3, 4, mtu=fit)),
            topo=t,
        )
        p = sized6(C1_V6, H2_V6, fit + 1)
        g.icmp(pre + "_underlay_too_big_c1_v6", "c1", p, "underlay_too_big", "c1", icmp6_error(p, ICMPv6PacketTooBig(mtu=fit)), topo=t)
        # Transit: the error goes back through the peer it came from.
        p = sized4(H2_V4, H3_V4, fit + 1)
        g.icmp(
            pre + "_underlay_too_big_transit_v4",
            "eth0",
            from_peer(t, "h2", p),
            "underlay_too_big",
            "eth0",
            encap(t, "h2", icmp4_error(p, 3, 4, mtu=fit)),
            topo=t,
        )
        p = sized6("2001:2:0:3::5", H2_V6, fit + 1)
        g.icmp(
            pre + "_underlay_too_big_transit_v6",
            "eth0",
            from_peer(t, "h3", p),
            "underlay_too_big",
            "eth0",
            encap(t, "h3", icmp6_error(p, ICMPv6PacketTooBig(mtu=fit))),
            topo=t,
        )
    # Over both the overlay MTU and what fits: the smaller limit is named.
    t = "topo-v4-big.toml"
    p = sized4(C1_V4, H2_V4, BIG_MTU + 1)
    g.icmp("big_over_both_limits_c1_v4", "c1", p, "underlay_too_big", "c1", icmp4_error(p, 3, 4, mtu=FIT[t]), topo=t)

# ----------------------------------------------------------------- networks

NETS_TOPO = "topo-nets.toml"
# The default network ([overlay], VNI 42) and "blue" (VNI 43, MTU 1400) hold
# the same prefixes on h1 and h2; h3 has 198.19.3.0/24 in the default
# network and 198.19.33.0/24 in blue. VNI 44 belongs to no network.
BLUE_VNI = 43
BLUE_MTU = 1400
UNKNOWN_VNIS = [44, 0, BLUE_VNI | 1 << 16]
# h1's ports: index 1.. in this order (router MACs follow the index).
# d* in the default network, b* in blue. d1/b1 and d2/b2 share their
# addresses; d3's address exists only in the default network, b3's only in
# blue.
NET_PORTS = ["d1", "d2", "d3", "b1", "b2", "b3"]
D2_MAC, B2_MAC = "02:00:00:00:01:03", "02:00:00:00:02:03"
BLUE_GW4, BLUE_GW6 = "198.19.1.254", "2001:2:0:1::fe"
D3_V4, B3_V4 = "198.19.1.5", "198.19.1.4"
H3_BLUE_V4 = "198.19.33.7"


NET_OF_PORT = {p: "blue" if p.startswith("b") else "default" for p in NET_PORTS}
NET_OF_VNI = {VNI: "default", BLUE_VNI: "blue"}


def counted_in(in_port, frames):
    """The network whose counters count the frames into h1's `in_port`
    (docs/operations.md, the stats file): a container port's own, or from
    the tunnel the network of the VNI (scapy decodes it); None for a VNI of
    no network (`no_network`)."""
    if in_port != "eth0":
        return NET_OF_PORT[in_port]
    nets = {NET_OF_VNI.get(Ether(f)[VXLAN].vni) for f in frames}
    assert len(nets) == 1, nets
    return nets.pop()


def router_mac(port):
    """The router's MAC on h1's container port `port` (see R2_MAC)."""
    return "02:52:12:00:01:%02x" % (NET_PORTS.index(port) + 1)


def nets_topology():
    def port(name, kind, addrs, network=None, mac=None, gateways=None):
        out = [
            "  [[hosts.ports]]",
            '  name = "%s"' % name,
            '  kind = "%s"' % kind,
        ]
        if network:
            out.append('  network = "%s"' % network)
        out.append("  addresses = [%s]" % ", ".join('"%s"' % a for a in addrs))
        if mac:
            out.append('  mac = "%s"' % mac)
        if gateways:
            out.append("  gateways = [%s]" % ", ".join('"%s"' % a for a in gateways))
        return out

    out = [
        "# Golden-test topology with two overlay networks (generated by",
        "# tools/golden/gen.py; do not edit). Host under test: h1. The default",
        "# network (VNI 42) and blue (VNI 43) hold the same prefixes on h1 and h2;",
        "# d1/b1 and d2/b2 have the same addresses in the two networks. Blue's",
        "# ports name their own gateways, so its ICMP comes from other addresses.",
        "[overlay]",
        "vni = %d" % VNI,
        "udp_port = %d" % VXLAN_PORT,
        "mtu = %d" % OVERLAY_MTU,
        "",
        "[[networks]]",
        'name = "blue"',
        "vni = %d" % BLUE_VNI,
        "mtu = %d" % BLUE_MTU,
        "[networks.subnets]",
        'h1 = ["198.19.1.0/24", "2001:2:0:1::/64"]',
        'h2 = ["198.19.2.0/24", "2001:2:0:2::/64"]',
        'h3 = ["198.19.33.0/24"]',
    ]
    default = {
        "h1": ["198.19.1.0/24", "2001:2:0:1::/64"],
        "h2": ["198.19.2.0/24", "2001:2:0:2::/64"],
        "h3": ["198.19.3.0/24"],
    }
    for h in ["h1", "h2", "h3"]:
        out += [
            "",
            "[[hosts]]",
            'name = "%s"' % h,
            'underlay = "%s"' % UNDERLAY4[h],
            'underlay_mac = "%s"' % UNDERLAY_MAC[h],
            'vtep_mac = "%s"' % VTEP_MAC[h],
            "subnets = [%s]" % ", ".join('"%s"' % s for s in default[h]),
            'nic = "eth0"',
            "workers = [0]",
        ]
        if h == "h1":
            blue_gws = [BLUE_GW4, BLUE_GW6]
            out += port("d1", "tun", ["%s/32" % C1_V4, "%s/128" % C1_V6])
            out += port("d2", "veth", ["%s/32" % C2_V4, "%s/128" % C2_V6], mac=D2_MAC)
            out += port("d3", "tun", ["%s/32" % D3_V4])
            out += port("b1", "tun", ["%s/32" % C1_V4, "%s/128" % C1_V6], "blue", gateways=blue_gws)
            out += port("b2", "veth", ["%s/32" % C2_V4, "%s/128" % C2_V6], "blue", mac=B2_MAC, gateways=blue_gws)
            out += port("b3", "tun", ["%s/32" % B3_V4], "blue", gateways=[BLUE_GW4])
    for a, b in [("h1", "h2"), ("h1", "h3")]:
        out += ["", "[[links]]", 'a = "%s"' % a, 'b = "%s"' % b, "cost = 10"]
    return "\n".join(out) + "\n"


def networks(g):
    """Two networks on one fabric: each port's packets stay in its network
    (the VNI it leaves with, the ports it reaches), each VNI's packets reach
    only that network's ports, the same address in two networks is two
    destinations, ICMP comes from the network's own gateway and MTU, and a
    VNI of no network is dropped by name."""
    t = NETS_TOPO

    def to_veth(port, mac, ip):
        return bytes(Ether(dst=mac, src=router_mac(port), type=ethertype_of(ip))) + ip

    def from_veth(port, mac, ip):
        return bytes(Ether(dst=router_mac(port), src=mac, type=ethertype_of(ip))) + ip

    def vx(peer, inner, vni):
        return from_peer(t, peer, inner, vxlan=vxlan_hdr(vni=vni))

    def fwd(name, in_port, frames, port, outputs):
        g.forward("net_" + name, in_port, frames, port, outputs, topo=t)

    def icmp(name, in_port, frames, reason, port, outputs):
        g.icmp("net_" + name, in_port, frames, reason, port, outputs, topo=t)

    def drop(name, in_port, frames, reason):
        g.drop("net_" + name, in_port, frames, reason, topo=t)

    # Out of a port into the tunnel: the same packet leaves with the VNI of
    # the port's network, TUN and veth, both families, and transit keeps it.
    p = udp4(C1_V4, H2_V4)
    fwd("d1_to_h2_v4", "d1", p, "eth0", encap(t, "h2", dec_ttl(p), vni=VNI))
    fwd("b1_to_h2_v4", "b1", p, "eth0", encap(t, "h2", dec_ttl(p), vni=BLUE_VNI))
    p = udp6(C2_V6, H2_V6)
    fwd("d2_to_h2_v6", "d2", from_veth("d2", D2_MAC, p), "eth0", encap(t, "h2", dec_ttl(p), vni=VNI))
    fwd("b2_to_h2_v6", "b2", from_veth("b2", B2_MAC, p), "eth0", encap(t, "h2", dec_ttl(p), vni=BLUE_VNI))
    p = udp4(C1_V4, H3_BLUE_V4)
    fwd("b1_to_h3_blue_v4", "b1", p, "eth0", encap(t, "h3", dec_ttl(p), vni=BLUE_VNI))
    p = udp4(H2_V4, H3_BLUE_V4)
    fwd("transit_h2_to_h3_vni43", "eth0", vx("h2", p, BLUE_VNI), "eth0", encap(t, "h3", dec_ttl(p), vni=BLUE_VNI))

    # Out of the tunnel: the same inner packet (same source, same
    # destination) with two VNIs reaches two different ports.
    p = udp4(H2_V4, C1_V4)
    fwd("h2_vni42_to_d1_v4", "eth0", vx("h2", p, VNI), "d1", dec_ttl(p))
    fwd("h2_vni43_to_b1_v4", "eth0", vx("h2", p, BLUE_VNI), "b1", dec_ttl(p))
    p = udp6(H2_V6, C2_V6)
    fwd("h2_vni42_to_d2_v6", "eth0", vx("h2", p, VNI), "d2", to_veth("d2", D2_MAC, dec_ttl(p)))
    fwd("h2_vni43_to_b2_v6", "eth0", vx("h2", p, BLUE_VNI), "b2", to_veth("b2", B2_MAC, dec_ttl(p)))
    p = udp4(H3_BLUE_V4, C2_V4)
    fwd("h3_vni43_to_b2_v4", "eth0", vx("h3", p, BLUE_VNI), "b2", to_veth("b2", B2_MAC, dec_ttl(p)))
    # An address of one network only: reached under its VNI (and, below,
    # unassigned under the other).
    p = udp4(H2_V4, D3_V4)
    fwd("h2_vni42_to_d3_v4", "eth0", vx("h2", p, VNI), "d3", dec_ttl(p))
    p = udp4(H2_V4, B3_V4)
    fwd("h2_vni43_to_b3_v4", "eth0", vx("h2", p, BLUE_VNI), "b3", dec_ttl(p))
    # Between the ports of h1: within a network, never across.
    p = udp4(C1_V4, B3_V4)
    fwd("b1_to_b3_local_v4", "b1", p, "b3", dec_ttl(p))
    p = udp4(C1_V4, C2_V4)
    fwd("d1_to_d2_local_v4", "d1", p, "d2", to_veth("d2", D2_MAC, dec_ttl(p)))
    fwd("b1_to_b2_local_v4", "b1", p, "b2", to_veth("b2", B2_MAC, dec_ttl(p)))
    p = udp6(C2_V6, C1_V6)
    fwd("b2_to_b1_local_v6", "b2", from_veth("b2", B2_MAC, p), "b1", dec_ttl(p))
    fwd("d2_to_d1_local_v6", "d2", from_veth("d2", D2_MAC, p), "d1", dec_ttl(p))
    # An address that is a port only in the other network is unassigned here.
    p = udp4(C1_V4, B3_V4)
    icmp("d1_to_blue_only_addr_v4", "d1", p, "no_route", "d1", icmp4_error(p, 3, 1))
    p = udp4(C1_V4, D3_V4)
    icmp("b1_to_default_only_addr_v4", "b1", p, "no_route", "b1", icmp4_error(p, 3, 1, gw=BLUE_GW4))
    p = udp4(B3_V4, D3_V4)
    icmp("b3_to_default_only_addr_v4", "b3", p, "no_route", "b3", icmp4_error(p, 3, 1, gw=BLUE_GW4))
    # A prefix only the other network has is no route here.
    p = udp4(C1_V4, H3_BLUE_V4)
    icmp("d1_to_blue_only_remote_v4", "d1", p, "no_route", "d1", icmp4_error(p, 3, 0))
    p = udp4(C1_V4, H3_V4)
    icmp("b1_to_default_only_remote_v4", "b1", p, "no_route", "b1", icmp4_error(p, 3, 0, gw=BLUE_GW4))
    # The same from the tunnel: the error goes back with the frame's VNI.
    p = udp4(H2_V4, B3_V4)
    icmp("h2_vni42_to_blue_only_addr_v4", "eth0", vx("h2", p, VNI), "no_route", "eth0", encap(t, "h2", icmp4_error(p, 3, 1), vni=VNI))
    p = udp4(H2_V4, D3_V4)
    icmp(
        "h2_vni43_to_default_only_addr_v4",
        "eth0",
        vx("h2", p, BLUE_VNI),
        "no_route",
        "eth0",
        encap(t, "h2", icmp4_error(p, 3, 1, gw=BLUE_GW4), vni=BLUE_VNI),
    )
    p = udp4(H2_V4, H3_BLUE_V4)
    icmp("h2_vni42_to_blue_only_remote_v4", "eth0", vx("h2", p, VNI), "no_route", "eth0", encap(t, "h2", icmp4_error(p, 3, 0), vni=VNI))

    # Sources are checked in the frame's network: h3's prefix of one
    # network is no source in the other, and h2 may not claim h3's.
    drop("h3_vni43_default_source_v4", "eth0", vx("h3", udp4(H3_V4, C1_V4), BLUE_VNI), "inner_spoofed_source")
    drop("h3_vni42_blue_source_v4", "eth0", vx("h3", udp4(H3_BLUE_V4, C1_V4), VNI), "inner_spoofed_source")
    drop("h2_vni43_claims_h3_source_v4", "eth0", vx("h2", udp4(H3_BLUE_V4, C1_V4), BLUE_VNI), "inner_source_wrong_peer")
    # A port's own addresses, not those of its namesakes in the network or
    # beside it.
    drop("b3_claims_b1_address_v4", "b3", udp4(C1_V4, H2_V4), "spoofed_source")
    drop("d3_claims_b3_address_v4", "d3", udp4(B3_V4, H2_V4), "spoofed_source")

    # A VNI no network has: dropped by name, whatever it carries.
    for vni in UNKNOWN_VNIS:
        drop("h2_unknown_vni_%d" % vni, "eth0", vx("h2", udp4(H2_V4, C1_V4), vni), "vxlan_unknown_vni")

    # The router in each network: its own gateway answers; the other
    # network's gateway address is nobody's.
    def echo(src, dst, ident, data):
        req = bytes(IP(src=src, dst=dst, ttl=64, id=0, flags=0) / ICMP(type=8, id=ident, seq=1) / Raw(data))
        rep = bytes(IP(src=dst, dst=src, ttl=64, id=0, flags=0) / ICMP(type=0, id=ident, seq=1) / Raw(data))
        return req, rep

    req, rep = echo(C1_V4, GW4, 0x81, b"default gw")
    g.reply("net_ping_gw_d1_v4", "d1", req, "d1", rep, topo=t)
    req, rep = echo(C1_V4, BLUE_GW4, 0x82, b"blue gw")
    g.reply("net_ping_gw_b1_v4", "b1", req, "b1", rep, topo=t)
    req = bytes(IPv6(src=C2_V6, dst=BLUE_GW6, hlim=64) / ICMPv6EchoRequest(id=0x83, seq=1, data=b"blue gw6"))
    rep = bytes(IPv6(src=BLUE_GW6, dst=C2_V6, hlim=64) / ICMPv6EchoReply(id=0x83, seq=1, data=b"blue gw6"))
    g.reply("net_ping_gw_b2_v6", "b2", from_veth("b2", B2_MAC, req), "b2", to_veth("b2", B2_MAC, rep), topo=t)
    req, _ = echo(C1_V4, GW4, 0x84, b"not ours in blue")
    icmp("ping_default_gw_from_b1_v4", "b1", req, "no_route", "b1", icmp4_error(req, 3, 1, gw=BLUE_GW4))
    req, _ = echo(C1_V4, BLUE_GW4, 0x85, b"not ours in default")
    icmp("ping_blue_gw_from_d1_v4", "d1", req, "no_route", "d1", icmp4_error(req, 3, 1))
    # From the tunnel: a remote container pings the gateway of its network.
    req, rep = echo(H2_V4, BLUE_GW4, 0x86, b"remote blue")
    g.reply("net_ping_gw_from_h2_vni43_v4", "eth0", vx("h2", req, BLUE_VNI), "eth0", encap(t, "h2", rep, vni=BLUE_VNI), topo=t)

    # ARP on a veth port of blue: answered with that port's router MAC.
    arp = bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=B2_MAC)
        / ARP(op=1, hwsrc=B2_MAC, psrc=C2_V4, hwdst="00:00:00:00:00:00", pdst=BLUE_GW4)
    )
    rep = bytes(Ether(dst=B2_MAC, src=router_mac("b2")) / ARP(op=2, hwsrc=router_mac("b2"), psrc=BLUE_GW4, hwdst=B2_MAC, pdst=C2_V4))
    g.reply("net_arp_gw_b2", "b2", arp, "b2", rep, topo=t)
    # Neighbour discovery on blue's veth port: the advert is always the
    # port's router MAC, with Override (RFC 4861 section 7.2.8) only for an
    # address that is the router's in blue: blue's gateway, not the default
    # network's.
    b2_ll = "fe80::ff:fe00:203"

    def ns(target):
        # RFC 4291 section 2.7.1 / RFC 2464 section 7: the solicited-node
        # group of the target and its multicast MAC (low 24 bits; the
        # targets here differ only in the last byte).
        low = int(target.split(":")[-1], 16)
        return bytes(
            Ether(dst="33:33:ff:00:00:%02x" % low, src=B2_MAC)
            / IPv6(src=b2_ll, dst="ff02::1:ff00:%x" % low, hlim=255)
            / ICMPv6ND_NS(tgt=target)
            / ICMPv6NDOptSrcLLAddr(lladdr=B2_MAC)
        )

    def na(target, override):
        return bytes(
            Ether(dst=B2_MAC, src=router_mac("b2"))
            / IPv6(src=target, dst=b2_ll, hlim=255)
            / ICMPv6ND_NA(R=1, S=1, O=1 if override else 0, tgt=target)
            / ICMPv6NDOptDstLLAddr(lladdr=router_mac("b2"))
        )

    g.reply("net_ns_blue_gw_b2", "b2", ns(BLUE_GW6), "b2", na(BLUE_GW6, True), topo=t)
    g.reply("net_ns_default_gw_b2", "b2", ns(GW6), "b2", na(GW6, False), topo=t)

    # ICMP errors come from the network's gateway: time exceeded.
    p = udp4(C1_V4, H2_V4, ttl=1)
    icmp("ttl1_d1_to_h2_v4", "d1", p, "ttl_expired", "d1", icmp4_error(p, 11, 0))
    icmp("ttl1_b1_to_h2_v4", "b1", p, "ttl_expired", "b1", icmp4_error(p, 11, 0, gw=BLUE_GW4))
    p = udp6(C2_V6, H2_V6, hlim=1)
    icmp(
        "hlim1_b2_to_h2_v6",
        "b2",
        from_veth("b2", B2_MAC, p),
        "ttl_expired",
        "b2",
        to_veth("b2", B2_MAC, icmp6_error(p, ICMPv6TimeExceeded(code=0), gw=BLUE_GW6)),
    )
    p = udp4(H2_V4, C1_V4, ttl=1)
    icmp("ttl1_h2_vni43_to_b1_v4", "eth0", vx("h2", p, BLUE_VNI), "ttl_expired", "eth0", encap(t, "h2", icmp4_error(p, 11, 0, gw=BLUE_GW4), vni=BLUE_VNI))
    p = udp6(H2_V6, C1_V6, hlim=1)
    icmp(
        "hlim1_h2_vni43_to_b1_v6",
        "eth0",
        vx("h2", p, BLUE_VNI),
        "ttl_expired",
        "eth0",
        encap(t, "h2", icmp6_error(p, ICMPv6TimeExceeded(code=0), gw=BLUE_GW6), vni=BLUE_VNI),
    )

    # Each network's MTU: 1401 bytes fit the default network (1450), not
    # blue (1400); the error names blue's MTU and comes from blue's gateway.
    p = sized4(C1_V4, H2_V4, BLUE_MTU + 1)
    fwd("d1_1401_to_h2_v4", "d1", p, "eth0", encap(t, "h2", dec_ttl(p), vni=VNI))
    icmp("b1_too_big_v4", "b1", p, "too_big", "b1", icmp4_error(p, 3, 4, mtu=BLUE_MTU, gw=BLUE_GW4))
    p = sized6(C2_V6, H2_V6, BLUE_MTU + 1)
    icmp(
        "b2_too_big_v6",
        "b2",
        from_veth("b2", B2_MAC, p),
        "too_big",
        "b2",
        to_veth("b2", B2_MAC, icmp6_error(p, ICMPv6PacketTooBig(mtu=BLUE_MTU), gw=BLUE_GW6)),
    )
    p = sized4(H2_V4, C1_V4, BLUE_MTU + 1)
    fwd("h2_vni42_1401_to_d1_v4", "eth0", vx("h2", p, VNI), "d1", dec_ttl(p))
    icmp(
        "h2_vni43_too_big_to_b1_v4",
        "eth0",
        vx("h2", p, BLUE_VNI),
        "too_big",
        "eth0",
        encap(t, "h2", icmp4_error(p, 3, 4, mtu=BLUE_MTU, gw=BLUE_GW4), vni=BLUE_VNI),
    )


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.normpath(os.path.join(here, "..", "..", "tests", "golden")))
    args = ap.parse_args()
    g = Gen(args.out)
    container_to_remote(g)
    remote_to_container(g)
    udp_checksum_cases(g)
    transit(g)
    ecmp(g)
    local(g)
    router_replies(g)
    icmp_errors(g)
    drops_container(g)
    drops_uplink(g)
    not_ours(g)
    ipv6_underlay(g)
    peer_identity(g)
    underlay_mtu(g)
    networks(g)
    g.flush()
    print("wrote %d cases, %d files to %s" % (len(g.cases), len(g.files), args.out), file=sys.stderr)


if __name__ == "__main__":
    main()
