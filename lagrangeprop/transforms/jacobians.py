"""Forward mode and Jacobians: ``jvp`` and ``jacobian``.

``jvp`` pushes one tangent through the program (``A ż = -(∂c/∂x) ẋ``,
:mod:`lagrangeprop.solve.tangent`); ``jacobian`` pushes identity columns forward or
pulls identity rows back, whichever are fewer: one generated pass each up to
:data:`PASSES_MAX`, else one matrix pass for all (:mod:`lagrangeprop.solve.matrix`).
Both reuse their traces behind guards (:mod:`lagrangeprop.transforms.cache`).

Examples
--------
>>> import lagrangeprop as lp
>>> value, tangent = lp.jvp(lambda x: x ** 3, (2.0,), (1.0,))
>>> float(value), float(tangent)
(8.0, 12.0)
"""

from __future__ import annotations

from collections.abc import Callable
from math import isfinite

import numpy as np

from ..errors import InputError
from ..solve.adjoint import run_adjoint
from ..solve.inputs import scalar, scalarize, shaped_input
from ..solve.matrix import forward_matrix, reverse_matrix
from ..solve.program import forward_program
from ..solve.tangent import tangent_pass
from .argnum import argnum_names, reject_foreign_options, check_count
from .cache import program_for
from .nested import has_traced, nested_jvp, reject_traced
from .trees import like, output_tree

__all__ = ["jvp", "jacobian", "PASSES_MAX"]


