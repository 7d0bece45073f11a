//! A connected named-pipe handle (client or server end), and the client's connect.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::Shutdown;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, OwnedHandle};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_NO_DATA, ERROR_PATH_NOT_FOUND,
    ERROR_PIPE_BUSY, ERROR_SEM_TIMEOUT, GENERIC_READ, HANDLE, WIN32_ERROR,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_OVERLAPPED, FILE_WRITE_DATA, OPEN_EXISTING, SECURITY_ANONYMOUS,
    SECURITY_DELEGATION, SECURITY_IDENTIFICATION, SECURITY_IMPERSONATION, SECURITY_SQOS_PRESENT,
};
use windows_sys::Win32::System::Pipes::{
    GetNamedPipeClientProcessId, GetNamedPipeInfo, GetNamedPipeServerProcessId, WaitNamedPipeW,
    PIPE_SERVER_END,
};

use super::half_close::{is_closed, HalfClose};
use super::{cvt, last_error, overlapped, owned_handle, pipe_name, security, wide};
use crate::sys::Credentials;
use crate::sys::{Addr, ConnectFailure, ConnectSpec, Kind, SecurityQos};
use crate::sys::{ServerUser, UserId};

/// The desired access and the flags-and-attributes that a connect passes to `CreateFileW`
/// for this impersonation level.
///
/// - Access: `GENERIC_READ | FILE_WRITE_DATA`, not `GENERIC_WRITE`: that one includes
///   `FILE_APPEND_DATA` (= `FILE_CREATE_PIPE_INSTANCE`), which a server that lets other users
///   in rightly does not grant them; nor `FILE_WRITE_ATTRIBUTES`, which we never use, so a
///   server that grants only read and `FILE_WRITE_DATA` lets us in.
/// - Flags: `FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | <impersonation level>`
///   (`SECURITY_IDENTIFICATION` by default), so a server that squatted the name can learn who
///   we are but cannot act as us.
pub(crate) fn client_create_file_params(impersonation: SecurityQos) -> (u32, u32) {
    let access = GENERIC_READ | FILE_WRITE_DATA;
    let level = match impersonation {
        SecurityQos::Anonymous => SECURITY_ANONYMOUS,
        SecurityQos::Identification => SECURITY_IDENTIFICATION,
        SecurityQos::Impersonation => SECURITY_IMPERSONATION,
        SecurityQos::Delegation => SECURITY_DELEGATION,
    };
    let flags = FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | level;
    (access, flags)
}

thread_local! {
    // The pipe for which this thread's last `wait_busy` saw a free instance. If the next
    // connect then finds no pipe at all, the instance vanished between the wait and the open
    // (a server between two instances): that is "busy", not "no server".
    // The initializer is `const` already; clippy misreads the -Zbuild-std expansion.
    #[allow(clippy::missing_const_for_thread_local)]
    static FREE_AFTER_WAIT: RefCell<Option<String>> = const { RefCell::new(None) };
}

pub(crate) struct Stream {
    handle: OwnedHandle,
    shared: Arc<Shared>,
}

/// Settings shared by a stream and its clones, like the options of a socket.
struct Shared {
    /// Which end this is, and what was shut down.
    half: HalfClose,
    /// Timeouts in nanoseconds, 0 for none (a zero timeout is refused above).
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
    nonblocking: AtomicBool,
    /// The pipe's quota for data this end writes (its buffer size), 0 until first asked.
    write_quota: AtomicU32,
    /// A message stream's message that was read but not yet taken (see `message.rs`).
    pub(super) pending: Mutex<Option<super::message::Pending>>,
}

impl Stream {
    pub(super) fn new(handle: OwnedHandle, server: bool) -> Stream {
        Stream {
            handle,
            shared: Arc::new(Shared {
                half: HalfClose::new(server),
                read_timeout: AtomicU64::new(0),
                write_timeout: AtomicU64::new(0),
                nonblocking: AtomicBool::new(false),
                write_quota: AtomicU32::new(0),
                pending: Mutex::new(None),
            }),
        }
    }

