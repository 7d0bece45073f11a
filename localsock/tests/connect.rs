//! Connecting: errors that say why, and connects that are bounded.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::{unique, watchdog};
use localsock::{ConnectOptions, ListenerOptions, LocalListener, LocalStream};

#[test]
fn no_server_is_not_found_and_names_the_endpoint() {
    let _w = watchdog("no_server_is_not_found_and_names_the_endpoint", 20);
    let name = unique("absent");
    let start = Instant::now();
    let err = LocalStream::connect(&name).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("connect to"), "operation missing: {msg}");
    assert!(msg.contains(&name.to_string()), "endpoint missing: {msg}");
    // Without wait_for_server, "no server" is final at once, not retried until the deadline.
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn wait_for_server_connects_to_a_server_that_starts_later() {
    let _w = watchdog("wait_for_server_connects_to_a_server_that_starts_later", 30);
    let name = unique("late");
    let n2 = name.clone();
    let client = common::spawn_waiting_client(move || {
        ConnectOptions::new()
            .timeout(Duration::from_secs(10))
            .wait_for_server(true)
            .connect(&n2)
    });
    let listener = LocalListener::bind(&name).unwrap();
    let mut server = listener.accept().unwrap();
    let mut client = client
        .join()
        .unwrap()
        .expect("client waited for the server");
    client.write_all(b"hi").unwrap();
    let mut buf = [0; 2];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");
}

#[test]
fn wait_for_server_gives_up_at_the_deadline_with_timed_out() {
    let _w = watchdog(
        "wait_for_server_gives_up_at_the_deadline_with_timed_out",
        20,
    );
    let name = unique("never");
    let start = Instant::now();
    let err = ConnectOptions::new()
        .timeout(Duration::from_millis(300))
        .wait_for_server(true)
        .connect(&name)
        .unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("attempts"), "{msg}");
    assert!(msg.contains("no server appeared"), "{msg}");
    assert!(msg.contains(&name.to_string()), "{msg}");
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

/// Linux answers a connect to a full backlog with EAGAIN and does not complete it; Windows
/// answers ERROR_PIPE_BUSY when every instance is taken. Either way: retried until the
/// deadline, then TimedOut, and never an unconnected stream.
#[test]
fn busy_server_times_out_within_the_deadline() {
    let _w = watchdog("busy_server_times_out_within_the_deadline", 30);
    let name = unique("busy");
    let _listener = ListenerOptions::new().backlog(1).bind(&name).unwrap();
    // Fill the queue: nobody accepts.
    let mut held = Vec::new();
    let err = loop {
        match ConnectOptions::new()
            .timeout(Duration::from_millis(200))
            .connect(&name)
        {
            Ok(s) => held.push(s),
            Err(e) => break e,
        }
        assert!(held.len() < 10_000, "the backlog never filled");
    };
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("stayed busy"), "{msg}");
    assert!(msg.contains("attempts"), "{msg}");
}

