"""The Temporal client, for async code (workers, commands) and for sync Django code (views, admin,
services).

One client per process. temporalio's client is asyncio-based and safe to share between
coroutines, but a WSGI server calls views from many threads, none of them running an event loop.
So the process keeps one event loop on a daemon thread, owning one connected client; sync code
hands it coroutines with ``run_coroutine_threadsafe`` and waits with a timeout. No request opens
its own connection, and a fork (gunicorn pre-fork) is detected by pid and gets its own loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Optional, TypeVar

from django.conf import settings
from prometheus_client import Counter, Histogram
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from temporal_app import codec, tracing
from temporal_app.contracts import (
    ORDER_TASK_QUEUE,
    ActionResult,
    Errors,
    OrderOptions,
    OrderState,
    RefusalCode,
    refusal,
)

# The workflow package is Django-free: importing it here costs no settings or database.
from temporal_app.workflows import DISPATCH_FAILURES_KEY, ORDER_STATUS_KEY, OrderWorkflow

logger = logging.getLogger(__name__)
T = TypeVar("T")

TEMPORAL_UNAVAILABLE = "Temporal is unreachable at {address} ({detail}). Nothing was changed; try again in a moment."
TEMPORAL_NO_ANSWER = (
    "Temporal did not answer within {seconds:g} s; the request may still take effect. "
    "Check the order before trying again."
)
WORKFLOW_CANNOT_ANSWER = (
    "The order's workflow cannot take requests right now: its workflow task keeps failing "
    "(see the Temporal Web UI). Nothing was changed; the order is flagged for staff."
)


TEMPORAL_MISCONFIGURED = "Temporal connection settings: {problem}"
WORKERS_NOT_ANSWERING = (
    "The workers of task queue {queue} are not answering: a status query got no answer within "
    "{seconds:g} s (first noticed at {since:%H:%M:%S} UTC)."
)

# The web's calls to Temporal, counted by this process (prometheus-client: in gunicorn's
# multiprocess mode each worker process writes its own file and /metrics adds them up). The
# SDK's own client metrics would need a port per process; these answer the same questions.
CLIENT_CALLS = Counter(
    "orderweb_temporal_client_calls_total",
    "Calls from sync Django code to Temporal, by outcome.",
    ["outcome"],
)
CLIENT_CALL_SECONDS = Histogram(
    "orderweb_temporal_client_call_seconds",
    "How long sync Django code waited for Temporal.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class TemporalUnavailable(Exception):
    """Temporal could not be reached or did not answer in time. ``str(err)`` is for people.
    ``since`` and ``remembered`` are set when ``worker_silence`` answered instead of Temporal."""

    since: Optional[datetime] = None
    remembered = False


class TemporalMisconfigured(TemporalUnavailable):
    """The connection settings cannot work (half-configured mTLS, unreadable file, bad key)."""


class TemporalNoAnswer(TemporalUnavailable):
    """The request reached Temporal but no answer came in time: it may still take effect."""


class WorkflowCannotAnswer(TemporalUnavailable):
    """Temporal refuses to deliver the request: the workflow's task is failing (it is stuck)."""


class WorkersNotAnswering(TemporalUnavailable):
    """Temporal answers but no worker does: a query got no answer in time (the workers are down,
    or too busy to poll)."""


