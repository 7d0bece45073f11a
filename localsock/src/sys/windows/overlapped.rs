//! Overlapped I/O made blocking again, with a bound: start one operation with its own event,
//! wait for it at most the timeout, and on timeout cancel it (`CancelIoEx`) and wait for the
//! cancellation to finish, so the `OVERLAPPED` (on this stack frame) is never left in use.

use std::cell::Cell;
use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, OwnedHandle};
use std::ptr;
use std::time::Duration;

use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{
    ERROR_IO_INCOMPLETE, ERROR_IO_PENDING, ERROR_MORE_DATA, ERROR_OPERATION_ABORTED, HANDLE,
    STATUS_PENDING, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};
use windows_sys::Win32::System::Threading::{
    CreateEventW, ResetEvent, WaitForSingleObject, INFINITE,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

use super::{cvt, last_error, owned_handle};

/// A new manual-reset event, not signalled, not inheritable.
pub(super) fn new_event() -> io::Result<OwnedHandle> {
    // SAFETY: the security attributes and the name are null, which the call allows (not
    // inheritable, unnamed); the other arguments are integers. The new handle is ours alone,
    // taken over by `owned_handle`.
    owned_handle(unsafe { CreateEventW(ptr::null(), 1, 0, ptr::null()) })
}

thread_local! {
    // One cached event per thread: a thread runs one blocking operation at a time, and every
    // operation is complete (or cancelled and complete) before the event is put back.
    // The initializer is `const` already; clippy misreads the -Zbuild-std expansion.
    #[allow(clippy::missing_const_for_thread_local)]
    static EVENT: Cell<Option<OwnedHandle>> = const { Cell::new(None) };
}

/// Runs `f` with an event that no other operation uses, reset to non-signalled.
fn with_event<R>(f: impl FnOnce(HANDLE) -> io::Result<R>) -> io::Result<R> {
    let event = match EVENT.with(Cell::take) {
        Some(event) => event,
        None => new_event()?,
    };
    let raw = event.as_raw_handle() as HANDLE;
    // SAFETY: `raw` is the handle of the OwnedHandle `event`, held by this function past the
    // call, so it is an open event handle for the call.
    cvt(unsafe { ResetEvent(raw) })?;
    let result = f(raw);
    EVENT.with(|slot| slot.set(Some(event)));
    result
}

/// Milliseconds for a Win32 wait: rounded up, so a short timeout never becomes 0 (poll) by
/// accident, and capped below `INFINITE`.
pub(super) fn wait_millis(timeout: Option<Duration>) -> u32 {
    match timeout {
        None => INFINITE,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            ms.min(u128::from(INFINITE - 1)) as u32
        }
    }
}

/// One overlapped `ReadFile` of at most `buf.len()` (capped at `u32::MAX`) bytes into `buf`,
/// waited for as [`run`] says. The bytes read.
pub(super) fn read(
    handle: BorrowedHandle<'_>,
    buf: &mut [u8],
    timeout: Option<Duration>,
) -> io::Result<u32> {
    let len = buf.len().min(u32::MAX as usize) as u32;
    let data = buf.as_mut_ptr();
    let raw = handle.as_raw_handle() as HANDLE;
    // SAFETY: `run`'s contract: `start` issues exactly one ReadFile, on `raw` (from the
    // BorrowedHandle `handle`, open for this whole call) with the OVERLAPPED it is given, into
    // `data`/`len`: `buf` is a &mut [u8] of at least `len` bytes, exclusively borrowed for this
    // whole call, and `run` returns only once the read is over.
    unsafe {
        run(handle, timeout, |ov| {
            ReadFile(raw, data, len, ptr::null_mut(), ov)
        })
    }
}

/// One overlapped `ReadFile` of a message-mode pipe, as [`read`], also telling whether the
/// message goes on past `buf` (`ERROR_MORE_DATA`: the rest comes with the next read).
pub(super) fn read_message_part(
    handle: BorrowedHandle<'_>,
    buf: &mut [u8],
    timeout: Option<Duration>,
) -> io::Result<(u32, bool)> {
    let len = buf.len().min(u32::MAX as usize) as u32;
    let data = buf.as_mut_ptr();
    let raw = handle.as_raw_handle() as HANDLE;
    // SAFETY: `run_reporting_more`'s contract: `start` issues exactly one ReadFile, on `raw`
    // (from the BorrowedHandle `handle`, open for this whole call) with the OVERLAPPED it is
    // given, into `data`/`len`: `buf` is a &mut [u8] of at least `len` bytes, exclusively
    // borrowed for this whole call, and the call returns only once the read is over.
    unsafe {
        run_reporting_more(handle, timeout, |ov| {
            ReadFile(raw, data, len, ptr::null_mut(), ov)
        })
    }
}

