"""petsc-bratu-300: Bratu N=300 (the ``bratu`` program) with ``linear_solver="petsc"`` against ``"amg"``.

Systems: ``lagrangeprop`` (pyamg: ``linear_solver="amg"``), ``petsc`` (PETSc KSP + hypre/GAMG through
petsc4py, one process; "not installed" where petsc4py does not import) and ``numpy`` (the
hand-written Newton + splu of ``bratu.py``, the reference of the err column). Run
``python benchmarks/run.py --only petsc-bratu --systems lagrangeprop,petsc,numpy``.

Two ranks (the harness times in one process, so MPI runs are timed here)::

    cd benchmarks && mpiexec --allow-run-as-root -n 2 python -c "from cases.petsc_bratu import main; main(300)"

prints rank 0's cold (trace + compile + first gradient) and warm gradient times.
"""

from __future__ import annotations

import time

import numpy as np

from .bratu import _bratu, program
from .common import Impl, case, lp_impl

N = 300


def _petsc_bratu(system: str, n: int = N) -> Impl | None:
    if system == "numpy":
        return _bratu("numpy", n)
    if system not in ("lagrangeprop", "petsc"):
        return None
    if system == "petsc":
        from petsc4py import PETSc  # noqa: F401 - ImportError: the harness says "not installed"
    build, inputs = program(n)
    impl = lp_impl(build, inputs, linear_solver="amg" if system == "lagrangeprop" else "petsc")
    impl.note = "linear_solver='amg' (pyamg)" if system == "lagrangeprop" else "linear_solver='petsc' (1 rank)"
    return impl


case(f"petsc-bratu-{N}", memory=True, quick=False)(_petsc_bratu)


def main(n: int) -> None:
    """Cold and warm gradient times on every rank of ``mpiexec`` (rank 0 prints them)."""
    from petsc4py import PETSc
    comm = PETSc.COMM_WORLD
    t0 = time.perf_counter()
    build, inputs = program(n)
    prog = build()
    g = prog.solve(**inputs, linear_solver="petsc").grad
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(3):
        t = time.perf_counter()
        prog.solve(**inputs, linear_solver="petsc")
        warm.append(time.perf_counter() - t)
    if comm.getRank() == 0:
        print(f"petsc {comm.getSize()} rank(s), bratu N={n}: cold {cold:.3f} s, warm {np.median(warm):.3f} s "
              f"(median of 3), dJ/dlam {float(g['lam']):.12g}")
