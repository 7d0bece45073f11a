//! Hooks for the async API (`crate::tokio`, feature `tokio`): pipe handles of this backend
//! handed to tokio. The unsafe adoption lives here, next to the code whose handles it relies
//! on; the policies stay in one place for both APIs:
//!
//! - Servers: the async listener is this backend's [`Listener`](super::Listener), bound with
//!   `bind_async` and accepted with `poll_accept` (the same instance pool, DACL, error
//!   wording); each connected instance is then adopted by tokio ([`adopt_server`]).
//! - Clients are opened by the blocking backend's one-attempt [`Stream::connect`] (its access
//!   rights without `FILE_CREATE_PIPE_INSTANCE`, its security QoS, its retry classes), then
//!   handed to tokio before any I/O was issued on them.
//! - `shutdown` is [`HalfClose`](super::HalfClose), as for blocking streams.

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, IntoRawHandle, OwnedHandle};
use std::ptr;

use tokio::net::windows::named_pipe::{NamedPipeClient, NamedPipeServer};

use windows_sys::Win32::Foundation::{
    ERROR_IO_PENDING, ERROR_MORE_DATA, ERROR_NO_DATA, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::ReadFile;
use windows_sys::Win32::System::Threading::{
    RegisterWaitForSingleObject, ResetEvent, UnregisterWaitEx, INFINITE, WT_EXECUTEONLYONCE,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

use super::half_close::is_closed;
use super::{last_error, overlapped, security, stream, Stream};
use crate::sys::Credentials;
use crate::sys::{Addr, ConnectFailure, ConnectSpec};

/// Registers a connected server-end handle from [`Listener::poll_accept`](super::Listener)
/// with the current runtime.
///
/// # Panics
///
/// Outside a tokio runtime with the I/O driver.
pub(crate) fn adopt_server(handle: OwnedHandle) -> io::Result<NamedPipeServer> {
    // SAFETY: `into_raw_handle` gives up our OwnedHandle, so the open, overlapped server-end
    // handle is owned by nothing else; its only I/O (ConnectNamedPipe, with a low-bit event:
    // no completion packet) is over, so no OVERLAPPED of ours is in use. Tokio takes it over
    // and is its only closer (also if registering it fails).
    unsafe { NamedPipeServer::from_raw_handle(handle.into_raw_handle()) }
}

/// One connect attempt of the blocking backend, the handle then adopted by tokio.
///
/// # Panics
///
/// Outside a tokio runtime with the I/O driver.
pub(crate) fn connect_client(
    addr: &Addr,
    spec: ConnectSpec,
) -> Result<NamedPipeClient, ConnectFailure> {
    let stream = Stream::connect(addr, spec)?;
    let handle = OwnedHandle::from(stream).into_raw_handle();
    // SAFETY: `into_raw_handle` gave up the stream's OwnedHandle, so the open, overlapped
    // client handle is owned by nothing else, and no I/O was ever issued on it (no OVERLAPPED
    // of ours in use). Tokio takes it over and is its only closer (also if registering fails).
    unsafe { NamedPipeClient::from_raw_handle(handle) }.map_err(ConnectFailure::Fatal)
}

/// The peer of a pipe end: its pid and, where Windows tells, its user SID (as the blocking
/// stream's `peer_credentials`).
pub(crate) fn peer_credentials(pipe: BorrowedHandle<'_>, server: bool) -> io::Result<Credentials> {
    stream::pipe_peer_credentials(pipe, server)
}

/// Who serves the pipe of a client handle (see the blocking stream's `server_user`).
pub(crate) fn server_user(pipe: BorrowedHandle<'_>) -> io::Result<crate::sys::ServerUser> {
    stream::server_user(pipe)
}

/// Whether the client of a server end runs as this process's user: the blocking listener's
/// `require_same_user` check (from the client's token only, never a pid).
pub(crate) fn peer_is_same_user(pipe: BorrowedHandle<'_>) -> bool {
    security::client_is_current_user(pipe).unwrap_or(false)
}

/// A message-mode server end from [`Listener::poll_accept`](super::Listener), kept out of
/// tokio: the async message stream does its own reads (tokio's pipe types read ahead and lose
/// where a message ends).
pub(crate) fn message_server(handle: OwnedHandle) -> Stream {
    Stream::new(handle, true)
}

/// One connect attempt of the blocking backend to a message listener, the handle kept out of
/// tokio (see [`message_server`]).
pub(crate) fn message_client(addr: &Addr, spec: ConnectSpec) -> Result<Stream, ConnectFailure> {
    Stream::connect(addr, spec)
}

/// Whether an error of tokio's pipe I/O means the peer is gone (`ERROR_BROKEN_PIPE`,
/// `ERROR_PIPE_NOT_CONNECTED`, or `ERROR_NO_DATA`, a write to a pipe being closed): EOF for
/// a read or a flush, `BrokenPipe` for a write.
pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    is_closed(e) || e.raw_os_error() == Some(ERROR_NO_DATA as i32)
}

/// Readiness of a pipe for reading, for an async stream that does its own reads: a zero-byte
/// overlapped `ReadFile` (it takes nothing: on a message pipe it completes with
/// `ERROR_MORE_DATA` once a message is there, or with the error that ends the pipe), whose
/// event a thread-pool wait (`RegisterWaitForSingleObject`) turns into a
/// [`Notify`](tokio::sync::Notify) wake-up. Waiting this way takes no thread per pipe, and
/// dropping a waiting future loses nothing: the data stays in the pipe.
pub(crate) struct ReadReady {
    op: Box<ReadyOp>,
    state: std::sync::Mutex<ReadyState>,
    /// The pipe the zero-byte reads are on; open for as long as this lives (see [`Self::new`]).
    pipe: usize,
}

/// What the thread-pool callback and the kernel use: boxed, so its address is stable for as
/// long as a read or a wait may use it.
struct ReadyOp {
    overlapped: std::cell::UnsafeCell<OVERLAPPED>,
    event: OwnedHandle,
    notify: tokio::sync::Notify,
    byte: std::cell::UnsafeCell<u8>,
}

enum ReadyState {
    Idle,
    /// A zero-byte read is in flight, its completion waited for by this registered wait.
    Waiting(usize),
}

// SAFETY: the `UnsafeCell`s are written by us only under `state`'s lock while no read is in
// flight (then by the kernel, which the lock's owner reads only volatile or after completion);
// the rest is `Send + Sync`. The raw values are handles, usable from any thread.
unsafe impl Send for ReadReady {}
// SAFETY: every `&self` method that touches the `UnsafeCell`s (`arm`, and `reap`/`cancel`
// which only it and `drop` call) holds `state`'s lock, so two threads never use them at once;
// the callback only reads `notify`, which is `Sync`.
unsafe impl Sync for ReadReady {}

/// Whether the zero-byte read found the pipe readable.
pub(crate) enum Ready {
    /// Try the read now.
    Now,
    /// Wait for `notified` (enabled before the attempt that would block), then try again.
    Later,
}

impl ReadReady {
    /// Readiness of `pipe`. The caller keeps `pipe` open until this is dropped (it cancels its
    /// read on it then).
    pub(crate) fn new(pipe: BorrowedHandle<'_>) -> io::Result<ReadReady> {
        Ok(ReadReady {
            op: Box::new(ReadyOp {
                overlapped: std::cell::UnsafeCell::new(OVERLAPPED::default()),
                event: overlapped::new_event()?,
                notify: tokio::sync::Notify::new(),
                byte: std::cell::UnsafeCell::new(0),
            }),
            state: std::sync::Mutex::new(ReadyState::Idle),
            pipe: pipe.as_raw_handle() as usize,
        })
    }

    /// The wake-up of [`Ready::Later`]: take a `notified()` and `enable` it *before* the read
    /// attempt that returned `WouldBlock`, so a message arriving in between is not missed.
    pub(crate) fn notify(&self) -> &tokio::sync::Notify {
        &self.op.notify
    }

    /// After a read attempt found nothing: makes sure a zero-byte read is waiting for data.
    /// [`Ready::Now`] when data (or the end) came since the attempt.
    ///
    /// # Errors
    ///
    /// A zero-byte read or its wait that could not start.
    pub(crate) fn arm(&self) -> io::Result<Ready> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let ov = self.op.overlapped.get();
        if let ReadyState::Waiting(wait) = *state {
            if overlapped::is_pending(ov) {
                return Ok(Ready::Later);
            }
            self.reap(wait);
            *state = ReadyState::Idle;
            return Ok(Ready::Now);
        }
        let event = self.op.event.as_raw_handle() as HANDLE;
        // SAFETY: `ov` points into the boxed ReadyOp, alive as long as `self`; no read is in
        // flight (Idle, under the lock), so neither the kernel nor another thread uses the
        // OVERLAPPED while we write it. `event` is `self.op.event`, an OwnedHandle held by
        // `self`, so it is open for ResetEvent.
        unsafe {
            *ov = OVERLAPPED {
                hEvent: event,
                ..OVERLAPPED::default()
            };
            ResetEvent(event);
        }
        // SAFETY: `self.pipe` is open: `new`'s caller keeps it open until `self` is dropped,
        // and `drop` ends this read first (this safe API relies on that caller; today the
        // async MessageStream, whose field order drops this first). The OVERLAPPED and the
        // byte (length 0: nothing is written) are in the boxed ReadyOp, which stays put and
        // alive until the read is over: `reap`, `cancel` or `drop` waits for it.
        let ok = unsafe {
            ReadFile(
                self.pipe as HANDLE,
                self.op.byte.get(),
                0,
                ptr::null_mut(),
                ov,
            )
        };
        if ok != 0 {
            return Ok(Ready::Now);
        }
        let err = last_error();
        if err == ERROR_MORE_DATA {
            return Ok(Ready::Now);
        }
        if err != ERROR_IO_PENDING {
            let e = io::Error::from_raw_os_error(err as i32);
            // The end of the pipe: the read attempt reports it.
            return if is_closed(&e) {
                Ok(Ready::Now)
            } else {
                Err(e)
            };
        }
        let mut wait: HANDLE = ptr::null_mut();
        let context: *const ReadyOp = &*self.op;
        // SAFETY: `wait` is a live local HANDLE the call writes; `event` is an OwnedHandle
        // held by `self`, open until the wait is unregistered; `context` points at the boxed
        // ReadyOp, which outlives the wait: `reap` or `drop` unregisters it (waiting for a
        // running callback) before the box goes.
        let registered = unsafe {
            RegisterWaitForSingleObject(
                &mut wait,
                event,
                Some(ready_callback),
                context.cast(),
                INFINITE,
                WT_EXECUTEONLYONCE,
            )
        };
        if registered == 0 {
            let e = io::Error::last_os_error();
            self.cancel();
            return Err(e);
        }
        *state = ReadyState::Waiting(wait as usize);
        Ok(Ready::Later)
    }

    /// Ends a finished zero-byte read: its wait unregistered (after its callback ran).
    fn reap(&self, wait: usize) {
        // SAFETY: `wait` is the registration `arm` made and stored in `Waiting`, which the
        // caller just took out, so it is unregistered exactly once; INVALID_HANDLE_VALUE makes
        // the call return only once its callback (if running) is over.
        unsafe { UnregisterWaitEx(wait as HANDLE, INVALID_HANDLE_VALUE) };
        let mut moved = 0u32;
        // SAFETY: `self.pipe` is open (see `arm`); the OVERLAPPED is the boxed one of the read
        // `arm` started on it, alive as long as `self`; `moved` is a live local `u32`.
        // bWait = TRUE returns only once the read is over, so the kernel is then done with
        // the OVERLAPPED and the byte.
        unsafe {
            GetOverlappedResult(self.pipe as HANDLE, self.op.overlapped.get(), &mut moved, 1)
        };
    }

    /// Cancels a zero-byte read in flight and waits until it is over.
    fn cancel(&self) {
        // SAFETY: `self.pipe` is open (see `arm`); the OVERLAPPED is the boxed one of our
        // read, alive as long as `self`, which the call only reads to find the operation
        // (ERROR_NOT_FOUND, harmless, when it already completed).
        unsafe { CancelIoEx(self.pipe as HANDLE, self.op.overlapped.get()) };
        let mut moved = 0u32;
        // SAFETY: `self.pipe` is open (see `arm`); the OVERLAPPED is the boxed one of the read
        // just cancelled, alive as long as `self`; `moved` is a live local `u32`. bWait = TRUE
        // returns only once the read is over.
        unsafe {
            GetOverlappedResult(self.pipe as HANDLE, self.op.overlapped.get(), &mut moved, 1)
        };
    }
}

impl Drop for ReadReady {
    fn drop(&mut self) {
        let state = std::mem::replace(
            self.state.get_mut().unwrap_or_else(|e| e.into_inner()),
            ReadyState::Idle,
        );
        if let ReadyState::Waiting(wait) = state {
            self.cancel();
            // SAFETY: `wait` is the registration `arm` stored in `Waiting`, taken out above,
            // so it is unregistered exactly once; INVALID_HANDLE_VALUE returns only once a
            // running callback is over, so after this no callback uses the box.
            unsafe { UnregisterWaitEx(wait as HANDLE, INVALID_HANDLE_VALUE) };
        }
    }
}

/// The thread-pool callback of a zero-byte read's event: wakes the waiting receivers.
unsafe extern "system" fn ready_callback(context: *mut std::ffi::c_void, _timed_out: bool) {
    // SAFETY: `context` is the boxed ReadyOp `arm` registered, which `reap` or `drop`
    // unregisters (waiting for this callback) before the box is freed, so it is alive for this
    // call; only a shared reference is made, and only `notify` (`Sync`) is used through it.
    let op = unsafe { &*(context as *const ReadyOp) };
    op.notify.notify_waiters();
}
