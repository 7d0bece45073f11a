//! Local inter-process communication over Unix domain sockets (Linux, macOS, BSD) and Windows
//! named pipes, with one API: [`LocalListener`] accepts [`LocalStream`]s, both addressed by a
//! [`Name`].
//!
//! It is what Qt's `QLocalServer`/`QLocalSocket` are to C++ programs, done the way `std::net`
//! does things, and with the hard parts done right:
//!
//! - **Every connect is bounded.** [`ConnectOptions::timeout`] bounds the whole call; a busy
//!   server is retried with capped exponential backoff and jitter, a missing one optionally too
//!   ([`ConnectOptions::wait_for_server`]); a stream is returned only when connected.
//! - **Every failure says why.** Errors are `io::Error`s with the most specific
//!   [`ErrorKind`](std::io::ErrorKind) (`NotFound`, `ConnectionRefused`, `PermissionDenied`,
//!   `AddrInUse`, `TimedOut`, ...), and their messages name the operation and the endpoint.
//! - **Secure defaults.** Short names live in a per-user `0700` directory, sockets are created
//!   owner-only without a chmod race, a live server's name is never stolen, stale socket files
//!   are reclaimed safely, no descriptor leaks into child processes, and writing to a closed
//!   peer is `BrokenPipe`, never `SIGPIPE`.
//! - **Peer credentials** ([`LocalStream::peer_credentials`]).
//! - **Messages that carry open files, sockets and pipes** ([`MessageListener`],
//!   [`MessageStream`]): whole messages with their boundaries, each with zero or more OS
//!   handles attached, over the same names, options and guarantees.
//! - **Shared memory** (feature `shm`, Linux and Windows; macOS and FreeBSD compile-checked
//!   only): `ShmOptions` upgrades an established
//!   connection to a data path through memory shared by the two peers only, negotiated (either
//!   side may refuse) and validated against a hostile peer; see the `shm` module.
//! - **Async, with tokio** (feature `tokio`): the same types in `localsock::tokio`, on tokio's
//!   own reactor.
//! - **gRPC and HTTP** (features `axum`, `tonic`, `hyper`): axum, tonic and hyper served on
//!   the async listener and reaching a name as clients, every request carrying its caller's
//!   [`PeerCredentials`]; see `localsock::tokio`.
//!
//! # Quick start
//!
//! ```
//! use std::io::{Read, Write};
//! use localsock::{LocalListener, LocalStream, Name};
//!
//! # fn main() -> std::io::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("localsock-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # #[cfg(unix)]
//! # let name = Name::path(dir.join("quick.sock"))?;
//! # #[cfg(windows)]
//! let name = Name::new("localsock-quick-start")?;
//! let listener = LocalListener::bind(&name)?;
//! let server = std::thread::spawn(move || -> std::io::Result<()> {
//!     let mut stream = listener.accept()?;
//!     let mut buf = [0; 4];
//!     stream.read_exact(&mut buf)?;
//!     stream.write_all(&buf)
//! });
//! let mut client = LocalStream::connect(&name)?;
//! client.write_all(b"ping")?;
//! let mut reply = [0; 4];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"ping");
//! # server.join().unwrap()?;
//! # Ok(()) }
//! ```
//!
//! # Messages and handles
//!
//! A [`MessageListener`] accepts [`MessageStream`]s: each
//! [`send_with_files`](MessageStream::send_with_files) (or
//! [`send_with_handles`](MessageStream::send_with_handles)) arrives as one whole message,
//! and the receiver gets its own handles to the same open files (as after `dup`):
//!
//! ```
//! use std::io::Read;
//! use localsock::{MessageListener, MessageStream, Name};
//!
//! # fn main() -> std::io::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("localsock-doc-msg-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let file_path = dir.join("passed.txt");
//! # std::fs::write(&file_path, "passed by handle")?;
//! # #[cfg(unix)]
//! # let name = Name::path(dir.join("files.sock"))?;
//! # #[cfg(windows)]
//! let name = Name::new("localsock-doc-files")?;
//! let listener = MessageListener::bind(&name)?;
//! let client = MessageStream::connect(&name)?;
//! let server = listener.accept()?;
//!
//! let file = std::fs::File::open(&file_path)?;
//! client.send_with_files(b"here is the file", &[&file])?;
//! client.send(b"")?; // an empty message is a message
//! drop(client);
//!
//! let mut message = server.recv_message()?.expect("a message");
//! assert_eq!(message.bytes, b"here is the file");
//! let mut text = String::new();
//! std::fs::File::from(message.handles.remove(0)).read_to_string(&mut text)?;
//! assert_eq!(text, "passed by handle");
//! assert!(server.recv_message()?.expect("the empty message").bytes.is_empty());
//! assert!(server.recv_message()?.is_none()); // end-of-file
//! # Ok(()) }
//! ```
//!
//! | | Linux, BSD | macOS | Windows |
//! |---|---|---|---|
//! | transport | `SOCK_SEQPACKET`, one record per message | `SOCK_STREAM` (no `AF_UNIX` seqpacket) carrying frames: a 7-byte header (tag, length, handle count), then the bytes | message-mode pipe (`PIPE_TYPE_MESSAGE`) |
//! | handles | `SCM_RIGHTS` with `MSG_CMSG_CLOEXEC` | `SCM_RIGHTS` on the frame header, then `FD_CLOEXEC` | duplicated into the receiving process (same user only) |
//! | limits | [`MAX_MESSAGE_LEN`] bytes, [`MAX_HANDLES`] handles, both ends | | same |
//!
//! # Names
//!
//! | you write | Linux / macOS / BSD | Windows | the client checks the server (default) |
//! |---|---|---|---|
//! | `Name::new("svc")` | `$XDG_RUNTIME_DIR/svc`, else `<tmp>/localsock-<uid>/svc` (private, `0700`, verified at every bind and connect) | `\\.\pipe\svc` | `CurrentUserOrAdmin`: Unix you or root, Windows you, LocalSystem or Administrators |
//! | `Name::new("/run/app/x.sock")` | that path | `InvalidInput` | only when asked |
//! | `Name::new(r"\\.\pipe\svc")` | `InvalidInput` | that pipe | only when asked |
//! | `Name::path(p)` | `p`, relative or absolute | `Unsupported` | only when asked |
//! | `Name::abstract_name(b)` | Linux: abstract `@b`, **no access control** | `Unsupported` | only when asked |
//! | `Name::qt("svc")` | Qt's rule: `QDir::tempPath()/svc` | `\\.\pipe\svc` | only when asked |
//!
//! Before a connect returns, the client checks who the server is
//! ([`ConnectOptions::server_identity`], [`ServerIdentity`]). Short names (`Name::new("svc")`)
//! require [`ServerIdentity::CurrentUserOrAdmin`] by default: the server runs as you or root on
//! Unix (`SO_PEERCRED`/`getpeereid`), the pipe is owned by you, LocalSystem or
//! BUILTIN\Administrators on Windows (`GetSecurityInfo`). Other names are checked only when
//! asked. A server of the wrong user is `PermissionDenied`, and nothing was sent to it.
//!
//! Socket paths must fit `sun_path` (107 bytes on Linux, 103 on macOS, with the NUL); pipe names
//! are at most 256 UTF-16 units. Longer names are `InvalidInput` errors that give the limit.
//!
//! # Platforms
//!
//! | | Unix | Windows |
//! |---|---|---|
//! | transport | `AF_UNIX` `SOCK_STREAM` | byte-mode named pipe, overlapped I/O |
//! | busy server | backlog full: `EAGAIN`, retried | all instances busy: `ERROR_PIPE_BUSY`, retried with short `WaitNamedPipeW` slices |
//! | default access | socket `0600` in a `0700` directory | DACL: owner + SYSTEM |
//! | peer credentials | pid, uid, gid (`SO_PEERCRED`; `getpeereid` on BSD/macOS) | pid, user SID |
//!
//! # What it does not do
//!
//! - Message framing on [`LocalStream`]: it is a byte stream, as TCP (use [`MessageStream`]).
//! - Async messages on Windows (the blocking [`MessageStream`] works there).
//!
//! The macOS frame transport is compile-checked for macOS and unit-tested and fuzzed on Linux
//! (the same code over a Linux `SOCK_STREAM`), but has not been run on macOS itself yet.
//! - `AF_UNIX` on Windows, and remote (`\\host\pipe\`) pipes.
//! - Shared memory run on macOS and FreeBSD (their backends are compile-checked only), and the
//!   async `tokio::ShmStream` on Windows (the blocking `ShmStream` works there).
//!
//! # Security
//!
//! Which attacks and faults localsock defends against, what it leaves to the application, and
//! the test that proves each point: [SECURITY.md](https://example.invalid/localsock/blob/main/SECURITY.md)
//! (in the repository, beside the README). How the code is laid out, and where each kind of
//! change goes: [ARCHITECTURE.md](https://example.invalid/localsock/blob/main/ARCHITECTURE.md).
//!
//! # Minimum supported Rust version
//!
//! `rust-version` is 1.77. CI checks it with clippy's `incompatible_msrv` lint (denied), which
//! reports any use of a standard-library API stabilised after 1.77; it does not build with a
//! 1.77 compiler, so language features and the dependencies' own minimum versions are not
//! checked.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

