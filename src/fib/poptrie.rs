//! Poptrie engine shared by [`Lpm4`](super::Lpm4) and [`Lpm6`](super::Lpm6),
//! generic over the key width.
//!
//! Layout (Asai & Ohara, "Poptrie", SIGCOMM 2015, re-derived here):
//! - `top`: a direct-pointing array indexed by the first `top_bits` bits of
//!   the key (18, or 24 for a table whose prefixes touch few /24 slots,
//!   unless a test or bench asks for another size, see [`TopBits`]), minus
//!   `top_lo`: it stores only the window of slots that prefixes other than
//!   the /0 touch, and every slot outside the window holds `background`,
//!   the /0's value or [`NONE`]. The window's first [`HEAD`] slots are also
//!   kept in the header, `top_head`, which the lookup reads instead. An
//!   entry is either a leaf value (bit 31 clear) or `NODE_FLAG | node`.
//! - `nodes`: 64-way nodes, each consuming 6 key bits. `vector` has bit `i`
//!   set when slot `i` is an internal node; those children sit contiguously at
//!   `base1..` in slot order, so child `i` is at `base1 + popcount(vector &
//!   bits 0..=i) - 1`. The remaining slots are leaves, run-length compressed:
//!   `leafvec` has a bit where a run of equal leaf values starts (internal
//!   slots never carry a bit), and the run values sit at `base0..`.
//! - `leaves`: the leaf runs of every node, node after node.
//! - Skip nodes (path compression, our addition): a chain of two to ten
//!   levels that each have one child and carry no value but the inherited
//!   one is stored as one node with `leafvec == 0`, the level count in the
//!   top 4 bits of `vector`, the expected key bits in its low 60 bits,
//!   `base0` = the inherited value (the answer on a mismatch) and `base1` =
//!   the node below the chain. An ordinary node has `leafvec == 0` only when
//!   all 64 slots are internal, and then `vector` is all ones (count 15), so
//!   the two never collide. Random IPv6 /48s otherwise cost a chain of about
//!   five nodes each.
//!
//! Invariants the lookup relies on (established by [`Poptrie::build`]):
//! - `top_bits` is in [`TOP_BITS_RANGE`] (1..=24), so the top index is one
//!   shift of at most 31 bits; `top_lo + top.len() <= 2^top_bits`, and an
//!   index below `top_lo` wraps past `top.len()`, so one bounds check sends
//!   both sides of the window to `background`;
//! - a node at depth `d` exists only under a prefix longer than `d`, so
//!   `d < K::BITS` and extracting 6 bits (or a skip node's bits) at `d`
//!   never shifts out of range;
//! - every leaf slot of a node is covered by a `leafvec` bit at or before it;
//! - every index computed from `base0`/`base1` is in bounds. The lookup still
//!   uses checked indexing (`unsafe` is denied in this layer); the checks are
//!   perfectly predicted branches.

/// Leaf value meaning "no route".
pub(crate) const NONE: u32 = 0x7FFF_FFFF;
/// Marks a `top` entry that points at a node rather than holding a leaf.
const NODE_FLAG: u32 = 0x8000_0000;
/// Key bits consumed per node: 64 slots fit one `u64` bit vector.
const STRIDE: u32 = 6;
/// A skip node's level count sits in the top 4 bits of its `vector`.
const SKIP_SHIFT: u32 = 60;
/// The expected key bits of a skip node: the low 60 bits of its `vector`.
const SKIP_MASK: u64 = (1 << SKIP_SHIFT) - 1;
/// At most 10 levels (60 bits) collapse into one skip node.
const MAX_SKIP_LEVELS: u32 = 10;

/// A fixed-width address used as a trie key, most significant bit first.
pub(crate) trait Key: Copy + Ord + Default {
    /// Key width in bits.
    const BITS: u32;
    /// `len` bits (1..=32) starting `off` bits below the most significant bit,
    /// right-aligned; bits past the end of the key read as zero. `off` must be
    /// below `BITS`.
    fn bits(self, off: u32, len: u32) -> u32;
    /// Like [`Key::bits`] for `len` in 1..=60.
    fn bits64(self, off: u32, len: u32) -> u64;
    /// The first `len` bits (1..=32) as an index: [`Key::bits`] at offset
    /// 0, a single shift for a `len` known only at run time.
    fn top(self, len: u32) -> usize;
    /// The key with all bits after the first `len` cleared (`len <= BITS`).
    fn truncate(self, len: u8) -> Self;
}

