//! The server side, one policy for the blocking `LocalListener` and the async
//! `tokio::LocalListener`, which differ only in how they wait for a client: a pool of listening
//! pipe instances, each with a `ConnectNamedPipe` in flight, so that clients find a free
//! instance at once and the name is never free while the listener lives.
//!
//! - **Bind.** The first instance is created with `FILE_FLAG_FIRST_PIPE_INSTANCE`, so a name
//!   someone else holds is `AddrInUse` instead of silently joining their pipe. Because Wine
//!   does not enforce that flag, bind also checks first (`WaitNamedPipeW`) that no instance
//!   exists. An `ERROR_ACCESS_DENIED` for a name nobody holds is `PermissionDenied`, not
//!   `AddrInUse` (an AppContainer outside `\\.\pipe\LOCAL\`, for one). Then the pipe's
//!   security descriptor, as Windows assigned it, is checked to grant this user the rights
//!   every later instance needs (`security::check_instance_rights`), and the spares are made.
//! - **Accept** ([`Listener::take_ready`]). Takes an instance whose client has connected and
//!   puts a new listening instance in its place *before* handing the connected one out. If
//!   that new instance cannot be created, the error is returned and the connected instance
//!   stays in the pool, its client queued for the next accept: the pool never shrinks, so an
//!   instance of ours is always live and later instances never need
//!   `FILE_FLAG_FIRST_PIPE_INSTANCE`. A client that connected and left (`ERROR_NO_DATA`) is
//!   handed out if it sent something (its data, then EOF), as Unix does, and skipped if not.
//!   A connect aborted because the thread that issued it exited is issued again.
//! - **Waiting.** The blocking [`Listener::accept`] waits on the events of the pending
//!   connects with `WaitForMultipleObjects`, plus a "pool changed" event; several threads may
//!   wait at once. The async [`Listener::poll_accept`] registers each pending connect's event
//!   with the thread pool (`RegisterWaitForSingleObject`), whose callback wakes the waiting
//!   tasks, as does every change of the pool.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::fmt;
use std::io;
use std::mem;
use std::os::windows::io::{AsHandle, AsRawHandle, OwnedHandle};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
#[cfg(feature = "tokio")]
use std::task::{Context, Poll};

use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS, ERROR_IO_PENDING, ERROR_NO_DATA,
    ERROR_OPERATION_ABORTED, ERROR_PIPE_BUSY, ERROR_PIPE_CONNECTED, ERROR_SEM_TIMEOUT, HANDLE,
    INVALID_HANDLE_VALUE, WAIT_FAILED, WAIT_OBJECT_0,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::Storage::FileSystem::{
    FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, PIPE_ACCESS_DUPLEX,
};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, PeekNamedPipe, WaitNamedPipeW, PIPE_READMODE_BYTE,
    PIPE_READMODE_MESSAGE, PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_TYPE_MESSAGE,
    PIPE_UNLIMITED_INSTANCES, PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::{
    RegisterWaitForSingleObject, SetEvent, UnregisterWaitEx, WaitForMultipleObjects,
    WaitForSingleObject, INFINITE, WT_EXECUTEINWAITTHREAD, WT_EXECUTEONLYONCE,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

use super::overlapped::new_event;
use super::security::{self, SecurityDescriptor};
use super::{cvt, last_error, owned_handle, pipe_name, wide, Stream};
use crate::sys::{Addr, BindSpec, Kind};

/// Byte stream, blocking mode (the waiting is bounded by overlapped I/O), and local clients
/// only: a client on another machine (a `\\host\pipe\...` name, over SMB) is refused.
const PIPE_MODE: u32 = PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS;

/// The pipe mode for a kind of connection: [`PIPE_MODE`], or the same with messages
/// (`PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE`) for message streams.
fn pipe_mode(kind: Kind) -> u32 {
    match kind {
        Kind::Bytes => PIPE_MODE,
        Kind::Messages => {
            PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS
        }
    }
}

/// In and out buffer size of each instance (a hint to Windows, which grows them as needed).
const BUFFER_SIZE: u32 = 64 * 1024;

pub(crate) struct Listener {
    /// The full pipe name, NUL-terminated UTF-16.
    pipe: Vec<u16>,
    /// `PIPE_TYPE_*` and friends of every instance (byte or message mode).
    mode: u32,
    security: SecurityDescriptor,
    /// How many instances wait for clients: one plus the spares.
    listening: usize,
    pool: Mutex<Pool>,
    nonblocking: AtomicBool,
    /// The async listener's waiting tasks (`None` for the blocking listener).
    wakers: Option<Arc<Wakers>>,
    /// Test seam: this many of the next instance creations fail with
    /// `ERROR_NO_SYSTEM_RESOURCES`, as they do when the system is out of handles.
    #[cfg(test)]
    fail_creates: std::sync::atomic::AtomicU32,
}

struct Pool {
    instances: Vec<Instance>,
    /// Signalled, then replaced, whenever `instances` changes, so that threads waiting on the
    /// events of the old instances look again.
    changed: Arc<OwnedHandle>,
}

/// The wakers of the tasks waiting in [`Listener::poll_accept`].
#[derive(Default)]
pub(crate) struct Wakers(Mutex<Vec<Waker>>);

impl Wakers {
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    fn register(&self, waker: &Waker) {
        let mut wakers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }

    fn wake_all(&self) {
        let wakers = mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        wakers.into_iter().for_each(Waker::wake);
    }
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
/// Fields drop in order after `Drop::drop` has finished the operation: the registered wait
/// goes before the event it waits on is closed.
struct PendingConnect {
    overlapped: UnsafeCell<OVERLAPPED>,
    /// The async listener's wake-up when `event` is signalled.
    _wake: Option<RegisteredWait>,
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
            // SAFETY: `self.pipe` is still open: it is the handle of the `Instance` that owns
            // this box, and `Instance` drops `connect` before `handle`. The OVERLAPPED is in
            // this box, alive until this `drop` returns; the cancel only reads it to find the
            // operation (ERROR_NOT_FOUND, harmless, if it is already over).
            unsafe { CancelIoEx(self.pipe, self.overlapped.get()) };
            let mut moved = 0u32;
            // SAFETY: `self.pipe` is open (`Instance` drops `connect` before `handle`) and the
            // boxed OVERLAPPED alive until this `drop` returns; `moved` is a live local `u32`.
            // bWait = TRUE returns only once the connect is over, so the kernel is done with
            // the OVERLAPPED before the box is freed.
            unsafe { GetOverlappedResult(self.pipe, self.overlapped.get(), &mut moved, 1) };
        }
    }
}

