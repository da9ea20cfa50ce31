//! Controller requests and answers: what brokers ask the active controller, as `serde` values
//! (they travel between nodes when the active controller is elsewhere).

use serde::{Deserialize, Serialize};
use sluice_engine::TopicId;

use crate::metadata::config_change::ConfigChange;
use crate::metadata::image::BrokerRegistration;
use crate::metadata::records::MetadataRecord;
use crate::metadata::{NewTopic, Refusal, TopicImage};

/// A request for the active controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ControllerRequest {
    /// A node found the metadata log without a cluster id: `cluster_id` becomes the cluster's,
    /// with `adopt` (a single broker's metadata from before the quorum) written with it. The
    /// answer names the cluster's id, whoever set it.
    InitCluster { cluster_id: String, adopt: Vec<MetadataRecord> },
    /// A broker (re)registers at start, under a new incarnation.
    RegisterBroker(BrokerRegistration),
    /// A broker is alive; the answer says whether it is fenced.
    Heartbeat { node_id: i32, incarnation: u64 },
    /// A broker stops cleanly: it is fenced at once and what it led moves (Kafka's controlled
    /// shutdown), rather than after its session times out.
    ControlledShutdown { node_id: i32, incarnation: u64 },
    /// The quorum's state, as the active controller knows it.
    DescribeQuorum,
    /// A broker-only node asks to follow the metadata log as a learner at `address`.
    AddLearner { node_id: i32, address: String },
    /// Topics to create (configs resolved, counts and replication factors given).
    CreateTopics { topics: Vec<NewTopic>, validate_only: bool },
    /// Topics to delete, by id.
    DeleteTopics { ids: Vec<TopicId> },
    /// A topic grown to `count` partitions.
    CreatePartitions { name: String, count: i32, assignments: Vec<Vec<i32>>, validate_only: bool },
    /// A topic's config changed, as decided against its current config.
    AlterTopicConfig { name: String, change: ConfigChange, validate_only: bool },
    /// A block of `count` producer ids.
    AllocateProducerIds { count: i64 },
    /// Ids below `next` were handed out before this metadata log existed (a single broker's
    /// older data directory): the blocks start past them.
    AdoptProducerIds { next: i64 },
    /// A partition's leader becomes `leader` (or nobody), its epochs bumped (tests, and the
    /// operations that move leadership).
    MoveLeadership { topic: String, partition: i32, leader: Option<i32> },
    /// A partition's leader asks for a new ISR (Kafka's AlterPartition): accepted only from the
    /// current leader at the current leader and partition epochs, with live replicas only in
    /// an added place.
    AlterPartition {
        topic_id: TopicId,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    /// Kafka's ElectLeaders: the preferred replica (or, `unclean`, any live replica of a
    /// partition without a leader) becomes leader of each partition named, in order.
    ElectLeaders { unclean: bool, partitions: Vec<(String, i32)> },
    /// Kafka's AlterPartitionReassignments: each partition's target replicas (`None`: cancel
    /// the reassignment under way), in order.
    Reassign { partitions: Vec<(String, i32, Option<Vec<i32>>)> },
    /// Kafka's UnregisterBroker: a broker leaves the cluster. It is fenced first when it is
    /// not (what it led moves), then its registration goes.
    UnregisterBroker { node_id: i32 },
    /// IncrementalAlterConfigs of a GROUP resource: the group's configs after `operations`,
    /// decided against those the controller holds.
    AlterGroupConfig {
        group: String,
        operations: Vec<crate::metadata::config_change::ConfigOperation>,
        validate_only: bool,
    },
    /// Kafka's AlterUserScramCredentials: one answer per user, in `ScramAlteration::users` order.
    AlterScramCredentials(crate::security::sasl::credentials::ScramAlteration),
    /// Kafka's CreateAcls: the bindings to create, in order.
    CreateAcls { bindings: Vec<crate::security::acl::AclBinding> },
    /// Kafka's DeleteAcls: the bindings each filter matches go, per filter, in order.
    DeleteAcls { filters: Vec<crate::security::acl::AclFilter> },
    /// Kafka's AlterClientQuotas: per entry, in order (`validate_only`: decided, not written).
    AlterClientQuotas { alterations: Vec<crate::quota::entity::QuotaAlteration>, validate_only: bool },
    /// AlterConfigs or IncrementalAlterConfigs of a BROKER resource, decided against the
    /// configs the controller holds for it.
    AlterBrokerConfig { change: crate::dynamic_config::BrokerConfigChange, validate_only: bool },
}

/// A refusal as it travels: Kafka's error code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireRefusal {
    pub(crate) code: i16,
    pub(crate) message: String,
}

impl From<Refusal> for WireRefusal {
    fn from(refusal: Refusal) -> Self {
        Self { code: refusal.error.code(), message: refusal.message }
    }
}

impl From<WireRefusal> for Refusal {
    fn from(refusal: WireRefusal) -> Self {
        let error = kafka_protocol::ResponseError::try_from_code(refusal.code)
            .unwrap_or(kafka_protocol::ResponseError::UnknownServerError);
        Refusal::new(error, refusal.message)
    }
}

/// What a request achieved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// Per topic, in order: the topic as created (or as it would be).
    Topics(Vec<Result<TopicImage, WireRefusal>>),
    /// Per item, in order.
    Each(Vec<Result<(), WireRefusal>>),
    /// One result.
    One(Result<(), WireRefusal>),
    /// Producer ids `start..start + count` are this broker's.
    ProducerIds { start: i64, count: i64 },
    /// The broker's state after its heartbeat; `registered: false` when the controller does
    /// not know this incarnation (the broker registers again).
    Heartbeat { fenced: bool, registered: bool },
    /// The cluster's id; `created` when this request set it (and wrote what it adopted).
    Cluster { cluster_id: String, created: bool },
    /// The quorum's state.
    Quorum(QuorumDescription),
    /// Per ACL filter, in order: the bindings it removed.
    Acls(Vec<Result<Vec<crate::security::acl::AclBinding>, WireRefusal>>),
}

/// A quorum member's progress, as DescribeQuorum reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReplicaProgress {
    pub(crate) node_id: i32,
    /// The offset after its last replicated entry (-1: unknown).
    pub(crate) log_end_offset: i64,
    /// When the leader last heard from it, Unix ms (-1: unknown).
    pub(crate) last_fetch_ms: i64,
    /// When it was last caught up with the leader, Unix ms (-1: unknown).
    pub(crate) last_caught_up_ms: i64,
}

/// The controller quorum, as the active controller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QuorumDescription {
    pub(crate) leader_id: i32,
    /// The Raft term.
    pub(crate) leader_epoch: i32,
    /// The offset after the last committed entry.
    pub(crate) high_watermark: i64,
    pub(crate) voters: Vec<ReplicaProgress>,
    /// Learners: broker-only nodes following the log.
    pub(crate) observers: Vec<ReplicaProgress>,
    /// Quorum members' controller listeners: node id, host, port.
    pub(crate) nodes: Vec<(i32, String, i32)>,
}

/// The answer to a controller request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ControllerAnswer {
    /// Decided; what it wrote is at `index` of the metadata log (0: nothing was written).
    Done { index: u64, outcome: Outcome },
    /// This node is not the active controller; `leader` is the one it knows of, if any.
    NotController { leader: Option<(u64, String)> },
    /// The quorum cannot decide now (no leader, a storage error); try again.
    Unavailable(String),
}
