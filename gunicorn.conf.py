"""gunicorn's settings for the Procfile's `web` line (`--bind` and `--workers` are given there).

Prometheus: each worker process counts its own requests; prometheus-client's multiprocess mode
adds them up at /metrics (orderweb/metrics.py). It needs PROMETHEUS_MULTIPROC_DIR set before the
app imports prometheus_client, emptied when gunicorn starts (counts of a previous run would be
added), and a dead worker's files marked so its live gauges go. This file is read by the master
before any worker starts, so it does all three. Set PROMETHEUS_MULTIPROC_DIR yourself to choose
the directory (one per gunicorn master); the default is a fresh temporary one.
"""

import os
import shutil
import tempfile
from pathlib import Path

_OWN_DIRECTORY = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_DIRECTORY:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="orderweb-prometheus-")

# Requests wait on Temporal for at most TEMPORAL_RPC_TIMEOUT_SECONDS (10 s by default): a worker
# silent for longer than this is stuck and is replaced.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 20
# Threads per process: a request waiting for a Workflow Update leaves the others served.
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Logs to stderr like the rest of the app; access lines only if asked (GUNICORN_ACCESS_LOG=1).
errorlog = "-"
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "") in ("1", "true", "yes", "on") else None
# Behind a proxy that terminates TLS: trust its X-Forwarded-* headers (SECURE_PROXY_SSL_HEADER).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


def on_starting(server):
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():  # counts from a previous run must not be added to ours
        if entry.is_file() and entry.suffix == ".db":
            entry.unlink()
        elif entry.is_dir():
            shutil.rmtree(entry)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _OWN_DIRECTORY:  # the temporary one made above; a directory you chose is left alone
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
