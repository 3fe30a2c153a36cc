"""A (stacked) recurrent network with a linear readout, for sequence tasks.

h_t = layers(x_1..x_t)                       # rnnlab.stack over any Cell
y   = h_T W + b      (readout="last": at each sequence's last real step)
y_t = h_t W + b      (readout="all": at every step)

model = sequence.make(rnnlab.cells.get("lstm"), input_size=2, hidden_size=64, output_size=1)
params = model.init(key)
outputs = model.apply(params, xs)            # xs: [B, T, D] -> [B, O] or [B, T, O]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnlab.cells.base import Cell, lecun_normal
from rnnlab.recurrent import init_stack, stack

READOUTS = ("last", "all")


class Model(NamedTuple):
    """init(key) -> params; apply(params, xs, lengths=None) -> outputs."""

    init: Callable[[jax.Array], dict]
    apply: Callable[..., jax.Array]


def make(
    cell: Cell,
    *,
    input_size: int,
    hidden_size: int,
    output_size: int,
    num_layers: int = 1,
    readout: str = "last",
) -> Model:
    """Builds the model's pure init and apply.

    Args:
        cell: any rnnlab ``Cell`` (built-in or a user's).
        input_size, hidden_size, output_size: D, H and O.
        num_layers: stacked recurrent layers.
        readout: "last" or "all", see the module docstring.

    Returns:
        Model(init, apply): params are {"rnn": [per-layer cell params], "readout": {"w", "b"}};
        apply maps xs [B, T, D] (and optional lengths [B]) to [B, O] or [B, T, O].
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"cell: expected an rnnlab Cell, got {type(cell).__name__}")
    if readout not in READOUTS:
        raise ValueError(f"readout={readout!r}: expected one of {list(READOUTS)}")
    for name, value in (
        ("input_size", input_size),
        ("hidden_size", hidden_size),
        ("output_size", output_size),
        ("num_layers", num_layers),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")

    def init(key):
        k_rnn, k_out = jax.random.split(key)
        return {
            "rnn": init_stack(cell, k_rnn, input_size, hidden_size, num_layers),
            "readout": {
                "w": lecun_normal(k_out, (hidden_size, output_size)),
                "b": jnp.zeros((output_size,), jnp.float32),
            },
        }

    def apply(params, xs, lengths=None):
        if xs.ndim != 3 or xs.shape[-1] != input_size:
            raise ValueError(f"xs: expected [batch, time, {input_size}], got shape {xs.shape}")
        _, hs = stack(cell, params["rnn"], xs, lengths=lengths)  # [B, T, H]
        if readout == "last":
            if lengths is None:
                hs = hs[:, -1]  # [B, H]
            else:
                hs = jnp.take_along_axis(hs, (lengths - 1)[:, None, None], axis=1)[:, 0]  # [B, H]
        return hs @ params["readout"]["w"] + params["readout"]["b"]  # [B, O] or [B, T, O]

    return Model(init, apply)
