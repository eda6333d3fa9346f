"""Backpropagation through a multi-layer network is the multiplier recursion, layer by layer.

A tanh network on a batch (rows = examples), built as explicit constraints:

    z¹ = x W¹ᵀ + b¹,   a^l = tanh(z^l),   z^{l+1} = a^l W^{l+1}ᵀ + b^{l+1},   ...,
    out = z^L (linear),   loss = mean((out − y)²)

The multiplier of each pre-activation is λ_{z^l} = ∂loss/∂z^l, and stationarity of the
Lagrangian in a^{l-1} and z^{l-1} (SPEC: λ_u = Σ_children (∂f_d/∂z_u)ᵀ λ_d) gives the textbook
backprop rule

    λ_{z^{l-1}} = f'(z^{l-1}) ⊙ (W^{l}ᵀ λ_{z^{l}})      (row convention: (λ_{z^l} W^l) ⊙ (1 − tanh² z^{l-1}))

and the weight gradients λ_{W^l} = λ_{z^l}ᵀ a^{l-1}. This script checks the rule per layer from
the multipliers the solver returned (max abs error), the top multiplier 2(out − y)/(B·n_out),
the weight gradients against the formula and against HIPS autograd (or central differences).
Exit status 1 if any check fails.
"""

import sys

import numpy as np

import lagrangeprop as lp

SIZES = [3, 16, 16, 16, 2]        # input, three hidden tanh layers, linear output
BATCH = 32
RNG = np.random.default_rng(3)
XB = RNG.normal(size=(BATCH, SIZES[0]))
YB = np.stack([np.sin(XB[:, 0] + XB[:, 1]), XB[:, 2] * np.cos(XB[:, 0])], axis=1)
L = len(SIZES) - 1


def build() -> lp.Program:
    prog = lp.Program(name="mlp")
    a = prog.constant(XB, name="x")
    for k in range(1, L + 1):
        W = prog.input(f"W{k}", shape=(SIZES[k], SIZES[k - 1]))
        b = prog.input(f"b{k}", shape=(SIZES[k],))
        z = prog.variable(f"z{k}")
        prog.define(z, a @ lp.transpose(W) + b)
        if k < L:
            a = prog.variable(f"a{k}")
            prog.define(a, lp.tanh(z))
    r = z - YB
    prog.output(lp.mean(r * r), name="loss")
    return prog


def init_params():
    params = {}
    for k in range(1, L + 1):
        params[f"W{k}"] = RNG.normal(size=(SIZES[k], SIZES[k - 1])) / np.sqrt(SIZES[k - 1])
        params[f"b{k}"] = 0.1 * RNG.normal(size=SIZES[k])
    return params


def reference_grad(params):
    """The same loss in HIPS autograd (its own derivative rules), or central differences."""
    def loss(p, xp):
        a = XB
        for k in range(1, L + 1):
            z = xp.dot(a, p[f"W{k}"].T) + p[f"b{k}"]
            a = xp.tanh(z) if k < L else z
        return xp.mean((a - YB) ** 2)
    try:
        import autograd
        import autograd.numpy as anp
    except ImportError:
        g, h = {}, 1e-6
        for k, v in params.items():
            g[k] = np.zeros_like(v)
            for i in np.ndindex(v.shape):
                up = {**params, k: v.copy()}
                dn = {**params, k: v.copy()}
                up[k][i] += h
                dn[k][i] -= h
                g[k][i] = (loss(up, np) - loss(dn, np)) / (2 * h)
        return "central differences", g
    return "autograd (tape)", autograd.grad(lambda p: loss(p, anp))(params)


