//! [`Name`]: validation and mapping of endpoint names to a socket path, a Linux abstract
//! address or a Windows pipe name.
//!
//! The mapping rules are pure functions (`map_unix`, `map_windows`) so that both platforms'
//! rules are unit-tested on every platform; only the per-user private directory comes from `sys`.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::sys::{self, Addr};

/// The longest pipe name Windows accepts, in UTF-16 code units, prefix included.
pub(crate) const PIPE_NAME_MAX: usize = 256;
/// The local pipe prefix. Windows matches it case-insensitively.
pub(crate) const PIPE_PREFIX: &str = r"\\.\pipe\";

/// The address of a local socket: a filesystem path, a Linux abstract name or a Windows pipe
/// name, resolved once when the `Name` is made.
///
/// | you write | Linux / macOS / BSD | Windows |
/// |---|---|---|
/// | `Name::new("svc")` (short name) | `$XDG_RUNTIME_DIR/svc`, else `<tmp>/localsock-<uid>/svc` (a private `0700` directory, created by the first bind and verified at every bind and connect) | `\\.\pipe\svc` |
/// | `Name::new("/run/app/x.sock")` | `/run/app/x.sock`, as is | `InvalidInput` |
/// | `Name::new(r"\\.\pipe\svc")` | `InvalidInput` (a short name may not hold `\`) | `\\.\pipe\svc`, as is |
/// | `Name::path("rel/x.sock")` | `rel/x.sock`, as is | `Unsupported` |
/// | `Name::abstract_name("svc")` | Linux: abstract `@svc` (no access control!); elsewhere `Unsupported` | `Unsupported` |
/// | `Name::qt("svc")` | Qt's rule: `QDir::tempPath()/svc` | `\\.\pipe\svc` |
///
/// A `Name` is plain data once made: cloning it, comparing it and printing it never touch the
/// system. [`Display`](fmt::Display) prints the resolved endpoint (the full path, `@name` for an
/// abstract name, or the full pipe name), which is also what every error message names.
///
/// # Examples
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use localsock::Name;
///
/// #[cfg(unix)]
/// let name = Name::new("/tmp/example.sock")?;
/// #[cfg(windows)]
/// let name = Name::new(r"\\.\pipe\example")?;
/// println!("endpoint: {name}");
/// #[cfg(unix)]
/// assert_eq!(name.fs_path(), Some(std::path::Path::new("/tmp/example.sock")));
/// assert!(Name::new("").is_err());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Name {
    addr: Addr,
    /// For a short name on Unix: its private directory, checked again on every bind and
    /// connect. Not part of the name's identity (equality, hash).
    #[cfg(unix)]
    private_dir: Option<sys::PrivateDir>,
    /// Made by [`Name::new`] from a short name (no separator), on Windows: it decides the
    /// default server-identity check (on Unix a short name is one with a private directory).
    /// Not part of the name's identity either.
    #[cfg(windows)]
    short: bool,
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.addr == other.addr
    }
}

impl Eq for Name {}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.addr.hash(state);
    }
}

