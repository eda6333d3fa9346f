"""Benchmark lagrangeprop against HIPS autograd, PyTorch (CPU, float64) and hand-written numpy.

Every program is compiled once and then timed the way a user calls it: ``prog.solve(**inputs)``
(forward + multipliers, the "grad" column) and ``prog.evaluate(**inputs)`` (forward only, "fwd").
Times are medians of repeated runs (timeit-style: each sample loops ``number`` calls so that it
lasts >= 2 ms, garbage collection off), all in this one process. Programs marked ``memory`` also
run one gradient call per system in a subprocess of its own and report the peak resident memory it
adds (``VmHWM`` after a reset).

Usage::

    python benchmarks/run.py                  # everything (several minutes)
    python benchmarks/run.py --quick          # smoke run, small sizes, < 1 minute
    python benchmarks/run.py --only chain     # programs whose name contains "chain"
    python benchmarks/run.py --systems lagrangeprop,numpy

Columns: ``grad``/``fwd`` times, ``grad/fwd``, ``lp/sys`` = lagrangeprop's grad time divided by
this system's (< 1: lagrangeprop is faster), ``peak MB`` and ``err`` = max relative difference of
this system's gradient from the hand-written numpy one (or from lagrangeprop's when there is none).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import scipy.special

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

SYSTEMS = ("lagrangeprop", "autograd", "torch", "numpy")
QUICK = False


@dataclass
class Impl:
    grad: Callable[[], Any]          # one gradient evaluation (forward + reverse)
    fwd: Callable[[], Any]           # one forward evaluation
    flat: Callable[[Any], np.ndarray] = None  # gradient result -> flat float64 vector
    compile_s: float | None = None   # lagrangeprop: trace + compile time
    note: str = ""


def _flat(g) -> np.ndarray:
    if isinstance(g, dict):
        return np.concatenate([_flat(g[k]) for k in sorted(g)])
    if isinstance(g, (tuple, list)):
        return np.concatenate([_flat(v) for v in g])
    if hasattr(g, "detach"):
        return g.detach().numpy().astype(np.float64).ravel()
    return np.ravel(np.asarray(g, dtype=np.float64))


def _torch():
    import torch
    torch.set_default_dtype(torch.float64)
    # one thread, like numpy under OPENBLAS_NUM_THREADS=1: a fair comparison, and no idle OpenMP
    # workers spinning on the second core while the other systems are timed in this process
    torch.set_num_threads(1)
    return torch


def _lp_impl(build: Callable[[], Any], inputs: dict, **solve_kw) -> Impl:
    """Compile once (``build`` returns a Program), then time solve / evaluate."""
    from lagrangeprop.compile.plan import plan_of
    t0 = time.perf_counter()
    prog = build()
    plan_of(prog.compile())          # the execution plan too: built on the first solve otherwise
    compile_s = time.perf_counter() - t0
    names = sorted(inputs)

    def grad():
        return prog.solve(**inputs, **solve_kw).grad

    def fwd():
        return prog.evaluate(**inputs, **solve_kw)
    return Impl(grad, fwd, lambda g: np.concatenate([np.ravel(g[k]) for k in names]), compile_s)


# =================================================================== programs
CASES: dict[str, tuple[Callable, bool, bool]] = {}
SINGLE: set[str] = set()   # programs timed by one cold gradient call (no forward column): minutes per call


def case(name: str, memory: bool = False, quick: bool = True, single: bool = False):
    def deco(fn):
        CASES[name] = (fn, memory, quick)
        if single:
            SINGLE.add(name)
        return fn
    return deco


def _scalar_impl(system: str, make_f: Callable[[Any], Callable], x0: float) -> Impl | None:
    """lagrangeprop / autograd / PyTorch implementations of the scalar function ``make_f(module)``
    (``module`` supplies exp, sin, tanh); None for the hand-written numpy system."""
    if system == "lagrangeprop":
        import lagrangeprop as lp
        return _lp_impl(lambda: lp.trace(make_f(lp), x=x0), {"x": x0})
    if system == "autograd":
        import autograd
        import autograd.numpy as anp
        f = make_f(anp)
        return Impl(lambda: autograd.grad(f)(x0), lambda: f(x0))
    if system == "torch":
        torch = _torch()
        f = make_f(torch)

        def grad():
            x = torch.tensor(x0, requires_grad=True)
            f(x).backward()
            return x.grad

        def fwd():
            with torch.no_grad():
                return f(torch.tensor(x0))
        return Impl(grad, fwd)
    return None


# ----------------------------------------------------------------- blog (scalar)
def _blog_f(m):
    def f(x):
        a = m.exp(x)
        b = a**2
        c = a + b
        return m.exp(c) + m.sin(c)
    return f


@case("blog")
def blog(system: str):
    x0 = 0.5
    impl = _scalar_impl(system, _blog_f, x0)
    if impl is not None:
        return impl

    def grad():
        a = np.exp(x0)
        c = a + a * a
        return (np.exp(c) + np.cos(c)) * (1.0 + 2.0 * a) * a
    return Impl(grad, lambda: _blog_f(np)(x0))


# ----------------------------------------------------------------- chain-N
def _chain_f(m, n):
    def f(x):
        v = x
        for k in range(n):
            r = k % 4
            if r == 0:
                v = m.sin(v)
            elif r == 1:
                v = v * 1.01
            elif r == 2:
                v = v + 0.1
            else:
                v = m.tanh(v)
        return v
    return f


def _chain(system: str, n: int):
    x0 = 0.3
    impl = _scalar_impl(system, lambda m: _chain_f(m, n), x0)
    if impl is not None:
        return impl

    def grad():   # hand-written: forward keeps the local partials, reverse multiplies them
        v, d = x0, []
        for k in range(n):
            r = k % 4
            if r == 0:
                d.append(np.cos(v))
                v = np.sin(v)
            elif r == 1:
                d.append(1.01)
                v = v * 1.01
            elif r == 2:
                v = v + 0.1
            else:
                v = np.tanh(v)
                d.append(1.0 - v * v)
        g = 1.0
        for p in reversed(d):
            g = g * p
        return g
    return Impl(grad, lambda: _chain_f(np, n)(x0))


for _n, _mem, _quick in ((1000, False, True), (10_000, False, True), (100_000, True, False)):
    case(f"chain-{_n}", memory=_mem, quick=_quick)(lambda system, n=_n: _chain(system, n))


# ----------------------------------------------------------------- wide-N
# N independent scalar chains of length 10 from one input, summed by a pairwise tree.
WIDE_OPS = ("mul_c", "sin", "add", "tanh", "mul", "sin", "add", "tanh", "mul", "sin")


def _wide_f(m, n):
    scales = [1.0 + k / n for k in range(n)]

    def f(x):
        ys = [x * s for s in scales]
        for op in WIDE_OPS[1:]:
            if op == "sin":
                ys = [m.sin(y) for y in ys]
            elif op == "tanh":
                ys = [m.tanh(y) for y in ys]
            elif op == "add":
                ys = [y + 0.1 for y in ys]
            else:
                ys = [y * 1.01 for y in ys]
        while len(ys) > 1:
            ys = [ys[k] + ys[k + 1] for k in range(0, len(ys) - 1, 2)] + ys[len(ys) - len(ys) % 2:]
        return ys[0]
    return f


def _wide(system: str, n: int):
    x0 = 0.3
    impl = _scalar_impl(system, lambda m: _wide_f(m, n), x0)
    if impl is not None:
        return impl

    s = 1.0 + np.arange(n) / n

    def fwd():
        v = np.tanh(np.sin(x0 * s) + 0.1)
        v = np.tanh(np.sin(v * 1.01) + 0.1)
        return np.sum(np.sin(v * 1.01))

    def grad():   # vectorized over the chains: the numpy-speed floor
        a1 = x0 * s
        a2 = np.sin(a1) + 0.1
        a3 = np.tanh(a2)
        a4 = a3 * 1.01
        a5 = np.sin(a4) + 0.1
        a6 = np.tanh(a5)
        a7 = a6 * 1.01
        d = np.cos(a7) * 1.01 * (1 - a6**2) * np.cos(a4) * 1.01 * (1 - a3**2) * np.cos(a1) * s
        return np.sum(d)
    return Impl(grad, fwd)


for _n, _mem, _quick in ((1000, False, True), (10_000, True, False)):
    case(f"wide-{_n}", memory=_mem, quick=_quick)(lambda system, n=_n: _wide(system, n))


# ----------------------------------------------------------------- MLP
def _mlp_data():
    rng = np.random.default_rng(0)
    B, sizes = 256, (784, 256, 256, 10)
    X = rng.standard_normal((B, sizes[0]))
    Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], B)]
    params = {}
    for k in range(3):
        params[f"W{k + 1}"] = rng.standard_normal((sizes[k], sizes[k + 1])) / np.sqrt(sizes[k])
        params[f"b{k + 1}"] = 0.1 * rng.standard_normal(sizes[k + 1])
    return X, Y, params


def _mlp_f(m, X, Y, lse):
    def mlp(W1, b1, W2, b2, W3, b3):
        h1 = m.tanh(X @ W1 + b1)
        h2 = m.tanh(h1 @ W2 + b2)
        logits = h2 @ W3 + b3
        logp = logits - lse(logits)
        return -m.sum(Y * logp) / X.shape[0]
    return mlp


@case("mlp", memory=True)
def mlp(system: str):
    X, Y, params = _mlp_data()
    names = sorted(params)
    if system == "lagrangeprop":
        import lagrangeprop as lp
        f = _mlp_f(lp, X, Y, lambda z: lp.logsumexp(z, axis=1, keepdims=True))
        return _lp_impl(lambda: lp.trace(f, **params), params)
    if system == "autograd":
        import autograd
        import autograd.numpy as anp
        from autograd.scipy.special import logsumexp
        f = _mlp_f(anp, X, Y, lambda z: logsumexp(z, axis=1, keepdims=True))
        order = ["W1", "b1", "W2", "b2", "W3", "b3"]
        g = autograd.grad(lambda p: f(*p), 0)
        args = [params[k] for k in order]
        return Impl(lambda: dict(zip(order, g(args))), lambda: f(*args))
    if system == "torch":
        torch = _torch()
        Xt, Yt = torch.tensor(X), torch.tensor(Y)
        f = _mlp_f(torch, Xt, Yt, lambda z: torch.logsumexp(z, dim=1, keepdim=True))
        order = ["W1", "b1", "W2", "b2", "W3", "b3"]
        ps = [torch.tensor(params[k], requires_grad=True) for k in order]

        def grad():
            return dict(zip(order, torch.autograd.grad(f(*ps), ps)))

        def fwd():
            with torch.no_grad():
                return f(*ps)
        return Impl(grad, fwd)

    p = params
    B = X.shape[0]

    def fwd():
        h1 = np.tanh(X @ p["W1"] + p["b1"])
        h2 = np.tanh(h1 @ p["W2"] + p["b2"])
        lo = h2 @ p["W3"] + p["b3"]
        return -np.sum(Y * (lo - scipy.special.logsumexp(lo, axis=1, keepdims=True))) / B

    def grad():
        h1 = np.tanh(X @ p["W1"] + p["b1"])
        h2 = np.tanh(h1 @ p["W2"] + p["b2"])
        lo = h2 @ p["W3"] + p["b3"]
        lse = scipy.special.logsumexp(lo, axis=1, keepdims=True)
        _ = -np.sum(Y * (lo - lse)) / B
        dlo = (np.exp(lo - lse) * Y.sum(axis=1, keepdims=True) - Y) / B
        da2 = (dlo @ p["W3"].T) * (1.0 - h2**2)
        da1 = (da2 @ p["W2"].T) * (1.0 - h1**2)
        return {"W3": h2.T @ dlo, "b3": dlo.sum(0), "W2": h1.T @ da2, "b2": da2.sum(0),
                "W1": X.T @ da1, "b1": da1.sum(0)}
    return Impl(grad, fwd, lambda g: np.concatenate([np.ravel(g[k]) for k in names]))


# ----------------------------------------------------------------- logistic regression
@case("logistic")
def logistic(system: str):
    rng = np.random.default_rng(1)
    N, d = 10_000, 100
    X = rng.standard_normal((N, d))
    y = (rng.random(N) < scipy.special.expit(X @ rng.standard_normal(d) * 0.3)).astype(float)
    w0 = 0.01 * rng.standard_normal(d)

    def f_of(m, X, y, logaddexp):
        def logistic(w):
            z = X @ w
            return m.mean(logaddexp(z) - y * z)
        return logistic
    if system == "lagrangeprop":
        import lagrangeprop as lp
        f = f_of(lp, X, y, lambda z: lp.logaddexp(0.0, z))
        return _lp_impl(lambda: lp.trace(f, w=w0), {"w": w0})
    if system == "autograd":
        import autograd
        import autograd.numpy as anp
        f = f_of(anp, X, y, lambda z: anp.logaddexp(0.0, z))
        return Impl(lambda: autograd.grad(f)(w0), lambda: f(w0))
    if system == "torch":
        torch = _torch()
        zero = torch.tensor(0.0)
        f = f_of(torch, torch.tensor(X), torch.tensor(y), lambda z: torch.logaddexp(zero, z))
        w = torch.tensor(w0, requires_grad=True)

        def fwd():
            with torch.no_grad():
                return f(w)
        return Impl(lambda: torch.autograd.grad(f(w), [w])[0], fwd)

    def fwd():
        z = X @ w0
        return np.mean(np.logaddexp(0.0, z) - y * z)

    def grad():
        z = X @ w0
        _ = np.mean(np.logaddexp(0.0, z) - y * z)
        return X.T @ (scipy.special.expit(z) - y) / N
    return Impl(grad, fwd)


# ----------------------------------------------------------------- Taylor fit
@case("taylor")
def taylor(system: str):
    M, deg = 200, 8
    t = np.linspace(-1.0, 1.0, M)
    y = np.sin(2.0 * t)
    c0 = np.random.default_rng(2).standard_normal(deg + 1) / np.arange(1, deg + 2)
    a0 = 0.1

    def f_of(m, t, y):
        def taylor(c, a):
            u = t - a
            p = c[0] + c[1] * u
            pw = u
            for k in range(2, deg + 1):
                pw = pw * u
                p = p + c[k] * pw
            r = p - y
            return m.mean(r * r)
        return taylor
    if system == "lagrangeprop":
        import lagrangeprop as lp
        return _lp_impl(lambda: lp.trace(f_of(lp, t, y), c=c0, a=a0), {"c": c0, "a": a0})
    if system == "autograd":
        import autograd
        import autograd.numpy as anp
        f = f_of(anp, t, y)
        g = autograd.grad(f, (0, 1))
        return Impl(lambda: dict(zip("ac", reversed(g(c0, a0)))), lambda: f(c0, a0))
    if system == "torch":
        torch = _torch()
        f = f_of(torch, torch.tensor(t), torch.tensor(y))
        c, a = torch.tensor(c0, requires_grad=True), torch.tensor(a0, requires_grad=True)

        def fwd():
            with torch.no_grad():
                return f(c, a)
        return Impl(lambda: dict(zip("ca", torch.autograd.grad(f(c, a), [c, a]))), fwd)
    k = np.arange(deg + 1)

    def fwd():
        r = np.polynomial.polynomial.polyval(t - a0, c0) - y
        return np.mean(r * r)

    def grad():
        u = t - a0
        P = u[None, :] ** k[:, None]                       # (deg+1, M) powers
        r = c0 @ P - y
        dp = 2.0 * r / M
        dc = P @ dp
        dpdu = (k[1:] * c0[1:]) @ P[:-1]
        return {"a": -np.dot(dp, dpdu), "c": dc}
    return Impl(grad, fwd, lambda g: np.concatenate([np.ravel(g["a"]), np.ravel(g["c"])]))


# ----------------------------------------------------------------- RK4 check
# Lotka-Volterra u' = a u - b u v, v' = d u v - c v, classic RK4 (h = 0.05) for `steps`
# steps, loss u² + v at the end; inputs y0 (2,) and theta = (a, b, c, d). 200 steps trace
# to 13 210 scalar nodes.
RK4_Y0, RK4_THETA = np.array([1.0, 0.5]), np.array([1.1, 0.4, 0.4, 0.1])


def rk4_f(m, steps: int = 200):
    """The RK4 integrator written against ``m`` (lagrangeprop, autograd.numpy, torch, numpy)."""
    def f(y0, theta):
        a, b, c, d = theta[0], theta[1], theta[2], theta[3]
        u, v = y0[0], y0[1]
        h = 0.05

        def rhs(u, v):
            uv = u * v
            return a * u - b * uv, d * uv - c * v
        for _ in range(steps):
            k1u, k1v = rhs(u, v)
            k2u, k2v = rhs(u + 0.5 * h * k1u, v + 0.5 * h * k1v)
            k3u, k3v = rhs(u + 0.5 * h * k2u, v + 0.5 * h * k2v)
            k4u, k4v = rhs(u + h * k3u, v + h * k3v)
            u = u + (h / 6) * (k1u + 2 * k2u + 2 * k3u + k4u)
            v = v + (h / 6) * (k1v + 2 * k2v + 2 * k3v + k4v)
        return u * u + v
    return f


@case("rk4-200 check")
def rk4_check(system: str):
    """lagrangeprop: ``lp.check`` of the traced program (every reference, every multiplier),
    the "grad" column; autograd: ``autograd.grad`` of the plain numpy function. ``lp/sys`` on
    the autograd row is the check's cost in autograd gradients (issue 11: at most 20)."""
    inputs = {"y0": RK4_Y0, "theta": RK4_THETA}
    if system == "lagrangeprop":
        import lagrangeprop as lp
        from lagrangeprop.compile.plan import plan_of
        t0 = time.perf_counter()
        prog = lp.trace(rk4_f(lp), **inputs)
        plan_of(prog.compile())
        compile_s = time.perf_counter() - t0
        nodes = prog.graph.number_of_nodes()

        def check():
            report = lp.check(prog, inputs)
            if not report.ok:
                raise AssertionError(f"lp.check of rk4-200 failed:\n{report}")
            return {k: report.rows[i]["lagrangian"] for i, k in enumerate(("y0", "theta"))}
        refs = "autograd + torch tapes + FD" if _has("torch") else "autograd tape + FD"
        return Impl(check, lambda: prog.evaluate(**inputs),
                    lambda g: np.concatenate([np.ravel(g["theta"]), np.ravel(g["y0"])]), compile_s,
                    note=f"lp.check: {refs}, all {nodes} nodes' multipliers")
    if system == "autograd":
        import autograd
        import autograd.numpy as anp
        f = rk4_f(anp)
        g = autograd.grad(f, (0, 1))
        return Impl(lambda: dict(zip(("y0", "theta"), g(RK4_Y0, RK4_THETA))), lambda: f(RK4_Y0, RK4_THETA),
                    lambda g: np.concatenate([np.ravel(g["theta"]), np.ravel(g["y0"])]),
                    note="autograd.grad of the numpy function")
    return None


