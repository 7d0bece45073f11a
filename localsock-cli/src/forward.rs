//! `localsock forward FROM TO`: listen on FROM, connect to TO for every client, copy both ways.
//! FROM and TO are each a local name or `tcp:HOST:PORT`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use localsock::{ConnectOptions, LocalListener, LocalStream, Name};

use crate::cli::{AccessArg, ForwardArgs};
use crate::echo::timed_out;
use crate::serve::{self, PerUser, Slots, CLIENT_STACK, RESOURCE_PAUSE};

const CHUNK: usize = 64 * 1024;

/// One side of `forward`: a local name or a TCP address.
#[derive(Clone, Debug)]
enum Endpoint {
    Local(Name),
    Tcp { host: String, port: u16 },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Local(name) => write!(f, "{name}"),
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
        }
    }
}

/// `tcp:HOST:PORT` (HOST may be `[v6]`), or a local name.
fn parse_endpoint(text: &str, what: &str) -> io::Result<Endpoint> {
    let Some(rest) = text.strip_prefix("tcp:") else {
        return crate::parse_name(text).map(Endpoint::Local);
    };
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid {what} {text:?}: {why} (write tcp:HOST:PORT, e.g. tcp:127.0.0.1:8080)"
            ),
        )
    };
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
    Ok(Endpoint::Tcp {
        host: host.to_owned(),
        port,
    })
}

fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {host}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} resolves to no address"),
        ));
    }
    Ok(addrs)
}

/// A connection on either side.
enum Conn {
    Local(LocalStream),
    Tcp(TcpStream),
}

impl Conn {
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Conn::Local(s) => s.shutdown(how),
            Conn::Tcp(s) => s.shutdown(how),
        }
    }

    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Local(s) => {
                s.set_read_timeout(read)?;
                s.set_write_timeout(write)
            }
            Conn::Tcp(s) => {
                s.set_read_timeout(read)?;
                s.set_write_timeout(write)
            }
        }
    }

    /// `pid 1234, uid 1000` for a local peer, the address for TCP.
    fn peer(&self) -> String {
        match self {
            Conn::Local(s) => {
                let described = crate::describe_peer(s);
                let inner = described
                    .strip_prefix(" (")
                    .and_then(|d| d.strip_suffix(')'))
                    .unwrap_or("local peer");
                inner.to_owned()
            }
            Conn::Tcp(s) => match s.peer_addr() {
                Ok(addr) => addr.to_string(),
                Err(_) => "TCP peer (address unknown)".to_owned(),
            },
        }
    }

    /// The key of the per-user cap: the uid/SID, or the IP address for TCP.
    fn user(&self) -> String {
        match self {
            Conn::Local(s) => serve::local_user(s),
            Conn::Tcp(s) => match s.peer_addr() {
                Ok(addr) => addr.ip().to_string(),
                Err(_) => "unknown address".to_owned(),
            },
        }
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Local(s) => (&mut &*s).read(buf),
            Conn::Tcp(s) => (&mut &*s).read(buf),
        }
    }

    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            Conn::Local(s) => (&mut &*s).write_all(buf),
            Conn::Tcp(s) => (&mut &*s).write_all(buf),
        }
    }
}

enum Listener {
    Local(LocalListener),
    Tcp(TcpListener),
}

impl Listener {
    fn accept(&self) -> io::Result<Conn> {
        match self {
            Listener::Local(l) => l.accept().map(Conn::Local),
            Listener::Tcp(l) => loop {
                match l.accept() {
                    Ok((s, _)) => return Ok(Conn::Tcp(s)),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(serve::context(e, format!("accept on {}", local_addr(l))))
                    }
                }
            },
        }
    }

    fn describe(&self) -> String {
        match self {
            Listener::Local(l) => l.name().to_string(),
            Listener::Tcp(l) => format!("tcp:{}", local_addr(l)),
        }
    }
}

