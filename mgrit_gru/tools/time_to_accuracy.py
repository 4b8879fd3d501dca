"""Time to accuracy: does MGRIT *train* faster than serial BPTT, to the same test accuracy?

Every method trains the same classifier on the same data from the same initial weights, seed by
seed, with the same batch order; the methods differ only in how a step's gradient is computed
(serial BPTT, or MGRIT at a budget). After each epoch the record holds the wall seconds of
training so far (the steps alone: evaluation and the checks below are not counted), the test
accuracy of the weights (an exact forward pass; ``test_acc_own_forward``: with the method's
own forward solve), the train loss, the MGRIT iterations the steps used, the forward residual, and the
gradient's relative error and cosine against BPTT on a few fixed training batches at the
current weights. A method's time to accuracy is the training time of its first epoch whose test
accuracy reaches the target.

A method is ``"serial"``, ``"mgrit"`` (the solver options given), ``"mgrit:F/B"`` (F forward and
B backward iterations), with ``+noskip`` (no skip on the backward solve) or ``+skip``, or
``"mgrit:auto"`` (the accuracy-controlled solves of `SolverOptions.rtol`).
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import replace

import numpy as np

from ..atomic import atomic_write, save_figure
from ..checks import int_at_least

# mgrit:auto's tolerances: the residual down 100x in the forward solve and 10x in the
# backward, at most max_iters cycles each
AUTO = {"fwd_rtol": 1e-2, "bwd_rtol": 1e-1}
FIELDS = ("method", "seed", "epoch", "seconds", "test_acc", "train_loss", "fwd_iters",
          "bwd_iters", "grad_rel_error", "grad_cosine")


def parse_method(spec):
    """``(label, TrainConfig overrides)`` of a method spec (module docstring)."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"a method must be a non-empty string, got {spec!r}")
    if spec == "serial":
        return spec, {"solver": "serial"}
    name, _, budget = spec.partition(":")
    if name != "mgrit":
        raise ValueError(f"unknown method {spec!r}: use 'serial', 'mgrit', 'mgrit:F/B' "
                         "(e.g. mgrit:2/1+noskip) or 'mgrit:auto'")
    over = {"solver": "mgrit"}
    budget, plus, flag = budget.partition("+")
    if plus:
        if flag not in ("skip", "noskip"):
            raise ValueError(f"method {spec!r}: after '+' put skip or noskip, got {flag!r}")
        over["bwd_skip"] = flag == "skip"
    if budget == "auto":
        over.update(fwd_rtol=AUTO["fwd_rtol"], bwd_rtol=AUTO["bwd_rtol"])
    elif budget:
        f, slash, b = budget.partition("/")
        if not (slash and f.isdigit() and b.isdigit() and int(f) >= 1 and int(b) >= 1):
            raise ValueError(f"method {spec!r}: the budget must be F/B, forward and backward "
                             "iterations >= 1 (mgrit:2/1)")
        over.update(fwd_iters=int(f), bwd_iters=int(b), fwd_rtol=None, bwd_rtol=None)
    return spec, over


def _flat(grads):
    return np.concatenate([grads[k].ravel() for k in sorted(grads)])


def gradient_agreement(params, batches, opts, ref_opts, comm=None):
    """``(relative error, cosine)`` of the gradient ``opts`` computes against ``ref_opts``'s
    (BPTT) on ``batches`` (pairs of (this rank's input, full input) and labels), summed over the
    batches: ``||g - g_ref|| / ||g_ref||`` and ``g·g_ref / (||g|| ||g_ref||)``."""
    from ..training.model import forward_backward
    g = sum(_flat(forward_backward(params, x, y, opts, comm=comm).grads)
            for (x, _), y in batches)
    ref = sum(_flat(forward_backward(params, x_full, y, ref_opts).grads)
              for (_, x_full), y in batches)
    norm, ref_norm = np.linalg.norm(g), np.linalg.norm(ref)
    return (float(np.linalg.norm(g - ref) / ref_norm),
            float(g @ ref / (norm * ref_norm)) if norm > 0 else 0.0)


