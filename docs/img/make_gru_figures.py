"""Regenerate docs/img/classic_vs_implicit.png (README, docs/index.md, docs/theory/gru.md).

Run from the repository root:  python docs/img/make_gru_figures.py
Deterministic (fixed seed); the same GRU and input as tutorial 01.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mgrit_gru import gru_forward, init_gru  # noqa: E402

HERE = Path(__file__).resolve().parent


def classic_vs_implicit():
    """max |h_t| of one GRU (H = 8) at dt = 1, 2, 4, 8: the classic cell blows up (log axis),
    the implicit one stays bounded (its own, linear axis)."""
    T = 60
    params = init_gru(1, 8, seed=0)
    t = np.arange(T)
    x = 2.0 * np.sin(2 * np.pi * t / 20)[:, None, None]     # (T, B=1, I=1)
    fig, (ac, ai) = plt.subplots(1, 2, figsize=(10, 3.6))
    with np.errstate(over="ignore", invalid="ignore"):
        for dt in (1.0, 2.0, 4.0, 8.0):
            yc = gru_forward(params, x, cell="classic", dt=dt)[0]
            yi = gru_forward(params, x, cell="implicit", dt=dt)[0]
            ac.semilogy(t, np.abs(yc[:, 0, :]).max(axis=1), label=f"dt = {dt:g}")
            ai.plot(t, np.abs(yi[:, 0, :]).max(axis=1), label=f"dt = {dt:g}")
    ac.set(title="classic cell (explicit Euler): log axis", xlabel="time step t",
           ylabel="max |h_t|")
    ai.set(title="implicit cell: linear axis", xlabel="time step t", ylabel="max |h_t|",
           ylim=(0, 1.05))
    for ax in (ac, ai):
        ax.grid(True, which="major", alpha=0.25)
    ac.legend(fontsize="small", loc="upper left")
    fig.suptitle("the same GRU at growing step size dt: the classic cell blows up for dt > 2, "
                 "the implicit one stays in [-1, 1]", fontsize="medium")
    fig.tight_layout()
    fig.savefig(HERE / "classic_vs_implicit.png", dpi=90)
    plt.close(fig)
    print("wrote", HERE / "classic_vs_implicit.png")


if __name__ == "__main__":
    classic_vs_implicit()
