//! `request_percentage`: the shard time a client's requests take, as Kafka's
//! `ClientRequestQuotaManager` measures request handler time (KIP-124).
//!
//! Kafka charges a request the time its I/O thread spent on it, and the network thread's time
//! later, as a rate of "percent of one thread": `nanos × 100 / 10⁹` recorded per request, so a
//! quota of 50 is half of one thread and the broker's whole capacity is
//! `(num.io.threads + num.network.threads) × 100`. Sluice has neither pool: one shard thread
//! reads, decodes, handles and encodes a connection's requests, so the quota is in percent of
//! one shard thread, out of `shards × 100`. Per request:
//! 1. dispatch makes a [`RequestTime`] when the image has any `request_percentage` and one
//!    applies to the client (Kafka's precedence, `super::sensors`); otherwise nothing below
//!    happens and the request pays that one check;
//! 2. the request's future is [`timed`]: each poll of it on the shard adds its length to the
//!    request's busy time. Time spent waiting (for other shards, the disk, replication, a
//!    fetch's `max_wait_ms`) is not polling and is not charged, as Kafka does not charge a
//!    request's time in purgatory; the work other shards do for the request is not charged
//!    either, as Kafka does not charge the replica fetchers' or the log cleaner's;
//! 3. once the handler has answered, the busy time so far (decode and handling) is recorded
//!    and checked against the quota ([`RequestTime::charge`]): over it, the throttle time,
//!    capped at one quota window as Kafka caps it (`quota.window.size.seconds`), goes into the
//!    response's `throttle_time_ms` (the larger of it and any byte-rate or mutation throttle)
//!    and the connection is muted for it (KIP-219). A consumer's Fetch is charged before its
//!    answer is built, so that a fetch over its request quota is answered without data as
//!    Kafka answers it (`super::FetchQuota`);
//! 4. when the future completes, the time after the charge (encoding the response) is recorded
//!    without a check, as Kafka records its network thread's time.
//!
//! Exempt, as in Kafka: WriteTxnMarkers (the only cluster action served to clients' listeners),
//! followers' fetches, acks=0 produces (they have no response), and the SASL exchange before
//! authentication (Kafka's authenticator answers it outside the request handlers).
//!
//! Threads: a [`RequestTime`] lives on its request's shard; the rates it records into are the
//! broker's shared sensors.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use kafka_protocol::messages::ApiKey;

use super::entity::QuotaKey;
use super::sensors::{Applied, Client, Sensors};
use crate::context::ShardContext;
use crate::dispatch::Reply;
use crate::security::Session;
use crate::security::session::Principal;

/// Kafka's `NanosToPercentagePerSecond`: a nanosecond of one thread, in percent-seconds.
const PERCENT_PER_NANO: f64 = 100.0 / 1_000_000_000.0;

/// Percent-seconds of one thread: what a request that kept its shard busy for `spent` records.
fn percent_seconds(spent: Duration) -> f64 {
    spent.as_nanos() as f64 * PERCENT_PER_NANO
}

/// Records `spent` against the quota of `applied`: the throttle time in ms, at most one window
/// (Kafka's `ClientRequestQuotaManager.maxThrottleTimeMs`, so that a client never waits
/// longer than it takes the rate to move by a window).
fn record_and_throttle_ms(sensors: &Sensors, applied: &Applied, spent: Duration, now_ms: u64) -> u64 {
    let throttle_ms = sensors.record(applied, percent_seconds(spent), now_ms);
    throttle_ms.min(sensors.window().window_ms)
}

/// A request's time on its shard: the polls that have ended, and the one under way.
#[derive(Debug, Default)]
struct Busy {
    spent: Cell<Duration>,
    entered: Cell<Option<Instant>>,
}

impl Busy {
    fn enter(&self, now: Instant) {
        self.entered.set(Some(now));
    }

    fn leave(&self, now: Instant) {
        if let Some(entered) = self.entered.take() {
            self.spent.set(self.spent.get() + now.saturating_duration_since(entered));
        }
    }

    /// The busy time at `now`, the poll under way included.
    fn at(&self, now: Instant) -> Duration {
        let current = self.entered.get().map_or(Duration::ZERO, |entered| now.saturating_duration_since(entered));
        self.spent.get() + current
    }
}

