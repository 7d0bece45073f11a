//! Interoperability with real Qt peers: `QLocalServer` and `QLocalSocket` (Qt 6, Debian's
//! `qt6-base-dev`) on the other end of localsock (issue 6).
//!
//! The Qt side is `interop/qt/qtpeer.cpp`, one program with many modes, built by
//! `interop/qt/build.sh`. Run everything with `bash ci/qt.sh` (installs Qt, builds the peer,
//! runs these tests), or by hand:
//!
//! ```text
//! bash interop/qt/build.sh /tmp/qt-peers
//! LOCALSOCK_QT_PEERS=/tmp/qt-peers cargo test -p localsock --test qt_interop -- --ignored
//! ```
//!
//! Linux only (abstract names, `SO_PEERCRED`, uid switching). Every test is `#[ignore]`d, so a
//! plain `cargo test` lists them as ignored rather than passing them unchecked; run with
//! `--ignored` they need `LOCALSOCK_QT_PEERS` (a missing or unset peer directory is a failure).
//! `ci/qt.sh` runs them all and fails unless every one of them ran and passed.
//! The CLI cases run `$LOCALSOCK_CLI`, else `target/<profile>/localsock`. Each test uses
//! unique names (socket files in a fresh temporary
//! directory, or unique short names in Qt's temp directory), has a watchdog, and kills its Qt
//! processes when it fails.
#![cfg(target_os = "linux")]

#[path = "../common/mod.rs"]
mod common;
#[macro_use]
mod harness;

use std::ffi::OsStr;
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use harness::*;
use localsock::{Access, ListenerOptions, LocalListener, LocalStream, Name};

// -----------------------------------------------------------------------------------------
// The tests

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn qt_server_short_name_is_reached_with_name_qt() {
    let (peer, _w) = qt_test!("qt_server_short_name_is_reached_with_name_qt", 60);
    let short = QtShortName::new("short");
    let mut qt = Peer::spawn(&peer, &["server-echo", "--name", &short.name]);
    // Qt's own fullServerName is exactly the path Name::qt computes.
    let full = qt.expect("LISTENING");
    assert_eq!(full, encode(short.path.as_os_str().as_encoded_bytes()));

    let name = Name::qt(&short.name).unwrap();
    let mut stream = connect(&name);
    assert_eq!(qt.expect("CONNECTED"), full);
    echo_round_trips(&mut stream, 200);
    drop(stream);
    // Qt saw the hang-up as PeerClosedError, then disconnected().
    qt.expect_closed_by_us();
    qt.finish();
    assert!(
        !short.path.exists(),
        "Qt removes its socket file on a clean exit"
    );
}

/// What `Name::qt(name)` gives in a process with this `TMPDIR` (`None`: unset): this test
/// binary is run again as a child, so the variable is never changed in this process.
fn name_qt_in_child(name: &str, tmpdir: Option<&OsStr>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_name_qt_probe",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("LSQT_PROBE_NAME", name);
    match tmpdir {
        Some(dir) => cmd.env("TMPDIR", dir),
        None => cmd.env_remove("TMPDIR"),
    };
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "probe: {stdout}");
    // The harness prints the test's name on the same line; the path has no spaces.
    stdout
        .split("NAMEQT ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no NAMEQT line from the probe: {stdout}"))
        .to_owned()
}

