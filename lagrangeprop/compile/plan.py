"""The execution plan: a :class:`Schedule` rewritten as typed items for the compiled path.

The plan lists the schedule's constraints in a topological order as typed items:

- :class:`StepItem`: one constraint, with a :class:`RawKernel` (an elementwise op on float64
  arguments: its bare numpy function and partials, ``prim.raw_fn``), a :class:`MatmulKernel`
  (``a @ b`` of dense float64 matrices) or no kernel (the op's rules, the reference path);
- :class:`BlockItem`: a cyclic block.

:mod:`lagrangeprop.compile.codegen` turns its items into generated statements (the kernels of
:mod:`lagrangeprop.solve.kernels` for the pull-backs); the reference interpreters
(:func:`~lagrangeprop.solve.forward.forward_reference`,
:func:`~lagrangeprop.solve.adjoint.adjoint_reference`) walk the schedule itself.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.exp(x) * 2.0, x=0.0)
>>> [type(item.kernel).__name__ for item in plan_of(prog.compile()).items]
['RawKernel', 'RawKernel']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Union

import numpy as np

from ..graph.trace import paused_gc
from ..rules import registry
from .buffers import POOL_MIN
from .schedule import Block, Schedule, Step

__all__ = ["FINITE_BATCH_MAX", "RawPartial", "RawKernel", "MatmulCotangent", "MatmulKernel", "StepItem",
           "BlockItem", "Plan", "plan_of"]

FINITE_BATCH_MAX = 1 << 12  # arrays up to this size are tested for finiteness together (one copy)


class RawPartial(NamedTuple):
    """One differentiable argument ``u`` of a :class:`RawKernel`: its cotangent ``g·∂f/∂z_u``."""

    arg: int                     # u
    partial: Callable            # prim.raw_partials[pos], called as partial(ans, *args)
    unit: float | None           # ±1.0 when the partial is that constant (cotangent ±g), else None
    reduce: tuple | None         # (leading axes, kept axes) to sum when broadcasting grew the output
    factor: int                  # the node whose value the partial is (y for x in x*y), else -1


class RawKernel(NamedTuple):
    """An elementwise op on float64 arguments: ``fn(*args)`` and its bare partials."""

    fn: Callable
    args: tuple[int, ...]
    partials: tuple[RawPartial, ...]
    buffer: int                  # buffer pool entry of the value (a large ufunc result), else -1


class MatmulCotangent(NamedTuple):
    """Argument ``arg`` at position ``pos`` of a matmul: ``g bᵀ`` (pos 0) or ``aᵀ g`` (pos 1)."""

    pos: int
    arg: int
    buffer: int                  # buffer pool entry of the cotangent, else -1


class MatmulKernel(NamedTuple):
    """``a @ b`` of dense float64 matrices: ``np.matmul`` itself, as the op's rule."""

    fn: Callable                 # np.matmul
    args: tuple[int, int]
    buffer: int
    cotangents: tuple[MatmulCotangent, ...]


Kernel = Union[RawKernel, MatmulKernel]


class StepItem(NamedTuple):
    """One constraint; ``kernel`` None: the op's own rules (the reference path)."""

    step: Step
    kernel: Kernel | None


class BlockItem(NamedTuple):
    """A cyclic block."""

    block: Block


@dataclass(eq=False)
class Plan:
    """The items in the schedule's topological order and the buffer pool."""

    items: list[StepItem | BlockItem]
    nbufs: int = 0                                           # buffer pool entries (take/keep)
    bufs: list = field(default_factory=list)                 # 2 per entry, None = empty


def plan_of(sched: Schedule, bare: set[int] | None = None) -> Plan:
    """The execution plan of ``sched`` (cached as ``sched.plan``): one item per schedule
    entry, in its order, each step with its kernel, large results with a buffer pool entry.
    ``bare``: nodes whose steps need no kernel (the generated code writes them as Python
    floats): they get none, and that plan is not cached (the cached one has every kernel).

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> prog = lp.trace(lambda x: x @ x.T, x=np.ones((200, 100)))
    >>> plan = plan_of(prog.compile())
    >>> [type(it.kernel).__name__ for it in plan.items], plan.nbufs   # x.T, then np.matmul (pooled)
    (['NoneType', 'MatmulKernel'], 3)
    """
    plan = sched.plan
    if plan is None:
        bare = bare or ()
        with paused_gc():   # building allocates ~10 tuples per step: no gen-2 sweeps of the graph
            floats = _float_nodes(sched)
            plan = _pool(sched, Plan([
                (StepItem(s, None) if s.node in bare else StepItem(s, _kernel(sched, s, floats)))
                if s.__class__ is Step else BlockItem(s) for s in sched.steps]))
        if not bare:
            sched.plan = plan
    return plan


