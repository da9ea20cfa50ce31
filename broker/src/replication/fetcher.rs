//! The follower's side: one fetcher per leader broker, fetching every partition this broker
//! follows from it with Kafka's Fetch (v12: a replica id, the current leader epoch and the last
//! fetched epoch of each partition), on the controller thread.
//!
//! Each round: for every partition followed from this leader, fetch from the local log end
//! (everything below it is fsynced, since follower appends are durable), long-polling up to
//! 500 ms. For each partition in the answer:
//! - a diverging epoch (the leader's log and this one part at an epoch): truncate to the
//!   leader's end of that epoch, and fetch again from there;
//! - records: append them whole batches at a time with the leader's offsets and epochs
//!   (`append_replica`, fsynced unless `--replica-fsync false`), then take the leader's high
//!   watermark (capped at the local end by the engine);
//! - NOT_LEADER_OR_FOLLOWER and the epoch errors: wait for the metadata to move on.
//!
//! Fetchers connect to the leader's inter-broker listener, with TLS and SASL when it runs them
//! (`net::peer::Connector`).
//!
//! A fetcher whose leader no longer leads anything this broker follows ends; a new one starts
//! when a partition follows that leader again. Connection errors back off for 200 ms.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::{Engine, Offset, TopicPartition};

use super::{Followed, Replication};
use crate::net::peer::PeerStream;

/// The Fetch version fetchers speak: flexible, with topic names, epochs and diverging epochs.
const FETCH_VERSION: i16 = 12;
/// How long the leader may hold a fetch with nothing new.
const MAX_WAIT_MS: i32 = 500;
/// Bytes asked per partition and per fetch.
const PARTITION_BYTES_MAX: i32 = 1 << 20;
const FETCH_BYTES_MAX: i32 = 16 << 20;
/// A fetch that takes longer than this has lost its leader.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Back-off after a failed exchange or when there is nothing to fetch from.
const BACKOFF: Duration = Duration::from_millis(200);

/// Fetches what this broker follows from `leader` until it follows nothing there.
pub(crate) async fn run(replication: Arc<Replication>, engine: Engine, leader: i32) {
    let mut connection: Option<(String, PeerStream)> = None;
    let connector = replication.connector();
    let mut correlation_id = 0i32;
    tracing::debug!(leader, "replica fetcher started");
    while let Some((partitions, address)) = replication.following(leader) {
        if partitions.is_empty() {
            if replication.retire_fetcher(leader) {
                break;
            }
            continue;
        }
        let Some(address) = address else {
            // The leader is fenced or unknown: the metadata will name another.
            let listener = replication.followed_changed.listen();
            let _ = compio::time::timeout(BACKOFF, listener).await;
            continue;
        };
        if connection.as_ref().is_none_or(|(connected, _)| *connected != address) {
            // The leader's inter-broker listener, through TLS and SASL when it runs them.
            let connected = compio::time::timeout(EXCHANGE_TIMEOUT, connector.connect(address.as_str())).await;
            if let Ok(Ok(stream)) = connected {
                connection = Some((address.clone(), stream));
            } else {
                if let Ok(Err(error)) = connected {
                    tracing::debug!(leader, %error, "cannot connect to the leader");
                }
                connection = None;
                replication.clock().sleep(BACKOFF).await;
                continue;
            }
        }
        let Some((_, stream)) = connection.as_mut() else { continue };
        let Some(request) = build_request(&replication, &engine, &partitions).await else {
            replication.clock().sleep(BACKOFF).await;
            continue;
        };
        correlation_id = correlation_id.wrapping_add(1);
        let exchanged = compio::time::timeout(EXCHANGE_TIMEOUT, exchange(stream, correlation_id, &request)).await;
        let response = match exchanged {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                tracing::debug!(leader, %error, "replica fetch failed");
                connection = None;
                replication.clock().sleep(BACKOFF).await;
                continue;
            }
            Err(_) => {
                tracing::debug!(leader, "replica fetch timed out");
                connection = None;
                continue;
            }
        };
        if !apply(&replication, &engine, &partitions, response).await {
            // Every partition was refused (leadership moving), or a log failed: wait a moment.
            let listener = replication.followed_changed.listen();
            let _ = compio::time::timeout(BACKOFF, listener).await;
        }
    }
    tracing::debug!(leader, "replica fetcher stopped");
}

