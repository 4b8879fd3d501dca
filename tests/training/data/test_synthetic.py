"""Synthetic data (`mgrit_gru.training.data.synthetic`): the moving-objects videos (determinism,
and that the task needs memory), the small tasks, splitting and batching."""
import numpy as np
import pytest

from mgrit_gru.training.data import (batches, moving_objects, noisy_sum_sign, pulse_order,
                                     train_test_split)


# ----------------------------------------------------------------------------------------------
# moving_objects
# ----------------------------------------------------------------------------------------------
def test_moving_objects_shapes_dtypes_determinism():
    x, y = moving_objects(8, 20, frame_size=12, num_classes=3, seed=5)
    assert x.shape == (8, 20, 144) and x.dtype == np.float32
    assert y.shape == (8,) and y.dtype == np.int64
    assert sorted(np.bincount(y, minlength=3)) == [2, 3, 3]  # balanced classes
    x2, y2 = moving_objects(8, 20, frame_size=12, num_classes=3, seed=5)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = moving_objects(8, 20, frame_size=12, num_classes=3, seed=6)
    assert not np.array_equal(x, x3)
    x64, y64 = moving_objects(8, 20, frame_size=12, num_classes=3, seed=5, dtype=np.float64)
    assert x64.dtype == np.float64
    np.testing.assert_array_equal(y64, y)


def test_moving_objects_frames_are_a_blob_in_unit_range():
    x, _ = moving_objects(4, 6, noise=0.0)
    assert x.min() >= 0 and 0.9 < x.max() <= 1.0             # peak ~1, nothing negative
    assert np.all(x.max(axis=2) > 0.5)                       # every frame shows the blob
    long_x, _ = moving_objects(2, 4096)                      # long sequences are supported
    assert long_x.shape == (2, 4096, 256)


@pytest.mark.parametrize("kwargs, name", [({"n": 0}, "n"), ({"seq_len": -1}, "seq_len"),
                                          ({"num_classes": 1}, "num_classes"),
                                          ({"noise": -0.1}, "noise"), ({"dtype": np.int32}, "dtype")])
def test_moving_objects_bad_arguments(kwargs, name):
    args = {"n": 4, "seq_len": 8, **kwargs}
    with pytest.raises(ValueError, match=name):
        moving_objects(**args)


def test_moving_objects_class0_moves_right():
    """Without noise, walk or jitter, class 0's blob moves right by about `speed` pixels a frame
    (its row fixed) and class 1's moves down (its column fixed)."""
    x, y = moving_objects(8, 2, num_classes=4, noise=0.0, walk=0.0, jitter=0.0, speed=2.0, seed=0)
    f = x.reshape(8, 2, 16, 16)
    i = int(np.argmax(y == 0))
    j = int(np.argmax(y == 1))
    phases = np.exp(2j * np.pi * np.arange(16) / 16)

    def col(fr):                                             # the blob's column, on the torus
        return np.angle(fr.sum(0) @ phases) * 16 / (2 * np.pi)

    def row(fr):                                             # the blob's row, on the torus
        return np.angle(fr.sum(1) @ phases) * 16 / (2 * np.pi)

    def d(a, b):                                             # b - a, wrapped into [-8, 8)
        return (b - a + 8) % 16 - 8

    assert 1.4 < d(col(f[i, 0]), col(f[i, 1])) < 2.6
    assert abs(d(row(f[i, 0]), row(f[i, 1]))) < 0.1
    assert 1.4 < d(row(f[j, 0]), row(f[j, 1])) < 2.6
    assert abs(d(col(f[j, 0]), col(f[j, 1]))) < 0.1


def circular_position(x, S=16):
    """Blob centre per frame on the torus, as angles (..., 2) = (column, row) phases."""
    f = x.reshape(*x.shape[:-1], S, S).astype(np.float64)
    w = np.exp(2j * np.pi * np.arange(S) / S)
    return np.stack([np.angle(f.sum(-2) @ w), np.angle(f.sum(-1) @ w)], axis=-1)


def displacement(x, start=0):
    """Summed wrapped phase steps from frame ``start`` on: the net motion, (N, 2)."""
    phi = circular_position(x[:, start:])
    return np.angle(np.exp(1j * np.diff(phi, axis=1))).sum(axis=1)


def probe_accuracy(features, y, C, n_train):
    """Least-squares linear probe on one-hot labels: test accuracy."""
    A = np.hstack([features, np.ones((len(y), 1))])
    W = np.linalg.lstsq(A[:n_train], np.eye(C)[y[:n_train]], rcond=None)[0]
    return np.mean((A[n_train:] @ W).argmax(1) == y[n_train:])


def test_moving_objects_needs_the_whole_sequence():
    """The class is readable from the motion over the whole sequence, not from the last frame
    and not from the last two frames: an honest check that a model needs memory."""
    x, y = moving_objects(600, 64, seed=1)
    n_train = 400                                            # chance = 0.25
    whole = probe_accuracy(displacement(x), y, 4, n_train)
    last_frame = probe_accuracy(x[:, -1].astype(np.float64), y, 4, n_train)
    last_pair = probe_accuracy(displacement(x, start=62), y, 4, n_train)
    assert whole > 0.95
    assert last_frame < 0.4
    assert last_pair < 0.4                                   # neighbouring frames: jitter wins
    # short videos: a blob started at a fixed place would give the class away here (~0.9)
    x16, y16 = moving_objects(600, 16, seed=2)
    assert probe_accuracy(x16[:, -1].astype(np.float64), y16, 4, n_train) < 0.4
    assert probe_accuracy(displacement(x16), y16, 4, n_train) > 0.7


