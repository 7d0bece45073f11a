//! `localsock`: the command-line face of the localsock library (minimal for now).
use std::io::{self, Read, Write};
use std::process::ExitCode;

use localsock::{LocalListener, LocalStream, Name};

fn copy_both_ways(stream: LocalStream) -> io::Result<()> {
    let mut reader = stream.try_clone()?;
    let to_stdout = std::thread::spawn(move || -> io::Result<()> {
        let mut out = io::stdout().lock();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            out.write_all(&buf[..n])?;
            out.flush()?;
        }
    });
    io::copy(&mut io::stdin().lock(), &mut &stream)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    to_stdout.join().expect("copy thread panicked")
}

fn run(args: &[String]) -> io::Result<()> {
    match args {
        [cmd, name] if cmd == "listen" => {
            let listener = LocalListener::bind(&Name::new(name)?)?;
            copy_both_ways(listener.accept()?)
        }
        [cmd, name] if cmd == "connect" => copy_both_ways(LocalStream::connect(&Name::new(name)?)?),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: localsock listen NAME | localsock connect NAME",
        )),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("localsock: {e}");
            ExitCode::FAILURE
        }
    }
}
