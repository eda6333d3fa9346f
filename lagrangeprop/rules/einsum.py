"""einsum: one entry with all its rules, on a canonical form of the subscripts.

numpy's subscripts allow an implicit output, ``...`` and broadcasting (an axis of length 1
against a longer one). :func:`parse` rewrites them for given operand shapes into a
canonical :class:`Spec`: one letter per axis, ``...`` spelled out, every axis that
broadcasts given a letter of its own (a sum over one entry), the output explicit. The value
is numpy's own ``np.einsum`` on the caller's subscripts (checked against the Spec); every
derivative rule works on the Spec.

einsum is multilinear: the JVP replaces one operand by its tangent; the cotangent of
operand k is the einsum of ``g`` with the other operands, scattered onto the diagonal
when k repeats a letter (``'ii->i'``); the curvature is that cotangent with a second
operand replaced by its tangent; the sparse Jacobian has one entry per combination of the
letters of the output and of operand k.

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.rules import get
>>> parse("ii", ((2, 2),))
Spec(inputs=('ii',), output='', sizes=(('i', 2),))
>>> x = np.arange(4.0).reshape(2, 2)
>>> get("einsum").vjp(0, np.ones(2), np.diag(x), [x], {"subscripts": "ii->i"}).tolist()
[[1.0, 0.0], [0.0, 1.0]]
"""

from __future__ import annotations

import functools
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ShapeError
from .arrays import as_f64 as _f
from .registry import Primitive, Tape, register

__all__ = ["OPTIMIZE", "Spec", "parse"]

Args = tuple[Any, ...]
Params = dict[str, Any]
Shape = tuple

LETTERS = string.ascii_letters          # numpy's labels (sublists: 0-25 'A'-'Z', 26-51 'a'-'z')
OPTIMIZE = (False, True, "greedy", "optimal")   # einsum's optimize= values that traced ops accept


@dataclass(frozen=True)
class Spec:
    """Canonical einsum subscripts: one letter per axis of each operand and of the output
    (distinct letters in the output; a letter has one length, ``sizes``)."""

    inputs: tuple[str, ...]
    output: str
    sizes: tuple[tuple[str, int], ...]

    @property
    def size(self) -> dict[str, int]:
        return dict(self.sizes)

    @property
    def subscripts(self) -> str:
        return ",".join(self.inputs) + "->" + self.output

    def fresh(self, n: int) -> str:
        """``n`` letters used nowhere in this spec."""
        used = set(dict(self.sizes)) | set(self.output)
        free = [c for c in LETTERS if c not in used]
        if len(free) < n:
            raise ValueError("einsum: too many distinct subscripts (numpy allows 52 letters)")
        return "".join(free[:n])


def _split(term: str, ndim: int) -> tuple[str, str, int]:
    """``term`` as (letters before ``...``, letters after, number of ``...`` axes)."""
    if term.count("...") > 1 or term.replace("...", "").count("."):
        raise ValueError(f"einsum: subscript term {term!r} has a misplaced '.' (one '...' allowed)")
    before, dots, after = term.partition("...")
    for c in before + after:
        if c not in LETTERS:
            raise ValueError(f"einsum: {c!r} in {term!r} is not a valid subscript letter")
    n_ell = ndim - len(before) - len(after)
    if n_ell < 0 or (not dots and n_ell):
        raise ValueError(f"einsum: operand of {ndim} dimension(s) does not match the subscripts {term!r}")
    return before, after, n_ell


