"""Encrypting workflow payloads: customer names and addresses never reach Temporal in clear.

``TEMPORAL_PAYLOAD_KEYS`` holds Fernet keys (``Fernet.generate_key()``: 32 url-safe base64
bytes), comma-separated, newest first. Every payload a client or worker of this project sends
(workflow and activity arguments and results, signals, Updates, queries, memos, and failure
messages) is encrypted with the newest key; any listed key decrypts. So a rotation is: prepend a
new key everywhere, and drop an old one only once no history that Temporal keeps still needs it
(docs/operations.md, "Rotating payload keys"). No key: the codec is off.

The codec decodes only its own encoding (``binary/encrypted-fernet``); a payload from a client
without the codec (the seed's code, the ``temporal`` CLI) passes through unchanged, so such
clients keep working. Each encrypted payload names the key that encrypted it
(``encryption-key-id``: the first 8 hex digits of the key's SHA-256), so an operator can tell
which key a history still needs, and a missing key is reported by that id, never by the key.

Search attributes are never encoded (Temporal must index them): they hold no customer data.
Django-free: the replayer (tests, ``record_histories``) and the web's codec endpoint use it too.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

ENCODING = b"binary/encrypted-fernet"
KEY_ID = "encryption-key-id"

BAD_KEY = (
    "TEMPORAL_PAYLOAD_KEYS: key {position} is not a Fernet key (32 url-safe base64-encoded bytes; "
    "make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
)
NO_KEY_DECRYPTS = (
    "a payload encrypted with key {key_id} cannot be decrypted: none of TEMPORAL_PAYLOAD_KEYS ({known}) is that key"
)


class PayloadKeyError(ValueError):
    """A key in TEMPORAL_PAYLOAD_KEYS is unusable, or no configured key opens a payload."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def parse_keys(text: str) -> list[bytes]:
    """``TEMPORAL_PAYLOAD_KEYS`` as keys, newest first; raises PayloadKeyError naming the bad one."""
    keys = []
    for position, part in enumerate((p.strip() for p in text.split(",")), start=1):
        if not part:
            continue
        key = part.encode()
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise PayloadKeyError(BAD_KEY.format(position=position)) from None
        keys.append(key)
    return keys


class FernetPayloadCodec(PayloadCodec):
    """Encrypts with the first key, decrypts with any (MultiFernet)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise PayloadKeyError("FernetPayloadCodec needs at least one key")
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self._key_id = key_id(keys[0])
        self.key_ids = [key_id(key) for key in keys]

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encode_one(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decode_one(payload) for payload in payloads]

    def encode_one(self, payload: Payload) -> Payload:
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: self._key_id.encode()},
            data=self._fernet.encrypt(payload.SerializeToString()),
        )

    def decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # not ours: a client without the codec sent it, or it was never encoded
        try:
            return Payload.FromString(self._fernet.decrypt(payload.data))
        except InvalidToken:
            raise PayloadKeyError(
                NO_KEY_DECRYPTS.format(
                    key_id=payload.metadata.get(KEY_ID, b"?").decode(errors="replace"), known=", ".join(self.key_ids)
                )
            ) from None


def data_converter(keys: Iterable[bytes] = ()) -> DataConverter:
    """The one data converter of every client, worker and replayer: the default one, plus the
    codec (and failure messages moved into encoded attributes) when keys are given."""
    keys = list(keys)
    if not keys:
        return DataConverter.default
    return dataclasses.replace(
        DataConverter.default,
        payload_codec=FernetPayloadCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


# -- payloads inside a history (record_histories, tests) -------------------------------------

_PAYLOAD = Payload.DESCRIPTOR.full_name
# Not encoded by the SDK's codec: search attributes (the server indexes them) and headers.
_NOT_ENCODED = {"search_attributes", "header"}
# Markers hold the SDK core's own bookkeeping (patch ids, local activity ids) in clear; only a
# local activity's result went through the codec.
_MARKER = "temporal.api.history.v1.MarkerRecordedEventAttributes"
_MARKER_ENCODED_DETAILS = {"result"}


def payloads_in(message: Message) -> list[Payload]:
    """Every Payload inside a protobuf message (a history event), search attributes and headers
    left out, in place: changing one changes the message."""
    found: list[Payload] = []

    def visit(node: Message) -> None:
        if node.DESCRIPTOR.full_name == _PAYLOAD:
            found.append(node)  # type: ignore[arg-type]
            return
        for field, value in node.ListFields():
            if field.type != FieldDescriptor.TYPE_MESSAGE or field.name in _NOT_ENCODED:
                continue
            assert field.message_type is not None  # a TYPE_MESSAGE field always has its type
            if field.message_type.GetOptions().map_entry:
                if field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                    for key, item in value.items():
                        if node.DESCRIPTOR.full_name == _MARKER and key not in _MARKER_ENCODED_DETAILS:
                            continue
                        visit(item)
            elif field.is_repeated:
                for item in value:
                    visit(item)
            else:
                visit(value)

    visit(message)
    return found


def decode_history_events(events: Iterable[Message], codec: FernetPayloadCodec) -> None:
    """Decrypt, in place, every payload of these history events that the codec encrypted."""
    for event in events:
        for payload in payloads_in(event):
            payload.CopyFrom(codec.decode_one(payload))


def encode_history_events(events: Iterable[Message], codec: FernetPayloadCodec) -> None:
    """Encrypt, in place, every payload of these history events (as encrypting clients would
    have sent them): tests make an encrypted history out of a plain one with it."""
    for event in events:
        for payload in payloads_in(event):
            if payload.metadata.get("encoding") != ENCODING:
                payload.CopyFrom(codec.encode_one(payload))