/// Where a request stands with its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charge {
    /// Not charged yet.
    Open,
    /// Never charged (a follower's fetch).
    Exempt,
    /// Charged `spent`, which earned `throttle_ms`.
    Charged { spent: Duration, throttle_ms: i32 },
}

/// One request under `request_percentage` (module docs, steps 1 to 4).
#[derive(Debug)]
pub(crate) struct RequestTime {
    shard: Rc<ShardContext>,
    session: Rc<Session>,
    applied: Applied,
    busy: Busy,
    charge: Cell<Charge>,
}

impl RequestTime {
    /// Step 1: the request's meter, or `None` when no request quota applies to it (the usual
    /// case, decided by one look at the image when no `request_percentage` is set anywhere).
    pub(crate) fn of(
        shard: &Rc<ShardContext>,
        session: &Rc<Session>,
        key: ApiKey,
        client_id: &str,
    ) -> Option<Rc<Self>> {
        let image = shard.peek_image();
        if !image.client_quotas.has(QuotaKey::RequestPercentage) || exempt(session, key) {
            return None;
        }
        let user = session.principal().name;
        let client = Client { user: &user, client_id };
        let applied = super::sensors::resolve(&image.client_quotas, QuotaKey::RequestPercentage, client)?;
        let (shard, session) = (shard.clone(), session.clone());
        Some(Rc::new(Self { shard, session, applied, busy: Busy::default(), charge: Cell::new(Charge::Open) }))
    }

    /// Leaves the request uncharged (a follower's fetch).
    pub(crate) fn exempt(&self) {
        if self.charge.get() == Charge::Open {
            self.charge.set(Charge::Exempt);
        }
    }

    /// Step 3: records the busy time so far and returns the throttle time it earns, with the
    /// connection muted for it. Charged once: a later call returns the same throttle time.
    pub(crate) fn charge(&self) -> i32 {
        match self.charge.get() {
            Charge::Exempt => 0,
            Charge::Charged { throttle_ms, .. } => throttle_ms,
            Charge::Open => {
                let quotas = &self.shard.shared.quotas;
                let now = self.shard.shared.clock.now();
                let spent = self.busy.at(now);
                let throttle_ms = record_and_throttle_ms(&quotas.sensors, &self.applied, spent, quotas.ms(now));
                let throttle_ms = super::mute(&self.shard, &self.session, throttle_ms);
                self.charge.set(Charge::Charged { spent, throttle_ms });
                throttle_ms
            }
        }
    }

    /// Step 4: records, without a check, the time spent after the charge.
    fn settle(&self, now: Instant) {
        if let Charge::Charged { spent, .. } = self.charge.get() {
            let rest = self.busy.at(now).saturating_sub(spent);
            let quotas = &self.shard.shared.quotas;
            // Kafka's `recordNoThrottle`: the time counts against the next requests.
            let _throttle_ms = quotas.sensors.record(&self.applied, percent_seconds(rest), quotas.ms(now));
        }
    }
}

/// Kafka's exemptions that dispatch can see from the request's key and its connection.
fn exempt(session: &Session, key: ApiKey) -> bool {
    let authenticating = matches!(key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
        || (session.protocol.uses_sasl() && session.principal() == Principal::anonymous());
    key == ApiKey::WriteTxnMarkers || authenticating
}

/// Step 2: `reply` with each of its polls added to the request's busy time; `reply` itself
/// when no request quota applies.
pub(crate) fn timed(
    request_time: Option<Rc<RequestTime>>,
    reply: LocalBoxFuture<'static, Reply>,
) -> LocalBoxFuture<'static, Reply> {
    match request_time {
        Some(request_time) => Box::pin(Timed { request_time, reply }),
        None => reply,
    }
}

struct Timed {
    request_time: Rc<RequestTime>,
    reply: LocalBoxFuture<'static, Reply>,
}

impl Future for Timed {
    type Output = Reply;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Reply> {
        let request_time = self.request_time.clone();
        let clock = &request_time.shard.shared.clock;
        request_time.busy.enter(clock.now());
        let poll = self.reply.as_mut().poll(context);
        let now = clock.now();
        request_time.busy.leave(now);
        if poll.is_ready() {
            request_time.settle(now);
        }
        poll
    }
}

