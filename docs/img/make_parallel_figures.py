"""Regenerate the pictures of the time axis on P ranks (docs/theory/mgrit.md, backward.md).

Run from the repository root:  python docs/img/make_parallel_figures.py
Ownership comes from `mgrit_gru.mgrit.hierarchy.Hierarchy`; writes mgrit_parallel.png and
adjoint_reversed_time.png next to this file.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

from mgrit_gru.mgrit.hierarchy import Hierarchy  # noqa: E402

HERE = Path(__file__).resolve().parent
RANK_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple")


def save(fig, name):
    fig.savefig(HERE / name, dpi=90, bbox_inches="tight")
    plt.close(fig)
    print("wrote", HERE / name)


def _arrow(ax, a, b, color, rad=-0.45, lw=1.0, style="-|>"):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=9, color=color, lw=lw,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=5, shrinkB=5))


def owner_of(hier, level, j):
    """The rank owning point j of ``level``."""
    return next(p for p in range(hier.size)
                if hier.owned(level, p)[0] <= j <= hier.owned(level, p)[1])


def mgrit_parallel(n_steps=32, cf=4, levels=3, size=3):
    """The levels of one MGRIT hierarchy drawn on the fine time axis, coloured by owner rank:
    C-points (squares), F-points (circles), the steps that need a neighbour's point (red: one
    message each), restriction / correction (grey, never a message)."""
    h = Hierarchy(n_steps, cf=cf, levels=levels, size=size)
    fig, ax = plt.subplots(figsize=(12, 4.6))
    for p, (lo, hi) in enumerate(h.fine_ranges):
        ax.axvspan(lo - 0.5, hi + 0.5, color=RANK_COLORS[p], alpha=0.07, lw=0)
        ax.text(0.5 * (lo + hi), -0.75, f"rank {p}: fine points {lo}..{hi}", ha="center",
                color=RANK_COLORS[p], fontsize=9)
    for l in range(levels):
        s = h.strides[l]
        y = l
        for j in range(h.ns[l] + 1):
            p = owner_of(h, l, j)
            is_c = l + 1 < levels and j % h.cfs[l] == 0
            ax.plot(j * s, y, "s" if is_c else "o", ms=8 if is_c else 5, color=RANK_COLORS[p],
                    mfc=RANK_COLORS[p] if is_c else "white", mew=1.5, zorder=3)
            if j and owner_of(h, l, j - 1) != p:                # the step into j crosses ranks
                how = ("coarsest solve" if l + 1 == levels else
                       "C-relaxation" if is_c else "F-relaxation")
                _arrow(ax, ((j - 1) * s, y), (j * s, y), "tab:red", lw=1.6)
                ax.text((j - 0.5) * s, y - 0.42, f"send $u_{{{(j - 1) * s}}}$\n({how})",
                        ha="center", va="bottom", color="tab:red", fontsize=8)
            if l + 1 < levels and is_c:                          # restriction / correction
                ax.plot([j * s, j * s], [y + 0.12, y + 0.88], color="0.7", lw=0.8, ls=":",
                        zorder=1)
    ax.set_yticks(range(levels),
                  [f"level {l}" + (" (fine)" if l == 0 else " (coarsest)" if l == levels - 1
                                   else "") + f"\nstep = {h.strides[l]} fine steps"
                   for l in range(levels)])
    ax.set_ylim(levels - 0.4, -1.0)
    ax.set_xlim(-1, n_steps + 1)
    ax.set_xlabel("fine time index i")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"one MGRIT hierarchy on P = {size} ranks: N = {n_steps}, cf = {cf}, "
                 f"{levels} levels\n■ C-point, ○ F-point, colour: the owner rank; red: a state "
                 "sent to the right neighbour; dotted: restriction and correction (same rank, "
                 "no message)", fontsize=9)
    save(fig, "mgrit_parallel.png")


def adjoint_reversed_time(n_steps=12, cf=2, size=3):
    """Forward points i = 0..N on top, adjoint points s = N - i below (the same column), coloured
    by owner rank; forward steps run right, the adjoint steps left, i.e. forward in s."""
    h = Hierarchy(n_steps, cf=cf, levels=2, size=size)

    def fwd_owner(i):
        return owner_of(h, 0, i)

    fig, ax = plt.subplots(figsize=(11, 3.4))
    for i in range(n_steps + 1):
        s = n_steps - i
        bwd = fwd_owner(min(i + 1, n_steps))                    # holds step i's state and gates
        ax.plot(i, 1, "o", ms=7, color=RANK_COLORS[fwd_owner(i)], zorder=3)
        ax.plot(i, 0, "o", ms=7, color=RANK_COLORS[bwd], zorder=3)
        ax.text(i, 1.2, f"$u_{{{i}}}$", ha="center", fontsize=9)
        ax.text(i, -0.3, f"$\\mu_{{{s}}}$", ha="center", fontsize=9)
        if i < n_steps:
            _arrow(ax, (i, 1), (i + 1, 1), "0.4", rad=0.0)
            _arrow(ax, (i + 1, 0), (i, 0), "0.4", rad=0.0)
    ax.text(n_steps + 0.6, 1, "forward: $u_{i+1} = \\Phi_i(u_i)$, i = 0..N-1", va="center",
            fontsize=9)
    ax.text(n_steps + 0.6, 0, "adjoint: $\\mu_{s+1} = \\Psi_s(\\mu_s)$, s = N - i\n"
            "starts at $\\mu_0 = \\lambda_N$ (right end)", va="center", fontsize=9)
    ax.annotate("", xy=(0, -0.62), xytext=(n_steps, -0.62),
                arrowprops=dict(arrowstyle="-|>", color="tab:red"))
    ax.text(n_steps / 2, -0.8, "adjoint time s = 0, 1, .., N runs right to left", ha="center",
            color="tab:red", fontsize=9)
    ax.set_xticks(range(n_steps + 1))
    ax.set_xlabel("forward index i  (colour: the rank owning the point; each rank keeps the "
                  "states and gates its adjoint steps need)")
    ax.set_yticks([0, 1], ["adjoint", "forward"])
    ax.set_ylim(-1.0, 1.5)
    ax.set_xlim(-0.7, n_steps + 6.5)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"the adjoint solved in reversed time: N = {n_steps}, P = {size} ranks",
                 fontsize=10)
    save(fig, "adjoint_reversed_time.png")


if __name__ == "__main__":
    mgrit_parallel()
    adjoint_reversed_time()
