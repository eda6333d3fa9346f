"""The buffer pool: large per-step results reuse the memory of an earlier solve.

Large arrays cost most in fresh memory pages (the allocator returns freed memory to the OS
between solves, and every page is faulted in again). A plan keeps the buffers of its large
per-step results (values and matmul cotangents), two per pool entry ``k`` in a flat list
(``bufs[2k]`` the newest, ``bufs[2k + 1]`` the one before), and a later solve writes into one
(``out=``, the same numpy call, so the same numbers) only when nothing outside the pool refers
to it: CPython's reference count proves that no Solution, view, grad dict or user variable can
see the buffer change. Elsewhere (other interpreters, free threading, Python >= 3.14 with
borrowed stack references) :data:`REUSE` is false and buffers are never reused.

Examples
--------
>>> import numpy as np
>>> bufs = [None, None]                   # one pool entry
>>> take(bufs, 0) is None                 # nothing kept yet: allocate
True
>>> out = np.exp(np.zeros(4)); keep(bufs, 0, out)
>>> take(bufs, 0) is None or not REUSE    # ``out`` still refers to it: not free
True
>>> del out
>>> (take(bufs, 0) is bufs[0]) == REUSE   # only the pool refers to it now
True
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["POOL_MIN", "REUSE", "take", "keep"]

POOL_MIN = 1 << 14  # arrays of at least this many entries may reuse an earlier solve's buffer
REUSE = (sys.implementation.name == "cpython" and sys.version_info < (3, 14)
         and getattr(sys, "_is_gil_enabled", lambda: True)())
_refs = sys.getrefcount


def take(bufs: list, k: int) -> np.ndarray | None:
    """A buffer of pool entry ``k`` that only the pool refers to, or ``None``."""
    b = bufs[2 * k]
    if b is not None and _refs(b) == 3:   # the pool's list, the local ``b``, the argument
        return b
    b = bufs[2 * k + 1]
    if b is not None and _refs(b) == 3:
        return b
    return None


def keep(bufs: list, k: int, out: np.ndarray) -> None:
    """Remember a freshly allocated result as entry ``k``'s newest buffer (the older goes)."""
    if REUSE and out.__class__ is np.ndarray:
        bufs[2 * k + 1] = bufs[2 * k]
        bufs[2 * k] = out
