"""Training RNNs with and without clipping (Pascanu, Mikolov & Bengio 2013, sec. 3-5, fig. 7).

    h_t = phi(x_t W_x + h_{t-1} W_h + b),   y = h_T W_o + b_o,   E = task loss of y

A grid of models, trained together (one compiled program per task and length):
    inits    "sigmoid"  phi = sigmoid, every weight ~ N(0, 0.01^2)
             "basic"    phi = tanh, every weight ~ N(0, 0.1^2)
             "smart"    phi = tanh, W_h sparse: 15 nonzero N(0, 1) incoming weights per unit,
                        rescaled to spectral radius 0.95; W_x, W_o ~ N(0, 0.1^2) (our choice)
    methods  "none"        plain SGD on E
             "clip"        g <- g min(1, c / ||g||)          (eq. 7; rnnlab.train.step)
             "clip_omega"  g = dE/dtheta + alpha dOmega/dtheta, then clipped as "clip"
    x seeds  seed s gives every init x method the same data stream; every method of an init
             the same weights (paired).

Omega (eq. 9), with the hidden states h_k in the role of the paper's x_k:

    Omega = sum_{k=1}^{T-1} ( ||g_{k+1} dh_{k+1}/dh_k|| / ||g_{k+1}|| - 1 )^2,  g_k = dE/dh_k

per sequence, averaged over the batch. g_k for every k come from the backward pass of E itself,
through zero probes added to every h_t (as in ``rnnlab.analysis.gradients``). The paper treats
g_{k+1} as constant when differentiating Omega (sec. 3.3): here u = stop_gradient(g / ||g||)
(the ratio does not depend on the scale of g); the product u dh_{k+1}/dh_k = u diag(phi') W_h^T
is a vector-Jacobian product through one step, differentiated in full (through W_h and, via
phi'(a_{k+1}) and h_k, through every param). Terms with g_{k+1} = 0 (underflow) are left out.

Gradient-norm spikes: step t is a spike when ||dE/dtheta||_t exceeds ``spike_factor`` times the
median of the previous ``spike_window`` norms (at least ``min_history`` of them). Detected on
device at every step; the count, first step and largest ratio live in the state's ``health``,
and each logged chunk records its spikes and the step of its largest ratio.

Training runs through ``rnnlab.train.loop``: one loop step is a chunk of ``chunk_steps`` SGD
steps (a ``lax.scan``), so metrics are fetched and checkpoints written at chunk boundaries and
a killed run resumes exactly (each batch is ``fold_in(data_key, step)``). On several devices
the sweep (``Spec.strategy``) shards the models over them; a group's models that do not fill a
round run data parallel (``split_gradients``) instead of beside padding copies.
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from rnnlab import cells
from rnnlab.data import tasks
from rnnlab.train import loop, parallel, state, step, sweep, writers

INITS = {
    "sigmoid": dict(activation_fn="sigmoid", recurrent_init="normal", recurrent_std=0.01,
                    input_std=0.01),
    "basic": dict(activation_fn="tanh", recurrent_init="normal", recurrent_std=0.1,
                  input_std=0.1),
    "smart": dict(activation_fn="tanh", recurrent_init="sparse", nonzero=15,
                  spectral_radius=0.95, input_std=0.1),
}  # fmt: skip
METHODS = ("none", "clip", "clip_omega")


# --- tasks in Pascanu's form -----------------------------------------------------------------


def temporal_order(*, threshold: float = 0.01) -> tasks.Task:
    """6 one-hot channels {A, B, c, d, e, f}: A or B at t1 in [0.1T, 0.2T) and t2 in
    [0.5T, 0.6T), distractors c..f elsewhere; 4 classes AA, AB, BA, BB (Pascanu 2013, sec. 5.1)."""

    def sample(key, batch_size, seq_len):
        k_d, k_1, k_2, k_s = jax.random.split(key, 4)
        (lo1, hi1), (lo2, hi2) = _ranges(seq_len)
        tokens = jax.random.randint(k_d, (batch_size, seq_len), 2, 6)  # distractors c..f
        t1 = jax.random.randint(k_1, (batch_size,), lo1, hi1)
        t2 = jax.random.randint(k_2, (batch_size,), lo2, hi2)
        which = jax.random.randint(k_s, (batch_size, 2), 0, 2)  # 0: A, 1: B
        t = jnp.arange(seq_len)[None, :]
        tokens = jnp.where(t == t1[:, None], which[:, :1], tokens)
        tokens = jnp.where(t == t2[:, None], which[:, 1:], tokens)  # [B, T]
        inputs = jax.nn.one_hot(tokens, 6, dtype=jnp.float32)  # [B, T, 6]
        return {"inputs": inputs, "targets": 2 * which[:, 0] + which[:, 1]}

    base = tasks.temporal_order(threshold=threshold)
    return base._replace(input_size=6, sample=sample, check_seq_len=_min_len(10))


def _ranges(seq_len: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Half-open ranges of t1 and t2: [0.1T, 0.2T) and [0.5T, 0.6T), floored, never empty."""
    f = lambda a, b: (int(a * seq_len), max(int(b * seq_len), int(a * seq_len) + 1))  # noqa: E731
    return f(0.1, 0.2), f(0.5, 0.6)


