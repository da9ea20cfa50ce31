//! The operations of a consumer group: ConsumerGroupHeartbeat (join, heartbeat, leave, static
//! leave), the expiry of sessions and rebalance timeouts, and the timers after a load.
//!
//! A heartbeat, as Kafka's `consumerGroupHeartbeat`:
//! 1. validate the request (INVALID_REQUEST, UNSUPPORTED_ASSIGNOR), the group's size
//!    (GROUP_MAX_SIZE_REACHED), and the member: a join creates it (or, for a static member whose
//!    previous incarnation left with epoch -2, takes over that member's assignment;
//!    UNRELEASED_INSTANCE_ID while the previous one has not left); otherwise the member must exist
//!    (UNKNOWN_MEMBER_ID), own its instance id (FENCED_INSTANCE_ID) and send its epoch, or its
//!    previous epoch with owned partitions it still has (FENCED_MEMBER_EPOCH);
//! 2. update the member's metadata; a changed subscription, a regular expression resolving to
//!    other topics, a new group or a change in the subscribed topics' metadata bumps the group
//!    epoch;
//! 3. when the group epoch is ahead of the assignment epoch, compute a new target assignment;
//! 4. reconcile the member with its target (see `reconcile.rs`), unless it already has it;
//! 5. answer with the member's epoch, the heartbeat interval and, when it changed or the request
//!    was a full one (a join, or one carrying the rebalance timeout, the subscription and the
//!    owned partitions), its assignment.
//!
//! Every check happens before the first change, so a refused heartbeat changes nothing. Changes
//! are made by generating records and replaying them into the group (see `group.rs`).
//!
//! Touched only by the group's coordinator shard thread.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;

use super::assignor::{MemberSpec, assign};
use super::config::ConsumerGroupConfig;
use super::group::{ConsumerGroup, MemberTimers};
use super::member::ConsumerGroupMember;
use super::reconcile::{MemberState, ReconcileInput, reconcile};
use super::records::{ConsumerGroupRecord, ConsumerGroupRegularExpressionValue, TopicPartitions};
use super::topics::TopicsImage;
use super::{Assignment, JOIN_GROUP_MEMBER_EPOCH, LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH, Refusal};

/// The first ConsumerGroupHeartbeat version in which the client names itself (KIP-1082).
const CONSUMER_GENERATED_MEMBER_ID_REQUIRED_VERSION: i16 = 1;

/// A ConsumerGroupHeartbeat request (v0-v1), field for field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeartbeatRequest {
    /// The request's API version (0 or 1).
    pub(crate) api_version: i16,
    /// The group id.
    pub(crate) group_id: String,
    /// The member id; empty on a v0 join, where the coordinator names the member.
    pub(crate) member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member to leave for now; else its epoch.
    pub(crate) member_epoch: i32,
    /// The static member's `group.instance.id`.
    pub(crate) instance_id: Option<String>,
    /// The member's rack, if it changed.
    pub(crate) rack_id: Option<String>,
    /// The rebalance timeout, or -1 if unchanged.
    pub(crate) rebalance_timeout_ms: i32,
    /// The subscribed topic names, or `None` if unchanged.
    pub(crate) subscribed_topic_names: Option<Vec<String>>,
    /// The subscribed topic regular expression (v1), or `None` if unchanged; "" for none.
    pub(crate) subscribed_topic_regex: Option<String>,
    /// The server assignor, or `None` if unchanged.
    pub(crate) server_assignor: Option<String>,
    /// The partitions the member owns, or `None` if unchanged.
    pub(crate) topic_partitions: Option<Vec<TopicPartitions>>,
}

/// Who sent the request (from the connection, not the request body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientInfo {
    /// The request header's client id.
    pub(crate) client_id: String,
    /// The client's address, as Kafka prints it.
    pub(crate) client_host: String,
}

/// What an operation runs with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// Now, in monotonic milliseconds, for deadlines.
    pub(crate) now_ms: i64,
    /// Now, in milliseconds since the Unix epoch, for stored timestamps.
    pub(crate) unix_ms: i64,
    /// The cluster's topics.
    pub(crate) topics: &'a TopicsImage,
    /// The consumer group settings.
    pub(crate) config: &'a ConsumerGroupConfig,
}

/// The ConsumerGroupHeartbeat response data (error code none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeartbeatResponse {
    /// The member id (generated on a v0 join).
    pub(crate) member_id: String,
    /// The member's epoch (-1 or -2 after a leave).
    pub(crate) member_epoch: i32,
    /// How often to heartbeat (0 after a leave, as Kafka answers).
    pub(crate) heartbeat_interval_ms: i32,
    /// The member's whole assignment, when it must be sent.
    pub(crate) assignment: Option<Assignment>,
}

