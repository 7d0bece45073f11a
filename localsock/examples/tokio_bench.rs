//! Benchmark of `localsock::tokio` against raw `tokio::net::UnixStream`, in the same run, plus
//! a scale measurement. Unix only (raw tokio has no portable local socket to compare with).
//!
//! ```text
//! cargo run --release --features tokio --example tokio_bench            # everything
//! cargo run --release --features tokio --example tokio_bench -- quick   # smaller counts
//! ```
//!
//! 1. Latency: 64-byte ping-pong round trips, client and echo server tasks on one runtime
//!    (current-thread and multi-thread), raw tokio and localsock alternating, median of 11.
//! 2. Throughput: 64 KiB writes, the server reads and discards. Connect rate: connect,
//!    accept and close, one at a time.
//! 3. Scale: one async listener holding 10,000 idle connections (a task each, waiting in
//!    `read`), the clients in a child process; the listener's RSS growth per connection,
//!    for localsock and raw tokio, each measured in a fresh process.
//! 4. 1,000 active clients doing 64-byte echo round trips at once: errors counted.

#[cfg(unix)]
fn main() -> std::io::Result<()> {
    bench::main()
}

#[cfg(not(unix))]
fn main() {
    eprintln!("tokio_bench compares with tokio::net::UnixStream: Unix only");
}

#[cfg(unix)]
mod bench {
    use std::io::{self, BufRead, Write};
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use localsock::Name;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::runtime::Runtime;

    const MSG: usize = 64;
    const CHUNK: usize = 64 * 1024;

