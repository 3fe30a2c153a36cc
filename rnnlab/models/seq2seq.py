"""Encoder-decoder networks with and without attention, as pure functions over params dicts.

    encoder   any cell, stacked, optionally bidirectional; optional source reversal
              (Sutskever, Vinyals & Le 2014)
    bridge    s_0 = tanh(W [final encoder carry] + b) for every decoder layer and carry leaf
              (Cho et al. 2014; Bahdanau et al. 2015 use the backward state the same way)
    decoder   any cell, stacked; one of
      "none"      x_i = E y_{i-1};             logits = W_o s_i              (Sutskever; Cho)
      "bahdanau"  c_i = additive(s_{i-1}, h);  x_i = [E y_{i-1}; c_i];
                  logits = W_o [s_i; c_i; E y_{i-1}]                          (Bahdanau 2015)
      "luong_dot", "luong_general"
                  x_i = [E y_{i-1}; h~_{i-1}] (input feeding);  c_i = score(s_i, h);
                  h~_i = tanh(W_c [c_i; s_i]);  logits = W_o h~_i              (Luong 2015)

Shapes: src [B, S] and tgt [B, T] int32 token ids (0 = <pad>), lengths [B]. The model is
described by a ``Seq2Seq`` spec (static: sizes, the cell, the attention kind) and its params.
``step`` is the one decoding step that teacher forcing, greedy and beam search all share, so the
teacher-forced log-likelihood equals the sum of the step-by-step log-probabilities.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

import rnnlab
from rnnlab import attention as attn
from rnnlab.cells.base import Cell, lecun_normal
from rnnlab.models import decoding

ATTENTIONS = ("none", "bahdanau", "luong_dot", "luong_general")


class Seq2Seq(NamedTuple):
    """The static description of a model; params come from ``init(key, spec)``."""

    cell: Cell
    src_vocab: int
    tgt_vocab: int
    embed_size: int = 64
    hidden_size: int = 128
    encoder_layers: int = 1
    decoder_layers: int = 1
    bidirectional: bool = False
    attention: str = "bahdanau"
    attention_size: int = 128
    reverse_source: bool = False

    @property
    def key_size(self) -> int:
        return self.hidden_size * (2 if self.bidirectional else 1)


def check_spec(spec: Seq2Seq) -> None:
    """Raises ValueError naming the field when a spec cannot work."""
    if spec.attention not in ATTENTIONS:
        raise ValueError(f"attention={spec.attention!r}: expected one of {list(ATTENTIONS)}")
    for field in ("src_vocab", "tgt_vocab", "embed_size", "hidden_size", "attention_size"):
        if getattr(spec, field) < 1:
            raise ValueError(f"{field} must be positive, got {getattr(spec, field)}")
    if spec.attention == "luong_dot" and spec.key_size != spec.hidden_size:
        raise ValueError(
            "attention='luong_dot' compares decoder and encoder states, which differ in size "
            f"({spec.hidden_size} vs {spec.key_size}, bidirectional encoder): use luong_general"
        )


def _carry_size(spec: Seq2Seq) -> int:
    """Features of one encoder layer's final carry, all leaves (and directions) concatenated."""
    one = sum(c.shape[-1] for c in jax.tree.leaves(spec.cell.initial_carry(1, spec.hidden_size)))
    return one * (2 if spec.bidirectional else 1)


