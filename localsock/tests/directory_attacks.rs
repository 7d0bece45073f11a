//! Attacks through the directories a socket lives in (issue 16): another user who can write the
//! socket's directory and races the bind, and a private directory that is removed and recreated
//! by someone else while a program keeps its `Name`.
//!
//! The tests that play another user need root (they drop a child process to uid/gid 65534) and
//! are `#[ignore]`d; run them with
//! `cargo test -p localsock --all-features --test directory_attacks -- --ignored`.
//! The other user runs a copy of this test binary placed in a temporary directory it can reach,
//! so the tests work from any checkout location.
#![cfg(target_os = "linux")]

mod common;

use std::ffi::CString;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{
    child_from, fd_count, is_child, read_line, require_root, wait_and_read_stdout, watchdog,
    Reaper, SpawnCopied,
};
use localsock::{Access, ListenerOptions, LocalListener, LocalStream, Name};

const NOBODY: u32 = 65534;

/// A directory under the temp dir that every user may enter (`0755`), owned by the test.
fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("localsock-attack-")
        .tempdir()
        .unwrap();
    set_mode(dir.path(), 0o755);
    dir
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, PermissionsExt::from_mode(mode)).unwrap();
}

/// Copies this test binary into `base/bin` (which another user can reach whatever the
/// checkout's permissions) and returns a command that runs the `#[ignore]`d entry point
/// `entry` from there, as `uid` (`None`: as ourselves), with `envs`. Stdin and stdout are piped.
fn child_from_copy(base: &Path, entry: &str, uid: Option<u32>, envs: &[(&str, &str)]) -> Command {
    let bin = base.join("bin");
    if !bin.exists() {
        std::fs::create_dir(&bin).unwrap();
        set_mode(&bin, 0o755);
        std::fs::copy(std::env::current_exe().unwrap(), bin.join("tests")).unwrap();
        set_mode(&bin.join("tests"), 0o755);
    }
    let mut cmd = child_from(&bin.join("tests"), entry, envs);
    cmd.current_dir(base).stdin(Stdio::piped());
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    cmd
}

/// `(mode, uid, size)` of a file, or `None` if it is gone; symlinks are not followed.
fn snapshot(path: &Path) -> Option<(u32, u32, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.mode(), m.uid(), m.size()))
}

// ---------------------------------------------------------------------------------------------
// 1. A directory swapper racing `Access::Group` / `Access::Everyone` binds
// ---------------------------------------------------------------------------------------------

/// How many binds the victim makes with each of `Group` and `Everyone`.
const BINDS_EACH: usize = 200;
/// The victim goes on binding (up to [`MAX_BINDS_EACH`]) until it has been attacked at least
/// this often: how many binds the attacker catches depends on scheduling (about four in five
/// with both pinned to one CPU, on one CPU or two, loaded or not; unpinned, a clean CI run on an
/// idle machine saw 79 in 20,000), so a fixed number of binds would sometimes test too little.
/// The old bind lost on the first swap, so 20 attacked binds still mean something.
const MIN_SWAPS: usize = 20;
/// The bound on the victim's binds with each access mode.
const MAX_BINDS_EACH: usize = 10_000;

/// Pins the calling process to the first CPU it may run on. The victim and the attacker both
/// do, so that the attacker, asleep in `read(2)` on inotify, is woken on the victim's CPU and
/// preempts it right after the system call that raised the event. Woken on another, idle CPU
/// it comes too late for most binds: a clean CI run on an idle 2-core machine saw the unpinned
/// attacker catch 79 of 20,000.
fn pin_to_the_shared_cpu() {
    let allowed = rustix::thread::sched_getaffinity(None).unwrap();
    let first = (0..rustix::thread::CpuSet::MAX_CPU)
        .find(|cpu| allowed.is_set(*cpu))
        .unwrap();
    let mut set = rustix::thread::CpuSet::new();
    set.set(first);
    rustix::thread::sched_setaffinity(None, &set).unwrap();
}