/// A thread-pool wait on an event that wakes the async listener's tasks once the event is
/// signalled. Holds one strong count of the `Wakers` it passes to the callback, released
/// only after the wait is unregistered and any running callback has returned.
struct RegisteredWait {
    wait: HANDLE,
    wakers: *const Wakers,
}

// SAFETY: the wait handle is a plain value usable from any thread, and `wakers` is an
// `Arc<Wakers>` (Send + Sync) held as a raw pointer.
unsafe impl Send for RegisteredWait {}

impl RegisteredWait {
    fn new(event: &OwnedHandle, wakers: &Arc<Wakers>) -> io::Result<RegisteredWait> {
        let context = Arc::into_raw(Arc::clone(wakers));
        let mut wait: HANDLE = ptr::null_mut();
        // SAFETY: `wait` is a live local HANDLE the call writes; `event` is an OwnedHandle
        // borrowed for the call (and kept open by `PendingConnect`, which drops this wait
        // before its `event`); `context` holds one strong count of the Arc, released only
        // after the wait is unregistered with a full wait for its callback (Drop below), or
        // right here when the registration failed (then no callback can run).
        let ok = unsafe {
            RegisterWaitForSingleObject(
                &mut wait,
                event.as_raw_handle() as HANDLE,
                Some(wake_waiters),
                context.cast(),
                INFINITE,
                WT_EXECUTEONLYONCE | WT_EXECUTEINWAITTHREAD,
            )
        };
        if ok == 0 {
            let err = io::Error::last_os_error();
            // SAFETY: `context` came from `Arc::into_raw` above and is released once, here;
            // the registration failed, so no callback holds it.
            drop(unsafe { Arc::from_raw(context) });
            return Err(err);
        }
        Ok(RegisteredWait {
            wait,
            wakers: context,
        })
    }
}

impl Drop for RegisteredWait {
    fn drop(&mut self) {
        // SAFETY: `self.wait` is the registration `new` made, unregistered only here, once;
        // INVALID_HANDLE_VALUE makes the call return only once no callback of it runs or will
        // run.
        let unregistered = unsafe { UnregisterWaitEx(self.wait, INVALID_HANDLE_VALUE) } != 0;
        if unregistered {
            // SAFETY: `self.wakers` came from `Arc::into_raw` in `new` and is released once,
            // here; the wait is unregistered, so no callback can use it now.
            drop(unsafe { Arc::from_raw(self.wakers) });
        }
        // Else a callback might still run: leak the one count rather than free under it.
    }
}

/// The registered wait's callback: wakes every task waiting in `poll_accept`.
unsafe extern "system" fn wake_waiters(context: *mut c_void, _timed_out: bool) {
    // SAFETY: `context` is the `Arc<Wakers>` pointer of a live `RegisteredWait`, which keeps
    // its strong count until this callback has returned (UnregisterWaitEx waits for it), so
    // the `Wakers` is alive for the call; only a shared reference is made (`Wakers` is Sync).
    let wakers = unsafe { &*context.cast::<Wakers>() };
    wakers.wake_all();
}

