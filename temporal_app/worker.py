"""Building and running the workers for the order and shipping task queues."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Optional, Sequence

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.service import RPCError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkerDeploymentConfig, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from temporal_app import tracing
from temporal_app.client import TemporalUnavailable
from temporal_app.contracts import (
    ORDER_TASK_QUEUE,
    SEARCH_ATTRIBUTE_DISPATCH_FAILURES,
    SEARCH_ATTRIBUTE_ORDER_STATUS,
    SEARCH_ATTRIBUTE_REVIEW_ESCALATED,
    SHIPPING_TASK_QUEUE,
)
from temporal_app.health import WorkerHealth
from temporal_app.registry import PeriodicJob, activities_for, periodic_jobs_for
from temporal_app.versioning import behaviour_of, join_deployment

logger = logging.getLogger(__name__)

QUEUES = (ORDER_TASK_QUEUE, SHIPPING_TASK_QUEUE)
GRACEFUL_SHUTDOWN = timedelta(seconds=10)

REQUIRED_SEARCH_ATTRIBUTES = {
    SEARCH_ATTRIBUTE_ORDER_STATUS: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    SEARCH_ATTRIBUTE_DISPATCH_FAILURES: IndexedValueType.INDEXED_VALUE_TYPE_INT,
    SEARCH_ATTRIBUTE_REVIEW_ESCALATED: IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
}


# Modules the workflow sandbox shares between workflow runs instead of re-importing them for each
# run: pure ones, whose code keeps no state and reaches no clock, randomness, I/O or workflow API
# (data classes and validation rules, retry policies, failure readers, input parsing).
# tests/temporal_app/test_workflow_module.py holds them to that. The workflow classes and the
# modules that drive them (record, order_actions, shielded) are still re-imported in every run,
# so the sandbox keeps checking the code that makes decisions. Measured in docs/benchmarks.md
# ("The workflow sandbox"): it halves what the sandbox costs.
SANDBOX_PASSTHROUGH_MODULES = (
    "temporal_app.contracts",
    "temporal_app.contracts_names",
    "temporal_app.contracts_payloads",
    "temporal_app.contracts_rules",
    "temporal_app.workflows.boundary",
    "temporal_app.workflows.failures",
    "temporal_app.workflows.policies",
)


def workflow_runner(sandbox: bool, passthrough: Sequence[str] = SANDBOX_PASSTHROUGH_MODULES) -> WorkflowRunner:
    """The workers' workflow runner: temporalio's sandbox with the pure modules passed through,
    or none (TEMPORAL_WORKFLOW_SANDBOX=0). ``passthrough=()`` is the strict sandbox the test
    suite's workers, the history replays and verify_replay use. With tracing on, the sandbox also
    shares OpenTelemetry's modules with the worker (temporal_app/tracing.py)."""
    if not sandbox:
        return UnsandboxedWorkflowRunner()
    modules = (*passthrough, *tracing.sandbox_passthrough())
    if not modules:
        return SandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*modules))


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register the search attributes the workflows upsert, if the server lacks them.

    Returns the names it added. On Temporal Cloud the operator API is closed: there they are
    added in the namespace settings, and a failure here is logged, not fatal.
    """
    namespace = client.namespace
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        missing = {
            name: kind
            for name, kind in REQUIRED_SEARCH_ATTRIBUTES.items()
            if name not in existing.custom_attributes
        }
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
            )
            logger.info("registered search attributes %s", ", ".join(sorted(missing)))
        return sorted(missing)
    except RPCError as err:
        logger.warning(
            "could not check or register search attributes %s (%s); register them on the server",
            ", ".join(REQUIRED_SEARCH_ATTRIBUTES), err.message,
        )
        return []


async def run_periodic_jobs(queues: Sequence[str], stop: asyncio.Event) -> None:
    """Run the apps' periodic jobs (``temporal_app.registry.periodic``) of these queues, each on
    its own interval, in a thread (they use the ORM), until ``stop`` is set."""
    jobs = [job for queue in queues for job in periodic_jobs_for(queue)]
    due = {job.name: 0.0 for job in jobs}
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        for job in jobs:
            if loop.time() >= due[job.name]:
                due[job.name] = loop.time() + job.seconds
                try:
                    await asyncio.to_thread(_run_job, job)
                except TemporalUnavailable as err:  # an outage (a restart): expected, no traceback
                    logger.warning("periodic job %s: %s; it runs again in %g s", job.name, err, job.seconds)
                except Exception:  # a job must never take the workers down; it runs again soon
                    logger.exception("periodic job %s failed; it runs again in %g s", job.name, job.seconds)
        next_due = min(due.values(), default=loop.time() + 60)
        try:
            await asyncio.wait_for(stop.wait(), max(next_due - loop.time(), 0.1))
        except asyncio.TimeoutError:
            pass


def _run_job(job: PeriodicJob) -> None:
    from django.db import close_old_connections

    close_old_connections()
    try:
        job.run()
    finally:
        close_old_connections()


def workflows_for(queue: str) -> list[type]:
    """The workflow classes the workers of ``queue`` run."""
    from temporal_app.workflows import OrderWorkflow, ShippingWorkflow, WebhookDeliveryWorkflow

    return {
        ORDER_TASK_QUEUE: [OrderWorkflow, WebhookDeliveryWorkflow],
        SHIPPING_TASK_QUEUE: [ShippingWorkflow],
    }[queue]


def replay_workflows() -> list[type]:
    """Every workflow class the workers run: what ``verify_replay`` replays histories with."""
    return [defn for queue in QUEUES for defn in workflows_for(queue)]



def workflow_type(defn: type) -> str:
    """The registered name of a ``@workflow.defn`` class."""
    return getattr(defn, "__temporal_workflow_definition").name


def build_workers(
    client: Client,
    *,
    queues: Iterable[str] = QUEUES,
    activity_executor: ThreadPoolExecutor,
    max_concurrent_activities: int,
    sandbox: bool = True,
    sandbox_passthrough: Sequence[str] = SANDBOX_PASSTHROUGH_MODULES,
    deployment: Optional[WorkerDeploymentVersion] = None,
) -> list[Worker]:
    """One Worker per queue. With ``deployment``, they join that Worker Deployment Version
    (temporal_app/versioning.py); without, they are unversioned (the test suite's workers)."""
    per_queue = {queue: (workflows_for(queue), activities_for(queue)) for queue in QUEUES}
    # run_workers follows TEMPORAL_WORKFLOW_SANDBOX (off by default: docs/benchmarks.md, "The
    # workflow sandbox"); the test suite's workers and the history replays run the strict sandbox
    # (nothing passed through), so a workflow change that it would refuse fails `make test`.
    runner = workflow_runner(sandbox, sandbox_passthrough)
    workers = []
    for queue in queues:
        workflows, activities = per_queue[queue]
        versioning = None if deployment is None else WorkerDeploymentConfig(
            version=deployment, use_worker_versioning=True,
            # Each workflow type's behaviour, chosen in temporal_app.versioning (auto-upgrade).
            default_versioning_behavior=behaviour_of(workflow_type(defn) for defn in workflows),
        )
        workers.append(
            Worker(
                client,
                workflow_runner=runner,
                deployment_config=versioning,
                task_queue=queue,
                workflows=workflows,
                activities=activities,
                activity_executor=activity_executor,
                max_concurrent_activities=max_concurrent_activities,
                max_concurrent_local_activities=max_concurrent_activities,
                # On shutdown, running activities get this long to finish before cancellation.
                graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            )
        )
    return workers


async def run_workers(
    client: Client,
    *,
    queues: Sequence[str],
    threads: int,
    stop: asyncio.Event,
    sandbox: bool = True,
    sandbox_passthrough: Sequence[str] = SANDBOX_PASSTHROUGH_MODULES,
    health: Optional[WorkerHealth] = None,
    deployment: Optional[WorkerDeploymentVersion] = None,
    make_current: bool = False,
) -> None:
    """Run the workers until ``stop`` is set, then shut down gracefully: no new tasks are
    polled and running activities are given time to finish.

    ``health`` (the ``/readyz`` and ``/healthz`` endpoints, ``temporal_app.health``) learns when
    every worker polls and when shutdown begins. With ``deployment``, the workers join that
    version, which becomes current if the deployment has none yet, or if ``make_current``
    (``temporal_app.versioning.join_deployment``)."""
    if health is not None:
        health.watch_loop(asyncio.get_running_loop())
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="activity") as executor:
        workers = build_workers(
            client, queues=queues, activity_executor=executor, max_concurrent_activities=threads,
            sandbox=sandbox, sandbox_passthrough=sandbox_passthrough, deployment=deployment,
        )
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            polling = await _until_polling(workers, stop)
            if polling and health is not None:
                health.workers_polling(dict(zip(queues, workers, strict=True)))  # one worker per queue
            if polling and deployment is not None:
                await _join(client, deployment, queues, make_current)
            logger.info(
                "workers running on %s (%d activity threads, workflow sandbox %s)", ", ".join(queues), threads,
                "on" if sandbox else "off",
            )
            jobs = asyncio.create_task(run_periodic_jobs(queues, stop))
            await stop.wait()
            if health is not None:
                health.shutdown_began()
            logger.info("shutting down workers")
            await jobs
    logger.info("workers stopped")


async def _join(client: Client, deployment: WorkerDeploymentVersion, queues: Sequence[str],
                make_current: bool) -> None:
    try:
        logger.info("worker deployment version %s", await join_deployment(client, deployment, queues,
                                                                          make_current=make_current))
    except Exception as err:  # the workers keep running; an operator can still make it current
        logger.error("worker deployment version %s.%s: %s", deployment.deployment_name, deployment.build_id, err)


async def _until_polling(workers: Sequence[Worker], stop: asyncio.Event) -> bool:
    """Wait until every worker runs; False if ``stop`` came first.

    ``async with worker`` returns before the worker has started: it first checks the namespace
    with the server, and only then reports ``is_running``, in the same step in which it creates
    its poll tasks. A worker that fails that check raises out of ``run_workers`` (temporalio
    cancels the task that entered it).
    """
    while not all(worker.is_running for worker in workers):
        if stop.is_set():
            return False
        await asyncio.sleep(0.01)
    await asyncio.sleep(0)  # the poll tasks the workers just created take their first step
    return True

