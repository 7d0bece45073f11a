//! Message connections: boundaries, empty messages vs end-of-file, limits on both ends, short
//! buffers, handles that arrive usable and close-on-exec, the shared listener/connect policy,
//! and handles passed to another process that uses them. Platform-neutral where the behaviour
//! is (files travel as `File`s on every OS); Unix-only parts say so.

mod common;

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, Write};
use std::thread;

use common::{unique, watchdog};
use localsock::{
    LocalListener, MessageListener, MessageStream, Name, MAX_HANDLES, MAX_MESSAGE_LEN,
};

/// A connected (client, server) message pair.
fn message_pair(tag: &str) -> (MessageStream, MessageStream) {
    let name = unique(tag);
    let listener = MessageListener::bind(&name).unwrap();
    let client = thread::spawn(move || MessageStream::connect(&name).unwrap());
    let server = listener.accept().unwrap();
    (client.join().unwrap(), server)
}

/// A temporary file holding `content`, opened read-only.
fn read_only_file(content: &[u8]) -> (tempfile::TempDir, File) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.txt");
    std::fs::write(&path, content).unwrap();
    let file = File::open(&path).unwrap();
    (dir, file)
}

#[test]
fn messages_keep_their_boundaries_and_an_empty_message_is_not_eof() {
    let _w = watchdog("messages_keep_their_boundaries", 30);
    let (client, server) = message_pair("bound");
    let sizes = [0usize, 1, 0, 2, 1000, 0, MAX_MESSAGE_LEN, 3];
    let sender = thread::spawn(move || {
        for (i, len) in sizes.iter().enumerate() {
            let bytes: Vec<u8> = (0..*len).map(|j| (i * 31 + j) as u8).collect();
            client.send(&bytes).unwrap();
        }
        // Closing after the last (empty-adjacent) message: the receiver sees every message,
        // then end-of-file.
    });
    let mut buf = vec![0u8; MAX_MESSAGE_LEN];
    for (i, len) in sizes.iter().enumerate() {
        let got = server.recv(&mut buf).unwrap();
        assert_eq!(got, Some(*len), "message {i}");
        let expected: Vec<u8> = (0..*len).map(|j| (i * 31 + j) as u8).collect();
        assert!(buf[..*len] == expected[..], "message {i} content");
    }
    sender.join().unwrap();
    assert_eq!(
        server.recv(&mut buf).unwrap(),
        None,
        "end-of-file after the last message"
    );
    assert_eq!(
        server.recv(&mut buf).unwrap(),
        None,
        "end-of-file stays end-of-file"
    );
}

#[test]
fn a_short_buffer_is_an_error_that_states_the_length_and_keeps_the_message() {
    let _w = watchdog("a_short_buffer_is_an_error", 30);
    let (client, server) = message_pair("short");
    client.send(&[7u8; 700]).unwrap();
    let mut small = [0u8; 512];
    let err = server.recv(&mut small).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("700 bytes"), "{err}");
    assert_eq!(server.peek_len().unwrap(), Some(700));
    let mut big = [0u8; 700];
    assert_eq!(server.recv(&mut big).unwrap(), Some(700));
    assert!(big.iter().all(|b| *b == 7));
    // The allocating receive sizes itself.
    client.send(&[9u8; 3000]).unwrap();
    let message = server.recv_message().unwrap().unwrap();
    assert_eq!(message.bytes, vec![9u8; 3000]);
    assert!(message.handles.is_empty());
}

#[test]
fn limits_are_enforced_before_anything_is_sent() {
    let _w = watchdog("limits_are_enforced_before_anything_is_sent", 30);
    let (client, server) = message_pair("limits");
    let err = client.send(&vec![0u8; MAX_MESSAGE_LEN + 1]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let (_dir, file) = read_only_file(b"x");
    let files: Vec<&File> = std::iter::repeat(&file).take(MAX_HANDLES + 1).collect();
    let err = client.send_with_files(b"too many", &files).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("254 handles"), "{err}");
    // Nothing of either reached the peer: the next message is the first one it sees.
    client.send(b"first").unwrap();
    let message = server.recv_message().unwrap().unwrap();
    assert_eq!(message.bytes, b"first");
    // The most handles a message may carry do go through.
    client
        .send_with_files(b"max", &files[..MAX_HANDLES])
        .unwrap();
    let message = server.recv_message().unwrap().unwrap();
    assert_eq!(message.handles.len(), MAX_HANDLES);
}

