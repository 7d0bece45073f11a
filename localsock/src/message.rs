//! [`MessageListener`], [`MessageStream`] and [`Message`]: whole messages that carry open files,
//! sockets, pipes and other OS handles between processes.
//!
//! A message connection is a [`LocalListener`]/[`LocalStream`] of another kind: the same names,
//! [`ListenerOptions`] (access modes, stale-file reclaim, same-user check), bounded connects
//! ([`ConnectOptions`]) and [`PeerCredentials`], from the same code. Only the transport differs:
//! `SOCK_SEQPACKET` instead of `SOCK_STREAM` on Unix (frames on a `SOCK_STREAM` on Apple
//! platforms), a message-mode pipe instead of a byte-mode one on Windows.

use std::fmt;
use std::fs::File;
use std::io;
use std::time::Duration;

use crate::sys::{self, Kind};
use crate::{ConnectOptions, ListenerOptions, LocalListener, LocalStream, Name, PeerCredentials};

/// The longest message, in bytes (64 KiB), that a [`MessageStream`] sends or accepts.
///
/// Sending a longer one is an `InvalidInput` error and sends nothing; a peer that sends a longer
/// one (a program that does not use localsock) has it dropped, its handles closed, and the
/// receiver gets an `InvalidData` error.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// The most handles one message carries: 253, the Linux kernel's limit for one `SCM_RIGHTS`
/// message (`SCM_MAX_FD`), on every platform.
///
/// Sending more is an `InvalidInput` error and sends nothing. A receive accepts at most as many
/// as its caller allows (never more than this); a message with more has all its handles closed.
pub const MAX_HANDLES: usize = 253;

/// An OS handle received with a message: [`OwnedFd`](https://doc.rust-lang.org/std/os/fd/struct.OwnedFd.html) on Unix,
/// [`OwnedHandle`](https://doc.rust-lang.org/std/os/windows/io/struct.OwnedHandle.html) on Windows. Both convert into a
/// [`File`] with `File::from`, and into a socket or a pipe with the matching `From`.
#[cfg(unix)]
pub type OwnedOsHandle = std::os::fd::OwnedFd;
/// An OS handle received with a message: [`OwnedFd`](https://doc.rust-lang.org/std/os/fd/struct.OwnedFd.html) on Unix,
/// [`OwnedHandle`](https://doc.rust-lang.org/std/os/windows/io/struct.OwnedHandle.html) on Windows. Both convert into a
/// [`File`] with `File::from`, and into a socket or a pipe with the matching `From`.
#[cfg(windows)]
pub type OwnedOsHandle = std::os::windows::io::OwnedHandle;

/// An OS handle to attach to a message: [`BorrowedFd`](https://doc.rust-lang.org/std/os/fd/struct.BorrowedFd.html) on Unix
/// (`x.as_fd()`), [`BorrowedHandle`](https://doc.rust-lang.org/std/os/windows/io/struct.BorrowedHandle.html) on Windows
/// (`x.as_handle()`). For files, [`MessageStream::send_with_files`] needs neither.
#[cfg(unix)]
pub type BorrowedOsHandle<'a> = std::os::fd::BorrowedFd<'a>;
/// An OS handle to attach to a message: [`BorrowedFd`](https://doc.rust-lang.org/std/os/fd/struct.BorrowedFd.html) on Unix
/// (`x.as_fd()`), [`BorrowedHandle`](https://doc.rust-lang.org/std/os/windows/io/struct.BorrowedHandle.html) on Windows
/// (`x.as_handle()`). For files, [`MessageStream::send_with_files`] needs neither.
#[cfg(windows)]
pub type BorrowedOsHandle<'a> = std::os::windows::io::BorrowedHandle<'a>;

/// One received message: its bytes and the handles that came with it, now owned by this
/// process (close-on-exec / not inheritable).
#[derive(Debug, Default)]
pub struct Message {
    /// The message's bytes, exactly as sent (possibly none).
    pub bytes: Vec<u8>,
    /// The handles attached to it, in the order they were sent.
    pub handles: Vec<OwnedOsHandle>,
}

