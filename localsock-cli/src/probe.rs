//! `localsock probe`: is a server listening, is the name stale, or is nothing there?

use std::io;
use std::process::ExitCode;

use localsock::{ConnectOptions, Name};

use crate::cli::ProbeArgs;
use crate::{BAD, BOLD, GOOD, WARN};

const LISTENING: u8 = 0;
const ABSENT: u8 = 1;
const STALE: u8 = 2;
const FAILED: u8 = 3;

pub(crate) fn run(args: ProbeArgs) -> ExitCode {
    let name = match crate::parse_name(&args.name) {
        Ok(name) => name,
        Err(e) => {
            crate::error(&e.to_string());
            return ExitCode::from(FAILED);
        }
    };
    let result = ConnectOptions::new().timeout(args.timeout).connect(&name);
    let code = match result {
        Ok(stream) => {
            outln!(
                "{GOOD}listening{GOOD:#} {BOLD}{name}{BOLD:#}{}",
                server_details(&stream)
            );
            LISTENING
        }
        Err(e) => match classify(&name, &e) {
            Outcome::Absent => {
                outln!("{WARN}absent{WARN:#} {BOLD}{name}{BOLD:#} (nothing is there)");
                ABSENT
            }
            Outcome::Stale => {
                outln!(
                    "{BAD}stale{BAD:#} {BOLD}{name}{BOLD:#} (a socket file with no server: left \
                     by a server that is gone; a new server reclaims it)"
                );
                STALE
            }
            Outcome::Busy => {
                outln!(
                    "{GOOD}listening{GOOD:#} {BOLD}{name}{BOLD:#} (busy: the server did not \
                     accept within {})",
                    humantime::format_duration(args.timeout)
                );
                LISTENING
            }
            Outcome::NotASocket => {
                crate::error(&format!(
                    "probe {name}: something that is not a socket is there (connect refused)"
                ));
                FAILED
            }
            Outcome::Failed => {
                crate::error(&format!("probe: {e}"));
                FAILED
            }
        },
    };
    ExitCode::from(code)
}

enum Outcome {
    Absent,
    Stale,
    Busy,
    NotASocket,
    Failed,
}

fn classify(name: &Name, e: &io::Error) -> Outcome {
    match e.kind() {
        io::ErrorKind::NotFound => Outcome::Absent,
        io::ErrorKind::ConnectionRefused => match name.fs_path() {
            // A refused connect on a path means a socket file with nobody behind it, if the
            // path is a socket at all.
            Some(path) if is_socket(path) => Outcome::Stale,
            Some(_) => Outcome::NotASocket,
            // An abstract name with no listener is simply absent.
            None => Outcome::Absent,
        },
        io::ErrorKind::TimedOut => Outcome::Busy,
        _ => Outcome::Failed,
    }
}

#[cfg(unix)]
fn is_socket(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(not(unix))]
fn is_socket(_path: &std::path::Path) -> bool {
    false
}

/// `" (server pid 1234, uid 1000)"`: from the client side, the peer credentials are the
/// server's (on Linux, those of the process that created the listening socket).
fn server_details(stream: &localsock::LocalStream) -> String {
    match crate::describe_peer(stream).strip_prefix(" (") {
        Some(rest) if !rest.starts_with("peer credentials") => format!(" (server {rest}"),
        _ => String::new(),
    }
}
