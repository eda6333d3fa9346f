"""Parameter trees through every transform and lp.trace (SPEC §2; issue 13).

Arguments and results may be nested dicts, lists and tuples of arrays and floats: inputs are
named by their paths (``params.W1``, ``layers.0.1``; dict keys sorted), derivatives have the
argument's structure, and HIPS autograd (which takes dict/list/tuple arguments itself) is the
reference for every gradient. Jacobians and Hessians nest as JAX's ``jacrev`` / ``hessian``.
"""

import warnings

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import lagrangeprop as lp
from lagrangeprop.graph.pytree import LEAF, flatten
from lagrangeprop.transforms.cache import traced

warnings.filterwarnings("ignore", message="Output seems independent of input")


def _walk(tree, leaves):
    """JAX's reading (every dict, list and tuple a node), independent of pytree.py:
    the structure as a string, the leaves appended in sorted-key order."""
    if isinstance(tree, dict):
        return "{" + ",".join(f"{k}:{_walk(tree[k], leaves)}" for k in sorted(tree)) + "}"
    if isinstance(tree, (list, tuple)):
        inner = ",".join(_walk(v, leaves) for v in tree)
        return f"[{inner}]" if isinstance(tree, list) else f"({inner})"
    leaves.append(tree)
    return "*"


def _leaves(tree):
    leaves = []
    _walk(tree, leaves)
    return leaves


def assert_tree_close(actual, desired, rtol=1e-10):
    """Same structure (dict keys, list/tuple lengths and kinds), leaves close."""
    a_leaves, d_leaves = [], []
    a_tree, d_tree = _walk(actual, a_leaves), _walk(desired, d_leaves)
    assert a_tree == d_tree, f"structure {a_tree} != {d_tree}"
    for a, d in zip(a_leaves, d_leaves):
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(d, float), rtol=rtol, atol=1e-12)


# ------------------------------------------------------------------ an MLP, two ways
def _mlp_list(np_, layers, x):
    h = x
    for W, b in layers:
        h = np_.tanh(np_.dot(h, W) + b)
    return np_.sum(h ** 2)


def _mlp_dict(np_, params, x):
    h = np_.tanh(np_.dot(x, params["W1"]) + params["b1"])
    return np_.sum(np_.sin(np_.dot(h, params["W2"]) + params["b2"]))


@pytest.fixture
def layers(rng):
    return [(rng.normal(size=(3, 4)), rng.normal(size=4)), (rng.normal(size=(4, 2)), rng.normal(size=2))]


@pytest.fixture
def params(rng):
    return {"W1": rng.normal(size=(3, 4)), "b1": rng.normal(size=4),
            "W2": rng.normal(size=(4, 2)), "b2": 0.3}


def test_mlp_with_a_list_of_layer_tuples_matches_autograd(layers, rng):
    x = rng.normal(size=(5, 3))
    g = lp.grad(lambda ls, x: _mlp_list(np, ls, x))(layers, x)
    assert isinstance(g, list) and all(isinstance(t, tuple) for t in g)
    assert_tree_close(g, autograd.grad(lambda ls, x: _mlp_list(anp, ls, x))(layers, x))
    v, g2 = lp.value_and_grad(lambda ls, x: _mlp_list(np, ls, x))(layers, x)
    assert float(v) == pytest.approx(_mlp_list(np, layers, x), rel=1e-13)
    assert_tree_close(g2, g, rtol=1e-14)


def test_mlp_with_a_dict_matches_autograd(params, rng):
    x = rng.normal(size=(5, 3))
    g = lp.grad(lambda p, x: _mlp_dict(np, p, x))(params, x)
    assert list(g) == ["W1", "W2", "b1", "b2"] and np.ndim(g["b2"]) == 0
    assert_tree_close(g, autograd.grad(lambda p, x: _mlp_dict(anp, p, x))(params, x))
    gx = lp.grad(lambda p, x: _mlp_dict(np, p, x), argnum=1)(params, x)
    np.testing.assert_allclose(gx, autograd.grad(lambda p, x: _mlp_dict(anp, p, x), 1)(params, x),
                               rtol=1e-10)


