"""Synthetic sequence-classification data, generated in memory, deterministic by seed.

- `moving_objects`: small video frames of a blob drifting on a torus; the class is the drift
  direction. A video task in the spirit of HMDB51 whose label needs the *whole* sequence.
- `early_event`: the class is an event near the start, followed by look-alike distractors: a
  long-memory task on which exact and inexact gradients train differently.
- `pulse_order`: two channels, one pulse each; which pulse came first (quick demos).
- `noisy_sum_sign`: one noisy channel; the sign of its sum (the simplest memory task).

All return ``(x, y)`` with ``x`` of shape (N, T, F) (batch first, as stored on disk) and ``y``
int64 of shape (N,). `batches` turns them into the time-major (T, B, F) batches the GRU takes.
"""
from __future__ import annotations

import numpy as np

from ...checks import check_time_window, float_dtype, int_at_least, nonneg_float, positive_int


# ----------------------------------------------------------------------------------------------
# moving objects: a video task that needs memory
# ----------------------------------------------------------------------------------------------
def moving_objects(n, seq_len, frame_size=16, num_classes=4, noise=0.1, seed=0,
                   dtype=np.float32, speed=0.25, walk=0.2, jitter=1.0, blob_sigma=1.5,
                   time_window=None):
    """Videos of a Gaussian blob drifting on a torus; the class is the drift direction.

    Each video's blob centre follows, in pixels,

        c_t = c_0 + t·v_y + Σ_{s≤t} w_s + j_t        (mod frame_size, on both axes)

    with ``v_y = speed·a·(cos θ_y, sin θ_y)``, θ_y = 2π y / num_classes, a ~ U(0.75, 1.25) a
    per-video speed factor, c_0 uniform on the torus, w_s ~ N(0, walk²) a random walk and
    j_t ~ N(0, jitter²) per-frame jitter that does not accumulate. Frame t is the blob
    exp(-|p - c_t|² / (2 blob_sigma²)) (periodic distance, peak 1) plus pixel noise
    N(0, noise²), flattened row-major.

    Why it needs memory: c_0 is uniform and the blob wraps around, so the last frame (any single
    frame) is independent of the class; between two neighbouring frames the displacement is
    dominated by jitter (std ``jitter·√2`` against a drift of ``speed``), so a short window is
    ambiguous; over T frames the drift ``T·speed`` beats the noise ``walk·√T``, so the whole
    sequence decides the class.

    Parameters
    ----------
    n : int
        Number of videos.
    seq_len : int
        Frames per video, T.
    frame_size : int, optional
        Frames are frame_size x frame_size; F = frame_size².
    num_classes : int >= 2, optional
        Drift directions, equally spaced in angle (4: right, down, left, up).
    noise : float >= 0, optional
        Pixel noise standard deviation.
    seed : int, optional
        Same seed, same data (independent of how the data is chunked internally).
    dtype : float32 or float64, optional
    speed, walk, jitter, blob_sigma : float, optional
        Drift in pixels per frame, random-walk step std, per-frame jitter std, blob width.
    time_window : (start, stop), optional
        Render only frames start..stop-1: exactly ``x[:, start:stop]`` of the full data set,
        without ever holding the rest (an MPI rank's own time rows).

    Returns
    -------
    x : ndarray (n, seq_len, frame_size²) of ``dtype`` (``stop - start`` frames with a window)
        Values roughly in [0, 1] (the blob) plus noise.
    y : ndarray (n,) int64
        Classes, balanced (``arange(n) % num_classes``, shuffled).
    """
    n = positive_int(n, "n")
    T = positive_int(seq_len, "seq_len")
    S = positive_int(frame_size, "frame_size")
    C = positive_int(num_classes, "num_classes")
    if C < 2:
        raise ValueError(f"num_classes must be >= 2, got {C}")
    noise = nonneg_float(noise, "noise")
    speed, walk, jitter = (nonneg_float(v, k) for v, k in
                           ((speed, "speed"), (walk, "walk"), (jitter, "jitter")))
    blob_sigma = nonneg_float(blob_sigma, "blob_sigma")
    if blob_sigma == 0:
        raise ValueError("blob_sigma must be > 0")
    dtype = float_dtype(dtype)
    t_lo, t_hi = (0, T) if time_window is None else check_time_window(time_window, T)
    rng = np.random.default_rng(int_at_least(seed, "seed", 0))
    y = rng.permutation(np.arange(n) % C).astype(np.int64)   # balanced classes
    theta = 2 * np.pi * y / C
    a = rng.uniform(0.75, 1.25, n)                           # per-video speed factor
    v = speed * a[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)   # (n, 2) = (col, row)
    c0 = rng.uniform(0, S, (n, 2))
    steps = rng.normal(0.0, walk, (n, T, 2))
    steps[:, 0] = 0.0                                        # c at t = 0 is c_0 (+ jitter)
    c = c0[:, None] + v[:, None] * np.arange(T)[None, :, None] + np.cumsum(steps, axis=1)
    c += rng.normal(0.0, jitter, (n, T, 2))                  # jitter: not accumulated
    R = 64                                                   # sub-pixel steps of the blob table
    q = np.arange(S * R) / R                                 # tabulated centres in [0, S)
    d = np.arange(S)[None, :] - q[:, None]                   # (S·R, S): pixel minus centre
    d -= S * np.round(d / S)                                 # periodic distance in [-S/2, S/2]
    profile = np.exp(-(d * d) / (2 * blob_sigma ** 2)).astype(dtype)   # 1-D blob per centre
    k = np.rint(c * R).astype(np.int64) % (S * R)            # (n, T, 2): centre -> table row
    x = np.empty((n, t_hi - t_lo, S, S), dtype)
    chunk = max(1, 2 ** 22 // (S * S * n))                   # ~4M floats per chunk
    for t0 in range(0, t_hi, chunk):
        t1 = min(t0 + chunk, T)
        a, b = max(t0, t_lo), min(t1, t_hi)                  # the part of this chunk we keep
        eps = rng.standard_normal((n, t1 - t0, S, S), dtype=dtype) if noise else None
        if a >= b:                                           # outside the window: the noise is
            continue                                         # drawn all the same (same stream)
        g_col = profile[k[:, a:b, 0]]                        # (n, b - a, S) along columns
        g_row = profile[k[:, a:b, 1]]                        # (n, b - a, S) along rows
        xc = x[:, a - t_lo:b - t_lo]                         # view of these frames
        np.multiply(g_row[..., :, None], g_col[..., None, :], out=xc)
        if noise:                                            # chunked: no second full-size array
            e = eps[:, a - t0:b - t0]
            e *= noise
            xc += e
    return x.reshape(n, t_hi - t_lo, S * S), y


# ----------------------------------------------------------------------------------------------
# an early event among distractors: a task that needs long memory
# ----------------------------------------------------------------------------------------------
def early_event(n, seq_len, num_classes=4, distractors=4, noise=0.1, seed=0, dtype=np.float32,
                event_len=4, window=12, time_window=None):
    """The class is the channel of an event in the first ``window`` steps; later events on
    random channels are distractors.

    ``num_classes`` channels of Gaussian noise N(0, noise²). Sequence i has one event on channel
    y_i: ``event_len`` consecutive steps of +1, starting uniformly in
    ``[0, window - event_len]``. Then ``distractors`` events of the same shape, each on a channel
    drawn uniformly from all of them and starting uniformly in ``[window, T - event_len]``.

    What it tests: the answer sits at the start and the end of the sequence carries nothing
    about it (the distractors are independent of the class and look exactly like the event),
    so a model must carry the early event across the whole sequence, T - window steps, past
    events that look the same. The gradient that teaches it must flow back the same distance:
    the task tells a method that carries credit over long spans from one that does not. Chance
    is 1 / num_classes; a model that reads the last event is at chance too.

    Parameters
    ----------
    n, seq_len : int
        Number of sequences and their length T (>= window + event_len with distractors).
    num_classes : int >= 2, optional
        Classes = channels.
    distractors : int >= 0, optional
        Late events per sequence (the difficulty, with ``noise`` and T).
    noise : float >= 0, optional
    seed : int, optional
    dtype : float32 or float64, optional
    event_len, window : int, optional
        Steps of one event; the early part in which the class event starts and ends.
    time_window : (start, stop), optional
        Only rows start..stop-1: exactly ``x[:, start:stop]`` of the full data set.

    Returns
    -------
    x : ndarray (n, T, num_classes) (or the ``time_window``'s rows)
    y : ndarray (n,) int64, balanced over the classes
    """
    n = positive_int(n, "n")
    T = positive_int(seq_len, "seq_len")
    C = int_at_least(num_classes, "num_classes", 2)
    k = int_at_least(distractors, "distractors", 0)
    event_len = positive_int(event_len, "event_len")
    window = int_at_least(window, "window", event_len)
    noise = nonneg_float(noise, "noise")
    dtype = float_dtype(dtype)
    if T < window or (k and T < window + event_len):
        raise ValueError(f"seq_len must be >= {window + event_len if k else window} (window "
                         f"{window}{f' + a distractor of {event_len} steps' if k else ''}), "
                         f"got {T}")
    start, stop = (0, T) if time_window is None else check_time_window(time_window, T)
    rng = np.random.default_rng(int_at_least(seed, "seed", 0))
    y = rng.permutation(np.arange(n) % C).astype(np.int64)
    t_event = rng.integers(0, window - event_len + 1, n)
    t_late = rng.integers(window, max(T - event_len, window) + 1, (n, k))
    c_late = rng.integers(0, C, (n, k))
    x = noise * rng.standard_normal((n, T, C))
    steps = np.arange(event_len)
    rows = np.arange(n)[:, None]
    np.add.at(x, (rows, t_event[:, None] + steps, y[:, None]), 1.0)
    for j in range(k):
        np.add.at(x, (rows, t_late[:, j, None] + steps, c_late[:, j, None]), 1.0)
    return x[:, start:stop].astype(dtype), y


# ----------------------------------------------------------------------------------------------
# small tasks for quick demos
# ----------------------------------------------------------------------------------------------
def pulse_order(n, seq_len, noise=0.1, seed=0, dtype=np.float32):
    """Two channels, one unit pulse in each at a random time: did channel 0's pulse come first?

    The pulse times are distinct and uniform over the whole sequence, so the first pulse is often
    far in the past when the sequence ends: the model must remember it.

    Parameters
    ----------
    n, seq_len : int
        Number of sequences and their length T >= 2.
    noise : float >= 0, optional
        Gaussian noise std added to both channels.
    seed : int, optional
    dtype : float32 or float64, optional

    Returns
    -------
    x : ndarray (n, seq_len, 2)
    y : ndarray (n,) int64
        1 if channel 0's pulse came first, else 0 (balanced).
    """
    n = positive_int(n, "n")
    T = positive_int(seq_len, "seq_len")
    if T < 2:
        raise ValueError(f"seq_len must be >= 2 for two distinct pulse times, got {T}")
    noise = nonneg_float(noise, "noise")
    dtype = float_dtype(dtype)
    rng = np.random.default_rng(int_at_least(seed, "seed", 0))
    y = rng.permutation(np.arange(n) % 2).astype(np.int64)
    t_early = rng.integers(0, T - 1, n)                      # earlier pulse in [0, T-2]
    t_late = t_early + 1 + (rng.random(n) * (T - 1 - t_early)).astype(np.int64)  # in (t_early, T)
    x = (noise * rng.standard_normal((n, T, 2))).astype(dtype)
    rows = np.arange(n)
    x[rows, t_early, 1 - y] += 1                             # y = 1: channel 0 is early
    x[rows, t_late, y] += 1
    return x, y


def noisy_sum_sign(n, seq_len, seed=0, dtype=np.float32):
    """One channel of N(0, 1) noise; the class is whether its sum over the sequence is > 0.

    Returns ``x`` (n, seq_len, 1) and ``y`` (n,) int64 in {0, 1}. Every step matters equally,
    so no window shorter than the sequence decides the class.
    """
    n = positive_int(n, "n")
    T = positive_int(seq_len, "seq_len")
    dtype = float_dtype(dtype)
    rng = np.random.default_rng(int_at_least(seed, "seed", 0))
    x = rng.standard_normal((n, T, 1)).astype(dtype)
    y = (x.sum(axis=(1, 2), dtype=np.float64) > 0).astype(np.int64)
    return x, y


# ----------------------------------------------------------------------------------------------
# splitting and batching
# ----------------------------------------------------------------------------------------------
def _check_xy(x, y):
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 3:
        raise ValueError(f"x must have shape (N, T, F), got {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have shape (N,) = ({x.shape[0]},), got {y.shape}")
    return x, y


def train_test_split(x, y, test_fraction=0.2, seed=0):
    """Shuffle (seeded) and split into ``(x_train, y_train, x_test, y_test)``.

    The test set has ``round(test_fraction · N)`` sequences (at least 1 and at most N-1 when
    ``0 < test_fraction < 1``; none when it is 0).
    """
    x, y = _check_xy(x, y)
    try:
        f = float(test_fraction)
    except (TypeError, ValueError):
        raise ValueError(f"test_fraction must be a number in [0, 1), got {test_fraction!r}") from None
    if not 0 <= f < 1:
        raise ValueError(f"test_fraction must lie in [0, 1), got {f}")
    N = x.shape[0]
    n_test = 0 if f == 0 else min(max(1, int(round(f * N))), N - 1)
    if f > 0 and N < 2:
        raise ValueError(f"cannot split {N} sequence(s) into train and test")
    perm = np.random.default_rng(int_at_least(seed, "seed", 0)).permutation(N)
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


def batches(x, y, batch_size, shuffle=True, seed=None, drop_last=False):
    """Yield time-major batches ``(x_b (T, B, F), y_b (B,))`` covering the data once.

    Parameters
    ----------
    x : ndarray (N, T, F)
    y : ndarray (N,)
    batch_size : int
    shuffle : bool, optional
        Visit the sequences in a random order drawn from ``seed``.
    seed : int or numpy Generator, optional
        Pass ``seed + epoch`` (or one Generator for the run) for a reproducible new order per
        epoch; None draws fresh entropy (not reproducible).
    drop_last : bool, optional
        Skip the last batch if it has fewer than ``batch_size`` sequences.

    Yields
    ------
    x_b : ndarray (T, B, F), C-contiguous
    y_b : ndarray (B,)
    """
    x, y = _check_xy(x, y)
    batch_size = positive_int(batch_size, "batch_size")
    N = x.shape[0]
    order = np.random.default_rng(seed).permutation(N) if shuffle else np.arange(N)
    for i in range(0, N, batch_size):
        idx = order[i:i + batch_size]
        if drop_last and len(idx) < batch_size:
            break
        yield np.ascontiguousarray(x[idx].transpose(1, 0, 2)), y[idx]
