//! [`LocalStream`], its [`ConnectOptions`], and [`PeerCredentials`].

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{self, Op};
use crate::identity::{self, ServerIdentity};
use crate::sys::{self, ConnectFailure, Kind};
use crate::Name;

/// The deadline of a connect when none is set: 5 seconds.
///
/// It bounds only the waiting for a *busy* server (a full backlog on Unix, all pipe instances
/// taken on Windows), and for a missing one with [`ConnectOptions::wait_for_server`]; a plain
/// "no server" or "access denied" fails at once.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(1);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_millis(50);

/// A connected local socket: a Unix domain stream socket, or a Windows named-pipe client or
/// server end. Blocking by default; `Read` and `Write` work on `LocalStream` and on
/// `&LocalStream`, so one thread can read while another writes.
///
/// Dropping the stream closes it; data already written is delivered to the peer first.
/// `LocalStream` is `Send + Sync`, and every method takes `&self` or `&mut self` without
/// hidden shared state, so sharing it between threads is sound.
///
/// # Examples
///
/// ```no_run
/// use std::io::{Read, Write};
/// use localsock::{LocalStream, Name};
///
/// # fn main() -> std::io::Result<()> {
/// let mut stream = LocalStream::connect(&Name::new("example-svc")?)?;
/// stream.write_all(b"ping")?;
/// let mut reply = [0; 4];
/// stream.read_exact(&mut reply)?;
/// # Ok(()) }
/// ```
pub struct LocalStream {
    pub(crate) inner: sys::Stream,
}

impl LocalStream {
    /// Connects to the server at `name` with the default options: a busy server is retried
    /// with backoff for up to [`DEFAULT_CONNECT_TIMEOUT`]; no server is an error at once.
    ///
    /// Corresponds to `socket(2)`+`connect(2)` on Unix, `CreateFileW` on Windows.
    ///
    /// # Errors
    ///
    /// As [`ConnectOptions::connect`]: `NotFound` (no such socket or pipe),
    /// `ConnectionRefused` (a stale socket file: no server listens), `PermissionDenied`,
    /// `TimedOut` (the server stayed busy). Every message names the endpoint.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> std::io::Result<()> {
    /// let stream = localsock::LocalStream::connect(&localsock::Name::new("example-svc")?)?;
    /// stream.set_read_timeout(Some(std::time::Duration::from_secs(1)))?;
    /// # Ok(()) }
    /// ```
    pub fn connect(name: &Name) -> io::Result<LocalStream> {
        ConnectOptions::new().connect(name)
    }

    /// Makes a second handle to the same connection (`dup` / `DuplicateHandle`).
    ///
    /// # Errors
    ///
    /// The OS error when the process is out of file descriptors or handles.
    pub fn try_clone(&self) -> io::Result<LocalStream> {
        self.inner.try_clone().map(|inner| LocalStream { inner })
    }

    /// Shuts down the read half, the write half or both. After `Shutdown::Write` the peer reads
    /// EOF while this side can still read what the peer sends.
    ///
    /// Corresponds to `shutdown(2)` on Unix.
    ///
    /// # Errors
    ///
    /// `NotConnected` if the peer is already gone (Unix), or the OS error.
    ///
    /// # Platform-specific behavior
    ///
    /// On Windows, named pipes have no half-close. On the server end, `Shutdown::Write` waits
    /// until the client has read everything written (bounded by the
    /// [write timeout](Self::set_write_timeout): `TimedOut`, nothing discarded), then
    /// disconnects the pipe: from then on this end reads EOF too, and unread data from the
    /// client is dropped. A localsock (or interprocess) client then reads EOF; a client that
    /// maps only `ERROR_BROKEN_PIPE` to EOF (std's `File`, tokio, mio) reads all the data and
    /// then gets error 233 (`ERROR_PIPE_NOT_CONNECTED`). To give *every* client a plain EOF,
    /// drop the stream instead: the data written stays readable, then the client reads EOF.
    /// On the client end, `Shutdown::Write` only makes later writes fail; the server reads EOF
    /// when every handle of the client stream is closed. See the `os::windows` module (Windows
    /// builds of these docs).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// Sets a timeout for reads; `None` blocks forever. A read that times out returns
    /// `WouldBlock` (Unix, as `std`) or `TimedOut`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration, as `std::net`.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.inner.set_read_timeout(timeout)
    }

    /// Sets a timeout for writes; `None` blocks forever.
    ///
    /// A write that times out sent nothing (`TimedOut` on Windows, `WouldBlock` on Unix); one
    /// that sent part of the buffer returns that count. On Windows a write with a timeout (or
    /// in non-blocking mode) moves at most the pipe's buffer size per call, which is what
    /// keeps the count exact there; `write_all` loops as usual.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration, as `std::net`.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.inner.set_write_timeout(timeout)
    }

    /// The read timeout, if any.
    ///
    /// # Errors
    ///
    /// The OS error, if the timeout cannot be read back.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        self.inner.read_timeout()
    }

    /// The write timeout, if any.
    ///
    /// # Errors
    ///
    /// The OS error, if the timeout cannot be read back.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        self.inner.write_timeout()
    }

    /// Moves the stream into or out of non-blocking mode; in non-blocking mode reads and writes
    /// that would wait return `WouldBlock`.
    ///
    /// # Errors
    ///
    /// The OS error.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.set_nonblocking(nonblocking)
    }

    /// Who is on the other end, as the OS saw it when the connection was made (who called
    /// `connect`, not who holds the connection now: see [`PeerCredentials`]).
    ///
    /// Corresponds to `SO_PEERCRED` on Linux, `getpeereid` (+ `LOCAL_PEERPID`) on macOS/BSD,
    /// `GetNamedPipeClientProcessId`/`GetNamedPipeServerProcessId` on Windows. Authorise on
    /// [`uid`](PeerCredentials::uid) / [`user_sid`](PeerCredentials::user_sid), not on the pid:
    /// pids are reused.
    ///
    /// # Errors
    ///
    /// The OS error, e.g. when the connection is closed.
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.inner.peer_credentials().map(PeerCredentials::from)
    }
}