@pytest.mark.parametrize("n, T, window", [(5, 100, (13, 57)), (300, 70, (40, 70)), (4, 9, (0, 1))])
def test_moving_objects_time_window_is_a_slice_of_the_full_data(n, T, window):
    """A rank renders only its frames; they are exactly those rows of the whole data set
    (noise chunks outside the window are drawn and dropped, so the random stream is the same)."""
    x, y = moving_objects(n, T, seed=3)
    xw, yw = moving_objects(n, T, seed=3, time_window=window)
    assert xw.shape == (n, window[1] - window[0], x.shape[2])
    assert np.array_equal(xw, x[:, window[0]:window[1]]) and np.array_equal(yw, y)
    with pytest.raises(ValueError, match="time_window"):
        moving_objects(n, T, seed=3, time_window=(5, T + 1))
    with pytest.raises(ValueError, match="time_window must be a pair of integers"):
        moving_objects(n, T, seed=3, time_window=(0.5, 1))    # int() would have cut it to 0


# ----------------------------------------------------------------------------------------------
# small tasks
# ----------------------------------------------------------------------------------------------
def test_pulse_order_labels():
    x, y = pulse_order(200, 30, noise=0.0, seed=3)
    assert x.shape == (200, 30, 2) and x.dtype == np.float32 and y.dtype == np.int64
    t0, t1 = x[:, :, 0].argmax(1), x[:, :, 1].argmax(1)
    assert np.all(x.sum(axis=1) == 1)                        # one unit pulse per channel
    np.testing.assert_array_equal(y, (t0 < t1).astype(np.int64))
    assert abs(y.mean() - 0.5) < 0.01                        # balanced
    assert np.mean(np.minimum(t0, t1) < 15) > 0.5            # the first pulse is often early
    np.testing.assert_array_equal(pulse_order(200, 30, seed=3)[0], pulse_order(200, 30, seed=3)[0])


def test_noisy_sum_sign_labels():
    x, y = noisy_sum_sign(50, 40, seed=2)
    assert x.shape == (50, 40, 1)
    np.testing.assert_array_equal(y, (x.sum(axis=(1, 2), dtype=np.float64) > 0))


# ----------------------------------------------------------------------------------------------
# splitting and batching
# ----------------------------------------------------------------------------------------------
def test_train_test_split_partitions_deterministically():
    x = np.arange(10, dtype=float).reshape(10, 1, 1)
    y = np.arange(10)
    xtr, ytr, xte, yte = train_test_split(x, y, 0.3, seed=4)
    assert len(yte) == 3 and len(ytr) == 7
    assert sorted(np.concatenate([ytr, yte])) == list(range(10))
    np.testing.assert_array_equal(xte[:, 0, 0], yte)         # x and y stay paired
    np.testing.assert_array_equal(train_test_split(x, y, 0.3, seed=4)[3], yte)
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(x, y, 1.0)


def test_split_rounds_and_keeps_one():
    """The test split holds round(test_fraction * N) sequences, at least one for any fraction
    above 0, and none for 0."""
    x = np.zeros((10, 1, 1))
    y = np.arange(10)
    assert len(train_test_split(x, y, 0.29)[3]) == 3
    assert len(train_test_split(x, y, 0.01)[3]) == 1
    assert len(train_test_split(x, y, 0.0)[3]) == 0


def test_batches_time_major_and_cover_everything():
    x = np.arange(7 * 3 * 2, dtype=float).reshape(7, 3, 2)
    y = np.arange(7)
    got = list(batches(x, y, 3, shuffle=True, seed=0))
    assert [b[0].shape for b in got] == [(3, 3, 2), (3, 3, 2), (3, 1, 2)]
    assert sorted(np.concatenate([b[1] for b in got])) == list(range(7))
    for xb, yb in got:                                       # (T, B, F) with the right sequences
        np.testing.assert_array_equal(xb, x[yb].transpose(1, 0, 2))
        assert xb.flags.c_contiguous
    again = [b[1] for b in batches(x, y, 3, seed=0)]
    assert all(np.array_equal(a, b[1]) for a, b in zip(again, got))
    ordered = np.concatenate([b[1] for b in batches(x, y, 3, shuffle=False)])
    np.testing.assert_array_equal(ordered, y)
    assert len(list(batches(x, y, 3, shuffle=False, drop_last=True))) == 2


def test_batches_shuffle_changes_order():
    """shuffle=True (the default) visits the sequences in an order drawn from the seed: not
    their stored order, and another order for another seed."""
    x = np.zeros((20, 1, 1))
    y = np.arange(20)
    got = np.concatenate([b for _, b in batches(x, y, 5, seed=0)])
    assert not np.array_equal(got, y)
    other_seed = np.concatenate([b for _, b in batches(x, y, 5, seed=1)])
    assert not np.array_equal(got, other_seed)


@pytest.mark.parametrize("make", [lambda s: moving_objects(2, 4, frame_size=4, seed=s),
                                  lambda s: pulse_order(2, 8, seed=s),
                                  lambda s: noisy_sum_sign(2, 8, seed=s),
                                  lambda s: train_test_split(np.zeros((4, 2, 1)),
                                                             np.arange(4) % 2, seed=s)])
@pytest.mark.parametrize("seed", [-1, 1.5, "3"])
def test_data_seeds_are_named(make, seed):
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        make(seed)
