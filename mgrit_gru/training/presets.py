"""Named sets of training options: ``train(preset="torchbraid")``, ``--preset torchbraid``.

A preset fills the options a user did not give; an option given explicitly wins. The resolved
values, not the preset's name alone, are what a run records (its header, its checkpoint).
"""
from __future__ import annotations

from ..checks import choice

PRESETS = {
    # the authors' code (TorchBraid's GRU example): the implicit cell on every level with fine
    # step 1, 2 layers of 100, 3 levels of cf 4; forward FCF; backward F on the fine level and
    # FCF below; 2 forward / 1 backward iterations at a tolerance nothing reaches; skip on both
    "torchbraid": dict(cell="implicit", dt=1.0, layers=2, hidden=100, solver="mgrit", levels=3,
                       cf=4, relax="FCF", bwd_relax="fine F", fwd_iters=2, bwd_iters=1,
                       tol=1e-16, skip=True, bwd_skip=True, coarse_input="inject"),
}


def resolve(name, given):
    """The options of preset ``name`` with ``given`` (explicit options) on top, plus
    ``preset=name``. ``bwd_relax="fine F"`` becomes F on the fine level and FCF on each of the
    run's coarser levels (however many ``levels`` the user asked for)."""
    choice(name, "preset", tuple(PRESETS))
    out = {**PRESETS[name], **given, "preset": name}
    if out.get("bwd_relax") == "fine F":
        out["bwd_relax"] = ["F"] + ["FCF"] * (int(out["levels"]) - 1)
    return out
