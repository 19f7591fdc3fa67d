"""Reading what clients send: start arguments and message payloads, whatever their shape.

Any Temporal client can send anything: no arguments or five, an int where text belongs, a
payload of the wrong type, a 1 MB address. The workflows declare their parameters as ``*args``
so that the SDK hands over whatever was sent (JSON values), and these functions turn it into the
typed inputs or into a refusal that says what was wrong. Nothing here raises on bad input:
an exception in workflow code would fail the workflow task on every retry and wedge the order.

Pure and deterministic: standard library, temporalio's converter and the contracts only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar, Union

from temporalio.converter import value_to_type

from temporal_app.contracts import (
    DEFAULT_CURRENCY,
    MAX_ACTION_ID_LENGTH,
    MAX_ACTOR_LENGTH,
    MAX_ADDRESS_LENGTH,
    MAX_NOTE_LENGTH,
    MAX_ORDER_ID_LENGTH,
    MAX_PAYMENT_ATTEMPTS,
    MAX_PERIODIC_JOB_NAME_LENGTH,
    MAX_REASON_CODE_LENGTH,
    MAX_REVIEW_TIMEOUT_SECONDS,
    AddressChange,
    CancelRequest,
    OrderOptions,
    PeriodicRun,
    Refusal,
    RefusalCode,
    ReviewDecision,
    ShippingInput,
    ShippingInstruction,
    ShippingReport,
    ShippingRetryRequest,
    WebhookInput,
    address_error,
    customer_details_problems,
    customer_error,
    has_control_chars,
    line_items_clean,
    normalise_address,
    order_id_error,
    order_total,
    refusal,
)

T = TypeVar("T")
Parsed = Union[T, Refusal]

PREVIEW_LENGTH = 80
ORDER_ID_MISSING = "An order id is required: OrderWorkflow is started with (order_id, address)."
ADDRESS_MISSING = "The address is missing: OrderWorkflow is started with (order_id, address)."
TOO_MANY_ARGUMENTS = "OrderWorkflow takes 2 or 3 arguments (order id, address, options); it got {count}."
OPTIONS_UNREADABLE = "The options (third argument) could not be read: {detail}."
REVIEW_TIMEOUT_INVALID = "review_timeout_seconds must be a number of seconds above 0 and at most 30 days."
PAYMENT_ATTEMPTS_INVALID = "payment_attempts must be a whole number from 1 to 100."
TEXT_FIELD_INVALID = "{field} must be text of at most {max} characters without control characters"
# A refused start keeps what it can use, cut to the limits (the SDK warns at 512 KB of state, and
# every get_status would carry it): the reason says how much was sent.
SENT_SIZE = "{what} had {size:,} characters."
MAX_PROBLEM_LENGTH = 500


def preview(value: Any) -> str:
    """A short, printable rendering of what a client sent, for messages and the audit trail."""
    text = repr(value)
    return text if len(text) <= PREVIEW_LENGTH else text[: PREVIEW_LENGTH - 1] + "…"


def cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, or its first ``limit`` followed by "…" (so the cut
    copy of a too-long value is still too long, and never taken for the real thing)."""
    return text if len(text) <= limit else text[:limit] + "…"


# -- the start ----------------------------------------------------------------------------------


@dataclass
class StartArgs:
    """What an OrderWorkflow start carried, read. With ``refused`` there is no order to speak
    of (no usable order id); with ``problems`` the order exists but fails at validation."""

    order_id: str
    address: str
    options: OrderOptions = field(default_factory=OrderOptions)
    amount: Optional[str] = None  # the checked total, as text
    refused: str = ""
    problems: list[str] = field(default_factory=list)
    arguments: str = ""  # preview of the arguments, for the record of a refused start


