"""Which Program a call of a transformed function runs: the guarded trace cache.

Each wrapper traces ``f`` once per argument-shape signature and keeps the Program in
an LRU cache; a cached Program is reused only while everything ``f`` read from outside
its arguments is unchanged (:mod:`lagrangeprop.guards`, SPEC §2 "Never stale"),
otherwise the call traces again.

Examples
--------
>>> import lagrangeprop as lp
>>> program_for = traced(lambda x: lp.sin(x) * x)
>>> prog, call = program_for(0.5)
>>> call.names, program_for(0.7)[0] is prog     # same shapes: the same Program
(['x'], True)
>>> by_tree = traced(lambda p: sum(p.values()) * 2.0)
>>> by_tree({"a": 0.5})[0] is by_tree({"b": 0.5})[0]   # another structure: another Program
False
>>> program_for.cache_info()
CacheInfo(hits=1, traces=1, size=1, maxsize=32)

``lp.jvp``, ``lp.vjp`` and ``lp.hvp`` take ``f`` on every call: :func:`shared` keeps one such
cache per function (by identity) for the :data:`SHARED_SIZE` most recently used functions.

>>> f = lambda x: x ** 3
>>> shared(f) is shared(f), cache_info(f).traces
(True, 0)
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..compile.cache import compiled
from ..graph.builder import ProgramBuilder
from ..graph.trace import argument_names, record
from ..guards import Guard, RetraceWarning
from .trees import bind

__all__ = ["traced", "program_for", "shared", "cache_info", "clear", "CacheInfo", "CACHE_SIZE",
           "SHARED_SIZE", "RETRACE_WARN"]

_ND, _F64, _F64DT = np.ndarray, np.float64, np.dtype(np.float64)

#: traced programs kept per wrapped function (least recently used dropped first)
CACHE_SIZE = 32
#: consecutive invalidated calls after which a RetraceWarning says what keeps changing
RETRACE_WARN = 3
#: functions whose trace caches ``lp.jvp``, ``lp.vjp`` and ``lp.hvp`` keep (LRU, :func:`shared`)
SHARED_SIZE = 32


class CacheInfo(NamedTuple):
    """A trace cache's counters: calls that reused a cached Program (``hits``), traces of
    ``f`` (``traces``: first calls, new signatures and invalidated guards), Programs held."""

    hits: int
    traces: int
    size: int
    maxsize: int


def traced(f: Callable, *, cache_size: int = CACHE_SIZE) -> Callable:
    """``program_for(*args, **kwargs) -> (Program, Call)``, cached by structure and shapes.

    The cache is an LRU of at most ``cache_size`` argument signatures: each argument's
    name, tree structure and leaf shapes (:meth:`~lagrangeprop.transforms.trees.Call.key`). An entry is
    reused only while its :class:`~lagrangeprop.guards.Guard` finds everything ``f`` read
    from outside its arguments unchanged; otherwise ``f`` is traced again. After
    ``RETRACE_WARN`` consecutive invalidated calls a :class:`RetraceWarning` names the
    value that keeps changing (once per wrapped function).
    """
    cache: OrderedDict = OrderedDict()
    streak = [0, False]   # consecutive invalidated calls, warned yet
    count = [0, 0]        # hits, traces
    positional: dict[int, list[str]] = {}   # f's names for n positional arguments

    def lookup(*args, **kwargs):
        names = positional.get(len(args))
        if names is None:
            names = positional[len(args)] = argument_names(f, len(args))
        call = bind(f, args, kwargs, names=names)
        key = call.key()
        entry = cache.get(key)
        if entry is not None:
            what = entry[1].changed()
            if what is None:
                cache.move_to_end(key)
                streak[0] = 0
                count[0] += 1
                return entry[0], call
            streak[0] += 1
            if streak[0] >= RETRACE_WARN and not streak[1]:
                streak[1] = True
                warnings.warn(
                    f"{getattr(f, '__qualname__', f)!r} was traced again on each of the last "
                    f"{streak[0]} calls because {what} changed since the previous trace; pass "
                    "values that change between calls (a minibatch, a parameter) as arguments "
                    "of the function instead of reading them from outside it", RetraceWarning,
                    stacklevel=_user_stacklevel())
        before = Guard(f, snapshot=False)
        count[1] += 1
        prog = record(f, args, kwargs)
        drew = before.random_draws()
        if drew:
            # the program holds one draw: every call must trace (and draw) again
            if not streak[1]:
                streak[1] = True
                warnings.warn(
                    f"{getattr(f, '__qualname__', f)!r} draws random numbers from {drew[0]} "
                    "while it is traced, so the traced program holds one draw: every call "
                    "traces again; pass the random values as an argument of the function to "
                    "reuse the trace", RetraceWarning, stacklevel=_user_stacklevel())
            cache.pop(key, None)
            return prog, call
        # after the trace: f's own side effects while tracing (appending to a log list,
        # filling a memo dict) are part of the state the program was traced in
        guard = Guard(f, prog._sources)
        compiled(prog)
        cache[key] = (prog, guard)
        cache.move_to_end(key)
        while len(cache) > cache_size:
            cache.popitem(last=False)
        return prog, call
    def fast(args: tuple):
        """``(Program, argument names)`` for the common call shape, else None (then call
        :func:`lookup`): positional arguments only, each a Python float, a float64 scalar
        or a float64 ndarray, a signature already cached, and its guard unchanged. The
        key is :meth:`~lagrangeprop.transforms.trees.Call.key`'s for such a call, built
        without a Call; the guard runs on every call, as in :func:`lookup`."""
        names = positional.get(len(args))
        if names is None:
            return None
        key = []
        for n, a in zip(names, args):
            cls = a.__class__
            if cls is float or cls is _F64:
                key.append((n, ()))
            elif cls is _ND and a.dtype is _F64DT:
                key.append((n, a.shape))
            else:
                return None
        key = (tuple(key), ())
        entry = cache.get(key)
        if entry is None or entry[1].changed() is not None:
            return None   # the general path traces (and counts the invalidation)
        cache.move_to_end(key)
        streak[0] = 0
        count[0] += 1
        return entry[0], names
    lookup.cache = cache
    lookup.fast = fast
    lookup.cache_info = lambda: CacheInfo(count[0], count[1], len(cache), cache_size)
    return lookup


def program_for(f, what: str = "grad", *, per_function: bool = False) -> Callable:
    """``program_for(*args, **kw) -> (Program, Call)``: a Program as it is, else traced
    through the guarded cache (:func:`traced`): the wrapper's own, or with ``per_function``
    (``lp.jvp``, ``lp.vjp``, ``lp.hvp``, which take ``f`` on every call) ``f``'s :func:`shared` one."""
    if isinstance(f, ProgramBuilder):
        return lambda *args, **kw: (f, bind(f, args, kw, what))
    return shared(f) if per_function else traced(f)


