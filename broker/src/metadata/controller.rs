//! The controller's decisions: turning an admin request and the current image into metadata
//! records, or into Kafka's refusal.
//!
//! Pure functions of the image and the request (and, for replica placement, a seed), so that
//! every rule is tested without a broker. The writer applies what they return.
//!
//! Replica placement follows Kafka's rack-unaware rule: brokers in id order; partition `p`'s
//! first replica is broker `(start + p) mod n`; its other replicas follow at a shift that grows
//! by one every `n` partitions, so leaders and followers spread evenly and no two partitions
//! share the same replica list more than they must. `start` and the initial shift are random
//! per request, as in Kafka.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use sluice_engine::{TopicConfig, TopicId, is_valid_topic_name};

use super::image::{MetadataImage, TopicImage};
use super::records::MetadataRecord;

/// Upper bound on partitions per topic, far above any real use, to bound work per request.
const PARTITION_COUNT_MAX: i32 = 100_000;

/// Why the controller refuses a request: Kafka's error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) error: ResponseError,
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Self { error, message: message.into() }
    }
}

/// A topic to create, with its config already resolved.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct NewTopic {
    pub(crate) name: String,
    /// `None`: the broker's `num.partitions` (only without `assignments`).
    pub(crate) partition_count: Option<i32>,
    /// `None`: the broker's `default.replication.factor` (only without `assignments`).
    pub(crate) replication_factor: Option<i16>,
    /// Manual replica lists by partition index; empty to let the controller place replicas.
    pub(crate) assignments: Vec<Vec<i32>>,
    pub(crate) config: TopicConfig,
}

/// The broker-wide defaults a decision may need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Defaults {
    pub(crate) partition_count: i32,
    pub(crate) replication_factor: i16,
}

/// Decides a topic creation.
pub(crate) fn create_topic(
    image: &MetadataImage,
    topic: &NewTopic,
    id: TopicId,
    defaults: Defaults,
    seed: u64,
) -> Result<MetadataRecord, Refusal> {
    let name = topic.name.as_str();
    if !is_valid_topic_name(name) {
        return Err(Refusal::new(ResponseError::InvalidTopicException, format!("invalid topic name {name:?}")));
    }
    if image.topic(name).is_some() {
        return Err(Refusal::new(ResponseError::TopicAlreadyExists, format!("Topic '{name}' already exists.")));
    }
    let partitions = if topic.assignments.is_empty() {
        let count = topic.partition_count.unwrap_or(defaults.partition_count);
        if !(1..=PARTITION_COUNT_MAX).contains(&count) {
            return Err(Refusal::new(ResponseError::InvalidPartitions, "Number of partitions must be larger than 0."));
        }
        let factor = topic.replication_factor.unwrap_or(defaults.replication_factor);
        let brokers = placeable_brokers(image);
        check_replication_factor(factor, brokers.len())?;
        assign_replicas(&brokers, count, usize::try_from(factor).unwrap_or(1), 0, seed)
    } else {
        check_assignments(image, &topic.assignments)?;
        topic.assignments.clone()
    };
    Ok(MetadataRecord::CreateTopic { name: name.to_owned(), id, config: topic.config.clone(), partitions })
}

