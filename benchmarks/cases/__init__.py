"""The benchmark programs, one module per program with every system's implementation.

Importing this package registers them in :data:`CASES` in table order. Adding a program:
a module here with a ``@case(...)`` function, imported below.
"""

from . import blog, chain, wide, mlp, logistic, taylor, rk4, fixed_point, sellar, bratu  # noqa: F401 - registers
from . import gp, attention  # noqa: F401 - registers (np.linalg, einsum)
from . import petsc_bratu  # noqa: F401 - registers (linear_solver="petsc")
from .common import CASES, SINGLE, Impl

__all__ = ["CASES", "SINGLE", "Impl"]