/// The records to write and the response to send once they are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeartbeatOutcome {
    /// The records, in order.
    pub(crate) records: Vec<ConsumerGroupRecord>,
    /// The response.
    pub(crate) response: HeartbeatResponse,
}

/// How a heartbeat changes the member's regular expression (Kafka's
/// `UpdateRegularExpressionStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegexChange {
    /// Unchanged.
    None,
    /// Changed; the group epoch is bumped only if the new expression resolves to other topics.
    Updated,
    /// Changed to an expression already resolved, or to none: the group epoch is bumped.
    UpdatedAndResolved,
}

/// The member a heartbeat is about, before its metadata is updated.
struct Resolved {
    member: ConsumerGroupMember,
    /// The previous incarnation of a static member this one replaces.
    replaces: Option<String>,
}

/// A heartbeat that passed every check.
struct Checked {
    member_id: String,
    /// The member before this heartbeat (for a static member replacing its previous
    /// incarnation, that incarnation under the new member id, from epoch 0).
    member: ConsumerGroupMember,
    /// The member with the request's changes.
    updated: ConsumerGroupMember,
    replaces: Option<String>,
    regex_change: RegexChange,
}

/// The ConsumerGroupHeartbeat checks Kafka makes before reaching the group.
fn validate_request(request: &HeartbeatRequest, config: &ConsumerGroupConfig) -> Result<(), Refusal> {
    let epoch = request.member_epoch;
    if (request.api_version >= CONSUMER_GENERATED_MEMBER_ID_REQUIRED_VERSION
        || epoch > 0
        || epoch == LEAVE_GROUP_MEMBER_EPOCH)
        && request.member_id.is_empty()
    {
        return Err(Refusal::invalid_request("MemberId can't be empty."));
    }
    if request.group_id.is_empty() {
        return Err(Refusal::invalid_request("GroupId can't be empty."));
    }
    if request.instance_id.as_deref() == Some("") {
        return Err(Refusal::invalid_request("InstanceId can't be empty."));
    }
    if request.rack_id.as_deref() == Some("") {
        return Err(Refusal::invalid_request("RackId can't be empty."));
    }
    if epoch == JOIN_GROUP_MEMBER_EPOCH {
        if request.rebalance_timeout_ms == -1 {
            return Err(Refusal::invalid_request("RebalanceTimeoutMs must be provided in first request."));
        }
        if request.topic_partitions.as_ref().is_none_or(|owned| !owned.is_empty()) {
            return Err(Refusal::invalid_request("TopicPartitions must be empty when (re-)joining."));
        }
        // Joining with an empty list of names or an empty expression is allowed: the member is in
        // the group without subscribing to anything.
        if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none() {
            return Err(Refusal::invalid_request(
                "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
            ));
        }
    } else if epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        if request.instance_id.is_none() {
            return Err(Refusal::invalid_request("InstanceId can't be null."));
        }
    } else if epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        return Err(Refusal::invalid_request("MemberEpoch is invalid."));
    }
    if let Some(name) = &request.server_assignor
        && config.assignor(name).is_none()
    {
        let supported: Vec<&str> = config.assignors.iter().map(|assignor| assignor.name()).collect();
        return Err(Refusal::new(
            ResponseError::UnsupportedAssignor,
            format!("ServerAssignor {name} is not supported. Supported assignors: {}.", supported.join(", ")),
        ));
    }
    Ok(())
}

/// Whether every owned partition is in `assigned` (Kafka's `isSubset`: a topic reported with
/// no partitions must still be assigned).
fn is_subset(owned: Option<&[TopicPartitions]>, assigned: &Assignment) -> bool {
    let Some(owned) = owned else { return false };
    owned.iter().all(|topic| {
        assigned
            .partitions(topic.topic_id)
            .is_some_and(|partitions| topic.partitions.iter().all(|partition| partitions.contains(partition)))
    })
}

/// Compiles a subscription regular expression with RE2 semantics, matching whole topic names
/// (RE2/J's `matches()`, which Kafka uses).
fn compile_regex(regex: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{regex})$"))
}

/// Whether a regular expression may match this topic: never internal topics.
fn matchable(topic: &str) -> bool {
    !topic.starts_with("__")
}

