//! Reading and writing: EOF, half-close, BrokenPipe without SIGPIPE, timeouts, clones,
//! peer credentials.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::{pair, watchdog};

#[test]
fn bytes_flow_both_ways_and_through_shared_references() {
    let _w = watchdog("bytes_flow_both_ways", 60);
    let (client, server) = pair("flow");
    let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    thread::scope(|s| {
        // One thread writes through &LocalStream while another reads through &LocalStream,
        // and the server echoes as it reads, so both directions are busy at once.
        s.spawn(|| (&client).write_all(&data).unwrap());
        s.spawn(|| {
            let mut buf = vec![0u8; 64 * 1024];
            let mut left = data.len();
            while left > 0 {
                let n = (&server).read(&mut buf).unwrap();
                assert!(n > 0, "early EOF");
                (&server).write_all(&buf[..n]).unwrap();
                left -= n;
            }
        });
        let mut back = vec![0u8; data.len()];
        (&client).read_exact(&mut back).unwrap();
        assert!(back == data, "echoed bytes differ");
    });
}

/// Named pipes have no half-close, so this is Unix only (see `LocalStream::shutdown`).
#[cfg(unix)]
#[test]
fn shutdown_write_delivers_eof_and_the_other_direction_keeps_working() {
    let _w = watchdog("shutdown_write_delivers_eof", 20);
    let (mut client, mut server) = pair("half");
    client.write_all(b"request").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut req = Vec::new();
    server.read_to_end(&mut req).unwrap();
    assert_eq!(req, b"request");
    server.write_all(b"reply after EOF").unwrap();
    drop(server);
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"reply after EOF");
}

#[test]
fn data_written_before_drop_is_delivered() {
    let _w = watchdog("data_written_before_drop_is_delivered", 20);
    let (client, mut server) = pair("linger");
    let data = vec![7u8; 256 * 1024];
    let d2 = data.clone();
    let writer = thread::spawn(move || {
        let mut client = client;
        client.write_all(&d2).unwrap();
        // dropped here, right after the last write
    });
    let mut got = Vec::new();
    server.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(got.len(), data.len());
}

#[test]
fn write_to_a_closed_peer_is_broken_pipe() {
    let _w = watchdog("write_to_a_closed_peer_is_broken_pipe", 20);
    let (mut client, server) = pair("closed");
    drop(server);
    let err = loop {
        match client.write(&[1u8; 4096]) {
            Ok(n) => {
                assert!(n > 0);
                thread::sleep(Duration::from_millis(1))
            }
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            err.kind(),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
        ),
        "{err:?}"
    );
    // Reading from a vanished peer is a clean EOF.
    let mut b = [0u8; 1];
    assert_eq!(client.read(&mut b).unwrap(), 0);
}

