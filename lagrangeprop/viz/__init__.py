"""Drawings of programs and solutions: DOT text, layout, matplotlib figures (matplotlib optional).

- :mod:`.labels`: what a node shows (name, op, ``z``, ``λ``) and its colours;
- :mod:`.layout`: the cyclic blocks (the compiler's rule) and the layered layout;
- :mod:`.dot`: Graphviz DOT text (:func:`to_dot`, also ``prog.to_dot()``);
- :mod:`.figure`: the matplotlib drawing (:func:`draw`, also ``lp.draw``).
"""

from .dot import to_dot
from .figure import draw
from .labels import _fmt  # noqa: F401 - the label text of a value, for tests that compare labels
from .layout import graph_blocks, layered_layout

__all__ = ["draw", "graph_blocks", "layered_layout", "to_dot"]
