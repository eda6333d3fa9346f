"""The command line: ``python -m lagrangeprop`` (the worked example), ``check``, ``draw``, ``source``.

``python -m lagrangeprop [--x 0.5]`` solves the blog example
``f(x) = exp(exp(x) + exp(x)²) + sin(exp(x) + exp(x)²)``, prints every intermediate's
value and multiplier and compares the gradient with the hand-derived derivative.

The commands take a function, ``MODULE:FUNCTION`` (an importable module or
``path/to/file.py``), and its inputs as ``--NAME VALUE`` or ``--input NAME=VALUE``; values
are Python literals read with :func:`ast.literal_eval` (never ``eval``): ``0.5``,
``1,2,3``, ``"[[1, 2], [3, 4]]"`` (:mod:`lagrangeprop.crosscheck.command_line`, shared by all three):

- ``check``: :func:`lagrangeprop.check`'s report (``--verbose``: its progress on stderr);
- ``draw``: the constraint graph, solved, as a picture (``-o graph.png``; needs matplotlib);
- ``source``: ``prog.source()``, the generated forward and multiplier program.

Exit status (SPEC §2): 0 when the command succeeds (``check``: the check agrees), 1 when
the check disagrees or fails while solving (a ``ConvergenceError``, a ``NonFiniteError``),
2 on a usage error (bad module or function, bad value, unknown option, missing input, a
function that cannot be traced, matplotlib missing for ``draw``). Every error is one line
on stderr, without a traceback (``--traceback`` shows it).

Examples
--------
>>> from lagrangeprop.cli import parse_value
>>> parse_value("1,2,3"), parse_value("[[1, 2], [3, 4]]").shape, parse_value("-0.5")
(array([1., 2., 3.]), (2, 2), -0.5)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import numpy as np

from .crosscheck.command_line import (Parser, UsageError, finite_float, integer, literal, load_function,
                                      one_line, parse_value, read_inputs, signature_inputs, split_inputs)
from .errors import InputError, LagrangePropError

__all__ = ["main", "main_check", "demo", "blog", "blog_derivative", "parse_value", "build_parser"]

PROG = "python -m lagrangeprop"

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
SOLVE_OPTIONS = (
    # flag, dest, type, default, help
    ("--seed", "seed", str, None, "cotangent of a non-scalar output, e.g. \"[1, 0, 0]\" (default random)"),
    ("--guess", "guess", literal, None,
     "starting values of cyclic-block variables, a dict literal: \"{'w': 1.0}\""),
    ("--tol", "tol", finite_float, None, "relative residual tolerance of block solves (default 1e-10)"),
    ("--maxiter", "maxiter", integer, None, "iteration limit per block"),
    ("--method", "method", str, None,
     "block solver: auto, newton, newton-krylov, fixed-point, anderson"),
    ("--linear-solver", "linear_solver", str, None,
     "block adjoint/tangent solver: auto, direct, gmres, bicgstab, amg"),
)
CHECK_OPTIONS = (
    ("--rtol", "rtol", finite_float, 1e-8, "relative tolerance against the tapes (default 1e-8)"),
    ("--fd-rtol", "fd_rtol", finite_float, 1e-5,
     "relative tolerance against central differences (default 1e-5)"),
    ("--atol", "atol", finite_float, None,
     "absolute tolerance added to every comparison (default 0: each node's own rounding floor)"),
    ("--against", "against", str, "autograd,torch,fd",
     "comma-separated references: autograd, torch, fd (default all; a missing torch is skipped)"),
    ("--rng", "rng", integer, 0, "random seed of the directions and of a default seed (default 0)"),
    ("--fd-max-elements", "fd_max_elements", integer, 12,
     "inputs with at most this many entries are differenced per element (default 12)"),
    *SOLVE_OPTIONS,
)
INPUTS_HELP = ("inputs:\n  --NAME VALUE          one per argument of FUNCTION, e.g. --x 0.5 --z \"[5, 2]\"\n"
               "  --input NAME=VALUE    the same, for an argument named like an option\n"
               "  VALUE is a Python literal (ast.literal_eval): 0.5, 1,2,3, \"[[1, 2], [3, 4]]\"\n\n")
COMMANDS = ("demo", "check", "draw", "source")


def _command(sub, name: str, help: str, description: str, status: str) -> argparse.ArgumentParser:
    """A command taking MODULE:FUNCTION and its inputs (the arguments all of them share)."""
    c = sub.add_parser(name, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
                       help=help, description=description, epilog=INPUTS_HELP + "exit status: " + status)
    c.add_argument("target", metavar="MODULE:FUNCTION",
                   help="an importable module or a path/to/file.py, and the function's name")
    c.add_argument("--input", "-i", dest="named_inputs", action="append", default=[],
                   metavar="NAME=VALUE", help="an input given by name (repeatable)")
    c.add_argument("--traceback", action="store_true", help="on an error, show the full traceback")
    return c


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m lagrangeprop`` and its commands."""
    parser = Parser(prog=PROG, allow_abbrev=False,
                    description="Differentiate programs by the method of Lagrange multipliers. "
                                "Without a command: the worked example (the blog function at --x).")
    parser.add_argument("--x", type=finite_float, default=0.5, help="where the demo evaluates (default 0.5)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    d = sub.add_parser("demo", help="the worked example (the default)", allow_abbrev=False,
                       description="Solve the blog example at --x, print every intermediate's value and "
                                   "multiplier and compare the gradient with the hand-derived derivative.")
    d.add_argument("--x", type=finite_float, default=argparse.SUPPRESS, help="where to evaluate (default 0.5)")
    c = _command(sub, "check", "check the gradient of MODULE:FUNCTION against tapes and finite differences",
                 "Trace FUNCTION at the given inputs and check its Lagrange multipliers against\n"
                 "HIPS autograd (tape), PyTorch (tape) and central finite differences.",
                 "0 the check agrees, 1 it disagrees (or solving failed), 2 usage error")
    for flag, dest, kind, default, text in CHECK_OPTIONS:
        c.add_argument(flag, dest=dest, type=kind, default=default, help=text)
    c.add_argument("--verbose", "-v", action="count", default=0,
                   help="report each stage on stderr (a progress bar when tqdm is installed); "
                        "-vv also every finite difference")
    g = _command(sub, "draw", "draw the constraint graph of MODULE:FUNCTION, solved, to a picture",
                 "Trace FUNCTION at the given inputs, solve it and draw the constraint graph with\n"
                 "each node's value z and multiplier λ (needs matplotlib:\n"
                 "pip install lagrangeprop[plot]).",
                 "0 the picture is written, 1 solving failed, 2 usage error (matplotlib missing included)")
    g.add_argument("--output", "-o", default="graph.png", metavar="PATH",
                   help="the picture to write; its extension picks the format (default graph.png)")
    g.add_argument("--no-values", action="store_true", help="draw the graph only, without solving")
    g.add_argument("--no-constants", action="store_true", help="hide the constant nodes")
    g.add_argument("--title", default=None, help="the title (default: the program name, output and KKT residuals)")
    g.add_argument("--dpi", type=integer, default=150, help="resolution of the picture (default 150)")
    for flag, dest, kind, default, text in SOLVE_OPTIONS:
        g.add_argument(flag, dest=dest, type=kind, default=default, help=text)
    _command(sub, "source", "print the generated forward and multiplier program of MODULE:FUNCTION",
             "Trace FUNCTION at the given inputs and print prog.source(): the forward pass\n"
             "(one statement per constraint) and the multiplier back-substitution (one per\n"
             "edge, in reverse topological order), each line commented with its equation.",
             "0 printed, 2 usage error")
    parser.commands = sub.choices   # name -> its parser (main reads each command's flags)
    return parser