class WorkerSilence:
    """This process's memory that the order workers (or Temporal itself) are not answering, so
    that not every web request waits for them to say nothing.

    Every open review page asks for the live status every few seconds; without a worker each
    query would hold a web thread for its whole timeout, and a handful of reviewers fill a
    gunicorn. Once a status query goes unanswered, the queries and Updates of the next
    ``TEMPORAL_WORKERS_RECHECK_SECONDS`` are answered at once, with what was noticed
    (``remembered`` set; an Update is then not sent, so nothing changes); after that one request
    at a time asks again, and an answer clears the memory."""

    @dataclass
    class _Noticed:
        error: TemporalUnavailable
        since: datetime  # wall clock, for people
        quiet_until: float  # monotonic: until then, nobody asks

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._noticed: dict[tuple, WorkerSilence._Noticed] = {}  # by Temporal address and namespace

    @staticmethod
    def _key() -> tuple:
        return settings.TEMPORAL_ADDRESS, settings.TEMPORAL_NAMESPACE

    def known(self) -> Optional[TemporalUnavailable]:
        """What was noticed, if callers should not ask now; None: go ahead and ask (the caller
        told None after the pause is the probe: the others are still told until it is done, or
        its timeout has passed)."""
        with self._lock:
            noticed = self._noticed.get(self._key())
            if noticed is None:
                return None
            now = time.monotonic()
            if now < noticed.quiet_until:
                remembered = type(noticed.error)(str(noticed.error))
                remembered.since, remembered.remembered = noticed.since, True
                return remembered
            noticed.quiet_until = now + settings.TEMPORAL_QUERY_TIMEOUT_SECONDS + 1
            return None

    def noticed(self, err: TemporalUnavailable) -> TemporalUnavailable:
        """Remember ``err`` (the first moment it was noticed is kept) and return it to raise."""
        with self._lock:
            earlier = self._noticed.get(self._key())
            err.since = earlier.since if earlier is not None else datetime.now(UTC)
            self._noticed[self._key()] = self._Noticed(
                err, err.since, time.monotonic() + settings.TEMPORAL_WORKERS_RECHECK_SECONDS
            )
            return err

    def answered(self) -> None:
        with self._lock:
            self._noticed.pop(self._key(), None)

    def forget(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self._noticed.clear()

    def first_noticed(self) -> datetime:
        with self._lock:
            noticed = self._noticed.get(self._key())
            return noticed.since if noticed is not None else datetime.now(UTC)


worker_silence = WorkerSilence()


class ActionRefused(Exception):
    """The workflow refused the action, or Temporal did on its behalf (closed, not found)."""

    def __init__(self, code: RefusalCode, message: str, workflow_status: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.workflow_status = workflow_status  # the state the workflow refused in, if it said


class WorkflowGone(Exception):
    """Temporal has no such workflow (never started, or deleted after its retention period)."""


def _transport_detail(err: BaseException) -> str:
    """A connection failure in words; the SDK's own text (tonic::transport::Error(...)) goes to
    the log, not to people."""
    text = str(err).lower()
    if "refused" in text:
        return "connection refused"
    if "dns" in text or "resolve" in text:
        return "its address could not be resolved"
    if "tls" in text or "certificate" in text:
        return "the TLS handshake failed"
    return "the connection failed"


def data_converter() -> DataConverter:
    """Every client and worker of this project uses this one: payloads encrypted with
    TEMPORAL_PAYLOAD_KEYS when set (temporal_app/codec.py), the default converter otherwise."""
    return codec.data_converter(settings.TEMPORAL_PAYLOAD_KEYS)


def configuration_problem() -> str:
    return settings.TEMPORAL_CONFIG_PROBLEM


async def connect(*, lazy: bool = False, runtime: Optional[Runtime] = None) -> Client:
    """Connect with the settings (temporal_app/connection.py): address, namespace, TLS or an API
    key, gRPC metadata, the payload codec; ``runtime`` carries the SDK's metrics (run_workers).
    Raises TemporalMisconfigured, one line, when the settings cannot work."""
    if settings.TEMPORAL_CONFIG_PROBLEM:
        raise TemporalMisconfigured(TEMPORAL_MISCONFIGURED.format(problem=settings.TEMPORAL_CONFIG_PROBLEM))
    return await Client.connect(
        settings.TEMPORAL_ADDRESS,
        namespace=settings.TEMPORAL_NAMESPACE,
        api_key=settings.TEMPORAL_API_KEY or None,
        tls=settings.TEMPORAL_TLS,
        rpc_metadata=dict(getattr(settings, "TEMPORAL_RPC_METADATA", {})),
        data_converter=data_converter(),
        # OpenTelemetry's interceptors when tracing is on (temporal_app/tracing.py); the workers
        # built on this client get them too.
        interceptors=tracing.client_interceptors(),
        lazy=lazy,
        runtime=runtime,  # None: the SDK's default runtime
    )


class _ClientThread:
    """An event loop on a daemon thread, holding this process's one Temporal client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: Optional[int] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._client: Optional[Client] = None
        self._client_key: tuple = ()
        self._connecting: Optional[asyncio.Future] = None
        self._connecting_key: tuple = ()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="temporal-client", daemon=True).start()
                self._loop, self._pid, self._client, self._connecting = loop, os.getpid(), None, None
            return self._loop

    async def _client_or_connect(self) -> Client:
        # Runs on the loop thread only, so no lock is needed around the cached client. Keyed by
        # address, namespace and payload keys so that a settings override (tests) gets its own connection.
        key = (
            settings.TEMPORAL_ADDRESS,
            settings.TEMPORAL_NAMESPACE,
            tuple(settings.TEMPORAL_PAYLOAD_KEYS),
            tracing.enabled(),
        )
        if self._client is not None and self._client_key == key:
            return self._client
        # One attempt at a time, shielded: a caller that gives up first (a 2 s readiness probe,
        # a TLS handshake that takes longer) leaves it running for the next caller, instead of
        # every caller starting over and none ever connecting.
        attempt = self._connecting
        failed = attempt is not None and attempt.done() and (attempt.cancelled() or attempt.exception() is not None)
        if attempt is None or self._connecting_key != key or failed:
            attempt = asyncio.ensure_future(connect())
            # Its error is retrieved even if no one waits for it any more (no "never retrieved" log).
            attempt.add_done_callback(lambda task: task.cancelled() or task.exception())
            self._connecting, self._connecting_key = attempt, key
        try:
            client = await asyncio.shield(attempt)
        except RuntimeError as err:  # Client.connect's one way of saying it could not connect
            logger.warning("Temporal at %s: %s", settings.TEMPORAL_ADDRESS, str(err).splitlines()[0])
            raise TemporalUnavailable(
                TEMPORAL_UNAVAILABLE.format(address=settings.TEMPORAL_ADDRESS, detail=_transport_detail(err))
            ) from err
        self._client, self._client_key = client, key
        return client

    def run(self, fn: Callable[[Client], Awaitable[T]], timeout: Optional[float] = None) -> T:
        """Run ``fn(client)`` on the client thread and return its result (sync callers only)."""
        timeout = settings.TEMPORAL_RPC_TIMEOUT_SECONDS if timeout is None else timeout
        loop = self._ensure_loop()
        trace = tracing.current_context()  # the request's span, for the client's spans

        async def call() -> T:
            with tracing.attached(trace):
                return await fn(await self._client_or_connect())

        started = time.monotonic()
        outcome = "unavailable"
        try:
            result = self._run(call, loop, timeout)
            outcome = "ok"
            return result
        except TemporalUnavailable:
            outcome = "unavailable"
            raise
        except BaseException:
            outcome = "error"  # Temporal answered with an error (refused, not found, ...)
            raise
        finally:
            CLIENT_CALLS.labels(outcome).inc()
            CLIENT_CALL_SECONDS.observe(time.monotonic() - started)

    def _run(self, call: Callable[[], Awaitable[T]], loop: asyncio.AbstractEventLoop, timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(call(), timeout), loop)
        try:
            return future.result(timeout + 1)
        except TimeoutError as err:
            future.cancel()
            if self._client is None:  # still connecting: the request never left this process
                raise TemporalUnavailable(
                    TEMPORAL_UNAVAILABLE.format(address=settings.TEMPORAL_ADDRESS, detail=f"no answer in {timeout:g} s")
                ) from err
            raise TemporalNoAnswer(TEMPORAL_NO_ANSWER.format(seconds=timeout)) from err
        except RPCError as err:
            if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
                logger.warning("Temporal at %s: %s", settings.TEMPORAL_ADDRESS, err.message)
                raise TemporalUnavailable(
                    TEMPORAL_UNAVAILABLE.format(address=settings.TEMPORAL_ADDRESS, detail=_transport_detail(err))
                ) from err
            # The server's one FAILED_PRECONDITION for an Update to a workflow whose task keeps
            # failing; it has no more specific code.
            if err.status == RPCStatusCode.FAILED_PRECONDITION and "failed state" in err.message:
                raise WorkflowCannotAnswer(WORKFLOW_CANNOT_ANSWER) from err
            raise


client_thread = _ClientThread()


def temporal_health_check(timeout: float) -> None:
    """Return if Temporal's frontend says it is serving within ``timeout`` seconds (connecting
    first if need be); raise TemporalUnavailable (its words name the cause) otherwise."""

    async def check(client: Client) -> bool:
        return await client.service_client.check_health(timeout=timedelta(seconds=timeout))

    if not client_thread.run(check, timeout=timeout):
        raise TemporalUnavailable(
            TEMPORAL_UNAVAILABLE.format(address=settings.TEMPORAL_ADDRESS, detail="its health check says not serving")
        )


def exit_process(code: int) -> None:
    """Exit at once, skipping interpreter finalisation, for commands that used the SDK.

    Once temporalio's Rust runtime has run in a process, its threads can abort or hang the
    interpreter's finalisation ("PyGILState_Release ... finalizing", temporalio/sdk-python#300),
    turning a clean stop or a clear error into a crash exit code or a process that never ends.
    Call this only when all work is done: it flushes the spans not yet exported (tracing on), the
    standard streams and logging, nothing else.
    """
    tracing.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


# -- order workflow operations (sync, for Django code) --------------------------------------------


async def start_order_workflow_async(client: Client, order: Any, options: OrderOptions) -> bool:
    """Start the order's workflow; False if it already exists (a retried start is success)."""
    try:
        await client.start_workflow(
            OrderWorkflow.run,
            args=[order.order_id, order.address, options],
            id=order.workflow_id,
            task_queue=ORDER_TASK_QUEUE,
            # An order id runs once, ever: a finished order is never re-run by a retried start.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(ORDER_STATUS_KEY, OrderState.STARTED.value),
                    SearchAttributePair(DISPATCH_FAILURES_KEY, 0),
                ]
            ),
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


