//! `sluicectl transactions`: list, describe, producers and abort, over the KIP-664 admin APIs as
//! Kafka's `kafka-transactions.sh` uses them: `ListTransactions` (asked of every broker; each
//! answers for the transactional ids it coordinates), `FindCoordinator` (key type 1) then
//! `DescribeTransactions` at the coordinator, `DescribeProducers` at each partition's leader,
//! and `WriteTxnMarkers` to a partition's leader.
//!
//! Aborting a hanging transaction, in steps (as `kafka-transactions.sh abort` does):
//! 1. Metadata gives the partition's leader.
//! 2. `DescribeProducers` at the leader lists the producers it remembers. The one to abort is
//!    the producer whose open transaction starts at `--start-offset`, else the producer given by
//!    `--producer-id`, else the only producer with an open transaction there.
//! 3. `WriteTxnMarkers` to the leader appends an abort marker (`transaction_result` false) with
//!    that producer's id and epoch and the coordinator epoch the leader reported for it.
//!
//! The transaction's coordinator is not told. The command is for a transaction that no
//! coordinator will end (it holds the partition's last stable offset back, so read_committed
//! consumers stall); if a coordinator still tracks it, its own end later writes one more marker,
//! which finds no open transaction on this partition. Main thread only.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use kafka_protocol::ResponseError;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeTransactionsRequest, ListTransactionsRequest, ProducerId, TopicName,
    TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};

use crate::datetime::{format_timestamp_ms, now_ms};
use crate::output::{Output, Table};
use crate::session::{RETRY_BACKOFF, RETRY_COUNT_MAX, Session, describe_error};

#[derive(Debug, Subcommand)]
pub(crate) enum TransactionsCommand {
    /// List transactions (asks every broker).
    ///
    /// Each broker answers ListTransactions for the transactional ids it coordinates; the
    /// answers are merged, with the broker that gave each one.
    List {
        /// Only transactions in this state (repeatable).
        #[arg(long, value_enum, ignore_case = true, value_name = "S")]
        state: Vec<StateFilter>,
        /// Only transactions of this producer id (repeatable).
        #[arg(long, value_name = "ID")]
        producer_id: Vec<i64>,
        /// Only transactions that have been running for longer than MS milliseconds.
        #[arg(long, value_name = "MS")]
        duration_ms: Option<i64>,
    },
    /// Describe transactional ids at their coordinators.
    ///
    /// Shows each id's state, producer id and epoch, timeout, start time and partitions, as
    /// DescribeTransactions at the coordinator (found with FindCoordinator) reports them.
    Describe {
        /// Transactional ids.
        #[arg(required = true)]
        transactional_ids: Vec<String>,
    },
    /// Show the producers that partition leaders remember.
    ///
    /// Shows each producer's id, epoch, last sequence and timestamp, coordinator epoch, and the
    /// first offset of its open transaction, as DescribeProducers at each partition's leader
    /// reports them.
    Producers {
        /// Topic.
        #[arg(long, short = 't')]
        topic: String,
        /// Only these partitions (repeatable); default: all.
        #[arg(long, short = 'p')]
        partition: Vec<i32>,
    },
    /// Abort a hanging transaction on one partition.
    ///
    /// Writes an abort marker (WriteTxnMarkers) at the partition's leader for the producer whose
    /// open transaction starts at --start-offset, or the producer given by --producer-id, or the
    /// only producer with an open transaction there (as DescribeProducers reports them), with
    /// the producer epoch and coordinator epoch the leader reported. The transaction's
    /// coordinator is not told: use it for a transaction that holds the last stable offset back
    /// and that no coordinator will end.
    Abort {
        /// Topic.
        #[arg(long, short = 't')]
        topic: String,
        /// Partition.
        #[arg(long, short = 'p')]
        partition: i32,
        /// Abort this producer's open transaction.
        #[arg(long, value_name = "ID")]
        producer_id: Option<i64>,
        /// Abort the open transaction whose first offset is O (as `producers` shows it).
        #[arg(long, value_name = "O")]
        start_offset: Option<i64>,
    },
}

