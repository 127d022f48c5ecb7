//! In-memory port: a queue of frames to receive and a list of frames sent.
//! Drives the pipeline in tests, simulations and benches with no I/O at all.

use std::collections::VecDeque;
use std::io;

use super::{Batch, Gso, LinkType, Port, BATCH_SIZE};
use crate::offload::Layout;

/// A port backed by memory. `rx` frames are handed out by `rx_burst`; frames
/// given to `tx_burst` are appended to `tx` (up to `tx_capacity`, after which
/// they are refused, as a full ring would).
///
/// Super-packets: [`MemPort::inject_super`] queues one (handed out whole
/// into a batch made with [`Batch::new_super`], else dropped and counted in
/// `rx_refused`); with [`MemPort::set_takes_gso`] the port takes them whole
/// too, into `tx` with their annotation in `tx_gso` (`None` for frames).
#[derive(Debug)]
pub struct MemPort {
    name: String,
    link_type: LinkType,
    pub rx: VecDeque<Vec<u8>>,
    rx_gso: VecDeque<Option<Gso>>,
    pub rx_refused: u64,
    pub tx: Vec<Vec<u8>>,
    pub tx_gso: Vec<Option<Gso>>,
    pub tx_capacity: usize,
    takes_gso: bool,
}

impl MemPort {
    pub fn new(name: impl Into<String>, link_type: LinkType) -> Self {
        MemPort {
            name: name.into(),
            link_type,
            rx: VecDeque::new(),
            rx_gso: VecDeque::new(),
            rx_refused: 0,
            tx: Vec::new(),
            tx_gso: Vec::new(),
            tx_capacity: usize::MAX,
            takes_gso: false,
        }
    }

    /// Queues a frame for a later `rx_burst`.
    pub fn inject(&mut self, frame: impl Into<Vec<u8>>) {
        self.rx.push_back(frame.into());
        self.rx_gso.push_back(None);
    }

    /// Queues a super-packet for a later `rx_burst`.
    pub fn inject_super(&mut self, frame: impl Into<Vec<u8>>, gso: Gso) {
        self.rx.push_back(frame.into());
        self.rx_gso.push_back(Some(gso));
    }

    /// Whether `tx_gso` takes super-packets whole (default: no, they arrive
    /// cut into segments through `tx_burst`).
    pub fn set_takes_gso(&mut self, on: bool) {
        self.takes_gso = on;
    }

    /// Takes the frames transmitted so far.
    pub fn take_tx(&mut self) -> Vec<Vec<u8>> {
        self.tx_gso.clear();
        std::mem::take(&mut self.tx)
    }
}

impl Port for MemPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn link_type(&self) -> LinkType {
        self.link_type
    }

    fn rx_burst(&mut self, batch: &mut Batch) -> io::Result<usize> {
        let mut n = 0;
        let slots = batch.slots_mut();
        while n < BATCH_SIZE {
            let Some(frame) = self.rx.pop_front() else {
                break;
            };
            match self.rx_gso.pop_front().flatten() {
                None => {
                    slots[n].fill(&frame);
                }
                Some(g) => {
                    if !slots[n].fill_super(&frame, g) {
                        self.rx_refused += 1;
                        continue;
                    }
                }
            }
            n += 1;
        }
        batch.set_len(n);
        Ok(n)
    }

    fn tx_burst(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        let room = self.tx_capacity.saturating_sub(self.tx.len());
        let n = frames.len().min(room);
        self.tx.extend(frames[..n].iter().map(|f| f.to_vec()));
        self.tx_gso.extend(std::iter::repeat_n(None, n));
        Ok(n)
    }

    fn takes_gso(&self) -> bool {
        self.takes_gso
    }

    fn tx_gso(&mut self, frame: &[u8], layout: &Layout) -> io::Result<bool> {
        if !self.takes_gso || self.tx.len() >= self.tx_capacity {
            return Ok(false);
        }
        self.tx.push(frame.to_vec());
        self.tx_gso.push(Some(layout.gso()));
        Ok(true)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_capacity() {
        let mut p = MemPort::new("m", LinkType::RawIp);
        for i in 0..70u8 {
            p.inject(vec![i]);
        }
        let mut b = Batch::new();
        assert_eq!(p.rx_burst(&mut b).unwrap(), BATCH_SIZE);
        assert_eq!(p.rx_burst(&mut b).unwrap(), 6);
        assert_eq!(b.pkts()[0].data(), &[64]);
        p.tx_capacity = 1;
        assert_eq!(p.tx_burst(&[&[1], &[2]]).unwrap(), 1);
        assert_eq!(p.take_tx(), vec![vec![1u8]]);
    }
}
