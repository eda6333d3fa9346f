"""The execution plan: a :class:`Schedule` rewritten as typed items for the compiled path.

The plan lists the schedule's constraints in a topological order as typed items:

- :class:`StepItem`: one constraint, with a :class:`RawKernel` (an elementwise op on float64
  arguments: its bare numpy function and partials, ``prim.raw_fn``), a :class:`MatmulKernel`
  (``a @ b`` of dense float64 matrices) or no kernel (the op's rules, the reference path);
- :class:`Group`: same-op scalar constraints of one level, evaluated as one numpy call on a
  register array;
- :class:`BlockItem`: a cyclic block.

:mod:`lagrangeprop.compile.codegen` turns its items into generated statements (the kernels of
:mod:`lagrangeprop.solve.kernels` for the pull-backs); the reference interpreters
(:func:`~lagrangeprop.solve.forward.forward_reference`,
:func:`~lagrangeprop.solve.adjoint.adjoint_reference`) walk the schedule itself. ``Group`` items
(vectorized scalar levels) are no longer run by anything: the code generator rebuilds a plan
without them (left for the compile layer's owner to remove).

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

__all__ = ["MIN_GROUP", "FINITE_BATCH_MAX", "RawPartial", "ScalarForm", "RawKernel", "MatmulCotangent",
           "MatmulKernel", "StepItem", "Group", "BlockItem", "Plan", "plan_of"]

MIN_GROUP = 8  # below this a batched call costs more than the per-step calls it replaces
FINITE_BATCH_MAX = 1 << 12  # arrays up to this size are tested for finiteness together (one copy)


class RawPartial(NamedTuple):
    """One differentiable argument ``u`` of a :class:`RawKernel`: its cotangent ``g·∂f/∂z_u``."""

    arg: int                     # u
    partial: Callable            # prim.raw_partials[pos], called as partial(ans, *args)
    unit: float | None           # ±1.0 when the partial is that constant (cotangent ±g), else None
    reduce: tuple | None         # (leading axes, kept axes) to sum when broadcasting grew the output
    factor: int                  # the node whose value the partial is (y for x in x*y), else -1


class ScalarForm(NamedTuple):
    """The adjoint of a scalar step with one differentiable argument ``arg``, inlined: the
    cotangent is ``g·partial(ans, z_x)`` (a unary op), ``g·z_x`` (``partial`` None) or
    ``unit·g`` (``partial`` None, ``x`` = -1)."""

    arg: int
    partial: Callable | None
    x: int
    unit: float


class RawKernel(NamedTuple):
    """An elementwise op on float64 arguments: ``fn(*args)`` and its bare partials."""

    fn: Callable
    args: tuple[int, ...]
    partials: tuple[RawPartial, ...]
    buffer: int                  # buffer pool entry of the value (a large ufunc result), else -1
    scalar: ScalarForm | None    # the inline adjoint of a scalar step, else None


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
    """One constraint; ``slot`` (-1 = none) mirrors its scalar value in the register array
    when a group reads it; ``kernel`` None: the op's own rules (the reference path)."""

    step: Step
    slot: int
    kernel: Kernel | None


class BlockItem(NamedTuple):
    """A cyclic block; ``slots``: ``(slot, node)`` of its members that groups read."""

    block: Block
    slots: list[tuple[int, int]]


@dataclass(eq=False)
class Group:
    """Same-op scalar constraints at one level, evaluated as one vector op."""

    prim: registry.Primitive
    nodes: list[int]                 # member node ids
    out: np.ndarray                  # their slots
    args: list[np.ndarray]           # slots of argument ``pos`` for every member
    # (pos, members with a differentiable argument there or None = all, their slots, unique?)
    diff: list[tuple[int, np.ndarray | None, np.ndarray, bool]]
    mixed: list[tuple[int, int]]     # (k, node): members whose λ also collects per-step terms


