//! The async backend on Windows: tokio's own `named_pipe` server and client.
//!
//! The listener keeps one pipe instance plus the spares of
//! `os::windows::ListenerOptionsExt::spare_instances` waiting at all times, and creates the
//! replacement of an instance *before* handing the connected one out, so the name is never
//! free (no squatting window, no spurious `NotFound`) and clients rarely see `ERROR_PIPE_BUSY`.
//! Instances are created with the blocking listener's security descriptor (`sys::async_pipe`).
//! A connect is one `CreateFileW` per attempt, made by the blocking backend (`ERROR_PIPE_BUSY`
//! is retried by the portable backoff loop with `tokio::time::sleep`, never a blocking
//! `WaitNamedPipeW`).

use std::fmt;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, RawHandle};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::windows::named_pipe::{NamedPipeClient, NamedPipeServer};
use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_BROKEN_PIPE, ERROR_NO_DATA, ERROR_PIPE_BUSY,
    ERROR_PIPE_NOT_CONNECTED,
};

use crate::error::{self, Op};
use crate::os::windows::MAX_SPARE_INSTANCES;
use crate::sys::async_pipe::{self, PipeSecurity};
use crate::sys::ConnectFailure;
use crate::{ConnectOptions, ListenerOptions, Name, PeerCredentials};

/// One end of a connected pipe.
enum Pipe {
    Server(NamedPipeServer),
    Client(NamedPipeClient),
}

impl Pipe {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Pipe::Server(pipe) => pipe.poll_read_ready(cx),
            Pipe::Client(pipe) => pipe.poll_read_ready(cx),
        }
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Pipe::Server(pipe) => pipe.try_read(buf),
            Pipe::Client(pipe) => pipe.try_read(buf),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Pipe::Server(pipe) => pipe.poll_write_ready(cx),
            Pipe::Client(pipe) => pipe.poll_write_ready(cx),
        }
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Pipe::Server(pipe) => pipe.try_write(buf),
            Pipe::Client(pipe) => pipe.try_write(buf),
        }
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Pipe::Server(pipe) => pipe.try_write_vectored(bufs),
            Pipe::Client(pipe) => pipe.try_write_vectored(bufs),
        }
    }

    fn as_handle(&self) -> BorrowedHandle<'_> {
        match self {
            Pipe::Server(pipe) => pipe.as_handle(),
            Pipe::Client(pipe) => pipe.as_handle(),
        }
    }

    fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        async_pipe::peer_credentials(self.as_handle(), matches!(self, Pipe::Server(_)))
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_read_ready(cx))?;
            match self.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                // A peer that closed its end is end-of-file, as on Unix.
                Err(e) if is_disconnect(&e) => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.poll_write_ready(cx))?;
            match self.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if is_disconnect(&e) => return Poll::Ready(Err(broken_pipe(e))),
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.poll_write_ready(cx))?;
            match self.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if is_disconnect(&e) => return Poll::Ready(Err(broken_pipe(e))),
                other => return Poll::Ready(other),
            }
        }
    }
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(|code| code as u32),
        Some(ERROR_BROKEN_PIPE) | Some(ERROR_PIPE_NOT_CONNECTED) | Some(ERROR_NO_DATA)
    )
}

fn broken_pipe(e: io::Error) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, e)
}

fn pipe_name(name: &Name) -> io::Result<&str> {
    name.pipe_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a Unix socket name cannot be used on Windows",
        )
    })
}

/// A connected pipe end registered with tokio's reactor.
pub(crate) struct Stream {
    pipe: Arc<Pipe>,
}

impl Stream {
    /// One attempt of the blocking backend (`CreateFileW` with its access rights and security
    /// QoS; `ERROR_PIPE_BUSY` is `Busy`, a missing pipe `NoServer`), adopted by tokio.
    pub(crate) fn connect_once(
        name: &Name,
        opts: &ConnectOptions,
    ) -> Result<Stream, ConnectFailure> {
        async_pipe::connect_client(name, opts).map(|client| Stream::new(Pipe::Client(client)))
    }

    fn new(pipe: Pipe) -> Stream {
        Stream {
            pipe: Arc::new(pipe),
        }
    }

    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.pipe.peer_credentials()
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
pub(crate) struct ReadHalf<'a>(&'a Pipe);
/// The write half of a borrowed split.
pub(crate) struct WriteHalf<'a>(&'a Pipe);
/// The read half of an owned split.
pub(crate) struct OwnedReadHalf(Arc<Pipe>);
/// The write half of an owned split.
pub(crate) struct OwnedWriteHalf(Arc<Pipe>);

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
            /// Named pipes have no half-close: there is nothing to shut down.
            fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
        }
    };
}

