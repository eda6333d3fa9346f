"""Guards: a cached trace is reused only while what the function read from outside its
arguments is unchanged (SPEC §2 "Never stale", as torch.compile's guards).

A traced program freezes everything ``f`` read that is not an argument: globals, closure
cells, default arguments, attributes of ``self`` and of captured objects, module-level
containers, and the contents of captured arrays. :class:`Guard` records them right after
the trace and :meth:`Guard.changed` tells, per call, whether any of them differs now:

- the read set is found statically in the bytecode (``LOAD_GLOBAL`` names, closure cells,
  attribute names), following every user function reached (helpers ``f`` calls, methods
  of captured objects, properties) to a fixed point; library code (numpy, scipy,
  networkx, lagrangeprop) is guarded by identity only;
- every value read gets a fingerprint: numbers and strings by value, containers by their
  contents, functions, classes and modules by identity (plus the attributes the code
  reads from them), arrays and sparse matrices by identity, shape, dtype *and content*:
  a private copy taken at trace time is compared bytewise on each call (one pass over
  the captured data; for large arrays this dominates the guard's cost).

A function that draws random numbers while traced (``np.random.rand``, a captured
``np.random.Generator``) moves the generator's state: :meth:`Guard.random_draws` of a guard
made before the trace says so, and the caller re-traces on every call (the traced program
holds one draw).

Not seen: state read through C code or I/O (files, clocks, ``os.environ``); values a
function reaches only through ``getattr(obj, name_in_a_variable)`` or ``globals()[...]``.

Examples
--------
>>> import numpy as np
>>> W = np.array([1.0, 2.0])
>>> def f(x):
...     return x * W
>>> g = Guard(f)
>>> g.changed() is None
True
>>> W[0] = 5.0
>>> g.changed()
"the contents of array W (global 'W' of module '...')"
"""

from __future__ import annotations

import builtins
import dis
import functools
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["Guard", "RetraceWarning"]

_MISSING = object()
_NAN = ("nan",)
_SCALARS = (int, float, complex, bool, str, bytes, type(None), type(Ellipsis), slice, range)
# modules whose functions read library state, not the user's: identity is their guard
_LIBRARIES = ("lagrangeprop", "numpy", "scipy", "networkx", "autograd", "torch", "builtins",
              "math", "functools", "itertools", "operator", "collections", "typing")
_MAX_DEPTH = 8
_OBJECT_ITEMS = 100_000   # object-array elements watched one by one
_SMALL = 1 << 16   # arrays up to this many bytes are snapshotted as bytes


class RetraceWarning(UserWarning):
    """A cached trace was invalidated on several consecutive calls (a captured value that
    changes on every call: pass it as an argument instead)."""


@functools.lru_cache(maxsize=4096)
def code_reads(code: types.CodeType) -> tuple[frozenset, frozenset]:
    """``(global names, attribute names)`` read by ``code`` and the code nested in it."""
    names, attrs = set(), set()
    stack = [code]
    while stack:
        c = stack.pop()
        for ins in dis.get_instructions(c):
            op = ins.opname
            if op in ("LOAD_GLOBAL", "LOAD_NAME"):
                names.add(ins.argval)
            elif op in ("LOAD_ATTR", "LOAD_METHOD", "LOAD_SUPER_ATTR"):
                attrs.add(ins.argval)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return frozenset(names), frozenset(attrs)


def _is_library(obj: Any) -> bool:
    """Code of numpy, scipy, networkx, lagrangeprop or the standard library (by file for
    functions, by module name for other objects)."""
    code = getattr(obj, "__code__", None)
    if isinstance(code, types.CodeType):
        file = code.co_filename
        return file.startswith(_LIBRARY_DIRS) or (file.startswith(_STDLIB)
                                                  and "site-packages" not in file)
    mod = getattr(obj, "__module__", None) or getattr(obj, "__name__", None) or ""
    return isinstance(mod, str) and mod.split(".", 1)[0] in _LIBRARIES


def _library_dirs() -> tuple[tuple[str, ...], str]:
    import os
    import sysconfig
    import networkx
    import scipy
    dirs = [os.path.dirname(m.__file__) for m in (np, scipy, networkx)]
    dirs.append(os.path.dirname(os.path.abspath(__file__)))
    return tuple(os.path.join(d, "") for d in dirs), os.path.join(sysconfig.get_paths()["stdlib"], "")


_LIBRARY_DIRS, _STDLIB = _library_dirs()


