"""Compile a Program once: validation, SCC condensation, topological order, index maps.

The result is plain Python data (lists of :class:`Step` and :class:`Block`, integer
node ids) that the forward, adjoint and tangent interpreters walk with no networkx
calls per solve. Data flows one way: build -> **compile** -> solve -> Solution.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.exp(x) + x, x=0.0)
>>> sched = prog.compile()
>>> [sched.names[s.node] for s in sched.steps]
['exp_0', 'out']
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp

from ..rules import registry as primitives
from ..errors import GraphError, ShapeError
from ..rules.shapes import placeholder, rule_shape
from ..graph.validate import MAX_ELEMENTS, REQUIRED, check_params, validate_graph

__all__ = ["Step", "Block", "Schedule", "compile_program", "Group", "Plan", "plan_of", "take", "keep"]


@dataclass(eq=False)
class Step:
    """One constraint ``c_d``: explicit ``z_d = prim(args)`` or residual ``prim(args) = 0``."""

    node: int
    prim: primitives.Primitive
    args: tuple[int, ...]
    params: dict
    residual: bool = False
    # (position, node id) of the arguments that carry derivatives (not constants,
    # not non-differentiable positions); the interpreters loop over these only.
    diff: tuple[tuple[int, int], ...] = ()


@dataclass(eq=False)
class Block:
    """A strongly connected set of constraints solved together (SPEC §1, cyclic programs)."""

    names: list[str]
    nodes: list[int]                 # members, in evaluation order for fixed-point sweeps
    steps: list[Step]                # the members' constraints, same order
    offsets: list[int]               # start of each member in the stacked vector z_S
    size: int                        # total number of scalar unknowns
    explicit: bool                   # True when every member is explicit
    shapes: list[tuple] = field(default_factory=list)  # member shapes
    sizes: list[int] = field(default_factory=list)     # member sizes
    position: dict[int, int] = field(default_factory=dict)  # node id -> index in nodes
    # what the block solvers keep between solves: a lagrangeprop.blocks.state.BlockCache, made on
    # first use (compile knows nothing of the solvers)
    cache: Any = None


@dataclass(eq=False)
class Schedule:
    """The compiled program."""

    names: list[str]
    index: dict[str, int]
    shapes: list[tuple]
    roles: list[str]
    inputs: list[int]
    constants: list[tuple[int, object]]
    steps: list  # Step | Block, topological order of the condensation
    output: int
    defined: list[int]               # every defined node, in schedule order
    residual: set[int]               # ids of residual-constraint nodes
    blocks: list[Block]
    step_of: dict[int, Step]         # defined node id -> its constraint

    @property
    def input_names(self) -> list[str]:
        return [self.names[i] for i in self.inputs]


def _arguments(pred: dict, node: str) -> list[str]:
    """The op's argument list of ``node`` from its in-edges' ``arg`` positions
    (``pred`` = ``G._pred[node]``, the plain dict ``{u: edge data}``)."""
    if len(pred) == 1:   # the common unary and binary cases first
        for u, data in pred.items():
            if data.get("arg") == 0 and type(data.get("arg")) is int:
                return [u]
    elif len(pred) == 2:
        (u, du), (v, dv) = pred.items()
        pu, pv = du.get("arg"), dv.get("arg")
        if type(pu) is int and type(pv) is int:
            if pu == 0 and pv == 1:
                return [u, v]
            if pu == 1 and pv == 0:
                return [v, u]
    slots: dict[int, str] = {}
    for u, data in pred.items():
        pos = data.get("arg")
        if pos is None:
            raise GraphError(f"edge {u!r} -> {node!r} has no 'arg' attribute (argument position)")
        for p in pos if isinstance(pos, (list, tuple)) else [pos]:
            if p in slots:
                raise GraphError(f"node {node!r}: argument position {p} is filled by both "
                                 f"{slots[p]!r} and {u!r}")
            slots[int(p)] = u
    if sorted(slots) != list(range(len(slots))):
        raise GraphError(f"node {node!r}: argument positions {sorted(slots)} have gaps; "
                         "each edge's 'arg' must give the argument's position 0..k-1")
    return [slots[i] for i in range(len(slots))]


def _validate_nodes(G: nx.DiGraph) -> str:
    out = G.graph.get("output")
    if out is None:
        raise GraphError("the program has no output; call prog.output(expr, name=...)")
    nodes, pred = G._node, G._pred
    if out not in nodes:
        raise GraphError(f"the output {out!r} is not a node of the program")
    for n, d in nodes.items():
        role = d.get("role")
        if role == "defined":
            if d.get("op") is None:
                raise GraphError(f"variable {n!r} is declared but never defined; call "
                                 f"prog.define({n}, expr) or prog.residual({n}, expr)")
            if d.get("constraint", "explicit") not in ("explicit", "residual"):
                raise GraphError(f"node {n!r} has constraint {d.get('constraint')!r}; "
                                 "expected 'explicit' or 'residual'")
        elif role == "input":
            if pred[n]:
                raise GraphError(f"input {n!r} has incoming edges {list(pred[n])}; "
                                 "inputs cannot be defined by constraints")
        elif role == "constant":
            if pred[n]:
                raise GraphError(f"constant {n!r} has incoming edges")
        else:
            raise GraphError(f"node {n!r} has role {role!r}; expected input, constant or defined")
    if nodes[out]["role"] != "defined":
        raise GraphError(f"the output {out!r} must be a defined variable; "
                         "use prog.output(expr) to define one")
    return out


def _components(G: nx.DiGraph, index: dict[str, int]) -> list[list[str]]:
    """Strongly connected components of ``G`` in a topological order of its condensation
    (networkx), deterministic: ties broken by graph order, members in graph order."""
    comps = [sorted(c, key=index.__getitem__) for c in nx.strongly_connected_components(G)]
    C = nx.condensation(G, scc=comps)
    first = {c: index[comps[c][0]] for c in C}
    return [comps[c] for c in nx.lexicographical_topological_sort(C, key=first.__getitem__)]


def _prim(G, n):
    try:
        return primitives.get(G._node[n]["op"])
    except GraphError as exc:
        raise GraphError(f"node {n!r}: {exc}") from None


def _plain(value) -> bool:
    """A constant whose shape alone decides an op's output shape (no sparse, no odd dtypes)."""
    return type(value) is np.ndarray and value.dtype.kind in "biuf"


