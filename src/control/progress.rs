//! Worker progress as the control thread sees it: sans-IO, the time is an
//! argument.
//!
//! Each worker stores its loop count (busy or idle, every loop moves it)
//! in [`crate::worker::WorkerHandle::progress`]; the control thread reads
//! the counts once a tick and feeds them here. A worker whose count has not
//! moved for [`PROGRESS_WINDOW`] is stalled: `/healthz` fails, the systemd
//! watchdog is no longer fed, and the router exits non-zero so that its
//! supervisor restarts it (a wedged worker is a black hole for every flow
//! hashed to it; nothing short of a restart gets its queues back).
//!
//! Invariant: a worker's age only grows while its count stays the same; a
//! worker that never looped once counts from the start.

use std::time::{Duration, Instant};

pub use crate::metrics::PROGRESS_WINDOW;

/// The loop counts last seen, and when each last moved.
#[derive(Debug, Clone)]
pub struct Progress {
    seen: Vec<Seen>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    loops: u64,
    moved_at: Instant,
}

impl Progress {
    /// `workers` workers that started at `now` and have not looped yet.
    pub fn new(now: Instant, workers: usize) -> Progress {
        Progress {
            seen: vec![
                Seen {
                    loops: 0,
                    moved_at: now,
                };
                workers
            ],
        }
    }

    /// Takes the workers' loop counts at `now` (`loops[k]` worker k's).
    pub fn observe(&mut self, now: Instant, loops: &[u64]) {
        self.seen.resize(
            loops.len(),
            Seen {
                loops: 0,
                moved_at: now,
            },
        );
        for (s, &n) in self.seen.iter_mut().zip(loops) {
            if n != s.loops {
                *s = Seen {
                    loops: n,
                    moved_at: now,
                };
            }
        }
    }

    /// Every worker's age at `now`: the time since its count last moved.
    pub fn ages(&self, now: Instant) -> Vec<Duration> {
        self.seen
            .iter()
            .map(|s| now.saturating_duration_since(s.moved_at))
            .collect()
    }

    /// The worker whose count has stood still longest, with its age.
    pub fn oldest(&self, now: Instant) -> Option<(usize, Duration)> {
        self.ages(now)
            .into_iter()
            .enumerate()
            .max_by_key(|&(_, a)| a)
    }

    /// The workers (index, age) whose count has not moved for
    /// [`PROGRESS_WINDOW`] at `now`.
    pub fn stalled(&self, now: Instant) -> Vec<(usize, Duration)> {
        self.ages(now)
            .into_iter()
            .enumerate()
            .filter(|(_, a)| *a >= PROGRESS_WINDOW)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_worker_whose_count_stays_is_stalled_after_the_window() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0, 2);
        p.observe(t0 + S, &[10, 5]);
        assert!(p.stalled(t0 + S).is_empty());
        // Worker 1 stops at 5; worker 0 keeps going.
        p.observe(t0 + 2 * S, &[20, 5]);
        assert!(p.stalled(t0 + 2 * S).is_empty(), "1 s is within the window");
        p.observe(t0 + 3 * S, &[30, 5]);
        assert_eq!(p.stalled(t0 + 3 * S), vec![(1, 2 * S)]);
        assert_eq!(p.ages(t0 + 3 * S), vec![Duration::ZERO, 2 * S]);
        // It moves again: no longer stalled.
        p.observe(t0 + 4 * S, &[40, 6]);
        assert!(p.stalled(t0 + 4 * S).is_empty());
    }

    #[test]
    fn the_oldest_is_the_worker_that_moved_last_longest_ago() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0, 3);
        p.observe(t0 + S, &[1, 1, 1]);
        p.observe(t0 + 2 * S, &[2, 1, 2]);
        assert_eq!(p.oldest(t0 + 3 * S), Some((1, 2 * S)));
        assert_eq!(Progress::new(t0, 0).oldest(t0), None);
    }

    #[test]
    fn a_worker_that_never_loops_counts_from_the_start() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0, 1);
        p.observe(t0 + S, &[0]);
        assert!(p.stalled(t0 + S).is_empty());
        p.observe(t0 + 2 * S, &[0]);
        assert_eq!(p.stalled(t0 + 2 * S), vec![(0, 2 * S)]);
    }

    #[test]
    fn an_idle_worker_that_still_loops_is_not_stalled() {
        // A sleeping worker loops on its sleep timeout: a few counts a
        // tick are progress, however few.
        let t0 = Instant::now();
        let mut p = Progress::new(t0, 1);
        for k in 1..=10u64 {
            p.observe(t0 + S * k as u32, &[k]);
            assert!(p.stalled(t0 + S * k as u32).is_empty());
        }
    }

    #[test]
    fn stalled_counts_from_the_last_move_not_the_last_look() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0, 1);
        p.observe(t0 + S, &[7]);
        // Looked at often, never moved: the age still counts from t0 + 1 s.
        for ms in [1100u64, 1500, 2000, 2900] {
            p.observe(t0 + Duration::from_millis(ms), &[7]);
        }
        assert!(p.stalled(t0 + Duration::from_millis(2900)).is_empty());
        assert_eq!(p.stalled(t0 + 3 * S), vec![(0, 2 * S)]);
    }
}
