//! `localsock echo`: an echo server for many concurrent clients, one thread each.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use localsock::{ListenerOptions, LocalStream};

use crate::cli::EchoArgs;

/// How long to pause after an accept failed for lack of resources (descriptors, memory).
const RESOURCE_PAUSE: Duration = Duration::from_millis(100);
const CLIENT_STACK: usize = 128 * 1024;

pub(crate) fn run(args: EchoArgs) -> io::Result<()> {
    let name = crate::parse_name(&args.name)?;
    let listener = ListenerOptions::new()
        .access(crate::access(args.access))
        .bind(&name)?;
    outln!(
        "listening on {name} (at most {} clients at once)",
        args.max_clients
    );
    let slots = Arc::new(Slots::new(args.max_clients));
    let mut number: u64 = 0;
    let mut last_warning: Option<Instant> = None;
    loop {
        slots.wait_for_free();
        let stream = match listener.accept() {
            Ok(stream) => stream,
            Err(e) if is_resource_shortage(&e) => {
                // EMFILE and friends: the pending client stays in the backlog; retry shortly
                // rather than spin or give up. Say so at most once a second.
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    crate::warn(&format!("{e}; pausing before accepting again"));
                    last_warning = Some(Instant::now());
                }
                thread::sleep(RESOURCE_PAUSE);
                continue;
            }
            Err(e) => return Err(e),
        };
        number += 1;
        outln!("#{number} connected{}", crate::describe_peer(&stream));
        let guard = slots.take();
        let spawned = thread::Builder::new()
            .name(format!("client-{number}"))
            .stack_size(CLIENT_STACK)
            .spawn(move || {
                let _guard = guard;
                if let Err(e) = echo(stream) {
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

/// Echoes until the client shuts down its sending side, then closes ours.
fn echo(mut stream: LocalStream) -> io::Result<()> {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e),
        };
        match stream.write_all(&buf[..n]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    match stream.shutdown(Shutdown::Write) {
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
        _ => Ok(()),
    }
}

/// A counting semaphore for client slots.
struct Slots {
    free: Mutex<u32>,
    freed: Condvar,
}

impl Slots {
    fn new(count: u32) -> Slots {
        Slots {
            free: Mutex::new(count),
            freed: Condvar::new(),
        }
    }

    fn wait_for_free(&self) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn take(self: &Arc<Self>) -> SlotGuard {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        *free = free.saturating_sub(1);
        SlotGuard(Arc::clone(self))
    }
}

struct SlotGuard(Arc<Slots>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        self.0.freed.notify_one();
    }
}

/// The OS error code under the library's context, if any.
#[cfg(unix)]
fn os_error(e: &io::Error) -> Option<i32> {
    if let Some(code) = e.raw_os_error() {
        return Some(code);
    }
    let mut source = e.get_ref().and_then(|inner| inner.source());
    while let Some(err) = source {
        if let Some(io_err) = err.downcast_ref::<io::Error>() {
            if let Some(code) = io_err.raw_os_error() {
                return Some(code);
            }
        }
        source = err.source();
    }
    None
}

fn is_resource_shortage(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::OutOfMemory {
        return true;
    }
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        let shortages = [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM];
        os_error(e).is_some_and(|code| shortages.iter().any(|s| s.raw_os_error() == code))
    }
    #[cfg(not(unix))]
    {
        false
    }
}
