"""rnnlab: recurrent neural networks in JAX, as pure functions.

import rnnlab
cell = rnnlab.cells.get("lstm")
params = cell.init(jax.random.key(0), input_size, hidden_size)
final_carry, outputs = rnnlab.unroll(cell, params, xs, lengths=lengths)   # xs: [B, T, D]
"""

from rnnlab import attention, cells
from rnnlab.cells import Cell
from rnnlab.recurrent import (
    bidirectional,
    init_bidirectional,
    init_stack,
    mask_from_lengths,
    reverse_padded,
    stack,
    tbptt,
    unroll,
)

__version__ = "0.1.0"

__all__ = [
    "Cell",
    "attention",
    "bidirectional",
    "cells",
    "init_bidirectional",
    "init_stack",
    "mask_from_lengths",
    "reverse_padded",
    "stack",
    "tbptt",
    "unroll",
]
