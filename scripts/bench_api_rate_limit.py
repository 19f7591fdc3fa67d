"""What the per-key rate limit costs per API request (docs/api.md, "Rate limits").

Run: DEBUG=1 .venv/bin/python manage.py shell < scripts/bench_api_rate_limit.py
(against a scratch database: it creates one key and counts requests in ApiRateWindow).

Measures the counter's one statement (INSERT ... ON CONFLICT DO UPDATE ... RETURNING) alone, and
a whole authenticated GET /api/v1/orders?limit=1 in-process with the limiter on and replaced by
a no-op, N times each, interleaved in rounds so that both see the same machine load.
"""

import statistics
import time
import uuid

from django.conf import settings
from django.test import Client

from orderweb.api import endpoints, keys

N = 2000
ROUNDS = 5
settings.ALLOWED_HOSTS = ["*"]
settings.API_RATE_LIMIT_PER_MINUTE = 10**9
row, key = keys.api_key_create(name=f"bench-{uuid.uuid4().hex[:6]}", scopes=["read"])
client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
real = keys.rate_limit_take


def per_call_us(fn, n):
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def request():
    assert client.get("/api/v1/orders", {"limit": 1}).status_code == 200


upsert, with_limit, without_limit = [], [], []
for _ in range(ROUNDS):
    upsert.append(per_call_us(lambda: real(row), N))
    endpoints.rate_limit_take = real
    with_limit.append(per_call_us(request, N // 4))
    endpoints.rate_limit_take = lambda api_key: keys.RateState(1, 1, 60)
    without_limit.append(per_call_us(request, N // 4))
endpoints.rate_limit_take = real


def report(label: str, rounds: list[float]) -> None:
    print(f"{label:<34}median {statistics.median(rounds):7.0f} us  (rounds: {[round(x) for x in rounds]})")


report("counter statement alone:", upsert)
report("GET /api/v1/orders, limiter on:", with_limit)
report("GET /api/v1/orders, limiter off:", without_limit)
