//! Copying stdin -> socket and socket -> stdout at once, half-close aware (`listen`, `connect`).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use localsock::LocalStream;

/// How often the stdin side looks whether the peer has gone while stdin is quiet.
const HANGUP_CHECK: Duration = Duration::from_millis(50);
const CHUNK: usize = 64 * 1024;

/// Standard input, read by one thread for the whole process so that one connection after
/// another (`listen --keep-open`) can take what arrives; a blocking read of stdin cannot be
/// cancelled, so it must not belong to one connection.
pub(crate) struct Stdin {
    chunks: Receiver<Vec<u8>>,
    ended: bool,
}

impl Stdin {
    pub(crate) fn start() -> Stdin {
        let (tx, chunks) = mpsc::sync_channel::<Vec<u8>>(4);
        let spawned = thread::Builder::new().name("stdin".into()).spawn(move || {
            let mut input = io::stdin().lock();
            loop {
                let mut buf = vec![0; CHUNK];
                match input.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.send(buf).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        crate::warn(&format!("reading stdin: {e}; treating it as ended"));
                        return;
                    }
                }
            }
        });
        // If the thread cannot start, stdin counts as empty: the channel is closed at once.
        Stdin {
            chunks,
            ended: spawned.is_err(),
        }
    }
}

/// How a copy ends once stdin has ended, and how long the peer may stay silent.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CopyOptions {
    /// Keep the sending side open after stdin ends, and end the copy when the peer closes or
    /// has been quiet this long (`nc -q`); `None`: shut the sending side down at once.
    pub(crate) quit_after: Option<Duration>,
    /// Fail when the peer sends nothing for this long.
    pub(crate) read_timeout: Option<Duration>,
}

/// Copies both ways until both directions are done: stdin has ended (then the socket's sending
/// side is shut down, so the peer reads EOF) or the peer has gone, and the peer has sent EOF.
///
/// With [`CopyOptions::quit_after`], the sending side stays open after stdin ends, and the
/// copy also ends when the peer has been quiet that long. Windows named pipes cannot
/// half-close: the peer sees EOF only when our handles close. There, once stdin has ended, the
/// copy also ends when the peer has been quiet for [`LINGER`] (or `quit_after`).
///
/// # Errors
///
/// I/O errors other than the peer going away or stdout being closed; `TimedOut` when the peer
/// was silent for the read timeout.
pub(crate) fn copy_both_ways(
    stream: &LocalStream,
    stdin: &mut Stdin,
    options: CopyOptions,
) -> io::Result<()> {
    let reader = stream.try_clone()?;
    reader.set_read_timeout(options.read_timeout)?;
    let activity = Arc::new(Activity {
        peer_done: AtomicBool::new(false),
        failed: AtomicBool::new(false),
        last: Mutex::new(Instant::now()),
    });
    let (done, result) = mpsc::channel();
    let shared = Arc::clone(&activity);
    // Not a scoped thread: where a quiet peer ends the copy (Windows), the blocked read must
    // not hold up the return.
    thread::Builder::new()
        .name("socket-to-stdout".into())
        .spawn(move || {
            let outcome = socket_to_stdout(&reader, &shared, options.read_timeout);
            shared.failed.store(outcome.is_err(), Ordering::Release);
            shared.peer_done.store(true, Ordering::Release);
            let _ = done.send(outcome);
        })?;
    let sent = stdin_to_socket(stream, stdin, &activity, options.quit_after);
    activity.touch();
    let linger = options
        .quit_after
        .or(if cfg!(windows) { Some(LINGER) } else { None });
    let received = wait_for_peer(&result, &activity, stdin.ended, linger);
    if matches!(received, Ok(Quit::Quiet)) {
        // Wake the reader still blocked on the quiet peer: it must not print what a later
        // connection's peer sends (`listen --keep-open`).
        let _ = stream.shutdown(Shutdown::Both);
    }
    sent.and(received.map(|_| ()))
}

