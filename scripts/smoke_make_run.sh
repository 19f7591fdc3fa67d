#!/usr/bin/env bash
# CI smoke test of the first command, as a new user runs it: `make run` from this checkout (no
# DATABASE_URL: the embedded Postgres under var/), wait until it is up, run the seed's demo to
# `completed` against it, press Ctrl-C (SIGINT to its process group, as a terminal does), and
# prove that nothing it started is still running. Every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY=.venv/bin/python
OUT=test-artifacts/make-run.out
mkdir -p test-artifacts

port_or_free() {  # the default port if it is free here, else any free one
  "$PY" - "$1" <<'PYEOF'
import socket, sys
port = int(sys.argv[1])
with socket.socket() as s:
    if s.connect_ex(("127.0.0.1", port)) != 0:
        print(port); sys.exit()
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
PYEOF
}
WEB_PORT=$(port_or_free 8000)
TEMPORAL_PORT=$(port_or_free 7233)
UI_PORT=$(port_or_free 8233)
echo "smoke: make run on web :$WEB_PORT, Temporal :$TEMPORAL_PORT, UI :$UI_PORT"

left_running() {  # processes carrying this run's marker (every child inherits it)
  "$PY" - "$ROOT/var" <<'PYEOF'
import sys
from pathlib import Path
marker = f"ORDERWEB_RUN_DIR={sys.argv[1]}".encode()
for entry in Path("/proc").iterdir():
    if entry.name.isdigit():
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                print(entry.name, (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:150])
        except OSError:
            pass
PYEOF
}

show_logs() {
  echo "---- $OUT"; cat "$OUT" || true
  for log in var/log/*.log; do echo "---- $log (last 30 lines)"; tail -n 30 "$log" || true; done
}

env -u DATABASE_URL WEB_PORT="$WEB_PORT" TEMPORAL_ADDRESS="localhost:$TEMPORAL_PORT" TEMPORAL_UI_PORT="$UI_PORT" \
  setsid make run >"$OUT" 2>&1 &
RUN_PID=$!  # setsid made it a process group leader: its pid is the group id
cleanup() {
  if kill -0 "$RUN_PID" 2>/dev/null; then kill -KILL -- "-$RUN_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

deadline=$((SECONDS + 300))
until grep -q "is running. Press Ctrl-C" "$OUT"; do
  if ! kill -0 "$RUN_PID" 2>/dev/null; then echo "smoke: make run exited before it was up"; show_logs; exit 1; fi
  if ((SECONDS > deadline)); then echo "smoke: make run was not up within 300 s"; show_logs; exit 1; fi
  sleep 1
done
cat "$OUT"

if ! env -u DATABASE_URL TEMPORAL_ADDRESS="127.0.0.1:$TEMPORAL_PORT" TEMPORAL_UI_URL="http://localhost:$UI_PORT" \
    timeout 180 "$PY" manage.py demo_order; then
  echo "smoke: demo_order did not end in completed"; show_logs; exit 1
fi
"$PY" -c "import urllib.request as u; assert u.urlopen('http://127.0.0.1:$WEB_PORT/accounts/login/', timeout=10).status == 200"

kill -INT -- "-$RUN_PID"
deadline=$((SECONDS + 90))
while kill -0 "$RUN_PID" 2>/dev/null; do
  if ((SECONDS > deadline)); then echo "smoke: make run did not stop within 90 s of Ctrl-C"; show_logs; exit 1; fi
  sleep 0.5
done
wait "$RUN_PID" || true  # make's own status after an interrupt varies; what it left behind matters
tail -n 7 "$OUT"
grep -q "^Stopped\.$" "$OUT" || { echo "smoke: make run did not report a clean stop"; show_logs; exit 1; }

sleep 1
LEFT=$(left_running)
if [ -n "$LEFT" ]; then echo "smoke: still running after Ctrl-C:"; echo "$LEFT"; exit 1; fi
for port in "$WEB_PORT" "$TEMPORAL_PORT" "$UI_PORT"; do
  if "$PY" -c "import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1', $port)) == 0 else 1)"; then
    echo "smoke: port $port still answers after Ctrl-C"; exit 1
  fi
done
echo "smoke: make run came up, demo_order completed, Ctrl-C stopped everything, nothing left running"