@pytest.mark.parametrize("argnum", [(0, 2), (2, 0), (1,), (-1, 0)])
def test_argnum_tuples_with_trees(argnum, params, rng):
    x, scale = rng.normal(size=(2, 3)), {"s": 1.5, "t": [0.5, np.array(2.0)]}

    def f(np_, p, x, sc):
        return _mlp_dict(np_, p, x) * sc["s"] + sc["t"][0] * sc["t"][1] ** 2 * np_.sum(x)
    g = lp.grad(lambda p, x, sc: f(np, p, x, sc), argnum=argnum)(params, x, scale)
    assert isinstance(g, tuple) and len(g) == len(argnum)
    ref = tuple(autograd.grad(lambda p, x, sc: f(anp, p, x, sc), k % 3)(params, x, scale) for k in argnum)
    assert_tree_close(g, ref)
    # keywords in any order: argnum names the signature's positions
    g_kw = lp.grad(lambda p, x, sc: f(np, p, x, sc), argnum=argnum)(sc=scale, x=x, p=params)
    assert_tree_close(g_kw, ref)


def test_nested_tuples_lists_and_dicts_and_scalar_leaves():
    tree = {"a": [(1.5, np.array([1.0, 2.0])), {"z": np.eye(2)}], "b": (0.5,)}

    def f(np_, t):
        (s, v), d = t["a"]
        return s ** 2 * np_.sum(v * np_.dot(d["z"], v)) + np_.exp(t["b"][0]) * s
    g = lp.grad(lambda t: f(np, t))(tree)
    assert_tree_close(g, autograd.grad(lambda t: f(anp, t))(tree))
    assert isinstance(g["b"], tuple) and isinstance(g["a"][0], tuple) and isinstance(g["a"], list)


def test_lists_of_numbers_are_one_array_and_tuples_are_trees():
    g = lp.grad(lambda x: lp.sum(x * x))([1.0, 2.0])          # numpy's array_like: one input
    assert isinstance(g, np.ndarray) and g.tolist() == [2.0, 4.0]
    g = lp.grad(lambda t: t[0] * t[1] ** 2)((3.0, 2.0))
    assert isinstance(g, tuple) and [float(v) for v in g] == [4.0, 12.0]
    g = lp.grad(lambda t: lp.sum(t[0]) * t[1])([np.ones(2), 2.0])   # holds an array: a tree
    assert isinstance(g, list) and g[0].tolist() == [2.0, 2.0] and float(g[1]) == 2.0
    assert lp.grad(lambda p, x: x * 2.0)({}, 1.0) == {}


# ------------------------------------------------------------------ jacobian, jvp, vjp with trees
def _two_outputs(np_, p):
    return {"y": np_.tanh(np_.dot(p["W"], p["v"])), "z": (np_.sum(p["v"] ** 3) * p["c"],)}


@pytest.fixture
def small(rng):
    return {"W": rng.normal(size=(2, 3)), "v": rng.normal(size=3), "c": 0.7}