impl Instance {
    /// Starts listening on a new instance handle.
    fn listen(handle: OwnedHandle, wakers: Option<&Arc<Wakers>>) -> io::Result<Instance> {
        let mut instance = Instance {
            connect: Connect::Done(Err(io::Error::from_raw_os_error(
                ERROR_OPERATION_ABORTED as i32,
            ))),
            handle,
        };
        instance.start(wakers)?;
        Ok(instance)
    }

    /// Issues `ConnectNamedPipe`. Also used again on an instance whose connect was aborted
    /// because the thread that issued it exited (Windows cancels a thread's pending I/O when
    /// it exits); the instance kept listening meanwhile, so a client that came in between is
    /// reported as `ERROR_PIPE_CONNECTED`.
    fn start(&mut self, wakers: Option<&Arc<Wakers>>) -> io::Result<()> {
        let event = Arc::new(new_event()?);
        let wake = wakers
            .map(|wakers| RegisteredWait::new(&event, wakers))
            .transpose()?;
        let pipe = self.handle.as_raw_handle() as HANDLE;
        let mut pending = Box::new(PendingConnect {
            overlapped: UnsafeCell::new(OVERLAPPED {
                // The low bit set: no completion packet is queued even once the handle is
                // associated with a completion port (the async stream's, after accept).
                hEvent: (event.as_raw_handle() as usize | 1) as HANDLE,
                ..OVERLAPPED::default()
            }),
            _wake: wake,
            event,
            pipe,
            finished: false,
        });
        // SAFETY: `pipe` is the handle of `self.handle`, an OwnedHandle that outlives the
        // connect (`Instance` drops `connect` first, which ends it). The OVERLAPPED is boxed and
        // stays at its address until the operation is over: `collect` or PendingConnect's Drop
        // waits for it before the box is freed.
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
            // SAFETY: `p.event` is an OwnedHandle held (through the Arc) by `p`, borrowed
            // through `&self`, so it is open for the call; no memory is passed.
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
            // SAFETY: `p.pipe` is open (the handle of this `Instance`, borrowed through
            // `&mut self`); the OVERLAPPED is the boxed one of the connect on it, alive while
            // `p` is; `moved` is a live local `u32`. bWait = TRUE returns only once the
            // connect is over (at once here: its event is signalled).
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
    // SAFETY: `handle` is an OwnedHandle borrowed for the call, so it stays open; the buffer
    // is null with size 0 and the other out-pointers are null, which the call allows;
    // `available` is a live local `u32` the call writes.
    let ok = unsafe {
        PeekNamedPipe(
            handle.as_raw_handle() as HANDLE,
            ptr::null_mut(),
            0,
            ptr::null_mut(),
            &mut available,
            ptr::null_mut(),
        )
    };
    if ok == 0 {
        0
    } else {
        available
    }
}

impl Listener {
    /// A listener for blocking `accept`s, of `kind` (byte or message pipes).
    pub(crate) fn bind(addr: &Addr, spec: &BindSpec) -> io::Result<Listener> {
        Listener::open(addr, spec, None)
    }

    /// A listener for [`poll_accept`](Self::poll_accept) (the async `LocalListener` and
    /// `MessageListener`), of `kind`.
    #[cfg(feature = "tokio")]
    pub(crate) fn bind_async(addr: &Addr, spec: &BindSpec) -> io::Result<Listener> {
        Listener::open(addr, spec, Some(Arc::default()))
    }

