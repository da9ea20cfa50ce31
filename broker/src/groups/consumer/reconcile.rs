//! One member's reconciliation towards its target assignment (Kafka's
//! `CurrentAssignmentBuilder`): a pure function from the member's assignment state, its target,
//! what it reports owning and who else holds which partition, to its next assignment state.
//!
//! States, as in Kafka (the numbers are the record's `State` byte):
//! - `Stable` (0): the member has its whole target at the target's epoch, or waits for one;
//! - `UnrevokedPartitions` (1): the member must give up `pending_revocation` first; it stays at
//!   its epoch until a heartbeat reports owned partitions without any of them;
//! - `UnreleasedPartitions` (2): the member is at the target epoch but part of its target is
//!   still held by other members; it receives those partitions once they are released;
//! - `Unknown` (127): a state from a newer broker; the member is fenced unless it reports
//!   owning nothing, and then starts over.
//!
//! The next state, from the member's epoch `e`, current partitions `A`, target `T` at epoch `t`:
//! 1. keep `A ∩ T` (partitions of topics it no longer subscribes to count as not in `T`);
//!    revoke `A − T`;
//! 2. if there is something to revoke and the member may still own some of it (it reported
//!    owning some, or did not report; or it is asked for this revocation for the first time:
//!    see `may_take_or_own`): UNREVOKED_PARTITIONS at epoch `e`;
//! 3. otherwise move to epoch `t` and add the partitions of `T` no other member holds
//!    (a partition the member itself is revoking counts as free): UNRELEASED_PARTITIONS when some
//!    of `T` is still held elsewhere, STABLE otherwise.
//!
//! Pure; called by the group on its shard thread.

use std::collections::BTreeSet;

use super::{Assignment, TopicId};

/// A member's reconciliation state, as stored in `ConsumerGroupCurrentMemberAssignmentValue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum MemberState {
    /// Has its target (or waits for a new one).
    Stable,
    /// Must revoke partitions before moving on.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
    /// A state this broker does not know.
    Unknown,
}

impl MemberState {
    /// The record's `State` byte.
    pub(crate) fn value(self) -> i8 {
        match self {
            Self::Stable => 0,
            Self::UnrevokedPartitions => 1,
            Self::UnreleasedPartitions => 2,
            Self::Unknown => 127,
        }
    }

    /// The state stored as `value` (`Unknown` for any byte this broker does not know).
    pub(crate) fn from_value(value: i8) -> Self {
        match value {
            0 => Self::Stable,
            1 => Self::UnrevokedPartitions,
            2 => Self::UnreleasedPartitions,
            _ => Self::Unknown,
        }
    }
}

/// A member's epochs, state and partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberAssignment {
    /// The epoch the member must send in its next heartbeat.
    pub(crate) member_epoch: i32,
    /// The epoch before the last bump, accepted once more if the bump's response was lost.
    pub(crate) previous_member_epoch: i32,
    /// Where the member is in its reconciliation.
    pub(crate) state: MemberState,
    /// The partitions the member has (or is being given).
    pub(crate) assigned: Assignment,
    /// The partitions it must give up.
    pub(crate) pending_revocation: Assignment,
}

impl MemberAssignment {
    /// A member that just joined: epoch 0, previous epoch -1, nothing assigned (Kafka's
    /// defaults for a new member).
    pub(crate) fn joining() -> Self {
        Self {
            member_epoch: 0,
            previous_member_epoch: -1,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
        }
    }

    /// Whether the member has its whole target of `assignment_epoch`.
    pub(crate) fn is_reconciled_to(&self, assignment_epoch: i32) -> bool {
        self.state == MemberState::Stable && self.member_epoch == assignment_epoch
    }

    /// Moves to `epoch`, remembering the current one as the previous.
    fn with_epoch(&self, epoch: i32) -> (i32, i32) {
        (epoch, self.member_epoch)
    }
}

