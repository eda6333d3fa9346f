"""Hard but well-posed blocks (issue 11 follow-up): loud failures where scipy succeeds.

Each block is checked against scipy.optimize.root (``lm``; ``hybr`` where it converges) and the
implicit function theorem written out by hand, ``dz/dx = -A⁻¹ ∂F/∂x`` with ``A`` from central
differences, on every forward method x linear solver that the block admits.
"""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import root

import lagrangeprop as lp

LINEAR = ("auto", "direct", "gmres", "bicgstab")


def _fd_jac(f, v, h=1e-7):
    return np.stack([(f(v + h * e) - f(v - h * e)) / (2 * h) for e in np.eye(v.size)], axis=1)


# ------------------------------------ (b) a residual whose scale is a large cancelling term
def _offset(off):
    """``(exp(w) + off) - (x + off) = 0``: the residual's scale is ``off`` (blocks.scale)."""
    p = lp.Program(name="offset")
    x, w = p.input("x"), p.variable("w")
    p.residual(w, (lp.exp(w) + off) - (x + off))
    p.output(w * 1.0, name="o")
    return p


@pytest.mark.parametrize("off,x,linear_solver", list(itertools.product([1e6, 1e8, 1e10], [2.0, 0.5],
                                                                       ["auto", "direct", "gmres"])))
def test_newton_krylov_solves_a_residual_on_a_huge_scale(off, x, linear_solver):
    """Was: ConvergenceError after 100 iterations at every offset (scaled residual 3.6e-5 at x = 2):
    the line search on every member's equation saw exp's own row violated by each full step and crept
    at α = 2⁻¹⁰. Closed form: w = ln x, dw/dx = 1/x; the accuracy is what the offset's rounding
    leaves on the residual's own scale (tol·off/x)."""
    sol = _offset(off).solve(x=x, method="newton-krylov", linear_solver=linear_solver)
    limit = max(50 * off * np.finfo(float).eps, 2e-10 * off) / x
    assert abs(float(sol.values["w"]) - np.log(x)) <= limit
    assert abs(sol.grad["x"] - 1 / x) <= limit


# ------------------------------------------- (a) tanh saturating under a weak coupling
N = 300


def _weak_laplacian(k: float) -> sp.csr_matrix:
    """``k·L`` with ``L`` the 1-D graph Laplacian (tridiag(-1, 2, -1), corners 1: Neumann ends),
    positive semidefinite, so ``F(u) = k L u + tanh(u)/2 - a`` is strictly monotone: a unique root
    (``Σ tanh(u_i)/2 = Σ a_i`` is reachable, |Σ sin i| < 2), ``A = kL + diag(sech²u)/2`` nonsingular."""
    d = 2 * np.ones(N)
    d[0] = d[-1] = 1
    return (k * sp.diags([-np.ones(N - 1), d, -np.ones(N - 1)], [-1, 0, 1])).tocsr()


def _tanh_block(L):
    p = lp.Program(name="tanh_chain")
    a, u = p.input("a", shape=(N,)), p.variable("u", shape=(N,))
    p.residual(u, L @ u + 0.5 * lp.tanh(u) - a)
    p.output(lp.sum(u * u) / N, name="o")
    return p


@pytest.mark.parametrize("k", [1e-4, 1e-5])
def test_a_saturating_tanh_chain_is_solved_under_auto(k):
    """``k L u + tanh(u)/2 = sin(i)``, i = 0..299: the root has |u| up to 1e4..1e5 where tanh is flat.
    Was: ConvergenceError with method='auto' (exact Newton steps of size 1e5 along the near-null
    direction, the line search crawling at α down to 2⁻¹⁰; last scaled residual 3.4e-3 at k = 1e-4);
    now auto hands the block to Newton–Krylov. Reference: scipy's lm with the exact Jacobian, and
    the gradient of mean(u²) by the IFT, ``g = A⁻ᵀ (2u/N)``."""
    L = _weak_laplacian(k)
    a = np.sin(np.arange(N) * 1.0)

    def F(z):
        return L @ z + 0.5 * np.tanh(z) - a

    def J(z):
        with np.errstate(over="ignore"):
            return (L + sp.diags(0.5 / np.cosh(z) ** 2)).toarray()
    if k >= 1e-4:
        ref = root(F, np.zeros(N), method="lm", jac=J, options={"maxiter": 20000, "xtol": 1e-15, "ftol": 1e-15})
        assert np.abs(F(ref.x)).max() < 1e-9
        u_ref = ref.x
    else:   # lm takes ~70 s here; F is strictly monotone, so its one root is certified by |F| alone
        u_ref = None
    for linear_solver in ("auto", "direct", "gmres"):
        sol = _tanh_block(L).solve(a=a, linear_solver=linear_solver)
        u = sol.values["u"]
        assert np.abs(F(u)).max() < 1e-9            # the residual by hand, at lp's root
        if u_ref is not None:
            np.testing.assert_allclose(u, u_ref, rtol=1e-6, atol=1e-6)
        g = np.linalg.solve(J(u).T, 2 * u / N)     # the IFT by hand at that root
        np.testing.assert_allclose(sol.grad["a"], g, rtol=1e-5, atol=1e-9 * np.abs(g).max())
        assert sol.kkt()["primal"] <= 1e-9


