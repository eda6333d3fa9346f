"""Recording a Python function into a program graph (what ``lp.trace`` does).

:func:`record` calls ``f`` on one traced :class:`~lagrangeprop.graph.var.Var` per argument,
each op recording a node into a given builder class (:class:`lagrangeprop.Program` for
``lp.trace``, the bare :class:`~lagrangeprop.graph.builder.ProgramBuilder` for the layers
below it), then names the intermediates after ``f``'s local variables and declares the
output.

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.graph.trace import record
>>> def f(x):
...     a = np.exp(x)
...     return a * 2.0
>>> prog = record(f, (0.5,))
>>> sorted(prog.graph), prog.graph.graph["output"]
(['a', 'const_1', 'out', 'x'], 'out')
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import GraphError, InputError, ShapeError
from ..rules import registry
from .builder import ProgramBuilder
from .coerce import real_array
from .ops import concatenate, reshape
from .pack import as_traced
from .pytree import OutputTree, flatten, flatten_arguments
from .naming import HelperFrames, is_internal
from .tracked import mark
from .var import Var

__all__ = ["record", "paused_gc", "argument_names"]


PROMOTE = 20_000   # objects a pause must leave for paused_gc to hand them to the oldest generation


@contextlib.contextmanager
def paused_gc():
    """Pause the cyclic garbage collector while a program is built or compiled.

    Building allocates several container objects per node and frees almost none, so the
    collector's full passes would rescan the whole growing graph again and again (the
    cost per node then grows with the program); reference counting still frees
    everything as usual, and the previous state is restored on exit. When the pause built a
    large program (:data:`PROMOTE` tracked objects or more), what it built is long-lived, so it
    goes straight to the oldest generation on exit (``gc.freeze`` + ``gc.unfreeze`` move every
    tracked object there without a scan), where the young collections that follow would
    otherwise rescan all of it (~0.8 s at 10⁵ nodes); not when the caller froze objects of its
    own (``gc.get_freeze_count()``). A smaller pause leaves the collector as it was.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if gc.get_count()[0] >= PROMOTE and not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def _code_of(f: Callable):
    """The code object whose locals name ``f``'s intermediates: plain functions and
    lambdas, ``functools.partial``, bound methods and callable objects."""
    for _ in range(4):
        code = getattr(f, "__code__", None)
        if code is not None:
            return code
        f = getattr(f, "func", None) or getattr(f, "__func__", None) or vars(type(f)).get("__call__")
        if f is None:
            return None
    return None


class _LocalNames:
    """Capture the local variables of ``f`` as they are when it returns, so traced
    intermediates get the names the user gave them, and those of the helper functions
    ``f`` calls (``layer.z``, :mod:`.naming`).

    The first op recorded while ``f`` runs calls :meth:`probe`, which finds ``f``'s frame
    on the stack and keeps a reference to it; every op then notes the user frames between
    it and ``f``'s (the helpers; :class:`~.naming.HelperFrames`). A finished frame still
    holds its final locals. Nothing runs per Python call (no ``sys.setprofile`` hook), and
    profilers and debuggers active during tracing keep working.
    """

    def __init__(self, prog, f: Callable):
        self.prog = prog
        self.code = _code_of(f)
        self.frame = None
        self.helpers = HelperFrames()
        self.locals: dict[str, Any] = {}

    def __enter__(self):
        if self.code is not None:
            self.prog._probe = self.probe
        return self

    def probe(self) -> None:
        """Called by every recorded op: the first finds the innermost frame running ``f``."""
        if self.frame is not None:
            # the common case first: f itself called the entry point (Var.__mul__, lp.sin, a
            # primitive) that called graph.var.apply, the one caller of ProgramBuilder._apply; no
            # helper frame between, so there is nothing to visit (one frame object made, not three)
            entry = sys._getframe(3)
            if entry.f_back is self.frame and is_internal(entry):
                return
        caller = sys._getframe(2)      # the caller of ProgramBuilder._apply
        if self.frame is None:
            frame = caller
            while frame is not None and frame.f_code is not self.code:
                frame = frame.f_back
            if frame is None:           # f is not on the stack: no local names
                self.prog._probe = None
                return
            self.frame = self.helpers.top = frame
        self.helpers.visit(caller)

    def __exit__(self, *exc):
        self.prog._probe = None
        if self.frame is not None:
            self.locals = dict(self.frame.f_locals)
            self.frame = None
        return False

    def rename(self) -> None:
        """``f``'s own locals first, then its helpers' (qualified by the helper's name)."""
        prog = self.prog
        wanted: dict[str, str] = {}
        for local, value in self.locals.items():
            if isinstance(value, Var) and value.program is prog and local.isidentifier():
                wanted.setdefault(value.name, local)
        prog._rename_auto_many(wanted, keep_order=False)   # as networkx: to the end
        self.locals = {}
        self.helpers.rename(prog)


