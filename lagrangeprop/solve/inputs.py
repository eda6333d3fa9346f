"""What crosses into the solve layer: the caller's inputs, guesses, seeds, tangents and points.

Every function here checks one kind of argument against the compiled schedule and
returns it keyed by node id (float64, shapes as declared), or raises
:class:`~lagrangeprop.errors.InputError` / :class:`~lagrangeprop.errors.ShapeError` naming
the variable and the fix. Nothing here runs a pass; the finiteness test of inputs is
the forward pass's own (:func:`~lagrangeprop.solve.finite.finite_array`).

Examples
--------
>>> import lagrangeprop as lp
>>> sched = lp.trace(lambda x: x * 2.0, x=1.0).compile()
>>> parse_inputs(sched, {"x": 0.5})
{0: array(0.5)}
>>> parse_inputs(sched, {"y": 0.5})
Traceback (most recent call last):
  ...
lagrangeprop.errors.InputError: unexpected input(s) ['y']; the program's inputs are ['x']
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Mapping

import numpy as np

from ..compile.schedule import Schedule
from ..errors import InputError, ShapeError
from ..graph.coerce import real_array
from ..graph.pytree import expand_tree_inputs
from .finite import finite_array

__all__ = ["SCALAR_SEED", "parse_inputs", "input_spec", "parse_guess", "parse_seed", "default_seed", "shaped_input",
           "check_names", "point_value", "finite_array", "scalar", "scalarize", "suggest"]

_ND, _F64DT = np.ndarray, np.dtype(np.float64)
_ONE = np.float64(1.0)   # the seed of a scalar output (a numpy scalar: immutable, so shared)
SCALAR_SEED = _ONE
_OPTION_NAMES = ("guess", "seed", "tol", "maxiter", "method", "linear_solver", "verbose", "callback")


def scalar(v: np.ndarray):
    """A 0-d array as its numpy scalar, any other array as it is."""
    return v[()] if v.ndim == 0 else v


def scalarize(v):
    """``v`` as float64: a numpy scalar when 0-d, else an array."""
    v = np.asarray(v, dtype=np.float64)
    return v[()] if v.ndim == 0 else v


def suggest(name, candidates) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ------------------------------------------------------------------ inputs
def input_spec(sched: Schedule) -> dict[str, tuple[int, tuple]]:
    """``{input name: (node id, shape)}`` in the schedule's input order, built once per schedule."""
    spec = sched.input_spec
    if spec is None:
        spec = sched.input_spec = {sched.names[i]: (i, sched.shapes[i]) for i in sched.inputs}
    return spec


def parse_inputs(sched: Schedule, inputs: dict, *, what: str = "input",
                 own: bool = False) -> dict[int, np.ndarray]:
    """Check names, shapes and finiteness of the caller's inputs: ``{node id: array}``.

    The common case (every input given, as a Python float for a scalar input or a float64
    array of the declared shape) is checked against a per-schedule table (:func:`input_spec`);
    anything else, and every error, goes through the general path :func:`_parse_inputs`
    (same conversions, same messages). Arrays are not copied (as ``np.asarray``) unless
    ``own``: then no returned array shares memory with the caller's (a Solution owns its
    numbers, SPEC §2), and a Python float, converted anyway, is not copied again.

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> sched = lp.trace(lambda x: x * 2.0, x=np.ones(2)).compile()
    >>> x = np.ones(2)
    >>> parse_inputs(sched, {"x": x})[0] is x, parse_inputs(sched, {"x": x}, own=True)[0] is x
    (True, False)
    """
    spec = input_spec(sched)
    if len(inputs) == len(spec):
        out = {}
        for k, v in inputs.items():
            entry = spec.get(k)
            if entry is None:
                break
            i, shape = entry
            cls = v.__class__
            if cls is float or cls is np.float64:
                if shape != () or not math.isfinite(v):
                    break
                out[i] = np.array(v)   # a new 0-d float64 array (np.array: faster than asarray(dtype=))
            elif cls is _ND and v.dtype is _F64DT and v.shape == shape and finite_array(v):
                out[i] = v.copy() if own else v
            else:
                break
        else:
            return out
    out = _parse_inputs(sched, inputs, what)
    if own:
        for i, v in out.items():
            out[i] = v.copy()
    return out


