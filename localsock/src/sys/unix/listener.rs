//! A listening `AF_UNIX` stream socket: race-free permissions, safe stale-file reclaim, and
//! unlink-on-drop only of the file this listener created.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::{cstr, cvt, cvt_retry, lstat, new_socket, SockAddr, Stream};
use crate::listener::Access;
use crate::name::Repr;
use crate::{ListenerOptions, Name};

pub(crate) struct Listener {
    /// The socket file to remove on drop, if this listener created it. Declared before `fd`
    /// so it drops first: the file is unlinked while the socket still listens, so a competing
    /// server never sees it as stale and reclaims it in between.
    cleanup: Option<Cleanup>,
    fd: OwnedFd,
}

/// A socket file we created, identified by device and inode so that a file someone else put
/// at the same path later is never removed.
struct Cleanup {
    path: CString,
    dev: libc::dev_t,
    ino: libc::ino_t,
    /// The process that bound the socket: a copy of the listener in a forked child (a worker,
    /// or a daemonizing parent that returns from `main`) leaves the file alone.
    pid: u32,
}

/// The socket file a listener created, removed when this is dropped (if the file at the path
/// is still that one). Drop it before closing the listening socket.
#[cfg(feature = "tokio")]
pub(crate) struct SocketFile(Option<Cleanup>);

#[cfg(feature = "tokio")]
impl fmt::Debug for SocketFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketFile")
            .field("path", &self.0.as_ref().map(|c| &c.path))
            .finish()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            return;
        }
        if let Ok(st) = lstat(&self.path) {
            if st.st_dev == self.dev && st.st_ino == self.ino {
                // SAFETY: `self.path` is NUL-terminated.
                unsafe { libc::unlink(self.path.as_ptr()) };
            }
        }
    }
}

