"""The benchmark harness: timing, rounds, subprocess isolation, the table and the JSON.

It knows nothing of the programs: a case is a function ``build(system)`` returning an object
with ``grad()`` and ``fwd()`` callables (plus optional ``flat``, ``compile_s``, ``note``, ``warmup``), or
None ("n/a"); the cases live in ``benchmarks/cases/``.

- :func:`measure`: timeit-style median seconds per call (samples of >= 2 ms, gc off);
- :func:`run_one`: one system on one program in this process (times, cold first call, peak memory,
  gradient);
- :func:`run_child`: the same in a fresh process (``run.py --child``), for memory and cold calls;
- :func:`run_program`: every system, ``rounds`` times interleaved, medians per system;
- :func:`table_rows`, :func:`print_table`, :func:`write_json`: the report.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

RUN_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run.py")
# = cases.common.PEERS (the harness imports no case)
PEERS = ("jax", "jax-unrolled", "casadi", "openmdao", "floor", "chord-splu")


# =================================================================== measuring
def flat(g: Any) -> np.ndarray:
    """A gradient (dict by name, tuple, tensor or array) as one flat float64 vector."""
    if isinstance(g, dict):
        return np.concatenate([flat(g[k]) for k in sorted(g)])
    if isinstance(g, (tuple, list)):
        return np.concatenate([flat(v) for v in g])
    if hasattr(g, "detach"):
        return g.detach().numpy().astype(np.float64).ravel()
    return np.ravel(np.asarray(g, dtype=np.float64))


def measure(fn: Callable[[], Any], budget: float) -> float:
    """Median seconds per call: a warm-up, then ``repeat`` samples of ``number`` calls each."""
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    if first >= budget:          # one call already exceeds the budget: it is the sample
        return first
    number = int(min(10_000, max(1, 2e-3 / max(first, 1e-9))))
    repeat = int(min(25, max(3, budget / (first * number))))
    samples = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            t = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - t) / number)
    finally:
        gc.enable()
    return statistics.median(samples)


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _peak_mb(fn: Callable[[], Any]) -> tuple[float | None, Any]:
    """Peak resident memory (MB) one call adds over what is resident before it, and its result."""
    try:
        gc.collect()
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")     # reset VmHWM to the current RSS
        base = _rss_kb("VmRSS")
        out = fn()
        return (_rss_kb("VmHWM") - base) / 1024.0, out
    except OSError:
        return None, fn()


# what each system imports, imported before its cold call is timed (the cold call is the
# trace/compile + first gradient of the program, not the package's import)
PACKAGES = {"lagrangeprop": ("lagrangeprop",), "autograd": ("autograd",), "torch": ("torch",),
            "jax": ("jax",), "jax-unrolled": ("jax",), "casadi": ("casadi",), "openmdao": ("openmdao.api",)}


def preimport(system: str) -> None:
    """Import ``system``'s packages (ImportError when one is not installed)."""
    import importlib
    for mod in PACKAGES.get(system, ()):
        if mod == "jax":   # one thread, float64: before jax's first use (cases/peers.jax_module)
            os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
        importlib.import_module(mod)


def run_one(build: Callable[[str], Any], system: str, budget: float, memory: bool, single: bool = False,
            grad_path: str | None = None, timings: bool = True) -> dict:
    """One system on one program in this process: ``status``, ``grad_s``, ``fwd_s``, ``peak_mb``,
    ``note``, ``compile_s`` and the flat gradient (``grad``, or saved to ``grad_path``).

    ``single``: the first (cold) gradient call is the measurement (and a second, warm one in the note).
    ``cold_s``: building the implementation (trace, compile, jit, setup) + its first gradient call."""
    try:
        preimport(system)
    except ImportError:
        pass          # build() says "n/a" for this program, or raises it again: "not installed"
    try:
        t0 = time.perf_counter()
        impl = build(system)
        build_s = time.perf_counter() - t0
    except ImportError as exc:
        return {"status": f"not installed ({exc.name})"}
    if impl is None:
        return {"status": "n/a"}
    res: dict = {"status": "ok", "note": impl.note, "compile_s": impl.compile_s}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            peak, g = _peak_mb(impl.grad) if memory else (None, impl.grad())
            res["cold_s"] = build_s + time.perf_counter() - t   # trace/compile + first gradient
            if impl.warmup is not None and timings and not single:
                impl.warmup()
            if single:
                res["grad_s"], res["fwd_s"] = time.perf_counter() - t, None
                t = time.perf_counter()      # and a second (warm) call
                impl.grad()
                warm = fmt_t(time.perf_counter() - t)
                res["note"] = (impl.note + "; " if impl.note else "") + f"cold call; 2nd call {warm}"
            elif timings:
                res["grad_s"] = measure(impl.grad, budget)
                res["fwd_s"] = measure(impl.fwd, budget)
    except Exception as exc:   # report, keep going with the other systems
        return {"status": f"error: {type(exc).__name__}: {str(exc)[:120]}"}
    res["peak_mb"] = peak
    g = (impl.flat or flat)(g)
    if grad_path:
        np.save(grad_path, g)
    else:
        res["grad"] = g
    return res


