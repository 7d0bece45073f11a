//! Helpers shared by the CLI's integration tests: a child process whose output lines arrive on
//! a channel ([`Proc`]), and on Unix the library's test helpers (watchdogs, descriptor counts,
//! [`Reaper`], ...), re-exported from their one home, localsock/tests/common.
#![allow(dead_code, unreachable_pub)]

// `unexpected_cfgs`: the library's helpers gate their tokio runtime helper on the library's
// `tokio` feature, which this package does not have; here that helper is left out.
#[cfg(unix)]
#[path = "../../../localsock/tests/common/mod.rs"]
#[allow(unexpected_cfgs)]
mod library;
#[cfg(unix)]
#[allow(unused_imports)]
pub use library::*;

use std::cell::Cell;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// How long [`Proc::line_with`] and [`Proc::connections_logged`] wait, unless
/// [`Proc::with_bound`] says otherwise.
pub const LINE_BOUND: Duration = Duration::from_secs(30);

/// A child process, killed on drop; its stdout and stderr lines (those of the two that are
/// piped) arrive on one channel, read by threads so the child never blocks on a full pipe.
pub struct Proc {
    pub child: Child,
    /// The lines as they come; reading them here skips the connection count.
    pub lines: Receiver<String>,
    /// How many connection lines (`#N ...`) have been received so far, skipped ones included.
    logged: Cell<usize>,
    bound: Duration,
}

impl Proc {
    /// Starts `command` with `NO_COLOR=1`, no stdin, and stdout and stderr piped.
    pub fn spawn(command: &mut Command) -> Proc {
        let child = command
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        Proc::from_child(child)
    }

    /// Takes over a started child, reading the lines of whichever of its stdout and stderr
    /// are piped.
    pub fn from_child(mut child: Child) -> Proc {
        let (tx, lines) = mpsc::channel();
        let out = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for stream in [out, err].into_iter().flatten() {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    // Nobody listens any more: keep draining so the child never blocks.
                    let _ = tx.send(line);
                }
            });
        }
        Proc {
            child,
            lines,
            logged: Cell::new(0),
            bound: LINE_BOUND,
        }
    }

    /// The bound of [`Proc::line_with`] and [`Proc::connections_logged`] ([`LINE_BOUND`] if
    /// not set).
    pub fn with_bound(mut self, bound: Duration) -> Proc {
        self.bound = bound;
        self
    }

    /// The next line that contains `needle` (others are skipped), within the bound.
    pub fn line_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + self.bound;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(e) => panic!("no line with {needle:?} within {:?}: {e}", self.bound),
            }
        }
    }

    /// The next line, counting connection lines.
    pub fn next_line(&self, wait: Duration) -> Result<String, RecvTimeoutError> {
        let line = self.lines.recv_timeout(wait)?;
        if line.starts_with('#') {
            self.logged.set(self.logged.get() + 1);
        }
        Ok(line)
    }

    /// Waits until `count` connections in all have been logged (`#N ...` lines, counting those
    /// skipped by [`Proc::line_with`]).
    pub fn connections_logged(&self, count: usize) {
        let deadline = Instant::now() + self.bound;
        let mut others = Vec::new();
        while self.logged.get() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Ok(line) if !line.starts_with('#') => others.push(line),
                Ok(_) => {}
                Err(e) => panic!(
                    "{} of {count} connections logged within {:?} ({e}); other lines: \
                     {others:#?}",
                    self.logged.get(),
                    self.bound
                ),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