/// A response's `throttle_time_ms`, for the APIs whose responses have one.
pub(crate) trait ThrottleTime {
    /// The field; `None` for an API without one (its connection is still muted).
    fn throttle_time_ms_mut(&mut self) -> Option<&mut i32>;
}

/// Step 3 for a handler's answer: charges the request (when a quota applies and it was not
/// charged yet) and puts the larger of its throttle time and the response's own into the
/// response.
pub(crate) fn with_request_throttle<T: ThrottleTime>(request_time: Option<&RequestTime>, mut response: T) -> T {
    if let Some(request_time) = request_time {
        let throttle_ms = request_time.charge();
        if let Some(field) = response.throttle_time_ms_mut() {
            *field = (*field).max(throttle_ms);
        }
    }
    response
}

macro_rules! throttle_time {
    (with: $($with:ident),* ; without: $($without:ident),* $(,)?) => {
        $(impl ThrottleTime for kafka_protocol::messages::$with {
            fn throttle_time_ms_mut(&mut self) -> Option<&mut i32> {
                Some(&mut self.throttle_time_ms)
            }
        })*
        $(impl ThrottleTime for kafka_protocol::messages::$without {
            fn throttle_time_ms_mut(&mut self) -> Option<&mut i32> {
                None
            }
        })*
    };
}

// Every response type of the codec, so that registering any API needs nothing here.
throttle_time! {
    with: AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, AddRaftVoterResponse,
    AllocateProducerIdsResponse, AlterClientQuotasResponse, AlterConfigsResponse,
    AlterPartitionReassignmentsResponse, AlterPartitionResponse, AlterReplicaLogDirsResponse,
    AlterShareGroupOffsetsResponse, AlterUserScramCredentialsResponse, ApiVersionsResponse,
    AssignReplicasToDirsResponse, BrokerHeartbeatResponse, BrokerRegistrationResponse,
    ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatResponse, ControllerRegistrationResponse,
    CreateAclsResponse, CreatePartitionsResponse, CreateTopicsResponse, DeleteAclsResponse,
    DeleteGroupsResponse, DeleteRecordsResponse, DeleteShareGroupOffsetsResponse, DeleteTopicsResponse,
    DescribeAclsResponse, DescribeClientQuotasResponse, DescribeClusterResponse, DescribeConfigsResponse,
    DescribeDelegationTokenResponse, DescribeGroupsResponse, DescribeLogDirsResponse,
    DescribeProducersResponse, DescribeShareGroupOffsetsResponse, DescribeTopicPartitionsResponse,
    DescribeTransactionsResponse, DescribeUserScramCredentialsResponse, ElectLeadersResponse,
    EndTxnResponse, ExpireDelegationTokenResponse, FetchResponse, FetchSnapshotResponse,
    FindCoordinatorResponse, GetTelemetrySubscriptionsResponse, HeartbeatResponse,
    IncrementalAlterConfigsResponse, InitProducerIdResponse, JoinGroupResponse, LeaveGroupResponse,
    ListConfigResourcesResponse, ListGroupsResponse, ListOffsetsResponse,
    ListPartitionReassignmentsResponse, ListTransactionsResponse, MetadataResponse,
    OffsetCommitResponse, OffsetDeleteResponse, OffsetFetchResponse, OffsetForLeaderEpochResponse,
    ProduceResponse, PushTelemetryResponse, RemoveRaftVoterResponse, RenewDelegationTokenResponse,
    ShareAcknowledgeResponse, ShareFetchResponse, ShareGroupDescribeResponse,
    ShareGroupHeartbeatResponse, SyncGroupResponse, TxnOffsetCommitResponse, UnregisterBrokerResponse,
    UpdateFeaturesResponse, UpdateRaftVoterResponse;
    without: BeginQuorumEpochResponse, DeleteShareGroupStateResponse, DescribeQuorumResponse,
    EndQuorumEpochResponse, EnvelopeResponse, InitializeShareGroupStateResponse,
    ReadShareGroupStateResponse, ReadShareGroupStateSummaryResponse, SaslAuthenticateResponse,
    SaslHandshakeResponse, VoteResponse, WriteShareGroupStateResponse, WriteTxnMarkersResponse,
}

