"""The early-event task: the class is an early event's channel; later look-alike events carry
nothing about it."""
import numpy as np
import pytest

from mgrit_gru.tools import cli
from mgrit_gru.training import TrainConfig, train
from mgrit_gru.training.data import early_event


def test_shape_balance_and_determinism():
    x, y = early_event(40, 32, num_classes=4, seed=3)
    assert x.shape == (40, 32, 4) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [10, 10, 10, 10]
    x2, y2 = early_event(40, 32, num_classes=4, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(x, early_event(40, 32, num_classes=4, seed=4)[0])


def test_the_early_window_holds_one_event_on_the_class_channel():
    x, y = early_event(50, 40, num_classes=3, distractors=5, noise=0.0, seed=0, event_len=4,
                       window=12)
    early = x[:, :12]
    assert np.array_equal(early.sum(axis=1).argmax(axis=1), y)
    assert np.all(early.sum(axis=(1, 2)) == 4)               # one event of 4 steps, height 1
    on = early[np.arange(50), :, y]                          # the class channel over time
    first = on.argmax(axis=1)
    assert all(np.array_equal(on[i, first[i]:first[i] + 4], np.ones(4)) for i in range(50))
    assert np.all(x[:, 12:].sum(axis=(1, 2)) == 5 * 4)       # 5 distractors, all after it


def test_the_late_events_are_independent_of_the_class():
    """Distractor mass lands on the class channel 1/C of the time, as on any other: reading
    the end of a sequence gives chance."""
    C = 4
    x, y = early_event(4000, 40, num_classes=C, distractors=3, noise=0.0, seed=1)
    late = x[:, 12:].sum(axis=1)                             # (n, C) distractor steps
    share = late[np.arange(len(y)), y].sum() / late.sum()
    assert abs(share - 1 / C) < 0.02
    assert np.mean(late.argmax(axis=1) == y) < 1 / C + 0.05


def test_a_time_window_is_exactly_those_rows():
    x, _ = early_event(6, 30, seed=2)
    w, _ = early_event(6, 30, seed=2, time_window=(7, 19))
    assert np.array_equal(w, x[:, 7:19])


@pytest.mark.parametrize("kw,message", [
    (dict(seq_len=14), r"seq_len must be >= 16 \(window 12 \+ a distractor of 4 steps\), got 14"),
    (dict(distractors=-1), "distractors must be"),
    (dict(num_classes=1), "num_classes must be"),
    (dict(window=2), "window must be"),
])
def test_bad_options_are_refused_by_name(kw, message):
    args = {"n": 4, "seq_len": 32, **kw}
    with pytest.raises(ValueError, match=message):
        early_event(**args)


def test_train_takes_the_event_data_and_its_options(tmp_path, capsys):
    res = train(data="event", seq_len=32, num_sequences=40, distractors=2, hidden=4, epochs=1,
                batch_size=8, progress=False, verbose=False)
    assert res.history[0]["test_acc"] is not None
    with pytest.raises(ValueError, match="distractors must be"):
        TrainConfig(data="event", distractors=-2)
    assert cli.main(["train", "--data", "synthetic", "--distractors", "2", "--out",
                     str(tmp_path / "r")]) == 2
    assert "--distractors (only --data event)" in capsys.readouterr().err