def _sparse_product(n, prim, args, shapes, odd) -> tuple | None:
    """Shape of built-in ``matmul``/``dot`` of a constant scipy.sparse ``A`` (m, k) with
    ``b`` (k,) or (k, j): (m,) or (m, j), without evaluating ``A @ b`` (scipy would make
    ``b`` dense and contiguous); ``None`` when the op is not such a product."""
    if prim.user or prim.name not in ("matmul", "dot") or len(args) != 2 or args[1] in odd:
        return None
    (m, k), b = shapes[args[0]], shapes[args[1]]
    if len(b) not in (1, 2) or b[0] != k:
        raise ShapeError(f"node {n!r}: op {prim.name!r} of the sparse ({m}, {k}) matrix "
                         f"{args[0]!r} needs a vector ({k},) or matrix ({k}, j) operand, got "
                         f"{args[1]!r} of shape {b}")
    return (m,) + b[1:]


def _eval_shape(G, n, prim, args, shapes, odd=()):
    """Shape of node ``n``'s op on its arguments: a shape rule for built-in ops
    (:func:`~lagrangeprop.rules.shapes.rule_shape`), else abstract evaluation on dummies that
    cost O(1) memory (:func:`~lagrangeprop.rules.shapes.placeholder`: a declared (2000, 2000)
    input is never materialized). ``odd``: constants the rules must not see (sparse)."""
    nodes = G._node
    params = nodes[n].get("params") or {}
    if not odd or not any(a in odd for a in args):
        got = rule_shape(prim, [shapes[a] for a in args], params)
        if got is not None:
            return _bounded(n, prim, got) if got else got
    elif args and args[0] in odd and sp.issparse(nodes[args[0]]["value"]):
        got = _sparse_product(n, prim, args, shapes, odd)
        if got is not None:
            return _bounded(n, prim, got)
    dummies = []
    for a in args:
        d = nodes[a]
        dummies.append(d["value"] if d["role"] == "constant" else placeholder(shapes[a]))
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = prim.value(dummies, params)
    except Exception as exc:
        raise ShapeError(f"node {n!r}: op {prim.name!r} cannot combine its arguments "
                         f"{args} of shapes {[shapes[a] for a in args]}: {exc}") from None
    return _bounded(n, prim, tuple(np.shape(out)))


