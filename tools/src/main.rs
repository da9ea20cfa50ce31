//! `sluicectl`: one command-line tool for what Kafka users do with kafka-topics.sh,
//! kafka-console-producer.sh, kafka-console-consumer.sh, kafka-consumer-groups.sh,
//! kafka-transactions.sh and kafka-dump-log.sh.
//!
//! Design note: every online command speaks only the Kafka protocol (through `sluice-client`), so
//! it works against any Kafka-compatible broker; `segments` works offline on a data directory
//! through `sluice_engine::inspect`. Each command lives in its own module and returns
//! `anyhow::Result`; `main` prints an error as one line (`sluicectl: error: ...`) and exits
//! non-zero. Results go to stdout as tables or, with `--output json`, as JSON; progress and
//! summaries go to stderr. Single-threaded except `consume --group` (a heartbeat thread) and
//! `produce` (a stdin reader thread). TLS and SASL (`security`, from a Kafka `--command-config`
//! file or flags) apply to every connection a command opens.

mod acls;
mod cluster;
mod consume;
mod datetime;
mod groups;
mod member;
mod output;
mod produce;
mod properties;
mod quotas;
mod security;
mod segments;
mod session;
mod signals;
mod topics;
mod transactions;
mod users;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::output::{Output, OutputFormat};
use crate::session::Session;

/// Manage topics, produce and consume records, inspect consumer groups, transactions and on-disk
/// segments of a Sluice (or any Kafka-compatible) broker.
#[derive(Debug, Parser)]
#[command(name = "sluicectl", version, propagate_version = true)]
struct Cli {
    /// Broker to bootstrap from.
    #[arg(
        long,
        short = 'b',
        global = true,
        env = "SLUICE_BOOTSTRAP",
        default_value = "localhost:9092",
        value_name = "HOST:PORT"
    )]
    bootstrap_server: String,
    /// Output format: human-readable tables, or JSON for scripts.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    /// Timeout for connecting and for each request, in milliseconds.
    #[arg(long, global = true, default_value_t = 30_000, value_name = "MS")]
    request_timeout_ms: u64,
    #[command(flatten, next_help_heading = "Security (TLS and SASL)")]
    security: security::SecurityArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe, alter and delete topics.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Produce one record per line of standard input.
    Produce(produce::ProduceArgs),
    /// Consume records and print them, one per line.
    Consume(consume::ConsumeArgs),
    /// List, describe, reset and delete consumer groups.
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// List and describe transactions, show partitions' producers, abort a hanging transaction.
    #[command(subcommand)]
    Transactions(transactions::TransactionsCommand),
    /// Show the cluster: brokers, shards and supported API versions.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Inspect a data directory's segment files offline (no broker needed).
    #[command(subcommand)]
    Segments(segments::SegmentsCommand),
    /// Describe and alter client quotas (users, client ids, and their defaults).
    #[command(subcommand)]
    Quotas(quotas::QuotasCommand),
    /// List, create and delete ACLs.
    #[command(subcommand)]
    Acls(acls::AclsCommand),
    /// List, describe, set and delete users' SCRAM credentials.
    #[command(subcommand)]
    Users(users::UsersCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sluicectl: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let output = Output { format: cli.output };
    let timeout = Duration::from_millis(cli.request_timeout_ms.max(1));
    let connect = || Session::connect(&cli.bootstrap_server, timeout, &cli.security);
    match cli.command {
        Command::Segments(command) => segments::run(&command, output),
        Command::Topics(command) => topics::run(&mut connect()?, &command, output).map(|()| ExitCode::SUCCESS),
        Command::Produce(args) => produce::run(&mut connect()?, &args, output).map(|()| ExitCode::SUCCESS),
        Command::Consume(args) => {
            // Before any thread starts, so every thread inherits the blocked mask.
            let stop = signals::StopSignal::install()?;
            consume::run(&mut connect()?, &args, output, &stop).map(|()| ExitCode::SUCCESS)
        }
        Command::Groups(command) => groups::run(&mut connect()?, &command, output).map(|()| ExitCode::SUCCESS),
        Command::Transactions(command) => {
            transactions::run(&mut connect()?, &command, output).map(|()| ExitCode::SUCCESS)
        }
        Command::Cluster(command) => cluster::run(&mut connect()?, &command, output).map(|()| ExitCode::SUCCESS),
        Command::Quotas(command) => quotas::run(&mut connect()?, &command, output).map(|()| ExitCode::SUCCESS),
        Command::Acls(command) => acls::run(&mut connect()?, &command, output).map(|()| ExitCode::SUCCESS),
        Command::Users(command) => users::run(&mut connect()?, &command, output).map(|()| ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
