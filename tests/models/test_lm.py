"""The character-level language model: the lecture's "hello", truncated BPTT, bits per
character, sampling, hidden states.

Models are built once per module (fixtures): on a loaded 2-core machine every new parameter
shape costs seconds of compilation, most of it in the orthogonal initialiser.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab import cells
from rnnlab.cells import Cell
from rnnlab.data import text as text_lib
from rnnlab.models import decoding, lm

apply = jax.jit(lm.apply, static_argnums=0)


def make_update(spec, learning_rate):
    tx = optax.adam(learning_rate)
    loss_fn = functools.partial(lm.tbptt_loss, spec)

    @jax.jit
    def update(params, opt_state, carries, inputs, targets, reset):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (carries, _)), grads = grad_fn(params, inputs, targets, carries, reset)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, carries, loss

    return tx, update


@pytest.fixture(scope="module")
def hello():
    """The lecture's example: vocabulary h, e, l, o as one-hot vectors, teacher forcing on
    "hello" (inputs h, e, l, l; targets e, l, l, o)."""
    vocab = text_lib.CharVocab.from_text("helo", unk=False)
    spec = lm.make_spec("rnn", vocab_size=vocab.size, hidden_size=8)
    inputs, targets = vocab.encode("hell")[None], vocab.encode("ello")[None]  # [1, 4]
    params = lm.init(jax.random.key(0), spec)
    tx, update = make_update(spec, 0.05)
    opt_state = tx.init(params)
    zero = lm.initial_carries(spec, params, 1)
    for _ in range(150):
        params, opt_state, _, loss = update(params, opt_state, zero, inputs, targets, True)
    return vocab, spec, params, float(loss)


def test_hello_toy_predicts_e_l_l_o_after_h_e_l_l(hello):
    vocab, spec, params, loss = hello
    assert spec.vocab_size == 4 and loss < 0.05
    _, logits = apply(spec, params, jnp.asarray(vocab.encode("hell")[None]))
    # After "h" -> e, "he" -> l, "hel" -> l, "hell" -> o: the second l needs the state.
    assert vocab.decode(jnp.argmax(logits[0], -1)) == "ello"
    generated = lm.sample(spec, params, jax.random.key(1), vocab.encode("h"), 4, temperature=0.0)
    assert vocab.decode(generated) == "ello"


# --- truncated BPTT --------------------------------------------------------------------------

SPEC = lm.make_spec("lstm", vocab_size=5, hidden_size=16)


@pytest.fixture(scope="module")
def lstm_params():
    return lm.init(jax.random.key(0), SPEC)


def memory_stream(seed, num_blocks):
    """Blocks "X..x.", X in {A, B} at random, x its lowercase three characters later.

    The recall is short enough to be learnt inside a chunk of k = 4, but blocks of 5 fall on
    every phase of the chunks, so most recalls need the state carried across a boundary.
    """
    letters = np.random.default_rng(seed).integers(0, 2, num_blocks)  # 0: A, 1: B
    blocks = np.zeros((num_blocks, 5), np.int32)  # ids: . = 0, A = 1, B = 2, a = 3, b = 4
    blocks[:, 0], blocks[:, 3] = 1 + letters, 3 + letters
    return blocks.reshape(-1)


def run_streams(step_fn, params, opt_state, streams, steps, reset_always):
    """``steps`` TBPTT steps (training if opt_state is given); returns params and the mean loss."""
    carries = lm.initial_carries(SPEC, params, streams.batch_size)
    losses = []
    for step in range(steps):
        batch = streams.batch(step)
        reset = True if reset_always else batch.reset
        if opt_state is None:
            loss, (carries, _) = step_fn(params, batch.inputs, batch.targets, carries, reset)
        else:
            params, opt_state, carries, loss = step_fn(
                params, opt_state, carries, batch.inputs, batch.targets, reset
            )
        losses.append(float(loss))
    return params, float(np.mean(losses))


def test_tbptt_carry_beats_reset_on_a_stream_that_needs_memory_across_chunks(lstm_params):
    k, B = 4, 16
    train = text_lib.StreamBatcher(memory_stream(0, B * 20), batch_size=B, seq_len=k)
    valid = text_lib.StreamBatcher(memory_stream(1, B * 20), batch_size=B, seq_len=k)
    tx, update = make_update(SPEC, 1e-2)
    evaluate = jax.jit(functools.partial(lm.tbptt_loss, SPEC))
    results = {}
    for reset_always in (False, True):
        opt_state = tx.init(lstm_params)
        params, _ = run_streams(update, lstm_params, opt_state, train, 200, reset_always)
        _, results[reset_always] = run_streams(
            evaluate, params, None, valid, valid.steps_per_epoch, reset_always
        )
    # With the carry the only surprise is the fresh letter: ln 2 per 5 characters (0.139 nats).
    # Reset at every chunk, the model loses the phase and most recalls (about 0.37 nats).
    assert results[False] < 0.2 < results[True] - 0.1, results


def test_tbptt_loss_stops_the_gradient_into_the_carried_state(lstm_params):
    tokens = jnp.asarray(memory_stream(2, 4)).reshape(2, 10)
    loss = jax.jit(functools.partial(lm.tbptt_loss, SPEC))
    carries = lm.initial_carries(SPEC, lstm_params, 2)
    _, (carries, _) = loss(lstm_params, tokens[:, :4], tokens[:, 1:5], carries)
    grads = jax.grad(lambda c: loss(lstm_params, tokens[:, 4:8], tokens[:, 5:9], c)[0])(carries)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))
    # The new carries are those of one forward pass over both chunks.
    full, _ = apply(SPEC, lstm_params, tokens[:, :8])
    _, (chained, _) = loss(lstm_params, tokens[:, 4:8], tokens[:, 5:9], carries)
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(chained)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# --- bits per character ----------------------------------------------------------------------


@pytest.mark.parametrize("chunk, num_streams", [(2, 1), (4, 3)])
def test_bits_per_char_matches_a_hand_computed_value(lstm_params, chunk, num_streams):
    # Zero readout weights: the prediction is softmax(b) = (1/2, 1/4, 1/8, 1/16, 1/16) whatever
    # the state, so character c costs 1, 2, 3, 4, 4 bits.
    params = dict(lstm_params)
    params["readout"] = {
        "w": jnp.zeros((16, 5)),
        "b": jnp.log(jnp.array([1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 16])),
    }
    tokens = np.array([0, 1, 2, 0, 4, 3, 0])  # predicted: 1, 2, 0, 4, 3, 0
    expected = (2 + 3 + 1 + 4 + 4 + 1) / 6
    got = lm.bits_per_char(SPEC, params, tokens, chunk=chunk, num_streams=num_streams)
    assert got == pytest.approx(expected, rel=1e-6)


def test_bits_per_char_in_chunks_equals_one_pass_over_the_text(lstm_params):
    tokens = memory_stream(3, 20)  # 100 characters
    _, logits = apply(SPEC, lstm_params, jnp.asarray(tokens[None, :-1]))
    logp = jax.nn.log_softmax(logits[0], -1)[np.arange(99), tokens[1:]]
    expected = -float(logp.mean()) / np.log(2)  # base 2, per character predicted
    got = lm.bits_per_char(SPEC, lstm_params, tokens, chunk=7)
    assert got == pytest.approx(expected, rel=1e-5)


# --- sampling and hidden states --------------------------------------------------------------


def counting_lstm(counter):
    """The LSTM as a user's cell (apply only) that counts how often it is traced."""
    base = cells.get("lstm")

    def apply(params, carry, x):
        counter["traces"] += 1
        return base.apply(params, carry, x)

    return Cell(base.init, base.initial_carry, apply, hidden_size=base.hidden_size, name="count")


