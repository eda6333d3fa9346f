"""The command line: ``python -m lagrangeprop`` (the worked example) and ``check``.

``python -m lagrangeprop [--x 0.5]`` solves the blog example
``f(x) = exp(exp(x) + exp(x)²) + sin(exp(x) + exp(x)²)``, prints every intermediate's
value and multiplier and compares the gradient with the hand-derived derivative.

``python -m lagrangeprop check MODULE:FUNCTION --x 0.5 --z "[5, 2]" [options]`` traces
FUNCTION (from an importable module or from ``path/to/file.py``) at the given inputs and
prints :func:`lagrangeprop.check`'s report. Input values are Python literals read with
:func:`ast.literal_eval` (never ``eval``): ``0.5``, ``1,2,3``, ``"[[1, 2], [3, 4]]"``.

Exit status (SPEC §2): 0 when the check agrees, 1 when it disagrees or the check itself
fails (a ``ConvergenceError`` while solving, the function raising while traced), 2 on a
usage error (bad module or function, bad value, unknown option, missing input). Every
error is one line on stderr, without a traceback (``--traceback`` shows it).

Examples
--------
>>> from lagrangeprop.cli import parse_value
>>> parse_value("1,2,3"), parse_value("[[1, 2], [3, 4]]").shape, parse_value("-0.5")
(array([1., 2., 3.]), (2, 2), -0.5)
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

import numpy as np

from .errors import InputError, LagrangePropError

__all__ = ["main", "main_check", "demo", "blog", "blog_derivative", "parse_value", "build_parser"]

PROG = "python -m lagrangeprop"


class UsageError(Exception):
    """A usage error of the command line: exit status 2, one line on stderr."""


# ---------------------------------------------------------------------------- the demo
def blog(x):
    """The worked example (SPEC §2)."""
    import lagrangeprop as lp
    a = lp.exp(x)
    b = a**2
    c = a + b
    d = lp.exp(c)
    e = lp.sin(c)
    return d + e


def blog_derivative(x: float) -> float:
    """Hand-derived: f'(x) = (exp(c) + cos(c))·(a + 2a²) with a = eˣ, c = a + a²."""
    a = np.exp(x)
    c = a + a * a
    return float((np.exp(c) + np.cos(c)) * (a + 2 * a * a))


def demo(x: float = 0.5) -> int:
    """Solve the blog example at ``x``, print the table; 0 iff the multiplier matches f'(x)."""
    import lagrangeprop as lp
    prog = lp.trace(blog, x=x)
    sol = prog.solve(x=x)
    print("lagrangeprop demo: f(x) = exp(exp(x) + exp(x)^2) + sin(exp(x) + exp(x)^2)"
          f" at x = {x}\n")
    print("Constraints z_d = f_d(parents); multiplier λ_d = ∂f/∂z_d (λ_x is the gradient):\n")
    print(sol.report())
    kkt = sol.kkt()
    exact = blog_derivative(x)
    got = float(sol.grad["x"])
    rel = abs(got - exact) / abs(exact)
    print(f"\nf(x)                     = {float(sol.output):.15g}")
    print(f"gradient (multiplier λ_x) = {got:.15g}")
    print(f"analytic derivative       = {exact:.15g}")
    print(f"relative error            = {rel:.2e}")
    print(f"KKT residuals             = primal {kkt['primal']:.1e}, adjoint {kkt['adjoint']:.1e}")
    ok = rel < 1e-12 and kkt["primal"] <= 1e-10 and kkt["adjoint"] <= 1e-10
    print("OK: the multiplier equals the analytic derivative" if ok else "MISMATCH")
    return 0 if ok else 1


# ------------------------------------------------------------------------ the parser
class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2), not usage + error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _finite_float(text: str) -> float:
    try:
        value = parse_value(text)
    except InputError:
        value = None
    if not isinstance(value, float):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise argparse.ArgumentTypeError(f"cannot read {text!r} as a Python literal") from None


