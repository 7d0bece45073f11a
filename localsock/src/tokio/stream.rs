//! The async [`LocalStream`], its [`ConnectOptions`] and its split halves.

use std::error::Error;
use std::fmt;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::imp;
use crate::stream::Retry;
use crate::sys::ConnectFailure;
use crate::{Name, PeerCredentials};

/// A connected local socket for tokio: a Unix domain stream socket or a Windows named-pipe
/// end, registered with the runtime's reactor. The async twin of [`crate::LocalStream`].
///
/// It implements [`AsyncRead`] and [`AsyncWrite`]; use `tokio::io::AsyncReadExt` /
/// `AsyncWriteExt` for `read`, `write_all`, and `shutdown` (which half-closes the write
/// direction on Unix: the peer reads EOF). [`split`](Self::split) and
/// [`into_split`](Self::into_split) give a read half and a write half that can be used from
/// two tasks at once.
///
/// Reading from a peer that closed its end is EOF (`Ok(0)`); writing to it is `BrokenPipe`,
/// never a `SIGPIPE`.
///
/// # Platform-specific behavior
///
/// Named pipes have no half-close: on Windows `shutdown` does what the blocking
/// [`crate::LocalStream::shutdown`] does with `Shutdown::Write` (later writes fail with
/// `BrokenPipe`; the server end waits until the client has read everything, then disconnects,
/// so the client reads EOF; a client end's peer reads EOF only when this end is dropped).
/// Dropping the stream (and its halves) while a server end's `shutdown` still waits for the
/// client to read cancels that wait and closes the pipe.
///
/// # Examples
///
/// ```no_run
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use localsock::{tokio::LocalStream, Name};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let mut stream = LocalStream::connect(&Name::new("example-svc")?).await?;
/// stream.write_all(b"ping").await?;
/// let mut reply = [0; 4];
/// stream.read_exact(&mut reply).await?;
/// # Ok(()) }
/// ```
pub struct LocalStream {
    pub(super) inner: imp::Stream,
}

impl LocalStream {
    /// Connects to the server at `name` with the default options: a busy server is retried
    /// with backoff for up to [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT); no
    /// server is an error at once.
    ///
    /// Corresponds to `socket(2)`+`connect(2)` on Unix, `CreateFileW` on Windows.
    ///
    /// # Errors
    ///
    /// As [`ConnectOptions::connect`]: `NotFound`, `ConnectionRefused` (a stale socket file),
    /// `PermissionDenied`, `TimedOut` (the server stayed busy).
    ///
    /// # Panics
    ///
    /// When polled outside a tokio runtime, or in one without the I/O and time drivers
    /// (`enable_io`, `enable_time`; `enable_all` has both).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the connect: no stream is left behind.
    pub async fn connect(name: &Name) -> io::Result<LocalStream> {
        ConnectOptions::new().connect(name).await
    }

    /// Who is on the other end, as the OS saw it when the connection was made. See
    /// [`crate::LocalStream::peer_credentials`].
    ///
    /// # Errors
    ///
    /// The OS error, e.g. when the connection is closed.
    ///
    /// # Platform-specific behavior
    ///
    /// The same as the blocking stream's on every platform: on Windows the peer's pid and,
    /// where Windows tells, its user SID (the async pipe and the blocking one share the code).
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.inner.peer_credentials()
    }

    /// Splits the stream into a read half and a write half borrowing it, without allocating.
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        let (read, write) = self.inner.split();
        (ReadHalf { inner: read }, WriteHalf { inner: write })
    }

    /// Splits the stream into a read half and a write half that own it and can move to
    /// different tasks; [`OwnedReadHalf::reunite`] puts them back together.
    ///
    /// Dropping the write half shuts down the write direction on Unix (the peer reads EOF), as
    /// with tokio's `UnixStream`.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let (read, write) = self.inner.into_split();
        (
            OwnedReadHalf { inner: read },
            OwnedWriteHalf { inner: write },
        )
    }
}

#[cfg(unix)]
impl LocalStream {
    /// Registers a blocking [`crate::LocalStream`] with the current runtime (it is made
    /// non-blocking).
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
    pub fn from_std(stream: crate::LocalStream) -> io::Result<LocalStream> {
        imp::Stream::from_sys(stream.inner).map(|inner| LocalStream { inner })
    }

    /// Deregisters the stream and turns it into a blocking [`crate::LocalStream`].
    ///
    /// # Errors
    ///
    /// The OS error if the socket cannot be deregistered or made blocking.
    ///
    /// # Platform-specific behavior
    ///
    /// Unix only: see the [module documentation](crate::tokio) for why Windows has no conversions.
    pub fn into_std(self) -> io::Result<crate::LocalStream> {
        self.inner
            .into_sys()
            .map(|inner| crate::LocalStream { inner })
    }
}

