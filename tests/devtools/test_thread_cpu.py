"""The per-thread CPU report of scripts/bench_cpu_per_order.sh (devtools/thread_cpu.py)."""

from __future__ import annotations

import os
import threading
import time

from devtools.thread_cpu import report, snapshot


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_busy_thread_is_charged_to_its_group(tmp_path):
    started, go, burned, done = (threading.Event() for _ in range(4))
    ids = {}

    def work() -> None:
        ids["tid"] = threading.get_native_id()
        started.set()
        go.wait()
        before = time.thread_time()
        _burn(0.3)
        ids["cpu_ms"] = (time.thread_time() - before) * 1000
        burned.set()
        done.wait()  # alive at the second snapshot

    thread = threading.Thread(target=work)
    thread.start()
    started.wait()
    (tmp_path / "before").write_text(snapshot(os.getpid()))
    go.set()
    burned.wait()
    (tmp_path / "after").write_text(snapshot(os.getpid()))
    done.set()
    thread.join()
    (tmp_path / "names").write_text(f'Thread {ids["tid"]} (active): "activity_3"\n')

    lines = report(str(tmp_path / "before"), str(tmp_path / "after"), 2, str(tmp_path / "names")).splitlines()
    activity = next(line for line in lines if "activity_N x1" in line)
    per_order = float(activity.split(": ")[1].split(" ms/order")[0])
    # The thread's own CPU over 2 orders. /proc counts in clock ticks and samples which thread
    # runs at each one, so a busy machine moves it by a few ticks: the bounds allow that and
    # still catch a wrong unit, divisor or group (each off by a factor of 2 or more).
    expected = ids["cpu_ms"] / 2
    assert 0.6 * expected <= per_order <= 1.4 * expected, (expected, lines)


def test_threads_without_a_name_are_grouped_by_their_os_name(tmp_path):
    # Thread ids wrap round with process ids: a thread may have a lower id than its process.
    (tmp_path / "before").write_text("pid 10\n9 python 0 0\n10 python 0 0\n11 tokio-rt-worker 0 0\n")
    (tmp_path / "after").write_text(
        "pid 10\n9 python 20 0\n10 python 100 0\n11 tokio-rt-worker 50 50\n13 python 10 0\n"
    )
    lines = report(str(tmp_path / "before"), str(tmp_path / "after"), 1)
    hz = os.sysconf("SC_CLK_TCK")
    assert f"main thread (SDK event loop) x1: {100 * 1000 / hz:.1f} ms/order" in lines
    assert f"tokio threads (SDK core) x1: {100 * 1000 / hz:.1f} ms/order" in lines
    # A thread that started during the run counts from zero.
    assert f"python threads x2: {30 * 1000 / hz:.1f} ms/order" in lines