def _min_len(minimum):
    def check(seq_len):
        if not isinstance(seq_len, int) or seq_len < minimum:
            raise ValueError(f"seq_len must be an int >= {minimum}, got {seq_len!r}")

    return check


def adding(*, threshold: float = 0.01, tolerance: float = 0.04) -> tasks.Task:
    """The adding problem (``rnnlab.data.tasks.adding``'s inputs) with an error rate: a sequence
    is wrong when |y - target| >= ``tolerance`` (Hochreiter & Schmidhuber 1997's 0.04)."""
    base = tasks.adding()

    def metrics(outputs, batch):
        wrong = jnp.abs(outputs[:, 0] - batch["targets"]) >= tolerance
        return {"loss": base.loss(outputs, batch), "error": wrong.mean()}

    return base._replace(
        metrics=metrics,
        solved=lambda m: m["error"] < threshold,
        solved_rule=f"eval error (|y - target| >= {tolerance:g}) < {threshold:.0%}",
    )


TASKS = {"temporal_order": temporal_order, "adding": adding}


# --- the model, Omega ------------------------------------------------------------------------


def make_cell(init: str) -> cells.Cell:
    """The Elman RNN of one of ``INITS``."""
    return cells.get("rnn", **INITS[init])


def init_params(cell, init: str, key, input_size: int, hidden_size: int, output_size: int):
    """{"cell": the cell's params, "w_o": [H, O] ~ N(0, input_std^2), "b_o": [O] zeros}."""
    k_c, k_o = jax.random.split(key)
    std = INITS[init]["input_std"]
    w_o = std * jax.random.normal(k_o, (hidden_size, output_size))
    return {
        "cell": cell.init(k_c, input_size, hidden_size),
        "w_o": w_o,
        "b_o": jnp.zeros(output_size),
    }


def unroll(cell, params, xs, probes=None):
    """hs [T, B, H]: h_1 .. h_T for xs [B, T, D] (h_t + probes[t] when probes are given)."""
    xs_tm = jnp.swapaxes(xs, 0, 1)  # [T, B, D]
    h0 = cell.initial_carry(xs.shape[0], params["w_o"].shape[0]).astype(xs.dtype)
    if probes is None:
        probes = jnp.zeros(xs_tm.shape[:2] + h0.shape[1:], xs.dtype)

    def body(h, inputs):
        x, p = inputs
        h = cell.apply(params["cell"], h, x)[0] + p  # the probe: h_t + 0
        return h, h

    return lax.scan(body, h0, (xs_tm, probes))[1]


def readout(params, h):
    return h @ params["w_o"] + params["b_o"]  # [B, O]