/// Run by [`name_qt_in_child`] only.
#[test]
#[ignore = "child process entry point (name_qt_follows_qdir_temp_path runs it)"]
fn child_name_qt_probe() {
    if let Some(name) = std::env::var_os("LSQT_PROBE_NAME") {
        let name = Name::qt(name).unwrap();
        let path = name.fs_path().unwrap().as_os_str().as_encoded_bytes();
        println!("NAMEQT {}", encode(path));
    }
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn name_qt_follows_qdir_temp_path() {
    let (peer, _w) = qt_test!("name_qt_follows_qdir_temp_path", 60);
    // <dir>/link -> <dir>/deep/real: QDir::cleanPath folds `link/..` before symlinks
    // are resolved, so `<dir>/link/..` is `<dir>`, not `<dir>/deep`.
    let dir = tempdir();
    let real = dir.path().join("deep").join("real");
    std::fs::create_dir_all(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let dotted = format!("{}/./deep//real/", dir.path().display());
    let parent_of_link = format!("{}/..", link.display());
    let cases: [(&str, Option<&OsStr>); 5] = [
        ("unset", None),
        ("empty, which Qt treats as unset", Some(OsStr::new(""))),
        ("a symlink", Some(link.as_os_str())),
        ("with ./, // and a trailing /", Some(OsStr::new(&dotted))),
        ("link/..", Some(OsStr::new(&parent_of_link))),
    ];
    for (what, tmpdir) in cases {
        let name = unique("tmp");
        let mut cmd = Command::new(&peer);
        match tmpdir {
            Some(dir) => cmd.env("TMPDIR", dir),
            None => cmd.env_remove("TMPDIR"),
        };
        // listen-once exits at once, and Qt's destructor removes the file.
        let mut qt = Peer::spawn_command(cmd, &["listen-once", "--name", &name]);
        let qt_path = qt.expect("LISTENING");
        qt.finish();
        let ours = name_qt_in_child(&name, tmpdir);
        assert_eq!(ours, qt_path, "TMPDIR {what}: {tmpdir:?}");
    }
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn twenty_localsock_clients_at_once_on_a_qt_server() {
    let (peer, _w) = qt_test!("twenty_localsock_clients_at_once_on_a_qt_server", 60);
    let dir = tempdir();
    let path = dir.path().join("many.sock");
    let mut qt = Peer::spawn_listening(
        &peer,
        &["server-echo", "--clients", "20", "--name", path_str(&path)],
    );
    let name = Name::path(&path).unwrap();
    thread::scope(|scope| {
        for _ in 0..20 {
            scope.spawn(|| {
                let mut stream = connect(&name);
                echo_round_trips(&mut stream, 50);
            });
        }
    });
    for _ in 0..20 {
        qt.expect_closed_by_us();
    }
    qt.finish();
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn localsock_client_waits_for_a_qt_server_that_starts_later() {
    let (peer, _w) = qt_test!("localsock_client_waits_for_a_qt_server", 60);
    let short = QtShortName::new("later");
    let name = Name::qt(&short.name).unwrap();
    // Nothing there yet: NotFound at once, as Qt's ServerNotFoundError.
    let err = LocalStream::connect(&name).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let client = crate::common::spawn_waiting_client(move || {
        localsock::ConnectOptions::new()
            .wait_for_server(true)
            .timeout(IO_TIMEOUT)
            .connect(&name)
    });
    let mut qt = Peer::spawn_listening(&peer, &["server-echo", "--name", &short.name]);
    let mut stream = with_timeouts(client.join().unwrap().unwrap());
    qt.expect("CONNECTED");
    echo_round_trips(&mut stream, 10);
    drop(stream);
    qt.expect("DISCONNECTED");
    qt.finish();
}

/// A path of exactly `len` bytes in `dir`.
fn path_of_len(dir: &Path, len: usize) -> PathBuf {
    let prefix = dir.as_os_str().len() + 1;
    assert!(
        len > prefix + 1,
        "the temp dir's path is too long for this test"
    );
    dir.join("p".repeat(len - prefix))
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn a_107_byte_path_works_in_localsock_but_not_in_qt() {
    let (peer, _w) = qt_test!("a_107_byte_path_works_in_localsock_but_not_in_qt", 60);
    let dir = tempdir();
    // sun_path holds 107 bytes and a NUL; Qt reserves two bytes on Linux, so 106 is its
    // limit for paths too.
    let path = path_of_len(dir.path(), 107);
    assert_eq!(path.as_os_str().len(), 107);
    let name = Name::path(&path).unwrap();
    let listener = LocalListener::bind(&name).unwrap();
    let server = spawn_echo_server(listener, 1);
    let mut qt = Peer::spawn(&peer, &["client-echo", "--name", path_str(&path)]);
    let fields = qt.expect_fields("CONNECT-FAILED");
    assert_eq!(fields[0], QT_SERVER_NOT_FOUND.to_string(), "{fields:?}");
    qt.wait();
    let mut stream = connect(&name);
    echo_round_trips(&mut stream, 5);
    drop(stream);
    server.join().unwrap().unwrap();

    // 106 bytes: both.
    let path = path_of_len(dir.path(), 106);
    let listener = LocalListener::bind(&Name::path(&path).unwrap()).unwrap();
    echo_to_one_qt_client(listener, || {
        Peer::spawn(&peer, &["client-echo", "--name", path_str(&path)])
    });
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn a_regular_file_at_the_name_is_left_alone_by_localsock() {
    let (peer, _w) = qt_test!("a_regular_file_at_the_name_is_left_alone", 60);
    let dir = tempdir();
    for len in [60, 107] {
        let path = path_of_len(dir.path(), len);
        std::fs::write(&path, b"precious").unwrap();
        let err = LocalListener::bind(&Name::path(&path).unwrap()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        // Qt refuses too; at 107 bytes (over Qt's limit) Qt 6.4 also deletes the file
        // (closeServer() after the failed length check), which is Qt's business: only
        // the refusal is checked here.
        let mut qt = Peer::spawn(&peer, &["listen-once", "--name", path_str(&path)]);
        qt.expect("LISTEN-FAILED");
        qt.wait();
    }
}

fn localsock_server_qt_client(style: &str) {
    let dir = tempdir();
    let path = dir.path().join("echo.sock");
    let listener = LocalListener::bind(&Name::path(&path).unwrap()).unwrap();
    let server = spawn_echo_server(listener, 1);
    let peer = qtpeer();
    let mut qt = Peer::spawn(
        &peer,
        &[
            "client-echo",
            "--style",
            style,
            "--name",
            path_str(&path),
            "--count",
            "300",
            "--size",
            "1500",
        ],
    );
    assert_eq!(qt.expect("CONNECTED"), encode(path_str(&path).as_bytes()));
    assert_eq!(qt.expect_fields("ECHO-OK"), ["300", "1500"]);
    qt.expect("DISCONNECTED");
    qt.finish();
    // Qt's disconnectFromServer() reached localsock as EOF, after every byte.
    let counts = server.join().unwrap().unwrap();
    assert_eq!(counts, [300 * 1500]);
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn localsock_server_and_qt_client_blocking_waitfor_style() {
    let (_peer, _w) = qt_test!("localsock_server_and_qt_client_blocking", 60);
    localsock_server_qt_client("blocking");
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn localsock_server_and_qt_client_event_loop_style() {
    let (_peer, _w) = qt_test!("localsock_server_and_qt_client_event_loop", 60);
    localsock_server_qt_client("event");
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn abstract_qt_server_localsock_client_trailing_nul_is_significant() {
    let (peer, _w) = qt_test!("abstract_qt_server_localsock_client", 60);
    assert!(
        qt_has_abstract(&peer),
        "this qtpeer lacks AbstractNamespaceOption (Qt < 6.2): build it against Qt 6"
    );
    let base = unique("abs");
    let with_nul = format!("{base}\0");
    let mut qt = Peer::spawn(
        &peer,
        &["server-echo", "--abstract", "--name", &format!("{base}%00")],
    );
    assert_eq!(qt.expect("LISTENING"), format!("{base}%00"));

    // Without the trailing NUL, or with two, it is another address: nobody listens.
    for other in [base.clone(), format!("{base}\0\0")] {
        let err = LocalStream::connect(&Name::abstract_name(&other).unwrap()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{other:?}: {err}");
        assert!(!err.to_string().contains("file"), "{err}");
    }
    // No file is involved: the same name as a path does not exist.
    let err = LocalStream::connect(&Name::qt(&base).unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    let mut stream = connect(&Name::abstract_name(&with_nul).unwrap());
    echo_round_trips(&mut stream, 50);
    drop(stream);
    qt.expect_closed_by_us();
    qt.finish();
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn abstract_localsock_server_qt_client_trailing_nul_is_significant() {
    let (peer, _w) = qt_test!("abstract_localsock_server_qt_client", 60);
    assert!(
        qt_has_abstract(&peer),
        "this qtpeer lacks AbstractNamespaceOption (Qt < 6.2): build it against Qt 6"
    );
    let base = unique("abs");
    let listener = LocalListener::bind(&Name::abstract_name(format!("{base}\0")).unwrap())
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let server = spawn_echo_server(listener, 2);

    // Qt without the NUL: a different abstract address, refused.
    let mut qt = Peer::spawn(&peer, &["client-echo", "--abstract", "--name", &base]);
    let fields = qt.expect_fields("CONNECT-FAILED");
    assert_eq!(fields[0], QT_CONNECTION_REFUSED.to_string(), "{fields:?}");
    assert_eq!(qt.wait().code(), Some(4));
    // Qt without AbstractNamespaceOption: a path under the temp dir, not found.
    let mut qt = Peer::spawn(&peer, &["client-echo", "--name", &format!("{base}%00")]);
    let fields = qt.expect_fields("CONNECT-FAILED");
    assert_eq!(fields[0], QT_SERVER_NOT_FOUND.to_string(), "{fields:?}");
    qt.wait();

    // The exact name: connected and echoed, with both client styles.
    for style in ["blocking", "event"] {
        let mut qt = Peer::spawn(
            &peer,
            &[
                "client-echo",
                "--style",
                style,
                "--abstract",
                "--name",
                &format!("{base}%00"),
                "--count",
                "100",
            ],
        );
        assert_eq!(qt.expect("CONNECTED"), format!("{base}%00"));
        qt.expect("ECHO-OK");
        qt.finish();
    }
    assert_eq!(server.join().unwrap().unwrap(), [100 * 1000, 100 * 1000]);
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn qt_user_access_server_and_localsock_client() {
    let (peer, _w) = qt_test!("qt_user_access_server_and_localsock_client", 60);
    let dir = tempdir();
    let path = dir.path().join("user.sock");
    let mut qt = Peer::spawn_listening(
        &peer,
        &[
            "server-echo",
            "--user-access",
            "--clients",
            "2",
            "--name",
            path_str(&path),
        ],
    );
    // Qt binds in a private directory, chmods to S_IRWXU, and renames into place.
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);

    let name = Name::path(&path).unwrap();
    let mut stream = connect(&name);
    echo_round_trips(&mut stream, 50);

    // localsock never takes a live server's name: AddrInUse, and Qt keeps serving.
    let err = LocalListener::bind(&name).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    let mut second = connect(&name);
    echo_round_trips(&mut second, 10);
    drop(stream);
    drop(second);
    qt.expect("DISCONNECTED");
    qt.expect("DISCONNECTED");
    qt.finish();
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) and root (another uid) — run as root with: bash ci/qt.sh"]
fn localsock_group_access_server_and_qt_client_of_another_user_in_the_group() {
    let (peer, _w) = qt_test!("localsock_group_access_server_and_qt_client", 90);
    assert!(
        std::fs::metadata("/proc/self").map(|m| m.uid()).ok() == Some(0),
        "this test plays another user (a Qt client of another uid in our group): run it as root"
    );
    let dir = tempdir();
    // Other users must reach the socket: open the directory; and run a copy of the peer that
    // they can reach (the build directory may sit under a private home).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let peer_copy = common::ReachableCopy::of(&peer);
    let group_path = dir.path().join("group.sock");
    let owner_path = dir.path().join("owner.sock");
    let group = ListenerOptions::new()
        .access(Access::Group)
        .bind(&Name::path(&group_path).unwrap())
        .unwrap();
    let owner = LocalListener::bind(&Name::path(&owner_path).unwrap()).unwrap();
    let meta = std::fs::metadata(&group_path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let my_gid = meta.gid();

    let client = |path: &Path, ids: Option<(u32, u32)>| {
        let mut cmd = Command::new(peer_copy.path());
        if let Some((uid, gid)) = ids {
            // std drops supplementary groups when root changes the uid.
            cmd.uid(uid).gid(gid);
        }
        Peer::spawn_command(
            cmd,
            &["client-echo", "--name", path_str(path), "--count", "20"],
        )
    };

    // Our own user, through the group listener.
    let n = thread::scope(|scope| {
        let server = scope.spawn(|| echo_until_eof(&mut accept(&group)?));
        let mut qt = client(&group_path, None);
        qt.expect("ECHO-OK");
        qt.finish();
        server.join().unwrap().unwrap()
    });
    assert_eq!(n, 20 * 1000);

    // Another user, in our group: let in by the group bits, and seen as that user.
    let other_uid = 47_000 + std::process::id() % 1000;
    let (creds, n) = thread::scope(|scope| {
        let server = scope.spawn(|| -> io::Result<(localsock::PeerCredentials, u64)> {
            let mut stream = accept(&group)?;
            let creds = stream.peer_credentials()?;
            let n = echo_until_eof(&mut stream)?;
            Ok((creds, n))
        });
        let mut qt = client(&group_path, Some((other_uid, my_gid)));
        qt.expect("ECHO-OK");
        qt.finish();
        server.join().unwrap().unwrap()
    });
    assert_eq!(creds.uid(), Some(other_uid));
    assert_eq!(creds.gid(), Some(my_gid));
    assert_eq!(n, 20 * 1000);

    // The same user outside the group: SocketAccessError (EACCES).
    let mut qt = client(&group_path, Some((other_uid, other_uid)));
    let fields = qt.expect_fields("CONNECT-FAILED");
    assert_eq!(fields[0], QT_SOCKET_ACCESS.to_string(), "{fields:?}");
    qt.wait();
    // The group member against the default (owner-only) listener: refused as well.
    let mut qt = client(&owner_path, Some((other_uid, my_gid)));
    let fields = qt.expect_fields("CONNECT-FAILED");
    assert_eq!(fields[0], QT_SOCKET_ACCESS.to_string(), "{fields:?}");
    qt.wait();
    drop((group, owner));

    // require_same_user on a listener everyone may reach: the other user's Qt client gets
    // in at the socket level and is dropped at accept (Qt: connected, then PeerClosed);
    // our own Qt client is the one accept returns.
    let open_path = dir.path().join("same-user.sock");
    let open = ListenerOptions::new()
        .access(Access::Everyone)
        .require_same_user(true)
        .bind(&Name::path(&open_path).unwrap())
        .unwrap();
    thread::scope(|scope| {
        let server = scope.spawn(|| -> io::Result<(u32, u64)> {
            let mut stream = accept(&open)?;
            let uid = stream.peer_credentials()?.uid().unwrap();
            Ok((uid, echo_until_eof(&mut stream)?))
        });
        let mut cmd = Command::new(peer_copy.path());
        cmd.uid(other_uid).gid(other_uid);
        let mut stranger =
            Peer::spawn_command(cmd, &["client-wait", "--name", path_str(&open_path)]);
        stranger.expect("CONNECTED");
        stranger.expect_closed_by_us_after(0);
        stranger.finish();
        let mut me = client(&open_path, None);
        me.expect("ECHO-OK");
        me.finish();
        let (uid, n) = server.join().unwrap().unwrap();
        assert_eq!((uid, n), (0, 20 * 1000));
    });
}

const BULK: u64 = 64 * MIB;

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn bulk_64_mib_both_ways_with_a_qt_server() {
    let (peer, _w) = qt_test!("bulk_64_mib_both_ways_with_a_qt_server", 120);
    let dir = tempdir();
    let expected = pattern_checksum(11, BULK);

    // Qt sends, localsock receives to EOF (Qt's graceful disconnect flushes first).
    let path = dir.path().join("send.sock");
    let mut qt = Peer::spawn_listening(
        &peer,
        &[
            "server-send",
            "--name",
            path_str(&path),
            "--size",
            &BULK.to_string(),
            "--seed",
            "11",
        ],
    );
    let mut stream = connect(&Name::path(&path).unwrap());
    let (total, sum, end) = read_pattern_to_end(&mut stream, Pattern::new(11));
    end.unwrap();
    assert_eq!(total, BULK);
    assert_eq!(sum, expected);
    assert_eq!(
        qt.expect_fields("SENT"),
        [BULK.to_string(), expected.clone()]
    );
    qt.finish();

    // localsock sends, Qt receives and hangs up; localsock sees EOF.
    let path = dir.path().join("recv.sock");
    let mut qt = Peer::spawn_listening(
        &peer,
        &[
            "server-recv",
            "--name",
            path_str(&path),
            "--size",
            &BULK.to_string(),
        ],
    );
    let mut stream = connect(&Name::path(&path).unwrap());
    let sent = write_pattern(&mut stream, 11, BULK).unwrap();
    assert_eq!(sent, expected);
    assert_eq!(qt.expect_fields("RECEIVED"), [BULK.to_string(), expected]);
    assert_eof(&mut stream);
    qt.expect("DISCONNECTED");
    qt.finish();
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn bulk_64_mib_both_ways_with_a_qt_client() {
    let (peer, _w) = qt_test!("bulk_64_mib_both_ways_with_a_qt_client", 120);
    let dir = tempdir();
    let path = dir.path().join("bulk.sock");
    let name = Name::path(&path).unwrap();
    let listener = LocalListener::bind(&name).unwrap();
    let expected = pattern_checksum(23, BULK);

    // Qt sends (waitForBytesWritten flow control), localsock reads to EOF.
    let mut qt = Peer::spawn(
        &peer,
        &[
            "client-send",
            "--name",
            path_str(&path),
            "--size",
            &BULK.to_string(),
            "--seed",
            "23",
        ],
    );
    let mut stream = accept(&listener).unwrap();
    let (total, sum, end) = read_pattern_to_end(&mut stream, Pattern::new(23));
    end.unwrap();
    assert_eq!((total, sum.as_str()), (BULK, expected.as_str()));
    assert_eq!(
        qt.expect_fields("SENT"),
        [BULK.to_string(), expected.clone()]
    );
    qt.finish();
    drop(stream);

    // localsock sends and hangs up; Qt reads it all, then sees the disconnect.
    let mut qt = Peer::spawn(
        &peer,
        &[
            "client-recv",
            "--name",
            path_str(&path),
            "--size",
            &BULK.to_string(),
        ],
    );
    let mut stream = accept(&listener).unwrap();
    assert_eq!(write_pattern(&mut stream, 23, BULK).unwrap(), expected);
    drop(stream);
    assert_eq!(qt.expect_fields("RECEIVED"), [BULK.to_string(), expected]);
    qt.expect_closed_by_us();
    qt.finish();
}

const FRAMES: usize = 2000;

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn framed_2000_round_trips_with_a_qt_server() {
    let (peer, _w) = qt_test!("framed_2000_round_trips_with_a_qt_server", 90);
    let dir = tempdir();
    let path = dir.path().join("frames.sock");
    let mut qt = Peer::spawn_listening(
        &peer,
        &[
            "server-frames",
            "--name",
            path_str(&path),
            "--count",
            &FRAMES.to_string(),
        ],
    );
    let mut stream = connect(&Name::path(&path).unwrap());
    let mut rng = Pattern::new(99);
    for i in 0..FRAMES {
        let request_size = 1 + (rng.next64() % 1024) as usize;
        let response_size = 1 + (rng.next64() % 1024) as i64;
        stream
            .write_all(&frame_request(request_size, response_size))
            .unwrap();
        let reply = read_byte_array(&mut stream).unwrap();
        assert_eq!(reply.len() as i64, response_size, "frame {i}");
        assert!(reply.iter().all(|&b| b == b'b'), "frame {i}");
    }
    assert_eq!(qt.expect_fields("FRAMES"), [FRAMES.to_string()]);
    drop(stream);
    qt.expect_closed_by_us();
    qt.finish();
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn framed_2000_round_trips_with_a_qt_client() {
    let (peer, _w) = qt_test!("framed_2000_round_trips_with_a_qt_client", 90);
    let dir = tempdir();
    let path = dir.path().join("frames.sock");
    let listener = LocalListener::bind(&Name::path(&path).unwrap()).unwrap();
    let mut qt = Peer::spawn(
        &peer,
        &[
            "client-frames",
            "--name",
            path_str(&path),
            "--count",
            &FRAMES.to_string(),
            "--seed",
            "5",
        ],
    );
    let mut stream = accept(&listener).unwrap();
    serve_frames(&mut stream, FRAMES).unwrap();
    assert_eq!(qt.expect_fields("FRAMES"), [FRAMES.to_string()]);
    qt.finish();
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn peer_disconnect_is_seen_on_both_sides() {
    let (peer, _w) = qt_test!("peer_disconnect_is_seen_on_both_sides", 60);
    let dir = tempdir();

    // localsock server hangs up: the Qt client gets its bytes, then PeerClosedError and
    // disconnected().
    let path = dir.path().join("bye.sock");
    let listener = LocalListener::bind(&Name::path(&path).unwrap()).unwrap();
    let mut qt = Peer::spawn(&peer, &["client-wait", "--name", path_str(&path)]);
    let mut stream = accept(&listener).unwrap();
    qt.expect("CONNECTED");
    stream.write_all(b"bye").unwrap();
    drop(stream);
    qt.expect_closed_by_us_after(3);
    qt.finish();

    // localsock client shuts down its write side: Qt sees the peer close as well.
    let path = dir.path().join("qtserver.sock");
    let mut qt = Peer::spawn_listening(&peer, &["server-echo", "--name", path_str(&path)]);
    let mut stream = connect(&Name::path(&path).unwrap());
    stream.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    stream.read_exact(&mut back).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    qt.expect_closed_by_us_after(5);
    // ...and Qt closing its end reaches localsock as EOF.
    assert_eof(&mut stream);
    qt.finish();
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn qt_killed_with_sigkill_mid_transfer() {
    let (peer, _w) = qt_test!("qt_killed_with_sigkill_mid_transfer", 120);
    let dir = tempdir();
    let huge = (1024 * MIB).to_string();

    // Qt server sending: killed after the first MiB; localsock reads what was sent
    // (every byte right), then EOF.
    let path = dir.path().join("send.sock");
    let mut qt = Peer::spawn_listening(
        &peer,
        &[
            "server-send",
            "--name",
            path_str(&path),
            "--size",
            &huge,
            "--seed",
            "3",
        ],
    );
    let mut stream = connect(&Name::path(&path).unwrap());
    let mut first = vec![0u8; 2 * MIB as usize];
    stream.read_exact(&mut first).unwrap();
    qt.expect("PROGRESS");
    qt.kill();
    let mut all = Pattern::new(3);
    let mut want = vec![0u8; first.len()];
    all.fill(&mut want);
    assert!(first == want, "the first 2 MiB differ from the pattern");
    // Keep reading: the rest of the pattern stream (checked) up to EOF.
    let (rest, _, end) = read_pattern_to_end(&mut stream, all);
    end.unwrap();
    assert!(rest < 1024 * MIB, "read {rest} bytes after the kill");

    // localsock client sending to a Qt server that dies: the write fails with
    // BrokenPipe or ConnectionReset (no SIGPIPE), well before the timeout.
    let path = dir.path().join("recv.sock");
    let mut qt = Peer::spawn_listening(
        &peer,
        &["server-recv", "--name", path_str(&path), "--size", &huge],
    );
    let mut stream = connect(&Name::path(&path).unwrap());
    let writer = thread::spawn(move || write_pattern(&mut stream, 4, 1024 * MIB));
    qt.expect("PROGRESS");
    qt.kill();
    let err = writer.join().unwrap().unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
        ),
        "{err:?}"
    );

    // Qt client sending to a localsock server: killed mid-way; localsock reads EOF.
    let path = dir.path().join("server.sock");
    let listener = LocalListener::bind(&Name::path(&path).unwrap()).unwrap();
    let mut qt = Peer::spawn(
        &peer,
        &[
            "client-send",
            "--name",
            path_str(&path),
            "--size",
            &huge,
            "--seed",
            "8",
        ],
    );
    let mut stream = accept(&listener).unwrap();
    // Qt's write() only queues in its own buffer: wait until 2 MiB really arrived.
    let mut first = vec![0u8; 2 * MIB as usize];
    stream.read_exact(&mut first).unwrap();
    qt.kill();
    let mut expected = Pattern::new(8);
    let mut want = vec![0u8; first.len()];
    expected.fill(&mut want);
    assert!(first == want, "the first 2 MiB differ from the pattern");
    let (rest, _, end) = read_pattern_to_end(&mut stream, expected);
    end.unwrap();
    assert!(
        rest < 1022 * MIB,
        "read {rest} more bytes from a Qt client killed mid-transfer"
    );
    // The listener is unharmed: a new Qt client is served.
    echo_to_one_qt_client(listener, || {
        Peer::spawn(&peer, &["client-echo", "--name", path_str(&path)])
    });
}

/// The `localsock` CLI: `$LOCALSOCK_CLI`, else the binary next to this test's directory
/// (`target/<profile>/localsock`, built by `cargo build -p localsock-cli`; ci/qt.sh does).
fn localsock_cli() -> PathBuf {
    if let Some(path) = std::env::var_os("LOCALSOCK_CLI") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let cli = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("localsock"))
        .unwrap();
    assert!(
        cli.is_file(),
        "the localsock CLI is not at {}: run `cargo build -p localsock-cli` or set \
         LOCALSOCK_CLI (ci/qt.sh does both)",
        cli.display()
    );
    cli
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn cli_connect_talks_to_a_qt_server() {
    let (peer, _w) = qt_test!("cli_connect_talks_to_a_qt_server", 60);
    let dir = tempdir();
    let path = dir.path().join("cli.sock");
    let mut qt = Peer::spawn_listening(&peer, &["server-echo", "--name", path_str(&path)]);
    let mut cmd = Command::new(localsock_cli());
    cmd.args(["connect", path_str(&path)]);
    let mut cli = Peer::start(cmd, "localsock connect".into(), true);
    qt.expect("CONNECTED");
    let lines: Vec<String> = (0..2000)
        .map(|i| format!("line {i} {}", "x".repeat(1 + i % 97)))
        .collect();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let mut stdin = cli.stdin.take().unwrap();
    let writer = {
        let lines = lines.clone();
        thread::spawn(move || -> io::Result<std::process::ChildStdin> {
            for line in &lines {
                writeln!(stdin, "{line}")?;
            }
            stdin.flush()?;
            Ok(stdin)
        })
    };
    for (i, line) in lines.iter().enumerate() {
        let got = cli
            .next_line()
            .unwrap_or_else(|| panic!("echo {i}: the CLI exited: {}", cli.describe()));
        assert_eq!(&got, line, "echo {i}");
    }
    // Every byte came back: now end stdin. The CLI shuts down its sending side; Qt has no
    // half-close, so it reports the peer closed and closes; the CLI reads EOF and exits.
    drop(writer.join().unwrap().unwrap());
    qt.expect_closed_by_us_after(bytes);
    qt.finish();
    cli.finish();
}

/// Issue 12: `printf 'hello\n' | localsock --qt connect` to a QLocalServer echo server.
/// Without --qt the CLI half-closes when stdin ends, Qt takes that for a close and drops
/// its queued reply (nothing printed in most runs). With --qt the sending side stays open,
/// the reply arrives, and the CLI exits after a quiet second.
#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn cli_qt_connect_gets_the_reply_to_a_short_request() {
    let (peer, _w) = qt_test!("cli_qt_connect_gets_the_reply_to_a_short_request", 60);
    let dir = tempdir();
    let path = dir.path().join("qt-eof.sock");
    for round in 0..5 {
        let mut qt = Peer::spawn_listening(&peer, &["server-echo", "--name", path_str(&path)]);
        let mut cmd = Command::new(localsock_cli());
        cmd.args(["--qt", "connect", path_str(&path)]);
        let mut cli = Peer::start(cmd, "localsock --qt connect".into(), true);
        qt.expect("CONNECTED");
        let mut stdin = cli.stdin.take().unwrap();
        stdin.write_all(b"hello\n").unwrap();
        drop(stdin);
        assert_eq!(
            cli.next_line().as_deref(),
            Some("hello"),
            "round {round}: the reply to a request sent just before stdin ended: {}",
            cli.describe()
        );
        cli.finish();
        qt.expect_closed_by_us_after(6);
        qt.finish();
    }
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn qt_clients_talk_to_cli_echo() {
    let (peer, _w) = qt_test!("qt_clients_talk_to_cli_echo", 60);
    let dir = tempdir();
    let path = dir.path().join("echo.sock");
    let mut cmd = Command::new(localsock_cli());
    cmd.args(["echo", path_str(&path)]);
    let mut cli = Peer::start(cmd, "localsock echo".into(), false);
    cli.expect("listening");
    for (i, style) in ["blocking", "event"].into_iter().enumerate() {
        let mut qt = Peer::spawn(
            &peer,
            &[
                "client-echo",
                "--style",
                style,
                "--name",
                path_str(&path),
                "--count",
                "200",
                "--size",
                "3000",
            ],
        );
        // The CLI names its client by pid: the Qt process.
        let connected = cli.expect(&format!("#{}", i + 1));
        assert!(
            connected.contains(&format!("pid {}", qt.pid())),
            "{connected}"
        );
        qt.expect("ECHO-OK");
        qt.expect("DISCONNECTED");
        qt.finish();
    }
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn stale_socket_qt_gets_address_in_use_and_localsock_reclaims_it() {
    let (peer, _w) = qt_test!("stale_socket_qt_and_localsock", 60);
    let short = QtShortName::new("stale");

    // A Qt server dies by SIGKILL: its socket file stays.
    let mut qt = Peer::spawn_listening(
        &peer,
        &["server-echo", "--clients", "0", "--name", &short.name],
    );
    qt.kill();
    let meta = std::fs::symlink_metadata(&short.path).unwrap();
    assert!(meta.file_type().is_socket(), "Qt left its socket file");

    // Qt's next listen() on the name fails with AddressInUseError.
    let mut qt = Peer::spawn(&peer, &["listen-once", "--name", &short.name]);
    let fields = qt.expect_fields("LISTEN-FAILED");
    assert_eq!(fields[0], QT_ADDRESS_IN_USE.to_string(), "{fields:?}");
    assert_eq!(qt.wait().code(), Some(3));

    // localsock with reclaiming turned off says the same...
    let name = Name::qt(&short.name).unwrap();
    let err = ListenerOptions::new()
        .reclaim_stale(false)
        .bind(&name)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    // ...and by default it sees that nobody answers and takes the name over.
    let listener = LocalListener::bind(&name).unwrap_or_else(|e| panic!("reclaim: {e}"));
    assert!(short.path.exists());
    echo_to_one_qt_client(listener, || {
        Peer::spawn(
            &peer,
            &["client-echo", "--style", "event", "--name", &short.name],
        )
    });
    // The listener was dropped with the thread: its file is gone, Qt can listen again.
    assert!(!short.path.exists(), "localsock removes its socket file");
    let mut qt = Peer::spawn_listening(&peer, &["listen-once", "--name", &short.name]);
    qt.finish();
}

#[test]
#[ignore = "needs the Qt peer (LOCALSOCK_QT_PEERS) — run with: bash ci/qt.sh"]
fn live_name_localsock_refuses_but_qt_user_access_takes_it() {
    let (peer, _w) = qt_test!("live_name_localsock_refuses_but_qt_takes", 60);
    let dir = tempdir();
    let path = dir.path().join("live.sock");
    let name = Name::path(&path).unwrap();
    let ours = LocalListener::bind(&name).unwrap();
    let inode = std::fs::metadata(&path).unwrap().ino();

    // Plain Qt listen(): AddressInUseError, as localsock would.
    let mut qt = Peer::spawn(&peer, &["listen-once", "--name", path_str(&path)]);
    assert_eq!(
        qt.expect_fields("LISTEN-FAILED")[0],
        QT_ADDRESS_IN_USE.to_string()
    );
    qt.wait();

    // Qt with UserAccessOption binds elsewhere and rename()s over the live name.
    let mut qt = Peer::spawn_listening(
        &peer,
        &["server-echo", "--user-access", "--name", path_str(&path)],
    );
    assert_ne!(std::fs::metadata(&path).unwrap().ino(), inode);
    // New clients now reach Qt, not us.
    let mut stream = connect(&name);
    qt.expect("CONNECTED");
    echo_round_trips(&mut stream, 5);
    // Dropping our listener must not delete Qt's file: localsock checks the inode.
    drop(ours);
    assert!(path.exists(), "localsock removed a file it did not create");
    drop(stream);
    qt.expect("DISCONNECTED");
    qt.finish();
}
