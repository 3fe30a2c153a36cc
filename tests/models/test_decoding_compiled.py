"""Compiled decoding equals decoding written as a Python loop, and each program traces once.

The references here are what a user writes by hand: a Python loop over tokens that calls the
model's one-step function and picks the next token on the host (numpy argmax, or the same
``fold_in(key, t)`` draw as ``lm.sample``). The compiled loops (``decoding.greedy``,
``decoding.beam_search``, ``seq2seq.decode``, ``lm.sample``) must agree with them token for token.
Trace counters (a Python counter bumped inside a cell or a loss while JAX traces it) show that a
jitted decoder and a jitted train step are traced once for inputs of one shape.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnlab
from rnnlab.cells.base import Cell
from rnnlab.data.tasks import Source
from rnnlab.models import decoding, lm
from rnnlab.models import seq2seq as s2s
from rnnlab.train import state as state_lib
from rnnlab.train import step as step_lib

BOS, EOS = 1, 2
SRC = jnp.array([[3, 4, 5, 6, 7], [8, 9, 3, 0, 0], [10, 0, 0, 0, 0]])  # [B=3, S=5], 0 = <pad>
SRC_LEN = jnp.array([5, 3, 1])
MAX_LEN = 12


def counting(cell_name: str, counter: dict) -> Cell:
    """A built-in cell reduced to its three required functions, counting how often it is traced.

    ``apply`` runs only while JAX traces (or when called eagerly), so the count is the number of
    times a compiled program was traced, not the number of tokens it produced.
    """
    base = rnnlab.cells.get(cell_name)

    def apply(params, carry, x):
        counter["traces"] += 1
        return base.apply(params, carry, x)

    return Cell(base.init, base.initial_carry, apply, hidden_size=base.hidden_size, name="count")


def _spec(cell=None, attention="bahdanau"):
    cell = cell or rnnlab.cells.get("gru")  # the translate experiment's cell
    return s2s.Seq2Seq(cell, 12, 13, 8, 16, attention=attention, attention_size=16)


@pytest.fixture(scope="module")
def model():
    spec = _spec()
    return spec, s2s.init(jax.random.key(0), spec)


def python_loop_greedy(step_fn, state, *, batch_size, max_len, eos_id):
    """Greedy decoding as a user writes it: one step_fn call per token, argmax on the host.

    Returns:
        (tokens [B, L] numpy int, summed log-probabilities [B] numpy float, extras [B, L, ...]).
    """
    tokens = np.full(batch_size, BOS, np.int32)
    done = np.zeros(batch_size, bool)
    score = np.zeros(batch_size, np.float64)
    out, extras = [], []
    for _ in range(max_len):
        state, logits, extra = step_fn(state, jnp.asarray(tokens))
        logp = np.asarray(jax.nn.log_softmax(logits, axis=-1))  # host sync, as in a user's loop
        nxt = np.where(done, eos_id, logp.argmax(-1)).astype(np.int32)
        score += np.where(done, 0.0, logp[np.arange(batch_size), nxt])
        done |= nxt == eos_id
        tokens = nxt
        out.append(nxt)
        extras.append(np.asarray(extra))
    return np.stack(out, 1), score, np.stack(extras, 1)


@pytest.fixture(scope="module")
def eos_and_reference(model):
    """An <eos> that row 0 emits by step 3 (so the loops must freeze finished rows alike), and
    the Python-loop greedy decoding of SRC with it: one jitted step per token, argmax on the host.
    """
    spec, params = model
    state = jax.jit(s2s.encode, static_argnums=0)(spec, params, SRC, SRC_LEN)
    step_fn = jax.jit(lambda st, tok: s2s.step(spec, params, st, tok))  # as a user would
    loop = lambda eos: python_loop_greedy(step_fn, state, batch_size=3, max_len=MAX_LEN, eos_id=eos)  # noqa: E731
    free, _, _ = loop(-1)  # -1: no token ends a row
    assert len(np.unique(free)) >= 3, "degenerate model: greedy repeats one token"
    eos = int(free[0, 2])
    return eos, loop(eos)


def test_compiled_greedy_equals_python_loop_token_for_token(model, eos_and_reference):
    spec, params = model
    eos, (ref_tokens, ref_score, ref_weights) = eos_and_reference
    lengths = np.array(
        [np.argmax(r == eos) + 1 if (r == eos).any() else MAX_LEN for r in ref_tokens]
    )
    assert lengths[0] <= 3 and lengths.min() < MAX_LEN  # the <eos> freeze is exercised

    @jax.jit
    def via_library_greedy(params, src, src_len):
        state = s2s.encode(spec, params, src, src_len)
        step_fn = lambda st, tok: s2s.step(spec, params, st, tok)  # noqa: E731
        return decoding.greedy(step_fn, state, bos_id=BOS, eos_id=eos, max_len=MAX_LEN,
                               batch_size=3)  # fmt: skip

    via_decode = jax.jit(
        lambda p, s, n: s2s.decode(spec, p, s, n, bos_id=BOS, eos_id=eos, max_len=MAX_LEN)
    )
    for out in (via_library_greedy(params, SRC, SRC_LEN), via_decode(params, SRC, SRC_LEN)):
        np.testing.assert_array_equal(out.tokens, ref_tokens)
        np.testing.assert_array_equal(out.lengths, lengths)
        np.testing.assert_allclose(out.scores, ref_score, rtol=1e-5)
        np.testing.assert_allclose(out.extras, ref_weights, rtol=1e-5, atol=1e-6)


def test_beam_search_of_width_one_equals_greedy_on_a_seq2seq_model(model, eos_and_reference):
    spec, params = model
    eos, (ref_tokens, ref_score, ref_weights) = eos_and_reference
    state = s2s.encode(spec, params, SRC, SRC_LEN)
    step_fn = lambda st, tok: s2s.step(spec, params, st, tok)  # noqa: E731
    # seq2seq.decode(beam_size=1) takes the greedy path, so call beam_search itself.
    beam = jax.jit(
        lambda st: decoding.beam_search(
            step_fn, st, bos_id=BOS, eos_id=eos, max_len=MAX_LEN, batch_size=3, beam_size=1
        )
    )(state)
    assert beam.tokens.shape == (3, 1, MAX_LEN)
    np.testing.assert_array_equal(beam.tokens[:, 0], ref_tokens)
    np.testing.assert_allclose(beam.scores[:, 0], ref_score, rtol=1e-5)
    np.testing.assert_allclose(beam.extras[:, 0], ref_weights, rtol=1e-5, atol=1e-6)


def test_beam_search_keeps_the_encoder_memory_out_of_its_loop_with_equal_results(model):
    """The memory a step passes through is neither carried nor reordered; results unchanged."""
    spec, params = model
    state = s2s.encode(spec, params, SRC, SRC_LEN)
    step_fn = lambda st, tok: s2s.step(spec, params, st, tok)  # noqa: E731

    def touching(st, tok):  # the same step, but its memory comes back as a new value
        st, logits, extras = step_fn(st, tok)
        return {**st, "memory": jax.tree.map(jnp.copy, st["memory"])}, logits, extras

    tokens = jnp.full((SRC.shape[0],), BOS, jnp.int32)
    fixed, _ = decoding._trace_step(step_fn, state, tokens)
    is_memory = [isinstance(path[0], jax.tree_util.DictKey) and path[0].key == "memory"
                 for path, _ in jax.tree_util.tree_leaves_with_path(state)]  # fmt: skip
    # (Bahdanau's step also passes its unused Luong "feed" through; the carries change.)
    assert any(is_memory) and all(f for f, m in zip(fixed, is_memory) if m) and not all(fixed)
    touched = decoding._trace_step(touching, state, tokens)[0]
    assert not any(f for f, m in zip(touched, is_memory) if m)

    kw = dict(bos_id=BOS, eos_id=EOS, max_len=MAX_LEN, batch_size=3, beam_size=3, alpha=0.6)
    run = lambda fn: jax.jit(lambda st: decoding.beam_search(fn, st, **kw))(state)  # noqa: E731
    kept, carried = run(step_fn), run(touching)
    for a, b in zip(kept, carried, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    assert len({tuple(t) for t in np.asarray(kept.tokens[0])}) == 3  # three distinct beams


# --- sampling from the character LM ---------------------------------------------------------

LM_SPEC = lm.make_spec("lstm", vocab_size=9, hidden_size=16, num_layers=2, embed_size=5)


def python_loop_sample(spec, params, key, prime, length, temperature, top_k):
    """Sampling as a user writes it, with lm.sample's key schedule: step t draws with
    ``categorical(fold_in(key, t), top_k_masked(logits) / temperature)``.

    The prime is read one character at a time through the same step function.
    """
    step_fn = jax.jit(lm.step_fn(spec, params))  # jitted: an eager lax.scan would recompile
    carries = lm.initial_carries(spec, params, prime.shape[0])
    for t in range(prime.shape[1]):
        carries, logits, _ = step_fn(carries, prime[:, t])
    out = []
    for t in range(length):
        logits = np.asarray(logits, np.float32)  # host sync, as in a user's loop
        if top_k:
            kth = np.sort(logits, axis=-1)[:, -top_k][:, None]
            logits = np.where(logits < kth, -np.inf, logits)
        key_t = jax.random.fold_in(key, t)
        nxt = np.asarray(jax.random.categorical(key_t, jnp.asarray(logits / temperature), -1))
        out.append(nxt.astype(np.int32))
        carries, logits, _ = step_fn(carries, jnp.asarray(out[-1]))
    return np.stack(out, 1)


@pytest.mark.parametrize("temperature, top_k", [(1.0, 0), (0.8, 3)])
def test_compiled_sampling_equals_python_loop_with_the_same_keys(temperature, top_k):
    params = lm.init(jax.random.key(3), LM_SPEC)
    prime = jnp.array([[4, 1, 7], [0, 8, 2]])  # [B=2, P=3]
    key = jax.random.key(11)
    got = lm.sample(LM_SPEC, params, key, prime, 40, temperature=temperature, top_k=top_k)
    ref = python_loop_sample(LM_SPEC, params, key, prime, 40, temperature, top_k)
    assert len(np.unique(ref)) >= min(4, top_k or 9)  # a real draw, not a repeated argmax
    np.testing.assert_array_equal(got, ref)
    # Another key gives another sample: the loops agree because they share the schedule.
    other = lm.sample(LM_SPEC, params, jax.random.key(12), prime, 40, temperature, top_k)
    assert (np.asarray(other) != ref).any()


# --- trace counters ------------------------------------------------------------------------


def test_jitted_seq2seq_decoder_traces_once_for_new_inputs_of_one_shape():
    counter = {"traces": 0}
    spec = _spec(counting("gru", counter))
    params = s2s.init(jax.random.key(1), spec)
    counter["traces"] = 0  # init may call nothing, but count from here
    decode = jax.jit(
        lambda p, s, n: s2s.decode(spec, p, s, n, bos_id=BOS, eos_id=EOS, max_len=MAX_LEN).tokens
    )
    decode(params, SRC, SRC_LEN).block_until_ready()
    once = counter["traces"]
    assert 0 < once < MAX_LEN  # per scan body (encoder, decoder), never per token
    rng = np.random.default_rng(0)
    for i in range(2):
        src = jnp.asarray(rng.integers(3, 12, SRC.shape), jnp.int32)
        lengths = jnp.asarray(rng.integers(1, SRC.shape[1] + 1, 3), jnp.int32)
        params = jax.tree.map(lambda a, i=i: a * (1.0 + 0.1 * i), params)  # new values, same tree
        decode(params, src, lengths).block_until_ready()
    assert counter["traces"] == once


def _text_source(key, batch_size=4, length=9):
    """Random character windows of one shape, [B, length]; batch i draws with fold_in(key, i)."""

    def init():
        return {"key": key, "index": jnp.zeros((), jnp.int32)}

    def next_batch(data_state):
        key_i = jax.random.fold_in(data_state["key"], data_state["index"])
        batch = jax.random.randint(key_i, (batch_size, length), 0, LM_SPEC.vocab_size)
        return batch, {"key": data_state["key"], "index": data_state["index"] + 1}

    return Source(init, next_batch)


def test_jitted_train_step_traces_once_over_three_steps():
    counter = {"traces": 0, "loss": 0}
    spec = LM_SPEC._replace(cell=counting("lstm", counter))
    source = _text_source(jax.random.key(2))

    def loss_fn(params, batch, key):
        counter["loss"] += 1
        _, logits = lm.apply(spec, params, batch[:, :-1])  # teacher forcing: [B, T - 1, V]
        return lm.cross_entropy(logits, batch[:, 1:]).mean(), {}

    tx = optax.adam(1e-2)
    state = state_lib.create(lm.init(jax.random.key(0), spec), tx, jax.random.key(1), source.init())
    train_step = jax.jit(step_lib.make_step(loss_fn, tx, source.next, clip_norm=1.0))
    losses = []
    for _ in range(3):
        state, metrics = train_step(state)
        losses.append(float(metrics["loss"]))  # host sync; fine in a test
    # Traced once: steps 2 and 3 (new params, optimiser state, data position) reuse the program.
    assert counter["loss"] == 1
    assert 0 < counter["traces"] <= 2 * spec.num_layers  # scan bodies, never per character
    assert int(state.step) == 3 and int(state.data_state["index"]) == 3
    assert len(set(losses)) == 3  # three different batches and params went through it
