//! Offload: super-packets.
//!
//! - [`layout`]: the super-packet format and its parse.
//! - [`segment`]: super-packets cut into segments.

#[cfg(target_os = "linux")]
pub mod coalesce;
pub mod layout;
pub mod outer;
pub mod segment;
#[cfg(target_os = "linux")]
pub mod vnet;

pub use layout::{Encap, Gso, Layout, Tunnel, MAX_SUPER_L3};
pub use segment::{segment_into, write_headers};
