"""A character-level recurrent language model, as pure functions over a params dict.

    x_t = onehot(c_t)  or  E[c_t]                       # [B, D], D = V or embed_size
    h_t^l = cell(h_{t-1}^l, h_t^{l-1}),  h_t^0 = x_t    # rnnlab.stack over any Cell
    p(c_{t+1} | c_1..c_t) = softmax(h_t^L W + b)        # [B, V]

Teacher forcing: at training time the input at t + 1 is the true character c_{t+1}, whatever the
model predicted (the lecture's "hello" example: inputs h, e, l, l; targets e, l, l, o).

Training with truncated BPTT (Williams & Peng 1990) on B contiguous streams, k characters per
step (``rnnlab.data.text.StreamBatcher``): step s starts from the state the forward pass of step
s - 1 ended in, with its gradient stopped, so the forward pass sees the whole stream while
gradients reach at most k steps back. ``tbptt_loss`` is that step's loss.

Bits per character: the cross-entropy in base 2, averaged over the characters predicted,
    bpc = -(1 / M) sum_t log2 p(c_{t+1} | c_1..c_t),
evaluated over a long text in chunks with the state carried between chunks (``bits_per_char``).

Sampling (Karpathy, Johnson & Fei-Fei 2015; Graves 2013): after a prime text, draw
    c_{t+1} ~ softmax(top_k(logits_t) / temperature)
and feed it back; temperature -> 0 is argmax decoding. The whole generation is one lax.scan.

Spec: ``LMSpec(cell, vocab_size, hidden_size, num_layers, embed_size)``; it is hashable (a Cell is
a tuple of functions) and static under ``jax.jit``.
Params: {"embed": [V, E] (only if embed_size), "rnn": [per-layer cell params],
"readout": {"w": [H, V], "b": [V]}}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rnnlab.cells import get as get_cell
from rnnlab.cells.base import Cell, lecun_normal
from rnnlab.recurrent import default_carry, init_stack, stack

LOG2E = 1.4426950408889634  # 1 / ln 2: nats -> bits


class LMSpec(NamedTuple):
    """The model's shape. embed_size 0 feeds one-hot characters (the lecture's model)."""

    cell: Cell
    vocab_size: int
    hidden_size: int
    num_layers: int = 1
    embed_size: int = 0


def make_spec(
    cell: Cell | str,
    *,
    vocab_size: int,
    hidden_size: int,
    num_layers: int = 1,
    embed_size: int = 0,
    **cell_options,
) -> LMSpec:
    """A checked ``LMSpec``; ``cell`` is a Cell or a name for ``rnnlab.cells.get``."""
    if isinstance(cell, str):
        cell = get_cell(cell, **cell_options)
    elif cell_options:
        raise ValueError(f"cell options {sorted(cell_options)} need a cell name, not a Cell")
    spec = LMSpec(cell, vocab_size, hidden_size, num_layers, embed_size)
    check_spec(spec)
    return spec


def check_spec(spec: LMSpec) -> None:
    if not isinstance(spec, LMSpec):
        raise TypeError(f"spec: expected an lm.LMSpec (lm.make_spec(...)), got {type(spec)}")
    if not isinstance(spec.cell, Cell):
        raise TypeError(f"spec.cell: expected an rnnlab Cell, got {type(spec.cell).__name__}")
    for name in ("vocab_size", "hidden_size", "num_layers"):
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"spec.{name} must be a positive int, got {value!r}")
    if not isinstance(spec.embed_size, int) or spec.embed_size < 0:
        raise ValueError(f"spec.embed_size must be an int >= 0, got {spec.embed_size!r}")


def _check_tokens(tokens, ndim: int = 2, name: str = "tokens") -> None:
    if not hasattr(tokens, "ndim") or tokens.ndim != ndim:
        layout = "[batch, time]" if ndim == 2 else "[time]"
        raise ValueError(f"{name}: expected {layout} ints, got {getattr(tokens, 'shape', tokens)}")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"{name}: expected integer ids, got dtype {tokens.dtype}")


# --- the model -------------------------------------------------------------------------------


def init(key: jax.Array, spec: LMSpec) -> dict:
    """Params for ``spec`` (see the module docstring)."""
    check_spec(spec)
    k_embed, k_rnn, k_out = jax.random.split(key, 3)
    V, H = spec.vocab_size, spec.hidden_size
    params = {
        "rnn": init_stack(spec.cell, k_rnn, spec.embed_size or V, H, spec.num_layers),
        "readout": {"w": lecun_normal(k_out, (H, V)), "b": jnp.zeros((V,), jnp.float32)},
    }
    if spec.embed_size:
        params["embed"] = jax.random.normal(k_embed, (V, spec.embed_size)) * 0.1
    return params


def initial_carries(spec: LMSpec, params: dict, batch_size: int) -> list:
    """The zero state: one carry per layer, each with a leading batch axis."""
    return [default_carry(spec.cell, p, batch_size) for p in params["rnn"]]


def embed(spec: LMSpec, params: dict, tokens: jax.Array) -> jax.Array:
    """[B, T] ids -> [B, T, D] inputs: one-hot (D = V) or the embedding rows (D = E)."""
    if spec.embed_size:
        return params["embed"][tokens]
    return jax.nn.one_hot(tokens, spec.vocab_size, dtype=jnp.float32)


def apply(
    spec: LMSpec, params: dict, tokens: jax.Array, carries: list | None = None
) -> tuple[list, jax.Array]:
    """The next-character logits at every position.

    Args:
        spec: the model's ``LMSpec``.
        params: from ``init``.
        tokens: [B, T] int ids.
        carries: one carry per layer (``initial_carries`` if None).

    Returns:
        (carries after the last step, logits [B, T, V]); logits[:, t] predicts tokens[:, t + 1].
    """
    _check_tokens(tokens)
    carries, hs = stack(spec.cell, params["rnn"], embed(spec, params, tokens), carries=carries)
    return carries, hs @ params["readout"]["w"] + params["readout"]["b"]  # [B, T, V]


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """[B, T] -log p(target) in nats."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [B, T, V]
    return -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]


