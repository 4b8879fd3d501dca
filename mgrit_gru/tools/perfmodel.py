"""A performance model of time-parallel MGRIT: the real solver, replayed on stand-in ranks.

`predict` runs `mgrit_gru.mgrit.MGRIT.solve` itself, once per rank of P simulated ranks (one
thread each, in this process), on a *costing problem* whose states are one number and whose
``step`` does no arithmetic but charges its cost to the calling rank's clock, talking through a
*stand-in communicator* that moves those clocks instead of states. So the model follows whatever
the solver does (skip, V/F-cycles, F/FCF relaxation, FAS restriction, the pipelined coarsest
solve, the final F-relaxation) on the real `Hierarchy` ownership. The costs:

- a batched step over n states (one call of the problem's ``step``) costs ``a + b n`` seconds
  (`StepCost`; measure it with `measure_step_cost`: ``a`` is the per-call overhead — Python,
  kernel launch, weights through the cache — and ``b`` the cost per state);
- a point-to-point message (one state, ``state_bytes``) arrives ``latency + state_bytes /
  bandwidth`` after it is sent; a rank that needs it waits (its clock jumps to the arrival);
- an Allreduce synchronises all clocks and adds ``2 ceil(log2 P)`` latencies.

The predicted MGRIT time is the largest clock at the end (each rank starts with its share of the
input projection); the serial time is ``T`` serial steps. Along with the time, the model returns
the critical path itself: how many step calls, states and messages lie on it.

It ignores vector operations (copies, the FAS update), cache effects beyond the linear cost,
and the CPU sharing of oversubscribed runs: it predicts a machine with one core per rank.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..atomic import save_figure
from ..checks import int_at_least
from ..mgrit import MGRIT, MGRITOptions, Problem, SerialComm
from ..mgrit.problem import NumpyVectors


@dataclass(frozen=True)
class StepCost:
    """Cost ``a + b n`` seconds of one batched step over ``n`` states.

    With ``table`` (measured ``(n, seconds)`` pairs, as `measure_step_cost` returns), the cost
    inside the measured range is interpolated linearly between the samples instead: for large
    states the cost per state grows once a sweep's arrays leave the cache, which one straight
    line fitted to small n misses. Outside the range, ``a + b n``.
    """

    a: float
    b: float
    table: tuple = ()

    def __call__(self, n):
        if n <= 0:
            return 0.0
        if self.table and self.table[0][0] <= n <= self.table[-1][0]:
            ns, ts = zip(*self.table)
            return float(np.interp(n, ns, ts))
        return self.a + self.b * n


@dataclass
class Prediction:
    """What `predict` returns.

    Attributes
    ----------
    time : float
        Predicted MGRIT wall time on P ranks (s).
    serial_time : float
        Predicted serial forward time (T serial steps + projection).
    speedup, efficiency : float
        ``serial_time / time`` and ``speedup / P``.
    step_calls, states, messages : int
        Step calls, states stepped and messages on the critical path.
    comm_time : float
        Time the critical path spends in message latency and Allreduces.
    phases : dict
        Seconds of each phase on the critical path: the solver's timed phases (relax, residual,
        restrict, coarsest; as `MGRITInfo.phase_times`) and the set-up (setup).
    """

    time: float
    serial_time: float
    speedup: float
    efficiency: float
    step_calls: int
    states: int
    messages: int
    comm_time: float
    phases: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


class _Path:
    """A point on one rank's timeline and the critical path that led to it."""

    __slots__ = ("t", "calls", "states", "msgs", "comm", "phases")

    def __init__(self, t=0.0, calls=0, states=0, msgs=0, comm=0.0, phases=None):
        self.t, self.calls, self.states, self.msgs, self.comm = t, calls, states, msgs, comm
        self.phases = dict(phases or {})

    def copy(self):
        return _Path(self.t, self.calls, self.states, self.msgs, self.comm, self.phases)

    def work(self, dt, calls, states, phase):
        self.t += dt
        self.calls += calls
        self.states += states
        self.phases[phase] = self.phases.get(phase, 0.0) + dt

    def wait(self, arrival):
        """Receive: continue from the later of our own path and the message's."""
        return arrival.copy() if arrival.t > self.t else self


class _Deadlock(RuntimeError):
    """Every rank still running waits for a message or a reduction no rank will provide."""


