//! The rates quotas are measured against, shared by every shard, and the rule that picks the
//! quota of a request.
//!
//! A client's connections land on any shard, so its rate is one value for all of them: the
//! sensors live in one map behind a mutex, held only to find a sensor and update it (a few
//! hundred nanoseconds). Nothing here is reached when no quota is configured: callers check
//! the image's quotas first (see `super`), so a broker without quotas takes no lock.
//!
//! Which quota applies, for each key separately, is Kafka's precedence (the first entity that
//! has the key wins):
//! 1. `/users/<user>/clients/<client-id>`
//! 2. `/users/<user>/clients/<default>`
//! 3. `/users/<user>`
//! 4. `/users/<default>/clients/<client-id>`
//! 5. `/users/<default>/clients/<default>`
//! 6. `/users/<default>`
//! 7. `/clients/<client-id>`
//! 8. `/clients/<default>`
//!
//! and, as in Kafka's default quota callback, the rate is measured per (user, client id) for
//! the entities naming both, per user for 3 and 6, and per client id for 7 and 8: a default
//! quota applies to each user or client separately, not to all of them together.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::entity::{ClientQuotas, EntityName, QuotaEntity, QuotaKey};
use super::rate::{SampledRate, TokenBucket, WindowConfig};

/// Who sent a request, as quotas see it: the principal's name and the client id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client<'a> {
    pub(crate) user: &'a str,
    pub(crate) client_id: &'a str,
}

/// Kafka's quota metric tags: whose rate a sensor measures ("" for a side not used).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SensorId {
    key: QuotaKey,
    user: String,
    client_id: String,
}

/// The quota that applies to a client for one key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Applied {
    pub(crate) sensor: SensorId,
    /// The quota: bytes/s, percent, or mutations/s.
    pub(crate) bound: f64,
}

/// The module docs' precedence for `key`: the quota and the sensor that measures it, or
/// `None` when no entity applies (the client is unlimited).
pub(crate) fn resolve(quotas: &ClientQuotas, key: QuotaKey, client: Client<'_>) -> Option<Applied> {
    let named = |name: &str| Some(EntityName::Named(name.to_owned()));
    let default = || Some(EntityName::Default);
    // (entity, the sensor is per user, the sensor is per client id), in precedence order.
    let levels = [
        (named(client.user), named(client.client_id), true, true),
        (named(client.user), default(), true, true),
        (named(client.user), None, true, false),
        (default(), named(client.client_id), true, true),
        (default(), default(), true, true),
        (default(), None, true, false),
        (None, named(client.client_id), false, true),
        (None, default(), false, true),
    ];
    levels.into_iter().find_map(|(user, client_id, per_user, per_client)| {
        let bound = quotas.value(&QuotaEntity { user, client_id }, key)?;
        let sensor = SensorId {
            key,
            user: if per_user { client.user.to_owned() } else { String::new() },
            client_id: if per_client { client.client_id.to_owned() } else { String::new() },
        };
        Some(Applied { sensor, bound })
    })
}

/// A sensor's state.
#[derive(Debug)]
enum Meter {
    Rate(SampledRate),
    Bucket(TokenBucket),
}

#[derive(Debug)]
struct Sensor {
    meter: Meter,
    last_used_ms: u64,
}

/// Sensors kept before idle ones are dropped.
const SENSOR_COUNT_SOFT_MAX: usize = 10_000;

/// Every sensor of the broker.
#[derive(Debug)]
pub(crate) struct Sensors {
    window: WindowConfig,
    sensors: Mutex<BTreeMap<SensorId, Sensor>>,
}

impl Sensors {
    pub(crate) fn new(window: WindowConfig) -> Self {
        Self { window, sensors: Mutex::new(BTreeMap::new()) }
    }

    /// The window shape sensors are created with.
    pub(crate) fn window(&self) -> WindowConfig {
        self.window
    }

    /// Runs `action` on the sensor of `applied`, created on first use.
    fn with_sensor<T>(&self, applied: &Applied, now_ms: u64, action: impl FnOnce(&mut Meter) -> T) -> T {
        let mut sensors = self.sensors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if sensors.len() >= SENSOR_COUNT_SOFT_MAX && !sensors.contains_key(&applied.sensor) {
            // A sensor idle for the whole monitored span measures nothing any more.
            let idle_ms = u64::from(self.window.samples) * self.window.window_ms;
            sensors.retain(|_, sensor| now_ms.saturating_sub(sensor.last_used_ms) < idle_ms);
        }
        let window = self.window;
        let sensor = sensors.entry(applied.sensor.clone()).or_insert_with(|| Sensor {
            meter: match applied.sensor.key {
                QuotaKey::ControllerMutationRate => Meter::Bucket(TokenBucket::new(window)),
                _ => Meter::Rate(SampledRate::new(window)),
            },
            last_used_ms: now_ms,
        });
        sensor.last_used_ms = now_ms;
        action(&mut sensor.meter)
    }

