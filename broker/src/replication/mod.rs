//! Partition replication as Kafka does it: followers fetch from leaders, the leader tracks each
//! follower's log end, the high watermark is the smallest log end of the in-sync replicas, and
//! ISR changes go through the controller (AlterPartition) before they count.
//!
//! - The leader's side lives in [`Replication`]: for every partition this broker leads with more
//!   than one replica, the followers' progress (log end, when last caught up), the high
//!   watermark it has set in the engine, and the ISR as the metadata image has it. A follower's
//!   Fetch (the fetch handler, on any shard) reports its fetch offset: everything below it is
//!   written and fsynced on the follower, since followers append durably (unless
//!   `--replica-fsync false`: then written, as Kafka counts it). That moves the high
//!   watermark; a follower that has caught up and is outside the ISR is proposed to the
//!   controller. A periodic check on the controller thread proposes to drop followers that have
//!   not caught up for `replica.lag.time.max.ms`.
//! - An ISR of the leader alone leaves the partition unreplicated in the engine (its high
//!   watermark is the local end), as a single replica's is; with more members the engine's high
//!   watermark is set from here.
//! - acks=all appends wait (`wait_replicated`) until the high watermark passes them, and fail
//!   with NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below `min.insync.replicas`
//!   meanwhile, with NOT_LEADER_OR_FOLLOWER when leadership moved, or time out.
//! - The follower's side is [`fetcher`]: one task per leader broker, on the controller thread,
//!   fetching every partition this broker follows from it.
//!
//! [`Replication::align`] brings all of this in line with each published metadata image.

pub(crate) mod fetcher;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::{Either, select};
use kafka_protocol::ResponseError;
use sluice_engine::clock::SharedClock;
use sluice_engine::{Engine, Offset, TopicId, TopicPartition};

use crate::metadata::MetadataImage;

/// One follower's progress, as the leader sees it.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The follower's last fetch offset: its log end.
    log_end_offset: i64,
    /// When a fetch last reached the leader's log end.
    caught_up_at: Option<Instant>,
}

/// A partition this broker leads with more than one replica.
#[derive(Debug)]
struct Led {
    topic_id: TopicId,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    /// When this broker became leader at this epoch: a follower never heard from counts as
    /// caught up then.
    since: Instant,
    followers: BTreeMap<i32, Progress>,
    /// The high watermark set in the engine while the ISR has other members; -1 before.
    high_watermark: i64,
    /// The ISR proposed to the controller and not yet in the image: no other proposal until
    /// the image shows its outcome.
    pending_isr: Option<Vec<i32>>,
    /// The end of the last acks=all append answered while the leader was alone in the ISR: a
    /// follower joins only once it has everything answered.
    acked_end: i64,
    /// The topic's `min.insync.replicas`: with a smaller ISR the high watermark stays (KIP-966),
    /// so that the replicas that left the ISR, now eligible leaders, hold everything below it.
    min_insync: usize,
}

impl Led {
    /// Kafka's maximal ISR: the ISR with the members of a pending expansion already counted,
    /// so that the high watermark never passes a replica that may be in the ISR the controller
    /// commits (and may then be elected). A pending shrink counts only once committed.
    fn maximal_isr(&self) -> impl Iterator<Item = i32> + '_ {
        let joining = self.pending_isr.iter().flatten().filter(|member| !self.isr.contains(member));
        self.isr.iter().chain(joining).copied()
    }

    /// Whether the high watermark is set from here: the maximal ISR has other members, or the
    /// ISR is below `min.insync.replicas` (the high watermark then holds still).
    fn replicated(&self) -> bool {
        self.maximal_isr().count() > 1 || self.isr.len() < self.min_insync
    }

    /// The smallest log end of the maximal ISR's followers, when every one of them has fetched.
    fn isr_low_water(&self, node_id: i32) -> Option<i64> {
        let mut low = None::<i64>;
        for member in self.maximal_isr().filter(|member| *member != node_id) {
            let end = self.followers.get(&member)?.log_end_offset;
            low = Some(low.map_or(end, |low| low.min(end)));
        }
        low
    }
}

/// The partitions followed from one leader, and the leader's address when it is live.
type Following = (Vec<(TopicPartition, Followed)>, Option<String>);

/// A partition this broker follows.
#[derive(Debug, Clone)]
pub(crate) struct Followed {
    pub(crate) leader: i32,
    pub(crate) leader_epoch: i32,
}

