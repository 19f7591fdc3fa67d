"""Building and running the workers for the order and shipping task queues."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Sequence

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from temporal_app.contracts import (
    ORDER_TASK_QUEUE,
    SEARCH_ATTRIBUTE_DISPATCH_FAILURES,
    SEARCH_ATTRIBUTE_ORDER_STATUS,
    SHIPPING_TASK_QUEUE,
)

logger = logging.getLogger(__name__)

QUEUES = (ORDER_TASK_QUEUE, SHIPPING_TASK_QUEUE)
GRACEFUL_SHUTDOWN = timedelta(seconds=10)

REQUIRED_SEARCH_ATTRIBUTES = {
    SEARCH_ATTRIBUTE_ORDER_STATUS: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    SEARCH_ATTRIBUTE_DISPATCH_FAILURES: IndexedValueType.INDEXED_VALUE_TYPE_INT,
}


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register the search attributes the workflows upsert, if the server lacks them.

    Returns the names it added. On Temporal Cloud the operator API is closed: there they are
    added in the namespace settings, and a failure here is logged, not fatal.
    """
    namespace = client.namespace
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        missing = {
            name: kind
            for name, kind in REQUIRED_SEARCH_ATTRIBUTES.items()
            if name not in existing.custom_attributes
        }
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
            )
            logger.info("registered search attributes %s", ", ".join(sorted(missing)))
        return sorted(missing)
    except RPCError as err:
        logger.warning(
            "could not check or register search attributes %s (%s); register them on the server",
            ", ".join(REQUIRED_SEARCH_ATTRIBUTES), err.message,
        )
        return []


def build_workers(
    client: Client,
    *,
    queues: Iterable[str] = QUEUES,
    activity_executor: ThreadPoolExecutor,
    max_concurrent_activities: int,
) -> list[Worker]:
    # Imported here: activities need Django set up; workflows do not.
    from temporal_app.activities import ORDER_ACTIVITIES, SHIPPING_ACTIVITIES
    from temporal_app.workflows import OrderWorkflow, ShippingWorkflow

    per_queue = {
        ORDER_TASK_QUEUE: ([OrderWorkflow], ORDER_ACTIVITIES),
        SHIPPING_TASK_QUEUE: ([ShippingWorkflow], SHIPPING_ACTIVITIES),
    }
    workers = []
    for queue in queues:
        workflows, activities = per_queue[queue]
        workers.append(
            Worker(
                client,
                task_queue=queue,
                workflows=workflows,
                activities=activities,
                activity_executor=activity_executor,
                max_concurrent_activities=max_concurrent_activities,
                max_concurrent_local_activities=max_concurrent_activities,
                # On shutdown, running activities get this long to finish before cancellation.
                graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            )
        )
    return workers


async def run_workers(
    client: Client, *, queues: Sequence[str], threads: int, stop: asyncio.Event
) -> None:
    """Run the workers until ``stop`` is set, then shut down gracefully: no new tasks are
    polled and running activities are given time to finish."""
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="activity") as executor:
        workers = build_workers(
            client, queues=queues, activity_executor=executor, max_concurrent_activities=threads
        )
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            logger.info("workers running on %s (%d activity threads)", ", ".join(queues), threads)
            await stop.wait()
            logger.info("shutting down workers")
    logger.info("workers stopped")

