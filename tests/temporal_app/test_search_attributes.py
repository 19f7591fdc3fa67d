"""The workers register the search attributes they need on a server that lacks them."""

from __future__ import annotations

import asyncio

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from devtools.devserver import start_dev_server
from devtools.supervise import free_port, stop_process
from temporal_app.worker import REQUIRED_SEARCH_ATTRIBUTES, ensure_search_attributes


def test_missing_search_attributes_are_registered(tmp_path):
    port = free_port()
    server = start_dev_server(
        db_file=tmp_path / "t.db",
        port=port,
        ui_port=free_port(),
        headless=True,
        register_search_attributes=False,
    )
    try:

        async def scenario():
            client = await Client.connect(f"127.0.0.1:{port}")
            request = ListSearchAttributesRequest(namespace="default")
            before = set((await client.operator_service.list_search_attributes(request)).custom_attributes)
            added = await ensure_search_attributes(client)
            after = (await client.operator_service.list_search_attributes(request)).custom_attributes
            again = await ensure_search_attributes(client)
            return before, added, dict(after), again

        before, added, after, again = asyncio.run(scenario())
    finally:
        stop_process(server)
    assert not set(REQUIRED_SEARCH_ATTRIBUTES) & before
    assert added == sorted(REQUIRED_SEARCH_ATTRIBUTES)
    assert {name: after[name] for name in REQUIRED_SEARCH_ATTRIBUTES} == REQUIRED_SEARCH_ATTRIBUTES
    assert again == []