def train_one(cfg, comm=None, grad_batches=2, progress=None):
    """Train one method for one seed; yield one record per epoch (epoch 0: before training)."""
    from ..training.data import batches
    from ..training.datasets import _as_input, prepare_data
    from ..training.loop import evaluate_arrays, make_optimizer, train_step
    from ..training.model import init_classifier

    comm_w = None
    if comm is not None and cfg.solver == "mgrit":
        from ..mgrit import MPIComm
        comm_w = MPIComm(comm)
    data = prepare_data(cfg, comm if comm_w is not None else None)
    full = data if comm_w is None else prepare_data(replace(cfg, solver="serial"))
    dtype = np.dtype(cfg.dtype)
    params = init_classifier(data.input_size, cfg.hidden, cfg.layers, data.num_classes,
                             seed=cfg.seed, dtype=dtype)
    optimizer = make_optimizer(cfg, params)
    opts, ref_opts = cfg.solver_options(), replace(cfg, solver="serial").solver_options()
    fixed = [((_as_input(xb, data, dtype), xf.astype(dtype)), yb)
             for (xb, yb), (xf, _) in zip(
                 batches(data.x_train, data.y_train, cfg.batch_size, shuffle=False),
                 batches(full.x_train, full.y_train, cfg.batch_size, shuffle=False))
             ][:grad_batches]
    trained_s, steps = 0.0, 0

    def record(epoch, epoch_s, losses, fwd, bwd, residuals, bwd_residuals):
        # the weights' accuracy (exact forward pass), and with the method's own forward pass
        test_loss, test_acc = evaluate_arrays(params, full.x_test, full.y_test, ref_opts,
                                              dtype=dtype)
        own = (test_loss, test_acc) if cfg.solver == "serial" else evaluate_arrays(
            params, data.x_test, data.y_test, opts, comm=comm_w, start=data.start,
            seq_len=data.seq_len, dtype=dtype)
        err, cos = gradient_agreement(params, fixed, opts, ref_opts, comm_w)
        n = max(len(losses), 1)
        finite = [r for r in residuals if r is not None and math.isfinite(r)]
        b_finite = [r for r in bwd_residuals if r is not None and math.isfinite(r)]
        return {"epoch": epoch, "seconds": trained_s, "epoch_seconds": epoch_s,
                "test_acc": test_acc, "test_loss": test_loss, "test_acc_own_forward": own[1],
                "train_loss": float(np.mean(losses)) if losses else None, "steps": steps,
                "fwd_iters": sum(fwd) / n if losses else None,
                "bwd_iters": sum(bwd) / n if losses else None,
                "fwd_iters_total": sum(fwd), "bwd_iters_total": sum(bwd),
                "fwd_residual_last": finite[-1] if finite else None,
                "fwd_residual_max": max(finite) if finite else None,
                "bwd_residual_last": b_finite[-1] if b_finite else None,
                "bwd_residual_max": max(b_finite) if b_finite else None,
                "grad_rel_error": err, "grad_cosine": cos}

    yield record(0, 0.0, [], [], [], [], [])
    for epoch in range(1, cfg.epochs + 1):
        losses, fwd, bwd, residuals, bwd_residuals = [], [], [], [], []
        epoch_s = 0.0
        for xb, yb in batches(data.x_train, data.y_train, cfg.batch_size, shuffle=True,
                              seed=np.random.default_rng([cfg.seed, epoch])):
            x = _as_input(xb, data, dtype)
            t0 = time.perf_counter()
            res = train_step(params, optimizer, x, yb, opts, clip=cfg.clip, comm=comm_w)
            epoch_s += time.perf_counter() - t0
            losses.append(res.loss)
            fwd.append(res.fwd_iterations)
            bwd.append(res.bwd_iterations)
            residuals.append(res.fwd_residual)
            bwd_residuals.append(res.bwd_residual)
            steps += 1
        trained_s += epoch_s
        yield record(epoch, epoch_s, losses, fwd, bwd, residuals, bwd_residuals)
        if progress:
            progress()


def time_to_target(records, target):
    """Training seconds of the first trained epoch reaching ``target`` test accuracy, or None
    (epoch 0, the initial weights, does not count)."""
    hit = [r["seconds"] for r in records
           if r["epoch"] >= 1 and r["test_acc"] is not None and r["test_acc"] >= target]
    return hit[0] if hit else None