#[cfg(unix)]
impl TryFrom<crate::LocalStream> for LocalStream {
    type Error = io::Error;

    /// As [`LocalStream::from_std`].
    fn try_from(stream: crate::LocalStream) -> io::Result<LocalStream> {
        LocalStream::from_std(stream)
    }
}

#[cfg(unix)]
impl TryFrom<LocalStream> for crate::LocalStream {
    type Error = io::Error;

    /// As [`LocalStream::into_std`].
    fn try_from(stream: LocalStream) -> io::Result<crate::LocalStream> {
        stream.into_std()
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for LocalStream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for LocalStream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.as_raw_fd()
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsHandle for LocalStream {
    fn as_handle(&self) -> std::os::windows::io::BorrowedHandle<'_> {
        self.inner.as_handle()
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsRawHandle for LocalStream {
    fn as_raw_handle(&self) -> std::os::windows::io::RawHandle {
        self.inner.as_raw_handle()
    }
}

impl fmt::Debug for LocalStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

/// Implements `AsyncRead` and/or `AsyncWrite` on a public type by delegating to `inner`.
macro_rules! delegate_async_io {
    (read: $($ty:ty),*) => {$(
        impl AsyncRead for $ty {
            #[inline]
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_read(cx, buf)
            }
        }
    )*};
    (write: $($ty:ty),*) => {$(
        impl AsyncWrite for $ty {
            #[inline]
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write(cx, buf)
            }
            #[inline]
            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }
            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }
            #[inline]
            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_flush(cx)
            }
            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_shutdown(cx)
            }
        }
    )*};
}

delegate_async_io!(read: LocalStream, ReadHalf<'_>, OwnedReadHalf);
delegate_async_io!(write: LocalStream, WriteHalf<'_>, OwnedWriteHalf);

/// The read half of a [`LocalStream`], borrowed from it by [`LocalStream::split`].
#[derive(Debug)]
pub struct ReadHalf<'a> {
    inner: imp::ReadHalf<'a>,
}

/// The write half of a [`LocalStream`], borrowed from it by [`LocalStream::split`].
/// `AsyncWriteExt::shutdown` on it half-closes the stream on Unix.
#[derive(Debug)]
pub struct WriteHalf<'a> {
    inner: imp::WriteHalf<'a>,
}

/// The read half of a [`LocalStream`], made by [`LocalStream::into_split`].
#[derive(Debug)]
pub struct OwnedReadHalf {
    inner: imp::OwnedReadHalf,
}

/// The write half of a [`LocalStream`], made by [`LocalStream::into_split`]. Dropping it
/// shuts down the write direction on Unix (the peer reads EOF).
#[derive(Debug)]
pub struct OwnedWriteHalf {
    inner: imp::OwnedWriteHalf,
}

impl OwnedReadHalf {
    /// Puts the two halves of one stream back together.
    ///
    /// # Errors
    ///
    /// [`ReuniteError`], holding both halves, when they come from different streams.
    pub fn reunite(self, other: OwnedWriteHalf) -> Result<LocalStream, ReuniteError> {
        self.inner
            .reunite(other.inner)
            .map(|inner| LocalStream { inner })
            .map_err(|(read, write)| {
                ReuniteError(
                    OwnedReadHalf { inner: read },
                    OwnedWriteHalf { inner: write },
                )
            })
    }

    /// As [`LocalStream::peer_credentials`].
    ///
    /// # Errors
    ///
    /// As [`LocalStream::peer_credentials`].
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.inner.peer_credentials()
    }
}

impl OwnedWriteHalf {
    /// Puts the two halves of one stream back together.
    ///
    /// # Errors
    ///
    /// [`ReuniteError`], holding both halves, when they come from different streams.
    pub fn reunite(self, other: OwnedReadHalf) -> Result<LocalStream, ReuniteError> {
        other.reunite(self)
    }

    /// As [`LocalStream::peer_credentials`].
    ///
    /// # Errors
    ///
    /// As [`LocalStream::peer_credentials`].
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.inner.peer_credentials()
    }
}

/// The error of [`OwnedReadHalf::reunite`]: the halves came from different streams. Both are
/// given back.
#[derive(Debug)]
pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

impl fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tried to reunite halves that are not from the same stream")
    }
}

impl Error for ReuniteError {}

