"""A program's schedule, compiled on first use and kept until its graph is edited.

SPEC §2: a Program may be solved many times without re-tracing, and editing
``prog.graph`` after the first solve recompiles, never solves the old graph. The
schedule is reused only while ``prog.graph`` is the graph it was compiled from, unedited:
networkx mutators clear the stamp left in ``G.__networkx_cache__``, and attribute edits
count in the graph's :class:`~lagrangeprop.graph.tracked.Attrs` dicts (both O(1)). A
plain ``nx.DiGraph`` assigned to ``prog.graph`` is fingerprinted instead (O(nodes)).
The builder drops the kept schedule itself whenever it adds to the graph.

Examples
--------
>>> import lagrangeprop as lp
>>> from lagrangeprop.compile.cache import compiled
>>> prog = lp.trace(lambda x: lp.exp(x) + x, x=0.0)
>>> compiled(prog) is compiled(prog)
True
>>> prog.graph.nodes["exp_0"]["op"] = "sin"      # an edit: compiled again
>>> [s.prim.name for s in compiled(prog).steps]
['sin', 'add']
"""

from __future__ import annotations

from ..graph.builder import ProgramBuilder
from ..graph.trace import paused_gc
from ..graph.tracked import STAMP, TrackedDiGraph, fingerprint, own_params, unedited_since
from ..rules import registry
from .schedule import Schedule, compile_program

__all__ = ["compiled"]


def compiled(prog: ProgramBuilder) -> Schedule:
    """Validate and schedule ``prog`` (:func:`~lagrangeprop.compile.schedule.compile_program`),
    or return the schedule kept from its last compile while its graph is unedited."""
    s = prog._schedule
    if s is not None and not _unedited(prog):
        s = prog._schedule = None
    if s is None:
        G = prog.graph
        with paused_gc():
            if type(G) is TrackedDiGraph:
                own_params(G)
            s = prog._schedule = compile_program(prog, traced=_as_traced(prog))
            token = object()
            cache = G.__dict__.get("__networkx_cache__")
            if cache is None:
                cache = G.__networkx_cache__ = {}
            cache[STAMP] = token
            prog._stamp = (G, token, G._edits[0] if type(G) is TrackedDiGraph else fingerprint(G))
            prog._ops_version = registry.VERSION[0]
    return s


def _unedited(prog: ProgramBuilder) -> bool:
    """``prog.graph`` is the compiled graph, with no edit since, and its ops are current."""
    G = prog.graph
    stamp = prog._stamp
    if stamp is None or stamp[0] is not G:
        return False
    cache = G.__dict__.get("__networkx_cache__")
    if not cache or cache.get(STAMP) is not stamp[1]:
        return False
    if type(G) is TrackedDiGraph:
        if G._edits[0] != stamp[2]:
            return False
    elif fingerprint(G) != stamp[2]:
        return False
    if prog._ops_version != registry.VERSION[0]:
        # an op was registered since: the schedule's ops must still be the registry's
        if any(registry.REGISTRY.get(st.prim.name) is not st.prim
               for st in prog._schedule.step_of.values()):
            return False
        prog._ops_version = registry.VERSION[0]
    return True


def _as_traced(prog: ProgramBuilder) -> bool:
    """``prog.graph`` is as ``lp.trace`` left it: no edit since and no op registered since."""
    t = getattr(prog, "_traced", None)
    return t is not None and t[1] == registry.VERSION[0] and unedited_since(prog.graph, t[0])
