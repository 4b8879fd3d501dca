"""Optimisers against hand-computed updates, and exact resume from a state_dict."""
import math

import numpy as np
import pytest

from mgrit_gru.training.optim import SGD, Adam, clip_grad_norm, grad_norm


def one(v, dtype=np.float64):
    """A one-parameter dict {"w": array([v])}."""
    return {"w": np.array([v], dtype=dtype)}


def run(opt, grads_seq):
    """Apply a sequence of scalar gradients to parameter "w"; return its value after each."""
    out = []
    for g in grads_seq:
        opt.step({"w": np.array([g], dtype=opt.params["w"].dtype)})
        out.append(float(opt.params["w"][0]))
    return out


# ----------------------------------------------------------------------------------------------
# SGD
# ----------------------------------------------------------------------------------------------
def test_sgd_plain_steps():
    # p ← p − lr g:  1 − 0.1·1 = 0.9,  0.9 − 0.1·2 = 0.7,  0.7 − 0.1·3 = 0.4
    assert run(SGD(one(1.0), lr=0.1), [1, 2, 3]) == pytest.approx([0.9, 0.7, 0.4], abs=1e-15)


def test_sgd_momentum_steps():
    # b1 = 1, p1 = 0.9;  b2 = 0.9·1 + 2 = 2.9, p2 = 0.61;  b3 = 0.9·2.9 + 3 = 5.61, p3 = 0.049
    got = run(SGD(one(1.0), lr=0.1, momentum=0.9), [1, 2, 3])
    assert got == pytest.approx([0.9, 0.61, 0.049], abs=1e-14)


def test_sgd_nesterov_steps():
    # b1 = 1, g' = 1 + 0.9·1 = 1.9, p1 = 0.81;  b2 = 2.9, g' = 2 + 0.9·2.9 = 4.61, p2 = 0.349
    got = run(SGD(one(1.0), lr=0.1, momentum=0.9, nesterov=True), [1, 2])
    assert got == pytest.approx([0.81, 0.349], abs=1e-14)


def test_sgd_weight_decay_is_l2_added_to_gradient():
    # g' = 0.5 + 0.1·2 = 0.7, p1 = 1.93;  g' = 0.5 + 0.1·1.93 = 0.693, p2 = 1.8607
    got = run(SGD(one(2.0), lr=0.1, weight_decay=0.1), [0.5, 0.5])
    assert got == pytest.approx([1.93, 1.8607], abs=1e-14)


def test_sgd_momentum_does_not_alias_gradient():
    """SGD's momentum buffer is its own array: steps do not change the caller's gradient, and
    the second step uses the buffer 0.9 * 1 + 1 = 1.9 (p = 1 - 0.1 - 0.19)."""
    g = np.array([1.0])
    opt = SGD({"w": np.array([1.0])}, lr=0.1, momentum=0.9)
    opt.step({"w": g})
    opt.step({"w": g})
    assert g[0] == 1.0
    assert opt.params["w"][0] == pytest.approx(1.0 - 0.1 - 0.19)


# ----------------------------------------------------------------------------------------------
# Adam
# ----------------------------------------------------------------------------------------------
def adam_by_hand(p, gs, lr, b1, b2, eps, wd=0.0):
    """Scalar Adam written out from Kingma & Ba / torch.optim.Adam's documentation."""
    m = v = 0.0
    out = []
    for t, g in enumerate(gs, start=1):
        g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p = p - lr * m_hat / (math.sqrt(v_hat) + eps)
        out.append(p)
    return out


def test_adam_first_step_is_lr_times_sign():
    # m̂ = g and v̂ = g² after one step, so p1 = p0 − lr g / (|g| + eps)
    got = run(Adam(one(1.0), lr=0.01), [-4.0])
    assert got[0] == pytest.approx(1.0 + 0.01 * 4.0 / (4.0 + 1e-8), abs=1e-15)


def test_adam_three_steps():
    gs = [1.0, -2.0, 0.5]
    got = run(Adam(one(1.0), lr=0.1, betas=(0.8, 0.9), eps=1e-6), gs)
    assert got == pytest.approx(adam_by_hand(1.0, gs, 0.1, 0.8, 0.9, 1e-6), abs=1e-14)