def _has(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


# ----------------------------------------------------------------- fixed point
def _fp_data(n: int, m: int = 50):
    rng = np.random.default_rng(3)
    W = sp.random(n, n, density=5.0 / n, random_state=rng, format="csr")
    W.data = rng.standard_normal(W.nnz)
    W = (W * (0.5 / np.max(np.abs(W).sum(axis=1)))).tocsr()   # |W|_inf = 0.5: a contraction
    U = rng.standard_normal((n, m)) / np.sqrt(m)
    x0 = rng.standard_normal(m)
    return W, U, x0


FP_TOL = 1e-10


def _torch_fixed_point(torch, W, ux, n: int):
    """``z = tanh(W z + ux)`` by forward iteration from 0 to ``FP_TOL`` (no graph)."""
    with torch.no_grad():
        z = torch.zeros(n)
        while True:
            z_new = torch.tanh(W @ z + ux)
            if torch.max(torch.abs(z_new - z)) <= FP_TOL:
                return z_new
            z = z_new


def _fixed_point(system: str, n: int):
    W, U, x0 = _fp_data(n)
    WT = W.T.tocsr()
    if system == "lagrangeprop":
        import lagrangeprop as lp

        def build():
            prog = lp.Program(name=f"fixed_point_{n}")
            x = prog.input("x", shape=x0.shape)
            z = prog.variable("z", shape=(n,))
            prog.define(z, lp.tanh(lp.matmul(W, z) + U @ x))
            prog.output(0.5 * lp.sum(z * z), name="loss")
            return prog
        return _lp_impl(build, {"x": x0}, tol=FP_TOL)
    if system == "autograd":
        import autograd
        import autograd.numpy as anp
        from autograd.extend import defvjp, primitive
        from autograd.misc.fixed_points import fixed_point

        @primitive
        def spmv(z):
            return W @ z
        defvjp(spmv, lambda ans, z: lambda g: WT @ g)

        def step(x):
            ux = anp.dot(U, x)
            return lambda z: anp.tanh(spmv(z) + ux)

        def dist(a, b):
            return anp.max(anp.abs(a - b))

        def loss(x):
            z = fixed_point(step, x, np.zeros(n), dist, FP_TOL)
            return 0.5 * anp.sum(z * z)
        return Impl(lambda: autograd.grad(loss)(x0), lambda: loss(x0), note="autograd.misc.fixed_point")
    if system == "torch":
        torch = _torch()
        Wt = torch.sparse_csr_tensor(torch.tensor(W.indptr), torch.tensor(W.indices),
                                     torch.tensor(W.data), size=W.shape)
        Ut, xt = torch.tensor(U), torch.tensor(x0)

        def forward(x):
            return _torch_fixed_point(torch, Wt, Ut @ x, n)

        def grad():   # implicit: adjoint fixed point w = g + J_zᵀ w by vjp iteration
            z = forward(xt).requires_grad_()
            x = xt.clone().requires_grad_()
            fz = torch.tanh(Wt @ z + Ut @ x)
            g = z.detach()
            w = g.clone()
            while True:
                (v,) = torch.autograd.grad(fz, z, w, retain_graph=True)
                w_new = g + v
                if torch.max(torch.abs(w_new - w)) <= FP_TOL:
                    break
                w = w_new
            return torch.autograd.grad(fz, x, w_new)[0]
        return Impl(grad, lambda: 0.5 * torch.sum(forward(xt) ** 2), note="vjp-iteration adjoint")

    def forward():
        ux = U @ x0
        z = np.zeros(n)
        while True:
            z_new = np.tanh(W @ z + ux)
            if np.max(np.abs(z_new - z)) <= FP_TOL:
                return z_new
            z = z_new

    def grad():   # transposed iteration w = g + Wᵀ(a ⊙ w), a = 1 - z²
        z = forward()
        a = 1.0 - z * z
        g = z
        w = g.copy()
        while True:
            w_new = g + WT @ (a * w)
            if np.max(np.abs(w_new - w)) <= FP_TOL:
                break
            w = w_new
        return U.T @ (a * w_new)
    return Impl(grad, lambda: 0.5 * np.sum(forward() ** 2), note="transposed iteration")


for _n, _quick in ((2000, True), (20_000, False)):
    case(f"fixedpoint-{_n}", memory=True, quick=_quick)(lambda system, n=_n: _fixed_point(system, n))


@case("fixedpoint-2000-dense", memory=True, quick=False)
def _fixed_point_dense(system: str, n: int = 2000):
    """The issue's implicit-differentiation peer: PyTorch forward iteration, then the adjoint
    by one dense solve ``(I - J)ᵀ w = g`` with ``J = diag(1 - z²) W`` (``torch.linalg.solve``)."""
    if system == "lagrangeprop":
        return _fixed_point(system, n)
    if system != "torch":
        return None
    W, U, x0 = _fp_data(n)
    torch = _torch()
    Wd, Ut, xt = torch.tensor(W.toarray()), torch.tensor(U), torch.tensor(x0)

    def forward():
        return _torch_fixed_point(torch, Wd, Ut @ xt, n)

    def grad():
        z = forward()
        a = 1.0 - z * z
        J = a[:, None] * Wd
        w = torch.linalg.solve((torch.eye(n) - J).T, z)
        return Ut.T @ (a * w)
    return Impl(grad, lambda: 0.5 * torch.sum(forward() ** 2), note="dense implicit solve")


# ----------------------------------------------------------------- Sellar
@case("sellar")
def sellar(system: str):
    x0, z0 = 1.0, np.array([5.0, 2.0])
    if system == "lagrangeprop":
        import lagrangeprop as lp

        def build():
            prog = lp.Program(name="sellar")
            x = prog.input("x")
            z = prog.input("z", shape=(2,))
            y1 = prog.variable("y1")
            y2 = prog.variable("y2")
            prog.define(y1, z[0] ** 2 + z[1] + x - 0.2 * y2)
            prog.define(y2, lp.sqrt(y1) + z[0] + z[1])
            prog.output(x**2 + z[1] + y1 + lp.exp(-y2), name="obj")
            return prog
        return _lp_impl(build, {"x": x0, "z": z0}, guess={"y1": 1.0, "y2": 1.0})
    if system == "autograd":
        import autograd
        import autograd.numpy as anp
        from autograd.misc.fixed_points import fixed_point

        def step(p):   # Gauss-Seidel sweep of the two disciplines
            def f(y):
                y1 = p[1] ** 2 + p[2] + p[0] - 0.2 * y[1]
                return anp.array([y1, anp.sqrt(y1) + p[1] + p[2]])
            return f

        def obj(p):
            y = fixed_point(step, p, np.ones(2), lambda a, b: anp.max(anp.abs(a - b)), 1e-12)
            return p[0] ** 2 + p[2] + y[0] + anp.exp(-y[1])
        p0 = np.array([x0, *z0])
        return Impl(lambda: autograd.grad(obj)(p0), lambda: obj(p0), note="autograd.misc.fixed_point")
    if system == "torch":
        torch = _torch()
        p0 = torch.tensor([x0, *z0])

        def obj(p):   # unrolled Gauss-Seidel to convergence, backprop through the loop
            y2 = torch.tensor(1.0)
            while True:
                y1 = p[1] ** 2 + p[2] + p[0] - 0.2 * y2
                y2_new = torch.sqrt(y1) + p[1] + p[2]
                if abs(float(y2_new - y2)) <= 1e-12:
                    break
                y2 = y2_new
            return p[0] ** 2 + p[2] + y1 + torch.exp(-y2_new)

        def grad():
            p = p0.clone().requires_grad_()
            return torch.autograd.grad(obj(p), [p])[0]

        def fwd():
            with torch.no_grad():
                return obj(p0)
        return Impl(grad, fwd, note="unrolled loop")

    def newton():
        x, (a, b) = x0, z0
        y1, y2 = 1.0, 1.0
        for _ in range(50):
            c = np.array([y1 - (a * a + b + x - 0.2 * y2), y2 - (np.sqrt(y1) + a + b)])
            A = np.array([[1.0, 0.2], [-0.5 / np.sqrt(y1), 1.0]])
            if np.max(np.abs(c)) <= 1e-12 * max(1.0, abs(y1), abs(y2)):
                return y1, y2, A
            dy = np.linalg.solve(A, -c)
            y1, y2 = y1 + dy[0], y2 + dy[1]
        raise RuntimeError("sellar newton did not converge")

    def grad():   # Aᵀλ = ∂obj/∂y ; ∇ = ∂obj/∂p + λ·∂f/∂p
        y1, y2, A = newton()
        lam = np.linalg.solve(A.T, np.array([1.0, -np.exp(-y2)]))
        a = z0[0]
        return {"x": 2.0 * x0 + lam[0], "z": np.array([2.0 * a * lam[0] + lam[1], 1.0 + lam[0] + lam[1]])}

    def fwd():
        y1, y2, _ = newton()
        return x0**2 + z0[1] + y1 + np.exp(-y2)
    return Impl(grad, fwd, lambda g: np.concatenate([np.ravel(g["x"]), g["z"]]), note="Newton + 2x2 adjoint")


# ----------------------------------------------------------------- Bratu
def _bratu_data(N: int):
    h = 1.0 / (N + 1)
    T = sp.diags([-np.ones(N - 1), 2 * np.ones(N), -np.ones(N - 1)], [-1, 0, 1])
    L = (sp.kron(sp.identity(N), T) + sp.kron(T, sp.identity(N))).tocsr() / h**2   # -Δ
    f = np.random.default_rng(4).random(N * N)
    return L, f, h


def _bratu(system: str, N: int):
    L, f0, h = _bratu_data(N)
    lam0 = 1.0
    if system == "lagrangeprop":
        import lagrangeprop as lp

        def build():
            prog = lp.Program(name=f"bratu_{N}")
            lam = prog.input("lam")
            f = prog.input("f", shape=(N * N,))
            u = prog.variable("u", shape=(N * N,))
            prog.residual(u, lp.matmul(L, u) - lam * lp.exp(u) - f)
            prog.output(h * h * lp.sum(u), name="J")
            return prog
        return _lp_impl(build, {"lam": lam0, "f": f0})
    if system != "numpy":
        return None   # no sparse direct implicit solve in autograd / torch

    def newton():
        u = np.zeros(N * N)
        for _ in range(50):
            e = lam0 * np.exp(u)
            Lu = L @ u
            r = Lu - e - f0
            J = (L - sp.diags(e)).tocsc()
            # lagrangeprop's test: tol·max(1, max|z|) over the block's values (u, L u, eᵘ, ...); at
            # N = 1000 the rounding of L u (entries 4·10⁶) alone is ~1e-10
            if np.max(np.abs(r)) <= 1e-10 * max(1.0, np.max(np.abs(u)), np.max(np.abs(Lu)), np.max(np.abs(e))):
                return u, e, J
            u = u - spla.splu(J).solve(r)
        raise RuntimeError("bratu newton did not converge")

    def grad():   # Jᵀ λ = ∂J/∂u at the solution; ∇_lam = λ·e^u, ∇_f = λ
        u, e, J = newton()
        lam = spla.splu(J).solve(np.full(N * N, h * h), trans="T")
        return {"f": lam, "lam": np.dot(lam, e / lam0)}

    def fwd():
        return h * h * np.sum(newton()[0])
    return Impl(grad, fwd, lambda g: np.concatenate([np.ravel(g["f"]), np.ravel(g["lam"])]),
                note="Newton + splu adjoint")


for _n, _quick in ((100, True), (300, False), (1000, False)):
    case(f"bratu-{_n}", memory=True, quick=_quick, single=_n >= 1000)(lambda system, n=_n: _bratu(system, n))


# =================================================================== measuring
def measure(fn: Callable[[], Any], budget: float) -> float:
    """Median seconds per call: a warm-up, then ``repeat`` samples of ``number`` calls each."""
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    if first >= budget:          # one call already exceeds the budget: it is the sample
        return first
    number = int(min(10_000, max(1, 2e-3 / max(first, 1e-9))))
    repeat = int(min(25, max(3, budget / (first * number))))
    samples = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            t = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - t) / number)
    finally:
        gc.enable()
    return statistics.median(samples)


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _peak_mb(fn: Callable[[], Any]) -> tuple[float | None, Any]:
    """Peak resident memory (MB) one call adds over what is resident before it, and its result."""
    try:
        gc.collect()
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")     # reset VmHWM to the current RSS
        base = _rss_kb("VmRSS")
        out = fn()
        return (_rss_kb("VmHWM") - base) / 1024.0, out
    except OSError:
        return None, fn()


