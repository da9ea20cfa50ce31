//! What a panic outside partition work does: the broker process aborts.
//!
//! A panic is a broken invariant. Inside one partition's work the engine contains it and takes
//! only that partition offline (see `sluice_engine`'s panic module). Everywhere else, a request
//! handler, the group coordinator's tasks, a connection's loops, the state a panic may have left
//! half updated is shared by many clients (groups, metadata, connection bookkeeping), so serving
//! on could answer wrongly. The process aborts instead, after logging the panic: every
//! acknowledged write is already durable or re-validated by recovery, and a restart (or, in a
//! cluster, the other brokers) takes over. Decoder panics on untrusted bytes are not broken
//! invariants of the broker: `dispatch` closes that connection only.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;

/// Runs `work`, aborting the process if it panics.
pub(crate) async fn abort_on_panic<T>(what: &'static str, work: impl Future<Output = T>) -> T {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(value) => value,
        Err(panic) => {
            let message = sluice_engine::panic::message(panic.as_ref());
            tracing::error!(task = what, panic = %message, "a panic outside partition work; aborting the broker");
            std::process::abort();
        }
    }
}
