"""Loaded with `-p tests.env` (pytest.ini) before pytest-django reads the settings.

Tests run as a local developer does: DEBUG on (so the local-only secret key applies). Worker
threads keep no idle connections, because the test database is truncated between transactional
tests and dropped at the end. A `run_workers` a test starts against the session's dev server is
unversioned, like the session's own workers: a versioned one would become the deployment's
current version there and take the queue's new workflows from them (the versioning tests run
versioned workers on a dev server of their own).
"""

import os

os.environ.setdefault("DEBUG", "1")
os.environ["CONN_MAX_AGE"] = "0"
os.environ.setdefault("TEMPORAL_WORKER_VERSIONING", "0")
# The review team's rules as their defaults say, whatever a developer's .env (made from
# .env.example, which turns four eyes on for make run) holds; tests that need them set them.
for name in ("REVIEW_FOUR_EYES_AMOUNT", "REVIEW_FOUR_EYES_LEVELS", "REVIEW_ESCALATION_EMAILS"):
    os.environ[name] = ""
