"""numpy functions over traced values: elementwise functions beyond basic arithmetic
(the ufunc families, piecewise and integer-valued ops, %).

Each function records primitives of the rules layer (or expands into existing ones, a
composite) and registers itself in :data:`~lagrangeprop.graph.var.HANDLED_FUNCTIONS`
(numpy's dispatch) and, where ndarray has the method, in
:data:`~lagrangeprop.graph.var.METHODS`.
"""

from __future__ import annotations

__all__: list[str] = []
