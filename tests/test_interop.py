"""rnnlab.interop: the Flax adapter, and Flax and PyTorch weights, against the real cells."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab.cells import gru, lstm, rnn
from rnnlab.interop import flax as rflax
from rnnlab.interop import torch as rtorch

B, T, D, H = 3, 7, 5, 4
TOL = dict(rtol=1e-5, atol=1e-5)

# One instance per cell, and runners jitted with the cell (or the Flax module, which hashes by
# its config) static: each compiles once per shape and is reused across tests, where an eager
# scan would recompile on every call.
LSTM, GRU, GRU_RA = lstm(), gru(), gru(reset_after=True)
RNN, RNN_RELU = rnn(), rnn(activation_fn="relu")
_unroll = jax.jit(rnnlab.unroll, static_argnums=0)
_stack = jax.jit(rnnlab.stack, static_argnums=0, static_argnames=("bidirectional",))


_apply = jax.jit(
    lambda model, variables, xs, **kw: model.apply(variables, xs, **kw), static_argnums=0
)


def _init_cell(flax_cell, key=0):
    """A Flax cell's params from one step (no scan to compile)."""
    x = _xs(shape=(B, D))
    carry = flax_cell.initialize_carry(jax.random.key(key), x.shape)
    return flax_cell.init(jax.random.key(key), carry, x)["params"]


def _xs(seed=0, shape=(B, T, D)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _params(cell, seed=1, input_size=D):
    """Random params of the cell's shapes, every bias nonzero so a misplaced bias shows.

    Drawn with numpy: the cell's own init would compile its ops eagerly for every shape.
    """
    shapes = jax.eval_shape(lambda k: cell.init(k, input_size, H), jax.random.key(0))
    rng = np.random.default_rng(seed)
    return {
        k: jnp.asarray(rng.normal(scale=0.5, size=v.shape).astype(np.float32))
        for k, v in shapes.items()
    }


def _stack_params(cell, num_layers, bidirectional, seed=2):
    layers, size = [], D
    for k in range(num_layers):
        if bidirectional:
            layer = {"forward": _params(cell, seed + 2 * k, size)}
            layer["backward"] = _params(cell, seed + 2 * k + 1, size)
        else:
            layer = _params(cell, seed + 2 * k, size)
        layers.append(layer)
        size = H * (2 if bidirectional else 1)
    return layers


def _assert_close(got, want):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), got, want)


def _assert_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --- the adapter -------------------------------------------------------------------------------


# The adapter is cell-agnostic: a tuple carry (lstm) and the reset-before GRU Flax lacks.
@pytest.mark.parametrize("cell", [LSTM, GRU], ids=["lstm", "gru"])
def test_flax_rnn_over_adapter_equals_unroll(cell):
    xs = _xs(shape=(2, B, T, D))  # two batch axes: the cell sees them flattened
    model = nn.RNN(rflax.FlaxCell(cell, H), return_carry=True)
    variables = model.init(jax.random.key(3), xs)
    params = variables["params"]["cell"]
    assert sorted(params) == sorted(_params(cell))  # rnnlab's names
    carry, ys = _apply(model, variables, xs)  # carry leaves [2, B, H], ys [2, B, T, H]
    want_carry, want_ys = _unroll(cell, params, xs.reshape(2 * B, T, D))
    flat = jax.tree.map(lambda a: a.reshape((2 * B,) + a.shape[2:]), (carry, ys))
    _assert_close(flat, (want_carry, want_ys))


def test_adapter_with_lengths_matches_unroll_on_real_steps():
    xs, lengths = _xs(), jnp.array([7, 3, 1])
    model = nn.RNN(rflax.FlaxCell(LSTM, H), return_carry=True)
    variables = {"params": {"cell": _init_cell(rflax.FlaxCell(LSTM, H))}}
    carry, ys = _apply(model, variables, xs, seq_lengths=lengths)
    want_carry, want_ys = _unroll(LSTM, variables["params"]["cell"], xs, lengths=lengths)
    real = np.asarray(rnnlab.mask_from_lengths(lengths, T))  # Flax leaves padding unmasked
    _assert_close((carry, np.asarray(ys)[real]), (want_carry, np.asarray(want_ys)[real]))


