"""The numeric kernels the block code calls directly: float64 coercion and CSR products.

scipy's ``csr_matvec`` (``y += A x``) is called without the operator dispatch of ``A @ x``, which
costs as much as a small product; the public ``@`` is the fallback for anything unusual.

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> J = sp.csr_matrix(np.array([[1.0, 2.0], [0.0, 3.0]])); out = np.ones(2)
>>> spmv_into(J, np.array([1.0, 1.0]), out); out.tolist()
[4.0, 4.0]
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

try:     # scipy's CSR product kernel (y += A x); the public ``@`` is the fallback
    from scipy.sparse._sparsetools import csr_matvec as _csr_matvec
except ImportError:  # pragma: no cover - a scipy without the private module
    _csr_matvec = None
_CSR = (sp.csr_matrix, sp.csr_array)
F64_DTYPE = np.dtype(np.float64)

__all__ = ["F64_DTYPE", "as_float64", "spmatmul", "spmv_into"]


def as_float64(a) -> np.ndarray:
    """``a`` as a float64 ndarray (itself when it is one already)."""
    return a if type(a) is np.ndarray and a.dtype is F64_DTYPE else np.asarray(a, dtype=np.float64)


def spmatmul(a, b, prim) -> np.ndarray:
    """``a @ b``: scipy's CSR kernel directly for a float64 CSR matrix times a float64 vector (the same
    kernel and result as ``a @ b``, without the operator dispatch), else the op's ``value``."""
    if (_csr_matvec is not None and type(a) in _CSR and type(b) is np.ndarray and a.dtype == np.float64
            and b.dtype == np.float64 and b.ndim == 1 and a.shape[1] == b.shape[0] and b.flags.c_contiguous):
        y = np.zeros(a.shape[0])
        try:
            _csr_matvec(a.shape[0], a.shape[1], a.indptr, a.indices, a.data, b, y)
            return y
        except (TypeError, ValueError):  # pragma: no cover - unusual index dtypes
            pass
    return prim.value((a, b), {})


def spmv_into(J, x: np.ndarray, out: np.ndarray) -> None:
    """``out += J @ x`` (``x``, ``out`` flat-contiguous views); scipy's CSR kernel directly when it applies
    (no temporary, none of the operator dispatch, which costs as much as a small product)."""
    if (_csr_matvec is not None and type(J) in _CSR and J.dtype == np.float64 and x.dtype == np.float64
            and x.flags.c_contiguous and out.flags.c_contiguous and J.shape == (out.size, x.size)):
        try:
            _csr_matvec(J.shape[0], J.shape[1], J.indptr, J.indices, J.data, x.reshape(-1), out.reshape(-1))
            return
        except (TypeError, ValueError):  # pragma: no cover - unusual index dtypes
            pass
    out += np.reshape(J @ np.ravel(x), out.shape)
