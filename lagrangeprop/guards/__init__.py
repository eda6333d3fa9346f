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

Modules: :mod:`.reads` (the static read set: bytecode names, library code),
:mod:`.fingerprint` (the checks a value's fingerprint is made of, and how each is
re-evaluated), :mod:`.guard` (:class:`Guard`, :class:`RetraceWarning`).

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

from .guard import Guard, RetraceWarning

__all__ = ["Guard", "RetraceWarning"]
