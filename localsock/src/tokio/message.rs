//! The async [`MessageListener`] and [`MessageStream`].

use std::fmt;
use std::fs::File;
use std::io;

use super::{imp, ConnectOptions, LocalListener};
use crate::sys::Kind;
use crate::{
    BorrowedOsHandle, ListenerOptions, Message, Name, OwnedOsHandle, PeerCredentials, MAX_HANDLES,
    MAX_MESSAGE_LEN,
};

/// A server endpoint for tokio that accepts [`MessageStream`]s. The async twin of
/// [`crate::MessageListener`]: an async [`LocalListener`] of the message kind, with the same
/// names, options and guarantees.
///
/// # Examples
///
/// ```no_run
/// use localsock::{tokio::MessageListener, Name};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = MessageListener::bind(&Name::new("example-files")?)?;
/// loop {
///     let stream = listener.accept().await?;
///     tokio::spawn(async move {
///         while let Some(message) = stream.recv_message().await? {
///             println!("{} bytes, {} handles", message.bytes.len(), message.handles.len());
///         }
///         std::io::Result::Ok(())
///     });
/// }
/// # }
/// ```
pub struct MessageListener {
    inner: LocalListener,
}

impl MessageListener {
    /// Creates a listener at `name` with the default [`ListenerOptions`].
    ///
    /// # Errors
    ///
    /// As [`crate::MessageListener::bind`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or in one without the I/O driver.
    pub fn bind(name: &Name) -> io::Result<MessageListener> {
        MessageListener::bind_with(name, &ListenerOptions::new())
    }

    /// Creates a listener at `name` with `options` (`nonblocking` is ignored: the listener is
    /// async).
    ///
    /// # Errors
    ///
    /// As [`crate::MessageListener::bind_with`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or in one without the I/O driver.
    pub fn bind_with(name: &Name, options: &ListenerOptions) -> io::Result<MessageListener> {
        Ok(MessageListener {
            inner: LocalListener::bind_kind(name, options, Kind::Messages)?,
        })
    }

    /// Waits for a client and returns the connected stream. As [`LocalListener::accept`].
    ///
    /// # Errors
    ///
    /// As [`LocalListener::accept`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`LocalListener::accept`].
    pub async fn accept(&self) -> io::Result<MessageStream> {
        #[cfg(unix)]
        let inner = imp::MessageStream::from_stream(self.inner.accept().await?.inner)?;
        #[cfg(windows)]
        let inner = self.inner.accept_message().await?;
        Ok(MessageStream { inner })
    }

    /// The name this listener was bound to.
    pub fn name(&self) -> &Name {
        self.inner.name()
    }
}

impl fmt::Debug for MessageListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MessageListener").field(&self.inner).finish()
    }
}

/// A connection for tokio that carries whole messages with attached OS handles. The async twin
/// of [`crate::MessageStream`], with the same rules, limits and errors; every method takes
/// `&self`, so one task may receive while another sends (share it in an `Arc`).
///
/// # Examples
///
/// ```no_run
/// use localsock::{tokio::MessageStream, Name};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let stream = MessageStream::connect(&Name::new("example-files")?).await?;
/// let file = std::fs::File::open("Cargo.toml")?;
/// stream.send_with_files(b"Cargo.toml", &[&file]).await?;
/// # Ok(()) }
/// ```
pub struct MessageStream {
    inner: imp::MessageStream,
}

impl MessageStream {
    /// Connects to the message listener at `name` with the default options.
    ///
    /// # Errors
    ///
    /// As [`crate::MessageStream::connect`].
    ///
    /// # Panics
    ///
    /// When polled outside a tokio runtime, or in one without the I/O and time drivers.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the connect: no stream is left behind.
    pub async fn connect(name: &Name) -> io::Result<MessageStream> {
        MessageStream::connect_with(name, &ConnectOptions::new()).await
    }

    /// Connects to the message listener at `name` with `options`.
    ///
    /// # Errors
    ///
    /// As [`crate::MessageStream::connect_with`].
    ///
    /// # Panics
    ///
    /// When polled outside a tokio runtime, or in one without the I/O and time drivers.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the connect: no stream is left behind.
    pub async fn connect_with(name: &Name, options: &ConnectOptions) -> io::Result<MessageStream> {
        options
            .connect_using(
                name,
                |options| imp::MessageStream::connect_once(name, options),
                imp::MessageStream::server_user,
            )
            .await
            .map(|inner| MessageStream { inner })
    }

