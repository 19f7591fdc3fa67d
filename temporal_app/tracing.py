"""OpenTelemetry tracing: one trace from a reviewer's POST to the charge's SQL statements.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (then spans go there over OTLP/HTTP, batched;
``OTEL_SERVICE_NAME`` names the process, default ``orderweb``). Off, nothing is installed: no
provider, no instrumentation, no interceptor, so an untraced process pays nothing.

On, every process of this project (``temporal_app`` configures it when Django starts):

- Django's instrumentation opens a span per request, psycopg's one per SQL statement;
- the Temporal client and the workers get temporalio's ``OpenTelemetryInterceptor`` (the one
  behind its experimental ``OpenTelemetryPlugin``; the plugin itself would append our interceptor
  after its own, the wrong order, see ``CauseInterceptor``): spans for starting workflows and
  Updates, handling them in a workflow task, starting and running activities, linked through
  Temporal's headers. Its tracer provider is ``create_tracer_provider()``'s replay-safe one: span
  ids inside a workflow come from the workflow's own deterministic random, and no span is ended
  (so none is exported twice) while a workflow replays its history;
- ``CauseInterceptor`` puts what a workflow's main routine does after a message under that
  message: the activities ``run()`` starts after a reviewer's decision belong to the decision's
  trace, not to the order's start an hour before (see its docstring);
- log lines carry ``trace_id`` and ``span_id`` (``temporal_app.logs``).

The sync web code reaches Temporal through the client thread (``temporal_app.client``); it hands
the request's context over with ``current_context``/``attached``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any, Optional

import opentelemetry.context
import opentelemetry.trace
import temporalio.client
import temporalio.worker
import temporalio.workflow
from opentelemetry.context import Context

logger = logging.getLogger(__name__)

# Probes, scrapes and static files are not worth a trace.
EXCLUDED_URLS = "healthz,readyz,metrics,static/,temporal-codec/"
TRACE_HEADER = "_tracer-data"  # the header temporalio's OpenTelemetry interceptors write


class _Processors:
    """The provider's one span processor; the exporters' processors behind it come and go (a
    provider cannot drop a processor, and tests turn tracing on and off). Duck-typed, so that an
    untraced process never imports the SDK."""

    def __init__(self) -> None:
        self.active: list[Any] = []

    def on_start(self, span: Any, parent_context: Optional[Context] = None) -> None:
        for processor in self.active:
            processor.on_start(span, parent_context=parent_context)

    def _on_ending(self, span: Any) -> None:  # the SDK's hook before on_end
        for processor in self.active:
            processor._on_ending(span)

    def on_end(self, span: Any) -> None:
        for processor in self.active:
            processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self.active:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(processor.force_flush(timeout_millis) for processor in self.active)


class _State:
    enabled = False
    provider: Any = None
    processors = _Processors()


_state = _State()


def enabled() -> bool:
    return _state.enabled


def configure(*, exporter: Any = None, service_name: Optional[str] = None) -> bool:
    """Turn tracing on if ``exporter`` is given (tests: an in-memory one) or
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; returns whether it is on. Once per process: later
    calls only add ``exporter``."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    if exporter is None and not endpoint:
        return _state.enabled
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from temporalio.contrib.opentelemetry import create_tracer_provider

    if _state.provider is None:
        name = service_name or os.environ.get("OTEL_SERVICE_NAME") or "orderweb"
        _state.provider = create_tracer_provider(resource=Resource.create({"service.name": name}))
        # Once per process (OpenTelemetry refuses a second one): the interceptor's workflow side
        # requires the global provider to be this replay-safe one.
        opentelemetry.trace.set_tracer_provider(_state.provider)
        _state.provider.add_span_processor(_state.processors)
    processor: SpanProcessor
    if exporter is not None:
        processor = SimpleSpanProcessor(exporter)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter())  # reads OTEL_EXPORTER_OTLP_* itself
    _state.processors.active.append(processor)
    if not _state.enabled:
        from opentelemetry.instrumentation.django import DjangoInstrumentor
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        DjangoInstrumentor().instrument(excluded_urls=EXCLUDED_URLS)
        PsycopgInstrumentor().instrument()
        _state.enabled = True
        logger.info("tracing on: %s", "spans to " + endpoint if exporter is None else "spans kept in memory")
    return True


def disable() -> None:
    """Undo ``configure`` as far as OpenTelemetry allows (tests): instrumentation removed (a
    database connection opened while it was on stays traced until closed), the interceptors no
    longer given to new clients, the exporters shut and detached. The global provider stays (it
    cannot be replaced); what still makes spans there exports nothing."""
    if not _state.enabled:
        return
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    DjangoInstrumentor().uninstrument()
    PsycopgInstrumentor().uninstrument()
    _state.processors.shutdown()
    _state.processors.active.clear()
    _state.enabled = False