    /// One `CreateFileW` on the pipe: overlapped, not inheritable, with the security QoS of
    /// the options. Never waits.
    pub(crate) fn connect(addr: &Addr, spec: ConnectSpec) -> Result<Stream, ConnectFailure> {
        let pipe = pipe_name(addr).map_err(ConnectFailure::Fatal)?;
        let wide_name = wide(pipe);
        let (access, flags) = client_create_file_params(spec.impersonation);
        // SAFETY: `wide_name` is a Vec<u16> held by this function, NUL-terminated by `wide`,
        // so the pointer is to a live string for the call; the security attributes and the
        // template are null, which the call allows (not inheritable, no template). The handle
        // returned is ours alone and is taken over by `owned_handle` below.
        let handle = unsafe {
            CreateFileW(
                wide_name.as_ptr(),
                access,
                0,
                ptr::null(),
                OPEN_EXISTING,
                flags,
                ptr::null_mut(),
            )
        };
        // Read the last error before anything else runs: thread-local access (TlsGetValue)
        // resets it.
        let opened = owned_handle(handle);
        let waited_free = FREE_AFTER_WAIT.with(|w| w.borrow_mut().take());
        match opened {
            Ok(handle) if spec.kind == Kind::Messages => {
                super::message::set_message_read_mode(handle.as_handle())
                    .map_err(ConnectFailure::Fatal)?;
                Ok(Stream::new(handle, false))
            }
            Ok(handle) => Ok(Stream::new(handle, false)),
            Err(err) => Err(classify(err, waited_free.as_deref() == Some(pipe))),
        }
    }

    /// Waits up to `slice` (at least 1 ms) for an instance of the pipe to be free.
    pub(crate) fn wait_busy(addr: &Addr, slice: Duration) {
        let Ok(pipe) = pipe_name(addr) else {
            return;
        };
        wait_busy_with(pipe, slice, wait_named_pipe);
    }

