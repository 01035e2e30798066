"""Imports run one way, proved statically: no import circle anywhere in the project (lazy imports inside
functions count too), and inside `edge_app` each layer imports only its own and the layers below it:
`cli → wiring → live/web → read → outputs/store → contracts → runtime/config`. The contracts are the few types
the outputs and the loop share (`Frame`, `Sink`, `Reading`, the annotated picture): they sit below the outputs
so that an output never imports the loop that feeds it."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("digitdata", "train", "convert", "edge_app", "benchmarks", "tools")

# edge_app's layers, top first: a module may import its own layer's modules and any layer below its own.
LAYERS = (
    ("edge_app.cli", "edge_app.__main__"),
    ("edge_app.wiring", "edge_app.doctor", "edge_app.canary", "edge_app.fleet"),
    ("edge_app.web", "edge_app.live"),
    ("edge_app.read",),
    ("edge_app.outputs", "edge_app.store"),
    ("edge_app.live.sink", "edge_app.read.reading", "edge_app.read.annotate"),
    ("edge_app.runtime", "edge_app.config"),
)
# Outside the layers: the device's deploy helpers (run on their own) and the package's empty __init__.
UNLAYERED = ("edge_app.deploy", "edge_app")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {module_name(REPO / "digitlite.py"): REPO / "digitlite.py"}
    for package in PACKAGES:
        found.update({module_name(p): p for p in (REPO / package).rglob("*.py")})
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports, at module level or inside functions. `from a import b` names the
    module a.b where b is a submodule, else the module a (b is then one of its attributes)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm), as a sorted list."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def layer_of(module: str) -> int | None:
    """The depth of `module`'s layer (0 at the top), by the longest prefix in LAYERS that holds it."""
    matches = [(len(p), depth) for depth, prefixes in enumerate(LAYERS) for p in prefixes
               if module == p or module.startswith(p + ".")]
    return max(matches)[1] if matches else None


def test_the_project_has_no_import_circle():
    cycles = find_cycles(import_graph())
    assert not cycles, "import circles:\n" + "\n".join(" ↔ ".join(c) for c in cycles)


def test_edge_app_layers_import_only_downwards():
    graph = import_graph()
    broken = []
    for module, targets in sorted(graph.items()):
        if not module.startswith("edge_app"):
            continue
        here = layer_of(module)
        if here is None:
            assert module.startswith(UNLAYERED), f"{module} is in no layer of this test: add it to LAYERS"
            continue
        for target in sorted(targets):
            there = layer_of(target)
            if there is not None and there < here:
                broken.append(f"{module} imports {target}, a layer above it")
    assert not broken, "\n".join(broken)


def test_the_checks_catch_a_circle_and_an_upward_import():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    assert layer_of("edge_app.outputs.mqtt") > layer_of("edge_app.live.loop") > layer_of("edge_app.wiring")
    assert layer_of("edge_app.live.sink") > layer_of("edge_app.outputs.mqtt")
    assert layer_of("edge_app.runtime.adapters") == layer_of("edge_app.config")
