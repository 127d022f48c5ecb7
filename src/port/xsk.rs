//! AF_XDP sockets without a library: the UMEM in a memfd, the four rings,
//! socket set-up, bind, and adoption of a socket another process set up.
//!
//! Layer: I/O corner; all the unsafe code of AF_XDP is here, each block with
//! a `// SAFETY:` line. [`super::afxdp`] builds the [`Port`](super::Port) on
//! the safe [`Xsk`] this module exports.
//!
//! Invariants:
//! - Frame ownership: every UMEM frame is in exactly one place: our free
//!   list, the kernel's rx side (`kernel_rx`: put on the fill ring and not
//!   yet back from the rx ring) or the kernel's tx side (`kernel_tx`: put on
//!   the tx ring and not yet back from the completion ring), so
//!   `free + kernel_rx + kernel_tx == frame_count` between calls. [`Xsk`]
//!   reads or writes a frame's bytes only while the frame is off every ring
//!   (popped from the free list for tx, just taken off the rx ring for rx),
//!   which is what makes the safe API sound. A descriptor the kernel hands
//!   back that names no frame, a frame already on our free list, or more
//!   frames than the kernel holds, is not trusted: it is counted
//!   ([`Xsk::bad_descs`]) and skipped, so the invariant survives it.
//! - Rings: single producer, single consumer, shared with the kernel. As in
//!   the kernel's own `xsk.h`, a producer reads the consumer word with
//!   Acquire (the kernel has finished with the slots it released) and
//!   publishes its producer word with Release (the slots, and the UMEM bytes
//!   they point at, are written before the kernel can see them); a consumer
//!   does the mirror image. Indices are free-running u32 counters; a slot is
//!   `index & (size - 1)`, so wrap-around needs nothing special.
//! - Every index this side keeps (`cached_*`) is derived from the shared
//!   words, never from our own history alone, so a second process that maps
//!   the same rings ([`Xsk::adopt`]) carries on exactly where the first one
//!   stopped, provided the first one no longer touches them.
//! - The UMEM is a memfd, mapped `MAP_SHARED`: another process that gets
//!   the memfd maps the very pages the kernel pinned when the UMEM was
//!   registered. Every descriptor this module creates is close-on-exec.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::sys::{self, cvt};

/// Headroom the kernel reserves at the start of each UMEM frame for the XDP
/// program (`XDP_PACKET_HEADROOM`); received data starts after it, and we
/// write transmitted data at the same offset.
pub const XDP_PACKET_HEADROOM: u32 = 256;

/// Largest ring this module sets up (entries): well above any sensible
/// configuration, and keeps every size product far from overflow.
pub const MAX_RING_SIZE: u32 = 1 << 16;

/// Largest UMEM this module sets up or adopts (frames).
pub const MAX_FRAME_COUNT: u32 = 1 << 20;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

/// The sizes of one socket's UMEM and rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// UMEM frames in total.
    pub frame_count: u32,
    /// Bytes per frame (the UMEM chunk size): 2048 or 4096.
    pub frame_size: u32,
    /// Entries of each of the four rings: a power of two below
    /// `frame_count`.
    pub ring_size: u32,
}

impl Sizes {
    /// Checks the sizes: `InvalidInput` naming the first bad one.
    pub fn check(&self) -> io::Result<()> {
        if !self.frame_size.is_power_of_two() || !(2048..=4096).contains(&self.frame_size) {
            return Err(invalid(format!(
                "frame_size {} must be 2048 or 4096",
                self.frame_size
            )));
        }
        if !self.ring_size.is_power_of_two() || self.ring_size > MAX_RING_SIZE {
            return Err(invalid(format!(
                "ring_size {} must be a power of two up to {MAX_RING_SIZE}",
                self.ring_size
            )));
        }
        if self.frame_count <= self.ring_size {
            return Err(invalid(format!(
                "frame_count {} must exceed ring_size {} (the fill ring takes ring_size frames)",
                self.frame_count, self.ring_size
            )));
        }
        if self.frame_count > MAX_FRAME_COUNT {
            return Err(invalid(format!(
                "frame_count {} is above {MAX_FRAME_COUNT}",
                self.frame_count
            )));
        }
        Ok(())
    }

    /// Bytes of the UMEM (cannot overflow after [`Sizes::check`]).
    pub fn umem_len(&self) -> usize {
        self.frame_count as usize * self.frame_size as usize
    }
}

