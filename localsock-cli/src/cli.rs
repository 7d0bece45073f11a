//! Command-line syntax: what `localsock --help` shows.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// socat for local sockets: Unix domain sockets and Windows named pipes, with probe, echo and a
/// built-in benchmark.
///
/// NAME is a short name (resolved to a per-user private directory on Unix, `\\.\pipe\NAME` on
/// Windows), a path starting with '/', or a full `\\.\pipe\...` name on Windows.
#[derive(Debug, Parser)]
#[command(name = "localsock", version, propagate_version = true)]
#[command(after_help = "Examples:\n  \
    localsock listen svc                  # one connection: stdin -> socket -> stdout\n  \
    printf 'hi' | localsock connect svc   # send, print the reply, exit\n  \
    localsock echo svc                    # echo server for many clients\n  \
    localsock probe svc; echo $?          # 0 listening, 1 absent, 2 stale, 3 error\n  \
    localsock forward tcp:127.0.0.1:8080 svc   # TCP clients -> local socket svc\n  \
    localsock forward svc tcp:localhost:5432   # local clients -> TCP server\n  \
    systemd-socket-activate -l /tmp/s.sock localsock echo /tmp/s.sock   # socket activation\n  \
    localsock bench                       # library vs raw sockets, same run\n  \
    localsock bench --shm                 # shared memory vs raw sockets (Linux)\n\n\
Socket activation: listen, echo and forward serve the listening socket a service manager \
passes (systemd's LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES) instead of binding NAME themselves, \
and say so in their first line.")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Resolve NAME with Qt's rule instead, to talk to QLocalServer/QLocalSocket programs given
    /// the same string: QDir::tempPath()/NAME on Unix ($TMPDIR or /tmp, symlinks resolved),
    /// `\\.\pipe\NAME` on Windows. With --qt, connect and listen also keep their sending
    /// side open after stdin ends (Qt treats a half-close as a close; see --quit-after), and
    /// refuse a peer that runs as another user (the temp directory is shared; see
    /// --allow-other-user).
    #[arg(long, global = true)]
    pub(crate) qt: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Listen on NAME, accept a connection and copy stdin -> socket and socket -> stdout.
    ///
    /// Both directions run at once. When stdin ends, the sending side of the socket is shut
    /// down (the peer reads EOF) while the peer's data keeps flowing to stdout; the connection is
    /// done when both directions are.
    Listen(ListenArgs),
    /// Connect to NAME and copy stdin -> socket and socket -> stdout, like `nc -U`.
    ///
    /// Exits when both directions are done: `printf 'hi' | localsock connect NAME` sends "hi",
    /// shuts down its sending side, prints the reply and exits once the server closes.
    ///
    /// Windows named pipes cannot half-close: there, once stdin has ended, connect also exits
    /// when the server has been quiet for 0.5 s.
    Connect(ConnectArgs),
    /// Run an echo server on NAME for many concurrent clients (one thread per client).
    ///
    /// Prints one line per connection with the peer's pid and uid. Clients that stay idle or
    /// do not read their echo are dropped after --idle-timeout / --write-timeout, and one user
    /// may hold at most --max-per-user connections, so that a flood of idle connections from
    /// one user cannot lock the others out.
    Echo(EchoArgs),
    /// Forward connections from FROM to TO: a local socket or pipe and TCP, either way.
    ///
    /// FROM and TO are each a local NAME or tcp:HOST:PORT. FROM is listened on; for every
    /// client accepted there, TO is connected to, and bytes are copied both ways at once.
    /// When one side shuts down its sending side, the other side's sending side is shut down
    /// too (half-close, where both ends support it: Windows pipes do not). One line per
    /// connection on stderr: the peer (pid/uid, SID or address), bytes each way, duration
    /// and how it ended.
    ///
    /// Listening on a TCP address that is not loopback exposes the local service to the
    /// network: refused unless --allow-remote is given.
    Forward(ForwardArgs),
    /// Tell whether a server is listening on NAME.
    ///
    /// Exit status: 0 listening, 1 absent, 2 stale (a socket file left by a dead server),
    /// 3 error. Prints the resolved endpoint and, when listening, the server's pid and uid where
    /// the OS tells.
    Probe(ProbeArgs),
    /// Measure the library against raw OS sockets in the same run.
    ///
    /// Starts the server in a separate process (this binary again) and measures, alternating
    /// localsock and the raw baseline (std's UnixStream on both sides): 64-byte ping-pong latency
    /// (median and p99), streaming throughput with 64 KiB and 4 KiB writes, and the
    /// connect-echo-close rate with the server's descriptor count before and after. Reports
    /// medians over repetitions.
    ///
    /// With --shm, measures the shared-memory data path (ShmOptions) against the raw socket
    /// instead, with client and server on different CPUs and on the same CPU: 64-byte
    /// round trips, 64 KiB and 1 MiB writes, and the server's CPU use on an idle connection.
    Bench(BenchArgs),
    /// The benchmark's server process (internal).
    #[command(hide = true)]
    BenchServer(BenchServerArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// The name to listen on.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
    /// Serve connections one after another instead of exiting after the first.
    ///
    /// Standard input goes to the connection that is open when it is read.
    #[arg(short = 'k', long)]
    pub(crate) keep_open: bool,
    /// Who may connect (Unix: the socket file's mode; Windows: the pipe's DACL).
    #[arg(long, value_enum, default_value_t = AccessArg::Owner)]
    pub(crate) access: AccessArg,
    /// With --access group on Windows, the group admitted: a SID (S-1-5-32-545) or an account
    /// name (Users, DOMAIN\team); required there. Not used on Unix, where the group is the
    /// socket file's (its directory's when that is set-group-ID).
    #[arg(long, value_name = "GROUP")]
    pub(crate) group: Option<String>,
    #[command(flatten)]
    pub(crate) eof: EofArgs,
}

/// How `listen` and `connect` end a connection once stdin has ended.
#[derive(Debug, Args)]
pub(crate) struct EofArgs {
    /// After stdin ends, keep the sending side open and exit when the peer closes or has sent
    /// nothing for DUR (like `nc -q` / `socat -t`). Without it, the sending side is shut down
    /// at the end of stdin (the peer reads EOF), which Qt peers treat as a close. --qt sets
    /// 1s unless given.
    #[arg(short = 'q', long, value_name = "DUR", value_parser = parse_duration)]
    pub(crate) quit_after: Option<Duration>,
    /// With --qt: talk to a peer that runs as another user (not you, not root; on Windows not
    /// LocalSystem or Administrators). Qt names live in the shared temp directory (on Windows
    /// the shared pipe namespace), where anyone can put a server (or be the client), so such a
    /// peer is refused by default: connect checks the server before sending anything (as
    /// --server-user me-or-admin), listen drops such a client (Unix).
    #[arg(long)]
    pub(crate) allow_other_user: bool,
}

/// Who may connect to a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum AccessArg {
    /// Only this user (0600).
    Owner,
    /// This user and the socket file's group (0660).
    Group,
    /// Every local user (0666).
    Everyone,
}

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// The name to connect to.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
    /// Give up connecting after DUR (e.g. 500ms, 2s, 1m).
    #[arg(short, long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Wait for the server to appear (within --timeout) instead of failing at once.
    #[arg(short, long)]
    pub(crate) wait: bool,
    /// Who the server must be, checked before anything is sent: `any`, `me` (the current
    /// user), `me-or-admin` (also root / LocalSystem / Administrators), a uid (Unix) or a SID
    /// (Windows). Default: `me-or-admin` for short names, `any` for explicit paths and pipes.
    #[arg(long, value_name = "WHO", value_parser = parse_server_identity)]
    pub(crate) server_user: Option<localsock::ServerIdentity>,
    /// Fail if the server sends nothing for DUR (a server that accepts and then never
    /// answers would otherwise keep connect waiting forever).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub(crate) read_timeout: Option<Duration>,
    #[command(flatten)]
    pub(crate) eof: EofArgs,
}