@pytest.mark.parametrize("mode", ["auto", "forward", "reverse"])
def test_jacobian_of_a_tree_result_is_nested_like_jacrev(mode, small):
    J = lp.jacobian(lambda p: _two_outputs(np, p), mode=mode)(small)
    assert list(J) == ["y", "z"] and isinstance(J["z"], tuple)
    assert J["y"]["W"].shape == (2, 2, 3) and J["z"][0]["v"].shape == (3,) and J["z"][0]["c"].shape == ()
    for out_path, pick in [("y", lambda o: o["y"]), ("z", lambda o: o["z"][0])]:
        for k in small:
            def part(leaf, k=k, pick=pick):
                return pick(_two_outputs(anp, {**small, k: leaf}))
            ref = autograd.jacobian(part)(np.asarray(small[k], float))
            got = J[out_path][k] if out_path == "y" else J["z"][0][k]
            np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_jacobian_argnum_tuple_and_array_results(rng):
    x, y = rng.normal(size=3), {"a": rng.normal(size=2)}
    J = lp.jacobian(lambda x, y: (lp.reshape(x, (3, 1)) * y["a"]).ravel(), argnum=(0, 1))(x, y)
    assert isinstance(J, tuple) and J[0].shape == (6, 3) and J[1]["a"].shape == (6, 2)
    np.testing.assert_allclose(J[0], autograd.jacobian(lambda x: anp.outer(x, y["a"]).ravel())(x))
    np.testing.assert_allclose(J[1]["a"], autograd.jacobian(lambda a: anp.outer(x, a).ravel())(y["a"]))


def test_vjp_of_tree_arguments_and_results_matches_autograd(small, rng):
    value, vjp_fn = lp.vjp(lambda p, s: (_two_outputs(np, p)["y"] * s, _two_outputs(np, p)["z"]), small, 2.0)
    ref_value = _two_outputs(np, small)
    assert_tree_close(value, (ref_value["y"] * 2.0, ref_value["z"]), rtol=1e-14)
    g = (rng.normal(size=2), (1.3,))
    cot = vjp_fn(g)
    assert isinstance(cot, tuple) and len(cot) == 2
    # the VJP is the gradient of <g, f(p)> (autograd: grad of the scalar pairing)
    ref = autograd.grad(lambda p: anp.dot(g[0], _two_outputs(anp, p)["y"] * 2.0)
                        + g[1][0] * _two_outputs(anp, p)["z"][0])(small)
    assert_tree_close(cot[0], ref)
    np.testing.assert_allclose(float(cot[1]), float(np.dot(g[0], value[0] / 2.0)), rtol=1e-12)


def test_jvp_with_trees_agrees_with_vjp_and_finite_differences(small, rng):
    t = {"W": rng.normal(size=(2, 3)), "v": rng.normal(size=3), "c": -0.4}
    value, tangent = lp.jvp(lambda p: _two_outputs(np, p), (small,), (t,))
    assert list(tangent) == ["y", "z"] and tangent["y"].shape == (2,) and np.ndim(tangent["z"][0]) == 0
    assert_tree_close(value, _two_outputs(np, small), rtol=1e-14)
    h = 1e-6
    plus = _two_outputs(np, {k: small[k] + h * t[k] for k in small})
    minus = _two_outputs(np, {k: small[k] - h * t[k] for k in small})
    fd = {"y": (plus["y"] - minus["y"]) / (2 * h), "z": ((plus["z"][0] - minus["z"][0]) / (2 * h),)}
    assert_tree_close(tangent, fd, rtol=1e-6)
    u = {"y": rng.normal(size=2), "z": (0.9,)}      # <u, J t> = <Jᵀu, t>
    _, vjp_fn = lp.vjp(lambda p: _two_outputs(np, p), small)
    lhs = sum(np.sum(a * b) for a, b in zip(_leaves(u), _leaves(tangent)))
    rhs = sum(np.sum(a * b) for a, b in zip(_leaves(vjp_fn(u)[0]), _leaves(t)))
    assert lhs == pytest.approx(rhs, rel=1e-12)


# ------------------------------------------------------------------ hessian and hvp with trees
def _quartic(np_, p):
    return np_.sum(p["a"] ** 2 * np_.sin(p["b"][0])) + p["b"][1] ** 3 * np_.sum(p["a"])


@pytest.fixture
def quartic_point():
    return {"a": np.array([0.5, -1.0, 2.0]), "b": (0.3, 1.2)}


