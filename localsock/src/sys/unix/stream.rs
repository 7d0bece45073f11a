//! A connected `AF_UNIX` stream socket.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use super::{cvt, cvt_retry, getsockopt, new_socket, setsockopt, SockAddr};
use crate::sys::Credentials;
use crate::sys::{Addr, ConnectFailure, ConnectSpec};
use crate::sys::{ServerUser, UserId};

/// No `SIGPIPE` on a send to a closed peer: `MSG_NOSIGNAL` where `send` takes it (Linux and the
/// BSDs); Apple platforms have no such flag, and `SO_NOSIGPIPE` is set on the socket instead.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
pub(super) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)))]
pub(super) const SEND_FLAGS: libc::c_int = 0; // Apple: SO_NOSIGPIPE is set on the socket instead

/// The most buffers one `readv`/`sendmsg` takes (`IOV_MAX` on Linux, Apple platforms and the
/// BSDs); more fail with `EINVAL`/`EMSGSIZE`, so the rest waits for the next call, as in std.
const IOV_MAX: usize = 1024;

pub(crate) struct Stream {
    fd: OwnedFd,
}

impl Stream {
    /// One connect attempt on a fresh non-blocking socket, so a full backlog is reported at
    /// once (`EAGAIN`) instead of blocking; the socket is made blocking again on success.
    pub(crate) fn connect(addr: &Addr, spec: ConnectSpec) -> Result<Stream, ConnectFailure> {
        let stream = Stream::connect_nonblocking(addr, spec)?;
        super::set_nonblocking(stream.fd.as_fd(), false).map_err(ConnectFailure::Fatal)?;
        Ok(stream)
    }

    /// As [`connect`](Self::connect), the socket left non-blocking (for the async stream).
    pub(crate) fn connect_nonblocking(
        addr: &Addr,
        spec: ConnectSpec,
    ) -> Result<Stream, ConnectFailure> {
        let addr = SockAddr::new(addr).map_err(ConnectFailure::Fatal)?;
        let fd = new_socket(spec.kind, true).map_err(ConnectFailure::Fatal)?;
        // SAFETY: `fd` is the OwnedFd made above, held by this function, so it is open for the
        // call; `addr` is a live local `sockaddr_un` whose first `addr.len` bytes (the length
        // passed) are initialised; the kernel only reads them.
        let ret = cvt_retry(|| unsafe { libc::connect(fd.as_raw_fd(), addr.as_ptr(), addr.len) });
        match ret {
            Ok(_) => Ok(Stream { fd }),
            Err(err) => Err(classify(err)),
        }
    }

    /// Unix has no "wait until the server can accept" call: sleep.
    pub(crate) fn wait_busy(_addr: &Addr, slice: Duration) {
        std::thread::sleep(slice);
    }

    #[inline]
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `self.fd` is an OwnedFd borrowed through `&self`, so it stays open for the
        // call; `buf` is a live &mut [u8] of `buf.len()` bytes borrowed for the call, the
        // length passed; the kernel writes at most that many.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return eof_if_reset(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    pub(crate) fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let count = bufs.len().min(IOV_MAX) as libc::c_int;
        // SAFETY: `self.fd` is an OwnedFd borrowed through `&self`, so it stays open for the
        // call; `IoSliceMut` is ABI-compatible with `iovec`, `count` is at most `bufs.len()`,
        // and each slice is a live &mut [u8] borrowed for the call; the kernel writes at most
        // each one's length into it.
        let n = unsafe { libc::readv(self.fd.as_raw_fd(), bufs.as_mut_ptr().cast(), count) };
        if n < 0 {
            return eof_if_reset(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    #[inline]
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        send(self.fd.as_fd(), buf)
    }

    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        send_vectored(self.fd.as_fd(), bufs)
    }

    pub(crate) fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: `self.fd` is an OwnedFd borrowed through `&self`, so it stays open for the
        // call; `shutdown` takes only integers.
        cvt(unsafe { libc::shutdown(self.fd.as_raw_fd(), how) })?;
        Ok(())
    }

    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        // `OwnedFd::try_clone` uses F_DUPFD_CLOEXEC.
        Ok(Stream {
            fd: self.fd.try_clone()?,
        })
    }

    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        set_timeout(self.fd.as_fd(), libc::SO_RCVTIMEO, timeout)
    }

    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        set_timeout(self.fd.as_fd(), libc::SO_SNDTIMEO, timeout)
    }

    pub(crate) fn read_timeout(&self) -> io::Result<Option<Duration>> {
        get_timeout(self.fd.as_fd(), libc::SO_RCVTIMEO)
    }

    pub(crate) fn write_timeout(&self) -> io::Result<Option<Duration>> {
        get_timeout(self.fd.as_fd(), libc::SO_SNDTIMEO)
    }

    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        super::set_nonblocking(self.fd.as_fd(), nonblocking)
    }

    pub(crate) fn peer_credentials(&self) -> io::Result<Credentials> {
        peer_credentials(self.fd.as_fd())
    }
}

