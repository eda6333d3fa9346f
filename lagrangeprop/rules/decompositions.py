"""np.linalg decompositions: eigh and svd, one primitive per output, each with all its rules;
and pinv, whose cutoff is a spectral function of the SVD.

``eigh(a)`` is two nodes, ``eigvalsh`` (w) and ``eigh_vectors`` (v); ``svd(a)`` three,
``svd_u``, ``svdvals`` (s) and ``svd_vh``. Each recomputes the decomposition (LAPACK is
deterministic, so the parts agree) and pulls back its own share of autograd's VJP, which
is linear in the output cotangents, so the shares sum to autograd's ``grad_eigh`` /
``grad_svd``. The VJPs are written over :mod:`~lagrangeprop.rules.dual` numbers: with the
parts' tangents they give the exact curvature. Distinct eigenvalues (singular values) are
required for the eigenvector (singular vector) derivatives: a repeated one divides by zero,
and the solver raises NonFiniteError instead of returning a number.

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.rules import get
>>> a = np.array([[2.0, 1.0], [1.0, 3.0]])
>>> w = get("eigvalsh").value([a], {})
>>> g = get("eigvalsh").vjp(0, np.array([0.0, 1.0]), w, [a], {})   # d w_max / dA
>>> v = np.linalg.eigh(a)[1][:, 1]
>>> np.allclose(g, np.tril(2 * np.outer(v, v)) - np.diag(v * v))
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import GraphError
from .arrays import as_f64 as _f
from .dual import Dual, mT
from .linalg import dense_jac, eye_like, lapack, matrix_op, read_triangle, square_shape, to_triangle
from .registry import Primitive, Tape, register

__all__ = ["decomposition", "svd_parts", "svd_push"]

Args = tuple[Any, ...]
Params = dict[str, Any]
Shape = tuple
Parts = tuple[Any, ...]


# y = part k of a decomposition P(A): ẏ = push(P, Ȧ)[k]; Ā = pull(ḡ, P) over duals, so
# S = d/dε pull(ḡ, P + ε Ṗ) with Ṗ = push(P, Ȧ) is the exact curvature.
def decomposition(name: str, value: Callable[..., Any], k: int | Callable[[Parts], Any],
                  parts: Callable[..., Parts],
                  push: Callable[..., Parts], pull: Callable[..., Any], *,
                  shape_rule: Callable[..., Any], tape: Tape) -> Primitive:
    """Register output ``k`` of the decomposition ``parts(a, params)`` as op ``name`` (``k``
    may be a function picking the output's tangent from the parts' tangents)."""
    pick = k if callable(k) else (lambda dP: dP[k])

    def vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> Any:
        return pull(g, parts(_f(args[0]), params), params)

    def jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> Any:
        return pick(push(parts(_f(args[0]), params), t, params))

    def jac(i: int, ans: Any, args: Args, params: Params) -> Any:
        a = _f(args[0])
        P = parts(a, params)
        return dense_jac(lambda t: pick(push(P, t, params)), a.shape, np.shape(ans))

    def curvature(i, g, ans, args, params, tans):
        if tans[0] is None:
            return None
        P = parts(_f(args[0]), params)
        dP = push(P, tans[0], params)
        out = pull(g, tuple(Dual(p, dp) for p, dp in zip(P, dP)), params)
        return out.t if isinstance(out, Dual) else None

    return register(Primitive(name, value, nargs=1, vjp=vjp, jvp=jvp, jac=jac, curvature=curvature,
                              shape_rule=shape_rule, tape=tape))


def _offdiag(n: int) -> np.ndarray:
    return 1.0 - np.eye(n)


def _gaps(w: Any) -> Any:
    """``F_ij = 1 / (w_j - w_i)`` off the diagonal, 0 on it (inf for a repeated value)."""
    n = np.shape(w)[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return _offdiag(n) / (w[..., None, :] - w[..., :, None] + np.eye(n))


# ---------------------------------------------------------------- eigh
# LAPACK reads one triangle: A_eff = tril(A) + tril(A, -1)ᵀ (UPLO="L"). With E = Vᵀ dA_eff V,
# dw = diag(E), dV = V (F ∘ E); the cotangent X of A_eff pulls back to the read triangle,
# diag(X) + tril(X + Xᵀ, -1) (autograd's grad_eigh).
def _read(t: np.ndarray, uplo: str) -> np.ndarray:
    return read_triangle(t, uplo == "L")


def _to_triangle(x: Any, uplo: str) -> Any:
    return to_triangle(x, uplo == "L")


def _uplo(params: Params) -> str:
    return params.get("UPLO", "L")


def _eigh_parts(a: np.ndarray, params: Params) -> Parts:
    return tuple(np.linalg.eigh(a, UPLO=_uplo(params)))


def _eigh_push(P: Parts, t: np.ndarray, params: Params) -> Parts:
    w, v = P
    E = np.swapaxes(v, -1, -2) @ _read(t, _uplo(params)) @ v
    with np.errstate(invalid="ignore"):
        return np.einsum("...ii->...i", E), v @ (_gaps(w) * E)


def _eigvalsh_pull(g: Any, P: Parts, params: Params) -> Any:
    w, v = P
    return _to_triangle((v * g[..., None, :]) @ mT(v), _uplo(params))


def _eigh_vectors_pull(g: Any, P: Parts, params: Params) -> Any:
    w, v = P
    if not np.any(g):   # as autograd: no eigenvector signal, no division by the gaps
        return np.zeros(np.shape(v))
    return _to_triangle(v @ (_gaps(w) * (mT(v) @ g)) @ mT(v), _uplo(params))


def _vector_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    s = square_shape(shapes, params)
    return None if s is None else s[:-1]


def _autograd_eigh(k: int) -> Callable[[Any], Callable[..., Any]]:
    return lambda anp: lambda a, UPLO="L": anp.linalg.eigh(a, UPLO=UPLO)[k]


def _signs(torch: Any, ours: np.ndarray, theirs: Any) -> Any:
    """±1 per column that turns torch's singular/eigen vectors into numpy's (LAPACK's sign
    choice may differ between the libraries; the derivative follows the sign)."""
    return torch.as_tensor(np.where(np.sum(ours * theirs.detach().numpy(), axis=-2) < 0, -1.0, 1.0))


def _torch_eigh(k: int) -> Callable[[Any], Callable[..., Any]]:
    def make(torch):
        def eigh(a, UPLO="L"):
            # torch differentiates as if a were symmetric: build the matrix LAPACK reads
            tri = torch.tril if UPLO == "L" else torch.triu
            off = -1 if UPLO == "L" else 1
            sym = tri(a) + tri(a, diagonal=off).transpose(-1, -2)
            w, v = torch.linalg.eigh(sym, UPLO=UPLO)
            if k == 0:
                return w
            ours = np.linalg.eigh(a.detach().numpy(), UPLO=UPLO)[1]
            return v * _signs(torch, ours, v)[..., None, :]
        return eigh
    return make


decomposition("eigvalsh", lambda a, UPLO="L": np.linalg.eigvalsh(_f(a), UPLO=UPLO), 0,
              _eigh_parts, _eigh_push, _eigvalsh_pull, shape_rule=_vector_shape,
              tape=Tape(autograd=_autograd_eigh(0), torch=_torch_eigh(0)))
decomposition("eigh_vectors", lambda a, UPLO="L": np.linalg.eigh(_f(a), UPLO=UPLO)[1], 1,
              _eigh_parts, _eigh_push, _eigh_vectors_pull, shape_rule=square_shape,
              tape=Tape(autograd=_autograd_eigh(1), torch=_torch_eigh(1)))


# ---------------------------------------------------------------- svd
# A = U S Vᵀ (reduced, k = min(m, n)), dP = Uᵀ dA V, F_ij = 1 / (s_j² - s_i²):
#   ds = diag(dP), dU = U (F ∘ (dP S + S dPᵀ)) + (I - U Uᵀ) dA V S⁻¹,
#   dV = V (F ∘ (S dP + dPᵀ S)) + (I - V Vᵀ) dAᵀ U S⁻¹ (Townsend 2016); the VJP is autograd's.
def svd_parts(a: np.ndarray, params: Params) -> Parts:
    u, s, vh = np.linalg.svd(a, full_matrices=params.get("full_matrices", False))
    return u, s, np.swapaxes(vh, -1, -2)


def svd_push(P: Parts, t: np.ndarray, params: Params) -> Parts:
    u, s, v = P
    m, n = t.shape[-2:]
    uT, vT = np.swapaxes(u, -1, -2), np.swapaxes(v, -1, -2)
    dP = uT @ t @ v
    dPT = np.swapaxes(dP, -1, -2)
    F = _gaps(s * s)
    with np.errstate(invalid="ignore", divide="ignore"):
        du = u @ (F * (dP * s[..., None, :] + s[..., :, None] * dPT))
        dv = v @ (F * (s[..., :, None] * dP + dPT * s[..., None, :]))
        if m > s.shape[-1]:
            du = du + (t @ v - u @ (uT @ t @ v)) / s[..., None, :]
        if n > s.shape[-1]:
            tT = np.swapaxes(t, -1, -2)
            dv = dv + (tT @ u - v @ (vT @ tT @ u)) / s[..., None, :]
    return du, np.einsum("...ii->...i", dP), dv


def _svdvals_pull(g: Any, P: Parts, params: Params) -> Any:
    u, s, v = P
    return (u * g[..., None, :]) @ mT(v)


def _svd_u_pull(g: Any, P: Parts, params: Params) -> Any:
    u, s, v = P
    utg = mT(u) @ g
    out = u @ ((_gaps(s * s) * (utg - mT(utg))) * s[..., None, :]) @ mT(v)
    if np.shape(u)[-2] > np.shape(s)[-1]:   # m > k: the part of ḡ outside range(U)
        out = out + ((g - u @ utg) / s[..., None, :]) @ mT(v)
    return out


def _svd_vh_pull(g: Any, P: Parts, params: Params) -> Any:
    u, s, v = P
    gv = mT(g)
    vtg = mT(v) @ gv
    out = u @ (s[..., :, None] * (_gaps(s * s) * (vtg - mT(vtg)))) @ mT(v)
    if np.shape(v)[-2] > np.shape(s)[-1]:   # n > k
        out = out + (u / s[..., None, :]) @ mT(gv - v @ vtg)
    return out


def _svd_shapes(k: int) -> Callable[[Sequence[Shape], dict], Shape | None]:
    def rule(shapes: Sequence[Shape], params: dict) -> Shape | None:
        s = shapes[0]
        if len(s) < 2 or set(params) - {"full_matrices"}:
            return None
        m, n = s[-2:]
        r = min(m, n)
        full = params.get("full_matrices", False)
        return s[:-2] + ((m, m if full else r), (r,), (n if full else r, n))[k]
    return rule


def _svd_value(k: int) -> Callable[..., Any]:
    def value(a, full_matrices=False):
        return np.linalg.svd(_f(a), full_matrices=full_matrices)[k]
    return value


# full_matrices=True is only recorded for square matrices, where it is the reduced SVD
def _autograd_svd(k: int) -> Callable[[Any], Callable[..., Any]]:
    return lambda anp: lambda a, full_matrices=False: anp.linalg.svd(a, full_matrices=False)[k]


def _torch_svd(k: int) -> Callable[[Any], Callable[..., Any]]:
    def make(torch):
        def svd(a, full_matrices=False):
            u, s, vh = torch.linalg.svd(a, full_matrices=False)
            d = _signs(torch, np.linalg.svd(a.detach().numpy(), full_matrices=False)[0], u)
            return u * d[..., None, :] if k == 0 else vh * d[..., :, None]
        return svd
    return make


decomposition("svd_u", _svd_value(0), 0, svd_parts, svd_push, _svd_u_pull,
              shape_rule=_svd_shapes(0), tape=Tape(autograd=_autograd_svd(0), torch=_torch_svd(0)))
decomposition("svdvals", lambda a: np.linalg.svd(_f(a), compute_uv=False), 1, svd_parts,
              svd_push, _svdvals_pull, shape_rule=_svd_shapes(1),
              tape=Tape(autograd=lambda anp: lambda a: anp.linalg.svd(a, compute_uv=False),
                        torch=lambda torch: torch.linalg.svdvals))
decomposition("svd_vh", _svd_value(2), lambda dP: np.swapaxes(dP[2], -1, -2), svd_parts, svd_push, _svd_vh_pull,
              shape_rule=_svd_shapes(2), tape=Tape(autograd=_autograd_svd(2), torch=_torch_svd(2)))


# ---------------------------------------------------------------- pinv
# P = A⁺ (constant rank): dP = -P dA P + P Pᵀ dAᵀ (I - A P) + (I - P A) dAᵀ Pᵀ P, and
# Ā = (-P Ḡᵀ P + P Pᵀ Ḡ (I - A P) + (I - P A) Ḡ Pᵀ P)ᵀ (autograd's grad_pinv).
# A cutoff (rcond/rtol) that drops a singular value the default cutoff keeps makes P the
# pseudo-inverse of the truncated A_k, not of A: P = g(M) Aᵀ with M = AᵀA = V Λ Vᵀ and
# g(λ) = 1/λ above the cutoff², 0 below (Daleckii-Krein: Dg[E] = V (Γ ∘ VᵀEV) Vᵀ,
# Γ_ij = (g_i - g_j)/(λ_i - λ_j)), so dP = Dg[dAᵀA + AᵀdA] Aᵀ + g(M) dAᵀ and
# Ā = A (K + Kᵀ) + Ḡᵀ g(M), K = Dg[Ḡ A].
def _kept(s: np.ndarray, a: np.ndarray, params: Params) -> tuple[np.ndarray, bool]:
    """numpy's kept singular values (s > cutoff·max s) and whether the cutoff truncates
    one that numpy's default cutoff keeps (then A⁺'s constant-rank formula is wrong)."""
    m, n = a.shape[-2:]
    top = np.max(s, axis=-1, keepdims=True) if s.shape[-1] else s
    default = max(m, n) * np.finfo(np.float64).eps
    cut = params.get("rtol", params.get("rcond", default))
    kept = s > cut * top
    return kept, bool(np.any(~kept & (s > default * top)))


def _spectral(a: np.ndarray, params: Params) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(V, g(λ), Γ) of M = AᵀA for a truncating cutoff, else None (see above)."""
    _, s, vh = np.linalg.svd(a, full_matrices=True)
    kept, truncates = _kept(s, a, params)
    if not truncates:
        return None
    n = a.shape[-1]
    lam = np.zeros(a.shape[:-2] + (n,))
    lam[..., :s.shape[-1]] = s * s
    keep = np.zeros(lam.shape, dtype=bool)
    keep[..., :s.shape[-1]] = kept
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(keep, 1.0 / np.where(keep, lam, 1.0), 0.0)
        li, lj = lam[..., :, None], lam[..., None, :]
        ki, kj = keep[..., :, None], keep[..., None, :]
        gamma = np.where(ki & kj, -g[..., :, None] * g[..., None, :],
                         np.where(ki | kj, (g[..., :, None] - g[..., None, :]) / (li - lj), 0.0))
    return np.swapaxes(vh, -1, -2), g, gamma


