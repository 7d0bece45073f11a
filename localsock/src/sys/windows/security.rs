//! Security descriptors for pipes (from SDDL) and user SIDs from tokens.

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, OwnedHandle};
use std::ptr;
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{LocalFree, ERROR_INSUFFICIENT_BUFFER, HANDLE, HLOCAL};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, RevertToSelf, TokenPrimaryGroup, TokenUser, PSECURITY_DESCRIPTOR, PSID,
    TOKEN_INFORMATION_CLASS, TOKEN_PRIMARY_GROUP, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::Storage::FileSystem::{
    FILE_GENERIC_READ, FILE_WRITE_ATTRIBUTES, FILE_WRITE_DATA,
};
use windows_sys::Win32::System::Pipes::ImpersonateNamedPipeClient;
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentThread, OpenProcess, OpenProcessToken, OpenThreadToken,
    PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::{cvt, last_error, owned_handle, wide};
use crate::listener::Access;

/// What a client of another user may do with the pipe when [`Access::Group`] or
/// [`Access::Everyone`] lets it in: read and write data and attributes. Not `FILE_ALL_ACCESS`,
/// and not `FILE_CREATE_PIPE_INSTANCE` (the same bit as `FILE_APPEND_DATA`), which would let it
/// create instances of our pipe and serve our clients.
pub(super) const CLIENT_RIGHTS: u32 = FILE_GENERIC_READ | FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES;

/// The SDDL of the default security descriptor for `access`: a protected DACL (nothing
/// inherited) with full access for the current user and SYSTEM, plus [`CLIENT_RIGHTS`] for the
/// primary group or Everyone.
pub(super) fn default_sddl(access: Access) -> io::Result<String> {
    let owner = current_user_sid()?;
    let mut sddl = format!("D:P(A;;FA;;;{owner})(A;;FA;;;SY)");
    match access {
        Access::Owner => {}
        Access::Group => {
            let group = token_sid(current_process_token()?.as_handle_ref(), TokenPrimaryGroup)?;
            sddl.push_str(&format!("(A;;{CLIENT_RIGHTS:#x};;;{group})"));
        }
        Access::Everyone => sddl.push_str(&format!("(A;;{CLIENT_RIGHTS:#x};;;WD)")),
    }
    Ok(sddl)
}

/// A self-relative security descriptor made from SDDL, freed with `LocalFree`.
pub(super) struct SecurityDescriptor {
    ptr: PSECURITY_DESCRIPTOR,
}

// SAFETY: the descriptor is an immutable heap block owned by this value alone; Windows only
// reads it (when creating pipe instances), from any thread.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as above; shared references only ever read it.
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    pub(super) fn from_sddl(sddl: &str) -> io::Result<SecurityDescriptor> {
        let text = wide(sddl);
        let mut ptr: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: `text` is NUL-terminated; `ptr` is valid for writes; the size is optional.
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
        // SAFETY: `ptr` came from ConvertStringSecurityDescriptorToSecurityDescriptorW, which
        // allocates with LocalAlloc, and is freed exactly once.
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
    // SAFETY: the pseudo-handle of the current process is always valid; `token` is valid for
    // writes.
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
    // SAFETY: plain call with integer arguments; the handle is checked below.
    let process = owned_handle(unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) })?;
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: `process` is a valid process handle; `token` is valid for writes.
    cvt(unsafe { OpenProcessToken(process.as_handle_ref(), TOKEN_QUERY, &mut token) })?;
    let token = owned_handle(token)?;
    token_sid(token.as_handle_ref(), TokenUser)
}

/// The user SID of the client of a server-end pipe, through the client's own token:
/// `ImpersonateNamedPipeClient`, `OpenThreadToken`, `RevertToSelf`. Works with the
/// identification-level tokens that clients give by default.
pub(super) fn pipe_client_user_sid(pipe: BorrowedHandle<'_>) -> io::Result<String> {
    // SAFETY: `pipe` is a valid server-end pipe handle for the whole call.
    cvt(unsafe { ImpersonateNamedPipeClient(pipe.as_raw_handle() as HANDLE) })?;
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: the pseudo-handle of the current thread is always valid; `token` is valid for
    // writes. OpenAsSelf = TRUE checks access against our own (process) identity.
    let opened = cvt(unsafe { OpenThreadToken(GetCurrentThread(), TOKEN_QUERY, 1, &mut token) });
    // SAFETY: no preconditions; ends the impersonation started above.
    if unsafe { RevertToSelf() } == 0 {
        // Running on as the client would be a security hole; there is no safe way on.
        std::process::abort();
    }
    opened?;
    let token = owned_handle(token)?;
    token_sid(token.as_handle_ref(), TokenUser)
}

/// The SID of `class` (`TokenUser` or `TokenPrimaryGroup`) in `token`, as a string.
fn token_sid(token: HANDLE, class: TOKEN_INFORMATION_CLASS) -> io::Result<String> {
    let mut needed = 0u32;
    // SAFETY: a null buffer of length 0 asks for the size; `needed` is valid for writes.
    let ok = unsafe { GetTokenInformation(token, class, ptr::null_mut(), 0, &mut needed) };
    if ok == 0 && last_error() != ERROR_INSUFFICIENT_BUFFER {
        return Err(io::Error::last_os_error());
    }
    // u64 elements keep the buffer aligned for the pointer-holding structures inside.
    let mut buf = vec![0u64; (needed as usize).div_ceil(8).max(1)];
    // SAFETY: `buf` is valid for writes of `buf.len() * 8` bytes, at least `needed`.
    cvt(unsafe {
        GetTokenInformation(
            token,
            class,
            buf.as_mut_ptr().cast(),
            (buf.len() * 8) as u32,
            &mut needed,
        )
    })?;
    let sid: PSID = if class == TokenUser {
        // SAFETY: GetTokenInformation(TokenUser) filled `buf` with an aligned TOKEN_USER.
        unsafe { (*buf.as_ptr().cast::<TOKEN_USER>()).User.Sid }
    } else {
        // SAFETY: GetTokenInformation(TokenPrimaryGroup) filled `buf` with an aligned
        // TOKEN_PRIMARY_GROUP.
        unsafe { (*buf.as_ptr().cast::<TOKEN_PRIMARY_GROUP>()).PrimaryGroup }
    };
    sid_to_string(sid)
}

/// `S-1-5-...` for a SID (which must stay valid for the call).
fn sid_to_string(sid: PSID) -> io::Result<String> {
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sid` points at a valid SID inside a live buffer; `text` is valid for writes.
    cvt(unsafe { ConvertSidToStringSidW(sid, &mut text) })?;
    let mut len = 0usize;
    // SAFETY: ConvertSidToStringSidW returned a NUL-terminated string; we stop at the NUL.
    while unsafe { *text.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `text` is valid for reads of `len` u16s (checked by the loop above).
    let s = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, len) });
    // SAFETY: the string was allocated with LocalAlloc by ConvertSidToStringSidW.
    unsafe { LocalFree(text as HLOCAL) };
    Ok(s)
}
