//! The worker as the control thread drives it.
//!
//! Its sleep: a worker that has gone quiet must wake when one of its ports
//! becomes readable, every time, not only when its sleep times out. The
//! worker registers its file descriptors for epoll only while it sleeps (an
//! fd in an epoll set costs every queued packet a callback), so this checks
//! that each sleep re-arms them and each wake takes them out.
//!
//! Its commands: a port attached to a running (sleeping) worker is polled
//! at once, and a detached one comes back with what it counted.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vxrouter::fib::publish::FibPublisher;
use vxrouter::port::{Batch, LinkType, Port, BATCH_SIZE};
use vxrouter::worker::{Command, Worker, WorkerHandle, WorkerStats, IDLE_SPIN_TIME};

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

fn demo_reader() -> (
    vxrouter::fib::publish::FibPublisher<vxrouter::dataplane::Tables>,
    vxrouter::fib::publish::FibReader<vxrouter::dataplane::Tables>,
) {
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
    FibPublisher::new(tables)
}

/// Waits until `f` holds of the worker's published stats.
fn until(h: &WorkerHandle, what: &str, f: impl Fn(&WorkerStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f(&stats(h)) {
        assert!(Instant::now() < deadline, "{what}: {:?}", stats(h));
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_sleeping_worker_wakes_on_each_frame() {
    let (_publisher, reader) = demo_reader();
    let (ours, theirs) = UnixDatagram::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let port: Box<dyn Port + Send> = Box::new(SockPort(ours));
    let (worker, handle) = Worker::new(
        0,
        vec![Some(port)],
        vec![],
        reader,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let jh = std::thread::spawn(move || worker.run(None));

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
    handle.stop();
    jh.join().unwrap().unwrap();
    let s = stats(&handle);
    assert_eq!(s.rx, vec![4]);
    assert_eq!(s.wakeups, 4);
    assert_eq!(s.io_errors, 0);
}

#[test]
fn ports_attach_to_and_detach_from_a_running_worker() {
    let (_publisher, reader) = demo_reader();
    let (a, a_peer) = UnixDatagram::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let port: Box<dyn Port + Send> = Box::new(SockPort(a));
    let (worker, handle) = Worker::new(
        0,
        vec![Some(port)],
        vec![],
        reader,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let jh = std::thread::spawn(move || worker.run(None));
    until(&handle, "the worker never slept", |s| s.sleeps >= 1);

    // Port 3 (index 1 and 2 stay vacant), and a receive-only queue of it.
    let (b, b_peer) = UnixDatagram::pair().unwrap();
    let (c, c_peer) = UnixDatagram::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    c.set_nonblocking(true).unwrap();
    let (done, ack) = std::sync::mpsc::channel();
    handle
        .send(Command::Attach {
            index: 3,
            queue: Some(Box::new(SockPort(b))),
            rx_only: vec![Box::new(SockPort(c))],
            done,
        })
        .unwrap();
    ack.recv_timeout(Duration::from_secs(5))
        .expect("the sleeping worker took the port");
    b_peer.send(&[0x45, 0, 0]).unwrap();
    c_peer.send(&[0x45, 0, 0]).unwrap();
    a_peer.send(&[0x45, 0, 0]).unwrap();
    until(&handle, "frames on the attached port", |s| {
        s.rx.get(3) == Some(&2) && s.rx.first() == Some(&1)
    });

    let (done, ack) = std::sync::mpsc::channel();
    handle.send(Command::Detach { index: 3, done }).unwrap();
    let back = ack.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(back.queues.len(), 2);
    assert_eq!(back.rx, 2);
    // The index counts from zero again; the other port goes on.
    until(&handle, "counts of the detached index reset", |s| {
        s.rx.get(3) == Some(&0)
    });
    drop(back);
    a_peer.send(&[0x45, 0, 0]).unwrap();
    until(&handle, "the remaining port still served", |s| {
        s.rx.first() == Some(&2)
    });
    // Detaching what is not there gives back nothing.
    let (done, ack) = std::sync::mpsc::channel();
    handle.send(Command::Detach { index: 7, done }).unwrap();
    assert!(ack
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .queues
        .is_empty());
    handle.stop();
    jh.join().unwrap().unwrap();
    assert_eq!(stats(&handle).io_errors, 0);
}
