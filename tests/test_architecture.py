"""The package's layering (SPEC §3), read from the source with ``ast``.

Every ``import`` of one of the package's own modules counts, function-local ones included
(only lazy imports of optional third-party packages are allowed to be local). Two rules:

- no import cycle among the package's modules;
- a module imports only from its own layer or from the layers below it, in the order of
  :data:`LAYERS` (``__init__`` and ``__main__`` sit on top and may import anything).
"""

from __future__ import annotations

import ast
import pathlib

import networkx as nx

import lagrangeprop

ROOT = pathlib.Path(lagrangeprop.__file__).parent

# bottom to top; a module belongs to the first entry that is a prefix of its dotted name
LAYERS = [
    "lagrangeprop.errors",
    "lagrangeprop.options",
    "lagrangeprop.progress",
    "lagrangeprop.rules",
    "lagrangeprop.graph",
    "lagrangeprop.compile",
    "lagrangeprop.linalg",
    "lagrangeprop.blocks",
    "lagrangeprop.solve",
    "lagrangeprop.crosscheck",
    "lagrangeprop.guards",
    "lagrangeprop.transforms",
    "lagrangeprop.optimize",
    "lagrangeprop.viz",
    "lagrangeprop.program",
    "lagrangeprop.cli",
]
TOP = {"lagrangeprop", "lagrangeprop.__main__"}


def _name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _exists(dotted: str) -> bool:
    p = ROOT.parent.joinpath(*dotted.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _targets(module: str, is_package: bool, node: ast.AST) -> list[str]:
    """The package's own modules an import statement loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "lagrangeprop"]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    if source.split(".")[0] != "lagrangeprop":
        return []
    subs = [f"{source}.{a.name}" for a in node.names if _exists(f"{source}.{a.name}")]
    named = len(subs) < len(node.names)      # some names are attributes of ``source`` itself
    return subs + ([source] if named or not subs else [])


def import_graph() -> nx.DiGraph:
    """Edges ``a -> b``: module ``a`` imports module ``b`` (anywhere in its body)."""
    G = nx.DiGraph()
    for path in sorted(ROOT.rglob("*.py")):
        module = _name(path)
        G.add_node(module)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for t in _targets(module, path.name == "__init__.py", node):
                    if t != module:
                        G.add_edge(module, t, line=node.lineno)
    return G


def _layer(module: str) -> int:
    for k, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return k
    raise AssertionError(f"{module} belongs to no layer of LAYERS: add it there (SPEC §3)")


def test_no_import_cycles():
    G = import_graph()
    cycles = [sorted(c) for c in nx.strongly_connected_components(G) if len(c) > 1]
    assert not cycles, f"import cycles among the package's modules: {cycles}"


def test_imports_only_go_down_the_layers():
    G = import_graph()
    upward = []
    for a, b, line in G.edges(data="line"):
        if a in TOP or b == "lagrangeprop" and a == "lagrangeprop.cli":
            continue
        if _layer(b) > _layer(a):
            upward.append(f"{a} (line {line}) imports {b}")
    assert not upward, "imports up the layers:\n" + "\n".join(upward)


def test_every_module_has_a_layer_and_the_check_sees_local_imports():
    G = import_graph()
    for m in G:
        if m not in TOP:
            _layer(m)
    assert len(G) > 30
    # a function-local import is an edge like any other (cli imports check inside a function)
    assert any(b.startswith("lagrangeprop.crosscheck") for b in G.successors("lagrangeprop.cli"))


def test_every_module_imports():
    # lazily loaded layers (optimize) are imported here too: a stale import path fails now
    import importlib
    import pkgutil

    broken = []
    for m in pkgutil.walk_packages(lagrangeprop.__path__, "lagrangeprop."):
        try:
            importlib.import_module(m.name)
        except Exception as exc:   # report every broken module at once
            broken.append(f"{m.name}: {type(exc).__name__}: {exc}")
    assert not broken, "\n".join(broken)


MAX_LINES = 420   # "a few hundred lines, one job each" (issue 12): none over ~400


def test_modules_stay_small():
    big = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by job): {big}"
