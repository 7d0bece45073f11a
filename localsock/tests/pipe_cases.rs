//! Behaviour cases taken from go-winio's and .NET's own named-pipe tests, made platform-neutral:
//! the same file runs on Linux (Unix sockets) and under Wine (named pipes). Where a case needs
//! something one platform cannot show, the test says why.

mod common;

use std::error::Error;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{unique, unique_str, watchdog};
use localsock::{ConnectOptions, ListenerOptions, LocalListener, LocalStream, Name};

/// The OS code of an error, found the way a caller can: walking `source()` down from it.
fn os_code(err: &std::io::Error) -> Option<i32> {
    let mut next: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(error) = next {
        if let Some(code) = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
        {
            return Some(code);
        }
        next = error.source();
    }
    None
}

/// go-winio `TestDialUnknownFailsImmediately`, .NET `Connect_NonExistentServer`: a missing name
/// is `NotFound` at once (not after the connect deadline), with the OS code (`ENOENT` /
/// `ERROR_FILE_NOT_FOUND`, both 2) reachable.
#[test]
fn connect_to_a_missing_name_fails_at_once_with_not_found() {
    let _w = watchdog("connect_to_a_missing_name_fails_at_once_with_not_found", 30);
    let name = unique("missing");
    let start = Instant::now();
    let err = ConnectOptions::new()
        .timeout(Duration::from_secs(20))
        .connect(&name)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(os_code(&err), Some(2), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "waited for the deadline: {:?}",
        start.elapsed()
    );
}

/// A second server on a live name is `AddrInUse`, and the OS code behind it stays reachable
/// (`EADDRINUSE`; on Windows `ERROR_ALREADY_EXISTS` when a free instance answered, or the code
/// `CreateNamedPipeW`/`WaitNamedPipeW` gave).
#[test]
fn addr_in_use_keeps_an_os_code() {
    let _w = watchdog("addr_in_use_keeps_an_os_code", 30);
    let name = unique("in-use");
    let _first = LocalListener::bind(&name).unwrap();
    let err = LocalListener::bind(&name).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    let code = os_code(&err).unwrap_or_else(|| panic!("no OS code in {err:?}"));
    #[cfg(unix)]
    assert_eq!(code, libc::EADDRINUSE, "{err}");
    #[cfg(windows)]
    assert!([5, 121, 183, 231].contains(&code), "{code}: {err}");

    // The async listener's bind says the same.
    #[cfg(feature = "tokio")]
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(async { localsock::tokio::LocalListener::bind(&name) })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
        assert!(os_code(&err).is_some(), "no OS code in {err:?}");
    }
}

/// go-winio `TestDialTimesOutByDefault`/`TestDialListenerTimesOut`, .NET
/// `Connect_TimeoutWithNoServerAvailable`: a busy endpoint (every pipe instance taken, or a
/// full backlog) ends the connect with `TimedOut` within the bound.
#[test]
fn a_busy_endpoint_times_out_within_the_bound() {
    let _w = watchdog("a_busy_endpoint_times_out_within_the_bound", 60);
    let name = unique("busy");
    #[cfg(windows)]
    let _listener = {
        use localsock::os::windows::ListenerOptionsExt;
        ListenerOptions::new()
            .spare_instances(0)
            .bind(&name)
            .unwrap()
    };
    #[cfg(unix)]
    let _listener = ListenerOptions::new().backlog(1).bind(&name).unwrap();
    // Nobody accepts: take every instance / fill the backlog.
    let mut held = Vec::new();
    let bound = Duration::from_millis(300);
    let (err, took) = loop {
        let start = Instant::now();
        match ConnectOptions::new().timeout(bound).connect(&name) {
            Ok(s) => held.push(s),
            Err(e) => break (e, start.elapsed()),
        }
        assert!(held.len() < 10_000, "the endpoint never got busy");
    };
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    // The last OS error stays reachable: EAGAIN, or ERROR_PIPE_BUSY / ERROR_SEM_TIMEOUT.
    let code = os_code(&err).unwrap_or_else(|| panic!("no OS code in {err:?}"));
    #[cfg(unix)]
    assert_eq!(code, libc::EAGAIN, "{err}");
    #[cfg(windows)]
    assert!([121, 231].contains(&code), "{code}: {err}");
    assert!(took >= bound, "gave up early: {took:?}");
    assert!(took < bound + Duration::from_secs(3), "overran: {took:?}");
}

