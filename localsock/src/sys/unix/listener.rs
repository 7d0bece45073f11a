//! A listening `AF_UNIX` stream socket: race-free permissions, safe stale-file reclaim, and
//! unlink-on-drop only of the file this listener created.

use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::{cstr, cvt, cvt_retry, lstat, new_socket, SockAddr, Stream};
use crate::error;
use crate::sys::{AccessMode, Addr, BindSpec, Kind};

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
                // SAFETY: `self.path` is a CString this guard owns, so the pointer is to a
                // live, NUL-terminated string for the call; `unlink` only reads it.
                unsafe { libc::unlink(self.path.as_ptr()) };
            }
        }
    }
}

impl Listener {
    pub(crate) fn bind(addr: &Addr, spec: &BindSpec) -> io::Result<Listener> {
        match addr {
            Addr::Abstract(_) => {
                let fd = new_socket(spec.kind, false)?;
                bind_fd(&fd, addr)?;
                listen(&fd, spec.backlog)?;
                Ok(Listener { fd, cleanup: None })
            }
            Addr::Path(path) => bind_path(addr, path, spec),
            Addr::Pipe(_) => Err(io::Error::new(
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
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; the address and length
    // pointers are null, which asks for no address, so the kernel writes no memory of ours.
    let raw = cvt_retry(|| unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: `accept4` succeeded (checked by `cvt_retry`), so `raw` is a new descriptor that
    // nothing else owns; the OwnedFd takes it over and is its only closer.
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
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; the address and length
    // pointers are null, which asks for no address, so the kernel writes no memory of ours.
    let raw = cvt_retry(|| unsafe {
        libc::accept(fd.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut())
    })?;
    // SAFETY: `accept` succeeded (checked by `cvt_retry`), so `raw` is a new descriptor that
    // nothing else owns; the OwnedFd takes it over and is its only closer.
    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
    super::set_cloexec(owned.as_fd())?;
    super::set_nosigpipe(owned.as_fd())?;
    // The accepted socket may inherit O_NONBLOCK from a non-blocking listener on BSDs.
    super::set_nonblocking(owned.as_fd(), false)?;
    Ok(Stream::from(owned))
}

fn bind_fd(fd: &OwnedFd, addr: &Addr) -> io::Result<()> {
    let addr = SockAddr::new(addr)?;
    // SAFETY: `fd` is borrowed from an OwnedFd, so it stays open for the call; `addr` is a
    // live local `sockaddr_un` whose first `addr.len` bytes (the length passed) are
    // initialised; the kernel only reads them.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), addr.as_ptr(), addr.len) })?;
    Ok(())
}

fn listen(fd: &OwnedFd, backlog: u32) -> io::Result<()> {
    let backlog = backlog.min(libc::c_int::MAX as u32) as libc::c_int;
    // SAFETY: `fd` is borrowed from an OwnedFd, so it stays open for the call; `listen` takes
    // only integers.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
}

fn mode_of(access: AccessMode) -> libc::mode_t {
    match access {
        AccessMode::Owner => 0o600,
        AccessMode::Group => 0o660,
        AccessMode::Everyone => 0o666,
    }
}

/// Binds a socket file.
///
/// 1. Open the parent directory once and take an exclusive `flock` on it for the few syscalls
///    of the bind, so that two localsock servers reclaiming the same stale file cannot both win.
/// 2. If something is at the path: a live server (our probe connects) is `AddrInUse`; a socket
///    file that refuses is stale and is unlinked (if reclaim is on); anything that is not a
///    socket (a symlink, a regular file) is never touched.
/// 3. Create the socket with its final mode before anyone can connect: on Linux, for
///    `Access::Owner`, `fchmod` on the socket before `bind` (the kernel gives the new file the
///    socket inode's mode less the umask, so never more than `0600`); otherwise bind inside a
///    fresh private directory, `chmod` there and `link` the file into place (see
///    [`bind_via_private_dir`]).
fn bind_path(addr: &Addr, path: &Path, spec: &BindSpec) -> io::Result<Listener> {
    let c_path = cstr(path)?;
    let (parent_path, base) = split_path(path)?;
    let parent = ParentDir::open(&parent_path);
    let reclaim_allowed = matches!(&parent, Ok(p) if p.locked);

    clear_stale(
        addr,
        path,
        &c_path,
        parent.as_ref().ok(),
        &base,
        spec.reclaim_stale && reclaim_allowed,
    )?;

    let fd = new_socket(spec.kind, false)?;
    let mode = mode_of(spec.access);
    let (dev, ino) = if cfg!(any(target_os = "linux", target_os = "android"))
        && spec.access == AccessMode::Owner
    {
        // SAFETY: `fd` is the OwnedFd made above and held by this function, so it is open
        // for the call; `fchmod` takes only integers.
        cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })?;
        bind_fd(&fd, addr)?;
        // Own the file from here on: if anything below fails, dropping the guard removes
        // it, so a failed bind leaves no socket file behind to block the next one.
        match lstat(&c_path) {
            Ok(st) => (st.st_dev, st.st_ino),
            Err(e) => {
                // SAFETY: `c_path` is a CString held by this function, so the pointer is
                // to a live, NUL-terminated string; `unlink` only reads it.
                unsafe { libc::unlink(c_path.as_ptr()) };
                return Err(e);
            }
        }
    } else {
        let parent = parent.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot open the directory {} to bind in it safely: {e}",
                    parent_path.display()
                ),
            )
        })?;
        bind_via_private_dir(&fd, &parent, &parent_path, &base, path, mode)?
    };
    let cleanup = Cleanup {
        path: c_path,
        dev,
        ino,
        pid: std::process::id(),
    };
    listen(&fd, spec.backlog)?;
    Ok(Listener {
        fd,
        cleanup: Some(cleanup),
    })
}