/// `--server-user`: see [`ConnectArgs::server_user`].
fn parse_server_identity(s: &str) -> Result<localsock::ServerIdentity, String> {
    use localsock::ServerIdentity;
    match s {
        "any" => Ok(ServerIdentity::Any),
        "me" => Ok(ServerIdentity::CurrentUser),
        "me-or-admin" => Ok(ServerIdentity::CurrentUserOrAdmin),
        #[cfg(unix)]
        uid => uid
            .parse()
            .map(ServerIdentity::Uid)
            .map_err(|_| format!("{uid:?} is not any, me, me-or-admin or a uid")),
        #[cfg(windows)]
        sid if sid.len() > 4 && sid[..4].eq_ignore_ascii_case("S-1-") => {
            Ok(ServerIdentity::Sid(sid.to_owned()))
        }
        #[cfg(windows)]
        other => Err(format!(
            "{other:?} is not any, me, me-or-admin or a SID (S-1-...)"
        )),
    }
}

#[derive(Debug, Args)]
pub(crate) struct EchoArgs {
    /// The name to listen on.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
    /// Serve at most N clients at once; further clients wait in the backlog.
    #[arg(short, long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_clients: u32,
    /// At most N connections per user (uid, or SID on Windows); more are closed at once.
    /// Default: --max-clients with --access owner, a quarter of it otherwise.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_per_user: Option<u32>,
    /// Drop a client that sends nothing for DUR ("off" to never).
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_limit)]
    pub(crate) idle_timeout: Limit,
    /// Drop a client that does not read its echo for DUR ("off" to never).
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_limit)]
    pub(crate) write_timeout: Limit,
    /// Who may connect.
    #[arg(long, value_enum, default_value_t = AccessArg::Owner)]
    pub(crate) access: AccessArg,
    /// With --access group on Windows, the group admitted: a SID (S-1-5-32-545) or an account
    /// name (Users, DOMAIN\team); required there. Not used on Unix, where the group is the
    /// socket file's (its directory's when that is set-group-ID).
    #[arg(long, value_name = "GROUP")]
    pub(crate) group: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ForwardArgs {
    /// Where to listen: a local NAME, or tcp:HOST:PORT (e.g. tcp:127.0.0.1:8080).
    #[arg(value_name = "FROM")]
    pub(crate) from: String,
    /// Where to connect for each client: a local NAME, or tcp:HOST:PORT.
    #[arg(value_name = "TO")]
    pub(crate) to: String,
    /// Serve at most N clients at once; further clients wait in the backlog.
    #[arg(short, long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_clients: u32,
    /// At most N connections per user (uid or SID; the IP address for TCP clients); more are
    /// closed at once. Default: a quarter of --max-clients when FROM is a local name that
    /// other users may connect to (--access group/everyone, or socket activation), else
    /// --max-clients (TCP clients cannot be told apart by user).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_per_user: Option<u32>,
    /// Give up connecting to TO after DUR; that client is then closed.
    #[arg(short, long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Wait for TO to appear (within --timeout) instead of failing the client at once.
    #[arg(short, long)]
    pub(crate) wait: bool,
    /// Close a connection when neither side has sent anything for DUR ("off" to never).
    #[arg(long, value_name = "DUR", default_value = "off", value_parser = parse_limit)]
    pub(crate) idle_timeout: Limit,
    /// Close a connection when one side does not read what the other sent for DUR ("off" to
    /// never).
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_limit)]
    pub(crate) write_timeout: Limit,
    /// Allow listening on a TCP address that is not loopback (also an inherited socket's, with
    /// socket activation). Anyone who can reach that address then reaches TO as this user.
    #[arg(long)]
    pub(crate) allow_remote: bool,
    /// Who may connect when FROM is a local name.
    #[arg(long, value_enum, default_value_t = AccessArg::Owner)]
    pub(crate) access: AccessArg,
    /// With --access group on Windows, the group admitted: a SID (S-1-5-32-545) or an account
    /// name (Users, DOMAIN\team); required there. Not used on Unix, where the group is the
    /// socket file's (its directory's when that is set-group-ID).
    #[arg(long, value_name = "GROUP")]
    pub(crate) group: Option<String>,
}

