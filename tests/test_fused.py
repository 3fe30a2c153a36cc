"""The fused scans (rnnlab/cells/fused.py) against autodiff of a plain per-step reference.

Every check runs in float64, where a hand-written backward pass that is right agrees with
``jax.grad`` of a ``lax.scan`` over ``cell.apply`` to rounding (~1e-15); 1e-10 leaves room for
accumulation order and still catches any wrong term.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import PartitionSpec as P

import rnnlab
from rnnlab import cells, recurrent
from rnnlab.cells import gru, lstm, rnn

FUSED = {
    "lstm": lambda: lstm(),
    "gru": lambda: gru(),
    "gru_reset_after": lambda: gru(reset_after=True),
    "rnn_tanh": lambda: rnn(),
    "rnn_relu": lambda: rnn(activation_fn="relu"),
    "rnn_identity": lambda: rnn(activation_fn="identity", spectral_radius=0.9),
    "rnn_sigmoid": lambda: rnn(activation_fn="sigmoid"),
}
UNFUSED = {
    "lstm_peepholes": lambda: lstm(peepholes=True),
    "lstm_cifg": lambda: lstm(variant="cifg"),
    "lstm_fgr": lambda: lstm(variant="fgr"),
}
B, T, D, H = 3, 7, 4, 5
TOL = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture(autouse=True)
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def setup(cell, seed=0):
    """float64 params (peepholes, biases nonzero), a random carry, xs [B, T, D], lengths [B]."""
    keys = jax.random.split(jax.random.key(seed), 4)
    params = jax.tree.map(lambda p: p.astype(jnp.float64), cell.init(keys[0], D, H))
    params = {k: (0.3 * jnp.ones_like(v) if k.startswith("p_") else v) for k, v in params.items()}
    for k_b, name in zip(jax.random.split(keys[1], 2), ("b", "b_hn"), strict=True):
        if name in params:  # nonzero biases, so that a wrong bias term shows in the forward
            params[name] = 0.1 * jax.random.normal(k_b, params[name].shape, jnp.float64)
    carry = recurrent.default_carry(cell, params, B, jnp.float64)
    leaves, tree = jax.tree.flatten(carry)
    k_carry = jax.random.split(keys[2], len(leaves))
    carry = tree.unflatten(
        [0.5 * jax.random.normal(k, c.shape, c.dtype) for k, c in zip(k_carry, leaves, strict=True)]
    )
    xs = jax.random.normal(keys[3], (B, T, D), jnp.float64)
    return params, carry, xs, jnp.array([T, 4, 0])


def reference(cell, params, carry, xs, mask):
    """A plain per-step lax.scan over ``cell.apply``: xs [B, T, D], mask [B, T] or None."""

    def body(c, inputs):
        x, m = inputs
        new, y = cell.apply(params, c, x)
        if m is None:
            return new, y
        new = jax.tree.map(lambda n, o: jnp.where(m[:, None], n, o), new, c)
        return new, jnp.where(m[:, None], y, 0.0)

    mask_tm = None if mask is None else mask.T  # [T, B]
    carry, ys = lax.scan(body, carry, (jnp.swapaxes(xs, 0, 1), mask_tm))
    return carry, jnp.swapaxes(ys, 0, 1)  # [B, T, H]


def fused(cell, params, carry, xs, mask):
    """The runner's path (project, then ``cell.scan``), same signature as ``reference``."""
    mask_tm = None if mask is None else mask.T  # [T, B]
    carry, ys = recurrent.scan_time_major(cell, params, carry, jnp.swapaxes(xs, 0, 1), mask_tm)
    return carry, jnp.swapaxes(ys, 0, 1)  # [B, T, H]


def loss_of(run, cell, mask, weights):
    """value_and_grad of a random linear read-out of the outputs and the final carry (so every
    cotangent is nonzero), w.r.t. (params, xs, carry); the forward results come back as aux."""

    def loss(params, xs, carry):
        final, ys = run(cell, params, carry, xs, mask)
        w_ys, w_carry = weights
        value = jnp.sum(ys * w_ys)
        for c, w in zip(jax.tree.leaves(final), w_carry, strict=True):
            value = value + jnp.sum(c * w)
        return value, (final, ys)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


