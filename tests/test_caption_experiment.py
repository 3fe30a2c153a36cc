"""experiments.caption on ":tiny": it learns, resumes exactly, captions image files from the
command line, and refuses bad input in one line naming the flag or the file (and line)."""

import json

import jax
import numpy as np
import pytest
from PIL import Image

from experiments import _cli, caption
from experiments.configs import caption as configs
from rnnlab.data import scenes
from rnnlab.train import state, writers

TINY = "experiments/configs/caption.py:tiny"


def _tiny(**fields):
    config = configs.get_config("tiny")
    config.decoders = "show_attend_tell"  # the decoder with the most parts
    config.update(fields)
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("caption")
    return workdir, caption.run(_tiny(), str(workdir))


def test_tiny_run_learns_writes_figures_and_reports(trained):
    workdir, results = trained
    one = results["decoders"]["show_attend_tell"]
    assert results["devices"] == jax.device_count()  # recorded: the batches were split over them
    records = writers.read_metrics(workdir / "show_attend_tell")
    assert records[-1]["nll"] < 0.6 * records[0]["nll"], records  # from ~ln V to well below
    assert one["valid_nll"] < 0.6 * records[0]["nll"]
    predictions = json.loads((workdir / "show_attend_tell" / "predictions.json").read_text())
    for kind in ("greedy", "beam"):  # every caption is in the grammar already
        for text in predictions["test"][kind]:
            scenes.parse(text)
    scores = one["scores"]["test"]["beam"]
    assert set(scores) == {"bleu1", "bleu2", "bleu3", "bleu4", "cider_d", "true"}
    assert scores["bleu1"] > 0.3 and 0 <= scores["true"] <= 1
    for name in ("results.json", "learning_curves.png", "show_attend_tell/samples.png",
                 "show_attend_tell/attention_0.png", "show_attend_tell/vocab.json"):  # fmt: skip
        assert (workdir / name).exists(), name
    section = caption.report(str(workdir))
    assert "| show_attend_tell | test | beam |" in section and "BLEU-4 27.7" not in section
    assert "Show, Attend and Tell, soft (Xu et al. 2015), COCO: 24.3." in section


def test_resume_is_exact(trained, tmp_path):
    """20 steps, then resumed to 40, equals the straight 40 steps: metrics and params."""
    workdir, results = trained
    config = _tiny()
    mesh = caption.parallel.make_mesh()
    _, cell, encoder = caption.setup(config, mesh)
    data = caption.load_data(config)
    spec = caption.make_spec(config, encoder, cell, "show_attend_tell", len(data.vocab))
    config.steps = 20
    caption.train_decoder(config, spec, data, tmp_path, mesh)
    config.steps = 40
    final = caption.train_decoder(config, spec, data, tmp_path, mesh)
    assert state.checksum(final.params) == results["decoders"]["show_attend_tell"]["params_sha256"]
    straight = writers.read_metrics(workdir / "show_attend_tell")
    assert writers.read_metrics(tmp_path) == straight


def _png(path, size, mode="RGB"):
    rng = np.random.default_rng(0)
    channels = {"RGB": 3, "L": 1}[mode]
    pixels = rng.integers(0, 255, (size, size, channels), np.uint8)
    Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode).save(path)
    return str(path)


def _cli_run(argv, capsys):
    """experiments.caption's command line in-process: (exit status, stdout, stderr)."""
    try:
        caption.main(["caption", *argv])
        code = 0
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def test_caption_mode_prints_a_caption_and_names_a_bad_image(trained, tmp_path, capsys):
    workdir, _ = trained
    scene = scenes.generate(0, split="test", image_size=24, max_objects=2)
    good = tmp_path / "scene.png"
    Image.fromarray(np.round(scene.image * 255).astype(np.uint8)).save(good)
    code, out, err = _cli_run([f"--workdir={workdir}", "--mode=caption", str(good)], capsys)
    assert code == 0, err
    printed = out.strip().split(": ", 1)
    assert printed[0] == str(good)
    scenes.parse(printed[1])  # a caption in the grammar
    big = _png(tmp_path / "big.png", 32)
    code, _, err = _cli_run([f"--workdir={workdir}", "--mode=caption", big], capsys)
    assert code == 2 and err.count("\n") == 0
    assert "big.png: size 32x32, expected 24x24" in err and "resize_images" in err
    grey = _png(tmp_path / "grey.png", 24, "L")
    code, _, err = _cli_run([f"--workdir={workdir}", "--mode=caption", grey], capsys)
    assert code == 2 and "grey.png: 1 channel(s) (mode L), expected 3" in err
    code, out, err = _cli_run(
        [f"--workdir={workdir}", "--mode=caption", "--config.resize_images=True", big], capsys
    )
    assert code == 0 and out.startswith(big), err