def test_hessian_of_a_tree_is_nested_like_jax(quartic_point):
    H = lp.hessian(lambda p: _quartic(np, p))(quartic_point)
    assert list(H) == ["a", "b"] and list(H["a"]) == ["a", "b"] and isinstance(H["b"], tuple)
    assert H["a"]["a"].shape == (3, 3) and H["a"]["b"][0].shape == (3,) and H["b"][1]["a"].shape == (3,)
    flat = np.concatenate([quartic_point["a"], quartic_point["b"]])

    def f_flat(z):
        return _quartic(anp, {"a": z[:3], "b": (z[3], z[4])})
    ref = autograd.hessian(f_flat)(flat)
    np.testing.assert_allclose(H["a"]["a"], ref[:3, :3], rtol=1e-10)
    np.testing.assert_allclose(H["a"]["b"][0], ref[:3, 3], rtol=1e-10)
    np.testing.assert_allclose(H["b"][1]["a"], ref[4, :3], rtol=1e-10)
    np.testing.assert_allclose(float(H["b"][0]["b"][1]), ref[3, 4], rtol=1e-10)


def test_hvp_of_a_tree_matches_autograd(quartic_point):
    v = {"a": np.array([1.0, 0.5, -2.0]), "b": (0.25, -1.0)}
    hv = lp.hvp(lambda p: _quartic(np, p), quartic_point, v)
    ref = autograd.grad(lambda p: sum(anp.sum(g * d) for g, d in zip(
        _leaves_ag(autograd.grad(lambda q: _quartic(anp, q))(p)), _leaves(v))))(quartic_point)
    assert_tree_close(hv, ref)
    with pytest.raises(lp.InputError, match="direction v"):
        lp.hvp(lambda p: _quartic(np, p), quartic_point, {"a": v["a"]})


def _leaves_ag(tree):   # autograd's containers (its dict/tuple boxes) in our leaf order
    return [tree["a"], tree["b"][0], tree["b"][1]]


# ------------------------------------------------------------------ lp.trace and prog.solve
def test_trace_names_inputs_by_path_and_solve_takes_the_tree(layers, params, rng):
    x = rng.normal(size=(2, 3))
    prog = lp.trace(lambda layers, x: _mlp_list(np, layers, x), layers, x)
    inputs = [n for n in prog.graph if prog.graph.nodes[n]["role"] == "input"]
    assert inputs == ["layers.0.0", "layers.0.1", "layers.1.0", "layers.1.1", "x"]
    by_tree = prog.solve(layers=layers, x=x)
    by_name = prog.solve(**{"layers.0.0": layers[0][0], "layers.0.1": layers[0][1],
                            "layers.1.0": layers[1][0], "layers.1.1": layers[1][1]}, x=x)
    ref = autograd.grad(lambda ls: _mlp_list(anp, ls, x))(layers)
    for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        np.testing.assert_allclose(by_tree.grad[f"layers.{i}.{j}"], ref[i][j], rtol=1e-10)
        np.testing.assert_array_equal(by_tree.grad[f"layers.{i}.{j}"], by_name.grad[f"layers.{i}.{j}"])
    assert lp.check(prog, layers=layers, x=x).ok

    dprog = lp.trace(lambda params, x: _mlp_dict(np, params, x), params=params, x=x)
    assert sorted(dprog.compile().input_names) == ["params.W1", "params.W2", "params.b1", "params.b2", "x"]
    reordered = dict(reversed(list(params.items())))       # insertion order does not matter
    assert float(dprog.evaluate(params=reordered, x=x)) == pytest.approx(_mlp_dict(np, params, x), rel=1e-13)


