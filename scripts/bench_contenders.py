"""The contenders of scripts/bench_cells.py: each ``*_step`` returns a function that runs one
training step (forward + backward w.r.t. the params of mean(ys^2)) and blocks until it is done.

rnnlab and Flax can run data parallel over several CPU devices (``devices``); the peers that are
not installed (the optional ``bench`` extra) are None in ``PEERS``. ``cudnn`` (JAX's cuDNN LSTM,
``jax.experimental.rnn``) runs only where JAX's default backend is a GPU (``usable_peers``), and
torch runs on that GPU too when it sees one (``torch_device``). The module docstring of
bench_cells.py describes each contender.
"""

from __future__ import annotations

import functools
import os

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import cells, recurrent
from rnnlab.train import parallel

try:
    from jax.experimental import rnn as cudnn_rnn  # JAX's cuDNN LSTM
except ImportError:  # an experimental module: it may move
    cudnn_rnn = None
try:
    import torch
except ImportError:  # the optional `bench` extra
    torch = None
try:
    import equinox as eqx
except ImportError:
    eqx = None
try:
    os.environ["KERAS_BACKEND"] = "jax"  # read once, at keras' import
    import keras
except ImportError:
    keras = None

ENCODER = "bilstm2"
# rnnlab cell per benchmark name. "gru" is the reset-after form, the equations of Flax's GRUCell
# and PyTorch's nn.GRU; "gru_paper" (Cho et al.'s reset-before form, rnnlab's default gru, two
# dependent matmuls per step) can be timed on request against the same contenders.
CELLS = {
    "lstm": ("lstm", {}),
    "gru": ("gru", {"reset_after": True}),
    "gru_paper": ("gru", {"reset_after": False}),
    ENCODER: ("lstm", {}),
}
PEERS = {"flax": flax, "torch": torch, "equinox": eqx, "keras": keras, "cudnn": cudnn_rnn}
# None above: not installed. Peers that run some cells only (the others have no such layer):
CELL_PEERS = {"cudnn": ("lstm", ENCODER)}
ENCODER_PEERS = ("flax", "torch", "cudnn")


def on_gpu() -> bool:
    """Whether JAX's default backend is a GPU (this starts JAX's backends)."""
    return jax.default_backend() == "gpu"


def usable_peers(requested=None) -> list[str]:
    """The peers to time: ``requested``, else every installed one; cudnn only on a GPU."""
    if requested is not None:
        return list(requested)
    return [k for k, v in PEERS.items() if v is not None and (k != "cudnn" or on_gpu())]


def runs(peer: str, name: str) -> bool:
    """Whether ``peer`` has a layer for the benchmark cell ``name``."""
    if name == ENCODER and peer not in ENCODER_PEERS:
        return False
    return name in CELL_PEERS.get(peer, (name,))


def torch_device() -> str:
    """The torch device: cuda where JAX runs on a GPU and torch sees one (the same chip)."""
    return "cuda" if on_gpu() and torch.cuda.is_available() else "cpu"


def _mean_square(ys):
    return jnp.mean(ys * ys)


def _masked_mean_square(ys, lengths):
    """Mean of ys^2 over the real steps only. ys: [B, T, F], lengths: [B]."""
    mask = recurrent.mask_from_lengths(lengths, ys.shape[1])[..., None]  # [B, T, 1]
    return jnp.sum(jnp.where(mask, ys * ys, 0.0)) / (jnp.sum(lengths) * ys.shape[-1])


