"""The plots a training run leaves in its folder: curves per epoch, MGRIT residual per step."""
from __future__ import annotations

import os

import numpy as np

from ..atomic import save_figure

CURVES_PNG = "curves.png"
RESIDUALS_PNG = "residuals.png"

def plot_run(out, history, steps, title=""):
    """Save ``OUT/curves.png`` (loss and accuracy per epoch) and ``OUT/residuals.png`` (the
    last forward/backward MGRIT residual of every training step); return both paths."""
    import matplotlib
    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    n_steps = len(steps["loss"])
    if n_steps and ep:
        per = n_steps / ep[-1]
        a1.plot(np.arange(1, n_steps + 1) / per, steps["loss"], color="0.75", lw=0.8,
                label="train loss (per step)")
    a1.plot(ep, [r["train_loss"] for r in history], "o-", label="train loss")
    nan = float("nan")                                       # no test split: null, not drawn
    if any(r["test_loss"] is not None for r in history):
        a1.plot(ep, [nan if r["test_loss"] is None else r["test_loss"] for r in history], "s-",
                label="test loss")
    a1.set_xlabel("epoch"), a1.set_ylabel("cross-entropy"), a1.legend()
    a2.plot(ep, [100 * r["train_acc"] for r in history], "o-", label="train")
    if any(r["test_acc"] is not None for r in history):
        a2.plot(ep, [nan if r["test_acc"] is None else 100 * r["test_acc"] for r in history],
                "s-", label="test")
    a2.set_xlabel("epoch"), a2.set_ylabel("accuracy (%)"), a2.set_ylim(0, 102), a2.legend()
    fig.suptitle(title or "training curves")
    fig.tight_layout()
    curves = os.path.join(out, CURVES_PNG)
    save_figure(fig, curves, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    k = np.arange(1, n_steps + 1)
    f, b = np.asarray(steps["fwd_residual"], float), np.asarray(steps["bwd_residual"], float)
    if n_steps and np.any(np.isfinite(f)):
        exact = not np.any((f > 0) | (b > 0))               # levels=1: every r = 0, no log axis
        draw = ax.plot if exact else ax.semilogy
        draw(k, f, label="forward solve")
        draw(k, b, label="backward (adjoint) solve")
        if exact:
            ax.text(0.5, 0.75, "one level: sequential solves, residual exactly 0", ha="center",
                    transform=ax.transAxes)
        ax.legend()
    else:
        ax.text(0.5, 0.5, "serial solver: no MGRIT residuals", ha="center",
                transform=ax.transAxes)
    ax.set_xlabel("training step"), ax.set_ylabel("final MGRIT residual ‖r‖₂")
    ax.set_title(title or "MGRIT residual per training step")
    fig.tight_layout()
    residuals = os.path.join(out, RESIDUALS_PNG)
    save_figure(fig, residuals, dpi=110)
    plt.close(fig)
    return curves, residuals