/// The Fetch for `partitions`, each from its local log end; `None` when no partition can be
/// read here (its log is not open yet).
async fn build_request(
    replication: &Replication,
    engine: &Engine,
    partitions: &[(TopicPartition, Followed)],
) -> Option<FetchRequest> {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (partition, followed) in partitions {
        let Ok(offsets) = engine.offsets(partition).await else { continue };
        let last_fetched_epoch = engine.latest_epoch(partition).await.ok().flatten().unwrap_or(-1);
        let fetch = FetchPartition::default()
            .with_partition(partition.partition.0)
            .with_current_leader_epoch(followed.leader_epoch)
            .with_fetch_offset(offsets.local_end_offset.0)
            .with_last_fetched_epoch(last_fetched_epoch)
            .with_log_start_offset(offsets.log_start_offset.0)
            .with_partition_max_bytes(PARTITION_BYTES_MAX);
        let name = partition.topic.as_ref();
        match topics.iter_mut().find(|topic| topic.topic.0.as_str() == name) {
            Some(topic) => topic.partitions.push(fetch),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(name.to_owned())))
                    .with_partitions(vec![fetch]),
            ),
        }
    }
    if topics.is_empty() {
        return None;
    }
    Some(
        FetchRequest::default()
            .with_replica_id(BrokerId(replication.node_id()))
            .with_max_wait_ms(MAX_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_BYTES_MAX)
            .with_session_epoch(-1)
            .with_topics(topics),
    )
}

/// Sends one Fetch and reads its answer.
async fn exchange(
    stream: &mut PeerStream,
    correlation_id: i32,
    request: &FetchRequest,
) -> std::io::Result<FetchResponse> {
    let frame = crate::net::peer::Frame {
        api_key: ApiKey::Fetch,
        version: FETCH_VERSION,
        correlation_id,
        client_id: "sluice-replica-fetcher",
    };
    crate::net::peer::exchange(stream, frame, request).await
}

/// Applies an answer; `false` when every partition was refused or an append failed (the caller
/// then backs off).
async fn apply(
    replication: &Replication,
    engine: &Engine,
    partitions: &[(TopicPartition, Followed)],
    response: FetchResponse,
) -> bool {
    let fsync = replication.fsync();
    let mut any_served = false;
    let mut any_failed = false;
    for topic in response.responses {
        for answer in topic.partitions {
            let partition = TopicPartition::new(topic.topic.0.as_str(), answer.partition_index);
            let Some((_, asked)) = partitions.iter().find(|(followed, _)| *followed == partition) else { continue };
            // The metadata may have moved on while the fetch was out (this broker leads the
            // partition now, or follows another leader or epoch): an answer for the epoch it
            // was asked at must then not touch the log.
            if !replication.follows(&partition, asked) {
                tracing::debug!(%partition, "dropped a fetch answer for a leadership that has moved on");
                continue;
            }
            if answer.error_code != 0 {
                tracing::debug!(%partition, code = answer.error_code, "the leader refused a replica fetch");
                continue;
            }
            any_served = true;
            if answer.diverging_epoch.epoch >= 0 {
                let end = Offset(answer.diverging_epoch.end_offset);
                match engine.truncate_to(&partition, end).await {
                    Ok(ended) => tracing::info!(%partition, epoch = answer.diverging_epoch.epoch, end = ended.0,
                        "truncated a diverging log to the leader's"),
                    Err(error) => tracing::warn!(%partition, %error, "could not truncate a diverging log"),
                }
                continue;
            }
            if let Some(records) = answer.records.map(whole_batches).filter(|records| !records.is_empty())
                && let Err(error) = engine.append_replica(&partition, records, fsync).await
            {
                tracing::warn!(%partition, %error, "could not append fetched batches");
                // A failed log (a storage error latches it) fails every append until a restart:
                // back off instead of fetching again at once.
                any_failed = true;
                continue;
            }
            let _ = engine.set_high_watermark(&partition, Some(Offset(answer.high_watermark))).await;
        }
    }
    any_served && !any_failed
}

/// The whole batches at the front of `records`: a fetch may end inside a batch.
fn whole_batches(mut records: Bytes) -> Vec<u8> {
    let total = records.len();
    let mut end = 0usize;
    let mut view = records.clone();
    while view.remaining() >= 12 {
        let _base_offset = view.get_i64();
        let Ok(length) = usize::try_from(view.get_i32()) else { break };
        if view.remaining() < length {
            break;
        }
        view.advance(length);
        end += 12 + length;
    }
    debug_assert!(end <= total);
    records.truncate(end);
    records.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    #[test]
    fn a_partial_last_batch_is_left_for_the_next_fetch() {
        let mut records = BytesMut::new();
        for length in [20i32, 30] {
            records.put_i64(0);
            records.put_i32(length);
            records.put_slice(&vec![7u8; length as usize]);
        }
        let whole = records.len();
        records.put_i64(0);
        records.put_i32(100);
        records.put_slice(&[1u8; 40]);
        assert_eq!(whole_batches(records.freeze()).len(), whole);
        assert!(whole_batches(Bytes::from_static(&[0u8; 5])).is_empty());
    }
}
