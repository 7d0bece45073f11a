//! Fuzzes the shared-memory data path (`ShmStream`, Linux) as a hostile peer would attack it:
//! between reads and writes on a real negotiated pair, the input overwrites words of the shared
//! control page (and data) with arbitrary values.
//!
//! The input is a script of 4-byte operations `[op, a, b, c]`:
//! - `op % 8 == 0/1`: the offering / answering side writes `a*8+1` pattern bytes (copying API);
//! - `2/3`: the other side reads up to `a*8+1` bytes (copying API);
//! - `4`: zero-copy write, `5`: zero-copy read, on side `a & 1`;
//! - `6`: poke: the 8-byte-aligned word at `(a | b << 8) % 4096` (control page) or, with `c &
//!   0x80`, anywhere in the mapping, gets a value built from `c` (0, 1, near the capacity, huge,
//!   wrapped, or `c` repeated);
//! - `7`: the side `a & 1` shuts down writing.
//!
//! Checked on every input:
//! - no panic, no hang (both sides are non-blocking and never spin), no unbounded allocation;
//! - every error is `WouldBlock`, `InvalidData` (the "peer" broke the rules) or `BrokenPipe`;
//! - a read never claims more bytes than its buffer, and until the first poke every byte read
//!   is the byte written at that position;
//! - once the pair is dropped, this process has the descriptors and mappings it had before.
#![no_main]

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::Ordering;

use libfuzzer_sys::fuzz_target;
use localsock::ShmStream;

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

fn shm_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .filter(|l| l.contains("memfd:localsock-shm"))
        .count()
}

fn pattern(dir: usize, i: u64) -> u8 {
    (i.wrapping_mul(31).wrapping_add(dir as u64 * 7) >> 1) as u8
}

fn allowed(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::WouldBlock | ErrorKind::InvalidData | ErrorKind::BrokenPipe
    )
}

const CAPACITY: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let fds = fd_count();
    let maps = shm_mappings();
    {
        let (a, b) = localsock::__fuzz::shm_pair(CAPACITY).expect("a shared-memory pair");
        let sides: [&ShmStream; 2] = [&a, &b];
        let map = localsock::__fuzz::shm_bytes(&a).expect("on shared memory");
        let mut sent = [0u64; 2];
        let mut got = [0u64; 2];
        let mut poked = false;
        let mut buf = vec![0u8; 2048 + 8];
        for op in data.chunks_exact(4) {
            let (code, x, y, z) = (op[0] % 8, op[1], op[2], op[3]);
            let len = usize::from(x) * 8 + 1;
            match code {
                0 | 1 => {
                    let side = usize::from(code);
                    let bytes: Vec<u8> = (0..len as u64)
                        .map(|i| pattern(side, sent[side] + i))
                        .collect();
                    match (&*sides[side]).write(&bytes) {
                        Ok(n) => {
                            assert!(n <= len);
                            sent[side] += n as u64;
                        }
                        Err(e) => assert!(allowed(e.kind()), "{e}"),
                    }
                }
                2 | 3 => {
                    // Side 1 reads what side 0 wrote, and the other way round.
                    let reader = usize::from(code - 2);
                    let dir = 1 - reader;
                    let len = len.min(buf.len());
                    match (&*sides[reader]).read(&mut buf[..len]) {
                        Ok(n) => {
                            assert!(n <= len);
                            if !poked {
                                for (k, byte) in buf[..n].iter().enumerate() {
                                    assert_eq!(*byte, pattern(dir, got[dir] + k as u64));
                                }
                                assert!(got[dir] + n as u64 <= sent[dir]);
                            }
                            got[dir] += n as u64;
                        }
                        Err(e) => assert!(allowed(e.kind()), "{e}"),
                    }
                }
                4 => {
                    let side = usize::from(x & 1);
                    let res = sides[side].write_in_place(|view| {
                        let n = view.len().min(usize::from(y) + 1);
                        for i in 0..n {
                            view.set(i, pattern(side, sent[side] + i as u64));
                        }
                        (n, n)
                    });
                    match res {
                        Ok(n) => sent[side] += n as u64,
                        Err(e) => assert!(allowed(e.kind()), "{e}"),
                    }
                }
                5 => {
                    let reader = usize::from(x & 1);
                    let dir = 1 - reader;
                    let res = sides[reader].read_in_place(|view| {
                        let n = view.len().min(usize::from(y) + 1);
                        let mut ok = true;
                        for i in 0..n {
                            ok &= view.get(i) == pattern(dir, got[dir] + i as u64);
                        }
                        (n, (n, ok))
                    });
                    match res {
                        Ok((n, ok)) => {
                            assert!(poked || ok, "zero-copy read saw wrong bytes");
                            got[dir] += n as u64;
                        }
                        Err(e) => assert!(allowed(e.kind()), "{e}"),
                    }
                }
                6 => {
                    poked = true;
                    let span = if z & 0x80 != 0 { map.len() } else { 4096 };
                    let at = (usize::from(x) | usize::from(y) << 8) % span & !7;
                    let value: u64 = match z & 7 {
                        0 => 0,
                        1 => 1,
                        2 => CAPACITY as u64,
                        3 => CAPACITY as u64 + 1,
                        4 => u64::MAX,
                        5 => 1 << 40,
                        6 => u64::from(z).wrapping_mul(0x0101_0101_0101_0101),
                        _ => (CAPACITY as u64).wrapping_neg(),
                    };
                    for (k, byte) in value.to_le_bytes().iter().enumerate() {
                        map[at + k].store(*byte, Ordering::Relaxed);
                    }
                }
                _ => {
                    let side = usize::from(x & 1);
                    let _ = sides[side].shutdown(Shutdown::Write);
                }
            }
        }
        let _ = (&*sides[0]).flush();
    }
    assert_eq!(fd_count(), fds, "descriptors leaked");
    assert_eq!(shm_mappings(), maps, "mapping leaked");
});
