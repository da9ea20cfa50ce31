//! The transaction coordinator (Kafka's transactions, transaction version 1): transactional
//! ids, their producer ids and epochs, and the two-phase end of each transaction (a Prepare
//! state stored, markers written to every partition of the transaction, a Complete state
//! stored), kept in the compacted internal topic `__transaction_state`.
//!
//! How it plugs in, as the group coordinator does (see `groups`):
//! 1. a transactional id lives on one shard: the owner of its `__transaction_state` partition,
//!    `abs(javaHash(id)) % partition count`. [`on_coordinator`] runs a closure there;
//! 2. each shard's [`TxnCoordinator`] (in `coordinator.rs`) holds the ids of the partitions this
//!    broker leads on that shard; [`TxnLeadership`] loads and unloads them as leadership moves,
//!    and a loaded Prepare state has its markers written again;
//! 3. markers go to each partition's leader: appended here when this broker leads it, sent as
//!    WriteTxnMarkers otherwise (`markers.rs`); a marker on an offsets partition settles the
//!    group coordinator's pending transactional offsets;
//! 4. the state machine itself is pure (`state.rs`), the record layout Kafka's (`records.rs`).
//!
//! Touched only by its own shard thread; forwarded closures carry `Send` request data only.

pub(crate) mod coordinator;
pub(crate) mod markers;
pub(crate) mod records;
mod state;

use std::future::Future;
use std::rc::Rc;
use std::sync::OnceLock;

use futures_util::future::LocalBoxFuture;
use kafka_protocol::ResponseError;
use sluice_engine::{ShardId, TopicConfig, TopicPartition};

pub(crate) use coordinator::TxnCoordinator;

use crate::context::{ShardContext, Shared};
use crate::metadata::{LeadershipChange, LeadershipListener, Role};

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

/// Follows leadership of `__transaction_state`, as `GroupLeadership` does for offsets.
#[derive(Debug)]
pub(crate) struct TxnLeadership {
    engine: sluice_engine::Engine,
}

impl TxnLeadership {
    pub(crate) fn new(engine: sluice_engine::Engine) -> Self {
        Self { engine }
    }
}

impl LeadershipListener for TxnLeadership {
    fn topic(&self) -> &str {
        TXN_TOPIC
    }

    fn changed(&self, changes: Vec<LeadershipChange>) -> LocalBoxFuture<'static, ()> {
        let engine = self.engine.clone();
        Box::pin(async move {
            let mut waits: Vec<LocalBoxFuture<'_, Result<(), crate::context::ShardGone>>> = Vec::new();
            for change in changes {
                let index = change.partition.partition.0;
                match change.role {
                    Some(Role::Leader { leader_epoch }) => {
                        let Some(target) = engine.shard_of(&change.partition) else {
                            tracing::error!(partition = %change.partition, "a transaction partition led here has no log");
                            continue;
                        };
                        waits.push(Box::pin(crate::context::on_shard(&engine, target, move |context| async move {
                            context.transactions.load(index, leader_epoch).await;
                        })));
                    }
                    Some(Role::Follower { .. }) | None => {
                        for shard in 0..engine.shard_count() {
                            let unload = crate::context::on_shard(
                                &engine,
                                ShardId(shard),
                                move |context: Rc<ShardContext>| async move { context.transactions.unload(index) },
                            );
                            waits.push(Box::pin(unload));
                        }
                    }
                }
            }
            for outcome in futures_util::future::join_all(waits).await {
                if outcome.is_err() {
                    tracing::debug!("a shard stopped before acting on a transaction leadership change");
                }
            }
        })
    }
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