/// Splits a socket path into its directory and its last component, exactly as the kernel
/// resolves it (no lexical clean-up: `a/b/.` is not `a/b`).
fn split_path(path: &Path) -> io::Result<(PathBuf, CString)> {
    let bytes = path.as_os_str().as_bytes();
    let (dir, file) = match bytes.iter().rposition(|&b| b == b'/') {
        Some(0) => (&b"/"[..], &bytes[1..]),
        Some(at) => (&bytes[..at], &bytes[at + 1..]),
        None => (&b"."[..], bytes),
    };
    if file.is_empty() || file == b"." || file == b".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: a socket path must end in a file name", path.display()),
        ));
    }
    let dir = PathBuf::from(std::ffi::OsStr::from_bytes(dir));
    let file = CString::new(file).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {} contains a NUL byte", path.display()),
        )
    })?;
    Ok((dir, file))
}

/// Deals with whatever is already at `path`.
///
/// With the parent directory held, the file is examined and unlinked relative to it
/// (`fstatat`/`unlinkat`), and on Linux probed through `/proc/thread-self/fd/N/<name>`, so all
/// of it concerns the same directory, the one that is locked, even if someone renames
/// directories above it meanwhile. Without it (the directory cannot be opened), by path.
fn clear_stale(
    addr: &Addr,
    path: &Path,
    c_path: &CStr,
    parent: Option<&ParentDir>,
    base: &CStr,
    reclaim: bool,
) -> io::Result<()> {
    let stat = || match parent {
        Some(parent) => fstatat(parent.fd.as_fd(), base),
        None => lstat(c_path),
    };
    let st = match stat() {
        Ok(st) => st,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // No bind(2) was tried, but EADDRINUSE is what it would say: callers keep an OS code.
    let in_use = |why: &str| {
        error::with_cause(
            io::ErrorKind::AddrInUse,
            why,
            io::Error::from_raw_os_error(libc::EADDRINUSE),
        )
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(in_use(&format!(
            "{} exists and is not a socket ({}); it is left alone",
            path.display(),
            file_kind(st.st_mode)
        )));
    }
    let held = parent
        .and_then(|parent| via_proc(parent.fd.as_fd(), base))
        .map(Addr::Path);
    match probe(held.as_ref().unwrap_or(addr)) {
        Probe::Live => Err(in_use("a server is listening there")),
        Probe::Gone => Ok(()),
        Probe::Denied(e) => Err(error::with_cause(
            io::ErrorKind::AddrInUse,
            format!("a socket file exists and cannot be probed ({e}); it is left alone"),
            e,
        )),
        Probe::Stale if !reclaim => Err(in_use(
            "a stale socket file (no server) is there and reclaiming it is turned off \
             (or the directory could not be locked to do it safely)",
        )),
        Probe::Stale => {
            // Unlink only the very file we probed: compare device and inode again.
            match stat() {
                Ok(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino => {
                    let unlinked = match parent {
                        Some(parent) => {
                            // SAFETY: `parent.fd` is an OwnedFd borrowed for the call, so it is
                            // open; `base` is a &CStr, NUL-terminated and borrowed for the call.
                            cvt(unsafe { libc::unlinkat(parent.fd.as_raw_fd(), base.as_ptr(), 0) })
                        }
                        // SAFETY: `c_path` is a &CStr, NUL-terminated and borrowed for the call.
                        None => cvt(unsafe { libc::unlink(c_path.as_ptr()) }),
                    };
                    match unlinked {
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

/// `/proc/thread-self/fd/N/<name>`: a path that the kernel resolves in the directory `dir`
/// itself, wherever it was renamed (Linux, when `/proc` is mounted and the result fits
/// `sun_path`). `thread-self`, not `self`: a thread that unshared its descriptor table has
/// its own.
fn via_proc(dir: BorrowedFd<'_>, name: &CStr) -> Option<PathBuf> {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        return None;
    }
    static PROC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*PROC.get_or_init(|| Path::new("/proc/thread-self/fd").is_dir()) {
        return None;
    }
    let mut path = format!("/proc/thread-self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.to_bytes());
    (path.len() < super::SUN_PATH_LEN).then(|| PathBuf::from(std::ffi::OsString::from_vec(path)))
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
fn probe(addr: &Addr) -> Probe {
    let Ok(addr) = SockAddr::new(addr) else {
        return Probe::Gone;
    };
    // A byte-stream probe: a live server of the other kind answers `EPROTOTYPE` (alive, never
    // unlinked), a stale file of either kind `ECONNREFUSED`.
    let Ok(fd) = new_socket(Kind::Bytes, true) else {
        return Probe::Live; // cannot tell: be safe, never unlink
    };
    // SAFETY: `fd` is the OwnedFd made above, held until this function returns, so it is open
    // for the call; `addr` is a live local `sockaddr_un` whose first `addr.len` bytes (the
    // length passed) are initialised; the kernel only reads them.
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

/// The name of the socket inside the private temporary directory.
const TMP_SOCKET: &CStr = c"s";

/// Binds `fd` at `parent/base` with exactly `mode`, never exposing a more open file, and
/// returns the `(dev, ino)` of the socket file.
///
/// The socket is bound in a new `0700` directory made next to the final path, `chmod`ed there
/// and `link`ed into place (`link` never replaces an existing file). Other users may be able to
/// write `parent` (a group-writable `/run/app`, a directory they own): they can rename our
/// temporary directory away at any moment and put a directory or symlink of theirs in its
/// place (`renameat2(RENAME_EXCHANGE)`, no permission on our directory needed). So after it is
/// made the temporary directory is opened (`O_NOFOLLOW`) and checked to be ours (owner, no
/// group/other access: then no one else can add anything to it), and from then on every step
/// goes through descriptors: `fstatat`/`fchmodat`/`unlinkat` in the held directory, `linkat`
/// from it to the held parent. Whatever the attacker renames, no path is resolved again in a
/// directory they can write, so no symlink of theirs is ever followed.
///
/// `bind(2)` itself takes a path. On Linux it goes through `/proc/thread-self/fd/N/s`, which
/// the kernel resolves to the held directory itself. Where that is unavailable (no `/proc`,
/// other systems) the bind uses the directory's path, checked to still lead to the held
/// directory just before; if it was swapped in between, the socket is created somewhere else,
/// the check after the bind (the socket must be in the held directory) fails, and the bind
/// fails cleanly — nothing is chmodded, linked or unlinked outside our directory.
fn bind_via_private_dir(
    fd: &OwnedFd,
    parent: &ParentDir,
    parent_path: &Path,
    base: &CStr,
    path: &Path,
    mode: libc::mode_t,
) -> io::Result<(libc::dev_t, libc::ino_t)> {
    let (tmp_name, dir) = make_private_tmp_dir(parent, parent_path)?;
    let result = (|| {
        bind_in_dir(fd, &dir, parent_path, &tmp_name, path)?;
        // The socket must be in the held directory, and be the socket we just made there: no one
        // else can write a `0700` directory we own.
        let st = fstatat(dir.as_fd(), TMP_SOCKET).map_err(|e| {
            moved(
                parent_path,
                &tmp_name,
                &format!("the socket is not in it ({e})"),
            )
        })?;
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK || st.st_uid != super::geteuid() {
            return Err(moved(
                parent_path,
                &tmp_name,
                "something else than our socket is in it",
            ));
        }
        // SAFETY: `dir` is an OwnedFd held by this function, so it is open for the call;
        // `TMP_SOCKET` is a &'static CStr, NUL-terminated; `fchmodat` only reads it.
        cvt(unsafe { libc::fchmodat(dir.as_raw_fd(), TMP_SOCKET.as_ptr(), mode, 0) })?;
        // SAFETY: `dir` and `parent.fd` are OwnedFds borrowed for the call, so both are open;
        // `TMP_SOCKET` (&'static) and `base` (borrowed for the call) are NUL-terminated
        // CStrs; `linkat` only reads them. (Flags 0: a symlink source is not followed.)
        cvt(unsafe {
            libc::linkat(
                dir.as_raw_fd(),
                TMP_SOCKET.as_ptr(),
                parent.fd.as_raw_fd(),
                base.as_ptr(),
                0,
            )
        })
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                error::with_cause(
                    io::ErrorKind::AddrInUse,
                    "another file appeared at the path while binding",
                    e,
                )
            } else {
                e
            }
        })?;
        Ok((st.st_dev, st.st_ino))
    })();
    // SAFETY: `dir` is an OwnedFd held by this function, so it is open for the call;
    // `TMP_SOCKET` is a &'static CStr, NUL-terminated; `unlinkat` only reads it.
    unsafe { libc::unlinkat(dir.as_raw_fd(), TMP_SOCKET.as_ptr(), 0) };
    remove_tmp_dir_if_ours(parent, &tmp_name, &dir);
    result
}

/// The error for a temporary directory that someone replaced while we used it.
fn moved(parent_path: &Path, tmp_name: &CStr, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "the temporary directory {}/{} was replaced while binding: {what}; \
             another user can write {} (bind in a directory only you can write)",
            parent_path.display(),
            tmp_name.to_string_lossy(),
            parent_path.display()
        ),
    )
}

/// Makes a new directory `.lsXXXXXX` in `parent` (mode `0700`), opens it without following a
/// symlink, and checks that what was opened is ours: a directory owned by our effective uid
/// with no group or other permission, so that no one else can put anything in it. Returns its
/// name and descriptor.
fn make_private_tmp_dir(parent: &ParentDir, parent_path: &Path) -> io::Result<(CString, OwnedFd)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut tries = 0;
    let name = loop {
        // Unpredictability is not what keeps this safe (the check below is); the name only
        // has to be new.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32)
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let name =
            CString::new(format!(".ls{:06x}", seed & 0xff_ffff)).expect("hex digits hold no NUL");
        // SAFETY: `parent.fd` is an OwnedFd borrowed for the call, so it is open; `name` is a
        // CString held here, so the pointer is to a live, NUL-terminated string.
        match cvt(unsafe { libc::mkdirat(parent.fd.as_raw_fd(), name.as_ptr(), 0o700) }) {
            Ok(_) => break name,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 100 => tries += 1,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "cannot make a temporary directory in {} to bind in it safely: {e}",
                        parent_path.display()
                    ),
                ))
            }
        }
    };
    // SAFETY: `parent.fd` is an OwnedFd borrowed for the call, so it is open; `name` is a
    // CString held here, so the pointer is to a live, NUL-terminated string.
    let raw = cvt(unsafe {
        libc::openat(
            parent.fd.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })
    .map_err(|e| match e.raw_os_error() {
        // Gone, a symlink, not a directory, or one we may not read: not what we made.
        Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR | libc::EACCES | libc::EPERM) => {
            moved(parent_path, &name, &format!("it cannot be opened ({e})"))
        }
        // Out of descriptors (EMFILE, ENFILE) or memory: no attack, and the directory we made
        // must not stay behind. The OS error is kept, so a shortage is still one.
        _ => {
            remove_unopened_tmp_dir(parent, &name);
            e
        }
    })?;
    // SAFETY: `openat` succeeded (checked by `cvt`), so `raw` is a new descriptor that nothing
    // else owns; the OwnedFd takes it over and is its only closer.
    let dir = unsafe { OwnedFd::from_raw_fd(raw) };
    let st = fstat(dir.as_fd()).inspect_err(|_| remove_tmp_dir_if_ours(parent, &name, &dir))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR
        || st.st_uid != super::geteuid()
        || st.st_mode & 0o077 != 0
    {
        // Not ours: leave it (and the name) alone; ours was renamed away, and stays empty.
        return Err(moved(
            parent_path,
            &name,
            &format!(
                "it is owned by uid {} with mode {:04o}",
                st.st_uid,
                st.st_mode & 0o7777
            ),
        ));
    }
    if st.st_mode & 0o777 != 0o700 {
        // A umask such as 0o177 left us without search permission on our own directory. Keep
        // a set-group-ID bit inherited from the parent: it gives the socket the parent's group.
        let mode = 0o700 | (st.st_mode & libc::S_ISGID);
        // SAFETY: `dir` is the OwnedFd opened above and still held, so it is open for the
        // call; `fchmod` takes only integers.
        cvt(unsafe { libc::fchmod(dir.as_raw_fd(), mode) })
            .inspect_err(|_| remove_tmp_dir_if_ours(parent, &name, &dir))?;
    }
    Ok((name, dir))
}