/// The victim (root) binds `Group` and `Everyone` sockets (at least 200 of each, and on until
/// the attacker has swapped 20 of their temporary directories) in a `root:65534 0775` directory
/// (no sticky bit: the group — exactly the users `Access::Group` admits — may rename entries in
/// it). The attacker, uid/gid 65534, watches the directory with inotify and, at one of three
/// moments of each bind (see [`child_directory_swapper`]), swaps the bind's temporary directory
/// with `renameat2(RENAME_EXCHANGE)` for a decoy of its own: a directory holding
/// `s -> <root's 0640 file>`, or a symlink to a root-owned directory holding a file `s`. The
/// old bind then `chmod`ed the symlink's target, `link`ed the symlink to the socket path and
/// unlinked the `s` the symlink's directory held.
///
/// Checked after every bind: the bait files keep their mode, owner and content and still
/// exist; a bind that succeeded left a socket (not a symlink) of exactly the requested mode at
/// the path, which a client reaches and the listener accepts; a bind that failed left nothing at
/// the path. At the end no descriptor has leaked, and the attacker really raced the binds.
#[test]
#[ignore = "needs root to play another uid — run with: cargo test -p localsock --all-features --test directory_attacks -- --ignored"]
fn a_directory_swapper_cannot_redirect_group_or_everyone_binds() {
    let test = "a_directory_swapper_cannot_redirect_group_or_everyone_binds";
    require_root(test);
    let _w = watchdog(
        "a_directory_swapper_cannot_redirect_group_or_everyone_binds",
        240,
    );

    let base = open_tempdir();
    let shared = base.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(0), Some(NOBODY)).unwrap();
    set_mode(&shared, 0o775);

    // Bait: a root-owned 0640 file (as /etc/shadow-like targets), and a root-owned directory
    // holding a file named `s` (what the old cleanup unlinked through a symlinked directory).
    let bait = base.path().join("bait");
    std::fs::create_dir(&bait).unwrap();
    set_mode(&bait, 0o755);
    let target = bait.join("target");
    std::fs::write(&target, b"secret").unwrap();
    set_mode(&target, 0o640);
    let bait_dir = bait.join("dir");
    std::fs::create_dir(&bait_dir).unwrap();
    set_mode(&bait_dir, 0o755);
    std::fs::write(bait_dir.join("s"), b"keep me").unwrap();
    set_mode(&bait_dir.join("s"), 0o600);
    let watched = [target.clone(), bait_dir.clone(), bait_dir.join("s")];
    let before: Vec<_> = watched.iter().map(|p| snapshot(p)).collect();

    let mut attacker = Reaper(
        child_from_copy(
            base.path(),
            "child_directory_swapper",
            Some(NOBODY),
            &[
                ("LOCALSOCK_TEST_DIR", shared.to_str().unwrap()),
                ("LOCALSOCK_TEST_BAIT_FILE", target.to_str().unwrap()),
                ("LOCALSOCK_TEST_BAIT_DIR", bait_dir.to_str().unwrap()),
            ],
        )
        .spawn_copied()
        .unwrap(),
    );
    assert_eq!(read_line(&mut attacker.0), "watching");

    // The victim runs in a child process of its own, so that its descriptor count is not
    // disturbed by the other tests of this binary.
    let watched_env = watched
        .iter()
        .map(|p| p.to_str().unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let mut victim = Reaper(
        child_from_copy(
            base.path(),
            "child_group_everyone_binder",
            None,
            &[
                ("LOCALSOCK_TEST_DIR", shared.to_str().unwrap()),
                ("LOCALSOCK_TEST_WATCHED", &watched_env),
            ],
        )
        .spawn_copied()
        .unwrap(),
    );
    let mut violations = Vec::new();
    let report = loop {
        let line = read_line(&mut victim.0);
        if let Some(v) = line.strip_prefix("violation ") {
            violations.push(v.to_owned());
        } else if let Some(example) = line.strip_prefix("example ") {
            println!("for example: {example}");
        } else if let Some(done) = line.strip_prefix("done ") {
            break done
                .split(' ')
                .map(|n| n.parse::<usize>().unwrap())
                .collect::<Vec<_>>();
        } else {
            panic!("unexpected line from the victim: {line}");
        }
    };
    let [ok, failed, ok_after_swap, fds_before, fds_after] = report[..] else {
        panic!("bad report {report:?}");
    };
    assert!(common::wait_bounded(&mut victim.0, 30).success());

    // Stop the attacker and hear how often it swapped.
    std::fs::write(shared.join("stop"), b"").unwrap();
    let (status, out) = wait_and_read_stdout(&mut attacker.0, 30);
    let swaps: usize = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("CHILD swaps "))
        .unwrap_or_else(|| panic!("the attacker said nothing: {status:?} {out}"))
        .parse()
        .unwrap();
    println!(
        "{} binds: {ok} succeeded ({ok_after_swap} of them after their temporary directory was \
         swapped away), {failed} failed cleanly; the attacker swapped {swaps} temporary \
         directories",
        ok + failed,
    );
    assert!(violations.is_empty(), "{violations:#?}");
    let now: Vec<_> = watched.iter().map(|p| snapshot(p)).collect();
    assert_eq!(
        now, before,
        "files outside the sockets changed: {watched:?}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"secret");
    assert_eq!(std::fs::read(bait_dir.join("s")).unwrap(), b"keep me");
    assert_eq!(fds_after, fds_before, "the victim leaked descriptors");
    // The test only means something if the attack really ran against many binds.
    assert!(
        swaps >= MIN_SWAPS,
        "the attacker swapped only {swaps} times in {} binds",
        ok + failed
    );
    assert!(ok > 0, "no bind succeeded under attack");
}