def summarise(records, target=None):
    """Per method: final accuracy and time to ``target`` (None: 95 % of serial's median final
    accuracy), median and range over seeds."""
    by = {}
    for r in records:
        by.setdefault(r["method"], {}).setdefault(r["seed"], []).append(r)
    if target is None:
        if "serial" not in by:
            raise ValueError("without --target the target is 95 % of serial's final accuracy: "
                             "include the method 'serial' or give --target")
        target = 0.95 * float(np.median([runs[-1]["test_acc"] for runs in
                                         by["serial"].values()]))
    out = []
    for method, seeds in by.items():
        finals = [runs[-1]["test_acc"] for runs in seeds.values()]
        times = [time_to_target(runs, target) for runs in seeds.values()]
        hit = [t for t in times if t is not None]
        errs = [r["grad_rel_error"] for runs in seeds.values() for r in runs]
        initial = [r["grad_rel_error"] for runs in seeds.values() for r in runs
                   if r["epoch"] == 0]
        out.append({"bench": "time-to-accuracy", "summary": True, "method": method,
                    "target": target, "seeds": len(seeds), "reached": len(hit),
                    "time_to_target_median": float(np.median(hit)) if hit else None,
                    "time_to_target_min": min(hit) if hit else None,
                    "time_to_target_max": max(hit) if hit else None,
                    "times_to_target": times,
                    "final_acc_median": float(np.median(finals)),
                    "final_acc_min": min(finals), "final_acc_max": max(finals),
                    "grad_rel_error_median": float(np.median(errs)),
                    "grad_rel_error_initial_median": float(np.median(initial))
                    if initial else None,
                    "seconds_per_epoch_median": float(np.median(
                        [r["epoch_seconds"] for runs in seeds.values() for r in runs[1:]]))})
    return out


def table(summary):
    """The summary as a text table: time to target beside the final accuracy and the
    gradient's error against BPTT (a time is never shown without its accuracy)."""
    lines = [f"target test accuracy {summary[0]['target']:.3f}",
             f"{'method':22s} {'reached':>7s} {'time to target (s)':>24s} "
             f"{'final acc (range)':>22s} {'grad err':>9s} {'s/epoch':>8s}"]
    for s in summary:
        t = ("-" if s["time_to_target_median"] is None else
             f"{s['time_to_target_median']:.2f} ({s['time_to_target_min']:.2f}-"
             f"{s['time_to_target_max']:.2f})")
        lines.append(f"{s['method']:22s} {s['reached']:>3d}/{s['seeds']:<3d} {t:>24s} "
                     f"{s['final_acc_median']:>7.3f} ({s['final_acc_min']:.3f}-"
                     f"{s['final_acc_max']:.3f}) {s['grad_rel_error_median']:>9.2e} "
                     f"{s['seconds_per_epoch_median']:>8.2f}")
    return "\n".join(lines)


