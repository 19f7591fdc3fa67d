"""Building and running the workers for the order, shipping and webhook task queues."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.service import RPCError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkerDeploymentConfig, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from temporal_app import tracing
from temporal_app.contracts import (
    ORDER_TASK_QUEUE,
    SEARCH_ATTRIBUTE_DISPATCH_FAILURES,
    SEARCH_ATTRIBUTE_ORDER_STATUS,
    SEARCH_ATTRIBUTE_REVIEW_ESCALATED,
    SHIPPING_TASK_QUEUE,
    WEBHOOK_TASK_QUEUE,
)
from temporal_app.health import WorkerHealth
from temporal_app.registry import activities_for
from temporal_app.schedules import ensure_schedules
from temporal_app.versioning import behaviour_of, join_deployment

logger = logging.getLogger(__name__)

QUEUES = (ORDER_TASK_QUEUE, SHIPPING_TASK_QUEUE, WEBHOOK_TASK_QUEUE)
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
            name: kind for name, kind in REQUIRED_SEARCH_ATTRIBUTES.items() if name not in existing.custom_attributes
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
            ", ".join(REQUIRED_SEARCH_ATTRIBUTES),
            err.message,
        )
        return []


def workflows_for(queue: str) -> list[type]:
    """The workflow classes the workers of ``queue`` run."""
    from temporal_app.workflows import OrderWorkflow, PeriodicJobWorkflow, ShippingWorkflow, WebhookDeliveryWorkflow

    # PeriodicJobWorkflow: started by the periodic jobs' schedules (temporal_app/schedules.py),
    # all on order-tq today.
    return {
        # WebhookDeliveryWorkflow on order-tq only for the deliveries started there before they had
        # a queue of their own (orderweb/activities.py says when to remove it).
        ORDER_TASK_QUEUE: [OrderWorkflow, WebhookDeliveryWorkflow, PeriodicJobWorkflow],
        SHIPPING_TASK_QUEUE: [ShippingWorkflow],
        WEBHOOK_TASK_QUEUE: [WebhookDeliveryWorkflow],
    }[queue]


def replay_workflows() -> list[type]:
    """Every workflow class the workers run: what ``verify_replay`` replays histories with."""
    return list(dict.fromkeys(defn for queue in QUEUES for defn in workflows_for(queue)))


def workflow_type(defn: type) -> str:
    """The registered name of a ``@workflow.defn`` class."""
    return getattr(defn, "__temporal_workflow_definition").name


# -- Slots and threads (issue 19, item 3) ---------------------------------------------------------
# Every worker has a thread pool of its own, with exactly as many threads as it has activity and
# local-activity slots: a task that got a slot never waits for a thread, and no queue's work waits
# behind another's. ``threads`` (WORKER_ACTIVITY_THREADS, --threads) is what the order and shipping
# workers share between them (their activities use Postgres: at most that many connections); the
# webhook worker, whose activity waits on an outside receiver, has its own (WORKER_WEBHOOK_THREADS).

# Of the shared threads, the order worker's share: its tasks per order (five local activities and
# one activity; the shipping workflow has one of each), 6 of 8. Of a worker's threads, its local
# activities' share. Measured against the shared pool in docs/benchmarks.md ("Threads and slots").
ORDER_SHARE = 6 / 8
LOCAL_SHARE = {ORDER_TASK_QUEUE: 1 / 2, SHIPPING_TASK_QUEUE: 1 / 3, WEBHOOK_TASK_QUEUE: 0.0}
SHARED_POOL = (ORDER_TASK_QUEUE, SHIPPING_TASK_QUEUE)


@dataclass(frozen=True)
class Slots:
    activities: int
    local_activities: int

    @property
    def threads(self) -> int:
        """The worker's own pool: one thread per slot."""
        return self.activities + self.local_activities


def minimum_threads(queues: Iterable[str]) -> int:
    """The fewest shared threads these queues run with: two (an activity and a local activity)
    for each of the order and shipping queues."""
    return 2 * len([queue for queue in queues if queue in SHARED_POOL]) or 1


