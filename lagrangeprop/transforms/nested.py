"""Nested transforms: ``grad`` (and ``value_and_grad``) called on traced values.

``lp.grad(lp.grad(f))``, ``lp.jacobian(lp.grad(f))`` and ``lp.grad(lambda x: lp.grad(f)(x) * x)``
call the inner wrapper while an outer program is being traced, with traced arguments. The inner
function is then traced into its own Program (from the arguments' shapes, through the wrapper's
guarded cache) and ONE node is recorded in the outer program: an op whose value is the inner
solve's gradient ``∇_s f`` (``s``: the selected leaves; with ``value_and_grad``, ``f`` first) and
whose rules are the inner program's exact second order, for every argument ``u`` of the call:

- vjp: ``(∂∇_s f/∂u)ᵀ g = (H·[g on s])_u`` (``H`` the symmetric Hessian of ``f`` over all the
  call's leaves: one exact Hessian-vector product, :mod:`lagrangeprop.solve.second_order`, gives
  the cotangent of every argument, the mixed second derivatives of non-selected ones included);
  with the value, ``+ g_f·∇_u f``;
- jvp: ``(H·[t on u])_s`` (and ``<∇_u f, t>`` for the value);
- jac: the dense block ``H[s, u]`` column by column, when the call's arguments have at most
  :data:`JAC_MAX` entries (so the op can sit in a cyclic block's direct solve); otherwise no
  jac rule, and a block holding the op takes the matrix-free path;
- curvature (third order): none, so Hessians *through* the op (``grad(grad(grad(f)))``,
  ``hvp`` of a function calling ``grad``) use the registry's central difference of the vjp,
  with a warning (about 1e-8 accurate, not exact);
- tape: none; ``lp.check`` checks the node by finite differences alone and its report says so.

``lp.jvp(f, (x,), (t,))`` of a scalar ``f`` on traced values is one op too, with value
``(f(x), <∇f(x), t>)`` and the same exact second order (one Hessian-vector product along ``t``);
``lp.vjp``, ``lp.hvp``, ``lp.jacobian`` and ``lp.hessian`` on traced values raise GraphError
(their derivatives would be third order).

The op is registered under a generated name (``grad<n>.<function>``, one per wrapper and call
signature); a Program holding it cannot be written to JSON (GraphError naming the op), since the
op's rules live in this process only.

Examples
--------
>>> import lagrangeprop as lp
>>> float(lp.grad(lp.grad(lambda x: x ** 3))(2.0))            # 6x
12.0
>>> float(lp.grad(lambda x: lp.grad(lp.sin)(x) * x)(0.5))     # d/dx x cos x
0.637869792588271...
>>> float(lp.grad(lambda x: lp.jvp(lambda z: z ** 3, (x,), (1.0,))[1])(2.0))
12.0
"""

from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from ..errors import GraphError, ShapeError
from ..graph.var import Var
from ..rules import Primitive, register
from ..solve.program import solve_program
from ..solve.second_order import solution_hvp
from .cache import program_for
from .trees import bind, output_tree

__all__ = ["has_traced", "reject_traced", "require_scalar", "nested_value_and_grad", "nested_jvp",
           "JAC_MAX"]

#: total entries of a nested call's arguments up to which its op has a dense jac rule
JAC_MAX = 64
#: solutions of the inner program kept per op (the outer passes ask again at the same point)
MEMO_SIZE = 8
_COUNT = itertools.count(1)


def has_traced(*trees) -> bool:
    """Whether a leaf of ``trees`` (dicts, lists, tuples) is a traced value (a ``Var``)."""
    for x in trees:
        if isinstance(x, Var):
            return True
        if isinstance(x, dict):
            if has_traced(*x.values()):
                return True
        elif isinstance(x, (list, tuple)) and has_traced(*x):
            return True
    return False


def reject_traced(what: str, *trees) -> None:
    """GraphError when ``what`` (``lp.vjp``, ``lp.hvp``, ...) is called on traced values: only
    ``grad``, ``value_and_grad`` and the ``jvp`` of a scalar function nest in a traced function."""
    if has_traced(*trees):
        raise GraphError(
            f"{what} was called on traced values (inside a function that lagrangeprop is "
            "tracing); only lp.grad, lp.value_and_grad and lp.jvp of a scalar function nest "
            "exactly: write the inner step with lp.grad (an hvp is lp.grad(lambda x: "
            f"lp.grad(f)(x) @ v)), or call {what} outside the traced function")