def random_weights(carry, seed=7):
    k_y, k_c = jax.random.split(jax.random.key(seed))
    leaves = jax.tree.leaves(carry)
    ks = jax.random.split(k_c, len(leaves))
    w_carry = [jax.random.normal(k, c.shape, jnp.float64) for k, c in zip(ks, leaves, strict=True)]
    return jax.random.normal(k_y, (B, T, H), jnp.float64), w_carry


def assert_trees_close(a, b, **tol):
    for (path, x), y in zip(jax.tree.leaves_with_path(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, err_msg=jax.tree_util.keystr(path), **(tol or TOL))


MASKS = {
    "none": lambda lengths: None,
    # Holes anywhere, not only a padded tail: the scan contract allows any [T, B] mask.
    "holes": lambda lengths: jnp.arange(T)[None, :] % (jnp.arange(B)[:, None] + 2) != 1,
}


@pytest.mark.parametrize("mask_kind", list(MASKS))
@pytest.mark.parametrize("name", list(FUSED))
def test_fused_gradients_match_autodiff_of_per_step_reference(name, mask_kind):
    cell = FUSED[name]()
    assert cell.scan is not None, f"{name} should take the fused path"
    params, carry, xs, lengths = setup(cell)
    mask = MASKS[mask_kind](lengths)
    weights = random_weights(carry)
    (value, outputs), grads = loss_of(fused, cell, mask, weights)(params, xs, carry)
    (value_ref, outputs_ref), grads_ref = loss_of(reference, cell, mask, weights)(params, xs, carry)
    np.testing.assert_allclose(value, value_ref, **TOL)
    assert_trees_close(outputs, outputs_ref)  # forward: final carry and outputs
    assert_trees_close(grads, grads_ref)  # params, xs, initial carry
    # A gradient that is identically zero would pass the comparison vacuously.
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("name", list(FUSED))
def test_unroll_takes_the_fused_path_with_and_without_lengths(name):
    cell = FUSED[name]()
    params, _, xs, lengths = setup(cell)
    for lens in (None, lengths):
        jaxpr = jax.make_jaxpr(lambda p, lens=lens: recurrent.unroll(cell, p, xs, lengths=lens))
        assert "custom_vjp_call" in str(jaxpr(params))


def test_padding_does_not_change_real_steps_or_gradients():
    """unroll(lengths=...) end to end; padded inputs (here huge) reach neither carry nor grads."""
    cell = lstm()
    params, carry, xs, lengths = setup(cell, seed=1)
    mask = recurrent.mask_from_lengths(lengths, T)  # [B, T]
    dirty = jnp.where(mask[..., None], xs, 1e6)

    def via_unroll(cell, params, carry, xs, mask):
        return recurrent.unroll(cell, params, xs, carry=carry, lengths=lengths)

    grad = loss_of(via_unroll, cell, mask, random_weights(carry))
    (value, outputs), grads = grad(params, dirty, carry)
    (value_ref, outputs_ref), grads_ref = loss_of(reference, cell, mask, random_weights(carry))(
        params, xs, carry
    )
    assert_trees_close(
        (value, outputs, grads[0], grads[2]), (value_ref, outputs_ref, grads_ref[0], grads_ref[2])
    )


@pytest.mark.parametrize("name", list(FUSED) + list(UNFUSED))
def test_apply_equals_step_after_project(name):
    cell = {**FUSED, **UNFUSED}[name]()
    params, carry, xs, _ = setup(cell, seed=2)
    x = xs[:, 0]  # [B, D]
    assert_trees_close(
        cell.apply(params, carry, x), cell.step(params, carry, cell.project(params, x))
    )


@pytest.mark.parametrize("name", list(UNFUSED))
def test_options_without_fused_scan_run_on_plain_scan(name):
    cell = UNFUSED[name]()
    assert cell.scan is None
    params, carry, xs, lengths = setup(cell, seed=3)
    mask = recurrent.mask_from_lengths(lengths, T)  # [B, T]
    assert_trees_close(
        fused(cell, params, carry, xs, mask), reference(cell, params, carry, xs, mask)
    )


def test_vmap_over_a_leading_model_axis_matches_a_loop():
    cell = gru(reset_after=True)
    models = [setup(cell, seed=s) for s in (5, 6)]
    params = jax.tree.map(lambda *p: jnp.stack(p), *(m[0] for m in models))
    _, carry, xs, lengths = models[0]
    grad = loss_of(fused, cell, MASKS["holes"](lengths), random_weights(carry))
    batched = jax.vmap(grad, in_axes=(0, None, None))(params, xs, carry)
    for k, (p, *_) in enumerate(models):
        assert_trees_close(jax.tree.map(lambda g, k=k: g[k], batched), grad(p, xs, carry))


@pytest.mark.parametrize("name", ["gru_reset_after"])  # casts w_h, b_hn and the carry
def test_fused_scan_runs_inside_shard_map_with_check_vma(name):
    """A zero carry is 'invariant' and the batch 'varying': the fused scan casts, so it runs.

    One device is enough for the type check. Params are replicated, the batch is split; under
    check_vma=True ``jax.grad`` of the per-shard loss is already the sum over the shards.
    """
    cell = FUSED[name]()
    params, _, xs, lengths = setup(cell, seed=8)
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))

    def local_loss(params, xs, lengths):
        _, ys = recurrent.unroll(cell, params, xs, lengths=lengths)  # carry from jnp.zeros
        return jnp.sum(jnp.sin(ys))

    run = jax.shard_map(
        jax.grad(local_loss),
        mesh=mesh,
        in_specs=(P(), P("data"), P("data")),
        out_specs=P(),
        check_vma=True,
    )
    assert_trees_close(jax.jit(run)(params, xs, lengths), jax.grad(local_loss)(params, xs, lengths))


