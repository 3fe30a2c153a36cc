"""Autoregressive decoding as one compiled loop: greedy and batched beam search.

Both work on any model that exposes one decoding step as a pure function

    step_fn(state, tokens [B]) -> (state, logits [B, V], extras [B, ...])

where every leaf of ``state`` has the batch as its leading axis (memory such as the encoder's
keys included, so beam search can tile it). ``extras`` is recorded per step (attention weights,
for example). The loop is a ``lax.scan`` over ``max_len`` steps: no Python loop and no host round
trip per token, and ``jax.jit`` compiles it once.

Beam search (e.g. Sutskever et al. 2014; the length penalty of Wu et al. 2016, GNMT):
    lp(Y) = ((5 + |Y|) / 6) ** alpha,   final score = log P(Y | X) / lp(Y)
Beams that emitted <eos> are frozen: they extend only with <eos> at zero cost, so they keep their
score while live beams go on. The n-best come back sorted by final score. |Y| counts the tokens up
to and including the first <eos>.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

StepFn = Callable[[Any, jax.Array], tuple[Any, jax.Array, Any]]


class Decoded(NamedTuple):
    """tokens [B, (K,) L]; lengths [B, (K,)] up to and including <eos>; scores [B, (K,)] the
    summed log-probabilities (for beams: divided by the length penalty); extras [B, (K,) L, ...]."""

    tokens: jax.Array
    lengths: jax.Array
    scores: jax.Array
    extras: Any


def _lengths(tokens: jax.Array, eos_id: int) -> jax.Array:
    """Length up to and including the first <eos> (the full length if there is none)."""
    L = tokens.shape[-1]
    is_eos = tokens == eos_id
    first = jnp.where(is_eos.any(-1), jnp.argmax(is_eos, axis=-1) + 1, L)
    return first.astype(jnp.int32)


def greedy(
    step_fn: StepFn, state: Any, *, bos_id: int, eos_id: int, max_len: int, batch_size: int
) -> Decoded:
    """Argmax decoding; after <eos> a row keeps emitting <eos> (its score stops changing)."""

    def body(carry, _):
        state, tokens, done, score = carry
        state, logits, extras = step_fn(state, tokens)
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [B, V]
        nxt = jnp.argmax(logp, axis=-1).astype(jnp.int32)
        nxt = jnp.where(done, eos_id, nxt)
        score = score + jnp.where(done, 0.0, jnp.take_along_axis(logp, nxt[:, None], -1)[:, 0])
        done = done | (nxt == eos_id)
        return (state, nxt, done, score), (nxt, extras)

    start = jnp.full((batch_size,), bos_id, jnp.int32)
    init = (state, start, jnp.zeros(batch_size, bool), jnp.zeros(batch_size, jnp.float32))
    (_, _, _, score), (tokens, extras) = lax.scan(body, init, None, length=max_len)
    tokens = tokens.T  # [B, L]
    extras = jax.tree.map(lambda e: jnp.swapaxes(e, 0, 1), extras)  # [B, L, ...]
    return Decoded(tokens, _lengths(tokens, eos_id), score, extras)


def _trace_step(step_fn: StepFn, state: Any, tokens: jax.Array) -> tuple[list[bool], Any]:
    """(per leaf of ``state``: does ``step_fn`` return it as it came in?, the extras' shapes).

    A leaf returned as is (the encoder's memory) is an output that is the input variable itself
    in the traced step. It never changes, so beam search need not carry it through the loop nor
    reorder it with the beams.
    """
    leaves, treedef = jax.tree.flatten(state)

    def flat(leaves, tokens):
        new_state, _, extras = step_fn(jax.tree.unflatten(treedef, leaves), tokens)
        return jax.tree.leaves(new_state), extras

    closed, (state_shape, extras_shape) = jax.make_jaxpr(flat, return_shape=True)(leaves, tokens)
    if len(state_shape) != len(leaves):  # a different state; lax.scan says so below
        return [False] * len(leaves), extras_shape
    outs, ins = closed.jaxpr.outvars[: len(leaves)], closed.jaxpr.invars[: len(leaves)]
    return [o is i for o, i in zip(outs, ins)], extras_shape


def length_penalty(lengths: jax.Array, alpha: float) -> jax.Array:
    """GNMT's lp(Y) = ((5 + |Y|) / 6) ** alpha; alpha = 0 gives 1 (plain log-probabilities)."""
    return ((5.0 + lengths.astype(jnp.float32)) / 6.0) ** alpha


def beam_search(
    step_fn: StepFn,
    state: Any,
    *,
    bos_id: int,
    eos_id: int,
    max_len: int,
    batch_size: int,
    beam_size: int,
    alpha: float = 0.0,
) -> Decoded:
    """Batched beam search; returns the ``beam_size``-best per input, best first.

    Returns:
        Decoded with tokens [B, K, L], lengths [B, K], scores [B, K] (log P / lp), extras
        [B, K, L, ...].
    """
    B, K = batch_size, beam_size
    tile = lambda a: jnp.repeat(a, K, axis=0)  # noqa: E731  [B, ...] -> [B*K, ...]
    state = jax.tree.map(tile, state)
    # Only beam 0 is live at the start, so the K beams do not start as K copies of one.
    scores = jnp.tile(jnp.array([0.0] + [-jnp.inf] * (K - 1), jnp.float32), (B, 1))  # [B, K]
    tokens0 = jnp.full((B * K,), bos_id, jnp.int32)
    # Leaves the step passes through (the encoder's memory) are the same for the K beams of an
    # input and never change: they stay outside the loop's carry, and are not reordered.
    fixed, extras_shape = _trace_step(step_fn, state, tokens0)
    leaves, treedef = jax.tree.flatten(state)

    def merge(moving):
        moving = iter(moving)
        return treedef.unflatten([x if f else next(moving) for x, f in zip(leaves, fixed)])

    def split(state):
        return [x for x, f in zip(jax.tree.leaves(state), fixed) if not f]

    def body(carry, t):
        moving, tokens, done, scores, history, extras_hist = carry
        state, logits, extras = step_fn(merge(moving), tokens)
        state = split(state)
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [B*K, V]
        V = logp.shape[-1]
        frozen = jnp.full((V,), -jnp.inf).at[eos_id].set(0.0)  # a finished beam only adds <eos>
        logp = jnp.where(done[:, None], frozen, logp).reshape(B, K, V)
        cand = (scores[:, :, None] + logp).reshape(B, K * V)
        scores, flat = lax.top_k(cand, K)  # [B, K]
        parent, token = flat // V, (flat % V).astype(jnp.int32)
        rows = (jnp.arange(B)[:, None] * K + parent).reshape(-1)  # [B*K] gather index
        state = jax.tree.map(lambda a: a[rows], state)
        history = history[rows].at[:, t].set(token.reshape(-1))
        extras_hist = jax.tree.map(lambda h, e: h[rows].at[:, t].set(e[rows]), extras_hist, extras)
        done = done[rows] | (token.reshape(-1) == eos_id)
        return (state, token.reshape(-1), done, scores, history, extras_hist), None

    extras0 = jax.tree.map(
        lambda s: jnp.zeros((B * K, max_len) + s.shape[1:], s.dtype), extras_shape
    )
    history0 = jnp.full((B * K, max_len), eos_id, jnp.int32)
    init = (split(state), tokens0, jnp.zeros(B * K, bool), scores, history0, extras0)
    (_, _, _, scores, history, extras), _ = lax.scan(body, init, jnp.arange(max_len))
    tokens = history.reshape(B, K, max_len)
    lengths = _lengths(tokens, eos_id)
    final = scores / length_penalty(lengths, alpha)
    order = jnp.argsort(-final, axis=-1)  # best first
    pick = lambda a: jnp.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), 1)  # noqa: E731
    extras = jax.tree.map(lambda e: pick(e.reshape((B, K) + e.shape[1:])), extras)
    return Decoded(pick(tokens), pick(lengths), pick(final), extras)