/// A transaction state to filter `list` by, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StateFilter {
    #[value(name = "Empty")]
    Empty,
    #[value(name = "Ongoing")]
    Ongoing,
    #[value(name = "PrepareCommit")]
    PrepareCommit,
    #[value(name = "PrepareAbort")]
    PrepareAbort,
    #[value(name = "CompleteCommit")]
    CompleteCommit,
    #[value(name = "CompleteAbort")]
    CompleteAbort,
    #[value(name = "PrepareEpochFence")]
    PrepareEpochFence,
}

impl StateFilter {
    /// Kafka's name of the state, as ListTransactions takes it.
    fn name(self) -> String {
        self.to_possible_value().map_or_else(String::new, |value| value.get_name().to_owned())
    }
}

pub(crate) fn run(session: &mut Session, command: &TransactionsCommand, output: Output) -> Result<()> {
    match command {
        TransactionsCommand::List { state, producer_id, duration_ms } => {
            let filters = ListFilters { states: state, producer_ids: producer_id, duration_ms: *duration_ms };
            list(session, &filters, output)
        }
        TransactionsCommand::Describe { transactional_ids } => describe(session, transactional_ids, output),
        TransactionsCommand::Producers { topic, partition } => producers(session, topic, partition, output),
        TransactionsCommand::Abort { topic, partition, producer_id, start_offset } => {
            let pick = Pick { producer_id: *producer_id, start_offset: *start_offset };
            abort(session, topic, *partition, pick, output)
        }
    }
}

struct ListFilters<'a> {
    states: &'a [StateFilter],
    producer_ids: &'a [i64],
    duration_ms: Option<i64>,
}

/// One transaction as ListTransactions reports it (keyed by id and the broker that answered).
struct Listed {
    producer_id: i64,
    state: String,
}

fn list(session: &mut Session, filters: &ListFilters<'_>, output: Output) -> Result<()> {
    let cluster = session.metadata(Some(&[]))?;
    let mut request = ListTransactionsRequest::default()
        .with_state_filters(filters.states.iter().map(|state| StrBytes::from_string(state.name())).collect())
        .with_producer_id_filters(filters.producer_ids.iter().map(|id| ProducerId(*id)).collect());
    if let Some(duration_ms) = filters.duration_ms {
        request = request.with_duration_filter(duration_ms);
    }
    // Keyed by (transactional id, coordinator): while a coordinator moves, two brokers may both
    // answer for an id, and both answers are shown.
    let mut listed: BTreeMap<(String, i32), Listed> = BTreeMap::new();
    for broker in &cluster.brokers {
        let connection = session.node(broker.node_id)?;
        let version = connection
            .versions()
            .version_for(ApiKey::ListTransactions)
            .with_context(|| format!("broker {} does not support listing transactions", broker.node_id))?;
        if filters.duration_ms.is_some() && version < 1 {
            bail!("broker {} does not support --duration-ms (it speaks ListTransactions v{version})", broker.node_id);
        }
        let response = send_retrying(|| {
            let response = connection
                .send(&request)
                .with_context(|| format!("ListTransactions request to broker {} failed", broker.node_id))?;
            Ok((response.error_code.err(), response))
        })
        .with_context(|| format!("cannot list transactions on broker {}", broker.node_id))?;
        if !response.unknown_state_filters.is_empty() {
            let unknown: Vec<&str> = response.unknown_state_filters.iter().map(StrBytes::as_str).collect();
            eprintln!(
                "sluicectl: warning: broker {} does not know the state(s) {}",
                broker.node_id,
                unknown.join(", ")
            );
        }
        for txn in response.transaction_states {
            let value = Listed { producer_id: txn.producer_id.0, state: txn.transaction_state.to_string() };
            listed.insert((txn.transactional_id.0.to_string(), broker.node_id), value);
        }
    }
    let json = Value::Array(
        listed
            .iter()
            .map(|((id, coordinator), txn)| {
                json!({"transactional_id": id, "producer_id": txn.producer_id, "state": txn.state, "coordinator": coordinator})
            })
            .collect(),
    );
    output.emit(&json, || {
        let mut table = Table::new(&["TRANSACTIONAL-ID", "PRODUCER-ID", "STATE", "COORDINATOR"]);
        for ((id, coordinator), txn) in &listed {
            table.push(vec![id.clone(), txn.producer_id.to_string(), txn.state.clone(), coordinator.to_string()]);
        }
        table.render()
    });
    Ok(())
}