impl Name {
    /// Makes a name from a short name or a full endpoint, the portable way.
    ///
    /// - A short name (no `/`, no `\`) maps to the platform's private default location: on Unix
    ///   a per-user directory (`$XDG_RUNTIME_DIR` when set, else `localsock-<uid>` under the temp
    ///   dir, created with mode `0700` by the first bind), on Windows `\\.\pipe\NAME`.
    /// - On Unix, a name starting with `/` is a filesystem path, used as is.
    /// - On Windows, a name starting with `\\.\pipe\` is a full pipe name, used as is.
    ///
    /// On Unix the private directory must be a directory, not a symlink, owned by the effective
    /// uid, with no group or other access (the way tmux checks its socket directory), so that
    /// no other user can squat or watch the socket. The `Name` keeps the directory and checks it
    /// again on **every** bind and connect, blocking or async, so a program that keeps its
    /// `Name` while the directory is removed and recreated by someone else refuses the
    /// stranger's directory instead of following the path into it. Making a `Name` creates
    /// nothing: the first bind creates `localsock-<uid>` (mode `0700`) when it is missing; a
    /// connect to a name whose directory does not exist is `NotFound`. `$TMPDIR` is used when
    /// it is set and not empty; a relative `$TMPDIR` is refused, and a relative
    /// `$XDG_RUNTIME_DIR` is ignored (as the XDG spec says).
    ///
    /// # Errors
    ///
    /// - [`InvalidInput`](io::ErrorKind::InvalidInput): the name is empty, holds a NUL, is `.`
    ///   or `..`, is a relative path, a remote pipe (`\\host\pipe\x`), or is too long for the
    ///   platform (`sun_path` on Unix, 256 UTF-16 units for a pipe); the message gives the limit
    ///   and the length. Also a relative `$TMPDIR` (for a short name on Unix).
    /// - [`PermissionDenied`](io::ErrorKind::PermissionDenied): the private directory exists but
    ///   is not safe (a symlink, owned by another user, or open to group/other); the message says
    ///   which. A later bind or connect with the `Name` fails the same way if the directory
    ///   becomes unsafe.
    /// - [`NotFound`](io::ErrorKind::NotFound): `$XDG_RUNTIME_DIR` is set but does not exist.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let name = localsock::Name::new("example-svc")?;
    /// println!("the server listens at {name}");
    /// # Ok(()) }
    /// ```
    pub fn new(name: impl AsRef<OsStr>) -> io::Result<Name> {
        let name = name.as_ref();
        #[cfg(unix)]
        {
            let mut private_dir = None;
            let addr = map_unix(name, sys::SUN_PATH_LEN, || {
                let dir = sys::PrivateDir::resolve()?;
                let path = dir.path().to_path_buf();
                private_dir = Some(dir);
                Ok(path)
            })?;
            Ok(Name { addr, private_dir })
        }
        #[cfg(windows)]
        {
            let addr = map_windows(name)?;
            // The mapping succeeded; without a separator of either platform it was a short
            // name.
            let short = !name
                .to_string_lossy()
                .chars()
                .any(|c| c == '/' || c == '\\');
            Ok(Name { addr, short })
        }
    }

    /// Makes a name for a socket file at `path`, used as is (relative paths are relative to the
    /// current directory at bind/connect time).
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for an empty path, a NUL byte, or a path
    /// longer than `sun_path` allows; [`Unsupported`](io::ErrorKind::Unsupported) on Windows,
    /// where localsock uses named pipes only.
    pub fn path(path: impl AsRef<Path>) -> io::Result<Name> {
        let path = path.as_ref();
        #[cfg(unix)]
        {
            check_path(path.as_os_str(), sys::SUN_PATH_LEN)?;
            Ok(Name::from_addr(Addr::Path(path.to_path_buf())))
        }
        #[cfg(not(unix))]
        {
            Err(unsupported(format!(
                "socket file {}: filesystem socket names are not supported on this platform; use a pipe name",
                path.display()
            )))
        }
    }

