//! [`LocalListener`], its [`ListenerOptions`] and [`Incoming`].

use std::fmt;
use std::io;

use crate::error::{self, Op};
use crate::sys::{self, Kind};
use crate::{LocalStream, Name};

/// Who may connect to a listener.
///
/// | | Unix (socket file mode) | Windows (pipe DACL) |
/// |---|---|---|
/// | `Owner` (default) | `0600` | the owner's SID and SYSTEM |
/// | `Group` | `0660` | + the group named with `os::windows::ListenerOptionsExt::group` (required) |
/// | `Everyone` | `0666` | + Everyone (read/write, never "create instance") |
///
/// On Windows `Group` needs an explicit group: there is no "owner's group" as on Unix (the
/// token's primary group is Domain Users, or "None", every local account), so bind refuses
/// `Group` without one. `Group` and `Everyone` grant other users `GENERIC_READ |
/// FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES`, never `FILE_CREATE_PIPE_INSTANCE`; a client that
/// asks for `GENERIC_WRITE`, which includes that right (std's `File`, tokio's and .NET's pipe
/// clients by default), is refused. localsock's client asks for `GENERIC_READ |
/// FILE_WRITE_DATA` only.
///
/// On Unix the short-name directory is private (`0700`) whatever the mode, so `Group` and
/// `Everyone` matter for sockets at explicit paths in shared directories.
///
/// On Unix "the group" of `Group` is **the socket file's group**, which the kernel picks when
/// the file is created: on Linux the process's effective gid, or the directory's group when
/// the directory is set-group-ID (`chmod g+s`, as many `/run/<app>` directories are); on macOS
/// and the BSDs always the directory's group. To serve a given group, bind in a (set-group-ID)
/// directory of that group. The listener's directory must
/// also let those users search it.
///
/// With `Group` or `Everyone` on Unix the socket is bound in a temporary `0700` directory next
/// to the final path and linked into place (so it never has a wider mode than asked). That step
/// works only through descriptors it holds, so another user who can write the directory cannot
/// redirect it; such a user can still make the bind fail, and choose what the path leads to
/// before the bind (see SECURITY.md).
///
/// Abstract names ([`Name::abstract_name`]) have no permissions at all: the kernel lets any
/// process in the network namespace connect, whatever `Access` says. Authenticate peers with
/// [`ListenerOptions::require_same_user`] or [`LocalStream::peer_credentials`] there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Access {
    /// Only the user who created the listener (the default).
    #[default]
    Owner,
    /// The owner and the members of one group: on Unix the socket file's group (see above), on
    /// Windows the group named with `os::windows::ListenerOptionsExt::group`.
    Group,
    /// Every local user.
    Everyone,
}

/// How to create a listener: who may connect, what to do with a stale socket file, the backlog,
/// and whether to check each client's user.
///
/// # Examples
///
/// ```no_run
/// use localsock::{Access, ListenerOptions, Name};
///
/// # fn main() -> std::io::Result<()> {
/// let listener = ListenerOptions::new()
///     .access(Access::Group)
///     .require_same_user(false)
///     .bind(&Name::new("/run/example/app.sock")?)?;
/// println!("listening at {}", listener.name());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ListenerOptions {
    pub(crate) access: Access,
    pub(crate) reclaim_stale: bool,
    pub(crate) backlog: u32,
    pub(crate) require_same_user: bool,
    pub(crate) nonblocking: bool,
    #[cfg(windows)]
    pub(crate) windows: crate::os::windows::ListenerOptionsWindows,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions::new()
    }
}

impl ListenerOptions {
    /// The defaults: owner-only access, stale socket files reclaimed, a backlog of 1024, no
    /// same-user check, blocking accepts.
    pub fn new() -> ListenerOptions {
        ListenerOptions {
            access: Access::Owner,
            reclaim_stale: true,
            backlog: 1024,
            require_same_user: false,
            nonblocking: false,
            #[cfg(windows)]
            windows: Default::default(),
        }
    }

