//! Messages as frames on a `SOCK_STREAM` socket, for Apple platforms (no `AF_UNIX`
//! `SOCK_SEQPACKET` there). Compiled on every Unix, so that it is unit-tested and fuzzed on Linux
//! too (the fuzz target drives [`recv`] with arbitrary bytes and descriptors).
//!
//! A frame is a 7-byte header — the tag (0), the message's length (`u32` LE), the number of
//! descriptors (`u16` LE) — then the message's bytes. The descriptors ride as one `SCM_RIGHTS`
//! control message on the same `sendmsg` as the header, so the kernel attaches them to the
//! header's first byte; a stream receive never crosses into data that carries other control
//! data, so they arrive with the header.
//!
//! Every receive owns the descriptors it got before any check, and a frame that was begun is
//! always read to its end (a frame with more descriptors than allowed, or one with stray
//! descriptors on its payload, is dropped whole): the next receive starts at the next header.
//! A malformed header (wrong tag, a length over the limit) leaves no way to find the next frame:
//! the read side is shut down, so later receives report end-of-file.

#![cfg_attr(not(target_vendor = "apple"), allow(dead_code))]

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::message::{msghdr, put_rights, recvmsg, sendmsg, take_rights, ControlBuf, RECV_FLAGS};
use super::{cvt, message::TAG};
use crate::message::{self as policy, MAX_HANDLES, MAX_MESSAGE_LEN};

/// Tag, length, descriptor count.
pub(crate) const HEADER: usize = 7;

/// A frame's header, checked: the message length and the number of descriptors it announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) len: usize,
    pub(crate) handles: usize,
}

/// Encodes a header. The caller checked the limits.
pub(crate) fn encode(len: usize, handles: usize) -> [u8; HEADER] {
    let mut header = [0u8; HEADER];
    header[0] = TAG;
    header[1..5].copy_from_slice(&(len as u32).to_le_bytes());
    header[5..7].copy_from_slice(&(handles as u16).to_le_bytes());
    header
}

/// Decodes and checks a header: the pure part of the parser.
pub(crate) fn decode(header: &[u8; HEADER]) -> io::Result<Header> {
    if header[0] != TAG {
        return Err(policy::bad_tag(header[0]));
    }
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let handles = usize::from(u16::from_le_bytes([header[5], header[6]]));
    if len > MAX_MESSAGE_LEN {
        return Err(policy::truncated(len, MAX_MESSAGE_LEN));
    }
    if handles > MAX_HANDLES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame announces {handles} handles, more than the {MAX_HANDLES} allowed"),
        ));
    }
    Ok(Header { len, handles })
}

/// Sends `bytes` with `fds` attached in one `sendmsg`, unframed: the fuzz target's way to put
/// arbitrary bytes and descriptors in front of [`recv`].
#[cfg(fuzzing)]
pub(crate) fn send_raw(
    fd: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    let iov = [IoSlice::new(bytes)];
    let mut msg = msghdr();
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = 1;
    let mut control = ControlBuf::new();
    put_rights(&mut msg, &mut control, &fds[..fds.len().min(MAX_HANDLES)]);
    sendmsg(fd, &msg)
}

/// Waits until `fd` is writable (a non-blocking socket in the middle of a frame).
fn wait_writable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        // SAFETY: `poll` is a live local `pollfd` and the count passed is 1, so the kernel
        // reads and writes only it; its `fd` is a BorrowedFd, open for the call.
        match cvt(unsafe { libc::poll(&mut poll, 1, -1) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map(drop),
        }
    }
}

