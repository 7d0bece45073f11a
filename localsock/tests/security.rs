//! Adversarial and fault tests: each plays the attacker or the fault from SECURITY.md with
//! real processes. As root (CI) the attacker runs as uid 65534 in a child process.
//!
//! Tests that count descriptors or measure a process's CPU time watch a *child* process, so
//! the other tests running in this binary's threads cannot disturb the numbers.
#![cfg(target_os = "linux")]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    child, child_as, cpu_share, echo_round_trip, is_child, is_root, raise_nofile, read_line,
    root_test, unique_str, wait_bounded, watchdog, Reaper,
};
use localsock::{
    is_resource_shortage, Access, ConnectOptions, ListenerOptions, LocalListener, LocalStream, Name,
};

const NOBODY: u32 = 65534;

/// Starts `child_echo_server` on `name_str` (`variant` and `nofile` as it documents) and
/// waits until it listens.
fn spawn_echo_server(name_str: &str, variant: &str, nofile: &str) -> Reaper {
    let mut server = Reaper(
        child(
            "child_echo_server",
            &[
                ("LOCALSOCK_TEST_NAME", name_str),
                ("LOCALSOCK_TEST_VARIANT", variant),
                ("LOCALSOCK_TEST_NOFILE", nofile),
            ],
        )
        .spawn()
        .unwrap(),
    );
    assert_eq!(read_line(&mut server.0), "listening");
    server
}

// ---------------------------------------------------------------------------------------------
// Accept under descriptor exhaustion
// ---------------------------------------------------------------------------------------------

/// A server whose process runs out of descriptors keeps its listener: `accept` reports EMFILE
/// (naming the endpoint) instead of closing anything, the server loop pauses instead of
/// spinning on the connection that stays queued, and it serves again once descriptors free up.
///
/// The child server lowers its own `RLIMIT_NOFILE`, then holds every accepted connection open
/// (echoing until EOF), so a flood of clients exhausts it. Its CPU use is read from
/// `/proc/PID/stat` over a window while it is starved.
fn fd_exhaustion(variant: &str) {
    let name_str = unique_str(&format!("emfile-{variant}"));
    let name = Name::new(&name_str).unwrap();
    let mut server = spawn_echo_server(&name_str, variant, "starve");

    // Flood: far more clients than the server has descriptors; they wait in the backlog.
    let flood: Vec<LocalStream> = (0..200)
        .map(|_| LocalStream::connect(&name).expect("connect while the server is starved"))
        .collect();
    // The server reports the shortage (once, on its first EMFILE).
    let line = read_line(&mut server.0);
    assert!(line.starts_with("emfile "), "{line}");
    assert!(
        line.contains(&name.to_string()),
        "error names the endpoint: {line}"
    );
    // Settle, then measure: starved, with connections queued, it must not burn a CPU.
    thread::sleep(Duration::from_millis(200));
    let share = cpu_share(server.0.id(), Duration::from_secs(2));
    println!(
        "{variant}: starved server used {:.1}% of a CPU",
        share * 100.0
    );
    assert!(
        share < 0.25,
        "the starved server spins: {:.0}% of a CPU",
        share * 100.0
    );
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "the server died when it ran out of descriptors"
    );
    if variant.ends_with("naive") {
        // Its loop has no pause of its own: the listener's pause bounds the errors it sees.
        let line = read_line(&mut server.0);
        let errors: u64 = line.strip_prefix("errors ").unwrap().parse().unwrap();
        println!("{variant}: accept returned {errors} errors in 2 s of shortage");
        assert!(
            errors < 100,
            "the accept loop spins: {errors} errors in 2 s"
        );
    }

    // Free the descriptors: every flooded client leaves, then a new client is served.
    drop(flood);
    let back = echo_round_trip(&name, b"after the flood").expect("served again");
    assert_eq!(back, b"after the flood");
}

