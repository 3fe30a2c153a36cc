"""Fused recurrences with hand-written backward passes: the ``scan`` of the built-in cells.

The runner computes the input term of every step as one GEMM outside the scan,
zs = xs W_x + b ([T, B, G]), and calls ``scan(params, carry, zs, mask)``. Here the recurrence
runs under ``jax.custom_vjp``: the forward scan does one fused [H, G] matmul per step and saves
the post-activation gates and the carries; the reverse scan computes only the carry and
pre-activation gradients dz_t; the recurrent weight gradient is then ONE GEMM after the scan,

    dW_h = sum_t h_{t-1}^T dz_t = H_prev^T dZ         H_prev, dZ: [T*B, H], [T*B, G]

instead of T rank-B updates accumulated in the loop (which is what autodiff of ``lax.scan``
does). dW_x and db flow back through ``project`` by autodiff from dzs.

Backward equations (g_h, g_c: the gradient w.r.t. the step's new h, c, i.e. the carry gradient
plus dy_t; primes mark derivatives; dh_prev is what the reverse scan carries to step t-1):

    LSTM (vanilla, no peepholes), a = z + h W_h, gates i f g o, c' = f c + i g, h' = o tanh(c'):
        g_c += g_h * o * (1 - tanh(c')^2)
        dz_i = g_c g i (1 - i)     dz_f = g_c c f (1 - f)
        dz_g = g_c i (1 - g^2)     dz_o = g_h tanh(c') o (1 - o)
        dh_prev = dz W_h^T         dc_prev = g_c f

    GRU, reset_after (cuDNN form), a = h W_h, hn = a_n + b_hn, n = tanh(z_n + r hn),
    h' = (1 - u) n + u h:
        dz_n = g_h (1 - u) (1 - n^2)        du = g_h (h - n)        dr = dz_n hn
        da = [dr r (1 - r), du u (1 - u), dz_n r];   dz = [da_r, da_u, dz_n]
        dh_prev = da W_h^T + g_h u;   dW_h = H_prev^T dA;   db_hn = sum_t,b da_n

    GRU, reset before the matmul (the paper), n = tanh(z_n + (r h) W_hn):
        dz_n as above;   d(rh) = dz_n W_hn^T;   dr = d(rh) h
        dz_ru = [dr r (1 - r), du u (1 - u)]
        dh_prev = dz_ru W_hru^T + d(rh) r + g_h u
        dW_hru = H_prev^T dZ_ru;   dW_hn = (R * H_prev)^T dZ_n       (two GEMMs after the scan)

    Elman RNN, h' = phi(z + h W_h), phi' read off the output h':
        dz = g_h phi'(h');   dh_prev = dz W_h^T

Padding (mask[t, b] False): the forward keeps the carry and outputs zero; the backward passes
the carry gradient through unchanged and sets dz_t = 0 there (by select, so non-finite values
in padded inputs cannot leak into gradients).

shard_map with check_vma=True: a carry built by ``jnp.zeros`` is *invariant* while zs is
*varying*, which a plain scan rejects (see JAX_STACK_NOTES.md, section 1). The public scans
here cast the carry and weights to the varying type of their inputs before the custom_vjp, so
they run there as is; the transpose of that cast sums the weight gradients over the shards,
which is what ``jax.grad`` of a replicated parameter means under check_vma=True.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from rnnlab.cells.base import ACTIVATIONS

# --- helpers shared by the cells -------------------------------------------------------------


def _vma(x) -> frozenset:
    """The mesh axes over which ``x`` varies inside shard_map (empty outside)."""
    mat = getattr(jax.typeof(x), "mat", None)  # jax 0.10: ManualAxisType(varying=...)
    return frozenset(getattr(mat, "varying", frozenset()))


def _varying_like(tree, axes: frozenset):
    """Casts every leaf of ``tree`` to vary over ``axes`` (a no-op outside shard_map)."""

    def cast(x):
        missing = tuple(sorted(axes - _vma(x)))
        return lax.pcast(x, missing, to="varying") if missing else x

    return jax.tree.map(cast, tree)


def _uniform_vma(*trees):
    """The trees with every leaf cast to the union of their varying axes."""
    axes = frozenset().union(*(_vma(x) for x in jax.tree.leaves(trees)))
    return _varying_like(trees, axes) if axes else trees


def _where(m, new, old):
    """Per-row select: m [B] bool, new/old [B, K]."""
    return jnp.where(m[:, None], new, old)


def _shift(first, seq):
    """[first, seq[0], ..., seq[T-2]]: the previous step's carry for every step."""
    return jnp.concatenate([first[None], seq[:-1]], axis=0)  # [T, B, H]


