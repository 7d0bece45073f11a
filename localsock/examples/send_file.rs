//! Sends an open file to another process: connects to the message listener at NAME and sends
//! one message, FILE's name as text, with FILE opened read-only attached. The receiver reads
//! the file through the handle it gets, whatever its own rights to the path (see
//! `recv_file.rs`).
//!
//! ```text
//! cargo run --example recv_file -- files > copy.txt &
//! cargo run --example send_file -- files Cargo.toml
//! ```
//!
//! The same code on every platform: an `SCM_RIGHTS` descriptor on Unix, a handle duplicated
//! into the receiving process on Windows.

use std::fs::File;

use localsock::{MessageStream, Name};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(name), Some(path)) = (args.next(), args.next()) else {
        eprintln!("usage: send_file NAME FILE");
        std::process::exit(2);
    };
    let file = File::open(&path)?;
    let stream = MessageStream::connect(&Name::new(&name)?)?;
    stream.send_with_files(path.as_bytes(), &[&file])?;
    eprintln!("sent {path} to {name}");
    Ok(())
}