/// The blocking listener (its `incoming()` iterator) under descriptor exhaustion.
#[test]
fn accept_under_fd_exhaustion_neither_dies_nor_spins() {
    let _w = watchdog("accept_under_fd_exhaustion_neither_dies_nor_spins", 60);
    fd_exhaustion("blocking");
}

/// A server loop that logs accept errors and goes on, with no pause of its own: `incoming()`
/// pauses after a resource shortage, so even this loop does not spin.
#[test]
fn incoming_pauses_after_a_resource_shortage() {
    let _w = watchdog("incoming_pauses_after_a_resource_shortage", 60);
    fd_exhaustion("naive");
}

/// The async listener under descriptor exhaustion.
#[cfg(feature = "tokio")]
#[test]
fn async_accept_under_fd_exhaustion_neither_dies_nor_spins() {
    let _w = watchdog(
        "async_accept_under_fd_exhaustion_neither_dies_nor_spins",
        60,
    );
    fd_exhaustion("tokio");
}

/// An async server loop that logs accept errors and goes on, with no pause of its own: the
/// async `accept` pauses after a resource shortage, as the blocking `incoming()` does, so even
/// this loop does not spin.
#[cfg(feature = "tokio")]
#[test]
fn async_accept_pauses_after_a_resource_shortage() {
    let _w = watchdog("async_accept_pauses_after_a_resource_shortage", 60);
    fd_exhaustion("tokio-naive");
}

/// Lowers this process's soft descriptor limit to what it has open plus `spare`.
fn starve_nofile(spare: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let hard = getrlimit(Resource::Nofile).maximum;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(open + spare),
            maximum: hard,
        },
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// A flood of idle connections
// ---------------------------------------------------------------------------------------------

/// How many idle connections the flood opens: 10,000, or fewer if the descriptor limit is
/// lower (each side needs one descriptor per connection).
fn flood_size() -> usize {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX);
    10_000.min(hard.saturating_sub(200) as usize)
}

/// 10,000 clients connect and never send a byte; a well-behaved client is still served by the
/// echo server (`variant`: `blocking` or `tokio`) while they all stay connected.
fn idle_flood_does_not_starve(variant: &str) {
    let n = flood_size();
    let name_str = unique_str(&format!("flood-{variant}"));
    let name = Name::new(&name_str).unwrap();
    let mut server = spawn_echo_server(&name_str, variant, "raise");
    let count = n.to_string();
    let mut flood = Reaper(
        child(
            "child_idle_flood",
            &[
                ("LOCALSOCK_TEST_NAME", &name_str),
                ("LOCALSOCK_TEST_N", &count),
            ],
        )
        .spawn()
        .unwrap(),
    );
    assert_eq!(read_line(&mut flood.0), format!("flooded {n}"));
    // The flood really reached the server: it holds a descriptor per idle client.
    let server_fds = common::fd_count(server.0.id());
    println!("{variant}: {n} idle clients connected; the server holds {server_fds} descriptors");
    // A well-behaved client is served while all of them stay connected.
    let back = echo_round_trip(&name, b"well-behaved").expect("served despite the flood");
    assert_eq!(back, b"well-behaved");
    assert!(
        common::fd_count(server.0.id()) >= n,
        "the server did not accept the flood (it holds {} descriptors)",
        common::fd_count(server.0.id())
    );
    assert!(flood.0.try_wait().unwrap().is_none(), "the flood gave up");
    assert!(server.0.try_wait().unwrap().is_none(), "the server died");
}

/// The blocking listener, serving thread-per-connection.
#[test]
fn idle_flood_does_not_starve_the_blocking_listener() {
    let _w = watchdog("idle_flood_does_not_starve_the_blocking_listener", 120);
    idle_flood_does_not_starve("blocking");
}

/// The async listener, one task per connection.
#[cfg(feature = "tokio")]
#[test]
fn idle_flood_does_not_starve_the_async_listener() {
    let _w = watchdog("idle_flood_does_not_starve_the_async_listener", 120);
    idle_flood_does_not_starve("tokio");
}