def test_adapter_params_come_from_the_cell_init():
    adapter = rflax.FlaxCell(lstm(forget_bias=2.5), H)
    x = _xs(shape=(B, D))
    params = adapter.init(jax.random.key(0), adapter.initialize_carry(None, x.shape), x)["params"]
    shapes = {k: v.shape for k, v in params.items()}
    assert shapes == {"w_x": (D, 4 * H), "w_h": (H, 4 * H), "b": (4 * H,)}
    np.testing.assert_array_equal(params["b"][H : 2 * H], 2.5)  # lstm's forget bias
    w = params["w_h"][:, :H]
    np.testing.assert_allclose(w.T @ w, np.eye(H), atol=1e-5)  # an orthogonal block, as init


# --- Flax's own cells --------------------------------------------------------------------------

FLAX_PAIRS = {
    "LSTMCell": ("lstm", LSTM, nn.LSTMCell),
    "OptimizedLSTMCell": ("lstm", LSTM, nn.OptimizedLSTMCell),
    "GRUCell": ("gru", GRU_RA, nn.GRUCell),
    "SimpleCell": ("rnn", RNN, nn.SimpleCell),
}


def _flax_run(flax_cell, cell_params, xs):
    model = nn.RNN(flax_cell, return_carry=True)
    carry, ys = _apply(model, {"params": {"cell": cell_params}}, xs)
    return (carry[1], carry[0]) if isinstance(carry, tuple) else carry, ys  # Flax LSTM: (c, h)


@pytest.mark.parametrize("flax_name", sorted(FLAX_PAIRS))
def test_flax_cells_and_rnnlab_cells_give_equal_outputs_both_ways(flax_name):
    name, cell, flax_cls = FLAX_PAIRS[flax_name]
    xs = _xs()
    # rnnlab -> Flax.
    params = _params(cell)
    fparams = rflax.to_flax(params, name)
    _assert_close(_flax_run(flax_cls(H), fparams, xs), _unroll(cell, params, xs))
    _assert_equal(rflax.from_flax(fparams, cell), params)  # the round trip is exact
    # Flax -> rnnlab, from Flax's own init with nonzero biases.
    fparams = _init_cell(flax_cls(H, bias_init=nn.initializers.normal(0.5)), key=4)
    params = rflax.from_flax({"params": fparams}, name)
    _assert_close(_flax_run(flax_cls(H), fparams, xs), _unroll(cell, params, xs))
    _assert_equal(rflax.to_flax(params, name), dict(fparams))


def test_simple_cell_relu_is_rnn_relu():
    xs, params = _xs(), _params(RNN_RELU)
    flax_cell = nn.SimpleCell(H, activation_fn=nn.relu)
    _assert_close(
        _flax_run(flax_cell, rflax.to_flax(params, "rnn"), xs), _unroll(RNN_RELU, params, xs)
    )