/// `bind(2)` of `fd` at `s` inside the held directory `dir` (named `tmp_name` in the parent).
fn bind_in_dir(
    fd: &OwnedFd,
    dir: &OwnedFd,
    parent_path: &Path,
    tmp_name: &CStr,
    path: &Path,
) -> io::Result<()> {
    if let Some(via_proc) = via_proc(dir.as_fd(), TMP_SOCKET) {
        // The kernel resolves the magic link to the directory we hold, wherever it was renamed.
        return bind_at_path(fd, &via_proc);
    }
    let tmp_dir_path = parent_path.join(std::ffi::OsStr::from_bytes(tmp_name.to_bytes()));
    let tmp = tmp_dir_path.join(std::ffi::OsStr::from_bytes(TMP_SOCKET.to_bytes()));
    // The same limit as `Name::path`'s (the path has no NUL: its parts come from a `Name`
    // and from NUL-terminated C strings).
    if SockAddr::new(&Addr::Path(tmp.clone())).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: the path is too long to bind it safely with group/everyone access \
                 (it needs room for a temporary {})",
                path.display(),
                tmp.display()
            ),
        ));
    }
    // The path must still lead to the directory we hold. This narrows, but cannot close, the
    // window in which a swap sends the bind elsewhere; the check after the bind catches it.
    let held = fstat(dir.as_fd())?;
    match lstat(&cstr(&tmp_dir_path)?) {
        Ok(st) if st.st_dev == held.st_dev && st.st_ino == held.st_ino => {}
        _ => return Err(moved(parent_path, tmp_name, "its path leads elsewhere")),
    }
    bind_at_path(fd, &tmp)
}