fn echo_until_eof(mut s: LocalStream) {
    let mut buf = [0u8; 256];
    while let Ok(n @ 1..) = s.read(&mut buf) {
        if s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// The echo server the fault tests run in a child process: one thread (blocking listener) or
/// task (async listener, `LOCALSOCK_TEST_VARIANT=tokio`) per connection, and the accept loop a
/// server should have: on a resource shortage it says so once, pauses, and goes on.
/// `LOCALSOCK_TEST_NOFILE=starve` leaves it a handful of spare descriptors once it listens;
/// `raise` lifts its soft limit to the hard one, for floods.
#[test]
#[ignore = "child process entry point"]
fn child_echo_server() {
    if !is_child("child_echo_server") {
        return;
    }
    let name = Name::new(std::env::var("LOCALSOCK_TEST_NAME").unwrap()).unwrap();
    let nofile = std::env::var("LOCALSOCK_TEST_NOFILE").unwrap();
    let limit_descriptors = || match nofile.as_str() {
        "starve" => starve_nofile(8),
        "raise" => {
            raise_nofile();
        }
        other => panic!("unknown LOCALSOCK_TEST_NOFILE {other}"),
    };
    // Says so on the first shortage; 2 s later says how many errors accept returned since,
    // which tells a loop that pauses (about 20) from one that spins (thousands).
    let mut first: Option<(Instant, u64, bool)> = None;
    let mut on_shortage = |e: &std::io::Error| match &mut first {
        None => {
            println!("CHILD emfile {e}");
            first = Some((Instant::now(), 0, false));
        }
        Some((since, count, said)) => {
            *count += 1;
            if !*said && since.elapsed() >= Duration::from_secs(2) {
                println!("CHILD errors {count}");
                *said = true;
            }
        }
    };
    match std::env::var("LOCALSOCK_TEST_VARIANT").unwrap().as_str() {
        "blocking" => {
            let listener = LocalListener::bind(&name).unwrap();
            limit_descriptors();
            println!("CHILD listening");
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        thread::Builder::new()
                            .stack_size(64 * 1024)
                            .spawn(move || echo_until_eof(s))
                            .expect("spawn a connection thread");
                    }
                    Err(e) if is_resource_shortage(&e) => {
                        on_shortage(&e);
                        thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => panic!("accept failed: {e}"),
                }
            }
        }
        "naive" => {
            let listener = LocalListener::bind(&name).unwrap();
            limit_descriptors();
            println!("CHILD listening");
            // A loop that logs errors and goes on, with no pause of its own.
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        thread::spawn(move || echo_until_eof(s));
                    }
                    Err(e) => on_shortage(&e),
                }
            }
        }
        // "tokio": the loop pauses on a shortage itself; "tokio-naive": a loop that logs
        // errors and goes on, with no pause of its own.
        #[cfg(feature = "tokio")]
        variant @ ("tokio" | "tokio-naive") => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let naive = variant == "tokio-naive";
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let listener = localsock::tokio::LocalListener::bind(&name).unwrap();
                limit_descriptors();
                println!("CHILD listening");
                loop {
                    match listener.accept().await {
                        Ok(mut s) => {
                            tokio::spawn(async move {
                                let mut buf = [0u8; 256];
                                while let Ok(n @ 1..) = s.read(&mut buf).await {
                                    if s.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            });
                        }
                        Err(e) if naive => on_shortage(&e),
                        Err(e) if is_resource_shortage(&e) => {
                            on_shortage(&e);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("accept failed: {e}"),
                    }
                }
            });
        }
        other => panic!("unknown variant {other}"),
    }
}

