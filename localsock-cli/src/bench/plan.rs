//! What the bench runs: how much of each workload, and on which CPUs.

use std::io;

use crate::cli::{BenchArgs, Pin};
use crate::pin;

#[derive(Clone, Copy, Debug)]
pub(super) struct Plan {
    pub(super) repetitions: u32,
    pub(super) warmup: u32,
    pub(super) round_trips: u32,
    pub(super) stream_bytes: u64,
    pub(super) connections: u32,
}

impl Plan {
    pub(super) fn new(args: &BenchArgs) -> Plan {
        // Many short repetitions rather than a few long ones: on small VMs the cost of a round
        // trip flips between two levels (about 10% apart) for seconds at a time, and the median
        // of many back-to-back pairs sees through that where a few long runs cannot.
        let mut plan = if args.quick {
            Plan {
                repetitions: 5,
                warmup: 1_000,
                round_trips: 10_000,
                stream_bytes: 128 << 20,
                connections: 2_000,
            }
        } else {
            Plan {
                repetitions: 20,
                warmup: 2_500,
                round_trips: 25_000,
                stream_bytes: 256 << 20,
                connections: 5_000,
            }
        };
        if let Some(n) = args.repetitions {
            plan.repetitions = n;
        }
        plan
    }
}

/// Where client and server run.
#[derive(Clone, Copy, Debug)]
pub(super) struct Placement {
    pub(super) client: Option<usize>,
    pub(super) server: Option<usize>,
}

pub(super) fn placement(pin: Pin) -> io::Result<Placement> {
    if pin == Pin::None {
        return Ok(Placement {
            client: None,
            server: None,
        });
    }
    let cpus = match pin::allowed_cpus() {
        Ok(cpus) => cpus,
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            crate::warn(&format!("--pin {}: {e}; running unpinned", pin.as_str()));
            return Ok(Placement {
                client: None,
                server: None,
            });
        }
        Err(e) => return Err(e),
    };
    match (pin, cpus.as_slice()) {
        (Pin::Same, [first, ..]) => Ok(Placement {
            client: Some(*first),
            server: Some(*first),
        }),
        (Pin::Split, [first, second, ..]) => Ok(Placement {
            client: Some(*first),
            server: Some(*second),
        }),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "--pin {} needs {} CPUs, and this process may run on {:?}",
                pin.as_str(),
                if pin == Pin::Split { "two" } else { "a CPU" },
                cpus
            ),
        )),
    }
}