    /// Who may connect. See [`Access`].
    pub fn access(&mut self, access: Access) -> &mut Self {
        self.access = access;
        self
    }

    /// Whether to take over a stale socket file (one that refuses connections because its
    /// server is gone) at the name. On by default. A live server's name is never taken: bind
    /// probes the file first, and two localsock servers reclaiming the same name at once are
    /// serialised so that exactly one wins. Has no effect on Windows, where pipe names vanish
    /// with their server.
    pub fn reclaim_stale(&mut self, reclaim: bool) -> &mut Self {
        self.reclaim_stale = reclaim;
        self
    }

    /// The queue of connections waiting for `accept` (`listen(2)` backlog; on Windows the
    /// number of spare pipe instances is set in `os::windows`).
    pub fn backlog(&mut self, backlog: u32) -> &mut Self {
        self.backlog = backlog.max(1);
        self
    }

    /// Accept only clients that run as the same user as this process (uid on Unix, user SID
    /// on Windows); others are disconnected at once and never returned by `accept`.
    ///
    /// On Unix the check uses the credentials the kernel recorded at `connect` (see
    /// [`PeerCredentials`](crate::PeerCredentials)). Inside a Linux user namespace that does
    /// not map every uid, the overflow uid (65534, the uid every unmapped user shows as) is
    /// never taken for "the same user": a server running as that uid there accepts no client.
    ///
    /// On Windows the SID comes from the client's own token, never from its process id
    /// (which another process may have taken): a client whose token Windows does not give
    /// is dropped. That is one that connected with `SECURITY_ANONYMOUS`, or one that asked
    /// for no security QoS at all (std's `File`, .NET's default), which Windows identifies
    /// only after the server has read from it. localsock's and tokio's clients are identified
    /// at once.
    pub fn require_same_user(&mut self, require: bool) -> &mut Self {
        self.require_same_user = require;
        self
    }

    /// Create the listener in non-blocking mode (see [`LocalListener::set_nonblocking`]).
    pub fn nonblocking(&mut self, nonblocking: bool) -> &mut Self {
        self.nonblocking = nonblocking;
        self
    }

    /// Creates the listener.
    ///
    /// Corresponds to `socket(2)`+`bind(2)`+`listen(2)` on Unix, `CreateNamedPipeW` with
    /// `FILE_FLAG_FIRST_PIPE_INSTANCE` on Windows.
    ///
    /// # Errors
    ///
    /// - `AddrInUse`: a live server has the name, or the path holds something that is not a
    ///   socket, or a stale socket file is there and reclaiming is off. The live server keeps
    ///   working.
    /// - `PermissionDenied`: the directory (or pipe namespace) does not let this user create
    ///   the socket; on Windows also a security descriptor (SDDL) that does not leave this
    ///   user the rights every pipe instance needs (the message names them).
    /// - `NotFound`: the socket file's directory does not exist.
    /// - `InvalidInput`: the name's kind does not exist on this platform; on Windows also
    ///   `Access::Group` without a group (`os::windows::ListenerOptionsExt::group`), or a group
    ///   that does not resolve.
    ///
    /// Every message names the endpoint and the operation.
    pub fn bind(&self, name: &Name) -> io::Result<LocalListener> {
        self.bind_kind(name, Kind::Bytes)
    }

    /// These options as the plain data a backend binds with.
    pub(crate) fn bind_spec(&self, kind: Kind) -> sys::BindSpec {
        sys::BindSpec {
            kind,
            access: match self.access {
                Access::Owner => sys::AccessMode::Owner,
                Access::Group => sys::AccessMode::Group,
                Access::Everyone => sys::AccessMode::Everyone,
            },
            #[cfg(unix)]
            backlog: self.backlog,
            #[cfg(unix)]
            reclaim_stale: self.reclaim_stale,
            #[cfg(windows)]
            sddl: self.windows.sddl.clone(),
            #[cfg(windows)]
            group: self.windows.group.clone(),
            #[cfg(windows)]
            spare_instances: self.windows.spare_instances,
        }
    }

