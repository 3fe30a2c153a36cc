"""rnnlab cells inside Flax linen, and params converted to and from Flax's own cells.

``FlaxCell(cell, hidden_size)`` is a ``flax.linen`` recurrent cell (``nn.RNNCellBase``) that runs
any rnnlab cell, built-in or a user's, so ``nn.RNN(FlaxCell(...))`` and ``nn.Bidirectional``
take it. Its variables are the cell's own params under the cell's own names, drawn by the
cell's ``init``: ``{"params": {"w_x": ..., "w_h": ..., "b": ...}}`` (inside ``nn.RNN`` they sit
under ``"cell"``), so ``rnnlab.unroll(cell, variables["params"]["cell"], xs)`` runs the same
network.

``to_flax(params, cell)`` / ``from_flax(flax_params, cell)`` map one layer of rnnlab params to
and from the param dict of ``nn.LSTMCell`` / ``nn.OptimizedLSTMCell`` (one layout), ``nn.GRUCell``
and ``nn.SimpleCell`` (what ``cell.init(...)["params"]`` holds; a ``{"params": ...}`` wrapper is
accepted too). Every Flax Dense here is ``x @ kernel (+ bias)``, kernel [in, out], the same
orientation as rnnlab's, so kernels are column blocks of rnnlab's fused matrices:

    rnnlab                     Flax linen
    lstm                       LSTMCell, OptimizedLSTMCell (gates i, f, g, o in both)
      w_x [D, 4H]                ii, if, ig, io: kernel [D, H], no bias
      w_h [H, 4H]                hi, hf, hg, ho: kernel [H, H], bias [H]
      b [4H]                     the h* biases (Flax's input side has none)
      carry (h, c)               carry (c, h): the order is swapped
    gru(reset_after=True)      GRUCell (gates r, z, n; rnnlab calls z "u")
      w_x [D, 3H]                ir, iz, in: kernel [D, H], bias [H]
      w_h [H, 3H]                hr, hz: kernel [H, H], no bias; hn: kernel [H, H], bias [H]
      b [3H]                     the ir, iz, in biases
      b_hn [H]                   the hn bias
    rnn                        SimpleCell
      w_x [D, H], b [H]          i: kernel [D, H], bias [H]
      w_h [H, H]                 h: kernel [H, H], no bias

Both sides carry exactly one bias per gate pre-activation (plus the candidate's hidden-side
bias of the reset-after GRU), so every map is exact both ways and a round trip returns the same
arrays. What cannot map: rnnlab's default reset-before GRU (Flax's GRUCell resets after the
recurrent matmul), LSTM peepholes and the "fgr" variant (no Flax params for them), and any Flax
cell with non-default ``gate_fn`` / ``activation_fn`` or ``SimpleCell(residual=True)``: their
params look the same, so keep the functions in step yourself (``rnn(activation_fn="relu")`` is
``SimpleCell(activation_fn=nn.relu)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.cells.base import Carry, Cell, Params
from rnnlab.interop import cell_name, check_params, expect

# Flax's submodule names per gate, in rnnlab's gate order.
_FLAX_GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "rnn": ("",)}


# --- the adapter -------------------------------------------------------------------------------


def _reshape_batch(carry: Carry, batch_dims: int, batch_shape: tuple[int, ...]) -> Carry:
    """Replaces the leading ``batch_dims`` axes of every carry leaf by ``batch_shape``."""
    return jax.tree.map(lambda c: c.reshape(batch_shape + c.shape[batch_dims:]), carry)


class FlaxCell(nn.RNNCellBase):
    """Any rnnlab ``Cell`` as a ``flax.linen`` recurrent cell.

    Attributes:
        cell: the rnnlab cell.
        hidden_size: H, passed to the cell's ``init`` and ``initial_carry``.

    Inputs may have several batch axes ([..., D]); the cell sees them flattened to one.
    """

    cell: Cell
    hidden_size: int

    @nn.compact
    def __call__(self, carry: Carry, x: jax.Array) -> tuple[Carry, jax.Array]:
        """One step.

        Args:
            carry: the cell's carry, leaves [..., *] with the batch axes of ``x`` in front.
            x: [..., D].

        Returns:
            (new carry, output [..., H]).
        """
        batch_shape, D = x.shape[:-1], x.shape[-1]
        params = self._params(D)
        B = math.prod(batch_shape)
        flat_carry = _reshape_batch(carry, len(batch_shape), (B,))
        flat_carry, y = self.cell.apply(params, flat_carry, x.reshape(B, D))  # y: [B, H]
        carry = _reshape_batch(flat_carry, 1, batch_shape)
        return carry, y.reshape(batch_shape + y.shape[1:])

    def _params(self, input_size: int) -> Params:
        """The cell's params as Flax variables, one per top-level name, from one ``init`` call."""
        # Only the names and shapes: eval_shape traces init without running it.
        names = jax.eval_shape(
            lambda: self.cell.init(jax.random.key(0), input_size, self.hidden_size)
        )
        if not isinstance(names, Mapping):
            raise TypeError(
                f"FlaxCell: cell {self.cell.name!r} returns params of type "
                f"{type(names).__name__}; Flax variables need a dict of named params"
            )
        drawn = {}

        def init(key, name):
            # The first param's key draws them all, so the values are one draw of cell.init.
            if not drawn:
                drawn.update(self.cell.init(key, input_size, self.hidden_size))
            return drawn[name]

        return {name: self.param(name, init, name) for name in names}

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> Carry:
        """The cell's zero carry for inputs of shape ``input_shape`` ([..., D]); ``rng`` unused."""
        del rng  # rnnlab's initial_carry is deterministic.
        batch_shape = tuple(input_shape[:-1])
        carry = self.cell.initial_carry(math.prod(batch_shape), self.hidden_size)
        return _reshape_batch(carry, 1, batch_shape)

    @property
    def num_feature_axes(self) -> int:
        return 1


