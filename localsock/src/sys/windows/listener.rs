//! The server side: a pool of listening pipe instances, each with a `ConnectNamedPipe` in
//! flight, so that clients find a free instance at once and the name is never free while the
//! listener lives.
//!
//! - The first instance is created with `FILE_FLAG_FIRST_PIPE_INSTANCE`, so a name someone
//!   else holds is `AddrInUse` instead of silently joining their pipe. Because Wine does not
//!   enforce that flag, bind also checks first (`WaitNamedPipeW`) that no instance exists.
//! - `accept` takes an instance whose client has connected, and puts a new listening instance
//!   in its place *before* handing the connected one out. If that new instance cannot be
//!   created, the error is returned and the connected instance stays in the pool: the pool
//!   never shrinks.
//! - Several threads may wait in `accept` at once: each waits on the events of the current
//!   instances plus a "pool changed" event, and looks again when woken.

use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::mem;
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_IO_PENDING, ERROR_NO_DATA, ERROR_OPERATION_ABORTED, ERROR_PIPE_BUSY,
    ERROR_PIPE_CONNECTED, ERROR_SEM_TIMEOUT, HANDLE, WAIT_FAILED, WAIT_OBJECT_0,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::Storage::FileSystem::{
    FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, PIPE_ACCESS_DUPLEX,
};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, PeekNamedPipe, WaitNamedPipeW, PIPE_READMODE_BYTE,
    PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_UNLIMITED_INSTANCES, PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::{
    SetEvent, WaitForMultipleObjects, WaitForSingleObject, INFINITE,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

use super::overlapped::new_event;
use super::security::{default_sddl, SecurityDescriptor};
use super::{cvt, last_error, owned_handle, pipe_name, wide, Stream};
use crate::os::windows::MAX_SPARE_INSTANCES;
use crate::{ListenerOptions, Name};

/// Byte stream, blocking mode (the waiting is bounded by overlapped I/O), and local clients
/// only: a client on another machine (a `\\host\pipe\...` name, over SMB) is refused.
const PIPE_MODE: u32 = PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS;

/// In and out buffer size of each instance (a hint to Windows, which grows them as needed).
const BUFFER_SIZE: u32 = 64 * 1024;

pub(crate) struct Listener {
    /// The full pipe name, NUL-terminated UTF-16.
    pipe: Vec<u16>,
    security: SecurityDescriptor,
    /// How many instances wait for clients: one plus the spares.
    listening: usize,
    pool: Mutex<Pool>,
    nonblocking: AtomicBool,
}

struct Pool {
    instances: Vec<Instance>,
    /// Signalled, then replaced, whenever `instances` changes, so that threads waiting on the
    /// events of the old instances look again.
    changed: Arc<OwnedHandle>,
}

/// One pipe instance and its `ConnectNamedPipe`. `connect` is declared first so that it is
/// dropped first: a pending connect is cancelled and finished while the handle is still open.
struct Instance {
    connect: Connect,
    handle: OwnedHandle,
}

enum Connect {
    /// `ConnectNamedPipe` is in flight.
    Pending(Box<PendingConnect>),
    /// It finished at once: `Ok` when a client was already connected (`ERROR_PIPE_CONNECTED`).
    Done(io::Result<()>),
}

/// The `OVERLAPPED` of a connect in flight, at a stable address (boxed) until it is over.
struct PendingConnect {
    overlapped: UnsafeCell<OVERLAPPED>,
    event: Arc<OwnedHandle>,
    pipe: HANDLE,
    /// The operation is over (its result was collected): nothing to cancel on drop.
    finished: bool,
}

// SAFETY: the OVERLAPPED is written only by the kernel while the operation is in flight and
// read only after it is over; the raw handles are plain values valid on any thread.
unsafe impl Send for PendingConnect {}

impl Drop for PendingConnect {
    fn drop(&mut self) {
        if !self.finished {
            // SAFETY: the connect on `pipe` (still open: `Instance` drops `connect` before
            // `handle`) uses this OVERLAPPED; cancel it and wait until it is over, so the
            // kernel never writes to freed memory.
            unsafe { CancelIoEx(self.pipe, self.overlapped.get()) };
            let mut moved = 0u32;
            // SAFETY: as above; with bWait = TRUE this returns once the operation is over.
            unsafe { GetOverlappedResult(self.pipe, self.overlapped.get(), &mut moved, 1) };
        }
    }
}

impl Instance {
    /// Starts listening on a new instance handle.
    fn listen(handle: OwnedHandle) -> io::Result<Instance> {
        let mut instance = Instance {
            connect: Connect::Done(Err(io::Error::from_raw_os_error(
                ERROR_OPERATION_ABORTED as i32,
            ))),
            handle,
        };
        instance.start()?;
        Ok(instance)
    }

    /// Issues `ConnectNamedPipe`. Also used again on an instance whose connect was aborted
    /// because the thread that issued it exited (Windows cancels a thread's pending I/O when
    /// it exits); the instance kept listening meanwhile, so a client that came in between is
    /// reported as `ERROR_PIPE_CONNECTED`.
    fn start(&mut self) -> io::Result<()> {
        let event = Arc::new(new_event()?);
        let pipe = self.handle.as_raw_handle() as HANDLE;
        let mut pending = Box::new(PendingConnect {
            overlapped: UnsafeCell::new(OVERLAPPED {
                hEvent: event.as_raw_handle() as HANDLE,
                ..OVERLAPPED::default()
            }),
            event,
            pipe,
            finished: false,
        });
        // SAFETY: `pipe` is a valid server-end instance; the OVERLAPPED is boxed and outlives
        // the operation (PendingConnect's Drop cancels and waits for it).
        let ok = unsafe { ConnectNamedPipe(pipe, pending.overlapped.get()) };
        self.connect = if ok != 0 {
            pending.finished = true;
            Connect::Done(Ok(()))
        } else {
            match last_error() {
                ERROR_IO_PENDING => Connect::Pending(pending),
                // A client connected before ConnectNamedPipe.
                ERROR_PIPE_CONNECTED => {
                    pending.finished = true;
                    Connect::Done(Ok(()))
                }
                // Nothing is in flight; ERROR_NO_DATA: that client has already left.
                err => {
                    pending.finished = true;
                    Connect::Done(Err(io::Error::from_raw_os_error(err as i32)))
                }
            }
        };
        Ok(())
    }

    fn is_ready(&self) -> bool {
        match &self.connect {
            Connect::Done(_) => true,
            // SAFETY: the event handle is valid; a zero timeout only polls it.
            Connect::Pending(p) => unsafe {
                WaitForSingleObject(p.event.as_raw_handle() as HANDLE, 0) == WAIT_OBJECT_0
            },
        }
    }

    fn event(&self) -> Option<Arc<OwnedHandle>> {
        match &self.connect {
            Connect::Pending(p) => Some(Arc::clone(&p.event)),
            Connect::Done(_) => None,
        }
    }

    /// Collects the outcome of the connect, once `is_ready`.
    fn collect(&mut self) {
        if let Connect::Pending(p) = &mut self.connect {
            let mut moved = 0u32;
            // SAFETY: the operation on `p.pipe` uses this OVERLAPPED; bWait = TRUE returns once
            // it is over (at once: its event is signalled).
            let ok = unsafe { GetOverlappedResult(p.pipe, p.overlapped.get(), &mut moved, 1) };
            p.finished = true;
            let result = match cvt(ok) {
                Err(e) if e.raw_os_error() == Some(ERROR_PIPE_CONNECTED as i32) => Ok(()),
                other => other,
            };
            self.connect = Connect::Done(result);
        }
    }

    fn was_aborted(&self) -> bool {
        matches!(&self.connect, Connect::Done(Err(e))
            if e.raw_os_error() == Some(ERROR_OPERATION_ABORTED as i32))
    }

    /// The handle and the outcome of its connect, after `collect`.
    fn finish(self) -> (OwnedHandle, io::Result<()>) {
        let Instance { connect, handle } = self;
        let result = match connect {
            Connect::Done(result) => result,
            Connect::Pending(_) => Err(io::Error::other("pipe connect still pending")),
        };
        (handle, result)
    }
}

/// How many bytes wait to be read on a pipe (0 when it cannot tell).
fn unread_bytes(handle: &OwnedHandle) -> u32 {
    let mut available = 0u32;
    // SAFETY: the handle is valid; no buffer is passed (size 0), only the count is asked for.
    let ok = unsafe {
        PeekNamedPipe(
            handle.as_raw_handle() as HANDLE,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
            &mut available,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        0
    } else {
        available
    }
}

impl Listener {
    pub(crate) fn bind(name: &Name, opts: &ListenerOptions) -> io::Result<Listener> {
        let pipe = pipe_name(name)?;
        let sddl = match &opts.windows.sddl {
            Some(sddl) => sddl.clone(),
            None => default_sddl(opts.access)?,
        };
        let security = SecurityDescriptor::from_sddl(&sddl)?;
        let spares = opts.windows.spare_instances.min(MAX_SPARE_INSTANCES) as usize;
        let listener = Listener {
            pipe: wide(pipe),
            security,
            listening: 1 + spares,
            pool: Mutex::new(Pool {
                instances: Vec::new(),
                changed: Arc::new(new_event()?),
            }),
            nonblocking: AtomicBool::new(false),
        };
        check_free(&listener.pipe)?;
        let first = listener.create(true).map_err(|e| {
            match e.raw_os_error().map(|c| c as u32) {
                // Windows says ERROR_ACCESS_DENIED when the name exists; Wine ERROR_PIPE_BUSY.
                Some(ERROR_ACCESS_DENIED) | Some(ERROR_PIPE_BUSY) => in_use(e),
                _ => e,
            }
        })?;
        let mut instances = vec![first];
        for _ in 1..listener.listening {
            instances.push(listener.create(false)?);
        }
        listener.lock().instances = instances;
        Ok(listener)
    }

    /// Creates one instance (the very first with `FILE_FLAG_FIRST_PIPE_INSTANCE`) and starts
    /// listening on it: duplex, byte mode, overlapped, local clients only, not inheritable.
    fn create(&self, first: bool) -> io::Result<Instance> {
        let attributes = SECURITY_ATTRIBUTES {
            nLength: mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.security.as_ptr(),
            bInheritHandle: 0,
        };
        let mut open_mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED;
        if first {
            open_mode |= FILE_FLAG_FIRST_PIPE_INSTANCE;
        }
        // SAFETY: `self.pipe` is NUL-terminated; `attributes` and the descriptor it points to
        // are valid for the whole call.
        let handle = owned_handle(unsafe {
            CreateNamedPipeW(
                self.pipe.as_ptr(),
                open_mode,
                PIPE_MODE,
                PIPE_UNLIMITED_INSTANCES,
                BUFFER_SIZE,
                BUFFER_SIZE,
                0,
                &attributes,
            )
        })?;
        Instance::listen(handle)
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        // The pool stays consistent even if a thread panicked while holding the lock.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn accept(&self) -> io::Result<Stream> {
        loop {
            let (mut waits, changed) = {
                let mut pool = self.lock();
                if let Some(i) = pool.instances.iter().position(Instance::is_ready) {
                    pool.instances[i].collect();
                    if pool.instances[i].was_aborted() {
                        // Its thread exited: listen again on the same instance, look again.
                        pool.instances[i].start()?;
                        pool.changed();
                        continue;
                    }
                    // The next instance first: the name is never without a listening instance.
                    let next = self.create(false).map_err(next_instance_failed)?;
                    let ready = mem::replace(&mut pool.instances[i], next);
                    pool.changed();
                    drop(pool);
                    match ready.finish() {
                        (handle, Ok(())) => return Ok(Stream::new(handle, true)),
                        // The client connected and left before ConnectNamedPipe. If it said
                        // something first, hand it out (its data, then EOF), as Unix does;
                        // if not, skip it: not our error.
                        (handle, Err(e)) if e.raw_os_error() == Some(ERROR_NO_DATA as i32) => {
                            if unread_bytes(&handle) > 0 {
                                return Ok(Stream::new(handle, true));
                            }
                            continue;
                        }
                        (_, Err(e)) => return Err(e),
                    }
                }
                if self.nonblocking.load(Ordering::Relaxed) {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "no client is waiting",
                    ));
                }
                let waits: Vec<Arc<OwnedHandle>> =
                    pool.instances.iter().filter_map(Instance::event).collect();
                (waits, Arc::clone(&pool.changed))
            };
            waits.push(changed);
            let raw: Vec<HANDLE> = waits.iter().map(|h| h.as_raw_handle() as HANDLE).collect();
            // SAFETY: `raw` holds `raw.len()` (at most 64) event handles, kept open by `waits`
            // for the whole call.
            let waited =
                unsafe { WaitForMultipleObjects(raw.len() as u32, raw.as_ptr(), 0, INFINITE) };
            if waited == WAIT_FAILED {
                return Err(io::Error::last_os_error());
            }
        }
    }

    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.nonblocking.store(nonblocking, Ordering::Relaxed);
        Ok(())
    }
}

