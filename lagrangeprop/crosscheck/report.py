"""The result of :func:`~lagrangeprop.check`: :class:`CheckReport` and its table.

``str(report)`` is an OpenMDAO ``check_totals``-style table (input, reference, lagrangian,
reference value, errors, ok), the random-direction line of autograd's ``check_grads``
("lagrangian: …  tape: …  finite difference: …"), the per-node multiplier summary and,
for cyclic programs, the unrolled iteration's convergence; ``report.ok`` is the verdict.

Examples
--------
>>> report = CheckReport(program="p", output="o", output_shape=(), seed_note=None,
...                      inputs={"x": 0.5}, references={}, rtol=1e-8, fd_rtol=1e-5, atol=None,
...                      rows=[], direction=None, multipliers={}, multiplier_summary={},
...                      convergence=[], value=None, notes=[], evaluations=0, ok=False)
>>> report.failures, repr(report)
([], "CheckReport(program='p', ok=False, references=[])")
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CheckReport"]


def _fmt(v: Any, width: int = 10) -> str:
    """A number to `width` significant digits, a tiny array in full, else its shape and norm."""
    if v is None:
        return "-"
    v = np.asarray(v, dtype=np.float64)
    if v.ndim == 0:
        return f"{float(v):.{width}g}"
    if v.size <= 3:
        return "[" + ", ".join(f"{float(t):.6g}" for t in v.ravel()) + "]"
    return f"|{v.shape}|={float(np.linalg.norm(v)):.6g}"


class CheckReport:
    """The result of :func:`~lagrangeprop.check`: per-input rows, the direction check, the multipliers.

    Attributes
    ----------
    ok : bool
        True iff every reference that ran agrees: tapes to ``rtol`` (inputs and every
        multiplier), finite differences to ``fd_rtol`` (plus their rounding noise).
    rows : list of dict
        One per input: ``input, shape, lagrangian, autograd, torch, fd, fd_mode,
        abs_error, rel_error, ok`` (errors keyed by reference).
    references : dict
        Reference name -> what was used, or why it was skipped.
    """

    def __init__(self, **fields: Any):
        self.__dict__.update(fields)

    # -- verdicts
    @property
    def failures(self) -> list[str]:
        """One line per failed comparison, naming the input or node."""
        out = []
        for r in self.rows:
            for ref, cmp in r["compare"].items():
                if not cmp["ok"]:
                    out.append(f"input {r['input']!r}: {ref} differs (abs error {cmp['abs']:.2e}, "
                               f"rel error {cmp['rel']:.2e})")
        if self.direction:
            for ref, cmp in self.direction["compare"].items():
                if not cmp["ok"]:
                    out.append(f"random direction over all inputs: {ref} differs "
                               f"(rel error {cmp['rel']:.2e})")
        for ref, m in self.multiplier_summary.items():
            for node in m["failed"]:
                c = self.multipliers[node][ref]
                out.append(f"multiplier of node {node!r}: {ref} differs (rel error {c['rel']:.2e})")
        if self.value and not self.value["ok"]:
            out.append(f"output value differs from the tape (rel error {self.value['rel']:.2e})")
        return out

    def to_dict(self) -> dict:
        """A JSON-friendly dict of everything in the report."""
        def clean(o: Any) -> Any:
            if isinstance(o, dict):
                return {str(k): clean(v) for k, v in o.items()}
            if isinstance(o, (list, tuple)):
                return [clean(v) for v in o]
            if isinstance(o, np.ndarray):
                return o.tolist()
            if isinstance(o, (np.floating, np.bool_, np.integer)):
                return o.item()
            return o
        keys = ("ok", "program", "output", "seed_note", "references", "rtol", "fd_rtol", "atol",
                "rows", "direction", "multipliers", "multiplier_summary", "convergence", "value", "notes")
        return clean({k: getattr(self, k) for k in keys} | {"failures": self.failures})

    def __repr__(self) -> str:
        return f"CheckReport(program={self.program!r}, ok={self.ok}, references={list(self.references)})"

    def __str__(self) -> str:
        return _format(self)


def _table(rows: list[tuple]) -> list[str]:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _format(r: CheckReport) -> str:
    """check_totals-style table: input, reference, lagrangian, reference value, errors, ok."""
    shape = "scalar" if r.output_shape == () else f"shape {r.output_shape}"
    inputs = ", ".join(f"{k}={_fmt(v, 6)}" for k, v in r.inputs.items())
    lines = [f"lp.check: program {r.program!r}, output {r.output!r} ({shape}), at {inputs}"]
    if r.seed_note:
        lines.append(r.seed_note)
    lines.append("references:")
    width = max(len(k) for k in r.references) if r.references else 0
    lines += [f"  {k.ljust(width)}  {v}" for k, v in r.references.items()]
    lines += [f"  note: {n}" for n in r.notes]
    table = [("input", "reference", "lagrangian", "reference value", "abs error", "rel error", "ok")]
    for row in r.rows:
        for ref, c in row["compare"].items():
            key = {"autograd (tape)": "autograd", "torch (tape)": "torch"}.get(ref, "fd")
            label, lag = ref, row["lagrangian"]
            if key == "fd" and row["fd_mode"] == "direction":
                label, lag = ref + " <.,v>", c["lagrangian"]
            elif key == "fd" and row["fd_mode"] not in ("elementwise",):
                label = f"{ref} ({row['fd_mode']})"
            table.append((row["input"], label, _fmt(lag), _fmt(row[key]), f"{c['abs']:.1e}",
                          f"{c['rel']:.1e}", "ok" if c["ok"] else "FAIL"))
    if len(table) > 1:
        lines += [""] + _table(table)
    if r.direction:
        d = r.direction
        parts = [f"lagrangian: {d['lagrangian']:.12g}"]
        parts += [f"{b} tape: {d[b]:.12g}" for b in ("autograd", "torch") if b in d]
        if "fd" in d:
            parts.append(f"finite difference: {d['fd']:.12g}")
        bad = [k for k, c in d["compare"].items() if not c["ok"]]
        lines += ["", "random direction v over all inputs (|v| = 1), <gradient, v>:",
                  "  " + "  ".join(parts) + ("  FAIL: " + ", ".join(bad) if bad else "  ok")]
    if r.multiplier_summary or r.value:
        lines.append("")
    for ref, m in r.multiplier_summary.items():
        status = "ok" if not m["failed"] else f"FAIL at {m['failed'][:6]}"
        worst = (f" (closest to its tolerance: node {m['worst']!r}, rel error {m['worst_rel']:.1e})"
                 if m["worst"] is not None else "")
        lines.append(f"multipliers of {m['nodes']} defined nodes vs {ref}, each on its own scale: "
                     f"max rel error {m['max_rel']:.1e}{worst}  {status}")
    if r.value:
        lines.append(f"output <seed, z_o>: lagrangian {r.value['lagrangian']:.12g}, {r.value['reference']} "
                     f"{r.value['tape']:.12g}  {'ok' if r.value['ok'] else 'FAIL'}")
    if r.convergence:
        lines += ["", f"unrolled block iteration on the {r.convergence[0]['backend']} vs the multipliers:"]
        lines += ["  " + s for s in _table([("Newton iterations", "max rel error of the gradient")]
                                           + [(str(c["iterations"]), f"{c['rel_error']:.1e}")
                                              for c in r.convergence])]
    lines.append("")
    used = [k for k, v in r.references.items() if not v.startswith(("not installed", "skipped", "failed"))]
    if r.ok:
        lines.append(f"OK: the multipliers agree with {', '.join(used) or 'nothing (no reference ran)'} "
                     f"(tapes rtol {r.rtol:g}, finite differences rtol {r.fd_rtol:g})")
    else:
        lines.append("FAILED:")
        lines += [f"  {f}" for f in r.failures]
    return "\n".join(lines)
