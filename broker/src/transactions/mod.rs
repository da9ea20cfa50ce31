//! The transaction coordinator (Kafka's transactions, transaction version 1): transactional
//! ids, their producer ids and epochs, and the two-phase end of each transaction (a Prepare
//! state stored, markers written to every partition of the transaction, a Complete state
//! stored), kept in the compacted internal topic `__transaction_state`.
//!
//! How it plugs in, as the group coordinator does (see `groups`):
//! 1. a transactional id lives on one shard: the owner of its `__transaction_state` partition,
//!    `abs(javaHash(id)) % partition count`. [`on_coordinator`] runs a closure there;
//! 2. each shard's [`TxnCoordinator`] (in `coordinator.rs`) holds the ids of the partitions this
//!    broker leads on that shard; [`leadership`] loads and unloads them as leadership moves,
//!    and a loaded Prepare state has its markers written again;
//! 3. markers go to each partition's leader: appended here when this broker leads it, sent as
//!    WriteTxnMarkers otherwise (`markers.rs`); a marker on an offsets partition settles the
//!    group coordinator's pending transactional offsets;
//! 4. the state machine itself is pure (`state.rs`), the record layout Kafka's (`records.rs`).
//!
//! Touched only by its own shard thread; forwarded closures carry `Send` request data only.

pub(crate) mod coordinator;
pub(crate) mod markers;
pub(crate) mod ordering;
pub(crate) mod records;
mod state;

use std::future::Future;
use std::rc::Rc;
use std::sync::OnceLock;

use kafka_protocol::ResponseError;
use sluice_engine::{TopicConfig, TopicPartition};

pub(crate) use coordinator::TxnCoordinator;

use crate::context::{ShardContext, Shared};

/// The internal topic holding transaction state.
pub(crate) const TXN_TOPIC: &str = "__transaction_state";

/// Settings of the transaction coordinator, with Kafka's names and defaults, read once per
/// process from `SLUICE_*` variables named after Kafka's broker configs (as `GroupConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxnConfig {
    /// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a producer may ask.
    pub(crate) max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: an id idle this long (no transaction) is forgotten.
    pub(crate) id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub(crate) abort_check_interval_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    pub(crate) expiry_check_interval_ms: i64,
    /// `transaction.state.log.num.partitions`, used when the topic is first created.
    pub(crate) topic_partition_count: i32,
    /// `transaction.state.log.replication.factor`, capped at the brokers registered then.
    pub(crate) topic_replication_factor: i16,
    /// `transaction.state.log.segment.bytes`.
    pub(crate) topic_segment_bytes: u64,
    /// The finalized `transaction.version` feature advertised to clients: 2 (Kafka 4.x's
    /// default: KIP-890 part 2, an epoch per transaction) or 1.
    pub(crate) transaction_version: i16,
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self {
            max_timeout_ms: 900_000,
            id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            abort_check_interval_ms: 10_000,
            expiry_check_interval_ms: 3_600_000,
            topic_partition_count: 50,
            topic_replication_factor: 3,
            topic_segment_bytes: 100 * 1024 * 1024,
            transaction_version: 2,
        }
    }
}

impl TxnConfig {
    /// The process-wide settings, read from the environment on first use.
    pub(crate) fn global() -> Self {
        static CONFIG: OnceLock<TxnConfig> = OnceLock::new();
        *CONFIG.get_or_init(|| Self::from_lookup(|name| std::env::var(name).ok()))
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let defaults = Self::default();
        let read = |name: &str, min: i64, max: i64, default: i64| -> i64 {
            let Some(text) = lookup(name) else { return default };
            match text.trim().parse::<i64>() {
                Ok(value) if (min..=max).contains(&value) => value,
                _ => {
                    tracing::error!(setting = name, value = %text, min, max, "invalid transaction setting, using the default");
                    default
                }
            }
        };
        let int_max = i64::from(i32::MAX);
        Self {
            max_timeout_ms: read("SLUICE_TRANSACTION_MAX_TIMEOUT_MS", 1, int_max, i64::from(defaults.max_timeout_ms))
                as i32,
            id_expiration_ms: read("SLUICE_TRANSACTIONAL_ID_EXPIRATION_MS", 1, int_max, defaults.id_expiration_ms),
            abort_check_interval_ms: read(
                "SLUICE_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS",
                1,
                int_max,
                defaults.abort_check_interval_ms,
            ),
            expiry_check_interval_ms: read(
                "SLUICE_TRANSACTION_REMOVE_EXPIRED_TRANSACTION_CLEANUP_INTERVAL_MS",
                1,
                int_max,
                defaults.expiry_check_interval_ms,
            ),
            topic_partition_count: read(
                "SLUICE_TRANSACTION_STATE_LOG_NUM_PARTITIONS",
                1,
                10_000,
                i64::from(defaults.topic_partition_count),
            ) as i32,
            topic_replication_factor: read(
                "SLUICE_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                1,
                i64::from(i16::MAX),
                i64::from(defaults.topic_replication_factor),
            ) as i16,
            topic_segment_bytes: defaults.topic_segment_bytes,
            transaction_version: read("SLUICE_TRANSACTION_VERSION", 1, 2, i64::from(defaults.transaction_version))
                as i16,
        }
    }
}

