//! Security descriptors for pipes (from SDDL), the rights check on a listener's pipe, user
//! SIDs from tokens, and the client's identity through impersonation.

use std::ffi::c_void;
use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, OwnedHandle};
use std::ptr;
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{
    LocalFree, ERROR_INSUFFICIENT_BUFFER, ERROR_NO_TOKEN, HANDLE, HLOCAL,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
    ConvertStringSidToSidW, GetSecurityInfo, SDDL_REVISION_1, SE_KERNEL_OBJECT,
};
use windows_sys::Win32::Security::{
    AccessCheck, DuplicateToken, GetTokenInformation, LookupAccountNameW, SecurityIdentification,
    TokenIsAppContainer, TokenUser, DACL_SECURITY_INFORMATION, GENERIC_MAPPING,
    GROUP_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION, PRIVILEGE_SET, PSECURITY_DESCRIPTOR,
    PSID, SID_NAME_USE, TOKEN_DUPLICATE, TOKEN_IMPERSONATE, TOKEN_INFORMATION_CLASS, TOKEN_QUERY,
    TOKEN_USER,
};
use windows_sys::Win32::Storage::FileSystem::{
    FILE_ALL_ACCESS, FILE_CREATE_PIPE_INSTANCE, FILE_GENERIC_EXECUTE, FILE_GENERIC_READ,
    FILE_GENERIC_WRITE, FILE_READ_ATTRIBUTES, FILE_READ_DATA, FILE_READ_EA, FILE_WRITE_ATTRIBUTES,
    FILE_WRITE_DATA, FILE_WRITE_EA, READ_CONTROL, SYNCHRONIZE,
};
use windows_sys::Win32::System::Pipes::ImpersonateNamedPipeClient;
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentThread, OpenProcess, OpenProcessToken, OpenThreadToken,
    SetThreadToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::listener::WithCause;
use super::{cvt, last_error, owned_handle, wide};
use crate::sys::{AccessMode, BindSpec};

/// What a client of another user may do with the pipe when [`AccessMode::Group`] or
/// [`AccessMode::Everyone`] lets it in: read data, attributes and the DACL, write data and
/// attributes (`0x12018b`). Not `FILE_ALL_ACCESS`, and not `FILE_CREATE_PIPE_INSTANCE` (the
/// same bit as `FILE_APPEND_DATA`, part of `GENERIC_WRITE`), which would let it create
/// instances of our pipe and serve our clients. Clients that ask for `GENERIC_WRITE` (std's
/// `File`, tokio's and .NET's pipe clients by default) are therefore refused; ours asks for
/// `GENERIC_READ | FILE_WRITE_DATA`. `FILE_WRITE_ATTRIBUTES` stays granted for clients that
/// change the pipe's read mode (`SetNamedPipeHandleState`).
pub(super) const CLIENT_RIGHTS: u32 = FILE_GENERIC_READ | FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES;

/// The rights the server's user needs in the pipe's DACL for every instance after the first
/// (Learn, "Named Pipe Security and Access Rights": the requested access of a duplex server
/// end, `FILE_GENERIC_READ | FILE_GENERIC_WRITE | SYNCHRONIZE`, plus
/// `FILE_CREATE_PIPE_INSTANCE`), each with its name for the error message.
const INSTANCE_RIGHTS: [(u32, &str); 9] = [
    (FILE_CREATE_PIPE_INSTANCE, "FILE_CREATE_PIPE_INSTANCE"),
    (FILE_READ_DATA, "FILE_READ_DATA"),
    (FILE_WRITE_DATA, "FILE_WRITE_DATA"),
    (FILE_READ_ATTRIBUTES, "FILE_READ_ATTRIBUTES"),
    (FILE_WRITE_ATTRIBUTES, "FILE_WRITE_ATTRIBUTES"),
    (FILE_READ_EA, "FILE_READ_EA"),
    (FILE_WRITE_EA, "FILE_WRITE_EA"),
    (READ_CONTROL, "READ_CONTROL"),
    (SYNCHRONIZE, "SYNCHRONIZE"),
];