def _parse_inputs(sched: Schedule, inputs: dict, what: str) -> dict[int, np.ndarray]:
    if not isinstance(inputs, Mapping):
        raise InputError(f"{what}s must be a dict {{name: value}}, got {type(inputs).__name__}; "
                         f"the program's inputs are {sched.input_names}")
    expected = sched.input_names
    if any(k not in sched.index for k in inputs):   # params={...} for the inputs params.W1, ...
        inputs = expand_tree_inputs(inputs, expected)
    extra = [k for k in inputs if k not in sched.index or sched.roles[sched.index[k]] != "input"]
    if extra:
        k = extra[0]
        hint = (f" ({k}= is an option of solve() that this call does not take)" if k in _OPTION_NAMES
                else suggest(k, [*expected, *_OPTION_NAMES]))
        raise InputError(f"unexpected {what}(s) {extra}{hint}; the program's inputs are {expected}")
    missing = [k for k in expected if k not in inputs]
    if missing:
        raise InputError(f"missing {what}(s) {missing}: pass "
                         + ", ".join(f"{k}=<array of shape {sched.shapes[sched.index[k]]}>"
                                     for k in missing))
    out = {}
    for k, v in inputs.items():
        i = sched.index[k]
        # real numbers only, promoted to float64 (ints included); see coerce.real_array
        arr = real_array(v, f"{what} {k!r}", finite=False)
        if arr.shape != sched.shapes[i]:
            raise InputError(f"{what} {k!r} has shape {arr.shape}, the program expects "
                             f"{sched.shapes[i]}; trace or declare it with that shape")
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{what} {k!r} contains NaN or inf; inputs must be finite")
        out[i] = arr
    return out


def shaped_input(sched: Schedule, i: int, t, what: str) -> np.ndarray:
    """A tangent or direction ``t`` for input ``i``: real, of the input's shape."""
    arr = real_array(t, f"{what} for input {sched.names[i]!r}")
    if arr.shape != sched.shapes[i]:
        raise ShapeError(f"{what} for input {sched.names[i]!r} has shape {arr.shape}, "
                         f"the input has shape {sched.shapes[i]}")
    return arr


# ------------------------------------------------------------------- guesses
def _block_nodes(sched: Schedule) -> frozenset[int]:
    """Nodes of the cyclic blocks: the only ones a guess starts (SPEC §1)."""
    nodes = sched.block_nodes
    if nodes is None:
        nodes = sched.block_nodes = frozenset(n for b in sched.blocks for n in b.nodes)
    return nodes


def parse_guess(sched: Schedule, guess: dict | None, own: bool = False) -> dict[int, np.ndarray]:
    """``{node id: starting value}``: a dict keyed by defined variables, each value a finite
    real scalar (filling the variable) or an array of the variable's shape. ``own``: every
    array is a new one, sharing no memory with the caller's (a Solution keeps them).

    A guess for a defined variable outside every cyclic block is validated, then unused
    (its value is computed directly, not iterated): a warning says so, since the caller
    evidently expected it to matter."""
    if guess is None:
        return {}
    if not isinstance(guess, Mapping):
        raise InputError(f"guess must be a dict {{variable name: starting value}}, got "
                         f"{type(guess).__name__}; e.g. guess={{{_example_guess(sched)}}}")
    out = {}
    unused = []
    for k, v in guess.items():
        if k not in sched.index or sched.roles[sched.index[k]] != "defined":
            role = sched.roles[sched.index[k]] if k in sched.index else None
            why = (f"the {role} {k!r}, which is not iterated (an input is given by value, as {k}=...)"
                   if role == "input" else f"the constant {k!r}" if role == "constant"
                   else f"{k!r}, which is not a variable of the program"
                   + suggest(k, [sched.names[n] for n in sched.defined]))
            raise InputError(f"guess names {why}; a guess starts the variables of cyclic blocks: "
                             f"{_block_names(sched)}")
        i = sched.index[k]
        if v.__class__ is float and sched.shapes[i] == () and math.isfinite(v):
            out[i] = np.array(v)      # the common case: a finite float for a scalar variable
            if i not in _block_nodes(sched):
                unused.append(k)
            continue
        arr = real_array(v, f"guess for {k!r}")
        if arr.shape not in ((), sched.shapes[i]):
            raise InputError(f"guess for {k!r} has shape {arr.shape}, the variable has "
                             f"shape {sched.shapes[i]}; pass a scalar (filling it) or an array of "
                             "that shape")
        out[i] = np.broadcast_to(arr, sched.shapes[i])
        if own:
            out[i] = np.array(out[i])
        if i not in _block_nodes(sched):
            unused.append(k)
    if unused:
        warnings.warn(f"guess for {unused} is not used: not in a cyclic block, so computed "
                      f"directly; the block variables are {_block_names(sched)}", UserWarning,
                      stacklevel=4)
    return out


