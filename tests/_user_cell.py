"""A user's cell, written outside rnnlab, used through a dotted path: a minimal-gated unit.

    f = sigmoid(x W_f + h U_f + b_f);  n = tanh(x W + (f * h) U + b);  h' = (1 - f) h + f n
(Zhou et al. 2016). Only the three required functions; no project/step split.
"""

import jax
import jax.numpy as jnp

from rnnlab.cells import Cell


def mgu(*, scale: float = 1.0):
    def init(key, input_size, hidden_size):
        k1, k2 = jax.random.split(key)
        return {
            "w_x": scale * jax.random.normal(k1, (input_size, 2 * hidden_size)) / input_size**0.5,
            "w_h": scale * jax.random.normal(k2, (hidden_size, 2 * hidden_size)) / hidden_size**0.5,
            "b": jnp.zeros(2 * hidden_size),
        }

    def initial_carry(batch_size, hidden_size):
        return jnp.zeros((batch_size, hidden_size))

    def apply(params, h, x):
        H = h.shape[-1]
        zx = x @ params["w_x"] + params["b"]
        f = jax.nn.sigmoid(zx[:, :H] + h @ params["w_h"][:, :H])
        n = jnp.tanh(zx[:, H:] + (f * h) @ params["w_h"][:, H:])
        h = (1 - f) * h + f * n
        return h, h

    return Cell(init, initial_carry, apply, name="mgu")
