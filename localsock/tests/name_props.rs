//! Properties of name mapping, through the public API: a short name, a path or an abstract
//! name maps to exactly the endpoint the docs give, prints as that endpoint, prints back to
//! the same `Name`, and the length limits hold exactly at the boundary (the last byte or
//! UTF-16 unit that fits is accepted, one more is `InvalidInput` with the limit in the message).
//!
//! The Windows properties run in the Windows test run (under Wine here); the fuzz target in
//! `fuzz/` covers the same constructors with arbitrary bytes for panics.

use std::io::ErrorKind;

use localsock::Name;
use proptest::prelude::*;

#[cfg(unix)]
mod unix {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};

    /// `sun_path` minus its final NUL.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const MAX: usize = 107;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const MAX: usize = 103;

    /// Where short names go in this process (learnt from one valid name).
    fn private_dir() -> PathBuf {
        let name = Name::new("props-probe").unwrap();
        name.fs_path().unwrap().parent().unwrap().to_path_buf()
    }

    /// Any byte but NUL and `/` (and `\`, which short names refuse so that the same short name
    /// is valid on every platform).
    fn short_byte() -> impl Strategy<Value = u8> {
        any::<u8>().prop_filter("separator or NUL", |b| !matches!(b, 0 | b'/' | b'\\'))
    }

    fn short_name(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(short_byte(), 1..=max_len)
            .prop_filter("`.` and `..` are not names", |v| v != b"." && v != b"..")
    }

    /// An absolute path: `/` and then bytes that are not NUL.
    fn absolute_path(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>().prop_filter("NUL", |b| *b != 0), 0..max_len)
            .prop_map(|rest| [b"/".as_slice(), &rest].concat())
    }

    fn assert_too_long(err: std::io::Error, len: usize) {
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("{len} bytes long")), "{msg}");
        assert!(msg.contains(&format!("limit is {MAX}")), "{msg}");
    }

    /// Prints an absolute path back through `Name::new` when it is text (Display is lossy for
    /// other bytes, as `Path::display` is).
    fn prints_back(name: &Name) {
        let shown = name.to_string();
        assert_eq!(shown, name.fs_path().unwrap().display().to_string());
        if std::str::from_utf8(name.fs_path().unwrap().as_os_str().as_bytes()).is_ok() {
            assert_eq!(Name::new(&shown).unwrap(), *name, "{shown}");
        }
    }

    proptest! {
        #[test]
        fn short_names_map_into_the_private_directory(s in short_name(MAX + 8)) {
            let dir = private_dir();
            let full_len = dir.as_os_str().len() + 1 + s.len();
            match Name::new(OsStr::from_bytes(&s)) {
                Ok(name) => {
                    prop_assert!(full_len <= MAX);
                    let want = dir.join(OsStr::from_bytes(&s));
                    prop_assert_eq!(name.fs_path(), Some(want.as_path()));
                    prop_assert_eq!(name.abstract_bytes(), None);
                    prop_assert_eq!(name.pipe_name(), None);
                    prints_back(&name);
                }
                Err(err) => {
                    prop_assert!(full_len > MAX, "{:?} refused: {}", s, err);
                    assert_too_long(err, full_len);
                }
            }
        }

        #[test]
        fn absolute_paths_are_used_as_is(p in absolute_path(MAX + 16)) {
            let os = OsStr::from_bytes(&p);
            for made in [Name::new(os), Name::path(os), Name::qt(os)] {
                match made {
                    Ok(name) => {
                        prop_assert!(p.len() <= MAX);
                        prop_assert_eq!(name.fs_path(), Some(Path::new(os)));
                        prints_back(&name);
                    }
                    Err(err) => {
                        prop_assert!(p.len() > MAX, "{:?} refused: {}", p, err);
                        assert_too_long(err, p.len());
                    }
                }
            }
        }

        #[test]
        fn a_nul_anywhere_is_refused(
            mut p in absolute_path(MAX),
            at in any::<proptest::sample::Index>(),
        ) {
            let i = at.index(p.len() + 1);
            p.insert(i, 0);
            let os = OsStr::from_bytes(&p);
            for made in [Name::new(os), Name::path(os), Name::qt(os)] {
                let err = made.unwrap_err();
                prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
                prop_assert!(err.to_string().contains("NUL"), "{}", err);
            }
        }

        #[test]
        fn short_names_exactly_at_the_limit(fill in short_byte(), last in short_byte()) {
            // The longest short name that fits, and one byte more: the same bytes otherwise.
            let room = MAX - private_dir().as_os_str().len() - 1;
            let mut s = vec![fill; room - 1];
            s.push(last);
            if s != b"." && s != b".." {
                let name = Name::new(OsStr::from_bytes(&s)).unwrap();
                prop_assert_eq!(name.fs_path().unwrap().as_os_str().len(), MAX);
            }
            s.push(last);
            assert_too_long(Name::new(OsStr::from_bytes(&s)).unwrap_err(), MAX + 1);
        }

        #[test]
        fn paths_exactly_at_the_limit(fill in short_byte()) {
            let at = [b"/".as_slice(), &[fill; MAX - 1]].concat();
            let over = [at.as_slice(), &[fill]].concat();
            for (ok, err) in [
                (Name::new(OsStr::from_bytes(&at)), Name::new(OsStr::from_bytes(&over))),
                (Name::path(OsStr::from_bytes(&at)), Name::path(OsStr::from_bytes(&over))),
                (Name::qt(OsStr::from_bytes(&at)), Name::qt(OsStr::from_bytes(&over))),
            ] {
                prop_assert_eq!(ok.unwrap().fs_path().unwrap().as_os_str().len(), MAX);
                assert_too_long(err.unwrap_err(), MAX + 1);
            }
        }

        /// Relative paths are kept relative by `Name::path` (resolved at bind/connect time).
        #[test]
        fn name_path_keeps_any_path(p in proptest::collection::vec(short_byte(), 1..=MAX)) {
            let name = Name::path(OsStr::from_bytes(&p)).unwrap();
            prop_assert_eq!(name.fs_path().unwrap().as_os_str().as_bytes(), p.as_slice());
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    mod abstract_names {
        use super::*;

        /// Decodes the `@name` form (`\xNN` for a backslash and for bytes that are not
        /// printable ASCII).
        fn parse_display(shown: &str) -> Vec<u8> {
            let body = shown.strip_prefix('@').expect("starts with @").as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < body.len() {
                if body[i] == b'\\' && body.get(i + 1) == Some(&b'x') {
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

        proptest! {
            #[test]
            fn abstract_names_keep_every_byte(b in proptest::collection::vec(any::<u8>(), 0..=MAX + 8)) {
                match Name::abstract_name(&b) {
                    Ok(name) => {
                        prop_assert!(!b.is_empty() && b.len() <= MAX);
                        prop_assert_eq!(name.abstract_bytes(), Some(b.as_slice()));
                        prop_assert_eq!(name.fs_path(), None);
                        let shown = name.to_string();
                        prop_assert!(shown.is_ascii(), "{}", shown);
                        // The printed form decodes back to exactly these bytes, so no two
                        // names print alike (a backslash is escaped too).
                        prop_assert_eq!(parse_display(&shown), b.clone());
                        prop_assert_eq!(Name::abstract_name(name.abstract_bytes().unwrap()).unwrap(), name);
                    }
                    Err(err) => {
                        prop_assert!(b.is_empty() || b.len() > MAX);
                        prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
                        if !b.is_empty() {
                            prop_assert!(err.to_string().contains(&format!("limit is {MAX}")), "{}", err);
                        }
                    }
                }
            }

            /// Names made of the characters of the escape syntax itself (`\`, `x`, hex digits)
            /// and of bytes that get escaped: two different names never print alike.
            #[test]
            fn abstract_display_is_unambiguous(
                a in proptest::collection::vec(proptest::sample::select(b"\\x0a@\0\xff".to_vec()), 1..12),
                b in proptest::collection::vec(proptest::sample::select(b"\\x0a@\0\xff".to_vec()), 1..12),
            ) {
                let (na, nb) = (Name::abstract_name(&a).unwrap(), Name::abstract_name(&b).unwrap());
                prop_assert_eq!(parse_display(&na.to_string()), a.clone());
                prop_assert_eq!(na.to_string() == nb.to_string(), a == b, "{} / {}", na, nb);
            }

            #[test]
            fn abstract_names_exactly_at_the_limit(fill in any::<u8>()) {
                prop_assert!(Name::abstract_name(vec![fill; MAX]).is_ok());
                let err = Name::abstract_name(vec![fill; MAX + 1]).unwrap_err();
                prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
                prop_assert!(err.to_string().contains(&format!("{} bytes long", MAX + 1)), "{}", err);
            }
        }
    }
}

#[cfg(windows)]
mod windows {
    use super::*;

    const PREFIX: &str = r"\\.\pipe\";
    const MAX_UNITS: usize = 256;

    /// Characters a short name may hold: anything but NUL, `/`, `\` and `:` (a second
    /// character `:` reads as a drive, `C:x`, and is refused).
    fn short_char() -> impl Strategy<Value = char> {
        any::<char>().prop_filter("separator, NUL or colon", |c| {
            !matches!(c, '\0' | '/' | '\\' | ':')
        })
    }

    fn short_name(max_chars: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(short_char(), 1..=max_chars)
            .prop_map(|cs| cs.into_iter().collect::<String>())
            .prop_filter("`.` and `..` are not names", |s| s != "." && s != "..")
    }

    fn units(s: &str) -> usize {
        s.encode_utf16().count()
    }

    proptest! {
        #[test]
        fn short_names_become_local_pipe_names(s in short_name(MAX_UNITS)) {
            let full = format!("{PREFIX}{s}");
            match Name::new(&s) {
                Ok(name) => {
                    prop_assert!(units(&full) <= MAX_UNITS);
                    prop_assert_eq!(name.pipe_name(), Some(full.as_str()));
                    prop_assert_eq!(name.to_string(), full.clone());
                    // The full name prints back to the same Name, and Qt's rule agrees.
                    prop_assert_eq!(Name::new(&full).unwrap(), name.clone());
                    prop_assert_eq!(Name::qt(&s).unwrap(), name);
                }
                Err(err) => {
                    prop_assert!(units(&full) > MAX_UNITS, "{:?} refused: {}", s, err);
                    prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
                    let msg = err.to_string();
                    prop_assert!(msg.contains(&format!("{} UTF-16 units", units(&full))), "{}", msg);
                    prop_assert!(msg.contains(&format!("limit is {MAX_UNITS}")), "{}", msg);
                }
            }
        }

        #[test]
        fn pipe_names_exactly_at_the_limit(c in short_char()) {
            // Fill with `c` and pad with ASCII so the total is exactly the limit in UTF-16 units.
            let per = c.len_utf16();
            let room = MAX_UNITS - PREFIX.len();
            let s: String = std::iter::repeat(c).take(room / per).chain(std::iter::repeat('p').take(room % per)).collect();
            prop_assume!(s != "." && s != "..");
            let at = Name::new(&s).unwrap();
            prop_assert_eq!(units(at.pipe_name().unwrap()), MAX_UNITS);
            let over = format!("{s}p");
            let err = Name::new(&over).unwrap_err();
            prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
            prop_assert!(err.to_string().contains("257 UTF-16 units"), "{}", err);
        }

        #[test]
        fn the_prefix_is_case_insensitive_and_kept(s in short_name(32), mask in any::<u8>()) {
            let prefix: String = "pipe".chars().enumerate().map(|(i, ch)| {
                if mask & (1 << i) != 0 { ch.to_ascii_uppercase() } else { ch }
            }).collect();
            let full = format!(r"\\.\{prefix}\{s}");
            let name = Name::new(&full).unwrap();
            prop_assert_eq!(name.pipe_name(), Some(full.as_str()));
        }

        #[test]
        fn remote_pipes_are_refused(
            host in proptest::collection::vec(proptest::char::range('a', 'z'), 1..=12),
            s in short_name(16),
        ) {
            let host: String = host.into_iter().collect();
            let err = Name::new(format!(r"\\{host}\pipe\{s}")).unwrap_err();
            prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
            prop_assert!(err.to_string().contains("remote"), "{}", err);
        }
    }
}
