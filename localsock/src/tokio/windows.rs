//! The async backend on Windows: the blocking backend's listener and client, with tokio's
//! named pipes for the I/O of connected streams.
//!
//! - The listener is `sys::Listener` bound for async use: the same pool of instances (one plus
//!   the spares of `os::windows::ListenerOptionsExt::spare_instances`, the replacement created
//!   before a connected instance is handed out, so the name is never free), the same security
//!   descriptor, `ERROR_NO_DATA` handling and error words as the blocking listener; only the
//!   waiting differs (`poll_accept` wakes the task through a thread-pool wait). A connected
//!   instance is then adopted by tokio (`sys::async_pipe::adopt_server`).
//! - A connect is one `CreateFileW` per attempt, made by the blocking backend
//!   (`ERROR_PIPE_BUSY` is retried by the portable backoff loop with `tokio::time::sleep`,
//!   never a blocking `WaitNamedPipeW`).
//! - `shutdown` is the blocking stream's policy (`sys::HalfClose`); the server end's flush
//!   runs on a thread of its own, and `poll_shutdown` waits for it.

use std::fmt;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, RawHandle};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::windows::named_pipe::{NamedPipeClient, NamedPipeServer};

use crate::error::{self, Op};
use crate::sys::async_pipe;
use crate::sys::Kind;
use crate::sys::{ConnectFailure, HalfClose};
use crate::{ConnectOptions, ListenerOptions, Name, PeerCredentials};

/// The I/O object of a connected pipe end.
enum PipeIo {
    Server(NamedPipeServer),
    Client(NamedPipeClient),
}

/// One end of a connected pipe, shared by a stream's halves.
struct Pipe {
    io: PipeIo,
    /// Which end, and what was shut down: the blocking stream's policy.
    half: HalfClose,
    /// The server end's flush and disconnect of `shutdown(Write)`, run on a thread.
    flush: Mutex<Flush>,
}

enum Flush {
    NotStarted,
    /// The flush thread runs. `abandoned`: no stream or half is left to wait for it.
    Running {
        waker: Option<Waker>,
        thread: Option<std::thread::JoinHandle<()>>,
        abandoned: bool,
    },
    Finished(Option<io::Error>),
}

/// What the streams and their halves hold: the pipe, which the flush thread of a `shutdown`
/// holds too. When the last of them is dropped the flush is cancelled, so that a `shutdown`
/// the caller gave up on (a client that never reads) does not keep the pipe open for good.
struct Users(Arc<Pipe>);

impl std::ops::Deref for Users {
    type Target = Arc<Pipe>;
    fn deref(&self) -> &Arc<Pipe> {
        &self.0
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        self.0.abandon_flush();
    }
}

impl Pipe {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.io {
            PipeIo::Server(pipe) => pipe.poll_read_ready(cx),
            PipeIo::Client(pipe) => pipe.poll_read_ready(cx),
        }
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.io {
            PipeIo::Server(pipe) => pipe.try_read(buf),
            PipeIo::Client(pipe) => pipe.try_read(buf),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.io {
            PipeIo::Server(pipe) => pipe.poll_write_ready(cx),
            PipeIo::Client(pipe) => pipe.poll_write_ready(cx),
        }
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match &self.io {
            PipeIo::Server(pipe) => pipe.try_write(buf),
            PipeIo::Client(pipe) => pipe.try_write(buf),
        }
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.io {
            PipeIo::Server(pipe) => pipe.try_write_vectored(bufs),
            PipeIo::Client(pipe) => pipe.try_write_vectored(bufs),
        }
    }

