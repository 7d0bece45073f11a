//! The backend contract: what every per-OS backend exports, under the same crate-private names,
//! and what it may know.
//!
//! The public types are one struct each over a backend value (`LocalStream { inner:
//! sys::Stream }`); all policy that is the same everywhere (the connect deadline, backoff and
//! retry loop, the server-identity check, the accept pause, `require_same_user`, option
//! defaults and validation, error context) lives above this line, in portable code. A backend
//! does one OS operation per call and normalises the platform's quirks into `io::ErrorKind`s.
//!
//! # What a backend knows, and what it does not
//!
//! `sys` does not know the public types. The portable layer resolves them into the plain data
//! defined in this file before calling a backend, and turns what a backend returns into them:
//!
//! | public (portable) | plain data (here) | made by |
//! |---|---|---|
//! | `Name` | [`Addr`]: a socket path, abstract bytes or a full pipe name | `Name::bind_addr` / `Name::connect_addr`, which first re-check a short name's private directory (Unix) |
//! | `ListenerOptions` (+ `os::windows::ListenerOptionsExt`) | [`BindSpec`] (kind, [`AccessMode`], backlog, reclaim; SDDL, group, spare count) | `ListenerOptions::bind_spec` |
//! | `ConnectOptions` (+ `os::windows::ConnectOptionsExt`) | [`ConnectSpec`] (kind; `SecurityQos`) | `ConnectOptions::connect_spec` |
//! | `PeerCredentials` | [`Credentials`] | `From<sys::Credentials>` in `stream.rs` |
//! | the server identity check (`identity.rs`) | [`UserId`], [`ServerUser`] | the backends (`server_user`, `current_user`, `admin_users`) |
//! | `From<OwnedFd>`, `AsFd`, ... of the public types (`crate::handles`) | `sys::Stream::from(OwnedFd)`, `sys::Listener::from(OwnedFd)`, `local_addr` | the portable conversions |
//!
//! The only `crate::` paths a backend may take lead into `sys` itself, `error` and `message`:
//! - `crate::error`'s pure `io::Error` helpers (`with_cause`, `os_code`), which attach words
//!   to an OS error while keeping it reachable as the source. The OS-code *classification*
//!   goes the other way: it lives here (`is_resource_shortage(code)`, each backend's connect
//!   failure classes, `ECONNRESET`-is-EOF, `ERROR_PIPE_CONNECTED`-is-success), and
//!   `error.rs` calls it; no portable code or CLI knows an OS error code.
//! - `crate::message`'s message limits (`MAX_MESSAGE_LEN`, `MAX_HANDLES`) and the words of
//!   its errors (`check_send`, `short_buffer`, `too_many_handles`, `bad_tag`, `truncated`):
//!   the message wire policy is one portable policy that both backends enforce on both ends
//!   of every message, and the limits are public constants; passing them into every call
//!   would only let a caller pass different ones.
//!
//! The one file of each backend that names public types is `from_raw.rs`: `FromRawFd` /
//! `FromRawHandle` of the public types, because implementing their `unsafe fn` is unsafe
//! code, which lives only in `sys`; each impl wraps the raw value in an `OwnedFd` /
//! `OwnedHandle` and calls the portable `From` impl. `tests/layering.rs` reads this tree and
//! fails if any other file under `src/sys` names a public type or reaches another module.
//!
//! # Required items (both backends)
//!
//! - [`Addr`], [`Kind`], [`AccessMode`], [`BindSpec`], [`ConnectSpec`], [`Credentials`],
//!   [`UserId`], [`ServerUser`], [`ConnectFailure`]: defined here.
//! - `struct Stream` — a connected, blocking, non-inheritable stream of one [`Kind`],
//!   `Send + Sync`, `From<OwnedFd>`/`From<OwnedHandle>` and back (adopting a connected socket
//!   or pipe end; nothing is checked), and:
//!   - `fn connect(addr: &Addr, spec: ConnectSpec) -> Result<Stream, ConnectFailure>`: one
//!     attempt, never blocking for long (Unix: a non-blocking `connect(2)`, so a full backlog
//!     is `Busy` at once; Windows: one `CreateFileW` with the spec's security QoS, overlapped).
//!     Errors: [`ConnectFailure::Busy`] (backlog full, all instances busy, an instance that
//!     vanished after `wait_busy` saw it free), [`ConnectFailure::NoServer`] (`NotFound`,
//!     `ConnectionRefused` for a stale file), [`ConnectFailure::Fatal`] for the rest
//!     (`PermissionDenied`; the other kind of server, with words saying so; `InvalidInput`
//!     for an `Addr` of the other platform). A message-kind stream is in message read mode.
//!   - `fn wait_busy(addr: &Addr, slice: Duration)`: waits at most `slice` for a busy endpoint
//!     to accept again (Unix: a sleep; Windows: `WaitNamedPipeW`, sleeping out the slice if it
//!     returns early with an error, and remembering a free instance for the next `connect`).
//!   - `read`, `read_vectored`, `write`, `write_vectored`, `flush`, `shutdown`, `try_clone`,
//!     `set_read_timeout`, `read_timeout`, `set_write_timeout`, `write_timeout`,
//!     `set_nonblocking`, all on `&self`, with std's meaning. Read returns `Ok(0)` at EOF,
//!     including a peer that vanished (`ECONNRESET`, `ERROR_BROKEN_PIPE`,
//!     `ERROR_PIPE_NOT_CONNECTED`); a write to a vanished peer is `BrokenPipe` and never raises
//!     a signal; a read or write timeout is `WouldBlock` (Unix) or `TimedOut` (Windows, the
//!     operation cancelled); non-blocking mode gives `WouldBlock`. `shutdown` on Windows is
//!     the one half-close policy (`HalfClose`).
//!   - `fn peer_credentials(&self) -> io::Result<Credentials>`: as the OS recorded the peer
//!     (`SO_PEERCRED` / `getpeereid` / `LOCAL_PEERPID`; the pipe's client or server pid and
//!     the user SID from the client's token or the peer process's token). Errors: the OS's.
//!   - `fn server_user(&self) -> io::Result<ServerUser>` (a client stream): who runs the
//!     server, from what the peer cannot forge (its uid at `listen`; the pipe's owner SID),
//!     plus its pid for messages. `Unsupported` where the OS does not tell.
//!   - `as_fd` / `as_handle`.
//! - `struct Listener` — `Send + Sync`, with:
//!   - `fn bind(addr: &Addr, spec: &BindSpec) -> io::Result<Listener>`: the secure bind. Errors
//!     without context (the caller adds it): `AddrInUse` (a live server; on Unix also a path
//!     that holds something else, or a stale file with reclaim off or impossible to do
//!     safely), `PermissionDenied` (on Windows also an SDDL that leaves this user without the
//!     rights every instance needs, or an AppContainer outside `\\.\pipe\LOCAL\`),
//!     `NotFound`, `InvalidInput` (an `Addr` of the other platform; on Windows
//!     `AccessMode::Group` without a group or a group that does not resolve). A failed bind
//!     leaves no socket file. Unix: the file gets its final mode before anyone can connect,
//!     a stale file is reclaimed only under the directory lock and only if it is the file
//!     probed, and the listener removes only its own file when dropped. Windows: the first
//!     instance is `FILE_FLAG_FIRST_PIPE_INSTANCE`, `1 + spare_instances` instances listen.
//!   - `fn accept(&self) -> io::Result<Stream>`: one connection of the listener's kind (Unix:
//!     `accept4` with close-on-exec, a client that left first skipped; Windows: the instance
//!     pool, the next instance created before a connected one is handed out, the client kept
//!     queued if it cannot be). A resource shortage keeps its OS code (see
//!     `is_resource_shortage`). `fn set_nonblocking(&self, bool)`.
//!   - Unix: `From<OwnedFd>`, `as_fd`, `into_fd` (the socket file is left in place).
//! - `fn peer_uid_matches(stream: &Stream) -> io::Result<bool>` — whether the peer of an
//!   accepted stream runs as this process's user (the uid, never the overflow uid of a user
//!   namespace; the user SID from the client's own token, never from a pid).
//! - `fn current_user() -> io::Result<UserId>` and `fn admin_users() -> Vec<UserId>` (root;
//!   LocalSystem and Administrators), for the identity policy.
//! - `fn own_credentials() -> io::Result<Credentials>` — this process as its peers see it.
//! - `fn is_resource_shortage(code: i32) -> bool` — whether an OS error code means the process
//!   or the system is out of descriptors, handles or memory. `error::is_resource_shortage`
//!   (public) finds the code in an error and asks this; the one accept policy
//!   (`listener::pause_after_accept_error`) and the CLI use that.
//! - `mod message` — whole messages with attached handles on a `Stream` of kind `Messages`:
//!   `send(stream, bytes, handles)`, `recv(stream, buf, handles, max_handles, check_fit) ->
//!   io::Result<Option<usize>>` (`None` at EOF), `peek_len(stream)`; the limits of
//!   `crate::message` enforced on both ends; every handle that arrives is returned or closed,
//!   never leaked or inherited; a message too long for `buf` stays queued (`InvalidInput`).
//! - `mod shm` (feature `shm`; Linux, Windows, and macOS/FreeBSD compile-checked): what
//!   `crate::shm`'s one policy needs —
//!   `Mapping` (bounds-checked atomic and raw-copy accesses, the same code for every backend in
//!   `sys/shm_mapping.rs`; each backend makes it and unmaps it on drop), `create(len)`
//!   and `open_handle(&OsHandle, len)` (the peer's object, checked: `InvalidData` if it could
//!   fault or has the wrong size), `send_hello`/`recv_hello` (negotiation frames carrying
//!   handles), `can_share(stream)`, the wake-up channel `Wakes` (`wakes`, `wakes_from_peer`,
//!   `watch`, and `wake`/`wait`/`drain` for a `Waiter` (defined here): `wait`/`drain` return
//!   `Ok(false)` once the peer is gone), `close_path` (after a violation: our waiters wake, the
//!   peer sees the end where the OS can), `WAKE_HANDLES`, `current_cpu` (or `UNKNOWN_CPU`),
//!   `online_cpus`.
//!
//! Unix only: `SUN_PATH_LEN` (for `Name`'s length checks); `PrivateDir` and `DirUse` (the
//! private directory of short names: `PrivateDir::resolve()` finds it and creates nothing;
//! `check(DirUse)` verifies it again on every bind, creating it if it is ours and missing, and
//! on every connect, `NotFound` if it is missing); `local_addr(fd)` (`getsockname` as an
//! `Addr`); `check_listening_unix_stream(fd)` (what an inherited descriptor must be);
//! `take_listen_fds()` (feature `systemd`); `mod frame` (the framed message transport of Apple
//! platforms, also the shared-memory negotiation's). Windows only:
//! `client_create_file_params(SecurityQos)` (what `ConnectOptionsExt::create_file_params`
//! reports).
//!
//! # What the async layer uses (feature `tokio`)
//!
//! The async backends (`crate::tokio::{unix, windows}`) run on tokio's own sockets and pipes and
//! take from `sys` only one-shot operations and the raw work tokio does not do, with the same
//! plain data (`Addr` from `Name::connect_addr` / `bind_addr`, `ConnectSpec`, `BindSpec`):
//!
//! - Unix: `Stream::connect_nonblocking(addr, spec)` (the attempt of `connect`, the socket
//!   left non-blocking for tokio; the same errors), the blocking `Listener::bind` (through
//!   `ListenerOptions::bind_kind`) then `Listener::into_parts` / `from_parts` (the descriptor,
//!   and the `SocketFile` guard that removes the socket file on drop), `set_nosigpipe` (on
//!   sockets tokio accepts), `send` / `send_vectored` (writes that never raise `SIGPIPE`),
//!   `peer_credentials(fd)`, `server_user(fd)`, `peer_uid_matches_fd(fd)`, and
//!   `message::{send_fd, recv_fd, peek_len_fd}` (one non-blocking call each, under tokio's
//!   readiness).
//! - Windows: the blocking listener itself, bound for async use (`Listener::bind_async(addr,
//!   spec)`, then `Listener::poll_accept(cx) -> Poll<io::Result<OwnedHandle>>`: the same
//!   instance pool, only the waiting differs); `HalfClose` (the one shutdown policy) and
//!   `cancel_blocking_call`; and `sys::windows::async_pipe` — `adopt_server` (a connected
//!   instance handed to tokio), `connect_client(addr, spec)` (the blocking one-attempt
//!   connect, handed to tokio before any I/O), `message_server` / `message_client` (message
//!   pipes kept out of tokio), `peer_credentials`, `server_user`, `peer_is_same_user`,
//!   `is_disconnect` (which errors of tokio's pipe I/O mean the peer is gone), and
//!   `ReadReady` (a zero-byte overlapped read that waits for data without taking it); the
//!   message code's `prepare` / `Prepared::write`, `try_recv` and `try_peek_len`.

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

cfg_shm! {
    /// The shared-memory mapping's accesses, the same for every backend (which make and unmap
    /// it): unsafe code, so in `sys`.
    #[allow(unsafe_code)]
    mod shm_mapping;
}

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

cfg_shm! {
    /// Which side of a shared-memory connection waits (or is woken): its reader, for bytes in
    /// the ring, or its writer, for room in the ring. `sys::shm` keeps one wake-up channel for
    /// each.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Waiter {
        Reader,
        Writer,
    }
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