fn bind_at_path(fd: &OwnedFd, path: &Path) -> io::Result<()> {
    bind_fd(fd, &Addr::Path(path.to_path_buf()))
}

/// Removes our temporary directory (already emptied) only if the name still holds it: if
/// someone renamed it away, whatever now has its name is left alone.
fn remove_tmp_dir_if_ours(parent: &ParentDir, tmp_name: &CStr, dir: &OwnedFd) {
    let (Ok(held), Ok(now)) = (fstat(dir.as_fd()), fstatat(parent.fd.as_fd(), tmp_name)) else {
        return;
    };
    if held.st_dev == now.st_dev && held.st_ino == now.st_ino {
        // SAFETY: `parent.fd` is an OwnedFd borrowed for the call, so it is open; `tmp_name`
        // is a &CStr, NUL-terminated and borrowed for the call; `unlinkat` only reads it.
        // (AT_REMOVEDIR only removes an empty directory and never follows a symlink.)
        unsafe { libc::unlinkat(parent.fd.as_raw_fd(), tmp_name.as_ptr(), libc::AT_REMOVEDIR) };
    }
}

/// Removes the temporary directory we just made but could not open (out of descriptors), if
/// the name still holds an empty `0700` directory of ours. Without a descriptor this goes by
/// name in the parent, which another user may write; `rmdir` never follows a symlink and only
/// removes an empty directory, which such a user could remove (or rename) just as well.
fn remove_unopened_tmp_dir(parent: &ParentDir, tmp_name: &CStr) {
    let Ok(st) = fstatat(parent.fd.as_fd(), tmp_name) else {
        return;
    };
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR
        && st.st_uid == super::geteuid()
        && st.st_mode & 0o077 == 0
    {
        // SAFETY: `parent.fd` is an OwnedFd borrowed for the call, so it is open; `tmp_name`
        // is a &CStr, NUL-terminated and borrowed for the call; `unlinkat` only reads it.
        unsafe { libc::unlinkat(parent.fd.as_raw_fd(), tmp_name.as_ptr(), libc::AT_REMOVEDIR) };
    }
}

fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; `st` is a live local with
    // room for one `stat`, which the kernel only writes.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: `fstat` succeeded, so it filled `st`.
    Ok(unsafe { st.assume_init() })
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
fn fstatat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `dir` is a BorrowedFd, so it stays open for the call; `name` is a &CStr,
    // NUL-terminated and borrowed for the call; `st` is a live local with room for one
    // `stat`, which the kernel only writes.
    cvt(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: `fstatat` succeeded, so it filled `st`.
    Ok(unsafe { st.assume_init() })
}

/// A socket's parent directory, opened once for the whole bind: the `flock` that serialises
/// reclaims, and the descriptor every step of a group/everyone bind is made relative to.
struct ParentDir {
    fd: OwnedFd,
    /// Whether the exclusive lock was taken (a directory we cannot read cannot be locked, and
    /// another user may hold the lock; reclaiming stale files is then off).
    locked: bool,
}

impl ParentDir {
    /// Opens the directory and tries for up to a second to lock it.
    fn open(dir: &Path) -> io::Result<ParentDir> {
        let c = cstr(dir)?;
        let open = |flags| {
            // SAFETY: `c` is a CString held by this function, so the pointer is to a live,
            // NUL-terminated string for the call; `open` only reads it.
            cvt(unsafe { libc::open(c.as_ptr(), flags | libc::O_DIRECTORY | libc::O_CLOEXEC) })
        };
        let raw = match open(libc::O_RDONLY) {
            Ok(raw) => raw,
            // A directory we may search and write but not read: O_PATH still serves the `*at`
            // calls (not `flock`).
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                let raw = open(libc::O_PATH)?;
                // SAFETY: `open` succeeded (checked by `cvt`), so `raw` is a new descriptor that
                // nothing else owns; the OwnedFd takes it over and is its only closer.
                let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                return Ok(ParentDir { fd, locked: false });
            }
            Err(e) => return Err(e),
        };
        // SAFETY: `open` succeeded (checked by `cvt`), so `raw` is a new descriptor that
        // nothing else owns; the OwnedFd takes it over and is its only closer.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let deadline = Instant::now() + Duration::from_secs(1);
        let locked = loop {
            // SAFETY: `fd` is the OwnedFd above, held by this function, so it is open for the
            // call; `flock` takes only integers.
            match cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
                Ok(_) => break true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(1));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break false,
            }
        };
        Ok(ParentDir { fd, locked })
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
