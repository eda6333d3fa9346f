"""The residual of a block: ``c_S(z_S)`` from its members' ops, evaluated with plain numpy.

Explicit members have ``c_d = z_d - f_d(args)``, residual members ``c_d = r_d(args)``. An
elementwise built-in op is called as its bare numpy function, a CSR matrix times a vector through
scipy's kernel directly (:mod:`lagrangeprop.blocks.kernels`); any other op through its ``value`` rule.

Examples
--------
>>> import numpy as np, lagrangeprop as lp
>>> sol = two_cycle()   # a = 0.5 b + x, b = 0.25 a (o = a + b) solved at x = 1: conftest.py
>>> blk = sol.schedule.blocks[0]; blk.names
['a', 'b', 'a.multiply']
>>> c, ans = block_residual(blk, sol._vals)
>>> bool(abs(c).max() < 1e-12), has_jac(blk)
(True, True)
"""

from __future__ import annotations

import numpy as np

from ..compile.schedule import Block, Step
from .kernels import F64_DTYPE, spmatmul
from .state import cache_of

__all__ = ["evaluators", "evaluate", "evaluate_step", "block_residual", "has_jac"]


def evaluators(block: Block) -> list:
    """Per member, the bare numpy function of an elementwise built-in op (no params, no
    non-differentiable operands), a sparse-matrix product (:func:`~lagrangeprop.blocks.kernels.spmatmul`), else ``None``
    (the op's ``value``); cached per block."""
    c = cache_of(block)
    if c.evaluators is None:
        out = []
        for s in block.steps:
            p = s.prim
            fn = p.raw_fn
            ok = p.elementwise and fn is not None and not p.user and not p.nondiff \
                and not s.params
            if not ok and p.name == "matmul" and not p.user and not s.params:
                out.append(lambda a, b, p=p: spmatmul(a, b, p))
            else:
                out.append(fn if ok else None)
        c.evaluators = out
    return c.evaluators


def evaluate(block: Block, k: int, vals: list, fn=None) -> np.ndarray:
    """The op output of member ``k`` at the current values (float64 ndarray)."""
    s = block.steps[k]
    args = [vals[u] for u in s.args]
    if fn is not None:
        # a member is float64, so the op computes in float64; only the container may differ
        a = fn(*args)
        if type(a) is np.ndarray and a.dtype is F64_DTYPE:
            return a
        return np.asarray(a, dtype=np.float64)
    return np.asarray(s.prim.value(args, s.params), dtype=np.float64)


def evaluate_step(args: tuple, fn, s: Step, vals: list) -> np.ndarray:
    """The op output of step ``s`` from its operand ids ``args`` (float64 ndarray), like
    :func:`evaluate`, for loops that hold the operand ids and the evaluator already."""
    if fn is not None:
        v = fn(*[vals[u] for u in args])
        return v if type(v) is np.ndarray and v.dtype is F64_DTYPE else np.asarray(v, dtype=np.float64)
    return np.asarray(s.prim.value([vals[u] for u in args], s.params), dtype=np.float64)


# c_d = z_d - f_d(z_pa(d)) (explicit) or c_d = r_d(z_pa(d), z_d) (residual), stacked in block order.
def block_residual(block: Block, vals: list) -> tuple[np.ndarray, dict]:
    """``c_S`` at the current member values, and each member's op output."""
    ans, parts = {}, []
    for k, (s, fn) in enumerate(zip(block.steps, evaluators(block))):
        a = evaluate(block, k, vals, fn)
        ans[s.node] = a
        parts.append(np.ravel(a) if s.residual else np.ravel(vals[s.node] - a))
    return (np.concatenate(parts) if parts else np.zeros(0)), ans


def has_jac(block: Block) -> bool:
    """Whether every member op has a sparse Jacobian rule (needed to assemble ``A_SS``)."""
    c = cache_of(block)
    if c.has_jac is None:
        c.has_jac = all(s.prim.has_jac for s in block.steps)
    return c.has_jac
