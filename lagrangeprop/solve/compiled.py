"""The compiled path at run time: the generated forward and adjoint, and their helpers.

:mod:`lagrangeprop.compile.codegen` writes a schedule as straight-line Python and
:mod:`lagrangeprop.compile.source` compiles it; this module supplies the names the
generated code calls (``math``'s functions for scalars, :func:`_apply` / :func:`_pull` for
an op's registry entry, :func:`_pooled` for buffered kernels) and runs the chunks and the
blocks between them. It is what :func:`~lagrangeprop.solve.forward.run_forward` and
:func:`~lagrangeprop.solve.adjoint.run_adjoint` run while :data:`ENABLED` is true.

Errors are the interpreters' own: a NaN or inf is reported by the same checks
(:mod:`lagrangeprop.solve.finite`), and where Python's float arithmetic raises instead of
returning one (``1.0 / 0.0``, ``math.log(-1.0)``, ``math.exp(1000.0)``) the pass returns
``None`` and the caller runs the interpreter, which then reports what it finds.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> from lagrangeprop.options import SolveOptions
>>> from lagrangeprop.solve.forward import initial_values
>>> sched = lp.trace(lambda x: lp.sin(x) * x, x=0.5).compile()
>>> vals = initial_values(sched, {sched.index["x"]: np.float64(0.5)})
>>> states = forward(sched, vals, SolveOptions.make())
>>> bool(vals[sched.output] == np.sin(0.5) * 0.5), type(vals[sched.output]).__name__
(True, 'float64')
"""

from __future__ import annotations

import math

import numpy as np

from .. import blocks
from ..blocks.dense import adjoint as block_dense_adjoint
from ..compile.buffers import keep, take
from ..compile.codegen import Pull, generate
from ..compile.floats import pow_dbase, pow_dexp, sech2
from ..compile.plan import RawKernel
from ..compile.schedule import Schedule
from ..compile.source import Compiled, Linker, build
from ..errors import LagrangePropError, ShapeError
from ..options import SolveOptions
from .finite import all_finite, check_finite_pass, check_values, values_finite
from .kernels import adjoint_matmul, adjoint_raw, gather_entries
from .local import accumulate, as_value, block_adjoint

__all__ = ["ENABLED", "NAMESPACE", "generated", "forward", "adjoint"]

ENABLED = True   # False: solve/evaluate run the reference interpreters (tests compare the two)

_ND, _F64_TYPE, _F64_DTYPE = np.ndarray, np.float64, np.dtype(np.float64)
_SCALARS = (float, np.float64)


def _apply(step, args: tuple):
    """``z_d = prim.fn(*args, **params)`` as the reference interpreter computes it."""
    out = step.prim.fn(*args, **step.params)
    cls = out.__class__
    if cls is not _F64_TYPE and (cls is not _ND or out.dtype is not _F64_DTYPE):
        out = as_value(out)
    return out


def _item(step, x, index):
    """``z_d = x[index]`` (one entry by ints) as :func:`_apply` computes it: a 0-d float64 array."""
    if x.__class__ is _ND and x.dtype is _F64_DTYPE:
        return np.array(x[index])
    return _apply(step, (x,))


def _value(out):
    cls = out.__class__
    if cls is not _F64_TYPE and (cls is not _ND or out.dtype is not _F64_DTYPE):
        out = as_value(out)
    return out


def _pooled(fn, bufs: list, k: int, *args):
    """``fn(*args)`` into a free buffer of pool entry ``k`` (:mod:`~lagrangeprop.compile.buffers`)."""
    buf = take(bufs, k)
    out = fn(*args, out=buf)
    if buf is None:
        keep(bufs, k, out)
    return out


# λ_u += (∂f_d/∂z_u)ᵀ λ_d for the distinct arguments u of d: the interpreters' own code
# (solve.local.accumulate, or the plan's kernel), on dicts of just this step's nodes
def _pull(pull: Pull, bufs: list, g, ans, args: tuple, lams: tuple) -> tuple:
    step, kernel = pull.step, pull.kernel
    if pull.index is not None:      # one entry by ints: rules.structure._getitem_vjp's scatter
        x = args[0]
        if x.__class__ is _ND and x.dtype is _F64_DTYPE and g.__class__ in _SCALARS:
            ct = np.zeros(x.shape)
            ct[pull.index] += g
            prev = lams[0]
            return (ct if prev is None else prev + ct),
    vals = dict(zip(step.args, args))
    lam = dict(zip(pull.targets, lams))
    if kernel is None:
        try:
            accumulate(step, g, ans, vals, lam)
        except ShapeError as exc:
            raise ShapeError(f"node {pull.name!r}: {exc}") from None
    elif kernel.__class__ is RawKernel:
        adjoint_raw(kernel, g, ans, vals, lam)
    else:
        adjoint_matmul(step, kernel, g, vals, lam, bufs)
    return tuple([lam[u] for u in pull.targets])


# solve.kernels.adjoint_raw's cotangent pieces: g·∂f/∂z_u, scaling a fresh temporary of the
# partial in place (the same product); the sums over broadcast axes (rules.arrays.unbroadcast)
def _scaled(g, partial, ans, *args):
    p = partial(ans, *args)
    if p.__class__ is _ND and p.base is None and p.shape == g.shape and p.dtype is _F64_DTYPE \
            and p is not ans and not any(p is a for a in args):
        return np.multiply(g, p, out=p)
    return g * p