    /// The bind for byte-stream and message listeners alike: a [`crate::MessageListener`]
    /// is a `LocalListener` whose socket (or pipe) is of the message kind.
    pub(crate) fn bind_kind(&self, name: &Name, kind: Kind) -> io::Result<LocalListener> {
        let inner = name
            .bind_addr()
            .and_then(|addr| sys::Listener::bind(addr, &self.bind_spec(kind)))
            .map_err(|e| error::context(e, Op::Bind, name))?;
        let listener = LocalListener {
            inner,
            name: name.clone(),
            require_same_user: self.require_same_user,
        };
        if self.nonblocking {
            listener.set_nonblocking(true)?;
        }
        Ok(listener)
    }
}

/// A server endpoint that accepts [`LocalStream`]s.
///
/// Dropping it stops accepting; on Unix it also removes its socket file, but only if the file
/// at the path is still the one it created. `LocalListener` is `Send + Sync`: several threads
/// may call [`accept`](Self::accept) on the same listener.
///
/// # Examples
///
/// ```no_run
/// use std::io::{Read, Write};
/// use localsock::{LocalListener, Name};
///
/// # fn main() -> std::io::Result<()> {
/// let listener = LocalListener::bind(&Name::new("example-echo")?)?;
/// for stream in listener.incoming() {
///     let mut stream = stream?;
///     let mut buf = [0; 1024];
///     let n = stream.read(&mut buf)?;
///     stream.write_all(&buf[..n])?;
/// }
/// # Ok(()) }
/// ```
pub struct LocalListener {
    pub(crate) inner: sys::Listener,
    name: Name,
    require_same_user: bool,
}

impl LocalListener {
    /// Creates a listener at `name` with the default [`ListenerOptions`]: owner-only access,
    /// stale socket files reclaimed.
    ///
    /// # Errors
    ///
    /// As [`ListenerOptions::bind`]; most often `AddrInUse` when a server already listens there.
    pub fn bind(name: &Name) -> io::Result<LocalListener> {
        ListenerOptions::new().bind(name)
    }

    /// Waits for a client and returns the connected stream.
    ///
    /// A client that connected and left before the accept is returned if it sent something
    /// (its data, then EOF), so nothing it sent is lost; one that sent nothing may be skipped
    /// (Windows skips it; Unix returns it unless the kernel already dropped it). The async
    /// listener does the same. With [`ListenerOptions::require_same_user`], clients of other
    /// users are dropped and skipped.
    ///
    /// Corresponds to `accept4(2)` on Unix, `ConnectNamedPipe` on Windows.
    ///
    /// # Errors
    ///
    /// `WouldBlock` in non-blocking mode when no client waits; the OS error otherwise (e.g.
    /// `EMFILE` when the process is out of descriptors: the listener stays usable, and a caller
    /// in a loop should pause before retrying, as [`incoming`](Self::incoming) does). Messages
    /// name the endpoint.
    pub fn accept(&self) -> io::Result<LocalStream> {
        loop {
            let inner = self.inner.accept().map_err(|e| {
                if e.kind() == io::ErrorKind::WouldBlock {
                    e
                } else {
                    error::context(e, Op::Accept, &self.name)
                }
            })?;
            if self.require_same_user && !sys::peer_uid_matches(&inner).unwrap_or(false) {
                continue;
            }
            return Ok(LocalStream { inner });
        }
    }

