"""Run HIPS autograd's own numpy tests against lagrangeprop, with autograd as the reference.

The test files (``tests/test_numpy.py``, ``test_systematic.py``, ``test_linalg.py``,
``test_scalar_ops.py`` and their ``numpy_utils.py``) are read from an autograd checkout
(a git directory or a work tree; nothing of autograd's is stored in this repository) into a
temporary directory, where their ``autograd`` imports are pointed at a shim:

- ``np.foo`` is numpy's ``foo`` while lagrangeprop traces (numpy's protocols dispatch to
  the ``lp`` ops) and ``autograd.numpy.foo`` while the reference is computed;
- ``grad`` is :func:`lagrangeprop.grad`;
- ``check_grads(f, argnum, modes, order)(*args)`` compares, for each differentiated
  argument, lagrangeprop's forward value with numpy's, its VJP (``rev``) and JVP (``fwd``)
  with autograd's, and for ``order >= 2`` its Hessian-vector product of ``<g, f>`` with
  autograd's (rtol 1e-6 of the largest entry, autograd's own tolerance). Complex inputs are
  skipped (lagrangeprop is real-valued): a test whose every call is complex is "skipped".

Each failing test is classified: a *wrong number* (lagrangeprop returned a value that
disagrees), a *lagrangeprop error* (a ``LagrangePropError``: the op is refused with a
message), or a *foreign exception* (anything else). The bar (issue 13): at least 95% of the
non-complex tests pass, with no wrong number and no foreign exception.

Usage::

    python benchmarks/autograd_suite.py [--autograd PATH] [--json out.json] [-k EXPR]

``PATH`` defaults to ``$AUTOGRAD_REPO`` or ``/work/.mirror/HIPS+autograd/repo``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import types
from collections import Counter
from pathlib import Path

import numpy

FILES = ("test_numpy.py", "test_systematic.py", "test_linalg.py", "test_scalar_ops.py", "numpy_utils.py")
RTOL = 1e-6

# ------------------------------------------------------------------ the shim

MODE = ["lp"]   # "lp": numpy (traced by lagrangeprop); "ag": autograd.numpy (the reference)
CALLS: Counter = Counter()   # check_grads calls of the running test: "real" and "complex"


@contextlib.contextmanager
def mode(name: str):
    old, MODE[0] = MODE[0], name
    try:
        yield
    finally:
        MODE[0] = old


def _dispatching(name: str, lp_owner, ag_owner):
    lp_obj = getattr(lp_owner, name)
    ag_obj = getattr(ag_owner, name, lp_obj)
    if isinstance(lp_obj, (type, types.ModuleType)) or not callable(lp_obj):
        if hasattr(lp_obj, "__getitem__") and not isinstance(lp_obj, type) and name in ("r_", "c_"):
            class Index:
                def __getitem__(self, item):
                    return (ag_obj if MODE[0] == "ag" else lp_obj)[item]
            return Index()
        return lp_obj

    def call(*args, **kwargs):
        return (ag_obj if MODE[0] == "ag" else lp_obj)(*args, **kwargs)
    call.__name__ = getattr(lp_obj, "__name__", name)
    return call


class _NumpyShim(types.ModuleType):
    def __init__(self, name, lp_owner, ag_owner):
        super().__init__(name)
        self._lp, self._ag = lp_owner, ag_owner

    def __getattr__(self, attr):
        if attr.startswith("__") and attr != "__version__":
            raise AttributeError(attr)
        if not hasattr(self._lp, attr):   # autograd's own API (make_diagonal, ...): not numpy's
            import pytest
            pytest.skip(f"{attr} is autograd's own function, not numpy's")
        lp_obj = getattr(self._lp, attr)
        if isinstance(lp_obj, type) and issubclass(lp_obj, numpy.integer):
            # autograd wraps the integer types (a non-differentiable cast): per mode, uncached
            return getattr(self._ag, attr, lp_obj) if MODE[0] == "ag" else lp_obj
        value = _dispatching(attr, self._lp, self._ag)
        setattr(self, attr, value)
        return value


def _is_complex(x) -> bool:
    if isinstance(x, (list, tuple)):
        return any(_is_complex(v) for v in x)
    if isinstance(x, dict):
        return any(_is_complex(v) for v in x.values())
    return numpy.iscomplexobj(x) if isinstance(x, (complex, numpy.ndarray, numpy.generic)) else False


def _close(actual, desired, what: str) -> None:
    actual = numpy.asarray(actual, dtype=numpy.float64)
    desired = numpy.asarray(desired, dtype=numpy.float64)
    if actual.shape != desired.shape:
        raise WrongNumber(f"{what}: shape {actual.shape}, autograd {desired.shape}")
    scale = float(numpy.max(numpy.abs(desired))) if desired.size else 0.0
    # rounding noise of an exact zero (autograd's -3e-17 where we give 0) is not a disagreement
    if not numpy.allclose(actual, desired, rtol=RTOL, atol=RTOL * scale + 1e-12, equal_nan=False):
        raise WrongNumber(f"{what}: lagrangeprop {actual.ravel()[:6]} vs autograd {desired.ravel()[:6]}")


class WrongNumber(AssertionError):
    """lagrangeprop returned a number that disagrees with the reference."""


def _flat(out, np_module):
    """A tuple/list output as one flat vector (both systems), else the output itself."""
    if isinstance(out, (tuple, list)) or type(out).__name__ == "SequenceBox":
        return np_module.concatenate([np_module.ravel(out[k]) for k in range(len(out))])
    return out


def _flatten_arg(arg):
    """``(flat vector, rebuild(y, np_module))`` for a tuple/list of arrays; arrays as they are."""
    if not isinstance(arg, (tuple, list)) or not all(isinstance(a, numpy.ndarray) for a in arg):
        return numpy.asarray(arg, dtype=numpy.float64), lambda y, np_module: y
    leaves = [numpy.asarray(a, dtype=numpy.float64) for a in arg]
    bounds = numpy.cumsum([0] + [a.size for a in leaves])
    kind = type(arg)

    def rebuild(y, np_module):
        return kind(np_module.reshape(y[bounds[k]:bounds[k + 1]], leaves[k].shape)
                    for k in range(len(leaves)))
    return numpy.concatenate([a.ravel() for a in leaves]), rebuild


def make_check_grads():
    import autograd
    import autograd.numpy as anp

    import lagrangeprop as lp

    def check_grads(fun, argnum=0, modes=None, order=2):
        modes = ["fwd", "rev"] if modes is None else list(modes)

        def run(*args, **kwargs):
            if _is_complex(args) or _is_complex(kwargs):
                CALLS["complex"] += 1
                return "complex"
            CALLS["real"] += 1
            nums = tuple(argnum) if isinstance(argnum, (tuple, list)) else (argnum,)
            rng = numpy.random.default_rng(0)
            for i in nums:
                x, rebuild = _flatten_arg(args[i])

                def f(y, np_module, i=i, rebuild=rebuild):
                    a = list(args)
                    a[i] = rebuild(y, np_module)
                    return _flat(fun(*a, **kwargs), np_module)

                with mode("ag"):
                    y_ag = numpy.asarray(f(x, anp), dtype=numpy.float64)
                    g = rng.standard_normal(y_ag.shape)
                    u = rng.standard_normal(x.shape)
                    v = rng.standard_normal(x.shape)
                    ref_vjp = autograd.make_vjp(lambda y: f(y, anp))(x)[0](g)
                    if "fwd" in modes:
                        ref_jvp = autograd.make_jvp(lambda y: f(y, anp))(x)(u)[1]
                    if order >= 2:
                        def h_ag(y, g=g):
                            return anp.sum(g * f(y, anp))
                        ref_hvp = autograd.grad(lambda y, v=v: anp.sum(autograd.grad(h_ag)(y) * v))(x)
                with mode("lp"):
                    with numpy.errstate(all="ignore"):
                        y_np = numpy.asarray(f(x, numpy), dtype=numpy.float64)
                    _close(y_np, y_ag, f"numpy value of argument {i}")   # the shim itself
                    value, vjp_fn = lp.vjp(lambda y: f(y, numpy), x)
                    _close(value, y_np, f"value of argument {i}")
                    if "rev" in modes:
                        _close(vjp_fn(g)[0], ref_vjp, f"vjp of argument {i}")
                    if "fwd" in modes:
                        _close(lp.jvp(lambda y: f(y, numpy), (x,), (u,))[1], ref_jvp,
                               f"jvp of argument {i}")
                    if order >= 2:
                        def h_lp(y, g=g):
                            return numpy.sum(g * f(y, numpy))
                        _close(lp.hvp(h_lp, x, v), ref_hvp, f"hvp of argument {i}")
            return "checked"
        return run

    def combo_check(fun, *args, **kwargs):
        import itertools

        def run(*arg_lists, **kwarg_lists):
            kv = [[(k, x) for x in xs] for k, xs in kwarg_lists.items()]
            results = []
            for a in itertools.product(*arg_lists):
                for k in itertools.product(*kv):
                    results.append(check_grads(fun, *args, **kwargs)(*a, **dict(k)))
            return results
        return run

    return check_grads, combo_check


def install_shim() -> None:
    """Register the ``agshim`` package (what the copied tests import) in ``sys.modules``."""
    import autograd.numpy as anp
    import autograd.numpy.linalg as alinalg

    import lagrangeprop as lp

    check_grads, combo_check = make_check_grads()
    root = types.ModuleType("agshim")
    root.grad = lp.grad
    root.value_and_grad = lp.value_and_grad
    root.jacobian = lp.jacobian
    root.hessian = lp.hessian
    root.tuple = tuple
    root.list = list
    root.dict = dict
    npmod = _NumpyShim("agshim.numpy", numpy, anp)
    npmod.random = numpy.random
    npmod.linalg = _NumpyShim("agshim.numpy.linalg", numpy.linalg, alinalg)
    util = types.ModuleType("agshim.test_util")
    util.check_grads, util.combo_check = check_grads, combo_check
    root.numpy, root.test_util = npmod, util
    sys.modules.update({"agshim": root, "agshim.numpy": npmod, "agshim.numpy.random": numpy.random,
                        "agshim.numpy.linalg": npmod.linalg, "agshim.test_util": util})


# ------------------------------------------------------------------ running

def copy_tests(repo: Path, into: Path) -> None:
    """Read the test files from a checkout (git dir or work tree), pointing imports at agshim."""
    for name in FILES:
        work = repo / "tests" / name
        if work.exists():
            text = work.read_text()
        else:
            text = subprocess.run(["git", "--git-dir", str(repo), "show", f"HEAD:tests/{name}"],
                                  check=True, capture_output=True, text=True).stdout
        text = re.sub(r"^(\s*)(from|import) autograd\b", r"\1\2 agshim", text, flags=re.M)
        (into / name).write_text(text)
    (into / "conftest.py").write_text(
        "import numpy as np\nimport pytest\n\n\n@pytest.fixture(autouse=True)\n"
        "def random_seed():\n    np.random.seed(42)\n")


class Collector:
    """A pytest plugin recording each test's outcome and failure class."""

    def __init__(self):
        self.results: dict[str, tuple[str, str]] = {}

    def pytest_runtest_setup(self, item):
        CALLS.clear()

    def pytest_runtest_logreport(self, report):
        if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
            return
        if report.passed and CALLS["complex"] and not CALLS["real"]:
            self.results[report.nodeid] = ("skipped", "complex inputs only")
        elif report.passed:
            self.results[report.nodeid] = ("passed", "")
        elif report.skipped:
            self.results[report.nodeid] = ("skipped", "")
        else:
            self.results[report.nodeid] = classify(report)