def require_scalar(prog, hint: str = "grad only applies to real scalar-output functions",
                   fix: str = "try lp.jacobian, or lp.vjp with a cotangent") -> None:
    """ShapeError unless ``prog`` has one scalar output (what ``grad`` differentiates)."""
    G = prog.graph
    out = G._node[G.graph["output"]]["shape"]
    tree = output_tree(prog)
    if out != () or tree is not None:
        what = f"shape {out}" if tree is None else f"the tree {tree.tree!r}"
        raise ShapeError(f"{hint}; {prog.name} returns {what}: {fix}")


def _key(args) -> tuple:
    return tuple((np.shape(a), np.asarray(a, dtype=np.float64).tobytes()) for a in args)


class _Inner:
    """The inner call of a nested op: its structure and a memo of its solutions.

    ``arguments``: the call's arguments (name, tree, paths), positional ones first (``npos``);
    the op's first arguments are their leaves in that order (``paths``).
    """

    def __init__(self, program: Callable, arguments: list, npos: int, shapes: dict):
        self.program, self.arguments, self.npos = program, arguments, npos
        self.paths = [p for a in arguments for p in a.paths]
        self.shapes = shapes
        self.memo: OrderedDict = OrderedDict()

    def solution(self, args):
        """The inner program solved at the op's (first) arguments (guarded lookup, memoized)."""
        args = args[:len(self.paths)]
        leaves = iter(args)
        trees = [a.tree.unflatten([next(leaves) for _ in a.paths]) for a in self.arguments]
        pos, kw = trees[:self.npos], {a.name: t for a, t in zip(self.arguments[self.npos:],
                                                                 trees[self.npos:])}
        prog, call = self.program(*pos, **kw)
        key = (id(prog), _key(args))
        hit = self.memo.get(key)
        if hit is not None:
            self.memo.move_to_end(key)
            return hit[1]
        sol = solve_program(prog, call.inputs())
        self.memo[key] = (prog, sol)
        while len(self.memo) > MEMO_SIZE:
            self.memo.popitem(last=False)
        return sol


class _Nested(_Inner):
    """The rules of a nested ``grad`` / ``value_and_grad``; ``sel``: the selected paths."""

    _last = None   # (solution and cotangent, the solution, H·g): the last vjp's product

    def __init__(self, program: Callable, arguments: list, npos: int, sel: list[str],
                 with_value: bool, shapes: dict):
        super().__init__(program, arguments, npos, shapes)
        self.sel, self.with_value = sel, with_value
        self.sizes = [int(np.prod(shapes[p], dtype=int)) for p in sel]
        self.single = len(sel) == 1 and not with_value
        self.out_shape = shapes[sel[0]] if self.single else (int(with_value) + sum(self.sizes),)

    def _flat(self, first, parts) -> np.ndarray:
        """The op's output from the value part ``first`` and one array per selected leaf."""
        if self.single:
            return np.array(parts[0], dtype=np.float64).reshape(self.out_shape)
        flat = [np.ravel(p) for p in parts]
        if self.with_value:
            flat.insert(0, np.ravel(first))
        return np.concatenate(flat).astype(np.float64) if flat else np.zeros(0)

    def _split(self, g) -> tuple:
        """An output cotangent as ``(value part, {selected path: array})``."""
        g = np.asarray(g, dtype=np.float64).reshape(-1)
        g0, k = (g[0], 1) if self.with_value else (0.0, 0)
        out = {}
        for p, n in zip(self.sel, self.sizes):
            out[p] = g[k:k + n].reshape(self.shapes[p])
            k += n
        return g0, out

    # the value: ∇_s f (after f itself for value_and_grad)
    def value(self, *args) -> np.ndarray:
        sol = self.solution(args)
        return self._flat(sol.output, [sol.grad[p] for p in self.sel])

    # vjp_u(g) = ∂(∇_s f)/∂u ᵀ g = (H·[g on s])_u by symmetry, + g_f ∇_u f for the value
    def vjp(self, i: int, g, ans, args, params):
        sol = self.solution(args)
        g0, gs = self._split(g)
        u = self.paths[i]
        out = np.zeros(self.shapes[u])
        if any(np.any(v) for v in gs.values()):
            key = (id(sol), _key(list(gs.values())))   # one H·g serves every argument
            if self._last is None or self._last[0] != key:
                self._last = (key, sol, solution_hvp(sol, gs))
            out = out + self._last[2][u]
        if self.with_value and g0:
            out = out + g0 * np.asarray(sol.grad[u])
        return out

    # jvp_u(t) = (H·[t on u])_s, and <∇_u f, t> for the value
    def jvp(self, i: int, t, ans, args, params):
        sol = self.solution(args)
        u = self.paths[i]
        hv = solution_hvp(sol, {u: t})
        first = np.vdot(np.asarray(sol.grad[u]), t) if self.with_value else None
        return self._flat(first, [hv[p] for p in self.sel])

    # jac_u = H[s, u], one Hessian-vector product per entry of u
    def jac(self, i: int, ans, args, params) -> np.ndarray:
        n = int(np.prod(self.shapes[self.paths[i]], dtype=int))
        cols = []
        for k in range(n):
            e = np.zeros(n)
            e[k] = 1.0
            cols.append(np.ravel(self.jvp(i, e.reshape(self.shapes[self.paths[i]]), ans, args,
                                          params)))
        size = int(np.prod(self.out_shape, dtype=int))
        return np.stack(cols, axis=1) if cols else np.zeros((size, 0))


