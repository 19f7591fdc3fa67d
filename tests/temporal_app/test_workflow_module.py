"""The workflow module is importable by outside clients that have no Django at all."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_workflows_module_imports_no_django():
    code = (
        "import sys, temporal_app.workflows as w; w.OrderWorkflow, w.ShippingWorkflow, w.WebhookDeliveryWorkflow; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'orderweb', 'reviews'}); "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # no DJANGO_SETTINGS_MODULE
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, f"workflow module pulled in: {run.stdout} {run.stderr}"


def test_the_workflows_package_names_its_workflows_and_keys():
    import temporal_app.workflows as workflows
    from temporal_app.workflows.record import ORDER_STATUS_KEY

    assert {name: getattr(workflows, name).__module__ for name in workflows.__all__ if name.endswith("Workflow")} == {
        "OrderWorkflow": "temporal_app.workflows.order",
        "ShippingWorkflow": "temporal_app.workflows.shipping",
        "WebhookDeliveryWorkflow": "temporal_app.workflows.webhook",
        "PeriodicJobWorkflow": "temporal_app.workflows.periodic",
    }
    assert workflows.ORDER_STATUS_KEY is ORDER_STATUS_KEY
    with pytest.raises(AttributeError):
        workflows.NoSuchWorkflow  # noqa: B018


def test_contract_names_are_the_seeds():
    from temporal_app.workflows import OrderWorkflow, ShippingWorkflow

    assert OrderWorkflow.__temporal_workflow_definition.name == "OrderWorkflow"
    assert ShippingWorkflow.__temporal_workflow_definition.name == "ShippingWorkflow"
    signals = OrderWorkflow.__temporal_workflow_definition.signals
    assert {"CancelOrder", "UpdateAddress", "CompleteManualReview"} <= set(signals)
    assert signals["CancelOrder"].fn.__name__ == "cancel_order"
    assert signals["UpdateAddress"].fn.__name__ == "update_address"
    assert signals["CompleteManualReview"].fn.__name__ == "complete_manual_review"
    assert "get_status" in OrderWorkflow.__temporal_workflow_definition.queries


def test_payload_dataclasses_carry_real_types_not_strings():
    """The SDK decodes every payload with typing.get_type_hints; string annotations (a `from
    __future__ import annotations` in contracts.py) make it compile them again on each call."""
    import dataclasses

    from temporal_app import contracts

    # The contracts' parts (contracts_names.py, contracts_payloads.py, ...), which contracts.py re-exports.
    classes = [
        c
        for c in vars(contracts).values()
        if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__.startswith(contracts.__name__)
    ]
    assert len(classes) >= 10
    stringly = [f"{c.__name__}.{f.name}" for c in classes for f in dataclasses.fields(c) if isinstance(f.type, str)]
    assert stringly == []


# What a module the sandbox passes through may import: nothing that reaches a clock, randomness,
# I/O, threads or the workflow API (temporalio's sandbox checks none of a passed-through module's
# code), and nothing that keeps state between workflow runs.
PURE_IMPORTS = {
    "__future__",
    "collections.abc",
    "dataclasses",
    "decimal",
    "enum",
    "ipaddress",
    "math",
    "re",
    "typing",
    "unicodedata",
    "temporalio.common",
    "temporalio.converter",
    "temporalio.exceptions",
}
PURE_FROM_DATETIME = {"timedelta"}  # not datetime.now, date.today


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", [alias.name for alias in node.names]))
    return found


def _impure_imports(module: str, allowed_modules: set[str]) -> list[str]:
    path = ROOT / (module.replace(".", "/") + ".py")
    wrong = []
    for name, names in _imports(path):
        if name == "datetime":
            wrong += [f"datetime.{n}" for n in names if n not in PURE_FROM_DATETIME] or ([] if names else ["datetime"])
        elif name not in PURE_IMPORTS and name not in allowed_modules:
            wrong.append(name)
    return wrong


def test_the_modules_the_sandbox_passes_through_are_pure():
    """The production sandbox passes these through (temporal_app.worker); each imports only pure
    building blocks, so none can read a clock or do I/O where the sandbox no longer looks."""
    from temporal_app.worker import SANDBOX_PASSTHROUGH_MODULES

    assert "temporal_app.workflows.order" not in SANDBOX_PASSTHROUGH_MODULES
    wrong = {
        module: _impure_imports(module, set(SANDBOX_PASSTHROUGH_MODULES)) for module in SANDBOX_PASSTHROUGH_MODULES
    }
    assert {module: found for module, found in wrong.items() if found} == {}


def test_the_purity_check_sees_a_clock(tmp_path, monkeypatch):
    """The check above can fail: a module that imports time, or datetime's datetime, is impure."""
    import tests.temporal_app.test_workflow_module as this

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "clock.py").write_text("import time\nfrom datetime import datetime, timedelta\n")
    monkeypatch.setattr(this, "ROOT", tmp_path)
    assert this._impure_imports("pkg.clock", set()) == ["time", "datetime.datetime"]


def test_production_workers_run_the_sandbox_with_the_pure_modules_passed_through():
    from temporalio.worker import UnsandboxedWorkflowRunner
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

    from temporal_app.worker import SANDBOX_PASSTHROUGH_MODULES, workflow_runner

    runner = workflow_runner(sandbox=True)
    assert isinstance(runner, SandboxedWorkflowRunner)
    assert set(SANDBOX_PASSTHROUGH_MODULES) <= runner.restrictions.passthrough_modules
    strict = workflow_runner(sandbox=True, passthrough=())
    assert not set(SANDBOX_PASSTHROUGH_MODULES) & strict.restrictions.passthrough_modules
    assert isinstance(workflow_runner(sandbox=False), UnsandboxedWorkflowRunner)


def test_every_part_of_the_contracts_is_passed_through_and_in_the_build_id():
    """contracts.py re-exports its parts (contracts_*.py): the sandbox must share them all, as it
    shares contracts.py, and a change to any of them is a change to the workflow code."""
    from temporal_app.versioning import WORKFLOW_CODE
    from temporal_app.worker import SANDBOX_PASSTHROUGH_MODULES

    parts = sorted(path.name for path in (ROOT / "temporal_app").glob("contracts*.py"))
    assert len(parts) >= 4
    assert {f"temporal_app.{name.removesuffix('.py')}" for name in parts} <= set(SANDBOX_PASSTHROUGH_MODULES)
    assert set(parts) <= set(WORKFLOW_CODE)
