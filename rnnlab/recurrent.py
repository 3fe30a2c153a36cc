"""Runners: a cell over a sequence with ``lax.scan``, and the compositions built from that.

    unroll          one direction, padding-aware, optionally reversed within each length
    bidirectional   a forward and a backward unroll, outputs concatenated
    stack           deep (stacked) layers, each uni- or bidirectional, dropout between layers,
                    optional residual connections
    tbptt           truncated backpropagation through time: chunks of k steps, the carry passed
                    on with its gradient stopped at every chunk boundary

The API is batch-major (xs: [B, T, D]); runners transpose once to time-major for the scan. With
``lengths`` ([B] ints), steps t >= lengths[b] are padding: they leave the carry unchanged and
output zeros, so the final carry is each sequence's carry at its own last real step.

When a cell provides ``project`` and ``step`` the input term of every step is one GEMM outside
the scan; when it also provides ``scan`` (a fused recurrence with its own backward pass) the
runner calls that instead of scanning ``step``. Results are the same either way.

``remat=k`` (on every runner and ``tbptt``) trades compute for memory on long sequences: the scan
runs as an outer scan over ceil(T / k) chunks whose body, an inner scan of k steps, is wrapped in
``jax.checkpoint``. The backward pass keeps only the carry at each chunk boundary and recomputes a
chunk's steps when it reaches it, so the memory of training grows like T / k + k instead of T
(k ~ sqrt(T) minimises it) for about one extra forward pass. Values and gradients are unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rnnlab.cells.base import Carry, Cell, Params

# --- checks at the public entry points -------------------------------------------------------


def _check_cell(cell) -> None:
    if not isinstance(cell, Cell):
        raise TypeError(
            f"cell: expected an rnnlab Cell (rnnlab.cells.get(...)), got {type(cell).__name__}"
        )


def _check_xs(xs, time_major: bool, name: str = "xs") -> tuple[int, int]:
    if not hasattr(xs, "ndim") or xs.ndim != 3:
        layout = "[time, batch, features]" if time_major else "[batch, time, features]"
        shape = getattr(xs, "shape", type(xs).__name__)
        raise ValueError(f"{name}: expected a 3-d array {layout}, got shape {shape}")
    T, B = (xs.shape[0], xs.shape[1]) if time_major else (xs.shape[1], xs.shape[0])
    return B, T


def _check_remat(remat) -> int:
    """None/0 -> 0 (off); else the chunk length, a positive int."""
    if remat is None:
        return 0
    if isinstance(remat, bool) or not isinstance(remat, (int, np.integer)) or remat < 0:
        raise ValueError(f"remat: expected None, 0 (off) or a positive int, got {remat!r}")
    return int(remat)


def _check_lengths(lengths, batch_size: int, max_time: int):
    if lengths is None:
        return None
    lengths = jnp.asarray(lengths) if not isinstance(lengths, jax.Array) else lengths
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise ValueError(f"lengths: expected integers, got dtype {lengths.dtype}")
    if lengths.shape != (batch_size,):
        raise ValueError(f"lengths: expected shape ({batch_size},), got {lengths.shape}")
    if not isinstance(lengths, jax.core.Tracer):
        values = np.asarray(lengths)
        if values.size and (values.min() < 0 or values.max() > max_time):
            raise ValueError(
                f"lengths: expected values in [0, {max_time}], got min {values.min()} "
                f"and max {values.max()}"
            )
    return lengths


def mask_from_lengths(lengths: jax.Array, max_time: int) -> jax.Array:
    """[B] lengths -> [B, T] boolean mask, True on real steps."""
    return jnp.arange(max_time)[None, :] < lengths[:, None]


def reverse_padded(xs: jax.Array, lengths: jax.Array | None, time_axis: int = 1) -> jax.Array:
    """Reverses each sequence within its own length; padding stays where it is.

    The permutation is its own inverse, so the same call maps outputs back.
    """
    if lengths is None:
        return jnp.flip(xs, axis=time_axis)
    T = xs.shape[time_axis]
    t = jnp.arange(T)[None, :]  # [1, T]
    index = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # [B, T]
    if time_axis == 0:
        index = index.T  # [T, B]
    index = index.reshape(index.shape + (1,) * (xs.ndim - 2))
    return jnp.take_along_axis(xs, index, axis=time_axis)


def _cast_carry(carry: Carry, dtype) -> Carry:
    return jax.tree.map(lambda c: c.astype(dtype), carry)


def default_carry(cell: Cell, params: Params, batch_size: int, dtype=jnp.float32) -> Carry:
    """The cell's zero carry for ``batch_size`` sequences, in ``dtype``."""
    carry = cell.initial_carry(batch_size, cell.hidden_size_of(params))
    return _cast_carry(carry, dtype)


