"""The ``mgrit-gru`` command line: parsing and dispatch only.

Every subcommand is one ``_add_<name>(subparsers)`` function below that declares its flags and
sets ``handler`` to a small function; the work lives in the package's modules, imported lazily so
that ``mgrit-gru --help`` stays fast. To add a subcommand, write ``_add_<name>`` and append it to
`SUBCOMMANDS`.

Handlers return the process exit code. A ``ValueError`` from the library (bad input) is printed as
``mgrit-gru: error: ...`` with exit code 2, like an argparse error.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys

from ..checks import MissingExtraError
from ..mgrit.comm import RankFailed
from ..mgrit.cycle import MGRITDivergedError
from .cli_guards import (_check_counts, _check_writable, _end_the_mpi_job, _one_process,
                         _remove_if_empty)


def _per_level(cast):
    """argparse type of a per-level flag: "4" -> 4, "4,2" -> [4, 2] (`checks.per_level`)."""
    def parse(text):
        from ..checks import per_level
        try:
            return per_level(text, "value", cast)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not one value or a comma-separated "
                                             "list per level") from None
    parse.__name__ = "per-level " + cast.__name__
    return parse


def _mgrit_flags(p, defaults=None, skip_help=None):
    """Declare the `MGRITOptions` flags (--levels, --cf, --relax, --tol, --skip/--no-skip,
    --coarse-input) on ``p``: once for every subcommand, so they read and check alike.

    ``defaults`` (an `MGRITOptions`) sets each flag's default and names it in the help; without
    it every default is None (the subcommand's own, or a resumed run's checkpoint's).
    """
    d = defaults.to_dict() if defaults is not None else {}
    said = lambda name, text: f"{text} (default {d[name]})" if name in d else text
    p.add_argument("--levels", type=int, default=d.get("levels"),
                   help=said("levels", "MGRIT levels; 1 = sequential stepping"))
    p.add_argument("--cf", type=_per_level(int), default=d.get("cf"),
                   help=said("cf", "coarsening factor, or one per coarsening: 4,2 with "
                                   "--levels 3"))
    p.add_argument("--relax", type=_per_level(str), default=d.get("relax"),
                   help=said("relax", "F or FCF, or one per level: FCF,F,F with --levels 3"))
    p.add_argument("--tol", type=float, default=d.get("tol"),
                   help=said("tol", "stop a solve once its residual is below this"))
    p.add_argument("--skip", action=argparse.BooleanOptionalAction, default=d.get("skip"),
                   help=skip_help or said("skip", "XBraid's skip: no fine-grid work on the "
                                                  "first down-cycle"))
    p.add_argument("--coarse-input", choices=("inject", "average"),
                   default=d.get("coarse_input"),
                   help=said("coarse_input", "a coarse step's input: the fine one at the "
                                             "interval start (inject, the paper) or the mean"))


def _mgrit_options(args, **more):
    """The `MGRITOptions` of parsed flags (`_mgrit_flags`'); flags left at None keep the
    options' defaults; ``more``: options not given as flags (max_iter)."""
    from ..mgrit import MGRITOptions
    given = {k: getattr(args, k) for k in ("levels", "cf", "relax", "tol", "skip",
                                           "coarse_input") if getattr(args, k, None) is not None}
    return MGRITOptions(**given, **more)


def _add_gradcheck(subparsers):
    p = subparsers.add_parser(
        "gradcheck", help="check the GRU's hand-written gradients against finite differences",
        description="Gradient-check gru_forward/gru_backward for every parameter, x and h0 in "
                    "float64 and print a table; exit 1 if any relative error exceeds --tol.")
    p.add_argument("--cell", choices=("classic", "implicit"), default="classic",
                   help="GRU cell: classic (nn.GRU, explicit Euler) or implicit (default classic)")
    p.add_argument("--layers", type=int, default=1, help="stacked layers L (default 1)")
    p.add_argument("--dt", type=float, default=1.0, help="ODE step size (default 1)")
    p.add_argument("--seq-len", type=int, default=5, help="time steps T (default 5)")
    p.add_argument("--batch", type=int, default=2, help="batch size B (default 2)")
    p.add_argument("--input", type=int, default=3, help="input size I (default 3)")
    p.add_argument("--hidden", type=int, default=4, help="hidden size H (default 4)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed of the weights, inputs and directions (default 0)")
    p.add_argument("--tol", type=float, default=1e-6, help="max relative error (default 1e-6)")
    p.add_argument("--directions", type=int, default=None,
                   help="check N random directions per tensor instead of every entry")

    def handler(args):
        _one_process("gradcheck")
        from ..gradcheck import check_gru_gradients
        res = check_gru_gradients(cell=args.cell, num_layers=args.layers, dt=args.dt,
                                  seq_len=args.seq_len, batch=args.batch,
                                  input_size=args.input, hidden_size=args.hidden,
                                  seed=args.seed, tol=args.tol, n_directions=args.directions)
        print(f"gradcheck: cell={args.cell} layers={args.layers} dt={args.dt} "
              f"T={args.seq_len} B={args.batch} I={args.input} H={args.hidden} (float64)")
        print(res.table())
        return 0 if res.ok else 1

    p.set_defaults(handler=handler)


def _add_bench(subparsers):
    from .bench import BENCHMARKS
    p = subparsers.add_parser(
        "bench", help="timing benchmarks, one JSON line per measurement",
        description="Run a benchmark and print JSON lines. For one-core numbers start with "
                    "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 in the environment.")
    p.add_argument("--what", choices=sorted(BENCHMARKS), default=None,
                   help="benchmark (default gru; cuda with --backend cuda)")
    p.add_argument("--backend", choices=("numpy", "cuda"), default=None,
                   help="cuda: the one-GPU benchmark (serial vs MGRIT vs cuDNN); needs a GPU")
    # shared flags: None means "the benchmark's default"
    p.add_argument("--hidden", type=int, help="hidden size H (gru default 256)")
    p.add_argument("--batch", type=int, help="batch size B (gru default 32)")
    p.add_argument("--seq-len", type=int, help="time steps T (gru default 1024)")
    p.add_argument("--input", type=int, dest="input_size", help="input size I (default H)")
    p.add_argument("--layers", type=int, help="stacked layers L (default 1)")
    p.add_argument("--cell", choices=("classic", "implicit"),
                   help="fine-level GRU cell (default classic; cuda: implicit)")
    p.add_argument("--dt", type=float, help="fine step size (default 1)")
    p.add_argument("--dtype", choices=("float32", "float64"),
                   help="floating-point type (default float32)")
    p.add_argument("--repeat", type=int, help="timed runs; the median is reported")
    p.add_argument("--seed", type=int, help="random seed of the weights and inputs (default 0)")
    # MGRIT options (bench --what forward, train-step); under `mpiexec -n P` it runs
    # distributed; None: the benchmark's default (3 levels, cf 4, FCF, skip)
    _mgrit_flags(p)
    p.add_argument("--iters", type=int, help="MGRIT iterations, tol 0 (forward default 2)")
    p.add_argument("--no-model", dest="model", action="store_false", default=None,
                   help="forward: skip the step-cost measurement and the model's prediction")
    p.add_argument("--out", help="forward, cuda: also write the records (rank 0) to this JSON "
                                 "file (rewritten atomically)")
    p.add_argument("--bwd-iters", type=int,
                   help="train-step: backward MGRIT iterations, tol 0 (default 1, the paper's)")
    p.add_argument("--conv-tol", type=float,
                   help="train-step: relative residual tolerance of the converged MGRIT run "
                        "(default 1e-5)")
    p.add_argument("--conv-max-iter", type=int,
                   help="train-step: most cycles of the converged MGRIT run (default 30)")
    g = p.add_argument_group("time-to-accuracy")
    g.add_argument("--methods", help="comma-separated: serial, mgrit (the flags' options), "
                                     "mgrit:F/B (iterations), +noskip (no backward skip), "
                                     "mgrit:auto (accuracy-controlled); default serial,mgrit")
    g.add_argument("--seeds", type=int, help="seeds per method (default 3), from --seed on")
    g.add_argument("--epochs", type=int, help="epochs per run (default 10)")
    g.add_argument("--target", type=float,
                   help="test accuracy to reach (default 95%% of serial's final accuracy)")
    g.add_argument("--data", help="a data spec (default event: the early-event task)")
    g.add_argument("--num-sequences", type=int, help="built-in tasks: sequences (default 1024)")
    g.add_argument("--distractors", type=int, help="event: late look-alike events (default 4)")
    g.add_argument("--noise", type=float, help="built-in tasks: noise std (default 0.1)")
    g.add_argument("--lr", type=float, help="learning rate (default 1e-2)")
    g.add_argument("--max-iters", type=int, help="cap of mgrit:auto's solves (default 10)")
    g.add_argument("--preset", choices=("torchbraid",),
                   help="the network and solver of a training preset (flags given win)")
    g.add_argument("--grad-batches", type=int,
                   help="fixed training batches on which the gradient is compared with BPTT "
                        "each epoch (default 2)")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bar")

    def handler(args):
        from .bench import run_benchmark
        options = {k: v for k, v in vars(args).items()
                   if k not in ("command", "handler", "what", "backend")}
        what = args.what or ("cuda" if args.backend == "cuda" else "gru")
        if what == "time-to-accuracy":                       # trains on either backend
            options["backend"] = args.backend
        if args.backend == "numpy" and what == "cuda":
            raise ValueError("--what cuda is the GPU benchmark; it does not run with --backend "
                             "numpy (leave --backend out, or pick another --what)")
        if what in ("gru", "cuda"):                          # one process, one set of timings
            _one_process(f"bench --what {what}")
        if args.backend == "cuda" and what not in ("cuda", "time-to-accuracy"):
            raise ValueError(f"--backend cuda runs the GPU benchmark (--what cuda); --what {what} "
                             "runs on the CPU (NumPy)")
        from .bench import check_benchmark
        from ..mgrit import agreed
        from ..training import world_comm
        comm = world_comm()
        agreed(comm, lambda: check_benchmark(what, **options))   # a refusal printed once
        if comm is None or comm.Get_rank() == 0:
            print(f"mgrit-gru bench --what {what}: timing (one JSON line per measurement on "
                  "stdout)...", file=sys.stderr, flush=True)
        for record in run_benchmark(what, **options):
            print(json.dumps(record), flush=True)
        return 0

    p.set_defaults(handler=handler)


def _add_solve(subparsers):
    p = subparsers.add_parser(
        "solve", help="solve a random GRU's forward pass with MGRIT and compare with serial",
        description="Build a random GRU and random inputs, run the forward pass with MGRIT "
                    "(XBraid-style iteration lines) and serially, print the residual history and "
                    "the error against serial; --plot saves residual history, error vs time and "
                    "the cycle diagram in one PNG.")
    p.add_argument("--seq-len", type=int, default=256, help="time steps T (default 256)")
    p.add_argument("--hidden", type=int, default=16, help="hidden size H (default 16)")
    p.add_argument("--batch", type=int, default=2, help="batch size B (default 2)")
    p.add_argument("--input", type=int, default=8, help="input size I (default 8)")
    p.add_argument("--layers", type=int, default=1, help="stacked layers L (default 1)")
    p.add_argument("--cell", choices=("classic", "implicit"), default="classic",
                   help="fine-level cell (coarse levels are implicit)")
    p.add_argument("--dt", type=float, default=1.0, help="fine step size (default 1)")
    from ..mgrit import MGRITOptions
    _mgrit_flags(p, MGRITOptions())
    p.add_argument("--iters", type=int, default=10, help="most MGRIT cycles (default 10)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="floating-point type (default float64)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed of the weights and inputs (default 0)")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="save the plots here")

    def handler(args):
        _one_process("solve")
        from .diagnostics import solve_and_report
        res = solve_and_report(seq_len=args.seq_len, hidden=args.hidden, batch=args.batch,
                               input_size=args.input, layers=args.layers, cell=args.cell,
                               dt=args.dt, options=_mgrit_options(args, max_iter=args.iters),
                               seed=args.seed, dtype=args.dtype, plot=args.plot)
        if res and not res.get("converged") and not res.get("stalled"):
            print(_what_to_try(args))
        return 0

    p.set_defaults(handler=handler)


def _what_to_try(args):
    """The line ``mgrit-gru solve`` prints when the solve did not converge: what to change."""
    tips = [f"more cycles (--iters {2 * args.iters})"]
    cfs = args.cf if isinstance(args.cf, list) else [args.cf]
    if any(c is not None and c > 2 for c in cfs):
        tips.append("a smaller coarsening factor (--cf 2)")
    relax = args.relax if isinstance(args.relax, list) else [args.relax]
    if any(str(r).upper() != "FCF" for r in relax):
        tips.append("FCF relaxation (--relax FCF)")
    if args.cell != "implicit":
        tips.append("the implicit fine cell (--cell implicit)")
    tried = ", ".join(tips[:-1]) + (" or " if len(tips) > 1 else "") + tips[-1]
    cycles = f"{args.iters} cycle" + ("s" if args.iters != 1 else "")
    return f"not converged in {cycles}: try {tried}"


def _add_plot_scaling(subparsers):
    p = subparsers.add_parser(
        "plot-scaling", help="speedup and efficiency vs ranks and vs T from bench JSON files",
        description="Read the JSON files written by `mpiexec -n P mgrit-gru bench --what forward "
                    "--out F` (or its JSON lines) and draw speedup and efficiency against the "
                    "number of ranks and against the sequence length, the model's prediction "
                    "dashed where recorded.")
    p.add_argument("files", nargs="+", help="bench result files (JSON list or JSON lines)")
    p.add_argument("--out", default="scaling.png", help="image to write (default scaling.png)")

    def handler(args):
        from .perfmodel import load_results, plot_scaling
        records = load_results(args.files)
        plot_scaling(records, args.out)
        print(f"plot-scaling: {len(records)} records -> {args.out}")
        return 0

    p.set_defaults(handler=handler)


def _train_options(p):
    """The model/data/solver/optimiser flags of ``train`` (default None: TrainConfig's default,
    or the checkpoint's with --resume); `mgrit_gru.train.TrainConfig` documents each."""
    g = p.add_argument_group("data")
    g.add_argument("--data", help="synthetic | event | pulse | npz:PATH | frames:ROOT | "
                                  "uci-har:ROOT | hmdb51:ROOT (default synthetic)")
    g.add_argument("--seq-len", type=int, help="time steps T (default 256; npz: the file's)")
    g.add_argument("--num-sequences", type=int, help="built-in tasks: sequences (default 1024)")
    g.add_argument("--num-classes", type=int, help="synthetic: classes (default 4)")
    g.add_argument("--frame-size", type=int, help="synthetic/videos: frame side (default 16)")
    g.add_argument("--noise", type=float, help="built-in tasks: noise std (default 0.1)")
    g.add_argument("--distractors", type=int,
                   help="event: late look-alike events per sequence (default 4)")
    g.add_argument("--projection-dim", type=int, help="videos: random projection to D features")
    g.add_argument("--features", metavar="MODEL.onnx",
                   help="videos: an image network's features per frame instead of pixels "
                        "(an ONNX file, run by onnxruntime; the data docs say how to make one)")
    g.add_argument("--split", type=int, choices=(1, 2, 3),
                   help="hmdb51: which official train/test split (default 1)")
    g.add_argument("--splits", dest="splits_dir", metavar="DIR",
                   help="hmdb51: the folder of the split files (default "
                        "ROOT/testTrainMulti_7030_splits)")
    g.add_argument("--cache-dir", help="videos: decoded-frame cache folder")
    g.add_argument("--test-fraction", type=float, help="held-out fraction (default 0.2)")
    g = p.add_argument_group("model and solver")
    g.add_argument("--preset", choices=("torchbraid",),
                   help="start from a named set of options; flags given override its values. "
                        "torchbraid: the authors' code (implicit cell on every level, 2 layers, "
                        "H 100, 3 levels, cf 4, forward FCF, backward F on the fine level and "
                        "FCF below, 2 fwd / 1 bwd iterations, skip)")
    g.add_argument("--hidden", type=int, help="hidden size H (default 64)")
    g.add_argument("--layers", type=int, help="stacked GRU layers (default 1)")
    g.add_argument("--cell", choices=("classic", "implicit"), help="fine-level cell (classic)")
    g.add_argument("--dt", type=float, help="fine step size (default 1)")
    g.add_argument("--solver", choices=("mgrit", "serial"), help="mgrit (default) or serial BPTT")
    _mgrit_flags(g)                                          # defaults: TrainConfig's
    g.add_argument("--fwd-iters", type=int, help="forward MGRIT iterations (default 2)")
    g.add_argument("--bwd-iters", type=int, help="backward MGRIT iterations (default 1)")
    g.add_argument("--fwd-rtol", type=float,
                   help="accuracy-controlled forward solves: iterate until the residual drops "
                        "by this factor (at most --max-iters cycles) instead of --fwd-iters")
    g.add_argument("--bwd-rtol", type=float,
                   help="the same for the backward solves, instead of --bwd-iters")
    g.add_argument("--max-iters", type=int,
                   help="cap of the accuracy-controlled solves (default 10)")
    g.add_argument("--bwd-relax", type=_per_level(str),
                   help="relaxation of the backward solve, one or one per level: F,FCF,FCF "
                        "(default: as --relax)")
    g.add_argument("--bwd-skip", action=argparse.BooleanOptionalAction, default=None,
                   help="skip for the backward solve alone (default: as --skip); with skip one "
                        "backward iteration's gradient is ~37%% off BPTT, without 3%% (bench "
                        "--what train-step, T 4096, H 256)")
    g.add_argument("--backend", choices=("numpy", "cuda"),
                   help="numpy (default) or cuda: the GRU steps on one GPU")
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", choices=("adam", "sgd"), help="default adam")
    g.add_argument("--lr", type=float, help="learning rate (default 1e-2)")
    g.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    g.add_argument("--weight-decay", type=float, help="L2 weight decay (default 0)")
    g.add_argument("--clip", type=float, help="max gradient norm, 0 = off (default 1)")
    g.add_argument("--batch-size", type=int, help="default 32")
    g.add_argument("--epochs", type=int, help="total epochs (default 5)")
    g.add_argument("--seed", type=int, help="data, initialisation, batch order (default 0)")
    g.add_argument("--dtype", choices=("float32", "float64"), help="default float64")


_RUN_FLAGS = ("command", "handler", "out", "resume", "overwrite", "no_progress", "quiet")


def _add_train(subparsers):
    p = subparsers.add_parser(
        "train", help="train a GRU sequence classifier (MGRIT or serial BPTT)",
        description="Train a GRU classifier; write OUT/metrics.jsonl, OUT/checkpoint.npz (each "
                    "epoch, atomically) and plots. Works under mpiexec -n P (the time axis is "
                    "split over the ranks).")
    _train_options(p)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out up to --epochs in total")
    p.add_argument("--overwrite", action="store_true", help="start afresh over a run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")

    def handler(args):
        from ..training import train_from_options
        if args.resume and args.overwrite:
            raise ValueError("--resume continues the run in --out and --overwrite starts it "
                             "afresh: pass one of them")
        options = {k: v for k, v in vars(args).items() if k not in _RUN_FLAGS}
        res = train_from_options(options, args.out, resume=args.resume,
                                 overwrite=args.overwrite, progress=not args.no_progress,
                                 verbose=not args.quiet)
        if res.plots and not args.quiet:
            print(f"plots: {', '.join(res.plots)}")
        return 0

    p.set_defaults(handler=handler)


def _add_evaluate(subparsers):
    p = subparsers.add_parser(
        "evaluate", help="accuracy and loss of a training checkpoint",
        description="Evaluate OUT/checkpoint.npz on its run's test split, or on --data.")
    p.add_argument("checkpoint", help="a checkpoint.npz written by mgrit-gru train, or its run "
                                      "folder")
    p.add_argument("--data", help="synthetic | event | pulse | npz:PATH | frames:ROOT (default: "
                                  "the run's)")
    p.add_argument("--split", choices=("test", "train", "all"),
                   help="default: test for the run's own data, all for other data")
    p.add_argument("--solver", choices=("mgrit", "serial"), help="default: the run's")
    p.add_argument("--fwd-iters", type=int, help="forward MGRIT iterations (default: the run's)")
    p.add_argument("--backend", choices=("numpy", "cuda"),
                   help="default: the run's (a run trained on a GPU evaluates on a CPU with numpy)")
    p.add_argument("--json", action="store_true", help="print one JSON line")

    def handler(args):
        from ..training import CHECKPOINT, evaluate_checkpoint, world_comm
        if os.path.isdir(args.checkpoint):                   # a run folder: its checkpoint
            args.checkpoint = os.path.join(args.checkpoint, CHECKPOINT)
        comm = world_comm()
        loss, acc, n = evaluate_checkpoint(args.checkpoint, data=args.data, split=args.split,
                                           comm=comm, solver=args.solver,
                                           fwd_iters=args.fwd_iters, backend=args.backend)
        if comm is None or comm.Get_rank() == 0:
            if args.json:
                print(json.dumps({"checkpoint": args.checkpoint, "accuracy": acc, "loss": loss,
                                  "n": n}))
            else:
                print(f"{args.checkpoint}: accuracy {100 * acc:.2f}% loss {loss:.4f} "
                      f"({n} sequences)")
        return 0

    p.set_defaults(handler=handler)


def _add_demo(subparsers):
    p = subparsers.add_parser(
        "demo", help="train a small video classifier with MGRIT (~10 s) and plot it",
        description="Train a GRU on short synthetic moving-object videos with MGRIT (3 levels, "
                    "cf 4, 2 forward / 1 backward iteration) and save its plots.")
    p.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    p.add_argument("--solver", choices=("mgrit", "serial"), default="mgrit",
                   help="mgrit (default) or serial BPTT")
    p.add_argument("--epochs", type=int, default=None, help="default 5")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    def handler(args):
        from ..training import demo, world_comm
        over = {"solver": args.solver}
        if args.epochs is not None:
            over["epochs"] = args.epochs
        comm = world_comm()
        res = demo(out=args.out, comm=comm, progress=not args.no_progress, **over)
        if comm is None or comm.Get_rank() == 0:
            last = res.history[-1]
            print(f"demo: {res.config.solver} training reached {100 * last['test_acc']:.1f}% "
                  f"test accuracy (chance {100 / res.config.num_classes:.0f}%) in "
                  f"{res.seconds:.1f} s")
            print(f"plots: {', '.join(res.plots)}")
            print(f"metrics: {args.out}/metrics.jsonl, checkpoint: {args.out}/checkpoint.npz")
        return 0

    p.set_defaults(handler=handler)


SUBCOMMANDS = [_add_gradcheck, _add_bench, _add_solve, _add_plot_scaling, _add_train,
               _add_evaluate, _add_demo]
"""The ``_add_<name>`` functions that build the subcommands, in ``--help`` order."""


def build_parser():
    """The ``mgrit-gru`` argument parser with every subcommand in `SUBCOMMANDS`."""
    from .. import __version__
    parser = argparse.ArgumentParser(
        prog="mgrit-gru",
        description="Parallel-in-time training of GRU networks with MGRIT (Moon & Cyr, 2022).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # no abbreviated flags: `solve --dt 0` was read as --dtype 0 (solve had no --dt)
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND",
        parser_class=functools.partial(argparse.ArgumentParser, allow_abbrev=False))
    for add in SUBCOMMANDS:
        add(subparsers)
    parser.commands = dict(subparsers.choices)              # name -> its parser
    # each command's {dest: flag}, so that errors from the library can name the flag
    parser.flags = {name: {a.dest: a.option_strings[0] for a in sub._actions if a.option_strings}
                    for name, sub in parser.commands.items()}
    return parser


def main(argv=None):
    """Entry point of ``mgrit-gru``; returns the exit code.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        0 on success, 1 when a check fails, 2 on a usage or input error (a solve that diverges
        on the given options, and one too big for the memory, included).
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:                                                # the command's usage, not the top's
        (parser.commands.get(args.command) or parser).error(
            f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 2
    run_dir = args.out if args.command in ("train", "demo") else None
    made_here = run_dir is not None and not os.path.exists(run_dir)
    try:
        _check_counts(args)
        if getattr(args, "out", None) == "":                 # os.makedirs('') says ENOENT: ''
            raise ValueError("--out is empty: name a folder (train, demo) or a file")
        for name in ("plot", "out"):                         # before the work, not after it
            if getattr(args, name, None) and args.command in ("solve", "bench", "plot-scaling"):
                _check_writable(getattr(args, name), "--" + name,
                                image=args.command != "bench")
        return int(args.handler(args))
    # bad input named by the library, a file that cannot be read or written, a solve that
    # diverges, a problem too big for the host or the GPU, an optional extra not installed:
    # one line and exit code 2
    except (ValueError, OSError, MGRITDivergedError, MemoryError, MissingExtraError) as e:
        # another rank says it: its error failed this one, or this one's reads the same
        if not (isinstance(e, RankFailed) or hasattr(e, "same_as_rank")):
            print(f"mgrit-gru: error: {_name_the_flag(e, parser.flags[args.command])}",
                  file=sys.stderr)
        _end_the_mpi_job(2)
        return 2
    except KeyboardInterrupt:                                # Ctrl-C: a line, not a traceback
        if made_here:
            _remove_if_empty(run_dir)                        # nothing written: no folder either
        print(f"mgrit-gru: interrupted{_INTERRUPTED.get(args.command, '')}", file=sys.stderr)
        _end_the_mpi_job(130)
        return 130


# what an interrupted command leaves behind
_INTERRUPTED = {
    "train": " (--out keeps the last finished epoch, if any: continue with --resume)",
    "demo": " (--out keeps the last finished epoch, if any)"}


def _name_the_flag(error, flags):
    """The message of ``error``, its first word replaced by the flag when it names one of the
    command's options (``flags``: dest -> flag). The library's ValueErrors start with the
    argument's name ("lr must be a finite number >= 0"); the user typed --lr."""
    message = str(error)
    name, space, rest = message.partition(" ")
    if not (space and isinstance(error, ValueError)):
        return message
    if name in flags:                                        # lr must be ... -> --lr must be
        return f"{flags[name]} {rest}"
    name, equals, value = name.partition("=")                # backend='cuda' needs -> --backend
    if equals and name in flags:                             # cuda needs
        return f"{flags[name]} {value.strip(chr(39))} {rest}"
    return message


if __name__ == "__main__":
    sys.exit(main())