    /// Records `value` against a rate quota: the throttle time in ms (0 within the quota).
    pub(crate) fn record(&self, applied: &Applied, value: f64, now_ms: u64) -> u64 {
        self.with_sensor(applied, now_ms, |meter| match meter {
            Meter::Rate(rate) => rate.record_and_throttle_ms(value, now_ms, applied.bound),
            Meter::Bucket(bucket) => {
                bucket.record(value, now_ms, applied.bound);
                bucket.throttle_ms(now_ms, applied.bound)
            }
        })
    }

    /// Takes back `value` recorded by [`Self::record`] (a throttled fetch sends no data).
    pub(crate) fn unrecord(&self, applied: &Applied, value: f64, now_ms: u64) {
        self.with_sensor(applied, now_ms, |meter| {
            if let Meter::Rate(rate) = meter {
                rate.record(-value, now_ms);
            }
        });
    }

    /// The throttle time a bucket's debt earns at `now_ms` (0 for rates, which compute theirs
    /// when recording).
    pub(crate) fn bucket_throttle_ms(&self, applied: &Applied, now_ms: u64) -> u64 {
        self.with_sensor(applied, now_ms, |meter| match meter {
            Meter::Bucket(bucket) => bucket.throttle_ms(now_ms, applied.bound),
            Meter::Rate(_) => 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::entity::{QuotaRecord, QuotaValue};
    use super::*;

    fn set(quotas: &mut ClientQuotas, user: Option<EntityName>, client_id: Option<EntityName>, value: f64) {
        quotas.apply(&QuotaRecord {
            entity: QuotaEntity { user, client_id },
            key: QuotaKey::ProducerByteRate,
            value: Some(QuotaValue(value)),
        });
    }

    fn named(name: &str) -> EntityName {
        EntityName::Named(name.to_owned())
    }

    const ALICE_P1: Client<'static> = Client { user: "alice", client_id: "p1" };

    fn bound(quotas: &ClientQuotas) -> Option<f64> {
        resolve(quotas, QuotaKey::ProducerByteRate, ALICE_P1).map(|applied| applied.bound)
    }

    #[test]
    fn precedence_is_kafkas_from_the_most_specific_entity_down() {
        let mut quotas = ClientQuotas::default();
        assert_eq!(bound(&quotas), None);
        // Added from the least specific up: each one takes over.
        let default = || Some(EntityName::Default);
        let levels: [(Option<EntityName>, Option<EntityName>); 8] = [
            (None, default()),
            (None, Some(named("p1"))),
            (default(), None),
            (default(), default()),
            (default(), Some(named("p1"))),
            (Some(named("alice")), None),
            (Some(named("alice")), default()),
            (Some(named("alice")), Some(named("p1"))),
        ];
        for (index, (user, client_id)) in levels.into_iter().enumerate() {
            set(&mut quotas, user, client_id, (index + 1) as f64);
            assert_eq!(bound(&quotas), Some((index + 1) as f64), "level {index}");
        }
        // Another user's or client's entities do not apply.
        let other = resolve(&quotas, QuotaKey::ProducerByteRate, Client { user: "bob", client_id: "p2" });
        assert_eq!(other.map(|applied| applied.bound), Some(4.0), "/users/<default>/clients/<default>");
        assert_eq!(resolve(&quotas, QuotaKey::ConsumerByteRate, ALICE_P1), None, "another key");
    }

    #[test]
    fn default_quotas_measure_each_client_separately() {
        let mut quotas = ClientQuotas::default();
        set(&mut quotas, None, Some(EntityName::Default), 100.0);
        let first = resolve(&quotas, QuotaKey::ProducerByteRate, ALICE_P1).expect("applies");
        let second =
            resolve(&quotas, QuotaKey::ProducerByteRate, Client { user: "alice", client_id: "p2" }).expect("applies");
        assert_ne!(first.sensor, second.sensor);
        assert_eq!(first.sensor.user, "", "a client-id quota is measured per client id alone");
        let sensors = Sensors::new(WindowConfig::default());
        assert!(sensors.record(&first, 5_000.0, 0) > 0);
        assert_eq!(sensors.record(&second, 500.0, 0), 0, "p2 is not charged for p1's bytes");
    }

    #[test]
    fn a_mutation_burst_puts_the_bucket_in_debt_for_the_refill_time() {
        let mut quotas = ClientQuotas::default();
        quotas.apply(&QuotaRecord {
            entity: QuotaEntity { user: None, client_id: Some(named("p1")) },
            key: QuotaKey::ControllerMutationRate,
            value: Some(QuotaValue(1.0)),
        });
        let applied = resolve(&quotas, QuotaKey::ControllerMutationRate, ALICE_P1).expect("applies");
        let sensors = Sensors::new(WindowConfig::default());
        // A burst of 11 permits: a 20-partition topic still passes (the bucket goes to -9)...
        assert_eq!(sensors.bucket_throttle_ms(&applied, 0), 0);
        assert_eq!(sensors.record(&applied, 20.0, 0), 9_000);
        // ...and the next strict check finds the bucket in debt: 9 s to refill to zero.
        assert_eq!(sensors.bucket_throttle_ms(&applied, 0), 9_000);
        assert_eq!(sensors.bucket_throttle_ms(&applied, 4_000), 5_000);
        assert_eq!(sensors.bucket_throttle_ms(&applied, 9_000), 0);
    }
}