/// The one home of a listener's security descriptor: the SDDL of the spec, or the default
/// one for its `access` (and group).
pub(super) fn listener_descriptor(spec: &BindSpec) -> io::Result<SecurityDescriptor> {
    let sddl = match &spec.sddl {
        Some(sddl) => sddl.clone(),
        None => default_sddl(spec.access, spec.group.as_deref())?,
    };
    SecurityDescriptor::from_sddl(&sddl)
}

/// The SDDL of the default security descriptor for `access`: this user as the owner (an
/// elevated process's default owner would be Administrators), a protected DACL (nothing
/// inherited) with full access for this user and SYSTEM, plus [`CLIENT_RIGHTS`] for the
/// explicit `group` or Everyone. `AccessMode::Group` without a group is refused: Windows has no
/// "owner's group" in the Unix sense (the token's primary group is Domain Users, or "None",
/// which holds every local account), so it would let in nearly everyone.
pub(super) fn default_sddl(access: AccessMode, group: Option<&str>) -> io::Result<String> {
    let owner = current_user_sid()?;
    let mut sddl = format!("O:{owner}D:P(A;;FA;;;{owner})(A;;FA;;;SY)");
    match (access, group) {
        (AccessMode::Owner, None) => {}
        (AccessMode::Group, Some(group)) => {
            let sid = resolve_group(group)?;
            sddl.push_str(&format!("(A;;{CLIENT_RIGHTS:#x};;;{sid})"));
        }
        (AccessMode::Group, None) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "Access::Group on Windows needs an explicit group \
                 (os::windows::ListenerOptionsExt::group, a SID such as S-1-5-32-545 or a \
                 group name): the token's primary group is Domain Users or \"None\", nearly \
                 everyone",
            ))
        }
        (AccessMode::Everyone, None) => sddl.push_str(&format!("(A;;{CLIENT_RIGHTS:#x};;;WD)")),
        (_, Some(group)) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a group ({group:?}) is only used with Access::Group, not {access:?}"),
            ))
        }
    }
    Ok(sddl)
}

/// The SID (`S-1-...`) of a group given as a SID or as an account name (`Users`,
/// `BUILTIN\Users`, `DOMAIN\group`).
pub(super) fn resolve_group(group: &str) -> io::Result<String> {
    let invalid = |e: io::Error| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            WithCause {
                what: format!("not a group SID or name: {group:?}"),
                cause: e,
            },
        )
    };
    let text = wide(group);
    if group.starts_with("S-") || group.starts_with("s-") {
        let mut sid: PSID = ptr::null_mut();
        // SAFETY: `text` is a Vec<u16> held here, NUL-terminated by `wide`, so the pointer is
        // to a live string for the call; `sid` is a live local the call writes. The SID it
        // returns is ours to LocalFree (below).
        cvt(unsafe { ConvertStringSidToSidW(text.as_ptr(), &mut sid) }).map_err(invalid)?;
        let canonical = sid_to_string(sid);
        // SAFETY: ConvertStringSidToSidW succeeded (checked) and allocated `sid` with
        // LocalAlloc; it is freed once, here, after its last use (`canonical` is a copy).
        unsafe { LocalFree(sid as HLOCAL) };
        return canonical;
    }
    let mut sid_len = 0u32;
    let mut domain_len = 0u32;
    let mut kind: SID_NAME_USE = 0;
    // SAFETY: `text` is a Vec<u16> held here, NUL-terminated by `wide`; the SID and domain
    // buffers are null with sizes 0, which asks only for the sizes; `sid_len`, `domain_len`
    // and `kind` are live locals the call writes.
    unsafe {
        LookupAccountNameW(
            ptr::null(),
            text.as_ptr(),
            ptr::null_mut(),
            &mut sid_len,
            ptr::null_mut(),
            &mut domain_len,
            &mut kind,
        )
    };
    if sid_len == 0 {
        return Err(invalid(io::Error::last_os_error()));
    }
    let mut sid = vec![0u64; (sid_len as usize).div_ceil(8)];
    let mut domain = vec![0u16; domain_len.max(1) as usize];
    // SAFETY: `text` is a live Vec<u16>, NUL-terminated; `sid` is a live Vec of at least
    // `sid_len` bytes and `domain` one of at least `domain_len` u16s (both sized from the
    // first call), and those sizes are what is passed, so the call writes only inside them;
    // `kind` is a live local.
    cvt(unsafe {
        LookupAccountNameW(
            ptr::null(),
            text.as_ptr(),
            sid.as_mut_ptr().cast(),
            &mut sid_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut kind,
        )
    })
    .map_err(invalid)?;
    sid_to_string(sid.as_mut_ptr().cast())
}