def test_solve_rejects_a_mismatched_tree(params, rng):
    x = rng.normal(size=(2, 3))
    prog = lp.trace(lambda params, x: _mlp_dict(np, params, x), params, x)
    with pytest.raises(lp.InputError, match=r"missing \['params.b2'\]"):
        prog.solve(params={k: v for k, v in params.items() if k != "b2"}, x=x)
    with pytest.raises(lp.InputError, match=r"unexpected \['params.W3'\]"):
        prog.solve(params={**params, "W3": 1.0}, x=x)
    with pytest.raises(lp.InputError, match="both by name and inside the tree"):
        prog.solve({"params.W1": params["W1"]}, params=params, x=x)
    with pytest.raises(lp.InputError, match="has shape"):
        prog.solve(params={**params, "b1": np.ones(3)}, x=x)
    with pytest.raises(lp.InputError, match="rectangular"):
        lp.trace(lambda x: x * 2.0, x=1.0).evaluate(x=[[1.0], [2.0, 3.0]])   # not a tree


def test_trace_of_a_tuple_or_dict_result(small):
    prog = lp.trace(lambda p: _two_outputs(np, p), p=small)
    out = prog.evaluate(p=small)
    assert_tree_close(out, _two_outputs(np, small), rtol=1e-14)
    assert prog.compile().shapes[prog.compile().output] == (3,)        # y (2,) then z (1,)
    sol = prog.solve(p=small, seed={"y": np.array([1.0, 0.0]), "z": (0.0,)})
    ref = autograd.grad(lambda p: _two_outputs(anp, p)["y"][0])(small)
    np.testing.assert_allclose(sol.grad["p.W"], ref["W"], rtol=1e-10)
    # a list of traced values is still one array, as numpy reads it
    assert lp.trace(lambda x: [x, 2.0 * x], x=np.ones(2)).evaluate(x=np.ones(2)).shape == (2, 2)


# ------------------------------------------------------------------ the cache sees the structure
def test_the_cache_is_keyed_by_structure():
    program_for = traced(lambda p: sum(v ** 2 for v in p.values()))
    prog_ab = program_for({"a": 1.0, "b": 2.0})[0]
    assert program_for({"b": 5.0, "a": 1.0})[0] is prog_ab          # same keys: same program
    assert program_for({"a": 1.0, "c": 2.0})[0] is not prog_ab       # other keys: another trace
    assert program_for({"a": 1.0})[0] is not prog_ab
    by_kind = traced(lambda p: p[0] * p[1])
    assert by_kind([1.0, np.array(2.0)])[0] is not by_kind((1.0, np.array(2.0)))[0]

    df = lp.grad(lambda p: sum(v ** 2 * (i + 1) for i, v in enumerate(p.values())))
    assert {k: float(v) for k, v in df({"a": 1.0, "b": 1.0}).items()} == {"a": 2.0, "b": 4.0}
    assert {k: float(v) for k, v in df({"a": 1.0, "c": 1.0}).items()} == {"a": 2.0, "c": 4.0}
    dl = lp.grad(lambda ls: sum(lp.sum(v) for v in ls))
    assert len(dl([np.ones(2), np.ones(3)])) == 2 and len(dl([np.ones(2), np.ones(3), np.ones(1)])) == 3


# ------------------------------------------------------------------ a cyclic block with tree inputs
def _implicit(p, x):
    """w solves w³ + a·w − x = 0 (a residual block), then o = Σ b·w."""
    prog = p["a"].program
    w = prog.variable("w", shape=(2,))
    prog.residual(w, w ** 3 + p["a"] * w - x)
    return lp.sum(lp.tanh(w) * p["b"][0] + p["b"][1] * w ** 2)