@pytest.mark.parametrize(
    "args,expected",
    [
        (
            ["--config.encoder=cnnn"],
            "--config.encoder='cnnn': unknown encoder 'cnnn' (did you mean 'cnn'?)",
        ),  # fmt: skip
        (["--config.decoders=inject,show_tell"], "unknown decoder 'show_tell' (did you mean"),
        (["--config.dataset=flicker8k:x"], "--config.dataset='flicker8k:x': expected one of"),
        (["--config.channels=(8,8,8,8,8)"], "--config.channels=(8, 8, 8, 8, 8): cnn encoder"),
        (["--mode=train", "a.png"], "image files are for --mode=caption"),
        (["--mode=caption"], "--mode=caption: name image files"),
    ],
)
def test_bad_flags_fail_in_one_line(tmp_path, capsys, args, expected):
    code, _, err = _cli_run([f"--workdir={tmp_path}", f"--config={TINY}", *args], capsys)
    assert code == 2 and err.count("\n") == 0 and expected in err, err
    assert not (tmp_path / "show_attend_tell").exists()


@pytest.fixture
def flickr(tmp_path):
    """A two-image Flickr8k folder: captions.txt and Images/ of 24x24 PNGs."""
    (tmp_path / "Images").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        _png(tmp_path / "Images" / name, 24)
    lines = ["image,caption"] + [f"{n}.png,A {w} dog runs ." for n in "abc" for w in "xyz"]
    (tmp_path / "captions.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_setup_reads_a_flickr8k_folder_and_names_missing_images(flickr):
    config = _tiny(dataset=f"flickr8k:{flickr}", valid_size=1, test_size=1, min_word_count=1)
    data = caption.load_data(config)
    assert data.train.images.shape == (1, 24, 24, 3) and data.train.images.dtype == np.uint8
    assert data.test.references == [["A x dog runs .", "A y dog runs .", "A z dog runs ."]]
    assert data.vocab.encode("a x dog runs .")[1:-1] == [data.vocab.ids[w] for w in
                                                        ("a", "x", "dog", "runs", ".")]  # fmt: skip
    with open(flickr / "captions.txt", "a") as f:
        f.write("d.png,A cat .\n")
    with pytest.raises(_cli.UsageError, match=r"captions.txt:11: 1 captioned image\(s\) not found"):
        caption.load_data(config)
    (flickr / "captions.txt").write_text("image,caption\na.png,A dog .\nb.png,  \n")
    with pytest.raises(_cli.UsageError, match=r"captions.txt:3: empty caption for 'b.png'"):
        caption.load_data(config)


def test_attention_figure_of_a_caption_cut_at_the_length_limit(tmp_path):
    """A caption that never emitted <eos> fills every decoded step: one panel per word."""
    from types import SimpleNamespace

    from experiments._caption_data import Data, Split
    from experiments._caption_report import plot_attention

    images = np.zeros((1, 8, 8, 3), np.uint8)
    split = Split(images, [["a"]], None, ["scene 0"])
    data = Data(None, split, split, split)
    steps, cells = 4, 4  # max_len decoded tokens over a 2 x 2 grid
    predictions = {"weights": np.full((1, steps, cells), 0.25)}
    config = SimpleNamespace(num_attention=1)
    for text in ("one two three four", "one two"):  # cut off at max_len; ended with <eos>
        predictions["greedy"] = [text]
        (path,) = plot_attention(tmp_path, config, data, predictions)  # IndexError before
        assert path.exists() and path.stat().st_size > 0
