//! `localsock echo`: an echo server for many concurrent clients, one thread each.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use localsock::LocalStream;

use crate::cli::{AccessArg, EchoArgs};
use crate::serve::{self, PerUser, Slots, CLIENT_STACK, RESOURCE_PAUSE};

pub(crate) fn run(args: EchoArgs) -> io::Result<()> {
    let (listener, inherited) =
        serve::local_listener(&args.name, args.access, args.group.as_deref())?;
    let per_user = args.max_per_user.unwrap_or_else(|| {
        serve::default_per_user(
            args.max_clients,
            args.access == AccessArg::Owner && inherited.is_none(),
        )
    });
    let origin = match &inherited {
        Some(origin) => format!("socket activation: {origin}; "),
        None => String::new(),
    };
    outln!(
        "listening on {} ({origin}at most {} clients at once, {per_user} per user)",
        listener.name(),
        args.max_clients
    );
    let timeouts = Timeouts {
        idle: args.idle_timeout.0,
        write: args.write_timeout.0,
    };
    let slots = Slots::new(args.max_clients);
    let users = PerUser::new(per_user);
    let mut number: u64 = 0;
    let mut last_warning: Option<Instant> = None;
    loop {
        slots.wait_for_free();
        let stream = match listener.accept() {
            Ok(stream) => stream,
            Err(e) => {
                serve::accept_failed(e, &mut last_warning)?;
                continue;
            }
        };
        number += 1;
        let user = serve::local_user(&stream);
        let Some(user_guard) = users.try_take(&user) else {
            outln!(
                "#{number} refused{}: {user} already has {per_user} connections \
                 (--max-per-user)",
                crate::describe_peer(&stream)
            );
            continue;
        };
        outln!("#{number} connected{}", crate::describe_peer(&stream));
        let guard = slots.take();
        let spawned = thread::Builder::new()
            .name(format!("client-{number}"))
            .stack_size(CLIENT_STACK)
            .spawn(move || {
                // The user's count drops before the slot frees: the accept loop, woken by the slot,
                // must see this user's connection gone.
                let _guards = (user_guard, guard);
                if let Err(e) = echo(stream, timeouts) {
                    crate::warn(&format!("client #{number}: {e}"));
                }
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
struct Timeouts {
    idle: Option<Duration>,
    write: Option<Duration>,
}

/// Echoes until the client shuts down its sending side, then closes ours. A client that sends
/// nothing for the idle timeout, or does not read its echo within the write timeout, is
/// dropped with a warning.
fn echo(mut stream: LocalStream, timeouts: Timeouts) -> io::Result<()> {
    stream.set_read_timeout(timeouts.idle)?;
    stream.set_write_timeout(timeouts.write)?;
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) if timed_out(&e) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "idle for {}: dropped (--idle-timeout)",
                        humantime::format_duration(timeouts.idle.unwrap_or_default())
                    ),
                ))
            }
            Err(e) => return Err(e),
        };
        match stream.write_all(&buf[..n]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) if timed_out(&e) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "did not read its echo for {}: dropped (--write-timeout)",
                        humantime::format_duration(timeouts.write.unwrap_or_default())
                    ),
                ))
            }
            Err(e) => return Err(e),
        }
    }
    match stream.shutdown(Shutdown::Write) {
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
        _ => Ok(()),
    }
}

/// A read or write timeout expired (`WouldBlock` on Unix, `TimedOut` on Windows).
pub(crate) fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
