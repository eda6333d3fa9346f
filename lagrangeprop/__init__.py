"""lagrangeprop: differentiate programs by the method of Lagrange multipliers.

A program is a set of equality constraints ``c_d = 0`` held as a networkx DiGraph;
the multipliers of its Lagrangian ``L = <seed, z_o> - Σ λ_d c_d`` are the gradient.

Examples
--------
>>> import lagrangeprop as lp
>>> sol = lp.trace(lambda x: lp.exp(x) * x, x=1.0).solve(x=1.0)
>>> print(round(float(sol.grad["x"]), 6))   # (1 + x) e^x (lp.round shadows round here)
5.436564
"""

from .transforms import grad, hessian, hvp, jacobian, jvp, value_and_grad, vjp
from .errors import (ConvergenceError, GraphError, InputError, LagrangePropError,
                     NonFiniteError, ShapeError, SingularSystemError)
from .solve.solution import Solution
from .graph.ops import (abs, add, concatenate, cos, divide, dot, equal, exp, greater, greater_equal,
                  identity, less, less_equal, log, log1p, logaddexp, logical_and, logical_not,
                  logical_or, logical_xor, logsumexp, matmul, not_equal,
                  maximum, mean, minimum, multiply, negative, power, reshape, sigmoid, sin,
                  softmax, sqrt, square, stack, subtract, sum, tan, tanh, transpose, where)
from .graph.ufunc_ops import *  # noqa: F401,F403 - each family module's __all__
from .graph.reduction_ops import *  # noqa: F401,F403
from .graph.structure_ops import *  # noqa: F401,F403
from .graph.contraction_ops import *  # noqa: F401,F403
from .graph.difference_ops import *  # noqa: F401,F403
from .graph import linalg_ops as linalg  # lp.linalg.solve, ... (numpy.linalg's names)
from .graph import ufunc_ops as _ufunc_ops, reduction_ops as _reduction_ops
from .graph import structure_ops as _structure_ops, contraction_ops as _contraction_ops
from .graph import difference_ops as _difference_ops
from .rules.user import primitive
from .program import Program, trace
from .graph.var import Var
from .crosscheck.check import CheckReport, check
from .viz import draw

__version__ = "0.1.0"

# check is imported eagerly so the function, not the submodule, is bound to lp.check;
# optimize (scipy.optimize) loads on first use (PEP 562).
_LAZY = {"minimize": "optimize", "minimize_full_space": "optimize"}


def __getattr__(name):
    import importlib
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name == "optimize":
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lagrangeprop' has no attribute {name!r}")


__all__ = [
    "Program", "Solution", "Var", "trace", "grad", "value_and_grad", "primitive",
    "LagrangePropError", "GraphError", "ShapeError", "InputError", "ConvergenceError",
    "SingularSystemError", "NonFiniteError",
    "abs", "add", "concatenate", "cos", "divide", "dot", "exp", "greater", "greater_equal",
    "identity", "less", "less_equal", "log", "log1p", "logaddexp", "logsumexp", "matmul",
    "maximum", "mean", "minimum", "multiply", "negative", "power", "reshape", "sigmoid",
    "sin", "softmax", "sqrt", "square", "stack", "subtract", "sum", "tan", "tanh",
    "transpose", "where", "equal", "not_equal", "logical_and", "logical_or", "logical_xor",
    "logical_not",
    "check", "CheckReport", "linalg", "jvp", "vjp", "jacobian", "hvp", "hessian", "draw",
    *_LAZY,
    *_ufunc_ops.__all__, *_reduction_ops.__all__, *_structure_ops.__all__,
    *_contraction_ops.__all__, *_difference_ops.__all__,
]
