"""What every command of ``python -m lagrangeprop`` shares: loading ``MODULE:FUNCTION``,
reading its inputs (``--NAME VALUE`` and ``--input NAME=VALUE``) and one-line usage errors.

``check``, ``draw`` and ``source`` all call :func:`read_inputs` and :func:`load_function`,
so the three read a target and its values the same way. Values are Python literals read
with :func:`ast.literal_eval` (never ``eval``).

Examples
--------
>>> parse_value("1,2,3"), parse_value("[[1, 2], [3, 4]]").shape, parse_value("-0.5")
(array([1., 2., 3.]), (2, 2), -0.5)
>>> split_inputs(["f:g", "--x", "0.5", "--rtol", "1e-3"], {"--rtol"})
(['f:g', '--rtol', '1e-3'], [('x', '0.5')])
>>> read_inputs(["y=[1, 2]"], [("x", "0.5")])
{'x': 0.5, 'y': array([1., 2.])}
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from ..errors import InputError

__all__ = ["UsageError", "Parser", "finite_float", "integer", "literal", "parse_value", "split_inputs",
           "read_inputs", "load_function", "signature_inputs", "one_line"]


class UsageError(Exception):
    """A usage error of the command line: exit status 2, one line on stderr."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2), not usage + error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def finite_float(text: str) -> float:
    """An option's finite number (argparse ``type=``)."""
    try:
        value = parse_value(text)
    except InputError:
        value = None
    if not isinstance(value, float):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def integer(text: str) -> int:
    """An option's integer (argparse ``type=``)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def literal(text: str) -> Any:
    """An option's Python literal, such as a dict (argparse ``type=``)."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise argparse.ArgumentTypeError(f"cannot read {text!r} as a Python literal") from None


def parse_value(text: str) -> Any:
    """A command-line value: a Python literal (``0.5``, ``1,2,3``, ``[[1, 2], [3, 4]]``).

    Numbers come back as ``float`` (ints included), sequences as float64 arrays; anything
    else raises ``InputError`` (read with :func:`ast.literal_eval`, never ``eval``)."""
    from ..graph.coerce import real_array
    if any(w in text.lower() for w in ("nan", "inf")):
        raise InputError(f"value {_short(text)!r}: inputs must be finite numbers (no nan or inf)")
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise InputError(f"cannot read {_short(text)!r} as a number or a list of numbers (examples: 0.5, "
                         "1,2,3, \"[[1, 2], [3, 4]]\")") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(real_array(value, f"value {_short(text)!r}"))
    return real_array(value, f"value {_short(text)!r}")


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def one_line(exc: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def split_inputs(argv: list[str], known: set[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Separate ``--NAME VALUE`` inputs from the options argparse knows (by exact flag)."""
    rest: list[str] = []
    inputs: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        flag, eq, value = arg.partition("=")
        if arg.startswith("--") and len(flag) > 2 and flag not in known:
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"{flag} needs a value (inputs are given as {flag} VALUE)")
                value, i = argv[i + 1], i + 1
            inputs.append((flag[2:], value))
        else:
            rest.append(arg)
        i += 1
    return rest, inputs


def read_inputs(named: list[str], pairs: list[tuple[str, str]]) -> dict:
    """The inputs of ``--input NAME=VALUE`` (``named``) and ``--NAME VALUE`` (``pairs``), by
    name, each value read by :func:`parse_value`; UsageError on a bad one or a repeated name."""
    pairs = list(pairs)
    for item in named:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise UsageError(f"--input expects NAME=VALUE, got {item!r}")
        pairs.append((name, value))
    inputs: dict = {}
    for name, text in pairs:
        if name in inputs:
            raise UsageError(f"input --{name} is given twice")
        try:
            inputs[name] = parse_value(text)
        except InputError as exc:
            raise UsageError(f"input --{name}: {exc}") from None
    return inputs


def load_function(target: str) -> Callable:
    """``MODULE:FUNCTION`` or ``path/to/file.py:FUNCTION`` -> the function (UsageError if not)."""
    mod_name, colon, func = target.rpartition(":")
    if not colon or not mod_name or not func:
        raise UsageError(f"expected MODULE:FUNCTION or path/to/file.py:FUNCTION, got {target!r}")
    try:
        if mod_name.endswith(".py") or "/" in mod_name or "\\" in mod_name or Path(mod_name).is_file():
            path = Path(mod_name)
            if not path.is_file():
                raise UsageError(f"no such file: {path}")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(path.stem, module)
            spec.loader.exec_module(module)
        else:
            if "." not in sys.path and "" not in sys.path:
                sys.path.insert(0, ".")
            module = importlib.import_module(mod_name)
    except UsageError:
        raise
    except ModuleNotFoundError as exc:
        raise UsageError(f"cannot import module {mod_name!r}: {exc}") from None
    except BaseException as exc:  # the module itself failed: SyntaxError, SystemExit, ...
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise UsageError(f"importing {mod_name!r} raised {type(exc).__name__}: {one_line(exc)}") from None
    if not hasattr(module, func):
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        close = difflib.get_close_matches(func, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"module {mod_name!r} has no function {func!r}{hint}")
    f = getattr(module, func)
    if not callable(f):
        raise UsageError(f"{target} is not callable (a {type(f).__name__} object); name a function")
    return f


def signature_inputs(f: Callable, inputs: dict, options: set[str]) -> None:
    """Every input names an argument of ``f`` and every argument without a default has one
    (``options``: the command's option names, for a did-you-mean hint)."""
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        return
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not any(p.kind == p.VAR_KEYWORD for p in params):
        for k in inputs:
            if k not in named:
                close = difflib.get_close_matches(k, [*named, *options], n=1)
                flag = close[0].replace("_", "-") if close and close[0] in options else close[0] if close else ""
                hint = f" (did you mean --{flag}?)" if flag else ""
                raise UsageError(f"unknown option --{k}{hint}: {getattr(f, '__name__', 'the function')} "
                                 f"takes the inputs {named}")
    missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in inputs
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if missing:
        raise UsageError(f"missing inputs: {missing}; give every argument of the function as --NAME VALUE")