    fn open(addr: &Addr, spec: &BindSpec, wakers: Option<Arc<Wakers>>) -> io::Result<Listener> {
        let pipe = pipe_name(addr)?;
        let security = security::listener_descriptor(spec)?;
        // The spare count is clamped where it is set (`ListenerOptionsExt::spare_instances`).
        let spares = spec.spare_instances as usize;
        let listener = Listener {
            pipe: wide(pipe),
            mode: pipe_mode(spec.kind),
            security,
            listening: 1 + spares,
            pool: Mutex::new(Pool {
                instances: Vec::new(),
                changed: Arc::new(new_event()?),
            }),
            nonblocking: AtomicBool::new(false),
            wakers,
            #[cfg(test)]
            fail_creates: Default::default(),
        };
        check_free(&listener.pipe)?;
        let first = listener
            .create(true)
            .map_err(|e| first_instance_failed(&listener.pipe, pipe, e))?;
        security::check_instance_rights(first.handle.as_handle())?;
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
        #[cfg(test)]
        if self
            .fail_creates
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(io::Error::from_raw_os_error(
                windows_sys::Win32::Foundation::ERROR_NO_SYSTEM_RESOURCES as i32,
            ));
        }
        let attributes = SECURITY_ATTRIBUTES {
            nLength: mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.security.as_ptr(),
            bInheritHandle: 0,
        };
        let mut open_mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED;
        if first {
            open_mode |= FILE_FLAG_FIRST_PIPE_INSTANCE;
        }
        // SAFETY: `self.pipe` is a Vec<u16> held by `self`, NUL-terminated by `wide`;
        // `attributes` is a live local whose size is in `nLength`, and its descriptor pointer
        // is `self.security`'s, alive as long as `self`; the call only reads them. The handle
        // returned is new and ours alone, taken over by `owned_handle`.
        let handle = owned_handle(unsafe {
            CreateNamedPipeW(
                self.pipe.as_ptr(),
                open_mode,
                self.mode,
                PIPE_UNLIMITED_INSTANCES,
                BUFFER_SIZE,
                BUFFER_SIZE,
                0,
                &attributes,
            )
        })?;
        Instance::listen(handle, self.wakers.as_ref())
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        // The pool stays consistent even if a thread panicked while holding the lock.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The accept policy, the same for both listeners: the connected handle of an instance
    /// whose client is there, its replacement listening already; `None` when no client waits.
    fn take_ready(&self, pool: &mut Pool) -> io::Result<Option<OwnedHandle>> {
        loop {
            let Some(i) = pool.instances.iter().position(Instance::is_ready) else {
                return Ok(None);
            };
            pool.instances[i].collect();
            if pool.instances[i].was_aborted() {
                // Its thread exited: listen again on the same instance, look again.
                pool.instances[i].start(self.wakers.as_ref())?;
                self.changed(pool);
                continue;
            }
            // The next instance first: the name is never without a listening instance. If it
            // cannot be made, this one stays, connected, for the next accept.
            let next = self.create(false).map_err(next_instance_failed)?;
            let ready = mem::replace(&mut pool.instances[i], next);
            self.changed(pool);
            match ready.finish() {
                (handle, Ok(())) => return Ok(Some(handle)),
                // The client connected and left before ConnectNamedPipe. If it said
                // something first, hand it out (its data, then EOF), as Unix does; if not,
                // skip it: not our error.
                (handle, Err(e)) if e.raw_os_error() == Some(ERROR_NO_DATA as i32) => {
                    if unread_bytes(&handle) > 0 {
                        return Ok(Some(handle));
                    }
                }
                (_, Err(e)) => return Err(e),
            }
        }
    }

    /// Wakes whoever waits on the old set of instances: threads in `accept` and tasks in
    /// `poll_accept`.
    fn changed(&self, pool: &mut Pool) {
        match &self.wakers {
            Some(wakers) => wakers.wake_all(),
            // Only blocking accepts wait on the "changed" event.
            None => pool.changed(),
        }
    }

