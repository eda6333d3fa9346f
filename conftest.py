"""Root conftest: skip doctests of optional-dependency modules when they are absent; the
example programs of the blocks docstrings."""

import importlib.util
import pathlib

import pytest

# modules whose doctests need an optional package: {path: package}
OPTIONAL = {"lagrangeprop/viz/figure.py": "matplotlib"}

for _path in OPTIONAL:   # a moved module must not silently lose (or break) its skip
    assert (pathlib.Path(__file__).parent / _path).is_file(), f"conftest.OPTIONAL names a missing {_path}"

collect_ignore = [p for p, pkg in OPTIONAL.items() if importlib.util.find_spec(pkg) is None]


# The small cyclic programs the lagrangeprop.blocks docstrings solve (one definition instead of
# the same four lines in every module): ``two_cycle()`` and ``cubic()`` return a Solution.
def _two_cycle():
    import lagrangeprop as lp
    prog = lp.Program()
    x = prog.input("x")
    a, b = prog.variable("a"), prog.variable("b")
    prog.define(a, 0.5 * b + x)
    prog.define(b, 0.25 * a)
    prog.output(a + b, name="o")
    return prog.solve(x=1.0)


def _cubic():
    import lagrangeprop as lp
    prog = lp.Program()
    x = prog.input("x")
    w = prog.variable("w")
    prog.residual(w, w**3 + w - x)
    prog.output(w * 1.0, name="o")
    return prog.solve(x=2.0)


@pytest.fixture(autouse=True)
def _block_examples(doctest_namespace):
    doctest_namespace["two_cycle"] = _two_cycle
    doctest_namespace["cubic"] = _cubic
