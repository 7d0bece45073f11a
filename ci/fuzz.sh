#!/usr/bin/env bash
# Fuzzes localsock with libFuzzer for a fixed time, split between the targets: `name` (name
# parsing), `frame` (the framed message transport of Apple platforms, through a real socket
# pair, on Linux) and `shm` (the shared-memory data path, its control words overwritten between
# operations as a hostile peer would).
#
#   ci/fuzz.sh                 # 10 minutes (FUZZ_SECONDS=600)
#   SMOKE=60 ci/fuzz.sh        # CI smoke run: 60 s of fuzzing, in total, after the build
#   FUZZ_SECONDS=3600 ci/fuzz.sh
#   FUZZ_SANITIZER=none ci/fuzz.sh   # without AddressSanitizer (the code fuzzed is safe Rust)
#
# The fuzz project (fuzz/) is a standard cargo-fuzz project: `cargo fuzz run name` works where
# cargo-fuzz and a nightly toolchain are installed. This script needs neither: it passes the
# same flags cargo-fuzz passes (SanitizerCoverage + AddressSanitizer) to the machine's stable
# toolchain with RUSTC_BOOTSTRAP=1, so it runs on a fresh CI machine with nothing to install.
#
# Each target's corpus starts from fuzz/seeds/<target> (committed: hand-written edge cases and any input that
# ever found a bug) and grows in a scratch directory. A crash leaves its input under
# $FUZZ_OUT/artifacts and fails the script; commit that input to fuzz/seeds/<target> with the fix.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${SMOKE:-${FUZZ_SECONDS:-600}}
target=$(rustc -vV | sed -n 's/^host: //p')
# A build directory of its own, outside the clone, so that later runs on the same machine
# rebuild only localsock (the first build compiles libFuzzer's C++ and takes a minute or two).
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/localsock-fuzz-target}
out=${FUZZ_OUT:-$CARGO_TARGET_DIR/fuzz-out}
mkdir -p "$out/artifacts"

# The flags cargo-fuzz 0.13 uses for `cargo fuzz build` (release, debug assertions, ASan).
sanitizer=${FUZZ_SANITIZER:-address}
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares"
flags+=" --cfg fuzzing -Cdebug-assertions -Cforce-frame-pointers"
if [ "$sanitizer" != none ]; then
  flags+=" -Zsanitizer=$sanitizer"
fi

targets=(name frame shm)
echo "==> building the fuzz targets ${targets[*]} ($target, sanitizer $sanitizer)"
start=$(date +%s)
# --target keeps the instrumentation off build scripts and proc macros, as cargo-fuzz does.
RUSTC_BOOTSTRAP=1 RUSTFLAGS="$flags" \
  cargo build --release --locked --target "$target" --bin name --bin frame --bin shm
echo "    built in $(( $(date +%s) - start )) s"

# Short names resolve into a private directory under TMPDIR: give the run its own.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export TMPDIR=$scratch
unset XDG_RUNTIME_DIR

share=$(( seconds / ${#targets[@]} ))
(( share > 0 )) || share=1
declare -A what=(
  [name]="Name::new / path / abstract_name / qt"
  [frame]="the framed message transport (bytes and descriptors through a socket pair)"
  [shm]="the shared-memory data path (control words overwritten between operations)"
)
for t in "${targets[@]}"; do
  mkdir -p "$out/corpus-$t"
  echo "==> fuzzing ${what[$t]} for $share s"
  "$CARGO_TARGET_DIR/$target/release/$t" \
    -max_total_time="$share" \
    -max_len=4096 \
    -malloc_limit_mb=64 \
    -rss_limit_mb=1024 \
    -timeout=5 \
    -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/" \
    "$out/corpus-$t" "seeds/$t"
  echo "==> $t: no crash in $share s; corpus: $(ls "$out/corpus-$t" | wc -l) inputs"
done
