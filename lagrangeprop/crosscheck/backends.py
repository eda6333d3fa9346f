"""The tape libraries behind :mod:`lagrangeprop.crosscheck.tape`: HIPS autograd and PyTorch.

:class:`Backend` is the handful of array operations the replay needs in one library, each
op's function taken from its registry entry (``prim.tape``, a function of the library's
module, so neither library is imported until a tape runs); constant scipy.sparse operands
become a sparse product (densified up to :data:`DENSE_SPARSE_LIMIT` entries, read at call
time). :class:`_Taps` reads a cotangent at every node in one autograd backward pass.

Examples
--------
>>> import lagrangeprop as lp
>>> missing_ops(lp.trace(lambda x: lp.sin(x), x=0.0).compile())
[]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..compile.schedule import Schedule, Step
from ..rules.registry import Primitive

__all__ = ["BACKENDS", "DENSE_SPARSE_LIMIT", "Backend", "LazyLeaves", "missing_ops"]

BACKENDS = ("autograd", "torch")
# scipy.sparse constants up to this many entries are densified on the tape;
# larger ones use a sparse product with the transpose as its VJP.
DENSE_SPARSE_LIMIT = 1_000_000


# ------------------------------------------------------------- the op table
# Each op's tape equivalent lives in its registry entry (``prim.tape``, a function of the
# backend module); only constant scipy.sparse operands are handled here, as a sparse product
# whose size decides dense copy or sparse kernel (DENSE_SPARSE_LIMIT, read at call time).
def _autograd_sparse_product(anp: Any) -> Callable[[Any, Any], Any]:
    from autograd.extend import defvjp, primitive

    @primitive
    def sparse_matmul(b, W):
        return W @ b

    # a linear map's VJP is its transpose (itself a primitive, so nested tapes work)
    defvjp(sparse_matmul, lambda ans, b, W: lambda g: sparse_matmul(g, W.T.tocsr()))

    def product(a, b):
        if np.prod(a.shape) <= DENSE_SPARSE_LIMIT:
            return anp.matmul(a.toarray(), b)
        return sparse_matmul(b, a)
    return product


def _torch_sparse_product(torch: Any) -> Callable[[Any, Any], Any]:
    def sparse(a):
        if np.prod(a.shape) <= DENSE_SPARSE_LIMIT:
            return torch.as_tensor(a.toarray(), dtype=torch.float64)
        coo = a.tocoo()
        index = torch.as_tensor(np.vstack([coo.row, coo.col]).astype(np.int64))
        return torch.sparse_coo_tensor(index, torch.as_tensor(coo.data), coo.shape, dtype=torch.float64,
                                       check_invariants=True)

    def product(a, b):
        A = sparse(a)
        return torch.sparse.mm(A, b.reshape(b.shape[0], -1)).reshape((a.shape[0],) + tuple(b.shape[1:])) \
            if A.is_sparse else torch.matmul(A, b)
    return product


def _tape_op(prim: Primitive, backend: str, module: Any, product: Callable[[Any, Any], Any]) -> Callable:
    """``prim``'s function on the ``backend`` tape: its entry's equivalent, with a constant
    scipy.sparse first argument (``prim.sparse_lhs``) applied as the sparse ``product``."""
    op = getattr(prim.tape, backend)(module)
    if not prim.sparse_lhs:
        return op

    def sparse_aware(a, b, **params):
        return product(a, b) if sp.issparse(a) else op(a, b, **params)
    return sparse_aware


def _has_equivalent(prim: Primitive, backend: str) -> bool:
    return not prim.user and prim.tape is not None and getattr(prim.tape, backend) is not None


# --------------------------------------------------------------------- backends
class Backend:
    """The handful of array operations the interpreter needs, per tape library."""

    def __init__(self, name: str):
        self.name = name
        self.ops: dict[Primitive, Callable] = {}    # op -> its function on this tape, made on first use
        if name == "autograd":
            import autograd.numpy as anp  # optional dependency: imported only here
            self.np = self.module = anp
            self.product = _autograd_sparse_product(anp)
            self.taps = _Taps()
        elif name == "torch":
            import torch  # optional dependency: imported only here
            self.torch = self.module = torch
            self.product = _torch_sparse_product(torch)
            self.marks: dict[int, Any] = {}          # node -> the tensor z_d (see perturb)
            self.seen: set[int] = set()
        else:
            raise ValueError(f"unknown tape backend {name!r}; choose one of {BACKENDS}")

    # constants and inputs
    def constant(self, v: Any) -> Any:
        if self.name == "autograd" or sp.issparse(v):
            return v
        arr = np.asarray(v)
        return self.torch.as_tensor(arr if arr.dtype == np.bool_ else arr.astype(np.float64))

    def leaf(self, v: Any) -> Any:
        if self.name == "autograd":
            return np.array(v, dtype=np.float64)
        return self.torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True)

    def numeric(self, t: Any) -> np.ndarray:
        if self.name == "autograd":
            from autograd.tracer import getval
            return np.asarray(getval(t), dtype=np.float64)
        return t.detach().numpy().astype(np.float64) if hasattr(t, "detach") else np.asarray(t, dtype=np.float64)

    def ravel(self, t: Any) -> Any:
        return self.np.ravel(t) if self.name == "autograd" else t.reshape(-1)

    def concat(self, parts: list) -> Any:
        return self.np.concatenate(parts) if self.name == "autograd" else self.torch.cat(parts)

    def reshape(self, t: Any, shape: tuple) -> Any:
        return self.np.reshape(t, shape) if self.name == "autograd" else t.reshape(shape)

    def zeros(self, shape: tuple) -> Any:
        if self.name == "autograd":
            return np.zeros(shape)
        return self.torch.zeros(shape, dtype=self.torch.float64)

    def jacobian(self, fn: Callable, z: Any) -> Any:
        """Dense ``∂fn/∂z``, itself on the tape (nested differentiation)."""
        if self.name == "autograd":
            import autograd
            return autograd.jacobian(fn)(z)
        return self.torch.autograd.functional.jacobian(fn, z, create_graph=True)

    def solve(self, A: Any, b: Any) -> Any:
        return self.np.linalg.solve(A, b) if self.name == "autograd" else self.torch.linalg.solve(A, b)

    def inner(self, seed: np.ndarray, out: Any) -> Any:
        if self.name == "autograd":
            return self.np.sum(seed * out)
        return self.torch.sum(self.torch.as_tensor(seed) * out)

    def apply(self, step: Step, args: list) -> Any:
        op = self.ops.get(step.prim)
        if op is None:
            op = self.ops[step.prim] = _tape_op(step.prim, self.name, self.module, self.product)
        return op(*args, **step.params)

    # perturbations ε_d and where their cotangents are read (see the module docstring)
    def perturb(self, out: Any, node: int, eps: dict) -> Any:
        """``z_d = f_d + ε_d`` for an explicit node outside the blocks."""
        if self.name == "autograd" and self.taps.isbox(out):
            return self.taps.tap(out, node)          # the value unchanged; ∂/∂z_d recorded
        if self.name == "torch" and getattr(out, "requires_grad", False):
            if id(out) in self.seen:                 # an identity op: its own tensor node
                out = out.view_as(out)
            self.seen.add(id(out))
            self.marks[node] = out                   # ∂/∂z_d: torch differentiates w.r.t. it
            return out
        return out + self.eps(eps, node)

    def eps(self, eps: dict, node: int) -> Any:
        """The perturbation ``ε_d`` (zero) of node ``d``, one per node and tape run."""
        return self.taps.source(node, eps[node]) if self.name == "autograd" else eps[node]


class _Taps:
    """autograd's side of one backward pass with a cotangent read at every node.

    ``source(key, value)`` is ``value`` as a function of the one scalar leaf ``s`` (its VJP
    records the cotangent reaching it and passes zero on to ``s``); ``tap(key, x)`` is the
    identity whose VJP records the cotangent of ``x``. autograd's ``backward_pass`` sums all
    of a value's cotangents before calling its VJP once, so each record is the total
    ``∂<seed, z_o>/∂value``; a value that does not reach the output records nothing (zero)."""

    def __init__(self):
        from autograd.extend import defvjp, primitive
        from autograd.tracer import isbox
        self.isbox, self.got, self.made = isbox, {}, {}
        self.leaf: Any = None

        def record(key, g):
            self.got[key] = np.array(g, dtype=np.float64)

        @primitive
        def source(s, value, key):
            return value

        @primitive
        def tap(x, key):
            return x

        defvjp(source, lambda ans, s, value, key: lambda g: (record(key, g), 0.0)[1])
        defvjp(tap, lambda ans, x, key: lambda g: (record(key, g), g)[1])
        self._source, self._tap = source, tap

    def start(self, leaf: Any) -> None:
        """A new tape run from the scalar leaf ``leaf`` (forgets earlier records)."""
        self.leaf, self.got, self.made = leaf, {}, {}

    def source(self, key: Any, value: Any) -> Any:
        if key not in self.made:
            self.made[key] = self._source(self.leaf, np.array(value, dtype=np.float64), key)
        return self.made[key]

    def tap(self, x: Any, key: Any) -> Any:
        return self._tap(x, key)

    def cotangent(self, key: Any, shape: tuple) -> np.ndarray:
        g = self.got.get(key)
        return np.zeros(shape) if g is None else np.asarray(g, dtype=np.float64).reshape(shape)


def missing_ops(sched: Schedule, backend: str = "autograd") -> list[str]:
    """Names of the program's ops with no tape equivalent (user primitives, unknown ops).

    """
    out = []
    for step in sched.step_of.values():
        p = step.prim
        if not _has_equivalent(p, backend) and p.name not in out:
            out.append(p.name)
    return out


class LazyLeaves:
    """node -> its ε_d leaf, made on first use (torch: most nodes need none, see perturb)."""

    def __init__(self, nodes: list[int], make: Callable[[int], Any]):
        self.nodes, self.make, self.made = set(nodes), make, {}

    def __contains__(self, n: int) -> bool:
        return n in self.nodes

    def __getitem__(self, n: int) -> Any:
        if n not in self.made:
            self.made[n] = self.make(n)
        return self.made[n]