def start_order_workflow(order: Any, options: OrderOptions) -> bool:
    return client_thread.run(lambda client: start_order_workflow_async(client, order, options))


def workflow_closed_message(message: str) -> bool:
    """Whether the server's NOT_FOUND says the workflow closed (rather than never existed): an
    Update sent to a closed workflow ("workflow execution already completed"), or one in flight
    while it closed ("workflow update was aborted by closing workflow", as when a rejection ends
    the order while a cancel is on its way)."""
    text = message.lower()
    return any(word in text for word in ("completed", "closed", "closing"))


def order_workflow_update(workflow_id: str, update: str, arg: Any) -> ActionResult:
    """Send a Workflow Update and return the workflow's answer.

    Raises ActionRefused (with its RefusalCode) when the workflow's validator refuses or the
    workflow is closed or unknown; TemporalUnavailable (or its kinds TemporalNoAnswer and
    WorkflowCannotAnswer) when no answer can be had.
    """

    # The action id is the Update's id: Temporal keeps one Update per id in a run, so a request
    # sent again after its answer was lost (an RPC timeout under load, an outage) attaches to the
    # first one and gets its answer, or delivers it if the first never reached the workflow.
    update_id = getattr(arg, "action_id", "") or None

    async def call(client: Client) -> ActionResult:
        handle = client.get_workflow_handle(workflow_id)
        return await handle.execute_update(update, arg, id=update_id, result_type=ActionResult)

    silent = worker_silence.known()
    if silent is not None:  # not sent: an Update would wait its whole timeout for no one
        raise silent
    try:
        result = client_thread.run(call)
        worker_silence.answered()  # a worker answered
        return result
    except (WorkflowUpdateRPCTimeoutOrCancelledError, TemporalNoAnswer) as err:
        # No answer in time: a slow workflow, or no worker at all. One short query tells which,
        # and if no worker answers it, the next requests (a bulk action's) are not sent to wait.
        _workers_check(workflow_id)
        raise TemporalNoAnswer(TEMPORAL_NO_ANSWER.format(seconds=settings.TEMPORAL_RPC_TIMEOUT_SECONDS)) from err
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type == Errors.REFUSED and cause.details:
            try:
                code = RefusalCode(cause.details[0])
            except ValueError:
                code = RefusalCode.MALFORMED
            state = cause.details[1] if len(cause.details) > 1 else ""
            raise ActionRefused(code, cause.message, str(state)) from err
        # Any other failure of the validator or the handler: the request was not taken.
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        raise ActionRefused(RefusalCode.MALFORMED, message) from err
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            if workflow_closed_message(err.message):
                raise ActionRefused(RefusalCode.WORKFLOW_CLOSED, refusal(RefusalCode.WORKFLOW_CLOSED).message) from err
            found = refusal(RefusalCode.WORKFLOW_NOT_FOUND, workflow_id=workflow_id)
            raise ActionRefused(found.code, found.message) from err
        raise


