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
#[cfg(unix)]
mod pin;
mod probe;

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
use localsock::{Access, ConnectOptions, ListenerOptions, LocalStream, Name};

use crate::cli::{AccessArg, Cli, Command, ConnectArgs, ListenArgs};

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
    let name = parse_name(&args.name)?;
    let listener = ListenerOptions::new()
        .access(access(args.access))
        .bind(&name)?;
    let interactive = io::stderr().is_terminal();
    if interactive {
        errln!("{DIM}listening on {name}{DIM:#}");
    }
    let mut stdin = copy::Stdin::start();
    loop {
        let stream = listener.accept()?;
        if interactive {
            errln!("{DIM}connected{}{DIM:#}", describe_peer(&stream));
        }
        copy::copy_both_ways(&stream, &mut stdin)?;
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
    if let Some(required) = args.server_user {
        opts.server_identity(required);
    }
    let stream = opts.connect(&name)?;
    let mut stdin = copy::Stdin::start();
    copy::copy_both_ways(&stream, &mut stdin)
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