# ---------------------------------------------------------------------- the commands
def _traced(args: argparse.Namespace, pairs: list[tuple[str, str]], options: set[str]):
    """``(program, inputs)``: FUNCTION traced and compiled at the inputs; UsageError if it cannot be."""
    from .program import trace

    inputs = read_inputs(args.named_inputs, pairs)
    f = load_function(args.target)
    signature_inputs(f, inputs, options)
    try:
        prog = trace(f, **inputs)
        prog.compile()
    except Exception as exc:
        if args.traceback:
            raise
        raise UsageError(f"tracing {args.target} raised {type(exc).__name__}: {one_line(exc)} "
                         "(--traceback shows where)") from None
    return prog, inputs


def _solve_options(args: argparse.Namespace, prog) -> dict:
    """``seed``, ``guess`` and the block options, checked against the traced program (UsageError)."""
    from .options import SolveOptions
    from .solve.inputs import parse_guess, parse_seed

    try:
        seed = None if args.seed is None else parse_value(args.seed)
    except InputError as exc:
        raise UsageError(f"--seed: {exc}") from None
    try:
        SolveOptions.make(args.tol, args.maxiter, args.method, args.linear_solver)
        sched = prog.compile()
        if seed is not None:
            parse_seed(sched, seed)
        parse_guess(sched, args.guess)
    except LagrangePropError as exc:
        raise UsageError(one_line(exc)) from None
    return dict(seed=seed, guess=args.guess, tol=args.tol, maxiter=args.maxiter, method=args.method,
                linear_solver=args.linear_solver)


