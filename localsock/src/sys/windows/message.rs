//! Whole messages on a message-mode named pipe, with handles duplicated into the receiving
//! process.
//!
//! One localsock message is one pipe message: the tag (0), the handle count (`u16` LE), each
//! handle's value *in the receiving process* (`u64` LE), then the bytes. The sender duplicates
//! each handle into the peer (`OpenProcess(PROCESS_DUP_HANDLE)` on the pid the pipe reports,
//! `DuplicateHandle`), and takes them back (`DUPLICATE_CLOSE_SOURCE`) if the message is not
//! written.
//!
//! A handle value cannot be told from a handle the receiving process already had. So that a
//! peer that could not have duplicated handles into us cannot make us adopt (and later close)
//! our own handles by naming their values, handles travel only between processes of the same
//! user: the sender refuses to give them to another user's process, and the receiver refuses
//! (without touching the values) handles from one.

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::ptr;
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    DuplicateHandle, DUPLICATE_CLOSE_SOURCE, DUPLICATE_SAME_ACCESS, ERROR_INVALID_PARAMETER, HANDLE,
};
use windows_sys::Win32::System::Pipes::{SetNamedPipeHandleState, PIPE_READMODE_MESSAGE};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcess, PROCESS_DUP_HANDLE};

use super::half_close::is_closed;
use super::{cvt, overlapped, owned_handle, security, Stream};
use crate::message::{self as policy, MAX_HANDLES, MAX_MESSAGE_LEN};

const TAG: u8 = 0;
/// The tag and the handle count.
const HEADER: usize = 3;
const HANDLE_SIZE: usize = 8;
/// The longest valid pipe message.
const MAX_WIRE: usize = HEADER + MAX_HANDLES * HANDLE_SIZE + MAX_MESSAGE_LEN;

/// A whole, valid message read ahead of the caller (by a peek, or for a buffer too short to
/// take it): it stays queued here, its handles owned, until a receive takes it.
#[derive(Debug)]
pub(crate) struct Pending {
    bytes: Vec<u8>,
    handles: Vec<OwnedHandle>,
}

/// Switches a client handle to message read mode (server instances are created in it).
pub(super) fn set_message_read_mode(pipe: BorrowedHandle<'_>) -> io::Result<()> {
    let mode = PIPE_READMODE_MESSAGE;
    // SAFETY: `pipe` is a BorrowedHandle, so it stays open for the call; `mode` is a live
    // local `u32` the call only reads; the other two pointers are null, which the call allows
    // (those settings are left alone).
    let set = cvt(unsafe {
        SetNamedPipeHandleState(
            pipe.as_raw_handle() as HANDLE,
            &mode,
            ptr::null(),
            ptr::null(),
        )
    });
    set.map_err(|e| {
        if e.raw_os_error() == Some(ERROR_INVALID_PARAMETER as i32) {
            io::Error::new(
                e.kind(),
                format!(
                    "the server there is a byte-stream pipe, not a message one (a message \
                     client cannot connect to it): {e}"
                ),
            )
        } else {
            e
        }
    })
}

/// Whether the peer of `stream` runs as this process's user.
fn peer_is_same_user(stream: &Stream) -> io::Result<(bool, u32)> {
    let creds = stream.peer_credentials()?;
    let me = security::current_user_sid()?;
    let pid = creds.pid.unwrap_or(0);
    Ok((creds.sid.as_deref() == Some(me.as_str()), pid))
}

/// Handles duplicated into the peer process. Taken back (closed there) when dropped, unless
/// the message that names them was delivered.
pub(super) struct Given {
    process: OwnedHandle,
    values: Vec<usize>,
    delivered: bool,
}

impl Given {
    /// The handle values in the peer process, in the order given.
    #[cfg(feature = "shm")]
    pub(super) fn values(&self) -> &[usize] {
        &self.values
    }

    /// The message that names them reached the peer: they are its to close now.
    #[cfg(feature = "shm")]
    pub(super) fn delivered(&mut self) {
        self.delivered = true;
    }

