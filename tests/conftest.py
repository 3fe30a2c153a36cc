"""Shared test helpers. Tests run on the CPU; float64 where a test needs it is enabled locally."""

import os

# The suite's time is mostly XLA compiling small programs, not running them. LLVM at -O0 compiles
# them faster: measured on 2 cores, tests/test_recurrent.py 108 -> 82 s, the translate and
# char_lm end-to-end tests 128 -> 98 s. The HLO is the same; values differ from -O3 by float
# rounding only (an LSTM's gradients by 8e-7 of their largest), and every run inside the suite,
# subprocesses included, compiles the same way, so its exact-equality tests still hold.
# Set before JAX starts its backend; subprocesses of tests inherit it. A level already in
# XLA_FLAGS is kept (e.g. to run the suite as users compile: --xla_backend_optimization_level=3).
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    _flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{_flags} --xla_backend_optimization_level=0".strip()

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
    # Compiled once each: run eagerly, every shifted call would dispatch (and compile) op by op.
    grads = jax.jit(jax.grad(lambda a: fn(*a)))(args)
    fn = jax.jit(fn)
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
