"""The generated program as text: readable source, and the compiled functions that run.

:func:`source` renders a schedule's statements (:mod:`~lagrangeprop.compile.codegen`) with
the graph's node names, one constraint or one multiplier equation per line, each commented
with the equation it satisfies. :func:`build` renders the same statements with positional
locals (``v0 = V[I[0]]``), so that chunks of the same shape are one function; it compiles the
distinct ones with Python's own ``compile`` (one call for all of them) and caches them
across schedules. Neither executes anything but the generated code: the helpers it calls
(``_apply``, ``_pull``, ``_pooled``, ...) come from the solve layer's namespace.

Examples
--------
>>> import lagrangeprop as lp
>>> text = source(lp.trace(lambda x: lp.exp(x) * 2.0, x=0.0))
>>> print(text.split("def forward")[1].splitlines()[3])
    exp_0 = _exp(x)   # c_exp_0 = 0:  exp_0 = exp(x)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .cache import compiled
from .codegen import BlockRun, Chunk, Code, generate
from .schedule import Schedule
from .statements import _finite_test
from .tangents import tangent_statements

__all__ = ["HEADER", "Compiled", "Linker", "source", "build", "render_chunk", "tested"]

HEADER = '''"""{name}: the method of Lagrange multipliers as straight-line code (lagrangeprop).

The program is a set of constraints c_d = z_d - f_d(z_pa(d)) = 0, one per defined node,
and the Lagrangian is
    L(x, z, λ) = z_out - Σ_d λ_d · c_d(z, x).