/// Runs `task` with the coordinator of `transactional_id` (on the shard holding its partition)
/// and returns its answer.
///
/// # Errors
/// NOT_COORDINATOR when this broker does not hold the id's partition (or the topic does not
/// exist), COORDINATOR_NOT_AVAILABLE when the shard stopped.
pub(crate) async fn on_coordinator<T, F, Fut>(
    shard: &ShardContext,
    transactional_id: &str,
    task: F,
) -> Result<T, ResponseError>
where
    F: FnOnce(Rc<TxnCoordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let image = shard.image();
    let topic = image.topic(TXN_TOPIC).ok_or(ResponseError::NotCoordinator)?;
    let index = crate::groups::Coordinator::partition_of(transactional_id, topic.partition_count());
    let partition = TopicPartition::new(TXN_TOPIC, index);
    let target = shard.engine().shard_of(&partition).ok_or(ResponseError::NotCoordinator)?;
    crate::context::on_shard(shard.engine(), target, move |context| task(context.transactions.clone()))
        .await
        .map_err(|_gone| ResponseError::CoordinatorNotAvailable)
}

/// The AddPartitionsToTxn version a leader sends (v5: batched, `verify_only` or an add for a
/// transaction-version-2 producer).
const VERIFY_VERSION: i16 = 5;
/// How long a verification waits for a coordinator on another broker.
const VERIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// KIP-890 on a partition leader (and a group coordinator): asks the transactional id's
/// coordinator whether `partition` is in the producer's open transaction, or with `add` (a
/// transaction-version-2 producer, which never sends AddPartitionsToTxn itself) adds it;
/// directly when this broker is the coordinator, with AddPartitionsToTxn v5 otherwise.
///
/// # Errors
/// INVALID_TXN_STATE when it is not in it; NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE,
/// CONCURRENT_TRANSACTIONS and the coordinator's producer errors (PRODUCER_FENCED,
/// INVALID_PRODUCER_ID_MAPPING) otherwise.
pub(crate) async fn verify_partition(
    shard: &ShardContext,
    transactional_id: &str,
    producer: (i64, i16),
    partition: (String, i32),
    add: bool,
) -> Result<(), ResponseError> {
    use kafka_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, ProducerId};

    let image = shard.image();
    let topic = image.topic(TXN_TOPIC).ok_or(ResponseError::CoordinatorNotAvailable)?;
    let index = crate::groups::Coordinator::partition_of(transactional_id, topic.partition_count());
    let leader = topic.partition(index).map(|state| state.leader).ok_or(ResponseError::CoordinatorNotAvailable)?;
    if leader == shard.node_id() {
        let id = transactional_id.to_owned();
        return on_coordinator(shard, transactional_id, move |coordinator| async move {
            if add {
                coordinator.add_partitions(&id, producer, &[partition], state::TRANSACTION_VERSION_2).await
            } else {
                coordinator.verify(&id, producer, &partition)
            }
        })
        .await
        .and_then(|outcome| outcome);
    }
    let broker =
        image.brokers.get(&leader).filter(|broker| !broker.fenced).ok_or(ResponseError::CoordinatorNotAvailable)?;
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(crate::handlers::str_bytes(transactional_id).into())
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_verify_only(!add)
            .with_topics(vec![
                AddPartitionsToTxnTopic::default()
                    .with_name(crate::handlers::topic_name(&partition.0))
                    .with_partitions(vec![partition.1]),
            ]),
    ]);
    let address = format!("{}:{}", broker.host, broker.port);
    let answer: std::io::Result<AddPartitionsToTxnResponse> =
        crate::net::peer::call(&address, ApiKey::AddPartitionsToTxn, VERIFY_VERSION, &request, VERIFY_TIMEOUT).await;
    let response = answer.map_err(|error| {
        tracing::debug!(address, %error, "transaction verification with a coordinator failed");
        ResponseError::CoordinatorNotAvailable
    })?;
    if let Some(error) = ResponseError::try_from_code(response.error_code) {
        return Err(error);
    }
    let codes = response.results_by_transaction.iter().flat_map(|result| &result.topic_results);
    let code = codes
        .flat_map(|topic| &topic.results_by_partition)
        .map(|result| result.partition_error_code)
        .next()
        .ok_or(ResponseError::UnknownServerError)?;
    ResponseError::try_from_code(code).map_or(Ok(()), Err)
}