TRACES = {"traces": 0}
DEEP = lm.make_spec(counting_lstm(TRACES), vocab_size=6, hidden_size=16, num_layers=2, embed_size=4)


@pytest.fixture(scope="module")
def deep_params():
    return lm.init(jax.random.key(0), DEEP)


def test_sampling_at_temperature_zero_equals_argmax_decoding_and_compiles_once(deep_params):
    prime = jnp.array([[1, 4, 2], [5, 0, 2]])  # same last character: greedy's one bos_id
    carries, _ = apply(DEEP, deep_params, prime[:, :-1])
    step = lm.step_fn(DEEP, deep_params)
    reference = decoding.greedy(step, carries, bos_id=2, eos_id=-1, max_len=30, batch_size=2)
    key = jax.random.key(7)
    at_zero = lm.sample(DEEP, deep_params, key, prime, 30, temperature=0.0)
    traces = TRACES["traces"]
    np.testing.assert_array_equal(at_zero, reference.tokens)
    cold = lm.sample(DEEP, deep_params, jax.random.key(8), prime, 30, temperature=1e-6)
    warm = lm.sample(DEEP, deep_params, jax.random.key(8), prime, 30, temperature=1.0)
    assert TRACES["traces"] == traces  # a new key or temperature: no retrace, no recompile
    np.testing.assert_array_equal(cold, reference.tokens)  # temperature -> 0 is argmax
    assert warm.shape == (2, 30) and (np.asarray(warm) != np.asarray(reference.tokens)).any()
    top1 = lm.sample(DEEP, deep_params, key, prime, 30, temperature=1.0, top_k=1)
    assert TRACES["traces"] - traces <= 2 * DEEP.num_layers  # per scan body, not per character
    np.testing.assert_array_equal(top1, reference.tokens)


def test_hidden_states_give_h_and_lstm_cell_state_consistent_with_apply(deep_params, hello):
    tokens = memory_stream(4, 4) + 1  # [20]
    layers = lm.hidden_states(DEEP, deep_params, tokens)
    assert len(layers) == 2 and layers[1]["c"].shape == layers[1]["h"].shape == (20, 16)
    _, logits = apply(DEEP, deep_params, jnp.asarray(tokens[None]))
    readout = layers[-1]["h"] @ deep_params["readout"]["w"] + deep_params["readout"]["b"]
    np.testing.assert_allclose(readout, logits[0], rtol=1e-5, atol=1e-5)
    # h = o * tanh(c) with o in (0, 1): |h| <= |tanh(c)|, with the same sign.
    h, c = np.asarray(layers[0]["h"]), np.tanh(np.asarray(layers[0]["c"]))
    assert np.all(np.abs(h) <= np.abs(c) + 1e-6) and np.all(h * c >= 0)
    vocab, spec, params, _ = hello  # a tanh RNN's carry is h alone
    assert set(lm.hidden_states(spec, params, vocab.encode("hello"))[0]) == {"h"}


def test_bad_arguments_are_named(lstm_params):
    with pytest.raises(ValueError, match="tokens: expected"):
        lm.apply(SPEC, lstm_params, jnp.zeros((2, 3, 1), jnp.int32))
    with pytest.raises(ValueError, match="top_k"):
        lm.sample(SPEC, lstm_params, jax.random.key(0), jnp.array([1]), 5, top_k=99)
    with pytest.raises(ValueError, match="hidden_size"):
        lm.make_spec("lstm", vocab_size=5, hidden_size=0)
