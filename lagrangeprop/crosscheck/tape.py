"""Re-evaluate a program's graph on a tape (HIPS autograd or PyTorch) with *their* rules.

The tape is the independent reference of :func:`lagrangeprop.check`: each op's registry
entry names its autograd.numpy (or torch) expression (``prim.tape``), so the derivatives
come from the tape library's own rules, never from our VJP/JVP rules. Cyclic blocks are
unrolled: a fixed number of Newton iterations ``z ← z - J⁻¹ c_S(z)`` written in the tape
library, with ``J`` a dense Jacobian from the tape itself; differentiating through the
iteration converges to the implicit-function derivative as the iterations grow.

Every defined node gets a perturbation ``ε_d`` (zero): ``c_d = ε_d`` relaxes its
constraint, so the tape's ``∂<seed, z_o>/∂ε_d`` is the multiplier ``λ_d`` (SPEC §1) and the
tape checks every multiplier, not only the gradient. All of them come from ONE backward
pass, in time linear in the program: on the autograd tape each perturbation is a source
primitive of a single scalar leaf whose VJP records the cotangent that reaches it (a list
of 10⁴ leaves would cost autograd's list-container VJP O(n) per entry, O(n²) in all); an
explicit node's ``z_d = f_d + ε_d`` is a tap on ``f_d`` (the cotangent of ``z_d`` is
``∂/∂ε_d``). PyTorch takes one leaf per node (its engine is linear in the leaves).

Examples
--------
>>> import lagrangeprop as lp
>>> from lagrangeprop.crosscheck.tape import tape_gradients
>>> prog = lp.trace(lambda x: lp.exp(x) * x, x=1.0)
>>> res = tape_gradients(prog.compile(), "autograd", {"x": 1.0}, seed=1.0)
>>> round(float(res.grad["x"]), 6)   # (1 + x) e^x
5.436564
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..blocks import constraint_scale, scaled_max, split_members
from ..compile.schedule import Block, Schedule, Step
from ..rules.registry import Primitive
from ..solve.walk import walk

__all__ = ["TapeResult", "NoTapeEquivalent", "tape_gradients", "missing_ops", "BACKENDS"]

BACKENDS = ("autograd", "torch")
# scipy.sparse constants up to this many entries are densified on the tape;
# larger ones use a sparse product with the transpose as its VJP.
DENSE_SPARSE_LIMIT = 1_000_000
MAX_UNROLL = 50


def gc_paused(fn: Callable) -> Callable:
    """Run ``fn`` with the cyclic garbage collector paused (restored after). A tape of n nodes
    holds O(n) live objects and allocates O(n) more; each full collection walks all of them,
    which made a linear pass superlinear (chain-16000 check: 1.9 s with, 1.2 s without)."""
    @functools.wraps(fn)
    def paused(*args, **kwargs):
        was = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was:
                gc.enable()
    return paused


class NoTapeEquivalent(Exception):
    """The program uses an op the tape cannot express with its own rules."""


@dataclass
class TapeResult:
    """Gradients of ``<seed, z_o>`` from one tape."""

    backend: str
    value: float                                   # <seed, z_o>
    grad: dict[str, np.ndarray]                    # input name -> ∂<seed, z_o>/∂x
    multipliers: dict[str, np.ndarray]             # defined node -> ∂<seed, z_o>/∂ε_d
    iterations: int | None = None                  # Newton iterations per block (None: no blocks)
    notes: list[str] = field(default_factory=list)


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
class _Backend:
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

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> missing_ops(lp.trace(lambda x: lp.sin(x), x=0.0).compile())
    []
    """
    out = []
    for step in sched.step_of.values():
        p = step.prim
        if not _has_equivalent(p, backend) and p.name not in out:
            out.append(p.name)
    return out


class _LazyLeaves:
    """node -> its ε_d leaf, made on first use (torch: most nodes need none, see perturb)."""

    def __init__(self, nodes: list[int], make: Callable[[int], Any]):
        self.nodes, self.make, self.made = set(nodes), make, {}

    def __contains__(self, n: int) -> bool:
        return n in self.nodes

    def __getitem__(self, n: int) -> Any:
        if n not in self.made:
            self.made[n] = self.make(n)
        return self.made[n]


