//! The OS side of the shared-memory data path: an anonymous memory object, its mapping (made
//! and unmapped here; the accesses are `sys/shm_mapping.rs`'s), the CPU hints that decide
//! whether spinning can help, and the wake-ups.
//!
//! The memory object, per OS:
//! - Linux and FreeBSD (13 or later): a sealed `memfd_create` object. It never has a name; the
//!   seals make it impossible for either process to resize it.
//! - macOS: a POSIX `shm_open` object under a random name, created exclusively (`O_EXCL`, mode
//!   `0600`) and unlinked at once, so it has a name only between those two calls, which only
//!   the same user (or root) could open, and only by guessing 64 random bits. macOS has no
//!   seals, but its kernel sizes a POSIX shared-memory object once: a second `ftruncate` fails
//!   (`EINVAL`), so it cannot shrink under us either. The receiving side checks that it got
//!   such an object: not a file (`lseek` fails with `ESPIPE`, as for every non-vnode
//!   descriptor), and mappable (of the non-vnode descriptors, only POSIX shared memory is).
//!
//! Only the Linux backend runs here; the macOS and FreeBSD ones are type-checked by
//! `ci/crosscheck.sh` and have never run.
//!
//! # What is sound about touching memory the peer can write
//!
//! [`Mapping`] and its accesses are the same on every OS (`sys/shm_mapping.rs`, which says
//! why they are sound); only making and unmapping a mapping is here.
//!
//! The mapping cannot shrink under us (which would turn an access into `SIGBUS`): on Linux and
//! FreeBSD the object is sealed against shrinking and growing, and the seals themselves are
//! sealed, before it is shared; on macOS the kernel sizes it once. The receiving side checks
//! the seals (or the kind of object) and the size before mapping it.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};

use super::cvt;
pub(crate) use crate::sys::shm_mapping::Mapping;

/// The seals a shared region must carry: it can neither shrink nor grow, and no seal can be
/// added or removed any more.
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
const REQUIRED_SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `as_ptr()`/`len()` are exactly the mapping `map` made (`Mapping`'s
        // invariant) and only this `drop` unmaps it, once; every reference into it borrows
        // `self`, so none outlives this call.
        unsafe { libc::munmap(self.as_ptr().cast(), self.len()) };
    }
}