    /// Waits (blocking) for a client; `WouldBlock` in non-blocking mode when none is there.
    pub(crate) fn accept(&self) -> io::Result<Stream> {
        loop {
            let (mut waits, changed) = {
                let mut pool = self.lock();
                if let Some(handle) = self.take_ready(&mut pool)? {
                    return Ok(Stream::new(handle, true));
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
            // SAFETY: `raw` is a live Vec of `raw.len()` handles (at most 64, the call's limit:
            // see MAX_SPARE_INSTANCES), the count passed; each is an event kept open by the
            // Arc<OwnedHandle> in `waits`, held past the call.
            let waited =
                unsafe { WaitForMultipleObjects(raw.len() as u32, raw.as_ptr(), 0, INFINITE) };
            if waited == WAIT_FAILED {
                return Err(io::Error::last_os_error());
            }
        }
    }

    /// The async accept: the connected server-end handle of the next client, or `Pending`
    /// with `cx`'s waker registered to be woken when a pending connect finishes or the pool
    /// changes. A handle is taken only when it is returned, so dropping the caller's future
    /// loses no client. Only on a listener made by [`bind_async`](Self::bind_async).
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<OwnedHandle>> {
        let Some(wakers) = &self.wakers else {
            return Poll::Ready(Err(io::Error::other(
                "poll_accept on a listener bound for blocking accepts",
            )));
        };
        // Registered before looking, so a connect that finishes after the look wakes us.
        wakers.register(cx.waker());
        match self.take_ready(&mut self.lock()) {
            Ok(Some(handle)) => Poll::Ready(Ok(handle)),
            Ok(None) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
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
        // SAFETY: `old` is an Arc<OwnedHandle> held until the end of this function, so the
        // event is open for the call; no memory is passed.
        unsafe { SetEvent(old.as_raw_handle() as HANDLE) };
    }
}

/// Whether any instance of the pipe `pipe` (NUL-terminated UTF-16) exists, free or busy; the
/// evidence if so.
fn instance_exists(pipe: &[u16]) -> Option<io::Error> {
    assert_eq!(
        pipe.last(),
        Some(&0),
        "the pipe name must be NUL-terminated"
    );
    // SAFETY: `pipe` is a &[u16] borrowed for the call and NUL-terminated (asserted above, in
    // every build), so the call reads only inside it.
    if unsafe { WaitNamedPipeW(pipe.as_ptr(), 1) } != 0 {
        // A free instance answers. No call failed, so the evidence is the code that says
        // what was found: the name exists.
        return Some(io::Error::from_raw_os_error(ERROR_ALREADY_EXISTS as i32));
    }
    match last_error() {
        // Every instance is busy: the name is taken all the same.
        ERROR_SEM_TIMEOUT => Some(io::Error::from_raw_os_error(ERROR_SEM_TIMEOUT as i32)),
        // No such pipe (the usual case), or an error that creating the pipe will report
        // in its own words.
        _ => None,
    }
}

/// `AddrInUse` if any instance of the pipe exists. `FILE_FLAG_FIRST_PIPE_INSTANCE` closes the
/// race after this check on Windows; Wine does not enforce that flag, and this check is what
/// keeps a second server off a live name there.
fn check_free(pipe: &[u16]) -> io::Result<()> {
    match instance_exists(pipe) {
        Some(evidence) => Err(in_use(evidence)),
        None => Ok(()),
    }
}

/// The error of a failed first instance, in words that say which case it is.
///
/// `ERROR_ACCESS_DENIED` is what Windows answers when the name exists (the first-instance
/// flag; Wine says `ERROR_PIPE_BUSY`), but also when this process may not create the name at
/// all, e.g. an AppContainer process outside `\\.\pipe\LOCAL\` (Learn, `CreateNamedPipeW`:
/// "Windows 10, version 1709: Pipes are only supported within an app-container"). Whether an
/// instance exists tells the two apart.
fn first_instance_failed(pipe: &[u16], display_name: &str, e: io::Error) -> io::Error {
    match e.raw_os_error().map(|code| code as u32) {
        Some(ERROR_PIPE_BUSY) => in_use(e),
        Some(ERROR_ACCESS_DENIED) if instance_exists(pipe).is_some() => in_use(e),
        Some(ERROR_ACCESS_DENIED) => {
            let what = if security::is_app_container() && !is_under_local(display_name) {
                "this process runs in an AppContainer, which may create pipes only under \
                 \\\\.\\pipe\\LOCAL\\ (no instance of the name exists)"
                    .to_owned()
            } else {
                "this user may not create a pipe with this name (no instance of it exists)"
                    .to_owned()
            };
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                WithCause { what, cause: e },
            )
        }
        _ => e,
    }
}

/// Whether a full pipe name is under `\\.\pipe\LOCAL\` (any case), where an AppContainer may
/// create pipes.
fn is_under_local(pipe: &str) -> bool {
    const LOCAL: &str = r"\\.\pipe\LOCAL\";
    pipe.get(..LOCAL.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(LOCAL))
}

/// The error of an accept that could not create the replacement of a connected instance. The
/// OS error stays its source, so a resource shortage is still recognised as one.
fn next_instance_failed(e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        WithCause {
            what: "cannot create the next pipe instance; the connected client stays queued \
                   for the next accept"
                .to_owned(),
            cause: e,
        },
    )
}

/// `AddrInUse`, with the OS error (or other evidence) as its source.
fn in_use(cause: io::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        WithCause {
            what: "a pipe with this name already exists".to_owned(),
            cause,
        },
    )
}

/// Words for an OS error that keep the error as the source (so `raw_os_error` stays
/// reachable through `error::os_code`).
#[derive(Debug)]
pub(super) struct WithCause {
    pub(super) what: String,
    pub(super) cause: io::Error,
}

impl fmt::Display for WithCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.what, self.cause)
    }
}

impl std::error::Error for WithCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

