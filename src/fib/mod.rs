//! fib layer: the longest-prefix-match forwarding tables and their lock-free
//! publication to the workers. Sans-IO: no syscalls, no clock, and the
//! lookup path neither allocates nor frees.
//!
//! # Algorithm: poptrie
//!
//! [`Lpm4`] and [`Lpm6`] are poptries (Asai & Ohara, SIGCOMM 2015): a
//! direct-pointing array on the first 18 bits (24 for a small table, see
//! below), then 64-way nodes of 6 bits each whose child and leaf arrays are
//! compressed with a population count over two 64-bit vectors (see
//! `poptrie.rs` for the exact layout). A lookup is one array read, one node
//! read per 6 bits past the array's that the matching prefix needs, and one
//! leaf read: in a large table IPv4 /24 routes resolve in three dependent
//! loads, IPv6 /48 in seven, with the same code (no slow path).
//!
//! The top array stores only the window of top-level slots the table's
//! prefixes touch (all of them, 1 MiB, for a large table); a slot outside
//! holds the /0's value, or no route. Every overlay network has its own
//! table, and a container network's holds a handful of prefixes, a few
//! /24 subnets and the addresses in them: where those touch at most 256
//! slots of a 24-bit top level, the table takes 24 bits, so a /24 resolves
//! in the top level rather than in a node under one /18 slot, and the
//! window's first four slots sit in the trie's header, the one cache line
//! every lookup reads. Such a table is a few cache lines of heap, where a
//! full 1 MiB array per network put the entries a burst over 64 networks
//! reads at one page offset in 64 arrays (cache set and TLB misses). The
//! lookup is the same for every size, a subtraction and a compare more
//! than a plain array.
//!
//! A [`Fib`] keeps a next hop that packs into 30 bits (see [`Packed`]) in
//! the leaf itself, so its lookup ends at the leaf; only a hop too wide
//! for that is read from [`Fib::next_hops`]. Every network's table has its
//! own next hops, and a burst that mixes networks would otherwise read one
//! more line per packet and lookup.
//!
//! Why not the alternatives: DIR-24-8 answers in one or two loads but costs
//! 64 MiB per IPv4 table (over the 16 MiB budget, and the control thread
//! keeps two alive while publishing) and has no IPv6 form. Plain multibit
//! tries with uncompressed 64-way nodes spend 16x the memory of a poptrie,
//! which at 100k routes falls out of the cache the lookups depend on.
//!
//! Performance: the lookup is memory-bound at 100k routes and beyond, three
//! dependent reads (top, node, leaf) for an IPv4 /24, so the layout is
//! chosen for cache lines, not instructions. At 100k IPv4 routes a table
//! takes under 4 MiB (1 MiB of it the 18-bit top array, the rest 24-byte nodes
//! and 4-byte leaf runs) and a lookup costs a few times less than a
//! general-purpose trie's; `cargo bench --bench lpm` measures both side by
//! side, and docs/benchmarks.md keeps the reference figures.
//!
//! Layouts that lose: fixed-depth branch-free steps do twice the popcounts;
//! 32-byte nodes that carry their leaf runs in the same cache line read two
//! lines per /24 instead of three but take about half as much memory again,
//! which costs more than it saves; walking a batch of lookups in lockstep
//! gains nothing over the plain loop, which out-of-order execution already
//! overlaps. The default target has no `popcnt` instruction, so
//! `count_ones` is a short bit-twiddling sequence; `-C
//! target-feature=+popcnt` speeds up every trie about equally.
//!
//! IPv6 uses the same code and layout (no slow path). Random /48s under
//! 2000::/3 share only their first ~20 bits; skip nodes (see `poptrie.rs`)
//! collapse the single-child levels below that, which halves IPv6 memory
//! and, for tables of 1k to 10k routes, lookup time.
//!
//! # Invariants
//!
//! - Tables are immutable once built; a route change builds a new table and
//!   [`FibPublisher::publish`]es it. Workers load it once per batch through a
//!   [`FibReader`] and never free it (see [`publish`]).
//! - Duplicate prefixes: the last route given wins. Host bits of a prefix are
//!   ignored (`10.1.2.3/8` is `10.0.0.0/8`).
//! - Next-hop ids run from 0 to [`MAX_NEXT_HOP_ID`]; the top bit of a table
//!   entry tells leaves from nodes. [`Lpm4::build`] and [`Lpm6::build`] skip
//!   routes with a larger id; [`Fib::build`] assigns ids itself and never
//!   comes near the limit.
//! - In a [`Fib`], a leaf whose bit 30 is set holds the next hop itself,
//!   packed by [`Packed::pack`] into the 30 bits below (see [`Packed`]);
//!   otherwise it is an index into [`Fib::next_hops`], below 2^30.

