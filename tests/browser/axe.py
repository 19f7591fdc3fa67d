"""axe-core in the browser tests: WCAG 2.1 A and AA rules run in the page as it is, and a serious or
critical violation fails the test with each violation and its nodes.

axe-core comes pinned inside axe-playwright-python (requirements-dev.txt: axe-core 4.12.1 in the
wheel; nothing is downloaded at run time). One line per page:

    from tests.browser.axe import assert_no_serious_axe_violations
    assert_no_serious_axe_violations(page)                    # the page as it is now
    assert_no_serious_axe_violations(page, name="queue-390")  # also keeps the findings in test-artifacts/axe/
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from axe_playwright_python.sync_playwright import Axe

WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
FAILING_IMPACTS = ("serious", "critical")
FINDINGS = Path(__file__).resolve().parents[2] / "test-artifacts" / "axe"

_axe = Axe()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Every WCAG 2.1 A/AA violation axe finds in the page, whatever its impact."""
    options = {"runOnly": {"type": "tag", "values": WCAG_21_AA}, "resultTypes": ["violations"]}
    return _axe.run(page, options=options).response["violations"]


def describe(violations: list[dict[str, Any]]) -> str:
    """Each violation with its nodes: what a person fixing it needs."""
    lines = []
    for violation in violations:
        lines.append(f"{violation['impact']}: {violation['id']}: {violation['help']} ({violation['helpUrl']})")
        for node in violation["nodes"]:
            lines.append(f"    {' '.join(map(str, node['target']))}: {node['html'][:200]}")
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            if summary:
                lines.append(f"        {summary[:300]}")
    return "\n".join(lines)


def serious_axe_violations(page: Any, *, name: str = "") -> list[dict[str, Any]]:
    """The serious and critical ones; with ``name``, all findings are kept in test-artifacts/axe/."""
    violations = axe_violations(page)
    if name:
        FINDINGS.mkdir(parents=True, exist_ok=True)
        (FINDINGS / f"{name}.json").write_text(
            json.dumps(
                {
                    "url": page.url,
                    "violations": [{key: v[key] for key in ("id", "impact", "help", "nodes")} for v in violations],
                },
                indent=1,
            )
        )
    return [v for v in violations if v["impact"] in FAILING_IMPACTS]


def assert_no_serious_axe_violations(page: Any, *, name: str = "") -> None:
    serious = serious_axe_violations(page, name=name)
    assert not serious, f"axe (WCAG 2.1 A/AA) on {page.url}:\n{describe(serious)}"
