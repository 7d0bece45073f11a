//! The shared-memory mapping and its accesses, the same on every OS: only how a mapping is
//! made and unmapped differs, and that stays in each backend's `shm.rs` (`mmap`/`munmap` on
//! Unix, `MapViewOfFile`/`UnmapViewOfFile` on Windows, each with the `Drop` of [`Mapping`]).
//!
//! # What is sound about touching memory the peer can write
//!
//! The peer process maps the same pages and may write any byte at any moment (a hostile peer
//! does). So no Rust reference to plain bytes of the mapping (`&u8`, `&[u8]`, `&mut [u8]`) is
//! ever made: a reference promises the compiler that nobody else changes the memory while it
//! lives, which the peer can break. Instead:
//!
//! - control words (ring indices, flags) are read and written only as atomics
//!   (`AtomicU64`/`AtomicU32`/`AtomicU8`), which are allowed to change under us at any time;
//! - data bytes are moved with raw-pointer copies (`ptr::copy_nonoverlapping`) between the
//!   mapping and the caller's own buffer. A byte the peer changes during the copy just arrives
//!   with an arbitrary value, and every `u8` value is valid: the caller treats them as untrusted
//!   input, exactly like bytes read from a socket;
//! - the zero-copy view hands out `&[AtomicU8]` only, for the same reason.
//!
//! The mapping never shrinks under us (which would turn an access into a fault): each backend
//! makes sure of that before it builds a [`Mapping`] (see [`Mapping::from_raw_parts`]).

use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};

/// A shared read/write mapping of a memory object, unmapped on drop (by the backend's `Drop`).
///
/// Invariant: `ptr` is the start of a live, page-aligned (or more: Windows views are 64 KiB
/// aligned), shared, read/write mapping of at least `len` bytes of an object that cannot
/// shrink, committed (or, on Windows, checked to be before any access: `open_handle` drops a
/// view that is not, untouched); it stays mapped until the value is dropped, and only the drop
/// unmaps it.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; all accesses through it are atomic
// or raw copies that tolerate concurrent writers (see the module docs), so sharing it between
// threads adds nothing the peer process cannot already do.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` hands out only atomics (`&AtomicU64`/`&AtomicU32`/`&[AtomicU8]`) and
// raw copies, which tolerate concurrent access from other threads as they do from the peer;
// no `&self` method gives out a non-atomic reference into the mapping.
unsafe impl Sync for Mapping {}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

impl Mapping {
    /// Takes over a mapping the backend just made.
    ///
    /// # Safety
    ///
    /// `ptr` must satisfy the type's invariant for `len` bytes: the start of a live, page
    /// aligned, shared read/write mapping of at least `len` bytes of an object that cannot
    /// shrink (sealed, sized once, or a pagefile section), committed or checked to be before
    /// any access, owned by nothing else, which the backend's `Drop` for `Mapping` unmaps.
    pub(crate) unsafe fn from_raw_parts(ptr: NonNull<u8>, len: usize) -> Mapping {
        Mapping { ptr, len }
    }

    /// The start of the mapping, for the backend's `Drop` and checks (never dereferenced as
    /// plain bytes).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Its length in bytes.
    #[cfg_attr(windows, allow(dead_code))] // the Unix unmap and the fuzz entry points
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Panics unless `[offset, offset + len)` lies in the mapping and `offset` is aligned to
    /// `align`. The callers compute every offset from validated values; this is the last line.
    fn check(&self, offset: usize, len: usize, align: usize) {
        assert!(
            offset % align == 0 && offset <= self.len && len <= self.len - offset,
            "shared memory access out of bounds"
        );
    }

    /// The 64-bit control word at `offset`.
    pub(crate) fn u64_at(&self, offset: usize) -> &AtomicU64 {
        self.check(offset, 8, 8);
        // SAFETY: in bounds and 8-aligned (checked; the mapping starts page aligned); the
        // memory lives as long as `&self`; every access to it, ours and (by contract) the
        // peer's, is atomic, and atomics may be changed concurrently by anyone.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// The 32-bit control word at `offset`.
    pub(crate) fn u32_at(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4, 4);
        // SAFETY: in bounds and 4-aligned (checked; the mapping starts page aligned); the
        // memory lives as long as `&self`; every access to it, ours and (by contract) the
        // peer's, is atomic, and atomics may be changed concurrently by anyone.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// `len` data bytes at `offset`, as atomics: the only shared view of data bytes handed out.
    pub(crate) fn bytes_at(&self, offset: usize, len: usize) -> &[AtomicU8] {
        self.check(offset, len, 1);
        // SAFETY: in bounds (checked), alignment 1, lives as long as `&self`; `AtomicU8` has
        // the layout of `u8` and may be changed concurrently by the peer.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset).cast::<AtomicU8>(), len) }
    }

    /// Copies `dst.len()` bytes at `offset` out of the mapping into `dst`.
    pub(crate) fn copy_out(&self, offset: usize, dst: &mut [u8]) {
        self.check(offset, dst.len(), 1);
        // SAFETY: the source is in bounds (checked) of a live, committed mapping; `dst` is our
        // own buffer and cannot overlap the mapping (no reference into the mapping is ever
        // created). If the peer writes the source concurrently, the copied bytes are arbitrary
        // values, which every `u8` may hold; they are handed on as untrusted data, never
        // interpreted.
        unsafe {
            ptr::copy_nonoverlapping(self.ptr.as_ptr().add(offset), dst.as_mut_ptr(), dst.len())
        };
    }

    /// Copies `src` into the mapping at `offset`.
    pub(crate) fn copy_in(&self, offset: usize, src: &[u8]) {
        self.check(offset, src.len(), 1);
        // SAFETY: the destination is in bounds (checked) of a live, committed read/write
        // mapping and cannot overlap `src` (no reference into the mapping exists); concurrent
        // writes by the peer can only change what it will read, not our memory.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len()) };
    }
}
