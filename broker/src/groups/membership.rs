//! Membership operations of the classic group protocol on one [`Group`]: JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup and the expiry of members, pending members and phases.
//!
//! JoinGroup, for a member without an id:
//! 1. a static member (group.instance.id) whose instance is known takes over the old member id's
//!    place: its pending answers are fenced, and a Stable group whose protocol does not change
//!    answers at once with the current generation (no rebalance), so SyncGroup returns the old
//!    assignment; otherwise a rebalance starts;
//! 2. a dynamic member on JoinGroup v4+ gets MEMBER_ID_REQUIRED with its new id, and must rejoin
//!    with it before its session timeout;
//! 3. anyone else is added and a rebalance starts (or, during one, the join phase may now be
//!    complete).
//!
//! For a known member: a rejoin during PreparingRebalance waits for the phase end; a follower
//! with unchanged metadata in CompletingRebalance or Stable gets the current generation back;
//! anything else starts a rebalance.
//!
//! The join phase completes when every member has rejoined and no MEMBER_ID_REQUIRED member is
//! pending, or at the deadline (the longest rebalance timeout), when members that did not rejoin
//! are removed. An empty group's first rebalance waits `group.initial.rebalance.delay.ms`
//! first, extended while new members keep arriving.
//!
//! Touched only by the group's coordinator shard thread.

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::group::{
    Group, GroupState, InitialDelay, JoinOutcome, JoinWaiter, JoinedMember, Member, Now, Protocol, SyncOutcome,
    SyncWaiter, answer,
};

/// A JoinGroup request, as the group sees it.
#[derive(Debug, Clone)]
pub(crate) struct JoinArgs {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocol_type: String,
    pub(crate) protocols: Vec<Protocol>,
    /// JoinGroup v4+: a new dynamic member must first get MEMBER_ID_REQUIRED.
    pub(crate) require_known_member_id: bool,
    /// JoinGroup v9+: the leader may be told to skip assignment (KIP-814).
    pub(crate) supports_skip_assignment: bool,
    /// The id a new member gets.
    pub(crate) new_member_id: String,
}

/// A SyncGroup request, as the group sees it.
#[derive(Debug, Clone)]
pub(crate) struct SyncArgs {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) generation_id: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) assignments: Vec<(String, Bytes)>,
}

/// Who a Heartbeat or LeaveGroup names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemberRef<'a> {
    pub(crate) member_id: &'a str,
    pub(crate) group_instance_id: Option<&'a str>,
}

/// Settings the membership logic needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JoinPolicy {
    pub(crate) initial_rebalance_delay_ms: i64,
}

impl Group {
    /// Handles a JoinGroup; the answer goes to `waiter`, now or when the join phase ends. The
    /// caller has validated the group id and session timeout.
    pub(crate) fn join(&mut self, now: Now, policy: JoinPolicy, args: JoinArgs, waiter: JoinWaiter) {
        if self.state == GroupState::Dead {
            return answer(&waiter, JoinOutcome::failed(ResponseError::CoordinatorNotAvailable, &args.member_id));
        }
        if !self.supports_protocols(&args.member_id, &args.protocol_type, &args.protocols) {
            return answer(&waiter, JoinOutcome::failed(ResponseError::InconsistentGroupProtocol, &args.member_id));
        }
        if args.member_id.is_empty() {
            self.join_new_member(now, policy, args, waiter);
        } else {
            self.join_known_member(now, policy, args, waiter);
        }
    }

