"""The import graph keeps the pipeline's direction (docs/design.md §1).

Data flows sources → mapping → protocol → store → delivery → sinks, and each
stage is a package with one job.  These tests read every module's imports
(statically, with ``ast``) and fail when a change makes a stage reach into a
later one or into a neighbour's internals, or when packages start importing
each other in a circle, so the architecture is checked, not just described.
"""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from pathlib import Path

import pytest

ADAPTER = Path(__file__).resolve().parents[1] / "adapter"
PACKAGES = sorted(p.name for p in ADAPTER.iterdir() if (p / "__init__.py").exists())


def _module_name(path: Path) -> str:
    parts = path.relative_to(ADAPTER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    root = ADAPTER.parent
    return (root / relative).with_suffix(".py").exists() or (root / relative / "__init__.py").exists()


def _imports(path: Path) -> set[str]:
    """Every ``adapter`` module a file imports, at module level or inside functions."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(
                f"{target}.{alias.name}" for alias in node.names if _is_module(f"{target}.{alias.name}")
            )
    return {name for name in found if name == "adapter" or name.startswith("adapter.")}


GRAPH: dict[str, set[str]] = {_module_name(p): _imports(p) for p in ADAPTER.rglob("*.py")}


def _component(module: str) -> str:
    """A subpackage (``adapter.fhir``) or a loose top-level module (``adapter.errors``)."""
    return ".".join(module.split(".")[:2])


def _offenders(package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module == package or module.startswith(package + ".")
        for target in targets
        if any(target == f or target.startswith(f + ".") for f in forbidden)
        and not any(target == a or target.startswith(a + ".") for a in allowed)
    )


STAGES_AFTER_SOURCES = (
    "adapter.mapping",
    "adapter.protocol",
    "adapter.store",
    "adapter.sync",
    "adapter.sinks",
)
FACES = ("adapter.cli", "adapter.web", "adapter.service", "adapter.config")


def test_the_graph_is_read() -> None:
    """Guards the guard: a parser that found nothing would pass every rule."""
    assert "adapter.fhir.rest" in GRAPH
    assert "adapter.net" in GRAPH["adapter.fhir.http"] or any(
        t.startswith("adapter.net") for t in GRAPH["adapter.fhir.http"]
    )
    assert any(t.startswith("adapter.mapping") for t in GRAPH["adapter.protocol.eligibility"])


@pytest.mark.parametrize(
    ("package", "forbidden", "allowed", "why"),
    [
        (
            "adapter.net",
            ("adapter.fhir", "adapter.sinks", "adapter.config", *STAGES_AFTER_SOURCES, *FACES),
            (),
            "the network layer serves sources and sinks alike and knows neither",
        ),
        (
            "adapter.fhir",
            (*STAGES_AFTER_SOURCES, *FACES),
            (),
            "a source is told what to read (fhir.wanted), it never looks at the catalog or beyond",
        ),
        (
            "adapter.sinks",
            ("adapter.fhir", "adapter.mapping", "adapter.protocol", "adapter.sync", "adapter.store", *FACES),
            ("adapter.protocol.records",),
            "a sink writes protocol records; it knows their types, not how they were made",
        ),
        (
            "adapter.protocol",
            ("adapter.fhir", "adapter.net", "adapter.sinks", "adapter.store", "adapter.sync", *FACES),
            (),
            "the protocol rules are pure functions of mapped facts",
        ),
        (
            "adapter.mapping",
            ("adapter.protocol", "adapter.sinks", "adapter.store", "adapter.sync", "adapter.net", *FACES),
            (),
            "mapping turns parsed resources into facts and issues, nothing more",
        ),
        (
            "adapter.store",
            (
                "adapter.fhir",
                "adapter.net",
                "adapter.protocol",
                "adapter.sinks",
                "adapter.sync",
                "adapter.delivery",
                "adapter.reconciliation",
                *FACES,
            ),
            (),
            "the state keeps what the stages hand it; it calls none of them",
        ),
        (
            "adapter.delivery",
            (
                "adapter.fhir",
                "adapter.mapping",
                "adapter.protocol",
                "adapter.sync",
                "adapter.reconciliation",
                "adapter.cli",
                "adapter.web",
                "adapter.service",
            ),
            ("adapter.mapping.issues", "adapter.protocol.records"),
            "delivery moves queued records to a sink; it neither reads sources nor derives records",
        ),
        (
            "adapter.reconciliation",
            (
                "adapter.fhir",
                "adapter.net",
                "adapter.sinks",
                "adapter.delivery",
                "adapter.cli",
                "adapter.web",
                "adapter.service",
            ),
            (),
            "a fix edits the site's mappings and re-maps; the faces call it, it calls no face",
        ),
    ],
)
def test_a_stage_never_reaches_into_a_later_one(
    package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...], why: str
) -> None:
    assert _offenders(package, forbidden, allowed) == [], why


def test_no_two_parts_of_the_adapter_import_each_other() -> None:
    """No cycle between subpackages or loose top-level modules, even through others."""
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in GRAPH.items():
        for target in targets:
            a, b = _component(module), _component(target)
            if a != b and b != "adapter":
                edges[a].add(b)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(edges[node])
        return False

    components = sorted(set(edges) | set(itertools.chain.from_iterable(edges.values())))
    cycles = sorted(
        f"{a} ↔ {b}" for a, b in itertools.combinations(components, 2) if reaches(a, b) and reaches(b, a)
    )
    assert cycles == []


MAX_LINES = 400  # a module longer than this holds more than one job: split it along its seams


def test_modules_stay_small() -> None:
    sizes = {
        str(p.relative_to(ADAPTER.parent)): len(p.read_text(encoding="utf-8").splitlines())
        for p in ADAPTER.rglob("*.py")
    }
    assert len(sizes) > 100  # guards the guard: the walk found the package
    too_long = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert too_long == {}, f"split these along their seams (at most {MAX_LINES} lines each)"
