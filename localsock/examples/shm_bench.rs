//! Benchmark of the shared-memory data path (`ShmStream`, feature `shm`) against the raw
//! socket (`LocalStream`, which runs at the speed of the raw `send`/`recv` calls), in the same
//! run, alternating, medians over rounds. Client and server are two processes: this one and a
//! copy of it started as the server.
//!
//! ```text
//! cargo run --release -p localsock --features shm --example shm_bench            # 7 rounds
//! cargo run --release -p localsock --features shm --example shm_bench -- quick   # 3 rounds, less data
//! ```
//!
//! Scenarios, each with the client and the server pinned to the same CPU and to different CPUs
//! (when the machine has two):
//! - `lat 64 B`: 64-byte ping-pong, median of the individual round trips, µs;
//! - `64 KiB`: 256 MiB streamed in 64 KiB writes, GiB/s from the first byte to the ack;
//! - `1 MiB`: the same in 1 MiB writes;
//! - `idle`: the server's CPU time while its shared-memory connection is idle for 2 s after the
//!   spin window, from `/proc/PID/stat` (ticks) and `/proc/PID/schedstat` (ns).
//!
//! Environment: `SHM_BENCH_CAPACITY` (ring bytes per direction, default 1 MiB),
//! `SHM_BENCH_SPIN_US` (default 50).

#[cfg(target_os = "linux")]
fn main() -> std::io::Result<()> {
    bench::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("shm_bench: the shared-memory data path is Linux-only for now");
}

#[cfg(target_os = "linux")]
mod bench {
    use std::io::{self, BufRead, BufReader, Read, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use localsock::{LocalListener, LocalStream, Name, ShmOptions, ShmStream};
    use rustix::thread::{sched_setaffinity, CpuSet};

    fn options() -> ShmOptions {
        let mut o = ShmOptions::new();
        if let Ok(c) = std::env::var("SHM_BENCH_CAPACITY") {
            o.capacity(c.parse().expect("SHM_BENCH_CAPACITY"));
        }
        if let Ok(s) = std::env::var("SHM_BENCH_SPIN_US") {
            o.spin(Duration::from_micros(s.parse().expect("SHM_BENCH_SPIN_US")));
        }
        o
    }

    fn pin(cpu: usize) {
        let mut set = CpuSet::new();
        set.set(cpu);
        sched_setaffinity(None, &set).expect("sched_setaffinity");
    }

    fn cpus() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Both ends: a socket, or a socket upgraded to shared memory.
    enum Conn {
        Raw(LocalStream),
        Shm(ShmStream),
    }

    impl Read for Conn {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self {
                Conn::Raw(s) => s.read(buf),
                Conn::Shm(s) => s.read(buf),
            }
        }
    }

    impl Write for Conn {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            match self {
                Conn::Raw(s) => s.write(buf),
                Conn::Shm(s) => s.write(buf),
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    // ---- server ----

    fn serve(path: &Path, cpu: usize) -> io::Result<()> {
        pin(cpu);
        let listener = LocalListener::bind(&Name::path(path)?)?;
        println!("ready");
        io::stdout().flush()?;
        for stream in listener.incoming() {
            let mut stream = stream?;
            let mut head = [0u8; 2];
            if stream.read_exact(&mut head).is_err() {
                continue;
            }
            let mut conn = if head[0] == b'S' {
                Conn::Shm(options().answer(stream)?)
            } else {
                Conn::Raw(stream)
            };
            let _ = match head[1] {
                b'L' => echo(&mut conn),
                b'T' => sink(&mut conn),
                b'Q' => return Ok(()),
                _ => Ok(()),
            };
        }
        Ok(())
    }

    fn echo(conn: &mut Conn) -> io::Result<()> {
        let mut buf = [0u8; 64];
        loop {
            if let Err(e) = conn.read_exact(&mut buf) {
                return if e.kind() == io::ErrorKind::UnexpectedEof {
                    Ok(())
                } else {
                    Err(e)
                };
            }
            conn.write_all(&buf)?;
        }
    }

