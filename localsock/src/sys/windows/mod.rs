//! Windows backend: byte-mode named pipes through `windows-sys`, with overlapped I/O so that
//! reads, writes and accepts can time out and be cancelled.
//!
//! - `overlapped.rs`: one overlapped read or write at a time per call, with an event per thread
//!   and cancellation (`CancelIoEx`, then waiting for the cancel) on timeout;
//! - `stream.rs`: the client (`CreateFileW` + `WaitNamedPipeW`) and both ends' I/O;
//! - `half_close.rs`: `shutdown`, for the blocking and the async streams;
//! - `listener.rs`: the pool of listening instances (`CreateNamedPipeW` + `ConnectNamedPipe`),
//!   for the blocking and the async listeners, which differ only in how they wait;
//! - `security.rs`: security descriptors (SDDL), the rights check at bind, token SIDs, the
//!   client's identity;
//! - `async_pipe.rs` (feature `tokio`): handing pipe handles to tokio.
#![allow(unsafe_code)]

#[cfg(feature = "tokio")]
pub(crate) mod async_pipe;
mod half_close;
mod listener;
pub(crate) mod message;
mod overlapped;
mod security;
#[cfg(feature = "shm")]
pub(crate) mod shm;
mod stream;

#[cfg(feature = "tokio")]
pub(crate) use self::half_close::cancel_blocking_call;
#[cfg(feature = "tokio")]
pub(crate) use self::half_close::HalfClose;
pub(crate) use self::listener::{peer_uid_matches, Listener};
pub(crate) use self::stream::{admin_users, client_create_file_params, current_user, Stream};

use std::io;
use std::os::windows::io::{
    AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, IntoRawHandle, OwnedHandle, RawHandle,
};

use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{GetLastError, HANDLE, INVALID_HANDLE_VALUE, WIN32_ERROR};

use super::Addr;
use crate::{LocalStream, MessageStream};

/// This process as a peer sees it: pid and user SID.
pub(crate) fn own_credentials() -> io::Result<crate::PeerCredentials> {
    Ok(crate::PeerCredentials {
        pid: Some(std::process::id()),
        uid: None,
        gid: None,
        sid: Some(security::current_user_sid()?),
    })
}

/// The last Win32 error of this thread, as a raw code.
/// Whether the OS error `code` means the process or the system is out of handles or memory
/// (`ERROR_NO_SYSTEM_RESOURCES`, `ERROR_NOT_ENOUGH_MEMORY`, `ERROR_OUTOFMEMORY`,
/// `ERROR_TOO_MANY_OPEN_FILES`): an accept retried at once fails the same way. The portable
/// accept policy ([`crate::listener`]) decides what to do about it.
pub(crate) fn is_resource_shortage(code: i32) -> bool {
    use windows_sys::Win32::Foundation::{
        ERROR_NOT_ENOUGH_MEMORY, ERROR_NO_SYSTEM_RESOURCES, ERROR_OUTOFMEMORY,
        ERROR_TOO_MANY_OPEN_FILES,
    };
    matches!(
        code as u32,
        ERROR_NO_SYSTEM_RESOURCES
            | ERROR_NOT_ENOUGH_MEMORY
            | ERROR_OUTOFMEMORY
            | ERROR_TOO_MANY_OPEN_FILES
    )
}

pub(super) fn last_error() -> WIN32_ERROR {
    // SAFETY: `GetLastError` has no preconditions.
    unsafe { GetLastError() }
}

/// Turns a `FALSE` return into the thread's last error.
pub(super) fn cvt(ret: BOOL) -> io::Result<()> {
    if ret == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Takes ownership of a handle returned by a `Create*` call, or the last error when it failed
/// (`INVALID_HANDLE_VALUE` or null).
pub(super) fn owned_handle(handle: HANDLE) -> io::Result<OwnedHandle> {
    if handle == INVALID_HANDLE_VALUE || handle.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handle is valid (checked above) and was just created for us alone.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle) })
}

/// A string as a NUL-terminated UTF-16 buffer.
pub(super) fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The full pipe name of `addr`, or `InvalidInput` for a Unix address.
pub(super) fn pipe_name(addr: &Addr) -> io::Result<&str> {
    match addr {
        Addr::Pipe(pipe) => Ok(pipe),
        Addr::Path(_) | Addr::Abstract(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a Unix socket name cannot be used with a Windows named pipe",
        )),
    }
}

// ---- conversions between the public types and handles ----

impl AsHandle for LocalStream {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.inner.as_handle()
    }
}

impl AsRawHandle for LocalStream {
    fn as_raw_handle(&self) -> RawHandle {
        self.inner.as_handle().as_raw_handle()
    }
}

impl From<OwnedHandle> for LocalStream {
    /// Adopts a connected named-pipe handle (either end), e.g. one inherited from a parent
    /// process.
    ///
    /// It must have been opened with `FILE_FLAG_OVERLAPPED` (as `CreateNamedPipeW` and
    /// `CreateFileW` do only when asked). A synchronous handle cannot be refused here (`From`
    /// cannot fail, and no documented call tells a handle's mode): on one, every read and
    /// write waits in the kernel, so read and write timeouts and non-blocking mode have no
    /// effect, and Windows serialises all I/O on a synchronous file object, so a read waiting
    /// in one thread holds up a write from another (a full-duplex protocol deadlocks).
    fn from(handle: OwnedHandle) -> LocalStream {
        LocalStream {
            inner: Stream::from(handle),
        }
    }
}

impl From<LocalStream> for OwnedHandle {
    fn from(stream: LocalStream) -> OwnedHandle {
        stream.inner.into()
    }
}

impl IntoRawHandle for LocalStream {
    fn into_raw_handle(self) -> RawHandle {
        OwnedHandle::from(self).into_raw_handle()
    }
}

impl FromRawHandle for LocalStream {
    /// # Safety
    ///
    /// `handle` must be an open, connected named-pipe handle that nothing else owns.
    unsafe fn from_raw_handle(handle: RawHandle) -> LocalStream {
        // SAFETY: the caller guarantees `handle` is open and owned by nobody else.
        LocalStream::from(unsafe { OwnedHandle::from_raw_handle(handle) })
    }
}

impl AsHandle for MessageStream {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.inner.as_handle()
    }
}

impl AsRawHandle for MessageStream {
    fn as_raw_handle(&self) -> RawHandle {
        self.inner.as_handle().as_raw_handle()
    }
}
