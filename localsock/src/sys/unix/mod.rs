//! Unix backend: `AF_UNIX` `SOCK_STREAM` sockets through `libc`.
#![allow(unsafe_code)]

#[cfg(feature = "systemd")]
mod activation;
pub(crate) mod frame;
mod from_raw;
mod inherit;
mod listener;
pub(crate) mod message;
cfg_shm! {
    pub(crate) mod shm;
}
mod stream;

#[cfg(feature = "systemd")]
pub(crate) use self::activation::take_listen_fds;
pub(crate) use self::inherit::check_listening_unix_stream;

pub(crate) use self::listener::Listener;
#[cfg(feature = "tokio")]
pub(crate) use self::listener::SocketFile;
#[cfg(feature = "tokio")]
pub(crate) use self::stream::server_user;
pub(crate) use self::stream::{admin_users, current_user, peer_uid_matches, Stream};
#[cfg(feature = "tokio")]
pub(crate) use self::stream::{peer_credentials, peer_uid_matches_fd, send, send_vectored};

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{Addr, Credentials, Kind};

/// Size of `sockaddr_un::sun_path`: 108 on Linux, 104 on macOS and the BSDs.
pub(crate) const SUN_PATH_LEN: usize =
    mem::size_of::<libc::sockaddr_un>() - mem::offset_of!(libc::sockaddr_un, sun_path);

/// Turns a `-1` return into the thread's `errno`.
/// Whether the OS error `code` means the process or the system is out of descriptors or
/// memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): an accept retried at once fails the same
/// way. The portable accept policy ([`crate::listener`]) decides what to do about it.
pub(crate) fn is_resource_shortage(code: i32) -> bool {
    matches!(
        code,
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
    )
}