/// What a member is reconciled with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReconcileInput<'a> {
    /// The target assignment's epoch.
    pub(crate) target_epoch: i32,
    /// The member's target assignment.
    pub(crate) target: &'a Assignment,
    /// The partitions the member reported owning in this heartbeat, if it reported them.
    pub(crate) owned: Option<&'a Assignment>,
    /// The existing topics the member subscribes to (by name or through its regex).
    pub(crate) subscribed_topic_ids: &'a BTreeSet<TopicId>,
    /// The member changed its subscription in this heartbeat: partitions of topics it left are
    /// revoked even if its epoch is the target's.
    pub(crate) subscription_changed: bool,
}

/// The member is in a state from a newer broker and still owns partitions (or did not say):
/// it must be fenced (FENCED_MEMBER_EPOCH), give up everything and rejoin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the member is in an unknown state; it must abandon all its partitions and rejoin")]
pub(crate) struct UnknownState;

/// The member's next assignment state. `held_elsewhere(topic, partition)` tells whether a
/// partition is currently held (assigned or being revoked) at some epoch; partitions the member
/// itself is revoking are treated as free.
///
/// # Errors
/// [`UnknownState`] when the member's state is `Unknown` and it did not report owning nothing.
pub(crate) fn reconcile(
    member: &MemberAssignment,
    input: &ReconcileInput<'_>,
    held_elsewhere: impl Fn(TopicId, i32) -> bool,
) -> Result<MemberAssignment, UnknownState> {
    let next = match member.state {
        MemberState::Stable if member.member_epoch != input.target_epoch => {
            next_assignment(member, member.member_epoch, input, &held_elsewhere)
        }
        MemberState::Stable if input.subscription_changed => drop_unsubscribed(member, input),
        MemberState::Stable => member.clone(),
        MemberState::UnrevokedPartitions => {
            if owns_any(input.owned, &member.pending_revocation) {
                if input.subscription_changed { drop_unsubscribed(member, input) } else { member.clone() }
            } else {
                next_assignment(member, member.member_epoch, input, &held_elsewhere)
            }
        }
        MemberState::UnreleasedPartitions => next_assignment(member, member.member_epoch, input, &held_elsewhere),
        MemberState::Unknown => {
            if input.owned.is_none_or(|owned| !owned.is_empty()) {
                return Err(UnknownState);
            }
            next_assignment(member, input.target_epoch, input, &held_elsewhere)
        }
    };
    debug_assert!(!next.assigned.intersects(&next.pending_revocation), "a partition both kept and revoked");
    Ok(next)
}

/// Whether the member may still own one of `revoking`: it did not report, or reported one.
fn owns_any(owned: Option<&Assignment>, revoking: &Assignment) -> bool {
    owned.is_none_or(|owned| owned.intersects(revoking))
}

/// Whether a member must go through UNREVOKED_PARTITIONS to give up `revoking`. As in Kafka,
/// when it may still own one of them. Besides, unlike Kafka, always when it is asked for the
/// revocation for the first time (from `Stable` or `UnreleasedPartitions`, with partitions given
/// at an epoch above 0): the owned partitions this heartbeat reports were gathered before the
/// member knew of the revocation, and Kafka's Java client acknowledges a partially resolved
/// assignment (topic ids whose names it has not fetched yet) with only the resolved part, then
/// takes the rest from that stale target once its metadata arrives. Kafka moves such a member
/// on at once and hands the partitions it lacks to another member, which can then hold them
/// while it takes them. Going through UNREVOKED costs one heartbeat: the member's next report
/// comes after it received its new assignment (a client has one heartbeat in flight at a time).
fn may_take_or_own(member: &MemberAssignment, owned: Option<&Assignment>, revoking: &Assignment) -> bool {
    let first_asked =
        member.member_epoch > 0 && matches!(member.state, MemberState::Stable | MemberState::UnreleasedPartitions);
    first_asked || owns_any(owned, revoking)
}