class _Ranks:
    """P simulated ranks in one process: their clocks, mailboxes, Allreduce and totals.

    Rank p's thread only touches ``clock[p]``, except inside the Allreduce, when all ranks wait.
    A rank that fails, or a wait no running rank can end, makes every waiting rank raise.
    """

    def __init__(self, P, msg_time, allreduce_time):
        self.P, self.msg_time, self.allreduce_time = P, msg_time, allreduce_time
        self.clock = [_Path() for _ in range(P)]
        # whole-run totals per rank (the clocks hold the critical path)
        self.calls, self.states, self.sent = [0] * P, [0] * P, [0] * P
        # one condition per rank, all on one lock: a message wakes its receiver only
        lock = threading.Lock()
        self._cv = [threading.Condition(lock) for _ in range(P)]
        # arrivals by (dest, source, tag); what each blocked rank waits for; the Allreduce's
        # values so far and its last result
        self._mail, self._waiting, self._joined, self._result = {}, {}, {}, None
        self._running = P
        self.error = None

    def charge(self, p, n, cost, phase):
        self.clock[p].work(cost(n), 1, n, phase)
        self.calls[p] += 1
        self.states[p] += n

    def post(self, p, dest, tag):
        arrival = self.clock[p].copy()
        arrival.t += self.msg_time
        arrival.comm += self.msg_time
        arrival.msgs += 1
        self.sent[p] += 1
        key = (dest, p, tag)
        with self._cv[p]:
            self._mail.setdefault(key, deque()).append(arrival)
            if self._waiting.get(dest) == key:
                del self._waiting[dest]
                self._cv[dest].notify()

    def take(self, p, source, tag):
        key = (p, source, tag)
        with self._cv[p]:
            if not self._mail.get(key):
                self._block(p, key)
            arrival = self._mail[key].popleft()
        self.clock[p] = self.clock[p].wait(arrival)

    def allreduce(self, p, value, op):
        with self._cv[p]:
            self._joined[p] = value
            if len(self._joined) < self.P:
                self._block(p, "allreduce")
                return self._result
            # the last to arrive: everyone continues from the latest clock (lowest rank on ties)
            worst = max(self.clock, key=lambda c: c.t).copy()
            worst.t += self.allreduce_time
            worst.comm += self.allreduce_time
            self.clock = [worst.copy() for _ in range(self.P)]
            self._result = op(self._joined[r] for r in range(self.P))
            self._joined = {}
            for r in [r for r, w in self._waiting.items() if w == "allreduce"]:
                del self._waiting[r]
                self._cv[r].notify()
            return self._result

    def _block(self, p, what):
        """Wait (holding the condition) until another rank removes us from ``_waiting``."""
        self._waiting[p] = what
        self._check_deadlock()
        while p in self._waiting and self.error is None:
            self._cv[p].wait()
        if self.error is not None:
            raise _Deadlock(f"rank {p} stopped: {self.error}")

    def _check_deadlock(self):
        if self._running and len(self._waiting) == self._running and self.error is None:
            self._fail(_Deadlock(f"ranks {sorted(self._waiting)} wait for each other"))

    def _fail(self, error):
        self.error = error
        for cv in self._cv:
            cv.notify()

    def done(self, p, error=None):
        with self._cv[p]:
            self._running -= 1
            if error is not None and self.error is None:
                self._fail(error)
            self._check_deadlock()


class _StandInComm(SerialComm):
    """Rank ``rank`` of `_Ranks`, seen through the calls the solver makes (`mgrit.comm`).

    A subclass of `SerialComm` only so that `as_comm` passes it to the solver unchanged.
    """

    def __init__(self, ranks, rank):
        super().__init__()
        self.ranks, self.rank, self.size = ranks, rank, ranks.P

    def isend(self, arr, dest, tag):
        self.ranks.post(self.rank, dest, tag)

    def recv(self, buf, source, tag):
        self.ranks.take(self.rank, source, tag)

    def allreduce_sum(self, x):
        return self.ranks.allreduce(self.rank, x, sum)

    def allreduce_max(self, x):
        return self.ranks.allreduce(self.rank, x, max)

    def bcast(self, obj, root=0):
        raise NotImplementedError("the MGRIT solve broadcasts nothing")


class _Vectors(NumpyVectors):
    """Vector operations on one-number states, with a residual that never reaches 0 or grows:
    with ``tol = 0`` every solve runs exactly ``max_iter`` cycles."""

    def empty(self, n):
        return self.zeros(n)

    def diff_norm(self, a, b, norm="2"):
        return 1.0 if len(a) else 0.0


