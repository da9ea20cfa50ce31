//! Produce (v3-v12; v0-v2 are advertised but refused in `dispatch`; v12 comes from transaction
//! version 2 producers, whose first batch on a partition adds it to their transaction).
//!
//! Steps:
//! 1. check `acks` (0, 1 or -1), and check in the metadata image that this broker leads each partition (Kafka's errors
//!    otherwise: UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER);
//! 2. for every partition, copy the records bytes once into the `Vec<u8>` the engine takes, and
//!    issue all appends at once, in request order (the engine validates each batch's header and
//!    CRC, checks idempotent producer sequences, and assigns offsets in arrival order on the
//!    owning shard; a duplicate batch is answered with its original offset);
//! 3. gather the results; acks=-1 appends are answered only once fsynced, and on a replicated
//!    partition once every in-sync replica has them fsynced too (the high watermark passed
//!    them): NOT_ENOUGH_REPLICAS before the append while the ISR is smaller than
//!    `min.insync.replicas`, NOT_ENOUGH_REPLICAS_AFTER_APPEND if it shrank meanwhile,
//!    REQUEST_TIMED_OUT after the request's `timeout_ms`;
//! 4. with acks=0 send nothing, but close the connection if any partition failed, as Kafka does,
//!    so the client notices.

use std::rc::Rc;
use std::time::Duration;

use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::{AppendError, AppendOptions, AppendResult, RefusedAppend, TopicPartition};

use super::{code, message};
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::error::append_error_code;
use crate::metrics::batch_count;

/// Why a partition's append failed, as the response tells it.
#[derive(Debug, Clone)]
struct Failure {
    code: i16,
    message: String,
    /// Refused records within their batch, with why (Produce v8+ `record_errors`).
    record_errors: Vec<(i32, String)>,
}

impl Failure {
    fn new(code: i16, message: String) -> Self {
        Self { code, message, record_errors: Vec::new() }
    }

    fn of_append(partition: &TopicPartition, error: &AppendError) -> Self {
        let AppendError::RecordsRejected { record_indexes, reason, .. } = error else {
            return Self::new(append_error_code(error), error.to_string());
        };
        // Kafka's wording, so that clients and people see what Kafka would tell them.
        let detail = match reason {
            sluice_engine::RecordRejection::MissingKeyOnCompactedTopic => {
                format!("Compacted topic cannot accept message without key in topic partition {partition}.")
            }
        };
        let record_errors: Vec<(i32, String)> = record_indexes.iter().map(|index| (*index, detail.clone())).collect();
        let shown: Vec<String> = record_errors
            .iter()
            .take(3)
            .map(|(index, detail)| format!("RecordError(batchIndex={index}, message='{detail}')"))
            .collect();
        let message = format!(
            "One or more records have been rejected due to {} record errors in total, and only showing the first \
             three errors at most: [{}]",
            record_errors.len(),
            shown.join(", ")
        );
        Self { code: append_error_code(error), message, record_errors }
    }
}

/// One partition's outcome.
type PartitionResult = Result<AppendResult, Failure>;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::Produce, min: 0, max: 12 };