    pub(crate) fn main() -> io::Result<()> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.first().map(String::as_str) == Some("hold") {
            return hold(&args[1], args[2].parse().expect("count"));
        }
        if args.first().map(String::as_str) == Some("idle") {
            // One measurement per process, so neither inherits the other's freed heap.
            raise_fd_limit();
            let raw = args[1] == "raw";
            let count = args[2].parse().expect("count");
            let per_conn = multi_thread().block_on(idle_scale(Path::new(&args[3]), count, raw))?;
            println!("{per_conn}");
            return Ok(());
        }
        let quick = args.first().map(String::as_str) == Some("quick");
        raise_fd_limit();
        let dir = std::env::temp_dir().join(format!("localsock-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;

        let (round_trips, bytes, runs) = if quick {
            (5_000, 64 << 20, 5)
        } else {
            (20_000, 256 << 20, 11)
        };
        for (flavor, runtime) in [
            ("current-thread", current_thread()),
            ("multi-thread", multi_thread()),
        ] {
            println!("== {flavor} runtime, {runs} runs each, raw and localsock alternating");
            let (mut lat_raw, mut lat_ls) = (Vec::new(), Vec::new());
            let (mut thr_raw, mut thr_ls) = (Vec::new(), Vec::new());
            for run in 0..runs {
                // Alternate which goes first, so neither always gets the warmer caches.
                for raw_first in [run % 2 == 0, run % 2 != 0] {
                    if raw_first {
                        let path = dir.join(format!("r{run}"));
                        lat_raw.push(runtime.block_on(latency_raw(&path, round_trips))?);
                        let path = dir.join(format!("tr{run}"));
                        thr_raw.push(runtime.block_on(throughput_raw(&path, bytes))?);
                    } else {
                        let path = dir.join(format!("l{run}"));
                        lat_ls.push(runtime.block_on(latency_ls(&path, round_trips))?);
                        let path = dir.join(format!("tl{run}"));
                        thr_ls.push(runtime.block_on(throughput_ls(&path, bytes))?);
                    }
                }
            }
            let connects = round_trips / 4;
            let (mut con_raw, mut con_ls) = (Vec::new(), Vec::new());
            for run in 0..runs {
                let path = dir.join(format!("cr{run}"));
                con_raw.push(runtime.block_on(connect_rate_raw(&path, connects))?);
                let path = dir.join(format!("cl{run}"));
                con_ls.push(runtime.block_on(connect_rate_ls(&path, connects))?);
            }
            let (raw_con, ls_con) = (median(&mut con_raw), median(&mut con_ls));
            let (raw_lat, ls_lat) = (median(&mut lat_raw), median(&mut lat_ls));
            let (raw_thr, ls_thr) = (median(&mut thr_raw), median(&mut thr_ls));
            println!(
                "latency, 64-byte round trip (median of {runs} x {round_trips}): raw tokio \
                 {raw_lat:.2} us, localsock {ls_lat:.2} us: localsock/raw {:.3} \
                 (best: {:.2} / {:.2} us)",
                ls_lat / raw_lat,
                lat_raw[0],
                lat_ls[0]
            );
            println!(
                "throughput, 64 KiB writes (median of {runs} x {} MiB): raw tokio {raw_thr:.0} \
                 MiB/s, localsock {ls_thr:.0} MiB/s: raw/localsock {:.3} (best: {:.0} / {:.0})",
                bytes >> 20,
                raw_thr / ls_thr,
                thr_raw[thr_raw.len() - 1],
                thr_ls[thr_ls.len() - 1]
            );
            println!(
                "connect+accept+close (median of {runs} x {connects}): raw tokio {raw_con:.0}/s, \
                 localsock {ls_con:.0}/s: raw/localsock {:.3}",
                raw_con / ls_con
            );
        }

        let idle = if quick { 2_000 } else { 10_000 };
        for kind in ["raw", "localsock"] {
            let out = Command::new(std::env::current_exe()?)
                .args(["idle", kind, &idle.to_string()])
                .arg(dir.join(format!("idle-{kind}")))
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let per_conn: f64 = text.trim().parse().map_err(|_| {
                io::Error::other(format!(
                    "idle measurement failed: {text} {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            })?;
            println!(
                "scale: {idle} idle connections held by one {kind} listener (a task each, \
                 waiting in read): RSS growth {:.2} KiB per connection",
                per_conn / 1024.0
            );
        }
        let runtime = multi_thread();
        let (clients, errors, elapsed) =
            runtime.block_on(active_clients(&dir.join("active"), 1_000, 100))?;
        println!(
            "scale: {clients} active clients x 100 echo round trips: {errors} errors, {:.2} s",
            elapsed.as_secs_f64()
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    /// Sorts `samples` and returns the median.
    fn median(samples: &mut [f64]) -> f64 {
        samples.sort_by(|a, b| a.total_cmp(b));
        samples[samples.len() / 2]
    }

    fn current_thread() -> Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn multi_thread() -> Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    fn raise_fd_limit() {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let limit = getrlimit(Resource::Nofile);
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }

    fn ls_name(path: &Path) -> Name {
        Name::path(path).expect("socket path")
    }

    async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
        let mut buf = [0u8; CHUNK];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn sink<S: AsyncRead + Unpin>(mut stream: S) -> u64 {
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0;
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n as u64,
            }
        }
    }

    /// Microseconds per round trip.
    async fn ping_pong<S: AsyncRead + AsyncWrite + Unpin>(
        mut client: S,
        round_trips: usize,
    ) -> io::Result<f64> {
        let msg = [7u8; MSG];
        let mut reply = [0u8; MSG];
        for _ in 0..round_trips / 10 {
            client.write_all(&msg).await?;
            client.read_exact(&mut reply).await?;
        }
        let start = Instant::now();
        for _ in 0..round_trips {
            client.write_all(&msg).await?;
            client.read_exact(&mut reply).await?;
        }
        Ok(start.elapsed().as_secs_f64() * 1e6 / round_trips as f64)
    }

    /// MiB per second.
    async fn blast<S: AsyncWrite + Unpin>(mut client: S, bytes: usize) -> io::Result<Instant> {
        let chunk = vec![1u8; CHUNK];
        let start = Instant::now();
        let mut sent = 0;
        while sent < bytes {
            client.write_all(&chunk).await?;
            sent += CHUNK;
        }
        client.shutdown().await?;
        Ok(start)
    }

    async fn latency_raw(path: &Path, round_trips: usize) -> io::Result<f64> {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path)?;
        let server = tokio::spawn(async move { echo(listener.accept().await.unwrap().0).await });
        let client = tokio::net::UnixStream::connect(path).await?;
        let us = ping_pong(client, round_trips).await?;
        server.await.unwrap();
        let _ = std::fs::remove_file(path);
        Ok(us)
    }

    async fn latency_ls(path: &Path, round_trips: usize) -> io::Result<f64> {
        let name = ls_name(path);
        let listener = localsock::tokio::LocalListener::bind(&name)?;
        let server = tokio::spawn(async move { echo(listener.accept().await.unwrap()).await });
        let client = localsock::tokio::LocalStream::connect(&name).await?;
        let us = ping_pong(client, round_trips).await?;
        server.await.unwrap();
        Ok(us)
    }

    async fn throughput_raw(path: &Path, bytes: usize) -> io::Result<f64> {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path)?;
        let server = tokio::spawn(async move { sink(listener.accept().await.unwrap().0).await });
        let client = tokio::net::UnixStream::connect(path).await?;
        let start = blast(client, bytes).await?;
        let got = server.await.unwrap();
        assert_eq!(got as usize, bytes.div_ceil(CHUNK) * CHUNK);
        let _ = std::fs::remove_file(path);
        Ok(got as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64())
    }

    async fn throughput_ls(path: &Path, bytes: usize) -> io::Result<f64> {
        let name = ls_name(path);
        let listener = localsock::tokio::LocalListener::bind(&name)?;
        let server = tokio::spawn(async move { sink(listener.accept().await.unwrap()).await });
        let client = localsock::tokio::LocalStream::connect(&name).await?;
        let start = blast(client, bytes).await?;
        let got = server.await.unwrap();
        assert_eq!(got as usize, bytes.div_ceil(CHUNK) * CHUNK);
        Ok(got as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64())
    }

    /// Connections per second: connect, accept, close, one at a time.
    async fn connect_rate_raw(path: &Path, count: usize) -> io::Result<f64> {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path)?;
        let start = Instant::now();
        for _ in 0..count {
            let client = tokio::net::UnixStream::connect(path).await?;
            let (server, _) = listener.accept().await?;
            drop((client, server));
        }
        let rate = count as f64 / start.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(path);
        Ok(rate)
    }

    async fn connect_rate_ls(path: &Path, count: usize) -> io::Result<f64> {
        let name = ls_name(path);
        let listener = localsock::tokio::LocalListener::bind(&name)?;
        let start = Instant::now();
        for _ in 0..count {
            let client = localsock::tokio::LocalStream::connect(&name).await?;
            let server = listener.accept().await?;
            drop((client, server));
        }
        Ok(count as f64 / start.elapsed().as_secs_f64())
    }

    fn rss_bytes() -> f64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: f64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0.0);
        pages * 4096.0
    }

