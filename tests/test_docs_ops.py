"""The op tables of docs/api.md are the registry's (regenerate with ``python docs/gen_ops.py``)."""

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_ops", DOCS / "gen_ops.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_op_tables_match_the_registry():
    gen = _generator()
    text = (DOCS / "api.md").read_text()
    assert gen.updated(text) == text, "docs/api.md's op tables are stale: run python docs/gen_ops.py"


def test_every_primitive_has_every_rule_or_says_why():
    from lagrangeprop.rules.registry import REGISTRY
    for name, p in REGISTRY.items():
        if p.user or not p.differentiable or hasattr(p, "nested"):
            continue
        assert p.vjp_rule is not None and p.jvp_rule is not None, name
        assert p.tape is not None and p.tape.autograd is not None, f"{name}: no autograd tape"


def test_writing_numpy_page_runs_as_written():
    import doctest
    result = doctest.testfile(str(DOCS / "numpy.md"), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 20 and result.failed == 0, result
