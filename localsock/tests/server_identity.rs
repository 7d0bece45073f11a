//! The client's check of who the server is (`ConnectOptions::server_identity`), through the
//! public API with real sockets and pipes, on Linux and under Wine. The test that plays another
//! user (a stranger's server) needs root and is `#[ignore]`d.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::thread;
use std::time::Duration;

use common::{unique, unique_str, watchdog};
use localsock::{ConnectOptions, LocalListener, LocalStream, Name, ServerIdentity};

/// A full name for the platform (so no default check applies): a path in a fresh temp
/// directory on Unix, an explicit `\\.\pipe\` name on Windows. The directory guard must live as
/// long as the name is used.
fn explicit_name(tag: &str) -> (Name, Option<tempfile::TempDir>) {
    #[cfg(unix)]
    {
        let dir = tempfile::tempdir().unwrap();
        let name = Name::path(dir.path().join(format!("{tag}.sock"))).unwrap();
        (name, Some(dir))
    }
    #[cfg(windows)]
    {
        let name = Name::new(format!(r"\\.\pipe\{}", unique_str(tag))).unwrap();
        (name, None)
    }
}

/// An identity that is certainly not the current user's.
fn a_stranger() -> ServerIdentity {
    #[cfg(unix)]
    {
        let me = rustix::process::geteuid().as_raw();
        ServerIdentity::Uid(me.wrapping_add(4242))
    }
    #[cfg(windows)]
    {
        ServerIdentity::Sid("S-1-5-21-1111111111-2222222222-3333333333-4242".to_owned())
    }
}

/// Accepts one client in a thread and returns everything it sent before closing.
fn count_what_the_client_sends(listener: LocalListener) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut stream = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        got
    })
}

#[test]
fn our_own_server_passes_every_requirement_that_names_us() {
    let _w = watchdog("our_own_server_passes_every_requirement_that_names_us", 30);
    let name = unique("ident-own");
    let listener = LocalListener::bind(&name).unwrap();
    let mut requirements = vec![
        None,
        Some(ServerIdentity::Any),
        Some(ServerIdentity::CurrentUser),
        Some(ServerIdentity::CurrentUserOrAdmin),
    ];
    let mut first = LocalStream::connect(&name).unwrap();
    let server_end = listener.accept().unwrap();
    // Our own identity as the OS names it, learnt from the server end of a first connection.
    #[cfg(unix)]
    requirements.push(Some(ServerIdentity::Uid(
        server_end.peer_credentials().unwrap().uid().unwrap(),
    )));
    #[cfg(windows)]
    requirements.push(Some(ServerIdentity::Sid(
        server_end
            .peer_credentials()
            .unwrap()
            .user_sid()
            .unwrap()
            .to_lowercase(),
    )));
    first.write_all(b"1").unwrap();
    drop((first, server_end));
    for required in requirements {
        let mut opts = ConnectOptions::new();
        if let Some(required) = &required {
            opts.server_identity(required.clone());
        }
        let mut client = opts
            .connect(&name)
            .unwrap_or_else(|e| panic!("{required:?}: {e}"));
        let mut server = listener.accept().unwrap();
        client.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        server.read_exact(&mut b).unwrap();
    }
}

/// A server run by someone else than required is refused before the stream is returned:
/// `PermissionDenied` naming the endpoint and the user found, and the server receives nothing
/// (it reads EOF with 0 bytes).
#[test]
fn a_server_of_another_user_is_refused_and_receives_nothing() {
    let _w = watchdog(
        "a_server_of_another_user_is_refused_and_receives_nothing",
        30,
    );
    let (name, _dir) = explicit_name("ident-stranger");
    let listener = LocalListener::bind(&name).unwrap();
    let server = count_what_the_client_sends(listener);
    let err = ConnectOptions::new()
        .server_identity(a_stranger())
        .connect(&name)
        .expect_err("a server of the wrong user must be refused");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&name.to_string()), "{msg}");
    assert!(msg.contains("the server runs as"), "{msg}");
    assert_eq!(server.join().unwrap(), b"", "nothing reaches the server");
}