    pub(super) fn to_peer(stream: &Stream, handles: &[BorrowedHandle<'_>]) -> io::Result<Given> {
        let denied = |why: String| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("cannot give handles to the peer: {why}; nothing was sent"),
            )
        };
        let (same_user, pid) = peer_is_same_user(stream)?;
        if !same_user {
            return Err(denied(
                "it runs as another user (handles travel only between processes of one user)"
                    .into(),
            ));
        }
        // SAFETY: `OpenProcess` takes only integers and reads no memory of ours; the handle it
        // returns is new and ours alone, taken over by `owned_handle` (which checks for null).
        let process = owned_handle(unsafe { OpenProcess(PROCESS_DUP_HANDLE, 0, pid) })
            .map_err(|e| denied(format!("opening its process (pid {pid}) failed: {e}")))?;
        let mut given = Given {
            process,
            values: Vec::with_capacity(handles.len()),
            delivered: false,
        };
        for handle in handles {
            let mut remote: HANDLE = ptr::null_mut();
            // SAFETY: the current-process pseudo-handle is always valid; `handle` is a
            // BorrowedHandle and `given.process` an OwnedHandle held here, so both stay open
            // for the call; `remote` is a live local HANDLE the call writes. The copy lives in
            // the peer's table (not ours); `given` closes it there unless delivered.
            cvt(unsafe {
                DuplicateHandle(
                    GetCurrentProcess(),
                    handle.as_raw_handle() as HANDLE,
                    given.process.as_raw_handle() as HANDLE,
                    &mut remote,
                    0,
                    0,
                    DUPLICATE_SAME_ACCESS,
                )
            })
            .map_err(|e| {
                // Dropping `given` takes back the ones already given.
                denied(format!("duplicating a handle into its process failed: {e}"))
            })?;
            given.values.push(remote as usize);
        }
        Ok(given)
    }
}

impl Drop for Given {
    fn drop(&mut self) {
        if self.delivered {
            return;
        }
        for value in &self.values {
            // SAFETY: `self.process` is an OwnedHandle held by `self`, so it is open for the
            // call; `value` is a handle we duplicated into that process and no delivered
            // message named, so it is still ours to close there; the target pointers are null,
            // which DUPLICATE_CLOSE_SOURCE allows (close only). No handle of ours is touched.
            unsafe {
                DuplicateHandle(
                    self.process.as_raw_handle() as HANDLE,
                    *value as HANDLE,
                    ptr::null_mut(),
                    ptr::null_mut(),
                    0,
                    0,
                    DUPLICATE_CLOSE_SOURCE,
                )
            };
        }
    }
}

/// Sends one message as one pipe message, its handles duplicated into the peer first.
pub(crate) fn send(
    stream: &Stream,
    bytes: &[u8],
    handles: &[BorrowedHandle<'_>],
) -> io::Result<()> {
    prepare(stream, bytes, handles)?.write(stream)
}

/// A message ready to be written: its handles already given to the peer (taken back if it is
/// dropped unwritten), its pipe message built. The async stream prepares in the caller's task
/// and writes where it may block.
pub(crate) struct Prepared {
    given: Option<Given>,
    wire: Vec<u8>,
}

/// Checks a message against the limits, gives its handles to the peer and builds its pipe
/// message.
pub(crate) fn prepare(
    stream: &Stream,
    bytes: &[u8],
    handles: &[BorrowedHandle<'_>],
) -> io::Result<Prepared> {
    policy::check_send(bytes.len(), handles.len())?;
    let given = if handles.is_empty() {
        None
    } else {
        Some(Given::to_peer(stream, handles)?)
    };
    let values = given.as_ref().map_or(&[][..], |g| &g.values[..]);
    let mut wire = Vec::with_capacity(HEADER + values.len() * HANDLE_SIZE + bytes.len());
    wire.push(TAG);
    wire.extend_from_slice(&(values.len() as u16).to_le_bytes());
    for value in values {
        wire.extend_from_slice(&(*value as u64).to_le_bytes());
    }
    wire.extend_from_slice(bytes);
    Ok(Prepared { given, wire })
}

impl Prepared {
    /// Writes the message in one `WriteFile`, waiting as the stream's write timeout says.
    pub(crate) fn write(mut self, stream: &Stream) -> io::Result<()> {
        // On error `self.given` is dropped: the handles are taken back.
        let written = stream.write_message(&self.wire)?;
        if let Some(given) = self.given.as_mut() {
            // Part of a message may have reached the peer (a write timeout cut it): its handles
            // are the peer's to close now, as far as it can parse them.
            given.delivered = written > 0;
        }
        if written != self.wire.len() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the write timed out after {written} of the message's {} bytes",
                    self.wire.len()
                ),
            ));
        }
        Ok(())
    }
}

