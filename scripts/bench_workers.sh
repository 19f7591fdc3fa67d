#!/usr/bin/env bash
# N worker processes per queue against one dev server: throughput, CPU per order per process, how
# the work split between them, that nothing was done twice, and the Postgres connections each
# process held (docs/operations.md, "Scaling").
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/orderweb_bench scripts/bench_workers.sh 2 200
#
# Starts its own Temporal dev server (temporary SQLite file) and N `run_workers` processes (both
# queues each, TEMPORAL_METRICS_PORT each), warms them up with 20 orders, then runs
# `bench_orders --use-running-workers` for ORDERS orders while it samples each process's Postgres
# connections (ss, twice a second). Reads utime+stime from /proc before and after, and each
# worker's SDK metrics (workflow tasks and activities it ran); Postgres's over the backends of this
# database (the machine's Postgres serves others too), sampled twice a second (a backend's last half
# second before it closes is missed: a lower bound), the driver's with time(1).
# Then verify_replay over 200 of the histories, timed. TRACING=1 turns tracing on in every process,
# exporting to a local OTLP/HTTP sink (devtools/otlp_sink.py). Linux only; `ss` from iproute2.
set -euo pipefail

WORKERS=${1:-2}
ORDERS=${2:-200}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"
: "${DATABASE_URL:?set DATABASE_URL to a migrated database}"
export DEBUG=${DEBUG:-0} SECRET_KEY=${SECRET_KEY:-bench-only}

WORK=$(mktemp -d)
port() { "$PY" -c "from devtools.supervise import free_port; print(free_port())"; }
unset OTEL_EXPORTER_OTLP_ENDPOINT
SINK=0
if [ "${TRACING:-0}" = 1 ]; then
    SINK_PORT=$(port)
    (cd "$ROOT" && exec "$PY" -m devtools.otlp_sink "$SINK_PORT") > "$WORK/sink.log" 2>&1 &
    SINK=$!
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK_PORT OTEL_SERVICE_NAME=bench
fi
PORT=$(port)
export TEMPORAL_ADDRESS=127.0.0.1:$PORT
"$ROOT/.venv/bin/temporal" server start-dev --ip 127.0.0.1 --port "$PORT" --ui-port "$(port)" --headless \
    --db-filename "$WORK/temporal.db" --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal \
    --log-level warn --search-attribute OrderStatus=Keyword --search-attribute DispatchFailures=Int \
    > "$WORK/temporal.log" 2>&1 &
SERVER=$!
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    kill "${SAMPLER:-0}" 2>/dev/null || true
    kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
    if [ "$SINK" != 0 ]; then kill -INT "$SINK"; wait "$SINK" 2>/dev/null || true; echo "tracing sink: $(tail -1 "$WORK/sink.log")"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
wait_for() {
    local _
    for _ in $(seq 300); do "$@" 2>/dev/null && return 0; sleep 0.2; done
    echo "gave up waiting for: $*" >&2
    exit 1
}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT"); }
wait_for listening

cd "$ROOT"
HEALTH=()
METRICS=()
for i in $(seq "$WORKERS"); do
    HEALTH+=("$(port)")
    METRICS+=("$(port)")
    WORKER_HEALTH_PORT=${HEALTH[-1]} TEMPORAL_METRICS_PORT=${METRICS[-1]} \
        "$PY" manage.py run_workers > "$WORK/workers-$i.log" 2>&1 &
    PIDS+=($!)
done
for h in "${HEALTH[@]}"; do
    wait_for "$PY" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$h/readyz', timeout=2)"
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
postgres_sample() {  # "pid ticks" of each Postgres backend connected to this database
    local pid
    for pid in $(psql "$DATABASE_URL" -Atc "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"); do
        echo "$pid $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)"
    done
}
sdk_counts() {  # workflow tasks and activities this worker process has run (its SDK metrics)
    "$PY" - "$1" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
def total(name):
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))
print(int(total("temporal_workflow_task_execution_latency_count")), int(total("temporal_activity_execution_latency_count")))
PY
}

"$PY" manage.py bench_orders --orders 20 --use-running-workers --no-progress > /dev/null 2>&1  # warm-up
BEFORE=()
for i in "${!PIDS[@]}"; do BEFORE+=("$(ticks "${PIDS[$i]}") $(sdk_counts "${METRICS[$i]}")"); done
S0=$(ticks "$SERVER"); postgres_sample > "$WORK/postgres.before"
( while true; do
      ss -tnpH state established '( dport = :5432 )' | grep -o 'pid=[0-9]*' | sort | uniq -c
      echo ---
      postgres_sample >> "$WORK/postgres.samples"
      sleep 0.5
  done > "$WORK/connections" ) &
