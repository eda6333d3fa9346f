"""Every transform caches its trace behind the guards of ``lp.grad`` (SPEC §2 "Never stale").

``lp.jvp``, ``lp.vjp`` and ``lp.hvp`` keep one guarded cache per function
(``transforms.cache.shared``); ``lp.jacobian`` and ``lp.hessian`` one per wrapper. Each test
changes what ``f`` reads from outside its arguments (a global rebound, a closure variable
rebound, a captured array edited in place) and compares the next result with autograd's
*for the new value*, and counts the traces through the cache's counter
(``cache_info().traces``) and through ``f``'s own side effect, never through a time.
"""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import lagrangeprop as lp
from lagrangeprop.guards import RetraceWarning
from lagrangeprop.transforms import cache
from lagrangeprop.transforms import jacobians as jacobian_module

# module-level state the functions below read (rebound / edited in place by the tests)
SCALE = 2.0
W = np.array([0.5, -1.0, 1.5])
TRACES: list = []


def _vec(x):                       # R³ -> R³, reads SCALE and W
    TRACES.append(1)
    return SCALE * lp.sin(W * x) + x ** 2


def _scal(x):                      # R³ -> R, reads SCALE and W
    TRACES.append(1)
    return lp.sum(SCALE * lp.sin(W * x) * x)


def _vec_ag(x):
    return SCALE * anp.sin(W * x) + x ** 2


def _scal_ag(x):
    return anp.sum(SCALE * anp.sin(W * x) * x)


@pytest.fixture(autouse=True)
def _fresh():
    global SCALE, W
    saved = SCALE, W.copy()
    cache.clear()
    TRACES.clear()
    yield
    SCALE, W = saved
    cache.clear()


# ----------------------------------------------------------------- one runner per transform
V = np.array([0.3, -0.7, 1.1])
G = np.array([1.0, 2.0, -0.5])


class _Runner:
    """One transform on a vector function ``vec`` and a scalar one ``scal`` (lp and autograd
    twins): ``lp(x)`` and ``ref(x)`` its result now, ``traces()`` its cache's trace count."""

    def __init__(self, kind, vec, scal, vec_ag, scal_ag):
        self.kind, self.vec, self.scal, self.vec_ag, self.scal_ag = kind, vec, scal, vec_ag, scal_ag
        self.wrapper = {"jacobian": lambda: lp.jacobian(vec),
                        "hessian": lambda: lp.hessian(scal)}.get(kind, lambda: None)()

    def lp(self, x):
        k = self.kind
        if k == "jvp":
            return lp.jvp(self.vec, (x,), (V,))[1]
        if k == "vjp":
            return lp.vjp(self.vec, x)[1](G)[0]
        if k == "hvp":
            return lp.hvp(self.scal, x, V)
        return self.wrapper(x)

    def ref(self, x):
        k = self.kind
        if k == "jvp":
            return autograd.make_jvp(self.vec_ag)(x)(V)[1]
        if k == "vjp":
            return autograd.make_vjp(self.vec_ag)(x)[0](G)
        if k == "hvp":
            return autograd.hessian_tensor_product(self.scal_ag)(x, V)
        if k == "jacobian":
            return autograd.jacobian(self.vec_ag)(x)
        return autograd.hessian(self.scal_ag)(x)

    def traces(self) -> int:
        if self.wrapper is not None:
            return self.wrapper.cache_info().traces
        return cache.cache_info(self.scal if self.kind == "hvp" else self.vec).traces

    def check(self, x):
        np.testing.assert_allclose(self.lp(x), self.ref(x), rtol=1e-12, atol=1e-13)


KINDS = ["jvp", "vjp", "jacobian", "hvp", "hessian"]


