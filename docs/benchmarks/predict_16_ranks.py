"""The 16-rank projection in docs/cluster.md, recomputed from a committed one-rank measurement.

The step costs (fine: a + b n with the measured samples; coarse: a + b n), the serial step, the
set-up per step and the latency (20 µs assumed: one rank sends nothing; 0-100 µs move these
predictions by under 1 %) of the T = 4096, B = 32, H = 256 record of
forward_P1_T4096.json (2-vCPU machine, float32, 3 levels, cf 4, FCF, 2 iterations, skip) go into
`mgrit_gru.tools.perfmodel.predict` for T = 16384 on P = 16 ranks at 3, 4 and 5 levels. "calibrated"
divides by the one-rank ratio measured / model of the same record (the model prices the batched
steps only). Run from the repository root:  python docs/benchmarks/predict_16_ranks.py
"""
import json
import os

from mgrit_gru.tools.perfmodel import StepCost, predict

HERE = os.path.dirname(os.path.abspath(__file__))
rec = next(r for r in json.load(open(os.path.join(HERE, "forward_P1_T4096.json")))
           if (r["batch"], r["hidden"]) == (32, 256))
fine = StepCost(rec["step_cost_a_s"], rec["step_cost_b_s"],
                tuple(tuple(s) for s in rec["step_cost_samples"]))
coarse = StepCost(rec["coarse_step_cost_a_s"], rec["coarse_step_cost_b_s"])
calibration = rec["mgrit_s"] / rec["model_mgrit_s"]          # measured / model at P = 1
print(f"one rank, T = {rec['seq_len']}: measured {rec['mgrit_s']:.2f} s, model "
      f"{rec['model_mgrit_s']:.2f} s, calibration {calibration:.2f}")
print("levels  model speedup  calibrated")
for levels in (3, 4, 5):
    p = predict(16384, 16, step_cost=fine, coarse_step_cost=coarse,
                serial_step=rec["serial_s"] / rec["seq_len"], cf=4, levels=levels, relax="FCF",
                iters=2, skip=True, latency=rec["latency_s"],
                state_bytes=32 * 256 * 4, proj_per_step=rec["setup_per_step_s"])
    print(f"{levels:>6}  {p.speedup:>13.1f}  {p.speedup / calibration:>10.1f}")
