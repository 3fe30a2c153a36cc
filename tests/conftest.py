"""Shared test helpers. Tests run on the CPU; float64 where a test needs it is enabled locally."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest


@pytest.fixture
def x64():
    """float64 inside one test (finite differences need it)."""
    with jax.enable_x64(True):
        yield


def to64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def fd_check(fn, args, *, eps=1e-6, rtol=1e-6, seed=0):
    """Checks jax.grad(fn) against central differences along a random direction, per argument.

    fn: scalar function of a tuple of pytrees (float64).
    """
    grads = jax.grad(lambda a: fn(*a))(args)
    rng = np.random.default_rng(seed)
    for i in range(len(args)):
        direction = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape)), args[i])

        def shifted(s, i=i, direction=direction):
            moved = jax.tree.map(lambda a, d: a + s * d, args[i], direction)
            return fn(*args[:i], moved, *args[i + 1 :])

        numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
        analytic = sum(
            jnp.vdot(g, u) for g, u in zip(jax.tree.leaves(grads[i]), jax.tree.leaves(direction))
        )
        np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=1e-9, err_msg=f"arg {i}")
