"""Temporal's own cancel (the Web UI's "Request Cancellation", `temporal workflow cancel`) as a
request the story handles, not a cut in the middle of a step."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def run_shielded(story: Awaitable[T], on_cancel: Callable[[], Awaitable[None]]) -> T:
    """Run ``story`` to its end. A cancel requested in Temporal cancels the workflow's main
    coroutine; the story runs in its own task, shielded, so no step is cut off half-way (an
    activity mid-charge, a child mid-dispatch), and ``on_cancel`` turns the request into the
    workflow's own cancellation, which the story acts on at its next step."""
    task = asyncio.ensure_future(story)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                return task.result()
            await on_cancel()
