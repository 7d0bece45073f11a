//! The async [`LocalListener`].

use std::fmt;
use std::io;

use super::{imp, LocalStream};
use crate::error::{self, Op};
use crate::sys::Kind;
use crate::{ListenerOptions, Name};

/// A server endpoint for tokio that accepts [`LocalStream`]s. The async twin of
/// [`crate::LocalListener`], with the same names, options and guarantees: owner-only access
/// by default, a live server's name never stolen, stale socket files reclaimed safely, the
/// socket file removed on drop (Unix); the name never left free between pipe instances
/// (Windows).
///
/// # Examples
///
/// An echo server:
///
/// ```no_run
/// use localsock::{tokio::LocalListener, Name};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = LocalListener::bind(&Name::new("example-echo")?)?;
/// loop {
///     let mut stream = listener.accept().await?;
///     tokio::spawn(async move {
///         let (mut reader, mut writer) = stream.split();
///         tokio::io::copy(&mut reader, &mut writer).await
///     });
/// }
/// # }
/// ```
pub struct LocalListener {
    inner: imp::Listener,
    name: Name,
    require_same_user: bool,
}

impl LocalListener {
    /// Creates a listener at `name` with the default [`ListenerOptions`].
    ///
    /// Corresponds to `socket(2)`+`bind(2)`+`listen(2)` on Unix, `CreateNamedPipeW` with
    /// `FILE_FLAG_FIRST_PIPE_INSTANCE` (and spare instances) on Windows.
    ///
    /// # Errors
    ///
    /// As [`ListenerOptions::bind`]; most often `AddrInUse` when a server already listens
    /// there.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or in one without the I/O driver.
    pub fn bind(name: &Name) -> io::Result<LocalListener> {
        LocalListener::bind_with(name, &ListenerOptions::new())
    }

    /// Creates a listener at `name` with `options` (access, stale-file reclaim, backlog,
    /// same-user check; `nonblocking` is ignored: the listener is async).
    ///
    /// # Errors
    ///
    /// As [`ListenerOptions::bind`]: `AddrInUse`, `PermissionDenied`, `NotFound` (no such
    /// directory), `InvalidInput` (a name of the other platform's kind).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or in one without the I/O driver.
    ///
    /// # Platform-specific behavior
    ///
    /// On Windows the Windows settings of `localsock::os::windows::ListenerOptionsExt` apply
    /// too (security descriptor, spare instances): one instance plus the spares wait for
    /// clients at all times, so they are also how many clients can connect before `accept`
    /// runs (the backlog).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use localsock::{Access, ListenerOptions, Name};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let name = Name::new("/run/example/app.sock")?;
    /// let listener = localsock::tokio::LocalListener::bind_with(
    ///     &name,
    ///     ListenerOptions::new().access(Access::Group),
    /// )?;
    /// println!("listening at {}", listener.name());
    /// # Ok(()) }
    /// ```
    pub fn bind_with(name: &Name, options: &ListenerOptions) -> io::Result<LocalListener> {
        LocalListener::bind_kind(name, options, Kind::Bytes)
    }

    /// The bind of byte-stream and message listeners alike (a
    /// [`MessageListener`](super::MessageListener) wraps a `LocalListener` of the message kind).
    pub(crate) fn bind_kind(
        name: &Name,
        options: &ListenerOptions,
        kind: Kind,
    ) -> io::Result<LocalListener> {
        // Errors come with their context (operation and endpoint) from the backend.
        let inner = imp::Listener::bind(name, options, kind)?;
        Ok(LocalListener {
            inner,
            name: name.clone(),
            require_same_user: options.require_same_user,
        })
    }

    /// Waits for a client and returns the connected stream.
    ///
    /// As the blocking [`crate::LocalListener::accept`]: a client that connected and left
    /// before the accept is returned if it sent something (its data, then EOF), so nothing it
    /// sent is lost; one that sent nothing may be skipped (Windows skips it). With
    /// [`ListenerOptions::require_same_user`], clients of other users are dropped and skipped.
    ///
    /// Corresponds to `accept4(2)` on Unix, `ConnectNamedPipe` on Windows.
    ///
    /// # Errors
    ///
    /// The OS error; messages name the endpoint. After an error that means the process or the
    /// system is out of descriptors, handles or memory (`EMFILE`, `ENFILE`, ..., see
    /// [`crate::is_resource_shortage`]) it waits 100 ms before returning it, as the blocking
    /// [`Incoming`](crate::Incoming) does: the client stays queued, so a loop that logs the
    /// error and goes on does not spin while the shortage lasts. The listener stays usable.
    ///
    /// # Panics
    ///
    /// When polled outside a tokio runtime.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: if it is used as a branch of `tokio::select!` and another
    /// branch completes first, no connection is lost; it is returned by the next call.
    pub async fn accept(&self) -> io::Result<LocalStream> {
        loop {
            let inner = match self.inner.accept().await {
                Ok(inner) => inner,
                Err(e) => return Err(self.accept_failed(e).await),
            };
            if self.require_same_user && !imp::Listener::peer_uid_matches(&inner) {
                continue;
            }
            return Ok(LocalStream { inner });
        }
    }