    fn as_handle(&self) -> BorrowedHandle<'_> {
        match &self.io {
            PipeIo::Server(pipe) => pipe.as_handle(),
            PipeIo::Client(pipe) => pipe.as_handle(),
        }
    }

    fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        async_pipe::peer_credentials(self.as_handle(), self.half.is_server())
            .map(PeerCredentials::from)
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.half.read_is_shut() {
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(self.poll_read_ready(cx))?;
            match self.try_read(buf.initialize_unfilled()) {
                // A 0-byte read into a non-empty buffer is a peer's 0-byte write or EOF: mio
                // hands out both as `Ok(0)` (it maps ERROR_BROKEN_PIPE to `Ok(0)`). The
                // blocking stream reads on after a 0-byte write, so must we. Only EOF answers
                // `Ok(0)` again at once (mio's next read fails at once and keeps failing); after
                // a 0-byte write the next read is in flight (`WouldBlock`) or has data.
                Ok(0) if buf.remaining() > 0 => match self.try_read(buf.initialize_unfilled()) {
                    Ok(n) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) if async_pipe::is_disconnect(&e) => return Poll::Ready(Ok(())),
                    Err(e) => return Poll::Ready(Err(e)),
                },
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                // A peer that closed its end is end-of-file, as on Unix.
                Err(e) if async_pipe::is_disconnect(&e) => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.half.check_write()?;
        if buf.is_empty() {
            // As the blocking stream: a zero-length write would make some readers see a
            // 0-byte read, i.e. EOF.
            return Poll::Ready(Ok(0));
        }
        loop {
            ready!(self.poll_write_ready(cx))?;
            match self.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if async_pipe::is_disconnect(&e) => return Poll::Ready(Err(broken_pipe(e))),
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.half.check_write()?;
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        loop {
            ready!(self.poll_write_ready(cx))?;
            match self.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if async_pipe::is_disconnect(&e) => return Poll::Ready(Err(broken_pipe(e))),
                other => return Poll::Ready(other),
            }
        }
    }

    /// `shutdown(Write)` with the blocking stream's semantics: later writes fail with
    /// `BrokenPipe`; on the server end the client's reads are flushed, then the pipe is
    /// disconnected (the client reads EOF), on a thread of its own while this task waits.
    fn poll_shutdown(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut flush = self.flush.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *flush {
            Flush::NotStarted => {
                if !self.half.mark(Shutdown::Write) {
                    *flush = Flush::Finished(None);
                    return Poll::Ready(Ok(()));
                }
                let pipe = Arc::clone(self);
                let spawned = std::thread::Builder::new()
                    .name("localsock-pipe-flush".into())
                    .spawn(move || {
                        let lock = || pipe.flush.lock().unwrap_or_else(|e| e.into_inner());
                        let abandoned = matches!(
                            &*lock(),
                            Flush::Running {
                                abandoned: true,
                                ..
                            }
                        );
                        let result = if abandoned {
                            Ok(())
                        } else {
                            pipe.half.finish_write(pipe.as_handle(), None)
                        };
                        let mut flush = lock();
                        let waiting = std::mem::replace(&mut *flush, Flush::Finished(result.err()));
                        drop(flush);
                        if let Flush::Running {
                            waker: Some(waker), ..
                        } = waiting
                        {
                            waker.wake();
                        }
                    });
                match spawned {
                    Ok(thread) => {
                        *flush = Flush::Running {
                            waker: Some(cx.waker().clone()),
                            thread: Some(thread),
                            abandoned: false,
                        };
                        Poll::Pending
                    }
                    Err(e) => {
                        *flush = Flush::Finished(None);
                        Poll::Ready(Err(e))
                    }
                }
            }
            Flush::Running { waker, .. } => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Flush::Finished(error) => match error.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Ready(Ok(())),
            },
        }
    }
}

impl Pipe {
    /// The last stream or half is gone: a flush still running has no one to wait for it, and
    /// holds the pipe open only as long as the client reads nothing. Cancel it (its thread is
    /// in `FlushFileBuffers`; the pipe then closes as the thread drops it). The thread may not
    /// be in the call yet: it checks `abandoned` first, and the cancel is tried again until it
    /// lands or the thread is done (bounded, in case the call cannot be cancelled).
    fn abandon_flush(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
        loop {
            let mut flush = self.flush.lock().unwrap_or_else(|e| e.into_inner());
            let Flush::Running {
                thread: Some(thread),
                abandoned,
                ..
            } = &mut *flush
            else {
                return;
            };
            *abandoned = true;
            // The JoinHandle (and so the thread handle) lives while the lock is held: the
            // thread takes the lock to leave `Running`.
            if crate::sys::cancel_blocking_call(thread.as_handle())
                || std::time::Instant::now() > deadline
            {
                return;
            }
            drop(flush);
            std::thread::yield_now();
        }
    }
}

fn broken_pipe(e: io::Error) -> io::Error {
    error::with_cause(io::ErrorKind::BrokenPipe, e.to_string(), e)
}

/// A connected pipe end registered with tokio's reactor.
pub(crate) struct Stream {
    pipe: Arc<Users>,
}

impl Stream {
    /// One attempt of the blocking backend (`CreateFileW` with its access rights and security
    /// QoS; `ERROR_PIPE_BUSY` is `Busy`, a missing pipe `NoServer`), adopted by tokio.
    pub(crate) fn connect_once(
        name: &Name,
        opts: &ConnectOptions,
    ) -> Result<Stream, ConnectFailure> {
        async_pipe::connect_client(name.connect_addr()?, opts.connect_spec(Kind::Bytes))
            .map(|client| Stream::new(PipeIo::Client(client)))
    }