    /// Makes a Linux abstract-namespace name (`@name` in `ss -x`). Every byte counts, trailing
    /// NULs included, as in Qt's `AbstractNamespaceOption`.
    ///
    /// **Abstract sockets have no access control**: any process in the same network namespace
    /// can connect to them and squat their names (CVE-2020-15257). Use them only when the peer
    /// is authenticated another way, for example with [`LocalStream::peer_credentials`]. They
    /// leave no file behind, so they are never stale.
    ///
    /// [`LocalStream::peer_credentials`]: crate::LocalStream::peer_credentials
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) when `name` is empty or longer than
    /// `sun_path` minus one byte; [`Unsupported`](io::ErrorKind::Unsupported) outside Linux and
    /// Android.
    pub fn abstract_name(name: impl AsRef<[u8]>) -> io::Result<Name> {
        let bytes = name.as_ref();
        if cfg!(any(target_os = "linux", target_os = "android")) {
            #[cfg(unix)]
            check_abstract(bytes, sys::SUN_PATH_LEN)?;
            Ok(Name::from_addr(Addr::Abstract(bytes.to_vec())))
        } else {
            Err(unsupported(format!(
                "abstract name {}: abstract socket names exist on Linux and Android only",
                AbstractDisplay(bytes)
            )))
        }
    }

    /// Makes a name with Qt's rule, to reach a `QLocalServer` (or serve a `QLocalSocket`) that
    /// was given the same string.
    ///
    /// - Unix: a name starting with `/` is used as is; any other name goes under
    ///   `QDir::tempPath()`, which is `$TMPDIR` (else `/tmp`) with symlinks resolved.
    /// - Windows: `\\.\pipe\NAME`, or the name as is when it already starts with `\\.\pipe\`.
    ///
    /// Qt's short names live in the shared temp directory, so they get none of the protection
    /// of [`Name::new`]'s private directory.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for an empty name, a NUL, or a result that
    /// is too long for the platform.
    pub fn qt(name: impl AsRef<OsStr>) -> io::Result<Name> {
        let name = name.as_ref();
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            check_not_empty_or_nul(name)?;
            let path = if name.as_bytes().starts_with(b"/") {
                PathBuf::from(name)
            } else {
                let mut joined = qt_temp_path().into_os_string();
                joined.push("/");
                joined.push(name);
                PathBuf::from(joined)
            };
            check_path(path.as_os_str(), sys::SUN_PATH_LEN)?;
            Ok(Name::from_addr(Addr::Path(path)))
        }
        #[cfg(windows)]
        {
            check_not_empty_or_nul(name)?;
            let s = utf8(name)?;
            let full = if has_pipe_prefix(s) {
                s.to_owned()
            } else {
                format!("{PIPE_PREFIX}{s}")
            };
            check_pipe_len(&full)?;
            Ok(Name::from_addr(Addr::Pipe(full)))
        }
    }

    /// The socket file's path, for a filesystem name; `None` for abstract and pipe names.
    pub fn fs_path(&self) -> Option<&Path> {
        match &self.addr {
            Addr::Path(path) => Some(path),
            _ => None,
        }
    }

    /// The abstract name's bytes (without the leading NUL), for an abstract name.
    pub fn abstract_bytes(&self) -> Option<&[u8]> {
        match &self.addr {
            Addr::Abstract(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The full pipe name (`\\.\pipe\...`), for a Windows pipe name.
    pub fn pipe_name(&self) -> Option<&str> {
        match &self.addr {
            Addr::Pipe(name) => Some(name),
            _ => None,
        }
    }

    pub(crate) fn addr(&self) -> &Addr {
        &self.addr
    }

    pub(crate) fn from_addr(addr: Addr) -> Name {
        Name {
            addr,
            #[cfg(unix)]
            private_dir: None,
            #[cfg(windows)]
            short: false,
        }
    }

    /// Whether [`Name::new`] made this name from a short name (mapped to the platform's
    /// default location) rather than from a full path or pipe name.
    pub(crate) fn is_short(&self) -> bool {
        #[cfg(unix)]
        {
            self.private_dir.is_some()
        }
        #[cfg(windows)]
        {
            self.short
        }
    }

    /// The address to bind, for every bind, blocking or async. A short name's private
    /// directory is checked again first (Unix): created if it is ours and missing, refused
    /// if it is unsafe.
    ///
    /// # Errors
    ///
    /// Those of [`sys::PrivateDir::check`] (`PermissionDenied`, `NotFound`, `mkdir`'s).
    pub(crate) fn bind_addr(&self) -> io::Result<&Addr> {
        #[cfg(unix)]
        if let Some(dir) = &self.private_dir {
            dir.check(sys::DirUse::Bind)?;
        }
        Ok(&self.addr)
    }

    /// The address for one connect attempt, blocking or async. A short name's private
    /// directory is checked again first (Unix): a missing one means no server yet (a
    /// server's bind creates it), an unsafe one is final.
    pub(crate) fn connect_addr(&self) -> Result<&Addr, sys::ConnectFailure> {
        #[cfg(unix)]
        if let Some(dir) = &self.private_dir {
            dir.check(sys::DirUse::Connect)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => sys::ConnectFailure::NoServer(e),
                    _ => sys::ConnectFailure::Fatal(e),
                })?;
        }
        Ok(&self.addr)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.addr {
            Addr::Path(path) => fmt::Display::fmt(&path.display(), f),
            Addr::Abstract(bytes) => fmt::Display::fmt(&AbstractDisplay(bytes), f),
            Addr::Pipe(name) => f.write_str(name),
        }
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

/// Prints an abstract name as `ss -x` does: `@` then the bytes, non-printable ones as `\xNN`.
/// A backslash is escaped too (`\x5c`), so that no name can print like another one.
struct AbstractDisplay<'a>(&'a [u8]);

impl fmt::Display for AbstractDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("@")?;
        for &b in self.0 {
            if (b.is_ascii_graphic() && b != b'\\') || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// `QDir::tempPath()` on Unix: `$TMPDIR` unless it is unset or empty (then `/tmp`; on Apple
/// platforms an unset `TMPDIR` gives the per-user directory, as `std::env::temp_dir` finds it),
/// cleaned lexically as `QDir::cleanPath` does, then canonicalised (symlinks resolved). A
/// directory that does not exist gives an empty path, so the name becomes `/NAME`, as in Qt.
#[cfg(unix)]
fn qt_temp_path() -> PathBuf {
    let dir = match std::env::var_os("TMPDIR") {
        Some(dir) if dir.is_empty() => PathBuf::from("/tmp"),
        _ => std::env::temp_dir(),
    };
    clean_path(&dir).canonicalize().unwrap_or_default()
}

/// `QDir::cleanPath`: drops `.` and repeated separators and folds `dir/..` before any symlink
/// is resolved (so `/tmp/link/..` is `/tmp`, wherever `link` points).
#[cfg_attr(not(unix), allow(dead_code))]
fn clean_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn unsupported(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, msg)
}

fn check_not_empty_or_nul(name: &OsStr) -> io::Result<()> {
    if name.is_empty() {
        return Err(invalid(
            "invalid local socket name: the name is empty".into(),
        ));
    }
    if name.as_encoded_bytes().contains(&0) {
        return Err(invalid(format!(
            "invalid local socket name {:?}: it contains a NUL byte",
            name
        )));
    }
    Ok(())
}

/// A short name: one path component, no separators of either platform, so the same short name
/// is valid everywhere.
fn check_short(name: &OsStr) -> io::Result<()> {
    check_not_empty_or_nul(name)?;
    let bytes = name.as_encoded_bytes();
    if name == "." || name == ".." {
        return Err(invalid(format!(
            "invalid local socket name {name:?}: `.` and `..` are not names"
        )));
    }
    if bytes.contains(&b'/') || bytes.contains(&b'\\') {
        return Err(invalid(format!(
            "invalid local socket name {name:?}: a short name may not contain `/` or `\\`; \
             use an absolute path (Unix) or a full `\\\\.\\pipe\\` name (Windows)"
        )));
    }
    Ok(())
}

/// A socket path must fit `sun_path` with its terminating NUL.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) fn check_path(path: &OsStr, sun_path_len: usize) -> io::Result<()> {
    check_not_empty_or_nul(path)?;
    let len = path.as_encoded_bytes().len();
    let limit = sun_path_len - 1;
    if len > limit {
        return Err(invalid(format!(
            "socket path {} is {len} bytes long; the limit is {limit} bytes (sun_path is {sun_path_len} bytes with the final NUL); \
             use a shorter directory",
            Path::new(path).display()
        )));
    }
    Ok(())
}

