//! Windows-only settings: the client's security quality of service (how far a server may act
//! as the client), the listener's security descriptor in SDDL, and its number of spare pipe
//! instances.
//!
//! The traits are sealed: they are implemented for [`ConnectOptions`] and
//! [`ListenerOptions`] only.
//!
//! # How the portable API maps to named pipes
//!
//! - **Connect**: `CreateFileW` asking for `GENERIC_READ | FILE_WRITE_DATA` (not
//!   `GENERIC_WRITE`, which includes `FILE_CREATE_PIPE_INSTANCE`) with
//!   `SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION` (see [`ImpersonationLevel`]),
//!   overlapped, not inheritable. All instances busy (`ERROR_PIPE_BUSY`) is retried with
//!   `WaitNamedPipeW` slices of at most the backoff's cap until the deadline
//!   ([`crate::DEFAULT_CONNECT_TIMEOUT`] when none is set), then `TimedOut`; a wait that
//!   returns early with another error sleeps the rest of its slice (some setups, such as
//!   Windows containers, return at once), so a busy pipe is never retried in a tight loop.
//!   A pipe that vanished between a successful wait and the open is retried too.
//! - **Listen**: the first instance is created with `FILE_FLAG_FIRST_PIPE_INSTANCE` and
//!   `PIPE_REJECT_REMOTE_CLIENTS`, in byte mode; 1 + [`spare_instances`] instances always
//!   listen, and the next one is created before a connected one is handed out, so the name
//!   is never free while the listener lives. If that next one cannot be made, `accept` fails
//!   and the client stays queued for the next `accept` (the pool never shrinks). The async
//!   listener is the same pool, waited for differently. [`ListenerOptions::backlog`] has no
//!   effect. Bind is `AddrInUse` when an instance of the name exists, and `PermissionDenied`
//!   when the name is free but this process may not create it (an AppContainer process may
//!   create pipes only under `\.\pipe\LOCAL\`).
//! - **Access**: a protected DACL, owned by the current user, with full access for the
//!   current user and SYSTEM; [`Access::Group`](crate::Access::Group) /
//!   [`Access::Everyone`](crate::Access::Everyone) add read/write (never "create instance")
//!   for an explicit group ([`ListenerOptionsExt::group`], required) / Everyone. Clients of
//!   other users must then not ask for `GENERIC_WRITE` (std's `File`, tokio's and .NET's
//!   clients do by default). Bind checks that the pipe's descriptor (also a custom one) grants
//!   the current user the rights every later instance needs (`FILE_CREATE_PIPE_INSTANCE` and
//!   read/write), and names the missing ones. The pipe has no integrity label: an elevated
//!   server's pipe admits the same user's medium-integrity processes (add a label with
//!   [`security_descriptor_sddl`](ListenerOptionsExt::security_descriptor_sddl) if that
//!   matters).
//! - **Read and write**: overlapped I/O; a read or write timeout cancels the operation and
//!   gives `TimedOut` (not `WouldBlock` as on Unix), non-blocking mode gives `WouldBlock`.
//!   EOF is `ERROR_BROKEN_PIPE` (or `ERROR_PIPE_NOT_CONNECTED`); a foreign peer's 0-byte
//!   write is not EOF, for the blocking and the async stream alike: the read goes on (the
//!   async stream reads through tokio, whose 0-byte completion looks like EOF, so it reads
//!   once more to tell them apart). Empty writes are never sent, by the blocking and the async
//!   streams alike, so two localsock ends never see a 0-byte read. Writing to a closed peer is
//!   `BrokenPipe`. Data written before a stream is dropped stays readable by the peer. A handle adopted with `From<OwnedHandle>` must be
//!   overlapped: see that impl on `LocalStream`.
//! - **Write counts**: a write with a timeout, or in non-blocking mode, moves at most the pipe's
//!   buffer size (its quota, from `GetNamedPipeInfo`). Windows reports 0 bytes for a pipe write
//!   that was cancelled after the reader took part of it (Wine 8 too, see
//!   `tests/windows_interop.rs`), so a longer write could report sent bytes as unsent and a
//!   retry would send them twice; a write that fits the quota is completed by the pipe as soon
//!   as the reader starts on it, so it can only be cancelled whole.
//! - **Shutdown**: pipes have no half-close. On the server end, `Shutdown::Write` (or `Both`)
//!   waits until the client has read everything (`FlushFileBuffers`, bounded by the write
//!   timeout: a watcher thread cancels it with `CancelSynchronousIo`, and the call fails with
//!   `TimedOut`, nothing discarded), then disconnects (`DisconnectNamedPipe`): this end can no
//!   longer read (unread client data is dropped). The client's next read fails with
//!   `ERROR_PIPE_NOT_CONNECTED` (233): localsock's client reads it as EOF, but std's `File`,
//!   tokio and mio read EOF only for `ERROR_BROKEN_PIPE` (109), which only closing every handle
//!   of the server end produces; `shutdown` takes `&self` and cannot close a handle that may be
//!   borrowed or cloned. Dropping the stream is what gives every client a plain EOF (the data
//!   stays readable first). On the client end `Shutdown::Write` only makes later writes fail;
//!   the server sees EOF when every handle of the client stream is closed. A protocol that
//!   needs "request, then EOF, then reply" must frame its request instead. The async
//!   stream's `shutdown` does the same, its flush on a thread of its own and not bounded by a
//!   timeout.
//! - **Peer credentials**: the pid (`GetNamedPipeClientProcessId` /
//!   `GetNamedPipeServerProcessId`) and the user SID (the client's token on the server end,
//!   else the token of the process with the client's pid; the server process's token on the
//!   client end, when this user may open it). [`ListenerOptions::require_same_user`] uses the
//!   client's token only, never a pid: a client Windows does not identify is dropped.
//!
//! [`spare_instances`]: ListenerOptionsExt::spare_instances
//!
//! # Examples
//!
//! ```no_run
//! use localsock::os::windows::{ConnectOptionsExt, ImpersonationLevel, ListenerOptionsExt};
//! use localsock::{ConnectOptions, ListenerOptions, Name};
//!
//! # fn main() -> std::io::Result<()> {
//! let name = Name::new("example-windows")?;
//! // Owner, SYSTEM and the built-in Administrators group, nobody else.
//! let _listener = ListenerOptions::new()
//!     .security_descriptor_sddl("D:P(A;;FA;;;OW)(A;;FA;;;SY)(A;;0x12018b;;;BA)")
//!     .spare_instances(4)
//!     .bind(&name)?;
//! let _client = ConnectOptions::new()
//!     .impersonation_level(ImpersonationLevel::Anonymous)
//!     .connect(&name)?;
//! # Ok(()) }
//! ```