mod poptrie;
pub mod publish;

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use poptrie::{Poptrie, TopBits, NONE};
pub use publish::{FibGuard, FibPublisher, FibReader};

/// Index of a next hop (for [`Fib`], an index into [`Fib::next_hops`]).
pub type NextHopId = u32;

/// The largest next-hop id a table can store.
pub const MAX_NEXT_HOP_ID: NextHopId = NONE - 1;

#[inline(always)]
fn decode(raw: u32) -> Option<NextHopId> {
    if raw == NONE {
        None
    } else {
        Some(raw)
    }
}

/// An immutable IPv4 longest-prefix-match table.
#[derive(Clone, Debug)]
pub struct Lpm4 {
    trie: Poptrie<u32>,
}

impl Lpm4 {
    /// Builds a table from `(prefix, next hop)` pairs. Duplicates: the last
    /// wins. Host bits are ignored. Routes whose id exceeds
    /// [`MAX_NEXT_HOP_ID`] are skipped.
    pub fn build(routes: &[(Ipv4Net, NextHopId)]) -> Lpm4 {
        Self::build_top(routes, TopBits::Auto)
    }

    /// Like [`Lpm4::build`] with a top level of `bits` bits (clamped to
    /// 1..=24) whatever the table's size: for tests and benches that
    /// compare the layouts.
    pub fn build_with_top_bits(routes: &[(Ipv4Net, NextHopId)], bits: u32) -> Lpm4 {
        Self::build_top(routes, TopBits::Fixed(bits))
    }

    fn build_top(routes: &[(Ipv4Net, NextHopId)], top: TopBits) -> Lpm4 {
        Lpm4 {
            trie: Poptrie::build(
                routes
                    .iter()
                    .map(|(net, id)| (u32::from(net.addr()), net.prefix_len(), *id)),
                top,
            ),
        }
    }

    /// The next hop of the longest prefix containing `addr` (host byte
    /// order, as `u32::from(Ipv4Addr)`).
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<NextHopId> {
        decode(self.trie.lookup(addr))
    }

    /// Looks up `addrs[i]` into `out[i]` for every `i` below the shorter
    /// length of the two slices.
    pub fn lookup_batch(&self, addrs: &[u32], out: &mut [Option<NextHopId>]) {
        for (addr, slot) in addrs.iter().zip(out.iter_mut()) {
            *slot = decode(self.trie.lookup(*addr));
        }
    }

    /// Bytes used by the table.
    pub fn memory_bytes(&self) -> usize {
        self.trie.memory_bytes()
    }

    /// Number of distinct prefixes.
    pub fn len(&self) -> usize {
        self.trie.len()
    }

    /// True when the table holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.trie.len() == 0
    }

    /// Number of internal 64-way nodes (structure statistics).
    pub fn node_count(&self) -> usize {
        self.trie.node_count()
    }

    /// Key bits the direct-pointing top level consumes.
    pub fn top_bits(&self) -> u32 {
        self.trie.top_bits()
    }
}

impl Default for Lpm4 {
    fn default() -> Self {
        Lpm4::build(&[])
    }
}

/// An immutable IPv6 longest-prefix-match table.
#[derive(Clone, Debug)]
pub struct Lpm6 {
    trie: Poptrie<u128>,
}

impl Lpm6 {
    /// Builds a table from `(prefix, next hop)` pairs. Duplicates: the last
    /// wins. Host bits are ignored. Routes whose id exceeds
    /// [`MAX_NEXT_HOP_ID`] are skipped.
    pub fn build(routes: &[(Ipv6Net, NextHopId)]) -> Lpm6 {
        Self::build_top(routes, TopBits::Auto)
    }

    /// Like [`Lpm6::build`] with a top level of `bits` bits (clamped to
    /// 1..=24) whatever the table's size: for tests and benches that
    /// compare the layouts.
    pub fn build_with_top_bits(routes: &[(Ipv6Net, NextHopId)], bits: u32) -> Lpm6 {
        Self::build_top(routes, TopBits::Fixed(bits))
    }

    fn build_top(routes: &[(Ipv6Net, NextHopId)], top: TopBits) -> Lpm6 {
        Lpm6 {
            trie: Poptrie::build(
                routes
                    .iter()
                    .map(|(net, id)| (u128::from(net.addr()), net.prefix_len(), *id)),
                top,
            ),
        }
    }

    /// The next hop of the longest prefix containing `addr` (as
    /// `u128::from(Ipv6Addr)`).
    #[inline]
    pub fn lookup(&self, addr: u128) -> Option<NextHopId> {
        decode(self.trie.lookup(addr))
    }