/// Creates a sealed memory object of `len` bytes (zero-filled) and maps it.
///
/// The object has no name anyone can open (`memfd_create`: only descriptors reach it); it is
/// close-on-exec. The descriptor is returned to be passed to the peer, then closed.
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
pub(crate) fn create(len: usize) -> io::Result<(OwnedFd, Mapping)> {
    const NAME: &CStr = c"localsock-shm";
    // SAFETY: `NAME` is a &'static CStr, so the pointer is to a live, NUL-terminated string;
    // `memfd_create` only reads it.
    let raw =
        unsafe { libc::memfd_create(NAME.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    let raw = cvt(raw)?;
    // SAFETY: `memfd_create` succeeded (checked by `cvt`), so `raw` is a new descriptor that
    // nothing else owns; the OwnedFd takes it over and is its only closer.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let size = libc::off_t::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `fd` is the OwnedFd above, held by this function, so it is open for the call;
    // `ftruncate` takes only integers. No mapping of the object exists yet.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) })?;
    // SAFETY: `fd` is the OwnedFd above, held by this function, so it is open for the call;
    // F_ADD_SEALS takes an integer argument, not a pointer.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, REQUIRED_SEALS) })?;
    let map = map(fd.as_fd(), len)?;
    Ok((fd, map))
}

/// Checks that `fd` is a memory object of exactly `len` bytes that can neither shrink nor grow
/// and whose seals are final, then maps it. Anything else is `InvalidData`.
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
pub(crate) fn open(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; F_GET_SEALS takes no third
    // argument and writes no memory of ours.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 || seals & REQUIRED_SEALS != REQUIRED_SEALS {
        return Err(invalid(
            "the peer's shared memory is not a sealed memory object",
        ));
    }
    let st = fstat(fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG
        || u64::try_from(st.st_size).ok() != Some(len as u64)
    {
        return Err(invalid("the peer's shared memory has the wrong size"));
    }
    map(fd, len)
}

/// Creates a POSIX shared-memory object of `len` bytes (zero-filled) and maps it (macOS).
///
/// The object is created under a random name with `O_CREAT | O_EXCL` and mode `0600`, and
/// unlinked before anything else happens: from then on only descriptors reach it. It is sized
/// once (the kernel refuses a second `ftruncate`) and close-on-exec. The descriptor is returned
/// to be passed to the peer, then closed.
#[cfg(target_os = "macos")]
pub(crate) fn create(len: usize) -> io::Result<(OwnedFd, Mapping)> {
    let size = libc::off_t::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
    let fd = loop {
        let mut random = [0u8; 8];
        // SAFETY: `random` is a live local of 8 bytes and `random.len()` is the length passed,
        // so the call writes only inside it.
        unsafe { libc::arc4random_buf(random.as_mut_ptr().cast(), random.len()) };
        // "/ls-" and 16 hex digits: 20 bytes, under macOS's 31-byte limit (PSHMNAMLEN).
        let name = format!("/ls-{:016x}\0", u64::from_ne_bytes(random));
        let name = CStr::from_bytes_with_nul(name.as_bytes()).map_err(|_| io::ErrorKind::Other)?;
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;
        // SAFETY: `name` is a &CStr borrowed from a String held here, so the pointer is to a
        // live, NUL-terminated string; the variadic mode is passed as the `c_uint` that C's
        // default argument promotion makes of a `mode_t`.
        let raw = unsafe { libc::shm_open(name.as_ptr(), flags, 0o600 as libc::c_uint) };
        match cvt(raw) {
            Ok(raw) => {
                // SAFETY: `shm_open` succeeded (checked by `cvt`), so `raw` is a new
                // descriptor that nothing else owns; the OwnedFd takes it over and closes it.
                let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                // SAFETY: `name` is still the live, NUL-terminated &CStr given to `shm_open`;
                // `shm_unlink` only reads it. Unlinked before it is sized or shared.
                cvt(unsafe { libc::shm_unlink(name.as_ptr()) })?;
                break fd;
            }
            // Someone holds that name (a leftover, or a squatter): draw another.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    };
    // SAFETY: `fd` is the OwnedFd above, held by this function, so it is open for the call;
    // `ftruncate` takes only integers. No mapping of the object exists yet.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) })?;
    let map = map(fd.as_fd(), len)?;
    Ok((fd, map))
}

/// Checks that `fd` is a POSIX shared-memory object of at least `len` bytes, then maps it
/// (macOS). Anything else is `InvalidData`.
///
/// Such an object cannot shrink (the kernel sizes it once); a file could, so a descriptor that
/// is a file or another vnode is refused: `lseek` fails with `ESPIPE` on every non-vnode
/// descriptor, and of those only POSIX shared memory can be mapped. The kernel rounds the size
/// up to its page size (16 KiB on Apple silicon), so the object may be larger than `len`.
#[cfg(target_os = "macos")]
pub(crate) fn open(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; `lseek` takes only
    // integers.
    let at = unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_CUR) };
    if at >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESPIPE) {
        return Err(invalid(
            "the peer's shared memory is not a POSIX shared-memory object",
        ));
    }
    let st = fstat(fd)?;
    if u64::try_from(st.st_size).map_or(true, |size| size < len as u64) {
        return Err(invalid("the peer's shared memory is too small"));
    }
    map(fd, len).map_err(|_| invalid("the peer's shared memory cannot be mapped"))
}

/// Whether `fd` is a socket (the peer's end of the wake-up channel must be one).
pub(crate) fn is_socket(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(fstat(fd)?.st_mode & libc::S_IFMT == libc::S_IFSOCK)
}

fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; `st` is a live local with
    // room for one `stat`, which the kernel only writes.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: `fstat` succeeded, so it initialised `st`.
    Ok(unsafe { st.assume_init() })
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

fn map(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
    // SAFETY: with a null hint and no MAP_FIXED the kernel picks fresh addresses, so the
    // mapping overlaps no memory Rust already uses; `fd` is a BorrowedFd, open for the call
    // (the mapping keeps its own reference to the object); the object has at least `len`
    // bytes and cannot shrink (`create` sized it, and sealed it where there are seals; `open`
    // checked the seals, or the kind of object, and the size), so every page mapped stays
    // backed.
    let ptr = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(io::ErrorKind::Other)?;
    // SAFETY: `ptr` is the start of the new shared read/write mapping of `len` bytes that
    // `mmap` just made (page aligned, owned by nothing else), of an object that cannot shrink
    // (see above); the `Drop` above unmaps it.
    Ok(unsafe { Mapping::from_raw_parts(ptr, len) })
}

/// What [`current_cpu`] returns when it does not know.
pub(crate) const UNKNOWN_CPU: u32 = u32::MAX;

/// The CPU this thread runs on now, or [`UNKNOWN_CPU`] (a hint only).
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
pub(crate) fn current_cpu() -> u32 {
    // SAFETY: `sched_getcpu` takes no arguments and touches no memory of ours; a failure is
    // -1, which `try_from` turns into `u32::MAX`.
    let cpu = unsafe { libc::sched_getcpu() };
    u32::try_from(cpu).unwrap_or(UNKNOWN_CPU)
}

/// The CPU this thread runs on now: unknown on macOS (no `sched_getcpu`, and no way to pin
/// threads to CPUs either).
#[cfg(target_os = "macos")]
pub(crate) fn current_cpu() -> u32 {
    UNKNOWN_CPU
}

/// How many CPUs are online (1 if unknown). Spinning can only help with two or more.
pub(crate) fn online_cpus() -> usize {
    // SAFETY: `sysconf` takes an integer and returns one; it reads and writes no memory of
    // ours.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// A connected `AF_UNIX` stream socket pair, close-on-exec (on macOS just after it is made:
/// no `SOCK_CLOEXEC` there) and without `SIGPIPE`, for the writers' wake-ups.
pub(crate) fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    const TYPE: libc::c_int = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    #[cfg(target_os = "macos")]
    const TYPE: libc::c_int = libc::SOCK_STREAM;
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a live local `[c_int; 2]`, the two descriptors `socketpair` writes;
    // the other arguments are integers.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, TYPE, 0, fds.as_mut_ptr()) })?;
    // SAFETY: `socketpair` succeeded (checked by `cvt`), so `fds[0]` is a new descriptor that
    // nothing else owns; this OwnedFd takes it over and is its only closer.
    let a = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: likewise `fds[1]`, a different new descriptor, taken over by this OwnedFd.
    let b = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    #[cfg(target_os = "macos")]
    for fd in [&a, &b] {
        super::set_cloexec(fd.as_fd())?;
        super::set_nosigpipe(fd.as_fd())?;
    }
    Ok((a, b))
}

/// No `SIGPIPE` from a wake-up sent to a peer that is gone: `MSG_NOSIGNAL` where the OS has it
/// on `send`; on macOS the sockets carry `SO_NOSIGPIPE` instead (`LocalStream`'s, and the pair
/// above).
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
const NO_SIGNAL: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(target_os = "macos")]
const NO_SIGNAL: libc::c_int = 0;