/// A server endpoint that accepts [`MessageStream`]s.
///
/// The message twin of [`LocalListener`]: the same names, [`ListenerOptions`] and guarantees
/// (owner-only by default, a live server's name never stolen, stale socket files reclaimed
/// safely and removed on drop). A byte-stream client cannot connect to it, nor a message client
/// to a `LocalListener`: that connect fails at once.
///
/// Corresponds to `socket(AF_UNIX, SOCK_SEQPACKET)`+`bind`+`listen` on Linux and the BSDs (a
/// `SOCK_STREAM` socket carrying frames on Apple platforms), `CreateNamedPipeW` with
/// `PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE` on Windows.
///
/// # Examples
///
/// ```no_run
/// use localsock::{MessageListener, Name};
///
/// # fn main() -> std::io::Result<()> {
/// let listener = MessageListener::bind(&Name::new("example-files")?)?;
/// let stream = listener.accept()?;
/// while let Some(message) = stream.recv_message()? {
///     println!("{} bytes, {} handles", message.bytes.len(), message.handles.len());
/// }
/// # Ok(()) }
/// ```
pub struct MessageListener {
    inner: LocalListener,
}

impl MessageListener {
    /// Creates a listener at `name` with the default [`ListenerOptions`].
    ///
    /// # Errors
    ///
    /// As [`ListenerOptions::bind`]: `AddrInUse` (a live server of either kind has the name),
    /// `PermissionDenied`, `NotFound` (no such directory), `InvalidInput`.
    pub fn bind(name: &Name) -> io::Result<MessageListener> {
        MessageListener::bind_with(name, &ListenerOptions::new())
    }

    /// Creates a listener at `name` with `options`.
    ///
    /// # Errors
    ///
    /// As [`ListenerOptions::bind`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use localsock::{Access, ListenerOptions, MessageListener, Name};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let _listener = MessageListener::bind_with(
    ///     &Name::new("/run/example/broker.sock")?,
    ///     ListenerOptions::new().access(Access::Group).require_same_user(false),
    /// )?;
    /// # Ok(()) }
    /// ```
    pub fn bind_with(name: &Name, options: &ListenerOptions) -> io::Result<MessageListener> {
        Ok(MessageListener {
            inner: options.bind_kind(name, Kind::Messages)?,
        })
    }

    /// Waits for a client and returns the connected stream. As [`LocalListener::accept`].
    ///
    /// # Errors
    ///
    /// As [`LocalListener::accept`]: `WouldBlock` in non-blocking mode, or the OS error.
    pub fn accept(&self) -> io::Result<MessageStream> {
        self.inner.accept().map(MessageStream::from_local)
    }

    /// An endless iterator over accepted connections, one [`accept`](Self::accept) per item
    /// (with [`LocalListener::incoming`]'s pause after a shortage of descriptors).
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<MessageStream>> + '_ {
        self.inner
            .incoming()
            .map(|accepted| accepted.map(MessageStream::from_local))
    }

    /// Moves the listener into or out of non-blocking mode. As
    /// [`LocalListener::set_nonblocking`].
    ///
    /// # Errors
    ///
    /// The OS error.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.set_nonblocking(nonblocking)
    }

    /// The name this listener was bound to.
    pub fn name(&self) -> &Name {
        self.inner.name()
    }

    #[cfg_attr(windows, allow(dead_code))]
    pub(crate) fn inner(&self) -> &LocalListener {
        &self.inner
    }
}

impl fmt::Debug for MessageListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageListener")
            .field("name", self.inner.name())
            .field("inner", &self.inner.inner)
            .finish()
    }
}