/// Compiles the items given only where the shared-memory path exists: feature `shm` on Linux,
/// FreeBSD, macOS and Windows (the platforms with a `sys::shm` backend). The one place that
/// predicate is written; the items' docs say so too (`doc(cfg)` on docs.rs).
macro_rules! cfg_shm {
    (@when $when:tt $($item:item)*) => {
        $(
            #[cfg $when]
            #[cfg_attr(docsrs, doc(cfg $when))]
            $item
        )*
    };
    ($($item:item)*) => {
        cfg_shm! {
            @when (all(
                feature = "shm",
                any(target_os = "linux", target_os = "freebsd", target_os = "macos", windows)
            ))
            $($item)*
        }
    };
}

#[cfg(all(unix, feature = "systemd"))]
#[cfg_attr(docsrs, doc(cfg(all(unix, feature = "systemd"))))]
pub mod activation;
mod error;
mod handles;
mod identity;
mod listener;
mod message;
mod name;
pub mod os;
cfg_shm! {
    pub mod shm;
}
mod stream;
mod sys;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;

/// Entry points for the fuzz targets in `fuzz/` (built with `--cfg fuzzing` only): the framed
/// message transport of Apple platforms, driven on any Unix.
#[cfg(all(fuzzing, unix))]
#[doc(hidden)]
#[allow(missing_docs)]
pub mod __fuzz {
    use std::io;
    use std::os::fd::{BorrowedFd, OwnedFd};

