"""The generated long-memory tasks: exact structure, statistics, baselines, determinism."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.data import tasks

KEY = jax.random.key(0)


def draw(task, key, batch_size, seq_len):
    """One compiled sample (eager mode would compile every op separately)."""
    return jax.jit(task.sample, static_argnums=(1, 2))(key, batch_size, seq_len)


def test_adding_markers_lie_one_in_each_half_and_target_is_their_sum():
    T = 50
    batch = draw(tasks.get("adding"), KEY, 2000, T)
    x, y = np.asarray(batch["inputs"]), np.asarray(batch["targets"])
    assert x.shape == (2000, T, 2) and x.dtype == np.float32 and y.shape == (2000,)
    markers = x[..., 1]
    assert set(np.unique(markers)) == {0.0, 1.0}
    assert np.all(markers[:, : T // 2].sum(1) == 1) and np.all(markers[:, T // 2 :].sum(1) == 1)
    np.testing.assert_allclose(y, (x[..., 0] * markers).sum(1), rtol=1e-6)
    first = markers[:, : T // 2].argmax(1)
    assert first.min() == 0 and first.max() == T // 2 - 1  # the whole first half is used
    assert 0 <= x[..., 0].min() and x[..., 0].max() < 1


def test_adding_baseline_is_the_mse_of_predicting_one():
    task = tasks.get("adding")
    y = np.asarray(draw(task, KEY, 20000, 30)["targets"])
    assert abs(np.mean((y - 1.0) ** 2) - task.baseline(30)) < 0.005
    assert task.baseline(30) == pytest.approx(1 / 6)
    assert task.solved({"loss": 0.009}) and not task.solved({"loss": 0.011})


def test_copy_layout_and_baseline():
    T = 7
    task = tasks.get("copy")
    batch = draw(task, KEY, 300, T)
    x, y = np.asarray(batch["inputs"]), np.asarray(batch["targets"])
    assert x.shape == (300, T + 20, 10) and y.shape == (300, T + 20)
    tokens = x.argmax(-1)
    assert np.all(x.sum(-1) == 1)
    assert np.all((tokens[:, :10] >= 1) & (tokens[:, :10] <= 8))
    assert np.all(tokens[:, 10 : T + 9] == 0) and np.all(tokens[:, T + 9] == 9)
    assert np.all(tokens[:, T + 10 :] == 0)
    assert np.all(y[:, : T + 10] == 0) and np.all(y[:, -10:] == tokens[:, :10])
    # The memoryless predictor: blank until the recall, then uniform over the 8 symbols.
    logits = np.zeros((300, T + 20, 9), np.float32)
    logits[:, : T + 10, 0] = 1e4
    logits[:, -10:, 0] = -1e4
    loss = float(jax.jit(task.loss)(jnp.asarray(logits), batch))
    assert loss == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-5)
    assert task.baseline(T) == pytest.approx(10 * math.log(8) / (T + 20))


def test_temporal_order_marks_two_symbols_in_the_stated_ranges():
    T = 100
    task = tasks.get("temporal_order")
    batch = draw(task, KEY, 2000, T)
    tokens = np.asarray(batch["inputs"]).argmax(-1)
    assert np.all(tokens[:, 0] == 6) and np.all(tokens[:, -1] == 7)
    marked = (tokens == 4) | (tokens == 5)
    assert np.all(marked.sum(1) == 2)
    positions = np.sort(np.nonzero(marked)[1].reshape(2000, 2), axis=1)
    (lo1, hi1), (lo2, hi2) = tasks.order_positions(T)
    assert (lo1, hi1, lo2, hi2) == (10, 20, 50, 60)
    assert positions[:, 0].min() == lo1 and positions[:, 0].max() == hi1
    assert positions[:, 1].min() == lo2 and positions[:, 1].max() == hi2
    symbols = np.take_along_axis(tokens, positions, 1) - 4  # 0: X, 1: Y
    np.testing.assert_array_equal(np.asarray(batch["targets"]), 2 * symbols[:, 0] + symbols[:, 1])
    assert np.bincount(np.asarray(batch["targets"]), minlength=4).min() > 400
    assert task.baseline(T) == pytest.approx(math.log(4))


@pytest.mark.parametrize("name", tasks.names())
def test_a_batch_is_a_pure_function_of_its_key(name):
    task = tasks.get(name)
    a = jax.jit(lambda key: task.sample(key, 8, 20))(jax.random.key(3))  # another program
    b = draw(task, jax.random.key(3), 8, 20)
    c = draw(task, jax.random.key(4), 8, 20)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
    assert not np.array_equal(np.asarray(a["inputs"]), np.asarray(c["inputs"]))


def test_source_batch_i_is_sample_of_fold_in_i():
    task = tasks.get("adding")
    source = tasks.source(task, KEY, 4, 12)
    state = source.init()
    next_batch = jax.jit(source.next)
    for i in range(3):
        batch, state = next_batch(state)
        expected = draw(task, jax.random.fold_in(KEY, i), 4, 12)
        np.testing.assert_array_equal(np.asarray(batch["inputs"]), expected["inputs"])
    assert int(state["index"]) == 3


def test_unknown_task_and_bad_length_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="did you mean 'adding'"):
        tasks.get("addding")
    with pytest.raises(ValueError, match="seq_len.*>= 10"):
        tasks.get("temporal_order").check_seq_len(5)
