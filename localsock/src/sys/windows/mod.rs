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
mod from_raw;
mod half_close;
mod listener;
pub(crate) mod message;
mod overlapped;
mod security;
cfg_shm! {
    pub(crate) mod shm;
}
mod stream;

#[cfg(feature = "tokio")]
pub(crate) use self::half_close::cancel_blocking_call;
#[cfg(feature = "tokio")]
pub(crate) use self::half_close::HalfClose;
pub(crate) use self::listener::{peer_uid_matches, Listener};
pub(crate) use self::stream::{admin_users, client_create_file_params, current_user, Stream};

use std::io;
use std::os::windows::io::{FromRawHandle, OwnedHandle};

use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{GetLastError, HANDLE, INVALID_HANDLE_VALUE, WIN32_ERROR};

use super::{Addr, Credentials};

/// This process as a peer sees it: pid and user SID.
pub(crate) fn own_credentials() -> io::Result<Credentials> {
    Ok(Credentials {
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
    // SAFETY: `GetLastError` takes no arguments and reads only this thread's error value.
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
    // SAFETY: every caller passes the result of the `Create*`/`Open*`/`Duplicate*` call it
    // just made; not INVALID_HANDLE_VALUE nor null (checked above), it is a new handle that
    // nothing else owns, so the OwnedHandle takes it over and is its only closer. (This safe
    // fn relies on its callers for that.)
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
