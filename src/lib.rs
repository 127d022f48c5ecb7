//! vxrouter: a userspace VXLAN overlay router for container hosts.
//!
//! Layers, from the wire up (see docs/architecture.md):
//! - [`wire`]: zero-copy packet views and emitters with checked constructors.
//! - [`config`]: the shared TOML topology, parsed and validated with spans.
//! - [`route`]: Bellman-Ford over the topology graph and the compiled route set.
//! - [`fib`]: the lock-free longest-prefix-match table and its publication.
//! - [`dataplane`]: the batch pipeline; a verdict per packet, drops by reason.
//! - [`api`]: the control socket's request/reply protocol (sans-IO) and its client.
//! - [`cni`]: the `vxrouter-cni` plugin's logic (CNI 1.0.0 and 1.1.0), a
//!   client of the control socket.
//! - [`store`]: the topology from etcd: records, their merge with the file
//!   (sans-IO), and the client thread.
//! - [`offload`]: super-packets: their layout, segmentation and coalescing,
//!   and the virtio-net header.
//! - [`port`]: the batch `Port` trait and its implementations (memory, pcap,
//!   and on Linux TUN and AF_XDP).
//!
//! `wire`, `config`, `route`, `fib`, `dataplane` and `offload` are sans-IO: no syscalls,
//! no clock reads, no per-packet allocation. `unsafe` is denied at the root and
//! allowed only in the I/O corner under `port/`.
#![deny(unsafe_code)]

pub mod api;
#[cfg(target_os = "linux")]
pub mod cni;
pub mod config;
#[cfg(target_os = "linux")]
pub mod control;
pub mod dataplane;
pub mod fib;
#[cfg(target_os = "linux")]
pub mod host;
#[cfg(target_os = "linux")]
pub mod metrics;
pub mod netstats;
pub mod offload;
pub mod port;
pub mod replay;
pub mod route;
pub mod store;
pub mod wire;
pub mod worker;
