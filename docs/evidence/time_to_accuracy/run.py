"""Time to accuracy on the early-event task: serial BPTT against MGRIT budgets.

One command re-runs every measurement of docs/evidence/time_to_accuracy.md::

    python docs/evidence/time_to_accuracy/run.py                 # every part
    python docs/evidence/time_to_accuracy/run.py sweep ranks     # some parts
    python docs/evidence/time_to_accuracy/run.py --plots-only    # tables and plots from the JSONL

Parts (each writes its JSON lines, tables and plots into this folder):

- ``lengths``: T = 32 and T = 1024, classic cell (serial, mgrit, mgrit:2/1+noskip, mgrit:auto)
  and the torchbraid preset with H = 32 (serial, mgrit);
- ``ranks``: T = 64, serial and mgrit on one rank, mgrit on two (``mpiexec -n 2``);
- ``sweep``: T = 64, forward iterations 1-4 x backward iterations 1-3 x backward skip on/off;
- ``across_T``: T = 32 ... 256, classic cell (serial, mgrit, mgrit:2/1+noskip, mgrit:auto)
  and the torchbraid preset's cell with H = 32 (serial, mgrit, mgrit:2/1+noskip): epoch of first
  test accuracy >= 90 %, gradient cosine and forward residual through training;
- ``seeds``: T = 64, ten seeds: serial, mgrit (2/1) and mgrit:3/2 (the sweep's best budget);
- ``memory``: the adjoint that reaches each time step (||dL/dx_t||) of BPTT and of MGRIT with
  and without backward skip, along MGRIT's training run at T = 64;
- ``reach``: the same at the initial weights for T = 32 ... 1024, also for mgrit:3/2.

Every training run is ``mgrit-gru bench --what time-to-accuracy`` (a subprocess, one BLAS thread
per process); ``memory`` and ``reach`` call the package directly. A failed run stops the script
with an error; nothing is skipped. ``runs.json`` records each invocation's command and wall time.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = 0.9
EVENT_WINDOW = 12                       # the class event lies in steps 0..11 (early_event)
# the shared settings: the early-event task with 4 distractors, H 32, batch 32, lr 1e-2, Adam,
# float64, 80 % of the sequences for training
BASE = {"--data": "event", "--hidden": 32, "--batch": 32, "--lr": 1e-2, "--target": TARGET,
        "--seeds": 3, "--seed": 0, "--epochs": 10, "--num-sequences": 2048}
CLASSIC = ["serial", "mgrit", "mgrit:2/1+noskip", "mgrit:auto"]
PRESET = {"--preset": "torchbraid", "--hidden": 32}
ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "MPLBACKEND": "Agg"}

# (name, methods, ranks, flags on top of BASE) per part
# T = 32 gets 20 epochs (serial needs more than 10 there); T = 1024 is sized down for cost
LENGTHS_T32 = {"--seq-len": 32, "--epochs": 20}
LENGTHS_T1024 = {"--seq-len": 1024, "--num-sequences": 512, "--epochs": 3}
PARTS = {
    "lengths": [
        ("lengths_T32_classic", CLASSIC, 1, LENGTHS_T32),
        ("lengths_T32_torchbraid", ["serial", "mgrit"], 1, {**LENGTHS_T32, **PRESET}),
        ("lengths_T1024_classic", CLASSIC, 1, LENGTHS_T1024),
        ("lengths_T1024_torchbraid", ["serial", "mgrit"], 1, {**LENGTHS_T1024, **PRESET}),
    ],
    "ranks": [
        ("ranks_T64_P1", ["serial", "mgrit"], 1, {"--seq-len": 64}),
        ("ranks_T64_P2", ["mgrit"], 2, {"--seq-len": 64}),
    ],
    "sweep": [
        ("sweep_T64", ["serial"] + [f"mgrit:{f}/{b}{s}" for s in ("", "+noskip")
                                    for f in (1, 2, 3, 4) for b in (1, 2, 3)],
         1, {"--seq-len": 64}),
    ],
    "across_T": [
        *[(f"across_T{T}_classic", CLASSIC, 1, {"--seq-len": T}) for T in (32, 64, 128, 256)],
        *[(f"across_T{T}_implicit", ["serial", "mgrit", "mgrit:2/1+noskip"], 1,
           {"--seq-len": T, **PRESET}) for T in (32, 64, 128, 256)],
    ],
    "seeds": [
        ("seeds_T64", ["serial", "mgrit", "mgrit:3/2"], 1, {"--seq-len": 64, "--seeds": 10}),
    ],
    "memory": [],
    "reach": [],
}


def command(name, methods, ranks, flags):
    cmd = ["mpiexec", "-n", str(ranks)] if ranks > 1 else []
    cmd += ["mgrit-gru", "bench", "--what", "time-to-accuracy", "--no-progress",
            "--methods", ",".join(methods)]
    for k, v in {**BASE, **flags}.items():
        cmd += [k, str(v)]
    return cmd + ["--out", os.path.join(HERE, name + ".jsonl")]


def shown(cmd):
    """The command as the page shows it (paths relative to the repository root)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(HERE))) + os.sep
    return " ".join(c.replace(root, "") for c in cmd)


