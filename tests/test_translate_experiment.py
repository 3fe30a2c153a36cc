"""experiments.translate on ":tiny": learns SCAN's short commands, resumes exactly, translates;
bad data sets end in one-line errors before anything is compiled."""

import io
import json
import shutil

import jax
import pytest

from experiments import _cli, translate
from experiments.configs.translate import get_config
from rnnlab.train import writers


def test_tiny_learns_resumes_exactly_and_translates(tmp_path):
    config = get_config("tiny")
    results = translate.run(config, str(tmp_path / "a"))
    run = results["runs"]["bahdanau"]
    assert results["devices"] == jax.device_count()  # recorded: the batches were split over them
    # SCAN commands of at most 4 actions (84 held-out ones): chance of an exact match is ~0.
    assert run["greedy"]["exact"] > 50 and run["beam"]["exact"] > 50, run
    assert run["greedy"]["bleu"] > 50
    for name in ("results.json", "report.md", "by_length.png", "learning_curves.png",
                 "attention_bahdanau.png", "bahdanau/vocab.json"):  # fmt: skip
        assert (tmp_path / "a" / name).exists(), name
    sample = run["samples"][0]
    assert len(sample["weights"]) == len(sample["output"])
    assert len(sample["weights"][0]) == len(sample["source"])
    assert "| bahdanau | 200 |" in (tmp_path / "a" / "report.md").read_text()

    # Resume: drop the last checkpoint (200); the run continues from step 150 bit-exactly.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "bahdanau" / "checkpoints" / "200")
    resumed = translate.run(config, str(tmp_path / "b"))["runs"]["bahdanau"]
    assert resumed["params_sha256"] == run["params_sha256"]
    assert resumed["greedy"] == run["greedy"] and resumed["beam"] == run["beam"]
    assert writers.read_metrics(tmp_path / "b" / "bahdanau") == writers.read_metrics(
        tmp_path / "a" / "bahdanau"
    )

    # --mode=translate: sentences from a stream, translations from the latest checkpoint.
    out = io.StringIO()
    lines = ["walk twice\n", "\n", "jump left\n", "run thrice\n"]
    got = translate.translate(config, str(tmp_path / "a"), lines=lines, out=out)
    assert out.getvalue().splitlines() == got and len(got) == 3
    assert got[0] == "I_WALK I_WALK" or got[2] == "I_RUN I_RUN I_RUN", got


def test_bad_data_sets_are_one_line_usage_errors(tmp_path):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("go\tva\nhello\n")
    for dataset, message in (
        (f"tsv:{tsv}", r"pairs.tsv:2: expected 'source<TAB>target"),
        (f"tsv:{tmp_path}/missing.tsv", "no such file"),
        ("scan:lenght", "did you mean 'length'"),
        ("tvs:x.tsv", "did you mean 'tsv'"),
    ):
        config = get_config("tiny")
        config.dataset = dataset
        with pytest.raises(_cli.UsageError, match=message) as e:
            translate.run(config, str(tmp_path / "w"))
        assert "\n" not in str(e.value)
    assert not (tmp_path / "w").exists()  # refused before anything was written
    config = get_config("tiny")
    config.attention = "bahdanau,luong"
    with pytest.raises(_cli.UsageError, match="did you mean 'luong_dot'"):
        translate.run(config, str(tmp_path / "w"))


def test_malformed_tsv_through_the_command_line(tmp_path, capsys):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("go\tva\n\nhi\t\n")
    argv = ["translate", f"--workdir={tmp_path / 'w'}", f"--config.dataset=tsv:{tsv}"]
    with pytest.raises(SystemExit) as e:
        _cli.main({"train": translate.run}, name="translate", argv=argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --config.dataset=") and err.endswith("pairs.tsv:3: empty target")
    assert len(err.splitlines()) == 1


def test_translate_mode_without_a_model_says_so(tmp_path):
    with pytest.raises(_cli.UsageError, match="no trained 'bahdanau' model"):
        translate.translate(get_config("tiny"), str(tmp_path), lines=["walk"])
    json.dumps(translate.PUBLISHED)  # the published figures are plain data for results.json
