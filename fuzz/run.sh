#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 20), stopping at
# the first crash. Targets are built optimized with debug assertions (overflow
# checks on). Works on stable Rust (RUSTC_BOOTSTRAP=1 lets cargo-fuzz use
# the sanitizer flags it needs); no nightly toolchain is required.
#
#   bash fuzz/run.sh [SECONDS]
#
# Each target starts from its checked-in seeds (fuzz/corpus/<target>, never
# written to) plus a scratch corpus that grows during the run. A crash leaves
# its input in fuzz/artifacts/<target>/; keep it as tests/fuzz_crashes/<target>/
# (see tests/fuzz_regressions.rs) and fix the bug.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-20}"
export RUSTC_BOOTSTRAP=1
cargo_fuzz=(cargo fuzz)
command -v cargo-fuzz >/dev/null || cargo_fuzz=("$HOME/.cargo/bin/cargo-fuzz")

"${cargo_fuzz[@]}" build --debug-assertions
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

for target in $("${cargo_fuzz[@]}" list); do
    mkdir -p "$scratch/$target" "corpus/$target"
    echo "==> fuzz $target for ${seconds}s"
    # -rss_limit_mb bounds the whole process; -malloc_limit_mb fails any
    # single allocation over 256 MiB (a length the input claims but does not hold).
    log="$scratch/$target.log"
    set +e
    "${cargo_fuzz[@]}" run --debug-assertions "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=256 -print_final_stats=1 >"$log" 2>&1
    status=$?
    set -e
    grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 80 "$log" >&2
        echo "fuzz target $target failed (exit $status): the input is in fuzz/artifacts/$target/" >&2
        exit "$status"
    fi
done
echo "all fuzz targets ran ${seconds}s each without a crash"