def log_run(name, entry):
    path = os.path.join(HERE, "runs.json")
    runs = json.load(open(path)) if os.path.exists(path) else {}
    runs[name] = entry
    with open(path, "w") as f:
        json.dump(runs, f, indent=1)


def machine():
    return {"machine": platform.machine(), "cpus": os.cpu_count(), "numpy": np.__version__,
            "python": platform.python_version(), **ENV,
            "date": datetime.date.today().isoformat()}


def bench(name, methods, ranks, flags):
    cmd = command(name, methods, ranks, flags)
    print("$", shown(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, **ENV}, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    log_run(name, {"command": shown(cmd), "wall_s": round(wall, 1), **machine()})
    print(f"  {name}: {wall:.0f} s", flush=True)


# ---------------------------------------------------------------- reading and tables


def load(name):
    """``(records, summaries)`` of ``name.jsonl``."""
    recs, summ = [], []
    with open(os.path.join(HERE, name + ".jsonl")) as f:
        for line in f:
            r = json.loads(line)
            (summ if r.get("summary") else recs).append(r)
    if not summ:
        raise RuntimeError(f"{name}.jsonl has no summary: the run did not finish")
    return recs, summ


def runs_of(recs):
    """{method: {seed: [records by epoch]}} in the file's order."""
    out = {}
    for r in recs:
        out.setdefault(r["method"], {}).setdefault(r["seed"], []).append(r)
    return out


def first_epoch(runs, target=TARGET):
    hit = [r["epoch"] for r in runs if r["epoch"] >= 1 and r["test_acc"] >= target]
    return hit[0] if hit else None


def fmt_range(vals, f="{:.2f}"):
    if not vals:
        return "-"
    med = float(np.median(vals))
    return f"{f.format(med)} ({f.format(min(vals))}-{f.format(max(vals))})"


def method_row(method, seeds, summary):
    """One table row: everything about a method over its seeds."""
    finals = [runs[-1]["test_acc"] for runs in seeds.values()]
    epochs = [first_epoch(runs) for runs in seeds.values()]
    times = [t for t in summary["times_to_target"] if t is not None]
    trained = [r for runs in seeds.values() for r in runs[1:]]
    res_final = [runs[-1]["fwd_residual_max"] for runs in seeds.values()
                 if runs[-1]["fwd_residual_max"] is not None]
    err = [r["grad_rel_error"] for r in trained]
    cos = [r["grad_cosine"] for r in trained]
    fwd = [r["fwd_iters"] for r in trained if r["fwd_iters"] is not None]
    bwd = [r["bwd_iters"] for r in trained if r["bwd_iters"] is not None]
    return {
        "method": method,
        "final acc (%)": fmt_range([100 * a for a in finals], "{:.1f}"),
        "reached 90 %": f"{sum(e is not None for e in epochs)}/{len(epochs)}",
        "epoch of 90 % per seed": ", ".join("never" if e is None else str(e) for e in epochs),
        "seconds to 90 %": fmt_range(times),
        "grad err (median)": f"{np.median(err):.2g}",
        "grad cosine (median)": f"{np.median(cos):.2f}",
        "s/epoch": f"{summary['seconds_per_epoch_median']:.2f}",
        "iters fwd/bwd": (f"{np.mean(fwd):.1f}/{np.mean(bwd):.1f}" if fwd and method != "serial"
                          else "-"),
        "fwd residual, last epoch": fmt_range(res_final, "{:.2g}") if res_final else "-",
    }


def md_table(rows, cols=None):
    cols = cols or list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def summary_table(name):
    recs, summ = load(name)
    by = runs_of(recs)
    s_by = {s["method"]: s for s in summ}
    return [method_row(m, seeds, s_by[m]) for m, seeds in by.items()]


def write_tables(part, sections):
    """``part_tables.md``: one markdown table per (title, rows)."""
    text = [f"<!-- written by run.py {part}; numbers from the JSONL files -->"]
    for title, rows in sections:
        text += ["", f"### {title}", "", md_table(rows)]
    path = os.path.join(HERE, f"{part}_tables.md")
    with open(path, "w") as f:
        f.write("\n".join(text) + "\n")
    print(open(path).read())


# ---------------------------------------------------------------- plots


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, name):
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, name), dpi=110)
    print("wrote", name)