#[test]
#[ignore = "child process entry point"]
fn child_idle_flood() {
    if !is_child("child_idle_flood") {
        return;
    }
    raise_nofile();
    let name = Name::new(std::env::var("LOCALSOCK_TEST_NAME").unwrap()).unwrap();
    let n: usize = std::env::var("LOCALSOCK_TEST_N").unwrap().parse().unwrap();
    let held: Vec<LocalStream> = (0..n)
        .map(|i| {
            ConnectOptions::new()
                .timeout(Duration::from_secs(30))
                .connect(&name)
                .unwrap_or_else(|e| panic!("flood connect #{i}: {e}"))
        })
        .collect();
    println!("CHILD flooded {}", held.len());
    thread::sleep(Duration::from_secs(600));
    drop(held);
}

// ---------------------------------------------------------------------------------------------
// Other users
// ---------------------------------------------------------------------------------------------

/// A temporary directory with permission bits `mode` (0o755: searchable by all; 0o1777: a
/// shared, /tmp-like one).
fn tempdir_with_mode(mode: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(mode),
    )
    .unwrap();
    dir
}

/// Runs `entry` as uid/gid 65534 with `envs`.
fn as_nobody(entry: &str, envs: &[(&str, &str)]) -> Reaper {
    Reaper(child_as(entry, envs, NOBODY, NOBODY).spawn().unwrap())
}

/// Connects to the name in `LOCALSOCK_TEST_PATH` (a path) or `LOCALSOCK_TEST_ABSTRACT` (an
/// abstract name), says how it went, and waits for the server's verdict (EOF or a byte).
#[test]
#[ignore = "child process entry point"]
fn child_stranger_connects() {
    if !is_child("child_stranger_connects") {
        return;
    }
    let name = match std::env::var("LOCALSOCK_TEST_PATH") {
        Ok(path) => Name::path(path).unwrap(),
        Err(_) => Name::abstract_name(std::env::var("LOCALSOCK_TEST_ABSTRACT").unwrap()).unwrap(),
    };
    match LocalStream::connect(&name) {
        Ok(mut s) => {
            println!("CHILD connected");
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut b = [0u8; 1];
            match s.read(&mut b) {
                Ok(0) => println!("CHILD eof"),
                Ok(_) => println!("CHILD served"),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => println!("CHILD eof"),
                Err(e) => println!("CHILD error {e}"),
            }
        }
        Err(e) => println!("CHILD {:?}|{e}", e.kind()),
    }
}

/// Abstract names have no access control: with the default `Access::Owner`, a process of
/// another user connects anyway (unix(7): "socket permissions have no meaning for abstract
/// sockets"). `require_same_user` is the defence: the stranger is dropped at accept.
#[test]
#[ignore = "needs root to play another user — run as root: cargo test -p localsock --test security -- --ignored"]
fn abstract_names_have_no_access_control_and_require_same_user_is_the_defence() {
    let _w = root_test(
        "abstract_names_have_no_access_control_and_require_same_user_is_the_defence",
        30,
    );
    // Default options: Access::Owner, which cannot apply to an abstract name.
    let raw = unique_str("abs-open");
    let name = Name::abstract_name(&raw).unwrap();
    let listener = LocalListener::bind(&name).unwrap();
    let mut stranger = as_nobody(
        "child_stranger_connects",
        &[("LOCALSOCK_TEST_ABSTRACT", &raw)],
    );
    assert_eq!(read_line(&mut stranger.0), "connected");
    let mut s = listener.accept().unwrap();
    assert_eq!(s.peer_credentials().unwrap().uid(), Some(NOBODY));
    s.write_all(b"!").unwrap();
    assert_eq!(read_line(&mut stranger.0), "served");
    assert!(wait_bounded(&mut stranger.0, 20).success());

    // The same with require_same_user: connected at the socket level, then dropped.
    let raw = unique_str("abs-guarded");
    let name = Name::abstract_name(&raw).unwrap();
    let listener = ListenerOptions::new()
        .require_same_user(true)
        .bind(&name)
        .unwrap();
    let mut stranger = as_nobody(
        "child_stranger_connects",
        &[("LOCALSOCK_TEST_ABSTRACT", &raw)],
    );
    thread::scope(|scope| {
        let server = scope.spawn(|| listener.accept().unwrap().peer_credentials().unwrap().uid());
        assert_eq!(read_line(&mut stranger.0), "connected");
        assert_eq!(
            read_line(&mut stranger.0),
            "eof",
            "the stranger was dropped"
        );
        let _mine = LocalStream::connect(&name).unwrap();
        assert_eq!(
            server.join().unwrap(),
            Some(0),
            "only our own client is accepted"
        );
    });
    assert!(wait_bounded(&mut stranger.0, 20).success());
}