/// Checks, on the first instance of a new pipe, that its security descriptor (as Windows
/// assigned it: generic rights mapped, owner filled in) grants this thread's user the
/// [`INSTANCE_RIGHTS`]. Without them every later instance fails with `ERROR_ACCESS_DENIED`: the
/// spares at bind, and the replacement at every accept, so with no spare the listener could
/// never accept again. A custom SDDL that forgets the server's own user is the usual cause.
pub(super) fn check_instance_rights(instance: BorrowedHandle<'_>) -> io::Result<()> {
    let descriptor = HandleDescriptor::of(instance)?;
    let token = access_check_token()?;
    let mapping = GENERIC_MAPPING {
        GenericRead: FILE_GENERIC_READ,
        GenericWrite: FILE_GENERIC_WRITE,
        GenericExecute: FILE_GENERIC_EXECUTE,
        GenericAll: FILE_ALL_ACCESS,
    };
    let mut missing = Vec::new();
    for (right, name) in INSTANCE_RIGHTS {
        let mut privileges = PRIVILEGE_SET::default();
        let mut privileges_len = std::mem::size_of::<PRIVILEGE_SET>() as u32;
        let mut granted = 0u32;
        let mut allowed = 0;
        // SAFETY: `descriptor.0` is the descriptor `HandleDescriptor` owns until the end of
        // this function; `token` is an OwnedHandle held here, open for the call; `mapping` is
        // a live local it reads; `privileges` is a live local of `privileges_len` bytes (its
        // own size), and `granted` and `allowed` live locals, which it writes.
        cvt(unsafe {
            AccessCheck(
                descriptor.0,
                token.as_raw_handle() as HANDLE,
                right,
                &mapping,
                &mut privileges,
                &mut privileges_len,
                &mut granted,
                &mut allowed,
            )
        })?;
        if allowed == 0 {
            missing.push(name);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "the pipe's security descriptor does not grant this process's user {}, which \
             creating every pipe instance after the first needs (Named Pipe Security and \
             Access Rights); grant the server's user full access, e.g. (A;;FA;;;OW) or \
             (A;;FA;;;<your SID>)",
            missing.join(" | ")
        ),
    ))
}

/// The owner, group and DACL of a kernel object, freed with `LocalFree`.
struct HandleDescriptor(PSECURITY_DESCRIPTOR);

impl HandleDescriptor {
    fn of(handle: BorrowedHandle<'_>) -> io::Result<HandleDescriptor> {
        let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: `handle` is a BorrowedHandle, so it stays open for the call; the owner,
        // group and ACL out-pointers are null (not asked for), and `sd` is a live local the
        // call writes. The descriptor it returns is ours: `HandleDescriptor` frees it.
        let err = unsafe {
            GetSecurityInfo(
                handle.as_raw_handle() as HANDLE,
                SE_KERNEL_OBJECT,
                OWNER_SECURITY_INFORMATION | GROUP_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                &mut sd,
            )
        };
        if err != 0 {
            return Err(io::Error::from_raw_os_error(err as i32));
        }
        Ok(HandleDescriptor(sd))
    }
}

impl Drop for HandleDescriptor {
    fn drop(&mut self) {
        // SAFETY: `self.0` is the descriptor GetSecurityInfo allocated with LocalAlloc (a
        // HandleDescriptor is made only on success); this value owns it and frees it once,
        // here, and nothing borrowed from it outlives `self`.
        unsafe { LocalFree(self.0 as HLOCAL) };
    }
}

