//! The worker's sleep: a worker that has gone quiet must wake when one of
//! its ports becomes readable, every time, not only when its sleep times
//! out. The worker registers its file descriptors for epoll only while it
//! sleeps (an fd in an epoll set costs every queued packet a callback), so
//! this checks that each sleep re-arms them and each wake takes them out.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vxrouter::fib::publish::FibPublisher;
use vxrouter::port::{Batch, LinkType, Port, BATCH_SIZE};
use vxrouter::worker::{self, WorkerHandle, WorkerStats, IDLE_SPIN_TIME};

/// A port on one end of a datagram socket pair: what the test writes into
/// the other end arrives here as frames; what the worker sends is dropped.
struct SockPort(UnixDatagram);

impl Port for SockPort {
    fn name(&self) -> &str {
        "sock"
    }
    fn link_type(&self) -> LinkType {
        LinkType::RawIp
    }
    fn rx_burst(&mut self, batch: &mut Batch) -> io::Result<usize> {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        let slots = batch.slots_mut();
        while n < BATCH_SIZE {
            match self.0.recv(&mut buf) {
                Ok(len) => {
                    slots[n].fill(&buf[..len]);
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        batch.set_len(n);
        Ok(n)
    }
    fn tx_burst(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        Ok(frames.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn poll_fd(&self) -> Option<i32> {
        Some(self.0.as_raw_fd())
    }
}

fn stats(h: &WorkerHandle) -> WorkerStats {
    h.stats.lock().unwrap().clone()
}

#[test]
fn a_sleeping_worker_wakes_on_each_frame() {
    let topo = vxrouter::config::parse(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/configs/demo-2hosts.toml"
        ))
        .unwrap(),
        "demo-2hosts.toml",
    )
    .unwrap();
    let tables = vxrouter::replay::replay_tables(&topo, 0, 1500).unwrap();
    let (_publisher, reader) = FibPublisher::new(tables);
    let (ours, theirs) = UnixDatagram::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let handle = WorkerHandle {
        stats: Arc::new(Mutex::new(WorkerStats::default())),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let h = handle.clone();
    let port: Box<dyn Port + Send> = Box::new(SockPort(ours));
    let jh = std::thread::spawn(move || worker::run(0, None, vec![Some(port)], vec![], reader, h));

    // Each round: wait until the worker has gone to sleep (it says so as it
    // arms its fds; on a loaded machine that can take far longer than its
    // spin window), send one frame it cannot parse (dropped and counted),
    // and wait for it to be received. A worker that only woke on its sleep
    // timeout would still receive it, but `wakeups` would not move.
    for round in 1..=4u64 {
        std::thread::sleep(IDLE_SPIN_TIME * 4);
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats(&handle).sleeps < round {
            assert!(
                Instant::now() < deadline,
                "the worker never slept before frame {round}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        theirs.send(&[0x45, 0, 0]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats(&handle).rx.first().copied().unwrap_or(0) < round {
            assert!(Instant::now() < deadline, "frame {round} never received");
            std::thread::sleep(Duration::from_millis(1));
        }
        // The worker publishes again once it has spun out and gone back to sleep.
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats(&handle).wakeups < round {
            assert!(
                Instant::now() < deadline,
                "sleep {round} did not end on readiness: {:?}",
                stats(&handle).wakeups
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    handle.stop.store(true, Ordering::Relaxed);
    jh.join().unwrap().unwrap();
    let s = stats(&handle);
    assert_eq!(s.rx, vec![4]);
    assert_eq!(s.wakeups, 4);
    assert_eq!(s.io_errors, 0);
}