/// The async listener's `require_same_user` drops a stranger too (here on an abstract name,
/// which no permission protects): the stranger sees EOF, our own client is accepted.
#[cfg(feature = "tokio")]
#[test]
#[ignore = "needs root to play another user — run as root: cargo test -p localsock --test security -- --ignored"]
fn async_require_same_user_drops_other_users() {
    let _w = root_test("async_require_same_user_drops_other_users", 30);
    let raw = unique_str("abs-async-guarded");
    let name = Name::abstract_name(&raw).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(async {
        localsock::tokio::LocalListener::bind_with(
            &name,
            ListenerOptions::new().require_same_user(true),
        )
        .unwrap()
    });
    let mut stranger = as_nobody(
        "child_stranger_connects",
        &[("LOCALSOCK_TEST_ABSTRACT", &raw)],
    );
    assert_eq!(read_line(&mut stranger.0), "connected");
    let uid = rt.block_on(async {
        let accept = tokio::spawn(async move {
            let s = listener.accept().await.unwrap();
            s.peer_credentials().unwrap().uid()
        });
        // The stranger is dropped by accept before our client arrives.
        tokio::task::spawn_blocking(move || {
            let line = read_line(&mut stranger.0);
            assert_eq!(line, "eof", "the stranger was dropped");
            assert!(wait_bounded(&mut stranger.0, 20).success());
        })
        .await
        .unwrap();
        let _mine = localsock::tokio::LocalStream::connect(&name).await.unwrap();
        accept.await.unwrap()
    });
    assert_eq!(uid, Some(0), "only our own client is accepted");
}

/// A short name lives in the private `0700` directory, so even a listener opened to everyone
/// (`Access::Everyone`, socket file `0666`) cannot be reached by another user: the directory,
/// which every Unix honours, is the boundary, not the socket file's mode, which some ignore.
#[test]
#[ignore = "needs root to play another user — run as root: cargo test -p localsock --test security -- --ignored"]
fn the_private_directory_keeps_other_users_out_whatever_the_socket_mode() {
    let _w = root_test(
        "the_private_directory_keeps_other_users_out_whatever_the_socket_mode",
        30,
    );
    let name = common::unique("private-everyone");
    let _listener = ListenerOptions::new()
        .access(Access::Everyone)
        .bind(&name)
        .unwrap();
    let path = name.fs_path().unwrap().to_str().unwrap().to_owned();
    let mut stranger = as_nobody("child_stranger_connects", &[("LOCALSOCK_TEST_PATH", &path)]);
    let line = read_line(&mut stranger.0);
    assert!(line.starts_with("PermissionDenied|"), "{line}");
    assert!(line.contains(&path), "the error names the endpoint: {line}");
    assert!(wait_bounded(&mut stranger.0, 20).success());
}

