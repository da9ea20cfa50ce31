//! The process's global allocator: the system allocator, except that very large allocations
//! reserve address space lazily instead of committing memory up front.
//!
//! Why: `kafka-protocol` sizes every array it decodes from the count on the wire before reading
//! a single element (`Vec::with_capacity(count)`). A 20-byte request announcing 2^31 topics
//! asks for ~150 GB; the system allocator refuses, and an allocation failure aborts the whole
//! process. Here such a request gets a `MAP_NORESERVE` mapping instead: nothing is touched, the
//! decoder runs out of bytes after the first few elements and fails, and the mapping is freed.
//! The connection closes; the broker keeps serving. (Rejected alternatives: re-implementing the
//! decoders with bounded arrays duplicates the codec; a pre-pass cannot tell array counts from
//! other integers without the schema.)
//!
//! Allocations of at least [`RESERVE_THRESHOLD_BYTES`] never happen on a healthy broker (requests
//! are at most `socket.request.max.bytes`, 100 MiB by default), so this path costs nothing.
//! Touching more of a reservation than the host has behaves as any overcommitted memory does.
//! Any thread may allocate.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are lazily reserved mappings.
pub const RESERVE_THRESHOLD_BYTES: usize = 1 << 30;
/// Mappings are page aligned; larger alignments go to the system allocator.
const PAGE_SIZE_BYTES: usize = 4096;

/// The system allocator with lazy reservations for huge allocations.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReservingAllocator;

fn is_reserved(layout: Layout) -> bool {
    layout.size() >= RESERVE_THRESHOLD_BYTES && layout.align() <= PAGE_SIZE_BYTES
}

fn reserve(size_bytes: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches no
    // existing memory; the arguments are valid for any size, and failure is reported as
    // MAP_FAILED, checked below.
    let mapped = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size_bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if mapped == libc::MAP_FAILED { std::ptr::null_mut() } else { mapped.cast() }
}

// SAFETY: every pointer handed out is either the system allocator's (for layouts that are not
// reserved) or a fresh page-aligned mapping of at least `layout.size()` bytes (for reserved
// layouts, whose alignment is at most a page). `is_reserved` depends only on the layout, and the
// caller passes the same layout to `dealloc`, so each pointer returns to the allocator that
// made it. Anonymous mappings are zero-filled, which `alloc_zeroed` relies on.
unsafe impl GlobalAlloc for ReservingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_reserved(layout) {
            return reserve(layout.size());
        }
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_reserved(layout) {
            return reserve(layout.size());
        }
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_reserved(layout) {
            // SAFETY: `ptr` came from `reserve(layout.size())` (same layout, see above) and is
            // not used after this call.
            let result = unsafe { libc::munmap(ptr.cast(), layout.size()) };
            assert_eq!(result, 0, "unmapping a reservation this allocator made");
            return;
        }
        // SAFETY: `ptr` came from the system allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded up to `layout.align()`, does not
        // overflow `isize`, which is what `from_size_align_unchecked` requires.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_reserved(layout) && !is_reserved(new_layout) {
            // SAFETY: both layouts belong to the system allocator; the contract passes through.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_layout` is valid (above) and non-zero sized (the caller's contract).
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both blocks are live, distinct, and at least this long.
            unsafe { std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size)) };
            // SAFETY: `ptr` was allocated by this allocator with `layout`, and is not used again.
            unsafe { self.dealloc(ptr, layout) };
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_allocation_is_reserved_not_committed() {
        let allocator = ReservingAllocator;
        // 1 TiB: far more than any test host has.
        let layout = Layout::from_size_align(1 << 40, 8).expect("valid layout");
        // SAFETY: the layout is non-zero sized; the block is freed with the same layout.
        unsafe {
            let block = allocator.alloc(layout);
            assert!(!block.is_null());
            block.write(7);
            assert_eq!(block.read(), 7);
            allocator.dealloc(block, layout);
        }
    }

    #[test]
    fn growing_past_the_threshold_keeps_the_contents() {
        let allocator = ReservingAllocator;
        let small = Layout::from_size_align(16, 8).expect("valid layout");
        // SAFETY: non-zero sized layouts; each block is freed once with the layout it has.
        unsafe {
            let block = allocator.alloc(small);
            block.write_bytes(3, 16);
            let grown = allocator.realloc(block, small, RESERVE_THRESHOLD_BYTES);
            assert!(!grown.is_null());
            assert_eq!(grown.add(15).read(), 3);
            let large = Layout::from_size_align(RESERVE_THRESHOLD_BYTES, 8).expect("valid layout");
            allocator.dealloc(grown, large);
        }
    }
}