impl Pool {
    /// Wakes the threads waiting on the old set of instances and starts a new generation.
    /// When no new event can be made (out of handles), the old one stays, signalled: waiters
    /// then poll until the next change, which is slower but never loses a client.
    fn changed(&mut self) {
        let old = match new_event() {
            Ok(next) => mem::replace(&mut self.changed, Arc::new(next)),
            Err(_) => Arc::clone(&self.changed),
        };
        // SAFETY: `old` is a valid event handle.
        unsafe { SetEvent(old.as_raw_handle() as HANDLE) };
    }
}

/// `AddrInUse` if any instance of the pipe `pipe` (NUL-terminated UTF-16) exists, free or
/// busy. `FILE_FLAG_FIRST_PIPE_INSTANCE` closes the race after this check on Windows; Wine does
/// not enforce that flag, and this check is what keeps a second server off a live name there.
/// Also used by the async listener (`async_pipe`).
pub(super) fn check_free(pipe: &[u16]) -> io::Result<()> {
    assert_eq!(
        pipe.last(),
        Some(&0),
        "the pipe name must be NUL-terminated"
    );
    // SAFETY: `pipe` is NUL-terminated (checked above).
    if unsafe { WaitNamedPipeW(pipe.as_ptr(), 1) } != 0 {
        return Err(in_use(io::Error::other("a free instance answers")));
    }
    match last_error() {
        // Every instance is busy: the name is taken all the same.
        ERROR_SEM_TIMEOUT => Err(in_use(io::Error::from_raw_os_error(
            ERROR_SEM_TIMEOUT as i32,
        ))),
        // No such pipe (the usual case), or an error that creating the pipe will report
        // in its own words.
        _ => Ok(()),
    }
}