def parse_start(args: Sequence[Any]) -> StartArgs:
    arguments = preview(list(args))
    if not args:
        return StartArgs("", "", refused=ORDER_ID_MISSING, arguments=arguments)
    order_id = args[0]
    problem = order_id_error(order_id)
    if problem:
        refused = f"{problem} Got {preview(order_id)}."
        if isinstance(order_id, str) and len(order_id) > MAX_ORDER_ID_LENGTH:
            refused += " " + SENT_SIZE.format(what="It", size=len(order_id))
        return StartArgs(
            cut(order_id, MAX_ORDER_ID_LENGTH) if isinstance(order_id, str) else "",
            "",
            refused=refused,
            arguments=arguments,
        )
    problems: list[str] = []
    address = args[1] if len(args) >= 2 else None
    if len(args) < 2:
        problems.append(ADDRESS_MISSING)
    elif address_error(address):
        problems.append(address_error(address) or "")
        if isinstance(address, str) and len(address) > MAX_ADDRESS_LENGTH:
            problems.append(SENT_SIZE.format(what="The address sent", size=len(address)))
    if len(args) > 3:
        problems.append(TOO_MANY_ARGUMENTS.format(count=len(args)))
    options, amount = _options(args[2] if len(args) >= 3 else None, problems)
    return StartArgs(
        order_id=order_id,
        # The workflow, Postgres and the carrier hold the same address: the normalised one. A
        # bad one is kept as given (text only, cut to the limit) so the failure can show it.
        address=normalise_address(address)
        if isinstance(address, str) and not address_error(address)
        else (cut(address, MAX_ADDRESS_LENGTH) if isinstance(address, str) else ""),
        options=options,
        amount=amount,
        # A problem may quote what was sent (a SKU): bounded, like everything the workflow keeps.
        problems=[cut(problem, MAX_PROBLEM_LENGTH) for problem in problems],
        arguments=arguments,
    )


def _options(value: Any, problems: list[str]) -> tuple[OrderOptions, Optional[str]]:
    if value is None:
        return OrderOptions(), None
    try:
        options = value_to_type(OrderOptions, value)
    except Exception as err:  # the converter says what did not fit; any error means "unreadable"
        problems.append(OPTIONS_UNREADABLE.format(detail=str(err) or type(err).__name__))
        return OrderOptions(), None
    # What fails a rule is named in the problems and left out, so that the order's row can
    # still be written (it shows the failure) with only what Postgres can hold.
    try:
        options.line_items = line_items_clean(options.line_items)
    except ValueError as err:
        problems.append(str(err))
        options.line_items = []
    amount: Optional[str] = None
    try:
        amount = str(order_total(options.line_items, options.amount))
    except ValueError as err:
        problems.append(str(err))
        options.amount = None
    if customer_error(options.customer):
        problems.append(customer_error(options.customer) or "")
        options.customer = ""
    timeout = options.review_timeout_seconds
    if timeout is not None and not (math.isfinite(timeout) and 0 < timeout <= MAX_REVIEW_TIMEOUT_SECONDS):
        problems.append(REVIEW_TIMEOUT_INVALID)
        options.review_timeout_seconds = None
    attempts = options.payment_attempts
    if attempts is not None and (isinstance(attempts, bool) or not 1 <= attempts <= MAX_PAYMENT_ATTEMPTS):
        problems.append(PAYMENT_ATTEMPTS_INVALID)
        options.payment_attempts = None
    details = customer_details_problems(
        email=options.customer_email,
        billing_address=options.billing_address,
        client_ip=options.client_ip,
        user_agent=options.user_agent,
        currency=options.currency,
    )
    if details:
        problems.extend(details)
        options.customer_email = options.billing_address = options.client_ip = options.user_agent = ""
        options.currency = DEFAULT_CURRENCY
    elif options.billing_address:
        options.billing_address = normalise_address(options.billing_address)
    for name, max_length in (("source", 32), ("created_by", MAX_ACTOR_LENGTH)):
        text = getattr(options, name)
        if len(text) > max_length or has_control_chars(text):
            problems.append(TEXT_FIELD_INVALID.format(field=name, max=max_length) + ".")
            setattr(options, name, "")
    return options, amount


# -- messages -----------------------------------------------------------------------------------


def _malformed(name: str, detail: str) -> Refusal:
    return refusal(RefusalCode.MALFORMED, name=name, detail=detail)


def _one(name: str, args: Sequence[Any], kind: type[T], default: Optional[T]) -> Parsed[T]:
    """The usual shape: no argument (the default, if there is one) or one object."""
    if len(args) > 1:
        return _malformed(name, f"it takes at most one argument, got {len(args)}")
    value = args[0] if args else None
    if value is None:
        if default is None:
            return _malformed(name, f"it takes one {kind.__name__} argument")
        return default
    try:
        return value_to_type(kind, value)
    except Exception as err:
        return _malformed(name, f"expected a {kind.__name__} object, got {preview(value)} ({err})")