    /// [`accept`](Self::accept) of a message listener on Windows, whose streams tokio's pipe
    /// types do not carry: the same policies, the stream kept out of tokio.
    #[cfg(windows)]
    pub(crate) async fn accept_message(&self) -> io::Result<imp::MessageStream> {
        loop {
            let inner = match self.inner.accept_message().await {
                Ok(inner) => inner,
                Err(e) => return Err(self.accept_failed(e).await),
            };
            if self.require_same_user && !inner.peer_is_same_user() {
                continue;
            }
            return Ok(inner);
        }
    }

    /// The error of a failed accept, with its context, after the pause the accept policy asks
    /// for.
    async fn accept_failed(&self, e: io::Error) -> io::Error {
        let e = error::context(e, Op::Accept, &self.name);
        // The one accept policy, shared with the blocking `Incoming`.
        if let Some(pause) = crate::listener::pause_after_accept_error(&e) {
            tokio::time::sleep(pause).await;
        }
        e
    }

    /// The name this listener was bound to.
    pub fn name(&self) -> &Name {
        &self.name
    }
}

#[cfg(unix)]
impl LocalListener {
    /// Registers a blocking [`crate::LocalListener`] with the current runtime. The options it
    /// was bound with still apply, and it still removes its socket file when dropped.
    ///
    /// # Errors
    ///
    /// The OS error if the socket cannot be made non-blocking or registered.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or in one without the I/O driver.
    ///
    /// # Platform-specific behavior
    ///
    /// Unix only: see the [module documentation](crate::tokio) for why Windows has no conversions.
    pub fn from_std(listener: crate::LocalListener) -> io::Result<LocalListener> {
        let name = listener.name().clone();
        let require_same_user = listener.requires_same_user();
        let inner = imp::Listener::from_sys(listener.into_inner())?;
        Ok(LocalListener {
            inner,
            name,
            require_same_user,
        })
    }

    /// Adopts a listening socket this process inherited (systemd socket activation), after
    /// checking that it is a listening `AF_UNIX` stream socket, and registers it with the
    /// current runtime. As [`crate::LocalListener::from_inherited_fd`], which it calls.
    ///
    /// # Errors
    ///
    /// `InvalidInput` saying what the descriptor is instead; the OS error if it cannot be
    /// examined or registered.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or in one without the I/O driver.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::os::fd::OwnedFd;
    /// use localsock::tokio::LocalListener;
    ///
    /// # #[allow(dead_code)]
    /// # async fn adopt(fd: OwnedFd) -> std::io::Result<()> {
    /// let listener = LocalListener::from_inherited_fd(fd)?;
    /// let _client = listener.accept().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Platform-specific behavior
    ///
    /// Unix only.
    pub fn from_inherited_fd(fd: std::os::fd::OwnedFd) -> io::Result<LocalListener> {
        LocalListener::from_std(crate::LocalListener::from_inherited_fd(fd)?)
    }

    /// Deregisters the listener and turns it into a blocking [`crate::LocalListener`], which
    /// keeps the duty to remove the socket file.
    ///
    /// # Errors
    ///
    /// The OS error if the socket cannot be deregistered or made blocking.
    ///
    /// # Platform-specific behavior
    ///
    /// Unix only: see the [module documentation](crate::tokio) for why Windows has no conversions.
    pub fn into_std(self) -> io::Result<crate::LocalListener> {
        let inner = self.inner.into_sys()?;
        Ok(crate::LocalListener::from_parts(
            inner,
            self.name,
            self.require_same_user,
        ))
    }
}

#[cfg(unix)]
impl TryFrom<crate::LocalListener> for LocalListener {
    type Error = io::Error;

    /// As [`LocalListener::from_std`].
    fn try_from(listener: crate::LocalListener) -> io::Result<LocalListener> {
        LocalListener::from_std(listener)
    }
}

#[cfg(unix)]
impl TryFrom<LocalListener> for crate::LocalListener {
    type Error = io::Error;

    /// As [`LocalListener::into_std`].
    fn try_from(listener: LocalListener) -> io::Result<crate::LocalListener> {
        listener.into_std()
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for LocalListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for LocalListener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.inner.as_fd())
    }
}

impl fmt::Debug for LocalListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalListener")
            .field("name", &self.name)
            .field("inner", &self.inner)
            .finish()
    }
}
