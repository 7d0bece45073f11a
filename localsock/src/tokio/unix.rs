//! The async backend on Unix: tokio's own `UnixStream` / `UnixListener`.
//!
//! Connecting and binding reuse the blocking backend (one non-blocking `connect(2)` attempt;
//! the secure bind with its stale-file reclaim), and the descriptors are then handed to tokio.
//! Writes go through the backend's `send` so that a closed peer is `BrokenPipe`, never
//! `SIGPIPE`, exactly as with the blocking stream.

use std::fmt;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{unix, UnixListener, UnixStream};

use crate::error::{self, Op};
use crate::sys::{self, ConnectFailure, Kind};
use crate::{ConnectOptions, ListenerOptions, Name, PeerCredentials};

/// A connected stream registered with tokio's reactor.
pub(crate) struct Stream {
    io: UnixStream,
}

impl Stream {
    /// One connect attempt; never blocks (the socket is non-blocking while connecting).
    pub(crate) fn connect_once(
        name: &Name,
        opts: &ConnectOptions,
    ) -> Result<Stream, ConnectFailure> {
        let stream =
            sys::Stream::connect_nonblocking(name.connect_addr()?, opts.connect_spec(Kind::Bytes))?;
        let std = std::os::unix::net::UnixStream::from(OwnedFd::from(stream));
        Ok(Stream {
            io: UnixStream::from_std(std).map_err(ConnectFailure::Fatal)?,
        })
    }

    /// Registers a blocking-backend stream with the current runtime.
    pub(crate) fn from_sys(stream: sys::Stream) -> io::Result<Stream> {
        let std = std::os::unix::net::UnixStream::from(OwnedFd::from(stream));
        std.set_nonblocking(true)?;
        Ok(Stream {
            io: UnixStream::from_std(std)?,
        })
    }

    /// Deregisters the stream and makes it blocking again.
    pub(crate) fn into_sys(self) -> io::Result<sys::Stream> {
        let std = self.io.into_std()?;
        std.set_nonblocking(false)?;
        Ok(sys::Stream::from(OwnedFd::from(std)))
    }

    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        sys::peer_credentials(self.io.as_fd()).map(PeerCredentials::from)
    }

    /// Who runs the server (a client stream's peer), for the server-identity check.
    pub(crate) fn server_user(&self) -> io::Result<crate::sys::ServerUser> {
        sys::server_user(self.io.as_fd())
    }

    pub(crate) fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        let (read, write) = self.io.split();
        (ReadHalf(read), WriteHalf(write))
    }

    pub(crate) fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let (read, write) = self.io.into_split();
        (OwnedReadHalf(read), OwnedWriteHalf(write))
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }

    pub(crate) fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}

/// Writes `buf` when the socket is writable, with the backend's `send` (no `SIGPIPE`).
fn poll_send(io: &UnixStream, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
    loop {
        ready!(io.poll_write_ready(cx))?;
        match io.try_io(Interest::WRITABLE, || sys::send(io.as_fd(), buf)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return Poll::Ready(other),
        }
    }
}

fn poll_send_vectored(
    io: &UnixStream,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    loop {
        ready!(io.poll_write_ready(cx))?;
        match io.try_io(Interest::WRITABLE, || sys::send_vectored(io.as_fd(), bufs)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return Poll::Ready(other),
        }
    }
}

/// A read that failed with `ECONNRESET` is end-of-file (nothing read): Linux reports it once
/// when the peer closed without reading everything we sent, and a vanished peer reads as EOF,
/// as with the blocking stream.
#[inline]
fn eof_if_reset(read: Poll<io::Result<()>>) -> Poll<io::Result<()>> {
    match read {
        Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => Poll::Ready(Ok(())),
        other => other,
    }
}

/// For the split halves (tuple structs around tokio's halves): `read` implements `AsyncRead`
/// by delegation to tokio, `write` implements `AsyncWrite` through [`poll_send`] on the
/// half's `UnixStream`.
macro_rules! async_io_impls {
    ($ty:ty, read) => {
        impl AsyncRead for $ty {
            #[inline]
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                eof_if_reset(Pin::new(&mut self.0).poll_read(cx, buf))
            }
        }
    };
    ($ty:ty, write) => {
        impl AsyncWrite for $ty {
            #[inline]
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                poll_send(self.0.as_ref(), cx, buf)
            }
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                poll_send_vectored(self.0.as_ref(), cx, bufs)
            }
            fn is_write_vectored(&self) -> bool {
                true
            }
            #[inline]
            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.0).poll_shutdown(cx)
            }
        }
    };
}

impl AsyncRead for Stream {
    #[inline]
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        eof_if_reset(Pin::new(&mut self.io).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_send(&self.io, cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        poll_send_vectored(&self.io, cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    #[inline]
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStream")
            .field("fd", &self.io.as_raw_fd())
            .finish()
    }
}

/// The read half of a borrowed split.
pub(crate) struct ReadHalf<'a>(unix::ReadHalf<'a>);
/// The write half of a borrowed split.
pub(crate) struct WriteHalf<'a>(unix::WriteHalf<'a>);
/// The read half of an owned split.
pub(crate) struct OwnedReadHalf(unix::OwnedReadHalf);
/// The write half of an owned split; dropping it shuts down the write direction.
pub(crate) struct OwnedWriteHalf(unix::OwnedWriteHalf);

