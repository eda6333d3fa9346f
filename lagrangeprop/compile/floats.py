"""The Python-float forms of the registry's scalar derivative rules, for generated code.

The compiled forward/multiplier passes (:mod:`lagrangeprop.solve.compiled`) and the generated
small-block code (:mod:`lagrangeprop.compile.blockgen`) both call these on Python floats; each
is the formula of its rule in :mod:`lagrangeprop.rules.ufuncs` with ``math`` for numpy.

Examples
--------
>>> pow_dbase(2.0, 3.0), pow_dexp(8.0, 2.0) == 8.0 * math.log(2.0), pow_dbase(0.0, 0.0)
(12.0, True, 0.0)
>>> abs(sech2(8.5) - 1.0 / math.cosh(8.5) ** 2) < 1e-22
True
"""

from __future__ import annotations

import math

__all__ = ["pow_dbase", "pow_dexp", "sech2"]


def pow_dbase(x: float, p: float) -> float:
    """``p * x**(p-1)``, exactly 0 where ``p == 0`` (rules.ufuncs._power_dbase)."""
    return p * math.pow(x, 1.0 if p == 0 else p - 1.0)


def pow_dexp(ans: float, x: float) -> float:
    """``ans * log(x)`` for ``x > 0``, 0 at ``x == 0``, NaN for ``x < 0`` (rules.ufuncs._power_dexp)."""
    return ans * math.log(x) if x > 0 else (0.0 if x == 0 else math.nan)


def sech2(x: float) -> float:
    """``1 - tanh(x)²`` from ``x``: ``4e/(1+e)²`` with ``e = exp(-2|x|)`` (rules.ufuncs._sech2)."""
    e = math.exp(-2.0 * abs(x))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))
