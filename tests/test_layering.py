"""The Python layer's shape (docs/architecture.md): every module imports only from its own layer
or the ones below, the package import graph has no cycle, and importing the networks loads no
environment code."""

import ast
import fnmatch
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cpfast"

# Bottom to top; a module belongs to the first layer with a matching pattern.
LAYERS = {
    "base": ["cpfast", "cpfast._native", "cpfast.spec", "cpfast.config", "cpfast.checkpoint", "cpfast.devices"],
    "envs": ["cpfast.envs", "cpfast.envs.*", "cpfast.policies", "cpfast.experiment"],
    "ops": ["cpfast.ops", "cpfast.ops.*"],
    "nn": ["cpfast.nn", "cpfast.nn.*"],
    "replay": ["cpfast.replay"],
    "acting and learning": ["cpfast.learner", "cpfast.rollout"],
    "tools": ["cpfast.*"],  # the command lines and the calibration harness
}
MAY_IMPORT = {
    "base": {"base"},
    "envs": {"base", "envs"},
    "ops": {"base", "ops"},
    "nn": {"base", "ops", "nn"},
    "replay": {"base", "replay"},
    "acting and learning": {"base", "envs", "ops", "nn", "replay", "acting and learning"},
    "tools": set(LAYERS),
}


def layer_of(module: str) -> str:
    return next(name for name, patterns in LAYERS.items() if any(fnmatch.fnmatch(module, p) for p in patterns))


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def module_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """cpfast modules imported when ``name`` is imported (statements inside functions run later,
    on use: cpfast.__init__'s make_env, for one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        statements = [node] + (node.body + [s for h in node.handlers for s in h.body] if isinstance(node, ast.Try) else [])
        for statement in statements:
            if isinstance(statement, ast.Import):
                found |= {a.name for a in statement.names if a.name.startswith("cpfast")}
            elif isinstance(statement, ast.ImportFrom):
                if statement.level:
                    base = package.rsplit(".", statement.level - 1)[0] if statement.level > 1 else package
                    target = f"{base}.{statement.module}" if statement.module else base
                else:
                    target = statement.module or ""
                if not target.startswith("cpfast"):
                    continue
                found.add(target)
                found |= {f"{target}.{a.name}" for a in statement.names if f"{target}.{a.name}" in known}
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: module_level_imports(name, path, set(found)) for name, path in found.items()}


def test_every_module_imports_only_from_its_layer_or_below():
    wrong = [f"{name} ({layer_of(name)}) imports {target} ({layer_of(target)})"
             for name, targets in import_graph().items() for target in sorted(targets)
             if layer_of(target) not in MAY_IMPORT[layer_of(name)]
             and not name.startswith(target + ".")]  # a package's own __init__ runs first anyway
    assert not wrong, "\n".join(wrong)


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    # a module importing its own parent package is not a cycle in practice: the parent finished first
    graph = {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target, path + [target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_importing_the_networks_loads_no_environment_code():
    code = ("import sys, cpfast.nn, cpfast.learner\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('cpfast.envs') or m in ('pettingzoo', 'gymnasium'))\n"
            "print(','.join(loaded))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout.strip()
    assert out == "", f"importing cpfast.nn and cpfast.learner loaded {out}"
