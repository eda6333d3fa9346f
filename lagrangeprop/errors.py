"""The exception hierarchy of lagrangeprop (SPEC §2).

Every failure raises a subclass of :class:`LagrangePropError`, itself a
``ValueError``, whose message names the node(s) involved and what to do.

Examples
--------
>>> import lagrangeprop as lp
>>> issubclass(lp.ShapeError, lp.LagrangePropError) and issubclass(lp.LagrangePropError, ValueError)
True
"""

from __future__ import annotations

__all__ = [
    "LagrangePropError",
    "GraphError",
    "ShapeError",
    "InputError",
    "ConvergenceError",
    "SingularSystemError",
    "NonFiniteError",
]


class LagrangePropError(ValueError):
    """Base class of every error raised by lagrangeprop."""


class GraphError(LagrangePropError):
    """The constraint graph is malformed: unknown op, missing or duplicate node,
    no output, an undefined variable, or a bad schema."""


class ShapeError(LagrangePropError):
    """Operand shapes are incompatible, or a definition does not match its variable."""


class InputError(LagrangePropError):
    """An input is missing, unexpected, non-finite or of the wrong shape."""


class ConvergenceError(LagrangePropError):
    """A forward block solve did not converge (names the block, iterations, residuals)."""

    def __init__(self, message: str, *, nodes=(), iterations: int = 0, history=()):
        super().__init__(message)
        self.nodes = tuple(nodes)
        self.iterations = iterations
        self.history = list(history)


class SingularSystemError(LagrangePropError):
    """A block Jacobian ``A_SS`` is singular or numerically so."""

    def __init__(self, message: str, *, nodes=(), rcond: float | None = None):
        super().__init__(message)
        self.nodes = tuple(nodes)
        self.rcond = rcond


class NonFiniteError(LagrangePropError):
    """A NaN or inf was produced outside a block (names the node and its op)."""
