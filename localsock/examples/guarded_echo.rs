//! A blocking echo server that other local users may reach, guarded against floods: what a
//! server open to more than its owner should do (this is how `localsock echo` does it).
//!
//! A listener with `Access::Group`/`Everyone` (or an abstract name) can be reached by users
//! you do not trust. Any server that gives each client a thread (or a slot) can be filled by
//! clients that connect and then do nothing, or send and never read what comes back. Four
//! limits keep it serving everyone else:
//!
//! 1. **Cap the clients served at once** (here `MAX_CLIENTS`): each costs a thread and
//!    descriptors. Here a client over the cap is closed at once; `localsock echo` instead
//!    stops accepting, so further clients wait in the kernel's backlog.
//! 2. **Cap the connections per user** (here a quarter of the slots per uid or SID, from
//!    [`LocalStream::peer_credentials`]): one user cannot take every slot. Connections over the
//!    cap are closed at once.
//! 3. **An idle timeout** ([`LocalStream::set_read_timeout`]): a client that sends nothing for
//!    that long is dropped, so idle connections give their slots back.
//! 4. **A write timeout** ([`LocalStream::set_write_timeout`]): a client that does not read
//!    what we send would otherwise block our write forever once the socket buffers fill.
//!
//! Clients should bound their waits too: `ConnectOptions::timeout` bounds the connect, and
//! `set_read_timeout` on the client stream bounds the wait for an answer, so that a server
//! that accepts and then never answers cannot hang them.
//!
//! What the limits cannot do: several users together can still fill every slot, and a client
//! that sends one byte per idle period keeps its slot. Authenticate peers (`require_same_user`,
//! or check `peer_credentials`) where that matters.
//!
//! ```text
//! cargo run -p localsock --example guarded_echo            # server + a few clients in one go
//! cargo run -p localsock --example guarded_echo -- server  # just the server (Ctrl-C to stop)
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use localsock::{Access, ConnectOptions, ListenerOptions, LocalListener, LocalStream, Name};

const MAX_CLIENTS: usize = 64;
const PER_USER: usize = MAX_CLIENTS / 4;
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> io::Result<()> {
    let name = Name::new("localsock-guarded-echo")?;
    let listener = ListenerOptions::new()
        .access(Access::Everyone)
        .bind(&name)?;
    println!("guarded echo server on {name}");
    if std::env::args().nth(1).as_deref() == Some("server") {
        return serve(listener);
    }
    thread::spawn(move || serve(listener));
    for word in ["one", "two", "three"] {
        let mut client = ConnectOptions::new()
            .timeout(Duration::from_secs(5))
            .connect(&name)?;
        client.set_read_timeout(Some(Duration::from_secs(5)))?;
        client.write_all(word.as_bytes())?;
        let mut back = vec![0; word.len()];
        client.read_exact(&mut back)?;
        println!("sent {word:?}, got {:?}", String::from_utf8_lossy(&back));
    }
    Ok(())
}

/// Connections held per user, and in total.
#[derive(Default)]
struct Held {
    per_user: HashMap<String, usize>,
    total: usize,
}

fn serve(listener: LocalListener) -> io::Result<()> {
    let held = Arc::new(Mutex::new(Held::default()));
    // `incoming` pauses by itself when the process runs out of descriptors.
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let user = match stream.peer_credentials() {
            Ok(c) => c
                .uid()
                .map(|uid| format!("uid {uid}"))
                .or_else(|| c.user_sid().map(str::to_owned))
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        {
            let mut h = held.lock().unwrap();
            let mine = h.per_user.get(&user).copied().unwrap_or(0);
            if h.total >= MAX_CLIENTS || mine >= PER_USER {
                // Over a cap: close at once, so the client sees EOF instead of waiting.
                eprintln!("refused a client of {user}: over the cap");
                continue;
            }
            h.total += 1;
            *h.per_user.entry(user.clone()).or_insert(0) += 1;
        }
        let held = Arc::clone(&held);
        thread::spawn(move || {
            if let Err(e) = echo(stream) {
                eprintln!("client of {user}: {e}");
            }
            let mut h = held.lock().unwrap();
            h.total -= 1;
            if let Some(n) = h.per_user.get_mut(&user) {
                *n -= 1;
            }
        });
    }
    Ok(())
}

fn echo(mut stream: LocalStream) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut buf = [0u8; 16 * 1024];
    loop {
        // A timeout is `WouldBlock` on Unix and `TimedOut` on Windows: either drops the client.
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}
