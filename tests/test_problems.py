"""The GRU problems MGRIT solves (`mgrit_gru.problems`): a coarse step of the backward
hierarchy is the adjoint of the forward hierarchy's coarse step."""
import numpy as np
import pytest
from _solver_cases import B, H, TIGHT, gradient_case

import mgrit_gru as mg


@pytest.mark.parametrize("cell, layers", [("classic", 1), ("implicit", 2)])
def test_coarse_adjoint_step_is_the_vjp_of_the_coarse_forward_step(cell, layers):
    """Level l of the backward hierarchy is the transpose of the forward coarse step's Jacobian,
    linearised at the forward solution: <Φ_cᵀ λ, v> = <λ, (Φ_c(u + εv) - Φ_c(u - εv)) / 2ε>.
    (At convergence any coarse step gives BPTT's gradients; this pins down the one used.)"""
    T, span = 32, 4
    params, x, h0, _, dh_T = gradient_case(T, layers, seed=4)
    _, _, fwd = mg.mgrit_forward(params, x, h0, cell=cell, **TIGHT)
    bwd = mg.mgrit_backward(params, fwd, dh_T=dh_T, max_iter=1)[3]
    fprob, aprob = fwd.problem, bwd.problem
    states = fwd.solver.U[0][1:]                            # forward points 0..T
    rng = np.random.default_rng(0)
    for s in (0, 8, 20):                                    # adjoint point s -> s + span
        i0 = T - (s + span)                                 # the forward interval [i0, i0 + span]
        lam = rng.normal(size=(1, layers, B, H))
        out = np.empty_like(lam)
        aprob.step(1, lam, range(s, s + 1), span, out)
        v, eps = rng.normal(size=lam.shape), 1e-6
        plus, minus = np.empty_like(lam), np.empty_like(lam)
        fprob.step(1, states[i0][None] + eps * v, range(i0, i0 + 1), span, plus)
        fprob.step(1, states[i0][None] - eps * v, range(i0, i0 + 1), span, minus)
        jvp = (plus - minus) / (2 * eps)
        assert np.sum(out * v) == pytest.approx(np.sum(lam * jvp), rel=1e-7)