# ------------------------------------------------------------------ interpreter
def _run(sched: Schedule, be: _Backend, xs: dict[int, Any], eps: dict[int, Any],
         guess: dict[int, np.ndarray], iterations: int | None) -> tuple[Any, int]:
    """Evaluate the program on the tape; returns z_o and the Newton iterations used."""
    vals: list = [None] * len(sched.names)
    for i, v in sched.constants:
        vals[i] = be.constant(v)
    for i, v in xs.items():
        vals[i] = v
    replay = _Replay(be, vals, eps, guess, iterations)
    walk(sched, replay)
    return vals[sched.output], replay.used


class _Replay:
    """The :func:`~lagrangeprop.solve.walk.walk` pass of the tape: each step in the tape
    library (perturbed by ``ε_d``), each block unrolled; ``used``: the most Newton iterations."""

    __slots__ = ("be", "vals", "eps", "guess", "iterations", "used")

    def __init__(self, be: _Backend, vals: list, eps: dict, guess: dict, iterations: int | None):
        self.be, self.vals, self.eps, self.guess, self.iterations = be, vals, eps, guess, iterations
        self.used = 0

    def step(self, step: Step) -> None:
        be, vals, eps = self.be, self.vals, self.eps
        out = be.apply(step, [vals[a] for a in step.args])
        vals[step.node] = be.perturb(out, step.node, eps) if step.node in eps else out

    def block(self, block: Block) -> None:
        self.used = max(self.used, _unroll(block, self.be, self.vals, self.eps, self.guess,
                                           self.iterations))


def _block_residual(block: Block, be: _Backend, vals: list, eps: dict, z: Any) -> Any:
    """``c_S(z) - ε_S``: explicit ``z_d - f_d - ε_d``, residual ``r_d - ε_d``."""
    local = list(vals)
    for n, off, size, shape in zip(block.nodes, block.offsets, block.sizes, block.shapes):
        local[n] = be.reshape(z[off:off + size], shape)
    parts = []
    for s in block.steps:
        a = be.apply(s, [local[u] for u in s.args])
        c = a if s.residual else local[s.node] - a
        parts.append(be.ravel(c - be.eps(eps, s.node)) if s.node in eps else be.ravel(c))
    return be.concat(parts)


def _start(block: Block, be: _Backend, vals: list, eps: dict, guess: dict) -> Any:
    """The solver's documented start: the guess, else 0, then one in-order sweep of the
    explicit members without a guess (kept where finite)."""
    for n, shape in zip(block.nodes, block.shapes):
        vals[n] = be.constant(np.broadcast_to(np.asarray(guess[n], dtype=np.float64), shape).copy()
                              if n in guess else np.zeros(shape))
    with np.errstate(all="ignore"):
        for s in block.steps:
            if not s.residual and s.node not in guess:
                v = be.apply(s, [vals[u] for u in s.args])
                v = v + be.eps(eps, s.node) if s.node in eps else v
                if np.all(np.isfinite(be.numeric(v))):
                    vals[s.node] = v
    return be.concat([be.ravel(vals[n]) for n in block.nodes])


def _substitute(block: Block, be: _Backend, vals: list, eps: dict, z: Any) -> Any:
    """``z`` with the block's explicit intermediates re-evaluated from its states
    (:func:`~lagrangeprop.blocks.eliminate.split_members`; ``z_d = f_d + ε_d`` in evaluation order).

    A full-space Newton step linearizes ``z_e = exp(z_d)`` too, so after one step the
    intermediates of a diode ``Is·exp(w/Vt) - x`` are off by orders of magnitude and every
    step is cut back to nothing; from consistent intermediates the state part of the
    full-space step is the reduced (Schur-complement) Newton step, and substituting makes
    the replay Newton on the states, as the block solver iterates."""
    _, inter = split_members(block)
    if not inter:
        return z
    local = list(vals)
    for n, off, size, shape in zip(block.nodes, block.offsets, block.sizes, block.shapes):
        local[n] = be.reshape(z[off:off + size], shape)
    with np.errstate(all="ignore"):
        for k in inter:
            s = block.steps[k]
            v = be.apply(s, [local[u] for u in s.args])
            local[s.node] = v + be.eps(eps, s.node) if s.node in eps else v
    return be.concat([be.ravel(local[n]) for n in block.nodes])


