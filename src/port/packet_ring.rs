//! The receive ring of an AF_PACKET port (`PACKET_RX_RING`, TPACKET_V2):
//! frames the kernel copies into memory shared with us, so the worker reads
//! small frames without a system call.
//!
//! Why: without the ring a veth port with `offload = true` paid one
//! `recvmsg` per frame, however small (the known limit of 64-byte UDP on
//! that port). With it, the sender's context copies each frame into the
//! next free slot while it hands the frame to the host end of the veth, and
//! the worker walks the slots.
//!
//! Why TPACKET_V2 and not V3: V3 hands a block to userspace only when it is
//! full or its retire timer (1 ms at least) fires, which is latency a
//! router must not add; V2 hands over every frame at once.
//!
//! Invariants:
//! - The socket has `PACKET_VNET_HDR` on before the ring is set up (the
//!   kernel refuses it after): the kernel writes the virtio-net header of
//!   each frame right in front of its Ethernet header in the slot.
//! - A slot belongs to the kernel while its status word is
//!   `TP_STATUS_KERNEL` and to us otherwise; we read it only after an
//!   acquire load of that word says so, and give it back with a release
//!   store once nothing borrows it ([`RxRing::release`]). Slots are taken
//!   in order, so the ring keeps the order the frames arrived in.
//! - A frame larger than a slot (a TCP or UDP super-packet) gets a cut copy
//!   in its slot marked `TP_STATUS_COPY`, and the whole of it waits in the
//!   socket's receive queue (`PACKET_COPY_THRESH`), where `recvmsg` reads
//!   it: in the same order, since each such slot stands for exactly one
//!   queued frame. When the receive queue is full the kernel leaves only
//!   the cut copy, which the port counts and drops (`packet_rx_cut`).
//! - Offsets the kernel wrote into a slot header are checked against the
//!   slot before any byte is read through them.

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::sys;
use super::tun_offload::VNET_HDR_LEN;

/// Bytes per slot: the largest frame a port takes in one buffer
/// ([`super::MAX_FRAME`]) fits behind the slot header, the address and the
/// virtio-net header (76 bytes on this layout).
pub const SLOT_SIZE: usize = 2048;
/// Bytes per block the kernel allocates (contiguous, so kept small).
const BLOCK_SIZE: usize = 64 << 10;
/// Blocks per ring: 1024 slots, 2 MiB per socket, so a burst of a few
/// hundred frames waits rather than drops while the worker is busy.
const BLOCKS: usize = 32;

/// What the next slot holds.
#[derive(Debug)]
pub enum Slot<'a> {
    /// A frame: its virtio-net header and its Ethernet frame. `cut` says
    /// the kernel kept only the start of a larger frame and could not queue
    /// the whole of it.
    Frame {
        vnet: &'a [u8],
        frame: &'a [u8],
        cut: bool,
    },
    /// The frame waits whole in the socket's receive queue.
    Copied,
    /// The slot header's offsets do not fit the slot.
    Bad,
}

/// A mapped TPACKET_V2 receive ring; unmapped on drop.
pub struct RxRing {
    map: NonNull<u8>,
    len: usize,
    slots: usize,
    head: usize,
}

// SAFETY: the mapping is owned by this value alone (no copies of the
// pointer escape), and the kernel's side synchronises through the status
// words; moving it to another thread moves that ownership.
unsafe impl Send for RxRing {}

impl std::fmt::Debug for RxRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxRing")
            .field("slots", &self.slots)
            .field("head", &self.head)
            .finish()
    }
}

impl RxRing {
    /// Sets up and maps the ring on AF_PACKET socket `fd`, which must have
    /// `PACKET_VNET_HDR` on already and must not be bound yet (so that no
    /// frame is queued outside the ring).
    pub fn setup(fd: RawFd) -> io::Result<Self> {
        sys::setsockopt_int(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            libc::tpacket_versions::TPACKET_V2 as i32,
        )?;
        // Any frame too large for a slot is also queued whole.
        sys::setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_COPY_THRESH, 1)?;
        let req = libc::tpacket_req {
            tp_block_size: BLOCK_SIZE as u32,
            tp_block_nr: BLOCKS as u32,
            tp_frame_size: SLOT_SIZE as u32,
            tp_frame_nr: (BLOCK_SIZE / SLOT_SIZE * BLOCKS) as u32,
        };
        // SAFETY: `req` is a valid tpacket_req and its exact size is passed.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_RX_RING,
                (&req as *const libc::tpacket_req).cast(),
                std::mem::size_of::<libc::tpacket_req>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let len = BLOCK_SIZE * BLOCKS;
        // SAFETY: maps the ring the kernel just allocated for `fd`, at a
        // place of the kernel's choosing; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(RxRing {
            map,
            len,
            slots: len / SLOT_SIZE,
            head: 0,
        })
    }

    fn slot_ptr(&self) -> *mut u8 {
        // SAFETY: `head < slots`, so the offset stays inside the mapping.
        unsafe { self.map.as_ptr().add(self.head * SLOT_SIZE) }
    }

    fn status(&self) -> &AtomicU32 {
        // SAFETY: every slot starts with the 4-byte-aligned status word
        // (slots are 2048 bytes from a page-aligned start), which the kernel
        // updates concurrently: it is only ever accessed atomically here.
        unsafe { AtomicU32::from_ptr(self.slot_ptr().cast::<u32>()) }
    }

    /// The next slot, if the kernel has filled it. It stays ours until
    /// [`RxRing::release`].
    pub fn peek(&self) -> Option<Slot<'_>> {
        let status = self.status().load(Ordering::Acquire);
        if status == libc::TP_STATUS_KERNEL {
            return None;
        }
        if status & libc::TP_STATUS_COPY != 0 {
            return Some(Slot::Copied);
        }
        // SAFETY: the acquire load above saw the slot handed to us, so the
        // kernel has written it and will not touch it until we release it;
        // the slot is SLOT_SIZE bytes inside the mapping, and nothing
        // writes it while this shared borrow (tied to `&self`) lives.
        let slot = unsafe { std::slice::from_raw_parts(self.slot_ptr(), SLOT_SIZE) };
        // SAFETY: a slot starts with a tpacket2_hdr (plain data), and
        // read_unaligned makes no alignment demand.
        let hdr: libc::tpacket2_hdr = unsafe { std::ptr::read_unaligned(slot.as_ptr().cast()) };
        let mac = usize::from(hdr.tp_mac);
        let snap = hdr.tp_snaplen as usize;
        let hdr_end = std::mem::size_of::<libc::tpacket2_hdr>() + VNET_HDR_LEN;
        if mac < hdr_end || mac + snap > SLOT_SIZE {
            return Some(Slot::Bad);
        }
        Some(Slot::Frame {
            vnet: &slot[mac - VNET_HDR_LEN..mac],
            frame: &slot[mac..mac + snap],
            cut: snap < hdr.tp_len as usize,
        })
    }

    /// Gives the current slot back to the kernel and moves to the next.
    pub fn release(&mut self) {
        self.status()
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.head = (self.head + 1) % self.slots;
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `setup`; no borrow of
        // it outlives `self`.
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), self.len);
        }
    }
}
