"""Gradient norm against time lag, read by zero probes in one backward pass.

For a cell c_t = F(c_{t-1}, x_t) and a loss L = sum_b v . y_T[b] on the last output, add a zero
probe p_t to the carry entering every step,

    c_t <- c_t + p_t,   t = 0 .. T-1,

so dL/dp_t = dL/dc_t: one reverse-mode pass gives the gradient with respect to every carry leaf
at every step. The lag of c_t is k = T - t (c_0 has lag T: dL/dc_0 = v^T dy_T/dc_0).

Theory (Pascanu, Mikolov & Bengio 2013, sec. 2.1; Bengio, Simard & Frasconi 1994). For
h_t = phi(W^T h_{t-1} + ...),

    dL/dh_{T-k} = (prod_s W diag(phi'_s)) dL/dh_T,   ||dL/dh_{T-k}|| <= (gamma sigma_max(W))^k

with gamma = max |phi'| = 1 for tanh, relu and identity. For a linear RNN with W = rho Q, Q
orthogonal, every singular value of W^k is rho^k, so ||dL/dh_{T-k}|| = rho^k ||v|| exactly and
the per-step rate (slope of log-norm against lag) is log(rho). Float64 is needed: 0.5^199 is
below float32's range.

Averaging: the curve is the mean over batch rows and seeds of log ||dL/dc_t|| (a geometric mean,
the estimator of a Lyapunov exponent); exact zeros (dead ReLU paths) are left out of the mean and
counted in ``zero_fraction``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rnnlab.cells.base import Carry, Cell, Params


def probe_gradients(
    cell: Cell,
    params: Params,
    xs: jax.Array,
    v: jax.Array,
    *,
    stop_leaves: Sequence[int] = (),
) -> Carry:
    """dL/dc_t for every carry leaf and every step, L = sum_b v . y_T[b].

    Args:
        cell: any rnnlab ``Cell`` (only ``init``'s sizes, ``initial_carry`` and ``apply`` are
            used).
        params: the cell's params, in the dtype the gradients should have (float64 for long T).
        xs: [B, T, D] inputs.
        v: [Y] the readout of the last output y_T ([B, Y]).
        stop_leaves: indices (in ``jax.tree.leaves`` order) of carry leaves whose gradient is
            stopped where they enter every step; their probes then read zero. With the LSTM's
            (h, c) carry, ``stop_leaves=(0,)`` keeps only the cell-state path c -> f * c.

    Returns:
        A pytree like the carry whose leaves are [T, B, ...]: entry t is dL/dc_t (lag T - t).
    """
    if xs.ndim != 3:
        raise ValueError(f"xs: expected [batch, time, features], got shape {xs.shape}")
    B = xs.shape[0]
    carry0 = jax.tree.map(
        lambda c: c.astype(xs.dtype), cell.initial_carry(B, cell.hidden_size_of(params))
    )
    leaves, treedef = jax.tree.flatten(carry0)
    bad = [i for i in stop_leaves if not 0 <= i < len(leaves)]
    if bad:
        raise ValueError(f"stop_leaves: {bad} out of range for a carry of {len(leaves)} leaves")
    xs_tm = jnp.swapaxes(xs, 0, 1)  # [T, B, D]
    probes = jax.tree.map(lambda c: jnp.zeros(xs_tm.shape[:1] + c.shape, c.dtype), carry0)

    def cut(carry):
        flat = jax.tree.leaves(carry)
        flat = [lax.stop_gradient(a) if i in stop_leaves else a for i, a in enumerate(flat)]
        return jax.tree.unflatten(treedef, flat)

    def loss(probes):
        def body(c, inputs):
            x, p = inputs
            c = cut(jax.tree.map(jnp.add, c, p))  # the probe: c_t + 0
            return cell.apply(params, c, x)

        _, ys = lax.scan(body, carry0, (xs_tm, probes))  # ys: [T, B, Y]
        return jnp.sum(ys[-1] @ v)

    return jax.grad(loss)(probes)


def row_log_norms(grads: Carry) -> list[jax.Array]:
    """log ||g[t, b]|| per carry leaf, reordered by lag: each [T, B], row k-1 is lag k."""
    out = []
    for g in jax.tree.leaves(grads):
        norms = jnp.sqrt(jnp.sum(g.reshape(g.shape[0], g.shape[1], -1) ** 2, axis=-1))  # [T, B]
        out.append(jnp.log(norms)[::-1])  # row 0 = c_{T-1}, lag 1
    return out


class LagCurves(NamedTuple):
    """Mean log-norm of dL/dc_t against lag, one entry per carry leaf.

    lags: [T] 1 .. T.  log_norm: per leaf [T], the mean of log ||dL/dc_{T-k}|| over batch rows
    and seeds (exact zeros left out; NaN where all are zero).  zero_fraction: per leaf [T].
    leaf_names: ``jax.tree_util.keystr`` of each leaf's path in the carry.
    """

    lags: np.ndarray
    log_norm: list[np.ndarray]
    zero_fraction: list[np.ndarray]
    leaf_names: list[str]


def lag_curves(
    cell: Cell,
    key: jax.Array,
    *,
    input_size: int,
    hidden_size: int,
    batch_size: int,
    seq_len: int,
    num_seeds: int,
    input_std: float = 1.0,
    transform_params: Callable[[Params], Params] | None = None,
    stop_leaves: Sequence[int] = (),
) -> LagCurves:
    """Lag curves at initialisation, averaged over ``num_seeds`` inits and ``batch_size`` rows.

    Each seed draws params (``cell.init``), inputs x_t ~ N(0, input_std^2) and a unit readout v;
    params and inputs are cast to float64 and the probes run in float64.

    Args:
        cell: any rnnlab ``Cell``.
        key: the study's key; seed s uses ``fold_in(key, s)``.
        transform_params: applied to each seed's params before the cast (e.g. a W_h rescale).
        stop_leaves: as in ``probe_gradients``.

    Returns:
        ``LagCurves`` in numpy float64.
    """
    for name, value in (
        ("input_size", input_size),
        ("hidden_size", hidden_size),
        ("batch_size", batch_size),
        ("seq_len", seq_len),
        ("num_seeds", num_seeds),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    keys = seed_keys(key, num_seeds)
    params = seed_params(cell, keys, input_size, hidden_size, transform_params)
    with jax.enable_x64(True):
        logs = seed_log_norms(
            cell,
            params,
            keys,
            input_std,
            batch_size=batch_size,
            seq_len=seq_len,
            input_size=input_size,
            stop_leaves=tuple(stop_leaves),
        )  # per leaf [S, T, B]
        logs = [np.asarray(a, np.float64) for a in logs]  # host sync
    carry = cell.initial_carry(1, hidden_size)
    names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(carry)[0]]
    curves, zeros = [], []
    for a in logs:
        a = np.moveaxis(a, 1, 0).reshape(seq_len, -1)  # [T, S*B]
        finite = np.isfinite(a)
        count = finite.sum(axis=1)
        total = np.where(finite, a, 0.0).sum(axis=1)
        curves.append(np.where(count > 0, total / np.maximum(count, 1), np.nan))
        zeros.append(1.0 - count / a.shape[1])
    return LagCurves(np.arange(1, seq_len + 1), curves, zeros, names)


def seed_keys(key: jax.Array, num_seeds: int) -> jax.Array:
    """[S] keys, ``fold_in(key, s)``: seed s draws its params, inputs and readout from them."""
    return jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.arange(num_seeds))


def seed_params(
    cell: Cell,
    keys: jax.Array,
    input_size: int,
    hidden_size: int,
    transform_params: Callable[[Params], Params] | None = None,
) -> Params:
    """The params ``lag_curves`` uses for each seed key, stacked on a leading [S] axis."""
    params = _init(cell, keys, input_size, hidden_size)
    if transform_params is not None:
        params = jax.vmap(transform_params)(params)
    return params


@functools.partial(jax.jit, static_argnames=("cell", "input_size", "hidden_size"))
def _init(cell, keys, input_size, hidden_size):
    return jax.vmap(lambda k: cell.init(jax.random.fold_in(k, 0), input_size, hidden_size))(keys)


@functools.partial(
    jax.jit, static_argnames=("cell", "batch_size", "seq_len", "input_size", "stop_leaves")
)
def seed_log_norms(
    cell: Cell,
    params: Params,
    keys: jax.Array,
    input_std: float,
    *,
    batch_size: int,
    seq_len: int,
    input_size: int,
    stop_leaves: tuple[int, ...] = (),
) -> list[jax.Array]:
    """log ||dL/dc_t|| per seed, row and lag, one list entry per carry leaf: [S, T, B] each.

    Seed s (params [S, ...] and ``keys`` [S]) draws xs ~ N(0, input_std^2) [B, T, D] and a unit
    readout v. Run it under ``jax.enable_x64(True)``. Compiled once per cell and sizes: the
    cell is a static argument, so new params (another radius) reuse the compilation.
    """
    f64 = jnp.float64

    def one_seed(p, k):
        k_x, k_v = jax.random.split(jax.random.fold_in(k, 1))
        p = jax.tree.map(lambda a: a.astype(f64) if jnp.issubdtype(a.dtype, jnp.floating) else a, p)
        xs = input_std * jax.random.normal(k_x, (batch_size, seq_len, input_size), f64)
        y = jax.eval_shape(lambda: cell.apply(p, _carry(cell, p, xs), xs[:, 0])[1])
        v = jax.random.normal(k_v, y.shape[1:], f64)
        v = v / jnp.linalg.norm(v)
        return row_log_norms(probe_gradients(cell, p, xs, v, stop_leaves=stop_leaves))

    return jax.vmap(one_seed)(params, keys)


def _carry(cell, params, xs):
    carry = cell.initial_carry(xs.shape[0], cell.hidden_size_of(params))
    return jax.tree.map(lambda c: c.astype(xs.dtype), carry)


class RateFit(NamedTuple):
    """A least-squares line log||g|| = intercept + slope * lag over the finite points.

    slope: nats per step (log(rho) for a linear orthogonal RNN). rms_residual, max_residual:
    nats; a large one says the curve is not a line. num_points: how many lags were fitted.
    """

    slope: float
    intercept: float
    rms_residual: float
    max_residual: float
    num_points: int


def fit_rate(lags: np.ndarray, log_norm: np.ndarray, min_lag: int = 1) -> RateFit:
    """Fits the per-step growth rate of a lag curve (lags >= ``min_lag``, finite values only).

    Args:
        lags: [T] lags.
        log_norm: [T] mean log-norms.
        min_lag: the first lag fitted (skip a transient).
    """
    lags = np.asarray(lags, np.float64)
    y = np.asarray(log_norm, np.float64)
    keep = np.isfinite(y) & (lags >= min_lag)
    if keep.sum() < 2:
        return RateFit(float("nan"), float("nan"), float("nan"), float("nan"), int(keep.sum()))
    slope, intercept = np.polyfit(lags[keep], y[keep], 1)
    residual = y[keep] - (intercept + slope * lags[keep])
    return RateFit(
        float(slope),
        float(intercept),
        float(np.sqrt(np.mean(residual**2))),
        float(np.max(np.abs(residual))),
        int(keep.sum()),
    )


def log_sigma_max(w: jax.Array) -> float:
    """log of the largest singular value of a matrix (or the mean over a leading seed axis).

    The Pascanu (2013) bound on the per-step rate of an RNN with |phi'| <= 1 (tanh, relu).
    """
    w = np.asarray(w, np.float64)
    if w.ndim == 2:
        w = w[None]
    return float(np.mean([np.log(np.linalg.norm(m, 2)) for m in w]))


def rnn_rate_theory(activation_fn: str, recurrent_init: str, w_h) -> tuple[str, float, str]:
    """The per-step rate an Elman RNN's lag curve must show (Pascanu 2013, sec. 2.1).

    Args:
        activation_fn, recurrent_init: the ``rnnlab.cells.rnn`` options.
        w_h: [S, H, H] or [H, H] the recurrent matrices actually used (one per seed).

    Returns:
        (kind, rate, claim): kind "equal" (linear, W = rho * Q or rho * I: every singular value
        of W^k is rho^k, so the rate is log(rho) exactly) or "bound" (rate <= log sigma_max(W),
        since |phi'| <= 1 for tanh, relu and identity).
    """
    rate = log_sigma_max(w_h)
    if activation_fn == "identity" and recurrent_init in ("orthogonal", "identity"):
        return "equal", rate, "linear RNN, W = rho Q: ||dL/dh_{T-k}|| = rho^k, rate = log(rho)"
    return "bound", rate, f"{activation_fn} RNN: rate <= log sigma_max(W_h) (|phi'| <= 1)"


def carousel_rate_theory(forget_bias: float) -> float:
    """log sigmoid(b_f): the cell-state path's per-step rate with f = sigmoid(b_f) (inputs off).

    With zero-mean pre-activation noise the rate is below it (log sigmoid is concave: Jensen).
    """
    return float(-np.log1p(np.exp(-forget_bias)))