@pytest.mark.parametrize("kind", KINDS)
def test_hits_the_cache_while_nothing_changes(kind, rng):
    run = _Runner(kind, _vec, _scal, _vec_ag, _scal_ag)
    for _ in range(4):
        run.check(rng.normal(size=3))
    assert run.traces() == 1 and len(TRACES) == 1
    info = run.wrapper.cache_info() if run.wrapper is not None else \
        cache.cache_info(run.scal if kind == "hvp" else run.vec)
    assert info.hits == 3 and info.size == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_rebound_global_re_traces(kind, rng):
    global SCALE
    run = _Runner(kind, _vec, _scal, _vec_ag, _scal_ag)
    x = rng.normal(size=3)
    old = run.lp(x)
    SCALE = -3.0
    new = run.lp(x)
    np.testing.assert_allclose(new, run.ref(x), rtol=1e-12, atol=1e-13)   # autograd at SCALE = -3
    assert not np.allclose(new, old)
    assert run.traces() == 2 and len(TRACES) == 2
    run.check(x)
    assert run.traces() == 2


@pytest.mark.parametrize("kind", KINDS)
def test_a_captured_array_edited_in_place_re_traces(kind, rng):
    run = _Runner(kind, _vec, _scal, _vec_ag, _scal_ag)
    x = rng.normal(size=3)
    old = run.lp(x)
    W[1] = 2.5                                          # the same array object, new contents
    new = run.lp(x)
    np.testing.assert_allclose(new, run.ref(x), rtol=1e-12, atol=1e-13)
    assert not np.allclose(new, old)
    assert run.traces() == 2
    W[:] = W                                             # same bytes: no re-trace
    run.check(x)
    assert run.traces() == 2


def _closure_pair():
    """(lp function, autograd twin, setter) reading one closure variable ``k``."""
    k = 1.5

    def vec(x):
        return k * lp.tanh(x) * x

    def scal(x):
        return lp.sum(k * lp.tanh(x) * x ** 2)

    def set_k(value):
        nonlocal k
        k = value

    return (vec, scal, lambda x: k * anp.tanh(x) * x, lambda x: anp.sum(k * anp.tanh(x) * x ** 2),
            set_k)


@pytest.mark.parametrize("kind", KINDS)
def test_a_rebound_closure_variable_re_traces(kind, rng):
    vec, scal, vec_ag, scal_ag, set_k = _closure_pair()
    run = _Runner(kind, vec, scal, vec_ag, scal_ag)
    x = rng.normal(size=3)
    run.check(x)
    set_k(-0.25)
    run.check(x)                                         # autograd with k = -0.25
    assert run.traces() == 2
    run.check(rng.normal(size=3))
    assert run.traces() == 2


@pytest.mark.parametrize("kind", ["vjp", "jacobian", "hessian"])   # (jvp, hvp: V has shape (3,))
def test_another_shape_is_another_program_and_both_stay_cached(kind, rng):
    vec, scal, vec_ag, scal_ag, _ = _closure_pair()
    run = _Runner(kind, vec, scal, vec_ag, scal_ag)
    for n in (3, 5, 3, 5):
        x = rng.normal(size=n)
        ref = run.ref(x) if kind != "vjp" else autograd.make_vjp(vec_ag)(x)[0](np.ones(n))
        got = run.lp(x) if kind != "vjp" else lp.vjp(vec, x)[1](np.ones(n))[0]
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13)
    assert run.traces() == 2


# ----------------------------------------------------------------- the per-function cache
def test_a_bound_method_is_one_function_and_its_attributes_are_guarded(rng):
    class Model:
        def __init__(self):
            self.w = np.array([1.0, 2.0, 3.0])

        def predict(self, x):
            return lp.sin(self.w * x)

    m = Model()
    x = rng.normal(size=3)
    for _ in range(3):                                   # m.predict is a new object on each read
        _, t = lp.jvp(m.predict, (x,), (V,))
        np.testing.assert_allclose(t, np.cos(m.w * x) * m.w * V, rtol=1e-14)
    assert cache.cache_info(m.predict).traces == 1
    m.w = np.array([-1.0, 0.5, 2.0])                     # a rebound attribute of self
    _, t = lp.jvp(m.predict, (x,), (V,))
    np.testing.assert_allclose(t, np.cos(m.w * x) * m.w * V, rtol=1e-14)
    m.w[0] = 4.0                                         # edited in place
    _, t = lp.jvp(m.predict, (x,), (V,))
    np.testing.assert_allclose(t, np.cos(m.w * x) * m.w * V, rtol=1e-14)
    assert cache.cache_info(m.predict).traces == 3


def test_the_per_function_cache_is_bounded_and_an_evicted_function_traces_again():
    def scaled(c):
        return lambda x: c * x ** 2

    fs = [scaled(float(c)) for c in range(cache.SHARED_SIZE + 5)]
    for c, f in enumerate(fs):
        assert float(lp.jvp(f, (3.0,), (1.0,))[1]) == 6.0 * c
    assert len(cache._SHARED) == cache.SHARED_SIZE
    assert float(lp.jvp(fs[0], (3.0,), (1.0,))[1]) == 0.0   # evicted: traced again, right
    assert float(lp.jvp(fs[-1], (1.0,), (1.0,))[1]) == 2.0 * (len(fs) - 1)
    assert cache.cache_info(fs[-1]).traces == 1


def test_jvp_vjp_and_hvp_of_one_function_share_its_trace(rng):
    x = rng.normal(size=3)
    lp.vjp(_scal, x)[1](1.0)
    lp.jvp(_scal, (x,), (V,))
    np.testing.assert_allclose(lp.hvp(_scal, x, V), autograd.hessian_tensor_product(_scal_ag)(x, V),
                               rtol=1e-12)
    assert cache.cache_info(_scal).traces == 1 and len(TRACES) == 1


def test_random_draws_while_tracing_re_trace_on_every_jvp():
    gen = np.random.default_rng(5)

    def f(x):
        return lp.sum(gen.random(3) * x)

    with pytest.warns(RetraceWarning, match="random"):
        got = [lp.jvp(f, (np.zeros(3),), (np.ones(3),))[1] for _ in range(3)]
    ref = np.random.default_rng(5)
    for t in got:
        assert float(t) == pytest.approx(float(np.sum(ref.random(3))), rel=1e-14)


# ----------------------------------------------------------------- trees and argnum
def _tree_f(p):
    return {"u": p["a"] * lp.sin(p["b"]), "v": lp.sum(p["a"] ** 2) * p["b"]}


def _tree_flat_ag(z):                          # z = [a (3), b]; result [u (3), v]
    a, b = z[:3], z[3]
    return anp.concatenate([a * anp.sin(b), anp.array([anp.sum(a ** 2) * b])])


def _tree_point(rng):
    return {"a": rng.normal(size=3), "b": 0.7}


def test_trees_in_and_out_for_jvp_vjp_and_jacobian(rng):
    p = _tree_point(rng)
    z = np.concatenate([p["a"], [p["b"]]])
    J = autograd.jacobian(_tree_flat_ag)(z)
    ta = {"a": rng.normal(size=3), "b": -0.4}
    jac = lp.jacobian(_tree_f)
    for _ in range(2):
        value, t = lp.jvp(_tree_f, (p,), (ta,))
        tz = J @ np.concatenate([ta["a"], [ta["b"]]])
        np.testing.assert_allclose(t["u"], tz[:3], rtol=1e-13)
        assert float(t["v"]) == pytest.approx(tz[3], rel=1e-13)
        _, vjp_fn = lp.vjp(_tree_f, p)
        gu, gv = rng.normal(size=3), 1.3
        (ct,) = vjp_fn({"u": gu, "v": gv})
        cz = np.concatenate([gu, [gv]]) @ J
        np.testing.assert_allclose(ct["a"], cz[:3], rtol=1e-13)
        assert float(ct["b"]) == pytest.approx(cz[3], rel=1e-13)
        Jt = jac(p)
        np.testing.assert_allclose(Jt["u"]["a"], J[:3, :3], rtol=1e-13)
        np.testing.assert_allclose(Jt["u"]["b"], J[:3, 3], rtol=1e-13)
        np.testing.assert_allclose(Jt["v"]["a"], J[3, :3], rtol=1e-13)
        assert float(Jt["v"]["b"]) == pytest.approx(J[3, 3], rel=1e-13)
    assert cache.cache_info(_tree_f).traces == 1 and jac.cache_info().traces == 1