/// An identification-level copy of the token that creates pipe instances on this thread (the
/// thread's impersonation token if any, else the process token), as `AccessCheck` needs.
fn access_check_token() -> io::Result<OwnedHandle> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: the current-thread pseudo-handle is always valid; `token` is a live local
    // HANDLE the call writes. A token it returns is ours, taken over by `owned_handle`.
    let own = unsafe {
        OpenThreadToken(
            GetCurrentThread(),
            TOKEN_DUPLICATE | TOKEN_QUERY,
            1,
            &mut token,
        )
    };
    let primary = if own != 0 {
        owned_handle(token)?
    } else {
        // SAFETY: the current-process pseudo-handle is always valid; `token` is a live local
        // HANDLE the call writes. The token it returns is ours, taken over by `owned_handle`.
        cvt(unsafe {
            OpenProcessToken(
                GetCurrentProcess(),
                TOKEN_DUPLICATE | TOKEN_QUERY,
                &mut token,
            )
        })?;
        owned_handle(token)?
    };
    let mut copy: HANDLE = ptr::null_mut();
    // SAFETY: `primary` is an OwnedHandle held here (a token opened with TOKEN_DUPLICATE),
    // open for the call; `copy` is a live local HANDLE the call writes. The copy is ours,
    // taken over by `owned_handle`.
    cvt(unsafe {
        DuplicateToken(
            primary.as_raw_handle() as HANDLE,
            SecurityIdentification,
            &mut copy,
        )
    })?;
    owned_handle(copy)
}

/// Whether this process runs in an AppContainer (then it may create pipes only under
/// `\\.\pipe\LOCAL\`). `false` when the token cannot tell.
pub(super) fn is_app_container() -> bool {
    let Ok(token) = current_process_token() else {
        return false;
    };
    let mut value = 0u32;
    let mut len = 0u32;
    // SAFETY: `token` is an OwnedHandle held here, open for the call; `value` is a live local
    // `u32`, 4 bytes, the size passed, so the call writes only inside it; `len` is a live
    // local it writes.
    let ok = unsafe {
        GetTokenInformation(
            token.as_raw_handle() as HANDLE,
            TokenIsAppContainer,
            (&mut value as *mut u32).cast::<c_void>(),
            4,
            &mut len,
        )
    };
    ok != 0 && value != 0
}

/// A self-relative security descriptor made from SDDL, freed with `LocalFree`.
pub(super) struct SecurityDescriptor {
    ptr: PSECURITY_DESCRIPTOR,
}

// SAFETY: the descriptor is a heap block (LocalAlloc) owned by this value alone and never
// written after it is made; freeing it (Drop) from another thread is fine for LocalFree.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: `&SecurityDescriptor` only gives out the pointer, which Windows only reads (when
// creating pipe instances); concurrent reads of an unchanging block are fine from any thread.
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    pub(super) fn from_sddl(sddl: &str) -> io::Result<SecurityDescriptor> {
        let text = wide(sddl);
        let mut ptr: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: `text` is a Vec<u16> held here, NUL-terminated by `wide`; `ptr` is a live
        // local the call writes; the size pointer is null, which the call allows. The
        // descriptor it returns is ours: `SecurityDescriptor` frees it.
        cvt(unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut ptr,
                ptr::null_mut(),
            )
        })
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid security descriptor (SDDL) {sddl:?}: {e}"),
            )
        })?;
        Ok(SecurityDescriptor { ptr })
    }

    pub(super) fn as_ptr(&self) -> PSECURITY_DESCRIPTOR {
        self.ptr
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from ConvertStringSecurityDescriptorToSecurityDescriptorW (made
        // only on success), which allocates with LocalAlloc; this value owns it and frees it
        // exactly once, here. Pipe instances made with it keep their own copy.
        unsafe { LocalFree(self.ptr as HLOCAL) };
    }
}

trait AsHandleRef {
    fn as_handle_ref(&self) -> HANDLE;
}

impl AsHandleRef for OwnedHandle {
    fn as_handle_ref(&self) -> HANDLE {
        self.as_raw_handle() as HANDLE
    }
}

fn current_process_token() -> io::Result<OwnedHandle> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: the current-process pseudo-handle is always valid; `token` is a live local
    // HANDLE the call writes. The token it returns is ours, taken over by `owned_handle`.
    cvt(unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) })?;
    owned_handle(token)
}

/// The current process's user SID, as `S-1-5-...`; computed once.
pub(super) fn current_user_sid() -> io::Result<String> {
    static SID: OnceLock<String> = OnceLock::new();
    if let Some(sid) = SID.get() {
        return Ok(sid.clone());
    }
    let sid = token_sid(current_process_token()?.as_handle_ref(), TokenUser)?;
    Ok(SID.get_or_init(|| sid).clone())
}