# numpy's einsum: an implicit output lists the '...' axes, then the letters that occur
# exactly once, in ASCII order; a letter's length is shared, 1 broadcasting against n.
@functools.lru_cache(maxsize=4096)
def parse(subscripts: str, shapes: tuple[Shape, ...]) -> Spec:
    """The canonical :class:`Spec` of ``np.einsum(subscripts, *ops)`` for operands of ``shapes``.

    Raises
    ------
    ValueError
        For subscripts numpy rejects (the graph layer reports it as a ShapeError).
    """
    text = subscripts.replace(" ", "")
    lhs, arrow, out = text.partition("->")
    if "->" in out or "-" in lhs or ">" in lhs:
        raise ValueError(f"einsum: subscripts {subscripts!r} have a misplaced '->'")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum: {len(terms)} subscript term(s) for {len(shapes)} operand(s)")
    parts = [_split(t, len(s)) for t, s in zip(terms, shapes)]
    named = set(lhs) | set(out)
    n_ell = max((p[2] for p in parts), default=0)
    ell = "".join(c for c in LETTERS if c not in named)[:n_ell]
    if len(ell) < n_ell:
        raise ValueError("einsum: too many distinct subscripts (numpy allows 52 letters)")
    raw = [b + ell[n_ell - k:] + a for b, a, k in parts]
    if arrow:
        before, after, _ = _split(out, len(out.replace("...", "")) + n_ell * ("..." in out))
        if n_ell and "..." not in out:
            raise ValueError("einsum: the operands have '...' axes but the output has no '...'")
        output = before + (ell if "..." in out else "") + after
        if len(set(output)) != len(output):
            raise ValueError(f"einsum: output subscripts {out!r} repeat a letter")
        missing = set(output) - set("".join(raw))
        if missing:
            raise ValueError(f"einsum: output subscript(s) {sorted(missing)} occur in no operand")
    else:
        counts = {c: "".join(raw).count(c) for c in set("".join(b + a for b, a, _ in parts))}
        output = ell + "".join(sorted(c for c, n in counts.items() if n == 1))
    length: dict[str, int] = {}
    for letters, shape in zip(raw, shapes):
        if any(n != shape[letters.index(c)] for c, n in zip(letters, shape)):
            raise ValueError(f"einsum: a repeated subscript of {letters!r} has different lengths {shape}")
        for c, n in zip(letters, shape):
            m = length.get(c, 1)
            if m != n and 1 not in (m, n):
                raise ValueError(f"einsum: subscript {c!r} has lengths {m} and {n}, which do not broadcast")
            length[c] = max(m, n)
    # an axis of length 1 against a longer one: a letter of its own (summed over one entry)
    spare = iter(c for c in LETTERS if c not in named and c not in ell)
    inputs = []
    for letters, shape in zip(raw, shapes):
        canon = ""
        for c, n in zip(letters, shape):
            if n != length[c]:
                c = next(spare, None)
                if c is None:
                    raise ValueError("einsum: too many distinct subscripts (numpy allows 52 letters)")
                length[c] = n
            canon += c
        inputs.append(canon)
    return Spec(tuple(inputs), output, tuple(sorted(length.items())))


def _spec(args: Sequence[Any], params: Params) -> Spec:
    return parse(params["subscripts"], tuple(np.shape(a) for a in args))


def _out_shape(spec: Spec) -> Shape:
    size = spec.size
    return tuple(size[c] for c in spec.output)


def _einsum(*operands: Any, subscripts: str, optimize: Any = False) -> np.ndarray:
    ops = [_f(a) for a in operands]
    ans = np.einsum(subscripts, *ops, optimize=optimize)
    if np.shape(ans) != _out_shape(parse(subscripts, tuple(a.shape for a in ops))):
        raise ShapeError(f"einsum {subscripts!r}: numpy's result has shape {np.shape(ans)}, which "
                         "the canonical subscripts do not reproduce (report this as a bug)")
    return ans


def _contract(terms: list[str], ops: list[Any], target: str, spec: Spec) -> np.ndarray:
    """``einsum(terms -> target)`` for a target with distinct letters; a target letter in
    no term (summed in the original op) broadcasts: ones along it."""
    size = spec.size
    present = set("".join(terms))
    kept = "".join(c for c in target if c in present)
    out = np.einsum(",".join(terms) + "->" + kept, *ops, optimize=True) if terms else np.array(1.0)
    if kept != target:
        out = out.reshape([size[c] if c in present else 1 for c in target])
        out = np.broadcast_to(out, [size[c] for c in target])
    return out


# c = einsum(a_0, ..., a_n): ā_k = Σ over the letters not in a_k of g · Π_{j≠k} a_j,
# placed on a_k's diagonal where its subscripts repeat a letter ('ii': ā = diag(ḡ)).
def _einsum_vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    spec = _spec(args, params)
    target = spec.inputs[i]
    others = [j for j in range(len(args)) if j != i]
    unique = "".join(dict.fromkeys(target))
    red = _contract([spec.output] + [spec.inputs[j] for j in others],
                    [g] + [_f(args[j]) for j in others], unique, spec)
    if unique == target:
        return np.array(red)
    size = spec.size
    out = np.zeros([size[c] for c in target])
    where = tuple(np.arange(size[c]).reshape([-1 if d == c else 1 for d in unique]) for c in target)
    out[where] = red
    return out


