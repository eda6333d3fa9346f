"""The fingerprint of what a function reads: a flat list of checks, and how each is re-read.

:class:`Walk` flattens the values a guard watches into checks along each access path —
identity of globals, cells, attributes, list items and dict entries; lengths; the bytes of
captured arrays (against a private copy); random generator states — and collects the user
functions it meets, so that :class:`~lagrangeprop.guards.guard.Guard` can follow them.

Examples
--------
>>> import numpy as np
>>> W = np.ones(3)
>>> walk = Walk(frozenset())
>>> walk.value({"W": W}, "d")
>>> [c[0] for c in walk.checks] == [LEN, GET, ARRAY]
True
>>> W[0] = 2.0
>>> same_array(W, walk.checks[2][2], walk.checks[2][3])
False
"""

from __future__ import annotations

import builtins
import functools
import types
from typing import Any

import numpy as np
import scipy.sparse as sp

from .reads import is_library

__all__ = ["Walk", "read", "same_array", "random_state", "equal_state", "MISSING",
           "GET", "GLOBAL", "CELL", "ATTR", "LEN", "INDEX", "ARRAY", "EQUAL", "RANDOM", "ALWAYS", "ITEMS",
           "SHAPE"]

MISSING = object()
_SCALARS = (int, float, complex, bool, str, bytes, type(None), type(Ellipsis), slice, range)
_MAX_DEPTH = 8
_OBJECT_ITEMS = 100_000   # object-array elements watched one by one
_SMALL = 1 << 16   # arrays up to this many bytes are snapshotted as bytes

# check kinds: each check is (kind, container, key, expected, description)
# (SHAPE: ``container.shape == expected``, by value: a shape is a new tuple on each read)
GET, GLOBAL, CELL, ATTR, LEN, INDEX, ARRAY, EQUAL, RANDOM, ALWAYS, ITEMS, SHAPE = range(12)


