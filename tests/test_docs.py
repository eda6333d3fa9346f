"""Every ```python block of README.md and docs/*.md runs as written, in order, one namespace per file.

A block with ``>>>`` prompts is a doctest (its shown output is compared, ELLIPSIS and
NORMALIZE_WHITESPACE); a plain block is executed, and when a bare ````` block follows it directly,
that block is the output it prints (numbers compared to 1e-6 relative, the words exactly). Blocks
tagged ```python petsc run only when petsc4py imports. Each file runs in a fresh temporary
directory, so the pictures the docs draw do not litter the checkout.
"""

import contextlib
import doctest
import importlib.util
import io
import math
import re
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
