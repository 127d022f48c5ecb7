// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * vxrouter's XDP programs. Compiled by build.rs (clang -target bpf) and
 * loaded by src/port/xdp.rs with aya: `uplink` once per uplink NIC, with its
 * own copy of the maps; `container` once per router, one program and one
 * pair of maps shared by every container veth it is attached to, so that an
 * attach costs a link, not a load through the verifier.
 *
 * - `uplink` (the NIC): redirects to the AF_XDP socket of the receiving queue
 *   only IPv4/IPv6 UDP whose destination is one of our underlay addresses
 *   (map `underlay_addrs`) and whose destination port is our VXLAN port
 *   (map `config`, network byte order). Everything else, ARP and ND included,
 *   is XDP_PASS: the kernel owns the underlay address and must keep resolving
 *   neighbours and answering ssh while the router runs.
 * - `container` (host end of a veth container port): every frame goes to the
 *   socket of its own interface and queue; the router answers ARP/ND for the
 *   gateway itself. The interface's slot comes from `container_slots`
 *   (ifindex -> slot) and its sockets sit at slot * MAX_QUEUES + queue in
 *   `container_xsks`, so a frame can only be redirected to a socket that the
 *   router registered for the interface it arrived on (and the kernel
 *   refuses to deliver to a socket bound to another device or queue anyway).
 *
 * Both redirect with bpf_redirect_map(map, key, XDP_PASS): when no socket is
 * registered for the key (router not started, or dead) the frame goes to the
 * kernel instead of being dropped.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Queues we can bind a socket to; NICs here have at most a few dozen. */
#define MAX_QUEUES 64
/* Container veth ports one router serves at once (MAX_PORTS is 255). */
#define MAX_CONTAINER_PORTS 256
/* Underlay addresses of this host (usually one or two). */
#define MAX_UNDERLAY_ADDRS 16
/* 802.1Q and 802.1ad tags we look through (QinQ is two). */
#define MAX_VLAN_TAGS 2

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

/* A 16-byte address: IPv6 as is, IPv4 as ::ffff:a.b.c.d (RFC 4291 2.5.5.2). */
struct addr_key {
	__u8 addr[16];
};

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

/* Index 0: VXLAN UDP port in network byte order (0 = redirect nothing). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u16);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_UNDERLAY_ADDRS);
	__type(key, struct addr_key);
	__type(value, __u8);
} underlay_addrs SEC(".maps");

/* ifindex of a container port's host end -> its slot (< MAX_CONTAINER_PORTS). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_CONTAINER_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} container_slots SEC(".maps");

/* slot * MAX_QUEUES + queue -> that interface queue's AF_XDP socket. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_CONTAINER_PORTS * MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} container_xsks SEC(".maps");

static __always_inline int to_socket(struct xdp_md *ctx)
{
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

/* True when `udp` (already bounds-checked) goes to our VXLAN port. */
static __always_inline int is_vxlan_port(const struct udphdr *udp)
{
	__u32 zero = 0;
	__u16 *port = bpf_map_lookup_elem(&config, &zero);

	return port && *port != 0 && udp->dest == *port;
}

SEC("xdp")
int uplink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *cursor;
	__be16 proto;
	struct addr_key key = {};

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	proto = eth->h_proto;
	cursor = eth + 1;

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		struct vlan_hdr *vlan = cursor;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vlan + 1) > data_end)
			return XDP_PASS;
		proto = vlan->encap_proto;
		cursor = vlan + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cursor;
		struct udphdr *udp;
		__u32 ihl_len;

		if ((void *)(ip + 1) > data_end)
			return XDP_PASS;
		if (ip->version != 4 || ip->protocol != IPPROTO_UDP)
			return XDP_PASS;
		/* Fragments go to the kernel, which reassembles. */
		if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return XDP_PASS;
		ihl_len = ip->ihl * 4;
		if (ihl_len < sizeof(*ip))
			return XDP_PASS;
		udp = (void *)ip + ihl_len;
		if ((void *)(udp + 1) > data_end)
			return XDP_PASS;
		if (!is_vxlan_port(udp))
			return XDP_PASS;
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &ip->daddr, 4);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cursor;
		struct udphdr *udp;

		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		/* Only UDP right after the fixed header; VXLAN senders use no
		 * extension headers, and the kernel handles anything else. */
		if (ip6->version != 6 || ip6->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		udp = (void *)(ip6 + 1);
		if ((void *)(udp + 1) > data_end)
			return XDP_PASS;
		if (!is_vxlan_port(udp))
			return XDP_PASS;
		__builtin_memcpy(key.addr, &ip6->daddr, 16);
	} else {
		return XDP_PASS;
	}

	if (!bpf_map_lookup_elem(&underlay_addrs, &key))
		return XDP_PASS;
	return to_socket(ctx);
}

SEC("xdp")
int container(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 queue = ctx->rx_queue_index;
	__u32 *slot = bpf_map_lookup_elem(&container_slots, &ifindex);

	if (!slot || *slot >= MAX_CONTAINER_PORTS || queue >= MAX_QUEUES)
		return XDP_PASS;
	return bpf_redirect_map(&container_xsks, *slot * MAX_QUEUES + queue, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