def _bounded(n, prim, shape: tuple) -> tuple:
    """``shape`` when it has at most :data:`~lagrangeprop.graph.validate.MAX_ELEMENTS` entries
    (what a declared shape may have); an op's result may not be larger either."""
    if math.prod(shape) > MAX_ELEMENTS:
        raise ShapeError(f"node {n!r}: op {prim.name!r} would make an array of shape {shape} "
                         f"({math.prod(shape)} entries; at most {MAX_ELEMENTS}); check its "
                         "arguments' shapes and parameters")
    return shape


def _infer_shapes(G, order, args_of, prims) -> dict[str, tuple]:
    """Shapes of all defined nodes; declared variables of unknown shape are inferred
    from their definitions (scalar when nothing determines them). Every definition
    is checked against its variable's shape."""
    nodes = G._node
    shapes = {}
    odd = set()
    for n, d in nodes.items():
        role = d["role"]
        if role == "constant":
            v = d["value"]
            shapes[n] = v.shape if type(v) is np.ndarray else tuple(np.shape(v))
            if not _plain(v):
                odd.add(n)
        else:
            s = d.get("shape")
            shapes[n] = () if s is None and role == "input" else s
    pending = [n for n in order if shapes[n] is None]
    checked = set()
    while pending:
        progress = True
        while progress:
            progress = False
            for n in pending:
                if all(shapes[a] is not None for a in args_of[n]):
                    shapes[n] = _eval_shape(G, n, prims[n], args_of[n], shapes, odd)
                    checked.add(n)
                    progress = True
            pending = [n for n in pending if shapes[n] is None]
        if pending:
            # nothing determines it (w in w**3 + w - x = 0): scalar, like an input
            shapes[pending[0]] = ()
    for n in order:
        if n in checked:   # computed by _eval_shape from its final argument shapes above
            continue
        if shapes[n] is None:
            raise ShapeError(f"cannot infer the shape of {n!r}; pass shape= to prog.variable")
        got = _eval_shape(G, n, prims[n], args_of[n], shapes, odd)
        if got != shapes[n]:
            kind = "residual" if nodes[n].get("constraint") == "residual" else "definition"
            raise ShapeError(f"variable {n!r} has shape {shapes[n]} but its {kind} "
                             f"(op {prims[n].name!r}) has shape {got}; make them agree")
    return shapes