/// `Access::Group` admits another user of the owner's group and nobody else (Linux honours
/// socket-file permissions; the directory here is searchable by all, as a shared one is).
#[test]
#[ignore = "needs root to play another user — run as root: cargo test -p localsock --test security -- --ignored"]
fn group_access_admits_the_group_and_no_one_else() {
    let _w = root_test("group_access_admits_the_group_and_no_one_else", 30);
    let dir = tempdir_with_mode(0o755);
    let path = dir.path().join("group.sock");
    let listener = ListenerOptions::new()
        .access(Access::Group)
        .bind(&Name::path(&path).unwrap())
        .unwrap();
    let group = std::os::unix::fs::MetadataExt::gid(&std::fs::symlink_metadata(&path).unwrap());
    let envs = [("LOCALSOCK_TEST_PATH", path.to_str().unwrap())];
    // uid 65534 in the socket's group: admitted.
    let mut member = Reaper(
        child_as("child_stranger_connects", &envs, NOBODY, group)
            .spawn()
            .unwrap(),
    );
    assert_eq!(read_line(&mut member.0), "connected");
    let s = listener.accept().unwrap();
    assert_eq!(s.peer_credentials().unwrap().uid(), Some(NOBODY));
    assert_eq!(s.peer_credentials().unwrap().gid(), Some(group));
    drop(s);
    assert_eq!(read_line(&mut member.0), "eof");
    // uid 65534 in its own group: refused.
    let mut outsider = as_nobody("child_stranger_connects", &envs);
    let line = read_line(&mut outsider.0);
    assert!(line.starts_with("PermissionDenied|"), "{line}");
}

/// Name squatting in a shared directory: another user binds our explicit path first (and
/// opens it to everyone to lure clients). Our server's bind is `AddrInUse` and leaves the
/// squatter's file alone (never unlinks a live socket); our client can connect to the squatter,
/// so a client that must trust its server checks `peer_credentials().uid()`, as here.
#[test]
#[ignore = "needs root to play another user — run as root: cargo test -p localsock --test security -- --ignored"]
fn a_squatter_in_a_shared_directory_is_refused_and_detectable() {
    let _w = root_test(
        "a_squatter_in_a_shared_directory_is_refused_and_detectable",
        30,
    );
    // A /tmp-like directory: everyone may create, the sticky bit protects others' files.
    let shared = tempdir_with_mode(0o1777);
    let path = shared.path().join("app.sock");
    let mut squatter = as_nobody(
        "child_squatter",
        &[("LOCALSOCK_TEST_PATH", path.to_str().unwrap())],
    );
    assert_eq!(read_line(&mut squatter.0), "listening");
    let name = Name::path(&path).unwrap();
    let err = LocalListener::bind(&name).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::symlink_metadata(&path).unwrap());
    assert_eq!(owner, NOBODY, "the squatter's socket is still there");
    // The client's defence: check who the server is.
    let client = LocalStream::connect(&name).unwrap();
    let server_uid = client.peer_credentials().unwrap().uid();
    assert_eq!(
        server_uid,
        Some(NOBODY),
        "the impostor is identified by uid"
    );
    assert_ne!(server_uid, Some(0));
}

/// Any user can squat an abstract name first: our bind is `AddrInUse`, and our client, which
/// would reach the squatter, tells it apart by its uid.
#[test]
#[ignore = "needs root to play another user — run as root: cargo test -p localsock --test security -- --ignored"]
fn an_abstract_name_squatter_is_refused_and_detectable() {
    let _w = root_test("an_abstract_name_squatter_is_refused_and_detectable", 30);
    let raw = unique_str("abs-squat");
    let mut squatter = as_nobody("child_squatter", &[("LOCALSOCK_TEST_ABSTRACT", &raw)]);
    assert_eq!(read_line(&mut squatter.0), "listening");
    let name = Name::abstract_name(&raw).unwrap();
    let err = LocalListener::bind(&name).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    let client = LocalStream::connect(&name).unwrap();
    assert_eq!(client.peer_credentials().unwrap().uid(), Some(NOBODY));
}

#[test]
#[ignore = "child process entry point"]
fn child_squatter() {
    if !is_child("child_squatter") {
        return;
    }
    let name = match std::env::var("LOCALSOCK_TEST_PATH") {
        Ok(path) => Name::path(path).unwrap(),
        Err(_) => Name::abstract_name(std::env::var("LOCALSOCK_TEST_ABSTRACT").unwrap()).unwrap(),
    };
    let listener = ListenerOptions::new()
        .access(Access::Everyone)
        .bind(&name)
        .unwrap();
    println!("CHILD listening");
    loop {
        let _ = listener.accept();
    }
}