/// The victim of the test above: binds `Group` and `Everyone` sockets in `LOCALSOCK_TEST_DIR`
/// (see [`MIN_SWAPS`]) and checks each outcome and the files in `LOCALSOCK_TEST_WATCHED`
/// (`:`-separated) after each bind. Prints `CHILD violation ...` for each broken promise (and
/// stops), `CHILD example <error>` for the first clean failure, then `CHILD done <succeeded>
/// <failed> <succeeded after a swap> <fds before> <fds after>`.
#[test]
#[ignore = "child process entry point"]
fn child_group_everyone_binder() {
    if !is_child("child_group_everyone_binder") {
        return;
    }
    pin_to_the_shared_cpu();
    let shared = PathBuf::from(std::env::var_os("LOCALSOCK_TEST_DIR").unwrap());
    let watched: Vec<PathBuf> = std::env::var("LOCALSOCK_TEST_WATCHED")
        .unwrap()
        .split(':')
        .map(PathBuf::from)
        .collect();
    let before: Vec<_> = watched.iter().map(|p| snapshot(p)).collect();
    let fds_before = fd_count(std::process::id());
    let mut violations = Vec::new();
    let (mut ok, mut failed) = (0usize, Vec::new());
    // Binds that succeeded although their temporary directory was swapped away under them
    // (it is then left, empty, where the attacker moved it: a root-owned directory in `shared`).
    let mut ok_after_swap = 0usize;
    let root_dirs = || {
        std::fs::read_dir(&shared)
            .unwrap()
            .filter_map(|e| std::fs::symlink_metadata(e.unwrap().path()).ok())
            .filter(|m| m.is_dir() && m.uid() == 0)
            .count()
    };
    'binds: for i in 0..MAX_BINDS_EACH {
        // Attacked binds, as the victim sees them: each failed bind (its temporary directory was
        // replaced) and each that succeeded after a swap.
        if i >= BINDS_EACH && failed.len() + ok_after_swap >= MIN_SWAPS {
            break;
        }
        for (access, mode, tag) in [(Access::Group, 0o660, "g"), (Access::Everyone, 0o666, "e")] {
            let path = shared.join(format!("sock-{i}-{tag}"));
            let name = Name::path(&path).unwrap();
            let root_dirs_before = root_dirs();
            match ListenerOptions::new().access(access).bind(&name) {
                Ok(listener) => {
                    if root_dirs() > root_dirs_before {
                        ok_after_swap += 1;
                    }
                    match std::fs::symlink_metadata(&path) {
                        Ok(m) if m.file_type().is_socket() => {
                            if m.mode() & 0o7777 != mode || m.uid() != 0 {
                                violations.push(format!(
                                    "{}: bound, but the socket is mode {:o} uid {} (wanted {mode:o} uid 0)",
                                    path.display(),
                                    m.mode() & 0o7777,
                                    m.uid()
                                ));
                            }
                        }
                        Ok(m) => violations.push(format!(
                            "{}: bound, but the path is not a socket: {:?}",
                            path.display(),
                            m.file_type()
                        )),
                        Err(e) => violations.push(format!(
                            "{}: bound, but nothing is at the path: {e}",
                            path.display()
                        )),
                    }
                    // The file at the path leads to this very listener.
                    match LocalStream::connect(&name) {
                        Ok(_client) => {
                            listener.set_nonblocking(true).unwrap();
                            if let Err(e) = listener.accept() {
                                violations.push(format!(
                                    "{}: a client connected, but not to this listener ({e})",
                                    path.display()
                                ));
                            }
                        }
                        Err(e) => violations.push(format!(
                            "{}: bound, but a client cannot connect: {e}",
                            path.display()
                        )),
                    }
                    drop(listener);
                    ok += 1;
                }
                Err(e) => {
                    if let Ok(m) = std::fs::symlink_metadata(&path) {
                        violations.push(format!(
                            "{}: the bind failed ({e}) but left a {:?} at the path",
                            path.display(),
                            m.file_type()
                        ));
                    }
                    failed.push(format!("{:?}: {e}", e.kind()));
                }
            }
            let now: Vec<_> = watched.iter().map(|p| snapshot(p)).collect();
            if now != before {
                violations.push(format!(
                    "after bind {i}-{tag}: files outside the socket changed: {before:?} -> {now:?} \
                     ({:?})",
                    watched
                ));
            }
            if !violations.is_empty() {
                break 'binds;
            }
        }
    }
    let fds_after = fd_count(std::process::id());
    for v in &violations {
        println!("CHILD violation {v}");
    }
    if let Some(first) = failed.first() {
        println!("CHILD example {first}");
    }
    println!(
        "CHILD done {ok} {} {ok_after_swap} {fds_before} {fds_after}",
        failed.len()
    );
}

