//! `FromRawHandle` for the public types, the one place `sys` names them: implementing the
//! trait's `unsafe fn` is unsafe code, which the crate allows only in `sys`. Each impl takes
//! ownership with std's `OwnedHandle::from_raw_handle` and hands the handle to the portable,
//! safe `From<OwnedHandle>` (`crate::handles`), which does the rest. Nothing else belongs here.

use std::os::windows::io::{FromRawHandle, OwnedHandle, RawHandle};

use crate::LocalStream;

impl FromRawHandle for LocalStream {
    /// # Safety
    ///
    /// `handle` must be an open, connected named-pipe handle that nothing else owns.
    unsafe fn from_raw_handle(handle: RawHandle) -> LocalStream {
        // SAFETY: this function's contract: the caller guarantees `handle` is open and owned
        // by nobody else, so the OwnedHandle may take it over and be its only closer.
        LocalStream::from(unsafe { OwnedHandle::from_raw_handle(handle) })
    }
}