/// A read error, except `ECONNRESET`, which is end-of-file: Linux reports it once when the peer
/// closed without reading everything we sent. The peer is gone all the same, and the contract
/// is that a vanished peer reads as EOF.
fn eof_if_reset(err: io::Error) -> io::Result<usize> {
    if err.raw_os_error() == Some(libc::ECONNRESET) {
        Ok(0)
    } else {
        Err(err)
    }
}

/// `send(2)` that never raises `SIGPIPE` (also used by the async stream on tokio's socket).
#[inline]
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; `buf` is a live &[u8] of
    // `buf.len()` bytes borrowed for the call, the length passed; the kernel only reads it.
    let n = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), SEND_FLAGS) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `sendmsg(2)` of several buffers that never raises `SIGPIPE`.
pub(crate) fn send_vectored(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: `msghdr` is plain old data; all-zero (null pointers, zero lengths) is a valid
    // value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is ABI-compatible with `iovec`; sendmsg does not write through it.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(IOV_MAX) as _;
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; `msg` is a live local whose
    // iovec pointer is `bufs` (ABI-compatible `IoSlice`s borrowed for the call) with a count
    // of at most `bufs.len()`, and whose other pointers are null with zero lengths; the
    // kernel only reads through it.
    let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, SEND_FLAGS) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Sorts a failed `connect(2)` into retry classes.
fn classify(err: io::Error) -> ConnectFailure {
    match err.raw_os_error() {
        // Linux: the listener's backlog is full. The connect did not happen; a new attempt is
        // needed (polling this socket would report POLLOUT|POLLHUP, not a connection).
        Some(libc::EAGAIN) | Some(libc::EINPROGRESS) => ConnectFailure::Busy(err),
        Some(libc::ENOENT) | Some(libc::ECONNREFUSED) => ConnectFailure::NoServer(err),
        Some(libc::EPROTOTYPE) => ConnectFailure::Fatal(io::Error::new(
            err.kind(),
            format!(
                "the server there is of the other kind (a byte-stream client and a message \
                 server, or the reverse, cannot connect): {err}"
            ),
        )),
        _ => ConnectFailure::Fatal(err),
    }
}

fn set_timeout(fd: BorrowedFd<'_>, opt: libc::c_int, timeout: Option<Duration>) -> io::Result<()> {
    let tv = match timeout {
        None => libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        Some(d) => {
            let secs = d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t;
            let mut tv = libc::timeval {
                tv_sec: secs,
                tv_usec: d.subsec_micros() as libc::suseconds_t,
            };
            if tv.tv_sec == 0 && tv.tv_usec == 0 {
                tv.tv_usec = 1; // a sub-microsecond timeout must not mean "forever"
            }
            tv
        }
    };
    setsockopt(fd, libc::SOL_SOCKET, opt, tv)
}

fn get_timeout(fd: BorrowedFd<'_>, opt: libc::c_int) -> io::Result<Option<Duration>> {
    let tv: libc::timeval = getsockopt(fd, libc::SOL_SOCKET, opt)?;
    if tv.tv_sec == 0 && tv.tv_usec == 0 {
        return Ok(None);
    }
    Ok(Some(
        Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64),
    ))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn peer_credentials(fd: BorrowedFd<'_>) -> io::Result<Credentials> {
    let cred: libc::ucred = getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED)?;
    Ok(Credentials {
        // Linux reports pid 0 when the peer's pid is not visible (another pid namespace).
        pid: (cred.pid > 0).then_some(cred.pid as u32),
        uid: Some(cred.uid),
        gid: Some(cred.gid),
        sid: None,
    })
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn peer_credentials(fd: BorrowedFd<'_>) -> io::Result<Credentials> {
    let mut uid: libc::uid_t = 0;
    let mut gid: libc::gid_t = 0;
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; `uid` and `gid` are live
    // locals of the types the call writes.
    cvt(unsafe { libc::getpeereid(fd.as_raw_fd(), &mut uid, &mut gid) })?;
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    let pid = {
        const SOL_LOCAL: libc::c_int = 0;
        const LOCAL_PEERPID: libc::c_int = 2;
        getsockopt::<libc::pid_t>(fd, SOL_LOCAL, LOCAL_PEERPID)
            .ok()
            .filter(|p| *p > 0)
            .map(|p| p as u32)
    };
    #[cfg(not(any(target_os = "macos", target_os = "ios")))]
    let pid = None;
    Ok(Credentials {
        pid,
        uid: Some(uid),
        gid: Some(gid),
        sid: None,
    })
}

