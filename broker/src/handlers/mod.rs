//! One file per Kafka API. Each exposes `async fn handle(shard, version, request)` returning an
//! [`Outcome`](crate::dispatch::Outcome). Handlers run on the connection's shard; the engine
//! routes every partition operation to the partition's owning shard and back, so a handler that
//! issues its partition calls together has split the request by shard and gathers the answers.
//!
//! Shared helpers for names and ids live here.

pub(crate) mod add_offsets_to_txn;
pub(crate) mod add_partitions_to_txn;
pub(crate) mod alter_client_quotas;
pub(crate) mod alter_configs;
pub(crate) mod alter_partition_reassignments;
pub(crate) mod alter_user_scram_credentials;
pub(crate) mod api_versions;
pub(crate) mod consumer_group_describe;
pub(crate) mod consumer_group_heartbeat;
pub(crate) mod create_acls;
pub(crate) mod create_partitions;
pub(crate) mod create_topics;
pub(crate) mod delete_acls;
pub(crate) mod delete_groups;
pub(crate) mod delete_records;
pub(crate) mod delete_topics;
pub(crate) mod describe_acls;
pub(crate) mod describe_client_quotas;
pub(crate) mod describe_cluster;
pub(crate) mod describe_configs;
pub(crate) mod describe_groups;
pub(crate) mod describe_log_dirs;
pub(crate) mod describe_producers;
pub(crate) mod describe_quorum;
pub(crate) mod describe_topic_partitions;
pub(crate) mod describe_transactions;
pub(crate) mod describe_user_scram_credentials;
pub(crate) mod elect_leaders;
pub(crate) mod end_txn;
pub(crate) mod fetch;
pub(crate) mod find_coordinator;
pub(crate) mod heartbeat;
pub(crate) mod incremental_alter_configs;
pub(crate) mod init_producer_id;
pub(crate) mod join_group;
pub(crate) mod leave_group;
pub(crate) mod list_groups;
pub(crate) mod list_offsets;
pub(crate) mod list_partition_reassignments;
pub(crate) mod list_transactions;
pub(crate) mod metadata;
pub(crate) mod offset_commit;
pub(crate) mod offset_delete;
pub(crate) mod offset_fetch;
pub(crate) mod offset_for_leader_epoch;
pub(crate) mod produce;
pub(crate) mod sasl_authenticate;
pub(crate) mod sasl_handshake;
pub(crate) mod sync_group;
pub(crate) mod txn_offset_commit;
pub(crate) mod unregister_broker;
pub(crate) mod write_txn_markers;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use sluice_engine::TopicId;
use uuid::Uuid;

/// Kafka's "authorized operations not requested" marker.
pub(crate) const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Resource types of the config APIs.
pub(crate) const RESOURCE_TYPE_TOPIC: i8 = 2;
/// The broker resource type.
pub(crate) const RESOURCE_TYPE_BROKER: i8 = 4;
/// The broker logger resource type.
pub(crate) const RESOURCE_TYPE_BROKER_LOGGER: i8 = 8;

pub(crate) fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

pub(crate) fn topic_name(text: &str) -> TopicName {
    TopicName(str_bytes(text))
}

pub(crate) fn uuid_of(id: TopicId) -> Uuid {
    Uuid::from_bytes(id.0)
}

pub(crate) fn topic_id_of(uuid: Uuid) -> TopicId {
    TopicId(uuid.into_bytes())
}

pub(crate) use sluice_engine::is_valid_topic_name;

/// Whether Kafka treats the topic as internal.
pub(crate) fn is_internal_topic(name: &str) -> bool {
    matches!(name, "__consumer_offsets" | "__transaction_state")
}

/// The wire code of a protocol-level error.
pub(crate) fn code(error: ResponseError) -> i16 {
    error.code()
}

/// The error message field of a failure (the wire field is nullable).
#[allow(clippy::unnecessary_wraps, reason = "every error_message field is an Option")]
pub(crate) fn message(text: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(text.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_id_round_trips_through_uuid() {
        let id = TopicId([7; 16]);
        assert_eq!(topic_id_of(uuid_of(id)), id);
    }
}
