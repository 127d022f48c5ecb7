//! Concurrency test of FIB publication: readers never see a torn table, old
//! tables are only ever freed on the control thread, and reclaim keeps the
//! retire list bounded.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, ThreadId};

use ipnet::Ipv4Net;
use rand::{rngs::StdRng, Rng, SeedableRng};
use vxrouter::fib::{FibPublisher, Lpm4, NextHopId};

/// Tables freed on a thread other than the control thread.
static FREED_ELSEWHERE: AtomicUsize = AtomicUsize::new(0);
/// Tables freed in total.
static FREED: AtomicUsize = AtomicUsize::new(0);

/// A published table tagged with which route set it came from, recording on
/// drop which thread freed it.
struct Tagged {
    set: usize,
    lpm: Lpm4,
    control: ThreadId,
}

impl Drop for Tagged {
    fn drop(&mut self) {
        FREED.fetch_add(1, Ordering::SeqCst);
        if thread::current().id() != self.control {
            FREED_ELSEWHERE.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn routes(seed: u64) -> Vec<(Ipv4Net, NextHopId)> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..2000u32)
        .map(|i| {
            let len = rng.gen_range(8..=32);
            let net = Ipv4Net::new(Ipv4Addr::from(rng.gen::<u32>() & 0x0FFF_FFFF), len).unwrap();
            (net, i + seed as u32 * 10_000)
        })
        .collect()
}

#[test]
fn readers_see_old_or_new_table_never_torn() {
    const READERS: usize = 3;
    const PUBLISHES: usize = 5000;
    let control = thread::current().id();
    let sets = [Lpm4::build(&routes(1)), Lpm4::build(&routes(2))];
    let mut rng = StdRng::seed_from_u64(9);
    let probes: Arc<Vec<u32>> =
        Arc::new((0..256).map(|_| rng.gen::<u32>() & 0x0FFF_FFFF).collect());
    // The answer of each route set for each probe: a reader's batch must
    // equal one of the two rows entirely.
    let expected: Arc<[Vec<Option<NextHopId>>; 2]> = Arc::new([
        probes.iter().map(|a| sets[0].lookup(*a)).collect(),
        probes.iter().map(|a| sets[1].lookup(*a)).collect(),
    ]);
    assert_ne!(
        expected[0], expected[1],
        "the two sets must disagree somewhere"
    );

    let (mut publisher, reader) = FibPublisher::new(Tagged {
        set: 0,
        lpm: sets[0].clone(),
        control,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..READERS)
        .map(|_| {
            let reader = reader.clone();
            let stop = Arc::clone(&stop);
            let probes = Arc::clone(&probes);
            let expected = Arc::clone(&expected);
            thread::spawn(move || {
                let mut out = vec![None; probes.len()];
                let mut batches = [0usize; 2];
                while !stop.load(Ordering::Relaxed) {
                    let table = reader.load();
                    table.lpm.lookup_batch(&probes, &mut out);
                    assert_eq!(out, expected[table.set], "torn lookup in set {}", table.set);
                    batches[table.set] += 1;
                }
                batches
            })
        })
        .collect();

    let mut max_retired = 0;
    for i in 1..=PUBLISHES {
        let set = i % 2;
        publisher.publish(Tagged {
            set,
            lpm: sets[set].clone(),
            control,
        });
        publisher.reclaim();
        // Each reader holds at most one guard at a time.
        assert!(
            publisher.retired_len() <= READERS,
            "retired {}",
            publisher.retired_len()
        );
        max_retired = max_retired.max(publisher.retired_len());
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = [0usize; 2];
    for w in workers {
        let b = w.join().expect("reader panicked");
        seen[0] += b[0];
        seen[1] += b[1];
    }
    publisher.reclaim();
    assert_eq!(publisher.retired_len(), 0);
    assert_eq!(FREED.load(Ordering::SeqCst), PUBLISHES);
    assert_eq!(
        FREED_ELSEWHERE.load(Ordering::SeqCst),
        0,
        "a reader freed a table"
    );
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "readers saw both sets: {seen:?}"
    );
    eprintln!("batches per set {seen:?}, max retired {max_retired}");
    assert_eq!(publisher.current().set, PUBLISHES % 2);
}