/// go-winio `TestDialAccessDeniedWithRestrictedSD`: a pipe whose DACL lets only SYSTEM in is
/// `PermissionDenied` for us, at once.
#[cfg(windows)]
#[test]
#[ignore = "Wine 8 does not check pipe DACLs (see ../shared/windows/README.md), so this fails \
            under Wine; on Windows run: cargo test -p localsock --test pipe_cases -- --ignored"]
fn a_restrictive_sddl_is_permission_denied() {
    use localsock::os::windows::ListenerOptionsExt;
    let _w = watchdog("a_restrictive_sddl_is_permission_denied", 30);
    let name = unique("sddl-system-only");
    let _listener = ListenerOptions::new()
        .security_descriptor_sddl("D:P(A;;FA;;;SY)")
        .bind(&name)
        .unwrap();
    let err = LocalStream::connect(&name).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_eq!(os_code(&err), Some(5), "{err:?}");
}

/// go-winio `TestDialCancel`/.NET `ConnectAsync_Cancel`: an async connect that is dropped stops
/// at once and leaves nothing behind: the next client the server accepts is the real one.
#[cfg(feature = "tokio")]
#[test]
fn an_async_connect_is_cancelled_by_dropping_it() {
    let _w = watchdog("an_async_connect_is_cancelled_by_dropping_it", 30);
    let name = unique("async-cancel");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Waits for a server that does not exist yet; dropped after 50 ms.
        let mut opts = localsock::tokio::ConnectOptions::new();
        opts.wait_for_server(true).timeout(Duration::from_secs(20));
        let start = Instant::now();
        let cancelled = tokio::time::timeout(Duration::from_millis(50), opts.connect(&name)).await;
        assert!(cancelled.is_err(), "the connect should still be waiting");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    });
    // Nothing connects on its behalf later: the first client is the one that says "real".
    let listener = LocalListener::bind(&name).unwrap();
    let mut client = LocalStream::connect(&name).unwrap();
    client.write_all(b"real").unwrap();
    let mut first = listener.accept().unwrap();
    let mut said = [0u8; 4];
    first.read_exact(&mut said).unwrap();
    assert_eq!(&said, b"real");
}

/// .NET `ServerDisconnect`/go-winio `TestCloseAbortsListen`-style: after the server drops the
/// connection (or disconnects it with `shutdown(Both)`), the client reads 0 and its writes
/// then fail with `BrokenPipe`.
#[test]
fn after_the_server_leaves_the_client_reads_eof_then_writes_fail() {
    let _w = watchdog(
        "after_the_server_leaves_the_client_reads_eof_then_writes_fail",
        30,
    );
    for how in ["drop", "shutdown"] {
        let name = unique(&format!("server-leaves-{how}"));
        let listener = LocalListener::bind(&name).unwrap();
        let mut client = LocalStream::connect(&name).unwrap();
        let server = listener.accept().unwrap();
        // With "shutdown" the server's handle stays open: the disconnect alone must do it.
        let kept = match how {
            "drop" => {
                drop(server);
                None
            }
            _ => {
                server.shutdown(Shutdown::Both).unwrap();
                Some(server)
            }
        };
        let mut buf = [0u8; 8];
        assert_eq!(client.read(&mut buf).unwrap(), 0, "{how}: EOF expected");
        let err = client.write_all(b"anyone there?").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{how}: {err}");
        drop(kept);
    }
}