def _outputs(hs, mask):
    """Outputs from the carries: equal on real steps, zero on padded ones."""
    return hs if mask is None else jnp.where(mask[..., None], hs, 0)  # [T, B, H]


def _gemm_tb(a, b):
    """sum_t a_t^T b_t as ONE GEMM: a [T, B, K], b [T, B, N] -> [K, N].

    The transpose of ``a`` is materialised behind an optimization barrier: XLA would otherwise
    fold it into the dot, and on CPU a dot contracting the lhs's leading axis takes a generic
    path, measured 1.5x slower than the plain [K, T*B] x [T*B, N] GEMM plus the copy.
    """
    a_t = lax.optimization_barrier(a.reshape(-1, a.shape[-1]).T)  # [K, T*B]
    return a_t @ b.reshape(-1, b.shape[-1])  # [K, T*B] x [T*B, N]


def _with_mask(mask, raw, carry_grad):
    """dz and the passed-on carry gradient of one reverse step, with padding applied."""
    dz, dprev = raw
    if mask is None:
        return dz, dprev
    dz = jax.tree.map(lambda d: jnp.where(mask[:, None], d, 0), dz)
    return dz, jax.tree.map(lambda n, o: _where(mask, n, o), dprev, carry_grad)


def _scan_over_rows(step, carry, rows, xs, reverse: bool = False):
    """``lax.scan`` of ``step(carry, row, x) -> (carry, new_row, saved)`` over rows [T, B, G] and
    xs (leading axis T), with each step's ``new_row`` [B, G] written over the row it read.

    For loops that make one [B, G] row per step from a [B, G] row nothing needs afterwards: the
    forward passes write their gates over the input projection's rows, the backward passes their
    dz over the gates. Without it each such output is a zero-filled [T, B, G] buffer of its own,
    which XLA fills and then copies (LSTM at B, T, H = 64, 100, 256: 6.4 ms of a 123 ms training
    step), and which adds to the step's memory. Returns (carry, rows [T, B, G], saved over T).
    """

    def body(state, inputs):
        carry, rows = state
        t, x = inputs
        carry, row, saved = step(carry, lax.dynamic_index_in_dim(rows, t, 0, False), x)
        return (carry, lax.dynamic_update_index_in_dim(rows, row, t, 0)), saved

    steps = jnp.arange(rows.shape[0])
    (carry, rows), saved = lax.scan(body, (carry, rows), (steps, xs), reverse=reverse)
    return carry, rows, saved


def _scan_outputs_only(step, carry, zs, mask):
    """``lax.scan`` of a forward ``step(carry, z, m) -> (carry, row, saved)`` without a backward
    pass to save for: (the last carry, the outputs, saved[0], stacked over T)."""

    def body(carry, inputs):
        carry, _, saved = step(carry, *inputs)
        return carry, saved[0]

    return lax.scan(body, carry, (zs, mask))


# --- LSTM ------------------------------------------------------------------------------------


