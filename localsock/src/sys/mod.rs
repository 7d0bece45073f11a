//! The backend contract: what every per-OS backend exports, under the same crate-private names.
//!
//! The public types are one struct each wrapping a backend type (`LocalStream { inner:
//! sys::Stream }`); all policy that is the same everywhere (the connect deadline, backoff and
//! retry loop, error context, options) lives above this line, in portable code. A backend does
//! one OS operation per call and normalises the platform's quirks into `io::ErrorKind`s.
//!
//! # Required items
//!
//! - `SUN_PATH_LEN: usize` — size of `sockaddr_un::sun_path` (Unix only, used by [`crate::Name`]).
//! - `struct PrivateDir` and `enum DirUse` (Unix only) — the per-user private directory of
//!   short names: `PrivateDir::resolve()` finds it (creating nothing), and `check(DirUse)`
//!   verifies it again on every bind (creating it if missing) and connect (`NotFound` if
//!   missing). A short `Name` keeps its `PrivateDir`; the backend's `bind` and `connect` call
//!   `Name::check_private_dir` first.
//! - `struct Stream` — a connected, blocking, non-inheritable byte stream, `Send + Sync`:
//!   - `fn connect(name: &Name, opts: &ConnectOptions, kind: Kind) -> Result<Stream,
//!     ConnectFailure>`: one attempt, never blocking for long; the failure says whether it is
//!     worth retrying;
//!   - `fn wait_busy(name: &Name, slice: Duration)`: waits at most `slice` for a busy endpoint
//!     to accept again (a sleep on Unix, `WaitNamedPipeW` on Windows);
//!   - `read`, `read_vectored`, `write`, `write_vectored`, `flush`, `shutdown`, `try_clone`,
//!     `set_read_timeout`, `read_timeout`, `set_write_timeout`, `write_timeout`,
//!     `set_nonblocking`, `peer_credentials`, all on `&self`. Read returns `Ok(0)` at EOF,
//!     including a peer that vanished; write to a vanished peer returns `BrokenPipe` and never
//!     raises a signal.
//! - `struct Listener` — `Send + Sync`:
//!   - `fn bind(name: &Name, opts: &ListenerOptions, kind: Kind) -> io::Result<Listener>`
//!     (errors without context; the caller adds it); accepted streams are of the same kind;
//!   - `fn accept(&self) -> io::Result<Stream>`, `fn set_nonblocking(&self, bool)`.
//! - `mod message` — sending and receiving whole messages with attached handles on a `Stream`
//!   of kind `Messages`: `send(stream, bytes, handles)`, `recv(stream, buf, handles, max)`,
//!   `peek_len(stream)`, with the limits `MAX_MESSAGE_LEN` and `MAX_HANDLES` enforced on both
//!   ends; every handle that arrives is returned or closed.
//! - `fn peer_uid_matches(stream: &Stream) -> io::Result<bool>` — whether the peer runs as the
//!   same user as this process (uid on Unix, user SID on Windows).
//! - `Stream::server_user(&self) -> io::Result<ServerUser>` — which user runs the
//!   server of a client stream (its uid from `SO_PEERCRED`/`getpeereid`; the pipe's owner SID),
//!   plus its pid for messages; `fn current_user() -> io::Result<UserId>` and
//!   `fn admin_users() -> Vec<UserId>` (root; LocalSystem and Administrators). The
//!   policy that compares them is portable (`identity.rs`), shared with the async connect.
//! - `fn is_resource_shortage(code: i32) -> bool` — whether an OS error code means the process
//!   or the system is out of descriptors, handles or memory. The portable layer uses it for the
//!   one accept policy (`crate::listener::pause_after_accept_error`) and exposes it as
//!   [`crate::is_resource_shortage`]; no code outside `sys` knows OS error codes.
//! - [`ConnectFailure`] (defined here): how one connect attempt failed, which decides whether
//!   the portable retry policy (`crate::stream::Retry`) tries again.
//! - `mod shm` (feature `shm`; Linux and Windows): what `crate::shm`'s one policy needs —
//!   `Mapping` (bounds-checked atomic and raw-copy accesses, unmapped on drop), `create(len)`
//!   and `open_handle(&OsHandle, len)` (the peer's object, checked: `InvalidData` if it could
//!   fault or has the wrong size), `send_hello`/`recv_hello` (negotiation frames carrying
//!   handles), `can_share(stream)`, the wake-up channel `Wakes` (`wakes`, `wakes_from_peer`,
//!   `watch`, and `wake`/`wait`/`drain` for a `crate::shm::Waiter`: `wait`/`drain` return
//!   `Ok(false)` once the peer is gone), `close_path` (after a violation: our waiters wake, the
//!   peer sees the end where the OS can), `WAKE_HANDLES`, `current_cpu`, `online_cpus`.
//!
//! # What the async layer uses (feature `tokio`)
//!
//! The async backends (`crate::tokio::{unix, windows}`) run on tokio's own sockets and pipes and
//! take from `sys` only one-shot operations and the raw work tokio does not do:
//!
//! - Unix: `Stream::connect_nonblocking(name, opts)` (one non-blocking `connect(2)` attempt, the
//!   result handed to tokio), `Listener::bind` then `Listener::into_parts` / `from_parts` (the
//!   descriptor, and the `SocketFile` guard that removes the socket file on drop),
//!   `set_nosigpipe`, `send` / `send_vectored` (writes that never raise `SIGPIPE`),
//!   `peer_credentials(fd)` and `peer_uid_matches_fd(fd)`.
//! - Windows: the blocking listener itself, bound for async use (`Listener::bind_async`, then
//!   `Listener::poll_accept`: the same instance pool, only the waiting differs); `HalfClose`
//!   (the one shutdown policy); and `sys::windows::async_pipe` — `adopt_server` (a connected
//!   instance handed to tokio), `connect_client` (the blocking one-attempt connect, handed to
//!   tokio before any I/O), `peer_credentials`, `peer_is_same_user`.
//!
//! The backends still take the public `Name`, `ConnectOptions` and `ListenerOptions`;
//! resolving them into plain data first is an open point (issue 10).

