//! `FromRawFd` for the public types, the one place `sys` names them: implementing the
//! trait's `unsafe fn` is unsafe code, which the crate allows only in `sys`. Each impl takes
//! ownership with std's `OwnedFd::from_raw_fd` and hands the descriptor to the portable, safe
//! `From<OwnedFd>` (`crate::handles`), which does the rest. Nothing else belongs here.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::{LocalListener, LocalStream};

impl FromRawFd for LocalStream {
    /// # Safety
    ///
    /// `fd` must be an open, connected `AF_UNIX` stream socket that nothing else owns.
    unsafe fn from_raw_fd(fd: RawFd) -> LocalStream {
        // SAFETY: this function's contract: the caller guarantees `fd` is open and owned by
        // nobody else, so the OwnedFd may take it over and be its only closer.
        LocalStream::from(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

impl FromRawFd for LocalListener {
    /// # Safety
    ///
    /// `fd` must be an open, listening `AF_UNIX` stream socket that nothing else owns.
    unsafe fn from_raw_fd(fd: RawFd) -> LocalListener {
        // SAFETY: this function's contract: the caller guarantees `fd` is open and owned by
        // nobody else, so the OwnedFd may take it over and be its only closer.
        LocalListener::from(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}
