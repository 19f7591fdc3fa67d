"""The order workflows. Deterministic and Django-free: outside clients import them without Django.

``OrderWorkflow`` and ``ShippingWorkflow`` are importable from here (a contract); the parts:

- ``order``: OrderWorkflow, the order's story;
- ``order_actions``: the gates for review, cancellation, address and the shipping child;
- ``record``: the order's state, its messages, search attributes and the Postgres projection;
- ``shipping``: ShippingWorkflow, the child;
- ``boundary``: reading whatever clients send;
- ``shielded``: Temporal's own cancel handled as a request, not a cut;
- ``policies``: timeouts and retry policies; ``failures``: reading a failure's cause;
- ``webhook``: WebhookDeliveryWorkflow, one order status change sent to the webhook URL;
- ``periodic``: PeriodicJobWorkflow, one run of a periodic job, started by its Temporal Schedule.
"""

# Each name is imported from its module when first asked for (PEP 562), not all at once: the
# workflow sandbox imports this package afresh for every workflow run, and an order's run then
# costs the shipping and webhook workflows' modules too (docs/benchmarks.md, "The workflow
# sandbox": about a third of what the sandbox adds). ``from temporal_app.workflows import
# OrderWorkflow`` works as before.
from importlib import import_module
from typing import Any

__all__ = [
    "OrderWorkflow",
    "ShippingWorkflow",
    "WebhookDeliveryWorkflow",
    "PeriodicJobWorkflow",
    "ORDER_STATUS_KEY",
    "DISPATCH_FAILURES_KEY",
]

_HOMES = {
    "OrderWorkflow": "order",
    "ShippingWorkflow": "shipping",
    "WebhookDeliveryWorkflow": "webhook",
    "PeriodicJobWorkflow": "periodic",
    "ORDER_STATUS_KEY": "record",
    "DISPATCH_FAILURES_KEY": "record",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(name)
