//! Client quotas, as Kafka enforces them (KIP-13, KIP-55, KIP-124, KIP-219, KIP-599).
//!
//! - `entity`: the quota configs (user and client-id entities, their keys and values) that
//!   the metadata image holds, and the rules of AlterClientQuotas and DescribeClientQuotas;
//! - `rate`: the sampled rate, throttle time and token bucket arithmetic, time passed in;
//! - `sensors`: which quota applies to a request (Kafka's precedence) and the rates, shared by
//!   every shard;
//! - `request`: `request_percentage`, the shard time a request takes, measured around its
//!   handling and put into every response that has `throttle_time_ms`;
//! - this module: what the handlers call, and the connection's mute.
//!
//! Enforcement follows KIP-219: a request over its quota is answered at once, its response
//! carrying `throttle_time_ms`, and the connection then reads no further request for that long
//! (the client, seeing the throttle time, also holds back on its own). Charged:
//! - `producer_byte_rate`: each Produce request's size, after the append (acks=0 included);
//! - `consumer_byte_rate`: each Fetch response's record bytes. A fetch is capped at what the
//!   quota admits in the sampled span (`quota × (samples − 1) × window`), and one that would
//!   go over the quota is answered without records, its bytes taken back, as Kafka does;
//! - `controller_mutation_rate`: the partitions that CreateTopics, CreatePartitions and
//!   DeleteTopics create or delete, in a token bucket. From the versions that know the error
//!   (CreateTopics v6, CreatePartitions v3, DeleteTopics v5) a request that finds the bucket in
//!   debt is refused, topic by topic, with THROTTLING_QUOTA_EXCEEDED; older versions are only
//!   throttled;
//! - `request_percentage`: the time each request keeps its shard busy, in percent of one shard
//!   thread (see `request`).
//!
//! A request over several quotas carries the largest throttle time and is muted for it.
//! Fetches of followers are never charged. A broker without any quota configured pays one
//! check of an empty map in the image it already holds per request: no lock, no clock read.
//!
//! Threads: [`Quotas`] is shared by every shard (its sensors behind one short-held mutex);
//! [`Mute`] belongs to one connection's session, on its shard.

pub(crate) mod entity;
pub(crate) mod rate;
pub(crate) mod request;
pub(crate) mod sensors;

pub(crate) use request::{RequestTime, ThrottleTime, timed, with_request_throttle};

use std::cell::Cell;
use std::time::{Duration, Instant};

use entity::{ClientQuotas, QuotaKey};
use rate::WindowConfig;
use sensors::{Applied, Client, Sensors};

use crate::context::ShardContext;
use crate::dispatch::Call;

/// The broker's quota state: its sensors, and the instant its millisecond clock counts from.
#[derive(Debug)]
pub(crate) struct Quotas {
    sensors: Sensors,
    origin: Instant,
}

impl Quotas {
    /// Quotas measured over `window`, the broker's clock starting at `origin`.
    pub(crate) fn new(window: WindowConfig, origin: Instant) -> Self {
        Self { sensors: Sensors::new(window), origin }
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// Records `value` for `client` against `key`: the throttle time in ms.
    pub(crate) fn record(
        &self,
        quotas: &ClientQuotas,
        key: QuotaKey,
        client: Client<'_>,
        value: f64,
        now: Instant,
    ) -> u64 {
        match sensors::resolve(quotas, key, client) {
            Some(applied) => self.sensors.record(&applied, value, self.ms(now)),
            None => 0,
        }
    }
}

/// A connection's mute: the instant before which it reads no request (KIP-219).
#[derive(Debug, Default)]
pub(crate) struct Mute {
    until: Cell<Option<Instant>>,
}

impl Mute {
    /// Mutes the connection until `until`, or longer if it already is.
    pub(crate) fn extend(&self, until: Instant) {
        let later = self.until.get().map_or(until, |current| current.max(until));
        self.until.set(Some(later));
    }

