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
//!   - `fn connect(name: &Name, opts: &ConnectOptions) -> Result<Stream, ConnectFailure>`: one
//!     attempt, never blocking for long; the failure says whether it is worth retrying;
//!   - `fn wait_busy(name: &Name, slice: Duration)`: waits at most `slice` for a busy endpoint
//!     to accept again (a sleep on Unix, `WaitNamedPipeW` on Windows);
//!   - `read`, `read_vectored`, `write`, `write_vectored`, `flush`, `shutdown`, `try_clone`,
//!     `set_read_timeout`, `read_timeout`, `set_write_timeout`, `write_timeout`,
//!     `set_nonblocking`, `peer_credentials`, all on `&self`. Read returns `Ok(0)` at EOF,
//!     including a peer that vanished; write to a vanished peer returns `BrokenPipe` and never
//!     raises a signal.
//! - `struct Listener` — `Send + Sync`:
//!   - `fn bind(name: &Name, opts: &ListenerOptions) -> io::Result<Listener>` (errors without
//!     context; the caller adds it);
//!   - `fn accept(&self) -> io::Result<Stream>`, `fn set_nonblocking(&self, bool)`.
//! - `fn peer_uid_matches(stream: &Stream) -> io::Result<bool>` — whether the peer runs as the
//!   same user as this process (uid on Unix, user SID on Windows).
//! - `Stream::server_user(&self) -> io::Result<identity::ServerUser>` — which user runs the
//!   server of a client stream (its uid from `SO_PEERCRED`/`getpeereid`; the pipe's owner SID),
//!   plus its pid for messages; `fn current_user() -> io::Result<identity::UserId>` and
//!   `fn admin_users() -> Vec<identity::UserId>` (root; LocalSystem and Administrators). The
//!   policy that compares them is portable (`identity.rs`), shared with the async connect.

use std::io;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use self::unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use self::windows::*;

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