    /// Looks up `addrs[i]` into `out[i]` for every `i` below the shorter
    /// length of the two slices.
    pub fn lookup_batch(&self, addrs: &[u128], out: &mut [Option<NextHopId>]) {
        for (addr, slot) in addrs.iter().zip(out.iter_mut()) {
            *slot = decode(self.trie.lookup(*addr));
        }
    }

    /// Bytes used by the table.
    pub fn memory_bytes(&self) -> usize {
        self.trie.memory_bytes()
    }

    /// Number of distinct prefixes.
    pub fn len(&self) -> usize {
        self.trie.len()
    }

    /// True when the table holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.trie.len() == 0
    }

    /// Number of internal 64-way nodes (structure statistics).
    pub fn node_count(&self) -> usize {
        self.trie.node_count()
    }

    /// Key bits the direct-pointing top level consumes.
    pub fn top_bits(&self) -> u32 {
        self.trie.top_bits()
    }
}

impl Default for Lpm6 {
    fn default() -> Self {
        Lpm6::build(&[])
    }
}

/// A next hop a [`Fib`] may keep in the leaf itself: one that packs into
/// 30 bits needs no read of [`Fib::next_hops`] after the trie, one
/// dependent load less per lookup, and no line of the next-hop table in
/// the cache. That line counts when a burst mixes many networks, each with
/// its own table. The defaults pack nothing: every lookup reads the table.
pub trait Packed: Sized {
    /// The hop in at most [`PACKED_MAX`] (30 bits), or `None` when it does
    /// not fit (it is then kept in the table).
    fn pack(&self) -> Option<u32> {
        None
    }

    /// The hop [`Packed::pack`] gave `bits` for; `None` only for bits that
    /// no hop packs to, which a table never stores.
    fn unpack(bits: u32) -> Option<Self> {
        let _ = bits;
        None
    }
}

/// The leaf bit of a [`Fib`] that marks a packed next hop.
const PACKED_FLAG: u32 = 1 << 30;
/// The largest value [`Packed::pack`] may return: with [`PACKED_FLAG`] it
/// stays below the trie's "no route" value.
pub const PACKED_MAX: u32 = PACKED_FLAG - 2;

/// A forwarding table: both address families plus the next hops their
/// lookups index. `N` is whatever the data plane needs per next hop (a local
/// port, or ECMP peers with prebuilt outer header templates).
#[derive(Clone, Debug)]
pub struct Fib<N> {
    /// IPv4 routes; values index `next_hops`.
    pub v4: Lpm4,
    /// IPv6 routes; values index `next_hops`.
    pub v6: Lpm6,
    /// One entry per route given to [`Fib::build`], in order (also for
    /// duplicate prefixes whose entry is shadowed). Callers that want
    /// shared next hops pre-share `N` (e.g. an `Arc` or a small index).
    pub next_hops: Vec<N>,
}

impl<N: Packed + Clone> Fib<N> {
    /// Builds both tables. Route `i` gets next-hop id `i`, and its leaf
    /// holds the hop itself when it packs. Duplicate prefixes: the last
    /// wins.
    pub fn build(routes: impl IntoIterator<Item = (IpNet, N)>) -> Fib<N> {
        let mut next_hops = Vec::new();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (net, hop) in routes {
            // Unreachable in practice (2^30 routes); stop rather than wrap
            // into the packed values.
            let Ok(id) = NextHopId::try_from(next_hops.len()) else {
                break;
            };
            if id >= PACKED_FLAG {
                break;
            }
            let leaf = match hop.pack() {
                Some(bits) if bits <= PACKED_MAX => PACKED_FLAG | bits,
                _ => id,
            };
            next_hops.push(hop);
            match net {
                IpNet::V4(n) => v4.push((n, leaf)),
                IpNet::V6(n) => v6.push((n, leaf)),
            }
        }
        Fib {
            v4: Lpm4::build(&v4),
            v6: Lpm6::build(&v6),
            next_hops,
        }
    }

    /// The hop of a leaf: unpacked, or from the table.
    #[inline(always)]
    fn hop(&self, leaf: Option<NextHopId>) -> Option<N> {
        let leaf = leaf?;
        if leaf & PACKED_FLAG != 0 {
            N::unpack(leaf & !PACKED_FLAG)
        } else {
            self.next_hops.get(leaf as usize).cloned()
        }
    }

    /// The next hop for an IPv4 destination (host byte order).
    #[inline]
    pub fn lookup_v4(&self, addr: u32) -> Option<N> {
        self.hop(self.v4.lookup(addr))
    }

