//! What `echo` and `forward` share as servers: client slots, the per-user cap, pausing when
//! out of descriptors, and taking a listener inherited by socket activation.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use localsock::LocalStream;

/// How long to pause after an accept failed for lack of resources (descriptors, memory).
pub(crate) const RESOURCE_PAUSE: Duration = Duration::from_millis(100);
/// Stack size of the per-client threads.
pub(crate) const CLIENT_STACK: usize = 128 * 1024;

/// A counting semaphore for client slots: the accept loop waits for a free one, so clients
/// beyond `--max-clients` wait in the backlog.
pub(crate) struct Slots {
    free: Mutex<u32>,
    freed: Condvar,
}

impl Slots {
    pub(crate) fn new(count: u32) -> Arc<Slots> {
        Arc::new(Slots {
            free: Mutex::new(count),
            freed: Condvar::new(),
        })
    }

    pub(crate) fn wait_for_free(&self) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub(crate) fn take(self: &Arc<Self>) -> SlotGuard {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        *free = free.saturating_sub(1);
        SlotGuard(Arc::clone(self))
    }
}

pub(crate) struct SlotGuard(Arc<Slots>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        self.0.freed.notify_one();
    }
}

/// At most `cap` connections per user (uid or SID; the address for TCP peers), so that one
/// user cannot take every slot and starve the others.
pub(crate) struct PerUser {
    cap: u32,
    held: Mutex<HashMap<String, u32>>,
}

impl PerUser {
    pub(crate) fn new(cap: u32) -> Arc<PerUser> {
        Arc::new(PerUser {
            cap,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A guard for one more connection of `user`, or `None` when the user is at the cap.
    pub(crate) fn try_take(self: &Arc<Self>, user: &str) -> Option<UserGuard> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(user.to_owned()).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(UserGuard {
            users: Arc::clone(self),
            user: user.to_owned(),
        })
    }
}

pub(crate) struct UserGuard {
    users: Arc<PerUser>,
    user: String,
}

impl Drop for UserGuard {
    fn drop(&mut self) {
        let mut held = self.users.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.user);
            }
        }
    }
}

/// The default per-user cap: every slot when only this user may connect, else a quarter.
pub(crate) fn default_per_user(max_clients: u32, owner_only: bool) -> u32 {
    if owner_only {
        max_clients
    } else {
        (max_clients / 4).max(1)
    }
}

/// Who a local peer is, as the key of the per-user cap: `uid 1000` or the user's SID.
pub(crate) fn local_user(stream: &LocalStream) -> String {
    match stream.peer_credentials() {
        Ok(creds) => match (creds.uid(), creds.user_sid()) {
            (Some(uid), _) => format!("uid {uid}"),
            (None, Some(sid)) => sid.to_owned(),
            (None, None) => "unknown user".to_owned(),
        },
        Err(_) => "unknown user".to_owned(),
    }
}

/// Handles an accept error: a shortage of descriptors or memory pauses (saying so at most once
/// a second) and returns `Ok` so the loop retries; anything else is returned.
pub(crate) fn accept_failed(e: io::Error, last_warning: &mut Option<Instant>) -> io::Result<()> {
    if !is_resource_shortage(&e) {
        return Err(e);
    }
    // EMFILE and friends: the pending client stays in the backlog; retry shortly rather than
    // spin or give up.
    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
        crate::warn(&format!("{e}; pausing before accepting again"));
        *last_warning = Some(Instant::now());
    }
    thread::sleep(RESOURCE_PAUSE);
    Ok(())
}

/// An error that reads `message: e` and keeps `e` as its source (and its kind), so that the
/// OS code stays visible to [`is_resource_shortage`] (an `io::Error::new(kind, String)` loses
/// it, and EMFILE's kind says nothing).
pub(crate) fn context(e: io::Error, message: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        e.kind(),
        Context {
            message: format!("{message}: {e}"),
            source: e,
        },
    )
}

#[derive(Debug)]
struct Context {
    message: String,
    source: io::Error,
}

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Whether `e` means the process or the system is out of descriptors, handles or memory: the
/// library's classification (`localsock::is_resource_shortage`), which knows each OS's codes
/// and finds them under the library's context too; for TCP errors as well.
pub(crate) fn is_resource_shortage(e: &io::Error) -> bool {
    localsock::is_resource_shortage(e)
}

