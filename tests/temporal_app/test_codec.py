"""Payload encryption (temporal_app/codec.py) against a real dev server and real workers: what
Temporal stores is encrypted, clients without the codec still work, keys rotate."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.fernet import Fernet
from temporalio.client import Client
from temporalio.converter import DataConverter

from temporal_app.codec import (
    ENCODING,
    KEY_ID,
    FernetPayloadCodec,
    PayloadKeyError,
    data_converter,
    key_id,
    parse_keys,
    payloads_in,
)


def test_keys_parse_newest_first_and_a_bad_key_is_named():
    a, b = Fernet.generate_key(), Fernet.generate_key()
    assert parse_keys(f" {a.decode()} , {b.decode()} ") == [a, b]
    assert parse_keys("") == []
    with pytest.raises(PayloadKeyError, match="key 2 is not a Fernet key"):
        parse_keys(f"{a.decode()},not-a-key")


def test_encodes_with_the_newest_key_and_decodes_with_any():
    old, new = Fernet.generate_key(), Fernet.generate_key()
    plain = DataConverter.default.payload_converter.to_payload("742 Evergreen Terrace")
    by_old = FernetPayloadCodec([old]).encode_one(plain)
    assert by_old.metadata["encoding"] == ENCODING and by_old.metadata[KEY_ID] == key_id(old).encode()
    assert b"Evergreen" not in by_old.SerializeToString()
    rotated = FernetPayloadCodec([new, old])
    assert rotated.decode_one(by_old) == plain  # an old payload after the rotation
    assert rotated.encode_one(plain).metadata[KEY_ID] == key_id(new).encode()
    with pytest.raises(PayloadKeyError, match=f"encrypted with key {key_id(old)} cannot be decrypted"):
        FernetPayloadCodec([new]).decode_one(by_old)
    assert FernetPayloadCodec([new]).decode_one(plain) == plain  # not ours: passed through


def test_no_key_is_the_default_converter():
    assert data_converter([]) is DataConverter.default
    assert isinstance(data_converter([Fernet.generate_key()]).payload_codec, FernetPayloadCodec)


@pytest.mark.temporal
def test_what_temporal_stores_is_encrypted(temporal_server):
    """An order started by an encrypting client: its history in Temporal holds no address. On a
    task queue no worker polls (the session's workers run without keys); the production test
    (tests/test_production.py) runs a whole order with encrypting workers."""
    from temporal_app.workflows import OrderWorkflow
    from tests.helpers import new_order_id

    key, address, workflow_id = Fernet.generate_key(), "1234 Secret Street, Springfield", new_order_id("CODEC").lower()

    async def scenario() -> tuple[bytes, bytes]:
        client = await Client.connect(temporal_server, data_converter=data_converter([key]))
        handle = await client.start_workflow(
            OrderWorkflow.run, args=[workflow_id.upper(), address], id=workflow_id, task_queue="codec-test-tq"
        )
        try:
            history = await handle.fetch_history()
        finally:
            await handle.terminate("test ended")
        raw = b"".join(event.SerializeToString() for event in history.events)
        codec = FernetPayloadCodec([key])
        decoded = b"".join(codec.decode_one(p).SerializeToString() for e in history.events for p in payloads_in(e))
        return raw, decoded

    raw, decoded = asyncio.run(scenario())
    assert address.encode() not in raw and ENCODING in raw
    assert address.encode() in decoded  # the control: the same history, decrypted, holds it


def test_failure_messages_are_encrypted_too():
    converter = data_converter([Fernet.generate_key()])
    from temporalio.api.failure.v1 import Failure
    from temporalio.exceptions import ApplicationError

    failure = Failure()
    asyncio.run(converter.encode_failure(ApplicationError("address 1 Secret St refused"), failure))
    assert b"Secret St" not in failure.SerializeToString()
    assert str(asyncio.run(converter.decode_failure(failure))) == "address 1 Secret St refused"
