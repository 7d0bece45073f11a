//! Windows-only settings: the client's security quality of service (how far a server may act
//! as the client), the listener's security descriptor in SDDL, and its number of spare pipe
//! instances.
//!
//! The traits are sealed: they are implemented for [`ConnectOptions`] and
//! [`ListenerOptions`] only.
//!
//! # How the portable API maps to named pipes
//!
//! - **Connect**: `CreateFileW` with `SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION` (see
//!   [`ImpersonationLevel`]), overlapped, not inheritable. All instances busy
//!   (`ERROR_PIPE_BUSY`) is retried with `WaitNamedPipeW` slices of at most the backoff's cap
//!   until the deadline ([`crate::DEFAULT_CONNECT_TIMEOUT`] when none is set), then
//!   `TimedOut`. A pipe that vanished between a successful wait and the open is retried too.
//! - **Listen**: the first instance is created with `FILE_FLAG_FIRST_PIPE_INSTANCE` and
//!   `PIPE_REJECT_REMOTE_CLIENTS`, in byte mode; 1 + [`spare_instances`] instances always
//!   listen, and the next one is created before a connected one is handed out, so the name
//!   is never free while the listener lives. [`ListenerOptions::backlog`] has no effect.
//! - **Access**: a protected DACL with full access for the current user and SYSTEM;
//!   [`Access::Group`](crate::Access::Group) / [`Access::Everyone`](crate::Access::Everyone)
//!   add read/write (never "create instance") for the primary group / Everyone.
//! - **Read and write**: overlapped I/O; a read or write timeout cancels the operation and
//!   gives `TimedOut` (not `WouldBlock` as on Unix), non-blocking mode gives `WouldBlock`.
//!   EOF is `ERROR_BROKEN_PIPE`; writing to a closed peer is `BrokenPipe`. Data written
//!   before a stream is dropped stays readable by the peer.
//! - **Shutdown**: pipes have no half-close. On the server end, `Shutdown::Write` (or `Both`)
//!   waits until the client has read everything (`FlushFileBuffers`), then disconnects: the
//!   client reads EOF, and this end can no longer read. On the client end it only makes later
//!   writes fail; the server sees EOF when every handle of the client stream is closed. A
//!   protocol that needs "request, then EOF, then reply" must frame its request instead.
//! - **Peer credentials**: the pid (`GetNamedPipeClientProcessId` /
//!   `GetNamedPipeServerProcessId`) and the user SID (the client's token on the server end;
//!   the server process's token on the client end, when this user may open it).
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

impl ImpersonationLevel {
    pub(crate) fn flags(self) -> u32 {
        use windows_sys::Win32::Storage::FileSystem::{
            SECURITY_ANONYMOUS, SECURITY_DELEGATION, SECURITY_IDENTIFICATION,
            SECURITY_IMPERSONATION,
        };
        match self {
            ImpersonationLevel::Anonymous => SECURITY_ANONYMOUS,
            ImpersonationLevel::Identification => SECURITY_IDENTIFICATION,
            ImpersonationLevel::Impersonation => SECURITY_IMPERSONATION,
            ImpersonationLevel::Delegation => SECURITY_DELEGATION,
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
    pub(crate) spare_instances: u32,
}

impl Default for ListenerOptionsWindows {
    fn default() -> Self {
        ListenerOptionsWindows {
            sddl: None,
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
    /// The access is `GENERIC_READ | FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES` (not
    /// `GENERIC_WRITE`, which includes `FILE_CREATE_PIPE_INSTANCE`, a right a server should
    /// not grant to other users); the flags are `FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT`
    /// and the impersonation level. The handle is never inheritable.
    fn create_file_params(&self) -> (u32, u32);
}

impl ConnectOptionsExt for ConnectOptions {
    fn impersonation_level(&mut self, level: ImpersonationLevel) -> &mut Self {
        self.windows.impersonation_level = level;
        self
    }

    fn create_file_params(&self) -> (u32, u32) {
        crate::sys::client_create_file_params(&self.windows)
    }
}

/// Windows-only settings of [`ListenerOptions`].
pub trait ListenerOptionsExt: sealed::Sealed {
    /// Uses this security descriptor, in SDDL, for the pipe instead of the one made from
    /// [`ListenerOptions::access`]. An escape hatch: you take over who may connect, and who
    /// may create instances of the pipe (keep `FILE_CREATE_PIPE_INSTANCE`, part of `FA` and
    /// `GW`, to yourself). A descriptor that does not parse makes
    /// [`bind`](ListenerOptions::bind) fail with `InvalidInput`.
    ///
    /// The default for [`Access::Owner`](crate::Access::Owner) is
    /// `D:P(A;;FA;;;<your SID>)(A;;FA;;;SY)`; `Group` and `Everyone` add
    /// `(A;;0x12018b;;;<primary group SID>)` or `(A;;0x12018b;;;WD)` (read, write data,
    /// write attributes).
    fn security_descriptor_sddl(&mut self, sddl: &str) -> &mut Self;

    /// How many instances listen besides the one the next client takes (default
    /// [`DEFAULT_SPARE_INSTANCES`], at most [`MAX_SPARE_INSTANCES`]). More spares let more
    /// clients connect at the same moment without `ERROR_PIPE_BUSY` retries, for one handle
    /// and one event each.
    fn spare_instances(&mut self, spares: u32) -> &mut Self;
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
}
