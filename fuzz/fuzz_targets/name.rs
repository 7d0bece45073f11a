//! Fuzzes every constructor of `localsock::Name` with arbitrary bytes.
//!
//! The first byte picks the constructor (`new`, `path`, `abstract_name`, `qt`); the rest is
//! the argument, as raw bytes (an `OsStr` on Unix, so invalid UTF-8 is covered). Checked on
//! every input:
//! - no panic (libFuzzer reports it), no unbounded allocation (run with `-malloc_limit_mb`);
//! - an error is `InvalidInput`, `Unsupported` or `PermissionDenied`, with a non-empty message
//!   whose length is bounded by the input's;
//! - a name that is made maps exactly as documented: a path is the bytes given (or the private
//!   directory joined with a short name), an abstract name is the bytes given, it fits
//!   `sun_path`, it prints its endpoint, and an absolute UTF-8 path prints back to the same name.
#![no_main]

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use localsock::Name;

/// `sun_path` minus the final NUL.
#[cfg(any(target_os = "linux", target_os = "android"))]
const PATH_MAX_BYTES: usize = 107;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const PATH_MAX_BYTES: usize = 103;

/// Where short names go, learnt once from a name that is known to be valid.
fn private_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let probe = Name::new("fuzz-probe").expect("the private directory is usable");
        probe.fs_path().unwrap().parent().unwrap().to_path_buf()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, arg)) = data.split_first() else {
        return;
    };
    let os = OsStr::from_bytes(arg);
    let result = match selector % 4 {
        0 => Name::new(os),
        1 => Name::path(os),
        2 => Name::abstract_name(arg),
        _ => Name::qt(os),
    };
    match result {
        Err(e) => {
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::InvalidInput | ErrorKind::Unsupported | ErrorKind::PermissionDenied
                ),
                "unexpected error kind {:?}: {e}",
                e.kind()
            );
            let msg = e.to_string();
            assert!(!msg.is_empty());
            // Debug-escaping is at most 10 characters a byte (`\u{10ffff}` for 4 bytes, `\u{1}`
            // for 1); the message names the input at most twice, plus fixed text and a directory.
            assert!(
                msg.len() <= 20 * arg.len() + 4096,
                "message of {} bytes for {} input bytes",
                msg.len(),
                arg.len()
            );
        }
        Ok(name) => check_name(selector % 4, arg, &name),
    }
});

fn check_name(selector: u8, arg: &[u8], name: &Name) {
    let kinds = [
        name.fs_path().is_some(),
        name.abstract_bytes().is_some(),
        name.pipe_name().is_some(),
    ];
    assert_eq!(kinds.iter().filter(|k| **k).count(), 1, "{name:?}");
    assert_eq!(name.clone(), *name);
    let shown = name.to_string();
    assert!(!shown.is_empty());
    assert_eq!(format!("{name:?}"), format!("Name({shown})"));
    assert!(!arg.is_empty(), "an empty argument made {name:?}");
    assert!(!arg.contains(&0) || selector == 2, "a NUL made {name:?}");

    if let Some(path) = name.fs_path() {
        let bytes = path.as_os_str().as_bytes();
        assert!(
            bytes.len() <= PATH_MAX_BYTES,
            "{} bytes do not fit sun_path",
            bytes.len()
        );
        assert!(!bytes.contains(&0));
        assert_eq!(shown, path.display().to_string());
        match selector {
            // Name::new: an absolute path as is, else a short name in the private directory.
            0 if arg.starts_with(b"/") => assert_eq!(bytes, arg),
            0 => {
                assert!(!arg.contains(&b'/') && !arg.contains(&b'\\'), "{name:?}");
                assert!(arg != b"." && arg != b"..", "{name:?}");
                assert_eq!(path.parent(), Some(private_dir()));
                assert_eq!(path.file_name().map(|f| f.as_bytes()), Some(arg));
            }
            1 => assert_eq!(bytes, arg),
            _ => assert!(bytes.ends_with(arg), "{name:?}"),
        }
        // An absolute path prints back to the same name (when it is valid UTF-8).
        if bytes.starts_with(b"/") {
            if let Ok(text) = std::str::from_utf8(bytes) {
                assert_eq!(Name::new(text).unwrap(), *name);
            }
        }
    }
    if let Some(abstract_bytes) = name.abstract_bytes() {
        assert_eq!(selector, 2);
        assert_eq!(abstract_bytes, arg);
        assert!(arg.len() <= PATH_MAX_BYTES);
        assert!(shown.starts_with('@'));
        assert!(shown.len() <= 1 + 4 * arg.len());
        assert_eq!(decode_abstract(&shown), arg, "{shown} does not print back");
        assert_eq!(Name::abstract_name(abstract_bytes).unwrap(), *name);
    }
    if name.pipe_name().is_some() {
        panic!("a pipe name on Unix: {name:?}");
    }
}

/// Decodes the printed `@name` form (`\xNN` escapes): it must give back the very bytes, so
/// that no two abstract names print alike.
fn decode_abstract(shown: &str) -> Vec<u8> {
    let body = shown.strip_prefix('@').unwrap().as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\\' {
            let hex = std::str::from_utf8(&body[i + 2..i + 4]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 4;
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
}
