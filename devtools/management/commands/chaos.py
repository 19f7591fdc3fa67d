"""python manage.py chaos [--orders N]: orders through the real system while it is broken.

The run starts its own embedded Postgres (``<workdir>/pg``), its own Temporal dev server and its
own workers, so it never touches the machine's Postgres or anyone's Temporal. Because Django binds
its database when settings load, this command is a launcher: it starts that Postgres and re-runs
itself with ``--inner`` and ``DATABASE_URL``/``TEMPORAL_ADDRESS`` pointing at the run's own
components. Exit code 0 only if every check of the final audit passed (see docs/reliability.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from devtools.chaos.run import ChaosConfig, ChaosRun
from devtools.supervise import stop_embedded_postgres
from temporal_app.client import exit_process

CHAOS_DATABASE = "orderweb_chaos"


class Command(BaseCommand):
    help = "Run N orders through the real system while injecting faults, then audit every order."

    def add_arguments(self, parser):
        parser.add_argument("--orders", type=int, default=300)
        parser.add_argument("--seed", type=int, default=1, help="Chooses scenarios and faults.")
        parser.add_argument("--workers", type=int, default=2, help="Worker processes.")
        parser.add_argument("--threads", type=int, default=12, help="Activity threads per worker.")
        parser.add_argument(
            "--fault-rate", type=float, default=0.2, help="Share of activity attempts that fail (ACTIVITY_FAULT_RATE)."
        )
        parser.add_argument("--worker-kills", type=int, default=4, help="SIGKILLs of a worker process.")
        parser.add_argument("--temporal-restarts", type=int, default=1)
        parser.add_argument("--db-outages", type=int, default=1, help="Times Postgres is stopped.")
        parser.add_argument("--db-outage-seconds", type=float, default=8.0)
        parser.add_argument(
            "--temporal-outage-seconds",
            type=float,
            default=90.0,
            help="Temporal stopped this long while orders are still saved; 0: none.",
        )
        parser.add_argument(
            "--sweep-batch", type=int, default=0, help="The workers' ORDER_START_SWEEP_BATCH (default: theirs, 100)."
        )
        parser.add_argument(
            "--escalation-kills",
            type=int,
            default=2,
            help="SIGKILLs of a worker timed to fall on an escalation (escalation_kill orders).",
        )
        parser.add_argument(
            "--webhook-hangs",
            type=int,
            default=1,
            help="Times the webhook receiver hangs (devtools/chaos/webhooks.py).",
        )
        parser.add_argument(
            "--workers-down", type=int, default=1, help="Times every worker is stopped past the webhook lookback."
        )
        parser.add_argument("--rate", type=float, default=4.0, help="Orders created per second.")
        parser.add_argument(
            "--timeout",
            type=float,
            default=0.0,
            help="Seconds to wait for every order to end (default 300 + 2 per order).",
        )
        parser.add_argument(
            "--workdir",
            default=str(Path(settings.BASE_DIR) / "var" / "chaos"),
            help="Wiped at the start; holds the run's Postgres, Temporal file and logs.",
        )
        parser.add_argument("--inner", action="store_true", help="(internal) the re-executed run")

    def handle(self, *args, **options):
        workdir = Path(options["workdir"]).resolve()
        if options["orders"] < 1:
            raise CommandError("--orders must be at least 1")
        if not 0 <= options["fault_rate"] < 1:
            raise CommandError("--fault-rate must be in [0, 1)")
        if options["inner"]:
            # The run used the SDK's client: exit without the finalisation that can hang it.
            exit_process(self._inner(workdir, options))
        sys.exit(self._launch(workdir, options))

    def _launch(self, workdir: Path, options: dict) -> int:
        from devtools.localdb import embedded_database_url
        from devtools.supervise import free_port

        pgdata = workdir / "pg"
        stop_embedded_postgres(pgdata)  # a previous run that was interrupted
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        self.stdout.write(f"starting the chaos run's own Postgres in {pgdata}")
        url = embedded_database_url(pgdata, CHAOS_DATABASE)
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "CHAOS_PGDATA": str(pgdata),
            "CHAOS_UI_PORT": str(free_port()),
            "CONN_MAX_AGE": "0",
            "ACTIVITY_FAULT_RATE": "0",  # the driver itself runs no activities
            "TEMPORAL_RPC_TIMEOUT_SECONDS": "60",
            "SECRET_KEY": settings.SECRET_KEY,
            "PYTHONUNBUFFERED": "1",
        }
        command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "chaos", "--inner"]
        for name in (
            "orders",
            "seed",
            "workers",
            "threads",
            "fault_rate",
            "worker_kills",
            "temporal_restarts",
            "db_outages",
            "db_outage_seconds",
            "escalation_kills",
            "rate",
            "timeout",
            "webhook_hangs",
            "workers_down",
            "temporal_outage_seconds",
            "sweep_batch",
        ):
            command += [f"--{name.replace('_', '-')}", str(options[name])]
        command += ["--workdir", str(workdir)]
        try:
            return subprocess.call(command, env=env)
        finally:
            stop_embedded_postgres(pgdata)

    def _inner(self, workdir: Path, options: dict) -> int:
        if "CHAOS_PGDATA" not in os.environ:
            raise CommandError("--inner is started by `manage.py chaos` itself")
        port = int(settings.TEMPORAL_ADDRESS.rsplit(":", 1)[1])
        config = ChaosConfig(
            orders=options["orders"],
            seed=options["seed"],
            workers=options["workers"],
            threads=options["threads"],
            fault_rate=options["fault_rate"],
            worker_kills=options["worker_kills"],
            temporal_restarts=options["temporal_restarts"],
            db_outages=options["db_outages"],
            db_outage_seconds=options["db_outage_seconds"],
            escalation_kills=options["escalation_kills"],
            rate=options["rate"],
            timeout=options["timeout"],
            workdir=workdir,
            webhook_hangs=options["webhook_hangs"],
            workers_down=options["workers_down"],
            temporal_outage_seconds=options["temporal_outage_seconds"],
            sweep_batch=options["sweep_batch"],
            temporal_port=port,
            ui_port=int(os.environ["CHAOS_UI_PORT"]),
        )

        def out(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        return ChaosRun(config, out).run()