/// Runs `attempt` until it answers no error, retrying retriable errors (a coordinator loading or
/// moving) with a pause, at most [`RETRY_COUNT_MAX`] times.
///
/// # Errors
/// The attempt's own errors; a non-retriable error code, or a retriable one that outlasts the
/// retries.
fn send_retrying<T>(mut attempt: impl FnMut() -> Result<(Option<ResponseError>, T)>) -> Result<T> {
    let mut count = 0;
    loop {
        match attempt()? {
            (None, answer) => return Ok(answer),
            (Some(error), _) if error.is_retriable() && count < RETRY_COUNT_MAX => {
                count += 1;
                std::thread::sleep(RETRY_BACKOFF);
            }
            (Some(error), _) => bail!("{error}"),
        }
    }
}

/// `DescribeTransactions` of one id at its coordinator: the coordinator's node id and the state.
fn describe_one(session: &mut Session, transactional_id: &str) -> Result<(i32, TransactionState)> {
    let request = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![TransactionalId(StrBytes::from_string(transactional_id.to_owned()))]);
    let mut attempt = 0;
    loop {
        // Looked up again on every attempt: NOT_COORDINATOR means the id has moved.
        let (coordinator, connection) = session.txn_coordinator(transactional_id)?;
        let response = connection.send(&request).context("DescribeTransactions request failed")?;
        let Some(state) = response.transaction_states.into_iter().next() else {
            bail!("DescribeTransactions returned no transaction for {transactional_id}");
        };
        match state.error_code.err() {
            None => return Ok((coordinator, state)),
            Some(ResponseError::TransactionalIdNotFound) => bail!("unknown transactional id {transactional_id}"),
            Some(error) if error.is_retriable() && attempt < RETRY_COUNT_MAX => {
                attempt += 1;
                std::thread::sleep(RETRY_BACKOFF);
            }
            Some(error) => bail!("cannot describe transactional id {transactional_id}: {error}"),
        }
    }
}

fn describe(session: &mut Session, transactional_ids: &[String], output: Output) -> Result<()> {
    let mut described = Vec::new();
    for id in transactional_ids {
        described.push(describe_one(session, id)?);
    }
    let now = now_ms();
    // Kafka's "no transaction under way" start time is -1; no duration is shown then.
    let duration_of = |state: &TransactionState| {
        (state.transaction_start_time_ms >= 0).then(|| (now - state.transaction_start_time_ms).max(0))
    };
    let partitions_of = |state: &TransactionState| -> Vec<(String, i32)> {
        state
            .topics
            .iter()
            .flat_map(|topic| topic.partitions.iter().map(|partition| (topic.topic.0.to_string(), *partition)))
            .collect()
    };
    let json = Value::Array(
        described
            .iter()
            .map(|(coordinator, state)| {
                let partitions: Vec<Value> = partitions_of(state)
                    .into_iter()
                    .map(|(topic, partition)| json!({"topic": topic, "partition": partition}))
                    .collect();
                json!({
                    "transactional_id": state.transactional_id.0.to_string(), "coordinator": coordinator,
                    "state": state.transaction_state.to_string(), "producer_id": state.producer_id.0,
                    "producer_epoch": state.producer_epoch, "timeout_ms": state.transaction_timeout_ms,
                    "start_time_ms": (state.transaction_start_time_ms >= 0).then_some(state.transaction_start_time_ms),
                    "duration_ms": duration_of(state), "partitions": partitions,
                })
            })
            .collect(),
    );
    output.emit(&json, || {
        let mut table = Table::new(&[
            "TRANSACTIONAL-ID",
            "COORDINATOR",
            "STATE",
            "PRODUCER-ID",
            "EPOCH",
            "TIMEOUT-MS",
            "START-TIME",
            "DURATION-MS",
            "PARTITIONS",
        ]);
        for (coordinator, state) in &described {
            let partitions: Vec<String> =
                partitions_of(state).iter().map(|(topic, partition)| format!("{topic}-{partition}")).collect();
            table.push(vec![
                state.transactional_id.0.to_string(),
                coordinator.to_string(),
                state.transaction_state.to_string(),
                state.producer_id.0.to_string(),
                state.producer_epoch.to_string(),
                state.transaction_timeout_ms.to_string(),
                format_timestamp_ms(state.transaction_start_time_ms),
                duration_of(state).map_or_else(|| "-".to_owned(), |duration| duration.to_string()),
                if partitions.is_empty() { "-".to_owned() } else { partitions.join(",") },
            ]);
        }
        table.render()
    });
    Ok(())
}

