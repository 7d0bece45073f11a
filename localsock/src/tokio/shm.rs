//! The shared-memory data path on tokio (features `tokio` and `shm`; Linux, macOS, FreeBSD).

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::BorrowedFd;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::UnixStream;

use super::LocalStream;
use crate::shm::{self as blocking, ShmOptions};

/// A duplicate of a socket the blocking stream owns, registered with the reactor for its
/// readiness only (the same open socket, so the same readiness); nothing is read through it.
fn watch(fd: BorrowedFd<'_>) -> io::Result<UnixStream> {
    let std = std::os::unix::net::UnixStream::from(fd.try_clone_to_owned()?);
    std.set_nonblocking(true)?;
    UnixStream::from_std(std)
}

/// The async twin of [`crate::ShmStream`]: `AsyncRead` and `AsyncWrite` over shared memory
/// (or over the socket, if the negotiation was refused), waking through tokio's reactor.
///
/// It never spins: a read with an empty ring (a write with a full one) registers interest and
/// returns `Pending`; the peer's next write (read) sends a wake-up byte on the socket, which the
/// reactor reports. See the [blocking module](crate::shm) for costs, liveness and the
/// hostile-peer rules, which are the same code.
///
/// # Examples
///
/// ```
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use localsock::tokio::{LocalListener, LocalStream, ShmStream};
/// use localsock::{Name, ShmOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// # let dir = std::env::temp_dir().join(format!("localsock-doc-tokio-shm-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// # let name = Name::path(dir.join("shm.sock"))?;
/// let listener = LocalListener::bind(&name)?;
/// let server = tokio::spawn(async move {
///     let stream = listener.accept().await?;
///     let mut stream = ShmStream::answer(&ShmOptions::new(), stream).await?;
///     let mut buf = [0; 4];
///     stream.read_exact(&mut buf).await?;
///     stream.write_all(&buf).await?;
///     std::io::Result::Ok(())
/// });
/// let client = LocalStream::connect(&name).await?;
/// let mut client = ShmStream::offer(&ShmOptions::new(), client).await?;
/// assert!(client.is_shared_memory());
/// client.write_all(b"ping").await?;
/// let mut reply = [0; 4];
/// client.read_exact(&mut reply).await?;
/// assert_eq!(&reply, b"ping");
/// # server.await.unwrap()?;
/// # Ok(()) }
/// ```
pub struct ShmStream {
    inner: Inner,
}

enum Inner {
    Socket(LocalStream),
    Shared {
        /// Readable when a read is worth retrying (the connection's socket).
        read_ready: UnixStream,
        /// Readable when a write is worth retrying (the writers' wake-up socket).
        write_ready: UnixStream,
        shm: blocking::ShmStream,
    },
}

impl fmt::Debug for ShmStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Socket(s) => f.debug_struct("ShmStream").field("socket", s).finish(),
            Inner::Shared { shm, .. } => f.debug_struct("ShmStream").field("shm", shm).finish(),
        }
    }
}

/// Runs `op` until it does not return `WouldBlock`, waiting for `ready` in between.
async fn until_done<T>(ready: &UnixStream, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            done => return done,
        }
        ready.readable().await?;
        // A `WouldBlock` inside `try_io` clears the readiness it consumed.
        match ready.try_io(Interest::READABLE, &mut op) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            done => return done,
        }
    }
}

impl ShmStream {
    /// Offers shared memory to the peer (which calls [`answer`](Self::answer), or the blocking
    /// [`ShmOptions::answer`]). As [`ShmOptions::offer`], waiting on the reactor.
    ///
    /// # Errors
    ///
    /// As [`ShmOptions::offer`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with the I/O driver.
    pub async fn offer(options: &ShmOptions, stream: LocalStream) -> io::Result<ShmStream> {
        let std = stream.into_std()?;
        std.set_nonblocking(true)?;
        let pending = options.send_offer(&std)?;
        let accepted = {
            let ready = watch(std.inner.as_fd())?;
            until_done(&ready, || blocking::read_answer(&std)).await?
        };
        ShmStream::from_blocking(pending.finish(std, accepted))
    }

    /// Answers the peer's offer. As [`ShmOptions::answer`], waiting on the reactor.
    ///
    /// # Errors
    ///
    /// As [`ShmOptions::answer`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with the I/O driver.
    pub async fn answer(options: &ShmOptions, stream: LocalStream) -> io::Result<ShmStream> {
        let std = stream.into_std()?;
        std.set_nonblocking(true)?;
        let offer = {
            let ready = watch(std.inner.as_fd())?;
            until_done(&ready, || blocking::recv_offer(&std)).await?
        };
        ShmStream::from_blocking(options.reply(std, offer)?)
    }

    fn from_blocking(shm: blocking::ShmStream) -> io::Result<ShmStream> {
        match shm.into_socket() {
            Ok(socket) => Ok(ShmStream {
                inner: Inner::Socket(LocalStream::from_std(socket)?),
            }),
            Err(shm) => {
                shm.set_nonblocking(true)?;
                let (read_fd, write_fd) = shm.wake_fds().expect("on shared memory");
                let read_ready = watch(read_fd)?;
                let write_ready = watch(write_fd)?;
                Ok(ShmStream {
                    inner: Inner::Shared {
                        read_ready,
                        write_ready,
                        shm,
                    },
                })
            }
        }
    }

    /// Whether the bytes travel through shared memory (`false`: the negotiation was refused).
    pub fn is_shared_memory(&self) -> bool {
        matches!(self.inner, Inner::Shared { .. })
    }
}

/// Polls `op` to completion: tries it, and after `WouldBlock` (which has asked the peer for a
/// wake-up) waits for `ready`; a readiness that turns out stale is cleared and waited for again.
fn poll_op<T>(
    ready: &UnixStream,
    cx: &mut Context<'_>,
    mut op: impl FnMut() -> io::Result<T>,
) -> Poll<io::Result<T>> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            done => return Poll::Ready(done),
        }
        ready!(ready.poll_read_ready(cx))?;
        // A `WouldBlock` inside `try_io` clears the readiness it consumed.
        match ready.try_io(Interest::READABLE, &mut op) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            done => return Poll::Ready(done),
        }
    }
}

impl AsyncRead for ShmStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Socket(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Shared {
                read_ready, shm, ..
            } => {
                let n = ready!(poll_op(read_ready, cx, || {
                    io::Read::read(&mut &*shm, buf.initialize_unfilled())
                }))?;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for ShmStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Socket(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Shared {
                write_ready, shm, ..
            } => poll_op(write_ready, cx, || io::Write::write(&mut &*shm, buf)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Socket(s) => Pin::new(s).poll_flush(cx),
            Inner::Shared { .. } => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Socket(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Shared { shm, .. } => Poll::Ready(shm.shutdown(Shutdown::Write)),
        }
    }
}