impl Listener {
    pub(crate) fn bind(name: &Name, opts: &ListenerOptions) -> io::Result<Listener> {
        match name.repr() {
            Repr::Abstract(_) => {
                let fd = new_socket(false)?;
                bind_fd(&fd, name)?;
                listen(&fd, opts.backlog)?;
                Ok(Listener { fd, cleanup: None })
            }
            Repr::Path(path) => bind_path(name, path, opts),
            Repr::Pipe(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a Windows pipe name cannot be bound on Unix",
            )),
        }
    }

    pub(crate) fn accept(&self) -> io::Result<Stream> {
        loop {
            match accept_once(self.fd.as_fd()) {
                // A client that connected and left before we accepted: not our error.
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                other => return other,
            }
        }
    }

    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        super::set_nonblocking(self.fd.as_fd(), nonblocking)
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Splits the listener into its descriptor and the guard that removes the socket file it
    /// created (for the async listener, which keeps the guard beside tokio's listener).
    #[cfg(feature = "tokio")]
    pub(crate) fn into_parts(mut self) -> (OwnedFd, SocketFile) {
        let file = SocketFile(self.cleanup.take());
        (self.fd, file)
    }

    /// The inverse of [`into_parts`](Self::into_parts).
    #[cfg(feature = "tokio")]
    pub(crate) fn from_parts(fd: OwnedFd, file: SocketFile) -> Listener {
        Listener {
            cleanup: file.0,
            fd,
        }
    }

    /// Gives up the descriptor; the socket file is left in place.
    pub(crate) fn into_fd(mut self) -> OwnedFd {
        if let Some(cleanup) = self.cleanup.as_mut() {
            // No process has pid 0: the guard then drops without touching the file (and without
            // leaking its path, as `mem::forget` did).
            cleanup.pid = 0;
        }
        self.fd
    }
}

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
    target_os = "illumos"
))]
fn accept_once(fd: BorrowedFd<'_>) -> io::Result<Stream> {
    // SAFETY: null address pointers are allowed; the flags ask for close-on-exec.
    let raw = cvt_retry(|| unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: `accept4` returned a new descriptor that nothing else owns.
    Ok(Stream::from(unsafe { OwnedFd::from_raw_fd(raw) }))
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
fn accept_once(fd: BorrowedFd<'_>) -> io::Result<Stream> {
    // SAFETY: null address pointers are allowed.
    let raw = cvt_retry(|| unsafe {
        libc::accept(fd.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut())
    })?;
    // SAFETY: `accept` returned a new descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
    super::set_cloexec(owned.as_fd())?;
    super::set_nosigpipe(owned.as_fd())?;
    // The accepted socket may inherit O_NONBLOCK from a non-blocking listener on BSDs.
    super::set_nonblocking(owned.as_fd(), false)?;
    Ok(Stream::from(owned))
}

fn bind_fd(fd: &OwnedFd, name: &Name) -> io::Result<()> {
    let addr = SockAddr::new(name)?;
    // SAFETY: `addr` is a valid `sockaddr_un` of `addr.len` bytes for the whole call.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), addr.as_ptr(), addr.len) })?;
    Ok(())
}

fn listen(fd: &OwnedFd, backlog: u32) -> io::Result<()> {
    let backlog = backlog.min(libc::c_int::MAX as u32) as libc::c_int;
    // SAFETY: plain FFI call on a descriptor we own.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
}

fn mode_of(access: Access) -> libc::mode_t {
    match access {
        Access::Owner => 0o600,
        Access::Group => 0o660,
        Access::Everyone => 0o666,
    }
}

/// Binds a socket file.
///
/// 1. Take an exclusive `flock` on the parent directory for the few syscalls of the bind, so
///    that two localsock servers reclaiming the same stale file cannot both win.
/// 2. If something is at the path: a live server (our probe connects) is `AddrInUse`; a socket
///    file that refuses is stale and is unlinked (if reclaim is on); anything that is not a
///    socket (a symlink, a regular file) is never touched.
/// 3. Create the socket with its final mode before anyone can connect: on Linux `fchmod` on
///    the socket before `bind` (the kernel gives the file that mode, less the umask); elsewhere,
///    and for modes wider than the umask allows, bind inside a fresh private directory,
///    `chmod` there and `link` the file into place (link never replaces an existing file).
fn bind_path(name: &Name, path: &Path, opts: &ListenerOptions) -> io::Result<Listener> {
    let c_path = cstr(path)?;
    let _dir_lock = DirLock::acquire(path);
    let reclaim_allowed = _dir_lock.is_some();

    clear_stale(name, path, &c_path, opts.reclaim_stale && reclaim_allowed)?;

    let fd = new_socket(false)?;
    let mode = mode_of(opts.access);
    if cfg!(any(target_os = "linux", target_os = "android")) && opts.access == Access::Owner {
        // SAFETY: plain FFI call on a descriptor we own.
        cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })?;
        bind_fd(&fd, name)?;
    } else {
        bind_via_private_dir(&fd, path, mode)?;
    }
    // Own the file from here on: if anything below fails, dropping the guard removes it, so a
    // failed bind leaves no socket file behind to block the next one.
    let st = match lstat(&c_path) {
        Ok(st) => st,
        Err(e) => {
            // SAFETY: `c_path` is NUL-terminated; the file is the one we just bound.
            unsafe { libc::unlink(c_path.as_ptr()) };
            return Err(e);
        }
    };
    let cleanup = Cleanup {
        path: c_path,
        dev: st.st_dev,
        ino: st.st_ino,
        pid: std::process::id(),
    };
    listen(&fd, opts.backlog)?;
    Ok(Listener {
        fd,
        cleanup: Some(cleanup),
    })
}