def _block_names(sched: Schedule) -> str:
    names = [sched.names[n] for b in sched.blocks for n in b.nodes]
    if not names:
        return "none (this program has no cyclic block, so it needs no guess)"
    return str(names if len(names) <= 8 else [*names[:8], "..."])


def _example_guess(sched: Schedule) -> str:
    names = [sched.names[n] for b in sched.blocks for n in b.nodes][:2] or ["w"]
    return ", ".join(f"{n!r}: 1.0" for n in names)


# --------------------------------------------------------------------- seeds
def parse_seed(sched: Schedule, seed) -> np.ndarray:
    """The output cotangent: 1 for a scalar output when ``seed`` is None, else an array of
    the output's shape (a non-scalar output needs one)."""
    shape = sched.shapes[sched.output]
    name = sched.names[sched.output]
    if seed is None:
        if shape != ():
            raise ShapeError(
                f"output {name!r} has shape {shape}: pass seed= (a cotangent of that shape) to "
                "solve(), use prog.evaluate() for values only, or lp.jacobian for the Jacobian")
        return _ONE
    arr = real_array(seed, f"seed (the cotangent of output {name!r})")
    if arr.shape != shape:
        raise ShapeError(f"seed has shape {arr.shape} but output {name!r} has shape {shape}")
    return arr


def default_seed(sched: Schedule, seed):
    """:func:`parse_seed`, with 1 for a scalar output and no seed."""
    return _ONE if seed is None and sched.shapes[sched.output] == () \
        else parse_seed(sched, seed)


# -------------------------------------------------------------------- points
def check_names(sched: Schedule, d, what: str, allowed: tuple[str, ...]) -> None:
    """``d`` is a dict whose keys are nodes of the program with a role in ``allowed``."""
    if not isinstance(d, Mapping):
        raise InputError(f"{what} must be a dict keyed by node name (as sol.{what} is), got "
                         f"{type(d).__name__}")
    index, roles = sched.index, sched.roles
    bad = [k for k in d if k not in index or roles[index[k]] not in allowed]
    if bad:
        k = bad[0]
        why = (f"the constant {k!r} (constants are fixed by the program)" if k in index
               else f"{k!r}, which is not a node of the program"
               + suggest(k, [sched.names[n] for n in sched.defined]))
        raise InputError(f"{what} names {why}; its keys are the program's "
                         + ("inputs and defined variables" if "input" in allowed else "inputs"))


def point_value(sched: Schedule, n: int, v, what: str) -> np.ndarray:
    """The caller's value (or multiplier) ``v`` for node ``n`` of a point: real, of its shape."""
    shape = sched.shapes[n]
    if v.__class__ is np.float64 and shape == () and math.isfinite(v):
        return v
    arr = real_array(v, f"{what}[{sched.names[n]!r}]")
    if arr.shape != shape:
        raise InputError(f"{what}[{sched.names[n]!r}] has shape {arr.shape}, expected {shape}")
    return arr