def record(f: Callable, example_args: tuple = (), example_inputs: dict | None = None,
           into: type[ProgramBuilder] = ProgramBuilder) -> ProgramBuilder:
    """Record numpy-style ``f`` into a new program of class ``into``: the work of
    :func:`lagrangeprop.trace` (which passes ``into=lp.Program``), usable by the layers
    below the public Program. Arguments, names and output as documented there.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> prog = record(lambda x: lp.sin(x) * x, (), {"x": 0.5})
    >>> sorted(prog.graph)
    ['out', 'sin_0', 'x']
    """
    example_inputs = {} if example_inputs is None else example_inputs
    if not callable(f):
        raise InputError(f"trace needs a function, got {type(f).__name__}")
    fname = getattr(f, "__name__", "program")
    prog = into(name=fname if fname.isidentifier() else "program")
    prog._eager_shapes = True
    names = argument_names(f, len(example_args))
    try:   # the call below must not fail for want of an argument: say which, as an InputError
        inspect.signature(f).bind(*example_args, **example_inputs)
    except TypeError as exc:
        raise InputError(f"{fname}() cannot take these inputs ({exc}); pass one example value per "
                         "argument of the function") from None
    except ValueError:   # no signature (a builtin): let the call decide
        pass
    # one input per leaf of each argument (a tree's leaves named by their paths, pytree.py);
    # an example value fixes the input's shape and must be real, like every input (coerce.real_array)
    arguments = flatten_arguments([*zip(names, example_args), *example_inputs.items()])
    traced = [a.tree.unflatten([prog.input(p, shape=real_array(v, f"input {p!r}", finite=False).shape)
                                for p, v in zip(a.paths, a.leaves)]) for a in arguments]
    pos, kw = traced[:len(names)], dict(zip(example_inputs, traced[len(names):]))
    with paused_gc(), _LocalNames(prog, f) as local_names:
        result = f(*pos, **kw)
    local_names.rename()
    result = _one_output(prog, result)
    named = isinstance(result, Var) and result.name not in prog._auto
    out_name = "out" if "out" not in prog.graph or "out" in prog._auto else prog._fresh("out")
    prog.output(result, name=None if named and prog.graph.nodes[result.name]["role"] == "defined"
                else out_name)
    prog._eager_shapes = False
    # every node's shape was computed (and checked) as it was recorded: compile may take them
    # as they are while the graph stays unedited (compile.cache.compiled; registry: ops too)
    prog._traced = (mark(prog.graph), registry.VERSION[0])
    return prog


def _one_output(prog: ProgramBuilder, result: Any) -> Any:
    """The program's one output for ``f``'s result. A tree result (a tuple or dict, pytree.py)
    is its leaves raveled and concatenated (one leaf: as it is), its structure kept in
    ``prog.output_tree`` for the transforms to split the output again."""
    leaves, tree = flatten(result, outputs=True, what="the result")
    if tree.kind == "leaf":
        try:
            result = as_traced(result)   # np.array([...]) / a list of traced values: one value
        except GraphError as exc:
            if not isinstance(result, list):
                raise
            raise GraphError(f"{prog.name} returned a list that is not one array ({exc}); a list of "
                             "traced values is one array, as numpy reads it: return a tuple or a "
                             "dict for several results") from None
        if isinstance(result, (tuple, list)):
            raise ShapeError(
                f"{prog.name} returned a {type(result).__name__} holding no traced value; return "
                "an array that depends on the inputs (or a tuple or dict of them)")
        return result
    if not leaves:
        raise ShapeError(f"{prog.name} returned an empty {type(result).__name__}: there is no "
                         "output to differentiate")
    leaves = [as_traced(v) for v in leaves]
    shapes = tuple(v.shape if isinstance(v, Var) else np.shape(v) for v in leaves)
    out = leaves[0] if len(leaves) == 1 else concatenate([reshape(v, (-1,)) for v in leaves])
    prog.output_tree = OutputTree(tree, shapes, shapes[0] if len(leaves) == 1 else (sum(
        int(np.prod(s, dtype=int)) for s in shapes),))
    return out


def argument_names(f: Callable, n: int) -> list[str]:
    """Names for ``n`` positional inputs: ``f``'s parameter names, else arg0, arg1, ..."""
    try:
        params = [p for p in inspect.signature(f).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return [params[i].name if i < len(params) else f"arg{i}" for i in range(n)]
