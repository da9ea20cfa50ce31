//! The unsynced part of one regular file: everything the application changed since the file's
//! last fsync, held in memory above the durable bytes, which live in the file's backing file.
//!
//! What a read sees at position `p` (below the current size):
//! 1. the byte of the extent that covers `p`, if one does (written since the last fsync);
//! 2. else the backing file's byte, if `p` is below the *floor*: the lowest size the file was
//!    truncated to since the last fsync (a truncation cuts the durable bytes off: if the file grows
//!    again, the gap reads as zeros, not as the old bytes);
//! 3. else zero (a hole, or space added by extending the size).
//!
//! An fsync ([`Unsynced::sync_into`]) cuts the backing file at the floor, writes the extents into
//! it, sets its length to the current size, and empties the overlay.
//!
//! Invariants: extents are disjoint and never adjacent (a write next to one is merged into it),
//! none is empty, and all lie below `size_bytes`; `floor_bytes <= durable_size_bytes` and
//! `floor_bytes <= size_bytes`. Touched only under the volume's lock (one thread at a time).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;

/// A file's unsynced writes and truncations, over its durable bytes.
#[derive(Debug, Clone)]
pub struct Unsynced {
    /// Length of the backing file: the durable size.
    durable_size_bytes: u64,
    /// Durable bytes at and above this position no longer belong to the file (see the module doc).
    floor_bytes: u64,
    /// The size the application sees.
    size_bytes: u64,
    /// Bytes written since the last fsync: start position -> bytes.
    extents: BTreeMap<u64, Vec<u8>>,
    /// The last write since the last fsync, as (position, length), unless a truncation came
    /// after it: what a torn power-off tears. Writes that each start where the previous one
    /// ended count as one: the kernel splits one `write(2)` into several FUSE requests (the
    /// first partial page alone, then up to its request size), and a log's appends are such a run.
    last_write: Option<(u64, u64)>,
}

impl Unsynced {
    /// A file whose durable bytes are its whole content (just loaded, or just fsynced).
    pub fn new(durable_size_bytes: u64) -> Self {
        Self {
            durable_size_bytes,
            floor_bytes: durable_size_bytes,
            size_bytes: durable_size_bytes,
            extents: BTreeMap::new(),
            last_write: None,
        }
    }

    /// The size the application sees.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The size of the durable content.
    pub fn durable_size_bytes(&self) -> u64 {
        self.durable_size_bytes
    }

    /// True when nothing changed since the last fsync.
    pub fn is_clean(&self) -> bool {
        self.extents.is_empty()
            && self.size_bytes == self.durable_size_bytes
            && self.floor_bytes == self.durable_size_bytes
    }

    /// Bytes written and not yet fsynced (what a power-off drops).
    pub fn unsynced_bytes(&self) -> u64 {
        self.extents.values().map(|bytes| bytes.len() as u64).sum()
    }

    /// The last write since the last fsync, as (position, length).
    pub fn last_write(&self) -> Option<(u64, u64)> {
        self.last_write
    }

    /// Records a write of `data` at `position`, growing the size when it ends past it.
    pub fn write(&mut self, position: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let length = data.len() as u64;
        let end = position.checked_add(length).expect("the kernel bounds write positions below 2^63");
        // Start from the extent that reaches `position` (it starts at or before it and ends at or
        // after it), so that appends extend one buffer in place instead of copying it.
        let reaching = self.extents.range(..=position).next_back().map(|(&start, bytes)| (start, bytes.len() as u64));
        let (start, mut buffer) = match reaching {
            Some((start, size)) if start + size >= position => {
                (start, self.extents.remove(&start).expect("the key was just found"))
            }
            _ => (position, Vec::new()),
        };
        let relative = (position - start) as usize;
        if buffer.len() < relative + data.len() {
            buffer.resize(relative + data.len(), 0);
        }
        buffer[relative..relative + data.len()].copy_from_slice(data);
        // Absorb the extents that start inside or right after the new bytes; keep their tails.
        let absorbed: Vec<u64> = self.extents.range(start..=end).map(|(&key, _)| key).collect();
        for key in absorbed {
            let bytes = self.extents.remove(&key).expect("the key was just listed");
            let buffer_end = start + buffer.len() as u64;
            let bytes_end = key + bytes.len() as u64;
            if bytes_end > buffer_end {
                buffer.extend_from_slice(&bytes[(buffer_end - key) as usize..]);
            }
        }
        self.extents.insert(start, buffer);
        self.size_bytes = self.size_bytes.max(end);
        self.last_write = match self.last_write {
            Some((start, size)) if start + size == position => Some((start, size + length)),
            _ => Some((position, length)),
        };
        self.check_invariants();
    }