/// go-winio `TestListenConnectRace`-style: 50 clients hammering a name while the server binds
/// it never make the bind fail, and every client gets through.
#[test]
fn fifty_connects_racing_a_bind_never_make_it_fail() {
    let _w = watchdog("fifty_connects_racing_a_bind_never_make_it_fail", 60);
    let name = unique("race");
    let clients = 50;
    let start = Arc::new(Barrier::new(clients + 1));
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let name = name.clone();
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                let mut s = ConnectOptions::new()
                    .wait_for_server(true)
                    .timeout(Duration::from_secs(30))
                    .backoff(Duration::from_micros(100), Duration::from_millis(5))
                    .connect(&name)
                    .unwrap_or_else(|e| panic!("client {i}: {e}"));
                s.write_all(&[i as u8]).unwrap();
            })
        })
        .collect();
    start.wait();
    let listener = LocalListener::bind(&name).expect("bind must win against the clients");
    let mut seen = vec![false; clients];
    for _ in 0..clients {
        let mut s = listener.accept().unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        seen[b[0] as usize] = true;
    }
    for h in handles {
        h.join().unwrap();
    }
    assert!(seen.iter().all(|s| *s), "every client got through");
}

/// go-winio `TestConnectRace`/.NET stress: 1,000 sequential connect/close cycles against an
/// accept loop, each connection really used.
#[test]
fn a_thousand_sequential_connects_against_an_accept_loop() {
    let _w = watchdog("a_thousand_sequential_connects_against_an_accept_loop", 120);
    let name = unique("thousand");
    let listener = LocalListener::bind(&name).unwrap();
    let rounds = 1000u32;
    let server = thread::spawn(move || {
        let mut served = 0u32;
        for stream in listener.incoming().take(rounds as usize) {
            let mut s = stream.unwrap();
            let mut b = [0u8; 4];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
            served += 1;
        }
        served
    });
    for i in 0..rounds {
        let mut c = LocalStream::connect(&name).unwrap_or_else(|e| panic!("round {i}: {e}"));
        c.write_all(&i.to_le_bytes()).unwrap();
        let mut back = [0u8; 4];
        c.read_exact(&mut back).unwrap();
        assert_eq!(u32::from_le_bytes(back), i);
    }
    assert_eq!(server.join().unwrap(), rounds);
}

/// The name-length limits at their exact boundary, through a real bind and connect: the
/// longest name that fits works, one more is `InvalidInput` naming the limit. Unix: `sun_path`
/// (108 bytes on Linux, 104 on macOS/BSD, with the NUL); Windows: 256 UTF-16 units for the
/// whole `\\.\pipe\...` name.
#[test]
fn name_length_limits_hold_at_their_exact_boundary() {
    let _w = watchdog("name_length_limits_hold_at_their_exact_boundary", 30);
    #[cfg(unix)]
    let (longest, too_long, limit) = {
        let sun_path = if cfg!(any(target_os = "linux", target_os = "android")) {
            108
        } else {
            104
        };
        let dir = std::env::temp_dir().join(unique_str("len"));
        std::fs::create_dir_all(&dir).unwrap();
        let base = dir.to_str().unwrap().len() + 1; // "dir/"
        let fit = sun_path - 1 - base; // room for the NUL
        let longest = dir.join("a".repeat(fit));
        let too_long = dir.join("a".repeat(fit + 1));
        assert_eq!(longest.to_str().unwrap().len(), sun_path - 1);
        (
            Name::path(&longest),
            Name::path(&too_long),
            sun_path.to_string(),
        )
    };
    #[cfg(windows)]
    let (longest, too_long, limit) = {
        let prefix = r"\\.\pipe\";
        let tag = unique_str("len");
        let fill = |total: usize| {
            let mut s = format!("{prefix}{tag}-");
            while s.len() < total {
                s.push('a');
            }
            s
        };
        (
            Name::new(fill(256)),
            Name::new(fill(257)),
            "256".to_string(),
        )
    };
    let longest = longest.expect("the longest name that fits is accepted");
    let listener = LocalListener::bind(&longest).unwrap();
    let mut c = LocalStream::connect(&longest).unwrap();
    let mut s = listener.accept().unwrap();
    c.write_all(b"ok").unwrap();
    let mut b = [0u8; 2];
    s.read_exact(&mut b).unwrap();
    let err = too_long.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains(&limit), "{err}");
}