/// An ISR change to propose to the controller, as this partition's leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IsrChange {
    pub(crate) partition: TopicPartition,
    pub(crate) topic_id: TopicId,
    pub(crate) leader_epoch: i32,
    pub(crate) partition_epoch: i32,
    pub(crate) isr: Vec<i32>,
}

/// What a follower's fetch changed on the leader.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Fetched {
    /// The high watermark moved here.
    pub(crate) high_watermark: Option<i64>,
    /// The follower caught up and may join the ISR.
    pub(crate) expand: Option<IsrChange>,
}

#[derive(Debug, Default)]
struct State {
    led: HashMap<TopicPartition, Led>,
    followed: BTreeMap<TopicPartition, Followed>,
    /// Client endpoints of the unfenced brokers, for fetchers.
    endpoints: BTreeMap<i32, String>,
    /// Leaders a fetcher runs for.
    fetchers: BTreeSet<i32>,
    stopped: bool,
}

/// Replication state of this broker, shared by every thread.
pub(crate) struct Replication {
    node_id: i32,
    lag_time_max: Duration,
    /// Followers fsync fetched batches before their next fetch reports them (`--replica-fsync`).
    fsync: bool,
    clock: SharedClock,
    state: Mutex<State>,
    /// Notified when a high watermark, an ISR or a role changes: acks=all waiters re-check.
    changed: event_listener::Event,
    /// Notified when the partitions followed change or replication stops: idle fetchers re-check.
    followed_changed: event_listener::Event,
    /// The engine, once the first image is aligned: to publish high watermarks from here.
    engine: std::sync::OnceLock<Engine>,
    /// Where ISR changes are proposed (weak: the metadata owns this).
    metadata: std::sync::OnceLock<std::sync::Weak<crate::metadata::Metadata>>,
    /// How fetchers connect to leaders (TLS and SASL of the inter-broker listener).
    connector: std::sync::OnceLock<crate::net::peer::Connector>,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

/// How an acks=all append's wait for the ISR ended, when not replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotReplicated {
    /// Leadership moved: NOT_LEADER_OR_FOLLOWER.
    NotLeader,
    /// The ISR is smaller than `min.insync.replicas`: NOT_ENOUGH_REPLICAS_AFTER_APPEND.
    TooFewInSync,
    /// The request's timeout passed: REQUEST_TIMED_OUT.
    TimedOut,
}

impl NotReplicated {
    pub(crate) fn error(self) -> ResponseError {
        match self {
            Self::NotLeader => ResponseError::NotLeaderOrFollower,
            Self::TooFewInSync => ResponseError::NotEnoughReplicasAfterAppend,
            Self::TimedOut => ResponseError::RequestTimedOut,
        }
    }
}

impl Replication {
    pub(crate) fn new(node_id: i32, lag_time_max: Duration, fsync: bool, clock: SharedClock) -> Arc<Self> {
        Arc::new(Self {
            node_id,
            lag_time_max,
            fsync,
            clock,
            state: Mutex::new(State::default()),
            changed: event_listener::Event::new(),
            followed_changed: event_listener::Event::new(),
            engine: std::sync::OnceLock::new(),
            metadata: std::sync::OnceLock::new(),
            connector: std::sync::OnceLock::new(),
        })
    }

    /// Sets how fetchers connect to leaders; before, they connect in plaintext.
    pub(crate) fn set_connector(&self, connector: crate::net::peer::Connector) {
        let _ = self.connector.set(connector);
    }

    /// How fetchers connect to leaders.
    pub(crate) fn connector(&self) -> crate::net::peer::Connector {
        self.connector.get().cloned().unwrap_or_default()
    }

