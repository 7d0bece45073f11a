//! systemd socket activation: the descriptors named by `LISTEN_FDS`/`LISTEN_PID`/
//! `LISTEN_FDNAMES`, read with the `sd-notify` crate and taken over exactly once.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the first call: the descriptors belong to whoever took them first.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The descriptors passed to this process, with their names (`"unknown"` when
/// `LISTEN_FDNAMES` is unset), or nothing when `LISTEN_PID` is not this process. Only the first
/// call in a process takes them; later calls return an empty list.
pub(crate) fn take_listen_fds() -> io::Result<Vec<(String, OwnedFd)>> {
    // Taken already: the environment still names descriptors 3.., which the taker may have
    // closed (and the numbers been reused), so do not even look at them again.
    if TAKEN.load(Ordering::Acquire) {
        return Ok(Vec::new());
    }
    // Parse first: an invalid environment leaves the descriptors to a later, fixed attempt.
    let fds: Vec<(std::os::fd::RawFd, String)> = sd_notify::listen_fds_with_names()?.collect();
    if fds.is_empty() || TAKEN.swap(true, Ordering::AcqRel) {
        return Ok(Vec::new());
    }
    Ok(fds
        .into_iter()
        .map(|(raw, name)| {
            // SAFETY: `LISTEN_PID` names this process, so the service manager passed these
            // descriptors to it (sd-notify checked each is open while setting close-on-exec),
            // and `TAKEN` makes this the only place in the process that takes ownership.
            (name, unsafe { OwnedFd::from_raw_fd(raw) })
        })
        .collect())
}
