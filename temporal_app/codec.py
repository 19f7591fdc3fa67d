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
from typing import Iterable, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
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
    "a payload encrypted with key {key_id} cannot be decrypted: none of TEMPORAL_PAYLOAD_KEYS "
    "({known}) is that key"
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
            raise PayloadKeyError(NO_KEY_DECRYPTS.format(
                key_id=payload.metadata.get(KEY_ID, b"?").decode(errors="replace"),
                known=", ".join(self.key_ids))) from None


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