def main() -> int:
    failures = []
    prog = build()
    params = init_params()
    sol = prog.solve(**params)
    lam, val = sol.multipliers, sol.values
    print(__doc__.split("\n\n")[0].strip())
    print(f"\nnetwork {SIZES}, batch {BATCH}, loss {float(sol.output):.6f}, "
          f"KKT residuals {sol.kkt()['primal']:.1e} / {sol.kkt()['adjoint']:.1e}\n")

    print("1. The backprop rule from the multipliers, layer by layer\n")
    print(f"   {'layer':>5}  {'rule':48} {'max|λ_z|':>10} {'max abs err':>12}")
    top = 2 * (val[f"z{L}"] - YB) / YB.size
    err = float(np.max(np.abs(lam[f"z{L}"] - top)))
    print(f"   {L:5d}  {'λ_z' + str(L) + ' = 2(out − y)/(B·n_out)':48} {np.max(np.abs(top)):10.3e} {err:12.1e}")
    errors = [err / np.max(np.abs(top))]
    for k in range(L, 1, -1):
        z_prev = val[f"z{k - 1}"]
        rule = (1 - np.tanh(z_prev) ** 2) * (lam[f"z{k}"] @ val[f"W{k}"])
        err = float(np.max(np.abs(lam[f"z{k - 1}"] - rule)))
        errors.append(err / np.max(np.abs(rule)))
        text = f"λ_z{k - 1} = tanh'(z{k - 1}) ⊙ (λ_z{k} W{k})"
        print(f"   {k - 1:5d}  {text:48} {np.max(np.abs(rule)):10.3e} {err:12.1e}")
    print(f"\n   {'layer':>5}  {'weight gradient':48} {'max|λ_W|':>10} {'max abs err':>12}")
    for k in range(L, 0, -1):
        a_prev = XB if k == 1 else val[f"a{k - 1}"]
        formula = lam[f"z{k}"].T @ a_prev
        err = float(np.max(np.abs(sol.grad[f"W{k}"] - formula)))
        errors.append(err / np.max(np.abs(formula)))
        text = f"λ_W{k} = λ_z{k}ᵀ a{k - 1}" if k > 1 else "λ_W1 = λ_z1ᵀ x"
        print(f"   {k:5d}  {text:48} {np.max(np.abs(formula)):10.3e} {err:12.1e}")
    if max(errors) > 1e-12:
        failures.append(f"backprop rule (max rel error {max(errors):.1e})")

    name, ref = reference_grad(params)
    print(f"\n2. Every parameter gradient vs {name}\n")
    print(f"   {'input':6} {'shape':>8} {'max|grad|':>11} {'max abs err':>12}")
    worst = 0.0
    for k in params:
        err = float(np.max(np.abs(sol.grad[k] - ref[k])))
        worst = max(worst, err / max(1e-300, np.max(np.abs(ref[k]))))
        print(f"   {k:6} {str(params[k].shape):>8} {np.max(np.abs(ref[k])):11.4e} {err:12.1e}")
    if worst > (1e-10 if name.startswith("autograd") else 1e-5):
        failures.append(f"gradient vs {name} (max rel error {worst:.1e})")

    try:
        import matplotlib
    except ImportError:
        print("\n(matplotlib not installed: no plot; pip install lagrangeprop[plot])")
    else:
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        for k in range(L, 1, -1):       # every entry of λ_{z^{k-1}}: the solver's vs the textbook rule
            rule = (1 - np.tanh(val[f"z{k - 1}"]) ** 2) * (lam[f"z{k}"] @ val[f"W{k}"])
            ax1.plot(rule.ravel(), lam[f"z{k - 1}"].ravel(), ".", ms=4, alpha=0.6,
                     label=f"layer {k - 1} ({rule.size} entries)")
        lim = max(abs(v) for v in ax1.get_xlim() + ax1.get_ylim())
        ax1.plot([-lim, lim], [-lim, lim], "k-", lw=0.8, label="y = x")
        ax1.set_xlim(-lim, lim); ax1.set_ylim(-lim, lim); ax1.set_aspect("equal")
        ax1.set_xlabel(r"backprop rule $\tanh'(z^{l}) \odot (\lambda_{z^{l+1}} W^{l+1})$")
        ax1.set_ylabel(r"multiplier $\lambda_{z^l}$ from the solve")
        ax1.set_title("the backprop rule is the multiplier equation")
        ax1.legend(fontsize=8, loc="upper left")
        norms = [np.linalg.norm(lam[f"z{k}"]) for k in range(1, L + 1)]
        wnorms = [np.linalg.norm(sol.grad[f"W{k}"]) for k in range(1, L + 1)]
        xs = np.arange(1, L + 1)
        b1 = ax2.bar(xs - 0.2, norms, 0.4, label=r"$\Vert\lambda_{z^l}\Vert$ (pre-activation)")
        b2 = ax2.bar(xs + 0.2, wnorms, 0.4, label=r"$\Vert\lambda_{W^l}\Vert$ (weight gradient)")
        ax2.bar_label(b1, fmt="%.3f", fontsize=8); ax2.bar_label(b2, fmt="%.3f", fontsize=8)
        ax2.set_xticks(xs, [f"layer {k}" + (" (output)" if k == L else "") for k in xs])
        ax2.set_ylabel("Frobenius norm")
        ax2.set_ylim(0, 1.2 * max(norms + wnorms))
        ax2.set_title(f"multiplier sizes, network {SIZES}, batch {BATCH}")
        ax2.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        fig.savefig("mlp_layers.png", dpi=120)
        print("\nPlot: mlp_layers.png")

    print("\nFAILED: " + ", ".join(failures) if failures else
          f"\nOK: every check passed (backprop rule to {max(errors):.0e}, gradients vs {name} to {worst:.0e})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
