//! The backend (`src/sys`) does not know the public types (ARCHITECTURE.md, "What each layer
//! may know"): the portable layer resolves names and options into the plain data of
//! `sys/mod.rs` (`Addr`, `BindSpec`, `ConnectSpec`, `Credentials`, ...) before calling it.
//!
//! This reads the source tree. In the code of every file under `src/sys` (comments and string
//! literals left out):
//! - a `crate::` path may lead only into `sys`, `error` (pure `io::Error` helpers) and
//!   `message` (the message limits and the words of its errors);
//! - no public type of the crate, nor an options struct behind one, is named at all, by any
//!   path (`crate::Name`, `super::super::Name`, a glob import);
//! - the one exception is `sys/{unix,windows}/from_raw.rs`: `FromRawFd` / `FromRawHandle` of
//!   the public types, whose `unsafe fn` can only live in `sys`; those files hold nothing else.
//!
//! It checks text, the same on every platform, so it runs where the sources are: not in the
//! Windows leg, whose test executables run under Wine, away from the build machine's paths.
#![cfg(not(windows))]

use std::fs;
use std::path::{Path, PathBuf};

/// The public types and the crate-private option structs behind them.
const PUBLIC_TYPES: &[&str] = &[
    "Name",
    "Repr",
    "LocalStream",
    "LocalListener",
    "Incoming",
    "MessageStream",
    "MessageListener",
    "Message",
    "ListenerOptions",
    "ConnectOptions",
    "Access",
    "PeerCredentials",
    "ServerIdentity",
    "ConnectOptionsExt",
    "ListenerOptionsExt",
    "ConnectOptionsWindows",
    "ListenerOptionsWindows",
    "ImpersonationLevel",
    "ShmOptions",
    "ShmStream",
    "OwnedOsHandle",
    "BorrowedOsHandle",
];

/// Where a `crate::` path in `sys` may lead.
const ALLOWED_MODULES: &[&str] = &["sys", "error", "message"];

/// The files that implement `FromRaw*` for public types, and the types they may name.
const FROM_RAW_FILES: &[(&str, &[&str])] = &[
    ("unix/from_raw.rs", &["LocalStream", "LocalListener"]),
    ("windows/from_raw.rs", &["LocalStream"]),
];

/// The source with comments, string and char literals blanked out (lifetimes kept).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"...", r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\''); a lifetime ('a) has no closing quote.
            i += 1;
            if chars.get(i) == Some(&'\\') {
                i += 2;
            } else {
                i += 1;
            }
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The identifiers of `code`, in order.
fn identifiers(code: &str) -> Vec<&str> {
    code.split(|c: char| !is_ident_char(c))
        .filter(|word| word.starts_with(|c: char| c.is_alphabetic() || c == '_'))
        .collect()
}

/// The first segment of every path that starts with `crate::` (each item of a
/// `crate::{a, b::c}` group).
fn crate_path_heads(code: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(is_ident_char) {
            continue; // e.g. `foo_crate::`
        }
        let trimmed = rest.trim_start();
        if let Some(group) = trimmed.strip_prefix('{') {
            let mut depth = 1;
            let mut end = group.len();
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain(std::iter::once(',')) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let head: String = item
                            .trim()
                            .chars()
                            .take_while(|c| is_ident_char(*c))
                            .collect();
                        if !head.is_empty() {
                            heads.push(head);
                        }
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            heads.push(trimmed.chars().take_while(|c| is_ident_char(*c)).collect());
        }
    }
    heads
}

