//! Short names resolve to a private per-user directory that is created 0700 and verified
//! before use; bad names are InvalidInput errors that say why. The directory cases run in child
//! processes, since they set TMPDIR / XDG_RUNTIME_DIR.

mod common;

use std::io::ErrorKind;

use localsock::Name;

#[test]
fn bad_names_are_invalid_input() {
    for bad in ["", "a\0b", "a/b", ".", ".."] {
        let err = Name::new(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
    }
    let err = Name::new("").unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn display_is_the_resolved_endpoint() {
    let name = Name::new("display-check").unwrap();
    let shown = name.to_string();
    assert!(shown.ends_with("display-check"), "{shown}");
    #[cfg(unix)]
    assert_eq!(name.fs_path().unwrap().display().to_string(), shown);
    #[cfg(windows)]
    assert_eq!(shown, r"\\.\pipe\display-check");
}

#[cfg(unix)]
mod unix {
    use super::*;
    use crate::common::{child, is_child, read_line, wait_bounded};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    fn uid() -> u32 {
        std::fs::metadata("/proc/self").unwrap().uid()
    }

    /// Runs `Name::new(short)` in a child with TMPDIR = `tmp` and no XDG_RUNTIME_DIR (or the
    /// given one), and returns what it printed.
    fn resolve_in_child(tmp: &Path, xdg: Option<&Path>, short: &str) -> String {
        let mut cmd = child(
            "unix::child_resolve",
            &[
                ("TMPDIR", tmp.to_str().unwrap()),
                ("LOCALSOCK_TEST_SHORT", short),
            ],
        );
        match xdg {
            Some(x) => cmd.env("XDG_RUNTIME_DIR", x),
            None => cmd.env_remove("XDG_RUNTIME_DIR"),
        };
        let mut c = cmd.spawn().unwrap();
        let line = read_line(&mut c);
        assert!(wait_bounded(&mut c, 20).success());
        line
    }

    #[test]
    #[ignore = "child process entry point"]
    fn child_resolve() {
        if !is_child("unix::child_resolve") {
            return;
        }
        let short = std::env::var("LOCALSOCK_TEST_SHORT").unwrap();
        match Name::new(&short) {
            Ok(n) => {
                // Prove the name is usable: bind and drop.
                let l = localsock::LocalListener::bind(&n);
                println!("CHILD ok {} bind={}", n, l.is_ok());
            }
            Err(e) => println!("CHILD err {:?}|{e}", e.kind()),
        }
    }

    #[test]
    fn short_name_creates_a_private_directory_under_tmpdir() {
        let tmp = tempfile::tempdir().unwrap();
        let line = resolve_in_child(tmp.path(), None, "svc");
        let dir = tmp.path().join(format!("localsock-{}", uid()));
        assert_eq!(line, format!("ok {} bind=true", dir.join("svc").display()));
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o777, 0o700);
        assert_eq!(meta.uid(), uid());
    }

    #[test]
    fn xdg_runtime_dir_is_used_when_set_and_safe() {
        let tmp = tempfile::tempdir().unwrap();
        let xdg = tempfile::tempdir().unwrap();
        std::fs::set_permissions(xdg.path(), PermissionsExt::from_mode(0o700)).unwrap();
        let line = resolve_in_child(tmp.path(), Some(xdg.path()), "svc");
        assert_eq!(
            line,
            format!("ok {} bind=true", xdg.path().join("svc").display())
        );
        // An unsafe XDG_RUNTIME_DIR is refused, not silently used.
        std::fs::set_permissions(xdg.path(), PermissionsExt::from_mode(0o777)).unwrap();
        let line = resolve_in_child(tmp.path(), Some(xdg.path()), "svc");
        assert!(line.starts_with("err PermissionDenied|"), "{line}");
        assert!(line.contains("XDG_RUNTIME_DIR"), "{line}");
    }

    #[test]
    fn a_group_or_world_accessible_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(format!("localsock-{}", uid()));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o777)).unwrap();
        let line = resolve_in_child(tmp.path(), None, "svc");
        assert!(line.starts_with("err PermissionDenied|"), "{line}");
        assert!(line.contains("0777"), "{line}");
        assert!(line.contains(&dir.display().to_string()), "{line}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "nothing created in it"
        );
    }

    #[test]
    fn a_symlinked_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(format!("localsock-{}", uid()));
        std::os::unix::fs::symlink(elsewhere.path(), &dir).unwrap();
        let line = resolve_in_child(tmp.path(), None, "svc");
        assert!(line.starts_with("err PermissionDenied|"), "{line}");
        assert!(line.contains("symbolic link"), "{line}");
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    /// Another user pre-created our directory (squatting): refused, nothing created in it.
    #[test]
    #[ignore = "needs root to chown a directory to another user — run as root: cargo test -p localsock --test names -- --ignored"]
    fn a_directory_owned_by_another_user_is_refused() {
        let _w = common::root_test("a_directory_owned_by_another_user_is_refused", 30);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(format!("localsock-{}", uid()));
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        let line = resolve_in_child(tmp.path(), None, "svc");
        assert!(line.starts_with("err PermissionDenied|"), "{line}");
        assert!(line.contains("owned by uid 65534"), "{line}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }
}
