"""Slots never exceed threads (issue 19, item 3): each worker has a thread pool of its own with
one thread per activity and local-activity slot, so a task that got a slot never waits for a
thread, and a slow webhook receiver cannot take the order's threads. Read from the workers'
own configuration, as temporalio builds them."""

from __future__ import annotations

import pytest

from temporal_app.contracts import ORDER_TASK_QUEUE, SHIPPING_TASK_QUEUE, WEBHOOK_TASK_QUEUE, Activities
from temporal_app.worker import QUEUES, build_workers, slot_plan
from tests.helpers import temporal


@pytest.mark.parametrize("threads", [4, 5, 8, 12, 16, 32])
@pytest.mark.parametrize("webhook_threads", [1, 4])
def test_the_plan_gives_every_slot_a_thread_and_shares_the_database_threads(threads, webhook_threads):
    plan = slot_plan(QUEUES, threads, webhook_threads)
    assert plan[ORDER_TASK_QUEUE].threads + plan[SHIPPING_TASK_QUEUE].threads == threads
    assert plan[WEBHOOK_TASK_QUEUE].threads == webhook_threads
    assert plan[WEBHOOK_TASK_QUEUE].local_activities == 0  # the webhook workflow has none
    for queue in (ORDER_TASK_QUEUE, SHIPPING_TASK_QUEUE):
        assert plan[queue].activities >= 1 and plan[queue].local_activities >= 1
    assert slot_plan([SHIPPING_TASK_QUEUE], threads, webhook_threads)[SHIPPING_TASK_QUEUE].threads == threads


def test_too_few_threads_are_refused():
    with pytest.raises(ValueError, match="at least 4 threads"):
        slot_plan(QUEUES, 3, 4)


@pytest.mark.temporal
def test_no_worker_has_more_slots_than_threads(temporal_server):
    async def build(client):
        executors = {}
        workers = build_workers(client, queues=QUEUES, threads=8, webhook_threads=4, executors=executors)
        return {worker.task_queue: worker.config() for worker in workers}, executors

    configs, executors = temporal(build)
    try:
        assert set(configs) == set(QUEUES)
        pools = [config["activity_executor"] for config in configs.values()]
        assert len({id(pool) for pool in pools}) == len(pools)  # no pool shared
        for queue, config in configs.items():
            slots = config["max_concurrent_activities"] + config["max_concurrent_local_activities"]
            assert slots <= config["activity_executor"]._max_workers, queue
        assert sum(configs[q]["activity_executor"]._max_workers for q in (ORDER_TASK_QUEUE, SHIPPING_TASK_QUEUE)) == 8

        # Webhooks are sent by the webhook worker only (order-tq keeps the two activities for
        # deliveries started there before the move: orderweb/activities.py).
        def names(queue):
            return {fn.__temporal_activity_definition.name for fn in configs[queue]["activities"]}

        assert Activities.WEBHOOK_DELIVERED in names(WEBHOOK_TASK_QUEUE)
        assert Activities.WEBHOOK_DELIVERED not in names(SHIPPING_TASK_QUEUE)
    finally:
        for pool in executors.values():
            pool.shutdown()