/// One overlapped `WriteFile` of at most `buf.len()` (capped at `u32::MAX`) bytes from `buf`,
/// waited for as [`run`] says. The bytes written (also after a timeout that cancelled the
/// write part-way).
pub(super) fn write(
    handle: BorrowedHandle<'_>,
    buf: &[u8],
    timeout: Option<Duration>,
) -> io::Result<u32> {
    let len = buf.len().min(u32::MAX as usize) as u32;
    let data = buf.as_ptr();
    let raw = handle.as_raw_handle() as HANDLE;
    // SAFETY: `run`'s contract: `start` issues exactly one WriteFile, on `raw` (from the
    // BorrowedHandle `handle`, open for this whole call) with the OVERLAPPED it is given, from
    // `data`/`len`: `buf` is a &[u8] of at least `len` bytes, borrowed for this whole call, and
    // `run` returns only once the write is over.
    unsafe {
        run(handle, timeout, |ov| {
            WriteFile(raw, data, len, ptr::null_mut(), ov)
        })
    }
}

/// Runs one overlapped operation on `handle` and returns the number of bytes transferred.
///
/// `start` issues the call (`ReadFile`, `WriteFile`, ...) with the `OVERLAPPED` it is given.
/// `timeout`: `None` waits as long as it takes; `Some(Duration::ZERO)` only takes what can be
/// done at once (non-blocking mode, `WouldBlock` otherwise); any other value gives `TimedOut`.
/// A timed-out operation that completed before the cancel took effect returns its count; one
/// that was cancelled returns `TimedOut` (or `WouldBlock`).
/// Other failures are the raw OS error, for the caller to interpret.
///
/// # Safety
///
/// `start` must issue at most one overlapped operation, on `handle`, with the `OVERLAPPED` it
/// is given, and every buffer that operation uses must stay valid (and, for a read, not be
/// touched by anything else) until `run` returns: `run` returns only once the operation is
/// over (completed, or cancelled and completed), but it cannot know the buffers.
unsafe fn run(
    handle: BorrowedHandle<'_>,
    timeout: Option<Duration>,
    start: impl FnOnce(*mut OVERLAPPED) -> BOOL,
) -> io::Result<u32> {
    // SAFETY: `run_reporting_more` has the same contract as `run`, which our caller upholds
    // for `start`, and we pass `handle` and `start` through unchanged.
    unsafe { run_reporting_more(handle, timeout, start) }.map(|(moved, _)| moved)
}

