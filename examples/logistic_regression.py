"""What do the multipliers add over a hand-derived gradient? Logistic regression, node by node.

    logits = X w + b,  p = σ(logits),  terms_i = −[y_i log p_i + (1 − y_i) log(1 − p_i)],
    loss = mean(terms)

The textbook derivative is ∂loss/∂w = Xᵀ(p − y)/N, ∂loss/∂b = Σ(p − y)/N. The Lagrangian
L = loss − Σ_d λ_d·c_d gives the same numbers, and on the way it gives the derivative of the
loss with respect to EVERY intermediate: λ_d = ∂loss/∂z_d. This script prints each intermediate's
multiplier next to its hand-derived value (section 1), then trains by gradient descent twice —
with the multipliers and with the closed form — and compares the two runs step by step
(section 2). Exit status 1 if any multiplier differs from its hand-derived value by more than
1e-12 (relative; for the gradient sums, relative to the size of their terms), or the two
training runs part.
"""

import os
import sys

import numpy as np

import lagrangeprop as lp

QUICK = os.environ.get("LAGRANGEPROP_QUICK") == "1"
RNG = np.random.default_rng(7)
N, D = 200, 5
X = RNG.normal(size=(N, D))
W_TRUE = np.array([1.5, -2.0, 0.5, 0.0, 1.0])
Y = (RNG.random(N) < 1 / (1 + np.exp(-(X @ W_TRUE - 0.3)))).astype(float)


def model(w, b):
    Xw = X @ w                      # one local name per step: the graph's nodes carry these names
    logits = Xw + b
    p = lp.sigmoid(logits)
    log_p = lp.log(p)
    one_minus_p = 1 - p
    log_q = lp.log(one_minus_p)
    y_log_p = Y * log_p
    ny_log_q = (1 - Y) * log_q
    ll = y_log_p + ny_log_q
    terms = -ll
    loss = lp.mean(terms)
    return loss


def hand_multipliers(w, b):
    """Back-substitution done by hand (SPEC: λ_u = Σ_children (∂f_d/∂z_u)ᵀ λ_d), in numpy."""
    p = 1 / (1 + np.exp(-(X @ w + b)))
    lam = {"loss": 1.0}
    lam["terms"] = np.full(N, 1.0 / N)                       # loss = mean(terms)
    lam["ll"] = -lam["terms"]                                # terms = −ll
    lam["y_log_p"] = lam["ny_log_q"] = lam["ll"]              # ll = y_log_p + ny_log_q
    lam["log_p"] = Y * lam["y_log_p"]                        # y_log_p = y log_p
    lam["log_q"] = (1 - Y) * lam["ny_log_q"]                 # ny_log_q = (1 − y) log_q
    lam["one_minus_p"] = lam["log_q"] / (1 - p)              # log_q = log(1 − p)
    lam["p"] = lam["log_p"] / p - lam["one_minus_p"]         # = (p − y) / (N p (1 − p))
    lam["logits"] = p * (1 - p) * lam["p"]                   # σ' = p(1 − p): = (p − y)/N
    lam["Xw"] = lam["logits"]                                # logits = Xw + b
    lam["w"] = X.T @ (p - Y) / N                             # the closed form
    lam["b"] = np.sum(p - Y) / N
    return lam


FORMULA = {
    "loss": "1 (the seed)",
    "terms": "1/N",
    "ll": "−1/N",
    "y_log_p": "−1/N",
    "ny_log_q": "−1/N",
    "log_p": "−y/N",
    "log_q": "−(1 − y)/N",
    "one_minus_p": "−(1 − y)/(N(1 − p))",
    "p": "(p − y)/(N p(1 − p))",
    "logits": "(p − y)/N",
    "Xw": "(p − y)/N",
    "w": "Xᵀ(p − y)/N   (closed form)",
    "b": "Σ(p − y)/N    (closed form)",
}