#[test]
fn a_received_file_reads_the_same_open_file() {
    let _w = watchdog("a_received_file_reads_the_same_open_file", 30);
    let (client, server) = message_pair("file");
    let (_dir, mut file) = read_only_file(b"hello from a passed file");
    // Move the shared file offset: the receiver gets the same open file, not a new open.
    let mut first = [0u8; 6];
    file.read_exact(&mut first).unwrap();
    client.send_with_files(b"data.txt", &[&file]).unwrap();
    let mut buf = [0u8; 64];
    let mut handles = Vec::new();
    let len = server
        .recv_with_handles(&mut buf, &mut handles, 1)
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..len], b"data.txt");
    assert_eq!(handles.len(), 1);
    let mut received = File::from(handles.pop().unwrap());
    let mut rest = String::new();
    received.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "from a passed file");
    received.rewind().unwrap();
    // Read-only stays read-only.
    assert!(received.write_all(b"x").is_err());
}

#[test]
fn more_handles_than_allowed_drops_the_message_and_closes_them() {
    let _w = watchdog("more_handles_than_allowed", 30);
    let (client, server) = message_pair("toomany");
    let (_dir, file) = read_only_file(b"x");
    client
        .send_with_files(b"three", &[&file, &file, &file])
        .unwrap();
    client.send_with_files(b"one", &[&file]).unwrap();
    client
        .send_with_files(b"handles where none are expected", &[&file])
        .unwrap();
    client.send(b"plain").unwrap();
    let mut buf = [0u8; 64];
    let mut handles = Vec::new();
    let err = server
        .recv_with_handles(&mut buf, &mut handles, 2)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    assert!(
        handles.is_empty(),
        "no handle of a refused message is handed out"
    );
    // The connection goes on with the next message.
    let len = server
        .recv_with_handles(&mut buf, &mut handles, 2)
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..len], b"one");
    assert_eq!(handles.len(), 1);
    let err = server.recv(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    assert_eq!(server.recv(&mut buf).unwrap(), Some(5));
    assert_eq!(&buf[..5], b"plain");
}

#[test]
fn message_and_byte_endpoints_do_not_mix() {
    let _w = watchdog("message_and_byte_endpoints_do_not_mix", 30);
    let name = unique("mix");
    let listener = MessageListener::bind(&name).unwrap();
    let start = std::time::Instant::now();
    // A byte client cannot connect to a message socket (Unix); on Windows it can open a
    // message pipe and read the raw pipe messages as bytes.
    #[cfg(unix)]
    assert!(localsock::LocalStream::connect(&name).is_err());
    // A live server of either kind keeps its name.
    assert_eq!(
        LocalListener::bind(&name).unwrap_err().kind(),
        ErrorKind::AddrInUse
    );
    assert_eq!(
        MessageListener::bind(&name).unwrap_err().kind(),
        ErrorKind::AddrInUse
    );
    drop(listener);
    let bytes = LocalListener::bind(&name).unwrap();
    assert!(MessageStream::connect(&name).is_err());
    // Both failed at once, not after the busy-retry deadline.
    assert!(start.elapsed() < std::time::Duration::from_secs(3));
    drop(bytes);
}