use crate::{ConnectOptions, ListenerOptions};

/// The number of spare listening instances by default: one, so that a second client finds a
/// free instance while the first is being accepted.
pub const DEFAULT_SPARE_INSTANCES: u32 = 1;

/// The most spare instances a listener keeps (one thread waits on all of them at once, and
/// Windows waits on at most 64 handles).
pub const MAX_SPARE_INSTANCES: u32 = 62;

/// How far the server may use the client's identity: the security quality of service that
/// the client passes to `CreateFileW` (`SECURITY_SQOS_PRESENT` plus one level).
///
/// The default, [`Identification`](ImpersonationLevel::Identification), lets the server learn
/// who the client is (its user SID) but not act as the client, so a server that squatted the
/// name cannot use the client's rights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ImpersonationLevel {
    /// `SECURITY_ANONYMOUS`: the server cannot even identify the client (its user SID then
    /// comes from the client process's token, when the server may open it).
    Anonymous,
    /// `SECURITY_IDENTIFICATION` (the default): the server may identify the client, not act as it.
    #[default]
    Identification,
    /// `SECURITY_IMPERSONATION`: the server may act as the client on this machine.
    Impersonation,
    /// `SECURITY_DELEGATION`: the server may act as the client on other machines too.
    Delegation,
}

impl From<ImpersonationLevel> for crate::sys::SecurityQos {
    fn from(level: ImpersonationLevel) -> crate::sys::SecurityQos {
        match level {
            ImpersonationLevel::Anonymous => crate::sys::SecurityQos::Anonymous,
            ImpersonationLevel::Identification => crate::sys::SecurityQos::Identification,
            ImpersonationLevel::Impersonation => crate::sys::SecurityQos::Impersonation,
            ImpersonationLevel::Delegation => crate::sys::SecurityQos::Delegation,
        }
    }
}

/// Windows-specific connect settings.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectOptionsWindows {
    pub(crate) impersonation_level: ImpersonationLevel,
}

/// Windows-specific listener settings.
#[derive(Clone, Debug)]
pub(crate) struct ListenerOptionsWindows {
    pub(crate) sddl: Option<String>,
    /// The group that `Access::Group` admits (a SID or an account name).
    pub(crate) group: Option<String>,
    /// Always at most [`MAX_SPARE_INSTANCES`]: clamped where it is set, the only place.
    pub(crate) spare_instances: u32,
}

impl Default for ListenerOptionsWindows {
    fn default() -> Self {
        ListenerOptionsWindows {
            sddl: None,
            group: None,
            spare_instances: DEFAULT_SPARE_INSTANCES,
        }
    }
}

mod sealed {
    #[allow(unreachable_pub)] // sealed-trait pattern: public but unnameable outside the crate
    pub trait Sealed {}
    impl Sealed for crate::ConnectOptions {}
    impl Sealed for crate::ListenerOptions {}
}

/// Windows-only settings of [`ConnectOptions`].
pub trait ConnectOptionsExt: sealed::Sealed {
    /// How far the server may use this client's identity (default:
    /// [`ImpersonationLevel::Identification`]).
    fn impersonation_level(&mut self, level: ImpersonationLevel) -> &mut Self;