/// Whether the client of an accepted (server-end) stream runs as this process's user, decided
/// from the client's own token only (see `security::client_is_current_user`): never from a
/// process id, so a client that cannot be identified is refused.
pub(crate) fn peer_uid_matches(stream: &Stream) -> io::Result<bool> {
    security::client_is_current_user(stream.as_handle())
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
    use crate::sys::windows::security::{current_user_sid, CLIENT_RIGHTS};
    use crate::sys::AccessMode;
    use std::ptr;
    use windows_sys::Win32::Foundation::{LocalFree, HLOCAL};
    use windows_sys::Win32::Security::Authorization::{
        ConvertSecurityDescriptorToStringSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1,
        SE_KERNEL_OBJECT,
    };
    use windows_sys::Win32::Security::{
        DACL_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
    };
    use windows_sys::Win32::Storage::FileSystem::FILE_APPEND_DATA;
    use windows_sys::Win32::System::Pipes::PIPE_NOWAIT;

    fn name(tag: &str) -> Addr {
        Addr::Pipe(format!(
            r"\\.\pipe\localsock-unit-{tag}-{}",
            std::process::id()
        ))
    }

    /// What `ListenerOptions::new()` binds with: owner only, one spare instance.
    fn spec() -> BindSpec {
        BindSpec {
            kind: Kind::Bytes,
            access: AccessMode::Owner,
            sddl: None,
            group: None,
            spare_instances: 1,
        }
    }

    fn bind(tag: &str, access: AccessMode) -> Listener {
        let mut spec = spec();
        spec.access = access;
        Listener::bind(&name(tag), &spec).unwrap()
    }

    /// The DACL of a live pipe instance, as the system reports it, in SDDL.
    fn dacl_of(listener: &Listener) -> String {
        descriptor_of(listener, DACL_SECURITY_INFORMATION)
    }

    /// Parts of the security descriptor of a live pipe instance, in SDDL.
    fn descriptor_of(listener: &Listener, parts: u32) -> String {
        let pool = listener.lock();
        let handle = pool.instances[0].handle.as_raw_handle() as HANDLE;
        let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: `handle` is the first instance's, kept open by `pool` (the lock held); the
        // owner, group and ACL out-pointers are null (not asked for), and `sd` is a live local
        // the call writes. The descriptor it returns is ours to LocalFree (below).
        let err = unsafe {
            GetSecurityInfo(
                handle,
                SE_KERNEL_OBJECT,
                parts,
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
        // SAFETY: `sd` is the descriptor GetSecurityInfo returned (checked: error 0), not yet
        // freed; `text` is a live local the call writes, the length pointer null (allowed).
        // The string it returns is ours to LocalFree (below).
        cvt(unsafe {
            ConvertSecurityDescriptorToStringSecurityDescriptorW(
                sd,
                SDDL_REVISION_1,
                parts,
                &mut text,
                ptr::null_mut(),
            )
        })
        .unwrap();
        let mut len = 0;
        // SAFETY: `text` is the NUL-terminated string the conversion returned (it succeeded:
        // unwrapped), not yet freed; the loop stops at the NUL, so every read is inside it.
        while unsafe { *text.add(len) } != 0 {
            len += 1;
        }
        // SAFETY: `text` points at `len` initialised u16s before its NUL (counted above), and
        // the slice is used (copied into `s`) before `text` is freed.
        let s = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, len) });
        // SAFETY: `text` and `sd` were allocated with LocalAlloc by the calls above, are freed
        // once, here, and nothing uses them afterwards (`s` is a copy).
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

    /// A resource shortage while creating the next instance is still one with its words
    /// added: the OS error stays the source, so `Incoming` pauses instead of spinning on a
    /// client that stays queued. (That the context `error::context` adds keeps such a source's
    /// code is `error::tests::the_os_code_is_reachable_through_source_however_it_was_wrapped`.)
    #[test]
    fn a_failed_next_instance_keeps_its_os_error() {
        use crate::error::{is_resource_shortage, os_code};
        use windows_sys::Win32::Foundation::{
            ERROR_NO_SYSTEM_RESOURCES, ERROR_TOO_MANY_OPEN_FILES,
        };
        for code in [ERROR_NO_SYSTEM_RESOURCES, ERROR_TOO_MANY_OPEN_FILES] {
            let os = io::Error::from_raw_os_error(code as i32);
            let err = next_instance_failed(os);
            assert_eq!(os_code(&err), Some(code as i32), "{err}");
            assert!(is_resource_shortage(&err), "{err}");
            assert!(err.to_string().contains("next pipe instance"), "{err}");
        }
    }

    /// `ERROR_ACCESS_DENIED` from the first instance is `AddrInUse` only when an instance of
    /// the name exists; for a free name it is `PermissionDenied` (an AppContainer outside
    /// `\\.\pipe\LOCAL\`, for one), with the OS error kept as the source. Fed the OS
    /// answer directly: Wine never refuses to create a pipe.
    #[test]
    fn access_denied_for_the_first_instance_says_which_case_it_is() {
        use crate::error::os_code;
        let denied = || io::Error::from_raw_os_error(ERROR_ACCESS_DENIED as i32);
        let free = name("denied-free");
        let free_pipe = pipe_name(&free).unwrap();
        let err = first_instance_failed(&wide(free_pipe), free_pipe, denied());
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert!(err.to_string().contains("may not create"), "{err}");
        assert_eq!(os_code(&err), Some(ERROR_ACCESS_DENIED as i32), "{err}");

        let taken = name("denied-taken");
        let _listener = Listener::bind(&taken, &spec()).unwrap();
        let taken_pipe = pipe_name(&taken).unwrap();
        for cause in [
            denied(),
            io::Error::from_raw_os_error(ERROR_PIPE_BUSY as i32),
        ] {
            let code = cause.raw_os_error();
            let err = first_instance_failed(&wide(taken_pipe), taken_pipe, cause);
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
            assert!(err.to_string().contains("already exists"), "{err}");
            assert_eq!(os_code(&err), code, "{err}");
        }
    }

    /// The AppContainer wording of an `ERROR_ACCESS_DENIED` depends on this: the whole
    /// 15-character prefix, trailing backslash included, in any case.
    #[test]
    fn local_pipe_names_are_recognised() {
        assert!(is_under_local(r"\\.\pipe\LOCAL\svc"));
        assert!(is_under_local(r"\\.\pipe\local\svc"));
        assert!(!is_under_local(r"\\.\pipe\LOCALsvc"));
        assert!(!is_under_local(r"\\.\pipe\svc"));
        assert!(!is_under_local(r"\\.\pipe\LOCAL"));
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
        let listener = bind("dacl-owner", AccessMode::Owner);
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
        let listener = bind("dacl-everyone", AccessMode::Everyone);
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

    /// An elevated server's default owner would be Administrators: the default descriptor
    /// names this user as the owner explicitly.
    #[test]
    fn default_descriptor_names_this_user_as_owner() {
        let listener = bind("owner", AccessMode::Owner);
        let owner = descriptor_of(&listener, OWNER_SECURITY_INFORMATION);
        let me = current_user_sid().unwrap();
        assert_eq!(owner, format!("O:{me}"));
    }

    /// `Access::Group` admits the group it is given (by SID or by name), with client rights
    /// only, and is refused without one: the token's primary group would be nearly everyone.
    #[test]
    fn group_access_needs_an_explicit_group_and_grants_it_client_rights() {
        let mut opts = spec();
        opts.access = AccessMode::Group;
        let err = Listener::bind(&name("group-none"), &opts).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("explicit group"), "{err}");

        for group in ["S-1-5-32-545", "Users"] {
            opts.group = Some(group.to_owned());
            let listener = Listener::bind(&name("group-users"), &opts).unwrap();
            let dacl = dacl_of(&listener);
            let rights = rights_of(&dacl, "BU")
                .or_else(|| rights_of(&dacl, "S-1-5-32-545"))
                .unwrap_or_else(|| panic!("no ACE for BUILTIN\\Users ({group}): {dacl}"));
            assert_eq!(rights, format!("{CLIENT_RIGHTS:#x}"), "{dacl}");
            assert_eq!(dacl.matches("(A;").count(), 3, "{dacl}");
            assert!(rights_of(&dacl, "WD").is_none(), "{dacl}");
        }

        opts.group = Some("no such group, surely".to_owned());
        let err = Listener::bind(&name("group-bad"), &opts).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");

        let mut opts = spec();
        opts.access = AccessMode::Everyone;
        opts.group = Some("S-1-5-32-545".to_owned());
        let err = Listener::bind(&name("group-everyone"), &opts).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }

    /// A custom SDDL that does not grant the server's own user FILE_CREATE_PIPE_INSTANCE
    /// fails at bind, naming the right, instead of at the first accept (Learn, "Named Pipe
    /// Security and Access Rights"). `AccessCheck` evaluates the descriptor Windows assigned
    /// to the first instance, which Wine does too (it only skips the check when a pipe is
    /// opened), so this runs in the Wine leg.
    #[test]
    fn a_descriptor_without_create_instance_for_us_fails_at_bind_naming_the_right() {
        let me = current_user_sid().unwrap();
        for (tag, sddl) in [
            ("sd-system", "D:P(A;;FA;;;SY)".to_owned()),
            // Everything but FILE_CREATE_PIPE_INSTANCE (0x4), denied first.
            (
                "sd-deny",
                format!("D:P(D;;0x4;;;{me})(A;;FA;;;{me})(A;;FA;;;SY)"),
            ),
        ] {
            for spares in [0, 1] {
                let mut opts = spec();
                opts.sddl = Some(sddl.clone());
                opts.spare_instances = spares;
                let err = Listener::bind(&name(tag), &opts).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{sddl}: {err}");
                assert!(
                    err.to_string().contains("FILE_CREATE_PIPE_INSTANCE"),
                    "{sddl}: {err}"
                );
            }
        }
        let mut opts = spec();
        opts.sddl = Some(format!("D:P(A;;FA;;;{me})(A;;FA;;;SY)"));
        opts.spare_instances = 0;
        Listener::bind(&name("sd-ok"), &opts).unwrap();
    }

    /// Connects a client of this process to `name` (one attempt: the instance is listening).
    fn client(name: &Addr) -> Stream {
        let spec = crate::sys::ConnectSpec {
            kind: Kind::Bytes,
            impersonation: crate::sys::SecurityQos::Identification,
        };
        Stream::connect(name, spec).unwrap_or_else(|f| panic!("connect: {f:?}"))
    }

    /// Issue 11, suspicion 4, settled for both listeners (they share this code): when the
    /// replacement of a connected instance cannot be made, accept fails with that error, the
    /// client is not handed out (the name would be free with no spare), the pool keeps its
    /// size, and the next accept hands the same client out.
    #[test]
    fn a_failed_replacement_keeps_the_client_queued_and_the_pool_full() {
        for async_mode in [false, true] {
            let name = name(if async_mode { "refill-async" } else { "refill" });
            let mut opts = spec();
            opts.spare_instances = 0;
            let listener = Listener::open(&name, &opts, async_mode.then(Arc::default)).unwrap();
            let c = client(&name);
            assert_eq!(c.write(b"queued").unwrap(), 6);
            listener.fail_creates.store(1, Ordering::SeqCst);
            let err = loop {
                // Poll until the client's connect has completed on the instance.
                match listener.take_ready(&mut listener.lock()) {
                    Ok(None) => std::thread::yield_now(),
                    Ok(Some(_)) => panic!("a client was handed out without a replacement"),
                    Err(e) => break e,
                }
            };
            assert_eq!(
                crate::error::os_code(&err),
                Some(windows_sys::Win32::Foundation::ERROR_NO_SYSTEM_RESOURCES as i32),
                "{err}"
            );
            assert!(err.to_string().contains("stays queued"), "{err}");
            assert_eq!(listener.lock().instances.len(), 1);
            let server = listener.take_ready(&mut listener.lock()).unwrap().unwrap();
            let server = Stream::new(server, true);
            let mut buf = [0u8; 6];
            assert_eq!(server.read(&mut buf).unwrap(), 6, "async: {async_mode}");
            assert_eq!(&buf, b"queued", "async: {async_mode}");
            assert_eq!(listener.lock().instances.len(), 1);
        }
    }

    /// The async listener's wait: a task that found no client is woken when one connects
    /// (the thread-pool wait on the pending connect's event), and the blocking listener's
    /// `accept` on the same code path sees the same client.
    #[cfg(feature = "tokio")]
    #[test]
    fn poll_accept_wakes_the_task_when_a_client_connects() {
        use std::sync::atomic::AtomicUsize;
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let name = name("poll-accept");
        let listener = Listener::bind_async(&name, &spec()).unwrap();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        assert!(listener.poll_accept(&mut cx).is_pending());
        let _c = client(&name);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while count.0.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "never woken");
            std::thread::yield_now();
        }
        match listener.poll_accept(&mut cx) {
            Poll::Ready(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }

    /// Looking up the client's SID impersonates it and must leave the thread as it came: an
    /// impersonation the calling thread had is still there afterwards (`RevertToSelf` would
    /// have dropped it).
    #[test]
    fn identifying_the_client_restores_the_threads_own_impersonation() {
        use windows_sys::Win32::Security::TOKEN_QUERY;
        use windows_sys::Win32::Security::{ImpersonateSelf, RevertToSelf, SecurityImpersonation};
        use windows_sys::Win32::System::Threading::{GetCurrentThread, OpenThreadToken};
        let name = name("restore-token");
        let listener = Listener::bind(&name, &spec()).unwrap();
        let _c = client(&name);
        let server = listener.accept().unwrap();
        // SAFETY: `ImpersonateSelf` takes only an integer and touches no memory of ours; it
        // changes this test thread's token, which `RevertToSelf` below restores.
        cvt(unsafe { ImpersonateSelf(SecurityImpersonation) }).unwrap();
        let same = peer_uid_matches(&server);
        let mut token: HANDLE = ptr::null_mut();
        // SAFETY: the current-thread pseudo-handle is always valid; `token` is a live local
        // HANDLE the call writes; a token it returns is ours, closed by `owned_handle` below.
        let still = unsafe { OpenThreadToken(GetCurrentThread(), TOKEN_QUERY, 1, &mut token) };
        let after = io::Error::last_os_error();
        if still != 0 {
            drop(owned_handle(token).unwrap());
        }
        // SAFETY: `RevertToSelf` takes no arguments and touches no memory of ours; it ends
        // this test thread's own impersonation.
        unsafe { RevertToSelf() };
        assert!(same.unwrap(), "a client of this process is this user");
        assert_ne!(still, 0, "the thread's impersonation was lost: {after}");
    }
}