    /// RSS growth per connection of a listener holding `count` idle connections, each with a
    /// task waiting in `read`. The clients live in a child process.
    async fn idle_scale(path: &Path, count: usize, raw: bool) -> io::Result<f64> {
        enum Listener {
            Raw(tokio::net::UnixListener),
            Localsock(localsock::tokio::LocalListener),
        }
        let listener = if raw {
            Listener::Raw(tokio::net::UnixListener::bind(path)?)
        } else {
            Listener::Localsock(localsock::tokio::LocalListener::bind(&ls_name(path))?)
        };
        let before = rss_bytes();
        let mut child = Command::new(std::env::current_exe()?)
            .args(["hold", path.to_str().unwrap(), &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let open = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::with_capacity(count);
        for _ in 0..count {
            let open = Arc::clone(&open);
            tasks.push(match &listener {
                Listener::Raw(listener) => tokio::spawn(idle(listener.accept().await?.0, open)),
                Listener::Localsock(listener) => tokio::spawn(idle(listener.accept().await?, open)),
            });
        }
        let mut line = String::new();
        io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
        assert_eq!(line.trim(), "ready", "the client process failed");
        while open.load(Ordering::Relaxed) < count {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let after = rss_bytes();
        drop(child.stdin.take());
        child.wait()?;
        for task in tasks {
            task.await.unwrap();
        }
        if raw {
            let _ = std::fs::remove_file(path);
        }
        Ok((after - before) / count as f64)
    }

    /// A connection's task: waits in `read` until the peer closes.
    async fn idle<S: AsyncRead + Unpin>(mut stream: S, open: Arc<AtomicUsize>) {
        open.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 64];
        let _ = stream.read(&mut buf).await;
        open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Child process: opens `count` blocking connections and holds them until stdin closes.
    fn hold(path: &str, count: usize) -> io::Result<()> {
        raise_fd_limit();
        let name = ls_name(Path::new(path));
        let mut streams = Vec::with_capacity(count);
        for _ in 0..count {
            streams.push(
                localsock::ConnectOptions::new()
                    .timeout(Duration::from_secs(30))
                    .connect(&name)?,
            );
        }
        println!("ready");
        io::stdout().flush()?;
        let mut rest = String::new();
        let _ = io::stdin().read_line(&mut rest);
        Ok(())
    }

    /// `clients` tasks each doing `round_trips` 64-byte echo round trips at once.
    async fn active_clients(
        path: &Path,
        clients: usize,
        round_trips: usize,
    ) -> io::Result<(usize, usize, Duration)> {
        let name = ls_name(path);
        let listener = localsock::tokio::LocalListener::bind(&name)?;
        let server = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok(stream) => {
                        tokio::spawn(echo(stream));
                    }
                    Err(e) => eprintln!("accept: {e}"),
                }
            }
        });
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(clients);
        for id in 0..clients {
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                let mut stream = localsock::tokio::ConnectOptions::new()
                    .timeout(Duration::from_secs(30))
                    .connect(&name)
                    .await?;
                let mut msg = [0u8; MSG];
                msg[..8].copy_from_slice(&(id as u64).to_le_bytes());
                let mut reply = [0u8; MSG];
                for round in 0..round_trips {
                    msg[8..16].copy_from_slice(&(round as u64).to_le_bytes());
                    stream.write_all(&msg).await?;
                    stream.read_exact(&mut reply).await?;
                    if reply != msg {
                        return Err(io::Error::other("wrong bytes"));
                    }
                }
                io::Result::Ok(())
            }));
        }
        let mut errors = 0;
        for task in tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    errors += 1;
                    eprintln!("client: {e}");
                }
                Err(e) => {
                    errors += 1;
                    eprintln!("client task: {e}");
                }
            }
        }
        let elapsed = start.elapsed();
        server.abort();
        Ok((clients, errors, elapsed))
    }
}