def _dk(v: np.ndarray, gamma: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Dg[E] = V (Γ ∘ Vᵀ E V) Vᵀ."""
    vT = np.swapaxes(v, -1, -2)
    return v @ (gamma * (vT @ e @ v)) @ vT


def _pinv_push(t: np.ndarray, p: np.ndarray, a: np.ndarray, params: Params) -> np.ndarray:
    spec = _spectral(a, params) if params else None
    tT = np.swapaxes(t, -1, -2)
    if spec is not None:
        v, g, gamma = spec
        aT = np.swapaxes(a, -1, -2)
        return _dk(v, gamma, tT @ a + aT @ t) @ aT + (v * g[..., None, :]) @ np.swapaxes(v, -1, -2) @ tT
    pT = np.swapaxes(p, -1, -2)
    return (-p @ t @ p + p @ pT @ tT @ (np.eye(a.shape[-2]) - a @ p)
            + (eye_like(a) - p @ a) @ tT @ pT @ p)


def _pinv_pull(g: Any, p: Any, a: Any, params: Params) -> Any:
    if params:
        plain = a.x if isinstance(a, Dual) else a
        spec = _spectral(plain, params)
        if spec is not None:
            if isinstance(a, Dual):
                raise GraphError(
                    "np.linalg.pinv: its cutoff (rcond/rtol) drops a singular value above "
                    "rounding level, and second derivatives (hvp, hessian) of that truncated "
                    "pseudo-inverse are not implemented; write the truncation with "
                    "np.linalg.svd, or use a cutoff that keeps every singular value")
            v, gv, gamma = spec
            k = _dk(v, gamma, g @ a)
            return a @ (k + mT(k)) + mT(g) @ ((v * gv[..., None, :]) @ mT(v))
    m, n = np.shape(a)[-2:]
    return mT(-(p @ mT(g) @ p) + p @ mT(p) @ g @ (np.eye(m) - a @ p)
              + (np.eye(n) - p @ a) @ g @ mT(p) @ p)


def _pinv(a: Any, **cutoff: Any) -> np.ndarray:
    return lapack("pinv", np.linalg.pinv, _f(a), **cutoff)


def _pinv_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    s = shapes[0]
    return s[:-2] + (s[-1], s[-2]) if len(s) >= 2 else None


def _autograd_pinv(anp: Any) -> Callable[..., Any]:
    # autograd's pinv rule takes no cutoff: with one, the truncated SVD (autograd's svd rule)
    def pinv(a, rcond=None, rtol=None):
        if rcond is None and rtol is None:
            return anp.linalg.pinv(a)
        u, s, vh = anp.linalg.svd(a, full_matrices=False)
        kept = s > (rtol if rtol is not None else rcond) * np.max(getattr(s, "_value", s), axis=-1,
                                                                    keepdims=True)
        inv_s = anp.where(kept, 1.0 / anp.where(kept, s, 1.0), 0.0)
        return anp.swapaxes(vh, -1, -2) @ (inv_s[..., :, None] * anp.swapaxes(u, -1, -2))
    return pinv


def _torch_pinv(torch: Any) -> Callable[..., Any]:
    # torch's pinv rule is the constant-rank formula: with a cutoff, the truncated SVD
    def pinv(a, rcond=None, rtol=None):
        cut = rtol if rtol is not None else rcond
        if cut is None:
            return torch.linalg.pinv(a)
        u, s, vh = torch.linalg.svd(a, full_matrices=False)
        kept = s > cut * s.detach().amax(dim=-1, keepdim=True)
        inv_s = torch.where(kept, 1.0 / torch.where(kept, s, torch.ones_like(s)), torch.zeros_like(s))
        return vh.transpose(-1, -2) @ (inv_s[..., :, None] * u.transpose(-1, -2))
    return pinv


matrix_op("pinv", _pinv, _pinv_push, _pinv_pull, shape_rule=_pinv_shape,
          tape=Tape(autograd=_autograd_pinv, torch=_torch_pinv))