def _tree_s(p):
    return lp.sum(lp.sin(p["a"]) * p["b"] ** 2) + p["b"] * lp.sum(p["a"] ** 3)


def _tree_s_ag(z):
    a, b = z[:3], z[3]
    return anp.sum(anp.sin(a) * b ** 2) + b * anp.sum(a ** 3)


def test_trees_for_hvp_and_hessian(rng):
    p = _tree_point(rng)
    z = np.concatenate([p["a"], [p["b"]]])
    H = autograd.hessian(_tree_s_ag)(z)
    hess = lp.hessian(_tree_s)
    d = {"a": rng.normal(size=3), "b": 0.9}
    for _ in range(2):
        hv = lp.hvp(_tree_s, p, d)
        ref = H @ np.concatenate([d["a"], [d["b"]]])
        np.testing.assert_allclose(hv["a"], ref[:3], rtol=1e-12)
        assert float(hv["b"]) == pytest.approx(ref[3], rel=1e-12)
        Ht = hess(p)
        np.testing.assert_allclose(Ht["a"]["a"], H[:3, :3], rtol=1e-12)
        np.testing.assert_allclose(Ht["a"]["b"], H[:3, 3], rtol=1e-12)
        assert float(Ht["b"]["b"]) == pytest.approx(H[3, 3], rel=1e-12)
    assert cache.cache_info(_tree_s).traces == 1 and hess.cache_info().traces == 1


def _two(x, y):
    return lp.tanh(x[:2] * y) + lp.sum(x) * y


def _two_ag(x, y):
    return anp.tanh(x[:2] * y) + anp.sum(x) * y


def test_jacobian_argnum_tuples_and_keywords_hit_one_program(rng):
    jac = lp.jacobian(_two, argnum=(0, 1))
    for _ in range(3):
        x, y = rng.normal(size=3), rng.normal(size=2)
        Jx, Jy = jac(x, y)
        np.testing.assert_allclose(Jx, autograd.jacobian(_two_ag, 0)(x, y), rtol=1e-13)
        np.testing.assert_allclose(Jy, autograd.jacobian(_two_ag, 1)(x, y), rtol=1e-13)
    Jy = lp.jacobian(_two, argnum=1)(y=y, x=x)
    np.testing.assert_allclose(Jy, autograd.jacobian(_two_ag, 1)(x, y), rtol=1e-13)
    assert jac.cache_info().traces == 1


def test_hessian_takes_one_argnum(rng):
    with pytest.raises(lp.InputError, match="one argument"):
        lp.hessian(lambda x, y: lp.sum(x * y), argnum=(0, 1))(np.ones(2), np.ones(2))


# ----------------------------------------------------------------- every jacobian path
@pytest.mark.parametrize("mode", ["auto", "forward", "reverse"])
@pytest.mark.parametrize("n_in,n_out", [(3, 3), (2, 7), (7, 2), (24, 3), (3, 24), (20, 20)])
def test_jacobian_per_pass_and_matrix_paths_agree_with_autograd(mode, n_in, n_out, rng):
    A = rng.normal(size=(n_out, n_in))
    b = rng.normal(size=n_out)

    def f(x):
        h = lp.tanh(A @ x + b)
        return h * lp.exp(0.1 * h) + lp.sum(x ** 2)

    def f_ag(x):
        h = anp.tanh(A @ x + b)
        return h * anp.exp(0.1 * h) + anp.sum(x ** 2)

    x = rng.normal(size=n_in)
    np.testing.assert_allclose(lp.jacobian(f, mode=mode)(x), autograd.jacobian(f_ag)(x),
                               rtol=1e-12, atol=1e-14)