#[test]
fn read_timeout_returns_within_its_bound() {
    let _w = watchdog("read_timeout_returns_within_its_bound", 20);
    let (client, _server) = pair("rto");
    assert_eq!(client.read_timeout().unwrap(), None);
    client
        .set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    let t = client.read_timeout().unwrap().unwrap();
    assert!(
        t >= Duration::from_millis(150) && t < Duration::from_millis(200),
        "{t:?}"
    );
    let start = Instant::now();
    let err = (&client).read(&mut [0u8; 8]).unwrap_err();
    let elapsed = start.elapsed();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err:?}"
    );
    assert!(elapsed >= Duration::from_millis(140), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(
        client
            .set_read_timeout(Some(Duration::ZERO))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    client.set_read_timeout(None).unwrap();
    assert_eq!(client.read_timeout().unwrap(), None);
}

#[test]
fn write_timeout_returns_within_its_bound() {
    let _w = watchdog("write_timeout_returns_within_its_bound", 20);
    let (client, _server) = pair("wto");
    client
        .set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // Nobody reads: the buffers fill and a write times out instead of blocking forever.
    let chunk = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let err = loop {
        match (&client).write(&chunk) {
            Ok(n) => assert!(
                n > 0 && start.elapsed() < Duration::from_secs(10),
                "never filled"
            ),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err:?}"
    );
}

#[test]
fn nonblocking_read_would_block() {
    let _w = watchdog("nonblocking_read_would_block", 20);
    let (client, server) = pair("nbread");
    client.set_nonblocking(true).unwrap();
    let err = (&client).read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    (&server).write_all(b"x").unwrap();
    let start = Instant::now();
    loop {
        match (&client).read(&mut [0u8; 8]) {
            Ok(1) => break,
            Ok(n) => panic!("read {n}"),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(start.elapsed() < Duration::from_secs(5));
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn try_clone_shares_the_connection() {
    let _w = watchdog("try_clone_shares_the_connection", 20);
    let (client, mut server) = pair("clone");
    let mut clone = client.try_clone().unwrap();
    drop(client);
    clone.write_all(b"via clone").unwrap();
    let mut b = [0u8; 9];
    server.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"via clone");
}

#[test]
fn peer_credentials_name_this_process() {
    let _w = watchdog("peer_credentials_name_this_process", 20);
    let (client, server) = pair("creds");
    for s in [&client, &server] {
        let c = s.peer_credentials().unwrap();
        assert_eq!(c.pid(), Some(std::process::id()));
        #[cfg(unix)]
        {
            let me = std::fs::metadata("/proc/self").map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.uid()
            });
            if let Ok(uid) = me {
                assert_eq!(c.uid(), Some(uid));
            }
            assert!(c.gid().is_some());
        }
    }
}

#[cfg(unix)]
mod unix {
    use super::*;
    use crate::common::{child, is_child, read_line, unique, wait_bounded};
    use localsock::{LocalListener, LocalStream, Name};

    /// Cross-process: the peer's pid is the child's, and a child killed mid-stream is a clean
    /// EOF for the server.
    #[test]
    fn killed_peer_is_eof_and_its_pid_is_known() {
        let _w = watchdog("killed_peer_is_eof_and_its_pid_is_known", 30);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kill.sock");
        let name = Name::path(&path).unwrap();
        let listener = LocalListener::bind(&name).unwrap();
        let mut c = child(
            "unix::child_write_then_hang",
            &[("LOCALSOCK_TEST_PATH", path.to_str().unwrap())],
        )
        .spawn()
        .unwrap();
        let mut s = listener.accept().unwrap();
        assert_eq!(s.peer_credentials().unwrap().pid(), Some(c.id()));
        let mut hello = [0u8; 5];
        s.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, b"hello");
        c.kill().unwrap();
        c.wait().unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    #[ignore = "child process entry point"]
    fn child_write_then_hang() {
        if !is_child("unix::child_write_then_hang") {
            return;
        }
        let path = std::env::var("LOCALSOCK_TEST_PATH").unwrap();
        let mut s = LocalStream::connect(&Name::path(path).unwrap()).unwrap();
        s.write_all(b"hello").unwrap();
        thread::sleep(Duration::from_secs(60));
    }

    /// In a process whose SIGPIPE disposition is the default (terminate), writing to a closed
    /// peer must return BrokenPipe, not kill the process. Rust's runtime ignores SIGPIPE, so
    /// the child restores the default first.
    #[test]
    fn no_sigpipe_even_with_the_default_handler() {
        let _w = watchdog("no_sigpipe_even_with_the_default_handler", 30);
        let mut c = child("unix::child_default_sigpipe_write", &[])
            .spawn()
            .unwrap();
        let line = read_line(&mut c);
        let status = wait_bounded(&mut c, 20);
        assert_eq!(line, "BrokenPipe");
        assert!(status.success(), "child died: {status:?}");
    }

    #[test]
    #[ignore = "child process entry point"]
    #[allow(unsafe_code)]
    fn child_default_sigpipe_write() {
        if !is_child("unix::child_default_sigpipe_write") {
            return;
        }
        // SAFETY: setting a signal disposition to SIG_DFL has no memory-safety preconditions;
        // this child process runs one test on one thread.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let (mut client, server) = pair("sigpipe");
        drop(server);
        let kind = loop {
            match client.write(&[0u8; 1024]) {
                Ok(n) => {
                    assert!(n > 0);
                    thread::sleep(Duration::from_millis(1))
                }
                Err(e) => break e.kind(),
            }
        };
        println!("CHILD {kind:?}");
    }

    /// Every descriptor localsock creates is close-on-exec: a spawned program sees none.
    #[cfg(target_os = "linux")]
    #[test]
    fn no_descriptor_leaks_into_child_processes() {
        use std::os::fd::AsRawFd;
        let _w = watchdog("no_descriptor_leaks_into_child_processes", 20);
        let name = unique("cloexec");
        let listener = LocalListener::bind(&name).unwrap();
        let client = LocalStream::connect(&name).unwrap();
        let server = listener.accept().unwrap();
        let clone = server.try_clone().unwrap();
        crate::common::assert_no_fd_leaks_into_child(&[
            listener.as_raw_fd(),
            client.as_raw_fd(),
            server.as_raw_fd(),
            clone.as_raw_fd(),
        ]);
    }

    #[test]
    fn fd_conversions_round_trip() {
        use std::os::fd::OwnedFd;
        let _w = watchdog("fd_conversions_round_trip", 20);
        let (client, mut server) = pair("fdconv");
        let fd: OwnedFd = client.into();
        let mut client = LocalStream::from(fd);
        client.write_all(b"ok").unwrap();
        let mut b = [0u8; 2];
        server.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ok");

        // A listener adopted from a raw fd (socket activation) knows its name.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("adopted.sock");
        let std_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let adopted = LocalListener::from(OwnedFd::from(std_listener));
        assert_eq!(adopted.name().fs_path(), Some(path.as_path()));
        let _c = LocalStream::connect(adopted.name()).unwrap();
        adopted.accept().unwrap();
        drop(adopted);
        assert!(
            path.exists(),
            "an adopted listener does not remove a file it did not create"
        );

        // Releasing a listener's descriptor leaves its socket file in place, still serving.
        let released_path = dir.path().join("released.sock");
        let released = LocalListener::bind(&Name::path(&released_path).unwrap()).unwrap();
        let fd = OwnedFd::from(released);
        assert!(
            released_path.exists(),
            "releasing the fd removed the socket file"
        );
        let again = LocalListener::from(fd);
        let _c = LocalStream::connect(again.name()).unwrap();
        again.accept().unwrap();
    }
}
