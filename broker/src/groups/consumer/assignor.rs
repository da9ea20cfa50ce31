//! The server-side assignors of the consumer group protocol: `uniform` (the default) and
//! `range`, as Kafka 4.x names and implements them. Pure and deterministic: the same members,
//! subscriptions, topics and current target give the same new target, whatever the order
//! anything was built in (every map is ordered; ties go to the smaller member id).
//!
//! `uniform` spreads all subscribed partitions evenly and keeps each member's current
//! partitions where balance allows (sticky):
//! - homogeneous subscriptions (every member subscribes to the same topics):
//!   1. the quota is `total / members`, and `total % members` members get one more: those that
//!      currently hold the most valid partitions (ties by member id), so nobody gives up a
//!      partition only to make room for an extra one elsewhere;
//!   2. each member keeps up to its quota of its current partitions (the lowest ones);
//!   3. the remaining partitions, in (topic id, partition) order, fill the members below their
//!      quota in member id order. Every member ends with `floor` or `ceil` of the average;
//! - heterogeneous subscriptions:
//!   1. each member keeps its current partitions of topics it still subscribes to;
//!   2. topics are taken by partitions per subscriber (descending), then subscriber count
//!      (ascending), then id; each unassigned partition goes to the subscriber holding the
//!      fewest partitions in total;
//!   3. while some topic has a subscriber holding one of its partitions and two more partitions
//!      in total than another subscriber, one partition moves from the first to the second. Each
//!      move lowers the sum of squared member loads, so this ends.
//!
//! `range` gives each subscriber of a topic a contiguous range of its partitions, so members
//! subscribed to co-partitioned topics get the same partition numbers of each. Members are
//! ordered static members first (by instance id), then the others by member id, and the first
//! `partitions % subscribers` of them get one partition more. As in Kafka 4.x, it is not sticky:
//! it recomputes the ranges every time, and static members keep their ranges through their
//! stable instance ids.
//!
//! Racks are carried but unused, as in Kafka 4.x's assignors. Called by the group on its shard
//! thread; shares nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::{Assignment, TopicId};

/// A server-side assignor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ServerAssignor {
    /// `uniform`: balanced and sticky.
    Uniform,
    /// `range`: contiguous ranges per topic, co-partitioned.
    Range,
}

impl ServerAssignor {
    /// The name members use in ConsumerGroupHeartbeat's `ServerAssignor`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::Range => "range",
        }
    }

    /// The assignor called `name`.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        [Self::Uniform, Self::Range].into_iter().find(|assignor| assignor.name() == name)
    }
}

/// What the assignor knows about one member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct MemberSpec {
    /// The static member's instance id.
    pub(crate) instance_id: Option<String>,
    /// The member's rack (unused by both assignors).
    pub(crate) rack_id: Option<String>,
    /// The topics it subscribes to (existing ones; others are ignored).
    pub(crate) subscribed_topic_ids: BTreeSet<TopicId>,
    /// Its current target assignment.
    pub(crate) assignment: Assignment,
}