impl Key for u32 {
    const BITS: u32 = 32;
    #[inline(always)]
    fn bits(self, off: u32, len: u32) -> u32 {
        // Widen so that `off` bits can leave at the top and the zero padding
        // past bit 31 enters at the bottom: off < 32 keeps the shift < 64.
        (((self as u64) << (32 + off)) >> (64 - len)) as u32
    }
    #[inline(always)]
    fn bits64(self, off: u32, len: u32) -> u64 {
        ((self as u64) << (32 + off)) >> (64 - len)
    }
    #[inline(always)]
    fn top(self, len: u32) -> usize {
        (self >> (32 - len)) as usize
    }
    #[inline]
    fn truncate(self, len: u8) -> Self {
        match len {
            0 => 0,
            l if u32::from(l) >= 32 => self,
            l => self & (u32::MAX << (32 - u32::from(l))),
        }
    }
}

impl Key for u128 {
    const BITS: u32 = 128;
    #[inline(always)]
    fn bits(self, off: u32, len: u32) -> u32 {
        ((self << off) >> (128 - len)) as u32
    }
    #[inline(always)]
    fn bits64(self, off: u32, len: u32) -> u64 {
        ((self << off) >> (128 - len)) as u64
    }
    #[inline(always)]
    fn top(self, len: u32) -> usize {
        // The high half holds all `len <= 32` bits: a 64-bit shift, not a
        // 128-bit one.
        (((self >> 64) as u64) >> (64 - len)) as usize
    }
    #[inline]
    fn truncate(self, len: u8) -> Self {
        match len {
            0 => 0,
            l if u32::from(l) >= 128 => self,
            l => self & (u128::MAX << (128 - u32::from(l))),
        }
    }
}

/// One 64-way node. 24 bytes: two or three fit a cache line.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
struct Node {
    /// Bit `i`: slot `i` is an internal node.
    vector: u64,
    /// Bit `i`: a run of equal leaf values starts at slot `i`.
    leafvec: u64,
    /// Index in `leaves` of this node's first leaf run.
    base0: u32,
    /// Index in `nodes` of this node's first child.
    base1: u32,
}

/// A normalised route: truncated key, length, leaf value.
#[derive(Clone, Copy)]
struct Entry<K> {
    key: K,
    len: u8,
    value: u32,
}

/// Top-level bits [`TopBits::Auto`] gives a large table: its prefixes of
/// /18 and shorter resolve in one read of a 1 MiB array.
pub(crate) const DEFAULT_TOP_BITS: u32 = 18;
/// Top-level bits [`TopBits::Auto`] gives a small table, one whose
/// prefixes touch at most [`SMALL_WINDOW`] slots of a top level this wide
/// (a network's few subnets): a /24 resolves in the top level, where 18
/// bits spend a node on it, one dependent read more per lookup.
pub(crate) const SMALL_TOP_BITS: u32 = 24;
/// The most slots a small table's top window holds (1 KiB).
const SMALL_WINDOW: usize = 256;
/// Slots of the top window kept in the header: a network's subnets, kept
/// beside the fields every lookup reads, cost its lookups no line of their
/// own.
const HEAD: usize = 4;
/// Bounds of the top-level bits [`Poptrie::build`] accepts.
pub(crate) const TOP_BITS_RANGE: core::ops::RangeInclusive<u32> = 1..=24;

/// How [`Poptrie::build`] sizes the top level.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TopBits {
    /// [`SMALL_TOP_BITS`] for a small table, else [`DEFAULT_TOP_BITS`].
    Auto,
    /// These bits, clamped to [`TOP_BITS_RANGE`].
    Fixed(u32),
}

/// An immutable poptrie with a direct-pointing top level of `top_bits`
/// bits (in [`TOP_BITS_RANGE`]), chosen at build time, of which `top`
/// stores the slots `top_lo..top_lo + top.len()`.
///
/// The fields every lookup reads come first, and the record is aligned
/// so that they share one cache line: every network has its own trie, and
/// a burst that mixes networks reads this line once per packet.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
pub(crate) struct Poptrie<K> {
    /// The first [`HEAD`] slots of the window, [`background`](Self::background)
    /// past its end.
    top_head: [u32; HEAD],
    top_bits: u32,
    /// The value of every slot outside `top`: the /0's, or [`NONE`].
    background: u32,
    /// The first top-level slot stored in `top`.
    top_lo: usize,
    nodes: Box<[Node]>,
    leaves: Box<[u32]>,
    top: Box<[u32]>,
    len: usize,
    _key: core::marker::PhantomData<K>,
}