/// A shared mapping, unmapped when dropped.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Mapping is a plain address range owned by whoever holds it; no
// thread-affine state is attached to it.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` at `offset`, shared, read-write.
    fn new(fd: BorrowedFd<'_>, len: usize, offset: i64, populate: bool) -> io::Result<Mapping> {
        let flags = libc::MAP_SHARED | if populate { libc::MAP_POPULATE } else { 0 };
        // SAFETY: a fresh mapping chosen by the kernel (null hint) overlaps
        // no memory of ours; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave 0"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by Mapping::new and nothing derived
        // from it outlives the Mapping (its owners drop their pointers with
        // it).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A UMEM: `frame_count` frames of `frame_size` bytes in a memfd, mapped.
#[derive(Debug)]
pub struct Umem {
    memfd: OwnedFd,
    map: Mapping,
    sizes: Sizes,
}

impl Umem {
    /// Makes a memfd of the UMEM's size and maps it, populated (the bulk of
    /// a socket's set-up: the pages are allocated here).
    fn create(sizes: Sizes) -> io::Result<Umem> {
        sizes.check()?;
        // SAFETY: the name is a valid NUL-terminated string; the result is
        // a fresh descriptor, owned right below.
        let fd = cvt(unsafe { libc::memfd_create(c"vxr-umem".as_ptr(), libc::MFD_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let len = sizes.umem_len();
        // SAFETY: ftruncate takes plain integers.
        cvt(unsafe { libc::ftruncate(memfd.as_raw_fd(), len as libc::off_t) })?;
        let map = Mapping::new(memfd.as_fd(), len, 0, true)?;
        Ok(Umem { memfd, map, sizes })
    }

    /// Maps the UMEM memfd another process made, after checking it is a
    /// regular file of exactly `sizes.umem_len()` bytes.
    fn open(memfd: OwnedFd, sizes: Sizes) -> io::Result<Umem> {
        sizes.check()?;
        // SAFETY: stat is plain old data; all zeros is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a valid, exclusively borrowed stat for the call.
        cvt(unsafe { libc::fstat(memfd.as_raw_fd(), &mut st) })
            .map_err(|e| invalid(format!("UMEM descriptor: {e}")))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(invalid("the UMEM descriptor is not a memfd"));
        }
        let len = sizes.umem_len();
        if st.st_size as u64 != len as u64 {
            return Err(invalid(format!(
                "the UMEM memfd has {} bytes, not frame_count*frame_size = {len}",
                st.st_size
            )));
        }
        let map = Mapping::new(memfd.as_fd(), len, 0, true)?;
        Ok(Umem { memfd, map, sizes })
    }

    /// Registers the UMEM with socket `sock` (`XDP_UMEM_REG`, aligned
    /// chunks of `frame_size`, no extra headroom).
    fn register(&self, sock: BorrowedFd<'_>) -> io::Result<()> {
        let reg = libc::xdp_umem_reg {
            addr: self.map.ptr.as_ptr() as u64,
            len: self.map.len as u64,
            chunk_size: self.sizes.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(sock, libc::XDP_UMEM_REG, &reg)
    }

    /// The base address of frame `index` (checked by the callers).
    #[inline]
    fn frame_ptr(&self, index: u32) -> *mut u8 {
        debug_assert!(index < self.sizes.frame_count);
        // SAFETY: index < frame_count, so the offset stays inside the mapping.
        unsafe {
            self.map
                .ptr
                .as_ptr()
                .add(index as usize * self.sizes.frame_size as usize)
        }
    }
}

/// Sets socket option `opt` of level SOL_XDP to `v`.
fn setsockopt<T>(sock: BorrowedFd<'_>, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a valid T that outlives the call and its size is
    // passed alongside; the kernel only reads it.
    cvt(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Reads socket option `opt` of `level` into a zeroed T; returns it with
/// the length the kernel wrote.
fn getsockopt<T: Copy>(
    sock: BorrowedFd<'_>,
    level: libc::c_int,
    opt: libc::c_int,
) -> io::Result<(T, usize)> {
    // SAFETY: only used with the plain-old-data structs and integers of
    // linux/if_xdp.h and SOL_SOCKET, for which all zeros is a valid value.
    let mut v: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`, which is
    // exclusively borrowed for the call.
    cvt(unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            (&mut v as *mut T).cast(),
            &mut len,
        )
    })?;
    Ok((v, len as usize))
}

/// The entry types of the rings: u64 UMEM addresses (fill, completion) and
/// `xdp_desc` (rx, tx).
trait Entry: Copy {}
impl Entry for u64 {}
impl Entry for libc::xdp_desc {}

/// The memory of one ring: its shared producer, consumer and flags words
/// and its slots. `map` is `None` only for the in-memory rings of the unit
/// tests, which own the words through `_test_mem`.
struct RingMem<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    slots: NonNull<T>,
    size: u32,
    mask: u32,
    _map: Option<Mapping>,
    #[cfg(test)]
    _test_mem: Option<Box<[u64]>>,
}

// SAFETY: the pointers point into `_map` (or the test buffer), which moves
// with the RingMem; the ring protocol with the kernel does not depend on
// which thread runs it.
unsafe impl<T> Send for RingMem<T> {}

impl<T: Entry> RingMem<T> {
    /// Maps ring `pgoff` of socket `sock`, `size` entries, laid out as
    /// `off` says.
    fn map(
        sock: BorrowedFd<'_>,
        pgoff: i64,
        off: &libc::xdp_ring_offset,
        size: u32,
        populate: bool,
    ) -> io::Result<RingMem<T>> {
        let len = ring_len::<T>(off, size)?;
        let map = Mapping::new(sock, len, pgoff, populate)?;
        let base = map.ptr.as_ptr();
        // SAFETY: ring_len checked that each offset, plus the size of what
        // is there, lies inside the `len` bytes just mapped, and that the
        // words and slots are aligned for their types.
        unsafe {
            Ok(RingMem {
                producer: NonNull::new_unchecked(base.add(off.producer as usize).cast()),
                consumer: NonNull::new_unchecked(base.add(off.consumer as usize).cast()),
                flags: NonNull::new_unchecked(base.add(off.flags as usize).cast()),
                slots: NonNull::new_unchecked(base.add(off.desc as usize).cast()),
                size,
                mask: size - 1,
                _map: Some(map),
                #[cfg(test)]
                _test_mem: None,
            })
        }
    }

    #[inline]
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: the word lies in the mapping this RingMem owns, aligned
        // (checked in ring_len), and is only ever accessed atomically.
        unsafe { self.producer.as_ref() }
    }

    #[inline]
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for producer().
        unsafe { self.consumer.as_ref() }
    }

    #[inline]
    fn flags(&self) -> u32 {
        // SAFETY: as for producer().
        unsafe { self.flags.as_ref() }.load(Ordering::Relaxed)
    }

    /// Reads the slot of free-running index `idx`.
    #[inline]
    fn read(&self, idx: u32) -> T {
        // SAFETY: `idx & mask` < size, so the slot lies in the mapping;
        // the callers read only slots the protocol gives them (between the
        // consumer and producer indices), which the other side does not
        // write meanwhile.
        unsafe { self.slots.as_ptr().add((idx & self.mask) as usize).read() }
    }

    /// Writes the slot of free-running index `idx`.
    #[inline]
    fn write(&self, idx: u32, v: T) {
        // SAFETY: `idx & mask` < size, so the slot lies in the mapping; the
        // callers write only slots the protocol gives the producer (between
        // its producer index and the consumer index plus size), which the
        // other side does not read until the producer word is published.
        unsafe { self.slots.as_ptr().add((idx & self.mask) as usize).write(v) }
    }
}

/// Bytes of a ring of `size` entries laid out as `off` says, after
/// checking that the three words and the slots fit and are aligned.
fn ring_len<T>(off: &libc::xdp_ring_offset, size: u32) -> io::Result<usize> {
    let slots = off
        .desc
        .checked_add(u64::from(size) * std::mem::size_of::<T>() as u64)
        .ok_or_else(|| io::Error::other("ring offsets overflow"))?;
    let words_fit = [off.producer, off.consumer, off.flags]
        .iter()
        .all(|&o| o % 4 == 0 && o + 4 <= slots);
    if !words_fit || off.desc % std::mem::align_of::<T>() as u64 != 0 || slots > 1 << 32 {
        return Err(io::Error::other(format!(
            "the kernel's ring layout makes no sense: {:?}",
            (off.producer, off.consumer, off.flags, off.desc)
        )));
    }
    Ok(slots as usize)
}

/// Our side of a ring we produce into (fill, tx).
struct ProdRing<T> {
    mem: RingMem<T>,
    /// Our producer index: the next slot to write. Equal to the shared
    /// producer word between calls (we publish everything we write).
    cached_prod: u32,
    /// The consumer index last read, plus size: `cached_cons - cached_prod`
    /// slots are known free without reading the shared word.
    cached_cons: u32,
}

impl<T: Entry> ProdRing<T> {
    /// Carries on from the shared words (fresh rings start at 0).
    fn new(mem: RingMem<T>) -> ProdRing<T> {
        // Relaxed: nobody else produces into this ring.
        let cached_prod = mem.producer().load(Ordering::Relaxed);
        // Acquire: the kernel has finished with the slots it released.
        let cached_cons = mem
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(mem.size);
        ProdRing {
            mem,
            cached_prod,
            cached_cons,
        }
    }

    /// Free slots, at least `want` if there are that many: reads the shared
    /// consumer word only when the cached view has fewer than `want`.
    #[inline]
    fn free(&mut self, want: u32) -> u32 {
        let free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free >= want {
            return free;
        }
        // Acquire: the kernel has finished reading the slots it released,
        // so we may overwrite them.
        self.cached_cons = self
            .mem
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(self.mem.size);
        // A consumer ahead of our producer is a kernel bug; never claim more
        // than the ring holds.
        self.cached_cons
            .wrapping_sub(self.cached_prod)
            .min(self.mem.size)
    }

    /// Writes slot `i` past the producer index (i < what `free` returned).
    #[inline]
    fn set(&self, i: u32, v: T) {
        self.mem.write(self.cached_prod.wrapping_add(i), v);
    }

    /// Publishes the first `n` slots written with `set`.
    #[inline]
    fn submit(&mut self, n: u32) {
        self.cached_prod = self.cached_prod.wrapping_add(n);
        // Release: the slots (and the UMEM bytes they name) are written
        // before the kernel can see the new producer index.
        self.mem
            .producer()
            .store(self.cached_prod, Ordering::Release);
    }

    /// Entries the kernel has not consumed yet.
    #[inline]
    fn pending(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.mem.consumer().load(Ordering::Acquire))
            .min(self.mem.size)
    }

    #[inline]
    fn wakeup_flag(&self) -> bool {
        self.mem.flags() & libc::XDP_RING_NEED_WAKEUP != 0
    }
}

/// Our side of a ring we consume from (rx, completion).
struct ConsRing<T> {
    mem: RingMem<T>,
    /// The producer index last read.
    cached_prod: u32,
    /// Our consumer index: the next slot to read. Equal to the shared
    /// consumer word between calls (we release everything we read).
    cached_cons: u32,
}

impl<T: Entry> ConsRing<T> {
    /// Carries on from the shared words (fresh rings start at 0).
    fn new(mem: RingMem<T>) -> ConsRing<T> {
        // Relaxed: nobody else consumes from this ring.
        let cached_cons = mem.consumer().load(Ordering::Relaxed);
        // Acquire: the slots up to the producer index are written.
        let cached_prod = mem.producer().load(Ordering::Acquire);
        ConsRing {
            mem,
            cached_prod,
            cached_cons,
        }
    }

    /// Entries ready to read, at most `max`: reads the shared producer word
    /// only when the cached view is empty.
    #[inline]
    fn peek(&mut self, max: u32) -> u32 {
        let mut avail = self.cached_prod.wrapping_sub(self.cached_cons);
        if avail == 0 {
            // Acquire: the slots up to the producer index, and the UMEM
            // bytes they name, are written.
            self.cached_prod = self.mem.producer().load(Ordering::Acquire);
            avail = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        // More than the ring holds is a kernel bug; never read past a lap.
        avail.min(self.mem.size).min(max)
    }

    /// Reads entry `i` past the consumer index (i < what `peek` returned).
    #[inline]
    fn get(&self, i: u32) -> T {
        self.mem.read(self.cached_cons.wrapping_add(i))
    }

    /// Gives the first `n` peeked slots back to the kernel.
    #[inline]
    fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        // Release: our reads of the slots (and of the UMEM bytes) are done
        // before the kernel may reuse them.
        self.mem
            .consumer()
            .store(self.cached_cons, Ordering::Release);
    }

    /// Entries published and not yet released, from the shared words.
    fn available(&self) -> u32 {
        self.mem
            .producer()
            .load(Ordering::Acquire)
            .wrapping_sub(self.cached_cons)
    }
}

/// The four rings of one socket, mapped.
struct Rings {
    fill: RingMem<u64>,
    comp: RingMem<u64>,
    rx: RingMem<libc::xdp_desc>,
    tx: RingMem<libc::xdp_desc>,
}

/// The socket's ring layout (`XDP_MMAP_OFFSETS`, with the flags words).
fn mmap_offsets(sock: BorrowedFd<'_>) -> io::Result<libc::xdp_mmap_offsets> {
    let (off, len) =
        getsockopt::<libc::xdp_mmap_offsets>(sock, libc::SOL_XDP, libc::XDP_MMAP_OFFSETS)?;
    if len != std::mem::size_of::<libc::xdp_mmap_offsets>() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel's AF_XDP rings have no flags word (need_wakeup needs Linux 5.4)",
        ));
    }
    Ok(off)
}

impl Rings {
    /// Maps the four rings of `sock`, each of `size` entries.
    fn map(sock: BorrowedFd<'_>, size: u32) -> io::Result<Rings> {
        let off = mmap_offsets(sock)?;
        Ok(Rings {
            fill: RingMem::map(
                sock,
                libc::XDP_UMEM_PGOFF_FILL_RING as i64,
                &off.fr,
                size,
                true,
            )?,
            comp: RingMem::map(
                sock,
                libc::XDP_UMEM_PGOFF_COMPLETION_RING as i64,
                &off.cr,
                size,
                true,
            )?,
            rx: RingMem::map(sock, libc::XDP_PGOFF_RX_RING, &off.rx, size, true)?,
            tx: RingMem::map(sock, libc::XDP_PGOFF_TX_RING, &off.tx, size, true)?,
        })
    }

    /// Maps the four rings of a socket someone else set up, checking that
    /// each exists and has `size` entries (as far as mmap tells: a ring is
    /// refused when it is smaller than that; it is larger when twice the
    /// entries would take more pages and still map).
    fn map_existing(sock: BorrowedFd<'_>, size: u32) -> io::Result<Rings> {
        let off = mmap_offsets(sock)?;
        fn one<T: Entry>(
            sock: BorrowedFd<'_>,
            pgoff: i64,
            off: &libc::xdp_ring_offset,
            size: u32,
            name: &str,
        ) -> io::Result<RingMem<T>> {
            let mem = RingMem::<T>::map(sock, pgoff, off, size, false).map_err(|e| {
                invalid(format!(
                    "the socket has no {name} ring of {size} entries: {e}"
                ))
            })?;
            let page = page_size();
            let pages = |n: u32| ring_len::<T>(off, n).map(|l| l.div_ceil(page));
            if pages(size * 2)? > pages(size)?
                && Mapping::new(sock, ring_len::<T>(off, size * 2)?, pgoff, false).is_ok()
            {
                return Err(invalid(format!(
                    "the socket's {name} ring has more than {size} entries"
                )));
            }
            Ok(mem)
        }
        Ok(Rings {
            fill: one(
                sock,
                libc::XDP_UMEM_PGOFF_FILL_RING as i64,
                &off.fr,
                size,
                "fill",
            )?,
            comp: one(
                sock,
                libc::XDP_UMEM_PGOFF_COMPLETION_RING as i64,
                &off.cr,
                size,
                "completion",
            )?,
            rx: one(sock, libc::XDP_PGOFF_RX_RING, &off.rx, size, "rx")?,
            tx: one(sock, libc::XDP_PGOFF_TX_RING, &off.tx, size, "tx")?,
        })
    }
}

/// Whether this kernel lets a process map the rings of AF_XDP socket
/// `sock`, already bound, at `size` entries each, as [`Xsk::adopt`] does
/// (mapping the fill and completion rings of a bound socket needs Linux
/// 6.4). The mappings are dropped at once; nothing shared is written.
pub fn rings_mappable(sock: BorrowedFd<'_>, size: u32) -> io::Result<()> {
    Rings::map_existing(sock, size).map(drop)
}

fn page_size() -> usize {
    // SAFETY: sysconf takes and returns plain integers.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// A socket with a UMEM registered and its four rings sized and mapped,
/// never bound: everything of a socket but the bind, which takes well under
/// a millisecond against about 10 ms for this part (mostly populating the
/// UMEM).
pub struct Unbound {
    sock: OwnedFd,
    umem: Umem,
    rings: Rings,
}

impl std::fmt::Debug for Unbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unbound")
            .field("sock", &self.sock)
            .field("sizes", &self.umem.sizes)
            .finish()
    }
}

/// How to bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindOpts {
    /// Interface index (in the socket's network namespace).
    pub ifindex: u32,
    /// Queue of that interface.
    pub queue_id: u32,
    /// XDP_ZEROCOPY rather than XDP_COPY.
    pub zero_copy: bool,
    /// XDP_USE_NEED_WAKEUP.
    pub need_wakeup: bool,
}

impl Unbound {
    /// Makes a UMEM of `sizes` and a socket for it (in the calling thread's
    /// network namespace).
    pub fn new(sizes: Sizes) -> io::Result<Unbound> {
        Unbound::on(Umem::create(sizes)?)
    }

    /// A fresh socket on `umem`'s memory (registered anew).
    fn on(umem: Umem) -> io::Result<Unbound> {
        // SAFETY: plain socket creation; the descriptor is owned right below.
        let fd =
            cvt(unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        umem.register(sock.as_fd())?;
        let size = umem.sizes.ring_size as libc::c_int;
        for opt in [
            libc::XDP_UMEM_FILL_RING,
            libc::XDP_UMEM_COMPLETION_RING,
            libc::XDP_RX_RING,
            libc::XDP_TX_RING,
        ] {
            sys::setsockopt_int(sock.as_raw_fd(), libc::SOL_XDP, opt, size)?;
        }
        let rings = Rings::map(sock.as_fd(), umem.sizes.ring_size)?;
        Ok(Unbound { sock, umem, rings })
    }

    /// The sizes of the UMEM and rings.
    pub fn sizes(&self) -> Sizes {
        self.umem.sizes
    }

    /// Binds the socket. On failure the socket is closed and the UMEM's
    /// memory comes back, for a fresh socket on it ([`Unbound::retry`]): a
    /// socket whose bind failed is not bound again.
    pub fn bind(self, opts: BindOpts) -> Result<Xsk, (io::Error, Umem)> {
        let Unbound { sock, umem, rings } = self;
        let mut flags = if opts.zero_copy {
            libc::XDP_ZEROCOPY
        } else {
            libc::XDP_COPY
        };
        if opts.need_wakeup {
            flags |= libc::XDP_USE_NEED_WAKEUP;
        }
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: opts.ifindex,
            sxdp_queue_id: opts.queue_id,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `sa` is a valid sockaddr_xdp whose size is passed
        // alongside; the kernel only reads it.
        let r = cvt(unsafe {
            libc::bind(
                sock.as_raw_fd(),
                (&sa as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        });
        if let Err(e) = r {
            drop(rings);
            drop(sock);
            return Err((e, umem));
        }
        let frames = umem.sizes.frame_count;
        Ok(Xsk::new(sock, umem, rings, opts, &[(0, frames)], (0, 0)))
    }

    /// A fresh socket on the memory of a UMEM whose bind failed.
    pub fn retry(umem: Umem) -> io::Result<Unbound> {
        Unbound::on(umem)
    }
}

/// The frames on our free list, as a bitmap beside the stack: a frame
/// coming back from a ring must not be free already.
#[derive(Debug, Clone)]
struct FreeList {
    stack: Vec<u32>,
    bits: Vec<u64>,
}

impl FreeList {
    fn new(frame_count: u32) -> FreeList {
        FreeList {
            stack: Vec::with_capacity(frame_count as usize),
            bits: vec![0; (frame_count as usize).div_ceil(64)],
        }
    }

    #[inline]
    fn contains(&self, f: u32) -> bool {
        self.bits[(f / 64) as usize] & (1 << (f % 64)) != 0
    }

    /// Puts `f` (< frame_count) on the list; false if it is there already.
    #[inline]
    fn push(&mut self, f: u32) -> bool {
        let w = &mut self.bits[(f / 64) as usize];
        let b = 1u64 << (f % 64);
        if *w & b != 0 {
            return false;
        }
        *w |= b;
        self.stack.push(f);
        true
    }

    #[inline]
    fn pop(&mut self) -> Option<u32> {
        let f = self.stack.pop()?;
        self.bits[(f / 64) as usize] &= !(1 << (f % 64));
        Some(f)
    }

    fn len(&self) -> u32 {
        self.stack.len() as u32
    }

    /// The free frames as runs (first, count), ascending.
    fn runs(&self) -> Vec<(u32, u32)> {
        runs_of_bits(&self.bits)
    }
}

/// The set bits of `bits` as runs (first, count), ascending.
fn runs_of_bits(bits: &[u64]) -> Vec<(u32, u32)> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for (wi, &w) in bits.iter().enumerate() {
        let mut w = w;
        while w != 0 {
            let b = w.trailing_zeros();
            let f = wi as u32 * 64 + b;
            match runs.last_mut() {
                Some((first, count)) if *first + *count == f => *count += 1,
                _ => runs.push((f, 1)),
            }
            w &= w - 1;
        }
    }
    runs
}

/// The frames of `runs` as a bitmap of `frame_count` bits, checking that
/// each run is non-empty, inside the UMEM and disjoint from the others.
fn bits_of_runs(runs: &[(u32, u32)], frame_count: u32) -> io::Result<(Vec<u64>, u32)> {
    let mut bits = vec![0u64; (frame_count as usize).div_ceil(64)];
    let mut total = 0u32;
    for &(first, count) in runs {
        let end = first
            .checked_add(count)
            .filter(|&e| count > 0 && e <= frame_count)
            .ok_or_else(|| {
                invalid(format!(
                    "free run ({first}, {count}) is empty or outside the {frame_count} frames"
                ))
            })?;
        for f in first..end {
            let w = &mut bits[(f / 64) as usize];
            let b = 1u64 << (f % 64);
            if *w & b != 0 {
                return Err(invalid(format!(
                    "free run ({first}, {count}) overlaps another at frame {f}"
                )));
            }
            *w |= b;
        }
        total += count;
    }
    Ok((bits, total))
}

/// What [`Xsk::adopt`] needs besides the two descriptors: the sizes and
/// bind options the socket was set up with and where its frames were when
/// its previous owner let go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptState<'a> {
    /// Sizes of the UMEM and rings.
    pub sizes: Sizes,
    /// The bind options (`ifindex` is the caller's to check).
    pub opts: BindOpts,
    /// The free frames, as runs (first, count).
    pub free: &'a [(u32, u32)],
    /// Frames on the kernel's rx side.
    pub kernel_rx: u32,
    /// Frames on the kernel's tx side.
    pub kernel_tx: u32,
}

/// One bound AF_XDP socket with its UMEM and rings, and the frame
/// accounting of the module invariant.
pub struct Xsk {
    // Field order: the mappings go before the socket closes, though either
    // order is sound (the kernel keeps its own references).
    fill: ProdRing<u64>,
    comp: ConsRing<u64>,
    rx: ConsRing<libc::xdp_desc>,
    tx: ProdRing<libc::xdp_desc>,
    umem: Umem,
    sock: OwnedFd,
    free: FreeList,
    kernel_rx: u32,
    kernel_tx: u32,
    opts: BindOpts,
    bad_descs: u64,
}

impl std::fmt::Debug for Xsk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xsk")
            .field("sock", &self.sock)
            .field("sizes", &self.umem.sizes)
            .field("opts", &self.opts)
            .field("free", &self.free.len())
            .field("kernel_rx", &self.kernel_rx)
            .field("kernel_tx", &self.kernel_tx)
            .finish()
    }
}

/// Frames counted (see the module invariant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frames {
    /// Frames in the UMEM.
    pub total: u32,
    /// Frames on our free list.
    pub free: u32,
    /// Frames on the kernel's rx side.
    pub kernel_rx: u32,
    /// Frames on the kernel's tx side.
    pub kernel_tx: u32,
}

impl Xsk {
    fn new(
        sock: OwnedFd,
        umem: Umem,
        rings: Rings,
        opts: BindOpts,
        free_runs: &[(u32, u32)],
        (kernel_rx, kernel_tx): (u32, u32),
    ) -> Xsk {
        let mut free = FreeList::new(umem.sizes.frame_count);
        // Low frames on top: they go out first (cosmetic, for traces).
        for &(first, count) in free_runs.iter().rev() {
            for f in (first..first + count).rev() {
                free.push(f);
            }
        }
        Xsk {
            fill: ProdRing::new(rings.fill),
            comp: ConsRing::new(rings.comp),
            rx: ConsRing::new(rings.rx),
            tx: ProdRing::new(rings.tx),
            umem,
            sock,
            free,
            kernel_rx,
            kernel_tx,
            opts,
            bad_descs: 0,
        }
    }

    /// Carries on socket `sock` (bound by another owner, which no longer
    /// touches its rings) with UMEM memfd `memfd`, from `state`.
    ///
    /// Refuses with `InvalidInput`, before writing anything shared, when:
    /// the sizes are invalid; the runs are empty, outside the UMEM or
    /// overlapping; free + kernel_rx + kernel_tx is not frame_count; `sock`
    /// is no AF_XDP socket or its zero-copy mode is not `state`'s; the
    /// memfd is not of frame_count*frame_size bytes; a ring is missing or
    /// of another size; a ring holds more than its side of the kernel can
    /// (fill or rx more than kernel_rx, tx or completion more than
    /// kernel_tx); or a ring holds a frame the runs call free.
    pub fn adopt(sock: OwnedFd, memfd: OwnedFd, state: &AdoptState<'_>) -> io::Result<Xsk> {
        let sizes = state.sizes;
        sizes.check()?;
        let (free_bits, free) = bits_of_runs(state.free, sizes.frame_count)?;
        let sum = u64::from(free) + u64::from(state.kernel_rx) + u64::from(state.kernel_tx);
        if sum != u64::from(sizes.frame_count) {
            return Err(invalid(format!(
                "free {free} + kernel_rx {} + kernel_tx {} is not frame_count {}",
                state.kernel_rx, state.kernel_tx, sizes.frame_count
            )));
        }
        let (domain, _) =
            getsockopt::<libc::c_int>(sock.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN)
                .map_err(|e| invalid(format!("the socket descriptor: {e}")))?;
        if domain != libc::AF_XDP {
            return Err(invalid(format!(
                "the socket descriptor is no AF_XDP socket (domain {domain})"
            )));
        }
        let (o, _) =
            getsockopt::<libc::xdp_options>(sock.as_fd(), libc::SOL_XDP, libc::XDP_OPTIONS)
                .map_err(|e| invalid(format!("the socket's XDP options: {e}")))?;
        let zc = o.flags & libc::XDP_OPTIONS_ZEROCOPY != 0;
        if zc != state.opts.zero_copy {
            return Err(invalid(format!(
                "the socket is {}bound zero-copy, the state says the opposite",
                if zc { "" } else { "not " }
            )));
        }
        let umem = Umem::open(memfd, sizes)?;
        let rings = Rings::map_existing(sock.as_fd(), sizes.ring_size)?;

        // Read-only checks of what the rings hold, against the state.
        let fill = ProdRing::new(rings.fill);
        let comp = ConsRing::new(rings.comp);
        let rx = ConsRing::new(rings.rx);
        let tx = ProdRing::new(rings.tx);
        let frame_of = |addr: u64| addr / u64::from(sizes.frame_size);
        let is_free = |addr: u64| {
            let f = frame_of(addr);
            f < u64::from(sizes.frame_count) && free_bits[(f / 64) as usize] & (1 << (f % 64)) != 0
        };
        let fill_n = fill.pending();
        let tx_n = tx.pending();
        let rx_n = rx.available();
        let comp_n = comp.available();
        for (name, n, side, limit) in [
            ("fill", fill_n, "kernel_rx", state.kernel_rx),
            ("rx", rx_n, "kernel_rx", state.kernel_rx),
            ("tx", tx_n, "kernel_tx", state.kernel_tx),
            ("completion", comp_n, "kernel_tx", state.kernel_tx),
        ] {
            if n > sizes.ring_size || n > limit {
                return Err(invalid(format!(
                    "the {name} ring holds {n} frames, more than {side} {limit}"
                )));
            }
        }
        // Slots between consumer and producer name frames in the kernel's
        // hands (those the kernel consumes meanwhile stay there), so none
        // may be free.
        let fill_free = (0..fill_n).any(|i| {
            is_free(
                fill.mem
                    .read(fill.cached_prod.wrapping_sub(fill_n).wrapping_add(i)),
            )
        });
        let tx_free = (0..tx_n).any(|i| {
            is_free(
                tx.mem
                    .read(tx.cached_prod.wrapping_sub(tx_n).wrapping_add(i))
                    .addr,
            )
        });
        let rx_free = (0..rx_n).any(|i| is_free(rx.get(i).addr));
        let comp_free = (0..comp_n).any(|i| is_free(comp.get(i)));
        if fill_free || tx_free || rx_free || comp_free {
            return Err(invalid(
                "a ring holds a frame the state calls free: the state is not this socket's",
            ));
        }
        let rings = Rings {
            fill: fill.mem,
            comp: comp.mem,
            rx: rx.mem,
            tx: tx.mem,
        };
        Ok(Xsk::new(
            sock,
            umem,
            rings,
            state.opts,
            state.free,
            (state.kernel_rx, state.kernel_tx),
        ))
    }

    /// The socket.
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// The socket, borrowed.
    pub fn sock(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// The UMEM memfd, borrowed.
    pub fn memfd(&self) -> BorrowedFd<'_> {
        self.umem.memfd.as_fd()
    }

    /// The sizes of the UMEM and rings.
    pub fn sizes(&self) -> Sizes {
        self.umem.sizes
    }

    /// The options the socket was bound with.
    pub fn opts(&self) -> BindOpts {
        self.opts
    }

    /// Where the frames are.
    pub fn frames(&self) -> Frames {
        Frames {
            total: self.umem.sizes.frame_count,
            free: self.free.len(),
            kernel_rx: self.kernel_rx,
            kernel_tx: self.kernel_tx,
        }
    }

    /// The free frames as runs (first, count), ascending.
    pub fn free_runs(&self) -> Vec<(u32, u32)> {
        self.free.runs()
    }

    /// Descriptors from the kernel that named no frame, or a frame we
    /// hold, skipped since set-up.
    pub fn bad_descs(&self) -> u64 {
        self.bad_descs
    }

    /// Bytes of a frame's data area (after the kernel's headroom).
    pub fn data_capacity(&self) -> usize {
        (self.umem.sizes.frame_size - XDP_PACKET_HEADROOM) as usize
    }

    /// Frame index of UMEM address `addr` when it may come back to us from
    /// the `kernel` side (whose count it then leaves); counts and refuses
    /// anything else.
    #[inline]
    fn take_back(&mut self, addr: u64, rx_side: bool) -> Option<u32> {
        let f = addr / u64::from(self.umem.sizes.frame_size);
        let held = if rx_side {
            self.kernel_rx
        } else {
            self.kernel_tx
        };
        if f >= u64::from(self.umem.sizes.frame_count) || held == 0 || self.free.contains(f as u32)
        {
            self.bad_descs += 1;
            return None;
        }
        if rx_side {
            self.kernel_rx -= 1;
        } else {
            self.kernel_tx -= 1;
        }
        Some(f as u32)
    }

    /// Takes up to `max` frames off the rx ring, shows each one's bytes to
    /// `each` (bad descriptors are counted and not shown), and puts the
    /// frames on the free list. Returns the number of descriptors taken.
    #[inline]
    pub fn receive(&mut self, max: usize, mut each: impl FnMut(&[u8])) -> usize {
        let n = self.rx.peek(max.min(u32::MAX as usize) as u32);
        let fs = u64::from(self.umem.sizes.frame_size);
        for i in 0..n {
            let d = self.rx.get(i);
            let Some(f) = self.take_back(d.addr, true) else {
                continue;
            };
            let off = d.addr % fs;
            if off + u64::from(d.len) <= fs {
                // SAFETY: the frame came off the rx ring and is on no ring
                // nor on the free list (take_back checked the latter), so
                // the kernel does not write it while we read it; off + len
                // stays inside the frame, so inside the mapping.
                let data = unsafe {
                    std::slice::from_raw_parts(
                        self.umem.frame_ptr(f).add(off as usize),
                        d.len as usize,
                    )
                };
                each(data);
            } else {
                self.bad_descs += 1;
            }
            self.free.push(f);
        }
        if n > 0 {
            self.rx.release(n);
        }
        n as usize
    }

    /// Tops the fill ring up from the free list until the rx side holds
    /// `target` frames (or the free list or the ring runs out).
    #[inline]
    pub fn refill(&mut self, target: u32) {
        if self.kernel_rx >= target || self.free.len() == 0 {
            return;
        }
        let want = (target - self.kernel_rx).min(self.free.len());
        let n = self.fill.free(want).min(want);
        let fs = u64::from(self.umem.sizes.frame_size);
        for i in 0..n {
            // Cannot fail: n <= free.len().
            let Some(f) = self.free.pop() else { break };
            self.fill.set(i, u64::from(f) * fs);
        }
        self.fill.submit(n);
        self.kernel_rx += n;
    }

    /// Whether the kernel needs a kick (recvfrom) to process the fill ring.
    #[inline]
    pub fn fill_needs_wakeup(&self) -> bool {
        self.opts.need_wakeup && self.fill.wakeup_flag()
    }

    /// Moves completed tx frames back to the free list.
    #[inline]
    pub fn reap(&mut self) {
        // Nothing in flight (an idle port, or rx only): no ring to read.
        if self.kernel_tx == 0 {
            return;
        }
        loop {
            let n = self.comp.peek(u32::MAX);
            if n == 0 {
                return;
            }
            for i in 0..n {
                let addr = self.comp.get(i);
                if let Some(f) = self.take_back(addr, false) {
                    self.free.push(f);
                }
            }
            self.comp.release(n);
        }
    }

    /// Copies `frames` in order into free UMEM frames and puts them on the
    /// tx ring, until the ring or the free list runs out. A frame longer
    /// than [`Xsk::data_capacity`] is taken but not sent, and counted in
    /// `oversize`. Returns how many frames were taken.
    #[inline]
    pub fn send(&mut self, frames: &[&[u8]], oversize: &mut u64) -> usize {
        let cap = self.data_capacity();
        let want = frames.len().min(u32::MAX as usize) as u32;
        let room = self.tx.free(want).min(want);
        let fs = u64::from(self.umem.sizes.frame_size);
        let mut queued = 0u32;
        let mut taken = 0;
        for f in frames {
            if f.len() > cap {
                // Taken and dropped: it can never fit, refusing it would
                // only make the caller retry it.
                *oversize += 1;
                taken += 1;
                continue;
            }
            if queued == room {
                break;
            }
            let Some(idx) = self.free.pop() else { break };
            // SAFETY: the frame came off the free list, so it is on no ring
            // and the kernel neither reads nor writes it; headroom + len
            // <= frame_size (checked against cap), so the copy stays inside
            // the frame, which lies inside the mapping; `f` is our own
            // memory, not the UMEM, so the ranges do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    f.as_ptr(),
                    self.umem.frame_ptr(idx).add(XDP_PACKET_HEADROOM as usize),
                    f.len(),
                );
            }
            self.tx.set(
                queued,
                libc::xdp_desc {
                    addr: u64::from(idx) * fs + u64::from(XDP_PACKET_HEADROOM),
                    len: f.len() as u32,
                    options: 0,
                },
            );
            queued += 1;
            taken += 1;
        }
        if queued > 0 {
            self.tx.submit(queued);
            self.kernel_tx += queued;
        }
        taken
    }

    /// Entries on the tx ring the kernel has not taken yet.
    #[inline]
    pub fn tx_pending(&self) -> u32 {
        self.tx.pending()
    }

    /// Whether transmitting what is on the tx ring needs a kick (sendto):
    /// always without need_wakeup, else when the kernel says so.
    #[inline]
    pub fn tx_needs_wakeup(&self) -> bool {
        !self.opts.need_wakeup || self.tx.wakeup_flag()
    }

    /// The kernel's counters for the socket (`XDP_STATISTICS`).
    pub fn statistics(&self) -> io::Result<libc::xdp_statistics> {
        let (s, _) = getsockopt::<libc::xdp_statistics>(
            self.sock.as_fd(),
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
        )?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory ring of `size` entries whose shared words start at
    /// `start` (as a ring that has wrapped many times).
    fn mem_ring<T: Entry>(size: u32, start: u32) -> (RingMem<T>, RingMem<T>) {
        // Three words, padded, then the slots, all as u64s so the
        // alignment suits both entry types.
        let words = 2 + (size as usize * std::mem::size_of::<T>()).div_ceil(8);
        let mut buf = vec![0u64; words].into_boxed_slice();
        let base = buf.as_mut_ptr().cast::<u8>();
        let make = |own: Option<Box<[u64]>>| {
            // SAFETY (test): offsets 0, 4, 8 and 16 lie inside `buf`, which
            // outlives both rings (held by the first).
            unsafe {
                RingMem {
                    producer: NonNull::new_unchecked(base.cast()),
                    consumer: NonNull::new_unchecked(base.add(4).cast()),
                    flags: NonNull::new_unchecked(base.add(8).cast()),
                    slots: NonNull::new_unchecked(base.add(16).cast()),
                    size,
                    mask: size - 1,
                    _map: None,
                    _test_mem: own,
                }
            }
        };
        let b = make(None);
        b.producer().store(start, Ordering::Relaxed);
        b.consumer().store(start, Ordering::Relaxed);
        let a = make(Some(buf));
        (a, b)
    }

    #[test]
    fn ring_indices_wrap_around_u32() {
        let start = u32::MAX - 5;
        let (p, c) = mem_ring::<u64>(8, start);
        let mut prod = ProdRing::new(p);
        let mut cons = ConsRing::new(c);
        assert_eq!(prod.free(1), 8);
        assert_eq!(cons.peek(64), 0);
        let mut next = 0u64;
        let mut expect = 0u64;
        // Several laps across the u32 wrap, in uneven batches.
        for round in 0..40u32 {
            let want = 1 + round % 7;
            let n = prod.free(want).min(want);
            for i in 0..n {
                prod.set(i, next);
                next += 1;
            }
            prod.submit(n);
            assert!(prod.pending() <= 8);
            let got = cons.peek(3 + round % 5);
            for i in 0..got {
                assert_eq!(cons.get(i), expect);
                expect += 1;
            }
            cons.release(got);
        }
        // Drain, then the ring is empty and fully free again.
        loop {
            let got = cons.peek(64);
            if got == 0 {
                break;
            }
            for i in 0..got {
                assert_eq!(cons.get(i), expect);
                expect += 1;
            }
            cons.release(got);
        }
        assert_eq!(expect, next);
        assert!(next > 100, "crossed u32::MAX with {next} entries");
        assert_eq!(prod.pending(), 0);
        assert_eq!(prod.free(8), 8);
        assert_eq!(cons.available(), 0);
    }

    #[test]
    fn a_full_ring_refuses_more_and_a_second_owner_carries_on() {
        let (p, c) = mem_ring::<libc::xdp_desc>(4, 7);
        let mut prod = ProdRing::new(p);
        let d = |a| libc::xdp_desc {
            addr: a,
            len: 1,
            options: 0,
        };
        for i in 0..4 {
            prod.set(i, d(u64::from(i)));
        }
        prod.submit(4);
        assert_eq!(prod.free(1), 0, "full");
        let mut cons = ConsRing::new(c);
        assert_eq!(cons.peek(2), 2);
        cons.release(1);
        // A new producer side from the shared words only: one slot free.
        let again = ProdRing::new(prod.mem);
        assert_eq!(again.cached_cons.wrapping_sub(again.cached_prod), 1);
        assert_eq!(again.pending(), 3);
        // A new consumer side resumes at the released index.
        let cons2 = ConsRing::new(cons.mem);
        assert_eq!(cons2.available(), 3);
        assert_eq!(cons2.get(0).addr, 1);
    }

    #[test]
    fn runs_round_trip_and_coalesce() {
        let mut fl = FreeList::new(200);
        for f in [0, 1, 2, 5, 63, 64, 65, 127, 128, 199] {
            assert!(fl.push(f));
        }
        assert!(!fl.push(64), "a frame is free once");
        let runs = fl.runs();
        assert_eq!(runs, vec![(0, 3), (5, 1), (63, 3), (127, 2), (199, 1)]);
        let (bits, total) = bits_of_runs(&runs, 200).unwrap();
        assert_eq!(total, 10);
        assert_eq!(bits, fl.bits);
        assert_eq!(fl.pop(), Some(199));
        assert!(!fl.contains(199));
        assert_eq!(runs_of_bits(&[0, 0]), vec![]);
        assert_eq!(runs_of_bits(&[u64::MAX, u64::MAX]), vec![(0, 128)]);
    }

    #[test]
    fn bad_runs_are_refused() {
        let kind = |r: &[(u32, u32)]| bits_of_runs(r, 100).unwrap_err().kind();
        assert_eq!(kind(&[(0, 10), (9, 2)]), io::ErrorKind::InvalidInput);
        assert_eq!(kind(&[(99, 2)]), io::ErrorKind::InvalidInput);
        assert_eq!(kind(&[(5, 0)]), io::ErrorKind::InvalidInput);
        assert_eq!(kind(&[(u32::MAX, 2)]), io::ErrorKind::InvalidInput);
        assert_eq!(kind(&[(3, 1), (3, 1)]), io::ErrorKind::InvalidInput);
        assert!(bits_of_runs(&[(0, 100)], 100).is_ok());
        assert!(bits_of_runs(&[], 100).is_ok());
    }

    #[test]
    fn sizes_are_checked() {
        let ok = Sizes {
            frame_count: 4096,
            frame_size: 2048,
            ring_size: 2048,
        };
        assert!(ok.check().is_ok());
        for bad in [
            Sizes {
                frame_size: 3000,
                ..ok
            },
            Sizes {
                ring_size: 1000,
                ..ok
            },
            Sizes { ring_size: 0, ..ok },
            Sizes {
                frame_count: 2048,
                ..ok
            },
            Sizes {
                frame_count: MAX_FRAME_COUNT + 1,
                ..ok
            },
        ] {
            assert_eq!(
                bad.check().unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ring_layouts_outside_the_mapping_are_refused() {
        let good = libc::xdp_ring_offset {
            producer: 0,
            consumer: 64,
            flags: 128,
            desc: 192,
        };
        assert_eq!(ring_len::<u64>(&good, 8).unwrap(), 192 + 64);
        let bad = libc::xdp_ring_offset { desc: 190, ..good };
        assert!(ring_len::<u64>(&bad, 8).is_err());
        let bad = libc::xdp_ring_offset {
            flags: 1 << 40,
            ..good
        };
        assert!(ring_len::<u64>(&bad, 8).is_err());
    }
}