/// One `ReadFile` of at most `buf.len()` bytes of the next pipe message: the bytes read, and
/// whether the message goes on (`ERROR_MORE_DATA`); `None` at end-of-file.
///
/// With `now`, only what can be read at once (`WouldBlock` otherwise, nothing taken): the async
/// stream's read, which waits for readiness itself.
fn read_part(stream: &Stream, buf: &mut [u8], now: bool) -> io::Result<Option<(usize, bool)>> {
    let (timeout, shut) = stream.read_wait();
    let timeout = if now { Some(Duration::ZERO) } else { timeout };
    if shut {
        return Ok(None);
    }
    let result = overlapped::read_message_part(stream.as_handle(), buf, timeout);
    match result {
        Ok((n, more)) => Ok(Some((n as usize, more))),
        Err(e) if is_closed(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Adopts the handle values of a message from the peer: only from a peer of our user, only
/// plausible values (non-zero, a multiple of 4, 32-bit), each once.
pub(super) fn adopt(stream: &Stream, values: &[u64]) -> io::Result<Vec<OwnedHandle>> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let (same_user, _) = peer_is_same_user(stream)?;
    if !same_user {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a peer of another user attached handles to a message: refused (handles travel \
             only between processes of one user); the message was dropped and the handle \
             values were not used",
        ));
    }
    let mut seen: Vec<u64> = Vec::with_capacity(values.len());
    let mut owned = Vec::with_capacity(values.len());
    let mut bad = false;
    for value in values {
        if *value == 0 || *value % 4 != 0 || *value > u64::from(u32::MAX) || seen.contains(value) {
            bad = true;
            continue;
        }
        seen.push(*value);
        // SAFETY: the protocol: a peer of our own user (checked above) duplicated this handle
        // into our process for this message and told no one else its value, so nothing here
        // owns it yet; `seen` makes each value adopted once, and the OwnedHandle is then its
        // only closer. A lying same-user peer could name a handle we already own; such a
        // peer can normally close our handles directly anyway (PROCESS_DUP_HANDLE on a
        // process of its own user), so this trusts it little more.
        owned.push(unsafe { OwnedHandle::from_raw_handle(*value as usize as _) });
    }
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a message named an impossible or repeated handle value; it was dropped and its \
             other handles closed",
        ));
    }
    Ok(owned)
}

/// Parses a complete pipe message of `n` bytes in `wire`.
fn parse(stream: &Stream, mut wire: Vec<u8>, n: usize) -> io::Result<Pending> {
    wire.truncate(n);
    if wire.first() != Some(&TAG) {
        return Err(policy::bad_tag(wire.first().copied().unwrap_or(0xff)));
    }
    if wire.len() < HEADER {
        return Err(policy::bad_tag(TAG));
    }
    let count = usize::from(u16::from_le_bytes([wire[1], wire[2]]));
    let present = (wire.len() - HEADER) / HANDLE_SIZE;
    let values: Vec<u64> = wire[HEADER..]
        .chunks_exact(HANDLE_SIZE)
        .take(count.min(present).min(MAX_HANDLES))
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let handles = adopt(stream, &values)?;
    if count > MAX_HANDLES || count > present {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a message claims {count} handles (the most is {MAX_HANDLES}, and it holds \
                 {present}); it was dropped and its handles closed"
            ),
        ));
    }
    wire.drain(..HEADER + count * HANDLE_SIZE);
    Ok(Pending {
        bytes: wire,
        handles,
    })
}

