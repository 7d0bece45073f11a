//! The client's check of who the server is: [`ServerIdentity`], the policy, shared by the
//! blocking and the async connect. The OS only answers "which user runs the server" (the
//! backend's `server_user`); what is acceptable is decided here.

use std::fmt;
use std::io;

use crate::error::{self, Op};
use crate::sys::{self, ServerUser, UserId};
use crate::Name;

/// Who the server must be for a connect to succeed: checked on the connected socket or pipe,
/// before the stream is handed out, so nothing is ever written to a stranger.
///
/// Anyone who can create the endpoint can serve it: on Windows any user may create a pipe
/// called `\\.\pipe\svc` while the real server is not running (first-instance protection only
/// helps a server that is already up), and on Unix anyone who can write a socket's directory can
/// put their own socket there. Requiring an identity turns "I reached *a* server" into "I
/// reached *my* server".
///
/// Set it with [`ConnectOptions::server_identity`](crate::ConnectOptions::server_identity).
/// When it is not set, a short name ([`Name::new("svc")`](crate::Name::new)) requires
/// [`CurrentUserOrAdmin`](ServerIdentity::CurrentUserOrAdmin), the same trust the Unix private
/// directory gives (only you and root can create a socket in it); explicit paths and pipe names
/// get [`Any`](ServerIdentity::Any).
///
/// What is compared:
///
/// | | Unix | Windows |
/// |---|---|---|
/// | the server's user | its effective uid when it called `listen` (`SO_PEERCRED`, `getpeereid`) | the owner of the pipe (`GetSecurityInfo` on the client handle): the user that created its first instance, the one that holds the name |
/// | the current user | `geteuid()` | the user SID of this process's token |
/// | administrators | uid 0 | LocalSystem (`S-1-5-18`) and BUILTIN\Administrators (`S-1-5-32-544`), the owner Windows gives objects made by an elevated administrator |
///
/// A mismatch fails the connect with `PermissionDenied`; the message names the endpoint, the
/// identity that was found and the one required.
///
/// # Examples
///
/// ```no_run
/// use localsock::{ConnectOptions, Name, ServerIdentity};
///
/// # fn main() -> std::io::Result<()> {
/// // An explicit pipe or path: insist that the server runs as this user.
/// # #[cfg(unix)]
/// # let name = Name::new("/run/app/app.sock")?;
/// # #[cfg(windows)]
/// # let name = Name::new(r"\\.\pipe\app")?;
/// let stream = ConnectOptions::new()
///     .server_identity(ServerIdentity::CurrentUser)
///     .connect(&name)?;
/// # drop(stream);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerIdentity {
    /// No check: any server will do.
    Any,
    /// The server runs as this process's user (its effective uid on Unix; on Windows the pipe
    /// is owned by this process's user SID).
    CurrentUser,
    /// The server runs as this process's user or as the system's administrators (uid 0 on
    /// Unix; LocalSystem or BUILTIN\Administrators on Windows). The default for short names.
    CurrentUserOrAdmin,
    /// The server runs as this uid (Unix).
    #[cfg(unix)]
    Uid(u32),
    /// The pipe is owned by this user SID, in string form (`S-1-5-21-...`; case does not
    /// matter) (Windows).
    #[cfg(windows)]
    Sid(String),
}

impl UserId {
    fn same(&self, other: &UserId) -> bool {
        match (self, other) {
            (UserId::Uid(a), UserId::Uid(b)) => a == b,
            (UserId::Sid(a), UserId::Sid(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        }
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserId::Uid(uid) => write!(f, "uid {uid}"),
            UserId::Sid(sid) => write!(f, "user {sid}"),
        }
    }
}

impl ServerIdentity {
    /// The requirement for `name` when the options set none: short names get
    /// `CurrentUserOrAdmin`, everything else `Any`.
    pub(crate) fn default_for(name: &Name) -> ServerIdentity {
        if name.is_short() {
            ServerIdentity::CurrentUserOrAdmin
        } else {
            ServerIdentity::Any
        }
    }

    /// Whether `found` satisfies this requirement, given the current user and the
    /// administrators of this system.
    fn accepts(&self, found: &UserId, me: &UserId, admins: &[UserId]) -> bool {
        match self {
            ServerIdentity::Any => true,
            ServerIdentity::CurrentUser => found.same(me),
            ServerIdentity::CurrentUserOrAdmin => {
                found.same(me) || admins.iter().any(|admin| found.same(admin))
            }
            #[cfg(unix)]
            ServerIdentity::Uid(uid) => found.same(&UserId::Uid(*uid)),
            #[cfg(windows)]
            ServerIdentity::Sid(sid) => found.same(&UserId::Sid(sid.clone())),
        }
    }