/// The attacker of the test above: watches `LOCALSOCK_TEST_DIR` with inotify and exchanges
/// each temporary directory a bind makes there with a decoy, alternating a directory holding
/// `s -> LOCALSOCK_TEST_BAIT_FILE` and a symlink to `LOCALSOCK_TEST_BAIT_DIR`. It strikes at
/// one of three moments of each bind in turn, each marked by an event the bind itself causes:
/// the directory appears (before the victim opens it), the victim opens it (before the bind,
/// `chmod` and `link` through the descriptor), and the socket is linked into place (before the
/// cleanup). A file named `stop` ends it; it then prints how many exchanges succeeded.
/// It runs on the victim's CPU ([`pin_to_the_shared_cpu`]), asleep in `read(2)` between
/// events.
#[test]
#[ignore = "child process entry point"]
#[allow(unsafe_code)]
fn child_directory_swapper() {
    if !is_child("child_directory_swapper") {
        return;
    }
    let dir = PathBuf::from(std::env::var_os("LOCALSOCK_TEST_DIR").unwrap());
    let bait_file = PathBuf::from(std::env::var_os("LOCALSOCK_TEST_BAIT_FILE").unwrap());
    let bait_dir = PathBuf::from(std::env::var_os("LOCALSOCK_TEST_BAIT_DIR").unwrap());
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();

    pin_to_the_shared_cpu();
    // SAFETY: plain FFI call with integer flags.
    let ifd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    assert!(
        ifd >= 0,
        "inotify_init1: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `ifd` is our inotify descriptor and the path is NUL-terminated.
    let wd =
        unsafe { libc::inotify_add_watch(ifd, c(&dir).as_ptr(), libc::IN_CREATE | libc::IN_OPEN) };
    assert!(
        wd >= 0,
        "inotify_add_watch: {}",
        std::io::Error::last_os_error()
    );

    let make_decoy = |k: usize| -> PathBuf {
        if k % 2 == 0 {
            let d = dir.join(format!("decoy-dir-{k}"));
            std::fs::create_dir(&d).unwrap();
            std::os::unix::fs::symlink(&bait_file, d.join("s")).unwrap();
            d
        } else {
            let l = dir.join(format!("decoy-link-{k}"));
            std::os::unix::fs::symlink(&bait_dir, &l).unwrap();
            l
        }
    };
    /// When to strike at the bind in progress.
    #[derive(Clone, Copy, PartialEq)]
    enum Moment {
        Created,
        Opened,
        Linked,
    }
    let mut decoy = make_decoy(0);
    let (mut swaps, mut binds) = (0usize, 0usize);
    // The temporary directory of the bind in progress, and when to exchange it.
    let mut target: Option<(std::ffi::OsString, Moment)> = None;
    println!("CHILD watching");
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(ifd, buf.as_mut_ptr().cast(), buf.len()) };
        assert!(n > 0, "inotify read: {}", std::io::Error::last_os_error());
        let mut at = 0usize;
        while at < n as usize {
            // SAFETY: the kernel wrote whole `inotify_event` records; read one unaligned.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
            let name_bytes = &buf[at + std::mem::size_of::<libc::inotify_event>()
                ..at + std::mem::size_of::<libc::inotify_event>() + ev.len as usize];
            let end = name_bytes
                .iter()
                .position(|b| *b == 0)
                .unwrap_or(name_bytes.len());
            let name = std::ffi::OsStr::from_bytes(&name_bytes[..end]).to_owned();
            at += std::mem::size_of::<libc::inotify_event>() + ev.len as usize;
            if name == "stop" {
                println!("CHILD swaps {swaps}");
                return;
            }
            let is_dir = ev.mask & libc::IN_ISDIR != 0;
            let created = ev.mask & libc::IN_CREATE != 0;
            if is_dir && created && name.as_bytes().starts_with(b".ls") {
                let moment = [Moment::Created, Moment::Opened, Moment::Linked][binds % 3];
                binds += 1;
                target = Some((name.clone(), moment));
            }
            let opened = ev.mask & libc::IN_OPEN != 0;
            let strike = match &target {
                Some((tmp, Moment::Created)) => created && is_dir && *tmp == name,
                Some((tmp, Moment::Opened)) => opened && is_dir && *tmp == name,
                // The socket file `sock-*` appeared: linked into place from the directory.
                Some((_, Moment::Linked)) => {
                    created && !is_dir && name.as_bytes().starts_with(b"sock-")
                }
                None => false,
            };
            if !strike {
                continue;
            }
            let (tmp, _) = target.take().unwrap();
            // SAFETY: both paths are NUL-terminated.
            let r = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    c(&dir.join(&tmp)).as_ptr(),
                    libc::AT_FDCWD,
                    c(&decoy).as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            };
            if r == 0 {
                swaps += 1;
                decoy = make_decoy(swaps);
            }
        }
    }
}

