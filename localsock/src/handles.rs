//! Conversions between the public types and the OS's descriptors (Unix) and handles
//! (Windows): `AsFd`/`AsHandle`, `From<OwnedFd>`/`From<OwnedHandle>` both ways, `IntoRaw*`.
//! Portable code over the backend's safe constructors (`sys::Stream::from(OwnedFd)`,
//! `sys::Listener::from(OwnedFd)`, `sys::local_addr`).
//!
//! `FromRawFd` / `FromRawHandle` are the exception: implementing their `unsafe fn` is unsafe
//! code, which lives only in `sys` (`sys/unix/from_raw.rs`, `sys/windows/from_raw.rs`); each
//! takes ownership with std's `OwnedFd::from_raw_fd` and then calls the `From` impl here.

#[cfg(unix)]
mod unix {
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
    use std::path::PathBuf;

    use crate::sys;
    use crate::{LocalListener, LocalStream, MessageListener, MessageStream, Name};

    impl AsFd for LocalStream {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.inner.as_fd()
        }
    }

    impl AsRawFd for LocalStream {
        fn as_raw_fd(&self) -> RawFd {
            self.inner.as_fd().as_raw_fd()
        }
    }

    impl From<OwnedFd> for LocalStream {
        /// Adopts a connected `AF_UNIX` stream socket, e.g. one passed by a parent process.
        fn from(fd: OwnedFd) -> LocalStream {
            LocalStream {
                inner: sys::Stream::from(fd),
            }
        }
    }

    impl From<LocalStream> for OwnedFd {
        fn from(stream: LocalStream) -> OwnedFd {
            stream.inner.into()
        }
    }

    impl IntoRawFd for LocalStream {
        fn into_raw_fd(self) -> RawFd {
            OwnedFd::from(self).into_raw_fd()
        }
    }

    impl AsFd for LocalListener {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.inner.as_fd()
        }
    }

    impl AsRawFd for LocalListener {
        fn as_raw_fd(&self) -> RawFd {
            self.inner.as_fd().as_raw_fd()
        }
    }

    impl From<OwnedFd> for LocalListener {
        /// Adopts a bound, listening `AF_UNIX` stream socket, e.g. from systemd socket activation.
        /// The listener's name is read back with `getsockname`; the socket file is *not* removed
        /// when this listener is dropped, since this listener did not create it.
        fn from(fd: OwnedFd) -> LocalListener {
            let name = sys::local_addr(fd.as_fd())
                .ok()
                .flatten()
                .map(Name::from_addr)
                .unwrap_or_else(|| Name::from_addr(sys::Addr::Path(PathBuf::from("(unnamed)"))));
            LocalListener::from_parts(sys::Listener::from(fd), name, false)
        }
    }

    impl From<LocalListener> for OwnedFd {
        /// Releases the listening socket. The socket file stays where it is.
        fn from(listener: LocalListener) -> OwnedFd {
            listener.into_inner().into_fd()
        }
    }

    impl IntoRawFd for LocalListener {
        fn into_raw_fd(self) -> RawFd {
            OwnedFd::from(self).into_raw_fd()
        }
    }

    impl AsFd for MessageStream {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.inner.as_fd()
        }
    }

    impl AsRawFd for MessageStream {
        fn as_raw_fd(&self) -> RawFd {
            self.inner.as_fd().as_raw_fd()
        }
    }

    impl From<OwnedFd> for MessageStream {
        /// Adopts a connected `AF_UNIX` `SOCK_SEQPACKET` socket (on Apple platforms a
        /// `SOCK_STREAM` one whose peer speaks localsock's frames), e.g. one end of a `socketpair`
        /// made for a child process.
        fn from(fd: OwnedFd) -> MessageStream {
            MessageStream {
                inner: sys::Stream::from(fd),
            }
        }
    }

    impl From<MessageStream> for OwnedFd {
        fn from(stream: MessageStream) -> OwnedFd {
            stream.inner.into()
        }
    }

    impl AsFd for MessageListener {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.inner().inner.as_fd()
        }
    }

    impl AsRawFd for MessageListener {
        fn as_raw_fd(&self) -> RawFd {
            self.inner().inner.as_fd().as_raw_fd()
        }
    }
}

#[cfg(windows)]
mod windows {
    use std::os::windows::io::{
        AsHandle, AsRawHandle, BorrowedHandle, IntoRawHandle, OwnedHandle, RawHandle,
    };

    use crate::sys;
    use crate::{LocalStream, MessageStream};

    impl AsHandle for LocalStream {
        fn as_handle(&self) -> BorrowedHandle<'_> {
            self.inner.as_handle()
        }
    }

    impl AsRawHandle for LocalStream {
        fn as_raw_handle(&self) -> RawHandle {
            self.inner.as_handle().as_raw_handle()
        }
    }

    impl From<OwnedHandle> for LocalStream {
        /// Adopts a connected named-pipe handle (either end), e.g. one inherited from a parent
        /// process.
        ///
        /// It must have been opened with `FILE_FLAG_OVERLAPPED` (as `CreateNamedPipeW` and
        /// `CreateFileW` do only when asked). A synchronous handle cannot be refused here (`From`
        /// cannot fail, and no documented call tells a handle's mode): on one, every read and
        /// write waits in the kernel, so read and write timeouts and non-blocking mode have no
        /// effect, and Windows serialises all I/O on a synchronous file object, so a read waiting
        /// in one thread holds up a write from another (a full-duplex protocol deadlocks).
        fn from(handle: OwnedHandle) -> LocalStream {
            LocalStream {
                inner: sys::Stream::from(handle),
            }
        }
    }

    impl From<LocalStream> for OwnedHandle {
        fn from(stream: LocalStream) -> OwnedHandle {
            stream.inner.into()
        }
    }

    impl IntoRawHandle for LocalStream {
        fn into_raw_handle(self) -> RawHandle {
            OwnedHandle::from(self).into_raw_handle()
        }
    }

    impl AsHandle for MessageStream {
        fn as_handle(&self) -> BorrowedHandle<'_> {
            self.inner.as_handle()
        }
    }

    impl AsRawHandle for MessageStream {
        fn as_raw_handle(&self) -> RawHandle {
            self.inner.as_handle().as_raw_handle()
        }
    }
}