    fn join_new_member(&mut self, now: Now, policy: JoinPolicy, args: JoinArgs, waiter: JoinWaiter) {
        if let Some(instance) = args.group_instance_id.clone() {
            if let Some(old_member_id) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(now, policy, &old_member_id, &args, waiter);
            }
        } else if args.require_known_member_id {
            let deadline = now.monotonic_ms + i64::from(args.session_timeout_ms);
            self.pending_members.insert(args.new_member_id.clone(), deadline);
            return answer(&waiter, JoinOutcome::failed(ResponseError::MemberIdRequired, &args.new_member_id));
        }
        let member_id = args.new_member_id.clone();
        self.add_member_and_rebalance(now, policy, member_id, args, waiter);
    }

    fn join_known_member(&mut self, now: Now, policy: JoinPolicy, args: JoinArgs, waiter: JoinWaiter) {
        if self.pending_members.remove(&args.member_id).is_some() {
            let member_id = args.member_id.clone();
            return self.add_member_and_rebalance(now, policy, member_id, args, waiter);
        }
        let instance = args.group_instance_id.as_deref();
        if self.is_static_member_fenced(&args.member_id, instance) {
            return answer(&waiter, JoinOutcome::failed(ResponseError::FencedInstanceId, &args.member_id));
        }
        let instance_unknown = instance.is_some_and(|instance| !self.static_members.contains_key(instance));
        if !self.members.contains_key(&args.member_id) || instance_unknown {
            return answer(&waiter, JoinOutcome::failed(ResponseError::UnknownMemberId, &args.member_id));
        }
        let unchanged = self.members[&args.member_id].protocols == args.protocols;
        let is_leader = self.leader_id.as_deref() == Some(args.member_id.as_str());
        match self.state {
            GroupState::CompletingRebalance if unchanged => {
                answer(&waiter, self.current_generation(&args.member_id, is_leader, false));
            }
            GroupState::Stable if unchanged && !is_leader => {
                answer(&waiter, self.current_generation(&args.member_id, false, false));
            }
            GroupState::Empty | GroupState::Dead => {
                answer(&waiter, JoinOutcome::failed(ResponseError::UnknownMemberId, &args.member_id));
            }
            GroupState::PreparingRebalance | GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member(&args, waiter);
                self.rebalance_or_complete(now, policy);
            }
        }
    }

    /// A static member rejoined with a new member id: it takes the old id's place.
    fn replace_static_member(
        &mut self,
        now: Now,
        policy: JoinPolicy,
        old_member_id: &str,
        args: &JoinArgs,
        waiter: JoinWaiter,
    ) {
        let Some(mut member) = self.members.remove(old_member_id) else {
            return answer(&waiter, JoinOutcome::failed(ResponseError::UnknownMemberId, &args.member_id));
        };
        if let Some(old) = member.join_waiter.take() {
            answer(&old, JoinOutcome::failed(ResponseError::FencedInstanceId, old_member_id));
        }
        if let Some(old) = member.sync_waiter.take() {
            answer(&old, SyncOutcome::failed(ResponseError::FencedInstanceId));
        }
        let previous_leader = self.leader_id.clone().unwrap_or_default();
        let new_member_id = args.new_member_id.clone();
        let was_leader = previous_leader == old_member_id;
        if was_leader {
            self.leader_id = Some(new_member_id.clone());
        }
        if self.pending_sync.remove(old_member_id) {
            self.pending_sync.insert(new_member_id.clone());
        }
        member.member_id.clone_from(&new_member_id);
        member.heartbeat_deadline_ms = now.monotonic_ms + i64::from(args.session_timeout_ms);
        self.members.insert(new_member_id.clone(), member);
        if let Some(instance) = &args.group_instance_id {
            self.static_members.insert(instance.clone(), new_member_id.clone());
        }
        self.update_member(args, waiter);
        match self.state {
            GroupState::Stable if self.select_protocol() == self.protocol_name => {
                // Nothing the assignment depends on changed: answer with the current generation
                // and the old leader id, so that no member assigns again (KIP-345, KIP-814).
                let member = self.members.get_mut(&new_member_id).expect("inserted above");
                let waiter = member.join_waiter.take().expect("set by update_member");
                let mut outcome =
                    self.current_generation(&new_member_id, was_leader && args.supports_skip_assignment, false);
                outcome.leader_id = previous_leader;
                outcome.skip_assignment = was_leader && args.supports_skip_assignment;
                answer(&waiter, outcome);
                self.metadata_dirty = true;
            }
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty | GroupState::Dead => {
                self.prepare_rebalance(now, policy);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        now: Now,
        policy: JoinPolicy,
        member_id: String,
        args: JoinArgs,
        waiter: JoinWaiter,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(args.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member_id.clone());
        }
        if let Some(instance) = &args.group_instance_id {
            self.static_members.insert(instance.clone(), member_id.clone());
        }
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: args.group_instance_id,
            client_id: args.client_id,
            client_host: args.client_host,
            session_timeout_ms: args.session_timeout_ms,
            rebalance_timeout_ms: args.rebalance_timeout_ms,
            protocols: args.protocols,
            assignment: Bytes::new(),
            join_waiter: Some(waiter),
            sync_waiter: None,
            heartbeat_deadline_ms: now.monotonic_ms + i64::from(args.session_timeout_ms),
        };
        self.members.insert(member_id, member);
        if let Some(delay) = &mut self.initial_delay {
            delay.member_added = true;
        }
        self.rebalance_or_complete(now, policy);
    }

    /// Records a rejoin's protocols and timeouts and its waiter (answering a waiter it replaces).
    fn update_member(&mut self, args: &JoinArgs, waiter: JoinWaiter) {
        let member_id = if args.member_id.is_empty() { &args.new_member_id } else { &args.member_id };
        let Some(member) = self.members.get_mut(member_id) else { return };
        member.protocols.clone_from(&args.protocols);
        member.session_timeout_ms = args.session_timeout_ms;
        member.rebalance_timeout_ms = args.rebalance_timeout_ms;
        member.client_id.clone_from(&args.client_id);
        if let Some(old) = member.join_waiter.replace(waiter) {
            answer(&old, JoinOutcome::failed(ResponseError::RebalanceInProgress, member_id));
        }
    }

    fn rebalance_or_complete(&mut self, now: Now, policy: JoinPolicy) {
        match self.state {
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, policy);
            }
            GroupState::Dead => {}
        }
    }

    /// Starts a join phase: every member must rejoin.
    pub(crate) fn prepare_rebalance(&mut self, now: Now, policy: JoinPolicy) {
        if self.state == GroupState::CompletingRebalance {
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(waiter) = member.sync_waiter.take() {
                    answer(&waiter, SyncOutcome::failed(ResponseError::RebalanceInProgress));
                }
            }
        }
        self.sync_deadline_ms = None;
        self.pending_sync.clear();
        let rebalance_timeout_ms = self.rebalance_timeout_ms();
        if self.state == GroupState::Empty && policy.initial_rebalance_delay_ms > 0 {
            let delay_ms = policy.initial_rebalance_delay_ms.min(rebalance_timeout_ms.max(1));
            self.join_deadline_ms = Some(now.monotonic_ms + delay_ms);
            self.initial_delay =
                Some(InitialDelay { remaining_ms: rebalance_timeout_ms - delay_ms, member_added: false });
            self.transition(GroupState::PreparingRebalance, now);
        } else {
            self.join_deadline_ms = Some(now.monotonic_ms + rebalance_timeout_ms);
            self.initial_delay = None;
            self.transition(GroupState::PreparingRebalance, now);
            self.try_complete_join(now);
        }
    }

    /// Ends the join phase early when everyone is in (never during the initial delay).
    fn try_complete_join(&mut self, now: Now) {
        let everyone_joined =
            self.members.values().all(|member| member.join_waiter.is_some()) && self.pending_members.is_empty();
        if self.state == GroupState::PreparingRebalance && self.initial_delay.is_none() && everyone_joined {
            self.complete_join(now);
        }
    }

    /// Ends the join phase: drops members that did not rejoin, starts the next generation and
    /// answers every JoinGroup (the leader with the members' metadata).
    pub(crate) fn complete_join(&mut self, now: Now) {
        let absent: Vec<String> = self
            .members
            .values()
            .filter(|member| member.join_waiter.is_none())
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in absent {
            self.remove_member(&member_id);
        }
        self.join_deadline_ms = None;
        self.initial_delay = None;
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader_id = None;
            self.transition(GroupState::Empty, now);
            self.metadata_dirty = true;
            return;
        }
        self.protocol_name = self.select_protocol();
        if !self.leader_id.as_ref().is_some_and(|leader| self.members.contains_key(leader)) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.transition(GroupState::CompletingRebalance, now);
        let leader = self.leader_id.clone().unwrap_or_default();
        let member_ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in &member_ids {
            let outcome = self.current_generation(member_id, *member_id == leader, false);
            let member = self.members.get_mut(member_id).expect("listed above");
            member.heartbeat_deadline_ms = now.monotonic_ms + i64::from(member.session_timeout_ms);
            if let Some(waiter) = member.join_waiter.take() {
                answer(&waiter, outcome);
            }
        }
        self.pending_sync = member_ids.into_iter().collect();
        self.sync_deadline_ms = Some(now.monotonic_ms + self.rebalance_timeout_ms());
    }

    /// A successful JoinGroup answer for the current generation.
    fn current_generation(&self, member_id: &str, with_members: bool, skip_assignment: bool) -> JoinOutcome {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if with_members {
            self.members
                .values()
                .map(|member| JoinedMember {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    metadata: member.metadata(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members,
            skip_assignment,
        }
    }

    /// Handles a SyncGroup; the answer goes to `waiter`, now or once the leader has assigned.
    pub(crate) fn sync(&mut self, now: Now, args: SyncArgs, waiter: SyncWaiter) {
        let checked = self.check_member(
            MemberRef { member_id: &args.member_id, group_instance_id: args.group_instance_id.as_deref() },
            args.generation_id,
        );
        if let Err(error) = checked {
            return answer(&waiter, SyncOutcome::failed(error));
        }
        let type_mismatch = args.protocol_type.as_ref().is_some_and(|name| self.protocol_type.as_ref() != Some(name));
        let name_mismatch = args.protocol_name.as_ref().is_some_and(|name| self.protocol_name.as_ref() != Some(name));
        if type_mismatch || name_mismatch {
            return answer(&waiter, SyncOutcome::failed(ResponseError::InconsistentGroupProtocol));
        }
        self.pending_sync.remove(&args.member_id);
        let member = self.members.get_mut(&args.member_id).expect("checked above");
        member.heartbeat_deadline_ms = now.monotonic_ms + i64::from(member.session_timeout_ms);
        match self.state {
            GroupState::Empty | GroupState::Dead => {
                answer(&waiter, SyncOutcome::failed(ResponseError::UnknownMemberId));
            }
            GroupState::PreparingRebalance => answer(&waiter, SyncOutcome::failed(ResponseError::RebalanceInProgress)),
            GroupState::Stable => answer(&waiter, self.assignment_of(&args.member_id)),
            GroupState::CompletingRebalance => {
                member.sync_waiter = Some(waiter);
                if self.leader_id.as_deref() == Some(args.member_id.as_str()) {
                    self.complete_sync(now, args.assignments);
                }
            }
        }
    }

    /// The leader's assignment arrived: the group is Stable and every waiting member gets its part.
    fn complete_sync(&mut self, now: Now, assignments: Vec<(String, Bytes)>) {
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
        }
        for (member_id, assignment) in assignments {
            if let Some(member) = self.members.get_mut(&member_id) {
                member.assignment = assignment;
            }
        }
        self.sync_deadline_ms = None;
        self.transition(GroupState::Stable, now);
        self.metadata_dirty = true;
        let member_ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in member_ids {
            let outcome = self.assignment_of(&member_id);
            if let Some(waiter) = self.members.get_mut(&member_id).and_then(|member| member.sync_waiter.take()) {
                answer(&waiter, outcome);
            }
        }
    }

    fn assignment_of(&self, member_id: &str) -> SyncOutcome {
        SyncOutcome {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self.members.get(member_id).map(|member| member.assignment.clone()).unwrap_or_default(),
        }
    }

    /// The checks shared by SyncGroup, Heartbeat and OffsetCommit: the group is alive, the
    /// instance is not fenced, the member is known and in this generation.
    pub(crate) fn check_member(&self, member: MemberRef<'_>, generation_id: i32) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if self.is_static_member_fenced(member.member_id, member.group_instance_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(member.member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation_id != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Handles a Heartbeat.
    pub(crate) fn heartbeat(
        &mut self,
        now: Now,
        member: MemberRef<'_>,
        generation_id: i32,
    ) -> Result<(), ResponseError> {
        self.check_member(member, generation_id)?;
        let state = self.state;
        let known = self.members.get_mut(member.member_id).expect("checked above");
        known.heartbeat_deadline_ms = now.monotonic_ms + i64::from(known.session_timeout_ms);
        match state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            GroupState::Empty | GroupState::Dead => Err(ResponseError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
        }
    }

    /// Refreshes a member's session (a valid OffsetCommit counts as a heartbeat).
    pub(crate) fn touch(&mut self, now: Now, member_id: &str) {
        if let Some(member) = self.members.get_mut(member_id) {
            member.heartbeat_deadline_ms = now.monotonic_ms + i64::from(member.session_timeout_ms);
        }
    }

    /// Handles one member of a LeaveGroup. A member named only by its group.instance.id (an
    /// admin removing a static member) is found by the instance.
    pub(crate) fn leave(&mut self, now: Now, policy: JoinPolicy, member: MemberRef<'_>) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let member_id = match (member.member_id, member.group_instance_id) {
            ("", Some(instance)) => self.static_members.get(instance).cloned().ok_or(ResponseError::UnknownMemberId)?,
            (member_id, instance) => {
                if self.is_static_member_fenced(member_id, instance) {
                    return Err(ResponseError::FencedInstanceId);
                }
                member_id.to_owned()
            }
        };
        if self.pending_members.remove(&member_id).is_some() {
            self.try_complete_join(now);
            return Ok(());
        }
        if !self.members.contains_key(&member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.remove_member_and_rebalance(now, policy, &member_id);
        Ok(())
    }

    /// Removes a member that left or expired, and rebalances the rest.
    fn remove_member_and_rebalance(&mut self, now: Now, policy: JoinPolicy, member_id: &str) {
        self.remove_member(member_id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now, policy),
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Drops a member, answering what it waits for with UNKNOWN_MEMBER_ID.
    fn remove_member(&mut self, member_id: &str) {
        let Some(mut member) = self.members.remove(member_id) else { return };
        if let Some(waiter) = member.join_waiter.take() {
            answer(&waiter, JoinOutcome::failed(ResponseError::UnknownMemberId, member_id));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            answer(&waiter, SyncOutcome::failed(ResponseError::UnknownMemberId));
        }
        if let Some(instance) = &member.group_instance_id
            && self.static_members.get(instance).is_some_and(|owner| owner == member_id)
        {
            self.static_members.remove(instance);
        }
        self.pending_sync.remove(member_id);
        if self.leader_id.as_deref() == Some(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
    }

    /// Applies every deadline that has passed: expired sessions, pending members that never
    /// rejoined, the end of the join phase, and a sync phase the leader never completed.
    pub(crate) fn expire(&mut self, now: Now, policy: JoinPolicy) {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|member| member.join_waiter.is_none() && member.sync_waiter.is_none())
            .filter(|member| member.heartbeat_deadline_ms <= now.monotonic_ms)
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in expired {
            tracing::info!(group = %self.id, member = %member_id, "member session expired");
            self.remove_member_and_rebalance(now, policy, &member_id);
        }
        let before = self.pending_members.len();
        self.pending_members.retain(|_, deadline| *deadline > now.monotonic_ms);
        if self.pending_members.len() != before {
            self.try_complete_join(now);
        }
        if self.join_deadline_ms.is_some_and(|deadline| deadline <= now.monotonic_ms) {
            self.join_deadline_passed(now, policy);
        }
        if self.sync_deadline_ms.is_some_and(|deadline| deadline <= now.monotonic_ms) {
            self.sync_deadline_ms = None;
            if self.state == GroupState::CompletingRebalance {
                let late: Vec<String> = self.pending_sync.iter().cloned().collect();
                for member_id in &late {
                    self.remove_member(member_id);
                }
                self.prepare_rebalance(now, policy);
            }
        }
    }

    fn join_deadline_passed(&mut self, now: Now, policy: JoinPolicy) {
        match self.initial_delay {
            Some(InitialDelay { remaining_ms, member_added: true }) if remaining_ms > 0 => {
                let step_ms = policy.initial_rebalance_delay_ms.min(remaining_ms).max(1);
                self.join_deadline_ms = Some(now.monotonic_ms + step_ms);
                self.initial_delay = Some(InitialDelay { remaining_ms: remaining_ms - step_ms, member_added: false });
            }
            _ => self.complete_join(now),
        }
    }
}

#[cfg(test)]
mod tests;
