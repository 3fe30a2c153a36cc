"""Character-level text: corpora, a character vocabulary, a contiguous split, TBPTT streams.

    text = load_corpus("python_stdlib", max_chars=2_000_000)   # or a path, "python_docs", ...
    parts = split_text(text, (0.9, 0.05, 0.05))                # contiguous, by position
    vocab = CharVocab.from_text(parts.train)
    streams = StreamBatcher(vocab.encode(parts.train), batch_size=32, seq_len=64)
    batch = streams.batch(step)                                 # inputs, targets [B, k]; reset

Corpora (``load_corpus``), all available offline except the last:
    a path          a UTF-8 file, or every file under a directory (sorted, hidden ones skipped)
    "python_stdlib" the .py files of the running Python's standard library (sorted paths; no
                    site-packages), the counterpart of the Linux kernel source in Karpathy,
                    Johnson & Fei-Fei (2015), "Visualizing and understanding recurrent networks"
    "python_docs"   the English prose of ``pydoc_data.topics`` (the help() topics of CPython)
    "tfds:NAME"     a TFDS text data set (e.g. tiny_shakespeare; Karpathy 2015) read through
                    ``tfds.data_source`` without TensorFlow; its splits are concatenated in order
                    (train, validation, test), which for tiny_shakespeare is the original file.

Split: text[0 : f_1 N], text[f_1 N : (f_1 + f_2) N], the rest: never shuffled across a boundary,
so the valid and test text is unseen continuous text, as a language model is used.

Streams for truncated BPTT (Williams & Peng 1990), as char-rnn and Zaremba et al. (2014) batch:
    the train ids x[0..N) are cut into B contiguous streams of L = N // B characters,
        streams[b] = x[b L : (b + 1) L]                                        # [B, L]
    n = (L - 1) // k steps per epoch; step s reads offset o = (s mod n) k of every stream:
        inputs = streams[:, o : o + k],   targets = streams[:, o + 1 : o + k + 1]    # [B, k]
    Consecutive steps are consecutive text, so the state carried from step s - 1 is the state
    at the character just before the inputs. The data position is the step itself: resume is
    exact. At o = 0 (a new epoch) ``reset`` is True and the carried state should be zeroed.

Unigram baseline (the memoryless predictor a language model must beat), add-alpha counts on
the train text:
    p(c) = (n_c + alpha) / (N + alpha V),    bpc = -(1 / M) sum_t log2 p(x_t)
"""

from __future__ import annotations

import difflib
import json
import math
import os
import sysconfig
from collections.abc import Sequence
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import lax

BUILTIN = ("python_stdlib", "python_docs")
TFDS_PREFIX = "tfds:"
UNK = "<unk>"
UNK_CHAR = "\ufffd"  # what decode writes for <unk>: one character, so text and ids stay aligned


class NotUtf8Error(ValueError):
    """A corpus file that is not valid UTF-8; the message names the file and the byte offset."""


# --- corpora ---------------------------------------------------------------------------------


def read_utf8(path: str | os.PathLike) -> str:
    """The text of one file, strictly UTF-8.

    Raises:
        NotUtf8Error: naming the file, the byte offset of the first bad byte and the bytes.
    """
    data = open(path, "rb").read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = data[e.start : min(e.end, e.start + 4)]
        raise NotUtf8Error(
            f"{os.fspath(path)}: not UTF-8 at byte offset {e.start} ({bad!r}: {e.reason}); "
            "convert it (e.g. iconv -t UTF-8) or leave it out of the corpus"
        ) from None