def test_exact_newton_on_the_saturating_chain_still_fails_loudly():
    """method='newton' is not rescued (no fallback is asked for): still a ConvergenceError naming the
    block and its best residual, never a silent wrong root."""
    with pytest.raises(lp.ConvergenceError, match=r"block \[u.*did not converge with newton.*scaled residual"):
        _tanh_block(_weak_laplacian(1e-4)).solve(a=np.sin(np.arange(N) * 1.0), method="newton")


# ------------------------------------------------------ smaller hard blocks, every path
def _atan():
    """``atan(w) + w/100 = x``: pure Newton diverges from |w| > 1.4 (its steps overshoot where atan is flat)."""
    p = lp.Program(name="atan")
    x, w = p.input("x"), p.variable("w")
    p.residual(w, lp.arctan(w) + 0.01 * w - x)
    p.output(w * w, name="o")
    return p, (lambda z, xv: np.arctan(z) + 0.01 * z - xv), (lambda z: z[0] ** 2), {"w": 5.0}, 1.0


def _bratu():
    """1-D Bratu below the fold, ``L u - λ h² eᵘ = 0`` (λ = 3 < 3.51), from the poor guess u = 3."""
    n, lam = 20, 3.0
    h = 1.0 / (n + 1)
    L = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1]).tocsr()
    p = lp.Program(name="bratu")
    x, u = p.input("x"), p.variable("u", shape=(n,))
    p.residual(u, L @ u - (x * h * h) * lp.exp(u))
    p.output(lp.sum(u), name="o")
    return p, (lambda z, xv: L @ z - xv * h * h * np.exp(z)), (lambda z: z.sum()), {"u": np.full(n, 0.3)}, lam


def _kinetics():
    """Stiff kinetics steady state, Robertson-like rates (0.04, 1e4, 3e7) with an inflow x and outflow."""
    p = lp.Program(name="kinetics")
    x = p.input("x")
    y1, y2, y3 = p.variable("y1"), p.variable("y2"), p.variable("y3")
    p.residual(y1, x - 0.04 * y1 + 1e4 * y2 * y3 - y1)
    p.residual(y2, 0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2 * y2 - y2)
    p.residual(y3, 3e7 * y2 * y2 - y3)
    p.output(y1 + 2 * y2 + 3 * y3, name="o")

    def F(z, xv):
        a, b, c = z
        return np.array([xv - 0.04 * a + 1e4 * b * c - a, 0.04 * a - 1e4 * b * c - 3e7 * b * b - b,
                         3e7 * b * b - c])
    return p, F, (lambda z: z[0] + 2 * z[1] + 3 * z[2]), {"y1": 1.0, "y2": 1e-5, "y3": 0.1}, 1.0


HARD = {"atan": _atan, "bratu": _bratu, "kinetics": _kinetics}


def _state(sol):
    names = [n for n in ("w", "u", "y1", "y2", "y3") if n in sol.values]
    return np.concatenate([np.ravel(sol.values[n]) for n in names])


@pytest.mark.parametrize("case,method,linear_solver",
                         list(itertools.product(sorted(HARD), ["auto", "newton", "newton-krylov"], LINEAR)))
def test_hard_blocks_match_scipy_and_the_ift(case, method, linear_solver):
    prog, F, out, guess, xv = HARD[case]()
    sol = prog.solve(x=xv, guess=guess, method=method, linear_solver=linear_solver)
    z = _state(sol)
    ref = root(lambda q: F(q, xv), z * (1 + 1e-3), method="lm", options={"xtol": 1e-15, "ftol": 1e-15})
    np.testing.assert_allclose(z, ref.x, rtol=1e-8, atol=1e-14)
    A = _fd_jac(lambda q: F(q, xv), ref.x, h=1e-7 * max(1.0, np.abs(ref.x).max()))
    Fx = (F(ref.x, xv + 1e-6) - F(ref.x, xv - 1e-6)) / 2e-6
    oz = _fd_jac(lambda q: np.atleast_1d(out(q)), ref.x)[0]
    g = -oz @ np.linalg.solve(A, Fx)
    np.testing.assert_allclose(sol.grad["x"], g, rtol=1e-5)
