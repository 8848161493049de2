#!/usr/bin/env bash
# The long fuzzing run: every target of tests/fuzz.rs for a while, with executions per target.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET: default 600. TARGET: checkpoint, pickle, config, settings, image, probe,
# names (default all). Environment: FUZZ_EXECS (most executions per target), FUZZ_SEED (default 1),
# FUZZ_OUT (where inputs that fail are saved; default target/fuzz-findings), CARGO_TARGET_DIR.
# Exit status 0 when no target found anything. Builds the test binary first (dev profile: overflow
# checks and debug assertions on, as in `cargo test`).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
seconds=${1:-600}
shift || true
case "$seconds" in
    '' | *[!0-9.]*) echo "run.sh: SECONDS_PER_TARGET must be a number" >&2; exit 2 ;;
esac
targets=$(IFS=,; echo "$*")
export FUZZ_SECONDS=$seconds FUZZ_TARGETS=$targets
start=$(date +%s)
cargo test --test app --quiet -- --ignored --exact fuzz::long_run --nocapture --test-threads 1
echo "run.sh: done in $(( $(date +%s) - start )) s"
