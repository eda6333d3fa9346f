"""Parameter trees (pytrees): nested dicts, lists and tuples of arrays and floats (SPEC §2).

:func:`flatten` splits a tree into its leaves and a hashable :class:`TreeDef`;
:meth:`TreeDef.unflatten` puts leaves back; :meth:`TreeDef.paths` names the leaves, and
those names are the program's inputs (``params.W1``, ``layers.0.W``, ``layers.1``).

The conventions, as in JAX and autograd except where numpy reading wins:

- a **dict** is a node; its keys must be non-empty strings (they name inputs) and its
  children are taken in *sorted key order*, as JAX does, so two dicts with the same keys
  are the same structure whatever their insertion order (results are built in that order);
- a **tuple** is a node; a namedtuple keeps its type (the gradient is one of the same type)
  and names its leaves by field (``p.W``, as JAX's key paths do);
- a **list** is a node when it holds an ndarray, a dict, a tuple or a node list; a list
  of plain numbers (nested) is one array, as numpy reads it (``x=[1.0, 2.0]`` is an input
  of shape ``(2,)``, and a ragged list of numbers is still an InputError). For results
  (``outputs=True``) a list of traced values is packed into one array as numpy would
  (``return [a, b]``); return a tuple or a dict for several results;
- **paths** join keys and positions with dots: ``params.W1``, ``layers.0.1``;
- anything else (an ndarray, a float, a list of numbers, a traced value) is a **leaf**.

Examples
--------
>>> import numpy as np
>>> leaves, tree = flatten({"b": 1.0, "W": [np.ones(2), (2.0, 3.0)]})
>>> tree
{'W': [*, (*, *)], 'b': *}
>>> tree.paths("params")
['params.W.0', 'params.W.1.0', 'params.W.1.1', 'params.b']
>>> tree.unflatten([10, 20, 30, 40])
{'W': [10, (20, 30)], 'b': 40}
>>> flatten([1.0, 2.0])[1]          # numbers only: one array
*
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, ShapeError
from .coerce import real_array

__all__ = ["TreeDef", "LEAF", "flatten", "is_leaf", "Argument", "flatten_arguments", "OutputTree",
           "expand_tree_inputs", "check_unique"]


@dataclass(frozen=True)
class TreeDef:
    """The structure of a tree: ``kind`` in {"leaf", "dict", "list", "tuple"}, the dict's
    sorted ``keys``, one child structure per key or position, and for a namedtuple its
    ``cls`` (rebuilt by :meth:`unflatten`; its fields label the leaves)."""

    kind: str
    keys: tuple = ()
    children: tuple = ()
    cls: Any = None

    @property
    def num_leaves(self) -> int:
        """How many leaves a tree of this structure has."""
        return 1 if self.kind == "leaf" else sum(c.num_leaves for c in self.children)

    def _labels(self) -> list[str]:
        if self.kind == "dict":
            return list(self.keys)
        if self.cls is not None:
            return list(self.cls._fields)
        return [str(i) for i in range(len(self.children))]

    def paths(self, prefix: str) -> list[str]:
        """The leaves' names, dot-joined below ``prefix`` (a leaf alone is ``prefix``)."""
        if self.kind == "leaf":
            return [prefix]
        return [p for label, c in zip(self._labels(), self.children) for p in c.paths(f"{prefix}.{label}")]

    def unflatten(self, leaves: Iterable) -> Any:
        """The tree of this structure holding ``leaves`` (in :meth:`paths` order)."""
        it = iter(leaves)
        out = self._build(it)
        if next(it, _END) is not _END:
            raise ValueError(f"unflatten: more leaves than the {self.num_leaves} of {self!r}")
        return out

    def _build(self, it) -> Any:
        if self.kind == "leaf":
            return next(it)
        parts = [c._build(it) for c in self.children]
        if self.kind == "dict":
            return dict(zip(self.keys, parts))
        if self.cls is not None:
            return self.cls(*parts)
        return parts if self.kind == "list" else tuple(parts)

    def flatten_up_to(self, value: Any, what: str) -> list:
        """The leaves of ``value``, which must have this structure down to the leaves
        (a list where a tuple was, and the reverse, are accepted); else InputError."""
        out: list = []
        self._collect(value, what, out)
        return out

    def _collect(self, value: Any, path: str, out: list) -> None:
        if self.kind == "leaf":
            out.append(value)
            return
        if self.kind == "dict":
            if not isinstance(value, dict) or set(value) != set(self.keys):
                got = (f"a dict with keys {sorted(map(str, value))}" if isinstance(value, dict)
                       else f"a {type(value).__name__}")
                raise InputError(f"{path} must be a dict with keys {list(self.keys)} (the structure "
                                 f"{self!r}), got {got}")
            for k, c in zip(self.keys, self.children):
                c._collect(value[k], f"{path}.{k}", out)
            return
        if not isinstance(value, (list, tuple)) or len(value) != len(self.children):
            got = (f"a {type(value).__name__} of length {len(value)}" if isinstance(value, (list, tuple))
                   else f"a {type(value).__name__}")
            raise InputError(f"{path} must be a {self.kind} of length {len(self.children)} (the "
                             f"structure {self!r}), got {got}")
        for label, v, c in zip(self._labels(), value, self.children):
            c._collect(v, f"{path}.{label}", out)

    def __repr__(self) -> str:
        if self.kind == "leaf":
            return "*"
        if self.kind == "dict":
            return "{" + ", ".join(f"{k!r}: {c!r}" for k, c in zip(self.keys, self.children)) + "}"
        if self.cls is not None:
            fields = ", ".join(f"{k}={c!r}" for k, c in zip(self.cls._fields, self.children))
            return f"{self.cls.__name__}({fields})"
        inner = ", ".join(repr(c) for c in self.children)
        return f"[{inner}]" if self.kind == "list" else f"({inner}{',' if len(self.children) == 1 else ''})"