/// Computes the new target assignment of every member of `members`, given the partition count
/// of each existing topic. Subscriptions to topics missing from `partition_counts` are ignored.
/// Every member gets an entry, possibly empty.
pub(crate) fn assign(
    assignor: ServerAssignor,
    members: &BTreeMap<String, MemberSpec>,
    partition_counts: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, Assignment> {
    let subscriptions: Vec<(&str, BTreeSet<TopicId>)> = members
        .iter()
        .map(|(member_id, spec)| {
            let topics = spec
                .subscribed_topic_ids
                .iter()
                .copied()
                .filter(|topic_id| partition_counts.get(topic_id).is_some_and(|count| *count > 0))
                .collect();
            (member_id.as_str(), topics)
        })
        .collect();
    let result = match assignor {
        ServerAssignor::Uniform => {
            let homogeneous = subscriptions.windows(2).all(|pair| pair[0].1 == pair[1].1);
            if homogeneous {
                uniform_homogeneous(members, &subscriptions, partition_counts)
            } else {
                uniform_heterogeneous(members, &subscriptions, partition_counts)
            }
        }
        ServerAssignor::Range => range(members, &subscriptions, partition_counts),
    };
    debug_assert_eq!(result.len(), members.len());
    result
}

/// One partition of a topic.
type Partition = (TopicId, i32);

/// The partitions each member keeps from its current target: those of topics it still
/// subscribes to that still exist, each kept by one member only (the first in id order).
fn retained_partitions(
    members: &BTreeMap<String, MemberSpec>,
    subscriptions: &[(&str, BTreeSet<TopicId>)],
    partition_counts: &BTreeMap<TopicId, i32>,
) -> Vec<Vec<Partition>> {
    let mut claimed: BTreeSet<Partition> = BTreeSet::new();
    subscriptions
        .iter()
        .map(|(member_id, topics)| {
            let current = members.get(*member_id).map(|spec| &spec.assignment);
            current
                .into_iter()
                .flat_map(Assignment::iter)
                .filter(|(topic_id, partition)| {
                    topics.contains(topic_id)
                        && *partition >= 0
                        && partition_counts.get(topic_id).is_some_and(|count| partition < count)
                })
                .filter(|partition| claimed.insert(*partition))
                .collect()
        })
        .collect()
}

fn uniform_homogeneous(
    members: &BTreeMap<String, MemberSpec>,
    subscriptions: &[(&str, BTreeSet<TopicId>)],
    partition_counts: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, Assignment> {
    let member_count = subscriptions.len();
    let Some((_, topics)) = subscriptions.first() else { return BTreeMap::new() };
    let all: Vec<Partition> = topics
        .iter()
        .flat_map(|topic_id| {
            (0..partition_counts.get(topic_id).copied().unwrap_or(0)).map(move |index| (*topic_id, index))
        })
        .collect();
    let quota_min = all.len() / member_count;
    let extra_count = all.len() % member_count;
    let retained = retained_partitions(members, subscriptions, partition_counts);

    // Step 1: the extra partitions go to the members holding the most already.
    let mut by_holdings: Vec<usize> = (0..member_count).collect();
    by_holdings.sort_by_key(|index| (std::cmp::Reverse(retained[*index].len()), *index));
    let mut quotas = vec![quota_min; member_count];
    for index in by_holdings.into_iter().take(extra_count) {
        quotas[index] += 1;
    }

    // Step 2: each member keeps up to its quota.
    let mut kept: Vec<Vec<Partition>> = Vec::with_capacity(member_count);
    let mut taken: BTreeSet<Partition> = BTreeSet::new();
    for (index, partitions) in retained.into_iter().enumerate() {
        let keep: Vec<Partition> = partitions.into_iter().take(quotas[index]).collect();
        taken.extend(keep.iter().copied());
        kept.push(keep);
    }

    // Step 3: the rest fills the members below their quota.
    let mut free = all.into_iter().filter(|partition| !taken.contains(partition));
    for (index, partitions) in kept.iter_mut().enumerate() {
        while partitions.len() < quotas[index] {
            let Some(partition) = free.next() else { break };
            partitions.push(partition);
        }
    }
    assert!(free.next().is_none(), "the quotas add up to the partition count");
    subscriptions
        .iter()
        .zip(kept)
        .map(|((member_id, _), partitions)| ((*member_id).to_owned(), Assignment::from_pairs(partitions)))
        .collect()
}

/// The balancing state of the heterogeneous uniform assignment.
struct Loads<'a> {
    subscribers: BTreeMap<TopicId, Vec<usize>>,
    owners: BTreeMap<Partition, usize>,
    counts: Vec<usize>,
    partition_counts: &'a BTreeMap<TopicId, i32>,
}

impl Loads<'_> {
    fn give(&mut self, partition: Partition, member: usize) {
        if let Some(previous) = self.owners.insert(partition, member) {
            self.counts[previous] -= 1;
        }
        self.counts[member] += 1;
    }

    /// Topics by partitions per subscriber (descending), subscribers (ascending), then id.
    fn topic_order(&self) -> Vec<TopicId> {
        let mut topics: Vec<TopicId> = self.subscribers.keys().copied().collect();
        topics.sort_by(|left, right| {
            let (left_partitions, left_subscribers) = self.density(*left);
            let (right_partitions, right_subscribers) = self.density(*right);
            // a/b > c/d  <=>  a*d > c*b, with no rounding.
            (right_partitions * left_subscribers)
                .cmp(&(left_partitions * right_subscribers))
                .then(left_subscribers.cmp(&right_subscribers))
                .then(left.cmp(right))
        });
        topics
    }

    fn density(&self, topic_id: TopicId) -> (u64, u64) {
        let partitions = u64::try_from(self.partition_counts.get(&topic_id).copied().unwrap_or(0)).unwrap_or(0);
        let subscribers = self.subscribers.get(&topic_id).map_or(0, Vec::len) as u64;
        (partitions, subscribers)
    }

    fn least_loaded(&self, candidates: &[usize]) -> Option<usize> {
        candidates.iter().copied().min_by_key(|member| (self.counts[*member], *member))
    }

    /// Moves partitions of `topic_id` from its most to its least loaded subscribers until no
    /// holder of one of its partitions has two more than another subscriber.
    fn balance_topic(&mut self, topic_id: TopicId) -> bool {
        let subscribers = self.subscribers.get(&topic_id).cloned().unwrap_or_default();
        let mut moved = false;
        loop {
            let Some(least) = self.least_loaded(&subscribers) else { return moved };
            let holders: BTreeSet<usize> =
                self.owners.range((topic_id, 0)..=(topic_id, i32::MAX)).map(|(_, owner)| *owner).collect();
            let Some(most) =
                holders.iter().copied().max_by_key(|member| (self.counts[*member], std::cmp::Reverse(*member)))
            else {
                return moved;
            };
            if self.counts[most] <= self.counts[least] + 1 {
                return moved;
            }
            let partition = self
                .owners
                .range((topic_id, 0)..=(topic_id, i32::MAX))
                .rev()
                .find(|(_, owner)| **owner == most)
                .map(|(partition, _)| *partition)
                .expect("the most loaded member holds a partition of the topic");
            self.give(partition, least);
            moved = true;
        }
    }
}

