"""Adversarial review of the issue-14/16 fast paths: numbers that look right, held to references.

Each test pins one probe of the generated tangent pass, the folded adjoint, the large-block
chain Schur path or the fixed-cost cuts against an independent reference (autograd, central
differences, scipy, numpy) and, where the generated code must make the interpreter's numbers,
bitwise against the interpreter (``compiled.ENABLED = False``).
"""

from __future__ import annotations

import warnings

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import lagrangeprop as lp
from lagrangeprop.solve import compiled


def _grads(monkeypatch, f, x):
    """``∇f(x)`` by the generated adjoint and by the interpreter, on one traced program."""
    prog = lp.trace(f, x=x)
    out = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        out.append(prog.solve(x=x).grad["x"])
    return prog, out[0], out[1]


# ---------------------------------------------------------------- 2. the folded adjoint
def _same_entry_twice(m):
    def f(x):
        c = x[2] * x[-1]           # one entry under two spellings: 2 and -1 of a length-3 array
        return m.sum(m.sin(x * c))  # λ_x is already collected when the entries pull back
    return f


def test_an_entry_spelled_two_ways_is_not_folded_as_distinct(monkeypatch, rng):
    # x[2] and x[-1] are the same entry: one scatter of both would sum g_a + g_b first,
    # the interpreter adds them to λ_x one at a time ((λ + g_b) + g_a)
    f = _same_entry_twice(lp)
    for _ in range(40):
        x = rng.standard_normal(3)
        _, new, ref = _grads(monkeypatch, f, x)
        assert np.array_equal(new, ref), (x, new - ref)
        np.testing.assert_allclose(new, autograd.grad(_same_entry_twice(anp))(x), rtol=1e-14, atol=1e-15)
