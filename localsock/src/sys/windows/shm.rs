//! The OS side of the shared-memory data path on Windows: an unnamed pagefile-backed section,
//! its view (made and unmapped here; the accesses are `sys/shm_mapping.rs`'s, the same as on
//! Unix), the negotiation frames that carry handles
//! over the byte-mode pipe, and the wake-ups (unnamed events, with the pipe as the peer's
//! liveness).
//!
//! # The memory
//!
//! `CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, size, NULL)`: backed by the
//! pagefile, committed whole, zero-filled, with no name in the object namespace — only a
//! handle reaches it, and the only handle that leaves this process is the one duplicated into
//! the peer (`message::Given`, as for message attachments). A pagefile-backed section cannot be
//! extended or shrunk, and its pages cannot be decommitted while a view maps them, so an access
//! inside a view that was checked once never faults later.
//!
//! The receiving side never trusts the peer's section: it maps exactly the size the portable
//! layer expects (`MapViewOfFile` fails on a smaller section), then checks with `VirtualQuery`
//! that the view is one committed, read/write mapped region of at least that size (a section
//! created with `SEC_RESERVE` would fault on its uncommitted pages), and with
//! `GetMappedFileNameW` that it maps no file (a file on a network share or removable disk
//! could fault with an in-page error). Anything else is `InvalidData`.
//!
//! # What is sound about touching memory the peer can write
//!
//! As on Unix (see `sys/shm_mapping.rs`, which holds [`Mapping`]'s accesses for both): no
//! Rust reference to plain bytes of the view is ever made; control words are atomics, data
//! bytes move with raw copies, the zero-copy view is `&[AtomicU8]`.
//!
//! # Wake-ups and liveness
//!
//! Four unnamed auto-reset events, created by the offering side and duplicated into the peer:
//! each side's reader and writer sleeps on its own event (`WaitForMultipleObjects`) and the
//! other side sets it. After the negotiation nothing more travels on the pipe, so each side
//! keeps one 1-byte overlapped read pending on it for the life of the stream (the monitor):
//! it completes when the peer closes its end or dies (or, from a hostile peer, writes a byte),
//! and its manual-reset event, which every wait includes, then says "the peer is gone".

use std::cell::UnsafeCell;
use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, OwnedHandle};
use std::ptr::{self, NonNull};
use std::sync::{mpsc, OnceLock};

