"""The exploding-gradient wall of a one-unit RNN (Pascanu, Mikolov & Bengio 2013, sec. 2.3).

    x_t = w sigma(x_{t-1}) + b,   x_0 = 0.5,   t = 1 .. 50
    E(w, b) = (sigma(x_50) - 0.7)^2

For w sigma'(x_0) > 1, x_0 can be the unstable fixed point x* = w sigma(x*) + b of the map,
which separates the basins of two stable ones. That happens on the line

    b_wall(w) = x_0 - w sigma(x_0)

Crossing it, x_50 jumps from one attractor to the other, so E jumps (a "wall"), and near it
dx_50/db grows like lambda^50 with lambda = w sigma'(x_0): the gradient explodes. Gradient
descent that reaches the wall takes a step of size lr * |grad| and is thrown far away; norm
clipping (Pascanu 2013, algorithm 1),

    g <- g * min(1, threshold / ||g||)

bounds the step at lr * threshold, so the iterate stays near the wall. All in float64.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

X0 = 0.5  # the initial state of the paper
TARGET = 0.7  # sigma(x_50)'s target in the paper
STEPS = 50  # the sequence length of the paper


def final_state(w, b, steps: int = STEPS, x0: float = X0):
    """x_steps of x_t = w sigma(x_{t-1}) + b from x_0 = x0 (any broadcastable w, b)."""

    def body(x, _):
        return w * jax.nn.sigmoid(x) + b, None

    x, _ = lax.scan(
        body, jnp.full(jnp.broadcast_shapes(jnp.shape(w), jnp.shape(b)), x0), None, length=steps
    )
    return x


def loss(w, b, steps: int = STEPS, x0: float = X0, target: float = TARGET):
    """E(w, b) = (sigma(x_steps) - target)^2."""
    return (jax.nn.sigmoid(final_state(w, b, steps, x0)) - target) ** 2


def _value_and_grad(steps, x0, target):
    def f(wb):
        return loss(wb[0], wb[1], steps, x0, target)

    return jax.value_and_grad(f)


class Surface(NamedTuple):
    """E and ||grad E|| on a grid: ws [W], bs [N], loss and grad_norm [N, W] (rows are b)."""

    ws: np.ndarray
    bs: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray


def surface(ws, bs, steps: int = STEPS, x0: float = X0, target: float = TARGET) -> Surface:
    """The loss surface over the grid ``ws`` x ``bs`` (1-d arrays), with its gradient norm."""
    ws, bs = np.asarray(ws, np.float64), np.asarray(bs, np.float64)
    with jax.enable_x64(True):
        w, b = jnp.meshgrid(jnp.asarray(ws), jnp.asarray(bs))  # [N, W] each
        wb = jnp.stack([w, b], axis=-1).reshape(-1, 2)  # [N*W, 2]
        e, g = jax.jit(jax.vmap(_value_and_grad(steps, x0, target)))(wb)
        e = np.asarray(e).reshape(w.shape)  # host sync
        g = np.linalg.norm(np.asarray(g), axis=-1).reshape(w.shape)
    return Surface(ws, bs, e, g)


def wall_theory(w, x0: float = X0):
    """(b_wall, lambda): x0 is the map's fixed point at b_wall; unstable where lambda > 1."""
    s = 1.0 / (1.0 + np.exp(-x0))
    w = np.asarray(w, np.float64)
    return x0 - w * s, w * s * (1.0 - s)


class Wall(NamedTuple):
    """Where E jumps along b at fixed w: b (the bisected location), the loss on either side
    (loss_below at b - width, loss_above at b + width), and the largest ||grad E|| sampled within
    ``width`` of b."""

    w: float
    b: float
    loss_below: float
    loss_above: float
    grad_norm: float
    width: float


def find_wall(
    w: float,
    b_lo: float,
    b_hi: float,
    *,
    num: int = 4001,
    steps: int = STEPS,
    x0: float = X0,
    target: float = TARGET,
) -> Wall:
    """Finds the wall at fixed ``w`` numerically: the largest jump of E on a grid of ``num``
    values of b in [b_lo, b_hi], narrowed by bisection on the side of the jump E lies on."""
    with jax.enable_x64(True):
        vg = jax.jit(jax.vmap(_value_and_grad(steps, x0, target)))
        bs = np.linspace(b_lo, b_hi, num)
        e = np.asarray(vg(jnp.stack([jnp.full(num, w), jnp.asarray(bs)], -1))[0])  # host sync
        i = int(np.argmax(np.abs(np.diff(e))))
        lo, hi, e_lo, e_hi = bs[i], bs[i + 1], e[i], e[i + 1]
        for _ in range(200):  # bisection to float64 resolution
            mid = 0.5 * (lo + hi)
            if mid in (lo, hi):
                break
            e_mid = float(vg(jnp.array([[w, mid]]))[0][0])
            if abs(e_mid - e_lo) < abs(e_mid - e_hi):
                lo = mid
            else:
                hi = mid
        width = max(1e3 * (hi - lo), 1e-12)
        near = np.linspace(lo - width, hi + width, 201)
        e_near, g_near = vg(jnp.stack([jnp.full(near.size, w), jnp.asarray(near)], -1))
        g_near = np.linalg.norm(np.asarray(g_near), axis=-1)
    return Wall(
        float(w),
        float(0.5 * (lo + hi)),
        float(np.asarray(e_near)[0]),
        float(np.asarray(e_near)[-1]),
        float(np.max(g_near)),
        float(width),
    )


class Trajectory(NamedTuple):
    """Gradient descent from one start: points [S+1, 2] (w, b), loss [S+1], grad_norm [S+1]."""

    points: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray


def descend(
    start,
    *,
    learning_rate: float,
    num_steps: int,
    clip_norm: float | None = None,
    steps: int = STEPS,
    x0: float = X0,
    target: float = TARGET,
) -> Trajectory:
    """Plain gradient descent on E from ``start`` = (w, b), with norm clipping if ``clip_norm``.

    Non-finite gradients (past float64's range) stop the iterate where it is.
    """
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be > 0 or None, got {clip_norm!r}")
    with jax.enable_x64(True):
        vg = _value_and_grad(steps, x0, target)

        def body(p, _):
            e, g = vg(p)
            n = jnp.linalg.norm(g)
            if clip_norm is not None:
                g = g * jnp.minimum(1.0, clip_norm / n)  # Pascanu 2013, algorithm 1
            new = jnp.where(jnp.all(jnp.isfinite(g)), p - learning_rate * g, p)
            return new, (p, e, n)

        p0 = jnp.asarray(start, jnp.float64)
        last, (ps, es, ns) = jax.jit(lambda p: lax.scan(body, p, None, length=num_steps))(p0)
        e_last, g_last = vg(last)
        points = np.concatenate([np.asarray(ps), np.asarray(last)[None]])  # host sync
        losses = np.append(np.asarray(es), float(e_last))
        norms = np.append(np.asarray(ns), float(jnp.linalg.norm(g_last)))
    return Trajectory(points, losses, norms)