/// As [`run`], also telling whether a read of a message-mode pipe stopped short of the end of
/// the message (`ERROR_MORE_DATA`).
///
/// # Safety
///
/// As [`run`].
unsafe fn run_reporting_more(
    handle: BorrowedHandle<'_>,
    timeout: Option<Duration>,
    start: impl FnOnce(*mut OVERLAPPED) -> BOOL,
) -> io::Result<(u32, bool)> {
    let handle = handle.as_raw_handle() as HANDLE;
    with_event(|event| {
        let mut overlapped = OVERLAPPED {
            // The event with its low bit set: Windows then queues no completion packet to a
            // completion port the handle's file object is associated with. Safe code can hand
            // us a duplicate of a handle tokio registered with its port; mio would take this
            // stack OVERLAPPED for one of its own and call through whatever follows it. (Handle
            // values ignore their two low bits, so waits on this event still work.)
            hEvent: (event as usize | 1) as HANDLE,
            ..OVERLAPPED::default()
        };
        let ov: *mut OVERLAPPED = &mut overlapped;
        if start(ov) == 0 {
            let err = last_error();
            if err != ERROR_IO_PENDING && err != ERROR_MORE_DATA {
                // Nothing is in flight: the call failed before it started.
                return Err(io::Error::from_raw_os_error(err as i32));
            }
            // SAFETY: `event` is the event `with_event` holds (an OwnedHandle) until this
            // closure returns, so it is open for the wait; no memory is passed.
            let waited = unsafe { WaitForSingleObject(event, wait_millis(timeout)) };
            if waited != WAIT_OBJECT_0 {
                let wait_error = io::Error::last_os_error();
                // Timed out (or the wait failed): cancel, then wait for the operation to end,
                // because it still uses `overlapped` and the caller's buffer.
                // SAFETY: `handle` is open (borrowed by our caller for this whole call); `ov`
                // points at `overlapped`, a local of this closure that outlives the call; the
                // cancel only reads it to find the operation. It fails with ERROR_NOT_FOUND
                // when the operation has just completed: fine.
                unsafe { CancelIoEx(handle, ov) };
                let (result, moved) = finish(handle, ov, true);
                return match result {
                    Ok(more) => Ok((moved, more)),
                    // Cancelled: the count Windows leaves is not what moved (NT's npfs leaves
                    // the full write length, later ones 0, whatever the reader took). Callers
                    // make sure a cancelled operation moved nothing: a read completes as soon
                    // as it has data, and a timed write is never longer than the pipe's quota
                    // (see `Stream::write`).
                    Err(e) if e.raw_os_error() == Some(ERROR_OPERATION_ABORTED as i32) => {
                        if waited != WAIT_TIMEOUT {
                            Err(wait_error)
                        } else if timeout == Some(Duration::ZERO) {
                            Err(io::Error::from(io::ErrorKind::WouldBlock))
                        } else {
                            Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "the operation timed out",
                            ))
                        }
                    }
                    Err(_) if moved > 0 => Ok((moved, false)),
                    Err(e) => Err(e),
                };
            }
        }
        let (result, moved) = finish(handle, ov, false);
        result.map(|more| (moved, more))
    })
}

/// Whether the kernel still owns `ov` (its status is `STATUS_PENDING`).
pub(super) fn is_pending(ov: *mut OVERLAPPED) -> bool {
    // SAFETY: both callers (`finish` here and `async_pipe`) pass a pointer to an OVERLAPPED
    // that is alive and not moved for the call (a local of `run_reporting_more`, or the boxed
    // one of an async read); this safe fn relies on them for that. Only `Internal`, a `usize`,
    // is read, volatile (as `HasOverlappedIoCompleted` does), since the kernel may write it
    // concurrently; no reference is made.
    let status = unsafe { ptr::read_volatile(ptr::addr_of!((*ov).Internal)) };
    status == STATUS_PENDING as usize
}

/// The outcome of a finished (or, with `wait`, finishing) operation — `Ok(true)` for a read
/// that stopped short of the end of a message — and the bytes it moved.
///
/// The event is this thread's reused one, so a signal alone is not trusted: this loops until
/// the OVERLAPPED itself says the operation is over, and never returns while the kernel may
/// still write to it or to the caller's buffer.
fn finish(handle: HANDLE, ov: *mut OVERLAPPED, wait: bool) -> (io::Result<bool>, u32) {
    let mut moved = 0u32;
    // SAFETY: the only caller, `run_reporting_more`, passes its open `handle` and `ov`, the
    // OVERLAPPED (a local of that frame, alive and not moved for this call) of the operation
    // it started on `handle`; `moved` is a live local `u32` the call writes.
    let mut ok = unsafe { GetOverlappedResult(handle, ov, &mut moved, BOOL::from(wait)) };
    while (ok == 0 && last_error() == ERROR_IO_INCOMPLETE) || is_pending(ov) {
        // Signalled but not complete: wait it out rather than return while the operation
        // still uses the OVERLAPPED and the caller's buffer.
        // SAFETY: the same `handle`, `ov` and `moved` as the call above, all still alive and
        // open; bWait = TRUE returns only once the operation is over.
        ok = unsafe { GetOverlappedResult(handle, ov, &mut moved, 1) };
        if is_pending(ov) {
            std::thread::yield_now();
        }
    }
    if ok != 0 {
        return (Ok(false), moved);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(ERROR_MORE_DATA as i32) {
        // A message-mode peer's message is longer than the buffer: the rest comes with the
        // next read. For a byte stream that is a short read, not an error.
        return (Ok(true), moved);
    }
    // SAFETY: `ov` is alive (see above), and the operation is over (the loop above ran until
    // GetOverlappedResult reported a final status and `Internal` is not pending), so the
    // kernel no longer writes the OVERLAPPED and reading `InternalHigh` races nothing.
    let partial = unsafe { (*ov).InternalHigh } as u32;
    (Err(err), partial.max(moved))
}