pub(crate) fn check_timeout(timeout: Option<Duration>) -> io::Result<()> {
    if timeout == Some(Duration::ZERO) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        ));
    }
    Ok(())
}

impl fmt::Debug for LocalStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl Read for LocalStream {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
    #[inline]
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.inner.read_vectored(bufs)
    }
}

impl Read for &LocalStream {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
    #[inline]
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.inner.read_vectored(bufs)
    }
}

impl Write for LocalStream {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.inner.write_vectored(bufs)
    }
    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Write for &LocalStream {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.inner.write_vectored(bufs)
    }
    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// How to connect: the deadline, the retry backoff, and whether to wait for a server that is
/// not there yet.
///
/// Every connect is bounded: the whole call, retries included, ends by the deadline. A busy
/// server (a full backlog on Unix, all pipe instances taken on Windows) is retried with capped
/// exponential backoff and jitter; with [`wait_for_server`](Self::wait_for_server) so is a
/// server that does not exist yet (or left a stale socket). When the deadline passes the error
/// is `TimedOut` and says how many attempts were made over how long, and the last OS error. A
/// stream is returned only when it is connected.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use localsock::{ConnectOptions, Name};
///
/// # fn main() -> std::io::Result<()> {
/// // Start before the server: wait up to 2 s for it to appear.
/// let stream = ConnectOptions::new()
///     .timeout(Duration::from_secs(2))
///     .wait_for_server(true)
///     .connect(&Name::new("example-svc")?)?;
/// println!("server pid: {:?}", stream.peer_credentials()?.pid());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub(crate) timeout: Duration,
    pub(crate) wait_for_server: bool,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    /// `None`: the default for the name ([`ServerIdentity::default_for`]).
    pub(crate) server_identity: Option<ServerIdentity>,
    #[cfg(windows)]
    pub(crate) windows: crate::os::windows::ConnectOptionsWindows,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions::new()
    }
}

impl ConnectOptions {
    /// The defaults: [`DEFAULT_CONNECT_TIMEOUT`], no waiting for a missing server, backoff
    /// from 1 ms doubling up to 50 ms.
    pub fn new() -> ConnectOptions {
        ConnectOptions {
            timeout: DEFAULT_CONNECT_TIMEOUT,
            wait_for_server: false,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            server_identity: None,
            #[cfg(windows)]
            windows: Default::default(),
        }
    }

