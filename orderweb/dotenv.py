"""Reading `.env`: one way for the settings and for `make run` (scripts/run_system.py)."""

from __future__ import annotations

from pathlib import Path

import environ


def read_dotenv(path: Path) -> None:
    """Put ``path``'s variables into the environment, never over a variable already set.

    Inline comments are comments (``WORKER_ACTIVITY_THREADS=8   # why``, as .env.example writes
    them): without ``parse_comments`` django-environ keeps them in the value, and an int setting
    fails at import. A value that holds " #" must be quoted."""
    if path.exists():
        environ.Env.read_env(path, parse_comments=True)