/// Decides growing a topic to `count` partitions.
pub(crate) fn create_partitions(
    image: &MetadataImage,
    topic: &TopicImage,
    count: i32,
    assignments: &[Vec<i32>],
    seed: u64,
) -> Result<MetadataRecord, Refusal> {
    let current = topic.partition_count();
    if count <= current {
        let message = format!("Topic currently has {current} partitions, which is higher than the requested {count}.");
        return Err(Refusal::new(ResponseError::InvalidPartitions, message));
    }
    if count > PARTITION_COUNT_MAX {
        return Err(Refusal::new(ResponseError::InvalidPartitions, format!("{count} partitions is too many")));
    }
    let added = count - current;
    let replicas = if assignments.is_empty() {
        let factor = topic.partitions.first().map_or(1, |partition| partition.replicas.len());
        let brokers = placeable_brokers(image);
        check_replication_factor(factor as i16, brokers.len())?;
        assign_replicas(&brokers, added, factor, current, seed)
    } else {
        if assignments.len() != added as usize {
            let message = format!(
                "Increasing the number of partitions by {added} but {} assignments provided.",
                assignments.len()
            );
            return Err(Refusal::new(ResponseError::InvalidReplicaAssignment, message));
        }
        check_assignments(image, assignments)?;
        assignments.to_vec()
    };
    let partitions =
        replicas.into_iter().enumerate().map(|(offset, replicas)| (current + offset as i32, replicas)).collect();
    Ok(MetadataRecord::CreatePartitions { id: topic.id, partitions })
}

/// Brokers replicas may be placed on: registered and not fenced, in id order.
fn placeable_brokers(image: &MetadataImage) -> Vec<i32> {
    image.live_brokers().map(|broker| broker.node_id).collect()
}

fn check_replication_factor(factor: i16, broker_count: usize) -> Result<(), Refusal> {
    if factor < 1 {
        return Err(Refusal::new(ResponseError::InvalidReplicationFactor, "Replication factor must be larger than 0."));
    }
    if factor as usize > broker_count {
        let message = format!(
            "Unable to replicate the partition {factor} time(s): The target replication factor of {factor} cannot be \
             reached because only {broker_count} broker(s) are registered."
        );
        return Err(Refusal::new(ResponseError::InvalidReplicationFactor, message));
    }
    Ok(())
}

/// Manual assignments: every list non-empty, the same length, without repeats, on registered
/// brokers.
fn check_assignments(image: &MetadataImage, assignments: &[Vec<i32>]) -> Result<(), Refusal> {
    let invalid = |message: String| Err(Refusal::new(ResponseError::InvalidReplicaAssignment, message));
    let factor = assignments.first().map_or(0, Vec::len);
    for (index, replicas) in assignments.iter().enumerate() {
        if replicas.is_empty() || replicas.len() != factor {
            return invalid(format!(
                "partition {index} has {} replicas; every partition needs {factor}",
                replicas.len()
            ));
        }
        if replicas.iter().collect::<BTreeSet<_>>().len() != replicas.len() {
            return invalid(format!("partition {index} lists a broker twice: {replicas:?}"));
        }
        if let Some(unknown) = replicas.iter().find(|node| !image.brokers.contains_key(node)) {
            return invalid(format!("partition {index} is assigned to broker {unknown}, which is not registered"));
        }
    }
    Ok(())
}

