"""How the apps plug their activities and periodic jobs into the workers.

Each Django app that does work for the workflows keeps it in its own ``activities.py`` (as
Celery apps keep ``tasks.py``): ``orderweb`` the order's steps, ``reviews`` the steps that open
and close review tasks. They register here with a decorator naming the task queue;
``run_workers`` discovers them with Django's ``autodiscover_modules``. So the dependencies point
one way: the apps use ``temporal_app`` (contracts, client), and ``temporal_app`` imports neither.

``db_activity`` wraps a sync ORM activity for a worker thread: stale connections are closed
before and after each attempt (as Django's request cycle would), and a fault that no retry can fix
(a data or integrity error, a missing row) fails the attempt as non-retryable
(``Errors.PERMANENT``), so the workflow can refund and fail the order instead of retrying forever.
Transient faults (the database unreachable) keep retrying.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import DataError, IntegrityError, close_old_connections
from django.utils.module_loading import autodiscover_modules
from temporalio import activity
from temporalio.exceptions import ApplicationError

from temporal_app.contracts import ORDER_TASK_QUEUE, SHIPPING_TASK_QUEUE, WEBHOOK_TASK_QUEUE, Activities, Errors
from temporal_app.logs import bind_order, unbind_order

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

INJECTED_FAULT = "InjectedFault"
PERMANENT_FAULTS = (DataError, IntegrityError, ValidationError, ObjectDoesNotExist)

_activities: dict[str, list[Callable[..., Any]]] = {
    ORDER_TASK_QUEUE: [],
    SHIPPING_TASK_QUEUE: [],
    WEBHOOK_TASK_QUEUE: [],
}


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    seconds: float
    run: Callable[[], Any]
    queue: str = ORDER_TASK_QUEUE


_periodic: dict[str, list[PeriodicJob]] = {ORDER_TASK_QUEUE: [], SHIPPING_TASK_QUEUE: [], WEBHOOK_TASK_QUEUE: []}


def _register(queue: str, fn: Callable[..., Any]) -> None:
    if queue not in _activities:
        raise ValueError(f"unknown task queue {queue!r}")
    # A module imported twice (tests reloading it) must not register an activity twice.
    name = fn.__temporal_activity_definition.name  # type: ignore[attr-defined]
    _activities[queue] = [a for a in _activities[queue] if a.__temporal_activity_definition.name != name]  # type: ignore[attr-defined]
    _activities[queue].append(fn)


def also_on(queue: str, fn: Callable[..., Any]) -> None:
    """Register an activity already registered on another queue on ``queue`` too (the same
    definition, the same name): for the tasks scheduled there before it moved."""
    _register(queue, fn)


def db_activity(name: str, *, queue: str) -> Callable[[F], F]:
    """Register a sync activity that uses the ORM from a worker thread (see the module doc)."""

    def decorate(fn: F) -> F:
        defined = _db_activity_defn(name, fn)
        _register(queue, defined)
        return defined

    return decorate


def _db_activity_defn(name: str, fn: F) -> F:
    @functools.wraps(fn)
    def attempt(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        order = bind_order(args)  # the order's id on this attempt's log lines
        try:
            rate = settings.ACTIVITY_FAULT_RATE
            if rate and random.random() < rate:
                raise ApplicationError(f"injected fault in {name}", type=INJECTED_FAULT)
            return fn(*args, **kwargs)
        except PERMANENT_FAULTS as err:
            logger.error("%s failed for good: %s: %s", name, type(err).__name__, err)
            first_line = (str(err).strip().splitlines() or [""])[0]
            raise ApplicationError(
                f"{type(err).__name__}: {first_line}", type=Errors.PERMANENT, non_retryable=True
            ) from err
        finally:
            unbind_order(order)
            close_old_connections()

    return activity.defn(name=name)(attempt)  # type: ignore[return-value]


def temporal_activity(name: str, *, queue: str) -> Callable[[F], F]:
    """Register an async activity that talks to Temporal only (no ORM)."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        async def attempt(*args: Any, **kwargs: Any) -> Any:
            order = bind_order(args)
            try:
                return await fn(*args, **kwargs)
            finally:
                unbind_order(order)

        defined = activity.defn(name=name)(attempt)
        _register(queue, defined)
        return defined  # type: ignore[return-value]

    return decorate