    /// One unframed `sendmsg` of `bytes` with `fds` attached.
    pub fn send_raw(fd: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        crate::sys::frame::send_raw(fd, bytes, fds)
    }

    /// One framed message send.
    pub fn send_frame(fd: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        crate::sys::frame::send(fd, bytes, fds)
    }

    /// One framed message receive, as `MessageStream` does on Apple platforms.
    pub fn recv_frame(
        fd: BorrowedFd<'_>,
        buf: &mut [u8],
        handles: &mut Vec<OwnedFd>,
        max_handles: usize,
        check_fit: bool,
    ) -> io::Result<Option<usize>> {
        crate::sys::frame::recv(fd, buf, handles, max_handles, check_fit)
    }

    cfg_shm! {
        /// A connected, negotiated shared-memory pair over a socket pair: (offering, answering)
        /// side, with rings of `capacity` bytes, no spinning and non-blocking.
        pub fn shm_pair(capacity: usize) -> io::Result<(crate::ShmStream, crate::ShmStream)> {
            let (a, b) = crate::sys::shm::socket_pair()?;
            let a = crate::LocalStream {
                inner: crate::sys::Stream::from(a),
            };
            let b = crate::LocalStream {
                inner: crate::sys::Stream::from(b),
            };
            let mut options = crate::ShmOptions::new();
            options.capacity(capacity).spin(std::time::Duration::ZERO);
            let offering = {
                let options = options.clone();
                std::thread::spawn(move || options.offer(a))
            };
            let answered = options.answer(b)?;
            let offered = offering.join().expect("offer thread")?;
            offered.set_nonblocking(true)?;
            answered.set_nonblocking(true)?;
            Ok((offered, answered))
        }

        /// The whole shared mapping of `stream`, as the peer could write it.
        pub fn shm_bytes(stream: &crate::ShmStream) -> Option<&[std::sync::atomic::AtomicU8]> {
            stream.shared_bytes()
        }
    }
}

/// The README's example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

pub use crate::error::is_resource_shortage;
pub use crate::identity::ServerIdentity;
pub use crate::listener::{Access, Incoming, ListenerOptions, LocalListener};
pub use crate::message::{
    BorrowedOsHandle, Message, MessageListener, MessageStream, OwnedOsHandle, MAX_HANDLES,
    MAX_MESSAGE_LEN,
};
pub use crate::name::Name;
cfg_shm! {
    pub use crate::shm::{ShmOptions, ShmSlice, ShmStream};
}
pub use crate::stream::{ConnectOptions, LocalStream, PeerCredentials, DEFAULT_CONNECT_TIMEOUT};

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<LocalStream>();
        assert_send_sync::<LocalListener>();
        assert_send_sync::<Name>();
        assert_send_sync::<ConnectOptions>();
        assert_send_sync::<ListenerOptions>();
        assert_send_sync::<PeerCredentials>();
        assert_send_sync::<MessageStream>();
        assert_send_sync::<MessageListener>();
    }
}
