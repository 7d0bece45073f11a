//! Whole messages with attached descriptors (`SCM_RIGHTS`).
//!
//! On a `SOCK_SEQPACKET` socket (Linux, the BSDs, illumos) one record is one message: the
//! kernel keeps the boundaries and delivers the descriptors with the record they were sent
//! with. Every record starts with the one-byte [`TAG`], so an empty message is a one-byte record
//! and a read of 0 bytes is only ever end-of-file.
//!
//! Apple platforms have no `AF_UNIX` `SOCK_SEQPACKET`: there the records are frames on a stream
//! socket (`frame.rs`).
//!
//! Received descriptors are owned (`OwnedFd`) from the moment they are parsed, before any check,
//! so that every early return closes them; they are close-on-exec from the moment they exist
//! (`MSG_CMSG_CLOEXEC`; on Apple platforms right after the receive, which has no such flag).

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::Stream;
use crate::message::MAX_HANDLES;

#[cfg(not(target_vendor = "apple"))]
use crate::message::{self as policy, MAX_MESSAGE_LEN};
#[cfg(not(target_vendor = "apple"))]
use std::io::{IoSlice, IoSliceMut};

/// The first byte of every message on the wire: format version 0.
pub(crate) const TAG: u8 = 0;

const FD_SIZE: usize = mem::size_of::<RawFd>();

/// Room for one `SCM_RIGHTS` control message of [`MAX_HANDLES`] descriptors: `CMSG_SPACE` is at
/// most a 16-byte header plus the data rounded up to 8 on every supported platform (a unit test
/// checks it against the platform's `CMSG_SPACE`).
const CONTROL_LEN: usize = 16 + MAX_HANDLES * FD_SIZE + 8;

/// A control-message buffer aligned for `cmsghdr`.
#[repr(C, align(8))]
pub(super) struct ControlBuf([u8; CONTROL_LEN]);

impl ControlBuf {
    pub(super) fn new() -> ControlBuf {
        ControlBuf([0; CONTROL_LEN])
    }

    pub(super) fn as_mut_ptr(&mut self) -> *mut libc::c_void {
        self.0.as_mut_ptr().cast()
    }

    pub(super) fn len(&self) -> usize {
        CONTROL_LEN
    }
}

/// The flags of every receive: descriptors arrive close-on-exec where the OS can do that
/// atomically.
#[cfg(not(target_vendor = "apple"))]
pub(super) const RECV_FLAGS: libc::c_int = libc::MSG_CMSG_CLOEXEC;
#[cfg(target_vendor = "apple")]
pub(super) const RECV_FLAGS: libc::c_int = 0;

/// `CMSG_SPACE(n)` for `n` bytes of data.
fn cmsg_space(n: usize) -> usize {
    // SAFETY: `CMSG_SPACE` is arithmetic on its integer argument; it takes no pointer and
    // dereferences nothing.
    (unsafe { libc::CMSG_SPACE(n as libc::c_uint) }) as usize
}

/// `CMSG_LEN(n)` for `n` bytes of data.
fn cmsg_len(n: usize) -> usize {
    // SAFETY: `CMSG_LEN` is arithmetic on its integer argument; it takes no pointer and
    // dereferences nothing.
    (unsafe { libc::CMSG_LEN(n as libc::c_uint) }) as usize
}

/// How many bytes of control buffer a receive that accepts `max_handles` descriptors offers.
/// With 0 the kernel attaches none: it reports `MSG_CTRUNC` and discards (closes) them.
#[cfg(not(target_vendor = "apple"))]
pub(super) fn control_len_for(max_handles: usize) -> usize {
    if max_handles == 0 {
        0
    } else {
        cmsg_space(max_handles.min(MAX_HANDLES) * FD_SIZE).min(CONTROL_LEN)
    }
}

