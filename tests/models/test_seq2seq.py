"""Encoder-decoder models: decoding agrees with teacher forcing, masks, and a copy task learnt."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnlab
from rnnlab.models import seq2seq as s2s

BOS, EOS = 1, 2
SRC = jnp.array([[3, 4, 5, 6], [7, 8, 0, 0], [9, 0, 0, 0]])
SRC_LEN = jnp.array([4, 2, 1])


def _spec(attention, cell="gru", **kw):
    kw = {"bidirectional": attention != "luong_dot", "reverse_source": True, **kw}
    return s2s.Seq2Seq(rnnlab.cells.get(cell), 10, 11, 8, 16, 2, 2, attention=attention, **kw)


@pytest.mark.parametrize("attention", s2s.ATTENTIONS)
def test_teacher_forced_likelihood_equals_decoding_log_probs(attention):
    spec = _spec(attention, cell="lstm")
    params = s2s.init(jax.random.key(0), spec)
    out = s2s.decode(spec, params, SRC, SRC_LEN, bos_id=BOS, eos_id=EOS, max_len=6)
    tgt_in = jnp.concatenate([jnp.full((3, 1), BOS), out.tokens[:, :-1]], axis=1)
    logits, weights = s2s.teacher_forced(spec, params, SRC, SRC_LEN, tgt_in)
    logp = jax.nn.log_softmax(logits, -1)
    token_logp = jnp.take_along_axis(logp, out.tokens[..., None], -1)[..., 0]
    mask = rnnlab.mask_from_lengths(out.lengths, 6)
    np.testing.assert_allclose(jnp.sum(token_logp * mask, 1), out.scores, rtol=1e-5)
    if attention != "none":
        np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
        src_mask = rnnlab.mask_from_lengths(SRC_LEN, 4)[:, None, :]
        np.testing.assert_array_equal(jnp.where(src_mask, 0.0, weights), 0.0)
        np.testing.assert_allclose(out.extras, weights, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong_general"])
def test_source_padding_changes_nothing(attention):
    spec = _spec(attention)
    params = s2s.init(jax.random.key(1), spec)
    tgt_in = jnp.array([[BOS, 3, 4], [BOS, 5, 0], [BOS, 6, 7]])
    logits, w = s2s.teacher_forced(spec, params, SRC, SRC_LEN, tgt_in)
    padded = jnp.pad(SRC, ((0, 0), (0, 3)), constant_values=5)  # junk after each length
    logits2, w2 = s2s.teacher_forced(spec, params, padded, SRC_LEN, tgt_in)
    np.testing.assert_allclose(logits, logits2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w, w2[..., :4], rtol=1e-5, atol=1e-6)


def test_luong_dot_with_bidirectional_encoder_is_refused():
    with pytest.raises(ValueError, match="use luong_general"):
        s2s.init(jax.random.key(0), _spec("luong_dot", bidirectional=True))
    with pytest.raises(ValueError, match="attention='luong'"):
        s2s.init(jax.random.key(0), _spec("luong"))


def test_label_smoothing_and_padding_in_token_loss():
    logits = jax.random.normal(jax.random.key(0), (2, 3, 5))
    targets = jnp.array([[1, 2, 3], [4, 0, 0]])
    lengths = jnp.array([3, 1])
    loss, count = s2s.token_loss(logits, targets, lengths)
    logp = jax.nn.log_softmax(logits)
    manual = -(logp[0, 0, 1] + logp[0, 1, 2] + logp[0, 2, 3] + logp[1, 0, 4]) / 4
    np.testing.assert_allclose(loss, manual, rtol=1e-6)
    assert count == 4
    smooth, _ = s2s.token_loss(logits, targets, lengths, label_smoothing=0.1)
    real = [logp[0, 0], logp[0, 1], logp[0, 2], logp[1, 0]]
    np.testing.assert_allclose(smooth, 0.9 * manual - 0.1 * sum(r.mean() for r in real) / 4, 1e-5)


def test_tiny_model_learns_to_copy_to_exact_match():
    """Copy sequences of 2-5 symbols; Bahdanau attention makes this quick to learn."""
    V, L, B = 8, 5, 64
    spec = s2s.Seq2Seq(
        rnnlab.cells.get("gru"), V, V, 16, 32, attention="bahdanau", attention_size=32
    )
    params = s2s.init(jax.random.key(0), spec)
    opt = optax.adam(1e-2)
    opt_state = opt.init(params)

    def batch(key):
        k1, k2 = jax.random.split(key)
        lengths = jax.random.randint(k1, (B,), 2, L + 1)
        src = jax.random.randint(k2, (B, L), 3, V) * rnnlab.mask_from_lengths(lengths, L)
        tgt = jnp.concatenate([src, jnp.zeros((B, 1), src.dtype)], 1)
        tgt = tgt.at[jnp.arange(B), lengths].set(EOS)
        tgt_in = jnp.concatenate([jnp.full((B, 1), BOS), tgt[:, :-1]], 1)
        return src, lengths, tgt_in, tgt, lengths + 1

    @jax.jit
    def train_step(params, opt_state, key):
        src, sl, tgt_in, tgt, tl = batch(key)

        def loss_fn(p):
            logits, _ = s2s.teacher_forced(spec, p, src, sl, tgt_in)
            return s2s.token_loss(logits, tgt, tl)[0]

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    for i in range(300):
        params, opt_state, loss = train_step(params, opt_state, jax.random.key(i))
    src, sl, _, tgt, tl = batch(jax.random.key(10_000))
    out = jax.jit(
        lambda p: s2s.decode(spec, p, src, sl, bos_id=BOS, eos_id=EOS, max_len=L + 1, beam_size=3)
    )(params)
    best = out.tokens[:, 0]
    exact = jnp.all(jnp.where(rnnlab.mask_from_lengths(tl, L + 1), best == tgt, True), axis=1)
    assert float(loss) < 0.05 and float(exact.mean()) >= 0.95, (float(loss), float(exact.mean()))
