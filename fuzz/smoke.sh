#!/usr/bin/env bash
# Build every fuzz target and run each for a bounded time, one at a time.
#
#   fuzz/smoke.sh [SECONDS_PER_TARGET] [TARGET...]
#
# CI calls it with no arguments (10 s per target). Seeds in
# fuzz/corpus/TARGET/ are read, never written: new inputs go to a scratch
# directory (fuzz/work/TARGET/, kept between runs, git-ignored). A crash
# leaves its input in fuzz/artifacts/TARGET/ and fails the script. One
# summary line per target: executions and libFuzzer's coverage counters.
# Stable toolchain: `-s none` needs no nightly (no RUSTC_BOOTSTRAP).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-${FUZZ_SMOKE_SECS:-10}}
shift || true
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --version 0.13.2 --locked
fi
cargo fuzz build -s none
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
status=0
for t in "${targets[@]}"; do
    mkdir -p "work/$t"
    log="work/$t.log"
    start=$SECONDS
    # -rss_limit_mb / -malloc_limit_mb: memory within bounds is a finding;
    # -timeout: one input taking 10 s is a finding (a hang).
    if cargo fuzz run -s none "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' || true)
    echo "fuzz $t: $result, ${execs:-?} execs in $((SECONDS - start))s, ${last:-no stats}"
    if [ "$result" = FAILED ]; then
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20 || true
    fi
done
exit $status
