"""Webhooks: every order status change, POSTed to ``ORDER_WEBHOOK_URL``, HMAC-signed, sent and
retried by a Temporal activity (docs/api.md, "Webhooks").

- **The outbox is the audit trail.** A status change is an ``OrderEvent`` with a ``to_status``;
  the workers' sweep (``webhooks_queued`` in ``orderweb/activities.py``, every few seconds) gives
  each such event that has none a ``WebhookDelivery`` row (unique per event), then starts one
  ``WebhookDeliveryWorkflow`` per new delivery on the ``webhook-tq`` task queue (workflow id from
  the row, so a second start is refused by Temporal and nothing is sent twice by a second
  sweep). Nothing in the order's workflow or its projection knows about webhooks.
- **Nothing is dropped.** The sweep keeps its own high-water mark per receiver URL
  (``WebhookCursor``): every status change up to it has its delivery. ``LOOKBACK`` applies once,
  when the URL is first configured; after that, workers down for a day or a backlog of any size
  are drained (the sweep loops over batches until none is left). The mark moves only past events
  older than ``ORDER_WEBHOOK_SETTLE_SECONDS``: ids are taken at insert and rows seen at commit,
  so a transaction that commits after a later one is still found (every newer event is looked
  at again on each sweep, cheaply: those with a delivery are skipped by its unique index).
- **A slow receiver holds up only webhooks.** Deliveries run on ``webhook-tq``, served by a
  worker with its own thread pool (``temporal_app/worker.py``), never on the order's queues.
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
from django.db.models import Max
from django.utils import timezone
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from orderweb.models import OrderEvent, WebhookCursor, WebhookDelivery
from temporal_app.client import TemporalUnavailable, client_thread
from temporal_app.contracts import WEBHOOK_TASK_QUEUE, WebhookInput, webhook_workflow_id

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Orderweb-Signature"
EVENT_ID_HEADER = "Orderweb-Event-Id"
SEND_TIMEOUT_SECONDS = 10
SWEEP_BATCH = 200  # rows per statement; a sweep loops over batches until none is left
RECEIVER_REFUSED = "The receiver answered HTTP {status}: {body}"
RECEIVER_UNREACHABLE = "The receiver could not be reached: {reason}"
WEBHOOK_FAILED_TYPE = "WebhookNotAccepted"


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def webhook_signature_valid(
    secret: str, header: str, body: bytes, *, now: Optional[float] = None, tolerance_seconds: int = 300
) -> bool:
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
        "event": {
            "type": event.type,
            "label": event.label,
            "actor": event.actor,
            "source": event.source,
            "message": event.message,
        },
    }
    if event.type == OrderEvent.Type.REVIEW_ESCALATED:
        body["review"] = {
            "waited_seconds": event.details.get("waited_seconds"),
            "review_due": event.details.get("review_due"),
        }
    if event.type in (OrderEvent.Type.LABEL_ADDED, OrderEvent.Type.LABEL_REMOVED):
        body["label"] = {
            "label": event.details.get("label"),
            "note": event.details.get("note", ""),
            "source_reference": event.details.get("source_reference", ""),
            "removed": event.type == OrderEvent.Type.LABEL_REMOVED,
        }
    return body


def webhook_send(*, delivery_id: int) -> None:
    """One attempt: POST, and record what the receiver said. Raises (retryable) unless 2xx."""
    delivery = WebhookDelivery.objects.select_related("event__order").get(pk=delivery_id)
    if delivery.status == WebhookDelivery.Status.SENT:
        return  # a retry after a 2xx whose report was lost
    body = json.dumps(webhook_body(delivery.event), separators=(",", ":")).encode()
    request = urllib.request.Request(
        delivery.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "orderweb-webhooks/1",
            EVENT_ID_HEADER: f"evt_{delivery.event_id}",
            SIGNATURE_HEADER: webhook_signature(settings.ORDER_WEBHOOK_SECRET, int(time.time()), body),
        },
    )
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
            status=WebhookDelivery.Status.SENT,
            attempts=delivery.attempts + 1,
            last_status_code=status,
            last_error="",
            sent_at=now,
            updated_at=now,
        )
        return
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=delivery.attempts + 1, last_status_code=status, last_error=problem[:500], updated_at=now
    )
    raise ApplicationError(problem, type=WEBHOOK_FAILED_TYPE)  # retried by Temporal


GAVE_UP = "Gave up after {attempts} attempt(s): {last}"


def webhook_gave_up(*, delivery_id: int, reason: str) -> None:
    """The delivery's time is up: marked failed for staff, with the receiver's last answer."""
    delivery = WebhookDelivery.objects.filter(pk=delivery_id).exclude(status=WebhookDelivery.Status.SENT).first()
    if delivery is None:
        return
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.FAILED,
        updated_at=timezone.now(),
        last_error=GAVE_UP.format(attempts=delivery.attempts, last=delivery.last_error or reason)[:1000],
    )


def webhook_cursor(url: str) -> WebhookCursor:
    """The sweep's mark for ``url``; made at the last event older than the lookback when the URL
    is first configured (ORDER_WEBHOOK_LOOKBACK_SECONDS), so older status changes are not sent."""
    cursor = WebhookCursor.objects.filter(url=url).first()
    if cursor is not None:
        return cursor
    before = timezone.now() - timedelta(seconds=settings.ORDER_WEBHOOK_LOOKBACK_SECONDS)
    start = OrderEvent.objects.filter(created_at__lt=before).aggregate(last=Max("pk"))["last"] or 0
    cursor, _ = WebhookCursor.objects.get_or_create(url=url, defaults={"event_id": start})
    return cursor


def webhook_deliveries_create() -> int:
    """Give every status change past the mark without one a delivery, batch after batch until
    none is left; then move the mark past the settled ones. Returns how many were made."""
    url = settings.ORDER_WEBHOOK_URL
    cursor = webhook_cursor(url)
    settled_before = timezone.now() - timedelta(seconds=settings.ORDER_WEBHOOK_SETTLE_SECONDS)
    made, after = 0, cursor.event_id
    while True:
        events = list(
            OrderEvent.objects.filter(pk__gt=after, webhook_delivery__isnull=True)
            .exclude(to_status="")
            .order_by("pk")
            .values_list("pk", flat=True)[:SWEEP_BATCH]
        )
        made += len(
            WebhookDelivery.objects.bulk_create(
                [WebhookDelivery(event_id=pk, url=url) for pk in events], ignore_conflicts=True
            )
        )
        if len(events) < SWEEP_BATCH:
            break
        after = events[-1]
    # Every status change that committed up to here has its delivery. The mark moves past the
    # events old enough that no transaction writing one can still be open (the settle time).
    settled = OrderEvent.objects.filter(pk__gt=cursor.event_id, created_at__lt=settled_before).aggregate(
        last=Max("pk")
    )["last"]
    if settled is not None:
        WebhookCursor.objects.filter(pk=cursor.pk, event_id__lt=settled).update(
            event_id=settled, updated_at=timezone.now()
        )
    return made


def webhook_workflows_start() -> int:
    """Start the workflow of each delivery that has none yet, batch after batch until none is
    left or Temporal is unreachable; returns how many it started. A delivery whose start fails
    otherwise is logged and left for the next sweep; the ones after it still start."""
    started, after = 0, 0
    while True:
        batch = list(
            WebhookDelivery.objects.filter(workflow_started_at__isnull=True, pk__gt=after).order_by("pk")[:SWEEP_BATCH]
        )
        for delivery in batch:
            after = delivery.pk
            arg = WebhookInput(delivery.pk, settings.ORDER_WEBHOOK_GIVE_UP_SECONDS)

            async def start(client, arg=arg):
                try:
                    await client.start_workflow(
                        "WebhookDeliveryWorkflow",
                        arg,
                        id=webhook_workflow_id(arg.delivery_id),
                        task_queue=WEBHOOK_TASK_QUEUE,
                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    )
                except WorkflowAlreadyStartedError:
                    return False  # another worker's sweep was first
                return True

            try:
                started += client_thread.run(start)
            except TemporalUnavailable:
                logger.warning("Temporal is unreachable; webhook deliveries wait for the next sweep")
                return started
            except Exception:
                logger.exception(
                    "the workflow of webhook delivery %s did not start; the next sweep tries again", delivery.pk
                )
                continue
            WebhookDelivery.objects.filter(pk=delivery.pk).update(workflow_started_at=timezone.now())
        if len(batch) < SWEEP_BATCH:
            return started


def webhooks_queue() -> tuple[int, int]:
    """The sweep: (deliveries made, workflows started). Off unless ORDER_WEBHOOK_URL is set."""
    if not settings.ORDER_WEBHOOK_URL:
        return 0, 0
    made = webhook_deliveries_create()
    return made, webhook_workflows_start()
