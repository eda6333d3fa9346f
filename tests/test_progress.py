"""Progress of ``lp.check`` (issue 15): ``callback=`` gets one Stage per unit of work, ``verbose=``
shows them (a tqdm bar when tqdm is installed, lines on stderr otherwise); silent by default."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

import lagrangeprop as lp
from lagrangeprop.crosscheck.finite_differences import fd_plan
from lagrangeprop.crosscheck.progress import STAGES, Progress, Stage
from programs import sellar_program


def f(x, y):
    return lp.sum(lp.exp(x) * y) + x ** 2


INPUTS = {"x": 0.5, "y": np.linspace(0.0, 1.0, 30)}


def test_callback_sees_every_stage_in_order():
    seen: list[Stage] = []
    report = lp.check(f, dict(INPUTS), against=("autograd", "fd"), callback=seen.append)
    assert report.ok
    stages = [s.stage for s in seen]
    assert stages[:3] == ["compile", "solve", "tape"] and seen[2].detail == "autograd"
    assert stages[-1] == "done" and set(stages) <= set(STAGES)
    # one report per central difference: x per element (1 entry), y along a direction, one joint direction
    plan = fd_plan({k: np.asarray(v) for k, v in INPUTS.items()}, 12, 24)
    assert plan == {"x": "elementwise", "y": "direction"}
    fd = [s for s in seen if s.stage == "finite differences"]
    assert [s.detail for s in fd] == ["x", "y", "along a random direction over all inputs"]
    done = [s.done for s in seen]
    assert done == sorted(done) and done[-1] == seen[-1].total == len(seen) - 1   # "done" adds no unit
    assert all(s.elapsed >= 0 for s in seen)


def test_per_element_differences_are_each_reported():
    seen: list[Stage] = []
    lp.check(f, {"x": 0.5, "y": np.array([1.0, 2.0, 3.0])}, against=("fd",), callback=seen.append)
    fd = [s.detail for s in seen if s.stage == "finite differences"]
    assert fd == ["x", "y[0]", "y[1]", "y[2]", "along a random direction over all inputs"]
    assert not any(s.stage == "tape" and s.detail == "autograd" for s in seen)


def test_cyclic_program_reports_each_unrolled_tape_replay():
    seen: list[Stage] = []
    inputs = dict(x=1.0, z=np.array([5.0, 2.0]))
    report = lp.check(sellar_program(), inputs, guess={"y1": 1.0, "y2": 1.0}, against=("autograd",),
                      callback=seen.append)
    replays = [s for s in seen if s.stage == "convergence"]
    assert len(replays) == len(report.convergence) > 0
    assert [r["iterations"] for r in report.convergence] == [int(s.detail.split()[-2]) for s in replays]


def test_progress_changes_nothing_in_the_report():
    quiet = lp.check(f, dict(INPUTS))
    loud = lp.check(f, dict(INPUTS), callback=lambda s: None)
    assert str(quiet) == str(loud)


def test_silent_by_default(capsys):
    lp.check(f, dict(INPUTS), against=("autograd", "fd"))
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_verbose_without_tqdm_prints_lines_on_stderr(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)      # as if tqdm were not installed
    lp.check(f, {"x": 0.5, "y": np.arange(40.0)}, against=("fd",), fd_max_elements=40, fd_budget=100, verbose=True)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and lines[0].startswith("lp.check: compile f") and lines[-1].startswith("lp.check: done")
    fd = [line for line in lines if line.startswith("lp.check: finite differences")]
    assert 3 <= len(fd) < 42        # per chunk of the 42 differences, not one line each
    lp.check(f, {"x": 0.5, "y": np.arange(40.0)}, against=("fd",), fd_max_elements=40, fd_budget=100, verbose=2)
    fd = [line for line in capsys.readouterr().err.splitlines() if "finite differences" in line]
    assert len(fd) == 42            # -vv: every difference (x, y[0..39], the joint direction)


class FakeBar:
    """A stand-in for ``tqdm.tqdm`` that records what it is told (``FakeBar.made``)."""

    made: list = []

    def __init__(self, total=0, **kw):
        self.total, self.n, self.kw, self.descriptions, self.closed = total, 0, kw, [], False
        FakeBar.made.append(self)

    def update(self, k):
        self.n += k

    def refresh(self):
        pass

    def set_description_str(self, text, refresh=True):
        self.descriptions.append(text)

    def close(self):
        self.closed = True


@pytest.fixture
def fake_tqdm(monkeypatch):
    """tqdm "installed" as :class:`FakeBar`; the bars made."""
    FakeBar.made = []
    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeBar))
    return FakeBar.made


def test_verbose_uses_tqdm_when_installed(fake_tqdm, capsys):
    bars = fake_tqdm
    seen: list[Stage] = []
    lp.check(f, dict(INPUTS), against=("autograd", "fd"), verbose=1, callback=seen.append)
    (bar,) = bars
    assert bar.closed and bar.n == bar.total == seen[-1].total
    assert bar.descriptions[0].startswith("lp.check: compile") and "lp.check: finite differences y" in bar.descriptions
    assert capsys.readouterr().err == ""     # the bar, not lines


def test_a_failing_check_closes_the_bar(fake_tqdm):
    bars = fake_tqdm
    seen: list[Stage] = []
    with pytest.raises(lp.NonFiniteError):
        lp.check(lambda x: lp.sqrt(x), {"x": -1.0}, verbose=True, callback=seen.append)
    assert bars[0].closed and [s.stage for s in seen] == ["compile"]


@pytest.mark.parametrize("bad", [{"verbose": -1}, {"verbose": "yes"}, {"verbose": 0.5}, {"callback": 3}])
def test_bad_progress_options_raise(bad):
    with pytest.raises(lp.InputError, match="verbose|callback"):
        lp.check(f, dict(INPUTS), **bad)


def test_tqdm_is_not_imported_with_the_package():
    code = "import sys, lagrangeprop; print('tqdm' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_progress_lines_alone():
    seen = []
    p = Progress(callback=seen.append)
    p.expect(3)
    for k in range(3):
        p.step("finite differences", f"x[{k}]")
    p.close()
    assert [s.line().split(" [")[0] for s in seen] == [
        "lp.check: finite differences x[0]", "lp.check: finite differences x[1]",
        "lp.check: finite differences x[2]", "lp.check: done"]
    assert [(s.done, s.total) for s in seen] == [(1, 3), (2, 3), (3, 3), (3, 3)]
