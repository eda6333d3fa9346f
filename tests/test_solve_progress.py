"""Progress of block solves (lagrangeprop.progress): solve(verbose=, callback=), silent by default."""

import sys

import numpy as np
import pytest
import scipy.sparse as sp

import lagrangeprop as lp
from lagrangeprop.progress import Iteration


def _bratu(N: int = 12):
    h = 1.0 / (N + 1)
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(N, N))
    L = ((sp.kron(T, sp.eye(N)) + sp.kron(sp.eye(N), T)) / h**2).tocsr()
    prog = lp.Program(name="bratu")
    lam = prog.input("lam"); f = prog.input("f", shape=(N * N,))
    u = prog.variable("u", shape=(N * N,))
    prog.residual(u, lp.matmul(L, u) - lam * lp.exp(u) - f)
    prog.output(h * h * lp.sum(u), name="J")
    return prog, {"lam": 1.0, "f": np.linspace(0.0, 1.0, N * N)}


def test_callback_sees_every_newton_iteration_and_changes_nothing():
    prog, x = _bratu()
    seen: list[Iteration] = []
    sol = prog.solve(**x, callback=seen.append)
    plain = prog.solve(**x)
    assert np.array_equal(sol.values["u"], plain.values["u"])
    assert np.array_equal(sol.grad["f"], plain.grad["f"])
    assert seen and all(isinstance(s, Iteration) for s in seen)
    assert [s.iteration for s in seen] == list(range(len(seen)))
    assert {s.method for s in seen} == {"newton"} and "u" in seen[0].block
    assert not seen[0].converged and seen[-1].converged      # the guess is not a root; the end is
    assert seen[-1].residual <= 1e-10 and seen[0].residual > 1e-3
    assert all(b.elapsed >= a.elapsed for a, b in zip(seen, seen[1:]))


def test_fixed_point_sweeps_report_their_steps():
    prog = lp.Program()
    x = prog.input("x"); z = prog.variable("z")
    prog.define(z, 0.5 * lp.cos(z) + x)
    prog.output(z * 1.0, name="o")
    seen = []
    sol = prog.solve(x=0.3, method="fixed-point", callback=seen.append)
    assert {s.method for s in seen} == {"fixed-point"}
    # the closed form of the fixed point's derivative: dz/dx = 1 / (1 + 0.5 sin z)
    z0 = float(sol.values["z"])
    assert abs(z0 - (0.5 * np.cos(z0) + 0.3)) <= 1e-10 * max(1.0, z0)   # the default tol
    assert abs(float(sol.grad["x"]) - 1 / (1 + 0.5 * np.sin(z0))) < 1e-10
    assert seen[-1].converged and len(seen) > 5


def test_verbose_prints_lines_without_tqdm_and_default_is_silent(capsys, monkeypatch):
    prog, x = _bratu()
    prog.solve(**x)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    monkeypatch.setitem(sys.modules, "tqdm", None)       # as if tqdm were not installed
    prog.evaluate(**x, verbose=1)
    err = capsys.readouterr().err.splitlines()
    assert err and all(line.startswith("lp.solve: block [u") for line in err)
    assert "iteration 0" in err[0] and "newton" in err[0]


def test_bad_progress_options_raise_and_an_input_may_be_named_verbose():
    prog, x = _bratu()
    with pytest.raises(lp.InputError, match="verbose"):
        prog.solve(**x, verbose=-1)
    with pytest.raises(lp.InputError, match="callback"):
        prog.solve(**x, callback="print")
    p2 = lp.Program()
    v = p2.input("verbose")
    p2.output(v * 2.0, name="o")
    assert float(p2.solve({"verbose": 1.5}).grad["verbose"]) == 2.0
