"""The log audit: every Python traceback in a worker log, classified by the exception it ends
with, as expected (injected, planned, business, database errors during an outage) or not."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Optional

TRACEBACK_START = "Traceback (most recent call last):"
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Fault|Failure|Interrupt|Exit)\b[^:]*)(?::|$)")

# What a traceback in a worker log may end with, by cause. Anything else is unhandled.
INJECTED = "injected fault (ACTIVITY_FAULT_RATE)"
SIMULATED = "planned fault of a simulated service"
BUSINESS = "business failure the workflow handles"
DATABASE = "database error during the Postgres outage"
RECEIVER = "webhook receiver hanging (planned)"
TIMED_OUT = "activity attempt cancelled at its timeout during the Postgres outage"
_APP_ERROR = r"temporalio\.exceptions\.ApplicationError: (?:\w+: )?"
EXPECTED_PATTERNS = [
    (INJECTED, re.compile(_APP_ERROR + r"injected fault in \w+$")),
    (
        SIMULATED,
        re.compile(
            _APP_ERROR + r"(the payment gateway is unavailable \(simulated\)"
            r"|the carrier rejected the pickup request \(simulated\))$"
        ),
    ),
    (BUSINESS, re.compile(_APP_ERROR + r"(the card was declined \(simulated gateway\)|The address is empty\.)$")),
    # A fast shutdown (pg_ctl stop -m fast, or SIGINT) ends running queries with AdminShutdown
    # (an OperationalError).
    (
        DATABASE,
        re.compile(
            r"^((psycopg|django\.db\.utils)\.(OperationalError|InterfaceError)"
            r"|psycopg\.errors\.(AdminShutdown|CrashShutdown|CannotConnectNow|ConnectionFailure"
            r"|ConnectionException|ConnectionDoesNotExist))\b"
        ),
    ),
    # An attempt still waiting on Postgres when its start-to-close timeout passes is cancelled by
    # the SDK (raised in its thread); the retry writes once. Seen while 240 orders saved during
    # the Temporal outage started at once, just before the Postgres outage.
    (TIMED_OUT, re.compile(r"^temporalio\.exceptions\.CancelledError\b")),
]
# Expected only while Postgres is down (or just after).
DURING_OUTAGE = {DATABASE, TIMED_OUT}


_RECEIVER_HUNG = re.compile(
    _APP_ERROR + r"(The receiver could not be reached: .*timed out.*"
    r"|The receiver answered HTTP 503:.*)$"
)


@dataclass
class LogAudit:
    expected: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)


def scan_worker_log(
    text: str,
    *,
    source: str = "",
    outages: Iterable[tuple[datetime, datetime]] = (),
    grace: timedelta = timedelta(seconds=30),
    receiver_hangs: Iterable[tuple[datetime, datetime]] = (),
) -> LogAudit:
    """Classify every Python traceback in a worker log by the exception it ends with.

    Expected: injected faults, planned simulated-service faults, the business failures the
    workflow turns into an order state, and database errors logged while our Postgres was down
    (or within ``grace`` after it came back). Everything else, including a database error at any
    other time, is unexpected. Also unexpected: a log record at CRITICAL level.
    """
    audit = LogAudit()
    # Log stamps have whole seconds: the window opens at the second the outage began.
    windows = [(start.replace(microsecond=0), end + grace) for start, end in outages]
    # A webhook attempt that timed out, or was answered 503, while the receiver hung on purpose.
    hung = [(start.replace(microsecond=0), end + grace) for start, end in receiver_hangs]
    lines = text.splitlines()
    stamp: Optional[datetime] = None
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _LOG_TIME.match(line)
        if match:
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
            if " CRITICAL " in line:
                audit.unexpected.append(f"{source}: {line.strip()}")
        if not line.startswith(TRACEBACK_START):
            i += 1
            continue
        j = i + 1
        while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
            j += 1
        final = lines[j].strip() if j < len(lines) else "<traceback cut off>"
        cause = next((name for name, pattern in EXPECTED_PATTERNS if pattern.search(final)), None)
        if cause in DURING_OUTAGE and not any(start <= (stamp or start) <= end for start, end in windows):
            cause = None
        if (
            cause is None
            and _RECEIVER_HUNG.search(final)
            and any(start <= (stamp or start) <= end for start, end in hung)
        ):
            cause = RECEIVER
        if cause is None:
            audit.unexpected.append(f"{source}: {final}" + (f" (logged {stamp:%H:%M:%S})" if stamp else ""))
        else:
            audit.expected[cause] += 1
        i = j + 1
    return audit
