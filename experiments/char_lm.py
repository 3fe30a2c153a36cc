"""A character-level language model trained with truncated BPTT; samples; hidden-unit pages.

    python -m experiments.char_lm --workdir=DIR [--config.corpus=PATH|python_docs|tfds:NAME]
    python -m experiments.char_lm --workdir=DIR --mode=sample [--config.prime='class ']

Karpathy, Johnson & Fei-Fei (2015), "Visualizing and understanding recurrent networks", with the
Python standard library's source in place of the Linux kernel's. The corpus is split by position
into train, valid and test text; the train text is read as B contiguous streams, k characters a
step, and the state each step ends in starts the next one (its gradient stopped). That state
lives in the train state's ``data_state`` next to the stream position, so it is checkpointed and
a resumed run continues bit for bit.

Writes DIR/config.json, metrics.jsonl (train and validation bpc every log_every steps),
checkpoints/, vocab.json, samples.txt (and samples.jsonl) with a sample every sample_every
steps, results.json (valid and test bpc beside the unigram baseline, the units found),
learning_curve.png, units.html and unit_<u>.png (characters coloured by one unit's tanh(c) or
h). See experiments/configs/char_lm.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from experiments import _cli
from experiments._char_lm_data import load_data
from experiments._char_lm_report import chosen_units, plot, visualise, write_sample
from experiments._char_lm_report import read_samples as read_samples  # tests read it
from experiments._char_lm_report import report as report  # experiments.reproduce calls it
from experiments.long_memory import parse_options
from rnnlab import cells
from rnnlab.analysis import text_features
from rnnlab.data import text
from rnnlab.models import lm
from rnnlab.train import loop, parallel, state, step, writers
from rnnlab.train.checkpoint import Checkpointer, flatten_config

# Fields that may change when resuming: they change neither the model, the data nor the updates.
RESUMABLE = (
    "steps", "log_every", "checkpoint_every", "max_to_keep", "eval_chars", "eval_streams",
    "sample_every", "prime", "sample_length", "temperature", "top_k", "sample_seed", "language",
    "vis_chars", "vis_show_chars", "vis_top", "vis_units",
)  # fmt: skip
POSITIVE = (
    "steps", "batch_size", "seq_len", "hidden_size", "num_layers", "log_every",
    "checkpoint_every", "max_to_keep", "eval_streams", "sample_every", "sample_length",
    "vis_chars", "vis_show_chars",
)  # fmt: skip
NON_NEGATIVE = ("max_chars", "embed_size", "top_k", "vis_top", "warmup_steps")


# --- checks and setup ------------------------------------------------------------------------


def check_config(c) -> None:
    """Every value that needs no corpus, checked before anything is read or compiled.

    Raises:
        experiments._cli.UsageError: naming the field and the reason.
    """
    _cli.check_ints(c, POSITIVE, 1)
    _cli.check_ints(c, NON_NEGATIVE, 0)
    _cli.check(c.eval_chars >= 2, "eval_chars", c.eval_chars, "must be >= 2")
    _cli.check(
        c.sample_every % c.log_every == 0,
        "sample_every",
        c.sample_every,
        f"must be a multiple of log_every={c.log_every} (samples are taken at log steps)",
    )
    for field in ("valid_fraction", "test_fraction"):
        _cli.check(0 < c[field] < 1, field, c[field], "must be in (0, 1)")
    total = c.valid_fraction + c.test_fraction
    _cli.check(total < 1, "test_fraction", c.test_fraction, "valid + test must leave train text")
    _cli.check_choices(
        c,
        (
            ("optimizer", step.OPTIMIZERS),
            ("schedule", step.SCHEDULES),
            ("on_nonfinite", loop.ON_NONFINITE),
            ("language", ("", *text_features.LANGUAGES)),
        ),
    )
    _cli.check(c.learning_rate > 0, "learning_rate", c.learning_rate, "must be positive")
    for field in ("clip_norm", "clip_value", "temperature"):
        _cli.check(c[field] >= 0, field, c[field], "must be >= 0")
    _cli.check(len(c.prime) >= 1, "prime", c.prime, "needs at least one character")
    units = chosen_units(c)
    bad = [u for u in units if not 0 <= u < c.hidden_size]
    _cli.check(not bad, "vis_units", c.vis_units, f"units must be in [0, {c.hidden_size})")


def make_cell(c) -> cells.Cell:
    try:
        return cells.get(c.cell, **parse_options(c.cell_options))
    except (ValueError, TypeError) as e:
        raise _cli.UsageError(f"--config.cell={c.cell!r}: {e}") from None


def check_sampling(c, vocab: text.CharVocab) -> None:
    """The prime's characters must be in the vocabulary; top_k at most V."""
    unknown = sorted({ch for ch in c.prime if ch not in vocab.chars})
    _cli.check(not unknown, "prime", c.prime, f"characters {unknown} are not in the vocabulary")
    _cli.check(c.top_k <= vocab.size, "top_k", c.top_k, f"must be <= V = {vocab.size}")


