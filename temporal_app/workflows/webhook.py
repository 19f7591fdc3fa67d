"""WebhookDeliveryWorkflow: one order status change, sent to the configured webhook URL.

Django-free and deterministic like the order workflows. The sending is the activity's
(``webhook_delivered`` in ``orderweb/activities.py``): Temporal retries it with backoff until the
receiver answers 2xx or the delivery's time is up; then ``webhook_gave_up`` records the failure
for staff. One workflow per delivery (id ``webhook-<delivery id>``, started once by the workers'
sweep). It runs on the ``webhook-tq`` task queue, and its activities with it (they take the
workflow's queue), served by a worker of its own with its own thread pool whose slots never
exceed its threads (``temporal_app.worker.slot_plan``): a slow or hanging receiver holds up other
webhooks at most, never an order's steps or projection writes. (Before issue 19 it ran on
order-tq and shared that worker's threads: a receiver that hung stalled the orders.) Its input is
read like the order workflows' (``boundary``): a start that is not the sweep's ends at once,
"refused", and says why.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

from temporal_app.contracts import Activities, Refusal
from temporal_app.workflows import boundary
from temporal_app.workflows.failures import root_message
from temporal_app.workflows.policies import ACTIVITY_TIMEOUT, RETRY_FOREVER, WEBHOOK_ATTEMPT_TIMEOUT, WEBHOOK_RETRY


@workflow.defn(name="WebhookDeliveryWorkflow")
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, *args: Any) -> str:
        delivery = boundary.webhook_input(args)
        if isinstance(delivery, Refusal):
            workflow.logger.warning("webhook delivery refused: %s", delivery.message)
            return "refused"
        try:
            await workflow.execute_activity(
                Activities.WEBHOOK_DELIVERED,
                delivery.delivery_id,
                start_to_close_timeout=WEBHOOK_ATTEMPT_TIMEOUT,
                schedule_to_close_timeout=timedelta(seconds=delivery.give_up_after_seconds),
                retry_policy=WEBHOOK_RETRY,
            )
            return "sent"
        except ActivityError as err:
            await workflow.execute_activity(
                Activities.WEBHOOK_GAVE_UP,
                args=[delivery.delivery_id, root_message(err)],
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_FOREVER,
            )
            return "failed"