impl<K: Key> Poptrie<K> {
    /// Builds the trie. Values must be below [`NONE`]; routes with a larger
    /// value or a length beyond the key width are skipped (the public
    /// wrappers document this). Later duplicates of a prefix win.
    pub(crate) fn build(routes: impl Iterator<Item = (K, u8, u32)>, top_bits: TopBits) -> Self {
        let mut entries: Vec<Entry<K>> = routes
            .filter(|&(_, len, value)| value < NONE && u32::from(len) <= K::BITS)
            .map(|(key, len, value)| Entry {
                key: key.truncate(len),
                len,
                value,
            })
            .collect();
        // Stable sort: among equal (key, len) the later route stays later.
        // The (key, len) order also puts every prefix before the prefixes it
        // contains, which is what lets one pass paint slots shortest first.
        entries.sort_by_key(|e| (e.key, e.len));
        let mut write = 0;
        for read in 0..entries.len() {
            let e = entries[read];
            let dup_follows = entries
                .get(read + 1)
                .is_some_and(|n| n.key == e.key && n.len == e.len);
            if !dup_follows {
                entries[write] = e;
                write += 1;
            }
        }
        entries.truncate(write);
        // The top level's bits, and the window of its slots that the
        // prefixes other than the /0 touch (see below).
        let (s, slots) = match top_bits {
            TopBits::Auto => {
                let small = window(&entries, SMALL_TOP_BITS);
                if small.len() <= SMALL_WINDOW {
                    (SMALL_TOP_BITS, small)
                } else {
                    (DEFAULT_TOP_BITS, window(&entries, DEFAULT_TOP_BITS))
                }
            }
            TopBits::Fixed(bits) => {
                let s = bits.clamp(*TOP_BITS_RANGE.start(), *TOP_BITS_RANGE.end());
                (s, window(&entries, s))
            }
        };

        let mut builder = Builder {
            nodes: Vec::with_capacity(entries.len() / 2 + 1),
            leaves: Vec::with_capacity(entries.len() * 2 + 1),
        };
        // The top array stores only the window of slots that prefixes other
        // than the /0 touch; every slot outside holds the /0's value. A
        // network's table (a few /24 subnets) then stores a few slots, not
        // a 1 MiB array, and one without routes of a family none.
        let background = match entries.first() {
            Some(e) if e.len == 0 => e.value,
            _ => NONE,
        };
        let lo = slots.start;
        let mut top = vec![background; slots.len()].into_boxed_slice();
        let mut i = 0;
        while i < entries.len() {
            let e = entries[i];
            if e.len == 0 {
                i += 1;
                continue;
            }
            let slot = e.key.top(s) - lo;
            if u32::from(e.len) <= s {
                let span = 1usize << (s - u32::from(e.len));
                if let Some(run) = top.get_mut(slot..slot + span) {
                    run.fill(e.value);
                }
                i += 1;
                continue;
            }
            // All prefixes longer than S under this slot are contiguous, and
            // every shorter prefix covering the slot came before them, so the
            // slot's value is final and is what the subtree inherits.
            let mut j = i + 1;
            while j < entries.len() && entries[j].key.top(s) - lo == slot {
                j += 1;
            }
            let inherited = top[slot];
            let index = builder.nodes.len();
            builder.nodes.push(Node::default());
            let node = builder.node(&entries[i..j], s, inherited);
            builder.nodes[index] = node;
            top[slot] = NODE_FLAG | index as u32;
            i = j;
        }
        let mut top_head = [background; HEAD];
        for (h, t) in top_head.iter_mut().zip(top.iter()) {
            *h = *t;
        }
        Poptrie {
            top_head,
            top,
            top_bits: s,
            top_lo: lo,
            background,
            nodes: builder.nodes.into_boxed_slice(),
            leaves: builder.leaves.into_boxed_slice(),
            len: entries.len(),
            _key: core::marker::PhantomData,
        }
    }