def test_adam_weight_decay_is_l2_not_decoupled():
    gs = [1.0, -2.0, 0.5]
    got = run(Adam(one(3.0), lr=0.1, weight_decay=0.5), gs)
    assert got == pytest.approx(adam_by_hand(3.0, gs, 0.1, 0.9, 0.999, 1e-8, wd=0.5), abs=1e-14)
    decoupled = 3.0 * (1 - 0.1 * 0.5)                        # AdamW's first step would shrink p
    assert abs(got[0] - (decoupled - 0.1)) > 1e-3


def test_adam_updates_every_array_elementwise():
    params = {"a": np.array([[1.0, -1.0]]), "b": np.array([0.5])}
    Adam(params, lr=0.1).step({"a": np.array([[2.0, -3.0]]), "b": np.array([0.0])})
    assert params["a"] == pytest.approx(np.array([[0.9, -0.9]]), abs=1e-8)
    assert params["b"][0] == 0.5                             # zero gradient: no move


# ----------------------------------------------------------------------------------------------
# dtypes, inputs left alone, bad input
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
                                  lambda p: Adam(p, lr=0.1, weight_decay=0.01)])
def test_float32_params_stay_float32(make):
    params = {"w": np.ones((3, 2), np.float32)}
    ref = params["w"]
    opt = make(params)
    g = np.full((3, 2), 0.3, np.float64)                     # a float64 gradient is cast
    g_before = g.copy()
    for _ in range(2):
        opt.step({"w": g})
    assert params["w"] is ref and params["w"].dtype == np.float32   # updated in place
    assert all(v.dtype == np.float32 for b in opt.state.values() for v in b.values())
    np.testing.assert_array_equal(g, g_before)               # gradients untouched


def test_bad_arguments():
    with pytest.raises(ValueError, match="lr"):
        SGD(one(1.0), lr=-1)
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got 0"):
        Adam(one(1.0), lr=0)
    with pytest.raises(ValueError, match="eps must be a finite number > 0, got 0"):        # 0/0 where g stays 0
        Adam(one(1.0), eps=0.0)
    with pytest.raises(ValueError, match="nesterov"):
        SGD(one(1.0), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        Adam(one(1.0), betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="params"):
        Adam({"w": np.array([1, 2])})                        # integer parameters
    with pytest.raises(ValueError, match="missing"):
        Adam(one(1.0)).step({})
    with pytest.raises(ValueError, match="shape"):
        Adam(one(1.0)).step({"w": np.ones(2)})


# ----------------------------------------------------------------------------------------------
# clipping
# ----------------------------------------------------------------------------------------------
def test_clip_grad_norm_scales_jointly():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    total = clip_grad_norm(grads, 1.0)
    assert total == 5.0                                      # norm before clipping
    coef = 1.0 / (5.0 + 1e-6)
    np.testing.assert_allclose(grads["a"], [3 * coef, 0.0], rtol=1e-15)
    np.testing.assert_allclose(grads["b"], [[4 * coef]], rtol=1e-15)


def test_clip_grad_norm_leaves_small_gradients_alone():
    grads = {"a": np.array([3.0, 0.0], np.float32), "b": np.array([4.0], np.float32)}
    assert clip_grad_norm(grads, 10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(grads["a"], [3.0, 0.0])
    assert grads["a"].dtype == np.float32


def test_clip_grad_norm_inf_and_bad_input():
    grads = {"a": np.array([3.0, -7.0]), "b": np.array([4.0])}
    assert grad_norm(grads) == pytest.approx(math.sqrt(74)) and grad_norm(grads, math.inf) == 7
    assert grads["a"][1] == -7.0                             # grad_norm scales nothing
    assert clip_grad_norm(grads, 3.5, norm_type=math.inf) == 7.0
    assert np.max(np.abs(grads["a"])) == pytest.approx(3.5)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(grads, 0.0)
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm(grads, 1.0, norm_type=1)


@pytest.mark.parametrize("first", [True, False])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_clip_grad_norm_reports_a_non_finite_norm_and_scales_nothing(bad, norm_type, first):
    grads = {"a": np.array([bad, 1.0]), "b": np.array([2.0])}
    if not first:                                            # max() drops a NaN that is not first
        grads = {"b": grads["b"], "a": grads["a"]}
    total = clip_grad_norm(grads, 1.0, norm_type=norm_type)
    assert not math.isfinite(total)
    # Inf * 0 would have made NaN of the Inf and zeros of the rest
    np.testing.assert_array_equal(grads["a"], [bad, 1.0])
    np.testing.assert_array_equal(grads["b"], [2.0])


# ----------------------------------------------------------------------------------------------
# state_dict: exact resume
# ----------------------------------------------------------------------------------------------
def grad_stream(seed, shape, n, dtype):
    rng = np.random.default_rng(seed)
    return [{"w": rng.standard_normal(shape).astype(dtype), "b": rng.standard_normal(3).astype(dtype)}
            for _ in range(n)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                                weight_decay=1e-3),
                                  lambda p: Adam(p, lr=0.01, betas=(0.8, 0.95), weight_decay=1e-3)])
