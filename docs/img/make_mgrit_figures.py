"""Regenerate the pictures of docs/theory/mgrit.md from the package's diagnostics.

Run from the repository root:  python docs/img/make_mgrit_figures.py
Deterministic (fixed seeds); writes mgrit_*.png next to this file.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mgrit_gru.tools import diagnostics as dg  # noqa: E402
from mgrit_gru import gru_forward, init_gru, mgrit_forward  # noqa: E402
from mgrit_gru.mgrit import MGRIT, Dahlquist  # noqa: E402

HERE = Path(__file__).resolve().parent


def save(fig, name):
    fig.tight_layout()
    fig.savefig(HERE / name, dpi=90)
    plt.close(fig)
    print("wrote", HERE / name)


def finite_termination():
    """Two levels, cf = 4, the GRU: error vs time after each cycle, F and FCF."""
    params = init_gru(4, 8, 1, seed=0)
    x = np.random.default_rng(1).standard_normal((96, 2, 4))
    hs = gru_forward(params, x)[2]["hs"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, relax in zip(axes, ("F", "FCF")):
        _, _, info = mgrit_forward(params, x, levels=2, cf=4, relax=relax, skip=False,
                                   max_iter=4, tol=0.0, record_iterates=True)
        dg.plot_error_vs_time(info, hs, ax=ax, cf=4)
        ax.set_title(f"GRU, two levels, {relax}-relaxation, cf = 4")
    save(fig, "mgrit_error_vs_time.png")


def residual_histories():
    """GRU, T = 1024: residual per cycle for several cf and levels."""
    params = init_gru(8, 16, 1, seed=0)
    x = np.random.default_rng(2).standard_normal((1024, 2, 8))
    runs = [(2, 2), (3, 2), (5, 2), (4, 4), (3, 8)]
    infos = [mgrit_forward(params, x, levels=lv, cf=cf, relax="FCF", max_iter=30, tol=1e-11)[2]
             for lv, cf in runs]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    dg.plot_residual_history(infos, labels=[f"{lv} levels, cf = {cf}" for lv, cf in runs], ax=ax)
    ax.set_title("GRU forward, T = 1024, FCF, classic fine cell")
    save(fig, "mgrit_residual_history.png")


def cycle_diagram():
    fig, ax = plt.subplots(figsize=(10, 3.6))
    dg.plot_cycle(dg.cycle_trace(4, 2, "FCF", "V", skip=True, iterations=2), ax=ax)
    ax.set_title("4 levels, FCF, V-cycle, skip: two cycles and the final F-relaxation")
    save(fig, "mgrit_cycle.png")


def two_level_bound():
    """Measured worst-case error reduction of one two-level cycle vs the Dobrev et al. bound."""
    m, N = 4, 64
    n_c = N // m
    zs = -np.logspace(-2, 0.7, 20)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for relax, color in (("F", "tab:blue"), ("FCF", "tab:orange")):
        meas, bnd = [], []
        for z in zs:
            lam, mu = np.exp(z), 1.0 / (1.0 - m * z)
            d = np.subtract.outer(np.arange(n_c), np.arange(n_c))
            if relax == "F":
                E = np.where(d >= 1, (lam ** m - mu) * mu ** np.maximum(d - 1, 0), 0)
                b = abs(lam ** m - mu) * (1 - abs(mu) ** (n_c - 1)) / (1 - abs(mu))
            else:
                E = np.where(d >= 2, (lam ** m - mu) * lam ** m * mu ** np.maximum(d - 2, 0), 0)
                b = abs(lam) ** m * abs(lam ** m - mu) * (1 - abs(mu) ** (n_c - 2)) / (1 - abs(mu))
            e0 = np.linalg.svd(E)[2][0]
            p = Dahlquist(np.array([lam]), N, coarse=lambda l, span, mu=mu: np.full_like(l, mu))
            u_init = p.exact().copy()
            u_init[m::m, 0] += e0
            u, _ = MGRIT(p, levels=2, cf=m, relax=relax, skip=False, max_iter=1,
                         tol=0.0).solve(u_init)
            meas.append(np.linalg.norm(u[m::m, 0] - p.exact()[m::m, 0]))
            bnd.append(b)
        ax.loglog(-zs, bnd, "-", color=color, label=f"{relax}: bound")
        ax.loglog(-zs, meas, "o", color=color, mfc="none", label=f"{relax}: measured")
    ax.set_xlabel(r"$-z\,\delta t$  ($\lambda = e^{z\delta t}$, $\mu = 1/(1 - m z \delta t)$)")
    ax.set_ylabel("error reduction of one cycle")
    ax.set_title(f"two levels, cf = {m}, N = {N}")
    ax.legend(fontsize="small")
    save(fig, "mgrit_two_level_bound.png")


if __name__ == "__main__":
    finite_termination()
    residual_histories()
    cycle_diagram()
    two_level_bound()