@pytest.mark.parametrize("linear_solver", [None, "gmres"])
def test_a_cyclic_block_with_tree_inputs_follows_the_implicit_function_theorem(linear_solver):
    p, x = {"a": 2.0, "b": (np.array([1.0, 3.0]), 0.5)}, np.array([1.0, 2.0])
    prog = lp.trace(_implicit, p, x)
    assert prog.blocks and prog.blocks[0] >= {"w"}
    sol = prog.solve(p=p, x=x, linear_solver=linear_solver, tol=1e-13)
    w = sol.values["w"]
    # IFT: dw/dx = 1/(3w² + a), dw/da = -w/(3w² + a); do/dw = b0 sech²w + 2 b1 w
    dodw = p["b"][0] / np.cosh(w) ** 2 + 2 * p["b"][1] * w
    np.testing.assert_allclose(sol.grad["x"], dodw / (3 * w ** 2 + p["a"]), rtol=1e-9)
    np.testing.assert_allclose(float(sol.grad["p.a"]), np.sum(dodw * -w / (3 * w ** 2 + p["a"])), rtol=1e-9)
    np.testing.assert_allclose(sol.grad["p.b.0"], np.tanh(w), rtol=1e-9)
    g = lp.grad(_implicit)(p, x)                       # the transform: the argument's structure
    assert isinstance(g["b"], tuple)
    np.testing.assert_allclose(g["b"][0], sol.grad["p.b.0"], rtol=1e-9)
    # central differences through the forward solve
    h = 1e-6
    fd = (prog.evaluate(p={**p, "a": p["a"] + h}, x=x) - prog.evaluate(p={**p, "a": p["a"] - h}, x=x)) / (2 * h)
    assert float(g["a"]) == pytest.approx(float(fd), rel=1e-6)
    H = lp.hessian(lambda p: _implicit(p, x))(p)
    assert H["b"][0]["a"].shape == (2,)
    hv = lp.hvp(lambda p: _implicit(p, x), p, {"a": 1.0, "b": (np.zeros(2), 0.0)})
    np.testing.assert_allclose(hv["b"][0], H["b"][0]["a"], rtol=1e-10)
    np.testing.assert_allclose(float(hv["a"]), float(H["a"]["a"]), rtol=1e-10)


# ------------------------------------------------------------------ errors
def test_errors_name_the_path_and_the_fix(small):
    with pytest.raises(lp.InputError, match="both named 'p.a.b'"):
        lp.grad(lambda p: p["a.b"] * p["a"]["b"])({"a.b": 1.0, "a": {"b": 2.0}})
    with pytest.raises(lp.InputError, match="key 1; the keys of a parameter tree"):
        lp.grad(lambda p: p[1])({1: 1.0})
    with pytest.raises(lp.InputError, match="'p.v'.*rectangular"):
        lp.grad(lambda p: lp.sum(p["v"]))({"v": [[1.0, 2.0], [3.0]]})
    with pytest.raises(lp.ShapeError, match=r"scalar-output.*the tree \{'y'"):
        lp.grad(lambda p: _two_outputs(np, p))(small)
    with pytest.raises(lp.ShapeError, match="hvp/hessian apply to scalar-output"):
        lp.hessian(lambda p: (p["c"], p["c"]))(small)
    _, vjp_fn = lp.vjp(lambda p: _two_outputs(np, p), small)
    with pytest.raises(lp.InputError, match=r"cotangent must be a dict with keys \['y', 'z'\]"):
        vjp_fn({"y": np.ones(2)})
    with pytest.raises(lp.InputError, match="cotangent.z must be a tuple of length 1"):
        vjp_fn({"y": np.ones(2), "z": (1.0, 2.0)})
    with pytest.raises(lp.ShapeError, match=r"cotangent.y has shape \(3,\)"):
        vjp_fn({"y": np.ones(3), "z": (1.0,)})
    with pytest.raises(lp.InputError, match="the tangent for p must be a dict"):
        lp.jvp(lambda p: p["c"] * 2.0, (small,), ({"c": 1.0},))
    with pytest.raises(lp.ShapeError, match="empty tuple"):
        lp.jacobian(lambda x: ())(1.0)
    with pytest.raises(lp.GraphError, match="return a tuple or a dict"):
        lp.jacobian(lambda x: [x, x[:2]])(np.ones(3))
    with pytest.raises(lp.GraphError, match="reserved"):
        lp.grad(lambda guess: guess * 2.0)(1.0)
    assert flatten({"a": 1.0})[1] != LEAF
