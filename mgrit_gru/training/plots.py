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

    fig = plot_residuals(steps, title)
    residuals = os.path.join(out, RESIDUALS_PNG)
    save_figure(fig, residuals, dpi=110)
    plt.close(fig)
    return curves, residuals


RESIDUALS_CAPTION = (
    "The last residual of each solve's fixed budget of MGRIT cycles. Its absolute size grows "
    "during training: the states and the weights grow as the network learns, and the budget "
    "does not drive the residual to zero. The right panel divides by the level of the first "
    "steps.")


def _first_level(r, n=5):
    """The median of the first ``n`` finite, positive residuals (None when there is none)."""
    r = r[np.isfinite(r) & (r > 0)][:n]
    return float(np.median(r)) if r.size else None


def plot_residuals(steps, title=""):
    """The figure of ``residuals.png``: the last forward/backward MGRIT residual of every
    training step on a log axis (left) and the same divided by the level of the first steps
    (right), with a caption saying what is drawn. Returns the Figure."""
    import textwrap

    import matplotlib.pyplot as plt

    n_steps = len(steps["loss"])
    k = np.arange(1, n_steps + 1)
    f, b = np.asarray(steps["fwd_residual"], float), np.asarray(steps["bwd_residual"], float)
    fig, (ax, rel) = plt.subplots(1, 2, figsize=(10, 4.4))
    exact = not np.any((f > 0) | (b > 0))                   # levels=1: every r = 0, no log axis
    if n_steps and np.any(np.isfinite(f)) and not exact:
        for r, label in ((f, "forward solve"), (b, "backward (adjoint) solve")):
            ax.semilogy(k, r, label=label)
            level = _first_level(r)
            if level is not None:
                rel.plot(k, r / level, label=label)
        rel.axhline(1.0, color="0.5", lw=0.8, ls=":")
        ax.legend(fontsize="small")
        rel.legend(fontsize="small")
        caption = RESIDUALS_CAPTION
    elif n_steps and np.any(np.isfinite(f)):
        ax.plot(k, f, label="forward solve")
        ax.plot(k, b, label="backward (adjoint) solve")
        ax.legend(fontsize="small")
        rel.axis("off")
        caption = "One level: sequential solves, so every residual is exactly 0."
    else:
        ax.text(0.5, 0.5, "serial solver: no MGRIT residuals", ha="center",
                transform=ax.transAxes)
        rel.axis("off")
        caption = "The serial solver runs no MGRIT cycle: there is no residual to draw."
    ax.set_xlabel("training step"), ax.set_ylabel("final MGRIT residual ‖r‖₂")
    ax.set_title("absolute (log axis)", fontsize="medium")
    ax.grid(True, which="both", alpha=0.25)
    rel.set_xlabel("training step"), rel.set_ylabel("‖r‖₂ / median of the first 5 steps")
    rel.set_title("relative to the first steps", fontsize="medium")
    rel.grid(True, alpha=0.25)
    fig.suptitle(title or "MGRIT residual per training step")
    fig.text(0.5, 0.01, "\n".join(textwrap.wrap(caption, 130)), ha="center", va="bottom",
             fontsize="small", color="0.25")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig
