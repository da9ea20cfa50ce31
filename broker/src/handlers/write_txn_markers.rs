//! WriteTxnMarkers (v1): what a transaction coordinator on another broker sends to a partition
//! leader: append each transaction's commit or abort marker to each partition named (see
//! `transactions::markers`). Answers per partition.

use std::rc::Rc;

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{ApiKey, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use sluice_engine::TopicPartition;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};
use crate::transactions::markers::{Marker, write_local};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::WriteTxnMarkers, min: 1, max: 1 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: WriteTxnMarkersRequest,
) -> Outcome<WriteTxnMarkersResponse> {
    // Markers come from transaction coordinators only: every partition is refused otherwise.
    let refused = denied(&shard, &call, AclOperation::ClusterAction, Resource::Cluster);
    let mut markers = Vec::new();
    for written in &request.markers {
        let marker = Marker {
            producer_id: written.producer_id.0,
            producer_epoch: written.producer_epoch,
            commit: written.transaction_result,
            coordinator_epoch: written.coordinator_epoch,
        };
        let mut topics = Vec::new();
        for topic in &written.topics {
            let writes = topic.partition_indexes.iter().map(|index| {
                let partition = TopicPartition::new(topic.name.as_str(), *index);
                let shared = shard.shared.clone();
                async move {
                    match refused {
                        Some(error) => Err(error),
                        None => write_local(&shared, &partition, marker).await,
                    }
                }
            });
            let outcomes = futures_util::future::join_all(writes).await;
            let partitions = topic
                .partition_indexes
                .iter()
                .zip(outcomes)
                .map(|(index, outcome)| {
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(*index)
                        .with_error_code(outcome.err().map_or(0, |error| error.code()))
                })
                .collect();
            topics.push(
                WritableTxnMarkerTopicResult::default().with_name(topic.name.clone()).with_partitions(partitions),
            );
        }
        markers.push(WritableTxnMarkerResult::default().with_producer_id(written.producer_id).with_topics(topics));
    }
    Outcome::Respond(WriteTxnMarkersResponse::default().with_markers(markers))
}
