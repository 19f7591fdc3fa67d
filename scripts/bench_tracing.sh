#!/usr/bin/env bash
# Tracing's cost in throughput: `bench_orders` with tracing off and on, alternated in one sitting
# (docs/operations.md, "Tracing").
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/orderweb_bench scripts/bench_tracing.sh 100 3
#
# Runs PAIRS pairs of `bench_orders --orders ORDERS --rounds 3 --start-dev-server` (each with its own
# dev server and `run_workers`), off then on. "On" points OTEL_EXPORTER_OTLP_ENDPOINT at a local
# OTLP/HTTP sink (devtools/otlp_sink.py) that receives and counts the spans: the spans are built,
# batched, encoded and sent as in production. Prints each run's orders/s and the medians.
set -euo pipefail

ORDERS=${1:-100}
PAIRS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"
: "${DATABASE_URL:?set DATABASE_URL to a migrated database}"
export DEBUG=${DEBUG:-0} SECRET_KEY=${SECRET_KEY:-bench-only}
unset OTEL_EXPORTER_OTLP_ENDPOINT

WORK=$(mktemp -d)
SINK_PORT=$("$PY" -c "from devtools.supervise import free_port; print(free_port())")
cd "$ROOT"
"$PY" -m devtools.otlp_sink "$SINK_PORT" > "$WORK/sink.log" 2>&1 &
SINK=$!
trap 'kill -INT "$SINK" 2>/dev/null; wait "$SINK" 2>/dev/null; cat "$WORK/sink.log"; rm -rf "$WORK"' EXIT

run() {  # $1: off|on
    local env=()
    [ "$1" = on ] && env=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK_PORT" OTEL_SERVICE_NAME=bench)
    env "${env[@]}" "$PY" manage.py bench_orders --orders "$ORDERS" --rounds 3 --start-dev-server --no-progress \
        2> "$WORK/$1.err" | tail -1 | "$PY" -c 'import json,sys; r=json.load(sys.stdin); print(r["orders_per_s"], r["orders_per_s_rounds"], r["approve_to_charged_ms"])'
}

for pair in $(seq "$PAIRS"); do
    for mode in off on; do
        echo "$mode $(date +%H:%M:%S) $(run "$mode")" | tee -a "$WORK/results"
    done
done
"$PY" - "$WORK/results" <<'PY'
import statistics, sys
rows = [line.split(maxsplit=3) for line in open(sys.argv[1])]
for mode in ("off", "on"):
    rates = [float(r[2]) for r in rows if r[0] == mode]
    print(f"{mode}: median {statistics.median(rates):.2f} orders/s over {len(rates)} invocations {rates}")
off = statistics.median(float(r[2]) for r in rows if r[0] == "off")
on = statistics.median(float(r[2]) for r in rows if r[0] == "on")
print(f"tracing on / off: {on / off:.3f} ({(on / off - 1) * 100:+.1f} %)")
PY
