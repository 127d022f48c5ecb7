//! Topology from a store: the hosts beyond this router's file, from an etcd
//! v3 cluster, in vxrouter's own key layout or flannel's.
//!
//! Layers: [`record`] decodes and encodes the records, [`merge`] builds
//! the topology a router runs from its file and the records, [`alloc`]
//! plans a host's lease in one network; all three are sans-IO. [`etcd`] is
//! the I/O: a thread with a runtime of its own that keeps this host's
//! records alive under a lease, leases its subnets (one per network with a
//! lease range, each network's leases under keys of its own), watches the
//! prefix and hands each new [`View`] of the records to the control
//! thread, which merges it and publishes routes and tables as a reload
//! does. The workers never wait on it: a store outage leaves the last
//! topology in force.
//!
//! Invariant: a [`View`] is the whole set of records under the prefix as of
//! its revision; the control thread needs no history to merge it.

pub mod alloc;
#[cfg(target_os = "linux")]
pub mod etcd;
pub mod merge;
pub mod record;

use std::collections::BTreeMap;

/// Why a record is left out of the topology. Declared once; the names are
/// the metrics' `reason` labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reject {
    /// Not JSON, or larger than a record may be.
    NotJson,
    /// JSON, but a field is missing, of the wrong type or not valid (a bad
    /// address, MAC or name).
    BadField,
    /// The key and the record disagree (a host record under another
    /// host's key, a lease key that names no subnet or no valid network).
    KeyMismatch,
    /// A special address: loopback, multicast, reserved and the like, or a
    /// subnet with host bits.
    BadAddress,
    /// A subnet overlapping an older host's, or holding an underlay.
    Overlap,
    /// The name, underlay or VTEP MAC of an older host.
    Duplicate,
    /// A record of another VXLAN network.
    ForeignVni,
    /// A link record naming unknown hosts, itself, or a linked pair.
    BadLink,
    /// A key the layout has no place for.
    UnknownKey,
}

impl Reject {
    pub const ALL: [Reject; 9] = [
        Reject::NotJson,
        Reject::BadField,
        Reject::KeyMismatch,
        Reject::BadAddress,
        Reject::Overlap,
        Reject::Duplicate,
        Reject::ForeignVni,
        Reject::BadLink,
        Reject::UnknownKey,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reject::NotJson => "not_json",
            Reject::BadField => "bad_field",
            Reject::KeyMismatch => "key_mismatch",
            Reject::BadAddress => "bad_address",
            Reject::Overlap => "overlap",
            Reject::Duplicate => "duplicate",
            Reject::ForeignVni => "foreign_vni",
            Reject::BadLink => "bad_link",
            Reject::UnknownKey => "unknown_key",
        }
    }
}

/// One record under the prefix.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub value: Vec<u8>,
    /// The revision the key was created at: older records win conflicts.
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// Every record under the prefix at one revision, keyed by the key with
/// the prefix and its `/` taken off.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct View {
    pub revision: i64,
    pub entries: BTreeMap<String, Entry>,
}
