"""The bucketed loader: every pair once per epoch, padding, bucket shapes, exact resume."""

import json

import numpy as np
import pytest

from rnnlab.data import batching


def make_pairs(n=203, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s_len, t_len = rng.integers(1, 30), rng.integers(2, 40)
        out.append((rng.integers(4, 50, s_len).tolist(), rng.integers(4, 50, t_len).tolist()))
    return out


PAIRS = make_pairs()
BOUNDARIES = [10, 20, 30]


def loader(**kw):
    return batching.Loader(PAIRS, 16, **{"seed": 0, "boundaries": BOUNDARIES, **kw})


def run(load, position, steps):
    batches = []
    for _ in range(steps):
        batch, position = load.next(position)
        batches.append(batch)
    return batches, position


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_each_pair_appears_once_per_epoch_padded_with_its_lengths():
    load = loader()
    seen = []
    for batch in load.epoch(3):
        assert batch["source"].dtype == batch["target"].dtype == np.int32
        for row, i in enumerate(batch["index"]):
            if i < 0:  # a padding row
                assert batch["source_lengths"][row] == batch["target_lengths"][row] == 0
                assert not batch["source"][row].any() and not batch["target"][row].any()
                continue
            source, target = PAIRS[i]
            assert batch["source_lengths"][row] == len(source)
            assert batch["source"][row].tolist() == source + [0] * (
                batch["source"].shape[1] - len(source)
            )
            assert batch["target"][row].tolist() == target + [0] * (
                batch["target"].shape[1] - len(target)
            )
            seen.append(int(i))
    assert sorted(seen) == list(range(len(PAIRS)))


def test_batches_hold_one_bucket_and_have_one_shape_per_bucket():
    load = loader()
    shapes = set()
    for batch in load.epoch(0):
        real = batch["index"] >= 0
        longest = np.maximum(batch["source_lengths"], batch["target_lengths"])[real]
        bucket = np.searchsorted(BOUNDARIES, longest, side="left")
        assert len(set(bucket.tolist())) == 1
        assert batch["source"].shape[0] == batch["target"].shape[0] == 16
        shapes.add((batch["source"].shape, batch["target"].shape))
    assert len(shapes) == len(BOUNDARIES) + 1
    sizes = np.bincount(load.bucket_of, minlength=4)
    assert load.num_batches == sum(-(-sizes // 16))


def test_restored_position_yields_exactly_the_same_batches_across_epochs():
    load = loader()
    steps = load.num_batches + 5  # crosses into epoch 1
    straight, _ = run(load, load.init(), steps)
    _, position = run(load, load.init(), 7)
    # As a checkpoint would store it: through JSON, or as numpy scalars (orbax restores arrays).
    restored = json.loads(json.dumps(position))
    as_arrays = {k: np.asarray(v, np.int32) for k, v in position.items()}
    for pos in (restored, as_arrays):
        resumed, _ = run(loader(), pos, steps - 7)  # a fresh loader: nothing cached
        for a, b in zip(straight[7:], resumed):
            assert_same(a, b)
    assert (
        load.batch_at({"epoch": 1, "index": 0})["index"].tolist()
        == straight[load.num_batches]["index"].tolist()
    )


def test_epoch_order_depends_on_seed_and_epoch_only():
    a, b = loader(), loader()
    assert_same(a.batch_at({"epoch": 2, "index": 3}), b.batch_at({"epoch": 2, "index": 3}))
    first = lambda load, e: [x["index"].tolist() for x in load.epoch(e)]  # noqa: E731
    assert first(a, 0) != first(a, 1) and first(a, 0) != first(loader(seed=1), 0)
    assert first(a, 0) == first(b, 0)


def test_no_shuffle_keeps_data_order_within_buckets_and_drop_remainder_fills_rows():
    ordered = [b["index"][b["index"] >= 0].tolist() for b in loader(shuffle=False).epoch()]
    assert all(x == sorted(x) for x in ordered)
    full = loader(drop_remainder=True)
    assert all((b["index"] >= 0).all() for b in full.epoch(0))


def test_bad_arguments_and_positions_are_named():
    load = loader()
    with pytest.raises(ValueError, match="out of range"):
        load.batch_at({"epoch": 0, "index": load.num_batches})
    with pytest.raises(ValueError, match="position must be"):
        load.next({"step": 0})
    with pytest.raises(ValueError, match="batch_size"):
        batching.Loader(PAIRS, 0)
    with pytest.raises(ValueError, match="boundaries must increase"):
        batching.Loader(PAIRS, 4, boundaries=[10, 5])
