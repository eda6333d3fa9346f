"""A transformed call's arguments as the program's inputs, and results back as trees.

Arguments may be parameter trees (:mod:`lagrangeprop.graph.pytree`): each leaf is an input
named by its path (``params.W1``, ``layers.0.1``), and a derivative with respect to an
argument has that argument's structure. :func:`bind` reads a call; :class:`Call` gives the
inputs, the cache key and the structure of what ``argnum`` selects.

Examples
--------
>>> import numpy as np
>>> call = bind(lambda p, x: x, ({"W": np.ones(2), "b": 0.5}, 1.0), {})
>>> call.names, call.inputs()
(['p', 'x'], {'p.W': array([1., 1.]), 'p.b': 0.5, 'x': 1.0})
>>> tree, paths = call.selected(["p", "x"])
>>> tree, paths
(({'W': *, 'b': *}, *), ['p.W', 'p.b', 'x'])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..compile.cache import compiled
from ..graph.builder import ProgramBuilder
from ..graph.coerce import real_array
from ..graph.pytree import LEAF, Argument, OutputTree, TreeDef, flatten_arguments
from ..graph.trace import argument_names
from .argnum import check_count

__all__ = ["Call", "bind", "output_tree", "leaf_key", "like"]


@dataclass(frozen=True)
class Call:
    """The arguments of one call, positional ones first (in ``f``'s signature order)."""

    arguments: list
    npos: int = 0

    @property
    def names(self) -> list[str]:
        """The arguments' names: what ``argnum`` positions index."""
        return [a.name for a in self.arguments]

    def inputs(self) -> dict:
        """``{input name: leaf value}`` for the solve."""
        return {p: v for a in self.arguments for p, v in zip(a.paths, a.leaves)}

    def key(self) -> tuple:
        """The trace-cache key: every argument's name, structure and leaf shapes (a dict with
        other keys, a longer list or another leaf shape is another program)."""
        keys = [(a.name, leaf_key(a.leaves[0], a.name) if a.tree is LEAF else
                 (a.tree, tuple(leaf_key(v, p) for p, v in zip(a.paths, a.leaves))))
                for a in self.arguments]
        return tuple(keys[:self.npos]), tuple(sorted(keys[self.npos:], key=lambda k: k[0]))

    def argument(self, name: str) -> Argument:
        return next(a for a in self.arguments if a.name == name)

    def selected(self, sel: str | list[str]) -> tuple[TreeDef, list[str]]:
        """The structure of what ``argnum`` selected and its leaves' input names: one
        argument's tree, or a tuple of them for an ``argnum`` tuple."""
        if isinstance(sel, str):
            a = self.argument(sel)
            return a.tree, list(a.paths)
        args = [self.argument(n) for n in sel]
        return TreeDef("tuple", (), tuple(a.tree for a in args)), [p for a in args for p in a.paths]


    def like_arguments(self, sel: str | list[str], value_of: Callable[[str], object]):
        """The tree of ``value_of(input name)`` for what ``sel`` selects (a gradient, a
        cotangent): the argument's structure, and a 0-d array where the argument had a
        0-d array (numpy scalars elsewhere), so a list such as ``[0.5, np.array(2.0)]``
        still reads as a tree when the result is passed back in; a float32 (float16)
        argument gets its gradient in its own dtype, as autograd and JAX return it (the
        solve itself runs in float64)."""
        structure, paths = self.selected(sel)
        if structure is LEAF:
            return like(self.argument(sel).leaves[0], value_of(paths[0]))
        given = self.inputs()
        return structure.unflatten([like(given[p], value_of(p)) for p in paths])


def like(x, g):
    """The derivative ``g`` of leaf ``x`` as the caller gets it (:meth:`Call.like_arguments`)."""
    if x.__class__ is float:
        return g
    dtype = getattr(x, "dtype", None)
    if dtype is not None and dtype.kind == "f" and dtype != np.float64:
        g = np.asarray(g, dtype=dtype)
        return g[()] if isinstance(x, np.generic) else g   # np.float32(2.0) -> a float32 scalar
    return np.asarray(g) if isinstance(x, np.ndarray) and np.ndim(g) == 0 else g


def bind(f: Callable, args: tuple, kwargs: dict, what: str = "grad",
         names: list[str] | None = None) -> Call:
    """The :class:`Call` of ``f(*args, **kwargs)``; ``names``: ``f``'s positional names for
    ``len(args)`` arguments when the caller knows them. A :class:`~lagrangeprop.Program`
    takes one value per input (positionally in its inputs' order, or by name): ShapeError else."""
    if isinstance(f, ProgramBuilder):
        names = compiled(f).input_names
        check_count(what, names, len(args) + len(kwargs))
        given = {**dict(zip(names, args)), **kwargs}   # in the inputs' order: argnum positions
        order = [n for n in names if n in given] + [n for n in given if n not in names]
        return Call([Argument(n, LEAF, [n], [given[n]]) for n in order], len(order))
    names = argument_names(f, len(args)) if names is None else names
    named = [*zip(names, args), *kwargs.items()]
    if all(v.__class__ in _PLAIN for _, v in named):   # no tree: one input per argument
        return Call([Argument(n, LEAF, [n], [v]) for n, v in named], len(args))
    return Call(flatten_arguments(named), len(args))


_PLAIN = (float, np.ndarray, np.float64, int)


def output_tree(prog) -> OutputTree | None:
    """The structure of a traced function's tree result, or None for one array."""
    return getattr(prog, "output_tree", None)


def leaf_key(a, path: str) -> tuple:
    """A leaf's shape, for the cache key (a ragged leaf: the InputError of coerce.real_array)."""
    cls = a.__class__
    if cls is float:
        return ()
    if cls is np.ndarray:
        return a.shape
    try:
        return np.shape(a)
    except ValueError:      # ragged: the conversion rule names the problem (InputError)
        return real_array(a, f"argument {path!r}").shape