def test_plain_cell_allows_forward_mode_and_agrees():
    cell = cells.get("lstm")
    params = cell.init(jax.random.key(0), 3, 4)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    run = lambda c: lambda x: rnnlab.unroll(c, params, x)[1]  # noqa: E731
    forward = jax.jacfwd(run(cell.plain()))(xs)
    reverse = jax.jacrev(run(cell))(xs)
    np.testing.assert_allclose(forward, reverse, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jacfwd(run(cell))(xs)


# Floats per time step and batch row that XLA holds for a fused training step (jit of grad over
# unroll), as multiples of H on top of the D of the time-major input: the residuals the forward
# saves plus what every step's inputs, outputs and cotangents take. The forward writes its gates
# over the input projection's rows and the backward its dz over the gates
# (fused._scan_over_rows): with buffers of their own the LSTM held D + 19H, the GRU D + 13H and,
# reset after the matmul, D + 15H. The GRU (reset before) saves r h_prev for dW_hn instead of
# keeping the gates: D + 10H before session 12.
STEP_MEMORY_H = {"lstm": 11, "gru": 9, "gru_reset_after": 9, "rnn_tanh": 4}


@pytest.mark.parametrize("name", sorted(STEP_MEMORY_H))
def test_training_step_memory_per_time_step(name):
    cell = FUSED[name]()
    B, D, H = 8, 16, 32
    grad = jax.jit(jax.grad(lambda p, x: jnp.mean(recurrent.unroll(cell, p, x)[1] ** 2)))
    # As users compile it: the suite's -O0 (tests/conftest.py) assigns buffers differently.
    options = {"xla_backend_optimization_level": 3}
    with jax.enable_x64(False):  # float32, as the models train (not the module's float64)
        params = cell.init(jax.random.key(0), D, H)
        temps = [
            grad.lower(params, jnp.zeros((B, T, D)))
            .compile(options)
            .memory_analysis()
            .temp_size_in_bytes
            for T in (200, 400)
        ]
    floats_per_step = (temps[1] - temps[0]) / (200 * B * 4)
    assert floats_per_step <= D + (STEP_MEMORY_H[name] + 0.1) * H, (floats_per_step - D) / H
