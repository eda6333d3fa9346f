"""Root conftest: skip doctests of optional-dependency modules when they are absent."""

import importlib.util

collect_ignore = []
if importlib.util.find_spec("matplotlib") is None:
    collect_ignore.append("lagrangeprop/viz/draw.py")