async_io_impls!(ReadHalf<'_>, read);
async_io_impls!(WriteHalf<'_>, write);
async_io_impls!(OwnedReadHalf, read);
async_io_impls!(OwnedWriteHalf, write);

impl OwnedReadHalf {
    /// Puts the halves back together; gives them back if they are not from the same stream.
    pub(crate) fn reunite(
        self,
        other: OwnedWriteHalf,
    ) -> Result<Stream, (OwnedReadHalf, OwnedWriteHalf)> {
        self.0
            .reunite(other.0)
            .map(|io| Stream { io })
            .map_err(|e| (OwnedReadHalf(e.0), OwnedWriteHalf(e.1)))
    }

    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        sys::peer_credentials(self.0.as_ref().as_fd()).map(PeerCredentials::from)
    }
}

impl OwnedWriteHalf {
    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        sys::peer_credentials(self.0.as_ref().as_fd()).map(PeerCredentials::from)
    }
}

macro_rules! debug_half {
    ($($ty:ty),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("fd", &self.0.as_ref().as_raw_fd())
                    .finish()
            }
        }
    )*};
}

debug_half!(ReadHalf<'_>, WriteHalf<'_>, OwnedReadHalf, OwnedWriteHalf);

/// A listening socket registered with tokio's reactor, plus the guard that removes the socket
/// file this listener created.
pub(crate) struct Listener {
    /// Declared first so it drops first: the file is unlinked while the socket still listens
    /// (see the blocking backend).
    file: sys::SocketFile,
    io: UnixListener,
}

impl Listener {
    /// Binds with the blocking backend (secure mode, stale-file reclaim, unlink on drop) and
    /// registers the socket with the current runtime.
    pub(crate) fn bind(name: &Name, opts: &ListenerOptions, kind: Kind) -> io::Result<Listener> {
        Listener::from_sys(opts.bind_kind(name, kind)?.into_inner())
            .map_err(|e| error::context(e, Op::Bind, name))
    }

    pub(crate) fn from_sys(listener: sys::Listener) -> io::Result<Listener> {
        let (fd, file) = listener.into_parts();
        let std = std::os::unix::net::UnixListener::from(fd);
        std.set_nonblocking(true)?;
        Ok(Listener {
            file,
            io: UnixListener::from_std(std)?,
        })
    }

    pub(crate) fn into_sys(self) -> io::Result<sys::Listener> {
        let std = self.io.into_std()?;
        std.set_nonblocking(false)?;
        Ok(sys::Listener::from_parts(OwnedFd::from(std), self.file))
    }

    /// Waits for one connection (one that already left is returned too: its data, then EOF).
    /// Cancel safe, as
    /// tokio's `poll_accept` it is built on.
    pub(crate) async fn accept(&self) -> io::Result<Stream> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Stream>> {
        loop {
            match ready!(self.io.poll_accept(cx)) {
                Ok((io, _addr)) => {
                    // Apple platforms have no MSG_NOSIGNAL: the socket itself must not raise
                    // SIGPIPE (a no-op elsewhere), as for the blocking listener's streams.
                    sys::set_nosigpipe(io.as_fd())?;
                    return Poll::Ready(Ok(Stream { io }));
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    pub(crate) fn peer_uid_matches(stream: &Stream) -> bool {
        sys::peer_uid_matches_fd(stream.io.as_fd()).unwrap_or(false)
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalListener")
            .field("fd", &self.io.as_raw_fd())
            .field("file", &self.file)
            .finish()
    }
}

/// A connected message stream registered with tokio's reactor. It sits in a tokio
/// `UnixStream` only for the reactor registration (readiness and `try_io`): every send and
/// receive is the blocking backend's message function, which moves a whole message in one
/// non-blocking call; tokio's byte I/O is never used on it.
pub(crate) struct MessageStream {
    io: UnixStream,
}

impl MessageStream {
    /// One connect attempt; never blocks.
    pub(crate) fn connect_once(
        name: &Name,
        opts: &ConnectOptions,
    ) -> Result<MessageStream, ConnectFailure> {
        let stream = sys::Stream::connect_nonblocking(
            name.connect_addr()?,
            opts.connect_spec(Kind::Messages),
        )?;
        let std = std::os::unix::net::UnixStream::from(OwnedFd::from(stream));
        Ok(MessageStream {
            io: UnixStream::from_std(std).map_err(ConnectFailure::Fatal)?,
        })
    }

    /// Takes over an accepted stream of the message kind (from the shared async listener).
    pub(crate) fn from_stream(stream: Stream) -> io::Result<MessageStream> {
        Ok(MessageStream { io: stream.io })
    }

    pub(crate) async fn send(&self, bytes: &[u8], handles: &[BorrowedFd<'_>]) -> io::Result<()> {
        loop {
            self.io.writable().await?;
            match self.io.try_io(Interest::WRITABLE, || {
                sys::message::send_fd(self.io.as_fd(), bytes, handles)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    pub(crate) async fn recv(
        &self,
        buf: &mut [u8],
        handles: &mut Vec<OwnedFd>,
        max_handles: usize,
        check_fit: bool,
    ) -> io::Result<Option<usize>> {
        loop {
            self.io.readable().await?;
            match self.io.try_io(Interest::READABLE, || {
                sys::message::recv_fd(self.io.as_fd(), buf, handles, max_handles, check_fit)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    pub(crate) async fn peek_len(&self) -> io::Result<Option<usize>> {
        loop {
            self.io.readable().await?;
            match self.io.try_io(Interest::READABLE, || {
                sys::message::peek_len_fd(self.io.as_fd())
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        sys::peer_credentials(self.io.as_fd()).map(PeerCredentials::from)
    }

    pub(crate) fn server_user(&self) -> io::Result<crate::sys::ServerUser> {
        sys::server_user(self.io.as_fd())
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl fmt::Debug for MessageStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageStream")
            .field("fd", &self.io.as_raw_fd())
            .finish()
    }
}
