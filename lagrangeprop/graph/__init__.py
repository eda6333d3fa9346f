"""Building programs: traced values, the program graph builder, recording, JSON.

Modules, bottom to top: ``arguments`` (numpy argument checks), ``coerce`` (values and
shapes a caller hands in), ``tracked`` (a DiGraph that counts its edits), ``arrays`` and
``validate`` (array data and schema checks), ``serialize`` (JSON), ``var`` (``Var`` and
:func:`~lagrangeprop.graph.var.apply`), ``ops`` (the ``lp.*`` functions), ``builder``
(:class:`~lagrangeprop.graph.builder.ProgramBuilder`), ``trace`` (recording a function).
The public ``lp.Program`` and ``lp.trace`` are in :mod:`lagrangeprop.program`.
"""
