//! `shutdown` on a pipe end, one policy for the blocking and the async streams (which differ
//! only in how they wait for the flush): named pipes have no half-close, so it is made of
//! flags and, on the server end, a flush and a disconnect.
//!
//! - `Read`: later reads return EOF (`Ok(0)`).
//! - `Write` and `Both`: later writes fail with `BrokenPipe`. On the server end, wait until
//!   the client has read everything (`FlushFileBuffers`, bounded by the blocking stream's write
//!   timeout: `TimedOut`, or `WouldBlock` in non-blocking mode, nothing discarded), then
//!   `DisconnectNamedPipe`, so the client reads EOF (and this end's reads too). On the client
//!   end nothing else happens (the server sees EOF when the client's handles are closed).
//!
//! A disconnected client's next read fails with `ERROR_PIPE_NOT_CONNECTED` (233), which
//! localsock (and interprocess) read as EOF, but std's `File`, tokio and mio map only
//! `ERROR_BROKEN_PIPE` (109) to EOF. Only closing every handle of the server end gives 109, and
//! `shutdown` takes `&self` (the handle may be borrowed or cloned), so it cannot close:
//! dropping the stream is the way to give every client a plain EOF (data written before stays
//! readable).

use std::io;
use std::net::Shutdown;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, OwnedHandle};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    DuplicateHandle, ERROR_BROKEN_PIPE, ERROR_OPERATION_ABORTED, ERROR_PIPE_NOT_CONNECTED, HANDLE,
};
use windows_sys::Win32::Storage::FileSystem::FlushFileBuffers;
use windows_sys::Win32::System::Pipes::DisconnectNamedPipe;
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentThread, THREAD_TERMINATE,
};
use windows_sys::Win32::System::IO::CancelSynchronousIo;

use super::{cvt, owned_handle};

/// The shutdown state of a pipe end, shared by a stream and its clones (or halves).
#[derive(Debug)]
pub(crate) struct HalfClose {
    /// This handle is the server end of the pipe.
    server: bool,
    read_shut: AtomicBool,
    write_shut: AtomicBool,
}

impl HalfClose {
    pub(crate) fn new(server: bool) -> HalfClose {
        HalfClose {
            server,
            read_shut: AtomicBool::new(false),
            write_shut: AtomicBool::new(false),
        }
    }

    pub(crate) fn is_server(&self) -> bool {
        self.server
    }

    /// Reads return EOF from now on.
    pub(crate) fn read_is_shut(&self) -> bool {
        self.read_shut.load(Ordering::Relaxed)
    }

    /// `BrokenPipe` once the end was shut down for writing.
    pub(crate) fn check_write(&self) -> io::Result<()> {
        if self.write_shut.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the stream was shut down for writing",
            ));
        }
        Ok(())
    }

    /// Sets the flags for `how`; `true` when the flush and disconnect
    /// ([`finish_write`](Self::finish_write)) must follow (server end, `Write` or `Both`).
    pub(crate) fn mark(&self, how: Shutdown) -> bool {
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.read_shut.store(true, Ordering::Relaxed);
        }
        matches!(how, Shutdown::Write | Shutdown::Both) && {
            self.write_shut.store(true, Ordering::Relaxed);
            self.server
        }
    }

    /// The server end's part of `shutdown(Write)`: waits until the client has read everything
    /// (for at most `bound`; `None`: as long as it takes), then disconnects. Blocks (the async
    /// stream runs it on a thread of its own).
    pub(crate) fn finish_write(
        &self,
        pipe: BorrowedHandle<'_>,
        bound: Option<Duration>,
    ) -> io::Result<()> {
        let raw = pipe.as_raw_handle() as HANDLE;
        match flush_within(raw, bound) {
            Err(e) if !is_closed(&e) => return Err(e),
            _ => {}
        }
        // SAFETY: `raw` comes from the BorrowedHandle `pipe`, so it stays open for the call;
        // `DisconnectNamedPipe` takes no pointer. (On a client end it just fails.)
        match cvt(unsafe { DisconnectNamedPipe(raw) }) {
            Err(e) if !is_closed(&e) => return Err(e),
            _ => {}
        }
        self.read_shut.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The whole `shutdown`, blocking for at most `bound` (see [`finish_write`](Self::finish_write)).
    pub(crate) fn shutdown(
        &self,
        pipe: BorrowedHandle<'_>,
        how: Shutdown,
        bound: Option<Duration>,
    ) -> io::Result<()> {
        if self.mark(how) {
            self.finish_write(pipe, bound)
        } else {
            Ok(())
        }
    }
}

