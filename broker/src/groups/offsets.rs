//! Committed offsets of one [`Group`]: who may commit, what is fetched, what retention expires
//! and what OffsetDelete may remove, following Kafka's classic coordinator.
//!
//! Commit rules: a commit with generation -1 on an Empty group is a standalone commit (a
//! consumer assigning partitions by hand) and always accepted; otherwise the member must be
//! known and in the current generation, and the group must not be waiting for its leader's
//! assignment (REBALANCE_IN_PROGRESS). During PreparingRebalance commits are still accepted so
//! members can commit before rejoining.
//!
//! Retention (`offsets.retention.minutes`): an offset with an explicit expiry expires then; in an
//! Empty group with a protocol type, offsets expire a retention period after the group became
//! empty; in a group that never had members (standalone commits), a retention period after each
//! commit; in a Stable consumer group, offsets of topics no member subscribes to expire a
//! retention period after their commit.
//!
//! Touched only by the group's coordinator shard thread.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

use super::group::{CommittedOffset, Group, GroupState, Now};
use super::membership::MemberRef;

/// The protocol type of Kafka consumers.
pub(crate) const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

impl Group {
    /// Whether this member may commit offsets at `generation_id`; a valid commit also counts
    /// as a heartbeat.
    pub(crate) fn check_commit(
        &mut self,
        now: Now,
        member: MemberRef<'_>,
        generation_id: i32,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if self.is_static_member_fenced(member.member_id, member.group_instance_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if generation_id < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        self.check_member(member, generation_id)?;
        match self.state {
            GroupState::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
            GroupState::Empty | GroupState::Dead => Err(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance | GroupState::Stable => {
                self.touch(now, member.member_id);
                Ok(())
            }
        }
    }

    /// Records committed offsets (once they are stored).
    pub(crate) fn apply_commits(&mut self, commits: impl IntoIterator<Item = ((String, i32), CommittedOffset)>) {
        self.offsets.extend(commits);
    }

    /// Topics the members subscribe to, when every member's subscription is readable consumer
    /// metadata; `None` when unknown (another protocol type, or unreadable metadata).
    pub(crate) fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            let metadata = member.metadata(protocol);
            let mut body = metadata.clone();
            if body.len() < 2 {
                return None;
            }
            let version = i16::from_be_bytes([body[0], body[1]]).clamp(0, 3);
            let _version_prefix = bytes::Buf::get_i16(&mut body);
            let subscription = ConsumerProtocolSubscription::decode(&mut body, version).ok()?;
            topics.extend(subscription.topics.iter().map(ToString::to_string));
        }
        Some(topics)
    }

    /// The offsets retention has expired, as of `now`.
    pub(crate) fn expired_offsets(&self, now: Now, retention_ms: i64) -> Vec<(String, i32)> {
        let standalone = self.protocol_type.as_deref().is_none_or(str::is_empty);
        let unsubscribed = match self.state {
            GroupState::Stable => self.subscribed_topics(),
            _ => None,
        };
        let base = |offset: &CommittedOffset| -> Option<i64> {
            match self.state {
                GroupState::Empty if standalone => Some(offset.commit_timestamp_ms),
                GroupState::Empty => Some(self.state_timestamp_ms),
                GroupState::Stable if unsubscribed.is_some() => Some(offset.commit_timestamp_ms),
                _ => None,
            }
        };
        self.offsets
            .iter()
            .filter(|((topic, _), _)| unsubscribed.as_ref().is_none_or(|subscribed| !subscribed.contains(topic)))
            .filter(|(_, offset)| match offset.expire_timestamp_ms {
                Some(expire_ms) => now.unix_ms >= expire_ms,
                None => base(offset).is_some_and(|since| now.unix_ms - since >= retention_ms),
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Whether OffsetDelete may remove offsets of `topic` (not while members subscribe to it).
    pub(crate) fn may_delete_offsets_of(&self, topic: &str) -> bool {
        if self.state == GroupState::Empty {
            return true;
        }
        self.subscribed_topics().is_some_and(|topics| !topics.contains(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Now {
        Now { monotonic_ms: 0, unix_ms: 1_000_000 }
    }

    fn offset(commit_timestamp_ms: i64) -> CommittedOffset {
        CommittedOffset {
            offset: 5,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms,
            expire_timestamp_ms: None,
        }
    }

    #[test]
    fn standalone_commit_is_accepted_on_an_empty_group() {
        let mut group = Group::new("g", now());
        let anyone = MemberRef { member_id: "", group_instance_id: None };
        assert!(group.check_commit(now(), anyone, -1).is_ok());
        assert!(matches!(group.check_commit(now(), anyone, 3), Err(ResponseError::UnknownMemberId)));
    }

    #[test]
    fn standalone_offsets_expire_by_commit_time_and_consumer_group_offsets_by_empty_time() {
        let mut group = Group::new("g", now());
        group.offsets.insert(("t".to_owned(), 0), offset(1_000));
        group.offsets.insert(("t".to_owned(), 1), offset(900_000));
        let later = Now { monotonic_ms: 0, unix_ms: 1_000_000 };
        assert_eq!(group.expired_offsets(later, 500_000), vec![("t".to_owned(), 0)]);
        group.protocol_type = Some(CONSUMER_PROTOCOL_TYPE.to_owned());
        group.state_timestamp_ms = 600_000;
        assert!(group.expired_offsets(later, 500_000).is_empty());
        assert_eq!(group.expired_offsets(later, 400_000).len(), 2);
    }
}