impl ConsumerGroup {
    /// The group a heartbeat for an unknown group id creates: only a join creates a group.
    ///
    /// # Errors
    /// The request's own errors (as [`ConsumerGroup::heartbeat`]), then GROUP_ID_NOT_FOUND for
    /// anything but a join.
    pub(crate) fn for_heartbeat(request: &HeartbeatRequest, config: &ConsumerGroupConfig) -> Result<Self, Refusal> {
        validate_request(request, config)?;
        if request.member_epoch != JOIN_GROUP_MEMBER_EPOCH {
            return Err(Refusal::new(
                ResponseError::GroupIdNotFound,
                format!("Consumer group {} not found.", request.group_id),
            ));
        }
        Ok(Self::new(&request.group_id))
    }

    /// Handles a ConsumerGroupHeartbeat: a join (epoch 0), a heartbeat, a leave (-1) or a static
    /// member's temporary leave (-2). `new_member_id` names a member joining without an id
    /// (v0); it is called at most once.
    ///
    /// # Errors
    /// Kafka's errors for the request; the group is then unchanged.
    ///
    /// # Panics
    /// If the request is for another group.
    pub(crate) fn heartbeat(
        &mut self,
        request: &HeartbeatRequest,
        client: &ClientInfo,
        context: &Context<'_>,
        new_member_id: impl FnOnce() -> String,
    ) -> Result<HeartbeatOutcome, Refusal> {
        assert_eq!(request.group_id, self.group_id, "a heartbeat reaches its own group");
        validate_request(request, context.config)?;
        if request.member_epoch == LEAVE_GROUP_MEMBER_EPOCH || request.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            if !self.data.exists {
                return Err(Refusal::new(
                    ResponseError::GroupIdNotFound,
                    format!("Consumer group {} not found.", self.group_id),
                ));
            }
            return self.leave(request, context);
        }
        self.member_heartbeat(request, client, context, new_member_id)
    }

    fn member_heartbeat(
        &mut self,
        request: &HeartbeatRequest,
        client: &ClientInfo,
        context: &Context<'_>,
        new_member_id: impl FnOnce() -> String,
    ) -> Result<HeartbeatOutcome, Refusal> {
        let checked = self.check_heartbeat(request, client, context, new_member_id)?;
        let Checked { member_id, member, updated, replaces, regex_change } = checked;

        // Step 2: the member and the group epoch.
        let mut records = Vec::new();
        if let Some(previous_member_id) = &replaces {
            self.replace_static_member(&mut records, previous_member_id, &member);
        }
        let names_changed = updated.subscribed_topic_names != member.subscribed_topic_names;
        if !updated.same_metadata(&member) {
            let metadata = Some(updated.to_metadata_value());
            self.emit(&mut records, ConsumerGroupRecord::member_metadata(&self.group_id, &member_id, metadata));
        }
        let regexes_changed = self.update_regexes(&mut records, &member, &updated, regex_change, context);
        let bump = self.data.group_epoch == 0
            || names_changed
            || regex_change == RegexChange::UpdatedAndResolved
            || regexes_changed;
        self.update_subscription_metadata(&mut records, bump, context.topics);

        // Step 3: the target assignment.
        if self.data.group_epoch > self.data.assignment_epoch {
            self.update_target_assignment(&mut records, context);
        }

        // Step 4: the member's reconciliation.
        let subscription_changed = names_changed || regex_change != RegexChange::None;
        let owned = request.topic_partitions.as_deref();
        self.maybe_reconcile(&mut records, &member_id, subscription_changed, owned, context);
        let session_deadline_ms = context.now_ms + i64::from(context.config.session_timeout_ms);
        self.timers
            .entry(member_id.clone())
            .or_insert(MemberTimers { session_deadline_ms, rebalance: None })
            .session_deadline_ms = session_deadline_ms;

        // Step 5: the response.
        let response = self.response(request, &member_id, &member.assignment.assigned, context.config);
        Ok(HeartbeatOutcome { records, response })
    }

    /// Step 1 of a heartbeat: every check, before any change.
    fn check_heartbeat(
        &self,
        request: &HeartbeatRequest,
        client: &ClientInfo,
        context: &Context<'_>,
        new_member_id: impl FnOnce() -> String,
    ) -> Result<Checked, Refusal> {
        let size_max = usize::try_from(context.config.group_size_max).unwrap_or(usize::MAX);
        if self.data.members.len() >= size_max
            && (request.member_id.is_empty() || !self.data.members.contains_key(&request.member_id))
        {
            return Err(Refusal::new(
                ResponseError::GroupMaxSizeReached,
                format!("The consumer group has reached its maximum capacity of {size_max} members."),
            ));
        }
        let member_id = if request.member_id.is_empty() { new_member_id() } else { request.member_id.clone() };
        let owned = request.topic_partitions.as_deref();
        let Resolved { member, replaces } = match &request.instance_id {
            None => self.dynamic_member(&member_id, request.member_epoch, owned)?,
            Some(instance_id) => self.static_member_for(&member_id, instance_id, request.member_epoch, owned)?,
        };
        let updated = updated_member(&member, request, client);
        let regex_change = self.regex_change(&member, &updated)?;
        if updated.assignment.state == MemberState::Unknown && owned.is_none_or(|owned| !owned.is_empty()) {
            return Err(Refusal::new(
                ResponseError::FencedMemberEpoch,
                "The consumer group member is in a unknown state. The member must abandon all its partitions and rejoin.",
            ));
        }
        Ok(Checked { member_id, member, updated, replaces, regex_change })
    }

    /// Step 5 of a heartbeat: the member's epoch and, when it changed or the request was a full
    /// one, its assignment. `before` is what it had before this heartbeat.
    fn response(
        &self,
        request: &HeartbeatRequest,
        member_id: &str,
        before: &Assignment,
        config: &ConsumerGroupConfig,
    ) -> HeartbeatResponse {
        let current = &self.data.members[member_id];
        // A full request carries every field a join must: the member sends one when (re)joining
        // and after any error, such as a lost response.
        let full_request = request.rebalance_timeout_ms != -1
            && (request.subscribed_topic_names.is_some() || request.subscribed_topic_regex.is_some())
            && request.topic_partitions.is_some();
        let send_assignment =
            request.member_epoch == JOIN_GROUP_MEMBER_EPOCH || full_request || current.assignment.assigned != *before;
        HeartbeatResponse {
            member_id: member_id.to_owned(),
            member_epoch: current.member_epoch(),
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment: send_assignment.then(|| current.assignment.assigned.clone()),
        }
    }

    /// Finds (or, on a join, creates) a member without an instance id.
    fn dynamic_member(
        &self,
        member_id: &str,
        member_epoch: i32,
        owned: Option<&[TopicPartitions]>,
    ) -> Result<Resolved, Refusal> {
        match self.data.members.get(member_id) {
            Some(existing) => {
                check_member_epoch(existing, member_epoch, owned)?;
                Ok(Resolved { member: existing.clone(), replaces: None })
            }
            None if member_epoch == JOIN_GROUP_MEMBER_EPOCH => {
                tracing::info!(group = %self.group_id, member = member_id, "member joins the consumer group");
                Ok(Resolved { member: ConsumerGroupMember::new(member_id), replaces: None })
            }
            None => Err(Refusal::new(
                ResponseError::UnknownMemberId,
                format!("Member {member_id} is not a member of group {}.", self.group_id),
            )),
        }
    }

    /// Finds, creates, or replaces the member with `instance_id`.
    fn static_member_for(
        &self,
        member_id: &str,
        instance_id: &str,
        member_epoch: i32,
        owned: Option<&[TopicPartitions]>,
    ) -> Result<Resolved, Refusal> {
        let existing = self.static_member(instance_id);
        if member_epoch == JOIN_GROUP_MEMBER_EPOCH {
            let Some(previous) = existing else {
                let member =
                    self.data.members.get(member_id).cloned().unwrap_or_else(|| ConsumerGroupMember::new(member_id));
                tracing::info!(group = %self.group_id, member = member_id, instance = instance_id, "static member joins the consumer group");
                return Ok(Resolved { member, replaces: None });
            };
            if previous.member_epoch() != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                return Err(Refusal::new(
                    ResponseError::UnreleasedInstanceId,
                    format!(
                        "Static member {member_id} with instance id {instance_id} cannot join the group because the \
                         instance id is owned by {} member.",
                        previous.member_id
                    ),
                ));
            }
            // The new incarnation takes over the previous one's assignment, from epoch 0.
            let mut member = previous.clone();
            member_id.clone_into(&mut member.member_id);
            member.assignment.member_epoch = 0;
            member.assignment.previous_member_epoch = 0;
            tracing::info!(
                group = %self.group_id, member = member_id, instance = instance_id, previous = %previous.member_id,
                "static member rejoins the consumer group"
            );
            return Ok(Resolved { member, replaces: Some(previous.member_id.clone()) });
        }
        let previous = static_incarnation(existing, instance_id, member_id)?;
        check_member_epoch(previous, member_epoch, owned)?;
        Ok(Resolved { member: previous.clone(), replaces: None })
    }

    /// Decides how the member's regular expression changes (Kafka's
    /// `maybeUpdateRegularExpressions`, with counts from before this heartbeat), refusing an
    /// invalid new expression.
    fn regex_change(
        &self,
        member: &ConsumerGroupMember,
        updated: &ConsumerGroupMember,
    ) -> Result<RegexChange, Refusal> {
        let (old, new) = (member.regex(), updated.regex());
        if old == new {
            return Ok(RegexChange::None);
        }
        let Some(new) = new else { return Ok(RegexChange::UpdatedAndResolved) };
        if self.data.regex_subscribers.get(new).copied().unwrap_or(0) == 0 {
            compile_regex(new).map_err(|error| {
                Refusal::new(
                    ResponseError::InvalidRegularExpression,
                    format!("SubscribedTopicRegex `{new}` is not a valid regular expression: {error}."),
                )
            })?;
            // A new expression: it is resolved in this heartbeat and bumps the epoch then.
            return Ok(RegexChange::UpdatedAndResolved);
        }
        Ok(if self.data.resolved_regexes.contains_key(new) {
            RegexChange::UpdatedAndResolved
        } else {
            RegexChange::Updated
        })
    }

    /// Writes the previous static member's tombstones and the new incarnation's records.
    pub(super) fn replace_static_member(
        &mut self,
        records: &mut Vec<ConsumerGroupRecord>,
        previous_member_id: &str,
        member: &ConsumerGroupMember,
    ) {
        let target = self.data.targets.get(previous_member_id).cloned().unwrap_or_default();
        self.remove_member_records(records, previous_member_id);
        let group_id = self.group_id.clone();
        self.emit(
            records,
            ConsumerGroupRecord::member_metadata(&group_id, &member.member_id, Some(member.to_metadata_value())),
        );
        self.emit(
            records,
            ConsumerGroupRecord::target_assignment(&group_id, &member.member_id, Some(target.to_topic_partitions())),
        );
        self.emit(
            records,
            ConsumerGroupRecord::current_assignment(&group_id, &member.member_id, Some(member.to_assignment_value())),
        );
    }

    /// A member's three tombstones, in the order replay needs.
    pub(super) fn remove_member_records(&mut self, records: &mut Vec<ConsumerGroupRecord>, member_id: &str) {
        let group_id = self.group_id.clone();
        self.emit(records, ConsumerGroupRecord::current_assignment(&group_id, member_id, None));
        self.emit(records, ConsumerGroupRecord::target_assignment(&group_id, member_id, None));
        self.emit(records, ConsumerGroupRecord::member_metadata(&group_id, member_id, None));
    }

    /// Tombstones an expression nobody uses any more, and resolves the group's expressions when
    /// one is new or the topics changed. Returns whether an expression now matches other topics.
    fn update_regexes(
        &mut self,
        records: &mut Vec<ConsumerGroupRecord>,
        member: &ConsumerGroupMember,
        updated: &ConsumerGroupMember,
        change: RegexChange,
        context: &Context<'_>,
    ) -> bool {
        if change != RegexChange::None
            && let Some(old) = member.regex()
            && !self.data.regex_subscribers.contains_key(old)
            && self.data.resolved_regexes.contains_key(old)
        {
            self.emit(records, ConsumerGroupRecord::regular_expression(&self.group_id.clone(), old, None));
        }
        let new_unresolved = updated.regex().is_some_and(|regex| !self.data.resolved_regexes.contains_key(regex));
        let stale = self.regexes_resolved_at != Some(context.topics.version());
        if self.data.regex_subscribers.is_empty() || !(new_unresolved || stale) {
            return false;
        }
        let mut changed = false;
        let regexes: Vec<String> = self.data.regex_subscribers.keys().cloned().collect();
        for regex in regexes {
            // An expression that no longer compiles (from an older log) matches nothing, as in
            // Kafka.
            let topics: BTreeSet<String> = match compile_regex(&regex) {
                Ok(compiled) => context
                    .topics
                    .iter()
                    .filter(|topic| matchable(&topic.name) && compiled.is_match(&topic.name))
                    .map(|topic| topic.name.clone())
                    .collect(),
                Err(error) => {
                    tracing::error!(group = %self.group_id, regex, %error, "stored regular expression does not compile");
                    BTreeSet::new()
                }
            };
            if self.resolved_regex(&regex) == Some(&topics) {
                continue;
            }
            changed |= self.resolved_regex(&regex).is_some() || !topics.is_empty();
            let value = ConsumerGroupRegularExpressionValue {
                topics: topics.into_iter().collect(),
                version: context.topics.version(),
                timestamp: context.unix_ms,
            };
            self.emit(records, ConsumerGroupRecord::regular_expression(&self.group_id.clone(), &regex, Some(value)));
        }
        self.regexes_resolved_at = Some(context.topics.version());
        changed
    }

    /// Bumps the group epoch when asked to or when the subscribed topics' metadata changed, and
    /// drops a Kafka 4.0 subscription metadata record.
    pub(super) fn update_subscription_metadata(
        &mut self,
        records: &mut Vec<ConsumerGroupRecord>,
        bump: bool,
        topics: &TopicsImage,
    ) {
        let hash = topics.metadata_hash(self.data.subscribed_topic_counts.keys().map(String::as_str));
        if bump || hash != self.data.metadata_hash {
            let epoch = self.data.group_epoch + 1;
            tracing::info!(group = %self.group_id, epoch, "bumped the consumer group epoch");
            self.emit(records, ConsumerGroupRecord::epoch(&self.group_id.clone(), epoch, hash));
        }
        if self.data.has_partition_metadata_record {
            self.emit(records, ConsumerGroupRecord::partition_metadata_tombstone(&self.group_id.clone()));
        }
    }

    /// Computes the target assignment of the group epoch and writes what changed.
    pub(super) fn update_target_assignment(&mut self, records: &mut Vec<ConsumerGroupRecord>, context: &Context<'_>) {
        let assignor = self.preferred_assignor(context.config);
        let mut partition_counts = std::collections::BTreeMap::new();
        let specs: std::collections::BTreeMap<String, MemberSpec> = self
            .data
            .members
            .values()
            .map(|member| {
                let subscribed_topic_ids = self.subscribed_topic_ids(member, context.topics);
                for topic_id in &subscribed_topic_ids {
                    if let Some(topic) = context.topics.by_id(*topic_id) {
                        partition_counts.insert(*topic_id, topic.partition_count);
                    }
                }
                let spec = MemberSpec {
                    instance_id: member.instance_id.clone(),
                    rack_id: member.rack_id.clone(),
                    subscribed_topic_ids,
                    assignment: self.data.targets.get(&member.member_id).cloned().unwrap_or_default(),
                };
                (member.member_id.clone(), spec)
            })
            .collect();
        let targets = assign(assignor, &specs, &partition_counts);
        let group_id = self.group_id.clone();
        for (member_id, target) in targets {
            if self.data.targets.get(&member_id) != Some(&target) {
                self.emit(
                    records,
                    ConsumerGroupRecord::target_assignment(&group_id, &member_id, Some(target.to_topic_partitions())),
                );
            }
        }
        let epoch = self.data.group_epoch;
        tracing::info!(group = %self.group_id, epoch, assignor = assignor.name(), "computed a new target assignment");
        self.emit(records, ConsumerGroupRecord::target_assignment_epoch(&group_id, Some(epoch)));
    }

    /// Moves the member towards its target, and arms or disarms its rebalance timer.
    pub(super) fn maybe_reconcile(
        &mut self,
        records: &mut Vec<ConsumerGroupRecord>,
        member_id: &str,
        subscription_changed: bool,
        owned: Option<&[TopicPartitions]>,
        context: &Context<'_>,
    ) {
        let member = &self.data.members[member_id];
        let target_epoch = self.data.assignment_epoch;
        if !subscription_changed && member.assignment.is_reconciled_to(target_epoch) {
            return;
        }
        let empty = Assignment::new();
        let target = self.data.targets.get(member_id).unwrap_or(&empty);
        let owned = owned.map(Assignment::from_topic_partitions);
        let subscribed_topic_ids = self.subscribed_topic_ids(member, context.topics);
        let input = ReconcileInput {
            target_epoch,
            target,
            owned: owned.as_ref(),
            subscribed_topic_ids: &subscribed_topic_ids,
            subscription_changed,
        };
        let next = reconcile(&member.assignment, &input, |topic_id, partition| {
            self.data.partition_epochs.contains_key(&(topic_id, partition))
        })
        .expect("a member in an unknown state was refused before any change");
        if next == member.assignment {
            return;
        }
        let (rebalance_timeout_ms, state, epoch) = (member.rebalance_timeout_ms, next.state, next.member_epoch);
        let session_timeout_ms = member.session_timeout_ms(context.config.session_timeout_ms);
        let mut value = member.to_assignment_value();
        value.member_epoch = next.member_epoch;
        value.previous_member_epoch = next.previous_member_epoch;
        value.state = next.state.value();
        value.assigned_partitions = next.assigned.to_topic_partitions();
        value.partitions_pending_revocation = next.pending_revocation.to_topic_partitions();
        self.emit(records, ConsumerGroupRecord::current_assignment(&self.group_id.clone(), member_id, Some(value)));
        let rebalance = (state == MemberState::UnrevokedPartitions)
            .then(|| (epoch, context.now_ms + i64::from(rebalance_timeout_ms.max(0))));
        let session_deadline_ms = context.now_ms + i64::from(session_timeout_ms);
        self.timers
            .entry(member_id.to_owned())
            .or_insert(MemberTimers { session_deadline_ms, rebalance: None })
            .rebalance = rebalance;
    }

    /// Handles a leave (-1) or a static member's temporary leave (-2).
    fn leave(&mut self, request: &HeartbeatRequest, context: &Context<'_>) -> Result<HeartbeatOutcome, Refusal> {
        let member_id = request.member_id.as_str();
        let response = HeartbeatResponse {
            member_id: member_id.to_owned(),
            member_epoch: request.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        };
        let Some(instance_id) = &request.instance_id else {
            if !self.data.members.contains_key(member_id) {
                return Err(Refusal::new(
                    ResponseError::UnknownMemberId,
                    format!("Member {member_id} is not a member of group {}.", self.group_id),
                ));
            }
            tracing::info!(group = %self.group_id, member = member_id, "member left the consumer group");
            let records = self.fence(member_id, context.topics);
            return Ok(HeartbeatOutcome { records, response });
        };
        let member = static_incarnation(self.static_member(instance_id), instance_id, member_id)?;
        if request.member_epoch == LEAVE_GROUP_MEMBER_EPOCH {
            tracing::info!(group = %self.group_id, member = member_id, instance = %instance_id, "static member left the consumer group");
            let records = self.fence(member_id, context.topics);
            return Ok(HeartbeatOutcome { records, response });
        }
        // A static member leaving for now keeps its assignment, at epoch -2, until it rejoins or
        // its session expires.
        tracing::info!(group = %self.group_id, member = member_id, instance = %instance_id, "static member temporarily left the consumer group");
        let mut value = member.to_assignment_value();
        value.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
        value.partitions_pending_revocation = Vec::new();
        let mut records = Vec::new();
        self.emit(
            &mut records,
            ConsumerGroupRecord::current_assignment(&self.group_id.clone(), member_id, Some(value)),
        );
        Ok(HeartbeatOutcome {
            records,
            response: HeartbeatResponse { member_epoch: LEAVE_GROUP_STATIC_MEMBER_EPOCH, ..response },
        })
    }

    /// Removes a member (left, session expired, or too slow to revoke) and bumps the group epoch.
    fn fence(&mut self, member_id: &str, topics: &TopicsImage) -> Vec<ConsumerGroupRecord> {
        let mut records = Vec::new();
        let regex = self.data.members.get(member_id).and_then(|member| member.regex().map(str::to_owned));
        self.remove_member_records(&mut records, member_id);
        if let Some(regex) = regex
            && !self.data.regex_subscribers.contains_key(&regex)
            && self.data.resolved_regexes.contains_key(&regex)
        {
            self.emit(&mut records, ConsumerGroupRecord::regular_expression(&self.group_id.clone(), &regex, None));
        }
        let hash = topics.metadata_hash(self.data.subscribed_topic_counts.keys().map(String::as_str));
        let epoch = self.data.group_epoch + 1;
        self.emit(&mut records, ConsumerGroupRecord::epoch(&self.group_id.clone(), epoch, hash));
        self.timers.remove(member_id);
        records
    }

    /// Fences every member whose session or rebalance timeout passed by `context.now_ms`, in
    /// deadline order, and returns the records to write. Each fenced member bumps the group
    /// epoch; the next heartbeat computes the new target.
    pub(crate) fn expire(&mut self, context: &Context<'_>) -> Vec<ConsumerGroupRecord> {
        let now_ms = context.now_ms;
        let mut due: Vec<(i64, String, &'static str)> = Vec::new();
        for (member_id, timers) in &self.timers {
            if timers.session_deadline_ms <= now_ms {
                due.push((timers.session_deadline_ms, member_id.clone(), "its session expired"));
            } else if let Some((epoch, deadline_ms)) = timers.rebalance
                && deadline_ms <= now_ms
                && self.data.members.get(member_id).is_some_and(|member| member.member_epoch() == epoch)
            {
                due.push((
                    deadline_ms,
                    member_id.clone(),
                    "it did not revoke its partitions within the rebalance timeout",
                ));
            }
        }
        // Rebalance timers of members that moved on are stale: drop them.
        for (member_id, timers) in &mut self.timers {
            if let Some((epoch, deadline_ms)) = timers.rebalance
                && deadline_ms <= now_ms
                && self.data.members.get(member_id).is_none_or(|member| member.member_epoch() != epoch)
            {
                timers.rebalance = None;
            }
        }
        due.sort();
        let mut records = Vec::new();
        for (_, member_id, reason) in due {
            if self.data.members.contains_key(&member_id) {
                tracing::info!(group = %self.group_id, member = %member_id, reason, "member fenced from the consumer group");
                records.extend(self.fence(&member_id, context.topics));
            }
        }
        records
    }

    /// The earliest timer deadline of any member (monotonic ms).
    pub(crate) fn next_deadline_ms(&self) -> Option<i64> {
        self.timers
            .values()
            .flat_map(|timers| {
                std::iter::once(timers.session_deadline_ms).chain(timers.rebalance.map(|(_, deadline)| deadline))
            })
            .min()
    }

    /// Starts the timers of a group just loaded from its log, as Kafka does: a full session for
    /// every member, and a full rebalance timeout for members still revoking.
    pub(crate) fn on_loaded(&mut self, now_ms: i64, config: &ConsumerGroupConfig) {
        self.timers = self
            .data
            .members
            .values()
            .map(|member| {
                let rebalance = (member.assignment.state == MemberState::UnrevokedPartitions)
                    .then(|| (member.member_epoch(), now_ms + i64::from(member.rebalance_timeout_ms.max(0))));
                let session_timeout_ms = member.session_timeout_ms(config.session_timeout_ms);
                let timers = MemberTimers { session_deadline_ms: now_ms + i64::from(session_timeout_ms), rebalance };
                (member.member_id.clone(), timers)
            })
            .collect();
    }

    /// Applies a record this group generated and queues it for writing.
    pub(super) fn emit(&mut self, records: &mut Vec<ConsumerGroupRecord>, record: ConsumerGroupRecord) {
        self.replay(&record).expect("a record the group generated applies to it");
        records.push(record);
    }
}