class _Numbers:
    """The numbers behind a tape's value slots (read lazily), for :func:`constraint_scale`."""

    def __init__(self, vals: list, be: _Backend):
        self.vals, self.be, self.own = vals, be, {}

    def __getitem__(self, u: int):
        if u in self.own:
            return self.own[u]
        v = self.vals[u]
        return v if v is None or sp.issparse(v) or isinstance(v, np.ndarray) else self.be.numeric(v)

    def __setitem__(self, u: int, v) -> None:
        self.own[u] = v


# Newton unrolled on the tape: z_{k+1} = z_k - α_k J(z_k)⁻¹ c_S(z_k). The step length α_k
# (backtracking on the scaled max_d |c_d|/s_d) is a constant on the tape; at convergence α = 1 and the
# derivative of z_k tends to the implicit-function derivative -A_SS⁻¹ ∂c_S/∂x.
def _unroll(block: Block, be: _Backend, vals: list, eps: dict, guess: dict,
            iterations: int | None) -> int:
    z = _start(block, be, vals, eps, guess)

    def c_of(zz):
        return _block_residual(block, be, vals, eps, zz)

    c = c_of(z)
    it = 0
    limit = MAX_UNROLL if iterations is None else iterations

    def scale_at(zz) -> np.ndarray:
        """Each constraint's own scale ``s_d`` at ``zz``, as the block solvers judge it (SPEC §1
        "Scale", lagrangeprop.blocks.scale): a 1e15 intermediate must not stop the replay at the guess."""
        num = _Numbers(vals, be)
        for n, off, size, shape in zip(block.nodes, block.offsets, block.sizes, block.shapes):
            num[n] = be.numeric(zz[off:off + size]).reshape(shape)
        return constraint_scale(block, num)

    def scaled(zz, cc) -> float:
        """``max_d |c_d| / s_d``: the stopping test."""
        return scaled_max(be.numeric(cc), scale_at(zz)) if block.size else 0.0
    extra = 2          # auto mode: steps taken after the residual reached round-off
    prev = np.inf
    while it < limit:
        norm = scaled(z, c)
        if not np.isfinite(norm):
            raise FloatingPointError(f"block [{', '.join(block.names)}]: the unrolled Newton "
                                     f"iteration on the {be.name} tape diverged at step {it}")
        # round-off reached: tiny, or small and no longer shrinking
        if iterations is None and (norm <= 1e-15 or (norm <= 1e-11 and norm > 0.25 * prev)):
            if extra == 0:
                break
            extra -= 1
        prev = norm
        delta = be.solve(be.jacobian(c_of, z), c)
        # backtracking on the scaled ||c / s||₂ with s fixed at z (Armijo, as the block solver's
        # Newton): the Newton step descends on it, where a max-norm test can stall short of the root
        s = scale_at(z) if block.size else 1.0
        merit = float(np.linalg.norm(be.numeric(c) / s))
        alpha = 1.0
        while True:
            z_new = _substitute(block, be, vals, eps, z - alpha * delta if alpha != 1.0 else z - delta)
            c_new = c_of(z_new)
            new = float(np.linalg.norm(be.numeric(c_new) / s))
            if (np.isfinite(new) and new <= (1 - 1e-4 * alpha) * merit) or alpha < 1e-3 or merit == 0:
                break
            alpha *= 0.5
        z, c, it = z_new, c_new, it + 1
    for n, off, size, shape in zip(block.nodes, block.offsets, block.sizes, block.shapes):
        vals[n] = be.reshape(z[off:off + size], shape)
    return it


# --------------------------------------------------------------------- gradients
def _differentiable_nodes(sched: Schedule) -> list[int]:
    """Defined nodes whose multiplier the tape checks (not boolean comparisons)."""
    return [n for n in sched.defined if sched.step_of[n].prim.differentiable]