# ------------------------------------------------------------------ kernels
def _float_nodes(sched: Schedule) -> set[int]:
    """Nodes whose value is always float64: inputs, float constants, outputs of built-in ops."""
    ok = set(sched.inputs)
    for i, v in sched.constants:
        if (isinstance(v, np.ndarray) and v.dtype == np.float64) or (
                isinstance(v, (float, int)) and not isinstance(v, bool)):
            ok.add(i)
    ok.update(n for n, s in sched.step_of.items() if s.prim.differentiable and not s.prim.user)
    return ok


def _dense(sched: Schedule, i: int, floats: set[int]) -> bool:
    return i in floats and len(sched.shapes[i]) == 2


def _kernel(sched: Schedule, s: Step, floats: set[int]) -> Kernel | None:
    """The step's kernel (no buffers yet), or ``None`` for the op's own rules."""
    prim = s.prim
    if (prim.name == "matmul" and not prim.user and prim is registry.REGISTRY.get("matmul")
            and not s.params and len(s.args) == 2 and all(_dense(sched, a, floats) for a in s.args)
            and len(sched.shapes[s.node]) == 2):
        # both operands float64 matrices (no scipy.sparse constant): np.matmul itself, as the rule
        return MatmulKernel(np.matmul, tuple(s.args), -1,
                            tuple(MatmulCotangent(pos, u, -1) for pos, u in s.diff))
    if not (prim.raw_fn is not None and not prim.user and not prim.nondiff
            and not s.params and floats.issuperset(s.args)):
        return None
    shape = sched.shapes[s.node]
    partials = []
    for pos, u in s.diff:
        d = prim.raw_partials[pos]
        if d is not None:
            c, k = getattr(d, "constant", None), getattr(d, "arg", None)
            partials.append(RawPartial(u, d, c if c in (1.0, -1.0) else None,
                                       _reduction(shape, sched.shapes[u]), -1 if k is None else s.args[k]))
    return RawKernel(prim.raw_fn, tuple(s.args), tuple(partials), -1)


def _reduction(out: tuple, arg: tuple) -> tuple | None:
    """``(leading axes, kept axes)`` that :func:`~lagrangeprop.rules.arrays.unbroadcast` sums
    to bring a cotangent of shape ``out`` back to ``arg`` (``None``: the shapes agree)."""
    if out == arg:
        return None
    extra = len(out) - len(arg)
    rest = out[extra:]
    return tuple(range(extra)), tuple(k for k, n in enumerate(arg) if n == 1 and rest[k] != 1)


def _pool(sched: Schedule, plan: Plan) -> Plan:
    """Give the large per-step results of kernel steps (values of single-output ufuncs, matmul
    cotangents) a buffer pool entry each (:mod:`~lagrangeprop.compile.buffers`)."""
    n = 0
    for k, item in enumerate(plan.items):
        if item.__class__ is not StepItem or item.kernel is None:
            continue
        kernel = item.kernel
        slot = -1
        shape = sched.shapes[item.step.node]
        if shape and isinstance(kernel.fn, np.ufunc) and kernel.fn.nout == 1:   # np.matmul is a ufunc too
            if math.prod(shape) >= POOL_MIN:
                slot, n = n, n + 1
        if slot == kernel.buffer and kernel.__class__ is RawKernel:
            continue   # a scalar or small result: the item stays as it is (no copies)
        kernel = kernel._replace(buffer=slot)
        if kernel.__class__ is MatmulKernel:
            new = []
            for ct in kernel.cotangents:
                if math.prod(sched.shapes[ct.arg]) >= POOL_MIN:
                    new.append(ct._replace(buffer=n))
                    n += 1
                else:
                    new.append(ct)
            kernel = kernel._replace(cotangents=tuple(new))
        plan.items[k] = item._replace(kernel=kernel)
    plan.nbufs, plan.bufs = n, [None] * (2 * n)
    return plan