    /// Connects this state to the metadata that proposes its ISR changes.
    pub(crate) fn set_metadata(&self, metadata: &Arc<crate::metadata::Metadata>) {
        let _ = self.metadata.set(Arc::downgrade(metadata));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How an acks=all append to `partition`, which the metadata image says this broker leads
    /// at `leader_epoch` with `replica_count` replicas, is confirmed: `Ok(None)` for a single
    /// replica (the local fsync is all), the ISR's size when this state leads it at that epoch
    /// too, and NOT_LEADER_OR_FOLLOWER while it does not (yet, or any longer): the image and
    /// this state are published one after the other, and an append must never be answered as
    /// unreplicated in between.
    pub(crate) fn in_sync_replicas(
        &self,
        partition: &TopicPartition,
        leader_epoch: i32,
        replica_count: usize,
    ) -> Result<Option<usize>, NotReplicated> {
        if replica_count < 2 {
            return Ok(None);
        }
        match self.lock().led.get(partition) {
            Some(led) if led.leader_epoch == leader_epoch => Ok(Some(led.isr.len())),
            _ => Err(NotReplicated::NotLeader),
        }
    }

    /// Brings the state in line with `image` (called for each published image, on the
    /// controller thread): leaders and followers as the image says, engine high watermarks
    /// switched between unreplicated and set-from-here, fetchers started for new leaders, and
    /// the periodic ISR check started once.
    pub(crate) async fn align(self: &Arc<Self>, image: &MetadataImage, engine: &Engine) {
        let _ = self.engine.set(engine.clone());
        let now = self.clock.now();
        let mut set_unreplicated = Vec::new();
        let mut set_from_engine = Vec::new();
        let mut new_fetchers = Vec::new();
        let mut new_epochs = Vec::new();
        let first = {
            let mut state = self.lock();
            let first = state.endpoints.is_empty() && state.led.is_empty() && state.followed.is_empty();
            state.endpoints = image
                .live_brokers()
                .map(|broker| (broker.node_id, format!("{}:{}", broker.host, broker.port)))
                .collect();
            let mut led = HashMap::new();
            let mut followed = BTreeMap::new();
            for topic in image.topics() {
                let min_insync = crate::metadata::image::min_insync_replicas(&topic.config);
                for (index, partition) in topic.partitions.iter().enumerate() {
                    if !partition.replicas.contains(&self.node_id) || partition.replicas.len() < 2 {
                        continue;
                    }
                    let tp = TopicPartition::new(topic.name.clone(), index as i32);
                    if partition.leader == self.node_id {
                        let previous = state.led.remove(&tp).filter(|led| led.leader_epoch == partition.leader_epoch);
                        let was_replicated = previous.as_ref().is_some_and(Led::replicated);
                        if previous.is_none() {
                            new_epochs.push((tp.clone(), partition.leader_epoch));
                        }
                        let mut entry = previous.unwrap_or_else(|| Led {
                            topic_id: topic.id,
                            leader_epoch: partition.leader_epoch,
                            partition_epoch: partition.partition_epoch,
                            replicas: partition.replicas.clone(),
                            isr: partition.isr.clone(),
                            since: now,
                            followers: BTreeMap::new(),
                            high_watermark: -1,
                            pending_isr: None,
                            acked_end: -1,
                            min_insync,
                        });
                        entry.min_insync = min_insync;
                        if entry.partition_epoch != partition.partition_epoch {
                            entry.pending_isr = None;
                        }
                        entry.partition_epoch = partition.partition_epoch;
                        entry.replicas.clone_from(&partition.replicas);
                        entry.isr.clone_from(&partition.isr);
                        let replicated = entry.replicated();
                        if !replicated {
                            set_unreplicated.push(tp.clone());
                        } else if !was_replicated {
                            set_from_engine.push(tp.clone());
                        }
                        led.insert(tp, entry);
                    } else {
                        let entry = Followed { leader: partition.leader, leader_epoch: partition.leader_epoch };
                        let known =
                            state.followed.get(&tp).is_some_and(|known| known.leader_epoch == entry.leader_epoch);
                        if !known {
                            set_from_engine.push(tp.clone());
                        }
                        followed.insert(tp, entry);
                    }
                }
            }
            state.led = led;
            state.followed = followed;
            let leaders: BTreeSet<i32> =
                state.followed.values().map(|followed| followed.leader).filter(|leader| *leader >= 0).collect();
            for leader in leaders {
                if state.fetchers.insert(leader) {
                    new_fetchers.push(leader);
                }
            }
            first
        };
        for (partition, epoch) in new_epochs {
            if let Err(error) = engine.assign_leader_epoch(&partition, epoch).await {
                tracing::debug!(%partition, %error, "could not start a leader epoch");
            }
        }
        for partition in set_unreplicated {
            if let Err(error) = engine.set_high_watermark(&partition, None).await {
                tracing::debug!(%partition, %error, "could not make a partition unreplicated");
            }
        }
        for partition in set_from_engine {
            // The high watermark this replica had (as follower, the leader's) is where a new
            // leader's starts, and where a new follower's stays until its leader says more.
            match engine.offsets(&partition).await {
                Ok(offsets) => {
                    let high_watermark = offsets.high_watermark;
                    if let Some(led) = self.lock().led.get_mut(&partition) {
                        led.high_watermark = high_watermark.0;
                    }
                    let _ = engine.set_high_watermark(&partition, Some(high_watermark)).await;
                }
                Err(error) => tracing::debug!(%partition, %error, "no offsets for a replicated partition"),
            }
        }
        self.changed.notify(usize::MAX);
        self.followed_changed.notify(usize::MAX);
        for leader in new_fetchers {
            compio::runtime::spawn(fetcher::run(self.clone(), engine.clone(), leader)).detach();
        }
        if first {
            compio::runtime::spawn(self.clone().check_isr_periodically()).detach();
        }
    }

    /// Stops fetchers and the ISR check (shutdown).
    pub(crate) fn stop(&self) {
        self.lock().stopped = true;
        self.followed_changed.notify(usize::MAX);
        self.changed.notify(usize::MAX);
    }

    /// A follower's fetch of `partition` at `fetch_offset`, answered from a leader whose log
    /// ended at `leader_end`.
    pub(crate) fn follower_fetched(
        &self,
        partition: &TopicPartition,
        follower: i32,
        fetch_offset: i64,
        leader_end: i64,
    ) -> Fetched {
        let now = self.clock.now();
        let mut state = self.lock();
        let Some(led) = state.led.get_mut(partition) else { return Fetched::default() };
        if !led.replicas.contains(&follower) {
            return Fetched::default();
        }
        let progress = led.followers.entry(follower).or_insert(Progress { log_end_offset: -1, caught_up_at: None });
        progress.log_end_offset = fetch_offset;
        if fetch_offset >= leader_end {
            progress.caught_up_at = Some(now);
        }
        let mut fetched = Fetched::default();
        if led.replicated()
            && led.isr.len() >= led.min_insync
            && let Some(low) = led.isr_low_water(self.node_id)
        {
            let next = low.min(leader_end);
            if next > led.high_watermark {
                led.high_watermark = next;
                fetched.high_watermark = Some(next);
            }
        }
        // Kafka's rule: a follower rejoins once it has fetched up to the high watermark (while
        // the leader is alone in the ISR: its log end, and every acks=all append answered).
        let alone = !led.replicated();
        let high_watermark = if alone { leader_end.max(led.acked_end) } else { led.high_watermark };
        if !led.isr.contains(&follower) && led.pending_isr.is_none() && fetch_offset >= high_watermark {
            let mut isr = led.isr.clone();
            isr.push(follower);
            led.pending_isr = Some(isr.clone());
            if alone {
                // From here the high watermark waits for the joining follower: set it in the
                // engine where the follower already is.
                led.high_watermark = led.high_watermark.max(high_watermark);
                fetched.high_watermark = Some(led.high_watermark);
            }
            fetched.expand = Some(IsrChange {
                partition: partition.clone(),
                topic_id: led.topic_id,
                leader_epoch: led.leader_epoch,
                partition_epoch: led.partition_epoch,
                isr,
            });
        }
        fetched
    }

    /// An ISR change the controller refused or never answered: a later one may be tried. A
    /// refused expansion of a leader alone leaves the partition unreplicated again.
    pub(crate) async fn isr_change_failed(&self, partition: &TopicPartition) {
        let alone = {
            let mut state = self.lock();
            let Some(led) = state.led.get_mut(partition) else { return };
            led.pending_isr = None;
            !led.replicated()
        };
        self.changed.notify(usize::MAX);
        if alone && let Some(engine) = self.engine.get() {
            self.publish_high_watermark(engine, partition).await;
        }
    }

    /// Sets the engine's high watermark of `partition` to what this state holds (none while
    /// the leader is alone in its maximal ISR), again if it changed meanwhile (concurrent
    /// follower fetches, a refused expansion), then wakes acks=all waiters.
    pub(crate) async fn publish_high_watermark(&self, engine: &Engine, partition: &TopicPartition) {
        let mut set = None::<Option<i64>>;
        loop {
            let wanted = {
                let state = self.lock();
                let Some(led) = state.led.get(partition) else { break };
                led.replicated().then_some(led.high_watermark)
            };
            let done = match (set, wanted) {
                (Some(Some(set)), Some(wanted)) => wanted <= set,
                (Some(set), wanted) => set == wanted,
                (None, _) => false,
            };
            if done || wanted.is_some_and(|wanted| wanted < 0) {
                break;
            }
            if engine.set_high_watermark(partition, wanted.map(Offset)).await.is_err() {
                break;
            }
            set = Some(wanted);
        }
        self.changed.notify(usize::MAX);
    }

    /// Waits until an acks=all append at `leader_epoch` ending before `end_offset` is on every
    /// in-sync replica, or until `deadline`.
    pub(crate) async fn wait_replicated(
        &self,
        partition: &TopicPartition,
        leader_epoch: i32,
        end_offset: i64,
        min_insync: usize,
        deadline: Instant,
    ) -> Result<(), NotReplicated> {
        loop {
            let listener = self.changed.listen();
            {
                let mut state = self.lock();
                if state.stopped {
                    return Err(NotReplicated::NotLeader);
                }
                match state.led.get_mut(partition) {
                    None => return Err(NotReplicated::NotLeader),
                    Some(led) if led.leader_epoch != leader_epoch => return Err(NotReplicated::NotLeader),
                    // The high watermark holds still below min.insync.replicas: fail now rather
                    // than at the timeout.
                    Some(led) if led.isr.len() < min_insync => return Err(NotReplicated::TooFewInSync),
                    Some(led) if !led.replicated() || led.high_watermark >= end_offset => {
                        if led.isr.len() < min_insync {
                            return Err(NotReplicated::TooFewInSync);
                        }
                        if !led.replicated() {
                            led.acked_end = led.acked_end.max(end_offset);
                        }
                        return Ok(());
                    }
                    Some(_) => {}
                }
            }
            let now = self.clock.now();
            if now >= deadline {
                return Err(NotReplicated::TimedOut);
            }
            let sleep = self.clock.sleep(deadline - now);
            if let Either::Right(_) = select(listener, sleep).await {
                // Checked once more at the top, then timed out.
                if self.clock.now() >= deadline {
                    let state = self.lock();
                    let done = state
                        .led
                        .get(partition)
                        .is_some_and(|led| led.leader_epoch == leader_epoch && led.high_watermark >= end_offset);
                    return if done { Ok(()) } else { Err(NotReplicated::TimedOut) };
                }
            }
        }
    }

    /// Every second: for each partition led with other ISR members, proposes to drop the
    /// followers that have not caught up for `replica.lag.time.max.ms`.
    async fn check_isr_periodically(self: Arc<Self>) {
        loop {
            self.clock.sleep(Duration::from_secs(1)).await;
            if self.lock().stopped {
                return;
            }
            for change in self.lagging(self.clock.now()) {
                self.propose(change).await;
            }
        }
    }

    /// ISR changes that drop followers lagging at `now`; marks them pending.
    fn lagging(&self, now: Instant) -> Vec<IsrChange> {
        let mut changes = Vec::new();
        let mut state = self.lock();
        for (partition, led) in &mut state.led {
            if led.isr.len() <= 1 || led.pending_isr.is_some() {
                continue;
            }
            let lagging = |member: &i32| {
                *member != self.node_id && {
                    let heard = led.followers.get(member).and_then(|progress| progress.caught_up_at);
                    now.saturating_duration_since(heard.unwrap_or(led.since)) > self.lag_time_max
                }
            };
            if !led.isr.iter().any(lagging) {
                continue;
            }
            let isr: Vec<i32> = led.isr.iter().copied().filter(|member| !lagging(member)).collect();
            led.pending_isr = Some(isr.clone());
            changes.push(IsrChange {
                partition: partition.clone(),
                topic_id: led.topic_id,
                leader_epoch: led.leader_epoch,
                partition_epoch: led.partition_epoch,
                isr,
            });
        }
        changes
    }

    /// Sends an ISR change to the controller; a refusal frees the partition for another.
    pub(crate) async fn propose(&self, change: IsrChange) {
        let Some(metadata) = self.metadata.get().and_then(std::sync::Weak::upgrade) else { return };
        let IsrChange { partition, topic_id, leader_epoch, partition_epoch, isr } = change;
        tracing::info!(%partition, ?isr, "proposing a new ISR");
        let outcome =
            metadata.alter_partition(topic_id, partition.partition.0, leader_epoch, partition_epoch, isr).await;
        if let Err(refusal) = outcome {
            tracing::info!(%partition, reason = %refusal.message, "the controller refused an ISR change");
            self.isr_change_failed(&partition).await;
        }
    }

    /// The partitions this broker follows from `leader`, and where to reach it; `None` once
    /// replication stopped.
    fn following(&self, leader: i32) -> Option<Following> {
        let state = self.lock();
        if state.stopped {
            return None;
        }
        let partitions = state
            .followed
            .iter()
            .filter(|(_, followed)| followed.leader == leader)
            .map(|(partition, followed)| (partition.clone(), followed.clone()))
            .collect();
        Some((partitions, state.endpoints.get(&leader).cloned()))
    }

    /// Whether this broker still follows `partition` from the leader and at the epoch `asked`
    /// names.
    fn follows(&self, partition: &TopicPartition, asked: &Followed) -> bool {
        let state = self.lock();
        !state.stopped
            && state
                .followed
                .get(partition)
                .is_some_and(|followed| followed.leader == asked.leader && followed.leader_epoch == asked.leader_epoch)
    }

    /// A fetcher with nothing to fetch ends; `true` when it really has nothing (checked under
    /// the lock, so that a partition added meanwhile starts a new fetcher).
    fn retire_fetcher(&self, leader: i32) -> bool {
        let mut state = self.lock();
        let idle = state.stopped || !state.followed.values().any(|followed| followed.leader == leader);
        if idle {
            state.fetchers.remove(&leader);
        }
        idle
    }

    /// Whether followers fsync what they fetch before reporting it.
    pub(crate) fn fsync(&self) -> bool {
        self.fsync
    }

    /// The node id fetchers name as their replica id.
    pub(crate) fn node_id(&self) -> i32 {
        self.node_id
    }

    pub(crate) fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::clock::{Clock as _, ManualClock};

    fn leader_of(replication: &Replication, replicas: Vec<i32>, isr: Vec<i32>) -> TopicPartition {
        let partition = TopicPartition::new("t", 0);
        let led = Led {
            topic_id: TopicId([1; 16]),
            leader_epoch: 3,
            partition_epoch: 5,
            replicas,
            isr,
            since: replication.clock.now(),
            followers: BTreeMap::new(),
            high_watermark: 0,
            pending_isr: None,
            acked_end: -1,
            min_insync: 1,
        };
        replication.lock().led.insert(partition.clone(), led);
        partition
    }

    #[test]
    fn the_high_watermark_is_the_smallest_log_end_of_the_isr() {
        let clock = Arc::new(ManualClock::new(0));
        let replication = Replication::new(1, Duration::from_secs(30), true, clock);
        let partition = leader_of(&replication, vec![1, 2, 3], vec![1, 2, 3]);
        assert_eq!(replication.follower_fetched(&partition, 2, 10, 20).high_watermark, None, "3 has not fetched");
        assert_eq!(replication.follower_fetched(&partition, 3, 15, 20).high_watermark, Some(10));
        assert_eq!(replication.follower_fetched(&partition, 2, 20, 20).high_watermark, Some(15));
        assert_eq!(replication.follower_fetched(&partition, 2, 18, 20).high_watermark, None, "never backwards");
    }

    #[test]
    fn a_caught_up_follower_is_proposed_once_and_a_lagging_one_dropped() {
        let clock = Arc::new(ManualClock::new(0));
        let replication = Replication::new(1, Duration::from_secs(30), true, clock.clone());
        let partition = leader_of(&replication, vec![1, 2, 3], vec![1, 2]);
        assert_eq!(replication.follower_fetched(&partition, 2, 10, 20).high_watermark, Some(10));
        assert_eq!(replication.follower_fetched(&partition, 3, 5, 20).expand, None, "behind the high watermark");
        replication.follower_fetched(&partition, 2, 20, 20);
        let change = replication.follower_fetched(&partition, 3, 20, 20).expand.expect("caught up");
        assert_eq!((change.isr, change.leader_epoch, change.partition_epoch), (vec![1, 2, 3], 3, 5));
        assert_eq!(replication.follower_fetched(&partition, 3, 20, 20).expand, None, "one proposal at a time");
        sluice_engine::block_on(replication.isr_change_failed(&partition));

        clock.advance(Duration::from_secs(31));
        replication.follower_fetched(&partition, 2, 20, 20);
        assert!(replication.lagging(clock.now()).is_empty(), "2 just caught up");
        clock.advance(Duration::from_secs(31));
        let changes = replication.lagging(clock.now());
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].isr, vec![1], "2 lagged for longer than the limit");
    }

    #[test]
    fn acks_all_waits_for_the_isr_and_fails_when_leadership_moves() {
        let clock = Arc::new(ManualClock::new(0));
        let replication = Replication::new(1, Duration::from_secs(30), true, clock.clone());
        let partition = leader_of(&replication, vec![1, 2], vec![1, 2]);
        let deadline = clock.now() + Duration::from_secs(5);
        let waiting = replication.wait_replicated(&partition, 3, 10, 1, deadline);
        let done = sluice_engine::block_on(async {
            let advance = async {
                replication.follower_fetched(&partition, 2, 10, 10);
                replication.changed.notify(usize::MAX);
            };
            let (result, ()) = futures_util::join!(waiting, advance);
            result
        });
        assert_eq!(done, Ok(()));
        let too_few = sluice_engine::block_on(replication.wait_replicated(&partition, 3, 10, 3, deadline));
        assert_eq!(too_few, Err(NotReplicated::TooFewInSync));
        replication.lock().led.clear();
        let moved = sluice_engine::block_on(replication.wait_replicated(&partition, 3, 11, 1, deadline));
        assert_eq!(moved, Err(NotReplicated::NotLeader));
    }

    #[test]
    fn the_high_watermark_waits_for_a_follower_whose_joining_is_pending() {
        let clock = Arc::new(ManualClock::new(0));
        let replication = Replication::new(2, Duration::from_secs(30), true, clock);
        let partition = leader_of(&replication, vec![1, 2, 3], vec![2, 3]);
        replication.lock().led.get_mut(&partition).expect("led").high_watermark = 100;
        replication.follower_fetched(&partition, 3, 100, 100);
        let change = replication.follower_fetched(&partition, 1, 100, 100).expand.expect("1 caught up");
        assert_eq!(change.isr, vec![2, 3, 1]);
        // The leader appends up to 200 and 3 fetches all of it: while 1 may join, the high
        // watermark (and so every acks=all answer) waits for 1 too.
        assert_eq!(replication.follower_fetched(&partition, 3, 200, 200).high_watermark, None);
        assert_eq!(replication.follower_fetched(&partition, 1, 150, 200).high_watermark, Some(150));
    }

    #[test]
    fn the_high_watermark_holds_while_the_isr_is_below_min_insync() {
        let clock = Arc::new(ManualClock::new(0));
        let replication = Replication::new(1, Duration::from_secs(30), true, clock.clone());
        let partition = leader_of(&replication, vec![1, 2, 3], vec![1, 2]);
        replication.lock().led.get_mut(&partition).expect("led").min_insync = 3;
        assert_eq!(replication.follower_fetched(&partition, 2, 20, 20).high_watermark, None, "KIP-966");
        let deadline = clock.now() + Duration::from_secs(5);
        let refused = sluice_engine::block_on(replication.wait_replicated(&partition, 3, 20, 3, deadline));
        assert_eq!(refused, Err(NotReplicated::TooFewInSync), "answered at once, not at the timeout");
        replication.lock().led.get_mut(&partition).expect("led").min_insync = 2;
        assert_eq!(replication.follower_fetched(&partition, 2, 20, 20).high_watermark, Some(20));
    }

    #[test]
    fn a_follower_joins_a_leader_alone_only_with_every_answered_append() {
        let clock = Arc::new(ManualClock::new(0));
        let replication = Replication::new(1, Duration::from_secs(30), true, clock.clone());
        let partition = leader_of(&replication, vec![1, 2], vec![1]);
        let deadline = clock.now() + Duration::from_secs(5);
        // Alone in the ISR, an acks=all append to 50 is answered at once.
        assert_eq!(sluice_engine::block_on(replication.wait_replicated(&partition, 3, 50, 1, deadline)), Ok(()));
        // A fetch served when the leader's log ended at 40 does not let 2 in: 40..50 was answered.
        assert_eq!(replication.follower_fetched(&partition, 2, 40, 40).expand, None);
        let fetched = replication.follower_fetched(&partition, 2, 50, 50);
        assert_eq!(fetched.expand.expect("caught up").isr, vec![1, 2]);
        assert_eq!(fetched.high_watermark, Some(50), "the engine's high watermark is set from here now");
        // While the expansion is pending, an append to 60 waits for 2.
        let waiting = sluice_engine::block_on(replication.wait_replicated(&partition, 3, 60, 1, clock.now()));
        assert_eq!(waiting, Err(NotReplicated::TimedOut));
        // Refused: alone again, answered at once.
        sluice_engine::block_on(replication.isr_change_failed(&partition));
        assert_eq!(sluice_engine::block_on(replication.wait_replicated(&partition, 3, 60, 1, deadline)), Ok(()));
    }

    /// One step of a random schedule: a follower fetches (advancing its log by `grow`, at most
    /// to the leader's end), the leader appends, the controller accepts a pending ISR change, or
    /// time passes.
    #[derive(Debug, Clone)]
    enum Step {
        Fetch { follower: i32, grow: i64 },
        Append(i64),
        Accept,
        Elapse(u64),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            (2..=3i32, 0..50i64).prop_map(|(follower, grow)| Step::Fetch { follower, grow }),
            (0..80i64).prop_map(Step::Append),
            Just(Step::Accept),
            (0..20_000u64).prop_map(Step::Elapse),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Under any schedule: the high watermark never moves back, never passes the leader's
        /// end, and moves only to where every in-sync follower has the log; a follower is
        /// proposed for the ISR only once it has fetched up to the high watermark; the leader is
        /// never proposed out of it.
        #[test]
        fn the_high_watermark_and_the_isr_keep_their_invariants(steps in proptest::collection::vec(step(), 1..200)) {
            let clock = Arc::new(ManualClock::new(0));
            let lag = Duration::from_secs(30);
            let replication = Replication::new(1, lag, true, clock.clone());
            let partition = leader_of(&replication, vec![1, 2, 3], vec![1, 2, 3]);
            let mut leader_end = 0i64;
            let mut follower_end: BTreeMap<i32, i64> = BTreeMap::from([(2, 0), (3, 0)]);
            let mut pending: Option<IsrChange> = None;
            let mut last_high_watermark = 0i64;
            for step in steps {
                match step {
                    Step::Fetch { follower, grow } => {
                        let end = follower_end.get_mut(&follower).expect("follower");
                        *end = (*end + grow).min(leader_end);
                        let high_watermark_before = replication.lock().led[&partition].high_watermark;
                        let fetched = replication.follower_fetched(&partition, follower, *end, leader_end);
                        if let Some(change) = fetched.expand {
                            let threshold = if change.isr.len() > 2 { high_watermark_before.max(0) } else { 0 };
                            proptest::prop_assert!(*end >= threshold.min(leader_end));
                            proptest::prop_assert!(change.isr.contains(&follower));
                            pending = Some(change);
                        }
                    }
                    Step::Append(count) => leader_end += count,
                    Step::Accept => {
                        if let Some(change) = pending.take() {
                            let mut state = replication.lock();
                            let led = state.led.get_mut(&partition).expect("led");
                            led.isr = change.isr;
                            led.partition_epoch += 1;
                            led.pending_isr = None;
                        }
                    }
                    Step::Elapse(ms) => {
                        clock.advance(Duration::from_millis(ms));
                        for change in replication.lagging(clock.now()) {
                            proptest::prop_assert!(change.isr.contains(&1), "the leader stays in the ISR");
                            pending = Some(change);
                        }
                    }
                }
                let state = replication.lock();
                let led = &state.led[&partition];
                proptest::prop_assert!(led.high_watermark >= last_high_watermark, "never backwards");
                proptest::prop_assert!(led.high_watermark <= leader_end);
                if led.high_watermark > last_high_watermark {
                    // It moved: every follower of the maximal ISR (the committed one and any
                    // joining) has the log up to it.
                    for member in led.maximal_isr().filter(|member| *member != 1) {
                        let end = led.followers.get(&member).map_or(-1, |progress| progress.log_end_offset);
                        proptest::prop_assert!(end >= led.high_watermark, "follower {} at {} below {}", member, end, led.high_watermark);
                    }
                }
                last_high_watermark = led.high_watermark;
            }
        }
    }
}
