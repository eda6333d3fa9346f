"""numpy functions over traced values: np.linalg (``lp.linalg.solve``, ``inv``, ``det``, ...).

Each function has numpy's signature and records primitives of the rules layer
(:mod:`lagrangeprop.rules.linalg`, :mod:`~lagrangeprop.rules.decompositions`,
:mod:`~lagrangeprop.rules.norms`); ``matrix_power`` is a composite (numpy's own sequence of
matmuls, after ``inv`` for a negative power). Functions with several results record one
node per result and return numpy's named tuples: ``slogdet`` -> ``(sign, logabsdet)`` (the
sign has zero derivative), ``eigh`` -> ``(eigenvalues, eigenvectors)``, ``svd`` ->
``(U, S, Vh)``. Everything is registered in
:data:`~lagrangeprop.graph.var.HANDLED_FUNCTIONS` under ``"linalg.<name>"``, so
``np.linalg.solve(traced, b)`` dispatches here.

A singular matrix (numpy's ``LinAlgError``) raises
:class:`~lagrangeprop.errors.SingularSystemError` naming the node when the program runs.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> A = np.array([[3.0, 1.0], [1.0, 2.0]])
>>> g = lp.grad(lambda b: np.sum(np.linalg.solve(A, b)))(np.ones(2))
>>> np.allclose(g, np.linalg.solve(A.T, np.ones(2)))
True
>>> lp.grad(lambda a: np.linalg.slogdet(a)[1])(A).round(3).tolist()   # A⁻ᵀ
[[0.4, -0.2], [-0.2, 0.6]]
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np

from ..errors import GraphError, ShapeError
from ..rules.norms import norm_kind
from .arguments import NO_VALUE, normalize_axis, static_int, traced_name, unsupported
from .var import HANDLED_FUNCTIONS, Var, apply

__all__ = ["solve", "inv", "det", "slogdet", "cholesky", "eigh", "eigvalsh", "svd", "svdvals",
           "norm", "pinv", "matrix_power"]

SlogdetResult = namedtuple("SlogdetResult", ["sign", "logabsdet"])
EighResult = namedtuple("EighResult", ["eigenvalues", "eigenvectors"])
SVDResult = namedtuple("SVDResult", ["U", "S", "Vh"])


def _shape(x: Any) -> tuple | None:
    return x.shape if isinstance(x, Var) else np.shape(x)


def _uplo(func: str, UPLO: Any, a: Any) -> str:
    upper = UPLO.upper() if isinstance(UPLO, str) else UPLO
    if upper not in ("L", "U"):
        raise unsupported(func, "UPLO", UPLO, a, "UPLO must be 'L' or 'U'.")
    return upper


def solve(a, b):
    """``numpy.linalg.solve``: ``x`` with ``a @ x = b``; ``b`` is a vector when 1-D, else a
    stack of columns ``(..., n, k)`` (numpy 2's rule). The VJP solves with ``aᵀ``."""
    return apply("solve", (a, b))


def inv(a):
    """``numpy.linalg.inv`` of a stack of square matrices."""
    return apply("inv", (a,))


def det(a):
    """``numpy.linalg.det`` of a stack of square matrices."""
    return apply("det", (a,))


def slogdet(a):
    """``numpy.linalg.slogdet``: ``(sign, logabsdet)``, two nodes; the sign has zero derivative."""
    return SlogdetResult(apply("slogdet_sign", (a,)), apply("slogdet", (a,)))


def cholesky(a, /, *, upper=False):
    """``numpy.linalg.cholesky``: the lower factor ``L`` (``upper=True``: ``Lᵀ``). Its VJP is
    autograd's: symmetric, for a symmetric ``a``."""
    return apply("cholesky", (a,), {"upper": bool(upper)} if upper else {})


def eigh(a, UPLO="L"):
    """``numpy.linalg.eigh``: ``(eigenvalues, eigenvectors)`` of a symmetric matrix (from its
    ``UPLO`` triangle), one node each. Eigenvector derivatives need distinct eigenvalues: a
    repeated one makes the multiplier non-finite (NonFiniteError)."""
    uplo = _uplo("linalg.eigh", UPLO, a)
    params = {} if uplo == "L" else {"UPLO": uplo}
    return EighResult(apply("eigvalsh", (a,), params), apply("eigh_vectors", (a,), params))


def eigvalsh(a, UPLO="L"):
    """``numpy.linalg.eigvalsh``: the eigenvalues of a symmetric matrix, ascending."""
    uplo = _uplo("linalg.eigvalsh", UPLO, a)
    return apply("eigvalsh", (a,), {} if uplo == "L" else {"UPLO": uplo})


def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """``numpy.linalg.svd``: ``(U, S, Vh)``, one node each (``compute_uv=False``: ``S``).

    As autograd, ``full_matrices=True`` is differentiable only for square matrices (the
    completed columns of a rectangular ``U`` or ``Vh`` are not unique): pass
    ``full_matrices=False`` otherwise. ``hermitian=True`` is not supported.
    """
    if hermitian:
        raise unsupported("linalg.svd", "hermitian", hermitian, a,
                          "Use hermitian=False, or lp.linalg.eigh for a symmetric matrix.")
    if not compute_uv:
        return apply("svdvals", (a,))
    s = _shape(a)
    if full_matrices:
        if s is None or len(s) < 2:
            raise GraphError(f"linalg.svd{traced_name(a)}: the shape must be known and have at "
                             "least 2 axes")
        if s[-1] != s[-2]:
            raise unsupported("linalg.svd", "full_matrices", True, a,
                              f"A {s[-2]}x{s[-1]} matrix has a non-unique completed basis, which "
                              "has no derivative: pass full_matrices=False (as autograd requires).")
    params = {"full_matrices": True} if full_matrices else {}
    return SVDResult(apply("svd_u", (a,), params), apply("svdvals", (a,)),
                     apply("svd_vh", (a,), params))


def svdvals(x, /):
    """``numpy.linalg.svdvals``: the singular values, descending."""
    return apply("svdvals", (x,))


def norm(x, ord=None, axis=None, keepdims=False):
    """``numpy.linalg.norm`` for every ord numpy has: vectors ``None``/2, 1, inf, -inf, 0 and
    any p; matrices ``'fro'``, ``'nuc'``, 1, -1, 2, -2, inf, -inf; ``axis`` an int (vector
    norms) or a pair (matrix norms), negative allowed; ``keepdims``. Ties at a max or min
    split the derivative equally (autograd's convention); ``|x|`` has derivative 0 at 0."""
    if isinstance(ord, Var) or isinstance(axis, Var):
        raise GraphError(f"linalg.norm{traced_name(x)}: ord and axis must be static")
    s = _shape(x)
    if ord is not None and not isinstance(ord, str):
        ord = float(ord) if not float(ord).is_integer() or abs(ord) == np.inf else int(ord)
    if axis is not None:
        if isinstance(axis, (list, np.ndarray)):
            raise GraphError(f"linalg.norm{traced_name(x)}: axis must be an int or a tuple of "
                             f"ints, got {axis!r} (numpy raises TypeError)")
        axis = normalize_axis(axis, None if s is None else len(s), "linalg.norm", x)
        if isinstance(axis, tuple) and len(axis) not in (1, 2):
            raise ShapeError(f"linalg.norm{traced_name(x)}: improper number of dimensions to "
                             f"norm (axis={axis})")
    if s is not None:
        _check_norm(x, len(s), ord, axis)
    return apply("norm", (x,), {"ord": ord, "axis": axis, "keepdims": bool(keepdims)})


_MATRIX_ORDS = (None, "fro", "f", "nuc", 1, -1, 2, -2, np.inf, -np.inf)


def _check_norm(x: Any, ndim: int, ord: Any, axis: Any) -> None:
    """numpy's errors for an order the axes do not have, raised while tracing."""
    if axis is None and ord is not None and ndim > 2:
        raise ShapeError(f"linalg.norm{traced_name(x)}: improper number of dimensions to norm "
                         f"(ord={ord!r} needs axis= for an array with {ndim} dimensions)")
    kind, axes = norm_kind(ndim, ord, axis)
    if kind == "vector" and isinstance(ord, str):
        raise GraphError(f"linalg.norm{traced_name(x)}: invalid norm order {ord!r} for vectors "
                         "(numpy raises ValueError)")
    if kind == "matrix" and ord not in _MATRIX_ORDS:
        raise GraphError(f"linalg.norm{traced_name(x)}: invalid norm order {ord!r} for matrices "
                         "(numpy raises ValueError)")


def pinv(a, rcond=None, hermitian=False, *, rtol=NO_VALUE):
    """``numpy.linalg.pinv`` (the SVD cutoffs ``rcond``/``rtol`` as numpy). The derivative
    is that of the function numpy computes: of the truncated pseudo-inverse when the cutoff
    drops a singular value (whose second derivatives raise GraphError), else the constant-rank
    formula. ``hermitian=True`` is not supported."""
    if hermitian:
        raise unsupported("linalg.pinv", "hermitian", hermitian, a, "Use hermitian=False.")
    params = {}
    for key, value in (("rcond", rcond), ("rtol", None if rtol is NO_VALUE else rtol)):
        if value is not None:
            if isinstance(value, Var) or np.ndim(value) != 0:
                raise unsupported("linalg.pinv", key, value, a, f"{key} must be a Python number.")
            params[key] = float(value)
    return apply("pinv", (a,), params)


def matrix_power(a, n):
    """``numpy.linalg.matrix_power`` for an integer ``n`` (a composite of matmul, and inv for
    ``n < 0``), with numpy's own sequence of products, so the values agree to the last bit."""
    n = static_int(n, "linalg.matrix_power", "the exponent n", a)
    s = _shape(a)
    if s is None or len(s) < 2 or s[-1] != s[-2]:
        raise ShapeError(f"linalg.matrix_power{traced_name(a)}: needs a stack of square matrices, "
                         f"got shape {s}")
    if n == 0:   # numpy: the identity, whatever a is (zero derivative)
        return np.broadcast_to(np.eye(s[-1]), s).copy()
    if n < 0:
        a, n = inv(a), -n
    if n <= 3:
        out = a
        for _ in range(n - 1):
            out = apply("matmul", (out, a))
        return out
    z = result = None
    while n > 0:   # binary decomposition, numpy's order of products
        z = a if z is None else apply("matmul", (z, z))
        n, bit = divmod(n, 2)
        if bit:
            result = z if result is None else apply("matmul", (result, z))
    return result


# numpy's dispatch (np.linalg.solve(traced, b)) lands here
HANDLED_FUNCTIONS.update((f"linalg.{name}", globals()[name]) for name in __all__)