def compile_program(prog) -> Schedule:
    """Validate ``prog`` and build its :class:`Schedule` (SCCs in topological order).

    One pass over plain dicts (``G._node``, ``G._pred``) checks the arguments and finds
    whether graph order is already topological; cyclic graphs are ordered by networkx's
    strongly connected components. Shapes come from the shape rules of
    :mod:`lagrangeprop.rules.shapes` (numpy evaluation for everything else)."""
    G: nx.DiGraph = prog.graph
    validate_graph(G, copy=False)   # the schema, again: the graph may have been edited by hand
    out = _validate_nodes(G)
    nodes, pred = G._node, G._pred
    names = list(nodes)
    index = {n: i for i, n in enumerate(names)}
    args_of: dict[str, list[str]] = {}

    # Every constraint is scheduled (∂L/∂λ = 0 for all of them: the forward pass satisfies
    # every constraint, and a constraint the output does not depend on gets λ = 0).
    # Fast path (traced programs): when every argument precedes its node in graph order the
    # graph is acyclic and graph order is a topological order; otherwise networkx's SCCs.
    acyclic = True
    for n, d in nodes.items():
        if d["role"] == "defined":
            a = args_of[n] = _arguments(pred[n], n)
            if acyclic:
                i = index[n]
                for u in a:
                    if index[u] >= i:
                        acyclic = False
                        break
    components = None if acyclic else _components(G, index)
    defined = list(args_of)   # the defined nodes, in graph order
    prims: dict[str, primitives.Primitive] = {}
    by_op: dict[str, primitives.Primitive] = {}
    for n in defined:
        op = nodes[n]["op"]
        prim = by_op.get(op) if isinstance(op, str) else None
        if prim is None:
            prim = _prim(G, n)
            if isinstance(op, str):
                by_op[op] = prim
        prims[n] = prim
        if prim.nargs is not None and prim.nargs != len(args_of[n]):
            raise GraphError(f"node {n!r}: op {prim.name!r} takes {prim.nargs} "
                             f"arguments, the graph gives {len(args_of[n])} ({args_of[n]})")
        params = nodes[n]["params"]
        if params or op in REQUIRED:
            check_params(n, prim, params)

    if components is None:
        order = defined
    else:
        for k, comp in enumerate(components):
            if len(comp) > 1:
                components[k] = sorted(comp, key=index.__getitem__)
        order = [n for comp in components for n in comp if nodes[n]["role"] == "defined"]
    shapes = _infer_shapes(G, order, args_of, prims)

    roles = [d["role"] for d in nodes.values()]
    const_ids = {i for i, r in enumerate(roles) if r == "constant"}

    def make_step(n: str) -> Step:
        prim = prims[n]
        a = tuple([index[u] for u in args_of[n]])
        if not prim.differentiable:
            diff = ()
        elif prim.nondiff:
            diff = tuple([(p, u) for p, u in enumerate(a) if u not in const_ids and p not in prim.nondiff])
        else:
            diff = tuple([(p, u) for p, u in enumerate(a) if u not in const_ids])
        d = nodes[n]
        d["shape"] = shapes[n]
        params = d.get("params")
        return Step(index[n], prim, a, dict(params) if params else {},
                    d.get("constraint") == "residual", diff)

    steps: list = []
    blocks: list[Block] = []
    step_of: dict[int, Step] = {}

    def add_block(comp: list[str], members: list[Step]) -> None:
        sizes = [int(np.prod(shapes[n], dtype=int)) for n in comp]
        offsets = list(np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int))
        block = Block(names=list(comp), nodes=[s.node for s in members], steps=members,
                      offsets=[int(o) for o in offsets], size=int(sum(sizes)),
                      explicit=not any(s.residual for s in members),
                      shapes=[shapes[n] for n in comp], sizes=[int(k) for k in sizes])
        block.position = {nid: k for k, nid in enumerate(block.nodes)}
        steps.append(block)
        blocks.append(block)

    if components is None:
        for n in order:
            s = step_of[index[n]] = make_step(n)
            if s.residual:   # a residual constraint is solved as a block of its own
                add_block([n], [s])
            else:
                steps.append(s)
    else:
        for comp in components:
            comp = [n for n in comp if nodes[n]["role"] == "defined"]
            if not comp:
                continue
            members = [make_step(n) for n in comp]
            for s in members:
                step_of[s.node] = s
            if len(comp) == 1 and not (members[0].residual or comp[0] in pred[comp[0]]):
                steps.append(members[0])
            else:
                add_block(comp, members)

    return Schedule(
        names=names, index=index, shapes=[shapes.get(n) or () for n in names], roles=roles,
        inputs=[i for i, r in enumerate(roles) if r == "input"],
        constants=[(i, nodes[names[i]]["value"]) for i in sorted(const_ids)],
        steps=steps, output=index[out],
        defined=[index[n] for n in order], residual={index[n] for n in order
                                                     if step_of[index[n]].residual},
        blocks=blocks, step_of=step_of)


