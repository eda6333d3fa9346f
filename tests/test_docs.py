"""Every ```python block of README.md and docs/*.md runs as written, in order, one namespace per file.

A block with ``>>>`` prompts is a doctest (its shown output is compared, ELLIPSIS and
NORMALIZE_WHITESPACE); a plain block is executed, and when a bare ````` block follows it directly,
that block is the output it prints (numbers compared to 1e-6 relative, the words exactly). Blocks
tagged ```python petsc run only when petsc4py imports. Each file runs in a fresh temporary
directory, so the pictures the docs draw do not litter the checkout.
"""

import ast
import contextlib
import doctest
import importlib.util
import io
import math
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def blocks(text):
    """The fenced blocks of a markdown page: ``(info, code, gap, line)``, gap = the text before it."""
    out, end = [], 0
    for m in FENCE.finditer(text):
        out.append((m.group(1).strip(), m.group(2), text[end:m.start()], text[:m.start()].count("\n") + 1))
        end = m.end()
    return out


def same_output(shown, printed, rtol=1e-6, atol=1e-12):
    """True when ``printed`` matches ``shown``: the same words, every number to ``rtol``."""
    words = [" ".join(s.split()) for s in NUMBER.split(shown)], [" ".join(s.split()) for s in NUMBER.split(printed)]
    if words[0] != words[1]:
        return False
    return all(math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=atol)
               for a, b in zip(NUMBER.findall(shown), NUMBER.findall(printed)))


def run_page(path):
    """Run every python block of ``path``; return a list of failure descriptions."""
    found = blocks(path.read_text())
    namespace = {"__name__": f"docs_{path.stem}"}
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    parser = doctest.DocTestParser()
    failures = []
    for i, (info, code, _, line) in enumerate(found):
        words = info.split()
        if not words or words[0] != "python":
            continue
        if "petsc" in words[1:] and importlib.util.find_spec("petsc4py") is None:
            continue
        where = f"{path.name} line {line}"
        if ">>>" in code:
            test = parser.get_doctest(code, {}, where, str(path), 0)
            test.globs = namespace   # DocTest copies its globs: share the page's namespace instead
            report = io.StringIO()
            result = runner.run(test, out=report.write, clear_globs=False)
            if result.failed:
                failures.append(f"{where}:\n{report.getvalue()[-3000:]}")
            continue
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                exec(compile(code, where, "exec"), namespace)
        except Exception as exc:   # noqa: BLE001 - reported with the block that raised it
            failures.append(f"{where}: {type(exc).__name__}: {exc}")
            continue
        following = found[i + 1] if i + 1 < len(found) else None
        if following is not None and following[0] == "" and not following[2].strip():
            if not same_output(following[1], printed.getvalue()):
                failures.append(f"{where}: prints\n{printed.getvalue()}\nbut the page shows\n{following[1]}")
    return failures


def test_blocks_are_found():
    text = "intro\n```python\nprint(1)\n```\n```\n1\n```\n```bash\nls\n```\n"
    assert [(info, code) for info, code, _, _ in blocks(text)] == [("python", "print(1)\n"), ("", "1\n"),
                                                                 ("bash", "ls\n")]
    assert same_output("a 1.0000001 b\n", "a   1.0 b") and not same_output("a 1.1", "a 1.0")
    assert not same_output("x 1", "y 1")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_runs_as_written(page, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    failures = run_page(page)
    assert not failures, "\n\n".join(failures)
    assert not list(ROOT.glob("*.png")), "a docs block wrote a picture into the checkout"


# Third-party modules the docs' blocks and the examples import, by distribution (an import that is not
# listed here fails the test below until someone says which package brings it).
DISTRIBUTION = {"numpy": "numpy", "scipy": "scipy", "networkx": "networkx", "matplotlib": "matplotlib",
                "autograd": "autograd", "pyamg": "pyamg", "hypothesis": "hypothesis", "pytest": "pytest",
                "sklearn": "scikit-learn", "torch": "torch", "petsc4py": "petsc4py", "mpi4py": "mpi4py",
                "tqdm": "tqdm"}


def imported(code):
    """``{module: optional}`` for the top-level modules ``code`` imports; optional when every import of
    it sits in the body of a ``try`` (the ``except ImportError`` idiom)."""
    found = {}

    def visit(node, guarded):
        for child in ast.iter_child_nodes(node):
            names = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            for name in names:
                top = name.split(".")[0]
                found[top] = found.get(top, True) and guarded
            if isinstance(child, ast.Try):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), True)
                for part in (*child.handlers, *child.orelse, *child.finalbody):
                    visit(part if not isinstance(part, ast.stmt) else ast.Module(body=[part], type_ignores=[]),
                          guarded)
            else:
                visit(child, guarded)

    visit(ast.parse(code), False)
    return found


def test_imported_finds_required_and_optional():
    code = "import numpy as np\nfrom scipy.sparse import csr_matrix\ntry:\n    import sklearn\nexcept ImportError:\n" \
           "    pass\ndef f():\n    import matplotlib.pyplot\n"
    assert imported(code) == {"numpy": False, "scipy": False, "sklearn": True, "matplotlib": False}


def test_readme_install_covers_every_import_of_the_docs_and_examples():
    """The README's first command, ``pip install -e ".[test]"``, installs every package that a docs block
    or an example imports unguarded (``python petsc`` blocks and ``try: import ...`` excepted)."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = re.compile(r"[A-Za-z0-9_.-]+")
    installed = {name.match(r).group(0).lower() for r in
                 [*project["dependencies"], *project["optional-dependencies"]["test"]]}
    assert 'pip install -e ".[test]"' in (ROOT / "README.md").read_text()
    sources = [(p.name, p.read_text()) for p in sorted((ROOT / "examples").glob("*.py"))]
    parser = doctest.DocTestParser()
    for page in PAGES:
        for info, code, _, line in blocks(page.read_text()):
            words = info.split()
            if words[:1] == ["python"] and "petsc" not in words[1:]:
                if ">>>" in code:
                    code = "".join(ex.source for ex in parser.get_examples(code))
                sources.append((f"{page.name} line {line}", code))
    needed = {}
    for where, code in sources:
        for module, optional in imported(code).items():
            if module in sys.stdlib_module_names or module == "lagrangeprop" or optional:
                continue
            assert module in DISTRIBUTION, f"{where} imports {module!r}: add its distribution to DISTRIBUTION"
            needed.setdefault(DISTRIBUTION[module], where)
    missing = {dist: where for dist, where in needed.items() if dist not in installed}
    assert not missing, f"imported without a guard but not in the core or [test] dependencies: {missing}"