    /// Longest-prefix match; returns the leaf value or [`NONE`].
    #[inline(always)]
    pub(crate) fn lookup(&self, key: K) -> u32 {
        let slot = key.top(self.top_bits).wrapping_sub(self.top_lo);
        let t = match self.top_head.get(slot) {
            Some(&t) => t,
            None => match self.top.get(slot) {
                Some(&t) => t,
                None => return self.background,
            },
        };
        if t & NODE_FLAG == 0 {
            return t;
        }
        let mut node = match self.nodes.get((t & !NODE_FLAG) as usize) {
            Some(n) => n,
            None => return NONE,
        };
        let mut off = self.top_bits;
        loop {
            // A full node (every slot internal) is the only ordinary node
            // without leaves, and its vector is all ones: so `leafvec == 0`
            // with a level count below 15 marks a skip node.
            if node.leafvec == 0 && node.vector >> SKIP_SHIFT != 0xF {
                let bits = (node.vector >> SKIP_SHIFT) as u32 * STRIDE;
                if key.bits64(off, bits) != node.vector & SKIP_MASK {
                    return node.base0;
                }
                node = match self.nodes.get(node.base1 as usize) {
                    Some(n) => n,
                    None => return NONE,
                };
                off += bits;
                continue;
            }
            let slot = key.bits(off, STRIDE);
            // Shifting left by 63 - slot keeps exactly bits 0..=slot.
            let keep = 63 - slot;
            if (node.vector >> slot) & 1 != 0 {
                let child = node.base1 + (node.vector << keep).count_ones() - 1;
                node = match self.nodes.get(child as usize) {
                    Some(n) => n,
                    None => return NONE,
                };
                off += STRIDE;
            } else {
                let leaf = node.base0 + (node.leafvec << keep).count_ones() - 1;
                return self.leaves.get(leaf as usize).copied().unwrap_or(NONE);
            }
        }
    }

    /// Number of distinct prefixes stored.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Heap and inline bytes of the structure.
    pub(crate) fn memory_bytes(&self) -> usize {
        core::mem::size_of::<Self>()
            + self.top.len() * core::mem::size_of::<u32>()
            + self.nodes.len() * core::mem::size_of::<Node>()
            + self.leaves.len() * core::mem::size_of::<u32>()
    }

    /// Key bits that index the top level.
    pub(crate) fn top_bits(&self) -> u32 {
        self.top_bits
    }

    /// Number of 64-way nodes (for the module documentation's figures).
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

/// The top-level slots, at `bits` bits, that the prefixes other than the
/// /0 touch: from the first one's slot to past the last one's span. Empty
/// when there are none.
fn window<K: Key>(entries: &[Entry<K>], bits: u32) -> core::ops::Range<usize> {
    let mut lo = usize::MAX;
    let mut hi = 0;
    for e in entries.iter().filter(|e| e.len > 0) {
        let slot = e.key.top(bits);
        lo = lo.min(slot);
        hi = hi.max(slot + (1usize << bits.saturating_sub(u32::from(e.len))));
    }
    lo.min(hi)..hi
}

/// Growing node and leaf arrays during a build.
struct Builder {
    nodes: Vec<Node>,
    leaves: Vec<u32>,
}

impl Builder {
    /// Builds the node at depth `depth` for `entries`: sorted, all inside the
    /// node's block, and containing every prefix longer than `depth` there
    /// (prefixes of length `<= depth` may appear and are skipped: they were
    /// painted one level up). `inherited` is the value of the longest prefix
    /// of length `<= depth` covering the block.
    ///
    /// A run of two or more levels that each have a single child and no
    /// value other than `inherited` (the typical path to a lone IPv6 /48)
    /// becomes one skip node: the expected key bits and the node below them.
    fn node<K: Key>(&mut self, entries: &[Entry<K>], depth: u32, inherited: u32) -> Node {
        let first = Slots::analyse(entries, depth, inherited);
        if first.is_pass_through(inherited) {
            let mut cur = first;
            let mut below = entries;
            let mut at = depth;
            let mut expected = 0u64;
            let mut levels = 0;
            while levels < MAX_SKIP_LEVELS && cur.is_pass_through(inherited) {
                let slot = cur.vector.trailing_zeros() as usize;
                expected = (expected << STRIDE) | slot as u64;
                levels += 1;
                below = &below[cur.start[slot]..cur.end[slot]];
                at += STRIDE;
                cur = Slots::analyse(below, at, inherited);
            }
            if levels >= 2 {
                let index = self.nodes.len();
                self.nodes.push(Node::default());
                let target = self.materialize(&cur, below, at);
                self.nodes[index] = target;
                return Node {
                    vector: expected | u64::from(levels) << SKIP_SHIFT,
                    leafvec: 0,
                    base0: inherited,
                    base1: index as u32,
                };
            }
        }
        self.materialize(&first, entries, depth)
    }

