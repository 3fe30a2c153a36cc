"""Attention: closed forms, masks, and shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import attention

B, S, Q, K, A = 3, 6, 4, 5, 7
MASK = jnp.arange(S)[None, :] < jnp.array([6, 3, 1])[:, None]


def _inputs():
    q = jax.random.normal(jax.random.key(0), (B, Q))
    keys = jax.random.normal(jax.random.key(1), (B, S, K))
    return q, keys


def _check_weights(weights, context, keys):
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.where(MASK, 0.0, weights), 0.0)
    np.testing.assert_allclose(context, jnp.einsum("bs,bsk->bk", weights, keys), rtol=1e-5)


def test_additive_is_bahdanau_formula():
    q, keys = _inputs()
    p = attention.init_additive(jax.random.key(2), Q, K, A)
    context, weights = attention.additive(p, q, keys, MASK)
    _check_weights(weights, context, keys)
    for b in range(B):
        e = np.array(
            [
                p["v"] @ np.tanh(p["w_q"].T @ q[b] + p["w_k"].T @ keys[b, j] + p["b"])
                for j in range(S)
            ]
        )
        e = np.where(MASK[b], e, -np.inf)
        np.testing.assert_allclose(
            weights[b], np.exp(e - e.max()) / np.exp(e - e.max()).sum(), 1e-5
        )
    pre = attention.additive_keys(p, keys)
    np.testing.assert_allclose(
        attention.additive(p, q, keys, MASK, projected_keys=pre)[1], weights, rtol=1e-6
    )


def test_dot_and_general_are_luong_formulas():
    q, keys = _inputs()
    q5 = jax.random.normal(jax.random.key(3), (B, K))
    context, weights = attention.dot(q5, keys, MASK)
    _check_weights(weights, context, keys)
    e = jnp.where(MASK, jnp.einsum("bk,bsk->bs", q5, keys), -jnp.inf)
    np.testing.assert_allclose(weights, jax.nn.softmax(e, -1), rtol=1e-5)
    p = attention.init_general(jax.random.key(4), Q, K)
    context, weights = attention.general(p, q, keys, MASK)
    _check_weights(weights, context, keys)
    e = jnp.where(MASK, jnp.einsum("bq,qk,bsk->bs", q, p["w"], keys), -jnp.inf)
    np.testing.assert_allclose(weights, jax.nn.softmax(e, -1), rtol=1e-5)


def test_padding_gets_no_weight_and_no_gradient():
    q, keys = _inputs()
    p = attention.init_additive(jax.random.key(2), Q, K, A)
    g = jax.grad(lambda k: jnp.sum(attention.additive(p, q, k, MASK)[0] ** 2))(keys)
    np.testing.assert_array_equal(np.where(MASK[..., None], 0.0, g), 0.0)
    fully_masked = jnp.zeros((B, S), bool)
    context, weights = attention.additive(p, q, keys, fully_masked)
    assert np.all(np.isfinite(weights)) and np.all(weights == 0) and np.all(context == 0)


def test_bad_shapes_name_the_argument():
    q, keys = _inputs()
    with pytest.raises(ValueError, match="dot attention: query size 4 != key size 5"):
        attention.dot(q, keys)
    with pytest.raises(ValueError, match=r"mask: expected shape \(3, 6\)"):
        attention.dot(jnp.zeros((B, K)), keys, MASK[:, :2])
    with pytest.raises(ValueError, match="keys: expected"):
        attention.dot(jnp.zeros((B, K)), keys[0])
