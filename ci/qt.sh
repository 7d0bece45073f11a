#!/usr/bin/env bash
# Qt interoperability (issue 6): install Qt 6 from Debian, build the C++ peer in interop/qt,
# and run localsock/tests/qt_interop/ against it. Idempotent: a second run installs nothing
# and rebuilds only what changed.
#
#   bash ci/qt.sh              # as root (CI), or as a user with sudo for apt-get
#
# Environment:
#   LOCALSOCK_QT_PEERS   where to build the peer (default: $CARGO_TARGET_DIR/qt-peers, else
#                        target/qt-peers); the tests find it through this variable
#   QT_SKIP_INSTALL=1    do not run apt-get (Qt 6 dev files, g++ and pkg-config already there)
#   CARGO_TARGET_DIR     as for cargo; the CLI is taken from its debug/ directory
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

section() { echo; echo "==> $*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
t_all=$(now)

section "qt: install qt6-base-dev, g++, pkg-config (Debian)"
t=$(now)
pkgs=(qt6-base-dev g++ pkg-config)
installed() {
    local p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
    done
}
if [[ "${QT_SKIP_INSTALL:-}" == 1 ]]; then
    echo "QT_SKIP_INSTALL=1: not installing"
elif installed; then
    echo "already installed: ${pkgs[*]}"
else
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
    apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get
        -o DPkg::Lock::Timeout=900 -o Acquire::Retries=3)
    log=$(mktemp)
    ok=0
    for attempt in 1 2 3; do
        if "${apt[@]}" update -qq >>"$log" 2>&1 \
            && "${apt[@]}" install -y -qq --no-install-recommends "${pkgs[@]}" >>"$log" 2>&1; then
            ok=1
            break
        fi
        echo "apt-get failed (attempt $attempt of 3); retrying in $((attempt * 15)) s" >&2
        sleep $((attempt * 15))
    done
    if [[ $ok != 1 ]]; then
        tail -n 40 "$log" >&2
        echo "qt: could not install ${pkgs[*]}" >&2
        exit 1
    fi
    rm -f "$log"
fi
echo "Qt $(pkg-config --modversion Qt6Network), $(g++ --version | head -n1)"
t_install=$(since "$t")
echo "install: $t_install"

section "qt: build the Qt peer (interop/qt)"
t=$(now)
peers=${LOCALSOCK_QT_PEERS:-${CARGO_TARGET_DIR:-$root/target}/qt-peers}
bash interop/qt/build.sh "$peers"
t_build=$(since "$t")
echo "build: $t_build"

section "qt: the ignored tests of qt_interop (LOCALSOCK_QT_PEERS=$peers)"
t=$(now)
# The same flags as .ci/run's `cargo test --workspace --all-features`, so that its build is
# reused. The CLI cases (`localsock connect` to a Qt server, Qt clients to `localsock echo`)
# run the debug build of the CLI.
cargo build --workspace --all-features --bins
export LOCALSOCK_CLI=${CARGO_TARGET_DIR:-$root/target}/debug/localsock
# Every Qt test is #[ignore]d (a plain `cargo test` has no Qt peer): ci/ignored.sh runs them all
# and fails unless each one ran and passed.
LOCALSOCK_QT_PEERS=$peers bash ci/ignored.sh localsock qt_interop
t_test=$(since "$t")

section "qt: done in $(since "$t_all") (install $t_install, build $t_build, tests $t_test)"
