"""Webhooks: every order status change, POSTed to ``ORDER_WEBHOOK_URL``, HMAC-signed, sent and
retried by a Temporal activity (docs/api.md, "Webhooks").

- **The outbox is the audit trail.** A status change is an ``OrderEvent`` with a ``to_status``;
  the workers' sweep (``webhooks_queued`` in ``orderweb/activities.py``, every few seconds) gives
  each such event of the last hour that has none a ``WebhookDelivery`` row (unique per event),
  then starts one ``WebhookDeliveryWorkflow`` per new delivery (workflow id from the row, so a
  second start is refused by Temporal and nothing is sent twice by a second sweep). Nothing in
  the order's workflow or its projection knows about webhooks.
- **Sending** is ``webhook_send``: one POST with a 10-second timeout; 2xx marks the delivery
  sent, anything else raises and Temporal retries with backoff until the delivery's time is up
  (``ORDER_WEBHOOK_GIVE_UP_SECONDS``), when the delivery is marked failed with the last error.
- **At least once.** A receiver that answered 2xx after its time ran out, or whose answer was
  lost, may get the same event again: ``Orderweb-Event-Id`` is stable, receivers dedupe on it.
  Deliveries run in parallel, so ``sequence`` (the event's id, increasing) orders them.
- **Signed.** ``Orderweb-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``;
  a receiver recomputes it with the shared secret and refuses a stale ``t`` (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any, Optional

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from orderweb.models import OrderEvent, WebhookDelivery
from temporal_app.client import TemporalUnavailable, client_thread
from temporal_app.contracts import ORDER_TASK_QUEUE, WebhookInput, webhook_workflow_id

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Orderweb-Signature"
EVENT_ID_HEADER = "Orderweb-Event-Id"
SEND_TIMEOUT_SECONDS = 10
# Status changes older than this when webhooks are first configured are not sent.
LOOKBACK = timedelta(hours=1)
SWEEP_BATCH = 200
RECEIVER_REFUSED = "The receiver answered HTTP {status}: {body}"
RECEIVER_UNREACHABLE = "The receiver could not be reached: {reason}"
WEBHOOK_FAILED_TYPE = "WebhookNotAccepted"


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def webhook_signature_valid(secret: str, header: str, body: bytes, *, now: Optional[float] = None,
                            tolerance_seconds: int = 300) -> bool:
    """What a receiver does (here for the tests and as the reference for docs/api.md)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(webhook_signature(secret, timestamp, body), header)


# Events other than status changes that are sent too: their delivery row is written with the
# event, in its transaction (reviews.services.review_task_escalate, orderweb.labels), so no sweep
# needs to find them.
EVENT_TYPES = {
    OrderEvent.Type.REVIEW_ESCALATED: "review.escalated",
    OrderEvent.Type.LABEL_ADDED: "order.labelled",
    OrderEvent.Type.LABEL_REMOVED: "order.label_removed",
}


def webhook_body(event: OrderEvent) -> dict[str, Any]:
    body = {
        "id": f"evt_{event.pk}",
        "type": EVENT_TYPES.get(event.type, "order.status_changed"),
        "sequence": event.pk,
        "created_at": event.created_at.isoformat(),
        "order_id": event.order.order_id,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "event": {"type": event.type, "label": event.label, "actor": event.actor, "source": event.source,
                  "message": event.message},
    }
    if event.type == OrderEvent.Type.REVIEW_ESCALATED:
        body["review"] = {"waited_seconds": event.details.get("waited_seconds"),
                          "review_due": event.details.get("review_due")}
    if event.type in (OrderEvent.Type.LABEL_ADDED, OrderEvent.Type.LABEL_REMOVED):
        body["label"] = {"label": event.details.get("label"), "note": event.details.get("note", ""),
                         "source_reference": event.details.get("source_reference", ""),
                         "removed": event.type == OrderEvent.Type.LABEL_REMOVED}
    return body


