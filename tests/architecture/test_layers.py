"""The dependency direction of docs/architecture.md: no module imports a layer above its own.

Reads every module's imports (module level and inside functions) with ``ast``; an import that
points up the list fails with the file, the line and both layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = (
    ("common",),
    ("fitting",),
    ("sampling",),
    ("nvf",),
    ("pipeline.errors", "pipeline.selection", "pipeline.store"),
    ("pipeline.release",),
    ("pipeline.synthetic", "pipeline.artifacts", "pipeline.h3wb"),
    ("pipeline.stages",),
    ("pipeline.orchestration", "pipeline.checks"),
    ("pipeline.recipes",),
    ("cli",),
    ("benchmarks",),
)
"""Bottom first. A module may import its own layer and the layers before it."""


def layer_of(module: str) -> int | None:
    """Index in LAYERS of the longest prefix naming ``module`` (None: not the project's)."""
    best, best_len = None, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def project_modules() -> list[tuple[str, Path]]:
    out = [("cli", ROOT / "cli.py")]
    for top in ("common", "fitting", "sampling", "nvf", "pipeline", "benchmarks"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out.append((".".join(parts), path))
    return out


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import (the project uses absolute ones)"
            found.append((node.lineno, node.module or ""))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]  # from pipeline import stages
    return found


def test_layers_cover_every_project_package():
    missing = [m for m, _ in project_modules() if layer_of(m) is None and m != "pipeline"]
    assert missing == [], f"modules in no layer of LAYERS: {missing}"


@pytest.mark.parametrize("module,path", project_modules(), ids=[m for m, _ in project_modules()])
def test_no_import_points_up(module, path):
    own = layer_of(module)
    if own is None:
        return
    upward = []
    for line, name in imports_of(path, module):
        target = layer_of(name)
        if target is not None and target > own:
            upward.append(f"{path.relative_to(ROOT)}:{line} imports {name} "
                          f"(layer {LAYERS[target][0]} above {LAYERS[own][0]})")
    assert upward == [], "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from pipeline.orchestration.runner import run_stage\n")
    (line, name), *_ = imports_of(bad, "fitting.x")
    assert line == 2 and layer_of(name) > layer_of("fitting.x")
