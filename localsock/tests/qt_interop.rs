//! Interoperability with real Qt peers: `QLocalServer` and `QLocalSocket` (Qt 6, Debian's
//! `qt6-base-dev`) on the other end of localsock (issue 6).
//!
//! The Qt side is `interop/qt/qtpeer.cpp`, one program with many modes, built by
//! `interop/qt/build.sh`. Run everything with `bash ci/qt.sh` (installs Qt, builds the peer,
//! runs these tests), or by hand:
//!
//! ```text
//! bash interop/qt/build.sh /tmp/qt-peers
//! LOCALSOCK_QT_PEERS=/tmp/qt-peers cargo test -p localsock --test qt_interop
//! ```
//!
//! Linux only (abstract names, `SO_PEERCRED`, uid switching). Every test is `#[ignore]`d, so a
//! plain `cargo test` lists them as ignored rather than passing them unchecked; run with
//! `--ignored` they need `LOCALSOCK_QT_PEERS` (a missing or unset peer directory is a failure).
//! `ci/qt.sh` runs them all and fails unless every one of them ran and passed.
//! The CLI cases run `$LOCALSOCK_CLI`, else `target/<profile>/localsock`. Each test uses unique names (socket files in a fresh temporary
//! directory, or unique short names in Qt's temp directory), has a watchdog, and kills its Qt
//! processes when it fails.

