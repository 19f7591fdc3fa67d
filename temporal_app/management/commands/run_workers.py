"""python manage.py run_workers [--queue order-tq|shipping-tq|webhook-tq] [--threads N] [--webhook-threads N]

Each queue's worker has a thread pool of its own, with one thread per slot
(``temporal_app.worker.slot_plan``): the order and shipping workers share ``--threads``
(WORKER_ACTIVITY_THREADS), the webhook worker has ``--webhook-threads`` (WORKER_WEBHOOK_THREADS),
so a slow webhook receiver holds up nothing on the order's queues.

With ``WORKER_HEALTH_PORT`` set, the process also answers ``/readyz`` and ``/healthz`` on
``WORKER_HEALTH_HOST:WORKER_HEALTH_PORT`` (``temporal_app.health``); with ``TEMPORAL_METRICS_PORT``
set, the SDK's own Prometheus metrics (``temporal_*``: activity and workflow task outcomes and
latencies, schedule-to-start, slots, pollers) on ``TEMPORAL_METRICS_HOST:TEMPORAL_METRICS_PORT``.

The workers join the Worker Deployment ``TEMPORAL_DEPLOYMENT_NAME`` as the version
``TEMPORAL_BUILD_ID`` (default: a hash of the workflow code); ``TEMPORAL_WORKER_VERSIONING=0`` runs
them unversioned (``temporal_app.versioning``, docs/operations.md "Upgrading the workers").
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta
from typing import Optional

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.utils import OperationalError
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from temporal_app.client import TEMPORAL_MISCONFIGURED, _transport_detail, connect, exit_process
from temporal_app.health import DEPENDENCY_TIMEOUT_SECONDS, HealthServer, WorkerHealth
from temporal_app.versioning import deployment_version
from temporal_app.worker import QUEUES, ensure_search_attributes, minimum_threads, run_workers

logger = logging.getLogger("temporal_app.run_workers")


class Command(BaseCommand):
    help = "Run the Temporal workers for the order, shipping and webhook task queues until SIGINT/SIGTERM."

    def add_arguments(self, parser):
        parser.add_argument(
            "--queue",
            action="append",
            choices=QUEUES,
            dest="queues",
            help="Run only this task queue (repeatable). Default: all three.",
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=settings.WORKER_ACTIVITY_THREADS,
            help="Activity threads of the order and shipping workers, shared between them (and at most as "
            "many DB connections). Default: %(default)s.",
        )
        parser.add_argument(
            "--webhook-threads",
            type=int,
            default=settings.WORKER_WEBHOOK_THREADS,
            help="Threads of the webhook worker: deliveries sent at once. Default: %(default)s.",
        )

    def handle(self, *args, queues=None, threads, webhook_threads, **options):
        queues = queues or list(QUEUES)
        if threads < minimum_threads(queues):
            raise CommandError(f"--threads must be at least {minimum_threads(queues)} for {', '.join(queues)}")
        if webhook_threads < 1:
            raise CommandError("--webhook-threads must be at least 1")
        if settings.TEMPORAL_CONFIG_PROBLEM:  # half-configured mTLS, unreadable file, bad key...
            raise CommandError(TEMPORAL_MISCONFIGURED.format(problem=settings.TEMPORAL_CONFIG_PROBLEM))
        self._check_database()
        # No health check (a `SELECT 1` round trip) before each activity's first query: a
        # connection that broke fails that attempt, Django closes it afterwards (it saw the error)
        # and the activity's retry connects afresh.
        connections.settings[DEFAULT_DB_ALIAS]["CONN_HEALTH_CHECKS"] = False
        code = 0
        try:
            asyncio.run(self._main(queues, threads, webhook_threads))
        except CommandError as err:  # printed as Django would, then the same early exit
            self.stderr.write(f"CommandError: {err}")
            code = err.returncode
        # Workers are stopped and the activity pool drained (or never started).
        exit_process(code)

    def _check_database(self) -> None:
        try:
            connection.ensure_connection()
        except OperationalError as err:
            raise CommandError(
                f"Postgres is unreachable ({str(err).strip().splitlines()[0]}). "
                "Check DATABASE_URL and that the server is running."
            ) from None
        finally:
            connection.close()

    async def _main(self, queues: list[str], threads: int, webhook_threads: int) -> None:
        health = WorkerHealth()
        health.watch_loop(asyncio.get_running_loop())
        server = health_server(health)
        try:
            await self._run(queues, threads, webhook_threads, health)
        finally:
            if server is not None:
                server.stop()

    async def _run(self, queues: list[str], threads: int, webhook_threads: int, health: WorkerHealth) -> None:
        runtime = metrics_runtime()
        try:
            client = await connect(runtime=runtime)
        except Exception as err:  # the SDK raises RuntimeError with a long transport message
            raise CommandError(
                f"Temporal is unreachable at {settings.TEMPORAL_ADDRESS} "
                f"(namespace {settings.TEMPORAL_NAMESPACE}): {str(err).splitlines()[0]}"
            ) from None
        await ensure_search_attributes(client)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        health.add_check("temporal", lambda: temporal_check(client, loop))
        health.add_check("database", database_check)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        logger.info(
            "connected to Temporal at %s (namespace %s%s%s)",
            settings.TEMPORAL_ADDRESS,
            settings.TEMPORAL_NAMESPACE,
            ", TLS" if settings.TEMPORAL_TLS is not False else "",
            ", payloads encrypted" if settings.TEMPORAL_PAYLOAD_KEYS else "",
        )
        deployment = worker_deployment()
        if deployment is not None:
            logger.info(
                "joining worker deployment %s as version %s%s",
                deployment.deployment_name,
                deployment.build_id,
                "" if settings.TEMPORAL_BUILD_ID else " (a hash of the workflow code)",
            )
        await run_workers(
            client,
            queues=queues,
            threads=threads,
            webhook_threads=webhook_threads,
            stop=stop,
            sandbox=settings.TEMPORAL_WORKFLOW_SANDBOX,
            health=health,
            deployment=deployment,
            make_current=settings.TEMPORAL_VERSION_CURRENT_ON_START,
        )


def worker_deployment() -> Optional[WorkerDeploymentVersion]:
    """The Worker Deployment Version these workers join, or None (TEMPORAL_WORKER_VERSIONING=0)."""
    if not settings.TEMPORAL_WORKER_VERSIONING:
        return None
    return deployment_version(settings.TEMPORAL_DEPLOYMENT_NAME, settings.TEMPORAL_BUILD_ID)


def health_server(health: WorkerHealth) -> HealthServer | None:
    """The health endpoints on WORKER_HEALTH_HOST:WORKER_HEALTH_PORT, or None: off by default."""
    if settings.WORKER_HEALTH_PORT is None:
        return None
    host, port = settings.WORKER_HEALTH_HOST, settings.WORKER_HEALTH_PORT
    try:
        server = HealthServer(health, host, port)
    except OSError as err:
        raise CommandError(f"WORKER_HEALTH_PORT: cannot listen on {host}:{port} ({err.strerror or err})") from None
    logger.info("health endpoints on http://%s:%d/readyz and /healthz", host, server.port)
    return server.start()


def metrics_runtime() -> Runtime | None:
    """A temporalio Runtime that serves the SDK's metrics for Prometheus, or None: off by default.
    One per process, shared by the client and its workers."""
    if settings.TEMPORAL_METRICS_PORT is None:
        return None
    bind = f"{settings.TEMPORAL_METRICS_HOST}:{settings.TEMPORAL_METRICS_PORT}"
    try:
        # Durations in seconds, Prometheus's unit (the SDK's default is milliseconds).
        runtime = Runtime(
            telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind, durations_as_seconds=True))
        )
    except Exception as err:  # the port is taken, or the address is not one
        raise CommandError(
            f"TEMPORAL_METRICS_PORT: cannot serve metrics on {bind} ({str(err).splitlines()[0]})"
        ) from None
    logger.info("Temporal SDK metrics on http://%s/metrics", bind)
    return runtime


def temporal_check(client: Client, loop: asyncio.AbstractEventLoop) -> Optional[str]:
    """For /readyz, from the health server's thread: does Temporal's frontend answer the
    workers' own client? (A worker keeps polling through an outage, retrying: still "running".)"""
    seconds = DEPENDENCY_TIMEOUT_SECONDS
    future = asyncio.run_coroutine_threadsafe(
        client.service_client.check_health(timeout=timedelta(seconds=seconds)), loop
    )
    try:
        serving = future.result(seconds + 0.5)
    except TimeoutError:
        future.cancel()
        return f"did not answer within {seconds:g} s"
    except Exception as err:
        return f"unreachable ({_transport_detail(err)})"
    return None if serving else "says it is not serving"


def database_check() -> Optional[str]:
    """For /readyz: can a new Postgres connection run a query? (Activities need one each.)"""
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as err:
        return f"unreachable ({type(err).__name__})"
    finally:
        connection.close()  # the health server's thread ends with this request
    return None
