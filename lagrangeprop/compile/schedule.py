"""The compiler: a Program's graph -> its :class:`Schedule` (SPEC §1, cyclic programs).

Validation (the graph's schema, roles, argument positions, op arity and parameters), the
condensation into strongly connected components (networkx), their topological order, and the
shapes (:mod:`~lagrangeprop.compile.infer`). The result is plain Python data (lists of
:class:`Step` and :class:`Block`, integer node ids) that the interpreters walk with no
networkx calls per solve. Data flows one way: build -> **compile** -> solve -> Solution.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.exp(x) + x, x=0.0)
>>> sched = prog.compile()
>>> [sched.names[s.node] for s in sched.steps]
['exp_0', 'out']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from ..rules import registry
from ..errors import GraphError
from ..graph.validate import REQUIRED, check_params, validate_graph
from .infer import infer_shapes, known_shapes

__all__ = ["Step", "Block", "Schedule", "compile_program", "is_block", "cyclic_blocks", "live_nodes"]


@dataclass(eq=False, slots=True)
class Step:
    """One constraint ``c_d``: explicit ``z_d = prim(args)`` or residual ``prim(args) = 0``."""

    node: int
    prim: registry.Primitive
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
    """The compiled program.

    The fields after ``step_of`` are caches filled on first use by the interpreters, never by
    hand: ``plan`` is the execution plan (a :class:`~lagrangeprop.compile.plan.Plan`, from
    :func:`~lagrangeprop.compile.plan.plan_of`), ``base_values`` the value slots with the
    constants filled in (:func:`~lagrangeprop.solve.forward.initial_values` copies it),
    ``input_spec`` ``{input name: (node id, shape)}``, ``block_nodes`` the nodes of the cyclic
    blocks, ``whole`` every constraint as one pseudo-block (for ``A = ∂c/∂z`` at any point), and
    ``generated`` the compiled path's functions (:func:`lagrangeprop.solve.compiled.generated`).
    """

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
    plan: Any = field(default=None, repr=False)              # compile.plan.Plan | None
    base_values: list | None = field(default=None, repr=False)
    input_spec: dict | None = field(default=None, repr=False)
    block_nodes: frozenset | None = field(default=None, repr=False)
    whole: Block | None = field(default=None, repr=False)
    generated: Any = field(default=None, repr=False)         # compile.source.Compiled | None
    live: frozenset | None = field(default=None, repr=False)  # see live_nodes

    @property
    def input_names(self) -> list[str]:
        return [self.names[i] for i in self.inputs]


def live_nodes(sched: Schedule) -> frozenset:
    """The nodes the output depends on: the output and its ancestors (cached on ``sched``).

    A node outside this set has ``λ_d = 0`` and its tangent never reaches ``ż_o``, so a pass
    that returns only the output's derivatives need not compute or check it (a dead
    ``sqrt(0)`` has an infinite tangent that no derivative of the output sees).
    """
    if sched.live is None:
        args: dict[int, tuple] = {}
        for item in sched.steps:
            for s in (item,) if type(item) is Step else item.steps:
                args[s.node] = s.args
        seen, stack = {sched.output}, [sched.output]
        while stack:
            for u in args.get(stack.pop(), ()):
                if u not in seen:
                    seen.add(u)
                    stack.append(u)
        sched.live = frozenset(seen)
    return sched.live


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


# SPEC §1: a strongly connected component S is a block (solved together) when it has more
# than one node, a self-loop, or a residual constraint; the rule the drawings use too.
def is_block(G: nx.DiGraph, comp: list[str]) -> bool:
    """Whether the strongly connected component ``comp`` of ``G`` is a cyclic block."""
    n = comp[0]
    return len(comp) > 1 or G.has_edge(n, n) or G.nodes[n].get("constraint") == "residual"


def cyclic_blocks(G: nx.DiGraph) -> list[list[str]]:
    """The cyclic blocks of ``G`` in schedule order, members in graph order (no validation).

    Examples
    --------
    >>> import networkx as nx
    >>> cyclic_blocks(nx.DiGraph([("x", "a"), ("a", "b"), ("b", "a"), ("b", "o")]))
    [['a', 'b']]
    """
    return [c for c in _components(G, {n: i for i, n in enumerate(G)}) if is_block(G, c)]


def _prim(G, n):
    try:
        return registry.get(G._node[n]["op"])
    except GraphError as exc:
        raise GraphError(f"node {n!r}: {exc}") from None

def compile_program(prog, traced: bool = False) -> Schedule:
    """Validate ``prog`` and build its :class:`Schedule` (SCCs in topological order).

    One pass over plain dicts (``G._node``, ``G._pred``) checks the arguments and finds
    whether graph order is already topological; cyclic graphs are ordered by networkx's
    strongly connected components. Shapes come from the shape rules of
    :mod:`lagrangeprop.rules.shapes` (numpy evaluation for everything else).

    ``traced``: the graph is as ``lp.trace`` recorded it (no edit since, the same ops
    registered): its schema holds by construction and its shapes were checked as each node was
    recorded, so neither is checked again (:func:`~lagrangeprop.compile.infer.known_shapes`)."""
    G: nx.DiGraph = prog.graph
    if not traced:
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
    prims: dict[str, registry.Primitive] = {}
    by_op: dict[str, registry.Primitive] = {}
    for i, (n, d) in enumerate(nodes.items()):
        if d["role"] != "defined":
            continue
        a = args_of[n] = _arguments(pred[n], n)
        if acyclic:
            for u in a:
                if index[u] >= i:
                    acyclic = False
                    break
        op = d["op"]
        prim = by_op.get(op) if op.__class__ is str else None
        if prim is None:
            prim = _prim(G, n)
            if isinstance(op, str):
                by_op[op] = prim
        prims[n] = prim
        if prim.nargs is not None and prim.nargs != len(a):
            raise GraphError(f"node {n!r}: op {prim.name!r} takes {prim.nargs} "
                             f"arguments, the graph gives {len(a)} ({a})")
        params = d["params"]
        if params or op in REQUIRED:
            check_params(n, prim, params)
    components = None if acyclic else _components(G, index)
    defined = list(args_of)   # the defined nodes, in graph order

    if components is None:
        order = defined
    else:
        for k, comp in enumerate(components):
            if len(comp) > 1:
                components[k] = sorted(comp, key=index.__getitem__)
        order = [n for comp in components for n in comp if nodes[n]["role"] == "defined"]
    shapes = (known_shapes(G) if traced else None) or infer_shapes(G, order, args_of, prims)

    roles = [d["role"] for d in nodes.values()]
    const_ids = {i for i, r in enumerate(roles) if r == "constant"}
    # the per-op part of a step, once per op: (differentiable, non-differentiable positions)
    kinds = {id(p): (p.differentiable, p.nondiff) for p in {id(p): p for p in prims.values()}.values()}

    def make_step(n: str) -> Step:
        prim = prims[n]
        a = tuple([index[u] for u in args_of[n]])
        differentiable, nondiff = kinds[id(prim)]
        if not differentiable:
            diff = ()
        elif nondiff:
            diff = tuple([(p, u) for p, u in enumerate(a) if u not in const_ids and p not in nondiff])
        elif len(a) == 1:
            diff = () if a[0] in const_ids else ((0, a[0]),)
        else:
            diff = tuple([(p, u) for p, u in enumerate(a) if u not in const_ids])
        d = nodes[n]
        shape = shapes[n]
        if d.get("shape") != shape:   # (a tracked dict counts every write as an edit)
            d["shape"] = shape
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
            if not is_block(G, comp):
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

