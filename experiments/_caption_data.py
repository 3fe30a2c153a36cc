"""Data for experiments.caption: the splits (generated scenes, Flickr8k, Karpathy JSON or TFDS
coco_captions) as uint8 images with their reference captions, the vocabulary, and the training
source that slices (image, caption) pairs by step on the device."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from experiments import _cli
from rnnlab.data import caption_files, scenes, tasks

# --- data ----------------------------------------------------------------------------------------


class Split(NamedTuple):
    """images [N, S, S, 3] uint8; references: the captions of each image; objects: each scene's
    objects (None for real data); names: file names or "scene i"."""

    images: np.ndarray
    references: list[list[str]]
    objects: list | None
    names: list[str]


class Data(NamedTuple):
    vocab: scenes.Vocab
    train: Split
    valid: Split
    test: Split


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Images in [0, 1] (float) as uint8 pixels, as the captioner takes them (clipped, rounded)."""
    return np.round(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)


@functools.lru_cache(maxsize=2)  # the decoders of one run (and a test's runs) share it
def _scenes(seed: int, split: str, size: int, image_size: int, max_objects: int) -> Split:
    ds = scenes.SceneCaptions(split, seed=seed, size=size, image_size=image_size,
                              max_objects=max_objects)  # fmt: skip
    examples = [ds[i] for i in range(size)]
    return Split(
        to_uint8(np.stack([e.image for e in examples])),
        [list(e.captions) for e in examples],
        [e.objects for e in examples],
        [f"{split} scene {i}" for i in range(size)],
    )


def _from_files(config, data: caption_files.CaptionedImages, rows: list[int]) -> Split:
    paths = [data.paths()[i] for i in rows]
    images = caption_files.load_images(
        paths, config.image_size, resize=True, convert=config.convert_images
    )
    return Split(to_uint8(images), [data.captions[i] for i in rows], None, paths)


def _coco(config, name: str, split: str, size: int) -> Split:
    ds = caption_files.open_coco_captions(
        f"{split}[:{size}]" if size else split, data_dir=config.tfds_data_dir or None, name=name,
        image_size=config.image_size,
    )  # fmt: skip
    examples = [ds[i] for i in range(len(ds))]
    return Split(to_uint8(np.stack([e[0] for e in examples])), [e[1] for e in examples], None,
                 [e[2] for e in examples])  # fmt: skip


def load_data(config) -> Data:
    """The three splits and the vocabulary (the grammar's for scenes, else from train).

    Raises:
        experiments._cli.UsageError: naming --config.dataset and the file (and line) of a
            missing image, an empty caption or an unreadable image.
    """
    c = config
    kind, _, where = c.dataset.partition(":")
    try:
        if kind == "scenes":
            size = c.image_size, c.max_objects
            _cli.check(c.train_size >= 1, "train_size", c.train_size, "scenes: must be >= 1")
            train = _scenes(c.seed, "train", c.train_size, *size)
            valid = _scenes(c.seed, "valid", c.valid_size, *size)
            test = _scenes(c.seed, "test", c.test_size, *size)
            return Data(scenes.SCENE_VOCAB, train, valid, test)
        if kind == "tfds":
            train = _coco(c, where, "train", c.train_size)
            valid, test = _coco(c, where, "val", c.valid_size), _coco(c, where, "test", c.test_size)
        else:
            if kind == "flickr8k":
                data = caption_files.read_flickr8k(
                    str(Path(where) / "captions.txt"), str(Path(where) / "Images")
                )
                n, held = len(data.filenames), c.valid_size + c.test_size
                if n <= held:
                    raise ValueError(f"{n} images, not more than valid_size + test_size = {held}")
                order = {"train": range(n - held), "val": range(n - held, n - c.test_size),
                         "test": range(n - c.test_size, n)}  # fmt: skip
            else:
                json_path, _, image_dir = where.partition(":")
                data = caption_files.read_karpathy(json_path, image_dir)
                order = {s: [i for i, x in enumerate(data.splits) if x == s]
                         for s in ("train", "val", "test")}  # fmt: skip
                order["train"] += [i for i, x in enumerate(data.splits) if x == "restval"]
            caps = {"train": c.train_size or None, "val": c.valid_size, "test": c.test_size}
            train, valid, test = (
                _from_files(c, data, list(order[s])[: caps[s]]) for s in ("train", "val", "test")
            )
        if not len(train.images) or not len(valid.images) or not len(test.images):
            raise ValueError("a split is empty")
        words = (w for refs in train.references for r in refs for w in scenes.tokenize(r))
        vocab = scenes.Vocab(w for w, k in _counts(words).items() if k >= c.min_word_count)
        return Data(vocab, train, valid, test)
    except (ValueError, OSError) as e:  # CaptionFileError, ImageError, DatasetNotPreparedError
        message = "; ".join(line.strip() for line in str(e).splitlines())
        raise _cli.UsageError(f"--config.dataset={c.dataset!r}: {message}") from None


def _counts(words) -> dict[str, int]:
    counts: dict[str, int] = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    return counts


def encode_pairs(split: Split, vocab: scenes.Vocab, max_len: int):
    """Every (image, caption) pair: image index [M], tokens [M, T], lengths [M]."""
    image_of = np.array([i for i, refs in enumerate(split.references) for _ in refs], np.int32)
    texts = [r for refs in split.references for r in refs]
    try:
        tokens, lengths = vocab.encode_batch(texts, max_len=max_len)
    except ValueError as e:  # "caption k is empty": name the image instead
        k = int(str(e).split()[1])
        raise ValueError(f"{split.names[image_of[k]]}: an empty caption") from None
    return image_of, tokens, lengths


def make_source(split: Split, vocab, batch_size: int, max_len: int, key) -> tasks.Source:
    """Batch i: pairs order_e[k B : (k + 1) B], e = i // K, k = i % K, K = M // B batches an
    epoch, order_e = permutation(fold_in(key, e), M). Jit-traceable; the position is the step."""
    image_of, tokens, lengths = encode_pairs(split, vocab, max_len)
    M, B = len(image_of), batch_size
    if M < B:
        raise _cli.UsageError(f"--config.batch_size={B}: more than the {M} training captions")
    per_epoch = M // B
    images = jnp.asarray(split.images)  # [N, S, S, 3] uint8, a constant of the compiled step
    image_of, tokens, lengths = jnp.asarray(image_of), jnp.asarray(tokens), jnp.asarray(lengths)

    def init():
        return {"index": jnp.zeros((), jnp.int32)}

    def next_batch(position):
        i = position["index"]
        order = jax.random.permutation(jax.random.fold_in(key, i // per_epoch), M)  # [M]
        rows = lax.dynamic_slice(order, ((i % per_epoch) * B,), (B,))  # [B]
        batch = {
            "images": images[image_of[rows]].astype(jnp.float32) / 255.0,  # [B, S, S, 3]
            "captions": tokens[rows],  # [B, T]
            "lengths": lengths[rows],  # [B]
            # The whole batch's predicted tokens (<bos> is not one): a scalar, so it reaches
            # every device whole when the batch is split (experiments.caption's loss uses it).
            "batch_tokens": jnp.maximum(jnp.sum(lengths[rows] - 1), 1),
        }
        return batch, {"index": i + 1}

    return tasks.Source(init, next_batch)
