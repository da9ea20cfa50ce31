//! Unit tests of the classic group protocol state machine, without sockets or timers: requests
//! are method calls, delayed answers are channels read with `try_recv`, time is a value.

use super::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn at(monotonic_ms: i64) -> Now {
    Now { monotonic_ms, unix_ms: 1_700_000_000_000 + monotonic_ms }
}

fn no_delay() -> JoinPolicy {
    JoinPolicy { initial_rebalance_delay_ms: 0 }
}

fn join_args(member_id: &str, new_member_id: &str, instance: Option<&str>) -> JoinArgs {
    JoinArgs {
        member_id: member_id.to_owned(),
        group_instance_id: instance.map(str::to_owned),
        client_id: "client".to_owned(),
        client_host: String::new(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".to_owned(),
        protocols: vec![Protocol { name: "range".to_owned(), metadata: Bytes::from_static(b"sub") }],
        require_known_member_id: true,
        supports_skip_assignment: false,
        new_member_id: new_member_id.to_owned(),
    }
}

type Answer<T> = async_channel::Receiver<T>;

fn join(group: &mut Group, now: Now, policy: JoinPolicy, args: JoinArgs) -> Answer<JoinOutcome> {
    let (sender, receiver) = async_channel::bounded(1);
    group.join(now, policy, args, sender);
    receiver
}

fn sync(
    group: &mut Group,
    now: Now,
    member_id: &str,
    generation_id: i32,
    assignments: &[(&str, &'static [u8])],
) -> Answer<SyncOutcome> {
    let (sender, receiver) = async_channel::bounded(1);
    let args = SyncArgs {
        member_id: member_id.to_owned(),
        group_instance_id: None,
        generation_id,
        protocol_type: None,
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(member, bytes)| ((*member).to_owned(), Bytes::from_static(bytes)))
            .collect(),
    };
    group.sync(now, args, sender);
    receiver
}

/// Joins a dynamic member the v4+ way: MEMBER_ID_REQUIRED, then a rejoin with the id.
fn join_dynamic(group: &mut Group, now: Now, id: &str) -> Answer<JoinOutcome> {
    let first = join(group, now, no_delay(), join_args("", id, None)).try_recv().expect("answered at once");
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    assert_eq!(first.member_id, id);
    join(group, now, no_delay(), join_args(id, "unused", None))
}

fn member(id: &str) -> MemberRef<'_> {
    MemberRef { member_id: id, group_instance_id: None }
}

/// A Stable group of members `a` and `b` at generation 1 with `a` leading.
fn stable_pair() -> Group {
    let mut group = Group::new("g", at(0));
    let a = join_dynamic(&mut group, at(0), "a");
    let a_answer = a.try_recv().expect("a lone member completes the join at once");
    assert_eq!(a_answer.generation_id, 1);
    let b = join_dynamic(&mut group, at(1), "b");
    assert!(b.try_recv().is_err(), "b waits for a to rejoin");
    assert_eq!(group.state, GroupState::PreparingRebalance);
    let a = join(&mut group, at(2), no_delay(), join_args("a", "unused", None));
    let (a_answer, b_answer) = (a.try_recv().expect("joined"), b.try_recv().expect("joined"));
    assert_eq!(a_answer.generation_id, 2);
    assert_eq!(a_answer.members.len(), 2, "the leader sees every member");
    assert!(b_answer.members.is_empty());
    assert_eq!(b_answer.leader_id, "a");
    let b_sync = sync(&mut group, at(3), "b", 2, &[]);
    assert!(b_sync.try_recv().is_err(), "followers wait for the leader's assignment");
    let a_sync = sync(&mut group, at(4), "a", 2, &[("a", b"A"), ("b", b"B")]);
    assert_eq!(a_sync.try_recv().expect("synced").assignment, Bytes::from_static(b"A"));
    assert_eq!(b_sync.try_recv().expect("synced").assignment, Bytes::from_static(b"B"));
    assert_eq!(group.state, GroupState::Stable);
    group
}

#[test]
fn members_join_sync_and_get_their_assignments() {
    let group = stable_pair();
    assert_eq!(group.generation_id, 2);
    assert!(group.metadata_dirty, "a completed rebalance is stored");
}

#[test]
fn heartbeat_checks_member_and_generation() {
    let mut group = stable_pair();
    assert!(group.heartbeat(at(5), member("a"), 2).is_ok());
    assert!(matches!(group.heartbeat(at(5), member("a"), 1), Err(ResponseError::IllegalGeneration)));
    assert!(matches!(group.heartbeat(at(5), member("zz"), 2), Err(ResponseError::UnknownMemberId)));
}

#[test]
fn a_new_member_puts_the_group_in_rebalance_and_heartbeats_say_so() {
    let mut group = stable_pair();
    let _c = join_dynamic(&mut group, at(10), "c");
    assert_eq!(group.state, GroupState::PreparingRebalance);
    assert!(matches!(group.heartbeat(at(11), member("b"), 2), Err(ResponseError::RebalanceInProgress)));
}

#[test]
fn join_completes_when_every_known_member_rejoined_without_waiting_for_the_timeout() {
    let mut group = stable_pair();
    let c = join_dynamic(&mut group, at(10), "c");
    let a = join(&mut group, at(11), no_delay(), join_args("a", "unused", None));
    assert!(c.try_recv().is_err());
    let b = join(&mut group, at(12), no_delay(), join_args("b", "unused", None));
    for answer in [a, b, c] {
        assert_eq!(answer.try_recv().expect("joined").generation_id, 3);
    }
    assert_eq!(group.state, GroupState::CompletingRebalance);
}

#[test]
fn a_member_that_stops_heartbeating_is_expired_and_the_rest_rebalance() {
    let mut group = stable_pair();
    assert!(group.heartbeat(at(9_000), member("a"), 2).is_ok());
    group.expire(at(10_004), no_delay());
    assert!(!group.members.contains_key("b"), "b's session ran out");
    assert!(group.members.contains_key("a"));
    assert_eq!(group.state, GroupState::PreparingRebalance);
    let a = join(&mut group, at(10_005), no_delay(), join_args("a", "unused", None));
    let answer = a.try_recv().expect("a alone completes the join");
    assert_eq!(answer.generation_id, 3);
    assert_eq!(answer.members.len(), 1);
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_deadline() {
    let mut group = stable_pair();
    let c = join_dynamic(&mut group, at(10), "c");
    let a = join(&mut group, at(11), no_delay(), join_args("a", "unused", None));
    group.heartbeat(at(20_000), member("b"), 2).expect_err("rebalancing");
    group.expire(at(10 + i64::from(REBALANCE_MS)), no_delay());
    assert!(!group.members.contains_key("b"));
    assert_eq!(a.try_recv().expect("joined").members.len(), 2);
    assert_eq!(c.try_recv().expect("joined").generation_id, 3);
}

#[test]
fn leave_group_rebalances_the_rest_at_once() {
    let mut group = stable_pair();
    assert!(group.leave(at(5), no_delay(), member("b")).is_ok());
    assert_eq!(group.state, GroupState::PreparingRebalance);
    let a = join(&mut group, at(6), no_delay(), join_args("a", "unused", None));
    assert_eq!(a.try_recv().expect("joined").generation_id, 3);
    assert!(matches!(group.leave(at(7), no_delay(), member("b")), Err(ResponseError::UnknownMemberId)));
}

#[test]
fn last_member_leaving_empties_the_group() {
    let mut group = Group::new("g", at(0));
    let a = join_dynamic(&mut group, at(0), "a");
    assert!(a.try_recv().is_ok());
    assert!(group.leave(at(1), no_delay(), member("a")).is_ok());
    assert_eq!(group.state, GroupState::Empty);
    assert_eq!(group.generation_id, 2);
}

#[test]
fn sync_with_an_old_generation_is_illegal() {
    let mut group = stable_pair();
    let answer = sync(&mut group, at(5), "b", 1, &[]).try_recv().expect("answered");
    assert_eq!(answer.error, Some(ResponseError::IllegalGeneration));
}

#[test]
fn initial_delay_gathers_members_before_the_first_generation() {
    let policy = JoinPolicy { initial_rebalance_delay_ms: 100 };
    let mut group = Group::new("g", at(0));
    let a = join(&mut group, at(0), policy, join_args("", "a", Some("ia")));
    let b = join(&mut group, at(50), policy, join_args("", "b", Some("ib")));
    assert!(a.try_recv().is_err() && b.try_recv().is_err());
    group.expire(at(100), policy);
    assert!(a.try_recv().is_err(), "a member arrived during the delay: wait once more");
    group.expire(at(200), policy);
    assert_eq!(a.try_recv().expect("joined").generation_id, 1);
    assert_eq!(b.try_recv().expect("joined").generation_id, 1);
}

#[test]
fn a_restarted_static_member_gets_its_assignment_back_without_a_rebalance() {
    let policy = no_delay();
    let mut group = Group::new("g", at(0));
    let a = join(&mut group, at(0), policy, join_args("", "a1", Some("ia")));
    assert_eq!(a.try_recv().expect("joined").generation_id, 1);
    let b = join(&mut group, at(1), policy, join_args("", "b1", Some("ib")));
    let a = join(&mut group, at(2), policy, join_args("a1", "unused", Some("ia")));
    assert!(a.try_recv().is_ok() && b.try_recv().is_ok());
    let b_sync = sync(&mut group, at(3), "b1", 2, &[]);
    let _ = sync(&mut group, at(3), "a1", 2, &[("a1", b"A"), ("b1", b"B")]).try_recv().expect("synced");
    assert!(b_sync.try_recv().is_ok());
    // b restarts: a new JoinGroup with no member id but the same instance id.
    let b = join(&mut group, at(5), policy, join_args("", "b2", Some("ib")));
    let answer = b.try_recv().expect("answered at once");
    assert_eq!(answer.error, None);
    assert_eq!((answer.member_id.as_str(), answer.generation_id), ("b2", 2));
    assert_eq!(group.state, GroupState::Stable, "no rebalance");
    let assigned = sync(&mut group, at(6), "b2", 2, &[]).try_recv().expect("answered");
    assert_eq!(assigned.assignment, Bytes::from_static(b"B"));
    // The old incarnation is fenced.
    let fenced = MemberRef { member_id: "b1", group_instance_id: Some("ib") };
    assert!(matches!(group.heartbeat(at(7), fenced, 2), Err(ResponseError::FencedInstanceId)));
}

#[test]
fn a_known_member_of_an_unknown_instance_is_unknown() {
    let mut group = stable_pair();
    let answer =
        join(&mut group, at(5), no_delay(), join_args("a", "unused", Some("nobody"))).try_recv().expect("answered");
    assert_eq!(answer.error, Some(ResponseError::UnknownMemberId));
}

#[test]
fn a_pending_member_that_never_rejoins_expires() {
    let mut group = Group::new("g", at(0));
    let first = join(&mut group, at(0), no_delay(), join_args("", "p", None)).try_recv().expect("answered");
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    assert_eq!(group.pending_members.len(), 1);
    group.expire(at(i64::from(SESSION_MS)), no_delay());
    assert!(group.pending_members.is_empty());
}

#[test]
fn inconsistent_protocols_are_refused() {
    let mut group = stable_pair();
    let mut args = join_args("", "x", None);
    args.protocols = vec![Protocol { name: "other".to_owned(), metadata: Bytes::new() }];
    let answer = join(&mut group, at(5), no_delay(), args).try_recv().expect("answered");
    assert_eq!(answer.error, Some(ResponseError::InconsistentGroupProtocol));
}

#[test]
fn commits_need_a_current_member_except_standalone_ones() {
    let mut group = stable_pair();
    assert!(group.check_commit(at(5), member("a"), 2).is_ok());
    assert!(matches!(group.check_commit(at(5), member("a"), 1), Err(ResponseError::IllegalGeneration)));
    assert!(matches!(group.check_commit(at(5), member(""), -1), Err(ResponseError::UnknownMemberId)));
}

#[test]
fn members_waiting_for_the_leader_do_not_expire_while_the_sync_phase_lasts() {
    let mut group = Group::new("g", at(0));
    let a = join_dynamic(&mut group, at(0), "a");
    assert!(a.try_recv().is_ok());
    let b = join_dynamic(&mut group, at(1), "b");
    let a = join(&mut group, at(2), no_delay(), join_args("a", "unused", None));
    assert!(a.try_recv().is_ok() && b.try_recv().is_ok());
    let waiting = sync(&mut group, at(3), "b", 2, &[]);
    let late = at(3 + i64::from(SESSION_MS));
    assert!(group.heartbeat(at(9_000), member("a"), 2).is_ok());
    assert!(group.next_deadline_ms().is_some_and(|deadline| deadline > late.monotonic_ms), "no busy deadline");
    group.expire(late, no_delay());
    assert!(group.members.contains_key("b"));
    assert!(group.heartbeat(at(18_000), member("a"), 2).is_ok());
    assert!(group.heartbeat(at(27_000), member("a"), 2).is_ok());
    group.expire(at(2 + i64::from(REBALANCE_MS)), no_delay());
    assert_eq!(waiting.try_recv().expect("answered").error, Some(ResponseError::RebalanceInProgress));
    assert!(!group.members.contains_key("a"), "the leader never synced");
}
