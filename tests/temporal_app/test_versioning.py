"""Worker Deployment Versioning, rehearsed on a dev server of its own as an operator would upgrade:

1. `manage.py run_workers` v1 (the code as it is; its build id a hash of the workflow code) polls
   and, the deployment's first version, becomes current; orders are parked in review on it;
2. v2, a copy of the project with a real, patched workflow change (after the approval the order
   notes in its memo which code approved it), starts beside it; `workers_status` shows both;
   `verify_replay` from v2's code passes against the parked orders; `temporal worker deployment
   set-current-version` makes v2 current;
3. the parked orders are approved and finish correctly, their tasks after the approval on v2
   (auto-upgrade);
4. new orders run on v2 from their first task;
5. v1 drains (`workers_status` says so), is stopped, and an order after that still completes.

The figures (orders parked, finished, on which version, the drain time) are written to
test-artifacts/versioning-rehearsal.txt.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from devtools.devserver import temporal_binary
from devtools.supervise import HttpReady, free_port, wait_ready
from orderweb.models import Order
from orderweb.services import order_create
from reviews.services import review_decide
from temporal_app.contracts import LineItem, shipping_workflow_id
from temporal_app.versioning import code_build_id
from tests.conftest import ARTIFACTS, wait_for_database_quiet
from tests.helpers import new_order_id, temporal, wait_until
from tests.reviews.conftest import make_user
from tests.temporal_app.changed_workflows import REHEARSAL_PATCH
from tests.temporal_app.test_run_workers import database_url

pytestmark = pytest.mark.temporal

ROOT = Path(__file__).resolve().parents[2]
PARKED, NEW = 4, 3


class Workers:
    """`manage.py run_workers` from ``root`` (this project, or a changed copy), versioned."""

    def __init__(self, root: Path, address: str, log: Path) -> None:
        self.health = free_port()
        self.log = log
        env = {
            **os.environ,
            "DEBUG": "1",
            "DATABASE_URL": database_url(),
            "TEMPORAL_ADDRESS": address,
            "TEMPORAL_WORKER_VERSIONING": "1",
            "WORKER_HEALTH_PORT": str(self.health),
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("TEMPORAL_BUILD_ID", "TEMPORAL_VERSION_CURRENT_ON_START", "TEMPORAL_WORKFLOW_SANDBOX"):
            env.pop(name, None)
        with open(log, "wb") as out:  # the child has its own copy of the file
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "run_workers", "--threads", "4"],
                cwd=root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        wait_ready(HttpReady(f"http://127.0.0.1:{self.health}/readyz"), 90, self.process)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


def changed_copy(tmp: Path) -> Path:
    """This project with v2's workflow change: the package's OrderWorkflow is the patched copy."""
    copy = tmp / "v2"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "var", "test-artifacts", "staticfiles", "__pycache__", "node_modules", ".env"
        ),
    )
    workflows = copy / "temporal_app" / "workflows"
    shutil.copy(ROOT / "tests" / "temporal_app" / "changed_workflows.py", workflows / "rehearsal_v2.py")
    with open(workflows / "__init__.py", "a") as init:
        init.write(
            "\nfrom temporal_app.workflows.rehearsal_v2 import NoteAfterReviewOrderWorkflow as OrderWorkflow  # noqa\n"
        )
    return copy


def status() -> dict:
    out = io.StringIO()
    call_command("workers_status", "--json", stdout=out)
    answer = json.loads(out.getvalue())
    answer["by_build"] = {v["build_id"]: v for v in answer["versions"]}
    return answer


def task_builds(workflow_id: str) -> list[str]:
    """The build id of each completed workflow task of the workflow, in order."""

    async def read(client):
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        return [
            e.workflow_task_completed_event_attributes.deployment_version.build_id
            for e in history.events
            if e.HasField("workflow_task_completed_event_attributes")
        ]

    return temporal(read)


def memo(workflow_id: str) -> dict:
    async def read(client):
        return await (await client.get_workflow_handle(workflow_id).describe()).memo()

    return temporal(read)


def count(query: str) -> int:
    return temporal(lambda client: client.count_workflows(query)).count


def create(prefix: str) -> Order:
    return order_create(
        order_id=new_order_id(prefix), address="1 Rehearsal Road", line_items=[LineItem("SKU-1", "Widget", 1, "5.00")]
    )


def in_state(orders: list[Order], state: str, timeout: float = 60) -> None:
    pks = [order.pk for order in orders]
    wait_until(
        lambda: Order.objects.filter(pk__in=pks, status=state).count() == len(pks),
        timeout=timeout,
        what=f"{len(pks)} orders to be {state}",
    )


def test_an_upgrade_rehearsed_orders_parked_on_v1_finish_on_v2_and_v1_drains(own_temporal, tmp_path):
    reviewer = make_user("rehearsal-reviewer", reviewer=True)
    v1_build = code_build_id()
    v1 = Workers(ROOT, own_temporal, tmp_path / "v1.log")
    v2 = None
    try:
        v1.wait_ready()
        wait_until(lambda: "made current (the deployment's first version" in v1.output(), what="v1 to become current")

        # 1. Orders parked in review on v1.
        parked = [create("PARKED") for _ in range(PARKED)]
        in_state(parked, "awaiting_manual_review")

        # 2. v2 beside it: a new build id (its workflow code differs), not current yet.
        copy = changed_copy(tmp_path)
        v2_build = code_build_id(copy / "temporal_app")
        assert v2_build != v1_build
        v2 = Workers(copy, own_temporal, tmp_path / "v2.log")
        v2.wait_ready()
        wait_until(
            lambda: f"orderweb:{v2_build} polls; the current version is orderweb:{v1_build}" in v2.output(),
            what="v2 to register",
        )
        before = status()
        assert before["by_build"][v1_build]["state"] == "current"
        assert before["by_build"][v1_build]["open_orders"] == PARKED
        assert before["by_build"][v2_build]["state"] == "inactive"
        assert before["by_build"][v2_build]["pollers"] == {"order-tq": 1, "shipping-tq": 1, "webhook-tq": 1}

        # The runbook's check before the switch: v2's code replays the parked orders' histories.
        # (Only the orders': the periodic jobs' schedules start runs of their own meanwhile,
        # which come and go; they replay too, but are not what is counted here.)
        check = subprocess.run(
            [sys.executable, "manage.py", "verify_replay", "--no-progress", "--workflow-type", "OrderWorkflow"],
            cwd=copy,
            env={**os.environ, "DEBUG": "1", "DATABASE_URL": database_url(), "TEMPORAL_ADDRESS": own_temporal},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert f"Replayed {PARKED} histories ({PARKED} running, 0 closed)" in check.stdout, check.stdout

        switch = subprocess.run(
            [
                temporal_binary(),
                "worker",
                "deployment",
                "set-current-version",
                "--address",
                own_temporal,
                "--deployment-name",
                "orderweb",
                "--build-id",
                v2_build,
                "--yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        switched_at = time.monotonic()
        assert switch.returncode == 0, switch.stdout + switch.stderr
        assert status()["by_build"][v2_build]["state"] == "current"

        # 3. The parked orders are approved and finish: their tasks after the approval run v2.
        for order in parked:
            assert review_decide(order=order, user=reviewer, decision="approve").accepted
        in_state(parked, "completed")
        for order in parked:
            builds = task_builds(order.workflow_id)
            assert builds[0] == v1_build and builds[-1] == v2_build, builds
            assert memo(order.workflow_id) == {"approved_under": "v2"}  # v2's change ran
            assert set(task_builds(shipping_workflow_id(order.workflow_id))) == {v2_build}

        # 4. New orders run on v2 from their first task.
        new = [create("NEW") for _ in range(NEW)]
        in_state(new, "awaiting_manual_review")
        for order in new:
            assert review_decide(order=order, user=reviewer, decision="approve").accepted
        in_state(new, "completed")
        for order in new:
            assert set(task_builds(order.workflow_id)) == {v2_build}
            assert memo(order.workflow_id) == {"approved_under": "v2"}
        on_v2 = count(f'WorkflowType = "OrderWorkflow" AND TemporalWorkerDeploymentVersion = "orderweb:{v2_build}"')
        assert on_v2 == PARKED + NEW

        # 5. v1 drains; its workers stop; v2 alone carries on.
        wait_until(lambda: status()["by_build"][v1_build]["state"] == "drained", timeout=120, what="v1 to drain")
        drained_after = time.monotonic() - switched_at
        after = status()
        assert after["by_build"][v1_build]["can_stop"] and after["by_build"][v1_build]["open_orders"] == 0
        assert v1.stop() == 0, v1.output()
        assert "workers stopped" in v1.output()
        last = create("AFTER")
        in_state([last], "awaiting_manual_review")
        assert review_decide(order=last, user=reviewer, decision="approve").accepted
        in_state([last], "completed")
        assert set(task_builds(last.workflow_id)) == {v2_build}
        assert Order.objects.filter(status="completed").count() == PARKED + NEW + 1

        table = io.StringIO()
        call_command("workers_status", stdout=table)
        ARTIFACTS.mkdir(exist_ok=True)
        figures = (
            f"versioning rehearsal: v1 build {v1_build}, v2 build {v2_build} (patch {REHEARSAL_PATCH})\n"
            f"orders parked on v1: {PARKED}; finished: {PARKED} completed, first task on v1, approval and "
            f"shipping on v2\nnew orders after the switch: {NEW} completed, every task on v2; one more after "
            f"v1 stopped: completed on v2\nv1 drained {drained_after:.1f} s after set-current-version "
            f"(drainage checked every 2 s on this server)\n\nworkers_status at the end:\n{table.getvalue()}"
        )
        (ARTIFACTS / "versioning-rehearsal.txt").write_text(figures)
        print(figures)
    finally:
        for workers in (v1, v2):
            if workers is not None:
                workers.stop()
        wait_for_database_quiet()


def test_the_build_id_follows_the_workflow_code_only(tmp_path):
    app = tmp_path / "temporal_app"
    shutil.copytree(ROOT / "temporal_app", app, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_build_id(app)
    assert before == code_build_id(ROOT / "temporal_app")
    (app / "client.py").write_text("# not workflow code\n")  # outside workflows/ and contracts.py
    assert code_build_id(app) == before
    order = app / "workflows" / "order.py"
    order.write_text(order.read_text() + "\n# a change\n")
    assert code_build_id(app) != before


@pytest.mark.parametrize("part", ["contracts.py", "contracts_names.py", "contracts_payloads.py", "contracts_rules.py"])
def test_the_build_id_follows_every_part_of_the_contracts(tmp_path, part):
    """The contracts are split by concern; a change to any part is a change to the workflow code."""
    app = tmp_path / "temporal_app"
    shutil.copytree(ROOT / "temporal_app", app, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_build_id(app)
    (app / part).write_text((app / part).read_text() + "\n# a change\n")
    assert code_build_id(app) != before


def test_every_workflow_type_the_workers_run_has_a_versioning_behaviour():
    from temporalio.common import VersioningBehavior

    from temporal_app.versioning import behaviour_of
    from temporal_app.worker import QUEUES, workflow_type, workflows_for

    for queue in QUEUES:
        assert behaviour_of(workflow_type(defn) for defn in workflows_for(queue)) == VersioningBehavior.AUTO_UPGRADE
    with pytest.raises(ValueError, match="no versioning behaviour chosen for NewWorkflow"):
        behaviour_of(["OrderWorkflow", "NewWorkflow"])


def test_workers_status_says_when_no_versioned_worker_has_polled(own_temporal):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Temporal knows no worker deployment 'orderweb'"):
        call_command("workers_status", stdout=io.StringIO())
