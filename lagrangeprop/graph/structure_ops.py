"""numpy functions over traced values: array structure (tril, diag,
repeat, tile, pad, roll, flip, split, stacking, expand_dims, squeeze, moveaxis, ...).

Each function records primitives of the rules layer (or expands into existing ones, a
composite) and registers itself in :data:`~lagrangeprop.graph.var.HANDLED_FUNCTIONS`
(numpy's dispatch) and, where ndarray has the method, in
:data:`~lagrangeprop.graph.var.METHODS`.
"""

from __future__ import annotations

__all__: list[str] = []