    /// Bounds the whole connect, retries included. `Duration::ZERO` means one attempt.
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = timeout;
        self
    }

    /// Also retry, inside the same deadline, when there is no server yet (`NotFound`) or only
    /// a stale socket file (`ConnectionRefused`), so a client can start before its server.
    pub fn wait_for_server(&mut self, wait: bool) -> &mut Self {
        self.wait_for_server = wait;
        self
    }

    /// The retry backoff: the first pause, doubled after each attempt up to `max`. Each pause
    /// is randomly shortened by up to half (jitter) so that many clients do not retry in step.
    pub fn backoff(&mut self, initial: Duration, max: Duration) -> &mut Self {
        self.backoff_initial = initial.max(Duration::from_micros(1));
        self.backoff_max = max.max(self.backoff_initial);
        self
    }

    /// Who the server must be: checked on the connected socket or pipe before the stream is
    /// returned, so nothing is sent to a server run by someone else. When not set, short names
    /// ([`Name::new("svc")`](Name::new)) require
    /// [`ServerIdentity::CurrentUserOrAdmin`] and explicit paths and pipe names
    /// [`ServerIdentity::Any`]; see [`ServerIdentity`] for what is compared on each platform.
    pub fn server_identity(&mut self, identity: ServerIdentity) -> &mut Self {
        self.server_identity = Some(identity);
        self
    }

    /// These options as the plain data a backend's one connect attempt takes.
    pub(crate) fn connect_spec(&self, kind: Kind) -> sys::ConnectSpec {
        sys::ConnectSpec {
            kind,
            #[cfg(windows)]
            impersonation: self.windows.impersonation_level.into(),
        }
    }

    /// The server identity this connect to `name` requires (set, or the default for `name`).
    pub(crate) fn required_identity(&self, name: &Name) -> ServerIdentity {
        self.server_identity
            .clone()
            .unwrap_or_else(|| ServerIdentity::default_for(name))
    }

    /// Connects to `name`.
    ///
    /// Corresponds to `socket(2)`+`connect(2)` on Unix, `CreateFileW` (+ `WaitNamedPipeW`
    /// slices while busy) on Windows.
    ///
    /// # Errors
    ///
    /// - `NotFound`: no socket file or pipe at the name (after the deadline, with
    ///   `wait_for_server`).
    /// - `ConnectionRefused`: a socket file with no server behind it (stale).
    /// - `PermissionDenied`: the socket or pipe does not let this user in, or the server is not
    ///   the one [`server_identity`](Self::server_identity) requires (the message then names
    ///   the user found and the one required).
    /// - `TimedOut`: the server stayed busy (or absent, with `wait_for_server`) until the
    ///   deadline; the message gives the attempts, the time and the last OS error.
    /// - `InvalidInput`: the name's kind does not exist on this platform.
    ///
    /// Every message names the endpoint and the operation.
    pub fn connect(&self, name: &Name) -> io::Result<LocalStream> {
        self.connect_kind(name, Kind::Bytes)
            .map(|inner| LocalStream { inner })
    }

    /// The bounded connect loop, for byte streams and message streams alike.
    pub(crate) fn connect_kind(&self, name: &Name, kind: Kind) -> io::Result<sys::Stream> {
        let mut retry = Retry::new(self, name);
        let required = self.required_identity(name);
        loop {
            match name
                .connect_addr()
                .and_then(|addr| sys::Stream::connect(addr, self.connect_spec(kind)))
            {
                Ok(inner) => {
                    identity::check(&required, name, || inner.server_user())?;
                    return Ok(inner);
                }
                Err(failure) => {
                    let wait = retry.failed(failure)?;
                    if wait.busy {
                        sys::Stream::wait_busy(name.addr(), wait.nap);
                    } else {
                        thread::sleep(wait.nap);
                    }
                }
            }
        }
    }
}

/// The connect retry policy: the deadline, the capped exponential backoff with jitter, and
/// which failures are worth another attempt. Shared by the blocking and the async connect,
/// which differ only in how they wait.
pub(crate) struct Retry<'a> {
    name: &'a Name,
    wait_for_server: bool,
    backoff_max: Duration,
    start: Instant,
    deadline: Option<Instant>,
    attempts: u32,
    pause: Duration,
    /// Seeded on the first failed attempt: a connect that succeeds at once pays nothing.
    jitter: Option<Jitter>,
}

/// What to do after a failed attempt: wait `nap`, then try again.
pub(crate) struct Wait {
    /// The server exists but is busy (as opposed to absent, with `wait_for_server`).
    pub(crate) busy: bool,
    /// How long to wait; never past the deadline.
    pub(crate) nap: Duration,
}