    fn sink(conn: &mut Conn) -> io::Result<()> {
        let mut total = [0u8; 8];
        conn.read_exact(&mut total)?;
        let total = u64::from_le_bytes(total);
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        while got < total {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        conn.write_all(&[1])
    }

    // ---- client ----

    struct Server {
        child: Child,
        path: PathBuf,
    }

    impl Server {
        fn start(dir: &Path, cpu: usize) -> io::Result<Server> {
            let path = dir.join(format!("bench-{cpu}.sock"));
            let mut child = Command::new(std::env::current_exe()?)
                .args(["server", path.to_str().unwrap(), &cpu.to_string()])
                .stdout(Stdio::piped())
                .spawn()?;
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
            assert_eq!(line.trim(), "ready");
            Ok(Server { child, path })
        }

        fn connect(&self, shm: bool, scenario: u8) -> io::Result<Conn> {
            let mut stream = LocalStream::connect(&Name::path(&self.path)?)?;
            stream.write_all(&[if shm { b'S' } else { b'R' }, scenario])?;
            if shm {
                let s = options().offer(stream)?;
                assert!(s.is_shared_memory());
                Ok(Conn::Shm(s))
            } else {
                Ok(Conn::Raw(stream))
            }
        }

        /// CPU time of the server process: (ticks from /proc/PID/stat, ns from schedstat).
        fn cpu_time(&self) -> (u64, u64) {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            // After the ")": state is field 3, utime 14, stime 15 (1-based over the whole line).
            let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
            let sched =
                std::fs::read_to_string(format!("/proc/{}/schedstat", self.child.id())).unwrap();
            let ns = sched.split_whitespace().next().unwrap().parse().unwrap();
            (ticks, ns)
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            if let Ok(mut s) = LocalStream::connect(&Name::path(&self.path).unwrap()) {
                let _ = s.write_all(b"RQ");
            }
            let _ = self.child.wait();
        }
    }

    fn latency(server: &Server, shm: bool, n: usize) -> io::Result<f64> {
        let mut conn = server.connect(shm, b'L')?;
        let msg = [7u8; 64];
        let mut buf = [0u8; 64];
        for _ in 0..n / 10 {
            conn.write_all(&msg)?;
            conn.read_exact(&mut buf)?;
        }
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            conn.write_all(&msg)?;
            conn.read_exact(&mut buf)?;
            times.push(t.elapsed());
        }
        times.sort();
        Ok(times[n / 2].as_secs_f64() * 1e6)
    }

    fn throughput(server: &Server, shm: bool, total: u64, chunk: usize) -> io::Result<f64> {
        let mut conn = server.connect(shm, b'T')?;
        let buf = vec![0x5au8; chunk];
        conn.write_all(&total.to_le_bytes())?;
        let t = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            let n = chunk.min((total - sent) as usize);
            conn.write_all(&buf[..n])?;
            sent += n as u64;
        }
        let mut ack = [0u8; 1];
        conn.read_exact(&mut ack)?;
        Ok(total as f64 / t.elapsed().as_secs_f64() / (1u64 << 30) as f64)
    }

    /// The server's CPU use while an open shared-memory connection is idle, percent.
    fn idle(server: &Server) -> io::Result<(f64, u64)> {
        let mut conn = server.connect(true, b'L')?;
        let mut buf = [0u8; 64];
        conn.write_all(&buf.clone())?;
        conn.read_exact(&mut buf)?;
        std::thread::sleep(Duration::from_millis(100)); // past the spin window
        let (t0, ns0) = server.cpu_time();
        std::thread::sleep(Duration::from_secs(2));
        let (t1, ns1) = server.cpu_time();
        drop(conn);
        Ok(((ns1 - ns0) as f64 / 2e9 * 100.0, t1 - t0))
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    }

    pub(super) fn main() -> io::Result<()> {
        let args: Vec<String> = std::env::args().collect();
        if args.get(1).map(String::as_str) == Some("server") {
            return serve(Path::new(&args[2]), args[3].parse().unwrap());
        }
        let quick = args.get(1).map(String::as_str) == Some("quick");
        let rounds = if quick { 3 } else { 7 };
        let lat_n = if quick { 5_000 } else { 20_000 };
        let total: u64 = if quick { 64 << 20 } else { 256 << 20 };
        let dir = tempfile::tempdir()?;
        let o = options();
        let ncpu = cpus();
        println!("shm_bench: {rounds} rounds alternated, medians; {o:?}; {ncpu} CPUs");
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!("load average at start: {}", load.trim());

        pin(0);
        let mut placements = vec![("same CPU", 0usize)];
        if ncpu > 1 {
            placements.push(("different CPUs", 1));
        }
        println!();
        println!("| placement | scenario | raw socket | shm | shm/raw |");
        println!("|---|---|---|---|---|");
        for (label, cpu) in placements {
            let server = Server::start(dir.path(), cpu)?;
            let mut results: Vec<(&str, &str, Vec<f64>, Vec<f64>)> = vec![
                ("lat 64 B (µs)", "lat", vec![], vec![]),
                ("64 KiB writes (GiB/s)", "64k", vec![], vec![]),
                ("1 MiB writes (GiB/s)", "1m", vec![], vec![]),
            ];
            for _ in 0..rounds {
                for shm in [false, true] {
                    for r in results.iter_mut() {
                        let v = match r.1 {
                            "lat" => latency(&server, shm, lat_n)?,
                            "64k" => throughput(&server, shm, total, 64 << 10)?,
                            _ => throughput(&server, shm, total, 1 << 20)?,
                        };
                        if shm {
                            r.3.push(v)
                        } else {
                            r.2.push(v)
                        }
                    }
                }
            }
            for (name, _, raw, shm) in results {
                let (raw, shm) = (median(raw), median(shm));
                println!(
                    "| {label} | {name} | {raw:.2} | {shm:.2} | {:.2}x |",
                    shm / raw
                );
            }
            let (pct, ticks) = idle(&server)?;
            println!("| {label} | idle server CPU over 2 s | | {pct:.3} % ({ticks} ticks) | |");
        }
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!("\nload average at end: {}", load.trim());
        Ok(())
    }
}
