//! Hooks for the async API (`crate::tokio`, feature `tokio`): tokio's named pipes, created and
//! opened with this backend's security settings. The unsafe calls the async module needs
//! (raw security attributes, adopting a handle) live here, next to the code they rely on.
//!
//! - Servers get the same DACL as blocking listeners (`default_sddl`, or the SDDL of the
//!   options), not tokio's default one, which lets Everyone read.
//! - Clients are opened by the blocking backend's one-attempt [`Stream::connect`] (its access
//!   rights without `FILE_CREATE_PIPE_INSTANCE`, its security QoS, its retry classes), then
//!   handed to tokio before any I/O was issued on them.

use std::io;
use std::mem;
use std::os::windows::io::{BorrowedHandle, IntoRawHandle, OwnedHandle};

use tokio::net::windows::named_pipe::{NamedPipeClient, NamedPipeServer, ServerOptions};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;

use super::security::{self, SecurityDescriptor};
use super::{listener, stream, wide, Stream};
use crate::sys::ConnectFailure;
use crate::{ConnectOptions, ListenerOptions, Name, PeerCredentials};

/// The security descriptor of a listener's pipe instances.
pub(crate) struct PipeSecurity(SecurityDescriptor);

impl PipeSecurity {
    /// From the options' SDDL, or the default DACL for their `access`.
    pub(crate) fn new(opts: &ListenerOptions) -> io::Result<PipeSecurity> {
        let sddl = match &opts.windows.sddl {
            Some(sddl) => sddl.clone(),
            None => security::default_sddl(opts.access)?,
        };
        SecurityDescriptor::from_sddl(&sddl).map(PipeSecurity)
    }
}

/// Creates one server instance registered with the current runtime: duplex, byte mode, local
/// clients only, not inheritable, with `security`; the first with
/// `FILE_FLAG_FIRST_PIPE_INSTANCE`.
///
/// # Panics
///
/// Outside a tokio runtime with the I/O driver.
pub(crate) fn create_server(
    pipe: &str,
    first: bool,
    security: &PipeSecurity,
) -> io::Result<NamedPipeServer> {
    let mut attributes = SECURITY_ATTRIBUTES {
        nLength: mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: security.0.as_ptr(),
        bInheritHandle: 0,
    };
    let mut options = ServerOptions::new();
    options
        .first_pipe_instance(first)
        .reject_remote_clients(true)
        .access_inbound(true)
        .access_outbound(true);
    let attributes: *mut SECURITY_ATTRIBUTES = &mut attributes;
    // SAFETY: `attributes` is a valid SECURITY_ATTRIBUTES, and the descriptor it points to is
    // owned by `security`, for the whole call.
    unsafe { options.create_with_security_attributes_raw(pipe, attributes.cast()) }
}

/// `AddrInUse` if any instance of the pipe exists, free or busy (the blocking listener's
/// check: Wine does not enforce `FILE_FLAG_FIRST_PIPE_INSTANCE`).
pub(crate) fn check_free(pipe: &str) -> io::Result<()> {
    listener::check_free(&wide(pipe))
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
    let stream = Stream::connect(name, opts)?;
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

/// Whether the client of a server end runs as this process's user.
pub(crate) fn peer_is_same_user(pipe: BorrowedHandle<'_>) -> bool {
    let Ok(me) = security::current_user_sid() else {
        return false;
    };
    peer_credentials(pipe, true).is_ok_and(|creds| creds.sid.as_deref() == Some(me.as_str()))
}