/// Checks the epoch a known member sent: its own, or its previous one with owned partitions it
/// still has (the response that bumped it may have been lost). A rejoin (0) is always accepted.
fn check_member_epoch(
    member: &ConsumerGroupMember,
    received: i32,
    owned: Option<&[TopicPartitions]>,
) -> Result<(), Refusal> {
    let current = member.member_epoch();
    if received == JOIN_GROUP_MEMBER_EPOCH || received == current {
        return Ok(());
    }
    if received > current {
        return Err(Refusal::new(
            ResponseError::FencedMemberEpoch,
            format!(
                "The consumer group member has a greater member epoch ({received}) than the one known by the group \
                 coordinator ({current}). The member must abandon all its partitions and rejoin."
            ),
        ));
    }
    if received != member.assignment.previous_member_epoch || !is_subset(owned, &member.assignment.assigned) {
        return Err(Refusal::new(
            ResponseError::FencedMemberEpoch,
            format!(
                "The consumer group member has a smaller member epoch ({received}) than the one known by the group \
                 coordinator ({current}). The member must abandon all its partitions and rejoin."
            ),
        ));
    }
    Ok(())
}

/// The member with the request's changes (fields left out keep their values).
fn updated_member(
    member: &ConsumerGroupMember,
    request: &HeartbeatRequest,
    client: &ClientInfo,
) -> ConsumerGroupMember {
    let mut updated = member.clone();
    if let Some(instance_id) = &request.instance_id {
        updated.instance_id = Some(instance_id.clone());
    }
    if let Some(rack_id) = &request.rack_id {
        updated.rack_id = Some(rack_id.clone());
    }
    if request.rebalance_timeout_ms != -1 {
        updated.rebalance_timeout_ms = request.rebalance_timeout_ms;
    }
    if let Some(server_assignor) = &request.server_assignor {
        updated.server_assignor = Some(server_assignor.clone());
    }
    if let Some(names) = &request.subscribed_topic_names {
        updated.subscribed_topic_names = names.iter().cloned().collect();
    }
    if let Some(regex) = &request.subscribed_topic_regex {
        updated.subscribed_topic_regex.clone_from(regex);
    }
    updated.client_id.clone_from(&client.client_id);
    updated.client_host.clone_from(&client.client_host);
    updated
}

/// The member that holds `instance_id`, if it is `member_id`: UNKNOWN_MEMBER_ID when no member
/// holds it, FENCED_INSTANCE_ID when another one does (Kafka's messages).
fn static_incarnation<'a>(
    holder: Option<&'a ConsumerGroupMember>,
    instance_id: &str,
    member_id: &str,
) -> Result<&'a ConsumerGroupMember, Refusal> {
    let Some(member) = holder else {
        return Err(Refusal::new(ResponseError::UnknownMemberId, format!("Instance id {instance_id} is unknown.")));
    };
    if member.member_id != member_id {
        return Err(Refusal::new(
            ResponseError::FencedInstanceId,
            format!(
                "Static member {member_id} with instance id {instance_id} was fenced by member {}.",
                member.member_id
            ),
        ));
    }
    Ok(member)
}

#[cfg(test)]
mod schedules;
#[cfg(test)]
mod tests;
