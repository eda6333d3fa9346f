"""``python -m lagrangeprop``: exit 0 when the check agrees, 1 when it disagrees (or solving
fails), 2 on a usage error, with a one-line message and no traceback (SPEC §2); the same for
``draw`` and ``source``.

Every test runs the CLI in a subprocess with this checkout's package on PYTHONPATH."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import lagrangeprop as lp

ROOT = pathlib.Path(lp.__file__).resolve().parent.parent

MODULE = '''
import numpy as np
import lagrangeprop as lp


def f(x, y):
    return lp.sum(lp.exp(x) * y) + x ** 2


# a deliberately wrong user rule: d exp(x)/dx reported as 1.01 exp(x)
WRONG = lp.primitive("cli_wrong_exp", lambda x: np.exp(x), vjp=lambda g, ans, x: (1.01 * ans * g,))
RIGHT = lp.primitive("cli_right_exp", lambda x: np.exp(x), vjp=lambda g, ans, x: (ans * g,))


def wrong(x):
    return WRONG(x) * 2.0


def right(x):
    return RIGHT(x) * 2.0


def vec(x):
    return x * 2.0


def domain(x):
    return lp.sqrt(x)


def boom(x):
    return 1 / 0


def untraceable(x):
    return np.exp(x, dtype=np.float32)


def uses_rtol(rtol):
    return rtol * 3.0


NOT_A_FUNCTION = 3
'''


@pytest.fixture
def cli(tmp_path):
    (tmp_path / "cli_mod.py").write_text(MODULE)
    (tmp_path / "broken_mod.py").write_text("def f(x:\n")
    (tmp_path / "raising_mod.py").write_text("raise RuntimeError('import-time failure')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(*args: str, status: int | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "lagrangeprop", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert "Traceback" not in proc.stderr + proc.stdout or "--traceback" in args, proc.stderr
        if status is not None:
            assert proc.returncode == status, (proc.returncode, proc.stdout[-2000:], proc.stderr)
        return proc
    return run


def test_demo_is_the_readme_first_command(cli):
    proc = cli(status=0)
    assert "OK: the multiplier equals the analytic derivative" in proc.stdout
    proc = cli("--x", "0.7", status=0)
    assert "at x = 0.7" in proc.stdout
    assert "at x = 0.7" in cli("demo", "--x", "0.7", status=0).stdout


def test_help_lists_every_option(cli):
    top = cli("--help", status=0).stdout
    assert "check" in top and "demo" in top and "--x" in top
    text = cli("check", "--help", status=0).stdout
    for option in ("--rtol", "--fd-rtol", "--atol", "--against", "--rng", "--seed", "--guess", "--tol",
                   "--maxiter", "--method", "--linear-solver", "--fd-max-elements", "--input", "--traceback",
                   "MODULE:FUNCTION", "--NAME VALUE", "exit status"):
        assert option in text, option


def test_agreeing_check_exits_0(cli):
    proc = cli("check", "cli_mod:f", "--x", "0.5", "--y", "[1, 2]", "--against", "autograd,fd", status=0)
    assert "OK" in proc.stdout and "autograd (tape)" in proc.stdout and "finite differences" in proc.stdout
    cli("check", "cli_mod:f", "--x=0.5", "--y", "1,2,3", "--rtol", "1e-9", status=0)       # 1,2,3 and --k=v
    cli("check", "cli_mod:f", "--x", "-0.5", "--input", "y=[1.0]", status=0)                # negative value
    cli("check", "cli_mod.py:right", "--x", "0.25", "--against", "fd", status=0)            # a file path
    cli("check", "cli_mod:vec", "--x", "[1, 2]", "--seed", "[1, -2]", status=0)
    cli("check", "cli_mod:uses_rtol", "--input", "rtol=2.0", status=0)   # an input named like an option


def test_disagreeing_check_exits_1(cli):
    proc = cli("check", "cli_mod:wrong", "--x", "0.5", "--against", "autograd,fd", status=1)
    assert "FAIL" in proc.stdout and "finite differences" in proc.stdout
    assert proc.stderr == ""


USAGE_ERRORS = [
    (["check", "nomod_xyz:f", "--x", "1"], ["cannot import module 'nomod_xyz'"]),
    (["check", "cli_mod:nope", "--x", "1"], ["has no function 'nope'"]),
    (["check", "cli_mod:fx", "--x", "1"], ["has no function 'fx'", "did you mean 'f'"]),
    (["check", "cli_mod:NOT_A_FUNCTION", "--x", "1"], ["not callable"]),
    (["check", "cli_mod", "--x", "1"], ["MODULE:FUNCTION"]),
    (["check", "missing_file.py:f", "--x", "1"], ["no such file"]),
    (["check", "broken_mod:f", "--x", "1"], ["SyntaxError"]),
    (["check", "raising_mod:f", "--x", "1"], ["RuntimeError", "import-time failure"]),
    (["check", "cli_mod:f", "--x", "abc", "--y", "1"], ["--x", "cannot read 'abc'"]),
    (["check", "cli_mod:f", "--x", "__import__('os').getcwd()", "--y", "1"], ["cannot read"]),
    (["check", "cli_mod:f", "--x", "1j", "--y", "1"], ["--x", "complex"]),
    (["check", "cli_mod:f", "--x", "0.5", "--y", "[[1], [1, 2]]"], ["--y", "rectangular"]),
    (["check", "cli_mod:f", "--x", "True", "--y", "1"], ["--x", "boolean"]),
    (["check", "cli_mod:f", "--x", "0.5", "--y", "1", "--rtl", "1e-3"], ["unknown option --rtl",
                                                                        "did you mean --rtol"]),
    (["check", "cli_mod:f", "--x", "0.5", "--y", "1", "--fd_rtol", "1e-3"], ["--fd_rtol", "--fd-rtol"]),
    (["check", "cli_mod:f", "--x", "0.5"], ["missing inputs: ['y']"]),
    (["check", "cli_mod:f", "--x", "0.5", "--y", "1", "--x", "2"], ["--x is given twice"]),
    (["check", "cli_mod:f", "--x"], ["--x needs a value"]),
    (["check"], ["MODULE:FUNCTION"]),
    (["check", "cli_mod:f", "--x", "0.5", "--y", "1", "--rtol", "abc"], ["--rtol", "'abc'"]),
    (["check", "cli_mod:f", "--x", "0.5", "--y", "1", "--rtol", "-1"], ["rtol=-1.0"]),
    (["check", "cli_mod:f", "--x", "0.5", "--y", "1", "--against", "jax"], ["'jax'", "'autograd'"]),
    (["check", "cli_mod:f", "--x", "0.5", "--y", "1", "--method", "nope"], ["method='nope'", "'newton'"]),
    (["check", "cli_mod:f", "--x", "0.5", "--y", "1", "--linear-solver", "lu"], ["'lu'", "'gmres'"]),
    (["check", "cli_mod:f", "--x", "0.5", "--y", "1", "--maxiter", "0"], ["maxiter=0"]),
    (["check", "cli_mod:f", "--x", "0.5", "--y", "1", "--maxiter", "2.5"], ["--maxiter", "'2.5'"]),
    (["check", "cli_mod:f", "--x", "0.5", "--y", "1", "--tol", "2"], ["tol=2.0"]),
    (["check", "cli_mod:f", "--x", "0.5", "--y", "1", "--guess", "[1]"], ["guess must be a dict"]),
    (["check", "cli_mod:f", "--x", "0.5", "--y", "1", "--guess", "{'w': 1.0}"], ["'w'", "no cyclic block"]),
    (["check", "cli_mod:vec", "--x", "[1, 2]", "--seed", "[1, 2, 3]"], ["seed has shape (3,)"]),
    (["check", "cli_mod:vec", "--x", "[1, 2]", "--seed", "abc"], ["--seed", "cannot read 'abc'"]),
    (["check", "cli_mod:f", "--x", "0.5", "--y", "1", "--input", "novalue"], ["NAME=VALUE"]),
    (["--x", "abc"], ["--x", "'abc'"]),
    (["--x", "nan"], ["--x", "'nan'"]),
    (["bogus"], ["invalid choice: 'bogus'"]),
    (["--rtol", "1"], ["invalid choice: '1'"]),
    (["check", "cli_mod:boom", "--x", "0.5"], ["tracing cli_mod:boom raised ZeroDivisionError", "--traceback"]),
    (["draw", "nomod_xyz:f", "--x", "1"], ["cannot import module 'nomod_xyz'"]),
    (["draw", "cli_mod:nope", "--x", "1"], ["has no function 'nope'"]),
    (["draw", "cli_mod:f", "--x", "abc", "--y", "1"], ["--x", "cannot read 'abc'"]),
    (["draw", "cli_mod:f", "--x", "0.5", "--y", "1", "--rtl", "1e-3"], ["unknown option --rtl"]),
    (["draw", "cli_mod:f", "--x", "0.5", "--y", "1", "--dpi", "x"], ["--dpi", "'x'"]),
    (["draw", "cli_mod:f", "--x", "0.5", "--y", "1", "-o", "no_dir/g.png"], ["no such directory"]),
    (["draw", "cli_mod:f", "--x", "0.5", "--y", "1", "-o", "g.notaformat"], ["notaformat"]),
    (["draw", "cli_mod:f", "--x", "0.5", "--y", "1", "--method", "nope"], ["method='nope'"]),
    (["draw", "cli_mod:boom", "--x", "0.5"], ["tracing cli_mod:boom raised ZeroDivisionError"]),
    (["draw", "cli_mod:f", "--x", "0.5"], ["missing inputs: ['y']"]),
    (["source", "nomod_xyz:f", "--x", "1"], ["cannot import module 'nomod_xyz'"]),
    (["source", "cli_mod:f", "--x", "1", "--y", "1", "--rtl", "1e-3"], ["unknown option --rtl"]),
    (["source", "cli_mod:f", "--x", "[1, 'a']", "--y", "1"], ["--x", "real number"]),
    (["source", "cli_mod:untraceable", "--x", "[1, 2]"], ["tracing cli_mod:untraceable raised GraphError",
                                                        "'dtype' is not supported"]),
    (["source"], ["MODULE:FUNCTION"]),
]


def _one_line_usage_error(status: int, out: str, err: str, words: list[str]) -> None:
    err = err.strip()
    assert status == 2, (status, out[-2000:], err)
    assert len(err.splitlines()) == 1, err
    assert err.startswith("python -m lagrangeprop: error: ") and "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    assert out == ""


# each kind in a subprocess (the real interpreter boundary); the whole table in-process below
SUBPROCESS = {k for k, (args, _) in enumerate(USAGE_ERRORS)
              if args[:2] in (["check", "nomod_xyz:f"], ["check", "cli_mod:nope"], ["check", "cli_mod"])
              or args[-2:] in (["--x", "abc"], ["--rtl", "1e-3"], ["--method", "nope"], ["--x", "nan"])
              or args[2:4] in (["--x", "abc"], ["--x", "1j"])
              or args == ["check", "cli_mod:f", "--x", "0.5"] or args == ["bogus"]
              or args[0] in ("draw", "source") and args[1:2] in (["nomod_xyz:f"], ["cli_mod:untraceable"])
              or args[-2:] == ["--rtl", "1e-3"]}


@pytest.mark.parametrize("k", sorted(SUBPROCESS), ids=[" ".join(USAGE_ERRORS[k][0])[:60] for k in sorted(SUBPROCESS)])
def test_usage_error_exits_2_with_one_line(cli, k):
    args, words = USAGE_ERRORS[k]
    proc = cli(*args)
    _one_line_usage_error(proc.returncode, proc.stdout, proc.stderr, words)


@pytest.mark.parametrize("args, words", USAGE_ERRORS, ids=[" ".join(a)[:60] for a, _ in USAGE_ERRORS])
def test_usage_error_table_in_process(cli, tmp_path, monkeypatch, capsys, args, words):
    from lagrangeprop.cli import main
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in ("cli_mod", "broken_mod", "raising_mod"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    status = main(list(args))
    out, err = capsys.readouterr()
    _one_line_usage_error(status, out, err, words)


def test_failure_while_solving_exits_1_tracing_exits_2_with_one_line(cli):
    proc = cli("check", "cli_mod:domain", "--x", "-0.5", status=1)
    assert proc.stderr.count("\n") == 1 and "NonFiniteError" in proc.stderr and "'sqrt'" in proc.stderr
    proc = cli("draw", "cli_mod:domain", "--x", "-0.5", "-o", "d.png", status=1)
    assert proc.stderr.count("\n") == 1 and "NonFiniteError" in proc.stderr and "'sqrt'" in proc.stderr
    proc = cli("check", "cli_mod:boom", "--x", "0.5", status=2)     # a function that cannot be traced
    assert proc.stderr.count("\n") == 1 and "ZeroDivisionError" in proc.stderr and "--traceback" in proc.stderr
    for command in ("check", "draw", "source"):
        proc = cli(command, "cli_mod:boom", "--x", "0.5", "--traceback")
        assert proc.returncode != 0 and "Traceback" in proc.stderr and "ZeroDivisionError" in proc.stderr


def test_in_process_entry_point(tmp_path, capsys):
    """main_check (what scripts import) returns the same exit codes."""
    from lagrangeprop.cli import main_check, parse_value
    path = tmp_path / "inproc_mod.py"
    path.write_text(MODULE.replace("cli_wrong_exp", "inproc_wrong").replace("cli_right_exp", "inproc_right"))
    assert main_check([f"{path}:f", "--x", "0.5", "--y", "1,2", "--against", "fd"]) == 0
    assert main_check([f"{path}:f", "--x", "0.5", "--y", "1", "--rlt", "1"]) == 2
    assert "unknown option --rlt" in capsys.readouterr().err
    assert main_check(["--help"]) == 0
    assert parse_value("[[1, 2], [3, 4]]").tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert parse_value("7") == 7.0 and isinstance(parse_value("7"), float)
    for bad in ("abc", "nan", "[1, 'a']", "{1: 2}", "1j", "open('x')", "[" * 10000):
        with pytest.raises(lp.InputError) as info:
            parse_value(bad)
        assert len(str(info.value)) < 300   # never echoes a huge argument back


def test_help_of_every_command_lists_its_options(cli):
    top = cli("--help", status=0).stdout
    for command in ("demo", "check", "draw", "source"):
        assert command in top
    for command, options in {"draw": ("--output", "-o", "--no-values", "--no-constants", "--title", "--dpi",
                                      "--seed", "--guess", "--tol", "--maxiter", "--method", "--linear-solver"),
                             "source": (), "check": ("--verbose",), "demo": ("--x",)}.items():
        text = cli(command, "--help", status=0).stdout
        for option in options + (() if command == "demo" else ("--input", "--traceback", "MODULE:FUNCTION",
                                                                "--NAME VALUE", "exit status")):
            assert option in text, (command, option)
        assert "``" not in text and ":func:" not in text and ":mod:" not in text   # no raw RST
        # every option has a description next to it
        assert all(line.split()[-1] != "--help" for line in text.splitlines() if line.startswith("  --"))


def test_source_prints_the_generated_multiplier_program(cli):
    proc = cli("source", "cli_mod:f", "--x", "0.5", "--input", "y=[1, 2]", status=0)

    def f(x, y):   # cli_mod.f, traced here: the reference text
        return lp.sum(lp.exp(x) * y) + x ** 2
    assert proc.stdout.strip() == lp.trace(f, x=0.5, y=np.array([1.0, 2.0])).source().strip()
    assert "def adjoint" in proc.stdout and proc.stderr == ""


def test_draw_writes_the_picture(cli, tmp_path):
    pytest.importorskip("matplotlib")
    proc = cli("draw", "cli_mod:f", "--x", "0.5", "--y", "[1, 2]", "-o", "g.png", status=0)
    assert "wrote g.png" in proc.stdout and "solved" in proc.stdout
    png = (tmp_path / "g.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    cli("draw", "cli_mod:f", "--input", "x=0.5", "--y", "1", "--output", "h.svg", "--no-values", "--dpi", "72",
        status=0)
    assert (tmp_path / "h.svg").read_text().lstrip().startswith("<?xml")


def test_draw_without_matplotlib_exits_2_with_the_pip_command(tmp_path, monkeypatch, capsys):
    from lagrangeprop.cli import main
    text = MODULE.replace("cli_wrong_exp", "nompl_w").replace("cli_right_exp", "nompl_r")
    (tmp_path / "nompl_mod.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib -> ImportError
    assert main(["draw", "nompl_mod:f", "--x", "0.5", "--y", "1", "-o", str(tmp_path / "g.png")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "pip install lagrangeprop[plot]" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g.png").exists()


def test_check_verbose_reports_stages_on_stderr(cli):
    proc = cli("check", "cli_mod:f", "--x", "0.5", "--y", "[1, 2]", "--against", "autograd,fd", "--verbose",
               status=0)
    lines = proc.stderr.splitlines()
    assert any(line.startswith("lp.check: compile") for line in lines)
    assert any(line.startswith("lp.check: tape autograd") for line in lines)
    assert any(line.startswith("lp.check: finite differences") for line in lines)
    assert lines[-1].startswith("lp.check: done") and "OK" in proc.stdout
    assert cli("check", "cli_mod:f", "--x", "0.5", "--y", "[1, 2]", "--against", "fd", status=0).stderr == ""
