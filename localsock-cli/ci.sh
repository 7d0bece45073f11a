#!/usr/bin/env bash
# CI steps for the `localsock` command (crate localsock-cli).
#
#   bash localsock-cli/ci.sh
#
# 1. rustfmt --check on the CLI's sources and tests;
# 2. clippy -D warnings on all its targets;
# 3. its tests (real processes: listen/connect, echo, probe, bench --quick --json smoke);
# 4. the README's main-job command in its quick form, release build: `bench --quick` must run
#    and print the table (figures are not checked: speed is not tested).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> [cli] rustfmt --check"
rustfmt --edition 2021 --check localsock-cli/src/*.rs localsock-cli/tests/*.rs

echo "==> [cli] clippy"
cargo clippy -p localsock-cli --all-targets --all-features -- -D warnings

echo "==> [cli] tests"
timeout 600 cargo test -p localsock-cli

echo "==> [cli] bench --quick (release)"
out=$(timeout 600 cargo run --release -q -p localsock-cli -- bench --quick --pin none)
echo "$out"
grep -q '^latency median' <<<"$out"
echo "==> [cli] OK"