class Walk:
    """Flatten what the roots reach into identity checks along each access path, plus a
    content check per array; collects the user functions reached on the way."""

    def __init__(self, attrs: frozenset, copies: dict | None = None, snapshot: bool = True):
        self.attrs = sorted(attrs)
        self.copies = copies or {}
        self.snapshot = snapshot
        self.checks: list[tuple] = []
        self.functions: list[types.FunctionType] = []
        self.seen: set[int] = set()

    def add(self, kind: int, container: Any, key: Any, expected: Any, what: str) -> None:
        """One check: ``container[key]`` (or the like, by ``kind``) is still ``expected``."""
        self.checks.append((kind, container, key, expected, what))

    def value(self, v: Any, what: str, depth: int = 0) -> None:
        """Checks for the contents of ``v`` (its identity is checked by the caller)."""
        cls = v.__class__
        if cls in _SCALARS or isinstance(v, np.generic):
            return
        if depth > _MAX_DEPTH:
            # not followed any deeper: never reuse the program on trust (re-trace every call)
            self.add(ALWAYS, None, None, None, f"{what} (nested more than {_MAX_DEPTH} levels deep, "
                     "so its contents are not watched)")
            return
        if isinstance(v, np.ndarray) and v.dtype == object:
            # an object array (a lil matrix's rows): its bytes are pointers, so watch each element
            if v.size > _OBJECT_ITEMS:
                self.add(ALWAYS, None, None, None, f"{what} (an object array of {v.size} elements, "
                         "too many to watch)")
                return
            self.add(SHAPE, v, None, v.shape, f"{what}.shape")
            flat = v.reshape(-1) if v.flags.c_contiguous else v.ravel()
            self.add(ITEMS, v, None, tuple(map(id, flat)), f"{what} (its elements)")
            for i, e in enumerate(flat):
                self.value(e, f"{what}[{i}]", depth + 1)
            return
        if isinstance(v, np.ndarray):   # subclasses too (np.matrix, np.memmap)
            layout = (v.shape, v.dtype, v.strides)
            if not self.snapshot:
                snap = None
            elif v.nbytes <= _SMALL:
                snap = v.tobytes()
            else:   # the program's own copy of it as a constant, when it has the same bytes
                snap = self.copies.get(id(v))
                if snap is None or snap.strides != v.strides or not same_array(v, layout, snap):
                    snap = v.copy(order="K")
            self.add(ARRAY, v, layout, snap, what)
            return
        key = id(v)
        if key in self.seen:
            return
        self.seen.add(key)
        if cls is types.FunctionType:
            if is_library(v):
                return
            self.functions.append(v)
            for a in ("__defaults__", "__kwdefaults__"):
                d = getattr(v, a)
                self.add(ATTR, v, a, d, f"{what}.{a}")
                if d is not None:
                    self.value(d, f"{what}.{a}", depth + 1)
        elif isinstance(v, tuple):   # namedtuples too
            for i, e in enumerate(v):
                self.value(e, f"{what}[{i}]", depth + 1)
        elif isinstance(v, list):
            self.add(LEN, v, None, len(v), what)
            for i, e in enumerate(v):
                self.add(INDEX, v, i, e, f"{what}[{i}]")
                self.value(e, f"{what}[{i}]", depth + 1)
        elif isinstance(v, dict):    # OrderedDict, defaultdict too
            self.add(LEN, v, None, len(v), what)
            for k, e in v.items():
                self.add(GET, v, k, e, f"{what}[{k!r}]")
                self.value(e, f"{what}[{k!r}]", depth + 1)
        elif isinstance(v, (set, frozenset)):
            self.add(EQUAL, v, None, frozenset(v), what)
        elif cls is types.MethodType:
            self.value(v.__self__, f"{what}.__self__", depth + 1)
            self.value(v.__func__, what, depth + 1)
        elif cls is functools.partial:
            self.value(v.func, f"{what}.func", depth + 1)
            self.value(v.args, f"{what}.args", depth + 1)
            self.value(v.keywords, f"{what}.keywords", depth + 1)
        elif cls is types.ModuleType:
            if v.__name__ == "numpy.random":   # np.random.rand & co. read the global generator
                self.value(np.random.mtrand._rand, "numpy's global random state", depth + 1)
            self.members(v.__dict__, None, what, depth)
        elif isinstance(v, type):
            for klass in v.__mro__:
                if not is_library(klass):
                    self.members(klass.__dict__, None, f"{what}", depth)
        elif sp.issparse(v):
            self.add(SHAPE, v, None, v.shape, f"{what}.shape")
            for a, arr in sorted(vars(v).items()):
                # index and data arrays (coo's coords is a tuple of them; lil's are object arrays)
                if isinstance(arr, np.ndarray) or (isinstance(arr, tuple) and arr
                                                    and all(isinstance(e, np.ndarray) for e in arr)):
                    self.add(GET, vars(v), a, arr, f"{what}.{a}")
                    self.value(arr, f"{what}.{a}", depth + 1)
        elif isinstance(v, (np.random.Generator, np.random.RandomState)):
            self.add(RANDOM, v, None, random_state(v), what)
        elif not is_library(cls):
            # an object of the user's: the attributes the code reads, from it or its class
            # a callable object (a layer called as layer(x)) runs its class's __call__: follow it,
            # so the attributes it reads (self.W) are watched like those the code names
            call = next((k.__dict__["__call__"] for k in cls.__mro__ if "__call__" in k.__dict__), None)
            if isinstance(call, types.FunctionType) and not is_library(call):
                self.value(call, f"{what}.__call__", depth + 1)
            own = getattr(v, "__dict__", None)
            if own is not None:
                self.members(own, cls, what, depth)
            else:
                for a in self.attrs:
                    if hasattr(type(v), a) and not callable(getattr(type(v), a)):
                        e = getattr(v, a, MISSING)
                        self.add(ATTR, v, a, e, f"{what}.{a}")
                        self.value(e, f"{what}.{a}", depth + 1)

    def members(self, d: Any, cls: type | None, what: str, depth: int) -> None:
        """The attributes in ``attrs`` of a namespace ``d`` (and, when absent there, of
        ``cls``'s MRO: class attributes, methods, properties)."""
        for a in self.attrs:
            e = d.get(a, MISSING)
            self.add(GET, d, a, e, f"{what}.{a}")
            if e is not MISSING:
                self.value(unwrap(e), f"{what}.{a}", depth + 1)
            elif cls is not None:
                for klass in cls.__mro__:
                    if a in klass.__dict__:
                        if not is_library(klass):
                            m = klass.__dict__[a]
                            self.add(GET, klass.__dict__, a, m, f"{what}.{a}")
                            self.value(unwrap(m), f"{what}.{a}", depth + 1)
                        break


def unwrap(m: Any) -> Any:
    """The function behind a property, staticmethod or classmethod."""
    if isinstance(m, property):
        return m.fget
    if isinstance(m, (staticmethod, classmethod)):
        return m.__func__
    return m


def same_array(a: np.ndarray, layout: tuple, snap: Any) -> bool:
    """``a`` has its trace-time layout and bytes (NaN payloads and signed zeros included)."""
    if (a.shape, a.dtype, a.strides) != layout:
        return False
    if isinstance(snap, bytes):
        return a.tobytes() == snap
    if a.flags.c_contiguous and a.dtype.kind in "biuf" and a.dtype.itemsize in (1, 2, 4, 8):
        u = np.dtype(f"u{a.dtype.itemsize}")
        return bool(np.array_equal(a.view(u), snap.view(u)))
    try:
        return bool(np.array_equal(a, snap, equal_nan=a.dtype.kind in "fc"))
    except (TypeError, ValueError):
        return False



def read(kind: int, container: Any, name: Any) -> Any:
    """The value a GLOBAL, CELL or ATTR check reads now (``MISSING`` when there is none)."""
    if kind is GLOBAL:
        v = container.get(name, MISSING)
        return builtins.__dict__.get(name, MISSING) if v is MISSING else v
    if kind is CELL:
        try:
            return container.cell_contents
        except ValueError:   # an empty cell (a variable assigned after the closure was made)
            return MISSING
    return getattr(container, name, MISSING)


def random_state(rng: Any) -> Any:
    """The state of a numpy Generator or RandomState."""
    if isinstance(rng, np.random.Generator):
        return rng.bit_generator.state
    return rng.get_state(legacy=False)


def equal_state(a: Any, b: Any) -> bool:
    """Deep equality of generator states (dicts, tuples, arrays)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal_state(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(equal_state(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    return bool(a == b)