/// With no requirement set, an explicit path or pipe name is not checked (only short names
/// are): the same server as above is reached.
#[test]
fn explicit_names_are_not_checked_unless_asked() {
    let _w = watchdog("explicit_names_are_not_checked_unless_asked", 30);
    let (name, _dir) = explicit_name("ident-explicit");
    let listener = LocalListener::bind(&name).unwrap();
    let server = count_what_the_client_sends(listener);
    let mut client = LocalStream::connect(&name).unwrap();
    client.write_all(b"hello").unwrap();
    drop(client);
    assert_eq!(server.join().unwrap(), b"hello");
}

#[cfg(feature = "tokio")]
#[test]
fn the_async_connect_checks_the_same_way() {
    let _w = watchdog("the_async_connect_checks_the_same_way", 30);
    let (name, _dir) = explicit_name("ident-async");
    let listener = LocalListener::bind(&name).unwrap();
    let server = count_what_the_client_sends(listener);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let err = localsock::tokio::ConnectOptions::new()
            .server_identity(a_stranger())
            .connect(&name)
            .await
            .expect_err("a server of the wrong user must be refused");
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        assert!(err.to_string().contains(&name.to_string()), "{err}");
        // And our own server passes CurrentUser.
        let other = unique("ident-async-own");
        let own = LocalListener::bind(&other).unwrap();
        let own_server = count_what_the_client_sends(own);
        let mut client = localsock::tokio::ConnectOptions::new()
            .server_identity(ServerIdentity::CurrentUser)
            .connect(&other)
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, b"ok")
            .await
            .unwrap();
        drop(client);
        // Wait without blocking the runtime: on Windows a dropped tokio pipe is closed once
        // the runtime has seen its pending I/O cancelled.
        let own = tokio::task::spawn_blocking(move || own_server.join().unwrap());
        assert_eq!(own.await.unwrap(), b"ok");
        let stranger = tokio::task::spawn_blocking(move || server.join().unwrap());
        assert_eq!(stranger.await.unwrap(), b"", "nothing reaches the server");
    });
}

/// A real stranger: uid 65534 runs the server on a path in a directory everyone may write
/// (the situation of an explicit path). A client that requires `CurrentUser` is refused and
/// the stranger receives 0 bytes; without the requirement it would have reached it.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "needs root to play another uid — run with: cargo test -p localsock --test server_identity -- --ignored"]
fn a_strangers_server_on_a_shared_path_is_refused() {
    let _w = common::root_test("a_strangers_server_on_a_shared_path_is_refused", 60);
    let dir = std::env::temp_dir().join(unique_str("ident-shared"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let path = dir.join("svc.sock");
    let run_stranger = || {
        // Run from a copy the other user can reach, whatever the checkout's permissions.
        common::child_as(
            "child_stranger_server",
            &[("LOCALSOCK_TEST_PATH", path.to_str().unwrap())],
            65534,
            65534,
        )
        .spawn()
        .unwrap()
    };
    let name = Name::path(&path).unwrap();

    let mut stranger = run_stranger();
    assert_eq!(common::read_line(&mut stranger), "listening");
    let err = ConnectOptions::new()
        .server_identity(ServerIdentity::CurrentUser)
        .connect(&name)
        .expect_err("the stranger's server must be refused");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("uid 65534"), "{err}");
    assert_eq!(common::read_line(&mut stranger), "got 0");
    assert!(common::wait_bounded(&mut stranger, 20).success());

    // The control: the same stranger, no requirement on an explicit path: it is reached.
    let mut stranger = run_stranger();
    assert_eq!(common::read_line(&mut stranger), "listening");
    let mut client = LocalStream::connect(&name).unwrap();
    client.write_all(b"secret").unwrap();
    drop(client);
    assert_eq!(common::read_line(&mut stranger), "got 6");
    assert!(common::wait_bounded(&mut stranger, 20).success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The stranger's server: binds `LOCALSOCK_TEST_PATH` (open to everyone), accepts one client
/// and says how many bytes it received before EOF.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "child process entry point"]
fn child_stranger_server() {
    if !common::is_child("child_stranger_server") {
        return;
    }
    let path = std::env::var("LOCALSOCK_TEST_PATH").unwrap();
    let listener = localsock::ListenerOptions::new()
        .access(localsock::Access::Everyone)
        .bind(&Name::path(path).unwrap())
        .unwrap();
    println!("CHILD listening");
    let mut stream = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    println!("CHILD got {}", got.len());
}