SAMPLER=$!
/usr/bin/time -f "%U %S" -o "$WORK/driver.time" \
    "$PY" manage.py bench_orders --orders "$ORDERS" --use-running-workers --no-progress > "$WORK/bench.json" 2> "$WORK/bench.err"
kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null || true
S1=$(ticks "$SERVER"); postgres_sample >> "$WORK/postgres.samples"
# Per backend: its last ticks seen, less those it had when the run began (0 if it connected later).
PG=$(awk 'NR == FNR {start[$1] = $2; next} {if ($2 > last[$1]) last[$1] = $2}
          END {for (pid in last) sum += last[pid] - start[pid]; print sum + 0}' "$WORK/postgres.before" "$WORK/postgres.samples")
HZ=$(getconf CLK_TCK)

echo "$WORKERS worker process(es), $ORDERS orders: $(tail -1 "$WORK/bench.json" | "$PY" -c 'import json,sys; r=json.load(sys.stdin); print(r["orders_per_s"], "orders/s; approve -> charged p50", r["approve_to_charged_ms"]["p50"], "ms")')"
echo "CPU ms per order: Temporal server $(( (S1 - S0) * 1000 / HZ / ORDERS )), Postgres >= $(( PG * 1000 / HZ / ORDERS )), driver $(awk -v n="$ORDERS" '{printf "%d", ($1 + $2) * 1000 / n}' "$WORK/driver.time") (order_create and review_decide in-process, with its start-up and polling)"
echo "Temporal Cloud Actions per order: $(tail -1 "$WORK/bench.json" | "$PY" -c 'import json,sys; r=json.load(sys.stdin); print(r.get("temporal_actions_per_order"), r.get("temporal_actions_by_kind"))')"
TOTAL=0
for i in "${!PIDS[@]}"; do
    read -r T0 W0 A0 <<< "${BEFORE[$i]}"
    read -r W1 A1 <<< "$(sdk_counts "${METRICS[$i]}")"
    T1=$(ticks "${PIDS[$i]}")
    TOTAL=$((TOTAL + T1 - T0))
    HELD=$(awk -v p="pid=${PIDS[$i]}" '$2 == p && $1 > m {m = $1} END {print m + 0}' "$WORK/connections")
    echo "worker $((i + 1)) (pid ${PIDS[$i]}): $(( (T1 - T0) * 1000 / HZ / ORDERS )) CPU ms per order;" \
         "ran $((W1 - W0)) workflow tasks and $((A1 - A0)) activities; at most $HELD Postgres connections"
done
echo "workers together: $(( TOTAL * 1000 / HZ / ORDERS )) CPU ms per order"

# Nothing done twice: every bench order of this run charged once and dispatched once (the
# simulated gateway's and carrier's own ledgers), and completed.
"$PY" manage.py shell -c "
from django.db.models import Count
from orderweb.models import CarrierLedgerEntry, GatewayLedgerEntry, Order
prefix = Order.objects.filter(order_id__startswith='BENCH-').latest('created_at').order_id.rsplit('-', 1)[0]
orders = Order.objects.filter(order_id__startswith=prefix + '-')
ids = list(orders.values_list('order_id', flat=True))
charges = GatewayLedgerEntry.objects.filter(order_ref__in=ids, kind='charge').values('order_ref').annotate(n=Count('id'))
dispatches = CarrierLedgerEntry.objects.filter(order_ref__in=ids).values('order_ref').annotate(n=Count('id'))
print(f'{len(ids)} orders: {orders.filter(status=\"completed\").count()} completed;',
      f'charged: {sum(1 for c in charges if c[\"n\"] == 1)} once, {sum(1 for c in charges if c[\"n\"] > 1)} more than once;',
      f'dispatched: {sum(1 for d in dispatches if d[\"n\"] == 1)} once, {sum(1 for d in dispatches if d[\"n\"] > 1)} more than once')
"

# What the deploy check costs on these histories: verify_replay over 200 of them.
/usr/bin/time -f "verify_replay: %e s wall, %U+%S s CPU for 200 histories" \
    "$PY" manage.py verify_replay --limit 200 --no-progress 2>&1 | tail -2