    /// Emits an ordinary node from its slot analysis: leaf runs appended to
    /// `leaves`, children appended to `nodes` as one contiguous block, then
    /// built depth first.
    fn materialize<K: Key>(&mut self, slots: &Slots, entries: &[Entry<K>], depth: u32) -> Node {
        let vector = slots.vector;
        let base0 = self.leaves.len() as u32;
        let mut leafvec = 0u64;
        let mut previous = None;
        for (slot, &v) in slots.value.iter().enumerate() {
            if vector & (1u64 << slot) != 0 {
                continue;
            }
            if previous != Some(v) {
                leafvec |= 1u64 << slot;
                self.leaves.push(v);
                previous = Some(v);
            }
        }

        let base1 = self.nodes.len();
        self.nodes
            .resize(base1 + vector.count_ones() as usize, Node::default());
        let mut child = base1;
        for slot in 0..64 {
            if vector & (1u64 << slot) == 0 {
                continue;
            }
            let range = slots.start[slot]..slots.end[slot];
            let node = self.node(&entries[range], depth + STRIDE, slots.value[slot]);
            self.nodes[child] = node;
            child += 1;
        }
        Node {
            vector,
            leafvec,
            base0,
            base1: base1 as u32,
        }
    }
}

/// The 64 slots of a node under construction.
#[derive(Clone, Copy)]
struct Slots {
    /// Value of the longest prefix covering each whole slot.
    value: [u32; 64],
    /// Bit `i`: a prefix longer than the node's reach lies under slot `i`.
    vector: u64,
    /// The range of `entries` under each internal slot.
    start: [usize; 64],
    end: [usize; 64],
}

impl Slots {
    fn analyse<K: Key>(entries: &[Entry<K>], depth: u32, inherited: u32) -> Slots {
        let mut slots = Slots {
            value: [inherited; 64],
            vector: 0,
            start: [0; 64],
            end: [0; 64],
        };
        let limit = depth + STRIDE;
        for (k, e) in entries.iter().enumerate() {
            let len = u32::from(e.len);
            if len <= depth {
                continue;
            }
            let slot = e.key.bits(depth, STRIDE) as usize;
            if len <= limit {
                // Sorted order paints containing prefixes before contained
                // ones, so longer prefixes overwrite shorter ones.
                let span = 1usize << (limit - len);
                if let Some(run) = slots.value.get_mut(slot..slot + span) {
                    run.fill(e.value);
                }
            } else {
                if slots.vector & (1u64 << slot) == 0 {
                    slots.vector |= 1u64 << slot;
                    slots.start[slot] = k;
                }
                slots.end[slot] = k + 1;
            }
        }
        slots
    }

