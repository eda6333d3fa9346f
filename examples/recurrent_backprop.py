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
print("OK" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