#[test]
fn connect_policy_is_shared_with_byte_streams() {
    let _w = watchdog("connect_policy_is_shared_with_byte_streams", 30);
    let name = unique("policy");
    assert_eq!(
        MessageStream::connect(&name).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // A client that starts before its server waits for it, within the deadline.
    let n2 = name.clone();
    let client = thread::spawn(move || {
        MessageStream::connect_with(
            &n2,
            localsock::ConnectOptions::new()
                .wait_for_server(true)
                .timeout(std::time::Duration::from_secs(10)),
        )
    });
    thread::sleep(std::time::Duration::from_millis(50));
    let listener = MessageListener::bind(&name).unwrap();
    let server = listener.accept().unwrap();
    let client = client.join().unwrap().unwrap();
    let creds = server.peer_credentials().unwrap();
    assert_eq!(creds.pid(), Some(std::process::id()));
    client.send(b"hi").unwrap();
    assert_eq!(server.recv_message().unwrap().unwrap().bytes, b"hi");
}

#[test]
fn nonblocking_receive_would_block_and_takes_nothing() {
    let _w = watchdog("nonblocking_receive_would_block", 30);
    let (client, server) = message_pair("nonblock");
    server.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        server.recv(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    client.send(b"now").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match server.recv(&mut buf) {
            Ok(got) => {
                assert_eq!(got, Some(3));
                break;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(std::time::Instant::now() < deadline);
                thread::yield_now();
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn sending_to_a_closed_peer_is_broken_pipe() {
    let _w = watchdog("sending_to_a_closed_peer_is_broken_pipe", 30);
    let (client, server) = message_pair("closed");
    drop(server);
    let err = client.send(b"anyone?").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
}

// ---- handles of every kind, close-on-exec ----

#[cfg(unix)]
#[test]
fn received_descriptors_are_close_on_exec() {
    let _w = watchdog("received_descriptors_are_close_on_exec", 30);
    let (client, server) = message_pair("cloexec");
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    client.send_with_handles(b"s", &[borrow(&a)]).unwrap();
    let message = server.recv_message().unwrap().unwrap();
    let fd = &message.handles[0];
    let flags = rustix::io::fcntl_getfd(fd).unwrap();
    assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    #[cfg(target_os = "linux")]
    common::assert_no_fd_leaks_into_child(&[std::os::fd::AsRawFd::as_raw_fd(fd)]);
}

/// A child process gets a read-only file, the write end of a pipe and (Unix) a connected
/// socket and a listening socket, in one message each, and uses each: reads the file (and
/// sends the text back), writes into the pipe, talks over the socket, accepts on the listener.
#[test]
fn another_process_uses_a_file_a_pipe_a_socket_and_a_listener_it_was_sent() {
    let _w = watchdog("another_process_uses_what_it_was_sent", 60);
    let name = unique("kinds");
    let listener = MessageListener::bind(&name).unwrap();
    let mut child = common::child(
        "child_uses_received_handles",
        &[("LOCALSOCK_TEST_NAME", &name.to_string())],
    )
    .spawn()
    .unwrap();
    let stream = listener.accept().unwrap();

    let (_dir, file) = read_only_file(b"contents of the read-only file");
    stream.send_with_files(b"file", &[&file]).unwrap();
    let reply = stream.recv_message().unwrap().unwrap();
    assert_eq!(reply.bytes, b"contents of the read-only file");

    let (mut pipe_read, pipe_write) = std::io::pipe().unwrap();
    stream
        .send_with_handles(b"pipe", &[borrow(&pipe_write)])
        .unwrap();
    drop(pipe_write); // the child holds the only write end now
    let mut from_pipe = String::new();
    pipe_read.read_to_string(&mut from_pipe).unwrap();
    assert_eq!(from_pipe, "written by the child");

    #[cfg(unix)]
    {
        use std::os::unix::net::{UnixListener, UnixStream};
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        stream
            .send_with_handles(b"socket", &[borrow(&theirs)])
            .unwrap();
        drop(theirs);
        ours.write_all(b"ping").unwrap();
        let mut pong = [0u8; 4];
        ours.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"pong");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sock");
        let passed = UnixListener::bind(&path).unwrap();
        stream
            .send_with_handles(b"listener", &[borrow(&passed)])
            .unwrap();
        drop(passed);
        let mut conn = UnixStream::connect(&path).unwrap();
        let mut greeting = String::new();
        conn.read_to_string(&mut greeting).unwrap();
        assert_eq!(greeting, "accepted by the child");
    }

    assert_eq!(stream.recv_message().unwrap().unwrap().bytes, b"done");
    let status = common::wait_bounded(&mut child, 30);
    assert!(status.success(), "child failed: {status}");
}

#[cfg(unix)]
fn borrow<T: std::os::fd::AsFd>(x: &T) -> localsock::BorrowedOsHandle<'_> {
    x.as_fd()
}

#[cfg(windows)]
fn borrow<T: std::os::windows::io::AsHandle>(x: &T) -> localsock::BorrowedOsHandle<'_> {
    x.as_handle()
}

#[test]
#[ignore = "child role of another_process_uses_a_file_a_pipe_a_socket_and_a_listener_it_was_sent"]
fn child_uses_received_handles() {
    if !common::is_child("child_uses_received_handles") {
        return;
    }
    let name = Name::new(std::env::var("LOCALSOCK_TEST_NAME").unwrap()).unwrap();
    let stream = MessageStream::connect(&name).unwrap();
    let take = |what: &[u8]| {
        let mut message = stream.recv_message().unwrap().unwrap();
        assert_eq!(message.bytes, what);
        assert_eq!(message.handles.len(), 1);
        message.handles.pop().unwrap()
    };
    let mut text = Vec::new();
    File::from(take(b"file")).read_to_end(&mut text).unwrap();
    stream.send(&text).unwrap();
    File::from(take(b"pipe"))
        .write_all(b"written by the child")
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::net::{UnixListener, UnixStream};
        let mut socket = UnixStream::from(take(b"socket"));
        let mut ping = [0u8; 4];
        socket.read_exact(&mut ping).unwrap();
        assert_eq!(&ping, b"ping");
        socket.write_all(b"pong").unwrap();
        let listener = UnixListener::from(take(b"listener"));
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"accepted by the child").unwrap();
    }
    stream.send(b"done").unwrap();
}

