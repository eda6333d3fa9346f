"""Elimination of explicit intermediates (Newton on the states, Schur-complement solves),
checked against dense solves with the full ``A_SS`` and against paths without elimination."""

import numpy as np
import pytest
import scipy.sparse as sp

import lagrangeprop as lp
from programs import SELLAR_GUESS, SELLAR_INPUTS, SELLAR_TOTALS, sellar_program
from lagrangeprop.blocks.assembly import block_jacobian
from lagrangeprop.blocks.eliminate import ReducedLU, reduced_factor, split_members


def _coupled(n, rng):
    W = sp.random(n, n, density=0.1, random_state=np.random.RandomState(3), format="csr")
    prog = lp.Program()
    x = prog.input("x", shape=(n,))
    a = prog.variable("a", shape=(n,)); b = prog.variable("b", shape=(n,))
    prog.define(a, 0.3 * lp.tanh(W @ b) + x)
    prog.define(b, 0.5 * lp.sin(a) - 0.1 * a * b)
    prog.output(lp.sum(a * b) + lp.sum(lp.exp(0.1 * b)), name="o")
    return prog, {"x": rng.standard_normal(n)}


def test_split_members_states_and_topological_intermediates():
    prog = sellar_program()
    sol = prog.solve(**SELLAR_INPUTS, guess=SELLAR_GUESS)
    blk = sol.schedule.blocks[0]
    T, inter = split_members(blk)
    assert len(T) == 1 and sorted(T + inter) == list(range(len(blk.names)))
    seen = set(T)
    for k in inter:     # every block operand of an intermediate is a state or evaluated before it
        assert all(blk.position[u] in seen for u in blk.steps[k].args if u in blk.position)
        seen.add(k)
    g = np.concatenate([np.ravel(sol.grad["x"]), np.ravel(sol.grad["z"])])
    assert np.allclose(g, SELLAR_TOTALS, rtol=1e-7)


def test_reduced_lu_matches_dense_solves_and_all_paths_agree(rng):
    prog, inputs = _coupled(60, rng)
    sol = prog.solve(**inputs, method="newton", linear_solver="direct")
    blk = sol.schedule.blocks[0]
    assert blk.size > 128 and len(split_members(blk)[0]) == 1      # one state breaks the cycle
    A = block_jacobian(blk, sol._vals, sol._states[id(blk)].ans)
    lu, _ = reduced_factor(blk, A, "here")
    assert isinstance(lu, ReducedLU)
    b = rng.standard_normal(blk.size)
    Ad = A.toarray()
    assert np.allclose(lu.solve(b), np.linalg.solve(Ad, b), rtol=1e-10, atol=1e-12)
    assert np.allclose(lu.solve(b, trans="T"), np.linalg.solve(Ad.T, b), rtol=1e-10, atol=1e-12)
    ref = prog.solve(**inputs, method="fixed-point", linear_solver="gmres")    # no elimination
    assert np.allclose(sol.values["a"], ref.values["a"], rtol=1e-8, atol=1e-9)   # fixed point: tol 1e-10 on the step
    assert np.allclose(sol.grad["x"], ref.grad["x"], rtol=1e-7, atol=1e-9)
    for name, lam in sol.multipliers.items():          # every member has its multiplier
        assert np.allclose(lam, ref.multipliers[name], rtol=1e-7, atol=1e-10), name
    kkt = sol.kkt()
    assert kkt["primal"] < 1e-10 and kkt["adjoint"] < 1e-10


def test_large_singular_block_still_names_the_variables():
    n = 70
    prog = lp.Program()
    x = prog.input("x", shape=(n,))
    y = prog.variable("y", shape=(n,)); w = prog.variable("w", shape=(n,))
    prog.define(y, y + 0.0 * lp.sin(w) + x)              # ∂c_y/∂y = 0: singular
    prog.define(w, lp.cos(y) * 0.5)
    prog.output(lp.sum(y), name="o")
    with pytest.raises(lp.SingularSystemError) as err:
        prog.solve(x=np.ones(n), method="newton")
    assert "y" in str(err.value)


def test_partition_index_maps_equal_slicing(rng):
    """The cached index maps give exactly the sub-blocks that slicing A gives, at any values."""
    from lagrangeprop.blocks.assembly import assemble
    from lagrangeprop.blocks.linearization import linearize
    from lagrangeprop.blocks.eliminate import Partition
    prog, inputs = _coupled(60, rng)
    sol = prog.solve(**inputs, method="newton", linear_solver="direct")
    blk = sol.schedule.blocks[0]
    A = assemble(blk, linearize(blk, sol._vals, sol._states[id(blk)].ans))
    A.data = rng.standard_normal(A.nnz)             # same pattern, other values (explicit zeros kept)
    A.data[::7] = 0.0
    fast, slow = Partition(blk, A), Partition(blk, sp.csr_matrix(A))
    assert blk.cache.partition_maps is not None
    for name in ("A_TT", "A_TI", "A_IT"):
        assert (getattr(fast, name) != getattr(slow, name)).nnz == 0, name
    assert list(fast.blocks) == list(slow.blocks)
    for key in slow.blocks:
        assert (fast.blocks[key] != slow.blocks[key]).nnz == 0, key
    assert np.array_equal(fast.bounds, slow.bounds)
    assert (fast.schur() != slow.schur()).nnz == 0