def _files_under(root: str, suffixes: Sequence[str] | None) -> list[str]:
    """Regular files under ``root``, sorted by relative path; hidden names and caches skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        for name in filenames:
            if name.startswith(".") or (suffixes and not name.endswith(tuple(suffixes))):
                continue
            full = os.path.join(dirpath, name)
            if os.path.isfile(full):
                found.append(os.path.relpath(full, root))
    return sorted(found, key=lambda p: p.replace(os.sep, "/"))


def _join(pieces, max_chars: int | None) -> str:
    """Files joined by newlines (each starts on a new line), stopping once ``max_chars`` are in."""
    out, total = [], 0
    for piece in pieces:
        if out:
            piece = "\n" + piece
        out.append(piece)
        total += len(piece)
        if max_chars is not None and total >= max_chars:
            break
    text = "".join(out)
    return text if max_chars is None else text[:max_chars]


def read_path(
    path: str | os.PathLike, *, suffixes: Sequence[str] | None = None, max_chars: int | None = None
) -> str:
    """A UTF-8 file, or every file under a directory in sorted order, joined by newlines.

    Args:
        path: a file or a directory.
        suffixes: for a directory, read only names ending with one of these (e.g. (".txt",)).
        max_chars: stop after this many characters.

    Raises:
        FileNotFoundError: no such path, or a directory with no files to read.
        NotUtf8Error: a file that is not UTF-8 (named, with the byte offset).
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        return _join([read_utf8(path)], max_chars)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"corpus {path!r}: no such file or directory")
    files = _files_under(path, suffixes)
    if not files:
        raise FileNotFoundError(f"corpus {path!r}: no files under the directory")
    return _join((read_utf8(os.path.join(path, f)) for f in files), max_chars)


def python_stdlib(max_chars: int | None = None) -> str:
    """The running Python's standard library source (.py files, sorted), joined by newlines.

    The few files that are deliberately not UTF-8 (encoding tests) are skipped, so the text is
    the same on every machine with the same Python version.
    """
    root = sysconfig.get_paths()["stdlib"]

    def texts():
        for rel in _files_under(root, (".py",)):
            if rel.split(os.sep)[0] in ("site-packages", "dist-packages"):
                continue
            try:
                yield read_utf8(os.path.join(root, rel))
            except NotUtf8Error:
                continue

    return _join(texts(), max_chars)


def python_docs(max_chars: int | None = None) -> str:
    """The prose of CPython's help() topics (``pydoc_data.topics.topics``), sorted by topic."""
    from pydoc_data.topics import topics

    return _join((topics[name].strip("\n") + "\n" for name in sorted(topics)), max_chars)


def tfds_text(
    name: str, *, data_dir: str | None = None, feature: str = "text", max_chars: int | None = None
) -> str:
    """A prepared TFDS text data set (e.g. "tiny_shakespeare"), splits concatenated in order.

    Read with ``tfds.data_source`` from array_record files, so no TensorFlow is needed.

    Raises:
        rnnlab.data.tfds_source.DatasetNotPreparedError: not prepared under ``data_dir``.
    """
    import tensorflow_datasets as tfds

    from rnnlab.data.tfds_source import FILE_FORMAT, DatasetNotPreparedError

    try:
        builder = tfds.builder(name, data_dir=data_dir, file_format=FILE_FORMAT)
        prepared = builder.is_prepared()
    except Exception as e:  # unknown name, unreadable metadata: all mean "not here"
        builder, prepared, why = None, False, str(e)
    else:
        why = f"no {builder.data_path}"
    if not prepared:
        raise DatasetNotPreparedError(
            f"TFDS data set {name!r} is not prepared as {FILE_FORMAT} under "
            f"{data_dir or os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets')} ({why}). "
            f"With network access run `tfds build {name} --file_format={FILE_FORMAT} "
            "--data_dir=DIR` and copy DIR here, or use a built-in corpus: "
            f"{', '.join(BUILTIN)}."
        )
    order = [s for s in ("train", "validation", "test") if s in builder.info.splits]
    order += sorted(s for s in builder.info.splits if s not in order)

    def texts():
        for split in order:
            data = tfds.data_source(
                name,
                split=split,
                data_dir=data_dir,
                download=False,
                builder_kwargs={"file_format": FILE_FORMAT},
            )
            for i in range(len(data)):
                value = data[i][feature]
                yield value.decode("utf-8") if isinstance(value, bytes) else str(value)

    return _join(texts(), max_chars)