def _gate_constants(H: int, dtype):
    """(scale, shift) [4H] such that gates = tanh(a * scale) * scale + shift.

    sigmoid(x) = tanh(x / 2) / 2 + 1/2, so one tanh over the whole contiguous [B, 4H] row gives
    i, f, o (scale 1/2, shift 1/2) and g (scale 1, shift 0). XLA's CPU fusions vectorise that one
    full-width loop; sigmoid and tanh on the four [B, H] column slices of ``a`` each (what the
    equations say) were measured at 4x the elementwise time (LSTM, B=32, H=128: the forward scan
    8.3 ms against 4.8 ms, the matmuls alone 3.9 ms).
    """
    half, one = jnp.full((H,), 0.5, dtype), jnp.ones((H,), dtype)
    scale = jnp.concatenate([half, half, one, half])
    return scale, jnp.concatenate([half, half, jnp.zeros((H,), dtype), half])


def _lstm_forward(w_h, carry, zs, mask, save: bool):
    scale, shift = _gate_constants(w_h.shape[0], zs.dtype)

    def step(carry, z, m):
        h, c = carry
        a = z + h @ w_h  # [B, 4H], the one recurrent matmul of the step
        gates = jnp.tanh(a * scale) * scale + shift  # [B, 4H]: sigmoid(i f o), tanh(g)
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c_new = f * c + i * g
        tc = jnp.tanh(c_new)
        h_new = o * tc
        if m is not None:
            h_new, c_new = _where(m, h_new, h), _where(m, c_new, c)
        # Saved for the backward pass: c (the carry entering the step, for dz_f) and tanh(c').
        return (h_new, c_new), gates, (h_new, c, tc)

    if not save:
        return _scan_outputs_only(step, carry, zs, mask)
    # The gates go over the projection's rows and, in the backward, dz over the gates
    # (_scan_over_rows): the training step's temporaries 40% smaller (T=1000, B=32, H=128: 313 ->
    # 188 MiB) and 3-11% less time (docs/performance.md, session 10).
    carry, gates, (hs, c_prev, tcs) = _scan_over_rows(step, carry, zs, mask)
    return carry, (hs, c_prev, tcs, gates)


@jax.custom_vjp
def _lstm(w_h, carry, zs, mask):
    carry, hs = _lstm_forward(w_h, carry, zs, mask, save=False)
    return carry, _outputs(hs, mask)


def _lstm_fwd(w_h, carry, zs, mask):
    carry_t, (hs, c_prev, tcs, gates) = _lstm_forward(w_h, carry, zs, mask, save=True)
    return (carry_t, _outputs(hs, mask)), (w_h, carry[0], hs, c_prev, tcs, gates, mask)


def _lstm_bwd(res, cts):
    w_h, h0, hs, c_prev, tcs, gates, mask = res
    (dh_t, dc_t), dys = cts
    w_t = w_h.T  # [4H, H], transposed once

    scale, shift = _gate_constants(w_h.shape[0], gates.dtype)

    def step(carry, gate, inputs):
        dh, dc = carry
        dy, tc, c_old, m = inputs  # tc = tanh(c'); padded steps are discarded below
        i, f, g, o = jnp.split(gate, 4, axis=-1)
        g_h = dh + dy
        g_c = dc + g_h * o * (1.0 - tc * tc)
        # d gate / d a over the full row, as the forward computes it: with t = tanh(a * scale),
        # scale^2 (1 - t^2) is i (1 - i) etc. for the sigmoids and 1 - g^2 for g.
        t = (gate - shift) / scale
        dgate = scale * scale * (1.0 - t * t)  # [B, 4H]
        upstream = jnp.concatenate([g_c * g, g_c * c_old, g_c * i, g_h * tc], axis=-1)
        dz = upstream * dgate  # [B, 4H]
        dz, dprev = _with_mask(m, (dz, (dz @ w_t, g_c * f)), (dh, dc))
        return dprev, dz, None

    init = _varying_like((dh_t, dc_t), _vma(gates))
    xs = (dys, tcs, c_prev, mask)
    (dh0, dc0), dzs, _ = _scan_over_rows(step, init, gates, xs, reverse=True)  # dz over gates
    dw_h = _gemm_tb(_shift(h0, hs), dzs)  # [H, 4H], one GEMM
    return dw_h, (dh0, dc0), dzs, None