NAMESPACE: dict = {
    "np": np, "math": math, "_f64": np.float64, "_apply": _apply, "_item": _item, "_value": _value,
    "_pooled": _pooled, "_pull": _pull, "_gather": gather_entries, "_scaled": _scaled, "_addr": np.add.reduce,
    "_pow": math.pow,
    "_pow_dbase": pow_dbase, "_pow_dexp": pow_dexp, "_exp": math.exp, "_log": math.log, "_log1p": math.log1p,
    "_isfinite": math.isfinite, "_sqrt": math.sqrt, "_sin": math.sin, "_cos": math.cos, "_tan": math.tan,
    "_tanh": math.tanh, "_sech2": sech2,
}

# what Python's float arithmetic raises where numpy returns NaN or inf
_FLOAT_ERRORS = (ArithmeticError, ValueError)


def generated(sched: Schedule) -> Compiled:
    """The compiled functions of ``sched`` (cached as ``sched.generated``)."""
    g = sched.generated
    if g is None:
        link = Linker(sched)   # each chunk rendered as it is generated, its statements then dropped
        g = build(generate(sched, sinks=link.sinks()), sched, NAMESPACE, link)
        # a constant has no multiplier in either pass (Step.diff leaves constants out): L stays None
        roles = sched.roles
        g.lam_ids = [i for i in g.lam_ids if roles[i] != "constant"]
        sched.generated = g
    return g


# ∂L/∂λ = 0: the generated statements z_d = f_d(z_pa(d)), blocks solved between chunks
# (forward, adjoint and compiled_tangent.tangent each spell out the same chunk loop: a shared
# runner taking the block solve as a callback cost ~1 µs, 10% of the blog gradient)
def forward(sched: Schedule, vals: list, opts: SolveOptions, guess: dict | None = None) -> dict | None:
    """Fill ``vals`` by the generated forward pass; the block states, or ``None`` when Python's
    float arithmetic raised (the caller then runs the interpreter). A non-finite value raises
    :class:`~lagrangeprop.errors.NonFiniteError` as :func:`~lagrangeprop.solve.forward.run_forward`."""
    g = sched.generated or generated(sched)
    B = g.bufs
    states: dict = {}
    finite = True   # each chunk tests its own Python floats (source.render_chunk), the scan the rest
    try:
        if g.plain:   # Python floats only: nothing for np.errstate to silence
            for fn, ids, objs in g.forward:
                if fn(vals, None, ids, objs, B) is False:
                    finite = False
            finite = finite and values_finite(g, vals)
        else:
            with np.errstate(all="ignore"):
                for run in g.forward:
                    if run.__class__ is tuple:
                        if run[0](vals, None, run[1], run[2], B) is False:
                            finite = False
                    else:
                        states[id(run)] = blocks.solve_forward(run, vals, opts, guess or {})
                finite = finite and values_finite(g, vals)
    except LagrangePropError:
        raise
    except _FLOAT_ERRORS:
        return None
    if not finite:
        check_values(sched, vals)
    return states


# A_SSᵀ λ_S = b_S, then λ_S to the arguments: a small block solved by the dense Newton on its own
# generated pull-back (blocks.dense.adjoint), else the interpreters' block_adjoint
def _dense_adjoint(block, vals: list, L: list, states: dict, opts: SolveOptions) -> bool:
    for n in block.nodes:
        if L[n] is not None:
            return block_dense_adjoint(block, vals, L, states[id(block)], opts.linear_solver)
    return True    # no multiplier reaches the block: nothing to solve (as block_adjoint)


# Aᵀλ = e_o·seed: the generated back-substitution, λ_u += (∂f_d/∂z_u)ᵀ λ_d per edge
def adjoint(sched: Schedule, vals: list, seed, states: dict, opts: SolveOptions) -> list | None:
    """All multipliers (``None`` where identically zero), or ``None`` when Python's float
    arithmetic raised. A non-finite multiplier raises :class:`~lagrangeprop.errors.NonFiniteError`
    as :func:`~lagrangeprop.solve.adjoint.run_adjoint` (the chunks test their own scalars, one
    scan the rest: ``Compiled.lam_ids``; on any doubt the full check names the node)."""
    g = sched.generated or generated(sched)
    B = g.bufs
    L: list = [None] * len(sched.names)
    L[sched.output] = seed.copy() if seed.__class__ is _ND else seed
    finite = True
    try:
        if g.plain:
            for fn, ids, objs in g.adjoint:
                if fn(vals, L, ids, objs, B) is False:
                    finite = False
        else:
            with np.errstate(all="ignore"):
                for run in g.adjoint:
                    if run.__class__ is tuple:
                        if run[0](vals, L, run[1], run[2], B) is False:
                            finite = False
                    elif not _dense_adjoint(run, vals, L, states, opts):
                        block_adjoint(run, vals, L, states, opts)
    except LagrangePropError:
        raise
    except _FLOAT_ERRORS:
        return None
    if not (finite and all_finite([L[i] for i in g.lam_ids])):
        check_finite_pass(sched, vals, L, "multiplier")
    return L