fn uniform_heterogeneous(
    members: &BTreeMap<String, MemberSpec>,
    subscriptions: &[(&str, BTreeSet<TopicId>)],
    partition_counts: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, Assignment> {
    let mut loads = Loads {
        subscribers: BTreeMap::new(),
        owners: BTreeMap::new(),
        counts: vec![0; subscriptions.len()],
        partition_counts,
    };
    for (index, (_, topics)) in subscriptions.iter().enumerate() {
        for topic_id in topics {
            loads.subscribers.entry(*topic_id).or_default().push(index);
        }
    }
    // Step 1: keep what is still subscribed.
    for (index, partitions) in retained_partitions(members, subscriptions, partition_counts).into_iter().enumerate() {
        for partition in partitions {
            loads.give(partition, index);
        }
    }
    // Step 2: the unassigned partitions go to the least loaded subscribers.
    let order = loads.topic_order();
    for topic_id in &order {
        let subscribers = loads.subscribers.get(topic_id).cloned().unwrap_or_default();
        for index in 0..partition_counts.get(topic_id).copied().unwrap_or(0) {
            if !loads.owners.contains_key(&(*topic_id, index)) {
                let member = loads.least_loaded(&subscribers).expect("a subscribed topic has subscribers");
                loads.give((*topic_id, index), member);
            }
        }
    }
    // Step 3: move partitions until no topic can improve the balance.
    let shared: Vec<TopicId> = order
        .into_iter()
        .filter(|topic_id| loads.subscribers.get(topic_id).is_some_and(|list| list.len() >= 2))
        .collect();
    loop {
        let mut moved = false;
        for topic_id in &shared {
            moved |= loads.balance_topic(*topic_id);
        }
        if !moved {
            break;
        }
    }
    let mut result: Vec<Assignment> = vec![Assignment::new(); subscriptions.len()];
    for ((topic_id, partition), owner) in loads.owners {
        result[owner].insert(topic_id, partition);
    }
    subscriptions.iter().zip(result).map(|((member_id, _), assignment)| ((*member_id).to_owned(), assignment)).collect()
}

fn range(
    members: &BTreeMap<String, MemberSpec>,
    subscriptions: &[(&str, BTreeSet<TopicId>)],
    partition_counts: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, Assignment> {
    // Static members first, by instance id; then the others by member id.
    let mut order: Vec<(&str, &BTreeSet<TopicId>)> =
        subscriptions.iter().map(|(member_id, topics)| (*member_id, topics)).collect();
    let instance = |member_id: &str| members.get(member_id).and_then(|spec| spec.instance_id.clone());
    order.sort_by(|(left, _), (right, _)| match (instance(left), instance(right)) {
        (Some(left_instance), Some(right_instance)) => left_instance.cmp(&right_instance).then(left.cmp(right)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => left.cmp(right),
    });
    let mut result: BTreeMap<String, Assignment> =
        subscriptions.iter().map(|(member_id, _)| ((*member_id).to_owned(), Assignment::new())).collect();
    for (topic_id, partition_count) in partition_counts {
        let subscribers: Vec<&str> =
            order.iter().filter(|(_, topics)| topics.contains(topic_id)).map(|(member_id, _)| *member_id).collect();
        if subscribers.is_empty() {
            continue;
        }
        let subscriber_count = i32::try_from(subscribers.len()).unwrap_or(i32::MAX);
        let quota_min = partition_count / subscriber_count;
        let extra_count = partition_count % subscriber_count;
        let mut next = 0;
        for (position, member_id) in (0..).zip(subscribers) {
            let quota = quota_min + i32::from(position < extra_count);
            let assignment = result.get_mut(member_id).expect("every member has an entry");
            for partition in next..next + quota {
                assignment.insert(*topic_id, partition);
            }
            next += quota;
        }
        assert_eq!(next, *partition_count, "the ranges cover the topic");
    }
    result
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn topic(index: u128) -> TopicId {
        TopicId::from_u128(index + 1)
    }

    fn spec(topics: &[u128], assignment: &[(u128, i32)]) -> MemberSpec {
        MemberSpec {
            instance_id: None,
            rack_id: None,
            subscribed_topic_ids: topics.iter().map(|index| topic(*index)).collect(),
            assignment: Assignment::from_pairs(assignment.iter().map(|(index, partition)| (topic(*index), *partition))),
        }
    }

    fn counts(pairs: &[(u128, i32)]) -> BTreeMap<TopicId, i32> {
        pairs.iter().map(|(index, count)| (topic(*index), *count)).collect()
    }

    fn members(specs: Vec<(&str, MemberSpec)>) -> BTreeMap<String, MemberSpec> {
        specs.into_iter().map(|(member_id, spec)| (member_id.to_owned(), spec)).collect()
    }

    /// Checks that every partition of a subscribed topic has exactly one owner, subscribed to it,
    /// and that nothing else is assigned.
    fn assert_valid(
        members: &BTreeMap<String, MemberSpec>,
        partition_counts: &BTreeMap<TopicId, i32>,
        result: &BTreeMap<String, Assignment>,
    ) {
        assert_eq!(result.keys().collect::<Vec<_>>(), members.keys().collect::<Vec<_>>());
        let mut owners: BTreeMap<Partition, &str> = BTreeMap::new();
        for (member_id, assignment) in result {
            for (topic_id, partition) in assignment.iter() {
                assert!(
                    members[member_id].subscribed_topic_ids.contains(&topic_id),
                    "{member_id} got an unsubscribed topic"
                );
                assert!(partition >= 0 && partition < partition_counts[&topic_id], "partition out of range");
                assert!(owners.insert((topic_id, partition), member_id).is_none(), "a partition has two owners");
            }
        }
        for (topic_id, count) in partition_counts {
            if members.values().any(|spec| spec.subscribed_topic_ids.contains(topic_id)) {
                for partition in 0..*count {
                    assert!(owners.contains_key(&(*topic_id, partition)), "a subscribed partition is unassigned");
                }
            }
        }
    }

    #[test]
    fn assignor_names_are_kafkas() {
        assert_eq!(ServerAssignor::from_name("uniform"), Some(ServerAssignor::Uniform));
        assert_eq!(ServerAssignor::from_name("range"), Some(ServerAssignor::Range));
        assert_eq!(ServerAssignor::from_name("cooperative-sticky"), None);
    }

    #[test]
    fn uniform_splits_evenly_and_a_new_member_takes_only_the_excess() {
        let partition_counts = counts(&[(0, 6)]);
        let first = members(vec![("a", spec(&[0], &[])), ("b", spec(&[0], &[]))]);
        let result = assign(ServerAssignor::Uniform, &first, &partition_counts);
        assert_valid(&first, &partition_counts, &result);
        assert_eq!(result["a"].partition_count(), 3);
        let pairs = |member: &str| -> Vec<(u128, i32)> {
            result[member].iter().map(|(topic_id, partition)| (topic_id.as_u128() - 1, partition)).collect()
        };
        let second =
            members(vec![("a", spec(&[0], &pairs("a"))), ("b", spec(&[0], &pairs("b"))), ("c", spec(&[0], &[]))]);
        let next = assign(ServerAssignor::Uniform, &second, &partition_counts);
        assert_valid(&second, &partition_counts, &next);
        for member in ["a", "b"] {
            assert_eq!(next[member].partition_count(), 2);
            assert!(next[member].difference(&result[member]).is_empty(), "{member} only gives partitions up");
        }
        assert_eq!(next["c"].partition_count(), 2);
    }

    #[test]
    fn uniform_gives_the_extra_partition_to_the_member_already_holding_it() {
        let partition_counts = counts(&[(0, 3)]);
        let group = members(vec![("a", spec(&[0], &[(0, 0)])), ("b", spec(&[0], &[(0, 1), (0, 2)]))]);
        let result = assign(ServerAssignor::Uniform, &group, &partition_counts);
        assert_eq!(result["a"], group["a"].assignment);
        assert_eq!(result["b"], group["b"].assignment);
    }

    #[test]
    fn uniform_heterogeneous_balances_shared_topics() {
        let partition_counts = counts(&[(0, 4), (1, 4)]);
        let group = members(vec![("a", spec(&[0], &[])), ("b", spec(&[0, 1], &[])), ("c", spec(&[1], &[]))]);
        let result = assign(ServerAssignor::Uniform, &group, &partition_counts);
        assert_valid(&group, &partition_counts, &result);
        let loads: Vec<usize> = result.values().map(Assignment::partition_count).collect();
        assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1, "{loads:?}");
    }

    #[test]
    fn range_gives_co_partitioned_ranges_with_static_members_first() {
        let partition_counts = counts(&[(0, 5), (1, 5)]);
        let mut zed = spec(&[0, 1], &[]);
        zed.instance_id = Some("instance-0".to_owned());
        let group = members(vec![("a", spec(&[0, 1], &[])), ("zed", zed)]);
        let result = assign(ServerAssignor::Range, &group, &partition_counts);
        assert_valid(&group, &partition_counts, &result);
        let expected_zed =
            Assignment::from_pairs([0, 1, 2].into_iter().flat_map(|index| [(topic(0), index), (topic(1), index)]));
        assert_eq!(result["zed"], expected_zed);
        assert_eq!(result["a"].partition_count(), 4);
    }

    #[test]
    fn unknown_and_empty_topics_are_ignored() {
        let partition_counts = counts(&[(0, 2), (1, 0)]);
        let group = members(vec![("a", spec(&[0, 1, 7], &[(7, 0)]))]);
        for assignor in [ServerAssignor::Uniform, ServerAssignor::Range] {
            let result = assign(assignor, &group, &partition_counts);
            assert_eq!(result["a"], Assignment::from_pairs([(topic(0), 0), (topic(0), 1)]));
        }
    }

    /// A random group: members with subscriptions (over up to 4 topics) and current targets.
    fn group_strategy(
        homogeneous: bool,
    ) -> impl Strategy<Value = (BTreeMap<String, MemberSpec>, BTreeMap<TopicId, i32>)> {
        let topics = prop::collection::vec(0i32..8, 1..4);
        let member_count = 1usize..7;
        (topics, member_count, any::<u64>()).prop_map(move |(partition_counts, member_count, seed)| {
            let partition_counts: BTreeMap<TopicId, i32> =
                partition_counts.iter().enumerate().map(|(index, count)| (topic(index as u128), *count)).collect();
            let topic_ids: Vec<TopicId> = partition_counts.keys().copied().collect();
            let mut state = seed;
            let mut next = move || {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                state >> 33
            };
            let shared: BTreeSet<TopicId> = topic_ids.iter().copied().filter(|_| next() % 2 == 0).collect();
            let mut members = BTreeMap::new();
            for index in 0..member_count {
                let subscribed = if homogeneous {
                    shared.clone()
                } else {
                    topic_ids.iter().copied().filter(|_| next() % 2 == 0).collect()
                };
                // Current targets: random, possibly stale, overlapping or out of range.
                let mut assignment = Assignment::new();
                for topic_id in &topic_ids {
                    for partition in 0..=partition_counts[topic_id] {
                        if next() % 3 == 0 {
                            assignment.insert(*topic_id, partition);
                        }
                    }
                }
                let spec = MemberSpec {
                    instance_id: (next() % 4 == 0).then(|| format!("instance-{}", next() % 5)),
                    rack_id: None,
                    subscribed_topic_ids: subscribed,
                    assignment,
                };
                members.insert(format!("member-{index}"), spec);
            }
            (members, partition_counts)
        })
    }

    fn with_targets(
        members: &BTreeMap<String, MemberSpec>,
        targets: &BTreeMap<String, Assignment>,
    ) -> BTreeMap<String, MemberSpec> {
        members
            .iter()
            .map(|(member_id, spec)| {
                (member_id.clone(), MemberSpec { assignment: targets[member_id].clone(), ..spec.clone() })
            })
            .collect()
    }

    proptest! {
        #[test]
        fn every_subscribed_partition_has_exactly_one_subscribed_owner(
            (group, partition_counts) in prop_oneof![group_strategy(true), group_strategy(false)],
            use_range in any::<bool>(),
        ) {
            let assignor = if use_range { ServerAssignor::Range } else { ServerAssignor::Uniform };
            let result = assign(assignor, &group, &partition_counts);
            assert_valid(&group, &partition_counts, &result);
        }

        #[test]
        fn uniform_with_homogeneous_subscriptions_is_balanced_within_one((group, partition_counts) in group_strategy(true)) {
            let result = assign(ServerAssignor::Uniform, &group, &partition_counts);
            let loads: Vec<usize> = result.values().map(Assignment::partition_count).collect();
            let max = loads.iter().copied().max().unwrap_or(0);
            let min = loads.iter().copied().min().unwrap_or(0);
            prop_assert!(max - min <= 1, "loads {:?}", loads);
        }

        #[test]
        fn uniform_with_heterogeneous_subscriptions_balances_each_topic(
            (group, partition_counts) in group_strategy(false),
        ) {
            let result = assign(ServerAssignor::Uniform, &group, &partition_counts);
            // No holder of a topic's partition has two more partitions than another subscriber.
            for (topic_id, count) in &partition_counts {
                let subscribers: Vec<&String> = group
                    .iter()
                    .filter(|(_, spec)| spec.subscribed_topic_ids.contains(topic_id))
                    .map(|(member_id, _)| member_id)
                    .collect();
                for holder in subscribers.iter().filter(|member_id| result[**member_id].partitions(*topic_id).is_some()) {
                    for other in &subscribers {
                        prop_assert!(
                            result[*holder].partition_count() <= result[*other].partition_count() + 1,
                            "topic with {} partitions: {} holds {}, {} holds {}",
                            count, holder, result[*holder].partition_count(), other, result[*other].partition_count()
                        );
                    }
                }
            }
        }

        #[test]
        fn uniform_is_sticky((group, partition_counts) in prop_oneof![group_strategy(true), group_strategy(false)]) {
            // A member keeps what it still validly holds, up to the even share.
            let result = assign(ServerAssignor::Uniform, &group, &partition_counts);
            let subscriptions: Vec<(&str, BTreeSet<TopicId>)> =
                group.iter().map(|(member_id, spec)| (member_id.as_str(), spec.subscribed_topic_ids.clone())).collect();
            let retained = retained_partitions(&group, &subscriptions, &partition_counts);
            let homogeneous = subscriptions.windows(2).all(|pair| pair[0].1 == pair[1].1);
            let total: usize = if homogeneous {
                subscriptions.first().map_or(0, |(_, topics)| {
                    topics.iter().map(|topic_id| partition_counts[topic_id] as usize).sum()
                })
            } else {
                0
            };
            for ((member_id, _), kept) in subscriptions.iter().zip(&retained) {
                let still_held = kept.iter().filter(|(topic_id, partition)| result[*member_id].contains(*topic_id, *partition)).count();
                if homogeneous {
                    prop_assert!(still_held >= kept.len().min(total / group.len()), "{} lost too much", member_id);
                }
            }
            // And an assignment that is already the assignor's answer does not move at all.
            let again = assign(ServerAssignor::Uniform, &with_targets(&group, &result), &partition_counts);
            prop_assert_eq!(again, result);
        }

        #[test]
        fn assignment_is_deterministic((group, partition_counts) in group_strategy(false), use_range in any::<bool>()) {
            let assignor = if use_range { ServerAssignor::Range } else { ServerAssignor::Uniform };
            let reversed: BTreeMap<String, MemberSpec> = group.clone().into_iter().rev().collect();
            prop_assert_eq!(assign(assignor, &group, &partition_counts), assign(assignor, &reversed, &partition_counts));
        }

        #[test]
        fn range_keeps_co_partitioned_topics_aligned((group, partition_counts) in group_strategy(true)) {
            // With equal partition counts, each member gets the same partition numbers of each topic.
            let equal: BTreeMap<TopicId, i32> = partition_counts.keys().map(|topic_id| (*topic_id, 5)).collect();
            let result = assign(ServerAssignor::Range, &group, &equal);
            for assignment in result.values() {
                let numbers: BTreeSet<&BTreeSet<i32>> = assignment.topics().map(|(_, partitions)| partitions).collect();
                prop_assert!(numbers.len() <= 1);
            }
        }
    }
}
