//! Storage fault control for tests: arms the engine's [`FaultInjector`] over HTTP.
//!
//! Off unless the broker starts with `SLUICE_FAULT_INJECTION=1` in its environment; then, and
//! only then, the engine runs with an injector and the metrics listener (`--metrics-listen`) also
//! answers these requests from loopback peers (anything else still gets the metrics):
//!
//! | request                                     | effect                                       |
//! |---------------------------------------------|----------------------------------------------|
//! | `POST /faults/fail-writes[?topic=NAME]`     | every segment write fails (on NAME only)     |
//! | `POST /faults/fail-syncs[?topic=NAME]`      | every segment fdatasync fails (on NAME only) |
//! | `POST /faults/fail-writes-after?count=N`    | N more writes succeed, then every write fails |
//! | `POST /faults/panic-appends[?topic=NAME]`   | every append panics inside its partition     |
//! | `POST /faults/clear`                        | disarms every fault                          |
//!
//! A partition whose write or fsync failed, or whose work panicked, stays failed until the broker
//! restarts (the engine latches it); clearing only spares partitions not hit yet. With the variable unset, nothing
//! here runs: the engine gets no injector and the metrics server never parses a request line.
//! Called on the metrics thread.

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_engine::io::{FaultInjector, FaultKind};

/// The environment variable that enables fault injection when set to `1`.
pub(crate) const ENV_VAR: &str = "SLUICE_FAULT_INJECTION";

/// Whether this process was started with fault injection enabled.
pub(crate) fn enabled_by_environment() -> bool {
    std::env::var(ENV_VAR).is_ok_and(|value| value == "1")
}

/// An answer to a fault control request: HTTP status line and body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ControlAnswer {
    /// Status code and reason, e.g. `200 OK`.
    pub(crate) status: &'static str,
    /// A one-line body.
    pub(crate) body: String,
}

impl ControlAnswer {
    fn ok(body: String) -> Self {
        Self { status: "200 OK", body }
    }

    fn bad(body: String) -> Self {
        Self { status: "400 Bad Request", body }
    }
}

/// Applies the fault control request in `head` (an HTTP request head), if it is one.
///
/// Returns `None` when the request is not for `/faults/`, so the caller serves metrics instead.
/// Peers other than loopback are refused, whatever the listener's address.
pub(crate) fn control(faults: &Arc<FaultInjector>, head: &[u8], peer: SocketAddr) -> Option<ControlAnswer> {
    let line = head.split(|byte| *byte == b'\r' || *byte == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split(' ');
    let method = words.next()?;
    let target = words.next()?.strip_prefix("/faults/")?;
    if !peer.ip().is_loopback() {
        return Some(ControlAnswer { status: "403 Forbidden", body: "fault control is loopback only".to_owned() });
    }
    if method != "POST" {
        return Some(ControlAnswer::bad(format!("fault control takes POST, not {method}")));
    }
    let (action, query) = target.split_once('?').unwrap_or((target, ""));
    let parameter =
        |name: &str| query.split('&').find_map(|pair| pair.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')));
    let answer = match action {
        "fail-writes" | "fail-syncs" => {
            let kind = if action == "fail-writes" { FaultKind::Write } else { FaultKind::Sync };
            let topic = parameter("topic");
            faults.fail(kind, topic);
            ControlAnswer::ok(format!("{action} armed on {}", topic.unwrap_or("every topic")))
        }
        "panic-appends" => {
            let topic = parameter("topic");
            faults.fail(FaultKind::Panic, topic);
            ControlAnswer::ok(format!("appends panic on {}", topic.unwrap_or("every topic")))
        }
        "fail-writes-after" => match parameter("count").map(str::parse::<u64>) {
            Some(Ok(count)) => {
                faults.fail_writes_after(count);
                ControlAnswer::ok(format!("writes fail after {count} more"))
            }
            _ => ControlAnswer::bad("fail-writes-after needs count=N".to_owned()),
        },
        "clear" => {
            faults.clear();
            ControlAnswer::ok("faults cleared".to_owned())
        }
        other => ControlAnswer::bad(format!("unknown fault action {other:?}")),
    };
    tracing::warn!(request = line, answer = %answer.body, "fault injection");
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        "127.0.0.1:4000".parse().expect("literal")
    }

    #[test]
    fn metrics_requests_are_not_fault_control() {
        let faults = Arc::new(FaultInjector::new());
        assert!(control(&faults, b"GET /metrics HTTP/1.1\r\n\r\n", loopback()).is_none());
        assert!(control(&faults, b"", loopback()).is_none());
    }

    #[test]
    fn remote_peers_are_refused() {
        let faults = Arc::new(FaultInjector::new());
        let remote = "192.0.2.7:4000".parse().expect("literal");
        let answer = control(&faults, b"POST /faults/clear HTTP/1.1\r\n\r\n", remote).expect("a fault request");
        assert_eq!(answer.status, "403 Forbidden");
    }

    #[test]
    fn actions_parse_their_parameters() {
        let faults = Arc::new(FaultInjector::new());
        let answer = control(&faults, b"POST /faults/fail-syncs?topic=bad HTTP/1.1\r\n", loopback()).expect("fault");
        assert_eq!(answer.status, "200 OK");
        assert!(answer.body.contains("bad"), "{}", answer.body);
        let answer = control(&faults, b"POST /faults/fail-writes-after?count=x HTTP/1.1\r\n", loopback());
        assert_eq!(answer.expect("fault").status, "400 Bad Request");
        let answer = control(&faults, b"GET /faults/clear HTTP/1.1\r\n", loopback());
        assert_eq!(answer.expect("fault").status, "400 Bad Request");
        let answer = control(&faults, b"POST /faults/explode HTTP/1.1\r\n", loopback());
        assert_eq!(answer.expect("fault").status, "400 Bad Request");
    }
}