/// `Access::Group` means the socket file's group: in a set-group-ID directory of group 65534
/// (as `/run/<app>` directories often are), a root server's `Group` socket belongs to 65534,
/// not to root's group, with mode `0660`.
#[test]
#[ignore = "needs root to chown a directory to another group — run with: cargo test -p localsock --all-features --test directory_attacks -- --ignored"]
fn group_access_is_the_socket_files_group_which_a_setgid_directory_sets() {
    require_root("group_access_is_the_socket_files_group_which_a_setgid_directory_sets");
    let base = open_tempdir();
    let run = base.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::os::unix::fs::chown(&run, Some(0), Some(NOBODY)).unwrap();
    set_mode(&run, 0o2770);
    let path = run.join("app.sock");
    let listener = ListenerOptions::new()
        .access(Access::Group)
        .bind(&Name::path(&path).unwrap())
        .unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(meta.gid(), NOBODY);
    assert_eq!(meta.mode() & 0o7777, 0o660);
    drop(listener);
    assert!(!path.exists());
    // Nothing is left behind in the directory.
    assert_eq!(std::fs::read_dir(&run).unwrap().count(), 0);
}

/// On Linux the group/everyone bind goes through `/proc/thread-self/fd/N/s`, so a socket path
/// of the longest length `sun_path` allows needs no room for a temporary directory's name.
#[test]
fn group_and_everyone_binds_work_at_the_longest_path() {
    let base = open_tempdir();
    let prefix = base.path().as_os_str().len() + 1;
    let longest = base.path().join("x".repeat(107 - prefix));
    assert_eq!(longest.as_os_str().len(), 107);
    for (access, mode) in [(Access::Group, 0o660), (Access::Everyone, 0o666)] {
        let name = Name::path(&longest).unwrap();
        let listener = ListenerOptions::new().access(access).bind(&name).unwrap();
        let meta = std::fs::symlink_metadata(&longest).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, mode);
        drop(LocalStream::connect(&name).unwrap());
        drop(listener);
        assert!(!longest.exists());
    }
    assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0);
}

/// A `Group` bind that runs out of descriptors right after making its temporary directory
/// (the `openat` of that directory is the bind's third descriptor) fails with the OS error,
/// not with "the directory was replaced" (`PermissionDenied`, which blames another user), and
/// leaves no temporary directory behind.
#[test]
fn a_group_bind_out_of_descriptors_says_so_and_leaves_nothing() {
    let _w = watchdog(
        "a_group_bind_out_of_descriptors_says_so_and_leaves_nothing",
        60,
    );
    let base = open_tempdir();
    let mut child = Reaper(
        common::child(
            "child_group_bind_out_of_descriptors",
            &[("LOCALSOCK_TEST_DIR", base.path().to_str().unwrap())],
        )
        .spawn()
        .unwrap(),
    );
    let (status, out) = wait_and_read_stdout(&mut child.0, 30);
    assert!(status.success(), "{status:?} {out}");
    let line = out
        .lines()
        .find_map(|l| l.split_once("CHILD ").map(|(_, said)| said.trim()))
        .unwrap_or_else(|| panic!("the child said nothing: {out}"));
    let (kind, message) = line
        .strip_prefix("error ")
        .and_then(|l| l.split_once(' '))
        .unwrap_or_else(|| panic!("the bind did not fail: {line}"));
    assert_ne!(kind, "PermissionDenied", "{message}");
    assert!(message.contains("os error 24"), "not EMFILE: {message}");
    assert!(!message.contains("replaced"), "{message}");
    let left: Vec<_> = std::fs::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The child of the test above: lowers `RLIMIT_NOFILE` so that exactly two descriptor numbers
/// are free (the parent directory and the socket), binds `LOCALSOCK_TEST_DIR/sock` with
/// `Access::Group`, and prints `CHILD error <kind> <message>` (or `CHILD bound`).
#[test]
#[ignore = "child process entry point"]
#[allow(unsafe_code)]
fn child_group_bind_out_of_descriptors() {
    if !is_child("child_group_bind_out_of_descriptors") {
        return;
    }
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let dir = PathBuf::from(std::env::var_os("LOCALSOCK_TEST_DIR").unwrap());
    let name = Name::path(dir.join("sock")).unwrap();
    let mut opts = ListenerOptions::new();
    opts.access(Access::Group);
    // SAFETY: F_GETFD only asks whether the number is an open descriptor.
    let free: Vec<i32> = (0..)
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1)
        .take(2)
        .collect();
    let before = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(free[1] as u64 + 1),
            maximum: before.maximum,
        },
    )
    .unwrap();
    let result = opts.bind(&name);
    setrlimit(Resource::Nofile, before).unwrap();
    match result {
        Ok(_) => println!("CHILD bound"),
        Err(e) => println!("CHILD error {:?} {e}", e.kind()),
    }
}