class Model(NamedTuple):
    spec: lm.LMSpec
    tx: object
    learning_rate: object
    init_state: object  # () -> TrainState


def build_model(c, cell: cells.Cell, vocab_size: int) -> Model:
    """The spec, optimiser and initial train state; data_state = {"index", "carries"}."""
    spec = lm.make_spec(
        cell,
        vocab_size=vocab_size,
        hidden_size=c.hidden_size,
        num_layers=c.num_layers,
        embed_size=c.embed_size,
    )
    lr = step.schedule(c.schedule, c.learning_rate, c.steps, c.warmup_steps)
    tx = step.optimizer(c.optimizer, lr)
    k_init, k_train = jax.random.split(jax.random.key(c.seed), 2)

    def init_state():
        params = lm.init(k_init, spec)
        carries = lm.initial_carries(spec, params, c.batch_size)  # per layer, [B, ...]
        data_state = {"index": jnp.zeros((), jnp.int32), "carries": carries}
        return state.create(params, tx, k_train, data_state)

    return Model(spec, tx, lr, init_state)


def make_train_step(c, model: Model, streams: text.StreamBatcher):
    """The TBPTT step: ``step.make_step`` with the carried state threaded through data_state.

    The batch takes the carries from data_state; the loss returns the carries its forward pass
    ended in (gradient stopped) as aux; the wrapper moves them back into data_state, so a
    checkpoint holds both the stream position and the state at it. Data parallel over every
    device: each device takes B / n of the streams with their carries, the gradients are
    averaged, and the carries come back in stream order, not averaged.
    """
    positions = streams.source()

    def next_batch(data_state):
        batch, position = positions.next({"index": data_state["index"]})
        return {**batch, "carries": data_state["carries"]}, {**data_state, **position}

    def loss_fn(params, batch, key):
        loss, (carries, metrics) = lm.tbptt_loss(
            model.spec, params, batch["inputs"], batch["targets"], batch["carries"], batch["reset"]
        )
        return loss, {"bpc": metrics["bpc"], "carries": carries}

    grad_fn = parallel.data_parallel_grad(loss_fn, parallel.make_mesh(), sharded_aux=("carries",))
    inner = step.make_step(
        loss_fn,
        model.tx,
        next_batch,
        grad_fn=grad_fn,
        clip_norm=c.clip_norm,
        clip_value=c.clip_value,
        learning_rate=model.learning_rate,
    )

    def train_step(s):
        s, metrics = inner(s)
        carries = metrics.pop("carries")
        # A skipped (non-finite) update restarts the streams from zero rather than carry NaNs.
        carries = jax.tree.map(lambda x: jnp.where(metrics["nonfinite"] > 0, 0, x), carries)
        return s._replace(data_state={**s.data_state, "carries": carries}), metrics

    return train_step


# --- training --------------------------------------------------------------------------------


