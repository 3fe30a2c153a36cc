"""Translation: encoder-decoders with and without attention on SCAN, a TSV pairs file or TFDS.

    python -m experiments.translate --workdir=DIR [--config.dataset=scan:length|tsv:PATH|...]
    echo "walk twice" | python -m experiments.translate --workdir=DIR --mode=translate

Each kind in ``config.attention`` trains one model (Sutskever et al. 2014 / Cho et al. 2014
without attention; Bahdanau et al. 2015; Luong et al. 2015) into DIR/<kind>/ (config.json,
metrics.jsonl, checkpoints/, vocab.json, results.json). Then, in DIR: results.json (exact match
and sacrebleu corpus BLEU on the test split, greedy and beam, overall and by length, beside the
published numbers), attention_<kind>.png (Bahdanau's figure 3: source along x, output along y),
by_length.png (figure 2: BLEU and exact match against length, attention vs none),
learning_curves.png and report.md. The length axis is the reference length in actions for SCAN
(commands have 1 to 9 words, outputs 1 to 48 actions) and the source length in tokens otherwise.
See experiments/configs/translate.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

import rnnlab
from experiments import _cli
from experiments._translate_data import Data, encode, load_data, max_decode_length
from experiments._translate_results import evaluate, make_decoder, plot, translate_batches
from experiments._translate_results import report as report  # experiments.reproduce calls it
from rnnlab.data import device_source
from rnnlab.data import pairs as pairs_lib
from rnnlab.models import seq2seq as s2s
from rnnlab.train import checkpoint, loop, parallel, state, step, writers

# Fields that may change when resuming: they change neither the model nor its training data.
RESUMABLE = (
    "steps", "log_every", "checkpoint_every", "max_to_keep", "on_nonfinite", "eval_batch_size",
    "quick_eval_pairs", "beam_size", "alpha", "max_decode_length", "bleu_tokenize",
    "num_heatmaps", "max_test_pairs", "test_split",
)  # fmt: skip
PUBLISHED = {  # Lake & Baroni 2018, exact match on test: (best model, overall-best model)
    "scan:simple": "99.8% best / 99.7% overall-best model",
    "scan:length": "20.8% best (GRU with attention) / 13.8% overall-best",
    "scan:addprim_jump": "1.2% best / 0.08% overall-best",
    "scan:addprim_turn_left": "90.3% best",
}
CONTEXT = (
    "Sutskever et al. 2014 (WMT14 en-fr): reversing the source took BLEU from 25.9 to 30.6. "
    "Bahdanau et al. 2015 (WMT14 en-fr, all sentences): RNNencdec-50 17.82 vs RNNsearch-50 "
    "26.75 BLEU; the encoder-decoder's BLEU collapses with sentence length, attention's does "
    "not (their figure 2)."
)


# --- setup -------------------------------------------------------------------------------------


def setup(config, mesh) -> tuple[rnnlab.cells.Cell, list[str]]:
    """Checks every value; returns the cell and the attention kinds, before any compiling."""
    c = config
    _cli.check_ints(
        c,
        (
            "steps",
            "batch_size",
            "log_every",
            "checkpoint_every",
            "eval_batch_size",
            "hidden_size",
            "embed_size",
            "attention_size",
            "num_layers",
            "max_to_keep",
            "beam_size",
            "num_buckets",
            "min_count",
            "quick_eval_pairs",
        ),
        1,
        "must be a positive int",
    )
    _cli.check_ints(
        c,
        ("max_length", "max_train_pairs", "max_test_pairs", "max_decode_length", "num_heatmaps"),
        0,
    )
    _cli.check_splits(c, mesh.devices.size)
    _cli.check_choices(
        c,
        (
            ("optimizer", step.OPTIMIZERS),
            ("schedule", step.SCHEDULES),
            ("on_nonfinite", loop.ON_NONFINITE),
            ("tokenizer", pairs_lib.TOKENIZERS),
        ),
    )
    _cli.check(c.learning_rate > 0, "learning_rate", c.learning_rate, "must be positive")
    _cli.check(0 < c.teacher_forcing <= 1, "teacher_forcing", c.teacher_forcing, "in (0, 1]")
    _cli.check(0 <= c.label_smoothing < 1, "label_smoothing", c.label_smoothing, "in [0, 1)")
    kinds = [k.strip() for k in c.attention.split(",") if k.strip()]
    _cli.check(bool(kinds), "attention", c.attention, f"name one of {list(s2s.ATTENTIONS)}")
    for k in kinds:
        hint = _cli.suggest(k, s2s.ATTENTIONS)
        _cli.check(k in s2s.ATTENTIONS, "attention", c.attention,
                   f"unknown kind {k!r}{hint}; known: {list(s2s.ATTENTIONS)}")  # fmt: skip
        _cli.check(not (k == "luong_dot" and c.bidirectional), "attention", c.attention,
                   "luong_dot needs a unidirectional encoder; use luong_general")  # fmt: skip
    try:
        cell = rnnlab.cells.get(c.cell)
    except (ValueError, TypeError) as e:
        raise _cli.UsageError(f"--config.cell={c.cell!r}: {e}") from None
    return cell, kinds


def make_spec(config, cell, attention: str, source_vocab: int, target_vocab: int):
    return s2s.Seq2Seq(
        cell, source_vocab, target_vocab, config.embed_size, config.hidden_size,
        config.num_layers, config.num_layers, config.bidirectional, attention,
        config.attention_size, config.reverse_source,
    )  # fmt: skip


# --- one model ---------------------------------------------------------------------------------


def _init_state(config, spec, source, keys):
    lr = step.schedule(config.schedule, config.learning_rate, config.steps, config.warmup_steps)
    tx = step.optimizer(config.optimizer, lr)
    return tx, lr, lambda: state.create(s2s.init(keys[0], spec), tx, keys[1], source.init())


def train_one(config, workdir: Path, data: Data, cell, attention: str) -> dict:
    """Trains one model into ``workdir``, evaluates it on the test split; returns its results."""
    mesh = parallel.make_mesh()
    config = config.copy_and_resolve_references()
    config.attention = attention  # this run's kind (the checkpoint's config records it)
    spec = make_spec(config, cell, attention, len(data.source_vocab), len(data.target_vocab))
    max_len = max_decode_length(config, data)
    train = encode(data, "train")
    boundaries = device_source.quantile_boundaries(train, config.num_buckets)
    keys = jax.random.split(jax.random.key(config.seed), 3)  # init, train, data
    source = device_source.make(train, config.batch_size, key=keys[2], boundaries=boundaries)

    def loss_at_width(params, batch, key):
        tgt_in, tgt_out = batch["target"][:, :-1], batch["target"][:, 1:]  # [B, T_b - 1]
        logits, _ = s2s.teacher_forced(
            spec, params, batch["source"], batch["source_lengths"], tgt_in,
            key=key, teacher_forcing=config.teacher_forcing,
        )  # fmt: skip
        out_lengths = batch["target_lengths"] - 1
        loss, count = s2s.token_loss(logits, tgt_out, out_lengths, config.label_smoothing)
        mask = rnnlab.mask_from_lengths(out_lengths, tgt_out.shape[1])
        correct = jnp.sum((jnp.argmax(logits, -1) == tgt_out) & mask)
        return loss, {"token_accuracy": correct / count, "tokens": count}

    loss_fn = device_source.by_bucket(loss_at_width, source.widths)
    quick = _quick_eval(config, spec, data, max_len)
    tx, lr, init_state = _init_state(config, spec, source, keys)
    train_step = step.make_step(
        # Weighted by real target tokens: a shard's loss is a mean over its own tokens, and the
        # shards of a padded batch hold unequal numbers of them.
        loss_fn, tx, source.next,
        grad_fn=parallel.data_parallel_grad(loss_fn, mesh, weight="tokens"),
        clip_norm=config.clip_norm, learning_rate=lr,
    )  # fmt: skip
    meta = vocab_meta(config, data, max_len, source)
    if jax.process_index() == 0 and not (workdir / "vocab.json").exists():
        # Written before training so a preempted run can translate; rewritten only after
        # loop.train has checked the checkpoints' config, so a refused run leaves it as it was.
        workdir.mkdir(parents=True, exist_ok=True)
        writers.write_json(workdir / "vocab.json", meta)
    final = loop.train(
        workdir=workdir, init_state=init_state, train_step=train_step, steps=config.steps,
        log_every=config.log_every, checkpoint_every=config.checkpoint_every, config=config,
        resumable=RESUMABLE, evaluate=lambda s: quick(s.params), max_to_keep=config.max_to_keep,
        on_nonfinite=config.on_nonfinite, mesh=mesh,
    )  # fmt: skip
    results = evaluate(config, spec, final.params, data, max_len)
    results.update(attention=attention, steps=config.steps, buckets=list(boundaries),
                   params_sha256=state.checksum(final.params))  # fmt: skip
    if jax.process_index() == 0:
        writers.write_json(workdir / "vocab.json", meta)
        writers.write_json(workdir / "results.json", results)
    return results


def _quick_eval(config, spec, data: Data, max_len: int):
    """params -> {"loss", "exact"} on a fixed sample of the test split, all on device."""
    test = encode(data, "test")
    rows = np.random.default_rng(config.seed).permutation(len(test))[: config.quick_eval_pairs]
    src, src_len = device_source.pad([test[i][0] for i in rows])
    tgt, tgt_len = device_source.pad([test[i][1] for i in rows], max_len + 1)
    ref, out_len = tgt[:, 1:], tgt_len - 1  # [Q, L]: what decoding should emit, <eos> included

    def quick(params):
        src_, src_len_, tgt_, ref_, out_len_ = parallel.shard_batch(
            (src, src_len, tgt, ref, out_len)
        )  # each device scores and decodes its share
        logits, _ = s2s.teacher_forced(spec, params, src_, src_len_, tgt_[:, :-1])
        loss, _ = s2s.token_loss(logits, ref_, out_len_)
        out = s2s.decode(spec, params, src_, src_len_, bos_id=pairs_lib.BOS_ID,
                         eos_id=pairs_lib.EOS_ID, max_len=max_len)  # fmt: skip
        mask = rnnlab.mask_from_lengths(out_len_, max_len)
        exact = jnp.all(jnp.where(mask, out.tokens == ref_, True), axis=1)
        return {"loss": loss, "exact": jnp.mean(exact.astype(jnp.float32))}

    return quick


def vocab_meta(config, data: Data, max_len: int, source) -> dict:
    """What --mode=translate needs to read and write text: vocabularies, tokenizer, lengths."""
    return {
        "source": data.source_vocab.tokens,
        "target": data.target_vocab.tokens,
        "tokenizer": data.tokenizer.name,
        "lowercase": bool(config.lowercase and not data.pretokenized),
        "max_decode_length": max_len,
        "max_source_length": max(len(s) + 1 for s, _ in data.splits["train"]),
        "position_shapes": {k: v.shape for k, v in jax.eval_shape(source.init).items()},
    }


# --- the experiment ----------------------------------------------------------------------------


def run(config, workdir: str) -> dict:
    """Trains each attention kind into DIR/<kind>/; writes the comparison into DIR."""
    workdir = Path(workdir)
    cell, kinds = setup(config, parallel.make_mesh())
    data = load_data(config)
    logging.info(
        "%s: %d train / %d test pairs, vocab %d -> %d", config.dataset, len(data.splits["train"]),
        len(data.splits["test"]), len(data.source_vocab), len(data.target_vocab),
    )  # fmt: skip
    models = {k: train_one(config, workdir / k, data, cell, k) for k in kinds}
    results = {
        "dataset": config.dataset,
        "devices": jax.device_count(),  # each batch was split over these
        "num_test": len(data.splits["test"]),
        "length_axis": next(iter(models.values()))["length_axis"],
        "models": {
            k: {f: r[f] for f in ("greedy", "beam", "steps", "greedy_by_length")}
            for k, r in models.items()
        },
        "published": PUBLISHED.get(config.dataset, ""),
        "context": CONTEXT,
    }
    if jax.process_index() == 0:
        writers.write_json(workdir / "results.json", results)
        plot(workdir, models)
        writers.write_text_atomic(workdir / "report.md", report(str(workdir)))
    return results | {"runs": models}


def demo(workdir: str) -> None:
    """The demo for experiments.reproduce: the ":demo" config (attention and none)."""
    from experiments.configs import translate as configs

    run(configs.get_config("demo"), workdir)


# --- --mode=translate --------------------------------------------------------------------------


def translate(config, workdir: str, lines=None, out=None) -> list[str]:
    """Translates ``lines`` (default: stdin) with the first attention kind's latest checkpoint."""
    cell, kinds = setup(config, parallel.make_mesh())
    run_dir = Path(workdir) / kinds[0]
    if not (run_dir / "vocab.json").exists():
        raise _cli.UsageError(f"--workdir={workdir}: no trained {kinds[0]!r} model (train first)")
    meta = json.loads((run_dir / "vocab.json").read_text())
    src_vocab, tgt_vocab = pairs_lib.Vocab(meta["source"]), pairs_lib.Vocab(meta["target"])
    tok = pairs_lib.get_tokenizer(meta["tokenizer"])
    run_config = config.copy_and_resolve_references()
    run_config.attention = kinds[0]
    spec = make_spec(run_config, cell, kinds[0], len(src_vocab), len(tgt_vocab))
    # Only the shapes matter: the checkpoint holds the data position (and the epoch's plan).
    shapes = meta["position_shapes"]
    position = lambda: {k: jnp.zeros(v, jnp.int32) for k, v in shapes.items()}  # noqa: E731
    source = device_source.DeviceSource(position, None, (), 1, ())
    keys = jax.random.split(jax.random.key(config.seed), 3)
    _, _, init_state = _init_state(run_config, spec, source, keys)
    mesh = parallel.make_mesh()
    ckpt = checkpoint.Checkpointer(run_dir / "checkpoints")
    restored = ckpt.restore(
        loop.abstract_state(init_state, parallel.replicated(mesh)),
        checkpoint.flatten_config(run_config), RESUMABLE,
    )  # fmt: skip
    ckpt.close()
    if restored is None:
        raise _cli.UsageError(f"--workdir={workdir}: no checkpoint in {run_dir / 'checkpoints'}")
    lines = [line.rstrip("\n") for line in (sys.stdin if lines is None else lines)]
    texts = [pairs_lib.normalize(t, lowercase=meta["lowercase"]) for t in lines if t.strip()]
    sources = [src_vocab.encode(tok.tokenize(t)) for t in texts]
    out = sys.stdout if out is None else out
    if not sources:
        return []
    width = max(meta["max_source_length"], *map(len, sources))
    decoder = make_decoder(
        config.cell, spec, meta["max_decode_length"], config.beam_size, config.alpha
    )
    tokens, _ = translate_batches(
        decoder, restored.state.params, sources, config.eval_batch_size, width
    )
    translations = [tok.detokenize(tgt_vocab.decode(row)) for row in tokens]
    for t in translations:
        print(t, file=out)
    return translations


if __name__ == "__main__":
    _cli.main(
        {"train": run, "translate": translate}, name="translate", cpu_devices=_cli.batch_devices
    )
