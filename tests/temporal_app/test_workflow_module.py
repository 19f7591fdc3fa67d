"""The workflow module is importable by outside clients that have no Django at all."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_workflows_module_imports_no_django():
    code = (
        "import sys, temporal_app.workflows as w; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'orderweb', 'reviews'}); "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # no DJANGO_SETTINGS_MODULE
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, f"workflow module pulled in: {run.stdout} {run.stderr}"


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

    classes = [c for c in vars(contracts).values()
               if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == contracts.__name__]
    assert len(classes) >= 10
    stringly = [f"{c.__name__}.{f.name}" for c in classes for f in dataclasses.fields(c) if isinstance(f.type, str)]
    assert stringly == []