pub(super) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`], retrying on `EINTR`.
pub(super) fn cvt_retry(mut f: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// An encoded `sockaddr_un` and its length.
pub(super) struct SockAddr {
    pub(super) addr: libc::sockaddr_un,
    pub(super) len: libc::socklen_t,
}

impl SockAddr {
    pub(super) fn new(addr: &Addr) -> io::Result<SockAddr> {
        // SAFETY: `sockaddr_un` is plain old data (integers and a byte array), so all-zero bytes
        // are a valid value.
        let mut raw: libc::sockaddr_un = unsafe { mem::zeroed() };
        raw.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let (bytes, start) = match addr {
            Addr::Path(path) => (path.as_os_str().as_bytes(), 0),
            Addr::Abstract(bytes) => (bytes.as_slice(), 1),
            Addr::Pipe(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a Windows pipe name cannot be used with a Unix socket",
                ))
            }
        };
        // Name's constructors checked the length; check again rather than trust it blindly.
        // Paths are counted with their NUL; abstract names are exactly their bytes.
        let needed = start + bytes.len() + usize::from(start == 0);
        if needed > raw.sun_path.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "name too long for sun_path",
            ));
        }
        for (dst, src) in raw.sun_path[start..].iter_mut().zip(bytes) {
            *dst = *src as libc::c_char;
        }
        let len = mem::offset_of!(libc::sockaddr_un, sun_path) + needed;
        Ok(SockAddr {
            addr: raw,
            len: len as libc::socklen_t,
        })
    }

    pub(super) fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.addr as *const libc::sockaddr_un).cast()
    }

    /// Decodes an address filled in by the kernel (`getsockname`).
    pub(super) fn to_addr(&self) -> Option<Addr> {
        let base = mem::offset_of!(libc::sockaddr_un, sun_path);
        let len = (self.len as usize).checked_sub(base)?;
        let raw: Vec<u8> = self.addr.sun_path[..len.min(self.addr.sun_path.len())]
            .iter()
            .map(|c| *c as u8)
            .collect();
        match raw.first() {
            None => None,
            Some(0) => Some(Addr::Abstract(raw[1..].to_vec())),
            Some(_) => {
                let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
                Some(Addr::Path(PathBuf::from(OsStr::from_bytes(&raw[..end]))))
            }
        }
    }
}

/// The socket type for a kind of connection: `SOCK_SEQPACKET` for messages where `AF_UNIX`
/// has it; Apple platforms do not, and carry messages as frames on a `SOCK_STREAM`.
fn socket_type(kind: Kind) -> libc::c_int {
    match kind {
        Kind::Bytes => libc::SOCK_STREAM,
        #[cfg(not(target_vendor = "apple"))]
        Kind::Messages => libc::SOCK_SEQPACKET,
        #[cfg(target_vendor = "apple")]
        Kind::Messages => libc::SOCK_STREAM,
    }
}

/// Creates a new `AF_UNIX` socket of `kind`: close-on-exec, optionally non-blocking, and on
/// Apple platforms with `SO_NOSIGPIPE` (Linux uses `MSG_NOSIGNAL` on each send instead).
pub(super) fn new_socket(kind: Kind, nonblocking: bool) -> io::Result<OwnedFd> {
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly",
        target_os = "illumos"
    ))]
    {
        let mut ty = socket_type(kind) | libc::SOCK_CLOEXEC;
        if nonblocking {
            ty |= libc::SOCK_NONBLOCK;
        }
        // SAFETY: `socket` takes only integers and reads no memory of ours.
        let fd = cvt(unsafe { libc::socket(libc::AF_UNIX, ty, 0) })?;
        // SAFETY: `socket` succeeded (checked by `cvt`), so `fd` is a new descriptor that
        // nothing else owns; the OwnedFd takes it over and is its only closer.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly",
        target_os = "illumos"
    )))]
    {
        use std::os::fd::AsFd;
        // SAFETY: `socket` takes only integers and reads no memory of ours.
        let fd = cvt(unsafe { libc::socket(libc::AF_UNIX, socket_type(kind), 0) })?;
        // SAFETY: `socket` succeeded (checked by `cvt`), so `fd` is a new descriptor that
        // nothing else owns; the OwnedFd takes it over and is its only closer.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        set_cloexec(fd.as_fd())?;
        set_nosigpipe(fd.as_fd())?;
        if nonblocking {
            set_nonblocking(fd.as_fd(), true)?;
        }
        Ok(fd)
    }
}

#[cfg_attr(
    any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly",
        target_os = "illumos"
    ),
    allow(dead_code)
)]
pub(super) fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; F_SETFD takes an integer
    // argument, not a pointer.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(())
}

#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "tvos",
    target_os = "watchos"
))]
/// Also used by the async listener on the sockets tokio accepts.
pub(crate) fn set_nosigpipe(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_NOSIGPIPE, 1 as libc::c_int)
}

#[cfg(not(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "tvos",
    target_os = "watchos"
)))]
#[allow(dead_code)]
pub(crate) fn set_nosigpipe(_fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(())
}

pub(super) fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    // One `ioctl(FIONBIO)` instead of `fcntl` get + set: this runs on every connect.
    let mut value = libc::c_int::from(nonblocking);
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; FIONBIO reads one `c_int`
    // through the pointer, and `value` is a live local `c_int` for the whole call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONBIO, &mut value) })?;
    Ok(())
}

pub(super) fn setsockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: T,
) -> io::Result<()> {
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; the option pointer is
    // `&value`, a live local of `size_of::<T>()` bytes, the length passed; the kernel only
    // reads it.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

pub(super) fn getsockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<T> {
    let mut value = mem::MaybeUninit::<T>::zeroed();
    let mut len = mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; `value` is a live local of
    // `size_of::<T>()` bytes and `len` (a live local) says so; the kernel writes at most `len`
    // bytes into it and stores the length it wrote back in `len`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    // SAFETY: `value` started zeroed (valid for the plain C types used here) and the kernel
    // wrote at most `size_of::<T>()` bytes into it.
    Ok(unsafe { value.assume_init() })
}

/// The address a socket is bound to (`getsockname`); `None` for an unnamed socket.
pub(crate) fn local_addr(fd: BorrowedFd<'_>) -> io::Result<Option<Addr>> {
    // SAFETY: `sockaddr_un` is plain old data (integers and a byte array), so all-zero
    // bytes are a valid value.
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; `addr` is a live local
    // `sockaddr_un` and `len` (a live local) is its size; the kernel writes at most `len`
    // bytes into it and stores the address's length in `len`.
    cvt(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut addr as *mut libc::sockaddr_un).cast(),
            &mut len,
        )
    })?;
    Ok(SockAddr { addr, len }.to_addr())
}

/// A path as a C string.
pub(super) fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {} contains a NUL byte", path.display()),
        )
    })
}

/// `lstat(2)`: never follows a symlink.
pub(super) fn lstat(path: &CStr) -> io::Result<libc::stat> {
    let mut st = mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `path` is a &CStr, NUL-terminated and borrowed for the call; `st` is a live
    // local with room for one `stat`, which the kernel only writes.
    cvt(unsafe { libc::lstat(path.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: `lstat` succeeded, so it filled `st`.
    Ok(unsafe { st.assume_init() })
}

pub(super) fn geteuid() -> u32 {
    // SAFETY: `geteuid` cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

/// This process as a peer sees it: pid, effective uid and gid.
pub(crate) fn own_credentials() -> io::Result<Credentials> {
    // SAFETY: `getegid` cannot fail and has no preconditions.
    let gid = unsafe { libc::getegid() };
    Ok(Credentials {
        pid: Some(std::process::id()),
        uid: Some(geteuid()),
        gid: Some(gid),
        sid: None,
    })
}

/// The per-user private directory of short names: `$XDG_RUNTIME_DIR` when set, else
/// `<temp dir>/localsock-<euid>`.
///
/// A [`crate::Name`] made from a short name keeps it, and it is checked again on every bind and every
/// connect ([`PrivateDir::check`]): a program that keeps its `Name` while the directory is
/// removed and recreated by someone else (a tmp cleaner, then another user) must not follow
/// the path into the stranger's directory.
#[derive(Clone, Debug)]
pub(crate) struct PrivateDir {
    path: PathBuf,
    /// `localsock-<euid>` is ours to create (on bind); `$XDG_RUNTIME_DIR` belongs to the
    /// session manager and must already exist.
    ours: bool,
}

/// What a [`PrivateDir::check`] is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DirUse {
    /// A name is being made: verify the directory if it exists, create nothing.
    Resolve,
    /// A connect: verify; a missing directory is `NotFound` (and is not created).
    Connect,
    /// A bind: create the directory if it is ours and missing, then verify.
    Bind,
}

impl PrivateDir {
    /// Where short names go, from the environment now. Nothing is created.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a relative `TMPDIR`; `PermissionDenied` when the directory exists and
    /// is not safe; `NotFound` when `$XDG_RUNTIME_DIR` does not exist.
    pub(crate) fn resolve() -> io::Result<PrivateDir> {
        let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
            // A relative XDG_RUNTIME_DIR is invalid per the XDG spec and ignored.
            Some(xdg) if Path::new(&xdg).is_absolute() => PrivateDir {
                path: PathBuf::from(xdg),
                ours: false,
            },
            _ => PrivateDir {
                path: temp_dir()?.join(format!("localsock-{}", geteuid())),
                ours: true,
            },
        };
        dir.check(DirUse::Resolve)?;
        Ok(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn what(&self) -> &'static str {
        if self.ours {
            "the private socket directory"
        } else {
            "$XDG_RUNTIME_DIR"
        }
    }

    /// Verifies the directory (one `lstat`): a directory, not a symlink, owned by our
    /// effective uid, no group or other permission. A bind first creates it (`0700`) when it
    /// is ours and missing.
    ///
    /// # Errors
    ///
    /// `PermissionDenied` naming the directory and what is wrong with it; `NotFound` when it
    /// does not exist (connect, or `$XDG_RUNTIME_DIR`); the error of `mkdir`.
    pub(crate) fn check(&self, what_for: DirUse) -> io::Result<()> {
        if what_for == DirUse::Bind && self.ours {
            let c = cstr(&self.path)?;
            // SAFETY: `c` is a CString we hold for the call, so the pointer is to a live,
            // NUL-terminated string; `mkdir` only reads it.
            match cvt(unsafe { libc::mkdir(c.as_ptr(), 0o700) }) {
                Ok(_) => own_bits_despite_umask(&c),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "cannot create the private socket directory {}: {e}",
                            self.path.display()
                        ),
                    ))
                }
            }
        }
        match verify_private_dir(&self.path, self.what()) {
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    && self.ours
                    && what_for == DirUse::Resolve =>
            {
                Ok(()) // made on the first bind
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && what_for == DirUse::Connect => {
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{} {} does not exist, so no server listens there",
                        self.what(),
                        self.path.display()
                    ),
                ))
            }
            other => other,
        }
    }
}

/// The temp directory short names go under: `$TMPDIR` if set and not empty (an empty one
/// counts as unset, as in Qt and most C programs), else `/tmp` (on Apple platforms the
/// per-user temp directory that `std::env::temp_dir` finds).
///
/// # Errors
///
/// `InvalidInput` for a relative `TMPDIR`: it would put the private directory under whatever
/// the current directory happens to be.
pub(crate) fn temp_dir() -> io::Result<PathBuf> {
    temp_dir_from(std::env::var_os("TMPDIR"), std::env::temp_dir)
}

/// [`temp_dir`] with its inputs passed in, for unit tests.
pub(crate) fn temp_dir_from(
    tmpdir: Option<std::ffi::OsString>,
    default: impl FnOnce() -> PathBuf,
) -> io::Result<PathBuf> {
    match tmpdir {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                Ok(dir)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "TMPDIR is the relative path {:?}; short names need an absolute TMPDIR \
                         (or none) so that their private directory does not depend on the \
                         current directory",
                        dir
                    ),
                ))
            }
        }
        // Set but empty: std would return "" (the current directory). Treat it as unset, but
        // with `/tmp` (std's Apple fallback, confstr, only applies when TMPDIR is unset).
        Some(_) => Ok(PathBuf::from("/tmp")),
        None => Ok(default()),
    }
}

/// Gives the private directory we just made its `0700` when the umask took some of the owner's
/// own bits (`0177` leaves `0600`: no one could create a socket in it, and every later check
/// would pass it). Through the directory itself (`O_NOFOLLOW`), and only if it is still an
/// owner-only directory of ours; otherwise (or if it cannot be opened) the check that follows
/// says what is wrong.
fn own_bits_despite_umask(dir: &CStr) {
    // SAFETY: `dir` is a &CStr, NUL-terminated and borrowed for the call; `open` only reads
    // it.
    let Ok(raw) = cvt(unsafe {
        libc::open(
            dir.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    }) else {
        return;
    };
    // SAFETY: `open` succeeded (checked by `cvt`), so `raw` is a new descriptor that nothing
    // else owns; the OwnedFd takes it over and closes it when this function returns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut st = mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is the OwnedFd above, held until this function returns, so it is open for
    // the call; `st` is a live local with room for one `stat`, which the kernel only writes.
    if cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) }).is_err() {
        return;
    }
    // SAFETY: `fstat` succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    if st.st_uid == geteuid() && st.st_mode & 0o077 == 0 && st.st_mode & 0o700 != 0o700 {
        // SAFETY: `fd` is the OwnedFd above, held until this function returns, so it is open
        // for the call; `fchmod` takes only integers.
        unsafe { libc::fchmod(fd.as_raw_fd(), 0o700) };
    }
}

fn verify_private_dir(dir: &Path, what: &str) -> io::Result<()> {
    let refuse = |why: String| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{what} {} is not safe to use: {why}; refusing to put sockets there",
                dir.display()
            ),
        )
    };
    let st = lstat(&cstr(dir)?)
        .map_err(|e| io::Error::new(e.kind(), format!("{what} {}: {e}", dir.display())))?;
    let kind = st.st_mode & libc::S_IFMT;
    if kind == libc::S_IFLNK {
        return Err(refuse("it is a symbolic link".into()));
    }
    if kind != libc::S_IFDIR {
        return Err(refuse("it is not a directory".into()));
    }
    let me = geteuid();
    if st.st_uid != me {
        return Err(refuse(format!(
            "it is owned by uid {}, not by this user (uid {me})",
            st.st_uid
        )));
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o077 != 0 {
        return Err(refuse(format!(
            "its mode is {mode:04o}, which lets group or other users in (expected 0700)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpdir_empty_is_unset_and_relative_is_refused() {
        let default = || PathBuf::from("/default");
        assert_eq!(temp_dir_from(None, default).unwrap(), Path::new("/default"));
        assert_eq!(
            temp_dir_from(Some("".into()), default).unwrap(),
            Path::new("/tmp")
        );
        assert_eq!(
            temp_dir_from(Some("/var/tmp".into()), default).unwrap(),
            Path::new("/var/tmp")
        );
        for relative in ["tmp", "./tmp", "../x"] {
            let err = temp_dir_from(Some(relative.into()), default).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{relative}");
            assert!(err.to_string().contains("TMPDIR"), "{err}");
        }
    }
}