class _Tangent(_Inner):
    """The rules of a nested ``jvp`` of scalar ``f``: the value is ``(f(x), <∇f(x), t>)``; the
    op's arguments are the primal leaves ``x``, then the tangent leaves ``t`` (same paths)."""

    out_shape = (2,)
    _last = None

    def _hv(self, sol, args) -> dict:
        """``H·t`` (memoized for the last solution and tangent)."""
        n = len(self.paths)
        key = (id(sol), _key(args[n:]))
        if self._last is None or self._last[0] != key:
            t = {p: np.asarray(v, dtype=np.float64) for p, v in zip(self.paths, args[n:])}
            self._last = (key, sol, solution_hvp(sol, t))   # (sol kept: its id stays unique)
        return self._last[2]

    def value(self, *args) -> np.ndarray:
        sol, n = self.solution(args), len(self.paths)
        tan = sum(float(np.vdot(np.asarray(sol.grad[p]), t)) for p, t in zip(self.paths, args[n:]))
        return np.array([float(sol.output), tan])

    # x: g_f ∇_x f + g_t H t;  t: g_t ∇f
    def vjp(self, i: int, g, ans, args, params):
        sol, n = self.solution(args), len(self.paths)
        g0, g1 = np.asarray(g, dtype=np.float64).reshape(2)
        u = self.paths[i % n]
        out = (g0 if i < n else g1) * np.asarray(sol.grad[u], dtype=np.float64)
        if i < n and g1:
            out = out + g1 * np.asarray(self._hv(sol, args)[u])
        return out

    # x: (<∇_x f, s>, <H t, s>);  t: (0, <∇f, s>)
    def jvp(self, i: int, s, ans, args, params):
        sol, n = self.solution(args), len(self.paths)
        u = self.paths[i % n]
        first = float(np.vdot(np.asarray(sol.grad[u]), s))
        if i >= n:
            return np.array([0.0, first])
        return np.array([first, float(np.vdot(np.asarray(self._hv(sol, args)[u]), s))])

    def jac(self, i: int, ans, args, params) -> np.ndarray:
        sol, n = self.solution(args), len(self.paths)
        u = self.paths[i % n]
        grad = np.ravel(np.asarray(sol.grad[u], dtype=np.float64))
        if i >= n:
            return np.stack([np.zeros_like(grad), grad])
        return np.stack([grad, np.ravel(np.asarray(self._hv(sol, args)[u], dtype=np.float64))])


#: the nested jvp ops of each function (by call signature), so re-tracing reuses them
_JVP_OPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def nested_jvp(f: Callable, primals: tuple, tangents: tuple):
    """``(f(x), <∇f(x), t>)`` of scalar ``f`` on traced primals or tangents, as one op.

    Exact to second order (a Hessian-vector product along ``t``): ``lp.grad(lambda x:
    lp.jvp(f, (x,), (v,))[1])`` is ``H·v``. A non-scalar ``f`` raises ShapeError.
    """
    try:
        program, ops = _JVP_OPS[f]
    except (KeyError, TypeError):
        program, ops = program_for(f, what="jvp primals"), {}
        try:
            _JVP_OPS[f] = (program, ops)
        except TypeError:   # not weakly referenceable: one op per call
            pass
    call = bind(f, primals, {}, "jvp primals")
    prog, inner = _inner_program(f, program, call)
    require_scalar(prog, "lp.jvp on traced values applies to scalar-output functions",
                   "write the inner step with lp.grad, or call lp.jvp outside the traced function")
    xs = [leaf for a in call.arguments for leaf in a.leaves]
    ts = [leaf for a, t in zip(call.arguments, tangents)
          for leaf in a.tree.flatten_up_to(t, f"the tangent for {a.name}")]
    key = inner.key()
    prim = ops.get(key)
    if prim is None:
        shapes = {p: tuple(np.shape(v)) for p, v in inner.inputs().items()}
        rules = _Tangent(program, inner.arguments, inner.npos, shapes)
        prim = ops[key] = _primitive(f, rules, 2 * len(xs), 0, "jvp")
    for x, t in zip(xs, ts):
        if np.shape(t) != np.shape(x):
            raise ShapeError(f"jvp: a tangent has shape {np.shape(t)}, its primal {np.shape(x)}")
    out = prim(*xs, *ts)
    return out[0], out[1]