def jvp(f: Callable, primals: tuple, tangents: tuple, *, guess: dict | None = None):
    """``(f(*primals), J·tangents)`` by forward mode, like ``jax.jvp``.

    ``f`` is a numpy-style function (traced once per argument signature and kept in its
    guarded cache, :func:`~lagrangeprop.transforms.cache.shared`, as ``lp.vjp`` and
    ``lp.hvp`` keep it) or a
    :class:`~lagrangeprop.Program` (primals in the order of its inputs); ``guess``
    starts the program's cyclic blocks. A primal may be a parameter tree (its tangent
    then has the same structure); a result that is a tuple or dict of arrays comes back
    as such, value and tangent alike. Called on traced values (inside a function being
    traced) with a scalar-output ``f``, it records one op, exact to second order
    (:mod:`~lagrangeprop.transforms.nested`): ``lp.grad(lambda x: lp.jvp(f, (x,), (v,))[1])``
    is the Hessian-vector product.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> v, t = lp.jvp(lambda x, y: x * y, (2.0, 3.0), (1.0, 0.0))
    >>> float(v), float(t)
    (6.0, 3.0)
    >>> v, t = lp.jvp(lambda p: (p["a"] * p["b"], p["a"]), ({"a": 2.0, "b": 3.0},),
    ...               ({"a": 1.0, "b": 0.0},))
    >>> [float(u) for u in t]
    [3.0, 1.0]
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise InputError("jvp takes the primals and the tangents as tuples, one entry per argument: "
                         "lp.jvp(f, (x,), (v,))")
    primals, tangents = tuple(primals), tuple(tangents)
    if has_traced(primals, tangents):   # inside a traced function: one nested op
        return nested_jvp(f, primals, tangents)
    program = program_for(f, what="jvp primals", per_function=True)
    fast = getattr(program, "fast", None)   # None for a Program (no trace cache)
    hit = None if fast is None else fast(primals)
    xdot = {}
    if hit is not None:   # plain leaves, a cached signature, its guard unchanged (cache.traced)
        prog, names = hit
        check_count("jvp tangents", names, len(tangents))
        sched, vals, states, opts = forward_program(prog, dict(zip(names, primals)), guess)
        for n, t in zip(names, tangents):
            i = sched.index[n]
            xdot[i] = np.asarray(t) if t.__class__ is float and isfinite(t) and sched.shapes[i] == () \
                else shaped_input(sched, i, t, "tangent")
    else:
        prog, call = program(*primals)
        check_count("jvp tangents", call.names, len(tangents))
        sched, vals, states, opts = forward_program(prog, call.inputs(), guess)
        for a, t in zip(call.arguments, tangents):
            for p, leaf in zip(a.paths, a.tree.flatten_up_to(t, f"the tangent for {a.name}")):
                xdot[sched.index[p]] = shaped_input(sched, sched.index[p], leaf, "tangent")
    zdot = tangent_pass(sched, vals, states, opts, xdot)
    out = zdot[sched.output]
    out = np.zeros(sched.shapes[sched.output]) if out is None else np.asarray(out)
    tree = output_tree(prog)
    if tree is not None:
        return tree.split(vals[sched.output]), tree.split(np.broadcast_to(out, tree.shape))
    return scalarize(vals[sched.output]), scalar(out)


def jacobian(f: Callable, argnum: int | tuple[int, ...] = 0, *, mode: str = "auto",
             guess: dict | None = None, **options) -> Callable:
    """The Jacobian of ``f`` for positional argument ``argnum``: shape ``out.shape + in.shape``.

    ``mode="auto"`` pushes identity columns forward (``A Ż = -∂c/∂x``) when the input is
    no larger than the output, else pulls identity rows back (``AᵀΛ = E_o``); a cyclic
    block solves all columns against its one factorization. ``argnum`` is a position of
    ``f``'s signature (keywords allowed). Traced programs are cached as :func:`lp.grad
    <lagrangeprop.transforms.grad>` caches them: at most 32 per wrapper, re-traced when anything
    ``f`` read from outside its arguments changed.

    With parameter trees the result is nested as ``jax.jacrev``'s: the result's structure
    (a tuple or dict of arrays, or one array) with, at each of its leaves, the argument's
    structure, whose leaves have shape ``out_leaf.shape + in_leaf.shape``. An ``argnum``
    tuple selects a tuple of arguments (a tuple at each result leaf).

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> lp.jacobian(lambda x: x ** 2)(np.array([1.0, 2.0]))
    array([[2., 0.],
           [0., 4.]])
    >>> J = lp.jacobian(lambda p: (p["w"] * p["b"], p["w"] ** 2))({"w": np.ones(2), "b": 3.0})
    >>> J[0]["b"], J[1]["w"].shape
    (array([1., 1.]), (2, 2))
    """
    reject_foreign_options("jacobian", options)
    program = program_for(f, what="jacobian")
    select = argnum_names(f, argnum, "jacobian")

    def jac(*args, **kwargs):
        select.check()
        reject_traced("lp.jacobian", args, kwargs)
        prog, call = program(*args, **kwargs)
        sched, vals, states, opts = forward_program(prog, call.inputs(), guess)
        structure, paths = call.selected(select(len(args), call.names))
        ids = [sched.index[p] for p in paths]
        J = _jacobian_matrix(sched, vals, states, opts, ids, mode)
        given = call.inputs()
        in_leaves = [(sched.shapes[i], given[p]) for i, p in zip(ids, paths)]
        tree = output_tree(prog)
        if tree is None:
            return _columns(J, sched.shapes[sched.output], structure, in_leaves)
        rows, r0 = [], 0
        for shape, size in zip(tree.shapes, tree.sizes):
            rows.append(_columns(J[r0:r0 + size], tuple(shape), structure, in_leaves))
            r0 += size
        return tree.tree.unflatten(rows)
    jac.cache_info = getattr(program, "cache_info", None)
    return jac


def _columns(J: np.ndarray, out_shape: tuple, structure, in_leaves: list):
    """Rows ``J`` of one result leaf split by input leaf ``(shape, value)``: ``out_shape +
    shape`` each, in the input leaf's dtype when it is float32 (float16), as ``lp.grad`` returns
    a gradient and ``jax.jacobian`` a Jacobian (the solve itself runs in float64)."""
    parts, c0 = [], 0
    for shape, leaf in in_leaves:
        n = int(np.prod(shape, dtype=int))
        block = np.ascontiguousarray(J[:, c0:c0 + n]).reshape(out_shape + shape)
        parts.append(np.asarray(like(leaf, block)))
        c0 += n
    return structure.unflatten(parts)


#: up to this many columns (rows), one generated tangent (adjoint) pass each; more: one matrix pass
PASSES_MAX = 16


# A Ż = -(∂c/∂x) E (forward, one column per input entry) or AᵀΛ = E_o (reverse, one per output entry)
def _jacobian_matrix(sched, vals, states, opts, ids: list[int], mode: str) -> np.ndarray:
    """``dz_o/dx`` for the inputs ``ids`` side by side: ``(output size, their total size)``;
    ``mode="auto"``: forward when the inputs are no larger than the output, else reverse.

    Up to :data:`PASSES_MAX` columns (rows) run the generated tangent pass (adjoint) once
    each, as ``lp.jvp`` (``lp.vjp``) does; more run the interpreted matrix pass once, all
    columns together through the ops' sparse ``jac`` rules (:mod:`lagrangeprop.solve.matrix`)."""
    sizes = [int(np.prod(sched.shapes[i], dtype=int)) for i in ids]
    n_in, n_out = sum(sizes), int(np.prod(sched.shapes[sched.output], dtype=int))
    if mode == "auto":
        mode = "forward" if n_in <= n_out else "reverse"
    if mode == "forward":
        if n_in <= PASSES_MAX:
            return _columns_by_tangents(sched, vals, states, opts, ids, sizes, n_out)
        seeds, c0 = {}, 0
        for i, n in zip(ids, sizes):
            E = np.zeros((n, n_in))
            E[:, c0:c0 + n] = np.eye(n)
            seeds[i], c0 = E, c0 + n
        Z = forward_matrix(sched, vals, states, opts, seeds)[sched.output]
        return np.zeros((n_out, n_in)) if Z is None else np.asarray(Z).reshape(n_out, n_in)
    if mode == "reverse":
        if n_out <= PASSES_MAX:
            return _rows_by_adjoints(sched, vals, states, opts, ids, sizes, n_out)
        Lam = reverse_matrix(sched, vals, states, opts, np.eye(n_out))
        cols = [np.zeros((n_out, n)) if Lam[i] is None else np.asarray(Lam[i]).reshape(n, n_out).T
                for i, n in zip(ids, sizes)]
        return np.concatenate(cols, axis=1) if cols else np.zeros((n_out, 0))
    raise InputError(f"mode={mode!r}: choose 'auto', 'forward' or 'reverse'")


# column k: A ż = -(∂c/∂x) e_k, the tangent pass along one input entry
def _columns_by_tangents(sched, vals, states, opts, ids, sizes, n_out) -> np.ndarray:
    J, out, c = np.zeros((n_out, sum(sizes))), sched.shapes[sched.output], 0
    for i, n in zip(ids, sizes):
        for k in range(n):
            e = np.zeros(n)
            e[k] = 1.0
            z = tangent_pass(sched, vals, states, opts, {i: e.reshape(sched.shapes[i])})[sched.output]
            if z is not None:
                J[:, c] = np.broadcast_to(z, out).ravel()
            c += 1
    return J


# row k: Aᵀλ = e_o e_k, the multiplier pass seeded with one output entry
def _rows_by_adjoints(sched, vals, states, opts, ids, sizes, n_out) -> np.ndarray:
    J, out = np.zeros((n_out, sum(sizes))), sched.shapes[sched.output]
    for k in range(n_out):
        e = np.zeros(n_out)
        e[k] = 1.0
        lam, c = run_adjoint(sched, vals, e.reshape(out), states, opts), 0
        for i, n in zip(ids, sizes):
            if lam[i] is not None:
                J[k, c:c + n] = np.broadcast_to(lam[i], sched.shapes[i]).ravel()
            c += n
    return J