/// Follows leadership of `__transaction_state`, as [`crate::groups::leadership`] does for
/// offsets.
pub(crate) fn leadership(engine: sluice_engine::Engine) -> crate::leadership::CoordinatorLeadership {
    crate::leadership::CoordinatorLeadership::new(
        engine,
        TXN_TOPIC,
        |context, index, leader_epoch| Box::pin(async move { context.transactions.load(index, leader_epoch).await }),
        |context, index| context.transactions.unload(index),
    )
}

/// The config of `__transaction_state`: compacted, smaller segments.
pub(crate) fn txn_topic_config(defaults: &TopicConfig, config: &TxnConfig) -> TopicConfig {
    let mut topic = defaults.clone();
    topic.cleanup_policy.compact = true;
    topic.cleanup_policy.delete = false;
    topic.retention_ms = -1;
    topic.retention_bytes = -1;
    topic.segment_bytes = config.topic_segment_bytes;
    topic
}

/// Creates `__transaction_state` when the cluster has none yet, as Kafka does at the first
/// transactional FindCoordinator: `transaction.state.log.num.partitions` partitions, as many
/// replicas as `transaction.state.log.replication.factor` asks (a cluster waits until that many
/// brokers are live; a single node uses one).
///
/// # Errors
/// COORDINATOR_NOT_AVAILABLE while a cluster has too few live brokers, or the controller's
/// refusal.
pub(crate) async fn ensure_txn_topic(shared: &Shared) -> Result<(), crate::metadata::Refusal> {
    let metadata = &shared.metadata;
    let image = metadata.image();
    if image.topic(TXN_TOPIC).is_some() {
        return Ok(());
    }
    let config = TxnConfig::global();
    let brokers = image.live_brokers().count().max(1);
    if shared.config.clustered() && brokers < usize::try_from(config.topic_replication_factor).unwrap_or(0) {
        return Err(crate::metadata::Refusal::new(
            ResponseError::CoordinatorNotAvailable,
            format!(
                "{brokers} live brokers, fewer than transaction.state.log.replication.factor ({})",
                config.topic_replication_factor
            ),
        ));
    }
    let replication_factor = i16::try_from(brokers).unwrap_or(i16::MAX).min(config.topic_replication_factor);
    let topic = crate::metadata::NewTopic {
        name: TXN_TOPIC.to_owned(),
        partition_count: Some(config.topic_partition_count),
        replication_factor: Some(replication_factor),
        assignments: Vec::new(),
        config: txn_topic_config(&shared.config.default_topic_config, &config),
    };
    match metadata.create_topics(vec![topic], false).await.into_iter().next() {
        Some(Ok(_)) => {
            tracing::info!(topic = TXN_TOPIC, replication_factor, "created the transaction state topic");
            Ok(())
        }
        Some(Err(refusal)) if refusal.error == ResponseError::TopicAlreadyExists => Ok(()),
        Some(Err(refusal)) => Err(refusal),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_kafka_named_variables() {
        assert_eq!(TxnConfig::from_lookup(|_| None), TxnConfig::default());
        let config = TxnConfig::from_lookup(|name| match name {
            "SLUICE_TRANSACTION_MAX_TIMEOUT_MS" => Some("60000".to_owned()),
            "SLUICE_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS" => Some("-5".to_owned()),
            _ => None,
        });
        assert_eq!(config.max_timeout_ms, 60_000);
        assert_eq!(config.abort_check_interval_ms, TxnConfig::default().abort_check_interval_ms);
    }
}
