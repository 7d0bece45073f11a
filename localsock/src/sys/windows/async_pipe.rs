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
use std::os::windows::io::{BorrowedHandle, IntoRawHandle, OwnedHandle};

use tokio::net::windows::named_pipe::{NamedPipeClient, NamedPipeServer};

use super::{security, stream, Stream};
use crate::sys::ConnectFailure;
use crate::{ConnectOptions, Name, PeerCredentials};

/// Registers a connected server-end handle from [`Listener::poll_accept`](super::Listener)
/// with the current runtime.
///
/// # Panics
///
/// Outside a tokio runtime with the I/O driver.
pub(crate) fn adopt_server(handle: OwnedHandle) -> io::Result<NamedPipeServer> {
    // SAFETY: `handle` is an open, overlapped server-end pipe handle that nothing else owns,
    // whose only I/O (its ConnectNamedPipe, with a low-bit event: no completion packet) is
    // over; tokio takes ownership (it is closed if this fails).
    unsafe { NamedPipeServer::from_raw_handle(handle.into_raw_handle()) }
}

/// One connect attempt of the blocking backend, the handle then adopted by tokio.
///
/// # Panics
///
/// Outside a tokio runtime with the I/O driver.
pub(crate) fn connect_client(
    name: &Name,
    opts: &ConnectOptions,
) -> Result<NamedPipeClient, ConnectFailure> {
    let stream = Stream::connect(name, opts, crate::sys::Kind::Bytes)?;
    let handle = OwnedHandle::from(stream).into_raw_handle();
    // SAFETY: `handle` is an open, overlapped pipe client handle that nothing else owns and on
    // which no I/O was ever issued; tokio takes ownership (it is closed if this fails).
    unsafe { NamedPipeClient::from_raw_handle(handle) }.map_err(ConnectFailure::Fatal)
}

/// The peer of a pipe end: its pid and, where Windows tells, its user SID (as the blocking
/// stream's `peer_credentials`).
pub(crate) fn peer_credentials(
    pipe: BorrowedHandle<'_>,
    server: bool,
) -> io::Result<PeerCredentials> {
    stream::pipe_peer_credentials(pipe, server)
}

/// Who serves the pipe of a client handle (see the blocking stream's `server_user`).
pub(crate) fn server_user(pipe: BorrowedHandle<'_>) -> io::Result<crate::identity::ServerUser> {
    stream::server_user(pipe)
}

/// Whether the client of a server end runs as this process's user: the blocking listener's
/// `require_same_user` check (from the client's token only, never a pid).
pub(crate) fn peer_is_same_user(pipe: BorrowedHandle<'_>) -> bool {
    security::client_is_current_user(pipe).unwrap_or(false)
}