forward:  ∂L/∂λ_d = 0 for every d, i.e. every constraint holds: z_d = f_d(...) in
          topological order (a cyclic block's constraints are solved together).
adjoint:  ∂L/∂z_u = 0 for every u, i.e. λ_u = [u = out] + Σ_d (∂f_d/∂z_u)ᵀ λ_d: the
          multipliers by back-substitution in reverse topological order. For an input x,
          λ_x = ∂L/∂x = ∇_x z_out: the multipliers are the gradient.
tangent:  A ż = -(∂c/∂x) ẋ, i.e. ż_d = Σ_u (∂f_d/∂z_u) ż_u in topological order: forward
          mode, the tangents of every node for the inputs' tangents ẋ (L[i] holds ż_i).
V[i] / L[i] hold the value / multiplier of node i (None: identically zero); B is the
buffer pool of large results. Python floats and math serve scalar nodes, numpy arrays.
"""
'''


@dataclass(eq=False)
class Compiled:
    """The runs of a compiled program: ``(function, I, K)`` per chunk, a Block between."""

    forward: list = field(default_factory=list)
    adjoint: list = field(default_factory=list)
    functions: int = 0          # distinct compiled functions this program uses
    bufs: list = field(default_factory=list)       # the kernels' buffer pool (compile.buffers)
    scalar_ids: list = field(default_factory=list)  # finite checks, as Plan's fields (less
    small_ids: list = field(default_factory=list)   # the scalars whose chunk tests them itself)
    array_ids: list = field(default_factory=list)
    lam_ids: list = field(default_factory=list)     # multipliers no adjoint chunk tests itself
    plain: bool = False          # Python floats only: no numpy call, so no np.errstate needed
    tangents: dict = field(default_factory=dict)   # seeded inputs -> a compiled tangent pass


class _Renderer:
    """Locals, loads and stores of one function (``named``: node names and literals)."""

    def __init__(self, code: Code, sched: Schedule, named: bool, prefix: str = "lam_") -> None:
        self.code, self.sched, self.named = code, sched, named
        taken = set(code.names)
        self.lnames = [_free(prefix + n, taken) for n in code.names] if named else []
        self.consts = dict(sched.constants) if named else {}
        self.I: list[int] = []
        self.K: list = []
        self.objects: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        self.vloc: dict[int, tuple[str, str]] = {}
        self.lloc: dict[int, str] = {}
        self.loads: list[str] = []
        self.wv: list[int] = []
        self.wl: list[int] = []

    def index(self, n: int) -> str:
        if self.named:
            return str(n)
        self.I.append(n)
        return f"I[{len(self.I) - 1}]"

    def value(self, n: int, kind: str, written: bool) -> str:
        if written:
            name = self.code.names[n] if self.named else f"v{len(self.vloc)}"
            self.vloc[n] = (name, kind)
            self.wv.append(n)
            return name
        if n not in self.vloc:
            c = self.consts.get(n, None) if self.named else None
            if kind == "f" and isinstance(c, float) or getattr(c, "shape", None) == () and kind == "f":
                text = repr(float(c))
                return f"({text})" if text.startswith("-") else text
            name = self.code.names[n] if self.named else f"v{len(self.vloc)}"
            ref = f"V[{self.index(n)}]"
            self.loads.append(f"{name} = float({ref})" if kind == "f" else f"{name} = {ref}")
            self.vloc[n] = (name, kind)
        name, have = self.vloc[n]
        if have == kind:
            return name
        return f"_f64({name})" if kind == "n" else f"float({name})"

    def lam(self, n: int, written: bool) -> str:
        if n not in self.lloc:
            self.lloc[n] = self.lnames[n] if self.named else f"l{len(self.lloc)}"
            if written is not True:   # read, or read and written ("rw")
                self.loads.append(f"{self.lloc[n]} = L[{self.index(n)}]")
        if written:
            self.wl.append(n)
        return self.lloc[n]

    def obj(self, o: Any, label: str) -> str:
        if self.named:
            self.objects[label] = o
            return label
        self.K.append(o)
        return f"K[{len(self.K) - 1}]"

    def statement(self, fmt: str, toks: tuple) -> str:
        parts = []
        for t in toks:
            if t[0] == "v":
                parts.append(self.value(t[1], t[2], t[3]))
            elif t[0] == "l":
                parts.append(self.lam(t[1], t[2]))
            else:
                parts.append(self.obj(t[1], t[2]))
        return fmt.format(*parts)

    def stores(self) -> list[str]:
        shapes = self.sched.shapes
        out = []
        for n in dict.fromkeys(self.wv):
            name, kind = self.vloc[n]
            out.append(f"V[{self.index(n)}] = " + (f"_f64({name})" if kind == "f" else name))
        for n in dict.fromkeys(self.wl):
            name = self.lloc[n]
            out.append(f"L[{self.index(n)}] = " + (f"None if {name} is None else _f64({name})"
                                                    if shapes[n] == () else name))
        return out


def render_chunk(chunk: Chunk, code: Code | None, sched: Schedule, test: str = "") -> tuple[str, list, list]:
    """The positional text of one chunk's function body, its node ids ``I`` and objects ``K``
    (:class:`_Renderer`'s template mode, written out: it runs once per chunk of a large program).
    ``test="values"`` / ``"lams"``: the function returns whether the Python-float values (the
    scalar multipliers) it wrote are all finite (:func:`_finite_test`); the caller's scan then
    skips them."""
    shapes = sched.shapes
    vloc: dict[int, tuple[str, str]] = {}
    lloc: dict[int, str] = {}
    loads: list[str] = []
    body: list[str] = []
    ids: list[int] = []
    objs: list = []
    wv: list[int] = []
    wl: list[int] = []
    for fmt, toks, _ in chunk.statements:
        parts = []
        for t in toks:
            k = t[0]
            if k == "v":
                n, kind = t[1], t[2]
                if t[3]:
                    name = f"v{len(vloc)}"
                    vloc[n] = (name, kind)
                    wv.append(n)
                    parts.append(name)
                    continue
                e = vloc.get(n)
                if e is None:
                    name = f"v{len(vloc)}"
                    ids.append(n)
                    ref = f"V[I[{len(ids) - 1}]]"
                    loads.append(f"{name} = float({ref})" if kind == "f" else f"{name} = {ref}")
                    e = vloc[n] = (name, kind)
                name, have = e
                parts.append(name if have == kind else (f"_f64({name})" if kind == "n" else f"float({name})"))
            elif k == "l":
                n, written = t[1], t[2]
                name = lloc.get(n)
                if name is None:
                    name = lloc[n] = f"l{len(lloc)}"
                    if written is not True:
                        ids.append(n)
                        loads.append(f"{name} = L[I[{len(ids) - 1}]]")
                if written:
                    wl.append(n)
                parts.append(name)
            else:
                objs.append(t[1])
                parts.append(f"K[{len(objs) - 1}]")
        body.append(fmt.format(*parts))
    for n in dict.fromkeys(wv):
        name, kind = vloc[n]
        ids.append(n)
        body.append(f"V[I[{len(ids) - 1}]] = " + (f"_f64({name})" if kind == "f" else name))
    for n in dict.fromkeys(wl):
        name = lloc[n]
        ids.append(n)
        body.append(f"L[I[{len(ids) - 1}]] = " + (f"None if {name} is None else _f64({name})"
                                                  if shapes[n] == () else name))
    if test == "values":
        body += _finite_test([vloc[n][0] for n in dict.fromkeys(wv) if vloc[n][1] == "f"], False)
    elif test == "lams":
        body += _finite_test([lloc[n] for n in dict.fromkeys(wl) if shapes[n] == ()], True)
    return "    " + "\n    ".join(loads + body) + "\n", ids, objs


def tested(chunk: Chunk, sched: Schedule, test: str) -> list[int]:
    """The nodes whose values (``"values"``) or multipliers (``"lams"``) the function of
    ``chunk`` tests itself (:func:`render_chunk`): its written Python floats / scalar multipliers."""
    out: dict[int, None] = {}
    for _, toks, _ in chunk.statements:
        for t in toks:
            if test == "values" and t[0] == "v" and t[3] and t[2] == "f":
                out[t[1]] = None
            elif test == "lams" and t[0] == "l" and t[2] and sched.shapes[t[1]] == ():
                out[t[1]] = None
    return list(out)


def _signature(chunk: Chunk, shapes: list) -> tuple[tuple, list[int], list]:
    """What :func:`render_chunk`'s text depends on, with the chunk's nodes numbered locally in
    order of appearance: chunks of equal signatures render to the same text, their ``I`` the
    same local positions of their own nodes. Also those nodes and the chunk's objects ``K``."""
    local: dict[int, int] = {}   # node -> its local number (insertion order: the nodes)
    objs: list = []
    sig: list = []
    for fmt, toks, _ in chunk.statements:
        sig.append(fmt)
        for t in toks:
            if t[0] == "v":    # a value: (j, kind, written)
                sig.append((local.setdefault(t[1], len(local)), t[2], t[3]))
            elif t[0] == "l":  # a multiplier: (j, written, scalar) (render's L store)
                sig.append((local.setdefault(t[1], len(local)), t[2], shapes[t[1]] == ()))
            else:
                objs.append(t[1])
                sig.append(None)
    return tuple(sig), list(local), objs


_CACHE: dict[tuple[int, str], Any] = {}
_CACHE_MAX = 4096


def _compile(todo: dict, key: int, namespace: dict) -> None:
    """Compile the function bodies ``todo`` (not yet cached) in one ``compile`` call."""
    if todo:
        if len(_CACHE) + len(todo) > _CACHE_MAX:
            _CACHE.clear()
        texts = list(todo)
        module = "".join(f"def _c{k}(V, L, I, K, B):\n{t}" for k, t in enumerate(texts))
        ns = dict(namespace)
        exec(compile(module, "<lagrangeprop generated>", "exec"), ns)   # noqa: S102 - our own text
        for k, t in enumerate(texts):
            _CACHE[key, t] = ns[f"_c{k}"]


class Linker:
    """Renders chunks into ``(body, node ids I, objects K)`` as they come (``generate``'s sinks:
    each chunk's statements are dropped once rendered), chunks of one shape once (a long chain's
    are all alike); :func:`build` compiles the bodies. It notes the nodes each chunk tests itself."""

    def __init__(self, sched: Schedule) -> None:
        self.sched = sched
        self.covered: dict[str, set] = {"values": set(), "lams": set()}
        self.rendered: dict[tuple, tuple] = {}   # (test, chunk signature) -> (body, ids, tested), as local ids

    def sinks(self) -> tuple:
        """The forward's and the adjoint's sink for :func:`~.codegen.generate`."""
        return (lambda chunk: self.link(chunk, "values")), (lambda chunk: self.link(chunk, "lams"))

    def link(self, chunk: Chunk, test: str) -> tuple:
        sig, nodes, objs = _signature(chunk, self.sched.shapes)
        hit = self.rendered.get((test, sig))
        if hit is None:
            body, ids, _ = render_chunk(chunk, None, self.sched, test)
            local = {n: j for j, n in enumerate(nodes)}
            hit = self.rendered[test, sig] = (body, [local[n] for n in ids],
                                              [local[n] for n in tested(chunk, self.sched, test)])
        body, ids, checks = hit
        self.covered[test].update([nodes[j] for j in checks])
        return body, tuple([nodes[j] for j in ids]), tuple(objs)


def build(code: Code, sched: Schedule, namespace: dict, linker: Linker | None = None) -> Compiled:
    """Compile ``code``'s chunks (the distinct ones not yet cached: one ``compile`` call); ``linker``:
    the one ``code`` was generated with (its chunks already rendered), else a new one."""
    linker = linker or Linker(sched)
    runs: dict[str, list] = {"forward": [], "adjoint": []}
    todo: dict[str, None] = {}
    key = id(namespace)
    covered = linker.covered
    for what, test in (("forward", "values"), ("adjoint", "lams")):
        for run in getattr(code, what):
            if run.__class__ is BlockRun:
                runs[what].append(run.block)
                continue
            if run.__class__ is Chunk:
                run = linker.link(run, test)
            if (key, run[0]) not in _CACHE:
                todo[run[0]] = None
            runs[what].append(run)
    _compile(todo, key, namespace)
    done = covered["values"]
    for run in code.adjoint:
        if run.__class__ is BlockRun:
            # a block's pull-back writes its members' multipliers and adds to its outside arguments'
            # after their chunks tested them: those are scanned (the block writes nothing else)
            covered["lams"].difference_update(run.block.nodes)
            covered["lams"].difference_update(u for st in run.block.steps for _, u in st.diff)
    out = Compiled(bufs=code.plan.bufs, scalar_ids=[i for i in code.scalar_ids if i not in done],
                   small_ids=code.small_ids, array_ids=code.array_ids,
                   lam_ids=[i for i in range(len(sched.names)) if i not in covered["lams"]],
                   plain=code.math_steps == len(code.scalar_ids) + len(code.small_ids) + len(code.array_ids)
                   and not any(r.__class__ is BlockRun for r in code.forward))
    used = set()
    for what in ("forward", "adjoint"):
        for run in runs[what]:
            if run.__class__ is tuple:
                fn = _CACHE[key, run[0]]
                used.add(id(fn))
                run = (fn, run[1], run[2])
            getattr(out, what).append(run)
    out.functions = len(used)
    return out


def _free(name: str, taken: set) -> str:
    """``name``, or ``name_`` ... when a node's own name is already ``name``."""
    while name in taken:
        name += "_"
    return name


_BLOCK_LINES = {
    "forward": "_block_forward({label}, V, opts, guess, states)"
               "   # c_S(z_S; z_outside) = 0 for S = {{{members}}}: solved together",
    "adjoint": "_block_adjoint({label}, V, L, states, opts)"
               "   # A_SSᵀ λ_S = b_S for S = {{{members}}}, then λ_S to the arguments",
    "tangent": "_block_tangent({label}, V, L, states, opts)"
               "   # A_SS ż_S = b_S for S = {{{members}}}: b_S from the tangents outside",
}


def _named(code: Code, sched: Schedule, what: str, runs: list | None = None) -> tuple[list[str], dict]:
    """The named lines of the forward, adjoint or tangent function, blocks in between."""
    r = _Renderer(code, sched, named=True, prefix="dot_" if what == "tangent" else "lam_")
    lines: list[str] = []
    body: list[str] = []

    def flush() -> None:
        lines.extend(r.loads + body + r.stores())
        body.clear()
        r.reset()

    for run in getattr(code, what) if runs is None else runs:
        if run.__class__ is BlockRun:
            flush()
            members = ", ".join(run.block.names)
            label = "block_" + "_".join(code.names[n] for n in run.block.nodes)
            r.objects[label] = run.block
            lines.append(_BLOCK_LINES[what].format(label=label, members=members))
            continue
        for fmt, toks, comment in run.statements:
            body.append(f"{r.statement(fmt, toks)}   # {comment}")
    flush()
    return lines, r.objects


def source(prog_or_schedule, objects: dict | None = None) -> str:
    """The generated module of a program (or its schedule) as readable text.

    ``objects``, when given, receives the objects the text names (``step_*``, ``pull_*``,
    ``block_*``) so that the text can be executed as it reads.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> text = source(lp.trace(lambda x: lp.sin(x) * x, x=1.0))
    >>> [line.split("#")[0].strip() for line in text.splitlines() if "lam_x" in line][:2]
    ['lam_x = lam_out * sin_0', 'lam_x = lam_x + lam_sin_0 * _cos(x)']
    """
    sched = prog_or_schedule if isinstance(prog_or_schedule, Schedule) else compiled(prog_or_schedule)
    code = generate(sched, comments=True)
    name = getattr(prog_or_schedule, "name", None) or "program"
    out = [HEADER.format(name=name)]
    for what, sig in (("forward", "V, B, opts, guess, states"), ("adjoint", "V, L, B, opts, states")):
        lines, objs = _named(code, sched, what)
        if objects is not None:
            objects.update(objs)
        doc = ("the constraints, in topological order: ∂L/∂λ = 0" if what == "forward" else
               "the multipliers, in reverse topological order: ∂L/∂z = 0")
        out.append(f"\ndef {what}({sig}):\n    \"\"\"{doc}\"\"\"\n    " + "\n    ".join(lines) + "\n")
    lines, objs = _named(code, sched, "tangent", tangent_statements(sched, sched.inputs, code.names, True))
    if objects is not None:
        objects.update(objs)
    doc = "the tangents, in topological order: A ż = -(∂c/∂x) ẋ"
    out.append(f"\ndef tangent(V, L, B, opts, states):\n    \"\"\"{doc}\"\"\"\n    " + "\n    ".join(lines) + "\n")
    return "".join(out)