fn local_addr(l: &TcpListener) -> String {
    l.local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

/// What `forward` needs to connect to TO.
struct Target {
    to: Endpoint,
    timeout: Duration,
    wait: bool,
}

/// The one client allowed to wait for a descriptor to connect to TO, and the accept loop's
/// pause while it waits.
///
/// Every accepted client holds a descriptor. If each client that found none left for its
/// connection to TO waited for one, the accept loop would go on taking clients (each holding
/// a descriptor the waiting ones need) until every descriptor was held by a waiting client and
/// nothing moved until their timeouts ran out. So while one client waits, the accept loop
/// accepts no one (new clients wait in the backlog), and a second client that finds no
/// descriptor (one accepted before the first said so) is closed at once, which frees its
/// descriptor for the first.
struct Starved {
    waiting: Mutex<bool>,
    cleared: Condvar,
    /// FROM, for the warning.
    listening: String,
    /// When a shortage was last reported (at most once a second), by the accept loop or a
    /// waiting client.
    last_warning: Mutex<Option<Instant>>,
}

impl Starved {
    fn new(listening: String) -> Starved {
        Starved {
            waiting: Mutex::new(false),
            cleared: Condvar::new(),
            listening,
            last_warning: Mutex::new(None),
        }
    }

    /// Blocks the accept loop while a client waits for a descriptor.
    fn wait_until_clear(&self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        while *waiting {
            waiting = self
                .cleared
                .wait(waiting)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Makes the caller the waiting client, unless another one already is.
    fn become_waiter(&self) -> Option<Waiter<'_>> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if *waiting {
            return None;
        }
        *waiting = true;
        Some(Waiter(self))
    }
}

/// The waiting client's turn; dropping it lets the accept loop go on.
struct Waiter<'a>(&'a Starved);

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut waiting = self.0.waiting.lock().unwrap_or_else(|p| p.into_inner());
        *waiting = false;
        self.0.cleared.notify_all();
    }
}

impl Target {
    /// Connects to TO. Out of descriptors, one client at a time retries after a pause until
    /// the timeout while the accept loop pauses; see [`Starved`].
    fn connect(&self, starved: &Starved) -> io::Result<Conn> {
        let deadline = Instant::now() + self.timeout;
        let mut turn = None;
        loop {
            match self.connect_once() {
                Err(e)
                    if serve::is_resource_shortage(&e)
                        && Instant::now() + RESOURCE_PAUSE < deadline =>
                {
                    if turn.is_none() {
                        turn = starved.become_waiter();
                        if turn.is_none() {
                            return Err(serve::context(
                                e,
                                "no descriptor left, and another client is already waiting \
                                 for one",
                            ));
                        }
                        let mut last = starved
                            .last_warning
                            .lock()
                            .unwrap_or_else(|p| p.into_inner());
                        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                            crate::warn(&format!(
                                "{e}; a client waits for a descriptor, pausing before \
                                 accepting again on {}",
                                starved.listening
                            ));
                            *last = Some(Instant::now());
                        }
                    }
                    thread::sleep(RESOURCE_PAUSE)
                }
                other => return other,
            }
        }
    }

    fn connect_once(&self) -> io::Result<Conn> {
        match &self.to {
            Endpoint::Local(name) => ConnectOptions::new()
                .timeout(self.timeout)
                .wait_for_server(self.wait)
                .connect(name)
                .map(Conn::Local),
            Endpoint::Tcp { host, port } => self.connect_tcp(host, *port).map(Conn::Tcp),
        }
    }

    /// Each address in turn within the deadline; with `--wait`, a refused connect is retried
    /// (with backoff) until the deadline.
    fn connect_tcp(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            let mut last = None;
            for addr in resolve(host, port)? {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match TcpStream::connect_timeout(&addr, left) {
                    Ok(s) => return Ok(s),
                    Err(e) => last = Some((addr, e)),
                }
            }
            let (addr, e) = match last {
                Some(last) => last,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "connect to tcp:{host}:{port}: timed out after {}",
                            humantime::format_duration(self.timeout)
                        ),
                    ))
                }
            };
            let retry = self.wait
                && e.kind() == io::ErrorKind::ConnectionRefused
                && Instant::now() + pause < deadline;
            if !retry {
                let hint = if e.kind() == io::ErrorKind::ConnectionRefused {
                    ": no server is listening"
                } else {
                    ""
                };
                // The OS error stays the source: out of descriptors, `connect` pauses and
                // retries.
                return Err(serve::context(e, format!("connect to tcp:{addr}{hint}")));
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

/// Whether every address is loopback: listening there exposes nothing to the network.
fn all_loopback(addrs: &[SocketAddr]) -> bool {
    addrs.iter().all(|a| a.ip().is_loopback())
}

fn bind(from: &Endpoint, args: &ForwardArgs) -> io::Result<(Listener, Option<String>)> {
    #[cfg(unix)]
    if let Some(inherited) = serve::inherited(&args.from)? {
        return Ok((adopt(inherited.fd, from, args)?, Some(inherited.origin)));
    }
    match from {
        Endpoint::Local(_) => {
            let (listener, origin) =
                serve::local_listener(&args.from, args.access, args.group.as_deref())?;
            Ok((Listener::Local(listener), origin))
        }
        Endpoint::Tcp { host, port } => {
            let addrs = resolve(host, *port)?;
            if !args.allow_remote && !all_loopback(&addrs) {
                let shown: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                return Err(not_loopback(
                    &format!("refusing to listen on {from} ({})", shown.join(", ")),
                    *port,
                    args,
                ));
            }
            let listener = TcpListener::bind(&addrs[..])
                .map_err(|e| io::Error::new(e.kind(), format!("listen on {from}: {e}")))?;
            Ok((Listener::Tcp(listener), None))
        }
    }
}

/// Listening on a non-loopback address without `--allow-remote`: `what` says where.
fn not_loopback(what: &str, port: u16, args: &ForwardArgs) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{what}: it is not a loopback address, so anyone who can reach this machine over \
             the network would reach {} as you; listen on tcp:127.0.0.1:{port} instead, or pass \
             --allow-remote",
            args.to
        ),
    )
}

