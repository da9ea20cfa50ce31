//! Where a single broker keeps its metadata: the image, written whole and atomically to
//! `metadata.json` in the data directory after every change.
//!
//! Admin changes are rare and small next to data traffic, so rewriting the image (a few hundred
//! bytes per topic) with two fsyncs per change costs nothing that matters, and there is no log to
//! compact. A data directory from before the metadata moved out of the engine has no such file:
//! its image is built once from the engine's catalog of topics, ids and configs, every partition
//! led by this broker.
//!
//! Touched only by the metadata writer, under its lock.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_engine::Engine;

use super::image::{MetadataImage, PartitionState};
use super::records::MetadataRecord;

/// The image file's name in the data directory.
pub(crate) const FILE_NAME: &str = "metadata.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct StoredImage {
    version: u32,
    image: MetadataImage,
}

/// Why the stored image could not be used.
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
    #[error("{path}: this data directory belongs to cluster {stored}, not {wanted}")]
    OtherCluster { path: PathBuf, stored: String, wanted: String },
}

/// The single broker's metadata file.
#[derive(Debug)]
pub(crate) struct LocalStore {
    path: PathBuf,
}

impl LocalStore {
    /// Loads the image from `data_dir`, or builds the first one: from the engine's topics when
    /// the directory predates the file, empty otherwise.
    pub(crate) fn open(
        data_dir: &Path,
        cluster_id: &str,
        node_id: i32,
        engine: &Engine,
    ) -> Result<(Self, MetadataImage), StoreError> {
        let path = data_dir.join(FILE_NAME);
        let store = Self { path: path.clone() };
        let image = match std::fs::read(&path) {
            Ok(bytes) => {
                let stored: StoredImage = serde_json::from_slice(&bytes)
                    .map_err(|error| StoreError::Unreadable { path: path.clone(), reason: error.to_string() })?;
                if stored.version != FORMAT_VERSION {
                    let reason = format!("format version {}", stored.version);
                    return Err(StoreError::Unreadable { path, reason });
                }
                if stored.image.cluster_id != cluster_id {
                    let stored = stored.image.cluster_id;
                    return Err(StoreError::OtherCluster { path, stored, wanted: cluster_id.to_owned() });
                }
                stored.image
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let image = bootstrap(cluster_id, node_id, engine);
                store.write(&image)?;
                image
            }
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        Ok((store, image))
    }

    /// Applies `records` to a copy of `image` and persists the result before returning it.
    pub(crate) async fn commit(
        &self,
        image: &MetadataImage,
        records: &[MetadataRecord],
    ) -> Result<MetadataImage, StoreError> {
        let mut next = image.clone();
        for record in records {
            next.apply(record);
        }
        let bytes = encode(&next);
        let path = self.path.clone();
        sluice_engine::io::on_own_thread(move || sluice_engine::io::write_atomic(&path, &bytes))
            .await
            .map_err(|source| StoreError::Io { path: self.path.clone(), source })?;
        Ok(next)
    }

    fn write(&self, image: &MetadataImage) -> Result<(), StoreError> {
        sluice_engine::io::write_atomic(&self.path, &encode(image))
            .map_err(|source| StoreError::Io { path: self.path.clone(), source })
    }
}

fn encode(image: &MetadataImage) -> Vec<u8> {
    let stored = StoredImage { version: FORMAT_VERSION, image: image.clone() };
    serde_json::to_vec(&stored).expect("the image holds only plain data")
}

/// The first image of a data directory: its engine's topics, each partition on this broker.
fn bootstrap(cluster_id: &str, node_id: i32, engine: &Engine) -> MetadataImage {
    let mut image = MetadataImage::new(cluster_id.to_owned());
    for topic in engine.topics() {
        let count = topic.partitions.keys().next_back().map_or(0, |last| last + 1);
        let record = MetadataRecord::CreateTopic {
            name: topic.name.to_string(),
            id: topic.id,
            config: topic.config.clone(),
            partitions: (0..count).map(|_| vec![node_id]).collect(),
        };
        image.apply(&record);
        tracing::info!(topic = %topic.name, partitions = count, "metadata: adopted a topic of the data directory");
    }
    debug_assert!(
        image.topics().all(|topic| topic.partitions.iter().all(|p| *p == PartitionState::new(vec![node_id])))
    );
    image
}
