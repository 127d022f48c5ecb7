//! TUN container port: one [`TunPort`] per queue of a multi-queue TUN device.
//!
//! Layer: I/O corner. Frames are raw IP packets (IFF_NO_PI, no virtio-net
//! header: offloads are off, so every read is one packet of at most the
//! device MTU and every write must be one packet). Queues are non-blocking:
//! `rx_burst` reads until EAGAIN or the batch is full, `tx_burst` writes until
//! EAGAIN and refuses the rest, so a worker never sleeps inside a port.
//!
//! The device exists while any queue is open and disappears with the last
//! one (it is not made persistent), so a crashed router leaves nothing behind.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use tun_rs::{DeviceBuilder, SyncDevice};

use super::{sys, Batch, LinkType, Port, MAX_FRAME};

/// Largest number of queues a TUN device may have (the kernel's
/// `MAX_TAP_QUEUES`).
pub const MAX_QUEUES: usize = 256;

/// One queue of a TUN device.
pub struct TunPort {
    name: String,
    queue: usize,
    dev: SyncDevice,
    stats: TunStats,
}

/// Per-queue counters (plain integers: a queue belongs to one worker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunStats {
    /// Packets read.
    pub rx_packets: u64,
    /// Packets written.
    pub tx_packets: u64,
    /// Packets the kernel refused on write with an error other than EAGAIN
    /// (e.g. EINVAL for a malformed header), counted as taken and dropped.
    pub tx_errors: u64,
}

impl fmt::Debug for TunPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunPort")
            .field("name", &self.name)
            .field("queue", &self.queue)
            .field("fd", &self.dev.as_raw_fd())
            .finish()
    }
}

impl TunPort {
    /// Creates (or attaches to, if a multi-queue TUN of that name exists and
    /// we may open it) TUN device `name` in the calling thread's network
    /// namespace with `queues` queues and `mtu`, brings it up, and returns
    /// one non-blocking port per queue.
    pub fn open(name: &str, queues: usize, mtu: u16) -> io::Result<Vec<TunPort>> {
        if queues == 0 || queues > MAX_QUEUES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TUN queue count {queues} outside 1..={MAX_QUEUES}"),
            ));
        }
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TUN name {name:?} must have 1..{} bytes", libc::IFNAMSIZ),
            ));
        }
        if usize::from(mtu) > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TUN MTU {mtu} exceeds the packet buffer ({MAX_FRAME})"),
            ));
        }
        let first = DeviceBuilder::new()
            .name(name)
            .mtu(mtu)
            .with(|b| {
                b.multi_queue(true);
                b.packet_information(false);
                b.offload(false);
            })
            .build_sync()
            .map_err(|e| io::Error::new(e.kind(), format!("creating TUN {name}: {e}")))?;
        let mut devs = Vec::with_capacity(queues);
        for _ in 1..queues {
            devs.push(first.try_clone()?);
        }
        devs.insert(0, first);
        let mut ports = Vec::with_capacity(queues);
        for (queue, dev) in devs.into_iter().enumerate() {
            dev.set_nonblocking(true)?;
            ports.push(TunPort {
                name: name.to_string(),
                queue,
                dev,
                stats: TunStats::default(),
            });
        }
        tracing::info!(name, queues, mtu, "TUN device open");
        Ok(ports)
    }

    /// This queue's index within its device.
    pub fn queue(&self) -> usize {
        self.queue
    }

    /// The queue's file descriptor, for the worker's idle poll().
    pub fn fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }

    /// Counters since open.
    pub fn stats(&self) -> TunStats {
        self.stats
    }
}

impl Port for TunPort {
    fn poll_fd(&self) -> Option<i32> {
        Some(self.fd())
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn link_type(&self) -> LinkType {
        LinkType::RawIp
    }

    fn rx_burst(&mut self, batch: &mut Batch) -> io::Result<usize> {
        batch.clear();
        let mut n = 0;
        {
            let slots = batch.slots_mut();
            while n < slots.len() {
                let pkt = &mut slots[n];
                let area = pkt.rx_area();
                let len = area.len().min(MAX_FRAME);
                match self.dev.recv(&mut area[..len]) {
                    Ok(0) => break,
                    Ok(got) => {
                        pkt.set_received(got);
                        pkt.ts_nanos = 0;
                        n += 1;
                    }
                    Err(e) if sys::is_transient(&e) => break,
                    Err(e) => {
                        if n > 0 {
                            // Deliver what we have; the error recurs next call.
                            break;
                        }
                        return Err(e);
                    }
                }
            }
        }
        batch.set_len(n);
        self.stats.rx_packets += n as u64;
        Ok(n)
    }

    fn tx_burst(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        let mut taken = 0;
        for f in frames {
            match self.dev.send(f) {
                Ok(_) => self.stats.tx_packets += 1,
                Err(e) if sys::is_transient(&e) => break,
                // A packet the kernel rejects (EINVAL, EIO for a down device
                // while it is being torn down) is dropped and counted; the
                // queue itself is still fine.
                Err(_) => self.stats.tx_errors += 1,
            }
            taken += 1;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Writes go straight to the kernel; nothing is queued here.
        Ok(())
    }
}