/// A connection that carries whole messages, each with zero or more OS handles attached.
///
/// Each [`send`](Self::send) is delivered as one message, whole, with its boundaries, or not at
/// all; an empty message is a message (distinct from the end of the connection). Handles are
/// borrowed to send ([`BorrowedOsHandle`], or [`File`]s) and arrive owned
/// ([`OwnedOsHandle`]): the receiver gets its own handle to the same open file, socket or
/// pipe, as after `dup`. Messages are at most [`MAX_MESSAGE_LEN`] bytes with at most
/// [`MAX_HANDLES`] handles, checked on both ends.
///
/// What a peer can do with this is bounded: every handle that arrives is either returned to
/// the caller or closed (also when the message is too long, carries more handles than the
/// caller accepts, or is malformed), and received handles are never inherited by child
/// processes. See SECURITY.md.
///
/// `MessageStream` is `Send + Sync`: one thread may receive while another sends.
///
/// # Wire format
///
/// Every message starts with one byte, 0 (the format version), then the message's bytes:
/// an empty message is one byte on the wire, and end-of-file is a read of none. (So a
/// zero-byte record from a program that does not use localsock reads as end-of-file.)
///
/// - Linux, the BSDs: one `SOCK_SEQPACKET` record per message, its handles as one
///   `SCM_RIGHTS` control message on that record. Other programs interoperate, e.g. Python's
///   `socket.send_fds(sock, [b"\0" + data], fds)` and `socket.recv_fds(sock, 65537, 253)`.
/// - Apple platforms: the same, as a frame on a `SOCK_STREAM` socket (see the crate docs).
/// - Windows: one pipe message per message; handles are duplicated into the receiving process
///   and their values travel in the message (see the crate docs).
///
/// # Examples
///
/// Passing an open file to another process:
///
/// ```no_run
/// use localsock::{MessageStream, Name};
///
/// # fn main() -> std::io::Result<()> {
/// let stream = MessageStream::connect(&Name::new("example-files")?)?;
/// let file = std::fs::File::open("Cargo.toml")?;
/// stream.send_with_files(b"Cargo.toml", &[&file])?;
/// # Ok(()) }
/// ```
pub struct MessageStream {
    pub(crate) inner: sys::Stream,
}

impl MessageStream {
    fn from_local(stream: LocalStream) -> MessageStream {
        MessageStream {
            inner: stream.inner,
        }
    }

    /// Connects to the [`MessageListener`] at `name` with the default [`ConnectOptions`]
    /// (a busy server is retried for up to 5 s; no server is an error at once).
    ///
    /// # Errors
    ///
    /// As [`ConnectOptions::connect`]: `NotFound`, `ConnectionRefused`, `PermissionDenied`,
    /// `TimedOut`; and at once when the server at `name` is a byte-stream [`LocalListener`].
    pub fn connect(name: &Name) -> io::Result<MessageStream> {
        MessageStream::connect_with(name, &ConnectOptions::new())
    }

    /// Connects to the [`MessageListener`] at `name` with `options`: the deadline, backoff and
    /// waiting for a server that is not there yet, exactly as for a [`LocalStream`].
    ///
    /// # Errors
    ///
    /// As [`ConnectOptions::connect`].
    pub fn connect_with(name: &Name, options: &ConnectOptions) -> io::Result<MessageStream> {
        options
            .connect_kind(name, Kind::Messages)
            .map(|inner| MessageStream { inner })
    }