/// A producer as a partition leader's `DescribeProducers` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Producer {
    id: i64,
    epoch: i32,
    last_sequence: i32,
    last_timestamp_ms: i64,
    /// -1 when the leader knows none.
    coordinator_epoch: i32,
    /// First offset of the producer's open transaction, -1 when none is open.
    txn_start_offset: i64,
}

/// One partition's answer: its leader's node id and the producers it remembers.
type Described = (i32, Vec<Producer>);

/// `DescribeProducers` of `partitions` of `topic` (all when empty), asked of each partition's
/// leader; a leader that moved meanwhile is looked up again.
///
/// # Errors
/// Unknown topic or partition, a partition without a leader, connection errors, and partition
/// errors (retriable ones once they outlast the retries).
fn describe_producers(session: &mut Session, topic: &str, partitions: &[i32]) -> Result<BTreeMap<i32, Described>> {
    let mut attempt = 0;
    loop {
        let info = session.topic(topic)?;
        let all: Vec<i32> = info.partitions.iter().map(|partition| partition.partition).collect();
        if let Some(missing) = partitions.iter().find(|partition| !all.contains(partition)) {
            bail!("topic {topic} has no partition {missing}");
        }
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for partition in &info.partitions {
            if partitions.is_empty() || partitions.contains(&partition.partition) {
                if partition.leader_id < 0 {
                    bail!("partition {topic}-{} has no leader", partition.partition);
                }
                by_leader.entry(partition.leader_id).or_default().push(partition.partition);
            }
        }
        match describe_at_leaders(session, topic, &by_leader)? {
            Ok(described) => return Ok(described),
            // A leader that moved answers NOT_LEADER_OR_FOLLOWER: look it up again.
            Err((_, error)) if error.is_retriable() && attempt < RETRY_COUNT_MAX => {
                attempt += 1;
                std::thread::sleep(RETRY_BACKOFF);
            }
            Err((partition, error)) => bail!("cannot describe the producers of {topic}-{partition}: {error}"),
        }
    }
}

/// One `DescribeProducers` per leader. The inner error is the first partition that answered one.
fn describe_at_leaders(
    session: &mut Session,
    topic: &str,
    by_leader: &BTreeMap<i32, Vec<i32>>,
) -> Result<Result<BTreeMap<i32, Described>, (i32, ResponseError)>> {
    let mut described = BTreeMap::new();
    for (leader, partitions) in by_leader {
        let request = DescribeProducersRequest::default().with_topics(vec![
            TopicRequest::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_indexes(partitions.clone()),
        ]);
        let response = session
            .node(*leader)?
            .send(&request)
            .with_context(|| format!("DescribeProducers request to broker {leader} failed"))?;
        for answer in response.topics.into_iter().flat_map(|topic| topic.partitions) {
            if let Some(error) = answer.error_code.err() {
                if !error.is_retriable() {
                    let reason = describe_error(error, answer.error_message.as_deref());
                    bail!("cannot describe the producers of {topic}-{}: {reason}", answer.partition_index);
                }
                return Ok(Err((answer.partition_index, error)));
            }
            let producers = answer
                .active_producers
                .iter()
                .map(|state| Producer {
                    id: state.producer_id.0,
                    epoch: state.producer_epoch,
                    last_sequence: state.last_sequence,
                    last_timestamp_ms: state.last_timestamp,
                    coordinator_epoch: state.coordinator_epoch,
                    txn_start_offset: state.current_txn_start_offset,
                })
                .collect();
            described.insert(answer.partition_index, (*leader, producers));
        }
        if let Some(missing) = partitions.iter().find(|partition| !described.contains_key(partition)) {
            bail!("broker {leader} did not answer for {topic}-{missing} in DescribeProducers");
        }
    }
    Ok(Ok(described))
}

/// A value that Kafka reports as -1 when absent, as JSON (null then).
fn optional(value: i64) -> Value {
    if value < 0 { Value::Null } else { Value::from(value) }
}

/// A value that Kafka reports as -1 when absent, as a table cell (`-` then).
fn optional_cell(value: i64) -> String {
    if value < 0 { "-".to_owned() } else { value.to_string() }
}

