//! The topic catalog: names, ids, partition placement and per-topic config.
//!
//! An immutable snapshot swapped atomically on every change (`arc_swap`), so readers on any
//! thread look topics up without locks; writers are serialized by the engine's admin lock. The
//! catalog persists as `meta.json` in the data directory, written atomically.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use event_listener::{Event, EventListener};
use serde::{Deserialize, Serialize};

use crate::config::TopicConfig;
use crate::types::{ShardId, TopicId, TopicPartition};

/// The metadata file's name inside the data directory.
pub(crate) const META_FILE_NAME: &str = "meta.json";
const META_VERSION: u32 = 1;

/// A topic as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: Arc<str>,
    /// Topic id.
    pub id: TopicId,
    /// Number of partitions.
    pub partition_count: i32,
    /// Topic config.
    pub config: TopicConfig,
    /// Owning shard of each partition, by partition index.
    pub shards: Vec<ShardId>,
}

/// A topic plus the per-partition "new data" events readers wait on.
#[derive(Debug)]
pub(crate) struct TopicEntry {
    pub(crate) info: TopicInfo,
    pub(crate) events: Vec<Arc<Event>>,
}

/// One immutable catalog snapshot.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    topics: BTreeMap<Arc<str>, Arc<TopicEntry>>,
}

#[derive(Serialize, Deserialize)]
struct MetaFile {
    version: u32,
    topics: Vec<MetaTopic>,
}

#[derive(Serialize, Deserialize)]
struct MetaTopic {
    name: String,
    id: String,
    shards: Vec<u16>,
    config: TopicConfig,
}

fn parse_topic_id(text: &str) -> Option<TopicId> {
    if text.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (index, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(TopicId(id))
}

impl Catalog {
    /// Every topic, sorted by name.
    pub(crate) fn topics(&self) -> Vec<TopicInfo> {
        self.topics.values().map(|entry| entry.info.clone()).collect()
    }

    pub(crate) fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.topics.get(name).map(|entry| entry.info.clone())
    }

    pub(crate) fn entry(&self, name: &str) -> Option<&Arc<TopicEntry>> {
        self.topics.get(name)
    }

    pub(crate) fn topic_by_id(&self, id: TopicId) -> Option<TopicInfo> {
        self.topics.values().find(|entry| entry.info.id == id).map(|entry| entry.info.clone())
    }

    pub(crate) fn shard_of(&self, partition: &TopicPartition) -> Option<ShardId> {
        let entry = self.topics.get(&partition.topic)?;
        let index = usize::try_from(partition.partition.0).ok()?;
        entry.info.shards.get(index).copied()
    }

    pub(crate) fn event(&self, partition: &TopicPartition) -> Option<Arc<Event>> {
        let entry = self.topics.get(&partition.topic)?;
        let index = usize::try_from(partition.partition.0).ok()?;
        entry.events.get(index).cloned()
    }

    pub(crate) fn listen(&self, partition: &TopicPartition) -> Option<EventListener> {
        self.event(partition).map(|event| event.listen())
    }

    /// A copy with `info` added or replaced, keeping the existing partitions' events.
    pub(crate) fn with_topic(&self, info: TopicInfo) -> Catalog {
        let mut topics = self.topics.clone();
        let mut events = topics.get(&info.name).map(|entry| entry.events.clone()).unwrap_or_default();
        events.resize_with(info.shards.len(), || Arc::new(Event::new()));
        topics.insert(info.name.clone(), Arc::new(TopicEntry { info, events }));
        Catalog { topics }
    }

    /// A copy without topic `name`.
    pub(crate) fn without_topic(&self, name: &str) -> Catalog {
        let mut topics = self.topics.clone();
        topics.remove(name);
        Catalog { topics }
    }

    /// Serializes the catalog for `meta.json`.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let meta = MetaFile {
            version: META_VERSION,
            topics: self
                .topics
                .values()
                .map(|entry| MetaTopic {
                    name: entry.info.name.to_string(),
                    id: entry.info.id.to_string(),
                    shards: entry.info.shards.iter().map(|shard| shard.0).collect(),
                    config: entry.info.config.clone(),
                })
                .collect(),
        };
        serde_json::to_vec_pretty(&meta).expect("the catalog holds only serializable plain data")
    }

    /// Loads `meta.json`, re-placing partitions whose recorded shard no longer exists.
    /// A missing file is an empty catalog.
    pub(crate) fn load(path: &Path, shard_count: u16) -> Result<Catalog, String> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Catalog::default()),
            Err(error) => return Err(error.to_string()),
        };
        let meta: MetaFile = serde_json::from_slice(&bytes).map_err(|error| error.to_string())?;
        if meta.version != META_VERSION {
            return Err(format!("unsupported metadata version {}", meta.version));
        }
        let mut catalog = Catalog::default();
        for topic in meta.topics {
            let id = parse_topic_id(&topic.id).ok_or_else(|| format!("bad topic id {:?}", topic.id))?;
            let shards = topic
                .shards
                .iter()
                .enumerate()
                .map(|(index, shard)| {
                    if *shard < shard_count {
                        ShardId(*shard)
                    } else {
                        crate::placement::place(&topic.name, index as i32, shard_count)
                    }
                })
                .collect::<Vec<_>>();
            let info = TopicInfo {
                name: Arc::from(topic.name.as_str()),
                id,
                partition_count: shards.len() as i32,
                config: topic.config,
                shards,
            };
            catalog = catalog.with_topic(info);
        }
        Ok(catalog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, shards: &[u16]) -> TopicInfo {
        TopicInfo {
            name: Arc::from(name),
            id: TopicId([7; 16]),
            partition_count: shards.len() as i32,
            config: TopicConfig::default(),
            shards: shards.iter().copied().map(ShardId).collect(),
        }
    }

    #[test]
    fn json_round_trip_keeps_topics() {
        let dir = tempfile::tempdir().expect("temp dir");
        let catalog = Catalog::default().with_topic(info("a", &[0, 1])).with_topic(info("b", &[1]));
        let path = dir.path().join(META_FILE_NAME);
        std::fs::write(&path, catalog.to_json()).expect("write");
        let loaded = Catalog::load(&path, 2).expect("load");
        assert_eq!(loaded.topics(), catalog.topics());
    }

    #[test]
    fn fewer_shards_replace_missing_placements() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(META_FILE_NAME);
        std::fs::write(&path, Catalog::default().with_topic(info("a", &[0, 3])).to_json()).expect("write");
        let loaded = Catalog::load(&path, 2).expect("load");
        let topic = loaded.topic("a").expect("topic");
        assert_eq!(topic.shards[0], ShardId(0));
        assert!(topic.shards[1].0 < 2);
    }
}