/// Kafka's `updateCurrentAssignment`: the member's epoch stays; partitions of topics it no
/// longer subscribes to move to revocation.
fn drop_unsubscribed(member: &MemberAssignment, input: &ReconcileInput<'_>) -> MemberAssignment {
    let mut assigned = member.assigned.clone();
    let mut pending_revocation = member.pending_revocation.clone();
    let mut removed = false;
    if input.subscribed_topic_ids.is_empty() && member.pending_revocation.is_empty() {
        removed = !assigned.is_empty();
        pending_revocation = std::mem::take(&mut assigned);
    } else {
        let topics: Vec<TopicId> = member.assigned.topics().map(|(topic_id, _)| topic_id).collect();
        for topic_id in topics {
            if !input.subscribed_topic_ids.contains(&topic_id) {
                for partition in assigned.remove_topic(topic_id) {
                    pending_revocation.insert(topic_id, partition);
                }
                removed = true;
            }
        }
    }
    if !removed {
        return member.clone();
    }
    let (member_epoch, previous_member_epoch) = member.with_epoch(member.member_epoch);
    if !pending_revocation.is_empty() && owns_any(input.owned, &pending_revocation) {
        MemberAssignment {
            member_epoch,
            previous_member_epoch,
            state: MemberState::UnrevokedPartitions,
            assigned,
            pending_revocation,
        }
    } else {
        // Already released: only the assignment shrinks.
        MemberAssignment {
            member_epoch,
            previous_member_epoch,
            state: member.state,
            assigned,
            pending_revocation: member.pending_revocation.clone(),
        }
    }
}

