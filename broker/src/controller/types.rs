//! The controller quorum's Raft types: what an entry of the metadata log carries, what a node
//! is, and the aliases of openraft's generic types for them.
//!
//! An entry carries a [`MetadataBatch`]: the records of one controller decision, applied
//! together or not at all (creating a topic and choosing its leaders is one entry). Node ids are
//! the brokers' node ids; a node's address is its controller listener.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::metadata::records::MetadataRecord;

/// The records of one controller decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MetadataBatch {
    pub(crate) records: Vec<MetadataRecord>,
}

impl fmt::Display for MetadataBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} metadata record(s)", self.records.len())
    }
}

/// What applying a batch answers: its position in the metadata log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Applied {
    pub(crate) index: u64,
}

/// A node of the quorum: where its controller listener is (empty for the single-node quorum,
/// which has no listener).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QuorumNode {
    pub(crate) address: String,
}

impl fmt::Display for QuorumNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

openraft::declare_raft_types!(
    /// The controller quorum's type configuration, on compio's runtime.
    pub(crate) TypeConfig:
        D = MetadataBatch,
        R = Applied,
        NodeId = u64,
        Node = QuorumNode,
        AsyncRuntime = openraft_rt_compio::CompioRuntime,
);

pub(crate) type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub(crate) type Vote = openraft::alias::VoteOf<TypeConfig>;
pub(crate) type Entry = openraft::alias::EntryOf<TypeConfig>;
pub(crate) type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub(crate) type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;
pub(crate) type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// A snapshot: the serialized metadata image.
pub(crate) type SnapshotData = Vec<u8>;
pub(crate) type Raft = openraft::Raft<TypeConfig, super::state_machine::StateMachine>;