    /// Sends one message of `bytes` without handles. Blocks while the peer's queue is full.
    ///
    /// Corresponds to `sendmsg(2)` on Unix, `WriteFile` on Windows.
    ///
    /// # Errors
    ///
    /// - `InvalidInput`: longer than [`MAX_MESSAGE_LEN`]; nothing was sent.
    /// - `BrokenPipe`: the peer is gone (never a `SIGPIPE`).
    /// - `WouldBlock` / `TimedOut`: in non-blocking mode or after the write timeout; nothing
    ///   was sent.
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        sys::message::send(&self.inner, bytes, &[])
    }

    /// Sends one message of `bytes` with `handles` attached. The handles stay open here; the
    /// receiver gets its own.
    ///
    /// Corresponds to `sendmsg(2)` with `SCM_RIGHTS` on Unix, `DuplicateHandle` into the peer
    /// process and `WriteFile` on Windows.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), and:
    /// - `InvalidInput`: more than [`MAX_HANDLES`] handles; nothing was sent.
    /// - `PermissionDenied` (Windows): the handles cannot be given to the peer's process (it
    ///   runs as another user or at a higher integrity level); nothing was sent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> std::io::Result<()> {
    /// # let stream = localsock::MessageStream::connect(&localsock::Name::new("x")?)?;
    /// let (reader, writer) = std::io::pipe()?;
    /// #[cfg(unix)]
    /// let handle = std::os::fd::AsFd::as_fd(&writer);
    /// #[cfg(windows)]
    /// let handle = std::os::windows::io::AsHandle::as_handle(&writer);
    /// stream.send_with_handles(b"your end", &[handle])?;
    /// # drop(reader); Ok(()) }
    /// ```
    pub fn send_with_handles(
        &self,
        bytes: &[u8],
        handles: &[BorrowedOsHandle<'_>],
    ) -> io::Result<()> {
        sys::message::send(&self.inner, bytes, handles)
    }

    /// Sends one message of `bytes` with the open `files` attached: the portable way to pass
    /// files, the same code on every platform.
    ///
    /// # Errors
    ///
    /// As [`send_with_handles`](Self::send_with_handles).
    pub fn send_with_files(&self, bytes: &[u8], files: &[&File]) -> io::Result<()> {
        sys::message::send(&self.inner, bytes, &borrow_files(files))
    }

    /// Receives one message without handles into `buf`: `Some(its length)`, or `None` when the
    /// peer has closed the connection. A message that carries handles is an error (and its
    /// handles are closed): use [`recv_with_handles`](Self::recv_with_handles) to take them.
    ///
    /// # Errors
    ///
    /// As [`recv_with_handles`](Self::recv_with_handles) with `max_handles` 0.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut none = Vec::new();
        sys::message::recv(&self.inner, buf, &mut none, 0, true)
    }

    /// Receives one message into `buf` and appends its handles (at most `max_handles`, never
    /// more than [`MAX_HANDLES`]) to `handles`: `Some(the message's length)`, or `None` when the
    /// peer has closed the connection. A message is never cut short.
    ///
    /// Corresponds to `recvmsg(2)` with `MSG_CMSG_CLOEXEC` on Unix, `ReadFile` on Windows.
    ///
    /// # Errors
    ///
    /// - `InvalidInput`: the next message is longer than `buf`. The message stays queued, and
    ///   the error says its length: receive it with a larger buffer, or learn the length first
    ///   with [`peek_len`](Self::peek_len). (A `buf` of [`MAX_MESSAGE_LEN`] bytes always fits.)
    /// - `InvalidData`: the peer broke the rules: more handles than `max_handles`, a message
    ///   longer than [`MAX_MESSAGE_LEN`], or not in localsock's format. That message is dropped
    ///   and all its handles are closed; the connection stays usable.
    /// - `WouldBlock` / `TimedOut`: in non-blocking mode or after the read timeout; nothing
    ///   was taken.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> std::io::Result<()> {
    /// # let stream = localsock::MessageStream::connect(&localsock::Name::new("x")?)?;
    /// let mut buf = [0; 512];
    /// let mut handles = Vec::new();
    /// if let Some(len) = stream.recv_with_handles(&mut buf, &mut handles, 1)? {
    ///     println!("{:?} with {} handle(s)", &buf[..len], handles.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn recv_with_handles(
        &self,
        buf: &mut [u8],
        handles: &mut Vec<OwnedOsHandle>,
        max_handles: usize,
    ) -> io::Result<Option<usize>> {
        sys::message::recv(&self.inner, buf, handles, max_handles, true)
    }

    /// Receives one whole message of any valid size, with up to [`MAX_HANDLES`] handles;
    /// `None` when the peer has closed the connection. Allocates exactly the message's length.
    ///
    /// # Errors
    ///
    /// As [`recv_with_handles`](Self::recv_with_handles), except that no message is too long
    /// for the buffer.
    pub fn recv_message(&self) -> io::Result<Option<Message>> {
        let Some(len) = self.peek_len()? else {
            return Ok(None);
        };
        let mut message = Message {
            bytes: vec![0; len.min(MAX_MESSAGE_LEN)],
            handles: Vec::new(),
        };
        match sys::message::recv(
            &self.inner,
            &mut message.bytes,
            &mut message.handles,
            MAX_HANDLES,
            false,
        )? {
            Some(got) => {
                message.bytes.truncate(got);
                Ok(Some(message))
            }
            None => Ok(None),
        }
    }

    /// The length of the next message, without taking it; `None` when the peer has closed the
    /// connection. Waits for a message (unless non-blocking).
    ///
    /// # Errors
    ///
    /// `WouldBlock` / `TimedOut` in non-blocking mode or after the read timeout; the OS error.
    pub fn peek_len(&self) -> io::Result<Option<usize>> {
        sys::message::peek_len(&self.inner)
    }

    /// Makes a second handle to the same connection. Two receivers on one connection each get
    /// whole messages, but which gets which is a race.
    ///
    /// # Errors
    ///
    /// The OS error when the process is out of descriptors or handles.
    pub fn try_clone(&self) -> io::Result<MessageStream> {
        self.inner.try_clone().map(|inner| MessageStream { inner })
    }

    /// Sets a timeout for receives; `None` blocks forever. As [`LocalStream::set_read_timeout`].
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        crate::stream::check_timeout(timeout)?;
        self.inner.set_read_timeout(timeout)
    }

    /// Sets a timeout for sends; `None` blocks forever.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        crate::stream::check_timeout(timeout)?;
        self.inner.set_write_timeout(timeout)
    }

    /// Moves the stream into or out of non-blocking mode: sends and receives that would wait
    /// return `WouldBlock` (having sent or taken nothing).
    ///
    /// # Errors
    ///
    /// The OS error.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.set_nonblocking(nonblocking)
    }

    /// Who is on the other end. As [`LocalStream::peer_credentials`].
    ///
    /// # Errors
    ///
    /// The OS error, e.g. when the connection is closed.
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.inner.peer_credentials().map(PeerCredentials::from)
    }
}