def _checked(name: str, parsed: Parsed[T], *text_fields: tuple[str, int]) -> Parsed[T]:
    """Bound the action id (it is part of audit keys) and the long free-text fields. Actor names
    are taken as sent; Postgres keeps their first 150 characters."""
    if isinstance(parsed, Refusal):
        return parsed
    action_id = getattr(parsed, "action_id", "")
    if len(action_id) > MAX_ACTION_ID_LENGTH or not action_id.isprintable():
        return _malformed(name, f"action_id must be at most {MAX_ACTION_ID_LENGTH} printable characters")
    reason_code = getattr(parsed, "reason_code", "")
    if len(reason_code) > MAX_REASON_CODE_LENGTH or not reason_code.isprintable():
        return _malformed(name, f"reason_code must be at most {MAX_REASON_CODE_LENGTH} printable characters")
    for field_name, max_length in text_fields:
        if len(getattr(parsed, field_name)) > max_length:
            return _malformed(name, f"{field_name} is longer than {max_length} characters")
    return parsed


def cancel_request(name: str, args: Sequence[Any]) -> Parsed[CancelRequest]:
    return _checked(name, _one(name, args, CancelRequest, CancelRequest()), ("reason", MAX_NOTE_LENGTH))


def review_decision(name: str, args: Sequence[Any]) -> Parsed[ReviewDecision]:
    return _checked(name, _one(name, args, ReviewDecision, ReviewDecision()), ("note", MAX_NOTE_LENGTH))


def retry_request(name: str, args: Sequence[Any]) -> Parsed[ShippingRetryRequest]:
    return _checked(name, _one(name, args, ShippingRetryRequest, ShippingRetryRequest()))


def address_change(name: str, args: Sequence[Any]) -> Parsed[AddressChange]:
    return _checked(name, _one(name, args, AddressChange, None))


def address_signal(name: str, args: Sequence[Any]) -> Parsed[AddressChange]:
    """UpdateAddress: the new address as text (the seed's one argument); our own callers may add
    an AddressChange naming who asked."""
    if not args or len(args) > 2:
        return _malformed(name, f"it takes the new address as its one argument, got {len(args)} arguments")
    if not isinstance(args[0], str):
        return _malformed(name, f"the new address must be text, got {preview(args[0])}")
    change = AddressChange(args[0])
    if len(args) == 2 and args[1] is not None:
        parsed = address_change(name, args[1:])
        if isinstance(parsed, Refusal):
            return parsed
        change = AddressChange(args[0], parsed.actor, parsed.action_id)
    return _checked(name, change)


def shipping_report(name: str, args: Sequence[Any]) -> Parsed[ShippingReport]:
    return _one(name, args, ShippingReport, None)


def shipping_instruction(name: str, args: Sequence[Any]) -> Parsed[ShippingInstruction]:
    return _one(name, args, ShippingInstruction, None)


def shipping_input(args: Sequence[Any]) -> Optional[ShippingInput]:
    parsed = _one("ShippingWorkflow", args, ShippingInput, None)
    return None if isinstance(parsed, Refusal) else parsed


WEBHOOK_INPUT_INVALID = (
    "it takes one WebhookInput: a delivery_id above 0 and give_up_after_seconds above 0 and at most 30 days."
)


def webhook_input(args: Sequence[Any]) -> Parsed[WebhookInput]:
    """The workers' sweep starts it; anything else that does is refused without an attempt."""
    parsed = _one("WebhookDeliveryWorkflow", args, WebhookInput, None)
    if isinstance(parsed, Refusal):
        return parsed
    delivery_id, give_up = parsed.delivery_id, parsed.give_up_after_seconds
    whole = isinstance(delivery_id, int) and not isinstance(delivery_id, bool) and delivery_id > 0
    number = isinstance(give_up, (int, float)) and not isinstance(give_up, bool) and math.isfinite(give_up)
    if not (whole and number and 0 < give_up <= MAX_REVIEW_TIMEOUT_SECONDS):
        return _malformed("WebhookDeliveryWorkflow", f"{WEBHOOK_INPUT_INVALID} Got {preview(list(args))}")
    return parsed


PERIODIC_INPUT_INVALID = "it takes one PeriodicRun: the name of a periodic job."


def periodic_input(args: Sequence[Any]) -> Parsed[PeriodicRun]:
    """Its schedule starts it; anything else that does is refused without running a job."""
    parsed = _one("PeriodicJobWorkflow", args, PeriodicRun, None)
    if isinstance(parsed, Refusal):
        return parsed
    job = parsed.job
    if not (isinstance(job, str) and 0 < len(job) <= MAX_PERIODIC_JOB_NAME_LENGTH and job.isprintable()):
        return _malformed("PeriodicJobWorkflow", f"{PERIODIC_INPUT_INVALID} Got {preview(list(args))}")
    return parsed