_END = object()
#: the structure of a single leaf
LEAF = TreeDef("leaf")
_NUMBER = (int, float, np.number, np.bool_)


def _numbers_only(value: list | tuple) -> bool:
    """A (nested) list of plain numbers: numpy's array_like, one leaf."""
    return all(isinstance(v, _NUMBER) or (isinstance(v, list) and _numbers_only(v)) for v in value)


def _list_is_node(value: list, outputs: bool) -> bool:
    if not outputs:
        return not _numbers_only(value)
    return any(isinstance(v, (dict, tuple)) or (isinstance(v, list) and _list_is_node(v, True))
               for v in value)


def is_leaf(value: Any, *, outputs: bool = False) -> bool:
    """Whether ``value`` is a leaf under the conventions above (``outputs``: a result's)."""
    if isinstance(value, (dict, tuple)):
        return False
    return not (isinstance(value, list) and _list_is_node(value, outputs))


def flatten(tree: Any, *, outputs: bool = False, what: str = "argument") -> tuple[list, TreeDef]:
    """``(leaves, structure)`` of ``tree``; ``outputs`` reads lists as a result's (see above).

    Raises
    ------
    InputError
        A dict key that is not a non-empty string (keys name the inputs).
    """
    leaves: list = []
    return leaves, _flatten(tree, outputs, what, leaves)


def _flatten(value: Any, outputs: bool, path: str, leaves: list) -> TreeDef:
    if is_leaf(value, outputs=outputs):
        leaves.append(value)
        return LEAF
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str) or not k]
        if bad:
            raise InputError(f"{path} is a dict with the key {bad[0]!r}; the keys of a parameter "
                             "tree name inputs and must be non-empty strings")
        keys = tuple(sorted(value))
        return TreeDef("dict", keys, tuple(_flatten(value[k], outputs, f"{path}.{k}", leaves)
                                           for k in keys))
    kind = "list" if isinstance(value, list) else "tuple"
    cls = type(value) if _is_namedtuple(value) else None
    labels = cls._fields if cls is not None else range(len(value))
    return TreeDef(kind, (), tuple(_flatten(v, outputs, f"{path}.{k}", leaves)
                                   for k, v in zip(labels, value)), cls)


def _is_namedtuple(value: Any) -> bool:
    """A namedtuple (``collections.namedtuple`` or ``typing.NamedTuple``): a tuple whose type
    has ``_fields`` and rebuilds from its fields."""
    fields = getattr(type(value), "_fields", None)
    return (isinstance(value, tuple) and type(value) is not tuple and isinstance(fields, tuple)
            and len(fields) == len(value) and all(isinstance(f, str) for f in fields))


def check_unique(paths: Iterable[str], what: str = "input") -> None:
    """Every name once; else InputError naming the clash (``{"a.b": x, "a": {"b": y}}``)."""
    seen: set[str] = set()
    for p in paths:
        if p in seen:
            raise InputError(f"two leaves of the arguments are both named {p!r} (a dict key with a "
                             f"dot collides with a nested path); rename a key so every {what} "
                             "name is unique")
        seen.add(p)


@dataclass(frozen=True)
class Argument:
    """One argument of a traced call: its ``name``, structure, leaves' input names
    (``paths``) and the leaves themselves."""

    name: str
    tree: TreeDef
    paths: list
    leaves: list