/// An inherited descriptor, checked to match FROM's kind; a TCP one must be on a loopback
/// address unless `--allow-remote` (the manager's `ListenStream=8080` listens on every
/// interface, whatever FROM says).
#[cfg(unix)]
fn adopt(fd: std::os::fd::OwnedFd, from: &Endpoint, args: &ForwardArgs) -> io::Result<Listener> {
    match from {
        Endpoint::Local(_) => {
            let listener = LocalListener::from_inherited_fd(fd)
                .map_err(|e| io::Error::new(e.kind(), format!("socket activation: {e}")))?;
            Ok(Listener::Local(listener))
        }
        Endpoint::Tcp { .. } => {
            use rustix::net::{sockopt, AddressFamily, SocketType};
            let family = sockopt::socket_domain(&fd).map_err(io::Error::from)?;
            let ty = sockopt::socket_type(&fd).map_err(io::Error::from)?;
            let listening = sockopt::socket_acceptconn(&fd).map_err(io::Error::from)?;
            if !(family == AddressFamily::INET || family == AddressFamily::INET6)
                || ty != SocketType::STREAM
                || !listening
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "socket activation: FROM is {from}, but the inherited descriptor is not \
                         a listening TCP socket"
                    ),
                ));
            }
            let listener = TcpListener::from(fd);
            let addr = listener.local_addr()?;
            if !args.allow_remote && !addr.ip().is_loopback() {
                return Err(not_loopback(
                    &format!("socket activation: refusing to serve the inherited socket on {addr}"),
                    addr.port(),
                    args,
                ));
            }
            listener.set_nonblocking(false)?;
            Ok(Listener::Tcp(listener))
        }
    }
}

pub(crate) fn run(args: ForwardArgs) -> io::Result<()> {
    let from = parse_endpoint(&args.from, "FROM")?;
    let to = parse_endpoint(&args.to, "TO")?;
    let (listener, inherited) = bind(&from, &args)?;
    // Over TCP every local user shares one address: a per-address cap would only lower
    // --max-clients, so TCP clients get every slot.
    let owner_only = match from {
        Endpoint::Local(_) => args.access == AccessArg::Owner && inherited.is_none(),
        Endpoint::Tcp { .. } => true,
    };
    let per_user = args
        .max_per_user
        .unwrap_or_else(|| serve::default_per_user(args.max_clients, owner_only));
    let origin = match &inherited {
        Some(origin) => format!("socket activation: {origin}; "),
        None => String::new(),
    };
    errln!(
        "forwarding {} -> {to} ({origin}at most {} clients at once, {per_user} per user)",
        listener.describe(),
        args.max_clients
    );
    let target = Arc::new(Target {
        to,
        timeout: args.timeout,
        wait: args.wait,
    });
    let limits = Limits {
        idle: args.idle_timeout.0,
        write: args.write_timeout.0,
    };
    let slots = Slots::new(args.max_clients);
    let users = PerUser::new(per_user);
    let starved = Arc::new(Starved::new(listener.describe()));
    let mut number: u64 = 0;
    loop {
        slots.wait_for_free();
        starved.wait_until_clear();
        let client = match listener.accept() {
            Ok(client) => client,
            Err(e) => {
                // Not held across the pause `accept_failed` takes.
                let mut last = *starved
                    .last_warning
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                serve::accept_failed(e, &mut last)?;
                *starved
                    .last_warning
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = last;
                continue;
            }
        };
        number += 1;
        let peer = client.peer();
        let Some(user_guard) = users.try_take(&client.user()) else {
            errln!(
                "#{number} {peer}: refused: {} already has {per_user} connections \
                 (--max-per-user)",
                client.user()
            );
            continue;
        };
        let guard = slots.take();
        let target = Arc::clone(&target);
        let starved = Arc::clone(&starved);
        let spawned = thread::Builder::new()
            .name(format!("client-{number}"))
            .stack_size(CLIENT_STACK)
            .spawn(move || {
                // The user's count drops before the slot frees: the accept loop, woken by the slot,
                // must see this user's connection gone.
                let _guards = (user_guard, guard);
                let line = serve_client(client, &target, &starved, limits);
                errln!("#{number} {peer} -> {}: {line}", target.to);
            });
        if let Err(e) = spawned {
            crate::warn(&format!(
                "cannot start a thread for client #{number}: {e}; dropped it"
            ));
            thread::sleep(RESOURCE_PAUSE);
        }
    }
}

