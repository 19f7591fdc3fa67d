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

import functools
import logging
import random
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import DataError, IntegrityError, close_old_connections
from django.utils.module_loading import autodiscover_modules
from temporalio import activity
from temporalio.exceptions import ApplicationError

from temporal_app.contracts import ORDER_TASK_QUEUE, SHIPPING_TASK_QUEUE, Errors
from temporal_app.logs import bind_order, unbind_order

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

INJECTED_FAULT = "InjectedFault"
PERMANENT_FAULTS = (DataError, IntegrityError, ValidationError, ObjectDoesNotExist)

_activities: dict[str, list[Callable[..., Any]]] = {ORDER_TASK_QUEUE: [], SHIPPING_TASK_QUEUE: []}


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    seconds: float
    run: Callable[[], Any]


_periodic: dict[str, list[PeriodicJob]] = {ORDER_TASK_QUEUE: [], SHIPPING_TASK_QUEUE: []}


def _register(queue: str, fn: Callable[..., Any]) -> None:
    if queue not in _activities:
        raise ValueError(f"unknown task queue {queue!r}")
    # A module imported twice (tests reloading it) must not register an activity twice.
    name = fn.__temporal_activity_definition.name  # type: ignore[attr-defined]
    _activities[queue] = [a for a in _activities[queue] if a.__temporal_activity_definition.name != name]  # type: ignore[attr-defined]
    _activities[queue].append(fn)


def db_activity(name: str, *, queue: str) -> Callable[[F], F]:
    """Register a sync activity that uses the ORM from a worker thread (see the module doc)."""

    def decorate(fn: F) -> F:
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

        defined = activity.defn(name=name)(attempt)
        _register(queue, defined)
        return defined  # type: ignore[return-value]

    return decorate


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
    """Run a sync function every ``seconds`` in each worker process of ``queue`` (idempotent
    jobs only: several worker processes may run it at once)."""

    def decorate(fn: F) -> F:
        name = f"{fn.__module__}.{fn.__qualname__}"
        _periodic[queue] = [job for job in _periodic[queue] if job.name != name]
        _periodic[queue].append(PeriodicJob(name, seconds, fn))
        return fn

    return decorate


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
    discover()
    return list(_activities[queue])


def periodic_jobs_for(queue: str) -> list[PeriodicJob]:
    discover()
    return list(_periodic[queue])
