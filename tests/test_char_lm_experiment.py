"""experiments.char_lm on ":tiny": every output, a real outcome, exact resume, sampling, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import _cli, char_lm
from experiments.configs import char_lm as configs
from rnnlab.data import text
from rnnlab.models import lm
from rnnlab.train import loop, writers
from rnnlab.train.state import to_host

# A highly repetitive Python-like corpus: an LSTM gets far below its unigram entropy quickly.
CORPUS = "".join(f'def f{i % 5}(x):\n    return "ab" + x  # c{i % 3}\n' for i in range(300))
MODES = {"train": char_lm.run, "sample": char_lm.sample}


def tiny_config(corpus_path, steps=40):
    config = configs.get_config("tiny")
    config.corpus, config.steps, config.max_chars = str(corpus_path), steps, 0
    config.vis_units = "3"
    return config


def final_state(workdir):
    """The newest checkpoint's step and state leaves as bytes, read by orbax without a target."""
    mgr = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "meta"))
    step = mgr.latest_step()
    restored = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    mgr.close()
    leaves = [np.asarray(x).tobytes() for x in jax.tree.leaves(to_host(restored.state))]
    return step, restored.state, leaves


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("char_lm")
    (root / "corpus.py").write_text(CORPUS)
    workdir = root / "straight"
    results = char_lm.run(tiny_config(root / "corpus.py"), str(workdir))
    return root, workdir, results


def test_tiny_run_beats_the_unigram_baseline_and_writes_every_output(tiny_run):
    root, workdir, results = tiny_run
    assert results["bpc"]["valid"] < 0.75 * results["unigram_bpc"]["valid"], results
    assert results["bpc"]["test"] < 0.75 * results["unigram_bpc"]["test"], results
    for name in ("config.json", "vocab.json", "metrics.jsonl", "learning_curve.png", "units.html"):
        assert (workdir / name).exists(), name
    records = writers.read_metrics(workdir)
    assert [r["step"] for r in records] == [10, 20, 30, 40]
    assert all("eval_bpc" in r and "bpc" in r for r in records)
    samples = (workdir / "samples.txt").read_text()
    assert [f"=== step {s} " in samples for s in (20, 40)] == [True, True], samples
    assert all(s["text"].startswith("def ") for s in char_lm.read_samples(workdir))
    page = (workdir / "units.html").read_text()
    assert page.count("<span style=") >= 200 and "unit 3 (tanh(c))" in page
    units = {u["unit"]: u for u in results["units"]}
    assert 3 in units and all((workdir / u["png"]).exists() for u in units.values())
    assert {u["feature"] for u in units.values()} <= set(
        ["in_quote", "in_comment", "bracket_depth", "line_position"]
    )
    assert text.CharVocab.load(workdir / "vocab.json").size == results["vocab_size"]
    section = char_lm.report(str(workdir))
    assert "| valid |" in section and f"![unit {results['units'][0]['unit']}](" in section
    assert "Step 20 (temperature" in section and "Step 40 (temperature" in section


def test_a_run_killed_mid_segment_resumes_exactly_carried_state_included(tiny_run, monkeypatch):
    root, straight, results = tiny_run
    killed = root / "killed"
    config = tiny_config(root / "corpus.py")
    config.checkpoint_every = 10  # resumable: checkpoints at 10, 20, 30, then the kill

    def log_then_die(writer, step, scalars, models):
        write(writer, step, scalars, models)
        if step == 40:  # after logging step 40, before checkpointing it: resume from 30
            raise KeyboardInterrupt("killed")

    write = loop._write
    monkeypatch.setattr(loop, "_write", log_then_die)
    with pytest.raises(KeyboardInterrupt):
        char_lm.run(config, str(killed))
    monkeypatch.setattr(loop, "_write", write)
    assert [r["step"] for r in writers.read_metrics(killed)] == [10, 20, 30, 40]
    resumed = char_lm.run(config, str(killed))

    assert (killed / "metrics.jsonl").read_bytes() == (straight / "metrics.jsonl").read_bytes()
    assert resumed["params_sha256"] == results["params_sha256"]
    assert resumed["bpc"] == results["bpc"]
    step_a, state_a, leaves_a = final_state(straight)
    step_b, _, leaves_b = final_state(killed)
    assert step_a == step_b == 40 and leaves_a == leaves_b  # params, opt_state, key, data_state
    carried = np.asarray(state_a["data_state"]["carries"][0][1])  # the LSTM's c, [B, H]
    assert carried.shape == (8, 32) and np.abs(carried).max() > 0.1
    assert (killed / "samples.txt").read_text() == (straight / "samples.txt").read_text()


