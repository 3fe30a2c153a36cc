"""The vanilla (Elman 1990) recurrent network.

    h' = phi(x W_x + h W_h + b),   phi in {tanh, relu, identity}

Recurrent initialisations (``recurrent_init``), all scaled so the spectral radius of W_h is
``spectral_radius`` unless said otherwise:
    "orthogonal"  W_h = rho * Q, Q Haar-orthogonal: every singular value is rho, so for a linear
                  RNN ||dh_T / dh_0|| = rho^T exactly (Pascanu, Mikolov & Bengio 2013, sec. 2.1)
    "gaussian"    N(0, 1/H) entries rescaled to spectral radius rho (non-normal: transient growth)
    "identity"    W_h = rho * I; with relu this is the IRNN of Le, Jaitly & Hinton (2015)
    "normal"      N(0, recurrent_std^2) entries, not rescaled (Pascanu 2013's "basic" inits:
                  std 0.01 for sigmoid units, 0.1 for tanh)
    "sparse"      ``nonzero`` N(0, 1) incoming weights per unit, the rest zero, rescaled to
                  spectral radius rho (Pascanu 2013's "smart" init: 15 nonzero, rho = 0.95;
                  after Sutskever et al. 2013)

Params: w_x [D, H], w_h [H, H], b [H]. Carry: h [B, H].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.cells import fused
from rnnlab.cells.base import Cell, activation, check_sizes, lecun_normal, orthogonal, zeros_carry

RECURRENT_INITS = ("orthogonal", "gaussian", "identity", "normal", "sparse")


def _spectral_radius(w: jax.Array) -> jax.Array:
    """max |eigenvalue| of a square matrix; computed on the host so it runs on every backend."""

    def host(m):
        return np.asarray(np.max(np.abs(np.linalg.eigvals(np.asarray(m, np.float64)))), m.dtype)

    out = jax.ShapeDtypeStruct((), w.dtype)
    return jax.pure_callback(host, out, w, vmap_method="sequential")


def _recurrent(key, hidden_size, kind, radius, std, nonzero):
    H = hidden_size
    if kind == "orthogonal":
        return orthogonal(key, (H, H), radius)
    if kind == "identity":
        return radius * jnp.eye(H)
    if kind == "normal":
        return std * jax.random.normal(key, (H, H))
    if kind == "gaussian":
        w = jax.random.normal(key, (H, H)) / jnp.sqrt(H)
    else:  # sparse: `nonzero` random incoming weights per unit (column of x @ W convention)
        k_w, k_p = jax.random.split(key)
        keep = min(nonzero, H)
        ranks = jnp.argsort(jax.random.uniform(k_p, (H, H)), axis=0)  # a permutation per column
        w = jnp.where(ranks < keep, jax.random.normal(k_w, (H, H)), 0.0)
    return w * (radius / _spectral_radius(w))


def rnn(
    *,
    activation_fn: str = "tanh",
    recurrent_init: str = "orthogonal",
    spectral_radius: float = 1.0,
    recurrent_std: float = 0.1,
    nonzero: int = 15,
    input_std: float | None = None,
) -> Cell:
    """Returns the Elman RNN cell.

    Args:
        activation_fn: phi, one of "tanh", "relu", "identity" (a linear RNN).
        recurrent_init: see the module docstring.
        spectral_radius: rho for "orthogonal", "gaussian", "identity" and "sparse".
        recurrent_std: the entry std for "normal".
        nonzero: incoming weights per unit for "sparse".
        input_std: if set, W_x ~ N(0, input_std^2) (Pascanu's inits); else LeCun normal.
    """
    phi = activation(activation_fn, "activation_fn")
    if recurrent_init not in RECURRENT_INITS:
        raise ValueError(f"recurrent_init={recurrent_init!r}: expected one of {RECURRENT_INITS}")
    if not spectral_radius >= 0:
        raise ValueError(f"spectral_radius={spectral_radius!r}: expected a number >= 0")

    def init(key, input_size, hidden_size):
        check_sizes(input_size, hidden_size)
        k_x, k_h = jax.random.split(key)
        if input_std is None:
            w_x = lecun_normal(k_x, (input_size, hidden_size))
        else:
            w_x = input_std * jax.random.normal(k_x, (input_size, hidden_size))
        w_h = _recurrent(k_h, hidden_size, recurrent_init, spectral_radius, recurrent_std, nonzero)
        return {"w_x": w_x, "w_h": w_h, "b": jnp.zeros(hidden_size)}

    def initial_carry(batch_size, hidden_size):
        return zeros_carry(batch_size, hidden_size)

    def project(params, xs):
        return fused.dense(xs, params["w_x"], params["b"])  # [..., H]

    def step(params, h, z):
        h = phi(z + h @ params["w_h"])
        return h, h

    def apply(params, carry, x):
        # The plain projection (not fused.dense), so forward-mode autodiff works on one step.
        return step(params, carry, x @ params["w_x"] + params["b"])

    return Cell(
        init,
        initial_carry,
        apply,
        project=project,
        step=step,
        scan=fused.rnn_scan(activation_fn),
        hidden_size=lambda params: params["w_h"].shape[0],
        name="rnn",
    )