    /// The next hop for an IPv6 destination.
    #[inline]
    pub fn lookup_v6(&self, addr: u128) -> Option<N> {
        self.hop(self.v6.lookup(addr))
    }

    /// The next hop for a destination of either family. An IPv4-mapped IPv6
    /// address is looked up in the IPv6 table, as given.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<N> {
        match ip {
            IpAddr::V4(a) => self.lookup_v4(u32::from(a)),
            IpAddr::V6(a) => self.lookup_v6(u128::from(a)),
        }
    }
}

impl<N> Fib<N> {
    /// Bytes used by both tables (not counting what `N` owns).
    pub fn memory_bytes(&self) -> usize {
        self.v4.memory_bytes()
            + self.v6.memory_bytes()
            + self.next_hops.capacity() * core::mem::size_of::<N>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test hop: numbers pack, names do not.
    #[derive(Clone, Debug, PartialEq)]
    enum Hop {
        Num(u32),
        Name(&'static str),
    }

    impl Packed for Hop {
        fn pack(&self) -> Option<u32> {
            match self {
                Hop::Num(n) => Some(*n),
                Hop::Name(_) => None,
            }
        }

        fn unpack(bits: u32) -> Option<Self> {
            Some(Hop::Num(bits))
        }
    }

    #[test]
    fn fib_dispatches_by_family() {
        let fib = Fib::build([
            ("0.0.0.0/0".parse().unwrap(), Hop::Name("default4")),
            ("198.19.1.0/24".parse().unwrap(), Hop::Name("c1")),
            ("2001:db8::/32".parse().unwrap(), Hop::Name("peer6")),
        ]);
        let name = |n| Some(Hop::Name(n));
        assert_eq!(fib.lookup("198.19.1.9".parse().unwrap()), name("c1"));
        assert_eq!(fib.lookup("8.8.8.8".parse().unwrap()), name("default4"));
        assert_eq!(fib.lookup("2001:db8::1".parse().unwrap()), name("peer6"));
        assert_eq!(fib.lookup("2001:db9::1".parse().unwrap()), None);
        assert_eq!(fib.next_hops.len(), 3);
    }

    #[test]
    fn packed_hops_sit_in_the_leaves_and_others_in_the_table() {
        let fib = Fib::build([
            ("198.19.1.0/24".parse().unwrap(), Hop::Num(7)),
            ("198.19.2.0/24".parse().unwrap(), Hop::Name("peer")),
            ("198.19.3.0/24".parse().unwrap(), Hop::Num(PACKED_MAX)),
            // One past what a leaf holds: kept in the table.
            ("198.19.4.0/24".parse().unwrap(), Hop::Num(PACKED_MAX + 1)),
            ("2001:db8::/32".parse().unwrap(), Hop::Num(0)),
        ]);
        let leaf = |a: &str| {
            fib.v4
                .lookup(u32::from(a.parse::<std::net::Ipv4Addr>().unwrap()))
        };
        assert_eq!(leaf("198.19.1.1"), Some(PACKED_FLAG | 7));
        assert_eq!(leaf("198.19.2.1"), Some(1));
        assert_eq!(leaf("198.19.3.1"), Some(PACKED_FLAG | PACKED_MAX));
        assert_eq!(leaf("198.19.4.1"), Some(3));
        for (a, want) in [
            ("198.19.1.1", Hop::Num(7)),
            ("198.19.2.1", Hop::Name("peer")),
            ("198.19.3.1", Hop::Num(PACKED_MAX)),
            ("198.19.4.1", Hop::Num(PACKED_MAX + 1)),
            ("2001:db8::1", Hop::Num(0)),
        ] {
            assert_eq!(fib.lookup(a.parse().unwrap()), Some(want), "{a}");
        }
        assert_eq!(fib.lookup("198.19.5.1".parse().unwrap()), None);
        assert_eq!(fib.next_hops.len(), 5);
    }

    #[test]
    fn out_of_range_ids_are_skipped() {
        let net: Ipv4Net = "10.0.0.0/8".parse().unwrap();
        let t = Lpm4::build(&[(net, u32::MAX), (net, MAX_NEXT_HOP_ID + 1)]);
        assert!(t.is_empty());
        assert_eq!(t.lookup(0x0A00_0001), None);
        let t = Lpm4::build(&[(net, MAX_NEXT_HOP_ID)]);
        assert_eq!(t.lookup(0x0A00_0001), Some(MAX_NEXT_HOP_ID));
    }

    #[test]
    fn empty_tables_answer_none() {
        assert_eq!(Lpm4::default().lookup(0), None);
        assert_eq!(Lpm6::default().lookup(u128::MAX), None);
    }
}
