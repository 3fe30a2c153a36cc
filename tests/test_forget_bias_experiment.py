"""experiments.forget_bias: the model grid in one program, paired seeds, a tiny run, resume."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import _cli, forget_bias, reproduce
from experiments.configs import reproduce as reproduce_configs
from experiments.configs.forget_bias import get_config
from rnnlab.data import tasks
from rnnlab.train import ConfigMismatchError, writers

STEPS = 2


def tiny_grid(**overrides):
    config = get_config("tiny")
    config.update(overrides)
    run = forget_bias.setup(config)[0]
    return config, forget_bias.groups(config, run.task, run.seq_len)


def test_each_model_of_the_one_program_grid_equals_its_separate_run():
    # LSTMs with b_f in {0, 1} and chrono, and tanh RNNs, x 2 seeds: two param structures.
    config, grid = tiny_grid(batch_size=4, baselines="rnn")
    assert [g.name for g in grid] == ["lstm", "rnn"]
    init_state, train_step, _ = forget_bias.program(grid, config.strategy)
    combined = jax.jit(init_state)()
    step_all = jax.jit(train_step)
    for _ in range(STEPS):
        combined, metrics = step_all(combined)
    assert metrics["loss"].shape == (8,)
    parts = forget_bias.split(combined, [len(g.labels) for g in grid])
    offset = 0
    for g, part in zip(grid, parts):
        init_one, step_one = jax.jit(g.init_one), jax.jit(g.step_one)
        for i in range(len(g.labels)):
            h = jax.tree.map(lambda x, i=i: x[i], g.hparams)
            s = init_one(h)
            for _ in range(STEPS):
                s, m = step_one(s, h)
            for a, b in zip(jax.tree.leaves(s.params), jax.tree.leaves(part.params), strict=True):
                np.testing.assert_allclose(np.asarray(b[i]), np.asarray(a), rtol=2e-5, atol=2e-6)
            np.testing.assert_allclose(metrics["loss"][offset + i], m["loss"], rtol=1e-5)
        offset += len(g.labels)


def test_seeds_are_paired_and_the_biases_are_set_as_asked():
    config, grid = tiny_grid(variants="cifg,peepholes", baselines="gru", chrono_max_time=50)
    combined = jax.jit(forget_bias.program(grid, config.strategy)[0])()  # one compiled init
    parts = forget_bias.split(combined, [len(g.labels) for g in grid])
    states = {g.name: part for g, part in zip(grid, parts)}
    H = config.hidden_size
    lstm = states["lstm"].params["rnn"][0]  # models: bf=0 x 2 seeds, bf=1 x 2, chrono x 2
    assert grid[0].labels == ("lstm bf=0",) * 2 + ("lstm bf=1",) * 2 + ("lstm chrono",) * 2
    b = np.asarray(lstm["b"])  # [6, 4H]
    np.testing.assert_array_equal(b[0:2, H : 2 * H], 0.0)
    np.testing.assert_array_equal(b[2:4, H : 2 * H], 1.0)
    np.testing.assert_array_equal(b[:4, :H], 0.0)
    b_f = b[4:, H : 2 * H]  # chrono: log U[1, T_max - 1], b_i = -b_f
    assert b_f.min() >= 0.0 and b_f.max() <= np.log(48.0) + 1e-6 and b_f.std() > 0.3
    np.testing.assert_array_equal(b[4:, :H], -b_f)
    np.testing.assert_array_equal(b[:, 2 * H :], 0.0)
    # The forget gate at zero input and state is sigmoid(b_f).
    f = jax.nn.sigmoid(jnp.asarray(b[:, H : 2 * H]))
    np.testing.assert_allclose(np.asarray(f[2]), 1 / (1 + np.exp(-1.0)), rtol=1e-6)
    # Paired: every setting (and variant) of seed k has the same weights and data stream.
    for name in ("w_x", "w_h"):
        w = np.asarray(lstm[name])
        for k in range(2):
            for other in (k + 2, k + 4):
                np.testing.assert_array_equal(w[other], w[k])
            for variant in ("lstm_cifg", "lstm_peepholes"):
                np.testing.assert_array_equal(
                    np.asarray(states[variant].params["rnn"][0][name][k]), w[k]
                )
        assert not np.array_equal(w[0], w[1])  # seeds differ
    data = np.asarray(jax.random.key_data(states["lstm"].data_state["key"]))
    gru_data = np.asarray(jax.random.key_data(states["gru"].data_state["key"]))
    np.testing.assert_array_equal(data[2], data[0])
    np.testing.assert_array_equal(gru_data[0], data[0])
    assert not np.array_equal(data[1], data[0])
    assert "p_f" in states["lstm_peepholes"].params["rnn"][0]


def test_bad_values_are_refused_before_anything_runs(tmp_path):
    for field, value, match in (
        ("tasks", "adding:10, adidng:20", "did you mean 'adding'"),
        ("tasks", "adding", "expected 'name:value'"),
        ("variants", "cfig", "did you mean 'cifg'"),
        ("baselines", "gur", "did you mean 'gru'"),
        ("reference", "lstm bf=3", "not among"),
        ("strategy", "shard", "expected one of"),
        ("chrono_max_time", 2, "> 2"),
    ):
        config = get_config("tiny")
        config[field] = value
        with pytest.raises(_cli.UsageError, match=match):
            forget_bias.run(config, str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_tiny_study_learns_reports_and_resumes(tmp_path):
    workdir = tmp_path / "forget_bias"
    config = get_config("tiny")
    config.steps = 40
    forget_bias.run(config, str(workdir))
    config.steps = 60  # only steps changed: the study extends from its checkpoints
    results = forget_bias.run(config, str(workdir))
    run_dir = workdir / "adding_T10"
    assert sorted({r["step"] for r in writers.read_metrics(run_dir)}) == list(range(10, 70, 10))
    rows = {s["label"]: s for s in results["runs"][0]["settings"]}
    assert list(rows) == ["lstm bf=0", "lstm bf=1", "lstm chrono"]
    baseline = tasks.get("adding").baseline(10)
    # A real outcome: the best LSTM ends far below the memoryless baseline at T=10.
    assert min(min(row["final"]) for row in rows.values()) < 0.6 * baseline
    for row in rows.values():  # solved counts agree with the per-seed steps to solve
        assert row["solved"] == sum(np.isfinite(row["steps_to_solve"]))
        assert ("p_steps" in row) == (row["label"] != config.reference)
    for name in ("results.json", "curves.png", "steps_to_solve.png", "report.md"):
        assert (workdir / name).exists(), name
    assert json.loads((run_dir / "config.json").read_text())["seq_len"] == 10
    # experiments.reproduce puts the section, figure paths relative to its report, in report.md.
    reproduce_config = reproduce_configs.get_config()
    reproduce_config.studies, reproduce_config.report_only = "forget_bias", True
    reproduce.run(reproduce_config, str(tmp_path))
    text = (tmp_path / "report.md").read_text()
    assert "## Forget-gate bias and LSTM variants" in text and "| lstm chrono |" in text
    assert "(forget_bias/curves.png)" in text and "significant (p =" in text

    config.hidden_size = 8  # a model change is refused, naming the field
    with pytest.raises(ConfigMismatchError, match="hidden_size: 16 -> 8"):
        forget_bias.run(config, str(workdir))