def test_jacobian_uses_one_pass_per_column_up_to_passes_max(rng, monkeypatch):
    calls = {"tangent": 0, "adjoint": 0}
    tangent, adjoint = jacobian_module.tangent_pass, jacobian_module.run_adjoint

    def counted_tangent(*a):
        calls["tangent"] += 1
        return tangent(*a)

    def counted_adjoint(*a):
        calls["adjoint"] += 1
        return adjoint(*a)

    monkeypatch.setattr(jacobian_module, "tangent_pass", counted_tangent)
    monkeypatch.setattr(jacobian_module, "run_adjoint", counted_adjoint)
    x = rng.normal(size=4)
    np.testing.assert_allclose(lp.jacobian(_vec_like)(x), autograd.jacobian(_vec_like_ag)(x), rtol=1e-13)
    assert calls == {"tangent": 4, "adjoint": 0}
    g = lp.jacobian(lambda x: lp.sum(lp.sin(x)))(x)            # 4 -> 1: one reverse pass
    np.testing.assert_allclose(g, np.cos(x), rtol=1e-14)
    assert calls == {"tangent": 4, "adjoint": 1}
    big = rng.normal(size=jacobian_module.PASSES_MAX + 1)
    np.testing.assert_allclose(lp.jacobian(_vec_like)(big), autograd.jacobian(_vec_like_ag)(big),
                               rtol=1e-13)
    assert calls == {"tangent": 4, "adjoint": 1}               # the matrix pass


def _vec_like(x):
    return lp.exp(lp.sin(x)) * x


def _vec_like_ag(x):
    return anp.exp(anp.sin(x)) * x


# ----------------------------------------------------------------- a cyclic program
def _sellar():
    prog = lp.Program(name="sellar")
    p = prog.input("p", shape=(3,))
    y1, y2 = prog.variable("y1"), prog.variable("y2")
    prog.define(y1, p[1] ** 2 + p[2] + p[0] - 0.2 * y2)
    prog.define(y2, lp.sqrt(y1) + p[1] + p[2])
    prog.output(p[0] ** 2 + p[2] + y1 + lp.exp(-y2), name="obj")
    return prog


def _sellar_ag(p):                                # the fixed-point iteration, unrolled to convergence
    y1, y2 = 1.0, 1.0
    for _ in range(60):
        y1 = p[1] ** 2 + p[2] + p[0] - 0.2 * y2
        y2 = anp.sqrt(y1) + p[1] + p[2]
    return p[0] ** 2 + p[2] + y1 + anp.exp(-y2)


def test_a_cyclic_program_through_every_transform():
    prog = _sellar()
    guess = {"y1": 1.0, "y2": 1.0}
    p = np.array([1.0, 5.0, 2.0])
    g = autograd.grad(_sellar_ag)(p)
    H = autograd.hessian(_sellar_ag)(p)
    for _ in range(2):                            # a Program is solved again, never re-traced
        value, t = lp.jvp(prog, (p,), (V,), guess=guess)
        assert float(value) == pytest.approx(float(_sellar_ag(p)), rel=1e-12)
        assert float(t) == pytest.approx(g @ V, rel=1e-10)
        _, vjp_fn = lp.vjp(prog, p, guess=guess)
        np.testing.assert_allclose(vjp_fn(2.0)[0], 2.0 * g, rtol=1e-10)
        for mode in ("forward", "reverse"):
            np.testing.assert_allclose(lp.jacobian(prog, mode=mode, guess=guess)(p), g, rtol=1e-10)
        np.testing.assert_allclose(lp.hvp(prog, p, V, guess=guess), H @ V, rtol=1e-9)
        np.testing.assert_allclose(lp.hessian(prog, guess=guess)(p), H, rtol=1e-9, atol=1e-12)
    assert lp.jacobian(prog).cache_info is None   # a Program has no trace cache