def omega(cell, params, xs, state_grads):
    """Pascanu's Omega (eq. 9) for xs [B, T, D], given g = dE/dh_t as [T, B, H] (held constant).

    Returns the scalar Omega (sum over k, mean over the batch rows).
    """
    norms = jnp.linalg.norm(state_grads, axis=-1, keepdims=True)  # [T, B, 1]
    u = lax.stop_gradient(state_grads / jnp.where(norms > 0, norms, 1.0))  # [T, B, H]
    hs = unroll(cell, params, xs)  # [T, B, H]
    xs_tm = jnp.swapaxes(xs, 0, 1)  # [T, B, D]

    def one(h, x, u_next):  # u_{k+1} dh_{k+1}/dh_k for all rows: one VJP through one step
        _, pullback = jax.vjp(lambda h: cell.apply(params["cell"], h, x)[0], h)
        return pullback(u_next)[0]

    v = jax.vmap(one)(hs[:-1], xs_tm[1:], u[1:])  # [T-1, B, H]: k = 1 .. T-1
    n2 = jnp.sum(v**2, axis=-1)  # [T-1, B]
    keep = (norms[1:, :, 0] > 0) & (n2 > 0)
    ratio = jnp.sqrt(jnp.where(keep, n2, 1.0))
    return jnp.mean(jnp.sum(jnp.where(keep, (ratio - 1.0) ** 2, 0.0), axis=0))


def gradients(cell, task, params, batch, omega_weight: float = 0.0):
    """(loss, aux, dE/dtheta, total gradient): total = dE/dtheta + omega_weight dOmega/dtheta.

    One backward pass of E gives dE/dtheta and dE/dh_t for every t (zero probes); Omega then
    costs one more forward and backward pass. ``omega_weight`` is static (0: no Omega).
    """
    xs = batch["inputs"]

    def loss_fn(params, probes):
        metrics = task.metrics(readout(params, unroll(cell, params, xs, probes)[-1]), batch)
        return metrics.pop("loss"), metrics

    probes = jnp.zeros((xs.shape[1], xs.shape[0], params["w_o"].shape[0]), xs.dtype)
    (loss, aux), (grads, state_grads) = jax.value_and_grad(loss_fn, (0, 1), has_aux=True)(
        params, probes
    )
    aux["omega"] = jnp.zeros((), loss.dtype)
    total = grads
    if omega_weight > 0:
        aux["omega"], g_omega = jax.value_and_grad(lambda p: omega(cell, p, xs, state_grads))(
            params
        )
        total = jax.tree.map(lambda a, b: a + omega_weight * b, grads, g_omega)
    return loss, aux, grads, total


