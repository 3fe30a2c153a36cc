"""Each experiment's run() on ":tiny" reaches a real outcome, then resumes; reproduce reports."""

import json

import jax
import pytest

from experiments import _cli, long_memory, reproduce
from experiments.configs import long_memory as long_memory_configs
from experiments.configs import reproduce as reproduce_configs
from rnnlab.train import ConfigMismatchError, writers


def test_long_memory_tiny_learns_adding_then_resumes_and_extends(tmp_path):
    config = long_memory_configs.get_config("tiny")
    results = long_memory.run(config, str(tmp_path))
    # Far below the memoryless baseline (1/6) after 60 steps of T=10.
    assert results["final_eval"]["loss"] < 0.5 * results["baseline_loss"], results
    assert results["devices"] == jax.device_count()  # recorded: the batches were split over them
    for name in ("config.json", "metrics.jsonl", "results.json", "learning_curve.png"):
        assert (tmp_path / name).exists(), name
    assert list(tmp_path.glob("events.out.tfevents.*"))
    assert json.loads((tmp_path / "config.json").read_text())["cell"] == "lstm"

    config.steps = 80  # only steps changed: the run extends from its last checkpoint
    extended = long_memory.run(config, str(tmp_path))
    steps = [r["step"] for r in writers.read_metrics(tmp_path)]
    assert steps == list(range(10, 90, 10))
    assert extended["steps"] == 80

    config.hidden_size = 32  # a model change is refused, naming the field
    with pytest.raises(ConfigMismatchError, match="hidden_size: 16 -> 32"):
        long_memory.run(config, str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["hidden_size"] == 16


def test_long_memory_takes_a_users_cell_by_dotted_path_and_other_tasks(tmp_path):
    config = long_memory_configs.get_config("tiny")
    config.cell, config.task, config.steps = "tests._user_cell:mgu", "temporal_order", 20
    results = long_memory.run(config, str(tmp_path))
    assert results["cell"] == "tests._user_cell:mgu" and results["task"] == "temporal_order"
    assert "error" in results["final_eval"]


def test_reproduce_runs_each_study_and_writes_the_report(tmp_path, monkeypatch):
    def tiny_demo(workdir):
        config = long_memory_configs.get_config("tiny")
        (tmp_path / "demo" / "long_memory" / "adding_lstm").mkdir(parents=True)
        long_memory.run(config, str(tmp_path / "demo" / "long_memory" / "adding_lstm"))

    monkeypatch.setattr(long_memory, "demo", tiny_demo)
    config = reproduce_configs.get_config()
    config.studies = "long_memory"  # the other studies' demos take minutes; each has its test
    reproduce.run(config, str(tmp_path / "demo"))
    report = (tmp_path / "demo" / "report.md").read_text()
    assert (
        "## Long-memory tasks" in report and "| long_memory/adding_lstm | adding | lstm" in report
    )
    assert "![adding_lstm](long_memory/adding_lstm/learning_curve.png)" in report
    config = reproduce_configs.get_config()
    config.studies = "long_memroy"
    with pytest.raises(_cli.UsageError, match="did you mean 'long_memory'"):
        reproduce.run(config, str(tmp_path / "demo"))