/// A listening socket passed by a service manager (systemd socket activation), if any.
#[cfg(unix)]
pub(crate) struct Inherited {
    pub(crate) fd: std::os::fd::OwnedFd,
    /// `"descriptor 3 from the service manager"`, for the first line.
    pub(crate) origin: String,
    /// Chosen by its `LISTEN_FDNAMES` name (the argument named it, not a path).
    pub(crate) by_name: bool,
}

/// Takes the inherited listener for `arg` (the NAME or FROM argument): the only one passed,
/// or, when several are, the one whose `LISTEN_FDNAMES` entry is `arg`.
///
/// # Errors
///
/// A malformed environment, or several descriptors none of which is named `arg`.
#[cfg(unix)]
pub(crate) fn inherited(arg: &str) -> io::Result<Option<Inherited>> {
    use std::os::fd::{AsFd, AsRawFd};
    let mut fds = localsock::activation::take_listen_fds()
        .map_err(|e| io::Error::new(e.kind(), format!("socket activation: {e}")))?;
    let by_name = fds.iter().any(|fd| fd.name() == arg);
    let chosen = match fds.len() {
        0 => return Ok(None),
        1 => fds.remove(0),
        _ => match fds.iter().position(|fd| fd.name() == arg) {
            Some(i) => fds.remove(i),
            None => {
                let names: Vec<&str> = fds.iter().map(|fd| fd.name()).collect();
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "socket activation passed {} sockets (named {}); give one of these \
                         names as the argument to say which one to serve",
                        names.len(),
                        names.join(", ")
                    ),
                ));
            }
        },
    };
    let name = chosen.name().to_owned();
    let raw = chosen.as_fd().as_raw_fd();
    let origin = if name == "unknown" {
        format!("descriptor {raw} from the service manager")
    } else {
        format!("descriptor {raw} \"{name}\" from the service manager")
    };
    Ok(Some(Inherited {
        fd: chosen.into_fd(),
        origin,
        by_name,
    }))
}

/// Binds NAME, or takes the listener passed by socket activation. Returns the listener and,
/// when inherited, where it came from.
pub(crate) fn local_listener(
    arg: &str,
    access: crate::cli::AccessArg,
    group: Option<&str>,
) -> io::Result<(localsock::LocalListener, Option<String>)> {
    #[cfg(unix)]
    if let Some(inherited) = inherited(arg)? {
        let listener = localsock::LocalListener::from_inherited_fd(inherited.fd)
            .map_err(|e| io::Error::new(e.kind(), format!("socket activation: {e}")))?;
        let path_given = !inherited.by_name;
        if let Some(name) = crate::parse_name(arg).ok().filter(|_| path_given) {
            if &name != listener.name() {
                crate::warn(&format!(
                    "the inherited socket is {}, not {name}; serving the inherited one",
                    listener.name()
                ));
            }
        }
        return Ok((listener, Some(inherited.origin)));
    }
    let name = crate::parse_name(arg)?;
    let mut options = localsock::ListenerOptions::new();
    options.access(crate::access(access));
    if let Some(group) = group {
        with_group(&mut options, group, access)?;
    } else if cfg!(windows) && access == crate::cli::AccessArg::Group {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "listen on {name}: --access group needs --group GROUP on Windows (a SID such \
                 as S-1-5-32-545, or a name such as Users): a pipe has no owner's group to \
                 default to"
            ),
        ));
    }
    let listener = options.bind(&name)?;
    Ok((listener, None))
}

/// `--group`: the group `--access group` admits (Windows).
#[cfg(windows)]
fn with_group(
    options: &mut localsock::ListenerOptions,
    group: &str,
    access: crate::cli::AccessArg,
) -> io::Result<()> {
    use localsock::os::windows::ListenerOptionsExt;
    if access != crate::cli::AccessArg::Group {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--group names the group that --access group admits; add --access group",
        ));
    }
    options.group(group);
    Ok(())
}

/// `--group` on Unix: refused, saying how the group is chosen there.
#[cfg(unix)]
fn with_group(
    _options: &mut localsock::ListenerOptions,
    _group: &str,
    _access: crate::cli::AccessArg,
) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "--group is for Windows pipes; on Unix --access group admits the socket file's group, \
         which is the directory's when the directory is set-group-ID (chmod g+s), else yours: \
         listen in a directory of that group",
    ))
}
