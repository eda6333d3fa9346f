"""Every script in examples/ runs as a script, quickly, and exits 0."""

import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "LAGRANGEPROP_QUICK": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip(), f"{script.name} printed nothing"


def test_demo_main():
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).parent.parent)}  # this checkout's package
    proc = subprocess.run([sys.executable, "-m", "lagrangeprop"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "OK: the multiplier equals the analytic derivative" in proc.stdout
