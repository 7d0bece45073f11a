//! Message boundaries under random traffic: random sizes (0 to `MAX_MESSAGE_LEN`) and handle
//! counts, sent in both directions at once; every message arrives whole, in order, with its
//! handles, and nothing else arrives.

mod common;

use std::fs::File;
use std::thread;

use common::{unique, watchdog};
use localsock::{MessageListener, MessageStream, MAX_MESSAGE_LEN};
use proptest::prelude::*;

/// One message to send: its length, its fill byte and how many files ride with it.
#[derive(Clone, Debug)]
struct Spec {
    len: usize,
    fill: u8,
    files: usize,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop_oneof![
            0..16usize,
            0..2048usize,
            (MAX_MESSAGE_LEN - 16)..=MAX_MESSAGE_LEN
        ],
        any::<u8>(),
        prop_oneof![Just(0usize), 0..4usize, 250..=253usize],
    )
        .prop_map(|(len, fill, files)| Spec { len, fill, files })
}

fn send_all(stream: &MessageStream, specs: &[Spec], file: &File) {
    let files: Vec<&File> = std::iter::repeat(file).take(253).collect();
    for spec in specs {
        let bytes = vec![spec.fill; spec.len];
        stream
            .send_with_files(&bytes, &files[..spec.files])
            .unwrap();
    }
}

fn receive_all(stream: &MessageStream, specs: &[Spec], content: &[u8]) {
    let mut buf = vec![0u8; MAX_MESSAGE_LEN];
    let mut handles = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let len = stream
            .recv_with_handles(&mut buf, &mut handles, 253)
            .unwrap()
            .unwrap();
        assert_eq!(len, spec.len, "message {i}");
        assert!(buf[..len].iter().all(|b| *b == spec.fill), "message {i}");
        assert_eq!(handles.len(), spec.files, "message {i}");
        // The handles are the file: spot-check the first one (by its length: the receivers
        // share one open file, and with it one file position, so reading would race).
        if let Some(handle) = handles.drain(..).next() {
            let file = File::from(handle);
            assert_eq!(file.metadata().unwrap().len(), content.len() as u64);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn both_directions_at_once_keep_every_boundary(
        forth in proptest::collection::vec(spec(), 0..24),
        back in proptest::collection::vec(spec(), 0..24),
    ) {
        let _w = watchdog("both_directions_at_once_keep_every_boundary", 120);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"the attached file").unwrap();
        let file = File::open(&path).unwrap();
        let name = unique("props");
        let listener = MessageListener::bind(&name).unwrap();
        let client = {
            let name = name.clone();
            thread::spawn(move || MessageStream::connect(&name).unwrap())
        };
        let server = listener.accept().unwrap();
        let client = client.join().unwrap();
        thread::scope(|s| {
            s.spawn(|| send_all(&client, &forth, &file));
            s.spawn(|| send_all(&server, &back, &file));
            s.spawn(|| receive_all(&server, &forth, b"the attached file"));
            s.spawn(|| receive_all(&client, &back, b"the attached file"));
        });
        drop(client);
        let mut buf = [0u8; 1];
        prop_assert_eq!(server.recv(&mut buf).unwrap(), None);
    }
}