@dataclass(eq=False)
class Plan:
    """The items in a topological order, the buffer pool and the register layout."""

    items: list[StepItem | Group | BlockItem]
    nbufs: int = 0                                           # buffer pool entries (take/keep)
    bufs: list = field(default_factory=list)                 # 2 per entry, None = empty
    nslots: int = 0
    slot_ids: list[int] = field(default_factory=list)      # node id of every slot
    init: list[tuple[int, int]] = field(default_factory=list)    # (slot, id) inputs, constants
    finals: list[tuple[int, int]] = field(default_factory=list)  # (slot, id) inputs: λ at the end
    scalar_ids: list[int] = field(default_factory=list)    # per-step scalar outputs (finite check)
    array_ids: list[int] = field(default_factory=list)     # per-step arrays > FINITE_BATCH_MAX
    small_ids: list[int] = field(default_factory=list)     # per-step arrays <= FINITE_BATCH_MAX
    grouped: int = 0                                         # nodes evaluated in groups


def plan_of(sched: Schedule, min_group: int | None = None) -> Plan:
    """The execution plan of ``sched`` (cached as ``sched.plan``); with ``min_group``, a new
    uncached plan grouping buckets of at least that many scalars (10**9: no groups).

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> prog = lp.trace(lambda x: sum(lp.sin(x * k) for k in range(1, 11)), x=0.1)
    >>> plan_of(prog.compile()).grouped     # 10 multiplies, then 10 sines, in two calls
    20
    """
    if min_group is not None:
        with paused_gc():
            return _build_plan(sched, min_group)
    plan = sched.plan
    if plan is None:
        with paused_gc():   # building allocates ~10 tuples per step: no gen-2 sweeps of the graph
            plan = sched.plan = _build_plan(sched, MIN_GROUP)
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
    kernel = RawKernel(prim.raw_fn, tuple(s.args), tuple(partials), -1, None)
    return kernel._replace(scalar=_scalar_form(sched, kernel))


def _scalar_form(sched: Schedule, kernel: RawKernel) -> ScalarForm | None:
    """The inline adjoint of a scalar step with one differentiable argument, else ``None``."""
    if len(kernel.partials) != 1:
        return None
    u, d, c, red, a = kernel.partials[0]
    shapes = sched.shapes
    if red is not None or shapes[u] != ():
        return None
    for k in kernel.args:
        if shapes[k] != ():
            return None
    if c is not None:
        return ScalarForm(u, None, -1, c)
    if a >= 0:
        return ScalarForm(u, None, a, 0.0)
    if len(kernel.args) == 1:
        return ScalarForm(u, d, kernel.args[0], 0.0)
    return None


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
        if isinstance(kernel.fn, np.ufunc) and kernel.fn.nout == 1:   # np.matmul is a ufunc too
            if math.prod(sched.shapes[item.step.node]) >= POOL_MIN:
                slot, n = n, n + 1
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


# ------------------------------------------------------------------ groups
# Scalar graphs vectorize: the constraints of one elementwise op whose arguments and
# output are all scalars, at the same topological level, are independent of each other,
# so one numpy call evaluates them all (forward value, local partials, and the adjoint's
# λ_u += (∂f_d/∂z_u) λ_d as a scatter-add). Their scalars live in a flat register array
# indexed by "slot"; everything else keeps the per-step path over the ``vals`` list.
def _groupable(sched: Schedule, s: Step) -> bool:
    prim = s.prim
    return (prim.elementwise and not prim.user and not s.residual
            and not s.params and not prim.nondiff and prim.differentiable
            and sched.shapes[s.node] == () and all(sched.shapes[a] == () for a in s.args))


def _levels(sched: Schedule) -> list[tuple[int, int, Step | Block]]:
    """``(level, position, step)``: level 1 + the highest level of the step's arguments."""
    level: dict[int, int] = {}
    ranked = []
    for seq, st in enumerate(sched.steps):
        if type(st) is Step:
            lv = 0
            for a in st.args:
                la = level.get(a, 0)
                if la > lv:
                    lv = la
            lv += 1
            level[st.node] = lv
        else:
            inside = set(st.nodes)
            lv = 1 + max((level.get(a, 0) for s in st.steps for a in s.args if a not in inside), default=0)
            for n in st.nodes:
                level[n] = lv
        ranked.append((lv, seq, st))
    return ranked


