"""Sweeps: N independent models (seeds x hyperparameters) in one compiled program.

    init = sweep.init_models(init_one, hparams)            # hparams: pytree, leading axis N
    step = sweep.step_models(step_one, hparams)            # step_one(state, hparams)
    loop.train(init_state=init, train_step=step, models=N, ...)

Every leaf of the state gets a leading model axis [N, ...]; so do the metrics, which the loop
writes per model (metrics.jsonl records carry "model": i). Strategies:

    "vmap"   jax.vmap: one batched program, fastest while N models fit in memory
    "map"    lax.map: the models one after another inside the program, memory of one model

A future "shard" strategy would split the model axis over the devices.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from jax import lax

STRATEGIES = ("vmap", "map")


def _mapped(fn: Callable, strategy: str) -> Callable:
    if strategy == "vmap":
        return jax.vmap(fn)
    if strategy == "map":
        return lambda *args: lax.map(lambda a: fn(*a), args)
    raise ValueError(f"strategy={strategy!r}: expected one of {list(STRATEGIES)}")


def grid(**axes) -> dict:
    """The Cartesian product of named value lists, flattened: {name: [N] list}.

    grid(seed=[0, 1], forget_bias=[0.0, 1.0]) gives seeds [0, 0, 1, 1] and biases
    [0.0, 1.0, 0.0, 1.0] (the last axis varies fastest).
    """
    import itertools

    names = list(axes)
    rows = list(itertools.product(*(axes[n] for n in names)))
    return {n: [row[i] for row in rows] for i, n in enumerate(names)}


def init_models(init_one: Callable, hparams, strategy: str = "vmap") -> Callable:
    """() -> the stacked state of N models, ``init_one(hparams_i)`` each.

    Args:
        init_one: hparams_i -> TrainState of one model (jit-traceable: hparams_i are arrays).
        hparams: a pytree of arrays with a leading model axis N (e.g. seeds, forget biases).
        strategy: "vmap" or "map".
    """
    mapped = _mapped(init_one, strategy)
    return lambda: mapped(hparams)


def step_models(step_one: Callable, hparams, strategy: str = "vmap") -> Callable:
    """state -> (state, metrics) for N models; ``step_one(state_i, hparams_i)`` each."""
    mapped = _mapped(step_one, strategy)
    return lambda states: mapped(states, hparams)


def num_models(hparams) -> int:
    sizes = {x.shape[0] for x in jax.tree.leaves(hparams)}
    if len(sizes) != 1:
        raise ValueError(f"hparams: every leaf needs the same leading model axis, got {sizes}")
    return sizes.pop()