# ------------------------------------------------------------------ the execution plan
# Scalar graphs vectorize: the constraints of one elementwise op whose arguments and
# output are all scalars, at the same topological level, are independent of each other,
# so one numpy call evaluates them all (forward value, local partials, and the adjoint's
# λ_u += (∂f_d/∂z_u) λ_d as a scatter-add). Their scalars live in a flat register array
# indexed by "slot"; everything else keeps the per-step path over the ``vals`` list.

STEP, GROUP, BLOCK = 0, 1, 2
MIN_GROUP = 8  # below this a batched call costs more than the per-step calls it replaces
SMALL = 1 << 12  # outputs up to this size are checked for finiteness together (one copy, one test)
POOL_MIN = 1 << 14  # arrays of at least this many entries may reuse an earlier solve's buffer

# ------------------------------------------------------------------ buffer reuse
# Large arrays cost most in fresh memory pages (the allocator returns freed memory to the OS
# between solves, and every page is faulted in again). A plan keeps the buffers of its large
# per-step results (values and matmul cotangents), two per entry, and a later solve writes
# into one (``out=``, the same numpy call, so the same numbers) only when nothing outside the
# pool refers to it: CPython's reference count proves that no Solution, view, grad dict or
# user variable can see the buffer change. Elsewhere (other interpreters, free threading,
# Python >= 3.14 with borrowed stack references) buffers are never reused.
_REUSE = (sys.implementation.name == "cpython" and sys.version_info < (3, 14)
          and getattr(sys, "_is_gil_enabled", lambda: True)())
_refs = sys.getrefcount


def take(bufs: list, k: int):
    """A buffer of pool entry ``k`` that only the pool refers to, or ``None``."""
    b = bufs[2 * k]
    if b is not None and _refs(b) == 3:   # the pool's list, the local ``b``, the argument
        return b
    b = bufs[2 * k + 1]
    if b is not None and _refs(b) == 3:
        return b
    return None


def keep(bufs: list, k: int, out) -> None:
    """Remember a freshly allocated result as entry ``k``'s newest buffer (the older goes)."""
    if _REUSE and out.__class__ is np.ndarray:
        bufs[2 * k + 1] = bufs[2 * k]
        bufs[2 * k] = out


@dataclass(eq=False)
class Group:
    """Same-op scalar constraints at one level, evaluated as one vector op."""

    prim: primitives.Primitive
    nodes: list[int]                 # member node ids
    out: np.ndarray                  # their slots
    args: list[np.ndarray]           # slots of argument ``pos`` for every member
    # (pos, members with a differentiable argument there or None = all, their slots, unique?)
    diff: list[tuple[int, np.ndarray | None, np.ndarray, bool]]
    mixed: list[tuple[int, int]]     # (k, node): members whose λ also collects per-step terms


@dataclass(eq=False)
class Plan:
    """Plan items ``(STEP, step, slot, fast)``, ``(GROUP, group, None, None)``, ``(BLOCK,
    block, [(slot, id)], None)`` in a topological order; ``slot`` (-1 = none) mirrors a
    per-step scalar that groups read; ``fast`` (or ``None``): an elementwise op whose
    arguments are all float64, evaluated with its bare numpy function and partials
    (``prim.raw_fn``), precomputed as ``(fn, args, adjoint)`` with ``adjoint`` a tuple of
    ``(u, partial, constant, reduce, a)`` per differentiable argument ``u``: ``constant`` is
    the partial's value when it is a constant ±1 (cotangent ``±g``, no multiply), else
    ``None``; ``reduce`` is ``(leading axes, kept axes)`` to sum the cotangent over when
    broadcasting made the output larger than the argument, else ``None``; ``a`` is the node
    whose value the partial is (``partial.arg``, e.g. ``y`` for ``x`` in ``x * y``), else -1.
    Three more entries: the buffer pool entry of the value (-1: none; a ufunc with a large
    output); for a dense 2-D ``matmul`` (then ``adjoint`` is ``None`` and ``fn`` is
    ``np.matmul``) ``((pos, u, pool entry or -1), ...)`` for its cotangents, else ``None``;
    and the adjoint's inline form of a scalar step (:func:`_scalar_form`) or ``None``."""

    items: list
    nbufs: int = 0                                           # buffer pool entries (take/keep)
    bufs: list = field(default_factory=list)                 # 2 per entry, None = empty
    nslots: int = 0
    slot_ids: list[int] = field(default_factory=list)      # node id of every slot
    init: list[tuple[int, int]] = field(default_factory=list)    # (slot, id) inputs, constants
    finals: list[tuple[int, int]] = field(default_factory=list)  # (slot, id) inputs: λ at the end
    scalar_ids: list[int] = field(default_factory=list)    # per-step scalar outputs (finite check)
    array_ids: list[int] = field(default_factory=list)     # per-step large array outputs
    small_ids: list[int] = field(default_factory=list)     # per-step arrays of <= SMALL entries
    grouped: int = 0                                         # nodes evaluated in groups