def tbptt_loss(
    spec: LMSpec,
    params: dict,
    inputs: jax.Array,
    targets: jax.Array,
    carries: list,
    reset: jax.Array | bool = False,
) -> tuple[jax.Array, tuple[list, dict]]:
    """One truncated-BPTT step's loss, for ``jax.value_and_grad(..., has_aux=True)``.

    Args:
        spec, params: the model.
        inputs, targets: [B, k] int ids (targets are the inputs shifted by one character).
        carries: the state the previous step ended in (its gradient is stopped here).
        reset: True (a bool scalar or [B]) where the stream restarts: those carries are zeroed.

    Returns:
        (mean cross-entropy in nats, (new carries with stopped gradient, {"loss", "bpc"})).
    """
    carries = jax.tree.map(lax.stop_gradient, carries)
    reset = jnp.asarray(reset)

    def zero_where_reset(c):
        r = reset.reshape(reset.shape + (1,) * (c.ndim - reset.ndim))
        return jnp.where(r, jnp.zeros_like(c), c)

    carries = jax.tree.map(zero_where_reset, carries)
    new_carries, logits = apply(spec, params, inputs, carries)
    loss = cross_entropy(logits, targets).mean()
    new_carries = jax.tree.map(lax.stop_gradient, new_carries)
    return loss, (new_carries, {"loss": loss, "bpc": loss * LOG2E})


# --- evaluation ------------------------------------------------------------------------------


def _eval_bits(spec: LMSpec, params: dict, inputs, targets, mask, split_streams=None):
    """Summed bits over [N, S, k] chunks, scanned with the state carried. Returns (bits, count).

    ``split_streams``: applied to the three arrays stream-leading ([S, N, k]), e.g.
    ``rnnlab.train.parallel.shard_batch`` to give each device its share of the streams.
    """
    if split_streams is not None:
        lead = [jnp.swapaxes(a, 0, 1) for a in (inputs, targets, mask)]
        inputs, targets, mask = (jnp.swapaxes(a, 0, 1) for a in split_streams(tuple(lead)))
    carries = initial_carries(spec, params, inputs.shape[1])

    def body(carries, chunk):
        x, y, m = chunk  # [S, k] each
        carries, logits = apply(spec, params, x, carries)
        return carries, (cross_entropy(logits, y) * m).sum() * LOG2E

    _, bits = lax.scan(body, carries, (inputs, targets, mask))
    return bits.sum(), mask.sum()


_eval_bits_jit = jax.jit(_eval_bits, static_argnums=(0, 5))


def _check_text(tokens) -> np.ndarray:
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.shape[0] < 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(
            f"tokens: expected [N] ints with N >= 2, got {tokens.dtype} {tokens.shape}"
        )
    return tokens