    /// Sends one message without handles. As [`crate::MessageStream::send`].
    ///
    /// # Errors
    ///
    /// As [`crate::MessageStream::send`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is sent whole or not at all. (On Windows the write runs on a
    /// blocking thread, since it may wait for the peer to read: once it started, dropping the
    /// future does not stop it, and the message is still written whole, in order.)
    pub async fn send(&self, bytes: &[u8]) -> io::Result<()> {
        self.inner.send(bytes, &[]).await
    }

    /// Sends one message with `handles` attached. As
    /// [`crate::MessageStream::send_with_handles`].
    ///
    /// # Errors
    ///
    /// As [`crate::MessageStream::send_with_handles`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is sent whole or not at all. (On Windows the write runs on a
    /// blocking thread, since it may wait for the peer to read: once it started, dropping the
    /// future does not stop it, and the message is still written whole, in order.)
    pub async fn send_with_handles(
        &self,
        bytes: &[u8],
        handles: &[BorrowedOsHandle<'_>],
    ) -> io::Result<()> {
        self.inner.send(bytes, handles).await
    }

    /// Sends one message with the open `files` attached. As
    /// [`crate::MessageStream::send_with_files`].
    ///
    /// # Errors
    ///
    /// As [`crate::MessageStream::send_with_handles`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is sent whole or not at all. (On Windows the write runs on a
    /// blocking thread, since it may wait for the peer to read: once it started, dropping the
    /// future does not stop it, and the message is still written whole, in order.)
    pub async fn send_with_files(&self, bytes: &[u8], files: &[&File]) -> io::Result<()> {
        let handles = crate::message::borrow_files(files);
        self.inner.send(bytes, &handles).await
    }

    /// Receives one message without handles. As [`crate::MessageStream::recv`].
    ///
    /// # Errors
    ///
    /// As [`crate::MessageStream::recv`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken whole in one call, or left queued.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut none = Vec::new();
        self.inner.recv(buf, &mut none, 0, true).await
    }

    /// Receives one message and up to `max_handles` handles. As
    /// [`crate::MessageStream::recv_with_handles`].
    ///
    /// # Errors
    ///
    /// As [`crate::MessageStream::recv_with_handles`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken whole in one call, or left queued.
    pub async fn recv_with_handles(
        &self,
        buf: &mut [u8],
        handles: &mut Vec<OwnedOsHandle>,
        max_handles: usize,
    ) -> io::Result<Option<usize>> {
        self.inner.recv(buf, handles, max_handles, true).await
    }

    /// Receives one whole message of any valid size. As
    /// [`crate::MessageStream::recv_message`].
    ///
    /// # Errors
    ///
    /// As [`crate::MessageStream::recv_message`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken whole in one call, or left queued.
    pub async fn recv_message(&self) -> io::Result<Option<Message>> {
        let Some(len) = self.inner.peek_len().await? else {
            return Ok(None);
        };
        let mut message = Message {
            bytes: vec![0; len.min(MAX_MESSAGE_LEN)],
            handles: Vec::new(),
        };
        match self
            .inner
            .recv(&mut message.bytes, &mut message.handles, MAX_HANDLES, false)
            .await?
        {
            Some(got) => {
                message.bytes.truncate(got);
                Ok(Some(message))
            }
            None => Ok(None),
        }
    }

    /// The length of the next message, without taking it; `None` at end-of-file.
    ///
    /// # Errors
    ///
    /// The OS error.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is taken.
    pub async fn peek_len(&self) -> io::Result<Option<usize>> {
        self.inner.peek_len().await
    }

    /// Who is on the other end. As [`crate::MessageStream::peer_credentials`].
    ///
    /// # Errors
    ///
    /// The OS error, e.g. when the connection is closed.
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.inner.peer_credentials()
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for MessageStream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsHandle for MessageStream {
    fn as_handle(&self) -> std::os::windows::io::BorrowedHandle<'_> {
        self.inner.as_handle()
    }
}

impl fmt::Debug for MessageStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}