/// An abstract name fits `sun_path` after its leading NUL.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) fn check_abstract(bytes: &[u8], sun_path_len: usize) -> io::Result<()> {
    if bytes.is_empty() {
        return Err(invalid(
            "invalid abstract socket name: the name is empty".into(),
        ));
    }
    let limit = sun_path_len - 1;
    if bytes.len() > limit {
        return Err(invalid(format!(
            "abstract socket name {} is {} bytes long; the limit is {limit} bytes (sun_path minus the leading NUL)",
            AbstractDisplay(bytes),
            bytes.len()
        )));
    }
    Ok(())
}

/// The Unix rule: `/...` is a path used as is; a short name goes into the private directory.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) fn map_unix(
    name: &OsStr,
    sun_path_len: usize,
    private_dir: impl FnOnce() -> io::Result<PathBuf>,
) -> io::Result<Addr> {
    check_not_empty_or_nul(name)?;
    if name.as_encoded_bytes().starts_with(b"/") {
        check_path(name, sun_path_len)?;
        return Ok(Addr::Path(PathBuf::from(name)));
    }
    check_short(name)?;
    let dir = private_dir()?;
    let mut full = OsString::from(dir);
    full.push("/");
    full.push(name);
    check_path(&full, sun_path_len)?;
    Ok(Addr::Path(PathBuf::from(full)))
}

