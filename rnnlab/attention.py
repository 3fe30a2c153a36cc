"""Attention over a set of keys (encoder states or image regions), as pure functions.

    additive (Bahdanau, Cho & Bengio 2015):   e_j = v^T tanh(W s + U h_j + b)
    dot      (Luong, Pham & Manning 2015):    e_j = s . h_j
    general  (Luong et al. 2015):             e_j = s^T W_a h_j

    alpha = softmax(e) over the unmasked positions;   context = sum_j alpha_j h_j

Shapes: query s [B, Q], keys h [B, S, K], mask [B, S] (True on real positions). Each score
function returns (context [B, K], weights [B, S]). Padded positions get exactly zero weight.
For additive attention the key term U h_j does not depend on the decoder step: compute it once
with ``additive_keys`` and pass it as ``projected_keys`` to every step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.cells.base import lecun_normal


def _check(query, keys, mask):
    if query.ndim != 2:
        raise ValueError(f"query: expected [batch, query_size], got shape {query.shape}")
    if keys.ndim != 3 or keys.shape[0] != query.shape[0]:
        raise ValueError(
            f"keys: expected [batch={query.shape[0]}, source, key_size], got shape {keys.shape}"
        )
    if mask is not None and mask.shape != keys.shape[:2]:
        raise ValueError(f"mask: expected shape {keys.shape[:2]}, got {mask.shape}")


def masked_softmax(scores: jax.Array, mask: jax.Array | None) -> jax.Array:
    """softmax over the last axis with masked positions at exactly zero weight.

    A row with no real position gets all-zero weights rather than NaN.
    """
    if mask is None:
        return jax.nn.softmax(scores, axis=-1)
    scores = jnp.where(mask, scores, -jnp.inf)
    peak = jnp.max(scores, axis=-1, keepdims=True)
    peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
    e = jnp.where(mask, jnp.exp(scores - jax.lax.stop_gradient(peak)), 0.0)
    return e / jnp.maximum(jnp.sum(e, axis=-1, keepdims=True), jnp.finfo(e.dtype).tiny)


def _attend(scores, keys, mask):
    weights = masked_softmax(scores, mask)  # [B, S]
    context = jnp.einsum("bs,bsk->bk", weights, keys)  # [B, K]
    return context, weights


def init_additive(key: jax.Array, query_size: int, key_size: int, attention_size: int) -> dict:
    """Params of Bahdanau attention: w_q [Q, A] (W), w_k [K, A] (U), b [A], v [A]."""
    k_q, k_k, k_v = jax.random.split(key, 3)
    return {
        "w_q": lecun_normal(k_q, (query_size, attention_size)),
        "w_k": lecun_normal(k_k, (key_size, attention_size)),
        "b": jnp.zeros(attention_size),
        "v": lecun_normal(k_v, (attention_size, 1))[:, 0],
    }


def additive_keys(params: dict, keys: jax.Array) -> jax.Array:
    """U h_j + b for every position, once per source: [B, S, K] -> [B, S, A]."""
    return keys @ params["w_k"] + params["b"]


def additive(
    params: dict,
    query: jax.Array,
    keys: jax.Array,
    mask: jax.Array | None = None,
    projected_keys: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Bahdanau attention: e_j = v^T tanh(W s + U h_j + b). Returns (context, weights)."""
    _check(query, keys, mask)
    if projected_keys is None:
        projected_keys = additive_keys(params, keys)
    hidden = jnp.tanh(projected_keys + (query @ params["w_q"])[:, None, :])  # [B, S, A]
    return _attend(hidden @ params["v"], keys, mask)


def dot(
    query: jax.Array, keys: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Luong dot attention: e_j = s . h_j (query and key sizes must agree)."""
    _check(query, keys, mask)
    if query.shape[-1] != keys.shape[-1]:
        raise ValueError(
            f"dot attention: query size {query.shape[-1]} != key size {keys.shape[-1]}; "
            "use general attention to compare vectors of different sizes"
        )
    return _attend(jnp.einsum("bk,bsk->bs", query, keys), keys, mask)


def init_general(key: jax.Array, query_size: int, key_size: int) -> dict:
    """Params of Luong general attention: w [Q, K]."""
    return {"w": lecun_normal(key, (query_size, key_size))}


def general(
    params: dict, query: jax.Array, keys: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Luong general attention: e_j = s^T W_a h_j."""
    _check(query, keys, mask)
    return _attend(jnp.einsum("bk,bsk->bs", query @ params["w"], keys), keys, mask)