def encoder_lengths(B: int, T: int) -> np.ndarray:
    """[B] lengths drawn uniformly from [T/2, T], the same for every contender."""
    return np.random.default_rng(0).integers(max(1, T // 2), T + 1, size=B)


def _inputs(B, T, D):
    return jax.random.normal(jax.random.key(1), (B, T, D))


# --- the contenders: each returns a function that runs one training step ---------------------


def _step(loss, params, xs, devices: int = 1):
    """One training step: jit(grad(loss))(params, xs) on one device, or data parallel.

    With ``devices`` > 1 the batch is split over the process's first ``devices`` CPU devices and
    the gradients averaged, as rnnlab's training loop does it (``parallel.data_parallel_grad``):
    the same step on all cores, one device (one thread of XLA's) per core.
    """
    if devices == 1:
        grad = jax.jit(jax.grad(loss))
        return lambda: jax.block_until_ready(grad(params, xs))
    mesh = parallel.make_mesh(jax.devices()[:devices])
    parallel.check_batch_size(xs.shape[0], mesh, "B")
    grad_fn = jax.jit(parallel.data_parallel_grad(lambda p, x, key: (loss(p, x), {}), mesh))
    params = jax.device_put(params, parallel.replicated(mesh))
    xs, key = jax.device_put(xs, parallel.batch_sharding(mesh)), jax.random.key(0)
    return lambda: jax.block_until_ready(grad_fn(params, xs, key))


def rnnlab_step(name: str, B, T, D, H, lengths=None, fused: bool = True, devices: int = 1):
    cell = cells.get(CELLS[name][0], **CELLS[name][1])
    if not fused:
        cell = cell.replace(scan=None)  # plain lax.scan over step, differentiated by autodiff
    xs = _inputs(B, T, D)
    if name == ENCODER:  # as rnnlab/models/seq2seq.py's encoder
        params = recurrent.init_stack(cell, jax.random.key(0), D, H, 2, bidirectional=True)
        lengths = jnp.asarray(lengths)

        def loss(params, xs):
            ys = recurrent.stack(cell, params, xs, lengths=lengths, bidirectional=True)[1]
            return _masked_mean_square(ys, lengths)
    else:
        params = cell.init(jax.random.key(0), D, H)

        def loss(params, xs):
            return _mean_square(recurrent.unroll(cell, params, xs)[1])

    return _step(loss, params, xs, devices)


class FlaxEncoder(nn.Module):
    """Two bidirectional LSTM layers, outputs [B, T, 2H]."""

    hidden_size: int

    @nn.compact
    def __call__(self, xs, seq_lengths):
        for _ in range(2):
            forward, backward = (nn.RNN(nn.OptimizedLSTMCell(self.hidden_size)) for _ in "fb")
            xs = nn.Bidirectional(forward, backward)(xs, seq_lengths=seq_lengths)
        return xs


def flax_step(name: str, B, T, D, H, lengths=None, devices: int = 1):
    xs = _inputs(B, T, D)
    if name == ENCODER:
        model, lengths = FlaxEncoder(H), jnp.asarray(lengths)
        variables = model.init(jax.random.key(0), xs, lengths)

        def loss(variables, xs):
            return _masked_mean_square(model.apply(variables, xs, lengths), lengths)
    else:
        model = nn.RNN((nn.OptimizedLSTMCell if name == "lstm" else nn.GRUCell)(features=H))
        variables = model.init(jax.random.key(0), xs)

        def loss(variables, xs):
            return _mean_square(model.apply(variables, xs))

    return _step(loss, variables, xs, devices)


def torch_step(name: str, B, T, D, H, lengths=None):
    device = torch_device()
    torch.manual_seed(0)
    xs = torch.randn(B, T, D, device=device)
    if name == ENCODER:
        model = torch.nn.LSTM(D, H, num_layers=2, bidirectional=True, batch_first=True)
        model.to(device)
        lengths = torch.as_tensor(lengths)  # on the CPU, as pack_padded_sequence wants them
        pack = torch.nn.utils.rnn.pack_padded_sequence

        def loss():
            packed = pack(xs, lengths, batch_first=True, enforce_sorted=False)
            return model(packed)[0].data.pow(2).mean()  # .data: [sum(lengths), 2H], real steps
    else:
        model = (torch.nn.LSTM if name == "lstm" else torch.nn.GRU)(D, H, batch_first=True)
        model.to(device)

        def loss():
            return model(xs)[0].pow(2).mean()

    def step():
        for p in model.parameters():
            p.grad = None
        loss().backward()
        if device == "cuda":
            torch.cuda.synchronize()  # CUDA calls return before the GPU is done

    return step


def equinox_step(name: str, B, T, D, H, lengths=None):
    lstm = name == "lstm"
    cell = (eqx.nn.LSTMCell if lstm else eqx.nn.GRUCell)(D, H, key=jax.random.key(0))

    def run(cell, xs):  # one sequence, [T, D] -> [T, H]: Equinox cells are unbatched
        def body(carry, x):
            carry = cell(x, carry)
            return carry, (carry[0] if lstm else carry)

        zeros = jnp.zeros(H)
        return jax.lax.scan(body, (zeros, zeros) if lstm else zeros, xs)[1]

    def loss(cell, xs):
        return _mean_square(jax.vmap(run, in_axes=(None, 0))(cell, xs))

    grad = eqx.filter_jit(eqx.filter_grad(loss))
    xs = _inputs(B, T, D)
    return lambda: jax.block_until_ready(grad(cell, xs))


def keras_step(name: str, B, T, D, H, lengths=None):
    layer = (keras.layers.LSTM if name == "lstm" else keras.layers.GRU)(H, return_sequences=True)
    model = keras.Sequential([keras.Input((T, D)), layer])
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss(trainable, non_trainable, xs):
        ys, non_trainable = model.stateless_call(trainable, non_trainable, xs, training=True)
        return _mean_square(ys), non_trainable

    grad = jax.jit(jax.grad(loss, has_aux=True))
    xs = _inputs(B, T, D)
    return lambda: jax.block_until_ready(grad(trainable, non_trainable, xs))


def cudnn_step(name: str, B, T, D, H, lengths=None):
    """JAX's cuDNN LSTM (``jax.experimental.rnn.lstm``, GPU only): one flat weight vector in
    cuDNN's layout, batch-first inputs, ``seq_lengths`` for the encoder's padding."""
    if not on_gpu():
        raise RuntimeError("cudnn needs JAX on a GPU (jax.experimental.rnn runs on cuDNN only)")
    encoder = name == ENCODER
    layers, directions = (2, 2) if encoder else (1, 1)
    weights = cudnn_rnn.init_lstm_weight(jax.random.key(0), D, H, layers, encoder)
    xs = _inputs(B, T, D)
    zeros = jnp.zeros((layers * directions, B, H))
    seq_lengths = jnp.asarray(lengths if encoder else np.full(B, T), jnp.int32)
    run = functools.partial(
        cudnn_rnn.lstm,
        input_size=D,
        hidden_size=H,
        num_layers=layers,
        dropout=0.0,
        bidirectional=encoder,
    )

    def loss(weights, xs):
        ys = run(xs, zeros, zeros, weights, seq_lengths)[0]
        return _masked_mean_square(ys, seq_lengths) if encoder else _mean_square(ys)

    return _step(loss, weights, xs)


STEPS = {
    "flax": flax_step,
    "torch": torch_step,
    "equinox": equinox_step,
    "keras": keras_step,
    "cudnn": cudnn_step,
}
