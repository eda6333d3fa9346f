"""Optimization with the Lagrangian: scipy.optimize on a compiled Program.

Two views of ``min_x z_o(x)`` subject to the program's constraints ``c(z, x) = 0``:

* **nested** (:func:`minimize`): every evaluation solves the constraints (the forward
  pass), and the multipliers give the gradient ``λ_x = ∇_x z_o``; Newton methods also get
  exact Hessian-vector products (forward-over-reverse, :mod:`lagrangeprop.solve.second_order`).
* **full space** (:func:`minimize_full_space`, "all at once"): optimize over the inputs
  *and* the defined variables together, ``min <seed, z_o>`` s.t. ``c(z, x) = 0``, with
  scipy's ``trust-constr``, the sparse constraint Jacobian ``[∂c/∂x, ∂c/∂z]`` and the
  Lagrangian Hessian ``Σ_d v_d ∇²c_d``. At the optimum scipy's constraint multipliers
  ``v`` are ``-λ``: the same multipliers the nested solve returns.

Inputs to optimize are given by ``x0`` (a dict name -> initial value); every other
input of the program is held at its value in ``fixed`` (:mod:`.layout` flattens them;
:mod:`.nested` and :mod:`.full_space` hold the two minimizers).

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.sum((x - 1.0) ** 2) + x[0] ** 4, x=np.zeros(2))
>>> res = lp.minimize(prog, {"x": np.zeros(2)}, method="Newton-CG")
>>> bool(res.success), np.round(res.x_dict["x"], 6).tolist()
(True, [0.589755, 1.0])
"""

from .full_space import minimize_full_space
from .nested import minimize

__all__ = ["minimize", "minimize_full_space"]
