"""The cell contract: a small immutable bundle of pure functions.

A cell is what an optax transformation is to optimisers: a named tuple of functions over plain
pytrees. Every runner, model and experiment in rnnlab takes one, so a user's cell written against
the three required functions plugs in everywhere ours do.

Required:
    init(key, input_size, hidden_size) -> params          # pytree of arrays
    initial_carry(batch_size, hidden_size) -> carry       # pytree of [batch, ...] arrays
    apply(params, carry, x) -> (carry, output)            # x: [batch, input_size]

Optional:
    hidden_size(params) -> int        # lets runners build the initial carry (default:
                                      # params["w_h"].shape[0])

Optional, for speed (built-in cells provide them; ``apply == step after project``):
    project(params, xs) -> zs        # the input term of every step, one GEMM outside the scan
    step(params, carry, z) -> (carry, output)             # the recurrence inside the scan
    scan(params, carry, zs, mask) -> (carry, outputs)     # a fused, time-major recurrence over
                                                          # all steps (zs: [T, B, G]), usually
                                                          # with a hand-written backward pass
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Params = Any
Carry = Any


class Cell(NamedTuple):
    """A recurrent cell as pure functions. See the module docstring for the contract."""

    init: Callable[[jax.Array, int, int], Params]
    initial_carry: Callable[..., Carry]
    apply: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]]
    project: Callable[[Params, jax.Array], jax.Array] | None = None
    step: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]] | None = None
    scan: Callable[..., tuple[Carry, jax.Array]] | None = None
    hidden_size: Callable[[Params], int] | None = None
    name: str = "cell"

    def replace(self, **changes) -> Cell:
        return self._replace(**changes)

    def plain(self) -> Cell:
        """The same cell without its fast path: runners scan ``apply`` with plain autodiff.

        The fast path (``project``'s and ``scan``'s hand-written backward passes) is reverse-mode
        only; use this for forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``) through a runner.
        Values and gradients are the same.
        """
        return self._replace(project=None, step=None, scan=None)

    def hidden_size_of(self, params: Params) -> int:
        """The hidden size for ``initial_carry``: the cell's own rule, else ``params["w_h"]``."""
        if self.hidden_size is not None:
            return self.hidden_size(params)
        if isinstance(params, dict) and "w_h" in params:
            return params["w_h"].shape[0]
        raise ValueError(
            f"cannot tell the hidden size of cell {self.name!r}: pass carry= explicitly, give the "
            "cell a hidden_size(params) function, or name its recurrent matrix params['w_h']"
        )


# --- initialisers shared by the built-in cells ----------------------------------------------

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "identity": lambda x: x,
    "sigmoid": jax.nn.sigmoid,
}


def activation(name: str, argument: str = "activation") -> Callable[[jax.Array], jax.Array]:
    if name not in ACTIVATIONS:
        raise ValueError(f"{argument}={name!r}: expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def lecun_normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Truncated-free LeCun normal, N(0, 1/fan_in), as Flax's default kernel init."""
    return jax.random.normal(key, shape) / math.sqrt(shape[0])


def orthogonal(key: jax.Array, shape: tuple[int, ...], scale: float = 1.0) -> jax.Array:
    """A Haar-random (semi-)orthogonal matrix times ``scale``.

    Under ``jax.vmap`` (a sweep's or a study's N models initialised at once) the draws run one
    after another (``sequential_vmap``) instead of as one batched QR: jaxlib's batched CPU QR
    fans the batch out over XLA's intra-op pool from a thread of that pool and blocks until it
    is done, which on a 2-core machine deadlocked for good (every thread in a futex wait; the
    hang of vmapped sweeps that scripts/bench_sweeps.py used to time out).
    """
    draw = jax.custom_batching.sequential_vmap(
        lambda k: jax.nn.initializers.orthogonal()(k, shape, jnp.float32)
    )
    return scale * draw(key)


def stacked_orthogonal(key: jax.Array, hidden_size: int, num_blocks: int) -> jax.Array:
    """[H, k*H]: k independent orthogonal [H, H] blocks side by side (one per gate)."""
    keys = jax.random.split(key, num_blocks)
    return jnp.concatenate([orthogonal(k, (hidden_size, hidden_size)) for k in keys], axis=1)


def check_sizes(input_size: int, hidden_size: int) -> None:
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def zeros_carry(batch_size: int, hidden_size: int, dtype=None) -> jax.Array:
    return jnp.zeros((batch_size, hidden_size), dtype or jnp.float32)
