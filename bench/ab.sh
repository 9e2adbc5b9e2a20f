#!/usr/bin/env bash
# A/B of two sniway binaries on the same scenarios, alternating, to measure one change.
#
#   bench/ab.sh A_BINARY B_BINARY [--rounds N] [--scenarios rate-classic,pingpong,...]
#
# Each round starts binary A, runs every scenario against it, stops it, then does the same with
# B (the order flips every round). The proxy runs pinned to CPU 1, the load generator and the
# backends to CPU 0, as in bench/compare.sh, whose scenario names and counts this uses. Prints the
# median of each figure per binary and B/A. Loopback only, in a network namespace of the run's
# own (bench/common.sh); everything started is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh
ARGS=("$@")

A=$1
B=$2
shift 2
ROUNDS=5
SCENARIOS="rate-classic,latency-classic,pingpong"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

cargo build --quiet --release -p sniway-loadgen
LOADGEN=target/release/sniway-loadgen
# From here on, in a network namespace of the run's own: the fixed ports are private to it
# (bench/common.sh). The build above needed the host's network.
isolate_network "${ARGS[@]}"
PORT=$SNIWAY_PORT
OUT=$(mktemp -d /tmp/sniway-ab.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

taskset -c 0 "$LOADGEN" backends --base-port $BACKEND --max-seconds 3600 >/dev/null 2>&1 &
PIDS+=($!)
wait_port $BACKEND

IFS=, read -r -a CASES <<<"$SCENARIOS"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="A B"; else order="B A"; fi
  for which in $order; do
    if [ "$which" = A ]; then bin=$A; else bin=$B; fi
    SNIWAY_LOG=warn taskset -c 1 "$bin" run --workers 1 -f bench/manifests/ >/dev/null 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port $PORT
    sleep 0.3
    for c in "${CASES[@]}"; do
      # shellcheck disable=SC2046
      line=$(taskset -c 0 "$LOADGEN" $(scenario_args "$c") --target 127.0.0.1:$PORT --label "$which" \
        --proxy-pid "$pid") || line=""
      [ -z "$line" ] && echo "  $c $which: no result" >&2
      [ -n "$line" ] && echo "{\"case\":\"$c\",\"round\":$round,\"result\":$line}" >>"$OUT/results.jsonl"
    done
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  done
  echo "round $round/$ROUNDS done (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
done

# The figures and their paths into a result are bench/summarize.py's.
python3 - "$OUT/results.jsonl" <<'EOF'
import json, statistics, sys
from collections import defaultdict
sys.path.insert(0, "bench")
from summarize import FIGURES, dig

vals = defaultdict(list)  # (case, label, A or B) -> [value]
for line in open(sys.argv[1]):
    r = json.loads(line)
    for case, label, path, _ in FIGURES:
        v = dig(r["result"], path) if case == r["case"] else None
        if v is not None:
            vals[(case, label, r["result"]["target"])].append(v)
print("| scenario | figure | A median | B median | B/A |")
print("|---|---|---:|---:|---:|")
for case, label, _, _ in FIGURES:
    a, b = vals.get((case, label, "A")), vals.get((case, label, "B"))
    if a and b:
        ma, mb = statistics.median(a), statistics.median(b)
        ratio = f"{mb / ma:.2f}" if ma else "-"
        print(f"| {case} | {label} | {ma:,.1f} | {mb:,.1f} | {ratio} |")
EOF
echo "results: $OUT/results.jsonl" >&2
