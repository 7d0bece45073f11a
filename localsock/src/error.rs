//! The one place where OS errors become `io::Error`s that name the operation and the endpoint.
//!
//! The `kind()` of the error is kept (or made more specific); the OS error stays reachable as the
//! error's [`source`](std::error::Error::source), so `raw_os_error()` of the inner error still
//! tells the code. That holds however the error was wrapped before it got here: [`context`] looks
//! through every layer (an `io::Error`'s payload, then `source()`s) for the OS code and makes
//! the OS error itself the source, so a caller walking `source()` from the error it got always
//! reaches an `io::Error` whose `raw_os_error()` is the code, whenever the OS gave one.

use std::error::Error;
use std::fmt;
use std::io;

use crate::{sys, Name};

/// What was being done when an error happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Connect,
    Bind,
    Accept,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::Connect => "connect to",
            Op::Bind => "bind",
            Op::Accept => "accept on",
        }
    }
}

/// An error with its context: `"<operation> <endpoint>: <what happened>"`.
#[derive(Debug)]
struct Contextual {
    message: String,
    source: io::Error,
}

impl fmt::Display for Contextual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for Contextual {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// Wraps `err` so its message names `op` and `name`, with a plain-words hint for the kinds a
/// caller most often meets. The kind is kept.
pub(crate) fn context(err: io::Error, op: Op, name: &Name) -> io::Error {
    let kind = err.kind();
    let hint = match (op, kind, name.abstract_bytes()) {
        // An abstract name has no file that could be stale: nobody listens, that is all.
        (Op::Connect, io::ErrorKind::ConnectionRefused, Some(_)) => {
            "no server is listening on this abstract name".into()
        }
        // What is at the path decides the hint: a socket file nobody accepts on is not the
        // same as a file that is not a socket at all (which must not be called stale).
        (Op::Connect, io::ErrorKind::ConnectionRefused, None) => match name.fs_path() {
            Some(path) => refused_hint(path),
            None => hint(kind, op).into(),
        },
        _ => std::borrow::Cow::Borrowed(hint(kind, op)),
    };
    let message = if hint.is_empty() {
        format!("{} {name}: {err}", op.verb())
    } else {
        format!("{} {name}: {hint} ({err})", op.verb())
    };
    io::Error::new(
        kind,
        Contextual {
            message,
            source: keep_os_error(err),
        },
    )
}

/// An error of `kind` that reads `message` and whose source is `cause`. For a condition that
/// localsock finds itself (a live server on the name, a timeout) the cause is the OS error
/// that explains it, so its code stays reachable.
pub(crate) fn with_cause(
    kind: io::ErrorKind,
    message: impl Into<String>,
    cause: io::Error,
) -> io::Error {
    io::Error::new(
        kind,
        Contextual {
            message: message.into(),
            source: cause,
        },
    )
}

/// The source for an error that gets context: `err` itself when it is an OS error, or has no OS
/// code anywhere; otherwise the OS error found inside it (its words are in the message
/// already). An `io::Error` that merely wraps another one as its payload reports no `source()`,
/// so without this a caller walking the chain would never see the code.
fn keep_os_error(err: io::Error) -> io::Error {
    if err.raw_os_error().is_some() || source_chain_has_code(&err) {
        return err;
    }
    match os_code(&err) {
        Some(code) => io::Error::from_raw_os_error(code),
        None => err,
    }
}

/// Whether walking `source()` from `err` (what a caller can do) reaches an OS error.
fn source_chain_has_code(err: &io::Error) -> bool {
    let mut next = err.source();
    while let Some(error) = next {
        if error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
            .is_some()
        {
            return true;
        }
        next = error.source();
    }
    false
}

/// The OS error code behind `err`, looking through the context localsock adds (and any other
/// wrapping that keeps the OS error as a source).
pub(crate) fn os_code(err: &io::Error) -> Option<i32> {
    if let Some(code) = err.raw_os_error() {
        return Some(code);
    }
    let mut next: Option<&(dyn Error + 'static)> = err.get_ref().map(|inner| inner as _);
    while let Some(error) = next {
        if let Some(code) = error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return Some(code);
        }
        next = match error.downcast_ref::<io::Error>() {
            // An io::Error's `source` skips its own payload: look at the payload first.
            Some(io_error) => io_error.get_ref().map(|inner| inner as _),
            None => error.source(),
        };
    }
    None
}

/// Whether `err` means the process or the system is out of descriptors, handles or memory:
/// retrying at once fails the same way (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM` on Unix; the
/// out-of-handles and out-of-memory errors on Windows; `ErrorKind::OutOfMemory`). The OS error
/// is found whether it is the error itself or, as in localsock's errors with context, its
/// source.
///
/// [`Incoming`](crate::Incoming) and the async listener's `accept` already pause after such an
/// error; a server loop can use this to tell it apart from others (to log it differently, say).
///
/// # Examples
///
/// ```
/// let err = std::io::Error::from(std::io::ErrorKind::OutOfMemory);
/// assert!(localsock::is_resource_shortage(&err));
/// let err = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// assert!(!localsock::is_resource_shortage(&err));
/// ```
pub fn is_resource_shortage(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::OutOfMemory || os_code(err).is_some_and(sys::is_resource_shortage)
}

/// Like [`context`], with extra words between the endpoint and the OS error.
pub(crate) fn context_with(err: io::Error, op: Op, name: &Name, detail: &str) -> io::Error {
    let kind = err.kind();
    let message = format!("{} {name}: {detail} ({err})", op.verb());
    io::Error::new(
        kind,
        Contextual {
            message,
            source: keep_os_error(err),
        },
    )
}

/// The hint for a refused connect to a path, from what is there now (following a symlink, as
/// `connect(2)` does).
fn refused_hint(path: &std::path::Path) -> std::borrow::Cow<'static, str> {
    let Ok(meta) = std::fs::metadata(path) else {
        return "no server is listening".into();
    };
    let kind = file_kind(&meta.file_type());
    match kind {
        None => "no server is listening: the socket file is there but nothing accepts on it \
                 (its server is gone, or the process that bound it does not listen)"
            .into(),
        Some(kind) => {
            format!("not a socket ({kind} is at the path, so no server can be there)").into()
        }
    }
}

