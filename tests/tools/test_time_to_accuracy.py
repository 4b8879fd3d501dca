"""Time to accuracy: same data, seeds and initial weights for every method; the gradient error
it reports is the one an independent BPTT computation gives."""
import json

import numpy as np
import pytest

from mgrit_gru import gru as ref
from mgrit_gru import mgrit_backward, mgrit_forward
from mgrit_gru.head import head_backward, head_forward
from mgrit_gru.tools import cli
from mgrit_gru.tools import time_to_accuracy as tta
from mgrit_gru.training import TrainConfig, prepare_data
from mgrit_gru.training.data import batches
from mgrit_gru.training.model import init_classifier, split_params

SMALL = dict(data="event", seq_len=32, num_sequences=48, hidden=6, batch_size=8, epochs=2,
             levels=2, cf=4)


@pytest.fixture(scope="module")
def run():
    return tta.run(["serial", "mgrit:1/1", "mgrit:2/1+noskip"], seeds=2, grad_batches=2,
                   **SMALL)


def _grad(params, x, y, mgrit_options=None):
    """The classifier's gradient straight from the GRU and head functions (BPTT), or from
    mgrit_forward/mgrit_backward with ``mgrit_options``."""
    gru, head = split_params(params)
    if mgrit_options is None:
        _, h_T, cache = ref.gru_forward(gru, x)
    else:
        _, h_T, info = mgrit_forward(gru, x, **mgrit_options["forward"])
    _, _, hcache = head_forward(head, h_T[-1], y)
    hg, dh_top = head_backward(head, hcache)
    dh_T = np.zeros_like(h_T)
    dh_T[-1] = dh_top
    if mgrit_options is None:
        g, _, _ = ref.gru_backward(gru, cache, dh_T=dh_T)
    else:
        g, _, _, _ = mgrit_backward(gru, info, dh_T=dh_T, **mgrit_options["backward"])
    g.update(hg)
    return np.concatenate([g[k].ravel() for k in sorted(g)])


def test_records_have_every_field_for_every_method_seed_and_epoch(run):
    records, summary = run
    assert len(records) == 3 * 2 * 3                        # methods x seeds x (epochs + 1)
    for r in records:
        assert set(tta.FIELDS) <= set(r)
    trained = [r for r in records if r["epoch"] >= 1]
    assert all(r["fwd_iters"] == (0 if r["method"] == "serial" else
                                  {"mgrit:1/1": 1, "mgrit:2/1+noskip": 2}[r["method"]])
               for r in trained)
    assert all(r["seconds"] > 0 for r in trained)
    assert all(r["bwd_residual_max"] >= r["bwd_residual_last"] > 0 for r in trained
               if r["method"] != "serial")
    assert all(r["bwd_residual_last"] is None for r in records if r["method"] == "serial")
    assert [s["method"] for s in summary] == ["serial", "mgrit:1/1", "mgrit:2/1+noskip"]


def test_serial_is_bptt_and_every_method_starts_from_the_same_weights(run):
    records, _ = run
    assert all(r["grad_rel_error"] == 0.0 for r in records if r["method"] == "serial")
    for seed in (0, 1):
        start = {r["method"]: r["test_acc"] for r in records
                 if r["seed"] == seed and r["epoch"] == 0}
        assert len(set(start.values())) == 1                 # same weights, same test set


def test_the_reported_gradient_error_is_an_independent_bptt_comparison(run):
    """Epoch 0 (the initial weights): the error and cosine of mgrit:1/1's gradient against
    BPTT on the first two training batches, recomputed from the GRU and head functions."""
    records, _ = run
    for seed in (0, 1):
        cfg = TrainConfig(**{**SMALL, "seed": seed})
        data = prepare_data(cfg)
        params = init_classifier(data.input_size, cfg.hidden, cfg.layers, data.num_classes,
                                 seed=seed)
        fixed = list(batches(data.x_train, data.y_train, cfg.batch_size, shuffle=False))[:2]
        opts = dict(levels=2, cf=4, tol=1e-9)
        budget = {"forward": {**opts, "max_iter": 1}, "backward": {**opts, "max_iter": 1}}
        g = sum(_grad(params, x, y, budget) for x, y in fixed)
        g_ref = sum(_grad(params, x, y) for x, y in fixed)
        rec, = [r for r in records if r["method"] == "mgrit:1/1" and r["seed"] == seed
                and r["epoch"] == 0]
        err = np.linalg.norm(g - g_ref) / np.linalg.norm(g_ref)
        cos = g @ g_ref / (np.linalg.norm(g) * np.linalg.norm(g_ref))
        assert err > 1e-3                                    # one cycle is inexact ...
        assert rec["grad_rel_error"] == pytest.approx(err, rel=1e-9)   # ... and reported so
        assert rec["grad_cosine"] == pytest.approx(cos, rel=1e-9)


