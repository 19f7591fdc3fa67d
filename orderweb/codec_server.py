"""The codec endpoint the Temporal Web UI calls to show staff decrypted payloads.

Temporal's "codec server" protocol: ``POST <endpoint>/decode`` and ``POST <endpoint>/encode``
with ``{"payloads": [<Payload as proto JSON>...]}``, answered with the same shape. Here the
endpoint is ``/temporal-codec`` (so ``/temporal-codec/decode``); set it in the Web UI (its
"Codec Server" setting, or the server's ``codec.endpoint``), with "include cross-origin
credentials" on, so that the browser sends the staff member's session.

Who may: a signed-in, active staff member with the permission "Can see decrypted workflow
payloads" (``orderweb.decode_payloads``); superusers have it. Anyone else gets 401 or 403 and
the payloads stay encrypted on their screen.

Cross-origin: the UI runs on its own origin, so the answer carries CORS headers for the origins
in ``TEMPORAL_CODEC_CORS_ORIGINS`` (credentials allowed), and the preflight ``OPTIONS`` is
answered without a session, as browsers send it without cookies.

Size: a body up to ``MAX_BODY_BYTES`` (10 MB, a long history's payloads) is read from the request
stream here, not through ``request.body``, whose own limit (``DATA_UPLOAD_MAX_MEMORY_SIZE``,
2.5 MB) would answer first with a bare 400 that carries no CORS headers: the Web UI could not
read it and would show ciphertext without a word. Every answer, errors included, carries the
CORS headers (``_cors``), so the UI can always say why.

CSRF: these two views are exempt from Django's token check, which the UI cannot take part in.
They change nothing, and instead they refuse any request a foreign page could make a browser
send with the staff member's cookies: the body must be ``application/json`` (a cross-site form
cannot send that without a CORS preflight, which only the listed origins pass), and an
``Origin`` header, when present, must be this site's own or a listed one.
"""

from __future__ import annotations

import json
import logging
from typing import Optional

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from temporalio.api.common.v1 import Payload

from temporal_app.codec import FernetPayloadCodec, PayloadKeyError

logger = logging.getLogger(__name__)

PERMISSION = "orderweb.decode_payloads"
MAX_BODY_BYTES = 10 * 1024 * 1024

NOT_SIGNED_IN = "sign in to the order back office as staff to see decrypted payloads"
NO_PERMISSION = "your account may not see decrypted payloads (permission: Can see decrypted workflow payloads)"
CODEC_OFF = "payload encryption is off here (TEMPORAL_PAYLOAD_KEYS is not set)"
JSON_ONLY = "CSRF protection: the codec endpoint takes application/json requests only"
FOREIGN_ORIGIN = "CSRF protection: requests from {origin} are not allowed (TEMPORAL_CODEC_CORS_ORIGINS)"
BAD_BODY = 'the body must be JSON: {{"payloads": [{{"metadata": {{...}}, "data": "<base64>"}}]}} ({detail})'
TOO_LARGE = (
    "the request is larger than the codec endpoint's limit of {limit} MB ({size} bytes); decode fewer payloads at once"
)
SERVER_ERROR = "the codec endpoint failed; the error is in the web app's log"
POST_ONLY = "POST only (OPTIONS for the CORS preflight)"


def _allowed_origin(request: HttpRequest) -> Optional[str]:
    """The request's Origin if it may call us cross-origin, else None."""
    origin = request.headers.get("Origin", "")
    return origin if origin and origin in settings.TEMPORAL_CODEC_CORS_ORIGINS else None


def _same_origin(request: HttpRequest, origin: str) -> bool:
    return origin == f"{request.scheme}://{request.get_host()}"


def _cors(response: HttpResponse, request: HttpRequest) -> HttpResponse:
    origin = _allowed_origin(request)
    response["Vary"] = "Origin"
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Credentials"] = "true"
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Content-Type, X-Namespace, Authorization"
        response["Access-Control-Max-Age"] = "600"
    return response


def _error(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return _cors(JsonResponse({"error": message}, status=status), request)


def _codec(request: HttpRequest, operation: str) -> HttpResponse:
    if request.method == "OPTIONS":
        return _cors(HttpResponse(status=204 if _allowed_origin(request) else 403), request)
    if request.method != "POST":
        response = _error(request, 405, POST_ONLY)
        response["Allow"] = "POST, OPTIONS"
        return response
    origin = request.headers.get("Origin", "")
    if origin and not _same_origin(request, origin) and not _allowed_origin(request):
        return _error(request, 403, FOREIGN_ORIGIN.format(origin=origin))
    if request.content_type != "application/json":
        return _error(request, 403, JSON_ONLY)
    user = request.user
    if not user.is_authenticated:
        return _error(request, 401, NOT_SIGNED_IN)
    if not (user.is_active and user.is_staff and user.has_perm(PERMISSION)):
        return _error(request, 403, NO_PERMISSION)
    if not settings.TEMPORAL_PAYLOAD_KEYS:
        return _error(request, 404, CODEC_OFF)
    body_or_error = _read_body(request)
    if isinstance(body_or_error, HttpResponse):
        return body_or_error
    try:
        body = json.loads(body_or_error)
        items = body["payloads"] if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise ValueError('no "payloads" list')
        payloads = [ParseDict(item, Payload()) for item in items]
    except (ValueError, KeyError, TypeError, ParseError) as err:
        return _error(request, 400, BAD_BODY.format(detail=str(err).splitlines()[0][:200]))
    codec = FernetPayloadCodec(settings.TEMPORAL_PAYLOAD_KEYS)
    try:
        one = codec.decode_one if operation == "decode" else codec.encode_one
        done = [one(payload) for payload in payloads]
    except PayloadKeyError as err:
        return _error(request, 422, str(err))
    return _cors(JsonResponse({"payloads": [MessageToDict(p) for p in done]}), request)


def _read_body(request: HttpRequest) -> bytes | HttpResponse:
    """The body, up to MAX_BODY_BYTES, from the stream (see the module doc), or the 413."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        return _error(request, 413, TOO_LARGE.format(limit=MAX_BODY_BYTES // (1024 * 1024), size=declared))
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return _error(
            request, 413, TOO_LARGE.format(limit=MAX_BODY_BYTES // (1024 * 1024), size=f"over {MAX_BODY_BYTES}")
        )
    return body


def _answer(request: HttpRequest, operation: str) -> HttpResponse:
    """Any failure still answers with CORS headers, so the Web UI can show it."""
    try:
        return _codec(request, operation)
    except Exception:
        logger.exception("codec endpoint %s failed", operation)
        return _error(request, 500, SERVER_ERROR)


@csrf_exempt
def decode(request: HttpRequest) -> HttpResponse:
    return _answer(request, "decode")


@csrf_exempt
def encode(request: HttpRequest) -> HttpResponse:
    return _answer(request, "encode")
