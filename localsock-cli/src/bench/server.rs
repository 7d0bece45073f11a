//! The bench server process: the client's handle on it ([`Server`]) and the hidden
//! `bench-server` subcommand that runs in it ([`serve`]).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;

use localsock::{LocalListener, Name};

use super::workload::{with_stream, Client, Endpoint};
use super::{HEADER, SINK};
use crate::cli::{BenchServerArgs, Imp};
use crate::pin;

/// A bench server process; killed and its socket file removed on drop.
pub(super) struct Server {
    child: Child,
    _stdin: Option<ChildStdin>,
    path: Option<PathBuf>,
}

impl Server {
    /// Starts a server of `imp` on `name`, pinned to `cpu`, reading into a buffer of `buffer`
    /// bytes.
    pub(super) fn start(
        imp: Imp,
        name: String,
        cpu: Option<usize>,
        buffer: usize,
    ) -> io::Result<Server> {
        let exe = std::env::current_exe()
            .map_err(|e| io::Error::new(e.kind(), format!("bench: finding this program: {e}")))?;
        let mut command = Command::new(exe);
        command
            .arg("bench-server")
            .arg("--imp")
            .arg(imp.as_str())
            .arg("--name")
            .arg(&name)
            .arg("--buffer")
            .arg(buffer.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(cpu) = cpu {
            command.arg("--cpu").arg(cpu.to_string());
        }
        let mut child = command.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("bench: starting the server process: {e}"))
        })?;
        let stdin = child.stdin.take();
        let path = match imp {
            Imp::Localsock | Imp::Shm => Name::new(&name)
                .ok()
                .and_then(|n| n.fs_path().map(PathBuf::from)),
            Imp::Raw => Some(PathBuf::from(&name)),
        };
        let mut server = Server {
            child,
            _stdin: stdin,
            path,
        };
        let mut line = String::new();
        if let Some(out) = server.child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        if line.trim() != "ready" {
            return Err(io::Error::other(format!(
                "bench: the {} server process did not start (see the message above)",
                imp.as_str()
            )));
        }
        Ok(server)
    }

    /// The server process's id.
    #[cfg_attr(not(all(feature = "shm", target_os = "linux")), allow(dead_code))]
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's open descriptors (Linux), counted while one benchmark connection is open
    /// and answered, so that the server has finished with every earlier one (it serves one at
    /// a time): the same state before and after, whatever the timing.
    pub(super) fn fd_count(&self, endpoint: &Endpoint) -> io::Result<Option<u64>> {
        let client = endpoint.connect()?;
        with_stream!(client, s => {
            let mut byte = [b'f'];
            s.write_all(&byte)?;
            s.read_exact(&mut byte)?;
            Ok(count_fds(self.child.id()))
        })
    }
}

#[cfg(target_os = "linux")]
fn count_fds(pid: u32) -> Option<u64> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(entries.count() as u64)
}

#[cfg(not(target_os = "linux"))]
fn count_fds(_pid: u32) -> Option<u64> {
    None
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The hidden `bench-server` subcommand: serve connections one at a time until stdin closes.
pub(crate) fn serve(args: BenchServerArgs) -> io::Result<()> {
    if let Some(cpu) = args.cpu {
        pin::pin_to(cpu)?;
    }
    // Exit when the parent goes away (its end of our stdin closes), even if it was killed.
    thread::Builder::new()
        .name("parent-watch".into())
        .stack_size(64 * 1024)
        .spawn(|| {
            let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
            std::process::exit(0);
        })?;
    let mut buf = vec![0u8; args.buffer.max(HEADER)];
    match args.imp {
        Imp::Localsock => {
            let name = Name::new(&args.name)?;
            let listener = LocalListener::bind(&name)?;
            ready()?;
            loop {
                let stream = listener.accept()?;
                serve_one(stream, &mut buf)?;
            }
        }
        Imp::Raw => {
            remove_stale_socket(std::path::Path::new(&args.name))?;
            let listener = UnixListener::bind(&args.name)
                .map_err(|e| io::Error::new(e.kind(), format!("bind {}: {e}", args.name)))?;
            ready()?;
            loop {
                let (stream, _) = listener.accept()?;
                serve_one(stream, &mut buf)?;
            }
        }
        Imp::Shm => serve_shm(&args.name, &mut buf),
    }
}

/// `--imp shm`: every accepted connection answers the client's shared-memory offer.
#[cfg(all(feature = "shm", target_os = "linux"))]
fn serve_shm(name: &str, buf: &mut [u8]) -> io::Result<()> {
    let listener = LocalListener::bind(&Name::new(name)?)?;
    ready()?;
    loop {
        let stream = localsock::ShmOptions::new().answer(listener.accept()?)?;
        serve_one(stream, buf)?;
    }
}

#[cfg(not(all(feature = "shm", target_os = "linux")))]
fn serve_shm(_name: &str, _buf: &mut [u8]) -> io::Result<()> {
    Err(super::shm_unsupported())
}

/// Removes a socket file left at `path` by an earlier run; anything that is not a socket is
/// refused, never deleted (`bench-server --name` must not become `rm`).
fn remove_stale_socket(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; refusing to remove it",
                path.display()
            ),
        )),
    }
}

fn ready() -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(b"ready\n")?;
    out.flush()
}

/// Echo until EOF, or, if the first byte is [`SINK`], read a byte count, discard that many
/// bytes and answer the count.
fn serve_one<S: Read + Write>(mut s: S, buf: &mut [u8]) -> io::Result<()> {
    let result = (|| -> io::Result<()> {
        let mut have = 0;
        loop {
            let n = s.read(&mut buf[have..])?;
            if n == 0 {
                return Ok(());
            }
            have += n;
            if buf[0] != SINK {
                s.write_all(&buf[..have])?;
                break;
            }
            if have >= HEADER {
                break;
            }
        }
        if buf[0] != SINK {
            loop {
                let n = s.read(buf)?;
                if n == 0 {
                    return Ok(());
                }
                s.write_all(&buf[..n])?;
            }
        }
        let mut count = [0u8; 8];
        count.copy_from_slice(&buf[1..HEADER]);
        let total = u64::from_le_bytes(count);
        let mut got = (have - HEADER) as u64;
        while got < total {
            let n = s.read(buf)?;
            if n == 0 {
                return Ok(());
            }
            got += n as u64;
        }
        s.write_all(&total.to_le_bytes())
    })();
    match result {
        // A client that went away mid-way is the client's business.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}
