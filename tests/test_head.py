"""The classifier head: loss against log-softmax written out here, gradients, bad labels."""
import numpy as np
import pytest

from mgrit_gru import (gradcheck, gru_backward, gru_forward, head_backward, head_forward,
                       init_gru, init_head)

B, H, C = 4, 5, 3


def _data(seed=0):
    head = init_head(H, C, seed=seed)
    rng = np.random.default_rng(seed + 1)
    return head, rng.standard_normal((B, H)), rng.integers(0, C, B)


def test_loss_is_mean_cross_entropy():
    head, h, y = _data()
    loss, logits, _ = head_forward(head, h, y)
    z = h @ head["weight_out"].T + head["bias_out"]
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(logits, z, rtol=0, atol=1e-14)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(B), y])), rel=1e-13)


def test_loss_is_finite_for_huge_logits():
    head, h, y = _data()
    loss, _, _ = head_forward(head, 1e4 * h, y)               # log-sum-exp must not overflow
    assert np.isfinite(loss)


def test_head_gradients_match_finite_differences():
    head, h, y = _data(seed=2)
    inputs = dict(head, h_top=h)

    def loss_fn(p):
        return head_forward({k: p[k] for k in head}, p["h_top"], y)[0]

    def grad_fn(p):
        hd = {k: p[k] for k in head}
        grads, dh = head_backward(hd, head_forward(hd, p["h_top"], y)[2])
        return dict(grads, h_top=dh)

    res = gradcheck(loss_fn, grad_fn, inputs, tol=1e-6)
    assert set(res.errors) == {"weight_out", "bias_out", "h_top"}
    assert res.ok, "\n" + res.table()


@pytest.mark.parametrize("cell,dt", [("classic", 1.0), ("implicit", 3.0)])
def test_gru_plus_head_gradients(cell, dt):
    """The training loss: GRU -> final top state -> head; every gradient by the chain rule."""
    L, T, I = 2, 4, 3
    params, head = init_gru(I, H, L, seed=3), init_head(H, C, seed=4)
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((T, B, I)), rng.integers(0, C, B)

    def split(p):
        return {k: p[k] for k in params}, {k: p[k] for k in head}

    def loss_fn(p):
        prm, hd = split(p)
        _, h_T, _ = gru_forward(prm, p["x"], cell=cell, dt=dt)
        return head_forward(hd, h_T[-1], y)[0]

    def grad_fn(p):
        prm, hd = split(p)
        _, h_T, cache = gru_forward(prm, p["x"], cell=cell, dt=dt)
        g_head, dh_top = head_backward(hd, head_forward(hd, h_T[-1], y)[2])
        dh_T = np.zeros_like(h_T)
        dh_T[-1] = dh_top                                      # only the top layer feeds the head
        g_gru, dx, _ = gru_backward(prm, cache, dh_T=dh_T)
        return dict(g_gru, **g_head, x=dx)

    res = gradcheck(loss_fn, grad_fn, dict(params, **head, x=x), tol=1e-6)
    assert res.ok, "\n" + res.table()


@pytest.mark.parametrize("labels,match", [
    (np.array([0, 1, 2, 3]), r"labels must lie in \[0, 3\)"),
    (np.array([0, -1, 2, 1]), r"labels must lie in \[0, 3\)"),
    (np.array([0.0, 1.0, 2.0, 1.0]), "labels must be integers"),
    (np.array([0, 1, 2]), "labels must be integers of shape"),
    (np.array([[0, 1, 2, 1]]), "labels must be integers of shape"),
])
def test_bad_labels(labels, match):
    head, h, _ = _data()
    with pytest.raises(ValueError, match=match):
        head_forward(head, h, labels)


def test_bad_h_top_and_sizes():
    head, h, y = _data()
    with pytest.raises(ValueError, match="h_top must have shape"):
        head_forward(head, h[:, :-1], y)
    with pytest.raises(ValueError, match="h_top must have shape"):
        head_forward(head, h[0], y)
    with pytest.raises(ValueError, match="num_classes"):
        init_head(H, 0)
    with pytest.raises(ValueError, match="hidden_size"):
        init_head(-1, C)


def test_init_head_shapes_and_seed():
    a, b = init_head(H, C, seed=1), init_head(H, C, seed=1)
    assert a["weight_out"].shape == (C, H) and a["bias_out"].shape == (C,)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.abs(a["weight_out"]).max() <= 1 / np.sqrt(H)


def test_head_cache_does_not_share_the_callers_arrays():
    head, h, y = _data()
    _, _, cache = head_forward(head, h, y)
    ref, dh_ref = head_backward(head, cache)
    h[...] = 0.0
    y[...] = 0
    g, dh = head_backward(head, cache)
    assert all(np.array_equal(g[k], ref[k]) for k in ref) and np.array_equal(dh, dh_ref)


