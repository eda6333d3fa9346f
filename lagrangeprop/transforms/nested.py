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
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from ..errors import GraphError, ShapeError
from ..graph.var import Var
from ..rules import Primitive, register
from ..solve.program import solve_program
from ..solve.second_order import solution_hvp
from .trees import output_tree

__all__ = ["has_traced", "reject_traced", "require_scalar", "nested_value_and_grad", "JAC_MAX"]

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
    """GraphError when ``what`` (``lp.jvp``, ...) is called on traced values: only ``grad`` and
    ``value_and_grad`` nest inside a traced function."""
    if has_traced(*trees):
        raise GraphError(
            f"{what} was called on traced values (inside a function that lagrangeprop is "
            "tracing); only lp.grad and lp.value_and_grad nest exactly: write the inner step "
            "with lp.grad (an hvp is lp.grad(lambda x: lp.grad(f)(x) @ v)), or call "
            f"{what} outside the traced function")


def require_scalar(prog) -> None:
    """ShapeError unless ``prog`` has one scalar output (what ``grad`` differentiates)."""
    G = prog.graph
    out = G._node[G.graph["output"]]["shape"]
    tree = output_tree(prog)
    if out != () or tree is not None:
        what = f"shape {out}" if tree is None else f"the tree {tree.tree!r}"
        raise ShapeError(
            f"grad only applies to real scalar-output functions; {prog.name} returns "
            f"{what}: try lp.jacobian, or lp.vjp with a cotangent")


def _key(args) -> tuple:
    return tuple((np.shape(a), np.asarray(a, dtype=np.float64).tobytes()) for a in args)


class _Nested:
    """The rules of one nested op: the inner call's structure and a memo of its solutions.

    ``arguments``: the call's arguments (name, tree, paths), positional ones first (``npos``);
    the op's arguments are their leaves in that order (``paths``); ``sel`` the selected paths.
    """

    def __init__(self, program: Callable, arguments: list, npos: int, sel: list[str],
                 with_value: bool, shapes: dict):
        self.program, self.arguments, self.npos = program, arguments, npos
        self.paths = [p for a in arguments for p in a.paths]
        self.sel, self.with_value, self.shapes = sel, with_value, shapes
        self.sizes = [int(np.prod(shapes[p], dtype=int)) for p in sel]
        self.single = len(sel) == 1 and not with_value
        self.out_shape = shapes[sel[0]] if self.single else (int(with_value) + sum(self.sizes),)
        self.memo: OrderedDict = OrderedDict()

    def solution(self, args):
        """The inner program solved at the op's arguments (guarded lookup, memoized)."""
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
            out = out + solution_hvp(sol, gs)[u]
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


def _example(leaf, path: str):
    """What the inner trace sees for one leaf: zeros of a traced leaf's shape, else the leaf."""
    if not isinstance(leaf, Var):
        return leaf
    if leaf.shape is None:
        raise GraphError(f"lp.grad was called on the traced variable {leaf.name!r} (argument "
                         f"{path!r}), whose shape is not known yet: declare it with "
                         "prog.variable(name, shape=...)")
    return np.zeros(leaf.shape)


def nested_value_and_grad(f: Callable, program: Callable, call, sel, with_value: bool,
                          ops: dict):
    """Record ``(value, gradient)`` (or the gradient) of a call on traced values as one op.

    ``program`` is the wrapper's guarded ``program_for``; ``call`` the bound call (its leaves
    may be traced values), ``sel`` what ``argnum`` selected, ``ops`` the wrapper's ops by
    call signature (re-tracing the outer function reuses the op).
    """
    args = call.arguments
    leaves = [leaf for a in args for leaf in a.leaves]
    examples = [a.tree.unflatten([_example(v, p) for p, v in zip(a.paths, a.leaves)]) for a in args]
    pos = examples[:call.npos]
    kw = {a.name: t for a, t in zip(args[call.npos:], examples[call.npos:])}
    try:
        prog, inner = program(*pos, **kw)
    except GraphError as exc:
        if "of different programs" not in str(exc):
            raise
        raise GraphError(f"{exc}. lp.grad({getattr(f, '__name__', 'f')}) is called inside a traced "
                         "function, and the inner function uses a traced value of the outer one "
                         "that is not among its arguments (a closure): pass that value as an "
                         "argument of the inner function (its gradient then includes the mixed "
                         "second derivatives)") from None
    require_scalar(prog)
    structure, paths = inner.selected(sel)
    key = (inner.key(), tuple(paths), with_value)
    prim = ops.get(key)
    if prim is None:
        shapes = {p: tuple(np.shape(v)) for p, v in inner.inputs().items()}
        rules = _Nested(program, inner.arguments, inner.npos, paths, with_value, shapes)
        prim = ops[key] = _primitive(f, rules, len(leaves), sum(map(np.size, inner.inputs().values())))
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


def _primitive(f: Callable, rules: _Nested, nargs: int, n_in: int) -> Primitive:
    """The registry entry of a nested call (unique generated name; not serializable)."""
    fname = getattr(f, "__name__", "f")
    fname = fname if fname.isidentifier() else "lambda"
    prefix = "value_and_grad" if rules.with_value else "grad"
    prim = Primitive(f"{prefix}{next(_COUNT)}.{fname}", rules.value, nargs=nargs,
                     vjp=rules.vjp, jvp=rules.jvp, jac=rules.jac if n_in <= JAC_MAX else None,
                     curvature=None, shape_rule=lambda shapes, params: rules.out_shape, tape=None)
    prim.nested = rules
    prim.serializable = False   # rules of this process only (graph.serialize refuses it)
    return register(prim)