#[derive(Clone, Copy)]
struct Limits {
    idle: Option<Duration>,
    write: Option<Duration>,
}

/// How one direction of a connection ended.
#[derive(Debug)]
enum End {
    /// The sender shut down its sending side or closed: passed on as a half-close.
    Eof,
    /// The sender reset the connection.
    Reset,
    /// Nothing moved either way for the idle timeout.
    Idle,
    /// The receiver did not take the data within the write timeout.
    WriteStalled,
    /// The receiver went away while we were writing to it.
    ReceiverGone,
    /// The other direction failed and closed the connection.
    Stopped,
    /// The other direction's EOF could not be passed on (a Windows pipe has no half-close),
    /// and this one was then quiet for [`LINGER`].
    Lingered,
    /// Anything else.
    Error(io::Error),
}

/// How long a pipe server may stay quiet after the client's EOF, which a Windows pipe cannot
/// pass on, before the connection is closed (as `localsock connect` does there).
const LINGER: Duration = Duration::from_millis(500);

/// Connects to TO and copies both ways; returns the connection's log line (after the peer).
fn serve_client(client: Conn, target: &Target, starved: &Starved, limits: Limits) -> String {
    let start = Instant::now();
    let server = match target.connect(starved) {
        Ok(server) => server,
        Err(e) => {
            let _ = client.shutdown(Shutdown::Both);
            return format!(
                "not forwarded: {e} ({})",
                humantime::format_duration(round(start.elapsed()))
            );
        }
    };
    let result = (|| -> io::Result<(u64, u64, End, End)> {
        // Read timeouts wake the readers to look at the shared idle clock.
        let tick = limits.idle.map(|d| (d / 4).max(Duration::from_millis(10)));
        // A Windows pipe client end cannot pass on the client's EOF: the server's reads then
        // wake up to see whether it has gone quiet.
        let pipe_to = cfg!(windows) && matches!(server, Conn::Local(_));
        let server_tick = if pipe_to {
            Some(tick.map_or(Duration::from_millis(100), |t| {
                t.min(Duration::from_millis(100))
            }))
        } else {
            tick
        };
        client.set_timeouts(tick, limits.write)?;
        server.set_timeouts(server_tick, limits.write)?;
        let shared = Shared {
            activity: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            eof_unpassed: AtomicBool::new(false),
        };
        // Both directions borrow the two connections (no duplicated descriptors: a
        // connection costs two, which matters when descriptors run short).
        thread::scope(|scope| -> io::Result<_> {
            let up = thread::Builder::new()
                .name("forward-up".into())
                .stack_size(CLIENT_STACK)
                .spawn_scoped(scope, || {
                    pump(&client, &server, pipe_to, &shared, start, limits)
                })?;
            let (down_bytes, down_end) = pump(&server, &client, false, &shared, start, limits);
            let (up_bytes, up_end) = up.join().unwrap_or((
                0,
                End::Error(io::Error::other("the copying thread panicked")),
            ));
            Ok((up_bytes, down_bytes, up_end, down_end))
        })
    })();
    let took = humantime::format_duration(round(start.elapsed()));
    match result {
        Ok((up, down, up_end, down_end)) => format!(
            "client sent {}, server sent {}, {took}, {}",
            bytes(up),
            bytes(down),
            ended(&up_end, &down_end, limits)
        ),
        Err(e) => {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            format!("failed: {e} ({took})")
        }
    }
}

/// What the two directions of a connection share.
struct Shared {
    /// Milliseconds since the start at which data last moved either way.
    activity: AtomicU64,
    /// Set by the first direction that fails; it closes both connections, and the other
    /// direction's failure that follows is reported as [`End::Stopped`].
    stopped: AtomicBool,
    /// Set when one direction's EOF could not be passed on (see [`End::Lingered`]).
    eof_unpassed: AtomicBool,
}