/// How the wait for the peer ended.
enum Quit {
    /// The peer closed (or went away).
    Closed,
    /// The peer was quiet for the linger time after stdin ended.
    Quiet,
}

/// Windows: how long a peer may stay quiet after our stdin ended before the copy ends.
pub(crate) const LINGER: Duration = Duration::from_millis(500);

struct Activity {
    peer_done: AtomicBool,
    /// The receiving side failed (e.g. the read timeout): stop sending too.
    failed: AtomicBool,
    last: Mutex<Instant>,
}

impl Activity {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn quiet_for(&self) -> Duration {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }
}

fn wait_for_peer(
    result: &Receiver<io::Result<()>>,
    activity: &Activity,
    stdin_ended: bool,
    linger: Option<Duration>,
) -> io::Result<Quit> {
    let lost = || io::Error::other("the socket-to-stdout thread ended without a result");
    if let (true, Some(linger)) = (stdin_ended, linger) {
        loop {
            match result.recv_timeout(Duration::from_millis(50)) {
                Ok(outcome) => return outcome.map(|()| Quit::Closed),
                Err(RecvTimeoutError::Timeout) if activity.quiet_for() >= linger => {
                    return Ok(Quit::Quiet)
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Err(lost()),
            }
        }
    }
    result
        .recv()
        .unwrap_or_else(|_| Err(lost()))
        .map(|()| Quit::Closed)
}

fn socket_to_stdout(
    stream: &LocalStream,
    activity: &Activity,
    read_timeout: Option<Duration>,
) -> io::Result<()> {
    let mut buf = vec![0; CHUNK];
    let stdout = io::stdout();
    loop {
        let n = match (&mut &*stream).read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if crate::echo::timed_out(&e) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the peer sent nothing for {} (--read-timeout)",
                        humantime::format_duration(read_timeout.unwrap_or_default())
                    ),
                ))
            }
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        activity.touch();
        let mut out = stdout.lock();
        if let Err(e) = out.write_all(&buf[..n]).and_then(|()| out.flush()) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                // Nobody reads our output any more (`| head`): stop receiving.
                let _ = stream.shutdown(Shutdown::Read);
                return Ok(());
            }
            return Err(io::Error::new(e.kind(), format!("writing stdout: {e}")));
        }
    }
}

fn stdin_to_socket(
    stream: &LocalStream,
    stdin: &mut Stdin,
    activity: &Activity,
    quit_after: Option<Duration>,
) -> io::Result<()> {
    while !stdin.ended {
        match stdin.chunks.recv_timeout(HANGUP_CHECK) {
            Ok(chunk) => match (&mut &*stream).write_all(&chunk) {
                Ok(()) => {}
                Err(e) if gone(&e) => return Ok(()),
                Err(e) => return Err(e),
            },
            Err(RecvTimeoutError::Timeout) => {
                if activity.peer_done.load(Ordering::Acquire)
                    && (activity.failed.load(Ordering::Acquire) || peer_hung_up(stream))
                {
                    return Ok(());
                }
            }
            Err(RecvTimeoutError::Disconnected) => stdin.ended = true,
        }
    }
    if quit_after.is_some() {
        // Keep the sending side open: some peers (Qt) take a half-close for a close.
        return Ok(());
    }
    match stream.shutdown(Shutdown::Write) {
        Err(e) if !gone(&e) && e.kind() != io::ErrorKind::NotConnected => Err(e),
        _ => Ok(()),
    }
}

/// The peer went away: not an error for a copy.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

/// Whether the peer has closed its end completely (not only shut down its sending side), so
/// nothing we send can be read any more.
#[cfg(unix)]
fn peer_hung_up(stream: &LocalStream) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(stream, PollFlags::OUT)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(_) => fds[0].revents().intersects(PollFlags::HUP | PollFlags::ERR),
        Err(_) => false,
    }
}

/// Windows has no cheap test; a peer that has gone is noticed at the next write.
#[cfg(not(unix))]
fn peer_hung_up(_stream: &LocalStream) -> bool {
    false
}