def run(config, workdir: str) -> dict:
    """Trains the LM, sampling every sample_every steps; returns results.json's dict."""
    started = time.perf_counter()
    workdir = Path(workdir)
    check_config(config)
    _cli.check_splits(config, jax.device_count())  # the step splits the streams over every device
    cell = make_cell(config)
    data = load_data(config)
    check_sampling(config, data.vocab)
    model = build_model(config, cell, data.vocab.size)
    lead = jax.process_index() == 0
    workdir.mkdir(parents=True, exist_ok=True)
    logging.info(
        "corpus %s: %d train / %d valid / %d test characters, V = %d",
        config.corpus, data.train.size, data.valid.size, data.test.size, data.vocab.size,
    )  # fmt: skip
    previous = workdir / "config.json"
    same_data = not previous.exists() or json.loads(previous.read_text()).get("data") == (
        data.fingerprint
    )
    if lead and same_data:  # never over the vocabulary of a run on another corpus
        writers.write_text_atomic(workdir / "vocab.json", data.vocab.to_json())

    # The validation bpc logged every log_every steps: a prefix of the valid text, compiled in.
    # Its streams, like every bpc's, are split over the devices (parallel.shard_batch).
    valid_bpc = lm.bits_per_char_fn(
        model.spec, data.valid[: config.eval_chars], num_streams=config.eval_streams,
        split_streams=parallel.shard_batch,
    )  # fmt: skip
    evaluate = lambda s: {"bpc": valid_bpc(s.params)}  # noqa: E731
    train_step = make_train_step(config, model, data.streams)
    k_sample = jax.random.fold_in(jax.random.key(config.seed), 1_000_003)
    prime = data.vocab.encode(config.prime)

    # Train in segments that end at the sample steps: loop.train resumes each from its last
    # checkpoint (exactly), and the same step functions hit the compile cache every time.
    done = _latest_step(workdir)
    ends = list(range(config.sample_every, config.steps, config.sample_every)) + [config.steps]
    for end in [e for e in ends if e > done] or [config.steps]:
        final = loop.train(
            workdir=workdir,
            init_state=model.init_state,
            train_step=train_step,
            steps=end,
            log_every=config.log_every,
            checkpoint_every=config.checkpoint_every,
            config={**config.to_dict(), "steps": end, "data": data.fingerprint},
            resumable=RESUMABLE,
            evaluate=evaluate,
            max_to_keep=config.max_to_keep,
            on_nonfinite=config.on_nonfinite,
        )
        ids = lm.sample(
            model.spec, final.params, jax.random.fold_in(k_sample, end), prime,
            config.sample_length, config.temperature, config.top_k,
        )  # fmt: skip
        if lead:
            write_sample(workdir, end, config, config.prime + data.vocab.decode(ids))
    if lead:  # the first run writes it here if the workdir held an older run's config.json
        writers.write_text_atomic(workdir / "vocab.json", data.vocab.to_json())

    # Final figures: bpc of the whole valid and test text, beside the unigram baseline.
    bpc = {
        name: lm.bits_per_char(
            model.spec,
            final.params,
            ids,
            num_streams=config.eval_streams,
            split_streams=parallel.shard_batch,
        )  # fmt: skip
        for name, ids in (("valid", data.valid), ("test", data.test))
    }
    unigram = {
        name: text.unigram_bits_per_char(data.train, ids[1:], data.vocab.size)
        for name, ids in (("valid", data.valid), ("test", data.test))
    }
    units = visualise(workdir, config, model.spec, final.params, data) if lead else []
    records = writers.read_metrics(workdir)
    results = {
        "corpus": config.corpus,
        "characters": {"train": data.train.size, "valid": data.valid.size, "test": data.test.size},
        "vocab_size": data.vocab.size,
        "cell": config.cell,
        "hidden_size": config.hidden_size,
        "num_layers": config.num_layers,
        "steps": config.steps,
        "train_characters": config.steps * config.batch_size * config.seq_len,
        "bpc": bpc,
        "unigram_bpc": unigram,
        "units": units,
        "skipped_updates": records[-1].get("skipped", 0) if records else 0,
        "params_sha256": state.checksum(final.params),
        "seconds": round(time.perf_counter() - started, 1),  # this invocation only
        "devices": jax.device_count(),  # the streams were split over these
    }
    logging.info("bpc %s; unigram %s", bpc, unigram)
    if lead:
        writers.write_json(workdir / "results.json", results)
        plot(workdir, unigram["valid"], config)
    return results


def _latest_step(workdir: Path) -> int:
    """The newest checkpoint's step, 0 if none."""
    if not (workdir / "checkpoints").exists():
        return 0
    ckpt = Checkpointer(workdir / "checkpoints")
    steps = ckpt.steps()
    ckpt.close()
    return steps[-1] if steps else 0


# --- sampling mode ---------------------------------------------------------------------------


def sample(config, workdir: str) -> str:
    """--mode=sample: prints the prime and sample_length characters from the latest checkpoint.

    The model comes from DIR/config.json and DIR/vocab.json (the trained run's); only the
    sampling fields (prime, sample_length, temperature, top_k, sample_seed) come from --config.
    """
    workdir = Path(workdir)
    check_config(config)
    paths = [workdir / "config.json", workdir / "vocab.json", workdir / "checkpoints"]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise _cli.UsageError(f"--workdir={workdir}: no trained run here (missing {missing})")
    trained = json.loads(paths[0].read_text())
    vocab = text.CharVocab.load(paths[1])
    check_sampling(config, vocab)
    c = ml_collections.ConfigDict(trained)
    model = build_model(c, make_cell(c), vocab.size)
    replicated = parallel.replicated(parallel.make_mesh())
    ckpt = Checkpointer(paths[2])
    restored = ckpt.restore(
        loop.abstract_state(model.init_state, replicated), flatten_config(trained), RESUMABLE
    )
    ckpt.close()
    if restored is None:
        raise _cli.UsageError(f"--workdir={workdir}: no checkpoint in {paths[2]}")
    ids = lm.sample(
        model.spec, restored.state.params, jax.random.key(config.sample_seed),
        vocab.encode(config.prime), config.sample_length, config.temperature, config.top_k,
    )  # fmt: skip
    out = config.prime + vocab.decode(ids)
    logging.info("sample from step %d", restored.step)
    print(out)
    return out


def demo(workdir: str) -> None:
    """The demo for experiments.reproduce: the ":demo" config (resumes if workdir holds it)."""
    from experiments.configs import char_lm as configs

    Path(workdir).mkdir(parents=True, exist_ok=True)
    run(configs.get_config("demo"), workdir)


if __name__ == "__main__":
    _cli.main({"train": run, "sample": sample}, name="char_lm", cpu_devices=_cli.batch_devices)
