//! # sluice-batch
//!
//! Kafka's RecordBatch v2, in one place: the fixed header (parse, validate the CRC32C, patch the
//! fields the CRC does not cover), records (walk, build, rebuild), the compression codecs as
//! Kafka frames them, a batch builder for producers, a decoder for fetched bytes, and the
//! transaction markers (control batches) a coordinator has leaders append.
//!
//! ## Design
//! Pure functions and plain types over byte slices: no I/O, no threads, no allocation beyond the
//! buffers a caller asks for (an inflated records section, a built batch). The engine stores
//! batches through [`validate`] and the patch functions and walks records only where it must
//! (compaction, the compacted-topic key check); the client builds batches with
//! [`builder::BatchBuilder`] and reads fetched ones with [`decode::BatchIter`]; the tools and the
//! fuzz targets use the same code. Every parser of untrusted bytes here is total: malformed input
//! yields an error or fewer records, never a panic, and inflation is bounded by the caller.
//!
//! The byte layout is in `engine/FORMAT.md`.
//!
//! ## Example
//! ```
//! use sluice_batch::builder::{BatchBuilder, BatchOptions, Compression, NewRecord};
//!
//! let mut builder = BatchBuilder::new(BatchOptions { compression: Compression::Zstd, ..BatchOptions::default() });
//! builder.push(&NewRecord { timestamp_ms: 1_700_000_000_000, key: Some(b"k"), value: Some(b"v"), ..NewRecord::default() })?;
//! let mut batch = builder.finish()?.to_vec();
//! sluice_batch::patch_base_offset(&mut batch, 42);
//! let header = sluice_batch::validate(&batch, true)?;
//! assert_eq!(header.last_offset(), 42);
//! let records = sluice_batch::records_section(&batch, 1 << 20)?;
//! let keys: Vec<_> = sluice_batch::decode::RecordIter::new(&header, &records).map(|record| record.map(|r| r.key)).collect::<Result<_, _>>()?;
//! assert_eq!(keys, vec![Some(&b"k"[..])]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod builder;
pub mod compression;
pub mod control;
pub mod decode;
mod header;
mod records;
mod varint;

pub use compression::{CodecError, Compression};
pub use control::{ControlBatchError, ControlType, EndTxnMarker, build_control_batch, parse_control_batch};
pub use header::{
    BatchError, BatchHeader, HEADER_SIZE_BYTES, LOG_OVERHEAD_BYTES, crc32c, parse_header, patch_base_offset,
    patch_leader_epoch, patch_log_append_time, peek_size, validate,
};
pub use records::{build_batch, build_keyed_batch, rebuild_with_records, record_timestamps, records, records_section};