/// `FlushFileBuffers` (on a pipe: wait until the peer has read all we wrote), for at most
/// `bound` (`None`: as long as it takes). The flush is synchronous I/O, so a watcher thread
/// cancels it at the deadline with `CancelSynchronousIo` on this thread; the watcher only
/// cancels while the flush is still running (it holds the lock that the flushing thread takes
/// when it is done), and repeats the cancel until the flush has returned, in case it fired
/// before the flush had started.
fn flush_within(handle: HANDLE, bound: Option<Duration>) -> io::Result<()> {
    let Some(bound) = bound else {
        // SAFETY: the only caller, `finish_write`, passes a handle from a BorrowedHandle that
        // stays open for this whole call; `FlushFileBuffers` takes no pointer.
        return cvt(unsafe { FlushFileBuffers(handle) });
    };
    let this_thread = current_thread()?;
    let done = Mutex::new(false);
    let wake = Condvar::new();
    let cancelled = AtomicBool::new(false);
    let result = thread::scope(|scope| {
        // Out of threads: an error, not a panic (and no flush without its bound).
        thread::Builder::new().spawn_scoped(scope, || {
            let mut finished = done.lock().unwrap_or_else(|e| e.into_inner());
            let deadline = Instant::now() + bound;
            while !*finished {
                let now = Instant::now();
                let wait = if now < deadline {
                    deadline - now
                } else {
                    cancelled.store(true, Ordering::Relaxed);
                    // SAFETY: `this_thread` is an OwnedHandle (THREAD_TERMINATE access) that
                    // outlives this scoped thread, so it is open for the call; no memory is
                    // passed. (The flushing thread cannot pass the lock we hold, so the only
                    // synchronous call it can be in is the flush.)
                    unsafe { CancelSynchronousIo(this_thread.as_raw_handle() as HANDLE) };
                    Duration::from_millis(5)
                };
                finished = wake
                    .wait_timeout(finished, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        })?;
        // SAFETY: as in the unbounded case: `handle` comes from `finish_write`'s
        // BorrowedHandle, open for this whole call; `FlushFileBuffers` takes no pointer.
        let result = cvt(unsafe { FlushFileBuffers(handle) });
        *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        result
    });
    match result {
        Err(e)
            if cancelled.load(Ordering::Relaxed)
                && e.raw_os_error() == Some(ERROR_OPERATION_ABORTED as i32) =>
        {
            Err(if bound.is_zero() {
                io::Error::from(io::ErrorKind::WouldBlock)
            } else {
                crate::error::with_cause(
                    io::ErrorKind::TimedOut,
                    "the client did not read everything written before the write timeout; \
                     nothing was discarded",
                    e,
                )
            })
        }
        other => other,
    }
}

/// A real handle to the calling thread, for `CancelSynchronousIo` from another thread.
fn current_thread() -> io::Result<OwnedHandle> {
    let mut thread: HANDLE = ptr::null_mut();
    // SAFETY: the current-process and current-thread pseudo-handles are always valid and
    // need no closing; `thread` is a live local HANDLE the call writes. The new handle is ours
    // alone, taken over by `owned_handle`.
    cvt(unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            GetCurrentThread(),
            GetCurrentProcess(),
            &mut thread,
            THREAD_TERMINATE,
            0,
            0,
        )
    })?;
    owned_handle(thread)
}

/// Cancels the blocking I/O call (a [`HalfClose::finish_write`] flush) that `thread` is in;
/// `false` when it is in none (not yet, or no longer).
#[cfg(feature = "tokio")]
pub(crate) fn cancel_blocking_call(thread: BorrowedHandle<'_>) -> bool {
    // SAFETY: `thread` is a BorrowedHandle, so it stays open for the call; no memory is
    // passed.
    unsafe { CancelSynchronousIo(thread.as_raw_handle() as HANDLE) != 0 }
}

/// The peer is gone: EOF for a read, `BrokenPipe` for a write.
pub(crate) fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(|c| c as u32),
        Some(ERROR_BROKEN_PIPE) | Some(ERROR_PIPE_NOT_CONNECTED)
    )
}