/// A sender killed while it sends: the receiver gets whole messages, then end-of-file (or an
/// error), never part of one.
#[test]
fn a_sender_killed_mid_stream_leaves_only_whole_messages() {
    let _w = watchdog("a_sender_killed_mid_stream", 60);
    let name = unique("kill");
    let listener = MessageListener::bind(&name).unwrap();
    let mut child = common::child(
        "child_sends_forever",
        &[("LOCALSOCK_TEST_NAME", &name.to_string())],
    )
    .spawn()
    .unwrap();
    let stream = listener.accept().unwrap();
    let mut buf = vec![0u8; MAX_MESSAGE_LEN];
    // Let some messages through, then kill the sender while it is busy sending.
    for _ in 0..20 {
        let len = stream.recv(&mut buf).unwrap().unwrap();
        check_pattern(&buf[..len]);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut whole = 0;
    loop {
        match stream.recv(&mut buf) {
            Ok(Some(len)) => {
                check_pattern(&buf[..len]);
                whole += 1;
            }
            Ok(None) => break,
            Err(e) => {
                assert_ne!(e.kind(), ErrorKind::InvalidData, "{e}");
                break;
            }
        }
    }
    println!("{whole} whole messages were still queued after the kill");
}

/// Each message is its length (4 bytes) followed by that many bytes of a pattern.
fn check_pattern(message: &[u8]) {
    assert!(message.len() >= 4, "short message {}", message.len());
    let n = u32::from_le_bytes(message[..4].try_into().unwrap()) as usize;
    assert_eq!(message.len(), 4 + n, "a cut message");
    assert!(message[4..]
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i % 253) as u8));
}

#[test]
#[ignore = "child role of a_sender_killed_mid_stream_leaves_only_whole_messages"]
fn child_sends_forever() {
    if !common::is_child("child_sends_forever") {
        return;
    }
    let name = Name::new(std::env::var("LOCALSOCK_TEST_NAME").unwrap()).unwrap();
    let stream = MessageStream::connect(&name).unwrap();
    let mut i = 0usize;
    loop {
        let n = (i * 7919) % (MAX_MESSAGE_LEN - 4);
        let mut message = (n as u32).to_le_bytes().to_vec();
        message.extend((0..n).map(|j| (j % 253) as u8));
        if stream.send(&message).is_err() {
            return;
        }
        i += 1;
    }
}