    /// Completes once the connection is not muted; at once when it is not.
    pub(crate) async fn wait(&self, clock: &sluice_engine::clock::SharedClock) {
        while let Some(until) = self.until.get() {
            let now = clock.now();
            if now >= until {
                self.until.set(None);
                return;
            }
            clock.sleep(until - now).await;
        }
    }
}

/// Holds a connection's next request while the connection is muted (or until shutdown, which
/// must not wait for a throttle to end). At once when it is not muted, the usual case.
pub(crate) async fn wait_unmuted(shard: &ShardContext, session: &crate::security::Session) {
    if session.mute.until.get().is_none() {
        return;
    }
    let unmuted = std::pin::pin!(session.mute.wait(&shard.shared.clock));
    let stop = std::pin::pin!(shard.shared.shutdown.wait(&shard.shared.engine));
    futures_util::future::select(unmuted, stop).await;
}

/// Who sent `call`, as quotas see it: the session's principal name (Kafka's quota user, the
/// name of `User:ANONYMOUS` before authentication) and the client id.
fn user_of(call: &Call) -> std::rc::Rc<str> {
    call.session.principal().name
}

/// Mutes the connection of `call` for `throttle_ms` and returns it as the response's
/// `throttle_time_ms`.
fn throttle(shard: &ShardContext, call: &Call, throttle_ms: u64) -> i32 {
    mute(shard, &call.session, throttle_ms)
}

/// Mutes the connection of `session` for `throttle_ms` and returns it as the response's
/// `throttle_time_ms`.
fn mute(shard: &ShardContext, session: &crate::security::Session, throttle_ms: u64) -> i32 {
    if throttle_ms == 0 {
        return 0;
    }
    let throttle_ms = throttle_ms.min(i32::MAX as u64);
    session.mute.extend(shard.shared.clock.now() + Duration::from_millis(throttle_ms));
    throttle_ms as i32
}

/// The encoded size of a request's body: what Kafka charges a Produce request (Kafka counts
/// the header too, a few dozen bytes more). Computed only when a quota applies.
pub(crate) fn request_size_bytes(request: &impl kafka_protocol::protocol::Encodable, version: i16) -> usize {
    request.compute_size(version).unwrap_or(0)
}

/// Charges a Produce request of `size_bytes` against `producer_byte_rate`: its throttle time,
/// with the connection muted for it.
pub(crate) fn charge_produce(shard: &ShardContext, call: &Call, size_bytes: impl FnOnce() -> usize) -> i32 {
    let image = shard.image();
    if image.client_quotas.is_empty() {
        return 0;
    }
    let size_bytes = size_bytes();
    let user = user_of(call);
    let client = Client { user: &user, client_id: &call.client_id };
    let now = shard.shared.clock.now();
    let throttle_ms =
        shard.shared.quotas.record(&image.client_quotas, QuotaKey::ProducerByteRate, client, size_bytes as f64, now);
    throttle(shard, call, throttle_ms)
}

/// A consumer fetch under `consumer_byte_rate`, from its first read to its answer.
#[derive(Debug)]
pub(crate) struct FetchQuota {
    applied: Option<Applied>,
}

impl FetchQuota {
    /// The quota that applies to a consumer's fetch (none for a follower's, which is not
    /// charged request time either).
    pub(crate) fn of(shard: &ShardContext, call: &Call, follower: bool) -> Self {
        if follower && let Some(request_time) = &call.request_time {
            request_time.exempt();
        }
        let image = shard.image();
        if follower || image.client_quotas.is_empty() {
            return Self { applied: None };
        }
        let user = user_of(call);
        let client = Client { user: &user, client_id: &call.client_id };
        Self { applied: sensors::resolve(&image.client_quotas, QuotaKey::ConsumerByteRate, client) }
    }

    /// The most bytes one fetch may return: Kafka's `getMaxValueInQuotaWindow`, what the
    /// quota admits over the sampled span without any other fetch, capping `bytes_max`.
    pub(crate) fn cap(&self, shard: &ShardContext, bytes_max: usize) -> usize {
        let Some(applied) = &self.applied else { return bytes_max };
        let window = shard.shared.quotas.sensors.window();
        let span_s = f64::from(window.samples - 1) * (window.window_ms as f64 / 1_000.0);
        let admitted = (applied.bound * span_s).min(f64::from(i32::MAX)) as usize;
        bytes_max.min(admitted.max(1))
    }

