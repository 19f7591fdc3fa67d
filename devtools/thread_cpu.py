"""CPU per order of a worker process, by thread group (scripts/bench_cpu_per_order.sh).

A profile sampled on the GIL tells which Python code holds it, not which threads burn the CPU:
the activity threads spend much of theirs in psycopg's C code and in the kernel's side of their
round trips to Postgres, without the GIL. The kernel counts each thread's CPU (/proc/PID/task),
so this reads that, before and after a run, and groups the threads:

    python -m devtools.thread_cpu snapshot PID > before   (and again after the run)
    python -m devtools.thread_cpu report before after ORDERS [PY_SPY_DUMP]

The worker's Python threads carry no OS names on Python 3.11, so they are told apart by the
names in a ``py-spy dump`` of the process, when one is given (``activity_N``: the activity pool;
``temporal_workflow_N``: the SDK's workflow activations); without it they count as "python
threads". The main thread runs the SDK's event loop; ``tokio-rt-worker`` threads are its Rust core.
"""

from __future__ import annotations

import os
import re
import sys
from collections import defaultdict
from pathlib import Path

THREAD_LINE = re.compile(r'Thread (\d+) \((?:active|idle)[^)]*\): "([^"]*)"')


def snapshot(pid: int) -> str:
    """The process id, then one line per thread: tid, OS name, user and system clock ticks."""
    lines = [f"pid {pid}"]
    for task in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda p: int(p.name)):
        try:
            name = (task / "comm").read_text().strip().replace(" ", "_")
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended while we read
            continue
        lines.append(f"{task.name} {name} {fields[11]} {fields[12]}")  # utime, stime
    return "\n".join(lines) + "\n"


def _read(path: str) -> tuple[str, dict[str, tuple[str, int, int]]]:
    """The process id (its main thread's tid) and its threads."""
    pid, *lines = Path(path).read_text().splitlines()
    threads = {}
    for line in lines:
        tid, name, user, system = line.split()
        threads[tid] = (name, int(user), int(system))
    return pid.split()[1], threads


def _group(tid: str, name: str, main_tid: str, python_names: dict[str, str]) -> str:
    if tid == main_tid:
        return "main thread (SDK event loop)"
    if tid in python_names:
        return re.sub(r"_+\d+$", "_N", python_names[tid])
    if name.startswith("tokio"):
        return "tokio threads (SDK core)"
    return "python threads" if name in ("python", "python3", "python3.11") else name


def report(before: str, after: str, orders: int, dump: str | None = None) -> str:
    (_, start), (main_tid, end) = _read(before), _read(after)
    python_names = dict(THREAD_LINE.findall(Path(dump).read_text())) if dump and Path(dump).exists() else {}
    # The main thread's tid is the pid; not the lowest tid, since thread ids wrap round with pids.
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for tid, (name, user, system) in end.items():
        _, user0, system0 = start.get(tid, (name, 0, 0))
        group = totals[_group(tid, name, main_tid, python_names)]
        group[0] += user - user0
        group[1] += system - system0
        group[2] += 1
    per_order = 1000 / os.sysconf("SC_CLK_TCK") / orders
    rows = sorted(totals.items(), key=lambda item: -(item[1][0] + item[1][1]))
    return "\n".join(
        f"  worker {group} x{count}: {(user + system) * per_order:.1f} ms/order "
        f"(user {user * per_order:.1f}, system {system * per_order:.1f})"
        for group, (user, system, count) in rows
        if user + system
    )


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "snapshot":
        sys.stdout.write(snapshot(int(args[0])))
    elif command == "report":
        print(report(args[0], args[1], int(args[2]), args[3] if len(args) > 3 else None))
    else:
        sys.exit(f"unknown command {command!r}: snapshot PID | report BEFORE AFTER ORDERS [PY_SPY_DUMP]")
