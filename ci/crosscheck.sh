#!/usr/bin/env bash
# Type-checks the library for macOS and FreeBSD, whose Unix backends differ from Linux
# (getpeereid/LOCAL_PEERPID, SO_NOSIGPIPE, accept without accept4, bind via a private dir), with
# every feature: that includes `shm`, whose macOS (shm_open) and FreeBSD (memfd + seals) backends
# are checked here only (nothing runs them).
# std is rebuilt for each target with -Zbuild-std (on a stable compiler, RUSTC_BOOTSTRAP=1);
# `cargo check` needs no linker or SDK.
#
# Needs Debian's rustc-web, cargo-web and rust-web-src (a compiler with its std sources, at
# /usr/bin): installed here with apt-get when missing (root, or sudo), skipped with
# CROSSCHECK_SKIP_APT=1. ci/windows.sh installs the same packages.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(rustc-web cargo-web rust-web-src)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 && ${CROSSCHECK_SKIP_APT:-0} != 1 ]]; then
    echo "==> [crosscheck] apt-get install ${missing[*]}"
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get
        -o DPkg::Lock::Timeout=900 -o Acquire::Retries=3)
    "${apt[@]}" update -qq
    "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}"
fi

export PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CROSSCHECK_TARGET_DIR:-target/crosscheck}
# -Zbuild-std finds std's sources through the sysroot; rust-web-src normally links them there.
sysroot=$(/usr/bin/rustc --print sysroot)
if [[ ! -f $sysroot/lib/rustlib/src/rust/library/std/Cargo.toml ]]; then
    ver=$(/usr/bin/rustc --version | awk '{print $2}')
    if [[ ! -f /usr/src/rustc-$ver/library/std/Cargo.toml ]]; then
        echo "crosscheck: no std sources for rustc $ver (install rust-web-src)" >&2
        exit 1
    fi
    mkdir -p "$sysroot/lib/rustlib/src"
    ln -sfn "/usr/src/rustc-$ver" "$sysroot/lib/rustlib/src/rust"
fi
for target in x86_64-apple-darwin x86_64-unknown-freebsd; do
    echo "==> [crosscheck] cargo check --target $target"
    /usr/bin/cargo check -Zbuild-std=std,panic_abort --target "$target" -p localsock --all-features
done
