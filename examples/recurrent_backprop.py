"""Almeida–Pineda recurrent backpropagation: train a fixed-point network with multipliers.

The network state s solves s = σ(W s + B u) (a cyclic block); the loss compares the output
units with a target. Recurrent backprop's "adjoint network" λ = σ'ᵀ Wᵀ λ + ∂loss/∂s is
exactly the block's multiplier equation A_SSᵀ λ = b, and dloss/dW = λ_W. A few gradient
steps reduce the loss; the first gradient is checked against autograd through the unrolled
relaxation of the network and against a central finite difference.
"""
import os
import sys

import autograd.numpy as anp
import numpy as np
from autograd import grad

import lagrangeprop as lp

QUICK = bool(os.environ.get("LAGRANGEPROP_QUICK"))
n, k, outputs = 12, 3, [0, 1]
rng = np.random.default_rng(0)
Bm = rng.standard_normal((n, k))
u = rng.standard_normal(k)
target = np.array([0.8, 0.2])

prog = lp.Program(name="almeida_pineda")
Wv = prog.input("W", shape=(n, n)); s = prog.variable("s", shape=(n,))
prog.define(s, lp.sigmoid(Wv @ s + Bm @ u))
prog.output(lp.sum((s[outputs] - target) ** 2), name="loss")


def relax(W, steps=200):        # autograd reference: the network relaxed step by step
    ss = anp.zeros(n)
    for _ in range(steps):
        ss = 1 / (1 + anp.exp(-(anp.dot(W, ss) + anp.dot(Bm, u))))
    return anp.sum((ss[outputs] - target) ** 2)


W0 = rng.standard_normal((n, n)) * 0.5 / np.sqrt(n)
sol = prog.solve(W=W0)
g_ag = grad(relax)(W0)
E = rng.standard_normal((n, n)); h = 1e-6
fd = (float(prog.evaluate(W=W0 + h * E)) - float(prog.evaluate(W=W0 - h * E))) / (2 * h)
rel = float(np.max(np.abs(sol.grad["W"] - g_ag)) / np.max(np.abs(g_ag)))
rel_fd = abs(float(np.sum(sol.grad["W"] * E)) - fd) / abs(fd)
print(f"initial loss {float(sol.output):.6f}; gradient vs autograd (unrolled) rel {rel:.1e}, "
      f"vs central difference rel {rel_fd:.1e}")

W = W0.copy()
losses = []
for step in range(10 if QUICK else 40):
    sol = prog.solve(W=W)
    losses.append(float(sol.output))
    W -= 2.0 * sol.grad["W"]
    if step % 5 == 0:
        print(f"step {step:3d}: loss {losses[-1]:.6e}  outputs {np.round(sol.values['s'][outputs], 4)}")
print(f"final loss {losses[-1]:.3e} (from {losses[0]:.3e})")
ok = rel < 1e-8 and rel_fd < 1e-5 and losses[-1] < 0.5 * losses[0]
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib not installed: no picture (pip install lagrangeprop[plot])")
else:
    first = prog.solve(W=W0).values["s"][outputs]
    last = prog.solve(W=W).values["s"][outputs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1.4, 1]})
    ax1.semilogy(range(len(losses)), losses, "o-", ms=4)
    ax1.set_xlabel("gradient step (one fixed-point solve + one adjoint solve each)")
    ax1.set_ylabel("loss = Σ (s_out − target)²")
    ax1.set_title(f"training a {n}-unit fixed-point network by recurrent backprop")
    ax1.grid(alpha=0.3, which="both")
    xs = np.arange(len(outputs))
    ax2.bar(xs - 0.27, first, 0.27, label="before training", color="0.6")
    ax2.bar(xs, last, 0.27, label="after training", color="C0")
    ax2.bar(xs + 0.27, target, 0.27, label="target", color="C2")
    ax2.set_xticks(xs, [f"output unit s[{i}]" for i in outputs])
    ax2.set_ylim(0, 1.15); ax2.set_ylabel("equilibrium state")
    ax2.set_title("the output units at the fixed point")
    ax2.legend(fontsize=8, loc="upper right")
    fig.tight_layout(); fig.savefig("recurrent_backprop.png", dpi=120)
    print("saved recurrent_backprop.png")
print(f"OK: gradient matches autograd through the relaxation ({rel:.0e}) and a central difference ({rel_fd:.0e}); "
      f"loss {losses[0]:.1e} -> {losses[-1]:.1e}" if ok else
      f"FAILED: gradient vs autograd {rel:.1e}, vs central difference {rel_fd:.1e}, "
      f"loss {losses[0]:.2e} -> {losses[-1]:.2e}")
sys.exit(0 if ok else 1)