/// The user SID of process `pid`, read from its token. Needs the right to query the process
/// (normally: the same user, or an administrator).
pub(super) fn process_user_sid(pid: u32) -> io::Result<String> {
    // SAFETY: `OpenProcess` takes only integers and reads no memory of ours; the handle it
    // returns is new and ours alone, taken over by `owned_handle` (which checks for null).
    let process = owned_handle(unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) })?;
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: `process` is an OwnedHandle held here, open for the call; `token` is a live
    // local HANDLE the call writes. The token it returns is ours, taken over by
    // `owned_handle`.
    cvt(unsafe { OpenProcessToken(process.as_handle_ref(), TOKEN_QUERY, &mut token) })?;
    let token = owned_handle(token)?;
    token_sid(token.as_handle_ref(), TokenUser)
}

/// The user SID of the client of a server-end pipe, through the client's own token:
/// `ImpersonateNamedPipeClient`, `OpenThreadToken`, then the thread's previous token put back
/// (`SetThreadToken`; not `RevertToSelf`, which would also end an impersonation the calling
/// thread had). Works with the identification-level tokens that clients give by default.
///
/// Fails (`ERROR_CANNOT_IMPERSONATE`) for a client that connected with `SECURITY_ANONYMOUS`,
/// and for one that asked for no security QoS (std's `File`, .NET's default) until the server
/// has read from it (Learn, `ImpersonateNamedPipeClient`: "the security context of the last
/// message read from the pipe").
pub(super) fn pipe_client_user_sid(pipe: BorrowedHandle<'_>) -> io::Result<String> {
    let previous = thread_token()?;
    // SAFETY: `pipe` is a BorrowedHandle, so it stays open for the call; no memory is
    // passed. (It changes this thread's token, which `SetThreadToken` below restores.)
    let impersonated = cvt(unsafe { ImpersonateNamedPipeClient(pipe.as_raw_handle() as HANDLE) });
    let mut token: HANDLE = ptr::null_mut();
    let opened = impersonated.and_then(|()| {
        // SAFETY: the current-thread pseudo-handle is always valid; `token` is a live local
        // HANDLE the call writes; a token it returns is ours, taken over by `owned_handle`.
        // OpenAsSelf = TRUE checks access against our own (process) identity.
        cvt(unsafe { OpenThreadToken(GetCurrentThread(), TOKEN_QUERY, 1, &mut token) })
    });
    let restore = previous
        .as_ref()
        .map_or(ptr::null_mut(), |t| t.as_raw_handle() as HANDLE);
    // SAFETY: a null thread pointer means the current thread; `restore` is null (no
    // impersonation) or the handle of `previous`, an OwnedHandle held here (opened with
    // TOKEN_IMPERSONATE), open for the call; the call does not take it over. Done even when
    // impersonating failed: the thread must leave as it came.
    if unsafe { SetThreadToken(ptr::null(), restore) } == 0 {
        // Running on as the client would be a security hole; there is no safe way on.
        std::process::abort();
    }
    opened?;
    let token = owned_handle(token)?;
    token_sid(token.as_handle_ref(), TokenUser)
}

/// The owner SID of a kernel object (a pipe) from its security descriptor, as a string. Needs
/// `READ_CONTROL` on the handle.
pub(super) fn object_owner_sid(object: BorrowedHandle<'_>) -> io::Result<String> {
    let mut owner: PSID = ptr::null_mut();
    let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: `object` is a BorrowedHandle, so it stays open for the call; `owner` and `sd`
    // are live locals the call writes; the group and ACL out-pointers are null (not asked
    // for). `owner` points into `sd`, which is ours to LocalFree (below).
    let err = unsafe {
        GetSecurityInfo(
            object.as_raw_handle() as HANDLE,
            SE_KERNEL_OBJECT,
            OWNER_SECURITY_INFORMATION,
            &mut owner,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            &mut sd,
        )
    };
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err as i32));
    }
    let text = if owner.is_null() {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the pipe's security descriptor has no owner",
        ))
    } else {
        sid_to_string(owner)
    };
    // SAFETY: `sd` was allocated by GetSecurityInfo with LocalAlloc (it succeeded: err 0)
    // and is freed once, here; `owner` points into it and is not used after this (`text` is
    // a copy).
    unsafe { LocalFree(sd as HLOCAL) };
    text
}

