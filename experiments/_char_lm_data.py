"""Data for experiments.char_lm: the corpus (python_stdlib, python_docs, a file or directory, or
TFDS), split by position into train, valid and test text, the character vocabulary built on the
train text, the encoded splits and the batcher that reads the train text as B contiguous streams."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np

from experiments import _cli
from rnnlab.data import text
from rnnlab.data.tfds_source import DatasetNotPreparedError


class Data(NamedTuple):
    """The corpus, split by position and encoded; ``fingerprint`` goes into the checkpoints."""

    vocab: text.CharVocab
    train: np.ndarray  # [N_train] int32
    valid: np.ndarray
    test: np.ndarray
    valid_text: str
    streams: text.StreamBatcher
    language: str
    fingerprint: dict


def load_data(c) -> Data:
    """Reads, splits and encodes the corpus; a bad corpus is a one-line UsageError."""
    try:
        corpus = text.load_corpus(
            c.corpus, max_chars=c.max_chars or None, data_dir=c.data_dir or None
        )
    except (OSError, text.NotUtf8Error, DatasetNotPreparedError, ValueError) as e:
        raise _cli.UsageError(f"--config.corpus={c.corpus!r}: {e}") from None
    train_fraction = 1.0 - c.valid_fraction - c.test_fraction
    parts = text.split_text(corpus, (train_fraction, c.valid_fraction, c.test_fraction))
    for name, part in zip(("valid", "test"), parts[1:]):
        _cli.check(
            len(part) >= 2, f"{name}_fraction", c[f"{name}_fraction"], f"{len(part)} characters"
        )
    vocab = text.CharVocab.from_text(parts.train)
    train = vocab.encode(parts.train)
    try:
        streams = text.StreamBatcher(train, c.batch_size, c.seq_len)
    except ValueError as e:
        raise _cli.UsageError(f"--config.batch_size={c.batch_size!r}: {e}") from None
    python = c.corpus == "python_stdlib" or c.corpus.endswith(".py")
    fingerprint = {
        "corpus_sha256": hashlib.sha256(corpus.encode("utf-8")).hexdigest(),
        "corpus_chars": len(corpus),
        "vocab_size": vocab.size,
    }
    return Data(
        vocab,
        train,
        vocab.encode(parts.valid),
        vocab.encode(parts.test),
        parts.valid,
        streams,
        c.language or ("python" if python else "prose"),
        fingerprint,
    )