pub(crate) async fn handle(shard: Rc<ShardContext>, call: Call, request: ProduceRequest) -> Outcome<ProduceResponse> {
    let version = call.version;
    let acks = request.acks;
    let refusal = (!matches!(acks, -1..=1)).then(|| {
        Failure::new(code(ResponseError::InvalidRequiredAcks), format!("acks must be 0, 1 or -1, not {acks}"))
    });
    let durable = acks == -1;
    let image = shard.image();
    let node_id = shard.node_id();
    let mut appends = Vec::new();
    for topic in &request.topic_data {
        let known = image.topic(topic.name.as_str());
        let denied = crate::security::checks::produce_denied(&shard, &call, &request, topic.name.as_str());
        for partition in &topic.partition_data {
            let led = match known {
                Some(known) => crate::metadata::lead(node_id, known, partition.index, -1),
                None => Err(ResponseError::UnknownTopicOrPartition),
            };
            let led = denied.map_or(led, Err);
            let refusal = refusal
                .clone()
                .or_else(|| led.as_ref().err().map(|error| Failure::new(code(*error), error.to_string())));
            let (target, options, replica_count) = match led {
                Ok(led) => {
                    (led.partition, AppendOptions { durable, leader_epoch: led.leader_epoch }, led.replica_count)
                }
                Err(_) => (TopicPartition::new(topic.name.as_str(), partition.index), AppendOptions::default(), 1),
            };
            let records = partition.records.clone();
            let engine = shard.engine().clone();
            let metrics_shard = shard.clone();
            let min_insync = known.map_or(1, |known| crate::metadata::image::min_insync_replicas(&known.config));
            let replication = shard.shared.metadata.replication().clone();
            let clock = shard.shared.clock.clone();
            let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0));
            let transactional_id =
                request.transactional_id.as_ref().filter(|id| !id.is_empty()).map(|id| id.0.to_string());
            appends.push(async move {
                if let Some(refused) = refusal {
                    return Err(refused);
                }
                // acks=all to a replicated partition: Kafka refuses it up front while the ISR is
                // smaller than min.insync.replicas.
                let isr_size = if durable {
                    replication.in_sync_replicas(&target, options.leader_epoch, replica_count).map_err(|why| {
                        let error = why.error();
                        Failure::new(code(error), error.to_string())
                    })?
                } else {
                    None
                };
                if isr_size.is_some_and(|size| size < min_insync) {
                    let message = format!("the ISR is smaller than min.insync.replicas ({min_insync})");
                    return Err(Failure::new(code(ResponseError::NotEnoughReplicas), message));
                }
                let Some(records) = records.filter(|records| !records.is_empty()) else {
                    return Err(Failure::new(code(ResponseError::CorruptMessage), "no records".to_owned()));
                };
                // Markers are the coordinator's to write, never a client's (Kafka's INVALID_RECORD).
                if sluice_engine::batch::parse_header(&records).is_ok_and(|header| header.is_control()) {
                    return Err(Failure::new(
                        code(ResponseError::InvalidRecord),
                        "a client sent a control batch".to_owned(),
                    ));
                }
                let metrics = metrics_shard.metrics();
                metrics.add_batches_in(batch_count(&records));
                // The one copy of the produced bytes: from the request frame into the buffer the
                // engine owns from here on.
                let batch = records.to_vec();
                let appended = match &transactional_id {
                    None => engine.append(&target, batch, options).await.map_err(|error| {
                        tracing::debug!(partition = %target, %error, "append failed");
                        Failure::of_append(&target, &error)
                    }),
                    Some(id) => append_in_transaction(&metrics_shard, (id, version), &target, batch, options).await,
                }?;
                if isr_size.is_some() {
                    let deadline = clock.now() + timeout;
                    let end = appended.last_offset.0 + 1;
                    let waited = replication.wait_replicated(&target, options.leader_epoch, end, min_insync, deadline);
                    if let Err(why) = waited.await {
                        let error = why.error();
                        return Err(Failure::new(code(error), error.to_string()));
                    }
                }
                Ok(appended)
            });
        }
    }
    let mut results = join_all(appends).await.into_iter();
    let throttle_time_ms =
        crate::quota::charge_produce(&shard, &call, || crate::quota::request_size_bytes(&request, version));
    if acks == 0 {
        return if results.any(|result| result.is_err()) {
            Outcome::Close("acks=0 produce failed")
        } else {
            Outcome::Silent
        };
    }
    let responses = request
        .topic_data
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .iter()
                .zip(results.by_ref())
                .map(|(partition, result)| partition_response(version, partition.index, result))
                .collect();
            TopicProduceResponse::default().with_name(topic.name.clone()).with_partition_responses(partitions)
        })
        .collect();
    let mut response = ProduceResponse::default().with_responses(responses).with_throttle_time_ms(throttle_time_ms);
    if version >= 10 {
        tell_current_leaders(&image, &mut response, &call.session.listener);
    }
    Outcome::Respond(response)
}

