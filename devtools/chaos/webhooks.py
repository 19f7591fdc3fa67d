"""Webhooks in the chaos run (issue 19, items 2 and 3): the run's own receiver, its two faults and
their audit.

- **A webhook receiver that hangs.** For ``seconds`` every POST hangs (longer than the workers'
  10 s send timeout), then is answered 503: a hung request is never accepted, so each status
  change the receiver accepted was seen accepted by the worker too, or is sent again. Orders must
  go on meanwhile: ``check_orders_went_on_while_the_receiver_hung``.
- **Workers down past the webhook lookback.** Every worker is SIGKILLed and kept down for longer
  than ``ORDER_WEBHOOK_LOOKBACK_SECONDS`` (a short setting here) while orders are still saved:
  their status changes are older than the lookback when the workers come back, and must still be
  sent (``check_workers_down_past_the_lookback``).
- **Every status change delivered once** (``check_webhooks_delivered``): each status change of the
  run's orders has one delivery, marked sent, and the receiver accepted it (signed right). A
  delivery whose 2xx answer was lost (a worker SIGKILLed mid-POST) is accepted twice: at least
  once by design; receivers dedupe on ``Orderweb-Event-Id``, and the detail counts those repeats.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devtools.chaos.checks import Check

SECRET = secrets.token_hex(16)  # one per run: the driver's receiver and the workers' env share it
LOOKBACK_SECONDS = 10.0  # the workers' ORDER_WEBHOOK_LOOKBACK_SECONDS in the run
SWEEP_SECONDS = 2.0  # the workers' ORDER_WEBHOOK_SWEEP_SECONDS in the run
HANG_SECONDS = 25.0  # a hang: longer than the 10 s send timeout, so attempts time out and retry
DOWN_SECONDS = LOOKBACK_SECONDS + 10  # workers down: past the lookback
HUNG_ANSWER = 503


def worker_env(url: str) -> dict[str, str]:
    """The workers' webhook settings in the run."""
    return {
        "ORDER_WEBHOOK_URL": url,
        "ORDER_WEBHOOK_SECRET": SECRET,
        "ORDER_WEBHOOK_LOOKBACK_SECONDS": str(LOOKBACK_SECONDS),
        "ORDER_WEBHOOK_SWEEP_SECONDS": str(SWEEP_SECONDS),
    }


class ChaosReceiver:
    """A real HTTP receiver in the driver's process: checks each signature, counts each event id
    it accepted, and hangs on request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: Counter = Counter()  # "evt_<id>" -> 2xx answers given
        self.bad_signatures: list[str] = []
        self.hung = 0  # requests that hung, then were answered 503
        self.hang_until = 0.0  # time.monotonic()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                receiver.handle(self)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/chaos"
        threading.Thread(target=self.server.serve_forever, name="chaos-receiver", daemon=True).start()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        from orderweb.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, webhook_signature_valid

        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        status = 200
        if time.monotonic() < self.hang_until:
            while time.monotonic() < self.hang_until:
                time.sleep(0.2)
            status = HUNG_ANSWER
            with self.lock:
                self.hung += 1
        else:
            event_id = request.headers.get(EVENT_ID_HEADER, "")
            valid = webhook_signature_valid(SECRET, request.headers.get(SIGNATURE_HEADER, ""), body)
            with self.lock:
                if not valid or json.loads(body).get("id") != event_id:
                    self.bad_signatures.append(event_id or "<no event id>")
                    status = 400
                else:
                    self.accepted[event_id] += 1
        try:
            request.send_response(status)
            request.end_headers()
        except OSError:  # the worker gave up waiting (its send timeout): nothing to answer
            pass

    def hang(self, seconds: float) -> None:
        self.hang_until = time.monotonic() + seconds

    def stop(self) -> None:
        self.hang_until = 0.0
        self.server.shutdown()
        self.server.server_close()


def _status_changes(order_ids: list[str]) -> list[tuple[int, str, str, datetime]]:
    from orderweb.models import OrderEvent

    return list(
        OrderEvent.objects.filter(order__order_id__in=order_ids)
        .exclude(to_status="")
        .values_list("pk", "order__order_id", "to_status", "created_at")
    )


def undelivered(order_ids: list[str]) -> int:
    """Status changes of the run's orders not sent yet (what the audit waits for)."""
    from orderweb.models import OrderEvent

    return (
        OrderEvent.objects.filter(order__order_id__in=order_ids)
        .exclude(to_status="")
        .exclude(webhook_delivery__status="sent")
        .count()
    )


