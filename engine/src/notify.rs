//! Waiting for a condition that an [`Event`] announces: the one primitive behind every "check,
//! listen, check again, await" loop of the engine and the broker.
//!
//! The listener is created before the second check, so a notification between the check and the
//! await is never lost. Any thread; the future belongs to the thread awaiting it.

use event_listener::Event;

/// Completes once `ready()` holds, re-checking it each time `event` fires.
pub async fn wait_until(event: &Event, mut ready: impl FnMut() -> bool) {
    loop {
        if ready() {
            return;
        }
        let listener = event.listen();
        if ready() {
            return;
        }
        listener.await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::future::Future as _;
    use std::task::{Context, Waker};

    use super::*;

    #[test]
    fn completes_after_the_condition_turns_true_and_the_event_fires() {
        let event = Event::new();
        let flag = Cell::new(false);
        let mut wait = std::pin::pin!(wait_until(&event, || flag.get()));
        let mut context = Context::from_waker(Waker::noop());
        assert!(wait.as_mut().poll(&mut context).is_pending());
        flag.set(true);
        event.notify(usize::MAX);
        assert!(wait.as_mut().poll(&mut context).is_ready());
    }
}
