//! The `sluice` binary: parse flags, load the config, start the broker, and stop it cleanly on
//! SIGTERM or SIGINT. Startup errors are one line on stderr and a non-zero exit.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use sluice_broker::memory::ReservingAllocator;
use sluice_broker::signals::TerminationSignals;
use sluice_broker::{Args, Broker, BrokerConfig};
use tracing_subscriber::EnvFilter;

/// Huge allocations (only a hostile request asks for them) reserve lazily instead of aborting.
#[global_allocator]
static ALLOCATOR: ReservingAllocator = ReservingAllocator;

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_env("SLUICE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        // openraft narrates every election at info and every missed heartbeat to a down peer at
        // warn; the broker logs quorum changes itself, so only its errors are kept.
        .unwrap_or_else(|_| EnvFilter::new("info,openraft=error"));
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    // Before any thread starts, so every thread inherits the blocked mask.
    let signals = match TerminationSignals::block() {
        Ok(signals) => signals,
        Err(error) => return fail(&format!("cannot block termination signals: {error}")),
    };
    let config = match BrokerConfig::from_args(args) {
        Ok(config) => config,
        Err(error) => return fail(&error.to_string()),
    };
    let broker = match Broker::start(config) {
        Ok(broker) => broker,
        Err(error) => return fail(&error.to_string()),
    };
    match signals.wait() {
        Ok(signal) => tracing::info!(signal, "shutting down"),
        Err(error) => tracing::error!(%error, "waiting for signals failed; shutting down"),
    }
    broker.shutdown();
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("sluice: {message}");
    ExitCode::FAILURE
}
