//! Binding: a live name is never stolen; stale files are reclaimed safely; access modes.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::thread;

use common::{unique, watchdog};
use localsock::{LocalListener, LocalStream};

/// Echoes one 4-byte message. A losing bind's liveness probe is a connection that closes at
/// once, as any client may do: skip such connections.
fn echo_once(listener: &LocalListener) {
    loop {
        let mut s = listener.accept().unwrap();
        let mut b = [0u8; 4];
        if s.read_exact(&mut b).is_ok() {
            s.write_all(&b).unwrap();
            return;
        }
    }
}

fn roundtrip(name: &localsock::Name) {
    let mut c = LocalStream::connect(name).unwrap();
    c.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
}

#[test]
fn second_bind_is_addr_in_use_and_the_first_server_keeps_working() {
    let _w = watchdog("second_bind_is_addr_in_use", 20);
    let name = unique("twice");
    let first = LocalListener::bind(&name).unwrap();
    let err = LocalListener::bind(&name).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("bind"), "{msg}");
    assert!(msg.contains(&name.to_string()), "{msg}");
    thread::scope(|s| {
        s.spawn(|| echo_once(&first));
        roundtrip(&name);
    });
}

#[test]
fn listener_reports_its_name_and_accepts_from_several_threads() {
    let _w = watchdog("listener_accepts_from_several_threads", 20);
    let name = unique("mt");
    let listener = LocalListener::bind(&name).unwrap();
    assert_eq!(listener.name(), &name);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| echo_once(&listener));
        }
        for _ in 0..4 {
            roundtrip(&name);
        }
    });
}