def test_flax_converters_name_the_key_and_the_shape():
    with pytest.raises(ValueError, match="reset-before GRU"):
        rflax.to_flax(_params(GRU), "gru")
    with pytest.raises(ValueError, match=r"\['p_f', 'p_i', 'p_o'\] have no counterpart"):
        rflax.to_flax(_params(lstm(peepholes=True)), "lstm")
    bad = dict(_params(LSTM), b=jnp.zeros(3))
    with pytest.raises(ValueError, match=rf"params\['b'\]: expected shape \[{4 * H}\], got \[3\]"):
        rflax.to_flax(bad, LSTM)
    fparams = rflax.to_flax(_params(LSTM), "lstm")
    del fparams["hg"]["bias"]
    with pytest.raises(ValueError, match=rf"\['hg'\]: missing key 'bias' \(expected shape \[{H}\]"):
        rflax.from_flax(fparams, "lstm")
    fparams = rflax.to_flax(_params(GRU_RA), "gru")
    fparams["iz"]["kernel"] = jnp.zeros((D + 1, H))
    with pytest.raises(ValueError, match=rf"\['iz'\]\['kernel'\]: expected shape \[{D}, {H}\]"):
        rflax.from_flax(fparams, "gru")
    with pytest.raises(ValueError, match="missing submodule 'hn'"):
        rflax.from_flax({k: v for k, v in fparams.items() if k != "hn"}, "gru")
    with pytest.raises(ValueError, match=r"unexpected params \['bias'\]"):
        rflax.from_flax(
            dict(fparams, hr={"kernel": jnp.zeros((H, H)), "bias": jnp.zeros(H)}), "gru"
        )
    with pytest.raises(ValueError, match="cell='mgu'"):
        rflax.to_flax(_params(RNN), "mgu")


# --- PyTorch's layout, without torch -----------------------------------------------------------


@pytest.mark.parametrize("cell", [LSTM, GRU_RA, RNN], ids=["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_torch_round_trip_is_exact(cell, bidirectional):
    layers = _stack_params(cell, 2, bidirectional)
    sd = rtorch.to_torch(layers, cell)
    G = rnnlab.interop.GATES[cell.name]
    suffix = "_reverse" if bidirectional else ""
    assert sd["weight_ih_l1" + suffix].shape == (G * H, H * (1 + bidirectional))
    assert sd["weight_hh_l0"].shape == (G * H, H) and sd["bias_hh_l1"].shape == (G * H,)
    _assert_equal(rtorch.from_torch(sd, cell.name), layers)


def test_torch_gru_biases_follow_the_reset_after_equation():
    """A numpy step of PyTorch's documented GRU equations on a converted state_dict."""
    params, x = _params(GRU_RA), _xs(shape=(B, D))
    h = _xs(5, (B, H))
    sd = rtorch.to_torch(params, GRU_RA)
    sd["bias_ih_l0"][:H] -= 0.3  # move part of b_r to the hidden side: the same function
    sd["bias_hh_l0"][:H] += 0.3
    gi = x @ sd["weight_ih_l0"].T + sd["bias_ih_l0"]  # [B, 3H]
    gh = h @ sd["weight_hh_l0"].T + sd["bias_hh_l0"]  # [B, 3H]
    r = 1 / (1 + np.exp(-(gi[:, :H] + gh[:, :H])))
    z = 1 / (1 + np.exp(-(gi[:, H : 2 * H] + gh[:, H : 2 * H])))
    n = np.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
    want = (1 - z) * n + z * h
    (back,) = rtorch.from_torch(sd, "gru")
    _assert_close(GRU_RA.apply(back, jnp.asarray(h), jnp.asarray(x))[1], want)


def test_torch_converters_name_the_key_and_the_shape():
    layers = _stack_params(LSTM, 2, True)
    sd = rtorch.to_torch(layers, "lstm")
    with pytest.raises(ValueError, match="reset-before GRU"):
        rtorch.to_torch(_params(GRU), "gru")
    with pytest.raises(ValueError, match=r"missing keys \['bias_hh_l1_reverse'\]"):
        rtorch.from_torch({k: v for k, v in sd.items() if k != "bias_hh_l1_reverse"}, "lstm")
    with pytest.raises(ValueError, match=rf"\['weight_hh_l1'\]: expected shape \[{4 * H}, {H}\]"):
        rtorch.from_torch(dict(sd, weight_hh_l1=np.zeros((4 * H, H + 1))), "lstm")
    with pytest.raises(ValueError, match=rf"\['weight_ih_l0'\]: expected shape \[{3 * H}, \?\]"):
        rtorch.from_torch(sd, "gru")  # an LSTM's state_dict read as a GRU's
    with pytest.raises(ValueError, match="proj_size"):
        rtorch.from_torch(dict(sd, weight_hr_l0=np.zeros((2, H))), "lstm")
    layers[1]["backward"]["w_h"] = jnp.zeros((H, H))
    with pytest.raises(ValueError, match=r"layers\[1\]\['backward'\]\['w_h'\]: expected shape"):
        rtorch.to_torch(layers, "lstm")
    with pytest.raises(ValueError, match=r"layers\[1\]: expected w_x \[4, 4\]"):
        rtorch.to_torch([_params(RNN), _params(RNN, input_size=H + 1)], "rnn")
    # A model's state_dict: only the prefixed keys are read; absent biases read as zeros.
    no_bias = {"enc.weight_ih_l0": sd["weight_ih_l0"], "enc.weight_hh_l0": sd["weight_hh_l0"]}
    (p,) = rtorch.from_torch(dict(no_bias, **{"dec.weight": np.zeros(2)}), "lstm", prefix="enc.")
    np.testing.assert_array_equal(p["b"], 0.0)


# --- against torch itself ----------------------------------------------------------------------

TORCH_CELLS = {
    "lstm": ("LSTM", {}, LSTM),
    "gru": ("GRU", {}, GRU_RA),
    "rnn_tanh": ("RNN", {"nonlinearity": "tanh"}, RNN),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}, RNN_RELU),
}