def rel_err(a, b, scale=None) -> float:
    """max|a − b| relative to max|b|, or to ``scale`` (the size of the summands when b is a
    sum that cancels, as Σ(p − y) does near the optimum: rounding is relative to them)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(1e-300, np.max(np.abs(b if scale is None else scale))))


def gradient_scales(w, b):
    """|X|ᵀ|p − y|/N and Σ|p − y|/N: the magnitudes the closed-form sums are made of."""
    r = np.abs(1 / (1 + np.exp(-(X @ w + b))) - Y)
    return np.abs(X).T @ r / N, np.sum(r) / N


def main() -> int:
    failures = []
    prog = lp.trace(model, w=np.zeros(D), b=0.0)    # traced once, solved at every step
    w, b = 0.1 * np.ones(D), 0.0

    print(__doc__.split("\n\n")[0].strip(), "\n")
    print(f"1. Multipliers of the intermediates at w = {w}, b = {b}  (N = {N}, D = {D})\n")
    sol = prog.solve(w=w, b=b)
    hand = hand_multipliers(w, b)
    print(f"   {'node':12} {'op':9} {'hand-derived λ':28} {'|λ| (2-norm)':>13} {'rel. error':>11}")
    for node in ["loss", "terms", "ll", "ny_log_q", "y_log_p", "log_q", "log_p", "one_minus_p", "p", "logits",
                 "Xw", "w", "b"]:
        op = prog.graph.nodes[node].get("op", "input")
        err = rel_err(sol.multipliers[node], hand[node])
        print(f"   {node:12} {op:9} {FORMULA[node]:28} {np.linalg.norm(sol.multipliers[node]):13.6g} "
              f"{err:11.1e}")
        if err > 1e-12:
            failures.append(f"multiplier of {node} (rel. error {err:.1e})")
    print("\n   first three entries:  λ_logits =", np.round(sol.multipliers["logits"][:3], 8),
          "  (p − y)/N =", np.round(hand["logits"][:3], 8))

    steps = 30 if QUICK else 200
    lr = 1.0
    print(f"\n2. Gradient descent (lr = {lr}), multipliers vs closed form, step by step\n")
    print(f"   {'step':>5} {'loss':>12} {'|∇w| (λ_w)':>12} {'λ_w vs Xᵀ(p−y)/N':>18} {'λ_b vs Σ(p−y)/N':>16}"
          f" {'|w − w_closed|':>15}")
    w_l, b_l = np.zeros(D), 0.0          # run with the multipliers
    w_c, b_c = np.zeros(D), 0.0          # run with the closed form
    worst = 0.0
    show = set(np.unique(np.geomspace(1, steps, 10).astype(int))) | {0}
    for step in range(steps + 1):
        sol = prog.solve(w=w_l, b=b_l)
        closed = hand_multipliers(w_l, b_l)
        sw, sb = gradient_scales(w_l, b_l)
        ew, eb = rel_err(sol.grad["w"], closed["w"], sw), rel_err(sol.grad["b"], closed["b"], sb)
        gap = float(np.max(np.abs(w_l - w_c)))
        worst = max(worst, ew, eb)
        if step in show:
            print(f"   {step:5d} {float(sol.output):12.8f} {np.linalg.norm(sol.grad['w']):12.4e} "
                  f"{ew:18.1e} {eb:16.1e} {gap:15.1e}")
        cl = hand_multipliers(w_c, b_c)
        w_l, b_l = w_l - lr * sol.grad["w"], b_l - lr * sol.grad["b"]
        w_c, b_c = w_c - lr * cl["w"], b_c - lr * cl["b"]
    acc = np.mean(((X @ w_l + b_l) > 0) == (Y > 0.5))
    print(f"\n   fitted w = {np.round(w_l, 3)}, b = {b_l:.3f}   (true w = {W_TRUE}, b = -0.3); "
          f"training accuracy {acc:.1%}")
    print(f"   worst gradient error over all steps {worst:.1e} (relative to the summands' size); "
          f"final |w_lagrange − w_closed| {np.max(np.abs(w_l - w_c)):.1e}")
    if worst > 1e-12:
        failures.append(f"gradient differs from the closed form (rel. error {worst:.1e})")
    if np.max(np.abs(w_l - w_c)) > 1e-10 or abs(b_l - b_c) > 1e-10:
        failures.append(f"the two training runs parted (by {max(np.max(np.abs(w_l - w_c)), abs(b_l - b_c)):.1e})")

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("\n(matplotlib not installed: no graph picture; pip install lagrangeprop[plot])")
    else:
        final = prog.solve(w=w_l, b=b_l)
        title = (f"logistic regression after {steps} steps: loss {float(final.output):.4f}; each node's value z "
                 f"and multiplier λ = ∂loss/∂z (|.| = norm of a {N}-vector)")
        path = lp.draw(prog, final, path="logistic_regression_graph.png", constants=False, title=title,
                       dpi=90, fontsize=9)
        print(f"\nGraph of the program with values and multipliers: {path}")

    print("\nFAILED: " + ", ".join(failures) if failures else "\nOK: every check passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
