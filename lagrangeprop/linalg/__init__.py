"""Linear solvers for a block Jacobian ``A_SS``, one solver family a module (SPEC §3).

- :mod:`~lagrangeprop.linalg.direct`: dense LAPACK and sparse ``splu`` LU, equilibration, fill ratio;
- :mod:`~lagrangeprop.linalg.krylov`: ``gmres``/``bicgstab``/``cg`` with a verified answer, ILU,
  the componentwise backward error;
- :mod:`~lagrangeprop.linalg.stationary`: the stationary (Gauss–Seidel) iteration;
- :mod:`~lagrangeprop.linalg.amg`: algebraic-multigrid preconditioned Krylov (optional pyamg);
- :mod:`~lagrangeprop.linalg.petsc`: PETSc KSP + AMG, distributed by rows under MPI (optional petsc4py);
- :mod:`~lagrangeprop.linalg.diagnose`: why a Jacobian is singular (the error's report).

Nothing here knows what a block is: callers pass matrices, names and labels. The names are
imported from their modules (``from lagrangeprop.linalg.krylov import krylov``): re-exporting
``krylov`` or ``stationary`` here would hide the modules of the same name.
"""

__all__ = ["amg", "diagnose", "direct", "krylov", "petsc", "stationary"]