use std::io;
use std::path::PathBuf;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use self::unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use self::windows::*;

/// Where a socket or pipe is: what a [`crate::Name`] resolved to, as plain data. Every
/// variant exists on every platform; `Name`'s constructors decide which ones a platform can
/// make, and a backend refuses the others with `InvalidInput`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(windows, allow(dead_code))] // Path and Abstract are never made on Windows
pub(crate) enum Addr {
    /// A socket file.
    Path(PathBuf),
    /// A Linux abstract address, without the leading NUL.
    Abstract(Vec<u8>),
    /// A full Windows pipe name, `\\.\pipe\...`.
    Pipe(String),
}

/// What a connection carries: a byte stream ([`crate::LocalStream`]) or messages
/// ([`crate::MessageStream`]). Everything else — names, bind, access modes, stale-file reclaim,
/// connect retries, peer credentials — is the same code for both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `SOCK_STREAM`; a byte-mode pipe.
    Bytes,
    /// `SOCK_SEQPACKET` (a `SOCK_STREAM` carrying length-prefixed frames on Apple platforms);
    /// a message-mode pipe.
    Messages,
}

/// Who may connect to a listener: [`crate::Access`] as plain data. A backend maps it to a
/// socket file mode (`0600`, `0660`, `0666`) or to a pipe DACL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AccessMode {
    Owner,
    Group,
    Everyone,
}

/// How to bind: [`crate::ListenerOptions`] (and its Windows extension) resolved to plain data.
/// Options that only the portable layer uses (`require_same_user`, `nonblocking`) are not here.
#[derive(Clone, Debug)]
pub(crate) struct BindSpec {
    /// Bytes or messages; accepted streams are of the same kind.
    pub(crate) kind: Kind,
    pub(crate) access: AccessMode,
    /// The `listen(2)` backlog, at least 1.
    #[cfg(unix)]
    pub(crate) backlog: u32,
    /// Whether a stale socket file (one whose server is gone) may be taken over.
    #[cfg(unix)]
    pub(crate) reclaim_stale: bool,
    /// A security descriptor in SDDL that replaces the default one for `access`.
    #[cfg(windows)]
    pub(crate) sddl: Option<String>,
    /// The group (a SID or an account name) that `AccessMode::Group` admits.
    #[cfg(windows)]
    pub(crate) group: Option<String>,
    /// How many instances listen besides the first; already clamped to
    /// `os::windows::MAX_SPARE_INSTANCES`.
    #[cfg(windows)]
    pub(crate) spare_instances: u32,
}

/// How to connect, for one attempt: [`crate::ConnectOptions`] resolved to plain data (the
/// deadline, backoff and server-identity check are portable policy and are not here).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectSpec {
    /// Bytes or messages; the server must be of the same kind.
    pub(crate) kind: Kind,
    /// The security quality of service the client grants the server.
    #[cfg(windows)]
    pub(crate) impersonation: SecurityQos,
}

/// How far a pipe server may act as its client (`os::windows::ImpersonationLevel` as plain
/// data): the `SECURITY_*` flag a connect passes to `CreateFileW`.
#[cfg(windows)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SecurityQos {
    Anonymous,
    Identification,
    Impersonation,
    Delegation,
}

/// Who is on the other end of a connection, as the OS told it: the data of
/// [`crate::PeerCredentials`]. A field the platform does not tell is `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) pid: Option<u32>,
    /// Effective uid (Unix).
    pub(crate) uid: Option<u32>,
    /// Effective gid (Unix).
    pub(crate) gid: Option<u32>,
    /// User SID in string form (Windows).
    pub(crate) sid: Option<String>,
}

/// A user as the OS names it: a uid on Unix, a SID string on Windows. What makes two of them
/// the same user, and how one is printed, is the identity policy's (`crate::identity`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UserId {
    #[cfg_attr(windows, allow(dead_code))]
    Uid(u32),
    #[cfg_attr(unix, allow(dead_code))]
    Sid(String),
}

/// Who serves a connected client stream, as the backend found it.
#[derive(Clone, Debug)]
pub(crate) struct ServerUser {
    pub(crate) user: UserId,
    /// For the message only: pids are reused, so they never decide anything.
    pub(crate) pid: Option<u32>,
}

/// Why one connect attempt failed, so the portable loop knows whether to retry.
#[derive(Debug)]
pub(crate) enum ConnectFailure {
    /// The server exists but cannot take the connection now (Unix backlog full, Windows all
    /// instances busy, or a pipe instance that vanished between wait and open): retry.
    Busy(io::Error),
    /// No server: nothing at the name (`NotFound`) or a stale socket (`ConnectionRefused`).
    /// Retried only with `wait_for_server`.
    NoServer(io::Error),
    /// Anything else: final.
    Fatal(io::Error),
}
