//! Publication of immutable tables from the control thread to the workers.
//!
//! One [`FibPublisher`] (owned by the control thread) and any number of
//! [`FibReader`]s (one per worker) share an `arc_swap::ArcSwap<T>`.
//!
//! Invariants:
//! - Workers only call [`FibReader::load`]: wait-free in the common case, no
//!   lock, no allocation (after the thread's first load, which registers
//!   the thread's debt slots with arc-swap), never a free.
//! - A worker never frees a table. [`FibPublisher::publish`] moves the
//!   previous table into a retire list and keeps that `Arc` until
//!   [`FibPublisher::reclaim`] finds it is the only owner. While the
//!   publisher holds a clone the strong count cannot reach zero when a guard
//!   is dropped, so the final drop (and the deallocation of a multi-megabyte
//!   table) always runs on the control thread.
//! - Once a table has been swapped out nothing can take a new reference to
//!   it: `ArcSwap::swap` converts every outstanding fast-path guard on the old
//!   table into a counted reference before it returns, and readers only ever
//!   load the current table. So "only the publisher holds it" is a stable
//!   state and `Arc::try_unwrap` detects it exactly.
//! - Shutdown: dropping the publisher drops its retire list; a table still
//!   borrowed by a worker at that moment is freed by that worker's guard.
//!   Join the workers first to keep the rule absolute.

use std::ops::Deref;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

/// The control thread's handle: publishes new tables and retires old ones.
#[derive(Debug)]
pub struct FibPublisher<T> {
    shared: Arc<ArcSwap<T>>,
    retired: Vec<Arc<T>>,
}

/// A worker's handle: loads the current table. Cheap to clone, one per
/// worker thread.
#[derive(Debug)]
pub struct FibReader<T> {
    shared: Arc<ArcSwap<T>>,
}

impl<T> Clone for FibReader<T> {
    fn clone(&self) -> Self {
        FibReader {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A borrowed view of the table current at [`FibReader::load`] time. Hold it
/// for one batch, not longer: while it lives the control thread cannot
/// reclaim that table.
pub struct FibGuard<'a, T> {
    guard: Guard<Arc<T>>,
    _reader: core::marker::PhantomData<&'a FibReader<T>>,
}

impl<T> Deref for FibGuard<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> FibPublisher<T> {
    /// Creates the shared slot holding `initial` and the first reader.
    pub fn new(initial: T) -> (FibPublisher<T>, FibReader<T>) {
        let shared = Arc::new(ArcSwap::from_pointee(initial));
        let reader = FibReader {
            shared: Arc::clone(&shared),
        };
        (
            FibPublisher {
                shared,
                retired: Vec::new(),
            },
            reader,
        )
    }

    /// Another reader on the same slot.
    pub fn reader(&self) -> FibReader<T> {
        FibReader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Atomically replaces the current table with `next`. Loads that start
    /// after this returns see `next`; the previous table moves to the retire
    /// list (it may still be in use by workers mid-batch).
    pub fn publish(&mut self, next: T) {
        let previous = self.shared.swap(Arc::new(next));
        self.retired.push(previous);
    }

    /// Frees every retired table no reader holds any more, on this thread.
    /// Returns how many were freed. Call it after publishing, or on a timer.
    pub fn reclaim(&mut self) -> usize {
        let before = self.retired.len();
        let mut kept = Vec::with_capacity(before);
        for table in self.retired.drain(..) {
            // try_unwrap succeeds only for the last owner; the table is then
            // dropped here, on the control thread.
            if let Err(still_borrowed) = Arc::try_unwrap(table) {
                kept.push(still_borrowed);
            }
        }
        self.retired = kept;
        before - self.retired.len()
    }

    /// Number of retired tables still waiting for their readers.
    pub fn retired_len(&self) -> usize {
        self.retired.len()
    }

    /// The table currently published (for the control plane: diffing,
    /// metrics, dumps).
    pub fn current(&self) -> Arc<T> {
        self.shared.load_full()
    }
}

impl<T> FibReader<T> {
    /// The current table. Load once per batch and reuse the guard for every
    /// packet of the batch: the load is wait-free but not free.
    #[inline]
    pub fn load(&self) -> FibGuard<'_, T> {
        FibGuard {
            guard: self.shared.load(),
            _reader: core::marker::PhantomData,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_load_reclaim() {
        let (mut publisher, reader) = FibPublisher::new(1u32);
        assert_eq!(*reader.load(), 1);
        let held = reader.load();
        publisher.publish(2);
        assert_eq!(*held, 1, "a guard keeps its table");
        assert_eq!(*reader.load(), 2);
        assert_eq!(publisher.reclaim(), 0, "table 1 is still borrowed");
        drop(held);
        assert_eq!(publisher.reclaim(), 1);
        assert_eq!(publisher.retired_len(), 0);
        assert_eq!(*publisher.current(), 2);
    }
}
