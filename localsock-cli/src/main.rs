//! `localsock`: socat for local sockets (Unix domain sockets and Windows named pipes), with
//! probe, echo and a built-in benchmark. Run `localsock --help`.

/// `println!` through `anstream` (colour only on a terminal without `NO_COLOR`) that ignores
/// a closed stdout (`| head`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(anstream::stdout(), $($arg)*);
    }};
}

/// `eprintln!` through `anstream`, ignoring a closed stderr.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(anstream::stderr(), $($arg)*);
    }};
}

#[cfg(unix)]
mod bench;
mod cli;
mod copy;
mod echo;
mod forward;
#[cfg(unix)]
mod pin;
mod probe;
mod serve;

/// The benchmark compares with raw Unix sockets; elsewhere it says so.
#[cfg(not(unix))]
mod bench {
    use std::io;

    fn unsupported() -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "bench: the benchmark compares with raw Unix domain sockets and runs on Unix only",
        )
    }

    pub(crate) fn run(_args: crate::cli::BenchArgs) -> io::Result<()> {
        Err(unsupported())
    }

    pub(crate) fn serve(_args: crate::cli::BenchServerArgs) -> io::Result<()> {
        Err(unsupported())
    }
}

use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anstyle::{AnsiColor, Style};
use clap::Parser;
use localsock::{Access, ConnectOptions, LocalStream, Name, ServerIdentity};

use crate::cli::{AccessArg, Cli, Command, ConnectArgs, EofArgs, ListenArgs};
use crate::copy::CopyOptions;

pub(crate) const ERROR: Style = AnsiColor::Red.on_default().bold();
pub(crate) const WARN: Style = AnsiColor::Yellow.on_default().bold();
pub(crate) const GOOD: Style = AnsiColor::Green.on_default().bold();
pub(crate) const BAD: Style = AnsiColor::Red.on_default().bold();
pub(crate) const DIM: Style = Style::new().dimmed();
pub(crate) const BOLD: Style = Style::new().bold();

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    QT_NAMES.store(cli.qt, Ordering::Relaxed);
    let result = match cli.command {
        Command::Listen(args) => listen(args),
        Command::Connect(args) => connect(args),
        Command::Echo(args) => echo::run(args),
        Command::Forward(args) => forward::run(args),
        Command::Probe(args) => return probe::run(args),
        Command::Bench(args) => bench::run(args),
        Command::BenchServer(args) => bench::serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error(&e.to_string());
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout as clap prints them; a usage mistake becomes one line on
/// stderr and exit status 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let rendered = e.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    error(&format!("{message} (see localsock --help)"));
    ExitCode::from(2)
}

/// One line on stderr: `localsock: error: MESSAGE`.
pub(crate) fn error(message: &str) {
    errln!("localsock: {ERROR}error:{ERROR:#} {message}");
}

/// One line on stderr: `localsock: warning: MESSAGE`.
pub(crate) fn warn(message: &str) {
    errln!("localsock: {WARN}warning:{WARN:#} {message}");
}

/// Set once from `--qt`: resolve names with Qt's rule (`Name::qt`) instead of `Name::new`.
static QT_NAMES: AtomicBool = AtomicBool::new(false);

/// Parses a NAME argument, saying which argument was wrong.
pub(crate) fn parse_name(text: &str) -> io::Result<Name> {
    let name = if QT_NAMES.load(Ordering::Relaxed) {
        Name::qt(text)
    } else {
        Name::new(text)
    };
    name.map_err(|e| io::Error::new(e.kind(), format!("invalid name {text:?}: {e}")))
}

pub(crate) fn access(arg: AccessArg) -> Access {
    match arg {
        AccessArg::Owner => Access::Owner,
        AccessArg::Group => Access::Group,
        AccessArg::Everyone => Access::Everyone,
    }
}

fn listen(args: ListenArgs) -> io::Result<()> {
    let (listener, inherited) =
        serve::local_listener(&args.name, args.access, args.group.as_deref())?;
    let name = listener.name().clone();
    let interactive = io::stderr().is_terminal();
    if let Some(origin) = &inherited {
        errln!("listening on {name} (socket activation: {origin})");
    } else if interactive {
        errln!("{DIM}listening on {name}{DIM:#}");
    }
    let options = copy_options(&args.eof, None);
    let mut stdin = copy::Stdin::start();
    loop {
        let stream = listener.accept()?;
        if let Err(e) = check_peer_user(&stream, &args.eof, "client") {
            warn(&format!("{e}; waiting for another client"));
            continue;
        }
        if interactive {
            errln!("{DIM}connected{}{DIM:#}", describe_peer(&stream));
        }
        copy::copy_both_ways(&stream, &mut stdin, options)?;
        drop(stream);
        if !args.keep_open {
            return Ok(());
        }
        if interactive {
            errln!("{DIM}closed; waiting for the next connection{DIM:#}");
        }
    }
}