impl ThrottleTime for crate::handlers::fetch::FetchAnswer {
    fn throttle_time_ms_mut(&mut self) -> Option<&mut i32> {
        Some(&mut self.throttle_time_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::super::entity::{ClientQuotas, EntityName, QuotaEntity, QuotaRecord, QuotaValue};
    use super::super::rate::WindowConfig;
    use super::*;

    const KAFKA_DEFAULT: WindowConfig = WindowConfig { samples: 11, window_ms: 1_000 };

    fn request_quota(percent: f64) -> Applied {
        let mut quotas = ClientQuotas::default();
        quotas.apply(&QuotaRecord {
            entity: QuotaEntity { user: None, client_id: Some(EntityName::Named("c1".to_owned())) },
            key: QuotaKey::RequestPercentage,
            value: Some(QuotaValue(percent)),
        });
        let client = Client { user: "ANONYMOUS", client_id: "c1" };
        super::super::sensors::resolve(&quotas, QuotaKey::RequestPercentage, client).expect("applies")
    }

    #[test]
    fn one_thread_busy_for_a_second_is_a_hundred_percent_seconds() {
        assert!((percent_seconds(Duration::from_secs(1)) - 100.0).abs() < 1e-9);
        assert!((percent_seconds(Duration::from_micros(250)) - 0.025).abs() < 1e-12);
    }

    #[test]
    fn busy_time_adds_polls_and_counts_the_one_under_way() {
        let busy = Busy::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        busy.enter(at(0));
        busy.leave(at(3));
        // Waiting between polls is not busy time.
        busy.enter(at(100));
        assert_eq!(busy.at(at(104)), Duration::from_millis(7), "3 ms done and 4 under way");
        busy.leave(at(105));
        assert_eq!(busy.at(at(500)), Duration::from_millis(8));
        busy.leave(at(600));
        assert_eq!(busy.at(at(700)), Duration::from_millis(8), "leaving twice adds nothing");
    }

    #[test]
    fn a_client_over_its_share_of_a_thread_is_throttled() {
        // 10% of one thread: 100 ms of busy time per second.
        let applied = request_quota(10.0);
        let sensors = Sensors::new(KAFKA_DEFAULT);
        // Within the quota: 20 requests of 40 ms at t=0 are 80 percent-seconds, over the
        // 10-window span at first: 8%.
        for _ in 0..20 {
            assert_eq!(record_and_throttle_ms(&sensors, &applied, Duration::from_millis(40), 0), 0);
        }
        // 5 more make 100 percent-seconds: 10%, at the quota. The next tips it over:
        // 104 / 10 s = 10.4%, (10.4 - 10) / 10 × 10,000 ms = 400 ms.
        for _ in 0..5 {
            assert_eq!(record_and_throttle_ms(&sensors, &applied, Duration::from_millis(40), 0), 0);
        }
        assert_eq!(record_and_throttle_ms(&sensors, &applied, Duration::from_millis(40), 0), 400);
        // Far over it, the throttle time stops at one window, as Kafka's does.
        assert_eq!(record_and_throttle_ms(&sensors, &applied, Duration::from_secs(5), 0), 1_000);
    }

    #[test]
    fn another_client_is_measured_on_its_own() {
        let applied = request_quota(10.0);
        let sensors = Sensors::new(KAFKA_DEFAULT);
        assert!(record_and_throttle_ms(&sensors, &applied, Duration::from_secs(2), 0) > 0);
        let mut quotas = ClientQuotas::default();
        quotas.apply(&QuotaRecord {
            entity: QuotaEntity { user: None, client_id: Some(EntityName::Default) },
            key: QuotaKey::RequestPercentage,
            value: Some(QuotaValue(10.0)),
        });
        let other = Client { user: "ANONYMOUS", client_id: "c2" };
        let other = super::super::sensors::resolve(&quotas, QuotaKey::RequestPercentage, other).expect("applies");
        assert_eq!(record_and_throttle_ms(&sensors, &other, Duration::from_millis(50), 0), 0);
    }

    #[test]
    fn the_rate_falls_back_once_the_client_stops() {
        let applied = request_quota(10.0);
        let sensors = Sensors::new(KAFKA_DEFAULT);
        assert!(record_and_throttle_ms(&sensors, &applied, Duration::from_secs(2), 0) > 0);
        // 11 windows later the burst has left the monitored span.
        assert_eq!(record_and_throttle_ms(&sensors, &applied, Duration::from_millis(10), 11_000), 0);
    }
}
