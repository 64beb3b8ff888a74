#!/usr/bin/env bash
# Benchmark Sapper (and, when TANSU_BIN is set, Tansu) on this machine and print one JSON
# object with every figure and the sapper/tansu ratios. See docs/benchmarks.md.
#
#   SAPPER_BIN=target/release/sapper [TANSU_BIN=~/.cargo/bin/tansu] crates/bench/run-comparison.sh
#
# Each broker runs alone (one after the other, so they never share the CPU) on 127.0.0.1 with
# an ephemeral port and a fresh temporary directory. For each partition count a new topic is
# produced to and then read back with `$SAPPER_BIN bench produce|consume --json`. The disk
# probe writes DISK_MB MiB beside Sapper's data directory. Progress goes to stderr; the JSON
# object is the only thing on stdout.
#
# Environment (all optional except SAPPER_BIN):
#   TANSU_BIN          tansu binary; omitted -> Sapper only, ratios null
#   TANSU_STORAGE      tansu --storage-engine URL (default memory://tansu/)
#   RECORDS            records per produce run (default 1000000)
#   RECORD_SIZE        payload bytes per record (default 100)
#   PARTITION_COUNTS   space-separated partition counts (default "1 6")
#   TIMEOUT_SECS       bound on each produce/consume run (default 300)
#   DISK_MB            MiB written by the disk probe (default 1024)
#   PRODUCE_ARGS       extra args for `bench produce`, e.g. "--acks all --compression lz4"
#   CONSUME_ARGS       extra args for `bench consume`
#   START_TIMEOUT_SECS how long a broker may take to start listening (default 30)
#   KEEP_WORK=1        keep the temporary directory (broker logs, raw reports)
# Needs: bash, python3 (free ports, JSON assembly), dd (disk fallback).

set -euo pipefail

: "${SAPPER_BIN:?set SAPPER_BIN to the sapper binary, e.g. target/release/sapper}"
TANSU_BIN="${TANSU_BIN:-}"
TANSU_STORAGE="${TANSU_STORAGE:-memory://tansu/}"
RECORDS="${RECORDS:-1000000}"
RECORD_SIZE="${RECORD_SIZE:-100}"
PARTITION_COUNTS="${PARTITION_COUNTS:-1 6}"
TIMEOUT_SECS="${TIMEOUT_SECS:-300}"
DISK_MB="${DISK_MB:-1024}"
PRODUCE_ARGS="${PRODUCE_ARGS:-}"
CONSUME_ARGS="${CONSUME_ARGS:-}"
START_TIMEOUT_SECS="${START_TIMEOUT_SECS:-30}"

log() { echo "run-comparison: $*" >&2; }

[[ -x "$SAPPER_BIN" ]] || { log "SAPPER_BIN=$SAPPER_BIN is not an executable"; exit 2; }
if [[ -n "$TANSU_BIN" && ! -x "$TANSU_BIN" ]]; then
    log "TANSU_BIN=$TANSU_BIN is not an executable"
    exit 2