    /// In words, for the error message.
    fn describe(&self, me: &UserId) -> String {
        match self {
            ServerIdentity::Any => "any user".to_owned(),
            ServerIdentity::CurrentUser => format!("the current user ({me})"),
            ServerIdentity::CurrentUserOrAdmin => {
                format!("the current user ({me}) or an administrator")
            }
            #[cfg(unix)]
            ServerIdentity::Uid(uid) => format!("uid {uid}"),
            #[cfg(windows)]
            ServerIdentity::Sid(sid) => format!("user {sid}"),
        }
    }
}

/// Checks the server of a freshly connected stream against `required`. `server_user` asks
/// the OS; it is not called at all for [`ServerIdentity::Any`]. Errors name `name`.
pub(crate) fn check(
    required: &ServerIdentity,
    name: &Name,
    server_user: impl FnOnce() -> io::Result<ServerUser>,
) -> io::Result<()> {
    if *required == ServerIdentity::Any {
        return Ok(());
    }
    let found = server_user().map_err(|e| {
        error::context_with(
            e,
            Op::Connect,
            name,
            "cannot tell which user runs the server, so the required server identity cannot be \
             checked",
        )
    })?;
    let me = sys::current_user().map_err(|e| error::context(e, Op::Connect, name))?;
    if required.accepts(&found.user, &me, &sys::admin_users()) {
        return Ok(());
    }
    let pid = found
        .pid
        .map(|pid| format!(" (pid {pid})"))
        .unwrap_or_default();
    Err(error::context_with(
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the server runs as {}{pid}, but it must be {}",
                found.user,
                required.describe(&me)
            ),
        ),
        Op::Connect,
        name,
        "refused: the server is not who it must be; nothing was sent to it",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_accepts_whom_it_says() {
        let me = UserId::Uid(1000);
        let root = UserId::Uid(0);
        let other = UserId::Uid(1001);
        let admins = [root.clone()];
        let accepts =
            |required: ServerIdentity, found: &UserId| required.accepts(found, &me, &admins);
        for found in [&me, &root, &other] {
            assert!(accepts(ServerIdentity::Any, found));
        }
        assert!(accepts(ServerIdentity::CurrentUser, &me));
        assert!(!accepts(ServerIdentity::CurrentUser, &root));
        assert!(!accepts(ServerIdentity::CurrentUser, &other));
        assert!(accepts(ServerIdentity::CurrentUserOrAdmin, &me));
        assert!(accepts(ServerIdentity::CurrentUserOrAdmin, &root));
        assert!(!accepts(ServerIdentity::CurrentUserOrAdmin, &other));
        #[cfg(unix)]
        {
            assert!(accepts(ServerIdentity::Uid(1001), &other));
            assert!(!accepts(ServerIdentity::Uid(1001), &me));
        }
    }

    #[test]
    fn sids_compare_without_case_and_never_equal_a_uid() {
        let sid = UserId::Sid("S-1-5-21-1-2-3-1000".into());
        assert!(sid.same(&UserId::Sid("s-1-5-21-1-2-3-1000".into())));
        assert!(!sid.same(&UserId::Sid("S-1-5-21-1-2-3-1001".into())));
        assert!(!UserId::Uid(0).same(&UserId::Sid("0".into())));
    }

    #[test]
    fn a_mismatch_is_permission_denied_naming_endpoint_and_both_identities() {
        let name = Name::from_addr(crate::sys::Addr::Pipe(r"\\.\pipe\svc".into()));
        // Nobody is "uid u32::MAX - 1" / a made-up SID: the check must refuse.
        #[cfg(unix)]
        let stranger = UserId::Uid(u32::MAX - 1);
        #[cfg(windows)]
        let stranger = UserId::Sid("S-1-5-21-9-9-9-4242".into());
        let err = check(&ServerIdentity::CurrentUser, &name, || {
            Ok(ServerUser {
                user: stranger.clone(),
                pid: Some(4242),
            })
        })
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        let msg = err.to_string();
        assert!(msg.contains(r"\\.\pipe\svc"), "{msg}");
        assert!(msg.contains(&stranger.to_string()), "{msg}");
        assert!(msg.contains("pid 4242"), "{msg}");
        assert!(msg.contains("current user"), "{msg}");
        // Any never asks the OS.
        check(&ServerIdentity::Any, &name, || panic!("asked")).unwrap();
    }
}
