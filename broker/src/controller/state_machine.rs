//! The metadata log's state machine: the metadata image, built by applying each committed batch
//! of records, with snapshots that bound the log.
//!
//! Every node of the quorum (voters and learners alike) applies the same entries in the same
//! order, so every broker builds the same image. After each apply the new image is handed to
//! the broker's publisher (`super::publish`), which brings the broker in line with it; the
//! state machine never waits for that.
//!
//! A snapshot is the serialized image with openraft's metadata, kept in `snapshot` in the
//! metadata directory as two checksummed frames (the same framing as the log). openraft builds
//! one every so many entries and purges the log below it; a node far behind installs the
//! leader's. Touched only by the controller thread.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use futures_util::{Stream, StreamExt as _};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};

use super::log_store::{get_frame, put_frame, read_optional, write_atomic};
use super::types::{Applied, LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig};
use crate::metadata::MetadataImage;

const SNAPSHOT_FILE: &str = "snapshot";

/// The image as applied, with its place in the log, shared with the publisher.
#[derive(Debug, Default)]
pub(crate) struct AppliedImage {
    pub(crate) image: Arc<MetadataImage>,
    /// The index of the last entry applied (0 before any).
    pub(crate) index: u64,
}

/// Where the state machine hands each new image; the publisher takes the latest.
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    pub(crate) latest: RefCell<AppliedImage>,
    pub(crate) changed: event_listener::Event,
}

/// What the state machine holds.
#[derive(Debug, Clone, Default)]
struct State {
    image: MetadataImage,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// The state machine.
#[derive(Debug)]
pub(crate) struct StateMachine {
    dir: PathBuf,
    state: State,
    handoff: Rc<Handoff>,
    /// The last log id of the snapshot on disk: a builder never replaces a newer one.
    on_disk: Rc<RefCell<Option<LogId>>>,
}

/// Builds a snapshot from a copy of the state taken when openraft asked for a builder.
#[derive(Debug)]
pub(crate) struct SnapshotBuilder {
    dir: PathBuf,
    state: State,
    on_disk: Rc<RefCell<Option<LogId>>>,
}

fn invalid(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

fn decode_snapshot(bytes: &[u8]) -> io::Result<(SnapshotMeta, Vec<u8>)> {
    let (meta, next) = get_frame(bytes, 0).ok_or_else(|| invalid("torn or corrupt snapshot"))?;
    let (data, _) = get_frame(bytes, next).ok_or_else(|| invalid("torn or corrupt snapshot"))?;
    Ok((serde_json::from_slice(meta).map_err(invalid)?, data.to_vec()))
}

/// Writes a snapshot unless the one on disk is at least as new; returns whether it wrote.
async fn persist_snapshot(
    dir: &Path,
    on_disk: &RefCell<Option<LogId>>,
    meta: &SnapshotMeta,
    data: &[u8],
) -> io::Result<bool> {
    if on_disk.borrow().is_some() && *on_disk.borrow() >= meta.last_log_id {
        return Ok(false);
    }
    let mut bytes = Vec::with_capacity(data.len() + 256);
    put_frame(&mut bytes, &serde_json::to_vec(meta).map_err(invalid)?);
    put_frame(&mut bytes, data);
    write_atomic(dir, SNAPSHOT_FILE, bytes).await?;
    *on_disk.borrow_mut() = meta.last_log_id;
    Ok(true)
}

impl StateMachine {
    /// A state machine over `dir`; openraft restores it from the snapshot there when it starts.
    pub(crate) fn open(dir: &Path, handoff: Rc<Handoff>) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let on_disk = match read_optional(dir, SNAPSHOT_FILE)? {
            Some(bytes) => decode_snapshot(&bytes)?.0.last_log_id,
            None => None,
        };
        Ok(Self { dir: dir.to_path_buf(), state: State::default(), handoff, on_disk: Rc::new(RefCell::new(on_disk)) })
    }

    /// Hands the current image to the publisher.
    fn hand_off(&self) {
        let index = self.state.last_applied.as_ref().map_or(0, openraft::LogId::index);
        *self.handoff.latest.borrow_mut() = AppliedImage { image: Arc::new(self.state.image.clone()), index };
        self.handoff.changed.notify(usize::MAX);
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let data = serde_json::to_vec(&self.state.image).map_err(invalid)?;
        let meta =
            SnapshotMeta { last_log_id: self.state.last_applied, last_membership: self.state.membership.clone() };
        persist_snapshot(&self.dir, &self.on_disk, &meta, &data).await?;
        Ok(Snapshot { meta, snapshot: data })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut applied_any = false;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id();
            match &entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    for record in &batch.records {
                        self.state.image.apply(record);
                    }
                }
                EntryPayload::Membership(membership) => {
                    self.state.membership = StoredMembership::new(Some(log_id), membership.clone());
                }
            }
            let index = log_id.index();
            self.state.last_applied = Some(log_id);
            applied_any = true;
            if let Some(responder) = responder {
                responder.send(Applied { index });
            }
        }
        if applied_any {
            self.hand_off();
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { dir: self.dir.clone(), state: self.state.clone(), on_disk: self.on_disk.clone() }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotData) -> Result<(), io::Error> {
        let image: MetadataImage = serde_json::from_slice(&snapshot).map_err(invalid)?;
        persist_snapshot(&self.dir, &self.on_disk, meta, &snapshot).await?;
        self.state = State { image, last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
        self.hand_off();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        match read_optional(&self.dir, SNAPSHOT_FILE)? {
            Some(bytes) => {
                let (meta, data) = decode_snapshot(&bytes)?;
                Ok(Some(Snapshot { meta, snapshot: data }))
            }
            None => Ok(None),
        }
    }
}
