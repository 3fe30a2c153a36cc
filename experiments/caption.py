"""Image captioning: inject, show-and-tell and show-attend-tell decoders on one CNN encoder.

    python -m experiments.caption --workdir=DIR [--config.dataset=scenes]
    python -m experiments.caption --workdir=DIR --mode=caption a.png b.png

Trains each decoder of ``config.decoders`` into DIR/<decoder>/ (config.json, metrics.jsonl,
checkpoints/, vocab.json, predictions.json, results.json, samples.png and, for the attention
decoder, attention_<k>.png: each word's attention over the image, as Xu et al. 2015, figure 3),
then writes DIR/results.json comparing them and DIR/learning_curves.png. Scores on valid and
test with greedy and beam decoding: BLEU-1..4 and CIDEr-D (``rnnlab.analysis.caption_metrics``:
pycocoevalcap's scorers on text tokenised in Python) and, for the generated scenes, the fraction
of captions true of their image (``rnnlab.data.scenes.is_true``). See
experiments/configs/caption.py.

The training set lives on the device (uint8 images and the token ids of every caption, as
constants of the compiled step); batch i is a slice of the permutation of all (image, caption)
pairs drawn from (seed, epoch), so the data position is the step and resuming is exact.

``--mode=caption PATH...`` captions image files with the latest checkpoint of
``config.caption_decoder``, reading the model's config and vocabulary from its run directory.
Flags must be written ``--flag=value`` there, so that what follows them is the list of images.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from experiments import _cli
from experiments._caption_data import Data, Split, load_data, make_source, to_uint8
from experiments._caption_report import plot_attention, plot_curves, plot_samples
from experiments._caption_report import report as report  # experiments.reproduce calls it
from rnnlab import cells
from rnnlab.analysis import caption_metrics
from rnnlab.data import caption_files, scenes, tasks
from rnnlab.models import captioning as cap
from rnnlab.train import loop, parallel, state, step, writers
from rnnlab.train.checkpoint import Checkpointer, flatten_config

# Fields that may change when resuming: they change neither a model nor its data.
RESUMABLE = (
    "steps",
    "log_every",
    "checkpoint_every",
    "max_to_keep",
    "eval_batch_size",
    "decoders",
    "beam_size",
    "num_samples",
    "num_attention",
    "caption_decoder",
    "resize_images",
)
PUBLISHED = {  # BLEU-4 x 100 on COCO, for context only (other data, other encoders)
    "show_and_tell": ("Show and Tell (Vinyals et al. 2015), COCO", 27.7),
    "show_attend_tell": ("Show, Attend and Tell, soft (Xu et al. 2015), COCO", 24.3),
}
DATASETS = ("scenes", "flickr8k:DIR", "karpathy:JSON:IMAGEDIR", "tfds:coco_captions")


# --- setup ---------------------------------------------------------------------------------------


def setup(config, mesh) -> tuple[list[str], cells.Cell, cap.Encoder]:
    """Checks every value and builds the cell and the encoder, before anything is compiled.

    Raises:
        experiments._cli.UsageError: naming the field and the reason.
    """
    c = config
    _cli.check_ints(
        c,
        (
            "image_size",
            "steps",
            "batch_size",
            "log_every",
            "checkpoint_every",
            "max_to_keep",
            "eval_batch_size",
            "beam_size",
            "valid_size",
            "test_size",
            "embed_size",
            "hidden_size",
            "attention_size",
            "max_objects",
        ),
        1,
    )
    _cli.check_ints(c, ("train_size", "num_samples", "num_attention", "min_word_count"), 0)
    _cli.check(c.max_objects <= 4, "max_objects", c.max_objects, "scenes hold 1 to 4 objects")
    _cli.check(c.max_caption_len >= 3, "max_caption_len", c.max_caption_len, "must be >= 3")
    _cli.check_splits(c, mesh.devices.size)
    _cli.check_choices(c, (("optimizer", step.OPTIMIZERS), ("schedule", step.SCHEDULES)))
    _cli.check(c.learning_rate > 0, "learning_rate", c.learning_rate, "must be positive")
    for field in ("clip_norm", "warmup_steps", "attention_penalty"):
        _cli.check(c[field] >= 0, field, c[field], "must be >= 0")
    kind = c.dataset.split(":", 1)[0]
    _cli.check(
        kind in ("scenes", "flickr8k", "karpathy", "tfds") and (kind == "scenes") == (":" not in
                                                                                       c.dataset),
        "dataset", c.dataset, f"expected one of {list(DATASETS)}{_cli.suggest(kind, DATASETS)}",
    )  # fmt: skip
    if kind == "karpathy":
        _cli.check(c.dataset.count(":") == 2, "dataset", c.dataset, "expected karpathy:JSON:DIR")
    decoders = [d.strip() for d in c.decoders.split(",") if d.strip()]
    _cli.check(bool(decoders), "decoders", c.decoders, f"expected some of {list(cap.DECODERS)}")
    for d in decoders:
        why = f"unknown decoder {d!r}{_cli.suggest(d, cap.DECODERS)}; known: {list(cap.DECODERS)}"
        _cli.check(d in cap.DECODERS, "decoders", c.decoders, why)
    _cli.check(
        c.caption_decoder in cap.DECODERS, "caption_decoder", c.caption_decoder,
        f"expected one of {list(cap.DECODERS)}{_cli.suggest(c.caption_decoder, cap.DECODERS)}",
    )  # fmt: skip
    _cli.check(c.encoder != "precomputed", "encoder", c.encoder, "this experiment feeds images")
    options = {"channels": tuple(c.channels), "residual": c.residual} if c.encoder == "cnn" else {}
    try:
        encoder = cap.get(c.encoder, **options)
    except (ValueError, TypeError) as e:
        raise _cli.UsageError(f"--config.encoder={c.encoder!r}: {e}") from None
    try:
        cell = cells.get(c.cell)
    except (ValueError, TypeError) as e:
        raise _cli.UsageError(f"--config.cell={c.cell!r}: {e}") from None
    spec = make_spec(c, encoder, cell, decoders[0], vocab_size=8)
    try:
        jax.eval_shape(lambda: cap.init(jax.random.key(0), spec))  # shapes only, no compute
    except ValueError as e:
        field = "channels" if c.encoder == "cnn" else "encoder"
        raise _cli.UsageError(f"--config.{field}={c[field]!r}: {e}") from None
    return decoders, cell, encoder


def make_spec(config, encoder, cell, decoder: str, vocab_size: int) -> cap.Captioner:
    shape = (config.image_size, config.image_size, 3)
    return cap.Captioner(encoder, cell, vocab_size, shape, decoder, config.embed_size,
                         config.hidden_size, config.attention_size)  # fmt: skip


# --- training one decoder ------------------------------------------------------------------------


def _keys(seed: int):
    return jax.random.split(jax.random.key(seed), 3)  # init, train, data


def _tx(config):
    lr = step.schedule(config.schedule, config.learning_rate, config.steps, config.warmup_steps)
    return step.optimizer(config.optimizer, lr), lr


def _init_state(config, spec, source):
    k_init, k_train, _ = _keys(config.seed)
    tx, _ = _tx(config)
    return lambda: state.create(cap.init(k_init, spec), tx, k_train, source.init())


def train_decoder(config, spec, data: Data, run_dir: Path, mesh) -> state.TrainState:
    """Trains one decoder into run_dir (resuming from its checkpoints); returns the final state."""
    source = make_source(data.train, data.vocab, config.batch_size, config.max_caption_len,
                         _keys(config.seed)[2])  # fmt: skip
    penalty = config.attention_penalty

    def loss_fn(params, batch, key):
        del key  # no dropout
        _, aux = cap.loss(spec, params, batch["images"], batch["captions"], batch["lengths"],
                          penalty=penalty)  # fmt: skip
        # Split over devices, each device's loss counts in proportion to its tokens (weight=
        # below): right for the NLL, a mean over tokens. The attention penalty is a mean over
        # captions, so it is rescaled by (all tokens / these tokens) x (these captions / all
        # captions), which keeps it the mean over the whole batch's captions; 1 on one device.
        rows = batch["captions"].shape[0]
        scale = (batch["batch_tokens"] / aux["tokens"]) * (rows / config.batch_size)
        reg = aux["attention_penalty"] * scale
        return aux["nll"] + penalty * reg, {"nll": aux["nll"], "attention_penalty": reg,
                                            "tokens": aux["tokens"]}  # fmt: skip

    # A fixed valid batch (each image's first caption) for the NLL logged every log_every steps.
    n = min(config.eval_batch_size, len(data.valid.images))
    v_tokens, v_lengths = data.vocab.encode_batch(
        [refs[0] for refs in data.valid.references[:n]], max_len=config.max_caption_len
    )
    v_images = jnp.asarray(data.valid.images[:n])

    def evaluate(s):
        images, tokens, lengths = parallel.shard_batch((v_images, v_tokens, v_lengths), mesh)
        x = images.astype(jnp.float32) / 255.0
        _, aux = cap.loss(spec, s.params, x, tokens, lengths, penalty=penalty)
        return {"nll": aux["nll"]}

    tx, lr = _tx(config)
    train_step = step.make_step(
        # Weighted by real caption tokens: loss, NLL and penalty equal the one-device values on
        # any number of devices (loss_fn above).
        loss_fn, tx, source.next,
        grad_fn=parallel.data_parallel_grad(loss_fn, mesh, weight="tokens"),
        clip_norm=config.clip_norm, learning_rate=lr,
    )  # fmt: skip
    return loop.train(
        workdir=run_dir,
        init_state=_init_state(config, spec, source),
        train_step=train_step,
        steps=config.steps,
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        config=config.to_dict() | {"decoder": spec.decoder},
        resumable=RESUMABLE,
        evaluate=evaluate,
        max_to_keep=config.max_to_keep,
        mesh=mesh,
    )


# --- decoding and scores -------------------------------------------------------------------------


def make_captioner(spec, vocab, config, beam_size: int):
    """(params, images uint8 [N, S, S, 3]) -> (captions list[str], attention [N, T, L] or
    None), decoding in fixed batches of eval_batch_size (one compilation)."""
    B, max_len = config.eval_batch_size, config.max_caption_len - 1

    @jax.jit
    def decode(params, images):
        x = parallel.shard_batch(images).astype(jnp.float32) / 255.0  # a share per device
        out = cap.decode(spec, params, x, bos_id=vocab.BOS, eos_id=vocab.EOS, max_len=max_len,
                         beam_size=beam_size)  # fmt: skip
        best = (lambda a: a[:, 0]) if beam_size > 1 else (lambda a: a)  # beams come sorted
        return best(out.tokens), None if out.extras is None else best(out.extras)

    def run(params, images: np.ndarray):
        tokens, weights = [], []
        for start in range(0, len(images), B):
            chunk = images[start : start + B]
            pad = np.repeat(chunk[:1], B - len(chunk), axis=0)
            t, w = decode(params, np.concatenate([chunk, pad]))
            tokens.append(np.asarray(t))  # host sync
            weights.append(None if w is None else np.asarray(w))
        n = len(images)
        captions = [vocab.decode(t) for t in np.concatenate(tokens)[:n]]
        return captions, None if weights[0] is None else np.concatenate(weights)[:n]

    return run


def score(split: Split, captions: list[str]) -> dict:
    """BLEU-1..4, CIDEr-D and (scenes) the fraction of captions true of their image."""
    out = caption_metrics.score(split.references, captions)
    if split.objects is not None:
        out["true"] = float(
            np.mean([scenes.is_true(c, o) for c, o in zip(captions, split.objects)])
        )
    return out


def evaluate_decoder(config, spec, params, data: Data) -> tuple[dict, dict]:
    """Scores on valid and test, greedy and beam; returns (scores, predictions)."""
    greedy = make_captioner(spec, data.vocab, config, 1)
    beam = make_captioner(spec, data.vocab, config, config.beam_size)
    scores, predictions = {}, {}
    for name, split in (("valid", data.valid), ("test", data.test)):
        g, weights = greedy(params, split.images)
        b, _ = beam(params, split.images)
        scores[name] = {"greedy": score(split, g), "beam": score(split, b)}
        predictions[name] = {"greedy": g, "beam": b, "weights": weights}
    return scores, predictions


# --- the run -------------------------------------------------------------------------------------


def run(config, workdir: str) -> dict:
    """Trains every decoder of ``config.decoders``; returns (and writes) DIR/results.json's dict."""
    workdir = Path(workdir)
    mesh = parallel.make_mesh()
    decoders, cell, encoder = setup(config, mesh)
    data = load_data(config)
    lead = jax.process_index() == 0
    results = {
        "dataset": config.dataset,
        "image_size": config.image_size,
        "encoder": {
            "name": config.encoder,
            "channels": list(config.channels),
            "residual": config.residual,
        },  # fmt: skip
        "cell": config.cell,
        "steps": config.steps,
        "devices": mesh.devices.size,  # each batch was split over these
        "vocab_size": len(data.vocab),
        "metrics": {
            "bleu": caption_metrics.BLEU_IMPLEMENTATION,
            "cider_d": caption_metrics.CIDER_IMPLEMENTATION,
        },  # fmt: skip
        "published_bleu4": {k: {"what": w, "bleu4": b} for k, (w, b) in PUBLISHED.items()},
        "decoders": {},
    }
    for decoder in decoders:
        run_dir = workdir / decoder
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = make_spec(config, encoder, cell, decoder, len(data.vocab))
        logging.info("caption: training %s into %s", decoder, run_dir)
        final = train_decoder(config, spec, data, run_dir, mesh)
        scores, predictions = evaluate_decoder(config, spec, final.params, data)
        records = writers.read_metrics(run_dir)
        one = {
            "decoder": decoder,
            "final_loss": records[-1]["loss"] if records else None,
            "first_logged_loss": records[0]["loss"] if records else None,
            "valid_nll": records[-1].get("eval_nll") if records else None,
            "scores": scores,
            "params_sha256": state.checksum(final.params),
        }
        results["decoders"][decoder] = one
        if lead:
            writers.write_json(run_dir / "vocab.json", {"words": data.vocab.words})
            writers.write_json(run_dir / "results.json", one)
            writers.write_json(run_dir / "predictions.json", {
                s: {k: v for k, v in p.items() if k != "weights"} for s, p in predictions.items()
            })  # fmt: skip
            plot_samples(run_dir, config, data, predictions["test"])
            if predictions["test"]["weights"] is not None:
                plot_attention(run_dir, config, data, predictions["test"])
    if lead:
        writers.write_json(workdir / "results.json", results)
        plot_curves(workdir, decoders)
    return results