    fn wait_for(&self, timeout: &AtomicU64) -> Option<Duration> {
        if self.shared.nonblocking.load(Ordering::Relaxed) {
            return Some(Duration::ZERO);
        }
        get_timeout(timeout)
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.shared.half.read_is_shut() {
            return Ok(0);
        }
        loop {
            let timeout = self.wait_for(&self.shared.read_timeout);
            match overlapped::read(self.handle.as_handle(), buf, timeout) {
                // A successful 0-byte read is a peer's 0-byte write (Learn, `ReadFile`, on
                // pipes), not EOF, which is always ERROR_BROKEN_PIPE or
                // ERROR_PIPE_NOT_CONNECTED: read again.
                Ok(0) => continue,
                Ok(n) => return Ok(n as usize),
                Err(e) if is_closed(&e) => return Ok(0),
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        match bufs.iter_mut().find(|b| !b.is_empty()) {
            Some(buf) => self.read(buf),
            None => Ok(0),
        }
    }

    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.shared.half.check_write()?;
        if buf.is_empty() {
            // A zero-length write would make some readers see a 0-byte read, i.e. EOF.
            return Ok(0);
        }
        let timeout = self.wait_for(&self.shared.write_timeout);
        let buf = if timeout.is_some() {
            // A write that may be cancelled (timeout, non-blocking) is never longer than the
            // pipe's quota, so that the count is exact: npfs (and Wine) complete a pending write
            // as soon as its unread rest fits the quota, so one that fits it whole can only be
            // cancelled before the reader took any of it. A longer write could be cancelled
            // half read, and Windows would then report 0 bytes (or, on NT 4, all of them).
            &buf[..buf.len().min(self.write_quota() as usize)]
        } else {
            buf
        };
        match overlapped::write(self.handle.as_handle(), buf, timeout) {
            Ok(n) => Ok(n as usize),
            Err(e) if is_closed(&e) || e.raw_os_error() == Some(ERROR_NO_DATA as i32) => {
                Err(broken_pipe(e))
            }
            Err(e) => Err(e),
        }
    }

    /// The quota of the pipe's queue this end writes into: the server's out-buffer size on the
    /// server end, its in-buffer size on the client end (`GetNamedPipeInfo`); at least 1 (a
    /// pipe with no buffer completes a write only when it is read whole). 1 when unknown.
    fn write_quota(&self) -> u32 {
        let known = self.shared.write_quota.load(Ordering::Relaxed);
        if known != 0 {
            return known;
        }
        let (mut out_size, mut in_size) = (0u32, 0u32);
        // SAFETY: `self.handle` is an OwnedHandle borrowed through `&self`, so it stays open
        // for the call; `out_size` and `in_size` are live local `u32`s the call writes; the
        // other out-pointers are null, which the call allows (not asked for).
        let ok = unsafe {
            GetNamedPipeInfo(
                self.handle.as_raw_handle() as HANDLE,
                ptr::null_mut(),
                &mut out_size,
                &mut in_size,
                ptr::null_mut(),
            )
        };
        let quota = if ok == 0 {
            1
        } else if self.shared.half.is_server() {
            out_size.max(1)
        } else {
            in_size.max(1)
        };
        self.shared.write_quota.store(quota, Ordering::Relaxed);
        quota
    }

    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(buf) => self.write(buf),
            None => Ok(0),
        }
    }

    /// Writes complete when the data is in the pipe's buffer, which the peer can read even
    /// after this end is closed: nothing to flush.
    pub(crate) fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    /// Named pipes have no half-close: the policy of `half_close` (shared with the async
    /// stream), waiting for the flush on this thread, at most the write timeout.
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let bound = self.wait_for(&self.shared.write_timeout);
        self.shared
            .half
            .shutdown(self.handle.as_handle(), how, bound)
    }

    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        // `OwnedHandle::try_clone` is DuplicateHandle(.., inherit = FALSE, SAME_ACCESS).
        Ok(Stream {
            handle: self.handle.try_clone()?,
            shared: Arc::clone(&self.shared),
        })
    }

    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        set_timeout(&self.shared.read_timeout, timeout);
        Ok(())
    }

    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        set_timeout(&self.shared.write_timeout, timeout);
        Ok(())
    }

    pub(crate) fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(get_timeout(&self.shared.read_timeout))
    }

    pub(crate) fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(get_timeout(&self.shared.write_timeout))
    }

    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.shared
            .nonblocking
            .store(nonblocking, Ordering::Relaxed);
        Ok(())
    }

    /// See [`pipe_peer_credentials`].
    pub(crate) fn peer_credentials(&self) -> io::Result<Credentials> {
        pipe_peer_credentials(self.handle.as_handle(), self.shared.half.is_server())
    }

    pub(crate) fn as_handle(&self) -> BorrowedHandle<'_> {
        self.handle.as_handle()
    }

    /// See [`server_user`].
    pub(crate) fn server_user(&self) -> io::Result<ServerUser> {
        server_user(self.handle.as_handle())
    }

    /// Whether this is the server end of the pipe.
    #[cfg(feature = "shm")]
    pub(super) fn is_server(&self) -> bool {
        self.shared.half.is_server()
    }

    /// The message read but not yet taken (message streams only).
    pub(super) fn pending(&self) -> std::sync::MutexGuard<'_, Option<super::message::Pending>> {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Writes one pipe message whole, in one `WriteFile` (message streams only): unlike
    /// [`write`](Self::write) it never shortens a timed write to the pipe's quota, since a
    /// shortened write would be a shorter message. A write that times out part-way returns
    /// the count Windows reports; the caller treats anything short as a failed message.
    pub(super) fn write_message(&self, buf: &[u8]) -> io::Result<usize> {
        self.shared.half.check_write()?;
        let timeout = self.wait_for(&self.shared.write_timeout);
        match overlapped::write(self.handle.as_handle(), buf, timeout) {
            Ok(n) => Ok(n as usize),
            Err(e) if is_closed(&e) || e.raw_os_error() == Some(ERROR_NO_DATA as i32) => {
                Err(broken_pipe(e))
            }
            Err(e) => Err(e),
        }
    }

    /// The read timeout to wait for (zero in non-blocking mode), and whether reads are shut.
    pub(super) fn read_wait(&self) -> (Option<Duration>, bool) {
        (
            self.wait_for(&self.shared.read_timeout),
            self.shared.half.read_is_shut(),
        )
    }
}

/// Who serves the pipe of a client handle: the pipe's owner (`GetSecurityInfo`). Windows keeps
/// one security descriptor per pipe name, set by whoever created its first instance, so the
/// owner is the user who holds the name, whichever instance we reached; a client opened with
/// `GENERIC_READ` has the `READ_CONTROL` this needs. The server's pid
/// (`GetNamedPipeServerProcessId`) is only reported: pids are reused, and the token of a
/// process we may not even open would say less than the owner. Also used by the async
/// streams.
pub(crate) fn server_user(pipe: BorrowedHandle<'_>) -> io::Result<ServerUser> {
    let owner = security::object_owner_sid(pipe)?;
    let mut pid = 0u32;
    // SAFETY: `pipe` is a BorrowedHandle, so it stays open for the call; `pid` is a live
    // local `u32`, the one value the call writes.
    let pid = cvt(unsafe { GetNamedPipeServerProcessId(pipe.as_raw_handle() as HANDLE, &mut pid) })
        .ok()
        .map(|()| pid);
    Ok(ServerUser {
        user: UserId::Sid(owner),
        pid,
    })
}

