"""A toy problem for fast loop tests: linear regression on generated data, optional poison."""

import jax
import jax.numpy as jnp
import optax

from rnnlab.data.tasks import Source
from rnnlab.train import state, step

W_TRUE = jnp.array([1.0, -2.0, 0.5])


def source(key, batch_size=8, poison_at=-1):
    """Batch i: x ~ N(0, 1) [B, 3], y = x w*; batch ``poison_at`` makes the loss NaN."""

    def init():
        return {"key": key, "index": jnp.zeros((), jnp.int32)}

    def next_batch(data_state):
        x = jax.random.normal(
            jax.random.fold_in(data_state["key"], data_state["index"]), (batch_size, 3)
        )
        batch = {"x": x, "y": x @ W_TRUE, "poison": data_state["index"] == poison_at}
        return batch, {"key": data_state["key"], "index": data_state["index"] + 1}

    return Source(init, next_batch)


def loss_fn(params, batch, key):
    error = batch["x"] @ params["w"] + params["b"] - batch["y"]
    loss = jnp.mean(error**2) + jnp.where(batch["poison"], jnp.nan, 0.0)
    return loss, {"abs_error": jnp.mean(jnp.abs(error))}


def setup(seed=0, poison_at=-1, lr=0.1, batch_size=8, **step_options):
    """(init_state, train_step) for the toy problem."""
    k_init, k_train, k_data = jax.random.split(jax.random.key(seed), 3)
    src = source(k_data, batch_size, poison_at)
    tx = optax.sgd(lr)

    def init_state():
        params = {"w": 0.1 * jax.random.normal(k_init, (3,)), "b": jnp.zeros(())}
        return state.create(params, tx, k_train, src.init())

    return init_state, step.make_step(loss_fn, tx, src.next, **step_options)
