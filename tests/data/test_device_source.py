"""The on-device pairs source: every pair once per epoch, buckets, exact resume, by_bucket."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.data import device_source

# Pair i has a source of 1 + i % 5 ids and a target of 2 + i % 7 ids, all equal to i.
PAIRS = [([i] * (1 + i % 5), [i] * (2 + i % 7)) for i in range(1, 24)]


def _epoch(source, position, next_batch=None):
    next_batch = next_batch or jax.jit(source.next)
    batches = []
    for _ in range(source.num_batches):
        batch, position = next_batch(position)
        batches.append(jax.tree.map(np.asarray, batch))
    return batches, position


def test_an_epoch_visits_every_pair_with_its_own_ids_and_lengths():
    source = device_source.make(PAIRS, 5, key=jax.random.key(0), boundaries=(4, 6))
    batches, position = _epoch(source, source.init())
    assert source.num_batches == 5 and int(position["epoch"]) == 1 and int(position["index"]) == 0
    rows = np.concatenate([b["index"] for b in batches])
    assert sorted(set(rows.tolist())) == list(range(len(PAIRS)))  # 23 pairs, 2 wrap round
    for b in batches:
        assert len(set(b["bucket"].tolist())) == 1
        s_width, t_width = source.widths[int(b["bucket"][0])]
        for row, i in enumerate(b["index"]):
            s, t = PAIRS[i]
            assert b["source_lengths"][row] == len(s) <= s_width
            assert b["target_lengths"][row] == len(t) <= t_width
            np.testing.assert_array_equal(b["source"][row, : len(s)], s)
            assert not b["source"][row, len(s) :].any()
    # A batch's bucket is the largest among its members.
    lengths = [max(len(s), len(t)) for s, t in PAIRS]
    for b in batches:
        top = max(np.searchsorted([4, 6], lengths[i], side="left") for i in b["index"])
        assert b["bucket"][0] == top


def test_epochs_differ_and_a_restored_position_gives_the_same_batches():
    source = device_source.make(PAIRS, 4, key=jax.random.key(1), boundaries=(5,))
    next_batch = jax.jit(source.next)  # one compile for the three epochs
    first, after = _epoch(source, source.init(), next_batch)
    second, _ = _epoch(source, after, next_batch)
    assert any((a["index"] != b["index"]).any() for a, b in zip(first, second))
    # The position is plain data: from a host copy of epoch 1 the same batches come again.
    host = {k: np.asarray(v) for k, v in after.items()}
    assert host["epoch"] == 1 and host["index"] == 0 and host["order"].shape == (len(PAIRS),)
    again, _ = _epoch(source, {k: jnp.asarray(v) for k, v in host.items()}, next_batch)
    for a, b in zip(second, again):
        np.testing.assert_array_equal(a["index"], b["index"])


def test_by_bucket_runs_the_loss_on_the_buckets_width():
    source = device_source.make(PAIRS, 6, key=jax.random.key(2), boundaries=(3, 6))
    seen = []

    def width_of(params, batch, scale):
        seen.append(batch["target"].shape[1])  # traced once per branch
        return scale * batch["target"].shape[1] + params

    fn = jax.jit(device_source.by_bucket(width_of, source.widths))
    position, next_batch = source.init(), jax.jit(source.next)
    for _ in range(2 * source.num_batches):
        batch, position = next_batch(position)
        expected = source.widths[int(batch["bucket"][0])][1]
        assert float(fn(jnp.float32(0.5), batch, 2.0)) == 2.0 * expected + 0.5
    assert sorted(seen) == sorted(t for _, t in source.widths)  # one trace per bucket


def test_quantile_boundaries_and_bad_arguments():
    bounds = device_source.quantile_boundaries(PAIRS, 3)
    assert bounds == tuple(sorted(bounds)) and 1 <= len(bounds) <= 2
    assert device_source.quantile_boundaries(PAIRS, 1) == ()
    with pytest.raises(ValueError, match="boundaries must increase"):
        device_source.make(PAIRS, 4, key=jax.random.key(0), boundaries=(5, 3))
    with pytest.raises(ValueError, match="batch_size"):
        device_source.make(PAIRS, 0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="empty"):
        device_source.make([], 4, key=jax.random.key(0))