/// Reads the next whole pipe message; `None` at end-of-file. A message too long for any
/// receiver is read to its end and dropped, its handles closed.
///
/// With `now`, the first part is read only if it is there at once (`WouldBlock` otherwise);
/// the rest of a message already begun is in the pipe (a pipe message is written whole) and
/// is read as the stream's own reads wait.
fn read_message(stream: &Stream, now: bool) -> io::Result<Option<Pending>> {
    let mut wire = vec![0u8; MAX_WIRE];
    let Some((n, more)) = read_part(stream, &mut wire, now)? else {
        return Ok(None);
    };
    if !more {
        return parse(stream, wire, n).map(Some);
    }
    // Too long: close what its header names, read the rest, report it.
    let header = wire[..HEADER.min(n)].to_vec();
    let claimed = if header.len() == HEADER {
        usize::from(u16::from_le_bytes([header[1], header[2]])).min(MAX_HANDLES)
    } else {
        0
    };
    let values: Vec<u64> = if header.first() == Some(&TAG) {
        wire[HEADER..n]
            .chunks_exact(HANDLE_SIZE)
            .take(claimed)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    } else {
        Vec::new()
    };
    let adopted = adopt(stream, &values);
    let mut total = n;
    loop {
        match read_part(stream, &mut wire, false)? {
            Some((part, true)) => total += part,
            Some((part, false)) => {
                total += part;
                break;
            }
            None => break,
        }
    }
    drop(adopted);
    Err(policy::truncated(
        total.saturating_sub(HEADER),
        MAX_MESSAGE_LEN,
    ))
}

/// Receives one whole message (see the Unix backend for the contract).
pub(crate) fn recv(
    stream: &Stream,
    buf: &mut [u8],
    handles: &mut Vec<OwnedHandle>,
    max_handles: usize,
    _check_fit: bool,
) -> io::Result<Option<usize>> {
    recv_inner(stream, buf, handles, max_handles, false)
}

/// [`recv`] of a message that is there now: `WouldBlock` (nothing taken) otherwise. The async
/// stream's receive, between its waits for readiness.
#[cfg(feature = "tokio")]
pub(crate) fn try_recv(
    stream: &Stream,
    buf: &mut [u8],
    handles: &mut Vec<OwnedHandle>,
    max_handles: usize,
) -> io::Result<Option<usize>> {
    recv_inner(stream, buf, handles, max_handles, true)
}

fn recv_inner(
    stream: &Stream,
    buf: &mut [u8],
    handles: &mut Vec<OwnedHandle>,
    max_handles: usize,
    now: bool,
) -> io::Result<Option<usize>> {
    let mut pending = stream.pending();
    let message = match pending.take() {
        Some(message) => message,
        None => match read_message(stream, now)? {
            Some(message) => message,
            None => return Ok(None),
        },
    };
    let len = message.bytes.len();
    if len > buf.len() {
        *pending = Some(message);
        return Err(policy::short_buffer(len, buf.len()));
    }
    if message.handles.len() > max_handles.min(MAX_HANDLES) {
        return Err(policy::too_many_handles(max_handles));
    }
    buf[..len].copy_from_slice(&message.bytes);
    handles.extend(message.handles);
    Ok(Some(len))
}

/// The length of the next message, read ahead and kept queued.
pub(crate) fn peek_len(stream: &Stream) -> io::Result<Option<usize>> {
    peek_len_inner(stream, false)
}

/// [`peek_len`] of a message that is there now: `WouldBlock` (nothing taken) otherwise.
#[cfg(feature = "tokio")]
pub(crate) fn try_peek_len(stream: &Stream) -> io::Result<Option<usize>> {
    peek_len_inner(stream, true)
}

fn peek_len_inner(stream: &Stream, now: bool) -> io::Result<Option<usize>> {
    let mut pending = stream.pending();
    if let Some(message) = pending.as_ref() {
        return Ok(Some(message.bytes.len()));
    }
    match read_message(stream, now)? {
        Some(message) => {
            let len = message.bytes.len();
            *pending = Some(message);
            Ok(Some(len))
        }
        None => Ok(None),
    }
}