/// One non-blocking `send` of a wake-up byte. A full socket buffer (the peer has plenty of
/// unread wake-ups) is fine; a vanished peer is `BrokenPipe`.
pub(crate) fn send_wake(fd: BorrowedFd<'_>) -> io::Result<()> {
    let byte = [1u8];
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; `byte` is a live local of
    // 1 byte, the length passed; the kernel only reads it.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            byte.as_ptr().cast(),
            1,
            NO_SIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(()),
            io::ErrorKind::ConnectionReset => Err(io::ErrorKind::BrokenPipe.into()),
            _ => Err(err),
        };
    }
    Ok(())
}

/// Blocks until a wake-up byte or end-of-file arrives on `fd` (a blocking socket), and
/// discards the wake-ups queued. `Ok(false)` is end-of-file or a reset: the peer is gone. A
/// socket read timeout shows as `WouldBlock`.
pub(crate) fn wait_wake(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut buf = [0u8; 64];
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; `buf` is a live local of
    // `buf.len()` bytes, the length passed; the kernel writes at most that many.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::Interrupted => Ok(true),
            io::ErrorKind::ConnectionReset => Ok(false),
            _ => Err(err),
        };
    }
    Ok(n > 0)
}

/// Reads and discards queued wake-up bytes without blocking. `Ok(false)` is end-of-file.
pub(crate) fn drain_wakes(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut buf = [0u8; 64];
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; `buf` is a live local of
    // `buf.len()` bytes, the length passed; the kernel writes at most that many.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(true),
            io::ErrorKind::ConnectionReset => Ok(false),
            _ => Err(err),
        };
    }
    Ok(n > 0)
}

