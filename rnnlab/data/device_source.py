"""Encoded pairs held on the device, batched by length inside the compiled step.

    source = device_source.make(pairs, batch_size, key=k, boundaries=(12, 24))
    batch, position = source.next(position)       # jit-traceable: runs inside make_step's step
    loss_fn = device_source.by_bucket(loss_at_width, source.widths)

The whole encoded data set is padded once, to its longest source and target, and kept as device
arrays (SCAN's 16,728 training pairs: 16,728 x (10 + 50) int32, about 4 MB), so a batch is a
gather and never leaves the device. The position is ``{"epoch", "index"}`` (int32 scalars, in
the train state and its checkpoints, as ``rnnlab.data.batching.Loader``'s) plus the epoch's plan
(``order`` [N], ``batches`` [ceil(N/B)]), a cache of a pure function of (key, epoch) kept in the
state so that its sorts run once per epoch, not every step (on 2 CPU cores they cost more than
the model's step). A resumed run reads exactly the batches an uninterrupted one would:

    order     = permutation(fold_in(key, e), N), then stably sorted by bucket
                (random within a bucket; bucket = by ``boundaries`` over max(|src|, |tgt|))
    batch k   = order[(k*B .. k*B + B - 1) mod N]        k = batch_order(e)[index]
    bucket(k) = the largest bucket among its members     (a batch straddling two buckets, or the
                                                          last one wrapping round, takes the wider)

Length bucketing (Sutskever et al. 2014; Bahdanau et al. 2015) without one compiled step per
bucket: every batch has the same padded shape, carries its bucket, and :func:`by_bucket` runs the
loss under ``lax.switch`` with one branch per bucket, each slicing the batch to that bucket's
static widths. Only the selected branch runs, so the recurrences run over the bucket's length,
not the data set's longest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Pair = tuple[Sequence[int], Sequence[int]]


class DeviceSource(NamedTuple):
    """A ``rnnlab.data.tasks.Source`` over encoded pairs, plus what ``by_bucket`` needs.

    Attributes:
        init: () -> the position {"epoch": 0, "index": 0} (int32 scalars) with epoch 0's plan.
        next: position -> (batch, position); a batch holds source [B, S], source_lengths [B],
            target [B, T], target_lengths [B], index [B] (the pairs' positions) and bucket [B]
            (the same for every row).
        widths: per bucket, the (source, target) widths its batches are sliced to.
        num_batches: batches per epoch, ceil(N / B).
        boundaries: the bucket edges used.
    """

    init: Callable[[], dict]
    next: Callable[[dict], tuple[dict, dict]]
    widths: tuple[tuple[int, int], ...]
    num_batches: int
    boundaries: tuple[int, ...]


def pad(sequences: Sequence[Sequence[int]], width: int | None = None, pad_id: int = 0):
    """(ids [N, width] int32, lengths [N] int32), each row padded with ``pad_id``."""
    lengths = np.array([len(s) for s in sequences], np.int32)
    width = int(lengths.max(initial=1)) if width is None else width
    if lengths.max(initial=0) > width:
        raise ValueError(f"a sequence of {lengths.max()} ids does not fit width {width}")
    ids = np.full((len(sequences), width), pad_id, np.int32)
    for row, s in enumerate(sequences):
        ids[row, : len(s)] = s
    return ids, lengths


def quantile_boundaries(pairs: Sequence[Pair], num_buckets: int) -> tuple[int, ...]:
    """Edges that split max(|src|, |tgt|) into ``num_buckets`` groups of similar size."""
    lengths = np.array([max(len(s), len(t)) for s, t in pairs])
    qs = np.quantile(lengths, np.arange(1, num_buckets) / num_buckets, method="lower")
    return tuple(sorted({int(q) for q in qs if q < lengths.max()}))


def make(
    pairs: Sequence[Pair],
    batch_size: int,
    *,
    key: jax.Array,
    boundaries: Sequence[int] = (),
) -> DeviceSource:
    """A device-resident, length-bucketed, exactly resumable source over ``pairs``.

    Args:
        pairs: (source_ids, target_ids); targets framed as the model wants them (<bos> ... <eos>).
        batch_size: B.
        key: fixes every epoch's order.
        boundaries: increasing edges over max(|src|, |tgt|); bucket b holds lengths in
            (boundaries[b-1], boundaries[b]]; () for one bucket (pad to the longest).
    """
    if not pairs:
        raise ValueError("pairs is empty")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    boundaries = tuple(int(b) for b in boundaries)
    if any(b <= a for a, b in zip(boundaries, boundaries[1:])):
        raise ValueError(f"boundaries must increase, got {boundaries}")
    source, source_lengths = pad([s for s, _ in pairs])  # [N, S]
    target, target_lengths = pad([t for _, t in pairs])  # [N, T]
    bucket_of = np.searchsorted(
        np.asarray(boundaries, int), np.maximum(source_lengths, target_lengths), side="left"
    ).astype(np.int32)
    num_buckets = len(boundaries) + 1
    # A batch of bucket b holds pairs of buckets <= b: its widths are the maxima over those.
    widths = []
    for b in range(num_buckets):
        members = bucket_of <= b
        widths.append(
            (
                int(source_lengths[members].max(initial=1)),
                int(target_lengths[members].max(initial=1)),
            )
        )
    n, B = len(pairs), batch_size
    num_batches = -(-n // B)
    data = {
        "source": jnp.asarray(source),
        "source_lengths": jnp.asarray(source_lengths),
        "target": jnp.asarray(target),
        "target_lengths": jnp.asarray(target_lengths),
    }
    bucket_of = jnp.asarray(bucket_of)

    def plan(epoch):
        k_order, k_batches = jax.random.split(jax.random.fold_in(key, epoch))
        order = jax.random.permutation(k_order, n)  # [N]
        order = order[jnp.argsort(bucket_of[order], stable=True)]  # grouped by bucket
        return order.astype(jnp.int32), jax.random.permutation(k_batches, num_batches)

    def init():
        order, batches = plan(0)
        zero = jnp.zeros((), jnp.int32)
        return {"epoch": zero, "index": zero, "order": order, "batches": batches}

    def next_batch(position):
        epoch, index = position["epoch"], position["index"]
        k = position["batches"][index]
        rows = position["order"][(k * B + jnp.arange(B)) % n]  # [B]
        batch = {name: array[rows] for name, array in data.items()}
        batch["index"] = rows
        batch["bucket"] = jnp.full((B,), jnp.max(bucket_of[rows]), jnp.int32)
        wrap = index + 1 >= num_batches
        epoch = jnp.where(wrap, epoch + 1, epoch)
        # The plan is recomputed only when an epoch ends: a permutation of N costs a sort.
        order, batches = lax.cond(
            wrap, plan, lambda e: (position["order"], position["batches"]), epoch
        )
        position = {
            "epoch": epoch,
            "index": jnp.where(wrap, 0, index + 1).astype(jnp.int32),
            "order": order,
            "batches": batches,
        }
        return batch, position

    return DeviceSource(init, next_batch, tuple(widths), num_batches, boundaries)


def slice_batch(batch: dict, source_width: int, target_width: int) -> dict:
    """The batch with source cut to ``source_width`` and target to ``target_width`` columns."""
    out = dict(batch)
    out["source"] = batch["source"][:, :source_width]  # [B, S_b]
    out["target"] = batch["target"][:, :target_width]  # [B, T_b]
    return out


def by_bucket(fn: Callable, widths: Sequence[tuple[int, int]]) -> Callable:
    """``fn(params, batch, *args)`` run on the batch sliced to its bucket's widths.

    One ``lax.switch`` branch per bucket; a single bucket needs no switch.
    """
    widths = tuple(widths)

    def branch(source_width, target_width):
        return lambda params, batch, *args: fn(
            params, slice_batch(batch, source_width, target_width), *args
        )

    branches = [branch(s, t) for s, t in widths]
    if len(branches) == 1:
        return branches[0]

    def apply(params, batch, *args):
        return lax.switch(batch["bucket"][0], branches, params, batch, *args)

    return apply
