"""A run folder written by version 0.1 (tests/training/v0_1_run: `train(data="synthetic",
seq_len=16, num_sequences=24, frame_size=4, hidden=4, batch_size=8, epochs=1)` at 0.1) still
loads, and evaluating it gives the test accuracy 0.1 recorded."""
import json
from pathlib import Path

import numpy as np
import pytest

from mgrit_gru.training import evaluate_checkpoint, load_checkpoint

RUN = Path(__file__).parent / "v0_1_run"


def test_a_version_0_1_checkpoint_loads_with_todays_defaults_for_new_options():
    ck = load_checkpoint(RUN / "checkpoint.npz")
    cfg = ck.config
    assert (cfg.data, cfg.seq_len, cfg.hidden, cfg.epochs, ck.epoch) == ("synthetic", 16, 4, 1, 1)
    assert cfg.bwd_relax is None and cfg.fwd_rtol is None and cfg.preset is None
    assert all(np.all(np.isfinite(v)) for v in ck.params.values())


def test_evaluating_it_gives_the_accuracy_it_recorded():
    recorded = json.loads((RUN / "metrics.jsonl").read_text().splitlines()[-1])
    _, acc, n = evaluate_checkpoint(RUN / "checkpoint.npz")
    assert n == 5                                            # 20 % of 24 sequences
    assert acc == pytest.approx(recorded["test_acc"], abs=1e-12)