/// Kafka's rack-unaware placement of `count` partitions numbered from `first_partition`, each
/// with `factor` replicas, over `brokers` (sorted, at least `factor` of them).
pub(crate) fn assign_replicas(
    brokers: &[i32],
    count: i32,
    factor: usize,
    first_partition: i32,
    seed: u64,
) -> Vec<Vec<i32>> {
    assert!(factor >= 1 && factor <= brokers.len(), "the replication factor was checked against the brokers");
    let broker_count = brokers.len();
    let start = (seed % broker_count as u64) as usize;
    let mut shift = ((seed >> 32) % broker_count as u64) as usize;
    (first_partition..first_partition + count)
        .map(|partition| {
            let partition = partition as usize;
            if partition > 0 && partition.is_multiple_of(broker_count) {
                shift += 1;
            }
            let first = (partition + start) % broker_count;
            let mut replicas = vec![brokers[first]];
            for replica in 0..factor - 1 {
                let step = 1 + (shift + replica) % (broker_count - 1).max(1);
                replicas.push(brokers[(first + step) % broker_count]);
            }
            replicas
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::image::BrokerRegistration;
    use super::*;

    fn image_with_brokers(ids: &[i32]) -> MetadataImage {
        let mut image = MetadataImage::new("c".to_owned());
        for id in ids {
            image.apply(&MetadataRecord::RegisterBroker(BrokerRegistration {
                node_id: *id,
                incarnation: 1,
                host: "h".to_owned(),
                port: 1,
                rack: None,
                fenced: false,
                clean_restart: true,
                listeners: Vec::new(),
            }));
        }
        image
    }

    fn new_topic(name: &str, count: Option<i32>, factor: Option<i16>) -> NewTopic {
        NewTopic {
            name: name.to_owned(),
            partition_count: count,
            replication_factor: factor,
            assignments: Vec::new(),
            config: TopicConfig::default(),
        }
    }

    const DEFAULTS: Defaults = Defaults { partition_count: 3, replication_factor: 1 };

    #[test]
    fn placement_spreads_leaders_and_never_repeats_a_broker() {
        let brokers = [1, 2, 3];
        for seed in 0..20u64 {
            let assignment = assign_replicas(&brokers, 6, 3, 0, seed * 0x1_0000_0001);
            let mut leaders = [0usize; 4];
            for replicas in &assignment {
                assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3, "{replicas:?}");
                leaders[replicas[0] as usize] += 1;
            }
            assert_eq!(&leaders[1..], &[2, 2, 2], "leaders are spread evenly");
        }
    }

    #[test]
    fn replication_factor_above_the_brokers_is_refused() {
        let image = image_with_brokers(&[1]);
        let refused = create_topic(&image, &new_topic("t", None, Some(3)), TopicId([1; 16]), DEFAULTS, 7);
        assert!(matches!(refused, Err(Refusal { error: ResponseError::InvalidReplicationFactor, .. })));
        let created = create_topic(&image, &new_topic("t", None, None), TopicId([1; 16]), DEFAULTS, 7);
        assert!(matches!(created, Ok(MetadataRecord::CreateTopic { ref partitions, .. }) if partitions.len() == 3));
    }

    #[test]
    fn existing_topics_bad_names_and_counts_are_refused() {
        let mut image = image_with_brokers(&[1]);
        let record =
            create_topic(&image, &new_topic("t", Some(1), None), TopicId([1; 16]), DEFAULTS, 0).expect("create");
        image.apply(&record);
        let refusal =
            |topic: NewTopic| create_topic(&image, &topic, TopicId([2; 16]), DEFAULTS, 0).expect_err("refused").error;
        assert_eq!(refusal(new_topic("t", Some(1), None)), ResponseError::TopicAlreadyExists);
        assert_eq!(refusal(new_topic("bad/name", Some(1), None)), ResponseError::InvalidTopicException);
        assert_eq!(refusal(new_topic("u", Some(0), None)), ResponseError::InvalidPartitions);
        let mut manual = new_topic("v", None, None);
        manual.assignments = vec![vec![1], vec![2]];
        assert_eq!(refusal(manual), ResponseError::InvalidReplicaAssignment, "broker 2 is not registered");
    }

    #[test]
    fn partitions_only_grow_and_keep_the_replication_factor() {
        let mut image = image_with_brokers(&[1, 2, 3]);
        let record =
            create_topic(&image, &new_topic("t", Some(2), Some(2)), TopicId([1; 16]), DEFAULTS, 0).expect("create");
        image.apply(&record);
        let topic = image.topic("t").expect("created").clone();
        assert!(matches!(
            create_partitions(&image, &topic, 2, &[], 0),
            Err(Refusal { error: ResponseError::InvalidPartitions, .. })
        ));
        let grown = create_partitions(&image, &topic, 5, &[], 0).expect("grow");
        let MetadataRecord::CreatePartitions { partitions, .. } = &grown else { panic!("a CreatePartitions record") };
        assert_eq!(partitions.iter().map(|(index, _)| *index).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert!(partitions.iter().all(|(_, replicas)| replicas.len() == 2));
    }
}
