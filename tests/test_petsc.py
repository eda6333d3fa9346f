"""linear_solver="petsc": PETSc KSP + AMG through petsc4py, in one process and under ``mpiexec -n 2``.

Every answer is held against an independent reference: a hand-written scipy Newton with a
``splu`` adjoint (Bratu), finite differences (the vector Sellar block), and lagrangeprop's own
direct and pyamg paths. Skipped, with the reason, where petsc4py is missing (see ``.ci/run``,
which builds Debian's petsc4py venv and runs this file there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import lagrangeprop as lp
from lagrangeprop import options
from lagrangeprop.blocks.eliminate import inner_solver

ROOT = Path(__file__).resolve().parent.parent


def _petsc_reason() -> str | None:
    try:
        from petsc4py import PETSc  # noqa: F401
    except ImportError as exc:
        return (f"petsc4py does not import ({exc}): apt-get install python3-petsc4py and run in a venv of "
                "/usr/bin/python3 with --system-site-packages, numpy<2, scipy<1.14, PETSC_DIR set (.ci/run)")
    return None


REASON = _petsc_reason()
needs_petsc = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def bratu_program(N: int):
    h = 1.0 / (N + 1)
    T = sp.diags([-np.ones(N - 1), 2 * np.ones(N), -np.ones(N - 1)], [-1, 0, 1])
    L = (sp.kron(sp.identity(N), T) + sp.kron(T, sp.identity(N))).tocsr() / h**2
    f0 = np.random.default_rng(4).random(N * N)
    prog = lp.Program(name="bratu")
    lam = prog.input("lam")
    f = prog.input("f", shape=(N * N,))
    u = prog.variable("u", shape=(N * N,))
    prog.residual(u, lp.matmul(L, u) - lam * lp.exp(u) - f)
    prog.output(h * h * lp.sum(u), name="J")
    return prog, L, f0, h


def bratu_scipy(L, f0, h, lam0=1.0):
    """Hand-written Newton + splu, adjoint Jᵀμ = h²1: (J, dJ/dlam, dJ/df)."""
    n = L.shape[0]
    u = np.zeros(n)
    for _ in range(30):
        e = lam0 * np.exp(u)
        r = L @ u - e - f0
        Jm = (L - sp.diags(e)).tocsc()
        step = spla.splu(Jm).solve(r)
        u -= step
        if np.max(np.abs(step)) < 1e-14:
            break
    e = lam0 * np.exp(u)
    mu = spla.splu((L - sp.diags(e)).tocsc()).solve(np.full(n, h * h), trans="T")
    return h * h * u.sum(), float(mu @ (e / lam0)), mu


def used_petsc(sol) -> bool:
    from lagrangeprop.linalg.petsc import PETScInverse
    return any(isinstance(inner_solver(st.lu), PETScInverse) for st in sol._states.values())


def test_missing_petsc_names_the_install(monkeypatch):
    monkeypatch.setattr(options, "petsc_installed", lambda: False)
    with pytest.raises(lp.InputError, match=r"linear_solver='petsc' needs petsc4py.*apt-get install python3-petsc4py"):
        options.SolveOptions.make(linear_solver="petsc")
    prog, L, f0, h = bratu_program(4)
    with pytest.raises(lp.InputError, match=r"pip install 'lagrangeprop\[petsc\]'"):
        prog.solve(lam=1.0, f=f0, linear_solver="petsc")


def test_ownership_splits_rows_contiguously():
    from lagrangeprop.linalg.petsc import ownership
    for n in (0, 1, 7, 900):
        for size in (1, 2, 3):
            parts = [ownership(n, size, r) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1


@needs_petsc
def test_bratu_petsc_agrees_with_scipy_direct_and_amg():
    prog, L, f0, h = bratu_program(30)
    J, dlam, mu = bratu_scipy(L, f0, h)
    sols = {ls: prog.solve(lam=1.0, f=f0, linear_solver=ls) for ls in ("petsc", "direct", "amg")}
    assert used_petsc(sols["petsc"]) and not used_petsc(sols["direct"])
    assert "adjoint PETSc cg with hypre, 1 rank(s)" in sols["petsc"].report() or "with gamg" in sols["petsc"].report()
    for ls, sol in sols.items():
        assert sol.output == pytest.approx(J, rel=1e-10), ls
        assert float(sol.grad["lam"]) == pytest.approx(dlam, rel=1e-8), ls
        np.testing.assert_allclose(sol.grad["f"], mu, rtol=1e-8, atol=1e-8 * np.abs(mu).max(), err_msg=ls)
        kkt = sol.kkt()
        assert kkt["primal"] <= 1e-9 and kkt["adjoint"] <= 1e-9, (ls, kkt)
    again = prog.solve(lam=1.0, f=f0, linear_solver="petsc")      # the kept preconditioner, reused
    np.testing.assert_allclose(again.grad["f"], mu, rtol=1e-8, atol=1e-8 * np.abs(mu).max())


def sellar_vector(n: int = 200):
    """A vector Sellar-like block (2n unknowns, non-symmetric coupling D) with a closed-form output."""
    D = sp.diags([np.ones(n - 1), -0.5 * np.ones(n - 1)], [-1, 1]).tocsr()
    prog = lp.Program(name="sellar_vector")
    x = prog.input("x", shape=(n,))
    z = prog.input("z", shape=(2,))
    y1 = prog.variable("y1", shape=(n,))
    y2 = prog.variable("y2", shape=(n,))
    prog.define(y1, z[0] ** 2 + z[1] + x - 0.2 * y2 + 0.05 * lp.matmul(D, y2))
    prog.define(y2, lp.sqrt(y1) + z[0] + z[1] + 0.05 * lp.matmul(D, y1))
    prog.output(lp.sum(x**2) + z[1] + lp.sum(y1) + lp.sum(lp.exp(-y2)), name="obj")
    rng = np.random.default_rng(0)
    return prog, {"x": 1.0 + 0.1 * rng.random(n), "z": np.array([5.0, 2.0])}


@needs_petsc
def test_sellar_vector_block_petsc_agrees_with_direct_and_finite_differences():
    prog, inputs = sellar_vector()
    guess = {"y1": np.ones(200), "y2": np.ones(200)}
    sp_ = prog.solve(**inputs, guess=guess, linear_solver="petsc", method="newton")
    sd = prog.solve(**inputs, guess=guess, linear_solver="direct", method="newton")
    assert used_petsc(sp_) and "adjoint PETSc gmres" in sp_.report()      # A_SS is not symmetric
    assert sp_.output == pytest.approx(sd.output, rel=1e-10)
    for k in ("x", "z"):
        np.testing.assert_allclose(sp_.grad[k], sd.grad[k], rtol=1e-8, atol=1e-10)
    rng = np.random.default_rng(1)
    for k in ("x", "z"):        # a central difference along a random direction
        v = rng.standard_normal(inputs[k].shape)
        eps = 1e-6

        def at(t, k=k, v=v):
            return prog.evaluate(**{**inputs, k: inputs[k] + t * v}, guess=guess, linear_solver="direct")
        fd = (at(eps) - at(-eps)) / (2 * eps)
        assert float(np.sum(sp_.grad[k] * v)) == pytest.approx(fd, rel=1e-6)


MPI_SCRIPT = r'''
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_petsc import bratu_program
from lagrangeprop.blocks.eliminate import inner_solver
from petsc4py import PETSc
prog, L, f0, h = bratu_program(int(sys.argv[2]))
sol = prog.solve(lam=1.0, f=f0, linear_solver="petsc")
inv = inner_solver(next(iter(sol._states.values())).lu)
comm = PETSc.COMM_WORLD
with open(f"{sys.argv[3]}/rank{comm.getRank()}.json", "w") as fh:   # one file a rank: stdout interleaves
    json.dump({"rank": comm.getRank(), "size": comm.getSize(), "rows": list(inv.rows),
               "J": float(sol.output), "lam": float(sol.grad["lam"]), "f": sol.grad["f"].tolist()}, fh)
'''


@needs_petsc
@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="no mpiexec on PATH (apt-get install openmpi-bin)")
def test_mpiexec_two_ranks_agree_with_one_process_scipy(tmp_path):
    N = 24
    script = tmp_path / "bratu_mpi.py"
    script.write_text(MPI_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = ["mpiexec", "--allow-run-as-root", "-n", "2", sys.executable, str(script), str(ROOT / "tests"), str(N),
           str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*.json"))]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["size"] == 2 for r in ranks)
    n = N * N
    assert ranks[0]["rows"][0] == 0 and ranks[0]["rows"][1] == ranks[1]["rows"][0] and ranks[1]["rows"][1] == n
    _, L, f0, h = bratu_program(N)
    J, dlam, mu = bratu_scipy(L, f0, h)
    for r in ranks:         # every rank holds the whole gathered answer
        assert r["J"] == pytest.approx(J, rel=1e-10)
        assert r["lam"] == pytest.approx(dlam, rel=1e-8)
        np.testing.assert_allclose(np.array(r["f"]), mu, rtol=1e-8, atol=1e-8 * np.abs(mu).max())


def _doc_blocks():
    """The code blocks of docs/cyclic.md's "Large blocks and scaling out" section: (info, code)."""
    text = (ROOT / "docs" / "cyclic.md").read_text()
    section = text[text.index("## Large blocks and scaling out"):]
    return re.findall(r"```(python(?: petsc)?)\n(.*?)```", section, flags=re.S)


def test_scaling_docs_blocks_run(tmp_path, monkeypatch):
    blocks = _doc_blocks()
    assert any(info == "python" for info, _ in blocks) and any(info == "python petsc" for info, _ in blocks)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}      # one session: a later block continues an earlier one
    for info, code in blocks:
        if info == "python petsc" and REASON is not None:
            continue        # needs petsc4py: run where .ci/run's petsc venv runs this file
        exec(compile(code, f"docs/cyclic.md ({info})", "exec"), namespace)
