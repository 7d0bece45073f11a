#!/usr/bin/env bash
# Runs the `#[ignore]`d tests of test binaries explicitly and FAILS unless every one of them ran
# and passed. Tests that need something a plain `cargo test` may lack (root to play another
# user, the Qt peer) are `#[ignore = "<why> — run with <how>"]`, so a plain run lists them as
# ignored instead of passing them unchecked; CI, which has what they need, runs them here.
#
#   bash ci/ignored.sh PACKAGE [BINARY...]
#
#   PACKAGE    the package directory (localsock, localsock-cli)
#   BINARY...  its test binaries (tests/NAME.rs or tests/NAME/main.rs) whose ignored tests to
#              run; each must have at least one. Default: every test binary of PACKAGE except
#              those in IGNORED_ELSEWHERE, and then at least one test in all must have run.
#
# Which tests: every ignored test the binary lists (`-- --ignored --list`), except child-process
# entry points (a name whose last `::` segment starts with `child_`: they are run by their
# parent test, see localsock/tests/common/mod.rs). No list of test names is kept here, so a new
# ignored test is picked up by itself. Each is then run with `--exact`, and the run must report
# `test NAME ... ok` for each of them and as many passed tests as there were names.
#
# Environment:
#   CARGO_TEST_FLAGS    cargo options (default: --workspace --all-features, as the README's
#                       test command, so its build is reused)
#   IGNORED_ELSEWHERE   binaries another CI leg runs (default: qt_interop, run by ci/qt.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

pkg=${1:?usage: bash ci/ignored.sh PACKAGE [BINARY...]}
shift
read -r -a flags <<<"${CARGO_TEST_FLAGS:---workspace --all-features}"
read -r -a elsewhere <<<"${IGNORED_ELSEWHERE-qt_interop}"

explicit=0
bins=("$@")
if [[ ${#bins[@]} -gt 0 ]]; then
    explicit=1
else
    for f in "$pkg"/tests/*.rs "$pkg"/tests/*/main.rs; do
        [[ -e $f ]] || continue
        case $f in
        */main.rs) b=$(basename "$(dirname "$f")") ;;
        *) b=$(basename "$f" .rs) ;;
        esac
        [[ $b == common ]] && continue
        skip=0
        for e in "${elsewhere[@]}"; do [[ $b == "$e" ]] && skip=1; done
        [[ $skip == 1 ]] || bins+=("$b")
    done
fi

total=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for bin in "${bins[@]}"; do
    list=$(cargo test "${flags[@]}" --test "$bin" -- --ignored --list --format terse)
    mapfile -t names < <(sed -n 's/: test$//p' <<<"$list" | grep -Ev '(^|::)child_' || true)
    if [[ ${#names[@]} -eq 0 ]]; then
        if [[ $explicit == 1 ]]; then
            echo "ignored.sh: $bin has no ignored tests to run, but CI expects some" >&2
            exit 1
        fi
        echo "ignored.sh: $bin: no ignored tests"
        continue
    fi
    echo "ignored.sh: $bin: running ${#names[@]} ignored tests: ${names[*]}"
    cargo test "${flags[@]}" --test "$bin" -- --ignored --exact "${names[@]}" 2>&1 | tee "$log"
    missing=()
    for n in "${names[@]}"; do
        grep -Fxq "test $n ... ok" "$log" || missing+=("$n")
    done
    passed=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$log" | tail -n1)
    if [[ ${#missing[@]} -gt 0 || "${passed:-0}" != "${#names[@]}" ]]; then
        echo "ignored.sh: $bin: expected ${#names[@]} tests to pass, ${passed:-0} passed;" \
            "did not run or pass: ${missing[*]:-(none; the count differs)}" >&2
        exit 1
    fi
    total=$((total + ${#names[@]}))
done
if [[ $total -eq 0 ]]; then
    echo "ignored.sh: no ignored test ran in ${bins[*]:-$pkg}: CI expects some" >&2
    exit 1
fi
echo "ignored.sh: all $total ignored tests ran and passed (${bins[*]})"