def slot_plan(queues: Iterable[str], threads: int, webhook_threads: int) -> dict[str, Slots]:
    """Each worker's activity and local-activity slots (see above)."""
    queues = list(dict.fromkeys(queues))
    shared = [queue for queue in queues if queue in SHARED_POOL]
    if threads < minimum_threads(queues):
        raise ValueError(f"{', '.join(shared)} need at least {minimum_threads(queues)} threads, not {threads}")
    if WEBHOOK_TASK_QUEUE in queues and webhook_threads < 1:
        raise ValueError(f"{WEBHOOK_TASK_QUEUE} needs at least 1 thread, not {webhook_threads}")
    share = {queue: threads for queue in shared}
    if len(shared) == 2:
        share[ORDER_TASK_QUEUE] = min(max(2, round(threads * ORDER_SHARE)), threads - 2)
        share[SHIPPING_TASK_QUEUE] = threads - share[ORDER_TASK_QUEUE]
    if WEBHOOK_TASK_QUEUE in queues:
        share[WEBHOOK_TASK_QUEUE] = webhook_threads
    plan = {}
    for queue in queues:
        total = share[queue]
        local = 0 if LOCAL_SHARE[queue] == 0 else min(max(1, round(total * LOCAL_SHARE[queue])), total - 1)
        plan[queue] = Slots(total - local, local)
    return plan


def build_workers(
    client: Client,
    *,
    queues: Iterable[str] = QUEUES,
    threads: int,
    webhook_threads: int = 4,
    executors: Optional[dict[str, ThreadPoolExecutor]] = None,
    sandbox: bool = True,
    sandbox_passthrough: Sequence[str] = SANDBOX_PASSTHROUGH_MODULES,
    deployment: Optional[WorkerDeploymentVersion] = None,
) -> list[Worker]:
    """One Worker per queue, each with its own thread pool (``executors``, filled here: the caller
    shuts them down), sized by ``slot_plan``. With ``deployment``, they join that Worker
    Deployment Version (temporal_app/versioning.py); without, they are unversioned (the test
    suite's workers)."""
    queues = list(queues)
    plan = slot_plan(queues, threads, webhook_threads)
    executors = {} if executors is None else executors
    # run_workers follows TEMPORAL_WORKFLOW_SANDBOX (off by default: docs/benchmarks.md, "The
    # workflow sandbox"); the test suite's workers and the history replays run the strict sandbox
    # (nothing passed through), so a workflow change that it would refuse fails `make test`.
    runner = workflow_runner(sandbox, sandbox_passthrough)
    workers = []
    for queue in queues:
        workflows, activities = workflows_for(queue), activities_for(queue)
        slots = plan[queue]
        executors[queue] = ThreadPoolExecutor(max_workers=slots.threads, thread_name_prefix=f"activity-{queue}")
        versioning = (
            None
            if deployment is None
            else WorkerDeploymentConfig(
                version=deployment,
                use_worker_versioning=True,
                # Each workflow type's behaviour, chosen in temporal_app.versioning (auto-upgrade).
                default_versioning_behavior=behaviour_of(workflow_type(defn) for defn in workflows),
            )
        )
        workers.append(
            Worker(
                client,
                workflow_runner=runner,
                deployment_config=versioning,
                task_queue=queue,
                workflows=workflows,
                activities=activities,
                activity_executor=executors[queue],
                max_concurrent_activities=slots.activities,
                # No local activity on a queue that has none (the webhook queue): no slot either.
                max_concurrent_local_activities=slots.local_activities,
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
    webhook_threads: int = 4,
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
    executors: dict[str, ThreadPoolExecutor] = {}
    try:
        workers = build_workers(
            client,
            queues=queues,
            threads=threads,
            webhook_threads=webhook_threads,
            executors=executors,
            sandbox=sandbox,
            sandbox_passthrough=sandbox_passthrough,
            deployment=deployment,
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
                "workers running on %s (%s activity threads, workflow sandbox %s)",
                ", ".join(queues),
                _threads_said(queues, threads, webhook_threads),
                "on" if sandbox else "off",
            )
            if polling:
                # The periodic jobs run as Temporal Schedules, once per period whatever the number
                # of worker processes; shutdown waits for no job (a running one stops at its next
                # batch, the next run carries on).
                await ensure_schedules(client, queues)
            await stop.wait()
            if health is not None:
                health.shutdown_began()
            logger.info("shutting down workers")
    finally:
        for executor in executors.values():
            executor.shutdown(wait=True)
    logger.info("workers stopped")


def _threads_said(queues: Sequence[str], threads: int, webhook_threads: int) -> str:
    """ "8" or "8 + 4 for webhook-tq": what the operator set, for the log line."""
    shared = any(queue in SHARED_POOL for queue in queues)
    if WEBHOOK_TASK_QUEUE not in queues:
        return str(threads)
    if not shared:
        return f"{webhook_threads} for {WEBHOOK_TASK_QUEUE}"
    return f"{threads} + {webhook_threads} for {WEBHOOK_TASK_QUEUE}"


async def _join(client: Client, deployment: WorkerDeploymentVersion, queues: Sequence[str], make_current: bool) -> None:
    try:
        logger.info(
            "worker deployment version %s", await join_deployment(client, deployment, queues, make_current=make_current)
        )
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
