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

FIRST_FAILURE=0

# phase NAME CMD...: runs CMD, records its time; a failure stops the run.
# soft_phase: same, but the run goes on (so pytest still reports) and fails at the end.
phase() {
    run_phase hard "$@"
}

soft_phase() {
    run_phase soft "$@"
}

run_phase() {
    local mode="$1" name="$2"
    shift 2
    echo "==> $name: $*"
    local start=$SECONDS rc=0
    "$@" || rc=$?
    local took=$((SECONDS - start))
    PHASES+=("$(printf '%-12s %5ss  %s' "$name" "$took" "$([ "$rc" = 0 ] && echo ok || echo "FAILED (exit $rc)")")")
    echo "==> $name: ${took}s (exit $rc)"
    if [ "$rc" != 0 ]; then
        [ "$FIRST_FAILURE" != 0 ] || FIRST_FAILURE=$rc
        if [ "$mode" = hard ]; then
            summary
            exit "$rc"
        fi
    fi
}

summary() {
    echo "==> timings"
    local line
    for line in "${PHASES[@]}"; do
        echo "    $line"
    done
    # Repeat pytest's closing line ("N failed, M passed in Xs") so it is the last line printed
    # (client libraries may log to stderr after it).
    if [ -s "$PYTEST_LOG" ]; then
        grep -E '^(=+ )?[0-9]+ (passed|failed|errors?|skipped|deselected|xfailed|xpassed)|no tests ran' \
            "$PYTEST_LOG" | tail -n 1 || true
    fi
}

run_pytest() {
    # pipefail carries pytest's exit code through tee.
    "$ROOT/.venv/bin/pytest" -q tests/python 2>&1 | tee "$PYTEST_LOG"
}

phase setup bash scripts/setup-test-deps.sh
phase build cargo build --release --workspace --all-targets
soft_phase cargo-test cargo test --release --workspace

export SAPPER_BIN="$ROOT/target/release/sapper"
soft_phase pytest run_pytest

summary
exit "$FIRST_FAILURE"