/// Stale-reclaim serialisation uses an advisory `flock` on the socket's directory. Another
/// user who holds that lock forever (anyone can, on a directory they can read) only turns
/// reclaiming off: bind of a free name still succeeds (after waiting up to a second for the
/// lock), and a stale file is refused with `AddrInUse` and left in place, never unlinked
/// without the lock. It is a nuisance in shared directories, not a way to steal a name.
#[test]
#[ignore = "needs root to play another user — run as root: cargo test -p localsock --test security -- --ignored"]
fn a_stranger_holding_the_directory_lock_cannot_make_bind_unsafe() {
    let _w = root_test(
        "a_stranger_holding_the_directory_lock_cannot_make_bind_unsafe",
        30,
    );
    let shared = tempdir_with_mode(0o1777);
    let stale = shared.path().join("stale.sock");
    common::make_stale_socket(&stale);
    let mut locker = as_nobody(
        "child_lock_directory",
        &[("LOCALSOCK_TEST_PATH", shared.path().to_str().unwrap())],
    );
    assert_eq!(read_line(&mut locker.0), "locked");

    let fresh = Name::path(shared.path().join("fresh.sock")).unwrap();
    let listener = LocalListener::bind(&fresh).expect("a free name binds despite the lock");
    thread::scope(|s| {
        s.spawn(|| {
            let mut c = listener.accept().unwrap();
            let mut b = [0u8; 2];
            c.read_exact(&mut b).unwrap();
            c.write_all(&b).unwrap();
        });
        assert_eq!(echo_round_trip(&fresh, b"ok").unwrap(), b"ok");
    });

    let err = LocalListener::bind(&Name::path(&stale).unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains("locked"), "{err}");
    assert!(
        std::fs::symlink_metadata(&stale).is_ok(),
        "the stale file was unlinked without the lock"
    );
    // Once the lock is gone, the stale file is reclaimed as usual.
    drop(locker);
    LocalListener::bind(&Name::path(&stale).unwrap()).expect("reclaimed once unlocked");
}

#[test]
#[ignore = "child process entry point"]
#[allow(unsafe_code)]
fn child_lock_directory() {
    if !is_child("child_lock_directory") {
        return;
    }
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(std::env::var("LOCALSOCK_TEST_PATH").unwrap()).unwrap();
    // SAFETY: `dir` is an open descriptor for the whole call.
    let r = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(r, 0, "flock: {}", std::io::Error::last_os_error());
    println!("CHILD locked");
    thread::sleep(Duration::from_secs(600));
}

// ---------------------------------------------------------------------------------------------
// PID reuse: authorise on uid
// ---------------------------------------------------------------------------------------------

/// Peer credentials are what the kernel recorded at connect time. After the peer exits its
/// pid still reads the same, though that pid may by now name another process (pids are
/// reused): an application must authorise on the uid, which identifies the user for the whole
/// connection, and use the pid for logs only.
#[test]
fn peer_credentials_are_a_snapshot_so_authorise_on_uid_not_pid() {
    let _w = watchdog(
        "peer_credentials_are_a_snapshot_so_authorise_on_uid_not_pid",
        30,
    );
    let dir = tempdir_with_mode(0o755);
    let path = dir.path().join("creds.sock");
    let listener = ListenerOptions::new()
        .access(Access::Everyone)
        .bind(&Name::path(&path).unwrap())
        .unwrap();
    let envs = [("LOCALSOCK_TEST_PATH", path.to_str().unwrap())];
    let (mut peer, want_uid) = if is_root() {
        (as_nobody("child_stranger_connects", &envs), NOBODY)
    } else {
        let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
        (
            Reaper(child("child_stranger_connects", &envs).spawn().unwrap()),
            uid,
        )
    };
    let pid = peer.0.id();
    let s = listener.accept().unwrap();
    let at_connect = s.peer_credentials().unwrap();
    assert_eq!(at_connect.pid(), Some(pid));
    assert_eq!(at_connect.uid(), Some(want_uid));
    assert_eq!(read_line(&mut peer.0), "connected");
    peer.0.kill().unwrap();
    peer.0.wait().unwrap();
    // The peer is gone (reaped): its pid is free for reuse, yet the credentials still name it.
    let later = s.peer_credentials().unwrap();
    assert_eq!(
        later, at_connect,
        "credentials are the connect-time snapshot"
    );
    let alive_now = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(" Z "))
        .unwrap_or(false);
    assert!(
        !alive_now,
        "pid {pid} names a live process again (reused already?)"
    );
}