def _failed(args: argparse.Namespace, exc: Exception) -> int:
    """A failure while solving: one line on stderr and exit status 1 (``--traceback`` re-raises)."""
    if args.traceback:
        raise exc
    print(f"{PROG} {args.command}: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
    return 1


def run_check(args: argparse.Namespace, pairs: list[tuple[str, str]]) -> int:
    """The ``check`` command: 0 the check agrees, 1 it disagrees or fails; UsageError on bad usage."""
    from .crosscheck.check import check
    from .options import check_options

    against = tuple(a.strip() for a in args.against.split(",") if a.strip())
    try:
        check_options(against=against, rtol=args.rtol, fd_rtol=args.fd_rtol, atol=args.atol,
                      rng=args.rng, fd_max_elements=args.fd_max_elements)
    except InputError as exc:
        raise UsageError(one_line(exc)) from None
    options = {dest for _, dest, *_ in CHECK_OPTIONS} | {"verbose"}
    prog, inputs = _traced(args, pairs, options)
    solve = _solve_options(args, prog)
    try:
        report = check(prog, inputs, against=against, rtol=args.rtol, fd_rtol=args.fd_rtol, atol=args.atol,
                       rng=args.rng, fd_max_elements=args.fd_max_elements, verbose=args.verbose, **solve)
    except Exception as exc:
        return _failed(args, exc)
    print(report)
    return 0 if report.ok else 1


def run_draw(args: argparse.Namespace, pairs: list[tuple[str, str]]) -> int:
    """The ``draw`` command: 0 the picture is written, 1 solving failed; UsageError on bad usage."""
    from pathlib import Path

    from .viz import draw

    try:
        import matplotlib  # noqa: F401 - optional; checked before any work
    except ImportError:
        raise UsageError("draw needs matplotlib, which is not installed: pip install lagrangeprop[plot] "
                         "(or: pip install matplotlib)") from None
    out = Path(args.output)
    if not out.parent.is_dir():
        raise UsageError(f"-o {args.output}: no such directory {str(out.parent)!r}")
    options = {dest for _, dest, *_ in SOLVE_OPTIONS} | {"output", "no_values", "no_constants", "title", "dpi"}
    prog, inputs = _traced(args, pairs, options)
    sol = None
    if not args.no_values:
        solve = _solve_options(args, prog)
        try:
            sol = prog.solve(**inputs, **solve)
        except Exception as exc:
            return _failed(args, exc)
    try:
        path = draw(prog, sol, path=str(out), constants=not args.no_constants, title=args.title, dpi=args.dpi)
    except (ImportError, OSError, ValueError) as exc:   # no matplotlib, an unwritable path, a bad format
        if args.traceback:
            raise
        raise UsageError(f"draw -o {args.output}: {one_line(exc)}") from None
    print(f"wrote {path} ({prog.graph.number_of_nodes()} nodes{'' if sol is None else ', solved'})")
    return 0


def run_source(args: argparse.Namespace, pairs: list[tuple[str, str]]) -> int:
    """The ``source`` command: print ``prog.source()``; UsageError on bad usage."""
    prog, _ = _traced(args, pairs, set())
    print(prog.source())
    return 0


RUN: dict[str, Callable] = {"check": run_check, "draw": run_draw, "source": run_source}


# ----------------------------------------------------------------------------- main
def _command_at(argv: list[str]) -> int | None:
    """The position of the command in ``argv`` (after the top-level options), or None."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] == "--x" else 1
    return i if i < len(argv) and argv[i] in RUN else None


def main(argv: list[str] | None = None) -> int:
    """``python -m lagrangeprop [--x X] | demo | check | draw | source ...`` -> exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        pairs: list[tuple[str, str]] = []
        at = _command_at(argv)
        if at is not None:   # --NAME VALUE inputs: every flag the command does not know
            command = parser.commands[argv[at]]
            rest, pairs = split_inputs(argv[at + 1:], set(command._option_string_actions))
            argv = argv[:at + 1] + rest
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:   # --help
            return int(exc.code or 0)
        if args.command in RUN:
            return RUN[args.command](args, pairs)
        try:
            return demo(args.x)
        except LagrangePropError as exc:
            raise UsageError(one_line(exc)) from None
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def main_check(argv: list[str]) -> int:
    """``python -m lagrangeprop check ARGV...`` -> exit status (for tests and scripts)."""
    return main(["check", *argv])


if __name__ == "__main__":
    sys.exit(main())