    /// An endless iterator over accepted connections, one [`accept`](Self::accept) per item.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// Moves the listener into or out of non-blocking mode: in non-blocking mode `accept`
    /// returns `WouldBlock` instead of waiting. Accepted streams are blocking either way.
    ///
    /// # Errors
    ///
    /// The OS error.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.set_nonblocking(nonblocking)
    }

    /// The name this listener was bound to.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Adopts a listening socket this process inherited (systemd socket activation, see
    /// [`activation`](crate::activation) with feature `systemd`; or a parent that passed one),
    /// after checking that it is one: a listening `AF_UNIX` stream socket.
    ///
    /// The name is read back from the socket (`getsockname`). The socket file is not removed
    /// when the listener is dropped: whoever bound it owns it. Unlike the unchecked
    /// `From<OwnedFd>`, a descriptor of the wrong kind is refused and closed. An adopted
    /// socket is made blocking and close-on-exec, as the crate's own listeners are.
    ///
    /// # Errors
    ///
    /// `InvalidInput` saying what the descriptor is instead (a regular file, a TCP socket, a
    /// datagram socket, a connected or non-listening `AF_UNIX` socket, ...); the OS error if it
    /// cannot be examined.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::net::UnixListener;
    /// use localsock::LocalListener;
    ///
    /// # fn main() -> std::io::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("inherited.sock");
    /// // A listening socket made elsewhere, as a parent process would pass it.
    /// let listener = LocalListener::from_inherited_fd(UnixListener::bind(&path)?.into())?;
    /// assert_eq!(listener.name().fs_path(), Some(path.as_path()));
    ///
    /// // Anything else is refused, saying what it is.
    /// let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let err = LocalListener::from_inherited_fd(tcp.into()).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// assert!(err.to_string().contains("IPv4"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Platform-specific behavior
    ///
    /// Unix only.
    #[cfg(unix)]
    pub fn from_inherited_fd(fd: std::os::fd::OwnedFd) -> io::Result<LocalListener> {
        sys::check_listening_unix_stream(&fd)?;
        let listener = LocalListener::from(fd);
        // An inherited socket may come non-blocking; `accept` here blocks.
        listener.set_nonblocking(false)?;
        Ok(listener)
    }

    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn from_parts(inner: sys::Listener, name: Name, require_same_user: bool) -> Self {
        LocalListener {
            inner,
            name,
            require_same_user,
        }
    }

    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn into_inner(self) -> sys::Listener {
        self.inner
    }

    /// Whether `accept` drops clients of other users (for the async listener's conversions).
    #[cfg(all(unix, feature = "tokio"))]
    pub(crate) fn requires_same_user(&self) -> bool {
        self.require_same_user
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

/// The iterator returned by [`LocalListener::incoming`]. It never ends: each `next()` is one
/// `accept`, and errors are yielded, not swallowed. After an error that means the process is
/// out of descriptors or memory it pauses 100 ms first, so that a loop that logs errors and goes
/// on does not spin while the shortage lasts.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a LocalListener,
}

/// How long to pause after an accept failed for lack of descriptors or memory.
const RESOURCE_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// The accept policy, one for the blocking [`Incoming`] and the async listener's `accept`
/// (which differ only in how they wait): after an accept error that means the process or
/// system is out of descriptors, handles or memory, wait this long before yielding the error.
/// The client stays queued, so retrying at once would fail the same way, and a loop that logs
/// the error and goes on would spin while the shortage lasts.
pub(crate) fn pause_after_accept_error(err: &io::Error) -> Option<std::time::Duration> {
    error::is_resource_shortage(err).then_some(RESOURCE_PAUSE)
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<LocalStream>;

    /// One `accept`. After an error that means the process is out of descriptors or memory
    /// (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`; on Windows the out-of-resources errors) it
    /// sleeps 100 ms before yielding the error: the client stays queued, so retrying at once
    /// would fail the same way, and a loop that logs the error and goes on would spin.
    fn next(&mut self) -> Option<Self::Item> {
        let result = self.listener.accept();
        if let Some(pause) = result.as_ref().err().and_then(pause_after_accept_error) {
            std::thread::sleep(pause);
        }
        Some(result)
    }
}