fn connect(args: ConnectArgs) -> io::Result<()> {
    let name = parse_name(&args.name)?;
    let mut opts = ConnectOptions::new();
    opts.timeout(args.timeout).wait_for_server(args.wait);
    // --qt names live in the shared temp directory, where any user can put a server first:
    // unless told otherwise, the server must be us or an administrator (checked by the library
    // before anything is sent, on every platform).
    let qt_guard = QT_NAMES.load(Ordering::Relaxed)
        && !args.eof.allow_other_user
        && args.server_user.is_none();
    if let Some(required) = args.server_user {
        opts.server_identity(required);
    } else if qt_guard {
        opts.server_identity(ServerIdentity::CurrentUserOrAdmin);
    }
    let stream = opts.connect(&name).map_err(|e| {
        if qt_guard && e.to_string().contains("not who it must be") {
            io::Error::new(
                e.kind(),
                format!(
                    "{e}; --qt names live in the shared temp directory, where any user can put \
                     a server: pass --allow-other-user to talk to it anyway"
                ),
            )
        } else {
            e
        }
    })?;
    let mut stdin = copy::Stdin::start();
    copy::copy_both_ways(
        &stream,
        &mut stdin,
        copy_options(&args.eof, args.read_timeout),
    )
}

/// With `--qt`, the sending side stays open after stdin ends (1 s of quiet unless
/// `--quit-after` says otherwise): Qt takes a half-close for a close.
fn copy_options(eof: &EofArgs, read_timeout: Option<std::time::Duration>) -> CopyOptions {
    let qt = QT_NAMES.load(Ordering::Relaxed);
    CopyOptions {
        quit_after: eof
            .quit_after
            .or(qt.then_some(std::time::Duration::from_secs(1))),
        read_timeout,
    }
}

/// `listen --qt`: refuses a client that runs as another user (not us, not root) unless
/// `--allow-other-user`: Qt's names live in the shared temp directory, where anyone may find
/// our server. (`connect --qt` checks its server with the library's `ServerIdentity`.)
#[cfg(unix)]
fn check_peer_user(stream: &LocalStream, eof: &EofArgs, role: &str) -> io::Result<()> {
    if !QT_NAMES.load(Ordering::Relaxed) || eof.allow_other_user {
        return Ok(());
    }
    let me = rustix::process::geteuid().as_raw();
    let uid = stream.peer_credentials().ok().and_then(|c| c.uid());
    match uid {
        Some(uid) if uid == me || uid == 0 => Ok(()),
        Some(uid) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the {role} runs as uid {uid}, not as you (uid {me}): --qt names live in the \
                 shared temp directory, where any user can put a server or connect; pass \
                 --allow-other-user to talk to it anyway"
            ),
        )),
        None => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "cannot tell which user the {role} runs as; --qt names live in the shared \
                 temp directory: pass --allow-other-user to talk to it anyway"
            ),
        )),
    }
}

/// Windows: Qt's names are `\\.\pipe\NAME` there, the same namespace as ours; the check of
/// the server's identity belongs to the library's connect options.
#[cfg(not(unix))]
fn check_peer_user(_stream: &LocalStream, _eof: &EofArgs, _role: &str) -> io::Result<()> {
    Ok(())
}

/// `" (pid 1234, uid 1000)"`, with what the OS tells about the peer.
pub(crate) fn describe_peer(stream: &LocalStream) -> String {
    match stream.peer_credentials() {
        Ok(creds) => {
            let mut parts = Vec::new();
            if let Some(pid) = creds.pid() {
                parts.push(format!("pid {pid}"));
            }
            if let Some(uid) = creds.uid() {
                parts.push(format!("uid {uid}"));
            }
            if let Some(sid) = creds.user_sid() {
                parts.push(format!("user {sid}"));
            }
            if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            }
        }
        Err(e) => format!(" (peer credentials unavailable: {e})"),
    }
}
