"""The op registry: one entry per op holding ALL of its rules, one module per family.

Modules, bottom to top: :mod:`~lagrangeprop.rules.arrays` (helpers: ``unbroadcast``,
``broadcast_jac``), :mod:`~lagrangeprop.rules.registry` (:class:`Primitive`, :class:`Tape`,
:func:`register`, :func:`get`, :data:`REGISTRY`; it knows no op), the generic machinery
:mod:`~lagrangeprop.rules.shapes` (dispatch to the shape rule) and
:mod:`~lagrangeprop.rules.curvature` (dispatch to the curvature rule, difference fallback),
the families :mod:`~lagrangeprop.rules.ufuncs` (elementwise ops, ``where``, comparisons),
:mod:`~lagrangeprop.rules.piecewise` (abs, max/min, clip, integer-valued ops, remainders),
:mod:`~lagrangeprop.rules.reductions` (sum, mean, logsumexp, softmax, max, min, prod, all,
any, count_nonzero), :mod:`~lagrangeprop.rules.order` (sort, partition, argmax, argmin,
argsort), :mod:`~lagrangeprop.rules.scans` (cumsum),
:mod:`~lagrangeprop.rules.structure` (reshape, transpose, getitem, concatenate, stack),
:mod:`~lagrangeprop.rules.contractions` (matmul, dot), :mod:`~lagrangeprop.rules.einsum`,
np.linalg in
:mod:`~lagrangeprop.rules.linalg` (solve, inv, det, slogdet, cholesky; over the dual
numbers of :mod:`~lagrangeprop.rules.dual`), :mod:`~lagrangeprop.rules.decompositions`
(eigh, svd, pinv) and :mod:`~lagrangeprop.rules.norms` (norm), and the user ops of
:func:`lagrangeprop.primitive` (:mod:`~lagrangeprop.rules.user`). Importing this package
registers the built-ins: whatever needs them imports ``lagrangeprop.rules``.

How to add an op
----------------
Write it in its family module and register it right after its definition; nothing else
changes (the interpreters, the block solvers, the shape pass and the tape cross-check all
read the entry). An entry's fields:

- ``fn`` (the value, numpy semantics), ``nargs``, ``nondiff`` (positions never differentiated);
- ``vjp``, ``jvp``, ``jac``: ``rule(i, g|t, ans, args, params)``, one per argument position
  ``i``, ``None`` meaning zero; ``jac`` returns the sparse local Jacobian of the cyclic solve;
- ``curvature``: ``rule(i, g, ans, args, params, tans)``, the second-order term of
  Hessian-vector products, or :func:`zero_curvature` for a (piecewise) linear op;
- ``shape_rule``: ``rule(shapes, params) -> shape`` or ``None`` (numpy decides);
- ``linear`` (linear in each argument separately), ``elementwise`` (broadcasting, entry by
  entry), ``sparse_lhs`` (argument 0 may be a constant scipy.sparse matrix);
- ``tape``: ``Tape(autograd=lambda anp: ..., torch=lambda torch: ...)``, the op on the
  cross-check tapes, which differentiate it with *their* rules.

An elementwise op is one line: ``elementwise("exp", np.exp, lambda ans, x: ans,
second=lambda ans, x: [[ans]], tape=Tape.named("exp", "exp"))``. Then add it to the op
tests (``tests/test_primitives.py`` against autograd, ``tests/test_tangent.py`` for the
curvature).

Examples
--------
>>> from lagrangeprop.rules import get
>>> prim = get("sum")
>>> prim.linear, prim.elementwise, prim.shape_rule([(2, 3)], {"axis": 0})
(True, False, (3,))
"""

# the built-ins register on import, in this order (the order of REGISTRY)
from . import ufuncs, piecewise, reductions, contractions, einsum, structure, order, scans  # noqa: F401
from . import linalg, decompositions, norms  # noqa: F401
from .registry import REGISTRY, Primitive, Tape, get, register, zero_curvature
from .user import primitive

__all__ = ["REGISTRY", "Primitive", "Tape", "get", "primitive", "register", "zero_curvature"]