fi
command -v python3 >/dev/null || { log "python3 is needed to pick ports and assemble JSON"; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/sapper-comparison.XXXXXX")"
broker_pid=""

stop_broker() {
    if [[ -n "$broker_pid" ]]; then
        kill "$broker_pid" 2>/dev/null || true
        # Give it a few seconds to shut down cleanly, then insist.
        for _ in $(seq 50); do
            kill -0 "$broker_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
        broker_pid=""
    fi
}

cleanup() {
    stop_broker
    if [[ "${KEEP_WORK:-0}" == 1 ]]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until DESCRIPTION COMMAND...: retry COMMAND every 0.1 s while the broker lives.
wait_until() {
    local what="$1"
    shift
    local deadline=$((SECONDS + START_TIMEOUT_SECS))
    until "$@"; do
        if ! kill -0 "$broker_pid" 2>/dev/null; then
            log "broker exited before $what"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            log "timed out after ${START_TIMEOUT_SECS}s waiting for $what"
            return 1
        fi
        sleep 0.1
    done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_sapper PORT: the broker CLI contract is to print `sapper: listening on ADDR` when ready.
start_sapper() {
    local port="$1"
    mkdir -p "$work/sapper-data"
    "$SAPPER_BIN" broker --node-id 1 --listen "127.0.0.1:$port" --data-dir "$work/sapper-data" \
        >"$work/sapper.log" 2>&1 &
    broker_pid=$!
    wait_until "sapper to listen on $port" grep -q "sapper: listening on 127.0.0.1:$port" "$work/sapper.log"
}

# start_tansu PORT: tansu prints nothing we rely on, so wait for the port to accept.
start_tansu() {
    local port="$1"
    "$TANSU_BIN" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "$TANSU_STORAGE" \
        >"$work/tansu.log" 2>&1 &
    broker_pid=$!
    wait_until "tansu to listen on $port" port_open "$port"
}

# bench NAME ARGS...: run `$SAPPER_BIN bench ARGS --json`, write its report (or an error
# object) to $work/NAME.json.
bench() {
    local name="$1"
    shift
    local out="$work/$name.json"
    log "bench $*"
    # shellcheck disable=SC2086 # *_ARGS are meant to word-split
    if "$SAPPER_BIN" bench "$@" --json >"$work/$name.stdout" 2>"$work/$name.stderr"; then
        grep '^{' "$work/$name.stdout" | tail -n 1 >"$out" || true
    fi
    if [[ ! -s "$out" ]]; then
        python3 - "$work/$name.stderr" >"$out" <<'EOF'
import json, sys
with open(sys.argv[1], errors="replace") as f:
    lines = [l.strip() for l in f if l.strip()]
print(json.dumps({"error": lines[-1] if lines else "no report and no error output"}))
EOF
        log "$name failed: $(cat "$out")"
    fi
}

# suite BROKER BOOTSTRAP: produce + consume for each partition count.
suite() {
    local broker="$1" bootstrap="$2" p topic
    for p in $PARTITION_COUNTS; do
        topic="bench-${p}p-$$-$RANDOM"
        # shellcheck disable=SC2086
        bench "$broker-p$p-produce" produce --bootstrap "$bootstrap" --topic "$topic" \
            --partitions "$p" --records "$RECORDS" --record-size "$RECORD_SIZE" \
            --timeout-secs "$TIMEOUT_SECS" $PRODUCE_ARGS
        # shellcheck disable=SC2086
        bench "$broker-p$p-consume" consume --bootstrap "$bootstrap" --topic "$topic" \
            --records "$RECORDS" --timeout-secs "$TIMEOUT_SECS" $CONSUME_ARGS
    done
}

# run_broker NAME: start it, run the suite, stop it; a failed start is recorded, not fatal.
run_broker() {
    local name="$1" port
    port="$(free_port)"
    log "starting $name on 127.0.0.1:$port"
    if "start_$name" "$port"; then
        suite "$name" "127.0.0.1:$port"
    else
        log "$name did not start; last log lines:"
        tail -n 20 "$work/$name.log" >&2 || true
        python3 -c 'import json, sys; print(json.dumps({"error": sys.argv[1]}))' \
            "$name did not start listening within ${START_TIMEOUT_SECS}s (or exited)" >"$work/$name-start-error.json"
    fi
    stop_broker
}

disk_probe() {
    local dir="$work/sapper-data"
    mkdir -p "$dir"
    log "disk probe: $DISK_MB MiB in $dir"
    if "$SAPPER_BIN" bench disk --dir "$dir" --mb "$DISK_MB" --json >"$work/disk.stdout" 2>"$work/disk.stderr" &&
        grep '^{' "$work/disk.stdout" | tail -n 1 >"$work/disk.json" && [[ -s "$work/disk.json" ]]; then
        return
    fi
    # Same measurement with dd, for a sapper binary without `bench disk`.
    log "sapper bench disk unavailable; using dd conv=fdatasync"
    dd if=/dev/zero of="$dir/dd-probe" bs=1M count="$DISK_MB" conv=fdatasync 2>"$work/dd.stderr" || true
    rm -f "$dir/dd-probe"
    python3 - "$work/dd.stderr" "$dir" "$DISK_MB" >"$work/disk.json" <<'EOF'
import json, re, sys
text = open(sys.argv[1], errors="replace").read()
m = re.search(r"^(\d+) bytes.*copied, ([0-9.,]+) s", text, re.M)
if m:
    secs = float(m.group(2).replace(",", "."))
    rate = int(m.group(1)) / 1048576 / secs if secs > 0 else None
    print(json.dumps({"dir": sys.argv[2], "mb": int(sys.argv[3]), "mb_per_sec": rate, "tool": "dd"}))
else:
    print(json.dumps({"error": "dd failed: " + text.strip()[-200:]}))
EOF
}

disk_probe
run_broker sapper
if [[ -n "$TANSU_BIN" ]]; then
    run_broker tansu
fi

python3 - "$work" "$PARTITION_COUNTS" "$RECORDS" "$RECORD_SIZE" "$DISK_MB" "$TANSU_BIN" "$TANSU_STORAGE" <<'EOF'
import json, os, sys

work, counts, records, record_size, disk_mb, tansu_bin, tansu_storage = sys.argv[1:8]
counts = counts.split()

def load(name):
    path = os.path.join(work, name + ".json")
    try:
        with open(path) as f:
            return json.loads(f.read().strip() or "null")
    except (OSError, ValueError) as e:
        return {"error": f"no report: {e}"}

def broker(name):
    start_error = os.path.join(work, name + "-start-error.json")
    if os.path.exists(start_error):
        return load(name + "-start-error")
    return {f"p{p}": {"produce": load(f"{name}-p{p}-produce"),
                      "consume": load(f"{name}-p{p}-consume")} for p in counts}

def get(report, *path):
    for key in path:
        if not isinstance(report, dict):
            return None
        report = report.get(key)
    return report if isinstance(report, (int, float)) else None

def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None

FIGURES = {
    "produce_msgs_per_sec": ("produce", "msgs_per_sec"),
    "produce_mb_per_sec": ("produce", "mb_per_sec"),
    "produce_p50_ms": ("produce", "latency_ms", "p50"),
    "produce_p99_ms": ("produce", "latency_ms", "p99"),
    "produce_p999_ms": ("produce", "latency_ms", "p999"),
    "consume_msgs_per_sec": ("consume", "msgs_per_sec"),
    "consume_mb_per_sec": ("consume", "mb_per_sec"),
    "consume_first_record_ms": ("consume", "first_record_ms"),
}

disk = load("disk")
sapper = broker("sapper")
tansu = broker("tansu") if tansu_bin else None
result = {
    "config": {"records": int(records), "record_size": int(record_size),
               "partitions": [int(p) for p in counts], "disk_mb": int(disk_mb),
               "tansu_storage": tansu_storage if tansu_bin else None},
    "disk": disk,
    "sapper": sapper,
    "tansu": tansu,
    # > 1 means Sapper is higher: better for throughput, worse for latency.
    "ratios_sapper_over_tansu": {
        f"p{p}": {k: ratio(get(sapper, f"p{p}", *path), get(tansu, f"p{p}", *path))
                  for k, path in FIGURES.items()} for p in counts} if tansu is not None else None,
    # Share of the raw sequential disk bandwidth Sapper's produce path achieved.
    "sapper_produce_over_disk": {
        f"p{p}": ratio(get(sapper, f"p{p}", "produce", "mb_per_sec"), get(disk, "mb_per_sec"))
        for p in counts},
}
print(json.dumps(result, indent=2))
EOF
