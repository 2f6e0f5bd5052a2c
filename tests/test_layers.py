"""The shape stays: each layer imports only the layers below it, and no module imports
itself back through others. Read from the AST of every module, imports inside functions
included.

    shared  <-  client, server  <-  training  <-  benchmarks
"""

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("shared", "client", "server", "training")
MAY_IMPORT = {
    "shared": {"shared"},
    "client": {"shared", "client"},
    "server": {"shared", "server"},
    "training": {"shared", "client", "server", "training"},
    "benchmarks": {"shared", "client", "server", "training"},
}


def modules() -> dict[str, Path]:
    """``latentwire.x.y`` -> its file, for every module of the four packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = [package, *path.relative_to(REPO / package).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(["latentwire", *parts])] = path
    return found


def imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The latentwire modules a file imports (a name imported from a package counts as its
    submodule when it is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in known}
    # A package's __init__ naming its own submodules (``from . import a``) is no circle.
    return {m for m in found if m.startswith("latentwire.") and m != name}


def layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else "latentwire"


def test_each_layer_imports_only_the_layers_below_it():
    known = modules()
    wrong = []
    for name, path in known.items():
        for target in imports(path, name, known):
            if layer(target) not in MAY_IMPORT[layer(name)]:
                wrong.append(f"{path.relative_to(REPO)}: imports {target}")
    for path in sorted((REPO / "benchmarks").glob("*.py")):
        for target in imports(path, "benchmarks", known):
            if layer(target) not in MAY_IMPORT["benchmarks"]:
                wrong.append(f"{path.relative_to(REPO)}: imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_itself_back():
    known = modules()
    graph = {name: imports(path, name, known) & set(known) for name, path in known.items()}
    circles = []
    state: dict[str, str] = {}  # visiting / done

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "visiting"
        for target in sorted(graph[name]):
            if state.get(target) == "visiting":
                circles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, "\n".join(circles)


def test_the_checks_see_what_they_should():
    """They can fail: the walk finds function-level imports and would flag a circle."""
    known = modules()
    assert len(known) > 40
    cli = imports(known["latentwire.client.cli"], "latentwire.client.cli", known)
    assert "latentwire.shared.codec" in cli  # imported inside a function
    assert layer("latentwire.server.app") == "server"