def webhook_send(*, delivery_id: int) -> None:
    """One attempt: POST, and record what the receiver said. Raises (retryable) unless 2xx."""
    delivery = WebhookDelivery.objects.select_related("event__order").get(pk=delivery_id)
    if delivery.status == WebhookDelivery.Status.SENT:
        return  # a retry after a 2xx whose report was lost
    body = json.dumps(webhook_body(delivery.event), separators=(",", ":")).encode()
    request = urllib.request.Request(delivery.url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "orderweb-webhooks/1",
        EVENT_ID_HEADER: f"evt_{delivery.event_id}",
        SIGNATURE_HEADER: webhook_signature(settings.ORDER_WEBHOOK_SECRET, int(time.time()), body),
    })
    status: Optional[int] = None
    try:
        with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_SECONDS) as response:
            status = response.status
        problem = ""
    except urllib.error.HTTPError as err:
        status = err.code
        problem = RECEIVER_REFUSED.format(status=err.code, body=err.read(200).decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError, ValueError) as err:
        problem = RECEIVER_UNREACHABLE.format(reason=getattr(err, "reason", err))
    now = timezone.now()
    if not problem:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.SENT, attempts=delivery.attempts + 1, last_status_code=status,
            last_error="", sent_at=now, updated_at=now)
        return
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=delivery.attempts + 1, last_status_code=status, last_error=problem[:500], updated_at=now)
    raise ApplicationError(problem, type=WEBHOOK_FAILED_TYPE)  # retried by Temporal


GAVE_UP = "Gave up after {attempts} attempt(s): {last}"


def webhook_gave_up(*, delivery_id: int, reason: str) -> None:
    """The delivery's time is up: marked failed for staff, with the receiver's last answer."""
    delivery = WebhookDelivery.objects.filter(pk=delivery_id).exclude(status=WebhookDelivery.Status.SENT).first()
    if delivery is None:
        return
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.FAILED, updated_at=timezone.now(),
        last_error=GAVE_UP.format(attempts=delivery.attempts, last=delivery.last_error or reason)[:1000])


def webhook_deliveries_create() -> int:
    """Give every recent status change without one a delivery; returns how many were made."""
    events = list(
        OrderEvent.objects.filter(created_at__gte=timezone.now() - LOOKBACK, webhook_delivery__isnull=True)
        .exclude(to_status="").order_by("pk").values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    made = WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(event_id=pk, url=settings.ORDER_WEBHOOK_URL) for pk in events], ignore_conflicts=True)
    return len(made)


def webhook_workflows_start() -> int:
    """Start the workflow of each delivery that has none yet; returns how many it started."""
    started = 0
    for delivery in WebhookDelivery.objects.filter(workflow_started_at__isnull=True).order_by("pk")[:SWEEP_BATCH]:
        arg = WebhookInput(delivery.pk, settings.ORDER_WEBHOOK_GIVE_UP_SECONDS)

        async def start(client, arg=arg):
            try:
                await client.start_workflow(
                    "WebhookDeliveryWorkflow", arg, id=webhook_workflow_id(arg.delivery_id),
                    task_queue=ORDER_TASK_QUEUE, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
            except WorkflowAlreadyStartedError:
                return False  # another worker's sweep was first
            return True

        try:
            started += client_thread.run(start)
        except TemporalUnavailable:
            logger.warning("Temporal is unreachable; webhook deliveries wait for the next sweep")
            break
        WebhookDelivery.objects.filter(pk=delivery.pk).update(workflow_started_at=timezone.now())
    return started


def webhooks_queue() -> tuple[int, int]:
    """The sweep: (deliveries made, workflows started). Off unless ORDER_WEBHOOK_URL is set."""
    if not settings.ORDER_WEBHOOK_URL:
        return 0, 0
    with transaction.atomic():
        made = webhook_deliveries_create()
    return made, webhook_workflows_start()
