//! `shutdown` on a pipe end, one policy for the blocking and the async streams (which differ
//! only in how they wait for the flush): named pipes have no half-close, so it is made of
//! flags and, on the server end, a flush and a disconnect.
//!
//! - `Read`: later reads return EOF (`Ok(0)`).
//! - `Write` and `Both`: later writes fail with `BrokenPipe`. On the server end, wait until
//!   the client has read everything (`FlushFileBuffers`), then `DisconnectNamedPipe`, so the
//!   client reads EOF (and this end's reads too). On the client end nothing else happens (the
//!   server sees EOF when the client's handles are closed).

use std::io;
use std::net::Shutdown;
use std::os::windows::io::{AsRawHandle, BorrowedHandle};
use std::sync::atomic::{AtomicBool, Ordering};

use windows_sys::Win32::Foundation::{ERROR_BROKEN_PIPE, ERROR_PIPE_NOT_CONNECTED, HANDLE};
use windows_sys::Win32::Storage::FileSystem::FlushFileBuffers;
use windows_sys::Win32::System::Pipes::DisconnectNamedPipe;

use super::cvt;

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

    /// The server end's part of `shutdown(Write)`: waits until the client has read everything,
    /// then disconnects. Blocks (the async stream runs it on a thread of its own).
    pub(crate) fn finish_write(&self, pipe: BorrowedHandle<'_>) -> io::Result<()> {
        let raw = pipe.as_raw_handle() as HANDLE;
        // SAFETY: `raw` is a valid pipe handle, borrowed for the whole call.
        match cvt(unsafe { FlushFileBuffers(raw) }) {
            Err(e) if !is_closed(&e) => return Err(e),
            _ => {}
        }
        // SAFETY: `raw` is a valid server-end pipe handle, borrowed for the whole call.
        match cvt(unsafe { DisconnectNamedPipe(raw) }) {
            Err(e) if !is_closed(&e) => return Err(e),
            _ => {}
        }
        self.read_shut.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The whole `shutdown`, blocking.
    pub(crate) fn shutdown(&self, pipe: BorrowedHandle<'_>, how: Shutdown) -> io::Result<()> {
        if self.mark(how) {
            self.finish_write(pipe)
        } else {
            Ok(())
        }
    }
}

/// The peer is gone: EOF for a read, `BrokenPipe` for a write.
pub(crate) fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(|c| c as u32),
        Some(ERROR_BROKEN_PIPE) | Some(ERROR_PIPE_NOT_CONNECTED)
    )
}
