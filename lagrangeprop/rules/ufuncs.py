"""Elementwise ops (numpy ufuncs, ``where``) and comparisons, each one entry with all its rules.

An elementwise op is described by its partial derivatives ``partial(ans, *args)``; the
VJP (``unbroadcast(g * partial)``), JVP (``t * partial``), sparse Jacobian
(``diag(partial) @ S``) and shape rule (the broadcast) follow from :func:`elementwise`,
the curvature from the second partials ``[[f_ij]]`` (``None``: a linear or piecewise-
linear op, zero curvature). ``where`` lives here, not with the structure ops: it is
numpy's elementwise selection and is built by the same factory. The piecewise ops (abs,
maximum, clip, floor, %, ...) use the same factory in :mod:`~lagrangeprop.rules.piecewise`.

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.rules import get
>>> a, b = np.ones((3, 1)), np.arange(4.0)
>>> get("multiply").vjp(1, np.ones((3, 4)), a * b, [a, b], {}).shape   # summed over broadcast axes
(4,)
>>> get("multiply").linear, get("exp").linear, get("less").elementwise
(True, False, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.special

from .arrays import as_f64 as _f
from .arrays import broadcast_jac
from .registry import Primitive, Tape, register, zero_curvature
from .shapes import broadcast_rule

__all__ = ["elementwise"]

F64 = np.float64
Args = tuple[Any, ...]
Params = dict[str, Any]
Partial = Callable[..., Any]


# For c = f(x, y) elementwise: dc = f_x dx + f_y dy with partials f_x, f_y
# broadcast to c's shape; the cotangent of x is unbroadcast(g * f_x).
def elementwise(name: str, fn: Callable[..., Any], *partials: Partial | None, tape: Tape,
                second: Callable[..., list] | None = None, nondiff: tuple = (),
                linear: bool = False) -> Primitive:
    """Register an elementwise op from its partials ``partial(ans, *args) -> array``.

    ``second(ans, *args)`` returns the matrix of second partials ``[[f_ij]]`` (entries
    ``None`` = 0), or is ``None`` for an op with zero curvature.
    """

    def value(*args: Any) -> Any:
        return fn(*[a if k in nondiff else _f(a) for k, a in enumerate(args)])

    def partial(i: int, ans: Any, args: Args) -> Any:
        d = partials[i]
        if d is None:
            return None
        with np.errstate(all="ignore"):
            return d(_f(ans), *[a if k in nondiff else _f(a) for k, a in enumerate(args)])

    def vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> Any:
        p = partial(i, ans, args)
        return None if p is None else g * p

    def jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> Any:
        p = partial(i, ans, args)
        return None if p is None else t * p

    def jac(i: int, ans: Any, args: Args, params: Params) -> Any:
        p = partial(i, ans, args)
        return None if p is None else broadcast_jac(p, np.shape(args[i]), np.shape(ans))

    # raw_fn / raw_partials: the interpreters' fast path for float64 arguments, inside their
    # own np.errstate (vjp = g * partial when no broadcasting happens)
    return register(Primitive(
        name, value, nargs=len(partials), nondiff=nondiff, vjp=vjp, jvp=jvp, jac=jac,
        curvature=zero_curvature if second is None else _curvature_of(second),
        shape_rule=broadcast_rule, elementwise=True, linear=linear, tape=tape,
        raw_fn=fn, raw_partials=partials))


# S_i = g · Σ_j f_ij ȧ_j with the second partials f_ij(ans, *args) (None = 0).
def _curvature_of(second: Callable[..., list]) -> Callable[..., Any]:
    def rule(i, g, ans, args, params, tans):
        with np.errstate(all="ignore"):
            row = second(_f(ans), *[_f(a) for a in args])[i]
            total = None
            for fij, t in zip(row, tans):
                if fij is None or t is None:
                    continue
                term = fij * t
                total = term if total is None else total + term
        return None if total is None else g * total
    return rule


def _one(ans: np.ndarray, *args: Any) -> float:
    return 1.0


def _minus_one(ans: np.ndarray, *args: Any) -> float:
    return -1.0


def _x(ans: np.ndarray, x: Any, y: Any) -> Any:
    return x


def _y(ans: np.ndarray, x: Any, y: Any) -> Any:
    return y


# a constant partial tells the interpreters' fast path that the cotangent is g or -g (no
# multiply, no copy); a partial that is an argument itself is read directly (``arg``)
_one.constant, _minus_one.constant = 1.0, -1.0
_x.arg, _y.arg = 0, 1


def _named(name: str) -> Tape:
    """The tape equivalents of an op with the same name on autograd.numpy and torch."""
    return Tape.named(name, name)


def _same(x: Any) -> Any:
    return x


# ---------------------------------------------------------------- arithmetic
elementwise("add", np.add, _one, _one, linear=True, tape=Tape.named("add", "add"))
elementwise("subtract", np.subtract, _one, _minus_one, linear=True, tape=Tape.named("subtract", "sub"))
elementwise("multiply", np.multiply, _y, _x, linear=True, tape=Tape.named("multiply", "mul"),
            second=lambda ans, x, y: [[None, 1.0], [1.0, None]])
elementwise("divide", np.divide, lambda ans, x, y: 1.0 / y, lambda ans, x, y: -x / y**2,
            tape=Tape.named("divide", "div"),
            second=lambda ans, x, y: [[None, -1.0 / y**2], [-1.0 / y**2, 2.0 * x / y**3]])
elementwise("negative", np.negative, _minus_one, linear=True, tape=Tape.named("negative", "neg"))
elementwise("identity", np.array, _one, linear=True,
            tape=Tape(autograd=lambda anp: _same, torch=lambda torch: _same))
elementwise("square", np.square, lambda ans, x: 2.0 * x, tape=_named("square"),
            second=lambda ans, x: [[2.0]])


def _power_dbase(ans: np.ndarray, x: np.ndarray, p: np.ndarray) -> np.ndarray:
    # p * x**(p-1), exactly 0 where p == 0 (no 0 * inf at x = 0)
    return p * x ** np.where(p == 0, 1.0, p - 1.0)


def _power_dexp(ans: np.ndarray, x: np.ndarray, p: np.ndarray) -> np.ndarray:
    # ans * log(x) where x > 0; 0 at x == 0 (0**p = 0 for every p > 0); NaN where x < 0: a real
    # power of a negative base has no derivative in its exponent (x**p leaves the reals as p
    # moves), so the adjoint raises NonFiniteError naming the node rather than return a number
    positive = x > 0
    return np.where(positive, ans * np.log(np.where(positive, x, 1.0)), np.where(x < 0, np.nan, 0.0))


def _power_second(ans, x, p):
    # matches the first-order rules: p x^(p-1) (exactly 0 where p == 0) and
    # ans·log x for x > 0 (else 0)
    pos = x > 0
    logx = np.log(np.where(pos, x, 1.0))
    fxx = np.where((p == 0) | (p == 1), 0.0, p * (p - 1.0) * x ** np.where((p == 0) | (p == 1), 1.0, p - 2.0))
    fxp = np.where(pos, x ** np.where(pos, p - 1.0, 1.0) * (1.0 + p * logx), 0.0)
    fpp = np.where(pos, ans * logx**2, 0.0)
    return [[fxx, fxp], [fxp, fpp]]


elementwise("power", np.power, _power_dbase, _power_dexp, tape=Tape.named("power", "pow"),
            second=_power_second)


# ---------------------------------------------------------------- transcendental
elementwise("exp", np.exp, lambda ans, x: ans, tape=_named("exp"), second=lambda ans, x: [[ans]])
elementwise("log", np.log, lambda ans, x: 1.0 / x, tape=_named("log"),
            second=lambda ans, x: [[-1.0 / x**2]])
elementwise("log1p", np.log1p, lambda ans, x: 1.0 / (1.0 + x), tape=_named("log1p"),
            second=lambda ans, x: [[-1.0 / (1.0 + x) ** 2]])
elementwise("sqrt", np.sqrt, lambda ans, x: 0.5 / ans, tape=_named("sqrt"),
            second=lambda ans, x: [[-0.25 / (ans * x)]])
elementwise("sin", np.sin, lambda ans, x: np.cos(x), tape=_named("sin"), second=lambda ans, x: [[-ans]])
elementwise("cos", np.cos, lambda ans, x: -np.sin(x), tape=_named("cos"), second=lambda ans, x: [[-ans]])
elementwise("tan", np.tan, lambda ans, x: 1.0 / np.cos(x) ** 2, tape=_named("tan"),
            second=lambda ans, x: [[2.0 * ans * (1.0 + ans**2)]])


# Array partials below reuse their own temporary (``out=``): the same ufuncs on the same
# operands, so the same numbers, with one allocation instead of two (fresh pages are the
# dominant cost of large temporaries).
def _sech2(x: Any) -> Any:
    """``1 - tanh²(x) = sech²(x) = 4e / (1 + e)²`` with ``e = exp(-2|x|)``: from ``x``, not from
    ``ans = tanh(x)``. Near saturation ``1 - ans²`` keeps only the rounding of ``ans`` (at
    ``x = 8.5`` one ulp of ``ans`` moves it by 1.4e-9 relative, and two correct tanh's, numpy's
    and ``math.tanh``, differ by that ulp); this form has full relative accuracy at every ``x``
    and never overflows (``cosh`` would beyond 710)."""
    if x.__class__ is np.ndarray and x.ndim and x.dtype == np.float64:
        # the same ufuncs on the same operands in the same order, in two temporaries
        e = np.abs(x)
        np.multiply(-2.0, e, out=e)
        np.exp(e, out=e)
        d = np.add(1.0, e)
        np.multiply(d, d, out=d)
        np.multiply(4.0, e, out=e)
        return np.divide(e, d, out=e)
    e = np.exp(-2.0 * np.abs(x))
    d = 1.0 + e
    return 4.0 * e / (d * d)


def _tanh_d(ans: Any, x: Any) -> Any:
    return _sech2(x)


def _sigmoid_d(ans: Any, x: Any) -> Any:
    # σ'(x) = σ(x)(1 - σ(x)) = σ(x)·σ(-x): 1 - ans would keep only the rounding of ans once it
    # saturates (5e-8 relative at x = 20), σ(-x) has full accuracy
    return ans * scipy.special.expit(-x)


def _exp_diff(a: Any, b: Any) -> Any:
    """``np.exp(a - b)``."""
    t = a - b
    if t.__class__ is np.ndarray and t.ndim:
        return np.exp(t, out=t)
    return np.exp(t)


def _sigmoid_autograd(anp: Any) -> Callable[[Any], Any]:
    # 1/(1+exp(-x)) written as tanh so that it does not overflow for large |x|
    return lambda x: 0.5 * (anp.tanh(0.5 * x) + 1.0)


def _logaddexp_second(ans, x, y):
    # a = e^(x-ans), b = e^(y-ans), a + b = 1: the Hessian is ab [[1, -1], [-1, 1]]
    ab = np.exp(x - ans) * np.exp(y - ans)
    return [[ab, -ab], [-ab, ab]]


elementwise("tanh", np.tanh, _tanh_d, tape=_named("tanh"),
            second=lambda ans, x: [[-2.0 * ans * _sech2(x)]])
elementwise("sigmoid", scipy.special.expit, _sigmoid_d,
            tape=Tape(autograd=_sigmoid_autograd, torch=lambda torch: torch.sigmoid),
            second=lambda ans, x: [[ans * scipy.special.expit(-x) * (scipy.special.expit(-x) - ans)]])
elementwise("logaddexp", np.logaddexp, lambda ans, x, y: _exp_diff(x, ans),
            lambda ans, x, y: _exp_diff(y, ans), tape=_named("logaddexp"), second=_logaddexp_second)


# ---------------------------------------------------------------- exponentials and logarithms
# f' and f'' of each: 2^x -> ln2·ans, ln2²·ans; e^x - 1 -> ans + 1 (twice); log_b x -> 1/(x ln b),
# -1/(x² ln b); 1/x -> -1/x², 2/x³; cbrt x -> 1/(3 ans²), -2/(9 ans⁵).
_LN2, _LN10 = np.log(2.0), np.log(10.0)
elementwise("exp2", np.exp2, lambda ans, x: ans * _LN2, tape=_named("exp2"),
            second=lambda ans, x: [[ans * _LN2**2]])
elementwise("expm1", np.expm1, lambda ans, x: ans + 1.0, tape=_named("expm1"),
            second=lambda ans, x: [[ans + 1.0]])
elementwise("log2", np.log2, lambda ans, x: 1.0 / x / _LN2, tape=_named("log2"),
            second=lambda ans, x: [[-1.0 / x**2 / _LN2]])
elementwise("log10", np.log10, lambda ans, x: 1.0 / x / _LN10, tape=_named("log10"),
            second=lambda ans, x: [[-1.0 / x**2 / _LN10]])
elementwise("reciprocal", np.reciprocal, lambda ans, x: -1.0 / x**2, tape=_named("reciprocal"),
            second=lambda ans, x: [[2.0 / x**3]])


def _cbrt_tape(module: Any) -> Callable[[Any], Any]:
    # neither autograd nor torch has cbrt: sign(x)·|x|^(1/3), differentiated by their rules
    return lambda x: module.sign(x) * module.abs(x) ** (1.0 / 3.0)


elementwise("cbrt", np.cbrt, lambda ans, x: 1.0 / (3.0 * ans**2),
            tape=Tape(autograd=_cbrt_tape, torch=_cbrt_tape),
            second=lambda ans, x: [[-2.0 / (9.0 * ans**5)]])


# ---------------------------------------------------------------- hyperbolic and inverse
# sinh' = cosh, cosh' = sinh (so f'' = ans); arcsin' = 1/√(1-x²), arctan' = 1/(1+x²),
# arcsinh' = 1/√(x²+1), arccosh' = 1/√(x²-1), arctanh' = 1/(1-x²); f'' by the chain rule.
elementwise("sinh", np.sinh, lambda ans, x: np.cosh(x), tape=_named("sinh"),
            second=lambda ans, x: [[ans]])
elementwise("cosh", np.cosh, lambda ans, x: np.sinh(x), tape=_named("cosh"),
            second=lambda ans, x: [[ans]])
elementwise("arcsin", np.arcsin, lambda ans, x: 1.0 / np.sqrt(1.0 - x**2),
            tape=Tape.named("arcsin", "asin"), second=lambda ans, x: [[x / (1.0 - x**2) ** 1.5]])
elementwise("arccos", np.arccos, lambda ans, x: -1.0 / np.sqrt(1.0 - x**2),
            tape=Tape.named("arccos", "acos"), second=lambda ans, x: [[-x / (1.0 - x**2) ** 1.5]])
elementwise("arctan", np.arctan, lambda ans, x: 1.0 / (1.0 + x**2),
            tape=Tape.named("arctan", "atan"), second=lambda ans, x: [[-2.0 * x / (1.0 + x**2) ** 2]])
elementwise("arcsinh", np.arcsinh, lambda ans, x: 1.0 / np.sqrt(x**2 + 1.0),
            tape=Tape.named("arcsinh", "asinh"), second=lambda ans, x: [[-x / (x**2 + 1.0) ** 1.5]])
elementwise("arccosh", np.arccosh, lambda ans, x: 1.0 / np.sqrt(x**2 - 1.0),
            tape=Tape.named("arccosh", "acosh"), second=lambda ans, x: [[-x / (x**2 - 1.0) ** 1.5]])
elementwise("arctanh", np.arctanh, lambda ans, x: 1.0 / (1.0 - x**2),
            tape=Tape.named("arctanh", "atanh"), second=lambda ans, x: [[2.0 * x / (1.0 - x**2) ** 2]])


# sinc x = s(πx) with s(u) = sin(u)/u: s' = (cos u - s)/u, s'' = -s - 2s'/u (from u·s = sin u);
# near u = 0 the closed forms cancel, so their Taylor series stand in (s'(0) = 0, s''(0) = -1/3).
def _sinc_derivatives(x: Any) -> tuple[Any, Any]:
    """``(d sinc/dx, d² sinc/dx²)``."""
    u = np.pi * np.asarray(x, dtype=F64)
    small = np.abs(u) < 0.1
    v = np.where(small, 1.0, u)
    s = np.sin(v) / v
    d1 = (np.cos(v) - s) / v
    d2 = -s - 2.0 * d1 / v
    u2 = u * u
    d1 = np.where(small, u * (-1.0 / 3.0 + u2 * (1.0 / 30.0 + u2 * (-1.0 / 840.0 + u2 / 45360.0))), d1)
    d2 = np.where(small, -1.0 / 3.0 + u2 * (0.1 + u2 * (-1.0 / 168.0 + u2 / 6480.0)), d2)
    return np.pi * d1, np.pi**2 * d2


elementwise("sinc", np.sinc, lambda ans, x: _sinc_derivatives(x)[0], tape=_named("sinc"),
            second=lambda ans, x: [[_sinc_derivatives(x)[1]]])


# ---------------------------------------------------------------- angles (linear)
_TO_RAD, _TO_DEG = np.pi / 180.0, 180.0 / np.pi
for _name, _torch_name, _factor in (("deg2rad", "deg2rad", _TO_RAD), ("radians", "deg2rad", _TO_RAD),
                                    ("rad2deg", "rad2deg", _TO_DEG), ("degrees", "rad2deg", _TO_DEG)):
    elementwise(_name, getattr(np, _name), lambda ans, x, c=_factor: c, linear=True,
                tape=Tape.named(_name, _torch_name))


# ---------------------------------------------------------------- binary
# arctan2(x, y) = angle of (y, x): ∂x = y/r², ∂y = -x/r² (r² = x² + y²);
# hypot: ∂x = x/h, ∂y = y/h, Hessian [[y², -xy], [-xy, x²]]/h³;
# logaddexp2: ∂x = a = 2^(x-ans), ∂y = b = 2^(y-ans), a + b = 1, Hessian ln2·ab [[1, -1], [-1, 1]].
def _arctan2_second(ans, x, y):
    r4 = (x**2 + y**2) ** 2
    return [[-2.0 * x * y / r4, (x**2 - y**2) / r4], [(x**2 - y**2) / r4, 2.0 * x * y / r4]]


def _hypot_second(ans, x, y):
    h3 = ans**3
    return [[y**2 / h3, -x * y / h3], [-x * y / h3, x**2 / h3]]


def _logaddexp2_second(ans, x, y):
    ab = _LN2 * 2.0 ** (x - ans) * 2.0 ** (y - ans)
    return [[ab, -ab], [-ab, ab]]


elementwise("arctan2", np.arctan2, lambda ans, x, y: y / (x**2 + y**2),
            lambda ans, x, y: -x / (x**2 + y**2), tape=Tape.named("arctan2", "atan2"),
            second=_arctan2_second)
elementwise("hypot", np.hypot, lambda ans, x, y: x / ans, lambda ans, x, y: y / ans,
            tape=_named("hypot"), second=_hypot_second)
elementwise("logaddexp2", np.logaddexp2, lambda ans, x, y: 2.0 ** (x - ans),
            lambda ans, x, y: 2.0 ** (y - ans), tape=_named("logaddexp2"), second=_logaddexp2_second)



# ---------------------------------------------------------------- selection
def _where(cond: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(np.asarray(cond, dtype=bool), x, y)


def _where_autograd(anp: Any) -> Callable[..., Any]:
    def where(c, x, y):
        # autograd's where VJP does not sum over broadcast axes: broadcast first (by an add,
        # whose VJP does)
        zeros = np.zeros(np.broadcast_shapes(np.shape(c), anp.shape(x), anp.shape(y)))
        return anp.where(c, x + zeros, y + zeros)
    return where


elementwise(
    "where", _where, None,
    lambda ans, c, x, y: np.asarray(c, dtype=bool).astype(F64),
    lambda ans, c, x, y: (~np.asarray(c, dtype=bool)).astype(F64),
    nondiff=(0,), linear=True,
    tape=Tape(autograd=_where_autograd, torch=lambda torch: lambda c, x, y: torch.where(c, x, y)),
)


# ---------------------------------------------------------------- comparisons
# Boolean outputs: zero derivative with respect to everything.
for _name, _torch_name in (("greater", "gt"), ("greater_equal", "ge"), ("less", "lt"),
                           ("less_equal", "le"), ("equal", "eq"), ("not_equal", "ne"),
                           ("logical_and", "logical_and"), ("logical_or", "logical_or"),
                           ("logical_xor", "logical_xor")):
    register(Primitive(_name, getattr(np, _name), nargs=2, nondiff=(0, 1), differentiable=False,
                       shape_rule=broadcast_rule, elementwise=True, tape=Tape.named(_name, _torch_name)))
register(Primitive("logical_not", np.logical_not, nargs=1, nondiff=(0,), differentiable=False,
                   shape_rule=broadcast_rule, elementwise=True, tape=_named("logical_not")))
