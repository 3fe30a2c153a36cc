"""Greedy and beam search on hand-built models, where the right answer is known."""

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.models import decoding

BOS, EOS, A, B_, C = 0, 1, 2, 3, 4


def _table_step(table):
    """A 'model' whose next-token distribution depends only on the previous token."""
    logits_table = jnp.log(jnp.asarray(table, jnp.float32))

    def step_fn(state, tokens):
        return state + 1, logits_table[tokens], jax.nn.one_hot(tokens, 5)

    return step_fn


# After <bos>: A 0.6, B 0.4. After A: four tokens at 0.25 each (best continuation 0.25).
# After B: <eos> 0.9. Greedy takes A (0.6 * 0.25 = 0.15); the best sequence is B <eos> (0.36).
TABLE = np.full((5, 5), 1e-9)
TABLE[BOS, A], TABLE[BOS, B_] = 0.6, 0.4
TABLE[A, [EOS, A, B_, C]] = 0.25
TABLE[B_, EOS], TABLE[B_, C] = 0.9, 0.1
TABLE[C, EOS] = 1.0
TABLE[EOS, EOS] = 1.0
TABLE = TABLE / TABLE.sum(1, keepdims=True)


def test_beam_search_finds_the_sequence_greedy_misses():
    step_fn = _table_step(TABLE)
    state = jnp.zeros(1, jnp.int32)
    kw = dict(bos_id=BOS, eos_id=EOS, max_len=4, batch_size=1)
    g = decoding.greedy(step_fn, state, **kw)
    assert g.tokens[0, 0] == A
    np.testing.assert_allclose(g.scores[0], np.log(0.6 * 0.25), rtol=1e-4)
    b = decoding.beam_search(step_fn, state, beam_size=2, **kw)
    np.testing.assert_array_equal(b.tokens[0, 0, :2], [B_, EOS])
    assert b.lengths[0, 0] == 2
    np.testing.assert_allclose(b.scores[0, 0], np.log(0.4 * 0.9), rtol=1e-4)
    assert b.scores[0, 0] > g.scores[0] and b.scores[0, 0] >= b.scores[0, 1]
    # extras follow their beams: step 2 of the best beam saw token B as input
    np.testing.assert_array_equal(b.extras[0, 0, 1], jax.nn.one_hot(B_, 5))


def test_beam_of_one_equals_greedy():
    rng = np.random.default_rng(0)
    table = rng.dirichlet(np.ones(5) * 0.3, size=5)
    step_fn = _table_step(table)
    kw = dict(bos_id=BOS, eos_id=EOS, max_len=7, batch_size=3)
    state = jnp.zeros(3, jnp.int32)
    g = decoding.greedy(step_fn, state, **kw)
    b = decoding.beam_search(step_fn, state, beam_size=1, **kw)
    np.testing.assert_array_equal(b.tokens[:, 0], g.tokens)
    np.testing.assert_allclose(b.scores[:, 0], g.scores, rtol=1e-5)


def test_length_penalty_is_gnmt_form():
    np.testing.assert_allclose(
        decoding.length_penalty(jnp.array([1, 5]), 0.6), [1.0, (10 / 6) ** 0.6]
    )
    np.testing.assert_allclose(decoding.length_penalty(jnp.array([9]), 0.0), [1.0])


def test_decoding_compiles_once():
    traces = []
    table = _table_step(TABLE)

    def step_fn(state, tokens):
        traces.append(1)
        return table(state, tokens)

    run = jax.jit(
        lambda s: (
            decoding.beam_search(
                step_fn, s, bos_id=BOS, eos_id=EOS, max_len=6, batch_size=2, beam_size=3
            ).tokens
        )
    )
    run(jnp.zeros(2, jnp.int32))
    n = len(traces)
    run(jnp.ones(2, jnp.int32))
    assert len(traces) == n  # no retrace, and the step is traced a fixed number of times
