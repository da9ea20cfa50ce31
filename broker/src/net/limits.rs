//! Bounds on what clients can make the broker hold: open connections (over all shards) and
//! request bytes in flight (per connection). In-flight request counts are bounded by the
//! capacity of the channel between a connection's reader and writer (see `connection`).
//!
//! `ConnectionCounter` is shared by every shard thread; it is touched only when a connection
//! opens or closes, never per request. `MemoryBudget` belongs to one connection, on its shard.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use event_listener::{Event, Listener};

/// Open connections over all shards, against `max.connections`.
#[derive(Debug)]
pub(crate) struct ConnectionCounter {
    open: AtomicU32,
    count_max: u32,
    closed: Event,
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    counter: Arc<ConnectionCounter>,
}

impl ConnectionCounter {
    pub(crate) fn new(count_max: u32) -> Arc<Self> {
        Arc::new(Self { open: AtomicU32::new(0), count_max, closed: Event::new() })
    }

    /// Admits one more connection, or returns `None` at the limit.
    pub(crate) fn try_open(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| (open < self.count_max).then_some(open + 1))
            .is_ok();
        admitted.then(|| ConnectionSlot { counter: self.clone() })
    }

    /// Connections open now.
    pub(crate) fn open_count(&self) -> u32 {
        self.open.load(Ordering::Acquire)
    }

    /// Blocks the calling (non-shard) thread until no connection is open or `deadline` passes.
    /// Returns whether every connection closed.
    pub(crate) fn wait_all_closed(&self, deadline: Instant) -> bool {
        loop {
            if self.open_count() == 0 {
                return true;
            }
            let listener = self.closed.listen();
            if self.open_count() == 0 {
                return true;
            }
            if listener.wait_deadline(deadline).is_none() {
                return self.open_count() == 0;
            }
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let before = self.counter.open.fetch_sub(1, Ordering::AcqRel);
        assert!(before > 0, "a connection slot is released once");
        self.counter.closed.notify(usize::MAX);
    }
}

/// Request bytes one connection holds between reading a request and writing its response.
///
/// A request is admitted when nothing is held or when it fits under the maximum, so a request
/// larger than the budget (but under `socket.request.max.bytes`) still runs, alone.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    held_bytes: Cell<u64>,
    held_bytes_max: u64,
    released: Event,
}

impl MemoryBudget {
    pub(crate) fn new(held_bytes_max: u64) -> Self {
        Self { held_bytes: Cell::new(0), held_bytes_max, released: Event::new() }
    }

    fn try_acquire(&self, size_bytes: u64) -> bool {
        let held = self.held_bytes.get();
        if held == 0 || held + size_bytes <= self.held_bytes_max {
            self.held_bytes.set(held + size_bytes);
            return true;
        }
        false
    }

    /// Waits until `size_bytes` more may be held, then holds them.
    pub(crate) async fn acquire(&self, size_bytes: u64) {
        loop {
            if self.try_acquire(size_bytes) {
                return;
            }
            let listener = self.released.listen();
            if self.try_acquire(size_bytes) {
                return;
            }
            listener.await;
        }
    }

    /// Gives back bytes acquired earlier.
    pub(crate) fn release(&self, size_bytes: u64) {
        let held = self.held_bytes.get();
        assert!(held >= size_bytes, "releasing more request bytes than held");
        self.held_bytes.set(held - size_bytes);
        self.released.notify(usize::MAX);
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> u64 {
        self.held_bytes.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limit_refuses_and_frees_slots() {
        let counter = ConnectionCounter::new(2);
        let first = counter.try_open().expect("under the limit");
        let _second = counter.try_open().expect("at the limit");
        assert!(counter.try_open().is_none());
        drop(first);
        assert!(counter.try_open().is_some());
    }

    #[test]
    fn budget_admits_one_oversized_request_alone() {
        let budget = MemoryBudget::new(10);
        assert!(budget.try_acquire(50));
        assert!(!budget.try_acquire(1));
        budget.release(50);
        assert!(budget.try_acquire(6));
        assert!(budget.try_acquire(4));
        assert!(!budget.try_acquire(1));
        assert_eq!(budget.held_bytes(), 10);
    }
}
