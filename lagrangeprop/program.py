"""The public :class:`Program` and :func:`trace`: a program graph that compiles and solves.

:class:`Program` is the graph layer's :class:`~lagrangeprop.graph.builder.ProgramBuilder`
plus the methods that reach up the layers; each is a short delegation to the layer that
does the work: :mod:`lagrangeprop.compile` (``compile``, ``blocks``),
:mod:`lagrangeprop.solve` (``solve``, ``evaluate``, the Lagrangian and its derivatives)
and :mod:`lagrangeprop.viz` (``to_dot``). Layers below this module that must recognise a
program test for the builder class; programs they record themselves are builders, which
they compile and solve through those layers' functions.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> prog = lp.Program(name="demo")
>>> x = prog.input("x")
>>> y = prog.variable("y")
>>> _ = prog.define(y, 0.5 * y + x)      # a cycle: y = 0.5 y + x
>>> out = prog.output(y ** 2, name="obj")
>>> sol = prog.solve(x=1.0)
>>> round(float(sol.output), 8), round(float(sol.grad["x"]), 8)
(4.0, 8.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .compile.cache import compiled
from .compile.schedule import Schedule
from .compile.source import source as _source
from .graph.builder import ProgramBuilder
from .graph.coerce import merge_inputs
from .graph.trace import record
from .solve.program import (constraint_jacobian, evaluate_program, lagrangian_gradient, lagrangian_value,
                            solve_program)
from .progress import reporting
from .solve.solution import Solution
from .viz import to_dot

__all__ = ["Program", "trace"]


class Program(ProgramBuilder):
    """A program as equality constraints over named variables (cycles allowed).

    Build it with :meth:`input`, :meth:`variable`, :meth:`define`,
    :meth:`residual` and :meth:`output` (or with :func:`lagrangeprop.trace`), then
    call :meth:`solve` for the forward pass and the multipliers.
    """

    def compile(self) -> Schedule:
        """Validate and schedule the program (cached until the program changes).

        The cached schedule is reused only while ``self.graph`` is the graph it was
        compiled from, unedited (SPEC §2; :mod:`lagrangeprop.compile.cache`).
        """
        return compiled(self)

    @property
    def blocks(self) -> list[set[str]]:
        """The cyclic blocks (strongly connected components solved together)."""
        return [set(b.names) for b in compiled(self).blocks]

    def solve(self, inputs: dict | None = None, /, *, guess=None, seed=None, tol=None, maxiter=None,
              method=None, linear_solver=None, verbose=0, callback=None, **kw_inputs) -> Solution:
        """Forward pass and multipliers at the inputs -> :class:`~lagrangeprop.solve.solution.Solution`.

        Inputs are keywords (``prog.solve(x=0.5)``) or one dict (``prog.solve({"x": 0.5})``, for
        inputs named like an option); a name given both ways raises :class:`InputError`. A
        traced parameter tree is given whole (``params={"W1": ..., "b1": ...}``) or by its
        inputs' names (``**{"params.W1": ...}``). For a function that returned a tuple or dict
        the output is its leaves raveled and concatenated; ``seed`` may have that structure.

        Progress of long block solves (silent by default): ``verbose=1`` shows each iteration of a
        cyclic block's forward method (a tqdm bar when installed, else lines on stderr);
        ``callback(it)`` receives each :class:`lagrangeprop.progress.Iteration` (block, method,
        iteration, scaled residual, tol, elapsed)."""
        inputs = merge_inputs(inputs, kw_inputs)
        tree = getattr(self, "output_tree", None)
        if tree is not None and seed is not None and not isinstance(seed, np.ndarray):
            seed = tree.join(seed, "seed")
        if verbose or callback is not None:
            with reporting(verbose, callback):
                return solve_program(self, inputs, guess=guess, seed=seed, tol=tol, maxiter=maxiter,
                                     method=method, linear_solver=linear_solver)
        return solve_program(self, inputs, guess=guess, seed=seed, tol=tol, maxiter=maxiter,
                             method=method, linear_solver=linear_solver)

    def evaluate(self, inputs: dict | None = None, /, *, guess=None, tol=None, maxiter=None, method=None,
                 linear_solver=None, verbose=0, callback=None, **kw_inputs) -> Any:
        """The forward pass only: the output value ``z_o`` (``linear_solver`` is the Newton steps').
        Inputs, ``verbose`` and ``callback`` as in :meth:`solve`; a traced function's tuple or dict
        result comes back as such."""
        inputs = merge_inputs(inputs, kw_inputs)
        with reporting(verbose, callback):
            out = evaluate_program(self, inputs, guess=guess, tol=tol, maxiter=maxiter,
                                   method=method, linear_solver=linear_solver)
        tree = getattr(self, "output_tree", None)
        return out if tree is None else tree.split(out)

    # L(x, z, λ) = <seed, z_o> - Σ_d <λ_d, c_d(z, x)>  (SPEC §1)
    def lagrangian(self, /, inputs, values=None, multipliers=None, seed=None) -> float:
        """``L = <seed, z_o> - Σ_d <λ_d, c_d>`` at a Solution or at any point."""
        return lagrangian_value(self, inputs, values, multipliers, seed)

    def lagrangian_grad(self, /, inputs, values, multipliers, seed=None):
        """``(∂L/∂x, ∂L/∂z, ∂L/∂λ = -c)`` as dicts keyed by node name."""
        return lagrangian_gradient(self, inputs, values, multipliers, seed)

    def constraint_jacobian(self, /, values, inputs):
        """``A = ∂c/∂z`` as a scipy.sparse matrix and ``index``: node -> slice."""
        return constraint_jacobian(self, values, inputs)

    def source(self) -> str:
        """The program as the Python that solves it: the forward pass (one statement per
        constraint, ``∂L/∂λ = 0``) and the multiplier back-substitution (one per edge, in
        reverse topological order, ``∂L/∂z = 0``), each line commented with its equation
        (:func:`lagrangeprop.compile.source.source`).

        Examples
        --------
        >>> import lagrangeprop as lp
        >>> text = lp.trace(lambda x: lp.exp(x) * x, x=1.0).source()
        >>> "def adjoint" in text and "∂L/∂z_x = 0" in text
        True
        """
        return _source(self)

    def to_dot(self, sol=None) -> str:
        """Graphviz DOT text of the constraint graph (no graphviz needed)."""
        return to_dot(self, sol)


def trace(f: Callable, /, *example_args, **example_inputs) -> Program:
    """Trace numpy-style ``f`` into a :class:`Program`.

    Each argument (by keyword, or positionally, named after ``f``'s parameters) is
    an input; its example value fixes the shape (float64). An argument may be a parameter
    tree (nested dicts, lists and tuples of arrays and floats, :mod:`lagrangeprop.graph.pytree`):
    each leaf is an input named by its path, keys and positions joined by dots
    (``params.W1``, ``layers.0.1``; dict keys in sorted order). Intermediates bound to
    local variables of ``f`` keep those names; the returned expression becomes the
    output (named ``"out"`` unless it already has a name). A tuple or dict result is one
    output, its leaves raveled and concatenated (``prog.evaluate`` returns the structure).

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> prog = lp.trace(lambda x: lp.sin(x) * x, x=0.5)
    >>> round(float(prog.evaluate(x=0.5)), 6)
    0.239713
    >>> prog = lp.trace(lambda p, x: lp.sum(p["W"] @ x + p["b"]), {"W": np.eye(2), "b": 1.0}, np.ones(2))
    >>> prog.graph.graph["output"], sorted(n for n in prog.graph if n.startswith("p."))
    ('out', ['p.W', 'p.b'])
    >>> sol = prog.solve(p={"W": np.eye(2), "b": 1.0}, x=np.ones(2))
    >>> sol.grad["p.W"].tolist(), float(sol.grad["p.b"])
    ([[1.0, 1.0], [1.0, 1.0]], 2.0)
    """
    return record(f, example_args, example_inputs, into=Program)