/// Whether the peer runs with this process's effective uid.
pub(crate) fn peer_uid_matches(stream: &Stream) -> io::Result<bool> {
    peer_uid_matches_fd(stream.fd.as_fd())
}

/// Whether the peer of a connected socket runs with this process's effective uid.
pub(crate) fn peer_uid_matches_fd(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let creds = peer_credentials(fd)?;
    Ok(same_user(creds.uid, super::geteuid(), unmapped_uid()))
}

/// The `require_same_user` decision. `unmapped` is the uid the kernel shows for users that
/// have no mapping in this process's user namespace (`overflowuid`), when some users are
/// unmapped: a peer shown with it may be *any* outside user, so it is never "the same user" —
/// even when this process itself runs as that uid (then every peer is refused: there is no way
/// to tell them apart).
pub(crate) fn same_user(peer: Option<u32>, me: u32, unmapped: Option<u32>) -> bool {
    match peer {
        Some(peer) => peer == me && Some(peer) != unmapped,
        None => false,
    }
}

/// `Some(overflowuid)` when this process runs in a user namespace that does not map every uid
/// (any namespace but the initial one, in practice); `None` in the initial namespace, where
/// the overflow uid (65534, `nobody`) is a user like any other. Read once from
/// `/proc/self/uid_map` and `/proc/sys/kernel/overflowuid`; if they cannot be read, assume
/// the worst (a namespace, overflow uid 65534).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn unmapped_uid() -> Option<u32> {
    use std::sync::OnceLock;
    static UNMAPPED: OnceLock<Option<u32>> = OnceLock::new();
    *UNMAPPED.get_or_init(|| {
        let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        if maps_every_uid(&map) {
            return None;
        }
        let overflow = std::fs::read_to_string("/proc/sys/kernel/overflowuid")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(65534);
        Some(overflow)
    })
}

/// Other systems have no user namespaces.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn unmapped_uid() -> Option<u32> {
    None
}

/// Whether a `uid_map` maps the whole uid range onto itself (the initial namespace:
/// `0 0 4294967295`).
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
fn maps_every_uid(uid_map: &str) -> bool {
    let fields: Vec<&str> = uid_map.split_whitespace().collect();
    fields == ["0", "0", "4294967295"]
}

impl Stream {
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// See [`server_user`].
    pub(crate) fn server_user(&self) -> io::Result<ServerUser> {
        server_user(self.fd.as_fd())
    }
}

/// Who runs the server of a connected client socket: its effective uid when it called
/// `listen` (`SO_PEERCRED` / `getpeereid`), recorded by the kernel and not forgeable.
pub(crate) fn server_user(fd: BorrowedFd<'_>) -> io::Result<ServerUser> {
    let creds = peer_credentials(fd)?;
    let uid = creds.uid.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "the peer's uid is not known on this platform",
        )
    })?;
    Ok(ServerUser {
        user: UserId::Uid(uid),
        pid: creds.pid,
    })
}

/// This process's user: its effective uid.
pub(crate) fn current_user() -> io::Result<UserId> {
    Ok(UserId::Uid(super::geteuid()))
}

/// The users trusted like the current one by [`crate::ServerIdentity::CurrentUserOrAdmin`]:
/// root.
pub(crate) fn admin_users() -> Vec<UserId> {
    vec![UserId::Uid(0)]
}

impl From<OwnedFd> for Stream {
    fn from(fd: OwnedFd) -> Stream {
        Stream { fd }
    }
}

impl From<Stream> for OwnedFd {
    fn from(stream: Stream) -> OwnedFd {
        stream.fd
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStream")
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overflow_uid_of_a_namespace_is_never_the_same_user() {
        // The initial namespace: uid 65534 is `nobody`, a user like any other.
        assert!(same_user(Some(65534), 65534, None));
        assert!(same_user(Some(1000), 1000, None));
        assert!(!same_user(Some(1001), 1000, None));
        assert!(!same_user(None, 1000, None));
        // In a namespace where some users are unmapped, they all show as the overflow uid.
        assert!(!same_user(Some(65534), 65534, Some(65534)));
        assert!(!same_user(Some(65534), 1000, Some(65534)));
        assert!(same_user(Some(1000), 1000, Some(65534)));
        // A changed overflowuid sysctl is honoured.
        assert!(!same_user(Some(4242), 4242, Some(4242)));
        assert!(same_user(Some(65534), 65534, Some(4242)));
    }

    #[test]
    fn only_the_identity_map_of_every_uid_is_the_initial_namespace() {
        assert!(maps_every_uid("         0          0 4294967295\n"));
        assert!(!maps_every_uid("         0       1000          1\n"));
        assert!(!maps_every_uid(""));
        assert!(!maps_every_uid("0 0 4294967295\n1 1 1\n"));
    }
}
