#!/usr/bin/env bash
# The single test command (README; CI's .ci/run execs it).
#   1. install test dependencies (idempotent: scripts/setup-test-deps.sh)
#   2. cargo build --release --workspace --all-targets
#   3. cargo test  --release --workspace          (same profile: nothing compiles twice)
#   4. .venv/bin/pytest -q tests/python           (real clients against target/release/sapper)
# Exits non-zero on any failure. The last line printed is pytest's summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

PHASES=()
PYTEST_LOG="$(mktemp -t sapper-pytest.XXXXXX)"
trap 'rm -f "$PYTEST_LOG"' EXIT

phase() {
    local name="$1"
    shift
    echo "==> $name: $*"
    local start=$SECONDS rc=0
    "$@" || rc=$?
    local took=$((SECONDS - start))
    PHASES+=("$(printf '%-12s %5ss  %s' "$name" "$took" "$([ "$rc" = 0 ] && echo ok || echo "FAILED (exit $rc)")")")
    echo "==> $name: ${took}s (exit $rc)"
    if [ "$rc" != 0 ]; then
        summary
        exit "$rc"
    fi
}

summary() {
    echo "==> timings"
    local line
    for line in "${PHASES[@]}"; do
        echo "    $line"
    done
    # Repeat pytest's closing line so it is the last line of the run.
    if [ -s "$PYTEST_LOG" ]; then
        tail -n 1 "$PYTEST_LOG"
    fi
}

run_pytest() {
    # pipefail carries pytest's exit code through tee.
    "$ROOT/.venv/bin/pytest" -q tests/python 2>&1 | tee "$PYTEST_LOG"
}

phase setup bash scripts/setup-test-deps.sh
phase build cargo build --release --workspace --all-targets
phase cargo-test cargo test --release --workspace

export SAPPER_BIN="$ROOT/target/release/sapper"
phase pytest run_pytest

summary