class _CostingProblem(Problem):
    """T time steps of nothing: each ``step`` charges ``costs[level](n)`` to rank ``rank``.

    The defaults of ``sweep`` and ``march`` (a GRU problem on the CPU keeps them too) make the
    same batched ``step`` calls.
    """

    def __init__(self, T, ranks, rank, costs):
        super().__init__((1,), np.float64, T)
        self.vec = _Vectors(self.shape, self.dtype)
        self.ranks, self.rank, self.costs = ranks, rank, costs
        self.phase = None

    def initial(self):
        return np.zeros(self.shape)

    def step(self, level, u, t, span, out, g=None, store=False):
        self.ranks.charge(self.rank, len(t), self.costs[level], self.phase)


class _Replay(MGRIT):
    """The solver itself; its phase timer also tells the costing problem what it charges."""

    def _timed(self, l, phase):
        self.problem.phase = phase
        return super()._timed(l, phase)


def _replay(T, P, options, costs, msg_time=0.0, allreduce_time=0.0, proj_per_step=0.0):
    """Run ``MGRIT(options).solve()`` on P stand-in ranks (one thread each); the `_Ranks`.

    ``costs[l]`` prices a step on level l (one `StepCost` per level).
    """
    ranks = _Ranks(P, msg_time, allreduce_time)
    solvers = [_Replay(_CostingProblem(T, ranks, p, costs), options,
                       comm=_StandInComm(ranks, p)) for p in range(P)]
    for p, s in enumerate(solvers):
        # each rank projects its own rows of the input before the solve
        lo, hi = s.levels[0].lo, s.levels[0].hi
        ranks.clock[p].work(proj_per_step * (hi - max(lo, 1) + 1), 0, 0, "setup")
    errors = [None] * P

    def run(p):
        try:
            solvers[p].solve()
        except BaseException as e:
            # kept for the caller's thread, which raises it
            errors[p] = e
        ranks.done(p, errors[p])

    threads = [threading.Thread(target=run, args=(p,), daemon=True) for p in range(P)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # the first rank's own failure, rather than the others' stopping because of it
    failed = [e for e in errors if e is not None]
    if failed:
        raise next((e for e in failed if not isinstance(e, _Deadlock)), failed[0])
    return ranks


def predict(T, P, *, step_cost, serial_step=None, coarse_step_cost=None, cf=4, levels=3,
            relax="FCF", iters=2, skip=True, cycle="V", latency=20e-6, bandwidth=5e9,
            state_bytes=0, proj_per_step=0.0, min_coarse=1):
    """Predict MGRIT's forward time and speedup on ``P`` ranks.

    Parameters
    ----------
    T, P : int
        Sequence length and number of ranks.
    step_cost : StepCost or (a, b)
        Cost of one batched fine step over n states, ``a + b n`` seconds.
    serial_step : float, optional
        Seconds per step of the whole serial forward pass, projection included (default
        ``step_cost(1) + proj_per_step``).
    coarse_step_cost : StepCost or (a, b), optional
        Cost of a coarse-level step (default: `step_cost`).
    cf, levels, relax, iters, skip, cycle
        Solver options (as `mgrit_forward`; ``iters`` = ``max_iter`` with ``tol = 0``).
    latency : float
        Seconds from send to arrival of a message (software + network latency).
    bandwidth : float
        Bytes per second of a message.
    state_bytes : int
        Size of one state (L B H itemsize).
    proj_per_step : float
        Seconds per step of the set-up: the input projection W_ih x_t (done once; MGRIT splits it
        over ranks) and the buffers.

    Returns
    -------
    Prediction
    """
    iters = int_at_least(iters, "iters", 1)
    T = int_at_least(T, "n_steps (sequence length)", 1)
    P = int_at_least(P, "size", 1)
    # checked as the solver checks them
    opts = MGRITOptions(levels=levels, cf=cf, relax=relax, skip=skip, cycle=cycle,
                        min_coarse=min_coarse, max_iter=iters, tol=0.0)
    for name, v in (("latency", latency), ("bandwidth", bandwidth), ("state_bytes", state_bytes),
                    ("proj_per_step", proj_per_step)):
        if isinstance(v, bool) or not (isinstance(v, (int, float, np.number)) and
                                       math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if bandwidth == 0:
        raise ValueError("bandwidth must be > 0")
    fine = step_cost if isinstance(step_cost, StepCost) else StepCost(*step_cost)
    coarse = fine if coarse_step_cost is None else (
        coarse_step_cost if isinstance(coarse_step_cost, StepCost) else StepCost(*coarse_step_cost))
    serial_step = fine(1) + proj_per_step if serial_step is None else float(serial_step)
    msg = latency + state_bytes / bandwidth
    allred = 2 * math.ceil(math.log2(P)) * latency if P > 1 else 0.0
    ranks = _replay(T, P, opts, [fine] + [coarse] * (opts.levels - 1), msg, allred, proj_per_step)
    end = max(ranks.clock, key=lambda c: c.t)
    serial = T * serial_step
    speedup = serial / end.t if end.t > 0 else float("inf")
    return Prediction(time=end.t, serial_time=serial, speedup=speedup, efficiency=speedup / P,
                      step_calls=end.calls, states=end.states, messages=end.msgs,
                      comm_time=end.comm, phases=end.phases,
                      options=dict(T=T, P=P, cf=cf, levels=levels, relax=relax, iters=iters,
                                   skip=skip, cycle=cycle, latency=latency, a=fine.a, b=fine.b,
                                   serial_step=serial_step, state_bytes=state_bytes,
                                   proj_per_step=proj_per_step))


def fit_step_cost(ns, times):
    """Least-squares fit of ``times ≈ a + b ns``, weighted by 1/time (relative error)."""
    ns, times = np.asarray(ns, float), np.asarray(times, float)
    w = 1.0 / times
    A = np.stack([np.ones_like(ns), ns], axis=1) * w[:, None]
    (a, b), *_ = np.linalg.lstsq(A, times * w, rcond=None)
    return StepCost(max(float(a), 0.0), max(float(b), 0.0))


def _median(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def measure_step_cost(params, batch, *, level=0, cell="classic", ns=(1, 2, 4, 8, 16, 32, 64, 128),
                      repeat=5, dtype=None, seed=0):
    """Measure the batched GRU step ``a + b n`` of `GRUForwardProblem.step` on this machine.

    Parameters
    ----------
    params : dict
        GRU parameters.
    batch : int
        B (each of the n states is (L, B, H)).
    level : int
        0: the fine cell; >= 1: the coarse (implicit) step with FAS forcing, as on coarse levels.
    ns : sequence of int
        Batch sizes n to time (intervals stepped at once).

    Returns
    -------
    cost : StepCost
    samples : list of (n, seconds)
    """
    from ..checks import gru_dims
    from ..problems import GRUForwardProblem
    L, I, H, pdtype = gru_dims(params)
    dtype = pdtype if dtype is None else np.dtype(dtype)
    n_max = max(ns)
    span = 1 if level == 0 else 4 ** level
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_max * span + 1, batch, I)).astype(dtype)
    h0 = np.zeros((L, batch, H), dtype)
    prob = GRUForwardProblem(params, x, h0, x.shape[0], cell)
    u = (0.1 * rng.standard_normal((n_max, L, batch, H))).astype(dtype)
    out = np.empty_like(u)
    g = np.zeros_like(u) if level > 0 else None
    samples = []
    for n in ns:
        t = range(0, n * span, span)
        gn = None if g is None else g[:n]
        samples.append((n, _median(lambda: prob.step(level, u[:n], t, span, out[:n], gn),
                                   repeat)))
    a_b = fit_step_cost(*zip(*samples))
    return StepCost(a_b.a, a_b.b, tuple(samples)), samples


def measure_latency(comm, nbytes, repeat=50):
    """One-way time of a ``nbytes`` message between ranks 0 and 1 (ping-pong / 2), via mpi4py.

    Every rank must call it; ranks other than 0 and 1 just wait. Returns the time on every rank.
    """
    buf = np.zeros(max(int(nbytes) // 8, 1))
    comm.Barrier()
    t = 0.0
    if comm.rank in (0, 1):
        other = 1 - comm.rank
        for i in range(repeat + 5):
            if i == 5:
                t0 = time.perf_counter()
            if comm.rank == 0:
                comm.Send(buf, dest=other, tag=999)
                comm.Recv(buf, source=other, tag=999)
            else:
                comm.Recv(buf, source=other, tag=999)
                comm.Send(buf, dest=other, tag=999)
        t = (time.perf_counter() - t0) / (2 * repeat)
    return comm.bcast(t, root=0)


# ----------------------------------------------------------------------------------------------
# scaling results: reading bench files and plotting them
# ----------------------------------------------------------------------------------------------
def load_results(paths):
    """Records of ``bench --what forward`` from files holding a JSON list or JSON lines."""
    import json
    records = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read().strip()
        except OSError as e:
            raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
        # an image, an npz, ...
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a bench JSON file (not text)") from None
        if not text:
            continue
        try:
            # a list, or one (pretty) object
            if text.startswith("[") or (text.startswith("{") and "\n{" not in text):
                data = json.loads(text)
                found = data if isinstance(data, list) else data.get("records", [data])
            else:
                found = [json.loads(line) for line in text.splitlines() if line.strip()]
        except (json.JSONDecodeError, AttributeError) as e:
            raise ValueError(f"{path}: not a bench JSON list or JSON lines ({e})") from None
        for r in found:
            if isinstance(r, dict) and r.get("bench") == "forward":
                missing = [k for k in SCALING_KEYS if k not in r]
                if missing:
                    raise ValueError(f"{path}: a forward record lacks {', '.join(missing)}")
                records.append(r)
    if not records:
        raise ValueError(f"no 'bench --what forward' records in {list(paths)}")
    return records


SCALING_KEYS = ("seq_len", "batch", "hidden", "ranks", "speedup")
"""What every record `plot_scaling` draws must hold."""
SCALING_OPTIONS = ("levels", "cf", "iters", "relax", "skip", "layers", "cell", "dtype", "dt",
                   "input")
"""Solver and model options that make runs different experiments (separate lines)."""


def plot_scaling(records, out=None):
    """Speedup and efficiency vs ranks P (one line per T, B, H) and vs T (one line per P, B, H).

    Measured: solid with filled circles; the model's prediction (``model_speedup``), where
    recorded: dashed with open diamonds (so that a single record shows its model point). Each
    line's label gives the largest relative error of its outputs against serial
    (``rel_error_vs_serial``; "not recorded" for older records): a speed is shown with its
    accuracy. At P = 1 the speedup is the gain of batching over intervals, not parallelism.
    Returns the figure; saves it to ``out`` when given.
    """
    import matplotlib
    if out is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    # runs with other solver options (3 vs 4 levels, ...) are other lines, labelled by what varies
    varying = [k for k in SCALING_OPTIONS if len({str(r.get(k)) for r in records}) > 1]
    groups = {}
    for r in records:
        opts = tuple(str(r.get(k)) for k in varying)
        groups.setdefault(("P", r["seq_len"], r["batch"], r["hidden"], opts), []).append(r)
        groups.setdefault(("T", r["ranks"], r["batch"], r["hidden"], opts), []).append(r)
    for (kind, v, B, H, opts), rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        xkey = "ranks" if kind == "P" else "seq_len"
        rs = sorted(rs, key=lambda r: r[xkey])
        xs = [r[xkey] for r in rs]
        col = 0 if kind == "P" else 1
        label = (f"T={v}" if kind == "P" else f"P={v}") + f", B={B}, H={H}" + \
            "".join(f", {k}={o}" for k, o in zip(varying, opts))
        errs = [r.get("rel_error_vs_serial") for r in rs]
        label += (", error vs serial " + (f"<= {max(errs):.1e}" if None not in errs else
                                          "not recorded"))
        sp = [r["speedup"] for r in rs]
        line, = axes[0, col].plot(xs, sp, "o-", label=label)
        axes[1, col].plot(xs, [s / r["ranks"] for s, r in zip(sp, rs)], "o-",
                          color=line.get_color())
        if all("model_speedup" in r for r in rs):
            ms = [r["model_speedup"] for r in rs]
            model = dict(ls="--", marker="D", mfc="none", color=line.get_color(), alpha=0.8)
            axes[0, col].plot(xs, ms, **model)          # markers: a single P shows too
            axes[1, col].plot(xs, [m / r["ranks"] for m, r in zip(ms, rs)], **model)
    for col, xl in enumerate(("ranks P", "sequence length T")):
        axes[0, col].set_ylabel("speedup over serial forward")
        axes[1, col].set_ylabel("efficiency = speedup / P")
        axes[1, col].set_xlabel(xl)
        for row in range(2):
            axes[row, col].set_xscale("log", base=2)
            axes[row, col].grid(alpha=0.3)
        axes[0, col].legend(fontsize=7)
    axes[0, 0].set_title("vs ranks (solid, ●: measured; dashed, ◇: model; P = 1: batching)")
    axes[0, 1].set_title("vs sequence length")
    fig.tight_layout()
    if out is not None:
        save_figure(fig, out, dpi=110)
    return fig
