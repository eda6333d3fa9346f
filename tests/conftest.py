"""Shared fixtures: seeded randomness and the --slow flag."""

import numpy as np
import pytest


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="run slow tests and more hypothesis examples")


def pytest_configure(config):
    from hypothesis import settings
    settings.register_profile("ci", max_examples=100, deadline=None)
    settings.register_profile("slow", max_examples=1000, deadline=None)
    settings.load_profile("slow" if config.getoption("--slow") else "ci")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    """A seeded numpy Generator, fresh for every test."""
    return np.random.default_rng(20261123)


@pytest.fixture
def wrong_exp():
    """The registry's exp with derivative rules ×1.001 (a deliberately wrong rule that every check
    must catch, as autograd's test_tests.py); restored after the test."""
    from lagrangeprop.rules import registry
    from lagrangeprop.rules.registry import Primitive
    original = registry.REGISTRY["exp"]

    def scaled(rule):
        def wrong(*args):
            out = rule(*args)
            return None if out is None else out * 1.001
        return wrong

    registry.REGISTRY["exp"] = Primitive("exp", original.fn, nargs=1, vjp=scaled(original.vjp_rule),
                                           jvp=scaled(original.jvp_rule), jac=scaled(original.jac_rule),
                                           curvature=original.curvature, shape_rule=original.shape_rule,
                                           tape=original.tape)
    yield
    registry.REGISTRY["exp"] = original
