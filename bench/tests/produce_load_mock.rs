//! `produce-load` end to end against the client's in-process mock broker: the binary must create
//! the topic, produce exactly the requested records, consume them back in end-to-end mode and
//! print a JSON report as the last line of stdout.
//!
//! Method: start the mock on a loopback port, run the built binary with `--json`, parse the last
//! line, and compare the counts with what the mock stored.

#[path = "../../client/tests/support/mock_broker.rs"]
mod mock_broker;

use std::process::Command;

use mock_broker::{MockBroker, MockOptions};

fn run_produce_load(args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_produce-load")).args(args).output().expect("binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("some output");
    serde_json::from_str(last).expect("last line is JSON")
}

#[test]
fn closed_loop_produces_the_requested_records_and_consumes_them() {
    let broker = MockBroker::start(MockOptions::default());
    let report = run_produce_load(&[
        "--bootstrap-server",
        &broker.address,
        "--topic",
        "load",
        "--partitions",
        "3",
        "--records",
        "20000",
        "--connections",
        "2",
        "--consumers",
        "1",
        "--json",
    ]);
    assert_eq!(report["records_acked"], 20_000);
    assert_eq!(report["records_consumed"], 20_000);
    assert_eq!(report["errors"], 0);
    assert!(report["records_per_sec"].as_f64().expect("number") > 0.0);
    for key in ["p50", "p99", "p999", "max"] {
        assert!(report["latency_us"][key].as_u64().expect("number") > 0, "{key}");
        assert!(report["e2e_latency_us"][key].as_u64().expect("number") > 0, "{key}");
    }
    let stored: i64 = (0..3).map(|partition| broker.log_end_offset("load", partition)).sum();
    assert_eq!(stored, 20_000);
    // What the host's CPUs did over the run, where Linux accounts for them.
    let host = &report["run"]["host_cpu"];
    assert!(host["cpus"].as_u64().expect("number") >= 1);
    if std::path::Path::new("/proc/stat").exists() {
        let over_run = &host["over_run"];
        let shares: f64 = ["busy_pct", "steal_pct", "iowait_pct", "idle_pct"]
            .iter()
            .map(|key| over_run[key].as_f64().expect("a share in percent"))
            .sum();
        assert!((99.0..=101.0).contains(&shares), "the shares add up to all CPU time: {over_run}");
    }
}

#[test]
fn open_loop_keeps_to_the_rate() {
    let broker = MockBroker::start(MockOptions::default());
    let report = run_produce_load(&[
        "--bootstrap-server",
        &broker.address,
        "--topic",
        "paced",
        "--rate",
        "20000",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--linger-ms",
        "2",
        "--compression",
        "lz4",
        "--json",
    ]);
    let rate = report["records_per_sec"].as_f64().expect("number");
    assert!((16_000.0..24_000.0).contains(&rate), "rate {rate}");
    assert_eq!(report["errors"], 0);
    // Records of the whole run (warm-up included) were stored.
    let sent = report["records_sent"].as_i64().expect("number");
    assert_eq!(broker.log_end_offset("paced", 0), sent);
}