    /// Sets the size: cuts extents and durable bytes above a smaller one, or extends with zeros.
    pub fn set_len(&mut self, size_bytes: u64) {
        if size_bytes < self.size_bytes {
            let cut: Vec<u64> = self.extents.range(size_bytes..).map(|(&key, _)| key).collect();
            for key in cut {
                self.extents.remove(&key);
            }
            if let Some((&start, bytes)) = self.extents.range_mut(..size_bytes).next_back() {
                bytes.truncate((size_bytes - start).min(bytes.len() as u64) as usize);
            }
            self.floor_bytes = self.floor_bytes.min(size_bytes);
        }
        self.size_bytes = size_bytes;
        self.last_write = None;
        self.check_invariants();
    }

    /// Reads up to `length` bytes at `position` as the application sees them; `backing` holds the
    /// durable bytes (`None`: the file has no backing file yet, so no durable bytes).
    ///
    /// # Errors
    /// Reading the backing file failed.
    pub fn read(&self, backing: Option<&File>, position: u64, length: u64) -> io::Result<Vec<u8>> {
        let end = position.saturating_add(length).min(self.size_bytes);
        if position >= end {
            return Ok(Vec::new());
        }
        let mut out = vec![0u8; (end - position) as usize];
        let durable_end = end.min(self.floor_bytes);
        if let (Some(file), true) = (backing, position < durable_end) {
            read_exact_or_zeros(file, &mut out[..(durable_end - position) as usize], position)?;
        }
        let first = self.extents.range(..=position).next_back().map_or(position, |(&start, _)| start);
        for (&start, bytes) in self.extents.range(first..end) {
            let bytes_end = start + bytes.len() as u64;
            let (from, to) = (start.max(position), bytes_end.min(end));
            if from < to {
                out[(from - position) as usize..(to - position) as usize]
                    .copy_from_slice(&bytes[(from - start) as usize..(to - start) as usize]);
            }
        }
        Ok(out)
    }

    /// Makes the current content durable: cuts `backing` at the floor, writes the extents into it
    /// and sets its length to the current size. After it the overlay is empty.
    ///
    /// # Errors
    /// A write or truncation of the backing file failed; the overlay is then left as it was.
    pub fn sync_into(&mut self, backing: &File) -> io::Result<()> {
        if self.floor_bytes < self.durable_size_bytes {
            backing.set_len(self.floor_bytes)?;
        }
        for (&start, bytes) in &self.extents {
            backing.write_all_at(bytes, start)?;
        }
        if backing.metadata()?.len() != self.size_bytes {
            backing.set_len(self.size_bytes)?;
        }
        *self = Self::new(self.size_bytes);
        Ok(())
    }

    /// The bytes of the last unsynced write, as they are now (position, bytes); `None` when there
    /// is none. What a torn power-off keeps a prefix of.
    pub fn last_write_bytes(&self) -> Option<(u64, Vec<u8>)> {
        let (position, length) = self.last_write?;
        let (&start, bytes) = self.extents.range(..=position).next_back()?;
        let from = (position - start) as usize;
        let to = from + length as usize;
        assert!(to <= bytes.len(), "the last write lies inside one extent until something changes it");
        Some((position, bytes[from..to].to_vec()))
    }