/// How to connect: the deadline, the retry backoff, and whether to wait for a server that is
/// not there yet. The async twin of [`crate::ConnectOptions`], with the same policy: every
/// connect ends by its deadline; a busy server (full backlog, all pipe instances busy) is
/// retried with capped exponential backoff and jitter, waiting with `tokio::time::sleep` so no
/// runtime thread is ever blocked.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use localsock::{tokio::ConnectOptions, Name};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let stream = ConnectOptions::new()
///     .timeout(Duration::from_secs(2))
///     .wait_for_server(true)
///     .connect(&Name::new("example-svc")?)
///     .await?;
/// println!("server pid: {:?}", stream.peer_credentials()?.pid());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    options: crate::ConnectOptions,
}

impl ConnectOptions {
    /// The defaults of [`crate::ConnectOptions::new`].
    pub fn new() -> ConnectOptions {
        ConnectOptions {
            options: crate::ConnectOptions::new(),
        }
    }

    /// Bounds the whole connect, retries included. `Duration::ZERO` means one attempt.
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.options.timeout(timeout);
        self
    }

    /// Also retry, inside the same deadline, when there is no server yet (`NotFound`) or only
    /// a stale socket file (`ConnectionRefused`).
    pub fn wait_for_server(&mut self, wait: bool) -> &mut Self {
        self.options.wait_for_server(wait);
        self
    }

    /// The retry backoff: the first pause, doubled after each attempt up to `max`, each pause
    /// randomly shortened by up to half.
    pub fn backoff(&mut self, initial: Duration, max: Duration) -> &mut Self {
        self.options.backoff(initial, max);
        self
    }

    /// Who the server must be, checked before the stream is returned: as
    /// [`crate::ConnectOptions::server_identity`] (short names default to
    /// [`ServerIdentity::CurrentUserOrAdmin`](crate::ServerIdentity::CurrentUserOrAdmin)).
    pub fn server_identity(&mut self, identity: crate::ServerIdentity) -> &mut Self {
        self.options.server_identity(identity);
        self
    }

    /// Connects to `name`.
    ///
    /// Corresponds to `socket(2)`+`connect(2)` on a non-blocking socket on Unix, `CreateFileW`
    /// on Windows; each retry waits with `tokio::time::sleep`.
    ///
    /// # Errors
    ///
    /// As [`crate::ConnectOptions::connect`]:
    /// - `NotFound`: no socket file or pipe at the name.
    /// - `ConnectionRefused`: a socket file with no server behind it (stale).
    /// - `PermissionDenied`: the socket or pipe does not let this user in, or the server is not
    ///   the one [`server_identity`](Self::server_identity) requires.
    /// - `TimedOut`: the server stayed busy (or absent, with `wait_for_server`) until the
    ///   deadline; the message gives the attempts, the time and the last OS error.
    /// - `InvalidInput`: the name's kind does not exist on this platform.
    ///
    /// # Panics
    ///
    /// When polled outside a tokio runtime, or in one without the I/O and time drivers.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the connect at once: each attempt is a single non-blocking
    /// call, and a stream is created only when the attempt that makes it succeeds.
    pub async fn connect(&self, name: &Name) -> io::Result<LocalStream> {
        self.connect_using(
            name,
            |options| imp::Stream::connect_once(name, options),
            imp::Stream::server_user,
        )
        .await
        .map(|inner| LocalStream { inner })
    }

    /// The bounded connect loop around one `attempt`, for byte and message streams alike; each
    /// stream made is checked against the required server identity with `server_user`.
    pub(super) async fn connect_using<T>(
        &self,
        name: &Name,
        mut attempt: impl FnMut(&crate::ConnectOptions) -> Result<T, ConnectFailure>,
        server_user: impl Fn(&T) -> io::Result<crate::sys::ServerUser>,
    ) -> io::Result<T> {
        let mut retry = Retry::new(&self.options, name);
        let required = self.options.required_identity(name);
        loop {
            match attempt(&self.options) {
                Ok(inner) => {
                    crate::identity::check(&required, name, || server_user(&inner))?;
                    return Ok(inner);
                }
                Err(failure) => {
                    let wait = retry.failed(failure)?;
                    tokio::time::sleep(wait.nap).await;
                }
            }
        }
    }
}

impl From<crate::ConnectOptions> for ConnectOptions {
    fn from(options: crate::ConnectOptions) -> ConnectOptions {
        ConnectOptions { options }
    }
}

impl From<ConnectOptions> for crate::ConnectOptions {
    fn from(options: ConnectOptions) -> crate::ConnectOptions {
        options.options
    }
}
