"""``check_grads`` in autograd's style for traced numpy code (shared by the op tests).

A test writes its function once against a numpy *module*, ``fun(np, *args)``; it runs

- with plain numpy on concrete arrays: the forward value lagrangeprop must reproduce
  (numpy itself is the reference for forward semantics, not our own graph);
- traced by lagrangeprop (numpy's protocols dispatch to the ``lp`` ops);
- with ``autograd.numpy``: HIPS autograd's own rules, the reference for VJPs, JVPs and
  Hessian-vector products;
- and as central differences of the plain numpy function (independent of both).

Finally the traced program goes through :func:`lagrangeprop.check` (multipliers against
the autograd and torch tapes and finite differences).

Examples
--------
>>> check_grads(lambda np, x: np.sum(np.sin(x) ** 2), np.linspace(0.1, 1.0, 4))
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np

import lagrangeprop as lp

# autograd warns when a derivative is identically zero (a linear argument's Hessian)
warnings.filterwarnings("ignore", message="Output seems independent of input")

__all__ = ["check_grads", "rng_for"]


def rng_for(*key: object) -> np.random.Generator:
    """A generator seeded from ``key`` (stable across runs and processes)."""
    return np.random.default_rng([0, zlib.crc32(repr(key).encode())])


def _close(actual: Any, desired: Any, rtol: float, what: str, scale: float | None = None) -> None:
    actual = np.asarray(actual, dtype=np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != {desired.shape}"
    ref = np.max(np.abs(desired)) if desired.size else 0.0
    if scale is not None:
        ref = max(ref, scale)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * max(ref, 1e-300),
                               err_msg=what)


def _with(args: Sequence[Any], i: int, value: Any) -> list:
    out = list(args)
    out[i] = value
    return out


def check_grads(fun: Callable[..., Any], *args: Any, argnums: Sequence[int] | None = None,
                order: int = 2, rtol: float = 1e-8, value_rtol: float = 1e-12,
                fd_rtol: float = 1e-5, fd_step: float = 1e-6, lp_check: bool = True,
                modes: Sequence[str] = ("rev", "fwd")) -> None:
    """Check lagrangeprop's value, VJP, JVP and HVP of ``fun(np, *args)`` (see module doc).

    Parameters
    ----------
    fun : callable
        ``fun(numpy_module, *args)``; non-differentiable arguments (integers, shapes)
        belong in its closure.
    args : float or ndarray
        The point; every argument is differentiated unless ``argnums`` says otherwise.
    order : int
        1: first derivatives only; 2: also Hessian-vector products of ``<g, fun>``.
    rtol, value_rtol, fd_rtol : float
        Tolerances against autograd, against numpy's value and against central
        differences (relative to the largest entry of the reference).
    lp_check : bool
        Also require ``lp.check`` on the traced program to agree.
    """
    args = [np.asarray(a, dtype=np.float64) if not isinstance(a, float) else a for a in args]
    argnums = list(range(len(args))) if argnums is None else list(argnums)
    rng = rng_for(getattr(fun, "__code__", fun), [np.shape(a) for a in args])

    def f_np(*a):
        return fun(np, *a)

    def f_ag(*a):
        return fun(anp, *a)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.asarray(f_np(*args), dtype=np.float64)
    value, vjp_fn = lp.vjp(f_np, *args)
    _close(value, expected, value_rtol, "forward value vs numpy")
    assert np.shape(value) == expected.shape, (np.shape(value), expected.shape)

    g = rng.standard_normal(expected.shape)
    cotangents = vjp_fn(g)
    for i in argnums:
        x = args[i]
        u = rng.standard_normal(np.shape(x))
        if "rev" in modes:
            ref = autograd.make_vjp(f_ag, i)(*args)[0](g)
            _close(cotangents[i], ref, rtol, f"vjp of argument {i} vs autograd")
        if "fwd" in modes:
            tangents = tuple(u if k == i else np.zeros(np.shape(a)) for k, a in enumerate(args))
            _, t_out = lp.jvp(f_np, tuple(args), tangents)
            ref = autograd.make_jvp(f_ag, i)(*args)(u)[1]
            _close(t_out, ref, rtol, f"jvp of argument {i} vs autograd")
        # central differences of <g, f(x + h u)>: independent of both autodiff systems
        h = fd_step * max(1.0, float(np.max(np.abs(x))) if np.size(x) else 1.0)
        up = np.sum(g * f_np(*_with(args, i, x + h * u)))
        down = np.sum(g * f_np(*_with(args, i, x - h * u)))
        fd = (up - down) / (2 * h)
        _close(np.sum(np.asarray(cotangents[i]) * u), fd, fd_rtol,
               f"vjp of argument {i} vs central differences",
               scale=float(np.sum(np.abs(np.asarray(cotangents[i]) * u))))
        if order >= 2:
            v = rng.standard_normal(np.shape(x))

            def h_np(xi, i=i):
                return np.sum(g * fun(np, *_with(args, i, xi)))

            def h_ag(xi, i=i):
                return anp.sum(g * fun(anp, *_with(args, i, xi)))

            hv = lp.hvp(h_np, x, v)
            ref = autograd.grad(lambda xi, v=v: anp.sum(autograd.grad(h_ag)(xi) * v))(x)
            _close(hv, ref, max(rtol, 1e-7), f"hvp of argument {i} vs autograd")
    if lp_check:
        prog = lp.trace(f_np, *args)
        names = [f"arg{k}" for k in range(len(args))]
        report = lp.check(prog, dict(zip(names, args)))
        assert report.ok, str(report)