def split_gradients(cell, task, params, batch, omega_weight: float = 0.0):
    """``gradients`` with the batch split over the devices of ``sweep.SPLIT``.

    For the sweep's ``split_one`` (inside its shard_map, where every device of the axis holds the
    whole batch): device i takes rows [i B / d, (i + 1) B / d) and the four results are averaged
    over the axis. Each is a mean over the batch rows (the loss, the task's metrics, Omega and so
    their gradients), so the average over equal shards is the whole batch's value; the normalised
    directions u_t inside Omega are per row and unchanged by the split.
    """
    n, i = lax.axis_size(sweep.SPLIT), lax.axis_index(sweep.SPLIT)
    local = jax.tree.map(
        lambda x: lax.dynamic_slice_in_dim(x, i * (x.shape[0] // n), x.shape[0] // n), batch
    )
    return lax.pmean(gradients(cell, task, params, local, omega_weight), sweep.SPLIT)


# --- spikes ----------------------------------------------------------------------------------


def monitor_init(window: int) -> dict:
    """The spike monitor (kept in ``TrainState.health``): a ring of the last norms and counts."""
    return {
        "norms": jnp.full((window,), jnp.nan, jnp.float32),
        "spikes": jnp.zeros((), jnp.int32),
        "first_spike": jnp.full((), -1, jnp.int32),
        "max_ratio": jnp.zeros((), jnp.float32),
    }


def monitor_update(mon: dict, norm, step_index, factor: float, min_history: int = 10):
    """(monitor, ratio, spike) after the norm of (0-based) step ``step_index``.

    ratio = norm / median(previous norms), 0 until ``min_history`` norms are there, +inf for a
    non-finite norm (a spike, left out of the median).
    """
    ring = mon["norms"]
    have = jnp.sum(jnp.isfinite(ring)) >= min_history
    median = jnp.nanmedian(ring)
    finite = jnp.isfinite(norm)
    ratio = jnp.where(have & (median > 0), norm / jnp.where(median > 0, median, 1.0), 0.0)
    ratio = jnp.where(finite, ratio, jnp.inf).astype(jnp.float32)
    spike = ratio > factor
    mon = {
        "norms": ring.at[step_index % ring.shape[0]].set(jnp.where(finite, norm, jnp.nan)),
        "spikes": mon["spikes"] + spike.astype(jnp.int32),
        "first_spike": jnp.where(spike & (mon["first_spike"] < 0), step_index + 1,
                                 mon["first_spike"]),
        "max_ratio": jnp.maximum(mon["max_ratio"], jnp.where(finite, ratio, 0.0)),
    }  # fmt: skip
    return mon, ratio, spike


def running_median_spikes(trace, window: int, factor: float, min_history: int = 10) -> list[int]:
    """A plain numpy reference: 1-based steps whose norm exceeds factor x the running median."""
    out, history = [], []
    for t, g in enumerate(np.asarray(trace, np.float64)):
        past = [x for x in history[-window:] if np.isfinite(x)]
        if not np.isfinite(g) or (len(past) >= min_history and g > factor * np.median(past)):
            out.append(t + 1)
        history.append(g if np.isfinite(g) else np.nan)
    return out


# --- the grid --------------------------------------------------------------------------------


class Spec(NamedTuple):
    """One grid: every init x method x seed on one task and length. Plain values only."""

    task: str = "temporal_order"  # a key of TASKS
    seq_len: int = 20  # T
    inits: tuple = ("sigmoid", "basic", "smart")  # keys of INITS
    methods: tuple = METHODS  # of METHODS
    seeds: tuple = (0, 1, 2, 3, 4)  # paired seeds
    hidden_size: int = 50  # H
    batch_size: int = 20  # sequences per SGD step
    optimizer: str = "sgd"  # rnnlab.train.step.OPTIMIZERS
    learning_rate: float = 0.1  # step size
    clip_norm: float = 1.0  # the clipping threshold c
    omega_weight: float = 4.0  # alpha of clip_omega
    chunk_steps: int = 50  # SGD steps per loop step (metrics and checkpoints in between)
    eval_batch_size: int = 500  # fresh sequences per logged eval
    test_size: int = 10_000  # fresh sequences of the final test
    threshold: float = 0.01  # solved: test error below it
    adding_tolerance: float = 0.04  # adding: |y - target| that counts as an error
    spike_factor: float = 10.0  # a spike: norm > factor x running median
    spike_window: int = 100  # steps in the running median
    strategy: str = "auto"  # rnnlab.train.sweep strategy


def models(spec: Spec) -> list[tuple[str, str, int]]:
    """(init, method, seed) per model, in state order: grouped by (activation, Omega), so each
    group is one vmapped program (the Omega pass is paid only by the clip_omega models)."""
    grid = list(itertools.product(spec.inits, spec.methods, spec.seeds))
    return sorted(grid, key=lambda m: (INITS[m[0]]["activation_fn"], m[1] == "clip_omega"))


def make_task(spec: Spec) -> tasks.Task:
    if spec.task not in TASKS:
        raise ValueError(f"task={spec.task!r}: expected one of {sorted(TASKS)}")
    options = {"tolerance": spec.adding_tolerance} if spec.task == "adding" else {}
    return TASKS[spec.task](threshold=spec.threshold, **options)


def check(spec: Spec) -> None:
    """Raises ValueError naming the field, before anything is compiled."""
    for name in spec.inits:
        if name not in INITS:
            raise ValueError(f"inits: unknown init {name!r}; known: {sorted(INITS)}")
    for name in spec.methods:
        if name not in METHODS:
            raise ValueError(f"methods: unknown method {name!r}; known: {list(METHODS)}")
    make_task(spec).check_seq_len(spec.seq_len)
    if spec.chunk_steps < 1 or spec.spike_window < 1 or not spec.seeds:
        raise ValueError("chunk_steps and spike_window must be >= 1 and seeds non-empty")


@functools.lru_cache(maxsize=8)
def program(spec: Spec, seed: int):
    """(init_state, chunk_step, evaluate, test) over the models of ``models(spec)``.

    Cached per (spec, seed): the same functions, so ``jax.jit`` reuses their compilations when
    a grid is trained again (a resumed run, a longer one) in the same process.

    ``chunk_step`` runs ``spec.chunk_steps`` SGD steps of every model and returns per-model
    chunk metrics; ``test(state)`` gives each model's error on ``spec.test_size`` fresh sequences.
    """
    task, grid = make_task(spec), models(spec)
    tx = step.optimizer(spec.optimizer, spec.learning_rate)
    source = tasks.source(task, None, spec.batch_size, spec.seq_len)
    k_init, k_data, k_eval, k_test = jax.random.split(jax.random.key(seed), 4)
    D, H, O = task.input_size, spec.hidden_size, task.output_size

    def init_state():
        by_init = {}  # paired: the key depends on the seed only
        for init in spec.inits:
            keys = jnp.stack([jax.random.fold_in(k_init, s) for s in spec.seeds])
            by_init[init] = jax.vmap(lambda k, i=init: init_params(make_cell(i), i, k, D, H, O))(
                keys
            )  # [S, ...]
        per_model = []
        for init, _, seed in grid:
            j = spec.seeds.index(seed)
            params = jax.tree.map(lambda x, j=j: x[j], by_init[init])
            data = {"key": jax.random.fold_in(k_data, seed), "index": jnp.zeros((), jnp.int32)}
            s = state.create(params, tx, jax.random.fold_in(k_init, seed), data)
            per_model.append(s._replace(health={**s.health, **monitor_init(spec.spike_window)}))
        return jax.tree.map(lambda *xs: jnp.stack(xs), *per_model)

    def make_step(init_name, use_omega, split=False):
        cell = make_cell(init_name)
        weight = spec.omega_weight if use_omega else 0.0
        grads_of = split_gradients if split else gradients

        def one(s, clip):  # one SGD step of one model (its batch split over SPLIT if `split`)
            batch, data_state = source.next(s.data_state)
            loss, aux, grads, total = grads_of(cell, task, s.params, batch, weight)
            ok = step._first_nonfinite(loss, total) < 0
            clipped, _ = step.clip_gradients(total, clip_norm=spec.clip_norm)
            total = jax.tree.map(lambda c, g: jnp.where(clip, c, g), clipped, total)
            updates, opt_state = tx.update(total, s.opt_state, s.params)
            keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)  # noqa: E731
            norm, total_norm = optax.tree.norm(grads), optax.tree.norm(total)
            monitor = {k: s.health[k] for k in monitor_init(1)}
            monitor, ratio, spike = monitor_update(monitor, norm, s.step, spec.spike_factor)
            h = s.health
            first_bad = (h["bad_step"] < 0) & ~ok
            health = {**h, **monitor, "skipped": h["skipped"] + (~ok).astype(jnp.int32),
                      "bad_step": jnp.where(first_bad, s.step + 1, h["bad_step"])}  # fmt: skip
            metrics = {"loss": loss, **aux, "grad_norm": norm, "ratio": ratio, "spike": spike,
                       "update_norm": jnp.where(ok, optax.tree.norm(updates), 0.0),
                       "clipped": clip & (total_norm > spec.clip_norm)}  # fmt: skip
            new = state.TrainState(s.step + 1, keep(optax.apply_updates(s.params, updates),
                                   s.params), keep(opt_state, s.opt_state), s.key, data_state,
                                   health)  # fmt: skip
            return new, metrics

        return one

    # Groups: contiguous runs of models sharing (activation, Omega); one vmapped step each. A
    # sharded sweep runs a group's models that do not fill a round of the devices data parallel
    # (split_one) instead of padding the round with copies, when the batch splits evenly.
    bounds, clip = [], jnp.array([m[1] != "none" for m in grid])
    splits = spec.batch_size % jax.device_count() == 0
    for (_, omega_on), members in itertools.groupby(
        enumerate(grid), key=lambda im: (INITS[im[1][0]]["activation_fn"], im[1][1] == "clip_omega")
    ):
        members = list(members)
        a, b, init = members[0][0], members[-1][0] + 1, members[0][1][0]
        split_one = make_step(init, omega_on, split=True) if splits else None
        bounds.append((a, b, sweep.step_models(make_step(init, omega_on), clip[a:b],
                                               spec.strategy, split_one=split_one)))  # fmt: skip

    def all_models(states, _):
        outs = [fn(jax.tree.map(lambda x, a=a, b=b: x[a:b], states)) for a, b, fn in bounds]
        cat = lambda *xs: jnp.concatenate(xs)  # noqa: E731
        return jax.tree.map(cat, *(o[0] for o in outs)), jax.tree.map(cat, *(o[1] for o in outs))

    def chunk_step(states):
        states, m = lax.scan(all_models, states, None, length=spec.chunk_steps)  # m: [C, N]
        where = jnp.argmax(m["ratio"], axis=0)  # [N]
        largest = jnp.max(m["ratio"], axis=0)
        first = states.step - spec.chunk_steps + 1  # 1-based step of the chunk's first row
        return states, {
            "loss": jnp.mean(m["loss"], 0),
            "error": jnp.mean(m["error"], 0),
            "omega": jnp.mean(m["omega"], 0),
            "grad_norm_max": jnp.max(m["grad_norm"], 0),
            "grad_norm_median": jnp.median(m["grad_norm"], 0),
            "update_norm_max": jnp.max(m["update_norm"], 0),
            "clipped": jnp.mean(m["clipped"].astype(jnp.float32), 0),
            "spikes": jnp.sum(m["spike"], 0),
            "max_ratio": largest,
            "spike_step": jnp.where(largest > spec.spike_factor, first + where, -1),
        }

    groups = {n: np.array([i for i, m in enumerate(grid) if m[0] == n]) for n in spec.inits}
    order = np.argsort(np.concatenate(list(groups.values())))

    def errors(states, key, size):  # [N] error and loss of every model on `size` sequences
        # Each device scores its share of the sequences (the states are replicated).
        batch = parallel.shard_batch(task.sample(key, size, spec.seq_len))

        def one(cell, p):
            return task.metrics(readout(p, unroll(cell, p, batch["inputs"])[-1]), batch)

        out = [jax.vmap(functools.partial(one, make_cell(n)))(
                   jax.tree.map(lambda x, i=i: x[i], states.params))
               for n, i in groups.items()]  # fmt: skip
        return jax.tree.map(lambda *xs: jnp.concatenate(xs)[order], *out)

    def evaluate(states):
        return errors(states, jax.random.fold_in(k_eval, states.step[0]), spec.eval_batch_size)

    @jax.jit
    def test_block(states, i):
        return errors(states, jax.random.fold_in(k_test, i), block)

    block = min(2_000, spec.test_size)

    def test(states):  # host sync: per-model mean error and loss over test_size sequences
        blocks = -(-spec.test_size // block)
        parts = [jax.device_get(test_block(states, i)) for i in range(blocks)]
        return {k: np.mean([p[k] for p in parts], axis=0) for k in parts[0]}

    return init_state, chunk_step, evaluate, test


def train_grid(spec: Spec, workdir, *, steps: int, seed: int = 0, checkpoint_every: int = 10,
               resumable=("steps",), meta: dict | None = None) -> dict:  # fmt: skip
    """Trains ``models(spec)`` for ``steps`` SGD steps (resuming from workdir), then tests them.

    Args:
        spec: the grid.
        workdir: checkpoints/, metrics.jsonl (one record per model and chunk), config.json.
        steps: SGD steps, rounded up to whole chunks.
        seed: fixes every draw (inits, data, evals, test) with ``spec.seeds``.
        checkpoint_every: in chunks.
        resumable: fields of ``meta`` + spec that may change on resume.
        meta: extra config written with the checkpoints.

    Returns:
        {"spec", "steps", "models": [per model: init, method, seed, test_error, test_loss,
        solved, spikes, first_spike, max_ratio, skipped, first_solved_step]}.
    """
    check(spec)
    init_state, chunk_step, evaluate, test = program(spec, seed)
    chunks = -(-steps // spec.chunk_steps)
    final = loop.train(
        workdir=workdir, init_state=init_state, train_step=chunk_step, steps=chunks,
        log_every=1, checkpoint_every=checkpoint_every,
        config={**spec._asdict(), **(meta or {}), "seed": seed, "steps": chunks},
        resumable=resumable,
        evaluate=evaluate, on_nonfinite="skip", models=len(models(spec)), progress=False,
    )  # fmt: skip
    tested = test(final)  # host sync
    health = jax.device_get(final.health)
    records = writers.read_metrics(workdir)
    out = []
    for i, (init, method, seed) in enumerate(models(spec)):
        mine = [r for r in records if r.get("model") == i]
        hit = next((r["step"] for r in mine if r["eval_error"] < spec.threshold), None)
        out.append(dict(
            init=init, method=method, seed=seed, test_error=float(tested["error"][i]),
            test_loss=float(tested["loss"][i]), solved=bool(tested["error"][i] < spec.threshold),
            spikes=int(health["spikes"][i]), first_spike=int(health["first_spike"][i]),
            max_ratio=float(health["max_ratio"][i]), skipped=int(health["skipped"][i]),
            first_solved_step=None if hit is None else hit * spec.chunk_steps,
            max_update_norm=max((r["update_norm_max"] for r in mine), default=0.0),
        ))  # fmt: skip
    return {"spec": spec._asdict(), "steps": chunks * spec.chunk_steps, "models": out}


def traces(spec: Spec, workdir) -> dict:
    """Per model (init, method, seed): steps [C], grad-norm max and median per chunk, the
    chunk's largest spike (step, ratio), and the eval error, from metrics.jsonl."""
    records = writers.read_metrics(workdir)
    out = {}
    for i, m in enumerate(models(spec)):
        mine = sorted((r for r in records if r.get("model") == i), key=lambda r: r["step"])
        out[m] = {
            "steps": [r["step"] * spec.chunk_steps for r in mine],
            "grad_norm_max": [r["grad_norm_max"] for r in mine],
            "grad_norm_median": [r["grad_norm_median"] for r in mine],
            "eval_error": [r["eval_error"] for r in mine],
            "spikes": [(r["spike_step"], r["max_ratio"]) for r in mine if r["spike_step"] >= 0],
            "update_norm_max": max((r["update_norm_max"] for r in mine), default=0.0),
        }
    return out


def success_table(results: list[dict]) -> list[dict]:
    """Rows {task, seq_len, init, method, solved, seeds, spikes (total), models_with_spikes,
    max_update_norm} from ``train_grid`` results (each with "spec" and optional "traces")."""
    rows = []
    for r in results:
        spec = r["spec"]
        for init, method in itertools.product(spec["inits"], spec["methods"]):
            ms = [m for m in r["models"] if m["init"] == init and m["method"] == method]
            rows.append(dict(
                task=spec["task"], seq_len=spec["seq_len"], init=init, method=method,
                solved=sum(m["solved"] for m in ms), seeds=len(ms),
                spikes=sum(m["spikes"] for m in ms),
                models_with_spikes=sum(m["spikes"] > 0 for m in ms),
                max_ratio=max(m["max_ratio"] for m in ms),
                median_test_error=float(np.median([m["test_error"] for m in ms])),
                max_update_norm=max(m.get("max_update_norm", 0.0) for m in ms),
            ))  # fmt: skip
    return rows


def save(path, obj) -> Path:
    writers.write_json(path, obj)
    return Path(path)