def periodic(*, seconds: float, queue: str = ORDER_TASK_QUEUE) -> Callable[[F], F]:
    """Run a sync function every ``seconds``: once per period across all worker processes, by a
    Temporal Schedule that starts ``PeriodicJobWorkflow`` on ``queue`` (temporal_app/schedules.py;
    the workers create or update it when they start). Still idempotent jobs only: a run whose
    worker died is retried, and an operator may trigger one by hand."""

    def decorate(fn: F) -> F:
        name = f"{fn.__module__}.{fn.__qualname__}"
        for jobs in _periodic.values():  # a module imported twice registers once
            jobs[:] = [job for job in jobs if job.name != name]
        _periodic.setdefault(queue, []).append(PeriodicJob(name, seconds, fn, queue))
        return fn

    return decorate


def unregister_periodic(name: str) -> None:
    """Forget a periodic job (tests that register their own)."""
    for jobs in _periodic.values():
        jobs[:] = [job for job in jobs if job.name != name]


def periodic_job(name: str) -> PeriodicJob | None:
    return next((job for jobs in _periodic.values() for job in jobs if job.name == name), None)


def _periodic_job_ran(name: str) -> str:
    """The one activity behind every periodic job: run the job named by the schedule's workflow.
    Returns the job's result in words (the Web UI shows it), at most 200 characters."""
    job = periodic_job(name)
    if job is None:  # a schedule left behind by a job that no longer exists in this code
        raise ApplicationError(
            f"no periodic job {name!r} is registered in these workers", type=Errors.PERMANENT, non_retryable=True
        )
    from temporal_app.client import TemporalUnavailable

    # Alive while the job runs, whatever its steps take: a worker that dies under a job is noticed
    # within PeriodicJobWorkflow's heartbeat timeout, and the job runs again elsewhere.
    done = threading.Event()
    beat = threading.Thread(
        target=contextvars.copy_context().run, args=(_heartbeat_until, done), name="periodic-heartbeat", daemon=True
    )
    beat.start()
    try:
        result = job.run()
    except TemporalUnavailable as err:  # an outage (a restart): the next period runs it again
        logger.warning("periodic job %s: %s", name, err)
        return f"Temporal unreachable: {err}"[:200]
    finally:
        done.set()
    return "" if result is None else str(result)[:200]


PERIODIC_HEARTBEAT_SECONDS = 5.0


def _heartbeat_until(done: threading.Event) -> None:
    while not done.wait(PERIODIC_HEARTBEAT_SECONDS):
        try:
            activity.heartbeat()
        except Exception:  # noqa: BLE001  (the activity is over or cancelled: stop beating)
            return


periodic_job_ran = _db_activity_defn(Activities.PERIODIC_JOB_RAN, _periodic_job_ran)


def worker_stopping() -> bool:
    """Whether the worker running this activity is shutting down: a periodic job checks it
    between batches and leaves the rest to its next run, so shutdown does not wait for a whole
    backlog. False outside an activity (a management command)."""
    try:
        return activity.is_worker_shutdown()
    except RuntimeError:  # not in an activity
        return False


def discover() -> None:
    """Import every installed app's ``activities`` module, so that they register."""
    autodiscover_modules("activities")


def activities_for(queue: str) -> list[Callable[..., Any]]:
    """The queue's activities, and the periodic jobs' runner where the queue has jobs."""
    discover()
    return [*_activities[queue], *([periodic_job_ran] if _periodic.get(queue) else [])]


def periodic_jobs_for(queue: str) -> list[PeriodicJob]:
    discover()
    return list(_periodic.get(queue, []))
