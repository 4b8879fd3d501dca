"""Add the accuracy of each speed to the committed `bench --what forward` records.

The records in ``forward_P*_T*.json`` were measured before the benchmark recorded its error
against serial. The inputs are deterministic (`mgrit_gru.tools.bench._x_rows` with seed 0, GRU
parameters from ``init_gru(seed=0)``), so the error of each record's solve can be recomputed
exactly on one process (the MGRIT iterates do not depend on the number of ranks, up to the
order of a sum): this script runs the record's serial and MGRIT forward passes, checks that its
final residual is the recorded one (so the inputs are the same), and adds
``rel_error_vs_serial``, ``h_T_rel_error_vs_serial``, ``relative_residual`` and
``speedup_kind`` (on one rank the speedup is batching over intervals: ``efficiency`` becomes
null there). Times are not touched. Rerun::

    python docs/benchmarks/forward_errors.py
"""
import json
from pathlib import Path

import numpy as np

from mgrit_gru import gru_forward, init_gru, mgrit_forward
from mgrit_gru.atomic import atomic_write
from mgrit_gru.tools.bench import _SPEEDUP_KIND, _rel_error, _relative_residual, _x_rows

HERE = Path(__file__).parent


def annotate(rec, cache):
    key = tuple(str(rec[k]) for k in ("seq_len", "batch", "hidden", "input", "layers", "cell",
                                      "dt", "dtype", "levels", "cf", "relax", "iters", "skip"))
    if key not in cache:
        dtype = np.dtype(rec["dtype"])
        T, B, H, I = rec["seq_len"], rec["batch"], rec["hidden"], rec["input"]
        params = init_gru(I, H, rec["layers"], seed=0, dtype=dtype)
        x = _x_rows(0, 0, T, B, I, dtype)
        y_ref, h_ref, _ = gru_forward(params, x, cell=rec["cell"], dt=rec["dt"])
        y, h, info = mgrit_forward(params, x, cell=rec["cell"], dt=rec["dt"],
                                   levels=rec["levels"], cf=rec["cf"], relax=rec["relax"],
                                   max_iter=rec["iters"], tol=0.0, skip=rec["skip"])
        cache[key] = dict(rel_error_vs_serial=_rel_error(y, y_ref),
                          h_T_rel_error_vs_serial=_rel_error(h, h_ref),
                          relative_residual=_relative_residual(info),
                          residual=info.final_residual)
    got = cache[key]
    if not np.isclose(got["residual"], rec["final_residual"], rtol=1e-3):
        raise SystemExit(f"T={rec['seq_len']} B={rec['batch']} H={rec['hidden']}: final residual "
                         f"{got['residual']:.6g} is not the recorded {rec['final_residual']:.6g}"
                         ": the inputs differ, not annotating")
    rec.update({k: v for k, v in got.items() if k != "residual"})
    rec["speedup_kind"] = _SPEEDUP_KIND[rec["ranks"] > 1]
    if rec["ranks"] == 1:
        rec["efficiency"] = None
    return rec


def main():
    cache = {}
    for path in sorted(HERE.glob("forward_P*_T*.json")):
        records = [annotate(r, cache) for r in json.loads(path.read_text())]
        with atomic_write(path) as f:
            json.dump(records, f, indent=1)
        for r in records:
            print(f"{path.name}: P={r['ranks']} T={r['seq_len']} B={r['batch']} H={r['hidden']}"
                  f" speedup {r['speedup']:.2f} ({r['speedup_kind'].split(' (')[0]}), error vs "
                  f"serial {r['rel_error_vs_serial']:.2e}, relative residual "
                  f"{r['relative_residual']:.2e}")


if __name__ == "__main__":
    main()