fn producers(session: &mut Session, topic: &str, partitions: &[i32], output: Output) -> Result<()> {
    let described = describe_producers(session, topic, partitions)?;
    let rows: Vec<(i32, i32, Producer)> = described
        .iter()
        .flat_map(|(partition, (leader, producers))| {
            producers.iter().map(move |producer| (*partition, *leader, *producer))
        })
        .collect();
    let json = Value::Array(
        rows.iter()
            .map(|(partition, leader, producer)| {
                json!({
                    "topic": topic, "partition": partition, "leader": leader, "producer_id": producer.id,
                    "producer_epoch": producer.epoch, "last_sequence": producer.last_sequence,
                    "last_timestamp_ms": optional(producer.last_timestamp_ms),
                    "coordinator_epoch": optional(i64::from(producer.coordinator_epoch)),
                    "current_txn_start_offset": optional(producer.txn_start_offset),
                })
            })
            .collect(),
    );
    output.emit(&json, || {
        let mut table = Table::new(&[
            "PARTITION",
            "PRODUCER-ID",
            "EPOCH",
            "LAST-SEQUENCE",
            "LAST-TIMESTAMP",
            "COORDINATOR-EPOCH",
            "TXN-START-OFFSET",
        ]);
        for (partition, _, producer) in &rows {
            table.push(vec![
                partition.to_string(),
                producer.id.to_string(),
                producer.epoch.to_string(),
                producer.last_sequence.to_string(),
                format_timestamp_ms(producer.last_timestamp_ms),
                optional_cell(i64::from(producer.coordinator_epoch)),
                optional_cell(producer.txn_start_offset),
            ]);
        }
        table.render()
    });
    Ok(())
}

/// Which producer's transaction `abort` ends.
#[derive(Debug, Clone, Copy, Default)]
struct Pick {
    producer_id: Option<i64>,
    start_offset: Option<i64>,
}

/// The producer `pick` names among `producers` (those a leader reported for `partition_name`):
/// the one whose open transaction starts at the start offset (and has the producer id, when
/// both are given), else the one with the producer id, which must have an open transaction,
/// else the only one with an open transaction.
///
/// # Errors
/// When no producer, or more than one, fits.
fn pick_producer(producers: &[Producer], pick: Pick, partition_name: &str) -> Result<Producer> {
    let open: Vec<&Producer> = producers.iter().filter(|producer| producer.txn_start_offset >= 0).collect();
    let listed = || {
        let open: Vec<String> = open
            .iter()
            .map(|producer| format!("producer {} from offset {}", producer.id, producer.txn_start_offset))
            .collect();
        if open.is_empty() { "none is open".to_owned() } else { format!("open: {}", open.join(", ")) }
    };
    let fits = |producer: &&&Producer| {
        pick.start_offset.is_none_or(|offset| producer.txn_start_offset == offset)
            && pick.producer_id.is_none_or(|id| producer.id == id)
    };
    let chosen: Vec<&Producer> = open.iter().filter(fits).copied().collect();
    match (chosen.as_slice(), pick.start_offset, pick.producer_id) {
        ([producer], _, _) => Ok(**producer),
        ([], Some(offset), _) => {
            bail!("no open transaction on {partition_name} starts at offset {offset} ({})", listed())
        }
        ([], None, Some(id)) if producers.iter().any(|producer| producer.id == id) => {
            bail!("producer {id} has no open transaction on {partition_name}")
        }
        ([], None, Some(id)) => bail!("{partition_name} has no producer {id} ({})", listed()),
        ([], None, None) => bail!("no open transaction on {partition_name}"),
        (_, _, _) => bail!(
            "{} open transactions on {partition_name} ({}): choose one with --start-offset or --producer-id",
            chosen.len(),
            listed()
        ),
    }
}

