"""Training a GRU sequence classifier, serially or parallel-in-time with MGRIT.

- `config`: `TrainConfig`, everything that determines a run
- `data`: synthetic tasks, npz files, frame folders; `datasets`: a run's split and time rows
- `model`: the classifier (GRU + head), one step's forward/backward (`SolverOptions`)
- `optim`: SGD and Adam, gradient clipping
- `loop`: `train`, `train_step`, evaluation
- `checkpoint`, `runfolder`, `lock`, `plots`: the run folder's files (digest, run identity,
  whole-or-nothing writes), its checks, the lock that keeps one run in it, its plots
- `agreement`: the ranks of an MPI run agree on every option and on the data
- `presets`: named sets of options (``--preset torchbraid``)
- `commands`: the demo, and the glue of ``mgrit-gru train/evaluate/demo``

The names below are importable from here (``from mgrit_gru.training import train``); each
module is imported on first use, so ``import mgrit_gru`` stays light.
"""
import importlib

_HOME = {
    "config": ["TrainConfig"],
    "datasets": ["Dataset", "load_data", "prepare_data"],
    "model": ["SolverOptions", "StepResult", "forward_backward", "init_classifier",
              "predict_logits", "split_params"],
    "optim": ["SGD", "Adam", "clip_grad_norm", "grad_norm"],
    "loop": ["train", "train_step", "evaluate_arrays", "evaluate_checkpoint", "make_optimizer",
             "TrainResult", "TrainingDivergedError"],
    "checkpoint": ["save_checkpoint", "load_checkpoint", "Checkpoint", "read_metrics",
                   "CHECKPOINT", "METRICS", "FORMAT", "STEP_KEYS"],
    "plots": ["plot_run"],
    "commands": ["DEMO", "demo", "world_comm", "train_from_options"],
}
_WHERE = {name: module for module, names in _HOME.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
