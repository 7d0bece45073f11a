//! CPU pinning for the benchmark (`sched_setaffinity` on Linux; elsewhere unsupported).

use std::io;

/// The CPUs this process may run on, in order.
///
/// # Errors
///
/// `Unsupported` where the OS has no affinity call we use; the OS error otherwise.
#[cfg(target_os = "linux")]
pub(crate) fn allowed_cpus() -> io::Result<Vec<usize>> {
    use rustix::thread::{sched_getaffinity, CpuSet};
    let set = sched_getaffinity(None).map_err(io::Error::from)?;
    Ok((0..CpuSet::MAX_CPU)
        .filter(|cpu| set.is_set(*cpu))
        .collect())
}

/// Pins the calling thread (and the threads it starts later) to `cpu`.
///
/// # Errors
///
/// `Unsupported` where the OS has no affinity call we use; the OS error otherwise.
#[cfg(target_os = "linux")]
pub(crate) fn pin_to(cpu: usize) -> io::Result<()> {
    use rustix::thread::{sched_setaffinity, CpuSet};
    if cpu >= CpuSet::MAX_CPU {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is out of range"),
        ));
    }
    let mut set = CpuSet::new();
    set.set(cpu);
    sched_setaffinity(None, &set).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("pinning to CPU {cpu}: {e}"),
        )
    })
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn allowed_cpus() -> io::Result<Vec<usize>> {
    Err(unsupported())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn pin_to(_cpu: usize) -> io::Result<()> {
    Err(unsupported())
}

#[cfg(not(target_os = "linux"))]
fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "CPU pinning is implemented for Linux only",
    )
}