// ---------------------------------------------------------------------------------------------
// Inheritance into child processes (the blocking API: io.rs)
// ---------------------------------------------------------------------------------------------

/// The async API's descriptors (listener, connected and accepted streams) are close-on-exec
/// too: a program spawned while they are open sees none of them.
#[cfg(feature = "tokio")]
#[test]
fn no_descriptor_of_the_async_api_leaks_into_child_processes() {
    use std::os::fd::AsRawFd;
    let _w = watchdog(
        "no_descriptor_of_the_async_api_leaks_into_child_processes",
        30,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let name = common::unique("cloexec-async");
        let listener = localsock::tokio::LocalListener::bind(&name).unwrap();
        let (client, server) = tokio::join!(
            localsock::tokio::LocalStream::connect(&name),
            listener.accept()
        );
        let (client, server) = (client.unwrap(), server.unwrap());
        common::assert_no_fd_leaks_into_child(&[
            listener.as_raw_fd(),
            client.as_raw_fd(),
            server.as_raw_fd(),
        ]);
    });
}

// ---------------------------------------------------------------------------------------------
// fork
// ---------------------------------------------------------------------------------------------

/// A process that forks after binding (to daemonize, or to start workers) holds two copies of
/// the listener. When the forked copy is dropped (the worker exits, the daemonizing parent
/// returns from `main`), the socket file must stay: only the process that bound it removes it.
#[test]
fn a_forked_copy_of_the_listener_leaves_the_socket_file_alone() {
    let _w = watchdog(
        "a_forked_copy_of_the_listener_leaves_the_socket_file_alone",
        30,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forked.sock");
    let mut c = Reaper(
        child(
            "child_fork_and_drop",
            &[("LOCALSOCK_TEST_PATH", path.to_str().unwrap())],
        )
        .spawn()
        .unwrap(),
    );
    assert_eq!(
        read_line(&mut c.0),
        "served after the fork dropped its copy"
    );
    assert!(wait_bounded(&mut c.0, 20).success());
    assert!(
        !path.exists(),
        "the binding process removed its file on drop"
    );
}

#[test]
#[ignore = "child process entry point"]
#[allow(unsafe_code)]
fn child_fork_and_drop() {
    if !is_child("child_fork_and_drop") {
        return;
    }
    let path = std::env::var("LOCALSOCK_TEST_PATH").unwrap();
    let name = Name::path(&path).unwrap();
    let listener = LocalListener::bind(&name).unwrap();
    // SAFETY: the forked child only drops the listener (lstat, unlink, close and a free) and
    // calls _exit; glibc makes malloc usable in the child of a fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        drop(listener);
        // SAFETY: _exit ends the forked child at once, without running the parent's atexit
        // handlers or the test harness.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child and `status` is a live c_int.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(
        std::path::Path::new(&path).exists(),
        "the forked copy removed the socket file"
    );
    thread::scope(|s| {
        s.spawn(|| {
            let mut c = listener.accept().unwrap();
            let mut b = [0u8; 1];
            c.read_exact(&mut b).unwrap();
            c.write_all(&b).unwrap();
        });
        assert_eq!(echo_round_trip(&name, b"f").unwrap(), b"f");
    });
    println!("CHILD served after the fork dropped its copy");
    drop(listener);
}