/// Sends one frame. Once its first byte is out the whole frame is sent, waiting if the socket
/// is non-blocking, so that the stream never holds half a frame; before that, `WouldBlock`
/// means nothing was sent.
pub(crate) fn send(fd: BorrowedFd<'_>, bytes: &[u8], handles: &[BorrowedFd<'_>]) -> io::Result<()> {
    policy::check_send(bytes.len(), handles.len())?;
    let header = encode(bytes.len(), handles.len());
    let total = HEADER + bytes.len();
    let iov = [IoSlice::new(&header), IoSlice::new(bytes)];
    let mut msg = msghdr();
    // `IoSlice` is ABI-compatible with `iovec`; sendmsg does not write through it.
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    let mut control = ControlBuf::new();
    put_rights(&mut msg, &mut control, handles);
    let mut sent = sendmsg(fd, &msg)?;
    while sent < total {
        let rest = if sent < HEADER {
            [IoSlice::new(&header[sent..]), IoSlice::new(bytes)]
        } else {
            [IoSlice::new(&[]), IoSlice::new(&bytes[sent - HEADER..])]
        };
        let mut msg = msghdr();
        msg.msg_iov = rest.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = rest.len() as _;
        match sendmsg(fd, &msg) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(fd)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes of the current frame, closing (and reporting) descriptors
/// that arrive with them. `Ok(false)` if the peer closed first.
fn read_exact(
    fd: BorrowedFd<'_>,
    mut buf: &mut [u8],
    control: &mut ControlBuf,
    stray: &mut Vec<OwnedFd>,
) -> io::Result<bool> {
    while !buf.is_empty() {
        let mut iov = [IoSliceMut::new(buf)];
        let mut msg = msghdr();
        msg.msg_iov = iov.as_mut_ptr().cast();
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr();
        msg.msg_controllen = control.len() as _;
        let n = match recvmsg(fd, &mut msg, RECV_FLAGS | libc::MSG_WAITALL) {
            // The frame is known to be there (or we block for it): a non-blocking socket that
            // runs dry mid-frame is waited on rather than leave half a frame read.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_readable(fd)?;
                continue;
            }
            other => other?,
        };
        #[allow(clippy::unnecessary_cast)] // `socklen_t` on some platforms
        take_rights(control, msg.msg_controllen as usize, stray);
        if n == 0 {
            return Ok(false);
        }
        buf = &mut buf[n..];
    }
    Ok(true)
}

/// Waits until `fd` is readable.
fn wait_readable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `poll` is a live local `pollfd` and the count passed is 1, so the kernel
        // reads and writes only it; its `fd` is a BorrowedFd, open for the call.
        match cvt(unsafe { libc::poll(&mut poll, 1, -1) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map(drop),
        }
    }
}

/// Bytes queued for reading on `fd`.
fn queued(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; FIONREAD writes one `c_int`
    // through the pointer, and `n` is a live local `c_int`.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) })?;
    Ok(n.max(0) as usize)
}

/// Peeks at the next header without taking anything: `None` at end-of-file. On a blocking
/// socket waits for the whole header; on a non-blocking one `WouldBlock` until it is there. A
/// peer that closed after part of a header gives `UnexpectedEof` (the part is dropped).
fn peek_header(fd: BorrowedFd<'_>) -> io::Result<Option<[u8; HEADER]>> {
    let mut header = [0u8; HEADER];
    loop {
        let mut iov = [IoSliceMut::new(&mut header)];
        let mut msg = msghdr();
        msg.msg_iov = iov.as_mut_ptr().cast();
        msg.msg_iovlen = 1;
        // No control buffer: a peek installs no descriptor.
        let n = recvmsg(fd, &mut msg, libc::MSG_PEEK | libc::MSG_WAITALL)?;
        if n == 0 {
            return Ok(None);
        }
        if n == HEADER {
            return Ok(Some(header));
        }
        // Part of a header: our senders never split one, so the peer is gone or broken.
        if peer_gone(fd)? {
            return Err(drop_queued(fd, mid_frame()));
        }
        if queued(fd)? >= HEADER {
            // The rest is there, but the peek stopped at descriptors attached in the middle of
            // the header (Linux peeks stop there): not a frame any sender of ours writes.
            return Err(malformed(
                fd,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a frame header came in pieces with descriptors in between",
                ),
            ));
        }
        if is_nonblocking(fd)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // The BSDs and Apple platforms return part of a blocking MSG_WAITALL peek only at
        // end-of-file; Linux returns what is queued, so wait for the rest.
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        return Err(drop_queued(fd, mid_frame()));
        #[cfg(any(target_os = "linux", target_os = "android"))]
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Whether the peer has closed (or shut down its writing half): nothing more will arrive.
fn peer_gone(fd: BorrowedFd<'_>) -> io::Result<bool> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let hangup = libc::POLLHUP | libc::POLLRDHUP;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let hangup = libc::POLLHUP;
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN | hangup,
        revents: 0,
    };
    // SAFETY: `poll` is a live local `pollfd` and the count passed is 1, so the kernel reads
    // and writes only it; its `fd` is a BorrowedFd, open for the call.
    cvt(unsafe { libc::poll(&mut poll, 1, 0) })?;
    Ok(poll.revents & hangup != 0)
}

