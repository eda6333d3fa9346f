"""The statements of the compiled path: their form, the ``math`` table and the chunks.

A statement is ``(format, tokens, comment)``: ``format`` has a slot ``{k}`` per token, and a
token names a value (``("v", node, kind, written)``, kind ``"f"`` for a Python float, ``"n"``
for the numpy value), a multiplier (``("l", node, written)``, written ``"rw"`` when the
statement reads it too) or an object the code calls (``("k", object, label)``).
:mod:`~lagrangeprop.compile.codegen` (forward) and :mod:`~lagrangeprop.compile.multipliers`
(adjoint) write them, :mod:`~lagrangeprop.compile.source` renders them (a chunk's finiteness
test: :func:`_finite_test`).

Examples
--------
>>> b = _Builder()
>>> b.add("{0} = {1} + {2}", (), "")
>>> len(b.runs), _tuple(["a"]), _fmt(MATH["sin"][1][0], G="g", X="x")
(1, '(a,)', 'g * _cos(x)')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .schedule import Block, Step

__all__ = ["CHUNK", "MATH", "Statement", "Chunk", "BlockRun", "Pull"]

CHUNK = 200  # statements per generated function: bounded, so compile time is linear

# op: (the value z_d, the partial of each argument as a cotangent of G = λ_d). X, Y are the
# arguments and A the value z_d, as Python floats. A partial "+" / "-" is the cotangent ±G
# itself (λ_u += λ_d, λ_u -= λ_d). Each formula is the op's registry rule (rules/ufuncs.py)
# with math's functions for numpy's.
MATH: dict[str, tuple[str, tuple[str, ...]]] = {
    "add": ("{X} + {Y}", ("+", "+")),
    "subtract": ("{X} - {Y}", ("+", "-")),
    "multiply": ("{X} * {Y}", ("{G} * {Y}", "{G} * {X}")),
    "divide": ("{X} / {Y}", ("{G} * (1.0 / {Y})", "{G} * (-{X} / ({Y} * {Y}))")),
    "negative": ("-{X}", ("-",)),
    "identity": ("{X}", ("+",)),
    "square": ("{X} * {X}", ("{G} * (2.0 * {X})",)),
    "power": ("_pow({X}, {Y})", ("{G} * _pow_dbase({X}, {Y})", "{G} * _pow_dexp({A}, {X})")),
    "exp": ("_exp({X})", ("{G} * {A}",)),
    "log": ("_log({X})", ("{G} * (1.0 / {X})",)),
    "log1p": ("_log1p({X})", ("{G} * (1.0 / (1.0 + {X}))",)),
    "sqrt": ("_sqrt({X})", ("{G} * (0.5 / {A})",)),
    "sin": ("_sin({X})", ("{G} * _cos({X})",)),
    "cos": ("_cos({X})", ("{G} * -_sin({X})",)),
    "tan": ("_tan({X})", ("{G} * (1.0 / _cos({X}) ** 2)",)),
    "tanh": ("_tanh({X})", ("{G} * _sech2({X})",)),
}

Statement = tuple[str, tuple, str]


@dataclass(eq=False)
class Chunk:
    """Consecutive statements of one generated function."""

    statements: list[Statement] = field(default_factory=list)


@dataclass(eq=False)
class BlockRun:
    """A cyclic block between chunks: ``blocks.solve_forward`` / the block adjoint."""

    block: Block


@dataclass(eq=False)
class Pull:
    """What the adjoint helper needs for a constraint without a ``math`` form: its step,
    the plan's kernel (``None``: the op's rules) and its distinct differentiable arguments."""

    step: Step
    kernel: Any
    targets: tuple[int, ...]
    name: str                # the node's name (for error messages)
    index: Any = None        # a built-in getitem by ints (one entry): the scatter λ_x[index] += λ_d



def _int_index(s: Step, shapes: list):
    """The index of a built-in ``getitem`` that selects one entry of an array by ints, else ``None``."""
    if s.prim.name != "getitem" or s.prim.user or set(s.params) != {"index"} or shapes[s.node] != ():
        return None
    index = s.params["index"]
    ints = index if index.__class__ is tuple else (index,)
    ok = ints and len(ints) == len(shapes[s.args[0]]) and all(k.__class__ is int for k in ints)
    return index if ok else None


def _ref(k: int) -> str:
    """The format slot of token ``k``."""
    return "{" + str(k) + "}"


def _tuple(items: list[str]) -> str:
    """A Python tuple display of ``items``."""
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _fmt(text: str, **slots: str) -> str:
    """``text`` with ``{X}``-style slots replaced (literal braces are not used)."""
    for k, v in slots.items():
        text = text.replace("{" + k + "}", v)
    return text


class _Builder:
    """Appends statements to chunks of at most :data:`CHUNK`, blocks between them. ``sink``, when
    given, takes each chunk as it is closed and its result stands in the runs for it (the
    compiled path renders a chunk there, so no chunk's statements outlive it: a 10⁵-node
    program never holds all of its statements at once); :meth:`finish` closes the last one."""

    def __init__(self, sink: Callable[[Chunk], Any] | None = None) -> None:
        self.runs: list = []
        self.current: Chunk | None = None
        self.sink = sink

    def _close(self) -> None:
        if self.sink is not None and self.current is not None:
            self.runs[-1] = self.sink(self.current)
        self.current = None

    def add(self, fmt: str, toks: tuple, comment: str) -> None:
        if self.current is None or len(self.current.statements) >= CHUNK:
            self._close()
            self.current = Chunk()
            self.runs.append(self.current)
        self.current.statements.append((fmt, toks, comment))

    def block(self, block: Block) -> None:
        self._close()
        self.runs.append(BlockRun(block))

    def finish(self) -> list:
        """The runs, the last chunk closed."""
        self._close()
        return self.runs


# the finiteness test of a chunk's own scalars, one expression for them all. Values: Python
# floats, and for a float v, v * 0.0 is 0.0 when v is finite and NaN when it is inf or NaN, so
# a sum of such terms is 0.0 exactly when every one is (no overflow: every term is 0 or NaN).
# Multipliers: None (zero) or a float or float64 scalar (the seed's type, which would warn on
# inf * 0.0 outside np.errstate), so math.isfinite per multiplier, in one `and` chain
_TERMS = 64   # terms per line (one long expression would nest too deep for the compiler)


def _finite_test(names: list[str], lams: bool) -> list[str]:
    """``return <all of names finite>`` as lines (a Python bool)."""
    if not names:
        return []
    lines = []
    for k in range(0, len(names), _TERMS):
        part = names[k:k + _TERMS]
        if lams:
            expr = " and ".join(f"({n} is None or _isfinite({n}))" for n in part)
            lines.append(f"_z = {expr}" if k == 0 else f"_z = _z and {expr}")
        else:
            expr = " + ".join(f"{n} * 0.0" for n in part)
            lines.append(f"_z = {expr}" if k == 0 else f"_z = _z + {expr}")
    return lines + ["return _z" if lams else "return bool(_z == 0.0)"]