def plot(records, summary=None, path=None):
    """Test accuracy against training seconds, one line per (method, seed)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    methods = list(dict.fromkeys(r["method"] for r in records))
    colors = plt.get_cmap("tab10")
    for i, m in enumerate(methods):
        seeds = sorted({r["seed"] for r in records if r["method"] == m})
        for j, s in enumerate(seeds):
            rs = [r for r in records if r["method"] == m and r["seed"] == s]
            ax.plot([r["seconds"] for r in rs], [r["test_acc"] for r in rs], "-o", ms=3,
                    color=colors(i % 10), alpha=0.8, label=m if j == 0 else None)
    if summary:
        ax.axhline(summary[0]["target"], color="0.5", ls="--", lw=1, label="target")
    ax.set_xlabel("training wall seconds")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if path:
        save_figure(fig, path)
    return fig


def run(methods=("serial", "mgrit"), seeds=3, first_seed=0, target=None, grad_batches=2,
        comm=None, out=None, progress=False, **config):
    """Train every method for every seed; return ``(records, summary)``.

    ``config``: `TrainConfig` fields shared by the methods (``preset`` too). ``out``: JSON
    lines, one per (method, seed, epoch) and then one summary per method, rewritten atomically
    after each epoch (rank 0), and the plot beside it (``.png``).
    """
    from ..training.config import TrainConfig
    from ..training.presets import resolve
    seeds = int_at_least(seeds, "seeds", 1)
    grad_batches = int_at_least(grad_batches, "grad_batches", 1)
    specs = [parse_method(m) for m in methods]
    if len({label for label, _ in specs}) != len(specs):
        raise ValueError(f"methods must differ, got {list(methods)}")
    preset = config.pop("preset", None)
    base = resolve(preset, config) if preset else config
    configs = [(label, TrainConfig(**{**base, **over})) for label, over in specs]
    rank = 0 if comm is None else comm.Get_rank()
    records = []
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm
        bar = tqdm(total=seeds * len(configs) * configs[0][1].epochs, desc="epochs",
                   leave=False)
    for seed in range(first_seed, first_seed + seeds):
        for label, cfg in configs:
            cfg = replace(cfg, seed=seed)
            for rec in train_one(cfg, comm, grad_batches, bar.update if bar else None):
                records.append({"bench": "time-to-accuracy", "method": label, "seed": seed,
                                **rec, "data": cfg.data, "seq_len": cfg.seq_len,
                                "hidden": cfg.hidden, "layers": cfg.layers, "cell": cfg.cell,
                                "ranks": 1 if comm is None or cfg.solver == "serial"
                                else comm.Get_size()})
                if out and rank == 0:
                    _write(out, records)
    if bar:
        bar.close()
    summary = summarise(records, target)
    if out and rank == 0:
        _write(out, records + summary)
        plot(records, summary, str(out).rsplit(".", 1)[0] + ".png")
    return records, summary


def _write(path, records):
    with atomic_write(path) as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def bench(methods="serial,mgrit", seeds=3, target=None, epochs=None,
                           seq_len=None, hidden=None, batch=None, layers=None, cell=None,
                           dtype=None, seed=0, data=None, num_sequences=None, distractors=None,
                           noise=None, lr=None, levels=None, cf=None, relax=None, tol=None,
                           skip=None, coarse_input=None, iters=None, bwd_iters=None,
                           max_iters=None, preset=None, grad_batches=2, backend=None, out=None,
                           progress=True):
    """Serial BPTT against MGRIT budgets: test accuracy against training seconds, seed by seed
    (`mgrit_gru.tools.time_to_accuracy`).

    ``methods``: comma-separated, e.g. ``serial,mgrit:2/1,mgrit:2/1+noskip,mgrit:auto``.
    Options left at None take the benchmark's defaults (the early-event task, T 256, H 32,
    1024 sequences, 10 epochs), then the ``preset``'s, then what is given. Under ``mpiexec -n
    P`` the MGRIT methods split the time axis. Yields one record per (method, seed, epoch), then
    one summary per method (time to ``target`` beside the final accuracy and the gradient's
    error against BPTT); rank 0 prints the table to stderr.
    """
    from .bench import _machine, _world
    defaults = dict(data="event", seq_len=256, hidden=32, num_sequences=1024, epochs=10)
    given = {k: v for k, v in dict(
        epochs=epochs, seq_len=seq_len, hidden=hidden, batch_size=batch, layers=layers,
        cell=cell, dtype=dtype, data=data, num_sequences=num_sequences, distractors=distractors,
        noise=noise, lr=lr, levels=levels, cf=cf, relax=relax, tol=tol, skip=skip,
        coarse_input=coarse_input, fwd_iters=iters, bwd_iters=bwd_iters, max_iters=max_iters,
        backend=backend).items() if v is not None}
    if preset is not None:
        from ..training.presets import resolve
        config = {**defaults, **resolve(preset, given)}
    else:
        config = {**defaults, **given}
    world = _world()
    records, summary = run(methods.split(",") if isinstance(methods, str) else methods,
                               seeds=seeds, first_seed=seed, target=target,
                               grad_batches=grad_batches, comm=world, out=out,
                               progress=progress, **config)
    if world is not None and world.Get_rank() != 0:
        return
    print(table(summary), file=sys.stderr)
    machine = _machine()
    for r in records + summary:
        yield {**r, **machine}
