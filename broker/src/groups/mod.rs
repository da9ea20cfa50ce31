//! The consumer group coordinator (not built yet): group membership, rebalances and committed
//! offsets, stored in the engine's compacted `__consumer_offsets` topic.
//!
//! How it plugs in, so that adding it touches no existing handler:
//! 1. put the coordinator's per-shard state in [`GroupShard`] (it lives in each shard's
//!    `ShardContext` as `groups`; groups are hashed to shards, and a request for a group owned by
//!    another shard is forwarded there, as partition requests are);
//! 2. add one handler file per API under `handlers/` (`find_coordinator.rs`, `join_group.rs`,
//!    `sync_group.rs`, `heartbeat.rs`, `leave_group.rs`, `offset_commit.rs`, `offset_fetch.rs`,
//!    `list_groups.rs`, `describe_groups.rs`, `delete_groups.rs`, `offset_delete.rs`), each an
//!    `async fn handle(shard, version, request) -> Outcome<Response>`;
//! 3. list each API's version range in [`APIS`] (ApiVersions advertises exactly these plus the
//!    broker's own) and add its arm to the `match` in `dispatch::route`.
//!
//! Touched only by its own shard thread.

use sluice_engine::ShardId;

use crate::dispatch::ApiRange;

/// Group APIs and the versions served; advertised in ApiVersions. Empty until groups exist.
pub(crate) const APIS: &[ApiRange] = &[];

/// One shard's part of the group coordinator.
#[derive(Debug)]
pub(crate) struct GroupShard {
    /// The shard owning this state.
    #[expect(dead_code, reason = "read once the coordinator exists")]
    pub(crate) shard: ShardId,
}

impl GroupShard {
    pub(crate) fn new(shard: ShardId) -> Self {
        Self { shard }
    }
}