#[test]
fn nonblocking_accept_would_block_without_clients() {
    let _w = watchdog("nonblocking_accept_would_block", 20);
    let name = unique("nb");
    let listener = LocalListener::bind(&name).unwrap();
    listener.set_nonblocking(true).unwrap();
    let err = listener.accept().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock, "{err}");
    let _c = LocalStream::connect(&name).unwrap();
    // The client is queued now; poll briefly (Windows completes the pipe connect async).
    let mut got = None;
    for _ in 0..200 {
        match listener.accept() {
            Ok(s) => {
                got = Some(s);
                break;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => panic!("{e}"),
        }
    }
    let s = got.expect("accepted the queued client");
    // Accepted streams are blocking regardless of the listener's mode.
    s.set_read_timeout(Some(std::time::Duration::from_millis(50)))
        .unwrap();
    let err = (&s).read(&mut [0u8; 1]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
}

#[cfg(unix)]
mod unix {
    use super::*;
    use crate::common::{child, is_child, read_line, wait_bounded};
    use localsock::{Access, ListenerOptions, Name};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o777
    }

    fn is_socket(path: &Path) -> bool {
        use std::os::unix::fs::FileTypeExt;
        std::fs::symlink_metadata(path)
            .map(|m| m.file_type().is_socket())
            .unwrap_or(false)
    }

    /// A server killed with SIGKILL leaves its socket file behind; the next bind reclaims it.
    #[test]
    fn stale_file_of_a_killed_server_is_reclaimed() {
        let _w = watchdog("stale_file_of_a_killed_server_is_reclaimed", 30);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("killed.sock");
        let mut c = child(
            "unix::child_serve_forever",
            &[("LOCALSOCK_TEST_PATH", path.to_str().unwrap())],
        )
        .spawn()
        .unwrap();
        assert_eq!(read_line(&mut c), "listening");
        let name = Name::path(&path).unwrap();
        // Live: not stolen.
        let err = LocalListener::bind(&name).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
        c.kill().unwrap();
        c.wait().unwrap();
        assert!(is_socket(&path), "SIGKILL left the file behind");
        assert_eq!(
            LocalStream::connect(&name).unwrap_err().kind(),
            ErrorKind::ConnectionRefused
        );
        let listener = LocalListener::bind(&name).expect("stale file reclaimed");
        thread::scope(|s| {
            s.spawn(|| echo_once(&listener));
            roundtrip(&name);
        });
    }

    #[test]
    #[ignore = "child process entry point"]
    fn child_serve_forever() {
        if !is_child("unix::child_serve_forever") {
            return;
        }
        let path = std::env::var("LOCALSOCK_TEST_PATH").unwrap();
        let listener = LocalListener::bind(&Name::path(path).unwrap()).unwrap();
        println!("CHILD listening");
        loop {
            let _ = listener.accept();
        }
    }

    #[test]
    fn stale_file_is_kept_when_reclaim_is_off() {
        let _w = watchdog("stale_file_is_kept_when_reclaim_is_off", 20);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stale.sock");
        crate::common::make_stale_socket(&path);
        let err = ListenerOptions::new()
            .reclaim_stale(false)
            .bind(&Name::path(&path).unwrap())
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains("stale"), "{err}");
        assert!(is_socket(&path));
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_never_touched() {
        let _w = watchdog("a_file_that_is_not_a_socket_is_never_touched", 20);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.sock");
        std::fs::write(&path, b"precious").unwrap();
        let err = LocalListener::bind(&Name::path(&path).unwrap()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    /// A symlink at the socket path is not followed by bind, and reclaim does not delete its
    /// target.
    #[test]
    fn a_symlink_at_the_path_is_not_followed() {
        let _w = watchdog("a_symlink_at_the_path_is_not_followed", 20);
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.sock");
        crate::common::make_stale_socket(&target); // a stale socket
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = LocalListener::bind(&Name::path(&link).unwrap()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(is_socket(&target), "the symlink's target was deleted");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn drop_removes_the_file_it_created_only() {
        let _w = watchdog("drop_removes_the_file_it_created_only", 20);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.sock");
        let name = Name::path(&path).unwrap();
        drop(LocalListener::bind(&name).unwrap());
        assert!(!path.exists(), "the listener's own file is removed on drop");

        let listener = LocalListener::bind(&name).unwrap();
        // Someone replaces the file while the listener lives.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"someone else's").unwrap();
        drop(listener);
        assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
    }

    #[test]
    fn access_modes_are_set_on_the_socket_file() {
        let _w = watchdog("access_modes_are_set_on_the_socket_file", 20);
        let dir = tempfile::tempdir().unwrap();
        for (access, want) in [
            (Access::Owner, 0o600),
            (Access::Group, 0o660),
            (Access::Everyone, 0o666),
        ] {
            let path = dir.path().join(format!("{access:?}.sock"));
            let _l = ListenerOptions::new()
                .access(access)
                .bind(&Name::path(&path).unwrap())
                .unwrap();
            assert_eq!(mode(&path), want, "{access:?}");
            // No temporary directory is left behind.
            let leftovers: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| n.to_string_lossy().starts_with(".ls"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
    }

    /// Many rounds of two servers reclaiming the same stale name at the same moment: exactly
    /// one wins, the other gets AddrInUse, and the winner's socket is never deleted.
    ///
    /// The rounds run in a child process of their own. In this one, other tests' threads spawn
    /// children: a fork copies every descriptor until the child execs, and when that takes over
    /// a second (a loaded machine) the copy of a racer's directory-lock descriptor keeps the
    /// `flock` held, so both racers rightly refuse to reclaim without it and neither wins. That
    /// is the library being safe, not a race it loses; the child has no other thread that forks.
    #[test]
    fn racing_reclaims_have_exactly_one_winner() {
        let _w = watchdog("racing_reclaims_have_exactly_one_winner", 90);
        let mut proc = child("unix::child_racing_reclaims", &[]).spawn().unwrap();
        let (status, out) = crate::common::wait_and_read_stdout(&mut proc, 80);
        assert!(status.success(), "{out}");
        assert!(out.contains("CHILD 200 rounds"), "{out}");
    }

    #[test]
    #[ignore = "child process entry point"]
    fn child_racing_reclaims() {
        if !is_child("unix::child_racing_reclaims") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("race.sock");
        let name = Name::path(&path).unwrap();
        for round in 0..200 {
            crate::common::make_stale_socket(&path); // stale file
            let barrier = std::sync::Barrier::new(2);
            let results: Vec<_> = thread::scope(|s| {
                let hs: Vec<_> = (0..2)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            LocalListener::bind(&name)
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let winners: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
            assert_eq!(winners.len(), 1, "round {round}: {results:?}");
            for r in &results {
                if let Err(e) = r {
                    assert_eq!(e.kind(), ErrorKind::AddrInUse, "round {round}: {e}");
                }
            }
            // The winner still owns a live socket at the path.
            let winner = results.into_iter().find_map(Result::ok).unwrap();
            thread::scope(|s| {
                s.spawn(|| echo_once(&winner));
                roundtrip(&name);
            });
            drop(winner);
            assert!(!path.exists());
        }
        println!("CHILD 200 rounds");
    }

    /// With `require_same_user`, a client of another user is dropped at accept; ours gets in.
    #[test]
    #[ignore = "needs root to play another user — run as root: cargo test -p localsock --test bind -- --ignored"]
    fn require_same_user_drops_other_users() {
        let _w = common::root_test("require_same_user_drops_other_users", 30);
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
        let path = dir.path().join("same.sock");
        let name = Name::path(&path).unwrap();
        let listener = ListenerOptions::new()
            .access(Access::Everyone)
            .require_same_user(true)
            .bind(&name)
            .unwrap();
        let mut other = common::child_as(
            "unix::child_connect_read_eof",
            &[("LOCALSOCK_TEST_PATH", path.to_str().unwrap())],
            65534,
            65534,
        )
        .spawn()
        .unwrap();
        thread::scope(|s| {
            let server = s.spawn(|| {
                let s = listener.accept().unwrap();
                s.peer_credentials().unwrap().uid()
            });
            // The stranger is connected (queued) and then dropped by accept.
            assert_eq!(read_line(&mut other), "eof");
            let _mine = LocalStream::connect(&name).unwrap();
            assert_eq!(server.join().unwrap(), Some(0));
        });
        assert!(wait_bounded(&mut other, 20).success());
    }

    #[test]
    #[ignore = "child process entry point"]
    fn child_connect_read_eof() {
        if !is_child("unix::child_connect_read_eof") {
            return;
        }
        let path = std::env::var("LOCALSOCK_TEST_PATH").unwrap();
        let mut s = LocalStream::connect(&Name::path(path).unwrap()).unwrap();
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(0) => println!("CHILD eof"),
            Ok(_) => println!("CHILD data"),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => println!("CHILD eof"),
            Err(e) => println!("CHILD error {e}"),
        }
    }

    #[test]
    fn a_name_too_long_is_invalid_input_with_the_limit() {
        let long = format!("/tmp/{}", "x".repeat(200));
        let err = Name::new(&long).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("205 bytes"), "{err}");
        assert!(err.to_string().contains("limit"), "{err}");
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn abstract_names_work_and_trailing_nuls_count() {
        let _w = watchdog("abstract_names_work_and_trailing_nuls_count", 20);
        let base = crate::common::unique_str("abs");
        let plain = Name::abstract_name(&base).unwrap();
        let with_nul = Name::abstract_name(format!("{base}\0")).unwrap();
        assert_ne!(plain, with_nul);
        assert!(plain.to_string().starts_with('@'));
        let listener = LocalListener::bind(&with_nul).unwrap();
        assert_eq!(
            LocalStream::connect(&plain).unwrap_err().kind(),
            ErrorKind::ConnectionRefused
        );
        thread::scope(|s| {
            s.spawn(|| echo_once(&listener));
            roundtrip(&with_nul);
        });
        let err = LocalListener::bind(&with_nul).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse);
    }
}
