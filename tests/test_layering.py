"""The seam holds: the toolkit imports nothing above it, and no two modules import each other.

Every import statement counts, including those inside functions (a lazy import is still a dependency).
Layers, bottom up: deepsuite.common (the toolkit) < deepsuite.pipelines (domains) < deepsuite.tuning <
deepsuite.app (the front end). Suite code imports itself only under the `deepsuite.` name.
"""
from __future__ import annotations

import ast
from pathlib import Path

from tests.support.cli import REPO

FOLDERS = ("common", "pipelines", "tuning", "app")
ABOVE = {  # what each layer must never import
    "deepsuite.common": ("deepsuite.app", "deepsuite.pipelines", "deepsuite.tuning"),
    "deepsuite.pipelines": ("deepsuite.app", "deepsuite.tuning"),
    "deepsuite.tuning": ("deepsuite.app",),
}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["deepsuite", *parts])


def import_graph(root: Path, folders=FOLDERS) -> tuple[dict[str, set[str]], list[str]]:
    """module -> the deepsuite modules it imports anywhere in its body; plus imports of the old bare names."""
    files = {module_name(root, p): p for folder in folders for p in sorted((root / folder).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    bare: list[str] = []
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] in FOLDERS:
                    bare.append(f"{path.relative_to(root)}:{node.lineno} imports {name}")
                while name and name not in files and name.startswith("deepsuite."):
                    name = name.rpartition(".")[0]
                if name in files and name != module:
                    targets.add(name)
        graph[module] = targets
    return graph, bare


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in graph.items():
        for layer, forbidden in ABOVE.items():
            if module == layer or module.startswith(layer + "."):
                found += [f"{module} imports {t}" for t in sorted(targets) if t.startswith(forbidden)]
    return found


def mutual_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} <-> {b}" for a, targets in graph.items() for b in targets if a < b and a in graph.get(b, ()))


def test_the_toolkit_imports_nothing_above_it_and_no_modules_import_each_other():
    graph, bare = import_graph(REPO)
    assert len(graph) > 80 and "deepsuite.common.runner" in graph["deepsuite.app.cli"] | graph["deepsuite.tuning.best"]
    assert bare == []
    assert layering_violations(graph) == []
    assert mutual_imports(graph) == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    """A planted upward import and a planted cycle, both hidden in function bodies, are reported."""
    (tmp_path / "common").mkdir()
    (tmp_path / "app").mkdir()
    (tmp_path / "common" / "__init__.py").write_text("")
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "common" / "a.py").write_text("def f():\n    from deepsuite.app import cli\n")
    (tmp_path / "common" / "b.py").write_text("def g():\n    from . import c\n")
    (tmp_path / "common" / "c.py").write_text("import deepsuite.common.b\n")
    (tmp_path / "app" / "cli.py").write_text("def h():\n    import common.a\n")
    graph, bare = import_graph(tmp_path, ("common", "app"))
    assert layering_violations(graph) == ["deepsuite.common.a imports deepsuite.app.cli"]
    assert mutual_imports(graph) == ["deepsuite.common.b <-> deepsuite.common.c"]
    assert bare == ["app/cli.py:2 imports common.a"]


def test_listing_pipelines_loads_no_deep_learning_framework():
    """`deepsuite --help` and `list` load every pipeline class to learn its commands: that must stay cheap,
    so a pipeline's class module imports Keras (and TensorFlow) only inside the methods that need it."""
    import subprocess
    import sys

    probe = ("import sys\nfrom deepsuite.app import registry\n"
             "pipelines = [registry.get(n) for n in registry.names()]\n"
             "print(len(pipelines), sorted(m for m in ('keras', 'tensorflow', 'jax', 'mlflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO)
    count, loaded = result.stdout.split("\n")[0].split(" ", 1)
    assert int(count) >= 6 and loaded == "[]", result.stdout + result.stderr  # every pipeline, no framework