/// Kafka's `computeNextAssignment`, from `epoch` (the member's, or the target's for `Unknown`).
fn next_assignment(
    member: &MemberAssignment,
    epoch: i32,
    input: &ReconcileInput<'_>,
    held_elsewhere: &impl Fn(TopicId, i32) -> bool,
) -> MemberAssignment {
    let mut kept = Assignment::new();
    let mut revoking = Assignment::new();
    let mut adding = Assignment::new();
    let mut unreleased = false;
    for (topic_id, partition) in member.assigned.iter() {
        let in_target = input.subscribed_topic_ids.contains(&topic_id) && input.target.contains(topic_id, partition);
        if in_target {
            kept.insert(topic_id, partition);
        } else {
            revoking.insert(topic_id, partition);
        }
    }
    for (topic_id, partition) in input.target.iter() {
        if !input.subscribed_topic_ids.contains(&topic_id) || kept.contains(topic_id, partition) {
            continue;
        }
        let free = !held_elsewhere(topic_id, partition) || member.pending_revocation.contains(topic_id, partition);
        if free {
            adding.insert(topic_id, partition);
        } else {
            unreleased = true;
        }
    }
    if !revoking.is_empty() && may_take_or_own(member, input.owned, &revoking) {
        let (member_epoch, previous_member_epoch) = member.with_epoch(epoch);
        return MemberAssignment {
            member_epoch,
            previous_member_epoch,
            state: MemberState::UnrevokedPartitions,
            assigned: kept,
            pending_revocation: revoking,
        };
    }
    let (member_epoch, previous_member_epoch) = member.with_epoch(input.target_epoch);
    MemberAssignment {
        member_epoch,
        previous_member_epoch,
        state: if unreleased { MemberState::UnreleasedPartitions } else { MemberState::Stable },
        assigned: kept.union(&adding),
        pending_revocation: Assignment::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic() -> TopicId {
        TopicId::from_u128(1)
    }

    fn partitions(list: &[i32]) -> Assignment {
        Assignment::from_pairs(list.iter().map(|partition| (topic(), *partition)))
    }

    fn member(epoch: i32, state: MemberState, assigned: &[i32], revoking: &[i32]) -> MemberAssignment {
        MemberAssignment {
            member_epoch: epoch,
            previous_member_epoch: epoch - 1,
            state,
            assigned: partitions(assigned),
            pending_revocation: partitions(revoking),
        }
    }

    fn run(
        current: &MemberAssignment,
        target_epoch: i32,
        target: &[i32],
        owned: Option<&[i32]>,
        held: &[i32],
    ) -> MemberAssignment {
        let target = partitions(target);
        let owned = owned.map(partitions);
        let subscribed: BTreeSet<TopicId> = [topic()].into();
        let input = ReconcileInput {
            target_epoch,
            target: &target,
            owned: owned.as_ref(),
            subscribed_topic_ids: &subscribed,
            subscription_changed: false,
        };
        let held = partitions(held);
        reconcile(current, &input, |topic_id, partition| held.contains(topic_id, partition)).expect("known state")
    }

    #[test]
    fn state_bytes_are_kafkas() {
        for state in [
            MemberState::Stable,
            MemberState::UnrevokedPartitions,
            MemberState::UnreleasedPartitions,
            MemberState::Unknown,
        ] {
            assert_eq!(MemberState::from_value(state.value()), state);
        }
        assert_eq!(MemberState::from_value(3), MemberState::Unknown);
    }

    #[test]
    fn joining_member_gets_its_free_target_at_the_target_epoch() {
        let next = run(&MemberAssignment::joining(), 3, &[0, 1], Some(&[]), &[]);
        assert_eq!(
            next,
            MemberAssignment {
                member_epoch: 3,
                previous_member_epoch: 0,
                state: MemberState::Stable,
                assigned: partitions(&[0, 1]),
                pending_revocation: Assignment::new(),
            }
        );
    }

    #[test]
    fn partitions_held_elsewhere_wait_as_unreleased() {
        let next = run(&MemberAssignment::joining(), 3, &[0, 1], Some(&[]), &[1]);
        assert_eq!(next.state, MemberState::UnreleasedPartitions);
        assert_eq!(next.member_epoch, 3);
        assert_eq!(next.assigned, partitions(&[0]));
        // Once released, the member gets it and is stable.
        let later = run(&next, 3, &[0, 1], Some(&[0]), &[]);
        assert_eq!(later.state, MemberState::Stable);
        assert_eq!(later.assigned, partitions(&[0, 1]));
    }

    #[test]
    fn revocation_comes_first_and_keeps_the_epoch_until_acknowledged() {
        let current = member(2, MemberState::Stable, &[0, 1, 2], &[]);
        let revoking = run(&current, 3, &[0, 3], Some(&[0, 1, 2]), &[]);
        assert_eq!(revoking.state, MemberState::UnrevokedPartitions);
        assert_eq!(revoking.member_epoch, 2);
        assert_eq!(revoking.assigned, partitions(&[0]));
        assert_eq!(revoking.pending_revocation, partitions(&[1, 2]));
        // Still owning a revoked partition, or not saying: nothing moves.
        assert_eq!(run(&revoking, 3, &[0, 3], Some(&[0, 1]), &[]), revoking);
        assert_eq!(run(&revoking, 3, &[0, 3], None, &[]), revoking);
        // Acknowledged: the member moves to the target epoch and gets the new partition.
        let done = run(&revoking, 3, &[0, 3], Some(&[0]), &[]);
        assert_eq!(done.state, MemberState::Stable);
        assert_eq!(done.member_epoch, 3);
        assert_eq!(done.previous_member_epoch, 2);
        assert_eq!(done.assigned, partitions(&[0, 3]));
        assert!(done.pending_revocation.is_empty());
    }

    #[test]
    fn revocation_already_done_by_the_client_is_skipped_once_the_client_was_asked() {
        let current = member(2, MemberState::UnrevokedPartitions, &[0], &[1]);
        let next = run(&current, 3, &[0], Some(&[0]), &[]);
        assert_eq!(next.state, MemberState::Stable);
        assert_eq!(next.member_epoch, 3);
        assert_eq!(next.assigned, partitions(&[0]));
    }

    #[test]
    fn a_first_revocation_waits_for_a_report_made_after_it_even_without_the_partition() {
        // The member was given 0 and 1 at epoch 2 and reports owning neither yet (a client
        // acknowledging a partially resolved assignment): it may still take 1 from that target.
        let current = member(2, MemberState::Stable, &[0, 1], &[]);
        let next = run(&current, 3, &[0], Some(&[]), &[]);
        assert_eq!((next.state, next.member_epoch), (MemberState::UnrevokedPartitions, 2));
        assert_eq!((next.assigned.clone(), next.pending_revocation.clone()), (partitions(&[0]), partitions(&[1])));
        let after = run(&next, 3, &[0], Some(&[0]), &[]);
        assert_eq!((after.state, after.member_epoch), (MemberState::Stable, 3));
    }

    #[test]
    fn a_member_joining_at_epoch_zero_goes_straight_to_the_target_epoch() {
        // A static member replacing its previous incarnation rejoins at epoch 0 with that
        // incarnation's partitions; it holds nothing on its side, so it has nothing to revoke.
        let current = member(0, MemberState::Stable, &[0, 1], &[]);
        let next = run(&current, 3, &[0], Some(&[]), &[]);
        assert_eq!((next.state, next.member_epoch), (MemberState::Stable, 3));
        assert_eq!(next.assigned, partitions(&[0]));
    }

    #[test]
    fn a_partition_the_member_revokes_itself_is_free_for_it() {
        let current = member(2, MemberState::UnrevokedPartitions, &[0], &[1]);
        // The target gives partition 1 back: the member still holds it, yet it is not unreleased.
        let next = run(&current, 3, &[0, 1], Some(&[0]), &[1]);
        assert_eq!(next.state, MemberState::Stable);
        assert_eq!(next.assigned, partitions(&[0, 1]));
    }

    #[test]
    fn unknown_state_fences_a_member_that_may_own_partitions() {
        let current = member(2, MemberState::Unknown, &[0], &[]);
        let target = partitions(&[0]);
        let subscribed: BTreeSet<TopicId> = [topic()].into();
        let owned = partitions(&[0]);
        let input = ReconcileInput {
            target_epoch: 3,
            target: &target,
            owned: Some(&owned),
            subscribed_topic_ids: &subscribed,
            subscription_changed: false,
        };
        assert_eq!(reconcile(&current, &input, |_, _| false), Err(UnknownState));
        let empty = Assignment::new();
        let input = ReconcileInput { owned: Some(&empty), ..input };
        let next = reconcile(&current, &input, |_, _| false).expect("owns nothing");
        assert_eq!(next.member_epoch, 3);
        assert_eq!(next.state, MemberState::Stable);
    }

    #[test]
    fn leaving_a_topic_revokes_it_at_once_when_the_subscription_changes() {
        let current = member(3, MemberState::Stable, &[0, 1], &[]);
        let target = partitions(&[0, 1]);
        let subscribed = BTreeSet::new();
        let owned = partitions(&[0, 1]);
        let input = ReconcileInput {
            target_epoch: 3,
            target: &target,
            owned: Some(&owned),
            subscribed_topic_ids: &subscribed,
            subscription_changed: true,
        };
        let next = reconcile(&current, &input, |_, _| false).expect("known state");
        assert_eq!(next.state, MemberState::UnrevokedPartitions);
        assert_eq!(next.member_epoch, 3);
        assert!(next.assigned.is_empty());
        assert_eq!(next.pending_revocation, partitions(&[0, 1]));
        // Without a subscription change, a reconciled member stays as it is.
        let input = ReconcileInput { subscription_changed: false, ..input };
        assert_eq!(reconcile(&current, &input, |_, _| false).expect("known state"), current);
    }
}
