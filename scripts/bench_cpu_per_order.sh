#!/usr/bin/env bash
# CPU-seconds per order, by component: the Temporal server, the worker, Postgres and the driver,
# then the bare baseline on the same server (docs/benchmarks.md, "Where the time goes").
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/orderweb_bench scripts/bench_cpu_per_order.sh 200
#
# Starts its own Temporal dev server (temporary SQLite file) and one `run_workers` process, warms
# them up with 20 orders, then reads utime+stime from /proc before and after
# `bench_orders --use-running-workers`. Postgres is the machine's: its backends are summed over the
# postgres user's processes alive at both reads (connections that closed in between are missed, so
# that figure is a lower bound). Linux only. Pass BARE=path/to/bare_baseline.py to change the
# baseline; TEMPORAL_WORKFLOW_SANDBOX is passed through to the worker. The worker's CPU is also
# given by thread group (devtools/thread_cpu.py); with `py-spy` on PATH its Python threads are named.
set -euo pipefail

ORDERS=${1:-200}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"
BARE=${BARE:-$ROOT/../shared/bench/bare_baseline.py}
: "${DATABASE_URL:?set DATABASE_URL to a migrated database}"
export DEBUG=${DEBUG:-0} SECRET_KEY=${SECRET_KEY:-bench-only}

WORK=$(mktemp -d)
PORT=$("$PY" -c "from devtools.supervise import free_port; print(free_port())")
UI_PORT=$("$PY" -c "from devtools.supervise import free_port; print(free_port())")
HEALTH_PORT=$("$PY" -c "from devtools.supervise import free_port; print(free_port())")
export TEMPORAL_ADDRESS=127.0.0.1:$PORT

"$ROOT/.venv/bin/temporal" server start-dev --ip 127.0.0.1 --port "$PORT" --ui-port "$UI_PORT" --headless \
    --db-filename "$WORK/temporal.db" --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal \
    --log-level warn --search-attribute OrderStatus=Keyword --search-attribute DispatchFailures=Int \
    > "$WORK/temporal.log" 2>&1 &
SERVER=$!
cleanup() {
    kill -INT "${WORKER:-0}" 2>/dev/null && wait "${WORKER}" 2>/dev/null || true
    kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
wait_for() {  # up to 60 s for a command to succeed
    local _
    for _ in $(seq 300); do "$@" 2>/dev/null && return 0; sleep 0.2; done
    echo "gave up waiting for: $*" >&2
    exit 1
}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT"); }
wait_for listening

cd "$ROOT"
WORKER_HEALTH_PORT=$HEALTH_PORT "$PY" manage.py run_workers > "$WORK/workers.log" 2>&1 &
WORKER=$!
ready() { "$PY" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$HEALTH_PORT/readyz', timeout=2)"; }
wait_for ready  # 200 once every worker polls (temporal_app/health.py); urlopen raises on 503

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
postgres_ticks() {
    local total=0 pid
    for pid in $(pgrep -u postgres postgres); do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
per_order_ms() { echo "$(( ($2 - $1) * 1000 / $(getconf CLK_TCK) / ORDERS ))"; }

"$PY" manage.py bench_orders --orders 20 --use-running-workers --no-progress > /dev/null 2>&1  # warm-up
S0=$(ticks $SERVER); W0=$(ticks $WORKER); P0=$(postgres_ticks)
"$PY" -m devtools.thread_cpu snapshot "$WORKER" > "$WORK/threads.before"
/usr/bin/time -f "%U %S" -o "$WORK/driver.time" \
    "$PY" manage.py bench_orders --orders "$ORDERS" --use-running-workers --no-progress > "$WORK/bench.json"
S1=$(ticks $SERVER); W1=$(ticks $WORKER); P1=$(postgres_ticks)
"$PY" -m devtools.thread_cpu snapshot "$WORKER" > "$WORK/threads.after"
if command -v py-spy >/dev/null; then py-spy dump --pid "$WORKER" > "$WORK/threads.names" 2>/dev/null || true; fi
DRIVER_MS=$(awk -v n="$ORDERS" '{printf "%d", ($1 + $2) * 1000 / n}' "$WORK/driver.time")
echo "ours: $(tail -1 "$WORK/bench.json" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["orders_per_s"])') orders/s;" \
     "CPU ms per order: server $(per_order_ms "$S0" "$S1"), worker $(per_order_ms "$W0" "$W1")," \
     "postgres >= $(per_order_ms "$P0" "$P1"), driver $DRIVER_MS (with its start-up)"
"$PY" -m devtools.thread_cpu report "$WORK/threads.before" "$WORK/threads.after" "$ORDERS" "$WORK/threads.names"

S0=$(ticks $SERVER)
/usr/bin/time -f "%U %S" -o "$WORK/bare.time" "$PY" "$BARE" "$ORDERS" > "$WORK/bare.out"
S1=$(ticks $SERVER)
BARE_MS=$(awk -v n="$ORDERS" '{printf "%d", ($1 + $2) * 1000 / n}' "$WORK/bare.time")
echo "bare: $(cat "$WORK/bare.out");" \
     "CPU ms per workflow: server $(per_order_ms "$S0" "$S1"), bare process (client and worker) $BARE_MS"
