"""What a function reads from outside its arguments, found statically in its bytecode.

:func:`code_reads` lists the global and attribute names a code object (and the code nested
in it) loads; :func:`is_library` tells library code (numpy, scipy, networkx, lagrangeprop,
the standard library), which guards follow by identity only, from the user's.

Examples
--------
>>> def f(x):
...     return x * W.T + np.sin(x)
>>> names, attrs = code_reads(f.__code__)
>>> sorted(names), sorted(attrs)
(['W', 'np'], ['T', 'sin'])
>>> import numpy
>>> is_library(numpy.sin), is_library(f)
(True, False)
"""

from __future__ import annotations

import dis
import functools
import types
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["code_reads", "is_library", "plain_function"]

# modules whose functions read library state, not the user's: identity is their guard
_LIBRARIES = ("lagrangeprop", "numpy", "scipy", "networkx", "autograd", "torch", "builtins",
              "math", "functools", "itertools", "operator", "collections", "typing")


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


def is_library(obj: Any) -> bool:
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
    """The install directories of numpy, scipy, networkx and lagrangeprop; the stdlib's."""
    import os
    import sysconfig
    import networkx
    import scipy
    dirs = [os.path.dirname(m.__file__) for m in (np, scipy, networkx)]
    dirs.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # lagrangeprop/
    return tuple(os.path.join(d, "") for d in dirs), os.path.join(sysconfig.get_paths()["stdlib"], "")


_LIBRARY_DIRS, _STDLIB = _library_dirs()


def plain_function(fn: Callable) -> Callable:
    """The function behind bound methods, staticmethod/classmethod and properties."""
    while True:
        inner = getattr(fn, "__func__", None)
        if inner is None:
            return fn
        fn = inner