def _finite_ids(shapes: list[tuple], steps: list[Step]) -> dict[str, list[int]]:
    size = {s.node: math.prod(shapes[s.node]) for s in steps if shapes[s.node] != ()}
    return dict(scalar_ids=[s.node for s in steps if shapes[s.node] == ()],
                array_ids=[i for i, n in size.items() if n > FINITE_BATCH_MAX],
                small_ids=[i for i, n in size.items() if n <= FINITE_BATCH_MAX])


def _build_plan(sched: Schedule, min_group: int) -> Plan:
    shapes = sched.shapes
    floats = _float_nodes(sched)
    ranked = _levels(sched)
    buckets: dict[tuple, list[Step]] = {}
    for lv, _, st in ranked:
        if type(st) is Step and _groupable(sched, st):
            buckets.setdefault((lv, st.prim.name, len(st.args)), []).append(st)
    grouped = {s.node for members in buckets.values() if len(members) >= min_group for s in members}

    if not grouped:
        steps = [s for s in sched.steps if type(s) is Step]
        return _pool(sched, Plan([StepItem(s, -1, _kernel(sched, s, floats)) if type(s) is Step
                                  else BlockItem(s, []) for s in sched.steps], **_finite_ids(shapes, steps)))

    # slots: every scalar a group reads or writes
    slot: dict[int, int] = {}
    for members in buckets.values():
        if len(members) >= min_group:
            for s in members:
                for u in (s.node, *s.args):
                    slot.setdefault(u, len(slot))
    # members whose λ also collects terms outside the groups (per-step or block consumers, seed)
    outside = {sched.output}
    for s in sched.step_of.values():
        if s.node not in grouped:
            outside.update(s.args)
    const = {i for i, _ in sched.constants}

    items: list[StepItem | Group | BlockItem] = []
    done = set()
    for lv, _seq, st in sorted(ranked, key=lambda r: (r[0], r[1])):
        if type(st) is not Step:
            items.append(BlockItem(st, [(slot[n], n) for n in st.nodes if n in slot]))
        elif st.node not in grouped:
            items.append(StepItem(st, slot.get(st.node, -1), _kernel(sched, st, floats)))
        else:
            k = (lv, st.prim.name, len(st.args))
            if k in done:
                continue
            done.add(k)
            items.append(_group(buckets[k], slot, const, outside))

    slot_ids = [0] * len(slot)
    for n, k in slot.items():
        slot_ids[k] = n
    is_input = set(sched.inputs)
    produced = set(sched.step_of)
    return _pool(sched, Plan(items, nslots=len(slot), slot_ids=slot_ids,
                             init=[(k, n) for n, k in slot.items() if n not in produced],
                             finals=[(k, n) for n, k in slot.items() if n in is_input],
                             grouped=len(grouped),
                             **_finite_ids(shapes, [it.step for it in items if it.__class__ is StepItem])))


def _group(members: list[Step], slot: dict[int, int], const: set[int], outside: set[int]) -> Group:
    """The :class:`Group` of one bucket's ``members`` (same op, same level, all scalars)."""
    st = members[0]
    nodes = [s.node for s in members]
    diff = []
    for pos in range(len(st.args)):
        ids = [s.args[pos] for s in members]
        sel = [m for m, u in enumerate(ids) if u not in const]
        if not sel:
            continue
        slots = np.array([slot[ids[m]] for m in sel], dtype=np.intp)
        diff.append((pos, None if len(sel) == len(ids) else np.array(sel, dtype=np.intp),
                     slots, len(np.unique(slots)) == len(slots)))
    return Group(prim=st.prim, nodes=nodes, out=np.array([slot[n] for n in nodes], dtype=np.intp),
                 args=[np.array([slot[s.args[p]] for s in members], dtype=np.intp) for p in range(len(st.args))],
                 diff=diff, mixed=[(m, n) for m, n in enumerate(nodes) if n in outside])
