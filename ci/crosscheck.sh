#!/usr/bin/env bash
# Type-checks the library for macOS and FreeBSD, whose Unix backends differ from Linux
# (getpeereid/LOCAL_PEERPID, SO_NOSIGPIPE, accept without accept4, bind via a private dir).
# Needs Debian's rustc-web + rust-web-src (ci/windows.sh installs them): std is rebuilt for each
# target with -Zbuild-std; `cargo check` needs no linker or SDK.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CROSSCHECK_TARGET_DIR:-target/crosscheck}
for target in x86_64-apple-darwin x86_64-unknown-freebsd; do
    echo "==> [crosscheck] cargo check --target $target"
    /usr/bin/cargo check -Zbuild-std=std,panic_abort --target "$target" -p localsock --all-features
done