def test_sample_mode_prints_text_from_the_latest_checkpoint(tiny_run, capsys):
    _, workdir, _ = tiny_run
    argv = ["char_lm", f"--workdir={workdir}", "--mode=sample", "--config.sample_length=50"]
    first = _cli.main(MODES, name="char_lm", argv=argv + ["--config.top_k=5"])
    printed = capsys.readouterr().out
    assert first in printed and first.startswith("def ") and len(first) == 4 + 50
    assert set(first) <= set(CORPUS)
    again = _cli.main(MODES, name="char_lm", argv=argv + ["--config.top_k=5"])
    assert again == first  # the seed fixes the draw
    with pytest.raises(SystemExit) as exit_info:
        _cli.main(MODES, name="char_lm", argv=argv + ["--config.prime=Z"])
    assert exit_info.value.code == 2
    assert (
        "--config.prime='Z': characters ['Z'] are not in the vocabulary" in capsys.readouterr().err
    )


TWO_DEVICES = """
import json, sys
import jax
from experiments import char_lm
from tests.test_char_lm_experiment import tiny_config
assert jax.device_count() == 2, jax.devices()
config = tiny_config(sys.argv[1])
results = char_lm.run(config, sys.argv[2])
# The compiled step: each device's LSTM runs on B / 2 streams, and the gradients are summed.
data = char_lm.load_data(config)
model = char_lm.build_model(config, char_lm.make_cell(config), data.vocab.size)
train_step = char_lm.make_train_step(config, model, data.streams)
hlo = jax.jit(train_step).lower(jax.eval_shape(model.init_state)).compile().as_text()
B, H = config.batch_size, config.hidden_size
shapes = {"local": f"f32[{B // 2},{4 * H}]", "whole": f"f32[{B},{4 * H}]"}
seen = {name: shape in hlo for name, shape in shapes.items()}
# A bpc's streams split over the devices (split_streams): each device's share of the FLOPs.
from rnnlab.models import lm
from rnnlab.train import parallel
spec = lm.make_spec("lstm", vocab_size=20, hidden_size=32)
params = jax.device_put(lm.init(jax.random.key(0), spec), parallel.replicated(parallel.make_mesh()))
tokens = jax.random.randint(jax.random.key(1), (3000,), 0, 20)
evals = {}
for name, split in (("whole", None), ("split", parallel.shard_batch)):
    fn = jax.jit(lm.bits_per_char_fn(spec, tokens, num_streams=4, split_streams=split))
    evals[name] = (float(fn(params)), fn.lower(params).compile().cost_analysis()["flops"])
eval_check = {"eval_flops_ratio": evals["split"][1] / evals["whole"][1],
              "eval_bpc": [evals["whole"][0], evals["split"][0]]}
keys = ("bpc", "devices", "skipped_updates")
print(json.dumps({**{k: results[k] for k in keys}, **seen, "all_reduce": "all-reduce" in hlo,
                  **eval_check}))
"""


def test_two_devices_split_the_streams_and_train_as_one_device_does(tiny_run, tmp_path):
    """The B streams split over 2 CPU devices, carries per stream: the one-device run's bpc."""
    root, _, results = tiny_run
    names = ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS", "RNNLAB_CPU_DEVICES")
    env = {k: v for k, v in os.environ.items() if k not in names}
    proc = subprocess.run(
        [sys.executable, "-c", TWO_DEVICES, str(root / "corpus.py"), str(tmp_path / "two")],
        env={**env, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "2"},
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(proc.stdout.strip().splitlines()[-1])
    assert two["devices"] == 2 and results["devices"] == jax.device_count()
    assert two["skipped_updates"] == 0
    assert two["all_reduce"] and two["local"] and not two["whole"], two
    assert two["eval_flops_ratio"] < 0.6, two  # each device scores half the streams
    assert two["eval_bpc"][0] == pytest.approx(two["eval_bpc"][1], rel=1e-6), two
    for split in ("valid", "test"):  # float32 sums in another order over 40 Adam steps
        assert two["bpc"][split] == pytest.approx(results["bpc"][split], rel=2e-3), two


def test_a_missing_or_non_utf8_corpus_is_a_one_line_error_before_anything_runs(tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait".encode("latin-1"))
    for corpus, expected in (
        (tmp_path / "nope.txt", "no such file or directory"),
        (bad, "not UTF-8 at byte offset 3"),
    ):
        argv = ["char_lm", f"--workdir={tmp_path / 'run'}", f"--config.corpus={corpus}"]
        with pytest.raises(SystemExit) as exit_info:
            _cli.main(MODES, name="char_lm", argv=argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --config.corpus=") and expected in err and "\n" not in err
    assert not (tmp_path / "run").exists()  # the new workdir is removed again, being empty


def test_bits_per_char_fn_inside_jit_equals_bits_per_char():
    spec = lm.make_spec("lstm", vocab_size=7, hidden_size=8)
    params = lm.init(jax.random.key(0), spec)
    tokens = np.arange(300) * 5 % 7
    fn = lm.bits_per_char_fn(spec, tokens, chunk=16, num_streams=3)
    expected = lm.bits_per_char(spec, params, tokens, chunk=16, num_streams=3)
    np.testing.assert_allclose(float(jax.jit(fn)(params)), expected, rtol=1e-6)
