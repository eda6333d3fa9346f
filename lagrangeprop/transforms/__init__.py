"""Function transformations, autograd- and JAX-style: the public derivative API (SPEC §2).

- :mod:`~lagrangeprop.transforms.gradients`: ``grad``, ``value_and_grad``, ``vjp`` (reverse mode);
- :mod:`~lagrangeprop.transforms.jacobians`: ``jvp``, ``jacobian`` (forward mode, matrix passes);
- :mod:`~lagrangeprop.transforms.hessians`: ``hvp``, ``hessian`` (forward-over-reverse);
- :mod:`~lagrangeprop.transforms.nested`: ``grad`` / ``value_and_grad`` called on traced values
  (``grad(grad(f))``): one op in the outer program whose rules are exact Hessian-vector products;
- :mod:`~lagrangeprop.transforms.cache`: the guarded trace cache that picks the Program a
  call runs, and :mod:`~lagrangeprop.transforms.argnum`: which inputs ``argnum`` selects.

Each transform traces ``f`` (or takes a :class:`~lagrangeprop.Program` as it is) and hands
the Program to the solve layer; nothing here differentiates anything itself.

Examples
--------
>>> import lagrangeprop as lp
>>> float(lp.grad(lambda x: x ** 3)(2.0)), float(lp.hvp(lambda x: x ** 3, 2.0, 1.0))
(12.0, 12.0)
"""

from .gradients import grad, value_and_grad, vjp
from .hessians import hessian, hvp
from .jacobians import jacobian, jvp

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "jacobian", "hvp", "hessian"]
