//! Descriptors handed to this process by its parent (systemd socket activation and the like):
//! checked to be what the caller expects before they become a listener.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use super::{cvt, getsockopt, set_cloexec};

/// What kind of descriptor `fd` is, in words for an error message.
fn describe(fd: BorrowedFd<'_>) -> io::Result<Described> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; `st` is a live local with
    // room for one `stat`, which the kernel only writes.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: `fstat` succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    let what = match st.st_mode & libc::S_IFMT {
        libc::S_IFSOCK => return Ok(Described::Socket),
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a pipe or FIFO",
        libc::S_IFCHR => "a character device (a terminal or /dev/null, for example)",
        libc::S_IFBLK => "a block device",
        _ => "not a socket",
    };
    Ok(Described::NotSocket(what))
}

enum Described {
    Socket,
    NotSocket(&'static str),
}

/// The socket's address family.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn domain(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    getsockopt::<libc::c_int>(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)
}

/// The socket's address family (no `SO_DOMAIN` here: read it from `getsockname`).
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn domain(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: `sockaddr_storage` is plain old data (integers and padding bytes), so all-zero
    // bytes are a valid value.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; `addr` is a live local
    // `sockaddr_storage` and `len` (a live local) is its size; the kernel writes at most `len`
    // bytes into it and stores the address's length in `len`.
    cvt(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    Ok(libc::c_int::from(addr.ss_family))
}

fn family_name(domain: libc::c_int) -> String {
    match domain {
        libc::AF_INET => "an IPv4 (AF_INET) socket".into(),
        libc::AF_INET6 => "an IPv6 (AF_INET6) socket".into(),
        libc::AF_UNIX => "an AF_UNIX socket".into(),
        other => format!("a socket of address family {other}"),
    }
}

fn type_name(ty: libc::c_int) -> String {
    match ty {
        libc::SOCK_DGRAM => "datagram (SOCK_DGRAM)".into(),
        libc::SOCK_SEQPACKET => "SOCK_SEQPACKET".into(),
        libc::SOCK_STREAM => "stream".into(),
        other => format!("type {other}"),
    }
}

/// Checks that `fd` is a listening `AF_UNIX` stream socket; otherwise `InvalidInput` saying
/// what it is instead. A socket that passes is made close-on-exec, like every listener the
/// crate makes: a parent may pass it without the flag, and the processes this one starts must
/// not hold (and keep alive) the listener it now owns.
pub(crate) fn check_listening_unix_stream(fd: impl AsFd) -> io::Result<()> {
    let fd = fd.as_fd();
    let raw = fd.as_raw_fd();
    let refuse = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("inherited descriptor {raw} is {what}, not a listening AF_UNIX stream socket"),
        )
    };
    if let Described::NotSocket(what) = describe(fd)? {
        return Err(refuse(what.into()));
    }
    let domain = domain(fd)?;
    if domain != libc::AF_UNIX {
        return Err(refuse(family_name(domain)));
    }
    let ty = getsockopt::<libc::c_int>(fd, libc::SOL_SOCKET, libc::SO_TYPE)?;
    if ty != libc::SOCK_STREAM {
        return Err(refuse(format!("an AF_UNIX {} socket", type_name(ty))));
    }
    let listening = getsockopt::<libc::c_int>(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)?;
    if listening == 0 {
        return Err(refuse(
            "an AF_UNIX stream socket that is not listening (connected, or bound without \
             listen(2))"
                .into(),
        ));
    }
    set_cloexec(fd)
}
