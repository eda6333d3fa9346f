"""Why a block Jacobian is singular: the report a :class:`SingularSystemError` carries.

Like OpenMDAO's DirectSolver, the report names the variables that enter no equation (zero
columns), the equations that depend on no variable (zero rows) and, for small systems, the
equations that are linear combinations of others (a null vector of ``Âᵀ`` from the SVD, given
as coefficients of the original equations). Nothing here knows what a block is: the caller
passes the names of the unknowns and the label of every scalar entry.

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> A = sp.csr_matrix(np.array([[1.0, 2.0], [2.0, 4.0]]))
>>> print(diagnose(A, ["a", "b"]))  # doctest: +NORMALIZE_WHITESPACE
the equations of a, b are linearly dependent (c[a] - 0.5·c[b] = 0 to first order); the variables a, b
are not determined (null vector of A_SS)
>>> entry_names(["y", "u"], [1, 2], [(), (2,)])
['y', 'u[0]', 'u[1]']
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import SingularSystemError

__all__ = ["SVD_MAX", "entry_names", "short_list", "describe_names", "diagnose", "singular_error"]


SVD_MAX = 400          # blocks up to this size get the dense SVD diagnosis


def entry_names(names: list[str], sizes: list[int], shapes: list[tuple]) -> list[str]:
    """``y1``, ``u[3]``, ``u[1, 2]``: a name per scalar entry of a stacked block vector."""
    out = []
    for name, size, shape in zip(names, sizes, shapes):
        if shape == ():
            out.append(name)
        else:
            out.extend(f"{name}[{', '.join(map(str, np.unravel_index(i, shape)))}]" for i in range(size))
    return out


def short_list(items: list[str], k: int = 6) -> str:
    """``a, b, c`` (the first ``k`` items, then how many there are in all) for messages."""
    return ", ".join(items[:k]) + (f", ... ({len(items)} in all)" if len(items) > k else "")


def describe_names(names: list[str]) -> str:
    """``a, b, c`` (at most 8 names, then the count) naming a block in error messages."""
    shown = names[:8]
    return ", ".join(shown) + (f", ... ({len(names)} nodes)" if len(names) > 8 else "")


def diagnose(A: sp.spmatrix, labels: list[str], r: np.ndarray | None = None,
             c: np.ndarray | None = None, reduced: bool = False) -> str:
    """Why ``A`` (rows = equations, columns = variables, both labelled) is singular.

    ``A`` is the equilibrated ``R A_SS C`` (:func:`equilibrate`; ``r``, ``c`` its scale factors, ``None``
    = 1): every nonzero row and column has its largest entry in ``[1/2, 2)``, so a zero row or column
    is one of ``A_SS`` itself, not an equation in small units. The dependent equations are reported
    as a combination of the original ones (coefficients ``u_i r_i``), the undetermined variables
    from the null vector ``C v``. ``reduced``: ``A`` is the Schur complement ``S`` on the block's
    states (the intermediates eliminated), ``labels`` the states' entries.
    """
    of = "S, the reduced Jacobian on the states" if reduced else "A_SS"
    A = sp.csr_matrix(A)
    if not np.isfinite(A.data).all():   # the SVD below would raise LinAlgError
        return f"{of} has NaN or inf entries at this point (a derivative is infinite there)"
    tiny = 1e-300
    absA = abs(A)
    zero_rows = np.flatnonzero(np.asarray(absA.max(axis=1).todense()).ravel() <= tiny)
    zero_cols = np.flatnonzero(np.asarray(absA.max(axis=0).todense()).ravel() <= tiny)
    msgs = []
    if zero_cols.size:
        msgs.append(f"variable(s) {short_list([labels[j] for j in zero_cols])} enter none of the "
                    f"block's equations (zero column of {of})")
    if zero_rows.size:
        msgs.append(f"the equation(s) of {short_list([labels[i] for i in zero_rows])} depend on no "
                    f"block variable (zero row of {of})")
    if not msgs and A.shape[0] <= SVD_MAX:
        U, s, Vt = np.linalg.svd(A.toarray())
        if s.size and s[-1] <= max(s[0], 1e-300) * 1e-10:
            # which equations and variables take part: judged on the equilibrated (unit-free) vectors;
            # the combination is reported with the coefficients of the original equations, u_i r_i
            uh, vh = U[:, -1], Vt[-1]
            u = uh if r is None else uh * r
            rows = np.flatnonzero(np.abs(uh) > 1e-8 * np.abs(uh).max())
            cols = np.flatnonzero(np.abs(vh) > 1e-8 * np.abs(vh).max())
            combo = _combination([u[i] / u[rows[0]] for i in rows[:6]], [labels[i] for i in rows[:6]])
            elim = ", with the intermediates eliminated," if reduced else ""
            msgs.append(f"the equations of {short_list([labels[i] for i in rows])}{elim} are linearly "
                        f"dependent ({combo} = 0 to first order)")
            msgs.append(f"the variables {short_list([labels[j] for j in cols])} are not determined "
                        f"(null vector of {'S' if reduced else 'A_SS'})")
    return "; ".join(msgs)


def _combination(coefs: list[float], labels: list[str]) -> str:
    """``Σ coef_i·c[label_i]`` as a reader writes it: ``c[a] - 0.5·c[b]``, not ``1·c[a] + -0.5·c[b]``.

    Examples
    --------
    >>> _combination([1.0, -0.5, 2.0, -1.0], ["a", "b", "c", "d"])
    'c[a] - 0.5·c[b] + 2·c[c] - c[d]'
    """
    out = ""
    for k, (v, lab) in enumerate(zip(coefs, labels)):
        mag = f"{abs(v):.3g}"
        term = f"c[{lab}]" if mag == "1" else f"{mag}·c[{lab}]"
        out += ("-" if v < 0 else "") + term if k == 0 else (" - " if v < 0 else " + ") + term
    return out


def singular_error(names: list[str], A, where: str, reason: str, rcond: float, labels: list[str],
                   r: np.ndarray | None = None, c: np.ndarray | None = None,
                   reduced: bool = False) -> SingularSystemError:
    """The :class:`SingularSystemError` for the block of unknowns ``names`` whose (equilibrated)
    Jacobian ``A`` is ``reason`` (singular, numerically singular) ``where`` (at the solution, at
    Newton iteration k), with the :func:`diagnose` of ``A`` on the entry ``labels``."""
    why = diagnose(A, labels, r, c, reduced)
    return SingularSystemError(
        f"the Jacobian A_SS of block [{describe_names(names)}] is {reason}"
        + (" (judged on its Schur complement on the states)" if reduced else "") + f" {where}"
        + (f": {why}" if why else "") + ". The implicit function theorem needs it nonsingular: "
        "check that every block variable enters its equations and that no equation is a "
        "combination of the others (or start from a different guess=)",
        nodes=names, rcond=rcond)