    fn new(io: PipeIo) -> Stream {
        let server = matches!(io, PipeIo::Server(_));
        Stream {
            pipe: Arc::new(Users(Arc::new(Pipe {
                io,
                half: HalfClose::new(server),
                flush: Mutex::new(Flush::NotStarted),
            }))),
        }
    }

    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.pipe.peer_credentials()
    }

    /// Who serves the pipe (a client stream's peer), for the server-identity check.
    pub(crate) fn server_user(&self) -> io::Result<crate::sys::ServerUser> {
        async_pipe::server_user(self.pipe.as_handle())
    }

    pub(crate) fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        (ReadHalf(&self.pipe), WriteHalf(&self.pipe))
    }

    pub(crate) fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        (
            OwnedReadHalf(Arc::clone(&self.pipe)),
            OwnedWriteHalf(self.pipe),
        )
    }

    pub(crate) fn as_handle(&self) -> BorrowedHandle<'_> {
        self.pipe.as_handle()
    }

    pub(crate) fn as_raw_handle(&self) -> RawHandle {
        self.pipe.as_handle().as_raw_handle()
    }
}

/// The read half of a borrowed split.
pub(crate) struct ReadHalf<'a>(&'a Arc<Users>);
/// The write half of a borrowed split.
pub(crate) struct WriteHalf<'a>(&'a Arc<Users>);
/// The read half of an owned split.
pub(crate) struct OwnedReadHalf(Arc<Users>);
/// The write half of an owned split.
pub(crate) struct OwnedWriteHalf(Arc<Users>);

macro_rules! async_io_impls {
    ($ty:ty, read) => {
        impl AsyncRead for $ty {
            #[inline]
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.pipe_ref().poll_read(cx, buf)
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
                self.pipe_ref().poll_write(cx, buf)
            }
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.pipe_ref().poll_write_vectored(cx, bufs)
            }
            fn is_write_vectored(&self) -> bool {
                true
            }
            #[inline]
            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            /// As the blocking stream's `shutdown(Write)` (see `sys::HalfClose`).
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.pipe_ref().poll_shutdown(cx)
            }
        }
    };
}

impl Stream {
    fn pipe_ref(&self) -> &Arc<Pipe> {
        &self.pipe
    }
}
impl ReadHalf<'_> {
    fn pipe_ref(&self) -> &Arc<Pipe> {
        self.0
    }
}
impl WriteHalf<'_> {
    fn pipe_ref(&self) -> &Arc<Pipe> {
        self.0
    }
}
impl OwnedReadHalf {
    fn pipe_ref(&self) -> &Arc<Pipe> {
        &self.0
    }

    /// Puts the halves back together; gives them back if they are not from the same stream.
    pub(crate) fn reunite(
        self,
        other: OwnedWriteHalf,
    ) -> Result<Stream, (OwnedReadHalf, OwnedWriteHalf)> {
        if Arc::ptr_eq(&self.0, &other.0) {
            drop(other);
            Ok(Stream { pipe: self.0 })
        } else {
            Err((self, other))
        }
    }

    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.0.peer_credentials()
    }
}
impl OwnedWriteHalf {
    fn pipe_ref(&self) -> &Arc<Pipe> {
        &self.0
    }

    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.0.peer_credentials()
    }
}

async_io_impls!(Stream, read);
async_io_impls!(Stream, write);
async_io_impls!(ReadHalf<'_>, read);
async_io_impls!(WriteHalf<'_>, write);
async_io_impls!(OwnedReadHalf, read);
async_io_impls!(OwnedWriteHalf, write);

macro_rules! debug_pipe {
    ($($ty:ty),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("handle", &self.pipe_ref().as_handle())
                    .finish()
            }
        }
    )*};
}

debug_pipe!(
    Stream,
    ReadHalf<'_>,
    WriteHalf<'_>,
    OwnedReadHalf,
    OwnedWriteHalf
);

/// The async listener: the blocking backend's pool of pipe instances, waited for with
/// `poll_accept`.
pub(crate) struct Listener {
    inner: crate::sys::Listener,
}

impl Listener {
    /// As the blocking `bind`: the first instance with `FILE_FLAG_FIRST_PIPE_INSTANCE` (fails
    /// if anyone has the name already) and the spares, all with the listener's security
    /// descriptor.
    pub(crate) fn bind(name: &Name, opts: &ListenerOptions, kind: Kind) -> io::Result<Listener> {
        name.bind_addr()
            .and_then(|addr| crate::sys::Listener::bind_async(addr, &opts.bind_spec(kind)))
            .map(|inner| Listener { inner })
            .map_err(|e| error::context(e, Op::Bind, name))
    }