def _plain(fn: Callable):
    """The function behind bound methods, staticmethod/classmethod and properties."""
    while True:
        inner = getattr(fn, "__func__", None)
        if inner is None:
            return fn
        fn = inner


# check kinds: each check is (kind, container, key, expected, description)
GET, GLOBAL, CELL, ATTR, LEN, INDEX, ARRAY, EQUAL, RANDOM, ALWAYS, ITEMS = range(11)


class _Walk:
    """Flatten what the roots reach into identity checks along each access path, plus a
    content check per array; collects the user functions reached on the way."""

    def __init__(self, attrs: frozenset, copies: dict | None = None, snapshot: bool = True):
        self.attrs = sorted(attrs)
        self.copies = copies or {}
        self.snapshot = snapshot
        self.checks: list[tuple] = []
        self.functions: list[types.FunctionType] = []
        self.seen: set[int] = set()

    def add(self, kind: int, container, key, expected, what: str) -> None:
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
            self.add(ATTR, v, "shape", v.shape, f"{what}.shape")
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
                if snap is None or snap.strides != v.strides or not _same(v, layout, snap):
                    snap = v.copy(order="K")
            self.add(ARRAY, v, layout, snap, what)
            return
        key = id(v)
        if key in self.seen:
            return
        self.seen.add(key)
        if cls is types.FunctionType:
            if _is_library(v):
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
                if not _is_library(klass):
                    self.members(klass.__dict__, None, f"{what}", depth)
        elif sp.issparse(v):
            self.add(ATTR, v, "shape", v.shape, f"{what}.shape")
            for a, arr in sorted(vars(v).items()):
                # index and data arrays (coo's coords is a tuple of them; lil's are object arrays)
                if isinstance(arr, np.ndarray) or (isinstance(arr, tuple) and arr
                                                    and all(isinstance(e, np.ndarray) for e in arr)):
                    self.add(GET, vars(v), a, arr, f"{what}.{a}")
                    self.value(arr, f"{what}.{a}", depth + 1)
        elif isinstance(v, (np.random.Generator, np.random.RandomState)):
            self.add(RANDOM, v, None, _random_state(v), what)
        elif not _is_library(cls):
            # an object of the user's: the attributes the code reads, from it or its class
            # a callable object (a layer called as layer(x)) runs its class's __call__: follow it,
            # so the attributes it reads (self.W) are watched like those the code names
            call = next((k.__dict__["__call__"] for k in cls.__mro__ if "__call__" in k.__dict__), None)
            if isinstance(call, types.FunctionType) and not _is_library(call):
                self.value(call, f"{what}.__call__", depth + 1)
            own = getattr(v, "__dict__", None)
            if own is not None:
                self.members(own, cls, what, depth)
            else:
                for a in self.attrs:
                    if hasattr(type(v), a) and not callable(getattr(type(v), a)):
                        e = getattr(v, a, _MISSING)
                        self.add(ATTR, v, a, e, f"{what}.{a}")
                        self.value(e, f"{what}.{a}", depth + 1)

    def members(self, d, cls: type | None, what: str, depth: int) -> None:
        """The attributes in ``attrs`` of a namespace ``d`` (and, when absent there, of
        ``cls``'s MRO: class attributes, methods, properties)."""
        for a in self.attrs:
            e = d.get(a, _MISSING)
            self.add(GET, d, a, e, f"{what}.{a}")
            if e is not _MISSING:
                self.value(_unwrap(e), f"{what}.{a}", depth + 1)
            elif cls is not None:
                for klass in cls.__mro__:
                    if a in klass.__dict__:
                        if not _is_library(klass):
                            m = klass.__dict__[a]
                            self.add(GET, klass.__dict__, a, m, f"{what}.{a}")
                            self.value(_unwrap(m), f"{what}.{a}", depth + 1)
                        break


def _unwrap(m: Any) -> Any:
    if isinstance(m, property):
        return m.fget
    if isinstance(m, (staticmethod, classmethod)):
        return m.__func__
    return m


def _same(a: np.ndarray, layout: tuple, snap) -> bool:
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


