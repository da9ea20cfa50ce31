//! DescribeProducers (v0, KIP-664): the producers each partition's leader remembers (id, epoch,
//! last sequence and timestamp, the first offset of an open transaction), so that an operator
//! can find a hanging transaction and abort it.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{ApiKey, DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::{code, message};
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::error::{EngineError, kafka_error};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::DescribeProducers, min: 0, max: 0 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: DescribeProducersRequest,
) -> Outcome<DescribeProducersResponse> {
    let image = shard.image();
    let node_id = shard.node_id();
    let mut topics = Vec::new();
    for topic in &request.topics {
        let known = image.topic(topic.name.as_str());
        let denied = denied(&shard, &call, AclOperation::Read, Resource::Topic(topic.name.as_str()));
        let mut partitions = Vec::new();
        for index in &topic.partition_indexes {
            let answer = PartitionResponse::default().with_partition_index(*index);
            let led = match known {
                Some(known) => crate::metadata::lead(node_id, known, *index, -1),
                None => Err(ResponseError::UnknownTopicOrPartition),
            };
            let led = denied.map_or(led, Err);
            let described = match led {
                Ok(led) => shard
                    .engine()
                    .producers(&led.partition)
                    .await
                    .map_err(|error| kafka_error(EngineError::Read(&error))),
                Err(error) => Err(error),
            };
            partitions.push(match described {
                Ok(producers) => answer.with_active_producers(
                    producers
                        .into_iter()
                        .map(|producer| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(producer.producer_id))
                                .with_producer_epoch(i32::from(producer.epoch))
                                .with_last_sequence(producer.last_sequence)
                                .with_last_timestamp(producer.last_timestamp_ms)
                                .with_coordinator_epoch(producer.coordinator_epoch)
                                .with_current_txn_start_offset(producer.current_txn_start_offset)
                        })
                        .collect(),
                ),
                Err(error) => answer.with_error_code(code(error)).with_error_message(message(error.to_string())),
            });
        }
        topics.push(TopicResponse::default().with_name(topic.name.clone()).with_partitions(partitions));
    }
    Outcome::Respond(DescribeProducersResponse::default().with_topics(topics))
}