    /// Charges a response of `size_bytes`, and the request's time under `request_percentage`:
    /// the larger throttle time, with the connection muted for it. Over either quota, the
    /// bytes are taken back and the caller answers without records, as Kafka does.
    pub(crate) fn charge(&self, shard: &ShardContext, call: &Call, size_bytes: usize) -> i32 {
        let request_throttle_ms = call.request_time.as_ref().map_or(0, |request_time| request_time.charge());
        let Some(applied) = &self.applied else { return request_throttle_ms };
        let quotas = &shard.shared.quotas;
        let now_ms = quotas.ms(shard.shared.clock.now());
        let throttle_ms = quotas.sensors.record(applied, size_bytes as f64, now_ms);
        if throttle_ms > 0 || request_throttle_ms > 0 {
            quotas.sensors.unrecord(applied, size_bytes as f64, now_ms);
        }
        throttle(shard, call, throttle_ms).max(request_throttle_ms)
    }
}

/// One admin request's controller mutations under `controller_mutation_rate` (KIP-599).
#[derive(Debug)]
pub(crate) struct MutationQuota {
    applied: Option<Applied>,
    strict: bool,
}

impl MutationQuota {
    /// The quota of `call`; `strict` from the request versions that can answer
    /// THROTTLING_QUOTA_EXCEEDED.
    pub(crate) fn of(shard: &ShardContext, call: &Call, strict: bool) -> Self {
        let image = shard.image();
        if image.client_quotas.is_empty() {
            return Self { applied: None, strict };
        }
        let user = user_of(call);
        let client = Client { user: &user, client_id: &call.client_id };
        Self { applied: sensors::resolve(&image.client_quotas, QuotaKey::ControllerMutationRate, client), strict }
    }

    /// Kafka's strict check before a mutation: refused while the bucket is in debt (a
    /// permissive request is never refused).
    ///
    /// # Errors
    /// THROTTLING_QUOTA_EXCEEDED, with Kafka's message.
    pub(crate) fn admit(&self, shard: &ShardContext) -> Result<(), crate::metadata::Refusal> {
        let Some(applied) = &self.applied else { return Ok(()) };
        let quotas = &shard.shared.quotas;
        if self.strict && quotas.sensors.bucket_throttle_ms(applied, quotas.ms(shard.shared.clock.now())) > 0 {
            return Err(crate::metadata::Refusal::new(
                kafka_protocol::ResponseError::ThrottlingQuotaExceeded,
                "The throttling quota has been exceeded.",
            ));
        }
        Ok(())
    }

    /// Takes `permits` (partitions created or deleted) for a mutation the controller accepted.
    pub(crate) fn record(&self, shard: &ShardContext, permits: usize) {
        let Some(applied) = &self.applied else { return };
        let quotas = &shard.shared.quotas;
        quotas.sensors.record(applied, permits as f64, quotas.ms(shard.shared.clock.now()));
    }

    /// The request's throttle time once its mutations are taken, with the connection muted for
    /// it: the time until the bucket is out of debt.
    pub(crate) fn finish(&self, shard: &ShardContext, call: &Call) -> i32 {
        let Some(applied) = &self.applied else { return 0 };
        let quotas = &shard.shared.quotas;
        let throttle_ms = quotas.sensors.bucket_throttle_ms(applied, quotas.ms(shard.shared.clock.now()));
        throttle(shard, call, throttle_ms)
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll, Waker};

    use sluice_engine::clock::ManualClock;

    use super::*;

    #[test]
    fn a_mute_holds_until_its_latest_end_on_the_clock() {
        let clock = ManualClock::new(0);
        let shared = clock.shared();
        let mute = Mute::default();
        let start = shared.now();
        mute.extend(start + Duration::from_millis(500));
        mute.extend(start + Duration::from_millis(200));
        let mut context = Context::from_waker(Waker::noop());
        let mut wait = std::pin::pin!(mute.wait(&shared));
        assert!(wait.as_mut().poll(&mut context).is_pending());
        clock.advance(Duration::from_millis(300));
        assert!(wait.as_mut().poll(&mut context).is_pending(), "the later end wins");
        clock.advance(Duration::from_millis(200));
        assert!(matches!(wait.as_mut().poll(&mut context), Poll::Ready(())));
        assert!(mute.until.get().is_none(), "an ended mute is cleared");
    }
}
