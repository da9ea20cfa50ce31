//! Producer id allocation for the idempotent producer (InitProducerId).
//!
//! Ids are unique across brokers and restarts: each broker takes blocks of ids from the active
//! controller (Kafka's AllocateProducerIds), which records every block in the metadata log
//! before handing it out. A broker that stops loses the rest of its block, never reuses an id.
//!
//! Shared by every shard thread behind an async mutex: InitProducerId is rare, never on the
//! produce path.

use crate::metadata::{Metadata, Refusal};

/// Ids taken from the controller at a time (Kafka's block size).
const BLOCK_ID_COUNT: i64 = 1000;

#[derive(Debug, Default)]
struct Block {
    next: i64,
    end: i64,
}

/// This broker's current block of producer ids.
#[derive(Debug, Default)]
pub(crate) struct ProducerIds {
    block: futures_util::lock::Mutex<Block>,
}

impl ProducerIds {
    /// Returns a producer id no broker returned before.
    ///
    /// # Errors
    /// The controller's refusal when the block is used up and no new one could be had.
    pub(crate) async fn allocate(&self, metadata: &Metadata) -> Result<i64, Refusal> {
        let mut block = self.block.lock().await;
        if block.next >= block.end {
            let (start, count) = metadata.allocate_producer_ids(BLOCK_ID_COUNT).await?;
            *block = Block { next: start, end: start + count };
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }
}
