"""Runners against plain Python loops: padding, reversal, bidirectional, stacking, TBPTT."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab import cells
from tests.conftest import to64

B, T, D, H = 4, 7, 3, 5
LENGTHS = jnp.array([7, 4, 1, 0])
CELLS = ["rnn", "lstm", "gru", "tests._user_cell:mgu"]


def _setup(name, seed=0):
    cell = cells.get(name)
    params = cell.init(jax.random.key(seed), D, H)
    xs = jax.random.normal(jax.random.key(seed + 1), (B, T, D))
    return cell, params, xs


def _loop(cell, params, x, carry=None):
    """One sequence x [T, D] step by step in Python; returns (carry, [T, H])."""
    if carry is None:
        carry = cell.initial_carry(1, H)
    ys = []
    for t in range(x.shape[0]):
        carry, y = cell.apply(params, carry, x[t][None])
        ys.append(y[0])
    return carry, (jnp.stack(ys) if ys else jnp.zeros((0, H)))


@pytest.mark.parametrize("name", CELLS)
def test_unroll_with_lengths_matches_per_sequence_loop(name):
    cell, params, xs = _setup(name)
    final, ys = rnnlab.unroll(cell, params, xs, lengths=LENGTHS)
    for b, n in enumerate(LENGTHS.tolist()):
        c_ref, y_ref = _loop(cell, params, xs[b, :n])
        np.testing.assert_allclose(ys[b, :n], y_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ys[b, n:], 0.0)
        for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(c_ref)):
            np.testing.assert_allclose(got[b], want[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", CELLS)
def test_reverse_starts_at_each_sequences_own_last_step(name):
    cell, params, xs = _setup(name)
    final, ys = rnnlab.unroll(cell, params, xs, lengths=LENGTHS, reverse=True)
    for b, n in enumerate(LENGTHS.tolist()):
        c_ref, y_ref = _loop(cell, params, xs[b, :n][::-1])
        np.testing.assert_allclose(ys[b, :n], y_ref[::-1], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ys[b, n:], 0.0)
        for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(c_ref)):
            np.testing.assert_allclose(got[b], want[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", CELLS)
def test_padded_bidirectional_matches_per_sequence_loops(name):
    cell, _, xs = _setup(name)
    params = rnnlab.init_bidirectional(cell, jax.random.key(5), D, H)
    (c_f, c_b), ys = rnnlab.bidirectional(cell, params, xs, lengths=LENGTHS)
    assert ys.shape == (B, T, 2 * H)
    for b, n in enumerate(LENGTHS.tolist()):
        _, y_f = _loop(cell, params["forward"], xs[b, :n])
        cb_ref, y_b = _loop(cell, params["backward"], xs[b, :n][::-1])
        np.testing.assert_allclose(ys[b, :n, :H], y_f, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ys[b, :n, H:], y_b[::-1], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ys[b, n:], 0.0)
        for got, want in zip(jax.tree.leaves(c_b), jax.tree.leaves(cb_ref)):
            np.testing.assert_allclose(got[b], want[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", CELLS)
def test_padding_does_not_change_real_steps(name):
    cell, params, xs = _setup(name)
    padded = jnp.concatenate([xs, jax.random.normal(jax.random.key(9), (B, 6, D))], axis=1)
    weights = jax.random.normal(jax.random.key(8), (B, T, 2 * H))

    def loss(params, xs, extra):
        bp = rnnlab.init_bidirectional(cell, jax.random.key(5), D, H)
        bp = {"forward": params, "backward": bp["backward"]}
        (c_f, _), ys = rnnlab.bidirectional(cell, bp, xs, lengths=LENGTHS)
        return jnp.sum(ys[:, :T] * weights) + sum(jnp.sum(c) for c in jax.tree.leaves(c_f))

    (l1, g1) = jax.value_and_grad(loss, argnums=(0, 1))(params, xs, 0)
    (l2, g2) = jax.value_and_grad(loss, argnums=(0, 1))(params, padded, 6)
    # The loss sums B*T*2H = 280 products of size ~1 that largely cancel: float32 rounding of
    # two differently shaped programs (XLA fuses them differently) differs by ~1e-7 absolute.
    np.testing.assert_allclose(l1, l2, rtol=1e-6, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g1[0], g2[0])
    np.testing.assert_allclose(g1[1], g2[1][:, :T], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(g2[1][:, T:], 0.0)


@pytest.mark.parametrize("name", CELLS)
def test_stack_matches_layer_by_layer_loops(name):
    cell, _, xs = _setup(name)
    params = rnnlab.init_stack(cell, jax.random.key(2), D, H, 3, bidirectional=True)
    finals, ys = rnnlab.stack(cell, params, xs, lengths=LENGTHS, bidirectional=True)
    assert len(finals) == 3 and ys.shape == (B, T, 2 * H)
    for b, n in enumerate(LENGTHS.tolist()):
        h = xs[b, :n]
        for p in params:
            _, y_f = _loop(cell, p["forward"], h)
            _, y_b = _loop(cell, p["backward"], h[::-1])
            h = jnp.concatenate([y_f, y_b[::-1]], axis=-1)
        np.testing.assert_allclose(ys[b, :n], h, rtol=1e-4, atol=1e-5)


def test_stack_residual_and_dropout():
    cell, _, xs = _setup("gru")
    params = rnnlab.init_stack(cell, jax.random.key(2), D, H, 3)
    _, plain = rnnlab.stack(cell, params, xs)
    _, res = rnnlab.stack(cell, params, xs, residual=True)
    # Layer 1 has no residual (D != H); layers 2 and 3 add their input.
    h1 = rnnlab.unroll(cell, params[0], xs)[1]
    h2 = rnnlab.unroll(cell, params[1], h1)[1] + h1
    h3 = rnnlab.unroll(cell, params[2], h2)[1] + h2
    np.testing.assert_allclose(res, h3, rtol=1e-5, atol=1e-6)
    assert not np.allclose(plain, res)
    key = jax.random.key(0)
    _, d1 = rnnlab.stack(cell, params, xs, dropout=0.5, key=key)
    _, d2 = rnnlab.stack(cell, params, xs, dropout=0.5, key=key)
    np.testing.assert_array_equal(d1, d2)  # a key fixes the mask
    assert not np.allclose(d1, plain)
    with pytest.raises(ValueError, match="dropout > 0 needs key"):
        rnnlab.stack(cell, params, xs, dropout=0.5)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("chunk", [7, 10])
def test_tbptt_with_chunk_covering_the_sequence_is_full_bptt(name, chunk, x64):
    cell, params, xs = _setup(name)
    params, xs = to64(params), to64(xs)
    carry = to64(jax.tree.map(lambda c: c + 0.2, cell.initial_carry(B, H)))

    def loss(runner, params, xs, carry):
        final, ys = runner(params, xs, carry)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(final))

    def full(p, x, c):
        return rnnlab.unroll(cell, p, x, carry=c, lengths=LENGTHS)

    def chunked(p, x, c):
        return rnnlab.tbptt(cell, p, x, chunk=chunk, carry=c, lengths=LENGTHS)

    g_full = jax.jit(jax.grad(lambda *a: loss(full, *a), argnums=(0, 1, 2)))(params, xs, carry)
    g_tb = jax.jit(jax.grad(lambda *a: loss(chunked, *a), argnums=(0, 1, 2)))(params, xs, carry)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12), g_full, g_tb
    )


@pytest.mark.parametrize("name", ["rnn", "lstm", "tests._user_cell:mgu"])
def test_tbptt_stops_gradients_at_chunk_boundaries(name, x64):
    cell, params, xs = _setup(name)
    params, xs = to64(params), to64(xs)
    k = 3  # chunks [0, 3), [3, 6), [6, 7): a partial last chunk

    def reference(p, x):
        carry, outs = None, []
        for start in range(0, T, k):
            if carry is not None:
                carry = jax.lax.stop_gradient(carry)
            carry, ys = rnnlab.unroll(cell, p, x[:, start : start + k], carry=carry)
            outs.append(ys)
        return carry, jnp.concatenate(outs, axis=1)

    def loss(runner, p, x):
        return jnp.sum(jnp.sin(runner(p, x)[1]))

    tb = rnnlab.tbptt(cell, params, xs, chunk=k)
    ref = reference(params, xs)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), tb, ref)
    g_tb = jax.grad(lambda p, x: loss(lambda *a: rnnlab.tbptt(cell, *a, chunk=k), p, x))(params, xs)
    g_ref = jax.grad(lambda p, x: loss(reference, p, x))(params, xs)
    g_full = jax.grad(lambda p, x: loss(lambda *a: rnnlab.unroll(cell, *a), p, x))(params, xs)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12), g_tb, g_ref)
    assert not np.allclose(g_tb["w_h"], g_full["w_h"])


@pytest.mark.parametrize("name", ["lstm", "tests._user_cell:mgu"])  # project/step and apply paths
def test_jit_grad_and_vmap_compose_with_runners(name):
    cell, params, xs = _setup(name)
    bparams = rnnlab.init_bidirectional(cell, jax.random.key(4), D, H)
    sparams = rnnlab.init_stack(cell, jax.random.key(4), D, H, 2)
    runners = {
        "unroll": lambda p, x: rnnlab.unroll(cell, p[0], x, lengths=LENGTHS)[1],
        "reverse": lambda p, x: rnnlab.unroll(cell, p[0], x, lengths=LENGTHS, reverse=True)[1],
        "bidirectional": lambda p, x: rnnlab.bidirectional(cell, p[1], x, lengths=LENGTHS)[1],
        "stack": lambda p, x: rnnlab.stack(cell, p[2], x, lengths=LENGTHS)[1],
        "tbptt": lambda p, x: rnnlab.tbptt(cell, p[0], x, chunk=3, lengths=LENGTHS)[1],
    }
    all_params = (params, bparams, sparams)
    for label, run in runners.items():
        eager = run(all_params, xs)
        np.testing.assert_allclose(jax.jit(run)(all_params, xs), eager, rtol=1e-5, atol=1e-6)
        grads = jax.jit(jax.grad(lambda p, x, run=run: jnp.sum(run(p, x) ** 2)))(all_params, xs)
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads)), label
        # vmap over a leading model axis of params (a sweep) and over a batch of batches, each
        # in one jit (run eagerly, a vmapped runner dispatches, and compiles, op by op).
        models = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), all_params)
        swept = jax.jit(jax.vmap(run, in_axes=(0, None)))(models, xs)
        np.testing.assert_allclose(swept[0], eager, rtol=1e-5, atol=1e-6)
        second = jax.jit(run)(jax.tree.map(lambda a: a[1], models), xs)  # the 2 * a model
        np.testing.assert_allclose(swept[1], second, rtol=1e-5, atol=1e-6)
        batches = jnp.stack([xs, -xs])
        batched = jax.jit(jax.vmap(run, in_axes=(None, 0)))(all_params, batches)
        np.testing.assert_allclose(batched[0], eager, rtol=1e-5, atol=1e-6)


def test_time_major_equals_batch_major():
    cell, params, xs = _setup("lstm")
    c1, y1 = rnnlab.unroll(cell, params, xs, lengths=LENGTHS)
    c2, y2 = rnnlab.unroll(cell, params, jnp.swapaxes(xs, 0, 1), lengths=LENGTHS, time_major=True)
    np.testing.assert_allclose(y1, jnp.swapaxes(y2, 0, 1), rtol=1e-6)
    _, y3 = rnnlab.unroll(cell, params, xs, lengths=LENGTHS, unroll=4)
    np.testing.assert_allclose(y1, y3, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(xs=jnp.zeros((4, 3))), r"xs: expected a 3-d array \[batch, time, features\]"),
        (dict(lengths=jnp.array([1.0, 2, 3, 4])), "lengths: expected integers"),
        (dict(lengths=jnp.array([1, 2])), r"lengths: expected shape \(4,\)"),
        (dict(lengths=jnp.array([1, 2, 3, -1])), r"lengths: expected values in \[0, 7\]"),
        (dict(lengths=jnp.array([1, 2, 3, 8])), r"lengths: expected values in \[0, 7\]"),
    ],
)
def test_bad_input_names_the_argument(kwargs, message):
    cell, params, xs = _setup("lstm")
    kwargs = {"xs": xs, **kwargs}
    with pytest.raises(ValueError, match=message):
        rnnlab.unroll(cell, params, **kwargs)


def test_not_a_cell_is_refused():
    with pytest.raises(TypeError, match="cell: expected an rnnlab Cell"):
        rnnlab.unroll("lstm", {}, jnp.zeros((1, 2, 3)))