def test_state_dict_resume_is_bit_identical(make, dtype, tmp_path):
    start = {"w": np.linspace(-1, 1, 6).reshape(2, 3).astype(dtype), "b": np.ones(3, dtype)}
    gs = grad_stream(0, (2, 3), 6, dtype)
    # uninterrupted: 6 steps
    p_full = {k: v.copy() for k, v in start.items()}
    opt = make(p_full)
    for g in gs:
        opt.step(g)
    # interrupted after 3 steps, saved to an .npz next to the parameters, resumed
    p_a = {k: v.copy() for k, v in start.items()}
    opt_a = make(p_a)
    for g in gs[:3]:
        opt_a.step(g)
    np.savez(tmp_path / "ckpt.npz", **p_a, **opt_a.state_dict())
    with np.load(tmp_path / "ckpt.npz") as f:
        saved = dict(f)
    p_b = {k: saved[k].copy() for k in start}
    opt_b = make(p_b)
    opt_b.lr = 123.0                                         # overwritten by load_state_dict
    opt_b.load_state_dict(saved)
    assert opt_b.step_count == 3 and opt_b.lr == opt_a.lr
    for g in gs[3:]:
        opt_b.step(g)
    for k in start:
        assert p_b[k].dtype == dtype
        np.testing.assert_array_equal(p_b[k], p_full[k])    # bit-identical continuation


def test_state_dict_keys_are_prefixed_and_flat():
    opt = Adam(one(1.0))
    opt.step({"w": np.array([1.0])})
    sd = opt.state_dict()
    assert set(sd) == {"optim.type", "optim.step", "optim.lr", "optim.betas", "optim.eps",
                       "optim.weight_decay", "optim.exp_avg.w", "optim.exp_avg_sq.w"}
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in sd.values())


def test_state_dict_is_a_copy_and_restores_all_hyper():
    """state_dict() returns copies (later steps, of this optimiser or of one that loaded it, do
    not change it), and load_state_dict restores every hyper-parameter, nesterov as a bool."""
    a = SGD({"w": np.array([1.0])}, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)
    a.step({"w": np.array([1.0])})
    sd = a.state_dict()
    snap = {k: v.copy() for k, v in sd.items()}
    a.step({"w": np.array([1.0])})
    assert all(np.array_equal(sd[k], snap[k]) for k in sd)
    b = SGD({"w": np.array([1.0])}, lr=1.0, momentum=0.5, weight_decay=0.0)
    b.load_state_dict(sd)
    assert (b.lr, b.momentum, b.nesterov, b.weight_decay) == (0.1, 0.9, True, 0.1)
    assert type(b.nesterov) is bool
    b.step({"w": np.array([1.0])})
    buffer = "optim.momentum_buffer.w"
    assert np.array_equal(sd[buffer], snap[buffer])


def test_load_state_dict_errors():
    adam, sgd = Adam(one(1.0)), SGD(one(1.0), lr=0.1, momentum=0.9)
    adam.step({"w": np.array([1.0])})
    sd = adam.state_dict()
    with pytest.raises(ValueError, match="Adam"):
        sgd.load_state_dict(sd)
    with pytest.raises(ValueError, match="optim.lr"):
        Adam(one(1.0)).load_state_dict({k: v for k, v in sd.items() if k != "optim.lr"})
    with pytest.raises(ValueError, match="optim.exp_avg.w"):
        Adam({"w": np.zeros(2)}).load_state_dict(sd)         # shape mismatch
    with pytest.raises(ValueError, match="names no parameter"):
        Adam({"v": np.zeros(1)}).load_state_dict(sd)


