//! The one place where OS errors become `io::Error`s that name the operation and the endpoint.
//!
//! The `kind()` of the error is kept (or made more specific); the OS error stays reachable as the
//! error's [`source`](std::error::Error::source), so `raw_os_error()` of the inner error still
//! tells the code.

use std::error::Error;
use std::fmt;
use std::io;

use crate::Name;

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
            "no server is listening on this abstract name"
        }
        _ => hint(kind, op),
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
            source: err,
        },
    )
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
/// retrying at once fails the same way.
pub(crate) fn is_resource_shortage(err: &io::Error) -> bool {
    if err.kind() == io::ErrorKind::OutOfMemory {
        return true;
    }
    let Some(code) = os_code(err) else {
        return false;
    };
    #[cfg(unix)]
    {
        matches!(
            code,
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
        )
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::Foundation::{
            ERROR_NOT_ENOUGH_MEMORY, ERROR_NO_SYSTEM_RESOURCES, ERROR_OUTOFMEMORY,
            ERROR_TOO_MANY_OPEN_FILES,
        };
        matches!(
            code as u32,
            ERROR_NO_SYSTEM_RESOURCES
                | ERROR_NOT_ENOUGH_MEMORY
                | ERROR_OUTOFMEMORY
                | ERROR_TOO_MANY_OPEN_FILES
        )
    }
}

/// Like [`context`], with extra words between the endpoint and the OS error.
pub(crate) fn context_with(err: io::Error, op: Op, name: &Name, detail: &str) -> io::Error {
    let kind = err.kind();
    let message = format!("{} {name}: {detail} ({err})", op.verb());
    io::Error::new(
        kind,
        Contextual {
            message,
            source: err,
        },
    )
}

fn hint(kind: io::ErrorKind, op: Op) -> &'static str {
    use io::ErrorKind::*;
    match (op, kind) {
        (Op::Connect, NotFound) => "no server: the socket or pipe does not exist",
        (Op::Connect, ConnectionRefused) => {
            "no server is listening (the socket file is stale, left by a server that is gone)"
        }
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
        let name = Name::from_repr(crate::name::Repr::Path("/x/y.sock".into()));
        let err = context(io::Error::from_raw_os_error(2), Op::Connect, &name);
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let msg = err.to_string();
        assert!(msg.starts_with("connect to /x/y.sock: no server"), "{msg}");
        assert!(msg.contains("os error 2"), "{msg}");
        let inner = err.get_ref().and_then(|e| e.source()).unwrap();
        let inner = inner.downcast_ref::<io::Error>().unwrap();
        assert_eq!(inner.raw_os_error(), Some(2));
    }

    #[test]
    fn refused_abstract_name_does_not_blame_a_stale_file() {
        let name = Name::from_repr(crate::name::Repr::Abstract(b"svc".to_vec()));
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let err = context(refused, Op::Connect, &name);
        let msg = err.to_string();
        assert!(msg.contains("abstract name"), "{msg}");
        assert!(!msg.contains("file"), "{msg}");
    }
}