def _torch_module(torch, name, bidirectional):
    cls, kw, cell = TORCH_CELLS[name]
    torch.manual_seed(0)
    module = getattr(torch.nn, cls)(
        D, H, num_layers=2, bidirectional=bidirectional, batch_first=True, **kw
    )
    return module, cell


def _numpy(state):
    return jax.tree.map(lambda s: s.numpy(), state)


@pytest.mark.parametrize(
    "name, bidirectional",
    [("lstm", True), ("gru", True), ("rnn_tanh", False), ("rnn_relu", True)],
)
def test_torch_weights_in_rnnlab_stack_give_equal_outputs(name, bidirectional):
    torch = pytest.importorskip("torch")
    module, cell = _torch_module(torch, name, bidirectional)
    layers = rtorch.from_torch(module.state_dict(), cell)
    xs = _xs()
    h0 = 0.5 * _xs(6, (2, 2 * (1 + bidirectional), B, H))
    state0 = (h0[0], h0[1]) if cell.name == "lstm" else h0[0]  # nonzero initial states
    carries = rtorch.carries_from_torch(state0, cell, bidirectional=bidirectional)
    finals, ys = _stack(cell, layers, xs, carries=carries, bidirectional=bidirectional)
    with torch.no_grad():
        want_ys, want_state = module(torch.from_numpy(xs), jax.tree.map(torch.from_numpy, state0))
    got_state = rtorch.carries_to_torch(finals, cell, bidirectional=bidirectional)
    _assert_close((ys, got_state), (want_ys.numpy(), _numpy(want_state)))


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_rnnlab_weights_in_torch_packed_sequences_give_equal_outputs(name):
    torch = pytest.importorskip("torch")
    module, cell = _torch_module(torch, name, bidirectional=True)
    layers = _stack_params(cell, 2, True)
    module.load_state_dict(
        {k: torch.from_numpy(v) for k, v in rtorch.to_torch(layers, cell).items()}
    )
    xs, lengths = _xs(), np.array([7, 2, 5])
    finals, ys = _stack(cell, layers, xs, lengths=jnp.asarray(lengths), bidirectional=True)
    pack = torch.nn.utils.rnn
    with torch.no_grad():
        packed = pack.pack_padded_sequence(
            torch.from_numpy(xs), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
        )
        out, want_state = module(packed)
        want_ys, _ = pack.pad_packed_sequence(out, batch_first=True, total_length=T)
    got_state = rtorch.carries_to_torch(finals, cell, bidirectional=True)
    # Outputs are zero on padding in both.
    _assert_close((ys, got_state), (want_ys.numpy(), _numpy(want_state)))