def run_child(name: str, system: str, budget: float, timeout: float, peak_only: bool = False) -> dict:
    """:func:`run_one` in a fresh process (its peak memory is this system's alone)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "grad.npy")
        cmd = [sys.executable, RUN_PY, "--child", name, system, "--budget", str(budget),
               "--grad-out", path] + (["--peak-only"] if peak_only else [])
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": f"timeout (> {timeout:.0f} s for the whole measurement)"}
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            return {"status": f"error: {tail[:120]}"}
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        if os.path.exists(path):
            res["grad"] = np.load(path)
        return res


def run_program(name: str, build: Callable[[str], Any], systems: list[str], *, rounds: int, budget: float,
                timeout: float, memory: bool, single: bool) -> dict:
    """Every system on program ``name``: system -> result, times the median of ``rounds`` rounds
    (the systems interleaved); progress lines on stderr."""
    per: dict = {}
    for rnd in range(1 if single else rounds):
        for system in systems:
            if single:                # one cold call per system, each in a fresh process
                per[system] = run_child(name, system, budget, timeout * 3)
            elif rnd == 0:            # times in this one process; peak memory in a process of its own
                per[system] = run_one(build, system, budget, memory=False)
                per[system]["rounds"] = [(per[system].get("grad_s"), per[system].get("fwd_s"))]
                if memory and per[system]["status"] == "ok":   # and the cold call in a fresh process
                    mem = run_child(name, system, budget, timeout, peak_only=True)
                    per[system]["peak_mb"] = mem.get("peak_mb") if mem["status"] == "ok" else None
                    per[system]["cold_s"] = mem.get("cold_s", per[system].get("cold_s"))
            elif per[system]["status"] == "ok":   # another round, interleaved with the other systems
                again = run_one(build, system, budget, memory=False)
                if again["status"] == "ok":
                    per[system]["rounds"].append((again["grad_s"], again["fwd_s"]))
            print(f"  {name:16s} {system:13s} {per[system]['status']}", file=sys.stderr, flush=True)
    for r in per.values():    # the median round (by gradient time) of each system
        done = [x for x in r.pop("rounds", []) if x[0] is not None]
        if len(done) > 1:
            r["grad_s"], r["fwd_s"] = statistics.median(x[0] for x in done), \
                statistics.median(x[1] for x in done)
    return per


# =================================================================== the report
def fmt_t(s: float | None) -> str:
    """Seconds as µs / ms / s."""
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def table_rows(name: str, per: dict) -> list[tuple]:
    """The table's rows of one program; ``err`` against numpy's gradient (else lagrangeprop's)."""
    ref = per.get("numpy", {}).get("grad")
    if ref is None:
        ref = per.get("lagrangeprop", {}).get("grad")
    lp_t = per.get("lagrangeprop", {}).get("grad_s")
    rows = []
    for system, r in per.items():
        if r["status"] == "n/a" and system in PEERS:   # the compiled peers cover a few programs
            continue
        if r["status"] != "ok":
            rows.append((name, system, r["status"], "", "", "", "", "", "", ""))
            continue
        err = "-"
        g = r.get("grad")
        if ref is not None and g is not None and g.shape == ref.shape:
            err = f"{np.max(np.abs(g - ref)) / max(1e-300, np.max(np.abs(ref))):.0e}"
        elif g is not None and ref is not None:
            err = "shape!"
        ratio = f"{lp_t / r['grad_s']:.2f}" if lp_t else "-"
        peak = "-" if r.get("peak_mb") is None else f"{r['peak_mb']:.0f}"
        gf = f"{r['grad_s'] / r['fwd_s']:.2f}" if r.get("fwd_s") else "-"
        rows.append((name, system, fmt_t(r["grad_s"]), fmt_t(r.get("fwd_s")), gf, ratio,
                     fmt_t(r.get("cold_s")), peak, err, r.get("note") or ""))
    return rows


def print_table(rows: list[tuple]) -> None:
    """The aligned table, a blank line between programs."""
    head = ("program", "system", "grad", "fwd", "grad/fwd", "lp/sys", "cold", "peak MB", "err", "note")
    widths = [max(len(str(r[k])) for r in [head, *rows]) for k in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print(line)
    prev = None
    for r in rows:
        if prev is not None and r[0] != prev:
            print()
        prev = r[0]
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def print_compile_times(results: dict) -> None:
    """lagrangeprop's trace + compile time per program, under the table."""
    for name, per in results.items():
        c = per.get("lagrangeprop", {}).get("compile_s")
        if c is not None:
            print(f"  lagrangeprop trace+compile {name}: {fmt_t(c)}")


def write_json(path: str, results: dict) -> None:
    """Every result but the gradients, as JSON: program -> system -> fields."""
    with open(path, "w") as fh:
        json.dump({n: {s: {k: v for k, v in r.items() if k != "grad"} for s, r in p.items()}
                   for n, p in results.items()}, fh, indent=1, default=float)
