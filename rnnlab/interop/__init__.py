"""Interop with Flax linen and PyTorch: an adapter and weight converters.

    rnnlab.interop.flax    FlaxCell: any rnnlab cell as a ``flax.linen`` cell (``nn.RNN``);
                           to_flax / from_flax: params of LSTMCell, OptimizedLSTMCell, GRUCell,
                           SimpleCell
    rnnlab.interop.torch   to_torch / from_torch: the ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``
                           state_dict layout as numpy arrays, stacked and bidirectional, without
                           importing torch

The rnnlab side of every converter (G gates; D input, H hidden size):

    lstm                   w_x [D, 4H], w_h [H, 4H], b [4H]         gates i, f, g, o
    gru(reset_after=True)  w_x [D, 3H], w_h [H, 3H], b [3H], b_hn [H]   gates r, u, n
    rnn                    w_x [D, H],  w_h [H, H],  b [H]

Only these maps exist elsewhere: peephole and "fgr" LSTMs (extra params) and the reset-before
GRU (no ``b_hn``, rnnlab's default) have no Flax or PyTorch counterpart and raise ValueError.
The LSTM variants of Greff et al. that keep the vanilla params ("cifg", "nig", ...) convert
without complaint, since params alone cannot tell them apart; converting them is the caller's
mistake. This module holds the checks both converters share.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rnnlab.cells.base import Cell

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
"""Gate blocks per cell: the G of the fused [., G*H] matrices."""


def cell_name(cell: str | Cell) -> str:
    """``"lstm"``, ``"gru"`` or ``"rnn"`` from a name or a built-in ``Cell``."""
    name = cell.name if isinstance(cell, Cell) else cell
    if name not in GATES:
        raise ValueError(f"cell={name!r}: expected one of {sorted(GATES)} (a name or that Cell)")
    return name


def expect(tree: Mapping[str, Any], key: str, shape: tuple[int | None, ...], where: str) -> Any:
    """``tree[key]``, checked to have ``shape`` (None matches any size).

    Raises:
        ValueError: naming ``where`` + ``key`` and the expected shape, if the key is missing or
            the array has another shape.
    """
    expected = "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"
    if not isinstance(tree, Mapping):
        raise ValueError(f"{where}: expected a dict holding {key!r}, got {type(tree).__name__}")
    if key not in tree:
        raise ValueError(
            f"{where}: missing key {key!r} (expected shape {expected}); has {sorted(tree)}"
        )
    value = tree[key]
    got = tuple(np.shape(value))
    if len(got) != len(shape) or any(
        s is not None and s != g for s, g in zip(shape, got, strict=True)
    ):
        raise ValueError(f"{where}[{key!r}]: expected shape {expected}, got {list(got)}")
    return value


def check_params(params: Mapping[str, Any], cell: str, where: str = "params") -> tuple[int, int]:
    """Checks one layer of rnnlab ``cell`` params for conversion; returns (D, H).

    Raises:
        ValueError: on a missing key or a wrong shape (naming the key and the expected shape), on
            a reset-before GRU, and on params the other side has no place for (e.g. peepholes).
    """
    G = GATES[cell]
    if not isinstance(params, Mapping):
        raise ValueError(f"{where}: expected a dict of {cell} params, got {type(params).__name__}")
    if cell == "gru" and "b_hn" not in params and "w_h" in params:
        raise ValueError(
            f"{where}: a reset-before GRU (rnnlab's default, gru(reset_after=False), no 'b_hn') "
            "cannot be represented in Flax or PyTorch, whose GRUs reset after the recurrent "
            "matmul; use rnnlab.cells.gru(reset_after=True)"
        )
    D = np.shape(expect(params, "w_x", (None, None), where))[0]
    H = np.shape(expect(params, "w_h", (None, None), where))[0]
    expect(params, "w_x", (D, G * H), where)
    expect(params, "w_h", (H, G * H), where)
    expect(params, "b", (G * H,), where)
    known = {"w_x", "w_h", "b"}
    if cell == "gru":
        expect(params, "b_hn", (H,), where)
        known.add("b_hn")
    extra = sorted(set(params) - known)
    if extra:
        raise ValueError(
            f"{where}: {cell} params {extra} have no counterpart in Flax or PyTorch (peepholes, "
            f"the 'fgr' gate recurrence or a user's extra params); expected only {sorted(known)}"
        )
    return D, H


from rnnlab.interop import flax, torch  # noqa: E402  (they import the helpers above)

__all__ = ["GATES", "cell_name", "check_params", "expect", "flax", "torch"]
