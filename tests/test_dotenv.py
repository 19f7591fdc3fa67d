"""`.env` as `make run` writes it from .env.example: every line, commented out or not, reads
without its inline comment (an int setting with its comment in the value failed `make run`'s
migrate: "invalid literal for int() with base 10: '8      # order + shipping workers…'")."""

from __future__ import annotations

from pathlib import Path

import environ
import pytest

from orderweb.dotenv import read_dotenv

EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"


@pytest.fixture
def scratch_environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What read_dotenv writes goes here, not into this process's environment."""
    scratch: dict[str, str] = {}
    monkeypatch.setattr(environ.Env, "ENVIRON", scratch)
    return scratch


def _settings_lines() -> list[str]:
    """Every KEY=value line of .env.example, its leading "# " taken off (as a user uncomments it)."""
    lines = []
    for line in EXAMPLE.read_text().splitlines():
        text = line.removeprefix("# ").strip()
        key = text.split("=", 1)[0]
        if "=" in text and key.replace("_", "").isalnum() and key.isupper():
            lines.append(text)
    return lines


def test_every_line_of_the_example_reads_without_its_comment(tmp_path: Path, scratch_environ: dict[str, str]):
    lines = _settings_lines()
    assert len(lines) > 20 and any(line.startswith("WORKER_ACTIVITY_THREADS=8 ") for line in lines)
    dotenv = tmp_path / ".env"
    dotenv.write_text("\n".join(lines) + "\n")
    read_dotenv(dotenv)
    assert int(scratch_environ["WORKER_ACTIVITY_THREADS"]) == 8
    assert {key: value for key, value in scratch_environ.items() if "#" in value} == {}


def test_the_environment_wins_over_the_file(tmp_path: Path, scratch_environ: dict[str, str]):
    scratch_environ["WORKER_ACTIVITY_THREADS"] = "4"
    dotenv = tmp_path / ".env"
    dotenv.write_text("WORKER_ACTIVITY_THREADS=8   # a comment\n")
    read_dotenv(dotenv)
    assert scratch_environ["WORKER_ACTIVITY_THREADS"] == "4"
