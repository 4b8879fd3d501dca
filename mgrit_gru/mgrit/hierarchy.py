"""The MGRIT grid hierarchy: levels, C- and F-points, and which rank owns which points.

Level 0 is the fine grid with points 0..N (N time steps). Level l+1 keeps every cf_l-th point of
level l (its C-points), so a level-l point i sits at fine index i * stride_l with
stride_l = cf_0 * ... * cf_{l-1}. Points after the last C-point of a level (when cf does not
divide N_l) are F-points that F-relaxation reaches from that last C-point.

Distribution (XBraid's rule): the fine grid's C-intervals [c cf_0, (c+1) cf_0) are dealt out in
contiguous blocks, the first (n_C mod P) ranks getting one more; the last rank also owns the
trailing points up to N. A rank owns a point on every level exactly when it owns that point's fine
index, so restriction and correction never communicate; a rank can own no point on a coarse level.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import int_at_least


@dataclass(frozen=True)
class Level:
    """One level of the hierarchy, seen from one rank.

    Attributes
    ----------
    index : int
        Level number (0 = fine).
    n : int
        Number of intervals N_l (points 0..n).
    stride : int
        Fine steps per step on this level (the coarse step's dt in units of the fine dt).
    cf : int or None
        Coarsening factor to the next level (None on the coarsest).
    lo, hi : int
        This rank's points lo..hi (inclusive); ``lo > hi`` when it owns none.
    left, right : int or None
        The nearest ranks to the left / right owning points on this level.
    """

    index: int
    n: int
    stride: int
    cf: int | None
    lo: int
    hi: int
    left: int | None
    right: int | None

    @property
    def empty(self):
        return self.lo > self.hi

    @property
    def count(self):
        return max(0, self.hi - self.lo + 1)


def coarsening_factors(cf, levels):
    """``cf`` as the list of ``levels - 1`` coarsening factors (integers >= 2): one factor for
    every coarsening, or one per coarsening (a list, tuple or 1-D array; a single entry counts
    for all). ValueError naming ``cf`` otherwise."""
    if isinstance(cf, np.ndarray) and cf.ndim == 1:
        cf = cf.tolist()
    if not isinstance(cf, (list, tuple)):
        return [int_at_least(cf, "cf", 2)] * (levels - 1)
    cfs = [int_at_least(c, "cf", 2) for c in cf]
    if len(cfs) == 1:
        cfs = cfs * (levels - 1)
    if len(cfs) != levels - 1:
        raise ValueError(f"cf has {len(cfs)} entries; {levels} levels need {levels - 1} (one "
                         "per coarsening)")
    return cfs


class Hierarchy:
    """Levels and ownership for N time steps, coarsening factors ``cf`` and ``levels`` levels.

    Parameters
    ----------
    n_steps : int
        Fine time steps N (sequence length).
    cf : int or sequence of int
        Coarsening factor, >= 2; one per coarsening (levels - 1 of them) or one for all.
    levels : int
        Number of levels, >= 1 (1 = plain sequential stepping).
    min_coarse : int
        Fewest intervals allowed on the coarsest level.
    rank, size : int
        This rank and the number of ranks.
    fine_ranges : list of (lo, hi), optional
        Each rank's fine points instead of XBraid's rule: contiguous, covering 0..n_steps in rank
        order (the adjoint solve mirrors the forward solve's ownership this way).

    Raises
    ------
    ValueError
        For cf < 2, levels < 1, a hierarchy deeper than ``n_steps`` allows, or more ranks than
        fine C-intervals.
    """

    def __init__(self, n_steps, cf=4, levels=3, min_coarse=1, rank=0, size=1,
                 fine_ranges=None):
        n_steps = int_at_least(n_steps, "n_steps (sequence length)", 1)
        levels = int_at_least(levels, "levels", 1)
        min_coarse = int_at_least(min_coarse, "min_coarse", 1)
        cfs = coarsening_factors(cf, levels)
        ns, strides = [n_steps], [1]
        for l, c in enumerate(cfs):
            n_next = ns[-1] // c
            if n_next < min_coarse:
                raise ValueError(
                    f"levels={levels} with cf={cfs} is deeper than T={n_steps} allows: level "
                    f"{l + 1} would have {n_next} interval(s) (< min_coarse={min_coarse}); "
                    f"use fewer levels, a smaller cf or a longer sequence")
            ns.append(n_next)
            strides.append(strides[-1] * c)
        self.n_steps, self.cfs, self.ns, self.strides = n_steps, cfs, ns, strides
        self.rank, self.size = int(rank), int_at_least(size, "size", 1)
        if fine_ranges is not None:
            self.fine_ranges = [(int(a), int(b)) for a, b in fine_ranges]
            ok = (len(self.fine_ranges) == self.size and self.fine_ranges[0][0] == 0
                  and self.fine_ranges[-1][1] == n_steps
                  and all(a <= b for a, b in self.fine_ranges)
                  and all(self.fine_ranges[p + 1][0] == self.fine_ranges[p][1] + 1
                          for p in range(self.size - 1)))
            if not ok:
                raise ValueError(f"fine_ranges must be {self.size} non-empty contiguous ranges "
                                 f"covering points 0..{n_steps}, got {fine_ranges}")
        else:
            # fine ownership: blocks of whole C-intervals (one interval per point if one level)
            cf0 = cfs[0] if cfs else 1
            n_c = -(-n_steps // cf0)                         # ceil: the last may be partial
            if self.size > n_c:
                what = (f"{n_c} fine C-intervals (T={n_steps}, cf={cf0})" if cfs else
                        f"{n_c} time steps (one level: each rank needs a step)")
                raise ValueError(f"{self.size} ranks but only {what}: use at most {n_c} "
                                 "ranks")
            q, rem = divmod(n_c, self.size)
            starts = [p * q + min(p, rem) for p in range(self.size + 1)]
            if cfs:
                self.fine_ranges = [(starts[p] * cf0, min(starts[p + 1] * cf0 - 1, n_steps))
                                    for p in range(self.size)]
                self.fine_ranges[-1] = (self.fine_ranges[-1][0], n_steps)
            else:                                            # one level: deal out the steps,
                self.fine_ranges = [(starts[p] + 1, starts[p + 1])   # points 1..T, so that every
                                    for p in range(self.size)]       # rank has some (T = P too)
                self.fine_ranges[0] = (0, self.fine_ranges[0][1])
        self.levels = [self._level(l) for l in range(levels)]

    def owned(self, level, rank):
        """Points lo..hi of ``level`` owned by ``rank`` (lo > hi: none)."""
        f_lo, f_hi = self.fine_ranges[rank]
        s = self.strides[level]
        return -(-f_lo // s), f_hi // s

    def _level(self, l):
        lo, hi = self.owned(l, self.rank)
        has = [self.owned(l, p)[0] <= self.owned(l, p)[1] for p in range(self.size)]
        left = next((p for p in range(self.rank - 1, -1, -1) if has[p]), None)
        right = next((p for p in range(self.rank + 1, self.size) if has[p]), None)
        cf = self.cfs[l] if l < len(self.cfs) else None
        return Level(l, self.ns[l], self.strides[l], cf, lo, hi, left, right)

    def __repr__(self):
        return (f"Hierarchy(T={self.n_steps}, levels={len(self.levels)}, cf={self.cfs}, "
                f"intervals per level={self.ns}, ranks={self.size})")