def _example(leaf, path: str):
    """What the inner trace sees for one leaf: zeros of a traced leaf's shape, else the leaf."""
    if not isinstance(leaf, Var):
        return leaf
    if leaf.shape is None:
        raise GraphError(f"lp.grad was called on the traced variable {leaf.name!r} (argument "
                         f"{path!r}), whose shape is not known yet: declare it with "
                         "prog.variable(name, shape=...)")
    return np.zeros(leaf.shape)


def _inner_program(f: Callable, program: Callable, call):
    """The inner Program of a call on traced values, traced from the leaves' shapes."""
    args = call.arguments
    examples = [a.tree.unflatten([_example(v, p) for p, v in zip(a.paths, a.leaves)]) for a in args]
    pos = examples[:call.npos]
    kw = {a.name: t for a, t in zip(args[call.npos:], examples[call.npos:])}
    try:
        return program(*pos, **kw)
    except GraphError as exc:
        if "of different programs" not in str(exc):
            raise
        raise GraphError(f"{exc}. A transform of {getattr(f, '__name__', 'f')} is called inside a "
                         "traced function, and the inner function uses a traced value of the outer "
                         "one that is not among its arguments (a closure): pass that value as an "
                         "argument of the inner function (its gradient then includes the mixed "
                         "second derivatives)") from None


def nested_value_and_grad(f: Callable, program: Callable, call, sel, with_value: bool,
                          ops: dict):
    """Record ``(value, gradient)`` (or the gradient) of a call on traced values as one op.

    ``program`` is the wrapper's guarded ``program_for``; ``call`` the bound call (its leaves
    may be traced values), ``sel`` what ``argnum`` selected, ``ops`` the wrapper's ops by
    call signature (re-tracing the outer function reuses the op).
    """
    leaves = [leaf for a in call.arguments for leaf in a.leaves]
    prog, inner = _inner_program(f, program, call)
    require_scalar(prog)
    structure, paths = inner.selected(sel)
    key = (inner.key(), tuple(paths), with_value)
    prim = ops.get(key)
    if prim is None:
        shapes = {p: tuple(np.shape(v)) for p, v in inner.inputs().items()}
        rules = _Nested(program, inner.arguments, inner.npos, paths, with_value, shapes)
        n_in = sum(map(np.size, inner.inputs().values()))
        prim = ops[key] = _primitive(f, rules, len(leaves), n_in,
                                     "value_and_grad" if with_value else "grad")
    out = prim(*leaves)
    if not isinstance(out, Var):   # (has_traced was true, so the op records)
        raise GraphError(f"op {prim.name!r} did not record a node")
    rules = prim.nested
    if rules.single:
        parts, value = [out], None
    else:
        k, parts = int(with_value), []
        value = out[0] if with_value else None
        for p, n in zip(paths, rules.sizes):
            parts.append(out[k:k + n].reshape(rules.shapes[p]))
            k += n
    grads = structure.unflatten(parts)
    return (value, grads) if with_value else grads


def _primitive(f: Callable, rules: _Inner, nargs: int, n_in: int, prefix: str) -> Primitive:
    """The registry entry of a nested call (unique generated name; not serializable)."""
    fname = getattr(f, "__name__", "f")
    fname = fname if fname.isidentifier() else "lambda"
    prim = Primitive(f"{prefix}{next(_COUNT)}.{fname}", rules.value, nargs=nargs,
                     vjp=rules.vjp, jvp=rules.jvp, jac=rules.jac if n_in <= JAC_MAX else None,
                     curvature=None, shape_rule=lambda shapes, params: rules.out_shape, tape=None)
    prim.nested = rules
    prim.serializable = False   # rules of this process only (graph.serialize refuses it)
    return register(prim)
