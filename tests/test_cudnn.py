"""rnnlab's stacked bidirectional LSTM against JAX's LSTM in cuDNN's weight layout.

``jax.experimental.rnn`` holds JAX's cuDNN LSTM (``lstm``, GPU only) and a reference
implementation of the same function in plain JAX (``lstm_ref``, any backend). Both take PyTorch's
gate order and two biases per gate, so ``rnnlab.interop.torch.from_torch`` reads their weights.
The translation encoder's network (2 layers, bidirectional, padded sequences with ``lengths``)
must compute the same outputs and input gradients on the real steps as the reference everywhere,
and as cuDNN where JAX has a GPU (that case is skipped on the CPU).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import rnn as jrnn

import rnnlab
from rnnlab.interop import torch as rtorch

B, T, D, H, LAYERS = 3, 7, 5, 4, 2
LENGTHS = np.array([7, 4, 1], np.int32)  # full, padded, a single real step
ON_GPU = jax.default_backend() == "gpu"


def _state_dict(weights) -> dict[str, np.ndarray]:
    """cuDNN's flat weights as an nn.LSTM state_dict (pseudo-layer 2k + d: layer k, direction d)."""
    w_ih, w_hh, b_ih, b_hh = jrnn.unpack_lstm_weights(weights, D, H, LAYERS, True)
    sd = {}
    for k in range(LAYERS):
        for d, suffix in enumerate(("", "_reverse")):
            i = 2 * k + d
            sd[f"weight_ih_l{k}{suffix}"] = np.asarray(w_ih[i])
            sd[f"weight_hh_l{k}{suffix}"] = np.asarray(w_hh[i])
            sd[f"bias_ih_l{k}{suffix}"] = np.asarray(b_ih[i])
            sd[f"bias_hh_l{k}{suffix}"] = np.asarray(b_hh[i])
    return sd


def _mask():
    return (np.arange(T)[None, :] < LENGTHS[:, None])[..., None]  # [B, T, 1]


def _masked_loss(run):
    """xs -> (sum over the real steps of ys * a fixed random tensor, ys)."""
    probe = jax.random.normal(jax.random.key(2), (B, T, 2 * H))

    def loss(xs):
        ys = run(xs)
        return jnp.sum(jnp.where(_mask(), ys * probe, 0.0)), ys

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


def _peer(kind: str, weights):
    zeros = jnp.zeros((LAYERS * 2, B, H))
    lengths = jnp.asarray(LENGTHS)
    if kind == "cudnn":
        return lambda xs: jrnn.lstm(
            xs, zeros, zeros, weights, lengths, input_size=D, hidden_size=H,
            num_layers=LAYERS, dropout=0.0, bidirectional=True, precision="highest",
        )[0]  # fmt: skip
    w_ih, w_hh, b_ih, b_hh = jrnn.unpack_lstm_weights(weights, D, H, LAYERS, True)
    return lambda xs: jrnn.lstm_ref(
        xs, zeros, zeros, w_ih, w_hh, b_ih, b_hh, lengths, input_size=D, hidden_size=H,
        num_layers=LAYERS, dropout=0.0, bidirectional=True,
    )[0]  # fmt: skip


@pytest.mark.parametrize(
    "kind",
    [
        "reference",
        pytest.param("cudnn", marks=pytest.mark.skipif(not ON_GPU, reason="cuDNN needs a GPU")),
    ],
)
def test_stacked_bidirectional_lstm_matches_jax_lstm(kind):
    weights = jrnn.init_lstm_weight(jax.random.key(0), D, H, LAYERS, True)
    layers = rtorch.from_torch(_state_dict(weights), "lstm")
    cell = rnnlab.cells.lstm()
    xs = jax.random.normal(jax.random.key(1), (B, T, D))
    lengths = jnp.asarray(LENGTHS)

    def ours(xs):
        return rnnlab.stack(cell, layers, xs, lengths=lengths, bidirectional=True)[1]

    with jax.default_matmul_precision("highest"):  # float32 matmuls, not TF32 on a GPU
        (_, ys), dxs = _masked_loss(ours)(xs)
        (_, ys_peer), dxs_peer = _masked_loss(_peer(kind, weights))(xs)
    mask = _mask()
    np.testing.assert_allclose(
        np.where(mask, ys, 0.0), np.where(mask, ys_peer, 0.0), rtol=1e-5, atol=1e-5
    )
    assert float(jnp.max(jnp.abs(dxs))) > 1e-3  # the gradient reaches the inputs
    np.testing.assert_allclose(dxs, dxs_peer, rtol=1e-5, atol=1e-5)