/// Fills `msg`'s control fields with one `SCM_RIGHTS` message carrying `handles` (none: no
/// control data). `control` must outlive every use of `msg`.
pub(super) fn put_rights(
    msg: &mut libc::msghdr,
    control: &mut ControlBuf,
    handles: &[BorrowedFd<'_>],
) {
    if handles.is_empty() {
        return;
    }
    debug_assert!(handles.len() <= MAX_HANDLES, "checked by the caller");
    let data_len = handles.len() * FD_SIZE;
    let space = cmsg_space(data_len);
    let header = libc::cmsghdr {
        cmsg_len: cmsg_len(data_len) as _,
        cmsg_level: libc::SOL_SOCKET,
        cmsg_type: libc::SCM_RIGHTS,
    };
    let data_offset = cmsg_len(0);
    // The header at offset 0, then the descriptors at `CMSG_DATA`, written as bytes: no
    // pointer into the buffer is needed, so no alignment or bounds can be got wrong.
    control.0[..space].fill(0);
    // SAFETY: `cmsghdr` is plain old data with no padding (a length and two `c_int`s), so all
    // `size_of::<cmsghdr>()` bytes of `header` are initialised; `header` is a live local that
    // outlives `header_bytes`, which is only read.
    let header_bytes = unsafe {
        std::slice::from_raw_parts(
            (&header as *const libc::cmsghdr).cast::<u8>(),
            mem::size_of::<libc::cmsghdr>(),
        )
    };
    control.0[..header_bytes.len()].copy_from_slice(header_bytes);
    for (i, handle) in handles.iter().enumerate() {
        let at = data_offset + i * FD_SIZE;
        control.0[at..at + FD_SIZE].copy_from_slice(&handle.as_raw_fd().to_ne_bytes());
    }
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
}

/// Takes ownership of every descriptor in the control data the kernel returned, appending them
/// to `out`. Bounded by the buffer: a `cmsg_len` that claims more than the buffer holds (Apple
/// platforms keep the untruncated length on `MSG_CTRUNC`, rustix #1683) is clamped to it.
pub(super) fn take_rights(control: &ControlBuf, control_len: usize, out: &mut Vec<OwnedFd>) {
    let len = control_len.min(CONTROL_LEN);
    let header = mem::size_of::<libc::cmsghdr>();
    let data_offset = cmsg_len(0);
    let align = cmsg_space(1) - cmsg_space(0);
    let mut offset = 0usize;
    while offset.saturating_add(header) <= len {
        // SAFETY: `offset + size_of::<cmsghdr>() <= len <= CONTROL_LEN` (the loop condition),
        // so the read stays inside `control`, borrowed for the call; `read_unaligned` needs no
        // alignment, and any bytes are a valid `cmsghdr` (plain old data: integers only).
        let cmsg: libc::cmsghdr =
            unsafe { std::ptr::read_unaligned(control.0.as_ptr().add(offset).cast()) };
        let claimed = cmsg.cmsg_len as usize;
        if claimed < data_offset {
            break; // malformed: nothing more can be trusted
        }
        let end = offset.saturating_add(claimed).min(len);
        if cmsg.cmsg_level == libc::SOL_SOCKET && cmsg.cmsg_type == libc::SCM_RIGHTS {
            let start = offset + data_offset;
            let count = end.saturating_sub(start) / FD_SIZE;
            out.reserve(count);
            for i in 0..count {
                let at = start + i * FD_SIZE;
                let mut raw = [0u8; FD_SIZE];
                raw.copy_from_slice(&control.0[at..at + FD_SIZE]);
                let fd = RawFd::from_ne_bytes(raw);
                if fd >= 0 {
                    // SAFETY: the kernel installed this descriptor in our table for this
                    // receive (SCM_RIGHTS data within the returned control length); nothing
                    // else knows it yet, so the OwnedFd takes it over and is its only closer.
                    out.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        let step = claimed.div_ceil(align).saturating_mul(align);
        match offset.checked_add(step) {
            Some(next) if next > offset && next < len => offset = next,
            _ => break,
        }
    }
}

/// Makes received descriptors close-on-exec where the receive could not do it atomically.
#[cfg(target_vendor = "apple")]
pub(super) fn set_cloexec_all(fds: &[OwnedFd]) -> io::Result<()> {
    use std::os::fd::AsFd;
    for fd in fds {
        super::set_cloexec(fd.as_fd())?;
    }
    Ok(())
}

/// `sendmsg(2)` of `msg`, retried on `EINTR`, never raising `SIGPIPE`.
pub(super) fn sendmsg(fd: BorrowedFd<'_>, msg: &libc::msghdr) -> io::Result<usize> {
    loop {
        // SAFETY: `fd` is a BorrowedFd, so it stays open for the call. `msg` starts as
        // `msghdr()` (null, zero); the callers (here and in `frame.rs`) point `msg_iov` at
        // `msg_iovlen` live `IoSlice`s and `msg_control` (via `put_rights`) at a `ControlBuf`
        // of at least `msg_controllen` bytes, all borrowed across this call; the kernel only
        // reads them. This safe fn relies on those callers for that.
        let n = unsafe { libc::sendmsg(fd.as_raw_fd(), msg, super::stream::SEND_FLAGS) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `recvmsg(2)` into `msg`, retried on `EINTR`; a reset connection is end-of-file (0).
pub(super) fn recvmsg(
    fd: BorrowedFd<'_>,
    msg: &mut libc::msghdr,
    flags: libc::c_int,
) -> io::Result<usize> {
    loop {
        // SAFETY: `fd` is a BorrowedFd, so it stays open for the call. `msg` starts as
        // `msghdr()` (null, zero); the callers (here and in `frame.rs`) point `msg_iov` at
        // `msg_iovlen` live `IoSliceMut`s and `msg_control`, if set, at a `ControlBuf` of at
        // least `msg_controllen` bytes, all exclusively borrowed across this call; the kernel
        // writes at most those lengths. This safe fn relies on those callers for that.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), msg, flags) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECONNRESET) => return Ok(0),
            _ => return Err(err),
        }
    }
}

/// An empty `msghdr`.
pub(super) fn msghdr() -> libc::msghdr {
    // SAFETY: `msghdr` is plain old data; all-zero (null pointers, zero lengths) is valid.
    unsafe { mem::zeroed() }
}

// ---- the backend contract, on a connected stream of kind `Messages` ----

/// Sends one whole message with `handles` attached.
pub(crate) fn send(stream: &Stream, bytes: &[u8], handles: &[BorrowedFd<'_>]) -> io::Result<()> {
    send_fd(stream.as_fd(), bytes, handles)
}

/// Receives one whole message (see [`recv_fd`]).
pub(crate) fn recv(
    stream: &Stream,
    buf: &mut [u8],
    handles: &mut Vec<OwnedFd>,
    max_handles: usize,
    check_fit: bool,
) -> io::Result<Option<usize>> {
    recv_fd(stream.as_fd(), buf, handles, max_handles, check_fit)
}

/// The length of the next message without taking it.
pub(crate) fn peek_len(stream: &Stream) -> io::Result<Option<usize>> {
    peek_len_fd(stream.as_fd())
}

// ---- Apple platforms: frames on a stream socket ----

/// Sends one whole message with `handles` attached, as a frame.
#[cfg(target_vendor = "apple")]
pub(crate) fn send_fd(
    fd: BorrowedFd<'_>,
    bytes: &[u8],
    handles: &[BorrowedFd<'_>],
) -> io::Result<()> {
    super::frame::send(fd, bytes, handles)
}

/// The length of the next message without taking it (`None` at end-of-file).
#[cfg(target_vendor = "apple")]
pub(crate) fn peek_len_fd(fd: BorrowedFd<'_>) -> io::Result<Option<usize>> {
    super::frame::peek_len(fd)
}

/// Receives one whole frame (see the seqpacket [`recv_fd`] for the contract).
#[cfg(target_vendor = "apple")]
pub(crate) fn recv_fd(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    handles: &mut Vec<OwnedFd>,
    max_handles: usize,
    check_fit: bool,
) -> io::Result<Option<usize>> {
    super::frame::recv(fd, buf, handles, max_handles, check_fit)
}

// ---- SOCK_SEQPACKET: one record per message ----

/// Sends one message: the tag, `bytes`, and `handles` as `SCM_RIGHTS`, in one record.
#[cfg(not(target_vendor = "apple"))]
pub(crate) fn send_fd(
    fd: BorrowedFd<'_>,
    bytes: &[u8],
    handles: &[BorrowedFd<'_>],
) -> io::Result<()> {
    policy::check_send(bytes.len(), handles.len())?;
    let tag = [TAG];
    let iov = [IoSlice::new(&tag), IoSlice::new(bytes)];
    let mut msg = msghdr();
    // `IoSlice` is ABI-compatible with `iovec`; sendmsg does not write through it.
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    let mut control = ControlBuf::new();
    put_rights(&mut msg, &mut control, handles);
    let sent = sendmsg(fd, &msg)?;
    if sent != 1 + bytes.len() {
        // A SOCK_SEQPACKET send is all or nothing; this would be a kernel bug.
        return Err(io::Error::other(format!(
            "sent {sent} of {} bytes of a message",
            1 + bytes.len()
        )));
    }
    Ok(())
}

/// The length of the next message without taking it (`None` at end-of-file). Waits for one on
/// a blocking socket.
#[cfg(not(target_vendor = "apple"))]
pub(crate) fn peek_len_fd(fd: BorrowedFd<'_>) -> io::Result<Option<usize>> {
    // Linux returns the record's full length with MSG_TRUNC; elsewhere peek into a buffer
    // that holds the largest valid message and one byte more.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let mut scratch = [0u8; 1];
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let mut scratch = vec![0u8; MAX_MESSAGE_LEN + 2];
    let mut iov = [IoSliceMut::new(&mut scratch)];
    let mut msg = msghdr();
    msg.msg_iov = iov.as_mut_ptr().cast();
    msg.msg_iovlen = 1;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = libc::MSG_PEEK | libc::MSG_TRUNC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = libc::MSG_PEEK;
    // No control buffer: a peek installs no descriptor, they stay with the queued record.
    let n = recvmsg(fd, &mut msg, flags)?;
    Ok(n.checked_sub(1))
}

/// Receives one whole message into `buf`, appending its descriptors to `handles`; `None` at
/// end-of-file. With `check_fit`, a message longer than `buf` (but within the limit) is left
/// queued and reported with its length (without, the caller has peeked the length already);
/// everything else that is wrong consumes the message and closes its descriptors.
#[cfg(not(target_vendor = "apple"))]
pub(crate) fn recv_fd(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    handles: &mut Vec<OwnedFd>,
    max_handles: usize,
    check_fit: bool,
) -> io::Result<Option<usize>> {
    if check_fit && buf.len() < MAX_MESSAGE_LEN {
        match peek_len_fd(fd)? {
            None => return Ok(None),
            Some(len) if len > buf.len() && len <= MAX_MESSAGE_LEN => {
                return Err(policy::short_buffer(len, buf.len()))
            }
            // Fits; or too long, which the receive below consumes and reports.
            Some(_) => {}
        }
    }
    let mut tag = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut tag), IoSliceMut::new(buf)];
    let mut msg = msghdr();
    msg.msg_iov = iov.as_mut_ptr().cast();
    msg.msg_iovlen = iov.len() as _;
    let mut control = ControlBuf::new();
    let control_len = control_len_for(max_handles);
    if control_len > 0 {
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control_len as _;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = RECV_FLAGS | libc::MSG_TRUNC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = RECV_FLAGS;
    let received = recvmsg(fd, &mut msg, flags)?;
    // Own the descriptors before looking at anything else: every return below closes them
    // unless they are handed over.
    let first = handles.len();
    #[allow(clippy::unnecessary_cast)] // `socklen_t` on some platforms
    take_rights(&control, msg.msg_controllen as usize, handles);
    let fail = |handles: &mut Vec<OwnedFd>, err: io::Error| {
        handles.truncate(first);
        Err(err)
    };
    if received == 0 {
        handles.truncate(first); // end-of-file carries no descriptors; close any all the same
        return Ok(None);
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 || handles.len() - first > max_handles {
        return fail(handles, policy::too_many_handles(max_handles));
    }
    if tag[0] != TAG {
        return fail(handles, policy::bad_tag(tag[0]));
    }
    let len = received - 1;
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return fail(handles, policy::truncated(len, buf.len()));
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(target_vendor = "apple"))]
    #[test]
    fn control_buffer_holds_max_handles() {
        assert!(cmsg_space(MAX_HANDLES * FD_SIZE) <= CONTROL_LEN);
        assert_eq!(control_len_for(0), 0);
        assert!(control_len_for(1) >= cmsg_len(FD_SIZE));
    }

    #[test]
    fn take_rights_survives_lying_lengths() {
        // A header claiming far more data than the buffer holds (the macOS MSG_CTRUNC trap),
        // and one claiming less than a header: no panic, no descriptor out of thin air.
        for claimed in [0usize, 1, 7, cmsg_len(0), usize::MAX / 2, usize::MAX] {
            let mut control = ControlBuf::new();
            let header = libc::cmsghdr {
                cmsg_len: claimed as _,
                cmsg_level: libc::SOL_SOCKET,
                cmsg_type: libc::SCM_RIGHTS + 1, // not rights: nothing is adopted
            };
            // SAFETY: `cmsghdr` has no padding (a length and two `c_int`s), so all its bytes
            // are initialised; `header` is a live local that outlives `bytes`, only read.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (&header as *const libc::cmsghdr).cast::<u8>(),
                    mem::size_of::<libc::cmsghdr>(),
                )
            };
            control.0[..bytes.len()].copy_from_slice(bytes);
            let mut out = Vec::new();
            take_rights(&control, CONTROL_LEN, &mut out);
            assert!(out.is_empty());
            take_rights(&control, usize::MAX, &mut out);
            assert!(out.is_empty());
        }
    }
}