fn has_pipe_prefix(s: &str) -> bool {
    s.len() >= PIPE_PREFIX.len()
        && s.is_char_boundary(PIPE_PREFIX.len())
        && s[..PIPE_PREFIX.len()].eq_ignore_ascii_case(PIPE_PREFIX)
}

fn utf8(name: &OsStr) -> io::Result<&str> {
    name.to_str().ok_or_else(|| {
        invalid(format!(
            "invalid pipe name {name:?}: it is not valid Unicode"
        ))
    })
}

fn check_pipe_len(full: &str) -> io::Result<()> {
    let units = full.encode_utf16().count();
    if units > PIPE_NAME_MAX {
        return Err(invalid(format!(
            "pipe name {full} is {units} UTF-16 units long; the limit is {PIPE_NAME_MAX}"
        )));
    }
    Ok(())
}

/// The Windows rule: `\\.\pipe\...` is used as is; a short name gets the prefix; anything else
/// (remote pipes, paths) is refused.
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn map_windows(name: &OsStr) -> io::Result<Addr> {
    check_not_empty_or_nul(name)?;
    let s = utf8(name)?;
    if has_pipe_prefix(s) {
        if s.len() == PIPE_PREFIX.len() {
            return Err(invalid(format!(
                "invalid pipe name {s}: nothing follows the prefix"
            )));
        }
        check_pipe_len(s)?;
        return Ok(Addr::Pipe(s.to_owned()));
    }
    if s.starts_with(r"\\") || s.starts_with("//") {
        return Err(invalid(format!(
            "invalid pipe name {s}: remote pipes are not supported; local pipes start with {PIPE_PREFIX}"
        )));
    }
    if s.starts_with('/') || s.starts_with('\\') || s.as_bytes().get(1) == Some(&b':') {
        return Err(invalid(format!(
            "invalid pipe name {s}: filesystem paths are not pipe names on Windows; use a short name or {PIPE_PREFIX}NAME"
        )));
    }
    check_short(name)?;
    let full = format!("{PIPE_PREFIX}{s}");
    check_pipe_len(&full)?;
    Ok(Addr::Pipe(full))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    fn dir() -> io::Result<PathBuf> {
        Ok(PathBuf::from("/run/user/1000"))
    }

    #[test]
    fn unix_short_name_goes_to_private_dir() {
        let repr = map_unix(OsStr::new("svc"), 108, dir).unwrap();
        assert_eq!(repr, Addr::Path("/run/user/1000/svc".into()));
    }

    #[test]
    fn unix_absolute_path_is_used_as_is_without_touching_private_dir() {
        let repr = map_unix(OsStr::new("/a/b.sock"), 108, || panic!("not needed")).unwrap();
        assert_eq!(repr, Addr::Path("/a/b.sock".into()));
    }

    #[test]
    fn unix_rejects_bad_names() {
        for bad in ["", "a/b", "a\\b", ".", "..", "rel/x.sock", "a\0b", "/a\0b"] {
            let err = map_unix(OsStr::new(bad), 108, dir).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
        }
    }

    #[test]
    fn unix_length_limit_is_exact_and_reported() {
        let ok = format!("/{}", "x".repeat(106));
        assert_eq!(ok.len(), 107);
        map_unix(OsStr::new(&ok), 108, dir).unwrap();
        let long = format!("/{}", "x".repeat(107));
        let err = map_unix(OsStr::new(&long), 108, dir).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let msg = err.to_string();
        assert!(msg.contains("108 bytes long"), "{msg}");
        assert!(msg.contains("limit is 107"), "{msg}");
        // A short name that overflows once joined to the directory is refused too.
        let err = map_unix(OsStr::new(&"s".repeat(100)), 108, dir).unwrap_err();
        assert!(err.to_string().contains("115 bytes long"), "{err}");
    }

    #[test]
    fn private_dir_errors_pass_through() {
        let err = map_unix(OsStr::new("svc"), 108, || {
            Err(io::Error::new(ErrorKind::PermissionDenied, "unsafe dir"))
        })
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    }

    #[test]
    fn abstract_limits() {
        check_abstract(&[b'a'; 107], 108).unwrap();
        let err = check_abstract(&[b'a'; 108], 108).unwrap_err();
        assert!(err.to_string().contains("limit is 107"), "{err}");
        assert!(check_abstract(b"", 108).is_err());
    }

    #[test]
    fn abstract_display_escapes() {
        assert_eq!(AbstractDisplay(b"svc\0").to_string(), "@svc\\x00");
        // A literal `\x00` must not print like a NUL byte.
        assert_eq!(AbstractDisplay(b"\\x00").to_string(), "@\\x5cx00");
    }

    #[test]
    fn windows_mapping() {
        assert_eq!(
            map_windows(OsStr::new("svc")).unwrap(),
            Addr::Pipe(r"\\.\pipe\svc".into())
        );
        assert_eq!(
            map_windows(OsStr::new(r"\\.\pipe\a\b")).unwrap(),
            Addr::Pipe(r"\\.\pipe\a\b".into())
        );
        assert_eq!(
            map_windows(OsStr::new(r"\\.\PIPE\x")).unwrap(),
            Addr::Pipe(r"\\.\PIPE\x".into())
        );
        for bad in [
            "",
            r"\\host\pipe\x",
            r"\\.\pipe\",
            "/tmp/x",
            r"C:\x",
            "a/b",
            "a\\b",
            "a\0",
        ] {
            let err = map_windows(OsStr::new(bad)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn windows_length_limit_is_exact() {
        let room = PIPE_NAME_MAX - PIPE_PREFIX.len();
        map_windows(OsStr::new(&"p".repeat(room))).unwrap();
        let err = map_windows(OsStr::new(&"p".repeat(room + 1))).unwrap_err();
        assert!(err.to_string().contains("257 UTF-16 units"), "{err}");
        // Counted in UTF-16 units, not bytes: 'é' is 2 bytes but 1 unit.
        map_windows(OsStr::new(&"é".repeat(room))).unwrap();
    }

    #[test]
    fn clean_path_is_lexical_like_qdir_clean_path() {
        for (input, cleaned) in [
            ("/tmp/link/..", "/tmp"),
            ("/tmp/./a//b/", "/tmp/a/b"),
            ("/..", "/"),
            ("a/../..", ".."),
            ("a/..", "."),
        ] {
            assert_eq!(clean_path(Path::new(input)), Path::new(cleaned), "{input}");
        }
    }

    #[test]
    fn display_shows_the_endpoint() {
        let n = Name::from_addr(Addr::Path("/x/y".into()));
        assert_eq!(n.to_string(), "/x/y");
        assert_eq!(format!("{n:?}"), "Name(/x/y)");
        let n = Name::from_addr(Addr::Pipe(r"\\.\pipe\a".into()));
        assert_eq!(n.to_string(), r"\\.\pipe\a");
    }
}
