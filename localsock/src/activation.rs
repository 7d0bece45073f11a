//! systemd socket activation (feature `systemd`, Unix): take the listening sockets a service
//! manager passed to this process.
//!
//! A service manager (systemd, `systemd-socket-activate`, or anything that follows
//! [`sd_listen_fds(3)`]) binds the socket itself, starts the program with the socket as
//! descriptor 3 (and up), and says so in `LISTEN_FDS`, `LISTEN_PID` and optionally
//! `LISTEN_FDNAMES`. [`take_listen_fds`] reads these variables (with the `sd-notify` crate)
//! and hands each descriptor over once; [`LocalListener::from_inherited_fd`] then checks that
//! the descriptor really is a listening `AF_UNIX` stream socket before it becomes a listener.
//!
//! The socket file belongs to the service manager: a listener made this way does not remove
//! it when dropped.
//!
//! [`sd_listen_fds(3)`]: https://www.freedesktop.org/software/systemd/man/sd_listen_fds.html
//!
//! # Examples
//!
//! ```no_run
//! use localsock::activation::take_listen_fds;
//! use localsock::{LocalListener, Name};
//!
//! # fn main() -> std::io::Result<()> {
//! let listener = match take_listen_fds()?.into_iter().next() {
//!     // Started by systemd (or `systemd-socket-activate -l /run/app.sock app`).
//!     Some(inherited) => LocalListener::from_inherited_fd(inherited.into_fd())?,
//!     // Started by hand: bind the socket ourselves.
//!     None => LocalListener::bind(&Name::new("app")?)?,
//! };
//! println!("serving on {}", listener.name());
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

#[allow(unused_imports)] // for the links in the documentation
use crate::LocalListener;

/// One descriptor passed by the service manager, with its name from `LISTEN_FDNAMES`
/// (`FileDescriptorName=` in a systemd socket unit; `"unknown"` when none was given).
pub struct ListenFd {
    name: String,
    fd: OwnedFd,
}

impl ListenFd {
    /// The descriptor's name from `LISTEN_FDNAMES`, or `"unknown"`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The descriptor, to pass to [`LocalListener::from_inherited_fd`] (which checks what it
    /// is) or to another socket type.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for ListenFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for ListenFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use std::os::fd::AsRawFd;
        f.debug_struct("ListenFd")
            .field("name", &self.name)
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

/// Takes the descriptors the service manager passed to this process, in order (descriptor 3
/// first).
///
/// Empty when the process was not socket-activated (`LISTEN_PID` unset or naming another
/// process, for example a parent that did not clear it). Only the first call in a process
/// takes the descriptors: later calls return an empty list, so no descriptor ends up with two
/// owners. The environment variables are left as they are; each descriptor is made
/// close-on-exec, so child processes do not inherit it.
///
/// # Errors
///
/// `InvalidInput` when `LISTEN_PID`, `LISTEN_FDS` or `LISTEN_FDNAMES` is malformed (the
/// descriptors are then left alone), or the OS error when a descriptor named by `LISTEN_FDS`
/// is not open.
pub fn take_listen_fds() -> io::Result<Vec<ListenFd>> {
    Ok(crate::sys::take_listen_fds()?
        .into_iter()
        .map(|(name, fd)| ListenFd { name, fd })
        .collect())
}
