//! The async message API (`localsock::tokio::{MessageListener, MessageStream}`): boundaries,
//! empty messages vs EOF, handles, refused handles, cancel safety of `recv`, and interplay
//! with the blocking types. Platform-neutral: the same tests on Unix (`SOCK_SEQPACKET`) and
//! on Windows (message-mode pipes read between zero-byte readiness reads).
#![cfg(feature = "tokio")]

mod common;

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::sync::Arc;
use std::time::Duration;

use common::{run, unique};
use localsock::tokio::{MessageListener, MessageStream};

fn temp_file(content: &[u8]) -> (tempfile::TempDir, File) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.txt");
    std::fs::write(&path, content).unwrap();
    let file = File::open(&path).unwrap();
    (dir, file)
}

#[test]
fn async_messages_keep_boundaries_handles_and_eof() {
    run(30, async {
        let name = unique("tk-bound");
        let listener = MessageListener::bind(&name).unwrap();
        let (_dir, file) = temp_file(b"async file");
        let client = tokio::spawn({
            let name = name.clone();
            async move {
                let stream = MessageStream::connect(&name).await.unwrap();
                stream.send(b"").await.unwrap();
                stream.send(b"one").await.unwrap();
                stream.send_with_files(b"file", &[&file]).await.unwrap();
                stream
                    .send_with_files(b"refused", &[&file, &file])
                    .await
                    .unwrap();
                stream
                    .send(&vec![5u8; localsock::MAX_MESSAGE_LEN])
                    .await
                    .unwrap();
            }
        });
        let server = listener.accept().await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(server.recv(&mut buf).await.unwrap(), Some(0));
        assert_eq!(server.recv(&mut buf).await.unwrap(), Some(3));
        let mut handles = Vec::new();
        let len = server
            .recv_with_handles(&mut buf, &mut handles, 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..len], b"file");
        let mut text = String::new();
        File::from(handles.pop().unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "async file");
        let err = server
            .recv_with_handles(&mut buf, &mut handles, 1)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(handles.is_empty());
        // Too long for this buffer: an error with the length, and the message stays.
        let err = server.recv(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("65536 bytes"), "{err}");
        let message = server.recv_message().await.unwrap().unwrap();
        assert_eq!(message.bytes.len(), localsock::MAX_MESSAGE_LEN);
        client.await.unwrap();
        assert!(server.recv_message().await.unwrap().is_none());
    });
}

#[test]
fn a_cancelled_recv_loses_no_message() {
    run(30, async {
        let name = unique("tk-cancel");
        let listener = MessageListener::bind(&name).unwrap();
        let client = Arc::new(MessageStream::connect(&name).await.unwrap());
        let server = listener.accept().await.unwrap();
        let mut buf = [0u8; 64];
        for i in 0..200u32 {
            // Race each receive against a timer that usually wins before the send.
            tokio::select! {
                got = server.recv(&mut buf) => panic!("nothing was sent yet: {got:?}"),
                _ = tokio::time::sleep(Duration::from_micros(50)) => {}
            }
            client.send(&i.to_le_bytes()).await.unwrap();
            let len = server.recv(&mut buf).await.unwrap().unwrap();
            assert_eq!(&buf[..len], &i.to_le_bytes());
        }
        assert_eq!(
            server.peer_credentials().unwrap().pid(),
            Some(std::process::id())
        );
    });
}

#[test]
fn blocking_and_async_message_endpoints_talk() {
    run(30, async {
        let name = unique("tk-mixed");
        let listener = MessageListener::bind(&name).unwrap();
        let blocking = tokio::task::spawn_blocking({
            let name = name.clone();
            move || {
                let stream = localsock::MessageStream::connect(&name).unwrap();
                stream.send(b"from blocking").unwrap();
                stream.recv_message().unwrap().unwrap().bytes
            }
        });
        let server = listener.accept().await.unwrap();
        let got = server.recv_message().await.unwrap().unwrap();
        assert_eq!(got.bytes, b"from blocking");
        server.send(b"from async").await.unwrap();
        assert_eq!(blocking.await.unwrap(), b"from async");
    });
}

#[test]
fn two_tasks_receiving_on_one_stream_each_get_a_whole_message() {
    run(30, async {
        let name = unique("tk-two");
        let listener = MessageListener::bind(&name).unwrap();
        let client = MessageStream::connect(&name).await.unwrap();
        let server = Arc::new(listener.accept().await.unwrap());
        let receivers: Vec<_> = (0..2)
            .map(|_| {
                let server = Arc::clone(&server);
                tokio::spawn(async move {
                    let mut buf = [0u8; 16];
                    let len = server.recv(&mut buf).await.unwrap().unwrap();
                    buf[..len].to_vec()
                })
            })
            .collect();
        // Both are waiting (or about to) when the messages come.
        tokio::task::yield_now().await;
        client.send(b"first").await.unwrap();
        client.send(b"second").await.unwrap();
        let mut got = Vec::new();
        for receiver in receivers {
            got.push(receiver.await.unwrap());
        }
        got.sort();
        assert_eq!(got, [b"first".to_vec(), b"second".to_vec()]);
    });
}

#[test]
fn dropping_a_stream_while_a_recv_waits_closes_it() {
    run(30, async {
        let name = unique("tk-dropwait");
        let listener = MessageListener::bind(&name).unwrap();
        let client = MessageStream::connect(&name).await.unwrap();
        let server = listener.accept().await.unwrap();
        let mut buf = [0u8; 16];
        // A receive that starts waiting, then is dropped with the stream.
        tokio::select! {
            got = server.recv(&mut buf) => panic!("nothing was sent: {got:?}"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        drop(server);
        assert_eq!(client.recv(&mut buf).await.unwrap(), None);
        assert!(client.send(b"late").await.is_err());
    });
}

#[test]
fn a_cancelled_send_sends_its_message_whole_or_not_at_all() {
    run(60, async {
        let name = unique("tk-cancelsend");
        let listener = MessageListener::bind(&name).unwrap();
        let client = MessageStream::connect(&name).await.unwrap();
        let server = listener.accept().await.unwrap();
        // Nobody reads: sends fill the way to the peer until one does not finish; that one is
        // cancelled (its future dropped mid-send).
        let mut sent = 0u32;
        let mut cancelled = None;
        for i in 0..1000u32 {
            let mut message = vec![7u8; localsock::MAX_MESSAGE_LEN];
            message[..4].copy_from_slice(&i.to_le_bytes());
            tokio::select! {
                done = client.send(&message) => {
                    done.unwrap();
                    sent += 1;
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    cancelled = Some(i);
                    break;
                }
            }
        }
        let cancelled = cancelled.expect("the way to a peer that does not read never filled");
        let reader = tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let message = server.recv_message().await.unwrap().unwrap();
                if message.bytes == b"end" {
                    return ids;
                }
                assert_eq!(
                    message.bytes.len(),
                    localsock::MAX_MESSAGE_LEN,
                    "a whole message"
                );
                ids.push(u32::from_le_bytes(message.bytes[..4].try_into().unwrap()));
            }
        });
        client.send(b"end").await.unwrap();
        let ids = reader.await.unwrap();
        // Every completed send, in order; the cancelled one after them, whole, or not at all.
        let completed: Vec<u32> = (0..sent).collect();
        let with_cancelled: Vec<u32> = (0..=cancelled).collect();
        assert!(
            ids == completed || ids == with_cancelled,
            "{ids:?} (cancelled {cancelled})"
        );
    });
}