    /// Waits for a client on any instance (the blocking accept's policy: a client that left
    /// before the accept is handed out if it sent something, skipped if not). Cancel safe: a
    /// client is taken from the pool only when this returns it.
    pub(crate) async fn accept(&self) -> io::Result<Stream> {
        let handle = poll_fn(|cx| self.inner.poll_accept(cx)).await?;
        let server = async_pipe::adopt_server(handle)?;
        Ok(Stream::new(PipeIo::Server(server)))
    }

    /// [`accept`](Self::accept) of a message listener: the connected instance stays out of
    /// tokio (see [`MessageStream`]).
    pub(crate) async fn accept_message(&self) -> io::Result<MessageStream> {
        let handle = poll_fn(|cx| self.inner.poll_accept(cx)).await?;
        MessageStream::new(async_pipe::message_server(handle))
    }

    pub(crate) fn peer_uid_matches(stream: &Stream) -> bool {
        async_pipe::peer_is_same_user(stream.as_handle())
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// A connected message pipe end. Not tokio's pipe types: they read ahead and lose where a
/// message ends. It is the blocking backend's stream, read with the blocking message code's
/// "only what is there now" receive (`sys::message::try_recv`: whole messages, the read-ahead
/// slot, the limits and the handle rules), between waits for readiness
/// (`sys::async_pipe::ReadReady`, a zero-byte read that takes nothing, so a dropped `recv`
/// loses nothing). A send gives its handles and builds its pipe message in the caller's task,
/// then writes it on a blocking thread, in order (a write may wait for the peer to read); once
/// handed there, it is written whole even if the caller stops waiting.
pub(crate) struct MessageStream {
    // Dropped first: it cancels its read on the pipe, which `stream` keeps open.
    ready: async_pipe::ReadReady,
    stream: Arc<crate::sys::Stream>,
    writes: Arc<tokio::sync::Mutex<()>>,
}

impl MessageStream {
    fn new(stream: crate::sys::Stream) -> io::Result<MessageStream> {
        Ok(MessageStream {
            ready: async_pipe::ReadReady::new(stream.as_handle())?,
            stream: Arc::new(stream),
            writes: Arc::default(),
        })
    }

    /// One connect attempt of the blocking backend (as [`Stream::connect_once`]).
    pub(crate) fn connect_once(
        name: &Name,
        opts: &ConnectOptions,
    ) -> Result<MessageStream, ConnectFailure> {
        let stream =
            async_pipe::message_client(name.connect_addr()?, opts.connect_spec(Kind::Messages))?;
        MessageStream::new(stream).map_err(ConnectFailure::Fatal)
    }

    pub(crate) fn server_user(&self) -> io::Result<crate::sys::ServerUser> {
        self.stream.server_user()
    }

    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.stream.peer_credentials().map(PeerCredentials::from)
    }

    pub(crate) fn as_handle(&self) -> BorrowedHandle<'_> {
        self.stream.as_handle()
    }

    pub(crate) fn peer_is_same_user(&self) -> bool {
        async_pipe::peer_is_same_user(self.stream.as_handle())
    }

    pub(crate) async fn send(
        &self,
        bytes: &[u8],
        handles: &[BorrowedHandle<'_>],
    ) -> io::Result<()> {
        // In line before the wait: the limits, the handles given to the peer, the message
        // built; a future dropped before the write starts takes the handles back.
        let prepared = crate::sys::message::prepare(&self.stream, bytes, handles)?;
        let turn = Arc::clone(&self.writes).lock_owned().await;
        let stream = Arc::clone(&self.stream);
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            prepared.write(&stream)
        })
        .await
        .map_err(|e| io::Error::other(format!("the write task failed: {e}")))?
    }

    pub(crate) async fn recv(
        &self,
        buf: &mut [u8],
        handles: &mut Vec<std::os::windows::io::OwnedHandle>,
        max_handles: usize,
        _check_fit: bool,
    ) -> io::Result<Option<usize>> {
        self.when_ready(|stream| crate::sys::message::try_recv(stream, buf, handles, max_handles))
            .await
    }

    pub(crate) async fn peek_len(&self) -> io::Result<Option<usize>> {
        self.when_ready(crate::sys::message::try_peek_len).await
    }

    /// Runs `attempt` until it does not block, waiting for readiness in between.
    async fn when_ready<T>(
        &self,
        mut attempt: impl FnMut(&crate::sys::Stream) -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            let notified = self.ready.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match attempt(&self.stream) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            if let async_pipe::Ready::Later = self.ready.arm()? {
                notified.await;
            }
        }
    }
}

impl fmt::Debug for MessageStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageStream")
            .field("handle", &self.stream.as_handle())
            .finish()
    }
}