def _einsum_jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    moved = [t if k == i else _f(a) for k, a in enumerate(args)]
    return np.einsum(params["subscripts"], *moved, optimize=params.get("optimize", False))


# multilinear: ∂²<g, c>/∂a_i ∂a_j · ȧ_j is ā_i with a_j replaced by ȧ_j (j ≠ i).
def _einsum_curvature(i, g, ans, args, params, tans):
    total = None
    for j, t in enumerate(tans):
        if j == i or t is None:
            continue
        moved = list(args)
        moved[j] = np.reshape(t, np.shape(args[j]))
        term = _einsum_vjp(i, g, ans, moved, params)
        total = term if total is None else total + term
    return total


# dc/da_i has one entry per combination u of the letters of the output and of a_i:
# row = the output position of u, column = a_i's position, value = einsum of the others at u.
def _einsum_jac(i: int, ans: Any, args: Args, params: Params) -> sp.csr_matrix:
    spec = _spec(args, params)
    size = spec.size
    target = spec.inputs[i]
    letters = "".join(dict.fromkeys(spec.output + target))
    others = [j for j in range(len(args)) if j != i]
    values = _contract([spec.inputs[j] for j in others], [_f(args[j]) for j in others], letters, spec)
    grid = {c: np.arange(size[c]).reshape([-1 if d == c else 1 for d in letters]) for c in letters}
    dims = [size[c] for c in letters]

    def position(sub: str) -> np.ndarray:
        flat = np.zeros([1] * len(letters), dtype=np.int64)
        for c in sub:
            flat = flat * size[c] + grid[c]
        return np.broadcast_to(flat, dims).ravel()

    n_out = int(np.prod(_out_shape(spec), dtype=np.int64))
    n_arg = int(np.prod([size[c] for c in target], dtype=np.int64))
    data = np.broadcast_to(values, dims).ravel()
    return sp.csr_matrix((data, (position(spec.output), position(target))), shape=(n_out, n_arg))


def _einsum_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    if set(params) - {"subscripts", "optimize"}:
        return None
    return _out_shape(parse(params["subscripts"], tuple(shapes)))


def _no_repeats(spec: Spec) -> tuple[list[str], list[np.ndarray]]:
    """Terms with each repeated letter of an operand renamed, and the identity matrices
    that tie each new letter to the old (``'ii'`` -> ``'ij,ij'`` with ``eye``), for a tape
    whose einsum cannot differentiate repeated subscripts (HIPS autograd)."""
    size = spec.size
    spare = iter(spec.fresh(sum(len(t) - len(set(t)) for t in spec.inputs)))
    terms, eyes, eye_terms = [], [], []
    for term in spec.inputs:
        seen, new = set(), ""
        for c in term:
            if c in seen:
                d = next(spare)
                eyes.append(np.eye(size[c]))
                eye_terms.append(c + d)
                c = d
            seen.add(c)
            new += c
        terms.append(new)
    return terms + eye_terms, eyes


def _autograd_einsum(anp: Any) -> Any:
    def einsum(*operands, subscripts, optimize=False):
        spec = parse(subscripts, tuple(np.shape(a) for a in operands))
        terms, eyes = _no_repeats(spec)
        return anp.einsum(",".join(terms) + "->" + spec.output, *operands, *eyes)
    return einsum


def _torch_einsum(torch: Any) -> Any:
    def einsum(*operands, subscripts, optimize=False):
        spec = parse(subscripts, tuple(tuple(a.shape) for a in operands))
        return torch.einsum(spec.subscripts, *operands)
    return einsum


register(Primitive(
    "einsum", _einsum, nargs=None, vjp=_einsum_vjp, jvp=_einsum_jvp, jac=_einsum_jac,
    curvature=_einsum_curvature, shape_rule=_einsum_shape, linear=True,
    tape=Tape(autograd=_autograd_einsum, torch=_torch_einsum)))
