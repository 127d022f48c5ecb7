//! Offload: super-packets, their layout, and how they are cut into segments
//! and coalesced from them.
//!
//! A super-packet is one IP packet whose TCP (or UDP) header stands for many
//! segments (datagrams): a container's TSO write, the frames a worker round
//! coalesces for a container port, a train of VXLAN datagrams read with
//! `UDP_GRO`. It crosses the router as one packet, annotated with a [`Gso`]
//! (segment size and count, Linux's `gso_size` and `gso_segs`), and is cut
//! only where a port needs the segments.
//!
//! Layer: sans-IO, between [`crate::wire`] (whose views read every header
//! here) and the ports. No system calls, no clock, no allocation per packet;
//! the ports in [`crate::port`] do the reads and writes and call in here.
//! The words: *segment* (cut a super-packet into the packets it stands for),
//! *coalesce* (merge packets into a super-packet), *whole* (a super-packet
//! handed on without either). Linux's names for the same things (TSO, USO,
//! GSO, GRO) appear only where a kernel interface is meant.
//!
//! - [`layout`]: the super-packet format, its [`Gso`] annotation, and
//!   [`Layout::parse`], the one check of a super-packet's headers; the
//!   parsed [`Layout`] is what the data plane hands a port
//!   ([`crate::port::Port::tx_gso`]).
//! - [`segment`]: segments made from a layout: [`write_headers`] for one
//!   segment's headers (the UDP uplink sends them beside slices of the
//!   payload), [`segment_into`] for whole segments in packet buffers (ports
//!   that cannot take a super-packet).
//! - [`coalesce`]: the kernel's GRO rules, applied to the frames of a worker
//!   round for a container port ([`coalesce::Coalescer`]) and to the VXLAN
//!   trains of the UDP uplink ([`coalesce::coalesce_into`]).
//! - [`vnet`]: the virtio-net header in front of packets on TUN queues
//!   (`IFF_VNET_HDR`) and AF_PACKET sockets (`PACKET_VNET_HDR`): what a read
//!   says (kept whole, or split by [`vnet::Splitter`]), what a write says
//!   ([`vnet::whole_write`]), partial checksums completed.
//! - [`outer`]: the outer Ethernet, IP and UDP headers of a VXLAN frame
//!   that a kernel UDP socket takes off on send and the uplink puts back on
//!   receive.
//!
//! Invariants:
//! - A super-packet's headers are checked once, by [`Layout::parse`] (or, on
//!   a read, by [`vnet::keep_whole`] through it); after that nothing here
//!   can fail or panic on a frame of that layout.
//! - Segments are what the kernel's segmentation makes of the same
//!   super-packet, and coalescing merges only what the kernel's GRO would:
//!   cut again, a coalesced super-packet gives back the packets it was made
//!   of (byte for byte but for IPv4 IDs under DF, which carry nothing).

#[cfg(target_os = "linux")]
pub mod coalesce;
pub mod layout;
pub mod outer;
pub mod segment;
#[cfg(target_os = "linux")]
pub mod vnet;

pub use layout::{Encap, Gso, Layout, Tunnel, MAX_SUPER_L3};
pub use segment::{segment_into, write_headers};
