"""Locust: reviewers working the review queue through the web app, as people do in a browser.

Each simulated reviewer signs in once (the real sign-in form, CSRF and all), then loops: open
the unclaimed queue, pick one of the first orders, open its page, claim it, approve it. Two
reviewers picking the same order is normal work (one of them is told it is taken): it is not
an error. An error is any response other than what the page answers a person: a 5xx, a 4xx, or
a POST that does not redirect back.

``ReviewerWorkersDown`` is the same reviewer while the workers are stopped (``bench_reviewers
--workers-down``): its order page also polls the live status panel, as the open page does, and
that answer must come from Postgres saying "Live status unavailable" (anything else is an error);
its approval (without a claim first: the decision claims, and gives the claim back when it is
not sent) is told it was not sent, which is the page's right answer then.

Run by ``python manage.py bench_reviewers`` (devtools/management/commands/bench_reviewers.py),
which starts the system, feeds orders and reads the figures. Reviewers' names come from the
environment: LOAD_REVIEWER_PREFIX-1 ... -N, password LOAD_REVIEWER_PASSWORD.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import uuid

from locust import HttpUser, between, task

# The queue's links carry its view (?filter=unclaimed...) since issue 12.
ORDER_LINK = re.compile(r'href="/reviews/orders/([A-Za-z0-9._-]+)/(?:\?[^"]*)?"')
_numbers = itertools.count(1)


class _SignedInReviewer(HttpUser):
    """Signs in once; subclasses say what the reviewer does (Locust gives a subclass its
    bases' tasks as well, so the tasks live in the leaf classes only)."""

    abstract = True
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        username = f"{os.environ['LOAD_REVIEWER_PREFIX']}-{next(_numbers)}"
        self.client.get("/accounts/login/", name="sign-in page")
        response = self.client.post(
            "/accounts/login/",
            data={
                "username": username,
                "password": os.environ["LOAD_REVIEWER_PASSWORD"],
                "csrfmiddlewaretoken": self.client.cookies.get("csrftoken", ""),
            },
            headers={"Referer": f"{self.host}/accounts/login/"},
            allow_redirects=False,
            name="sign in",
        )
        if response.status_code != 302:
            response.failure(f"sign-in as {username} answered {response.status_code}")

    def _post(self, path: str, name: str, data: dict[str, str]) -> None:
        with self.client.post(
            path,
            data={**data, "csrfmiddlewaretoken": self.client.cookies.get("csrftoken", "")},
            headers={"Referer": f"{self.host}{path}"},
            allow_redirects=False,
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code != 302:
                response.failure(f"{name} answered {response.status_code}")


class Reviewer(_SignedInReviewer):
    @task
    def review_one(self) -> None:
        queue = self.client.get("/reviews/?filter=unclaimed", name="queue")
        order_ids = list(dict.fromkeys(ORDER_LINK.findall(queue.text)))
        if not order_ids:
            return
        order_id = random.choice(order_ids[:5])
        self.client.get(f"/reviews/orders/{order_id}/", name="order page")
        self._post(f"/reviews/orders/{order_id}/claim/", "claim", {})
        # A fresh action id, as a freshly rendered form carries (the server only checks it is one).
        self._post(
            f"/reviews/orders/{order_id}/decide/",
            "approve",
            {"decision": "approve", "note": "", "action_id": str(uuid.uuid4())},
        )


LIVE_STATUS_UNAVAILABLE = "Live status unavailable"
STATUS_POLLS_PER_PAGE = 2  # a reviewer reads an order for about 10 s; the page polls every 5 s


class ReviewerWorkersDown(_SignedInReviewer):
    @task
    def review_one(self) -> None:
        queue = self.client.get("/reviews/?filter=unclaimed", name="queue")
        order_ids = list(dict.fromkeys(ORDER_LINK.findall(queue.text)))
        if not order_ids:
            return
        order_id = random.choice(order_ids[:5])
        self.client.get(f"/reviews/orders/{order_id}/", name="order page")
        for _ in range(STATUS_POLLS_PER_PAGE):
            with self.client.get(
                f"/reviews/orders/{order_id}/status/",
                name="live status",
                headers={"HX-Request": "true"},
                catch_response=True,
            ) as response:
                if response.status_code != 200 or LIVE_STATUS_UNAVAILABLE not in response.text:
                    response.failure(f"live status answered {response.status_code} without saying it is unavailable")
        # No separate claim: the decision takes the claim and gives it back when it is not sent,
        # so the order stays in the unclaimed queue for the next reviewer to try.
        self._post(
            f"/reviews/orders/{order_id}/decide/",
            "approve",
            {"decision": "approve", "note": "", "action_id": str(uuid.uuid4())},
        )