/// The calling thread's impersonation token, if it has one (opened to be put back).
fn thread_token() -> io::Result<Option<OwnedHandle>> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: the current-thread pseudo-handle is always valid; `token` is a live local
    // HANDLE the call writes. A token it returns is ours, taken over by `owned_handle`.
    let ok = unsafe {
        OpenThreadToken(
            GetCurrentThread(),
            TOKEN_IMPERSONATE | TOKEN_QUERY,
            1,
            &mut token,
        )
    };
    if ok == 0 {
        return match last_error() {
            ERROR_NO_TOKEN => Ok(None),
            code => Err(io::Error::from_raw_os_error(code as i32)),
        };
    }
    owned_handle(token).map(Some)
}

/// Whether the client of a server-end pipe runs as this process's user, from its own token
/// ([`pipe_client_user_sid`]) only, never from its process id (a client that connected and
/// exited leaves a pid that another process can take). A client whose token cannot be had
/// (anonymous, or no security QoS and nothing read yet) is not the same user: fail closed.
pub(super) fn client_is_current_user(pipe: BorrowedHandle<'_>) -> io::Result<bool> {
    let me = current_user_sid()?;
    Ok(pipe_client_user_sid(pipe).is_ok_and(|sid| sid == me))
}

/// The SID of `class` (`TokenUser`) in `token`, as a string.
fn token_sid(token: HANDLE, class: TOKEN_INFORMATION_CLASS) -> io::Result<String> {
    let mut needed = 0u32;
    // SAFETY: `token` is open for the call (every caller passes the handle of an OwnedHandle
    // it holds; this private safe fn relies on them); a null buffer of length 0 asks only for
    // the size; `needed` is a live local the call writes.
    let ok = unsafe { GetTokenInformation(token, class, ptr::null_mut(), 0, &mut needed) };
    if ok == 0 && last_error() != ERROR_INSUFFICIENT_BUFFER {
        return Err(io::Error::last_os_error());
    }
    // u64 elements keep the buffer aligned for the pointer-holding structures inside.
    let mut buf = vec![0u64; (needed as usize).div_ceil(8).max(1)];
    // SAFETY: `token` is open (its callers' OwnedHandle); `buf` is a live Vec of
    // `buf.len() * 8` bytes (at least `needed`), the size passed, so the call writes only
    // inside it; `needed` is a live local.
    cvt(unsafe {
        GetTokenInformation(
            token,
            class,
            buf.as_mut_ptr().cast(),
            (buf.len() * 8) as u32,
            &mut needed,
        )
    })?;
    debug_assert_eq!(class, TokenUser);
    // SAFETY: GetTokenInformation(TokenUser) succeeded, so `buf` starts with an initialised
    // TOKEN_USER (at least `size_of::<TOKEN_USER>()` bytes), 8-aligned as a Vec<u64>; its
    // `User.Sid` points into `buf`, which lives until the end of this function.
    let sid: PSID = unsafe { (*buf.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    sid_to_string(sid)
}

/// `S-1-5-...` for a SID (which must stay valid for the call).
fn sid_to_string(sid: PSID) -> io::Result<String> {
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sid` points at a valid SID in a buffer its caller keeps alive for this call
    // (this private safe fn relies on its callers: a SID from ConvertStringSidToSidW, from
    // LookupAccountNameW or GetTokenInformation into a live Vec, or the owner in a live
    // descriptor); `text` is a live local the call writes. The string is ours to LocalFree.
    cvt(unsafe { ConvertSidToStringSidW(sid, &mut text) })?;
    let mut len = 0usize;
    // SAFETY: ConvertSidToStringSidW succeeded, so `text` is a NUL-terminated string, not
    // yet freed; the loop stops at the NUL, so every read is inside it.
    while unsafe { *text.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `text` points at `len` initialised u16s before its NUL (counted above), and
    // the slice is used (copied into `s`) before `text` is freed.
    let s = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, len) });
    // SAFETY: ConvertSidToStringSidW allocated `text` with LocalAlloc; it is freed once,
    // here, after its last use (`s` is a copy).
    unsafe { LocalFree(text as HLOCAL) };
    Ok(s)
}