def check_webhooks_delivered(order_ids: list[str], accepted: Counter, bad_signatures: list[str]) -> Check:
    """Each status change of the run has one delivery, sent, and the receiver accepted it; the
    receiver accepted nothing else than the run's deliveries, each signed right."""
    from orderweb.models import WebhookDelivery

    changes = _status_changes(order_ids)
    deliveries = dict(
        WebhookDelivery.objects.filter(event__order__order_id__in=order_ids).values_list("event_id", "status")
    )
    problems = []
    for pk, oid, to_status, _ in changes:
        status = deliveries.get(pk)
        if status is None:
            problems.append(f"{oid}: status change evt_{pk} ({to_status}) has no delivery")
        elif status != WebhookDelivery.Status.SENT:
            problems.append(f"{oid}: status change evt_{pk} ({to_status}) delivery {status}")
        elif f"evt_{pk}" not in accepted:
            problems.append(f"{oid}: status change evt_{pk} ({to_status}) marked sent, never accepted")
    known = {f"evt_{pk}" for pk in deliveries}
    problems += [f"the receiver accepted {eid}, no delivery of the run" for eid in sorted(set(accepted) - known)]
    problems += [f"bad signature on {eid}" for eid in bad_signatures]
    repeats = sum(n - 1 for n in accepted.values())
    return Check(
        "every status change delivered once (webhooks)",
        problems,
        f"{len(changes)} status changes (+{len(set(deliveries) - {c[0] for c in changes})} escalations); "
        f"{sum(accepted.values())} POSTs accepted, {repeats} of them again after a lost answer",
    )


def check_orders_went_on_while_the_receiver_hung(
    order_ids: list[str], hangs: Iterable[tuple[datetime, datetime]]
) -> Check:
    """During each hang, the workers still wrote the orders' status changes to Postgres."""
    changes = _status_changes(order_ids)
    problems, written = [], []
    for start, end in hangs:
        n = sum(1 for *_, at in changes if start <= at <= end)
        written.append(n)
        if not n:
            problems.append(f"no status change written while the receiver hung ({start:%H:%M:%S} to {end:%H:%M:%S})")
    return Check(
        "orders went on while the webhook receiver hung",
        problems,
        ", ".join(
            f"{n} status changes in {(e - s).total_seconds():.0f} s" for n, (s, e) in zip(written, hangs, strict=False)
        )
        or "no hang",
    )


def check_workers_down_past_the_lookback(
    order_ids: list[str], downs: Iterable[tuple[datetime, datetime]], lookback_seconds: float
) -> Check:
    """Each workers-down outage outlasted the lookback, and status changes were saved in it that
    were older than the lookback when the workers came back (so the delivery check covers them)."""
    changes = _status_changes(order_ids)
    problems, waited = [], []
    for start, end in downs:
        n = sum(1 for *_, at in changes if start <= at and (end - at).total_seconds() > lookback_seconds)
        waited.append(n)
        if (end - start).total_seconds() <= lookback_seconds:
            problems.append(f"down {(end - start).total_seconds():.0f} s, not past the {lookback_seconds:g} s lookback")
        elif not n:
            problems.append(
                f"no status change saved while the workers were down ({start:%H:%M:%S} to {end:%H:%M:%S}) "
                f"was older than the lookback when they came back"
            )
    return Check(
        "workers down past the webhook lookback: changes waited",
        problems,
        ", ".join(
            f"{n} status changes older than the lookback when the workers came back "
            f"(down {(e - s).total_seconds():.0f} s)"
            for n, (s, e) in zip(waited, downs, strict=False)
        )
        or "no outage",
    )
