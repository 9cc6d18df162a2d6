"""The package's import graph: every module imports only from its own layer or the ones below it
(``utils`` < ``losses`` < ``nets``, ``data`` < ``callbacks``, ``peft`` < ``methods`` < the entry
points), and the packages import one another without cycles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "transferlab"
LAYER = {
    "utils": 0,
    **dict.fromkeys(("losses", "validators", "transferability", "tta", "report", "analysis"), 1),
    **dict.fromkeys(("nets", "data"), 2),
    "callbacks": 3,  # engineering a method is handed: below the methods
    "peft": 3,  # which parameters of a net train: above the nets, below the methods
    "methods": 4,
}
ENTRY = 5  # train, eval, demo, summarize, pipeline


def room(module: str) -> str:
    """``transferlab.nets.reference`` -> ``nets``; a top-level module is its own room."""
    return module.split(".")[1] if module.count(".") >= 1 else module


def imports() -> dict[str, set[str]]:
    """For every module of the package, the transferlab modules it imports (at any depth)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("transferlab", *path.relative_to(PACKAGE).with_suffix("").parts))
        name = name.removesuffix(".__init__")
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("transferlab"):
                targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("transferlab")}
        found[name] = targets
    return found


def layer(module: str) -> int:
    return LAYER.get(room(module), ENTRY) if module != "transferlab" else ENTRY


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [
        f"{source} -> {target}"
        for source, targets in imports().items()
        for target in targets
        if layer(target) > layer(source)
    ]
    assert upward == []


def test_the_packages_import_one_another_without_cycles():
    graph: dict[str, set[str]] = {}
    for source, targets in imports().items():
        graph.setdefault(room(source), set()).update(room(t) for t in targets if room(t) != room(source))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ())
        )

    cycles = [name for name in graph if reaches(name, name, {name})]
    assert cycles == []


def test_the_checks_would_catch_an_upward_import():
    assert layer("transferlab.utils.checkpoint") < layer("transferlab.nets.base")  # the old arrow
    assert layer("transferlab.methods.base") > layer("transferlab.data.base")
    assert layer("transferlab.train") > layer("transferlab.methods.base")