_SHARED: OrderedDict = OrderedDict()   # identity of f -> its traced(f)


def _identity(f: Callable) -> tuple:
    """``f`` by identity (a bound method, made anew on each attribute read, by its function
    and object); the cache entry holds ``f``, so no id is reused while it is kept."""
    if isinstance(f, types.MethodType):
        return "method", id(f.__func__), id(f.__self__)
    return "function", id(f)


def shared(f: Callable) -> Callable:
    """``f``'s trace cache (:func:`traced`) for the transforms that take ``f`` on every call,
    kept for the :data:`SHARED_SIZE` most recently used functions (an evicted function is
    simply traced again). Guarded as every cache is: never stale (SPEC §2)."""
    key = _identity(f)
    lookup = _SHARED.get(key)
    if lookup is not None:
        _SHARED.move_to_end(key)
        return lookup
    lookup = _SHARED[key] = traced(f)
    while len(_SHARED) > SHARED_SIZE:
        _SHARED.popitem(last=False)
    return lookup


def cache_info(f: Callable) -> CacheInfo:
    """The :class:`CacheInfo` of ``f``'s :func:`shared` cache (that of ``lp.jvp(f, ...)``,
    ``lp.vjp(f, ...)`` and ``lp.hvp(f, ...)``); a wrapper of ``lp.grad``, ``lp.jacobian``, ...
    has its own, ``wrapper.cache_info()``."""
    return shared(f).cache_info()


def clear() -> None:
    """Drop every :func:`shared` cache (the functions and Programs they hold)."""
    _SHARED.clear()


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside lagrangeprop (the user's call)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame, level = frame.f_back, level + 1
    return level