/// This process's user: the user SID of its token.
pub(crate) fn current_user() -> io::Result<UserId> {
    security::current_user_sid().map(UserId::Sid)
}

/// The owners trusted like the current user by
/// [`crate::ServerIdentity::CurrentUserOrAdmin`]: LocalSystem, and BUILTIN\Administrators
/// (the default owner of objects an elevated administrator creates).
pub(crate) fn admin_users() -> Vec<UserId> {
    vec![
        UserId::Sid("S-1-5-18".to_owned()),
        UserId::Sid("S-1-5-32-544".to_owned()),
    ]
}

/// The peer's pid (`GetNamedPipeClientProcessId` on the server end,
/// `GetNamedPipeServerProcessId` on the client end) and, where Windows tells, its user
/// SID: from the client's token through impersonation on the server end, else from the
/// peer process's token. Also used by the async streams (`async_pipe`).
pub(super) fn pipe_peer_credentials(
    pipe: BorrowedHandle<'_>,
    server: bool,
) -> io::Result<Credentials> {
    let raw = pipe.as_raw_handle() as HANDLE;
    let mut pid = 0u32;
    if server {
        // SAFETY: `raw` comes from the BorrowedHandle `pipe`, so it stays open for the call;
        // `pid` is a live local `u32`, the one value the call writes.
        cvt(unsafe { GetNamedPipeClientProcessId(raw, &mut pid) })?;
    } else {
        // SAFETY: `raw` comes from the BorrowedHandle `pipe`, so it stays open for the call;
        // `pid` is a live local `u32`, the one value the call writes.
        cvt(unsafe { GetNamedPipeServerProcessId(raw, &mut pid) })?;
    }
    let sid = if server {
        security::pipe_client_user_sid(pipe)
            .or_else(|_| security::process_user_sid(pid))
            .ok()
    } else {
        security::process_user_sid(pid).ok()
    };
    Ok(Credentials {
        pid: Some(pid),
        uid: None,
        gid: None,
        sid,
    })
}

/// Sorts a failed `CreateFileW` into retry classes.
fn classify(err: io::Error, waited_free: bool) -> ConnectFailure {
    let code = err.raw_os_error().map(|c| c as u32);
    match code {
        Some(ERROR_PIPE_BUSY) => ConnectFailure::Busy(err),
        // A free instance was there a moment ago: the server is between instances.
        Some(ERROR_FILE_NOT_FOUND) if waited_free => ConnectFailure::Busy(err),
        Some(ERROR_FILE_NOT_FOUND) | Some(ERROR_PATH_NOT_FOUND) => ConnectFailure::NoServer(err),
        // std already gives ERROR_ACCESS_DENIED the PermissionDenied kind.
        Some(ERROR_ACCESS_DENIED) => ConnectFailure::Fatal(err),
        _ => ConnectFailure::Fatal(err),
    }
}

/// `WaitNamedPipeW`: `Ok` when an instance is free, else the error code.
fn wait_named_pipe(pipe: &[u16], millis: u32) -> Result<(), WIN32_ERROR> {
    debug_assert_eq!(pipe.last(), Some(&0));
    // SAFETY: `pipe` is a &[u16] borrowed for the call and NUL-terminated (the only caller,
    // `wait_busy_with`, passes the output of `wide`; debug builds assert it), so the call
    // reads only inside it.
    if unsafe { WaitNamedPipeW(pipe.as_ptr(), millis) } != 0 {
        Ok(())
    } else {
        Err(last_error())
    }
}