def init(key: jax.Array, spec: Seq2Seq) -> dict:
    """Params: embeddings, encoder and decoder stacks, bridge, attention, output layer."""
    check_spec(spec)
    ks = iter(jax.random.split(key, 12))
    E, H, K, V = spec.embed_size, spec.hidden_size, spec.key_size, spec.tgt_vocab
    feed = {"none": 0, "bahdanau": K, "luong_dot": H, "luong_general": H}[spec.attention]
    leaves = jax.tree.leaves(spec.cell.initial_carry(1, H))
    params = {
        "src_embed": jax.random.normal(next(ks), (spec.src_vocab, E)) * E**-0.5,
        "tgt_embed": jax.random.normal(next(ks), (V, E)) * E**-0.5,
        "encoder": rnnlab.init_stack(
            spec.cell, next(ks), E, H, spec.encoder_layers, bidirectional=spec.bidirectional
        ),
        "decoder": rnnlab.init_stack(spec.cell, next(ks), E + feed, H, spec.decoder_layers),
        "bridge": [
            [
                {"w": lecun_normal(k, (_carry_size(spec), leaf.shape[-1])), "b": jnp.zeros(H)}
                for k, leaf in zip(jax.random.split(kl, len(leaves)), leaves)
            ]
            for kl in jax.random.split(next(ks), spec.decoder_layers)
        ],
    }
    out_in = {"none": H, "bahdanau": H + K + E}.get(spec.attention, H)
    if spec.attention == "bahdanau":
        params["attention"] = attn.init_additive(next(ks), H, K, spec.attention_size)
    elif spec.attention.startswith("luong"):
        params["combine"] = {"w": lecun_normal(next(ks), (K + H, H)), "b": jnp.zeros(H)}
        if spec.attention == "luong_general":
            params["attention"] = attn.init_general(next(ks), H, K)
    params["out"] = {"w": lecun_normal(next(ks), (out_in, V)), "b": jnp.zeros(V)}
    return params


class Memory(NamedTuple):
    """What the decoder reads: keys [B, S, K], mask [B, S], projected keys for additive."""

    keys: jax.Array
    mask: jax.Array
    projected: jax.Array | None


def encode(spec: Seq2Seq, params: dict, src: jax.Array, src_lengths: jax.Array):
    """Runs the encoder; returns (Memory, decoder state for step 0)."""
    B, S = src.shape
    if spec.reverse_source:
        src = rnnlab.reverse_padded(src, src_lengths)
    xs = params["src_embed"][src]  # [B, S, E]
    finals, keys = rnnlab.stack(
        spec.cell, params["encoder"], xs, lengths=src_lengths, bidirectional=spec.bidirectional
    )
    if spec.reverse_source:  # keys back in source order, so attention weights align with src
        keys = rnnlab.reverse_padded(keys, src_lengths)
    mask = rnnlab.mask_from_lengths(src_lengths, S)
    projected = None
    if spec.attention == "bahdanau":
        projected = attn.additive_keys(params["attention"], keys)  # [B, S, A], once per source
    summary = jnp.concatenate(jax.tree.leaves(finals[-1]), axis=-1)  # [B, F]
    template = spec.cell.initial_carry(B, spec.hidden_size)
    carries = []
    for layer in params["bridge"]:
        leaves = [jnp.tanh(summary @ p["w"] + p["b"]) for p in layer]
        carries.append(jax.tree.unflatten(jax.tree.structure(template), leaves))
    H = spec.hidden_size
    state = {
        "carries": carries,
        "out": jnp.zeros((B, H), keys.dtype),  # s_{i-1}, the top layer's last output
        "feed": jnp.zeros((B, H), keys.dtype),  # h~_{i-1} for Luong's input feeding
        "memory": Memory(keys, mask, projected),
    }
    return state