# --- the core scan ---------------------------------------------------------------------------


def _select(mask_t: jax.Array, new, old):
    """where(mask) per batch row, for every leaf of a carry pytree."""

    def pick(n, o):
        return jnp.where(mask_t.reshape(mask_t.shape + (1,) * (n.ndim - 1)), n, o)

    return jax.tree.map(pick, new, old)


def scan_time_major(
    cell: Cell,
    params: Params,
    carry: Carry,
    xs: jax.Array,
    mask: jax.Array | None = None,
    unroll: int = 1,
) -> tuple[Carry, jax.Array]:
    """The recurrence over time-major inputs, no checks: xs [T, B, D], mask [T, B] or None.

    Uses the cell's fused ``scan`` when it has one, else ``lax.scan`` over ``step`` (after one
    ``project`` GEMM) or over ``apply``.
    """
    if cell.project is not None and cell.step is not None:
        zs = cell.project(params, xs)  # [T, B, G], one large GEMM
        if cell.scan is not None:
            return cell.scan(params, carry, zs, mask)
        fn = cell.step
    else:
        zs, fn = xs, cell.apply

    def body(c, inputs):
        if mask is None:
            return fn(params, c, inputs)
        z, m = inputs
        new, y = fn(params, c, z)
        y = jnp.where(m.reshape(m.shape + (1,) * (y.ndim - 1)), y, jnp.zeros_like(y))
        return _select(m, new, c), y

    inputs = zs if mask is None else (zs, mask)
    return lax.scan(body, carry, inputs, unroll=unroll)