def order_workflow_status(workflow_id: str) -> dict[str, Any]:
    """The workflow's live ``get_status`` (works on finished workflows too, until Temporal
    deletes them after the namespace's retention period: then WorkflowGone).

    A query needs a worker to answer it. It waits at most TEMPORAL_QUERY_TIMEOUT_SECONDS (not
    the RPC timeout of actions): without an answer by then the workers are taken to be down,
    ``WorkersNotAnswering`` is raised, and ``worker_silence`` answers the next callers at once."""
    silent = worker_silence.known()
    if silent is not None:
        raise silent
    seconds = settings.TEMPORAL_QUERY_TIMEOUT_SECONDS

    async def call(client: Client) -> dict[str, Any]:
        try:
            return await client.get_workflow_handle(workflow_id).query(
                "get_status", rpc_timeout=timedelta(seconds=seconds)
            )
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise WorkflowGone(err.message) from err
            if _no_worker_answered(err):  # before client_thread takes it for Temporal unreachable
                raise _NoWorkerAnswered(err.message) from err
            raise

    try:
        status = client_thread.run(call, timeout=seconds + 1)
    except (_NoWorkerAnswered, TemporalNoAnswer) as err:
        silent = WorkersNotAnswering(
            WORKERS_NOT_ANSWERING.format(queue=ORDER_TASK_QUEUE, seconds=seconds, since=worker_silence.first_noticed())
        )
        raise worker_silence.noticed(silent) from err
    except WorkflowCannotAnswer:
        # The server answered for this one workflow (its task keeps failing): the workers are
        # running it, so they are not silent, and the next caller's request goes through.
        worker_silence.answered()
        raise
    except TemporalUnavailable as err:  # Temporal itself: unreachable, or still connecting
        raise worker_silence.noticed(err) from err
    worker_silence.answered()
    return status


class _NoWorkerAnswered(Exception):
    pass


def _no_worker_answered(err: RPCError) -> bool:
    """How the server says that no worker took the query in time: "no poller seen for task queue
    recently" (FAILED_PRECONDITION), "query timed out before a worker could process it"
    (DEADLINE_EXCEEDED), or the call's own deadline ("Timeout expired", CANCELLED)."""
    return err.status in (
        RPCStatusCode.FAILED_PRECONDITION,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.CANCELLED,
    ) and (
        "poller" in err.message
        or "worker" in err.message
        or "timeout" in err.message.lower()
        or "timed out" in err.message
    )


def _workers_check(workflow_id: str) -> None:
    """After an Update went unanswered: a status query with the short timeout, which notes it if
    the workers are silent. Its own outcome is not the caller's concern."""
    try:
        order_workflow_status(workflow_id)
    except Exception as err:  # noqa: BLE001  (the caller reports its own no-answer)
        logger.info("after an unanswered Update to %s, the status query: %s", workflow_id, type(err).__name__)


def workflow_ui_url(workflow_id: str) -> str:
    return f"{settings.TEMPORAL_UI_URL}/namespaces/{settings.TEMPORAL_NAMESPACE}/workflows/{workflow_id}"
