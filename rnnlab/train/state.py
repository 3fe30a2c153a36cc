"""The train state: plain data (arrays in a NamedTuple) that checkpoints, compares and vmaps.

    TrainState(step, params, opt_state, key, data_state, health)

``key`` is the run's training key; step s draws ``fold_in(key, s)``. ``data_state`` is the data
source's position (for generated tasks its key and batch index). ``health`` holds device-side
counters for non-finite losses and gradients, so detecting them never needs a host sync.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class TrainState(NamedTuple):
    """Everything a run needs to continue exactly; every leaf is an array.

    Attributes:
        step: int32 [], updates done so far.
        params: the model's params pytree (float32).
        opt_state: the optax state.
        key: a typed PRNG key; step s uses fold_in(key, s).
        data_state: the data source's position (see ``rnnlab.data.tasks.Source``).
        health: {"skipped": updates skipped as non-finite, "bad_step": the first step (1-based)
            with a non-finite loss or gradient or -1, "bad_what": 0 for the loss, 1 + i for
            gradient leaf i, -1 if none}, all int32 [].
    """

    step: jax.Array
    params: Any
    opt_state: Any
    key: jax.Array
    data_state: Any
    health: dict


def initial_health() -> dict:
    return {
        "skipped": jnp.zeros((), jnp.int32),
        "bad_step": jnp.full((), -1, jnp.int32),
        "bad_what": jnp.full((), -1, jnp.int32),
    }


def create(params, tx, key: jax.Array, data_state) -> TrainState:
    """A fresh state at step 0 for ``params`` and the optax transformation ``tx``."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        key=key,
        data_state=data_state,
        health=initial_health(),
    )


def to_host(tree):
    """numpy copies of every leaf (a host sync). Typed keys become their key data.

    On several processes an array that is replicated but not fully addressable is read from
    this process's first shard.
    """

    def one(x):
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_data(0)
        return np.asarray(x)

    return jax.tree.map(one, tree)


def leaf_names(tree) -> list[str]:
    """Readable paths of the leaves, in flattening order, e.g. "['rnn'][0]['w_h']"."""
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def checksum(tree) -> str:
    """sha256 over the leaves' paths, dtypes, shapes and bytes (a host sync)."""
    digest = hashlib.sha256()
    host = to_host(tree)
    for name, leaf in zip(leaf_names(host), jax.tree.leaves(host), strict=True):
        leaf = np.ascontiguousarray(leaf)
        digest.update(f"{name}:{leaf.dtype}:{leaf.shape};".encode())
        digest.update(leaf.tobytes())
    return digest.hexdigest()