def plan_of(sched: Schedule, min_group: int | None = None) -> Plan:
    """The (cached) execution plan of ``sched`` for the forward and adjoint interpreters.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> prog = lp.trace(lambda x: sum(lp.sin(x * k) for k in range(1, 11)), x=0.1)
    >>> plan_of(prog.compile()).grouped     # 10 multiplies, then 10 sines, in two calls
    20
    """
    key = "_plan" if min_group is None else f"_plan{min_group}"
    plan = sched.__dict__.get(key)
    if plan is None:
        from ..graph.trace import paused_gc     # building allocates ~10 tuples per step: no gen-2 sweeps of the graph
        with paused_gc():
            plan = sched.__dict__[key] = _build_plan(sched, MIN_GROUP if min_group is None else min_group)
    return plan


def _groupable(sched: Schedule, s: Step) -> bool:
    prim = s.prim
    return (getattr(prim, "elementwise", False) and not prim.user and not s.residual
            and not s.params and not prim.nondiff and prim.differentiable
            and sched.shapes[s.node] == () and all(sched.shapes[a] == () for a in s.args))


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


def _fast(sched: Schedule, s: Step, floats: set[int]) -> tuple | None:
    prim = s.prim
    if (prim.name == "matmul" and not prim.user and prim is primitives.REGISTRY.get("matmul")
            and not s.params and len(s.args) == 2 and all(_dense(sched, a, floats) for a in s.args)
            and len(sched.shapes[s.node]) == 2):
        # both operands float64 matrices (no scipy.sparse constant): np.matmul itself, as the rule
        return np.matmul, tuple(s.args), None, -1, tuple((pos, u, -1) for pos, u in s.diff)
    if not (getattr(prim, "raw_fn", None) is not None and not prim.user and not prim.nondiff
            and not s.params and floats.issuperset(s.args)):
        return None
    shape = sched.shapes[s.node]
    adjoint = []
    for pos, u in s.diff:
        d = prim.raw_partials[pos]
        if d is not None:
            c, k = getattr(d, "constant", None), getattr(d, "arg", None)
            adjoint.append((u, d, c if c in (1.0, -1.0) else None, _reduction(shape, sched.shapes[u]),
                            -1 if k is None else s.args[k]))
    return prim.raw_fn, tuple(s.args), tuple(adjoint), -1, None


def _scalar_form(sched: Schedule, fast: tuple) -> tuple | None:
    """The adjoint's inline form of a scalar step with one differentiable argument ``u``:
    ``(u, partial, x, -1)`` (cotangent ``g * partial(ans, z_x)``, a unary op), ``(u, None, a, -1)``
    (``g * z_a``) or ``(u, None, -1, ±1)`` (``±g``); ``None`` for everything else."""
    adj = fast[2]
    if adj is None or len(adj) != 1:
        return None
    u, d, c, red, a = adj[0]
    shapes = sched.shapes
    if red is not None or shapes[u] != ():
        return None
    for k in fast[1]:
        if shapes[k] != ():
            return None
    if c is not None:
        return u, None, -1, c
    if a >= 0:
        return u, None, a, 0.0
    if len(fast[1]) == 1:
        return u, d, fast[1][0], 0.0
    return None


def _size_of(shape: tuple) -> int:
    return math.prod(shape)      # plain ints: np.prod costs microseconds per call (10⁵ steps)


