"""Sweeps: N models in one program (vmap or lax.map) equal N separate runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import cells
from rnnlab.data import tasks
from rnnlab.models import sequence
from rnnlab.train import loop, state, step, sweep, writers
from tests.train import toy

STEPS = 3


def lstm_adding():
    """init_one(h), step_one(state, h) for an LSTM on adding; h = {"seed", "forget_bias"}."""
    task = tasks.get("adding")
    tx = step.optimizer("adam", 1e-2)

    def parts(h):
        k_init, k_train, k_data = jax.random.split(jax.random.key(h["seed"]), 3)
        cell = cells.get("lstm", forget_bias=h["forget_bias"])
        model = sequence.make(cell, input_size=2, hidden_size=8, output_size=1)
        return model, tasks.source(task, k_data, 8, 10), (k_init, k_train)

    def init_one(h):
        model, source, (k_init, k_train) = parts(h)
        return state.create(model.init(k_init), tx, k_train, source.init())

    def step_one(s, h):
        model, source, _ = parts(h)

        def loss_fn(params, batch, key):
            return task.loss(model.apply(params, batch["inputs"]), batch), {}

        return step.make_step(loss_fn, tx, source.next, clip_norm=1.0)(s)

    return init_one, step_one


@pytest.mark.slow  # ~1 minute on 2 busy cores; the toy test below checks the same quickly
@pytest.mark.parametrize("strategy", ["vmap", "map"])
def test_each_lstm_of_a_forget_bias_sweep_equals_its_separate_run(strategy):
    init_one, step_one = lstm_adding()
    grid = sweep.grid(seed=[0, 1], forget_bias=[0.0, 2.0])
    hparams = {"seed": jnp.array(grid["seed"]), "forget_bias": jnp.array(grid["forget_bias"])}
    n = sweep.num_models(hparams)
    states = jax.jit(sweep.init_models(init_one, hparams, strategy))()
    run = jax.jit(sweep.step_models(step_one, hparams, strategy))
    for _ in range(STEPS):
        states, metrics = run(states)
    assert metrics["loss"].shape == (n,)
    one_init, one_step = jax.jit(init_one), jax.jit(step_one)
    for i in range(n):
        h = jax.tree.map(lambda x, i=i: x[i], hparams)
        s = one_init(h)
        for _ in range(STEPS):
            s, m = one_step(s, h)
        for a, b in zip(jax.tree.leaves(s.params), jax.tree.leaves(states.params), strict=True):
            np.testing.assert_allclose(np.asarray(b[i]), np.asarray(a), rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(float(metrics["loss"][i]), float(m["loss"]), rtol=1e-5)
    # The hyperparameter reached each model: forget-gate biases differ by 2 at init.
    b = np.asarray(jax.jit(sweep.init_models(init_one, hparams))().params["rnn"][0]["b"])
    assert np.allclose(b[1, 8:16] - b[0, 8:16], 2.0)


def toy_models():
    """Linear regression models; h = {"seed", "lr"}."""

    def init_one(h):
        k_init, k_train, k_data = jax.random.split(jax.random.key(h["seed"]), 3)
        params = {"w": 0.1 * jax.random.normal(k_init, (3,)), "b": jnp.zeros(())}
        return state.create(
            params, step.optimizer("sgd", h["lr"]), k_train, toy.source(k_data).init()
        )

    def step_one(s, h):
        tx = step.optimizer("sgd", h["lr"])
        return step.make_step(toy.loss_fn, tx, toy.source(None).next)(s)

    return init_one, step_one


@pytest.mark.parametrize("strategy", ["vmap", "map"])
def test_sweep_in_the_loop_writes_per_model_metrics_and_equals_separate_runs(tmp_path, strategy):
    init_one, step_one = toy_models()
    hparams = {"seed": jnp.array([0, 1, 2]), "lr": jnp.array([0.0, 0.1, 0.2])}
    final = loop.train(
        workdir=tmp_path,
        init_state=sweep.init_models(init_one, hparams, strategy),
        train_step=sweep.step_models(step_one, hparams, strategy),
        steps=4,
        log_every=2,
        checkpoint_every=4,
        config={"sweep": "lr"},
        models=3,
        progress=False,
    )
    assert final.step.shape == (3,)
    records = writers.read_metrics(tmp_path)
    assert [(r["step"], r["model"]) for r in records] == [(s, m) for s in (2, 4) for m in range(3)]
    assert len({r["loss"] for r in records if r["step"] == 4}) == 3
    model_0 = writers.read_metrics(tmp_path, model=0)
    assert len(model_0) == 2
    # lr = 0 leaves model 0's params at their init.
    init = jax.jit(sweep.init_models(init_one, hparams))()
    np.testing.assert_array_equal(np.asarray(final.params["w"][0]), np.asarray(init.params["w"][0]))
    assert not np.array_equal(np.asarray(final.params["w"][1]), np.asarray(init.params["w"][1]))
    # Each model equals its separate run.
    one_init, one_step = jax.jit(init_one), jax.jit(step_one)
    for i in range(3):
        h = jax.tree.map(lambda x, i=i: x[i], hparams)
        s = one_init(h)
        for _ in range(4):
            s, _ = one_step(s, h)
        for a, b in zip(jax.tree.leaves(s.params), jax.tree.leaves(final.params), strict=True):
            np.testing.assert_allclose(np.asarray(b[i]), np.asarray(a), rtol=1e-6, atol=1e-7)