#[cfg(target_os = "linux")]
mod common;

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::VecDeque;
    use std::ffi::OsStr;
    use std::io::{self, ErrorKind, Read, Write};
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex, OnceLock};
    use std::thread;
    use std::time::{Duration, Instant};

    use localsock::{Access, ListenerOptions, LocalListener, LocalStream, Name};

    /// The directory holding the built Qt peers (`qtpeer`).
    const ENV: &str = "LOCALSOCK_QT_PEERS";
    /// Bounds every single read, write, accept and wait for a peer's line.
    const IO_TIMEOUT: Duration = Duration::from_secs(20);
    /// `QLocalSocket::LocalSocketError` values.
    const QT_CONNECTION_REFUSED: i32 = 0;
    const QT_PEER_CLOSED: i32 = 1;
    const QT_SERVER_NOT_FOUND: i32 = 2;
    const QT_SOCKET_ACCESS: i32 = 3;
    /// `QAbstractSocket::AddressInUseError`, what `QLocalServer::serverError()` reports.
    const QT_ADDRESS_IN_USE: i32 = 8;
    const MIB: u64 = 1024 * 1024;

    // -----------------------------------------------------------------------------------------
    // Finding the peers

    /// The `qtpeer` binary.
    ///
    /// # Panics
    ///
    /// When `LOCALSOCK_QT_PEERS` is unset or does not hold a runnable `qtpeer`: the tests were
    /// asked to run (`--ignored`), so they fail rather than pass without checking anything.
    fn qtpeer() -> PathBuf {
        static PEER: OnceLock<PathBuf> = OnceLock::new();
        PEER.get_or_init(|| {
            let Some(dir) = std::env::var_os(ENV) else {
                panic!(
                    "{ENV} is not set, so the Qt interop tests cannot run; \
                     run `bash ci/qt.sh` (installs Qt 6, builds interop/qt, runs them)"
                );
            };
            let peer = Path::new(&dir).join("qtpeer");
            let out = Command::new(&peer)
                .arg("version")
                .output()
                .unwrap_or_else(|e| {
                    panic!(
                        "{ENV}={} but its qtpeer cannot be run ({e}); build it with \
                     `bash interop/qt/build.sh {}` or run `bash ci/qt.sh`",
                        Path::new(&dir).display(),
                        Path::new(&dir).display()
                    )
                });
            let version = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && version.starts_with("QT "),
                "{} version: {:?} {version}",
                peer.display(),
                out.status
            );
            peer
        })
        .clone()
    }

    /// Whether the peer was built with `AbstractNamespaceOption` (Qt >= 6.2).
    fn qt_has_abstract(peer: &Path) -> bool {
        let out = Command::new(peer).arg("version").output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("ABSTRACT 1")
    }

    /// Starts a test: the peer and the test's watchdog.
    macro_rules! qt_test {
        ($name:expr, $secs:expr) => {
            (qtpeer(), watchdog($name, $secs))
        };
    }

    // -----------------------------------------------------------------------------------------
    // Watchdog and child processes

    /// Every live Qt peer, so a watchdog can kill them before it ends the test binary.
    fn children() -> &'static Mutex<Vec<Arc<Mutex<Child>>>> {
        static CHILDREN: OnceLock<Mutex<Vec<Arc<Mutex<Child>>>>> = OnceLock::new();
        CHILDREN.get_or_init(Default::default)
    }

    struct Watchdog(Option<mpsc::Sender<()>>);

    /// Ends the whole test binary (after killing every Qt peer) if the test is still running
    /// after `secs`: a hang fails in seconds, not at CI's limit.
    fn watchdog(test: &'static str, secs: u64) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs))
            {
                let _ = writeln!(
                    io::stderr(),
                    "WATCHDOG: qt_interop test `{test}` still running after {secs} s: \
                     killing the Qt peers and aborting"
                );
                for child in children().lock().unwrap().iter() {
                    let _ = child.lock().unwrap().kill();
                }
                std::process::exit(99);
            }
        });
        Watchdog(Some(tx))
    }

    impl Drop for Watchdog {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }

    /// A running `qtpeer`: its stdout lines arrive on a channel, its stderr is kept for error
    /// messages, and it is killed when dropped (so a failing test leaves no process behind).
    struct Peer {
        what: String,
        child: Arc<Mutex<Child>>,
        lines: mpsc::Receiver<String>,
        transcript: Vec<String>,
        pending: VecDeque<String>,
        stderr: Arc<Mutex<String>>,
        /// The child's stdin, when it was started with [`Peer::start`] and `stdin` set.
        stdin: Option<std::process::ChildStdin>,
    }

    impl Peer {
        fn spawn(peer: &Path, args: &[&str]) -> Peer {
            Peer::spawn_command(Command::new(peer), args)
        }

        /// [`Peer::spawn`] for a server role: returns once the peer says `LISTENING`.
        fn spawn_listening(peer: &Path, args: &[&str]) -> Peer {
            let mut qt = Peer::spawn(peer, args);
            qt.expect("LISTENING");
            qt
        }

        fn spawn_command(mut cmd: Command, args: &[&str]) -> Peer {
            cmd.args(args).args(["--timeout", "90"]);
            Peer::start(cmd, format!("qtpeer {}", args.join(" ")), false)
        }

        /// Starts any program the same way: stdout lines collected, stderr kept, killed when
        /// dropped; stdin piped (in `self.stdin`) or null.
        fn start(mut cmd: Command, what: String, stdin: bool) -> Peer {
            cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
            let stdin = child.stdin.take();
            let stdout = child.stdout.take().unwrap();
            let mut stderr_pipe = child.stderr.take().unwrap();
            let (tx, lines) = mpsc::channel();
            thread::spawn(move || {
                let mut reader = io::BufReader::new(stdout);
                let mut line = String::new();
                while io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) > 0 {
                    if tx.send(line.trim_end().to_owned()).is_err() {
                        break;
                    }
                    line.clear();
                }
            });
            let stderr = Arc::new(Mutex::new(String::new()));
            let sink = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut text = String::new();
                let _ = stderr_pipe.read_to_string(&mut text);
                sink.lock().unwrap().push_str(&text);
            });
            let child = Arc::new(Mutex::new(child));
            children().lock().unwrap().push(Arc::clone(&child));
            Peer {
                what,
                child,
                lines,
                transcript: Vec::new(),
                pending: VecDeque::new(),
                stderr,
                stdin,
            }
        }

        fn describe(&self) -> String {
            format!(
                "{}\n  stdout so far: {:?}\n  stderr: {:?}",
                self.what,
                self.transcript,
                self.stderr.lock().unwrap()
            )
        }

        /// The next stdout line, or `None` once the peer closed stdout (exited).
        fn next_line(&mut self) -> Option<String> {
            if let Some(line) = self.pending.pop_front() {
                return Some(line);
            }
            match self.lines.recv_timeout(IO_TIMEOUT) {
                Ok(line) => {
                    self.transcript.push(line.clone());
                    Some(line)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no output for {IO_TIMEOUT:?} from {}", self.describe())
                }
            }
        }

        /// Waits for the next line that starts with `word` and returns the rest of it. Other
        /// lines (progress) are skipped; a `FAIL` line or an early exit fails the test.
        fn expect(&mut self, word: &str) -> String {
            loop {
                let Some(line) = self.next_line() else {
                    panic!(
                        "expected `{word} ...`, but the peer exited: {}",
                        self.describe()
                    );
                };
                if line.starts_with("FAIL") {
                    panic!(
                        "expected `{word} ...`, got `{line}` from {}",
                        self.describe()
                    );
                }
                if let Some(rest) = line.strip_prefix(word) {
                    if rest.is_empty() || rest.starts_with(' ') {
                        return rest.trim_start().to_owned();
                    }
                }
            }
        }

        /// Like [`Peer::expect`], split into fields.
        fn expect_fields(&mut self, word: &str) -> Vec<String> {
            self.expect(word)
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        }

        /// Expects `DISCONNECTED` with `QLocalSocket::PeerClosedError` first: the peer saw
        /// our end hang up.
        fn expect_closed_by_us(&mut self) {
            let fields = self.expect_fields("DISCONNECTED");
            assert_eq!(fields[0], QT_PEER_CLOSED.to_string(), "{fields:?}");
        }

        /// [`Peer::expect_closed_by_us`], and the peer reports having received `bytes` bytes
        /// (the whole `DISCONNECTED` line is checked).
        fn expect_closed_by_us_after(&mut self, bytes: impl std::fmt::Display) {
            assert_eq!(
                self.expect_fields("DISCONNECTED"),
                [QT_PEER_CLOSED.to_string(), bytes.to_string()]
            );
        }

        /// Waits for the peer to exit by itself.
        fn wait(&mut self) -> ExitStatus {
            let deadline = Instant::now() + IO_TIMEOUT;
            loop {
                if let Some(status) = self.child.lock().unwrap().try_wait().unwrap() {
                    // Collect the remaining lines so `describe` shows them.
                    while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                        self.transcript.push(line.clone());
                        self.pending.push_back(line);
                    }
                    return status;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not exit within {IO_TIMEOUT:?}",
                    self.describe()
                );
                thread::sleep(Duration::from_millis(5));
            }
        }

        /// Waits for a successful exit.
        fn finish(&mut self) {
            let status = self.wait();
            assert!(status.success(), "{status}: {}", self.describe());
        }

        fn pid(&self) -> u32 {
            self.child.lock().unwrap().id()
        }

        /// SIGKILL, then reap.
        fn kill(&mut self) {
            let mut child = self.child.lock().unwrap();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    impl Drop for Peer {
        fn drop(&mut self) {
            self.kill();
            children()
                .lock()
                .unwrap()
                .retain(|c| !Arc::ptr_eq(c, &self.child));
        }
    }

    // -----------------------------------------------------------------------------------------
    // Names, data, helpers

    /// A name no other test or run uses: `lsqt-<pid>-<n>-<tag>`.
    fn unique(tag: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!(
            "lsqt-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A short name in Qt's temp directory, removed (if still there) when dropped: a Qt server
    /// killed with SIGKILL leaves its socket file behind.
    struct QtShortName {
        name: String,
        path: PathBuf,
    }

    impl QtShortName {
        fn new(tag: &str) -> QtShortName {
            let name = unique(tag);
            let path = Name::qt(&name).unwrap().fs_path().unwrap().to_path_buf();
            QtShortName { name, path }
        }
    }

    impl Drop for QtShortName {
        fn drop(&mut self) {
            if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
                if meta.file_type().is_socket() {
                    let _ = std::fs::remove_file(&self.path);
                }
            }
        }
    }

    /// Percent-encodes as qtpeer does: bytes <= 0x20, >= 0x7f and `%`.
    fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for &b in bytes {
            if b <= 0x20 || b >= 0x7f || b == b'%' {
                out.push_str(&format!("%{b:02X}"));
            } else {
                out.push(b as char);
            }
        }
        out
    }

    fn path_str(path: &Path) -> &str {
        path.to_str().expect("a UTF-8 temp path")
    }

    /// A fresh temporary directory for socket files.
    fn tempdir() -> tempfile::TempDir {
        tempfile::Builder::new().prefix("lsqt").tempdir().unwrap()
    }

    /// The byte stream qtpeer generates: xorshift64, each state as 8 little-endian bytes.
    struct Pattern {
        state: u64,
        word: [u8; 8],
        used: usize,
    }

    impl Pattern {
        fn new(seed: u64) -> Pattern {
            Pattern {
                state: if seed == 0 {
                    0x9E37_79B9_7F4A_7C15
                } else {
                    seed
                },
                word: [0; 8],
                used: 8,
            }
        }

        fn next64(&mut self) -> u64 {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            self.state
        }

        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                if self.used == 8 {
                    self.word = self.next64().to_le_bytes();
                    self.used = 0;
                }
                *b = self.word[self.used];
                self.used += 1;
            }
        }
    }

    /// FNV-1a, 64 bits: the checksum both sides print.
    struct Fnv(u64);

    impl Fnv {
        fn new() -> Fnv {
            Fnv(0xcbf2_9ce4_8422_2325)
        }

        fn add(&mut self, data: &[u8]) {
            for &b in data {
                self.0 ^= u64::from(b);
                self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }

        fn hex(&self) -> String {
            format!("{:016x}", self.0)
        }
    }

    /// The checksum of the first `size` bytes of the pattern for `seed`.
    fn pattern_checksum(seed: u64, size: u64) -> String {
        let mut pattern = Pattern::new(seed);
        let mut fnv = Fnv::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            pattern.fill(&mut buf[..n]);
            fnv.add(&buf[..n]);
            left -= n as u64;
        }
        fnv.hex()
    }

    fn with_timeouts(stream: LocalStream) -> LocalStream {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    }

    fn connect(name: &Name) -> LocalStream {
        let stream = LocalStream::connect(name).unwrap_or_else(|e| panic!("connect: {e}"));
        with_timeouts(stream)
    }

    /// Accepts one client within `IO_TIMEOUT`.
    fn accept(listener: &LocalListener) -> io::Result<LocalStream> {
        listener.set_nonblocking(true)?;
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match listener.accept() {
                Ok(stream) => return Ok(with_timeouts(stream)),
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(2));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return Err(io::Error::new(ErrorKind::TimedOut, "no client came"))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Echoes everything from one client until it hangs up; returns the byte count.
    fn echo_until_eof(stream: &mut LocalStream) -> io::Result<u64> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0;
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            stream.write_all(&buf[..n])?;
            total += n as u64;
        }
    }

    /// A localsock echo server for `clients` clients, one after the other, each echoed until
    /// it hangs up (EOF). Returns the bytes echoed per client.
    fn spawn_echo_server(
        listener: LocalListener,
        clients: usize,
    ) -> thread::JoinHandle<io::Result<Vec<u64>>> {
        thread::spawn(move || {
            let mut counts = Vec::new();
            for _ in 0..clients {
                let mut stream = accept(&listener)?;
                counts.push(echo_until_eof(&mut stream)?);
            }
            Ok(counts)
        })
    }

    /// Serves one Qt echo client (started by `start`, after the server) with
    /// [`spawn_echo_server`]: the client must say `ECHO-OK` and exit cleanly, and the server
    /// must end without an error.
    fn echo_to_one_qt_client(listener: LocalListener, start: impl FnOnce() -> Peer) {
        let server = spawn_echo_server(listener, 1);
        let mut qt = start();
        qt.expect("ECHO-OK");
        qt.finish();
        server.join().unwrap().unwrap();
    }

    /// Sends `count` messages of varied sizes and checks each echo.
    fn echo_round_trips(stream: &mut LocalStream, count: usize) {
        let mut pattern = Pattern::new(7);
        for i in 0..count {
            let mut message = vec![0u8; 1 + (i * 37) % 3000];
            pattern.fill(&mut message);
            stream.write_all(&message).unwrap();
            let mut back = vec![0u8; message.len()];
            stream.read_exact(&mut back).unwrap();
            assert_eq!(back, message, "echo {i}");
        }
    }

    /// Reads until EOF (or an error), checking every byte against the rest of `expected`;
    /// returns the byte count, the checksum of what was read and how the stream ended.
    fn read_pattern_to_end(
        stream: &mut LocalStream,
        mut expected: Pattern,
    ) -> (u64, String, io::Result<()>) {
        let mut fnv = Fnv::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut want = vec![0u8; buf.len()];
        let mut total = 0u64;
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return (total, fnv.hex(), Ok(())),
                Ok(n) => {
                    expected.fill(&mut want[..n]);
                    assert!(
                        buf[..n] == want[..n],
                        "the bytes at offset {total}..{} differ from the pattern",
                        total + n as u64
                    );
                    fnv.add(&buf[..n]);
                    total += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return (total, fnv.hex(), Err(e)),
            }
        }
    }

    /// Writes `size` pattern bytes; returns the checksum.
    fn write_pattern(stream: &mut LocalStream, seed: u64, size: u64) -> io::Result<String> {
        let mut pattern = Pattern::new(seed);
        let mut fnv = Fnv::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            pattern.fill(&mut buf[..n]);
            fnv.add(&buf[..n]);
            stream.write_all(&buf[..n])?;
            left -= n as u64;
        }
        Ok(fnv.hex())
    }

    /// Asserts that the stream's peer hung up: the next read is EOF.
    fn assert_eof(stream: &mut LocalStream) {
        let mut byte = [0u8; 1];
        let n = stream.read(&mut byte).expect("read after the peer hung up");
        assert_eq!(n, 0, "expected EOF, got a byte");
    }

    // -----------------------------------------------------------------------------------------
    // Framing: QDataStream (Qt_5_12) as in tst_qlocalsocket's simpleCommandProtocol1. A
    // QByteArray is a big-endian u32 length and the bytes; a qint64 is 8 big-endian bytes.

    fn frame_request(request_size: usize, response_size: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + request_size + 8);
        out.extend_from_slice(&(request_size as u32).to_be_bytes());
        out.resize(4 + request_size, b'a');
        out.extend_from_slice(&response_size.to_be_bytes());
        out
    }

    fn read_byte_array(stream: &mut LocalStream) -> io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len);
        assert_ne!(len, u32::MAX, "a null QByteArray");
        let mut data = vec![0u8; len as usize];
        stream.read_exact(&mut data)?;
        Ok(data)
    }

    /// The server side of the protocol: `count` requests answered; returns how the client
    /// left (the read after the last frame must be EOF).
    fn serve_frames(stream: &mut LocalStream, count: usize) -> io::Result<()> {
        for i in 0..count {
            let command = read_byte_array(stream)?;
            assert!(
                !command.is_empty() && command.iter().all(|&b| b == b'a'),
                "frame {i}: a request of {} bytes that is not all 'a'",
                command.len()
            );
            let mut size = [0u8; 8];
            stream.read_exact(&mut size)?;
            let size = i64::from_be_bytes(size);
            assert!((1..=1024).contains(&size), "frame {i}: size {size}");
            let mut reply = (size as u32).to_be_bytes().to_vec();
            reply.resize(4 + size as usize, b'b');
            stream.write_all(&reply)?;
        }
        assert_eof(stream);
        Ok(())
    }

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
            "linux::child_name_qt_probe",
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
        // Other users must reach the socket: open the directory, and run a copy of the peer
        // from it (the build directory may sit under a private home).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let peer_copy = dir.path().join("qtpeer");
        std::fs::copy(&peer, &peer_copy).unwrap();
        std::fs::set_permissions(&peer_copy, std::fs::Permissions::from_mode(0o755)).unwrap();
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
            let mut cmd = Command::new(&peer_copy);
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
            let mut cmd = Command::new(&peer_copy);
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
}
