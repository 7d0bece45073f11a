#!/usr/bin/env bash
# ci/windows.sh - the Windows leg of CI: lint and test localsock for x86_64-pc-windows-gnu,
# running the tests under Wine 8.0, on Debian 12 (bookworm) x86_64.
#
# Adapted from ../shared/windows/wine-test.sh (read its README for the pitfalls). What it does:
#   1. apt-get install Debian's rustc-web 1.96 (+ std sources, clippy), mingw-w64 and wine64
#      (idempotent: skipped when installed; apt retries);
#   2. a Wine prefix (kept between runs), pre-started wine services, and the
#      bcryptprimitives.dll shim that Rust >= 1.78 needs under Wine 8.0;
#   3. `cargo clippy --target x86_64-pc-windows-gnu -p localsock --all-targets --all-features
#      -- -D warnings` (std rebuilt with -Zbuild-std, hence RUSTC_BOOTSTRAP=1);
#      then `cargo doc` for that target with RUSTDOCFLAGS=-Dwarnings;
#   4. `cargo test -p localsock --all-features --target x86_64-pc-windows-gnu`, test exes run
#      by wine64 (--all-features: the `tokio` module's Windows code is tested too); then the
#      CLI's `forward` between a named pipe and TCP (localsock-cli/tests/windows_forward.rs).
# A timing summary goes to stderr at the end. Exits non-zero on any failure.
#
# Usage:  bash ci/windows.sh [extra `cargo test` args, e.g. -- --nocapture]
# Env:    WINCI_WORK        Wine prefix + shim (default /tmp/localsock-winci)
#         CARGO_TARGET_DIR  default target/windows in the workspace (std is built once per dir)
#         WINCI_SKIP_APT=1  packages already installed
#         WINCI_SETUP_ONLY=1  stop after the toolchain and Wine setup
#         WINCI_TEST_TIMEOUT  seconds for the whole test run (default 900)
# Needs:  root for apt-get (skipped when everything is installed).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WINCI_WORK:-/tmp/localsock-winci}
TARGET=x86_64-pc-windows-gnu
WINE=/usr/lib/wine/wine64             # Debian's wine64 has no /usr/bin/wine64 (that is in `wine`)
WINESERVER=/usr/lib/wine/wineserver
mkdir -p "$WORK"

declare -a TIMINGS=()
T_START=$(date +%s.%N)
step() {                              # step "name" cmd...: runs cmd, records its wall time
    local name=$1; shift
    local t0; t0=$(date +%s.%N)
    echo "==> [windows] $name"
    local rc=0
    "$@" || rc=$?
    local dt; dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    TIMINGS+=("$(printf '%-36s %7ss%s' "$name" "$dt" "$([[ $rc -eq 0 ]] || echo "  (FAILED, exit $rc)")")")
    return $rc
}
summary() {                           # to stderr, so cargo's last "test result:" stays last on stdout
    local total; total=$(awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    {
        echo "==> [windows] timings"
        local t; for t in "${TIMINGS[@]}"; do echo "    $t"; done
        printf '    %-36s %7ss\n' "total" "$total"
    } >&2
}
on_exit() {
    local rc=$?
    if [[ -n ${WINEPREFIX:-} && -x $WINESERVER ]]; then
        "$WINESERVER" -k >/dev/null 2>&1 || true   # leave no wine processes behind
    fi
    summary
    if [[ $rc -eq 0 ]]; then echo "==> [windows] OK" >&2; else echo "==> [windows] FAILED (exit $rc)" >&2; fi
    exit $rc
}
trap on_exit EXIT

# ---------------------------------------------------------------- 1. packages
PKGS=(rustc-web cargo-web rust-web-src rust-web-clippy gcc-mingw-w64-x86-64 wine64)
install_packages() {
    local p missing=()
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        echo "already installed: ${PKGS[*]}"
        return 0
    fi
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get -o DPkg::Lock::Timeout=900 -o Acquire::Retries=3)
    local i
    for i in 1 2 3 4 5 6; do
        "${apt[@]}" update -qq && break
        echo "apt-get update failed (try $i), retrying in 20 s"
        sleep 20
    done
    for i in 1 2 3; do
        "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" && return 0
        echo "apt-get install failed (try $i), retrying in 20 s"
        sleep 20
    done
    return 1
}
[[ ${WINCI_SKIP_APT:-0} == 1 ]] || step "apt-get install" install_packages

# ---------------------------------------------------------------- 2. toolchain env
# rustup's ~/.cargo/bin may come first on PATH (a stable toolchain without a Windows std or
# rust-src): force Debian's cargo/rustc/rustdoc/clippy 1.96, whose sysroot is /usr.
export PATH=/usr/bin:$PATH
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
unset RUSTUP_TOOLCHAIN CARGO_BUILD_TARGET RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER || true
export RUSTC_BOOTSTRAP=1               # -Zbuild-std on a stable compiler
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=$WINE
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/windows}
export CARGO_PROFILE_DEV_DEBUG=line-tables-only   # smaller test exes; backtraces keep lines
export CARGO_TERM_COLOR=never
BUILD_STD=(-Zbuild-std=std,panic_abort)