// ---------------------------------------------------------------------------------------------
// 2. A kept `Name` whose private directory was removed and recreated by someone else
// ---------------------------------------------------------------------------------------------

/// A sticky, world-writable directory like `/tmp`, owned by the test, for `TMPDIR`.
fn sticky_tmpdir(base: &Path) -> PathBuf {
    let tmp = base.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    set_mode(&tmp, 0o1777);
    tmp
}

/// Every operation on a kept short name, in the order [`child_short_name`] runs them after
/// its first `wait`: blocking and async, connect and bind.
fn every_use() -> &'static [&'static str] {
    if cfg!(feature = "tokio") {
        &["connect", "async-connect", "bind", "async-bind"]
    } else {
        &["connect", "bind"]
    }
}

/// Starts [`child_short_name`] with `TMPDIR` = `tmp`, no `XDG_RUNTIME_DIR`, running `ops`.
fn short_name_child(base: &Path, tmp: &std::ffi::OsStr, ops: &[&str]) -> Reaper {
    let ops = ops.join(",");
    Reaper(
        child_from_copy(
            base,
            "child_short_name",
            None,
            &[("LOCALSOCK_TEST_OPS", &ops)],
        )
        .env("TMPDIR", tmp)
        .env_remove("XDG_RUNTIME_DIR")
        .spawn_copied()
        .unwrap(),
    )
}

/// Reads one `CHILD <op> ...` line per op in `ops` and returns the rest of each line.
fn outcomes(child: &mut Reaper, ops: &[&str]) -> Vec<String> {
    ops.iter()
        .map(|op| {
            let line = read_line(&mut child.0);
            println!("{line}");
            line.strip_prefix(&format!("{op} "))
                .unwrap_or_else(|| panic!("expected {op}, got {line}"))
                .to_owned()
        })
        .collect()
}

/// A program (root) keeps a short `Name` across a restart. Meanwhile its private directory
/// `<TMPDIR>/localsock-0` is removed (a tmp cleaner, the user) and another user recreates it
/// with a server inside. The program's next connect and bind with the kept `Name`, blocking and
/// async, fail with `PermissionDenied` naming the directory, and the stranger's server receives
/// nothing.
#[test]
#[ignore = "needs root to play another uid — run with: cargo test -p localsock --all-features --test directory_attacks -- --ignored"]
fn a_kept_name_refuses_a_private_directory_recreated_by_another_user() {
    let test = "a_kept_name_refuses_a_private_directory_recreated_by_another_user";
    require_root(test);
    let _w = watchdog(
        "a_kept_name_refuses_a_private_directory_recreated_by_another_user",
        120,
    );
    let base = open_tempdir();
    let tmp = sticky_tmpdir(base.path());
    let private = tmp.join("localsock-0");

    let mut victim = short_name_child(
        base.path(),
        tmp.as_os_str(),
        &[
            "new",
            "bind",
            "wait",
            "connect",
            "async-connect",
            "bind",
            "async-bind",
        ],
    );
    let svc = private.join("svc");
    assert_eq!(
        outcomes(&mut victim, &["new", "bind"]),
        [format!("ok {}", svc.display()), "ok".to_owned()]
    );

    // The private directory goes away; a stranger recreates it and serves inside.
    std::fs::remove_dir_all(&private).unwrap();
    let mut stranger = Reaper(
        child_from_copy(
            base.path(),
            "child_stranger_squats",
            Some(NOBODY),
            &[("LOCALSOCK_TEST_PATH", svc.to_str().unwrap())],
        )
        .spawn_copied()
        .unwrap(),
    );
    assert_eq!(read_line(&mut stranger.0), "listening");
    assert_eq!(std::fs::metadata(&private).unwrap().uid(), NOBODY);

    victim.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    for outcome in outcomes(&mut victim, every_use()) {
        assert!(outcome.starts_with("PermissionDenied|"), "{outcome}");
        assert!(
            outcome.contains(&private.display().to_string()),
            "{outcome}"
        );
        assert!(outcome.contains("owned by uid 65534"), "{outcome}");
    }
    stranger
        .0
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"report\n")
        .unwrap();
    assert_eq!(read_line(&mut stranger.0), "nobody came");
}

