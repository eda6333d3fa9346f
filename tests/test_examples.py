"""Every script in examples/ runs as a script, quickly, prints one verdict and saves a picture."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    pytest.importorskip("matplotlib")
    env = {**os.environ, "MPLBACKEND": "Agg", "LAGRANGEPROP_QUICK": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    verdicts = [line for line in proc.stdout.splitlines() if line.startswith(("OK", "FAILED", "MISMATCH"))]
    assert len(verdicts) == 1, f"{script.name} printed {len(verdicts)} verdict lines: {verdicts}"
    assert verdicts[0].startswith("OK: ") and len(verdicts[0]) > 10, verdicts[0]
    pictures = list(tmp_path.glob("*.png"))
    assert pictures, f"{script.name} saved no picture"
    assert all(p.stat().st_size > 10_000 for p in pictures), pictures   # a real figure, not an empty canvas


def test_readme_lists_every_example():
    readme = (ROOT / "README.md").read_text()
    missing = [p.stem for p in EXAMPLES if f"`{p.stem}`" not in readme]
    assert not missing, f"README.md's examples list lacks {missing}"


def test_demo_main():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's package
    proc = subprocess.run([sys.executable, "-m", "lagrangeprop"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "OK: the multiplier equals the analytic derivative" in proc.stdout