/// A time limit that can be turned off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limit(pub(crate) Option<Duration>);

#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// The name to probe.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
    /// How long a busy server may take to accept the probe.
    #[arg(short, long, value_name = "DUR", default_value = "1s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// A short run (under 10 s): fewer repetitions and iterations, noisier figures.
    #[arg(short, long)]
    pub(crate) quick: bool,
    /// Print the results as JSON on stdout instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Where client and server run: both on one CPU (stable, the default), on two CPUs, or
    /// wherever the OS puts them (cross-CPU wake-ups are slow and noisy on small VMs).
    #[arg(long, value_enum, default_value_t = Pin::Same)]
    pub(crate) pin: Pin,
    /// Number of repetitions (default 20, or 5 with --quick; with --shm 10, or 3 with
    /// --quick); medians are reported.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub(crate) repetitions: Option<u32>,
    /// Measure the shared-memory data path (ShmStream) against the raw socket, with client and
    /// server on different CPUs and on the same CPU (Linux; needs the `shm` feature, on by
    /// default). Prints a table only (no --json yet); runs its own placements (no --pin).
    #[arg(long, conflicts_with_all = ["pin", "json"])]
    pub(crate) shm: bool,
}

/// CPU placement of the benchmark's client and server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Pin {
    /// Client and server on the same CPU.
    Same,
    /// Client and server on two different CPUs.
    Split,
    /// No pinning.
    None,
}

impl Pin {
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Pin::Same => "same",
            Pin::Split => "split",
            Pin::None => "none",
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct BenchServerArgs {
    /// Which implementation serves: the library or raw std sockets.
    #[arg(long, value_enum)]
    pub(crate) imp: Imp,
    /// The name (library) or path (raw) to listen on.
    #[arg(long)]
    pub(crate) name: String,
    /// Pin to this CPU.
    #[arg(long)]
    pub(crate) cpu: Option<usize>,
    /// The size of the buffer each read goes into, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub(crate) buffer: usize,
}

/// An implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Imp {
    /// The localsock library on both sides.
    Localsock,
    /// std's UnixStream/UnixListener on both sides.
    Raw,
    /// localsock's shared-memory data path (ShmOptions::answer on every accepted connection).
    Shm,
}

impl Imp {
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Imp::Localsock => "localsock",
            Imp::Raw => "raw",
            Imp::Shm => "shm",
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration =
        humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 500ms, 2s or 1m)"))?;
    if duration.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(duration)
}

fn parse_limit(text: &str) -> Result<Limit, String> {
    if text == "off" {
        return Ok(Limit(None));
    }
    parse_duration(text).map(|d| Limit(Some(d)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_limit("off"), Ok(Limit(None)));
        assert_eq!(parse_limit("2s"), Ok(Limit(Some(Duration::from_secs(2)))));
    }
}