/// The same without another user: a kept `Name` whose directory became group/world accessible,
/// then was replaced by a symlink, is refused by every connect and bind from then on.
#[test]
fn a_kept_name_refuses_its_private_directory_once_it_is_unsafe() {
    let _w = watchdog(
        "a_kept_name_refuses_its_private_directory_once_it_is_unsafe",
        60,
    );
    let base = open_tempdir();
    let tmp = sticky_tmpdir(base.path());
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let private = tmp.join(format!("localsock-{uid}"));
    let mut ops = vec!["new", "bind", "wait"];
    ops.extend(every_use());
    ops.push("wait");
    ops.extend(every_use());
    let mut victim = short_name_child(base.path(), tmp.as_os_str(), &ops);
    outcomes(&mut victim, &["new", "bind"]);

    set_mode(&private, 0o777);
    victim.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    for outcome in outcomes(&mut victim, every_use()) {
        assert!(outcome.starts_with("PermissionDenied|"), "{outcome}");
        assert!(
            outcome.contains(&private.display().to_string()),
            "{outcome}"
        );
        assert!(outcome.contains("0777"), "{outcome}");
    }
    assert_eq!(std::fs::read_dir(&private).unwrap().count(), 0);

    let elsewhere = base.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    set_mode(&elsewhere, 0o700);
    std::fs::remove_dir(&private).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &private).unwrap();
    victim.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    for outcome in outcomes(&mut victim, every_use()) {
        assert!(outcome.starts_with("PermissionDenied|"), "{outcome}");
        assert!(outcome.contains("symbolic link"), "{outcome}");
    }
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

/// Making a short name and connecting with it create nothing (`localsock probe` used to make
/// `localsock-<uid>` wherever TMPDIR pointed); a connect finds `NotFound`; the first bind
/// creates the directory, `0700`; a kept name whose directory was removed gets it back on its
/// next bind.
#[test]
fn only_bind_creates_the_private_directory() {
    let _w = watchdog("only_bind_creates_the_private_directory", 60);
    let base = open_tempdir();
    let tmp = sticky_tmpdir(base.path());
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let private = tmp.join(format!("localsock-{uid}"));
    let mut ops = vec!["new", "connect"];
    if cfg!(feature = "tokio") {
        ops.push("async-connect");
    }
    let first_len = ops.len();
    ops.extend(["wait", "bind", "wait", "connect", "wait"]);
    if cfg!(feature = "tokio") {
        ops.push("async-bind");
    }
    let mut victim = short_name_child(base.path(), tmp.as_os_str(), &ops);
    let first = outcomes(&mut victim, &ops[..first_len]);
    assert_eq!(first[0], format!("ok {}", private.join("svc").display()));
    for connect in &first[1..] {
        assert!(connect.starts_with("NotFound|"), "{connect}");
        assert!(
            connect.contains(&private.display().to_string()),
            "{connect}"
        );
    }
    assert!(!private.exists(), "made without a bind");
    victim.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let bind = outcomes(&mut victim, &["bind"]);
    assert_eq!(bind, ["ok"]);
    let meta = std::fs::symlink_metadata(&private).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o7777, 0o700);
    assert_eq!(meta.uid(), uid);

    // Removed while the name is kept: connect says NotFound, the next bind recreates it.
    std::fs::remove_dir_all(&private).unwrap();
    victim.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let again = outcomes(&mut victim, &["connect"]);
    assert!(again[0].starts_with("NotFound|"), "{again:?}");
    assert!(!private.exists());
    victim.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    if cfg!(feature = "tokio") {
        assert_eq!(outcomes(&mut victim, &["async-bind"]), ["ok"]);
        assert_eq!(
            std::fs::symlink_metadata(&private).unwrap().mode() & 0o7777,
            0o700
        );
    }
}

/// An empty TMPDIR counts as unset (`/tmp`), and a relative one is refused with a message
/// naming TMPDIR; neither creates anything in the current directory.
#[test]
fn an_empty_tmpdir_is_unset_and_a_relative_one_is_refused() {
    let _w = watchdog("an_empty_tmpdir_is_unset_and_a_relative_one_is_refused", 60);
    let base = open_tempdir();
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let mut empty = short_name_child(base.path(), "".as_ref(), &["new"]);
    assert_eq!(
        outcomes(&mut empty, &["new"]),
        [format!("ok /tmp/localsock-{uid}/svc")]
    );
    let mut relative = short_name_child(base.path(), "rel/tmp".as_ref(), &["new"]);
    let out = outcomes(&mut relative, &["new"]);
    assert!(out[0].starts_with("InvalidInput|"), "{out:?}");
    assert!(out[0].contains("TMPDIR"), "{out:?}");
    drop((empty, relative));
    // The children ran in `base`: nothing but the copied binary is there.
    let left: Vec<_> = std::fs::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["bin"], "{left:?}");
}

