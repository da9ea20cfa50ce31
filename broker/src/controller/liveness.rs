//! Broker sessions as the active controller sees them: when each registered broker was last
//! heard from, and which ones have been silent past `broker.session.timeout.ms`.
//!
//! Kept in memory by the active controller only. A controller that becomes active does not know
//! when its predecessor last heard from anyone, so it gives every registered broker a full
//! session from that moment (Kafka's controller does the same). Time is passed in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::metadata::MetadataImage;

#[derive(Debug, Clone, Copy)]
struct Session {
    incarnation: u64,
    last_heard: Instant,
}

/// Sessions by node id.
#[derive(Debug)]
pub(crate) struct Liveness {
    timeout: Duration,
    sessions: BTreeMap<i32, Session>,
}

impl Liveness {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self { timeout, sessions: BTreeMap::new() }
    }

    /// Leadership starts (again) at `now`: every broker `image` registers gets a full session.
    pub(crate) fn restart(&mut self, image: &MetadataImage, now: Instant) {
        self.sessions = image
            .brokers
            .values()
            .map(|broker| (broker.node_id, Session { incarnation: broker.incarnation, last_heard: now }))
            .collect();
    }

    /// `node_id`, in its incarnation `incarnation`, was heard from at `now`.
    pub(crate) fn heard(&mut self, node_id: i32, incarnation: u64, now: Instant) {
        self.sessions.insert(node_id, Session { incarnation, last_heard: now });
    }

    /// The unfenced brokers of `image` whose current incarnation has been silent for longer
    /// than the session timeout at `now`. A broker the controller has no session for (it
    /// registered through a predecessor) gets one from `now`.
    pub(crate) fn expired(&mut self, image: &MetadataImage, now: Instant) -> Vec<i32> {
        let mut expired = Vec::new();
        for broker in image.live_brokers() {
            let session = self
                .sessions
                .entry(broker.node_id)
                .or_insert(Session { incarnation: broker.incarnation, last_heard: now });
            if session.incarnation != broker.incarnation {
                // A newer registration than the last heartbeat: its session starts now.
                *session = Session { incarnation: broker.incarnation, last_heard: now };
            }
            if now.saturating_duration_since(session.last_heard) > self.timeout {
                expired.push(broker.node_id);
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::image::BrokerRegistration;
    use crate::metadata::records::MetadataRecord;

    fn image(nodes: &[(i32, u64, bool)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (node_id, incarnation, fenced) in nodes {
            image.apply(&MetadataRecord::RegisterBroker(BrokerRegistration {
                node_id: *node_id,
                incarnation: *incarnation,
                host: "h".to_owned(),
                port: 1,
                rack: None,
                fenced: *fenced,
                clean_restart: true,
                listeners: Vec::new(),
            }));
        }
        image
    }

    #[test]
    fn a_silent_broker_expires_and_heartbeats_keep_others_alive() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let cluster = image(&[(1, 10, false), (2, 20, false), (3, 30, true)]);
        let mut liveness = Liveness::new(Duration::from_secs(9));
        liveness.restart(&cluster, at(0));
        for second in 1..=9 {
            liveness.heard(1, 10, at(second * 1000));
            assert!(liveness.expired(&cluster, at(second * 1000)).is_empty(), "within the timeout at {second} s");
        }
        liveness.heard(1, 10, at(9500));
        assert_eq!(liveness.expired(&cluster, at(9001)), vec![2], "node 2 is silent; node 3 is already fenced");
    }

    #[test]
    fn a_new_controller_gives_every_broker_a_full_session() {
        let start = Instant::now();
        let cluster = image(&[(1, 10, false)]);
        let mut liveness = Liveness::new(Duration::from_millis(100));
        liveness.heard(1, 10, start);
        liveness.restart(&cluster, start + Duration::from_mins(1));
        assert!(liveness.expired(&cluster, start + Duration::from_millis(60_050)).is_empty());
        assert_eq!(liveness.expired(&cluster, start + Duration::from_millis(60_101)), vec![1]);
    }

    #[test]
    fn a_new_registration_starts_a_new_session() {
        let start = Instant::now();
        let mut liveness = Liveness::new(Duration::from_millis(100));
        liveness.heard(1, 10, start);
        let registered_again = image(&[(1, 11, false)]);
        let later = start + Duration::from_millis(500);
        assert!(liveness.expired(&registered_again, later).is_empty(), "the new incarnation's session starts now");
        assert_eq!(liveness.expired(&registered_again, later + Duration::from_millis(101)), vec![1]);
    }
}
