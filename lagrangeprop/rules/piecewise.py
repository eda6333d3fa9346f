"""Piecewise elementwise ops: kinks, ties, clipping, integer-valued ops and remainders.

Every op here is piecewise linear (or piecewise constant), so its curvature is zero. The
conventions at the kinks follow HIPS autograd: ``abs``/``fabs`` have derivative 0 at 0;
``maximum``/``minimum``/``fmax``/``fmin`` split the cotangent 0.5/0.5 where the arguments
tie; ``clip`` passes it where the result equals neither bound; the integer-valued ops
(``sign floor ceil rint trunc fix round floor_divide``) have derivative 0 everywhere.
``remainder`` (``%``) and ``fmod`` are ``x - q·y`` with ``q`` numpy's own integer quotient
of the same call, so ``d/dx = 1`` and ``d/dy = -q``.

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.rules import get
>>> x, y = np.array([1.0, 2.0]), np.array([1.0, 1.0])
>>> get("maximum").vjp(0, np.ones(2), np.maximum(x, y), [x, y], {})   # a tie splits 1/2-1/2
array([0.5, 1. ])
>>> get("floor").vjp(0, np.ones(2), np.floor(x), [x], {}) is None     # zero derivative
True
>>> get("remainder").vjp(1, 1.0, np.remainder(7.0, 2.0), [7.0, 2.0], {})   # -(7 // 2)
array(-3.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .registry import Primitive, Tape, register, zero_curvature
from .shapes import broadcast
from .ufuncs import elementwise

__all__: list[str] = []

F64 = np.float64


def _named(name: str, torch: str | None = None) -> Tape:
    return Tape.named(name, torch or name)


# ---------------------------------------------------------------- kinks and ties
# |x|' = sign(x) (0 at 0, as autograd); at a tie x == y of max/min each argument gets 1/2.
def _balanced(x: np.ndarray, other: np.ndarray, ans: np.ndarray) -> np.ndarray:
    # 1 where x alone attains ans, 0.5 at ties (as autograd's balanced_eq)
    return (x == ans) / (1.0 + (x == other))


def _first(ans: Any, x: Any, y: Any) -> Any:
    return _balanced(x, y, ans)


def _second(ans: Any, x: Any, y: Any) -> Any:
    return _balanced(y, x, ans)


def _torch_nan_ignoring(name: str) -> Callable[[Any], Callable[..., Any]]:
    # torch.fmax/fmin give a tie's whole cotangent to x; torch.maximum splits it as autograd
    # does, and fmax/fmin differ from maximum/minimum only where an argument is NaN
    def make(torch: Any) -> Callable[..., Any]:
        both = getattr(torch, name)

        def op(x, y):
            return torch.where(torch.isnan(y), x, torch.where(torch.isnan(x), y, both(x, y)))
        return op
    return make


elementwise("abs", np.abs, lambda ans, x: np.sign(x), tape=_named("abs"))
elementwise("fabs", np.fabs, lambda ans, x: np.sign(x), tape=_named("fabs", "abs"))
elementwise("maximum", np.maximum, _first, _second, tape=_named("maximum"))
elementwise("minimum", np.minimum, _first, _second, tape=_named("minimum"))
elementwise("fmax", np.fmax, _first, _second,
            tape=Tape(autograd=lambda anp: anp.fmax, torch=_torch_nan_ignoring("maximum")))
elementwise("fmin", np.fmin, _first, _second,
            tape=Tape(autograd=lambda anp: anp.fmin, torch=_torch_nan_ignoring("minimum")))


# ---------------------------------------------------------------- clip
# clip(x, lo, hi) = min(max(x, lo), hi); d/dx = [ans != lo and ans != hi] (autograd's mask:
# 0 on and beyond either bound). The bounds are constants (±inf for None), never differentiated.
def _clip_partial(ans: Any, x: Any, lo: Any, hi: Any) -> Any:
    return ((ans != lo) & (ans != hi)).astype(F64)


def _clip_torch(torch: Any) -> Callable[..., Any]:
    # torch.clamp passes the cotangent on the bounds too; select x strictly inside instead
    def clip(x, lo, hi):
        ans = torch.minimum(torch.maximum(x, lo), hi).detach()
        return torch.where((ans != lo) & (ans != hi), x, ans)
    return clip


elementwise("clip", np.clip, _clip_partial, None, None, nondiff=(1, 2),
            tape=Tape(autograd=lambda anp: anp.clip, torch=_clip_torch))


# ---------------------------------------------------------------- integer-valued
# Piecewise constant: derivative 0 everywhere (autograd's nograd functions), zero curvature.
def _detached(op: Callable[..., Any]) -> Callable[..., Any]:
    """A torch function of detached copies of its tensor arguments (zero derivative)."""
    def apply(*args: Any, **params: Any) -> Any:
        return op(*[a.detach() if hasattr(a, "detach") else a for a in args], **params)
    return apply


for _name, _torch_name in (("sign", "sign"), ("floor", "floor"), ("ceil", "ceil"),
                           ("rint", "round"), ("trunc", "trunc"), ("fix", "fix")):
    elementwise(_name, getattr(np, _name), None, tape=_named(_name, _torch_name))
elementwise("floor_divide", np.floor_divide, None, None,
            tape=Tape(autograd=lambda anp: anp.floor_divide,
                      torch=lambda torch: _detached(lambda x, y: torch.div(x, y, rounding_mode="floor"))))


def _zero(*args: Any) -> None:
    return None


def _round(x: Any, decimals: int = 0) -> Any:
    return np.round(np.asarray(x, dtype=F64), decimals)


def _round_shape(shapes: Sequence[tuple], params: dict) -> tuple | None:
    return broadcast(shapes) if len(shapes) == 1 else None


def _round_torch(torch: Any) -> Callable[..., Any]:
    # numpy's own rounding of the detached values (torch.round(x, decimals=d) may differ from
    # numpy at halfway points of x·10^d), as a constant of the tape
    def round_(x, decimals=0):
        return torch.as_tensor(_round(x.detach().numpy(), decimals))
    return round_


# round carries ``decimals`` as a parameter, so it is an entry of its own (not the factory's)
register(Primitive(
    "round", _round, nargs=1, vjp=_zero, jvp=_zero, jac=_zero, curvature=zero_curvature,
    shape_rule=_round_shape, elementwise=True,
    tape=Tape(autograd=lambda anp: lambda x, decimals=0: anp.round(x, decimals),
              torch=_round_torch)))


# ---------------------------------------------------------------- remainders
# remainder(x, y) = x - q·y with q = floor_divide(x, y) (Python's %: the sign of y);
# fmod(x, y) = x - q·y with q truncated (C's fmod: the sign of x). Both: d/dx = 1, d/dy = -q,
# q being numpy's quotient of the same call (autograd's -floor(x/y) is off by one where x/y
# rounds up to an integer, e.g. 1 % 0.1).
def _one(ans: Any, x: Any, y: Any) -> float:
    return 1.0


_one.constant = 1.0   # the interpreters' fast path: the cotangent of x is g itself


def _fmod_quotient(ans: Any, x: Any, y: Any) -> Any:
    # x - ans is an exact multiple of y up to one rounding: rint recovers the integer q
    return -np.rint((x - ans) / y)


def _fmod_autograd(anp: Any) -> Callable[..., Any]:
    # autograd has no fmod rule: r + (x - x₀) - q·(y - y₀), exactly fmod's value and derivatives
    from autograd.tracer import getval

    def fmod(x, y):
        x0, y0 = getval(x), getval(y)
        r = np.fmod(x0, y0)
        q = np.rint((x0 - r) / y0)
        return r + (x - x0) - q * (y - y0)
    return fmod


elementwise("remainder", np.remainder, _one, lambda ans, x, y: -np.floor_divide(x, y),
            tape=_named("remainder"))
elementwise("fmod", np.fmod, _one, _fmod_quotient,
            tape=Tape(autograd=_fmod_autograd, torch=lambda torch: torch.fmod))
