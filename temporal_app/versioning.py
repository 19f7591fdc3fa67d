"""Worker Deployment Versioning: which code runs which orders, and when old workers can stop.

``run_workers`` joins the Worker Deployment ``TEMPORAL_DEPLOYMENT_NAME`` (default ``orderweb``)
as the version ``TEMPORAL_BUILD_ID``; without one, the build id is a hash of the workflow code
(``temporal_app/workflows/`` and ``contracts*.py``), so a change to that code is a new version and
anything else (activities, pages) rolls out within the running one. Temporal routes each
workflow task to a version: new workflows to the deployment's *current* (or *ramping*) version;
a running workflow according to its workflow type's versioning behaviour.

Every workflow type here is AUTO_UPGRADE (``VERSIONING_BEHAVIOUR`` below, the workers' default
behaviour; a ``@workflow.defn(versioning_behavior=...)`` would make Temporal refuse the type's
tasks from unversioned workers, such as the test suite's): a running order
moves to the current version at its next workflow task, so every workflow change is patched or
chosen by data in history (docs/determinism.md), and ``verify_replay`` checks the live histories
before a version is made current. Why not PINNED: an order waits for review up to 24 hours, and
one whose dispatch failed waits for staff without a limit; pinned, every deploy would keep the old
workers running that long (several versions side by side after a busy day), and a fix would never
reach the orders already running. Auto-upgrade lets the old version stop minutes after the switch,
and a developer's machine, where every edit of the workflow code is a new version, never strands
a parked order on a version whose worker is gone (docs/operations.md, "Upgrading the workers").

Current version: Temporal sends nothing to a version until it is current or ramping. The first
version of a deployment is made current as soon as it polls (there is nothing older to protect:
a fresh install, or the switch from unversioned workers). Later ones wait for an operator's
``temporal worker deployment set-current-version`` after ``verify_replay``, unless
``TEMPORAL_VERSION_CURRENT_ON_START`` is on (``make run`` turns it on: one person, one machine).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import temporalio.api.workflowservice.v1 as wsv1
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.enums.v1.deployment_pb2 import VersionDrainageStatus, WorkerDeploymentVersionStatus
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode

logger = logging.getLogger(__name__)

# Each workflow type's versioning behaviour (why auto-upgrade: the module's docstring). A new
# workflow type is refused by the versioned workers until it is listed here.
VERSIONING_BEHAVIOUR = {
    "OrderWorkflow": VersioningBehavior.AUTO_UPGRADE,
    "ShippingWorkflow": VersioningBehavior.AUTO_UPGRADE,
    "WebhookDeliveryWorkflow": VersioningBehavior.AUTO_UPGRADE,
    "PeriodicJobWorkflow": VersioningBehavior.AUTO_UPGRADE,
}

APP_DIR = Path(__file__).resolve().parent
# What the default build id covers: the code that decides a workflow's commands.
WORKFLOW_CODE = ("workflows", "contracts.py", "contracts_names.py", "contracts_payloads.py", "contracts_rules.py")
UNVERSIONED = "__unversioned__"
REGISTER_TIMEOUT_SECONDS = 30.0
POLLER_SEEN_SECONDS = 90.0

STATE_NAMES = {
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE: "inactive",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT: "current",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING: "ramping",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING: "draining",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED: "drained",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CREATED: "created",
}


def code_build_id(app_dir: Path = APP_DIR) -> str:
    """12 hex digits of a SHA-256 over the workflow code's files (paths and bytes, in order)."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for name in WORKFLOW_CODE:
        path = app_dir / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    for path in files:
        digest.update(str(path.relative_to(app_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def behaviour_of(workflow_types: Iterable[str]) -> VersioningBehavior:
    """The one versioning behaviour of the workflow types a worker runs (its default behaviour)."""
    workflow_types = list(workflow_types)
    unlisted = sorted(set(workflow_types) - VERSIONING_BEHAVIOUR.keys())
    if unlisted:
        raise ValueError(
            f"no versioning behaviour chosen for {', '.join(unlisted)}: add it to "
            "temporal_app.versioning.VERSIONING_BEHAVIOUR"
        )
    behaviours = {VERSIONING_BEHAVIOUR[name] for name in workflow_types}
    if len(behaviours) != 1:
        raise ValueError(
            f"workflow types {', '.join(sorted(workflow_types))} on one task queue need one "
            "versioning behaviour (a worker has one default)"
        )
    return behaviours.pop()


def deployment_version(name: str, build_id: str = "") -> WorkerDeploymentVersion:
    return WorkerDeploymentVersion(deployment_name=name, build_id=build_id or code_build_id())


def visibility_version(version: WorkerDeploymentVersion) -> str:
    """The version as the ``TemporalWorkerDeploymentVersion`` search attribute holds it."""
    return f"{version.deployment_name}:{version.build_id}"


# -- making a version current --------------------------------------------------------------------


async def describe_deployment(client: Client, name: str) -> Optional[wsv1.DescribeWorkerDeploymentResponse]:
    """The deployment, or None while Temporal knows no version of it (none has polled yet)."""
    try:
        return await client.workflow_service.describe_worker_deployment(
            wsv1.DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=name)
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def current_build_id(described: Optional[wsv1.DescribeWorkerDeploymentResponse]) -> str:
    """The current version's build id; "" when the deployment routes to unversioned workers."""
    if described is None:
        return ""
    routing = described.worker_deployment_info.routing_config
    if routing.HasField("current_deployment_version"):
        return routing.current_deployment_version.build_id
    return ""


async def wait_registered(
    client: Client, version: WorkerDeploymentVersion, queues: Iterable[str], timeout: float = REGISTER_TIMEOUT_SECONDS
) -> None:
    """Until Temporal lists each of ``queues`` under ``version`` (a version is created, and learns
    its task queues, from its workers' first polls)."""
    wanted = set(queues)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            described = await client.workflow_service.describe_worker_deployment_version(
                wsv1.DescribeWorkerDeploymentVersionRequest(
                    namespace=client.namespace, deployment_version=version._to_proto()
                )
            )
            seen = {queue.name for queue in described.version_task_queues}
            if wanted <= seen:
                return
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(
                f"Temporal did not register {visibility_version(version)} for "
                f"{', '.join(sorted(wanted))} within {timeout:g} s"
            )
        await asyncio.sleep(0.25)


async def set_current(client: Client, version: WorkerDeploymentVersion, *, identity: str = "") -> None:
    await client.workflow_service.set_worker_deployment_current_version(
        wsv1.SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace,
            deployment_name=version.deployment_name,
            build_id=version.build_id,
            identity=identity or client.identity,
        )
    )


async def join_deployment(
    client: Client, version: WorkerDeploymentVersion, queues: Sequence[str], *, make_current: bool
) -> str:
    """After the workers poll: make ``version`` current if the deployment has none yet (or if
    ``make_current``); returns what happened, in words, for the log."""
    await wait_registered(client, version, queues)
    current = current_build_id(await describe_deployment(client, version.deployment_name))
    if current == version.build_id:
        return f"{visibility_version(version)} is the current version"
    if current and not make_current:
        return (
            f"{visibility_version(version)} polls; the current version is {version.deployment_name}:{current}. "
            "Check it with `manage.py verify_replay`, then make it current: "
            f"temporal worker deployment set-current-version --deployment-name {version.deployment_name} "
            f"--build-id {version.build_id}"
        )
    try:
        await set_current(client, version)
    except RPCError as err:
        # Another process of the same version got there first (worker-order and worker-shipping
        # start together): fine if ours is current now.
        if current_build_id(await describe_deployment(client, version.deployment_name)) != version.build_id:
            raise RuntimeError(f"could not make {visibility_version(version)} current: {err.message}") from err
    why = "TEMPORAL_VERSION_CURRENT_ON_START" if current else "the deployment's first version"
    return f"{visibility_version(version)} made current ({why}; before: {current or 'unversioned workers'})"


# -- what workers_status shows ---------------------------------------------------------------------


@dataclass
class VersionStatus:
    build_id: str
    state: str  # current, ramping, draining, drained, inactive
    ramp_percentage: float = 0.0
    pollers: dict[str, int] = field(default_factory=dict)  # task queue -> distinct worker identities
    open_orders: int = 0  # running orders whose last workflow task ran on this version
    ever_current: bool = False

    @property
    def can_stop(self) -> bool:
        """No workflow task will be routed here: drained, or current once and no longer."""
        return self.state == "drained" or (self.state == "inactive" and self.ever_current)


async def pollers_by_build(client: Client, queue: str, deployment_name: str) -> dict[str, int]:
    """Distinct workers polling ``queue`` (workflow or activity tasks), by build id. Temporal
    lists a poller for minutes after its last poll; one that has not polled for
    ``POLLER_SEEN_SECONDS`` (longer than a long poll waits) is taken as gone."""
    seen_since = time.time() - POLLER_SEEN_SECONDS
    identities: dict[str, set[str]] = {}
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        described = await client.workflow_service.describe_task_queue(
            wsv1.DescribeTaskQueueRequest(
                namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind
            )
        )
        for poller in described.pollers:
            options = poller.deployment_options
            if options.deployment_name == deployment_name and poller.last_access_time.ToSeconds() >= seen_since:
                identities.setdefault(options.build_id, set()).add(poller.identity)
    return {build_id: len(names) for build_id, names in identities.items()}


async def count_open(client: Client, workflow_type: str, version: Optional[WorkerDeploymentVersion]) -> int:
    where = f'WorkflowType = "{workflow_type}" AND ExecutionStatus = "Running"'
    if version is None:
        where += " AND TemporalWorkerDeploymentVersion IS NULL"
    else:
        where += f' AND TemporalWorkerDeploymentVersion = "{visibility_version(version)}"'
    return (await client.count_workflows(where)).count


async def deployment_status(
    client: Client, name: str, queues: Sequence[str], workflow_type: str = "OrderWorkflow"
) -> Optional[list[VersionStatus]]:
    """Every version of the deployment, newest first; None if Temporal knows no such deployment."""
    described = await describe_deployment(client, name)
    if described is None:
        return None
    info = described.worker_deployment_info
    ramp = info.routing_config.ramping_version_percentage
    pollers = {queue: await pollers_by_build(client, queue, name) for queue in queues}
    versions = []
    summaries = sorted(info.version_summaries, key=lambda s: s.create_time.ToDatetime(), reverse=True)
    for summary in summaries:
        build_id = summary.deployment_version.build_id
        state = STATE_NAMES.get(summary.status, "unknown")
        if summary.drainage_info.status == VersionDrainageStatus.VERSION_DRAINAGE_STATUS_DRAINED:
            state = "drained"
        version = WorkerDeploymentVersion(name, build_id)
        versions.append(
            VersionStatus(
                build_id=build_id,
                state=state,
                ramp_percentage=ramp if state == "ramping" else 0.0,
                pollers={queue: pollers[queue].get(build_id, 0) for queue in queues},
                open_orders=await count_open(client, workflow_type, version),
                ever_current=summary.HasField("first_activation_time"),
            )
        )
    return versions
