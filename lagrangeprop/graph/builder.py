"""The program graph builder: a set of equality constraints held as a ``networkx.DiGraph``.

:class:`ProgramBuilder` records inputs, constants, declared and defined variables,
residual constraints and the output into its graph; it knows nothing of compiling or
solving (the public :class:`lagrangeprop.Program` adds those on top of it). Node key =
variable name. Node attributes (SPEC §2): ``role`` ∈ {input, constant, defined},
``shape``, ``op``, ``constraint`` ∈ {explicit, residual}, ``params``, ``value``
(constants). Edge ``u -> d`` has ``arg`` = position(s) of ``u`` among the arguments of
``d``'s op. Graph attribute ``output`` names the output node.

Examples
--------
>>> from lagrangeprop.graph.builder import ProgramBuilder
>>> prog = ProgramBuilder(name="demo")
>>> x = prog.input("x")
>>> y = prog.variable("y")
>>> _ = prog.define(y, 0.5 * y + x)      # a cycle: y = 0.5 y + x
>>> out = prog.output(y ** 2, name="obj")
>>> prog.graph.nodes["y"]["op"], sorted(prog.graph.predecessors("y"))
('add', ['x', 'y.multiply'])
>>> prog.graph.graph["output"]
'obj'
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp

from ..errors import GraphError, ShapeError
from ..rules import registry
from ..rules.shapes import broadcast_rule, placeholder, rule_shape
from .coerce import constant_array, plain_constant, shape_tuple
from .serialize import program_from_json, program_to_json
from .tracked import Attrs, TrackedDiGraph, attrs as _attrs, clear_nx_cache, tracked_copy
from .validate import validate_graph
from .pack import as_traced, holds_traced
from .naming import name_from_caller, relabel_many
from .var import Var, _Node

__all__ = ["ProgramBuilder", "RESERVED"]

# solve() option names; they cannot name inputs.
RESERVED = frozenset({"guess", "seed", "tol", "maxiter", "method", "linear_solver", "options"})


class ProgramBuilder:
    """A program as equality constraints over named variables (cycles allowed), being built.

    Build it with :meth:`input`, :meth:`variable`, :meth:`define`, :meth:`residual` and
    :meth:`output` (or record a function with :func:`lagrangeprop.graph.trace.record`).
    :class:`lagrangeprop.Program` adds ``solve``, ``evaluate``, ``compile`` and the rest.
    """

    def __init__(self, name: str = "program"):
        self.name = name
        self.graph = TrackedDiGraph(name=name, output=None)
        self._stamp: tuple | None = None   # (graph, token, edits or fingerprint) at compile
        self._ops_version = -1             # registry.VERSION the schedule's ops were checked at
        self._handles: dict[str, _Node] = {}
        self._auto: set[str] = set()
        self._counter = itertools.count()
        self._schedule = None
        self._eager_shapes = False
        self._probe = None   # set by trace: finds the traced function's frame (local names)
        self._sources: dict[int, Any] = {}   # id(captured ndarray) -> its constant's copy

    # ------------------------------------------------------------------ naming
    def _var(self, name: str) -> Var:
        return Var(self, self._handles[name])

    def _fresh(self, stem: str) -> str:
        taken = self.graph._node
        while True:
            name = f"{stem}_{next(self._counter)}"
            if name not in taken:
                return name

    def _claim(self, name: str) -> None:
        """Make ``name`` available: an auto-named node holding it is renamed."""
        if not isinstance(name, str) or not name:
            raise GraphError(f"variable names must be non-empty strings, got {name!r}")
        if name in self.graph:
            if name in self._auto:
                self._relabel(name, self._fresh(self.graph.nodes[name].get("op") or "t"))
            else:
                raise GraphError(f"duplicate node {name!r}: the program {self.name!r} already "
                                 "has a variable of that name; choose another name")

    def _relabel(self, old: str, new: str) -> None:
        self._relabel_many({old: new}, keep_order=False)

    def _relabel_many(self, mapping: dict[str, str], keep_order: bool = True) -> None:
        """Rename nodes in place, keeping their place in graph order or not (naming.relabel_many)."""
        relabel_many(self.graph, mapping, keep_order)
        for old, new in mapping.items():
            handle = self._handles[new] = self._handles.pop(old)
            handle.name = new
            if old in self._auto:
                self._auto.discard(old)
                self._auto.add(new)
            if self.graph.graph.get("output") == old:
                self.graph.graph["output"] = new

    def _rename_auto_many(self, wanted: dict[str, str], keep_order: bool = True) -> dict[str, str]:
        """Give auto-named defined nodes user-facing names in one pass (trace); the renames made."""
        done: dict[str, str] = {}
        for old, new in wanted.items():
            if old in self._auto and new not in self.graph and new not in RESERVED and new not in done.values():
                done[old] = new
        self._relabel_many(done, keep_order)
        self._auto.difference_update(done.values())
        return done

    def _add(self, name: str | None, stem: str, **attrs) -> Var:
        self._schedule = None
        if name is None:
            name = self._fresh(stem)
            self._auto.add(name)
        else:
            self._claim(name)
        self._new_node(name, attrs)
        handle = self._handles[name] = _Node(name)
        return Var(self, handle)

    def _new_node(self, name: str, attrs: dict) -> None:
        """Add node ``name`` (not yet in the graph) with attribute dict ``attrs``."""
        G = self.graph
        if type(G) is TrackedDiGraph:   # what add_node does, minus its checks
            G._succ[name] = {}
            G._pred[name] = {}
            d = G._node[name] = Attrs(attrs)
            d._edits = G._edits
            clear_nx_cache(G)
        else:
            G.add_node(name, **attrs)

    # ---------------------------------------------------------------- building
    def input(self, name: str, shape: tuple = ()) -> Var:
        """Declare an input ``x`` (given by the caller of :meth:`solve`)."""
        if name in RESERVED:
            raise GraphError(f"input name {name!r} is reserved for a solve() option; "
                             f"rename the input (reserved: {sorted(RESERVED)})")
        return self._add(name, "x", role="input", shape=shape_tuple(shape, name))

    def constant(self, value: Any, name: str | None = None) -> Var:
        """Add a constant node (never differentiated)."""
        if isinstance(value, Var):
            raise GraphError(f"constant() got the traced variable {value.name!r}")
        kind = type(value)
        if kind is float:   # the common case while tracing: skip asarray + astype
            value = np.array(value)
        elif kind is int:
            value = np.array(value, dtype=np.float64)
        elif sp.issparse(value):
            if value.dtype.kind not in "biuf":
                raise GraphError(f"a sparse constant of dtype {value.dtype} is not real; numpy would keep "
                                 "only the real part: carry real and imaginary parts as two real matrices")
            value = sp.csr_matrix(value, dtype=np.float64, copy=True)
        else:   # complex, text, None, dates, ragged lists: GraphError (coerce.constant_array)
            # a copy: the program owns its constants (editing the captured array later
            # changes nothing in it; lp.grad's guards notice the edit and re-trace)
            source = value
            value = np.array(constant_array(value, "a constant" if name is None else f"constant {name!r}"))
            if kind is np.ndarray:
                self._sources[id(source)] = value
        return self._add(name, "const", role="constant", shape=tuple(value.shape), value=value)

    def variable(self, name: str, shape: tuple | None = None) -> Var:
        """Declare a defined variable, to be given a constraint later with
        :meth:`define` or :meth:`residual`. ``shape=None`` infers it."""
        return self._add(name, "v", role="defined",
                         shape=None if shape is None else shape_tuple(shape, name))

    # z_d = f_d(z_pa(d)) with edges u -> d, arg = position of u among f_d's arguments
    def _apply(self, prim: registry.Primitive, args: Any, params: dict) -> Var:
        """Record ``prim(*args, **params)`` as a new auto-named defined node."""
        if self._probe is not None:
            self._probe()
        names = [a._handle.name if isinstance(a, Var) else
                 (as_traced(a) if holds_traced(a) else self.constant(a))._handle.name for a in args]
        shape = self._infer_shape(prim, names, params, node=None)
        self._schedule = None
        name = self._fresh(prim.name)
        self._auto.add(name)
        G = self.graph
        if type(G) is TrackedDiGraph and (len(names) == 1 or len(names) == 2 and names[0] != names[1]):
            # what add_node and add_edge would store (one tracked data dict per edge)
            E = G._edits
            p = _attrs(E, params)
            d = Attrs(role="defined", op=prim.name, constraint="explicit", params=p, shape=shape)
            d._edits = E
            G._succ[name] = {}
            into = G._pred[name] = {}
            G._node[name] = d
            clear_nx_cache(G)
            for i, a in enumerate(names):
                e = G._succ[a][name] = into[a] = Attrs(arg=i)
                e._edits = E
            handle = self._handles[name] = _Node(name)
        else:
            if type(G) is TrackedDiGraph:
                params = _attrs(G._edits, params)
            self._new_node(name, {"role": "defined", "op": prim.name, "constraint": "explicit",
                                  "params": params, "shape": shape})
            handle = self._handles[name] = _Node(name)
            self._connect(name, names)
        return Var(self, handle)

    def _connect(self, node: str, arg_names: list[str]) -> None:
        G = self.graph
        if len(arg_names) == 1 or (len(arg_names) == 2 and arg_names[0] != arg_names[1]):
            for i, a in enumerate(arg_names):
                G.add_edge(a, node, arg=i)
            return
        positions: dict[str, list[int]] = {}
        for i, a in enumerate(arg_names):
            positions.setdefault(a, []).append(i)
        for a, pos in positions.items():
            self.graph.add_edge(a, node, arg=pos[0] if len(pos) == 1 else sorted(pos))

    def _infer_shape(self, prim, arg_names, params, node):
        """Shape of ``prim`` applied to the named args: by a shape rule for built-in ops
        (:func:`~lagrangeprop.rules.shapes.rule_shape`), else by abstract evaluation on dummies."""
        nodes = self.graph._node
        shapes = []
        plain = True
        for a in arg_names:
            d = nodes[a]
            s = d.get("shape")
            if s is None:
                return None
            if plain and d["role"] == "constant":
                plain = plain_constant(d["value"])
            shapes.append(s)
        if plain and shapes and prim.shape_rule is broadcast_rule and not (params or prim.user or any(shapes)) \
                and prim.nargs in (None, len(shapes)):
            return ()   # scalars through an elementwise op: what rule_shape gives, without the calls
        out = rule_shape(prim, shapes, params) if plain else None
        if out is not None:
            return out
        dummies = [nodes[a]["value"] if nodes[a]["role"] == "constant" else placeholder(s)
                   for a, s in zip(arg_names, shapes)]
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = prim.value(dummies, params)
            return tuple(np.shape(out))
        except Exception as exc:  # numpy's own message says what is wrong
            msg = (f"op {prim.name!r} cannot combine operands {arg_names} of shapes {shapes}"
                   f"{'' if node is None else f' (node {node!r})'}: {exc}")
            if self._eager_shapes or node is not None:
                raise ShapeError(msg) from None
            return None  # explicit building: reported with the node's name when compiled

    def _own(self, v: Any, what: str) -> Var:
        if not isinstance(v, Var) or v.program is not self:
            raise GraphError(f"{what} must be a variable of program {self.name!r} "
                             f"(from prog.variable), got {v!r}")
        return v

    def _absorb(self, target: Var, e: Var, constraint: str) -> None:
        """Move the op and arguments of the unnamed root ``e`` onto ``target``."""
        G = self.graph
        attrs = G.nodes[e.name]
        G.nodes[target.name].update(op=attrs["op"], params=attrs.get("params", {}),
                                    constraint=constraint)
        if G.nodes[target.name].get("shape") is None:
            G.nodes[target.name]["shape"] = attrs.get("shape")
        for u, _, data in list(G.in_edges(e.name, data=True)):
            _merge_edge(G, u, target.name, data["arg"])
        for _, w, data in list(G.out_edges(e.name, data=True)):
            _merge_edge(G, target.name, w, data["arg"])
        G.remove_node(e.name)
        self._auto.discard(e.name)
        old = self._handles.pop(e.name)
        old.name = target.name

    def _can_absorb(self, target: Var, e: Any) -> bool:
        return isinstance(e, Var) and e.program is self and e.name in self._auto and e.name != target.name \
            and self.graph.nodes[e.name].get("op") is not None

    # explicit constraint (SPEC §1): c_d = z_d - f_d(z_pa(d)); the root op of e becomes f_d
    # (an unnamed root is renamed d), else d = identity(e)
    def define(self, v: Var, e: Any) -> Var:
        """Give ``v`` the explicit constraint ``v = e`` (``c_v = z_v - f_v``)."""
        self._own(v, "define()'s first argument")
        self._check_undefined(v)
        self._schedule = None
        if self._can_absorb(v, e):
            self._absorb(v, e, "explicit")
        else:
            arg = e if isinstance(e, Var) else self.constant(e)
            self._own(arg, "define()'s expression")
            G = self.graph
            G.nodes[v.name].update(op="identity", params=self._params(), constraint="explicit")
            if G.nodes[v.name].get("shape") is None:
                G.nodes[v.name]["shape"] = G.nodes[arg.name].get("shape")
            self._connect(v.name, [arg.name])
        name_from_caller(self, v.name)
        return v

    # implicit constraint (SPEC §1): c_d = r_d(z_pa(d), z_d); z_d enters r directly or through
    # intermediates, so d is always in a cyclic block
    def residual(self, v: Var, r: Any) -> Var:
        """Give ``v`` the implicit constraint ``r(..., v) = 0`` (``c_v = r_v``)."""
        self._own(v, "residual()'s first argument")
        self._check_undefined(v)
        self._schedule = None
        if self._can_absorb(v, r) and self.graph.out_degree(r.name) == 0:
            self._absorb(v, r, "residual")
        else:
            arg = r if isinstance(r, Var) else self.constant(r)
            G = self.graph
            G.nodes[v.name].update(op="identity", params=self._params(), constraint="residual")
            if G.nodes[v.name].get("shape") is None:
                G.nodes[v.name]["shape"] = G.nodes[arg.name].get("shape")
            self._connect(v.name, [arg.name])
        name_from_caller(self, v.name)
        return v

    def _params(self) -> dict:
        """An empty ``params`` dict (tracked on a TrackedDiGraph)."""
        G = self.graph
        return _attrs(G._edits) if type(G) is TrackedDiGraph else {}

    def _check_undefined(self, v: Var) -> None:
        d = self.graph.nodes[v.name]
        if d["role"] != "defined":
            raise GraphError(f"{v.name!r} is {'an' if d['role'] == 'input' else 'a'} "
                             f"{d['role']}; only variables from prog.variable() can be defined")
        if d.get("op") is not None:
            raise GraphError(f"variable {v.name!r} is already defined (op {d['op']!r}); "
                             "each variable has exactly one constraint")

    def output(self, e: Any, name: str | None = None) -> Var:
        """Declare the output ``z_o``; an unnamed root expression is renamed ``name``.

        A program has one output (SPEC §1): declaring a second one raises :class:`GraphError`
        (to move it, set ``prog.graph.graph["output"]`` to another defined node)."""
        current = self.graph.graph.get("output")
        if current is not None and current in self.graph:
            raise GraphError(f"program {self.name!r} already has the output {current!r}; a program has "
                             f"one output: return a sum or a stack of the values, or set "
                             f"prog.graph.graph['output'] to move it")
        self._schedule = None
        if not isinstance(e, Var):
            e = self.constant(e)
        self._own(e, "output()")
        role = self.graph.nodes[e.name]["role"]
        if e.name in self._auto and role == "defined":
            new = name or "output"
            if new != e.name:
                self._claim(new)
                self._relabel(e.name, new)
            self._auto.discard(new)
            out = e
        elif role == "defined" and (name is None or name == e.name):
            out = e
        else:
            out = self.variable(name or "output")
            self.define(out, e)
        self.graph.graph["output"] = out.name
        name_from_caller(self, out.name)
        return out

    # ---------------------------------------------------------- serialisation
    @classmethod
    def from_graph(cls, G: nx.DiGraph, name: str | None = None) -> ProgramBuilder:
        """Wrap a graph built directly with networkx: a validated, normalized copy of it
        (:func:`~lagrangeprop.graph.validate.validate_graph`); ops resolve when compiled."""
        G = validate_graph(G)
        prog = cls(name=name or G.graph.get("name") or "program")
        prog.graph = tracked_copy(G)
        prog.graph.graph.setdefault("output", None)
        prog._handles = {node: _Node(node) for node in prog.graph}
        return prog

    def to_json(self) -> str:
        """Lossless JSON (networkx node-link data with tagged arrays)."""
        return program_to_json(self)

    @classmethod
    def from_json(cls, s: str) -> ProgramBuilder:
        """Inverse of :meth:`to_json`; ops resolve through the registry only."""
        return program_from_json(cls, s)

    def __repr__(self) -> str:
        G = self.graph
        return (f"Program({self.name!r}: {G.number_of_nodes()} nodes, "
                f"{G.number_of_edges()} edges, output={G.graph.get('output')!r})")


def _merge_edge(G: nx.DiGraph, u: str, d: str, arg) -> None:
    """Add edge ``u -> d`` with position(s) ``arg``, merging with an existing edge."""
    if G.has_edge(u, d):
        old = G.edges[u, d]["arg"]
        pos = sorted(set(old if isinstance(old, list) else [old])
                     | set(arg if isinstance(arg, list) else [arg]))
        arg = pos[0] if len(pos) == 1 else pos
    G.add_edge(u, d, arg=arg)