# --- converters ----------------------------------------------------------------------------------


def to_flax(params: Params, cell: str | Cell) -> dict[str, dict[str, jax.Array]]:
    """One layer of rnnlab params -> the param dict of the matching Flax linen cell.

    Args:
        params: rnnlab ``lstm``, ``gru(reset_after=True)`` or ``rnn`` params (module docstring).
        cell: ``"lstm"``, ``"gru"``, ``"rnn"`` or that ``Cell``.

    Returns:
        ``{"ii": {"kernel": [D, H]}, "hi": {"kernel": [H, H], "bias": [H]}, ...}``: use as
        ``flax_cell.apply({"params": out}, carry, x)``, or under ``"cell"`` for ``nn.RNN``.

    Raises:
        ValueError: for a reset-before GRU, params Flax has no place for, a missing key or a
            wrong shape (naming the key and the expected shape).
    """
    name = cell_name(cell)
    _, H = check_params(params, name)
    out = {}
    for k, gate in enumerate(_FLAX_GATES[name]):
        cols = slice(k * H, (k + 1) * H)
        x_side = {"kernel": jnp.asarray(params["w_x"][:, cols])}
        h_side = {"kernel": jnp.asarray(params["w_h"][:, cols])}
        if name == "lstm":
            h_side["bias"] = jnp.asarray(params["b"][cols])
        else:
            x_side["bias"] = jnp.asarray(params["b"][cols])
        if name == "gru" and gate == "n":
            h_side["bias"] = jnp.asarray(params["b_hn"])
        out["i" + gate], out["h" + gate] = x_side, h_side
    return out


def from_flax(flax_params: Mapping[str, Any], cell: str | Cell) -> Params:
    """The param dict of a Flax linen cell -> one layer of rnnlab params.

    Args:
        flax_params: the params of ``nn.LSTMCell`` / ``nn.OptimizedLSTMCell`` (``cell="lstm"``),
            ``nn.GRUCell`` (``"gru"``) or ``nn.SimpleCell`` (``"rnn"``); a ``{"params": ...}``
            wrapper is accepted.
        cell: ``"lstm"``, ``"gru"``, ``"rnn"`` or that ``Cell``.

    Returns:
        rnnlab params (module docstring): for ``rnnlab.cells.lstm()``,
        ``rnnlab.cells.gru(reset_after=True)`` or ``rnnlab.cells.rnn()``.

    Raises:
        ValueError: on a missing or unexpected submodule or param, or a wrong shape, naming the
            key and the expected shape.
    """
    name = cell_name(cell)
    if isinstance(flax_params, Mapping) and set(flax_params) == {"params"}:
        flax_params = flax_params["params"]
    gates = _FLAX_GATES[name]
    where = f"flax {name} params"
    expected = [side + g for g in gates for side in "ih"]
    for key in expected:
        _sub(flax_params, key, where)
    extra = sorted(set(flax_params) - set(expected))
    if extra:
        raise ValueError(f"{where}: unexpected submodules {extra}; expected {sorted(expected)}")
    # Sizes from the first gate; every other array is checked against them.
    H = np.shape(expect(flax_params["h" + gates[0]], "kernel", (None, None), where))[1]
    D = np.shape(expect(flax_params["i" + gates[0]], "kernel", (None, H), where))[0]
    # Which side carries each gate's bias: the hidden side for the LSTM, else the input side
    # (and the GRU's hn carries one too).
    biased = "h" if name == "lstm" else "i"
    w_x, w_h, b = [], [], []
    for gate in gates:
        for side, w, rows in (("i", w_x, D), ("h", w_h, H)):
            key = side + gate
            sub = flax_params[key]
            w.append(expect(sub, "kernel", (rows, H), f"{where}[{key!r}]"))
            has_bias = side == biased or (name == "gru" and key == "hn")
            if has_bias:
                bias = expect(sub, "bias", (H,), f"{where}[{key!r}]")
                if side == biased:
                    b.append(bias)
            unexpected = sorted(set(sub) - {"kernel"} - ({"bias"} if has_bias else set()))
            if unexpected:
                raise ValueError(
                    f"{where}[{key!r}]: unexpected params {unexpected}; expected "
                    f"{['kernel', 'bias'] if has_bias else ['kernel']}"
                )
    params = {
        "w_x": jnp.concatenate(w_x, axis=1),  # [D, G*H]
        "w_h": jnp.concatenate(w_h, axis=1),  # [H, G*H]
        "b": jnp.concatenate(b),  # [G*H]
    }
    if name == "gru":
        params["b_hn"] = jnp.asarray(flax_params["hn"]["bias"])  # [H]
    return params


def _sub(tree: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    if not isinstance(tree, Mapping) or key not in tree or not isinstance(tree[key], Mapping):
        have = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
        raise ValueError(f"{where}: missing submodule {key!r} (a dict with 'kernel'); has {have}")
    return tree[key]
