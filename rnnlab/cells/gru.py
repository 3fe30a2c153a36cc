"""Gated recurrent unit (Cho et al. 2014).

    r = sigmoid(x W_xr + h W_hr + b_r)
    u = sigmoid(x W_xu + h W_hu + b_u)                       (the update gate, "z" in the paper)
    n = tanh(x W_xn + b_n + (r * h) W_hn)                    reset before the matmul (the paper)
    n = tanh(x W_xn + b_n + r * (h W_hn + b_hn))             reset_after=True (cuDNN, PyTorch, Flax)
    h' = (1 - u) * n + u * h

The two forms differ as functions; reset-after lets one [H, 3H] matmul serve all three gates per
step, which is why cuDNN chose it.

Params: w_x [D, 3H], w_h [H, 3H], b [3H] (gate order r, u, n, as PyTorch); reset_after adds
b_hn [H], the hidden-side candidate bias. Carry: h [B, H].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.cells import fused
from rnnlab.cells.base import Cell, check_sizes, lecun_normal, stacked_orthogonal, zeros_carry


def gru(*, reset_after: bool = False) -> Cell:
    """Returns the GRU cell; ``reset_after`` selects the cuDNN/PyTorch/Flax candidate form."""

    def init(key, input_size, hidden_size):
        check_sizes(input_size, hidden_size)
        k_x, k_h = jax.random.split(key)
        params = {
            "w_x": lecun_normal(k_x, (input_size, 3 * hidden_size)),
            "w_h": stacked_orthogonal(k_h, hidden_size, 3),
            "b": jnp.zeros(3 * hidden_size),
        }
        if reset_after:
            params["b_hn"] = jnp.zeros(hidden_size)
        return params

    def initial_carry(batch_size, hidden_size):
        return zeros_carry(batch_size, hidden_size)

    def project(params, xs):
        return fused.dense(xs, params["w_x"], params["b"])  # [..., 3H]

    def step(params, h, z):
        H = h.shape[-1]
        z_r, z_u, z_n = jnp.split(z, 3, axis=-1)
        if reset_after:
            a_r, a_u, a_n = jnp.split(h @ params["w_h"], 3, axis=-1)  # one [H, 3H] matmul
            r = jax.nn.sigmoid(z_r + a_r)
            u = jax.nn.sigmoid(z_u + a_u)
            n = jnp.tanh(z_n + r * (a_n + params["b_hn"]))
        else:
            a_r, a_u = jnp.split(h @ params["w_h"][:, : 2 * H], 2, axis=-1)
            r = jax.nn.sigmoid(z_r + a_r)
            u = jax.nn.sigmoid(z_u + a_u)
            n = jnp.tanh(z_n + (r * h) @ params["w_h"][:, 2 * H :])
        h = (1.0 - u) * n + u * h
        return h, h

    def apply(params, carry, x):
        # The plain projection (not fused.dense), so forward-mode autodiff works on one step.
        return step(params, carry, x @ params["w_x"] + params["b"])

    return Cell(
        init,
        initial_carry,
        apply,
        project=project,
        step=step,
        scan=fused.gru_scan(reset_after),
        hidden_size=lambda params: params["w_h"].shape[0],
        name="gru",
    )
