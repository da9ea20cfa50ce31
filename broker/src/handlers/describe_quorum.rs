//! DescribeQuorum (v0-v2): the controller quorum's state, as the active controller reports it
//! (a broker forwards the request there, as Kafka's brokers do): the leader and its epoch (the
//! Raft term), the high watermark (the offset after the last committed entry), each voter's and
//! observer's replicated log end and when it was last heard from, and (v2) the quorum members'
//! controller listeners.

use std::rc::Rc;

use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};

use super::{code, message, str_bytes, topic_name};
use crate::context::ShardContext;
use crate::controller::wire::ReplicaProgress;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::DescribeQuorum, min: 0, max: 2 };

/// The metadata log's name, as Kafka's quorum calls it.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    _request: DescribeQuorumRequest,
) -> Outcome<DescribeQuorumResponse> {
    if let Some(error) = denied(&shard, &call, AclOperation::Describe, Resource::Cluster) {
        return Outcome::Respond(DescribeQuorumResponse::default().with_error_code(error.code()));
    }
    let description = match shard.shared.metadata.describe_quorum().await {
        Ok(description) => description,
        Err(refusal) => {
            let response = DescribeQuorumResponse::default().with_error_code(code(refusal.error));
            let response =
                if call.version >= 2 { response.with_error_message(message(&refusal.message)) } else { response };
            return Outcome::Respond(response);
        }
    };
    let replica = |progress: &ReplicaProgress| {
        ReplicaState::default()
            .with_replica_id(BrokerId(progress.node_id))
            .with_log_end_offset(progress.log_end_offset)
            .with_last_fetch_timestamp(progress.last_fetch_ms)
            .with_last_caught_up_timestamp(progress.last_caught_up_ms)
    };
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(description.leader_id))
        .with_leader_epoch(description.leader_epoch)
        .with_high_watermark(description.high_watermark)
        .with_current_voters(description.voters.iter().map(replica).collect())
        .with_observers(description.observers.iter().map(replica).collect());
    let topic = TopicData::default().with_topic_name(topic_name(METADATA_TOPIC)).with_partitions(vec![partition]);
    let nodes = description
        .nodes
        .iter()
        .map(|(node_id, host, port)| {
            let listener = Listener::default()
                .with_name(str_bytes("CONTROLLER"))
                .with_host(str_bytes(host))
                .with_port(u16::try_from(*port).unwrap_or(0));
            Node::default().with_node_id(BrokerId(*node_id)).with_listeners(vec![listener])
        })
        .collect();
    Outcome::Respond(DescribeQuorumResponse::default().with_topics(vec![topic]).with_nodes(nodes))
}