def step(spec: Seq2Seq, params: dict, state: dict, tokens: jax.Array):
    """One decoder step: (state, tokens y_{i-1} [B]) -> (state, logits [B, V], weights [B, S])."""
    mem = state["memory"]
    emb = params["tgt_embed"][tokens]  # [B, E]
    weights = jnp.zeros(mem.mask.shape, emb.dtype)
    if spec.attention == "bahdanau":
        context, weights = attn.additive(
            params["attention"], state["out"], mem.keys, mem.mask, mem.projected
        )
        x = jnp.concatenate([emb, context], axis=-1)
    elif spec.attention.startswith("luong"):
        x = jnp.concatenate([emb, state["feed"]], axis=-1)
    else:
        x = emb
    carries = []
    for p, c in zip(params["decoder"], state["carries"]):
        c, x = spec.cell.apply(p, c, x)
        carries.append(c)
    out, feed = x, state["feed"]
    if spec.attention == "bahdanau":
        feature = jnp.concatenate([out, context, emb], axis=-1)
    elif spec.attention.startswith("luong"):
        if spec.attention == "luong_dot":
            context, weights = attn.dot(out, mem.keys, mem.mask)
        else:
            context, weights = attn.general(params["attention"], out, mem.keys, mem.mask)
        comb = params["combine"]
        feature = feed = jnp.tanh(jnp.concatenate([context, out], axis=-1) @ comb["w"] + comb["b"])
    else:
        feature = out
    logits = feature @ params["out"]["w"] + params["out"]["b"]
    state = {"carries": carries, "out": out, "feed": feed, "memory": mem}
    return state, logits, weights


def teacher_forced(
    spec: Seq2Seq,
    params: dict,
    src: jax.Array,
    src_lengths: jax.Array,
    tgt_in: jax.Array,
    *,
    key: jax.Array | None = None,
    teacher_forcing: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """Logits [B, T, V] and attention weights [B, T, S] for decoder inputs tgt_in [B, T].

    With ``teacher_forcing`` < 1 (needs ``key``), each step feeds the model's own argmax instead
    of the reference token with probability 1 - teacher_forcing (Williams & Zipser 1989; the
    "scheduled sampling" family of Bengio et al. 2015).
    """
    state = encode(spec, params, src, src_lengths)
    T = tgt_in.shape[1]
    if teacher_forcing < 1.0:
        if key is None:
            raise ValueError("teacher_forcing < 1 needs key=")
        use_ref = jax.random.bernoulli(key, teacher_forcing, (T, src.shape[0]))
    else:
        use_ref = jnp.ones((T, src.shape[0]), bool)

    def body(carry, inputs):
        state, prev_pred = carry
        ref, keep = inputs
        tokens = jnp.where(keep, ref, prev_pred)
        state, logits, weights = step(spec, params, state, tokens)
        return (state, jnp.argmax(logits, -1).astype(tgt_in.dtype)), (logits, weights)

    init_carry = (state, tgt_in[:, 0])
    _, (logits, weights) = lax.scan(body, init_carry, (tgt_in.T, use_ref))
    return jnp.swapaxes(logits, 0, 1), jnp.swapaxes(weights, 0, 1)


def token_loss(
    logits: jax.Array, targets: jax.Array, lengths: jax.Array, label_smoothing: float = 0.0
) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy per real target token (Szegedy et al. 2016 label smoothing optional).

    Returns:
        (mean loss over real tokens, number of real tokens).
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [B, T, V]
    nll = -jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]
    if label_smoothing > 0.0:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * jnp.mean(logp, axis=-1)
    mask = rnnlab.mask_from_lengths(lengths, targets.shape[1])
    count = jnp.maximum(mask.sum(), 1)
    return jnp.sum(jnp.where(mask, nll, 0.0)) / count, count


def decode(
    spec: Seq2Seq,
    params: dict,
    src: jax.Array,
    src_lengths: jax.Array,
    *,
    bos_id: int,
    eos_id: int,
    max_len: int,
    beam_size: int = 1,
    alpha: float = 0.0,
) -> decoding.Decoded:
    """Greedy (beam_size=1) or beam-search translations; extras are attention weights."""
    state = encode(spec, params, src, src_lengths)

    def step_fn(state: Any, tokens: jax.Array):
        return step(spec, params, state, tokens)

    kw = dict(bos_id=bos_id, eos_id=eos_id, max_len=max_len, batch_size=src.shape[0])
    if beam_size == 1:
        return decoding.greedy(step_fn, state, **kw)
    return decoding.beam_search(step_fn, state, beam_size=beam_size, alpha=alpha, **kw)