impl fmt::Debug for MessageStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MessageStream").field(&self.inner).finish()
    }
}

// ---- the rules, shared by every backend ----

/// The handles of `files`, to attach to a message.
pub(crate) fn borrow_files<'a>(files: &'a [&'a File]) -> Vec<BorrowedOsHandle<'a>> {
    #[cfg(unix)]
    use std::os::fd::AsFd as _;
    #[cfg(windows)]
    use std::os::windows::io::AsHandle as _;
    files
        .iter()
        .map(|file| {
            #[cfg(unix)]
            let handle = file.as_fd();
            #[cfg(windows)]
            let handle = file.as_handle();
            handle
        })
        .collect()
}

/// Checks a message before anything is sent.
pub(crate) fn check_send(len: usize, handles: usize) -> io::Result<()> {
    if len > MAX_MESSAGE_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a message of {len} bytes is longer than the {MAX_MESSAGE_LEN} bytes allowed \
                 (MAX_MESSAGE_LEN); nothing was sent"
            ),
        ));
    }
    if handles > MAX_HANDLES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a message with {handles} handles has more than the {MAX_HANDLES} allowed \
                 (MAX_HANDLES); nothing was sent"
            ),
        ));
    }
    Ok(())
}

/// The next message does not fit the caller's buffer; it is still queued.
pub(crate) fn short_buffer(len: usize, buf_len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "the next message is {len} bytes, longer than the {buf_len}-byte buffer; it is \
             still queued: receive it with a buffer of at least {len} bytes"
        ),
    )
}

/// The peer attached more handles than the receiver accepts.
pub(crate) fn too_many_handles(max: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the peer attached more handles to a message than the {max} this receive accepts; \
             the message was dropped and all its handles closed"
        ),
    )
}

/// The message does not start with localsock's format tag.
pub(crate) fn bad_tag(tag: u8) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "not a localsock message: its first byte is {tag:#04x}, not the format tag 0x00; \
             the message was dropped and any handles closed"
        ),
    )
}

/// The message was longer than the buffer after all: too long for any receiver, or (another
/// receiver raced us after the length check) longer than this one.
pub(crate) fn truncated(len: usize, buf_len: usize) -> io::Error {
    let why = if len > MAX_MESSAGE_LEN {
        format!("{len} bytes, longer than MAX_MESSAGE_LEN ({MAX_MESSAGE_LEN})")
    } else {
        format!("longer than the {buf_len}-byte buffer (another receiver on this connection took the message whose length was checked)")
    };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the peer sent a message of {why}; it was dropped and any handles closed"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_before_sending() {
        assert!(check_send(MAX_MESSAGE_LEN, MAX_HANDLES).is_ok());
        let long = check_send(MAX_MESSAGE_LEN + 1, 0).unwrap_err();
        assert_eq!(long.kind(), io::ErrorKind::InvalidInput);
        assert!(long.to_string().contains("65537 bytes"), "{long}");
        let many = check_send(0, MAX_HANDLES + 1).unwrap_err();
        assert_eq!(many.kind(), io::ErrorKind::InvalidInput);
        assert!(many.to_string().contains("254 handles"), "{many}");
    }

    #[test]
    fn short_buffer_error_states_the_length() {
        let e = short_buffer(700, 512);
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("700 bytes"), "{e}");
    }
}
