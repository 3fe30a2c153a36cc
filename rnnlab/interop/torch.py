"""PyTorch's ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` weights as rnnlab params, and back.

Reads and writes the state_dict layout with plain numpy arrays; torch itself is never imported.
Layer k (``_reverse`` marks the backward direction of a bidirectional layer), G gates, D_k the
layer's input size (D for k = 0, H or 2H above):

    weight_ih_l{k}[_reverse]  [G*H, D_k]    rnnlab w_x [D_k, G*H] is its transpose
    weight_hh_l{k}[_reverse]  [G*H, H]      rnnlab w_h [H, G*H] is its transpose
    bias_ih_l{k}[_reverse]    [G*H]
    bias_hh_l{k}[_reverse]    [G*H]

Gate order: LSTM i, f, g, o and GRU r, z, n, both as rnnlab's (z is rnnlab's u); nn.RNN has one
block (its ``nonlinearity`` "tanh" or "relu" is not in the state_dict: match ``rnn``'s
``activation_fn`` yourself).

PyTorch carries two biases per gate where rnnlab carries one, so reading sums them and writing
puts rnnlab's bias on the input side, zeros on the hidden side:

    lstm, rnn   b = bias_ih + bias_hh                     bias_ih = b, bias_hh = 0
    gru         n = tanh(W_in x + b_in + r * (W_hn h + b_hn)): reset after the recurrent matmul,
                so it is rnnlab's gru(reset_after=True):
                b = bias_ih + [bias_hh_r, bias_hh_z, 0]   bias_ih = b
                b_hn = bias_hh_n                          bias_hh = [0, 0, b_hn]

Reading then writing gives weights that compute the same function, not the same state_dict;
writing then reading returns the same params exactly. Modules built with ``bias=False`` read as
zero biases. Not representable: rnnlab's default reset-before GRU, LSTM peepholes and "fgr", and
PyTorch's ``proj_size`` LSTM (``weight_hr_l{k}``); each raises ValueError.

Layers map to the list of ``rnnlab.init_stack`` (a dict {"forward", "backward"} per layer when
bidirectional), so ``rnnlab.stack(cell, from_torch(sd, "lstm"), xs, bidirectional=...)`` runs
the PyTorch module's network, batch-major. Final carries: PyTorch's h_n (and c_n)
[num_layers * directions, B, H], layer-major, forward before backward; see ``carries_to_torch``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from rnnlab.cells.base import Carry, Cell, Params
from rnnlab.interop import GATES, cell_name, check_params, expect

_KEY_PATTERN = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?$")
_DIRECTIONS = {"": "forward", "_reverse": "backward"}


def from_torch(
    state_dict: Mapping[str, Any], cell: str | Cell, *, prefix: str = ""
) -> list[Params]:
    """A PyTorch ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` state_dict -> rnnlab stacked params.

    Args:
        state_dict: name -> array (numpy, or CPU torch tensors, which numpy reads), in the layout
            of the module docstring. ``num_layers`` and ``bidirectional`` are read from the keys.
        cell: ``"lstm"``, ``"gru"``, ``"rnn"`` or that ``Cell``; the gate count is checked
            against the shapes.
        prefix: read only the keys starting with it (e.g. ``"encoder.rnn."`` in a whole model's
            state_dict); every other key must belong to the recurrent module.

    Returns:
        One params dict per layer, as ``rnnlab.init_stack`` (``{"forward": p, "backward": p}``
        per layer if bidirectional); GRU params are for ``gru(reset_after=True)``.

    Raises:
        ValueError: on a missing or unknown key, a wrong shape (naming the key and the expected
            shape), a ``proj_size`` LSTM, or layers/directions that are not all present.
    """
    name = cell_name(cell)
    G = GATES[name]
    where = f"torch {name} state_dict"
    sd = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    layers, suffixes, has_bias = _parse_keys(sd, where, prefix)
    H = np.shape(expect(sd, "weight_hh_l0", (None, None), where))[1]
    D = np.shape(expect(sd, "weight_ih_l0", (G * H, None), where))[1]
    out = []
    for k in range(layers):
        D_k = D if k == 0 else H * len(suffixes)
        directions = {}
        for suffix in suffixes:
            tag = f"_l{k}{suffix}"
            w_ih = np.asarray(expect(sd, "weight_ih" + tag, (G * H, D_k), where))
            w_hh = np.asarray(expect(sd, "weight_hh" + tag, (G * H, H), where))
            if has_bias:
                b_ih = np.asarray(expect(sd, "bias_ih" + tag, (G * H,), where))
                b_hh = np.asarray(expect(sd, "bias_hh" + tag, (G * H,), where))
            else:
                b_ih = b_hh = np.zeros(G * H, w_ih.dtype)
            p = {"w_x": jnp.asarray(w_ih.T), "w_h": jnp.asarray(w_hh.T)}  # [D_k, GH], [H, GH]
            if name == "gru":
                # bias_hh's n part sits inside r * (...): it cannot be summed into b.
                p["b"] = jnp.asarray(
                    b_ih + np.concatenate([b_hh[: 2 * H], np.zeros_like(b_ih[:H])])
                )
                p["b_hn"] = jnp.asarray(b_hh[2 * H :])
            else:
                p["b"] = jnp.asarray(b_ih + b_hh)
            directions[_DIRECTIONS[suffix]] = p
        out.append(directions if len(suffixes) == 2 else directions["forward"])
    return out


def _parse_keys(sd: Mapping[str, Any], where: str, prefix: str) -> tuple[int, list[str], bool]:
    """(num_layers, direction suffixes, whether biases exist), checking every key is known."""
    found = set()
    for key in sd:
        match = _KEY_PATTERN.match(key)
        if match is None:
            if key.startswith("weight_hr_l"):
                raise ValueError(
                    f"{where}: {prefix + key!r} is the projection of an LSTM with proj_size > 0, "
                    "which rnnlab's lstm does not have"
                )
            raise ValueError(
                f"{where}: unknown key {prefix + key!r}; expected weight_ih_l{{k}}, "
                "weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, each optionally with _reverse"
            )
        found.add((match[1], int(match[2]), match[3] or ""))
    if not found:
        raise ValueError(f"{where}: no keys{f' with prefix {prefix!r}' if prefix else ''}")
    layers = 1 + max(k for _, k, _ in found)
    suffixes = ["", "_reverse"] if any(s for _, _, s in found) else [""]
    has_bias = any(kind.startswith("bias") for kind, _, _ in found)
    kinds = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if has_bias else [])
    missing = [
        f"{prefix}{kind}_l{k}{s}"
        for k in range(layers)
        for s in suffixes
        for kind in kinds
        if (kind, k, s) not in found
    ]
    if missing:
        raise ValueError(
            f"{where}: missing keys {missing} ({layers} layers, "
            f"{'bidirectional' if len(suffixes) == 2 else 'one direction'}, "
            f"{'with' if has_bias else 'without'} biases, read from the keys present)"
        )
    return layers, suffixes, has_bias


def to_torch(layers: Params | Sequence[Params], cell: str | Cell) -> dict[str, np.ndarray]:
    """rnnlab params -> a PyTorch ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` state_dict of numpy arrays.

    Load it with ``module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``
    into a module built with ``input_size=D, hidden_size=H, num_layers=len(layers),
    bidirectional=..., batch_first=True`` (and ``bias=True``, the default).

    Args:
        layers: the list of ``rnnlab.init_stack`` (each layer ``{"forward", "backward"}`` if
            bidirectional), or one layer's params.
        cell: ``"lstm"``, ``"gru"``, ``"rnn"`` or that ``Cell``.

    Returns:
        name -> numpy array in the layout of the module docstring, in PyTorch's key order.

    Raises:
        ValueError: for a reset-before GRU, params PyTorch has no place for, a missing key, a
            wrong shape, or layer sizes PyTorch cannot stack (a layer's input must be the
            previous layer's output, H or 2H).
    """
    name = cell_name(cell)
    if isinstance(layers, Mapping):
        layers = [layers]
    bidirectional = all(isinstance(p, Mapping) and "forward" in p for p in layers)
    out = {}
    H = None
    for k, layer in enumerate(layers):
        if bidirectional:
            if "backward" not in layer:
                raise ValueError(f"layers[{k}]: missing key 'backward' (has {sorted(layer)})")
            directions = [("", layer["forward"], "['forward']")]
            directions.append(("_reverse", layer["backward"], "['backward']"))
        else:
            directions = [("", layer, "")]
        for suffix, p, label in directions:
            where = f"layers[{k}]{label}"
            if not bidirectional and isinstance(p, Mapping) and "forward" in p:
                raise ValueError(f"{where}: bidirectional, but not every layer is")
            D_k, H_k = check_params(p, name, where)
            if H is None:
                H = H_k
            expected_D = D_k if k == 0 else H * (2 if bidirectional else 1)
            if H_k != H or D_k != expected_D:
                raise ValueError(
                    f"{where}: expected w_x [{expected_D}, {GATES[name] * H}] and hidden size "
                    f"{H} as PyTorch stacks layers, got w_x {list(np.shape(p['w_x']))}"
                )
            w_x, w_h, b = (np.asarray(p[key]) for key in ("w_x", "w_h", "b"))
            b_hh = np.zeros_like(b)
            if name == "gru":
                b_hh[2 * H :] = np.asarray(p["b_hn"])
            tag = f"_l{k}{suffix}"
            # Fresh, writable, C-ordered copies: torch.from_numpy warns on read-only arrays.
            out["weight_ih" + tag] = np.array(w_x.T, order="C")  # [G*H, D_k]
            out["weight_hh" + tag] = np.array(w_h.T, order="C")  # [G*H, H]
            out["bias_ih" + tag] = b.copy()
            out["bias_hh" + tag] = b_hh
    return out


def carries_to_torch(
    carries: Sequence[Carry], cell: str | Cell, *, bidirectional: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """``rnnlab.stack``'s final carries -> PyTorch's h_n, or (h_n, c_n) for the LSTM.

    Args:
        carries: one carry per layer (a (forward, backward) pair if ``bidirectional``); an LSTM
            carry is (h, c), each [B, H].
        cell: ``"lstm"``, ``"gru"``, ``"rnn"`` or that ``Cell``.
        bidirectional: whether each layer's carry is a (forward, backward) pair.

    Returns:
        h_n [num_layers * directions, B, H], layer-major, forward before backward; for the LSTM
        the pair (h_n, c_n).
    """
    name = cell_name(cell)
    flat = [c for pair in carries for c in pair] if bidirectional else list(carries)
    if name == "lstm":
        h_n = np.stack([np.asarray(h) for h, _ in flat])  # [L * directions, B, H]
        c_n = np.stack([np.asarray(c) for _, c in flat])
        return h_n, c_n
    return np.stack([np.asarray(h) for h in flat])


def carries_from_torch(state: Any, cell: str | Cell, *, bidirectional: bool = False) -> list[Carry]:
    """PyTorch's h_0 (or (h_0, c_0) for the LSTM) -> ``carries`` for ``rnnlab.stack``.

    Args:
        state: h_0 [num_layers * directions, B, H], or the pair (h_0, c_0) for the LSTM.
        cell: ``"lstm"``, ``"gru"``, ``"rnn"`` or that ``Cell``.
        bidirectional: whether the module is bidirectional (two entries per layer).

    Returns:
        One carry per layer, a (forward, backward) pair per layer if ``bidirectional``.
    """
    name = cell_name(cell)
    parts = [np.asarray(a) for a in state] if name == "lstm" else [np.asarray(state)]
    for i, a in enumerate(parts):
        label = ("h_0", "c_0")[i] if name == "lstm" else "h_0"
        if a.ndim != 3 or a.shape != parts[0].shape or a.shape[0] % (1 + bidirectional):
            raise ValueError(
                f"{label}: expected shape [num_layers * {1 + bidirectional}, batch, hidden], "
                f"the same for h_0 and c_0, got {list(a.shape)}"
            )
    if name == "lstm":
        flat = [(jnp.asarray(h), jnp.asarray(c)) for h, c in zip(*parts, strict=True)]
    else:
        flat = [jnp.asarray(h) for h in parts[0]]
    if bidirectional:
        return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
    return flat