def classify(report) -> tuple[str, str]:
    text = str(report.longrepr)
    last = [ln for ln in text.splitlines() if ln.startswith("E ")]
    head = last[0][2:].strip() if last else text.splitlines()[-1] if text else ""
    if "WrongNumber" in text or "AssertionError" in head:
        return "wrong number", head
    if re.search(r"^lagrangeprop\.[\w.]+(Error|_Unsupported\w*)|(GraphError|ShapeError|InputError|NonFiniteError|"
                 r"SingularSystemError|ConvergenceError)", head):
        return "lagrangeprop error", head
    return "foreign exception", head


def run(repo: Path, keyword: str | None = None) -> dict:
    import pytest

    install_shim()
    with tempfile.TemporaryDirectory() as tmp:
        copy_tests(repo, Path(tmp))
        collector = Collector()
        args = [tmp, "-q", "-p", "no:cacheprovider", "-W", "ignore", "--no-header", "-rN",
                "-o", "addopts=", "--rootdir", tmp, "-p", "no:randomly"]
        if keyword:
            args += ["-k", keyword]
        sys.path.insert(0, tmp)
        try:
            pytest.main(args, plugins=[collector])
        finally:
            sys.path.remove(tmp)
    # a test whose every check_grads call was complex: skipped (the shim returns "complex")
    counts = Counter(outcome for outcome, _ in collector.results.values())
    return {"counts": dict(counts), "results": collector.results}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--autograd", default=os.environ.get("AUTOGRAD_REPO",
                                                              "/work/.mirror/HIPS+autograd/repo"))
    parser.add_argument("--json", help="write the per-test outcomes here")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression")
    ns = parser.parse_args(argv)
    out = run(Path(ns.autograd), ns.keyword)
    counts = out["counts"]
    total = sum(v for k, v in counts.items() if k != "skipped")
    print(f"\nautograd suite against lagrangeprop: {counts.get('passed', 0)} of {total} "
          f"non-complex tests pass ({100.0 * counts.get('passed', 0) / max(total, 1):.1f}%)")
    for kind in ("wrong number", "foreign exception", "lagrangeprop error"):
        items = [(k, why) for k, (o, why) in out["results"].items() if o == kind]
        print(f"  {kind}: {len(items)}")
        for k, why in items[:400]:
            print(f"    {k.split('::')[-1]}: {why[:150]}")
    if ns.json:
        Path(ns.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
