"""The loop: non-finite losses stop (or are skipped), SIGTERM saves and exits 0, logs."""

import os
import signal

import jax
import numpy as np
import pytest

from rnnlab.train import checkpoint, loop, writers
from tests.train import toy

CONFIG = {"steps": 12, "lr": 0.1}


def train(workdir, init_state, train_step, **kw):
    options = dict(steps=12, log_every=4, checkpoint_every=3, config=CONFIG, progress=False)
    return loop.train(
        workdir=workdir, init_state=init_state, train_step=train_step, **(options | kw)
    )


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    init_state, train_step = toy.setup(poison_at=6)  # batch index 6 is step 7
    with pytest.raises(loop.NonFiniteError, match="non-finite loss at step 7") as e:
        train(tmp_path, init_state, train_step)
    assert "last good checkpoint is step 6" in str(e.value)
    # Detected at the step-8 log boundary: 3 and 6 saved, nothing after the NaN.
    assert checkpoint.Checkpointer(tmp_path / "checkpoints").steps() == [3, 6]
    assert [r["step"] for r in writers.read_metrics(tmp_path)] == [4]


def test_nonfinite_gradient_is_named_by_its_leaf(tmp_path):
    init_state, train_step = toy.setup()

    def poisoned(state):
        grad_nan = lambda p, b, k: ((0.0, {}), {"b": jax.numpy.nan * p["b"], "w": p["w"]})  # noqa: E731
        return toy.step.make_step(
            toy.loss_fn, toy.optax.sgd(0.1), toy.source(jax.random.key(0)).next, grad_fn=grad_nan
        )(state)

    with pytest.raises(loop.NonFiniteError, match=r"gradient of params\['b'\] at step 1"):
        train(tmp_path, init_state, poisoned)


def test_skip_mode_skips_and_counts_nonfinite_updates(tmp_path):
    init_state, train_step = toy.setup(poison_at=6)
    final = train(tmp_path, init_state, train_step, on_nonfinite="skip")
    assert np.all(np.isfinite(np.asarray(final.params["w"])))
    records = writers.read_metrics(tmp_path)
    assert [r["skipped"] for r in records] == [0, 1, 1]  # steps 4, 8, 12; step 7 was skipped
    assert int(final.health["bad_step"]) == 7 and int(final.step) == 12


def test_sigterm_saves_the_current_step_and_exits_zero(tmp_path):
    init_state, train_step = toy.setup()

    calls = []
    jitted = jax.jit(train_step)

    def host_step(state):  # a Python wrapper runs on every call: send SIGTERM at call 5
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return jitted(state)

    original = loop.jax.jit
    loop.jax.jit = lambda fn, **kw: host_step if fn is train_step else original(fn, **kw)
    try:
        with pytest.raises(SystemExit) as e:
            train(tmp_path, init_state, train_step, checkpoint_every=100)
    finally:
        loop.jax.jit = original
    assert e.value.code == 0
    assert checkpoint.Checkpointer(tmp_path / "checkpoints").steps() == [5]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    final = train(tmp_path, init_state, train_step)  # resumes at 5 and finishes
    assert int(final.step) == 12


def test_log_steps_and_final_step_are_logged_and_checkpointed(tmp_path):
    init_state, train_step = toy.setup(lr=0.3)
    final = train(tmp_path, init_state, train_step, steps=10, log_every=4, checkpoint_every=4)
    assert [r["step"] for r in writers.read_metrics(tmp_path)] == [4, 8, 10]
    assert checkpoint.Checkpointer(tmp_path / "checkpoints").steps() == [4, 8, 10]
    assert (tmp_path / "config.json").exists()
    assert list(tmp_path.glob("events.out.tfevents.*"))
    record = writers.read_metrics(tmp_path)[-1]
    assert {"step", "loss", "grad_norm", "abs_error", "skipped"} <= set(record)
    assert record["loss"] < 0.5 * writers.read_metrics(tmp_path)[0]["loss"]  # learns
    assert int(final.step) == 10