_lstm.defvjp(_lstm_fwd, _lstm_bwd)


def lstm_scan(params, carry, zs, mask=None):
    """The vanilla LSTM (no peepholes) over all steps, with a hand-written backward pass.

    Args:
        params: the lstm cell's params; only ``w_h`` [H, 4H] is used here (w_x and b are in zs).
        carry: (h, c), each [B, H].
        zs: [T, B, 4H], ``project(params, xs)`` of time-major xs.
        mask: [T, B] bool or None; False marks padding (carry kept, output zero).

    Returns:
        ((h_T, c_T), ys [T, B, H]).
    """
    w_h, carry, zs = _uniform_vma(params["w_h"], tuple(carry), zs)
    return _lstm(w_h, carry, zs, mask)


# --- GRU, reset after the matmul (cuDNN / PyTorch / Flax form) -------------------------------


def _gru_after_forward(w_h, b_hn, h, zs, mask, save: bool):
    def step(h, z, m):
        z_r, z_u, z_n = jnp.split(z, 3, axis=-1)
        a_r, a_u, a_n = jnp.split(h @ w_h, 3, axis=-1)  # one [H, 3H] matmul
        r, u = jax.nn.sigmoid(z_r + a_r), jax.nn.sigmoid(z_u + a_u)
        hn = a_n + b_hn
        n = jnp.tanh(z_n + r * hn)
        h_new = n + u * (h - n)
        if m is not None:
            h_new = _where(m, h_new, h)
        return h_new, jnp.concatenate([r, u, n], axis=-1), (h_new, hn)

    if not save:
        return _scan_outputs_only(step, h, zs, mask)
    # r, u, n over the projection's rows; hn [B, H] saved apart
    h, gates, (hs, hns) = _scan_over_rows(step, h, zs, mask)
    return h, (hs, hns, gates)


@jax.custom_vjp
def _gru_after(w_h, b_hn, h, zs, mask):
    h, hs = _gru_after_forward(w_h, b_hn, h, zs, mask, save=False)
    return h, _outputs(hs, mask)


def _gru_after_fwd(w_h, b_hn, h, zs, mask):
    h_t, (hs, hns, gates) = _gru_after_forward(w_h, b_hn, h, zs, mask, save=True)
    return (h_t, _outputs(hs, mask)), (w_h, h, hs, hns, gates, mask)


def _gru_after_bwd(res, cts):
    w_h, h0, hs, hns, gates, mask = res
    dh_t, dys = cts
    w_t = w_h.T  # [3H, H]
    h_prev = _shift(h0, hs)  # [T, B, H]

    def step(dh, gate, inputs):
        dy, h, hn, m = inputs
        r, u, n = jnp.split(gate, 3, axis=-1)
        g_h = dh + dy
        dz_n = g_h * (1.0 - u) * (1.0 - n * n)
        da = jnp.concatenate(
            [dz_n * hn * r * (1.0 - r), g_h * (h - n) * u * (1.0 - u), dz_n * r], axis=-1
        )  # [B, 3H], the gradient of a = h W_h (+ b_hn)
        (da, dz_n), dprev = _with_mask(m, ((da, dz_n), da @ w_t + g_h * u), dh)
        return dprev, da, dz_n

    init = _varying_like(dh_t, _vma(gates))
    xs = (dys, h_prev, hns, mask)
    dh0, das, dz_ns = _scan_over_rows(step, init, gates, xs, reverse=True)  # da over r, u, n
    H = h0.shape[-1]
    dzs = jnp.concatenate([das[..., : 2 * H], dz_ns], axis=-1)  # [T, B, 3H]
    db_hn = das[..., 2 * H :].sum(axis=(0, 1))  # [H]
    return _gemm_tb(h_prev, das), db_hn, dh0, dzs, None


