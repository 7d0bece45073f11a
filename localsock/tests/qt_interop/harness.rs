//! The harness of the Qt interop tests: finding and running the Qt peer (`qtpeer`), the
//! watchdog that kills the peers of a hung test, unique names, test data and the framing of
//! Qt's QDataStream. The tests themselves are in `main.rs`.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use localsock::{LocalListener, LocalStream, Name};

/// The directory holding the built Qt peers (`qtpeer`).
pub(crate) const ENV: &str = "LOCALSOCK_QT_PEERS";
/// Bounds every single read, write, accept and wait for a peer's line.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// `QLocalSocket::LocalSocketError` values.
pub(crate) const QT_CONNECTION_REFUSED: i32 = 0;
pub(crate) const QT_PEER_CLOSED: i32 = 1;
pub(crate) const QT_SERVER_NOT_FOUND: i32 = 2;
pub(crate) const QT_SOCKET_ACCESS: i32 = 3;
/// `QAbstractSocket::AddressInUseError`, what `QLocalServer::serverError()` reports.
pub(crate) const QT_ADDRESS_IN_USE: i32 = 8;
pub(crate) const MIB: u64 = 1024 * 1024;

// -----------------------------------------------------------------------------------------
// Finding the peers

/// The `qtpeer` binary.
///
/// # Panics
///
/// When `LOCALSOCK_QT_PEERS` is unset or does not hold a runnable `qtpeer`: the tests were
/// asked to run (`--ignored`), so they fail rather than pass without checking anything.
pub(crate) fn qtpeer() -> PathBuf {
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
pub(crate) fn qt_has_abstract(peer: &Path) -> bool {
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
pub(crate) fn children() -> &'static Mutex<Vec<Arc<Mutex<Child>>>> {
    static CHILDREN: OnceLock<Mutex<Vec<Arc<Mutex<Child>>>>> = OnceLock::new();
    CHILDREN.get_or_init(Default::default)
}

/// Ends the whole test binary (after killing every Qt peer) if the test is still running
/// after `secs`: a hang fails in seconds, not at CI's limit.
pub(crate) fn watchdog(test: &'static str, secs: u64) -> crate::common::Watchdog {
    crate::common::watchdog_with(test, secs, || {
        for child in children().lock().unwrap().iter() {
            let _ = child.lock().unwrap().kill();
        }
    })
}

/// A running `qtpeer`: its stdout lines arrive on a channel, its stderr is kept for error
/// messages, and it is killed when dropped (so a failing test leaves no process behind).
pub(crate) struct Peer {
    pub(crate) what: String,
    pub(crate) child: Arc<Mutex<Child>>,
    pub(crate) lines: mpsc::Receiver<String>,
    pub(crate) transcript: Vec<String>,
    pub(crate) pending: VecDeque<String>,
    pub(crate) stderr: Arc<Mutex<String>>,
    /// The child's stdin, when it was started with [`Peer::start`] and `stdin` set.
    pub(crate) stdin: Option<std::process::ChildStdin>,
}

impl Peer {
    pub(crate) fn spawn(peer: &Path, args: &[&str]) -> Peer {
        Peer::spawn_command(Command::new(peer), args)
    }

    /// [`Peer::spawn`] for a server role: returns once the peer says `LISTENING`.
    pub(crate) fn spawn_listening(peer: &Path, args: &[&str]) -> Peer {
        let mut qt = Peer::spawn(peer, args);
        qt.expect("LISTENING");
        qt
    }

    pub(crate) fn spawn_command(mut cmd: Command, args: &[&str]) -> Peer {
        cmd.args(args).args(["--timeout", "90"]);
        Peer::start(cmd, format!("qtpeer {}", args.join(" ")), false)
    }

    /// Starts any program the same way: stdout lines collected, stderr kept, killed when
    /// dropped; stdin piped (in `self.stdin`) or null.
    pub(crate) fn start(mut cmd: Command, what: String, stdin: bool) -> Peer {
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

    pub(crate) fn describe(&self) -> String {
        format!(
            "{}\n  stdout so far: {:?}\n  stderr: {:?}",
            self.what,
            self.transcript,
            self.stderr.lock().unwrap()
        )
    }

    /// The next stdout line, or `None` once the peer closed stdout (exited).
    pub(crate) fn next_line(&mut self) -> Option<String> {
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
    pub(crate) fn expect(&mut self, word: &str) -> String {
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
    pub(crate) fn expect_fields(&mut self, word: &str) -> Vec<String> {
        self.expect(word)
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Expects `DISCONNECTED` with `QLocalSocket::PeerClosedError` first: the peer saw
    /// our end hang up.
    pub(crate) fn expect_closed_by_us(&mut self) {
        let fields = self.expect_fields("DISCONNECTED");
        assert_eq!(fields[0], QT_PEER_CLOSED.to_string(), "{fields:?}");
    }

    /// [`Peer::expect_closed_by_us`], and the peer reports having received `bytes` bytes
    /// (the whole `DISCONNECTED` line is checked).
    pub(crate) fn expect_closed_by_us_after(&mut self, bytes: impl std::fmt::Display) {
        assert_eq!(
            self.expect_fields("DISCONNECTED"),
            [QT_PEER_CLOSED.to_string(), bytes.to_string()]
        );
    }

    /// Waits for the peer to exit by itself.
    pub(crate) fn wait(&mut self) -> ExitStatus {
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
    pub(crate) fn finish(&mut self) {
        let status = self.wait();
        assert!(status.success(), "{status}: {}", self.describe());
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill(&mut self) {
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
pub(crate) fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "lsqt-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A short name in Qt's temp directory, removed (if still there) when dropped: a Qt server
/// killed with SIGKILL leaves its socket file behind.
pub(crate) struct QtShortName {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
}

impl QtShortName {
    pub(crate) fn new(tag: &str) -> QtShortName {
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
pub(crate) fn encode(bytes: &[u8]) -> String {
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

pub(crate) fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// A fresh temporary directory for socket files.
pub(crate) fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("lsqt").tempdir().unwrap()
}

/// The byte stream qtpeer generates: xorshift64, each state as 8 little-endian bytes.
pub(crate) struct Pattern {
    pub(crate) state: u64,
    pub(crate) word: [u8; 8],
    pub(crate) used: usize,
}

impl Pattern {
    pub(crate) fn new(seed: u64) -> Pattern {
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

    pub(crate) fn next64(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
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
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn add(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub(crate) fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The checksum of the first `size` bytes of the pattern for `seed`.
pub(crate) fn pattern_checksum(seed: u64, size: u64) -> String {
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

pub(crate) fn with_timeouts(stream: LocalStream) -> LocalStream {
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

pub(crate) fn connect(name: &Name) -> LocalStream {
    let stream = LocalStream::connect(name).unwrap_or_else(|e| panic!("connect: {e}"));
    with_timeouts(stream)
}

/// Accepts one client within `IO_TIMEOUT`.
pub(crate) fn accept(listener: &LocalListener) -> io::Result<LocalStream> {
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
pub(crate) fn echo_until_eof(stream: &mut LocalStream) -> io::Result<u64> {
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
pub(crate) fn spawn_echo_server(
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
pub(crate) fn echo_to_one_qt_client(listener: LocalListener, start: impl FnOnce() -> Peer) {
    let server = spawn_echo_server(listener, 1);
    let mut qt = start();
    qt.expect("ECHO-OK");
    qt.finish();
    server.join().unwrap().unwrap();
}

/// Sends `count` messages of varied sizes and checks each echo.
pub(crate) fn echo_round_trips(stream: &mut LocalStream, count: usize) {
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
pub(crate) fn read_pattern_to_end(
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
pub(crate) fn write_pattern(stream: &mut LocalStream, seed: u64, size: u64) -> io::Result<String> {
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
pub(crate) fn assert_eof(stream: &mut LocalStream) {
    let mut byte = [0u8; 1];
    let n = stream.read(&mut byte).expect("read after the peer hung up");
    assert_eq!(n, 0, "expected EOF, got a byte");
}

// -----------------------------------------------------------------------------------------
// Framing: QDataStream (Qt_5_12) as in tst_qlocalsocket's simpleCommandProtocol1. A
// QByteArray is a big-endian u32 length and the bytes; a qint64 is 8 big-endian bytes.

pub(crate) fn frame_request(request_size: usize, response_size: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + request_size + 8);
    out.extend_from_slice(&(request_size as u32).to_be_bytes());
    out.resize(4 + request_size, b'a');
    out.extend_from_slice(&response_size.to_be_bytes());
    out
}

pub(crate) fn read_byte_array(stream: &mut LocalStream) -> io::Result<Vec<u8>> {
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
pub(crate) fn serve_frames(stream: &mut LocalStream, count: usize) -> io::Result<()> {
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
