"""The interpreters over the schedule and what they produce (SPEC §3, ``solve/``).

- ``inputs``: the caller's inputs, guesses, seeds, tangents and points, checked;
- ``forward`` (``∂L/∂λ = 0``) and ``adjoint`` (``Aᵀλ = e_o·seed``): the solve itself;
- ``walk``: the one traversal of the schedule that the linear passes share, with
  ``tangent`` (``A ż = -(∂c/∂x) ẋ``), ``second_order`` (Hessian-vector products) and
  ``matrix`` (Jacobians: many columns at once) on top of it;
- ``lagrangian``: ``L``, ``∂L``, ``A = ∂c/∂z`` and the KKT certificate at any point;
- ``solution``: ``Solution``; ``program``: a Program's solve/evaluate/lagrangian
  methods as functions (build -> compile -> forward -> adjoint -> Solution).
"""