# ----------------------------------------------------------------------------------------------
# input checks: options, gradients, loaded state, clipping
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["False", "True", 0, 1.0, None, np.array(True)])
def test_sgd_nesterov_must_be_a_bool(flag):
    with pytest.raises(ValueError, match="nesterov must be True or False"):
        SGD(one(1.0), lr=0.1, momentum=0.9, nesterov=flag)     # bool("False") is True


@pytest.mark.parametrize("betas", [0.9, (0.9,), (0.9, 0.99, 0.999), "09", (0.9, np.nan), None])
def test_adam_betas_must_be_two_numbers_in_0_1(betas):
    with pytest.raises(ValueError, match="betas must"):
        Adam(one(1.0), betas=betas)


def test_read_only_params_are_refused():
    w = np.ones(2)
    w.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\['w'\] is read-only"):
        SGD({"w": w}, lr=0.1)


F32_MAX_X10 = 10.0 * float(np.finfo(np.float32).max)   # finite in float64, Inf in float32


@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.1, momentum=0.9),
                                  lambda p: Adam(p, lr=0.1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad_b,match", [
    (np.array([1.0, np.nan]), r"grads\['b'\] contains NaN or Inf"),
    (np.array([-np.inf, 1.0]), r"grads\['b'\] contains NaN or Inf"),
    (np.array([1, 2]), r"grads\['b'\] must be a real float array, got dtype int64"),
    (np.array([1, 2j]), r"grads\['b'\] must be real numbers .*, got dtype complex128"),
    (np.array(["1", "2"]), r"grads\['b'\] must be real numbers"),
    (np.array([True, False]), r"grads\['b'\] must be real numbers .*, got dtype bool"),
    ([[1.0], [2.0, 3.0]], r"grads\['b'\] must be an array of real numbers, got list"),
    (np.ones(3), r"grads\['b'\] has shape \(3,\)"),
])
def test_step_refuses_a_bad_gradient_and_updates_nothing(make, dtype, bad_b, match):
    params = {"a": np.ones(2, dtype), "b": np.ones(2, dtype)}
    opt = make(params)
    opt.step({"a": np.ones(2, dtype), "b": np.ones(2, dtype)})
    before, state = ({k: v.copy() for k, v in params.items()},
                     {k: v.copy() for k, v in opt.state_dict().items()})
    with pytest.raises(ValueError, match=match):
        opt.step({"a": np.ones(2, dtype), "b": bad_b})     # "a" comes first and is fine
    for k in params:                                         # checked all before updating any
        np.testing.assert_array_equal(params[k], before[k])
    after = opt.state_dict()
    assert opt.step_count == 1 and all(np.array_equal(after[k], state[k]) for k in state)


def test_step_casts_float64_gradients_to_float32_and_refuses_overflow():
    params = {"w": np.ones(2, np.float32)}
    opt = SGD(params, lr=0.5)
    opt.step({"w": np.array([1.0, 2.0])})                   # float64: rounded to float32
    assert params["w"].dtype == np.float32 and params["w"].tolist() == [0.5, 0.0]
    with pytest.raises(ValueError, match=r"grads\['w'\] contains NaN or Inf"):
        opt.step({"w": np.array([F32_MAX_X10, 0.0])})       # finite in float64 only
    assert params["w"].tolist() == [0.5, 0.0]


def test_step_refuses_missing_extra_keys_and_non_dicts():
    with pytest.raises(ValueError, match=r"missing \['w'\], extra \['v'\]"):
        SGD(one(1.0), lr=0.1).step({"v": np.ones(1)})
    with pytest.raises(ValueError, match="grads must be a dict"):
        Adam(one(1.0)).step([np.ones(1)])


def _sgd():
    opt = SGD({"w": np.array([1.0, 2.0])}, lr=0.1, momentum=0.9)
    opt.step({"w": np.array([1.0, 1.0])})
    return opt


def _adam():
    opt = Adam({"w": np.array([1.0, 2.0])}, lr=0.1)
    opt.step({"w": np.array([1.0, 1.0])})
    return opt