COLORS = {"serial": "k", "mgrit": "C3", "mgrit:2/1+noskip": "C0", "mgrit:auto": "C2",
          "mgrit:3/2": "C1", "mgrit:3/2+noskip": "C4"}


def acc_vs_time(ax, name, title):
    recs, _ = load(name)
    for i, (m, seeds) in enumerate(runs_of(recs).items()):
        for j, runs in enumerate(seeds.values()):
            ax.plot([r["seconds"] for r in runs], [100 * r["test_acc"] for r in runs], "-o",
                    ms=2.5, lw=1, alpha=0.8, color=COLORS.get(m, f"C{i % 10}"),
                    label=m if j == 0 else None)
    ax.axhline(100 * TARGET, color="0.6", ls="--", lw=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("training wall seconds")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def acc_vs_epoch(ax, name, title):
    recs, _ = load(name)
    for i, (m, seeds) in enumerate(runs_of(recs).items()):
        for j, runs in enumerate(seeds.values()):
            ax.plot([r["epoch"] for r in runs], [100 * r["test_acc"] for r in runs], "-o",
                    ms=2.5, lw=1, alpha=0.8, color=COLORS.get(m, f"C{i % 10}"),
                    label=m if j == 0 else None)
    ax.axhline(100 * TARGET, color="0.6", ls="--", lw=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def report_lengths():
    names = [n for n, *_ in PARTS["lengths"]]
    write_tables("lengths", [(n, summary_table(n)) for n in names])
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    for ax, (n, _, _, flags) in zip(axes.ravel(), PARTS["lengths"]):
        flags = {**BASE, **flags}
        net = ("torchbraid preset, H = 32" if "--preset" in flags
               else "classic cell, 1 layer, H = 32")
        acc_vs_time(ax, n, f"T = {flags['--seq-len']}, {net}: {flags['--num-sequences']} "
                           f"sequences, {flags['--epochs']} epochs")
    _save(fig, "lengths.png")


def report_ranks():
    rows = []
    for n, *_ in PARTS["ranks"]:
        ranks = 2 if n.endswith("P2") else 1
        for r in summary_table(n):
            rows.append({"ranks": ranks, **r})
    write_tables("ranks", [("T = 64, one and two ranks", rows)])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for n, *_ in PARTS["ranks"]:
        recs, _ = load(n)
        P = 2 if n.endswith("P2") else 1
        for m, seeds in runs_of(recs).items():
            c = "k" if m == "serial" else ("C3" if P == 1 else "C1")
            for j, runs in enumerate(seeds.values()):
                ax.plot([r["seconds"] for r in runs], [100 * r["test_acc"] for r in runs],
                        marker="o", ms=2.5, lw=1, color=c, ls="-" if P == 1 else "--",
                        label=f"{m}, {P} rank{'s' if P > 1 else ''}" if j == 0 else None)
    ax.axhline(100 * TARGET, color="0.6", ls=":", lw=0.8)
    ax.set_xlabel("training wall seconds")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("T = 64: one rank and two (mpiexec -n 2)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, "ranks.png")


def report_sweep():
    name = PARTS["sweep"][0][0]
    rows = summary_table(name)
    write_tables("sweep", [("T = 64: forward x backward iterations, backward skip on/off", rows)])
    recs, summ = load(name)
    by = runs_of(recs)
    s_by = {s["method"]: s for s in summ}
    plt = _plt()
    metrics = [("final test accuracy, median (%)",
                lambda m: np.median([100 * r[-1]["test_acc"] for r in by[m].values()]), "{:.0f}"),
               ("seeds reaching 90 %",
                lambda m: sum(first_epoch(r) is not None for r in by[m].values()), "{:.0f}"),
               ("gradient error vs BPTT, median",
                lambda m: np.median([x["grad_rel_error"] for r in by[m].values()
                                     for x in r[1:]]), "{:.2g}"),
               ("seconds per epoch, median",
                lambda m: s_by[m]["seconds_per_epoch_median"], "{:.2f}")]
    rows = (("", "backward skip on"), ("+noskip", "backward skip off"))
    grids = {(suffix, title): np.array([[fn(f"mgrit:{fi}/{b}{suffix}") for b in (1, 2, 3)]
                                        for fi in (1, 2, 3, 4)], dtype=float)
             for suffix, _ in rows for title, fn, _ in metrics}
    fig, axes = plt.subplots(2, len(metrics), figsize=(4 * len(metrics), 6))
    for row, (suffix, label) in enumerate(rows):
        for col, (title, fn, f) in enumerate(metrics):
            grid = grids[suffix, title]
            ax = axes[row, col]
            if "error" in title:
                from matplotlib.colors import LogNorm
                kw = {"norm": LogNorm(vmin=1e-3, vmax=10)}
            elif "accuracy" in title:
                kw = {"vmin": 20, "vmax": 100}
            elif "seeds" in title:
                kw = {"vmin": 0, "vmax": 3}
            else:                                            # one scale for both rows
                kw = {"vmin": 0, "vmax": max(grids[x, title].max() for x, _ in rows)}
            im = ax.imshow(grid, cmap="viridis", aspect="auto", **kw)
            for (i, j), v in np.ndenumerate(grid):
                ax.text(j, i, f.format(v), ha="center", va="center", fontsize=8,
                        color="w" if im.norm(v) < 0.6 else "k")
            ax.set_xticks(range(3), ["1", "2", "3"])
            ax.set_yticks(range(4), ["1", "2", "3", "4"])
            ax.set_xlabel("backward iterations")
            ax.set_ylabel("forward iterations")
            ax.set_title(f"{title}\n{label}", fontsize=9)
            fig.colorbar(im, ax=ax, shrink=0.8)
    _save(fig, "sweep.png")


def across_names():
    return [n for n, *_ in PARTS["across_T"]]


def report_across_T():
    sections, first = [], []
    for n in across_names():
        recs, summ = load(n)
        rows = summary_table(n)
        sections.append((n, rows))
        T, cell = recs[0]["seq_len"], n.rsplit("_", 1)[1]
        for (m, seeds), row in zip(runs_of(recs).items(), rows):
            first.append({"T": T, "cell": cell, "method": m,
                          "epoch of first test acc >= 90 % (seeds 0, 1, 2)": ", ".join(
                              "never" if e is None else str(e)
                              for e in (first_epoch(r) for r in seeds.values())),
                          "seconds to 90 %": row["seconds to 90 %"],
                          "final acc (%) per seed": ", ".join(
                              f"{100 * r[-1]['test_acc']:.0f}" for r in seeds.values()),
                          "grad err (median)": row["grad err (median)"],
                          "grad cosine (median)": row["grad cosine (median)"],
                          "s/epoch": row["s/epoch"],
                          "max fwd residual per seed": ", ".join(
                              "-" if m == "serial" else
                              f"{max(x['fwd_residual_max'] for x in r[1:]):.2g}"
                              for r in seeds.values())})
    write_tables("across_T", [("epoch of first test accuracy >= 90 %", first)] + sections)
    plt = _plt()
    cells = ("classic", "implicit")
    Ts = sorted({int(n.split("_T")[1].split("_")[0]) for n in across_names()})
    for what, key, log in (("grad_cosine", "gradient cosine vs BPTT", False),
                           ("fwd_residual_max", "max forward residual", True),
                           ("test_acc", "test accuracy", False)):
        fig, axes = plt.subplots(len(cells), len(Ts), figsize=(3.2 * len(Ts), 5.6),
                                 sharex=True, sharey=True)
        for i, cell in enumerate(cells):
            for j, T in enumerate(Ts):
                ax = axes[i, j]
                recs, _ = load(f"across_T{T}_{cell}")
                for m, seeds in runs_of(recs).items():
                    if m == "serial" and what != "test_acc":
                        continue
                    for k, runs in enumerate(seeds.values()):
                        pts = [(r["epoch"], r[what]) for r in runs
                               if r[what] is not None and (what != "fwd_residual_max"
                                                           or r["epoch"] >= 1)]
                        ax.plot(*zip(*pts), "-o", ms=2, lw=1, alpha=0.8,
                                color=COLORS.get(m), label=m if k == 0 else None)
                if log:
                    ax.set_yscale("log")
                ax.set_title(f"{cell}, T = {T}", fontsize=9)
                ax.grid(alpha=0.3)
                if i == len(cells) - 1:
                    ax.set_xlabel("epoch")
                if j == 0:
                    ax.set_ylabel(key)
        axes[0, 0].legend(fontsize=7)
        _save(fig, f"across_T_{what}.png")


# ---------------------------------------------------------------- memory (in process)

MEMORY = dict(seq_len=64, num_sequences=2048, epochs=8, seeds=(0, 1, 2), probe=64)
REACH = dict(lengths=(32, 64, 128, 256, 1024), seed=0, num_sequences=2048, probe=64,
             methods=("serial", "mgrit", "mgrit:2/1+noskip", "mgrit:3/2", "mgrit:3/2+noskip"))


def _profiles(params, x, y, methods):
    """Per method: ||dL/dx_t|| per step t (root mean square over the batch), the gradient norms
    of weight_ih_l0 and weight_hh_l0, the cosine of the weight_ih_l0 gradient with BPTT's, and
    the forward solve's final residual."""
    from mgrit_gru import gru_backward, gru_forward, mgrit_backward, mgrit_forward
    from mgrit_gru.head import head_backward, head_forward
    from mgrit_gru.training.model import split_params
    gru, head = split_params(params)
    out = {}
    for label, opts in methods.items():
        if opts.solver == "serial":
            _, h_T, cache = gru_forward(gru, x, cell=opts.cell, dt=opts.dt)
        else:
            _, h_T, info = mgrit_forward(gru, x, options=opts.forward_options, cell=opts.cell,
                                         dt=opts.dt)
        _, _, hc = head_forward(head, h_T[-1], y)
        _, dh_top = head_backward(head, hc)
        dh_T = np.zeros_like(h_T)
        dh_T[-1] = dh_top
        if opts.solver == "serial":
            grads, dx, _ = gru_backward(gru, cache, dh_T=dh_T)
        else:
            grads, dx, _, _ = mgrit_backward(gru, info, dh_T=dh_T,
                                             options=opts.backward_options)
        out[label] = {"dx_norm": np.sqrt(np.mean(np.sum(dx ** 2, axis=2), axis=1)).tolist(),
                      "fwd_residual": None if opts.solver == "serial" else info.final_residual,
                      "gW_ih": float(np.linalg.norm(grads["weight_ih_l0"])),
                      "gW_hh": float(np.linalg.norm(grads["weight_hh_l0"])),
                      "g_ih_flat": grads["weight_ih_l0"].ravel()}
    ref = out["serial"]["g_ih_flat"]
    for v in out.values():
        g = v.pop("g_ih_flat")
        v["cos_W_ih"] = float(g @ ref / (np.linalg.norm(g) * np.linalg.norm(ref)))
    return out


def _setup(seq_len, seed, num_sequences, specs):
    """Data, initial parameters and the methods' solver options, as the bench builds them."""
    from dataclasses import replace
    from mgrit_gru.tools.time_to_accuracy import parse_method
    from mgrit_gru.training.config import TrainConfig
    from mgrit_gru.training.datasets import prepare_data
    from mgrit_gru.training.model import init_classifier
    cfg = TrainConfig(data="event", seq_len=seq_len, num_sequences=num_sequences, hidden=32,
                      batch_size=32, lr=1e-2, epochs=MEMORY["epochs"], seed=seed,
                      solver="mgrit")
    data = prepare_data(cfg)
    dtype = np.dtype(cfg.dtype)
    params = init_classifier(data.input_size, cfg.hidden, cfg.layers, data.num_classes,
                             seed=seed, dtype=dtype)
    methods = {m: replace(cfg, **parse_method(m)[1]).solver_options() for m in specs}
    return cfg, data, dtype, params, methods


def early(p):
    """The adjoint at the event steps: rms over t < 12 of ||dL/dx_t||."""
    return float(np.sqrt(np.mean(np.square(p["dx_norm"][:EVENT_WINDOW]))))


def run_memory():
    """Train with MGRIT (the default budget) as the bench does; before training and after each
    epoch, measure on a fixed probe batch the adjoint reaching each step for BPTT and MGRIT with
    and without backward skip, at the same weights."""
    from mgrit_gru.training.data import batches
    from mgrit_gru.training.loop import evaluate_arrays, make_optimizer, train_step
    t0 = time.perf_counter()
    records = []
    for seed in MEMORY["seeds"]:
        cfg, data, dtype, params, methods = _setup(
            MEMORY["seq_len"], seed, MEMORY["num_sequences"],
            ("serial", "mgrit", "mgrit:2/1+noskip"))
        opt = make_optimizer(cfg, params)
        xp = data.x_train[:MEMORY["probe"]].transpose(1, 0, 2).astype(dtype)
        yp = data.y_train[:MEMORY["probe"]]
        for epoch in range(cfg.epochs + 1):
            if epoch:
                for xb, yb in batches(data.x_train, data.y_train, cfg.batch_size, shuffle=True,
                                      seed=np.random.default_rng([seed, epoch])):
                    train_step(params, opt, xb.astype(dtype), yb, methods["mgrit"],
                               clip=cfg.clip)
            _, acc = evaluate_arrays(params, data.x_test, data.y_test, methods["serial"],
                                     dtype=dtype)
            prof = _profiles(params, xp, yp, methods)
            sigma = float(np.linalg.norm(params["weight_hh_l0"], 2))
            records.append({"seed": seed, "epoch": epoch, "test_acc": acc, "trained_by": "mgrit",
                            "seq_len": cfg.seq_len, "w_hh_l0_norm2": sigma, "profiles": prof})
            print(f"  seed {seed} epoch {epoch}: acc {acc:.3f} " + " ".join(
                f"{m}: early {early(p):.2e} cos {p['cos_W_ih']:.2f}" for m, p in prof.items()),
                flush=True)
    with open(os.path.join(HERE, "memory.jsonl"), "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    log_run("memory", {"command": "python docs/evidence/time_to_accuracy/run.py memory "
                       f"(in process: {MEMORY})", "wall_s": round(time.perf_counter() - t0, 1),
                       **machine()})


def run_reach():
    """At the initial weights (seed 0), for several T: the adjoint reaching each step."""
    t0 = time.perf_counter()
    records = []
    for T in REACH["lengths"]:
        _, data, dtype, params, methods = _setup(T, REACH["seed"], REACH["num_sequences"],
                                                 REACH["methods"])
        xp = data.x_train[:REACH["probe"]].transpose(1, 0, 2).astype(dtype)
        prof = _profiles(params, xp, data.y_train[:REACH["probe"]], methods)
        records.append({"seed": REACH["seed"], "seq_len": T, "profiles": prof})
        print(f"  T={T}: " + " ".join(f"{m}: early {early(p):.2e}" for m, p in prof.items()),
              flush=True)
    with open(os.path.join(HERE, "reach.jsonl"), "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    log_run("reach", {"command": "python docs/evidence/time_to_accuracy/run.py reach "
                      f"(in process: {REACH})", "wall_s": round(time.perf_counter() - t0, 1),
                      **machine()})


def report_memory():
    with open(os.path.join(HERE, "memory.jsonl")) as f:
        recs = [json.loads(line) for line in f]
    methods = list(recs[0]["profiles"])
    rows = []
    for r in recs:
        row = {"seed": r["seed"], "epoch": r["epoch"],
               "test acc (%)": f"{100 * r['test_acc']:.0f}",
               "‖W_hh_l0‖₂": f"{r['w_hh_l0_norm2']:.2f}",
               "mgrit fwd residual (probe)": f"{r['profiles']['mgrit']['fwd_residual']:.2g}"}
        for m in methods:
            p = r["profiles"][m]
            row[f"{m}: early ‖dL/dx‖"] = f"{early(p):.2e}"
            if m != "serial":
                row[f"{m}: cos W_ih"] = f"{p['cos_W_ih']:.2f}"
        rows.append(row)
    write_tables("memory", [("adjoint at the event steps (t < 12) and the W_ih gradient's "
                             "cosine with BPTT's, at the weights of MGRIT's training run "
                             "(T = 64)", rows)])
    plt = _plt()
    seeds = sorted({r["seed"] for r in recs})
    show = [e for e in (0, 2, 4, 8) if any(r["epoch"] == e for r in recs)]
    fig, axes = plt.subplots(len(seeds), len(show) + 1, figsize=(3.3 * (len(show) + 1),
                                                                 2.8 * len(seeds)))
    axes = np.atleast_2d(axes)
    for i, s in enumerate(seeds):
        rs = [r for r in recs if r["seed"] == s]
        for j, e in enumerate(show):
            ax = axes[i, j]
            r = next(x for x in rs if x["epoch"] == e)
            for m in methods:
                ax.semilogy(r["profiles"][m]["dx_norm"], color=COLORS.get(m), lw=1, label=m)
            ax.axvspan(0, EVENT_WINDOW, color="0.9")
            ax.set_title(f"seed {s}, epoch {e} (acc {100 * r['test_acc']:.0f} %)", fontsize=8)
            ax.set_xlabel("time step t")
            if j == 0:
                ax.set_ylabel("||dL/dx_t|| (rms over batch)")
        ax = axes[i, -1]
        for m in methods:
            ax.semilogy([r["epoch"] for r in rs], [early(r["profiles"][m]) for r in rs], "-o",
                        ms=3, color=COLORS.get(m), label=m)
        ax.set_title(f"seed {s}: adjoint at the event steps", fontsize=8)
        ax.set_xlabel("epoch")
    axes[0, 0].legend(fontsize=7)
    _save(fig, "memory.png")


def report_reach():
    with open(os.path.join(HERE, "reach.jsonl")) as f:
        recs = [json.loads(line) for line in f]
    methods = list(recs[0]["profiles"])

    def ratio(a, b):
        return f"{a / b:.1e}" if b > 0 else "BPTT's is 0 (underflow)"

    rows = [{"T": r["seq_len"],
             **{f"{m}: early ‖dL/dx‖": f"{early(r['profiles'][m]):.2e}" for m in methods},
             **{f"{m} / serial": ratio(early(r["profiles"][m]), early(r["profiles"]["serial"]))
                for m in methods if m != "serial"}} for r in recs]
    write_tables("reach", [("initial weights (seed 0): adjoint at the event steps (t < 12)",
                            rows)])
    plt = _plt()
    fig, axes = plt.subplots(1, len(recs), figsize=(3.2 * len(recs), 3.2))
    for ax, r in zip(np.atleast_1d(axes), recs):
        for m in methods:
            ax.semilogy(r["profiles"][m]["dx_norm"], color=COLORS.get(m), lw=1, label=m)
        ax.axvspan(0, EVENT_WINDOW, color="0.9")
        ax.set_title(f"T = {r['seq_len']}, initial weights", fontsize=9)
        ax.set_xlabel("time step t")
    np.atleast_1d(axes)[0].set_ylabel("||dL/dx_t|| (rms over batch)")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    _save(fig, "reach.png")


def report_seeds():
    name = PARTS["seeds"][0][0]
    write_tables("seeds", [("T = 64, ten seeds", summary_table(name))])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    acc_vs_epoch(ax, name, "T = 64, classic cell, seeds 0-9")
    _save(fig, "seeds.png")


REPORTS = {"lengths": report_lengths, "ranks": report_ranks, "sweep": report_sweep,
           "across_T": report_across_T, "seeds": report_seeds, "memory": report_memory,
           "reach": report_reach}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("parts", nargs="*", help=f"parts to run (default all: {', '.join(PARTS)})")
    p.add_argument("--plots-only", action="store_true",
                   help="no training: tables and plots from the JSON lines already here")
    a = p.parse_args(argv)
    parts = a.parts or list(PARTS)
    unknown = [x for x in parts if x not in PARTS]
    if unknown:
        p.error(f"unknown part(s) {', '.join(unknown)}: choose from {', '.join(PARTS)}")
    for part in parts:
        print(f"== {part}", flush=True)
        if not a.plots_only:
            if part == "memory":
                run_memory()
            if part == "reach":
                run_reach()
            for inv in PARTS[part]:
                bench(*inv)
        REPORTS[part]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