/// What is wrong with one file of `sys` (`relative` to `src/sys`), if anything.
fn violations(relative: &str, source: &str) -> Vec<String> {
    let code = code_only(source);
    let mut found = Vec::new();
    let exempt: &[&str] = FROM_RAW_FILES
        .iter()
        .find(|(file, _)| *file == relative)
        .map_or(&[], |(_, types)| types);
    for head in crate_path_heads(&code) {
        if !ALLOWED_MODULES.contains(&head.as_str()) && !exempt.contains(&head.as_str()) {
            found.push(format!(
                "{relative}: `crate::{head}`: sys may reach only crate::{{{}}}",
                ALLOWED_MODULES.join(", ")
            ));
        }
    }
    for ident in identifiers(&code) {
        if PUBLIC_TYPES.contains(&ident) && !exempt.contains(&ident) {
            found.push(format!(
                "{relative}: names the public type `{ident}`; give sys plain data instead"
            ));
        }
    }
    if !exempt.is_empty() {
        let words = identifiers(&code);
        for (k, word) in words.iter().enumerate() {
            if *word == "impl" && !matches!(words.get(k + 1), Some(&"FromRawFd" | &"FromRawHandle"))
            {
                found.push(format!(
                    "{relative}: holds something other than FromRawFd/FromRawHandle impls"
                ));
            }
            if matches!(
                *word,
                "fn" | "struct" | "enum" | "trait" | "mod" | "static" | "const"
            ) && !matches!(words.get(k + 1), Some(&"from_raw_fd" | &"from_raw_handle"))
            {
                found.push(format!(
                    "{relative}: `{word} {}` does not belong with the FromRaw impls",
                    words.get(k + 1).unwrap_or(&"")
                ));
            }
        }
    }
    found.dedup();
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn sys_does_not_know_the_public_types() {
    let sys = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sys");
    let mut files = Vec::new();
    rust_files(&sys, &mut files);
    files.sort();
    // Both backends and the contract are read (a wrong path would make this pass on nothing).
    for expected in [
        "mod.rs",
        "unix/mod.rs",
        "unix/stream.rs",
        "windows/listener.rs",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(expected)),
            "src/sys/{expected} not found under {}",
            sys.display()
        );
    }
    for (exempt, _) in FROM_RAW_FILES {
        assert!(
            files.iter().any(|f| f.ends_with(exempt)),
            "the exempt file src/sys/{exempt} is gone: drop it from FROM_RAW_FILES"
        );
    }
    let mut all = Vec::new();
    for file in &files {
        let relative = file
            .strip_prefix(&sys)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let source = fs::read_to_string(file).unwrap();
        all.extend(violations(&relative, &source));
    }
    assert!(
        all.is_empty(),
        "sys knows the public types:\n{}",
        all.join("\n")
    );
}

/// The checker finds what it must and nothing else, so the test above can fail.
#[test]
fn the_checker_catches_public_types_and_ignores_comments_and_strings() {
    let bad = [
        "use crate::{LocalStream, MessageStream, Name};",
        "use crate::name::Repr;",
        "use crate::listener::Access;",
        "use crate::{ConnectOptions, Name, PeerCredentials};",
        "use crate::identity::{ServerUser, UserId};",
        "fn f(n: &super::super::Name) {}",
        "use crate::{sys::{Addr, Kind}, os::windows::ConnectOptionsWindows};",
        "use crate::*;",
        "let x = crate::ListenerOptions::new();",
    ];
    for source in bad {
        assert!(
            !violations("unix/stream.rs", source).is_empty(),
            "not caught: {source}"
        );
    }
    let good = [
        "use crate::sys::{Addr, BindSpec, Kind};\nuse crate::error;",
        "use crate::message::{self as policy, MAX_HANDLES, MAX_MESSAGE_LEN};",
        "// a Name, LocalStream and crate::listener::Access in a comment\nfn f() {}",
        "/// [`crate::Name`] in docs\nfn f() {}",
        r#"let e = "Access::Group on Windows needs an explicit group"; let c = '"'; let p = r"\\.\pipe\Name";"#,
        "fn f<'a>(x: &'a str) -> &'a str { x } // Name",
        "let s = SecurityQos::Identification; let k = Kind::Messages;",
    ];
    for source in good {
        assert_eq!(
            violations("unix/stream.rs", source),
            Vec::<String>::new(),
            "{source}"
        );
    }
    // The exempt file may name its types in FromRaw impls, and nothing else may be there.
    let from_raw = "use crate::{LocalListener, LocalStream};\n\
                    impl FromRawFd for LocalStream { unsafe fn from_raw_fd(fd: RawFd) -> LocalStream { todo!() } }";
    assert_eq!(
        violations("unix/from_raw.rs", from_raw),
        Vec::<String>::new()
    );
    assert!(!violations("unix/stream.rs", from_raw).is_empty());
    let extra = format!("{from_raw}\nfn helper() {{}}");
    assert!(!violations("unix/from_raw.rs", &extra).is_empty());
    let other_impl = "impl AsFd for LocalStream {}";
    assert!(!violations("unix/from_raw.rs", other_impl).is_empty());
    let other_type = "impl FromRawFd for MessageStream {}";
    assert!(!violations("unix/from_raw.rs", other_type).is_empty());
}