    fn check_invariants(&self) {
        assert!(self.floor_bytes <= self.durable_size_bytes, "floor above the durable size");
        assert!(self.floor_bytes <= self.size_bytes, "floor above the size");
        let mut previous_end: Option<u64> = None;
        for (&start, bytes) in &self.extents {
            assert!(!bytes.is_empty(), "empty extent at {start}");
            assert!(previous_end.is_none_or(|end| end < start), "extents overlap or touch at {start}");
            previous_end = Some(start + bytes.len() as u64);
        }
        assert!(previous_end.is_none_or(|end| end <= self.size_bytes), "an extent ends past the size");
    }
}

/// Fills `out` from `file` at `position`; bytes past the file's end read as zeros.
fn read_exact_or_zeros(file: &File, out: &mut [u8], position: u64) -> io::Result<()> {
    let mut done = 0;
    while done < out.len() {
        match file.read_at(&mut out[done..], position + done as u64) {
            Ok(0) => break,
            Ok(count) => done += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    out[done..].fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backing_with(bytes: &[u8]) -> File {
        let file = tempfile::tempfile().unwrap();
        file.write_all_at(bytes, 0).unwrap();
        file
    }

    fn read_all(content: &Unsynced, backing: &File) -> Vec<u8> {
        content.read(Some(backing), 0, u64::MAX).unwrap()
    }

    #[test]
    fn reads_show_writes_over_durable_bytes() {
        let backing = backing_with(b"abcdef");
        let mut content = Unsynced::new(6);
        content.write(2, b"XY");
        content.write(8, b"Z");
        assert_eq!(read_all(&content, &backing), b"abXYef\0\0Z");
        assert_eq!(content.size_bytes(), 9);
    }

    #[test]
    fn a_truncation_hides_durable_bytes_when_the_file_grows_again() {
        let backing = backing_with(b"abcdef");
        let mut content = Unsynced::new(6);
        content.set_len(2);
        content.write(4, b"Q");
        assert_eq!(read_all(&content, &backing), b"ab\0\0Q");
    }

    #[test]
    fn appends_merge_into_one_extent() {
        let mut content = Unsynced::new(0);
        for index in 0..100u8 {
            content.write(u64::from(index) * 3, &[index; 3]);
        }
        assert_eq!(content.extents.len(), 1);
        assert_eq!(content.unsynced_bytes(), 300);
    }

    #[test]
    fn a_write_spanning_several_extents_keeps_their_outer_bytes() {
        let mut content = Unsynced::new(0);
        content.write(0, b"aaaa");
        content.write(6, b"bbbb");
        content.write(12, b"cccc");
        content.write(2, b"XXXXXXXXXXX");
        assert_eq!(content.read(None, 0, 100).unwrap(), b"aaXXXXXXXXXXXccc");
        assert_eq!(content.extents.len(), 1);
    }

    #[test]
    fn sync_makes_the_backing_file_equal_to_what_reads_see() {
        let backing = backing_with(b"0123456789");
        let mut content = Unsynced::new(10);
        content.write(8, b"ab");
        content.set_len(4);
        content.write(6, b"xyz");
        let expected = read_all(&content, &backing);
        content.sync_into(&backing).unwrap();
        assert!(content.is_clean());
        let mut on_disk = vec![0u8; 9];
        backing.read_exact_at(&mut on_disk, 0).unwrap();
        assert_eq!(on_disk, expected);
        assert_eq!(backing.metadata().unwrap().len(), 9);
    }

    #[test]
    fn the_last_write_is_the_last_contiguous_run_until_a_truncation() {
        let mut content = Unsynced::new(0);
        content.write(0, b"hello");
        assert_eq!(content.last_write_bytes(), Some((0, b"hello".to_vec())));
        content.write(6, b"world");
        assert_eq!(content.last_write_bytes(), Some((6, b"world".to_vec())));
        content.write(11, b"!");
        assert_eq!(content.last_write_bytes(), Some((6, b"world!".to_vec())), "a contiguous run is one write");
        content.set_len(3);
        assert_eq!(content.last_write_bytes(), None);
    }
}
