//! `LocalListener::from_inherited_fd` (blocking and tokio): an inherited descriptor becomes a
//! listener only if it is a listening `AF_UNIX` stream socket; anything else is `InvalidInput`
//! saying what it is. The descriptors are made with std and `libc` here, as a service manager
//! would pass them; the end-to-end test with `systemd-socket-activate` is in the CLI's tests.
#![cfg(unix)]

use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

use localsock::{LocalListener, LocalStream, Name};

fn refused(fd: OwnedFd, what: &str) {
    let err = LocalListener::from_inherited_fd(fd).expect_err(what);
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(what), "{msg:?} should say {what:?}");
    assert!(
        msg.contains("not a listening AF_UNIX stream socket"),
        "{msg}"
    );
}

#[test]
fn anything_but_a_listening_unix_stream_socket_is_refused_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(dir.path().join("plain")).unwrap();
    refused(file.into(), "a regular file");
    let directory = std::fs::File::open(dir.path()).unwrap();
    refused(directory.into(), "a directory");
    let devnull = std::fs::File::open("/dev/null").unwrap();
    refused(devnull.into(), "a character device");

    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    refused(tcp.into(), "an IPv4 (AF_INET) socket");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    refused(udp.into(), "an IPv4 (AF_INET) socket");

    let dgram = UnixDatagram::bind(dir.path().join("dgram")).unwrap();
    refused(dgram.into(), "an AF_UNIX datagram (SOCK_DGRAM) socket");

    let (a, _b) = UnixStream::pair().unwrap();
    refused(a.into(), "not listening");

    // Bound, but nobody called listen(2): a socket file that refuses connections.
    let fd = bound_not_listening(&dir.path().join("bound.sock"));
    refused(fd, "not listening");

    let (reader, _writer) = pipe();
    refused(reader, "a pipe or FIFO");
}

#[test]
fn a_listening_unix_socket_is_adopted_with_its_name_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inherited.sock");
    let std_listener = UnixListener::bind(&path).unwrap();
    // Service managers may pass the socket non-blocking: accept must still wait.
    std_listener.set_nonblocking(true).unwrap();
    let listener = LocalListener::from_inherited_fd(std_listener.into()).unwrap();
    assert_eq!(listener.name(), &Name::path(&path).unwrap());
    let client = std::thread::spawn({
        let path = path.clone();
        move || {
            let mut c = LocalStream::connect(&Name::path(&path).unwrap()).unwrap();
            c.write_all(b"ping").unwrap();
            let mut back = [0u8; 4];
            c.read_exact(&mut back).unwrap();
            back
        }
    });
    let mut s = listener.accept().unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    s.write_all(&buf).unwrap();
    assert_eq!(&client.join().unwrap(), b"ping");
    drop(s);
    drop(listener);
    assert!(
        path.exists(),
        "the socket file belongs to whoever bound it: dropping an adopted listener keeps it"
    );
}

#[test]
fn an_adopted_listener_is_close_on_exec_even_if_passed_without() {
    use rustix::io::{fcntl_getfd, fcntl_setfd, FdFlags};
    let dir = tempfile::tempdir().unwrap();
    let std_listener = UnixListener::bind(dir.path().join("noexec.sock")).unwrap();
    // As a parent that passes the socket to its child leaves it: inheritable.
    fcntl_setfd(&std_listener, FdFlags::empty()).unwrap();
    let listener = LocalListener::from_inherited_fd(std_listener.into()).unwrap();
    assert!(
        fcntl_getfd(&listener).unwrap().contains(FdFlags::CLOEXEC),
        "the adopted listener would leak into every process this one starts"
    );
}

#[cfg(feature = "tokio")]
#[test]
fn tokio_from_inherited_fd_checks_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = localsock::tokio::LocalListener::from_inherited_fd(tcp.into()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("AF_INET"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("async.sock");
        let std_listener = UnixListener::bind(&path).unwrap();
        let listener =
            localsock::tokio::LocalListener::from_inherited_fd(std_listener.into()).unwrap();
        let name = Name::path(&path).unwrap();
        let client = tokio::spawn(async move {
            let mut c = localsock::tokio::LocalStream::connect(&name).await.unwrap();
            c.write_all(b"hi").await.unwrap();
            let mut back = [0u8; 2];
            c.read_exact(&mut back).await.unwrap();
            back
        });
        let mut s = listener.accept().await.unwrap();
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(&buf).await.unwrap();
        assert_eq!(&client.await.unwrap(), b"hi");
    });
}

fn bound_not_listening(path: &std::path::Path) -> OwnedFd {
    use rustix::net::{bind, socket, AddressFamily, SocketAddrUnix, SocketType};
    let fd = socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
    bind(&fd, &SocketAddrUnix::new(path).unwrap()).unwrap();
    fd
}

fn pipe() -> (OwnedFd, OwnedFd) {
    rustix::pipe::pipe().unwrap()
}

/// `activation::take_listen_fds` hands the descriptors over once; a later call must return
/// nothing and leave descriptors 3.. alone (by then they were closed, or are someone else's).
/// Runs itself again under `sh`, which sets `LISTEN_PID` to the pid it then `exec`s into.
#[cfg(feature = "systemd")]
#[test]
fn take_listen_fds_takes_once_and_then_leaves_the_descriptors_alone() {
    const CHILD: &str = "LOCALSOCK_TEST_ACTIVATION_CHILD";
    const ME: &str = "take_listen_fds_takes_once_and_then_leaves_the_descriptors_alone";
    if std::env::var_os(CHILD).is_some() {
        let first = localsock::activation::take_listen_fds().unwrap();
        assert_eq!(first.len(), 1, "{first:?}");
        drop(first); // closes descriptor 3
        let second = localsock::activation::take_listen_fds();
        assert!(
            matches!(&second, Ok(fds) if fds.is_empty()),
            "the second call must take nothing and touch nothing: {second:?}"
        );
        return;
    }
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" --exact "$1" --test-threads=1 3</dev/null"#)
        .arg(std::env::current_exe().unwrap())
        .arg(ME)
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