check_toolchain() {
    local sysroot ver lib
    sysroot=$(/usr/bin/rustc --print sysroot)
    lib=$sysroot/lib/rustlib/src/rust/library
    if [[ ! -f $lib/std/Cargo.toml ]]; then    # rust-web-src normally ships this link itself
        ver=$(/usr/bin/rustc --version | awk '{print $2}')
        [[ -f /usr/src/rustc-$ver/library/std/Cargo.toml ]] || { echo "no std source for rustc $ver" >&2; return 1; }
        mkdir -p "$sysroot/lib/rustlib/src"
        ln -sfn "/usr/src/rustc-$ver" "$sysroot/lib/rustlib/src/rust"
    fi
    /usr/bin/cargo --version
    /usr/bin/rustc --version
    /usr/bin/cargo clippy --version
    echo "std source: $(readlink -f "$lib")"
    echo "target dir: $CARGO_TARGET_DIR"
}
step "check toolchain + std source" check_toolchain

# ---------------------------------------------------------------- 3. wine prefix
export WINEPREFIX=$WORK/wineprefix
export WINEARCH=win64
export WINEDEBUG=-all                  # hide "no driver could be loaded" and friends
export WINEDLLOVERRIDES="mscoree=;mshtml="   # never try to install wine-mono/gecko
export DISPLAY=                        # console programs need no X server
init_wine() {
    if [[ ! -f $WINEPREFIX/system.reg ]]; then
        timeout 300 "$WINE" wineboot --init </dev/null
        # Wait until wineboot's helpers are gone. Only after a fresh boot: with a persistent
        # wineserver already running for this prefix, -w would wait for nothing until timeout.
        timeout 120 "$WINESERVER" -w || true
    fi
    # Pre-start wineserver and wine's service processes with stdio on /dev/null: otherwise the
    # first test exe starts them and they inherit (and hold open) cargo's output pipes.
    "$WINESERVER" -p </dev/null >/dev/null 2>&1
    timeout 120 "$WINE" cmd /c exit </dev/null >/dev/null 2>&1 || true
    "$WINE" --version
}
step "wine prefix" init_wine

# Rust std >= 1.78 imports bcryptprimitives.dll!ProcessPrng; Wine 8.0 has no such DLL, so every
# Rust exe would fail to load (exit 53, c0000135). Install a shim forwarding to RtlGenRandom.
install_prng_shim() {
    local sys32=$WINEPREFIX/drive_c/windows/system32
    if [[ -e /usr/lib/x86_64-linux-gnu/wine/x86_64-windows/bcryptprimitives.dll ]]; then
        echo "wine ships bcryptprimitives.dll: no shim needed"; return 0
    fi
    [[ -f $sys32/bcryptprimitives.dll ]] && { echo "shim already installed"; return 0; }
    mkdir -p "$WORK/shim"
    cat > "$WORK/shim/bcryptprimitives.c" <<'C'
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buf, ULONG len); /* advapi32!RtlGenRandom */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n; len -= n;
    }
    return TRUE;
}
C
    printf 'LIBRARY bcryptprimitives.dll\nEXPORTS\n    ProcessPrng\n' > "$WORK/shim/bcryptprimitives.def"
    x86_64-w64-mingw32-gcc -O2 -s -shared -o "$WORK/shim/bcryptprimitives.dll" \
        "$WORK/shim/bcryptprimitives.c" "$WORK/shim/bcryptprimitives.def" -ladvapi32
    cp "$WORK/shim/bcryptprimitives.dll" "$sys32/"
}
step "bcryptprimitives shim" install_prng_shim

[[ ${WINCI_SETUP_ONLY:-0} == 1 ]] && exit 0

# ---------------------------------------------------------------- 4. lint + test
# Every check runs even when an earlier one failed, so one CI run reports them all; the script
# exits non-zero if any failed.
cd "$ROOT"
FAILED=()
step "cargo clippy (windows target)" \
    cargo clippy "${BUILD_STD[@]}" --target "$TARGET" -p localsock -p localsock-cli --all-targets --all-features -- -D warnings \
    || FAILED+=(clippy)
# Without features too: code only the async or shared-memory paths use must not be left unused.
step "cargo clippy (windows target, no features)" \
    cargo clippy "${BUILD_STD[@]}" --target "$TARGET" -p localsock --all-targets --no-default-features -- -D warnings \
    || FAILED+=(clippy-no-features)
# The Windows-only docs (os::windows, the sys::windows notes) are not built on Linux.
step "cargo doc (windows target)" env RUSTDOCFLAGS=-Dwarnings \
    cargo doc "${BUILD_STD[@]}" --target "$TARGET" -p localsock --all-features --no-deps \
    || FAILED+=(doc)
step "cargo test --no-run" \
    cargo test "${BUILD_STD[@]}" --target "$TARGET" -p localsock --all-features --no-run \
    || FAILED+=(test-build)
# A hang under wine must not eat the CI budget; the EXIT trap kills leftover wine processes.
step "cargo test under wine" timeout --kill-after=30 "${WINCI_TEST_TIMEOUT:-900}" \
    cargo test "${BUILD_STD[@]}" --target "$TARGET" -p localsock --all-features --no-fail-fast "$@" \
    || FAILED+=(tests)
# The CLI's `forward` between a named pipe and TCP, both ways (localsock-cli/tests/windows_forward.rs).
step "cargo test localsock forward under wine" timeout --kill-after=30 300 \
    cargo test "${BUILD_STD[@]}" --target "$TARGET" -p localsock-cli --test windows_forward \
    || FAILED+=(cli-forward)
if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "==> [windows] failed: ${FAILED[*]}" >&2
    exit 1
fi