def test_head_rejects_nan_and_empty_batch():
    head = init_head(4, 3, seed=0)
    with pytest.raises(ValueError, match="weight_out or bias_out contains NaN"):
        head_forward(dict(head, bias_out=np.full(3, np.nan)), np.zeros((2, 4)), np.array([0, 1]))
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        init_head(4, 3, dtype=np.int32)
    with pytest.raises(ValueError, match="NaN or Inf"):
        head_forward(head, np.full((2, 4), np.nan), np.array([0, 1]))
    with pytest.raises(ValueError, match="B >= 1"):
        head_forward(head, np.zeros((0, 4)), np.zeros(0, dtype=int))


def _bad_heads():
    head = init_head(H, C, seed=0)
    W, b = head["weight_out"], head["bias_out"]
    return [
        ({"weight_out": W}, r"head is missing 'bias_out'"),
        ({"bias_out": b}, r"head is missing 'weight_out'"),
        ({"weight_out": W.tolist(), "bias_out": b}, r"head\['weight_out'\] must be a float32 or "
                                                    r"float64 ndarray, got list"),
        ({"weight_out": W, "bias_out": b.astype(int)}, r"head\['bias_out'\] must be .* got int"),
        ({"weight_out": W + 0j, "bias_out": b}, r"head\['weight_out'\] must be .* got complex"),
        ({"weight_out": W.astype(np.float32), "bias_out": b}, "must share one dtype"),
        ({"weight_out": np.zeros((C, 0)), "bias_out": b}, "C, H >= 1"),
        ([W, b], "head must be a dict"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_heads())))
def test_bad_head_is_refused_naming_the_entry(case):
    bad, match = _bad_heads()[case]
    head, h, y = _data()
    _, _, cache = head_forward(head, h, y)
    with pytest.raises(ValueError, match=match):
        head_forward(bad, h, y)
    with pytest.raises(ValueError, match=match):
        head_backward(bad, cache)


_NOT_REAL = r"h_top must be real numbers \(a float or integer array\), got dtype "


@pytest.mark.parametrize("h_top,match", [
    (np.zeros((B, H), dtype=object), _NOT_REAL + "object"),
    (np.zeros((B, H), dtype=complex), _NOT_REAL + "complex128"),
    (np.zeros((B, H), dtype=bool), _NOT_REAL + "bool"),
    (np.full((B, H), "1"), _NOT_REAL + "<U1"),
    ([[0.0] * H, [0.0]], "h_top must be an array of real numbers, got list"),
    (np.full((B, H), 1e300), "h_top contains NaN or Inf"),  # Inf once cast to float32
])
def test_h_top_must_be_real_numbers(h_top, match):
    head = init_head(H, C, dtype=np.float32)
    y = np.zeros(B, dtype=int)
    with pytest.raises(ValueError, match=match):
        head_forward(head, h_top, y)


def test_ragged_labels_are_refused():
    head, h, _ = _data()
    with pytest.raises(ValueError, match="labels must be an array"):
        head_forward(head, h, [[0, 1], [2]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_h_top_is_cast_to_the_heads_dtype(dtype):
    head = init_head(H, C, dtype=dtype)
    rng = np.random.default_rng(0)
    h, y = rng.standard_normal((B, H)), rng.integers(0, C, B)   # float64 h_top
    loss, logits, cache = head_forward(head, h, y)
    grads, dh = head_backward(head, cache)
    assert logits.dtype == dtype and dh.dtype == dtype
    assert all(g.dtype == dtype for g in grads.values())
    loss_int, _, _ = head_forward(head, np.ones((B, H), dtype=int), y)   # integers are numbers
    assert np.isfinite(loss) and np.isfinite(loss_int)


def test_head_backward_refuses_a_foreign_cache():
    head, h, y = _data()
    _, _, cache = head_forward(head, h, y)
    with pytest.raises(ValueError, match="cache must be the dict of arrays"):
        head_backward(head, {})
    with pytest.raises(ValueError, match="cache must be the dict of arrays"):
        head_backward(head, dict(cache, p=cache["p"].tolist()))
    with pytest.raises(ValueError, match=r"cache does not match head \(weight_out float64 \(3, 6\)\)"):
        head_backward(init_head(H + 1, C), cache)          # silently wrong shapes before
    with pytest.raises(ValueError, match="cache does not match head"):
        head_backward(init_head(H, C, dtype=np.float32), cache)
    with pytest.raises(ValueError, match="cache does not match head"):
        head_backward(head, dict(cache, labels=cache["labels"].astype(float)))