# Gradients of <seed, z_o> with respect to the inputs x (λ_x) and the constraint
# perturbations ε_d at 0 (λ_d, SPEC §1: the sensitivity of z_o to relaxing c_d = ε_d).
@gc_paused
def tape_gradients(sched: Schedule, backend: str, inputs: dict[str, Any], seed: Any,
                   guess: dict[str, Any] | None = None, iterations: int | None = None) -> TapeResult:
    """Run the program on the ``backend`` tape and differentiate ``<seed, z_o>``.

    Parameters
    ----------
    sched : Schedule
        ``prog.compile()``.
    backend : {"autograd", "torch"}
    inputs : dict
        Input name -> value.
    seed : array_like
        Cotangent of the output (1.0 for a scalar output).
    guess : dict, optional
        Starting values of block members (as for ``prog.solve``).
    iterations : int, optional
        Newton iterations per cyclic block; by default iterate to round-off.

    Raises
    ------
    NoTapeEquivalent
        When the program uses a user primitive or an op the tape does not know.
    """
    missing = missing_ops(sched, backend)
    if missing:
        raise NoTapeEquivalent(f"op(s) {missing} have no {backend} equivalent "
                               "(user primitives are checked by finite differences alone)")
    be = _Backend(backend)
    seed = np.asarray(seed, dtype=np.float64)
    guess_ids = {sched.index[k]: np.asarray(v, dtype=np.float64) for k, v in (guess or {}).items()}
    nodes = _differentiable_nodes(sched)
    used = [None]
    if backend == "autograd":
        # one scalar leaf s; inputs and perturbations are sources of it (module docstring)
        import autograd
        taps = be.taps
        zeros = {n: np.zeros(sched.shapes[n]) for n in nodes}

        def F(s):
            taps.start(s)
            xs = {i: taps.source(("x", i), inputs[sched.names[i]]) for i in sched.inputs}
            out, used[0] = _run(sched, be, xs, zeros, guess_ids, iterations)
            return be.inner(seed, out)

        value = autograd.value_and_grad(F)(0.0)[0]
        gx = [taps.cotangent(("x", i), sched.shapes[i]) for i in sched.inputs]
        ge = [taps.cotangent(n, sched.shapes[n]) for n in nodes]
    else:
        # ∂s/∂z_d w.r.t. the node's own tensor where it has one on the graph (torch.autograd.grad
        # takes intermediate tensors), else through an ε_d leaf: one backward pass either way
        torch = be.torch
        xs = [be.leaf(inputs[sched.names[i]]) for i in sched.inputs]
        be.seen.update(id(x) for x in xs)
        leaf_of = _LazyLeaves(nodes, lambda n: be.leaf(np.zeros(sched.shapes[n])))
        out, used[0] = _run(sched, be, dict(zip(sched.inputs, xs)), leaf_of, guess_ids, iterations)
        s = be.inner(seed, out)
        wrt = [*xs, *[be.marks.get(n, leaf_of.made.get(n)) for n in nodes]]
        live = [k for k, t in enumerate(wrt) if t is not None]
        grads = torch.autograd.grad(s, [wrt[k] for k in live], allow_unused=True) \
            if live and s.requires_grad else [None] * len(live)
        got = dict(zip(live, grads))
        shapes = [sched.shapes[i] for i in sched.inputs] + [sched.shapes[n] for n in nodes]
        flat = [np.zeros(shape) if got.get(k) is None else got[k].detach().numpy() for k, shape in enumerate(shapes)]
        value, gx, ge = float(s.detach()), flat[:len(xs)], flat[len(xs):]
    grad = {sched.names[i]: np.asarray(g, dtype=np.float64).reshape(sched.shapes[i])
            for i, g in zip(sched.inputs, gx)}
    mult = {sched.names[n]: np.asarray(g, dtype=np.float64).reshape(sched.shapes[n])
            for n, g in zip(nodes, ge)}
    notes = []
    if any(sp.issparse(v) for _, v in sched.constants):
        big = any(sp.issparse(v) and np.prod(v.shape) > DENSE_SPARSE_LIMIT for _, v in sched.constants)
        notes.append("scipy.sparse constants: " + (
            "a sparse product whose VJP is Wᵀg (the tape has no sparse rules)" if big
            else "multiplied as dense copies"))
    return TapeResult(backend, float(value), grad, mult,
                      used[0] if sched.blocks else None, notes)