CHECK_OPTIONS = (
    # flag, dest, type, default, help
    ("--rtol", "rtol", _finite_float, 1e-8, "relative tolerance against the tapes (default 1e-8)"),
    ("--fd-rtol", "fd_rtol", _finite_float, 1e-5,
     "relative tolerance against central differences (default 1e-5)"),
    ("--atol", "atol", _finite_float, None, "absolute tolerance (default 1e-12 x the largest multiplier)"),
    ("--against", "against", str, "autograd,torch,fd",
     "comma-separated references: autograd, torch, fd (default all; a missing torch is skipped)"),
    ("--rng", "rng", _int, 0, "random seed of the directions and of a default seed (default 0)"),
    ("--fd-max-elements", "fd_max_elements", _int, 12,
     "inputs with at most this many entries are differenced per element (default 12)"),
    ("--seed", "seed", str, None, "cotangent of a non-scalar output, e.g. \"[1, 0, 0]\" (default random)"),
    ("--guess", "guess", _literal, None,
     "starting values of cyclic-block variables, a dict literal: \"{'w': 1.0}\""),
    ("--tol", "tol", _finite_float, None, "relative residual tolerance of block solves (default 1e-10)"),
    ("--maxiter", "maxiter", _int, None, "iteration limit per block"),
    ("--method", "method", str, None,
     "block solver: auto, newton, newton-krylov, fixed-point, anderson"),
    ("--linear-solver", "linear_solver", str, None,
     "block adjoint/tangent solver: auto, direct, gmres, bicgstab, amg"),
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m lagrangeprop`` and its ``check`` command."""
    parser = _Parser(prog=PROG, allow_abbrev=False,
                     description="Differentiate programs by the method of Lagrange multipliers. "
                                 "Without a command: the worked example (the blog function at --x).")
    parser.add_argument("--x", type=_finite_float, default=0.5, help="where the demo evaluates (default 0.5)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    d = sub.add_parser("demo", help="the worked example (the default)", allow_abbrev=False)
    d.add_argument("--x", type=_finite_float, default=argparse.SUPPRESS, help="where to evaluate (default 0.5)")
    c = sub.add_parser(
        "check", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        help="check the gradient of MODULE:FUNCTION against tapes and finite differences",
        description="Trace FUNCTION at the given inputs and check its Lagrange multipliers against\n"
                    "HIPS autograd (tape), PyTorch (tape) and central finite differences.",
        epilog="inputs:\n  --NAME VALUE          one per argument of FUNCTION, e.g. --x 0.5 --z \"[5, 2]\"\n"
               "  --input NAME=VALUE    the same, for an argument named like an option\n"
               "  VALUE is a Python literal (ast.literal_eval): 0.5, 1,2,3, \"[[1, 2], [3, 4]]\"\n\n"
               "exit status: 0 the check agrees, 1 it disagrees (or solving failed), 2 usage error")
    c.add_argument("target", metavar="MODULE:FUNCTION",
                   help="an importable module or a path/to/file.py, and the function's name")
    for flag, dest, kind, default, text in CHECK_OPTIONS:
        c.add_argument(flag, dest=dest, type=kind, default=default, help=text)
    c.add_argument("--input", "-i", dest="named_inputs", action="append", default=[],
                   metavar="NAME=VALUE", help="an input given by name (repeatable)")
    c.add_argument("--traceback", action="store_true", help="on an error, show the full traceback")
    return parser


def parse_value(text: str) -> Any:
    """A command-line value: a Python literal (``0.5``, ``1,2,3``, ``[[1, 2], [3, 4]]``).

    Numbers come back as ``float`` (ints included), sequences as float64 arrays; anything
    else raises ``InputError`` (read with :func:`ast.literal_eval`, never ``eval``)."""
    from .graph.coerce import real_array
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


def _split_inputs(argv: list[str], known: set[str]) -> tuple[list[str], list[tuple[str, str]]]:
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


# --------------------------------------------------------------------------- loading
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
        raise UsageError(f"importing {mod_name!r} raised {type(exc).__name__}: {_one_line(exc)}") from None
    if not hasattr(module, func):
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        close = difflib.get_close_matches(func, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"module {mod_name!r} has no function {func!r}{hint}")
    f = getattr(module, func)
    if not callable(f):
        raise UsageError(f"{target} is not callable (a {type(f).__name__} object); name a function")
    return f


def _signature_inputs(f: Callable, inputs: dict, options: set[str]) -> None:
    """Every input names an argument of ``f`` and every argument without a default has one."""
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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ---------------------------------------------------------------------------- check
def _check_arguments(args: argparse.Namespace, pairs: list[tuple[str, str]]):
    """Inputs and keyword options for :func:`lagrangeprop.check`, or UsageError."""
    from .options import SolveOptions, check_options

    for item in args.named_inputs:
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
    against = tuple(a.strip() for a in args.against.split(",") if a.strip())
    try:
        seed = None if args.seed is None else parse_value(args.seed)
    except InputError as exc:
        raise UsageError(f"--seed: {exc}") from None
    try:
        check_options(against=against, rtol=args.rtol, fd_rtol=args.fd_rtol, atol=args.atol,
                      rng=args.rng, fd_max_elements=args.fd_max_elements)
        SolveOptions.make(args.tol, args.maxiter, args.method, args.linear_solver)
    except InputError as exc:
        raise UsageError(_one_line(exc)) from None
    options = dict(against=against, rtol=args.rtol, fd_rtol=args.fd_rtol, atol=args.atol, rng=args.rng,
                   fd_max_elements=args.fd_max_elements, seed=seed, guess=args.guess, tol=args.tol,
                   maxiter=args.maxiter, method=args.method, linear_solver=args.linear_solver)
    return inputs, options


def run_check(args: argparse.Namespace, pairs: list[tuple[str, str]]) -> int:
    """The ``check`` command: 0 the check agrees, 1 it disagrees or fails; UsageError on bad usage."""
    from .crosscheck.check import check
    from .solve.inputs import parse_guess, parse_seed
    from .program import trace

    inputs, options = _check_arguments(args, pairs)
    f = load_function(args.target)
    _signature_inputs(f, inputs, {dest for _, dest, *_ in CHECK_OPTIONS})
    try:
        prog = trace(f, **inputs)
        sched = prog.compile()
    except InputError as exc:
        raise UsageError(_one_line(exc)) from None
    except Exception as exc:
        if args.traceback:
            raise
        print(f"{PROG} check: tracing {args.target} raised {type(exc).__name__}: {_one_line(exc)} "
              "(--traceback shows where)", file=sys.stderr)
        return 1
    try:   # --seed and --guess against the traced program: still usage errors
        if options["seed"] is not None:
            parse_seed(sched, options["seed"])
        parse_guess(sched, options["guess"])
    except LagrangePropError as exc:
        raise UsageError(_one_line(exc)) from None
    try:
        report = check(prog, inputs, **options)
    except Exception as exc:
        if args.traceback:
            raise
        print(f"{PROG} check: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 1
    print(report)
    return 0 if report.ok else 1


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    """``python -m lagrangeprop [--x X] | demo [--x X] | check MODULE:FUNCTION ...`` -> exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        pairs: list[tuple[str, str]] = []
        if "check" in argv:
            at = argv.index("check") + 1
            known = {flag for flag, *_ in CHECK_OPTIONS} | {"--input", "--traceback", "--help"}
            rest, pairs = _split_inputs(argv[at:], known)
            argv = argv[:at] + rest
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:   # --help
            return int(exc.code or 0)
        if args.command == "check":
            return run_check(args, pairs)
        try:
            return demo(args.x)
        except LagrangePropError as exc:
            raise UsageError(_one_line(exc)) from None
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def main_check(argv: list[str]) -> int:
    """``python -m lagrangeprop check ARGV...`` -> exit status (for tests and scripts)."""
    return main(["check", *argv])


if __name__ == "__main__":
    sys.exit(main())
