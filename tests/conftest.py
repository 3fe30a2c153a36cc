"""Shared test helpers. Tests run on the CPU; float64 where a test needs it is enabled locally."""

import os

# One persistent XLA compilation cache for the whole run, before JAX reads its settings: many
# tests compile the same programs (a run and its resumed copy, the same tiny config in several
# tests), and pytest-xdist's workers and the subprocesses of tests/train/helpers.py share it. A
# cached program is the one XLA compiled, so no result changes. A size limit turns on JAX's file
# lock around every read and write (the `filelock` package, in the test extra), so that
# concurrent processes never read a half-written entry; without filelock there is no cache.
try:
    import filelock  # noqa: F401
except ImportError:
    pass
else:
    os.environ.setdefault(
        "JAX_COMPILATION_CACHE_DIR",
        os.environ.get("RNNLAB_TEST_JAX_CACHE", "/tmp/rnnlab-test-jax-cache"),
    )
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 * 2**30))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


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