def test_time_to_target_is_the_first_trained_epoch_at_the_target():
    recs = [dict(epoch=0, seconds=0.0, test_acc=0.9), dict(epoch=1, seconds=1.5, test_acc=0.5),
            dict(epoch=2, seconds=3.0, test_acc=0.8), dict(epoch=3, seconds=4.5, test_acc=0.95)]
    assert tta.time_to_target(recs, 0.8) == 3.0
    assert tta.time_to_target(recs, 0.99) is None


def test_summary_target_defaults_to_95_percent_of_serials_final_accuracy(run):
    records, summary = run
    finals = [r["test_acc"] for r in records if r["method"] == "serial" and r["epoch"] == 2]
    assert summary[0]["target"] == pytest.approx(0.95 * np.median(finals))
    initial = [r["grad_rel_error"] for r in records if r["method"] == "mgrit:1/1"
               and r["epoch"] == 0]
    assert summary[1]["grad_rel_error_initial_median"] == pytest.approx(np.median(initial))
    with pytest.raises(ValueError, match="include the method 'serial' or give --target"):
        tta.summarise([r for r in records if r["method"] != "serial"])


@pytest.mark.parametrize("spec,message", [
    ("bptt", "unknown method 'bptt'"), ("mgrit:2", "the budget must be F/B"),
    ("mgrit:0/1", "the budget must be F/B"), ("mgrit:2/1+fast", "put skip or noskip"),
])
def test_bad_methods_are_refused_by_name(spec, message):
    with pytest.raises(ValueError, match=message):
        tta.parse_method(spec)


def test_auto_takes_the_accuracy_controlled_solves():
    label, over = tta.parse_method("mgrit:auto")
    opts = TrainConfig(**over).solver_options()
    assert opts.forward_options.tol_type == "relative"
    assert opts.forward_options.tol == tta.AUTO["fwd_rtol"]
    assert opts.backward_options.tol == tta.AUTO["bwd_rtol"]


def test_the_command_writes_json_lines_and_a_plot(tmp_path, capsys):
    out = tmp_path / "tta.jsonl"
    assert cli.main(["bench", "--what", "time-to-accuracy", "--seq-len", "32",
                     "--num-sequences", "40", "--hidden", "4", "--seeds", "2", "--epochs", "1",
                     "--levels", "2", "--methods", "serial,mgrit", "--out", str(out),
                     "--no-progress"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len([r for r in lines if not r.get("summary")]) == 2 * 2 * 2
    assert {r["method"] for r in lines if r.get("summary")} == {"serial", "mgrit"}
    assert (tmp_path / "tta.png").is_file()
    err = capsys.readouterr().err
    assert "time to target (s)" in err and "grad err" in err


def test_two_ranks_report_the_one_rank_numbers(tmp_path):
    """Under ``mpiexec -n 2`` the MGRIT method splits the time axis; its accuracies and its
    gradient error against BPTT are the one-rank run's (to round-off)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    mpiexec = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec")
    pytest.importorskip("mpi4py")
    if mpiexec is None:
        pytest.skip("needs mpiexec")
    argv = ["bench", "--what", "time-to-accuracy", "--seq-len", "64", "--num-sequences", "48",
            "--hidden", "6", "--seeds", "1", "--epochs", "1", "--methods", "serial,mgrit:2/1",
            "--no-progress"]
    out2 = tmp_path / "two.jsonl"
    subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "mgrit_gru", *argv, "--out",
                    str(out2)], check=True, timeout=120, capture_output=True)
    out1 = tmp_path / "one.jsonl"
    assert cli.main(argv + ["--out", str(out1)]) == 0
    one, two = ([json.loads(line) for line in p.read_text().splitlines()
                 if '"summary"' not in line] for p in (out1, out2))
    assert [(r["method"], r["epoch"]) for r in one] == [(r["method"], r["epoch"]) for r in two]
    for a, b in zip(one, two):
        assert b["ranks"] == (2 if a["method"] != "serial" else 1)
        assert b["test_acc"] == a["test_acc"]
        assert b["grad_rel_error"] == pytest.approx(a["grad_rel_error"], rel=1e-9, abs=1e-15)