def run_one(name: str, system: str, budget: float, memory: bool, grad_path: str | None = None,
            timings: bool = True) -> dict:
    build = CASES[name][0]
    try:
        impl = build(system)
    except ImportError as exc:
        return {"status": f"not installed ({exc.name})"}
    if impl is None:
        return {"status": "n/a"}
    res: dict = {"status": "ok", "note": impl.note, "compile_s": impl.compile_s}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            peak, g = _peak_mb(impl.grad) if memory else (None, impl.grad())
            if name in SINGLE:   # the first (cold) call is the measurement; lagrangeprop: also a second one
                res["grad_s"], res["fwd_s"] = time.perf_counter() - t, None
                if system == "lagrangeprop":
                    t = time.perf_counter()
                    impl.grad()
                    res["note"] = f"cold call; 2nd call {_fmt_t(time.perf_counter() - t)}"
                else:
                    res["note"] = (impl.note + "; " if impl.note else "") + "one cold call"
            elif timings:
                res["grad_s"] = measure(impl.grad, budget)
                res["fwd_s"] = measure(impl.fwd, budget)
    except Exception as exc:   # report, keep going with the other systems
        return {"status": f"error: {type(exc).__name__}: {str(exc)[:120]}"}
    res["peak_mb"] = peak
    flat = (impl.flat or _flat)(g)
    if grad_path:
        np.save(grad_path, flat)
    else:
        res["grad"] = flat
    return res