def load_corpus(corpus: str, *, max_chars: int | None = None, data_dir: str | None = None) -> str:
    """A corpus by name or path: "python_stdlib", "python_docs", "tfds:NAME" or a file/directory.

    Args:
        corpus: see the module docstring.
        max_chars: keep at most this many characters (the first ones; deterministic).
        data_dir: the TFDS data dir for "tfds:NAME".
    """
    if max_chars is not None and (not isinstance(max_chars, int) or max_chars < 1):
        raise ValueError(f"max_chars must be a positive int or None, got {max_chars!r}")
    if corpus == "python_stdlib":
        return python_stdlib(max_chars)
    if corpus == "python_docs":
        return python_docs(max_chars)
    if corpus.startswith(TFDS_PREFIX):
        return tfds_text(corpus[len(TFDS_PREFIX) :], data_dir=data_dir, max_chars=max_chars)
    if not os.path.exists(corpus):
        close = difflib.get_close_matches(corpus, BUILTIN, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise FileNotFoundError(
            f"corpus {corpus!r}{hint}: no such file or directory, and not a built-in corpus "
            f"({', '.join(BUILTIN)}) or '{TFDS_PREFIX}NAME'"
        )
    return read_path(corpus, max_chars=max_chars)


# --- split -----------------------------------------------------------------------------------


class Splits(NamedTuple):
    """Contiguous pieces of one text, in order: text == train + valid + test."""

    train: str
    valid: str
    test: str


def split_bounds(n: int, fractions: Sequence[float]) -> tuple[int, int]:
    """The two cut positions (end of train, end of valid) for a text of ``n`` characters."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0):
        raise ValueError(
            f"fractions: expected three non-negative (train, valid, test) summing to 1, "
            f"got {fractions}"
        )
    a = int(round(fractions[0] * n))
    b = int(round((fractions[0] + fractions[1]) * n))
    return a, b


def split_text(text: str, fractions: Sequence[float] = (0.9, 0.05, 0.05)) -> Splits:
    """Cuts ``text`` by position into train, valid and test (no shuffling)."""
    a, b = split_bounds(len(text), fractions)
    return Splits(text[:a], text[a:b], text[b:])


# --- vocabulary ------------------------------------------------------------------------------


class CharVocab:
    """Characters <-> int ids: the sorted characters of a text, plus <unk> (id 0) if ``unk``.

    Attributes:
        chars: the characters, sorted by code point (ids 1.. with unk, 0.. without).
        unk: whether id 0 is <unk>, which every unseen character maps to.
    """

    def __init__(self, chars: Sequence[str], unk: bool = True):
        chars = tuple(chars)
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("chars: expected distinct single characters")
        if list(chars) != sorted(chars):
            raise ValueError("chars: expected them sorted by code point")
        self.chars = chars
        self.unk = bool(unk)
        self._offset = 1 if self.unk else 0
        self._codes = np.array([ord(c) for c in chars], np.int64)  # sorted, for searchsorted

    @classmethod
    def from_text(cls, text: str, unk: bool = True) -> CharVocab:
        """The vocabulary of the characters in ``text`` (e.g. the training split)."""
        return cls(sorted(set(text)), unk=unk)

    @property
    def size(self) -> int:
        """V, <unk> included."""
        return len(self.chars) + self._offset

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other) -> bool:
        return isinstance(other, CharVocab) and (self.chars, self.unk) == (other.chars, other.unk)

    def __repr__(self) -> str:
        return f"CharVocab({self.size} ids, unk={self.unk})"

    def encode(self, text: str) -> np.ndarray:
        """[N] int32 ids; characters not in the vocabulary become <unk> (an error without it)."""
        codes = np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.int64)  # [N]
        if not self._codes.size:
            index, known = np.zeros_like(codes), np.zeros(codes.shape, bool)
        else:
            index = np.clip(np.searchsorted(self._codes, codes), 0, self._codes.size - 1)
            known = self._codes[index] == codes
        if not self.unk and not known.all():
            first = int(np.argmin(known))
            raise ValueError(
                f"character {text[first]!r} at position {first} is not in the vocabulary "
                "(a vocabulary without <unk>)"
            )
        return np.where(known, index + self._offset, 0).astype(np.int32)

    def decode(self, ids) -> str:
        """The text of ``ids`` ([N] ints); <unk> becomes U+FFFD, so len(text) == len(ids)."""
        table = ((UNK_CHAR,) if self.unk else ()) + self.chars
        return "".join(table[i] for i in np.asarray(ids).reshape(-1).tolist())

    def to_json(self) -> str:
        return json.dumps({"chars": "".join(self.chars), "unk": self.unk}, ensure_ascii=True)

    @classmethod
    def from_json(cls, data: str) -> CharVocab:
        fields = json.loads(data)
        return cls(list(fields["chars"]), unk=fields["unk"])

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharVocab:
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())


# --- streams for truncated BPTT --------------------------------------------------------------


class StreamBatch(NamedTuple):
    """inputs, targets: [B, k] int32; reset: True at the first step of an epoch."""

    inputs: np.ndarray
    targets: np.ndarray
    reset: bool


class StreamBatcher:
    """The train ids as B parallel contiguous streams; step s gives the k characters at s k.

    Args:
        tokens: [N] ints, the encoded training text.
        batch_size: B, the number of parallel streams.
        seq_len: k, the characters per step (the truncation length).

    Attributes:
        streams: [B, L] int32 with L = N // B (the last N mod B characters are left out).
        steps_per_epoch: (L - 1) // k.
    """

    def __init__(self, tokens, batch_size: int, seq_len: int):
        tokens = np.asarray(tokens)
        for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"tokens: expected a 1-d int array, got {tokens.dtype} {tokens.shape}")
        length = tokens.shape[0] // batch_size
        if length < seq_len + 1:
            raise ValueError(
                f"tokens: {tokens.shape[0]} characters make {batch_size} streams of {length}, "
                f"fewer than seq_len + 1 = {seq_len + 1}; use less batch_size or seq_len"
            )
        self.batch_size, self.seq_len = batch_size, seq_len
        self.streams = tokens[: batch_size * length].reshape(batch_size, length).astype(np.int32)
        self.steps_per_epoch = (length - 1) // seq_len

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, offset within every stream) of ``step``."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        epoch, index = divmod(int(step), self.steps_per_epoch)
        return epoch, index * self.seq_len

    def batch(self, step: int) -> StreamBatch:
        """The batch of ``step`` (numpy, on the host)."""
        _, o = self.position(step)
        k = self.seq_len
        return StreamBatch(self.streams[:, o : o + k], self.streams[:, o + 1 : o + k + 1], o == 0)

    def source(self):
        """A ``rnnlab.data.tasks.Source`` whose data_state is {"index": step}; jit-traceable.

        ``next`` slices the streams on device (``lax.dynamic_slice``), so the batch never leaves
        it; the batch is {"inputs", "targets": [B, k] int32, "reset": bool []}.
        """
        from rnnlab.data.tasks import Source

        streams = jnp.asarray(self.streams)  # [B, L], a constant of the compiled step
        n, k, B = self.steps_per_epoch, self.seq_len, self.batch_size

        def init():
            return {"index": jnp.zeros((), jnp.int32)}

        def next_batch(data_state):
            o = (data_state["index"] % n) * k
            window = lax.dynamic_slice(streams, (0, o), (B, k + 1))  # [B, k + 1]
            batch = {"inputs": window[:, :-1], "targets": window[:, 1:], "reset": o == 0}
            return batch, {"index": data_state["index"] + 1}

        return Source(init, next_batch)


# --- the unigram baseline --------------------------------------------------------------------


def unigram_probs(train_tokens, vocab_size: int, alpha: float = 1.0) -> np.ndarray:
    """[V] add-alpha unigram probabilities (n_c + alpha) / (N + alpha V) from the train ids."""
    counts = np.bincount(np.asarray(train_tokens).reshape(-1), minlength=vocab_size)
    if counts.shape[0] != vocab_size:
        raise ValueError(f"train_tokens: ids up to {counts.shape[0] - 1} for V = {vocab_size}")
    return (counts + alpha) / (counts.sum() + alpha * vocab_size)


def unigram_bits_per_char(train_tokens, tokens, vocab_size: int, alpha: float = 1.0) -> float:
    """Bits per character of ``tokens`` under the train text's unigram distribution."""
    p = unigram_probs(train_tokens, vocab_size, alpha)
    return float(-np.mean(np.log2(p[np.asarray(tokens).reshape(-1)])))
