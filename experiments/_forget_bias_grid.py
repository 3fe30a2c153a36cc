"""The model grid of experiments.forget_bias: the settings a config names (LSTM biases, chrono,
baselines, Greff variants), grouped by param structure with paired seeds, and the one program
per task that inits, steps and evaluates every group (design in experiments.forget_bias)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnlab import cells
from rnnlab.cells.lstm import VARIANTS, chrono_bias
from rnnlab.data import tasks
from rnnlab.models import sequence
from rnnlab.train import parallel, state, step, sweep

GREFF = tuple(v for v in VARIANTS if v != "vanilla") + ("peepholes",)


class Group(NamedTuple):
    """Models sharing one param structure; every leaf of their state has a model axis [n].

    Attributes:
        name: "lstm" (the bias grid), a baseline cell's name, or "lstm_<variant>".
        labels, seeds: per model, e.g. ("lstm bf=0", "lstm bf=0", ...) and (0, 1, ...).
        hparams: {"seed", "forget_bias", "chrono"} arrays [n].
        init_one: h -> TrainState of one model.
        step_one: (state, h) -> (state, metrics) of one model.
        split_one: step_one with its batch split over the sweep's devices (``sweep.SPLIT``), for
            the models a sharded round leaves; None when the batch does not split evenly.
        eval_one: (state, h) -> eval metrics of one model on fresh, per-seed paired sequences.
    """

    name: str
    labels: tuple
    seeds: tuple
    hparams: dict
    init_one: Callable
    step_one: Callable
    split_one: Callable | None
    eval_one: Callable


def _names(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def variant_names(text: str) -> list[str]:
    return list(GREFF) if text.strip() == "all" else _names(text)


def labels(config) -> list[str]:
    """The settings in order: LSTM biases, chrono, baselines, variants."""
    out = [f"lstm bf={b:g}" for b in config.forget_biases]
    out += ["lstm chrono"] * bool(config.chrono) + _names(config.baselines)
    return out + [f"lstm {v}" for v in variant_names(config.variants)]


def groups(config, task: tasks.Task, seq_len: int) -> list[Group]:
    """The model grid for one task, grouped by param structure (see the module docstring)."""
    seeds = list(range(config.seed, config.seed + config.num_seeds))
    t_max = config.chrono_max_time or seq_len
    bias_grid = [(f"lstm bf={b:g}", float(b), False) for b in config.forget_biases]
    bias_grid += [("lstm chrono", 0.0, True)] * bool(config.chrono)
    specs = [("lstm", cells.get("lstm", forget_bias=0.0), bias_grid)] * bool(bias_grid)
    for name in _names(config.baselines):
        specs.append((name, cells.get(name), [(name, 0.0, False)]))
    for v in variant_names(config.variants):
        options = {"peepholes": True} if v == "peepholes" else {"variant": v}
        cell = cells.get("lstm", forget_bias=config.variant_forget_bias, **options)
        specs.append((f"lstm_{v}", cell, [(f"lstm {v}", config.variant_forget_bias, False)]))
    return [_group(config, task, seq_len, t_max, seeds, *spec) for spec in specs]


def _group(config, task, seq_len, t_max, seeds, name, cell, settings) -> Group:
    model = sequence.make(
        cell,
        input_size=task.input_size,
        hidden_size=config.hidden_size,
        output_size=task.output_size,
        num_layers=config.num_layers,
        readout=task.readout,
    )
    tx = step.optimizer(config.optimizer, config.learning_rate)
    source = tasks.source(task, None, config.batch_size, seq_len)

    def keys(h):  # paired seeds: every setting of seed k draws the same keys
        return jax.random.split(jax.random.key(h["seed"]), 5)  # init, train, data, chrono, eval

    def init_one(h):
        k_init, k_train, k_data, k_chrono, _ = keys(h)
        params = model.init(k_init)
        if name == "lstm":  # the bias grid: same weights per seed, only b_i and b_f differ
            params = set_gate_biases(params, h, k_chrono, t_max)
        data = tasks.source(task, k_data, config.batch_size, seq_len).init()
        return state.create(params, tx, k_train, data)

    def loss_fn(params, batch, key):
        metrics = task.metrics(model.apply(params, batch["inputs"]), batch)
        return metrics.pop("loss"), metrics

    train_step = step.make_step(loss_fn, tx, source.next, clip_norm=config.clip_norm)
    split_step = None
    if config.batch_size % jax.device_count() == 0:
        split_step = step.make_step(
            loss_fn, tx, source.next, clip_norm=config.clip_norm,
            grad_fn=parallel.local_batch_grad(loss_fn, sweep.SPLIT),
        )  # fmt: skip

    def eval_one(s, h):
        batch = task.sample(jax.random.fold_in(keys(h)[4], s.step), config.eval_batch_size, seq_len)
        return task.metrics(model.apply(s.params, batch["inputs"]), batch)

    rows = [(label, b, c, k) for label, b, c in settings for k in seeds]  # setting-major
    hparams = {
        "seed": jnp.array([r[3] for r in rows], jnp.int32),
        "forget_bias": jnp.array([r[1] for r in rows], jnp.float32),
        "chrono": jnp.array([r[2] for r in rows], bool),
    }
    return Group(
        name,
        tuple(r[0] for r in rows),
        tuple(r[3] for r in rows),
        hparams,
        init_one,
        lambda s, h: train_step(s),
        split_step and (lambda s, h: split_step(s)),
        eval_one,
    )


def set_gate_biases(params, h, key, t_max):
    """b_f = h["forget_bias"], b_i = 0; or chrono: b_f ~ log U[1, t_max - 1], b_i = -b_f."""
    layers = []
    for layer, p in enumerate(params["rnn"]):
        H = p["w_h"].shape[0]
        chrono = chrono_bias(jax.random.fold_in(key, layer), H, t_max)
        b_f = jnp.where(h["chrono"], chrono, h["forget_bias"])  # [H]
        b_i = jnp.where(h["chrono"], -chrono, 0.0)  # [H]
        layers.append({**p, "b": p["b"].at[:H].set(b_i).at[H : 2 * H].set(b_f)})
    return {**params, "rnn": layers}


# --- one program for all groups --------------------------------------------------------------


def _sizes(grid: list[Group]) -> list[int]:
    return [len(g.labels) for g in grid]


def combine(states: list[state.TrainState]) -> state.TrainState:
    """Per-group states -> one: model-axis fields concatenated, params/opt_state as tuples."""
    cat = lambda *xs: jnp.concatenate(xs)  # noqa: E731
    return state.TrainState(
        step=cat(*(s.step for s in states)),
        params=tuple(s.params for s in states),
        opt_state=tuple(s.opt_state for s in states),
        key=cat(*(s.key for s in states)),
        data_state=jax.tree.map(cat, *(s.data_state for s in states)),
        health=jax.tree.map(cat, *(s.health for s in states)),
    )


def split(combined: state.TrainState, sizes: list[int]) -> list[state.TrainState]:
    """The inverse of ``combine``: group g's state from the combined one (static slices)."""
    out, start = [], 0
    for g, n in enumerate(sizes):
        part = lambda x, a=start, b=start + n: x[a:b]  # noqa: E731
        out.append(
            state.TrainState(
                step=part(combined.step),
                params=combined.params[g],
                opt_state=combined.opt_state[g],
                key=part(combined.key),
                data_state=jax.tree.map(part, combined.data_state),
                health=jax.tree.map(part, combined.health),
            )
        )
        start += n
    return out


def program(grid: list[Group], strategy: str):
    """(init_state, train_step, evaluate) over every model of ``grid``, for ``loop.train``."""
    sizes = _sizes(grid)
    inits = [sweep.init_models(g.init_one, g.hparams, strategy) for g in grid]
    steps = [
        sweep.step_models(g.step_one, g.hparams, strategy, split_one=g.split_one) for g in grid
    ]
    evals = [sweep.step_models(g.eval_one, g.hparams, strategy) for g in grid]
    cat = lambda *xs: jnp.concatenate(xs)  # noqa: E731

    def train_step(s):
        outs = [fn(part) for fn, part in zip(steps, split(s, sizes))]
        return combine([o[0] for o in outs]), jax.tree.map(cat, *(o[1] for o in outs))

    def evaluate(s):
        return jax.tree.map(cat, *(fn(part) for fn, part in zip(evals, split(s, sizes))))

    return lambda: combine([init() for init in inits]), train_step, evaluate