/// The length of the next message without taking it; `None` at end-of-file.
pub(crate) fn peek_len(fd: BorrowedFd<'_>) -> io::Result<Option<usize>> {
    match peek_header(fd)? {
        None => Ok(None),
        Some(header) => match decode(&header) {
            Ok(header) => Ok(Some(header.len)),
            Err(e) => Err(malformed(fd, e)),
        },
    }
}

/// A malformed header: the frame boundaries are lost, so reading stops here: the read side is
/// shut down (the peer can queue nothing more), and what is queued is dropped. Later receives
/// report end-of-file.
fn malformed(fd: BorrowedFd<'_>, err: io::Error) -> io::Error {
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; `shutdown` takes only
    // integers.
    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RD) };
    let err = io::Error::new(
        err.kind(),
        format!("{err}; the frame boundaries are lost, so this connection reads no further"),
    );
    drop_queued(fd, err)
}

/// Reads and drops whatever is queued on `fd` without waiting, closing any descriptors in it;
/// returns `err`.
fn drop_queued(fd: BorrowedFd<'_>, err: io::Error) -> io::Error {
    let mut scratch = [0u8; 4096];
    let mut control = ControlBuf::new();
    loop {
        let mut iov = [IoSliceMut::new(&mut scratch)];
        let mut msg = msghdr();
        msg.msg_iov = iov.as_mut_ptr().cast();
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr();
        msg.msg_controllen = control.len() as _;
        match recvmsg(fd, &mut msg, RECV_FLAGS | libc::MSG_DONTWAIT) {
            Ok(n) => {
                let mut dropped = Vec::new();
                #[allow(clippy::unnecessary_cast)] // `socklen_t` on some platforms
                take_rights(&control, msg.msg_controllen as usize, &mut dropped);
                if n == 0 {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    err
}

/// Receives one frame (see the seqpacket `recv` for the contract).
pub(crate) fn recv(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    handles: &mut Vec<OwnedFd>,
    max_handles: usize,
    check_fit: bool,
) -> io::Result<Option<usize>> {
    let Some(raw) = peek_header(fd)? else {
        return Ok(None);
    };
    let header = decode(&raw).map_err(|e| malformed(fd, e))?;
    if check_fit && header.len > buf.len() {
        return Err(policy::short_buffer(header.len, buf.len()));
    }
    if queued(fd)? < HEADER + header.len && is_nonblocking(fd)? {
        // Do not start a frame that cannot be finished now.
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let first = handles.len();
    let mut control = ControlBuf::new();
    let mut header_bytes = [0u8; HEADER];
    let complete = read_exact(fd, &mut header_bytes, &mut control, handles)?;
    #[cfg(target_vendor = "apple")]
    super::message::set_cloexec_all(&handles[first..])?;
    let fail = |handles: &mut Vec<OwnedFd>, err: io::Error| {
        handles.truncate(first);
        Err(err)
    };
    if !complete {
        return fail(handles, mid_frame());
    }
    let len = header.len;
    let mut stray = Vec::new();
    let fits = len <= buf.len();
    let complete = if fits {
        read_exact(fd, &mut buf[..len], &mut control, &mut stray)?
    } else {
        // Only without `check_fit` (a caller that peeked) and a racing receiver: drop it.
        let mut sink = vec![0u8; len];
        read_exact(fd, &mut sink, &mut control, &mut stray)?
    };
    #[cfg(target_vendor = "apple")]
    super::message::set_cloexec_all(&stray)?;
    if !complete {
        return fail(handles, mid_frame());
    }
    if !fits {
        return fail(handles, policy::truncated(len, buf.len()));
    }
    let got = handles.len() - first;
    if !stray.is_empty() || got != header.handles {
        return fail(
            handles,
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a frame announced {} handles and carried {}; it was dropped and its \
                     handles closed",
                    header.handles,
                    got + stray.len()
                ),
            ),
        );
    }
    if got > max_handles {
        return fail(handles, policy::too_many_handles(max_handles));
    }
    Ok(Some(len))
}

fn mid_frame() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the peer closed the connection in the middle of a message; the part received was \
         dropped",
    )
}

fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; F_GETFL takes no third
    // argument and writes no memory of ours.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    Ok(flags & libc::O_NONBLOCK != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn headers_round_trip_and_bad_ones_are_refused() {
        for (len, handles) in [(0, 0), (1, 253), (MAX_MESSAGE_LEN, 7)] {
            assert_eq!(
                decode(&encode(len, handles)).unwrap(),
                Header { len, handles }
            );
        }
        let mut bad = encode(5, 0);
        bad[0] = 1;
        assert_eq!(decode(&bad).unwrap_err().kind(), io::ErrorKind::InvalidData);
        let long = encode(MAX_MESSAGE_LEN + 1, 0);
        assert_eq!(
            decode(&long).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let many = encode(0, MAX_HANDLES + 1);
        assert_eq!(
            decode(&many).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn frames_keep_boundaries_and_descriptors_on_a_stream_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let (x, _y) = UnixStream::pair().unwrap();
        send(a.as_fd(), b"", &[]).unwrap();
        send(a.as_fd(), b"with two", &[x.as_fd(), x.as_fd()]).unwrap();
        send(a.as_fd(), &vec![3u8; MAX_MESSAGE_LEN], &[]).unwrap();
        send(a.as_fd(), b"refused", &[x.as_fd()]).unwrap();
        send(a.as_fd(), b"last", &[]).unwrap();
        let mut buf = vec![0u8; MAX_MESSAGE_LEN];
        let mut handles = Vec::new();
        assert_eq!(
            recv(b.as_fd(), &mut buf, &mut handles, 4, true).unwrap(),
            Some(0)
        );
        assert_eq!(
            recv(b.as_fd(), &mut buf, &mut handles, 4, true).unwrap(),
            Some(8)
        );
        assert_eq!(handles.len(), 2);
        let err = recv(b.as_fd(), &mut buf[..10], &mut handles, 4, true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(peek_len(b.as_fd()).unwrap(), Some(MAX_MESSAGE_LEN));
        assert_eq!(
            recv(b.as_fd(), &mut buf, &mut handles, 4, true).unwrap(),
            Some(MAX_MESSAGE_LEN)
        );
        let err = recv(b.as_fd(), &mut buf, &mut handles, 0, true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(handles.len(), 2);
        assert_eq!(
            recv(b.as_fd(), &mut buf, &mut handles, 0, true).unwrap(),
            Some(4)
        );
        drop(a);
        assert_eq!(
            recv(b.as_fd(), &mut buf, &mut handles, 0, true).unwrap(),
            None
        );
    }

    #[test]
    fn a_peer_that_stops_mid_frame_gives_an_error_not_half_a_message() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&encode(100, 0)).unwrap();
        a.write_all(&[1u8; 40]).unwrap();
        drop(a);
        let mut buf = vec![0u8; 200];
        let mut handles = Vec::new();
        let err = recv(b.as_fd(), &mut buf, &mut handles, 0, true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_peer_that_stops_mid_header_gives_an_error_then_eof() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&encode(100, 0)[..3]).unwrap();
        drop(a);
        let mut buf = vec![0u8; 200];
        let mut handles = Vec::new();
        let err = recv(b.as_fd(), &mut buf, &mut handles, 0, true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            recv(b.as_fd(), &mut buf, &mut handles, 0, true).unwrap(),
            None
        );
    }

    #[test]
    fn a_malformed_header_stops_reading() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"garbage, not a frame").unwrap();
        let mut buf = vec![0u8; 200];
        let mut handles = Vec::new();
        let err = recv(b.as_fd(), &mut buf, &mut handles, 0, true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            recv(b.as_fd(), &mut buf, &mut handles, 0, true).unwrap(),
            None
        );
    }
}
