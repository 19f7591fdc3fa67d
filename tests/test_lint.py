"""`make lint` (ruff check, ruff format --check, mypy; configured in pyproject.toml) fails on a
bad file. Each case runs the real target in a small tree of its own with this project's Makefile
and pyproject.toml, so a target that stopped running one of the tools, or a configuration that
stopped catching its findings, fails here."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent  # the venv running the tests has ruff and mypy

CLEAN = '''"""A module that passes."""


def total(prices: list[int]) -> int:
    return sum(prices)
'''

BAD = {
    # ruff check: F401, an unused import
    "unused import": ("import os\n\n\n" + CLEAN.split("\n", 1)[1], "F401"),
    # ruff format --check: a layout format would change
    "unformatted": (CLEAN.replace("return sum(prices)", "return   sum( prices )"), "1 file would be reformatted"),
    # mypy: a str returned where the annotation says int
    "type error": (CLEAN.replace("return sum(prices)", 'return "0"'), "Incompatible return value type"),
}


def _make_lint(tmp_path: Path, module: str) -> subprocess.CompletedProcess:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    package = tmp_path / "temporal_app"  # what mypy checks (pyproject.toml, [tool.mypy] files)
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "prices.py").write_text(module)
    env = {
        **os.environ,
        "MYPY_CACHE_DIR": str(tmp_path / ".mypy_cache"),
        "RUFF_CACHE_DIR": str(tmp_path / ".ruff_cache"),
    }
    # -o venv: the venv is the one running this test; do not (re)install anything.
    return subprocess.run(
        ["make", "--no-print-directory", "-o", "venv", "lint", f"VENV={VENV}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_make_lint_passes_a_clean_tree(tmp_path):
    run = _make_lint(tmp_path, CLEAN)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ruff check ." in run.stdout and "ruff format --check ." in run.stdout and "mypy" in run.stdout


@pytest.mark.parametrize("case", sorted(BAD))
def test_make_lint_fails_on_a_bad_file(tmp_path, case):
    module, finding = BAD[case]
    run = _make_lint(tmp_path, module)
    assert run.returncode != 0
    assert finding in run.stdout + run.stderr