fn abort(session: &mut Session, topic: &str, partition: i32, pick: Pick, output: Output) -> Result<()> {
    let partition_name = format!("{topic}-{partition}");
    let described = describe_producers(session, topic, &[partition])?;
    let Some((leader, producers)) = described.get(&partition) else {
        bail!("no producers reported for {partition_name}");
    };
    let producer = pick_producer(producers, pick, &partition_name)?;
    let producer_epoch = i16::try_from(producer.epoch)
        .with_context(|| format!("producer {} has epoch {} out of range", producer.id, producer.epoch))?;
    let marker = WritableTxnMarker::default()
        .with_producer_id(ProducerId(producer.id))
        .with_producer_epoch(producer_epoch)
        .with_transaction_result(false)
        .with_coordinator_epoch(producer.coordinator_epoch)
        .with_topics(vec![
            WritableTxnMarkerTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_indexes(vec![partition]),
        ]);
    let request = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
    let response = session
        .node(*leader)?
        .send(&request)
        .with_context(|| format!("WriteTxnMarkers request to broker {leader} failed"))?;
    let answer = response
        .markers
        .iter()
        .filter(|marker| marker.producer_id.0 == producer.id)
        .flat_map(|marker| marker.topics.iter().filter(|answered| answered.name.0.as_str() == topic))
        .flat_map(|answered| answered.partitions.iter())
        .find(|answered| answered.partition_index == partition);
    let Some(answer) = answer else { bail!("broker {leader} did not answer for {partition_name} in WriteTxnMarkers") };
    if let Some(error) = answer.error_code.err() {
        bail!(
            "cannot abort the transaction of producer {} on {partition_name} (at broker {leader}): {error}",
            producer.id
        );
    }
    let json = json!({
        "topic": topic, "partition": partition, "leader": leader, "producer_id": producer.id,
        "producer_epoch": producer_epoch, "coordinator_epoch": producer.coordinator_epoch,
        "start_offset": producer.txn_start_offset, "aborted": true,
    });
    output.emit(&json, || {
        format!(
            "Aborted the transaction of producer {} (epoch {producer_epoch}) on {partition_name} that started at offset \
             {}.\n",
            producer.id, producer.txn_start_offset
        )
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer(id: i64, txn_start_offset: i64) -> Producer {
        Producer {
            id,
            epoch: 3,
            last_sequence: 9,
            last_timestamp_ms: 1_700_000_000_000,
            coordinator_epoch: -1,
            txn_start_offset,
        }
    }

    fn picked(producers: &[Producer], producer_id: Option<i64>, start_offset: Option<i64>) -> Result<i64> {
        pick_producer(producers, Pick { producer_id, start_offset }, "t-0").map(|producer| producer.id)
    }

    #[test]
    fn start_offset_picks_the_transaction_that_starts_there() {
        let producers = [producer(1, 10), producer(2, 40), producer(3, -1)];
        assert_eq!(picked(&producers, None, Some(40)).expect("one starts at 40"), 2);
        let error = picked(&producers, None, Some(41)).expect_err("none starts at 41");
        assert!(error.to_string().contains("producer 1 from offset 10, producer 2 from offset 40"), "{error}");
        let error = picked(&producers, Some(1), Some(40)).expect_err("producer 1 does not start at 40");
        assert!(error.to_string().contains("starts at offset 40"), "{error}");
    }

    #[test]
    fn producer_id_must_have_an_open_transaction() {
        let producers = [producer(1, 10), producer(3, -1)];
        assert_eq!(picked(&producers, Some(1), None).expect("open"), 1);
        let error = picked(&producers, Some(3), None).expect_err("closed");
        assert!(error.to_string().contains("producer 3 has no open transaction on t-0"), "{error}");
        let error = picked(&producers, Some(7), None).expect_err("unknown");
        assert!(error.to_string().contains("t-0 has no producer 7"), "{error}");
    }

    #[test]
    fn without_a_choice_only_a_single_open_transaction_is_aborted() {
        assert_eq!(picked(&[producer(1, 10), producer(2, -1)], None, None).expect("single"), 1);
        let error = picked(&[producer(2, -1)], None, None).expect_err("none open");
        assert!(error.to_string().contains("no open transaction on t-0"), "{error}");
        let error = picked(&[producer(1, 10), producer(2, 12)], None, None).expect_err("two open");
        assert!(error.to_string().contains("2 open transactions on t-0"), "{error}");
        assert!(error.to_string().contains("--start-offset"), "{error}");
    }

    #[test]
    fn state_filters_carry_kafkas_names() {
        assert_eq!(StateFilter::Ongoing.name(), "Ongoing");
        assert_eq!(StateFilter::PrepareEpochFence.name(), "PrepareEpochFence");
        let parsed = StateFilter::from_str("completecommit", true).expect("case is ignored");
        assert_eq!(parsed.name(), "CompleteCommit");
    }
}