/// [`Stream::wait_busy`] with the wait as a parameter (the seam its test uses).
///
/// `WaitNamedPipeW` returns at once when no instance exists (Learn, `WaitNamedPipeW`: "If no
/// instances of the specified named pipe exist, the WaitNamedPipe function returns
/// immediately, regardless of the time-out value"), and in some setups always (inside Windows
/// containers: dotnet/corefx#24594). Any failure other than the timeout
/// (`ERROR_SEM_TIMEOUT`) therefore sleeps the rest of the slice, so a busy pipe is never
/// retried in a tight loop.
fn wait_busy_with(
    pipe: &str,
    slice: Duration,
    wait: impl FnOnce(&[u16], u32) -> Result<(), WIN32_ERROR>,
) {
    let start = Instant::now();
    let wide_name = wide(pipe);
    let millis = overlapped::wait_millis(Some(slice)).max(1);
    let result = wait(&wide_name, millis);
    // Read the outcome into the thread-local only after the wait (its error is in `result`).
    FREE_AFTER_WAIT.with(|w| *w.borrow_mut() = result.is_ok().then(|| pipe.to_owned()));
    match result {
        Ok(()) | Err(ERROR_SEM_TIMEOUT) => {}
        Err(_) => {
            let slice = slice.max(Duration::from_millis(1));
            if let Some(rest) = slice.checked_sub(start.elapsed()) {
                std::thread::sleep(rest);
            }
        }
    }
}

/// `BrokenPipe`, keeping the OS error as the source (so its code stays reachable).
fn broken_pipe(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        e
    } else {
        crate::error::with_cause(io::ErrorKind::BrokenPipe, e.to_string(), e)
    }
}

fn set_timeout(slot: &AtomicU64, timeout: Option<Duration>) {
    let nanos = match timeout {
        None => 0,
        Some(d) => d.as_nanos().clamp(1, u128::from(u64::MAX)) as u64,
    };
    slot.store(nanos, Ordering::Relaxed);
}

fn get_timeout(slot: &AtomicU64) -> Option<Duration> {
    match slot.load(Ordering::Relaxed) {
        0 => None,
        nanos => Some(Duration::from_nanos(nanos)),
    }
}