    /// The `(dwDesiredAccess, dwFlagsAndAttributes)` that [`ConnectOptions::connect`] passes
    /// to `CreateFileW` with these options, for audits and tests.
    ///
    /// The access is `GENERIC_READ | FILE_WRITE_DATA` (not `GENERIC_WRITE`, which includes
    /// `FILE_CREATE_PIPE_INSTANCE`, a right a server should not grant to other users, nor
    /// `FILE_WRITE_ATTRIBUTES`, which the client never uses); the flags are `FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT`
    /// and the impersonation level. The handle is never inheritable.
    fn create_file_params(&self) -> (u32, u32);
}

impl ConnectOptionsExt for ConnectOptions {
    fn impersonation_level(&mut self, level: ImpersonationLevel) -> &mut Self {
        self.windows.impersonation_level = level;
        self
    }

    fn create_file_params(&self) -> (u32, u32) {
        crate::sys::client_create_file_params(self.windows.impersonation_level.into())
    }
}

/// Windows-only settings of [`ListenerOptions`].
pub trait ListenerOptionsExt: sealed::Sealed {
    /// Uses this security descriptor, in SDDL, for the pipe instead of the one made from
    /// [`ListenerOptions::access`]. An escape hatch: you take over who may connect, and who
    /// may create instances of the pipe (keep `FILE_CREATE_PIPE_INSTANCE`, part of `FA` and
    /// `GW`, to yourself). A descriptor that does not parse makes
    /// [`bind`](ListenerOptions::bind) fail with `InvalidInput`; one that does not grant the
    /// server's own user `FILE_CREATE_PIPE_INSTANCE` and read/write (which every instance
    /// after the first needs: Learn, "Named Pipe Security and Access Rights") makes it fail
    /// with `PermissionDenied` naming the missing rights. Name the owner (`O:<SID>`): clients
    /// check a short name's server by the pipe's owner (see
    /// [`ServerIdentity`](crate::ServerIdentity)); without one, Windows makes the creator's
    /// token owner the owner, and Wine a group, which that check refuses.
    ///
    /// The default for [`Access::Owner`](crate::Access::Owner) is
    /// `O:<your SID>D:P(A;;FA;;;<your SID>)(A;;FA;;;SY)`; `Group` and `Everyone` add
    /// `(A;;0x12018b;;;<the group's SID>)` or `(A;;0x12018b;;;WD)` (read, write data,
    /// write attributes).
    fn security_descriptor_sddl(&mut self, sddl: &str) -> &mut Self;

    /// How many instances listen besides the one the next client takes (default
    /// [`DEFAULT_SPARE_INSTANCES`], at most [`MAX_SPARE_INSTANCES`]). More spares let more
    /// clients connect at the same moment without `ERROR_PIPE_BUSY` retries, for one handle
    /// and one event each.
    fn spare_instances(&mut self, spares: u32) -> &mut Self;

    /// The group that [`Access::Group`](crate::Access::Group) admits: a SID
    /// (`S-1-5-32-545`) or an account name (`Users`, `BUILTIN\Users`, `DOMAIN\team`),
    /// resolved at bind. Required with `Access::Group` on Windows, where there is no "owner's
    /// group" as on Unix: the token's primary group is Domain Users, or "None" (every local
    /// account) on a standalone machine, so defaulting to it would admit nearly everyone.
    /// [`bind`](ListenerOptions::bind) fails with `InvalidInput` for `Access::Group` without
    /// a group, for a group with another `Access`, and for a name that does not resolve.
    fn group(&mut self, group: &str) -> &mut Self;
}

impl ListenerOptionsExt for ListenerOptions {
    fn security_descriptor_sddl(&mut self, sddl: &str) -> &mut Self {
        self.windows.sddl = Some(sddl.to_owned());
        self
    }

    fn spare_instances(&mut self, spares: u32) -> &mut Self {
        self.windows.spare_instances = spares.min(MAX_SPARE_INSTANCES);
        self
    }

    fn group(&mut self, group: &str) -> &mut Self {
        self.windows.group = Some(group.to_owned());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{Kind, SecurityQos};

    /// The default client asks for `SECURITY_IDENTIFICATION` only (the backend's flags for each
    /// level are tested in `sys::windows::stream`), and every level reaches the backend as is.
    #[test]
    fn the_default_impersonation_level_is_identification_and_each_level_passes_through() {
        let mut opts = ConnectOptions::new();
        assert_eq!(
            opts.connect_spec(Kind::Bytes).impersonation,
            SecurityQos::Identification
        );
        for (level, qos) in [
            (ImpersonationLevel::Anonymous, SecurityQos::Anonymous),
            (
                ImpersonationLevel::Identification,
                SecurityQos::Identification,
            ),
            (
                ImpersonationLevel::Impersonation,
                SecurityQos::Impersonation,
            ),
            (ImpersonationLevel::Delegation, SecurityQos::Delegation),
        ] {
            opts.impersonation_level(level);
            assert_eq!(opts.connect_spec(Kind::Messages).impersonation, qos);
            assert_eq!(opts.connect_spec(Kind::Messages).kind, Kind::Messages);
        }
    }
}
