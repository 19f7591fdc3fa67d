"""The order workflows. Deterministic and Django-free: outside clients import them without Django.

``OrderWorkflow`` and ``ShippingWorkflow`` are importable from here (a contract); the parts:

- ``order``: OrderWorkflow, the order's story;
- ``order_actions``: the gates for review, cancellation, address and the shipping child;
- ``record``: the order's state, its messages, search attributes and the Postgres projection;
- ``shipping``: ShippingWorkflow, the child;
- ``boundary``: reading whatever clients send;
- ``shielded``: Temporal's own cancel handled as a request, not a cut;
- ``policies``: timeouts and retry policies; ``failures``: reading a failure's cause;
- ``webhook``: WebhookDeliveryWorkflow, one order status change sent to the webhook URL.
"""

from temporal_app.workflows.order import OrderWorkflow
from temporal_app.workflows.record import DISPATCH_FAILURES_KEY, ORDER_STATUS_KEY
from temporal_app.workflows.shipping import ShippingWorkflow
from temporal_app.workflows.webhook import WebhookDeliveryWorkflow

__all__ = ["OrderWorkflow", "ShippingWorkflow", "WebhookDeliveryWorkflow", "ORDER_STATUS_KEY", "DISPATCH_FAILURES_KEY"]