impl From<OwnedHandle> for Stream {
    fn from(handle: OwnedHandle) -> Stream {
        let mut flags = 0u32;
        // SAFETY: `handle` is the OwnedHandle this function owns, so it is open for the call;
        // `flags` is a live local `u32` the call writes; the other out-pointers are null,
        // which the call allows (not asked for).
        let ok = unsafe {
            GetNamedPipeInfo(
                handle.as_raw_handle() as HANDLE,
                &mut flags,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        let server = ok != 0 && flags & PIPE_SERVER_END != 0;
        Stream::new(handle, server)
    }
}

impl From<Stream> for OwnedHandle {
    fn from(stream: Stream) -> OwnedHandle {
        stream.handle
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStream")
            .field("handle", &self.handle.as_raw_handle())
            .field(
                "end",
                &if self.shared.half.is_server() {
                    "server"
                } else {
                    "client"
                },
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use windows_sys::Win32::Foundation::GENERIC_WRITE;
    use windows_sys::Win32::Storage::FileSystem::FILE_APPEND_DATA;

    /// One attempt of each kind, with the default impersonation level.
    fn spec(kind: Kind) -> ConnectSpec {
        ConnectSpec {
            kind,
            impersonation: SecurityQos::Identification,
        }
    }

    fn os(code: u32) -> io::Error {
        io::Error::from_raw_os_error(code as i32)
    }

    #[test]
    fn connect_failures_are_sorted_into_retry_classes() {
        assert!(matches!(
            classify(os(ERROR_PIPE_BUSY), false),
            ConnectFailure::Busy(_)
        ));
        // No pipe: no server, unless a free instance answered the wait just before (the
        // server is between instances): then it is retried like a busy one.
        assert!(matches!(
            classify(os(ERROR_FILE_NOT_FOUND), false),
            ConnectFailure::NoServer(_)
        ));
        assert!(matches!(
            classify(os(ERROR_FILE_NOT_FOUND), true),
            ConnectFailure::Busy(_)
        ));
        match classify(os(ERROR_ACCESS_DENIED), true) {
            ConnectFailure::Fatal(e) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied),
            other => panic!("{other:?}"),
        }
        // ERROR_BAD_PATHNAME and friends are final, with their code.
        match classify(os(161), false) {
            ConnectFailure::Fatal(e) => assert_eq!(e.raw_os_error(), Some(161)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_free_instance_seen_by_wait_busy_is_remembered_for_the_next_connect_only() {
        let pipe = format!(r"\\.\pipe\localsock-unit-free-{}", std::process::id());
        FREE_AFTER_WAIT.with(|w| *w.borrow_mut() = Some(pipe.clone()));
        let name = Addr::Pipe(pipe);
        // The pipe does not exist: the first connect after the "free" wait is Busy...
        let first = Stream::connect(&name, spec(Kind::Bytes));
        assert!(matches!(first, Err(ConnectFailure::Busy(_))), "{first:?}");
        // ...and the memory is used up, so the next one is NoServer.
        let second = Stream::connect(&name, spec(Kind::Bytes));
        assert!(
            matches!(second, Err(ConnectFailure::NoServer(_))),
            "{second:?}"
        );
        // A wait on a missing pipe does not mark it free.
        Stream::wait_busy(&name, Duration::from_millis(5));
        let third = Stream::connect(&name, spec(Kind::Bytes));
        assert!(
            matches!(third, Err(ConnectFailure::NoServer(_))),
            "{third:?}"
        );
    }

    /// Issue 17.5: `WaitNamedPipeW` that fails at once (no instance, or the container bug of
    /// dotnet/corefx#24594) sleeps the rest of the slice, so the connect loop never spins on
    /// a busy pipe; a real timeout (`ERROR_SEM_TIMEOUT`) adds nothing. The stubbed wait is
    /// the seam: Wine's `WaitNamedPipeW` never returns early on a live pipe.
    #[test]
    fn a_wait_that_fails_at_once_still_takes_its_slice() {
        let slice = Duration::from_millis(60);
        for early in [ERROR_FILE_NOT_FOUND, ERROR_PIPE_BUSY, 1u32] {
            let mut calls = 0;
            let start = Instant::now();
            wait_busy_with(r"\\.\pipe\localsock-unit-early", slice, |name, millis| {
                calls += 1;
                assert_eq!(name.last(), Some(&0));
                assert_eq!(millis, 60);
                Err(early)
            });
            assert_eq!(calls, 1);
            assert!(
                start.elapsed() >= slice,
                "error {early}: returned after {:?}, before the {slice:?} slice",
                start.elapsed()
            );
            assert_eq!(FREE_AFTER_WAIT.with(|w| w.borrow().clone()), None);
        }
        // A free instance is remembered for the next connect, without sleeping.
        wait_busy_with(r"\\.\pipe\localsock-unit-early", slice, |_, _| Ok(()));
        assert_eq!(
            FREE_AFTER_WAIT.with(|w| w.borrow_mut().take()).as_deref(),
            Some(r"\\.\pipe\localsock-unit-early")
        );
    }

    #[test]
    fn identification_flags_ask_for_identification_only() {
        let (access, flags) = client_create_file_params(SecurityQos::Identification);
        assert_eq!(flags & SECURITY_SQOS_PRESENT, SECURITY_SQOS_PRESENT);
        assert_eq!(flags & 0x30000, SECURITY_IDENTIFICATION);
        assert_eq!(flags & FILE_FLAG_OVERLAPPED, FILE_FLAG_OVERLAPPED);
        assert_eq!(
            access & GENERIC_WRITE,
            0,
            "GENERIC_WRITE implies FILE_APPEND_DATA"
        );
        assert_eq!(access & FILE_APPEND_DATA, 0);
        assert_eq!(access & FILE_WRITE_DATA, FILE_WRITE_DATA);
        // Never used: asking for it would shut us out of servers that grant read and
        // FILE_WRITE_DATA only.
        assert_eq!(
            access & windows_sys::Win32::Storage::FileSystem::FILE_WRITE_ATTRIBUTES,
            0
        );
    }

    #[test]
    fn impersonation_level_is_passed_through() {
        let (_, flags) = client_create_file_params(SecurityQos::Anonymous);
        assert_eq!(flags & 0x30000, SECURITY_ANONYMOUS);
        assert_eq!(flags & SECURITY_SQOS_PRESENT, SECURITY_SQOS_PRESENT);
        let (_, flags) = client_create_file_params(SecurityQos::Impersonation);
        assert_eq!(flags & 0x30000, SECURITY_IMPERSONATION);
        let (_, flags) = client_create_file_params(SecurityQos::Delegation);
        assert_eq!(flags & 0x30000, SECURITY_DELEGATION);
    }
}