/// Deals with whatever is already at `path`.
fn clear_stale(name: &Name, path: &Path, c_path: &CString, reclaim: bool) -> io::Result<()> {
    let st = match lstat(c_path) {
        Ok(st) => st,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let in_use = |why: &str| io::Error::new(io::ErrorKind::AddrInUse, why.to_owned());
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(in_use(&format!(
            "{} exists and is not a socket ({}); it is left alone",
            path.display(),
            file_kind(st.st_mode)
        )));
    }
    match probe(name) {
        Probe::Live => Err(in_use("a server is listening there")),
        Probe::Gone => Ok(()),
        Probe::Denied(e) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("a socket file exists and cannot be probed ({e}); it is left alone"),
        )),
        Probe::Stale if !reclaim => Err(in_use(
            "a stale socket file (no server) is there and reclaiming it is turned off \
             (or the directory could not be locked to do it safely)",
        )),
        Probe::Stale => {
            // Unlink only the very file we probed: compare device and inode again.
            match lstat(c_path) {
                Ok(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino => {
                    // SAFETY: `c_path` is NUL-terminated.
                    match cvt(unsafe { libc::unlink(c_path.as_ptr()) }) {
                        Ok(_) => Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                Ok(_) => Err(in_use(
                    "another socket replaced the stale one while binding",
                )),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        }
    }
}

fn file_kind(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a FIFO",
        _ => "a special file",
    }
}

enum Probe {
    Live,
    Stale,
    Gone,
    Denied(io::Error),
}

/// Is a server behind the socket file? A connect that is refused means stale; one that
/// succeeds or finds the backlog full means live.
fn probe(name: &Name) -> Probe {
    let Ok(addr) = SockAddr::new(name) else {
        return Probe::Gone;
    };
    let Ok(fd) = new_socket(true) else {
        return Probe::Live; // cannot tell: be safe, never unlink
    };
    // SAFETY: `addr` is a valid `sockaddr_un` of `addr.len` bytes for the whole call.
    match cvt_retry(|| unsafe { libc::connect(fd.as_raw_fd(), addr.as_ptr(), addr.len) }) {
        Ok(_) => Probe::Live,
        Err(e) => match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => Probe::Stale,
            Some(libc::ENOENT) => Probe::Gone,
            Some(libc::EACCES) | Some(libc::EPERM) => Probe::Denied(e),
            _ => Probe::Live, // EAGAIN (backlog full) and anything unknown: assume alive
        },
    }
}

/// Binds `fd` at `path` with exactly `mode`, never exposing a more open file: bind in a new
/// `0700` directory next to `path`, chmod there, then `link` into place.
fn bind_via_private_dir(fd: &OwnedFd, path: &Path, mode: libc::mode_t) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let template = cstr(&parent.join(".lsXXXXXX"))?;
    let mut template = template.into_bytes_with_nul();
    // SAFETY: `template` is a writable NUL-terminated buffer ending in "XXXXXX".
    let dir = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
    if dir.is_null() {
        return Err(io::Error::last_os_error());
    }
    template.pop();
    let dir =
        PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(template));
    let tmp = dir.join("s");
    let result = (|| {
        let tmp_name = Name::path(&tmp).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: the path is too long to bind it safely with group/everyone access \
                     (it needs room for a temporary {})",
                    path.display(),
                    tmp.display()
                ),
            )
        })?;
        bind_fd(fd, &tmp_name)?;
        let c_tmp = cstr(&tmp)?;
        // SAFETY: `c_tmp` is NUL-terminated; the file is in our private 0700 directory.
        cvt(unsafe { libc::chmod(c_tmp.as_ptr(), mode) })?;
        let c_path = cstr(path)?;
        // SAFETY: both paths are NUL-terminated.
        cvt(unsafe { libc::link(c_tmp.as_ptr(), c_path.as_ptr()) }).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another file appeared at the path while binding",
                )
            } else {
                e
            }
        })?;
        Ok(())
    })();
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_dir(&dir);
    result
}

/// An exclusive `flock` on a socket's parent directory, held while binding.
struct DirLock {
    _fd: OwnedFd,
}

impl DirLock {
    /// Tries for up to a second; `None` if the directory cannot be opened or stays locked (the
    /// caller then refuses to reclaim stale files rather than risk a race).
    fn acquire(path: &Path) -> Option<DirLock> {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let c = cstr(parent).ok()?;
        // SAFETY: `c` is NUL-terminated.
        let raw = cvt(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })
        .ok()?;
        // SAFETY: `open` returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            // SAFETY: plain FFI call on a descriptor we own.
            match cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
                Ok(_) => return Some(DirLock { _fd: fd }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(1));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }
}

impl From<OwnedFd> for Listener {
    fn from(fd: OwnedFd) -> Listener {
        Listener { fd, cleanup: None }
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalListener")
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}
