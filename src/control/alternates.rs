//! Loop-free alternates computed beside the control thread.
//!
//! The alternates take one shortest-path run per neighbour: tens of ms at
//! 10k hosts, longer than a liveness dead interval of 3 x 10 ms, and the
//! control thread is the one that sends the hellos. So the control thread
//! publishes the routes of a change at once and hands the (live) topology
//! to this thread; the answer comes back through a waker and is taken
//! only if no newer routes were asked for since. Until it comes, a
//! neighbour that goes down is repaired by its ECMP sets' survivors only,
//! then by the recompute as before.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::Topology;
use crate::route::{self, lfa::Alternates, NegativeCycle};

struct Job {
    generation: u64,
    topo: Topology,
    me: usize,
}

struct Answer {
    generation: u64,
    alternates: Result<Alternates, NegativeCycle>,
}

/// The alternates thread and the generation of the routes last asked for.
pub(super) struct AlternatesThread {
    jobs: Option<mpsc::Sender<Job>>,
    answers: mpsc::Receiver<Answer>,
    thread: Option<JoinHandle<()>>,
    asked: u64,
}

impl AlternatesThread {
    /// Starts the thread; `waker` wakes the control loop on each answer.
    pub(super) fn start(waker: Arc<mio::Waker>) -> std::io::Result<AlternatesThread> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (answer_tx, answers) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("vxr-alternates".into())
            .spawn(move || {
                while let Ok(mut job) = job_rx.recv() {
                    // Only the newest routes matter: skip what they replaced.
                    while let Ok(newer) = job_rx.try_recv() {
                        job = newer;
                    }
                    let alternates = route::alternates(&job.topo, job.me);
                    let answer = Answer {
                        generation: job.generation,
                        alternates,
                    };
                    if answer_tx.send(answer).is_err() {
                        return;
                    }
                    if let Err(e) = waker.wake() {
                        tracing::warn!(error = %e, "waking the control thread for alternates");
                    }
                }
            })?;
        Ok(AlternatesThread {
            jobs: Some(jobs),
            answers,
            thread: Some(thread),
            asked: 0,
        })
    }

    /// Asks for the alternates of the routes just computed over `topo`
    /// (the topology they were computed on, links down left out) for host
    /// `me`; any answer for older routes is dropped from now on.
    pub(super) fn ask(&mut self, topo: Topology, me: usize) {
        self.asked += 1;
        let job = Job {
            generation: self.asked,
            topo,
            me,
        };
        if self.jobs.as_ref().is_none_or(|j| j.send(job).is_err()) {
            tracing::warn!("the alternates thread is gone: fast reroute keeps ECMP survivors only");
        }
    }

    /// Routes that need no alternates replaced the last ones asked for:
    /// an answer on the way is for routes no longer in use.
    pub(super) fn forget(&mut self) {
        self.asked += 1;
    }

    /// The alternates of the current routes, once they came.
    pub(super) fn take(&mut self) -> Option<Result<Alternates, NegativeCycle>> {
        let mut current = None;
        while let Ok(a) = self.answers.try_recv() {
            if a.generation == self.asked {
                current = Some(a.alternates);
            }
        }
        current
    }
}

impl Drop for AlternatesThread {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the job it runs.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn square() -> Topology {
        crate::config::parse(
            "[overlay]\nvni = 42\n\
             [[hosts]]\nname = \"h1\"\nunderlay = \"198.18.0.1\"\nsubnets = [\"198.19.1.0/24\"]\n\
             [[hosts]]\nname = \"h2\"\nunderlay = \"198.18.0.2\"\nsubnets = [\"198.19.2.0/24\"]\n\
             [[hosts]]\nname = \"h3\"\nunderlay = \"198.18.0.3\"\nsubnets = [\"198.19.3.0/24\"]\n\
             [[hosts]]\nname = \"h4\"\nunderlay = \"198.18.0.4\"\nsubnets = [\"198.19.4.0/24\"]\n\
             [[links]]\na = \"h1\"\nb = \"h2\"\ncost = 1\n[[links]]\na = \"h2\"\nb = \"h3\"\ncost = 1\n\
             [[links]]\na = \"h3\"\nb = \"h4\"\ncost = 1\n[[links]]\na = \"h4\"\nb = \"h1\"\ncost = 1\n",
            "square.toml",
        )
        .unwrap()
    }

    /// Waits for the waker and takes what came.
    fn wait(
        poll: &mut mio::Poll,
        t: &mut AlternatesThread,
    ) -> Option<Result<Alternates, NegativeCycle>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut events = mio::Events::with_capacity(4);
        while Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(50)))
                .unwrap();
            if let Some(a) = t.take() {
                return Some(a);
            }
        }
        None
    }

    #[test]
    fn the_answer_is_the_newest_routes_and_a_forgotten_one_is_dropped() {
        let mut poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let mut t = AlternatesThread::start(waker).unwrap();
        let topo = square();
        t.ask(topo.clone(), 0);
        let a = wait(&mut poll, &mut t).expect("an answer").unwrap();
        assert_eq!(a, route::alternates(&topo, 0).unwrap());
        // h3 (opposite) has two first hops, each the other's alternate.
        assert_eq!(a.of(2).len(), 2);
        // Asked for host 0 then host 1: only host 1's is taken.
        t.ask(topo.clone(), 0);
        t.ask(topo.clone(), 1);
        let b = wait(&mut poll, &mut t).expect("an answer").unwrap();
        assert_eq!(b, route::alternates(&topo, 1).unwrap());
        // Routes replaced by ones without alternates: the answer comes
        // (the waker fires) and is not taken.
        t.ask(topo, 0);
        t.forget();
        let mut events = mio::Events::with_capacity(4);
        let deadline = Instant::now() + Duration::from_secs(10);
        while events.is_empty() && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(50)))
                .unwrap();
        }
        assert!(!events.is_empty(), "no answer");
        assert!(t.take().is_none());
    }
}