def flush(timeout_seconds: float = 5.0) -> None:
    """Export the spans still buffered (a process that exits without interpreter finalisation,
    ``temporal_app.client.exit_process``, would lose them)."""
    if _state.enabled:
        _state.processors.force_flush(int(timeout_seconds * 1000))


def client_interceptors() -> list[Any]:
    """For ``Client.connect``: the workers built on that client get them too."""
    if not _state.enabled:
        return []
    from temporalio.contrib.opentelemetry import OpenTelemetryInterceptor

    # The order matters: ours is inside temporalio's, so it sees the span of the Update it
    # handles, and attaches the cause before temporalio's outbound side reads the context.
    return [OpenTelemetryInterceptor(add_temporal_spans=True), CauseInterceptor()]


def sandbox_passthrough() -> tuple[str, ...]:
    """Modules the workflow sandbox must share with the worker when tracing is on (as the
    OpenTelemetryPlugin does): the span context lives in OpenTelemetry's module state."""
    return ("opentelemetry",) if _state.enabled else ()


def current_context() -> Optional[Context]:
    """The caller's trace context, to hand to another thread; None when tracing is off."""
    return opentelemetry.context.get_current() if _state.enabled else None


@contextlib.contextmanager
def attached(context: Optional[Context]) -> Iterator[None]:
    """Run the block in ``context`` (from ``current_context``); nothing when it is None."""
    if context is None:
        yield
        return
    token = opentelemetry.context.attach(context)
    try:
        yield
    finally:
        opentelemetry.context.detach(token)


def log_ids() -> tuple[Optional[str], Optional[str]]:
    """The current trace and span ids in hex, for log lines; (None, None) outside a trace."""
    if not _state.enabled:
        return None, None
    context = opentelemetry.trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None, None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


# -- the cause of what a workflow does next ------------------------------------------------------


class CauseInterceptor(temporalio.client.Interceptor, temporalio.worker.Interceptor):
    """Parents what a workflow's ``run()`` starts on the last traced message it handled.

    temporalio's interceptor parents a workflow's activities on the workflow's own start: an
    order parked in review for an hour and then approved would have its charge in the trace of
    ``order_create``, and the reviewer's POST would end at the Update handler. The order's story
    is that the approval caused the charge (and the shipping, and the ending). So, inside
    temporalio's workflow interceptor: when an Update or signal that carries a trace is handled,
    its handler's context becomes the workflow's cause; an activity, local activity or child
    workflow that ``run()`` starts afterwards starts in that context. What a handler starts itself
    stays under the handler. Deterministic: the cause is set again, identically, when the history
    replays (the Update's header is in it, and span ids in a workflow come from its seeded random).
    """

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[temporalio.worker.WorkflowInboundInterceptor]:
        return _CauseInbound


class _CauseInbound(temporalio.worker.WorkflowInboundInterceptor):
    def init(self, outbound: temporalio.worker.WorkflowOutboundInterceptor) -> None:
        self.cause: Optional[Context] = None
        self.run_span: Any = None
        super().init(_CauseOutbound(outbound, self))

    async def execute_workflow(self, input: temporalio.worker.ExecuteWorkflowInput) -> Any:
        self.run_span = opentelemetry.trace.get_current_span()
        return await super().execute_workflow(input)

    async def handle_signal(self, input: temporalio.worker.HandleSignalInput) -> None:
        self._remember(input.headers)
        await super().handle_signal(input)

    async def handle_update_handler(self, input: temporalio.worker.HandleUpdateInput) -> Any:
        self._remember(input.headers)
        return await super().handle_update_handler(input)

    def _remember(self, headers: Any) -> None:
        if TRACE_HEADER in headers:  # a message from a traced client (not the CLI, not a cron)
            self.cause = opentelemetry.context.get_current()


class _CauseOutbound(temporalio.worker.WorkflowOutboundInterceptor):
    def __init__(self, next: temporalio.worker.WorkflowOutboundInterceptor, root: _CauseInbound) -> None:
        super().__init__(next)
        self.root = root

    @contextlib.contextmanager
    def _under_cause(self) -> Iterator[None]:
        in_run = opentelemetry.trace.get_current_span() is self.root.run_span
        with attached(self.root.cause if in_run else None):
            yield

    def start_activity(self, input: temporalio.worker.StartActivityInput) -> temporalio.workflow.ActivityHandle:
        with self._under_cause():
            return super().start_activity(input)

    def start_local_activity(
        self, input: temporalio.worker.StartLocalActivityInput
    ) -> temporalio.workflow.ActivityHandle:
        with self._under_cause():
            return super().start_local_activity(input)

    async def start_child_workflow(
        self, input: temporalio.worker.StartChildWorkflowInput
    ) -> temporalio.workflow.ChildWorkflowHandle:
        with self._under_cause():
            return await super().start_child_workflow(input)
