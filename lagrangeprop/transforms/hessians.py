"""Second order: ``hvp`` and ``hessian``, exact by forward-over-reverse.

One solve gives the multipliers; each Hessian-vector product is then one tangent pass
along ``v`` and one differentiated multiplier pass (:mod:`lagrangeprop.solve.second_order`),
with the block factorizations reused.

Examples
--------
>>> import lagrangeprop as lp
>>> float(lp.hvp(lambda x: x ** 3, 2.0, 1.0))   # 6x
12.0
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..compile.cache import compiled
from ..errors import InputError, ShapeError
from ..solve.matrix import forward_matrix
from ..solve.second_order import hvp_pass, solution_hvp
from ..solve.tangent import tangent_pass
from ..solve.program import solve_program
from .argnum import argnum_names, reject_foreign_options
from .cache import program_for
from .jacobians import PASSES_MAX
from .nested import reject_traced
from .trees import output_tree

__all__ = ["hvp", "hessian"]


def _solve_scalar(program: Callable, args, guess, kwargs=None):
    """The solve of a scalar-output program (the base of every Hessian-vector product)."""
    prog, call = program(*args, **(kwargs or {}))
    sched = compiled(prog)
    out, tree = sched.shapes[sched.output], output_tree(prog)
    if out != () or tree is not None:
        what = f"shape {out}" if tree is None else f"the tree {tree.tree!r}"
        raise ShapeError(f"hvp/hessian apply to scalar-output functions; {prog.name} returns "
                         f"{what}: try lp.jacobian of lp.grad")
    return solve_program(prog, call.inputs(), guess=guess), call


def hvp(f: Callable, x, v, *, guess: dict | None = None):
    """Hessian-vector product ``∇²f(x) · v`` of scalar ``f``, exact (forward-over-reverse).

    ``f`` takes ``x`` as its single argument (or is a one-input Program), and is traced
    once per argument signature (its guarded cache, :func:`~lagrangeprop.transforms.cache.shared`).
    ``x`` may be a parameter tree; ``v`` and the result then have its structure.

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> lp.hvp(lambda x: lp.sum(x ** 3), np.array([1.0, 2.0]), np.array([1.0, 1.0]))
    array([ 6., 12.])
    >>> hv = lp.hvp(lambda p: p["a"] ** 2 * p["b"], {"a": 1.0, "b": 3.0}, {"a": 1.0, "b": 0.0})
    >>> {k: float(t) for k, t in hv.items()}       # column a of [[2b, 2a], [2a, 0]]
    {'a': 6.0, 'b': 2.0}
    """
    reject_traced("lp.hvp", x, v)
    sol, call = _solve_scalar(program_for(f, what="hvp", per_function=True), (x,), guess)
    arg = call.arguments[0]
    hv = solution_hvp(sol, dict(zip(arg.paths, arg.tree.flatten_up_to(v, "the direction v"))))
    return call.like_arguments(arg.name, hv.__getitem__)


def hessian(f: Callable, argnum: int = 0, *, guess: dict | None = None, **options) -> Callable:
    """The Hessian of scalar ``f`` for argument ``argnum``: shape ``x.shape + x.shape``.

    One solve, then one tangent pass and one differentiated multiplier pass per
    column (block factorizations reused; the tangents of more than
    :data:`~lagrangeprop.transforms.jacobians.PASSES_MAX` columns from one matrix pass). Cached and guarded as
    :func:`~lagrangeprop.transforms.jacobian`. For a parameter tree the Hessian is
    nested as ``jax.hessian``'s: ``H[i][j]`` of shape ``x_i.shape + x_j.shape`` for
    leaves ``i`` and ``j`` of the argument (the tree's structure, holding the tree's
    structure at each leaf).

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> lp.hessian(lambda x: x[0] ** 2 * x[1])(np.array([1.0, 3.0]))
    array([[6., 2.],
           [2., 0.]])
    >>> H = lp.hessian(lambda p: p[0] ** 2 * p[1])((1.0, 3.0))
    >>> [[float(h) for h in row] for row in H]
    [[6.0, 2.0], [2.0, 0.0]]
    """
    reject_foreign_options("hessian", options)
    program = program_for(f, what="hessian")
    select = argnum_names(f, argnum, "hessian")

    def hess(*args, **kwargs):
        if isinstance(argnum, (tuple, list)):
            raise InputError(f"hessian: argnum={argnum!r}; the Hessian is for one argument: pass "
                             "an int (pass the variables as one tuple or dict argument for the "
                             "blocks between them)")
        select.check()
        reject_traced("lp.hessian", args, kwargs)
        sol, call = _solve_scalar(program, args, guess, kwargs)
        structure, paths = call.selected(select(len(args), call.names))
        sched = sol.schedule
        ids = [sched.index[p] for p in paths]
        shapes = [sched.shapes[i] for i in ids]
        given = call.inputs()
        dtypes = [_float_dtype(given[p]) for p in paths]
        blocks: list[list] = [[] for _ in paths]
        for j, sj in enumerate(shapes):
            cols = _hessian_columns(sol, ids[j], ids)
            for i, (cs, si) in enumerate(zip(cols, shapes)):
                # a float32 (float16) pair of leaves gets its block in that dtype, as lp.grad
                # returns a gradient and jax.hessian a Hessian (the solve runs in float64)
                blocks[i].append(cs.reshape(si + sj).astype(np.promote_types(dtypes[i], dtypes[j]),
                                                            copy=False))
        return structure.unflatten([structure.unflatten(row) for row in blocks])
    hess.cache_info = getattr(program, "cache_info", None)
    return hess


def _float_dtype(leaf) -> np.dtype:
    """A leaf's floating dtype (float64 for Python numbers, ints and bools)."""
    dtype = getattr(leaf, "dtype", None)
    return dtype if dtype is not None and dtype.kind == "f" else np.dtype(np.float64)


# column k of input j: λ̇ along e_k (Aᵀλ̇ = -(Ȧ)ᵀλ), the tangent ż along e_k first: one generated
# tangent pass per column up to PASSES_MAX columns, else one matrix pass for all of them
def _hessian_columns(sol, j: int, ids: list[int]) -> list[np.ndarray]:
    """``∂λ_i/∂x_j`` for every input ``i`` of ``ids``, each ``(size_i, size_j)``."""
    sched, vals, lam, states, opts = sol.schedule, sol._vals, sol._lam, sol._states, sol.options
    shapes = sched.shapes
    n = int(np.prod(shapes[j], dtype=int))
    H = [np.zeros((int(np.prod(shapes[i], dtype=int)), n)) for i in ids]
    Z = forward_matrix(sched, vals, states, opts, {j: np.eye(n)}) if n > PASSES_MAX else None
    for k in range(n):
        if Z is None:
            e = np.zeros(n)
            e[k] = 1.0
            zdot = tangent_pass(sched, vals, states, opts, {j: e.reshape(shapes[j])})
        else:
            zdot = [None if z is None else np.asarray(z).reshape(-1, n)[:, k].reshape(shapes[v])
                    for v, z in enumerate(Z)]
        ldot = hvp_pass(sched, vals, lam, states, opts, zdot)
        for Hi, i in zip(H, ids):
            if ldot[i] is not None:
                Hi[:, k] = np.broadcast_to(ldot[i], shapes[i]).ravel()
    return H