# --- demo ----------------------------------------------------------------------------------------


def demo(workdir: str) -> None:
    """The demo for experiments.reproduce: the ":demo" config, all three decoders."""
    from experiments.configs import caption as configs

    run(configs.get_config("demo"), workdir)


# --- --mode=caption ------------------------------------------------------------------------------


def caption(config, workdir: str, paths: list[str], out=None) -> list[str]:
    """Captions image files with ``config.caption_decoder``'s latest checkpoint in workdir and
    prints "PATH: caption" lines; the model's config and vocabulary come from its run dir."""
    out = out or sys.stdout
    if not paths:
        raise _cli.UsageError("--mode=caption: name image files after the flags (a.png b.png)")
    decoder = config.caption_decoder
    run_dir = Path(workdir) / decoder
    if not (run_dir / "vocab.json").exists() or not (run_dir / "config.json").exists():
        raise _cli.UsageError(
            f"--workdir={workdir}: no trained {decoder!r} model in it (train first, or set "
            "--config.caption_decoder)"
        )
    saved = json.loads((run_dir / "config.json").read_text())
    model_config = ml_collections.ConfigDict({k: v for k, v in saved.items() if k != "decoder"})
    _, cell, encoder = setup(model_config, parallel.make_mesh())
    words = json.loads((run_dir / "vocab.json").read_text())["words"]
    vocab = scenes.Vocab(words[len(scenes.Vocab.SPECIALS) :])
    spec = make_spec(model_config, encoder, cell, decoder, len(vocab))
    size = model_config.image_size
    try:
        images = caption_files.load_images(
            paths, size, resize=config.resize_images, convert=config.convert_images
        )
    except caption_files.ImageError as e:
        message = "; ".join(line.strip() for line in str(e).splitlines())
        hint = " (--config.resize_images=True resizes)" if "size" in message else ""
        raise _cli.UsageError(f"--mode=caption: {message}{hint}") from None
    source = tasks.Source(lambda: {"index": jnp.zeros((), jnp.int32)}, None)
    init_state = _init_state(model_config, spec, source)
    replicated = parallel.replicated(parallel.make_mesh())
    checkpointer = Checkpointer(run_dir / "checkpoints")
    try:
        restored = checkpointer.restore(
            loop.abstract_state(init_state, replicated), flatten_config(saved), RESUMABLE
        )
    finally:
        checkpointer.close()
    if restored is None:
        raise _cli.UsageError(f"--workdir={workdir}: {run_dir} has no checkpoint yet")
    model_config.eval_batch_size = min(len(paths), model_config.eval_batch_size)
    captioner = make_captioner(spec, vocab, model_config, config.beam_size)
    captions, _ = captioner(restored.state.params, to_uint8(images))
    for path, text in zip(paths, captions):
        print(f"{path}: {text}", file=out)
    return captions


def main(argv: list[str] | None = None):
    """The command line: ``_cli.main`` with the positional image paths given to caption mode."""
    cpu_devices = _cli.batch_devices if argv is None else None  # the command line's, not a test's
    argv = list(sys.argv if argv is None else argv)
    paths = [a for a in argv[1:] if not a.startswith("-")]
    flags_only = [argv[0]] + [a for a in argv[1:] if a.startswith("-")]
    if paths and "--mode=caption" not in flags_only:
        _cli.fail(f"unexpected arguments {paths}: image files are for --mode=caption")
    modes = {"train": run, "caption": lambda config, workdir: caption(config, workdir, paths)}
    return _cli.main(modes, name="caption", argv=flags_only, cpu_devices=cpu_devices)


if __name__ == "__main__":
    main()