    /// One child, and every slot (the child's included) holds `inherited`.
    fn is_pass_through(&self, inherited: u32) -> bool {
        self.vector.count_ones() == 1 && self.value.iter().all(|&v| v == inherited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(routes: &[(u32, u8, u32)], key: u32) -> u32 {
        let mut best: Option<(u8, u32)> = None;
        for &(k, len, v) in routes {
            if key.truncate(len) == k.truncate(len) && best.is_none_or(|(l, _)| len >= l) {
                best = Some((len, v));
            }
        }
        best.map_or(NONE, |(_, v)| v)
    }

    #[test]
    fn bits_extracts_and_pads() {
        assert_eq!(0xABCD_1234u32.bits(0, 16), 0xABCD);
        assert_eq!(0xABCD_1234u32.bits(28, 6), 0x4 << 2);
        assert_eq!(0xFFFF_FFFFu32.bits(30, 6), 0b11_0000);
        assert_eq!((1u128 << 127).bits(0, 18), 1 << 17);
        assert_eq!(u128::MAX.bits(124, 6), 0b11_1100);
    }

    #[test]
    fn an_empty_trie_finds_nothing_and_holds_no_top_array() {
        let t: Poptrie<u32> = Poptrie::build(core::iter::empty(), TopBits::Auto);
        for key in [0u32, 0x0A00_0001, u32::MAX] {
            assert_eq!(t.lookup(key), NONE);
        }
        assert!(t.memory_bytes() < 1024, "{}", t.memory_bytes());
        let t: Poptrie<u128> = Poptrie::build(core::iter::empty(), TopBits::Fixed(18));
        assert_eq!(t.lookup(u128::MAX), NONE);
        assert!(t.memory_bytes() < 1024);
    }

    #[test]
    fn deep_host_routes_and_nesting() {
        let routes = [
            (0u32, 0u8, 1u32),
            (0x0A00_0000, 8, 2),
            (0x0A01_0200, 24, 3),
            (0x0A01_0280, 25, 4),
            (0x0A01_02FF, 32, 5),
            (0x0A01_02FE, 31, 6),
            (0xFFFF_FFFF, 32, 7),
        ];
        for bits in [1, 8, 18, 24] {
            let t: Poptrie<u32> = Poptrie::build(routes.iter().copied(), TopBits::Fixed(bits));
            for key in [
                0u32,
                0x0A00_0001,
                0x0A01_0201,
                0x0A01_0281,
                0x0A01_02FE,
                0x0A01_02FF,
                0xFFFF_FFFE,
                0xFFFF_FFFF,
            ] {
                assert_eq!(t.lookup(key), reference(&routes, key), "{bits}: {key:#x}");
            }
        }
    }

    #[test]
    fn the_top_array_stores_the_window_the_prefixes_touch() {
        // A network's table: subnets and hosts in three /24s, a default.
        let routes = [
            (0u32, 0u8, 9u32),
            (0xC613_0100, 24, 1),
            (0xC613_0200, 24, 2),
            (0xC613_010A, 32, 3),
            (0xC613_03FF, 32, 4),
        ];
        let t: Poptrie<u32> = Poptrie::build(routes.iter().copied(), TopBits::Auto);
        // Three /24 slots: a small table's top level is 24 bits, and its
        // window sits in the header.
        assert_eq!(t.top_bits(), SMALL_TOP_BITS);
        assert_eq!(t.top.len(), 3);
        assert_eq!(t.top_head[3], 9, "past the window: the /0's value");
        assert!(t.memory_bytes() < 1024, "{}", t.memory_bytes());
        for key in [
            0,
            0xC612_FFFF,
            0xC613_0100,
            0xC613_010A,
            0xC613_03FF,
            0xC613_4000,
            u32::MAX,
        ] {
            assert_eq!(t.lookup(key), reference(&routes, key), "{key:#x}");
        }
        // Without a default, outside the window is no route; a short prefix
        // widens the window to its span.
        let routes = [(0x0A00_0000u32, 8u8, 1u32), (0xC613_0100, 24, 2)];
        let t: Poptrie<u32> = Poptrie::build(routes.iter().copied(), TopBits::Auto);
        assert_eq!(t.top_bits(), DEFAULT_TOP_BITS);
        assert_eq!(
            t.top.len(),
            (0xC613_0100usize >> 14) - (0x0A00_0000 >> 14) + 1
        );
        for key in [
            0,
            0x09FF_FFFF,
            0x0A00_0000,
            0x0AFF_FFFF,
            0x0B00_0000,
            0xC613_0101,
            u32::MAX,
        ] {
            assert_eq!(t.lookup(key), reference(&routes, key), "{key:#x}");
        }
        let t: Poptrie<u32> = Poptrie::build([(0, 0, 1)].into_iter(), TopBits::Fixed(99));
        assert_eq!(t.top_bits(), *TOP_BITS_RANGE.end());
        assert!(t.top.is_empty());
        assert_eq!(t.lookup(u32::MAX), 1);
        let t: Poptrie<u32> = Poptrie::build([(0, 0, 1)].into_iter(), TopBits::Fixed(0));
        assert_eq!(t.top_bits(), *TOP_BITS_RANGE.start());
        assert_eq!(t.lookup(u32::MAX), 1);
    }

    #[test]
    fn skip_nodes_check_every_skipped_bit() {
        let host = 0x2001_0db8_0000_0001_0000_0000_0000_0001u128;
        let routes = [
            (0u128, 0u8, 1u32),
            (host, 128, 2),
            (host, 64, 3),
            (0x2001_0db8u128 << 96, 32, 4),
        ];
        let reference = |key: u128| {
            routes
                .iter()
                .filter(|&&(k, len, _)| key.truncate(len) == k.truncate(len))
                .max_by_key(|&&(_, len, _)| len)
                .map_or(NONE, |&(_, _, v)| v)
        };
        for bits in [1, 8, 18, 24] {
            let t: Poptrie<u128> = Poptrie::build(routes.iter().copied(), TopBits::Fixed(bits));
            // The /32 -> /64 -> /128 paths collapse into skip nodes.
            assert!(t.node_count() < 10, "{bits}: {} nodes", t.node_count());
            for bit in 0..128 {
                let key = host ^ (1u128 << bit);
                assert_eq!(t.lookup(key), reference(key), "{bits}: bit {bit}");
            }
            assert_eq!(t.lookup(host), 2);
        }
    }
}