/// `None` for a socket, else what the file is, in words.
#[cfg(unix)]
fn file_kind(ty: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    Some(if ty.is_socket() {
        return None;
    } else if ty.is_file() {
        "a regular file"
    } else if ty.is_dir() {
        "a directory"
    } else if ty.is_fifo() {
        "a FIFO"
    } else {
        "a special file"
    })
}

#[cfg(not(unix))]
fn file_kind(_ty: &std::fs::FileType) -> Option<&'static str> {
    None
}

fn hint(kind: io::ErrorKind, op: Op) -> &'static str {
    use io::ErrorKind::*;
    match (op, kind) {
        (Op::Connect, NotFound) => "no server: the socket or pipe does not exist",
        (Op::Connect, ConnectionRefused) => "no server is listening",
        (Op::Connect, PermissionDenied) => "not allowed to connect",
        (Op::Bind, AddrInUse) => "the name is in use",
        (Op::Bind, PermissionDenied) => "not allowed to create the socket",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_operation_endpoint_and_cause() {
        let name = Name::from_addr(crate::sys::Addr::Path("/x/y.sock".into()));
        let err = context(io::Error::from_raw_os_error(2), Op::Connect, &name);
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let msg = err.to_string();
        assert!(msg.starts_with("connect to /x/y.sock: no server"), "{msg}");
        assert!(msg.contains("os error 2"), "{msg}");
        let inner = err.get_ref().and_then(|e| e.source()).unwrap();
        let inner = inner.downcast_ref::<io::Error>().unwrap();
        assert_eq!(inner.raw_os_error(), Some(2));
    }

    /// What a caller can do with only the public API: walk `source()` down from the error.
    fn code_by_walking(err: &io::Error) -> Option<i32> {
        let mut next: Option<&(dyn Error + 'static)> = Some(err);
        while let Some(error) = next {
            if let Some(code) = error
                .downcast_ref::<io::Error>()
                .and_then(io::Error::raw_os_error)
            {
                return Some(code);
            }
            next = error.source();
        }
        None
    }

    #[test]
    fn the_os_code_is_reachable_through_source_however_it_was_wrapped() {
        let name = Name::from_addr(crate::sys::Addr::Path("/x/y.sock".into()));
        let raw = || io::Error::from_raw_os_error(98);
        // An io::Error that carries the OS error as its payload: io::Error::source() skips
        // payloads, so the code is lost to a caller unless context digs it out.
        let payload = io::Error::new(io::ErrorKind::AddrInUse, raw());
        assert_eq!(code_by_walking(&payload), None);
        let err = context(payload, Op::Bind, &name);
        assert_eq!(code_by_walking(&err), Some(98), "{err}");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("os error 98"), "{err}");
        // with_cause keeps its own words and the OS error as source, through context too.
        let found = with_cause(
            io::ErrorKind::AddrInUse,
            "a server is listening there",
            raw(),
        );
        assert_eq!(code_by_walking(&found), Some(98));
        let err = context(found, Op::Bind, &name);
        assert_eq!(code_by_walking(&err), Some(98), "{err}");
        assert!(
            err.to_string().contains("a server is listening there"),
            "{err}"
        );
        // A payload of a backend's own error type whose source is the OS error (as
        // `sys::windows`'s `WithCause`), through context.
        #[derive(Debug)]
        struct Words(io::Error);
        impl fmt::Display for Words {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "cannot create the next pipe instance ({})", self.0)
            }
        }
        impl Error for Words {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let own = io::Error::other(Words(raw()));
        let err = context(own, Op::Accept, &name);
        assert_eq!(os_code(&err), Some(98), "{err}");
        assert_eq!(code_by_walking(&err), Some(98), "{err}");
        assert!(err.to_string().contains("next pipe instance"), "{err}");
        // Two payload layers deep, and through context_with.
        let deep = io::Error::new(io::ErrorKind::TimedOut, io::Error::other(raw()));
        let err = context_with(deep, Op::Connect, &name, "timed out");
        assert_eq!(code_by_walking(&err), Some(98), "{err}");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // No OS code anywhere: nothing is invented.
        let plain = io::Error::new(io::ErrorKind::InvalidInput, "bad name");
        assert_eq!(code_by_walking(&context(plain, Op::Bind, &name)), None);
    }

    /// A refused connect says what is at the path: a socket nobody accepts on, or something
    /// that is not a socket (never called stale, so nobody deletes it as a leftover).
    #[cfg(unix)]
    #[test]
    fn refused_hint_matches_what_is_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);
        let at = |file: &str| {
            let path = dir.path().join(file);
            context(
                refused(),
                Op::Connect,
                &Name::from_addr(crate::sys::Addr::Path(path)),
            )
            .to_string()
        };

        let socket = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let msg = at("stale.sock");
        assert!(
            msg.contains("the socket file is there but nothing accepts"),
            "{msg}"
        );

        std::fs::write(dir.path().join("plain"), b"x").unwrap();
        let msg = at("plain");
        assert!(msg.contains("not a socket (a regular file"), "{msg}");
        assert!(!msg.contains("socket file"), "{msg}");

        std::fs::create_dir(dir.path().join("dir")).unwrap();
        let msg = at("dir");
        assert!(msg.contains("not a socket (a directory"), "{msg}");

        // Gone by the time the hint is made: no guess about what was there.
        let msg = at("nothing");
        assert!(
            msg.contains("no server is listening (connection refused"),
            "{msg}"
        );
    }

    #[test]
    fn refused_abstract_name_does_not_blame_a_stale_file() {
        let name = Name::from_addr(crate::sys::Addr::Abstract(b"svc".to_vec()));
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let err = context(refused, Op::Connect, &name);
        let msg = err.to_string();
        assert!(msg.contains("abstract name"), "{msg}");
        assert!(!msg.contains("file"), "{msg}");
    }
}