def _chunks(tokens: np.ndarray, chunk: int, num_streams: int):
    """(inputs, targets, mask), each [N_chunks, S, k], of the N - 1 predictions of ``tokens``."""
    M = tokens.shape[0] - 1  # characters predicted
    S = max(1, min(int(num_streams), M))
    per_stream = -(-M // S)
    L = -(-per_stream // chunk) * chunk  # stream length padded to whole chunks
    pad = S * L - M

    def cut(a):  # [M] -> [N_chunks, S, k]
        a = np.concatenate([a, np.zeros(pad, a.dtype)]).reshape(S, L)
        return a.reshape(S, L // chunk, chunk).transpose(1, 0, 2)

    # Pad each stream's tail, never its head, so every stream's state starts from zero.
    inputs, targets = cut(tokens[:-1].astype(np.int32)), cut(tokens[1:].astype(np.int32))
    return inputs, targets, cut(np.ones(M, np.float32))


def bits_per_char(
    spec: LMSpec,
    params: dict,
    tokens,
    *,
    chunk: int = 256,
    num_streams: int = 1,
    split_streams: Callable | None = None,
) -> float:
    """Bits per character of a long text: -(1/M) sum log2 p(c_{t+1} | c_1..c_t), M = N - 1.

    The text is read in chunks of ``chunk`` characters with the state carried across them (one
    compiled scan), so the result is that of one pass over the whole text. With
    ``num_streams`` > 1 it is cut into that many contiguous streams read in parallel (faster;
    each stream starts from the zero state, so the figure is slightly higher). Compiled once
    per (spec, text length, chunk, num_streams): evaluate the same text each time.

    Args:
        spec, params: the model.
        tokens: [N] int ids, N >= 2.
        chunk: characters per scan step.
        num_streams: parallel streams S.
        split_streams: None, or a function applied inside the compiled scan to a tuple of
            stream-leading [S, ...] arrays, such as ``rnnlab.train.parallel.shard_batch``, which
            splits the streams over the devices (with replicated params, every device would
            otherwise read every stream). The same function each call: it is part of the
            compiled function's key.

    Returns:
        bits per character (a host float: this syncs).
    """
    check_spec(spec)
    inputs, targets, mask = _chunks(_check_text(tokens), chunk, num_streams)
    bits, count = _eval_bits_jit(spec, params, inputs, targets, mask, split_streams)
    return float(bits) / float(count)  # host sync


def bits_per_char_fn(
    spec: LMSpec,
    tokens,
    *,
    chunk: int = 256,
    num_streams: int = 1,
    split_streams: Callable | None = None,
):
    """``bits_per_char`` of one fixed text as a traceable function of the params.

    For evaluation inside a compiled function (e.g. a training loop's jitted ``evaluate``): the
    text is cut once, here, and becomes a constant of the computation.

    Args:
        spec: the model.
        tokens: [N] int ids, N >= 2.
        chunk, num_streams, split_streams: as for ``bits_per_char``.

    Returns:
        fn(params) -> bits per character, a float32 [] array (no host sync).
    """
    check_spec(spec)
    inputs, targets, mask = _chunks(_check_text(tokens), chunk, num_streams)

    def fn(params):
        bits, count = _eval_bits(spec, params, inputs, targets, mask, split_streams)
        return bits / count

    return fn


# --- sampling --------------------------------------------------------------------------------


def step_fn(spec: LMSpec, params: dict):
    """One decoding step for ``rnnlab.models.decoding``.

    Returns:
        fn(carries, tokens [B]) -> (carries, logits [B, V], None): the state is the per-layer
        carries (batch-leading, so beam search can tile it); no extras are recorded.
    """

    def fn(carries, tokens):
        carries, logits = apply(spec, params, tokens[:, None], carries)
        return carries, logits[:, 0], None

    return fn


def _sample(spec, params, key, prime, temperature, length, top_k):
    B = prime.shape[0]
    carries, logits = apply(spec, params, prime[:, :-1], initial_carries(spec, params, B))
    del logits  # the last prime character's prediction comes from the scan's first step

    def draw(logits, t):
        if top_k:
            kth = lax.top_k(logits, top_k)[0][:, -1:]  # [B, 1]
            logits = jnp.where(logits < kth, -jnp.inf, logits)
        scaled = logits / jnp.maximum(temperature, 1e-30)
        drawn = jax.random.categorical(jax.random.fold_in(key, t), scaled, axis=-1)
        greedy = jnp.argmax(logits, axis=-1)
        return jnp.where(temperature > 0, drawn, greedy).astype(jnp.int32)

    def body(state, t):
        carries, token = state
        carries, logits = apply(spec, params, token[:, None], carries)
        nxt = draw(logits[:, 0].astype(jnp.float32), t)
        return (carries, nxt), nxt

    _, tokens = lax.scan(body, (carries, prime[:, -1]), jnp.arange(length))
    return tokens.T  # [B, length]


_sample_jit = jax.jit(_sample, static_argnums=(0, 5, 6))


def sample(
    spec: LMSpec,
    params: dict,
    key: jax.Array,
    prime_tokens,
    length: int,
    temperature: float = 1.0,
    top_k: int = 0,
) -> jax.Array:
    """Generates ``length`` characters after a prime text, as one compiled ``lax.scan``.

    The prime is read with teacher forcing, then each drawn character is fed back. Compiled
    once per (spec, prime length, length, top_k): the key and the temperature are traced, so
    changing them never retraces.

    Args:
        spec, params: the model.
        key: a typed PRNG key; step t draws with fold_in(key, t).
        prime_tokens: [P] or [B, P] int ids, P >= 1 (e.g. a newline to start from nothing).
        length: characters to generate.
        temperature: divides the logits; 0 is argmax decoding (and the limit of small ones).
        top_k: draw only among the k most likely characters (0: all).

    Returns:
        [length] (or [B, length]) int32 ids, the prime not included.
    """
    check_spec(spec)
    prime = jnp.asarray(prime_tokens)
    squeeze = prime.ndim == 1
    if squeeze:
        prime = prime[None]
    _check_tokens(prime, name="prime_tokens")
    if prime.shape[1] < 1:
        raise ValueError("prime_tokens: expected at least one character")
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive int, got {length!r}")
    if not isinstance(top_k, int) or not 0 <= top_k <= spec.vocab_size:
        raise ValueError(f"top_k must be an int in [0, {spec.vocab_size}], got {top_k!r}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    temperature = jnp.asarray(temperature, jnp.float32)
    out = _sample_jit(spec, params, key, prime.astype(jnp.int32), temperature, length, top_k)
    return out[0] if squeeze else out


# --- hidden states for visualisation -----------------------------------------------------------


def _layer_states(cell: Cell, params: Any, carry: Any, xs: jax.Array):
    """Scans one layer over xs [T, B, D], keeping every step's carry and output."""

    def body(c, x):
        c, y = cell.apply(params, c, x)
        return c, (y, c)

    _, (ys, carries) = lax.scan(body, carry, xs)
    return ys, carries  # [T, B, H], carry leaves [T, B, ...]


def hidden_states(spec: LMSpec, params: dict, tokens) -> list[dict]:
    """Every layer's state after reading each character, for visualisation.

    Args:
        spec, params: the model.
        tokens: [T] or [B, T] int ids.

    Returns:
        one dict per layer: {"h": [(B,) T, H] the layer's output, "c": the cell state (for a
        carry that is a tuple whose second entry has h's shape, the LSTM's (h, c))}.
    """
    check_spec(spec)
    tokens = jnp.asarray(tokens)
    squeeze = tokens.ndim == 1
    if squeeze:
        tokens = tokens[None]
    _check_tokens(tokens)
    return _hidden_states_jit(spec, params, tokens, squeeze)


def _hidden_states(spec, params, tokens, squeeze):
    xs = jnp.swapaxes(embed(spec, params, tokens), 0, 1)  # [T, B, D]
    out = []
    for p, carry in zip(params["rnn"], initial_carries(spec, params, tokens.shape[0])):
        ys, carries = _layer_states(spec.cell, p, carry, xs)
        layer = {"h": ys}
        if isinstance(carries, tuple) and len(carries) >= 2 and carries[1].shape == ys.shape:
            layer["c"] = carries[1]
        fix = (lambda a: a[:, 0]) if squeeze else (lambda a: jnp.swapaxes(a, 0, 1))
        out.append({name: fix(a) for name, a in layer.items()})  # [(B,) T, H]
        xs = ys
    return out


_hidden_states_jit = jax.jit(_hidden_states, static_argnums=(0, 3))
