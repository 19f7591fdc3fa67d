"""Real Chromium (Debian's package) driven by Playwright, against Django's live server.

Playwright's own browser download does not work on these machines, so we launch the system
browser; if it is missing the tests fail loudly, they never skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Chromium is not installed: apt-get install -y chromium (see .ci/run)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """One browser per test module. Playwright's sync API keeps an asyncio loop running in this
    thread while it is open, which would break any later ``asyncio.run`` in the session (the
    replay tests), so it is closed at the end of each browser module. Django's ORM, used by the
    test bodies, refuses to run beside a running loop unless told it is safe: it is, the tests
    are synchronous code, so the guard is relaxed for exactly that span."""
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium, live_server):
    """A fresh browser context per test; ``page.base_url`` is the live server."""
    context = chromium.new_context(base_url=live_server.url)
    context.set_default_timeout(20_000)
    page = context.new_page()
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def press(page, key: str) -> None:
    """Press a key once the page's shortcuts listen (reviews/static/reviews/review.js marks
    <html data-keys="on">): a test can press faster than a deferred script loads, a person not."""
    from playwright.sync_api import expect

    expect(page.locator("html[data-keys=on]")).to_have_count(1)
    page.keyboard.press(key)