class Guard:
    """What ``f`` reads from outside its arguments, as it is now; :meth:`changed` per call.

    Parameters
    ----------
    f : callable
        A function, lambda, bound method, ``functools.partial`` or callable object.
    copies : dict, optional
        ``id(array) -> copy`` of captured arrays made anyway (a traced program's
        constants): used as the snapshot when the bytes agree, instead of a second copy.
    snapshot : bool
        False: no array snapshots (a guard made only to ask :meth:`random_draws`).
    """

    def __init__(self, f: Callable, copies: dict | None = None, snapshot: bool = True):
        roots: dict[tuple, tuple] = {}     # key -> (kind, container, name, description)
        done: set[int] = set()
        attrs: frozenset = frozenset()
        pending = [f]
        while True:
            while pending:
                fn = _plain(pending.pop())
                if isinstance(fn, functools.partial):
                    pending.append(fn.func)
                    continue
                wrapped = getattr(fn, "__wrapped__", None)   # functools.wraps decorators
                if wrapped is not None and id(wrapped) not in done:
                    pending.append(wrapped)
                if not isinstance(fn, types.FunctionType):
                    call = next((k.__dict__["__call__"] for k in type(fn).__mro__
                                 if "__call__" in k.__dict__), None)
                    if isinstance(call, types.FunctionType) and not _is_library(call):
                        pending.append(call)
                    continue
                if id(fn) in done or _is_library(fn):
                    continue
                done.add(id(fn))
                names, new_attrs = code_reads(fn.__code__)
                attrs |= new_attrs
                g = fn.__globals__
                mod = g.get("__name__", "?")
                for name in names:
                    roots.setdefault(("g", id(g), name),
                                     (GLOBAL, g, name, f"global {name!r} of module {mod!r}"))
                for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
                    roots.setdefault(("c", id(cell)), (CELL, cell, name,
                                                       f"closure variable {name!r} of "
                                                       f"{fn.__qualname__}"))
            walk = self._walk(f, list(roots.values()), attrs, copies, snapshot)
            fresh = [fn for fn in walk.functions if id(fn) not in done]
            if not fresh:
                break
            pending.extend(fresh)
        self._checks = walk.checks

    @staticmethod
    def _walk(f: Callable, roots: list[tuple], attrs: frozenset, copies, snapshot) -> _Walk:
        walk = _Walk(attrs, copies, snapshot)
        if isinstance(f, types.MethodType):
            walk.value(f.__self__, "self")
            walk.value(f.__func__, "the function")
        else:
            walk.value(f, "the function" if isinstance(f, (types.FunctionType, functools.partial))
                       else "self")
        for kind, container, name, what in roots:
            v = _read(kind, container, name)
            walk.add(kind, container, name, v, what)
            walk.value(v, f"{name} ({what})")
        return walk

    def changed(self) -> str | None:
        """``None`` when everything read is as it was, else a description of what changed."""
        for kind, container, key, expected, what in self._checks:
            if kind is ARRAY:
                if not _same(container, key, expected):
                    return f"the contents of array {what}"
            elif kind is ALWAYS:
                return what
            elif kind is ITEMS:
                if tuple(map(id, container.ravel())) != expected:
                    return what
            elif kind is GET:
                if container.get(key, _MISSING) is not expected:
                    return what
            elif kind is INDEX:
                if container[key] is not expected:
                    return what
            elif kind is LEN:
                if len(container) != expected:
                    return what
            elif kind is EQUAL:
                if frozenset(container) != expected:
                    return what
            elif kind is RANDOM:
                if not _equal(_random_state(container), expected):
                    return f"the state of random generator {what}"
            elif _read(kind, container, key) is not expected:
                return what
        return None

    def random_draws(self) -> list[str]:
        """The random generators ``f`` reaches whose state moved since this guard was
        made (``f`` drew random numbers: build the guard before tracing to ask)."""
        return [what for kind, rng, _, state, what in self._checks
                if kind is RANDOM and not _equal(_random_state(rng), state)]

    @property
    def n_arrays(self) -> int:
        """How many captured arrays are compared per call."""
        return sum(c[0] is ARRAY for c in self._checks)

    @property
    def n_checks(self) -> int:
        """How many checks run per call."""
        return len(self._checks)

    @property
    def array_bytes(self) -> int:
        """Bytes of captured array data compared per call."""
        return sum(c[1].nbytes for c in self._checks if c[0] is ARRAY)


def _read(kind: int, container, name):
    if kind is GLOBAL:
        v = container.get(name, _MISSING)
        return builtins.__dict__.get(name, _MISSING) if v is _MISSING else v
    if kind is CELL:
        try:
            return container.cell_contents
        except ValueError:   # an empty cell (a variable assigned after the closure was made)
            return _MISSING
    return getattr(container, name, _MISSING)


def _random_state(rng):
    if isinstance(rng, np.random.Generator):
        return rng.bit_generator.state
    return rng.get_state(legacy=False)


def _equal(a, b) -> bool:
    """Deep equality of generator states (dicts, tuples, arrays)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    return bool(a == b)
