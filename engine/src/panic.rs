//! What a panic in partition work does: the partition goes offline, the engine goes on.
//!
//! A panic is a broken invariant. Inside one partition's work (an append, a read, a truncation,
//! its maintenance, its zero fills) it may have left that partition's in-memory state half
//! updated, so that partition must not serve again; the others never shared that state (each
//! partition's state is its own, on its shard) and keep serving. So the panic is caught where
//! the work was started, the partition is latched failed exactly as after a failed fsync (every
//! later operation on it answers `StorageFailed`, which the broker reports as
//! KAFKA_STORAGE_ERROR), and the panic is logged with the partition's name. A restart reopens
//! the partition through recovery, which trusts nothing it did not re-validate. This mirrors
//! Kafka, which takes a log directory offline on an unexpected error in its log layer.
//!
//! Catching costs nothing on the hot path (`catch_unwind` over the future, no allocation).
//! Runs on the partition's shard.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

use futures_util::FutureExt as _;

use crate::partition::Partition;

/// Runs `work` on `partition`; `None` when it panicked, after failing the partition.
pub(crate) async fn contain<T>(partition: &Rc<Partition>, work: impl Future<Output = T>) -> Option<T> {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(value) => Some(value),
        Err(panic) => {
            partition.fail_after_panic(&message(panic.as_ref()));
            None
        }
    }
}

/// The message a panic carried (`panic!` with a literal or a formatted string).
pub fn message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