#[test]
fn busy_server_is_retried_until_it_accepts() {
    let _w = watchdog("busy_server_is_retried_until_it_accepts", 30);
    let name = unique("retry");
    let listener = ListenerOptions::new().backlog(1).bind(&name).unwrap();
    let mut held = Vec::new();
    while let Ok(s) = ConnectOptions::new()
        .timeout(Duration::from_millis(100))
        .connect(&name)
    {
        held.push(s);
        assert!(held.len() < 10_000, "the backlog never filled");
    }
    let n2 = name.clone();
    let late = common::spawn_waiting_client(move || {
        ConnectOptions::new()
            .timeout(Duration::from_secs(10))
            .connect(&n2)
    });
    // Make room: accept and keep everything that was queued.
    let mut accepted = Vec::new();
    for _ in 0..=held.len() {
        accepted.push(listener.accept().unwrap());
    }
    let mut late = late.join().unwrap().expect("retried connect succeeded");
    // The late stream is really connected: a byte goes through.
    late.write_all(b"z").unwrap();
    // Poll the accepted streams until the byte shows up on one of them.
    for s in &mut accepted {
        s.set_nonblocking(true).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        let arrived = accepted.iter_mut().find_map(|s| {
            let mut b = [0u8; 1];
            matches!(s.read(&mut b), Ok(1)).then_some(b)
        });
        if let Some(b) = arrived {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "the late client's byte never arrived on an accepted stream"
        );
        thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(&got, b"z");
}

#[test]
fn zero_timeout_means_one_attempt() {
    let _w = watchdog("zero_timeout_means_one_attempt", 20);
    let name = unique("zero");
    let err = ConnectOptions::new()
        .timeout(Duration::ZERO)
        .wait_for_server(true)
        .connect(&name)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(err.to_string().contains("1 attempt "), "{err}");
}

#[cfg(unix)]
mod unix {
    use super::*;
    use crate::common::{is_child, is_root, wait_bounded};
    use localsock::{Access, Name};

    /// A socket file with no listener behind it is stale: ConnectionRefused, not NotFound.
    #[test]
    fn stale_socket_file_is_connection_refused() {
        let _w = watchdog("stale_socket_file_is_connection_refused", 20);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stale.sock");
        crate::common::make_stale_socket(&path); // std leaves the file
        let err = LocalStream::connect(&Name::path(&path).unwrap()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("stale"), "{msg}");
    }

    /// Another user cannot connect to an owner-only socket: PermissionDenied. As root the test
    /// plays the other user (uid 65534) in a child process; otherwise it makes its own socket
    /// unwritable.
    #[test]
    fn not_allowed_is_permission_denied() {
        let _w = watchdog("not_allowed_is_permission_denied", 30);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private.sock");
        let name = Name::path(&path).unwrap();
        let _listener = LocalListener::bind(&name).unwrap();
        if is_root() {
            // The directory is searchable by all; the socket itself is 0600.
            std::fs::set_permissions(
                dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
            let mut c = common::child_as(
                "unix::child_connect_and_report",
                &[("LOCALSOCK_TEST_PATH", path.to_str().unwrap())],
                65534,
                65534,
            )
            .spawn()
            .unwrap();
            let line = common::read_line(&mut c);
            assert!(wait_bounded(&mut c, 20).success());
            assert!(line.starts_with("PermissionDenied|"), "{line}");
            assert!(line.contains(&path.display().to_string()), "{line}");
        } else {
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o000))
                .unwrap();
            let err = LocalStream::connect(&name).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
    }

    /// With `Access::Everyone` the other user gets in.
    #[test]
    #[ignore = "needs root to play another user — run as root: cargo test -p localsock --test connect -- --ignored"]
    fn everyone_access_lets_another_user_in() {
        let _w = common::root_test("everyone_access_lets_another_user_in", 30);
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let path = dir.path().join("open.sock");
        let listener = ListenerOptions::new()
            .access(Access::Everyone)
            .bind(&Name::path(&path).unwrap())
            .unwrap();
        let mut c = common::child_as(
            "unix::child_connect_and_report",
            &[("LOCALSOCK_TEST_PATH", path.to_str().unwrap())],
            65534,
            65534,
        )
        .spawn()
        .unwrap();
        let s = listener.accept().unwrap();
        assert_eq!(s.peer_credentials().unwrap().uid(), Some(65534));
        let line = common::read_line(&mut c);
        assert!(wait_bounded(&mut c, 20).success());
        assert_eq!(line, "connected");
    }

    #[test]
    #[ignore = "child process entry point"]
    fn child_connect_and_report() {
        if !is_child("unix::child_connect_and_report") {
            return;
        }
        let path = std::env::var("LOCALSOCK_TEST_PATH").unwrap();
        match LocalStream::connect(&Name::path(path).unwrap()) {
            Ok(_) => println!("CHILD connected"),
            Err(e) => println!("CHILD {:?}|{e}", e.kind()),
        }
    }
}
