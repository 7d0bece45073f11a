//! Receives an open file from another process: binds the message listener NAME, accepts one
//! connection, receives one message with one handle, prints the message's text on stderr and
//! copies the received file's contents to stdout (see `send_file.rs`).
//!
//! ```text
//! cargo run --example recv_file -- files > copy.txt &
//! cargo run --example send_file -- files Cargo.toml
//! ```

use std::fs::File;
use std::io;

use localsock::{MessageListener, Name};

fn main() -> io::Result<()> {
    let Some(name) = std::env::args().nth(1) else {
        eprintln!("usage: recv_file NAME");
        std::process::exit(2);
    };
    let listener = MessageListener::bind(&Name::new(&name)?)?;
    let stream = listener.accept()?;
    let mut text = vec![0u8; localsock::MAX_MESSAGE_LEN];
    let mut handles = Vec::new();
    let Some(len) = stream.recv_with_handles(&mut text, &mut handles, 1)? else {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the sender left without a message",
        ));
    };
    let Some(handle) = handles.pop() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the message carried no file",
        ));
    };
    eprintln!("received {}", String::from_utf8_lossy(&text[..len]));
    io::copy(&mut File::from(handle), &mut io::stdout().lock())?;
    Ok(())
}
