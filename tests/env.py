"""Loaded with `-p tests.env` (pytest.ini) before pytest-django reads the settings.

Tests run as a local developer does: DEBUG on (so the local-only secret key applies). Worker
threads keep no idle connections, because the test database is truncated between transactional
tests and dropped at the end.
"""

import os

os.environ.setdefault("DEBUG", "1")
os.environ["CONN_MAX_AGE"] = "0"