use windows_sys::Win32::Foundation::{
    ERROR_IO_PENDING, HANDLE, INVALID_HANDLE_VALUE, WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::ReadFile;
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, UnmapViewOfFile, VirtualQuery, FILE_MAP_READ,
    FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS, MEM_COMMIT, MEM_MAPPED,
    PAGE_READWRITE,
};
use windows_sys::Win32::System::Pipes::DisconnectNamedPipe;
use windows_sys::Win32::System::ProcessStatus::K32GetMappedFileNameW;
use windows_sys::Win32::System::Threading::{
    CreateEventW, GetActiveProcessorCount, GetCurrentProcess, GetCurrentProcessorNumber,
    ResetEvent, SetEvent, WaitForMultipleObjects, WaitForSingleObject, ALL_PROCESSOR_GROUPS,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

use super::message::{adopt, Given};
use super::{cvt, last_error, overlapped, owned_handle, Stream};
use crate::message::{self as policy, MAX_HANDLES};
pub(crate) use crate::sys::shm_mapping::Mapping;
use crate::sys::Waiter;

/// What the offer carries to the peer: handles, duplicated into it.
pub(crate) type OsHandle = OwnedHandle;
/// How many handles the offer's wake-up channel takes: four events.
pub(crate) const WAKE_HANDLES: usize = 4;

// ---- the section and its view ----

impl Drop for Mapping {
    fn drop(&mut self) {
        let view = MEMORY_MAPPED_VIEW_ADDRESS {
            Value: self.as_ptr().cast(),
        };
        // SAFETY: `as_ptr()` is the base of the view `map` made with `MapViewOfFile`
        // (`Mapping`'s invariant) and only this `drop` unmaps it, once; every reference into
        // it borrows `self`, so none outlives this call.
        unsafe { UnmapViewOfFile(view) };
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Creates an unnamed, pagefile-backed section of `len` bytes (zero-filled) and maps it. The
/// handle is not inheritable; it is returned to be duplicated into the peer, then closed.
pub(crate) fn create(len: usize) -> io::Result<(OwnedHandle, Mapping)> {
    let size = len as u64;
    // SAFETY: no memory of ours is passed: INVALID_HANDLE_VALUE asks for pagefile backing, the
    // null attributes mean the default security and not inheritable, and the null name makes
    // the section unnamed. The new handle is ours alone, taken over by `owned_handle`.
    let section = owned_handle(unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            ptr::null(),
            PAGE_READWRITE,
            (size >> 32) as u32,
            size as u32,
            ptr::null(),
        )
    })?;
    let map = map(section.as_handle(), len)?;
    Ok((section, map))
}

/// Maps the peer's section and checks that the view is what [`create`] makes: `len` bytes
/// (or more) of committed, read/write, pagefile-backed memory. Anything else is `InvalidData`.
pub(crate) fn open_handle(section: &OwnedHandle, len: usize) -> io::Result<Mapping> {
    let map = map(section.as_handle(), len).map_err(|e| {
        invalid(&format!(
            "the peer's shared memory is not a section of the expected size ({len} bytes): {e}"
        ))
    })?;
    let mut info = MEMORY_BASIC_INFORMATION::default();
    // SAFETY: `info` is a live local MEMORY_BASIC_INFORMATION and the size passed is its own
    // size, so the call writes only inside it; the address is only looked up (the base of
    // `map`, our live view), not dereferenced.
    let got = unsafe {
        VirtualQuery(
            map.as_ptr().cast(),
            &mut info,
            std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
        )
    };
    if got == 0 {
        return Err(io::Error::last_os_error());
    }
    if info.AllocationBase != map.as_ptr().cast()
        || info.RegionSize < len
        || info.State != MEM_COMMIT
        || info.Protect != PAGE_READWRITE
        || info.Type != MEM_MAPPED
    {
        return Err(invalid(
            "the peer's shared memory is not committed read/write memory of the expected size",
        ));
    }
    let mut name = [0u16; 64];
    // SAFETY: the current-process pseudo-handle is always valid; `name` is a live local of 64
    // u16s and 64 is the length passed, so the call writes only inside it; the address is
    // only looked up (the base of `map`, our live view), not dereferenced.
    let named = unsafe {
        K32GetMappedFileNameW(
            GetCurrentProcess(),
            map.as_ptr().cast(),
            name.as_mut_ptr(),
            name.len() as u32,
        )
    };
    if named != 0 {
        return Err(invalid(
            "the peer's shared memory maps a file, not the pagefile",
        ));
    }
    Ok(map)
}

fn map(section: BorrowedHandle<'_>, len: usize) -> io::Result<Mapping> {
    // SAFETY: `section` is a BorrowedHandle, so it stays open for the call (the view keeps
    // its own reference to the section); with no base address the system picks fresh
    // addresses, so the view overlaps no memory Rust already uses. A view of `len` bytes
    // succeeds only if the section holds them, and a section never shrinks.
    let view = unsafe {
        MapViewOfFile(
            section.as_raw_handle() as HANDLE,
            FILE_MAP_READ | FILE_MAP_WRITE,
            0,
            0,
            len,
        )
    };
    let ptr = NonNull::new(view.Value.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
    // SAFETY: `ptr` is the base of the new read/write view of `len` bytes that
    // `MapViewOfFile` just made (64 KiB aligned, owned by nothing else) of a section that
    // cannot shrink; its pages are committed (a pagefile section that `create` made, or one
    // `open_handle` checks before it hands the mapping out, dropping it otherwise); the `Drop`
    // above unmaps it.
    Ok(unsafe { Mapping::from_raw_parts(ptr, len) })
}

/// What `current_cpu` would return when it does not know (never, on Windows).
pub(crate) const UNKNOWN_CPU: u32 = u32::MAX;

/// The processor this thread runs on now (in its group; a hint only).
pub(crate) fn current_cpu() -> u32 {
    // SAFETY: `GetCurrentProcessorNumber` takes no arguments, cannot fail and touches no
    // memory of ours.
    unsafe { GetCurrentProcessorNumber() }
}

/// How many processors are active, in all groups (1 if unknown).
pub(crate) fn online_cpus() -> usize {
    // SAFETY: `GetActiveProcessorCount` takes an integer and touches no memory of ours; a
    // failure is 0, which `max(1)` turns into 1.
    let n = unsafe { GetActiveProcessorCount(ALL_PROCESSOR_GROUPS) };
    (n as usize).max(1)
}

// ---- the negotiation frames ----

/// A frame: the tag (0), the bytes' length (`u32` LE), the handle count (`u16` LE), then each
/// handle's value in the receiving process (`u64` LE), then the bytes.
const TAG: u8 = 0;
const HEADER: usize = 7;

/// Whether handles may go to the peer: only to a process of our own user (the rule of
/// message attachments, `message.rs`). Another user's peer is not offered shared memory.
pub(crate) fn can_share(stream: &Stream) -> io::Result<bool> {
    let creds = stream.peer_credentials()?;
    let me = super::security::current_user_sid()?;
    Ok(creds.sid.as_deref() == Some(me.as_str()))
}

/// Sends one negotiation frame, its handles duplicated into the peer first (taken back if no
/// byte of the frame is written).
pub(crate) fn send_hello(
    stream: &Stream,
    bytes: &[u8],
    handles: &[&OwnedHandle],
) -> io::Result<()> {
    policy::check_send(bytes.len(), handles.len())?;
    let borrowed: Vec<BorrowedHandle<'_>> = handles.iter().map(|h| h.as_handle()).collect();
    let mut given = if borrowed.is_empty() {
        None
    } else {
        Some(Given::to_peer(stream, &borrowed)?)
    };
    let wire = {
        let values = given.as_ref().map_or(&[][..], |g| g.values());
        let mut wire = Vec::with_capacity(HEADER + values.len() * 8 + bytes.len());
        wire.push(TAG);
        wire.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        wire.extend_from_slice(&(values.len() as u16).to_le_bytes());
        for value in values {
            wire.extend_from_slice(&(*value as u64).to_le_bytes());
        }
        wire.extend_from_slice(bytes);
        wire
    };
    let mut sent = 0;
    while sent < wire.len() {
        match stream.write(&wire[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                sent += n;
                if let Some(given) = given.as_mut() {
                    given.delivered();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes: `Ok(false)` at end-of-file before the first byte,
/// `UnexpectedEof` after it.
fn read_exact(stream: &Stream, buf: &mut [u8], started: bool) -> io::Result<bool> {
    match read_some(stream, buf) {
        (_, None) => Ok(true),
        (0, Some(e)) if !started && e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        (_, Some(e)) => Err(e),
    }
}

/// Receives one negotiation frame of at most `buf.len()` bytes and `max_handles` handles
/// (`None`: end-of-file). The handle values are adopted only from a peer of our own user and
/// only if plausible (`message::adopt`, the rule of message attachments), before anything else
/// about the frame is checked: a frame that is refused (too long, more handles than allowed,
/// cut short) closes every handle it named, up to [`MAX_HANDLES`] of them, as a refused message
/// does. Values past that many are never read (no sender of ours names more), so never closed.
pub(crate) fn recv_hello(
    stream: &Stream,
    buf: &mut [u8],
    handles: &mut Vec<OwnedHandle>,
    max_handles: usize,
) -> io::Result<Option<usize>> {
    let mut header = [0u8; HEADER];
    if !read_exact(stream, &mut header, false)? {
        return Ok(None);
    }
    if header[0] != TAG {
        return Err(policy::bad_tag(header[0]));
    }
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let count = usize::from(u16::from_le_bytes([header[5], header[6]]));
    let mut raw = [0u8; MAX_HANDLES * 8];
    let (got, cut) = read_some(stream, &mut raw[..count.min(MAX_HANDLES) * 8]);
    let values: Vec<u64> = raw[..got - got % 8]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    // Adopted (owned) before any other check, so that every handle named is closed on error.
    let adopted = adopt(stream, &values)?;
    if let Some(e) = cut {
        return Err(e);
    }
    if len > buf.len() || count > MAX_HANDLES {
        return Err(invalid(&format!(
            "a negotiation frame of {len} bytes with {count} handles: too large; the handles \
             it named were closed"
        )));
    }
    if adopted.len() > max_handles {
        return Err(policy::too_many_handles(max_handles));
    }
    read_exact(stream, &mut buf[..len], true)?;
    handles.extend(adopted);
    Ok(Some(len))
}

/// Reads up to `buf.len()` bytes: how many arrived, and the error (`UnexpectedEof` at
/// end-of-file) that stopped it short.
fn read_some(stream: &Stream, buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => return (got, Some(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (got, Some(e)),
        }
    }
    (got, None)
}

// ---- wake-ups and liveness ----

/// An unnamed auto-reset event, not signalled, not inheritable.
fn auto_reset_event() -> io::Result<OwnedHandle> {
    // SAFETY: the security attributes and the name are null, which the call allows (not
    // inheritable, unnamed); the other arguments are integers. The new handle is ours alone,
    // taken over by `owned_handle`.
    owned_handle(unsafe { CreateEventW(ptr::null(), 0, 0, ptr::null()) })
}

/// Our side of the wake-up channel.
pub(crate) struct Wakes {
    /// The events our reader and writer sleep on (index: `Waiter as usize`).
    mine: [OwnedHandle; 2],
    /// The events the peer's reader and writer sleep on, which we set.
    theirs: [OwnedHandle; 2],
    /// Manual-reset, signalled once the monitor's read completes: the peer is gone.
    gone: OwnedHandle,
    /// A duplicate of the pipe handle, for the monitor's read.
    pipe: OwnedHandle,
    monitor: OnceLock<Monitor>,
}

impl std::fmt::Debug for Wakes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakes").finish_non_exhaustive()
    }
}

fn index(who: Waiter) -> usize {
    match who {
        Waiter::Reader => 0,
        Waiter::Writer => 1,
    }
}

/// The wake-up channel of an offer: four new events, ours and the peer's, and their
/// duplicates to send, in the order [offerer's reader, offerer's writer, answerer's reader,
/// answerer's writer].
pub(crate) fn wakes(stream: &Stream) -> io::Result<(Wakes, Vec<OsHandle>)> {
    let events = [
        auto_reset_event()?,
        auto_reset_event()?,
        auto_reset_event()?,
        auto_reset_event()?,
    ];
    let send = events
        .iter()
        .map(|e| e.try_clone())
        .collect::<io::Result<Vec<_>>>()?;
    let [a, b, c, d] = events;
    Ok((Wakes::new(stream, [a, b], [c, d])?, send))
}

/// The answering side's channel from the offer's four handles, if they are events.
pub(crate) fn wakes_from_peer(
    stream: &Stream,
    handles: Vec<OsHandle>,
) -> io::Result<Option<Wakes>> {
    let Ok([a, b, c, d]) = <[OwnedHandle; 4]>::try_from(handles) else {
        return Ok(None);
    };
    for event in [&a, &b, &c, &d] {
        // Only an event (with EVENT_MODIFY_STATE) can be reset; nothing is signalled yet.
        // SAFETY: `event` borrows an OwnedHandle of `handles`, held here, so it is open for
        // the call; no memory is passed. (A handle that is not an event just fails.)
        if unsafe { ResetEvent(event.as_raw_handle() as HANDLE) } == 0 {
            return Ok(None);
        }
    }
    Ok(Some(Wakes::new(stream, [c, d], [a, b])?))
}

impl Wakes {
    fn new(stream: &Stream, mine: [OwnedHandle; 2], theirs: [OwnedHandle; 2]) -> io::Result<Wakes> {
        Ok(Wakes {
            mine,
            theirs,
            gone: overlapped::new_event()?,
            pipe: stream.as_handle().try_clone_to_owned()?,
            monitor: OnceLock::new(),
        })
    }

    fn signal_gone(&self) {
        // SAFETY: `self.gone` is an OwnedHandle held by `self`, so the event is open for the
        // call; no memory is passed.
        unsafe { SetEvent(self.gone.as_raw_handle() as HANDLE) };
    }

    fn is_gone(&self) -> bool {
        // SAFETY: `self.gone` is an OwnedHandle held by `self`, so the event is open for the
        // call; no memory is passed.
        unsafe { WaitForSingleObject(self.gone.as_raw_handle() as HANDLE, 0) == WAIT_OBJECT_0 }
    }
}

/// The monitor's read: its `OVERLAPPED` and 1-byte buffer, which the kernel writes while the
/// read is pending (hence `UnsafeCell`, and a heap address that never moves).
struct MonitorIo {
    overlapped: UnsafeCell<OVERLAPPED>,
    byte: UnsafeCell<u8>,
}

/// The pending read on the pipe that reports the peer's end.
struct Monitor {
    io: Box<MonitorIo>,
    /// Whether a read was started (pending, or completed at once): `drop` must then see it
    /// finished before the buffer is freed.
    started: bool,
}

// SAFETY: after `start`, only the kernel writes `io` (until `drop` has waited for the read to
// finish); Rust code only passes its address to CancelIoEx / GetOverlappedResult.
unsafe impl Send for Monitor {}
// SAFETY: no `&Monitor` method reads or writes `io` (the kernel writes it); shared access
// only passes its address to CancelIoEx / GetOverlappedResult / `is_pending`, which is fine
// from any thread.
unsafe impl Sync for Monitor {}

/// Starts the monitor (once the negotiation is over: from now on the pipe carries nothing).
/// If the read cannot be started, the peer counts as gone.
///
/// Windows cancels a thread's pending I/O when the thread exits (Wine too: the read then ends
/// with `STATUS_CANCELLED`), and the thread that negotiates may be short-lived, so the read is
/// issued by [`issuer`]'s thread, which never exits.
pub(crate) fn watch(_stream: &Stream, wakes: &Wakes) {
    wakes.monitor.get_or_init(|| {
        let io = Box::new(MonitorIo {
            overlapped: UnsafeCell::new(OVERLAPPED {
                // Low bit set: no completion packet to a port the pipe may be associated with
                // (see `overlapped.rs`); waits on the event ignore that bit.
                hEvent: (wakes.gone.as_raw_handle() as usize | 1) as HANDLE,
                ..OVERLAPPED::default()
            }),
            byte: UnsafeCell::new(0),
        });
        let (done, started) = mpsc::sync_channel(1);
        let job = StartRead {
            pipe: wakes.pipe.as_raw_handle() as usize,
            io: &*io as *const MonitorIo as usize,
            done,
        };
        let started = match issuer() {
            Some(issuer) if issuer.send(job).is_ok() => started.recv().unwrap_or(false),
            _ => false,
        };
        if !started {
            // End-of-file already, or no read possible: either way the peer is gone for us.
            wakes.signal_gone();
        }
        Monitor { io, started }
    });
}

/// A monitor read for the [`issuer`] thread to start: the pipe handle and the `MonitorIo`'s
/// address (both kept alive by the `Wakes` that waits for `done`), and where to say whether
/// the read started.
struct StartRead {
    pipe: usize,
    io: usize,
    done: mpsc::SyncSender<bool>,
}

/// The process's one thread that issues monitor reads and never exits (so that no read is
/// cancelled by its thread's end); `None` if it could not be started.
fn issuer() -> Option<&'static mpsc::Sender<StartRead>> {
    static ISSUER: OnceLock<Option<mpsc::Sender<StartRead>>> = OnceLock::new();
    ISSUER
        .get_or_init(|| {
            let (jobs, queue) = mpsc::channel::<StartRead>();
            std::thread::Builder::new()
                .name("localsock-shm-monitor".into())
                .spawn(move || {
                    for job in queue {
                        let _ = job.done.send(start_read(job.pipe, job.io));
                    }
                })
                .ok()?;
            Some(jobs)
        })
        .as_ref()
}

/// Issues the monitor's 1-byte overlapped read; whether it started (pending, or done at once).
fn start_read(pipe: usize, io: usize) -> bool {
    let io = io as *const MonitorIo;
    // SAFETY: `io` points at a live `MonitorIo` whose owner waits (in `watch`) for our answer
    // and then keeps it on the heap until `Wakes::drop` has seen this read finish; `pipe` is
    // the `Wakes`' own handle, closed only after that. The buffer and the OVERLAPPED are
    // written only by the kernel (`UnsafeCell`).
    let ok = unsafe {
        ReadFile(
            pipe as HANDLE,
            (*io).byte.get(),
            1,
            ptr::null_mut(),
            (*io).overlapped.get(),
        )
    };
    ok != 0 || last_error() == ERROR_IO_PENDING
}

impl Drop for Wakes {
    fn drop(&mut self) {
        let Some(monitor) = self.monitor.get() else {
            return;
        };
        if !monitor.started {
            return;
        }
        let pipe = self.pipe.as_raw_handle() as HANDLE;
        let ov = monitor.io.overlapped.get();
        // SAFETY: `pipe` is `self.pipe`, an OwnedHandle still held (fields drop after this),
        // so it is open; `ov` points into the boxed MonitorIo, alive until `self.monitor`
        // drops after this; the cancel only reads it to find the read on `pipe` (a finished
        // read: ERROR_NOT_FOUND, harmless).
        unsafe { CancelIoEx(pipe, ov) };
        let mut moved = 0u32;
        // SAFETY: `pipe` (`self.pipe`, still held) is open and `ov` (in the box, alive until
        // `self.monitor` drops) is alive; `moved` is a live local `u32`. bWait = TRUE returns only once the read is over, so the kernel no longer
        // writes `io` when it is freed (after this) and `pipe` is closed (after this).
        unsafe { GetOverlappedResult(pipe, ov, &mut moved, 1) };
        while overlapped::is_pending(ov) {
            std::thread::yield_now();
        }
    }
}

/// Wakes the peer's reader or writer. `BrokenPipe` once the peer is gone.
pub(crate) fn wake(_stream: &Stream, wakes: &Wakes, peer: Waiter) -> io::Result<()> {
    if wakes.is_gone() {
        return Err(io::ErrorKind::BrokenPipe.into());
    }
    // SAFETY: `wakes.theirs[..]` is an OwnedHandle held by `wakes`, borrowed for the call, so
    // the event is open; no memory is passed.
    cvt(unsafe { SetEvent(wakes.theirs[index(peer)].as_raw_handle() as HANDLE) })
}

/// Waits on our reader's or writer's event and the monitor: `Ok(true)` woken, `Ok(false)`
/// the peer is gone. A reader waits at most the stream's read timeout (`TimedOut`).
pub(crate) fn wait(stream: &Stream, wakes: &Wakes, me: Waiter) -> io::Result<bool> {
    let timeout = match me {
        Waiter::Reader => stream.read_wait().0,
        Waiter::Writer => None,
    };
    match wait_for(wakes, me, overlapped::wait_millis(timeout))? {
        Some(woken) => Ok(woken),
        None => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "shared memory: the read timed out",
        )),
    }
}

/// Takes our reader's or writer's pending wake-up without blocking: `Ok(false)` the peer is
/// gone.
pub(crate) fn drain(_stream: &Stream, wakes: &Wakes, me: Waiter) -> io::Result<bool> {
    Ok(wait_for(wakes, me, 0)?.unwrap_or(true))
}

/// One `WaitForMultipleObjects` on our event and the monitor's: `Some(true)` woken,
/// `Some(false)` gone, `None` timed out.
fn wait_for(wakes: &Wakes, me: Waiter, millis: u32) -> io::Result<Option<bool>> {
    let handles = [
        wakes.mine[index(me)].as_raw_handle() as HANDLE,
        wakes.gone.as_raw_handle() as HANDLE,
    ];
    // SAFETY: `handles` is a live local array of 2 handles, the count passed; both are events
    // held as OwnedHandles by `wakes`, borrowed for the whole call, so they stay open.
    let waited = unsafe { WaitForMultipleObjects(2, handles.as_ptr(), 0, millis) };
    match waited {
        WAIT_OBJECT_0 => Ok(Some(true)),
        w if w == WAIT_OBJECT_0 + 1 => Ok(Some(false)),
        WAIT_TIMEOUT => Ok(None),
        WAIT_FAILED => Err(io::Error::last_os_error()),
        other => Err(io::Error::other(format!(
            "WaitForMultipleObjects returned {other:#x}"
        ))),
    }
}

/// The peer broke the protocol: our waiters wake (the monitor is cancelled and "gone" set),
/// and on the server end the pipe is disconnected, so the peer reads end-of-file at once (a
/// client end cannot disconnect: the peer sees the end when the stream is dropped).
pub(crate) fn close_path(stream: &Stream, wakes: &Wakes) {
    wakes.signal_gone();
    if let Some(monitor) = wakes.monitor.get() {
        if monitor.started {
            // SAFETY: `wakes.pipe` is an OwnedHandle held by `wakes`, borrowed for the call, so
            // it is open; the OVERLAPPED is in the boxed MonitorIo of the read started on it,
            // alive as long as `wakes`; the cancel only reads it (a finished read:
            // ERROR_NOT_FOUND, harmless).
            unsafe {
                CancelIoEx(
                    wakes.pipe.as_raw_handle() as HANDLE,
                    monitor.io.overlapped.get(),
                )
            };
        }
    }
    if stream.is_server() {
        // SAFETY: the handle is borrowed from `stream` for the call, so it stays open;
        // `DisconnectNamedPipe` takes no pointer.
        unsafe { DisconnectNamedPipe(stream.as_handle().as_raw_handle() as HANDLE) };
    }
}