/// Shuts both directions of the socket `fd` down (the peer sees end-of-file at once).
pub(crate) fn shutdown(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is a BorrowedFd, so it stays open for the call; `shutdown` takes only
    // integers.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) }).map(drop)
}

// ---- The names the portable layer (`crate::shm`) uses on every OS ----
//
// Unix wakes a reader through the connection's own socket and a writer through a socket pair
// made for it: a wake-up is a byte, the peer's end is end-of-file.

/// What the offer carries to the peer: descriptors.
pub(crate) type OsHandle = OwnedFd;
/// Our end of the writers' wake-up socket pair.
pub(crate) type Wakes = OwnedFd;
/// How many handles the offer's wake-up channel takes (the peer's end of the pair).
pub(crate) const WAKE_HANDLES: usize = 1;

/// Whether shared memory may be offered to the peer: always (descriptors go to any peer).
pub(crate) fn can_share(_stream: &super::Stream) -> io::Result<bool> {
    Ok(true)
}

/// Sends one negotiation frame with `handles` attached.
pub(crate) fn send_hello(
    stream: &super::Stream,
    bytes: &[u8],
    handles: &[&OwnedFd],
) -> io::Result<()> {
    let fds: Vec<BorrowedFd<'_>> = handles.iter().map(|h| h.as_fd()).collect();
    super::frame::send(stream.as_fd(), bytes, &fds)
}

/// Receives one negotiation frame and at most `max_handles` handles (`None`: end-of-file).
pub(crate) fn recv_hello(
    stream: &super::Stream,
    buf: &mut [u8],
    handles: &mut Vec<OwnedFd>,
    max_handles: usize,
) -> io::Result<Option<usize>> {
    super::frame::recv(stream.as_fd(), buf, handles, max_handles, true)
}

/// The writers' wake-up channel: our end, and what to send to the peer.
pub(crate) fn wakes(_stream: &super::Stream) -> io::Result<(Wakes, Vec<OsHandle>)> {
    let (ours, theirs) = socket_pair()?;
    Ok((ours, vec![theirs]))
}

/// The wake-up channel from the peer's offer, if it is one (a socket).
pub(crate) fn wakes_from_peer(
    _stream: &super::Stream,
    mut handles: Vec<OsHandle>,
) -> io::Result<Option<Wakes>> {
    match handles.pop() {
        Some(fd) if handles.is_empty() && is_socket(fd.as_fd())? => Ok(Some(fd)),
        _ => Ok(None),
    }
}

/// Nothing to start on Unix: the sockets themselves report the peer's end.
pub(crate) fn watch(_stream: &super::Stream, _wakes: &Wakes) {}

/// Wakes the peer's reader (a byte on the connection) or writer (a byte on the pair).
pub(crate) fn wake(
    stream: &super::Stream,
    wakes: &Wakes,
    peer: crate::sys::Waiter,
) -> io::Result<()> {
    send_wake(channel(stream, wakes, peer))
}

/// Blocks until our reader or writer is woken; `Ok(false)`: the peer is gone.
pub(crate) fn wait(
    stream: &super::Stream,
    wakes: &Wakes,
    me: crate::sys::Waiter,
) -> io::Result<bool> {
    wait_wake(channel(stream, wakes, me))
}

/// Takes our reader's or writer's queued wake-ups without blocking; `Ok(false)`: the peer is
/// gone.
pub(crate) fn drain(
    stream: &super::Stream,
    wakes: &Wakes,
    me: crate::sys::Waiter,
) -> io::Result<bool> {
    drain_wakes(channel(stream, wakes, me))
}

/// The peer broke the protocol: both sockets shut down, so that the peer sees end-of-file
/// and our own waiters wake.
pub(crate) fn close_path(stream: &super::Stream, wakes: &Wakes) {
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = shutdown(wakes.as_fd());
}

fn channel<'a>(
    stream: &'a super::Stream,
    wakes: &'a Wakes,
    who: crate::sys::Waiter,
) -> BorrowedFd<'a> {
    match who {
        crate::sys::Waiter::Reader => stream.as_fd(),
        crate::sys::Waiter::Writer => wakes.as_fd(),
    }
}

/// [`open`] for an owned descriptor.
pub(crate) fn open_handle(fd: &OwnedFd, len: usize) -> io::Result<Mapping> {
    open(fd.as_fd(), len)
}