@pytest.mark.parametrize("make,key,value,match", [
    (_adam, "optim.lr", np.nan, r"optim.lr must be a finite number > 0, got nan"),
    (_adam, "optim.lr", -1.0, r"optim.lr must be a finite number > 0"),
    (_adam, "optim.lr", "x", r"optim.lr must be a finite number > 0"),
    (_adam, "optim.betas", 0.9, r"optim.betas must be two numbers in \[0, 1\)"),
    (_adam, "optim.betas", [0.9, 1.0], r"optim.betas must lie in \[0, 1\)"),
    (_adam, "optim.betas", [0.9, 0.9, 0.9], r"optim.betas must be two numbers"),
    (_adam, "optim.eps", 0.0, r"optim.eps must be a finite number > 0"),
    (_adam, "optim.weight_decay", np.inf, r"optim.weight_decay must be a finite number >= 0"),
    (_adam, "optim.step", np.nan, r"optim.step must be an integer >= 0"),
    (_adam, "optim.step", 2.0, r"optim.step must be an integer >= 0"),
    (_adam, "optim.step", -1, r"optim.step must be an integer >= 0"),
    (_adam, "optim.exp_avg.w", [np.nan, 0.0], r"'optim.exp_avg.w' contains NaN or Inf"),
    (_adam, "optim.exp_avg_sq.w", [-1.0, 0.0], r"'optim.exp_avg_sq.w' has negative entries"),
    (_sgd, "optim.nesterov", "False", r"optim.nesterov must be True or False"),
    (_sgd, "optim.nesterov", 1, r"optim.nesterov must be True or False"),
    (_sgd, "optim.momentum", -0.5, r"optim.momentum must be a finite number >= 0"),
    (_sgd, "optim.lr", np.nan, r"optim.lr must be a finite number > 0"),
    (_sgd, "optim.momentum_buffer.w", [np.inf, 0.0], r"'optim.momentum_buffer.w' contains NaN"),
])
def test_load_state_dict_checks_like_the_constructor_and_changes_nothing(make, key, value, match):
    sd = make().state_dict()
    sd[key] = np.array(value, dtype=sd[key].dtype if key.count(".") == 2 else None)
    opt = make()
    before = opt.state_dict()
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    assert set(after) == set(before) and all(np.array_equal(after[k], before[k]) for k in before)


def test_load_state_dict_checks_nesterov_with_momentum_and_the_container():
    sd = SGD(one(1.0), lr=0.1, momentum=0.9, nesterov=True).state_dict()
    sd["optim.momentum"] = np.array(0.0)
    with pytest.raises(ValueError, match=r"optim.nesterov=True needs optim.momentum > 0"):
        SGD(one(1.0), lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="sd must be a dict"):
        SGD(one(1.0), lr=0.1).load_state_dict(None)


@pytest.mark.parametrize("grads,match", [
    ({"a": np.array([100, 100])}, r"grads\['a'\] must be a real float array, got dtype int64"),
    ({"a": np.array([1 + 1j])}, r"grads\['a'\] must be real numbers .*, got dtype complex"),
    ({"a": [100.0, 100.0]}, r"grads\['a'\] must be a writeable ndarray .* got list"),
])
def test_clip_grad_norm_refuses_arrays_it_cannot_scale_in_place(grads, match):
    with pytest.raises(ValueError, match=match):
        clip_grad_norm(grads, 1.0)


def test_clip_grad_norm_checks_every_array_before_scaling_any():
    a, b = np.array([100.0, 100.0]), np.array([100.0])
    b.flags.writeable = False
    with pytest.raises(ValueError, match=r"grads\['b'\] must be a writeable ndarray .* read-only"):
        clip_grad_norm({"a": a, "b": b}, 1.0)
    assert a.tolist() == [100.0, 100.0]


@pytest.mark.parametrize("max_norm", [0.0, -1.0, np.nan, np.inf, "x", None])
def test_clip_grad_norm_max_norm_must_be_positive_finite(max_norm):
    with pytest.raises(ValueError, match="max_norm must be a finite number > 0"):
        clip_grad_norm({"a": np.ones(2)}, max_norm)


@pytest.mark.parametrize("norm_type", [1, np.nan, "2", np.array([2.0, 2.0]), None])
def test_grad_norm_refuses_bad_norm_type_and_integer_gradients(norm_type):
    with pytest.raises(ValueError, match="norm_type must be 2 or inf"):
        grad_norm({"a": np.ones(2)}, norm_type)
    with pytest.raises(ValueError, match=r"grads\['a'\] must be a real float array"):
        grad_norm({"a": np.array([3, 4])})
