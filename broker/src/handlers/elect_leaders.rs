//! ElectLeaders (v0-v2): preferred-replica elections (v0 always; v1+ `election_type` 0) and
//! unclean elections (`election_type` 1), decided by the active controller. A request naming no
//! partitions (null) asks for every partition; its answer then lists only the partitions where
//! an election was needed, as Kafka's does.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ApiKey, ElectLeadersRequest, ElectLeadersResponse};

use super::{code, message, topic_name};
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::ElectLeaders, min: 0, max: 2 };

const ELECTION_UNCLEAN: i8 = 1;

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: ElectLeadersRequest,
) -> Outcome<ElectLeadersResponse> {
    if let Some(error) = denied(&shard, &call, AclOperation::Alter, Resource::Cluster) {
        // v0 has no top-level error: the refusal is an answer without results.
        let response = ElectLeadersResponse::default();
        return Outcome::Respond(if call.version >= 1 { response.with_error_code(error.code()) } else { response });
    }
    let unclean = call.version >= 1 && request.election_type == ELECTION_UNCLEAN;
    let everything = request.topic_partitions.is_none();
    let partitions: Vec<(String, i32)> = match &request.topic_partitions {
        Some(topics) => topics
            .iter()
            .flat_map(|topic| topic.partitions.iter().map(|partition| (topic.topic.0.to_string(), *partition)))
            .collect(),
        None => shard
            .image()
            .topics()
            .flat_map(|topic| (0..topic.partition_count()).map(|index| (topic.name.to_string(), index)))
            .collect(),
    };
    let answers = shard.shared.metadata.elect_leaders(unclean, partitions.clone()).await;
    let mut results: Vec<ReplicaElectionResult> = Vec::new();
    for ((topic, partition), answer) in partitions.into_iter().zip(answers) {
        let (error_code, text) = match answer {
            Ok(()) => (0, None),
            Err(refusal) if everything && refusal.error == ResponseError::ElectionNotNeeded => continue,
            Err(refusal) => (code(refusal.error), Some(refusal.message)),
        };
        let result = PartitionResult::default()
            .with_partition_id(partition)
            .with_error_code(error_code)
            .with_error_message(text.and_then(message));
        match results.iter_mut().find(|found| found.topic.0.as_str() == topic) {
            Some(found) => found.partition_result.push(result),
            None => results.push(
                ReplicaElectionResult::default().with_topic(topic_name(&topic)).with_partition_result(vec![result]),
            ),
        }
    }
    Outcome::Respond(ElectLeadersResponse::default().with_replica_election_results(results))
}