def run_child(name: str, system: str, budget: float, timeout: float, peak_only: bool = False) -> dict:
    """``run_one`` in a fresh process (its peak memory is this system's alone)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "grad.npy")
        cmd = [sys.executable, os.path.abspath(__file__), "--child", name, system, "--budget", str(budget),
               "--grad-out", path] + (["--peak-only"] if peak_only else [])
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": f"timeout (> {timeout:.0f} s for the whole measurement)"}
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            return {"status": f"error: {tail[:120]}"}
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        if os.path.exists(path):
            res["grad"] = np.load(path)
        return res


def _fmt_t(s):
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def main(argv=None) -> int:
    global QUICK
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, short timing budget")
    ap.add_argument("--only", action="append", default=[], help="run programs whose name contains this")
    ap.add_argument("--skip", action="append", default=[], help="leave out programs named exactly this")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every system this many times, interleaved, and report the medians")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--budget", type=float, default=None, help="seconds per timing (default 1, quick 0.05)")
    ap.add_argument("--child", nargs=2, metavar=("PROGRAM", "SYSTEM"), help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per subprocess measurement (default 900, quick 60)")
    ap.add_argument("--grad-out", help=argparse.SUPPRESS)
    ap.add_argument("--peak-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    QUICK = args.quick
    budget = args.budget if args.budget is not None else (0.05 if args.quick else 1.0)
    timeout = args.timeout if args.timeout is not None else (60.0 if args.quick else 900.0)

    if args.child:
        name, system = args.child
        res = run_one(name, system, budget, memory=True, grad_path=args.grad_out, timings=not args.peak_only)
        print(json.dumps(res, default=float))
        return 0

    systems = [s for s in args.systems.split(",") if s]
    names = [n for n, (_, _, quick) in CASES.items()
             if (quick or not args.quick) and (not args.only or any(o in n for o in args.only))
             and n not in args.skip]
    rows, results = [], {}
    for name in names:
        _, memory, _ = CASES[name]
        per = {}
        for rnd in range(1 if name in SINGLE else args.rounds):
            for system in systems:
                if name in SINGLE:        # one cold call per system, each in a fresh process
                    per[system] = run_child(name, system, budget, timeout * 3)
                elif rnd == 0:            # times in this one process; peak memory in a process of its own
                    per[system] = run_one(name, system, budget, memory=False)
                    per[system]["rounds"] = [(per[system].get("grad_s"), per[system].get("fwd_s"))]
                    if memory and per[system]["status"] == "ok":
                        mem = run_child(name, system, budget, timeout, peak_only=True)
                        per[system]["peak_mb"] = mem.get("peak_mb") if mem["status"] == "ok" else None
                elif per[system]["status"] == "ok":   # another round, interleaved with the other systems
                    again = run_one(name, system, budget, memory=False)
                    if again["status"] == "ok":
                        per[system]["rounds"].append((again["grad_s"], again["fwd_s"]))
                print(f"  {name:16s} {system:13s} {per[system]['status']}", file=sys.stderr, flush=True)
        for r in per.values():    # the median round (by gradient time) of each system
            rounds = [x for x in r.pop("rounds", []) if x[0] is not None]
            if len(rounds) > 1:
                r["grad_s"], r["fwd_s"] = statistics.median(x[0] for x in rounds), \
                    statistics.median(x[1] for x in rounds)
        results[name] = per
        rows.extend(_rows(name, per))
    _print_table(rows)
    for name, per in results.items():
        c = per.get("lagrangeprop", {}).get("compile_s")
        if c is not None:
            print(f"  lagrangeprop trace+compile {name}: {_fmt_t(c)}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({n: {s: {k: v for k, v in r.items() if k != "grad"} for s, r in p.items()}
                       for n, p in results.items()}, fh, indent=1, default=float)
    return 0


def _rows(name: str, per: dict) -> list[tuple]:
    ref = per.get("numpy", {}).get("grad")
    if ref is None:
        ref = per.get("lagrangeprop", {}).get("grad")
    lp_t = per.get("lagrangeprop", {}).get("grad_s")
    rows = []
    for system, r in per.items():
        if r["status"] != "ok":
            rows.append((name, system, r["status"], "", "", "", "", "", ""))
            continue
        err = "-"
        g = r.get("grad")
        if ref is not None and g is not None and g.shape == ref.shape:
            err = f"{np.max(np.abs(g - ref)) / max(1e-300, np.max(np.abs(ref))):.0e}"
        elif g is not None and ref is not None:
            err = "shape!"
        ratio = f"{lp_t / r['grad_s']:.2f}" if lp_t else "-"
        peak = "-" if r.get("peak_mb") is None else f"{r['peak_mb']:.0f}"
        gf = f"{r['grad_s'] / r['fwd_s']:.2f}" if r.get("fwd_s") else "-"
        rows.append((name, system, _fmt_t(r["grad_s"]), _fmt_t(r.get("fwd_s")), gf, ratio, peak, err,
                     r.get("note") or ""))
    return rows


def _print_table(rows: list[tuple]) -> None:
    head = ("program", "system", "grad", "fwd", "grad/fwd", "lp/sys", "peak MB", "err", "note")
    widths = [max(len(str(r[k])) for r in [head, *rows]) for k in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print(line)
    prev = None
    for r in rows:
        if prev is not None and r[0] != prev:
            print()
        prev = r[0]
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
