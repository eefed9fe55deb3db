"""Which part of loralab may import which: the layer order, checked on the source.

Every `import` and `from ... import` of a loralab module in src/ is read with `ast` (nothing is
imported), the ones inside functions too: a lazy import is still a dependency, it only runs
later. A module may import modules of its own part (`loralab.lora.inject` imports
`loralab.lora.layer`) and modules of any part in a lower layer; parts of one layer never
import each other (so no entry point imports another), nothing imports upwards, and the
module graph has no cycle. Names that only strings carry (Hydra `_target_`s, the sweep
launcher's `-m loralab.train`) are not imports and are not checked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "loralab"
ENTRY_POINTS = ("train", "eval", "merge", "export", "generate", "multi_adapter", "memory")

# bottom to top; a part is a module or subpackage directly under loralab ("__init__": loralab
# itself), or "hydra_plugins" (src/hydra_plugins, the sweepers and launcher Hydra finds)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors"),
    ("io", "compat", "keys", "packaged"),  # leaves: nothing of loralab but errors
    ("lora",),  # the core
    ("models", "data"),  # models.generation asks lora whether a layer is quantized
    ("analysis", "measure"),
    ("tasks",),
    ("callbacks",),
    ("run",),
    ("report",),
    ENTRY_POINTS,
    ("hydra_plugins",),
)


def layer_of() -> dict[str, int]:
    return {part: index for index, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """loralab.lora.inject -> lora, loralab -> __init__, hydra_plugins.x.y -> hydra_plugins."""
    names = module.split(".")
    if names[0] != ROOT:
        return names[0]
    return names[1] if len(names) > 1 else "__init__"


def imported_modules(path: Path, modules: Iterable[str], src: Path = SRC) -> set[str]:
    """The loralab modules a file imports: `from loralab.x import y` is loralab.x.y when y is
    a module, else loralab.x; relative imports are resolved against the file's package."""
    known = set(modules)
    module = module_name(path, src)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == ROOT)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != ROOT:
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return found - {module}


def import_graph() -> dict[str, set[str]]:
    """Module -> the loralab modules it imports, for every file of src/loralab and the plugins."""
    paths = sorted((SRC / ROOT).rglob("*.py")) + sorted((SRC / "hydra_plugins").rglob("*.py"))
    modules = {module_name(p): p for p in paths}
    return {name: imported_modules(path, modules) for name, path in modules.items()}


def upward_imports(graph: Mapping[str, set[str]], layers: Mapping[str, int]) -> list[str]:
    """Every import of a part in the same or a higher layer (not the module's own part)."""
    bad = []
    for module, imports in sorted(graph.items()):
        for target in sorted(imports):
            source_part, target_part = part_of(module), part_of(target)
            if source_part == target_part:
                continue
            if source_part not in layers or target_part not in layers:
                bad.append(f"{module} -> {target}: a part missing from LAYERS")
            elif layers[target_part] >= layers[source_part]:
                bad.append(f"{module} -> {target}")
    return bad


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan), as a path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_every_part_of_loralab_has_a_layer():
    parts = {part_of(module) for module in import_graph()}
    assert parts - set(layer_of()) == set()


def test_every_imported_loralab_module_exists():
    """A lazy import of a module that moved fails only when its function runs; catch it here."""
    graph = import_graph()
    missing = {
        module: sorted(t for t in imports if t not in graph) for module, imports in graph.items()
    }
    assert {module: targets for module, targets in missing.items() if targets} == {}


def test_no_module_imports_upwards_or_sideways():
    assert upward_imports(import_graph(), layer_of()) == []


def test_the_modules_import_each_other_without_a_cycle():
    assert cycles(import_graph()) == []


def test_lazy_imports_count_and_relative_imports_resolve(tmp_path):
    package = tmp_path / ROOT / "run"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "names.py").write_text("")
    (package / "x.py").write_text(
        "from . import names\n"
        "from ..errors import UserError\n"
        "def later():\n"
        "    from loralab.report.build import build\n"
        "    import loralab.train\n"
    )
    modules = ["loralab.run", "loralab.run.names", "loralab.run.x", "loralab.report.build"]
    assert imported_modules(package / "x.py", modules, tmp_path) == {
        "loralab.run.names",
        "loralab.errors",
        "loralab.report.build",
        "loralab.train",
    }


# the layering before compat, the checkpoint keys and the probe moved: callbacks read the
# runner's compat module while the runner read a callback module; the probe in measure/
# rebuilt runs while callbacks measured with measure/; the report read names from callbacks
OLD_GRAPH = {
    "loralab.callbacks.atomic_checkpoint": {"loralab.run.compat", "loralab.io"},
    "loralab.callbacks.resources": {"loralab.measure.step"},
    "loralab.run.builder": {"loralab.callbacks.run_config", "loralab.run.compat"},
    "loralab.run.resume": {"loralab.callbacks.run_config", "loralab.run.builder"},
    "loralab.run.compat": set(),
    "loralab.callbacks.run_config": set(),
    "loralab.measure.step": set(),
    "loralab.measure.probe": {"loralab.run.builder", "loralab.measure.step"},
    "loralab.report.forgetting": {"loralab.callbacks.source_eval"},
    "loralab.train": {"loralab.callbacks.source_eval", "loralab.run.builder"},
}


def test_the_check_finds_the_old_upward_imports():
    assert upward_imports(OLD_GRAPH, layer_of()) == [
        "loralab.callbacks.atomic_checkpoint -> loralab.run.compat",
        "loralab.measure.probe -> loralab.run.builder",
    ]


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"a"}}, [["a"]]),
        ({"a": {"b"}, "b": set(), "c": {"b"}}, []),
    ],
)
def test_the_check_finds_cycles(graph, expected):
    assert cycles(graph) == expected


def test_the_check_finds_the_old_cycle_between_callbacks_and_run():
    """The parts of the old graph, as a graph of parts, had callbacks <-> run."""
    parts: dict[str, set[str]] = {}
    for module, imports in OLD_GRAPH.items():
        parts.setdefault(part_of(module), set()).update(
            part_of(t) for t in imports if part_of(t) != part_of(module)
        )
    assert cycles(parts) == [["callbacks", "measure", "run"]]


def test_an_entry_point_importing_another_is_refused():
    graph = {"loralab.train": set(), "loralab.eval": {"loralab.train"}}
    assert upward_imports(graph, layer_of()) == ["loralab.eval -> loralab.train"]