/// Runs the comma-separated `LOCALSOCK_TEST_OPS` on the short name `svc` and prints `CHILD <op>
/// <outcome>` for each: `new` (makes the name, printing its path), `connect`, `async-connect`,
/// `bind`, `async-bind` (each drops what it made at once), `wait` (reads a line from stdin,
/// prints nothing).
#[test]
#[ignore = "child process entry point"]
fn child_short_name() {
    if !is_child("child_short_name") {
        return;
    }
    let ops = std::env::var("LOCALSOCK_TEST_OPS").unwrap();
    #[cfg(feature = "tokio")]
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let show = |op: &str, r: std::io::Result<()>| match r {
        Ok(()) => println!("CHILD {op} ok"),
        Err(e) => println!("CHILD {op} {:?}|{e}", e.kind()),
    };
    let mut name = None;
    for op in ops.split(',') {
        let n = || name.as_ref().expect("`new` first");
        match op {
            "new" => match Name::new("svc") {
                Ok(made) => {
                    println!("CHILD new ok {made}");
                    name = Some(made);
                }
                Err(e) => println!("CHILD new {:?}|{e}", e.kind()),
            },
            "wait" => {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).unwrap();
            }
            "connect" => show(op, LocalStream::connect(n()).map(drop)),
            "bind" => show(op, LocalListener::bind(n()).map(drop)),
            #[cfg(feature = "tokio")]
            "async-connect" => show(
                op,
                rt.block_on(localsock::tokio::LocalStream::connect(n()))
                    .map(drop),
            ),
            #[cfg(feature = "tokio")]
            "async-bind" => show(
                op,
                rt.block_on(async { localsock::tokio::LocalListener::bind(n()).map(drop) }),
            ),
            other => panic!("unknown op {other}"),
        }
    }
}

/// A user whose umask takes the owner's own bits (`0177`, as some daemons set to make private
/// files) still gets a usable `0700` private directory from its first bind: `mkdir(0700)`
/// alone leaves `0600`, which passes the "no group or other access" check but lets no one
/// (not even the owner) create the socket in it, for good. Played as uid 65534 (root would
/// not notice: it may search any directory).
#[test]
#[ignore = "needs root to play another uid — run with: cargo test -p localsock --all-features --test directory_attacks -- --ignored"]
#[allow(unsafe_code)]
fn the_first_bind_makes_a_usable_private_directory_whatever_the_umask() {
    require_root("the_first_bind_makes_a_usable_private_directory_whatever_the_umask");
    let _w = watchdog(
        "the_first_bind_makes_a_usable_private_directory_whatever_the_umask",
        60,
    );
    let base = open_tempdir();
    let tmp = sticky_tmpdir(base.path());
    let ops = ["new", "bind"];
    let mut cmd = child_from_copy(
        base.path(),
        "child_short_name",
        Some(NOBODY),
        &[("LOCALSOCK_TEST_OPS", &ops.join(","))],
    );
    cmd.env("TMPDIR", &tmp).env_remove("XDG_RUNTIME_DIR");
    // SAFETY: between fork and exec the closure only calls umask(2), which cannot fail.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o177);
            Ok(())
        });
    }
    let mut child = Reaper(cmd.spawn_copied().unwrap());
    let got = outcomes(&mut child, &ops);
    assert!(got[0].starts_with("ok"), "{got:?}");
    assert_eq!(got[1], "ok", "the bind failed in its own new directory");
    let dir = tmp.join(format!("localsock-{NOBODY}"));
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o700, "{}", dir.display());
    assert_eq!(meta.uid(), NOBODY);
}

/// The stranger: creates the directory of `LOCALSOCK_TEST_PATH` (`0755`), listens there with
/// `Access::Everyone`, and after a line on stdin says whether any client connected.
#[test]
#[ignore = "child process entry point"]
fn child_stranger_squats() {
    if !is_child("child_stranger_squats") {
        return;
    }
    let path = PathBuf::from(std::env::var_os("LOCALSOCK_TEST_PATH").unwrap());
    std::fs::create_dir(path.parent().unwrap()).unwrap();
    set_mode(path.parent().unwrap(), 0o755);
    let listener = ListenerOptions::new()
        .access(Access::Everyone)
        .bind(&Name::path(&path).unwrap())
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    println!("CHILD listening");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => println!("CHILD nobody came"),
        Err(e) => println!("CHILD accept error {e}"),
        Ok(mut s) => {
            let mut got = Vec::new();
            let _ = s.set_read_timeout(Some(std::time::Duration::from_millis(200)));
            let _ = s.read_to_end(&mut got);
            println!("CHILD a client came and sent {} bytes", got.len());
        }
    }
}