/// The error of an accept that could not create the replacement of a connected instance. The
/// OS error stays its source, so a resource shortage is still recognised as one.
fn next_instance_failed(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), NextInstanceFailed(e))
}

#[derive(Debug)]
struct NextInstanceFailed(io::Error);

impl fmt::Display for NextInstanceFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot create the next pipe instance ({}); the connected client stays queued",
            self.0
        )
    }
}

impl std::error::Error for NextInstanceFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn in_use(cause: io::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("a pipe with this name already exists ({cause})"),
    )
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalListener")
            .field("listening_instances", &self.listening)
            .field("nonblocking", &self.nonblocking.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::Access;
    use crate::sys::windows::security::{current_user_sid, CLIENT_RIGHTS};
    use std::ptr;
    use windows_sys::Win32::Foundation::{LocalFree, HLOCAL};
    use windows_sys::Win32::Security::Authorization::{
        ConvertSecurityDescriptorToStringSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1,
        SE_KERNEL_OBJECT,
    };
    use windows_sys::Win32::Security::{DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR};
    use windows_sys::Win32::Storage::FileSystem::FILE_APPEND_DATA;
    use windows_sys::Win32::System::Pipes::{
        PIPE_NOWAIT, PIPE_READMODE_MESSAGE, PIPE_TYPE_MESSAGE,
    };

    fn bind(tag: &str, access: Access) -> Listener {
        let name = Name::new(format!("localsock-unit-{tag}-{}", std::process::id())).unwrap();
        let mut opts = ListenerOptions::new();
        opts.access(access);
        Listener::bind(&name, &opts).unwrap()
    }

    /// The DACL of a live pipe instance, as the system reports it, in SDDL.
    fn dacl_of(listener: &Listener) -> String {
        let pool = listener.lock();
        let handle = pool.instances[0].handle.as_raw_handle() as HANDLE;
        let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: `handle` is a live pipe instance; only the descriptor is asked for.
        let err = unsafe {
            GetSecurityInfo(
                handle,
                SE_KERNEL_OBJECT,
                DACL_SECURITY_INFORMATION,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                &mut sd,
            )
        };
        assert_eq!(
            err,
            0,
            "GetSecurityInfo: {}",
            io::Error::from_raw_os_error(err as i32)
        );
        let mut text: *mut u16 = ptr::null_mut();
        // SAFETY: `sd` is the descriptor GetSecurityInfo returned; `text` is valid for writes.
        cvt(unsafe {
            ConvertSecurityDescriptorToStringSecurityDescriptorW(
                sd,
                SDDL_REVISION_1,
                DACL_SECURITY_INFORMATION,
                &mut text,
                ptr::null_mut(),
            )
        })
        .unwrap();
        let mut len = 0;
        // SAFETY: the string is NUL-terminated; we stop at the NUL.
        while unsafe { *text.add(len) } != 0 {
            len += 1;
        }
        // SAFETY: `text` is valid for `len` u16s.
        let s = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, len) });
        // SAFETY: both were allocated with LocalAlloc by the calls above.
        unsafe {
            LocalFree(text as HLOCAL);
            LocalFree(sd as HLOCAL);
        }
        s
    }

    /// The rights of the ACE for `trustee` in `dacl`, e.g. "FA" or "0x12018b".
    fn rights_of<'a>(dacl: &'a str, trustee: &str) -> Option<&'a str> {
        dacl.split('(')
            .map(|ace| ace.trim_end_matches(')'))
            .find(|ace| ace.ends_with(&format!(";;;{trustee}")))
            .and_then(|ace| ace.split(';').nth(2))
    }

    /// A resource shortage while creating the next instance is still one after the context
    /// is added, so `Incoming` pauses instead of spinning on a client that stays queued.
    #[test]
    fn a_failed_next_instance_keeps_its_os_error() {
        use crate::error::{context, is_resource_shortage, os_code, Op};
        use windows_sys::Win32::Foundation::{
            ERROR_NO_SYSTEM_RESOURCES, ERROR_TOO_MANY_OPEN_FILES,
        };
        let name = Name::new("localsock-unit-next-instance").unwrap();
        for code in [ERROR_NO_SYSTEM_RESOURCES, ERROR_TOO_MANY_OPEN_FILES] {
            let os = io::Error::from_raw_os_error(code as i32);
            let err = context(next_instance_failed(os), Op::Accept, &name);
            assert_eq!(os_code(&err), Some(code as i32), "{err}");
            assert!(is_resource_shortage(&err), "{err}");
            assert!(err.to_string().contains("next pipe instance"), "{err}");
        }
    }

    #[test]
    fn instances_are_byte_mode_and_refuse_remote_clients() {
        assert_eq!(
            PIPE_MODE & PIPE_REJECT_REMOTE_CLIENTS,
            PIPE_REJECT_REMOTE_CLIENTS
        );
        assert_eq!(PIPE_MODE & PIPE_TYPE_MESSAGE, 0);
        assert_eq!(PIPE_MODE & PIPE_READMODE_MESSAGE, 0);
        assert_eq!(PIPE_MODE & PIPE_NOWAIT, 0);
    }

    #[test]
    fn default_dacl_is_the_owner_and_system_only_and_protected() {
        let listener = bind("dacl-owner", Access::Owner);
        let dacl = dacl_of(&listener);
        let me = current_user_sid().unwrap();
        assert!(dacl.starts_with("D:P"), "not protected: {dacl}");
        assert_eq!(rights_of(&dacl, &me), Some("FA"), "{dacl}");
        assert_eq!(rights_of(&dacl, "SY"), Some("FA"), "{dacl}");
        assert_eq!(dacl.matches("(A;").count(), 2, "only two grants: {dacl}");
        assert!(!dacl.contains("(D;"), "{dacl}");
    }

    #[test]
    fn everyone_may_read_and_write_but_never_create_instances() {
        let listener = bind("dacl-everyone", Access::Everyone);
        let dacl = dacl_of(&listener);
        let rights = rights_of(&dacl, "WD").unwrap_or_else(|| panic!("no Everyone ACE: {dacl}"));
        let mask = u32::from_str_radix(rights.trim_start_matches("0x"), 16)
            .unwrap_or_else(|_| panic!("Everyone's rights are not a plain mask: {dacl}"));
        assert_eq!(mask, CLIENT_RIGHTS, "{dacl}");
        assert_eq!(
            mask & FILE_APPEND_DATA,
            0,
            "FILE_CREATE_PIPE_INSTANCE granted: {dacl}"
        );
    }

    #[test]
    fn group_access_grants_the_primary_group_client_rights() {
        let listener = bind("dacl-group", Access::Group);
        let dacl = dacl_of(&listener);
        let me = current_user_sid().unwrap();
        assert_eq!(dacl.matches("(A;").count(), 3, "{dacl}");
        assert!(rights_of(&dacl, "WD").is_none(), "{dacl}");
        let group_ace = dacl
            .split('(')
            .find(|ace| ace.starts_with("A;;0x") && !ace.contains(&format!(";;;{me})")))
            .unwrap_or_else(|| panic!("no group ACE: {dacl}"));
        assert!(group_ace.contains(&format!("{CLIENT_RIGHTS:#x}")), "{dacl}");
    }
}