_gru_after.defvjp(_gru_after_fwd, _gru_after_bwd)


# --- GRU, reset before the matmul (Cho et al. 2014) ------------------------------------------


def _gru_before_forward(w_h, h, zs, mask, save: bool):
    H = h.shape[-1]
    w_ru, w_n = w_h[:, : 2 * H], w_h[:, 2 * H :]  # [H, 2H], [H, H]

    def step(h, z, m):
        z_r, z_u, z_n = jnp.split(z, 3, axis=-1)
        a_r, a_u = jnp.split(h @ w_ru, 2, axis=-1)
        r, u = jax.nn.sigmoid(z_r + a_r), jax.nn.sigmoid(z_u + a_u)
        n = jnp.tanh(z_n + (r * h) @ w_n)
        h_new = n + u * (h - n)
        if m is not None:
            h_new = _where(m, h_new, h)
        return h_new, jnp.concatenate([r, u, n], axis=-1), (h_new,)

    if not save:
        return _scan_outputs_only(step, h, zs, mask)
    h, gates, (hs,) = _scan_over_rows(step, h, zs, mask)  # r, u, n over the projection's rows
    return h, (hs, gates)


@jax.custom_vjp
def _gru_before(w_h, h, zs, mask):
    h, hs = _gru_before_forward(w_h, h, zs, mask, save=False)
    return h, _outputs(hs, mask)


def _gru_before_fwd(w_h, h, zs, mask):
    h_t, (hs, gates) = _gru_before_forward(w_h, h, zs, mask, save=True)
    return (h_t, _outputs(hs, mask)), (w_h, h, hs, gates, mask)


def _gru_before_bwd(res, cts):
    w_h, h0, hs, gates, mask = res
    dh_t, dys = cts
    H = h0.shape[-1]
    w_ru_t, w_n_t = w_h[:, : 2 * H].T, w_h[:, 2 * H :].T  # [2H, H], [H, H]
    h_prev = _shift(h0, hs)  # [T, B, H]

    def step(dh, gate, inputs):
        dy, h, m = inputs
        r, u, n = jnp.split(gate, 3, axis=-1)
        g_h = dh + dy
        dz_n = g_h * (1.0 - u) * (1.0 - n * n)
        d_rh = dz_n @ w_n_t  # [B, H]
        dz_ru = jnp.concatenate([d_rh * h * r * (1.0 - r), g_h * (h - n) * u * (1.0 - u)], -1)
        dz = jnp.concatenate([dz_ru, dz_n], axis=-1)  # [B, 3H]
        dz, dprev = _with_mask(m, (dz, dz_ru @ w_ru_t + d_rh * r + g_h * u), dh)
        # r h_prev, the input of W_hn, for its gradient after the loop (dz over r overwrites r;
        # on padded steps dz_n is zero, so what is saved there does not count)
        return dprev, dz, r * h

    init = _varying_like(dh_t, _vma(gates))
    xs = (dys, h_prev, mask)
    dh0, dzs, rhs = _scan_over_rows(step, init, gates, xs, reverse=True)  # dz over r, u, n
    dw_ru = _gemm_tb(h_prev, dzs[..., : 2 * H])  # [H, 2H]
    dw_n = _gemm_tb(rhs, dzs[..., 2 * H :])  # (r * h_prev)^T dz_n: [H, H]
    return jnp.concatenate([dw_ru, dw_n], axis=1), dh0, dzs, None


_gru_before.defvjp(_gru_before_fwd, _gru_before_bwd)


def gru_scan(reset_after: bool) -> Callable:
    """The fused scan of ``gru(reset_after=...)``: scan(params, h [B, H], zs [T, B, 3H], mask)."""

    def scan(params, carry, zs, mask=None):
        """Returns (h_T [B, H], ys [T, B, H]); mask [T, B] bool or None (False = padding)."""
        if reset_after:
            w_h, b_hn, carry, zs = _uniform_vma(params["w_h"], params["b_hn"], carry, zs)
            return _gru_after(w_h, b_hn, carry, zs, mask)
        w_h, carry, zs = _uniform_vma(params["w_h"], carry, zs)
        return _gru_before(w_h, carry, zs, mask)

    return scan