impl Stream {
    fn pipe_ref(&self) -> &Pipe {
        &self.pipe
    }
}
impl ReadHalf<'_> {
    fn pipe_ref(&self) -> &Pipe {
        self.0
    }
}
impl WriteHalf<'_> {
    fn pipe_ref(&self) -> &Pipe {
        self.0
    }
}
impl OwnedReadHalf {
    fn pipe_ref(&self) -> &Pipe {
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
    fn pipe_ref(&self) -> &Pipe {
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

/// A pipe instance waiting for a client: the future of its `ConnectNamedPipe`. It lives in
/// the listener, not in an `accept` call, so an `accept` that is cancelled loses nothing: the
/// next call polls the same futures.
type Waiting = Pin<Box<dyn Future<Output = (NamedPipeServer, io::Result<()>)> + Send>>;

fn wait_for_client(server: NamedPipeServer) -> Waiting {
    Box::pin(async move {
        let result = server.connect().await;
        (server, result)
    })
}

/// The pipe instances of one name, waiting for clients.
pub(crate) struct Listener {
    pipe: String,
    security: PipeSecurity,
    waiting: tokio::sync::Mutex<Vec<Option<Waiting>>>,
}

impl Listener {
    /// Creates the first instance with `FILE_FLAG_FIRST_PIPE_INSTANCE` (fails if anyone has
    /// the name already) and the spares, all with the listener's security descriptor.
    pub(crate) fn bind(name: &Name, opts: &ListenerOptions) -> io::Result<Listener> {
        Listener::create(name, opts).map_err(|e| error::context(e, Op::Bind, name))
    }

    fn create(name: &Name, opts: &ListenerOptions) -> io::Result<Listener> {
        let pipe = pipe_name(name)?.to_owned();
        let security = PipeSecurity::new(opts)?;
        let spares = opts.windows.spare_instances.min(MAX_SPARE_INSTANCES) as usize;
        async_pipe::check_free(&pipe)?;
        let first = async_pipe::create_server(&pipe, true, &security).map_err(|e| {
            match e.raw_os_error().map(|code| code as u32) {
                // Windows says ERROR_ACCESS_DENIED when the name exists; Wine ERROR_PIPE_BUSY.
                Some(ERROR_ACCESS_DENIED) | Some(ERROR_PIPE_BUSY) => {
                    io::Error::new(io::ErrorKind::AddrInUse, e)
                }
                _ => e,
            }
        })?;
        let mut waiting = vec![Some(wait_for_client(first))];
        for _ in 0..spares {
            let spare = async_pipe::create_server(&pipe, false, &security)?;
            waiting.push(Some(wait_for_client(spare)));
        }
        Ok(Listener {
            pipe,
            security,
            waiting: tokio::sync::Mutex::new(waiting),
        })
    }

    /// Waits for a client on any instance. A client that connected and left before the accept
    /// completed is returned too (mio reports `ERROR_NO_DATA` as connected): its data, then EOF.
    pub(crate) async fn accept(&self) -> io::Result<Stream> {
        let mut waiting = self.waiting.lock().await;
        loop {
            self.refill(&mut waiting)?;
            let (index, server, result) = poll_fn(|cx| {
                for (index, slot) in waiting.iter_mut().enumerate() {
                    if let Some(future) = slot {
                        if let Poll::Ready((server, result)) = future.as_mut().poll(cx) {
                            return Poll::Ready((index, server, result));
                        }
                    }
                }
                Poll::Pending
            })
            .await;
            // No await from here on: the finished future leaves its slot, and its replacement
            // is created before the connected instance is handed out.
            waiting[index] = None;
            let refilled = self.refill(&mut waiting);
            match result {
                Ok(()) => return Ok(Stream::new(Pipe::Server(server))),
                Err(e) if e.raw_os_error() == Some(ERROR_NO_DATA as i32) => {
                    refilled?;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates instances for the empty slots. An error only when no instance is left at all.
    fn refill(&self, waiting: &mut [Option<Waiting>]) -> io::Result<()> {
        let mut last_error = None;
        for slot in waiting.iter_mut().filter(|slot| slot.is_none()) {
            match async_pipe::create_server(&self.pipe, false, &self.security) {
                Ok(server) => *slot = Some(wait_for_client(server)),
                Err(e) => last_error = Some(e),
            }
        }
        match last_error {
            Some(e) if waiting.iter().all(Option::is_none) => Err(e),
            _ => Ok(()),
        }
    }

    pub(crate) fn peer_uid_matches(stream: &Stream) -> bool {
        async_pipe::peer_is_same_user(stream.as_handle())
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalListener")
            .field("pipe", &self.pipe)
            .finish()
    }
}