def scan_remat(
    cell: Cell,
    params: Params,
    carry: Carry,
    xs: jax.Array,
    mask: jax.Array | None = None,
    unroll: int = 1,
    remat: int = 0,
) -> tuple[Carry, jax.Array]:
    """``scan_time_major`` with the steps in checkpointed chunks of ``remat`` (0: no chunks).

    An outer ``lax.scan`` over N = ceil(T / k) chunks; its body, ``scan_time_major`` over k
    steps, runs under ``jax.checkpoint``, so autodiff saves only the N chunk-boundary carries and
    recomputes each chunk's residuals in the backward pass: memory ~ T / k + k instead of T. A
    last partial chunk is padded and masked (padding keeps the carry), as in ``tbptt``.

    Args:
        xs: [T, B, D] time-major inputs.
        mask: [T, B] booleans (True on real steps) or None.
        remat: the chunk length k; 0 runs ``scan_time_major`` as is.

    Returns:
        (final carry, outputs [T, B, H]) as ``scan_time_major``.
    """
    if not remat:
        return scan_time_major(cell, params, carry, xs, mask, unroll)
    T, B = xs.shape[0], xs.shape[1]
    k = min(remat, max(T, 1))
    n = -(-T // k)
    pad = n * k - T
    if mask is None and pad:
        mask = jnp.ones((T, B), dtype=bool)
    xs = jnp.pad(xs, ((0, pad),) + ((0, 0),) * (xs.ndim - 1))
    xs = xs.reshape((n, k) + xs.shape[1:])  # [N, k, B, D]
    if mask is not None:
        mask = jnp.pad(mask, ((0, pad), (0, 0))).reshape(n, k, B)  # [N, k, B], False on padding

    # prevent_cse=False: the scan already keeps XLA from merging the recomputation away.
    @functools.partial(jax.checkpoint, prevent_cse=False)
    def chunk(p, c, x, m):
        return scan_time_major(cell, p, c, x, m, unroll)

    def body(c, inputs):
        x, m = inputs
        return chunk(params, c, x, m)

    carry, ys = lax.scan(body, carry, (xs, mask))  # ys: [N, k, B, H]
    return carry, ys.reshape((n * k,) + ys.shape[2:])[:T]  # [T, B, H]


# --- public runners --------------------------------------------------------------------------


def unroll(
    cell: Cell,
    params: Params,
    xs: jax.Array,
    *,
    carry: Carry | None = None,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    unroll: int = 1,
    time_major: bool = False,
    remat: int | None = None,
) -> tuple[Carry, jax.Array]:
    """Runs ``cell`` over a batch of sequences.

    Args:
        cell: an rnnlab ``Cell``.
        params: the cell's params pytree.
        xs: [B, T, D] inputs ([T, B, D] if ``time_major``).
        carry: the initial carry; the cell's zero carry if None.
        lengths: [B] ints, the real length of each sequence; the rest is padding.
        reverse: run from each sequence's own last real step back to its first. Outputs are
            returned in the original time order.
        unroll: steps per ``lax.scan`` iteration (a speed knob; results are identical).
        time_major: whether ``xs`` and the returned outputs are [T, B, ...].
        remat: None or 0 (off), or k: checkpoint the scan in chunks of k steps, so that
            training memory grows like T / k + k instead of T (see ``scan_remat``); the values
            and gradients are the same.

    Returns:
        (final_carry, outputs): the carry after each sequence's last real step and the outputs,
        [B, T, H] (or [T, B, H]), zero on padded steps.
    """
    _check_cell(cell)
    remat = _check_remat(remat)
    B, T = _check_xs(xs, time_major)
    lengths = _check_lengths(lengths, B, T)
    xs_tm = xs if time_major else jnp.swapaxes(xs, 0, 1)  # [T, B, D]
    if reverse:
        xs_tm = reverse_padded(xs_tm, lengths, time_axis=0)
    if carry is None:
        carry = default_carry(cell, params, B, xs.dtype)
    mask = None if lengths is None else mask_from_lengths(lengths, T).T  # [T, B]
    carry, ys = scan_remat(cell, params, carry, xs_tm, mask, unroll, remat)  # ys: [T, B, H]
    if reverse:
        ys = reverse_padded(ys, lengths, time_axis=0)
    return carry, (ys if time_major else jnp.swapaxes(ys, 0, 1))


def init_bidirectional(cell: Cell, key: jax.Array, input_size: int, hidden_size: int) -> Params:
    """Params {"forward", "backward"} for ``bidirectional``."""
    k_f, k_b = jax.random.split(key)
    return {
        "forward": cell.init(k_f, input_size, hidden_size),
        "backward": cell.init(k_b, input_size, hidden_size),
    }


def bidirectional(
    cell: Cell,
    params: Params,
    xs: jax.Array,
    *,
    carry: tuple[Carry, Carry] | None = None,
    lengths: jax.Array | None = None,
    unroll: int = 1,
    time_major: bool = False,
    remat: int | None = None,
) -> tuple[tuple[Carry, Carry], jax.Array]:
    """A forward and a backward pass; the backward one starts at each sequence's own last step.

    ``remat`` checkpoints both passes in chunks of that many steps, as in ``unroll``.

    Returns:
        ((forward_carry, backward_carry), outputs [B, T, 2H]): outputs are the forward and the
        backward outputs concatenated on the feature axis, both in the original time order.
    """
    c_f, c_b = (None, None) if carry is None else carry
    kw = dict(lengths=lengths, unroll=unroll, time_major=time_major, remat=remat)
    carry_f, ys_f = unroll_fn(cell, params["forward"], xs, carry=c_f, **kw)
    carry_b, ys_b = unroll_fn(cell, params["backward"], xs, carry=c_b, reverse=True, **kw)
    return (carry_f, carry_b), jnp.concatenate([ys_f, ys_b], axis=-1)


# ``unroll`` and ``bidirectional`` are also keyword argument names inside the runners.
unroll_fn = unroll
bidirectional_fn = bidirectional


def init_stack(
    cell: Cell,
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    *,
    bidirectional: bool = False,
) -> list[Params]:
    """Params for ``stack``: one entry per layer (each {"forward", "backward"} if bidirectional)."""
    if not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
    layers = []
    size = input_size
    for k in jax.random.split(key, num_layers):
        if bidirectional:
            layers.append(init_bidirectional(cell, k, size, hidden_size))
        else:
            layers.append(cell.init(k, size, hidden_size))
        size = hidden_size * (2 if bidirectional else 1)
    return layers


def stack(
    cell: Cell,
    params: Sequence[Params],
    xs: jax.Array,
    *,
    carries: Sequence[Carry] | None = None,
    lengths: jax.Array | None = None,
    bidirectional: bool = False,
    dropout: float = 0.0,
    key: jax.Array | None = None,
    residual: bool = False,
    unroll: int = 1,
    remat: int | None = None,
) -> tuple[list[Carry], jax.Array]:
    """Stacked (deep) recurrent layers.

    Args:
        cell, params: the cell and the per-layer params of ``init_stack``.
        xs: [B, T, D].
        carries: one initial carry per layer (a (forward, backward) pair if bidirectional).
        lengths: [B] ints, as in ``unroll``.
        bidirectional: each layer is bidirectional (its output is [B, T, 2H]).
        dropout: the drop rate on the outputs of every layer but the last (the non-recurrent
            connections, as Zaremba et al. 2014); needs ``key``. 0 disables it.
        residual: add each layer's input to its output where their shapes agree (layers >= 2).
        remat: None or 0 (off), or k: every layer's scan checkpointed in chunks of k steps, as
            in ``unroll``.

    Returns:
        (final carries, one per layer; outputs of the last layer [B, T, H or 2H]).
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if dropout > 0.0 and key is None:
        raise ValueError("dropout > 0 needs key=")
    if carries is not None and len(carries) != len(params):
        raise ValueError(f"carries: expected {len(params)} (one per layer), got {len(carries)}")
    finals = []
    h = xs
    for layer, p in enumerate(params):
        c = None if carries is None else carries[layer]
        kw = dict(carry=c, lengths=lengths, unroll=unroll, remat=remat)
        if bidirectional:
            final, out = bidirectional_fn(cell, p, h, **kw)
        else:
            final, out = unroll_fn(cell, p, h, **kw)
        if residual and layer > 0 and out.shape == h.shape:
            out = out + h
        if dropout > 0.0 and layer < len(params) - 1:
            keep = jax.random.bernoulli(jax.random.fold_in(key, layer), 1.0 - dropout, out.shape)
            out = jnp.where(keep, out / (1.0 - dropout), 0.0)
        finals.append(final)
        h = out
    return finals, h


def tbptt(
    cell: Cell,
    params: Params,
    xs: jax.Array,
    *,
    chunk: int,
    carry: Carry | None = None,
    lengths: jax.Array | None = None,
    unroll: int = 1,
    remat: int | None = None,
) -> tuple[Carry, jax.Array]:
    """Truncated BPTT (Williams & Peng 1990): the sequence in chunks of ``chunk`` steps.

    The forward pass is exactly ``unroll``'s; only gradients change: the carry entering every
    chunk after the first is ``stop_gradient``-ed, so no gradient flows more than ``chunk`` steps
    back. With ``chunk >= T`` this is full BPTT. A last partial chunk is padded and masked.
    ``remat=k`` checkpoints each chunk's scan in sub-chunks of k steps, as in ``unroll``.

    Returns:
        (final_carry, outputs [B, T, H]) as ``unroll``.
    """
    _check_cell(cell)
    remat = _check_remat(remat)
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    B, T = _check_xs(xs, time_major=False)
    lengths = _check_lengths(lengths, B, T)
    if carry is None:
        carry = default_carry(cell, params, B, xs.dtype)
    n = -(-T // chunk)
    xs_tm = jnp.swapaxes(xs, 0, 1)  # [T, B, D]
    xs_tm = jnp.pad(xs_tm, ((0, n * chunk - T), (0, 0), (0, 0)))
    xs_tm = xs_tm.reshape(n, chunk, B, xs.shape[-1])  # [N, k, B, D]
    real = jnp.full((B,), T) if lengths is None else lengths
    mask = mask_from_lengths(real, n * chunk).T.reshape(n, chunk, B)  # [N, k, B]
    needs_mask = lengths is not None or n * chunk != T

    def body(c, inputs):
        i, x, m = inputs
        # Pass the gradient into the first chunk's carry only (full BPTT when chunk >= T).
        c = jax.tree.map(lambda a: jnp.where(i == 0, a, lax.stop_gradient(a)), c)
        return scan_remat(cell, params, c, x, m if needs_mask else None, unroll, remat)

    carry, ys = lax.scan(body, carry, (jnp.arange(n), xs_tm, mask))  # ys: [N, k, B, H]
    ys = ys.reshape(n * chunk, B, -1)[:T]  # [T, B, H]
    return carry, jnp.swapaxes(ys, 0, 1)
