"""The compiled peers of the benchmarks (JAX, CasADi, OpenMDAO: the ``[bench]`` extra) agree with the
hand-written gradient, and the generated source shown in the docs and the demo is the real one.

Every peer test skips cleanly when its package is not installed; nothing here times anything.
"""

import doctest
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).parent.parent
BENCH = str(ROOT / "benchmarks")


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, BENCH)
    try:
        import harness
        from cases import CASES
    finally:
        sys.path.remove(BENCH)
    return harness, CASES


PEER_ROWS = [("blog", "jax", "jax"), ("blog", "casadi", "casadi"), ("taylor", "jax", "jax"),
             ("taylor", "casadi", "casadi"), ("chain-1000", "jax", "jax"), ("chain-1000", "casadi", "casadi"),
             ("logistic", "jax", "jax"), ("sellar", "casadi", "casadi"), ("sellar", "openmdao", "openmdao")]


@pytest.mark.parametrize("program,system,package", PEER_ROWS, ids=[f"{p}-{s}" for p, s, _ in PEER_ROWS])
def test_peer_gradient_matches_numpy_hand(bench, program, system, package):
    pytest.importorskip(package)
    harness, CASES = bench
    build = CASES[program][0]
    ref = harness.run_one(build, "numpy", 0.0, memory=False, timings=False)
    res = harness.run_one(build, system, 0.0, memory=False, timings=False)
    assert res["status"] == "ok", res["status"]
    assert res["cold_s"] > 0
    assert res["grad"].shape == ref["grad"].shape
    err = np.max(np.abs(res["grad"] - ref["grad"])) / np.max(np.abs(ref["grad"]))
    assert err < 1e-9, (program, system, err)


def test_peers_are_na_where_they_have_no_program(bench):
    _, CASES = bench
    for program, system in (("mlp", "casadi"), ("sellar", "jax"), ("blog", "openmdao"),
                            ("chain-100000", "casadi"), ("chain-10000", "jax-unrolled")):
        assert CASES[program][0](system) is None, (program, system)


def test_theory_page_prints_the_generated_source():
    """docs/theory.md's "executable" section is a doctest of prog.source()."""
    result = doctest.testfile(str(ROOT / "docs" / "theory.md"), module_relative=False, verbose=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0


def test_blog_example_prints_its_source_and_keeps_its_verdict(tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "blog_example.py"), "--source"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "def forward" in out and "def adjoint" in out and "lam_x = lam_a * a" in out
    assert out.rstrip().endswith("OK: every check passed")
