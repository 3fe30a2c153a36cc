"""remat=k (checkpointed chunks of k steps) changes memory only: values and gradients match."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab import cells, recurrent
from tests.conftest import to64

B, T, D, H = 4, 7, 3, 5
LENGTHS = jnp.array([7, 4, 1, 0])
# lstm and gru take the fused custom_vjp scan; the user's mgu the plain lax.scan over apply.
CELLS = ["lstm", "gru", "tests._user_cell:mgu"]


def _setup(name, seed=0):
    cell = cells.get(name)
    params = to64(cell.init(jax.random.key(seed), D, H))
    xs = jax.random.normal(jax.random.key(seed + 1), (B, T, D), jnp.float64)
    carry = jax.tree.map(
        lambda c: jax.random.normal(jax.random.key(seed + 2), c.shape, jnp.float64),
        recurrent.default_carry(cell, params, B, jnp.float64),
    )
    return cell, params, xs, carry


def _loss(run):
    """A scalar that weighs every output and every leaf of the final carry differently."""

    def loss(params, xs, carry):
        final, ys = run(params, xs, carry)
        w = jnp.sin(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        return jnp.sum(w * ys) + sum(jnp.sum(jnp.cos(c)) for c in jax.tree.leaves(final))

    return loss


def _assert_same(run, args, remat):
    """Outputs, final carry and gradients of run(..., remat) against run(..., None)."""

    def outputs_and_grads(r):
        loss = _loss(lambda *a: run(*a, r))
        fn = jax.value_and_grad(lambda *a: (loss(*a), run(*a, r)), argnums=(0, 1, 2), has_aux=True)
        (_, out), grad = jax.jit(fn)(*args)
        return out, grad

    out_ref, grad_ref = outputs_and_grads(None)
    out, grad = outputs_and_grads(remat)
    for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(out_ref)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    for got, want in zip(jax.tree.leaves(grad), jax.tree.leaves(grad_ref)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("name", CELLS)
def test_unroll_remat_keeps_values_and_gradients(name, lengths):
    with jax.enable_x64(True):
        cell, params, xs, carry = _setup(name)

        def run(params, xs, carry, remat):
            return rnnlab.unroll(cell, params, xs, carry=carry, lengths=lengths, remat=remat)

        # 3: a last partial chunk (7 = 3 + 3 + 1, padded and masked).
        _assert_same(run, (params, xs, carry), 3)


@pytest.mark.parametrize("remat", [1, 20])
def test_remat_of_one_step_or_of_more_than_t_steps(remat):
    with jax.enable_x64(True):
        cell, params, xs, carry = _setup("lstm")

        def run(params, xs, carry, r):
            return rnnlab.unroll(cell, params, xs, carry=carry, lengths=LENGTHS, remat=r)

        _assert_same(run, (params, xs, carry), remat)


def test_bidirectional_stack_remat_keeps_values_and_gradients():
    with jax.enable_x64(True):
        cell = cells.get("lstm")
        params = to64(rnnlab.init_stack(cell, jax.random.key(0), D, H, 2, bidirectional=True))
        xs = jax.random.normal(jax.random.key(1), (B, T, D), jnp.float64)

        def run(params, xs, carries, remat):
            return rnnlab.stack(
                cell, params, xs, lengths=LENGTHS, bidirectional=True, residual=True, remat=remat
            )

        _assert_same(run, (params, xs, None), 3)


@pytest.mark.parametrize("name", CELLS)
def test_tbptt_remat_keeps_values_and_truncated_gradients(name):
    with jax.enable_x64(True):
        cell, params, xs, carry = _setup(name)

        def run(params, xs, carry, remat):
            # chunk 4 with sub-chunks of 3: both the TBPTT and the remat chunks end partial.
            return rnnlab.tbptt(
                cell, params, xs, chunk=4, carry=carry, lengths=LENGTHS, remat=remat
            )

        _assert_same(run, (params, xs, carry), 3)


@pytest.mark.parametrize("name", ["lstm", "tests._user_cell:mgu"])
def test_remat_saves_fewer_residuals(name):
    """What the backward pass keeps (the residuals of jax.vjp) shrinks with remat."""
    cell = cells.get(name)
    params = cell.init(jax.random.key(0), D, 16)
    xs = jax.random.normal(jax.random.key(1), (2, 32, D))

    def residuals(remat):
        def f(p, xs):
            return jnp.sum(rnnlab.unroll(cell, p, xs, remat=remat)[1] ** 2)

        _, vjp = jax.vjp(f, params, xs)
        return sum(leaf.size for leaf in jax.tree.leaves(vjp))

    assert residuals(4) < 0.5 * residuals(None)


@pytest.mark.parametrize("remat", [-1, 2.0, True, "4"])
def test_bad_remat_is_refused_with_its_name(remat):
    cell = cells.get("lstm")
    params = cell.init(jax.random.key(0), D, H)
    xs = jnp.zeros((B, T, D))
    with pytest.raises(ValueError, match="remat"):
        rnnlab.unroll(cell, params, xs, remat=remat)
    with pytest.raises(ValueError, match="remat"):
        rnnlab.tbptt(cell, params, xs, chunk=2, remat=remat)