def _pool(sched: Schedule, plan: Plan) -> Plan:
    """Give large per-step results of ufunc and matmul steps a buffer pool entry."""
    n = 0
    for k, (kind, st, extra, fast) in enumerate(plan.items):
        if kind is not STEP or fast is None:
            continue
        slot = -1
        if isinstance(fast[0], np.ufunc) and fast[0].nout == 1:   # np.matmul is a ufunc too
            if _size_of(sched.shapes[st.node]) >= POOL_MIN:
                slot, n = n, n + 1
        adj = fast[4]
        if adj is not None:
            new = []
            for pos, u, _ in adj:
                if _size_of(sched.shapes[u]) >= POOL_MIN:
                    new.append((pos, u, n))
                    n += 1
                else:
                    new.append((pos, u, -1))
            adj = tuple(new)
        plan.items[k] = (kind, st, extra, (fast[0], fast[1], fast[2], slot, adj, _scalar_form(sched, fast)))
    plan.nbufs, plan.bufs = n, [None] * (2 * n)
    return plan


def _reduction(out: tuple, arg: tuple) -> tuple | None:
    """``(leading axes, kept axes)`` that :func:`~lagrangeprop.rules.registry.unbroadcast` sums
    to bring a cotangent of shape ``out`` back to ``arg`` (``None``: the shapes agree)."""
    if out == arg:
        return None
    extra = len(out) - len(arg)
    rest = out[extra:]
    return tuple(range(extra)), tuple(k for k, n in enumerate(arg) if n == 1 and rest[k] != 1)


def _build_plan(sched: Schedule, min_group: int) -> Plan:
    shapes = sched.shapes
    floats = _float_nodes(sched)
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

    buckets: dict[tuple, list[Step]] = {}
    for lv, _, st in ranked:
        if type(st) is Step and _groupable(sched, st):
            buckets.setdefault((lv, st.prim.name, len(st.args)), []).append(st)
    grouped = {s.node for members in buckets.values() if len(members) >= min_group for s in members}

    def finite_ids(steps):
        size = {s.node: math.prod(shapes[s.node]) for s in steps if shapes[s.node] != ()}
        return dict(scalar_ids=[s.node for s in steps if shapes[s.node] == ()],
                    array_ids=[i for i, n in size.items() if n > SMALL],
                    small_ids=[i for i, n in size.items() if n <= SMALL])

    if not grouped:
        steps = [s for s in sched.steps if type(s) is Step]
        return _pool(sched, Plan([(STEP, s, -1, _fast(sched, s, floats)) if type(s) is Step
                                  else (BLOCK, s, [], None) for s in sched.steps], **finite_ids(steps)))

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

    items, done = [], set()
    for lv, _seq, st in sorted(ranked, key=lambda r: (r[0], r[1])):
        if type(st) is not Step:
            items.append((BLOCK, st, [(slot[n], n) for n in st.nodes if n in slot], None))
        elif st.node not in grouped:
            items.append((STEP, st, slot.get(st.node, -1), _fast(sched, st, floats)))
        else:
            k = (lv, st.prim.name, len(st.args))
            if k in done:
                continue
            done.add(k)
            members = buckets[k]
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
            items.append((GROUP, Group(
                prim=st.prim, nodes=nodes, out=np.array([slot[n] for n in nodes], dtype=np.intp),
                args=[np.array([slot[s.args[p]] for s in members], dtype=np.intp) for p in range(len(st.args))],
                diff=diff, mixed=[(m, n) for m, n in enumerate(nodes) if n in outside]), None, None))

    slot_ids = [0] * len(slot)
    for n, k in slot.items():
        slot_ids[k] = n
    is_input = set(sched.inputs)
    produced = set(sched.step_of)
    return _pool(sched, Plan(items, nslots=len(slot), slot_ids=slot_ids,
                             init=[(k, n) for n, k in slot.items() if n not in produced],
                             finals=[(k, n) for n, k in slot.items() if n in is_input],
                             grouped=len(grouped), **finite_ids([it[1] for it in items if it[0] == STEP])))