/// Appends a transactional producer's batch. The first batch of a transaction on a partition is
/// appended only once the transaction's coordinator confirms the partition was added to it
/// (KIP-890 part 1), so a late batch of an ended transaction cannot open a hanging one. The
/// producer's pipelined batches stay in order meanwhile (see `transactions::ordering`).
///
/// A transaction-version-2 producer (Produce v12+) never adds partitions itself: the check
/// adds the partition to its transaction. Coordinator errors map as Kafka's leader maps them.
async fn append_in_transaction(
    shard: &ShardContext,
    transaction: (&str, i16),
    target: &TopicPartition,
    batch: Vec<u8>,
    options: AppendOptions,
) -> Result<AppendResult, Failure> {
    let (transactional_id, version) = transaction;
    let of_append = |error: AppendError| Failure::of_append(target, &error);
    let Ok(header) = sluice_engine::batch::parse_header(&batch) else {
        return shard.engine().append(target, batch, options).await.map_err(of_append);
    };
    // Taken before the first await, so in request order.
    let ticket = shard.txn_append_order.take(target, header.producer_id);
    let first_try = shard.engine().append_in_transaction(target, batch, options).await;
    let outcome = match first_try {
        Err(RefusedAppend {
            error: AppendError::TransactionNotOpen { .. } | AppendError::OutOfOrderSequence { .. },
            batches: Some(batch),
        }) if ticket.behind_others() => {
            // An earlier batch of this producer is being verified or written: this one follows it.
            ticket.wait_for_earlier().await;
            shard.engine().append_in_transaction(target, batch, options).await
        }
        other => other,
    };
    let batch = match outcome {
        Ok(appended) => return Ok(appended),
        Err(refused) => match (refused.error, refused.batches) {
            (AppendError::TransactionNotOpen { .. }, Some(batch)) => batch,
            (error, _) => return Err(of_append(error)),
        },
    };
    let producer = (header.producer_id, header.producer_epoch);
    let add = version >= TRANSACTION_V2_PRODUCE_VERSION;
    let mut attempts = 0;
    loop {
        let partition = (target.topic.to_string(), target.partition.0);
        match crate::transactions::verify_partition(shard, transactional_id, producer, partition, add).await {
            Ok(()) => return shard.engine().append(target, batch, options).await.map_err(of_append),
            // The previous transaction's markers are still being written: Kafka's leader retries
            // for up to 100 ms before answering.
            Err(ResponseError::ConcurrentTransactions) if attempts < VERIFY_RETRIES_MAX => {
                attempts += 1;
                shard.shared.clock.sleep(VERIFY_RETRY_BACKOFF).await;
            }
            Err(error) => {
                tracing::debug!(partition = %target, transactional_id, ?error, "a transactional batch was not verified");
                let error = match error {
                    ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
                    ResponseError::ConcurrentTransactions if !add => ResponseError::NotEnoughReplicas,
                    ResponseError::NetworkException
                    | ResponseError::CoordinatorLoadInProgress
                    | ResponseError::CoordinatorNotAvailable
                    | ResponseError::NotCoordinator => ResponseError::NotEnoughReplicas,
                    other => other,
                };
                return Err(Failure::new(
                    code(error),
                    format!("the transaction's coordinator refused the partition: {error:?}"),
                ));
            }
        }
    }
}

/// Produce versions from transaction version 2 clients (KIP-890 part 2).
const TRANSACTION_V2_PRODUCE_VERSION: i16 = 12;
/// How often, and how far apart, a leader asks a coordinator again that answered
/// CONCURRENT_TRANSACTIONS.
const VERIFY_RETRIES_MAX: u32 = 5;
const VERIFY_RETRY_BACKOFF: Duration = Duration::from_millis(20);

/// KIP-951: a partition refused with NOT_LEADER_OR_FOLLOWER names its current leader and epoch,
/// and the response carries those leaders' endpoints, so the client re-routes at once.
fn tell_current_leaders(image: &crate::metadata::MetadataImage, response: &mut ProduceResponse, listener: &str) {
    let not_leader = code(ResponseError::NotLeaderOrFollower);
    let mut leaders = Vec::new();
    for topic in &mut response.responses {
        let Some(known) = image.topic(topic.name.as_str()) else { continue };
        for partition in topic.partition_responses.iter_mut().filter(|partition| partition.error_code == not_leader) {
            if let Some((leader, epoch)) = crate::metadata::current_leader(known, partition.index) {
                partition.current_leader =
                    LeaderIdAndEpoch::default().with_leader_id(BrokerId(leader)).with_leader_epoch(epoch);
                leaders.push(leader);
            }
        }
    }
    response.node_endpoints = crate::metadata::endpoints(image, leaders, listener)
        .into_iter()
        .map(|endpoint| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(endpoint.node_id))
                .with_host(StrBytes::from_string(endpoint.host))
                .with_port(endpoint.port)
                .with_rack(endpoint.rack.map(StrBytes::from_string))
        })
        .collect();
}

fn partition_response(version: i16, index: i32, result: PartitionResult) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default().with_index(index);
    match result {
        Ok(appended) => response
            .with_base_offset(appended.base_offset.0)
            .with_log_append_time_ms(appended.log_append_time_ms)
            .with_log_start_offset(appended.log_start_offset.0),
        Err(failure) => {
            let response = response.with_error_code(failure.code).with_base_offset(-1).with_log_append_time_ms(-1);
            let response = response.with_log_start_offset(-1);
            if version < 8 {
                return response;
            }
            let record_errors = failure
                .record_errors
                .into_iter()
                .map(|(index, text)| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(index)
                        .with_batch_index_error_message(message(text))
                })
                .collect();
            response.with_error_message(message(failure.message)).with_record_errors(record_errors)
        }
    }
}
