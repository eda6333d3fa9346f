"""The guard of a cached trace: :class:`Guard` records what ``f`` reads, :meth:`Guard.changed` per call.

The read set is found statically (:mod:`.reads`) and followed through every user function
reached, to a fixed point; each value read is fingerprinted (:mod:`.fingerprint`) right
after the trace. A changed fingerprint means re-trace (SPEC §2 "Never stale").

Examples
--------
>>> import numpy as np
>>> W = np.array([1.0, 2.0])
>>> def f(x):
...     return x * W
>>> g = Guard(f)
>>> g.changed() is None, g.n_arrays
(True, 1)
>>> W[0] = 5.0
>>> g.changed()
"the contents of array W (global 'W' of module '...')"
"""

from __future__ import annotations

import builtins
import functools
import types
from collections.abc import Callable

from .fingerprint import (ALWAYS, ARRAY, CELL, EQUAL, GET, GLOBAL, INDEX, ITEMS, LEN, MISSING, RANDOM, SHAPE,
                          Walk, equal_state, random_state, read, same_array)
from .reads import code_reads, is_library, plain_function

__all__ = ["Guard", "RetraceWarning"]

#: checks up to which :meth:`Guard.changed` runs as one generated function (more: the loop)
COMPILE_MAX = 256


class RetraceWarning(UserWarning):
    """A cached trace was invalidated on several consecutive calls (a captured value that
    changes on every call: pass it as an argument instead)."""



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
                fn = plain_function(pending.pop())
                if isinstance(fn, functools.partial):
                    pending.append(fn.func)
                    continue
                wrapped = getattr(fn, "__wrapped__", None)   # functools.wraps decorators
                if wrapped is not None and id(wrapped) not in done:
                    pending.append(wrapped)
                if not isinstance(fn, types.FunctionType):
                    call = next((k.__dict__["__call__"] for k in type(fn).__mro__
                                 if "__call__" in k.__dict__), None)
                    if isinstance(call, types.FunctionType) and not is_library(call):
                        pending.append(call)
                    continue
                if id(fn) in done or is_library(fn):
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
        self._first = None   # the generated check (built on the first call of changed)

    @staticmethod
    def _walk(f: Callable, roots: list[tuple], attrs: frozenset, copies: dict | None,
              snapshot: bool) -> Walk:
        walk = Walk(attrs, copies, snapshot)
        if isinstance(f, types.MethodType):
            walk.value(f.__self__, "self")
            walk.value(f.__func__, "the function")
        else:
            walk.value(f, "the function" if isinstance(f, (types.FunctionType, functools.partial))
                       else "self")
        for kind, container, name, what in roots:
            v = read(kind, container, name)
            walk.add(kind, container, name, v, what)
            walk.value(v, f"{name} ({what})")
        return walk

    def changed(self) -> str | None:
        """``None`` when everything read is as it was, else a description of what changed.

        Up to :data:`COMPILE_MAX` checks run as one generated function of straight-line
        tests (:func:`_generate`, the checks of :meth:`changed_loop` inlined, as
        torch.compile's guards); the loop names what changed."""
        first = self._first
        if first is None:
            first = self._first = (_generate(self._checks) if len(self._checks) <= COMPILE_MAX
                                   else self._changed_at)
        return None if first() < 0 else self.changed_loop()

    def _changed_at(self) -> int:
        return -1 if self.changed_loop() is None else 0

    def changed_loop(self) -> str | None:
        """:meth:`changed` as a loop over the checks (the reference of the generated test)."""
        for kind, container, key, expected, what in self._checks:
            if kind is ARRAY:
                if not same_array(container, key, expected):
                    return f"the contents of array {what}"
            elif kind is ALWAYS:
                return what
            elif kind is ITEMS:
                if tuple(map(id, container.ravel())) != expected:
                    return what
            elif kind is GET:
                if container.get(key, MISSING) is not expected:
                    return what
            elif kind is INDEX:
                if container[key] is not expected:
                    return what
            elif kind is LEN:
                if len(container) != expected:
                    return what
            elif kind is SHAPE:
                if container.shape != expected:
                    return what
            elif kind is EQUAL:
                if frozenset(container) != expected:
                    return what
            elif kind is RANDOM:
                if not equal_state(random_state(container), expected):
                    return f"the state of random generator {what}"
            elif read(kind, container, key) is not expected:
                return what
        return None

    def random_draws(self) -> list[str]:
        """The random generators ``f`` reaches whose state moved since this guard was
        made (``f`` drew random numbers: build the guard before tracing to ask)."""
        return [what for kind, rng, _, state, what in self._checks
                if kind is RANDOM and not equal_state(random_state(rng), state)]

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


def _generate(checks: list[tuple]):
    """``first() -> int``: the index of the first check that fails now, or -1; each check of
    :meth:`Guard.changed_loop` as one ``if`` line over names bound to its container, key and
    expected value (compiled with Python's own ``compile``; nothing but the checks runs)."""
    ns = {"M": MISSING, "same_array": same_array, "random_state": random_state,
          "equal_state": equal_state, "read": read, "GLOBAL": GLOBAL, "CELL": CELL,
          "_builtins": builtins.__dict__}
    lines = ["def first():"]
    for i, (kind, container, key, expected, _) in enumerate(checks):
        c, k, e = f"c{i}", f"k{i}", f"e{i}"
        ns[c], ns[k], ns[e] = container, key, expected
        if kind is ARRAY:
            test = f"not same_array({c}, {k}, {e})"
        elif kind is ALWAYS:
            test = "True"
        elif kind is ITEMS:
            test = f"tuple(map(id, {c}.ravel())) != {e}"
        elif kind is GET:
            test = f"{c}.get({k}, M) is not {e}"
        elif kind is INDEX:
            test = f"{c}[{k}] is not {e}"
        elif kind is LEN:
            test = f"len({c}) != {e}"
        elif kind is SHAPE:
            test = f"{c}.shape != {e}"
        elif kind is EQUAL:
            test = f"frozenset({c}) != {e}"
        elif kind is RANDOM:
            test = f"not equal_state(random_state({c}), {e})"
        elif kind is GLOBAL and expected is not MISSING:
            # the module's own binding first; a builtin (absent from the module) by read()
            test = f"{c}.get({k}, M) is not {e} and read(GLOBAL, {c}, {k}) is not {e}"
        elif kind is CELL and expected is not MISSING:
            lines += ["    try:", f"        if {c}.cell_contents is not {e}:", f"            return {i}",
                      "    except ValueError:", f"        return {i}"]
            continue
        elif kind is GLOBAL or kind is CELL:
            test = f"read({kind}, {c}, {k}) is not {e}"
        else:   # ATTR
            test = f"getattr({c}, {k}, M) is not {e}"
        lines += [f"    if {test}:", f"        return {i}"]
    lines.append("    return -1")
    exec(compile("\n".join(lines), "<lagrangeprop guard>", "exec"), ns)
    return ns["first"]