# --- Elman RNN -------------------------------------------------------------------------------

# phi'(pre-activation) written in terms of the output y = phi(pre-activation).
_DERIVATIVE_FROM_OUTPUT: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": lambda y: 1.0 - y * y,
    "relu": lambda y: (y > 0).astype(y.dtype),  # 0 at 0, as jax.nn.relu's derivative
    "identity": lambda y: jnp.ones_like(y),
    "sigmoid": lambda y: y * (1.0 - y),
}


def _make_rnn(activation_fn: str):
    phi, dphi = ACTIVATIONS[activation_fn], _DERIVATIVE_FROM_OUTPUT[activation_fn]

    def forward(w_h, h, zs, mask):
        def body(h, inputs):
            z, m = inputs
            h_new = phi(z + h @ w_h)  # [B, H]
            if m is not None:
                h_new = _where(m, h_new, h)
            return h_new, h_new

        return lax.scan(body, h, (zs, mask))

    @jax.custom_vjp
    def run(w_h, h, zs, mask):
        h, hs = forward(w_h, h, zs, mask)
        return h, _outputs(hs, mask)

    def fwd(w_h, h, zs, mask):
        h_t, hs = forward(w_h, h, zs, mask)
        return (h_t, _outputs(hs, mask)), (w_h, h, hs, mask)

    def bwd(res, cts):
        w_h, h0, hs, mask = res
        dh_t, dys = cts
        w_t = w_h.T  # [H, H]

        def body(dh, inputs):
            dy, h, m = inputs
            dz = (dh + dy) * dphi(h)  # h = h' on real steps
            dz, dprev = _with_mask(m, (dz, dz @ w_t), dh)
            return dprev, dz

        init = _varying_like(dh_t, _vma(hs))
        dh0, dzs = lax.scan(body, init, (dys, hs, mask), reverse=True)
        return _gemm_tb(_shift(h0, hs), dzs), dh0, dzs, None

    run.defvjp(fwd, bwd)

    def scan(params, carry, zs, mask=None):
        """Returns (h_T [B, H], ys [T, B, H]); zs [T, B, H], mask [T, B] bool or None."""
        w_h, carry, zs = _uniform_vma(params["w_h"], carry, zs)
        return run(w_h, carry, zs, mask)

    return scan


_RNN_SCANS = {name: _make_rnn(name) for name in _DERIVATIVE_FROM_OUTPUT}


def rnn_scan(activation_fn: str) -> Callable | None:
    """The fused scan of ``rnn(activation_fn=...)``, or None for an activation it lacks."""
    return _RNN_SCANS.get(activation_fn)


# --- the input projection --------------------------------------------------------------------


@jax.custom_vjp
def _dense(xs, w, b):
    return xs @ w + b


def _dense_fwd(xs, w, b):
    return xs @ w + b, (xs, w)


def _dense_bwd(res, g):
    xs, w = res
    dw = _gemm_tb(xs, g)  # [D, G], one GEMM with xs^T materialised (see _gemm_tb)
    db = g.reshape(-1, g.shape[-1]).sum(0)
    return g @ w.T, dw, db


_dense.defvjp(_dense_fwd, _dense_bwd)


def dense(xs: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """xs @ w + b over any leading axes ([..., D] -> [..., G]), the built-in cells' ``project``.

    The forward is the plain GEMM; the backward computes dW = X^T dZ through ``_gemm_tb``, which
    avoids XLA CPU's slow path for a dot contracting the leading axis (autodiff of ``xs @ w``
    emits exactly that dot).
    """
    xs, w, b = _uniform_vma(xs, w, b)
    return _dense(xs, w, b)