/// Copies `from` -> `to` until EOF (passed on as a half-close) or a failure (which closes
/// both connections, so the other direction ends too).
/// `no_half_close`: `to` cannot pass an EOF on (a Windows pipe client end).
fn pump(
    from: &Conn,
    to: &Conn,
    no_half_close: bool,
    shared: &Shared,
    start: Instant,
    limits: Limits,
) -> (u64, End) {
    let activity = &shared.activity;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    let touch = || activity.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    let end = loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break End::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if timed_out(&e) => {
                // The other direction may store a later time between the clock read and the
                // load: saturate rather than wrap to a huge "quiet" that kills a busy connection.
                let quiet = (start.elapsed().as_millis() as u64)
                    .saturating_sub(activity.load(Ordering::Relaxed));
                if shared.eof_unpassed.load(Ordering::Acquire) && quiet >= LINGER.as_millis() as u64
                {
                    break End::Lingered;
                }
                match limits.idle {
                    Some(idle) if quiet >= idle.as_millis() as u64 => break End::Idle,
                    _ => continue,
                }
            }
            Err(e) if gone(&e) => break End::Reset,
            // The other direction shut this connection down after a failure.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => break End::Stopped,
            Err(e) => break End::Error(e),
        };
        touch();
        match to.write_all(&buf[..n]) {
            Ok(()) => total += n as u64,
            Err(e) if timed_out(&e) => break End::WriteStalled,
            Err(e) if gone(&e) => break End::ReceiverGone,
            Err(e) => break End::Error(e),
        }
    };
    match end {
        End::Eof => {
            // Pass the half-close on; the other direction keeps going.
            let _ = to.shutdown(Shutdown::Write);
            if no_half_close {
                // Restart the quiet clock: the other side gets LINGER from now.
                touch();
                shared.eof_unpassed.store(true, Ordering::Release);
            }
            (total, end)
        }
        _ if shared.stopped.swap(true, Ordering::AcqRel) => (total, End::Stopped),
        _ => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            (total, end)
        }
    }
}

fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

/// How the connection ended, in words: the first direction that did not end with EOF says it.
fn ended(up: &End, down: &End, limits: Limits) -> String {
    let fmt = |d: Option<Duration>| humantime::format_duration(d.unwrap_or_default()).to_string();
    let say = |end: &End, sender: &str, receiver: &str| -> Option<String> {
        Some(match end {
            End::Eof | End::Stopped => return None,
            End::Reset => format!("the {sender} reset the connection"),
            End::Lingered => format!(
                "the {receiver} closed; the {sender} (a pipe, which cannot pass on a \
                 half-close) was then quiet for {}",
                fmt(Some(LINGER))
            ),
            End::Idle => format!("idle for {} (--idle-timeout)", fmt(limits.idle)),
            End::WriteStalled => format!(
                "the {receiver} did not read for {} (--write-timeout)",
                fmt(limits.write)
            ),
            End::ReceiverGone => format!("the {receiver} went away"),
            End::Error(e) => format!("error: {e}"),
        })
    };
    say(up, "client", "server")
        .or_else(|| say(down, "server", "client"))
        .map(|why| format!("ended: {why}"))
        .unwrap_or_else(|| "ended: both sides closed".to_owned())
}

fn bytes(n: u64) -> String {
    match n {
        0..=1023 => format!("{n} B"),
        1024..=1_048_575 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)),
    }
}

/// Milliseconds are enough for the log line.
fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_endpoints_parse() {
        let Endpoint::Tcp { host, port } = parse_endpoint("tcp:127.0.0.1:80", "FROM").unwrap()
        else {
            panic!()
        };
        assert_eq!((host.as_str(), port), ("127.0.0.1", 80));
        let Endpoint::Tcp { host, port } = parse_endpoint("tcp:[::1]:8080", "TO").unwrap() else {
            panic!()
        };
        assert_eq!((host.as_str(), port), ("::1", 8080));
        for bad in ["tcp:", "tcp:host", "tcp::80", "tcp:h:99999", "tcp:h:x"] {
            let e = parse_endpoint(bad, "TO").unwrap_err();
            assert!(e.to_string().contains("tcp:HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn loopback_only() {
        let lo: Vec<SocketAddr> = vec!["127.0.0.1:1".parse().unwrap(), "[::1]:1".parse().unwrap()];
        assert!(all_loopback(&lo));
        let any: Vec<SocketAddr> = vec!["0.0.0.0:1".parse().unwrap()];
        assert!(!all_loopback(&any));
    }
}
