"""Solver options shared by the forward, adjoint and tangent passes.

Examples
--------
>>> from lagrangeprop.options import SolveOptions
>>> SolveOptions.make(tol=1e-12).tol
1e-12
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError

__all__ = ["SolveOptions", "METHODS", "LINEAR_SOLVERS"]

METHODS = ("auto", "newton", "newton-krylov", "fixed-point", "anderson")
LINEAR_SOLVERS = ("auto", "direct", "gmres", "bicgstab", "amg")


@dataclass(frozen=True)
class SolveOptions:
    """``tol``: residual tolerance of block solves, per constraint on its own scale (lagrangeprop.scale);
    ``maxiter``: iteration limit per block (Newton steps or fixed-point sweeps);
    ``method``: forward block solver; ``linear_solver``: block adjoint/tangent solver
    (``"amg"``: Newton steps, adjoint and tangent of large sparse blocks by conjugate gradients or
    gmres with an algebraic-multigrid preconditioner; needs the optional pyamg)."""

    tol: float = 1e-10
    maxiter: int | None = None
    method: str = "auto"
    linear_solver: str = "auto"

    @classmethod
    def make(cls, tol=None, maxiter=None, method=None, linear_solver=None) -> SolveOptions:
        method = method or "auto"
        linear_solver = linear_solver or "auto"
        if method not in METHODS:
            raise InputError(f"method={method!r} is not a block solver; choose one of {METHODS}")
        if linear_solver not in LINEAR_SOLVERS:
            raise InputError(f"linear_solver={linear_solver!r} is not supported; "
                             f"choose one of {LINEAR_SOLVERS}")
        if linear_solver == "amg":
            from .amg import require
            require()
        if tol is not None and not (0 < float(tol) < 1):
            raise InputError(f"tol={tol!r} must be a positive number below 1")
        if maxiter is not None and int(maxiter) < 1:
            raise InputError(f"maxiter={maxiter!r} must be a positive integer")
        return cls(tol=1e-10 if tol is None else float(tol),
                   maxiter=None if maxiter is None else int(maxiter),
                   method=method, linear_solver=linear_solver)
