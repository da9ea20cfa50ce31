//! What a single broker's data directory held before the controller quorum, adopted into the
//! metadata log the first time such a directory starts as a one-node quorum.
//!
//! Two older layouts exist: a `metadata.json` file holding the whole image, written after every
//! change, and before it none at all (the engine's catalog of topics, ids and configs, every
//! partition led by the broker). Producer ids were claimed in blocks recorded in
//! `broker-producer-ids`. All of it becomes records written with the cluster's first entry;
//! the old files are removed once that entry is committed.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sluice_engine::Engine;

use super::image::{MetadataImage, PartitionState};
use super::records::{MetadataRecord, PartitionRecord};

/// The image file of the single-broker layout.
const IMAGE_FILE_NAME: &str = "metadata.json";
/// The producer id claim of the single-broker layout.
const PRODUCER_IDS_FILE_NAME: &str = "broker-producer-ids";
const FORMAT_VERSION: u32 = 1;

#[derive(Deserialize)]
struct StoredImage {
    version: u32,
    image: MetadataImage,
}

/// Why an old layout could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a metadata image this version reads: {reason}")]
    Unreadable { path: PathBuf, reason: String },
}

/// The records that rebuild what `data_dir` held for broker `node_id`, empty for a new
/// directory.
///
/// # Errors
/// When an old file exists but cannot be read.
pub(crate) fn adopt(data_dir: &Path, node_id: i32, engine: &Engine) -> Result<Vec<MetadataRecord>, StoreError> {
    let image = match read_image(data_dir)? {
        Some(image) => image,
        None => from_engine(node_id, engine),
    };
    let mut records = Vec::new();
    for topic in image.topics() {
        records.push(MetadataRecord::CreateTopic {
            name: topic.name.to_string(),
            id: topic.id,
            config: topic.config.clone(),
            partitions: topic.partitions.iter().map(|state| state.replicas.clone()).collect(),
        });
        for (index, state) in topic.partitions.iter().enumerate() {
            if *state != PartitionState::new(state.replicas.clone()) {
                records.push(MetadataRecord::ChangePartition(PartitionRecord {
                    topic_id: topic.id,
                    partition: index as i32,
                    state: state.clone(),
                }));
            }
        }
    }
    let next_producer_id = image.next_producer_id.max(read_producer_ids(data_dir)?);
    if next_producer_id > 0 {
        records.push(MetadataRecord::AllocateProducerIds { next_producer_id });
    }
    Ok(records)
}

/// Removes the old files once their contents are in the metadata log.
pub(crate) fn remove_adopted(data_dir: &Path) {
    for name in [IMAGE_FILE_NAME, PRODUCER_IDS_FILE_NAME] {
        match std::fs::remove_file(data_dir.join(name)) {
            Ok(()) => tracing::info!(file = name, "metadata: removed a file the metadata log now holds"),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(file = name, %error, "metadata: cannot remove an adopted file"),
        }
    }
}

fn read_image(data_dir: &Path) -> Result<Option<MetadataImage>, StoreError> {
    let path = data_dir.join(IMAGE_FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let stored: StoredImage = serde_json::from_slice(&bytes)
                .map_err(|error| StoreError::Unreadable { path: path.clone(), reason: error.to_string() })?;
            if stored.version != FORMAT_VERSION {
                return Err(StoreError::Unreadable { path, reason: format!("format version {}", stored.version) });
            }
            Ok(Some(stored.image))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io { path, source }),
    }
}

fn read_producer_ids(data_dir: &Path) -> Result<i64, StoreError> {
    let path = data_dir.join(PRODUCER_IDS_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|next| *next >= 0)
            .ok_or_else(|| StoreError::Unreadable { path, reason: "not a non-negative integer".to_owned() }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(StoreError::Io { path, source }),
    }
}

/// The oldest layout: the engine's topics, each partition on this broker.
fn from_engine(node_id: i32, engine: &Engine) -> MetadataImage {
    let mut image = MetadataImage::default();
    for topic in engine.topics() {
        let count = topic.partitions.keys().next_back().map_or(0, |last| last + 1);
        image.apply(&MetadataRecord::CreateTopic {
            name: topic.name.to_string(),
            id: topic.id,
            config: topic.config.clone(),
            partitions: (0..count).map(|_| vec![node_id]).collect(),
        });
    }
    image
}