def flatten_arguments(named: Iterable[tuple[str, Any]]) -> list[Argument]:
    """One :class:`Argument` per ``(name, value)``; every input name unique (InputError).

    Examples
    --------
    >>> [a.paths for a in flatten_arguments([("x", 1.0), ("layers", [(1.0, 2.0), {"W": 3.0}])])]
    [['x'], ['layers.0.0', 'layers.0.1', 'layers.1.W']]
    """
    out = []
    for name, value in named:
        leaves, tree = flatten(value, what=name)
        out.append(Argument(name, tree, tree.paths(name), leaves))
    check_unique(p for a in out for p in a.paths)
    return out


@dataclass(frozen=True)
class OutputTree:
    """A tree-valued result as the program's one output: the leaves raveled and
    concatenated (a single leaf as it is); ``shape`` is that output's shape."""

    tree: TreeDef
    shapes: tuple
    shape: tuple

    @property
    def sizes(self) -> list[int]:
        return [int(np.prod(s, dtype=int)) for s in self.shapes]

    def split(self, flat: Any, trailing: tuple = ()) -> Any:
        """The tree of ``flat`` (the output's shape, then ``trailing`` axes): leaf ``k`` gets
        shape ``shapes[k] + trailing``; 0-d leaves come back as numpy scalars."""
        flat = np.array(flat, dtype=np.float64).reshape((sum(self.sizes),) + tuple(trailing))
        leaves, off = [], 0
        for shape, size in zip(self.shapes, self.sizes):
            leaf = np.reshape(flat[off:off + size], tuple(shape) + tuple(trailing))
            leaves.append(leaf[()] if leaf.ndim == 0 else leaf)
            off += size
        return self.tree.unflatten(leaves)

    def join(self, value: Any, what: str) -> np.ndarray:
        """A tree of the result's structure (a cotangent, a seed) as one array of the
        output's shape; InputError / ShapeError naming the leaf that does not fit."""
        leaves = self.tree.flatten_up_to(value, what)
        parts = []
        for path, leaf, shape in zip(self.tree.paths(what), leaves, self.shapes):
            arr = real_array(leaf, path)
            if arr.shape != tuple(shape):
                raise ShapeError(f"{path} has shape {arr.shape}, the result there has shape {tuple(shape)}")
            parts.append(arr.reshape(-1))
        flat = np.concatenate(parts) if parts else np.zeros(0)
        return flat.reshape(self.shape)


def expand_tree_inputs(inputs: dict, names: Iterable[str]) -> dict:
    """``inputs`` with each tree given for a tree-named input (``params={...}`` for the
    inputs ``params.W1``, ``params.b1``) replaced by its leaves, matched by path.

    Keys that are input names, or that prefix none, are kept as they are (the caller
    reports those). Raises InputError when a tree misses an input or holds a leaf no input
    is named for, or when an input is given both in a tree and by its own name.

    Examples
    --------
    >>> expand_tree_inputs({"p": {"W": 1.0, "b": [2.0]}}, ["p.W", "p.b"])
    {'p.W': 1.0, 'p.b': [2.0]}
    """
    wanted = set(names)
    out: dict = {}
    for key, value in inputs.items():
        under = sorted(n for n in wanted if n.startswith(f"{key}."))
        if key in wanted or not under:
            if key in out:
                raise InputError(f"input {key!r} is given both by name and inside a tree; give it once")
            out[key] = value
            continue
        got: dict = {}
        extra: list[str] = []
        _match(value, key, wanted, got, extra)
        missing = [n for n in under if n not in got]
        if missing or extra:
            parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
            raise InputError(f"the tree given for {key!r} does not match the program's inputs "
                             f"({'; '.join(parts)}); its inputs under {key!r} are {under}")
        both = [n for n in got if n in out]
        if both:
            raise InputError(f"input(s) {both} given both by name and inside the tree {key!r}; "
                             "give each once")
        out.update(got)
    return out


def _match(value: Any, path: str, wanted: set, got: dict, extra: list) -> None:
    """Walk ``value`` along the input names: a wanted path is a leaf, whatever it holds."""
    if path in wanted:
        got[path] = value
        return
    below = any(n.startswith(f"{path}.") for n in wanted)
    if below and isinstance(value, dict):
        for k, v in value.items():
            _match(v, f"{path}.{k}", wanted, got, extra)
    elif below and isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _match(v, f"{path}.{i}", wanted, got, extra)
    else:
        extra.append(path)