impl<'a> Retry<'a> {
    /// Starts the clock: the deadline is `opts.timeout` from now.
    pub(crate) fn new(opts: &ConnectOptions, name: &'a Name) -> Retry<'a> {
        let start = Instant::now();
        Retry {
            name,
            wait_for_server: opts.wait_for_server,
            backoff_max: opts.backoff_max,
            start,
            deadline: start.checked_add(opts.timeout),
            attempts: 0,
            pause: opts.backoff_initial,
            jitter: None,
        }
    }

    /// Records a failed attempt: the final error (with context), or how long to wait before
    /// the next attempt.
    pub(crate) fn failed(&mut self, failure: ConnectFailure) -> io::Result<Wait> {
        self.attempts += 1;
        let (busy, last) = match failure {
            ConnectFailure::Fatal(err) => return Err(error::context(err, Op::Connect, self.name)),
            ConnectFailure::NoServer(err) if !self.wait_for_server => {
                return Err(error::context(err, Op::Connect, self.name))
            }
            ConnectFailure::NoServer(err) => (false, err),
            ConnectFailure::Busy(err) => (true, err),
        };
        let now = Instant::now();
        let left = match self.deadline {
            Some(deadline) if now < deadline => deadline - now,
            Some(_) => {
                let elapsed = now - self.start;
                return Err(timed_out(self.name, self.attempts, elapsed, busy, last));
            }
            None => Duration::MAX,
        };
        let nap = self
            .jitter
            .get_or_insert_with(Jitter::new)
            .shorten(self.pause)
            .min(left);
        self.pause = self.pause.saturating_mul(2).min(self.backoff_max);
        Ok(Wait { busy, nap })
    }
}

fn timed_out(
    name: &Name,
    attempts: u32,
    elapsed: Duration,
    busy: bool,
    last: io::Error,
) -> io::Error {
    let what = if busy {
        "the server stayed busy"
    } else {
        "no server appeared"
    };
    error::context_with(
        io::Error::new(io::ErrorKind::TimedOut, last),
        Op::Connect,
        name,
        &format!(
            "timed out: {what} through {attempts} attempt{} over {} ms; last error",
            if attempts == 1 { "" } else { "s" },
            elapsed.as_millis()
        ),
    )
}

/// A tiny xorshift generator for backoff jitter. Not for anything secret.
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let here = &0u8 as *const u8 as u64;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
        Jitter((here ^ nanos ^ u64::from(std::process::id())) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A random duration in `[d/2, d]`.
    fn shorten(&mut self, d: Duration) -> Duration {
        let half = d / 2;
        let nanos = half.as_nanos().min(u128::from(u64::MAX)) as u64;
        half + Duration::from_nanos(if nanos == 0 {
            0
        } else {
            self.next() % nanos.saturating_add(1)
        })
    }
}

/// The identity of the process on the other end of a [`LocalStream`], as the OS recorded it
/// when the connection was made.
///
/// The kernel records them at `connect` (for a server, those of the process that called
/// `listen`), so a peer cannot claim another user's identity. But they name **who made the
/// connection, not who holds it now**: a connection handed on with `SCM_RIGHTS`, inherited
/// across `fork` or kept over `exec` of another program still shows the original process's
/// uid and pid. Authorise on the uid (the user who chose to hand it on answers for it), never
/// on the pid. Inside a Linux user namespace, users the namespace does not map show as the
/// overflow uid (65534, `/proc/sys/kernel/overflowuid`), whoever they are.
///
/// Fields the platform does not tell are `None`: macOS/BSD have no pid for some sockets, and
/// Windows has no uid/gid (it has a user SID instead).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerCredentials {
    pub(crate) pid: Option<u32>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) sid: Option<String>,
}

impl From<sys::Credentials> for PeerCredentials {
    fn from(creds: sys::Credentials) -> PeerCredentials {
        PeerCredentials {
            pid: creds.pid,
            uid: creds.uid,
            gid: creds.gid,
            sid: creds.sid,
        }
    }
}

impl PeerCredentials {
    /// The peer's process id. Pids are reused: use it for logs, not to authorise.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }
    /// The peer's effective user id (Unix).
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }
    /// The peer's effective group id (Unix).
    pub fn gid(&self) -> Option<u32> {
        self.gid
    }
    /// The peer's user SID in string form (`S-1-5-21-...`), where Windows tells it.
    pub fn user_sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// This process's own credentials, as its peers see them: pid, effective uid and gid on
    /// Unix; pid and user SID on Windows.
    ///
    /// # Errors
    ///
    /// On Windows, the OS error if the process token cannot be read. Never on Unix.
    ///
    /// # Examples
    ///
    /// Serve only clients of this process's own user (what
    /// [`ListenerOptions::require_same_user`](crate::ListenerOptions::require_same_user) does
    /// for a whole listener):
    ///
    /// ```
    /// use localsock::PeerCredentials;
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let me = PeerCredentials::current()?;
    /// # let peer = me.clone();
    /// if !peer.same_user(&me) {
    ///     return Err(std::io::ErrorKind::PermissionDenied.into());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn current() -> io::Result<PeerCredentials> {
        sys::own_credentials().map(PeerCredentials::from)
    }

    /// Whether `self` and `other` run as the same user: their uids are known and equal (Unix),
    /// or their user SIDs are known and equal (Windows). Unknown fields never match.
    pub fn same_user(&self, other: &PeerCredentials) -> bool {
        match (self.uid, other.uid, self.user_sid(), other.user_sid()) {
            (Some(a), Some(b), _, _) => a == b,
            (None, None, Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range() {
        let mut j = Jitter::new();
        let d = Duration::from_millis(10);
        for _ in 0..1000 {
            let s = j.shorten(d);
            assert!(s >= d / 2 && s <= d, "{s:?}");
        }
        assert_eq!(j.shorten(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn backoff_is_sanitised() {
        let mut o = ConnectOptions::new();
        o.backoff(Duration::ZERO, Duration::ZERO);
        assert!(o.backoff_initial > Duration::ZERO);
        assert!(o.backoff_max >= o.backoff_initial);
    }
}
