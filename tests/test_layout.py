"""The code's shape: dependencies between the apps point one way.

    temporal_app  <-  orderweb  <-  reviews  <-  devtools
    (contracts,        (orders,       (review       (chaos, benchmarks,
     workflows,         their          back          dev server,
     client, worker)    activities)    office)       supervision)

``temporal_app`` plugs the apps' activities in through its registry, so it imports none of
them; the orders domain knows nothing of reviews; nothing at runtime imports the dev tooling.
The project's own modules (settings, urls, wsgi, in the ``orderweb`` package) compose the apps
and stand apart. Every import counts, also one inside a function.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("temporal_app", "orderweb", "reviews", "devtools")
PROJECT_MODULES = {"orderweb.settings", "orderweb.urls", "orderweb.wsgi", "orderweb.asgi"}
# Who may import whom (besides itself).
ALLOWED = {
    "temporal_app": set(),
    "orderweb": {"temporal_app"},
    "reviews": {"temporal_app", "orderweb"},
    "devtools": {"temporal_app", "orderweb", "reviews"},
    "project": set(APPS),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _owner(module: str) -> str | None:
    if module in PROJECT_MODULES:
        return "project"
    top = module.split(".")[0]
    return top if top in APPS else None


def app_imports() -> dict[str, dict[str, set[str]]]:
    """owner -> imported app -> the modules that import it."""
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            module = _module_name(path)
            owner = _owner(module)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    target = name.split(".")[0]
                    if target in APPS and target != owner:
                        found[owner][target].add(module)
    return found


def test_dependencies_between_the_apps_point_one_way():
    imports = app_imports()
    wrong = {
        f"{owner} -> {target} ({', '.join(sorted(modules))})"
        for owner, targets in imports.items()
        for target, modules in targets.items()
        if target not in ALLOWED[owner]
    }
    assert not wrong, "imports against the layering: " + "; ".join(sorted(wrong))


def test_the_apps_form_no_import_cycle():
    imports = app_imports()
    graph = {owner: set(targets) for owner, targets in imports.items() if owner != "project"}

    def reaches(start: str, goal: str, seen: frozenset = frozenset()) -> bool:
        return any(
            nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in graph.get(start, ())
        )

    assert not [app for app in graph if reaches(app, app)]


def test_the_layering_check_sees_an_import_inside_a_function(tmp_path, monkeypatch):
    """The check has teeth: a function-level import against the layering is found."""
    import tests.test_layout as layout

    fake_root = tmp_path
    for app in APPS:
        (fake_root / app).mkdir()
        (fake_root / app / "__init__.py").write_text("")
    (fake_root / "orderweb" / "services.py").write_text("def f():\n    from reviews.models import ReviewTask\n")
    monkeypatch.setattr(layout, "ROOT", fake_root)
    assert layout.app_imports()["orderweb"]["reviews"] == {"orderweb.services"}
