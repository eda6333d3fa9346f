"""The benchmark scripts stay runnable and their systems agree (timings are never asserted).

The agreement is the benchmark's own ``err`` column: every system's gradient against the
hand-written numpy one (or lagrangeprop's where there is none).
"""

import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")


def test_run_py_quick_subset_agrees(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, os.path.join(BENCH, "run.py"), "--quick", "--only", "blog", "--only", "sellar",
           "--only", "bratu-100", "--systems", "lagrangeprop,autograd,numpy", "--budget", "0.01",
           "--timeout", "120", "--json", str(out)]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "program" in proc.stdout and "lagrangeprop" in proc.stdout
    res = json.loads(out.read_text())
    assert set(res) == {"blog", "sellar", "bratu-100"}
    for name, per in res.items():
        assert per["lagrangeprop"]["status"] == "ok", (name, per["lagrangeprop"])
        assert per["numpy"]["status"] == "ok", (name, per["numpy"])
    # the table's err column: every gradient against the hand-written one
    errs = [line.split() for line in proc.stdout.splitlines() if line.startswith(("blog ", "sellar ", "bratu-100 "))]
    assert len(errs) >= 7              # lagrangeprop + numpy on 3 programs, autograd on 2 (no sparse solve)
    for row in errs:
        if "n/a" in row:
            continue
        err = next(tok for tok in row if "e-" in tok or tok == "0e+00")
        assert float(err) < 1e-8, row


def test_fixed_point_cold_script_checks_its_gradients():
    sys.path.insert(0, BENCH)
    try:
        import fixed_point_cold
    finally:
        sys.path.remove(BENCH)
    times = fixed_point_cold.main(300, samples=3)     # asserts lagrangeprop == autograd per sample
    assert set(times) == {"lp solve, new x (cold)", "lp solve, same x (warm)", "lp evaluate (forward)",
                          "autograd fixed_point grad"}
    assert all(np.isfinite(t) and t > 0 for t in times.values())
